/*
 * auth's private pieces: the pure reading of a JWT (split, base64url,
 * header and payload JSON), shared by auth.c, the unit tests and the fuzz
 * target, and the issuers' loaded keys.
 */
#ifndef SL_AUTH_INTERNAL_H
#define SL_AUTH_INTERNAL_H

#include <jansson.h>
#include <openssl/evp.h>

#include "auth/auth.h"

/* Bearer tokens longer than this are refused unread: real ones are 1-4 KiB. */
#define SL_JWT_MAX_TOKEN 16384
/* Nesting deeper than this in a header or payload is refused before jansson sees it. */
#define SL_JWT_MAX_DEPTH 16
/* The longest signature accepted: RSA 4096. */
#define SL_JWT_MAX_SIG 512

enum sl_jwt_alg {
    SL_JWT_RS256, /* RSASSA-PKCS1-v1_5 with SHA-256 */
    SL_JWT_ES256, /* ECDSA P-256 with SHA-256, signature as r||s */
    SL_JWT_HS256, /* HMAC-SHA256 with the issuer's secret */
};
const char *sl_jwt_alg_name(enum sl_jwt_alg alg);

/* A token taken apart but not yet checked. Owns header, payload and sig. */
struct sl_jwt {
    json_t *header;            /* the JOSE header, a JSON object */
    json_t *payload;           /* the claims, a JSON object */
    enum sl_jwt_alg alg;       /* from the header; `none` and others are refused by the parse */
    const char *kid;           /* the header's key id (inside header); NULL when absent */
    struct sl_str signed_part; /* "HEADER.PAYLOAD" as sent: a view into the token */
    unsigned char *sig;        /* the decoded signature, sig_len bytes */
    size_t sig_len;
};

/* Whether s has a JWT's shape (starts with "eyJ", two dots), so that it is checked as one
 * rather than as an API key. */
bool sl_jwt_looks_like(struct sl_str s);

/* Decode unpadded base64url strictly (RFC 7515 §2: no '=', no other alphabet, unused bits
 * zero) into out (room for cap bytes): 0 and *out_len, or SL_EINVAL / SL_ETOOBIG. */
int sl_base64url_decode(struct sl_str in, unsigned char *out, size_t cap, size_t *out_len);

/* Take token apart: three segments, each strict base64url, header and payload JSON objects
 * (bounded depth, no duplicate names), a supported `alg`, a signature of sane size.
 * 0 and *out (dispose it), or SL_EINVAL with the reason appended to why (never quoting
 * the token), SL_ETOOBIG for an oversized token, SL_ENOMEM. */
int sl_jwt_parse(struct sl_str token, struct sl_jwt *out, struct sl_buf *why);
void sl_jwt_dispose(struct sl_jwt *j);

/* One verification key of an issuer. Owns kid and pkey. */
struct sl_auth_key {
    char *kid;           /* the JWK's `kid`; NULL for a PEM key or a JWK without one */
    enum sl_jwt_alg alg; /* what it checks: RS256 (RSA) or ES256 (EC P-256) */
    EVP_PKEY *pkey;
};

/* An issuer's loaded key material. Owns keys; borrows cfg. */
struct sl_auth_issuer {
    const struct sl_config_jwt_issuer *cfg;
    struct sl_auth_key *keys; /* n_keys: from jwks_file or public_key_file; none for a secret */
    size_t n_keys;
};

/* Load j's keys into *out (0), or SL_EINVAL with the file and the reason in why, SL_ENOMEM. */
int sl_auth_issuer_load(const struct sl_config_jwt_issuer *j, struct sl_auth_issuer *out,
                        struct sl_buf *why);
void sl_auth_issuer_dispose(struct sl_auth_issuer *is);

#endif
