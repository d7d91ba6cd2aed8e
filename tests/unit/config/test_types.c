/* The value parsers behind each schema type: good values, bad values and
 * the wording of what the user is told. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/schema.h"

/* The reason a parser gave, kept in one buffer per test. */
static struct sl_buf why;

static int setup(void **state)
{
    sl_buf_init(&why);
    return 0;
}

static int teardown(void **state)
{
    sl_buf_dispose(&why);
    return 0;
}

static const char *reason(void)
{
    return why.base ? why.base : "";
}

static void expect_size(const char *text, uint64_t want)
{
    uint64_t v = 0;
    why.len = 0;
    if (sl_cfg_parse_size(sl_str_from_cstr(text), &v, &why) != SL_OK)
        fail_msg("size \"%s\" rejected: %s", text, reason());
    assert_int_equal(v, want);
}

static void expect_bad_size(const char *text, const char *msg)
{
    uint64_t v = 0;
    why.len = 0;
    assert_int_equal(sl_cfg_parse_size(sl_str_from_cstr(text), &v, &why), SL_EINVAL);
    if (strstr(reason(), msg) == NULL)
        fail_msg("size \"%s\": message \"%s\" lacks \"%s\"", text, reason(), msg);
}

static void test_size(void **state)
{
    expect_size("0", 0);
    expect_size("1048576", 1048576);
    expect_size("512B", 512);
    expect_size("16KiB", 16384);
    expect_size("16 KiB", 16384);
    expect_size("16kib", 16384);
    expect_size("1MiB", 1u << 20);
    expect_size("1GiB", 1u << 30);
    expect_size("16GiB", 16ull << 30);
    expect_bad_size("16 furlongs",
                    "expected a size like 16KiB or 1048576, got \"16 furlongs\" (units are");
    expect_bad_size("16KB", "powers of 1024");
    expect_bad_size("1M", "powers of 1024");
    expect_bad_size("", "got \"\"");
    expect_bad_size("KiB", "expected a size");
    expect_bad_size("-1", "expected a size");
    expect_bad_size("1.5MiB", "expected a size");
    expect_bad_size("99999999999999999999", "too large");
    expect_bad_size("17179869184GiB", "too large");
}

static void expect_duration(const char *text, uint64_t want_ms)
{
    uint64_t v = 0;
    why.len = 0;
    if (sl_cfg_parse_duration(sl_str_from_cstr(text), &v, &why) != SL_OK)
        fail_msg("duration \"%s\" rejected: %s", text, reason());
    assert_int_equal(v, want_ms);
}

static void expect_bad_duration(const char *text, const char *msg)
{
    uint64_t v = 0;
    why.len = 0;
    assert_int_equal(sl_cfg_parse_duration(sl_str_from_cstr(text), &v, &why), SL_EINVAL);
    if (strstr(reason(), msg) == NULL)
        fail_msg("duration \"%s\": message \"%s\" lacks \"%s\"", text, reason(), msg);
}

static void test_duration(void **state)
{
    expect_duration("0", 0);
    expect_duration("0s", 0);
    expect_duration("500ms", 500);
    expect_duration("10s", 10000);
    expect_duration("2m", 120000);
    expect_duration("1h", 3600000);
    expect_duration("1m30s", 90000);
    expect_duration("1h1m1s1ms", 3661001);
    expect_bad_duration("10", "the unit is required");
    expect_bad_duration("10", "got \"10\"");
    expect_bad_duration("10sec", "expected a duration like 500ms");
    expect_bad_duration("10 s", "expected a duration");
    expect_bad_duration("1d", "units are ms, s, m and h");
    expect_bad_duration("1m30", "the unit is required");
    expect_bad_duration("s", "expected a duration");
    expect_bad_duration("", "expected a duration");
    expect_bad_duration("-5s", "expected a duration");
    expect_bad_duration("5124095576030432h", "too large");
    expect_bad_duration("99999999999999999999ms", "too large");
}

static void expect_ratio(const char *text, uint64_t want_ppm)
{
    uint64_t v = UINT64_MAX;
    why.len = 0;
    if (sl_cfg_parse_ratio(sl_str_from_cstr(text), &v, &why) != SL_OK)
        fail_msg("ratio \"%s\" rejected: %s", text, reason());
    if (v != want_ppm)
        fail_msg("ratio \"%s\": %llu ppm, want %llu", text, (unsigned long long)v,
                 (unsigned long long)want_ppm);
}

static void expect_bad_ratio(const char *text, const char *msg)
{
    uint64_t v = 0;
    why.len = 0;
    assert_int_equal(sl_cfg_parse_ratio(sl_str_from_cstr(text), &v, &why), SL_EINVAL);
    if (strstr(reason(), msg) == NULL)
        fail_msg("ratio \"%s\": message \"%s\" lacks \"%s\"", text, reason(), msg);
}

static void test_ratio(void **state)
{
    expect_ratio("0", 0);
    expect_ratio("1", 1000000);
    expect_ratio("0.5", 500000);
    expect_ratio(".5", 500000);
    expect_ratio("0.25", 250000);
    expect_ratio("0.05", 50000);
    expect_ratio("1.0", 1000000);
    expect_ratio("0.000001", 1);
    expect_ratio("0.0000", 0);
    expect_ratio("25%", 250000);
    expect_ratio("25 %", 250000);
    expect_ratio("100%", 1000000);
    expect_ratio("0%", 0);
    expect_ratio("0.5%", 5000);
    expect_ratio("0.0001%", 1);
    expect_ratio("12.3456%", 123456);
    /* Finer than a millionth: rounded to the nearest (half up)... */
    expect_ratio("0.3333333", 333333);
    expect_ratio("0.6666666666", 666667);
    expect_ratio("0.0000005", 1);
    expect_ratio("0.9999999", 1000000);
    expect_ratio("33.333333%", 333333);
    /* ...but never to 0, which would turn the setting off without a word. */
    expect_bad_ratio("0.0000001", "finer than one in a million (0.000001, or 0.0001%), got "
                                  "\"0.0000001\"");
    expect_bad_ratio("0.00001%", "finer than one in a million");
    expect_bad_ratio("1.5", "must be at most 1 (or 100%), got \"1.5\"");
    expect_bad_ratio("1.0000001", "must be at most 1");
    expect_bad_ratio("2", "must be at most 1");
    expect_bad_ratio("101%", "must be at most 1 (or 100%), got \"101%\"");
    expect_bad_ratio("100.01%", "must be at most 1");
    expect_bad_ratio("99999999999999999999999", "must be at most 1");
    expect_bad_ratio("-0.1", "expected a number from 0 to 1 like 0.25, or a percentage like "
                             "25%, got \"-0.1\" (it cannot be negative)");
    expect_bad_ratio("abc", "expected a number from 0 to 1 like 0.25, or a percentage like "
                            "25%, got \"abc\"");
    expect_bad_ratio("1e-3", "(write it without an exponent, like 0.001)");
    expect_bad_ratio("", "got \"\"");
    expect_bad_ratio(".", "expected a number");
    expect_bad_ratio("%", "expected a number");
    expect_bad_ratio("0.5.5", "expected a number");
    expect_bad_ratio("1/2", "expected a number");
    expect_bad_ratio("0,5", "expected a number");
    expect_bad_ratio("50%%", "expected a number");
}

static void test_int(void **state)
{
    uint64_t v = 0;
    assert_int_equal(sl_cfg_parse_int(SL_STR("0"), &v, &why), SL_OK);
    assert_int_equal(v, 0);
    assert_int_equal(sl_cfg_parse_int(SL_STR("10000"), &v, &why), SL_OK);
    assert_int_equal(v, 10000);
    assert_int_equal(sl_cfg_parse_int(SL_STR("-1"), &v, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "0 or more, got \"-1\""));
    why.len = 0;
    assert_int_equal(sl_cfg_parse_int(SL_STR("four"), &v, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "expected a whole number, got \"four\""));
    why.len = 0;
    assert_int_equal(sl_cfg_parse_int(SL_STR("1e3"), &v, &why), SL_EINVAL);
    why.len = 0;
    assert_int_equal(sl_cfg_parse_int(SL_STR("18446744073709551616"), &v, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "too large"));
}

static void test_bool(void **state)
{
    bool b = false;
    assert_int_equal(sl_cfg_parse_bool(SL_STR("true"), &b, &why), SL_OK);
    assert_true(b);
    assert_int_equal(sl_cfg_parse_bool(SL_STR("FALSE"), &b, &why), SL_OK);
    assert_false(b);
    assert_int_equal(sl_cfg_parse_bool(SL_STR("True"), &b, &why), SL_OK);
    assert_true(b);
    assert_int_equal(sl_cfg_parse_bool(SL_STR("yes"), &b, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "expected true or false, got \"yes\""));
    why.len = 0;
    assert_int_equal(sl_cfg_parse_bool(SL_STR("1"), &b, &why), SL_EINVAL);
}

static void test_enum(void **state)
{
    static const struct sl_cfg_choice levels[] = {
        {"debug", 0}, {"info", 1}, {"warn", 2}, {"error", 3}, {NULL, 0}};
    int v = -1;
    assert_int_equal(sl_cfg_parse_enum(SL_STR("warn"), levels, &v, &why), SL_OK);
    assert_int_equal(v, 2);
    assert_int_equal(sl_cfg_parse_enum(SL_STR("DEBUG"), levels, &v, &why), SL_OK);
    assert_int_equal(v, 0);
    assert_int_equal(sl_cfg_parse_enum(SL_STR("verbose"), levels, &v, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "expected one of debug, info, warn, error, got \"verbose\""));
    why.len = 0;
    assert_int_equal(sl_cfg_parse_enum(SL_STR("eror"), levels, &v, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "(did you mean \"error\"?)"));
}

static void expect_addr(const char *text, const char *host, unsigned port)
{
    struct sl_config_addr a;
    memset(&a, 0, sizeof(a));
    why.len = 0;
    if (sl_cfg_parse_addr(sl_str_from_cstr(text), &a, &why) != SL_OK)
        fail_msg("address \"%s\" rejected: %s", text, reason());
    assert_string_equal(a.host, host);
    assert_int_equal(a.port, port);
}

static void expect_bad_addr(const char *text, const char *msg)
{
    struct sl_config_addr a;
    why.len = 0;
    assert_int_equal(sl_cfg_parse_addr(sl_str_from_cstr(text), &a, &why), SL_EINVAL);
    if (strstr(reason(), "expected an address like 127.0.0.1:8080, [::1]:8080 or :8080") == NULL ||
        strstr(reason(), msg) == NULL)
        fail_msg("address \"%s\": message \"%s\" lacks \"%s\"", text, reason(), msg);
}

static void test_addr(void **state)
{
    expect_addr("1.2.3.4:8080", "1.2.3.4", 8080);
    expect_addr(":8080", "0.0.0.0", 8080);
    expect_addr("[::1]:8080", "::1", 8080);
    expect_addr("[::]:1", "::", 1);
    expect_addr("[0:0:0:0:0:0:0:1]:65535", "::1", 65535); /* stored canonical */
    expect_addr("[2001:DB8::1]:443", "2001:db8::1", 443);
    expect_bad_addr("localhost:8080", "host names are not resolved");
    expect_bad_addr("1.2.3:80", "numeric IPv4 or IPv6");
    expect_bad_addr("8080", "\":PORT\" means every interface");
    expect_bad_addr("1.2.3.4", "missing \":PORT\"");
    expect_bad_addr("::1:8080", "IPv6 addresses go in brackets");
    expect_bad_addr("[::1:8080", "missing \"]\"");
    expect_bad_addr("[::1]8080", "missing \":PORT\"");
    expect_bad_addr("1.2.3.4:0", "from 1 to 65535");
    expect_bad_addr("1.2.3.4:65536", "from 1 to 65535");
    expect_bad_addr("1.2.3.4:http", "from 1 to 65535");
    expect_bad_addr("1.2.3.4:", "from 1 to 65535");
    expect_bad_addr("[fe80::1%eth0]:80", "numeric IPv4 or IPv6");
    expect_bad_addr("[1.2.3.4]:80", "numeric IPv4 or IPv6");
    expect_bad_addr("", "missing \":PORT\"");

    /* The public spelling, for command-line options. */
    struct sl_config_addr a;
    why.len = 0;
    assert_int_equal(sl_config_parse_addr(SL_STR("[::1]:8081"), &a, &why), SL_OK);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 8081);
    assert_int_equal(sl_config_parse_addr(SL_STR("8081"), &a, &why), SL_EINVAL);
    assert_non_null(strstr(reason(), "got \"8081\""));
}

static void test_addr_overlaps(void **state)
{
    struct sl_config_addr any = {"0.0.0.0", 80}, lo = {"127.0.0.1", 80}, lo81 = {"127.0.0.1", 81},
                          v6any = {"::", 80};
    assert_true(sl_cfg_addr_overlaps(&lo, &lo));
    assert_true(sl_cfg_addr_overlaps(&any, &lo));
    assert_true(sl_cfg_addr_overlaps(&lo, &v6any));
    assert_false(sl_cfg_addr_overlaps(&lo, &lo81));
    struct sl_buf b;
    sl_buf_init(&b);
    sl_config_addr_format(&lo, &b);
    sl_buf_appendf(&b, " ");
    sl_config_addr_format(&v6any, &b);
    assert_string_equal(b.base, "127.0.0.1:80 [::]:80");
    sl_buf_dispose(&b);
}

static void test_format_value(void **state)
{
    static const struct {
        enum sl_cfg_type t;
        uint64_t v;
        const char *want;
    } cases[] = {
        {SL_CFG_SIZE, 0, "0"},
        {SL_CFG_SIZE, 16384, "16KiB"},
        {SL_CFG_SIZE, 1u << 30, "1GiB"},
        {SL_CFG_SIZE, 1500, "1500"},
        {SL_CFG_DURATION, 10000, "10s"},
        {SL_CFG_DURATION, 90000, "90s"},
        {SL_CFG_DURATION, 3600000, "1h"},
        {SL_CFG_DURATION, 1, "1ms"},
        {SL_CFG_INT, 256, "256"},
        {SL_CFG_RATIO, 0, "0"},
        {SL_CFG_RATIO, 1000000, "1"},
        {SL_CFG_RATIO, 500000, "0.5"},
        {SL_CFG_RATIO, 50000, "0.05"},
        {SL_CFG_RATIO, 123456, "0.123456"},
        {SL_CFG_RATIO, 1, "0.000001"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        struct sl_buf b;
        sl_buf_init(&b);
        assert_int_equal(sl_cfg_format_value(cases[i].t, cases[i].v, &b), SL_OK);
        assert_string_equal(b.base, cases[i].want);
        /* What is printed parses back to the same value. */
        uint64_t back = 0;
        if (cases[i].t == SL_CFG_SIZE)
            assert_int_equal(sl_cfg_parse_size(sl_str_from_cstr(b.base), &back, &why), SL_OK);
        else if (cases[i].t == SL_CFG_DURATION)
            assert_int_equal(sl_cfg_parse_duration(sl_str_from_cstr(b.base), &back, &why), SL_OK);
        else if (cases[i].t == SL_CFG_RATIO)
            assert_int_equal(sl_cfg_parse_ratio(sl_str_from_cstr(b.base), &back, &why), SL_OK);
        else
            back = cases[i].v;
        assert_int_equal(back, cases[i].v);
        sl_buf_dispose(&b);
    }
}

static void test_quote_and_suggest(void **state)
{
    sl_cfg_quote(&why, SL_STR("a\"b\n"));
    assert_string_equal(reason(), "\"a\\\"b\\n\"");
    why.len = 0;
    char long_text[200];
    memset(long_text, 'x', sizeof(long_text));
    sl_cfg_quote(&why, (struct sl_str){long_text, sizeof(long_text)});
    assert_true(why.len < 80);
    assert_non_null(strstr(reason(), "...\""));

    static const char *const keys[] = {"listen", "admin_listen", "workers", "limits", "log"};
    assert_string_equal(sl_cfg_suggest(SL_STR("worker"), keys, 5), "workers");
    assert_string_equal(sl_cfg_suggest(SL_STR("Listen"), keys, 5), "listen");
    assert_string_equal(sl_cfg_suggest(SL_STR("limtis"), keys, 5), "limits");
    assert_null(sl_cfg_suggest(SL_STR("backends"), keys, 5));
    assert_null(sl_cfg_suggest(SL_STR("x"), keys, 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addr_overlaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quote_and_suggest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
