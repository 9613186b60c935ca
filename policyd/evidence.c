/*
 * evidence - where the standings of client networks live, kept whole
 *
 * SYNOPSIS
 *	#include "evidence.h"
 *
 * DESCRIPTION
 *	See evidence.h for the contract.  The table: a hash table with
 *	chaining (FNV-1a over the network string, the bucket array doubled
 *	as the table grows), an LRU list (head: most recently used) and two
 *	FIFOs of dirty networks, all intrusive, so finding, touching and
 *	dropping a network is O(1).
 *
 *	Dirty networks wait in one of two FIFOs: ready (merged on the next
 *	tick) and lazy (only valid recipients, of a network far from every
 *	stage, see urgent(): moved to ready on the first tick at least
 *	EVIDENCE_VALID_FLUSH_MS - EVIDENCE_FLUSH_MS after the network became
 *	dirty, so it is merged within EVIDENCE_VALID_FLUSH_MS).  Unfavourable
 *	evidence for a lazy network moves it to ready, valid counts and all;
 *	so does a floor owed.  A sender well below the shares that act on it
 *	then has its merges once a second, not every tick it is busy.
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
 *	floor clears the need, and until then neither a read nor a merge's
 *	answer (a call sent again after a restart lands in an empty store)
 *	makes the view lower.  Otherwise the store's answer, a miss
 *	included, replaces the view: an `unblock` by another daemon is
 *	believed, not undone.  A merge the store refuses while up (OOM with
 *	noeviction, WRONGTYPE) returns its deltas to pending and makes that
 *	network need a floor; it is retried every tick.
 *
 *	Reads allocate nothing of their own (the caller's struct
 *	evidence_read is the context); a store answer about a network not
 *	in the table adds it (its view is the answer), as a record does.
 *
 *	Merges: at most one in flight per network (its deltas in sent), up
 *	to EVIDENCE_MERGE_BATCH networks a store call, at most
 *	EVIDENCE_FLUSH_BATCH networks sent per tick, so coming back with a
 *	full table never floods the store's queue.  Each call has a small
 *	context (struct ev_merge) that outlives its networks and the table:
 *	dropping either just detaches it.  The store answers each network of
 *	a call on its own (a key of the wrong type is refused alone).
 *
 *	Each call carries an id, PREFIX "m:" INSTANCE ":" SEQ (INSTANCE 64
 *	random bits a process, SEQ its count of calls): unique fleet-wide.
 *	A call answered STORE_UNSURE keeps its networks in flight (sent
 *	counted once: reads raise the store's answer to the view rather than
 *	add sent) and waits in a FIFO; each tick sends those calls again as
 *	they were, before any new merge, until the script answers (a
 *	refusal of a resend proves nothing about the first send).  The
 *	oldest beyond EVIDENCE_UNSURE_MAX, or one unanswered for
 *	EVIDENCE_UNSURE_MS (before the store may forget its id), is given up:
 *	its networks owe a floor (their views), which the store takes as a
 *	maximum, never adding twice.  evidence_forget (`unblock`) strikes its
 *	network from every call watched: a resend goes without it (same id;
 *	a call left empty is dropped), so it cannot bring the key back.
 *	Fire-and-forget merges (eviction, evidence_free) are not watched:
 *	unanswered, they may be lost; never sent again, they carry no id.
 *	A call's context is sized for its networks (about 250 bytes each).
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

#include "log.h"
#include "util.h"

#define EVIDENCE_FLUSH_BATCH 512    /* networks merged per tick at most */
#define EVIDENCE_TTL_HALVES 12      /* 2^-12: 4096 invalid fade below one */
#define EVIDENCE_BUCKETS_MIN 1024
#define EVIDENCE_KEY_MAX (CONFIG_PREFIX_MAX + 2 + EVIDENCE_NET_MAX)
#define EVIDENCE_ID_KEY_MAX (CONFIG_PREFIX_MAX + 40)  /* PREFIX "m:" 16 hex ":" 16 hex */
#define EVIDENCE_UNSURE_MAX (4 * EVIDENCE_MERGES_OUT)  /* unanswered calls kept */
#define EVIDENCE_UNSURE_MS (STORE_MERGE_ID_MS / 2)     /* sent again this long */
#define EVIDENCE_UNSURE_LOG_MS 60000                   /* one give-up line a minute */

struct ev_merge;

enum ev_queue_id { Q_NONE, Q_READY, Q_LAZY };

struct ev_entry {
    struct ev_entry *hnext;         /* hash chain */
    struct ev_entry *lprev, *lnext; /* LRU list */
    struct ev_entry *dprev, *dnext; /* its dirty FIFO, while dirty */
    struct ev_merge *inflight;      /* the merge carrying sent, or NULL */
    struct score view, pending, sent;
    uint64_t hash;
    uint64_t dirty_ms;              /* loop time it became dirty */
    unsigned synced;                /* the epoch its store copy is good for */
    int queue;                      /* enum ev_queue_id: which FIFO, if any */
    int stage;                      /* last noted; -1 none */
    char net[EVIDENCE_NET_MAX];
};

/* A FIFO of dirty networks (intrusive: dprev, dnext). */
struct ev_queue {
    struct ev_entry *head, *tail;
    size_t n;
};

/* What a merge call keeps of one network, beside its store_merge_item. */
struct ev_slot {
    struct ev_entry *e;             /* NULL: the network went meanwhile */
    unsigned floor_epoch;           /* 0: no floor sent */
    int struck;                     /* forgotten: left out of any resend */
    struct score floor;             /* items[i].floor points here */
    char key[EVIDENCE_KEY_MAX];
};

/* One merge call on its way: detached (ev NULL, or a slot's e NULL) when
 * the table or a network goes first.  It keeps what it sent (id, keys,
 * deltas, floors), so a call left unanswered goes again as it was, less
 * the networks forgotten since.  One allocation sized for its n networks
 * (merge_new): items[n], then slot[n]. */
struct ev_merge {
    struct evidence *ev;
    struct ev_merge *prev, *next;   /* ev->merges, or next: ev's unsure FIFO */
    size_t n;
    int unsure;                     /* once unanswered: maybe applied */
    uint64_t first_ms;              /* loop time it first went out */
    struct ev_slot *slot;           /* just after items[n] */
    size_t id_klen;                 /* 0: no id (never sent again) */
    char id_key[EVIDENCE_ID_KEY_MAX];
    struct store_merge_item items[];
};

_Static_assert(sizeof(struct store_merge_item) % _Alignof(struct ev_slot) == 0,
               "slot[] follows items[] aligned");

struct evidence {
    uv_loop_t *loop;
    struct store *store;
    char prefix[CONFIG_PREFIX_MAX + 1];
    size_t prefix_len;
    uint64_t half_life_ms, ttl_ms;
    size_t max_tracked;
    unsigned lazy_share;            /* percent: lowest_share(); see urgent */
    uint64_t recorded;              /* evidence_record calls, ever */

    struct ev_entry **buckets;
    size_t nbuckets;                /* a power of two */
    size_t count;
    struct ev_entry *lru_head, *lru_tail;
    struct ev_queue ready, lazy;    /* dirty networks (see DESCRIPTION) */
    struct ev_merge *merges;
    size_t nmerges;                 /* in ev->merges: waiting for the store */
    struct ev_merge *unsure_head, *unsure_tail;     /* unanswered: sent again */
    size_t nunsure;
    uint64_t instance, seq;         /* merge ids: random per process, then a count */
    struct log_limiter unsure_rl;
    size_t due;                     /* networks this tick still owes */
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

static struct ev_queue *queue_of(struct evidence *ev, int id)
{
    return id == Q_READY ? &ev->ready : &ev->lazy;
}

static void queue_push(struct ev_queue *q, struct ev_entry *e)
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

/* dirty_unlink - e off its FIFO: clean (nothing left to merge). */
static void dirty_unlink(struct evidence *ev, struct ev_entry *e)
{
    struct ev_queue *q;

    if (e->queue == Q_NONE)
        return;
    q = queue_of(ev, e->queue);
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

static size_t ndirty(const struct evidence *ev)
{
    return ev->ready.n + ev->lazy.n;
}

static void arm(struct evidence *ev)
{
    if (!ev->closing && ev->store && !uv_is_active((uv_handle_t *)&ev->timer))
        uv_timer_start(&ev->timer, tick, EVIDENCE_FLUSH_MS, 0);
}

static int needs_floor(const struct evidence *ev, const struct ev_entry *e);

/* mark_dirty - queue e for a flush (only with a store to flush to): the
 * next tick when urgent (or a floor is owed), else within
 * EVIDENCE_VALID_FLUSH_MS.  Already lazy and now urgent: moved to ready,
 * keeping the time it became dirty. */
static void mark_dirty(struct evidence *ev, struct ev_entry *e, int urgent)
{
    if (!ev->store || ev->closing)
        return;
    urgent = urgent || needs_floor(ev, e);
    if (e->queue == Q_READY || (e->queue == Q_LAZY && !urgent))
        return;
    if (e->queue == Q_LAZY)
        dirty_unlink(ev, e);
    else
        e->dirty_ms = uv_now(ev->loop);
    e->queue = urgent ? Q_READY : Q_LAZY;
    queue_push(queue_of(ev, e->queue), e);
    arm(ev);
}

/* unfavourable - s holds evidence against a network. */
static int unfavourable(const struct score *s)
{
    return s->invalid > 0 || s->traps > 0 || s->block_until_ms > 0;
}

/* urgent - e's change, delta (not yet in e's view), must reach the fleet
 * on the next tick: the delta is unfavourable, e has a trap or block on
 * record, or the share of invalid recipients the other daemons can see
 * is at least half of lazy_share.  Near a threshold, valid recipients
 * late would make them see the share too high (a tarpit or block share,
 * a siege's revocation), fleet-wide and for as long as the network keeps
 * sending.  What they can see is the store's copy: the view less what
 * this process has not had answered (pending and sent), not the view,
 * which the waiting valid recipients themselves push down (a young
 * network of 1 invalid in 3 with 6 valid waiting here is at 11% in the
 * view and at 33% in the store).  Subtracting those counts unfaded takes
 * away at least what they weigh now: the share is overstated, never
 * understated (evidence.h). */
static int urgent(const struct evidence *ev, const struct ev_entry *e,
                  const struct score *delta)
{
    const struct score *v = &e->view;
    struct score stored = *v;

    if (unfavourable(delta) || v->traps > 0 || v->block_until_ms > 0)
        return 1;
    if (v->invalid <= 0)
        return 0;                   /* spotless: no share to overstate */
    stored.valid = v->valid - e->pending.valid - e->sent.valid;
    if (stored.valid < 0)
        stored.valid = 0;
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

static void merge_link(struct evidence *ev, struct ev_merge *m)
{
    m->ev = ev;
    m->prev = NULL;
    m->next = ev->merges;
    if (ev->merges)
        ev->merges->prev = m;
    ev->merges = m;
    ev->nmerges++;
}

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

/* merge_landed - the store's answer about e (it NULL or it->val NULL:
 * refused). */
static void merge_landed(struct evidence *ev, struct ev_entry *e, unsigned floor_epoch,
                         const struct store_item *it)
{
    struct score st;
    uint64_t now;

    e->inflight = NULL;
    now = util_wall_ms();
    if (it && it->val && score_decode(it->val, it->vlen, &st) == 0) {
        /* the store has everything sent: what we know is it plus pending,
         * but never less than the view while a floor is owed (a call
         * sent again after a restart lands in an empty store) */
        score_add(&st, &e->pending, now, ev->half_life_ms);
        if (floor_epoch)
            e->synced = floor_epoch;
        if (needs_floor(ev, e))
            score_max(&st, &e->view, now, ev->half_life_ms);
        e->view = st;
        memset(&e->sent, 0, sizeof(e->sent));
        return;
    }
    if (it && it->val) {
        /* applied, but not in the wire form: keep the view as it is */
        log_warn("evidence: %s: the store answered a merge with %.*s", e->net,
                 (int)(it->vlen > 60 ? 60 : it->vlen), it->val);
        memset(&e->sent, 0, sizeof(e->sent));
        return;
    }
    score_add(&e->pending, &e->sent, now, ev->half_life_ms);
    memset(&e->sent, 0, sizeof(e->sent));
    e->synced = 0;
    mark_dirty(ev, e, 1);
}

static struct ev_merge *unsure_pop(struct evidence *ev)
{
    struct ev_merge *m = ev->unsure_head;

    ev->unsure_head = m->next;
    if (!ev->unsure_head)
        ev->unsure_tail = NULL;
    m->next = NULL;
    ev->nunsure--;
    return m;
}

/* give_up - m's fate stays unknown: its networks' views, which count its
 * deltas once, go as floors with their next merges (a floor raises the
 * store to it, never adds twice). */
static void give_up(struct evidence *ev, struct ev_merge *m)
{
    log_warn_rl(&ev->unsure_rl, "evidence: a merge of %zu network(s) went "
                "unanswered for %llu ms; their standings go as floors", m->n,
                (unsigned long long)(uv_now(ev->loop) - m->first_ms));
    for (size_t i = 0; i < m->n; i++) {
        struct ev_entry *e = m->slot[i].e;
        if (!e)
            continue;
        e->inflight = NULL;
        memset(&e->sent, 0, sizeof(e->sent));
        e->synced = 0;
        mark_dirty(ev, e, 1);
    }
    free(m);
}

/* keep_unsure - m went out and got no answer: it may have been applied.
 * Kept whole (its networks' deltas stay in sent, counted once), to go
 * again as it was; the oldest is given up beyond EVIDENCE_UNSURE_MAX. */
static void keep_unsure(struct evidence *ev, struct ev_merge *m)
{
    m->unsure = 1;
    if (ev->nunsure >= EVIDENCE_UNSURE_MAX)
        give_up(ev, unsure_pop(ev));
    m->next = NULL;
    if (ev->unsure_tail)
        ev->unsure_tail->next = m;
    else
        ev->unsure_head = m;
    ev->unsure_tail = m;
    ev->nunsure++;
    arm(ev);
}

/* merge_done - the store's answer to one merge call; its place in the
 * store's queue goes to the next networks this tick owes.  Once a call
 * went unanswered, only the script's answer settles it: a refusal of a
 * later send says nothing about the first. */
static void merge_done(void *arg, int status, const struct store_item *items, size_t n)
{
    struct ev_merge *m = arg;
    struct evidence *ev = m->ev;
    int whole = status == STORE_OK && n == m->n;

    if (ev && !whole && (status == STORE_UNSURE || m->unsure)) {
        merge_unlink(ev, m);
        keep_unsure(ev, m);
    } else {
        if (ev) {
            merge_unlink(ev, m);
            for (size_t i = 0; i < m->n; i++)
                if (m->slot[i].e)       /* else the network went meanwhile */
                    merge_landed(ev, m->slot[i].e, m->slot[i].floor_epoch,
                                 whole ? &items[i] : NULL);
        }
        free(m);
    }
    if (!ev)
        return;                         /* fire and forget */
    check_store(ev);
    flush(ev);
}

/* merge_call - m (as it was built) to the store. */
static void merge_call(struct evidence *ev, struct ev_merge *m)
{
    struct store_merge sm;

    sm.items = m->items;
    sm.n = m->n;
    sm.now_ms = util_wall_ms();
    sm.half_life_ms = ev->half_life_ms;
    sm.ttl_ms = ev->ttl_ms;
    sm.id_key = m->id_key;
    sm.id_klen = m->id_klen;
    /* may answer before it returns */
    ev->store->ops->merge(ev->store, &sm, merge_done, m);
}

/* merge_unstrike - m less its struck networks (forgotten since it went
 * out: a resend must not bring back what `unblock` deleted); how many are
 * left.  Only between sends: the store has no pointer into m then. */
static size_t merge_unstrike(struct ev_merge *m)
{
    size_t k = 0;

    for (size_t i = 0; i < m->n; i++) {
        if (m->slot[i].struck)
            continue;
        if (k != i) {
            m->items[k] = m->items[i];
            m->slot[k] = m->slot[i];
            m->items[k].key = m->slot[k].key;
            if (m->items[k].floor)
                m->items[k].floor = &m->slot[k].floor;
        }
        k++;
    }
    return m->n = k;
}

/* strike - the network of key leaves every call watched (in flight or
 * kept for resend): their resends go without it (same id; a call left
 * empty is dropped). */
static void strike(struct evidence *ev, const char *key, size_t klen)
{
    struct ev_merge *lists[2] = { ev->merges, ev->unsure_head };

    for (int l = 0; l < 2; l++)
        for (struct ev_merge *m = lists[l]; m; m = m->next)
            for (size_t i = 0; i < m->n; i++)
                if (m->items[i].klen == klen && memcmp(m->items[i].key, key, klen) == 0) {
                    m->slot[i].struck = 1;
                    m->slot[i].e = NULL;
                }
}

/* resend_unsure - the calls left unanswered go again as they were (the
 * same id: applied once at most) but for the networks forgotten since,
 * oldest first, while fewer than EVIDENCE_MERGES_OUT wait; their
 * networks' newer deltas wait for them (still in flight).  Given up
 * before the store may forget their ids. */
static void resend_unsure(struct evidence *ev)
{
    uint64_t now = uv_now(ev->loop);

    for (size_t k = ev->nunsure; k && ev->unsure_head && !ev->away
                                 && ev->nmerges < EVIDENCE_MERGES_OUT; k--) {
        struct ev_merge *m = unsure_pop(ev);

        if (merge_unstrike(m) == 0) {
            free(m);
            continue;
        }
        if (now - m->first_ms >= EVIDENCE_UNSURE_MS) {
            give_up(ev, m);
            continue;
        }
        merge_link(ev, m);
        merge_call(ev, m);
    }
}

/* merge_new - a call context for n networks, zeroed: items[n] then
 * slot[n] in one allocation. */
static struct ev_merge *merge_new(size_t n)
{
    struct ev_merge *m = xcalloc(1, sizeof(*m) + n * (sizeof(m->items[0])
                                                      + sizeof(struct ev_slot)));

    m->n = n;
    m->slot = (struct ev_slot *)(m->items + n);
    return m;
}

/* send_merge - the pending deltas of e[0..n-1] (and floor = view for each
 * that needs one) in one store call.  detached: nobody waits for the
 * answer (the networks or the table are going away), so it may go while
 * another merge of the same network is in flight; it is never sent
 * again, so it carries no id (no id key written in the store). */
static void send_merge(struct evidence *ev, struct ev_entry **e, size_t n, int detached)
{
    struct ev_merge *m = merge_new(n);
    uint64_t now = util_wall_ms();

    m->first_ms = uv_now(ev->loop);
    if (!detached)
        m->id_klen = (size_t)snprintf(m->id_key, sizeof(m->id_key), "%sm:%016llx:%llx",
                                      ev->prefix, (unsigned long long)ev->instance,
                                      (unsigned long long)++ev->seq);
    for (size_t i = 0; i < n; i++) {
        struct store_merge_item *it = &m->items[i];
        struct ev_slot *sl = &m->slot[i];

        score_decay(&e[i]->pending, now, ev->half_life_ms);
        it->key = sl->key;
        it->klen = build_key(ev, e[i]->net, sl->key);
        it->delta = e[i]->pending;
        if (needs_floor(ev, e[i])) {
            sl->floor = e[i]->view;
            it->floor = &sl->floor;
        }
        if (!detached) {
            sl->e = e[i];
            sl->floor_epoch = it->floor ? ev->epoch : 0;
            e[i]->inflight = m;
            e[i]->sent = e[i]->pending;
        }
        memset(&e[i]->pending, 0, sizeof(e[i]->pending));
        dirty_unlink(ev, e[i]);
    }
    if (!detached)
        merge_link(ev, m);
    /* every e[i] is consistent by now */
    merge_call(ev, m);
}

/* flush - the networks this tick owes (ev->due: those it found ready, at
 * most EVIDENCE_FLUSH_BATCH), oldest first, EVIDENCE_MERGE_BATCH to a
 * call, while fewer than EVIDENCE_MERGES_OUT calls wait for the store;
 * each answer calls it again.  A network whose merge is in flight waits
 * for the answer (and a later tick).  A refusal answered at once goes back
 * to the tail and has had its turn, so each network is tried about once a
 * tick. */
static void flush(struct evidence *ev)
{
    struct ev_entry *batch[EVIDENCE_MERGE_BATCH];

    if (ev->flushing)
        return;                 /* an answer inside send_merge: the loop goes on */
    ev->flushing = 1;
    while (ev->due && ev->nmerges < EVIDENCE_MERGES_OUT && !ev->away) {
        size_t n = 0;

        for (struct ev_entry *e = ev->ready.head;
             e && n < EVIDENCE_MERGE_BATCH && n < ev->due; e = e->dnext)
            if (!e->inflight)
                batch[n++] = e;
        if (n == 0)
            break;
        ev->due -= n;
        send_merge(ev, batch, n, 0);
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
                mark_dirty(ev, e, 1);
        if (ev->ready.n)
            log_info("evidence: the store is back; merging %zu network(s)",
                     ev->ready.n);
    }
}

static void tick(uv_timer_t *t)
{
    struct evidence *ev = t->data;
    uint64_t now = uv_now(ev->loop);
    struct ev_entry *e;

    check_store(ev);
    resend_unsure(ev);
    /* valid-only changes old enough: this tick is the last before
     * EVIDENCE_VALID_FLUSH_MS runs out */
    while ((e = ev->lazy.head)
           && e->dirty_ms + EVIDENCE_VALID_FLUSH_MS <= now + EVIDENCE_FLUSH_MS) {
        dirty_unlink(ev, e);
        e->queue = Q_READY;
        queue_push(&ev->ready, e);
    }
    ev->due = ev->ready.n < EVIDENCE_FLUSH_BATCH ? ev->ready.n : EVIDENCE_FLUSH_BATCH;
    flush(ev);
    if (ndirty(ev) || ev->count || ev->nunsure)
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
        send_merge(ev, &e, 1, 1);
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
    struct ev_merge *m;

    if (!ev)
        return;
    check_store(ev);
    while (ev->unsure_head) {           /* again as they were, unwatched */
        m = unsure_pop(ev);
        for (size_t i = 0; i < m->n; i++)
            if (m->slot[i].e)
                m->slot[i].e->inflight = NULL;
        m->ev = NULL;
        if (ev->away || merge_unstrike(m) == 0)
            free(m);
        else
            merge_call(ev, m);
    }
    while (ndirty(ev) && !ev->away) {   /* everything pending, lazy or not */
        struct ev_entry *batch[EVIDENCE_MERGE_BATCH];
        size_t n = 0;

        for (struct ev_entry *e = ev->ready.head ? ev->ready.head : ev->lazy.head;
             e && n < EVIDENCE_MERGE_BATCH; e = e->dnext)
            batch[n++] = e;
        send_merge(ev, batch, n, 1);
    }
    ev->closing = 1;
    while ((m = ev->merges)) {          /* their answers find nobody */
        merge_unlink(ev, m);
        m->ev = NULL;
    }
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
        check_store(ev);
        answer_view(r, now);
        maybe_release(ev);
        return;
    }
    check_store(ev);                    /* it answered: it is up */
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
    int now_urgent;

    ev->recorded++;
    if (!e)
        return;
    now_urgent = urgent(ev, e, delta);      /* by the view before delta */
    score_add(&e->view, delta, now, ev->half_life_ms);
    if (ev->store) {
        score_add(&e->pending, delta, now, ev->half_life_ms);
        mark_dirty(ev, e, now_urgent);
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
    klen = build_key(ev, net, key);
    strike(ev, key, klen);              /* a resend must not undo the DEL */
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
