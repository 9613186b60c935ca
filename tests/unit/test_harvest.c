/*
 * test_harvest - client classification (two network levels, whitelist,
 * SASL) and trap matching, without any store.  The model itself (stages,
 * shares, blocks) is test_score's.
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
    static char *traps[] = { "spamtrap@example.com", "honeypot@" };
    memset(&cfg, 0, sizeof(cfg));
    cfg.harvest.enabled = 1;
    cfg.harvest.ipv4_prefix = 32;
    cfg.harvest.ipv6_prefix = 64;
    cfg.harvest.ipv4_wide_prefix = 24;
    cfg.harvest.ipv6_wide_prefix = 48;
    cfg.harvest.exempt_sasl = 1;
    cfg.harvest.whitelist.v = wl;
    cfg.harvest.whitelist.n = 2;
    cfg.harvest.traps.v = traps;
    cfg.harvest.traps.n = 2;
    cfg.harvest.window_ms = 3600000;
}

static void classify(struct harvest *h, const char *ip, const char *sasl,
                     struct harvest_client *out)
{
    struct proto_request req;
    memset(&req, 0, sizeof(req));
    memset(out, 0, sizeof(*out));
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
    assert_int_equal(c.nlevels, 2);
    assert_string_equal(c.lv[SCORE_NARROW].net, "192.0.2.77/32");
    assert_string_equal(c.lv[SCORE_WIDE].net, "192.0.2.0/24");
    classify(h, "2001:db9:1:2:3:4:5:6", "", &c);
    assert_false(c.exempt);
    assert_string_equal(c.lv[SCORE_NARROW].net, "2001:db9:1:2::/64");
    assert_string_equal(c.lv[SCORE_WIDE].net, "2001:db9:1::/48");
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

/* A wide prefix of 0, or one not wider than the narrow one, is one level. */
static void test_wide_level_off(void **state)
{
    (void)state;
    struct harvest_client c;
    defaults();
    cfg.harvest.ipv4_wide_prefix = 0;
    cfg.harvest.ipv6_wide_prefix = 64;
    struct harvest *h = harvest_new(&cfg, NULL);

    classify(h, "192.0.2.77", NULL, &c);
    assert_int_equal(c.nlevels, 1);
    assert_string_equal(c.lv[SCORE_NARROW].net, "192.0.2.77/32");
    classify(h, "2001:db9:1:2:3:4:5:6", NULL, &c);
    assert_int_equal(c.nlevels, 1);
    harvest_free(h);

    cfg.harvest.ipv4_prefix = 24;
    cfg.harvest.ipv4_wide_prefix = 16;
    h = harvest_new(&cfg, NULL);
    classify(h, "192.0.2.77", NULL, &c);
    assert_int_equal(c.nlevels, 2);
    assert_string_equal(c.lv[SCORE_NARROW].net, "192.0.2.0/24");
    assert_string_equal(c.lv[SCORE_WIDE].net, "192.0.0.0/16");
    harvest_free(h);
}

static int trap(struct harvest *h, const char *rcpt)
{
    struct address a;
    assert_int_equal(addr_normalize(rcpt, "+", 1, &a), ADDR_OK);
    return harvest_is_trap(h, &a);
}

static void test_traps(void **state)
{
    (void)state;
    defaults();
    struct harvest *h = harvest_new(&cfg, NULL);

    assert_true(trap(h, "spamtrap@example.com"));
    assert_true(trap(h, "<SpamTrap@Example.COM>"));
    assert_false(trap(h, "spamtrap@example.org"));          /* other domain */
    assert_true(trap(h, "honeypot@example.org"));           /* local@: any domain */
    assert_true(trap(h, "honeypot@example.com"));
    assert_false(trap(h, "honeypots@example.com"));
    assert_false(trap(h, "honeypo@example.com"));
    assert_false(trap(h, "user@example.com"));
    assert_true(trap(h, "spamtrap+x@example.com"));         /* extension */
    assert_true(trap(h, "honeypot+abc@example.net"));
    assert_false(trap(h, "spamtrap+x@example.org"));
    harvest_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_wide_level_off),
        cmocka_unit_test(test_traps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
