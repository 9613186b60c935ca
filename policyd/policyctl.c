/*
 * NAME
 *	policyctl 1 - talk to a running policyd over its control socket
 * SYNOPSIS
 *	policyctl [-s SOCKET] stats [--json | --prometheus]
 *	policyctl [-s SOCKET] client ADDRESS [--json]
 *	policyctl [-s SOCKET] unblock ADDRESS
 *	policyctl [-s SOCKET] flush ADDRESS | --all
 *	policyctl [-s SOCKET] siege [--json]
 *	policyctl [-s SOCKET] siege start|stop DOMAIN [SECONDS]
 *	policyctl [-s SOCKET] fleet [--json]
 *	policyctl [-s SOCKET] offenders [N] [--json]
 *	policyctl [-s SOCKET] top [--count N]
 *	policyctl [-s SOCKET] reload
 *	policyctl -h | -V
 * DESCRIPTION
 *	Sends one command line to policyd's control socket (see control(3)),
 *	copies an "ok" answer's body to stdout and an "error" answer's body
 *	to stderr.  A plain blocking client: it is not on the mail path.
 *
 *	top asks "top" once a second.  On a terminal it draws the answer
 *	(all but its first line) full-screen with ncurses and quits on q;
 *	otherwise it prints the answer's first line, the one-line summary,
 *	once per refresh, until --count refreshes were shown (0: forever).
 *
 *	Exit status: 0 ok, 1 policyd answered "error" or could not be
 *	reached, 2 usage error.  See man/policyctl.1.
 */

#include <curses.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

#ifndef POLICYD_VERSION
#define POLICYD_VERSION "unknown"
#endif

#define DEFAULT_SOCKET  "/run/policyd/control.sock"
#define ARG_MAX_LEN     900             /* the server takes 1 KiB lines */
#define REPLY_MAX       (16u << 20)     /* a stats reply is a few KiB */
#define TIMEOUT_S       60              /* longer than the server's own */
#define TOP_REFRESH_MS  1000

static const char usage_text[] =
    "usage: policyctl [-s SOCKET] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  stats [--json|--prometheus]  counters, latency, top offending networks\n"
    "  client ADDRESS [--json]      the client's standing per network level: counts,\n"
    "                               share, stage and why, when the stage ends\n"
    "  unblock ADDRESS              forget a client network's count and block\n"
    "  flush ADDRESS | --all        drop cached answers for a recipient, or all\n"
    "  siege [--json]               each domain: under siege or not, since when,\n"
    "                               rate, baseline, clients deferred and admitted\n"
    "  siege start|stop DOMAIN [SECONDS]\n"
    "                               begin or end a siege on every policyd; no\n"
    "                               automatic change for SECONDS\n"
    "  fleet [--json]               every policyd sharing this one's Redis: up or\n"
    "                               stale, version, uptime, req/s, verdicts, p99,\n"
    "                               health; flags a config or version that differs\n"
    "  offenders [N] [--json]       the N (default 10, at most 100) networks with\n"
    "                               the highest standing, fleet-wide, stage, time left\n"
    "  top [--count N]              live view, refreshed every second (q quits);\n"
    "                               one line per refresh when not on a terminal\n"
    "  reload                       re-read the configuration\n"
    "\n"
    "options:\n"
    "  -s SOCKET  control socket (default " DEFAULT_SOCKET ")\n"
    "  -h         this help\n"
    "  -V         version\n";

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("policyctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    exit(2);
}

/* An argument goes into one command line: no blanks, no control bytes. */
static const char *check_arg(const char *what, const char *s)
{
    const unsigned char *p;

    if (*s == 0)
        usage_error("empty %s", what);
    if (strlen(s) > ARG_MAX_LEN)
        usage_error("%s too long", what);
    for (p = (const unsigned char *) s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            usage_error("%s contains blanks or control characters", what);
    return s;
}

/* build_command - the line to send, from argv after the options. */
static void build_command(int argc, char **argv, char *line, size_t cap)
{
    const char *cmd;

    if (argc < 1)
        usage_error("%s", "no command given");
    cmd = argv[0];
    if (strcmp(cmd, "stats") == 0) {
        if (argc == 1)
            snprintf(line, cap, "stats\n");
        else if (argc == 2 && strcmp(argv[1], "--json") == 0)
            snprintf(line, cap, "stats json\n");
        else if (argc == 2 && strcmp(argv[1], "--prometheus") == 0)
            snprintf(line, cap, "stats prometheus\n");
        else
            usage_error("%s", "stats takes --json or --prometheus");
    } else if (strcmp(cmd, "client") == 0 && argc == 3) {
        if (strcmp(argv[2], "--json") != 0)
            usage_error("%s", "client takes ADDRESS [--json]");
        snprintf(line, cap, "client %s json\n", check_arg("ADDRESS", argv[1]));
    } else if (strcmp(cmd, "client") == 0 || strcmp(cmd, "unblock") == 0) {
        if (argc != 2)
            usage_error("%s needs one ADDRESS", cmd);
        snprintf(line, cap, "%s %s\n", cmd, check_arg("ADDRESS", argv[1]));
    } else if (strcmp(cmd, "flush") == 0) {
        if (argc != 2)
            usage_error("%s", "flush needs ADDRESS or --all");
        if (strcmp(argv[1], "--all") == 0 || strcmp(argv[1], "*") == 0)
            snprintf(line, cap, "flush *\n");
        else if (argv[1][0] == '-')
            usage_error("unknown flush option %s", argv[1]);
        else
            snprintf(line, cap, "flush %s\n", check_arg("ADDRESS", argv[1]));
    } else if (strcmp(cmd, "siege") == 0) {
        if (argc == 1)
            snprintf(line, cap, "siege\n");
        else if (argc == 2 && strcmp(argv[1], "--json") == 0)
            snprintf(line, cap, "siege json\n");
        else if ((argc == 3 || argc == 4)
                 && (strcmp(argv[1], "start") == 0 || strcmp(argv[1], "stop") == 0))
            snprintf(line, cap, "siege %s %s%s%s\n", argv[1], check_arg("DOMAIN", argv[2]),
                     argc == 4 ? " " : "", argc == 4 ? check_arg("SECONDS", argv[3]) : "");
        else
            usage_error("%s", "siege takes [--json] or start|stop DOMAIN [SECONDS]");
    } else if (strcmp(cmd, "fleet") == 0) {
        if (argc == 1)
            snprintf(line, cap, "fleet\n");
        else if (argc == 2 && strcmp(argv[1], "--json") == 0)
            snprintf(line, cap, "fleet json\n");
        else
            usage_error("%s", "fleet takes [--json]");
    } else if (strcmp(cmd, "offenders") == 0) {
        int json = argc > 1 && strcmp(argv[argc - 1], "--json") == 0;
        int nargs = argc - 1 - json;

        if (nargs > 1 || (nargs == 1 && argv[1][0] == '-'))
            usage_error("%s", "offenders takes [N] [--json]");
        snprintf(line, cap, "offenders%s%s%s\n", nargs ? " " : "",
                 nargs ? check_arg("N", argv[1]) : "", json ? " json" : "");
    } else if (strcmp(cmd, "reload") == 0) {
        if (argc != 1)
            usage_error("%s", "reload takes no arguments");
        snprintf(line, cap, "reload\n");
    } else {
        usage_error("unknown command '%s'", cmd);
    }
}

static void end_curses(void);

static int connect_socket(const char *path)
{
    struct sockaddr_un sun;
    struct timeval tv = { TIMEOUT_S, 0 };
    int fd, e;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        end_curses();
        fprintf(stderr, "policyctl: %s: socket path too long\n", path);
        exit(2);
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        end_curses();
        fprintf(stderr, "policyctl: socket: %s\n", strerror(errno));
        exit(1);
    }
    if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) != 0) {
        e = errno;
        end_curses();
        fprintf(stderr, "policyctl: cannot connect to %s: %s", path, strerror(e));
        if (e == EACCES || e == EPERM)
            fputs(" (policyctl must run as a user in the socket's group)\n", stderr);
        else if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
            fprintf(stderr, " (is policyd running with [server] control = unix:%s?)\n",
                    path);
        else
            fputs("\n", stderr);
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            end_curses();
            fprintf(stderr, "policyctl: send: %s\n", n < 0 ? strerror(errno) : "closed");
            exit(1);
        }
        buf += n;
        len -= (size_t) n;
    }
}

/* read_reply - everything until EOF, NUL-terminated. */
static char *read_reply(int fd, size_t *lenp)
{
    size_t len = 0, cap = 8192;
    char *buf = malloc(cap);

    if (buf == NULL) {
        end_curses();
        fputs("policyctl: out of memory\n", stderr);
        exit(1);
    }
    for (;;) {
        ssize_t n;

        if (cap - len < 4096) {
            char *nb;

            if (cap >= REPLY_MAX) {
                end_curses();
                fputs("policyctl: reply too large\n", stderr);
                exit(1);
            }
            nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                end_curses();
                fputs("policyctl: out of memory\n", stderr);
                exit(1);
            }
            buf = nb;
            cap *= 2;
        }
        n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            end_curses();
            fprintf(stderr, "policyctl: no answer from policyd: %s\n",
                    errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
            exit(1);
        }
        if (n == 0)
            break;
        len += (size_t) n;
    }
    buf[len] = 0;
    *lenp = len;
    return buf;
}

/* transact - send line, answer the reply; exits when policyd cannot be
 * reached.  *ok: 1 for "ok", 0 for "error", -1 for anything else.  The
 * body (NUL-terminated) is in the returned buffer at *body. */
static char *transact(const char *path, const char *line, int *ok, char **body,
                      size_t *blen)
{
    size_t len;
    int fd = connect_socket(path);
    char *reply;

    send_all(fd, line, strlen(line));
    reply = read_reply(fd, &len);
    close(fd);
    *ok = -1;
    *body = reply;
    *blen = len;
    if (strncmp(reply, "ok\n", 3) == 0) {
        *ok = 1;
        *body = reply + 3;
        *blen = len - 3;
    } else if (strncmp(reply, "error\n", 6) == 0) {
        *ok = 0;
        *body = reply + 6;
        *blen = len - 6;
    }
    return reply;
}

/* report_error - an "error" body or an unexpected reply, to stderr; 1. */
static int report_error(const char *path, int ok, const char *body, size_t blen)
{
    end_curses();
    if (ok == 0) {
        fprintf(stderr, "policyctl: %s", body);
        if (blen == 0 || body[blen - 1] != '\n')
            fputs(blen == 0 ? "policyd reported an error\n" : "\n", stderr);
        return 1;
    }
    fprintf(stderr, "policyctl: unexpected answer from %s%s\n", path,
            blen == 0 ? " (connection closed without a reply)" : "");
    return 1;
}

static int curses_on;

/* end_curses - leave the full screen first, so that a message on the way
 * out (policyd went away) stays on the operator's terminal */
static void end_curses(void)
{
    if (curses_on) {
        curses_on = 0;
        endwin();
    }
}

/* top_draw - the answer without its first line, clipped to the screen. */
static void top_draw(const char *body)
{
    const char *p = strchr(body, '\n');
    int row = 0;

    erase();
    for (p = p ? p + 1 : body; *p && row < LINES - 1; row++) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);

        mvaddnstr(row, 0, p, n < COLS ? n : COLS);
        p = nl ? nl + 1 : p + n;
    }
    attron(A_REVERSE);
    mvaddnstr(LINES - 1, 0, "q: quit   refreshed every second", COLS);
    attroff(A_REVERSE);
    refresh();
}

/* top_wait - on the terminal, wait out the refresh; 1 when q was typed. */
static int top_wait(void)
{
    struct timeval start, now;
    long left;

    gettimeofday(&start, NULL);
    for (;;) {
        gettimeofday(&now, NULL);
        left = TOP_REFRESH_MS - ((now.tv_sec - start.tv_sec) * 1000
                                 + (now.tv_usec - start.tv_usec) / 1000);
        if (!isatty(STDIN_FILENO)) {    /* no keys to read: just wait */
            if (left <= 0)
                return 0;
            struct timespec ts = { left / 1000, (left % 1000) * 1000000L };
            nanosleep(&ts, NULL);
            continue;
        }
        /* a key is read even when the refresh took the whole period (a
         * busy machine): otherwise q would never be seen */
        timeout(left > 0 ? (int)left : 0);
        int ch = getch();
        if (ch == 'q' || ch == 'Q')
            return 1;
        if (ch == KEY_RESIZE || ch == 12 || left <= 0)  /* ^L: redraw at once */
            return 0;
    }
}

static int run_top(const char *path, unsigned long long count)
{
    int tty = isatty(STDOUT_FILENO);
    unsigned long long shown = 0;

    if (tty) {
        atexit(end_curses);
        initscr();
        curses_on = 1;
        cbreak();
        noecho();
        keypad(stdscr, TRUE);
        curs_set(0);
    }
    for (;;) {
        char *body;
        size_t blen;
        int ok;
        char *reply = transact(path, "top\n", &ok, &body, &blen);

        if (ok != 1) {
            end_curses();
            ok = report_error(path, ok, body, blen);
            free(reply);
            return ok;
        }
        if (tty) {
            top_draw(body);
        } else {
            char *nl = strchr(body, '\n');
            if (nl)
                *nl = 0;
            printf("%s\n", body);
            if (fflush(stdout) != 0) {
                free(reply);
                return 1;
            }
        }
        free(reply);
        if (count && ++shown >= count)
            break;
        if (tty ? top_wait() : (usleep(TOP_REFRESH_MS * 1000), 0))
            break;
    }
    end_curses();
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_SOCKET;
    char line[ARG_MAX_LEN + 64];
    char *reply, *body;
    size_t blen;
    int opt, ok;

    while ((opt = getopt(argc, argv, "+s:hV")) != -1) {
        switch (opt) {
        case 's':
            path = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'V':
            printf("policyctl %s\n", POLICYD_VERSION);
            return 0;
        default:
            fputs(usage_text, stderr);
            return 2;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc >= 1 && strcmp(argv[0], "top") == 0) {
        unsigned long long count = 0;

        if (argc == 3 && strcmp(argv[1], "--count") == 0) {
            if (util_parse_uint(argv[2], 1000000000ULL, &count) < 0)
                usage_error("%s", "--count takes a number");
        } else if (argc != 1) {
            usage_error("%s", "top takes [--count N]");
        }
        return run_top(path, count);
    }
    build_command(argc, argv, line, sizeof(line));

    reply = transact(path, line, &ok, &body, &blen);
    if (ok == 1) {
        fwrite(body, 1, blen, stdout);
        free(reply);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    ok = report_error(path, ok, body, blen);
    free(reply);
    return ok;
}
