/* The limiter through its interface: RPM and TPM per client and per client on a route,
 * remaining counts, settling, the sliding minute, refusals and what they say. */
#include "limit_test.h"

#define S 1000 /* ms per second, for readable times */

enum { BIG = 0, MINI = 1 };

static void test_rpm_exact(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 60}\n");
    struct sl_limit_status st;
    for (int i = 0; i < 60; i++) {
        struct sl_limit_ticket t = admit_ok(&f, 0, BIG, 100, 5 * S + (uint64_t)i * 10, &st);
        assert_true(t.active);
        assert_int_equal(st.remaining_requests, 59 - i);
        assert_true(st.remaining_tokens == UINT64_MAX);
        assert_null(st.which);
    }
    /* The 61st: the first 60 (all in second 5) leave at 65 s. */
    st = admit_refused(&f, 0, BIG, 100, 5 * S + 600, "rpm");
    assert_int_equal(st.retry_after_ms, 59400);
    assert_int_equal(st.remaining_requests, 0);
    assert_true(st.remaining_tokens == UINT64_MAX);
    st = admit_refused(&f, 0, BIG, 100, 65 * S - 1, "rpm");
    assert_int_equal(st.retry_after_ms, 1);
    /* A refusal charges nothing: exactly 60 fit again once the minute has passed. */
    for (int i = 0; i < 60; i++)
        admit_ok(&f, 0, BIG, 100, 65 * S, NULL);
    admit_refused(&f, 0, BIG, 100, 65 * S, "rpm");
    fixture_free(&f);
}

static void test_window_slides(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 60}\n");
    for (int i = 0; i < 30; i++)
        admit_ok(&f, 0, BIG, 0, 0, NULL);
    for (int i = 0; i < 30; i++)
        admit_ok(&f, 0, BIG, 0, 30 * S + 500, NULL);
    /* Full: the first 30 leave at 60 s. */
    struct sl_limit_status st = admit_refused(&f, 0, BIG, 0, 45 * S, "rpm");
    assert_int_equal(st.retry_after_ms, 15000);
    /* At 60 s the first half has gone and the second has 31 s to go. */
    for (int i = 0; i < 30; i++)
        admit_ok(&f, 0, BIG, 0, 60 * S, &st);
    assert_int_equal(st.remaining_requests, 0);
    st = admit_refused(&f, 0, BIG, 0, 60 * S + 250, "rpm");
    assert_int_equal(st.retry_after_ms, 90 * S - (60 * S + 250));
    /* After two idle hours everything has expired (a sweep over many missed seconds). */
    admit_ok(&f, 0, BIG, 0, 7200 * S, &st);
    assert_int_equal(st.remaining_requests, 59);
    fixture_free(&f);
}

static void test_tpm_estimates(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", tpm: 10000}\n");
    struct sl_limit_status st;
    struct sl_limit_ticket t = admit_ok(&f, 0, BIG, 4000, 1 * S, &st);
    assert_int_equal(t.tokens, 4000);
    assert_int_equal(t.at_ms, 1 * S);
    assert_int_equal(t.client, 0);
    assert_int_equal(t.route, BIG);
    assert_int_equal(st.remaining_tokens, 6000);
    assert_true(st.remaining_requests == UINT64_MAX);
    admit_ok(&f, 0, MINI, 4000, 2 * S, &st);
    assert_int_equal(st.remaining_tokens, 2000);
    st = admit_refused(&f, 0, BIG, 3000, 3 * S, "tpm");
    assert_int_equal(st.remaining_tokens, 2000);
    /* 1000 more must leave: the 4000 of second 1 leave at 61 s. */
    assert_int_equal(st.retry_after_ms, 58000);
    admit_ok(&f, 0, BIG, 2000, 3 * S, &st);
    assert_int_equal(st.remaining_tokens, 0);
    /* Over the tpm even with nothing: a request of 0 tokens still fits (0 ≤ what is left). */
    admit_ok(&f, 0, BIG, 0, 4 * S, &st);
    st = admit_refused(&f, 0, BIG, 1, 4 * S, "tpm");
    assert_int_equal(st.retry_after_ms, 57000);
    fixture_free(&f);
}

static void test_request_larger_than_tpm(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 10, tpm: 10000,\n"
                                         "     route_limits: [{route: mini, tpm: 500}]}\n");
    struct sl_limit_status st = admit_refused(&f, 0, BIG, 10001, 0, "tpm");
    assert_int_equal(st.retry_after_ms, 60000);
    assert_int_equal(st.remaining_tokens, 10000);
    assert_int_equal(st.remaining_requests, 10);
    st = admit_refused(&f, 0, MINI, 501, 0, "route tpm");
    assert_int_equal(st.retry_after_ms, 60000);
    assert_int_equal(st.remaining_tokens, 500);
    /* Nothing was charged by either. */
    admit_ok(&f, 0, BIG, 10000, 0, &st);
    assert_int_equal(st.remaining_requests, 9);
    assert_int_equal(st.remaining_tokens, 0);
    fixture_free(&f);
}

static void test_route_limits(void **state)
{
    struct fixture f;
    fixture_load(&f,
                 LIMIT_BASE CLIENT_A ", rpm: 5, tpm: 100000,\n"
                                     "     route_limits: [{route: mini, rpm: 3, tpm: 1000}]}\n");
    struct sl_limit_status st;
    for (int i = 0; i < 3; i++) {
        admit_ok(&f, 0, MINI, 200, 0, &st);
        assert_int_equal(st.remaining_requests, 2 - i); /* the route's, the stricter */
        assert_int_equal(st.remaining_tokens, 1000 - 200 * (i + 1));
    }
    st = admit_refused(&f, 0, MINI, 200, 0, "route rpm");
    assert_int_equal(st.retry_after_ms, 60000);
    assert_int_equal(st.remaining_requests, 0);
    assert_int_equal(st.remaining_tokens, 400);
    /* The other route has only the client's limits, of which the route's use counted. */
    admit_ok(&f, 0, BIG, 50000, 0, &st);
    assert_int_equal(st.remaining_requests, 1);
    assert_int_equal(st.remaining_tokens, 100000 - 600 - 50000);
    admit_ok(&f, 0, BIG, 0, 0, NULL);
    /* Now the client's own rpm refuses on either route. */
    admit_refused(&f, 0, BIG, 0, 0, "rpm");
    fixture_free(&f);
}

/* A reload keeps what was counted, by client and route name, under the new limits. */
static void test_adopt(void **state)
{
    struct fixture old, next;
    fixture_load(&old, LIMIT_BASE CLIENT_B
                 ", rpm: 10}\n" CLIENT_A ", rpm: 10, route_limits: [{route: mini, tpm: 1000}]}\n");
    for (int i = 0; i < 4; i++)
        admit_ok(&old, 1, MINI, 200, 0, NULL);
    admit_ok(&old, 0, BIG, 0, 0, NULL);
    /* Client a is first now, with a lower rpm; b is gone. */
    fixture_load(&next, LIMIT_BASE CLIENT_A ", rpm: 6, route_limits: [{route: mini, tpm: 900}]}\n");
    sl_limiter_adopt(next.l, old.l);
    struct sl_limit_status st;
    admit_ok(&next, 0, MINI, 100, 0, &st);
    assert_int_equal(st.remaining_requests, 1);
    assert_int_equal(st.remaining_tokens, 0);
    admit_refused(&next, 0, MINI, 1, 0, "route tpm");
    admit_ok(&next, 0, BIG, 0, 0, NULL);
    admit_refused(&next, 0, BIG, 0, 0, "rpm");
    fixture_free(&next);
    fixture_free(&old);
}

/* The route refuses after the client's windows were reserved: they are given back. */
static void test_refusal_rolls_back(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 10, tpm: 1000,\n"
                                         "     route_limits: [{route: mini, tpm: 100}]}\n");
    struct sl_limit_status st;
    admit_ok(&f, 0, MINI, 100, 0, &st);
    for (int i = 0; i < 5; i++) {
        st = admit_refused(&f, 0, MINI, 50, 0, "route tpm");
        assert_int_equal(st.remaining_requests, 9);
        assert_int_equal(st.remaining_tokens, 0);
    }
    admit_ok(&f, 0, BIG, 900, 0, &st);
    assert_int_equal(st.remaining_requests, 8);
    assert_int_equal(st.remaining_tokens, 0);
    fixture_free(&f);
}

/* Refused by several limits: the one that keeps the request out longest is named. */
static void test_longest_wait_named(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 2, tpm: 1000}\n");
    admit_ok(&f, 0, BIG, 50, 0, NULL);
    admit_ok(&f, 0, BIG, 900, 30 * S, NULL);
    /* rpm frees a request at 60 s; 150 tokens are only free once second 30 leaves. */
    struct sl_limit_status st = admit_refused(&f, 0, BIG, 200, 40 * S, "tpm");
    assert_int_equal(st.retry_after_ms, 50000);
    st = admit_refused(&f, 0, BIG, 10, 40 * S, "rpm");
    assert_int_equal(st.retry_after_ms, 20000);
    fixture_free(&f);
}

static void test_settle_gives_back(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", tpm: 1000,\n"
                                         "     route_limits: [{route: big, tpm: 1000}]}\n");
    struct sl_limit_status st;
    struct sl_limit_ticket t = admit_ok(&f, 0, BIG, 1000, 0, &st);
    assert_int_equal(st.remaining_tokens, 0);
    admit_refused(&f, 0, BIG, 900, 10 * S, "tpm");
    sl_limiter_settle(f.l, &t, 100, 20 * S);
    assert_false(t.active);
    /* Once per ticket: a second settle changes nothing. */
    sl_limiter_settle(f.l, &t, 0, 20 * S);
    admit_ok(&f, 0, BIG, 900, 20 * S, &st);
    assert_int_equal(st.remaining_tokens, 0);
    /* The 100 left stays where it was charged: it leaves at 60 s, the 900 at 80 s. */
    st = admit_refused(&f, 0, BIG, 100, 30 * S, "tpm");
    assert_int_equal(st.retry_after_ms, 30000);
    fixture_free(&f);
}

static void test_settle_to_nothing(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 2, tpm: 1000}\n");
    struct sl_limit_status st;
    struct sl_limit_ticket t = admit_ok(&f, 0, BIG, 800, 0, &st);
    /* Failed before any backend answered: every token back, the request still counted. */
    sl_limiter_settle(f.l, &t, 0, 1);
    admit_ok(&f, 0, BIG, 1000, 2, &st);
    assert_int_equal(st.remaining_requests, 0);
    assert_int_equal(st.remaining_tokens, 0);
    fixture_free(&f);
}

static void test_settle_adds(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", tpm: 1000}\n");
    struct sl_limit_status st;
    struct sl_limit_ticket t = admit_ok(&f, 0, BIG, 100, 0, &st);
    assert_int_equal(st.remaining_tokens, 900);
    sl_limiter_settle(f.l, &t, 600, 5 * S);
    st = admit_refused(&f, 0, BIG, 500, 5 * S, "tpm");
    assert_int_equal(st.remaining_tokens, 400);
    /* The correction went where the charge was: all of it leaves at 60 s. */
    assert_int_equal(st.retry_after_ms, 55000);
    admit_ok(&f, 0, BIG, 400, 5 * S, &st);
    assert_int_equal(st.remaining_tokens, 0);
    fixture_free(&f);
}

/* A request longer than the window: its charge has expired before it is settled. */
static void test_settle_after_expiry(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", tpm: 1000}\n" CLIENT_B ", tpm: 1000}\n");
    struct sl_limit_status st;
    /* Giving back: nothing is counted any more, so nothing changes (and nothing goes
     * below zero). */
    struct sl_limit_ticket t = admit_ok(&f, 0, BIG, 1000, 0, &st);
    sl_limiter_settle(f.l, &t, 10, 70 * S);
    admit_ok(&f, 0, BIG, 1, 70 * S, &st);
    assert_int_equal(st.remaining_tokens, 999);
    /* Adding: the tokens beyond the charge are charged when settled, for a minute. */
    t = admit_ok(&f, 1, BIG, 100, 0, &st);
    sl_limiter_settle(f.l, &t, 600, 70 * S);
    st = admit_refused(&f, 1, BIG, 600, 70 * S, "tpm");
    assert_int_equal(st.remaining_tokens, 500);
    assert_int_equal(st.retry_after_ms, 60000);
    fixture_free(&f);
}

static void test_clients_independent(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 3, tpm: 300}\n" CLIENT_B ", rpm: 3, tpm: 300}\n");
    struct sl_limit_status st;
    for (int i = 0; i < 3; i++)
        admit_ok(&f, 0, BIG, 100, 0, NULL);
    admit_refused(&f, 0, BIG, 0, 0, "rpm");
    for (int i = 0; i < 3; i++) {
        admit_ok(&f, 1, BIG, 100, 0, &st);
        assert_int_equal(st.remaining_requests, 2 - i);
        assert_int_equal(st.remaining_tokens, 200 - 100 * i);
    }
    admit_refused(&f, 1, MINI, 0, 0, "rpm");
    fixture_free(&f);
}

static void test_no_limits(void **state)
{
    struct fixture f;
    fixture_load(&f,
                 LIMIT_BASE CLIENT_A "}\n" CLIENT_B ", route_limits: [{route: mini, rpm: 1}]}\n");
    struct sl_limit_status st;
    for (int i = 0; i < 1000; i++) {
        struct sl_limit_ticket t = admit_ok(&f, 0, BIG, UINT64_MAX, 0, &st);
        assert_true(st.remaining_requests == UINT64_MAX);
        assert_true(st.remaining_tokens == UINT64_MAX);
        sl_limiter_settle(f.l, &t, 5, 1);
    }
    /* b is limited on mini only. */
    admit_ok(&f, 1, BIG, 100, 0, &st);
    assert_true(st.remaining_requests == UINT64_MAX);
    admit_ok(&f, 1, MINI, 100, 0, &st);
    assert_int_equal(st.remaining_requests, 0);
    assert_true(st.remaining_tokens == UINT64_MAX);
    admit_refused(&f, 1, MINI, 100, 0, "route rpm");
    /* A client the configuration does not know (no identity): nothing applies. */
    struct sl_limit_ticket t;
    assert_int_equal(sl_limiter_admit(f.l, 7, BIG, 100, 0, &t, &st), SL_OK);
    assert_false(t.active);
    assert_true(st.remaining_requests == UINT64_MAX);
    sl_limiter_settle(f.l, &t, 50, 0);
    fixture_free(&f);
}

/* Limits on several routes, listed out of the routes' order: each route finds its own. */
static void test_each_route_its_own(void **state)
{
    struct fixture f;
    fixture_load(&f, LIMIT_BASE CLIENT_A ",\n"
                                         "     route_limits: [{route: mini, rpm: 2, tpm: 50},\n"
                                         "                    {route: big, rpm: 1}]}\n");
    struct sl_limit_status st;
    admit_ok(&f, 0, MINI, 20, 0, &st);
    assert_int_equal(st.remaining_requests, 1);
    assert_int_equal(st.remaining_tokens, 30);
    admit_refused(&f, 0, MINI, 31, 0, "route tpm");
    admit_ok(&f, 0, MINI, 30, 0, NULL);
    admit_refused(&f, 0, MINI, 0, 0, "route rpm");
    admit_ok(&f, 0, BIG, 1000, 0, &st);
    assert_int_equal(st.remaining_requests, 0);
    assert_true(st.remaining_tokens == UINT64_MAX);
    admit_refused(&f, 0, BIG, 0, 0, "route rpm");
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpm_exact),           cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_tpm_estimates),       cmocka_unit_test(test_request_larger_than_tpm),
        cmocka_unit_test(test_route_limits),        cmocka_unit_test(test_adopt),
        cmocka_unit_test(test_refusal_rolls_back),  cmocka_unit_test(test_longest_wait_named),
        cmocka_unit_test(test_settle_gives_back),   cmocka_unit_test(test_settle_to_nothing),
        cmocka_unit_test(test_settle_adds),         cmocka_unit_test(test_settle_after_expiry),
        cmocka_unit_test(test_clients_independent), cmocka_unit_test(test_no_limits),
        cmocka_unit_test(test_each_route_its_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
