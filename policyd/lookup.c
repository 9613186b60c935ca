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

struct pending {
    struct lookup *lk;
    struct address addr;
    struct lookup_wait *waiters;
    uint64_t start_us;
};

struct lookup {
    const struct config *cfg;
    struct directory *dir;
    struct store *store;
    struct cache *l1;               /* NULL when local_size = 0 */
    struct cache *pending;          /* address -> struct pending * */
    char key_prefix[128];           /* PREFIX "c:" DIGEST ":" */
    size_t key_prefix_len;
};

struct lookup *lookup_new(const struct config *cfg, struct directory *dir,
                          struct store *store)
{
    struct lookup *lk = xcalloc(1, sizeof(*lk));
    lk->cfg = cfg;
    lk->dir = dir;
    lk->store = store;
    if (cfg->cache.local_size)
        lk->l1 = cache_new(cfg->cache.local_size);
    lk->pending = cache_new(0);
    snprintf(lk->key_prefix, sizeof(lk->key_prefix), "%.80sc:%s%016" PRIx64 ":",
             cfg->redis.prefix ? cfg->redis.prefix : "", cfg->dir_digest,
             dir->content_tag);
    lk->key_prefix_len = strlen(lk->key_prefix);
    return lk;
}

void lookup_free(struct lookup *lk)
{
    if (!lk)
        return;
    cache_free(lk->l1);
    cache_free(lk->pending);
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

/* resolve - answer every waiter; the pending entry is gone before the first
 * callback runs, so a callback may start a new lookup of the same address. */
static void resolve(struct pending *p, enum dir_status st)
{
    struct lookup_wait *w = p->waiters, *next;
    cache_del(p->lk->pending, p->addr.full, strlen(p->addr.full));
    if (st != DIR_TEMPFAIL)
        l1_put(p->lk, p->addr.full, st);
    free(p);
    for (; w; w = next) {
        next = w->next;
        w->cb(w->arg, st);
    }
}

static void directory_done(void *arg, enum dir_status st)
{
    struct pending *p = arg;
    struct lookup *lk = p->lk;

    stats_hist_add(&stats.dir_latency, util_now_us() - p->start_us);
    if (st == DIR_TEMPFAIL) {
        stats.dir_errors++;
    } else if (lk->store) {
        char key[ADDR_MAX + 160];
        size_t klen = store_key(lk, p->addr.full, key, sizeof(key));
        uint64_t ttl = st == DIR_FOUND ? lk->cfg->cache.positive_ttl_ms
                                       : lk->cfg->cache.negative_ttl_ms;
        if (klen && ttl)
            lk->store->ops->set(lk->store, key, klen, st == DIR_FOUND ? "1" : "0",
                                1, ttl);
    }
    resolve(p, st);
}

static void ask_directory(struct pending *p)
{
    stats.dir_queries++;
    p->start_us = util_now_us();
    directory_lookup(p->lk->dir, &p->addr, directory_done, p);
}

static void store_done(void *arg, int status, const char *val, size_t len)
{
    struct lookup_wait *w = arg;
    enum dir_status st = LOOKUP_MISS;

    if (status == STORE_OK && len == 1 && (val[0] == '1' || val[0] == '0')) {
        st = val[0] == '1' ? DIR_FOUND : DIR_NOTFOUND;
        l1_put(w->lk, w->addr, st);
    }
    w->cb(w->arg, st);
}

void lookup_cached(struct lookup *lk, const struct address *a,
                   struct lookup_wait *w, lookup_cb *cb, void *arg)
{
    char key[ADDR_MAX + 160];
    size_t klen;
    int64_t v;

    if (lk->l1) {
        if (cache_get(lk->l1, a->full, strlen(a->full), util_now_ms(), &v, NULL)) {
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
    ask_directory(p);
}

void lookup_flush(struct lookup *lk, const char *addr, store_count_cb *cb,
                  void *arg)
{
    char key[ADDR_MAX + 160];
    size_t klen;

    if (addr) {
        if (lk->l1)
            cache_del(lk->l1, addr, strlen(addr));
        klen = store_key(lk, addr, key, sizeof(key));
    } else {
        if (lk->l1)
            cache_clear(lk->l1);
        /* every digest: answers cached under older settings go too */
        klen = (size_t)snprintf(key, sizeof(key), "%.80sc:*",
                                lk->cfg->redis.prefix ? lk->cfg->redis.prefix : "");
    }
    if (lk->store && klen)
        lk->store->ops->del(lk->store, key, klen, cb, arg);
    else
        cb(arg, STORE_OK, 0, -1);
}
