/*
 * Several workers on one limiter at once, as in `sluice serve`: no more
 * requests pass than the limit allows, and after a storm of admissions,
 * refusals, settles and rolled-back reservations with a moving clock, every
 * window's bookkeeping comes back to exactly nothing once its minute has
 * passed. Meant for the asan and tsan builds too.
 */
#include <pthread.h>

#include "limit_test.h"

#define THREADS 4
#define ROUNDS 20000
#define RPM 1000

static struct fixture f;
static _Atomic uint64_t clock_ms;
static _Atomic uint64_t admitted, refused;
static pthread_barrier_t start;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Every thread asks ROUNDS times within the same minute. */
static void *exact_worker(void *arg)
{
    pthread_barrier_wait(&start);
    for (int i = 0; i < ROUNDS; i++) {
        struct sl_limit_ticket t;
        struct sl_limit_status st;
        /* The clock moves through the first minute: sweeps run, nothing expires. */
        uint64_t now = atomic_fetch_add(&clock_ms, 1) * 59999 / (THREADS * ROUNDS);
        if (sl_limiter_admit(f.l, 0, 0, 10, now, &t, &st) == SL_OK)
            atomic_fetch_add(&admitted, 1);
        else if (st.retry_after_ms == 0 || st.retry_after_ms > 60000)
            return (void *)1;
    }
    return NULL;
}

static void test_rpm_across_threads(void **state)
{
    pthread_t th[THREADS];
    fixture_load(&f, LIMIT_BASE CLIENT_A ", rpm: 1000}\n");
    atomic_store(&clock_ms, 0);
    atomic_store(&admitted, 0);
    pthread_barrier_init(&start, NULL, THREADS);
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, exact_worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    pthread_barrier_destroy(&start);
    uint64_t n = atomic_load(&admitted);
    assert_true(n >= RPM && n <= RPM + THREADS);
    /* In fact exactly: the check and the reservation are one compare-and-swap. */
    assert_int_equal(n, RPM);
    fixture_free(&f);
}

/* Random traffic on both routes, half of it settled, some of it after its minute. */
static void *storm_worker(void *arg)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    struct sl_limit_ticket pending[8] = {{0}};
    pthread_barrier_wait(&start);
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t r = xorshift(&seed);
        /* About 3 minutes in all, so that windows slide and slots are reused. */
        uint64_t now = atomic_fetch_add(&clock_ms, 1) * 180000 / (THREADS * ROUNDS);
        struct sl_limit_ticket *t = &pending[r % 8];
        if (t->active)
            sl_limiter_settle(f.l, t, (r >> 8) % 400, now);
        struct sl_limit_status st;
        size_t client = (r >> 20) % 2;
        int err = sl_limiter_admit(f.l, client, (r >> 24) % 2, (r >> 32) % 300, now, t, &st);
        if (err != SL_OK && err != SL_EPERM)
            return (void *)1;
        if (err == SL_EPERM && (st.retry_after_ms == 0 || st.retry_after_ms > 60000))
            return (void *)2;
        atomic_fetch_add(err == SL_OK ? &admitted : &refused, 1);
        if (err == SL_OK && r % 3 == 0)
            sl_limiter_settle(f.l, t, (r >> 40) % 400, now);
    }
    /* Settle what is left at the end of the storm. */
    for (int k = 0; k < 8; k++)
        sl_limiter_settle(f.l, &pending[k], 50, 180000);
    return NULL;
}

static void test_storm_balances(void **state)
{
    pthread_t th[THREADS];
    static const char yaml[] =
        LIMIT_BASE CLIENT_A ", rpm: 5000, tpm: 1000000,\n"
                            "     route_limits: [{route: mini, rpm: 2000, tpm: 200000}]}\n" CLIENT_B
                            ", tpm: 500000, route_limits: [{route: big, rpm: 3000}]}\n";
    fixture_load(&f, yaml);
    atomic_store(&clock_ms, 0);
    atomic_store(&admitted, 0);
    atomic_store(&refused, 0);
    pthread_barrier_init(&start, NULL, THREADS);
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, storm_worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    pthread_barrier_destroy(&start);
    /* The limits were reached and let go of, over and over. */
    assert_true(atomic_load(&admitted) > 10000 && atomic_load(&refused) > 10000);
    /* A minute after the last charge, every window is empty: no charge, correction or
     * reservation was lost or counted twice. */
    for (size_t i = 0; i < f.l->n_windows; i++) {
        struct sl_limit_window *w = &f.l->windows[i];
        assert_int_equal(sl_limit_window_left(w, 241000), w->limit);
        assert_int_equal(atomic_load(&w->total), 0);
    }
    assert_int_equal(f.l->n_windows, 6);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpm_across_threads),
        cmocka_unit_test(test_storm_balances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
