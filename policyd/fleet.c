/*
 * NAME
 *	fleet 3 - publish this policyd's record; show the fleet, its
 *	offenders and the screen of `policyctl top`
 * SYNOPSIS
 *	#include "fleet.h"
 * DESCRIPTION
 *	See fleet.h for the record and the views.  Here:
 *
 *	Sampling.  Each tick copies the counters a view needs (requests,
 *	verdicts, latency buckets, directory queries and failures) into a
 *	ring of FLEET_WINDOW_MS / FLEET_TICK_MS + 1 samples.  A record
 *	compares a fresh sample with the oldest one in the ring, so its
 *	rates cover the last FLEET_WINDOW_MS (less just after start).
 *
 *	Views.  A view captures at its start everything it needs from this
 *	process (its own record, the harvest rules, the local offenders) and
 *	sends its store reads at once, in parallel; the answers then only
 *	touch the view's own memory, so a reload, fleet_free() or
 *	policy_free() while a read is out is harmless (the store answers
 *	STORE_ERR to reads it drops).  This process's entry always comes
 *	from its fresh record, never from the copy in Redis.
 *
 *	Names in records (HOST/LISTENER) and networks are restricted to
 *	[A-Za-z0-9._:/[]-]: a record or index entry with anything else is
 *	skipped, so the JSON needs no escaping.
 * LIMITS
 *	STORE_ROSTER_MAX instances, FLEET_OFFENDERS_MAX offenders per view.
 *	Each tick walks this process's standings table once (as `stats`
 *	does), so its cost grows with [harvest] max_tracked.
 * SEE ALSO
 *	policyctl(1), store(3) roster_put, roster_get, ranked
 */

#include "fleet.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../backends/store.h"
#include "evidence.h"
#include "log.h"
#include "score.h"
#include "stats.h"
#include "util.h"

#ifndef POLICYD_VERSION
#define POLICYD_VERSION "unknown"
#endif

#define FLEET_SAMPLES (FLEET_WINDOW_MS / FLEET_TICK_MS + 1)
#define FLEET_VERSION_MAX 32
#define FLEET_DIGEST_LEN 16
#define FLEET_DIGEST_FILE_MAX (1024 * 1024)     /* as the config loader's */
#define FLEET_KEY_MAX (CONFIG_PREFIX_MAX + 8)

struct fleet_sample {
    uint64_t t_ms;                  /* monotonic */
    uint64_t requests;
    uint64_t verdicts[VERDICT_MAX];
    uint64_t lat[STATS_BUCKETS];
    uint64_t dir_queries, dir_failed;
};

struct fleet {
    uv_loop_t *loop;
    struct policy *p;
    uv_timer_t timer;
    const struct config *cfg_seen;  /* the config the digest is of */
    char digest[FLEET_DIGEST_LEN + 1];
    char name[FLEET_NAME_MAX];
    char key[FLEET_KEY_MAX];        /* PREFIX "fleet" */
    char evprefix[FLEET_KEY_MAX];   /* PREFIX "e:": standing keys */
    size_t klen;
    struct fleet_sample ring[FLEET_SAMPLES];
    unsigned nring, head;           /* head: the next slot written */
};

/* One instance, parsed from its record. */
struct fleet_member {
    char name[FLEET_NAME_MAX];
    char version[FLEET_VERSION_MAX];
    char digest[FLEET_DIGEST_LEN + 1];
    char dir[8];
    uint64_t start;                 /* epoch seconds */
    double rps;
    uint64_t verdicts[VERDICT_MAX];
    struct stats_hist lat;
    uint64_t delayed, blocked, tracked, siege;
    int redis_up;
    long long age_ms;
    int stale, self;
    int config_differs, version_differs;
};

struct fleet_off {
    char net[EVIDENCE_NET_MAX];
    struct score s;                 /* faded to the view's now */
};

enum view_kind { VIEW_FLEET, VIEW_OFFENDERS, VIEW_TOP };

struct fleet_view {
    enum view_kind kind;
    int json;
    unsigned want;                  /* offenders to show */
    unsigned pending;               /* store reads not yet back */
    int have_redis;                 /* a shared store was asked */
    int roster_ok, ranked_ok;
    uint64_t now_ms;                /* wall clock */
    char evprefix[FLEET_KEY_MAX];
    struct score_rules rules[SCORE_LEVELS];
    unsigned v4_narrow, v4_wide, v6_narrow, v6_wide;
    struct fleet_member *m;         /* self first */
    size_t nm;
    struct fleet_off off[FLEET_OFFENDERS_MAX];
    unsigned noff;
    struct fleet_off local[FLEET_OFFENDERS_MAX];    /* this process's */
    unsigned nlocal;
    fleet_text_cb *cb;
    void *arg;
};

/* ---- small helpers ---- */

static int name_char_ok(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != 0 && strchr("._:/[]-", c) != NULL);
}

static int name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok((unsigned char)s[i]))
            return 0;
    return 1;
}

/* FNV-1a, 64 bits: a change detector, not a secret. */
static uint64_t fnv1a(const unsigned char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* digest_line - fold one line of the file into h: blanks at either end,
 * comments, empty lines and the keys that name this host's own sockets
 * ([server] listen and control, [stats] prometheus) do not count. */
static uint64_t digest_line(char *line, char *section, size_t seccap, uint64_t h)
{
    char *end, *semi;
    size_t klen;

    while (*line == ' ' || *line == '\t')
        line++;
    if (*line == '#' || *line == ';')
        return h;
    semi = strstr(line, " ;");          /* inih's inline comment */
    if (semi)
        *semi = 0;
    end = line + strlen(line);
    while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'
                          || end[-1] == '\n'))
        *--end = 0;
    if (*line == 0)
        return h;
    if (*line == '[') {
        snprintf(section, seccap, "%s", line);
        return h;
    }
    klen = strcspn(line, " \t=:");
    if ((strcmp(section, "[server]") == 0
         && ((klen == 6 && strncmp(line, "listen", 6) == 0)
             || (klen == 7 && strncmp(line, "control", 7) == 0)))
        || (strcmp(section, "[stats]") == 0
            && klen == 10 && strncmp(line, "prometheus", 10) == 0))
        return h;
    h = fnv1a((const unsigned char *)section, strlen(section) + 1, h);
    return fnv1a((const unsigned char *)line, strlen(line) + 1, h);
}

/* config_digest - of the file's settings as read now, once per config (at
 * start or reload, like the loader itself); "unreadable" when it cannot be
 * read now (the running config still is what it is). */
static void config_digest(const struct config *cfg, char *out)
{
    FILE *fp = cfg->path ? fopen(cfg->path, "r") : NULL;
    char line[1024], section[128] = "";
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t total = 0;

    if (!fp) {
        snprintf(out, FLEET_DIGEST_LEN + 1, "unreadable");
        return;
    }
    while (total < FLEET_DIGEST_FILE_MAX && fgets(line, sizeof(line), fp)) {
        total += strlen(line);
        h = digest_line(line, section, sizeof(section), h);
    }
    fclose(fp);
    snprintf(out, FLEET_DIGEST_LEN + 1, "%016" PRIx64, h);
}

/* instance_name - HOST/LISTENER, the first listener without "inet:";
 * characters outside the allowed set become '_'. */
static void instance_name(const struct config *cfg, char *out)
{
    char host[64];
    const char *l = cfg->server.listen.n ? cfg->server.listen.v[0] : "none";

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = 0;
    if (strncmp(l, "inet:", 5) == 0)
        l += 5;
    snprintf(out, FLEET_NAME_MAX, "%s/%s", host, l);
    for (char *c = out; *c; c++)
        if (!name_char_ok((unsigned char)*c))
            *c = '_';
}

static double ms_of(uint64_t us)
{
    /* the +Inf bucket: report the largest finite bound ("at least") */
    if (us == UINT64_MAX)
        us = stats_bounds_us[STATS_BUCKETS - 2];
    return (double)us / 1000.0;
}

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static uint64_t sum_verdicts(const uint64_t *v)
{
    uint64_t t = 0;
    for (int i = 0; i < VERDICT_MAX; i++)
        t += v[i];
    return t;
}

/* fmt_dur - "3d04h", "1h02m", "9m58s", "12s"; "-" when ms < 0. */
static const char *fmt_dur(long long ms, char *buf, size_t cap)
{
    long long s = ms / 1000;

    if (ms < 0)
        snprintf(buf, cap, "-");
    else if (s >= 86400)
        snprintf(buf, cap, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(buf, cap, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(buf, cap, "%llds", s);
    return buf;
}

/* ---- sampling and the record ---- */

static void sample_now(struct fleet_sample *s)
{
    s->t_ms = util_now_ms();
    s->requests = stats.requests_total;
    memcpy(s->verdicts, stats.verdicts, sizeof(s->verdicts));
    memcpy(s->lat, stats.latency.bucket, sizeof(s->lat));
    s->dir_queries = stats.dir_queries;
    /* every tempfail answer, a time-out included, is one dir_error
     * (lookup.c); dir_timeouts is a subset of them */
    s->dir_failed = stats.dir_errors;
}

/* refresh - a new config (start, reload): name, keys and digest again. */
static void refresh(struct fleet *f)
{
    const struct config *cfg = policy_config(f->p);
    const char *pfx = cfg->redis.prefix ? cfg->redis.prefix : "";

    if (cfg == f->cfg_seen)
        return;
    f->cfg_seen = cfg;
    instance_name(cfg, f->name);
    config_digest(cfg, f->digest);
    f->klen = (size_t)snprintf(f->key, sizeof(f->key), "%sfleet", pfx);
    snprintf(f->evprefix, sizeof(f->evprefix), "%se:", pfx);
}

/* self_member - this process now, against the oldest sample. */
static void self_member(struct fleet *f, struct fleet_member *m)
{
    const struct fleet_sample *old = &f->ring[f->nring < FLEET_SAMPLES ? 0 : f->head];
    struct fleet_sample now;
    struct stats_extra x;
    uint64_t dq, df, dt;

    refresh(f);
    sample_now(&now);
    if (f->nring == 0)
        old = &now;
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", f->name);
    snprintf(m->version, sizeof(m->version), "%s", POLICYD_VERSION);
    snprintf(m->digest, sizeof(m->digest), "%s", f->digest);
    m->start = stats.start_wall;
    dt = now.t_ms - old->t_ms;
    m->rps = dt ? (double)(now.requests - old->requests) * 1000.0 / (double)dt : 0.0;
    for (int i = 0; i < VERDICT_MAX; i++)
        m->verdicts[i] = now.verdicts[i] - old->verdicts[i];
    for (int i = 0; i < STATS_BUCKETS; i++) {
        m->lat.bucket[i] = now.lat[i] - old->lat[i];
        m->lat.count += m->lat.bucket[i];
    }
    dq = now.dir_queries - old->dir_queries;
    df = now.dir_failed - old->dir_failed;
    snprintf(m->dir, sizeof(m->dir), "%s", df == 0 ? "ok" : df >= dq ? "down" : "errors");
    policy_stats_extra(f->p, &x);
    m->delayed = stats.delayed_now;
    m->blocked = x.blocked_now;
    m->tracked = x.tracked_now;
    for (unsigned i = 0; i < x.nsiege; i++)
        m->siege += x.siege[i].on != 0;
    m->redis_up = stats.redis_up;
    m->self = 1;
}

static void record_of(const struct fleet_member *m, struct sbuf *out)
{
    sbuf_printf(out, "v=1 name=%s ver=%s start=%" PRIu64 " digest=%s rps=%.2f vd=",
                m->name, m->version, m->start, m->digest, m->rps);
    for (int i = 0; i < VERDICT_MAX; i++)
        sbuf_printf(out, "%s%" PRIu64, i ? "," : "", m->verdicts[i]);
    sbuf_puts(out, " lat=");
    for (int i = 0; i < STATS_BUCKETS; i++)
        sbuf_printf(out, "%s%" PRIu64, i ? "," : "", m->lat.bucket[i]);
    sbuf_printf(out, " delayed=%" PRIu64 " blocked=%" PRIu64 " tracked=%" PRIu64
                " siege=%" PRIu64 " redis=%s dir=%s", m->delayed, m->blocked,
                m->tracked, m->siege, m->redis_up ? "up" : "down", m->dir);
}

/* parse_list - "a,b,c" into v[n]; how many numbers (at most n), or -1. */
static int parse_list(const char *s, uint64_t *v, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtoull(s, &end, 10);
        if (end == s || (*end != ',' && *end != 0))
            return -1;
        if (*end == 0)
            return i + 1;
        s = end + 1;
    }
    return -1;                  /* more than n */
}

/* parse_lat - the latency buckets; a release with one bucket fewer (before
 * the 100 s bound) still reads: its last, +Inf, goes to ours. */
static int parse_lat(const char *s, uint64_t *v)
{
    int got = parse_list(s, v, STATS_BUCKETS);

    if (got == STATS_BUCKETS - 1) {
        v[STATS_BUCKETS - 1] = v[STATS_BUCKETS - 2];
        v[STATS_BUCKETS - 2] = 0;
        return 0;
    }
    return got == STATS_BUCKETS ? 0 : -1;
}

/* parse_record - 0 when the record is one this version reads. */
static int parse_record(const char *rec, size_t len, struct fleet_member *m)
{
    char buf[FLEET_RECORD_MAX + 1], *save = NULL, *tok;
    int version = 0;

    if (len > FLEET_RECORD_MAX)
        return -1;
    memcpy(buf, rec, len);
    buf[len] = 0;
    memset(m, 0, sizeof(*m));
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *v = strchr(tok, '=');
        if (!v)
            continue;
        *v++ = 0;
        if (strcmp(tok, "v") == 0)
            version = atoi(v);
        else if (strcmp(tok, "name") == 0 && strlen(v) < sizeof(m->name))
            snprintf(m->name, sizeof(m->name), "%s", v);
        else if (strcmp(tok, "ver") == 0)
            snprintf(m->version, sizeof(m->version), "%s", v);
        else if (strcmp(tok, "digest") == 0)
            snprintf(m->digest, sizeof(m->digest), "%s", v);
        else if (strcmp(tok, "dir") == 0)
            snprintf(m->dir, sizeof(m->dir), "%s", v);
        else if (strcmp(tok, "start") == 0)
            m->start = strtoull(v, NULL, 10);
        else if (strcmp(tok, "rps") == 0)
            m->rps = strtod(v, NULL);
        else if (strcmp(tok, "vd") == 0 && parse_list(v, m->verdicts, VERDICT_MAX) < 1)
            return -1;
        else if (strcmp(tok, "lat") == 0) {
            if (parse_lat(v, m->lat.bucket) < 0)
                return -1;
            for (int i = 0; i < STATS_BUCKETS; i++)
                m->lat.count += m->lat.bucket[i];
        } else if (strcmp(tok, "delayed") == 0)
            m->delayed = strtoull(v, NULL, 10);
        else if (strcmp(tok, "blocked") == 0)
            m->blocked = strtoull(v, NULL, 10);
        else if (strcmp(tok, "tracked") == 0)
            m->tracked = strtoull(v, NULL, 10);
        else if (strcmp(tok, "siege") == 0)
            m->siege = strtoull(v, NULL, 10);
        else if (strcmp(tok, "redis") == 0)
            m->redis_up = strcmp(v, "up") == 0;
    }
    /* values reach the operator's terminal and JSON: a record that is not
     * one we wrote is dropped */
    if (version != 1 || !name_ok(m->name, strlen(m->name))
        || !name_ok(m->version, strlen(m->version)) || !name_ok(m->digest, strlen(m->digest))
        || !name_ok(m->dir, strlen(m->dir)) || !isfinite(m->rps) || m->rps < 0)
        return -1;
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    struct fleet *f = t->data;
    struct store *st = policy_store(f->p);

    sample_now(&f->ring[f->head]);
    f->head = (f->head + 1) % FLEET_SAMPLES;
    if (f->nring < FLEET_SAMPLES)
        f->nring++;
    if (st && st->ops->shared(st)) {
        struct fleet_member m;
        struct sbuf rec;

        self_member(f, &m);
        sbuf_init(&rec);
        record_of(&m, &rec);
        st->ops->roster_put(st, f->key, f->klen, m.name, strlen(m.name), rec.data,
                            rec.len, FLEET_KEEP_MS);
        sbuf_free(&rec);
    }
}

struct fleet *fleet_new(uv_loop_t *loop, struct policy *p)
{
    struct fleet *f = xcalloc(1, sizeof(*f));

    f->loop = loop;
    f->p = p;
    refresh(f);
    sample_now(&f->ring[0]);
    f->head = 1;
    f->nring = 1;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    uv_timer_start(&f->timer, on_tick, FLEET_TICK_MS, FLEET_TICK_MS);
    /* never what keeps the loop running (shutdown must not wait for it) */
    uv_unref((uv_handle_t *)&f->timer);
    return f;
}

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

void fleet_free(struct fleet *f)
{
    if (f)
        uv_close((uv_handle_t *)&f->timer, on_close);
}

/* ---- views: gathering ---- */

static void view_finish(struct fleet_view *v);

/* off_add - keep the want highest by weight (invalid + traps). */
static void off_add(struct fleet_off *list, unsigned *n, unsigned want, const char *net,
                    const struct score *s)
{
    double w = s->invalid + s->traps;
    unsigned i;

    if (w < 0.5 && s->block_until_ms == 0)
        return;
    for (i = *n; i > 0 && list[i - 1].s.invalid + list[i - 1].s.traps < w; i--)
        if (i < want)
            list[i] = list[i - 1];
    if (i >= want)
        return;
    snprintf(list[i].net, sizeof(list[i].net), "%s", net);
    list[i].s = *s;
    if (*n < want)
        (*n)++;
}

static void local_walk(void *arg, const char *net, const struct score *view)
{
    struct fleet_view *v = arg;

    off_add(v->local, &v->nlocal, v->want, net, view);
}

static void on_roster(void *arg, int status, const struct store_item *it, size_t n)
{
    struct fleet_view *v = arg;

    v->roster_ok = status == STORE_OK;
    for (size_t i = 0; v->roster_ok && i < n && v->nm <= STORE_ROSTER_MAX; i++) {
        struct fleet_member *m = &v->m[v->nm];

        if (parse_record(it[i].val, it[i].vlen, m) < 0
            || strcmp(m->name, v->m[0].name) == 0)
            continue;           /* unreadable, or ourselves: the fresh one counts */
        m->age_ms = it[i].age_ms;
        m->stale = it[i].age_ms > FLEET_STALE_MS;
        v->nm++;
    }
    if (--v->pending == 0)
        view_finish(v);
}

static void on_ranked(void *arg, int status, const struct store_item *it, size_t n)
{
    struct fleet_view *v = arg;
    size_t plen = strlen(v->evprefix);

    v->ranked_ok = status == STORE_OK;
    for (size_t i = 0; v->ranked_ok && i < n; i++) {
        char net[EVIDENCE_NET_MAX];
        struct score s;
        size_t nl = it[i].nlen - plen;

        if (it[i].nlen <= plen || memcmp(it[i].name, v->evprefix, plen) != 0
            || nl >= sizeof(net) || !name_ok(it[i].name + plen, nl)
            || score_decode(it[i].val, it[i].vlen, &s) < 0)
            continue;
        memcpy(net, it[i].name + plen, nl);
        net[nl] = 0;
        score_decay(&s, v->now_ms, v->rules[SCORE_NARROW].half_life_ms);
        off_add(v->off, &v->noff, v->want, net, &s);
    }
    if (--v->pending == 0)
        view_finish(v);
}

static void view_start(struct fleet *f, enum view_kind kind, int json, unsigned want,
                       fleet_text_cb *cb, void *arg)
{
    struct fleet_view *v = xcalloc(1, sizeof(*v));
    const struct config *cfg = policy_config(f->p);
    struct store *st = policy_store(f->p);
    int roster = kind != VIEW_OFFENDERS, ranked = kind != VIEW_FLEET;

    v->kind = kind;
    v->json = json;
    v->want = want;
    v->cb = cb;
    v->arg = arg;
    v->now_ms = util_wall_ms();
    v->m = xcalloc(STORE_ROSTER_MAX + 1, sizeof(*v->m));
    self_member(f, &v->m[0]);
    v->nm = 1;
    snprintf(v->evprefix, sizeof(v->evprefix), "%s", f->evprefix);
    score_rules_of(cfg, SCORE_NARROW, &v->rules[SCORE_NARROW]);
    score_rules_of(cfg, SCORE_WIDE, &v->rules[SCORE_WIDE]);
    v->v4_narrow = cfg->harvest.ipv4_prefix;
    v->v4_wide = cfg->harvest.ipv4_wide_prefix;
    v->v6_narrow = cfg->harvest.ipv6_prefix;
    v->v6_wide = cfg->harvest.ipv6_wide_prefix;
    if (ranked)
        evidence_walk(policy_evidence(f->p), local_walk, v);
    v->have_redis = st != NULL;
    if (!st) {
        view_finish(v);
        return;
    }
    /* both reads now, while the store is certainly alive (see DESCRIPTION) */
    v->pending = 1 + roster + ranked;
    if (roster)
        st->ops->roster_get(st, f->key, f->klen, on_roster, v);
    if (ranked)
        st->ops->ranked(st, want, on_ranked, v);
    if (--v->pending == 0)
        view_finish(v);
}

/* ---- views: what the fleet agrees on ---- */

enum agree { AGREE_DIGEST, AGREE_VERSION };

static const char *agree_field(const struct fleet_member *m, enum agree w)
{
    return w == AGREE_DIGEST ? m->digest : m->version;
}

/* majority - the value most members that are up hold (NULL on a tie for
 * most), and each member flagged when it differs (everyone on a tie);
 * nobody is flagged when all agree. */
static const char *majority(struct fleet_member *m, size_t n, enum agree w)
{
    const char *best = NULL;
    size_t best_n = 0;
    int tie = 0, all_same = 1;

    for (size_t i = 0; i < n; i++) {
        const char *val = agree_field(&m[i], w);
        size_t c = 0;

        all_same &= strcmp(val, agree_field(&m[0], w)) == 0;
        if (m[i].stale)
            continue;
        for (size_t j = 0; j < n; j++)
            c += !m[j].stale && strcmp(agree_field(&m[j], w), val) == 0;
        if (c > best_n) {
            best = val;
            best_n = c;
            tie = 0;
        } else if (c == best_n && best && strcmp(best, val) != 0) {
            tie = 1;
        }
    }
    if (tie)
        best = NULL;
    for (size_t i = 0; i < n; i++) {
        int differs = !all_same && (best == NULL || strcmp(agree_field(&m[i], w), best) != 0);
        if (w == AGREE_DIGEST)
            m[i].config_differs = differs;
        else
            m[i].version_differs = differs;
    }
    return all_same ? agree_field(&m[0], w) : best;
}

struct fleet_totals {
    size_t up, stale, redis_up, dir_ok;
    double rps;
    uint64_t verdicts[VERDICT_MAX];
    struct stats_hist lat;
    uint64_t delayed, blocked, siege, tracked;
    const char *digest, *version;
};

static void totals_of(struct fleet_view *v, struct fleet_totals *t)
{
    memset(t, 0, sizeof(*t));
    t->digest = majority(v->m, v->nm, AGREE_DIGEST);
    t->version = majority(v->m, v->nm, AGREE_VERSION);
    for (size_t i = 0; i < v->nm; i++) {
        const struct fleet_member *m = &v->m[i];

        if (m->stale) {
            t->stale++;
            continue;
        }
        t->up++;
        t->rps += m->rps;
        for (int j = 0; j < VERDICT_MAX; j++)
            t->verdicts[j] += m->verdicts[j];
        for (int j = 0; j < STATS_BUCKETS; j++)
            t->lat.bucket[j] += m->lat.bucket[j];
        t->lat.count += m->lat.count;
        t->delayed += m->delayed;
        t->redis_up += m->redis_up != 0;
        t->dir_ok += strcmp(m->dir, "ok") == 0;
        /* standings are shared: each table holds much the same networks,
         * so the largest, not the sum, says how many are blocked */
        if (m->blocked > t->blocked)
            t->blocked = m->blocked;
        if (m->tracked > t->tracked)
            t->tracked = m->tracked;
        if (m->siege > t->siege)
            t->siege = m->siege;
    }
}

static const char *source_of(const struct fleet_view *v, int ok)
{
    return !v->have_redis ? "local" : ok ? "redis" : "local (redis did not answer)";
}

/* ---- views: offenders ---- */

struct off_row {
    enum score_stage stage;
    long long left_ms;              /* -1: does not fade */
};

static void judge_off(const struct fleet_view *v, const struct fleet_off *o,
                      struct off_row *r)
{
    const char *slash = strrchr(o->net, '/');
    unsigned bits = slash ? (unsigned)atoi(slash + 1) : 0;
    int v6 = strchr(o->net, ':') != NULL;
    unsigned wide = v6 ? v->v6_wide : v->v4_wide, narrow = v6 ? v->v6_narrow : v->v4_narrow;
    const struct score_rules *rules = &v->rules[wide && bits == wide && wide != narrow
                                                ? SCORE_WIDE : SCORE_NARROW];
    struct score_verdict sv;
    double floor_count;

    score_judge(rules, &o->s, v->now_ms, &sv);
    r->stage = sv.stage;
    if (sv.stage == STAGE_BLOCKED) {
        r->left_ms = (long long)(sv.ends_ms - v->now_ms);
        return;
    }
    if (sv.stage == STAGE_CLEAN || rules->half_life_ms == 0) {
        r->left_ms = sv.stage == STAGE_CLEAN ? 0 : -1;
        return;
    }
    /* until the fading count rounds below the stage's threshold */
    floor_count = sv.stage == STAGE_TARPIT ? (double)rules->tarpit_after - 0.5 : 0.5;
    if (floor_count <= 0 || o->s.invalid <= floor_count)
        r->left_ms = 0;
    else
        r->left_ms = (long long)((double)rules->half_life_ms
                                 * log2(o->s.invalid / floor_count));
}

static void render_offenders(const struct fleet_view *v, struct sbuf *out)
{
    const struct fleet_off *list = v->ranked_ok ? v->off : v->local;
    unsigned n = v->ranked_ok ? v->noff : v->nlocal;
    char left[32];

    if (v->json) {
        sbuf_printf(out, "{\"source\":\"%s\",\"offenders\":[", source_of(v, v->ranked_ok));
        for (unsigned i = 0; i < n; i++) {
            struct off_row r;
            judge_off(v, &list[i], &r);
            sbuf_printf(out, "%s{\"network\":\"%s\",\"invalid\":%.1f,\"valid\":%.1f,"
                        "\"traps\":%.1f,\"stage\":\"%s\",\"left_s\":%lld}",
                        i ? "," : "", list[i].net, list[i].s.invalid, list[i].s.valid,
                        list[i].s.traps, score_stage_name(r.stage),
                        r.left_ms < 0 ? -1 : r.left_ms / 1000);
        }
        sbuf_puts(out, "]}");
        return;
    }
    sbuf_printf(out, "%-28s %8s %8s %6s  %-8s %s\n", "NETWORK", "INVALID", "VALID",
                "TRAPS", "STAGE", "LEFT");
    for (unsigned i = 0; i < n; i++) {
        struct off_row r;
        judge_off(v, &list[i], &r);
        sbuf_printf(out, "%-28s %8.1f %8.1f %6.1f  %-8s %s\n", list[i].net,
                    list[i].s.invalid, list[i].s.valid, list[i].s.traps,
                    score_stage_name(r.stage), fmt_dur(r.left_ms, left, sizeof(left)));
    }
    if (n == 0)
        sbuf_puts(out, "(no offending networks)\n");
}

/* ---- views: the fleet ---- */

static void json_verdicts(struct sbuf *out, const uint64_t *vd)
{
    sbuf_puts(out, "{");
    for (int i = 0; i < VERDICT_MAX; i++)
        sbuf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "",
                    stats_verdict_name((enum stats_verdict)i), vd[i]);
    sbuf_puts(out, "}");
}

/* row_end - end a table row without the padding of an empty last column. */
static void row_end(struct sbuf *out)
{
    while (out->len > 0 && out->data[out->len - 1] == ' ')
        out->data[--out->len] = 0;
    sbuf_puts(out, "\n");
}

/* member_note - the NOTE column, "" when nothing to say. */
static void member_note(const struct fleet_member *m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s", m->self ? " this" : "",
             m->config_differs ? " config-differs" : "",
             m->version_differs ? " version-differs" : "");
}

static void render_fleet(struct fleet_view *v, struct sbuf *out)
{
    struct fleet_totals t;
    char up[32], note[64];
    uint64_t now_s = v->now_ms / 1000;

    totals_of(v, &t);
    if (v->json) {
        sbuf_printf(out, "{\"source\":\"%s\",\"instances\":[", source_of(v, v->roster_ok));
        for (size_t i = 0; i < v->nm; i++) {
            const struct fleet_member *m = &v->m[i];
            sbuf_printf(out, "%s{\"name\":\"%s\",\"state\":\"%s\",\"age_ms\":%lld,"
                        "\"self\":%s,\"version\":\"%s\",\"digest\":\"%s\",\"start\":%"
                        PRIu64 ",\"uptime_s\":%" PRIu64 ",\"rps\":%.2f,\"verdicts\":",
                        i ? "," : "", m->name, m->stale ? "stale" : "up", m->age_ms,
                        m->self ? "true" : "false", m->version, m->digest, m->start,
                        now_s > m->start ? now_s - m->start : 0, m->rps);
            json_verdicts(out, m->verdicts);
            sbuf_printf(out, ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"delayed_now\":%" PRIu64
                        ",\"blocked_now\":%" PRIu64 ",\"siege_domains\":%" PRIu64
                        ",\"redis\":\"%s\",\"directory\":\"%s\",\"config_differs\":%s,"
                        "\"version_differs\":%s}",
                        ms_of(stats_hist_quantile(&m->lat, 0.5)),
                        ms_of(stats_hist_quantile(&m->lat, 0.99)), m->delayed, m->blocked,
                        m->siege, m->redis_up ? "up" : "down", m->dir,
                        m->config_differs ? "true" : "false",
                        m->version_differs ? "true" : "false");
        }
        sbuf_printf(out, "],\"totals\":{\"instances\":%zu,\"up\":%zu,\"stale\":%zu,"
                    "\"rps\":%.2f,\"verdicts\":", v->nm, t.up, t.stale, t.rps);
        json_verdicts(out, t.verdicts);
        sbuf_printf(out, ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"delayed_now\":%" PRIu64
                    ",\"blocked_now\":%" PRIu64 "},\"majority\":{\"digest\":",
                    ms_of(stats_hist_quantile(&t.lat, 0.5)),
                    ms_of(stats_hist_quantile(&t.lat, 0.99)), t.delayed, t.blocked);
        sbuf_printf(out, t.digest ? "\"%s\"" : "%snull", t.digest ? t.digest : "");
        sbuf_puts(out, ",\"version\":");
        sbuf_printf(out, t.version ? "\"%s\"" : "%snull", t.version ? t.version : "");
        sbuf_puts(out, "}}");
        return;
    }
    sbuf_printf(out, "%-32s %-5s %-8s %8s %8s %5s %5s %5s %5s %5s %7s %7s %-5s %-6s%s\n",
                "INSTANCE", "STATE", "VERSION", "UPTIME", "REQ/S", "ACC%", "UNK%", "TMP%",
                "BLK%", "DEF%", "P99MS", "DELAYED", "REDIS", "DIR", " NOTE");
    for (size_t i = 0; i < v->nm; i++) {
        const struct fleet_member *m = &v->m[i];
        uint64_t all = sum_verdicts(m->verdicts);

        member_note(m, note, sizeof(note));
        sbuf_printf(out, "%-32s %-5s %-8s %8s %8.1f %5.1f %5.1f %5.1f %5.1f %5.1f %7.2f %7"
                    PRIu64 " %-5s %-6s%s", m->name, m->stale ? "stale" : "up",
                    m->version, fmt_dur(now_s > m->start ? (long long)(now_s - m->start) * 1000
                                        : 0, up, sizeof(up)), m->rps,
                    pct(m->verdicts[VERDICT_ACCEPTED], all),
                    pct(m->verdicts[VERDICT_UNKNOWN], all),
                    pct(m->verdicts[VERDICT_TEMPFAIL], all),
                    pct(m->verdicts[VERDICT_BLOCKED], all),
                    pct(m->verdicts[VERDICT_DEFERRED], all),
                    ms_of(stats_hist_quantile(&m->lat, 0.99)), m->delayed,
                    m->redis_up ? "up" : "down", m->dir, note);
        row_end(out);
    }
    sbuf_printf(out, "fleet: %zu instance(s), %zu up, %zu stale (%s); %.1f req/s; "
                "p50 %.2f ms, p99 %.2f ms; delayed now %" PRIu64 "\n", v->nm, t.up, t.stale,
                source_of(v, v->roster_ok), t.rps, ms_of(stats_hist_quantile(&t.lat, 0.5)),
                ms_of(stats_hist_quantile(&t.lat, 0.99)), t.delayed);
    sbuf_printf(out, "majority: config %s, version %s\n",
                t.digest ? t.digest : "none (a tie)", t.version ? t.version : "none (a tie)");
}

/* ---- views: the screen of policyctl top ---- */

static void render_top(struct fleet_view *v, struct sbuf *out)
{
    struct fleet_totals t;
    uint64_t all;
    char when[32], note[64];
    time_t now = (time_t)(v->now_ms / 1000);
    struct tm tm;
    double p50, p99;

    totals_of(v, &t);
    all = sum_verdicts(t.verdicts);
    p50 = ms_of(stats_hist_quantile(&t.lat, 0.5));
    p99 = ms_of(stats_hist_quantile(&t.lat, 0.99));
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* line 1: the summary, for a stdout that is not a terminal */
    sbuf_printf(out, "%s instances=%zu/%zu rps=%.1f", when, t.up, v->nm, t.rps);
    for (int i = 0; i < VERDICT_MAX; i++)
        sbuf_printf(out, " %s=%.1f%%", stats_verdict_name((enum stats_verdict)i),
                    pct(t.verdicts[i], all));
    sbuf_printf(out, " p50_ms=%.2f p99_ms=%.2f delayed=%" PRIu64 " blocked_nets=%" PRIu64
                " siege=%" PRIu64 " redis=%zu/%zu dir_ok=%zu/%zu\n", p50, p99, t.delayed,
                t.blocked, t.siege, t.redis_up, t.up, t.dir_ok, t.up);

    sbuf_printf(out, "policyd top: %zu instance(s), %zu up, %zu stale; source %s   %s\n\n",
                v->nm, t.up, t.stale, source_of(v, v->roster_ok), when);
    sbuf_printf(out, "requests/s   %.1f over the last %d s\n", t.rps,
                FLEET_WINDOW_MS / 1000);
    sbuf_puts(out, "verdicts    ");
    for (int i = 0; i < VERDICT_MAX; i++)
        sbuf_printf(out, " %s %.1f%%", stats_verdict_name((enum stats_verdict)i),
                    pct(t.verdicts[i], all));
    sbuf_printf(out, "\nlatency      p50 %.2f ms  p99 %.2f ms\n", p50, p99);
    sbuf_printf(out, "delayed now  %" PRIu64 "   blocked networks %" PRIu64
                "   tracked %" PRIu64 "   domains under siege %" PRIu64 "\n",
                t.delayed, t.blocked, t.tracked, t.siege);
    sbuf_printf(out, "health       redis up on %zu of %zu, directory ok on %zu of %zu\n\n",
                t.redis_up, t.up, t.dir_ok, t.up);
    sbuf_printf(out, "%-32s %-5s %8s %7s %7s %-5s %-6s%s\n", "INSTANCE", "STATE", "REQ/S",
                "P99MS", "DELAYED", "REDIS", "DIR", " NOTE");
    for (size_t i = 0; i < v->nm; i++) {
        const struct fleet_member *m = &v->m[i];

        member_note(m, note, sizeof(note));
        sbuf_printf(out, "%-32s %-5s %8.1f %7.2f %7" PRIu64 " %-5s %-6s%s", m->name,
                    m->stale ? "stale" : "up", m->rps,
                    ms_of(stats_hist_quantile(&m->lat, 0.99)), m->delayed,
                    m->redis_up ? "up" : "down", m->dir, note);
        row_end(out);
    }
    sbuf_printf(out, "\ntop offenders (%s)\n", source_of(v, v->ranked_ok));
    render_offenders(v, out);
}

static void view_finish(struct fleet_view *v)
{
    struct sbuf out;

    sbuf_init(&out);
    if (v->kind == VIEW_FLEET)
        render_fleet(v, &out);
    else if (v->kind == VIEW_OFFENDERS)
        render_offenders(v, &out);
    else
        render_top(v, &out);
    v->cb(v->arg, 1, out.data);
    sbuf_free(&out);
    free(v->m);
    free(v);
}

void fleet_info(struct fleet *f, int json, fleet_text_cb *cb, void *arg)
{
    view_start(f, VIEW_FLEET, json, 0, cb, arg);
}

void fleet_offenders(struct fleet *f, unsigned n, int json, fleet_text_cb *cb, void *arg)
{
    if (n == 0 || n > FLEET_OFFENDERS_MAX) {
        cb(arg, 0, "error: N must be 1 to 100");
        return;
    }
    view_start(f, VIEW_OFFENDERS, json, n, cb, arg);
}

void fleet_top(struct fleet *f, fleet_text_cb *cb, void *arg)
{
    view_start(f, VIEW_TOP, 0, FLEET_TOP_OFFENDERS, cb, arg);
}
