/*
 * Taking a JWT apart (RFC 7519, compact JWS of RFC 7515): three base64url
 * segments, a header and a payload that are JSON objects, and a signature.
 * Nothing here trusts the token: every length is bounded before anything is
 * allocated, base64url is decoded strictly (one spelling per byte string, so
 * two different tokens never carry the same claims), nesting is bounded
 * before jansson recurses, and duplicate names are refused (which of two
 * `aud`s would count is exactly the kind of ambiguity attacks live in).
 * Messages describe what is wrong without quoting the token.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/internal.h"

const char *sl_jwt_alg_name(enum sl_jwt_alg alg)
{
    switch (alg) {
    case SL_JWT_RS256:
        return "RS256";
    case SL_JWT_ES256:
        return "ES256";
    case SL_JWT_HS256:
        return "HS256";
    }
    return "?";
}

bool sl_jwt_looks_like(struct sl_str s)
{
    if (!sl_str_starts_with(s, SL_STR("eyJ")))
        return false;
    size_t dots = 0;
    for (size_t i = 0; i < s.len; i++)
        dots += s.base[i] == '.';
    return dots == 2;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int sl_base64url_decode(struct sl_str in, unsigned char *out, size_t cap, size_t *out_len)
{
    /* One leftover character holds only 6 bits: never a whole byte. */
    if (in.len % 4 == 1)
        return SL_EINVAL;
    size_t need = in.len / 4 * 3 + (in.len % 4 ? in.len % 4 - 1 : 0);
    if (need > cap)
        return SL_ETOOBIG;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        int v = b64url_value((unsigned char)in.base[i]);
        if (v < 0)
            return SL_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Non-zero unused bits would give a second spelling of the same bytes. */
    if (acc != 0)
        return SL_EINVAL;
    *out_len = o;
    return SL_OK;
}

/* Whether JSON text nests deeper than SL_JWT_MAX_DEPTH (strings skipped, escapes honoured).
 * Malformed text may pass: jansson rejects it next. */
static bool too_deep(const unsigned char *s, size_t len)
{
    unsigned depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > SL_JWT_MAX_DEPTH)
                return true;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return false;
}

/* Decode one segment (what: "header" or "payload") into a JSON object. */
static int decode_object(struct sl_str seg, const char *what, json_t **out, struct sl_buf *why)
{
    int err = SL_EINVAL;
    size_t cap = seg.len / 4 * 3 + 3, len = 0;
    unsigned char *raw = malloc(cap);
    if (raw == NULL)
        return SL_ENOMEM;
    if (seg.len == 0) {
        sl_buf_appendf(why, "the token is malformed: its %s is empty", what);
        goto out;
    }
    if (sl_base64url_decode(seg, raw, cap, &len) != SL_OK) {
        sl_buf_appendf(why, "the token is malformed: its %s is not base64url (unpadded)", what);
        goto out;
    }
    if (too_deep(raw, len)) {
        sl_buf_appendf(why, "the token is malformed: its %s nests deeper than %d levels", what,
                       SL_JWT_MAX_DEPTH);
        goto out;
    }
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        sl_buf_appendf(why, "the token is malformed: its %s is not a JSON object%s", what,
                       strstr(jerr.text, "duplicate") ? " (a name appears twice)" : "");
        goto out;
    }
    *out = doc;
    err = SL_OK;
out:
    free(raw);
    return err;
}

static int read_header(struct sl_jwt *j, struct sl_buf *why)
{
    json_t *alg = json_object_get(j->header, "alg");
    if (!json_is_string(alg)) {
        sl_buf_appendf(why, "the token's header has no `alg` (algorithm) string");
        return SL_EINVAL;
    }
    const char *a = json_string_value(alg);
    if (strcmp(a, "RS256") == 0) {
        j->alg = SL_JWT_RS256;
    } else if (strcmp(a, "ES256") == 0) {
        j->alg = SL_JWT_ES256;
    } else if (strcmp(a, "HS256") == 0) {
        j->alg = SL_JWT_HS256;
    } else if (strcasecmp(a, "none") == 0) {
        sl_buf_appendf(why, "the token is unsigned (alg `none`): unsigned tokens are never "
                            "accepted");
        return SL_EINVAL;
    } else {
        sl_buf_appendf(why, "the token's algorithm (alg) is not accepted: only RS256, ES256 and "
                            "HS256 are");
        return SL_EINVAL;
    }
    json_t *kid = json_object_get(j->header, "kid");
    if (kid && !json_is_string(kid)) {
        sl_buf_appendf(why, "the token's key id (kid) is not a string");
        return SL_EINVAL;
    }
    j->kid = kid ? json_string_value(kid) : NULL;
    /* RFC 7515 §4.1.11: extensions marked critical must be understood; we know none. */
    if (json_object_get(j->header, "crit")) {
        sl_buf_appendf(why, "the token's header lists critical extensions (crit), which this "
                            "gateway does not support");
        return SL_EINVAL;
    }
    return SL_OK;
}

int sl_jwt_parse(struct sl_str token, struct sl_jwt *out, struct sl_buf *why)
{
    int err = SL_EINVAL;
    memset(out, 0, sizeof(*out));
    if (token.len > SL_JWT_MAX_TOKEN) {
        sl_buf_appendf(why, "the token is too large (more than %d bytes)", SL_JWT_MAX_TOKEN);
        return SL_ETOOBIG;
    }
    const char *d1 = token.len ? memchr(token.base, '.', token.len) : NULL;
    const char *end = token.base + token.len;
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL) {
        sl_buf_appendf(why, "the token is malformed: a JWT is three base64url parts separated "
                            "by two dots");
        return SL_EINVAL;
    }
    struct sl_str header = {token.base, (size_t)(d1 - token.base)};
    struct sl_str payload = {d1 + 1, (size_t)(d2 - d1 - 1)};
    struct sl_str sig = {d2 + 1, (size_t)(end - d2 - 1)};
    out->signed_part = (struct sl_str){token.base, (size_t)(d2 - token.base)};

    if ((err = decode_object(header, "header", &out->header, why)) != SL_OK)
        goto fail;
    if ((err = read_header(out, why)) != SL_OK)
        goto fail;
    if ((err = decode_object(payload, "payload", &out->payload, why)) != SL_OK)
        goto fail;
    if (sig.len == 0) {
        sl_buf_appendf(why, "the token has no signature");
        err = SL_EINVAL;
        goto fail;
    }
    if ((out->sig = malloc(SL_JWT_MAX_SIG)) == NULL) {
        err = SL_ENOMEM;
        goto fail;
    }
    err = sl_base64url_decode(sig, out->sig, SL_JWT_MAX_SIG, &out->sig_len);
    if (err != SL_OK) {
        sl_buf_appendf(why, "the token is malformed: its signature is %s",
                       err == SL_ETOOBIG ? "too long" : "not base64url (unpadded)");
        err = SL_EINVAL;
        goto fail;
    }
    return SL_OK;
fail:
    sl_jwt_dispose(out);
    return err;
}

void sl_jwt_dispose(struct sl_jwt *j)
{
    json_decref(j->header);
    json_decref(j->payload);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}
