/*
 * store_redis - the shared store in Redis (hiredis async on the libuv loop)
 *
 * SYNOPSIS
 *	#include "store_redis.h"
 *
 *	struct store *store_redis_new(loop, cfg, fallback, err, errlen)
 *
 * DESCRIPTION
 *	Implements backends/store.h over one hiredis async connection driven
 *	by hiredis's libuv adapter through redis_uv (which writes before the
 *	loop sleeps, not after a poll).  Every command goes out through
 *	redisAsyncCommandArgv, so keys and values are binary-safe.
 *
 *	get	GET key				-> STORE_OK / STORE_MISS
 *	set	SET key val PX ttl		fire and forget
 *	incr	EVALSHA (INCRBY + PEXPIRE + PTTL)	one round trip
 *	peek	GET key, or with the life EVALSHA (GET + PTTL): one round trip
 *	del	UNLINK key, or for "prefix*": SCAN MATCH (glob characters of
 *		the prefix escaped) + UNLINK in batches, until the cursor is 0
 *	merge	EVALSHA (per key GET + fade + add + floor + SET PX, and the
 *		offenders index), up to STORE_MERGE_MAX keys: one round trip,
 *		never batched behind a read (store_redis_merge.c)
 *	roster_put, roster_get, ranked
 *		EVAL of small scripts: one round trip each
 *		(store_redis_fleet.c)
 *
 *	The connection itself (connecting, the handshake, Sentinel,
 *	reconnecting with backoff) is redis_conn.c's; the commands, their
 *	deadlines, the read batching (a turn's gets and plain peeks in one
 *	MGET) and the replies are store_redis_cmd.c's (see LIFETIME OF A
 *	COMMAND there); this file owns the store ops, the idle PING
 *	(health_cb) and the construction.
 *
 *	While the store is not UP, or when a command fails: get answers
 *	STORE_ERR (the caller asks the directory), merge STORE_ERR (the
 *	caller keeps its deltas), or STORE_UNSURE when it went out and its
 *	answer never came (time-out, lost connection), set is dropped, incr and peek are answered
 *	by the fallback store_mem, del deletes there.  The
 *	change of state is logged once each way, with the reason.
 *
 * CLOSE
 *	store_free answers every caller at once (STORE_ERR).  A connection
 *	that is up with writes out (sent or still in hiredis's buffer: the
 *	last merges of evidence_free) lingers: it stays on the loop until
 *	each of those writes has its reply or STORE_LINGER_MS passes, then
 *	closes; the rest is freed when its last handle closes, so the loop
 *	runs that long after.  Closing at once would lose them: what is not
 *	written dies in the buffer, and Redis drops what it has read but
 *	cannot answer on a closed socket.  A store that is not up closes at
 *	once.  Writes left without a reply are logged (one line).
 *
 * LIMITS
 *	SR_MAX_INFLIGHT commands waiting for Redis; beyond that requests
 *	degrade as if Redis were down.  Keys longer than SR_MAX_KEY likewise.
 *	Sentinel addresses must be IP literals; the master address may be a
 *	name, resolved with uv_getaddrinfo (off the loop thread).
 */

#include "store_redis.h"
#include "store_redis_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "../policyd/log.h"
#include "../policyd/stats.h"
#include "../policyd/util.h"

/* INCRBY ARGV[4] with its expiry: a new key lives ARGV[1] ms; reaching
 * ARGV[2] (when > 0) sets the life to ARGV[3] ms; a key that somehow lost
 * its expiry gets one again, so no counter lives forever. */
const char sr_incr_lua[] =
    "local by = tonumber(ARGV[4])\n"
    "local n = redis.call('INCRBY', KEYS[1], by)\n"
    "local ttl = tonumber(ARGV[1])\n"
    "local at = tonumber(ARGV[2])\n"
    "if at > 0 and n - by < at and n >= at then ttl = tonumber(ARGV[3])\n"
    "elseif n ~= by and redis.call('PTTL', KEYS[1]) >= 0 then ttl = 0 end\n"
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "return {n, redis.call('PTTL', KEYS[1])}\n";

/* A counter's value and life; {0, -2} when absent. */
const char sr_peek_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return {0, -2} end\n"
    "return {tonumber(v) or 0, redis.call('PTTL', KEYS[1])}\n";

/* ---- timers ------------------------------------------------------------ */

/* health_cb - PING an idle connection, so a silently dead one (the libuv
 * adapter drops poll errors) is noticed without waiting for traffic. */
static void health_cb(uv_timer_t *t)
{
    struct store_redis *sr = t->data;
    const char *argv[1] = { "PING" };
    size_t lens[1] = { 4 };

    if (sr->state != SR_UP || sr->tmo_head)
        return;
    struct rcmd *c = sr_cmd_new(sr, K_PING, NULL, 0);
    if (sr_cmd_send(sr, c, 1, argv, lens) < 0)
        sr_cmd_release(c);
}

/* ---- store ops --------------------------------------------------------- */

static struct store_redis *sr_of(struct store *s)
{
    return (struct store_redis *)s;
}

int sr_is_write(int kind)
{
    return kind == K_SET || kind == K_INCR || kind == K_DEL || kind == K_MERGE
           || kind == K_ROSTER;
}

int sr_usable(const struct store_redis *sr, size_t klen)
{
    return sr->state == SR_UP && !sr->closing && sr->ac
           && sr->inflight < SR_MAX_INFLIGHT && klen <= SR_MAX_KEY;
}

static void sr_get(struct store *s, const char *key, size_t klen,
                   store_get_cb *cb, void *arg)
{
    struct store_redis *sr = sr_of(s);

    if (!sr_usable(sr, klen)) {
        cb(arg, STORE_ERR, NULL, 0);
        return;
    }
    struct rcmd *c = sr_cmd_new(sr, K_GET, key, klen);
    c->get_cb = cb;
    c->arg = arg;
    sr_batch_add(sr, c);
}

static void sr_set(struct store *s, const char *key, size_t klen,
                   const char *val, size_t vlen, uint64_t ttl_ms)
{
    struct store_redis *sr = sr_of(s);
    char ttl[UTIL_FMT_U_MAX];
    const char *argv[5] = { "SET", key, val, "PX", ttl };
    size_t lens[5] = { 3, klen, vlen, 2, 0 };

    if (!sr_usable(sr, klen))
        return;
    lens[4] = util_fmt_u(ttl, ttl_ms);
    struct rcmd *c = sr_cmd_new(sr, K_SET, NULL, 0);
    if (sr_cmd_send(sr, c, ttl_ms ? 5 : 3, argv, lens) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}

static void sr_incr(struct store *s, const char *key, size_t klen, long long by,
                    uint64_t ttl_ms, long long at, uint64_t at_ttl_ms,
                    store_count_cb *cb, void *arg)
{
    struct store_redis *sr = sr_of(s);

    if (!sr_usable(sr, klen)) {
        sr->fallback->ops->incr(sr->fallback, key, klen, by, ttl_ms, at, at_ttl_ms,
                                cb, arg);
        return;
    }
    struct rcmd *c = sr_cmd_new(sr, K_INCR, key, klen);
    c->count_cb = cb;
    c->arg = arg;
    c->ttl_ms = ttl_ms;
    c->at = at;
    c->by = by;
    c->at_ttl_ms = at_ttl_ms;
    if (sr_script_send(sr, c, 0) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}

static void sr_peek(struct store *s, const char *key, size_t klen, int with_ttl,
                    store_count_cb *cb, void *arg)
{
    struct store_redis *sr = sr_of(s);

    if (!sr_usable(sr, klen)) {
        sr->fallback->ops->peek(sr->fallback, key, klen, with_ttl, cb, arg);
        return;
    }
    struct rcmd *c = sr_cmd_new(sr, K_PEEK, key, klen);
    c->count_cb = cb;
    c->arg = arg;
    c->with_ttl = with_ttl;
    if (!with_ttl) {
        sr_batch_add(sr, c);
    } else if (sr_script_send(sr, c, 0) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}

static void count_noop(void *arg, int status, long long count, long long ttl_ms)
{
    (void)arg, (void)status, (void)count, (void)ttl_ms;
}

/* glob_escape - the SCAN pattern matching keys that start with p[0..n). */
static char *glob_escape(const char *p, size_t n, size_t *outlen)
{
    char *out = xmalloc(2 * n + 2), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\^-", p[i]) && p[i] != '\0')
            *o++ = '\\';
        *o++ = p[i];
    }
    *o++ = '*';
    *o = '\0';
    *outlen = (size_t)(o - out);
    return out;
}

static void sr_del(struct store *s, const char *key, size_t klen,
                   store_count_cb *cb, void *arg)
{
    struct store_redis *sr = sr_of(s);
    int rc;

    if (!sr_usable(sr, klen)) {
        sr->fallback->ops->del(sr->fallback, key, klen, cb, arg);
        return;
    }
    /* counters made during an outage go too; the answer is Redis's count */
    sr->fallback->ops->del(sr->fallback, key, klen, count_noop, NULL);
    struct rcmd *c = sr_cmd_new(sr, K_DEL, key, klen);
    c->count_cb = cb;
    c->arg = arg;
    if (klen && key[klen - 1] == '*') {
        c->pattern = glob_escape(key, klen - 1, &c->plen);
        strcpy(c->cursor, "0");
        rc = sr_scan_send(sr, c);
    } else {
        const char *argv[2] = { "UNLINK", c->key };
        size_t lens[2] = { 6, klen };
        c->step = DEL_ONE;
        rc = sr_cmd_send(sr, c, 2, argv, lens);
    }
    if (rc < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
}

static int sr_shared(struct store *s)
{
    return sr_of(s)->state == SR_UP;
}

static void addr_free(struct sr_addr *a)
{
    free(a->host);
    free(a->path);
}

void sr_handle_closed(uv_handle_t *h)
{
    struct store_redis *sr = h->data;
    if (--sr->handles_open == 0)
        free(sr);
}

static void sr_free(struct store *s)
{
    struct store_redis *sr = sr_of(s);
    struct rcmd *list = sr->all, *c;
    int was_up = sr->state == SR_UP;
    size_t nwrites = 0;

    sr->closing = 1;
    sr->state = SR_DOWN;
    stats.redis_up = 0;
    stats.redis_stores--;
    /* detach everything first: a callback below cannot reach a half-freed
     * list, and hiredis's NULL replies then only free the commands */
    sr->all = NULL;
    sr->tmo_head = sr->tmo_tail = NULL;
    sr->inflight = 0;
    for (c = list; c; c = c->next) {
        c->sr = NULL;
        c->in_tmo = 0;
        nwrites += c->hi_pending && sr_is_write(c->kind);
    }
    /* STORE_ERR to whoever still waits.  Each command is freed by its
     * hiredis callback (the NULL replies of redisAsyncFree below, or the
     * one running now if free is called from inside a callback). */
    for (c = list; c; c = c->next)
        sr_cmd_fail(c);
    /* reads never sent: no hiredis callback will free them */
    for (size_t i = 0; i < sr->nbatch; i++) {
        sr->batch[i]->hi_pending = 0;
        sr_cmd_release(sr->batch[i]);
    }
    sr->nbatch = 0;
    if (sr->resolving) {
        sr->resolving->sr = NULL;
        uv_cancel((uv_req_t *)&sr->resolving->req);
        sr->resolving = NULL;
    }
    if (sr->ac) {
        redisAsyncContext *ac = sr->ac;
        sr->ac = NULL;
        /* writes queued just before (evidence_free's last merges) would die
         * in the output buffer, or with the replies Redis cannot send to a
         * closed socket: a connection that is up lingers for them */
        if (was_up && nwrites) {
            rconn_linger(sr, ac, nwrites);
        } else {
            ac->data = NULL;
            redisAsyncFree(ac);
        }
    }
    rconn_sentinel_drop(sr);
    store_free(sr->fallback);
    sr->fallback = NULL;
    addr_free(&sr->master);
    for (size_t i = 0; i < sr->nsentinels; i++)
        addr_free(&sr->sentinels[i]);
    free(sr->sentinels);
    free(sr->master_name);
    free(sr->password);
    uv_close((uv_handle_t *)&sr->tmo_timer, sr_handle_closed);
    if (!sr->lac)                       /* else closed when the linger ends */
        uv_close((uv_handle_t *)&sr->conn_timer, sr_handle_closed);
    uv_close((uv_handle_t *)&sr->retry_timer, sr_handle_closed);
    uv_close((uv_handle_t *)&sr->health_timer, sr_handle_closed);
    uv_close((uv_handle_t *)&sr->batch_check, sr_handle_closed);
}

static const struct store_ops redis_ops = {
    "redis", sr_get, sr_set, sr_incr, sr_peek, sr_del, sr_merge, sr_roster_put,
    sr_roster_get, sr_ranked, sr_shared, sr_free,
};

/* ---- construction ------------------------------------------------------ */

/* parse_addr - "host:port", "[v6]:port", "unix:/path"; port defaults. */
static int parse_addr(const char *s, int def_port, struct sr_addr *out,
                      char *err, size_t errlen)
{
    const char *colon;
    unsigned long long port = (unsigned long long)def_port;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/' || strlen(s + 5) >= 108) {
            snprintf(err, errlen, "%.200s: want unix:/absolute/path (< 108 bytes)", s);
            return -1;
        }
        out->path = xstrdup(s + 5);
        return 0;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (end[1] != '\0' && end[1] != ':')) {
            snprintf(err, errlen, "%.200s: bad [IPv6]:port", s);
            return -1;
        }
        hlen = (size_t)(end - s - 1);
        colon = end[1] == ':' ? end + 1 : NULL;
        s++;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) {
            snprintf(err, errlen, "%.200s: write an IPv6 address as [addr]:port", s);
            return -1;
        }
        hlen = colon ? (size_t)(colon - s) : strlen(s);
    }
    if (hlen == 0 || hlen >= SR_HOST_MAX) {
        snprintf(err, errlen, "%.200s: bad host", s);
        return -1;
    }
    if (colon && (util_parse_uint(colon + 1, 65535, &port) < 0 || port == 0)) {
        snprintf(err, errlen, "%.200s: bad port", s);
        return -1;
    }
    out->host = xstrndup(s, hlen);
    out->port = (int)port;
    return 0;
}

struct store *store_redis_new(uv_loop_t *loop, const struct config *cfg,
                              struct store *fallback, char *err, size_t errlen)
{
    struct store_redis *sr = xcalloc(1, sizeof(*sr));

    sr->base.ops = &redis_ops;
    sr->loop = loop;
    sr->fallback = fallback;
    sr->db = cfg->redis.db;
    sr->timeout_ms = cfg->redis.timeout_ms ? cfg->redis.timeout_ms : 250;
    sr->connect_timeout_ms = cfg->redis.connect_timeout_ms
                             ? cfg->redis.connect_timeout_ms : 1000;
    sr->backoff_ms = SR_BACKOFF_MIN_MS;
    sr->err_rl = (struct log_limiter)LOG_LIMITER_INIT(10000);
    sr->tmo_rl = (struct log_limiter)LOG_LIMITER_INIT(10000);
    if (cfg->redis.password && cfg->redis.password[0])
        sr->password = xstrdup(cfg->redis.password);
    sr->rank_klen = (size_t)snprintf(sr->rank_key, sizeof(sr->rank_key), "%soffenders",
                                     cfg->redis.prefix ? cfg->redis.prefix : "");

    if (cfg->redis.sentinels.n) {
        if (!cfg->redis.master_name || !cfg->redis.master_name[0]) {
            snprintf(err, errlen, "[redis] sentinels: master_name is required");
            goto fail;
        }
        if (cfg->redis.sentinels.n > SR_MAX_SENTINELS) {
            snprintf(err, errlen, "[redis] sentinels: at most %d", SR_MAX_SENTINELS);
            goto fail;
        }
        sr->master_name = xstrdup(cfg->redis.master_name);
        sr->sentinels = xcalloc(cfg->redis.sentinels.n, sizeof(*sr->sentinels));
        for (size_t i = 0; i < cfg->redis.sentinels.n; i++, sr->nsentinels++) {
            char why[256];
            if (parse_addr(cfg->redis.sentinels.v[i], 26379, &sr->sentinels[i],
                           why, sizeof(why)) < 0) {
                snprintf(err, errlen, "[redis] sentinels: %s", why);
                goto fail;
            }
            if (!sr->sentinels[i].host || !sr_ip_literal(sr->sentinels[i].host)) {
                snprintf(err, errlen, "[redis] sentinels: %.200s: want IP:port",
                         cfg->redis.sentinels.v[i]);
                sr->nsentinels++;
                goto fail;
            }
        }
    } else {
        char why[256];
        if (!cfg->redis.address
            || parse_addr(cfg->redis.address, 6379, &sr->master, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "[redis] address: %s",
                     cfg->redis.address ? why : "missing");
            goto fail;
        }
    }

    uv_timer_init(loop, &sr->tmo_timer);
    uv_timer_init(loop, &sr->conn_timer);
    uv_timer_init(loop, &sr->retry_timer);
    uv_timer_init(loop, &sr->health_timer);
    uv_check_init(loop, &sr->batch_check);
    sr->tmo_timer.data = sr->conn_timer.data = sr->retry_timer.data =
        sr->health_timer.data = sr->batch_check.data = sr;
    sr->handles_open = 5;
    uv_timer_start(&sr->health_timer, health_cb, SR_HEALTH_MS, SR_HEALTH_MS);
    uv_unref((uv_handle_t *)&sr->health_timer);
    stats.redis_up = 0;
    stats.redis_stores++;
    rconn_start(sr);
    return &sr->base;

fail:
    store_free(fallback);
    addr_free(&sr->master);
    for (size_t i = 0; i < sr->nsentinels; i++)
        addr_free(&sr->sentinels[i]);
    free(sr->sentinels);
    free(sr->master_name);
    free(sr->password);
    free(sr);
    return NULL;
}
