/*
 * Fuzz the reading of backend usage: the scanner fed in chunks whose sizes
 * come from the input's first bytes, and sl_usage_parse on the whole. Never
 * crash, never read past a chunk, and never report a usage that breaks what
 * usage.h promises (counts to 2^40, cached <= prompt, reasoning <=
 * completion, total >= prompt + completion; all 0 when not found). Where
 * the text has no whitespace (so no key can outgrow the carry), how it is
 * split must not matter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usage/usage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_SIZES 4

static void check(struct sl_usage u)
{
    if (!u.found) {
        if (u.prompt || u.cached || u.completion || u.reasoning || u.total)
            abort();
        return;
    }
    if (u.prompt > (1ull << 40) || u.completion > (1ull << 40) || u.total > (1ull << 40))
        abort();
    if (u.cached > u.prompt || u.reasoning > u.completion || u.total < u.prompt + u.completion)
        abort();
}

/* Feed text in chunks of the given sizes (cycled), each its own exact-size copy. */
static struct sl_usage scan(const char *text, size_t len, const size_t *sizes)
{
    struct sl_usage_scanner s;
    sl_usage_scanner_init(&s);
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = SL_MIN(sizes[i % N_SIZES], len - off);
        char *chunk = malloc(n);
        if (chunk == NULL)
            abort();
        memcpy(chunk, text + off, n);
        sl_usage_scanner_feed(&s, chunk, n);
        free(chunk);
        off += n;
    }
    if (s.bytes != len || (s.capture_len > SL_USAGE_CAPTURE_BYTES))
        abort();
    struct sl_usage u = sl_usage_scanner_result(&s);
    sl_usage_scanner_dispose(&s);
    return u;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < N_SIZES)
        return 0;
    size_t sizes[N_SIZES];
    for (size_t i = 0; i < N_SIZES; i++)
        sizes[i] = data[i] >= 0xf0 ? SIZE_MAX : 1 + data[i] % 48;
    size_t len = size - N_SIZES;
    char *text = malloc(len ? len : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + N_SIZES, len);

    struct sl_usage chunked = scan(text, len, sizes);
    check(chunked);
    check(sl_usage_parse((struct sl_str){text, len}));

    bool spaces = false;
    for (size_t i = 0; i < len && !spaces; i++)
        spaces = text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n';
    if (!spaces) {
        size_t whole[N_SIZES] = {SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX};
        size_t bytes[N_SIZES] = {1, 1, 1, 1};
        struct sl_usage a = scan(text, len, whole), b = scan(text, len, bytes);
        if (memcmp(&a, &chunked, sizeof(a)) != 0 || memcmp(&b, &chunked, sizeof(b)) != 0)
            abort();
    }
    free(text);
    return 0;
}
