/* Embedding vectors: deterministic, unit length, prefixes, JSON and base64 renderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "sim/internal.h"

static double norm(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

static void test_deterministic_unit_vectors(void **state)
{
    static float a[3072], b[3072];
    sl_sim_embed(123, 1536, a);
    sl_sim_embed(123, 1536, b);
    assert_memory_equal(a, b, 1536 * sizeof(float));
    assert_true(fabs(norm(a, 1536) - 1.0) < 1e-5);
    sl_sim_embed(124, 1536, b);
    assert_memory_not_equal(a, b, 1536 * sizeof(float));
    for (size_t dims = 1; dims <= 3072; dims = dims * 3 + 1) {
        sl_sim_embed(9, dims, a);
        assert_true(fabs(norm(a, dims) - 1.0) < 1e-5);
    }
}

/* A shorter vector is the renormalised prefix of a longer one (as text-embedding-3 does). */
static void test_shorter_is_prefix(void **state)
{
    static float full[1536], short_[256];
    sl_sim_embed(77, 1536, full);
    sl_sim_embed(77, 256, short_);
    double n = norm(full, 256);
    for (size_t i = 0; i < 256; i++)
        assert_true(fabs(full[i] / n - short_[i]) < 1e-6);
}

static void test_base64_round_trip(void **state)
{
    static float v[1537];
    static unsigned char raw[1537 * 4 + 8];
    for (size_t n = 1; n <= 1537; n += 97) {
        struct sl_buf b;
        sl_buf_init(&b);
        sl_sim_embed(n, n, v);
        assert_int_equal(sl_sim_append_base64_floats(&b, v, n), SL_OK);
        assert_int_equal(b.len, (n * 4 + 2) / 3 * 4);
        int got = EVP_DecodeBlock(raw, (const unsigned char *)b.base, (int)b.len);
        /* EVP_DecodeBlock counts padding bytes as data */
        assert_true(got >= (int)(n * 4) && got < (int)(n * 4) + 3);
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 |
                         (uint32_t)raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24;
            float f;
            memcpy(&f, &u, 4);
            assert_true(f == v[i]); /* bit for bit, little-endian */
        }
        sl_buf_dispose(&b);
    }
}

static void test_float_text(void **state)
{
    float v[5] = {0.5f, -0.25f, 1.0f, -0.000000004f, 0.123456789f};
    struct sl_buf b;
    sl_buf_init(&b);
    assert_int_equal(sl_sim_append_floats(&b, v, 5), SL_OK);
    assert_string_equal(b.base, "[0.50000000,-0.25000000,1.00000000,-0.00000000,0.12345679]");
    b.len = 0;
    static float big[1536];
    sl_sim_embed(5, 1536, big);
    assert_int_equal(sl_sim_append_floats(&b, big, 1536), SL_OK);
    /* every value reads back within the printed precision */
    char *p = b.base + 1;
    for (size_t i = 0; i < 1536; i++) {
        char *end;
        double d = strtod(p, &end);
        assert_true(end > p);
        assert_true(fabs(d - big[i]) <= 5e-9 + 1e-7 * fabs(big[i]));
        p = end + 1;
    }
    sl_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_unit_vectors),
        cmocka_unit_test(test_shorter_is_prefix),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_float_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
