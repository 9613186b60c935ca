/*
 * siege_store - counting, polling and the response to sieges (see
 * siege_store.h; the state machine is siege.c)
 */

#include "siege_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "settle.h"
#include "siege.h"
#include "util.h"

#define SIEGE_BUCKETS 6             /* buckets in one window */
#define SIEGE_SLOTS (SIEGE_BUCKETS + 1)  /* read per poll: the window and one */
#define SIEGE_KEY_MAX 400           /* prefix (64) + domain (255) + bucket */
#define SIEGE_NETS_MAX 100000       /* established networks known here */
#define SIEGE_COUNTED_MAX 100000    /* networks whose visit was counted */
#define SIEGE_MARK_TTL_MS (86400ULL * 1000) /* a mark outlives every daemon */

/* KNOWN_ASSUMED: the store did not answer during a siege (fail open) */
enum { KNOWN_NO, KNOWN_CLEAN, KNOWN_RETRIED, KNOWN_EXEMPT, KNOWN_ASSUMED };

struct sdom {
    char name[256];
    struct siege_domain st;
    uint64_t deferred, admitted;    /* clients, by this process */
    uint64_t idx;                   /* bucket of b[0] */
    long long b[SIEGE_SLOTS];       /* the last known counts: of the last
                                     * poll, or reply to an increment */
    long long unsent;               /* unknown recipients not sent yet, */
    uint64_t unsent_idx;            /* all of this bucket */
};

struct siege_store {
    uv_loop_t *loop;
    uv_timer_t timer;               /* the poll */
    uv_timer_t count_timer;         /* the unsent counts, once a tick */
    struct store *store;
    int shared;
    int refs;                       /* owner, timers, outstanding store ops */
    int closing;
    unsigned gen;                   /* bumped when the domain table changes */
    int polling;
    struct cache *nets;             /* networks known here: established, or
                                     * not (revoked here) */
    struct cache *counted;          /* networks whose visit was counted
                                     * lately (for visit_ms) */
    struct settle *settle;          /* suspected networks (with Redis) */
    uint64_t cleared;               /* suspicions the verdict cleared */
    struct log_limiter store_rl;    /* store errors in a siege */
    /* settings, copied from the config */
    char prefix[CONFIG_PREFIX_MAX + 1];
    enum siege_action_cfg action;
    struct siege_rules rules;
    uint64_t window_ms, retry_min_ms, retry_max_ms, delay_ms, established_ms;
    uint64_t visit_ms;              /* retry_min / established_after */
    unsigned established_after, tarpit_share;
    struct sdom *doms;
    size_t ndoms;
    struct stats_siege *view;       /* for siege_stats */
};

/* ---- lifetime ---- */

static void ss_unref(struct siege_store *ss)
{
    if (--ss->refs > 0)
        return;
    cache_free(ss->nets);
    cache_free(ss->counted);
    free(ss->doms);
    free(ss->view);
    free(ss);
}

static void timer_closed(uv_handle_t *h)
{
    ss_unref(h->data);
}

static void poll_tick(uv_timer_t *t);
static void count_flush(struct siege_store *ss);
static settle_judge settled;

struct siege_store *siege_store_new(uv_loop_t *loop, struct store *store, int shared,
                                    struct evidence *ev)
{
    struct siege_store *ss = xcalloc(1, sizeof(*ss));

    ss->loop = loop;
    ss->store = store;
    ss->shared = shared;
    ss->refs = 3;                   /* owner and timers */
    ss->nets = cache_new(SIEGE_NETS_MAX);
    ss->counted = cache_new(SIEGE_COUNTED_MAX);
    /* alone (no Redis) a process sees every recipient at once: nothing
     * to wait for */
    if (shared)
        ss->settle = settle_new(loop, ev, SIEGE_SUSPECTS_MAX, settled, ss);
    ss->store_rl = (struct log_limiter)LOG_LIMITER_INIT(SIEGE_STORE_LOG_MS);
    uv_timer_init(loop, &ss->timer);
    ss->timer.data = ss;
    uv_timer_start(&ss->timer, poll_tick, SIEGE_POLL_MS, SIEGE_POLL_MS);
    uv_timer_init(loop, &ss->count_timer);
    ss->count_timer.data = ss;
    return ss;
}

void siege_store_free(struct siege_store *ss)
{
    if (!ss)
        return;
    count_flush(ss);                /* sent: lands if the store lingers */
    ss->closing = 1;
    settle_free(ss->settle);        /* suspicions unjudged: they stay */
    uv_close((uv_handle_t *)&ss->timer, timer_closed);
    uv_close((uv_handle_t *)&ss->count_timer, timer_closed);
    ss_unref(ss);
}

static struct sdom *dom_find(struct siege_store *ss, const char *name)
{
    for (size_t i = 0; i < ss->ndoms; i++)
        if (strcmp(ss->doms[i].name, name) == 0)
            return &ss->doms[i];
    return NULL;
}

/* verdict_times - a suspect's wait for its verdict fits in what Postfix
 * waits for an answer ([harvest] postfix_timeout), less the reads around
 * it (the standings before, the verdict's own, the directory after) and
 * a second: at most SIEGE_SETTLE_MAX_MS.  (A tarpit delay runs from the
 * request's arrival, so it covers the wait; policyd -t checks it.) */
static void verdict_times(const struct config *cfg, struct settle_times *t)
{
    uint64_t around = 2 * cfg->redis.timeout_ms + 1000, room = 0;

    if (strcmp(cfg->directory.backend, "ldap") == 0)
        around += cfg->ldap.timeout_ms;
    if (cfg->harvest.postfix_timeout_ms > around)
        room = cfg->harvest.postfix_timeout_ms - around;
    t->max_ms = room < SIEGE_SETTLE_MAX_MS ? room : SIEGE_SETTLE_MAX_MS;
    t->quiet_ms = SIEGE_QUIET_MS;
    t->delay_ms = SIEGE_SETTLE_MS < t->max_ms ? SIEGE_SETTLE_MS : t->max_ms;
}

void siege_store_configure(struct siege_store *ss, const struct config *cfg)
{
    const struct strlist *dl = &cfg->directory.domains;
    struct sdom *doms = xcalloc(dl->n ? dl->n : 1, sizeof(*doms));

    count_flush(ss);                /* to the keys of the old settings */
    snprintf(ss->prefix, sizeof(ss->prefix), "%s", cfg->redis.prefix ? cfg->redis.prefix : "");
    ss->action = cfg->siege.action;
    ss->rules.threshold = cfg->siege.threshold;
    ss->rules.baseline_factor = cfg->siege.baseline_factor;
    ss->rules.low_pct = cfg->siege.low_mark;
    ss->rules.cooldown_ms = cfg->siege.cooldown_ms;
    ss->rules.baseline_half_life_ms = cfg->siege.baseline_window_ms;
    ss->window_ms = cfg->siege.window_ms;
    ss->retry_min_ms = cfg->siege.retry_min_ms;
    ss->retry_max_ms = cfg->siege.retry_max_ms;
    ss->delay_ms = cfg->siege.delay_ms;
    ss->established_after = cfg->siege.established_after;
    ss->visit_ms = ss->retry_min_ms / ss->established_after;
    ss->established_ms = cfg->siege.established_days * 86400ULL * 1000;
    ss->tarpit_share = cfg->harvest.tarpit_share;
    if (ss->settle) {
        struct settle_times t;
        verdict_times(cfg, &t);
        settle_times(ss->settle, &t);
    }
    /* a domain that stays keeps its state; the table is new either way */
    for (size_t i = 0; i < dl->n; i++) {
        struct sdom *old = dom_find(ss, dl->v[i]);

        if (old)
            doms[i] = *old;
        else
            snprintf(doms[i].name, sizeof(doms[i].name), "%s", dl->v[i]);
    }
    free(ss->doms);
    free(ss->view);
    ss->doms = doms;
    ss->ndoms = dl->n;
    ss->view = xcalloc(dl->n ? dl->n : 1, sizeof(*ss->view));
    ss->gen++;
}

/* ---- keys ---- */

static size_t key_of(const struct siege_store *ss, char *out, const char *kind,
                     const char *name, const char *suffix)
{
    int n = snprintf(out, SIEGE_KEY_MAX, "%s%s%s%s", ss->prefix, kind, name, suffix);

    return n < 0 ? 0 : (size_t)n < SIEGE_KEY_MAX ? (size_t)n : SIEGE_KEY_MAX - 1;
}

static size_t bucket_key(const struct siege_store *ss, char *out,
                         const struct sdom *d, uint64_t idx)
{
    char suffix[32];

    snprintf(suffix, sizeof(suffix), ":%llu", (unsigned long long)idx);
    return key_of(ss, out, "r:", d->name, suffix);
}

static uint64_t bucket_ms(const struct siege_store *ss)
{
    return ss->window_ms / SIEGE_BUCKETS;
}

/* ---- the state machine's events ---- */

static void publish(struct siege_store *ss, const struct sdom *d)
{
    char key[SIEGE_KEY_MAX], val[SIEGE_WIRE_MAX];
    size_t klen = key_of(ss, key, "siege:", d->name, "");
    size_t vlen = siege_mark_encode(&d->st.m, val, sizeof(val));
    uint64_t ttl = SIEGE_MARK_TTL_MS, now = util_wall_ms();

    if (d->st.m.hold_until_ms > now + ttl)
        ttl = d->st.m.hold_until_ms - now;
    ss->store->ops->set(ss->store, key, klen, val, vlen, ttl);
}

static void events(struct siege_store *ss, struct sdom *d, unsigned ev, const char *source)
{
    if (ev & SIEGE_ENDED)
        log_info("siege: event=end domain=%s rate=%.1f trigger=%.1f baseline=%.1f "
                 "deferred=%llu admitted=%llu source=%s", d->name, d->st.rate,
                 siege_trigger(&ss->rules, &d->st), d->st.baseline,
                 (unsigned long long)d->deferred, (unsigned long long)d->admitted,
                 (ev & SIEGE_PUBLISH) ? source : "fleet");
    if (ev & SIEGE_BEGAN)
        log_info("siege: event=begin domain=%s rate=%.1f trigger=%.1f baseline=%.1f "
                 "action=%s source=%s", d->name, d->st.rate,
                 siege_trigger(&ss->rules, &d->st), d->st.baseline,
                 ss->action == SIEGE_ACT_DEFER ? "defer" : ss->action == SIEGE_ACT_TARPIT
                 ? "tarpit" : "off", (ev & SIEGE_PUBLISH) ? source : "fleet");
    if (ev & SIEGE_PUBLISH)
        publish(ss, d);
}

/* ---- polling: every domain's buckets and mark, one batch ---- */

struct poll;

struct poll_op {
    struct poll *p;
    unsigned dom, slot;             /* slot SIEGE_SLOTS: the mark */
};

struct poll_dom {
    long long b[SIEGE_SLOTS];
    int have_mark;
    struct siege_mark mark;
};

struct poll {
    struct siege_store *ss;
    unsigned gen, outstanding;
    uint64_t idx;                   /* the current bucket */
    double frac;                    /* of it elapsed */
    struct poll_dom *d;
    struct poll_op *ops;
};

static void poll_done(struct poll *p)
{
    struct siege_store *ss = p->ss;
    uint64_t now = util_wall_ms();

    if (--p->outstanding > 0)
        return;
    if (!ss->closing && p->gen == ss->gen) {
        for (size_t i = 0; i < ss->ndoms; i++) {
            struct sdom *d = &ss->doms[i];
            double rate = siege_window_rate(p->d[i].b, SIEGE_SLOTS, p->frac, ss->window_ms);

            memcpy(d->b, p->d[i].b, sizeof(d->b));
            d->idx = p->idx;
            events(ss, d, siege_observe(&ss->rules, &d->st, rate,
                                        p->d[i].have_mark ? &p->d[i].mark : NULL, now),
                   "rate");
        }
    }
    ss->polling = 0;
    free(p->d);
    free(p->ops);
    free(p);
    ss_unref(ss);
}

static void polled_count(void *arg, int status, long long count, long long ttl_ms)
{
    struct poll_op *op = arg;
    (void)ttl_ms;

    op->p->d[op->dom].b[op->slot] = status == STORE_OK ? count : 0;
    poll_done(op->p);
}

static void polled_mark(void *arg, int status, const char *val, size_t len)
{
    struct poll_op *op = arg;
    struct poll_dom *pd = &op->p->d[op->dom];

    pd->have_mark = status == STORE_OK && siege_mark_decode(val, len, &pd->mark) == 0;
    poll_done(op->p);
}

static void poll_tick(uv_timer_t *t)
{
    struct siege_store *ss = t->data;
    uint64_t now = util_wall_ms(), bms = bucket_ms(ss);
    struct poll *p;
    char key[SIEGE_KEY_MAX];

    if (ss->polling || ss->closing || !ss->ndoms)
        return;                     /* the last poll is still out */
    p = xcalloc(1, sizeof(*p));
    p->ss = ss;
    p->gen = ss->gen;
    p->idx = now / bms;
    p->frac = (double)(now % bms) / (double)bms;
    p->d = xcalloc(ss->ndoms, sizeof(*p->d));
    p->ops = xcalloc(ss->ndoms * (SIEGE_SLOTS + 1), sizeof(*p->ops));
    p->outstanding = 1;             /* until every op is issued */
    ss->polling = 1;
    ss->refs++;
    for (size_t i = 0; i < ss->ndoms; i++) {
        for (unsigned s = 0; s <= SIEGE_SLOTS; s++) {
            struct poll_op *op = &p->ops[i * (SIEGE_SLOTS + 1) + s];

            op->p = p;
            op->dom = (unsigned)i;
            op->slot = s;
            p->outstanding++;
            if (s < SIEGE_SLOTS) {
                size_t klen = bucket_key(ss, key, &ss->doms[i], p->idx - s);
                ss->store->ops->peek(ss->store, key, klen, 0, polled_count, op);
            } else {
                size_t klen = key_of(ss, key, "siege:", ss->doms[i].name, "");
                ss->store->ops->get(ss->store, key, klen, polled_mark, op);
            }
        }
    }
    poll_done(p);
}

/* ---- counting: one increment per domain per tick ---- */

struct count_op {
    struct siege_store *ss;
    unsigned gen;
    size_t dom;
    uint64_t idx;
};

/* window_at - d's buckets as of bucket idx (not before d->idx): the last
 * known counts, shifted */
static void window_at(const struct sdom *d, uint64_t idx, long long *b)
{
    memset(b, 0, SIEGE_SLOTS * sizeof(*b));
    for (uint64_t s = 0; s + (idx - d->idx) < SIEGE_SLOTS; s++)
        b[s + (idx - d->idx)] = d->b[s];
}

static double rate_of(const struct siege_store *ss, const long long *b, uint64_t now)
{
    uint64_t bms = bucket_ms(ss);

    return siege_window_rate(b, SIEGE_SLOTS, (double)(now % bms) / (double)bms,
                             ss->window_ms);
}

/* counted - the reply gives the current bucket's fleet count: with the
 * older buckets of the last poll, the rate now.  Kept as the last known
 * counts, for siege_unknown's estimate. */
static void counted(void *arg, int status, long long count, long long ttl_ms)
{
    struct count_op *op = arg;
    struct siege_store *ss = op->ss;
    (void)ttl_ms;

    if (status == STORE_OK && !ss->closing && op->gen == ss->gen) {
        struct sdom *d = &ss->doms[op->dom];
        uint64_t now = util_wall_ms();
        long long b[SIEGE_SLOTS];

        if (op->idx < d->idx)           /* a poll saw a later bucket already */
            goto out;
        window_at(d, op->idx, b);
        if (count > b[0])
            b[0] = count;
        memcpy(d->b, b, sizeof(d->b));
        d->idx = op->idx;
        events(ss, d, siege_observe(&ss->rules, &d->st, rate_of(ss, b, now), NULL, now),
               "rate");
    }
out:
    free(op);
    ss_unref(ss);
}

/* count_send - d's unsent count, to the store at once */
static void count_send(struct siege_store *ss, struct sdom *d)
{
    struct count_op *op = xmalloc(sizeof(*op));
    long long n = d->unsent;
    char key[SIEGE_KEY_MAX];
    size_t klen;

    op->ss = ss;
    op->gen = ss->gen;
    op->dom = (size_t)(d - ss->doms);
    op->idx = d->unsent_idx;
    d->unsent = 0;
    ss->refs++;
    /* a bucket lives its window and one more, so a poll reads it whole */
    klen = bucket_key(ss, key, d, op->idx);
    ss->store->ops->incr(ss->store, key, klen, n, ss->window_ms + 2 * bucket_ms(ss), 0, 0,
                         counted, op);
}

static void count_flush(struct siege_store *ss)
{
    for (size_t i = 0; i < ss->ndoms; i++)
        if (ss->doms[i].unsent)
            count_send(ss, &ss->doms[i]);
}

static void count_tick(uv_timer_t *t)
{
    count_flush(t->data);
}

/* ---- the request path ---- */

/* known_here - net's standing as established in this process's table:
 * 1 and *known when it has one (KNOWN_NO: revoked here lately), else 0 */
static int known_here(struct siege_store *ss, const char *net, int *known)
{
    int64_t v;
    uint64_t exp;

    *known = KNOWN_NO;
    if (!cache_get(ss->nets, net, strlen(net), util_now_ms(), &v, &exp))
        return 0;
    *known = (int)v;
    return 1;
}

/* remember - in this process's table: with Redis, trusted here only
 * SIEGE_REFRESH_MS; the store keeps it */
static void remember(struct siege_store *ss, const char *net, int known, uint64_t life_ms)
{
    if (ss->shared && life_ms > SIEGE_REFRESH_MS)
        life_ms = SIEGE_REFRESH_MS;
    cache_put(ss->nets, net, strlen(net), known, util_now_ms() + life_ms);
}

static void got_established(void *arg, int status, const char *val, size_t len)
{
    struct siege_client *sc = arg;
    struct siege_store *ss = sc->ss;

    if (status == STORE_OK && len == 1 && (val[0] == 'c' || val[0] == 'r')) {
        sc->known = val[0] == 'c' ? KNOWN_CLEAN : KNOWN_RETRIED;
        remember(ss, sc->net, sc->known, SIEGE_REFRESH_MS);
    } else if (status == STORE_ERR) {
        /* fail open, like the rest of policyd without Redis: an MTA is
         * not deferred for our outage (the harvest rules still hold);
         * not remembered, so the store is asked again next time */
        sc->known = KNOWN_ASSUMED;
        log_warn_rl(&ss->store_rl, "siege: the store did not answer for net=%s: "
                    "taken as established", sc->net);
    }
    sc->cb(sc->arg);
}

/* read_established - sc->net's standing as established: here, else (with
 * Redis) in the store.  cb once. */
static void read_established(struct siege_client *sc)
{
    struct siege_store *ss = sc->ss;
    char key[SIEGE_KEY_MAX];
    size_t klen;

    if (known_here(ss, sc->net, &sc->known) || !ss->shared) {
        sc->cb(sc->arg);
        return;
    }
    klen = key_of(ss, key, "s:", sc->net, "");
    ss->store->ops->get(ss->store, key, klen, got_established, sc);
}

static void client_init(struct siege_store *ss, const struct harvest_client *hc,
                        struct siege_client *sc, siege_cb *cb, void *arg)
{
    sc->ss = ss;
    sc->dom = -1;
    sc->gen = ss->gen;
    sc->siege = 0;
    sc->admitted = 0;
    sc->pending_ms = -1;
    sc->pending_visits = 0;
    sc->cb = cb;
    sc->arg = arg;
    sc->known = hc->trusted || !hc->nlevels ? KNOWN_EXEMPT : KNOWN_NO;
    sc->net[0] = '\0';
    if (!hc->trusted && hc->nlevels)
        memcpy(sc->net, hc->lv[SCORE_NARROW].net, EVIDENCE_NET_MAX);
}

void siege_check(struct siege_store *ss, const char *domain,
                 const struct harvest_client *hc, struct siege_client *sc,
                 siege_cb *cb, void *arg)
{
    struct sdom *d = dom_find(ss, domain);

    client_init(ss, hc, sc, cb, arg);
    if (d)
        sc->dom = (int)(d - ss->doms);
    sc->siege = d && d->st.m.on && ss->action != SIEGE_ACT_OFF;
    if (!sc->siege || sc->known) {
        /* outside a siege nothing is read */
        if (!sc->known)
            known_here(ss, sc->net, &sc->known);
        cb(arg);
        return;
    }
    read_established(sc);
}

enum siege_response siege_response(const struct siege_client *sc)
{
    if (!sc->siege || sc->known || sc->admitted)
        return SIEGE_NONE;
    return sc->ss->action == SIEGE_ACT_TARPIT ? SIEGE_TARPIT : SIEGE_DEFER;
}

/* tag_of - the client's domain and the table it indexes, in one word
 * (kept with a suspicion, whose verdict may come after a reload) */
static uint64_t tag_of(const struct siege_client *sc)
{
    return (uint64_t)sc->gen << 32 | (uint32_t)sc->dom;
}

/* dom_of_tag - the domain of a tag, unless a reload changed the table
 * (no domain: dom -1, beyond every table) */
static struct sdom *dom_of_tag(const struct siege_store *ss, uint64_t tag)
{
    uint32_t dom = (uint32_t)tag;

    return (unsigned)(tag >> 32) == ss->gen && dom < ss->ndoms ? &ss->doms[dom] : NULL;
}

/* dom_of - the client's domain, unless a reload changed the table since */
static struct sdom *dom_of(const struct siege_client *sc)
{
    return dom_of_tag(sc->ss, tag_of(sc));
}

/* age_of - of a key made to live life_ms, from its remaining life ttl_ms
 * (-1: none); 0 when that does not tell */
static uint64_t age_of(uint64_t life_ms, long long ttl_ms)
{
    return ttl_ms >= 0 && (uint64_t)ttl_ms < life_ms ? life_ms - (uint64_t)ttl_ms : 0;
}

static void retried(void *arg, int status, long long count, long long ttl_ms)
{
    struct siege_client *sc = arg;
    struct siege_store *ss = sc->ss;
    struct sdom *d = dom_of(sc);
    uint64_t age = age_of(ss->retry_max_ms, ttl_ms);

    /* a real MTA comes back after minutes; a bot at once, or never */
    if (status == STORE_OK && count > 1 && age >= ss->retry_min_ms) {
        char key[SIEGE_KEY_MAX];
        size_t klen = key_of(ss, key, "s:", sc->net, "");

        sc->admitted = 1;
        if (d)
            d->admitted++;
        remember(ss, sc->net, KNOWN_RETRIED, ss->retry_max_ms);
        ss->store->ops->set(ss->store, key, klen, "r", 1, ss->retry_max_ms);
        log_info("siege: event=admit domain=%s net=%s waited=%.0fs",
                 d ? d->name : "-", sc->net, age / 1000.0);
    } else if (status == STORE_OK && count == 1 && d) {
        d->deferred++;
    }
    sc->cb(sc->arg);
}

void siege_admit(struct siege_client *sc, siege_cb *cb, void *arg)
{
    struct siege_store *ss = sc->ss;
    char key[SIEGE_KEY_MAX];
    size_t klen = key_of(ss, key, "w:", sc->net, "");

    sc->cb = cb;
    sc->arg = arg;
    ss->store->ops->incr(ss->store, key, klen, 1, ss->retry_max_ms, 0, 0, retried, sc);
}

void siege_unknown(struct siege_client *sc)
{
    struct siege_store *ss = sc->ss;
    struct sdom *d = dom_of(sc);
    uint64_t now, idx;

    if (sc->known == KNOWN_EXEMPT || !d || ss->closing)
        return;                 /* established or not: see siege_store.h */
    now = util_wall_ms();
    idx = now / bucket_ms(ss);
    if (d->unsent && d->unsent_idx != idx)
        count_send(ss, d);      /* its bucket is over: counted in it */
    d->unsent_idx = idx;
    d->unsent++;
    /* the last known counts and ours cross the trigger: sent at once, so
     * the siege begins on this request, not a tick of guesses later (a
     * siege, or an operator's hold, ends the estimate) */
    if (!d->st.m.on && d->st.m.hold_until_ms <= now && idx >= d->idx) {
        long long b[SIEGE_SLOTS];

        window_at(d, idx, b);
        b[0] += d->unsent;
        if (rate_of(ss, b, now) > siege_trigger(&ss->rules, &d->st)) {
            count_send(ss, d);
            return;
        }
    }
    if (!uv_is_active((uv_handle_t *)&ss->count_timer))
        uv_timer_start(&ss->count_timer, count_tick, SIEGE_COUNT_MS, 0);
}

/* ---- established networks: earned over retry_min, lost by guessing ---- */

/* with_this - hc's narrow standing before this request, and this
 * recipient (valid or not; a trap counts as an invalid one) */
static struct score with_this(const struct harvest_client *hc, int valid)
{
    struct score s = hc->lv[SCORE_NARROW].before;

    if (valid)
        s.valid += 1;
    else
        s.invalid += 1;
    return s;
}

/* share_of - of invalid recipients, 0..1; s has one at least */
static double share_of(const struct score *s)
{
    return s->invalid / (s->invalid + s->valid);
}

struct pend_op {
    struct siege_store *ss;
    int clean;                      /* the share, at the request */
    char net[EVIDENCE_NET_MAX];
};

/* pended - "p:" NET was counted: its count is the network's visits
 * since its first, and its remaining life tells when that was, on
 * whichever policyd.  Established once they span retry_min: a burst,
 * however clean, is not an MTA. */
static void pended(void *arg, int status, long long count, long long ttl_ms)
{
    struct pend_op *op = arg;
    struct siege_store *ss = op->ss;
    uint64_t age = age_of(ss->retry_max_ms, ttl_ms);

    if (status == STORE_OK && !ss->closing && op->clean &&
        count >= (long long)ss->established_after && age >= ss->retry_min_ms) {
        char key[SIEGE_KEY_MAX];
        size_t klen = key_of(ss, key, "s:", op->net, "");

        remember(ss, op->net, KNOWN_CLEAN, ss->established_ms);
        ss->store->ops->set(ss->store, key, klen, "c", 1, ss->established_ms);
    } else if (status == STORE_OK && !ss->closing && op->clean &&
               count + 1 >= (long long)ss->established_after && age < ss->retry_min_ms) {
        /* one more visit establishes it once retry_min has passed: this
         * visit ends then, so it is established at retry_min, not up to
         * visit_ms later */
        uint64_t now = util_now_ms(), ripe = now + (ss->retry_min_ms - age), exp;
        size_t nlen = strlen(op->net);
        int64_t v;

        if (cache_get(ss->counted, op->net, nlen, now, &v, &exp) && ripe < exp)
            cache_put(ss->counted, op->net, nlen, v, ripe);
    }
    free(op);
    ss_unref(ss);
}

void siege_delivered(struct siege_client *sc, const struct harvest_client *hc)
{
    struct siege_store *ss = sc->ss;
    struct pend_op *op;
    struct score s;
    char key[SIEGE_KEY_MAX];
    size_t klen, nlen = strlen(sc->net);
    uint64_t now, exp;
    int64_t v;

    /* established: siege_check found it here (written less than
     * SIEGE_REFRESH_MS ago) or in the store */
    if (hc->exempt || ss->closing || sc->known == KNOWN_CLEAN)
        return;
    /* a visit counts once: its other recipients cost this lookup alone */
    now = util_now_ms();
    if (ss->visit_ms && cache_get(ss->counted, sc->net, nlen, now, &v, &exp))
        return;
    if (ss->visit_ms)
        cache_put(ss->counted, sc->net, nlen, 1, now + ss->visit_ms);
    s = with_this(hc, 1);
    op = xmalloc(sizeof(*op));
    op->ss = ss;
    op->clean = share_of(&s) * 100 < ss->tarpit_share;
    memcpy(op->net, sc->net, sizeof(op->net));
    ss->refs++;
    /* a new key lives retry_max: the sender comes back within it, or
     * starts over (and a /48 of /64s leaves nothing for weeks) */
    klen = key_of(ss, key, "p:", sc->net, "");
    ss->store->ops->incr(ss->store, key, klen, 1, ss->retry_max_ms, 0, 0, pended, op);
}

struct revoke_op {
    struct siege_store *ss;
    int was;                        /* known here as established */
    struct score s;                 /* the standing that revoked it */
    char net[EVIDENCE_NET_MAX];
    char domain[sizeof(((struct sdom *)0)->name)];
};

/* revoked - "s:" NET is gone: logged when it was established (here, or
 * in the store), not for every bot that never was */
static void revoked(void *arg, int status, long long count, long long ttl_ms)
{
    struct revoke_op *op = arg;
    (void)ttl_ms;

    if (op->was || (status == STORE_OK && count > 0))
        log_info("siege: event=revoke domain=%s net=%s invalid=%.0f valid=%.0f share=%.2f",
                 op->domain, op->net, op->s.invalid, op->s.valid, share_of(&op->s));
    ss_unref(op->ss);
    free(op);
}

static void forgotten(void *arg, int status, long long count, long long ttl_ms)
{
    (void)arg, (void)status, (void)count, (void)ttl_ms;
}

/* guessing - s, a narrow standing with an unknown recipient, is a
 * harvest's: enough invalid recipients (whole, as score.c counts: a typo
 * is not a harvest) at a share of tarpit_share or more */
static int guessing(const struct siege_store *ss, const struct score *s)
{
    return s->invalid + 0.5 >= SIEGE_REVOKE_MIN_INVALID && share_of(s) * 100 >= ss->tarpit_share;
}

/* revoke - net is not established, fleet-wide, whichever policyd
 * established it, and earns it anew over retry_min (its next visit
 * counts); was: known as established by the caller.  s revoked it. */
static void revoke(struct siege_store *ss, const char *net, const struct sdom *d,
                   const struct score *s, int was)
{
    struct revoke_op *op = xmalloc(sizeof(*op));
    char key[SIEGE_KEY_MAX];

    op->ss = ss;
    op->was = was;
    op->s = *s;
    snprintf(op->net, sizeof(op->net), "%s", net);
    snprintf(op->domain, sizeof(op->domain), "%s", d ? d->name : "-");
    remember(ss, net, KNOWN_NO, SIEGE_REFRESH_MS);
    cache_del(ss->counted, net, strlen(net));
    ss->refs++;
    ss->store->ops->del(ss->store, key, key_of(ss, key, "s:", net, ""), revoked, op);
    ss->store->ops->del(ss->store, key, key_of(ss, key, "p:", net, ""), forgotten, NULL);
}

static int was_established(int known)
{
    return known == KNOWN_CLEAN || known == KNOWN_RETRIED;
}

/* suspect - net's verdict waits for the fleet (settle.h); a full table
 * judges at once, on s */
static void suspect(struct siege_store *ss, const char *net, uint64_t tag,
                    const struct score *s)
{
    if (settle_add(ss->settle, net, tag) < 0)
        revoke(ss, net, dom_of_tag(ss, tag), s, 1);
}

/* settled - the verdict on a suspected network (settle.h): its standing
 * once every policyd has merged what it had seen.  tag: the suspicion's
 * domain and the table it indexes. */
static void settled(void *owner, const char *net, uint64_t tag, const struct score *s,
                    int from_store)
{
    struct siege_store *ss = owner;
    int here;
    (void)from_store;

    if (ss->closing)
        return;
    if (!guessing(ss, s)) {
        ss->cleared++;              /* the fleet had more valid recipients */
        return;
    }
    if (known_here(ss, net, &here) && here == KNOWN_NO)
        return;                     /* revoked here meanwhile */
    revoke(ss, net, dom_of_tag(ss, tag), s, was_established(here));
}

struct probe_op {
    struct siege_store *ss;
    uint64_t tag;
    struct score s;
    char net[EVIDENCE_NET_MAX];
};

/* probed - is a guessing network, not known here, established?  Then a
 * suspect; else nothing is lost by revoking at once (its visits start
 * over).  A store that did not answer: a suspect (the verdict reads it
 * again). */
static void probed(void *arg, int status, const char *val, size_t len)
{
    struct probe_op *op = arg;
    struct siege_store *ss = op->ss;
    int here;

    if (!ss->closing && !(known_here(ss, op->net, &here) && here == KNOWN_NO)) {
        if (status == STORE_ERR || (status == STORE_OK && len == 1 &&
                                    (val[0] == 'c' || val[0] == 'r')))
            suspect(ss, op->net, op->tag, &op->s);
        else
            revoke(ss, op->net, dom_of_tag(ss, op->tag), &op->s, 0);
    }
    ss_unref(ss);
    free(op);
}

void siege_invalid(struct siege_client *sc, const struct harvest_client *hc)
{
    struct siege_store *ss = sc->ss;
    struct probe_op *op;
    struct score s;
    int here;
    char key[SIEGE_KEY_MAX];

    if (sc->known == KNOWN_EXEMPT || ss->closing)
        return;
    s = with_this(hc, 0);
    if (!guessing(ss, &s))
        return;
    if (known_here(ss, sc->net, &here) && here == KNOWN_NO)
        return;                     /* revoked here less than SIEGE_REFRESH_MS ago */
    if (!ss->settle || (sc->siege && sc->known == KNOWN_NO)) {
        /* alone, no other policyd holds anything back; or a siege's read
         * just found it not established */
        sc->known = KNOWN_NO;
        revoke(ss, sc->net, dom_of(sc), &s, was_established(here));
        return;
    }
    /* other policyd may hold valid recipients of it that the store has
     * not had yet: an established network's verdict waits for them */
    if (was_established(here) || was_established(sc->known) || sc->known == KNOWN_ASSUMED) {
        suspect(ss, sc->net, tag_of(sc), &s);
        return;
    }
    op = xmalloc(sizeof(*op));
    op->ss = ss;
    op->tag = tag_of(sc);
    op->s = s;
    memcpy(op->net, sc->net, sizeof(op->net));
    ss->refs++;
    ss->store->ops->get(ss->store, key, key_of(ss, key, "s:", sc->net, ""), probed, op);
}

/* suspicion_over - the verdict: the siege's answer if it revoked */
static void suspicion_over(void *arg)
{
    struct siege_client *sc = arg;
    int here;

    if (known_here(sc->ss, sc->net, &here) && here == KNOWN_NO)
        sc->known = KNOWN_NO;
    sc->cb(sc->arg);
}

int siege_suspect(struct siege_client *sc, const struct harvest_client *hc,
                  siege_cb *cb, void *arg)
{
    struct siege_store *ss = sc->ss;

    if (!ss->settle || ss->closing || !sc->siege ||
        !(was_established(sc->known) || sc->known == KNOWN_ASSUMED))
        return 0;
    sc->wait.cb = suspicion_over;
    sc->wait.arg = sc;
    sc->cb = cb;
    sc->arg = arg;
    if (settle_wait(ss->settle, sc->net, &sc->wait))
        return 1;
    if (!guessing(ss, &hc->lv[SCORE_NARROW].before))
        return 0;
    suspect(ss, sc->net, tag_of(sc), &hc->lv[SCORE_NARROW].before);
    if (settle_wait(ss->settle, sc->net, &sc->wait))
        return 1;
    sc->known = KNOWN_NO;           /* the table was full: revoked at once */
    return 0;
}

/* ---- the operator ---- */

struct est_op {
    struct siege_client *sc;
    siege_cb *cb;
    void *arg;
};

static void est_done(struct est_op *op)
{
    op->cb(op->arg);
    free(op);
}

static void est_pending(void *arg, int status, long long count, long long ttl_ms)
{
    struct est_op *op = arg;

    if (status == STORE_OK) {
        op->sc->pending_ms = (long long)age_of(op->sc->ss->retry_max_ms, ttl_ms);
        op->sc->pending_visits = count;
    }
    est_done(op);
}

/* est_read - not established: is it on its way? */
static void est_read(void *arg)
{
    struct est_op *op = arg;
    struct siege_client *sc = op->sc;
    struct siege_store *ss = sc->ss;
    char key[SIEGE_KEY_MAX];

    if (sc->known) {
        est_done(op);
        return;
    }
    ss->store->ops->peek(ss->store, key, key_of(ss, key, "p:", sc->net, ""), 1,
                         est_pending, op);
}

void siege_established(struct siege_store *ss, const struct harvest_client *hc,
                       struct siege_client *sc, siege_cb *cb, void *arg)
{
    struct est_op *op = xmalloc(sizeof(*op));

    op->sc = sc;
    op->cb = cb;
    op->arg = arg;
    client_init(ss, hc, sc, est_read, op);
    if (sc->known)
        est_done(op);
    else
        read_established(sc);
}

void siege_established_text(const struct siege_client *sc, int json, struct sbuf *out)
{
    static const char *const text[] = { "no", "yes (clean record)",
        "yes (retried during a siege)", "yes (whitelisted or exempt)",
        "not known (the store did not answer: a siege spares it)" };
    static const char *const word[] = { "no", "clean", "retried", "exempt", "assumed" };
    const struct siege_store *ss = sc->ss;

    if (json) {
        sbuf_printf(out, "\"established\":\"%s\"", word[sc->known]);
        if (sc->pending_ms >= 0)
            sbuf_printf(out, ",\"pending_s\":%.1f,\"pending_visits\":%lld",
                        sc->pending_ms / 1000.0, sc->pending_visits);
        return;
    }
    sbuf_printf(out, "established: %s", text[sc->known]);
    /* a visit: its valid recipients, counted once per visit_ms here */
    if (sc->pending_ms >= 0)
        sbuf_printf(out, " (pending since %.0fs, visits %lld of %u, spanning %.0fs "
                    "within %.0fs, one counted per %.*fs, under %u%% invalid)",
                    sc->pending_ms / 1000.0, sc->pending_visits, ss->established_after,
                    ss->retry_min_ms / 1000.0, ss->retry_max_ms / 1000.0,
                    ss->visit_ms < 10000 ? 1 : 0, ss->visit_ms / 1000.0, ss->tarpit_share);
}

int siege_force_domain(struct siege_store *ss, const char *domain, int on,
                       uint64_t hold_ms)
{
    struct sdom *d = dom_find(ss, domain);

    if (!d)
        return -1;
    events(ss, d, siege_force(&d->st, on, hold_ms, util_wall_ms()), "operator");
    return 0;
}

void siege_info(struct siege_store *ss, int json, struct sbuf *out)
{
    uint64_t now = util_wall_ms();
    const char *action = ss->action == SIEGE_ACT_DEFER ? "defer"
        : ss->action == SIEGE_ACT_TARPIT ? "tarpit" : "off";
    size_t suspects = ss->settle ? settle_count(ss->settle) : 0;

    if (json)
        sbuf_printf(out, "{\"action\":\"%s\",\"suspects\":%zu,\"suspects_cleared\":%llu,"
                    "\"domains\":[", action, suspects, (unsigned long long)ss->cleared);
    for (size_t i = 0; i < ss->ndoms; i++) {
        const struct sdom *d = &ss->doms[i];
        double trigger = siege_trigger(&ss->rules, &d->st);
        double ago = d->st.m.changed_ms && d->st.m.changed_ms <= now
            ? (double)(now - d->st.m.changed_ms) / 1000.0 : 0;
        double hold = d->st.m.hold_until_ms > now
            ? (double)(d->st.m.hold_until_ms - now) / 1000.0 : 0;

        if (json) {
            sbuf_printf(out, "%s{\"domain\":\"%s\",\"siege\":%s,\"since\":%llu,"
                        "\"since_s\":%.1f,\"rate\":%.1f,\"baseline\":%.2f,"
                        "\"trigger\":%.1f,\"low_mark\":%.1f,\"hold_s\":%.1f,"
                        "\"deferred\":%llu,\"admitted\":%llu}", i ? "," : "",
                        d->name, d->st.m.on ? "true" : "false",
                        (unsigned long long)(d->st.m.changed_ms / 1000), ago,
                        d->st.rate, d->st.baseline, trigger,
                        trigger * ss->rules.low_pct / 100.0, hold,
                        (unsigned long long)d->deferred, (unsigned long long)d->admitted);
            continue;
        }
        sbuf_printf(out, "%sdomain: %s\nstate: %s\n", i ? "\n" : "", d->name,
                    d->st.m.on ? "siege" : "normal");
        if (d->st.m.changed_ms)
            sbuf_printf(out, "since: %llu (%.0fs ago)\n",
                        (unsigned long long)(d->st.m.changed_ms / 1000), ago);
        sbuf_printf(out, "rate: %.1f/min\nbaseline: %.2f/min\ntrigger: %.1f/min\n"
                    "low_mark: %.1f/min\n", d->st.rate, d->st.baseline, trigger,
                    trigger * ss->rules.low_pct / 100.0);
        if (hold > 0)
            sbuf_printf(out, "held_by_operator_s: %.0f\n", hold);
        sbuf_printf(out, "action: %s\ndeferred: %llu\nadmitted: %llu\n", action,
                    (unsigned long long)d->deferred, (unsigned long long)d->admitted);
    }
    if (json)
        sbuf_printf(out, "]}");
    else
        sbuf_printf(out, "\nsuspects: %zu (awaiting a verdict; cleared so far: %llu)\n",
                    suspects, (unsigned long long)ss->cleared);
}

void siege_stats(struct siege_store *ss, struct stats_extra *x)
{
    for (size_t i = 0; i < ss->ndoms; i++) {
        const struct sdom *d = &ss->doms[i];
        struct stats_siege *v = &ss->view[i];

        v->domain = d->name;
        v->on = d->st.m.on;
        v->rate = d->st.rate;
        v->baseline = d->st.baseline;
        v->trigger = siege_trigger(&ss->rules, &d->st);
        v->deferred = d->deferred;
        v->admitted = d->admitted;
    }
    x->siege = ss->view;
    x->nsiege = (unsigned)ss->ndoms;
}
