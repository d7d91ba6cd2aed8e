#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/core.h"

static void test_str(void **state)
{
    assert_true(sl_str_eq(SL_STR("abc"), sl_str_from_cstr("abc")));
    assert_false(sl_str_eq(SL_STR("abc"), SL_STR("abd")));
    assert_true(sl_str_eq_ci(SL_STR("Content-Length"), SL_STR("content-LENGTH")));
    assert_false(sl_str_eq_ci(SL_STR("a"), SL_STR("ab")));
    assert_true(sl_str_starts_with(SL_STR("/openai/v1"), SL_STR("/openai")));
    assert_false(sl_str_starts_with(SL_STR("/o"), SL_STR("/openai")));
    assert_true(sl_str_eq_consttime(SL_STR("secret"), SL_STR("secret")));
    assert_false(sl_str_eq_consttime(SL_STR("secret"), SL_STR("secreT")));
    assert_false(sl_str_eq_consttime(SL_STR("secret"), SL_STR("secrets")));
}

static void test_query_param(void **state)
{
    struct sl_str q = SL_STR("a=1&api-version=2024-10-21&api-version=x&empty=&b");
    assert_true(sl_str_eq(sl_query_param(q, SL_STR("api-version")), SL_STR("2024-10-21")));
    assert_true(sl_str_eq(sl_query_param(q, SL_STR("a")), SL_STR("1")));
    assert_null(sl_query_param(q, SL_STR("empty")).base);
    assert_null(sl_query_param(q, SL_STR("b")).base);
    assert_null(sl_query_param(q, SL_STR("api")).base);
    assert_null(sl_query_param(SL_STR(""), SL_STR("a")).base);

    struct sl_str rest = SL_STR("a=1&&b"), pair;
    assert_true(sl_query_next(&rest, &pair));
    assert_true(sl_str_eq(pair, SL_STR("a=1")));
    assert_true(sl_query_next(&rest, &pair));
    assert_int_equal(pair.len, 0);
    assert_true(sl_query_next(&rest, &pair));
    assert_true(sl_str_eq(pair, SL_STR("b")));
    assert_false(sl_query_next(&rest, &pair));
}

static void test_str_to_u64(void **state)
{
    uint64_t v = 0;
    assert_int_equal(sl_str_to_u64(SL_STR("0"), &v), SL_OK);
    assert_int_equal(v, 0);
    assert_int_equal(sl_str_to_u64(SL_STR("18446744073709551615"), &v), SL_OK);
    assert_true(v == UINT64_MAX);
    assert_int_equal(sl_str_to_u64(SL_STR("18446744073709551616"), &v), SL_ETOOBIG);
    assert_int_equal(sl_str_to_u64(SL_STR(""), &v), SL_EINVAL);
    assert_int_equal(sl_str_to_u64(SL_STR("+1"), &v), SL_EINVAL);
    assert_int_equal(sl_str_to_u64(SL_STR("1 "), &v), SL_EINVAL);
}

static void test_buf(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sl_buf_appendf(&b, "%d,", i), SL_OK);
    assert_int_equal(b.len, 3890);
    assert_memory_equal(b.base + b.len - 4, "999,", 4);
    assert_int_equal(b.base[b.len], '\0');
    sl_buf_consume(&b, 3886);
    assert_string_equal(b.base, "999,");
    b.len = 0;
    sl_buf_append_u64(&b, 0);
    sl_buf_append_u64(&b, 18446744073709551615ull);
    assert_string_equal(b.base, "018446744073709551615");
    b.len = 0;
    /* A message longer than any fixed scratch buffer. */
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sl_buf_appendf(&b, "<%s>", big), SL_OK);
    assert_int_equal(b.len, sizeof(big) + 1);
    sl_buf_dispose(&b);
}

static void test_json_escape(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b);
    struct sl_str in = {"a\"b\\c\nd\x01\te\xc3\xa9", 12};
    assert_int_equal(sl_buf_append_json_escaped(&b, in), SL_OK);
    assert_string_equal(b.base, "a\\\"b\\\\c\\nd\\u0001\\te\xc3\xa9");
    sl_buf_dispose(&b);
}

static void test_arena(void **state)
{
    struct sl_arena a;
    sl_arena_init(&a, 256);
    char *p = sl_arena_alloc(&a, 10);
    char *q = sl_arena_alloc(&a, 10);
    assert_non_null(p);
    assert_non_null(q);
    assert_true(q >= p + 10);
    assert_int_equal((uintptr_t)q % _Alignof(max_align_t), 0);
    char *big = sl_arena_alloc(&a, 10000); /* larger than a block */
    assert_non_null(big);
    memset(big, 1, 10000);
    char *r = sl_arena_alloc(&a, 8); /* still served by the first block */
    assert_true(r > q && r < p + 256);
    assert_string_equal(sl_arena_strdup(&a, SL_STR("hello")), "hello");
    sl_arena_reset(&a);
    char *again = sl_arena_alloc(&a, 10);
    assert_ptr_equal(again, p); /* the first block is kept and reused */
    sl_arena_dispose(&a);
}

static void test_request_ids(void **state)
{
    char a[SL_REQUEST_ID_LEN + 1], b[SL_REQUEST_ID_LEN + 1];
    sl_request_id_new(a);
    sl_request_id_new(b);
    assert_int_equal(strlen(a), 32);
    assert_string_not_equal(a, b);
    assert_true(sl_request_id_is_sane(sl_str_from_cstr(a)));
    assert_true(sl_request_id_is_sane(SL_STR("client-1.2_3:4")));
    assert_false(sl_request_id_is_sane(SL_STR("")));
    assert_false(sl_request_id_is_sane(SL_STR("a b")));
    assert_false(sl_request_id_is_sane(SL_STR("a\"b")));
    char long_id[130];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    assert_false(sl_request_id_is_sane(sl_str_from_cstr(long_id)));
}

static void test_clock(void **state)
{
    char when[40];
    sl_clock_rfc3339(when, sizeof(when));
    assert_int_equal(strlen(when), 24);
    assert_int_equal(when[10], 'T');
    assert_int_equal(when[23], 'Z');
    uint64_t t1 = sl_clock_mono_us(), t2 = sl_clock_mono_us();
    assert_true(t2 >= t1);
    /* Any time, not just now; leap days and the epoch itself included. */
    sl_clock_format(0, false, when, sizeof(when));
    assert_string_equal(when, "1970-01-01T00:00:00Z");
    sl_clock_format(1709210096789, true, when, sizeof(when));
    assert_string_equal(when, "2024-02-29T12:34:56.789Z");
    sl_clock_format(1795665162000, false, when, sizeof(when));
    assert_string_equal(when, "2026-11-26T03:52:42Z");
    /* Civil dates round-trip. */
    int64_t y;
    unsigned m, d;
    sl_civil_from_days(sl_days_from_civil(2000, 2, 29), &y, &m, &d);
    assert_true(y == 2000 && m == 2 && d == 29);
    assert_int_equal(sl_days_from_civil(1970, 1, 1), 0);
}

static void test_strerror(void **state)
{
    assert_string_equal(sl_strerror(SL_ETOOBIG), "input too large");
    assert_string_equal(sl_strerror(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str),         cmocka_unit_test(test_str_to_u64),
        cmocka_unit_test(test_query_param), cmocka_unit_test(test_buf),
        cmocka_unit_test(test_json_escape), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_request_ids), cmocka_unit_test(test_clock),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
