/*
 * test_cache - the bounded TTL map behind L1, the memory counters and the
 * embedded recipient table: hits, expiry, LRU eviction, growth, walk.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../policyd/cache.h"

static int get(struct cache *c, const char *k, uint64_t now, int64_t *v)
{
    return cache_get(c, k, strlen(k), now, v, NULL);
}

static void test_put_get_del(void **state)
{
    (void)state;
    struct cache *c = cache_new(10);
    int64_t v = 0;

    assert_int_equal(get(c, "a", 0, &v), 0);
    cache_put(c, "a", 1, 42, 0);
    assert_int_equal(get(c, "a", 0, &v), 1);
    assert_int_equal(v, 42);
    cache_put(c, "a", 1, 43, 0);            /* replace, not duplicate */
    assert_int_equal(cache_count(c), 1);
    assert_int_equal(get(c, "a", 0, &v), 1);
    assert_int_equal(v, 43);
    assert_int_equal(cache_del(c, "a", 1), 1);
    assert_int_equal(cache_del(c, "a", 1), 0);
    assert_int_equal(get(c, "a", 0, &v), 0);
    cache_free(c);
}

static void test_binary_keys(void **state)
{
    (void)state;
    struct cache *c = cache_new(0);
    int64_t v = 0;
    cache_put(c, "a\0b", 3, 1, 0);
    cache_put(c, "a\0c", 3, 2, 0);
    assert_int_equal(cache_get(c, "a\0b", 3, 0, &v, NULL), 1);
    assert_int_equal(v, 1);
    assert_int_equal(cache_get(c, "a", 1, 0, &v, NULL), 0);
    cache_free(c);
}

static void test_expiry(void **state)
{
    (void)state;
    struct cache *c = cache_new(10);
    int64_t v;
    uint64_t exp;
    cache_put(c, "k", 1, 7, 1000);
    assert_int_equal(cache_get(c, "k", 1, 999, &v, &exp), 1);
    assert_int_equal(exp, 1000);
    assert_int_equal(cache_get(c, "k", 1, 1000, &v, &exp), 0);   /* expired at 1000 */
    assert_int_equal(cache_count(c), 0);                          /* dropped when met */
    cache_free(c);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    struct cache *c = cache_new(3);
    int64_t v;
    cache_put(c, "a", 1, 1, 0);
    cache_put(c, "b", 1, 2, 0);
    cache_put(c, "c", 1, 3, 0);
    assert_int_equal(get(c, "a", 0, &v), 1);        /* a is now most recent */
    cache_put(c, "d", 1, 4, 0);                     /* evicts b, the oldest */
    assert_int_equal(cache_count(c), 3);
    assert_int_equal(get(c, "b", 0, &v), 0);
    assert_int_equal(get(c, "a", 0, &v), 1);
    assert_int_equal(get(c, "c", 0, &v), 1);
    assert_int_equal(get(c, "d", 0, &v), 1);
    cache_free(c);
}

static void test_unbounded_growth(void **state)
{
    (void)state;
    struct cache *c = cache_new(0);
    char k[32];
    int64_t v;
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof(k), "user%d@example.com", i);
        cache_put(c, k, strlen(k), i, 0);
    }
    assert_int_equal(cache_count(c), 100000);
    for (int i = 0; i < 100000; i += 997) {
        snprintf(k, sizeof(k), "user%d@example.com", i);
        assert_int_equal(get(c, k, 0, &v), 1);
        assert_int_equal(v, i);
    }
    cache_clear(c);
    assert_int_equal(cache_count(c), 0);
    assert_int_equal(get(c, "user5@example.com", 0, &v), 0);
    cache_free(c);
}

static void sum(void *arg, const char *key, size_t klen, int64_t val, uint64_t exp)
{
    (void)key, (void)klen, (void)exp;
    *(int64_t *)arg += val;
}

static void test_walk_skips_expired(void **state)
{
    (void)state;
    struct cache *c = cache_new(0);
    int64_t total = 0;
    cache_put(c, "live", 4, 5, 0);
    cache_put(c, "later", 5, 7, 2000);
    cache_put(c, "gone", 4, 100, 500);
    cache_walk(c, 1000, sum, &total);
    assert_int_equal(total, 12);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_unbounded_growth),
        cmocka_unit_test(test_walk_skips_expired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
