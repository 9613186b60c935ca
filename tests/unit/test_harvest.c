/*
 * test_harvest - the escalation schedule, block threshold and client
 * classification (whitelist, SASL, prefixes), without any store.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/harvest.h"

static struct config cfg;

static void defaults(void)
{
    static char *wl[] = { "198.51.100.0/24", "2001:db8::/32" };
    memset(&cfg, 0, sizeof(cfg));
    cfg.harvest.enabled = 1;
    cfg.harvest.tarpit_after = 5;
    cfg.harvest.tarpit_delay_ms = 1000;
    cfg.harvest.tarpit_max_ms = 30000;
    cfg.harvest.block_after = 20;
    cfg.harvest.ipv4_prefix = 24;
    cfg.harvest.ipv6_prefix = 64;
    cfg.harvest.exempt_sasl = 1;
    cfg.harvest.whitelist.v = wl;
    cfg.harvest.whitelist.n = 2;
}

static void test_schedule(void **state)
{
    (void)state;
    defaults();
    assert_int_equal(harvest_delay_ms(&cfg, 0), 0);
    assert_int_equal(harvest_delay_ms(&cfg, 4), 0);         /* below tarpit_after */
    assert_int_equal(harvest_delay_ms(&cfg, 5), 1000);      /* delay * 2^0 */
    assert_int_equal(harvest_delay_ms(&cfg, 6), 2000);
    assert_int_equal(harvest_delay_ms(&cfg, 7), 4000);
    assert_int_equal(harvest_delay_ms(&cfg, 9), 16000);
    assert_int_equal(harvest_delay_ms(&cfg, 10), 30000);    /* 32 s capped at 30 */
    assert_int_equal(harvest_delay_ms(&cfg, 1000000), 30000);
}

static void test_schedule_fractions_and_off(void **state)
{
    (void)state;
    defaults();
    cfg.harvest.tarpit_after = 1;
    cfg.harvest.tarpit_delay_ms = 250;
    cfg.harvest.tarpit_max_ms = 1500;
    assert_int_equal(harvest_delay_ms(&cfg, 1), 250);
    assert_int_equal(harvest_delay_ms(&cfg, 3), 1000);
    assert_int_equal(harvest_delay_ms(&cfg, 4), 1500);
    cfg.harvest.tarpit_after = 0;                           /* 0: no tarpit */
    assert_int_equal(harvest_delay_ms(&cfg, 50), 0);
    cfg.harvest.tarpit_after = 1;
    cfg.harvest.enabled = 0;
    assert_int_equal(harvest_delay_ms(&cfg, 50), 0);
}

static void test_block_threshold(void **state)
{
    (void)state;
    defaults();
    assert_false(harvest_is_blocked(&cfg, 19));
    assert_true(harvest_is_blocked(&cfg, 20));
    assert_true(harvest_is_blocked(&cfg, 21));
    cfg.harvest.block_after = 0;                            /* 0: never block */
    assert_false(harvest_is_blocked(&cfg, 1000));
}

static void classify(struct harvest *h, const char *ip, const char *sasl,
                     struct harvest_client *out)
{
    struct proto_request req;
    memset(&req, 0, sizeof(req));
    req.client_address = ip;
    req.sasl_username = sasl;
    harvest_classify(h, &req, out);
}

static void test_classify(void **state)
{
    (void)state;
    struct harvest_client c;
    defaults();
    struct harvest *h = harvest_new(&cfg, NULL);

    classify(h, "192.0.2.77", NULL, &c);
    assert_false(c.exempt);
    assert_string_equal(c.net, "192.0.2.0/24");
    classify(h, "2001:db9:1:2:3:4:5:6", "", &c);
    assert_false(c.exempt);
    assert_string_equal(c.net, "2001:db9:1:2::/64");
    classify(h, "198.51.100.9", NULL, &c);                  /* whitelisted */
    assert_true(c.exempt);
    classify(h, "2001:db8::1", NULL, &c);                   /* whitelisted v6 */
    assert_true(c.exempt);
    classify(h, "192.0.2.77", "alice", &c);                 /* authenticated */
    assert_true(c.exempt);
    classify(h, "unknown", NULL, &c);                       /* nothing to count */
    assert_true(c.exempt);
    harvest_free(h);

    cfg.harvest.exempt_sasl = 0;
    h = harvest_new(&cfg, NULL);
    classify(h, "192.0.2.77", "alice", &c);
    assert_false(c.exempt);
    harvest_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_schedule_fractions_and_off),
        cmocka_unit_test(test_block_threshold),
        cmocka_unit_test(test_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
