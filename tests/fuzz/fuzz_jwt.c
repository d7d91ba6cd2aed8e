/*
 * Fuzz JWT handling: taking tokens apart (sl_jwt_parse) and the whole of
 * sl_auth_identify against a configuration with an HS256 issuer, an RS256
 * and an ES256 one (PEM keys made at start-up). Never crash, never accept
 * without a client, never refuse without a reason.
 *
 * The first byte picks what the rest is:
 *   0: a token, sent as `Authorization: Bearer`;
 *   1: "HEADER-JSON\nPAYLOAD-JSON", which the target encodes and signs with
 *      the HS256 issuer's secret, so that the claim checks behind the
 *      signature get fuzzed too;
 *   2: the raw `Authorization` value, and the `api-key` one when it holds
 *      a newline (before it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/internal.h"
#include "fuzz_input.h"

#define NOW 1900000000ull
#define SECRET "fuzz-secret-fuzz-secret-fuzz-secret!"

static struct sl_config *cfg;
static struct sl_auth *auth;
static char rsa_pem[] = "/tmp/sl-fuzz-jwt-rsa-XXXXXX";
static char ec_pem[] = "/tmp/sl-fuzz-jwt-ec-XXXXXX";

static void cleanup(void)
{
    sl_auth_free(auth);
    sl_config_unref(cfg);
    unlink(rsa_pem);
    unlink(ec_pem);
}

static void write_pub(char *path, EVP_PKEY *pk)
{
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL || PEM_write_PUBKEY(f, pk) != 1 || fclose(f) != 0)
        abort();
    EVP_PKEY_free(pk);
}

static void setup(void)
{
    write_pub(rsa_pem, EVP_RSA_gen(2048));
    write_pub(ec_pem, EVP_EC_gen("P-256"));
    char hash[SL_CONFIG_HASHED_KEY_SIZE];
    sl_config_hash_key(SL_STR("fuzz-key"), hash);
    char yaml[2048];
    int n = snprintf(yaml, sizeof(yaml),
                     "jwt_issuers:\n"
                     "  - {name: hs, issuer: 'https://hs.example', audiences: [api://fuzz], "
                     "secret: '" SECRET "', claim: appid}\n"
                     "  - {name: rs, issuer: 'https://rs.example', audiences: [api://fuzz], "
                     "public_key_file: '%s', algorithms: [RS256]}\n"
                     "  - {name: es, issuer: 'https://rs.example', audiences: [other], "
                     "public_key_file: '%s'}\n"
                     "clients:\n"
                     "  - {name: a, keys: ['%s'], jwt_issuer: hs, jwt_ids: [app-1, app-2]}\n"
                     "  - {name: b, jwt_issuer: rs, jwt_ids: [app-1]}\n"
                     "  - {name: c, jwt_issuer: es, jwt_ids: [app-3]}\n",
                     rsa_pem, ec_pem, hash);
    struct sl_config_errors errs;
    struct sl_buf why;
    sl_config_errors_init(&errs);
    sl_buf_init(&why);
    if (n <= 0 || (size_t)n >= sizeof(yaml) ||
        sl_config_load_buffer("fuzz.yaml", yaml, (size_t)n, &cfg, &errs) != SL_OK) {
        sl_config_errors_print(&errs, stderr);
        abort();
    }
    if (sl_auth_new(cfg, &auth, &why) != SL_OK)
        abort();
    sl_config_errors_dispose(&errs);
    sl_buf_dispose(&why);
    atexit(cleanup);
}

static void b64url(struct sl_buf *b, const unsigned char *p, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        size_t out = len - i >= 3 ? 4 : len - i + 1;
        for (size_t k = 0; k < out; k++)
            sl_buf_append(b, &abc[(v >> (18 - 6 * k)) & 63], 1);
    }
}

/* identify with these headers (value NULL: absent); checks the outcome's invariants. */
static void identify(struct sl_str authorization, struct sl_str api_key)
{
    struct sl_http_header h[2];
    struct sl_http_request_head head;
    memset(&head, 0, sizeof(head));
    head.headers = h;
    if (authorization.base)
        h[head.n_headers++] = (struct sl_http_header){SL_STR("Authorization"), authorization};
    if (api_key.base)
        h[head.n_headers++] = (struct sl_http_header){SL_STR("api-key"), api_key};
    const struct sl_config_client *client = NULL;
    struct sl_buf why;
    sl_buf_init(&why);
    int err = sl_auth_identify(auth, &head, NOW, &client, &why);
    if (err == SL_OK && (client == NULL || why.len != 0))
        abort();
    if (err != SL_OK && (err != SL_EPERM || client != NULL || why.len == 0))
        abort();
    sl_buf_dispose(&why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (auth == NULL)
        setup();
    if (size == 0)
        return 0;
    int mode = data[0] % 3;
    size_t len = size - 1;
    char *rest = fuzz_copy(data + 1, len);
    if (rest == NULL)
        return 0;
    struct sl_buf v;
    sl_buf_init(&v);
    if (mode == 0) {
        struct sl_jwt j;
        struct sl_buf why;
        sl_buf_init(&why);
        int err = sl_jwt_parse((struct sl_str){rest, len}, &j, &why);
        if (err == SL_OK) {
            /* The signed part is a view into the token, ending before the last dot. */
            if (j.signed_part.base != rest || j.signed_part.len >= len ||
                rest[j.signed_part.len] != '.' || !json_is_object(j.payload))
                abort();
            sl_jwt_dispose(&j);
        } else if (why.len == 0 || j.header || j.payload || j.sig) {
            abort();
        }
        sl_buf_dispose(&why);
        sl_buf_appendf(&v, "Bearer ");
        sl_buf_append(&v, rest, len);
        identify((struct sl_str){v.base, v.len}, SL_STR_NULL);
    } else if (mode == 1) {
        const char *nl = len ? memchr(rest, '\n', len) : NULL;
        size_t hl = nl ? (size_t)(nl - rest) : len;
        sl_buf_appendf(&v, "Bearer ");
        b64url(&v, (const unsigned char *)rest, hl);
        sl_buf_append(&v, ".", 1);
        if (nl)
            b64url(&v, (const unsigned char *)nl + 1, len - hl - 1);
        unsigned char mac[32];
        unsigned int mac_len = 0;
        HMAC(EVP_sha256(), SECRET, sizeof(SECRET) - 1, (const unsigned char *)v.base + 7, v.len - 7,
             mac, &mac_len);
        sl_buf_append(&v, ".", 1);
        b64url(&v, mac, mac_len);
        identify((struct sl_str){v.base, v.len}, SL_STR_NULL);
    } else {
        const char *nl = len ? memchr(rest, '\n', len) : NULL;
        if (nl)
            identify((struct sl_str){nl + 1, len - (size_t)(nl - rest) - 1},
                     (struct sl_str){rest, (size_t)(nl - rest)});
        else
            identify((struct sl_str){rest, len}, SL_STR_NULL);
    }
    sl_buf_dispose(&v);
    free(rest);
    return 0;
}
