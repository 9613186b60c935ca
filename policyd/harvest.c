/*
 * harvest - the directory-harvest defence (see harvest.h)
 */

#include "harvest.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "cache.h"
#include "log.h"
#include "util.h"

#define HARVEST_SEEN_MAX 4096   /* networks in the local view */
#define HARVEST_TOP 10          /* offenders shown in stats */

struct harvest {
    const struct config *cfg;
    struct store *store;
    struct cidr *whitelist;
    size_t nwhitelist;
    struct cache *seen;         /* network -> last known count */
    struct stats_net top[HARVEST_TOP];
    char top_names[HARVEST_TOP][64];
};

struct harvest *harvest_new(const struct config *cfg, struct store *store)
{
    struct harvest *h = xcalloc(1, sizeof(*h));
    h->cfg = cfg;
    h->store = store;
    h->nwhitelist = cfg->harvest.whitelist.n;
    h->whitelist = xcalloc(h->nwhitelist, sizeof(*h->whitelist));
    for (size_t i = 0; i < h->nwhitelist; i++)
        if (addr_cidr_parse(cfg->harvest.whitelist.v[i], &h->whitelist[i]) != 0)
            log_warn("[harvest] whitelist: ignoring '%s'", cfg->harvest.whitelist.v[i]);
    h->seen = cache_new(HARVEST_SEEN_MAX);
    return h;
}

void harvest_free(struct harvest *h)
{
    if (!h)
        return;
    cache_free(h->seen);
    free(h->whitelist);
    free(h);
}

uint64_t harvest_delay_ms(const struct config *cfg, long long count)
{
    unsigned after = cfg->harvest.tarpit_after;
    uint64_t d = cfg->harvest.tarpit_delay_ms, max = cfg->harvest.tarpit_max_ms;

    if (!cfg->harvest.enabled || after == 0 || count < (long long)after || d == 0)
        return 0;
    for (long long n = after; n < count && d < max; n++)
        d *= 2;
    return d < max ? d : max;
}

int harvest_is_blocked(const struct config *cfg, long long count)
{
    return cfg->harvest.enabled && cfg->harvest.block_after &&
           count >= (long long)cfg->harvest.block_after;
}

/* net_of - the network key of a client IP; -1 if it does not parse. */
static int net_of(const struct harvest *h, const char *ip, char *out, size_t outlen,
                  int *family, uint8_t addr[16])
{
    if (!ip || addr_parse_ip(ip, family, addr) != 0)
        return -1;
    return addr_client_net(*family, addr, h->cfg->harvest.ipv4_prefix,
                           h->cfg->harvest.ipv6_prefix, out, outlen);
}

void harvest_classify(struct harvest *h, const struct proto_request *req,
                      struct harvest_client *out)
{
    int family;
    uint8_t addr[16];

    memset(out, 0, sizeof(*out));
    out->h = h;
    out->exempt = 1;
    if (!h->cfg->harvest.enabled)
        return;
    if (h->cfg->harvest.exempt_sasl && req->sasl_username && *req->sasl_username)
        return;
    if (net_of(h, req->client_address, out->net, sizeof(out->net), &family, addr) != 0) {
        out->net[0] = '\0';
        return;
    }
    for (size_t i = 0; i < h->nwhitelist; i++)
        if (addr_cidr_match(&h->whitelist[i], family, addr)) {
            out->net[0] = '\0';
            return;
        }
    out->exempt = 0;
}

/* counter_key - PREFIX "h:" NETWORK; 0 if it does not fit */
static size_t counter_key(const struct harvest *h, const char *net, char *key,
                          size_t cap)
{
    const char *prefix = h->cfg->redis.prefix ? h->cfg->redis.prefix : "";
    size_t plen = strlen(prefix), nlen = strlen(net);

    if (plen + 2 + nlen + 1 > cap)
        return 0;
    memcpy(key, prefix, plen);
    memcpy(key + plen, "h:", 2);
    memcpy(key + plen + 2, net, nlen + 1);
    return plen + 2 + nlen;
}

static void note(struct harvest *h, const char *net, long long count, long long ttl_ms)
{
    if (count > 0)
        cache_put(h->seen, net, strlen(net), count,
                  util_now_ms() + (ttl_ms > 0 ? (uint64_t)ttl_ms : 1000));
    else
        cache_del(h->seen, net, strlen(net));
}

static void peeked(void *arg, int status, long long count, long long ttl_ms)
{
    struct harvest_client *c = arg;
    if (status == STORE_ERR)
        count = 0, ttl_ms = -1;     /* no count known: treat as innocent */
    c->cb(c->arg, count, ttl_ms);
}

/* Only a count that grew updates the local view: a peek per request would
 * cost a table update on the hot path to refresh what the view has. */
static void counted(void *arg, int status, long long count, long long ttl_ms)
{
    struct harvest_client *c = arg;
    if (status != STORE_ERR)
        note(c->h, c->net, count, ttl_ms);
    peeked(arg, status, count, ttl_ms);
}

static void start(struct harvest_client *c, harvest_cb *cb, void *arg, int incr)
{
    struct harvest *h = c->h;
    const struct config *cfg = h->cfg;
    char key[128];
    size_t klen = counter_key(h, c->net, key, sizeof(key));

    c->cb = cb;
    c->arg = arg;
    if (c->exempt || !klen) {
        cb(arg, 0, -1);
        return;
    }
    if (incr)
        h->store->ops->incr(h->store, key, klen, cfg->harvest.window_ms,
                            cfg->harvest.block_after, cfg->harvest.block_time_ms,
                            counted, c);
    else
        h->store->ops->peek(h->store, key, klen, 0, peeked, c);
}

void harvest_state(struct harvest_client *c, harvest_cb *cb, void *arg)
{
    start(c, cb, arg, 0);
}

void harvest_count(struct harvest_client *c, harvest_cb *cb, void *arg)
{
    start(c, cb, arg, 1);
}

/* Operator requests: one allocated context each (not the request path). */
struct op {
    struct harvest *h;
    char net[64];
    void (*cb)(void *arg, int ok, const char *text);
    void *arg;
};

static struct op *op_new(struct harvest *h, const char *ip,
                         void (*cb)(void *, int, const char *), void *arg)
{
    int family;
    uint8_t addr[16];
    struct op *op = xcalloc(1, sizeof(*op));

    if (net_of(h, ip, op->net, sizeof(op->net), &family, addr) != 0) {
        free(op);
        cb(arg, 0, "error: not an IP address");
        return NULL;
    }
    op->h = h;
    op->cb = cb;
    op->arg = arg;
    return op;
}

static void info_done(void *arg, int status, long long count, long long ttl_ms)
{
    struct op *op = arg;
    const struct config *cfg = op->h->cfg;
    struct sbuf b;

    if (status == STORE_ERR) {
        op->cb(op->arg, 0, "error: the counter store did not answer");
        free(op);
        return;
    }
    note(op->h, op->net, count, ttl_ms);
    sbuf_init(&b);
    sbuf_printf(&b, "network: %s\ncount: %lld\n", op->net, count);
    if (harvest_is_blocked(cfg, count))
        sbuf_printf(&b, "stage: blocked\nblock_left_s: %.1f\n", ttl_ms / 1000.0);
    else if (harvest_delay_ms(cfg, count))
        sbuf_printf(&b, "stage: tarpit\ndelay_s: %.3f\nwindow_left_s: %.1f\n",
                    harvest_delay_ms(cfg, count) / 1000.0, ttl_ms / 1000.0);
    else
        sbuf_printf(&b, "stage: %s\n", count ? "counting" : "clean");
    sbuf_printf(&b, "scope: %s", op->h->store->ops->shared(op->h->store) ?
                "fleet (redis)" : "this process");
    op->cb(op->arg, 1, b.data);
    sbuf_free(&b);
    free(op);
}

static void unblock_done(void *arg, int status, long long count, long long ttl_ms)
{
    struct op *op = arg;
    char text[160];
    (void)ttl_ms;

    if (status == STORE_ERR) {
        op->cb(op->arg, 0, "error: the counter store did not answer");
    } else {
        cache_del(op->h->seen, op->net, strlen(op->net));
        snprintf(text, sizeof(text), "%s: %s", op->net,
                 count ? "counter and block removed" : "nothing to remove");
        log_info("unblock %s by operator", op->net);
        op->cb(op->arg, 1, text);
    }
    free(op);
}

/* op_start - the store round trip of an operator request about one IP */
static void op_start(struct harvest *h, const char *ip, int unblock,
                     void (*cb)(void *arg, int ok, const char *text), void *arg)
{
    struct op *op = op_new(h, ip, cb, arg);
    char key[128];
    size_t klen;

    if (!op)
        return;
    klen = counter_key(h, op->net, key, sizeof(key));
    if (unblock)
        h->store->ops->del(h->store, key, klen, unblock_done, op);
    else
        h->store->ops->peek(h->store, key, klen, 1, info_done, op);
}

void harvest_client_info(struct harvest *h, const char *ip,
                         void (*cb)(void *arg, int ok, const char *text), void *arg)
{
    op_start(h, ip, 0, cb, arg);
}

void harvest_unblock(struct harvest *h, const char *ip,
                     void (*cb)(void *arg, int ok, const char *text), void *arg)
{
    op_start(h, ip, 1, cb, arg);
}

struct top_walk {
    struct harvest *h;
    unsigned n;
    uint64_t now, blocked;
    uint64_t tracked;
};

static void top_add(void *arg, const char *key, size_t klen, int64_t val,
                    uint64_t expires_ms)
{
    struct top_walk *w = arg;
    struct harvest *h = w->h;
    long long block_ms = 0;
    unsigned i;

    w->tracked++;
    if (harvest_is_blocked(h->cfg, val)) {
        w->blocked++;
        block_ms = (long long)(expires_ms - w->now);
    }
    /* insertion into a sorted array of at most HARVEST_TOP */
    for (i = w->n; i > 0 && h->top[i - 1].count < val; i--)
        if (i < HARVEST_TOP) {
            h->top[i] = h->top[i - 1];
            memcpy(h->top_names[i], h->top_names[i - 1], 64);
        }
    if (i >= HARVEST_TOP)
        return;
    if (klen > 63)
        klen = 63;
    memcpy(h->top_names[i], key, klen);
    h->top_names[i][klen] = '\0';
    h->top[i].count = val;
    h->top[i].block_ms = block_ms;
    if (w->n < HARVEST_TOP)
        w->n++;
}

void harvest_stats(struct harvest *h, struct stats_extra *x)
{
    struct top_walk w = { h, 0, util_now_ms(), 0, 0 };
    cache_walk(h->seen, w.now, top_add, &w);
    for (unsigned i = 0; i < w.n; i++)
        h->top[i].net = h->top_names[i];
    x->top = h->top;
    x->ntop = w.n;
    x->blocked_now = w.blocked;
    x->tracked_now = w.tracked;
}
