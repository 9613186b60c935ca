/*
 * evidence - where the standings of client networks live, kept whole
 *
 * SYNOPSIS
 *	#include "evidence.h"
 *	#include "evidence_priv.h"	(evidence*.c only)
 *
 *	void ev_queue_push(q, e)
 *	void ev_dirty_unlink(ev, e)
 *	size_t ev_ndirty(ev)
 *	void ev_arm(ev)
 *	void ev_mark_dirty(ev, e, urgent)
 *	int ev_needs_floor(ev, e)
 *	size_t ev_build_key(ev, net, key)
 *
 * DESCRIPTION
 *	See evidence.h for the contract.  The table: a hash table with
 *	chaining (FNV-1a over the network string, the bucket array doubled
 *	as the table grows), an LRU list (head: most recently used) and four
 *	FIFOs of dirty networks, all intrusive, so finding, touching and
 *	dropping a network is O(1).
 *
 *	Dirty networks wait in one of four FIFOs: block (a block or trap
 *	hit pending, or a block in force owed as a floor: merged first on the
 *	next tick), against (other evidence against the network pending, or
 *	a trap or block in its view: merged next), ready (merged after those;
 *	evidence_merge.c's flush keeps each of them a share of every call, so
 *	a flood of one starves neither other) and lazy (only valid
 *	recipients, of a network far from every stage and few against its
 *	record, see urgent(): moved to ready on the first tick at least
 *	EVIDENCE_VALID_FLUSH_MS - EVIDENCE_FLUSH_MS after the network became
 *	dirty, so it is merged within EVIDENCE_VALID_FLUSH_MS).  A network
 *	moves forward, never back: unfavourable evidence for a ready or lazy
 *	network moves it to against (a block or trap hit, from any of them,
 *	to block), valid counts and all; urgent valid recipients or a floor
 *	owed move a lazy one to ready.  A sender well below the shares that
 *	act on it, with a record well above what one second brings, then has
 *	its merges once a second, not every tick it is busy.
 *
 *	Reads allocate nothing of their own (the caller's struct
 *	evidence_read is the context); a store answer about a network not
 *	in the table adds it (its view is the answer), as a record does.
 *
 *	evidence_free sends the pending deltas of every network, ready or
 *	lazy, as fire-and-forget merges (when the store is up), then drops the
 *	table.  The runtime frees the store right after: store_redis lingers
 *	until Redis has answered those last merges (at most STORE_LINGER_MS,
 *	store_free), so they reach Redis; anything recorded while the store
 *	was away is lost with the process.  Reads
 *	still in flight are answered by the store's teardown; the struct
 *	lives until they and the timer's close are done.
 *
 *	The merges (the timer, the store going away and coming back,
 *	floors, merge calls and the calls sent again) are
 *	evidence_merge.c's; the structs and what the two files share,
 *	evidence_priv.h.
 *
 * LIMITS
 *	[harvest] max_tracked networks (the least recently used dropped
 *	first, its pending deltas merged first); networks longer than
 *	EVIDENCE_NET_MAX - 1 bytes are neither read from the store nor kept.
 *	The settings ([redis] prefix, [harvest] window, max_tracked) are read
 *	once, at evidence_new.  Keys live EVIDENCE_TTL_HALVES half-lives
 *	after their last merge, or until their block ends if later.
 */

#include "evidence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>

#include "evidence_priv.h"
#include "log.h"
#include "util.h"

/* ---- the table ---------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static struct ev_entry *find(const struct evidence *ev, const char *net)
{
    uint64_t h;

    if (!ev->buckets)
        return NULL;
    h = fnv1a(net);
    for (struct ev_entry *e = ev->buckets[h & (ev->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->net, net) == 0)
            return e;
    return NULL;
}

static void grow(struct evidence *ev)
{
    size_t n = ev->nbuckets * 2;
    struct ev_entry **b = xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < ev->nbuckets; i++) {
        struct ev_entry *e, *next;
        for (e = ev->buckets[i]; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(ev->buckets);
    ev->buckets = b;
    ev->nbuckets = n;
}

static void lru_unlink(struct evidence *ev, struct ev_entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        ev->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        ev->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push(struct evidence *ev, struct ev_entry *e)
{
    e->lnext = ev->lru_head;
    if (ev->lru_head)
        ev->lru_head->lprev = e;
    else
        ev->lru_tail = e;
    ev->lru_head = e;
}

static void touch(struct evidence *ev, struct ev_entry *e)
{
    if (ev->lru_head != e) {
        lru_unlink(ev, e);
        lru_push(ev, e);
    }
}

struct ev_queue *ev_queue_of(struct evidence *ev, int id)
{
    return id == Q_BLOCK ? &ev->block : id == Q_AGAINST ? &ev->against
           : id == Q_READY ? &ev->ready : &ev->lazy;
}

void ev_queue_push(struct ev_queue *q, struct ev_entry *e)
{
    e->dnext = NULL;
    e->dprev = q->tail;
    if (q->tail)
        q->tail->dnext = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
}

/* ev_dirty_unlink - e off its FIFO: clean (nothing left to merge). */
void ev_dirty_unlink(struct evidence *ev, struct ev_entry *e)
{
    struct ev_queue *q;

    if (e->queue == Q_NONE)
        return;
    q = ev_queue_of(ev, e->queue);
    if (e->dprev)
        e->dprev->dnext = e->dnext;
    else
        q->head = e->dnext;
    if (e->dnext)
        e->dnext->dprev = e->dprev;
    else
        q->tail = e->dprev;
    e->dprev = e->dnext = NULL;
    e->queue = Q_NONE;
    q->n--;
}

size_t ev_ndirty(const struct evidence *ev)
{
    return ev->block.n + ev->against.n + ev->ready.n + ev->lazy.n;
}

void ev_arm(struct evidence *ev)
{
    if (!ev->closing && ev->store && !uv_is_active((uv_handle_t *)&ev->timer))
        uv_timer_start(&ev->timer, ev_tick, EVIDENCE_FLUSH_MS, 0);
}

/* unfavourable - s holds evidence against a network. */
static int unfavourable(const struct score *s)
{
    return s->invalid > 0 || s->traps > 0 || s->block_until_ms > 0;
}

/* queue_for - the FIFO e goes to: Q_LAZY unless urgent or a floor is owed;
 * Q_BLOCK when its pending deltas hold a block or trap hit, or the floor
 * it owes a block in force (a call given up, a store that lost it);
 * Q_AGAINST when they hold other evidence against it or its view a trap
 * or block; else Q_READY (a floor owed, whatever it carries, among them). */
static int queue_for(const struct evidence *ev, const struct ev_entry *e, int urgent)
{
    int owed = ev_needs_floor(ev, e);

    if (!urgent && !owed)
        return Q_LAZY;
    if (e->pending.traps > 0 || e->pending.block_until_ms > 0
        || (owed && e->view.block_until_ms > util_wall_ms()))
        return Q_BLOCK;
    if (unfavourable(&e->pending) || e->view.traps > 0 || e->view.block_until_ms > 0)
        return Q_AGAINST;
    return Q_READY;
}

/* ev_mark_dirty - queue e for a flush (only with a store to flush to): the
 * next tick when urgent (or a floor is owed), else within
 * EVIDENCE_VALID_FLUSH_MS, in the FIFO queue_for() says.  Already queued
 * to go later and now more pressing: moved, keeping the time it became
 * dirty. */
void ev_mark_dirty(struct evidence *ev, struct ev_entry *e, int urgent)
{
    int q;

    if (!ev->store || ev->closing)
        return;
    q = queue_for(ev, e, urgent);
    if (e->queue == Q_NONE)
        e->dirty_ms = uv_now(ev->loop);
    else if (e->queue <= q)
        return;
    ev_dirty_unlink(ev, e);
    e->queue = q;
    ev_queue_push(ev_queue_of(ev, q), e);
    ev_arm(ev);
}

/* urgent - e's change, delta (not yet in e's view), must reach the fleet
 * on the next tick: the delta is unfavourable, e has a trap or block on
 * record, the valid recipients this process would hold back with it are
 * more than 1 / EVIDENCE_LAZY_PART of the store's record, or the share of
 * invalid recipients of that record is at least half of lazy_share.
 * Valid recipients late make the other daemons see the share too high:
 * the held bound caps by how much (evidence.h), the share bound keeps a
 * network near a threshold from being judged on them at all.  The store's
 * record is this process's copy of it: the view less what this process
 * has not had answered (pending and sent), not the view, which the
 * waiting valid recipients themselves push down (a young network of 1
 * invalid in 3 with 6 valid waiting here is at 11% in the view and at
 * 33% in the store).  Subtracting those counts unfaded takes away at
 * least what they weigh now, and the copy is as old as this process's
 * last read, while the store's record only grows meanwhile (or fades, as
 * the held counts do; or goes, deleted, and the next read shows it): both
 * err towards urgent. */
static int urgent(const struct evidence *ev, const struct ev_entry *e,
                  const struct score *delta)
{
    const struct score *v = &e->view;
    struct score stored = *v;
    double held = e->pending.valid + e->sent.valid;

    if (unfavourable(delta) || v->traps > 0 || v->block_until_ms > 0)
        return 1;
    stored.valid = v->valid - held;
    if (stored.valid < 0)
        stored.valid = 0;
    if ((held + delta->valid) * EVIDENCE_LAZY_PART > stored.invalid + stored.valid)
        return 1;
    if (stored.invalid <= 0)
        return 0;                   /* spotless: no share to overstate */
    return score_share_at_least(&stored, ev->lazy_share / 2.0);
}

/* lowest_share - the lowest invalid share (percent) at which anything acts
 * on a network: either level's tarpit_share and block_share (score.h;
 * harvest.c's wide-level "clean record" uses the narrow tarpit_share), and
 * siege mode's establishment and revocation, which use [harvest]
 * tarpit_share.  Counted whether or not a level's rule is on (its _after
 * 0): simpler, and only ever lower. */
static unsigned lowest_share(const struct config *cfg)
{
    unsigned low = 100;

    for (int l = 0; l < SCORE_LEVELS; l++) {
        struct score_rules r;
        score_rules_of(cfg, (enum score_level)l, &r);
        if (r.tarpit_share < low)
            low = r.tarpit_share;
        if (r.block_share < low)
            low = r.block_share;
    }
    return low;
}

int ev_needs_floor(const struct evidence *ev, const struct ev_entry *e)
{
    return e->synced != ev->epoch;
}

/* ev_build_key - PREFIX "e:" NET into key (EVIDENCE_KEY_MAX); its length.
 * net is shorter than EVIDENCE_NET_MAX (the callers check). */
size_t ev_build_key(const struct evidence *ev, const char *net, char *key)
{
    size_t nlen = strlen(net);

    memcpy(key, ev->prefix, ev->prefix_len);
    memcpy(key + ev->prefix_len, "e:", 2);
    memcpy(key + ev->prefix_len + 2, net, nlen + 1);
    return ev->prefix_len + 2 + nlen;
}

/* ---- networks ----------------------------------------------------------- */

static void drop(struct evidence *ev, struct ev_entry *e)
{
    struct ev_entry **pp = &ev->buckets[e->hash & (ev->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ev, e);
    ev_dirty_unlink(ev, e);
    if (e->inflight)
        for (size_t i = 0; i < e->inflight->n; i++)
            if (e->inflight->slot[i].e == e)
                e->inflight->slot[i].e = NULL;
    ev->count--;
    ev->drops++;
    free(e);
}

#define EVICT_SCAN 64            /* LRU entries looked at for one eviction */

/* evict - make room: the least recently used goes, its deltas merged.  A
 * blocked network is passed over (among the EVICT_SCAN oldest): without a
 * store its block lives only here, and a flood of new networks must not
 * be a way to lift it. */
static void evict(struct evidence *ev)
{
    struct ev_entry *e = ev->lru_tail;
    uint64_t now = util_wall_ms();

    for (unsigned n = 0; e && e->view.block_until_ms > now && n < EVICT_SCAN; n++)
        e = e->lprev;
    if (!e || e->view.block_until_ms > now)
        e = ev->lru_tail;

    if (e->queue != Q_NONE && ev->store && !ev->away)
        ev_send_merge(ev, &e, 1, 1);
    drop(ev, e);
}

/* entry - net's entry, made (empty, in sync with the store) if need be. */
static struct ev_entry *entry(struct evidence *ev, const char *net)
{
    struct ev_entry *e = find(ev, net);
    size_t nlen = strlen(net);

    if (e) {
        touch(ev, e);
        return e;
    }
    if (ev->closing || nlen >= EVIDENCE_NET_MAX)
        return NULL;
    if (ev->count >= ev->max_tracked)
        evict(ev);
    if (ev->count >= ev->nbuckets)
        grow(ev);
    e = xcalloc(1, sizeof(*e));
    memcpy(e->net, net, nlen + 1);
    e->hash = fnv1a(net);
    e->synced = ev->epoch;
    e->stage = -1;
    e->hnext = ev->buckets[e->hash & (ev->nbuckets - 1)];
    ev->buckets[e->hash & (ev->nbuckets - 1)] = e;
    lru_push(ev, e);
    ev->count++;
    ev_arm(ev);                         /* the store is watched from now on */
    return e;
}

/* ---- the interface ------------------------------------------------------ */

void evidence_configure(struct evidence *ev, const struct config *cfg)
{
    ev->lazy_share = lowest_share(cfg);
}

struct evidence *evidence_new(uv_loop_t *loop, const struct config *cfg,
                              struct store *store)
{
    struct evidence *ev = xcalloc(1, sizeof(*ev));

    ev->loop = loop;
    ev->store = store;
    snprintf(ev->prefix, sizeof(ev->prefix), "%s",
             cfg->redis.prefix ? cfg->redis.prefix : "");
    ev->prefix_len = strlen(ev->prefix);
    ev->half_life_ms = cfg->harvest.window_ms;
    ev->ttl_ms = cfg->harvest.window_ms * EVIDENCE_TTL_HALVES;
    ev->max_tracked = cfg->harvest.max_tracked ? cfg->harvest.max_tracked : 1;
    evidence_configure(ev, cfg);
    ev->nbuckets = EVIDENCE_BUCKETS_MIN;
    ev->buckets = xcalloc(ev->nbuckets, sizeof(*ev->buckets));
    ev->epoch = 1;
    if (getrandom(&ev->instance, sizeof(ev->instance), GRND_NONBLOCK)
        != sizeof(ev->instance))
        ev->instance = util_wall_ms() * 1000003u ^ (uint64_t)getpid() << 40;
    ev->unsure_rl = (struct log_limiter)LOG_LIMITER_INIT(EVIDENCE_UNSURE_LOG_MS);
    uv_timer_init(loop, &ev->timer);
    uv_unref((uv_handle_t *)&ev->timer);
    ev->timer.data = ev;
    ev->timer_open = 1;
    return ev;
}

static void maybe_release(struct evidence *ev)
{
    if (ev->closing && !ev->timer_open && ev->reads_out == 0)
        free(ev);
}

static void timer_closed(uv_handle_t *h)
{
    struct evidence *ev = h->data;
    ev->timer_open = 0;
    maybe_release(ev);
}

void evidence_free(struct evidence *ev)
{
    if (!ev)
        return;
    ev_merges_close(ev);
    while (ev->lru_head)
        drop(ev, ev->lru_head);
    free(ev->buckets);
    ev->buckets = NULL;
    uv_close((uv_handle_t *)&ev->timer, timer_closed);
}

/* add_local - what only we have seen of e: pending and sent, faded.  The
 * sent of a call left unanswered may be in s already: s is raised to the
 * view (which counts it once) instead. */
static void add_local(const struct evidence *ev, const struct ev_entry *e,
                      struct score *s, uint64_t now)
{
    if (!e)
        return;
    score_add(s, &e->pending, now, ev->half_life_ms);
    if (e->inflight && e->inflight->unsure)
        score_max(s, &e->view, now, ev->half_life_ms);
    else
        score_add(s, &e->sent, now, ev->half_life_ms);
}

/* hold - r's handle is e from now on (entry() may have dropped others
 * first: the count is taken after). */
static struct ev_entry *hold(struct evidence_read *r, struct ev_entry *e)
{
    r->e = e;
    r->drops = r->ev->drops;
    return e;
}

/* entry_via - r's entry: the one found before while nothing has been
 * dropped since (a drop frees it), else looked up again; with make, made
 * if need be and made most recently used, as entry() does. */
static struct ev_entry *entry_via(struct evidence_read *r, int make)
{
    struct evidence *ev = r->ev;

    if (!r->net[0])
        return NULL;                    /* too long to keep (evidence_read_at) */
    if (r->e && r->drops == ev->drops) {
        if (make)
            touch(ev, r->e);
        return r->e;
    }
    return hold(r, make ? entry(ev, r->net) : find(ev, r->net));
}

/* view_of - e's view (empty without e), faded to now. */
static int view_of(const struct evidence *ev, const struct ev_entry *e, uint64_t now,
                   struct score *out)
{
    memset(out, 0, sizeof(*out));
    if (e)
        *out = e->view;
    score_decay(out, now, ev->half_life_ms);
    return e != NULL;
}

static void answer_view(struct evidence_read *r, uint64_t now)
{
    struct score s;

    view_of(r->ev, entry_via(r, 0), now, &s);
    r->cb(r->arg, &s, 0);
}

static void read_done(void *arg, int status, const char *val, size_t len)
{
    struct evidence_read *r = arg;
    struct evidence *ev = r->ev;
    struct ev_entry *e;
    uint64_t now = util_wall_ms();
    struct score s;

    ev->reads_out--;
    if (status == STORE_ERR) {
        ev_check_store(ev);
        answer_view(r, now);
        maybe_release(ev);
        return;
    }
    ev_check_store(ev);                 /* it answered: it is up */
    /* an unparsable value reads as empty, as the merge script sees it */
    if (status != STORE_OK || score_decode(val, len, &s) < 0)
        memset(&s, 0, sizeof(s));
    r->stored_t_ms = s.t_ms;
    score_decay(&s, now, ev->half_life_ms);
    e = hold(r, status == STORE_OK ? entry(ev, r->net) : find(ev, r->net));
    add_local(ev, e, &s, now);
    if (e) {
        /* until its floor lands the store may lack what we saw (a
         * restart, a refused write): never answer lower than the view */
        if (ev_needs_floor(ev, e))
            score_max(&s, &e->view, now, ev->half_life_ms);
        /* a miss is the store's word too: a key another daemon's
         * `unblock` deleted must not come back with our next floor */
        e->view = s;
    }
    r->cb(r->arg, &s, 1);
    maybe_release(ev);
}

void evidence_read(struct evidence *ev, const char *net, struct evidence_read *r,
                   evidence_cb *cb, void *arg)
{
    evidence_read_at(ev, net, r, util_wall_ms(), cb, arg);
}

void evidence_read_at(struct evidence *ev, const char *net, struct evidence_read *r,
                      uint64_t now_ms, evidence_cb *cb, void *arg)
{
    char key[EVIDENCE_KEY_MAX];
    size_t nlen = strlen(net);

    r->ev = ev;
    r->e = NULL;
    r->stored_t_ms = 0;
    r->cb = cb;
    r->arg = arg;
    if (nlen >= sizeof(r->net)) {
        struct score none;
        memset(&none, 0, sizeof(none));
        none.t_ms = now_ms;
        r->net[0] = '\0';              /* kept nowhere: records go nowhere */
        cb(arg, &none, 0);
        return;
    }
    memcpy(r->net, net, nlen + 1);
    ev_check_store(ev);
    if (!ev->store || ev->away || ev->closing) {
        answer_view(r, now_ms);
        return;
    }
    ev->reads_out++;
    ev->store->ops->get(ev->store, key, ev_build_key(ev, net, key), read_done, r);
}

/* record_in - delta into e (NULL: a network not kept). */
static void record_in(struct evidence *ev, struct ev_entry *e, const struct score *delta)
{
    uint64_t now = delta->t_ms;
    int now_urgent;

    ev->recorded++;
    if (!e)
        return;
    now_urgent = urgent(ev, e, delta);      /* by the view before delta */
    score_add(&e->view, delta, now, ev->half_life_ms);
    if (ev->store) {
        score_add(&e->pending, delta, now, ev->half_life_ms);
        ev_mark_dirty(ev, e, now_urgent);
    }
}

void evidence_record(struct evidence *ev, const char *net, const struct score *delta)
{
    record_in(ev, entry(ev, net), delta);
}

void evidence_record_via(struct evidence_read *r, const struct score *delta)
{
    record_in(r->ev, entry_via(r, 1), delta);
}

uint64_t evidence_recorded(const struct evidence *ev)
{
    return ev->recorded;
}

int evidence_view_via(struct evidence_read *r, uint64_t now_ms, struct score *out)
{
    return view_of(r->ev, entry_via(r, 0), now_ms, out);
}

int evidence_unmerged_via(struct evidence_read *r)
{
    const struct ev_entry *e = entry_via(r, 0);

    return e && (e->queue != Q_NONE || e->inflight);
}

void evidence_forget(struct evidence *ev, const char *net, store_count_cb *cb,
                     void *arg)
{
    struct ev_entry *e = find(ev, net);
    char key[EVIDENCE_KEY_MAX];
    size_t klen;

    if (e)
        drop(ev, e);
    if (!ev->store || strlen(net) >= EVIDENCE_NET_MAX) {
        cb(arg, e ? STORE_OK : STORE_MISS, e ? 1 : 0, -1);
        return;
    }
    klen = ev_build_key(ev, net, key);
    ev_strike(ev, key, klen);           /* a resend must not undo the DEL */
    ev->store->ops->del(ev->store, key, klen, cb, arg);
}

static int note_in(struct ev_entry *e, int stage)
{
    int was;

    if (!e)
        return -1;
    was = e->stage;
    e->stage = stage;
    return was;
}

int evidence_note_stage_via(struct evidence_read *r, int stage)
{
    return note_in(entry_via(r, 1), stage);
}

void evidence_walk(struct evidence *ev, evidence_walk_fn *fn, void *arg)
{
    uint64_t now = util_wall_ms();

    for (const struct ev_entry *e = ev->lru_head; e; e = e->lnext) {
        struct score s = e->view;
        score_decay(&s, now, ev->half_life_ms);
        fn(arg, e->net, &s);
    }
}

size_t evidence_tracked(const struct evidence *ev)
{
    return ev->count;
}
