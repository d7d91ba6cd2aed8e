/*
 * Value parsers for each schema type. Each takes the scalar text exactly as
 * written (after ${VAR} interpolation) and, when it is not acceptable, says
 * in `why` what is wrong and what is expected, quoting the text.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "config/schema.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t count_digits(struct sl_str s, size_t from)
{
    size_t i = from;
    while (i < s.len && is_digit(s.base[i]))
        i++;
    return i - from;
}

/* "<expected>, got "<s>"<hint>" */
static int reject(struct sl_buf *why, const char *expected, struct sl_str s, const char *hint)
{
    sl_buf_appendf(why, "%s, got ", expected);
    sl_cfg_quote(why, s);
    if (hint)
        sl_buf_appendf(why, " (%s)", hint);
    return SL_EINVAL;
}

static int too_large(struct sl_buf *why, struct sl_str s)
{
    sl_buf_appendf(why, "value is too large: ");
    sl_cfg_quote(why, s);
    return SL_EINVAL;
}

int sl_cfg_parse_bool(struct sl_str s, bool *out, struct sl_buf *why)
{
    /* YAML 1.2 spellings only: "yes"/"on" are too easy to misread. */
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++) {
        if (sl_str_eq(s, sl_str_from_cstr(yes[i]))) {
            *out = true;
            return SL_OK;
        }
        if (sl_str_eq(s, sl_str_from_cstr(no[i]))) {
            *out = false;
            return SL_OK;
        }
    }
    static const char *const yaml11[] = {"yes", "no", "on", "off", "y", "n"};
    for (size_t i = 0; i < SL_ARRAY_LEN(yaml11); i++)
        if (sl_str_eq_ci(s, sl_str_from_cstr(yaml11[i])))
            return reject(why, "expected true or false", s, "yes/no and on/off are not used");
    return reject(why, "expected true or false", s, NULL);
}

int sl_cfg_parse_int(struct sl_str s, uint64_t *out, struct sl_buf *why)
{
    int err = sl_str_to_u64(s, out);
    if (err == SL_ETOOBIG)
        return too_large(why, s);
    if (err == SL_OK)
        return SL_OK;
    if (s.len > 1 && s.base[0] == '-' && count_digits(s, 1) == s.len - 1)
        return reject(why, "expected a whole number of 0 or more", s, NULL);
    return reject(why, "expected a whole number", s, NULL);
}

struct unit {
    const char *name;
    uint64_t mul;
};

/* Multiplies n by u->mul into *total += ..., false on overflow. */
static bool add_scaled(uint64_t *total, uint64_t n, uint64_t mul)
{
    if (n > UINT64_MAX / mul)
        return false;
    n *= mul;
    if (*total > UINT64_MAX - n)
        return false;
    *total += n;
    return true;
}

int sl_cfg_parse_size(struct sl_str s, uint64_t *out, struct sl_buf *why)
{
    static const struct unit units[] = {
        {"B", 1}, {"KiB", 1u << 10}, {"MiB", 1u << 20}, {"GiB", 1u << 30}};
    static const char *const ambiguous[] = {"k", "kb", "m", "mb", "g", "gb"};
    static const char expected[] = "expected a size like 16KiB or 1048576";
    size_t nd = count_digits(s, 0);
    uint64_t n = 0, total = 0;
    if (nd == 0)
        return reject(why, expected, s, NULL);
    if (sl_str_to_u64((struct sl_str){s.base, nd}, &n) != SL_OK)
        return too_large(why, s);
    size_t at = nd;
    while (at < s.len && s.base[at] == ' ')
        at++; /* "16 KiB" reads naturally enough to allow */
    struct sl_str unit = {s.base + at, s.len - at};
    uint64_t mul = 0;
    if (unit.len == 0 && at == nd)
        mul = 1;
    for (size_t i = 0; i < SL_ARRAY_LEN(units) && unit.len; i++)
        if (sl_str_eq_ci(unit, sl_str_from_cstr(units[i].name)))
            mul = units[i].mul;
    if (mul == 0) {
        for (size_t i = 0; i < SL_ARRAY_LEN(ambiguous); i++)
            if (sl_str_eq_ci(unit, sl_str_from_cstr(ambiguous[i])))
                return reject(why, expected, s,
                              "sizes count in powers of 1024: use B, KiB, MiB or GiB");
        return reject(why, expected, s, "units are B, KiB, MiB and GiB");
    }
    if (!add_scaled(&total, n, mul))
        return too_large(why, s);
    *out = total;
    return SL_OK;
}

int sl_cfg_parse_duration(struct sl_str s, uint64_t *out, struct sl_buf *why)
{
    /* "ms" before "m" so that the longer unit wins. */
    static const struct unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
    static const char expected[] = "expected a duration like 500ms, 10s, 2m, 1h or 1m30s";
    uint64_t total = 0;
    if (sl_str_eq(s, SL_STR("0"))) {
        *out = 0;
        return SL_OK;
    }
    if (s.len == 0)
        return reject(why, expected, s, NULL);
    if (count_digits(s, 0) == s.len)
        return reject(why, expected, s, "the unit is required: ms, s, m or h");
    size_t at = 0;
    while (at < s.len) {
        size_t nd = count_digits(s, at);
        uint64_t n;
        if (nd == 0)
            return reject(why, expected, s, "units are ms, s, m and h");
        if (sl_str_to_u64((struct sl_str){s.base + at, nd}, &n) != SL_OK)
            return too_large(why, s);
        at += nd;
        const struct unit *u = NULL;
        for (size_t i = 0; i < SL_ARRAY_LEN(units) && u == NULL; i++) {
            struct sl_str name = sl_str_from_cstr(units[i].name);
            struct sl_str rest = {s.base + at, s.len - at};
            /* A unit ends at a digit or the end: "10sec" is not "10s" + "ec". */
            if (sl_str_starts_with(rest, name) &&
                (rest.len == name.len || is_digit(rest.base[name.len])))
                u = &units[i];
        }
        if (u == NULL)
            return reject(why, expected, s,
                          at == s.len ? "the unit is required: ms, s, m or h"
                                      : "units are ms, s, m and h");
        at += strlen(u->name);
        if (!add_scaled(&total, n, u->mul))
            return too_large(why, s);
    }
    *out = total;
    return SL_OK;
}

#define PPM 1000000u

int sl_cfg_parse_ratio(struct sl_str s, uint64_t *out, struct sl_buf *why)
{
    static const char expected[] = "expected a number from 0 to 1 like 0.25, or a percentage "
                                   "like 25%";
    struct sl_str num = s;
    bool percent = num.len > 0 && num.base[num.len - 1] == '%';
    if (percent) {
        num.len--;
        while (num.len > 0 && num.base[num.len - 1] == ' ')
            num.len--; /* "25 %" reads naturally enough to allow */
    }
    size_t n_int = count_digits(num, 0), n_frac = 0, at = n_int;
    if (at < num.len && num.base[at] == '.') {
        n_frac = count_digits(num, at + 1);
        at += 1 + n_frac;
    }
    if (at != num.len || n_int + n_frac == 0) {
        const char *hint = NULL;
        if (s.len > 0 && s.base[0] == '-')
            hint = "it cannot be negative";
        else if (at < num.len && (num.base[at] == 'e' || num.base[at] == 'E'))
            hint = "write it without an exponent, like 0.001";
        return reject(why, expected, s, hint);
    }
    /* A ratio keeps 6 decimal places (millionths), a percentage 4: both
     * land on parts per million without floating point. */
    unsigned places = percent ? 4 : 6;
    uint64_t limit = percent ? 100 : 1, whole = 0, frac = 0;
    bool over = false, nonzero = false, round_up = false;
    for (size_t i = 0; i < n_int && !over; i++) {
        whole = whole * 10 + (uint64_t)(num.base[i] - '0');
        over = whole > limit;
    }
    const char *digits = num.base + n_int + 1;
    for (size_t i = 0; i < n_frac; i++) {
        unsigned d = (unsigned)(digits[i] - '0');
        nonzero = nonzero || d != 0;
        if (i < places)
            frac = frac * 10 + d;
        else if (i == places)
            round_up = d >= 5;
    }
    for (size_t i = n_frac; i < places; i++)
        frac *= 10;
    if (over || (whole == limit && nonzero)) {
        sl_buf_appendf(why, "must be at most 1 (or 100%%), got ");
        sl_cfg_quote(why, s);
        return SL_EINVAL;
    }
    uint64_t ppm = whole * (percent ? 10000 : PPM) + frac + (round_up ? 1 : 0);
    if (ppm == 0 && nonzero) {
        /* Rounding it to 0 would silently turn off what the user asked for. */
        sl_buf_appendf(why, "is finer than one in a million (0.000001, or 0.0001%%), got ");
        sl_cfg_quote(why, s);
        return SL_EINVAL;
    }
    *out = ppm;
    return SL_OK;
}

int sl_cfg_parse_money(struct sl_str s, uint64_t *out, struct sl_buf *why)
{
    static const char expected[] = "expected an amount like 12.50 or 0.000150 (at most 6 "
                                   "decimal places)";
    size_t n_int = count_digits(s, 0), n_frac = 0, at = n_int;
    if (at < s.len && s.base[at] == '.') {
        n_frac = count_digits(s, at + 1);
        at += 1 + n_frac;
    }
    if (at != s.len || n_int + n_frac == 0 || n_frac > 6 || n_int > 12) {
        const char *hint = NULL;
        if (s.len > 0 && s.base[0] == '-')
            hint = "it cannot be negative";
        else if (s.len > 0 && (s.base[0] == '$' || s.base[s.len - 1] == '$'))
            hint = "write the number only, without a currency sign";
        else if (n_frac > 6 && at == s.len)
            hint = "more than 6 decimal places";
        else if (n_int > 12 && at == s.len)
            hint = "too large";
        return reject(why, expected, s, hint);
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n_int; i++)
        v = v * 10 + (uint64_t)(s.base[i] - '0');
    for (size_t i = 0; i < 6; i++)
        v = v * 10 + (i < n_frac ? (uint64_t)(s.base[n_int + 1 + i] - '0') : 0);
    *out = v;
    return SL_OK;
}

int sl_cfg_parse_enum(struct sl_str s, const struct sl_cfg_choice *choices, int *out,
                      struct sl_buf *why)
{
    const char *names[32];
    size_t n = 0;
    for (const struct sl_cfg_choice *c = choices; c->name; c++) {
        if (sl_str_eq_ci(s, sl_str_from_cstr(c->name))) {
            *out = c->value;
            return SL_OK;
        }
        if (n < SL_ARRAY_LEN(names))
            names[n++] = c->name;
    }
    sl_buf_appendf(why, "expected one of ");
    for (size_t i = 0; i < n; i++)
        sl_buf_appendf(why, "%s%s", i ? ", " : "", names[i]);
    sl_buf_appendf(why, ", got ");
    sl_cfg_quote(why, s);
    const char *near = sl_cfg_suggest(s, names, n);
    if (near)
        sl_buf_appendf(why, " (did you mean \"%s\"?)", near);
    return SL_EINVAL;
}

/* Copies s into a NUL-terminated host buffer, refusing anything that
 * cannot be part of a numeric address (including embedded NULs). */
static bool host_chars(struct sl_str s, char *buf, size_t size)
{
    if (s.len >= size)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.base[i];
        if (!is_digit(c) && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') && c != '.' &&
            c != ':')
            return false;
    }
    memcpy(buf, s.base, s.len);
    buf[s.len] = '\0';
    return true;
}

int sl_cfg_parse_addr(struct sl_str s, struct sl_config_addr *out, struct sl_buf *why)
{
    static const char expected[] = "expected an address like 127.0.0.1:8080, [::1]:8080 or :8080";
    static const char bad_host[] =
        "the host must be a numeric IPv4 or IPv6 address; host names are not resolved";
    struct sl_str host, port;
    int family = AF_INET;
    if (s.len > 0 && s.base[0] == '[') {
        const char *close = memchr(s.base, ']', s.len);
        if (close == NULL)
            return reject(why, expected, s, "missing \"]\" after the IPv6 address");
        host = (struct sl_str){s.base + 1, (size_t)(close - s.base) - 1};
        port = (struct sl_str){close + 1, s.len - (size_t)(close - s.base) - 1};
        if (port.len == 0 || port.base[0] != ':')
            return reject(why, expected, s, "missing \":PORT\" after the address");
        port.base++;
        port.len--;
        family = AF_INET6;
    } else {
        const char *colon = memchr(s.base, ':', s.len);
        if (colon == NULL) {
            if (s.len > 0 && count_digits(s, 0) == s.len)
                return reject(why, expected, s,
                              "missing \":\" before the port; \":PORT\" means every interface");
            return reject(why, expected, s, "missing \":PORT\"");
        }
        if (memchr(colon + 1, ':', s.len - (size_t)(colon - s.base) - 1))
            return reject(why, expected, s, "IPv6 addresses go in brackets, like [::1]:8080");
        host = (struct sl_str){s.base, (size_t)(colon - s.base)};
        port = (struct sl_str){colon + 1, s.len - host.len - 1};
    }
    uint64_t p = 0;
    if (sl_str_to_u64(port, &p) != SL_OK || p < 1 || p > 65535)
        return reject(why, expected, s, "the port must be a number from 1 to 65535");
    char text[sizeof(out->host)];
    unsigned char bin[16];
    if (host.len == 0 && family == AF_INET) {
        host = SL_STR("0.0.0.0");
    }
    if (!host_chars(host, text, sizeof(text)) || inet_pton(family, text, bin) != 1)
        return reject(why, expected, s, bad_host);
    /* Store the canonical form so that equal addresses compare equal. */
    if (inet_ntop(family, bin, out->host, sizeof(out->host)) == NULL)
        return reject(why, expected, s, bad_host);
    out->port = (uint16_t)p;
    return SL_OK;
}

int sl_config_parse_addr(struct sl_str s, struct sl_config_addr *out, struct sl_buf *why)
{
    return sl_cfg_parse_addr(s, out, why);
}

int sl_config_addr_format(const struct sl_config_addr *a, struct sl_buf *out)
{
    bool v6 = strchr(a->host, ':') != NULL;
    return sl_buf_appendf(out, "%s%s%s:%u", v6 ? "[" : "", a->host, v6 ? "]" : "",
                          (unsigned)a->port);
}

static bool is_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

bool sl_cfg_addr_overlaps(const struct sl_config_addr *a, const struct sl_config_addr *b)
{
    return a->port == b->port &&
           (strcmp(a->host, b->host) == 0 || is_wildcard(a->host) || is_wildcard(b->host));
}

int sl_cfg_format_value(enum sl_cfg_type t, uint64_t v, struct sl_buf *out)
{
    static const struct unit sizes[] = {{"GiB", 1u << 30}, {"MiB", 1u << 20}, {"KiB", 1u << 10}};
    static const struct unit times[] = {
        {"h", 60 * 60 * 1000}, {"m", 60 * 1000}, {"s", 1000}, {"ms", 1}};
    const struct unit *units = NULL;
    size_t n = 0;
    if ((t == SL_CFG_RATIO || t == SL_CFG_MONEY) && v % PPM != 0) {
        /* Millionths without trailing zeros: 50000 is "0.05". */
        char frac[8];
        int len = snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(v % PPM));
        while (len > 1 && frac[len - 1] == '0')
            len--;
        return sl_buf_appendf(out, "%llu.%.*s", (unsigned long long)(v / PPM), len, frac);
    }
    if (t == SL_CFG_RATIO || t == SL_CFG_MONEY)
        return sl_buf_appendf(out, "%llu", (unsigned long long)(v / PPM));
    if (t == SL_CFG_SIZE) {
        units = sizes;
        n = SL_ARRAY_LEN(sizes);
    } else if (t == SL_CFG_DURATION) {
        units = times;
        n = SL_ARRAY_LEN(times);
    }
    /* The largest unit that divides v exactly: 16384 reads as 16KiB. */
    for (size_t i = 0; i < n && v != 0; i++)
        if (v % units[i].mul == 0)
            return sl_buf_appendf(out, "%llu%s", (unsigned long long)(v / units[i].mul),
                                  units[i].name);
    return sl_buf_appendf(out, "%llu", (unsigned long long)v);
}
