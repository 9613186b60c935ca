/*
 * policy - the decision pipeline and the runtime it runs on (see policy.h)
 *
 * A runtime is one config with everything built from it: directory,
 * lookup chain, harvest.  Jobs hold a reference to the runtime they started
 * on, so a reload never pulls a backend from under a query in flight.  The
 * store is shared between runtimes while its settings stay the same, so a
 * reload keeps in-memory counters and the Redis connection.
 *
 * Finished jobs go to a free list with their timer still initialized: the
 * steady state allocates nothing per request.
 */

#include "policy.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/directory.h"
#include "../backends/store.h"
#include "address.h"
#include "evidence.h"
#include "harvest.h"
#include "log.h"
#include "lookup.h"
#include "siege_store.h"
#include "util.h"

#define JOB_FREE_MAX 4096           /* idle jobs kept for reuse */

static const char DUNNO[] = "DUNNO";

/* The store and the evidence kept in it live as long as their settings:
 * a reload that keeps them keeps the counts and the Redis connection. */
struct store_ref {
    int refs;
    struct store *store;
    struct evidence *evidence;
    struct siege_store *siege;      /* siege: domains' state, kept across reloads */
    char *sig;                      /* the settings it was built from */
};

struct runtime {
    int refs;
    struct config *cfg;
    struct store_ref *store;
    struct directory *dir;
    struct lookup *lookup;
    struct harvest *harvest;
};

/* The policy is reference-counted: its owner holds one reference and every
 * job another, so a job that outlives policy_free() (cancelled while it
 * waited on LDAP or Redis) still has a policy to return to. */
struct policy {
    int refs;
    int closing;                    /* policy_free() was called */
    uv_loop_t *loop;
    struct runtime *rt;
    struct policy_job *free_jobs;
    size_t nfree;
};

/* STEP_STATE: the client's standings and the cached answer are read at the
 * same time (store reads, one round trip to Redis); the directory is asked
 * only after both, and only for a client that is not blocked. */
enum job_step { STEP_STATE, STEP_SIEGE, STEP_EXISTS, STEP_DELAY, STEP_DONE };

struct policy_job {
    uv_timer_t timer;               /* first: kept initialized across reuse */
    struct policy *p;
    struct runtime *rt;
    policy_done_fn *done;
    void *arg;
    enum job_step step;
    int sync;                       /* still inside policy_decide */
    int cancelled;
    int outstanding;                /* STEP_STATE: reads not yet back */
    enum dir_status cached;         /* STEP_STATE: the cache's answer */
    struct harvest_client client;
    struct harvest_decision harvest;    /* from the standing before this request */
    struct siege_client siege;      /* siege: the domain's state, the client's */
    struct lookup_wait wait;
    uint64_t start_us;
    uint64_t delay_ms;
    const char *action;
    enum stats_verdict verdict;
    struct policy_job *next_free;
    /* from here on written before they are read: job_get does not clear
     * them (more than half of the job) */
    struct address addr;
    char client_ip[64];
    char queue_id[32];
    char dry[512];                  /* [actions] dry_run: "WARN action" */
};

/* ---- runtimes ---- */

static char *store_signature(const struct config *cfg)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "%s|%s|%u|%s|%llu|%llu|%s|%zu|%llu",
                cfg->redis.address ? cfg->redis.address : "",
                cfg->redis.password ? cfg->redis.password : "", cfg->redis.db,
                cfg->redis.prefix ? cfg->redis.prefix : "",
                (unsigned long long)cfg->redis.timeout_ms,
                (unsigned long long)cfg->redis.connect_timeout_ms,
                cfg->redis.master_name ? cfg->redis.master_name : "",
                cfg->harvest.max_tracked,
                (unsigned long long)cfg->harvest.window_ms);
    for (size_t i = 0; i < cfg->redis.sentinels.n; i++)
        sbuf_printf(&b, "|%s", cfg->redis.sentinels.v[i]);
    return b.data;
}

static int store_is_shared(const struct config *cfg)
{
    return cfg->redis.address || cfg->redis.sentinels.n;
}

static void store_release(struct store_ref *s)
{
    if (s && --s->refs == 0) {
        evidence_free(s->evidence);
        siege_store_free(s->siege);
        store_free(s->store);
        free(s->sig);
        free(s);
    }
}

static void runtime_release(struct runtime *rt)
{
    if (!rt || --rt->refs > 0)
        return;
    harvest_free(rt->harvest);
    lookup_free(rt->lookup);
    directory_free(rt->dir);
    store_release(rt->store);
    config_free(rt->cfg);
    free(rt);
}

/* runtime_new - adopts cfg on success; reuses old's store when the store
 * settings are unchanged. */
static struct runtime *runtime_new(uv_loop_t *loop, struct config *cfg,
                                   const struct runtime *old, char *err, size_t errlen)
{
    struct runtime *rt = xcalloc(1, sizeof(*rt));
    char *sig = store_signature(cfg);

    rt->refs = 1;
    if (old && strcmp(old->store->sig, sig) == 0) {
        rt->store = old->store;
        rt->store->refs++;
        free(sig);
    } else {
        struct store *st = store_new(loop, cfg, err, errlen);
        if (!st) {
            free(sig);
            free(rt);
            return NULL;
        }
        rt->store = xcalloc(1, sizeof(*rt->store));
        rt->store->refs = 1;
        rt->store->store = st;
        rt->store->sig = sig;
        /* standings are shared through the store only when it is Redis */
        rt->store->evidence = evidence_new(loop, cfg, store_is_shared(cfg) ? st : NULL);
        rt->store->siege = siege_store_new(loop, st, store_is_shared(cfg),
                                            rt->store->evidence);
    }
    rt->dir = directory_new(loop, cfg, err, errlen);
    if (!rt->dir) {
        store_release(rt->store);
        free(rt);
        return NULL;
    }
    rt->cfg = cfg;
    /* answers are shared through the store only when it is Redis */
    rt->lookup = lookup_new(cfg, rt->dir,
                            store_is_shared(cfg) ? rt->store->store : NULL);
    rt->harvest = harvest_new(cfg, rt->store->evidence);
    evidence_configure(rt->store->evidence, cfg);
    siege_store_configure(rt->store->siege, cfg);
    return rt;
}

struct policy *policy_new(uv_loop_t *loop, struct config *cfg, char *err,
                          size_t errlen)
{
    struct policy *p = xcalloc(1, sizeof(*p));
    p->refs = 1;
    p->loop = loop;
    p->rt = runtime_new(loop, cfg, NULL, err, errlen);
    if (!p->rt) {
        free(p);
        return NULL;
    }
    return p;
}

int policy_reload(struct policy *p, struct config *cfg, char *err, size_t errlen)
{
    struct runtime *rt = runtime_new(p->loop, cfg, p->rt, err, errlen);
    if (!rt)
        return -1;
    runtime_release(p->rt);
    p->rt = rt;
    return 0;
}

const struct config *policy_config(const struct policy *p)
{
    return p->rt->cfg;
}

static void job_closed(uv_handle_t *h)
{
    free(h->data);
}

static void policy_unref(struct policy *p)
{
    if (--p->refs == 0)
        free(p);
}

/* policy_free - jobs still out (cancelled, waiting for their step) keep
 * the policy and their runtime until they come back. */
void policy_free(struct policy *p)
{
    struct policy_job *j, *next;

    if (!p)
        return;
    p->closing = 1;
    for (j = p->free_jobs; j; j = next) {
        next = j->next_free;
        j->timer.data = j;
        uv_close((uv_handle_t *)&j->timer, job_closed);
    }
    p->free_jobs = NULL;
    p->nfree = 0;
    runtime_release(p->rt);
    p->rt = NULL;
    policy_unref(p);
}

/* ---- jobs ---- */

static struct policy_job *job_get(struct policy *p)
{
    struct policy_job *j = p->free_jobs;
    if (j) {
        p->free_jobs = j->next_free;
        p->nfree--;
    } else {
        j = xmalloc(sizeof(*j));
        uv_timer_init(p->loop, &j->timer);
    }
    memset(&j->p, 0, offsetof(struct policy_job, addr) - offsetof(struct policy_job, p));
    j->p = p;
    p->refs++;
    j->rt = p->rt;
    j->rt->refs++;
    return j;
}

static void job_put(struct policy_job *j)
{
    struct policy *p = j->p;
    runtime_release(j->rt);
    j->rt = NULL;
    if (p->closing || p->nfree >= JOB_FREE_MAX) {
        j->timer.data = j;
        uv_close((uv_handle_t *)&j->timer, job_closed);
    } else {
        j->next_free = p->free_jobs;
        p->free_jobs = j;
        p->nfree++;
    }
    policy_unref(p);
}

/* copy_clean - a bounded, printable copy of a peer-supplied value for logs */
static void copy_clean(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    /* blanks, quotes and angle brackets too: a quoted local part must not
     * forge fields of the key=value line */
    for (; src && src[i] && i + 1 < cap; i++)
        dst[i] = (src[i] > 0x20 && src[i] < 0x7f && src[i] != '"' && src[i] != '<'
                  && src[i] != '>' && src[i] != '\\') ? src[i] : '?';
    dst[i] = '\0';
}


static void log_decision(const char *queue_id, const char *client, const char *rcpt,
                         enum stats_verdict v, uint64_t delay_ms,
                         uint64_t elapsed_us, const char *action)
{
    log_info("%s: client=%s rcpt=<%s> verdict=%s delay=%.3fs "
             "elapsed=%lluus action=\"%s\"",
             queue_id[0] ? queue_id : "NOQUEUE", client, rcpt, stats_verdict_name(v),
             delay_ms / 1000.0, (unsigned long long)elapsed_us, action);
}

/* job_complete - now_us: util_now_us(), read by the caller */
static void job_complete(struct policy_job *j, uint64_t now_us)
{
    uint64_t elapsed = now_us - j->start_us;

    j->step = STEP_DONE;
    stats.verdicts[j->verdict]++;
    if (j->rt->cfg->server.log_decisions) {
        char rcpt[ADDR_MAX];
        copy_clean(rcpt, sizeof(rcpt), j->addr.full);
        log_decision(j->queue_id, j->client_ip, rcpt, j->verdict,
                     j->delay_ms, elapsed, j->action);
    }
    if (!j->sync) {
        j->done(j->arg, j->action);
        job_put(j);
    }
    /* in the sync case policy_decide hands the action back and puts the job */
}

static void delay_fired(uv_timer_t *t)
{
    struct policy_job *j = t->data;
    stats.delayed_now--;
    job_complete(j, util_now_us());
}

/* dry_answer - [actions] dry_run: what Postfix gets instead of action.
 * WARN makes Postfix log the would-be rejection, as warn_if_reject does. */
static const char *dry_answer(struct policy_job *j, const char *action)
{
    if (action == DUNNO)
        return DUNNO;
    stats.dry_run_answers_total++;
    snprintf(j->dry, sizeof(j->dry), "WARN %s", action);
    return j->dry;
}

/* finish - the verdict is known; wait out the tarpit delay, if any. */
static void finish(struct policy_job *j, enum stats_verdict v, const char *action)
{
    const struct config *cfg = j->rt->cfg;
    uint64_t delay_ms = j->harvest.delay_ms;
    uint64_t now_us = util_now_us();
    uint64_t spent_us = now_us - j->start_us;

    if (cfg->harvest.dry_run || cfg->actions.dry_run)
        delay_ms = 0;
    j->verdict = v;
    j->action = cfg->actions.dry_run ? dry_answer(j, action) : action;
    j->delay_ms = delay_ms;
    /* the delay runs from the request's arrival, so the time the directory
     * took (a cached valid recipient, an uncached unknown one) is hidden
     * inside it */
    delay_ms = delay_ms * 1000 > spent_us ? (delay_ms * 1000 - spent_us + 999) / 1000 : 0;
    if (!delay_ms) {
        job_complete(j, now_us);
        return;
    }
    j->step = STEP_DELAY;
    j->sync = 0;            /* the answer now comes from the timer */
    stats.delayed_total++;
    stats.delayed_now++;
    j->timer.data = j;
    /* the timer counts from the loop's time, read when this turn began: a
     * busy turn would otherwise answer early (seen under valgrind) */
    uv_update_time(j->timer.loop);
    uv_timer_start(&j->timer, delay_fired, delay_ms, 0);
}

/* A step's answer arrived for a job whose peer went away. */
static int drop_if_cancelled(struct policy_job *j)
{
    if (!j->cancelled)
        return 0;
    job_put(j);
    return 1;
}

/* judge - the recipient's status is known (from a cache or the directory).
 * The answer's delay comes from the client's standing without this
 * recipient (harvest.h: read before, refreshed now); then the recipient's
 * outcome is recorded. */
static void judge(struct policy_job *j, enum dir_status st)
{
    const struct config *cfg = j->rt->cfg;
    int trap = harvest_is_trap(j->rt->harvest, &j->addr);

    /* what the client's other requests recorded while this one waited on
     * the directory: a parallel harvester is judged on its answered guesses */
    harvest_refresh(&j->client, !j->sync);
    harvest_decide(&j->client, &j->harvest);
    if (j->harvest.blocked && !cfg->harvest.dry_run) {
        j->harvest.delay_ms = 0;
        finish(j, VERDICT_BLOCKED, cfg->actions.blocked);
        return;
    }
    /* siege, action = tarpit: every answer waits the siege's delay at least */
    if (siege_response(&j->siege) == SIEGE_TARPIT && cfg->siege.delay_ms > j->harvest.delay_ms)
        j->harvest.delay_ms = cfg->siege.delay_ms;

    /* a trap never existed: answered like any unknown recipient, whatever
     * the directory says (a catch-all, say) */
    if (trap || st == DIR_NOTFOUND) {
        harvest_record(&j->client, trap ? OUTCOME_TRAP : OUTCOME_INVALID);
        siege_invalid(&j->siege, &j->client);   /* siege: still established? */
        /* siege: the domain's rate, of guesses the per-network rules do not
         * already hold back (a tarpitted network's are not a distributed
         * harvest, and must not make a cheap one) */
        if (j->client.lv[SCORE_NARROW].v.stage < STAGE_TARPIT)
            siege_unknown(&j->siege);
        finish(j, VERDICT_UNKNOWN, cfg->actions.unknown);
    } else if (st == DIR_FOUND) {
        harvest_record(&j->client, OUTCOME_VALID);
        siege_delivered(&j->siege, &j->client); /* siege: established? */
        finish(j, VERDICT_ACCEPTED, DUNNO);
    } else if (cfg->ldap.fail_open) {       /* DIR_TEMPFAIL */
        finish(j, VERDICT_ACCEPTED, DUNNO);
    } else {
        finish(j, VERDICT_TEMPFAIL, cfg->actions.tempfail);
    }
}

static void exists(void *arg, enum dir_status st)
{
    struct policy_job *j = arg;

    if (drop_if_cancelled(j))
        return;
    judge(j, st);
}

/* recipient_known - after the siege's answer (if any): the recipient's
 * status, from the cache or the directory. */
static void recipient_known(struct policy_job *j)
{
    const struct config *cfg = j->rt->cfg;

    /* ---- siege (siege_store.h): a client not established, of a domain
     * under siege: the same answer for every recipient, at once, without
     * the directory (defer), or the same wait (tarpit) ---- */
    switch (siege_response(&j->siege)) {
    case SIEGE_DEFER:
        siege_unknown(&j->siege);   /* not looked up: counts as a guess */
        j->harvest.delay_ms = 0;
        finish(j, VERDICT_DEFERRED, cfg->actions.siege);
        return;
    case SIEGE_TARPIT:              /* judge() waits siege.delay at least */
    case SIEGE_NONE:
        break;
    }
    /* ---- end siege ---- */
    if (j->cached != LOOKUP_MISS) {
        judge(j, j->cached);
        return;
    }
    j->step = STEP_EXISTS;
    lookup_directory(j->rt->lookup, &j->addr, &j->wait, exists, j);
}

static void siege_admitted(void *arg)
{
    struct policy_job *j = arg;

    if (drop_if_cancelled(j))
        return;
    recipient_known(j);
}

/* siege_known - the client's standing in the siege, if any, is known */
static void siege_known(struct policy_job *j)
{
    /* siege, action = defer: has the client come back in time? */
    if (siege_response(&j->siege) == SIEGE_DEFER) {
        j->step = STEP_SIEGE;
        siege_admit(&j->siege, siege_admitted, j);
        return;
    }
    recipient_known(j);
}

static void suspect_judged(void *arg)
{
    struct policy_job *j = arg;

    if (drop_if_cancelled(j))
        return;
    siege_known(j);
}

/* state_known - the reads of STEP_STATE are back */
static void state_known(struct policy_job *j)
{
    if (--j->outstanding > 0 || drop_if_cancelled(j))
        return;
    harvest_decide(&j->client, &j->harvest);
    if (j->harvest.blocked && !j->rt->cfg->harvest.dry_run) {
        j->harvest.delay_ms = 0;
        finish(j, VERDICT_BLOCKED, j->rt->cfg->actions.blocked);
        return;
    }
    /* siege: an established client suspected of guessing is answered
     * after the verdict on it */
    if (siege_suspect(&j->siege, &j->client, suspect_judged, j)) {
        j->step = STEP_SIEGE;
        return;
    }
    siege_known(j);
}

static void client_state(void *arg)
{
    state_known(arg);
}

static void siege_state(void *arg)
{
    state_known(arg);
}

static void cached(void *arg, enum dir_status st)
{
    struct policy_job *j = arg;

    j->cached = st;
    state_known(j);
}

static int domain_is_ours(const struct config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->directory.domains.n; i++)
        if (strcmp(cfg->directory.domains.v[i], domain) == 0)
            return 1;
    return 0;
}

/* not_ours - a recipient policyd does not judge: DUNNO, no job. */
static const char *not_ours(const struct config *cfg, const struct proto_request *req)
{
    stats.verdicts[VERDICT_ACCEPTED]++;
    if (cfg->server.log_decisions) {
        char client[64], queue_id[32], rcpt[ADDR_MAX];
        copy_clean(client, sizeof(client), req->client_address);
        copy_clean(queue_id, sizeof(queue_id), req->queue_id);
        copy_clean(rcpt, sizeof(rcpt), req->recipient);
        log_decision(queue_id, client, rcpt, VERDICT_ACCEPTED, 0, 0, "DUNNO (not ours)");
    }
    return DUNNO;
}

struct policy_job *policy_decide(struct policy *p, const struct proto_request *req,
                                 uint64_t start_us, policy_done_fn *done, void *arg,
                                 const char **now)
{
    const struct config *cfg = p->rt->cfg;
    enum stats_state state = stats_state_of(req->protocol_state);
    struct address a;
    struct policy_job *j;

    stats.requests_total++;
    stats.requests_by_state[state]++;
    *now = NULL;
    if (state != STATE_RCPT) {
        stats.verdicts[VERDICT_ACCEPTED]++;
        *now = DUNNO;
        return NULL;
    }
    /* empty, unqualified or unparsable recipients are not ours to judge */
    if (addr_normalize(req->recipient ? req->recipient : "",
                       cfg->directory.recipient_delimiter,
                       cfg->directory.ignore_case, &a) != ADDR_OK ||
        !domain_is_ours(cfg, a.domain)) {
        *now = not_ours(cfg, req);
        return NULL;
    }
    j = job_get(p);
    j->done = done;
    j->arg = arg;
    j->sync = 1;
    j->start_us = start_us;
    j->addr = a;
    j->addr.domain = j->addr.full + (a.domain - a.full);
    copy_clean(j->client_ip, sizeof(j->client_ip), req->client_address);
    copy_clean(j->queue_id, sizeof(j->queue_id), req->queue_id);
    harvest_classify(j->rt->harvest, req, &j->client);

    j->step = STEP_STATE;
    j->outstanding = 3;
    harvest_state(&j->client, client_state, j);
    siege_check(j->rt->store->siege, j->addr.domain, &j->client, &j->siege, siege_state, j);
    lookup_cached(j->rt->lookup, &j->addr, start_us / 1000, &j->wait, cached, j);
    if (j->step == STEP_DONE && j->sync) {
        *now = j->action;
        job_put(j);
        return NULL;
    }
    j->sync = 0;
    return j;
}

void policy_cancel(struct policy_job *j)
{
    if (j->step == STEP_DELAY) {
        uv_timer_stop(&j->timer);
        stats.delayed_now--;
        job_put(j);
        return;
    }
    j->cancelled = 1;       /* freed when its outstanding step answers */
}

/* ---- operator actions ---- */

/* An operator request holds the runtime it started on, so a reload while
 * the store answers cannot free the harvest or lookup it uses. */
struct op {
    struct runtime *rt;
    policy_text_cb *cb;
    void *arg;
};

static struct op *op_new(struct policy *p, policy_text_cb *cb, void *arg)
{
    struct op *op = xmalloc(sizeof(*op));
    op->rt = p->rt;
    op->rt->refs++;
    op->cb = cb;
    op->arg = arg;
    return op;
}

static void op_finish(void *arg, int ok, const char *text)
{
    struct op *op = arg;
    op->cb(op->arg, ok, text);
    runtime_release(op->rt);
    free(op);
}

/* ---- siege: `client` also says whether the network is established ---- */

struct client_op {
    struct op *op;
    int json;
    char *text;                     /* the harvest's answer */
    struct harvest_client hc;
    struct siege_client sc;
};

static void client_established(void *arg)
{
    struct client_op *co = arg;
    struct sbuf b;
    size_t len = strlen(co->text);

    sbuf_init(&b);
    if (co->json && len && co->text[len - 1] == '}') {
        sbuf_add(&b, co->text, len - 1);
        sbuf_puts(&b, ",");
        siege_established_text(&co->sc, 1, &b);
        sbuf_puts(&b, "}");
    } else {
        sbuf_printf(&b, "%s\n\n", co->text);
        siege_established_text(&co->sc, 0, &b);
    }
    op_finish(co->op, 1, b.data);
    sbuf_free(&b);
    free(co->text);
    free(co);
}

static void client_standing(void *arg, int ok, const char *text)
{
    struct client_op *co = arg;

    if (!ok) {
        op_finish(co->op, ok, text);
        free(co);
        return;
    }
    co->text = xstrdup(text);
    siege_established(co->op->rt->store->siege, &co->hc, &co->sc, client_established, co);
}

void policy_client_info(struct policy *p, const char *ip, int json,
                        policy_text_cb *cb, void *arg)
{
    struct client_op *co = xcalloc(1, sizeof(*co));
    struct proto_request req;

    memset(&req, 0, sizeof(req));
    req.client_address = ip;
    co->op = op_new(p, cb, arg);
    co->json = json;
    harvest_classify(p->rt->harvest, &req, &co->hc);
    harvest_client_info(p->rt->harvest, ip, json, client_standing, co);
}

void policy_siege_info(struct policy *p, int json, policy_text_cb *cb, void *arg)
{
    struct sbuf b;

    sbuf_init(&b);
    siege_info(p->rt->store->siege, json, &b);
    cb(arg, 1, b.data);
    sbuf_free(&b);
}

void policy_siege_force(struct policy *p, const char *domain, int on, uint64_t hold_ms,
                        policy_text_cb *cb, void *arg)
{
    char text[320];

    if (siege_force_domain(p->rt->store->siege, domain, on, hold_ms) < 0) {
        cb(arg, 0, "error: not one of [directory] domains");
        return;
    }
    snprintf(text, sizeof(text), "siege of %.255s %s%s", domain,
             on ? "started" : "stopped", hold_ms ? ", held" : "");
    cb(arg, 1, text);
}

void policy_unblock(struct policy *p, const char *ip, policy_text_cb *cb, void *arg)
{
    harvest_unblock(p->rt->harvest, ip, op_finish, op_new(p, cb, arg));
}

static void flushed(void *arg, int status, long long count, long long ttl_ms)
{
    char text[96];
    (void)ttl_ms;

    if (status == STORE_ERR) {
        op_finish(arg, 0, "error: the shared cache did not answer; the local cache was flushed");
        return;
    }
    snprintf(text, sizeof(text), "flushed: local cache; %lld shared entries", count);
    op_finish(arg, 1, text);
}

void policy_flush(struct policy *p, const char *addr, policy_text_cb *cb, void *arg)
{
    const struct config *cfg = p->rt->cfg;
    struct address a;

    if (addr && addr_normalize(addr, cfg->directory.recipient_delimiter,
                               cfg->directory.ignore_case, &a) != ADDR_OK) {
        cb(arg, 0, "error: not an email address");
        return;
    }
    lookup_flush(p->rt->lookup, addr ? a.full : NULL, flushed, op_new(p, cb, arg));
}

void policy_stats_extra(struct policy *p, struct stats_extra *x)
{
    memset(x, 0, sizeof(*x));
    harvest_stats(p->rt->harvest, x);
    siege_stats(p->rt->store->siege, x);
}

struct store *policy_store(struct policy *p)
{
    return store_is_shared(p->rt->cfg) ? p->rt->store->store : NULL;
}

struct evidence *policy_evidence(struct policy *p)
{
    return p->rt->store->evidence;
}
