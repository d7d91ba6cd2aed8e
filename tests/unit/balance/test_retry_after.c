/* Reading a 429's retry headers: every format, precedence, and what gets skipped. */
#include "balance_test.h"

/* 2026-10-21T07:28:00Z: the date in the tests' HTTP dates. */
#define DATE_MS 1792567680000ull
#define MAX_MS 300000

/* sl_balance_retry_after over name/value pairs (NULL-terminated); *ms, or UINT64_MAX when
 * none parsed. */
static uint64_t retry_after(uint64_t now_unix_ms, bool *clamped, ...)
{
    struct sl_http_header h[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, clamped);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL; n++) {
        assert_true(n < SL_ARRAY_LEN(h));
        h[n].name = sl_str_from_cstr(name);
        h[n].value = sl_str_from_cstr(va_arg(ap, const char *));
    }
    va_end(ap);
    uint64_t ms = 12345;
    bool c = true;
    int err = sl_balance_retry_after(h, n, now_unix_ms, MAX_MS, &ms, &c);
    if (clamped)
        *clamped = c;
    if (err == SL_ENOTFOUND) {
        assert_int_equal(ms, 0);
        assert_false(c);
        return UINT64_MAX;
    }
    assert_int_equal(err, SL_OK);
    return ms;
}

#define ONE(name, value) retry_after(DATE_MS, NULL, name, value, NULL)

static void test_retry_after_ms(void **state)
{
    assert_int_equal(ONE("retry-after-ms", "2000"), 2000);
    assert_int_equal(ONE("Retry-After-Ms", "0"), 0);
    assert_int_equal(ONE("retry-after-ms", "1500.5"), 1501);
    assert_int_equal(ONE("retry-after-ms", "1500.0"), 1500);
    assert_int_equal(ONE("retry-after-ms", "0.001"), 1);
    assert_int_equal(ONE("retry-after-ms", "7."), 7);
    assert_int_equal(ONE("retry-after-ms", ".5"), 1);
    assert_int_equal(ONE("retry-after-ms", "1.0000000001"), 2);
    const char *bad[] = {"",
                         "-1",
                         "+1",
                         "1e3",
                         "abc",
                         "12ms",
                         "1 2",
                         ".",
                         "1..2",
                         "0x10",
                         "99999999999999999999999"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        if (ONE("retry-after-ms", bad[i]) != UINT64_MAX)
            fail_msg("retry-after-ms: \"%s\" parsed", bad[i]);
}

static void test_retry_after_seconds_and_date(void **state)
{
    assert_int_equal(ONE("Retry-After", "2"), 2000);
    assert_int_equal(ONE("retry-after", "0"), 0);
    assert_int_equal(ONE("RETRY-AFTER", "1.5"), 1500);
    assert_int_equal(ONE("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"), 0);
    assert_int_equal(
        retry_after(DATE_MS - 2500, NULL, "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT", NULL),
        2500);
    /* In the past: come back now. */
    assert_int_equal(ONE("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"), 0);
    assert_int_equal(ONE("Retry-After", "Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(ONE("Retry-After", "Mon, 01 Jan 1900 00:00:00 GMT"), 0);
    const char *bad[] = {
        "-5",
        "soon",
        "Wed, 21 Oct 2026 07:28:00 UTC",
        "Wed, 21 Oct 2026 07:28:00",
        "Wednesday, 21-Oct-26 07:28:00 GMT", /* RFC 850: obsolete, not accepted */
        "Wed Oct 21 07:28:00 2026",          /* asctime: likewise */
        "Wed, 32 Oct 2026 07:28:00 GMT",
        "Wed, 29 Feb 2026 07:28:00 GMT",
        "Wed, 21 Okt 2026 07:28:00 GMT",
        "Xyz, 21 Oct 2026 07:28:00 GMT",
        "Wed, 21 Oct 2026 24:28:00 GMT",
        "Wed, 21 Oct 2026 07:60:00 GMT",
        "Wed, 21 Oct 2026 07:28:61 GMT",
        "Wed, 21 Oct 20x6 07:28:00 GMT",
        "Wed,  1 Oct 2026 07:28:00 GMT",
        "2s",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        if (ONE("Retry-After", bad[i]) != UINT64_MAX)
            fail_msg("Retry-After: \"%s\" parsed", bad[i]);
    /* A leap day that exists. */
    uint64_t when;
    assert_int_equal(sl_balance_parse_http_date(SL_STR("Tue, 29 Feb 2028 00:00:00 GMT"), &when),
                     SL_OK);
    assert_int_equal(when, 1835395200000ull);
}

static void test_reset_durations(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {
        {"6m0s", 360000},  {"1.5s", 1500},   {"20ms", 20},     {"1h2m3.5s", 3723500},
        {"30", 30000},     {"0.5", 500},     {"0", 0},         {"0s", 0},
        {"1us", 1},        {"999ns", 1},     {"1000000ns", 1}, {"1000001ns", 2},
        {"2\xc2\xb5s", 1}, {"1ms500us", 2},  {"1.001ms", 2},   {"2h", 7200000},
        {".5s", 500},      {"1m30s", 90000},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++) {
        uint64_t ms = 0;
        int err = sl_balance_parse_duration(sl_str_from_cstr(ok[i].s), &ms);
        if (err != SL_OK || ms != ok[i].ms)
            fail_msg("\"%s\": %s, %llu ms (want %llu)", ok[i].s, sl_strerror(err),
                     (unsigned long long)ms, (unsigned long long)ok[i].ms);
    }
    const char *bad[] = {"",   "-1s", "+1s", "1x",           "s", "1s2", "1 s", "1.s.",
                         "ms", "1d",  "1sm", "99999999999h", "1S"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        uint64_t ms = 0;
        if (sl_balance_parse_duration(sl_str_from_cstr(bad[i]), &ms) == SL_OK)
            fail_msg("\"%s\" parsed as %llu ms", bad[i], (unsigned long long)ms);
    }
    /* The larger of both limits. */
    assert_int_equal(retry_after(DATE_MS, NULL, "x-ratelimit-reset-requests", "1s",
                                 "x-ratelimit-reset-tokens", "6m0s", NULL),
                     360000 > MAX_MS ? MAX_MS : 360000);
    assert_int_equal(retry_after(DATE_MS, NULL, "x-ratelimit-reset-requests", "2s",
                                 "x-ratelimit-reset-tokens", "500ms", NULL),
                     2000);
    assert_int_equal(retry_after(DATE_MS, NULL, "x-ratelimit-reset-tokens", "1.5", NULL), 1500);
    assert_int_equal(retry_after(DATE_MS, NULL, "x-ratelimit-reset-requests", "junk",
                                 "x-ratelimit-reset-tokens", "250ms", NULL),
                     250);
}

static void test_precedence(void **state)
{
    /* retry-after-ms first, wherever it is. */
    assert_int_equal(retry_after(DATE_MS, NULL, "x-ratelimit-reset-requests", "9s", "Retry-After",
                                 "5", "retry-after-ms", "1200", NULL),
                     1200);
    /* Then Retry-After, over the reset headers, even when shorter. */
    assert_int_equal(
        retry_after(DATE_MS, NULL, "x-ratelimit-reset-requests", "9s", "Retry-After", "5", NULL),
        5000);
    /* A bad value falls through to the next header. */
    assert_int_equal(retry_after(DATE_MS, NULL, "retry-after-ms", "-1", "Retry-After", "3", NULL),
                     3000);
    assert_int_equal(retry_after(DATE_MS, NULL, "retry-after-ms", "", "Retry-After", "soon",
                                 "x-ratelimit-reset-tokens", "20ms", NULL),
                     20);
    /* A second header of the same name, when the first is bad. */
    assert_int_equal(
        retry_after(DATE_MS, NULL, "retry-after-ms", "x", "retry-after-ms", "42", NULL), 42);
    /* Nothing usable, or nothing at all. */
    assert_int_equal(
        retry_after(DATE_MS, NULL, "retry-after-ms", "x", "content-type", "application/json", NULL),
        UINT64_MAX);
    assert_int_equal(retry_after(DATE_MS, NULL, NULL), UINT64_MAX);
    /* Look-alike names are not the header. */
    assert_int_equal(retry_after(DATE_MS, NULL, "retry-after-msx", "5", "x-retry-after", "5", NULL),
                     UINT64_MAX);
}

static void test_clamped(void **state)
{
    bool clamped = false;
    assert_int_equal(retry_after(DATE_MS, &clamped, "retry-after-ms", "86400000", NULL), MAX_MS);
    assert_true(clamped);
    assert_int_equal(retry_after(DATE_MS, &clamped, "Retry-After", "18446744073709551", NULL),
                     MAX_MS);
    assert_true(clamped);
    assert_int_equal(
        retry_after(DATE_MS, &clamped, "Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT", NULL),
        MAX_MS);
    assert_true(clamped);
    assert_int_equal(retry_after(DATE_MS, &clamped, "x-ratelimit-reset-tokens", "1000h", NULL),
                     MAX_MS);
    assert_true(clamped);
    assert_int_equal(retry_after(DATE_MS, &clamped, "retry-after-ms", "300000", NULL), MAX_MS);
    assert_false(clamped);
    /* Seconds that overflow in milliseconds are skipped, not clamped (nonsense). */
    assert_int_equal(retry_after(DATE_MS, &clamped, "Retry-After", "18446744073709552", NULL),
                     UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_ms),  cmocka_unit_test(test_retry_after_seconds_and_date),
        cmocka_unit_test(test_reset_durations), cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
