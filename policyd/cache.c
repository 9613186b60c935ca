/*
 * cache - bounded string -> integer map with expiry and LRU eviction
 *
 * Chained hash table plus one doubly linked list in recency order.  Each
 * entry is one allocation holding its key inline.  The hash is seeded per
 * table with getrandom() so a peer who picks recipient addresses cannot aim
 * them all at one chain.
 */

#include "cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

struct entry {
    struct entry *hnext;            /* hash chain */
    struct entry *prev, *next;      /* LRU list: head = most recent */
    uint64_t hash;
    int64_t val;
    uint64_t expires_ms;
    size_t klen;
    char key[];
};

struct cache {
    struct entry **buckets;
    size_t nbuckets;                /* power of two */
    size_t count;
    size_t max;
    uint64_t seed;
    struct entry *head, *tail;
};

/* hash_key - seeded; eight bytes a step (keys are addresses and network
 * names, 10 to 60 bytes), each step a multiply and a shift, the length
 * mixed in, then the finalizer. */
static uint64_t hash_key(uint64_t seed, const char *key, size_t klen)
{
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t h = seed ^ (klen * k), w;
    size_t i = 0;

    for (; i + 8 <= klen; i += 8) {
        memcpy(&w, key + i, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    if (i < klen) {
        w = 0;
        memcpy(&w, key + i, klen - i);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    /* finalizer: every input bit reaches the low bits the mask keeps */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* The bucket array follows the entries (at most one per bucket on
 * average), not max_entries: a big cache holding few entries keeps its
 * buckets in a few cache lines instead of megabytes of scattered ones. */
#define BUCKETS_MIN 16
#define BUCKETS_MAX ((size_t)1 << 24)

struct cache *cache_new(size_t max_entries)
{
    struct cache *c = xcalloc(1, sizeof(*c));
    c->nbuckets = BUCKETS_MIN;
    c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
    c->max = max_entries;
    if (getrandom(&c->seed, sizeof(c->seed), GRND_NONBLOCK) != sizeof(c->seed))
        c->seed = (uint64_t)random() << 32 ^ (uint64_t)random();
    return c;
}

static void lru_unlink(struct cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct cache *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static struct entry **find_slot(struct cache *c, const char *key, size_t klen,
                                uint64_t h)
{
    struct entry **pp = &c->buckets[h & (c->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        struct entry *e = *pp;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return pp;
    }
    return pp;
}

static void remove_entry(struct cache *c, struct entry **pp)
{
    struct entry *e = *pp;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->count--;
    free(e);
}

static void grow(struct cache *c)
{
    size_t n = c->nbuckets * 2;
    struct entry **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct entry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

int cache_get(struct cache *c, const char *key, size_t klen, uint64_t now_ms,
              int64_t *val, uint64_t *expires_ms)
{
    uint64_t h = hash_key(c->seed, key, klen);
    struct entry **pp = find_slot(c, key, klen, h);
    struct entry *e = *pp;

    if (!e)
        return 0;
    if (e->expires_ms && e->expires_ms <= now_ms) {
        remove_entry(c, pp);
        return 0;
    }
    lru_unlink(c, e);
    lru_push(c, e);
    if (val)
        *val = e->val;
    if (expires_ms)
        *expires_ms = e->expires_ms;
    return 1;
}

void cache_put(struct cache *c, const char *key, size_t klen, int64_t val,
               uint64_t expires_ms)
{
    uint64_t h = hash_key(c->seed, key, klen);
    struct entry **pp = find_slot(c, key, klen, h);
    struct entry *e = *pp;

    if (e) {
        e->val = val;
        e->expires_ms = expires_ms;
        lru_unlink(c, e);
        lru_push(c, e);
        return;
    }
    if (c->max && c->count >= c->max) {
        struct entry *old = c->tail;
        remove_entry(c, find_slot(c, old->key, old->klen, old->hash));
    } else if (c->count >= c->nbuckets && c->nbuckets < BUCKETS_MAX) {
        grow(c);
    }
    e = xmalloc(sizeof(*e) + klen);
    e->hash = h;
    e->val = val;
    e->expires_ms = expires_ms;
    e->klen = klen;
    memcpy(e->key, key, klen);
    pp = &c->buckets[h & (c->nbuckets - 1)];
    e->hnext = *pp;
    *pp = e;
    lru_push(c, e);
    c->count++;
}

int cache_del(struct cache *c, const char *key, size_t klen)
{
    uint64_t h = hash_key(c->seed, key, klen);
    struct entry **pp = find_slot(c, key, klen, h);
    if (!*pp)
        return 0;
    remove_entry(c, pp);
    return 1;
}

void cache_clear(struct cache *c)
{
    struct entry *e = c->head, *next;
    for (; e; e = next) {
        next = e->next;
        free(e);
    }
    memset(c->buckets, 0, c->nbuckets * sizeof(*c->buckets));
    c->head = c->tail = NULL;
    c->count = 0;
}

size_t cache_count(const struct cache *c)
{
    return c->count;
}

void cache_walk(struct cache *c, uint64_t now_ms, cache_walk_fn *fn, void *arg)
{
    for (struct entry *e = c->head; e; e = e->next)
        if (!e->expires_ms || e->expires_ms > now_ms)
            fn(arg, e->key, e->klen, e->val, e->expires_ms);
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    cache_clear(c);
    free(c->buckets);
    free(c);
}
