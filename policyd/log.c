/*
 * log - stderr or syslog(LOG_MAIL), written once per loop turn
 *
 * On stderr each line carries a timestamp and level, as systemd's journal
 * or a terminal wants; on syslog the facility is mail, like Postfix's own
 * daemons, so the lines land next to smtpd's in the mail log.
 *
 * A line is formatted into one per-process buffer (LOG_BUF_SIZE) and the
 * buffer is written once per loop turn, not once per line: a uv_check
 * handle flushes after the turn's I/O callbacks and a uv_prepare handle
 * before the loop sleeps, so a line waits at most for the rest of the turn
 * that logged it.  A buffer about to fill is flushed at once, and so is an
 * error (it may be the last word before abort()).  Before log_attach() and
 * after log_detach() each line is written as it comes.
 *
 * Nothing here blocks the loop.  stderr is written through a non-blocking
 * descriptor of our own (/proc/self/fd/2 opened again for a pipe or a
 * terminal, send(MSG_DONTWAIT) for a socket; a regular file does not
 * block).  syslog goes through our own non-blocking socket to /dev/log
 * (POLICYD_SYSLOG_SOCKET in the environment names another, for tests),
 * one datagram per line as syslog(3) sends them, a whole turn's lines in
 * one sendmmsg().  Output the writer does not take stays buffered and is
 * retried every RETRY_MS; a line that finds the buffer full is dropped and
 * counted, and the count is logged as soon as the writer catches up.
 *
 * Formatting is the rest of a line's cost, so the common conversions (%s,
 * %.Ns, %c, %d, %i, %u with l, ll or z, and %.Nf with N <= 9 while
 * value * 10^N < 1e18) are done here; any other directive sends the whole line
 * through vsnprintf.  %.Nf is rounded from value * 10^N, which can differ
 * from printf's in the last digit for values exactly halfway.
 */

#define _GNU_SOURCE             /* sendmmsg */

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define LOG_BUF_SIZE (64 * 1024)    /* what may wait for the writer */
#define LINE_MAX_LEN 2048           /* one line, header included; longer is cut */
#define RETRY_MS 50                 /* a writer that said EAGAIN is tried again */
#define WAIT_MS 2000                /* off the loop, a blocked writer is waited for */
#define CONNECT_EVERY_MS 1000       /* a missing syslog socket is tried again */
#define DGRAM_BATCH 64              /* datagrams per sendmmsg() */

static const char *const names[] = { "debug", "info", "warning", "error" };
static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };

static struct {
    enum log_level min;
    const char *ident;
    long pid;
    int syslog;                 /* the target: syslog, else stderr */
    int fd, fd_is_sock;         /* stderr's writer */
    int sock, sock_stream;      /* syslog's socket, -1 when not connected */
    uint64_t next_connect_ms;
    char buf[LOG_BUF_SIZE];     /* lines: '\n'-ended for stderr, '\0' for syslog */
    size_t len;
    unsigned long dropped;      /* lines that found the buffer full */
    uv_loop_t *loop;            /* NULL: write each line as it comes */
    uv_check_t check;
    uv_prepare_t prepare;
    uv_timer_t retry;
    time_t stamp_sec;           /* the second stamp[] was made for, both forms */
    int stamp_syslog;
    char stamp[32];
    size_t stamp_len;
    /* per level, what comes before and after the stamp (log_init) */
    char pre[4][8], post[4][96];
    size_t pre_len[4], post_len[4];
    int headers;                /* pre[] and post[] are made */
} L = { .min = LOG_LVL_INFO, .ident = "policyd", .fd = 2, .sock = -1, .stamp_sec = -1 };

/* ---- the writers ---- */

static void syslog_connect(void)
{
    const char *path = getenv("POLICYD_SYSLOG_SOCKET");
    struct sockaddr_un sa;
    static const int types[] = { SOCK_DGRAM, SOCK_STREAM };

    if (util_now_ms() < L.next_connect_ms)
        return;
    L.next_connect_ms = util_now_ms() + CONNECT_EVERY_MS;
    if (!path || !*path)
        path = "/dev/log";
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    for (size_t i = 0; i < 2; i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            L.sock = fd;
            L.sock_stream = types[i] == SOCK_STREAM;
            return;
        }
        int e = errno;
        close(fd);
        if (e != EPROTOTYPE)    /* a stream /dev/log refuses datagrams so */
            return;
    }
}

static void syslog_close(void)
{
    if (L.sock >= 0)
        close(L.sock);
    L.sock = -1;
}

/* send_datagrams - the '\0'-ended lines of p[0..n), one datagram each:
 * the bytes of those sent, or -1 with errno */
static ssize_t send_datagrams(char *p, size_t n)
{
    struct mmsghdr m[DGRAM_BATCH];
    struct iovec iov[DGRAM_BATCH];
    size_t end[DGRAM_BATCH], off = 0;
    unsigned k = 0;

    memset(m, 0, sizeof(m));
    while (k < DGRAM_BATCH && off < n) {
        char *z = memchr(p + off, '\0', n - off);
        size_t len = (size_t)(z - (p + off));
        iov[k].iov_base = p + off;
        iov[k].iov_len = len;
        m[k].msg_hdr.msg_iov = &iov[k];
        m[k].msg_hdr.msg_iovlen = 1;
        off += len + 1;
        end[k++] = off;
    }
    int sent = sendmmsg(L.sock, m, k, MSG_DONTWAIT | MSG_NOSIGNAL);
    return sent > 0 ? (ssize_t)end[sent - 1] : -1;
}

/* write_some - hand buf to the target: bytes taken, or -1 with errno */
static ssize_t write_some(char *p, size_t n)
{
    if (!L.syslog)
        return L.fd_is_sock ? send(L.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                            : write(L.fd, p, n);
    if (L.sock < 0)
        syslog_connect();
    if (L.sock < 0) {
        errno = ENOTCONN;
        return -1;
    }
    if (L.sock_stream)          /* each message ends in its '\0', as syslog(3) sends */
        return send(L.sock, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    return send_datagrams(p, n);
}

/* flush_once - write what the target takes now; 1 if it would block */
static int flush_once(void)
{
    size_t done = 0;
    int blocked = 0, reconnected = 0;

    while (done < L.len) {
        ssize_t n = write_some(L.buf + done, L.len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            blocked = 1;
            break;
        } else if (L.syslog && L.sock >= 0 && !reconnected) {
            syslog_close();     /* the syslog daemon restarted: once more */
            L.next_connect_ms = 0;
            reconnected = 1;
        } else {
            done = L.len;       /* no one to write to: as syslog(3) does, drop it */
        }
    }
    memmove(L.buf, L.buf + done, L.len - done);
    L.len -= done;
    return blocked;
}

static void put_line(enum log_level lvl, const char *fmt, va_list ap);
static void make_headers(void);

static void put_fmt(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put_fmt(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    put_line(lvl, fmt, ap);
    va_end(ap);
}

static void retried(uv_timer_t *t);

/* flush - write the buffer; off the loop (wait_ms) wait that long for a
 * blocked writer, on it come back in RETRY_MS */
static void flush(int wait_ms)
{
    uint64_t deadline = util_now_ms() + (uint64_t)wait_ms;

    while (L.len) {
        if (!flush_once()) {
            if (L.dropped && L.len == 0) {
                unsigned long n = L.dropped;
                L.dropped = 0;
                put_fmt(LOG_LVL_WARN, "%lu log lines dropped: the log took them "
                        "slower than they came", n);
            }
            continue;
        }
        uint64_t now = util_now_ms();
        if (wait_ms == 0 || now >= deadline) {
            if (L.loop && !uv_is_active((uv_handle_t *)&L.retry))
                uv_timer_start(&L.retry, retried, RETRY_MS, 0);
            return;
        }
        struct pollfd pfd = { L.syslog ? L.sock : L.fd, POLLOUT, 0 };
        poll(&pfd, 1, (int)(deadline - now));
    }
}

static void retried(uv_timer_t *t)
{
    (void)t;
    flush(0);
}

static void turn(uv_handle_t *h)
{
    (void)h;
    if (L.len)
        flush(0);
}

static void turn_check(uv_check_t *h)
{
    turn((uv_handle_t *)h);
}

static void turn_prepare(uv_prepare_t *h)
{
    turn((uv_handle_t *)h);
}

/* ---- lines ---- */

/* stamp - the per-second part of the timestamp, made once a second */
static void stamp(time_t sec)
{
    struct tm tm;

    if (sec != L.stamp_sec || L.syslog != L.stamp_syslog) {
        if (L.syslog) {
            localtime_r(&sec, &tm);
            L.stamp_len = strftime(L.stamp, sizeof(L.stamp), "%b %e %H:%M:%S", &tm);
        } else {
            gmtime_r(&sec, &tm);
            L.stamp_len = strftime(L.stamp, sizeof(L.stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        }
        L.stamp_sec = sec;
        L.stamp_syslog = L.syslog;
    }
}

/* header - "2026-11-30T04:02:46.123Z policyd: info: " on stderr,
 * "<22>Nov 30 04:02:46 policyd[42]: " on syslog; its length */
static size_t header(char *p, enum log_level lvl)
{
    struct timespec ts;
    size_t n = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    stamp(ts.tv_sec);
    memcpy(p, L.pre[lvl], L.pre_len[lvl]);
    n += L.pre_len[lvl];
    memcpy(p + n, L.stamp, L.stamp_len);
    n += L.stamp_len;
    if (!L.syslog) {
        long ms = ts.tv_nsec / 1000000L;
        p[n++] = '.';
        p[n++] = (char)('0' + ms / 100);
        p[n++] = (char)('0' + ms / 10 % 10);
        p[n++] = (char)('0' + ms % 10);
    }
    memcpy(p + n, L.post[lvl], L.post_len[lvl]);
    return n + L.post_len[lvl];
}

/* ---- formatting ---- */

struct out {
    char *p;
    size_t n, cap;              /* cap includes the final '\0' */
};

static void out_mem(struct out *o, const char *s, size_t n)
{
    size_t room = o->cap - 1 - o->n;
    if (n > room)
        n = room;
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void out_uint(struct out *o, unsigned long long v, int neg)
{
    char d[24];
    size_t i = sizeof(d);

    do
        d[--i] = (char)('0' + v % 10);
    while (v /= 10);
    if (neg)
        d[--i] = '-';
    out_mem(o, d + i, sizeof(d) - i);
}

static void out_int(struct out *o, long long v)
{
    /* the magnitude of LLONG_MIN as unsigned, without overflow */
    out_uint(o, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, v < 0);
}

/* out_fixed - %.Nf; 0 when v is beyond what this does exactly */
static int out_fixed(struct out *o, double v, int prec)
{
    static const double scale[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };
    int neg = v < 0;
    double a = neg ? -v : v;

    if (!(a * scale[prec] < 1e18))  /* what an unsigned long long holds; NaN too */
        return 0;
    unsigned long long q = (unsigned long long)(a * scale[prec] + 0.5);
    unsigned long long whole = q / (unsigned long long)scale[prec];
    unsigned long long frac = q % (unsigned long long)scale[prec];
    out_uint(o, whole, neg && q != 0);
    if (prec) {
        char d[10];
        for (int i = prec - 1; i >= 0; i--, frac /= 10)
            d[i] = (char)('0' + frac % 10);
        out_mem(o, ".", 1);
        out_mem(o, d, (size_t)prec);
    }
    return 1;
}

/* fmt_fast - the message into buf[0..cap), '\0'-ended: its length, or -1
 * for a directive left to vsnprintf (ap is then half consumed) */
static int fmt_fast(char *buf, size_t cap, const char *fmt, va_list ap)
{
    struct out o = { buf, 0, cap };

    for (const char *f = fmt; *f; f++) {
        const char *pct = strchr(f, '%');
        if (!pct) {
            out_mem(&o, f, strlen(f));
            break;
        }
        out_mem(&o, f, (size_t)(pct - f));
        f = pct + 1;
        int prec = -1, lng = 0;
        if (*f == '.') {
            prec = 0;
            for (f++; *f >= '0' && *f <= '9' && prec < 100000; f++)
                prec = prec * 10 + (*f - '0');
        }
        for (; *f == 'l' || *f == 'z'; f++)
            lng += *f == 'z' ? 3 : 1;
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (lng)
                return -1;
            if (!s)
                s = "(null)";
            out_mem(&o, s, prec < 0 ? strlen(s) : strnlen(s, (size_t)prec));
            break;
        }
        case 'd':
        case 'i':
            if (prec >= 0 || lng > 3)
                return -1;
            out_int(&o, lng == 0 ? va_arg(ap, int) : lng == 1 ? va_arg(ap, long)
                        : lng == 2 ? va_arg(ap, long long) : (long long)va_arg(ap, ssize_t));
            break;
        case 'u':
            if (prec >= 0 || lng > 3)
                return -1;
            out_uint(&o, lng == 0 ? va_arg(ap, unsigned) : lng == 1 ? va_arg(ap, unsigned long)
                         : lng == 2 ? va_arg(ap, unsigned long long) : va_arg(ap, size_t), 0);
            break;
        case 'f':
            if (lng || prec < 0 || prec > 9 || !out_fixed(&o, va_arg(ap, double), prec))
                return -1;
            break;
        case 'c': {
            char ch = (char)va_arg(ap, int);
            if (lng || prec >= 0)
                return -1;
            out_mem(&o, &ch, 1);
            break;
        }
        case '%':
            if (lng || prec >= 0)
                return -1;
            out_mem(&o, "%", 1);
            break;
        default:
            return -1;
        }
    }
    buf[o.n] = '\0';
    return (int)o.n;
}

/* put_line - format one line into the buffer, or count it dropped */
static void put_line(enum log_level lvl, const char *fmt, va_list ap)
{
    char *p = L.buf + L.len;
    va_list try;

    if (LOG_BUF_SIZE - L.len < LINE_MAX_LEN) {
        L.dropped++;
        return;
    }
    if (!L.headers)
        make_headers();         /* a line before log_init() */
    size_t h = header(p, lvl);
    /* the message; its '\0' becomes the line's end */
    size_t avail = LINE_MAX_LEN - h;
    va_copy(try, ap);
    int m = fmt_fast(p + h, avail, fmt, try);
    va_end(try);
    if (m < 0)
        m = vsnprintf(p + h, avail, fmt, ap);
    if (m < 0)
        m = 0;
    if ((size_t)m >= avail)
        m = (int)avail - 1;
    p[h + (size_t)m] = L.syslog ? '\0' : '\n';
    L.len += h + (size_t)m + 1;
}

static void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl < L.min)
        return;
    if (LOG_BUF_SIZE - L.len < LINE_MAX_LEN)
        flush(L.loop ? 0 : WAIT_MS);
    put_line(lvl, fmt, ap);
    if (!L.loop)
        flush(WAIT_MS);
    else if (lvl == LOG_LVL_ERR)
        flush(0);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lvl, fmt, ap);
    va_end(ap);
}

void log_warn_rl(struct log_limiter *rl, const char *fmt, ...)
{
    uint64_t now = util_now_ms();
    va_list ap;

    if (rl->last_ms && now - rl->last_ms < rl->interval_ms) {
        rl->suppressed++;
        return;
    }
    if (rl->suppressed)
        log_warn("%lu similar warnings suppressed", rl->suppressed);
    rl->last_ms = now;
    rl->suppressed = 0;
    va_start(ap, fmt);
    log_vmsg(LOG_LVL_WARN, fmt, ap);
    va_end(ap);
}

/* ---- set-up ---- */

void log_init(const char *ident, int syslog_on, enum log_level min)
{
    if (syslog_on != L.syslog) {
        /* lines are formed for their target: what the old one did not take
         * now is dropped (and counted) rather than wait */
        flush(0);
        if (L.len) {
            for (size_t i = 0; i < L.len; i++)
                L.dropped += L.buf[i] == (L.syslog ? '\0' : '\n');
            L.len = 0;
        }
        if (!syslog_on)
            syslog_close();
        L.syslog = syslog_on;
        L.next_connect_ms = 0;
        if (syslog_on)
            syslog_connect();
    }
    L.ident = ident;
    L.min = min;
    make_headers();
}

/* make_headers - what surrounds the stamp, for the target and ident */
static void make_headers(void)
{
    L.pid = (long)getpid();
    L.headers = 1;
    for (int lvl = 0; lvl < 4; lvl++) {
        int pre = 0, post;
        if (L.syslog) {
            pre = snprintf(L.pre[lvl], sizeof(L.pre[lvl]), "<%d>", LOG_MAIL | prio[lvl]);
            post = snprintf(L.post[lvl], sizeof(L.post[lvl]), " %.40s[%ld]: %s%s", L.ident,
                            L.pid, lvl == LOG_LVL_INFO ? "" : names[lvl],
                            lvl == LOG_LVL_INFO ? "" : ": ");
        } else {
            post = snprintf(L.post[lvl], sizeof(L.post[lvl]), "Z %.40s: %s: ", L.ident,
                            names[lvl]);
        }
        L.pre_len[lvl] = (size_t)pre;
        L.post_len[lvl] = (size_t)post;
    }
}

/* stderr_open - a descriptor for stderr that never blocks the loop */
static void stderr_open(void)
{
    struct stat st;

    if (fstat(2, &st) != 0 || S_ISREG(st.st_mode))
        return;                 /* a file: writes do not wait for a reader */
    if (S_ISSOCK(st.st_mode)) {
        L.fd_is_sock = 1;       /* the journal's stream: send(MSG_DONTWAIT) */
        return;
    }
    /* a pipe or a terminal: a description of our own, so O_NONBLOCK does
     * not reach whoever shares fd 2 (the shell of a terminal) */
    int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
        L.fd = fd;
        return;
    }
    int fl = fcntl(2, F_GETFL);
    if (fl >= 0)
        fcntl(2, F_SETFL, fl | O_NONBLOCK);
}

void log_attach(uv_loop_t *loop)
{
    stderr_open();
    L.loop = loop;
    uv_check_init(loop, &L.check);
    uv_check_start(&L.check, turn_check);
    uv_prepare_init(loop, &L.prepare);
    uv_prepare_start(&L.prepare, turn_prepare);
    uv_timer_init(loop, &L.retry);
    /* none of them keeps the loop running */
    uv_unref((uv_handle_t *)&L.check);
    uv_unref((uv_handle_t *)&L.prepare);
    uv_unref((uv_handle_t *)&L.retry);
}

void log_flush(void)
{
    flush(L.loop ? 0 : WAIT_MS);
}

void log_detach(void)
{
    if (!L.loop)
        return;
    uv_close((uv_handle_t *)&L.check, NULL);
    uv_close((uv_handle_t *)&L.prepare, NULL);
    uv_close((uv_handle_t *)&L.retry, NULL);
    L.loop = NULL;
    flush(WAIT_MS);
}
