/* One sliding-minute window on its own: expiry across the wrap of its second tags, a
 * faster clock's slot, clamping, and the bookkeeping of its total. */
#include "limit_test.h"

#define S UINT64_C(1000)

static _Alignas(SL_LIMIT_CACHE_LINE) struct sl_limit_window w;

static bool take(uint64_t n, uint64_t now)
{
    uint64_t left;
    if (!sl_limit_window_reserve(&w, n, now, &left))
        return false;
    sl_limit_window_charge(&w, n, now);
    return true;
}

/* The second tags wrap after 2^24 s (194 days of monotonic clock): expiry does not care. */
static void test_tag_wrap(void **state)
{
    uint64_t wrap = (SL_LIMIT_TAG_MASK + 1) * S;
    sl_limit_window_init(&w, 10);
    for (int i = 0; i < 10; i++)
        assert_true(take(1, wrap - 30 * S));
    assert_false(take(1, wrap));
    assert_int_equal(sl_limit_window_wait(&w, 1, wrap + 29 * S), 1000);
    assert_false(take(1, wrap + 30 * S - 1));
    assert_true(take(10, wrap + 30 * S));
    assert_false(take(1, wrap + 30 * S));
    assert_int_equal(sl_limit_window_left(&w, wrap + 90 * S), 10);
}

/* Two charges of one slot are a minute apart, so a slot ahead of a worker's second was
 * written by a clock a minute ahead of its own: it adds to that charge (which then lasts
 * longer) instead of taking it for an old one to reset. */
static void test_clock_behind(void **state)
{
    sl_limit_window_init(&w, 100);
    assert_true(take(10, 120 * S));     /* slot 0, second 120 */
    assert_true(take(5, 60 * S + 500)); /* slot 0, second 60 */
    assert_int_equal(sl_limit_window_left(&w, 120 * S), 85);
    assert_int_equal(sl_limit_window_left(&w, 179 * S), 85);
    assert_int_equal(sl_limit_window_left(&w, 180 * S), 100);
    assert_int_equal(atomic_load(&w.total), 0);
}

/* Corrections never take a slot below zero, nor the total below what the slots hold. */
static void test_adjust_bounds(void **state)
{
    sl_limit_window_init(&w, 1000);
    assert_true(take(100, 0));
    sl_limit_window_adjust(&w, 0, 5000, 0, 1 * S); /* claims more was charged than was */
    assert_int_equal(sl_limit_window_left(&w, 1 * S), 1000);
    assert_true(take(300, 1 * S));
    /* A huge usage is clamped to what a slot holds, and refuses everything for a minute. */
    sl_limit_window_adjust(&w, 1 * S, 300, UINT64_MAX, 2 * S);
    assert_int_equal(sl_limit_window_left(&w, 2 * S), 0);
    assert_int_equal(sl_limit_window_wait(&w, 1, 2 * S), 59000);
    /* What did not fit in the charge's slot was charged at the settle's second. */
    assert_int_equal(sl_limit_window_left(&w, 61 * S), 700);
    assert_int_equal(sl_limit_window_left(&w, 62 * S), 1000);
    assert_int_equal(atomic_load(&w.total), 0);
}

/* A reservation that is given back leaves no trace. */
static void test_unreserve(void **state)
{
    uint64_t left;
    sl_limit_window_init(&w, 3);
    assert_true(sl_limit_window_reserve(&w, 2, 0, &left));
    assert_int_equal(left, 1);
    assert_false(sl_limit_window_reserve(&w, 2, 0, &left));
    assert_int_equal(left, 1);
    sl_limit_window_unreserve(&w, 2);
    assert_true(take(3, 0));
    assert_int_equal(sl_limit_window_left(&w, 60 * S), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tag_wrap),
        cmocka_unit_test(test_clock_behind),
        cmocka_unit_test(test_adjust_bounds),
        cmocka_unit_test(test_unreserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
