/*
 * test_siege - the siege state machine (siege.c): trigger and baseline,
 * hysteresis and cooldown, the fleet's marks (last writer wins), the
 * operator's holds, the window's rate and the mark's wire form.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/siege.h"

#define MIN 60000ULL
#define T0 1700000000000ULL

static const struct siege_rules rules = { 120, 4, 50, 10 * MIN, 24 * 60 * MIN };

static void test_begin_above_trigger_end_after_cooldown(void **state)
{
    struct siege_domain d;
    (void)state;

    memset(&d, 0, sizeof(d));
    assert_int_equal(siege_observe(&rules, &d, 120, NULL, T0), 0);      /* not above */
    assert_int_equal(siege_observe(&rules, &d, 121, NULL, T0 + 1000),
                     SIEGE_BEGAN | SIEGE_PUBLISH);
    assert_true(d.m.on);
    assert_int_equal(d.m.changed_ms, T0 + 1000);
    /* between the marks: stays; below the lower mark: the cooldown starts */
    assert_int_equal(siege_observe(&rules, &d, 80, NULL, T0 + 2000), 0);
    assert_int_equal(siege_observe(&rules, &d, 59, NULL, T0 + 3000), 0);
    assert_int_equal(siege_observe(&rules, &d, 10, NULL, T0 + 3000 + 10 * MIN - 1), 0);
    /* a break in the quiet starts the cooldown again */
    assert_int_equal(siege_observe(&rules, &d, 61, NULL, T0 + 4000 + 10 * MIN), 0);
    assert_int_equal(siege_observe(&rules, &d, 0, NULL, T0 + 5000 + 10 * MIN), 0);
    assert_int_equal(siege_observe(&rules, &d, 0, NULL, T0 + 5000 + 20 * MIN - 1), 0);
    assert_int_equal(siege_observe(&rules, &d, 0, NULL, T0 + 5000 + 20 * MIN),
                     SIEGE_ENDED | SIEGE_PUBLISH);
    assert_false(d.m.on);
}

static void test_baseline_learned_outside_sieges_only(void **state)
{
    struct siege_domain d;
    uint64_t t = T0;
    (void)state;

    memset(&d, 0, sizeof(d));
    /* a domain that usually sees 100 a minute for two days */
    for (int i = 0; i < 2 * 24 * 60; i++, t += MIN)
        assert_int_equal(siege_observe(&rules, &d, 100, NULL, t), 0);
    assert_true(d.baseline > 74 && d.baseline < 76);     /* 1 - 2^-2 of 100 */
    assert_true(siege_trigger(&rules, &d) > 296);
    assert_int_equal(siege_observe(&rules, &d, 290, NULL, t), 0);
    assert_int_equal(siege_observe(&rules, &d, 310, NULL, t + MIN),
                     SIEGE_BEGAN | SIEGE_PUBLISH);
    /* an attack teaches nothing */
    double b = d.baseline;
    for (int i = 0; i < 60; i++)
        siege_observe(&rules, &d, 5000, NULL, t + (uint64_t)(i + 2) * MIN);
    assert_true(d.baseline == b);
}

static void test_fleet_marks_last_writer_wins(void **state)
{
    struct siege_domain d;
    struct siege_mark on = { 1, T0 + 500, 0 }, old_off = { 0, T0 + 100, 0 };
    (void)state;

    memset(&d, 0, sizeof(d));
    /* another policyd began: adopted and logged, not published again */
    assert_int_equal(siege_observe(&rules, &d, 0, &on, T0 + 1000), SIEGE_BEGAN);
    assert_true(d.m.on);
    /* an older mark changes nothing */
    assert_int_equal(siege_observe(&rules, &d, 0, &old_off, T0 + 2000), 0);
    assert_true(d.m.on);
    /* our own mark read back: nothing */
    assert_int_equal(siege_observe(&rules, &d, 0, &on, T0 + 3000), 0);
    struct siege_mark off = { 0, T0 + 4000, 0 };
    assert_int_equal(siege_observe(&rules, &d, 0, &off, T0 + 5000), SIEGE_ENDED);
    assert_false(d.m.on);
}

static void test_operator_holds(void **state)
{
    struct siege_domain d;
    (void)state;

    memset(&d, 0, sizeof(d));
    assert_int_equal(siege_force(&d, 1, 30 * MIN, T0), SIEGE_BEGAN | SIEGE_PUBLISH);
    /* quiet for longer than the cooldown, but held */
    siege_observe(&rules, &d, 0, NULL, T0 + 1000);
    assert_int_equal(siege_observe(&rules, &d, 0, NULL, T0 + 29 * MIN), 0);
    assert_true(d.m.on);
    assert_int_equal(siege_observe(&rules, &d, 0, NULL, T0 + 30 * MIN),
                     SIEGE_ENDED | SIEGE_PUBLISH);
    /* a held stop: no automatic begin while it holds */
    assert_int_equal(siege_force(&d, 0, 5 * MIN, T0 + 31 * MIN), SIEGE_PUBLISH);
    assert_int_equal(siege_observe(&rules, &d, 9999, NULL, T0 + 32 * MIN), 0);
    assert_int_equal(siege_observe(&rules, &d, 9999, NULL, T0 + 36 * MIN),
                     SIEGE_BEGAN | SIEGE_PUBLISH);
    /* a forced change is always newer than the mark it replaces */
    uint64_t was = d.m.changed_ms;
    siege_force(&d, 0, 0, was - 5);
    assert_true(d.m.changed_ms > was);
}

static void test_window_rate(void **state)
{
    long long b[7] = { 10, 10, 10, 10, 10, 10, 60 };
    (void)state;

    /* 6 s window: 60 in the current bucket and the five before, the oldest
     * counts for the part still inside: half of 60 */
    assert_true(siege_window_rate(b, 7, 0.5, 6000) > 899.9);
    assert_true(siege_window_rate(b, 7, 0.5, 6000) < 900.1);
    assert_true(siege_window_rate(b, 7, 1.0, 60000) > 59.9);
    assert_true(siege_window_rate(b, 0, 0.5, 60000) == 0);
}

static void test_mark_wire_form(void **state)
{
    struct siege_mark m = { 1, T0, T0 + 5 }, back;
    char buf[SIEGE_WIRE_MAX];
    size_t n = siege_mark_encode(&m, buf, sizeof(buf));
    (void)state;

    assert_string_equal(buf, "1 1700000000000 1700000000005");
    assert_int_equal(siege_mark_decode(buf, n, &back), 0);
    assert_int_equal(back.on, 1);
    assert_int_equal(back.changed_ms, T0);
    assert_int_equal(back.hold_until_ms, T0 + 5);
    assert_int_equal(siege_mark_decode("2 1 1", 5, &back), -1);
    assert_int_equal(siege_mark_decode("1 1", 3, &back), -1);
    assert_int_equal(siege_mark_decode("1 1 1 ", 6, &back), -1);
    assert_int_equal(siege_mark_decode("1 -1 1", 6, &back), -1);
    assert_int_equal(siege_mark_decode("", 0, &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_above_trigger_end_after_cooldown),
        cmocka_unit_test(test_baseline_learned_outside_sieges_only),
        cmocka_unit_test(test_fleet_marks_last_writer_wins),
        cmocka_unit_test(test_operator_holds),
        cmocka_unit_test(test_window_rate),
        cmocka_unit_test(test_mark_wire_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
