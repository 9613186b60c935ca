#ifndef POLICYD_LOG_H
#define POLICYD_LOG_H

/*
 * log - messages to stderr or syslog (LOG_MAIL)
 *
 * log_init() picks the target; messages below the chosen level are dropped.
 * Until log_attach(loop) every line is written at once.  Attached, lines
 * are buffered and written once per loop turn without ever blocking the
 * loop (a writer that cannot keep up costs dropped lines, counted and
 * reported, not time); an error is written at once.  log_flush() writes
 * what is buffered now (SIGTERM); log_detach() closes the loop's handles
 * and writes the rest, waiting at most 2 s for a blocked writer (exit).
 * log_warn_rl() rate-limits a warning that a hostile peer could otherwise
 * repeat at line rate (refused connections, protocol errors): at most one
 * line per interval per limiter, with a count of what was suppressed.
 */

#include <stdint.h>
#include <uv.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

void log_init(const char *ident, int use_syslog, enum log_level min);
void log_attach(uv_loop_t *loop);
void log_flush(void);
void log_detach(void);
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
