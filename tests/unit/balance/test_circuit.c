/* Circuit breakers: throttling, failures, back-off, the half-open trial; readiness; status. */
#include <jansson.h>

#include "balance_test.h"

#define ONE                                                                                        \
    "backends:\n"                                                                                  \
    "  - {name: a, url: 'http://127.0.0.1:1', model: gpt-4o, version: '1', region: eastus, "       \
    "geography: us, failure_threshold: 3, open_time: 1s, max_open_time: 3s, throttle_time: 10s}\n" \
    "routes:\n"                                                                                    \
    "  - {name: r, backend: a}\n"

static void test_outcomes(void **state)
{
    assert_int_equal(sl_balance_status_outcome(200), SL_BALANCE_SUCCESS);
    assert_int_equal(sl_balance_status_outcome(400), SL_BALANCE_SUCCESS);
    assert_int_equal(sl_balance_status_outcome(404), SL_BALANCE_SUCCESS);
    assert_int_equal(sl_balance_status_outcome(429), SL_BALANCE_THROTTLED);
    assert_int_equal(sl_balance_status_outcome(500), SL_BALANCE_FAILURE);
    assert_int_equal(sl_balance_status_outcome(502), SL_BALANCE_FAILURE);
    assert_int_equal(sl_balance_status_outcome(503), SL_BALANCE_FAILURE);
    assert_int_equal(sl_balance_status_outcome(504), SL_BALANCE_FAILURE);
    assert_int_equal(sl_balance_status_outcome(501), SL_BALANCE_SUCCESS);
    assert_true(sl_balance_status_retryable(429));
    assert_true(sl_balance_status_retryable(500));
    assert_true(sl_balance_status_retryable(504));
    assert_false(sl_balance_status_retryable(400));
    assert_false(sl_balance_status_retryable(501));
    assert_false(sl_balance_status_retryable(200));
    assert_string_equal(sl_balance_state_name(SL_BALANCE_CLOSED), "closed");
    assert_string_equal(sl_balance_state_name(SL_BALANCE_OPEN), "open");
    assert_string_equal(sl_balance_state_name(SL_BALANCE_HALF_OPEN), "half-open");
}

static void test_throttled(void **state)
{
    struct fixture f;
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p1, p2, p3;
    uint64_t retry_at = 0;
    fixture_load(&f, ONE);

    /* Three attempts in flight; the first is throttled for 2 s. */
    choose_ok(&f, &q, 1000, &p1);
    choose_ok(&f, &q, 1000, &p2);
    choose_ok(&f, &q, 1000, &p3);
    report(&f, &p1, SL_BALANCE_THROTTLED, 429, 2000, 1000);
    assert_int_equal(state_of(&f, "a", 1000), SL_BALANCE_OPEN);
    assert_int_equal(sl_balance_choose(f.w, &q, 1000, &p1, &retry_at), SL_EAGAIN);
    assert_int_equal(retry_at, 3000);
    /* A shorter one later does not shorten it; a longer one extends it. */
    report(&f, &p2, SL_BALANCE_THROTTLED, 429, 500, 1200);
    assert_int_equal(sl_balance_choose(f.w, &q, 2999, &p1, &retry_at), SL_EAGAIN);
    assert_int_equal(retry_at, 3000);
    report(&f, &p3, SL_BALANCE_THROTTLED, 429, 2500, 1500);
    assert_int_equal(sl_balance_choose(f.w, &q, 3000, &p1, &retry_at), SL_EAGAIN);
    assert_int_equal(retry_at, 4000);
    /* A 429 is no failure. */
    assert_int_equal(atomic_load(&f.b->backends[0].failures), 0);
    uint64_t reopen = 0;
    bool throttled = false;
    sl_balance_outlook(f.b, &q, 3999, &reopen, &throttled);
    assert_true(throttled);
    assert_int_equal(reopen, 4000);
    sl_balance_outlook(f.b, &q, 4000, &reopen, &throttled);
    assert_false(throttled);
    assert_int_equal(reopen, 0);
    /* Then straight back to closed, no trial. */
    assert_int_equal(state_of(&f, "a", 4000), SL_BALANCE_CLOSED);
    choose_ok(&f, &q, 4000, &p1);
    assert_false(p1.probe);
    choose_ok(&f, &q, 4000, &p2);
    assert_false(p2.probe);
    report(&f, &p2, SL_BALANCE_SUCCESS, 200, 0, 4000);
    /* No retry header: the backend's throttle_time. */
    report(&f, &p1, SL_BALANCE_THROTTLED, 429, 0, 5000);
    assert_int_equal(sl_balance_choose(f.w, &q, 5000, &p1, &retry_at), SL_EAGAIN);
    assert_int_equal(retry_at, 15000);
    assert_string_equal(attempt(&f, 0, 15000, SL_BALANCE_SUCCESS, 200, 0), "a");
    fixture_free(&f);
}

/* Fail attempts on a until its circuit opens (threshold 3). */
static void fail_until_open(struct fixture *f, uint64_t now)
{
    for (int i = 0; i < 3; i++) {
        assert_int_equal(state_of(f, "a", now), SL_BALANCE_CLOSED);
        attempt(f, 0, now, SL_BALANCE_FAILURE, 503, 0);
    }
    assert_int_equal(state_of(f, "a", now), SL_BALANCE_OPEN);
}

/* At now the circuit is half-open: take its trial, check that nobody else gets one. When
 * opened_until, the circuit was open until exactly now. */
static void take_trial(struct fixture *f, uint64_t now, struct sl_balance_pick *probe,
                       bool opened_until)
{
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    uint64_t retry_at = 0;
    if (opened_until) {
        assert_int_equal(sl_balance_choose(f->w, &q, now - 1, &p, &retry_at), SL_EAGAIN);
        assert_int_equal(retry_at, now);
    }
    assert_int_equal(state_of(f, "a", now), SL_BALANCE_HALF_OPEN);
    choose_ok(f, &q, now, probe);
    assert_true(probe->probe);
    assert_int_equal(sl_balance_choose(f->w, &q, now, &p, &retry_at), SL_EAGAIN);
    assert_int_equal(retry_at, now + 1000);
    assert_int_equal(sl_balance_choose(f->w, &q, now + 500, &p, &retry_at), SL_EAGAIN);
}

static void test_failures_and_back_off(void **state)
{
    struct fixture f;
    struct sl_balance_pick probe;
    fixture_load(&f, ONE);

    /* A success in between starts the count again. */
    attempt(&f, 0, 1000, SL_BALANCE_FAILURE, 503, 0);
    attempt(&f, 0, 1000, SL_BALANCE_FAILURE, 503, 0);
    attempt(&f, 0, 1000, SL_BALANCE_SUCCESS, 200, 0);
    assert_int_equal(atomic_load(&f.b->backends[0].failures), 0);
    attempt(&f, 0, 1000, SL_BALANCE_FAILURE, 500, 0);
    attempt(&f, 0, 1000, SL_BALANCE_FAILURE, 500, 0);
    assert_int_equal(state_of(&f, "a", 1000), SL_BALANCE_CLOSED);
    attempt(&f, 0, 1000, SL_BALANCE_FAILURE, 500, 0);
    assert_int_equal(state_of(&f, "a", 1000), SL_BALANCE_OPEN);
    /* Failing, not throttled. */
    uint64_t reopen = 0;
    bool throttled = true;
    struct sl_balance_query q = query(0);
    sl_balance_outlook(f.b, &q, 1000, &reopen, &throttled);
    assert_false(throttled);
    assert_int_equal(reopen, 2000);

    /* open_time 1 s, then one trial; it fails: 2 s, fails: 3 s (capped, not 4). */
    take_trial(&f, 2000, &probe, true);
    report(&f, &probe, SL_BALANCE_FAILURE, 502, 0, 2100);
    take_trial(&f, 4100, &probe, true);
    report(&f, &probe, SL_BALANCE_FAILURE, 0, 0, 4200);
    take_trial(&f, 7200, &probe, true);
    /* The client went away: the trial says nothing, the next caller gets one. */
    report(&f, &probe, SL_BALANCE_CANCELLED, 0, 0, 7300);
    assert_int_equal(state_of(&f, "a", 7300), SL_BALANCE_HALF_OPEN);
    take_trial(&f, 7400, &probe, false);
    report(&f, &probe, SL_BALANCE_SUCCESS, 200, 0, 7500);
    assert_int_equal(state_of(&f, "a", 7500), SL_BALANCE_CLOSED);
    assert_int_equal(atomic_load(&f.b->backends[0].failures), 0);
    assert_int_equal(atomic_load(&f.b->backends[0].level), 0);
    assert_int_equal(atomic_load(&f.b->backends[0].in_flight), 0);

    /* Closed again at level 0: the next opening lasts open_time again. */
    fail_until_open(&f, 8000);
    take_trial(&f, 9000, &probe, true);
    report(&f, &probe, SL_BALANCE_FAILURE, 503, 0, 9000);
    take_trial(&f, 11000, &probe, true);
    /* A throttled trial: open for its retry time, then another trial (level unchanged). */
    report(&f, &probe, SL_BALANCE_THROTTLED, 429, 500, 11000);
    assert_int_equal(state_of(&f, "a", 11000), SL_BALANCE_OPEN);
    take_trial(&f, 11500, &probe, true);
    report(&f, &probe, SL_BALANCE_FAILURE, 503, 0, 11500);
    /* level 2: 4 s capped at 3 s. */
    take_trial(&f, 14500, &probe, true);
    report(&f, &probe, SL_BALANCE_SUCCESS, 200, 0, 14500);
    assert_int_equal(state_of(&f, "a", 14500), SL_BALANCE_CLOSED);
    fixture_free(&f);
}

static void test_late_answers(void **state)
{
    struct fixture f;
    struct sl_balance_query q = query(0);
    struct sl_balance_pick late[3], probe;
    fixture_load(&f, ONE);
    for (int i = 0; i < 3; i++)
        choose_ok(&f, &q, 1000, &late[i]);
    fail_until_open(&f, 1000);
    /* Answers to attempts sent before it opened neither extend nor close it. */
    report(&f, &late[0], SL_BALANCE_FAILURE, 503, 0, 1900);
    assert_int_equal(state_of(&f, "a", 2000), SL_BALANCE_HALF_OPEN);
    take_trial(&f, 2000, &probe, true);
    report(&f, &late[1], SL_BALANCE_SUCCESS, 200, 0, 2000);
    assert_int_equal(state_of(&f, "a", 2000), SL_BALANCE_HALF_OPEN);
    assert_int_equal(atomic_load(&f.b->backends[0].failures), 0);
    /* ... but a late 429 does keep it away for the time asked. */
    report(&f, &late[2], SL_BALANCE_THROTTLED, 429, 1000, 2000);
    assert_int_equal(state_of(&f, "a", 2500), SL_BALANCE_OPEN);
    report(&f, &probe, SL_BALANCE_SUCCESS, 200, 0, 2600);
    assert_int_equal(state_of(&f, "a", 2600), SL_BALANCE_CLOSED);
    fixture_free(&f);
}

#define TWO_ROUTES(readiness)                                                                      \
    "backends:\n"                                                                                  \
    "  - {name: a, url: 'http://127.0.0.1:1', model: gpt-4o, version: '1'}\n"                      \
    "  - {name: b, url: 'http://127.0.0.1:2', model: gpt-4o, version: '1'}\n"                      \
    "routes:\n"                                                                                    \
    "  - {name: ra, backend: a}\n"                                                                 \
    "  - {name: rb, backend: b}\n"                                                                 \
    "routing: {readiness: " readiness "}\n"

static void test_ready(void **state)
{
    struct fixture f;
    struct sl_buf down;
    sl_buf_init(&down);

    fixture_load(&f, TWO_ROUTES("any"));
    assert_true(sl_balance_ready(f.b, 1000, &down));
    assert_int_equal(down.len, 0);
    assert_string_equal(attempt(&f, 0, 1000, SL_BALANCE_THROTTLED, 429, 1000), "a");
    assert_false(sl_balance_route_available(f.b, 0, 1000));
    assert_true(sl_balance_route_available(f.b, 1, 1000));
    assert_false(sl_balance_ready(f.b, 1000, &down));
    assert_int_equal(down.len, 2);
    assert_memory_equal(down.base, "ra", 2);
    assert_true(sl_balance_ready(f.b, 2000, NULL));
    fixture_free(&f);

    down.len = 0;
    fixture_load(&f, TWO_ROUTES("all"));
    attempt(&f, 0, 1000, SL_BALANCE_THROTTLED, 429, 1000);
    assert_true(sl_balance_ready(f.b, 1000, &down));
    assert_int_equal(down.len, 2);
    down.len = 0;
    attempt(&f, 1, 1000, SL_BALANCE_THROTTLED, 429, 1000);
    assert_false(sl_balance_ready(f.b, 1000, &down));
    assert_int_equal(down.len, 5);
    assert_memory_equal(down.base, "ra,rb", 5);
    /* Half-open counts as available: a request would be sent (as the trial). */
    fixture_free(&f);
    sl_buf_dispose(&down);
}

static void test_status_json(void **state)
{
    struct fixture f;
    struct sl_buf out;
    struct sl_balance_query q = query(0);
    struct sl_balance_pick p;
    struct sl_balance_result r = {.outcome = SL_BALANCE_SUCCESS, .status = 200, .ttfb_ms = 120};
    sl_buf_init(&out);
    fixture_load(&f, "backends:\n"
                     "  - {name: ptu, url: 'http://127.0.0.1:1', model: gpt-4o, version: '1', "
                     "region: eastus, geography: us}\n"
                     "  - {name: payg, url: 'http://127.0.0.1:2', model: gpt-4o, "
                     "version: '1'}\n"
                     "routes:\n"
                     "  - name: gpt-4o\n"
                     "    backends:\n"
                     "      - {backend: ptu, priority: 1, weight: 3}\n"
                     "      - {backend: payg, priority: 2}\n");
    sl_balance_count_request(f.b, 0, 1000);
    sl_balance_count_request(f.b, 0, 1000);
    assert_true(sl_balance_take_retry(f.b, 0, 1000));
    choose_ok(&f, &q, 1000, &p);
    sl_balance_report(f.b, &p, &r, 1000);
    choose_ok(&f, &q, 1000, &p);
    r = (struct sl_balance_result){.outcome = SL_BALANCE_THROTTLED,
                                   .status = 429,
                                   .retry_after_ms = 2000,
                                   .why = "429 \"retry-after-ms\": 2000"};
    sl_balance_report(f.b, &p, &r, 1000);
    choose_ok(&f, &q, 1000, &p); /* in flight */

    /* 2026-01-02T03:04:05.678Z */
    assert_int_equal(sl_balance_status_json(f.b, 1500, 1767323045678ull, &out), SL_OK);
    json_error_t jerr;
    json_t *doc = json_loadb(out.base, out.len, 0, &jerr);
    if (doc == NULL)
        fail_msg("%s: %.*s", jerr.text, (int)out.len, out.base);
    assert_string_equal(json_string_value(json_object_get(doc, "time")),
                        "2026-01-02T03:04:05.678Z");
    assert_true(json_is_true(json_object_get(doc, "ready")));

    json_t *route = json_array_get(json_object_get(doc, "routes"), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "routes")), 1);
    assert_string_equal(json_string_value(json_object_get(route, "name")), "gpt-4o");
    assert_true(json_is_true(json_object_get(route, "available")));
    assert_int_equal(json_integer_value(json_object_get(route, "requests")), 2);
    assert_int_equal(json_integer_value(json_object_get(route, "retries")), 1);
    json_t *members = json_object_get(route, "backends");
    assert_int_equal(json_array_size(members), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(members, 0), "name")),
                        "ptu");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(members, 0), "priority")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(members, 0), "weight")), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(members, 1), "name")),
                        "payg");

    json_t *backends = json_object_get(doc, "backends");
    assert_int_equal(json_array_size(backends), 2);
    json_t *ptu = json_array_get(backends, 0);
    assert_string_equal(json_string_value(json_object_get(ptu, "name")), "ptu");
    assert_string_equal(json_string_value(json_object_get(ptu, "state")), "open");
    /* Open until 3000 monotonic = 1500 ms after now. */
    assert_string_equal(json_string_value(json_object_get(ptu, "until")),
                        "2026-01-02T03:04:07.178Z");
    assert_string_equal(json_string_value(json_object_get(ptu, "reason")),
                        "429 \"retry-after-ms\": 2000");
    assert_int_equal(json_integer_value(json_object_get(ptu, "last_status")), 429);
    assert_int_equal(json_integer_value(json_object_get(ptu, "consecutive_failures")), 0);
    assert_int_equal(json_integer_value(json_object_get(ptu, "in_flight")), 0);
    assert_int_equal(json_integer_value(json_object_get(ptu, "ttfb_ms")), 120);
    assert_int_equal(json_integer_value(json_object_get(ptu, "success")), 1);
    assert_int_equal(json_integer_value(json_object_get(ptu, "errors")), 0);
    assert_int_equal(json_integer_value(json_object_get(ptu, "throttled")), 1);
    assert_string_equal(json_string_value(json_object_get(ptu, "region")), "eastus");
    assert_string_equal(json_string_value(json_object_get(ptu, "geography")), "us");

    json_t *payg = json_array_get(backends, 1);
    assert_string_equal(json_string_value(json_object_get(payg, "state")), "closed");
    assert_true(json_is_null(json_object_get(payg, "until")));
    assert_true(json_is_null(json_object_get(payg, "reason")));
    assert_true(json_is_null(json_object_get(payg, "last_status")));
    assert_true(json_is_null(json_object_get(payg, "ttfb_ms")));
    assert_true(json_is_null(json_object_get(payg, "region")));
    assert_true(json_is_null(json_object_get(payg, "geography")));
    assert_int_equal(json_integer_value(json_object_get(payg, "in_flight")), 1);
    json_decref(doc);

    /* A minute later the counts are gone, the state is closed, the last status stays. */
    out.len = 0;
    assert_int_equal(sl_balance_status_json(f.b, 61500, 1767323105678ull, &out), SL_OK);
    doc = json_loadb(out.base, out.len, 0, &jerr);
    assert_non_null(doc);
    ptu = json_array_get(json_object_get(doc, "backends"), 0);
    assert_string_equal(json_string_value(json_object_get(ptu, "state")), "closed");
    assert_true(json_is_null(json_object_get(ptu, "reason")));
    assert_int_equal(json_integer_value(json_object_get(ptu, "last_status")), 429);
    assert_int_equal(json_integer_value(json_object_get(ptu, "success")), 0);
    assert_int_equal(json_integer_value(json_object_get(ptu, "throttled")), 0);
    route = json_array_get(json_object_get(doc, "routes"), 0);
    assert_int_equal(json_integer_value(json_object_get(route, "requests")), 0);
    json_decref(doc);

    sl_buf_dispose(&out);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_throttled),
        cmocka_unit_test(test_failures_and_back_off),
        cmocka_unit_test(test_late_answers),
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_status_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
