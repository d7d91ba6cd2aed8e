/*
 * An issuer's verification keys, read from its `jwks_file` (a JSON Web Key
 * Set: RFC 7517/7518 RSA and EC P-256 keys) or `public_key_file` (PEM). Keys
 * are made with OpenSSL 3's parameter API (no deprecated RSA_/EC_KEY calls).
 * A set may hold keys we cannot use (encryption keys, other curves, other
 * algorithms, the issuer's future key types): those are skipped, but a set
 * with nothing usable left is an error, found when the configuration loads
 * rather than at the first request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "auth/internal.h"

/* Key files are small: a JWKS of a few keys, one PEM key. */
#define MAX_KEY_FILE_BYTES (1u << 20)
/* RSA keys shorter than this are refused: 1024-bit RSA is breakable. */
#define MIN_RSA_BITS 2048

/* Read a whole regular file into *out (NUL-terminated); the reason in why (after "FILE: "). */
static int read_key_file(const char *path, struct sl_buf *out, struct sl_buf *why)
{
    int err = SL_EINVAL;
    struct stat st;
    /* O_NONBLOCK: a FIFO must not hang the load; it is refused below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        sl_buf_appendf(why, "cannot read \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        sl_buf_appendf(why, "\"%s\" is %s", path,
                       S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
        goto out;
    }
    if (st.st_size > (off_t)MAX_KEY_FILE_BYTES) {
        sl_buf_appendf(why, "\"%s\" is larger than %u MiB", path, MAX_KEY_FILE_BYTES >> 20);
        goto out;
    }
    if (sl_buf_reserve(out, (size_t)st.st_size + 1) != SL_OK) {
        err = SL_ENOMEM;
        goto out;
    }
    for (;;) {
        if (out->cap - out->len < 2 && sl_buf_reserve(out, 4096) != SL_OK) {
            err = SL_ENOMEM;
            goto out;
        }
        ssize_t n = read(fd, out->base + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sl_buf_appendf(why, "cannot read \"%s\": %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len > MAX_KEY_FILE_BYTES) {
            sl_buf_appendf(why, "\"%s\" is larger than %u MiB", path, MAX_KEY_FILE_BYTES >> 20);
            goto out;
        }
    }
    out->base[out->len] = '\0';
    err = SL_OK;
out:
    if (fd >= 0)
        close(fd);
    return err;
}

/* A key type we can check tokens with, or why not (for PEM keys and the JWKS check). */
static bool usable_pkey(EVP_PKEY *pk, enum sl_jwt_alg *alg, struct sl_buf *why)
{
    if (EVP_PKEY_is_a(pk, "RSA")) {
        if (EVP_PKEY_get_bits(pk) < MIN_RSA_BITS) {
            sl_buf_appendf(why, "an RSA key of %d bits (at least %d are needed)",
                           EVP_PKEY_get_bits(pk), MIN_RSA_BITS);
            return false;
        }
        *alg = SL_JWT_RS256;
        return true;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            sl_buf_appendf(why, "an EC key on curve %s (only P-256 is supported)",
                           group[0] ? group : "(unknown)");
            return false;
        }
        *alg = SL_JWT_ES256;
        return true;
    }
    sl_buf_appendf(why, "a %s key (only RSA and EC P-256 are supported)",
                   EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "unknown");
    return false;
}

static int add_key(struct sl_auth_issuer *is, const char *kid, enum sl_jwt_alg alg, EVP_PKEY *pk)
{
    struct sl_auth_key *k = realloc(is->keys, (is->n_keys + 1) * sizeof(*k));
    if (k == NULL)
        return SL_ENOMEM;
    is->keys = k;
    k = &is->keys[is->n_keys];
    k->kid = NULL;
    if (kid && (k->kid = strdup(kid)) == NULL)
        return SL_ENOMEM;
    k->alg = alg;
    k->pkey = pk;
    is->n_keys++;
    return SL_OK;
}

/* ---- PEM ---- */

static int load_pem(const char *path, struct sl_auth_issuer *is, struct sl_buf *why)
{
    int err;
    struct sl_buf text;
    EVP_PKEY *pk = NULL;
    BIO *bio = NULL;
    sl_buf_init(&text);
    if ((err = read_key_file(path, &text, why)) != SL_OK)
        goto out;
    err = SL_EINVAL;
    if ((bio = BIO_new_mem_buf(text.base, (int)text.len)) == NULL) {
        err = SL_ENOMEM;
        goto out;
    }
    if ((pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL) {
        sl_buf_appendf(why,
                       "\"%s\" holds no PEM public key (-----BEGIN PUBLIC KEY-----; a "
                       "certificate or private key is not accepted)",
                       path);
        goto out;
    }
    enum sl_jwt_alg alg;
    struct sl_buf reason;
    sl_buf_init(&reason);
    if (!usable_pkey(pk, &alg, &reason)) {
        sl_buf_appendf(why, "\"%s\" holds %.*s", path, (int)reason.len,
                       reason.base ? reason.base : "");
        sl_buf_dispose(&reason);
        goto out;
    }
    sl_buf_dispose(&reason);
    if ((err = add_key(is, NULL, alg, pk)) != SL_OK)
        goto out;
    pk = NULL;
out:
    EVP_PKEY_free(pk);
    BIO_free(bio);
    sl_buf_dispose(&text);
    ERR_clear_error();
    return err;
}

/* ---- JWKS ---- */

/* A base64url member of a JWK decoded into a BIGNUM (big-endian, RFC 7518 §6). */
static int jwk_bignum(json_t *jwk, const char *name, size_t max, BIGNUM **out, struct sl_buf *why,
                      size_t index)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        sl_buf_appendf(why, "keys[%zu] has no `%s`", index, name);
        return SL_EINVAL;
    }
    unsigned char *raw = malloc(max);
    size_t len = 0;
    if (raw == NULL)
        return SL_ENOMEM;
    struct sl_str s = {json_string_value(v), json_string_length(v)};
    int err = sl_base64url_decode(s, raw, max, &len);
    if (err != SL_OK || len == 0) {
        sl_buf_appendf(why, "keys[%zu]: `%s` is %s", index, name,
                       err == SL_ETOOBIG ? "too long" : "not unpadded base64url");
        free(raw);
        return SL_EINVAL;
    }
    *out = BN_bin2bn(raw, (int)len, NULL);
    free(raw);
    return *out ? SL_OK : SL_ENOMEM;
}

static int jwk_rsa(json_t *jwk, EVP_PKEY **out, struct sl_buf *why, size_t index)
{
    int err;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if ((err = jwk_bignum(jwk, "n", 1024, &n, why, index)) != SL_OK ||
        (err = jwk_bignum(jwk, "e", 16, &e, why, index)) != SL_OK)
        goto out;
    err = SL_ENOMEM;
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL)
        goto out;
    err = SL_EINVAL;
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        sl_buf_appendf(why, "keys[%zu] is not a valid RSA public key", index);
        goto out;
    }
    err = SL_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return err;
}

/* A P-256 coordinate: exactly 32 bytes (RFC 7518 §6.2.1.2). */
static int jwk_coord(json_t *jwk, const char *name, unsigned char out[32], struct sl_buf *why,
                     size_t index)
{
    json_t *v = json_object_get(jwk, name);
    size_t len = 0;
    if (!json_is_string(v)) {
        sl_buf_appendf(why, "keys[%zu] has no `%s`", index, name);
        return SL_EINVAL;
    }
    struct sl_str s = {json_string_value(v), json_string_length(v)};
    if (sl_base64url_decode(s, out, 32, &len) != SL_OK || len != 32) {
        sl_buf_appendf(why, "keys[%zu]: `%s` is not 32 bytes of unpadded base64url", index, name);
        return SL_EINVAL;
    }
    return SL_OK;
}

static int jwk_ec(json_t *jwk, EVP_PKEY **out, struct sl_buf *why, size_t index)
{
    int err;
    unsigned char point[65];
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    /* The uncompressed point: 0x04 || x || y. */
    point[0] = 0x04;
    if ((err = jwk_coord(jwk, "x", point + 1, why, index)) != SL_OK ||
        (err = jwk_coord(jwk, "y", point + 33, why, index)) != SL_OK)
        goto out;
    err = SL_ENOMEM;
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL)
        goto out;
    err = SL_EINVAL;
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        sl_buf_appendf(why, "keys[%zu] is not a valid P-256 public key", index);
        goto out;
    }
    /* A point off the curve would let a crafted key leak nothing here (we only verify),
     * but it is certainly not the issuer's: refuse it. */
    if ((check = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL)) == NULL ||
        EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(*out);
        *out = NULL;
        sl_buf_appendf(why, "keys[%zu] is not a point on the P-256 curve", index);
        goto out;
    }
    err = SL_OK;
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return err;
}

/* Whether member name of jwk is absent or the string want. */
static bool absent_or(json_t *jwk, const char *name, const char *want)
{
    json_t *v = json_object_get(jwk, name);
    return v == NULL || (json_is_string(v) && strcmp(json_string_value(v), want) == 0);
}

static int load_jwks(const char *path, struct sl_auth_issuer *is, struct sl_buf *why)
{
    int err;
    struct sl_buf text;
    json_t *doc = NULL;
    EVP_PKEY *pk = NULL;
    sl_buf_init(&text);
    if ((err = read_key_file(path, &text, why)) != SL_OK)
        goto out;
    err = SL_EINVAL;
    json_error_t jerr;
    if ((doc = json_loadb(text.base, text.len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        sl_buf_appendf(why, "\"%s\" is not JSON (line %d: %s)", path, jerr.line, jerr.text);
        goto out;
    }
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        sl_buf_appendf(why, "\"%s\" is not a JSON Web Key Set: it needs a `keys` array", path);
        goto out;
    }
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        json_t *kty = json_object_get(jwk, "kty");
        json_t *kid = json_object_get(jwk, "kid");
        if (!json_is_object(jwk) || !json_is_string(kty)) {
            sl_buf_appendf(why, "\"%s\": keys[%zu] is not a JSON Web Key (no `kty`)", path, i);
            goto out;
        }
        if (kid && !json_is_string(kid)) {
            sl_buf_appendf(why, "\"%s\": keys[%zu]: `kid` is not a string", path, i);
            goto out;
        }
        /* Encryption keys and keys for algorithms we do not check are not ours to use. */
        if (!absent_or(jwk, "use", "sig"))
            continue;
        const char *t = json_string_value(kty);
        enum sl_jwt_alg alg = SL_JWT_RS256;
        struct sl_buf reason;
        sl_buf_init(&reason);
        if (strcmp(t, "RSA") == 0 && absent_or(jwk, "alg", "RS256")) {
            err = jwk_rsa(jwk, &pk, &reason, i);
        } else if (strcmp(t, "EC") == 0 && absent_or(jwk, "crv", "P-256") &&
                   json_object_get(jwk, "crv") && absent_or(jwk, "alg", "ES256")) {
            err = jwk_ec(jwk, &pk, &reason, i);
        } else {
            continue;
        }
        if (err == SL_OK && !usable_pkey(pk, &alg, &reason))
            err = SL_EUNSUPP;
        if (err == SL_EUNSUPP) {
            /* Too short an RSA key: skipped like any other unusable key. */
            sl_buf_dispose(&reason);
            EVP_PKEY_free(pk);
            pk = NULL;
            continue;
        }
        if (err != SL_OK) {
            sl_buf_appendf(why, "\"%s\": %.*s", path, (int)reason.len,
                           reason.base ? reason.base : "");
            sl_buf_dispose(&reason);
            goto out;
        }
        sl_buf_dispose(&reason);
        if ((err = add_key(is, kid ? json_string_value(kid) : NULL, alg, pk)) != SL_OK)
            goto out;
        pk = NULL;
    }
    err = SL_OK;
    if (is->n_keys == 0) {
        sl_buf_appendf(why,
                       "\"%s\" has no usable signing key (RSA of at least %d bits, or EC "
                       "P-256; `use` absent or \"sig\"; `alg` absent, RS256 or ES256)",
                       path, MIN_RSA_BITS);
        err = SL_EINVAL;
    }
out:
    EVP_PKEY_free(pk);
    json_decref(doc);
    sl_buf_dispose(&text);
    ERR_clear_error();
    return err;
}

int sl_auth_issuer_load(const struct sl_config_jwt_issuer *j, struct sl_auth_issuer *out,
                        struct sl_buf *why)
{
    int err = SL_OK;
    memset(out, 0, sizeof(*out));
    out->cfg = j;
    if (j->jwks_file)
        err = load_jwks(j->jwks_file, out, why);
    else if (j->public_key_file)
        err = load_pem(j->public_key_file, out, why);
    else if (j->secret == NULL) {
        sl_buf_appendf(why, "no `jwks_file`, `public_key_file` or `secret`");
        err = SL_EINVAL;
    }
    if (err != SL_OK)
        sl_auth_issuer_dispose(out);
    return err;
}

void sl_auth_issuer_dispose(struct sl_auth_issuer *is)
{
    for (size_t i = 0; i < is->n_keys; i++) {
        free(is->keys[i].kid);
        EVP_PKEY_free(is->keys[i].pkey);
    }
    free(is->keys);
    is->keys = NULL;
    is->n_keys = 0;
}
