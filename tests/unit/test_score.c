/*
 * test_score - the pure harvest model: fading, adding, raising, the stages
 * at their boundaries, and the wire form shared with the Redis script.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/score.h"

#define T0 1700000000000ull     /* some wall-clock now, ms */
#define HOUR 3600000ull
#define EPS 1e-9

static struct score sc(double inv, double val, double traps, uint64_t t,
                       uint64_t block_until)
{
    struct score s = { inv, val, traps, t, block_until };
    return s;
}

/* the defaults of [harvest], narrow level */
static struct score_rules rules(void)
{
    struct score_rules r = { 5, 25, 20, 40, 200, 1000, 30000, HOUR, HOUR };
    return r;
}

static void test_decay(void **state)
{
    struct score s = sc(8, 4, 2, T0, 7);
    (void)state;
    score_decay(&s, T0 + HOUR, HOUR);               /* one half-life */
    assert_float_equal(s.invalid, 4, EPS);
    assert_float_equal(s.valid, 2, EPS);
    assert_float_equal(s.traps, 1, EPS);
    assert_true(s.t_ms == T0 + HOUR);
    assert_true(s.block_until_ms == 7);             /* not a count: kept */
    score_decay(&s, T0 + 3 * HOUR, HOUR);           /* two more */
    assert_float_equal(s.invalid, 1, EPS);
    s = sc(8, 0, 0, T0, 0);
    score_decay(&s, T0 - 1000, HOUR);               /* a clock behind: no change */
    assert_float_equal(s.invalid, 8, EPS);
    assert_true(s.t_ms == T0);
    score_decay(&s, T0, HOUR);                      /* same instant */
    assert_float_equal(s.invalid, 8, EPS);
    s = sc(0, 0, 0, 0, 0);                          /* no evidence: starts now */
    score_decay(&s, T0, HOUR);
    assert_true(s.t_ms == T0);
    assert_float_equal(s.invalid, 0, EPS);
}

static void test_add(void **state)
{
    struct score s = sc(4, 2, 0, T0, T0 + 10);
    struct score d = sc(1, 0, 1, T0 + HOUR, T0 + 5);
    (void)state;
    score_add(&s, &d, T0 + HOUR, HOUR);
    assert_float_equal(s.invalid, 3, EPS);          /* 4/2 + 1 */
    assert_float_equal(s.valid, 1, EPS);
    assert_float_equal(s.traps, 1, EPS);
    assert_true(s.t_ms == T0 + HOUR);
    assert_true(s.block_until_ms == T0 + 10);       /* the later block stays */
    d = sc(0, 0, 0, T0 + HOUR, T0 + 99 * HOUR);
    score_add(&s, &d, T0 + HOUR, HOUR);
    assert_true(s.block_until_ms == T0 + 99 * HOUR);
    /* a whole standing as d fades too */
    s = sc(0, 0, 0, 0, 0);
    d = sc(6, 2, 0, T0, 0);
    score_add(&s, &d, T0 + 2 * HOUR, HOUR);
    assert_float_equal(s.invalid, 1.5, EPS);
    assert_float_equal(s.valid, 0.5, EPS);
    assert_true(s.t_ms == T0 + 2 * HOUR);
}

static void test_max(void **state)
{
    struct score s = sc(4, 10, 0, T0, 0);
    struct score o = sc(12, 2, 1, T0 - HOUR, T0 + 50);
    (void)state;
    score_max(&s, &o, T0, HOUR);
    assert_float_equal(s.invalid, 6, EPS);          /* 12 faded once */
    assert_float_equal(s.valid, 10, EPS);
    assert_float_equal(s.traps, 0.5, EPS);
    assert_true(s.block_until_ms == T0 + 50);
    assert_true(s.t_ms == T0);
    o = sc(1, 1, 0, T0, 0);
    score_max(&s, &o, T0, HOUR);                    /* lower: nothing moves */
    assert_float_equal(s.invalid, 6, EPS);
    assert_true(s.block_until_ms == T0 + 50);
}

static void test_judge_boundaries(void **state)
{
    struct score_rules r = rules();
    struct score_verdict v;
    struct score s;
    (void)state;

    s = sc(0, 100, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_CLEAN);
    assert_int_equal(v.why, WHY_CLEAN);
    s = sc(4, 0, 0, T0, 0);                         /* one short of tarpit_after */
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_WATCH);
    assert_int_equal(v.why, WHY_FEW);
    assert_int_equal(v.delay_ms, 0);
    s = sc(5, 15, 0, T0, 0);                        /* exactly 5 and exactly 25% */
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_TARPIT);
    assert_int_equal(v.why, WHY_TARPIT);
    assert_int_equal(v.delay_ms, 1000);
    assert_float_equal(v.share, 0.25, EPS);
    s = sc(5, 16, 0, T0, 0);                        /* share just below */
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_WATCH);
    assert_int_equal(v.why, WHY_SHARE);
    assert_int_equal(v.delay_ms, 0);
    s = sc(6, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.delay_ms, 2000);             /* doubles per invalid */
    s = sc(9, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.delay_ms, 16000);
    s = sc(10, 0, 0, T0, 0);                        /* 32 s: capped at 30 */
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.delay_ms, 30000);
    s = sc(1e6, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.delay_ms, 30000);
    /* counts round to the nearest whole: 4.4 is four, 4.5 is five */
    s = sc(4.4, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_WATCH);
    s = sc(4.5, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_TARPIT);
    s = sc(5 - 1e-9, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_TARPIT);
    /* blocked: until block_until, not at it */
    s = sc(0, 0, 0, T0, T0 + 1);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_BLOCKED);
    assert_int_equal(v.why, WHY_BLOCKED);
    assert_true(v.ends_ms == T0 + 1);
    score_judge(&r, &s, T0 + 1, &v);
    assert_int_equal(v.stage, STAGE_CLEAN);
    r.tarpit_after = 0;                             /* 0: no tarpit */
    s = sc(50, 0, 0, T0, 0);
    score_judge(&r, &s, T0, &v);
    assert_int_equal(v.stage, STAGE_WATCH);
}

/* The 5th invalid recipient, read back by the next request a little later:
 * still 5 (half-life 1 h after 100 ms and after 30 s; 60 s after 100 ms),
 * until it has faded below 4.5 (counts round to the nearest whole). */
static void test_recent_counts_stay_whole(void **state)
{
    static const uint64_t cases[][2] = {    /* half-life, elapsed */
        { HOUR, 100 }, { HOUR, 30000 }, { 60000, 100 }, { 60000, 500 },
    };
    struct score_rules r = rules();
    struct score_verdict v;
    enum score_why why;
    struct score s;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s = sc(5, 0, 0, T0, 0);
        score_decay(&s, T0 + cases[i][1], cases[i][0]);
        score_judge(&r, &s, T0 + cases[i][1], &v);
        assert_int_equal(v.stage, STAGE_TARPIT);
        assert_int_equal(v.delay_ms, 1000);
        s = sc(20, 0, 0, T0, 0);
        score_decay(&s, T0 + cases[i][1], cases[i][0]);
        assert_int_equal(score_block_due(&r, &s, T0 + cases[i][1], &why), 1);
    }
    s = sc(5, 0, 0, T0, 0);                         /* faded 2%: still five */
    score_decay(&s, T0 + 106000, HOUR);
    score_judge(&r, &s, T0 + 106000, &v);
    assert_int_equal(v.stage, STAGE_TARPIT);
    s = sc(5, 0, 0, T0, 0);                         /* 10 min: 4.45, four */
    score_decay(&s, T0 + 600000, HOUR);
    score_judge(&r, &s, T0 + 600000, &v);
    assert_int_equal(v.stage, STAGE_WATCH);
}

static void test_block_due(void **state)
{
    struct score_rules r = rules();
    enum score_why why = WHY_CLEAN;
    struct score s;
    (void)state;

    s = sc(19, 0, 0, T0, 0);                        /* one short */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 0);
    s = sc(20, 30, 0, T0, 0);                       /* exactly 20 and 40% */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 1);
    assert_int_equal(why, WHY_BLOCK_SHARE);
    s = sc(20, 31, 0, T0, 0);                       /* share just below */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 0);
    s = sc(199, 10000, 0, T0, 0);                   /* ceiling - 1 */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 0);
    s = sc(200, 10000, 0, T0, 0);                   /* the ceiling, any share */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 1);
    assert_int_equal(why, WHY_BLOCK_CEILING);
    s = sc(1, 10000, 1, T0, 0);                     /* one trap */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 1);
    assert_int_equal(why, WHY_BLOCK_TRAP);
    s = sc(500, 0, 1, T0, T0 + 1);                  /* already blocked */
    assert_int_equal(score_block_due(&r, &s, T0, &why), 0);
    assert_int_equal(score_block_due(&r, &s, T0 + 1, &why), 1);
    r.block_after = 0;
    r.block_ceiling = 0;
    s = sc(1e6, 0, 0, T0, 0);
    assert_int_equal(score_block_due(&r, &s, T0, &why), 0);
}

static void test_wire_round_trip(void **state)
{
    struct score s = sc(3.25, 1234.5, 1, T0, T0 + HOUR), d;
    char buf[SCORE_WIRE_MAX];
    size_t n;
    (void)state;

    n = score_encode(&s, buf, sizeof(buf));
    assert_string_equal(buf, "3.250000 1234.500000 1.000000 1700000000000 1700003600000");
    assert_int_equal(n, strlen(buf));
    assert_int_equal(score_decode(buf, n, &d), 0);
    assert_float_equal(d.invalid, 3.25, EPS);
    assert_float_equal(d.valid, 1234.5, EPS);
    assert_float_equal(d.traps, 1, EPS);
    assert_true(d.t_ms == T0);
    assert_true(d.block_until_ms == T0 + HOUR);
    assert_int_equal(score_decode("0 0 0 0 0", 9, &d), 0);
    /* what the Lua script writes: %.0f times */
    assert_int_equal(score_decode("1.5 2 0.000000 5 6", 18, &d), 0);
    assert_float_equal(d.valid, 2, EPS);
    assert_true(d.block_until_ms == 6);
    /* the script's grammar: a trailing dot, long digit runs */
    assert_int_equal(score_decode("5. 0 0 0 0", 10, &d), 0);
    assert_float_equal(d.invalid, 5, EPS);
    assert_int_equal(score_decode("1234567890123456789012345678901234567890 0 0 0 0",
                                  48, &d), 0);
    /* len, not the NUL, ends the form */
    assert_int_equal(score_decode("1 2 3 4 5 junk", 9, &d), 0);
    assert_true(d.block_until_ms == 5);
}

/* Decoding gives exactly what strtod gives, bit for bit, for short and
 * long digit runs alike (the short ones take a faster path). */
static void test_wire_decode_as_strtod(void **state)
{
    uint64_t x = 88172645463325252ull;          /* xorshift64: fixed, repeatable */
    (void)state;

    for (int i = 0; i < 200000; i++) {
        char num[40], buf[SCORE_WIRE_MAX];
        size_t n = 0;
        int ilen, flen;
        struct score d;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ilen = 1 + (int)(x % 12);
        flen = (int)((x >> 8) % 10) - 1;            /* -1: no dot */
        for (int k = 0; k < ilen; k++)
            num[n++] = (char)('0' + (x >> (16 + 3 * k)) % 10);
        if (flen >= 0) {
            num[n++] = '.';
            for (int k = 0; k < flen; k++)
                num[n++] = (char)('0' + ((x >> (2 * k)) ^ (uint64_t)i) % 10);
        }
        num[n] = '\0';
        n = (size_t)snprintf(buf, sizeof(buf), "%s 0 0 0 0", num);
        assert_int_equal(score_decode(buf, n, &d), 0);
        if (d.invalid != strtod(num, NULL))
            fail_msg("\"%s\": %.17g, strtod %.17g", num, d.invalid, strtod(num, NULL));
    }
}

static void test_wire_malformed(void **state)
{
    static const char *bad[] = {
        "", "-1 0 0 0 0", "0 -1 0 0 0", "+1 0 0 0 0", "nan 0 0 0 0",
        "0 NaN 0 0 0", "inf 0 0 0 0", "0 0 infinity 0 0", "1 2 3 4",
        "1 2 3 4 5 6", "1 2 3 4 5 ", " 1 2 3 4 5", "1  2 3 4 5", "1 2 3 4 x",
        "1 2 3 4 5x", ".5 0 0 0 0", "1 2 3 1000000000000001 0",
        "1 2 3 0 2000000000000000",
        /* what the merge script's pattern refuses too: C and Lua agree */
        "0x50 0 0 0 0", "1e308 0 0 0 0", "5e1 0 0 0 0", "1,5 0 0 0 0",
        /* a whole value of 128 bytes or more (the script's bound too) */
        "0 0 0 0 000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000",
    };
    struct score d;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d.invalid = 42;
        if (score_decode(bad[i], strlen(bad[i]), &d) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_float_equal(d.invalid, 0, EPS);      /* zeroed */
    }
}

static void test_rules_of(void **state)
{
    struct config cfg;
    struct score_rules r;
    (void)state;

    memset(&cfg, 0, sizeof(cfg));
    cfg.harvest.tarpit_after = 5;
    cfg.harvest.block_after = 20;
    cfg.harvest.block_ceiling = 200;
    cfg.harvest.wide_tarpit_after = 15;
    cfg.harvest.wide_block_after = 60;
    cfg.harvest.wide_block_ceiling = 600;
    cfg.harvest.window_ms = HOUR;
    score_rules_of(&cfg, SCORE_NARROW, &r);
    assert_int_equal(r.tarpit_after, 5);
    assert_int_equal(r.block_ceiling, 200);
    score_rules_of(&cfg, SCORE_WIDE, &r);
    assert_int_equal(r.tarpit_after, 15);
    assert_int_equal(r.block_after, 60);
    assert_int_equal(r.block_ceiling, 600);
    assert_true(r.half_life_ms == HOUR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_max),
        cmocka_unit_test(test_judge_boundaries),
        cmocka_unit_test(test_recent_counts_stay_whole),
        cmocka_unit_test(test_block_due),
        cmocka_unit_test(test_wire_round_trip),
        cmocka_unit_test(test_wire_decode_as_strtod),
        cmocka_unit_test(test_wire_malformed),
        cmocka_unit_test(test_rules_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
