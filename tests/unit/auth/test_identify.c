/*
 * sl_auth_identify end to end: keys generated here, written as a JWKS and PEM
 * files, tokens signed here; every accepted and every refused case, with the
 * reason the 401 would carry (and never the token in it).
 */
#include <time.h>

#include "../load_test.h"
#include "auth_test.h"
#include "config/config.h"

#define NOW 1900000000ull /* 2030-03-17: fixed so that messages are exact */
#define HS_SECRET "0123456789abcdef0123456789abcdef"
#define ISS_RSA "https://idp.example/rsa"
#define ISS_EC "https://idp.example/ec"
#define ISS_HS "https://idp.example/hs"

static char dir[] = "/tmp/sl-auth-test-XXXXXX";
static char path_jwks[128], path_ec_pem[128], path_priv_pem[128], path_rsa_pem[128];
static EVP_PKEY *rsa1, *rsa2, *rsa_other, *ec1, *ec_pem;
static struct sl_config *cfg;
static struct sl_auth *auth;

/* Payload text: iss, aud (a JSON value), exp and nbf relative to NOW, the id claim. */
static char *claims(const char *iss, const char *aud_json, long exp_rel, const char *extra)
{
    struct sl_buf b;
    sl_buf_init(&b);
    sl_buf_appendf(&b, "{\"iss\":\"%s\",\"aud\":%s,\"exp\":%llu%s%s}", iss, aud_json,
                   (unsigned long long)((long long)NOW + exp_rel), extra && *extra ? "," : "",
                   extra ? extra : "");
    sl_buf_append(&b, "", 1);
    return b.base;
}

static int group_setup(void **state)
{
    assert_non_null(mkdtemp(dir));
    snprintf(path_jwks, sizeof(path_jwks), "%s/jwks.json", dir);
    snprintf(path_ec_pem, sizeof(path_ec_pem), "%s/ec.pem", dir);
    snprintf(path_priv_pem, sizeof(path_priv_pem), "%s/priv.pem", dir);
    snprintf(path_rsa_pem, sizeof(path_rsa_pem), "%s/rsa.pem", dir);
    rsa1 = gen_rsa();
    rsa2 = gen_rsa();
    rsa_other = gen_rsa();
    ec1 = gen_ec();
    ec_pem = gen_ec();

    /* Two RSA keys at once (rotation), an EC key, and keys that must be skipped. */
    struct sl_buf j;
    sl_buf_init(&j);
    sl_buf_appendf(&j, "{\"keys\":[");
    jwk_append(&j, rsa1, "k1", "\"use\":\"sig\",\"alg\":\"RS256\"");
    sl_buf_appendf(&j, ",");
    jwk_append(&j, rsa2, "k2", "");
    sl_buf_appendf(&j, ",");
    jwk_append(&j, ec1, "e1", "\"alg\":\"ES256\"");
    sl_buf_appendf(&j, ",");
    jwk_append(&j, rsa_other, "enc", "\"use\":\"enc\"");
    sl_buf_appendf(&j, ",{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"oct\"}");
    sl_buf_appendf(&j, ",{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}");
    write_file(path_jwks, j.base, j.len);
    sl_buf_dispose(&j);
    write_pem_pub(path_ec_pem, ec_pem);
    write_pem_priv(path_priv_pem, rsa1);
    write_pem_pub(path_rsa_pem, rsa_other);

    char hash[SL_CONFIG_HASHED_KEY_SIZE];
    sl_config_hash_key(SL_STR("alpha-key"), hash);
    struct sl_buf y;
    sl_buf_init(&y);
    sl_buf_appendf(&y,
                   "jwt_issuers:\n"
                   "  - {name: rsa, issuer: '" ISS_RSA "', audiences: [api://sluice], "
                   "jwks_file: '%s'}\n"
                   "  - {name: ec, issuer: '" ISS_EC "', audiences: [api://sluice, other], "
                   "public_key_file: '%s', claim: oid}\n"
                   "  - {name: hs, issuer: '" ISS_HS "', audiences: [api://sluice], "
                   "secret: '" HS_SECRET "', claim: appid, leeway: 0s}\n"
                   /* Same iss as rsa, another audience and key: tried after rsa. */
                   "  - {name: rsa2, issuer: '" ISS_RSA "', audiences: [second], "
                   "public_key_file: '%s', algorithms: [RS256]}\n"
                   "clients:\n"
                   "  - {name: alpha, keys: ['%s'], jwt_issuer: rsa, jwt_ids: [app-alpha]}\n"
                   "  - {name: beta, jwt_issuer: ec, jwt_ids: [app-beta]}\n"
                   "  - {name: gamma, jwt_issuer: hs, jwt_ids: [app-gamma, app-gamma-2]}\n"
                   "  - {name: delta, jwt_issuer: rsa2, jwt_ids: [app-alpha]}\n",
                   path_jwks, path_ec_pem, path_rsa_pem, hash);
    cfg = unit_load_config(y.base, y.len);
    sl_buf_dispose(&y);
    struct sl_buf why;
    sl_buf_init(&why);
    assert_int_equal(sl_auth_new(cfg, &auth, &why), SL_OK);
    sl_buf_dispose(&why);
    return 0;
}

static int group_teardown(void **state)
{
    sl_auth_free(auth);
    sl_config_unref(cfg);
    EVP_PKEY_free(rsa1);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec1);
    EVP_PKEY_free(ec_pem);
    unlink(path_jwks);
    unlink(path_ec_pem);
    unlink(path_priv_pem);
    unlink(path_rsa_pem);
    rmdir(dir);
    return 0;
}

/* Identify with one header; returns the client's name or NULL, with the reason in why. */
static const char *identify_with(const char *name, const char *value, struct sl_buf *why)
{
    struct one_header_head h;
    const struct sl_config_client *cl = (void *)1;
    head_with(&h, name, value);
    why->len = 0;
    int err = sl_auth_identify(auth, &h.head, NOW, &cl, why);
    sl_buf_append(why, "", 1);
    why->len--;
    if (err == SL_OK) {
        assert_non_null(cl);
        return cl->name;
    }
    assert_int_equal(err, SL_EPERM);
    assert_null(cl);
    assert_true(why->len > 0);
    return NULL;
}

/* The token must identify client `want`. */
static void expect_client(const char *token, const char *want)
{
    struct sl_buf why, v;
    sl_buf_init(&why);
    sl_buf_init(&v);
    sl_buf_appendf(&v, "Bearer %s", token);
    sl_buf_append(&v, "", 1);
    const char *got = identify_with("Authorization", v.base, &why);
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("want client %s, got %s (%s)", want, got ? got : "none", why.base);
    sl_buf_dispose(&why);
    sl_buf_dispose(&v);
}

/* The token must be refused saying msg (a substring), without repeating the token. */
static void expect_refused(const char *token, const char *msg)
{
    struct sl_buf why, v;
    sl_buf_init(&why);
    sl_buf_init(&v);
    sl_buf_appendf(&v, "Bearer %s", token);
    sl_buf_append(&v, "", 1);
    const char *got = identify_with("Authorization", v.base, &why);
    if (got != NULL)
        fail_msg("token accepted as %s; want refusal: %s", got, msg);
    if (strstr(why.base, msg) == NULL)
        fail_msg("want \"%s\" in \"%s\"", msg, why.base);
    const char *dot = strchr(token, '.');
    if (dot && dot - token > 8 && strstr(why.base, token) != NULL)
        fail_msg("the reason repeats the token");
    sl_buf_dispose(&why);
    sl_buf_dispose(&v);
}

static void test_rs256(void **state)
{
    struct signer s1 = {"RS256", rsa1, NULL, 0}, s2 = {"RS256", rsa2, NULL, 0};
    char *p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\"");
    char *t = sign_token(&s1, "k1", p);
    expect_client(t, "alpha");
    free(t);
    /* Key rotation: the second key of the set is as good, by kid or without one. */
    t = sign_token(&s2, "k2", p);
    expect_client(t, "alpha");
    free(t);
    t = sign_token(&s2, NULL, p);
    expect_client(t, "alpha");
    free(t);
    t = sign_token(&s1, NULL, p);
    expect_client(t, "alpha");
    free(t);
    /* Signed by k2 but naming k1: the named key is the one that must check it. */
    t = sign_token(&s2, "k1", p);
    expect_refused(t, "the token's signature is not valid");
    free(t);
    free(p);
}

static void test_es256(void **state)
{
    struct signer pem = {"ES256", ec_pem, NULL, 0}, jwk = {"ES256", ec1, NULL, 0};
    char *p = claims(ISS_EC, "[\"x\",\"other\"]", 600, "\"oid\":\"app-beta\"");
    char *t = sign_token(&pem, "anything", p);
    expect_client(t, "beta"); /* a PEM key has no kid: any kid is ignored */
    free(t);
    t = sign_token(&jwk, NULL, p);
    expect_refused(t, "the token's signature is not valid");
    free(t);
    free(p);
    p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\"");
    t = sign_token(&jwk, "e1", p);
    expect_client(t, "alpha");
    free(t);
    /* ES256 signatures are 64 bytes r||s: a DER one is refused. */
    t = sign_token(&(struct signer){"ES256", ec1, NULL, 0}, "e1", p);
    char *last = strrchr(t, '.');
    struct sl_buf bad;
    sl_buf_init(&bad);
    sl_buf_append(&bad, t, (size_t)(last - t) + 1);
    sl_buf_appendf(&bad, "MEUCIQ");
    sl_buf_append(&bad, "", 1);
    expect_refused(bad.base, "the token's signature is not valid");
    sl_buf_dispose(&bad);
    free(t);
    free(p);
}

static void test_hs256(void **state)
{
    struct signer s = {"HS256", NULL, HS_SECRET, sizeof(HS_SECRET) - 1};
    char *p = claims(ISS_HS, "\"api://sluice\"", 600, "\"appid\":\"app-gamma-2\"");
    char *t = sign_token(&s, NULL, p);
    expect_client(t, "gamma");
    free(t);
    struct signer wrong = {"HS256", NULL, HS_SECRET "x", sizeof(HS_SECRET)};
    t = sign_token(&wrong, NULL, p);
    expect_refused(t, "the token's signature is not valid");
    free(t);
    /* An RS256 token for an HS256 issuer. */
    t = sign_token(&(struct signer){"RS256", rsa1, NULL, 0}, NULL, p);
    expect_refused(t, "the token's algorithm RS256 does not match its issuer's key (a shared "
                      "secret, for HS256)");
    free(t);
    free(p);
}

/* The classic confusion: an HS256 token whose HMAC key is the issuer's public key (PEM or
 * DER, as a careless library would use it). Never accepted against public keys. */
static void test_alg_confusion(void **state)
{
    unsigned char *der = NULL;
    int der_len = i2d_PUBKEY(rsa1, &der);
    assert_true(der_len > 0);
    FILE *f = fopen(path_rsa_pem, "rb");
    char pem[4096];
    size_t pem_len = fread(pem, 1, sizeof(pem), f);
    fclose(f);
    char *p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\"");
    struct signer s1 = {"HS256", NULL, (const char *)der, (size_t)der_len};
    struct signer s2 = {"HS256", NULL, pem, pem_len};
    char *t = sign_token(&s1, "k1", p);
    expect_refused(t, "the token's algorithm HS256 does not match its issuer's key (a public "
                      "key)");
    free(t);
    t = sign_token(&s2, NULL, p);
    expect_refused(t, "does not match");
    free(t);
    /* An RS256 token naming the EC key. */
    t = sign_token(&(struct signer){"RS256", rsa1, NULL, 0}, "e1", p);
    expect_refused(t, "the token's algorithm RS256 does not match its issuer's key of that kid");
    free(t);
    free(p);
    OPENSSL_free(der);
}

static void test_alg_none(void **state)
{
    char *p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\"");
    const char *algs[] = {"none", "None", "NONE"};
    for (size_t i = 0; i < 3; i++) {
        struct signer s = {algs[i], NULL, NULL, 0};
        char *t = sign_token(&s, NULL, p);
        expect_refused(t, "unsigned tokens are never accepted");
        free(t);
    }
    struct signer rs512 = {"RS512", rsa1, NULL, 0};
    char *t = sign_token(&rs512, "k1", p);
    expect_refused(t, "only RS256, ES256 and HS256 are");
    free(t);
    free(p);
}

static void test_times(void **state)
{
    struct signer s = {"RS256", rsa1, NULL, 0};
    char *p = claims(ISS_RSA, "\"api://sluice\"", -3600, "\"azp\":\"app-alpha\"");
    char *t = sign_token(&s, "k1", p);
    expect_refused(t, "the token expired at 2030-03-17T16:46:40Z");
    free(t);
    free(p);
    /* Within the default leeway of 60 s. */
    p = claims(ISS_RSA, "\"api://sluice\"", -59, "\"azp\":\"app-alpha\"");
    t = sign_token(&s, "k1", p);
    expect_client(t, "alpha");
    free(t);
    free(p);
    p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\",\"nbf\":1900000300");
    t = sign_token(&s, "k1", p);
    expect_refused(t, "the token is not valid before 2030-03-17T17:51:40Z");
    free(t);
    free(p);
    p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\",\"nbf\":1900000030.5");
    t = sign_token(&s, "k1", p);
    expect_client(t, "alpha");
    free(t);
    free(p);
    t = sign_token(&s, "k1",
                   "{\"iss\":\"" ISS_RSA "\",\"aud\":\"api://sluice\",\"azp\":"
                   "\"app-alpha\"}");
    expect_refused(t, "the token has no expiry time");
    free(t);
    t = sign_token(&s, "k1",
                   "{\"iss\":\"" ISS_RSA "\",\"aud\":\"api://sluice\",\"azp\":"
                   "\"app-alpha\",\"exp\":\"1900000600\"}");
    expect_refused(t, "the token has no expiry time");
    free(t);
    /* No leeway on the HS256 issuer: one second late is late. */
    struct signer hs = {"HS256", NULL, HS_SECRET, sizeof(HS_SECRET) - 1};
    p = claims(ISS_HS, "\"api://sluice\"", -1, "\"appid\":\"app-gamma\"");
    t = sign_token(&hs, NULL, p);
    expect_refused(t, "expired");
    free(t);
    free(p);
    p = claims(ISS_HS, "\"api://sluice\"", 0, "\"appid\":\"app-gamma\"");
    t = sign_token(&hs, NULL, p);
    expect_client(t, "gamma");
    free(t);
    free(p);
}

static void test_audience_issuer_claim(void **state)
{
    struct signer s = {"RS256", rsa1, NULL, 0};
    char *p = claims(ISS_RSA, "\"api://other\"", 600, "\"azp\":\"app-alpha\"");
    char *t = sign_token(&s, "k1", p);
    expect_refused(t, "the token's audience (aud) is not accepted");
    free(t);
    free(p);
    p = claims(ISS_RSA, "[\"a\",\"api://sluice\"]", 600, "\"azp\":\"app-alpha\"");
    t = sign_token(&s, "k1", p);
    expect_client(t, "alpha");
    free(t);
    free(p);
    t = sign_token(&s, "k1", "{\"iss\":\"" ISS_RSA "\",\"exp\":1900000600,\"azp\":\"app-alpha\"}");
    expect_refused(t, "the token has no audience (aud)");
    free(t);
    p = claims("https://evil.example", "\"api://sluice\"", 600, "\"azp\":\"app-alpha\"");
    t = sign_token(&s, "k1", p);
    expect_refused(t, "the token's issuer (iss) is not accepted by this gateway");
    free(t);
    free(p);
    t = sign_token(&s, "k1", "{\"aud\":\"api://sluice\",\"exp\":1900000600}");
    expect_refused(t, "the token has no issuer (iss)");
    free(t);
    p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-nobody\"");
    t = sign_token(&s, "k1", p);
    expect_refused(t, "the token's azp names no client of this gateway");
    free(t);
    free(p);
    p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"sub\":\"app-alpha\"");
    t = sign_token(&s, "k1", p);
    expect_refused(t, "the token has no `azp` claim");
    free(t);
    free(p);
    /* The same id under another issuer with the same iss: the audience decides. */
    struct signer other = {"RS256", rsa_other, NULL, 0};
    p = claims(ISS_RSA, "\"second\"", 600, "\"azp\":\"app-alpha\"");
    t = sign_token(&other, NULL, p);
    expect_client(t, "delta");
    free(t);
    /* Signed by rsa1 for the second audience: rsa accepts the key but not the audience,
     * rsa2 not the key; the furthest check (the audience) is reported. */
    t = sign_token(&s, "k1", p);
    expect_refused(t, "the token's audience (aud) is not accepted");
    free(t);
    free(p);
}

static void test_bad_signature_and_kid(void **state)
{
    struct signer s = {"RS256", rsa1, NULL, 0};
    char *p = claims(ISS_RSA, "\"api://sluice\"", 600, "\"azp\":\"app-alpha\"");
    char *t = sign_token(&s, "k1", p);
    char *sig = strrchr(t, '.') + 10;
    *sig = *sig == 'A' ? 'B' : 'A';
    expect_refused(t, "the token's signature is not valid");
    free(t);
    t = sign_token(&s, "k9", p);
    expect_refused(t, "the token's key id (kid) names none of its issuer's keys");
    free(t);
    /* Keys that the set holds but that were skipped: not usable. */
    t = sign_token(&s, "oct", p);
    expect_refused(t, "the token's key id (kid) names none of its issuer's keys");
    free(t);
    t = sign_token(&(struct signer){"RS256", rsa_other, NULL, 0}, "enc", p);
    /* rsa skipped that key (use: enc); rsa2 (same iss) has it as its PEM key, and it is the
     * furthest check that fails there: its audience. */
    expect_refused(t, "the token's audience (aud) is not accepted");
    free(t);
    /* A changed payload under the original signature. */
    t = sign_token(&s, "k1", p);
    char *q = claims(ISS_RSA, "\"api://sluice\"", 6000, "\"azp\":\"app-alpha\"");
    char *t2 = sign_token(&s, "k1", q);
    char *mix = malloc(strlen(t) + strlen(t2) + 1);
    size_t hp = (size_t)(strrchr(t2, '.') - t2);
    memcpy(mix, t2, hp);
    memcpy(mix + hp, strrchr(t, '.'), strlen(strrchr(t, '.')) + 1);
    expect_refused(mix, "the token's signature is not valid");
    free(mix);
    free(t2);
    free(q);
    free(t);
    free(p);
}

static void test_malformed(void **state)
{
    /* Two parts: not a JWT's shape, so a key. */
    expect_refused("eyJhbGciOiJIUzI1NiJ9.e30", "the key is not valid for this gateway");
    expect_refused("eyJ.e30.abc", "the token is malformed: its header is not base64url");
    expect_refused("eyJhbGciOiJIUzI1NiJ9..abc", "its payload is empty");
    expect_refused("eyJhbGciOiJIUzI1NiJ9.e30=.abc", "its payload is not base64url");
    expect_refused("eyJhbGciOiJIUzI1NiJ9.e3+.abc", "its payload is not base64url");
    /* "eyJ9" is '{"}': not JSON. */
    expect_refused("eyJ9.e30.abc", "its header is not a JSON object");
    /* {"alg":"HS256","alg":"none"}: duplicates are refused. */
    struct sl_buf b;
    sl_buf_init(&b);
    b64url_str(&b, "{\"alg\":\"HS256\",\"alg\":\"none\"}");
    sl_buf_appendf(&b, ".e30.abc");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "a name appears twice");
    b.len = 0;
    b64url_str(&b, "{\"alg\":\"HS256\"}");
    sl_buf_appendf(&b, ".");
    b64url_str(&b,
               "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    sl_buf_appendf(&b, ".abc");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "its payload nests deeper than 16 levels");
    b.len = 0;
    b64url_str(&b, "{\"alg\":\"HS256\"}");
    sl_buf_appendf(&b, ".");
    b64url_str(&b, "[1]");
    sl_buf_appendf(&b, ".abc");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "its payload is not a JSON object");
    b.len = 0;
    b64url_str(&b, "{\"typ\":\"JWT\"}");
    sl_buf_appendf(&b, ".e30.abc");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "no `alg`");
    b.len = 0;
    b64url_str(&b, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}");
    sl_buf_appendf(&b, ".e30.abc");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "critical extensions");
    b.len = 0;
    b64url_str(&b, "{\"alg\":\"HS256\",\"kid\":7}");
    sl_buf_appendf(&b, ".e30.abc");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "(kid) is not a string");
    b.len = 0;
    b64url_str(&b, "{\"alg\":\"HS256\"}");
    sl_buf_appendf(&b, ".e30.");
    sl_buf_append(&b, "", 1);
    expect_refused(b.base, "the token has no signature");
    sl_buf_dispose(&b);
}

static void test_huge(void **state)
{
    struct signer s = {"HS256", NULL, HS_SECRET, sizeof(HS_SECRET) - 1};
    struct sl_buf p;
    sl_buf_init(&p);
    sl_buf_appendf(&p, "{\"iss\":\"" ISS_HS "\",\"aud\":\"api://sluice\",\"exp\":1900000600,"
                       "\"appid\":\"app-gamma\",\"pad\":\"");
    for (int i = 0; i < 13000; i++)
        sl_buf_append(&p, "x", 1);
    sl_buf_appendf(&p, "\"}");
    sl_buf_append(&p, "", 1);
    char *t = sign_token(&s, NULL, p.base);
    expect_refused(t, "the token is too large (more than 16384 bytes)");
    free(t);
    /* A big but bounded token is fine. */
    p.len = 0;
    sl_buf_appendf(&p, "{\"iss\":\"" ISS_HS "\",\"aud\":\"api://sluice\",\"exp\":1900000600,"
                       "\"appid\":\"app-gamma\",\"pad\":\"");
    for (int i = 0; i < 9000; i++)
        sl_buf_append(&p, "x", 1);
    sl_buf_appendf(&p, "\"}");
    sl_buf_append(&p, "", 1);
    t = sign_token(&s, NULL, p.base);
    expect_client(t, "gamma");
    free(t);
    sl_buf_dispose(&p);
}

static void test_keys(void **state)
{
    struct sl_buf why;
    sl_buf_init(&why);
    assert_string_equal(identify_with("api-key", "alpha-key", &why), "alpha");
    assert_string_equal(identify_with("Authorization", "Bearer alpha-key", &why), "alpha");
    assert_string_equal(identify_with("authorization", "bearer   alpha-key", &why), "alpha");
    assert_null(identify_with("api-key", "beta-key", &why));
    assert_string_equal(why.base, "the key is not valid for this gateway");
    assert_null(identify_with("Authorization", "Bearer not.a.jwt", &why));
    assert_string_equal(why.base, "the key is not valid for this gateway");
    assert_null(identify_with(NULL, NULL, &why));
    assert_string_equal(why.base, "no key or token was sent: send `api-key: KEY` or "
                                  "`Authorization: Bearer KEY`");
    assert_null(identify_with("Authorization", "Basic YTpi", &why));
    assert_non_null(strstr(why.base, "no key or token was sent"));
    assert_null(identify_with("api-key", "", &why));
    assert_non_null(strstr(why.base, "no key or token was sent"));
    /* A token in api-key is taken as a key, as Azure does. */
    struct signer s = {"HS256", NULL, HS_SECRET, sizeof(HS_SECRET) - 1};
    char *p = claims(ISS_HS, "\"api://sluice\"", 600, "\"appid\":\"app-gamma\"");
    char *t = sign_token(&s, NULL, p);
    assert_null(identify_with("api-key", t, &why));
    assert_string_equal(why.base, "the key is not valid for this gateway");
    free(t);
    free(p);
    sl_buf_dispose(&why);
}

static void expect_key_error(const char *yaml_issuer_field, const char *file, const char *text,
                             const char *msg)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (text)
        write_file(path, text, strlen(text));
    struct sl_config_jwt_issuer j = {.name = "x", .issuer = "i", .claim = "azp"};
    if (strcmp(yaml_issuer_field, "jwks_file") == 0)
        j.jwks_file = path;
    else
        j.public_key_file = path;
    struct sl_buf why;
    sl_buf_init(&why);
    assert_int_equal(sl_auth_check_issuer(&j, &why), SL_EINVAL);
    sl_buf_append(&why, "", 1);
    if (strstr(why.base, msg) == NULL)
        fail_msg("want \"%s\" in \"%s\"", msg, why.base);
    if (strstr(why.base, file) == NULL)
        fail_msg("the file is not named in \"%s\"", why.base);
    sl_buf_dispose(&why);
    if (text)
        unlink(path);
}

static void test_check_issuer(void **state)
{
    expect_key_error("jwks_file", "missing.json", NULL, "cannot read");
    expect_key_error("jwks_file", "bad.json", "{\"keys\": [", "is not JSON (line 1");
    expect_key_error("jwks_file", "nokeys.json", "{\"k\": []}", "needs a `keys` array");
    expect_key_error("jwks_file", "enc.json",
                     "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
                     "{\"kty\":\"oct\",\"k\":\"AA\"}]}",
                     "has no usable signing key");
    expect_key_error("jwks_file", "short.json",
                     "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
                     "has no usable signing key");
    expect_key_error("jwks_file", "badn.json",
                     "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"A=\",\"e\":\"AQAB\"}]}",
                     "keys[0]: `n` is not unpadded base64url");
    expect_key_error("jwks_file", "offcurve.json",
                     "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
                     "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\","
                     "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
                     "keys[0] is not");
    expect_key_error("public_key_file", "priv.pem", NULL, "holds no PEM public key");
    expect_key_error("public_key_file", "text.pem", "hello\n", "holds no PEM public key");
    expect_key_error("public_key_file", ".", NULL, "is a directory");

    /* A good JWKS and PEM pass. */
    struct sl_config_jwt_issuer j = {.name = "x", .issuer = "i", .jwks_file = path_jwks};
    struct sl_buf why;
    sl_buf_init(&why);
    assert_int_equal(sl_auth_check_issuer(&j, &why), SL_OK);
    j.jwks_file = NULL;
    j.public_key_file = path_ec_pem;
    assert_int_equal(sl_auth_check_issuer(&j, &why), SL_OK);
    assert_int_equal(why.len, 0);
    sl_buf_dispose(&why);

    /* check-config says the same, at the field. */
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "jwt_issuers:\n  - {name: a, issuer: i, audiences: [x], jwks_file: '%s/none.json'}\n",
             dir);
    struct sl_config *c = NULL;
    struct sl_config_errors errs;
    sl_config_errors_init(&errs);
    assert_int_equal(sl_config_load_buffer("t.yaml", yaml, strlen(yaml), &c, &errs), SL_EINVAL);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0].path, "jwt_issuers[0].jwks_file");
    assert_non_null(strstr(errs.items[0].message, "none.json\": No such file or directory"));
    sl_config_errors_dispose(&errs);
}

/* sl_auth_new reads the files again: one that went away since the load is named. */
static void test_new_fails(void **state)
{
    char path[160], yaml[512];
    snprintf(path, sizeof(path), "%s/gone.pem", dir);
    write_pem_pub(path, ec_pem);
    snprintf(yaml, sizeof(yaml),
             "jwt_issuers:\n  - {name: gone, issuer: i, audiences: [x], public_key_file: '%s'}\n",
             path);
    struct sl_config *c = NULL;
    struct sl_config_errors errs;
    sl_config_errors_init(&errs);
    assert_int_equal(sl_config_load_buffer("t.yaml", yaml, strlen(yaml), &c, &errs), SL_OK);
    sl_config_errors_dispose(&errs);
    unlink(path);
    struct sl_auth *a = (void *)1;
    struct sl_buf why;
    sl_buf_init(&why);
    assert_int_equal(sl_auth_new(c, &a, &why), SL_EINVAL);
    assert_null(a);
    sl_buf_append(&why, "", 1);
    assert_non_null(strstr(why.base, "jwt_issuers \"gone\": cannot read"));
    sl_buf_dispose(&why);
    sl_config_unref(c);
    /* Without issuers there is nothing to read; tokens are then only keys. */
    sl_config_errors_init(&errs);
    assert_int_equal(sl_config_load_buffer("t.yaml", "", 0, &c, &errs), SL_OK);
    sl_config_errors_dispose(&errs);
    sl_buf_init(&why);
    assert_int_equal(sl_auth_new(c, &a, &why), SL_OK);
    struct one_header_head h;
    const struct sl_config_client *cl;
    head_with(&h, "Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.");
    assert_int_equal(sl_auth_identify(a, &h.head, NOW, &cl, &why), SL_EPERM);
    sl_buf_append(&why, "", 1);
    assert_string_equal(why.base, "the key is not valid for this gateway");
    sl_buf_dispose(&why);
    sl_auth_free(a);
    sl_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_hs256),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_audience_issuer_claim),
        cmocka_unit_test(test_bad_signature_and_kid),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_huge),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_check_issuer),
        cmocka_unit_test(test_new_fails),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
