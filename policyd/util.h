#ifndef POLICYD_UTIL_H
#define POLICYD_UTIL_H

/*
 * util - allocation that never returns NULL, a growable text buffer,
 * and the monotonic clock.
 *
 * An allocation failure in a mail filter is not recoverable in any useful
 * way; like Postfix's mymalloc() we log and abort rather than spread NULL
 * checks over every caller.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* A growable byte string, always NUL-terminated. */
struct sbuf {
    char *data;
    size_t len;
    size_t cap;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
void sbuf_add(struct sbuf *b, const char *s, size_t n);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Monotonic time. */
uint64_t util_now_us(void);
uint64_t util_now_ms(void);
/* util_wall_ms - the wall clock (CLOCK_REALTIME), ms: for times shared
 * between processes and hosts (standings in Redis) */
uint64_t util_wall_ms(void);

/* util_fmt_u - v in decimal at out, NUL-terminated; returns its length.
 * out holds UTIL_FMT_U_MAX bytes.  For keys and arguments built on the
 * request path, where snprintf's cost shows. */
#define UTIL_FMT_U_MAX 21
size_t util_fmt_u(char *out, unsigned long long v);

/* Strictly parse an unsigned decimal; -1 on junk or overflow past max. */
int util_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

#endif
