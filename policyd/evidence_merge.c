/*
 * evidence_merge - the merges of evidence's table into the store: the
 * tick, the store going away and coming back, merge calls and those sent
 * again
 *
 * SYNOPSIS
 *	#include "evidence_priv.h"
 *
 *	void ev_tick(t)
 *	void ev_check_store(ev)
 *	void ev_send_merge(ev, e, n, detached)
 *	void ev_strike(ev, key, klen)
 *	void ev_merges_close(ev)
 *
 * DESCRIPTION
 *	The table, reads and records are evidence.c's (see its DESCRIPTION
 *	for the dirty FIFOs); this file sends what they gather.
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
 */

#include "evidence_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

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
        if (ev_needs_floor(ev, e))
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
    ev_mark_dirty(ev, e, 1);
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
        ev_mark_dirty(ev, e, 1);
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
    ev_arm(ev);
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
    if (!whole && ev->flushing)
        ev->refused_now = 1;            /* answered at once: this tick is done */
    ev_check_store(ev);
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

/* ev_strike - the network of key leaves every call watched (in flight or
 * kept for resend): their resends go without it (same id; a call left
 * empty is dropped). */
void ev_strike(struct evidence *ev, const char *key, size_t klen)
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

/* ev_send_merge - the pending deltas of e[0..n-1] (and floor = view for each
 * that needs one) in one store call.  detached: nobody waits for the
 * answer (the networks or the table are going away), so it may go while
 * another merge of the same network is in flight; it is never sent
 * again, so it carries no id (no id key written in the store). */
void ev_send_merge(struct evidence *ev, struct ev_entry **e, size_t n, int detached)
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
        it->klen = ev_build_key(ev, e[i]->net, sl->key);
        it->delta = e[i]->pending;
        if (ev_needs_floor(ev, e[i])) {
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
        ev_dirty_unlink(ev, e[i]);
    }
    if (!detached)
        merge_link(ev, m);
    /* every e[i] is consistent by now */
    merge_call(ev, m);
}

/* take - from *cur on (a FIFO), the networks whose merge is not in flight
 * into batch[n..], while n < upto and n < due; *cur is left after the
 * last one looked at.  The new n. */
static size_t take(struct ev_entry **cur, struct ev_entry **batch, size_t n, size_t upto,
                   size_t due)
{
    for (; *cur && n < upto && n < due; *cur = (*cur)->dnext)
        if (!(*cur)->inflight)
            batch[n++] = *cur;
    return n;
}

/* flush - the networks this tick owes (ev->due: those it found in block,
 * against or ready, at most EVIDENCE_FLUSH_BATCH), block first (up to half
 * a call), then against (up to three quarters, with block), then ready,
 * then whatever is left of block and against, each FIFO oldest first,
 * EVIDENCE_MERGE_BATCH to a call, while fewer than EVIDENCE_MERGES_OUT
 * calls wait for the store; each answer calls it again.  A network whose
 * merge is in flight waits for the answer (and a later tick).  A call
 * refused as it is made (the store over its limit of calls in flight)
 * ends the tick's flush: the next would be refused too, and its networks
 * would come round again ahead of the rest.  A refused network goes back
 * to the tail and has had its turn, so each is tried about once a tick. */
static void flush(struct evidence *ev)
{
    struct ev_entry *batch[EVIDENCE_MERGE_BATCH];

    if (ev->flushing)
        return;                 /* an answer inside ev_send_merge: the loop goes on */
    ev->flushing = 1;
    ev->refused_now = 0;
    while (ev->due && ev->nmerges < EVIDENCE_MERGES_OUT && !ev->away
           && !ev->refused_now) {
        struct ev_entry *block = ev->block.head, *against = ev->against.head;
        struct ev_entry *ready = ev->ready.head;
        size_t n;

        /* blocks and traps first, but for half the call: a flood of trap
         * hits (new /64s are cheap) must not hold back other harvesters'
         * unknown recipients; then against, but a quarter of the call kept
         * for ready while it has any: a flood of either must not starve
         * the valid ones (the fleet would see honest networks' shares too
         * high).  What one leaves, the others fill. */
        n = take(&block, batch, 0, EVIDENCE_MERGE_BATCH / 2, ev->due);
        n = take(&against, batch, n, EVIDENCE_MERGE_BATCH - EVIDENCE_MERGE_BATCH / 4,
                 ev->due);
        n = take(&ready, batch, n, EVIDENCE_MERGE_BATCH, ev->due);
        n = take(&block, batch, n, EVIDENCE_MERGE_BATCH, ev->due);
        n = take(&against, batch, n, EVIDENCE_MERGE_BATCH, ev->due);
        if (n == 0)
            break;
        ev->due -= n;
        ev_send_merge(ev, batch, n, 0);
    }
    ev->flushing = 0;
}

/* ev_check_store - notice the store going away and coming back. */
void ev_check_store(struct evidence *ev)
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
            if (ev_needs_floor(ev, e))
                ev_mark_dirty(ev, e, 1);
        if (ev_ndirty(ev))
            log_info("evidence: the store is back; merging %zu network(s)",
                     ev_ndirty(ev));
    }
}

void ev_tick(uv_timer_t *t)
{
    struct evidence *ev = t->data;
    uint64_t now = uv_now(ev->loop);
    struct ev_entry *e;

    ev_check_store(ev);
    resend_unsure(ev);
    /* valid-only changes old enough: this tick is the last before
     * EVIDENCE_VALID_FLUSH_MS runs out */
    while ((e = ev->lazy.head)
           && e->dirty_ms + EVIDENCE_VALID_FLUSH_MS <= now + EVIDENCE_FLUSH_MS) {
        ev_dirty_unlink(ev, e);
        e->queue = Q_READY;
        ev_queue_push(&ev->ready, e);
    }
    ev->due = ev->block.n + ev->against.n + ev->ready.n;
    if (ev->due > EVIDENCE_FLUSH_BATCH)
        ev->due = EVIDENCE_FLUSH_BATCH;
    flush(ev);
    if (ev_ndirty(ev) || ev->count || ev->nunsure)
        ev_arm(ev);
}

/* ev_merges_close - the last merges, at evidence_free: the calls left unsure
 * sent again as they were, unwatched; every network's pending deltas, lazy or
 * not, sent fire-and-forget (when the store is up); then the calls still out
 * detached, so their answers find nobody. */
void ev_merges_close(struct evidence *ev)
{
    struct ev_merge *m;

    ev_check_store(ev);
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
    while (ev_ndirty(ev) && !ev->away) { /* everything pending, lazy or not */
        struct ev_entry *batch[EVIDENCE_MERGE_BATCH];
        size_t n = 0;
        int q = Q_BLOCK;

        while (!ev_queue_of(ev, q)->head)
            q++;
        for (struct ev_entry *e = ev_queue_of(ev, q)->head;
             e && n < EVIDENCE_MERGE_BATCH; e = e->dnext)
            batch[n++] = e;
        ev_send_merge(ev, batch, n, 1);
    }
    ev->closing = 1;
    while ((m = ev->merges)) {          /* their answers find nobody */
        merge_unlink(ev, m);
        m->ev = NULL;
    }
}
