/*
 * lookup - the cache chain in front of the directory (see lookup.h)
 */

#include "lookup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "stats.h"
#include "util.h"

/* A store key: PREFIX "c:" DIGEST TAG ":" ADDRESS, the prefix whole (at
 * most CONFIG_PREFIX_MAX bytes, config.c refuses longer ones), so prefixes
 * never share keys; the digest and tag are 16 hex digits each. */
#define KEY_MAX (CONFIG_PREFIX_MAX + sizeof("c:") - 1 + 16 + 16 + 1 + ADDR_MAX)

/*
 * One directory question for one normalized address, with everyone waiting
 * for its answer.  For an address with an extension the answer is the
 * chain's: the address as given, then (not found) the address without its
 * extension, itself through L1, the store and the directory (coalesced with
 * other asks for it, and cached under its own key).
 */
struct pending {
    struct lookup *lk;
    struct address addr;            /* the form asked, and the pending key */
    struct address bare;            /* addr without its extension */
    struct lookup_wait bare_wait;   /* our wait on bare's chain */
    struct lookup_wait *waiters;
    uint64_t start_us;
};

struct lookup {
    const struct config *cfg;
    struct directory *dir;
    struct store *store;
    struct cache *l1;               /* NULL when local_size = 0 */
    struct cache *pending;          /* address -> struct pending * */
    char *key_prefix;               /* PREFIX "c:" DIGEST TAG ":" */
    size_t key_prefix_len;
};

struct lookup *lookup_new(const struct config *cfg, struct directory *dir,
                          struct store *store)
{
    struct lookup *lk = xcalloc(1, sizeof(*lk));
    struct sbuf b;

    lk->cfg = cfg;
    lk->dir = dir;
    lk->store = store;
    if (cfg->cache.local_size)
        lk->l1 = cache_new(cfg->cache.local_size);
    lk->pending = cache_new(0);
    sbuf_init(&b);
    sbuf_printf(&b, "%sc:%s%016" PRIx64 ":",
                cfg->redis.prefix ? cfg->redis.prefix : "", cfg->dir_digest,
                dir->content_tag);
    lk->key_prefix = b.data;
    lk->key_prefix_len = b.len;
    return lk;
}

void lookup_free(struct lookup *lk)
{
    if (!lk)
        return;
    cache_free(lk->l1);
    cache_free(lk->pending);
    free(lk->key_prefix);
    free(lk);
}

static size_t store_key(const struct lookup *lk, const char *addr, char *out,
                        size_t cap)
{
    size_t n = strlen(addr);
    if (lk->key_prefix_len + n + 1 > cap)
        return 0;
    memcpy(out, lk->key_prefix, lk->key_prefix_len);
    memcpy(out + lk->key_prefix_len, addr, n + 1);
    return lk->key_prefix_len + n;
}

static void l1_put(struct lookup *lk, const char *addr, enum dir_status st)
{
    if (lk->l1)
        cache_put(lk->l1, addr, strlen(addr), st,
                  util_now_ms() + lk->cfg->cache.local_ttl_ms);
}

/* resolve - cache and answer every waiter; the pending entry is gone before
 * the first callback runs, so a callback may start a new lookup of the same
 * address.  Tempfail is never cached.  A lookup_cb, for bare's answer. */
static void resolve(void *arg, enum dir_status st)
{
    struct pending *p = arg;
    struct lookup *lk = p->lk;
    struct lookup_wait *w = p->waiters, *next;

    cache_del(lk->pending, p->addr.full, strlen(p->addr.full));
    if (st != DIR_TEMPFAIL) {
        uint64_t ttl = st == DIR_FOUND ? lk->cfg->cache.positive_ttl_ms
                                       : lk->cfg->cache.negative_ttl_ms;
        char key[KEY_MAX];
        size_t klen = lk->store ? store_key(lk, p->addr.full, key, sizeof(key)) : 0;

        if (klen && ttl)
            lk->store->ops->set(lk->store, key, klen, st == DIR_FOUND ? "1" : "0",
                                1, ttl);
        l1_put(lk, p->addr.full, st);
    }
    free(p);
    for (; w; w = next) {
        next = w->next;
        w->cb(w->arg, st);
    }
}

static void bare_cached(void *arg, enum dir_status st)
{
    struct pending *p = arg;

    if (st == LOOKUP_MISS)
        lookup_directory(p->lk, &p->bare, &p->bare_wait, resolve, p);
    else
        resolve(p, st);
}

static void directory_done(void *arg, enum dir_status st)
{
    struct pending *p = arg;

    stats_hist_add(&stats.dir_latency, util_now_us() - p->start_us);
    if (st == DIR_TEMPFAIL)
        stats.dir_errors++;
    /* not found as given: Postfix asks the address without its extension */
    if (st == DIR_NOTFOUND && addr_strip(&p->addr, &p->bare))
        lookup_cached(p->lk, &p->bare, util_now_ms(), &p->bare_wait, bare_cached, p);
    else
        resolve(p, st);
}

static void store_done(void *arg, int status, const char *val, size_t len)
{
    struct lookup_wait *w = arg;
    enum dir_status st = LOOKUP_MISS;

    /* the cache's own hits and misses: the store's other reads
     * (standings, siege state) are not cache traffic */
    if (status == STORE_OK && len == 1 && (val[0] == '1' || val[0] == '0')) {
        st = val[0] == '1' ? DIR_FOUND : DIR_NOTFOUND;
        l1_put(w->lk, w->addr, st);
        stats.redis_hits++;
    } else if (status != STORE_ERR) {
        stats.redis_misses++;
    }
    w->cb(w->arg, st);
}

void lookup_cached(struct lookup *lk, const struct address *a, uint64_t now_ms,
                   struct lookup_wait *w, lookup_cb *cb, void *arg)
{
    char key[KEY_MAX];
    size_t klen;
    int64_t v;

    if (lk->l1) {
        if (cache_get(lk->l1, a->full, strlen(a->full), now_ms, &v, NULL)) {
            stats.l1_hits++;
            cb(arg, (enum dir_status)v);
            return;
        }
        stats.l1_misses++;
    }
    klen = lk->store ? store_key(lk, a->full, key, sizeof(key)) : 0;
    if (!klen) {
        cb(arg, LOOKUP_MISS);
        return;
    }
    w->lk = lk;
    w->addr = a->full;
    w->cb = cb;
    w->arg = arg;
    lk->store->ops->get(lk->store, key, klen, store_done, w);
}

void lookup_directory(struct lookup *lk, const struct address *a,
                      struct lookup_wait *w, lookup_cb *cb, void *arg)
{
    size_t alen = strlen(a->full);
    int64_t v;

    w->cb = cb;
    w->arg = arg;
    w->next = NULL;
    if (cache_get(lk->pending, a->full, alen, 0, &v, NULL)) {
        struct pending *p = (struct pending *)(intptr_t)v;
        w->next = p->waiters;
        p->waiters = w;
        stats.dir_coalesced++;
        return;
    }
    struct pending *p = xmalloc(sizeof(*p));
    p->lk = lk;
    p->addr = *a;
    p->addr.domain = p->addr.full + (a->domain - a->full);
    p->waiters = w;
    cache_put(lk->pending, a->full, alen, (int64_t)(intptr_t)p, 0);
    stats.dir_queries++;
    p->start_us = util_now_us();
    /* last: a synchronous backend may resolve (and free) p in here */
    directory_lookup(lk->dir, &p->addr, directory_done, p);
}

void lookup_flush(struct lookup *lk, const char *addr, store_count_cb *cb,
                  void *arg)
{
    char key[KEY_MAX];
    size_t klen;

    if (addr) {
        if (lk->l1)
            cache_del(lk->l1, addr, strlen(addr));
        klen = store_key(lk, addr, key, sizeof(key));
    } else {
        if (lk->l1)
            cache_clear(lk->l1);
        /* every digest: answers cached under older settings go too */
        klen = (size_t)snprintf(key, sizeof(key), "%sc:*",
                                lk->cfg->redis.prefix ? lk->cfg->redis.prefix : "");
    }
    if (lk->store && klen)
        lk->store->ops->del(lk->store, key, klen, cb, arg);
    else
        cb(arg, STORE_OK, 0, -1);
}
