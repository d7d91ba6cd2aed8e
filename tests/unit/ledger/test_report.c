/* Usage reports: times and query strings read, a ledger written by the writer reported per
 * group with exact sums and nearest-rank percentiles, the formats, and files refused. */
#include "ledger_test.h"

#include <jansson.h>
#include <sys/stat.h>

static void test_parse_time(void **state)
{
    uint64_t t = 0;
    assert_int_equal(sl_ledger_parse_time(SL_STR("2026-11-26T10:00:00Z"), 0, &t), SL_OK);
    assert_int_equal(t, T0);
    assert_int_equal(sl_ledger_parse_time(SL_STR("2026-11-26"), 0, &t), SL_OK);
    assert_int_equal(t, T0 - 10 * HOUR_MS);
    assert_int_equal(sl_ledger_parse_time(SL_STR("2026-11-26t12:00:00+02:00"), 0, &t), SL_OK);
    assert_int_equal(t, T0);
    assert_int_equal(sl_ledger_parse_time(SL_STR("2026-11-26T05:30:00.25-04:30"), 0, &t), SL_OK);
    assert_int_equal(t, T0 + 250);
    assert_int_equal(sl_ledger_parse_time(SL_STR("2024-02-29 00:00:00z"), 0, &t), SL_OK);
    assert_int_equal(t, UINT64_C(1709164800000));
    assert_int_equal(sl_ledger_parse_time(SL_STR("24h"), T0, &t), SL_OK);
    assert_int_equal(t, T0 - DAY_MS);
    assert_int_equal(sl_ledger_parse_time(SL_STR("7d"), T0, &t), SL_OK);
    assert_int_equal(t, T0 - 7 * DAY_MS);
    assert_int_equal(sl_ledger_parse_time(SL_STR("90m"), T0, &t), SL_OK);
    assert_int_equal(t, T0 - 90 * 60000);
    assert_int_equal(sl_ledger_parse_time(SL_STR("99999999999d"), T0, &t), SL_OK);
    assert_int_equal(t, 0);
    const char *bad[] = {"",
                         "x",
                         "10",
                         "10y",
                         "d",
                         "-1d",
                         "2026-02-29",
                         "2026-13-01",
                         "2026-11-26T24:00:00Z",
                         "2026-11-26T10:00:00",
                         "2026-11-26T10:00Z",
                         "2026-11-26T10:00:00.Z",
                         "2026-11-26T10:00:00+0200",
                         "1969-12-31",
                         "2026-11-26Tx"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_int_equal(sl_ledger_parse_time(sl_str_from_cstr(bad[i]), T0, &t), SL_EINVAL);
}

static void test_parse_query(void **state)
{
    struct sl_ledger_report_query q;
    struct sl_buf why;
    sl_buf_init(&why);
    sl_ledger_report_query_init(&q, T0);
    assert_int_equal(q.from_ms, T0 - 7 * DAY_MS);
    assert_int_equal(q.to_ms, T0 + 1);
    assert_int_equal(q.by, SL_LEDGER_BY_CLIENT);
    assert_int_equal(sl_ledger_report_query_parse(
                         SL_STR("x=1&from=2026-11-26T12%3A00%3A00%2B02%3A00&by=day&to=1h"),
                         T0 + 2 * HOUR_MS, &q, &why),
                     SL_OK);
    assert_int_equal(q.from_ms, T0);
    assert_int_equal(q.to_ms, T0 + HOUR_MS);
    assert_int_equal(q.by, SL_LEDGER_BY_DAY);
    const char *bad[] = {"by=team", "from=", "from=yesterday", "to=%zz", "from=1h&to=2h"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        sl_ledger_report_query_init(&q, T0);
        why.len = 0;
        assert_int_equal(sl_ledger_report_query_parse(sl_str_from_cstr(bad[i]), T0, &q, &why),
                         SL_EINVAL);
        assert_true(why.len > 0);
    }
    sl_buf_dispose(&why);
}

/* Client a: 10 answers at T0 (latency 10..100 ms, TTFT 1..10); client b: a failed and a cut
 * request the next day, estimated. */
static void write_ledger(void)
{
    struct sl_config *cfg = load_config(NULL, NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    for (unsigned i = 1; i <= 10; i++) {
        struct sl_ledger_record r = make_record("a", T0 + i, 30, 1000 * i);
        r.latency_ms = 10 * i;
        r.ttft_ms = i;
        r.usage.cached = 5;
        r.usage.reasoning = 2;
        sl_ledger_add(l, NULL, &r);
    }
    struct sl_ledger_record r = make_record("b", T0 + DAY_MS, 9, 1);
    r.status = 500;
    r.estimated = true;
    snprintf(r.model, sizeof(r.model), "gpt-4o-mini");
    sl_ledger_add(l, NULL, &r);
    r.status = 0;
    r.time_unix_ms++;
    r.latency_ms = 7;
    sl_ledger_add(l, NULL, &r);
    sl_ledger_close(l);
    sl_config_unref(cfg);
}

static json_t *run_report(enum sl_ledger_group by, uint64_t from, uint64_t to)
{
    struct sl_ledger_report_query q = {.from_ms = from, .to_ms = to, .by = by};
    struct sl_buf out, why;
    sl_buf_init(&out);
    sl_buf_init(&why);
    int err = sl_ledger_report(db_path, &q, &out, &why);
    if (err != SL_OK)
        fail_msg("report: %.*s", (int)why.len, why.base);
    json_error_t jerr;
    json_t *doc = json_loadb(out.base, out.len, 0, &jerr);
    assert_non_null(doc);
    sl_buf_dispose(&out);
    sl_buf_dispose(&why);
    return doc;
}

static uint64_t field(const json_t *row, const char *name)
{
    const json_t *v = json_object_get(row, name);
    assert_true(json_is_integer(v));
    return (uint64_t)json_integer_value(v);
}

static void test_report_by_client(void **state)
{
    write_ledger();
    json_t *doc = run_report(SL_LEDGER_BY_CLIENT, T0, T0 + 2 * DAY_MS);
    assert_string_equal(json_string_value(json_object_get(doc, "by")), "client");
    assert_string_equal(json_string_value(json_object_get(doc, "from")),
                        "2026-11-26T10:00:00.000Z");
    const json_t *groups = json_object_get(doc, "groups");
    assert_int_equal(json_array_size(groups), 2);
    const json_t *a = json_array_get(groups, 0), *b = json_array_get(groups, 1);
    assert_string_equal(json_string_value(json_object_get(a, "key")), "a");
    assert_int_equal(field(a, "requests"), 10);
    assert_int_equal(field(a, "errors"), 0);
    assert_int_equal(field(a, "prompt_tokens"), 200);
    assert_int_equal(field(a, "cached_tokens"), 50);
    assert_int_equal(field(a, "completion_tokens"), 100);
    assert_int_equal(field(a, "reasoning_tokens"), 20);
    assert_int_equal(field(a, "total_tokens"), 300);
    assert_int_equal(field(a, "latency_p50_ms"), 50); /* nearest rank: the 5th of 10 */
    assert_int_equal(field(a, "latency_p95_ms"), 100);
    assert_int_equal(field(a, "ttft_p50_ms"), 5);
    assert_int_equal(field(a, "ttft_p95_ms"), 10);
    assert_int_equal(field(a, "cost_micros"), 55000);
    assert_true(json_real_value(json_object_get(a, "cost_usd")) == 0.055);
    assert_int_equal(field(a, "estimated"), 0);
    assert_string_equal(json_string_value(json_object_get(b, "key")), "b");
    assert_int_equal(field(b, "requests"), 2);
    assert_int_equal(field(b, "errors"), 2); /* a 500 and a cut connection */
    assert_int_equal(field(b, "estimated"), 2);
    assert_int_equal(field(b, "latency_p50_ms"), 7);
    assert_int_equal(field(b, "latency_p95_ms"), 100);
    assert_true(json_is_null(json_object_get(b, "ttft_p50_ms"))); /* no first byte measured */
    const json_t *t = json_object_get(doc, "total");
    assert_string_equal(json_string_value(json_object_get(t, "key")), "total");
    assert_int_equal(field(t, "requests"), 12);
    assert_int_equal(field(t, "total_tokens"), 318);
    assert_int_equal(field(t, "latency_p50_ms"), 50);
    assert_int_equal(field(t, "cost_micros"), 55002);
    json_decref(doc);

    /* [from, to): the second of client a's rows starts the range; b's are after it. */
    doc = run_report(SL_LEDGER_BY_CLIENT, T0 + 2, T0 + DAY_MS);
    assert_int_equal(json_array_size(json_object_get(doc, "groups")), 1);
    assert_int_equal(field(json_object_get(doc, "total"), "requests"), 9);
    json_decref(doc);
    doc = run_report(SL_LEDGER_BY_CLIENT, 0, T0);
    assert_int_equal(json_array_size(json_object_get(doc, "groups")), 0);
    assert_int_equal(field(json_object_get(doc, "total"), "requests"), 0);
    assert_true(json_is_null(json_object_get(json_object_get(doc, "total"), "latency_p50_ms")));
    json_decref(doc);
}

static void test_report_groupings(void **state)
{
    write_ledger();
    json_t *doc = run_report(SL_LEDGER_BY_DAY, 0, T0 + 30 * DAY_MS);
    const json_t *g = json_object_get(doc, "groups");
    assert_int_equal(json_array_size(g), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(g, 0), "key")),
                        "2026-11-26");
    assert_string_equal(json_string_value(json_object_get(json_array_get(g, 1), "key")),
                        "2026-11-27");
    json_decref(doc);
    doc = run_report(SL_LEDGER_BY_MODEL, 0, T0 + 30 * DAY_MS);
    g = json_object_get(doc, "groups");
    assert_int_equal(json_array_size(g), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(g, 1), "key")),
                        "gpt-4o-mini");
    json_decref(doc);
    doc = run_report(SL_LEDGER_BY_BACKEND, 0, T0 + 30 * DAY_MS);
    assert_int_equal(json_array_size(json_object_get(doc, "groups")), 1);
    json_decref(doc);
}

static void test_formats(void **state)
{
    write_ledger();
    struct sl_ledger_report_query q = {.from_ms = 0, .to_ms = T0 + 30 * DAY_MS};
    struct sl_buf json, out, why;
    sl_buf_init(&json);
    sl_buf_init(&out);
    sl_buf_init(&why);
    assert_int_equal(sl_ledger_report(db_path, &q, &json, &why), SL_OK);
    struct sl_str j = {json.base, json.len};
    assert_int_equal(sl_ledger_report_format(j, SL_LEDGER_CSV, &out), SL_OK);
    sl_buf_append(&out, "", 1);
    assert_non_null(strstr(out.base, "client,requests,errors,prompt_tokens,cached_tokens,"
                                     "completion_tokens,reasoning_tokens,total_tokens,"
                                     "latency_p50_ms,latency_p95_ms,ttft_p50_ms,ttft_p95_ms,"
                                     "cost_usd,estimated\n"));
    assert_non_null(strstr(out.base, "\na,10,0,200,50,100,20,300,50,100,5,10,0.055000,0\n"));
    assert_non_null(strstr(out.base, "\nb,2,2,12,0,6,0,18,7,100,,,0.000002,2\n"));
    assert_null(strstr(out.base, "\ntotal,"));
    out.len = 0;
    assert_int_equal(sl_ledger_report_format(j, SL_LEDGER_TABLE, &out), SL_OK);
    sl_buf_append(&out, "", 1);
    assert_true(sl_str_starts_with(sl_str_from_cstr(out.base), SL_STR("usage from ")));
    const char *total = strstr(out.base, "\n-----");
    assert_non_null(total);
    total = strstr(total, "\ntotal ");
    assert_non_null(total);
    assert_int_equal(strtoull(total + 7, NULL, 10), 12); /* requests */
    assert_non_null(strstr(out.base, "0.055002"));
    out.len = 0;
    assert_int_equal(sl_ledger_report_format(j, SL_LEDGER_JSON, &out), SL_OK);
    assert_int_equal(out.len, json.len + 1);
    assert_int_equal(sl_ledger_report_format(SL_STR("{\"groups\":1}"), SL_LEDGER_CSV, &out),
                     SL_EINVAL);
    sl_buf_dispose(&json);
    sl_buf_dispose(&out);
    sl_buf_dispose(&why);
}

static void test_bad_files(void **state)
{
    struct sl_ledger_report_query q;
    struct sl_buf out, why;
    sl_buf_init(&out);
    sl_buf_init(&why);
    sl_ledger_report_query_init(&q, T0);
    /* Missing: said so, and not created. */
    assert_int_equal(sl_ledger_report(db_path, &q, &out, &why), SL_ENOTFOUND);
    sl_buf_append(&why, "", 1);
    char want[256];
    snprintf(want, sizeof(want), "cannot open %s: No such file or directory", db_path);
    assert_string_equal(why.base, want);
    struct stat sb;
    assert_int_not_equal(stat(db_path, &sb), 0);
    /* Not SQLite. */
    FILE *f = fopen(db_path, "w");
    for (int i = 0; i < 600; i++)
        fputs("not a database ", f);
    fclose(f);
    why.len = 0;
    assert_int_equal(sl_ledger_report(db_path, &q, &out, &why), SL_EINVAL);
    sl_buf_append(&why, "", 1);
    assert_non_null(strstr(why.base, "is not a sluice ledger (not a SQLite database)"));
    /* A directory. */
    why.len = 0;
    assert_int_equal(sl_ledger_report(dir, &q, &out, &why), SL_EINVAL);
    assert_int_equal(out.len, 0);
    sl_buf_dispose(&out);
    sl_buf_dispose(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_parse_query),
        cmocka_unit_test_setup_teardown(test_report_by_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_groupings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
