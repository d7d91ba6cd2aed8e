/* Retry budgets and the pin table. */
#include "balance_test.h"

#define CONFIG(routing)                                                                            \
    "backends:\n"                                                                                  \
    "  - {name: a, url: 'http://127.0.0.1:1', model: gpt-4o, version: '1'}\n"                      \
    "routes:\n"                                                                                    \
    "  - {name: r, backend: a, retry_budget: 20%}\n"                                               \
    "  - {name: quiet, backend: a, retry_budget: 0%}\n" routing

static int take_all(struct fixture *f, size_t route, uint64_t now)
{
    int n = 0;
    while (sl_balance_take_retry(f->b, route, now))
        assert_true(++n < 10000);
    return n;
}

static void test_retry_budget(void **state)
{
    struct fixture f;
    fixture_load(&f, CONFIG(""));
    /* 20 % of 1000 requests. */
    for (int i = 0; i < 1000; i++)
        sl_balance_count_request(f.b, 0, 1000);
    assert_int_equal(take_all(&f, 0, 1000), 200);
    /* More requests, more room. */
    for (int i = 0; i < 100; i++)
        sl_balance_count_request(f.b, 0, 2000);
    assert_int_equal(take_all(&f, 0, 2000), 20);
    /* Halfway through the next window, half of the last one still counts: 550 requests and
     * 110 retries, so the budget (110) is spent, but the first 100 of a window always pass. */
    assert_int_equal(take_all(&f, 0, 15000), 100);
    /* Two windows on, all of it is forgotten: the first 100 again. */
    assert_int_equal(take_all(&f, 0, 30000), 100);
    for (int i = 0; i < 1000; i++)
        sl_balance_count_request(f.b, 0, 30000);
    assert_int_equal(take_all(&f, 0, 30000), 100);
    /* A budget of 0 still allows 100 per window. */
    for (int i = 0; i < 1000; i++)
        sl_balance_count_request(f.b, 1, 1000);
    assert_int_equal(take_all(&f, 1, 1000), 100);
    fixture_free(&f);
}

static void test_pins(void **state)
{
    struct fixture f;
    size_t backend = 99;
    fixture_load(&f, CONFIG("routing: {max_pins: 32}\n"));
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("thread_1"), 1000, &backend), SL_ENOTFOUND);
    sl_balance_pin(f.b, SL_STR("thread_1"), 3, 1000, 1000);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("thread_1"), 1999, &backend), SL_OK);
    assert_int_equal(backend, 3);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("thread_2"), 1999, &backend), SL_ENOTFOUND);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("thread_"), 1999, &backend), SL_ENOTFOUND);
    /* ttl after it was last set. */
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("thread_1"), 2000, &backend), SL_ENOTFOUND);
    sl_balance_pin(f.b, SL_STR("thread_1"), 4, 1000, 2000);
    sl_balance_pin(f.b, SL_STR("thread_1"), 5, 1000, 2500);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("thread_1"), 3400, &backend), SL_OK);
    assert_int_equal(backend, 5);
    /* Empty and binary keys are keys. */
    sl_balance_pin(f.b, SL_STR(""), 1, 1000, 1000);
    sl_balance_pin(f.b, SL_STR("a\0b"), 2, 1000, 1000);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR(""), 1000, &backend), SL_OK);
    assert_int_equal(backend, 1);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("a\0b"), 1000, &backend), SL_OK);
    assert_int_equal(backend, 2);
    assert_int_equal(sl_balance_pinned(f.b, SL_STR("a"), 1000, &backend), SL_ENOTFOUND);
    fixture_free(&f);
}

static void test_pins_long_keys(void **state)
{
    struct fixture f;
    size_t backend = 99;
    char k1[1000], k2[1000];
    fixture_load(&f, CONFIG(""));
    memset(k1, 'x', sizeof(k1));
    memcpy(k2, k1, sizeof(k2));
    k2[999] = 'y';
    sl_balance_pin(f.b, (struct sl_str){k1, sizeof(k1)}, 7, 1000, 1000);
    assert_int_equal(sl_balance_pinned(f.b, (struct sl_str){k1, sizeof(k1)}, 1000, &backend),
                     SL_OK);
    assert_int_equal(backend, 7);
    assert_int_equal(sl_balance_pinned(f.b, (struct sl_str){k2, sizeof(k2)}, 1000, &backend),
                     SL_ENOTFOUND);
    /* Exactly at the limit: stored as it is. */
    sl_balance_pin(f.b, (struct sl_str){k1, SL_BALANCE_PIN_KEY_MAX}, 8, 1000, 1000);
    assert_int_equal(
        sl_balance_pinned(f.b, (struct sl_str){k1, SL_BALANCE_PIN_KEY_MAX}, 1000, &backend), SL_OK);
    assert_int_equal(backend, 8);
    fixture_free(&f);
}

/* n keys "key<i>" that all land in the same shard. */
static void same_shard_keys(struct fixture *f, char keys[][16], size_t n)
{
    size_t found = 0, shard = SIZE_MAX;
    for (int i = 0; found < n; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%d", i);
        size_t s = sl_balance_pin_shard(f->b, sl_str_from_cstr(k));
        if (shard == SIZE_MAX)
            shard = s;
        if (s == shard)
            memcpy(keys[found++], k, sizeof(k));
    }
}

static void test_pins_evict_oldest(void **state)
{
    struct fixture f;
    size_t backend;
    char keys[4][16];
    /* 32 over 16 shards: 2 per shard. */
    fixture_load(&f, CONFIG("routing: {max_pins: 32}\n"));
    same_shard_keys(&f, keys, 4);
#define K(i) sl_str_from_cstr(keys[i])
    sl_balance_pin(f.b, K(0), 0, 10000, 1000);
    sl_balance_pin(f.b, K(1), 1, 10000, 1001);
    sl_balance_pin(f.b, K(2), 2, 10000, 1002);
    assert_int_equal(sl_balance_pinned(f.b, K(0), 1003, &backend), SL_ENOTFOUND);
    assert_int_equal(sl_balance_pinned(f.b, K(1), 1003, &backend), SL_OK);
    assert_int_equal(sl_balance_pinned(f.b, K(2), 1003, &backend), SL_OK);
    /* Setting again makes it the newest: k2 stays, k1 goes. */
    sl_balance_pin(f.b, K(2), 2, 10000, 1004);
    sl_balance_pin(f.b, K(1), 1, 10000, 1005);
    sl_balance_pin(f.b, K(3), 3, 10000, 1006);
    assert_int_equal(sl_balance_pinned(f.b, K(2), 1007, &backend), SL_ENOTFOUND);
    assert_int_equal(sl_balance_pinned(f.b, K(1), 1007, &backend), SL_OK);
    assert_int_equal(backend, 1);
    assert_int_equal(sl_balance_pinned(f.b, K(3), 1007, &backend), SL_OK);
    assert_int_equal(backend, 3);
    /* Expired entries at the old end make room before live ones are dropped. */
    sl_balance_pin(f.b, K(0), 0, 10, 2000); /* drops k1 */
    assert_int_equal(sl_balance_pinned(f.b, K(3), 2000, &backend), SL_OK);
    assert_int_equal(sl_balance_pinned(f.b, K(0), 2010, &backend), SL_ENOTFOUND);
    sl_balance_pin(f.b, K(1), 1, 100000, 12000); /* k3 and k0 have expired */
    sl_balance_pin(f.b, K(2), 2, 100000, 12000);
    assert_int_equal(sl_balance_pinned(f.b, K(1), 12000, &backend), SL_OK);
    assert_int_equal(sl_balance_pinned(f.b, K(2), 12000, &backend), SL_OK);
#undef K
    /* Never more than max_pins in all. */
    size_t held = 0;
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "obj%d", i);
        sl_balance_pin(f.b, sl_str_from_cstr(k), (size_t)i, 10000, 3000);
    }
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "obj%d", i);
        if (sl_balance_pinned(f.b, sl_str_from_cstr(k), 3000, &backend) == SL_OK) {
            assert_int_equal(backend, i);
            held++;
        }
    }
    assert_true(held > 16 && held <= 32);
    fixture_free(&f);
}

static void test_pins_many(void **state)
{
    struct fixture f;
    size_t backend;
    fixture_load(&f, CONFIG("routing: {max_pins: 100000}\n"));
    /* Enough to make every shard grow its table a few times. */
    for (int i = 0; i < 20000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "resp_%08d", i);
        sl_balance_pin(f.b, sl_str_from_cstr(k), (size_t)(i % 7), 60000, 1000);
    }
    for (int i = 0; i < 20000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "resp_%08d", i);
        assert_int_equal(sl_balance_pinned(f.b, sl_str_from_cstr(k), 2000, &backend), SL_OK);
        assert_int_equal(backend, (size_t)(i % 7));
    }
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_budget),   cmocka_unit_test(test_pins),
        cmocka_unit_test(test_pins_long_keys), cmocka_unit_test(test_pins_evict_oldest),
        cmocka_unit_test(test_pins_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
