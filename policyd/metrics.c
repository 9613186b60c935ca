/*
 * NAME
 *	metrics 3 - Prometheus /metrics over HTTP
 * SYNOPSIS
 *	#include "metrics.h"
 *
 *	struct metrics *metrics_new(uv_loop_t *loop, const char *endpoint,
 *				    struct policy *p, char *err, size_t errlen);
 *	void metrics_free(struct metrics *m);
 * DESCRIPTION
 *	metrics_new() listens on ENDPOINT ("inet:HOST:PORT", the host a
 *	literal IPv4 address or a bracketed IPv6 one) and answers
 *
 *	    GET /metrics      200, text/plain; version=0.0.4
 *	    HEAD /metrics     the same headers, no body
 *	    other paths       404
 *	    other methods     405
 *	    malformed         400; request head over METRICS_REQ_MAX: 431
 *
 *	HTTP is parsed by libhttp-parser, never by hand.  Each connection
 *	carries one request and is closed after the answer (Prometheus opens
 *	a new one per scrape, or reuses nothing).  At most METRICS_MAX_CONNS
 *	connections are served at once; a connection that does not complete
 *	its request within METRICS_IDLE_MS is closed.
 *
 *	metrics_free() closes everything; the loop must run afterwards.
 * SEE ALSO
 *	stats(3), policyctl(1), http_parser.h
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "log.h"
#include "metrics.h"
#include "stats.h"
#include "util.h"

#define METRICS_REQ_MAX     8192        /* request head + body, bytes */
#define METRICS_URL_MAX     256
#define METRICS_MAX_CONNS   32
#define METRICS_IDLE_MS     10000

struct mconn;

struct metrics {
    uv_loop_t *loop;
    uv_tcp_t server;
    struct policy *p;
    struct mconn *conns;
    unsigned nconns;
};

struct mconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    http_parser parser;
    struct metrics *m;          /* NULL once closing */
    struct mconn *prev, *next;
    int refs;                   /* the two handles */
    int closing;
    int answered;
    int complete;               /* on_message_complete seen */
    int url_too_long;
    size_t nread;
    size_t url_len;
    char url[METRICS_URL_MAX + 1];
    char rbuf[2048];
    struct sbuf out;
};

static struct log_limiter metrics_rl = LOG_LIMITER_INIT(10000);

/* ---- connection lifetime ---- */

static void mconn_on_close(uv_handle_t *h)
{
    struct mconn *mc = h->data;

    if (--mc->refs > 0)
        return;
    sbuf_free(&mc->out);
    free(mc);
}

static void mconn_close(struct mconn *mc)
{
    struct metrics *m = mc->m;

    if (mc->closing)
        return;
    mc->closing = 1;
    if (m) {
        if (mc->prev)
            mc->prev->next = mc->next;
        else
            m->conns = mc->next;
        if (mc->next)
            mc->next->prev = mc->prev;
        m->nconns--;
        mc->m = NULL;
    }
    uv_close((uv_handle_t *) &mc->tcp, mconn_on_close);
    uv_close((uv_handle_t *) &mc->timer, mconn_on_close);
}

static void mconn_on_write(uv_write_t *wr, int status)
{
    (void) status;
    mconn_close(wr->data);
}

static void mconn_respond(struct mconn *mc, int code, const char *reason,
                          const char *ctype, const char *body, size_t blen,
                          int head_only)
{
    uv_buf_t b;

    if (mc->answered || mc->closing)
        return;
    mc->answered = 1;
    uv_read_stop((uv_stream_t *) &mc->tcp);
    uv_timer_stop(&mc->timer);
    sbuf_reset(&mc->out);
    sbuf_printf(&mc->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                "Content-Length: %zu\r\nConnection: close\r\n"
                "Cache-Control: no-store\r\n\r\n", code, reason, ctype, blen);
    if (!head_only && blen)
        sbuf_add(&mc->out, body, blen);
    b = uv_buf_init(mc->out.data, (unsigned) mc->out.len);
    mc->wr.data = mc;
    if (uv_write(&mc->wr, (uv_stream_t *) &mc->tcp, &b, 1, mconn_on_write) != 0)
        mconn_close(mc);
}

static void mconn_error(struct mconn *mc, int code, const char *reason)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", code, reason);

    mconn_respond(mc, code, reason, "text/plain; charset=utf-8", body,
                  (size_t) n, 0);
}

static void mconn_on_timer(uv_timer_t *t)
{
    mconn_close(t->data);
}

/* ---- HTTP ---- */

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct mconn *mc = hp->data;

    if (len > METRICS_URL_MAX - mc->url_len) {
        mc->url_too_long = 1;
        return 1;
    }
    memcpy(mc->url + mc->url_len, at, len);
    mc->url_len += len;
    mc->url[mc->url_len] = 0;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct mconn *mc = hp->data;

    mc->complete = 1;
    /* One request per connection: ignore anything pipelined after it. */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings metrics_http = {
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void mconn_handle(struct mconn *mc, struct policy *p)
{
    struct http_parser_url u;
    const char *path;
    size_t plen;
    int head = mc->parser.method == HTTP_HEAD;

    if (mc->parser.method != HTTP_GET && !head) {
        mconn_error(mc, 405, "Method Not Allowed");
        return;
    }
    http_parser_url_init(&u);
    if (http_parser_parse_url(mc->url, mc->url_len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        mconn_error(mc, 400, "Bad Request");
        return;
    }
    path = mc->url + u.field_data[UF_PATH].off;
    plen = u.field_data[UF_PATH].len;
    if (plen == 8 && memcmp(path, "/metrics", 8) == 0) {
        struct stats_extra x;
        struct sbuf body;

        memset(&x, 0, sizeof(x));
        sbuf_init(&body);
        if (p)
            policy_stats_extra(p, &x);
        stats_render_prometheus(&body, &x);
        mconn_respond(mc, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                      body.data, body.len, head);
        sbuf_free(&body);
    } else {
        mconn_error(mc, 404, "Not Found");
    }
}

static void mconn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct mconn *mc = h->data;

    (void) hint;
    buf->base = mc->rbuf;
    buf->len = sizeof(mc->rbuf);
}

static void mconn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct mconn *mc = s->data;
    size_t done;
    enum http_errno e;

    if (mc->closing || mc->answered)
        return;
    if (n == UV_EOF) {
        /* Lets the parser finish a request ended by EOF, or notice a
         * truncated one. */
        http_parser_execute(&mc->parser, &metrics_http, NULL, 0);
        if (!mc->complete) {
            mconn_close(mc);
            return;
        }
    } else if (n < 0) {
        mconn_close(mc);
        return;
    } else {
        mc->nread += (size_t) n;
        if (mc->nread > METRICS_REQ_MAX) {
            mconn_error(mc, 431, "Request Header Fields Too Large");
            return;
        }
        done = http_parser_execute(&mc->parser, &metrics_http, buf->base, (size_t) n);
        e = HTTP_PARSER_ERRNO(&mc->parser);
        if (mc->url_too_long) {
            mconn_error(mc, 414, "URI Too Long");
            return;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            log_warn_rl(&metrics_rl, "metrics: bad request: %s",
                        http_errno_description(e));
            mconn_error(mc, 400, "Bad Request");
            return;
        }
        (void) done;
        if (!mc->complete)
            return;
    }
    mconn_handle(mc, mc->m ? mc->m->p : NULL);
}

static void metrics_on_conn(uv_stream_t *server, int status)
{
    struct metrics *m = server->data;
    struct mconn *mc;

    if (status < 0) {
        log_warn_rl(&metrics_rl, "metrics: accept: %s", uv_strerror(status));
        return;
    }
    mc = xcalloc(1, sizeof(*mc));
    sbuf_init(&mc->out);
    mc->refs = 2;
    uv_tcp_init(m->loop, &mc->tcp);
    uv_timer_init(m->loop, &mc->timer);
    mc->tcp.data = mc;
    mc->timer.data = mc;
    mc->m = m;
    mc->next = m->conns;
    if (m->conns)
        m->conns->prev = mc;
    m->conns = mc;
    m->nconns++;
    if (uv_accept(server, (uv_stream_t *) &mc->tcp) != 0) {
        mconn_close(mc);
        return;
    }
    if (m->nconns > METRICS_MAX_CONNS) {
        log_warn_rl(&metrics_rl, "metrics: more than %d connections, refusing",
                    METRICS_MAX_CONNS);
        mconn_error(mc, 503, "Service Unavailable");
        return;
    }
    http_parser_init(&mc->parser, HTTP_REQUEST);
    mc->parser.data = mc;
    uv_timer_start(&mc->timer, mconn_on_timer, METRICS_IDLE_MS, 0);
    if (uv_read_start((uv_stream_t *) &mc->tcp, mconn_alloc, mconn_on_read) != 0)
        mconn_close(mc);
}

/* ---- the listener ---- */

/* "inet:HOST:PORT" / "inet:[V6]:PORT" -> sockaddr; -1 with err. */
static int parse_endpoint(const char *ep, struct sockaddr_storage *ss,
                          char *err, size_t errlen)
{
    char host[64];
    const char *p, *colon;
    unsigned long long port;
    size_t hlen;

    p = strncmp(ep, "inet:", 5) == 0 ? ep + 5 : ep;
    if (*p == '[') {
        const char *rb = strchr(p, ']');

        if (rb == NULL || rb[1] != ':')
            goto bad;
        hlen = (size_t) (rb - p - 1);
        p++;
        colon = rb + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL)
            goto bad;
        hlen = (size_t) (colon - p);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        goto bad;
    memcpy(host, p, hlen);
    host[hlen] = 0;
    if (util_parse_uint(colon + 1, 65535, &port) != 0)
        goto bad;
    if (uv_ip4_addr(host, (int) port, (struct sockaddr_in *) ss) == 0 ||
        uv_ip6_addr(host, (int) port, (struct sockaddr_in6 *) ss) == 0)
        return 0;
bad:
    snprintf(err, errlen, "[stats] prometheus = %.200s: need inet:ADDRESS:PORT "
             "with a literal IP address", ep);
    return -1;
}

static void metrics_on_server_close(uv_handle_t *h)
{
    free(h->data);
}

struct metrics *metrics_new(uv_loop_t *loop, const char *endpoint,
                            struct policy *p, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    struct metrics *m;
    int r;

    memset(&ss, 0, sizeof(ss));
    if (endpoint == NULL || parse_endpoint(endpoint, &ss, err, errlen) != 0) {
        if (endpoint == NULL)
            snprintf(err, errlen, "[stats] prometheus: no endpoint");
        return NULL;
    }
    m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->p = p;
    uv_tcp_init(loop, &m->server);
    m->server.data = m;
    r = uv_tcp_bind(&m->server, (const struct sockaddr *) &ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *) &m->server, 64, metrics_on_conn);
    if (r != 0) {
        snprintf(err, errlen, "[stats] prometheus = %.200s: %s", endpoint,
                 uv_strerror(r));
        uv_close((uv_handle_t *) &m->server, metrics_on_server_close);
        return NULL;
    }
    log_info("metrics: serving /metrics on %s", endpoint);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    while (m->conns)
        mconn_close(m->conns);
    uv_close((uv_handle_t *) &m->server, metrics_on_server_close);
}
