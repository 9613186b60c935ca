/*
 * nullresp - a policy responder that answers DUNNO at once
 *
 * SYNOPSIS
 *	nullresp [-h host] [-p port] [-u path] [-b backlog]
 *
 * DESCRIPTION
 *	The machine's ceiling for `make bench`: it speaks the Postfix policy
 *	protocol with the same event-loop shape as policyd (one libuv loop,
 *	one read buffer per connection, one reply written per request) but
 *	decides nothing.  A request is recognised by its terminating empty
 *	line only; the reply is always "action=DUNNO\n\n".
 *
 *	With -p 0 the kernel picks a free port.  Once listening, nullresp
 *	prints "port=N" (or "path=P") on stdout so a driver can connect
 *	without racing.  SIGINT/SIGTERM stop it.
 *
 * LIMITS
 *	A request larger than NR_BUF bytes closes the connection, as policyd
 *	does for an over-long request.
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "../../policyd/util.h"

#define NR_BUF 8192             /* bytes buffered per connection */

static const char nr_reply[] = "action=DUNNO\n\n";

struct nr_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    size_t len;                 /* bytes in buf */
    size_t scanned;             /* bytes already searched for "\n\n" */
    char buf[NR_BUF];
};

static uv_loop_t *nr_loop;
static union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
} nr_listener;
static int nr_is_unix;
static uv_signal_t nr_sigint, nr_sigterm;
static unsigned long long nr_requests;

static void nr_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void nr_conn_close(struct nr_conn *c)
{
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, nr_close_cb);
}

static void nr_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct nr_conn *c = h->data;

    (void) hint;
    buf->base = c->buf + c->len;
    buf->len = NR_BUF - c->len;
}

static void nr_write_cb(uv_write_t *w, int status)
{
    (void) status;              /* a failed write shows up as a read error */
    free(w);
}

static void nr_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct nr_conn *c = s->data;
    size_t start, i;

    (void) buf;
    if (n < 0) {
        nr_conn_close(c);
        return;
    }
    c->len += (size_t) n;

    /* Answer every complete request in the buffer; keep the tail. */
    start = 0;
    i = c->scanned > 0 ? c->scanned - 1 : 0;
    for (; i + 1 < c->len; i++) {
        if (c->buf[i] == '\n' && c->buf[i + 1] == '\n') {
            uv_write_t *w = xmalloc(sizeof(*w));
            uv_buf_t out = uv_buf_init((char *) (uintptr_t) nr_reply,
                                       sizeof(nr_reply) - 1);

            if (uv_write(w, s, &out, 1, nr_write_cb) != 0) {
                free(w);
                nr_conn_close(c);
                return;
            }
            nr_requests++;
            start = i + 2;
            i++;
        }
    }
    if (start > 0) {
        memmove(c->buf, c->buf + start, c->len - start);
        c->len -= start;
    }
    c->scanned = c->len;
    if (c->len == NR_BUF)       /* a request that cannot fit */
        nr_conn_close(c);
}

static void nr_accept(uv_stream_t *server, int status)
{
    struct nr_conn *c;
    int rc;

    if (status < 0)
        return;
    c = xmalloc(sizeof(*c));
    c->len = 0;
    c->scanned = 0;
    if (nr_is_unix)
        rc = uv_pipe_init(nr_loop, &c->h.pipe, 0);
    else
        rc = uv_tcp_init(nr_loop, &c->h.tcp);
    if (rc != 0) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    if (uv_accept(server, &c->h.stream) != 0) {
        nr_conn_close(c);
        return;
    }
    if (!nr_is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    if (uv_read_start(&c->h.stream, nr_alloc, nr_read) != 0)
        nr_conn_close(c);
}

static void nr_walk_close(uv_handle_t *h, void *arg)
{
    (void) arg;
    if (!uv_is_closing(h))
        uv_close(h, h->data ? nr_close_cb : NULL);
}

static void nr_signal(uv_signal_t *sig, int signum)
{
    (void) sig;
    (void) signum;
    /* Only connections carry data pointers; the rest close plainly. */
    nr_listener.handle.data = NULL;
    nr_sigint.data = NULL;
    nr_sigterm.data = NULL;
    uv_walk(nr_loop, nr_walk_close, NULL);
}

static void nr_usage(void)
{
    fprintf(stderr, "usage: nullresp [-h host] [-p port] [-u path] [-b backlog]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *path = NULL;
    unsigned long long port = 0, backlog = 4096;
    int ch, rc;

    while ((ch = getopt(argc, argv, "h:p:u:b:")) != -1) {
        switch (ch) {
        case 'h': host = optarg; break;
        case 'p':
            if (util_parse_uint(optarg, 65535, &port) < 0)
                nr_usage();
            break;
        case 'u': path = optarg; break;
        case 'b':
            if (util_parse_uint(optarg, 65535, &backlog) < 0)
                nr_usage();
            break;
        default: nr_usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    nr_loop = uv_default_loop();

    if (path) {
        nr_is_unix = 1;
        unlink(path);
        if ((rc = uv_pipe_init(nr_loop, &nr_listener.pipe, 0)) != 0
            || (rc = uv_pipe_bind(&nr_listener.pipe, path)) != 0) {
            fprintf(stderr, "nullresp: %s: %s\n", path, uv_strerror(rc));
            return 1;
        }
    } else {
        struct sockaddr_storage ss;
        int namelen = sizeof(ss);

        if (strchr(host, ':'))
            rc = uv_ip6_addr(host, (int) port, (struct sockaddr_in6 *) &ss);
        else
            rc = uv_ip4_addr(host, (int) port, (struct sockaddr_in *) &ss);
        if (rc == 0)
            rc = uv_tcp_init(nr_loop, &nr_listener.tcp);
        if (rc == 0)
            rc = uv_tcp_bind(&nr_listener.tcp, (struct sockaddr *) &ss, 0);
        if (rc == 0)
            rc = uv_tcp_getsockname(&nr_listener.tcp, (struct sockaddr *) &ss, &namelen);
        if (rc != 0) {
            fprintf(stderr, "nullresp: %s:%llu: %s\n", host, port, uv_strerror(rc));
            return 1;
        }
        port = ntohs(ss.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *) &ss)->sin6_port
                     : ((struct sockaddr_in *) &ss)->sin_port);
    }
    nr_listener.handle.data = NULL;
    if ((rc = uv_listen(&nr_listener.stream, (int) backlog, nr_accept)) != 0) {
        fprintf(stderr, "nullresp: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    uv_signal_init(nr_loop, &nr_sigint);
    uv_signal_init(nr_loop, &nr_sigterm);
    nr_sigint.data = nr_sigterm.data = NULL;
    uv_signal_start(&nr_sigint, nr_signal, SIGINT);
    uv_signal_start(&nr_sigterm, nr_signal, SIGTERM);

    if (path)
        printf("path=%s\n", path);
    else
        printf("port=%llu\n", port);
    fflush(stdout);

    uv_run(nr_loop, UV_RUN_DEFAULT);
    fprintf(stderr, "nullresp: %llu requests answered\n", nr_requests);
    uv_loop_close(nr_loop);
    return 0;
}
