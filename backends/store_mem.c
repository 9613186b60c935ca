/*
 * store_mem - counters in process memory (see store_mem.h)
 *
 * Every operation answers synchronously, before it returns.
 */

#include "store_mem.h"

#include <stdlib.h>
#include <string.h>

#include "../policyd/cache.h"
#include "../policyd/util.h"

struct store_mem {
    struct store base;
    struct cache *counters;
};

static struct cache *counters_of(struct store *s)
{
    return ((struct store_mem *)s)->counters;
}

static long long ttl_left(uint64_t expires_ms, uint64_t now)
{
    return expires_ms ? (long long)(expires_ms - now) : -1;
}

static void mem_get(struct store *s, const char *key, size_t klen,
                    store_get_cb *cb, void *arg)
{
    (void)s, (void)key, (void)klen;
    cb(arg, STORE_MISS, NULL, 0);
}

static void mem_set(struct store *s, const char *key, size_t klen,
                    const char *val, size_t vlen, uint64_t ttl_ms)
{
    (void)s, (void)key, (void)klen, (void)val, (void)vlen, (void)ttl_ms;
}

static void mem_incr(struct store *s, const char *key, size_t klen, long long by,
                     uint64_t ttl_ms, long long at, uint64_t at_ttl_ms,
                     store_count_cb *cb, void *arg)
{
    struct cache *c = counters_of(s);
    uint64_t now = util_now_ms(), expires = 0;
    int64_t n = 0;

    if (!cache_get(c, key, klen, now, &n, &expires)) {
        n = 0;
        expires = ttl_ms ? now + ttl_ms : 0;
    }
    n += by;
    if (at > 0 && n - by < at && n >= at)
        expires = at_ttl_ms ? now + at_ttl_ms : 0;
    cache_put(c, key, klen, n, expires);
    cb(arg, STORE_OK, n, ttl_left(expires, now));
}

static void mem_peek(struct store *s, const char *key, size_t klen, int with_ttl,
                     store_count_cb *cb, void *arg)
{
    uint64_t now = util_now_ms(), expires = 0;
    int64_t n = 0;

    if (cache_get(counters_of(s), key, klen, now, &n, &expires))
        cb(arg, STORE_OK, n, with_ttl ? ttl_left(expires, now) : -1);
    else
        cb(arg, STORE_MISS, 0, -1);
}

struct prefix_match {
    const char *prefix;
    size_t plen;
    struct sbuf keys;       /* matching keys, each NUL-terminated */
    size_t n;
};

static void collect(void *arg, const char *key, size_t klen, int64_t val,
                    uint64_t expires_ms)
{
    struct prefix_match *m = arg;
    (void)val, (void)expires_ms;
    if (klen >= m->plen && memcmp(key, m->prefix, m->plen) == 0) {
        sbuf_add(&m->keys, key, klen);
        sbuf_add(&m->keys, "", 1);
        m->n++;
    }
}

static void mem_del(struct store *s, const char *key, size_t klen,
                    store_count_cb *cb, void *arg)
{
    struct cache *c = counters_of(s);
    long long removed = 0;

    if (klen && key[klen - 1] == '*') {
        /* cache_walk forbids changes while walking: collect, then delete */
        struct prefix_match m = { key, klen - 1, { NULL, 0, 0 }, 0 };
        cache_walk(c, util_now_ms(), collect, &m);
        for (size_t off = 0, i = 0; i < m.n; i++) {
            size_t len = strlen(m.keys.data + off);
            removed += cache_del(c, m.keys.data + off, len);
            off += len + 1;
        }
        sbuf_free(&m.keys);
    } else {
        removed = cache_del(c, key, klen);
    }
    cb(arg, removed ? STORE_OK : STORE_MISS, removed, -1);
}

static void mem_merge(struct store *s, const struct store_merge *m,
                      store_list_cb *cb, void *arg)
{
    (void)s, (void)m;
    cb(arg, STORE_ERR, NULL, 0);
}

static void mem_roster_put(struct store *s, const char *key, size_t klen,
                           const char *member, size_t mlen, const char *val,
                           size_t vlen, uint64_t keep_ms)
{
    (void)s, (void)key, (void)klen, (void)member, (void)mlen, (void)val,
        (void)vlen, (void)keep_ms;
}

/* Without Redis there is no fleet and no shared index: the caller knows
 * only itself. */
static void mem_roster_get(struct store *s, const char *key, size_t klen,
                           store_list_cb *cb, void *arg)
{
    (void)s, (void)key, (void)klen;
    cb(arg, STORE_ERR, NULL, 0);
}

static void mem_ranked(struct store *s, unsigned n, store_list_cb *cb, void *arg)
{
    (void)s, (void)n;
    cb(arg, STORE_ERR, NULL, 0);
}

static int mem_shared(struct store *s)
{
    (void)s;
    return 0;
}

static void mem_free(struct store *s)
{
    cache_free(counters_of(s));
    free(s);
}

static const struct store_ops mem_ops = {
    "memory", mem_get, mem_set, mem_incr, mem_peek, mem_del, mem_merge,
    mem_roster_put, mem_roster_get, mem_ranked, mem_shared, mem_free,
};

struct store *store_mem_new(size_t max_entries)
{
    struct store_mem *m = xcalloc(1, sizeof(*m));
    m->base.ops = &mem_ops;
    m->counters = cache_new(max_entries);
    return &m->base;
}
