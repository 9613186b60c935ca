#ifndef BACKENDS_STORE_H
#define BACKENDS_STORE_H

/*
 * store - shared state: cached answers and per-client counters
 *
 * Two implementations: store_mem (process memory, the embedded default)
 * and store_redis (hiredis async; falls back to a store_mem of its own for
 * counters while Redis is unreachable, so a Redis outage never fails a
 * request).  store_new() picks Redis when [redis] address or sentinels is
 * set.  Keys and values are byte strings, passed binary-safe.
 *
 * Every operation answers through its callback exactly once, possibly
 * before the call returns (store_mem does).  status is STORE_OK, STORE_MISS
 * (no such key) or STORE_ERR (the store could not answer; cached answers
 * are then simply a miss); merge alone may also answer STORE_UNSURE.
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../policyd/config.h"
#include "../policyd/score.h"

/* STORE_UNSURE: a write went out and no answer came (time-out, connection
 * lost): it may have been applied or not. */
enum { STORE_OK = 0, STORE_MISS = 1, STORE_ERR = -1, STORE_UNSURE = -2 };

struct store;

typedef void store_get_cb(void *arg, int status, const char *val, size_t len);

#define STORE_MERGE_MAX 32      /* standings one merge call folds at most */
#define STORE_MERGE_ID_MS 300000    /* a merge call's id is remembered this long */

/* merge: what to fold into one standing (see policyd/score.h) */
struct store_merge_item {
    const char *key;
    size_t klen;
    struct score delta;         /* added; its block_until raises the stored one */
    const struct score *floor;  /* NULL, or: raise each field to at least this */
};
/* merge: up to STORE_MERGE_MAX standings, with what they share */
struct store_merge {
    const struct store_merge_item *items;
    size_t n;                   /* 1 .. STORE_MERGE_MAX */
    uint64_t now_ms;            /* wall clock of the caller */
    uint64_t half_life_ms;
    uint64_t ttl_ms;            /* life of the keys (longer while blocked) */
    const char *id_key;         /* unique fleet-wide (PREFIX "m:" ID): the */
    size_t id_klen;             /* call sent again is applied once at most;
                                 * 0: no id (a call never sent again) */
};

/* One entry of a list answer (roster_get, ranked, merge); not NUL-terminated. */
struct store_item {
    const char *name;
    size_t nlen;
    const char *val;
    size_t vlen;
    long long age_ms;           /* roster: since the member last wrote; ranked: -1 */
};
typedef void store_list_cb(void *arg, int status, const struct store_item *items,
                           size_t n);

#define STORE_ROSTER_MAX 256    /* members a roster keeps (the newest) */
#define STORE_RANK_MAX 1000     /* standings the offenders index keeps */

/* count: the counter's value (0 when absent); ttl_ms: remaining life, or -1. */
typedef void store_count_cb(void *arg, int status, long long count,
                            long long ttl_ms);

struct store_ops {
    const char *name;
    void (*get)(struct store *s, const char *key, size_t klen,
                store_get_cb *cb, void *arg);
    /* set: fire and forget; a failure is counted and logged, not reported */
    void (*set)(struct store *s, const char *key, size_t klen,
                const char *val, size_t vlen, uint64_t ttl_ms);
    /* incr: add by (>= 1) atomically; a new key lives ttl_ms; when the
     * value reaches `at` (if at > 0: the old one was below it, the new one
     * is not) its life becomes at_ttl_ms.  One round trip. */
    void (*incr)(struct store *s, const char *key, size_t klen, long long by,
                 uint64_t ttl_ms, long long at, uint64_t at_ttl_ms,
                 store_count_cb *cb, void *arg);
    /* peek: a counter's value and, with with_ttl, its remaining life
     * (else ttl_ms is -1), without changing it.  Without the life it is
     * the cheapest read there is (a plain GET): the request path asks
     * this way, the operator's `client` command with the life. */
    void (*peek)(struct store *s, const char *key, size_t klen, int with_ttl,
                 store_count_cb *cb, void *arg);
    /* del: remove keys; count = how many existed.  A key ending in '*'
     * removes every key with that prefix (SCAN, never KEYS). */
    void (*del)(struct store *s, const char *key, size_t klen,
                store_count_cb *cb, void *arg);
    /* merge: for each item, atomically fade the standing stored at its
     * key (wire form, score_encode) to now_ms, add its delta, raise it to
     * its floor, keep it ttl_ms or until its block ends, whichever is
     * later; all items in one round trip, never batched behind a read.
     * cb gets STORE_OK and one store_item per item, in order: val is the
     * new standing's wire form, or NULL when that key was refused
     * (WRONGTYPE) and left as it was; or STORE_ERR and no items when the
     * call as a whole was refused (OOM, READONLY, down: nothing applied);
     * or STORE_UNSURE and no items when it went out and got no answer
     * (time-out, connection lost): it may have been applied.  A call whose
     * id_key was written within STORE_MERGE_ID_MS applies nothing and answers
     * each key's standing as it is (an absent key: an empty standing).
     * store_mem answers STORE_ERR: without Redis the standing lives in
     * evidence.c's own table. */
    void (*merge)(struct store *s, const struct store_merge *m,
                  store_list_cb *cb, void *arg);
    /* roster_put: fire and forget.  In the roster at key (Redis: a hash
     * KEY and a sorted set KEY ":t" of the times, on Redis's own clock),
     * set member's record and time; members silent for keep_ms are dropped,
     * so are the oldest beyond STORE_ROSTER_MAX; the roster lives keep_ms
     * after the last write.  One round trip. */
    void (*roster_put)(struct store *s, const char *key, size_t klen,
                       const char *member, size_t mlen, const char *val,
                       size_t vlen, uint64_t keep_ms);
    /* roster_get: every member (newest first, at most STORE_ROSTER_MAX)
     * with its age.  One round trip.  store_mem answers STORE_ERR. */
    void (*roster_get)(struct store *s, const char *key, size_t klen,
                       store_list_cb *cb, void *arg);
    /* ranked: the n (<= STORE_RANK_MAX) highest standings of the offenders
     * index that merge keeps (see store_redis_merge.c), each as its key and
     * wire form; index entries whose standing expired are dropped.  One
     * round trip.  store_mem answers STORE_ERR. */
    void (*ranked)(struct store *s, unsigned n, store_list_cb *cb, void *arg);
    /* shared: 1 while answers come from a store other processes see */
    int (*shared)(struct store *s);
    void (*free)(struct store *s);
};

struct store {
    const struct store_ops *ops;
};

struct store *store_new(uv_loop_t *loop, const struct config *cfg,
                        char *err, size_t errlen);

static inline void store_free(struct store *s)
{
    if (s)
        s->ops->free(s);
}

#endif
