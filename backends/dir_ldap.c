/*
 * dir_ldap - the LDAP directory: a pool of asynchronous libldap handles
 *
 * See dir_ldap.h for what it does.  How:
 *
 * A connection is DOWN (its retry timer pending), CONNECTING (a thread
 * pool job owns its LDAP handle: connect, StartTLS, bind) or UP (the loop
 * owns the handle and a uv_poll watches its descriptor).  The handle is
 * only ever touched by one thread at a time: the job until its after-work
 * callback, then the loop.
 *
 * A query is on exactly one list: the wait queue (q->conn == NULL) or its
 * connection's in-flight list.  It is answered exactly once, by
 * query_done(), which unlinks it, stops its timer and frees it when the
 * timer handle has closed.
 *
 * directory_free() answers every query DIR_TEMPFAIL, closes the handles and
 * lets the last close callback (or the last pool job) free the struct;
 * dl->pending counts what is still open.  Callbacks may re-enter lookup()
 * or free(): code that calls back re-checks the connection afterwards
 * (conn_alive()).
 */

#include "dir_ldap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lber.h>
#include <ldap.h>

#include "ldap_filter.h"
#include "../policyd/log.h"
#include "../policyd/stats.h"
#include "../policyd/util.h"

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
    struct log_limiter rl_query;
    struct log_limiter rl_drop;
};

static void conn_schedule(struct ldconn *c, uint64_t delay_ms);
static void dispatch(struct dir_ldap *dl);

/* --- small helpers ---------------------------------------------------- */

static void ms_to_tv(uint64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t) (ms / 1000);
    tv->tv_usec = (suseconds_t) (ms % 1000) * 1000;
}

static void ql_append(struct qlist *l, struct query *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->n++;
}

static void ql_remove(struct qlist *l, struct query *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    q->prev = q->next = NULL;
    l->n--;
}

static void dl_maybe_free(struct dir_ldap *dl)
{
    if (!dl->closing || dl->pending > 0)
        return;
    for (size_t i = 0; i < dl->nuris; i++)
        free(dl->uris[i]);
    free(dl->uris);
    free(dl->bind_dn);
    if (dl->bind_pw) {
        memset(dl->bind_pw, 0, strlen(dl->bind_pw));
        free(dl->bind_pw);
    }
    free(dl->search_base);
    free(dl->filter);
    free(dl->tls_ca);
    free(dl->conns);
    free(dl->uri_err);
    free(dl);
}

/* note_failure - log a URI's failure once per change of reason, not per
 * attempt: a wrong password would otherwise fill the log */
static void note_failure(struct dir_ldap *dl, size_t uri_idx, const char *what)
{
    char *last = dl->uri_err[uri_idx];

    if (strcmp(last, what) == 0) {
        log_debug("ldap: %s", what);
        return;
    }
    snprintf(last, sizeof(dl->uri_err[0]), "%s", what);
    log_err("ldap: %s (retrying; lookups answer tempfail while no "
            "connection is up)", what);
}

static void note_success(struct dir_ldap *dl, struct ldconn *c)
{
    char *last = dl->uri_err[c->uri_idx];

    if (last[0] || dl->up == 1)
        log_info("ldap: connected to %s%s (%u of %u connections up)",
                 dl->uris[c->uri_idx], dl->starttls ? " with StartTLS" : "",
                 dl->up, dl->nconn);
    last[0] = 0;
}

/* --- queries ---------------------------------------------------------- */

static void query_closed(uv_handle_t *h)
{
    struct query *q = h->data;
    struct dir_ldap *dl = q->dl;

    free(q->filter);
    free(q);
    dl->pending--;
    dl_maybe_free(dl);
}

/* query_done - unlink q, answer it, free it later; q is gone afterwards */
static void query_done(struct query *q, enum dir_status st)
{
    directory_cb *cb = q->cb;
    void *arg = q->arg;

    if (q->conn)
        ql_remove(&q->conn->inflight, q);
    else
        ql_remove(&q->dl->queue, q);
    q->conn = NULL;
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *) &q->timer, query_closed);
    cb(arg, st);
}

/* fail_list - answer every query of l DIR_TEMPFAIL.  Callbacks may start
 * new lookups, which may land on lists again: detach the whole list first. */
static void fail_list(struct qlist *l)
{
    struct query *q = l->head;

    l->head = l->tail = NULL;
    l->n = 0;
    while (q) {
        struct query *next = q->next;
        directory_cb *cb = q->cb;
        void *arg = q->arg;

        q->prev = q->next = NULL;
        q->conn = NULL;
        uv_timer_stop(&q->timer);
        uv_close((uv_handle_t *) &q->timer, query_closed);
        cb(arg, DIR_TEMPFAIL);
        q = next;
    }
}

/* --- connections ------------------------------------------------------ */

static int conn_alive(const struct ldconn *c, unsigned gen)
{
    return !c->dl->closing && c->state == CONN_UP && c->gen == gen;
}

static void poll_closed(uv_handle_t *h)
{
    struct ldconn *c = h->data;
    struct dir_ldap *dl = c->dl;

    free(h);
    dl->pending--;
    dl_maybe_free(dl);
}

/* conn_drop - close an UP connection, fail its queries, plan a reconnect */
static void conn_drop(struct ldconn *c, const char *why)
{
    struct dir_ldap *dl = c->dl;
    struct qlist lost;

    if (c->state != CONN_UP)
        return;
    c->state = CONN_DOWN;
    c->gen++;
    dl->up--;
    uv_close((uv_handle_t *) c->poll, poll_closed);
    c->poll = NULL;
    ldap_unbind_ext(c->ld, NULL, NULL);
    c->ld = NULL;
    if (dl->closing)
        log_debug("ldap: closing connection %u to %s", c->idx,
                  dl->uris[c->uri_idx]);
    else
        log_warn_rl(&dl->rl_drop, "ldap: dropped connection %u to %s: %s",
                    c->idx, dl->uris[c->uri_idx], why);
    lost = c->inflight;
    c->inflight.head = c->inflight.tail = NULL;
    c->inflight.n = 0;
    if (!dl->closing) {
        c->uri_idx = 0;
        c->fails_in_cycle = 0;
        conn_schedule(c, c->backoff_ms);
    }
    fail_list(&lost);
    /* nobody left to serve the queue: answer it now rather than at timeout */
    if (!dl->closing && dl->up == 0)
        fail_list(&dl->queue);
}

/* handle_msg - one message from ldap_result; msg is freed here */
static void handle_msg(struct ldconn *c, LDAPMessage *msg)
{
    struct dir_ldap *dl = c->dl;
    int msgid = ldap_msgid(msg);
    int type = ldap_msgtype(msg);
    struct query *q;
    int err = LDAP_OTHER;
    char *errmsg = NULL;
    enum dir_status st;

    for (q = c->inflight.head; q; q = q->next)
        if (q->msgid == msgid)
            break;
    if (!q || type == LDAP_RES_SEARCH_REFERENCE) {
        ldap_msgfree(msg);          /* abandoned earlier, or a referral */
        return;
    }
    if (type == LDAP_RES_SEARCH_ENTRY) {
        q->entries++;
        ldap_msgfree(msg);
        return;
    }
    if (type != LDAP_RES_SEARCH_RESULT) {
        ldap_msgfree(msg);
        return;
    }
    if (ldap_parse_result(c->ld, msg, &err, NULL, &errmsg, NULL, NULL, 1)
        != LDAP_SUCCESS)
        err = LDAP_OTHER;
    if (err == LDAP_SUCCESS)
        st = q->entries > 0 ? DIR_FOUND : DIR_NOTFOUND;
    else if (err == LDAP_SIZELIMIT_EXCEEDED)
        st = DIR_FOUND;             /* more than one entry: it exists */
    else {
        /* a wrong base (noSuchObject) too: tempfail queues mail, a
         * "not found" would bounce it */
        st = DIR_TEMPFAIL;
        log_warn_rl(&dl->rl_query, "ldap: search %s in %s: %s (%d)%s%s",
                    q->filter, dl->search_base, ldap_err2string(err), err,
                    errmsg && *errmsg ? ": " : "", errmsg ? errmsg : "");
    }
    if (errmsg)
        ldap_memfree(errmsg);
    query_done(q, st);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct ldconn *c = h->data;
    unsigned gen = c->gen;

    (void) events;
    if (status < 0) {
        conn_drop(c, uv_strerror(status));
        return;
    }
    while (conn_alive(c, gen)) {
        struct timeval zero = { 0, 0 };
        LDAPMessage *msg = NULL;
        int rc = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);

        if (rc == 0)
            break;
        if (rc < 0) {
            int lerr = LDAP_SERVER_DOWN;

            ldap_get_option(c->ld, LDAP_OPT_RESULT_CODE, &lerr);
            conn_drop(c, ldap_err2string(lerr));
            return;
        }
        c->last_rx_us = util_now_us();
        handle_msg(c, msg);
    }
    if (conn_alive(c, gen))
        dispatch(c->dl);
}

/* await_result - wait (in the worker thread) for the answer to msgid and
 * return its result code: LDAP_TIMEOUT, the connection's error, or the
 * server's code. */
static int await_result(LDAP *ld, int msgid, struct timeval *tv)
{
    LDAPMessage *res = NULL;
    int err = LDAP_SERVER_DOWN;
    int rc = ldap_result(ld, msgid, LDAP_MSG_ALL, tv, &res);

    if (rc <= 0) {
        ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
        return rc == 0 ? LDAP_TIMEOUT : err;
    }
    if (ldap_parse_result(ld, res, &err, NULL, NULL, NULL, NULL, 1) != LDAP_SUCCESS)
        return LDAP_OTHER;
    return err;
}

/* job_bind - in the thread pool: connect, StartTLS, bind, all bounded */
static void job_bind(uv_work_t *w)
{
    struct ldconn *c = w->data;
    struct dir_ldap *dl = c->dl;
    LDAP *ld = c->ld;
    struct timeval tv;
    struct berval cred;
    int msgid, rc, err = LDAP_OTHER;
    const char *stage = "connect";

    ms_to_tv(dl->timeout_ms, &tv);
    c->job_rc = -1;
    c->job_fd = -1;
    c->job_err[0] = 0;

    if (dl->starttls && strncasecmp(dl->uris[c->uri_idx], "ldaps:", 6) != 0) {
        stage = "StartTLS";
        rc = ldap_start_tls(ld, NULL, NULL, &msgid);
        if (rc != LDAP_SUCCESS) {
            err = rc;
            goto fail;
        }
        err = await_result(ld, msgid, &tv);
        if (err != LDAP_SUCCESS)
            goto fail;
        stage = "TLS handshake";
        rc = ldap_install_tls(ld);
        if (rc != LDAP_SUCCESS) {
            err = rc;
            goto fail;
        }
    }

    stage = dl->bind_dn ? "bind" : "anonymous bind";
    cred.bv_val = dl->bind_pw ? dl->bind_pw : (char *) "";
    cred.bv_len = strlen(cred.bv_val);
    rc = ldap_sasl_bind(ld, dl->bind_dn ? dl->bind_dn : "", LDAP_SASL_SIMPLE,
                        &cred, NULL, NULL, &msgid);
    if (rc != LDAP_SUCCESS) {
        err = rc;
        goto fail;
    }
    err = await_result(ld, msgid, &tv);
    if (err != LDAP_SUCCESS)
        goto fail;
    if (ldap_get_option(ld, LDAP_OPT_DESC, &c->job_fd) != LDAP_OPT_SUCCESS
        || c->job_fd < 0) {
        err = LDAP_LOCAL_ERROR;
        goto fail;
    }
    c->job_rc = 0;
    return;

fail:
    {
        char *diag = NULL;

        if ((err == LDAP_SERVER_DOWN || err == LDAP_CONNECT_ERROR)
            && strcmp(stage, "TLS handshake") != 0)
            stage = "connect";
        /* libldap's detail, e.g. "TLS: peer cert untrusted or revoked" */
        ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
        if (diag && strncmp(diag, "(unknown", 8) == 0)
            diag[0] = 0;
        snprintf(c->job_err, sizeof(c->job_err), "%s %s%s%s: %s (%d)%s%.100s",
                 dl->uris[c->uri_idx], stage,
                 dl->bind_dn && strstr(stage, "bind") ? " as " : "",
                 dl->bind_dn && strstr(stage, "bind") ? dl->bind_dn : "",
                 err == LDAP_TIMEOUT ? "no answer within timeout"
                                     : ldap_err2string(err), err,
                 diag && *diag ? ": " : "", diag ? diag : "");
        if (diag)
            ldap_memfree(diag);
    }
}

static void job_done(uv_work_t *w, int status)
{
    struct ldconn *c = w->data;
    struct dir_ldap *dl = c->dl;

    dl->pending--;
    if (dl->closing || status != 0 || c->job_rc != 0) {
        ldap_unbind_ext(c->ld, NULL, NULL);
        c->ld = NULL;
        c->state = CONN_DOWN;
        if (dl->closing) {
            dl_maybe_free(dl);
            return;
        }
        dl->starting = 0;
        note_failure(dl, c->uri_idx,
                     c->job_err[0] ? c->job_err : "connection job cancelled");
        c->uri_idx = (c->uri_idx + 1) % dl->nuris;
        if (++c->fails_in_cycle < dl->nuris) {
            conn_schedule(c, 0);        /* next URI at once */
        } else {
            c->fails_in_cycle = 0;
            conn_schedule(c, c->backoff_ms);
            c->backoff_ms *= 2;
            if (c->backoff_ms > DIR_LDAP_BACKOFF_MAX_MS)
                c->backoff_ms = DIR_LDAP_BACKOFF_MAX_MS;
        }
        if (dl->up == 0)
            fail_list(&dl->queue);
        return;
    }

    c->poll = xmalloc(sizeof(*c->poll));
    if (uv_poll_init(dl->loop, c->poll, c->job_fd) != 0) {
        free(c->poll);
        c->poll = NULL;
        ldap_unbind_ext(c->ld, NULL, NULL);
        c->ld = NULL;
        c->state = CONN_DOWN;
        note_failure(dl, c->uri_idx, "cannot watch the LDAP socket");
        conn_schedule(c, c->backoff_ms);
        return;
    }
    c->poll->data = c;
    dl->pending++;
    uv_poll_start(c->poll, UV_READABLE, on_readable);
    c->state = CONN_UP;
    c->last_rx_us = util_now_us();
    c->fails_in_cycle = 0;
    c->backoff_ms = DIR_LDAP_BACKOFF_MIN_MS;
    dl->up++;
    dl->starting = 0;
    note_success(dl, c);
    dispatch(dl);
}

/* conn_start - make a handle for the current URI and bind it in the pool */
static void conn_start(struct ldconn *c)
{
    struct dir_ldap *dl = c->dl;
    const char *uri = dl->uris[c->uri_idx];
    struct timeval tv;
    int v3 = LDAP_VERSION3, rc;
    char why[300];

    rc = ldap_initialize(&c->ld, uri);
    if (rc != LDAP_SUCCESS) {
        snprintf(why, sizeof(why), "%s: %s", uri, ldap_err2string(rc));
        goto fail;
    }
    ms_to_tv(dl->timeout_ms, &tv);
    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(c->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(c->ld, LDAP_OPT_TIMEOUT, &tv);
    if (dl->starttls || strncasecmp(uri, "ldaps:", 6) == 0) {
        int demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;

        if (dl->tls_ca)
            ldap_set_option(c->ld, LDAP_OPT_X_TLS_CACERTFILE, dl->tls_ca);
        ldap_set_option(c->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
        rc = ldap_set_option(c->ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
        if (rc != LDAP_OPT_SUCCESS) {
            snprintf(why, sizeof(why), "%s: TLS set-up failed (tls_ca_file %s)",
                     uri, dl->tls_ca ? dl->tls_ca : "default");
            goto fail;
        }
    }
    c->state = CONN_CONNECTING;
    c->work.data = c;
    rc = uv_queue_work(dl->loop, &c->work, job_bind, job_done);
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s: %s", uri, uv_strerror(rc));
        goto fail;
    }
    dl->pending++;
    return;

fail:
    if (c->ld)
        ldap_unbind_ext(c->ld, NULL, NULL);
    c->ld = NULL;
    c->state = CONN_DOWN;
    dl->starting = 0;
    note_failure(dl, c->uri_idx, why);
    c->uri_idx = (c->uri_idx + 1) % dl->nuris;
    conn_schedule(c, c->backoff_ms);
    c->backoff_ms *= 2;
    if (c->backoff_ms > DIR_LDAP_BACKOFF_MAX_MS)
        c->backoff_ms = DIR_LDAP_BACKOFF_MAX_MS;
}

static void on_retry(uv_timer_t *t)
{
    struct ldconn *c = t->data;

    if (!c->dl->closing && c->state == CONN_DOWN)
        conn_start(c);
}

static void conn_schedule(struct ldconn *c, uint64_t delay_ms)
{
    uv_timer_start(&c->retry, on_retry, delay_ms, 0);
}

static void retry_closed(uv_handle_t *h)
{
    struct ldconn *c = h->data;
    struct dir_ldap *dl = c->dl;

    dl->pending--;
    dl_maybe_free(dl);
}

/* --- searching -------------------------------------------------------- */

static void on_query_timeout(uv_timer_t *t)
{
    struct query *q = t->data;
    struct ldconn *c = q->conn;
    int suspect;

    stats.dir_timeouts++;
    if (!c) {
        query_done(q, DIR_TEMPFAIL);
        return;
    }
    ldap_abandon_ext(c->ld, q->msgid, NULL, NULL);
    /* nothing at all came back since this query left: the server is
     * stopped or frozen; waiting on this connection only adds timeouts */
    suspect = c->last_rx_us <= q->sent_us;
    log_warn_rl(&c->dl->rl_query, "ldap: no answer within %llu ms for %s "
                "on %s", (unsigned long long) c->dl->timeout_ms, q->filter,
                c->dl->uris[c->uri_idx]);
    query_done(q, DIR_TEMPFAIL);
    if (suspect && c->state == CONN_UP)
        conn_drop(c, "server not answering");
}

static struct ldconn *pick_conn(struct dir_ldap *dl)
{
    struct ldconn *best = NULL;

    for (unsigned i = 0; i < dl->nconn; i++) {
        struct ldconn *c = &dl->conns[i];

        if (c->state != CONN_UP || c->inflight.n >= dl->max_inflight)
            continue;
        if (!best || c->inflight.n < best->inflight.n)
            best = c;
    }
    return best;
}

/* send_query - start q's search on c; q is not on any list yet */
static void send_query(struct ldconn *c, struct query *q)
{
    struct dir_ldap *dl = c->dl;
    static char one_one[] = "1.1";      /* no attributes, just the entry */
    char *attrs[] = { one_one, NULL };
    int msgid = -1;
    int rc = ldap_search_ext(c->ld, dl->search_base, dl->scope, q->filter,
                             attrs, 0, NULL, NULL, NULL, 1, &msgid);

    q->conn = c;
    ql_append(&c->inflight, q);
    if (rc != LDAP_SUCCESS) {
        log_warn_rl(&dl->rl_query, "ldap: search %s: %s", q->filter,
                    ldap_err2string(rc));
        query_done(q, DIR_TEMPFAIL);
        /* the handle may have lost its connection: never let libldap
         * reconnect by itself (that would block the loop) */
        if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)
            conn_drop(c, ldap_err2string(rc));
        return;
    }
    q->msgid = msgid;
    q->sent_us = util_now_us();
}

/* dispatch - move waiting queries onto connections with free slots */
static void dispatch(struct dir_ldap *dl)
{
    while (dl->queue.head && !dl->closing) {
        struct ldconn *c = pick_conn(dl);
        struct query *q;

        if (!c)
            return;
        q = dl->queue.head;
        ql_remove(&dl->queue, q);
        send_query(c, q);
    }
}

/* --- the directory ops ------------------------------------------------ */

static void ldap_lookup(struct directory *d, const struct address *a,
                        directory_cb *cb, void *arg)
{
    struct dir_ldap *dl = (struct dir_ldap *) d;
    char filter[LDAP_FILTER_MAX];
    struct ldconn *c;
    struct query *q;
    int n;

    if (dl->closing || (dl->up == 0 && !dl->starting)) {
        cb(arg, DIR_TEMPFAIL);
        return;
    }
    n = ldap_filter_expand(dl->filter, a, filter, sizeof(filter));
    if (n < 0) {
        log_warn_rl(&dl->rl_query, "ldap: filter for %.64s: %s", a->full,
                    ldap_filter_strerror(n));
        cb(arg, DIR_TEMPFAIL);
        return;
    }
    c = pick_conn(dl);
    if (!c && dl->queue.n >= DIR_LDAP_QUEUE_MAX) {
        log_warn_rl(&dl->rl_query, "ldap: %zu queries waiting: answering "
                    "tempfail", dl->queue.n);
        cb(arg, DIR_TEMPFAIL);
        return;
    }
    q = xcalloc(1, sizeof(*q));
    q->dl = dl;
    q->filter = xstrndup(filter, (size_t) n);
    q->cb = cb;
    q->arg = arg;
    uv_timer_init(dl->loop, &q->timer);
    q->timer.data = q;
    dl->pending++;
    uv_timer_start(&q->timer, on_query_timeout, dl->timeout_ms, 0);
    if (c) {
        send_query(c, q);
    } else {
        q->conn = NULL;
        ql_append(&dl->queue, q);
    }
}

/* check_search - the -T check on a handle of its own, blocking */
static int check_one(struct dir_ldap *dl, const char *uri,
                     const struct address *a, struct sbuf *out)
{
    LDAP *ld = NULL;
    struct timeval tv;
    struct berval cred;
    LDAPMessage *res = NULL;
    static char one_one[] = "1.1";
    char *attrs[] = { one_one, NULL };
    char filter[LDAP_FILTER_MAX];
    int v3 = LDAP_VERSION3, rc, n, entries, ret = -1;
    uint64_t t0;

    ms_to_tv(dl->timeout_ms, &tv);
    rc = ldap_initialize(&ld, uri);
    if (rc != LDAP_SUCCESS) {
        sbuf_printf(out, "%s: %s\n", uri, ldap_err2string(rc));
        return -1;
    }
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
    if (dl->starttls || strncasecmp(uri, "ldaps:", 6) == 0) {
        int demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;

        if (dl->tls_ca)
            ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, dl->tls_ca);
        ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
        ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
    }
    if (dl->starttls && strncasecmp(uri, "ldaps:", 6) != 0) {
        rc = ldap_start_tls_s(ld, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            sbuf_printf(out, "%s: StartTLS: %s\n", uri, ldap_err2string(rc));
            goto out;
        }
    }
    cred.bv_val = dl->bind_pw ? dl->bind_pw : (char *) "";
    cred.bv_len = strlen(cred.bv_val);
    rc = ldap_sasl_bind_s(ld, dl->bind_dn ? dl->bind_dn : "", LDAP_SASL_SIMPLE,
                          &cred, NULL, NULL, NULL);
    if (rc != LDAP_SUCCESS) {
        sbuf_printf(out, "%s: bind as %s: %s\n", uri,
                    dl->bind_dn ? dl->bind_dn : "(anonymous)",
                    ldap_err2string(rc));
        goto out;
    }
    n = ldap_filter_expand(dl->filter, a, filter, sizeof(filter));
    if (n < 0) {
        sbuf_printf(out, "%s: filter: %s\n", uri, ldap_filter_strerror(n));
        goto out;
    }
    t0 = util_now_us();
    rc = ldap_search_ext_s(ld, dl->search_base, dl->scope, filter, attrs, 0,
                           NULL, NULL, &tv, 1, &res);
    entries = res ? ldap_count_entries(ld, res) : 0;
    if (res)
        ldap_msgfree(res);
    if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED) {
        sbuf_printf(out, "%s: bound as %s; search base \"%s\" filter %s: "
                    "%s (%.1f ms)\n", uri,
                    dl->bind_dn ? dl->bind_dn : "(anonymous)",
                    dl->search_base, filter,
                    (entries > 0 || rc == LDAP_SIZELIMIT_EXCEEDED)
                        ? "found" : "not found",
                    (double) (util_now_us() - t0) / 1000.0);
        ret = 0;
    } else {
        sbuf_printf(out, "%s: search base \"%s\" filter %s: %s\n", uri,
                    dl->search_base, filter, ldap_err2string(rc));
    }
out:
    ldap_unbind_ext(ld, NULL, NULL);
    return ret;
}

static int ldap_check(struct directory *d, const struct address *a,
                      char *msg, size_t msglen)
{
    struct dir_ldap *dl = (struct dir_ldap *) d;
    struct sbuf out;
    int ok = 0;

    sbuf_init(&out);
    /* every URI, so the operator learns about a broken fallback too */
    for (size_t i = 0; i < dl->nuris; i++)
        if (check_one(dl, dl->uris[i], a, &out) == 0)
            ok = 1;
    if (out.len > 0 && out.data[out.len - 1] == '\n')
        out.data[--out.len] = 0;
    snprintf(msg, msglen, "%s", out.data ? out.data : "");
    sbuf_free(&out);
    return ok ? 0 : -1;
}

static void ldap_dir_free(struct directory *d)
{
    struct dir_ldap *dl = (struct dir_ldap *) d;

    if (dl->closing)
        return;
    dl->closing = 1;
    for (unsigned i = 0; i < dl->nconn; i++) {
        struct ldconn *c = &dl->conns[i];

        uv_timer_stop(&c->retry);
        uv_close((uv_handle_t *) &c->retry, retry_closed);
        if (c->state == CONN_UP)
            conn_drop(c, "shutting down");  /* fails its queries */
        /* CONNECTING: job_done unbinds the handle */
    }
    fail_list(&dl->queue);
    dl_maybe_free(dl);
}

static const struct directory_ops ldap_ops = {
    "ldap", ldap_lookup, ldap_check, ldap_dir_free,
};

struct directory *dir_ldap_new(uv_loop_t *loop, const struct config *cfg,
                               char *err, size_t errlen)
{
    struct dir_ldap *dl;
    int rc, v3 = LDAP_VERSION3;

    if (cfg->ldap.uri.n == 0) {
        snprintf(err, errlen, "[ldap] uri: at least one URI is needed");
        return NULL;
    }
    for (size_t i = 0; i < cfg->ldap.uri.n; i++) {
        const char *u = cfg->ldap.uri.v[i];

        if (strncasecmp(u, "ldap://", 7) != 0 && strncasecmp(u, "ldaps://", 8) != 0
            && strncasecmp(u, "ldapi://", 8) != 0) {
            snprintf(err, errlen, "[ldap] uri: %s: not an ldap://, ldaps:// "
                     "or ldapi:// URI", u);
            return NULL;
        }
        if (!ldap_is_ldap_url(u) && strncasecmp(u, "ldapi://", 8) != 0) {
            snprintf(err, errlen, "[ldap] uri: %s: does not parse", u);
            return NULL;
        }
    }
    if (!cfg->ldap.base) {
        snprintf(err, errlen, "[ldap] base: not set");
        return NULL;
    }
    if (!cfg->ldap.filter) {
        snprintf(err, errlen, "[ldap] filter: not set");
        return NULL;
    }
    rc = ldap_filter_check(cfg->ldap.filter);
    if (rc < 0) {
        snprintf(err, errlen, "[ldap] filter: %s: %s", cfg->ldap.filter,
                 ldap_filter_strerror(rc));
        return NULL;
    }
    if (cfg->ldap.timeout_ms == 0) {
        snprintf(err, errlen, "[ldap] timeout: must be more than 0");
        return NULL;
    }
    /* libldap's global defaults, set up once here on the loop thread
     * rather than racily by the first pool job */
    ldap_set_option(NULL, LDAP_OPT_PROTOCOL_VERSION, &v3);

    dl = xcalloc(1, sizeof(*dl));
    dl->base.ops = &ldap_ops;
    dl->loop = loop;
    dl->nuris = cfg->ldap.uri.n;
    dl->uris = xcalloc(dl->nuris, sizeof(*dl->uris));
    dl->uri_err = xcalloc(dl->nuris, sizeof(*dl->uri_err));
    for (size_t i = 0; i < dl->nuris; i++)
        dl->uris[i] = xstrdup(cfg->ldap.uri.v[i]);
    dl->bind_dn = cfg->ldap.bind_dn && *cfg->ldap.bind_dn
                  ? xstrdup(cfg->ldap.bind_dn) : NULL;
    dl->bind_pw = cfg->ldap.bind_pw ? xstrdup(cfg->ldap.bind_pw) : NULL;
    dl->search_base = xstrdup(cfg->ldap.base);
    dl->filter = xstrdup(cfg->ldap.filter);
    dl->tls_ca = cfg->ldap.tls_ca_file ? xstrdup(cfg->ldap.tls_ca_file) : NULL;
    dl->scope = cfg->ldap.scope == SCOPE_BASE ? LDAP_SCOPE_BASE
                : cfg->ldap.scope == SCOPE_ONE ? LDAP_SCOPE_ONELEVEL
                : LDAP_SCOPE_SUBTREE;
    dl->starttls = cfg->ldap.starttls;
    dl->timeout_ms = cfg->ldap.timeout_ms;
    dl->max_inflight = cfg->ldap.max_inflight ? cfg->ldap.max_inflight : 64;
    dl->nconn = cfg->ldap.connections ? cfg->ldap.connections : 1;
    dl->starting = 1;
    dl->rl_query = (struct log_limiter) LOG_LIMITER_INIT(10000);
    dl->rl_drop = (struct log_limiter) LOG_LIMITER_INIT(10000);
    dl->conns = xcalloc(dl->nconn, sizeof(*dl->conns));
    for (unsigned i = 0; i < dl->nconn; i++) {
        struct ldconn *c = &dl->conns[i];

        c->dl = dl;
        c->idx = i;
        c->state = CONN_DOWN;
        c->backoff_ms = DIR_LDAP_BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->retry);
        c->retry.data = c;
        dl->pending++;
        /* start when the loop runs, not now: `policyd -t` builds the
         * runtime without running the loop and must not connect */
        conn_schedule(c, 0);
    }
    (void) err;
    return &dl->base;
}
