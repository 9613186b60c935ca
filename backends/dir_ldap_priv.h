#ifndef BACKENDS_DIR_LDAP_PRIV_H
#define BACKENDS_DIR_LDAP_PRIV_H

/*
 * dir_ldap_priv - what dir_ldap.c (queries, searches, the directory ops)
 * and ldap_conn.c (connecting, binding, watching and dropping the pool's
 * connections) share.  Not for any other module: the rest of policyd sees
 * only dir_ldap.h.
 *
 * A connection is DOWN (its retry timer pending), CONNECTING (a thread
 * pool job owns its LDAP handle: connect, StartTLS, bind) or UP (the loop
 * owns the handle and a uv_poll watches its descriptor).  The handle is
 * only ever touched by one thread at a time: the job until its after-work
 * callback, then the loop.
 *
 * A query is on exactly one list: the wait queue (q->conn == NULL) or its
 * connection's in-flight list.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <uv.h>

#include <ldap.h>

#include "../policyd/log.h"
#include "dir_ldap.h"

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };

struct dir_ldap;
struct ldconn;

struct query {
    struct dir_ldap *dl;
    struct ldconn *conn;        /* NULL while waiting in the queue */
    struct query *prev, *next;
    uv_timer_t timer;
    int msgid;
    int entries;                /* entries seen for this search */
    int refs;                   /* continuation references seen */
    uint64_t sent_us;
    char *filter;
    directory_cb *cb;
    void *arg;
};

struct qlist {
    struct query *head, *tail;
    size_t n;
};

struct ldconn {
    struct dir_ldap *dl;
    unsigned idx;
    enum conn_state state;
    LDAP *ld;
    uv_poll_t *poll;            /* while UP; freed by its close callback */
    int poll_events;            /* what poll watches now */
    int wblocked;               /* libldap's last write hit EAGAIN: a
                                 * request is partly written */
    unsigned long writes;       /* write calls libldap made */
    uv_timer_t retry;
    uv_work_t work;
    unsigned gen;               /* bumped whenever the connection drops */
    size_t uri_idx;             /* the URI being (or next to be) tried */
    size_t fails_in_cycle;      /* URIs failed since the last success */
    uint64_t backoff_ms;
    uint64_t last_rx_us;        /* last time the server sent anything */
    struct qlist inflight;
    /* the pool job's result */
    int job_rc;                 /* 0 bound, -1 failed */
    int job_fd;
    char job_err[256];
};

struct dir_ldap {
    struct directory base;
    uv_loop_t *loop;
    char **uris;
    size_t nuris;
    char *bind_dn, *bind_pw, *search_base, *filter, *tls_ca;
    int scope;
    int starttls;
    int refs_tempfail;          /* [ldap] referrals = tempfail */
    uint64_t timeout_ms;
    unsigned max_inflight;
    unsigned nconn;
    struct ldconn *conns;
    struct qlist queue;
    unsigned up;                /* connections UP */
    int starting;               /* no connection attempt has finished yet */
    int closing;
    size_t pending;             /* handles and jobs still open */
    char (*uri_err)[256];       /* per URI: last failure logged, or "" */
    char *refs_seen[DIR_LDAP_REFS_MAX]; /* reference URLs logged */
    size_t nrefs_seen;
    struct log_limiter rl_query;
    struct log_limiter rl_drop;
    struct log_limiter rl_stall;
    struct log_limiter rl_refs;
};

static inline void dl_ms_to_tv(uint64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t) (ms / 1000);
    tv->tv_usec = (suseconds_t) (ms % 1000) * 1000;
}

/* dir_ldap.c: queries */
void dl_maybe_free(struct dir_ldap *dl);
void dl_fail_list(struct qlist *l);
void dl_handle_msg(struct ldconn *c, LDAPMessage *msg);
void dl_dispatch(struct dir_ldap *dl);

/* ldap_conn.c: the connections' life */
int ldc_new_handle(struct dir_ldap *dl, const char *uri, LDAP **ldp,
                   char *why, size_t whylen);
void ldc_init(struct dir_ldap *dl, struct ldconn *c, unsigned idx);
void ldc_close(struct ldconn *c);
void ldc_drop(struct ldconn *c, const char *why);
void ldc_after_write(struct ldconn *c);
int ldc_alive(const struct ldconn *c, unsigned gen);

#endif
