/* Budgets: UTC windows, refusals with their reset time, windows rolling, sums surviving a
 * restart, alerts once per window (in the table, and POSTed to a webhook). */
#include "ledger_test.h"

#include <jansson.h>
#include <poll.h>

#include "../net_test.h"

static void expect_span(enum sl_budget_window w, uint64_t t, const char *start, const char *end)
{
    char s[32], e[32];
    struct sl_ledger_span span = sl_ledger_window_span(w, t);
    sl_clock_format(span.start_ms, false, s, sizeof(s));
    sl_clock_format(span.end_ms, false, e, sizeof(e));
    assert_string_equal(s, start);
    assert_string_equal(e, end);
    /* The window holds t, and its number moves by one at the end. */
    assert_true(span.start_ms <= (int64_t)t && (int64_t)t < span.end_ms);
    assert_int_equal(sl_ledger_window_span(w, (uint64_t)span.end_ms).n, span.n + 1);
    assert_int_equal(sl_ledger_window_span(w, (uint64_t)span.end_ms - 1).n, span.n);
}

static void test_windows(void **state)
{
    expect_span(SL_BUDGET_DAY, T0, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z");
    expect_span(SL_BUDGET_WEEK, T0, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z");
    expect_span(SL_BUDGET_MONTH, T0, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
    /* Monday 00:00 starts a week; Sunday 23:59:59.999 is still the old one. */
    expect_span(SL_BUDGET_WEEK, UINT64_C(1795996800000), "2026-11-30T00:00:00Z",
                "2026-12-07T00:00:00Z");
    expect_span(SL_BUDGET_WEEK, UINT64_C(1795996800000) - 1, "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:00Z");
    /* Year end, leap day, the epoch (a Thursday: its week began on Monday 1969-12-29). */
    expect_span(SL_BUDGET_MONTH, UINT64_C(1798761600000) - 1, "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z");
    expect_span(SL_BUDGET_WEEK, UINT64_C(1798761600000), "2026-12-28T00:00:00Z",
                "2027-01-04T00:00:00Z");
    expect_span(SL_BUDGET_MONTH, UINT64_C(1835438400000), "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z");
    expect_span(SL_BUDGET_DAY, UINT64_C(1835438400000), "2028-02-29T00:00:00Z",
                "2028-03-01T00:00:00Z");
    expect_span(SL_BUDGET_WEEK, 0, "1969-12-29T00:00:00Z", "1970-01-05T00:00:00Z");
    expect_span(SL_BUDGET_MONTH, 0, "1970-01-01T00:00:00Z", "1970-02-01T00:00:00Z");
}

#define CLIENTS(budgets)                                                                           \
    "clients:\n"                                                                                   \
    "  - {name: batch, keys: [" KEY "], budgets: " budgets "}\n"                                   \
    "  - {name: free, keys: ['sha256:" /* another key */                                           \
    "1111111111111111111111111111111111111111111111111111111111111111']}\n"

static void add(struct sl_ledger *l, const struct sl_config_client *cl, uint64_t t, uint64_t tokens,
                uint64_t cost)
{
    struct sl_ledger_record r = make_record(cl != NULL ? cl->name : "anon", t, tokens, cost);
    sl_ledger_add(l, cl, &r);
}

static void test_token_budget(void **state)
{
    struct sl_config *cfg = load_config(NULL, CLIENTS("[{window: day, tokens: 1000}]"));
    const struct sl_config_client *batch = &cfg->clients[0], *free_cl = &cfg->clients[1];
    struct sl_ledger *l = open_ok(cfg, T0);
    struct sl_budget_refusal ref;

    add(l, batch, T0, 999, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + 1, &ref), SL_OK);
    add(l, free_cl, T0, 5000, 0);
    add(l, NULL, T0, 5000, 0);
    assert_int_equal(sl_ledger_budget_check(l, free_cl, T0, &ref), SL_OK);
    assert_int_equal(sl_ledger_budget_check(l, NULL, T0, &ref), SL_OK);
    add(l, batch, T0 + 2, 1, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + 3, &ref), SL_EPERM);
    assert_int_equal(ref.budget, 0);
    assert_int_equal(ref.resets_unix_s, UINT64_C(1795737600));
    assert_string_equal(ref.message, "client batch has used its daily budget of 1000 tokens; it "
                                     "resets at 2026-11-27T00:00:00Z");
    /* Until the last millisecond of the day; the next day starts afresh. */
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + 14 * HOUR_MS - 1, &ref), SL_EPERM);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + 14 * HOUR_MS, &ref), SL_OK);
    add(l, batch, T0 + DAY_MS, 500, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + DAY_MS, &ref), SL_OK);
    /* A long request of yesterday ending now counts for yesterday, not today. */
    add(l, batch, T0 + HOUR_MS, 600, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + DAY_MS, &ref), SL_OK);
    add(l, batch, T0 + DAY_MS + 1, 500, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + DAY_MS + 2, &ref), SL_EPERM);
    assert_string_equal(ref.message, "client batch has used its daily budget of 1000 tokens; it "
                                     "resets at 2026-11-28T00:00:00Z");
    /* Two days on, the cell of two days ago is taken over; that day's late records are
     * too old to count. */
    add(l, batch, T0 + 2 * DAY_MS, 10, 0);
    add(l, batch, T0, 5000, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + 2 * DAY_MS, &ref), SL_OK);
    sl_ledger_close(l);
    sl_config_unref(cfg);
}

static void test_money_and_weeks(void **state)
{
    struct sl_config *cfg =
        load_config(NULL, CLIENTS("[{window: day, tokens: 1000000}, {window: month, cost: '5'}, "
                                  "{window: week, tokens: 3000}]"));
    const struct sl_config_client *batch = &cfg->clients[0];
    struct sl_ledger *l = open_ok(cfg, T0);
    struct sl_budget_refusal ref;
    add(l, batch, T0, 100, 4999999);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0, &ref), SL_OK);
    add(l, batch, T0, 100, 1);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0, &ref), SL_EPERM);
    assert_int_equal(ref.budget, 1);
    assert_string_equal(ref.message, "client batch has used its monthly budget of $5.00; it "
                                     "resets at 2026-12-01T00:00:00Z");
    /* December: the month budget is fresh; the week (Mon 30 Nov - Sun 6 Dec) is not. */
    uint64_t dec1 = UINT64_C(1796083200000);
    add(l, batch, dec1 - DAY_MS, 2900, 0); /* Monday 30 November */
    assert_int_equal(sl_ledger_budget_check(l, batch, dec1, &ref), SL_OK);
    add(l, batch, dec1, 100, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, dec1 + 1, &ref), SL_EPERM);
    assert_int_equal(ref.budget, 2);
    assert_string_equal(ref.message, "client batch has used its weekly budget of 3000 tokens; it "
                                     "resets at 2026-12-07T00:00:00Z");
    sl_ledger_close(l);
    sl_config_unref(cfg);
}

/* The current windows' sums are read back from the file at open. */
static void test_survives_restart(void **state)
{
    struct sl_config *cfg =
        load_config(NULL, CLIENTS("[{window: day, tokens: 1000}, {window: week, tokens: 5000}]"));
    const struct sl_config_client *batch = &cfg->clients[0];
    struct sl_budget_refusal ref;
    struct sl_ledger *l = open_ok(cfg, T0);
    add(l, batch, T0 - DAY_MS, 3000, 0); /* Wednesday */
    add(l, batch, T0, 600, 0);           /* Thursday */
    add(l, batch, T0 + 1, 400, 0);
    sl_ledger_close(l);

    l = open_ok(cfg, T0 + HOUR_MS);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + HOUR_MS, &ref), SL_EPERM);
    assert_int_equal(ref.budget, 0);
    sl_ledger_close(l);

    /* Friday: the day is new, the week holds 4000 of 5000. */
    l = open_ok(cfg, T0 + DAY_MS);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + DAY_MS, &ref), SL_OK);
    add(l, batch, T0 + DAY_MS, 999, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + DAY_MS, &ref), SL_OK);
    add(l, batch, T0 + DAY_MS, 1, 0);
    assert_int_equal(sl_ledger_budget_check(l, batch, T0 + DAY_MS, &ref), SL_EPERM);
    assert_int_equal(ref.budget, 0); /* both are used up; the first one is named */
    sl_ledger_close(l);

    /* Next Monday: a new week. */
    l = open_ok(cfg, UINT64_C(1795996800000));
    assert_int_equal(sl_ledger_budget_check(l, batch, UINT64_C(1795996800000), &ref), SL_OK);
    sl_ledger_close(l);
    sl_config_unref(cfg);
}

static void wait_alerts(struct sl_ledger *l, uint64_t n)
{
    uint64_t t0 = now_mono_ms();
    while (sl_ledger_alerts_sent(l) < n) {
        assert_true(now_mono_ms() - t0 < 5000);
        sleep_ms(2);
    }
}

static void test_alert_once(void **state)
{
    struct sl_config *cfg =
        load_config("flush_interval: 10ms",
                    CLIENTS("[{window: day, tokens: 1000, cost: '0.001', alert_at: 80%}]"));
    const struct sl_config_client *batch = &cfg->clients[0];
    struct sl_ledger *l = open_ok(cfg, T0);
    add(l, batch, T0, 700, 0);
    add(l, batch, T0, 200, 0); /* 90 %: the 80 % alert */
    wait_alerts(l, 1);
    add(l, batch, T0, 50, 850); /* the money crosses 80 % too: the same alert, not sent */
    add(l, batch, T0, 100, 0);  /* 105 %: the 100 % alert */
    wait_alerts(l, 2);
    sleep_ms(50);
    assert_int_equal(sl_ledger_alerts_sent(l), 2);
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM budget_alerts WHERE client = 'batch' AND "
                            "\"window\" = 'day' AND window_start = 1795651200000 AND budget = 0"),
                     2);
    assert_int_equal(db_int("SELECT min(level_ppm) FROM budget_alerts"), 800000);
    assert_int_equal(db_int("SELECT max(level_ppm) FROM budget_alerts"), 1000000);

    /* After a restart in the same window, nothing is sent again: the money reaching 100 %
     * is the same 100 % alert. */
    l = open_ok(cfg, T0 + HOUR_MS);
    add(l, batch, T0 + HOUR_MS, 10, 500);
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM budget_alerts"), 2);

    /* The next day alerts again. */
    l = open_ok(cfg, T0 + DAY_MS);
    add(l, batch, T0 + DAY_MS, 850, 0);
    wait_alerts(l, 1);
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM budget_alerts"), 3);
    sl_config_unref(cfg);
}

/* Many threads crossing the same thresholds: each alert is decided exactly once and
 * every token is counted. */
struct race {
    struct sl_ledger *l;
    const struct sl_config_client *cl;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 20000; i++)
        add(r->l, r->cl, T0 + (uint64_t)i, 1, 0);
    return NULL;
}

static void test_threads_count(void **state)
{
    struct sl_config *cfg =
        load_config("flush_interval: 10ms", CLIENTS("[{window: day, tokens: 60000}]"));
    const struct sl_config_client *batch = &cfg->clients[0];
    struct sl_ledger *l = open_ok(cfg, T0);
    struct race r = {l, batch};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    struct sl_ledger_account *acc = sl_ledger_accounts_get(&l->accounts, "batch", false);
    assert_non_null(acc);
    struct sl_ledger_span span = sl_ledger_window_span(SL_BUDGET_DAY, T0);
    assert_int_equal(atomic_load(&acc->cells[SL_BUDGET_DAY][span.n & 1].tokens), 80000);
    struct sl_budget_refusal ref;
    assert_int_equal(sl_ledger_budget_check(l, batch, T0, &ref), SL_EPERM);
    wait_alerts(l, 2);
    uint64_t dropped = sl_ledger_dropped(l);
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM budget_alerts"), 2);
    assert_int_equal(db_int("SELECT count(*) FROM requests"), 80000 - (int64_t)dropped);
    sl_config_unref(cfg);
}

/* A client that a reload gives budgets: its account is made by its first request, and the
 * writer adds what the file already holds for it. */
static void test_client_added_later(void **state)
{
    struct sl_config *cfg = load_config("flush_interval: 10ms", CLIENTS("[]"));
    struct sl_config *cfg2 = load_config(NULL, "clients:\n  - {name: newbie, keys: [" KEY
                                               "], budgets: [{window: month, tokens: "
                                               "1000}]}\n");
    uint64_t now = sl_clock_unix_ms();
    struct sl_ledger *l = open_ok(cfg, now);
    struct sl_ledger_record r = make_record("newbie", now, 700, 0);
    sl_ledger_add(l, NULL, &r); /* before the reload: no budgets */
    sleep_ms(50);
    struct sl_budget_refusal ref;
    assert_int_equal(sl_ledger_budget_check(l, &cfg2->clients[0], now, &ref), SL_OK);
    r = make_record("newbie", now, 200, 0);
    sl_ledger_add(l, &cfg2->clients[0], &r);
    struct sl_ledger_account *acc = sl_ledger_accounts_get(&l->accounts, "newbie", false);
    assert_non_null(acc);
    uint64_t t0 = now_mono_ms();
    while (!atomic_load(&acc->loaded)) {
        assert_true(now_mono_ms() - t0 < 2000);
        sleep_ms(2);
    }
    struct sl_ledger_span span = sl_ledger_window_span(SL_BUDGET_MONTH, now);
    assert_int_equal(atomic_load(&acc->cells[SL_BUDGET_MONTH][span.n & 1].tokens), 900);
    r = make_record("newbie", now, 100, 0);
    sl_ledger_add(l, &cfg2->clients[0], &r);
    assert_int_equal(sl_ledger_budget_check(l, &cfg2->clients[0], now, &ref), SL_EPERM);
    sl_ledger_close(l);
    sl_config_unref(cfg);
    sl_config_unref(cfg2);
}

/* ---- the webhook, received by a tiny HTTP listener in the test thread ---- */

/* Accept one connection, read one request (head and Content-Length body), answer status;
 * the body goes to out (NUL-terminated). false when none came within timeout_ms. */
static bool serve_one(int lfd, int status, char *out, size_t outlen, int timeout_ms)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return false;
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    char buf[8192];
    size_t len = 0;
    char *body = NULL;
    size_t want = 0;
    for (;;) {
        struct pollfd q = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&q, 1, 5000), 1);
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        body = end + 4;
        char *cl = strcasestr(buf, "content-length:");
        assert_non_null(cl);
        want = strtoul(cl + 15, NULL, 10);
        if ((size_t)(buf + len - body) >= want)
            break;
    }
    assert_non_null(strstr(buf, "POST /hook HTTP/1.1\r\n"));
    assert_non_null(strcasestr(buf, "content-type: application/json"));
    snprintf(out, outlen, "%.*s", (int)want, body);
    char resp[128];
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", status);
    assert_int_equal(write(fd, resp, (size_t)n), n);
    close(fd);
    return true;
}

static void test_webhook(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = bind_loopback(lfd);
    assert_int_equal(listen(lfd, 8), 0);
    char more[1024];
    snprintf(more, sizeof(more),
             "alerts: {webhook: 'http://127.0.0.1:%u/hook'}\n" CLIENTS(
                 "[{window: day, tokens: 100, cost: '2.5', alert_at: 50%%}]"),
             port);
    struct sl_config *cfg = load_config("flush_interval: 10ms", more);
    const struct sl_config_client *batch = &cfg->clients[0];
    struct sl_ledger *l = open_ok(cfg, T0);
    add(l, batch, T0, 60, 1234567);

    /* The first POST fails (500): it is tried once more, with the same body. */
    char body[2048], body2[2048];
    assert_true(serve_one(lfd, 500, body, sizeof(body), 5000));
    assert_true(serve_one(lfd, 200, body2, sizeof(body2), 5000));
    assert_string_equal(body, body2);
    assert_false(serve_one(lfd, 200, body2, sizeof(body2), 200));

    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (j == NULL)
        fail_msg("not JSON: %s (%s)", body, jerr.text);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "budget_alert");
    assert_string_equal(json_string_value(json_object_get(j, "client")), "batch");
    assert_string_equal(json_string_value(json_object_get(j, "window")), "day");
    assert_string_equal(json_string_value(json_object_get(j, "window_start")),
                        "2026-11-26T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(j, "used_tokens")), 60);
    assert_int_equal(json_integer_value(json_object_get(j, "limit_tokens")), 100);
    assert_string_equal(json_string_value(json_object_get(j, "used_cost")), "1.234567");
    assert_string_equal(json_string_value(json_object_get(j, "limit_cost")), "2.500000");
    assert_true(json_number_value(json_object_get(j, "share")) == 0.6);
    assert_true(json_number_value(json_object_get(j, "threshold")) == 0.5);
    assert_non_null(json_string_value(json_object_get(j, "time")));
    json_decref(j);

    /* The 100 % alert; a webhook that is down does not hold up the records. */
    close(lfd);
    uint64_t t0 = now_mono_ms();
    add(l, batch, T0 + 1, 50, 0);
    wait_alerts(l, 2);
    struct sl_ledger_record r = make_record("batch", T0 + 2, 1, 0);
    sl_ledger_add(l, NULL, &r);
    while (db_int("SELECT count(*) FROM requests") < 3) {
        assert_true(now_mono_ms() - t0 < 2000);
        sleep_ms(5);
    }
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM budget_alerts"), 2);
    sl_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),
        cmocka_unit_test_setup_teardown(test_token_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_money_and_weeks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alert_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_added_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
