/*
 * ldap_conn - the life of dir_ldap's connections
 *
 * ldc_init() plans a connection's first attempt for when the loop runs.
 * An attempt makes a libldap handle for the current URI (ldc_new_handle:
 * version 3, no referral chasing, [ldap] timeout as network and operation
 * timeout, TLS options) and binds it in the libuv thread pool: connect,
 * StartTLS and bind block in libldap, each bounded by [ldap] timeout.
 * Once bound, the loop makes the descriptor non-blocking, slips a small
 * write-watching layer under libldap's socket I/O (see NON-BLOCKING) and
 * watches the descriptor with uv_poll.
 *
 * Failure: a connection that fails moves to the next URI of [ldap] uri at
 * once; when every URI failed it waits (100 ms doubling to 10 s) and
 * starts again from the first.  A lost connection (ldc_drop) fails its
 * queries, and reconnects the same way from the first URI.  Failures are
 * logged when the reason changes, not per attempt or per request.
 *
 * NON-BLOCKING.  What libldap 2.5 (Debian 12, 2.5.13) does on a descriptor
 * with O_NONBLOCK, read in its source (request.c, result.c, abandon.c) and
 * checked against a SIGSTOPped slapd:
 *  - ldap_search_ext() encodes the request and calls ber_flush2(); a write
 *    that hits EAGAIN leaves the rest in the request's BerElement, marks
 *    the request WRITING and the socket for POLLOUT, and still returns
 *    LDAP_SUCCESS with a msgid.  Only one request may be WRITING: the next
 *    ldap_search_ext() first retries that flush and, if it hits EAGAIN
 *    again, returns LDAP_BUSY without sending anything (the caller must
 *    try again later; the msgid it used is simply skipped).
 *  - ldap_result() with a zero timeout polls the descriptor for read and,
 *    while a request is WRITING, for write; when writable it continues the
 *    flush.  So a pending write completes by calling ldap_result() when
 *    the descriptor is writable.  Reads of half a message return
 *    "keep looking", not an error.  Beware: if poll reports an event that
 *    neither the flush nor a read handles, ldap_result() returns -1.
 *  - ldap_abandon_ext() writes its Abandon with a plain ber_flush():
 *    into the middle of a partly written request, or itself half written
 *    on EAGAIN and then forgotten; and a WRITING request it abandons is
 *    freed half sent.  Either corrupts the stream.
 *  - libldap does not say whether a write is pending (no public option).
 *  - LDAP_OPT_CONNECT_ASYNC only concerns connect(), which here runs in
 *    the thread pool anyway.
 *  - slapd itself drops a connection on which thousands of operations are
 *    pipelined while it is stopped ("deferring operation", then
 *    "connection lost"); [ldap] max_inflight keeps us far below that.
 *  - uv_poll_init() itself sets O_NONBLOCK (libuv 1.44, checked), so the
 *    descriptor was non-blocking before this was written down, by
 *    accident: writes never blocked the loop, but a search that met
 *    LDAP_BUSY was answered tempfail at once, a partly written request
 *    was only flushed when something else came to read, and a timeout's
 *    Abandon could land inside it.
 * Hence: the loop never lets libldap block (O_NONBLOCK); the layer under
 * libldap's TCP I/O records whether the last write hit EAGAIN (c->wblocked);
 * while it did, poll watches for write too and ldap_result() finishes the
 * flush, no new search is sent on the connection (queries wait in the
 * queue), no Abandon is sent, and a query timing out drops the connection:
 * a server that stopped reading is given up after [ldap] timeout.  Unbind
 * on a full socket fails at once instead of blocking.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lber.h>

#include "../policyd/util.h"
#include "dir_ldap_priv.h"

static void conn_schedule(struct ldconn *c, uint64_t delay_ms);

/* --- the write-watching I/O layer ------------------------------------- */

static int wl_setup(Sockbuf_IO_Desc *sbiod, void *arg)
{
    sbiod->sbiod_pvt = arg;
    return 0;
}

static int wl_remove(Sockbuf_IO_Desc *sbiod)
{
    (void) sbiod;
    return 0;
}

/* options are for the layers below */
static int wl_ctrl(Sockbuf_IO_Desc *sbiod, int opt, void *arg)
{
    (void) sbiod;
    (void) opt;
    (void) arg;
    return 0;
}

static ber_slen_t wl_read(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
    return LBER_SBIOD_READ_NEXT(sbiod, buf, len);
}

static ber_slen_t wl_write(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
    struct ldconn *c = sbiod->sbiod_pvt;
    ber_slen_t n = LBER_SBIOD_WRITE_NEXT(sbiod, buf, len);

    c->writes++;
    c->wblocked = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    return n;
}

/* the layer below closes the descriptor */
static int wl_close(Sockbuf_IO_Desc *sbiod)
{
    (void) sbiod;
    return 0;
}

static Sockbuf_IO write_watch = {
    wl_setup, wl_remove, wl_ctrl, wl_read, wl_write, wl_close,
};

/* --- logging ---------------------------------------------------------- */

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

/* --- watching an UP connection ---------------------------------------- */

int ldc_alive(const struct ldconn *c, unsigned gen)
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

static void on_io(uv_poll_t *h, int status, int events);

/* ldc_after_write - after anything that may have written on c: watch for
 * write while a request is partly written, for read only otherwise */
void ldc_after_write(struct ldconn *c)
{
    int want = UV_READABLE | (c->wblocked ? UV_WRITABLE : 0);

    if (c->state != CONN_UP || want == c->poll_events)
        return;
    if (c->wblocked)
        log_warn_rl(&c->dl->rl_stall, "ldap: %s is not reading (connection "
                    "%u): searches wait, and are answered tempfail after "
                    "%llu ms", c->dl->uris[c->uri_idx], c->idx,
                    (unsigned long long) c->dl->timeout_ms);
    c->poll_events = want;
    uv_poll_start(c->poll, want, on_io);
}

/* ldc_drop - close an UP connection, fail its queries, plan a reconnect */
void ldc_drop(struct ldconn *c, const char *why)
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
    c->poll_events = 0;
    /* non-blocking: the Unbind is dropped if the socket is full */
    ldap_unbind_ext(c->ld, NULL, NULL);
    c->ld = NULL;
    c->wblocked = 0;
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
    dl_fail_list(&lost);
    /* nobody left to serve the queue: answer it now rather than at timeout */
    if (!dl->closing && dl->up == 0)
        dl_fail_list(&dl->queue);
}

/* on_io - readable: collect answers; writable: ldap_result() finishes the
 * partly written request (see NON-BLOCKING) */
static void on_io(uv_poll_t *h, int status, int events)
{
    struct ldconn *c = h->data;
    unsigned gen = c->gen;
    unsigned long writes = c->writes;

    if (status < 0) {
        ldc_drop(c, uv_strerror(status));
        return;
    }
    while (ldc_alive(c, gen)) {
        struct timeval zero = { 0, 0 };
        LDAPMessage *msg = NULL;
        int rc = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);

        if (rc == 0)
            break;
        if (rc < 0) {
            int lerr = LDAP_SERVER_DOWN;

            ldap_get_option(c->ld, LDAP_OPT_RESULT_CODE, &lerr);
            ldc_drop(c, ldap_err2string(lerr));
            return;
        }
        c->last_rx_us = util_now_us();
        dl_handle_msg(c, msg);
    }
    if (!ldc_alive(c, gen))
        return;
    /* writable, yet libldap had nothing to flush: nothing is pending, and
     * watching for write would spin.  Wrong at worst for one search,
     * whose LDAP_BUSY sets the flag again. */
    if ((events & UV_WRITABLE) && c->wblocked && c->writes == writes)
        c->wblocked = 0;
    ldc_after_write(c);
    if (!c->wblocked)
        dl_dispatch(c->dl);
}

/* --- connecting and binding ------------------------------------------- */

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

    dl_ms_to_tv(dl->timeout_ms, &tv);
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

/* make_nonblocking - O_NONBLOCK on the bound handle's descriptor and the
 * write-watching layer under libldap's socket I/O; 0 or -1 */
static int make_nonblocking(struct ldconn *c)
{
    Sockbuf *sb = NULL;
    int fl;

    if (ldap_get_option(c->ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb)
        return -1;
    ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_NONBLOCK, (void *) 1);
    fl = fcntl(c->job_fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK))
        return -1;
    /* at the provider level, it goes just above the TCP layer and below
     * TLS: it sees what reaches the socket */
    if (ber_sockbuf_add_io(sb, &write_watch, LBER_SBIOD_LEVEL_PROVIDER, c) != 0)
        return -1;
    c->wblocked = 0;
    return 0;
}

static void next_backoff(struct ldconn *c)
{
    c->backoff_ms *= 2;
    if (c->backoff_ms > DIR_LDAP_BACKOFF_MAX_MS)
        c->backoff_ms = DIR_LDAP_BACKOFF_MAX_MS;
}

/* up_failed - the bound handle cannot be used by the loop */
static void up_failed(struct ldconn *c, const char *why)
{
    struct dir_ldap *dl = c->dl;

    ldap_unbind_ext(c->ld, NULL, NULL);
    c->ld = NULL;
    c->state = CONN_DOWN;
    note_failure(dl, c->uri_idx, why);
    conn_schedule(c, c->backoff_ms);
    next_backoff(c);
}

/* job_done - on the loop: the bind job's outcome */
static void job_done(uv_work_t *w, int status)
{
    struct ldconn *c = w->data;
    struct dir_ldap *dl = c->dl;

    dl->pending--;
    if (dl->closing) {
        if (c->ld)
            ldap_unbind_ext(c->ld, NULL, NULL);
        c->ld = NULL;
        c->state = CONN_DOWN;
        dl_maybe_free(dl);
        return;
    }
    if (status != 0 || c->job_rc != 0) {
        ldap_unbind_ext(c->ld, NULL, NULL);
        c->ld = NULL;
        c->state = CONN_DOWN;
        dl->starting = 0;
        note_failure(dl, c->uri_idx,
                     c->job_err[0] ? c->job_err : "connection job cancelled");
        c->uri_idx = (c->uri_idx + 1) % dl->nuris;
        if (++c->fails_in_cycle < dl->nuris) {
            conn_schedule(c, 0);        /* next URI at once */
        } else {
            c->fails_in_cycle = 0;
            conn_schedule(c, c->backoff_ms);
            next_backoff(c);
        }
        if (dl->up == 0)
            dl_fail_list(&dl->queue);
        return;
    }

    if (make_nonblocking(c) < 0) {
        up_failed(c, "cannot make the LDAP socket non-blocking");
        return;
    }
    c->poll = xmalloc(sizeof(*c->poll));
    if (uv_poll_init(dl->loop, c->poll, c->job_fd) != 0) {
        free(c->poll);
        c->poll = NULL;
        up_failed(c, "cannot watch the LDAP socket");
        return;
    }
    c->poll->data = c;
    dl->pending++;
    c->poll_events = UV_READABLE;
    uv_poll_start(c->poll, UV_READABLE, on_io);
    c->state = CONN_UP;
    c->last_rx_us = util_now_us();
    c->fails_in_cycle = 0;
    c->backoff_ms = DIR_LDAP_BACKOFF_MIN_MS;
    dl->up++;
    dl->starting = 0;
    note_success(dl, c);
    dl_dispatch(dl);
}

/* ldc_new_handle - a libldap handle for uri with our options (the pool's
 * and the -T check's); 0, or -1 with why set */
int ldc_new_handle(struct dir_ldap *dl, const char *uri, LDAP **ldp,
                   char *why, size_t whylen)
{
    struct timeval tv;
    int v3 = LDAP_VERSION3, rc;
    LDAP *ld = NULL;

    rc = ldap_initialize(&ld, uri);
    if (rc != LDAP_SUCCESS) {
        snprintf(why, whylen, "%s: %s", uri, ldap_err2string(rc));
        return -1;
    }
    dl_ms_to_tv(dl->timeout_ms, &tv);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
    if (dl->starttls || strncasecmp(uri, "ldaps:", 6) == 0) {
        int demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;

        if (dl->tls_ca)
            ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, dl->tls_ca);
        ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
        rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
        if (rc != LDAP_OPT_SUCCESS) {
            snprintf(why, whylen, "%s: TLS set-up failed (tls_ca_file %s)",
                     uri, dl->tls_ca ? dl->tls_ca : "default");
            ldap_unbind_ext(ld, NULL, NULL);
            return -1;
        }
    }
    *ldp = ld;
    return 0;
}

/* conn_start - make a handle for the current URI and bind it in the pool */
static void conn_start(struct ldconn *c)
{
    struct dir_ldap *dl = c->dl;
    const char *uri = dl->uris[c->uri_idx];
    int rc;
    char why[300];

    if (ldc_new_handle(dl, uri, &c->ld, why, sizeof(why)) < 0)
        goto fail;
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
    next_backoff(c);
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

/* ldc_init - a DOWN connection whose first attempt starts when the loop
 * runs, not now: `policyd -t` builds the runtime without running the loop
 * and must not connect */
void ldc_init(struct dir_ldap *dl, struct ldconn *c, unsigned idx)
{
    c->dl = dl;
    c->idx = idx;
    c->state = CONN_DOWN;
    c->backoff_ms = DIR_LDAP_BACKOFF_MIN_MS;
    uv_timer_init(dl->loop, &c->retry);
    c->retry.data = c;
    dl->pending++;
    conn_schedule(c, 0);
}

/* ldc_close - at directory_free: stop retrying, close an UP connection
 * (failing its queries); a CONNECTING one is unbound by job_done */
void ldc_close(struct ldconn *c)
{
    uv_timer_stop(&c->retry);
    uv_close((uv_handle_t *) &c->retry, retry_closed);
    if (c->state == CONN_UP)
        ldc_drop(c, "shutting down");
}
