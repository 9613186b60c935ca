#ifndef POLICYD_EVIDENCE_PRIV_H
#define POLICYD_EVIDENCE_PRIV_H

/*
 * evidence_priv - what evidence.c (the table, networks, reads and records)
 * and evidence_merge.c (the tick, the store going away and coming back,
 * merge calls and those sent again) share.  Not for any other module: the
 * rest of policyd sees only evidence.h.
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../backends/store.h"
#include "config.h"
#include "evidence.h"
#include "log.h"
#include "score.h"

#define EVIDENCE_FLUSH_BATCH 512    /* networks merged per tick at most */
#define EVIDENCE_TTL_HALVES 12      /* 2^-12: 4096 invalid fade below one */
#define EVIDENCE_BUCKETS_MIN 1024
#define EVIDENCE_KEY_MAX (CONFIG_PREFIX_MAX + 2 + EVIDENCE_NET_MAX)
#define EVIDENCE_ID_KEY_MAX (CONFIG_PREFIX_MAX + 40)  /* PREFIX "m:" 16 hex ":" 16 hex */
#define EVIDENCE_UNSURE_MAX (4 * EVIDENCE_MERGES_OUT)  /* unanswered calls kept */
#define EVIDENCE_UNSURE_MS (STORE_MERGE_ID_MS / 2)     /* sent again this long */
#define EVIDENCE_UNSURE_LOG_MS 60000                   /* one give-up line a minute */

struct ev_merge;

/* The dirty FIFOs.  A tick flushes Q_BLOCK first (a new block or trap
 * hit: the other daemons must refuse the network from their next read),
 * then Q_AGAINST (other evidence against a network: a flood of valid
 * recipients must not hold it back), then Q_READY; Q_LAZY networks move
 * to Q_READY when their time is up. */
enum ev_queue_id { Q_NONE, Q_BLOCK, Q_AGAINST, Q_READY, Q_LAZY };

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
    struct ev_queue block, against, ready, lazy;    /* dirty networks (evidence.c) */
    struct ev_merge *merges;
    size_t nmerges;                 /* in ev->merges: waiting for the store */
    struct ev_merge *unsure_head, *unsure_tail;     /* unanswered: sent again */
    size_t nunsure;
    uint64_t instance, seq;         /* merge ids: random per process, then a count */
    struct log_limiter unsure_rl;
    size_t due;                     /* networks this tick still owes */
    int flushing;                   /* inside flush() */
    int refused_now;                /* a call of this flush refused at once */
    uint64_t drops;                 /* entries dropped, ever: see entry_via */

    unsigned epoch;                 /* advances each time the store goes away */
    int away;
    int closing;
    int timer_open;
    unsigned reads_out;             /* store reads not yet answered */
    uv_timer_t timer;
};

/* evidence.c: the table */
struct ev_queue *ev_queue_of(struct evidence *ev, int id);     /* Q_BLOCK.. */
void ev_queue_push(struct ev_queue *q, struct ev_entry *e);
void ev_dirty_unlink(struct evidence *ev, struct ev_entry *e);
size_t ev_ndirty(const struct evidence *ev);
/* ev_arm - the timer started (a tick in EVIDENCE_FLUSH_MS) unless it
 * runs, the table is closing or there is no store */
void ev_arm(struct evidence *ev);
void ev_mark_dirty(struct evidence *ev, struct ev_entry *e, int urgent);
/* ev_needs_floor - e's store copy is not known good since the store last
 * went away: its next merge carries floor = its view */
int ev_needs_floor(const struct evidence *ev, const struct ev_entry *e);
size_t ev_build_key(const struct evidence *ev, const char *net, char *key);

/* evidence_merge.c: the merges */
/* ev_tick - the timer's callback */
void ev_tick(uv_timer_t *t);
void ev_check_store(struct evidence *ev);
void ev_send_merge(struct evidence *ev, struct ev_entry **e, size_t n, int detached);
void ev_strike(struct evidence *ev, const char *key, size_t klen);
/* ev_merges_close - evidence_free's last merges; sets ev->closing after
 * the last merges are out, before the calls still out are detached */
void ev_merges_close(struct evidence *ev);

#endif
