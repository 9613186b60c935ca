#ifndef BACKENDS_STORE_REDIS_PRIV_H
#define BACKENDS_STORE_REDIS_PRIV_H

/*
 * store_redis_priv - what store_redis.c (store ops, construction),
 * store_redis_cmd.c (commands, deadlines, read batching, replies),
 * store_redis_merge.c, store_redis_fleet.c (the merge op, rosters) and
 * redis_conn.c (connecting, handshake, Sentinel, reconnecting) share.  Not
 * for any other module: the rest of policyd sees only store_redis.h.
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "../policyd/address.h"
#include "../policyd/log.h"
#include "store.h"

#define SR_MAX_INFLIGHT     20000
#define SR_MAX_KEY          4096
#define SR_BACKOFF_MIN_MS   100
#define SR_BACKOFF_MAX_MS   5000
#define SR_STABLE_MS        10000   /* up this long (and a PING answered)
                                     * before the backoff starts again */
#define SR_FLAP_LOG_MS      30000   /* while flapping: one up, one down line */
#define SR_TIMEOUT_STREAK   3
#define SR_HEALTH_MS        1000
#define SR_SCAN_COUNT       "1000"
#define SR_MAX_SENTINELS    16
#define SR_BATCH_MAX        256     /* keys in one MGET */
#define SR_HOST_MAX         256
#define STORE_LINGER_MS     2000    /* store_free: writes out get this long
                                     * for their replies before the close */


enum sr_state { SR_DOWN, SR_SENTINEL, SR_RESOLVING, SR_CONNECTING, SR_UP };
enum cmd_kind { K_GET, K_SET, K_INCR, K_PEEK, K_DEL, K_PING, K_HS, K_SENTINEL,
                K_MERGE, K_ROSTER, K_LIST };
enum hs_step { HS_AUTH, HS_SELECT, HS_ROLE, HS_LOAD_INCR, HS_LOAD_PEEK,
               HS_LOAD_MERGE, HS_STABLE };
enum del_step { DEL_ONE, DEL_SCAN, DEL_UNLINK };

struct sr_addr {
    char *host;                 /* NULL for a unix socket */
    int port;
    char *path;                 /* unix socket path */
};

struct store_redis;

struct rcmd {
    struct store_redis *sr;     /* NULL once the store is freed */
    struct rcmd *prev, *next;   /* sr->all: not yet freed */
    struct rcmd *tprev, *tnext; /* sr's deadline queue, while unanswered */
    int in_tmo;
    int kind;
    int step;                   /* enum hs_step or enum del_step */
    int hi_pending;             /* hiredis owes us a callback */
    int answered;               /* the caller has had its answer */
    int retried;                /* EVALSHA -> EVAL once on NOSCRIPT */
    int with_ttl;               /* peek: the life too (the script) */
    uint64_t deadline;
    store_get_cb *get_cb;
    store_count_cb *count_cb;
    store_list_cb *list_cb;
    void *arg;
    uint64_t ttl_ms, at_ttl_ms;
    long long at, by;           /* incr */
    long long removed;          /* del: total so far */
    char cursor[24];            /* del: SCAN cursor (<= 20 digits) */
    char *pattern;              /* del: escaped SCAN pattern */
    size_t plen;
    void *args;                 /* merge: its words (store_redis_merge.c) */
    size_t klen;
    char key[];
};

struct sr_resolve {
    uv_getaddrinfo_t req;
    struct store_redis *sr;     /* NULL once given up */
    int port;
};

struct store_redis {
    struct store base;
    uv_loop_t *loop;
    struct store *fallback;

    struct sr_addr master;      /* [redis] address (unused with sentinels) */
    struct sr_addr *sentinels;
    size_t nsentinels;
    char *master_name;
    char *password;
    unsigned db;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;

    int state;
    int closing;
    redisAsyncContext *ac;      /* the data connection */
    redisAsyncContext *lac;     /* freed, lingering: waits for its writes */
    size_t linger_out;          /* writes on lac not answered yet */
    redisAsyncContext *sac;     /* the sentinel being asked */
    struct sr_resolve *resolving;
    size_t sentinel_idx;
    char cur[SR_HOST_MAX + 16]; /* where we connect(ed), for the log */
    char reason[320];
    int ever_up;
    int down_logged;
    uint64_t backoff_ms;
    uint64_t jitter;            /* xorshift state of the retry jitter */
    int served;                 /* a command got a reply on this connection */
    int flapping;               /* the last one was lost before serving */
    uint64_t up_logged_ms, down_logged_ms;  /* last up/down line */
    unsigned long flaps_unlogged;           /* up/down lines not logged */
    unsigned streak;            /* timeouts in a row */
    size_t inflight;            /* commands in the deadline queue */
    char incr_sha[41], peek_sha[41], merge_sha[41];
    char rank_key[CONFIG_PREFIX_MAX + 16];  /* PREFIX "offenders" */
    size_t rank_klen;

    struct rcmd *all;
    struct rcmd *tmo_head, *tmo_tail;

    /* reads waiting for the end of this loop turn (see sr_batch_add) */
    struct rcmd *batch[SR_BATCH_MAX];
    size_t nbatch;
    const char *batch_argv[SR_BATCH_MAX + 1];
    size_t batch_lens[SR_BATCH_MAX + 1];
    uv_check_t batch_check;

    uv_timer_t tmo_timer, conn_timer, retry_timer, health_timer;
    int handles_open;

    struct log_limiter err_rl, tmo_rl;
};

/* sr_ip_literal - 1 if host is a numeric IPv4 or IPv6 address */
static inline int sr_ip_literal(const char *host)
{
    int family;
    uint8_t addr[16];
    return addr_parse_ip(host, &family, addr) == 0;
}

/* The Lua scripts (store_redis.c, store_redis_merge.c), loaded by the
 * handshake. */
extern const char sr_incr_lua[];
extern const char sr_peek_lua[];
extern const char sr_merge_lua[];

/* store_redis_cmd.c: a command's life (see LIFETIME OF A COMMAND there) */
struct rcmd *sr_cmd_new(struct store_redis *sr, int kind, const char *key, size_t klen);
void sr_cmd_release(struct rcmd *c);
int sr_cmd_send(struct store_redis *sr, struct rcmd *c, int argc,
                const char **argv, const size_t *lens);
/* sr_batch_add - a read (get, plain peek) for this loop turn's MGET */
void sr_batch_add(struct store_redis *sr, struct rcmd *c);
/* sr_script_send - incr, or peek with its life: EVALSHA (EVAL: use_eval) */
int sr_script_send(struct store_redis *sr, struct rcmd *c, int use_eval);
/* sr_scan_send - del of "prefix*": the next SCAN from c->cursor */
int sr_scan_send(struct store_redis *sr, struct rcmd *c);
void sr_cmd_fail(struct rcmd *c);
void sr_answer_get(struct rcmd *c, int status, const char *val, size_t len);
/* sr_cmd_answered - c needs no answer any more: off the deadline queue */
void sr_cmd_answered(struct rcmd *c);

/* store_redis.c: the store ops' checks and the store's handles */
int sr_usable(const struct store_redis *sr, size_t klen);
/* sr_handle_closed - close callback of the store's handles: the last one
 * frees the struct */
void sr_handle_closed(uv_handle_t *h);
/* sr_is_write - a command kind that changes what Redis holds */
int sr_is_write(int kind);

/* store_redis_merge.c: the merge op */
void sr_merge(struct store *s, const struct store_merge *m, store_list_cb *cb,
              void *arg);
int sr_merge_send(struct store_redis *sr, struct rcmd *c, int use_eval);
int sr_merge_reply(struct rcmd *c, const redisReply *r);

/* store_redis_fleet.c: rosters and the offenders index (EVAL: rare calls,
 * so no script is loaded by the handshake) */
void sr_roster_put(struct store *s, const char *key, size_t klen,
                   const char *member, size_t mlen, const char *val,
                   size_t vlen, uint64_t keep_ms);
void sr_roster_get(struct store *s, const char *key, size_t klen,
                   store_list_cb *cb, void *arg);
void sr_ranked(struct store *s, unsigned n, store_list_cb *cb, void *arg);
int sr_list_reply(struct rcmd *c, const redisReply *r);

/* redis_conn.c: the connection's life */
void rconn_start(struct store_redis *sr);
void rconn_lost(struct store_redis *sr, const char *reason, int do_free);
void rconn_sentinel_drop(struct store_redis *sr);
/* rconn_linger - the store is freed with writes (nwrites) out on ac: keep
 * ac until their replies or STORE_LINGER_MS, then close it (conn_timer
 * stays open meanwhile and is closed last).  rconn_linger_answered: one of
 * those writes got its reply. */
void rconn_linger(struct store_redis *sr, redisAsyncContext *ac, size_t nwrites);
void rconn_linger_answered(struct store_redis *sr);

#endif
