/*
 * How long a throttled backend asks to be left alone, from the headers of its
 * 429. This reads what an upstream sent, so it trusts nothing: every number is
 * bounded, every overflow detected, and anything odd is skipped for the next
 * header rather than guessed at.
 *
 * Formats seen in the wild:
 *   retry-after-ms: 2000          Azure OpenAI; the openai SDKs prefer it
 *   retry-after-ms: 1500.5        (fractions: rounded up)
 *   Retry-After: 2                RFC 9110 delay-seconds (a fraction is accepted too)
 *   Retry-After: Wed, 21 Oct 2026 07:28:00 GMT    RFC 9110 IMF-fixdate (the obsolete
 *                                 RFC 850 and asctime forms are not accepted)
 *   x-ratelimit-reset-requests: 6m0s     OpenAI, Go duration syntax ("1h2m3.5s", "20ms")
 *   x-ratelimit-reset-tokens: 0.5        some compatible servers: plain seconds
 */
#include <string.h>

#include "balance/internal.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* digits [ '.' digits ], as read: the fraction to 9 digits, and whether more nonzero
 * digits followed (they only ever round up). */
struct number {
    uint64_t whole;
    uint64_t frac9; /* the first 9 fraction digits, as an integer of 1e-9 */
    bool more;      /* nonzero fraction digits beyond the ninth */
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Read a number at s[*i]; SL_EINVAL when there is no digit, SL_ETOOBIG on overflow. */
static int scan_number(struct sl_str s, size_t *i, struct number *n)
{
    size_t digits = 0, frac_digits = 0;
    *n = (struct number){0, 0, false};
    for (; *i < s.len && is_digit(s.base[*i]); (*i)++, digits++) {
        uint64_t d = (uint64_t)(s.base[*i] - '0');
        if (n->whole > (UINT64_MAX - d) / 10)
            return SL_ETOOBIG;
        n->whole = n->whole * 10 + d;
    }
    if (*i < s.len && s.base[*i] == '.') {
        (*i)++;
        for (; *i < s.len && is_digit(s.base[*i]); (*i)++, digits++, frac_digits++) {
            uint64_t d = (uint64_t)(s.base[*i] - '0');
            if (frac_digits < 9)
                n->frac9 = n->frac9 * 10 + d;
            else if (d)
                n->more = true;
        }
        for (size_t k = frac_digits; k < 9; k++)
            n->frac9 *= 10;
    }
    return digits ? SL_OK : SL_EINVAL;
}

/* n × unit, rounded up to a whole unit of the result; SL_ETOOBIG on overflow. */
static int number_times(const struct number *n, uint64_t unit, uint64_t *out)
{
    if (unit && n->whole > UINT64_MAX / unit)
        return SL_ETOOBIG;
    uint64_t v = n->whole * unit;
    /* frac9 × unit / 1e9 without overflow: split unit at 1e9 (frac9 < 1e9). */
    uint64_t part = n->frac9 * (unit % NS_PER_S);
    uint64_t f = n->frac9 * (unit / NS_PER_S) + part / NS_PER_S;
    if (part % NS_PER_S || (n->more && unit))
        f++;
    if (v > UINT64_MAX - f)
        return SL_ETOOBIG;
    *out = v + f;
    return SL_OK;
}

/* ns to ms, rounded up. */
static uint64_t ns_to_ms(uint64_t ns)
{
    return ns / NS_PER_MS + (ns % NS_PER_MS != 0);
}

int sl_balance_parse_duration(struct sl_str s, uint64_t *ms)
{
    static const struct {
        const char *name;
        size_t len;
        uint64_t ns;
    } units[] = {
        /* Longest first where one is the other's prefix ("ms" before "m"). */
        {"ns", 2, 1},
        {"us", 2, 1000},
        {"\xc2\xb5s", 3, 1000}, /* U+00B5 micro sign */
        {"\xce\xbcs", 3, 1000}, /* U+03BC Greek mu */
        {"ms", 2, NS_PER_MS},
        {"s", 1, NS_PER_S},
        {"m", 1, 60 * NS_PER_S},
        {"h", 1, 3600 * NS_PER_S},
    };
    struct number n;
    size_t i = 0;
    uint64_t total = 0, part;
    int err;

    if (s.len == 0)
        return SL_EINVAL;
    /* Plain seconds: only a number. */
    if ((err = scan_number(s, &i, &n)) != SL_OK)
        return err;
    if (i == s.len) {
        if ((err = number_times(&n, NS_PER_S, &total)) != SL_OK)
            return err;
        *ms = ns_to_ms(total);
        return SL_OK;
    }
    /* Go: one or more number+unit ("1h2m3.5s"). */
    for (;;) {
        size_t u = 0;
        for (; u < SL_ARRAY_LEN(units); u++)
            if (s.len - i >= units[u].len && memcmp(s.base + i, units[u].name, units[u].len) == 0)
                break;
        if (u == SL_ARRAY_LEN(units))
            return SL_EINVAL;
        i += units[u].len;
        if ((err = number_times(&n, units[u].ns, &part)) != SL_OK)
            return err;
        if (total > UINT64_MAX - part)
            return SL_ETOOBIG;
        total += part;
        if (i == s.len)
            break;
        if ((err = scan_number(s, &i, &n)) != SL_OK)
            return err;
    }
    *ms = ns_to_ms(total);
    return SL_OK;
}

/* Two digits at p as a number. */
static int two_digits(const char *p)
{
    if (!is_digit(p[0]) || !is_digit(p[1]))
        return -1;
    return (p[0] - '0') * 10 + (p[1] - '0');
}

int sl_balance_parse_http_date(struct sl_str s, uint64_t *unix_ms)
{
    static const char days[] = "MonTueWedThuFriSatSun";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    /* "Sun, 06 Nov 1994 08:49:37 GMT": fixed width, 29 bytes. */
    const char *p = s.base;
    unsigned month = 0;
    bool day_ok = false;

    if (s.len != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
        p[19] != ':' || p[22] != ':' || p[25] != ' ' || memcmp(p + 26, "GMT", 3))
        return SL_EINVAL;
    for (size_t k = 0; k < 7 && !day_ok; k++)
        day_ok = memcmp(p, days + 3 * k, 3) == 0;
    for (; month < 12; month++)
        if (memcmp(p + 8, months + 3 * month, 3) == 0)
            break;
    int mday = two_digits(p + 5), hh = two_digits(p + 17), mm = two_digits(p + 20);
    int ss = two_digits(p + 23), yh = two_digits(p + 12), yl = two_digits(p + 14);
    if (!day_ok || month == 12 || mday < 1 || mday > mdays[month] || hh < 0 || hh > 23 || mm < 0 ||
        mm > 59 || ss < 0 || ss > 60 || yh < 0 || yl < 0)
        return SL_EINVAL;
    int year = yh * 100 + yl;
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 1 && mday == 29 && !leap)
        return SL_EINVAL;
    int64_t secs =
        sl_days_from_civil(year, month + 1, (unsigned)mday) * 86400 + hh * 3600 + mm * 60 + ss;
    /* Before 1970 is as much in the past as 1970 is. */
    *unix_ms = secs > 0 ? (uint64_t)secs * 1000 : 0;
    return SL_OK;
}

static int parse_retry_after_ms(struct sl_str v, uint64_t *ms)
{
    struct number n;
    size_t i = 0;
    int err = scan_number(v, &i, &n);
    if (err != SL_OK)
        return err;
    if (i != v.len)
        return SL_EINVAL;
    return number_times(&n, 1, ms);
}

static int parse_retry_after(struct sl_str v, uint64_t now_unix_ms, uint64_t *ms)
{
    if (v.len && is_digit(v.base[0])) {
        struct number n;
        size_t i = 0;
        int err = scan_number(v, &i, &n);
        if (err != SL_OK)
            return err;
        if (i != v.len)
            return SL_EINVAL;
        return number_times(&n, 1000, ms);
    }
    uint64_t when;
    int err = sl_balance_parse_http_date(v, &when);
    if (err != SL_OK)
        return err;
    *ms = when > now_unix_ms ? when - now_unix_ms : 0;
    return SL_OK;
}

/* How each header's value is written. */
enum format { MILLISECONDS, SECONDS_OR_DATE, DURATION };

/* The first header called name whose value parses; SL_ENOTFOUND when none does. */
static int first_of(const struct sl_http_header *headers, size_t n, struct sl_str name,
                    enum format format, uint64_t now_unix_ms, uint64_t *ms)
{
    for (size_t i = 0; i < n; i++) {
        if (!sl_str_eq_ci(headers[i].name, name))
            continue;
        struct sl_str v = headers[i].value;
        int err;
        if (v.len == 0)
            continue;
        if (format == MILLISECONDS)
            err = parse_retry_after_ms(v, ms);
        else if (format == SECONDS_OR_DATE)
            err = parse_retry_after(v, now_unix_ms, ms);
        else
            err = sl_balance_parse_duration(v, ms);
        if (err == SL_OK)
            return SL_OK;
    }
    return SL_ENOTFOUND;
}

int sl_balance_retry_after(const struct sl_http_header *headers, size_t n, uint64_t now_unix_ms,
                           uint64_t max_ms, uint64_t *ms, bool *clamped)
{
    uint64_t v = 0, w = 0;
    int err = SL_OK;

    *ms = 0;
    *clamped = false;
    if (first_of(headers, n, SL_STR("retry-after-ms"), MILLISECONDS, now_unix_ms, &v) == SL_OK ||
        first_of(headers, n, SL_STR("retry-after"), SECONDS_OR_DATE, now_unix_ms, &v) == SL_OK)
        goto found;
    bool requests = first_of(headers, n, SL_STR("x-ratelimit-reset-requests"), DURATION,
                             now_unix_ms, &v) == SL_OK;
    bool tokens = first_of(headers, n, SL_STR("x-ratelimit-reset-tokens"), DURATION, now_unix_ms,
                           &w) == SL_OK;
    if (!requests && !tokens) {
        err = SL_ENOTFOUND;
        goto fail;
    }
    /* Both limits must have room again before a request can pass. */
    if (!requests || (tokens && w > v))
        v = w;
found:
    if (v > max_ms) {
        v = max_ms;
        *clamped = true;
    }
    *ms = v;
fail:
    return err;
}
