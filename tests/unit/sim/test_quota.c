/* Quota windows with an injected clock: admission, and retry-after to the millisecond. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sim/internal.h"

/* Wall clocks start far from zero; so do these tests. */
#define T0 1000000000ull

static struct sl_sim_admission adm;

static bool try_at(struct sl_sim_quota *q, uint64_t t, uint64_t tokens)
{
    sl_sim_quota_admit(q, T0 + t, tokens, &adm);
    return adm.admitted;
}

/* Would a copy of q admit tokens at t? (without changing q) */
static bool would_admit(const struct sl_sim_quota *q, uint64_t t, uint64_t tokens)
{
    struct sl_sim_quota copy = *q;
    struct sl_sim_admission a;
    sl_sim_quota_admit(&copy, T0 + t, tokens, &a);
    return a.admitted;
}

static void test_window(void **state)
{
    struct sl_sim_window w;
    sl_sim_window_init(&w, 60, 1000);
    sl_sim_window_add(&w, T0, 5);
    sl_sim_window_add(&w, T0 + 30500, 7);
    assert_int_equal(sl_sim_window_total(&w, T0 + 59999), 12);
    assert_int_equal(sl_sim_window_wait_ms(&w, T0 + 59999, 7), 1);
    assert_int_equal(sl_sim_window_wait_ms(&w, T0 + 59999, 12), 0);
    assert_int_equal(sl_sim_window_wait_ms(&w, T0 + 100, 0), 90000 - 100);
    assert_int_equal(sl_sim_window_total(&w, T0 + 60000), 7);
    /* counted in whole buckets: what came at 30.5 s leaves at 90 s */
    assert_int_equal(sl_sim_window_total(&w, T0 + 89999), 7);
    assert_int_equal(sl_sim_window_total(&w, T0 + 90000), 0);
    /* a long silence empties it */
    sl_sim_window_add(&w, T0 + 100000, 3);
    assert_int_equal(sl_sim_window_total(&w, T0 + 1000000), 0);
    sl_sim_window_add(&w, T0 + 1000000, 1);
    sl_sim_window_clear(&w);
    assert_int_equal(sl_sim_window_total(&w, T0 + 1000000), 0);
}

static void test_tpm_exact_retry_after(void **state)
{
    struct sl_sim_quota q;
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_STANDARD, 1000, 1000000);
    assert_true(try_at(&q, 0, 300));
    assert_int_equal(adm.remaining_tokens, 700);
    assert_true(try_at(&q, 5000, 300));
    assert_true(try_at(&q, 10000, 300));
    assert_int_equal(adm.remaining_tokens, 100);
    assert_false(try_at(&q, 20000, 300));
    assert_int_equal(adm.limit, SL_SIM_LIMIT_TOKENS);
    /* the charge at 0 s leaves the minute at 60 s */
    assert_int_equal(adm.retry_after_ms, 40000);
    assert_int_equal(adm.remaining_tokens, 100);
    assert_false(would_admit(&q, 59999, 300));
    assert_true(would_admit(&q, 60000, 300));
    /* a larger request needs two charges gone */
    assert_false(try_at(&q, 20000, 600));
    assert_int_equal(adm.retry_after_ms, 45000);
    assert_false(would_admit(&q, 64999, 600));
    assert_true(would_admit(&q, 65000, 600));
    /* a request that fits is still admitted */
    assert_true(try_at(&q, 20000, 100));
    assert_int_equal(adm.remaining_tokens, 0);
}

static void test_oversized_request(void **state)
{
    struct sl_sim_quota q;
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_STANDARD, 1000, 1000000);
    /* larger than the limit: admitted into an empty minute only */
    assert_true(try_at(&q, 0, 5000));
    assert_int_equal(adm.remaining_tokens, 0);
    assert_false(try_at(&q, 1500, 5000));
    assert_int_equal(adm.retry_after_ms, 58500);
    assert_false(try_at(&q, 1500, 1));
    assert_int_equal(adm.retry_after_ms, 58500);
    assert_true(would_admit(&q, 60000, 5000));
}

static void test_rpm_default_and_slices(void **state)
{
    struct sl_sim_quota q;
    /* 1000 TPM: Azure's 6 RPM, enforced as 1 per 10 s slice */
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_STANDARD, 1000, 0);
    assert_int_equal(q.rpm, 6);
    assert_int_equal(q.rps10, 1);
    assert_true(try_at(&q, 2000, 1));
    assert_int_equal(adm.remaining_requests, 5);
    assert_false(try_at(&q, 3000, 1));
    assert_int_equal(adm.limit, SL_SIM_LIMIT_REQUESTS);
    assert_int_equal(adm.retry_after_ms, 7000); /* the next slice starts at 10 s */
    assert_false(would_admit(&q, 9999, 1));
    assert_true(would_admit(&q, 10000, 1));
    /* both limits refuse: the wait covers both, and the message is about tokens */
    assert_false(try_at(&q, 3000, 2000));
    assert_int_equal(adm.limit, SL_SIM_LIMIT_TOKENS);
    assert_int_equal(adm.retry_after_ms, 59000);

    /* small TPM still gets one request a minute */
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_STANDARD, 10, 0);
    assert_int_equal(q.rpm, 1);
    assert_int_equal(q.rps10, 1);
    /* unlimited */
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_STANDARD, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(try_at(&q, (uint64_t)i, 1000000));
    assert_true(adm.remaining_tokens == UINT64_MAX && adm.remaining_requests == UINT64_MAX);
}

static void test_rpm_minute(void **state)
{
    struct sl_sim_quota q;
    /* 12 RPM: 2 per slice, 12 in any minute */
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_STANDARD, 0, 12);
    assert_int_equal(q.rps10, 2);
    uint64_t t = 0;
    int admitted = 0;
    for (int i = 0; i < 12; i++, t += 5000)
        admitted += try_at(&q, t, 0);
    assert_int_equal(admitted, 12);
    assert_int_equal(adm.remaining_requests, 0);
    /* t = 60 s: the request of 0 s has just left, the slice is fresh */
    assert_true(try_at(&q, 60000, 0));
    assert_false(try_at(&q, 60001, 0));
    assert_int_equal(adm.retry_after_ms, 4999); /* until the one of 5 s leaves */
    assert_true(would_admit(&q, 65000, 0));
}

static void test_provisioned(void **state)
{
    struct sl_sim_quota q;
    /* 6000 TPM of PTU: 100 tokens per second at 100% */
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_PROVISIONED, 6000, 0);
    assert_true(try_at(&q, 0, 80));
    assert_int_equal(adm.utilisation_pct10, 0);
    assert_true(try_at(&q, 150, 50)); /* below 100%: admitted, and may overshoot */
    assert_int_equal(adm.utilisation_pct10, 800);
    assert_false(try_at(&q, 160, 1));
    assert_int_equal(adm.limit, SL_SIM_LIMIT_PROVISIONED);
    assert_int_equal(adm.utilisation_pct10, 1300);
    /* the first charge leaves the second at 1.0 s; 50 stay, below 100 */
    assert_int_equal(adm.retry_after_ms, 840);
    assert_false(would_admit(&q, 999, 1));
    assert_true(would_admit(&q, 1000, 1));
    /* no RPM for PTU */
    sl_sim_quota_init(&q, SL_SIM_CAPACITY_PROVISIONED, 6000000, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(try_at(&q, 0, 1));
}

/* Every refusal's retry-after is exact: admitted at t + retry, refused a millisecond earlier. */
static void test_retry_after_is_exact(void **state)
{
    uint64_t rng = 99;
    for (int round = 0; round < 4; round++) {
        struct sl_sim_quota q;
        enum sl_sim_capacity cap =
            round == 3 ? SL_SIM_CAPACITY_PROVISIONED : SL_SIM_CAPACITY_STANDARD;
        sl_sim_quota_init(&q, cap, 3000 + 1000 * (uint64_t)round, (uint64_t)round * 5);
        uint64_t t = 0;
        int refusals = 0;
        for (int i = 0; i < 3000; i++) {
            t += sl_sim_rand_below(&rng, 700);
            uint64_t tokens = 1 + sl_sim_rand_below(&rng, 400);
            if (try_at(&q, t, tokens))
                continue;
            refusals++;
            uint64_t r = adm.retry_after_ms;
            assert_true(r >= 1);
            assert_true(would_admit(&q, t + r, tokens));
            if (r > 1)
                assert_false(would_admit(&q, t + r - 1, tokens));
        }
        assert_true(refusals > 100);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_tpm_exact_retry_after),
        cmocka_unit_test(test_oversized_request),
        cmocka_unit_test(test_rpm_default_and_slices),
        cmocka_unit_test(test_rpm_minute),
        cmocka_unit_test(test_provisioned),
        cmocka_unit_test(test_retry_after_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
