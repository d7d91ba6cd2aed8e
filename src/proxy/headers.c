/* Headers the proxy filters or writes: hop-by-hop ones (RFC 9110 §7.6.1), never forwarded; the
 * retry headers of its own refusals. */
#include "proxy/internal.h"

#include <stdio.h>
#include <string.h>

static bool listed_in(struct sl_str name, struct sl_str list)
{
    while (list.len) {
        const char *comma = memchr(list.base, ',', list.len);
        size_t n = comma ? (size_t)(comma - list.base) : list.len;
        struct sl_str tok = {list.base, n};
        while (tok.len && (tok.base[0] == ' ' || tok.base[0] == '\t')) {
            tok.base++;
            tok.len--;
        }
        while (tok.len && (tok.base[tok.len - 1] == ' ' || tok.base[tok.len - 1] == '\t'))
            tok.len--;
        if (sl_str_eq_ci(tok, name))
            return true;
        list.base += comma ? n + 1 : n;
        list.len -= comma ? n + 1 : n;
    }
    return false;
}

size_t sl_proxy_connection_scope(const struct sl_http_header *headers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sl_str_eq_ci(headers[i].name, SL_STR("connection")))
            return n;
    return 0;
}

bool sl_proxy_hop_by_hop(struct sl_str name, const struct sl_http_header *headers, size_t n)
{
    static const struct sl_str hop[] = {
        SL_STR("connection"),          SL_STR("keep-alive"), SL_STR("proxy-connection"),
        SL_STR("proxy-authenticate"),  SL_STR("te"),         SL_STR("trailer"),
        SL_STR("proxy-authorization"), SL_STR("upgrade"),    SL_STR("transfer-encoding"),
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(hop); i++)
        if (sl_str_eq_ci(name, hop[i]))
            return true;
    /* And whatever the sender's Connection header names. */
    for (size_t i = 0; i < n; i++)
        if (sl_str_eq_ci(headers[i].name, SL_STR("connection")) &&
            listed_in(name, headers[i].value))
            return true;
    return false;
}

void sl_proxy_retry_headers(struct sl_proxy_retry *r, uint64_t wait_ms)
{
    snprintf(r->ms, sizeof(r->ms), "%llu", (unsigned long long)wait_ms);
    snprintf(r->secs, sizeof(r->secs), "%llu", (unsigned long long)((wait_ms + 999) / 1000));
    r->h[0] = (struct sl_http_header){SL_STR("retry-after-ms"), sl_str_from_cstr(r->ms)};
    r->h[1] = (struct sl_http_header){SL_STR("Retry-After"), sl_str_from_cstr(r->secs)};
}
