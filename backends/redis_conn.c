/*
 * redis_conn - the life of store_redis's connection
 *
 * Connection life: DOWN -> [SENTINEL ->] [RESOLVING ->] CONNECTING -> UP.
 * rconn_start() connects to [redis] address, or first asks the sentinels in
 * order (SENTINEL get-master-addr-by-name; their addresses are IP literals);
 * a master given by name is resolved with uv_getaddrinfo, off the loop
 * thread.  The handshake (AUTH, SELECT, ROLE with Sentinel: the server must
 * say "master", SCRIPT LOAD of both scripts) is queued at once; its last
 * reply makes the store UP.  connect_timeout covers resolve + connect +
 * handshake.  rconn_lost() drops the connection and retries after a
 * backoff of 100 ms doubling to 5 s.
 *
 * A server or proxy that completes the handshake and then drops the
 * connection must not be reconnected to at line rate by every MTA: the
 * backoff goes back to 100 ms only once a connection has stayed up for
 * SR_STABLE_MS and then answered a PING, and every wait is drawn
 * uniformly from [backoff/2, backoff] so that many clients that lost the
 * same server do not come back in step.  Over a window of W ms starting
 * at the first attempt, at most 1 + k attempts are made, k the largest
 * with sum(i < k) of min(100 * 2^i, 5000) / 2 <= W.  A connection lost
 * before any command got a reply on it makes the store "flapping": then
 * "up" and "down" lines are logged at most once each per SR_FLAP_LOG_MS,
 * and the next line logged, or the line saying that a connection is
 * stable again, counts what was left out.  An ordinary outage (the
 * connection had served) logs its down and up lines as they happen.
 */

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "redis_uv.h"

#include "../policyd/stats.h"
#include "../policyd/util.h"
#include "store_redis_priv.h"

static void hs_reply(redisAsyncContext *ac, void *r, void *priv);
static void sentinel_reply(redisAsyncContext *ac, void *r, void *priv);
static void sentinel_next(struct store_redis *sr);


static void retry_cb(uv_timer_t *t)
{
    struct store_redis *sr = t->data;
    if (!sr->closing && sr->state == SR_DOWN)
        rconn_start(sr);
}

/* jittered - a wait drawn uniformly from [ms/2, ms] */
static uint64_t jittered(struct store_redis *sr, uint64_t ms)
{
    uint64_t x = sr->jitter;

    if (x == 0 && getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
        x = util_now_us() ^ (uint64_t)(uintptr_t)sr;
    x |= 1;                             /* xorshift64 must not be 0 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sr->jitter = x;
    return ms / 2 + x % (ms - ms / 2 + 1);
}

static void schedule_retry(struct store_redis *sr)
{
    if (sr->closing || uv_is_active((uv_handle_t *)&sr->retry_timer))
        return;
    uv_timer_start(&sr->retry_timer, retry_cb, jittered(sr, sr->backoff_ms), 0);
    sr->backoff_ms = sr->backoff_ms * 2 > SR_BACKOFF_MAX_MS ? SR_BACKOFF_MAX_MS
                                                            : sr->backoff_ms * 2;
}

/* flap_ok - whether an up (or down) line may be logged now: always,
 * unless flapping, and then once each per SR_FLAP_LOG_MS; the ones left
 * out are counted */
static int flap_ok(struct store_redis *sr, uint64_t *last_ms)
{
    uint64_t now = util_now_ms();

    if (sr->flapping && *last_ms && now - *last_ms < SR_FLAP_LOG_MS) {
        sr->flaps_unlogged++;
        return 0;
    }
    *last_ms = now;
    return 1;
}

/* flaps_note - " (N up/down changes not logged)" once, for the next line */
static const char *flaps_note(struct store_redis *sr, char *buf, size_t len)
{
    buf[0] = '\0';
    if (sr->flaps_unlogged)
        snprintf(buf, len, " (%lu up/down changes not logged)", sr->flaps_unlogged);
    sr->flaps_unlogged = 0;
    return buf;
}

/* conn_lost - give up the data connection (do_free: we tear it down; else
 * hiredis is doing so) and retry later.  Logged once per outage. */
void rconn_lost(struct store_redis *sr, const char *reason, int do_free)
{
    redisAsyncContext *ac = sr->ac;
    int was_up = sr->state == SR_UP;
    char note[64];

    sr->ac = NULL;
    sr->state = SR_DOWN;
    stats.redis_up = 0;
    uv_timer_stop(&sr->conn_timer);
    if (sr->resolving) {
        sr->resolving->sr = NULL;
        uv_cancel((uv_req_t *)&sr->resolving->req);
        sr->resolving = NULL;
    }
    if (was_up)
        sr->flapping = !sr->served;
    if (was_up || !sr->down_logged) {
        if (flap_ok(sr, &sr->down_logged_ms))
            log_warn("redis: %s: %s: %s; lookups go to the directory and counters "
                     "to process memory%s%s", was_up ? "down" : "unavailable",
                     sr->cur, reason, was_up ? " until it is back"
                                             : ", retrying in the background",
                     flaps_note(sr, note, sizeof(note)));
    } else {
        log_debug("redis: still unavailable: %s: %s", sr->cur, reason);
    }
    sr->down_logged = 1;
    if (ac && do_free) {
        ac->data = NULL;
        redisAsyncFree(ac);             /* answers what is pending (NULL) */
    }
    if (!sr->closing)
        schedule_retry(sr);
}

static void conn_timeout_cb(uv_timer_t *t);

static void conn_up(struct store_redis *sr)
{
    char note[64];

    sr->state = SR_UP;
    sr->streak = 0;
    sr->served = 0;
    /* the backoff stays until the connection proves stable */
    uv_timer_start(&sr->conn_timer, conn_timeout_cb, SR_STABLE_MS, 0);
    stats.redis_up = 1;
    if (sr->ever_up)
        stats.redis_reconnects++;
    sr->ever_up = 1;
    sr->down_logged = 0;
    if (flap_ok(sr, &sr->up_logged_ms))
        log_info("redis: up: %s%s%s", sr->cur,
                 sr->nsentinels ? " (master via sentinel)" : "",
                 flaps_note(sr, note, sizeof(note)));
}

static void linger_end(struct store_redis *sr, int do_free);

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct store_redis *sr = ac->data;
    (void)status;
    if (sr && ac == sr->lac)
        linger_end(sr, 0);              /* lost while lingering */
    if (!sr || ac != sr->ac)
        return;
    snprintf(sr->reason, sizeof(sr->reason), "%s",
             ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
    rconn_lost(sr, sr->reason, 0);
}

static int hs_send(struct store_redis *sr, int step, int argc, const char **argv,
                   const size_t *lens)
{
    struct rcmd *c = sr_cmd_new(sr, K_HS, NULL, 0);
    c->answered = 1;                    /* nobody waits for it */
    c->step = step;
    if (redisAsyncCommandArgv(sr->ac, hs_reply, c, argc, argv, lens) != REDIS_OK) {
        sr_cmd_release(c);
        return -1;
    }
    c->hi_pending = 1;
    return 0;
}

static int hs_queue(struct store_redis *sr)
{
    char db[16];
    const char *argv[3];
    size_t lens[3];

    if (sr->password) {
        argv[0] = "AUTH";
        argv[1] = sr->password;
        lens[0] = 4;
        lens[1] = strlen(sr->password);
        if (hs_send(sr, HS_AUTH, 2, argv, lens) < 0)
            return -1;
    }
    if (sr->db) {
        snprintf(db, sizeof(db), "%u", sr->db);
        argv[0] = "SELECT";
        argv[1] = db;
        lens[0] = 6;
        lens[1] = strlen(db);
        if (hs_send(sr, HS_SELECT, 2, argv, lens) < 0)
            return -1;
    }
    if (sr->nsentinels) {
        argv[0] = "ROLE";
        lens[0] = 4;
        if (hs_send(sr, HS_ROLE, 1, argv, lens) < 0)
            return -1;
    }
    argv[0] = "SCRIPT";
    argv[1] = "LOAD";
    argv[2] = sr_incr_lua;
    lens[0] = 6;
    lens[1] = 4;
    lens[2] = strlen(sr_incr_lua);
    if (hs_send(sr, HS_LOAD_INCR, 3, argv, lens) < 0)
        return -1;
    argv[2] = sr_peek_lua;
    lens[2] = strlen(sr_peek_lua);
    if (hs_send(sr, HS_LOAD_PEEK, 3, argv, lens) < 0)
        return -1;
    argv[2] = sr_merge_lua;
    lens[2] = strlen(sr_merge_lua);
    return hs_send(sr, HS_LOAD_MERGE, 3, argv, lens);
}

static void hs_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rcmd *c = priv;
    struct store_redis *sr = c->sr;
    redisReply *reply = r;
    int step = c->step;

    c->hi_pending = 0;
    sr_cmd_release(c);
    if (!sr || ac != sr->ac)
        return;
    if (!reply) {
        snprintf(sr->reason, sizeof(sr->reason), "%s",
                 ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
        rconn_lost(sr, sr->reason, 0);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(sr->reason, sizeof(sr->reason), "%s: %.200s",
                 step == HS_AUTH ? "AUTH" : step == HS_SELECT ? "SELECT"
                 : step == HS_ROLE ? "ROLE" : step == HS_STABLE ? "PING"
                 : "SCRIPT LOAD", reply->str);
        rconn_lost(sr, sr->reason, 1);
        return;
    }
    switch (step) {
    case HS_ROLE:
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1
            || reply->element[0]->type != REDIS_REPLY_STRING
            || strcmp(reply->element[0]->str, "master") != 0) {
            snprintf(sr->reason, sizeof(sr->reason),
                     "not the master (ROLE says %.40s)",
                     reply->type == REDIS_REPLY_ARRAY && reply->elements
                     && reply->element[0]->type == REDIS_REPLY_STRING
                     ? reply->element[0]->str : "?");
            rconn_lost(sr, sr->reason, 1);
        }
        break;
    case HS_LOAD_INCR:
    case HS_LOAD_PEEK:
    case HS_LOAD_MERGE:
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            rconn_lost(sr, "SCRIPT LOAD: unexpected reply", 1);
            break;
        }
        memcpy(step == HS_LOAD_INCR ? sr->incr_sha
               : step == HS_LOAD_PEEK ? sr->peek_sha : sr->merge_sha, reply->str, 41);
        if (step == HS_LOAD_MERGE)
            conn_up(sr);
        break;
    case HS_STABLE:
        if (sr->state == SR_UP) {
            char note[64];

            sr->backoff_ms = SR_BACKOFF_MIN_MS;
            sr->flapping = 0;
            if (sr->flaps_unlogged)
                log_info("redis: up: %s, stable for %u s%s", sr->cur,
                         SR_STABLE_MS / 1000, flaps_note(sr, note, sizeof(note)));
        }
        break;
    default:
        break;
    }
}

static void master_connect(struct store_redis *sr, const char *host, int port,
                           const char *path)
{
    redisAsyncContext *ac;

    if (path) {
        snprintf(sr->cur, sizeof(sr->cur), "unix:%s", path);
        ac = redisAsyncConnectUnix(path);
    } else {
        snprintf(sr->cur, sizeof(sr->cur), strchr(host, ':') ? "[%s]:%d" : "%s:%d",
                 host, port);
        ac = redisAsyncConnect(host, port);
    }
    if (!ac) {
        rconn_lost(sr, "out of memory", 0);
        return;
    }
    if (ac->err) {
        snprintf(sr->reason, sizeof(sr->reason), "%s", ac->errstr);
        redisAsyncFree(ac);
        rconn_lost(sr, sr->reason, 0);
        return;
    }
    ac->data = sr;
    if (ruv_attach(ac, sr->loop) != REDIS_OK) {
        ac->data = NULL;
        redisAsyncFree(ac);
        rconn_lost(sr, "cannot attach to the event loop", 0);
        return;
    }
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    sr->ac = ac;
    sr->state = SR_CONNECTING;
    if (hs_queue(sr) < 0)
        rconn_lost(sr, "cannot queue the handshake", 1);
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct sr_resolve *rs = (struct sr_resolve *)req;
    struct store_redis *sr = rs->sr;
    char ip[INET6_ADDRSTRLEN];

    if (!sr) {
        if (res)
            uv_freeaddrinfo(res);
        free(rs);
        return;
    }
    sr->resolving = NULL;
    ip[0] = '\0';
    if (status == 0 && res) {
        if (res->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr,
                      ip, sizeof(ip));
        else if (res->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr,
                      ip, sizeof(ip));
    }
    if (res)
        uv_freeaddrinfo(res);
    int port = rs->port;
    free(rs);
    if (!ip[0]) {
        snprintf(sr->reason, sizeof(sr->reason), "cannot resolve: %s",
                 status ? uv_strerror(status) : "no address");
        rconn_lost(sr, sr->reason, 0);
        return;
    }
    master_connect(sr, ip, port, NULL);
}

/* connect_to - connect to host:port (or path), resolving a name first. */
static void connect_to(struct store_redis *sr, const char *host, int port,
                       const char *path)
{
    uv_timer_start(&sr->conn_timer, conn_timeout_cb, sr->connect_timeout_ms, 0);
    if (path || sr_ip_literal(host)) {
        master_connect(sr, host, port, path);
        return;
    }
    struct addrinfo hints;
    struct sr_resolve *rs = xcalloc(1, sizeof(*rs));
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rs->sr = sr;
    rs->port = port;
    snprintf(sr->cur, sizeof(sr->cur), "%s:%d", host, port);
    sr->state = SR_RESOLVING;
    sr->resolving = rs;
    int rc = uv_getaddrinfo(sr->loop, &rs->req, resolve_cb, host, NULL, &hints);
    if (rc != 0) {
        sr->resolving = NULL;
        free(rs);
        snprintf(sr->reason, sizeof(sr->reason), "cannot resolve: %s", uv_strerror(rc));
        rconn_lost(sr, sr->reason, 0);
    }
}

void rconn_start(struct store_redis *sr)
{
    if (sr->nsentinels) {
        sr->sentinel_idx = 0;
        sr->reason[0] = '\0';
        sentinel_next(sr);
    } else {
        connect_to(sr, sr->master.host, sr->master.port, sr->master.path);
    }
}

/* ---- sentinel ---------------------------------------------------------- */

void rconn_sentinel_drop(struct store_redis *sr)
{
    redisAsyncContext *ac = sr->sac;
    sr->sac = NULL;
    if (ac)
        redisAsyncFree(ac);             /* its callback sees a stale ac */
}

/* sentinel_next - ask the next sentinel; after the last one, give up
 * until the retry timer. */
static void sentinel_next(struct store_redis *sr)
{
    while (sr->sentinel_idx < sr->nsentinels) {
        struct sr_addr *a = &sr->sentinels[sr->sentinel_idx++];
        const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", sr->master_name };
        size_t lens[3] = { 8, 23, strlen(sr->master_name) };
        redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);

        snprintf(sr->cur, sizeof(sr->cur), "sentinel %s:%d", a->host, a->port);
        if (!ac)
            continue;
        if (ac->err) {
            snprintf(sr->reason, sizeof(sr->reason), "%s: %s", sr->cur, ac->errstr);
            redisAsyncFree(ac);
            continue;
        }
        if (ruv_attach(ac, sr->loop) != REDIS_OK) {
            redisAsyncFree(ac);
            continue;
        }
        struct rcmd *c = sr_cmd_new(sr, K_SENTINEL, NULL, 0);
        c->answered = 1;
        if (redisAsyncCommandArgv(ac, sentinel_reply, c, 3, argv, lens) != REDIS_OK) {
            sr_cmd_release(c);
            redisAsyncFree(ac);
            continue;
        }
        c->hi_pending = 1;
        sr->sac = ac;
        sr->state = SR_SENTINEL;
        uv_timer_start(&sr->conn_timer, conn_timeout_cb, sr->connect_timeout_ms, 0);
        return;
    }
    snprintf(sr->cur, sizeof(sr->cur), "master %s", sr->master_name);
    if (!sr->reason[0])
        snprintf(sr->reason, sizeof(sr->reason), "no sentinel answered");
    rconn_lost(sr, sr->reason, 0);
}

static void sentinel_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rcmd *c = priv;
    struct store_redis *sr = c->sr;
    redisReply *reply = r;
    char host[SR_HOST_MAX];
    unsigned long long port = 0;

    c->hi_pending = 0;
    sr_cmd_release(c);
    if (!sr || ac != sr->sac)
        return;
    uv_timer_stop(&sr->conn_timer);
    if (!reply) {
        snprintf(sr->reason, sizeof(sr->reason), "%s: %s", sr->cur,
                 ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
        sr->sac = NULL;                 /* hiredis is freeing it */
        sentinel_next(sr);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[1]->type == REDIS_REPLY_STRING
        && reply->element[0]->len > 0 && reply->element[0]->len < sizeof(host)
        && sr_ip_literal(reply->element[0]->str)
        && util_parse_uint(reply->element[1]->str, 65535, &port) == 0 && port > 0) {
        memcpy(host, reply->element[0]->str, reply->element[0]->len + 1);
        rconn_sentinel_drop(sr);
        connect_to(sr, host, (int)port, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL)
        snprintf(sr->reason, sizeof(sr->reason), "%s does not know master %s",
                 sr->cur, sr->master_name);
    else
        snprintf(sr->reason, sizeof(sr->reason), "%s: unexpected reply%s%.200s",
                 sr->cur, reply->type == REDIS_REPLY_ERROR ? ": " : "",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    rconn_sentinel_drop(sr);
    sentinel_next(sr);
}

/* conn_timeout_cb - connect_timeout while connecting; SR_STABLE_MS after
 * the handshake: a PING whose answer resets the backoff */
static void conn_timeout_cb(uv_timer_t *t)
{
    struct store_redis *sr = t->data;
    char msg[64];

    if (sr->state == SR_UP) {
        const char *argv[1] = { "PING" };
        size_t lens[1] = { 4 };

        if (hs_send(sr, HS_STABLE, 1, argv, lens) < 0)
            rconn_lost(sr, "cannot send PING", 1);
    } else if (sr->state == SR_SENTINEL) {
        snprintf(sr->reason, sizeof(sr->reason), "%s: no answer within %llu ms",
                 sr->cur, (unsigned long long)sr->connect_timeout_ms);
        rconn_sentinel_drop(sr);
        sentinel_next(sr);
    } else if (sr->state == SR_CONNECTING || sr->state == SR_RESOLVING) {
        snprintf(msg, sizeof(msg), "connect timeout (%llu ms)",
                 (unsigned long long)sr->connect_timeout_ms);
        rconn_lost(sr, msg, 1);
    }
}

/* ---- the close --------------------------------------------------------- */

/* linger_end - close the lingering connection (do_free: we free it; else
 * hiredis is doing so), then the last handle: the struct goes with it. */
static void linger_end(struct store_redis *sr, int do_free)
{
    redisAsyncContext *ac = sr->lac;

    sr->lac = NULL;
    if (sr->linger_out)
        log_warn("redis: %zu writes unconfirmed at close", sr->linger_out);
    ac->data = NULL;                    /* the replies still owed find nobody */
    if (do_free)
        redisAsyncFree(ac);
    uv_close((uv_handle_t *)&sr->conn_timer, sr_handle_closed);
}

static void linger_expired(uv_timer_t *t)
{
    linger_end(t->data, 1);
}

void rconn_linger(struct store_redis *sr, redisAsyncContext *ac, size_t nwrites)
{
    sr->lac = ac;
    sr->linger_out = nwrites;
    uv_timer_start(&sr->conn_timer, linger_expired, STORE_LINGER_MS, 0);
}

void rconn_linger_answered(struct store_redis *sr)
{
    if (--sr->linger_out == 0)
        linger_end(sr, 1);              /* from a reply: hiredis frees after it */
}
