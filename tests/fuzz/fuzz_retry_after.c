/*
 * Fuzz the reading of a 429's retry headers (upstream input, trusted by
 * nobody): never crash or read out of bounds, and always answer within the
 * clamp. The input is header lines "name: value\n", read at a few wall clock
 * times (HTTP dates are relative to it). Every value is also fed to each
 * number parser on its own.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "balance/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    if (buf == NULL)
        return 0;

    struct sl_http_header h[16];
    size_t n = 0, pos = 0;
    while (pos < size && n < SL_ARRAY_LEN(h)) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl != NULL);
        const char *colon = memchr(line, ':', len);
        if (colon == NULL)
            continue;
        struct sl_str value = {colon + 1, len - (size_t)(colon + 1 - line)};
        while (value.len && value.base[0] == ' ')
            value.base++, value.len--;
        h[n].name = (struct sl_str){line, (size_t)(colon - line)};
        h[n].value = value;
        n++;
        uint64_t ms;
        sl_balance_parse_duration(value, &ms);
        sl_balance_parse_http_date(value, &ms);
    }

    /* 1970, 2026-10-21 07:28:00Z, 9999-12-31; no clamp to the widest. */
    static const uint64_t nows[] = {0, 1792567680000ull, 253402300799000ull};
    static const uint64_t maxes[] = {0, 1, 300000, UINT64_MAX};
    for (size_t i = 0; i < SL_ARRAY_LEN(nows) * SL_ARRAY_LEN(maxes); i++) {
        uint64_t max = maxes[i % SL_ARRAY_LEN(maxes)], ms = 42;
        bool clamped = true;
        int err = sl_balance_retry_after(h, n, nows[i / SL_ARRAY_LEN(maxes)], max, &ms, &clamped);
        if (err != SL_OK && err != SL_ENOTFOUND)
            abort();
        if (err == SL_ENOTFOUND && (ms != 0 || clamped))
            abort();
        if (ms > max || (clamped && ms != max))
            abort();
    }
    free(buf);
    return 0;
}
