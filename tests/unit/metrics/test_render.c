/* The exposition: label values escaped, every family announced by # HELP and # TYPE before
 * its samples, histograms cumulative with +Inf equal to _count and _sum the observations'
 * sum, in seconds for times; which calls feed which histogram. */
#include "metrics_test.h"

#include <ctype.h>

static void test_label_escaping(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b);
    assert_int_equal(sl_metrics_write_label_value(&b, sl_str_from_cstr("a\"b\\c\nd")), SL_OK);
    assert_string_equal(b.base, "a\\\"b\\\\c\\nd");
    b.len = 0;
    assert_int_equal(sl_metrics_write_label_value(&b, sl_str_from_cstr("plain é")), SL_OK);
    assert_string_equal(b.base, "plain é");
    b.len = 0;
    assert_int_equal(sl_metrics_write_family(&b, "x_total", "counter", "one\\two\nthree \"q\""),
                     SL_OK);
    assert_string_equal(b.base,
                        "# HELP x_total one\\\\two\\nthree \"q\"\n# TYPE x_total counter\n");
    sl_buf_dispose(&b);

    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(1, 0, &m), SL_OK);
    struct sl_ledger_record r = record("we\"ird\\client\nx", "r", "b", 200);
    sl_metrics_observe(m, 0, &r, false);
    char *t = render(m);
    assert_string_equal(sample(t, "sluice_requests_total{client=\"we\\\"ird\\\\client\\nx\","
                                  "route=\"r\",backend=\"b\",status_class=\"2xx\"}"),
                        "1");
    free(t);
    sl_metrics_free(m);
}

/* The metric name of a sample line, into name. */
static void line_name(const char *line, size_t len, char *name, size_t size)
{
    size_t n = 0;
    while (n < len && (isalnum((unsigned char)line[n]) || line[n] == '_' || line[n] == ':'))
        n++;
    snprintf(name, size, "%.*s", (int)n, line);
}

/* Every sample's family was announced (# HELP then # TYPE) before it, once. */
static void check_structure(const char *t)
{
    char typed[64][96];
    size_t n_typed = 0;
    char last_help[96] = "";
    for (const char *line = t; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end); /* every line ends with a newline */
        size_t len = (size_t)(end - line);
        char name[96];
        if (strncmp(line, "# HELP ", 7) == 0) {
            line_name(line + 7, len - 7, last_help, sizeof(last_help));
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            line_name(line + 7, len - 7, name, sizeof(name));
            assert_string_equal(name, last_help);
            for (size_t i = 0; i < n_typed; i++)
                assert_string_not_equal(typed[i], name);
            assert_true(n_typed < 64);
            snprintf(typed[n_typed++], sizeof(typed[0]), "%s", name);
        } else {
            assert_true(len > 0 && line[0] != '#');
            line_name(line, len, name, sizeof(name));
            assert_true(n_typed > 0);
            /* The last TYPE is this sample's family (its name, or a histogram's parts). */
            const char *fam = typed[n_typed - 1];
            size_t fl = strlen(fam);
            bool ok = strcmp(name, fam) == 0 ||
                      (strncmp(name, fam, fl) == 0 &&
                       (strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                        strcmp(name + fl, "_count") == 0));
            if (!ok)
                fail_msg("sample %s under family %s", name, fam);
        }
        line = end + 1;
    }
}

/* The cumulative counts of a histogram's buckets with labels lbl (without le), in order; the
 * +Inf one last. Returns how many. */
static size_t buckets(const char *t, const char *name, const char *lbl, uint64_t *out, size_t max)
{
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s_bucket{%s%sle=\"", name, lbl, lbl[0] ? "," : "");
    size_t n = 0, pl = strlen(prefix);
    for (const char *line = t; *line;) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, prefix, pl) == 0) {
            const char *sp = memchr(line, ' ', (size_t)(end - line));
            assert_non_null(sp);
            assert_true(n < max);
            out[n++] = strtoull(sp + 1, NULL, 10);
        }
        line = end + 1;
    }
    return n;
}

static void test_histograms(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(2, 0, &m), SL_OK);
    const uint64_t lat[] = {5, 10, 11, 100000};
    for (size_t i = 0; i < SL_ARRAY_LEN(lat); i++) {
        struct sl_ledger_record r = record("a", "r", "b", 200);
        r.latency_ms = lat[i];
        r.ttft_ms = lat[i] / 2;
        r.usage = (struct sl_usage){.prompt = 100, .completion = 3, .total = 103, .found = true};
        sl_metrics_observe(m, (unsigned)i % 2, &r, false);
    }
    /* A refused call: in the duration histogram (4xx), not in TTFT or token usage. */
    struct sl_ledger_record refused = record("a", "r", "b", 429);
    refused.ttft_ms = 3;
    refused.latency_ms = 3;
    sl_metrics_observe(m, 0, &refused, false);
    /* A call the backend reported no usage for: estimated, still a token observation. */
    struct sl_ledger_record est = record("a", "r", "b", 200);
    est.usage = (struct sl_usage){.prompt = 20, .total = 20};
    est.estimated = true;
    sl_metrics_observe(m, 1, &est, false);
    char *t = render(m);
    check_structure(t);

    const char *lbl = "route=\"r\",backend=\"b\",gen_ai_request_model=\"gpt-4o\"";
    char full[256], name[512];
    snprintf(full, sizeof(full), "%s,status_class=\"2xx\"", lbl);
    uint64_t b[32];
    size_t n = buckets(t, "gen_ai_client_operation_duration_seconds", full, b, 32);
    assert_int_equal(n, sl_metrics_duration_layout.n + 1);
    for (size_t i = 1; i < n; i++)
        assert_true(b[i] >= b[i - 1]); /* cumulative */
    snprintf(name, sizeof(name), "gen_ai_client_operation_duration_seconds_bucket{%s,le=\"0.01\"}",
             full);
    assert_string_equal(sample(t, name), "2"); /* 5 and 10 ms */
    snprintf(name, sizeof(name), "gen_ai_client_operation_duration_seconds_bucket{%s,le=\"0.08\"}",
             full);
    assert_string_equal(sample(t, name), "4"); /* and 11, 50 */
    snprintf(name, sizeof(name), "gen_ai_client_operation_duration_seconds_bucket{%s,le=\"+Inf\"}",
             full);
    assert_string_equal(sample(t, name), "5");
    snprintf(name, sizeof(name), "gen_ai_client_operation_duration_seconds_count{%s}", full);
    assert_string_equal(sample(t, name), "5");
    assert_int_equal(b[n - 1], 5);
    snprintf(name, sizeof(name), "gen_ai_client_operation_duration_seconds_sum{%s}", full);
    assert_string_equal(sample(t, name), "100.076");
    snprintf(name, sizeof(name),
             "gen_ai_client_operation_duration_seconds_count{%s,"
             "status_class=\"4xx\"}",
             lbl);
    assert_string_equal(sample(t, name), "1");

    /* TTFT: every answered call (the estimated one's first byte came at once). */
    snprintf(name, sizeof(name), "gen_ai_server_time_to_first_token_seconds_count{%s}", lbl);
    assert_string_equal(sample(t, name), "5");
    snprintf(name, sizeof(name), "gen_ai_server_time_to_first_token_seconds_sum{%s}", lbl);
    assert_string_equal(sample(t, name), "50.012");
    snprintf(name, sizeof(name),
             "gen_ai_server_time_to_first_token_seconds_bucket{%s,le=\"0.005\"}", lbl);
    assert_string_equal(sample(t, name), "4"); /* 0, 2, 5 and 5 ms */

    /* Token usage: five calls with usage (four reported, one estimated). */
    snprintf(name, sizeof(name), "gen_ai_client_token_usage_count{%s,gen_ai_token_type=\"input\"}",
             lbl);
    assert_string_equal(sample(t, name), "5");
    snprintf(name, sizeof(name), "gen_ai_client_token_usage_sum{%s,gen_ai_token_type=\"input\"}",
             lbl);
    assert_string_equal(sample(t, name), "420");
    snprintf(name, sizeof(name), "gen_ai_client_token_usage_sum{%s,gen_ai_token_type=\"output\"}",
             lbl);
    assert_string_equal(sample(t, name), "12");
    snprintf(name, sizeof(name),
             "gen_ai_client_token_usage_bucket{%s,gen_ai_token_type=\"input\",le=\"16\"}", lbl);
    assert_string_equal(sample(t, name), "0");
    snprintf(name, sizeof(name),
             "gen_ai_client_token_usage_bucket{%s,gen_ai_token_type=\"input\",le=\"256\"}", lbl);
    assert_string_equal(sample(t, name), "5");
    snprintf(name, sizeof(name),
             "gen_ai_client_token_usage_bucket{%s,gen_ai_token_type=\"output\",le=\"1\"}", lbl);
    assert_string_equal(sample(t, name), "1"); /* the estimated call: 0 output tokens */
    free(t);
    sl_metrics_free(m);
}

/* An empty registry still announces every family (and nothing else but the overflow count). */
static void test_empty(void **state)
{
    struct sl_metrics *m;
    assert_int_equal(sl_metrics_new(1, 0, &m), SL_OK);
    char *t = render(m);
    check_structure(t);
    static const char *const families[] = {
        "sluice_requests_total",
        "sluice_errors_total",
        "sluice_tokens_total",
        "sluice_cost_usd_total",
        "sluice_retries_total",
        "sluice_spillover_total",
        "gen_ai_client_token_usage",
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_client_operation_duration_seconds",
        "sluice_queue_waiting",
        "sluice_backend_ptu_utilization_ratio",
        "sluice_metrics_series_overflow_total",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(families); i++) {
        char type[128];
        snprintf(type, sizeof(type), "# TYPE %s ", families[i]);
        assert_true(has_line(t, type));
    }
    assert_string_equal(sample(t, "sluice_metrics_series_overflow_total"), "0");
    free(t);
    sl_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histograms),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
