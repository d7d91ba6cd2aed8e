#include "core/core.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t sl_clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* a / b rounded down, for negative a too. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* H. Hinnant's days_from_civil and civil_from_days (public domain algorithms). */
int64_t sl_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void sl_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void sl_clock_format(int64_t unix_ms, bool millis, char *out, size_t outlen)
{
    int64_t day = floor_div(unix_ms, 86400000), ms = unix_ms - day * 86400000;
    int64_t y;
    unsigned m, d, sec = (unsigned)(ms / 1000);
    sl_civil_from_days(day, &y, &m, &d);
    if (millis)
        snprintf(out, outlen, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m, d,
                 sec / 3600, sec / 60 % 60, sec % 60, (unsigned)(ms % 1000));
    else
        snprintf(out, outlen, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)y, m, d, sec / 3600,
                 sec / 60 % 60, sec % 60);
}

uint64_t sl_clock_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sl_clock_rfc3339(char *out, size_t outlen)
{
    /* Formatting the date is the costly part and changes once a second:
     * keep the last one per thread. */
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[24];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    snprintf(out, outlen, "%s.%03ldZ", cached, ms);
}

/* xoshiro256** per thread, seeded from the kernel once: ids need to be unique,
 * not secret, and a syscall per request would cost more than the request. */
static _Thread_local uint64_t rng_state[4];
static _Thread_local bool rng_seeded;

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        if (getrandom(rng_state, sizeof(rng_state), 0) != (ssize_t)sizeof(rng_state)) {
            uint64_t t = sl_clock_mono_us();
            for (int i = 0; i < 4; i++)
                rng_state[i] = (t += 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
        }
        rng_seeded = true;
    }
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void sl_request_id_new(char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = rng_next(), b = rng_next();
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (60 - 4 * i)) & 15];
        out[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    }
    out[SL_REQUEST_ID_LEN] = '\0';
}

bool sl_request_id_is_sane(struct sl_str id)
{
    if (id.len == 0 || id.len > 128)
        return false;
    for (size_t i = 0; i < id.len; i++) {
        char c = id.base[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}
