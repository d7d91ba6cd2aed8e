/* Taking tokens apart (no keys, no clock): strict base64url, shape, header and payload. */
#include "auth_test.h"
#include "auth/internal.h"

static void expect_b64(const char *in, const char *want)
{
    unsigned char out[64];
    size_t len = 99;
    assert_int_equal(sl_base64url_decode(sl_str_from_cstr(in), out, sizeof(out), &len), SL_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
}

static void expect_b64_bad(const char *in)
{
    unsigned char out[64];
    size_t len = 0;
    assert_int_equal(sl_base64url_decode(sl_str_from_cstr(in), out, sizeof(out), &len), SL_EINVAL);
}

static void test_base64url(void **state)
{
    expect_b64("", "");
    expect_b64("Zg", "f");
    expect_b64("Zm8", "fo");
    expect_b64("Zm9v", "foo");
    expect_b64("Zm9vYg", "foob");
    expect_b64("-_-_", "\xfb\xff\xbf");
    expect_b64_bad("Zg=="); /* padding */
    expect_b64_bad("Z");    /* one character is never a byte */
    expect_b64_bad("Zh");   /* unused bits set: a second spelling of "f" */
    expect_b64_bad("Zm9=");
    expect_b64_bad("+/+/"); /* base64, not base64url */
    expect_b64_bad("Zm 9v");
    expect_b64_bad("Zm9v\n");
    unsigned char out[2];
    size_t len;
    assert_int_equal(sl_base64url_decode(SL_STR("Zm9v"), out, sizeof(out), &len), SL_ETOOBIG);
}

static void test_looks_like(void **state)
{
    assert_true(sl_jwt_looks_like(SL_STR("eyJhbGciOiJIUzI1NiJ9.e30.sig")));
    assert_true(sl_jwt_looks_like(SL_STR("eyJ..")));
    assert_false(sl_jwt_looks_like(SL_STR("eyJhbGciOiJIUzI1NiJ9.e30")));
    assert_false(sl_jwt_looks_like(SL_STR("eyJ.a.b.c")));
    assert_false(sl_jwt_looks_like(SL_STR("sk-abc.def.ghi")));
    assert_false(sl_jwt_looks_like(SL_STR("")));
}

static void test_parse(void **state)
{
    struct sl_buf t, why;
    struct sl_jwt j;
    sl_buf_init(&t);
    sl_buf_init(&why);
    b64url_str(&t, "{\"alg\":\"ES256\",\"kid\":\"k\\u00e9\",\"typ\":\"JWT\"}");
    sl_buf_appendf(&t, ".");
    b64url_str(&t, "{\"iss\":\"i\",\"n\":[1,{\"a\":null}]}");
    size_t signed_len = t.len;
    sl_buf_appendf(&t, ".AQID");
    assert_int_equal(sl_jwt_parse((struct sl_str){t.base, t.len}, &j, &why), SL_OK);
    assert_int_equal(why.len, 0);
    assert_int_equal(j.alg, SL_JWT_ES256);
    assert_string_equal(j.kid, "k\xc3\xa9");
    assert_ptr_equal(j.signed_part.base, t.base);
    assert_int_equal(j.signed_part.len, signed_len);
    assert_int_equal(j.sig_len, 3);
    assert_memory_equal(j.sig, "\x01\x02\x03", 3);
    assert_string_equal(json_string_value(json_object_get(j.payload, "iss")), "i");
    sl_jwt_dispose(&j);
    sl_jwt_dispose(&j); /* disposing twice is harmless */

    /* A NUL inside a string (\u0000) is refused by jansson: claims are C strings. */
    t.len = 0;
    b64url_str(&t, "{\"alg\":\"HS256\",\"kid\":\"a\\u0000b\"}");
    sl_buf_appendf(&t, ".e30.AQID");
    assert_int_equal(sl_jwt_parse((struct sl_str){t.base, t.len}, &j, &why), SL_EINVAL);
    assert_null(j.header);

    /* A signature longer than RSA 4096's is refused before it is decoded. */
    t.len = 0;
    b64url_str(&t, "{\"alg\":\"RS256\"}");
    sl_buf_appendf(&t, ".e30.");
    for (int i = 0; i < 700; i++)
        sl_buf_append(&t, "AAAA", 4);
    why.len = 0;
    assert_int_equal(sl_jwt_parse((struct sl_str){t.base, t.len}, &j, &why), SL_EINVAL);
    sl_buf_append(&why, "", 1);
    assert_string_equal(why.base, "the token is malformed: its signature is too long");

    char big[SL_JWT_MAX_TOKEN + 1];
    memset(big, 'e', sizeof(big));
    why.len = 0;
    assert_int_equal(sl_jwt_parse((struct sl_str){big, sizeof(big)}, &j, &why), SL_ETOOBIG);
    sl_buf_dispose(&t);
    sl_buf_dispose(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_looks_like),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
