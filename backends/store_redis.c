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
 *	Reads are batched: the gets and the plain peeks asked during one
 *	turn of the loop go out as one MGET when the turn's I/O is done (a
 *	uv_check handle), up to SR_BATCH_MAX keys.  On the request path each
 *	policy request reads two keys (its cached answer and its client's
 *	counter), so a busy loop turns dozens of commands into one: Redis and
 *	hiredis parse one command, and a request costs one round trip.  Each
 *	read keeps its own deadline and its own answer.
 *
 *	The connection itself (connecting, the handshake, Sentinel,
 *	reconnecting with backoff) is redis_conn.c's; this file owns the
 *	commands, their deadlines and replies, and the store ops.
 *
 *	hiredis 0.14.1 has no timeouts and its libuv adapter ignores poll
 *	errors (a reset connection can hang silently), so this module keeps
 *	them itself: every command is queued with a deadline of now +
 *	timeout (all commands share one timeout, so the queue is in deadline
 *	order and one uv timer serves it).  On expiry the caller is answered
 *	at once and a late reply is ignored; SR_TIMEOUT_STREAK timeouts in a
 *	row, or a timed-out idle PING (sent every SR_HEALTH_MS while idle),
 *	declare the connection dead: it is freed and reconnected.
 *
 *	While the store is not UP, or when a command fails: get answers
 *	STORE_ERR (the caller asks the directory), merge STORE_ERR (the
 *	caller keeps its deltas), or STORE_UNSURE when it went out and its
 *	answer never came (time-out, lost connection), set is dropped, incr and peek are answered
 *	by the fallback store_mem, del deletes there.  The
 *	change of state is logged once each way, with the reason.
 *
 * LIFETIME OF A COMMAND
 *	struct rcmd carries one caller's request.  It is answered exactly
 *	once (reply, error, timeout, lost connection or store_free) and it
 *	is freed only from its hiredis callback, which hiredis 0.14.1 calls
 *	exactly once per queued command: with the reply, or with NULL when
 *	the context is torn down.  After store_free a command is "detached"
 *	(sr == NULL) and its late callback just frees it.
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

#include <poll.h>
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

static void sr_reply(redisAsyncContext *ac, void *r, void *priv);
/* ---- commands ---------------------------------------------------------- */

struct rcmd *sr_cmd_new(struct store_redis *sr, int kind, const char *key,
                            size_t klen)
{
    struct rcmd *c = xcalloc(1, sizeof(*c) + klen + 1);
    c->sr = sr;
    c->kind = kind;
    if (key)
        memcpy(c->key, key, klen);
    c->klen = klen;
    c->next = sr->all;
    if (sr->all)
        sr->all->prev = c;
    sr->all = c;
    return c;
}

static void tmo_unlink(struct store_redis *sr, struct rcmd *c)
{
    if (!c->in_tmo)
        return;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        sr->tmo_head = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        sr->tmo_tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->in_tmo = 0;
    sr->inflight--;
}

static void tmo_cb(uv_timer_t *t);

static void tmo_arm(struct store_redis *sr)
{
    uint64_t now = uv_now(sr->loop);
    if (!sr->tmo_head) {
        uv_timer_stop(&sr->tmo_timer);
        return;
    }
    uv_timer_start(&sr->tmo_timer, tmo_cb,
                   sr->tmo_head->deadline > now ? sr->tmo_head->deadline - now : 0, 0);
}

/* tmo_push - (re)start c's deadline.  Every command shares one timeout, so
 * appending keeps the queue in deadline order. */
static void tmo_push(struct store_redis *sr, struct rcmd *c)
{
    int was_empty = sr->tmo_head == NULL;
    tmo_unlink(sr, c);
    c->deadline = uv_now(sr->loop) + sr->timeout_ms;
    c->tprev = sr->tmo_tail;
    if (sr->tmo_tail)
        sr->tmo_tail->tnext = c;
    else
        sr->tmo_head = c;
    sr->tmo_tail = c;
    c->in_tmo = 1;
    sr->inflight++;
    if (was_empty)
        tmo_arm(sr);
}

/* cmd_release - free c unless hiredis still owes its callback. */
void sr_cmd_release(struct rcmd *c)
{
    struct store_redis *sr = c->sr;
    if (c->hi_pending)
        return;
    if (sr) {
        tmo_unlink(sr, c);
        if (c->prev)
            c->prev->next = c->next;
        else
            sr->all = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    free(c->pattern);
    free(c->args);
    free(c);
}

static void count_noop(void *arg, int status, long long count, long long ttl_ms)
{
    (void)arg, (void)status, (void)count, (void)ttl_ms;
}

/* sr_cmd_fail - answer c's caller as well as we can without Redis.  c must not
 * be touched afterwards unless the caller knows hiredis is done with it. */
void sr_cmd_fail(struct rcmd *c)
{
    struct store_redis *sr = c->sr;
    struct store *fb = sr && !sr->closing ? sr->fallback : NULL;

    if (c->answered)
        return;
    c->answered = 1;
    if (sr)
        tmo_unlink(sr, c);
    switch (c->kind) {
    case K_GET:
        c->get_cb(c->arg, STORE_ERR, NULL, 0);
        break;
    case K_INCR:
        if (fb)
            fb->ops->incr(fb, c->key, c->klen, c->by, c->ttl_ms, c->at, c->at_ttl_ms,
                          c->count_cb, c->arg);
        else
            c->count_cb(c->arg, STORE_ERR, 0, -1);
        break;
    case K_PEEK:
        if (fb)
            fb->ops->peek(fb, c->key, c->klen, c->with_ttl, c->count_cb, c->arg);
        else
            c->count_cb(c->arg, STORE_ERR, 0, -1);
        break;
    case K_DEL:
        c->count_cb(c->arg, STORE_ERR, 0, -1);
        break;
    case K_MERGE:
    case K_LIST:
        /* a merge that went out and got no answer may have run */
        c->list_cb(c->arg, c->kind == K_MERGE && c->hi_pending ? STORE_UNSURE
                                                               : STORE_ERR, NULL, 0);
        break;
    default:
        break;
    }
}

int sr_cmd_send(struct store_redis *sr, struct rcmd *c, int argc,
                const char **argv, const size_t *lens)
{
    if (!sr->ac || redisAsyncCommandArgv(sr->ac, sr_reply, c, argc, argv, lens)
                   != REDIS_OK)
        return -1;
    c->hi_pending = 1;
    tmo_push(sr, c);
    return 0;
}

/* One MGET on the wire: the reads it answers, in key order. */
struct rbatch {
    size_t n;
    struct rcmd *cmd[];
};

/* mget_reply - hand each read its element, as if it had been a GET of its
 * own; a NULL or error reply goes to each of them alike. */
static void mget_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rbatch *b = priv;
    redisReply *reply = r;
    int split = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == b->n;

    for (size_t i = 0; i < b->n; i++)
        sr_reply(ac, split ? reply->element[i] : reply, b->cmd[i]);
    free(b);
}

static void batch_flush(struct store_redis *sr)
{
    size_t n = sr->nbatch;
    struct rbatch *b;

    uv_check_stop(&sr->batch_check);
    if (n == 0)
        return;
    sr->nbatch = 0;
    b = xmalloc(sizeof(*b) + n * sizeof(b->cmd[0]));
    b->n = n;
    sr->batch_argv[0] = "MGET";
    sr->batch_lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        b->cmd[i] = sr->batch[i];
        sr->batch_argv[i + 1] = b->cmd[i]->key;
        sr->batch_lens[i + 1] = b->cmd[i]->klen;
    }
    if (sr->ac && redisAsyncCommandArgv(sr->ac, mget_reply, b, (int)n + 1,
                                        sr->batch_argv, sr->batch_lens) == REDIS_OK)
        return;
    for (size_t i = 0; i < n; i++) {     /* not sent: nobody owes a reply */
        b->cmd[i]->hi_pending = 0;
        sr_cmd_fail(b->cmd[i]);
        sr_cmd_release(b->cmd[i]);
    }
    free(b);
}

static void batch_check_cb(uv_check_t *h)
{
    batch_flush(h->data);
}

/* batch_add - queue a read for this turn's MGET.  Its deadline starts now;
 * hi_pending marks it as owed a reply, so nothing frees it meanwhile. */
static void batch_add(struct store_redis *sr, struct rcmd *c)
{
    c->hi_pending = 1;
    tmo_push(sr, c);
    sr->batch[sr->nbatch++] = c;
    if (sr->nbatch == 1)
        uv_check_start(&sr->batch_check, batch_check_cb);
    if (sr->nbatch == SR_BATCH_MAX)
        batch_flush(sr);
}

static int script_send(struct store_redis *sr, struct rcmd *c, int use_eval)
{
    char ttl[24], at[24], at_ttl[24], by[24];
    const char *argv[8];
    size_t lens[8];
    int argc = 4;

    argv[0] = use_eval ? "EVAL" : "EVALSHA";
    if (c->kind == K_INCR)
        argv[1] = use_eval ? sr_incr_lua : sr->incr_sha;
    else
        argv[1] = use_eval ? sr_peek_lua : sr->peek_sha;
    argv[2] = "1";
    argv[3] = c->key;
    lens[3] = c->klen;
    if (c->kind == K_INCR) {
        snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)c->ttl_ms);
        snprintf(at, sizeof(at), "%lld", c->at > 0 ? c->at : 0);
        snprintf(at_ttl, sizeof(at_ttl), "%llu", (unsigned long long)c->at_ttl_ms);
        argv[4] = ttl;
        argv[5] = at;
        argv[6] = at_ttl;
        snprintf(by, sizeof(by), "%lld", c->by);
        argv[7] = by;
        argc = 8;
    }
    for (int i = 0; i < argc; i++)
        if (i != 3)
            lens[i] = strlen(argv[i]);
    return sr_cmd_send(sr, c, argc, argv, lens);
}

static int scan_send(struct store_redis *sr, struct rcmd *c)
{
    const char *argv[6] = { "SCAN", c->cursor, "MATCH", c->pattern, "COUNT",
                            SR_SCAN_COUNT };
    size_t lens[6] = { 4, strlen(c->cursor), 5, c->plen, 5,
                       sizeof(SR_SCAN_COUNT) - 1 };
    c->step = DEL_SCAN;
    return sr_cmd_send(sr, c, 6, argv, lens);
}

void sr_answer_get(struct rcmd *c, int status, const char *val, size_t len)
{
    c->answered = 1;
    if (c->sr)
        tmo_unlink(c->sr, c);
    c->get_cb(c->arg, status, val, len);
}

void sr_cmd_answered(struct rcmd *c)
{
    c->answered = 1;
    if (c->sr)
        tmo_unlink(c->sr, c);
}

static void answer_count(struct rcmd *c, int status, long long n, long long ttl)
{
    c->answered = 1;
    if (c->sr)
        tmo_unlink(c->sr, c);
    c->count_cb(c->arg, status, n, ttl);
}

static int is_err(const redisReply *r, const char *code)
{
    size_t n = strlen(code);
    return r->type == REDIS_REPLY_ERROR && r->len >= n
           && memcmp(r->str, code, n) == 0;
}

static int is_int_pair(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2
           && r->element[0]->type == REDIS_REPLY_INTEGER
           && r->element[1]->type == REDIS_REPLY_INTEGER;
}

static const char *kind_name(int kind)
{
    static const char *names[] = { "GET", "SET", "INCR", "PEEK", "DEL", "PING",
                                   "handshake", "SENTINEL", "MERGE", "ROSTER",
                                   "LIST" };
    return names[kind];
}

/* del_reply - one step of a delete; returns 0 when c was sent again. */
static int del_reply(struct store_redis *sr, struct rcmd *c, redisReply *r)
{
    if (c->step == DEL_ONE || c->step == DEL_UNLINK) {
        if (r->type != REDIS_REPLY_INTEGER)
            return -1;
        c->removed += r->integer;
        if (c->step == DEL_ONE || strcmp(c->cursor, "0") == 0) {
            answer_count(c, c->removed ? STORE_OK : STORE_MISS, c->removed, -1);
            return 1;
        }
        return scan_send(sr, c);
    }
    /* DEL_SCAN: [cursor, [key ...]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[0]->len >= sizeof(c->cursor)
        || r->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    memcpy(c->cursor, r->element[0]->str, r->element[0]->len);
    c->cursor[r->element[0]->len] = '\0';
    redisReply *keys = r->element[1];
    if (keys->elements == 0) {
        if (strcmp(c->cursor, "0") == 0) {
            answer_count(c, c->removed ? STORE_OK : STORE_MISS, c->removed, -1);
            return 1;
        }
        return scan_send(sr, c);
    }
    const char **argv = xmalloc((keys->elements + 1) * sizeof(*argv));
    size_t *lens = xmalloc((keys->elements + 1) * sizeof(*lens));
    argv[0] = "UNLINK";
    lens[0] = 6;
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) {
            free(argv);
            free(lens);
            return -1;
        }
        argv[i + 1] = keys->element[i]->str;
        lens[i + 1] = keys->element[i]->len;
    }
    c->step = DEL_UNLINK;
    int rc = sr_cmd_send(sr, c, (int)keys->elements + 1, argv, lens);
    free(argv);
    free(lens);
    return rc;
}

/* sr_reply - hiredis callback of every caller's command. */
static void sr_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rcmd *c = priv;
    struct store_redis *sr = c->sr;
    redisReply *reply = r;

    if (!sr) {                          /* the store is freed */
        struct store_redis *lsr = ac->data;
        c->hi_pending = 0;
        if (lsr && ac == lsr->lac && reply && sr_is_write(c->kind))
            rconn_linger_answered(lsr);
        sr_cmd_release(c);
        return;
    }
    /* a connection already given up, or hiredis tearing it down: failed
     * while still marked sent (hi_pending), as it may have run */
    if (ac != sr->ac || !reply) {
        if (ac == sr->ac) {
            snprintf(sr->reason, sizeof(sr->reason), "%s",
                     ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
            rconn_lost(sr, sr->reason, 0);
        }
        if (!c->answered)
            stats.redis_errors++;
        sr_cmd_fail(c);
        c->hi_pending = 0;
        sr_cmd_release(c);
        return;
    }
    c->hi_pending = 0;
    sr->streak = 0;
    sr->served = 1;                     /* redis_conn.c: not a flapping one */
    if (c->answered) {                  /* timed out already: a late reply */
        sr_cmd_release(c);
        return;
    }
    if ((c->kind == K_INCR || (c->kind == K_PEEK && c->with_ttl)
         || c->kind == K_MERGE) && !c->retried && is_err(reply, "NOSCRIPT")) {
        /* script cache flushed (or a new master): send the body once */
        c->retried = 1;
        if ((c->kind == K_MERGE ? sr_merge_send(sr, c, 1) : script_send(sr, c, 1)) == 0)
            return;
    }

    int ok = 0;
    switch (c->kind) {
    case K_GET:
        if (reply->type == REDIS_REPLY_STRING) {
            sr_answer_get(c, STORE_OK, reply->str, reply->len);
            ok = 1;
        } else if (reply->type == REDIS_REPLY_NIL) {
            sr_answer_get(c, STORE_MISS, NULL, 0);
            ok = 1;
        }
        break;
    case K_MERGE:
        ok = sr_merge_reply(c, reply);
        break;
    case K_LIST:
        ok = sr_list_reply(c, reply);
        break;
    case K_ROSTER:
        ok = reply->type == REDIS_REPLY_INTEGER;
        if (ok)
            sr_cmd_answered(c);
        break;
    case K_SET:
    case K_PING:
        ok = reply->type == REDIS_REPLY_STATUS;
        if (ok) {
            c->answered = 1;
            tmo_unlink(sr, c);
        }
        break;
    case K_INCR:
        if (is_int_pair(reply)) {
            answer_count(c, STORE_OK, reply->element[0]->integer,
                         reply->element[1]->integer);
            ok = 1;
        }
        break;
    case K_PEEK:
        if (!c->with_ttl && reply->type == REDIS_REPLY_NIL) {
            answer_count(c, STORE_MISS, 0, -1);
            ok = 1;
        } else if (!c->with_ttl && reply->type == REDIS_REPLY_STRING) {
            char *end;
            long long n = strtoll(reply->str, &end, 10);
            if (end != reply->str && *end == '\0') {
                answer_count(c, STORE_OK, n, -1);
                ok = 1;
            }
        } else if (c->with_ttl && is_int_pair(reply)) {
            long long ttl = reply->element[1]->integer;
            if (ttl == -2)
                answer_count(c, STORE_MISS, 0, -1);
            else
                answer_count(c, STORE_OK, reply->element[0]->integer, ttl);
            ok = 1;
        }
        break;
    case K_DEL: {
        int rc = del_reply(sr, c, reply);
        if (rc == 0)
            return;                     /* next step in flight */
        ok = rc > 0;
        break;
    }
    default:
        break;
    }
    if (!ok) {
        /* c->sr may have gone if a callback above freed the store; an
         * unanswered c means no callback ran, so sr is still good */
        if (!c->answered) {
            stats.redis_errors++;
            log_warn_rl(&sr->err_rl, "redis: %s: unexpected reply: %.200s",
                        kind_name(c->kind),
                        reply->type == REDIS_REPLY_ERROR ? reply->str : "(wrong type)");
            sr_cmd_fail(c);
            if (is_err(reply, "READONLY") && c->sr && sr->ac == ac)
                rconn_lost(sr, "READONLY: the server is a replica now", 1);
        }
    }
    sr_cmd_release(c);
}

/* ---- timers ------------------------------------------------------------ */

/* sock_broken - the libuv adapter drops poll errors, so a reset connection
 * looks merely silent; ask the socket itself (a zero-timeout poll). */
static int sock_broken(const redisAsyncContext *ac)
{
    struct pollfd pfd = { ac->c.fd, POLLIN, 0 };
    return ac->c.fd >= 0 && poll(&pfd, 1, 0) == 1
           && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL));
}

static void tmo_cb(uv_timer_t *t)
{
    struct store_redis *sr = t->data;
    uint64_t now = uv_now(sr->loop);
    unsigned n = 0;
    int ping_lost = 0;
    struct rcmd *c;

    while ((c = sr->tmo_head) && c->deadline <= now) {
        tmo_unlink(sr, c);
        n++;
        stats.redis_errors++;
        if (c->kind == K_PING)
            ping_lost = 1;
        else
            sr->streak++;
        sr_cmd_fail(c);                    /* c lives on until hiredis calls back */
        if (sr->closing)
            return;
    }
    if (n)
        log_warn_rl(&sr->tmo_rl, "redis: %u command(s) got no reply within %llu ms",
                    n, (unsigned long long)sr->timeout_ms);
    if (sr->state == SR_UP && n && sr->ac && sock_broken(sr->ac)) {
        snprintf(sr->reason, sizeof(sr->reason), "connection reset");
        rconn_lost(sr, sr->reason, 1);
    } else if (sr->state == SR_UP && (ping_lost || sr->streak >= SR_TIMEOUT_STREAK)) {
        snprintf(sr->reason, sizeof(sr->reason), "%s",
                 ping_lost ? "no reply to PING" : "commands in a row got no reply");
        rconn_lost(sr, sr->reason, 1);
    }
    if (!sr->closing)
        tmo_arm(sr);
}

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
    batch_add(sr, c);
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
    if (script_send(sr, c, 0) < 0) {
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
        batch_add(sr, c);
    } else if (script_send(sr, c, 0) < 0) {
        sr_cmd_fail(c);
        sr_cmd_release(c);
    }
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
        rc = scan_send(sr, c);
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
