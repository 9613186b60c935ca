/*
 * test_settle - the second look: a network queued is judged once, on its
 * standing as read delay_ms later (here from a table without a store: the
 * view), then its waiters run in order; a full queue refuses; settle_free
 * drops what is queued unjudged.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/settle.h"
#include "../../policyd/util.h"

#define DELAY_MS 40

static struct config cfg;
static const struct settle_times times = { DELAY_MS, DELAY_MS / 2, 10 * DELAY_MS };
static uv_loop_t loop;

struct verdicts {
    int n;
    char net[4][EVIDENCE_NET_MAX];
    uint64_t tag[4];
    double invalid[4];
    uint64_t at_ms[4];          /* util_now_ms() */
    char order[16];             /* the judge 'j', then the waiters' names */
};

static int setup(void **state)
{
    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.harvest.window_ms = 3600000;
    cfg.harvest.max_tracked = 100;
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    (void)state;
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
}

static void judge(void *owner, const char *net, uint64_t tag, const struct score *s,
                  int from_store)
{
    struct verdicts *v = owner;

    assert_int_equal(from_store, 0);
    assert_true(v->n < 4);
    snprintf(v->net[v->n], EVIDENCE_NET_MAX, "%s", net);
    v->tag[v->n] = tag;
    v->invalid[v->n] = s->invalid;
    v->at_ms[v->n] = util_now_ms();
    v->n++;
    strcat(v->order, "j");
}

struct waiter {
    struct settle_wait w;
    struct verdicts *v;
    const char *name;
};

static void woken(void *arg)
{
    struct waiter *w = arg;
    strcat(w->v->order, w->name);
}

static void wait_on(struct settle *st, const char *net, struct waiter *w,
                    struct verdicts *v, const char *name)
{
    w->w.cb = woken;
    w->w.arg = w;
    w->v = v;
    w->name = name;
    assert_int_equal(settle_wait(st, net, &w->w), 1);
}

static void record(struct evidence *ev, const char *net, double invalid)
{
    struct score d = { invalid, 0, 0, util_wall_ms(), 0 };
    evidence_record(ev, net, &d);
}

/* the standing judged is the one at the read, not at settle_add */
static void test_judged_later_on_the_later_standing(void **state)
{
    struct evidence *ev = evidence_new(&loop, &cfg, NULL);
    struct verdicts v = { 0 };
    struct settle *st = settle_new(&loop, ev, 10, judge, &v);
    settle_times(st, &times);
    struct waiter a, b;
    uint64_t t0 = util_now_ms();
    (void)state;

    record(ev, "192.0.2.1/32", 2);
    assert_int_equal(settle_add(st, "192.0.2.1/32", 7), 1);
    assert_int_equal(settle_add(st, "192.0.2.1/32", 8), 0);     /* once */
    assert_int_equal(settle_count(st), 1);
    wait_on(st, "192.0.2.1/32", &a, &v, "a");
    wait_on(st, "192.0.2.1/32", &b, &v, "b");
    assert_int_equal(settle_wait(st, "192.0.2.9/32", &a.w), 0);  /* not queued */
    record(ev, "192.0.2.1/32", 3);          /* after the suspicion */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.net[0], "192.0.2.1/32");
    assert_int_equal(v.tag[0], 7);
    assert_float_equal(v.invalid[0], 5, 1e-3);
    assert_true(v.at_ms[0] >= t0 + DELAY_MS);
    assert_string_equal(v.order, "jab");
    assert_int_equal(settle_count(st), 0);
    /* judged: queued anew */
    assert_int_equal(settle_add(st, "192.0.2.1/32", 9), 1);
    settle_free(st);                        /* dropped unjudged */
    evidence_free(ev);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(v.n, 1);
}

/* bounded: beyond max, -1 (the caller judges at once); in order of due */
static void test_full_and_in_order(void **state)
{
    struct evidence *ev = evidence_new(&loop, &cfg, NULL);
    struct verdicts v = { 0 };
    struct settle *st = settle_new(&loop, ev, 2, judge, &v);
    settle_times(st, &times);
    char longnet[EVIDENCE_NET_MAX + 1];
    (void)state;

    memset(longnet, 'x', EVIDENCE_NET_MAX);
    longnet[EVIDENCE_NET_MAX] = '\0';
    assert_int_equal(settle_add(st, longnet, 0), -1);
    assert_int_equal(settle_add(st, "192.0.2.1/32", 1), 1);
    assert_int_equal(settle_add(st, "192.0.2.2/32", 2), 1);
    assert_int_equal(settle_add(st, "192.0.2.3/32", 3), -1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.net[0], "192.0.2.1/32");
    assert_string_equal(v.net[1], "192.0.2.2/32");
    assert_int_equal(settle_add(st, "192.0.2.3/32", 3), 1);     /* room again */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(v.n, 3);
    settle_free(st);
    evidence_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_judged_later_on_the_later_standing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_and_in_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
