/*
 * Several workers on one balance at once, as in `sluice serve`: every choice
 * is reported, no backend ever has two half-open trials at a time, and the
 * counters add up afterwards. Meant for the asan and tsan builds.
 */
#include <pthread.h>

#include <jansson.h>

#include "balance_test.h"

#define THREADS 4
#define ROUNDS 50000

static struct fixture f;
/* Trials running per backend, as the workers see them. */
static _Atomic int trials[4];
static _Atomic int max_trials;
static _Atomic uint64_t clock_ms;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker(void *arg)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
    struct sl_balance_worker *w;
    if (sl_balance_worker_new(f.b, &w) != SL_OK)
        return (void *)1;
    for (int i = 0; i < ROUNDS; i++) {
        /* A shared clock that moves on: circuits open and close all the time. */
        uint64_t now = atomic_fetch_add(&clock_ms, 1) / 4;
        uint64_t r = xorshift(&seed);
        struct sl_balance_query q = {.route = 0, .only = SIZE_MAX};
        struct sl_balance_pick pick;
        uint64_t retry_at;
        uint64_t tried[1] = {r % 8 == 0 ? 1u : 0u};
        q.tried = tried;

        sl_balance_count_request(f.b, 0, now);
        if (r % 5 == 0)
            sl_balance_take_retry(f.b, 0, now);
        if (r % 3 == 0) {
            char key[16];
            size_t backend;
            snprintf(key, sizeof(key), "k%u", (unsigned)(r % 200));
            if (r % 2)
                sl_balance_pin(f.b, sl_str_from_cstr(key), (size_t)(r % 4), 50, now);
            else
                sl_balance_pinned(f.b, sl_str_from_cstr(key), now, &backend);
        }
        int err = sl_balance_choose(w, &q, now, &pick, &retry_at);
        if (err == SL_EAGAIN) {
            if (retry_at < now)
                return (void *)2;
            continue;
        }
        if (err != SL_OK)
            return (void *)3;
        if (pick.probe) {
            int n = atomic_fetch_add(&trials[pick.backend], 1) + 1;
            int m = atomic_load(&max_trials);
            while (n > m && !atomic_compare_exchange_weak(&max_trials, &m, n))
                ;
        }
        struct sl_balance_result res = {.status = 200, .ttfb_ms = 1 + r % 100};
        unsigned roll = (unsigned)(r >> 32) % 100;
        if (roll < 70) {
            res.outcome = SL_BALANCE_SUCCESS;
        } else if (roll < 85) {
            res.outcome = SL_BALANCE_FAILURE;
            res.status = 503;
            res.why = "503";
        } else if (roll < 95) {
            res.outcome = SL_BALANCE_THROTTLED;
            res.status = 429;
            res.retry_after_ms = r % 20;
            res.why = "429 retry-after-ms";
        } else {
            res.outcome = SL_BALANCE_CANCELLED;
        }
        if (pick.probe)
            atomic_fetch_sub(&trials[pick.backend], 1);
        sl_balance_report(f.b, &pick, &res, now);
        if (i % 1000 == 0) {
            struct sl_buf out;
            sl_buf_init(&out);
            if (sl_balance_status_json(f.b, now, 1767323045678ull, &out) != SL_OK)
                return (void *)4;
            sl_buf_dispose(&out);
        }
    }
    sl_balance_worker_free(w);
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t t[THREADS];
    fixture_load(&f, "backends:\n"
                     "  - {name: a, url: 'http://127.0.0.1:1', model: m, version: '1', "
                     "failure_threshold: 2, open_time: 10ms, max_open_time: 40ms}\n"
                     "  - {name: b, url: 'http://127.0.0.1:2', model: m, version: '1', "
                     "failure_threshold: 2, open_time: 10ms, max_open_time: 40ms}\n"
                     "  - {name: c, url: 'http://127.0.0.1:3', model: m, version: '1', "
                     "failure_threshold: 3, open_time: 20ms, max_open_time: 80ms}\n"
                     "routes:\n"
                     "  - name: r\n"
                     "    backends:\n"
                     "      - {backend: a, priority: 1, weight: 3}\n"
                     "      - {backend: b, priority: 1, weight: 1}\n"
                     "      - {backend: c, priority: 2}\n"
                     "routing: {max_pins: 64}\n");
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
    for (size_t i = 0; i < THREADS; i++) {
        void *rc;
        assert_int_equal(pthread_join(t[i], &rc), 0);
        assert_null(rc);
    }
    assert_int_equal(atomic_load(&max_trials), 1);
    for (size_t i = 0; i < f.cfg->n_backends; i++)
        assert_int_equal(atomic_load(&f.b->backends[i].in_flight), 0);

    struct sl_buf out;
    sl_buf_init(&out);
    uint64_t now = atomic_load(&clock_ms) / 4;
    assert_int_equal(sl_balance_status_json(f.b, now, 1767323045678ull, &out), SL_OK);
    json_error_t jerr;
    json_t *doc = json_loadb(out.base, out.len, 0, &jerr);
    assert_non_null(doc);
    json_t *backends = json_object_get(doc, "backends");
    json_int_t total = 0;
    for (size_t i = 0; i < json_array_size(backends); i++) {
        json_t *b = json_array_get(backends, i);
        total += json_integer_value(json_object_get(b, "success")) +
                 json_integer_value(json_object_get(b, "errors")) +
                 json_integer_value(json_object_get(b, "throttled"));
        assert_int_equal(json_integer_value(json_object_get(b, "in_flight")), 0);
    }
    /* Every backend served; the counts (approximate under races) are of the right size. */
    assert_true(total > 1000);
    json_decref(doc);
    sl_buf_dispose(&out);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
