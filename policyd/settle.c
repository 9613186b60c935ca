/*
 * settle - a second look at a network's standing (see settle.h)
 *
 * Each network queued is one entry, allocated (the read in flight holds
 * its address), found by name through a cache (the entry's address as its
 * value), and kept in a list by due time (a new entry goes at the tail, a
 * postponed one where its time puts it).  One uv timer, armed for the
 * head.  Due times are of the monotonic clock, not the loop's (which may
 * be a loop turn old): a timer that fires early is armed again.
 */

#include "settle.h"

#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "util.h"

struct st_entry {
    struct settle *st;
    struct st_entry *next;          /* the list, by due time */
    uint64_t due_ms;                /* util_now_ms() */
    uint64_t last_ms;               /* judged then at the latest */
    uint64_t seen_t_ms;             /* the store copy's time last read, */
    uint64_t seen_ms;               /* first read then (util_now_ms) */
    uint64_t tag;
    struct settle_wait *head, *tail;
    struct evidence_read rd;        /* the read of the verdict */
    char net[EVIDENCE_NET_MAX];
};

struct settle {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct evidence *ev;
    uint64_t delay_ms, quiet_ms, max_ms;
    size_t max;
    settle_judge *judge;
    void *owner;
    struct cache *index;            /* net -> its entry's address */
    struct st_entry *head, *tail;   /* queued, the first due first */
    size_t n;                       /* queued or being read */
    int refs;                       /* owner, timer, reads in flight */
    int closing;
};

static void unref(struct settle *st)
{
    if (--st->refs > 0)
        return;
    cache_free(st->index);
    free(st);
}

static void timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

struct settle *settle_new(uv_loop_t *loop, struct evidence *ev, size_t max,
                          settle_judge *judge, void *owner)
{
    struct settle *st = xcalloc(1, sizeof(*st));

    st->loop = loop;
    st->ev = ev;
    st->max = max;
    st->judge = judge;
    st->owner = owner;
    st->index = cache_new(0);       /* bounded by max, never evicted */
    st->refs = 2;
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    return st;
}

void settle_times(struct settle *st, const struct settle_times *t)
{
    st->delay_ms = t->delay_ms;
    st->quiet_ms = t->quiet_ms;
    st->max_ms = t->max_ms;
}

static struct st_entry *find(struct settle *st, const char *net, size_t len)
{
    int64_t v;
    uint64_t exp;

    if (!cache_get(st->index, net, len, 0, &v, &exp))
        return NULL;
    return (struct st_entry *)(intptr_t)v;
}

static void unindex(struct settle *st, struct st_entry *e)
{
    cache_del(st->index, e->net, strlen(e->net));
    st->n--;
}

void settle_free(struct settle *st)
{
    struct st_entry *e;

    if (!st)
        return;
    st->closing = 1;
    while ((e = st->head) != NULL) {    /* unjudged; reads in flight stay */
        st->head = e->next;
        unindex(st, e);
        free(e);
    }
    st->tail = NULL;
    uv_close((uv_handle_t *)&st->timer, timer_closed);
    unref(st);
}

static void arm(struct settle *st, uint64_t now);

/* enqueue - e in the list at its due time (most often the tail's) */
static void enqueue(struct settle *st, struct st_entry *e)
{
    struct st_entry **pp = st->tail && st->tail->due_ms <= e->due_ms
        ? &st->tail->next : &st->head;

    while (*pp && (*pp)->due_ms <= e->due_ms)
        pp = &(*pp)->next;
    e->next = *pp;
    *pp = e;
    if (!e->next)
        st->tail = e;
    if (st->head == e)
        arm(st, util_now_ms());
}

/* unsettled - ms until e's standing has been still for quiet_ms: the
 * store's copy merged since (by any process), or deltas here not merged
 * yet; 0 when it is still, or its time is up.  Still for: since the copy's
 * time by this process's clock, or, when another process's clock runs
 * ahead, since this process first read that same time. */
static uint64_t unsettled(const struct settle *st, struct st_entry *e, int from_store)
{
    uint64_t wall = util_wall_ms(), now = util_now_ms(), still, wait = 0;

    if (!from_store || now >= e->last_ms)
        return 0;                   /* no fleet to wait for, or no more time */
    if (e->rd.stored_t_ms != e->seen_t_ms) {
        e->seen_t_ms = e->rd.stored_t_ms;
        e->seen_ms = now;
    }
    still = wall > e->rd.stored_t_ms ? wall - e->rd.stored_t_ms : 0;
    if (now - e->seen_ms > still)
        still = now - e->seen_ms;
    if (still < st->quiet_ms)
        wait = st->quiet_ms - still;
    if (evidence_unmerged_via(&e->rd))
        wait = st->quiet_ms;
    return wait && now + wait > e->last_ms ? e->last_ms - now : wait;
}

/* judged - e's standing, read at its due time: judged when it has been
 * still for quiet_ms (whatever any process recorded before its last merge
 * has had time to follow it), else read again then */
static void judged(void *arg, const struct score *standing, int from_store)
{
    struct st_entry *e = arg;
    struct settle *st = e->st;
    struct settle_wait *w, *next;
    uint64_t wait = st->closing ? 0 : unsettled(st, e, from_store);

    if (wait) {
        e->due_ms = util_now_ms() + wait;
        enqueue(st, e);
        unref(st);
        return;
    }
    unindex(st, e);                 /* a waiter may queue it anew */
    if (!st->closing)
        st->judge(st->owner, e->net, e->tag, standing, from_store);
    for (w = e->head; w; w = next) {
        next = w->next;
        w->cb(w->arg);
    }
    free(e);
    unref(st);
}

static void due(uv_timer_t *t);

static void arm(struct settle *st, uint64_t now)
{
    if (st->head && !st->closing)
        uv_timer_start(&st->timer, due, st->head->due_ms > now ? st->head->due_ms - now : 0, 0);
}

static void due(uv_timer_t *t)
{
    struct settle *st = t->data;
    uint64_t now = util_now_ms();
    struct st_entry *e;

    while ((e = st->head) != NULL && e->due_ms <= now) {
        st->head = e->next;
        if (!st->head)
            st->tail = NULL;
        st->refs++;
        evidence_read(st->ev, e->net, &e->rd, judged, e);
    }
    arm(st, now);
}

int settle_add(struct settle *st, const char *net, uint64_t tag)
{
    size_t len = strlen(net);
    struct st_entry *e;

    if (st->closing || len >= EVIDENCE_NET_MAX)
        return -1;
    if (find(st, net, len))
        return 0;
    if (st->n >= st->max)
        return -1;
    e = xcalloc(1, sizeof(*e));
    e->st = st;
    e->due_ms = util_now_ms() + st->delay_ms;
    e->last_ms = util_now_ms() + st->max_ms;
    e->tag = tag;
    memcpy(e->net, net, len + 1);
    cache_put(st->index, net, len, (int64_t)(intptr_t)e, 0);
    st->n++;
    enqueue(st, e);
    return 1;
}

int settle_wait(struct settle *st, const char *net, struct settle_wait *w)
{
    struct st_entry *e = find(st, net, strlen(net));

    if (!e)
        return 0;
    w->next = NULL;
    if (e->tail)
        e->tail->next = w;
    else
        e->head = w;
    e->tail = w;
    return 1;
}

size_t settle_count(const struct settle *st)
{
    return st->n;
}
