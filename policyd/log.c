/*
 * log - stderr or syslog(LOG_MAIL)
 *
 * On stderr each line carries a timestamp and level, as systemd's journal
 * or a terminal wants; on syslog the facility is mail, like Postfix's own
 * daemons, so the lines land next to smtpd's in the mail log.
 */

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "util.h"

static int use_syslog;
static enum log_level min_level = LOG_LVL_INFO;
static const char *log_ident = "policyd";

void log_init(const char *ident, int syslog_on, enum log_level min)
{
    log_ident = ident;
    min_level = min;
    if (use_syslog && !syslog_on)
        closelog();
    use_syslog = syslog_on;
    if (use_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    static const char *names[] = { "debug", "info", "warning", "error" };
    static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
    char line[2048];

    if (lvl < min_level)
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    if (use_syslog) {
        if (lvl == LOG_LVL_INFO)
            syslog(prio[lvl], "%s", line);
        else
            syslog(prio[lvl], "%s: %s", names[lvl], line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s: %s: %s\n", stamp, ts.tv_nsec / 1000000L,
            log_ident, names[lvl], line);
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
