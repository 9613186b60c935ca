#ifndef POLICYD_LOG_H
#define POLICYD_LOG_H

/*
 * log - messages to stderr or syslog (LOG_MAIL)
 *
 * log_init() picks the target; messages below the chosen level are dropped.
 * log_warn_rl() rate-limits a warning that a hostile peer could otherwise
 * repeat at line rate (refused connections, protocol errors): at most one
 * line per interval per limiter, with a count of what was suppressed.
 */

#include <stdint.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

void log_init(const char *ident, int use_syslog, enum log_level min);
void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)

struct log_limiter {
    uint64_t interval_ms;   /* one line per interval */
    uint64_t last_ms;
    unsigned long suppressed;
};

#define LOG_LIMITER_INIT(ms) { (ms), 0, 0 }

void log_warn_rl(struct log_limiter *rl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
