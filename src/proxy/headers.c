/* Which headers describe one hop only, and so are never forwarded (RFC 9110 §7.6.1). */
#include "proxy/internal.h"

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
