/* The hand-over queue: many producers lose nothing and keep their order; a full queue drops
 * and counts without waiting; and a measurement of the push cost and the writer's rate. */
#include "ledger_test.h"

#include <sched.h>

#define PRODUCERS 4
#define PER_PRODUCER 200000

struct item {
    uint32_t producer, seq;
};

struct producer {
    struct sl_ledger_queue *q;
    uint32_t id;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        struct item it = {p->id, i};
        while (!sl_ledger_queue_push(p->q, &it))
            sched_yield();
    }
    return NULL;
}

static void test_mpsc_order(void **state)
{
    struct sl_ledger_queue q;
    assert_int_equal(sl_ledger_queue_init(&q, 1000, sizeof(struct item)), SL_OK);
    struct producer ps[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        ps[i] = (struct producer){&q, i};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &ps[i]), 0);
    }
    uint32_t next[PRODUCERS] = {0};
    for (uint64_t got = 0; got < (uint64_t)PRODUCERS * PER_PRODUCER;) {
        struct item *it = sl_ledger_queue_peek(&q);
        if (it == NULL) {
            sched_yield();
            continue;
        }
        assert_true(it->producer < PRODUCERS);
        assert_int_equal(it->seq, next[it->producer]); /* each producer's order is kept */
        next[it->producer]++;
        sl_ledger_queue_release(&q);
        got++;
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_null(sl_ledger_queue_peek(&q));
    assert_int_equal(sl_ledger_queue_length(&q), 0);
    sl_ledger_queue_dispose(&q);
}

static void test_full_queue(void **state)
{
    struct sl_ledger_queue q;
    assert_int_equal(sl_ledger_queue_init(&q, 16, sizeof(struct item)), SL_OK);
    for (uint32_t i = 0; i < 16; i++)
        assert_true(sl_ledger_queue_push(&q, &(struct item){0, i}));
    assert_false(sl_ledger_queue_push(&q, &(struct item){0, 99}));
    assert_int_equal(sl_ledger_queue_length(&q), 16);
    assert_int_equal(((struct item *)sl_ledger_queue_peek(&q))->seq, 0);
    sl_ledger_queue_release(&q);
    assert_true(sl_ledger_queue_push(&q, &(struct item){0, 16}));
    sl_ledger_queue_dispose(&q);
}

/* A ledger whose writer cannot keep up (16 places): records are dropped and counted, no
 * push waits, and what was not dropped is in the file. */
static void test_overflow_drops(void **state)
{
    struct sl_config *cfg = load_config("flush_interval: 60s, queue_size: 16", NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    uint64_t slowest_us = 0;
    for (uint64_t i = 0; i < 20000; i++) {
        struct sl_ledger_record r = make_record("a", T0 + i, 10, 1);
        uint64_t t0 = sl_clock_mono_us();
        sl_ledger_add(l, NULL, &r);
        slowest_us = SL_MAX(slowest_us, sl_clock_mono_us() - t0);
    }
    uint64_t dropped = sl_ledger_dropped(l);
    print_message("queue of 16: %llu of 20000 dropped, slowest push %llu us\n",
                  (unsigned long long)dropped, (unsigned long long)slowest_us);
    assert_true(dropped > 0);
    /* Never waits for the writer (a generous bound for a loaded machine under ASan). */
    assert_true(slowest_us < 50000);
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM requests"), 20000 - (int64_t)dropped);
    sl_config_unref(cfg);
}

struct pusher {
    struct sl_ledger *l;
    uint32_t id;
    uint64_t n;
    uint64_t ns; /* time spent in sl_ledger_add */
};

static void *push_main(void *arg)
{
    struct pusher *p = arg;
    struct sl_ledger_record r = make_record("a", T0, 10, 1);
    uint64_t t0 = sl_clock_mono_us();
    for (uint64_t i = 0; i < p->n; i++) {
        r.time_unix_ms = T0 + i;
        r.attempts = p->id;
        sl_ledger_add(p->l, NULL, &r);
    }
    p->ns = (sl_clock_mono_us() - t0) * 1000;
    return NULL;
}

/* Several workers at once (run under ASan/TSan too): every record is written or counted
 * as dropped; each worker's records are all there. */
static void test_threads_push(void **state)
{
    /* Room for all of them: nothing may be lost. */
    struct sl_config *cfg = load_config("flush_interval: 20ms, queue_size: 262144", NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    struct pusher ps[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        ps[i] = (struct pusher){l, i, 50000, 0};
        assert_int_equal(pthread_create(&th[i], NULL, push_main, &ps[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    uint64_t dropped = sl_ledger_dropped(l);
    sl_ledger_close(l);
    assert_int_equal(dropped, 0);
    assert_int_equal(db_int("SELECT count(*) FROM requests"), (int64_t)PRODUCERS * 50000);
    for (int i = 0; i < PRODUCERS; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SELECT count(DISTINCT time_unix_ms) FROM requests WHERE attempts = %d", i);
        assert_int_equal(db_int(sql), 50000);
    }
    sl_config_unref(cfg);
}

/* Wake the writer now and wait until it has written n records in all. */
static void flush_now(struct sl_ledger *l, uint64_t n)
{
    curl_multi_wakeup(l->multi);
    uint64_t t0 = now_mono_ms();
    while (sl_ledger_written(l) < n) {
        assert_true(now_mono_ms() - t0 < 20000);
        sleep_ms(1);
    }
}

/* Not a pass/fail test: what a push costs a worker and how fast the writer writes. */
static void test_measure(void **state)
{
    enum { N = 45000 };
    /* Rounds below half the ring, so that only flush_now wakes the writer. */
    struct sl_config *cfg = load_config("flush_interval: 60s, queue_size: 100000", NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    double push_ns[4];
    uint64_t write_us[4];
    for (int round = 0; round < 4; round++) {
        struct pusher p = {l, 0, N, 0};
        push_main(&p);
        push_ns[round] = (double)p.ns / N;
        uint64_t t0 = sl_clock_mono_us();
        flush_now(l, (uint64_t)(round + 1) * N); /* one transaction of N records */
        write_us[round] = sl_clock_mono_us() - t0;
    }
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM requests"), 4 * N);
    print_message("push, one thread: %.0f ns per record on fresh ring pages, %.0f ns once the "
                  "ring is warm\n",
                  push_ns[0], push_ns[3]);
    print_message("writer: %d records per transaction in %.1f / %.1f / %.1f / %.1f ms = %.0f "
                  "records/s (last round)\n",
                  N, write_us[0] / 1000.0, write_us[1] / 1000.0, write_us[2] / 1000.0,
                  write_us[3] / 1000.0, N / (write_us[3] / 1e6));
    sl_config_unref(cfg);

    /* Contended: 4 threads pushing at once into a warm ring, no writer in the way. */
    cfg = load_config("flush_interval: 60s, queue_size: 262144", NULL);
    l = open_ok(cfg, T0);
    struct pusher warm = {l, 0, 120000, 0};
    push_main(&warm);
    flush_now(l, 120000);
    struct pusher ps[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        ps[i] = (struct pusher){l, i, 30000, 0};
        assert_int_equal(pthread_create(&th[i], NULL, push_main, &ps[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    double ns = 0;
    for (int i = 0; i < PRODUCERS; i++)
        ns += (double)ps[i].ns / 30000 / PRODUCERS;
    print_message("push, %d threads at once: %.0f ns per record\n", PRODUCERS, ns);
    sl_ledger_close(l);
    sl_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpsc_order),
        cmocka_unit_test(test_full_queue),
        cmocka_unit_test_setup_teardown(test_overflow_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_measure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
