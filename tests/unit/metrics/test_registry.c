/* The registry: shards summed on scrape, statuses by class and by code, tokens, cost, retries
 * and spill-over, the overflow series, tables that grow, the queue gauge, PTU utilisation,
 * and workers counting while a scraper reads. */
#include "metrics_test.h"

#include <pthread.h>

static void test_shards_summed(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(3, 0, &m), SL_OK);
    for (unsigned s = 0; s < 3; s++) {
        struct sl_ledger_record r = record("app", "gpt-4o", "ptu", 200);
        r.usage = (struct sl_usage){.prompt = 10 + s,
                                    .cached = 2,
                                    .completion = 5,
                                    .reasoning = 1,
                                    .total = 15 + s,
                                    .found = true};
        r.cost = 250000;
        sl_metrics_observe(m, s, &r, false);
    }
    char *t = render(m);
    assert_string_equal(
        sample(t, "sluice_requests_total{client=\"app\",route=\"gpt-4o\",backend=\"ptu\","
                  "status_class=\"2xx\"}"),
        "3");
    const char *lbl = "{client=\"app\",route=\"gpt-4o\",backend=\"ptu\",type=";
    char name[256];
    snprintf(name, sizeof(name), "sluice_tokens_total%s\"prompt\"}", lbl);
    assert_string_equal(sample(t, name), "33");
    snprintf(name, sizeof(name), "sluice_tokens_total%s\"cached\"}", lbl);
    assert_string_equal(sample(t, name), "6");
    snprintf(name, sizeof(name), "sluice_tokens_total%s\"completion\"}", lbl);
    assert_string_equal(sample(t, name), "15");
    snprintf(name, sizeof(name), "sluice_tokens_total%s\"reasoning\"}", lbl);
    assert_string_equal(sample(t, name), "3");
    assert_string_equal(
        sample(t, "sluice_cost_usd_total{client=\"app\",route=\"gpt-4o\",backend=\"ptu\"}"),
        "0.75");
    /* No error samples for 2xx. */
    assert_false(has_line(t, "sluice_errors_total{"));
    /* One series per shard, merged on scrape. */
    for (unsigned s = 0; s < 3; s++)
        assert_int_equal(sl_metrics_table_count(&m->shards[s].series), 1);
    free(t);
    sl_metrics_free(m);
}

static void test_statuses(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(2, 0, &m), SL_OK);
    const int statuses[] = {200, 201, 429, 429, 400, 503, 0, 0, 0};
    for (size_t i = 0; i < SL_ARRAY_LEN(statuses); i++) {
        struct sl_ledger_record r = record("a", "r", "b", statuses[i]);
        sl_metrics_observe(m, (unsigned)i % 2, &r, false);
    }
    char *t = render(m);
    const char *p = "sluice_requests_total{client=\"a\",route=\"r\",backend=\"b\",status_class=";
    char name[256];
    snprintf(name, sizeof(name), "%s\"2xx\"}", p);
    assert_string_equal(sample(t, name), "2");
    snprintf(name, sizeof(name), "%s\"4xx\"}", p);
    assert_string_equal(sample(t, name), "3");
    snprintf(name, sizeof(name), "%s\"5xx\"}", p);
    assert_string_equal(sample(t, name), "1");
    snprintf(name, sizeof(name), "%s\"cut\"}", p);
    assert_string_equal(sample(t, name), "3");
    p = "sluice_errors_total{client=\"a\",route=\"r\",backend=\"b\",status=";
    snprintf(name, sizeof(name), "%s\"429\"}", p);
    assert_string_equal(sample(t, name), "2");
    snprintf(name, sizeof(name), "%s\"400\"}", p);
    assert_string_equal(sample(t, name), "1");
    snprintf(name, sizeof(name), "%s\"503\"}", p);
    assert_string_equal(sample(t, name), "1");
    assert_false(has_line(t, "sluice_errors_total{client=\"a\",route=\"r\",backend=\"b\","
                             "status=\"200\"}"));
    assert_false(has_line(t, "sluice_errors_total{client=\"a\",route=\"r\",backend=\"b\","
                             "status=\"0\"}"));
    free(t);
    sl_metrics_free(m);
}

static void test_retries_and_spill(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(2, 0, &m), SL_OK);
    struct sl_ledger_record r = record("a", "r", "paygo", 200);
    r.attempts = 3;
    sl_metrics_observe(m, 0, &r, true);
    r = record("b", "r", "paygo", 200);
    sl_metrics_observe(m, 1, &r, true);
    r = record("b", "r", "ptu", 200);
    sl_metrics_observe(m, 1, &r, false);
    char *t = render(m);
    assert_string_equal(sample(t, "sluice_retries_total{route=\"r\"}"), "2");
    assert_string_equal(sample(t, "sluice_spillover_total{route=\"r\",backend=\"paygo\"}"), "2");
    assert_string_equal(sample(t, "sluice_spillover_total{route=\"r\",backend=\"ptu\"}"), "0");
    free(t);
    sl_metrics_free(m);
}

static void test_overflow(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(1, 3, &m), SL_OK);
    char client[32];
    for (int i = 0; i < 6; i++) {
        snprintf(client, sizeof(client), "c%d", i);
        struct sl_ledger_record r = record(client, "r", "b", i == 5 ? 500 : 200);
        r.usage = (struct sl_usage){.prompt = 1, .total = 1, .found = true};
        sl_metrics_observe(m, 0, &r, false);
    }
    /* A known combination still counts as itself when the table is full. */
    struct sl_ledger_record again = record("c0", "r", "b", 200);
    sl_metrics_observe(m, 0, &again, false);
    char *t = render(m);
    assert_string_equal(sample(t, "sluice_requests_total{client=\"c0\",route=\"r\",backend=\"b\","
                                  "status_class=\"2xx\"}"),
                        "2");
    assert_string_equal(
        sample(t, "sluice_requests_total{client=\"_other\",route=\"_other\",backend=\"_other\","
                  "status_class=\"2xx\"}"),
        "2");
    assert_string_equal(
        sample(t, "sluice_errors_total{client=\"_other\",route=\"_other\",backend=\"_other\","
                  "status=\"500\"}"),
        "1");
    assert_false(has_line(t, "sluice_requests_total{client=\"c3\""));
    assert_string_equal(sample(t, "sluice_metrics_series_overflow_total"), "3");
    assert_int_equal(sl_metrics_overflow(m), 3);
    free(t);
    sl_metrics_free(m);
}

/* Thousands of combinations in one shard: the index grows and every one is found again. */
static void test_growth(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(1, 0, &m), SL_OK);
    char client[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 3000; i++) {
            snprintf(client, sizeof(client), "client-%d", i);
            struct sl_ledger_record r = record(client, "r", "b", 200);
            sl_metrics_observe(m, 0, &r, false);
        }
    assert_int_equal(sl_metrics_table_count(&m->shards[0].series), 3000);
    char *t = render(m);
    assert_string_equal(
        sample(t, "sluice_requests_total{client=\"client-2999\",route=\"r\",backend=\"b\","
                  "status_class=\"2xx\"}"),
        "2");
    assert_string_equal(sample(t, "sluice_metrics_series_overflow_total"), "0");
    free(t);
    sl_metrics_free(m);
}

static void test_queue_gauge(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(2, 0, &m), SL_OK);
    sl_metrics_queue_add(m, 0, "gpt-4o", 1);
    sl_metrics_queue_add(m, 0, "gpt-4o", 1);
    sl_metrics_queue_add(m, 1, "gpt-4o", 1);
    sl_metrics_queue_add(m, 1, "o1", 1);
    sl_metrics_queue_add(m, 0, "gpt-4o", -1);
    sl_metrics_queue_add(m, 1, "o1", -1);
    char *t = render(m);
    assert_string_equal(sample(t, "sluice_queue_waiting{route=\"gpt-4o\"}"), "2");
    assert_string_equal(sample(t, "sluice_queue_waiting{route=\"o1\"}"), "0");
    free(t);
    sl_metrics_free(m);
}

static void test_utilization(void **state)
{
    static const struct {
        const char *text;
        uint64_t ppm;
    } ok[] = {{"25.3%", 253000}, {"7%", 70000},         {"100.0 %", 1000000}, {" 0.05% ", 500},
              {"12", 120000},    {"99.99999%", 999999}, {"1000%", 10000000}};
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++) {
        uint64_t ppm = 0;
        assert_int_equal(sl_metrics_parse_utilization(sl_str_from_cstr(ok[i].text), &ppm), SL_OK);
        assert_int_equal(ppm, ok[i].ppm);
    }
    static const char *const bad[] = {"", "%", "-5%", "abc", "25.3%%", "1001%", "2 5%", ".%"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        uint64_t ppm = 0;
        assert_int_equal(sl_metrics_parse_utilization(sl_str_from_cstr(bad[i]), &ppm), SL_EINVAL);
    }
    /* The latest report wins, whichever worker saw it. */
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(3, 0, &m), SL_OK);
    sl_metrics_ptu(m, 0, "ptu-east", 100000, 1000);
    sl_metrics_ptu(m, 2, "ptu-east", 253000, 2000);
    sl_metrics_ptu(m, 1, "ptu-east", 500000, 1500);
    sl_metrics_ptu(m, 1, "ptu-west", 1000000, 1500);
    char *t = render(m);
    assert_string_equal(sample(t, "sluice_backend_ptu_utilization_ratio{backend=\"ptu-east\"}"),
                        "0.253");
    assert_string_equal(sample(t, "sluice_backend_ptu_utilization_ratio{backend=\"ptu-west\"}"),
                        "1");
    free(t);
    sl_metrics_free(m);
}

#define THREADS 4
#define PER_THREAD 100000

struct worker {
    struct sl_metrics *m;
    unsigned shard;
};

static void *count(void *arg)
{
    struct worker *w = arg;
    char client[32];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(client, sizeof(client), "c%d", i % 50);
        struct sl_ledger_record r = record(client, "r", "b", 200);
        r.usage = (struct sl_usage){.prompt = 3, .completion = 2, .total = 5, .found = true};
        sl_metrics_observe(w->m, w->shard, &r, false);
        if (i % 1000 == 0)
            sl_metrics_queue_add(w->m, w->shard, "r", 1);
    }
    return NULL;
}

/* Workers count while a scraper renders again and again; nothing is lost. */
static void test_threads(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(THREADS, 0, &m), SL_OK);
    pthread_t th[THREADS];
    struct worker ws[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        ws[i] = (struct worker){m, i};
        assert_int_equal(pthread_create(&th[i], NULL, count, &ws[i]), 0);
    }
    for (int i = 0; i < 20; i++)
        free(render(m));
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    char *t = render(m);
    uint64_t total = 0;
    char name[256];
    for (int c = 0; c < 50; c++) {
        snprintf(name, sizeof(name),
                 "sluice_requests_total{client=\"c%d\",route=\"r\",backend=\"b\","
                 "status_class=\"2xx\"}",
                 c);
        total += strtoull(sample(t, name), NULL, 10);
    }
    assert_int_equal(total, (uint64_t)THREADS * PER_THREAD);
    assert_string_equal(sample(t, "sluice_queue_waiting{route=\"r\"}"), "400");
    free(t);
    sl_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_summed),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_retries_and_spill),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_queue_gauge),
        cmocka_unit_test(test_utilization),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
