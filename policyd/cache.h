#ifndef POLICYD_CACHE_H
#define POLICYD_CACHE_H

/*
 * cache - a bounded string -> integer map with expiry and LRU eviction
 *
 * The in-process answer cache (L1), the in-memory harvest counters and the
 * embedded recipient table are all this one table.  Keys are byte strings
 * (copied); values are 64-bit integers with an absolute expiry in
 * milliseconds of util_now_ms() (0 = never).  With max_entries > 0 the
 * least recently used entry is evicted when full; 0 means unbounded.
 * Lookups and inserts are O(1); expired entries are dropped when met.
 */

#include <stddef.h>
#include <stdint.h>

struct cache;

struct cache *cache_new(size_t max_entries);
void cache_free(struct cache *c);

/* cache_get - 1 and *val / *expires_ms when present and unexpired at now_ms,
 * else 0.  A hit makes the entry most recently used. */
int cache_get(struct cache *c, const char *key, size_t klen, uint64_t now_ms,
              int64_t *val, uint64_t *expires_ms);
void cache_put(struct cache *c, const char *key, size_t klen, int64_t val,
               uint64_t expires_ms);
/* cache_del - 1 if the key was there. */
int cache_del(struct cache *c, const char *key, size_t klen);
void cache_clear(struct cache *c);
size_t cache_count(const struct cache *c);

/* cache_walk - call fn for every unexpired entry (no particular order);
 * fn must not modify the cache. */
typedef void cache_walk_fn(void *arg, const char *key, size_t klen,
                           int64_t val, uint64_t expires_ms);
void cache_walk(struct cache *c, uint64_t now_ms, cache_walk_fn *fn, void *arg);

#endif
