/*
 * store_redis_cmd - the commands of store_redis: their life, their
 * deadlines, read batching and the replies
 *
 * SYNOPSIS
 *	#include "store_redis_priv.h"
 *
 *	struct rcmd *sr_cmd_new(sr, kind, key, klen)
 *	int sr_cmd_send(sr, c, argc, argv, lens)
 *	void sr_batch_add(sr, c)
 *	int sr_script_send(sr, c, use_eval)
 *	int sr_scan_send(sr, c)
 *	void sr_cmd_fail(c)
 *	void sr_cmd_release(c)
 *	void sr_answer_get(c, status, val, len)
 *	void sr_cmd_answered(c)
 *
 * DESCRIPTION
 *	The store ops (store_redis.c, store_redis_merge.c,
 *	store_redis_fleet.c) make a struct rcmd per call and send it here;
 *	sr_reply, the hiredis callback of every caller's command, answers
 *	it, or sends the next step of a delete.  A command that fails is
 *	answered by sr_cmd_fail as store_redis.c's DESCRIPTION says.
 *
 *	Reads are batched: the gets and the plain peeks asked during one
 *	turn of the loop go out as one MGET when the turn's I/O is done (a
 *	uv_check handle), up to SR_BATCH_MAX keys.  On the request path each
 *	policy request reads three keys (its cached answer and its client's
 *	standings, narrow and wide), so a busy loop turns dozens of commands into one: Redis and
 *	hiredis parse one command, and a request costs one round trip.  Each
 *	read keeps its own deadline and its own answer.
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
 * LIFETIME OF A COMMAND
 *	struct rcmd carries one caller's request.  It is answered exactly
 *	once (reply, error, timeout, lost connection or store_free) and it
 *	is freed only from its hiredis callback, which hiredis 0.14.1 calls
 *	exactly once per queued command: with the reply, or with NULL when
 *	the context is torn down.  After store_free a command is "detached"
 *	(sr == NULL) and its late callback just frees it.
 */

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

/* sr_cmd_release - free c unless hiredis still owes its callback. */
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

/* sr_batch_add - queue a read for this turn's MGET.  Its deadline starts now;
 * hi_pending marks it as owed a reply, so nothing frees it meanwhile. */
void sr_batch_add(struct store_redis *sr, struct rcmd *c)
{
    c->hi_pending = 1;
    tmo_push(sr, c);
    sr->batch[sr->nbatch++] = c;
    if (sr->nbatch == 1)
        uv_check_start(&sr->batch_check, batch_check_cb);
    if (sr->nbatch == SR_BATCH_MAX)
        batch_flush(sr);
}

int sr_script_send(struct store_redis *sr, struct rcmd *c, int use_eval)
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

int sr_scan_send(struct store_redis *sr, struct rcmd *c)
{
    const char *argv[6] = { "SCAN", c->cursor, "MATCH", c->pattern, "COUNT",
                            SR_SCAN_COUNT };
    size_t lens[6] = { 4, strlen(c->cursor), 5, c->plen, 5,
                       sizeof(SR_SCAN_COUNT) - 1 };
    c->step = DEL_SCAN;
    return sr_cmd_send(sr, c, 6, argv, lens);
}

/* ---- replies ----------------------------------------------------------- */

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
        return sr_scan_send(sr, c);
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
        return sr_scan_send(sr, c);
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
        if ((c->kind == K_MERGE ? sr_merge_send(sr, c, 1) : sr_script_send(sr, c, 1)) == 0)
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

/* ---- the deadline timer ------------------------------------------------ */

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
