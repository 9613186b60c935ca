/*
 * evidence - where the standings of client networks live, kept whole
 *
 * SYNOPSIS
 *	#include "evidence.h"
 *
 * DESCRIPTION
 *	See evidence.h for the contract.  The table: a hash table with
 *	chaining (FNV-1a over the network string, the bucket array doubled
 *	as the table grows), an LRU list (head: most recently used) and a
 *	FIFO of dirty networks, all intrusive, so finding, touching and
 *	dropping a network is O(1).
 *
 *	One uv timer (unref'd: it never keeps the loop alive) ticks every
 *	EVIDENCE_FLUSH_MS while a network is dirty, and also while the table
 *	holds anything and there is a store: it then asks the store whether
 *	it is up (store->ops->shared).  The store's down time after a lost
 *	connection lasts at least its reconnect backoff (SR_BACKOFF_MIN_MS,
 *	twice the tick), so an outage is seen even when no request comes
 *	during it: without that, a Redis restarted without persistence while
 *	we were idle would lose its blocks for good.
 *
 *	Store away (shared() == 0, whenever looked at): reads answer the
 *	view without asking the store, nothing is flushed (deltas wait in
 *	pending), and the epoch advances: every network tracked then needs
 *	a floor.  Store back: each of those networks is made dirty, and its
 *	next merge carries floor = its view; an acknowledged merge with a
 *	floor clears the need, and until then a read answers at least the
 *	view.  Otherwise the store's answer, a miss included, replaces the
 *	view: an `unblock` by another daemon is believed, not undone.  A merge the store refuses while up (OOM
 *	with noeviction, WRONGTYPE) returns its deltas to pending and makes
 *	that network need a floor; it is retried every tick.
 *
 *	Reads allocate nothing of their own (the caller's struct
 *	evidence_read is the context); a store answer about a network not
 *	in the table adds it (its view is the answer), as a record does.
 *
 *	Merges: at most one in flight per network (its deltas in sent), at
 *	most EVIDENCE_FLUSH_BATCH sent per tick, so coming back with a full
 *	table never floods the store's queue.  Each merge has a small
 *	context (struct ev_merge) that outlives the network and the table:
 *	dropping either just detaches it.
 *
 *	evidence_free sends the pending deltas of every network as
 *	fire-and-forget merges (when the store is up), then drops the
 *	table.  The runtime frees the store right after: store_redis pushes
 *	queued writes to the socket once before it closes the connection
 *	(store_free), so those last merges normally reach Redis; anything
 *	recorded while the store was away is lost with the process.  Reads
 *	still in flight are answered by the store's teardown; the struct
 *	lives until they and the timer's close are done.
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

#include "log.h"
#include "util.h"

#define EVIDENCE_FLUSH_BATCH 512    /* merges sent per tick at most */
#define EVIDENCE_TTL_HALVES 12      /* 2^-12: 4096 invalid fade below one */
#define EVIDENCE_BUCKETS_MIN 1024
#define EVIDENCE_KEY_MAX (CONFIG_PREFIX_MAX + 2 + EVIDENCE_NET_MAX)

struct ev_merge;

struct ev_entry {
    struct ev_entry *hnext;         /* hash chain */
    struct ev_entry *lprev, *lnext; /* LRU list */
    struct ev_entry *dprev, *dnext; /* dirty FIFO, while dirty */
    struct ev_merge *inflight;      /* the merge carrying sent, or NULL */
    struct score view, pending, sent;
    uint64_t hash;
    unsigned synced;                /* the epoch its store copy is good for */
    int dirty;
    int stage;                      /* last noted; -1 none */
    char net[EVIDENCE_NET_MAX];
};

/* One merge on its way: detached (ev or e NULL) when either goes first. */
struct ev_merge {
    struct evidence *ev;
    struct ev_entry *e;
    struct ev_merge *prev, *next;   /* ev->merges */
    unsigned floor_epoch;           /* 0: no floor sent */
};

struct evidence {
    uv_loop_t *loop;
    struct store *store;
    char prefix[CONFIG_PREFIX_MAX + 1];
    size_t prefix_len;
    uint64_t half_life_ms, ttl_ms;
    size_t max_tracked;
    uint64_t recorded;              /* evidence_record calls, ever */

    struct ev_entry **buckets;
    size_t nbuckets;                /* a power of two */
    size_t count;
    struct ev_entry *lru_head, *lru_tail;
    struct ev_entry *dirty_head, *dirty_tail;
    size_t ndirty;
    struct ev_merge *merges;
    size_t nmerges;                 /* in ev->merges: waiting for the store */
    size_t due;                     /* merges this tick still owes */
    int flushing;                   /* inside flush() */
    uint64_t drops;                 /* entries dropped, ever: see entry_via */

    unsigned epoch;                 /* advances each time the store goes away */
    int away;
    int closing;
    int timer_open;
    unsigned reads_out;             /* store reads not yet answered */
    uv_timer_t timer;
};

static void tick(uv_timer_t *t);

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

static void dirty_unlink(struct evidence *ev, struct ev_entry *e)
{
    if (!e->dirty)
        return;
    if (e->dprev)
        e->dprev->dnext = e->dnext;
    else
        ev->dirty_head = e->dnext;
    if (e->dnext)
        e->dnext->dprev = e->dprev;
    else
        ev->dirty_tail = e->dprev;
    e->dprev = e->dnext = NULL;
    e->dirty = 0;
    ev->ndirty--;
}

static void arm(struct evidence *ev)
{
    if (!ev->closing && ev->store && !uv_is_active((uv_handle_t *)&ev->timer))
        uv_timer_start(&ev->timer, tick, EVIDENCE_FLUSH_MS, 0);
}

/* mark_dirty - queue e for the next flush (only with a store to flush to). */
static void mark_dirty(struct evidence *ev, struct ev_entry *e)
{
    if (e->dirty || !ev->store || ev->closing)
        return;
    e->dirty = 1;
    e->dnext = NULL;
    e->dprev = ev->dirty_tail;
    if (ev->dirty_tail)
        ev->dirty_tail->dnext = e;
    else
        ev->dirty_head = e;
    ev->dirty_tail = e;
    ev->ndirty++;
    arm(ev);
}

static int needs_floor(const struct evidence *ev, const struct ev_entry *e)
{
    return e->synced != ev->epoch;
}

/* build_key - PREFIX "e:" NET into key (EVIDENCE_KEY_MAX); its length.
 * net is shorter than EVIDENCE_NET_MAX (the callers check). */
static size_t build_key(const struct evidence *ev, const char *net, char *key)
{
    size_t nlen = strlen(net);

    memcpy(key, ev->prefix, ev->prefix_len);
    memcpy(key + ev->prefix_len, "e:", 2);
    memcpy(key + ev->prefix_len + 2, net, nlen + 1);
    return ev->prefix_len + 2 + nlen;
}

/* ---- merges ------------------------------------------------------------- */

static void merge_unlink(struct evidence *ev, struct ev_merge *m)
{
    ev->nmerges--;
    if (m->prev)
        m->prev->next = m->next;
    else
        ev->merges = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

static void check_store(struct evidence *ev);
static void flush(struct evidence *ev);

/* merge_landed - the store's answer to e's merge. */
static void merge_landed(struct evidence *ev, struct ev_entry *e, unsigned floor_epoch,
                         int status, const char *val, size_t len)
{
    struct score st;
    uint64_t now;

    e->inflight = NULL;
    now = util_wall_ms();
    if (status == STORE_OK && score_decode(val, len, &st) == 0) {
        /* the store has everything sent: what we know is it plus pending */
        score_add(&st, &e->pending, now, ev->half_life_ms);
        e->view = st;
        memset(&e->sent, 0, sizeof(e->sent));
        if (floor_epoch)
            e->synced = floor_epoch;
        check_store(ev);
        return;
    }
    if (status == STORE_OK) {
        /* applied, but not in the wire form: keep the view as it is */
        log_warn("evidence: %s: the store answered a merge with %.*s", e->net,
                 (int)(len > 60 ? 60 : len), val);
        memset(&e->sent, 0, sizeof(e->sent));
        return;
    }
    score_add(&e->pending, &e->sent, now, ev->half_life_ms);
    memset(&e->sent, 0, sizeof(e->sent));
    e->synced = 0;
    mark_dirty(ev, e);
    check_store(ev);
}

/* merge_done - the store's answer to one merge; its place in the store's
 * queue goes to the next merge this tick owes. */
static void merge_done(void *arg, int status, const char *val, size_t len)
{
    struct ev_merge *m = arg;
    struct evidence *ev = m->ev;
    struct ev_entry *e = m->e;
    unsigned floor_epoch = m->floor_epoch;

    if (ev)
        merge_unlink(ev, m);
    free(m);
    if (!ev)
        return;                         /* fire and forget */
    if (e)                              /* else the network went meanwhile */
        merge_landed(ev, e, floor_epoch, status, val, len);
    flush(ev);
}

/* send_merge - e's pending deltas (and floor = view when it needs one) in
 * one merge.  detached: nobody waits for the answer (e or the table is
 * going away), so it may go while another is in flight. */
static void send_merge(struct evidence *ev, struct ev_entry *e, int detached)
{
    struct ev_merge *m = xcalloc(1, sizeof(*m));
    struct store_merge sm;
    char key[EVIDENCE_KEY_MAX];
    size_t klen;
    uint64_t now = util_wall_ms();

    score_decay(&e->pending, now, ev->half_life_ms);
    memset(&sm, 0, sizeof(sm));
    sm.delta = e->pending;
    sm.floor = needs_floor(ev, e) ? &e->view : NULL;
    sm.now_ms = now;
    sm.half_life_ms = ev->half_life_ms;
    sm.ttl_ms = ev->ttl_ms;
    if (!detached) {
        m->ev = ev;
        m->e = e;
        m->floor_epoch = sm.floor ? ev->epoch : 0;
        m->next = ev->merges;
        if (ev->merges)
            ev->merges->prev = m;
        ev->merges = m;
        ev->nmerges++;
        e->inflight = m;
        e->sent = e->pending;
    }
    memset(&e->pending, 0, sizeof(e->pending));
    dirty_unlink(ev, e);
    klen = build_key(ev, e->net, key);
    /* may answer before it returns: e is consistent by now */
    ev->store->ops->merge(ev->store, key, klen, &sm, merge_done, m);
}

/* flush - the merges this tick owes (ev->due: the networks it found
 * dirty, at most EVIDENCE_FLUSH_BATCH), oldest first, while fewer than
 * EVIDENCE_MERGES_OUT wait for the store; each answer calls it again.  A
 * network whose merge is in flight waits for the answer (and a later
 * tick).  A refusal answered at once goes back to the tail and has had its
 * turn, so each network is tried about once a tick. */
static void flush(struct evidence *ev)
{
    struct ev_entry *e, *next;

    if (ev->flushing)
        return;                 /* an answer inside send_merge: the loop goes on */
    ev->flushing = 1;
    for (e = ev->dirty_head; e && ev->due && ev->nmerges < EVIDENCE_MERGES_OUT
                             && !ev->away; e = next) {
        next = e->dnext;
        if (e->inflight)
            continue;
        ev->due--;
        send_merge(ev, e, 0);
    }
    ev->flushing = 0;
}

/* check_store - notice the store going away and coming back. */
static void check_store(struct evidence *ev)
{
    int up;

    if (!ev->store || ev->closing)
        return;
    up = ev->store->ops->shared(ev->store);
    if (!up && !ev->away) {
        ev->away = 1;
        ev->epoch++;
        if (ev->count)
            log_info("evidence: the store is away; %zu network(s) kept here "
                     "until it returns", ev->count);
    } else if (up && ev->away) {
        ev->away = 0;
        for (struct ev_entry *e = ev->lru_head; e; e = e->lnext)
            if (needs_floor(ev, e))
                mark_dirty(ev, e);
        if (ev->ndirty)
            log_info("evidence: the store is back; merging %zu network(s)",
                     ev->ndirty);
    }
}

static void tick(uv_timer_t *t)
{
    struct evidence *ev = t->data;

    check_store(ev);
    ev->due = ev->ndirty < EVIDENCE_FLUSH_BATCH ? ev->ndirty : EVIDENCE_FLUSH_BATCH;
    flush(ev);
    if (ev->ndirty || ev->count)
        arm(ev);
}

/* ---- networks ----------------------------------------------------------- */

static void drop(struct evidence *ev, struct ev_entry *e)
{
    struct ev_entry **pp = &ev->buckets[e->hash & (ev->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ev, e);
    dirty_unlink(ev, e);
    if (e->inflight)
        e->inflight->e = NULL;
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

    if (e->dirty && ev->store && !ev->away)
        send_merge(ev, e, 1);
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
    arm(ev);                            /* the store is watched from now on */
    return e;
}

/* ---- the interface ------------------------------------------------------ */

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
    ev->nbuckets = EVIDENCE_BUCKETS_MIN;
    ev->buckets = xcalloc(ev->nbuckets, sizeof(*ev->buckets));
    ev->epoch = 1;
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
    struct ev_merge *m;

    if (!ev)
        return;
    check_store(ev);
    while (ev->dirty_head && !ev->away)
        send_merge(ev, ev->dirty_head, 1);
    ev->closing = 1;
    while ((m = ev->merges)) {          /* their answers find nobody */
        merge_unlink(ev, m);
        m->ev = NULL;
        m->e = NULL;
    }
    while (ev->lru_head)
        drop(ev, ev->lru_head);
    free(ev->buckets);
    ev->buckets = NULL;
    uv_close((uv_handle_t *)&ev->timer, timer_closed);
}

/* add_local - what only we have seen of e: pending and sent, faded. */
static void add_local(const struct evidence *ev, const struct ev_entry *e,
                      struct score *s, uint64_t now)
{
    if (!e)
        return;
    score_add(s, &e->pending, now, ev->half_life_ms);
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
        check_store(ev);
        answer_view(r, now);
        maybe_release(ev);
        return;
    }
    check_store(ev);                    /* it answered: it is up */
    /* an unparsable value reads as empty, as the merge script sees it */
    if (status != STORE_OK || score_decode(val, len, &s) < 0)
        memset(&s, 0, sizeof(s));
    score_decay(&s, now, ev->half_life_ms);
    e = hold(r, status == STORE_OK ? entry(ev, r->net) : find(ev, r->net));
    add_local(ev, e, &s, now);
    if (e) {
        /* until its floor lands the store may lack what we saw (a
         * restart, a refused write): never answer lower than the view */
        if (needs_floor(ev, e))
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
    check_store(ev);
    if (!ev->store || ev->away || ev->closing) {
        answer_view(r, now_ms);
        return;
    }
    ev->reads_out++;
    ev->store->ops->get(ev->store, key, build_key(ev, net, key), read_done, r);
}

/* record_in - delta into e (NULL: a network not kept). */
static void record_in(struct evidence *ev, struct ev_entry *e, const struct score *delta)
{
    uint64_t now = delta->t_ms;

    ev->recorded++;
    if (!e)
        return;
    score_add(&e->view, delta, now, ev->half_life_ms);
    if (ev->store) {
        score_add(&e->pending, delta, now, ev->half_life_ms);
        mark_dirty(ev, e);
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

int evidence_view(struct evidence *ev, const char *net, struct score *out)
{
    return view_of(ev, find(ev, net), util_wall_ms(), out);
}

int evidence_view_via(struct evidence_read *r, uint64_t now_ms, struct score *out)
{
    return view_of(r->ev, entry_via(r, 0), now_ms, out);
}

void evidence_forget(struct evidence *ev, const char *net, store_count_cb *cb,
                     void *arg)
{
    struct ev_entry *e = find(ev, net);
    char key[EVIDENCE_KEY_MAX];

    if (e)
        drop(ev, e);
    if (!ev->store || strlen(net) >= EVIDENCE_NET_MAX) {
        cb(arg, e ? STORE_OK : STORE_MISS, e ? 1 : 0, -1);
        return;
    }
    ev->store->ops->del(ev->store, key, build_key(ev, net, key), cb, arg);
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

int evidence_note_stage(struct evidence *ev, const char *net, int stage)
{
    return note_in(entry(ev, net), stage);
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
