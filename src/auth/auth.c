/*
 * Who a request comes from: an API key (hashed, compared in constant time by
 * sl_config_find_client) or a JWT from a configured issuer.
 *
 * A token is checked in this order, so that nothing about the claims is told
 * to a caller who cannot sign: its shape and `alg` (jwt.c), its `iss` (which
 * picks the issuer: the only claim read before the signature), the issuer's
 * algorithms and key type (an HS256 token is never checked against a public
 * key: the RS256/HS256 confusion attack), the key by `kid`, the signature,
 * then `exp`, `nbf`, `aud` and the claim naming the client.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>

#include "auth/internal.h"

/* One JWT identity: (issuer, id) names client. Borrows id and client from the config. */
struct sl_auth_id {
    size_t issuer;
    const char *id;
    const struct sl_config_client *client;
};

struct sl_auth {
    const struct sl_config *cfg;    /* borrowed; outlives the auth */
    struct sl_auth_issuer *issuers; /* owned; one per cfg->jwt_issuers entry, same order */
    size_t n_issuers;
    struct sl_auth_id *ids; /* owned; n_ids, sorted by issuer then id, for bsearch */
    size_t n_ids;
};

static int id_cmp(const void *pa, const void *pb)
{
    const struct sl_auth_id *a = pa, *b = pb;
    if (a->issuer != b->issuer)
        return a->issuer < b->issuer ? -1 : 1;
    return strcmp(a->id, b->id);
}

int sl_auth_new(const struct sl_config *cfg, struct sl_auth **out, struct sl_buf *why)
{
    int err = SL_ENOMEM;
    struct sl_auth *a = calloc(1, sizeof(*a));
    *out = NULL;
    if (a == NULL)
        return SL_ENOMEM;
    a->cfg = cfg;
    if (cfg->n_jwt_issuers &&
        (a->issuers = calloc(cfg->n_jwt_issuers, sizeof(*a->issuers))) == NULL)
        goto fail;
    for (; a->n_issuers < cfg->n_jwt_issuers; a->n_issuers++) {
        const struct sl_config_jwt_issuer *j = &cfg->jwt_issuers[a->n_issuers];
        struct sl_buf reason;
        sl_buf_init(&reason);
        err = sl_auth_issuer_load(j, &a->issuers[a->n_issuers], &reason);
        if (err != SL_OK) {
            sl_buf_appendf(why, "jwt_issuers \"%s\": %.*s", j->name, (int)reason.len,
                           reason.base ? reason.base : "");
            sl_buf_dispose(&reason);
            goto fail;
        }
        sl_buf_dispose(&reason);
    }
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_clients; i++)
        if (cfg->clients[i].jwt_issuer)
            n += cfg->clients[i].n_jwt_ids;
    err = SL_ENOMEM;
    if (n && (a->ids = calloc(n, sizeof(*a->ids))) == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct sl_config_client *cl = &cfg->clients[i];
        for (size_t k = 0; cl->jwt_issuer && k < cl->n_jwt_ids; k++)
            a->ids[a->n_ids++] = (struct sl_auth_id){cl->jwt_issuer_index, cl->jwt_ids[k], cl};
    }
    if (a->n_ids)
        qsort(a->ids, a->n_ids, sizeof(*a->ids), id_cmp);
    *out = a;
    return SL_OK;
fail:
    sl_auth_free(a);
    return err;
}

void sl_auth_free(struct sl_auth *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n_issuers; i++)
        sl_auth_issuer_dispose(&a->issuers[i]);
    free(a->issuers);
    free(a->ids);
    free(a);
}

int sl_auth_check_issuer(const struct sl_config_jwt_issuer *j, struct sl_buf *why)
{
    struct sl_auth_issuer is;
    int err = sl_auth_issuer_load(j, &is, why);
    if (err == SL_OK)
        sl_auth_issuer_dispose(&is);
    return err;
}

/* ---- signatures ---- */

/* JOSE's ES256 signature is r||s, 32 bytes each (RFC 7518 §3.4); OpenSSL verifies DER. */
static int es256_to_der(const unsigned char *sig, size_t sig_len, unsigned char *der, size_t cap,
                        size_t *der_len)
{
    int err = SL_EINVAL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    if (sig_len != 64)
        return SL_EINVAL;
    if ((es = ECDSA_SIG_new()) == NULL || (r = BN_bin2bn(sig, 32, NULL)) == NULL ||
        (s = BN_bin2bn(sig + 32, 32, NULL)) == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        err = SL_ENOMEM;
        goto out;
    }
    r = s = NULL; /* owned by es now */
    int len = i2d_ECDSA_SIG(es, NULL);
    if (len <= 0 || (size_t)len > cap)
        goto out;
    unsigned char *p = der;
    *der_len = (size_t)i2d_ECDSA_SIG(es, &p);
    err = SL_OK;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return err;
}

/* Whether key k signed j (RS256 or ES256). */
static bool verify_pkey(const struct sl_auth_key *k, const struct sl_jwt *j)
{
    bool ok = false;
    unsigned char der[80];
    const unsigned char *sig = j->sig;
    size_t sig_len = j->sig_len;
    EVP_MD_CTX *md = NULL;
    if (j->alg == SL_JWT_ES256) {
        if (es256_to_der(j->sig, j->sig_len, der, sizeof(der), &sig_len) != SL_OK)
            goto out;
        sig = der;
    }
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) != 1)
        goto out;
    ok = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)j->signed_part.base,
                          j->signed_part.len) == 1;
out:
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

static bool verify_hs256(const char *secret, const struct sl_jwt *j)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)j->signed_part.base,
             j->signed_part.len, mac, &mac_len) == NULL)
        return false;
    bool ok = j->sig_len == mac_len && CRYPTO_memcmp(mac, j->sig, mac_len) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/* ---- claims ---- */

/* t (seconds since 1970) as RFC 3339 UTC; the bare number when out of calendar range. */
static void append_time(struct sl_buf *b, double t)
{
    if (t >= 0 && t < 253402300800.0) {
        char s[40];
        sl_clock_format((int64_t)t * 1000, false, s, sizeof(s));
        sl_buf_appendf(b, "%s", s);
        return;
    }
    sl_buf_appendf(b, "%.0f", t);
}

static bool audience_ok(const struct sl_config_jwt_issuer *c, json_t *aud)
{
    for (size_t i = 0; i < c->n_audiences; i++) {
        if (json_is_string(aud) && strcmp(json_string_value(aud), c->audiences[i]) == 0)
            return true;
        size_t k;
        json_t *v;
        json_array_foreach(aud, k, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), c->audiences[i]) == 0)
                return true;
        }
    }
    return false;
}

/* How far a token got with an issuer: with several issuers of the same `iss`, the one that
 * got furthest explains the refusal best. */
enum stage { STAGE_ALG = 1, STAGE_SIGNATURE, STAGE_CLAIMS, STAGE_CLIENT };

static int check_signature(const struct sl_auth_issuer *is, const struct sl_jwt *j,
                           enum stage *stage, struct sl_buf *why)
{
    const struct sl_config_jwt_issuer *c = is->cfg;
    const char *alg = sl_jwt_alg_name(j->alg);
    *stage = STAGE_ALG;
    bool listed = c->n_algorithms == 0;
    for (size_t i = 0; i < c->n_algorithms; i++)
        listed = listed || strcmp(c->algorithms[i], alg) == 0;
    if (!listed) {
        sl_buf_appendf(why, "the token's algorithm %s is not accepted by its issuer", alg);
        return SL_EPERM;
    }
    if (j->alg == SL_JWT_HS256 || c->secret) {
        if ((j->alg == SL_JWT_HS256) != (c->secret != NULL)) {
            sl_buf_appendf(why, "the token's algorithm %s does not match its issuer's key (%s)",
                           alg, c->secret ? "a shared secret, for HS256" : "a public key");
            return SL_EPERM;
        }
        *stage = STAGE_SIGNATURE;
        if (!verify_hs256(c->secret, j)) {
            sl_buf_appendf(why, "the token's signature is not valid");
            return SL_EPERM;
        }
        return SL_OK;
    }
    /* A PEM key has no kid: it checks every token of its issuer. With a key set, the kid
     * picks the key; without one, every key of the token's type is tried. Finding no key is
     * as far as a wrong signature gets: with several issuers of one `iss`, the first one
     * configured explains either. */
    *stage = STAGE_SIGNATURE;
    bool by_kid = j->kid && c->jwks_file, named = false, typed = false;
    for (size_t i = 0; i < is->n_keys; i++) {
        const struct sl_auth_key *k = &is->keys[i];
        if (by_kid && (k->kid == NULL || strcmp(k->kid, j->kid) != 0))
            continue;
        named = true;
        if (k->alg != j->alg)
            continue;
        typed = true;
        if (verify_pkey(k, j))
            return SL_OK;
    }
    if (by_kid && !named) {
        sl_buf_appendf(why, "the token's key id (kid) names none of its issuer's keys");
        return SL_EPERM;
    }
    if (!typed) {
        sl_buf_appendf(why, "the token's algorithm %s does not match its issuer's %s", alg,
                       by_kid ? "key of that kid" : "keys");
        return SL_EPERM;
    }
    sl_buf_appendf(why, "the token's signature is not valid");
    return SL_EPERM;
}

static int check_claims(const struct sl_auth_issuer *is, const struct sl_jwt *j, uint64_t now,
                        enum stage *stage, struct sl_buf *why)
{
    const struct sl_config_jwt_issuer *c = is->cfg;
    double leeway = (double)c->leeway_ms / 1000.0, t = (double)now;
    *stage = STAGE_CLAIMS;
    json_t *exp = json_object_get(j->payload, "exp");
    if (!json_is_number(exp)) {
        sl_buf_appendf(why, "the token has no expiry time (`exp` as a number): tokens that never "
                            "expire are not accepted");
        return SL_EPERM;
    }
    if (t > json_number_value(exp) + leeway) {
        sl_buf_appendf(why, "the token expired at ");
        append_time(why, json_number_value(exp));
        return SL_EPERM;
    }
    json_t *nbf = json_object_get(j->payload, "nbf");
    if (nbf && !json_is_number(nbf)) {
        sl_buf_appendf(why, "the token's not-before time (nbf) is not a number");
        return SL_EPERM;
    }
    if (nbf && t < json_number_value(nbf) - leeway) {
        sl_buf_appendf(why, "the token is not valid before ");
        append_time(why, json_number_value(nbf));
        return SL_EPERM;
    }
    json_t *aud = json_object_get(j->payload, "aud");
    if (!json_is_string(aud) && !json_is_array(aud)) {
        sl_buf_appendf(why, "the token has no audience (aud)");
        return SL_EPERM;
    }
    if (!audience_ok(c, aud)) {
        sl_buf_appendf(why, "the token's audience (aud) is not accepted");
        return SL_EPERM;
    }
    return SL_OK;
}

static int check_with_issuer(const struct sl_auth *a, size_t issuer, const struct sl_jwt *j,
                             uint64_t now, enum stage *stage,
                             const struct sl_config_client **client, struct sl_buf *why)
{
    const struct sl_auth_issuer *is = &a->issuers[issuer];
    int err;
    if ((err = check_signature(is, j, stage, why)) != SL_OK ||
        (err = check_claims(is, j, now, stage, why)) != SL_OK)
        return err;
    *stage = STAGE_CLIENT;
    const char *claim = is->cfg->claim;
    json_t *v = json_object_get(j->payload, claim);
    if (!json_is_string(v)) {
        sl_buf_appendf(why, "the token has no `%s` claim (a string) naming its client", claim);
        return SL_EPERM;
    }
    struct sl_auth_id key = {issuer, json_string_value(v), NULL};
    const struct sl_auth_id *found =
        a->n_ids ? bsearch(&key, a->ids, a->n_ids, sizeof(*a->ids), id_cmp) : NULL;
    if (found == NULL) {
        sl_buf_appendf(why, "the token's %s names no client of this gateway", claim);
        return SL_EPERM;
    }
    *client = found->client;
    return SL_OK;
}

static int identify_token(const struct sl_auth *a, struct sl_str token, uint64_t now,
                          const struct sl_config_client **client, struct sl_buf *why)
{
    struct sl_jwt j;
    struct sl_buf best, attempt;
    enum stage best_stage = 0;
    bool known_issuer = false;
    int err = sl_jwt_parse(token, &j, why);
    if (err != SL_OK)
        return err == SL_ENOMEM ? SL_ENOMEM : SL_EPERM;
    sl_buf_init(&best);
    sl_buf_init(&attempt);
    err = SL_EPERM;
    json_t *iss = json_object_get(j.payload, "iss");
    if (!json_is_string(iss)) {
        sl_buf_appendf(why, "the token has no issuer (iss)");
        goto out;
    }
    for (size_t i = 0; i < a->n_issuers; i++) {
        if (strcmp(a->issuers[i].cfg->issuer, json_string_value(iss)) != 0)
            continue;
        known_issuer = true;
        enum stage stage = 0;
        attempt.len = 0;
        if ((err = check_with_issuer(a, i, &j, now, &stage, client, &attempt)) == SL_OK)
            goto out;
        if (stage > best_stage) {
            struct sl_buf tmp = best;
            best = attempt;
            attempt = tmp;
            best_stage = stage;
        }
    }
    err = SL_EPERM;
    if (!known_issuer)
        sl_buf_appendf(why, "the token's issuer (iss) is not accepted by this gateway");
    else
        sl_buf_append(why, best.base ? best.base : "", best.len);
out:
    sl_buf_dispose(&best);
    sl_buf_dispose(&attempt);
    sl_jwt_dispose(&j);
    return err;
}

int sl_auth_identify(const struct sl_auth *a, const struct sl_http_request_head *head,
                     uint64_t now_unix_s, const struct sl_config_client **client,
                     struct sl_buf *why)
{
    struct sl_str key = SL_STR_NULL, bearer = SL_STR_NULL;
    *client = NULL;
    const struct sl_http_header *h = sl_http_find_header(head, SL_STR("api-key"));
    if (h && h->value.len) {
        key = h->value;
    } else if ((h = sl_http_find_header(head, SL_STR("authorization"))) != NULL &&
               h->value.len > 7 &&
               sl_str_eq_ci((struct sl_str){h->value.base, 7}, SL_STR("Bearer "))) {
        bearer = (struct sl_str){h->value.base + 7, h->value.len - 7};
        while (bearer.len && (bearer.base[0] == ' ' || bearer.base[0] == '\t')) {
            bearer.base++;
            bearer.len--;
        }
        key = bearer;
    }
    if (key.len == 0) {
        sl_buf_appendf(why, "no key or token was sent: send `api-key: KEY` or "
                            "`Authorization: Bearer KEY`");
        return SL_EPERM;
    }
    /* The api-key header carries keys only, as on Azure; tokens come as Bearer. */
    if (bearer.len && a->n_issuers && sl_jwt_looks_like(bearer))
        return identify_token(a, bearer, now_unix_s, client, why);
    if ((*client = sl_config_find_client(a->cfg, key)) == NULL) {
        sl_buf_appendf(why, "the key is not valid for this gateway");
        return SL_EPERM;
    }
    return SL_OK;
}
