/*
 * dir_ldap - the LDAP directory: queries and the directory ops
 *
 * See dir_ldap.h for what it does; the connections' life (connect, bind,
 * non-blocking I/O, reconnects) is in ldap_conn.c, the structures shared
 * with it in dir_ldap_priv.h.  How queries go:
 *
 * A query is on exactly one list: the wait queue (q->conn == NULL) or its
 * connection's in-flight list.  It is answered exactly once, by
 * query_done(), which unlinks it, stops its timer and frees it when the
 * timer handle has closed.  A connection whose last write could not
 * complete (c->wblocked) takes no new search: queries wait in the queue.
 *
 * Continuation references (LDAP_RES_SEARCH_REFERENCE) are not followed.
 * Each distinct URL is logged once with the search base (the first
 * DIR_LDAP_REFS_MAX of them; further ones rate-limited), and with
 * [ldap] referrals = tempfail a search that found no entry but got
 * references answers DIR_TEMPFAIL instead of DIR_NOTFOUND.
 *
 * directory_free() answers every query DIR_TEMPFAIL, closes the handles and
 * lets the last close callback (or the last pool job) free the struct;
 * dl->pending counts what is still open.  Callbacks may re-enter lookup()
 * or free(): code that calls back re-checks the connection afterwards
 * (ldc_alive()).
 */

#include "dir_ldap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lber.h>
#include <ldap.h>

#include "dir_ldap_priv.h"
#include "ldap_filter.h"
#include "../policyd/stats.h"
#include "../policyd/util.h"

/* --- small helpers ---------------------------------------------------- */

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

static void ql_push_front(struct qlist *l, struct query *q)
{
    q->prev = NULL;
    q->next = l->head;
    if (l->head)
        l->head->prev = q;
    else
        l->tail = q;
    l->head = q;
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

void dl_maybe_free(struct dir_ldap *dl)
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
    for (size_t i = 0; i < dl->nrefs_seen; i++)
        free(dl->refs_seen[i]);
    free(dl);
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

/* dl_fail_list - answer every query of l DIR_TEMPFAIL.  Callbacks may start
 * new lookups, which may land on lists again: detach the whole list first. */
void dl_fail_list(struct qlist *l)
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

/* note_refs - log the URLs of a continuation reference not logged before.
 * AD sends the same few (its DNS partitions) on every subtree search from
 * the domain root: each is worth one line, not one per search. */
static void note_refs(struct ldconn *c, struct query *q, LDAPMessage *msg)
{
    struct dir_ldap *dl = c->dl;
    char **refs = NULL;
    const char *then = dl->refs_tempfail
        ? "lookups that find no entry answer tempfail"
        : "lookups that find no entry answer unknown ([ldap] referrals = ignore)";

    if (ldap_parse_reference(c->ld, msg, &refs, NULL, 0) != LDAP_SUCCESS || !refs)
        return;
    for (size_t i = 0; refs[i]; i++) {
        size_t k;

        for (k = 0; k < dl->nrefs_seen; k++)
            if (strcmp(dl->refs_seen[k], refs[i]) == 0)
                break;
        if (k < dl->nrefs_seen)
            continue;
        /* the URL before the filter, which may be kilobytes long */
        if (dl->nrefs_seen < DIR_LDAP_REFS_MAX) {
            dl->refs_seen[dl->nrefs_seen++] = xstrdup(refs[i]);
            log_warn("ldap: search in \"%s\" returned a reference to %.300s, "
                     "not followed: %s (first seen for %.200s)",
                     dl->search_base, refs[i], then, q->filter);
        } else {
            log_warn_rl(&dl->rl_refs, "ldap: search in \"%s\" returned a "
                        "reference to %.300s, not followed: %s (seen for %.200s)",
                        dl->search_base, refs[i], then, q->filter);
        }
    }
    ldap_memvfree((void **) refs);
}

/* dl_handle_msg - one message from ldap_result; msg is freed here */
void dl_handle_msg(struct ldconn *c, LDAPMessage *msg)
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
    if (!q) {
        ldap_msgfree(msg);          /* abandoned earlier */
        return;
    }
    if (type == LDAP_RES_SEARCH_ENTRY || type == LDAP_RES_SEARCH_REFERENCE) {
        if (type == LDAP_RES_SEARCH_ENTRY) {
            q->entries++;
        } else {
            q->refs++;
            note_refs(c, q, msg);
        }
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
    if (err == LDAP_SUCCESS && q->entries > 0)
        st = DIR_FOUND;
    else if (err == LDAP_SUCCESS)
        /* the entry may be behind a reference we did not follow */
        st = q->refs > 0 && dl->refs_tempfail ? DIR_TEMPFAIL : DIR_NOTFOUND;
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
    log_warn_rl(&c->dl->rl_query, "ldap: no answer within %llu ms for %s "
                "on %s", (unsigned long long) c->dl->timeout_ms, q->filter,
                c->dl->uris[c->uri_idx]);
    /* nothing at all came back since this query left, or the server does
     * not even read: it is stopped or frozen, and waiting on this
     * connection only adds timeouts.  No Abandon while a request is
     * partly written: it would land in the middle of it (ldap_conn.c). */
    suspect = c->wblocked || c->last_rx_us <= q->sent_us;
    if (!c->wblocked)
        ldap_abandon_ext(c->ld, q->msgid, NULL, NULL);
    /* an Abandon that could not be written whole breaks the stream */
    suspect |= c->wblocked;
    query_done(q, DIR_TEMPFAIL);
    if (suspect && c->state == CONN_UP)
        ldc_drop(c, c->wblocked ? "server not reading" : "server not answering");
}

static struct ldconn *pick_conn(struct dir_ldap *dl)
{
    struct ldconn *best = NULL;

    for (unsigned i = 0; i < dl->nconn; i++) {
        struct ldconn *c = &dl->conns[i];

        if (c->state != CONN_UP || c->wblocked
            || c->inflight.n >= dl->max_inflight)
            continue;
        if (!best || c->inflight.n < best->inflight.n)
            best = c;
    }
    return best;
}

/* send_query - start q's search on c; q is not on any list yet.  Returns
 * -1 if libldap is busy finishing an earlier request (q untouched: the
 * caller queues it), else 0 (q sent, or answered tempfail). */
static int send_query(struct ldconn *c, struct query *q)
{
    struct dir_ldap *dl = c->dl;
    static char one_one[] = "1.1";      /* no attributes, just the entry */
    char *attrs[] = { one_one, NULL };
    int msgid = -1;
    int rc = ldap_search_ext(c->ld, dl->search_base, dl->scope, q->filter,
                             attrs, 0, NULL, NULL, NULL, 1, &msgid);

    if (rc == LDAP_BUSY) {
        c->wblocked = 1;
        ldc_after_write(c);
        return -1;
    }
    q->conn = c;
    ql_append(&c->inflight, q);
    if (rc != LDAP_SUCCESS) {
        log_warn_rl(&dl->rl_query, "ldap: search %s: %s", q->filter,
                    ldap_err2string(rc));
        query_done(q, DIR_TEMPFAIL);
        /* the handle may have lost its connection: never let libldap
         * reconnect by itself (that would block the loop) */
        if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)
            ldc_drop(c, ldap_err2string(rc));
        return 0;
    }
    q->msgid = msgid;
    q->sent_us = util_now_us();
    ldc_after_write(c);
    return 0;
}

/* dl_dispatch - move waiting queries onto connections with free slots */
void dl_dispatch(struct dir_ldap *dl)
{
    while (dl->queue.head && !dl->closing) {
        struct ldconn *c = pick_conn(dl);
        struct query *q;

        if (!c)
            return;
        q = dl->queue.head;
        ql_remove(&dl->queue, q);
        if (send_query(c, q) < 0)
            ql_push_front(&dl->queue, q);
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
    if (!c || send_query(c, q) < 0) {
        q->conn = NULL;
        ql_append(&dl->queue, q);
    }
}

/* check_one - the -T check on a handle of its own, blocking */
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
    int rc, n, entries, ret = -1;
    uint64_t t0;
    char why[300];

    dl_ms_to_tv(dl->timeout_ms, &tv);
    if (ldc_new_handle(dl, uri, &ld, why, sizeof(why)) < 0) {
        sbuf_printf(out, "%s\n", why);
        return -1;
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
    for (unsigned i = 0; i < dl->nconn; i++)
        ldc_close(&dl->conns[i]);
    dl_fail_list(&dl->queue);
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
    dl->refs_tempfail = cfg->ldap.referrals == REFERRALS_TEMPFAIL;
    dl->timeout_ms = cfg->ldap.timeout_ms;
    dl->max_inflight = cfg->ldap.max_inflight ? cfg->ldap.max_inflight : 64;
    dl->nconn = cfg->ldap.connections ? cfg->ldap.connections : 1;
    dl->starting = 1;
    dl->rl_query = (struct log_limiter) LOG_LIMITER_INIT(10000);
    dl->rl_drop = (struct log_limiter) LOG_LIMITER_INIT(10000);
    dl->rl_stall = (struct log_limiter) LOG_LIMITER_INIT(10000);
    dl->rl_refs = (struct log_limiter) LOG_LIMITER_INIT(60000);
    dl->conns = xcalloc(dl->nconn, sizeof(*dl->conns));
    for (unsigned i = 0; i < dl->nconn; i++)
        ldc_init(dl, &dl->conns[i], i);
    (void) err;
    return &dl->base;
}
