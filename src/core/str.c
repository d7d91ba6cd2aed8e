#include "core/core.h"

#include <string.h>

struct sl_str sl_str_from_cstr(const char *s)
{
    return (struct sl_str){s, s ? strlen(s) : 0};
}

bool sl_str_eq(struct sl_str a, struct sl_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

bool sl_str_eq_ci(struct sl_str a, struct sl_str b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (lower((unsigned char)a.base[i]) != lower((unsigned char)b.base[i]))
            return false;
    return true;
}

bool sl_str_starts_with(struct sl_str s, struct sl_str prefix)
{
    return s.len >= prefix.len && memcmp(s.base, prefix.base, prefix.len) == 0;
}

int sl_str_to_u64(struct sl_str s, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len == 0)
        return SL_EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned char)s.base[i] - '0';
        if (d > 9)
            return SL_EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            return SL_ETOOBIG;
        v = v * 10 + d;
    }
    *out = v;
    return SL_OK;
}

bool sl_str_eq_consttime(struct sl_str a, struct sl_str b)
{
    /* Length is not secret (hashes have fixed length); content comparison is. */
    if (a.len != b.len)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.len; i++)
        diff |= (unsigned char)(a.base[i] ^ b.base[i]);
    return diff == 0;
}

bool sl_query_next(struct sl_str *query, struct sl_str *pair)
{
    if (query->len == 0)
        return false;
    const char *amp = memchr(query->base, '&', query->len);
    size_t n = amp ? (size_t)(amp - query->base) : query->len;
    *pair = (struct sl_str){query->base, n};
    query->base += amp ? n + 1 : n;
    query->len -= amp ? n + 1 : n;
    return true;
}

struct sl_str sl_query_param(struct sl_str q, struct sl_str name)
{
    struct sl_str pair;
    while (sl_query_next(&q, &pair))
        if (pair.len > name.len + 1 && sl_str_starts_with(pair, name) && pair.base[name.len] == '=')
            return (struct sl_str){pair.base + name.len + 1, pair.len - name.len - 1};
    return SL_STR_NULL;
}
