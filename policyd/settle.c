/*
 * settle - a second look at a network's standing (see settle.h)
 *
 * Each network queued is one entry, allocated (the read in flight holds
 * its address), found by name through a cache (the entry's address as its
 * value), and kept in a FIFO: every entry waits the same delay_ms, so the
 * order they came is the order they fall due.  One uv timer, armed for the
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
    struct st_entry *next;          /* the FIFO */
    uint64_t due_ms;                /* util_now_ms() */
    uint64_t tag;
    struct settle_wait *head, *tail;
    struct evidence_read rd;        /* the read of the verdict */
    char net[EVIDENCE_NET_MAX];
};

struct settle {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct evidence *ev;
    uint64_t delay_ms;
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

struct settle *settle_new(uv_loop_t *loop, struct evidence *ev, uint64_t delay_ms,
                          size_t max, settle_judge *judge, void *owner)
{
    struct settle *st = xcalloc(1, sizeof(*st));

    st->loop = loop;
    st->ev = ev;
    st->delay_ms = delay_ms;
    st->max = max;
    st->judge = judge;
    st->owner = owner;
    st->index = cache_new(0);       /* bounded by max, never evicted */
    st->refs = 2;
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    return st;
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

/* judged - e's standing, read delay_ms after it was queued */
static void judged(void *arg, const struct score *standing, int from_store)
{
    struct st_entry *e = arg;
    struct settle *st = e->st;
    struct settle_wait *w, *next;

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
    e->tag = tag;
    memcpy(e->net, net, len + 1);
    if (st->tail)
        st->tail->next = e;
    else
        st->head = e;
    st->tail = e;
    cache_put(st->index, net, len, (int64_t)(intptr_t)e, 0);
    st->n++;
    if (!uv_is_active((uv_handle_t *)&st->timer))
        arm(st, util_now_ms());
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
