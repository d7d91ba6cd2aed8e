/*
 * Scaffolding for the auth unit tests (tests only): keys made with OpenSSL,
 * written as a JWKS or PEM file into a temporary directory, tokens signed
 * here (RS256, ES256 as JOSE r||s, HS256, or unsigned), and request heads
 * with one credential header. Each test file is its own program, so the
 * helpers are static inline.
 */
#ifndef SL_TESTS_AUTH_TEST_H
#define SL_TESTS_AUTH_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/auth.h"
#include "http/parser.h"

/* base64url without padding of len bytes, appended to b. */
static inline void b64url(struct sl_buf *b, const unsigned char *p, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        size_t out = len - i >= 3 ? 4 : len - i + 1;
        for (size_t k = 0; k < out; k++) {
            char c = abc[(v >> (18 - 6 * k)) & 63];
            sl_buf_append(b, &c, 1);
        }
    }
}

static inline void b64url_str(struct sl_buf *b, const char *s)
{
    b64url(b, (const unsigned char *)s, strlen(s));
}

/* A big number as base64url of its big-endian bytes, padded to pad bytes (0: minimal). */
static inline void b64url_bn(struct sl_buf *b, const BIGNUM *bn, int pad)
{
    unsigned char raw[1024];
    int n = pad ? BN_bn2binpad(bn, raw, pad) : BN_bn2bin(bn, raw);
    assert_true(n > 0);
    b64url(b, raw, (size_t)n);
}

static inline EVP_PKEY *gen_rsa(void)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    assert_non_null(pk);
    return pk;
}

static inline EVP_PKEY *gen_ec(void)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    return pk;
}

/* The public JWK of pk as a JSON object's text; extra (may be "") goes inside the braces. */
static inline void jwk_append(struct sl_buf *b, EVP_PKEY *pk, const char *kid, const char *extra)
{
    BIGNUM *x = NULL, *y = NULL;
    if (EVP_PKEY_is_a(pk, "RSA")) {
        assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &x), 1);
        assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &y), 1);
        sl_buf_appendf(b, "{\"kty\":\"RSA\",\"n\":\"");
        b64url_bn(b, x, 0);
        sl_buf_appendf(b, "\",\"e\":\"");
        b64url_bn(b, y, 0);
    } else {
        assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
        assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
        sl_buf_appendf(b, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"");
        b64url_bn(b, x, 32);
        sl_buf_appendf(b, "\",\"y\":\"");
        b64url_bn(b, y, 32);
    }
    sl_buf_appendf(b, "\"");
    if (kid)
        sl_buf_appendf(b, ",\"kid\":\"%s\"", kid);
    if (extra && *extra)
        sl_buf_appendf(b, ",%s", extra);
    sl_buf_appendf(b, "}");
    BN_free(x);
    BN_free(y);
}

static inline void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static inline void write_pem_pub(const char *path, EVP_PKEY *pk)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, pk), 1);
    assert_int_equal(fclose(f), 0);
}

static inline void write_pem_priv(const char *path, EVP_PKEY *pk)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(f), 0);
}

/* What signs a test token. */
struct signer {
    const char *alg;  /* written into the header: "RS256", "ES256", "HS256", "none", ... */
    EVP_PKEY *pkey;   /* RS256/ES256 (or anything else to sign with "as" that alg) */
    const char *hmac; /* HS256 key bytes, hmac_len of them */
    size_t hmac_len;
};

/* A compact JWT: header {"alg","typ","kid"?}, the payload text as given, and a signature
 * made as s says (an HS256 signer with pkey == NULL and hmac == NULL: an empty signature).
 * The caller frees the result. */
static inline char *sign_token(const struct signer *s, const char *kid, const char *payload)
{
    struct sl_buf t, h;
    sl_buf_init(&t);
    sl_buf_init(&h);
    sl_buf_appendf(&h, "{\"alg\":\"%s\",\"typ\":\"JWT\"", s->alg);
    if (kid)
        sl_buf_appendf(&h, ",\"kid\":\"%s\"", kid);
    sl_buf_appendf(&h, "}");
    b64url(&t, (const unsigned char *)h.base, h.len);
    sl_buf_append(&t, ".", 1);
    b64url_str(&t, payload);
    size_t signed_len = t.len;
    sl_buf_append(&t, ".", 1);
    unsigned char sig[1024];
    size_t sig_len = 0;
    if (s->hmac) {
        unsigned int n = 0;
        assert_non_null(HMAC(EVP_sha256(), s->hmac, (int)s->hmac_len, (unsigned char *)t.base,
                             signed_len, sig, &n));
        sig_len = n;
    } else if (s->pkey) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char der[1024];
        size_t der_len = sizeof(der);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->pkey), 1);
        assert_int_equal(EVP_DigestSign(md, der, &der_len, (unsigned char *)t.base, signed_len), 1);
        EVP_MD_CTX_free(md);
        if (EVP_PKEY_is_a(s->pkey, "EC")) {
            const unsigned char *p = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
            assert_non_null(es);
            assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32), 32);
            assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32), 32);
            ECDSA_SIG_free(es);
            sig_len = 64;
        } else {
            memcpy(sig, der, der_len);
            sig_len = der_len;
        }
    }
    b64url(&t, sig, sig_len);
    sl_buf_append(&t, "", 1);
    sl_buf_dispose(&h);
    return t.base;
}

/* A request head holding one header (name: value); the strings must outlive it. */
struct one_header_head {
    struct sl_http_header header;
    struct sl_http_request_head head;
};

static inline void head_with(struct one_header_head *h, const char *name, const char *value)
{
    memset(h, 0, sizeof(*h));
    if (name) {
        h->header.name = sl_str_from_cstr(name);
        h->header.value = sl_str_from_cstr(value);
    }
    h->head.headers = &h->header;
    h->head.n_headers = name ? 1 : 0;
}

#endif
