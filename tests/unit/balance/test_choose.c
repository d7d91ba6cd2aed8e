/* Choosing a backend: weights, priority groups, the query's filters, region, latency. */
#include "balance_test.h"

#define BACKEND(name, extra)                                                                       \
    "  - {name: " name ", url: 'http://127.0.0.1:1', model: gpt-4o, version: '1'" extra "}\n"

static void test_swrr_90_10(void **state)
{
    struct fixture f;
    fixture_load(&f, "backends:\n" BACKEND("a", "")
                         BACKEND("b", "") "routes:\n"
                                          "  - name: r\n"
                                          "    backends:\n"
                                          "      - {backend: a, weight: 90}\n"
                                          "      - {backend: b, weight: 10}\n");
    size_t a = 0;
    char seq[21] = {0};
    for (int i = 0; i < 2000; i++) {
        const char *name = attempt(&f, 0, 1000, SL_BALANCE_SUCCESS, 200, 0);
        if (i < 20)
            seq[i] = name[0];
        a += strcmp(name, "a") == 0;
    }
    /* Within 1 %: smooth weighted round robin is exact over whole rounds. */
    assert_in_range(a, 1780, 1820);
    assert_int_equal(a, 1800);
    /* Smooth: b is spread out, not bunched at the end of each round of ten. */
    assert_string_equal(seq, "aaaaabaaaaaaaaabaaaa");
    fixture_free(&f);
}

static void test_swrr_even(void **state)
{
    struct fixture f;
    fixture_load(&f,
                 "backends:\n" BACKEND("a", "") BACKEND("b", "")
                     BACKEND("c", "") "routes:\n"
                                      "  - name: r\n"
                                      "    backends: [{backend: a}, {backend: b}, {backend: c}]\n");
    char seq[7] = {0};
    for (int i = 0; i < 6; i++)
        seq[i] = attempt(&f, 0, 1000, SL_BALANCE_SUCCESS, 200, 0)[0];
    assert_string_equal(seq, "abcabc");
    fixture_free(&f);
}

#define SPILL_CONFIG                                                                               \
    "backends:\n" BACKEND("a1", "") BACKEND("a2", "")                                              \
        BACKEND("b", "") "routes:\n"                                                               \
                         "  - name: r\n"                                                           \
                         "    backends:\n"                                                         \
                         "      - {backend: b, priority: 2}\n"                                     \
                         "      - {backend: a1, priority: 1}\n"                                    \
                         "      - {backend: a2, priority: 1}\n"

static void test_priority_spill_over(void **state)
{
    struct fixture f;
    fixture_load(&f, SPILL_CONFIG);
    /* The lower group serves while it can. */
    for (int i = 0; i < 10; i++)
        assert_true(attempt(&f, 0, 1000, SL_BALANCE_SUCCESS, 200, 0)[0] == 'a');
    /* One of it throttled: the other takes everything, nothing spills. */
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "a1");
    report(&f, &p, SL_BALANCE_THROTTLED, 429, 5000, 1000);
    for (int i = 0; i < 5; i++)
        assert_string_equal(attempt(&f, 0, 1001, SL_BALANCE_SUCCESS, 200, 0), "a2");
    /* Both: group 2 serves. */
    assert_string_equal(choose_ok(&f, &q, 1001, &p), "a2");
    report(&f, &p, SL_BALANCE_THROTTLED, 429, 3000, 1001);
    for (int i = 0; i < 5; i++)
        assert_string_equal(attempt(&f, 0, 2000, SL_BALANCE_SUCCESS, 200, 0), "b");
    /* a2 is back first (at 4001), and the group with it. */
    assert_string_equal(attempt(&f, 0, 4001, SL_BALANCE_SUCCESS, 200, 0), "a2");
    assert_string_equal(attempt(&f, 0, 4001, SL_BALANCE_SUCCESS, 200, 0), "a2");
    assert_true(attempt(&f, 0, 6000, SL_BALANCE_SUCCESS, 200, 0)[0] == 'a');
    fixture_free(&f);
}

static void test_tried(void **state)
{
    struct fixture f;
    fixture_load(&f, SPILL_CONFIG);
    uint64_t tried[SL_BALANCE_BITMAP_WORDS(3)] = {0};
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    uint64_t retry_at;
    q.tried = tried;
    tried[0] |= 1u << backend_index(&f, "a1");
    for (int i = 0; i < 4; i++) {
        assert_string_equal(choose_ok(&f, &q, 1000, &p), "a2");
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    }
    tried[0] |= 1u << backend_index(&f, "a2");
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "b");
    report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    tried[0] |= 1u << backend_index(&f, "b");
    assert_int_equal(sl_balance_choose(f.w, &q, 1000, &p, &retry_at), SL_ENOTFOUND);
    fixture_free(&f);
}

#define GEO_CONFIG                                                                                 \
    "backends:\n" BACKEND("us1", ", region: eastus, geography: us")                                \
        BACKEND("eu1", ", region: westeurope, geography: eu")                                      \
            BACKEND("eu2", ", region: swedencentral, geography: eu")                               \
                BACKEND("none", "") "routes:\n"                                                    \
                                    "  - name: r\n"                                                \
                                    "    backends: [{backend: us1}, {backend: eu1}, {backend: "    \
                                    "eu2}, {backend: none}]\n"

static void test_geography(void **state)
{
    struct fixture f;
    fixture_load(&f, GEO_CONFIG);
    const char *eu[] = {"eu"}, *us_eu[] = {"us", "eu"}, *asia[] = {"asia"}, *eu_upper[] = {"EU"};
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    uint64_t retry_at;
    int seen_none = 0;

    q.geographies = eu;
    q.n_geographies = 1;
    for (int i = 0; i < 10; i++) {
        const char *name = choose_ok(&f, &q, 1000, &p);
        assert_true(strcmp(name, "eu1") == 0 || strcmp(name, "eu2") == 0);
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    }
    /* A backend without a geography never serves a bound request. */
    q.geographies = us_eu;
    q.n_geographies = 2;
    for (int i = 0; i < 12; i++) {
        seen_none += strcmp(choose_ok(&f, &q, 1000, &p), "none") == 0;
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    }
    assert_int_equal(seen_none, 0);
    q.geographies = asia;
    q.n_geographies = 1;
    assert_int_equal(sl_balance_choose(f.w, &q, 1000, &p, &retry_at), SL_ENOTFOUND);
    /* Names compare exactly, as the loader compares them. */
    q.geographies = eu_upper;
    assert_int_equal(sl_balance_choose(f.w, &q, 1000, &p, &retry_at), SL_ENOTFOUND);
    /* Unbound: every one serves. */
    q.n_geographies = 0;
    for (int i = 0; i < 8; i++) {
        seen_none += strcmp(choose_ok(&f, &q, 1000, &p), "none") == 0;
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    }
    assert_int_equal(seen_none, 2);
    fixture_free(&f);
}

static void test_only(void **state)
{
    struct fixture f;
    fixture_load(&f, "backends:\n" BACKEND("a", "") BACKEND("b", "")
                         BACKEND("c", "") "routes:\n"
                                          "  - name: r\n"
                                          "    backends: [{backend: a}, {backend: b}]\n"
                                          "  - {name: s, backend: c}\n");
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    uint64_t retry_at = 0;
    q.only = backend_index(&f, "b");
    for (int i = 0; i < 4; i++) {
        assert_string_equal(choose_ok(&f, &q, 1000, &p), "b");
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    }
    /* Pinned to a backend that cannot serve now: wait for it, do not go elsewhere. */
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "b");
    report(&f, &p, SL_BALANCE_THROTTLED, 429, 2000, 1000);
    assert_int_equal(sl_balance_choose(f.w, &q, 1500, &p, &retry_at), SL_EAGAIN);
    assert_int_equal(retry_at, 3000);
    assert_string_equal(choose_ok(&f, &q, 3000, &p), "b");
    report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 3000);
    /* Pinned to a backend the route does not have. */
    q.only = backend_index(&f, "c");
    assert_int_equal(sl_balance_choose(f.w, &q, 1000, &p, &retry_at), SL_ENOTFOUND);
    fixture_free(&f);
}

static void test_region(void **state)
{
    struct fixture f;
    fixture_load(&f, GEO_CONFIG);
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    q.region = SL_STR("WestEurope");
    for (int i = 0; i < 5; i++) {
        assert_string_equal(choose_ok(&f, &q, 1000, &p), "eu1");
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    }
    /* The regional one is open: the rest of its group serves. */
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "eu1");
    report(&f, &p, SL_BALANCE_THROTTLED, 429, 1000, 1000);
    int seen[4] = {0};
    for (int i = 0; i < 9; i++) {
        const char *name = choose_ok(&f, &q, 1500, &p);
        assert_string_not_equal(name, "eu1");
        seen[p.backend]++;
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1500);
    }
    assert_int_equal(seen[backend_index(&f, "us1")], 3);
    assert_int_equal(seen[backend_index(&f, "eu2")], 3);
    assert_int_equal(seen[backend_index(&f, "none")], 3);
    assert_string_equal(choose_ok(&f, &q, 2000, &p), "eu1");
    report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 2000);
    /* A region no backend is in: as if unknown. */
    q.region = SL_STR("japaneast");
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < 8; i++) {
        choose_ok(&f, &q, 2000, &p);
        seen[p.backend]++;
        report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 2000);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(seen[i], 2);
    fixture_free(&f);
}

static void test_region_stays_in_group(void **state)
{
    struct fixture f;
    /* The client's region does not pull requests into a higher priority group. */
    fixture_load(&f,
                 "backends:\n" BACKEND("near", ", region: westeurope")
                     BACKEND("far", ", region: eastus") "routes:\n"
                                                        "  - name: r\n"
                                                        "    backends:\n"
                                                        "      - {backend: far, priority: 1}\n"
                                                        "      - {backend: near, priority: 2}\n");
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    q.region = SL_STR("westeurope");
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "far");
    report(&f, &p, SL_BALANCE_SUCCESS, 200, 0, 1000);
    fixture_free(&f);
}

static void test_prefer_low_latency(void **state)
{
    struct fixture f;
    fixture_load(&f,
                 "backends:\n" BACKEND("a", "") BACKEND("b", "")
                     BACKEND("c", "") "routes:\n"
                                      "  - name: r\n"
                                      "    backends: [{backend: a}, {backend: b}, {backend: c}]\n"
                                      "    prefer_low_latency: true\n");
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    struct sl_balance_result r = {.outcome = SL_BALANCE_SUCCESS, .status = 200};
    /* No sample counts as 0, so each gets measured once. */
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "a");
    r.ttfb_ms = 100;
    sl_balance_report(f.b, &p, &r, 1000);
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "b");
    r.ttfb_ms = 50;
    sl_balance_report(f.b, &p, &r, 1000);
    assert_string_equal(choose_ok(&f, &q, 1000, &p), "c");
    r.ttfb_ms = 200;
    sl_balance_report(f.b, &p, &r, 1000);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(choose_ok(&f, &q, 1000, &p), "b");
        r.ttfb_ms = 50;
        sl_balance_report(f.b, &p, &r, 1000);
    }
    /* b slows down: the average follows (alpha 0.2) until a is faster. */
    int n = 0;
    while (strcmp(choose_ok(&f, &q, 1000, &p), "b") == 0) {
        r.ttfb_ms = 200;
        sl_balance_report(f.b, &p, &r, 1000);
        assert_true(++n < 10);
    }
    assert_string_equal(f.cfg->backends[p.backend].name, "a");
    assert_int_equal(n, 2); /* 50 -> 80 -> 104 */
    r.ttfb_ms = 100;
    sl_balance_report(f.b, &p, &r, 1000);
    fixture_free(&f);
}

static void test_in_flight(void **state)
{
    struct fixture f;
    fixture_load(&f, "backends:\n" BACKEND("a", "") "routes:\n  - {name: r, backend: a}\n");
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p1, p2;
    choose_ok(&f, &q, 1000, &p1);
    choose_ok(&f, &q, 1000, &p2);
    assert_int_equal(atomic_load(&f.b->backends[0].in_flight), 2);
    report(&f, &p1, SL_BALANCE_SUCCESS, 200, 0, 1000);
    report(&f, &p2, SL_BALANCE_CANCELLED, 0, 0, 1000);
    assert_int_equal(atomic_load(&f.b->backends[0].in_flight), 0);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swrr_90_10),
        cmocka_unit_test(test_swrr_even),
        cmocka_unit_test(test_priority_spill_over),
        cmocka_unit_test(test_tried),
        cmocka_unit_test(test_geography),
        cmocka_unit_test(test_only),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_region_stays_in_group),
        cmocka_unit_test(test_prefer_low_latency),
        cmocka_unit_test(test_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
