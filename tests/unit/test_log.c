/*
 * test_log - log.c's own formatting gives what vsnprintf gives, long lines
 * are cut, and once attached to a loop lines wait for the loop's turn
 * (errors do not).  stderr is pointed at a temp file and read back.
 */

#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../policyd/log.h"

static char path[] = "/tmp/test_log.XXXXXX";
static off_t seen;              /* what earlier checks have read */

/* next_output - what was written to stderr since the last call */
static char *next_output(void)
{
    static char buf[8192];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, seen);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    seen += n;
    return buf;
}

/* message - the one line written since the last call, header cut off */
static const char *message(void)
{
    char *out = next_output();
    char *m = strstr(out, "Z test: info: ");
    assert_non_null(m);
    m += strlen("Z test: info: ");
    size_t n = strlen(m);
    assert_true(n > 0 && m[n - 1] == '\n');
    m[n - 1] = '\0';
    assert_null(strchr(m, '\n'));
    return m;
}

#define CASE(...)                                         \
    do {                                                  \
        char want_[2048];                                 \
        snprintf(want_, sizeof(want_), __VA_ARGS__);      \
        log_msg(LOG_LVL_INFO, __VA_ARGS__);               \
        assert_string_equal(message(), want_);            \
    } while (0)

static void test_formats(void **state)
{
    (void)state;
    CASE("plain text, no directive");
    CASE("%s: client=%s rcpt=<%s> verdict=%s count=%lld delay=%.3fs elapsed=%lluus "
         "action=\"%s\"", "NOQUEUE", "198.51.100.7", "a@example.com", "unknown", 17LL,
         1234 / 1000.0, 987ULL, "550 5.1.1 User unknown");
    CASE("%d %d %d %i", 0, -1, INT_MAX, INT_MIN);
    CASE("%u %u %lu %zu", 0u, UINT_MAX, ULONG_MAX, (size_t)12345);
    CASE("%ld %lld %lld %llu", LONG_MIN, LLONG_MIN, LLONG_MAX, ULLONG_MAX);
    CASE("%.0f %.1f %.3f %.3f %.9f", 2.4, 0.05 * 3, 0.0, -1.5, 1.0 / 3);
    CASE("%.3fs %.1fs", 600.0, 86400.0);
    CASE("%.1f %.3f %.9f", -0.04, 1e16, 1e10);    /* -0.0 as printf; the rest by printf */
    CASE("%.64s|%.3s|%.0s|%s", "short", "truncated", "gone", (const char *)"");
    CASE("%c%c 100%% %04o %x %5d %-3s|", 'o', 'k', 0660u, 255u, 42, "a");
    CASE("%s", "trailing %");
}

static void test_long_line_is_cut(void **state)
{
    char big[5000];
    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_msg(LOG_LVL_INFO, "%s", big);
    const char *m = message();
    /* a line is at most 2048 bytes, its header and '\n' included */
    size_t hdr = strlen("2026-11-30T04:02:46.123Z test: info: ");
    assert_int_equal(strlen(m), 2048 - hdr - 1);
    log_msg(LOG_LVL_INFO, "%s %d", big, 7);         /* the vsnprintf path cuts too */
    assert_int_equal(strlen(message()), 2048 - hdr - 1);
}

static void fired(uv_timer_t *t)
{
    (void)t;
}

static void test_lines_wait_for_the_turn(void **state)
{
    uv_loop_t loop;
    uv_timer_t t;
    (void)state;

    uv_loop_init(&loop);
    log_attach(&loop);
    log_info("one");
    log_info("two");
    assert_string_equal(next_output(), "");        /* buffered, not written */
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, fired, 0, 0);
    uv_run(&loop, UV_RUN_ONCE);                     /* one turn writes both */
    char *out = next_output();
    assert_non_null(strstr(out, "Z test: info: one\n"));
    assert_non_null(strstr(out, "Z test: info: two\n"));
    log_err("at once");                             /* an error does not wait */
    assert_non_null(strstr(next_output(), "Z test: error: at once\n"));
    log_warn("at exit");
    log_detach();                                   /* writes what is left */
    assert_non_null(strstr(next_output(), "Z test: warning: at exit\n"));
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    log_info("after");                              /* detached: at once */
    assert_non_null(strstr(next_output(), "Z test: info: after\n"));
}

int main(void)
{
    int fd = mkstemp(path);
    if (fd < 0 || dup2(fd, 2) < 0)
        return 1;
    close(fd);
    log_init("test", 0, LOG_LVL_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_long_line_is_cut),
        cmocka_unit_test(test_lines_wait_for_the_turn),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    return rc;
}
