/*
 * test_stats - histogram buckets and quantiles, protocol state mapping,
 * and the three renderings (exact numbers, escaping, JSON well-formedness).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/stats.h"
#include "../../policyd/util.h"

/* ---- a small strict JSON validator (RFC 8259 grammar, no semantics) ---- */

static const char *js_value(const char *p, int depth);

static const char *js_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *js_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (;;) {
        unsigned char c = (unsigned char) *p++;

        if (c == '"')
            return p;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            c = (unsigned char) *p++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++, p++)
                    if (!strchr("0123456789abcdefABCDEF", *p) || !*p)
                        return NULL;
            } else if (!strchr("\"\\/bfnrt", c) || !c) {
                return NULL;
            }
        } else if (c >= 0x80) {
            return NULL;    /* our renderer promises pure ASCII */
        }
    }
}

static const char *js_number(const char *p)
{
    const char *s = p;

    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return p > s ? p : NULL;
}

static const char *js_value(const char *p, int depth)
{
    if (depth > 32)
        return NULL;
    p = js_ws(p);
    if (*p == '{') {
        p = js_ws(p + 1);
        if (*p == '}')
            return p + 1;
        for (;;) {
            p = js_string(js_ws(p));
            if (!p)
                return NULL;
            p = js_ws(p);
            if (*p++ != ':')
                return NULL;
            p = js_value(p, depth + 1);
            if (!p)
                return NULL;
            p = js_ws(p);
            if (*p == '}')
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    if (*p == '[') {
        p = js_ws(p + 1);
        if (*p == ']')
            return p + 1;
        for (;;) {
            p = js_value(p, depth + 1);
            if (!p)
                return NULL;
            p = js_ws(p);
            if (*p == ']')
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    if (*p == '"')
        return js_string(p);
    if (strncmp(p, "true", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    if (strncmp(p, "null", 4) == 0)
        return p + 4;
    return js_number(p);
}

static int json_valid(const char *s)
{
    const char *end = js_value(s, 0);

    return end != NULL && *js_ws(end) == 0;
}

/* ---- histogram ---- */

static void test_bounds_ascending(void **state)
{
    (void) state;
    assert_int_equal(stats_bounds_us[0], 50);
    for (int i = 1; i < STATS_BUCKETS; i++)
        assert_true(stats_bounds_us[i] > stats_bounds_us[i - 1]);
    assert_int_equal(stats_bounds_us[STATS_BUCKETS - 3], 30000000);
    assert_int_equal(stats_bounds_us[STATS_BUCKETS - 2], 100000000);
    assert_true(stats_bounds_us[STATS_BUCKETS - 1] == UINT64_MAX);
}

static void test_hist_buckets(void **state)
{
    struct stats_hist h;

    (void) state;
    memset(&h, 0, sizeof(h));
    stats_hist_add(&h, 0);              /* bucket 0 (<= 50) */
    stats_hist_add(&h, 50);             /* bucket 0: bounds are inclusive */
    stats_hist_add(&h, 51);             /* bucket 1 (<= 100) */
    stats_hist_add(&h, 1000000);        /* <= 1 s */
    stats_hist_add(&h, 1000001);        /* <= 5 s */
    stats_hist_add(&h, 30000000);       /* <= 30 s */
    stats_hist_add(&h, 30000001);       /* <= 100 s */
    stats_hist_add(&h, 100000001);      /* +Inf */
    stats_hist_add(&h, UINT64_MAX / 4); /* +Inf */
    assert_int_equal(h.count, 9);
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[12], 1);
    assert_int_equal(h.bucket[13], 1);
    assert_int_equal(h.bucket[14], 1);
    assert_int_equal(h.bucket[15], 1);
    assert_int_equal(h.bucket[16], 2);
    assert_true(h.sum_us == 0 + 50 + 51 + 1000000 + 1000001 + 30000000 +
                30000001 + 100000001 + UINT64_MAX / 4);
}

static void test_hist_quantile(void **state)
{
    struct stats_hist h;

    (void) state;
    memset(&h, 0, sizeof(h));
    assert_int_equal(stats_hist_quantile(&h, 0.5), 0);
    for (int i = 0; i < 90; i++)
        stats_hist_add(&h, 80);         /* <= 100 us */
    for (int i = 0; i < 9; i++)
        stats_hist_add(&h, 900);        /* <= 1 ms */
    stats_hist_add(&h, 200000000);      /* 200 s: +Inf */
    assert_int_equal(stats_hist_quantile(&h, 0.0), 100);
    assert_int_equal(stats_hist_quantile(&h, 0.5), 100);
    assert_int_equal(stats_hist_quantile(&h, 0.9), 100);
    assert_int_equal(stats_hist_quantile(&h, 0.91), 1000);
    assert_int_equal(stats_hist_quantile(&h, 0.99), 1000);
    assert_true(stats_hist_quantile(&h, 1.0) == UINT64_MAX);

    /* One sample: every quantile is its bucket. */
    memset(&h, 0, sizeof(h));
    stats_hist_add(&h, 3000);
    assert_int_equal(stats_hist_quantile(&h, 0.01), 5000);
    assert_int_equal(stats_hist_quantile(&h, 0.99), 5000);
}

static void test_state_of(void **state)
{
    (void) state;
    assert_int_equal(stats_state_of("RCPT"), STATE_RCPT);
    assert_int_equal(stats_state_of("rcpt"), STATE_RCPT);
    assert_int_equal(stats_state_of("CONNECT"), STATE_CONNECT);
    assert_int_equal(stats_state_of("Ehlo"), STATE_EHLO);
    assert_int_equal(stats_state_of("HELO"), STATE_HELO);
    assert_int_equal(stats_state_of("MAIL"), STATE_MAIL);
    assert_int_equal(stats_state_of("DATA"), STATE_DATA);
    assert_int_equal(stats_state_of("end-of-message"), STATE_END_OF_MESSAGE);
    assert_int_equal(stats_state_of("VRFY"), STATE_VRFY);
    assert_int_equal(stats_state_of("ETRN"), STATE_ETRN);
    assert_int_equal(stats_state_of(NULL), STATE_OTHER);
    assert_int_equal(stats_state_of(""), STATE_OTHER);
    assert_int_equal(stats_state_of("RCPTX"), STATE_OTHER);
    assert_int_equal(stats_state_of("RCP"), STATE_OTHER);
}

/* ---- renderings ---- */

static const struct stats_net top_nets[] = {
    { "192.0.2.0/24", 12, 3500 },
    { "2001:db8::/64", 4, 0 },
    { "evil\"\\\n\x01\xff", 1, 0 },     /* hostile bytes must be escaped */
};

static const struct stats_extra extra = {
    .top = top_nets, .ntop = 3, .blocked_now = 1, .tracked_now = 5 };

static void fill(void)
{
    stats_init();
    stats.conn_current = 2;
    stats.conn_total = 9;
    stats.conn_refused = 1;
    stats.requests_total = 8;
    stats.requests_by_state[STATE_RCPT] = 7;
    stats.requests_by_state[STATE_CONNECT] = 1;
    stats.verdicts[VERDICT_ACCEPTED] = 4;
    stats.verdicts[VERDICT_UNKNOWN] = 3;
    stats.verdicts[VERDICT_TEMPFAIL] = 0;
    stats.verdicts[VERDICT_BLOCKED] = 0;
    stats.delayed_total = 2;
    stats.delayed_now = 1;
    stats.l1_hits = 5;
    stats.l1_misses = 3;
    stats.redis_up = 1;
    stats.redis_errors = 6;
    stats.dir_queries = 3;
    stats.dir_coalesced = 1;
    stats_hist_add(&stats.latency, 40);        /* bucket 0.00005 */
    stats_hist_add(&stats.latency, 2000);      /* bucket 0.0025 */
    stats_hist_add(&stats.latency, 1500000);   /* bucket 5 */
    stats_hist_add(&stats.dir_latency, 700);
}

static void test_json(void **state)
{
    struct sbuf b;

    (void) state;
    fill();
    sbuf_init(&b);
    stats_render_json(&b, &extra);
    assert_true(json_valid(b.data));
    assert_non_null(strstr(b.data, "\"connections\":{\"current\":2,\"total\":9,\"refused\":1,"));
    assert_non_null(strstr(b.data, "\"requests\":{\"total\":8,\"by_state\":{\"CONNECT\":1,"));
    assert_non_null(strstr(b.data, "\"RCPT\":7,"));
    assert_non_null(strstr(b.data, "\"by_verdict\":{\"accepted\":4,\"unknown\":3,"
                           "\"tempfail\":0,\"blocked\":0,\"deferred\":0,\"delayed\":2}"));
    assert_non_null(strstr(b.data, "\"latency_us\":{\"p50\":2500,\"p90\":5000000,"
                           "\"p99\":5000000,\"count\":3,\"sum\":1502040}"));
    assert_non_null(strstr(b.data, "\"cache\":{\"l1_hits\":5,\"l1_misses\":3,"
                           "\"redis_hits\":0,\"redis_misses\":0}"));
    assert_non_null(strstr(b.data, "\"directory\":{\"queries\":3,\"coalesced\":1,"
                           "\"errors\":0,\"timeouts\":0,\"latency_us\":{\"p50\":1000,"));
    assert_non_null(strstr(b.data, "\"redis\":{\"up\":true,\"errors\":6,\"reconnects\":0}"));
    assert_non_null(strstr(b.data, "\"harvest\":{\"delayed_now\":1,\"blocked_now\":1,"
                           "\"tracked\":5,"));
    assert_non_null(strstr(b.data, "{\"network\":\"192.0.2.0/24\",\"count\":12,"
                           "\"block_ms\":3500}"));
    assert_non_null(strstr(b.data, "{\"network\":\"evil\\\"\\\\\\u000a\\u0001\\u00ff\","
                           "\"count\":1,"));

    /* No extra, nothing recorded: still one valid object. */
    stats_init();
    sbuf_reset(&b);
    stats_render_json(&b, NULL);
    assert_true(json_valid(b.data));
    assert_non_null(strstr(b.data, "\"top\":[]"));
    assert_non_null(strstr(b.data, "\"latency_us\":{\"p50\":0,"));

    /* The validator itself rejects broken JSON (so the check can fail). */
    assert_false(json_valid("{\"a\":1,}"));
    assert_false(json_valid("{\"a\":\"x\ny\"}"));
    assert_false(json_valid("{\"a\":1} x"));
    sbuf_free(&b);
}

static void test_text(void **state)
{
    struct sbuf b;

    (void) state;
    fill();
    sbuf_init(&b);
    stats_render_text(&b, &extra);
    assert_non_null(strstr(b.data, "\n  state RCPT             7\n"));
    assert_non_null(strstr(b.data, "\n  state CONNECT          1\n"));
    assert_non_null(strstr(b.data, "\n  verdict unknown        3\n"));
    assert_non_null(strstr(b.data, "\n  delayed                2\n"));
    assert_non_null(strstr(b.data, "p50 2.5ms  p90 5.0s  p99 5.0s  (3 samples)"));
    assert_non_null(strstr(b.data, "5 hits, 3 misses (62.5%)"));
    assert_non_null(strstr(b.data, "\n  blocked now            1\n"));
    assert_non_null(strstr(b.data, "  192.0.2.0/24                                        12  3.500s\n"));
    assert_non_null(strstr(b.data, "\n  evil\"\\???   "));
    /* Nothing unprintable reaches the terminal. */
    for (const char *p = b.data; *p; p++)
        assert_true(*p == '\n' || (*p >= 0x20 && *p < 0x7f));
    sbuf_free(&b);
}

static void test_prometheus(void **state)
{
    struct sbuf b;

    (void) state;
    fill();
    sbuf_init(&b);
    stats_render_prometheus(&b, &extra);
    assert_non_null(strstr(b.data, "# TYPE policyd_requests_total counter\n"));
    assert_non_null(strstr(b.data, "\npolicyd_requests_total{state=\"RCPT\"} 7\n"));
    assert_non_null(strstr(b.data, "\npolicyd_verdicts_total{verdict=\"unknown\"} 3\n"));
    assert_non_null(strstr(b.data, "\npolicyd_connections 2\n"));
    assert_non_null(strstr(b.data, "# TYPE policyd_request_duration_seconds histogram\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"0.00005\"} 1\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"0.0025\"} 2\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"5\"} 3\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"30\"} 3\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"100\"} 3\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_sum 1.50204\n"));
    assert_non_null(strstr(b.data, "\npolicyd_request_duration_seconds_count 3\n"));
    assert_non_null(strstr(b.data, "\npolicyd_cache_hits_total{layer=\"l1\"} 5\n"));
    assert_non_null(strstr(b.data, "\npolicyd_redis_errors_total 6\n"));
    assert_non_null(strstr(b.data, "\npolicyd_network_unknown_recipients{network=\"evil\\\"\\\\\\n??\"} 1\n"));
    /* Every line is a comment or a sample "name[{labels}] value". */
    for (char *line = b.data; *line; ) {
        char *nl = strchr(line, '\n');

        assert_non_null(nl);
        assert_true(line[0] == '#' || strncmp(line, "policyd_", 8) == 0);
        line = nl + 1;
    }
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_ascending),
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_hist_quantile),
        cmocka_unit_test(test_state_of),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_prometheus),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
