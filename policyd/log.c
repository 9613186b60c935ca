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
static const char *stamp(time_t sec)
{
    struct tm tm;

    if (sec != L.stamp_sec || L.syslog != L.stamp_syslog) {
        if (L.syslog) {
            localtime_r(&sec, &tm);
            strftime(L.stamp, sizeof(L.stamp), "%b %e %H:%M:%S", &tm);
        } else {
            gmtime_r(&sec, &tm);
            strftime(L.stamp, sizeof(L.stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        }
        L.stamp_sec = sec;
        L.stamp_syslog = L.syslog;
    }
    return L.stamp;
}

/* put_line - format one line into the buffer, or count it dropped */
static void put_line(enum log_level lvl, const char *fmt, va_list ap)
{
    struct timespec ts;
    char *p = L.buf + L.len;
    int h, m;

    if (LOG_BUF_SIZE - L.len < LINE_MAX_LEN) {
        L.dropped++;
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    if (L.syslog)
        h = snprintf(p, LINE_MAX_LEN, "<%d>%s %s[%ld]: %s%s", LOG_MAIL | prio[lvl],
                     stamp(ts.tv_sec), L.ident, L.pid,
                     lvl == LOG_LVL_INFO ? "" : names[lvl], lvl == LOG_LVL_INFO ? "" : ": ");
    else
        h = snprintf(p, LINE_MAX_LEN, "%s.%03ldZ %s: %s: ", stamp(ts.tv_sec),
                     ts.tv_nsec / 1000000L, L.ident, names[lvl]);
    if (h < 0 || h >= LINE_MAX_LEN / 2)
        h = 0;                  /* an absurd ident: the message alone */
    /* the message, cut to leave one byte for the line's end */
    size_t avail = LINE_MAX_LEN - (size_t)h - 1;
    m = vsnprintf(p + h, avail, fmt, ap);
    if (m < 0)
        m = 0;
    if ((size_t)m >= avail)
        m = (int)avail - 1;
    p[h + m] = L.syslog ? '\0' : '\n';
    L.len += (size_t)h + (size_t)m + 1;
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
    L.pid = (long)getpid();
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
