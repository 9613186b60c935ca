/*
 * siege_store - counting and polling: each domain's rate of unknown
 * recipients, fleet-wide, and its siege (see siege_store.h; the state
 * machine is siege.c)
 *
 * SYNOPSIS
 *	#include "siege_store.h"
 *
 *	struct siege_store *siege_store_new(loop, store, shared, ev)
 *	void siege_store_configure(ss, cfg)
 *	void siege_store_free(ss)
 *	void siege_unknown(sc)
 *	int siege_force_domain(ss, domain, on, hold_ms)
 *	void siege_info(ss, json, out)
 *	void siege_stats(ss, x)
 *
 *	#include "siege_store_priv.h"
 *
 *	void ss_unref(ss)
 *	struct sdom *ss_dom_find(ss, name)
 *	size_t ss_key_of(ss, out, kind, name, suffix)
 *
 * DESCRIPTION
 *	The domain-wide rate side of siege_store.h.  Lifetime: the store's
 *	poll and count timers, its references, and (with Redis) the settle
 *	that holds the suspects siege_est.c judges; configure copies the
 *	settings and keeps the state of the domains that stay.  Keys:
 *	PREFIX, a kind ("r:", "siege:", "s:", "p:", "w:") and a name, for
 *	both files.  The state machine's events: logged, and the mark
 *	published when this process changed it.  Polling: every domain's
 *	buckets and mark, one batch each SIEGE_POLL_MS.  Counting:
 *	siege_unknown counts a domain's unknown recipients here, sent as one
 *	increment per domain each SIEGE_COUNT_MS tick (and when their bucket
 *	ends, or at once when they cross the trigger outside a siege or an
 *	operator's hold).  The operator: siege_force_domain, siege_info and
 *	siege_stats, every domain's siege.
 *
 *	Which clients are established, and the response to them, are
 *	siege_est.c's; what the two files share is siege_store_priv.h.
 */

#include "siege_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "settle.h"
#include "siege.h"
#include "siege_store_priv.h"
#include "util.h"

/* ---- lifetime ---- */

void ss_unref(struct siege_store *ss)
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
        ss->settle = settle_new(loop, ev, SIEGE_SUSPECTS_MAX, ss_settled, ss);
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

struct sdom *ss_dom_find(struct siege_store *ss, const char *name)
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
        struct sdom *old = ss_dom_find(ss, dl->v[i]);

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

size_t ss_key_of(const struct siege_store *ss, char *out, const char *kind,
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
    return ss_key_of(ss, out, "r:", d->name, suffix);
}

static uint64_t bucket_ms(const struct siege_store *ss)
{
    return ss->window_ms / SIEGE_BUCKETS;
}

/* ---- the state machine's events ---- */

static void publish(struct siege_store *ss, const struct sdom *d)
{
    char key[SIEGE_KEY_MAX], val[SIEGE_WIRE_MAX];
    size_t klen = ss_key_of(ss, key, "siege:", d->name, "");
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
                size_t klen = ss_key_of(ss, key, "siege:", ss->doms[i].name, "");
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

/* ---- the request path: an unknown recipient, counted ---- */

void siege_unknown(struct siege_client *sc)
{
    struct siege_store *ss = sc->ss;
    struct sdom *d = ss_dom_of(sc);
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

/* ---- the operator: every domain's siege ---- */

int siege_force_domain(struct siege_store *ss, const char *domain, int on,
                       uint64_t hold_ms)
{
    struct sdom *d = ss_dom_find(ss, domain);

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
