/*
 * Who may use the admin listener. With an admin_token (required by the
 * configuration when admin_listen is not on loopback) every request but
 * /healthz and the console's static files must carry it as a bearer token.
 * Without one, the listener is on loopback: reachable only from this machine,
 * but still from any web page a browser on it shows. Two checks keep such
 * pages out, token or not:
 * - a browser request from another origin (its Origin header names another
 *   host and port than its Host header) is refused: no cross-site request
 *   can inject faults or read status, even a "simple" one that needs no
 *   CORS preflight;
 * - without a token, the Host header must be an IP address or "localhost"
 *   (or absent), so that a name an attacker controls, re-pointed at
 *   127.0.0.1 (DNS rebinding), does not make its pages same-origin with the
 *   listener.
 */
#include <arpa/inet.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "console/console.h"
#include "gateway/internal.h"

/* The host of a Host header value ("127.0.0.1:9090", "[::1]:9090", "localhost"), without the
 * port and brackets. */
static struct sl_str host_only(struct sl_str h)
{
    if (h.len && h.base[0] == '[') {
        const char *end = memchr(h.base, ']', h.len);
        return end ? (struct sl_str){h.base + 1, (size_t)(end - h.base - 1)} : (struct sl_str){0};
    }
    const char *colon = memchr(h.base, ':', h.len);
    return colon ? (struct sl_str){h.base, (size_t)(colon - h.base)} : h;
}

static bool host_is_local_name(struct sl_str host)
{
    struct sl_str h = host_only(host);
    char text[64];
    unsigned char addr[16];
    if (host.len == 0 || sl_str_eq_ci(h, SL_STR("localhost")))
        return true; /* no Host header: HTTP/1.0, never a browser */
    if (h.len == 0 || h.len >= sizeof(text))
        return false;
    memcpy(text, h.base, h.len);
    text[h.len] = '\0';
    return inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1;
}

/* Origin is "scheme://host[:port]"; same origin when what follows "://" equals Host. */
static bool origin_matches_host(struct sl_str origin, struct sl_str host)
{
    static const char sep[] = "://";
    for (size_t i = 0; i + 3 <= origin.len; i++) {
        if (memcmp(origin.base + i, sep, 3) != 0)
            continue;
        struct sl_str rest = {origin.base + i + 3, origin.len - i - 3};
        return sl_str_eq_ci(rest, host);
    }
    return false;
}

/* Compares SHA-256 digests, so that neither the token's content nor its length shows in the
 * time taken. */
static bool token_matches(struct sl_str given, const char *want)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)given.base, given.len, a);
    SHA256((const unsigned char *)want, strlen(want), b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

static bool bearer_ok(const struct sl_http_request *req, const char *token)
{
    const struct sl_http_header *h = sl_http_find_header(&req->head, SL_STR("authorization"));
    if (h == NULL || h->value.len < 7 ||
        !sl_str_eq_ci((struct sl_str){h->value.base, 7}, SL_STR("Bearer ")))
        return false;
    struct sl_str t = {h->value.base + 7, h->value.len - 7};
    while (t.len && t.base[0] == ' ') {
        t.base++;
        t.len--;
    }
    return token_matches(t, token);
}

bool sl_gateway_admin_allowed(struct sl_http_request *req, const struct sl_config *cfg)
{
    const char *token = cfg->admin_token;
    const struct sl_http_header *origin = sl_http_find_header(&req->head, SL_STR("origin"));
    if (origin && !origin_matches_host(origin->value, req->head.host)) {
        sl_http_respond_error(req, 403, "Forbidden",
                              "cross-origin requests to the admin listener are refused; open "
                              "the console from the admin listener itself");
        return false;
    }
    if (token == NULL && !host_is_local_name(req->head.host)) {
        sl_http_respond_error(req, 403, "Forbidden",
                              "the admin listener without admin_token answers only requests "
                              "addressed to localhost or an IP address");
        return false;
    }
    if (token == NULL || sl_str_eq(req->head.path, SL_STR("/healthz")) ||
        sl_console_is_static(req) || bearer_ok(req, token))
        return true;
    struct sl_http_header challenge = {SL_STR("WWW-Authenticate"), SL_STR("Bearer")};
    sl_http_respond_error_with(req, 401, "Unauthorized",
                               "the admin listener needs the admin_token: send it as "
                               "Authorization: Bearer TOKEN",
                               &challenge, 1);
    return false;
}
