/*
 * NAME
 *	control 3 - the operator's unix socket
 * SYNOPSIS
 *	#include "control.h"
 *
 *	struct control *control_new(uv_loop_t *loop, const char *path,
 *				    unsigned mode, struct policy *p,
 *				    struct fleet *fleet,
 *				    control_reload_fn *reload, void *reload_arg,
 *				    char *err, size_t errlen);
 *	void control_free(struct control *c);
 * DESCRIPTION
 *	control_new() listens on the unix socket PATH ("unix:/path" or a
 *	plain absolute path) with permissions MODE.  A stale socket left by a
 *	dead process is replaced; a live one (something accepts on it), or a
 *	file that is not a socket, is an error.
 *
 *	Each connection carries one command line (at most CONTROL_LINE_MAX
 *	bytes, within CONTROL_IDLE_MS); the answer is "ok\n" or "error\n"
 *	followed by a body, and the server closes.  See control.h for the
 *	commands.  Answers from policy may arrive after the client went
 *	away: a connection is freed only when its handles are closed and no
 *	policy callback is outstanding (a reference count).
 *
 *	control_free() closes the listener and every connection and unlinks
 *	the socket if it is still the one this process created.  The loop
 *	must run afterwards so the close callbacks can free memory.
 * SEE ALSO
 *	policyctl(1), policy(3), stats(3)
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "fleet.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define CONTROL_LINE_MAX    1024        /* one command line, newline excluded */
#define CONTROL_IDLE_MS     5000        /* to send the line */
#define CONTROL_ANSWER_MS   30000       /* for policy to answer (Redis, ...) */
#define CONTROL_MAX_CONNS   16          /* operators, not clients: few */
#define CONTROL_MAX_ARGS    4

struct ctl_conn;

struct control {
    uv_loop_t *loop;
    uv_pipe_t server;
    char *path;
    dev_t dev;                  /* the socket we created, to unlink only it */
    ino_t ino;
    struct policy *p;
    struct fleet *fleet;
    control_reload_fn *reload;
    void *reload_arg;
    struct ctl_conn *conns;     /* open connections, for control_free */
    unsigned nconns;
};

struct ctl_conn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    uv_write_t wr;
    struct control *c;          /* NULL once closing */
    struct ctl_conn *prev, *next;
    int refs;                   /* pipe + timer handles + pending callback */
    int pending;                /* a policy answer is outstanding */
    int closing;
    int answered;               /* a reply was written (or abandoned) */
    size_t len;
    char line[CONTROL_LINE_MAX + 1];
    struct sbuf out;
};

static struct log_limiter ctl_rl = LOG_LIMITER_INIT(10000);

/* ---- connection lifetime ---- */

static void conn_unref(struct ctl_conn *cc)
{
    if (--cc->refs > 0)
        return;
    sbuf_free(&cc->out);
    free(cc);
}

static void conn_on_close(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(struct ctl_conn *cc)
{
    struct control *c = cc->c;

    if (cc->closing)
        return;
    cc->closing = 1;
    cc->answered = 1;
    if (c) {
        if (cc->prev)
            cc->prev->next = cc->next;
        else
            c->conns = cc->next;
        if (cc->next)
            cc->next->prev = cc->prev;
        c->nconns--;
        cc->c = NULL;
    }
    uv_close((uv_handle_t *) &cc->pipe, conn_on_close);
    uv_close((uv_handle_t *) &cc->timer, conn_on_close);
}

static void conn_on_write(uv_write_t *wr, int status)
{
    struct ctl_conn *cc = wr->data;

    (void) status;              /* closing either way */
    conn_close(cc);
}

/* conn_reply - "ok\n" or "error\n", the body with one final newline, then
 * close once written. */
static void conn_reply(struct ctl_conn *cc, int ok, const char *body)
{
    uv_buf_t b;
    size_t n;

    if (cc->answered || cc->closing)
        return;
    cc->answered = 1;
    uv_timer_stop(&cc->timer);
    /* what the command logged is written before its answer: an operator
     * (or a script) that reads the log after policyctl returns finds it.
     * Rare, so the extra write costs nothing on the request path. */
    log_flush();
    sbuf_reset(&cc->out);
    sbuf_puts(&cc->out, ok ? "ok\n" : "error\n");
    if (body && *body) {
        sbuf_puts(&cc->out, body);
        n = strlen(body);
        if (body[n - 1] != '\n')
            sbuf_puts(&cc->out, "\n");
    }
    b = uv_buf_init(cc->out.data, (unsigned) cc->out.len);
    cc->wr.data = cc;
    if (uv_write(&cc->wr, (uv_stream_t *) &cc->pipe, &b, 1, conn_on_write) != 0)
        conn_close(cc);
}

static void conn_on_timer(uv_timer_t *t)
{
    struct ctl_conn *cc = t->data;

    log_warn_rl(&ctl_rl, "control: connection timed out");
    if (cc->pending)
        conn_reply(cc, 0, "timed out waiting for the answer");
    else
        conn_close(cc);
}

/* Policy's answer: the connection may have gone meanwhile. */
static void conn_on_text(void *arg, int ok, const char *text)
{
    struct ctl_conn *cc = arg;
    const char *body = text ? text : "";

    if (!ok && strncmp(body, "error: ", 7) == 0)
        body += 7;              /* the "error" line already says so */
    cc->pending = 0;
    conn_reply(cc, ok, body);
    conn_unref(cc);
}

/* conn_wait - an answer will come through conn_on_text. */
static void conn_wait(struct ctl_conn *cc)
{
    uv_timer_start(&cc->timer, conn_on_timer, CONTROL_ANSWER_MS, 0);
    cc->refs++;             /* dropped by conn_on_text */
    cc->pending = 1;
}

/* ---- commands ---- */

/* Split LINE in place on blanks; returns the number of words, or -1 when
 * there are more than max. */
static int split_words(char *line, char **argv, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\t')
            *p++ = 0;
        if (*p == 0)
            return n;
        if (n == max)
            return -1;
        argv[n++] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
}

static const char control_help[] =
    "commands:\n"
    "  stats [text|json|prometheus]\n"
    "  client IP [json]\n"
    "  unblock IP\n"
    "  flush ADDRESS | flush *\n"
    "  siege [json]\n"
    "  siege start|stop DOMAIN [SECONDS]\n"
    "  fleet [json]\n"
    "  offenders [N] [json]\n"
    "  top\n"
    "  reload";

static void conn_command(struct ctl_conn *cc)
{
    struct control *c = cc->c;
    char *argv[CONTROL_MAX_ARGS];
    const unsigned char *q;
    int argc;

    for (q = (const unsigned char *) cc->line; *q; q++)
        if (*q < 0x20 && *q != '\t') {
            conn_reply(cc, 0, "control characters in the command");
            return;
        } else if (*q >= 0x7f) {
            conn_reply(cc, 0, "non-ASCII bytes in the command");
            return;
        }
    argc = split_words(cc->line, argv, CONTROL_MAX_ARGS);
    if (argc == 0) {
        conn_reply(cc, 0, "empty command");
        return;
    }
    if (argc < 0) {
        conn_reply(cc, 0, "too many arguments");
        return;
    }
    log_info("control: %s%s%s", argv[0], argc > 1 ? " " : "", argc > 1 ? argv[1] : "");

    if (strcmp(argv[0], "stats") == 0 && argc <= 2) {
        struct stats_extra x;
        struct sbuf body;
        const char *fmt = argc == 2 ? argv[1] : "text";

        memset(&x, 0, sizeof(x));
        sbuf_init(&body);
        policy_stats_extra(c->p, &x);
        if (strcmp(fmt, "text") == 0)
            stats_render_text(&body, &x);
        else if (strcmp(fmt, "json") == 0)
            stats_render_json(&body, &x);
        else if (strcmp(fmt, "prometheus") == 0)
            stats_render_prometheus(&body, &x);
        else {
            sbuf_free(&body);
            conn_reply(cc, 0, "usage: stats [text|json|prometheus]");
            return;
        }
        conn_reply(cc, 1, body.data);
        sbuf_free(&body);
    } else if ((strcmp(argv[0], "client") == 0 && (argc == 2 || (argc == 3
                && strcmp(argv[2], "json") == 0)))
               || (strcmp(argv[0], "unblock") == 0 && argc == 2)) {
        conn_wait(cc);
        if (argv[0][0] == 'c')
            policy_client_info(c->p, argv[1], argc == 3, conn_on_text, cc);
        else
            policy_unblock(c->p, argv[1], conn_on_text, cc);
    } else if (strcmp(argv[0], "flush") == 0 && argc == 2) {
        conn_wait(cc);
        policy_flush(c->p, strcmp(argv[1], "*") == 0 ? NULL : argv[1],
                     conn_on_text, cc);
    } else if (strcmp(argv[0], "siege") == 0 && (argc == 1 || (argc == 2
               && strcmp(argv[1], "json") == 0))) {
        cc->refs++;
        cc->pending = 1;
        policy_siege_info(c->p, argc == 2, conn_on_text, cc);
    } else if (strcmp(argv[0], "siege") == 0 && argc >= 3
               && (strcmp(argv[1], "start") == 0 || strcmp(argv[1], "stop") == 0)) {
        unsigned long long secs = 0;

        if (argc == 4 && util_parse_uint(argv[3], 30 * 86400ULL, &secs) < 0) {
            conn_reply(cc, 0, "usage: siege start|stop DOMAIN [SECONDS] "
                       "(SECONDS: 0 to 2592000)");
            return;
        }
        cc->refs++;
        cc->pending = 1;
        policy_siege_force(c->p, argv[2], argv[1][2] == 'a', secs * 1000,
                           conn_on_text, cc);
    } else if (strcmp(argv[0], "fleet") == 0 && (argc == 1 || (argc == 2
               && strcmp(argv[1], "json") == 0))) {
        conn_wait(cc);
        fleet_info(c->fleet, argc == 2, conn_on_text, cc);
    } else if (strcmp(argv[0], "offenders") == 0 && argc <= 3) {
        unsigned long long n = FLEET_TOP_OFFENDERS;
        int json = argc > 1 && strcmp(argv[argc - 1], "json") == 0;
        int nargs = argc - 1 - json;

        if (nargs > 1 || (nargs == 1 && util_parse_uint(argv[1], FLEET_OFFENDERS_MAX, &n) < 0)
            || n == 0) {
            conn_reply(cc, 0, "usage: offenders [N] [json] (N: 1 to 100)");
            return;
        }
        conn_wait(cc);
        fleet_offenders(c->fleet, (unsigned)n, json, conn_on_text, cc);
    } else if (strcmp(argv[0], "top") == 0 && argc == 1) {
        conn_wait(cc);
        fleet_top(c->fleet, conn_on_text, cc);
    } else if (strcmp(argv[0], "reload") == 0 && argc == 1) {
        char err[512];

        err[0] = 0;
        if (c->reload == NULL) {
            conn_reply(cc, 0, "reload is not available");
        } else if (c->reload(c->reload_arg, err, sizeof(err)) == 0) {
            conn_reply(cc, 1, "configuration reloaded");
        } else {
            conn_reply(cc, 0, err[0] ? err : "reload failed");
        }
    } else if (strcmp(argv[0], "help") == 0) {
        conn_reply(cc, 1, control_help);
    } else {
        struct sbuf msg;

        sbuf_init(&msg);
        sbuf_printf(&msg, "unknown command or wrong arguments: %.64s\n%s",
                    argv[0], control_help);
        conn_reply(cc, 0, msg.data);
        sbuf_free(&msg);
    }
}

/* ---- reading ---- */

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct ctl_conn *cc = h->data;

    (void) hint;
    /* One byte over the limit, so an over-long line is seen as such. */
    buf->base = cc->line + cc->len;
    buf->len = CONTROL_LINE_MAX + 1 - cc->len;
}

static void conn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct ctl_conn *cc = s->data;
    char *nl;

    (void) buf;
    if (cc->closing || cc->answered)
        return;
    if (n < 0) {
        uv_read_stop(s);
        if (n == UV_EOF && cc->len > 0) {
            /* A last line without a newline still counts. */
            cc->line[cc->len] = 0;
            conn_command(cc);
        } else {
            conn_close(cc);
        }
        return;
    }
    cc->len += (size_t) n;
    nl = memchr(cc->line, '\n', cc->len);
    if (nl == NULL) {
        if (cc->len > CONTROL_LINE_MAX) {
            uv_read_stop(s);
            conn_reply(cc, 0, "command line too long");
        } else if (memchr(cc->line, 0, cc->len)) {
            uv_read_stop(s);
            conn_reply(cc, 0, "NUL byte in the command");
        }
        return;
    }
    uv_read_stop(s);
    if (memchr(cc->line, 0, (size_t) (nl - cc->line)) != NULL) {
        conn_reply(cc, 0, "NUL byte in the command");
        return;
    }
    *nl = 0;
    if (nl > cc->line && nl[-1] == '\r')
        nl[-1] = 0;
    conn_command(cc);
}

static void control_on_conn(uv_stream_t *server, int status)
{
    struct control *c = server->data;
    struct ctl_conn *cc;

    if (status < 0) {
        log_warn_rl(&ctl_rl, "control: accept: %s", uv_strerror(status));
        return;
    }
    cc = xcalloc(1, sizeof(*cc));
    sbuf_init(&cc->out);
    cc->refs = 2;
    uv_pipe_init(c->loop, &cc->pipe, 0);
    uv_timer_init(c->loop, &cc->timer);
    cc->pipe.data = cc;
    cc->timer.data = cc;
    cc->c = c;
    cc->next = c->conns;
    if (c->conns)
        c->conns->prev = cc;
    c->conns = cc;
    c->nconns++;
    if (uv_accept(server, (uv_stream_t *) &cc->pipe) != 0) {
        conn_close(cc);
        return;
    }
    if (c->nconns > CONTROL_MAX_CONNS) {
        log_warn_rl(&ctl_rl, "control: more than %d connections, refusing",
                    CONTROL_MAX_CONNS);
        conn_reply(cc, 0, "too many control connections");
        return;
    }
    uv_timer_start(&cc->timer, conn_on_timer, CONTROL_IDLE_MS, 0);
    if (uv_read_start((uv_stream_t *) &cc->pipe, conn_alloc, conn_on_read) != 0)
        conn_close(cc);
}

/* ---- the listener ---- */

/* A socket file at PATH: replace it if nobody accepts on it. */
static int clear_stale(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, r;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path,
                                               strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s: exists and is not a socket", path);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* Start-up only, local and immediate: blocking is fine here. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    r = connect(fd, (struct sockaddr *) &sun, sizeof(sun));
    close(fd);
    if (r == 0) {
        snprintf(err, errlen, "%s: another process is listening on it", path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s: cannot remove stale socket: %s", path,
                 strerror(errno));
        return -1;
    }
    log_info("control: replaced stale socket %s", path);
    return 0;
}

static void control_on_server_close(uv_handle_t *h)
{
    struct control *c = h->data;

    free(c->path);
    free(c);
}

struct control *control_new(uv_loop_t *loop, const char *path, unsigned mode,
                            struct policy *p, struct fleet *fleet,
                            control_reload_fn *reload, void *reload_arg,
                            char *err, size_t errlen)
{
    struct control *c;
    struct stat st;
    mode_t old;
    int r;

    if (path && strncmp(path, "unix:", 5) == 0)
        path += 5;
    if (path == NULL || path[0] != '/') {
        snprintf(err, errlen, "control socket: need unix:/absolute/path");
        return NULL;
    }
    if (strlen(path) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
        snprintf(err, errlen, "control socket %s: path too long (at most %zu bytes)",
                 path, sizeof(((struct sockaddr_un *) 0)->sun_path) - 1);
        return NULL;
    }
    if (mode == 0 || mode > 0777) {
        snprintf(err, errlen, "control socket %s: bad mode %o", path, mode);
        return NULL;
    }
    if (clear_stale(path, err, errlen) != 0)
        return NULL;

    c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->path = xstrdup(path);
    c->p = p;
    c->fleet = fleet;
    c->reload = reload;
    c->reload_arg = reload_arg;
    uv_pipe_init(loop, &c->server, 0);
    c->server.data = c;

    /* Never let the socket exist with wider permissions than asked for,
     * even for the moment between bind and chmod. */
    old = umask((mode_t) (~mode & 0777));
    r = uv_pipe_bind(&c->server, c->path);
    umask(old);
    if (r == 0 && chmod(c->path, (mode_t) mode) != 0)
        r = uv_translate_sys_error(errno);
    if (r == 0)
        r = uv_listen((uv_stream_t *) &c->server, 16, control_on_conn);
    if (r != 0) {
        snprintf(err, errlen, "control socket %s: %s", c->path, uv_strerror(r));
        unlink(c->path);
        uv_close((uv_handle_t *) &c->server, control_on_server_close);
        return NULL;
    }
    if (stat(c->path, &st) == 0) {
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    log_info("control: listening on unix:%s mode %04o", c->path, mode);
    return c;
}

void control_free(struct control *c)
{
    struct stat st;

    if (c == NULL)
        return;
    while (c->conns)
        conn_close(c->conns);
    /* Only our own socket: a successor may already have replaced it. */
    if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    uv_close((uv_handle_t *) &c->server, control_on_server_close);
}
