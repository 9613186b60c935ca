/*
 * server - listeners and policy connections (see server.h)
 *
 * A connection is one of three states:
 *
 *   READING   waiting for (the rest of) a request
 *   DECIDING  a policy job is out; new bytes are only buffered
 *   WRITING   a reply did not fit the socket at once; uv_write owns it
 *             and reading is paused until it is out
 *
 * Reads land in one loop-wide buffer (libuv calls alloc and read back to
 * back on this one thread); requests found there are parsed in place, and
 * only a partial request, or bytes that arrive while DECIDING, are copied to
 * the connection's own buffer.  Replies go out with uv_try_write from the
 * stack; only a reply the socket would not take at once is copied.
 *
 * A peer that pipelines is read only as fast as it is answered: reading
 * stops while a reply waits in a uv_write (the peer does not read its
 * replies) and while request_limit bytes of complete requests wait behind a
 * decision, so what it sends stays in the kernel (TCP pushes back) instead
 * of in our memory.  A connection holds at most request_limit bytes of
 * input (a read takes no more) and one reply (REPLY_MAX); the sweep closes
 * it once that reply has made no progress for idle_timeout.
 */

#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "stats.h"
#include "util.h"

#define READ_BUF_SIZE 65536
#define REPLY_MAX 1100          /* "action=" + the longest action + "\n\n" */

enum conn_state { CONN_READING, CONN_DECIDING, CONN_WRITING, CONN_CLOSING };

/* A TCP or unix stream, as libuv sees it. */
union stream {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
};

struct listener {
    union stream h;
    struct server *srv;
    char *path;                 /* unix socket to unlink, or NULL */
    struct listener *next;
};

struct conn {
    union stream h;
    struct server *srv;
    struct conn *prev, *next;   /* activity order: head is the oldest */
    uint64_t last_active_ms;
    enum conn_state state;
    struct policy_job *job;
    char *buf;                  /* pending bytes: a partial request */
    size_t len, cap;
    struct proto_scan scan;
    uint64_t req_start_us;      /* when the request being answered was parsed */
    int paused;                 /* reading stopped until the peer is answered */
    char peer[64];
};

struct write_req {
    uv_write_t req;
    struct conn *c;
    char data[];
};

struct server {
    uv_loop_t *loop;
    struct policy *policy;
    struct listener *listeners;
    struct conn *head, *tail;
    uint64_t nconns;
    uv_timer_t sweep;
    int shutting_down, freed;
    unsigned open_handles;      /* listeners + conns + sweep, until closed */
    void (*drained)(void *arg);
    void *drained_arg;
    char rbuf[READ_BUF_SIZE];
};

static struct log_limiter refuse_rl = LOG_LIMITER_INIT(10000);
static struct log_limiter proto_rl = LOG_LIMITER_INIT(1000);
static struct log_limiter idle_rl = LOG_LIMITER_INIT(1000);
static struct log_limiter stall_rl = LOG_LIMITER_INIT(1000);

static void conn_close(struct conn *c);
static void conn_process(struct conn *c, char *data, size_t n, int owned);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* ---- endpoints ---- */

int server_endpoint(const char *spec, struct sockaddr_storage *sa, char *path,
                    size_t pathlen, char *err, size_t errlen)
{
    memset(sa, 0, sizeof(*sa));
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *p = spec + 5;
        if (*p != '/' || strlen(p) >= pathlen || strlen(p) >= 100) {
            snprintf(err, errlen, "%s: need an absolute path shorter than 100 bytes", spec);
            return -1;
        }
        sa->ss_family = AF_UNIX;
        strcpy(path, p);
        return 0;
    }
    if (strncmp(spec, "inet:", 5) != 0) {
        snprintf(err, errlen, "%s: expected inet:HOST:PORT or unix:/path", spec);
        return -1;
    }
    const char *host = spec + 5, *colon;
    char hbuf[64];
    size_t hlen;
    int v6 = host[0] == '[';
    if (v6) {
        const char *end = strchr(host, ']');
        if (!end || end[1] != ':') {
            snprintf(err, errlen, "%s: expected inet:[IPV6]:PORT", spec);
            return -1;
        }
        hlen = (size_t)(end - host - 1);
        host++;
        colon = end + 1;
    } else {
        colon = strrchr(host, ':');
        if (!colon) {
            snprintf(err, errlen, "%s: expected inet:HOST:PORT", spec);
            return -1;
        }
        hlen = (size_t)(colon - host);
    }
    unsigned long long port;
    if (hlen == 0 || hlen >= sizeof(hbuf) ||
        util_parse_uint(colon + 1, 65535, &port) != 0 || port == 0) {
        snprintf(err, errlen, "%s: bad host or port", spec);
        return -1;
    }
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    int rc = v6 ? uv_ip6_addr(hbuf, (int)port, (struct sockaddr_in6 *)sa)
                : uv_ip4_addr(hbuf, (int)port, (struct sockaddr_in *)sa);
    if (rc != 0) {
        snprintf(err, errlen, "%s: '%s' is not a numeric IP%s address", spec, hbuf,
                 v6 ? "v6" : "v4");
        return -1;
    }
    return 0;
}

/* ---- connection list and idle sweep ---- */

static void list_unlink(struct server *s, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (s->head == c)
        s->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else if (s->tail == c)
        s->tail = c->prev;
    c->prev = c->next = NULL;
}

static void list_append(struct server *s, struct conn *c)
{
    c->prev = s->tail;
    c->next = NULL;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
}

static void touch(struct conn *c)
{
    c->last_active_ms = uv_now(c->srv->loop);
    if (c->srv->tail != c) {
        list_unlink(c->srv, c);
        list_append(c->srv, c);
    }
}

static void sweep(uv_timer_t *t)
{
    struct server *s = t->data;
    uint64_t idle = policy_config(s->policy)->server.idle_timeout_ms;
    uint64_t now = uv_now(s->loop);

    while (s->head && s->head->last_active_ms + idle <= now) {
        struct conn *c = s->head;
        if (c->state == CONN_READING) {
            log_warn_rl(&idle_rl, "%s: idle for %.1fs ([server] idle_timeout), closing",
                        c->peer, idle / 1000.0);
            stats.conn_idle_closed++;
            conn_close(c);          /* unlinks c */
        } else if (c->state == CONN_WRITING) {
            /* last_active_ms is when the reply was queued: it never left */
            log_warn_rl(&stall_rl, "%s: does not read its replies: none sent for %.1fs "
                        "([server] idle_timeout), closing", c->peer, idle / 1000.0);
            stats.conn_idle_closed++;
            conn_close(c);
        } else {
            touch(c);               /* busy (a tarpit delay): not idle */
        }
    }
}

/* ---- connection lifetime ---- */

static void handle_closed(struct server *s)
{
    if (--s->open_handles == 0 && s->freed)
        free(s);
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct server *s = c->srv;

    free(c->buf);
    free(c);
    stats.conn_current--;
    s->nconns--;
    if (s->shutting_down && s->nconns == 0 && s->drained) {
        void (*drained)(void *) = s->drained;
        s->drained = NULL;
        drained(s->drained_arg);
    }
    handle_closed(s);
}

static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->job) {
        policy_cancel(c->job);
        c->job = NULL;
    }
    c->state = CONN_CLOSING;
    list_unlink(c->srv, c);
    uv_close(&c->h.handle, conn_closed);
}

/* read_on - (re)start reading; 0, or -1 when the connection was closed */
static int read_on(struct conn *c)
{
    int rc = uv_read_start(&c->h.stream, alloc_cb, read_cb);

    if (rc != 0) {
        log_warn("%s: read_start: %s", c->peer, uv_strerror(rc));
        conn_close(c);
        return -1;
    }
    return 0;
}

/* pause_reading - the peer is ahead of us: leave what it sends in the kernel */
static void pause_reading(struct conn *c)
{
    c->paused = 1;
    uv_read_stop(&c->h.stream);
}

/* resume_reading - after a pause; 0, or -1 when the connection was closed */
static int resume_reading(struct conn *c)
{
    if (!c->paused)
        return 0;
    c->paused = 0;
    return read_on(c);
}

/* keep - append bytes to the connection's own buffer, within request_limit */
static int keep(struct conn *c, const char *data, size_t n)
{
    size_t limit = policy_config(c->srv->policy)->server.request_limit;

    if (c->len + n > limit)
        return -1;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + n)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        c->buf = xrealloc(c->buf, cap);
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    return 0;
}

static void drop_buffer(struct conn *c)
{
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* ---- replies ---- */

static void written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = w->c;

    free(w);
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        log_debug("%s: write failed: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    c->state = CONN_READING;
    touch(c);
    if (c->srv->shutting_down && c->len == 0) {
        conn_close(c);
        return;
    }
    if (resume_reading(c) == 0)
        conn_process(c, c->buf, c->len, 1);
}

/* reply - 0 when the reply went out at once, 1 when uv_write has it,
 * -1 when the connection was closed. */
static int reply(struct conn *c, const char *action)
{
    char out[REPLY_MAX];
    size_t n = proto_format(out, sizeof(out), action);

    if (n == 0) {
        log_err("reply to %s does not fit %d bytes; check [actions]", c->peer, REPLY_MAX);
        conn_close(c);
        return -1;
    }
    stats_hist_add(&stats.latency, util_now_us() - c->req_start_us);
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    int rc = uv_try_write(&c->h.stream, &b, 1);
    if (rc == (int)n)
        return 0;
    if (rc < 0 && rc != UV_EAGAIN) {
        log_debug("%s: write failed: %s", c->peer, uv_strerror(rc));
        conn_close(c);
        return -1;
    }
    size_t sent = rc > 0 ? (size_t)rc : 0;
    struct write_req *w = xmalloc(sizeof(*w) + n - sent);
    w->c = c;
    memcpy(w->data, out + sent, n - sent);
    b = uv_buf_init(w->data, (unsigned)(n - sent));
    rc = uv_write(&w->req, &c->h.stream, &b, 1, written);
    if (rc < 0) {
        free(w);
        conn_close(c);
        return -1;
    }
    /* the peer is not keeping up: take no more from it until this is out */
    c->state = CONN_WRITING;
    touch(c);
    pause_reading(c);
    return 1;
}

static void decided(void *arg, const char *action)
{
    struct conn *c = arg;

    c->job = NULL;
    c->state = CONN_READING;
    touch(c);
    if (reply(c, action) != 0)
        return;
    if (c->srv->shutting_down && c->len == 0) {
        conn_close(c);
        return;
    }
    if (resume_reading(c) == 0)
        conn_process(c, c->buf, c->len, 1);
}

static void protocol_error(struct conn *c, int rc)
{
    stats.conn_protocol_errors++;
    log_warn_rl(&proto_rl, "%s: %s; closing the connection without a reply",
                c->peer, proto_strerror(rc));
    conn_close(c);
}

/*
 * conn_process - parse and answer the requests in data[0..n).  owned: data
 * is c->buf; else it is the loop-wide read buffer, and what is left must be
 * copied out before returning.
 */
static void conn_process(struct conn *c, char *data, size_t n, int owned)
{
    const struct config *cfg = policy_config(c->srv->policy);
    struct proto_limits lim = { cfg->server.line_limit, cfg->server.attr_limit,
                                cfg->server.request_limit };
    size_t off = 0;

    while (c->state == CONN_READING && off < n) {
        struct proto_request req;
        size_t used = 0;
        int rc = proto_parse(&c->scan, data + off, n - off, &lim, &req, &used);

        if (rc == PROTO_MORE)
            break;
        if (rc < 0) {
            protocol_error(c, rc);
            return;
        }
        off += used;
        memset(&c->scan, 0, sizeof(c->scan));
        c->req_start_us = util_now_us();
        const char *now;
        struct policy_job *job = policy_decide(c->srv->policy, &req, c->req_start_us,
                                               decided, c, &now);
        if (job) {
            c->job = job;
            c->state = CONN_DECIDING;
        } else if (reply(c, now) < 0) {
            return;
        }
    }
    if (owned) {
        if (off == n) {
            drop_buffer(c);
        } else if (off) {
            memmove(c->buf, c->buf + off, n - off);
            c->len = n - off;
        }
    } else if (off < n) {
        /* a read is at most request_limit (alloc_cb), so the rest fits;
         * behind a decision, a full buffer of requests pauses reading */
        if (keep(c, data + off, n - off) != 0) {
            protocol_error(c, PROTO_ESIZE);
            return;
        }
        if (c->state != CONN_READING && c->len >= cfg->server.request_limit)
            pause_reading(c);
    }
    if (c->srv->shutting_down && c->state == CONN_READING && c->len == 0)
        conn_close(c);
}

/*
 * alloc_cb - where the next read lands.  A read takes at most what the
 * connection may hold (request_limit, less what it holds): whatever of it
 * is left behind a decision then fits, so a pipelining peer is neither
 * taken for one over-long request nor held in more than request_limit of
 * memory; none left is UV_ENOBUFS in read_cb.
 */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t n = sizeof(c->srv->rbuf);
    size_t limit = policy_config(c->srv->policy)->server.request_limit;
    size_t room = limit > c->len ? limit - c->len : 0;
    (void)suggested;

    if (room < n)
        n = room;
    *buf = uv_buf_init(c->srv->rbuf, (unsigned)n);
}

/* has_request - a complete request (up to its empty line) in data[0..n) */
static int has_request(const char *data, size_t n)
{
    const char *p = data, *end = data + n;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        if (p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')))
            return 1;
    }
    return 0;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;

    if (nread == 0 || c->state == CONN_CLOSING)
        return;
    if (nread == UV_ENOBUFS) {
        /* request_limit held: requests queued behind a decision wait in
         * the kernel; one request that alone is too long is refused */
        if (c->state != CONN_READING && has_request(c->buf, c->len))
            pause_reading(c);
        else
            protocol_error(c, PROTO_ESIZE);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("%s: read: %s", c->peer, uv_strerror((int)nread));
        if (c->len && nread == UV_EOF)
            log_warn_rl(&proto_rl, "%s: connection closed in the middle of a request",
                        c->peer);
        conn_close(c);
        return;
    }
    touch(c);
    if (c->state != CONN_READING || c->len) {
        /* behind a pending request or a partial one: keep the bytes */
        if (keep(c, buf->base, (size_t)nread) != 0) {
            protocol_error(c, PROTO_ESIZE);
            return;
        }
        if (c->state == CONN_READING)
            conn_process(c, c->buf, c->len, 1);
        else if (c->len >= policy_config(c->srv->policy)->server.request_limit) {
            /* full while deciding: requests queued behind it wait in the
             * kernel; one request that alone is too long is refused now */
            if (has_request(c->buf, c->len))
                pause_reading(c);
            else
                protocol_error(c, PROTO_ESIZE);
        }
        return;
    }
    conn_process(c, buf->base, (size_t)nread, 0);
}

static void peer_name(struct conn *c, int is_unix)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";

    if (is_unix || uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(c->peer, sizeof(c->peer), "%s", is_unix ? "unix-peer" : "unknown");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip,
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", ip,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
}

static void refused_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct listener *l = ls->data;
    struct server *s = l->srv;
    int is_unix = l->path != NULL;

    if (status < 0) {
        log_warn_rl(&refuse_rl, "accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = xcalloc(1, sizeof(*c));
    if (is_unix)
        uv_pipe_init(s->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(s->loop, &c->h.tcp);
    if (uv_accept(ls, &c->h.stream) != 0) {
        uv_close(&c->h.handle, refused_closed);
        return;
    }
    if (s->nconns >= policy_config(s->policy)->server.max_connections ||
        s->shutting_down) {
        stats.conn_refused++;
        peer_name(c, is_unix);
        log_warn_rl(&refuse_rl, "%s: refused: %llu connections is the limit "
                    "([server] max_connections)", c->peer,
                    (unsigned long long)s->nconns);
        uv_close(&c->h.handle, refused_closed);
        return;
    }
    c->srv = s;
    c->h.handle.data = c;
    c->state = CONN_READING;
    if (!is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    peer_name(c, is_unix);
    s->nconns++;
    s->open_handles++;
    stats.conn_current++;
    stats.conn_total++;
    c->last_active_ms = uv_now(s->loop);
    list_append(s, c);
    read_on(c);
}

/* ---- listeners ---- */

static int listen_one(struct server *s, const char *spec, unsigned mode, char *err,
                      size_t errlen)
{
    struct sockaddr_storage sa;
    char path[108];
    struct listener *l;
    int rc;

    if (server_endpoint(spec, &sa, path, sizeof(path), err, errlen) != 0)
        return -1;
    l = xcalloc(1, sizeof(*l));
    l->srv = s;
    if (sa.ss_family == AF_UNIX) {
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                snprintf(err, errlen, "%s: exists and is not a socket", path);
                free(l);
                return -1;
            }
            unlink(path);       /* a stale socket from an earlier run */
        }
        uv_pipe_init(s->loop, &l->h.pipe, 0);
        rc = uv_pipe_bind(&l->h.pipe, path);
        if (rc == 0) {
            l->path = xstrdup(path);
            if (chmod(path, mode) != 0)
                rc = uv_translate_sys_error(errno);
        }
    } else {
        uv_tcp_init(s->loop, &l->h.tcp);
        rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&sa, 0);
    }
    l->h.handle.data = l;
    if (rc == 0)
        rc = uv_listen(&l->h.stream, 511, on_connection);
    /* link it even on failure: server_free closes and unlinks it */
    l->next = s->listeners;
    s->listeners = l;
    s->open_handles++;
    if (rc != 0) {
        snprintf(err, errlen, "listen %s: %s", spec, uv_strerror(rc));
        return -1;
    }
    log_info("listening on %s", spec);
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    struct server *s = l->srv;
    free(l->path);
    free(l);
    handle_closed(s);
}

static void close_listeners(struct server *s)
{
    struct listener *l = s->listeners, *next;
    for (; l; l = next) {
        next = l->next;
        if (l->path)
            unlink(l->path);
        uv_close(&l->h.handle, listener_closed);
    }
    s->listeners = NULL;
}

static void sweep_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

struct server *server_new(uv_loop_t *loop, struct policy *p, char *err, size_t errlen)
{
    const struct config *cfg = policy_config(p);
    struct server *s = xcalloc(1, sizeof(*s));
    uint64_t every;

    s->loop = loop;
    s->policy = p;
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    s->open_handles = 1;
    for (size_t i = 0; i < cfg->server.listen.n; i++) {
        if (listen_one(s, cfg->server.listen.v[i], cfg->server.socket_mode, err,
                       errlen) != 0) {
            server_free(s);
            return NULL;
        }
    }
    /* check a few times per idle_timeout, at most once a second */
    every = cfg->server.idle_timeout_ms / 4;
    if (every > 1000)
        every = 1000;
    if (every < 10)
        every = 10;
    uv_timer_start(&s->sweep, sweep, every, every);
    return s;
}

void server_shutdown(struct server *s, void (*done)(void *arg), void *arg)
{
    struct conn *c, *next;

    s->shutting_down = 1;
    s->drained = done;
    s->drained_arg = arg;
    close_listeners(s);
    for (c = s->head; c; c = next) {
        next = c->next;
        if (c->state == CONN_READING && c->len == 0)
            conn_close(c);
    }
    if (s->nconns == 0 && s->drained) {
        s->drained = NULL;
        done(arg);
    }
}

void server_abort(struct server *s)
{
    while (s->head)
        conn_close(s->head);
}

void server_free(struct server *s)
{
    if (!s)
        return;
    s->drained = NULL;
    s->shutting_down = 1;
    close_listeners(s);
    server_abort(s);
    s->freed = 1;
    uv_close((uv_handle_t *)&s->sweep, sweep_closed);
}
