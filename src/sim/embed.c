/*
 * Embedding vectors: deterministic per (seed, input), unit length, and
 * rendered either as a JSON array or, as the SDKs ask by default, as base64
 * of little-endian float32 values.
 */
#include "sim/internal.h"

#include <math.h>
#include <openssl/evp.h>
#include <string.h>

void sl_sim_embed(uint64_t seed, size_t dims, float *out)
{
    uint64_t rng = seed;
    double sum = 0;
    for (size_t i = 0; i < dims; i++) {
        /* Two uniforms make a triangular distribution around 0: closer to
         * real embeddings than a flat one, still cheap. */
        uint64_t r = sl_sim_rand(&rng);
        double a = (double)(r >> 40) / (double)(1u << 24);
        double b = (double)(r & 0xffffff) / (double)(1u << 24);
        double x = a + b - 1.0;
        out[i] = (float)x;
        sum += (double)out[i] * (double)out[i];
    }
    if (sum == 0)
        sum = 1;
    double inv = 1.0 / sqrt(sum);
    for (size_t i = 0; i < dims; i++)
        out[i] = (float)(out[i] * inv);
}

/* Fixed-point, 8 decimals: values are in [-1, 1], and snprintf("%g") would
 * cost more than everything else in a large embeddings response. */
static void append_float(char *dst, size_t *n, float f)
{
    double v = f;
    if (v < 0) {
        dst[(*n)++] = '-';
        v = -v;
    }
    uint64_t scaled = (uint64_t)(v * 1e8 + 0.5);
    dst[(*n)++] = (char)('0' + scaled / 100000000u);
    dst[(*n)++] = '.';
    uint64_t frac = scaled % 100000000u;
    for (int i = 7; i >= 0; i--) {
        dst[*n + (size_t)i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    *n += 8;
}

int sl_sim_append_floats(struct sl_buf *b, const float *v, size_t n)
{
    /* At most 12 bytes per value ("-0.12345678,") plus the brackets. */
    int err = sl_buf_reserve(b, n * 12 + 2);
    if (err)
        return err;
    char *dst = b->base + b->len;
    size_t k = 0;
    dst[k++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            dst[k++] = ',';
        append_float(dst, &k, v[i]);
    }
    dst[k++] = ']';
    b->len += k;
    b->base[b->len] = '\0';
    return SL_OK;
}

int sl_sim_append_base64_floats(struct sl_buf *b, const float *v, size_t n)
{
    size_t raw_len = n * 4;
    unsigned char raw[3 * 256]; /* a multiple of 3, so pieces encode without padding */
    int err = sl_buf_reserve(b, (raw_len + 2) / 3 * 4 + 1);
    if (err)
        return err;
    size_t done = 0; /* floats converted */
    while (done < n) {
        size_t k = 0;
        while (done < n && k + 4 <= sizeof(raw)) {
            uint32_t u;
            memcpy(&u, &v[done++], 4);
            raw[k++] = (unsigned char)u;
            raw[k++] = (unsigned char)(u >> 8);
            raw[k++] = (unsigned char)(u >> 16);
            raw[k++] = (unsigned char)(u >> 24);
        }
        /* sizeof(raw) is a multiple of 12: only the last piece can need padding. */
        int w = EVP_EncodeBlock((unsigned char *)b->base + b->len, raw, (int)k);
        b->len += (size_t)w;
    }
    b->base[b->len] = '\0';
    return SL_OK;
}
