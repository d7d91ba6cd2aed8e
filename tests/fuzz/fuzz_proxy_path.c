/*
 * Fuzz the proxy's reading of client paths: never crash, and never let a
 * path that passes the plainness check yield a target whose parts could
 * step outside it (a '..' or empty segment in the rest, an odd name).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "proxy/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    if (buf == NULL)
        return 0;
    struct sl_str path = {buf, size};
    struct sl_proxy_target t;
    bool plain = sl_proxy_path_is_plain(path);
    int err = sl_proxy_classify(path, &t);
    if (plain && err == SL_OK) {
        /* Parts are views into the path. */
        if (t.rest.len && (t.rest.base < buf || t.rest.base + t.rest.len > buf + size))
            abort();
        if (t.name.len && (t.name.base < buf || t.name.base + t.name.len > buf + size))
            abort();
        /* A plain path has no ".." segment anywhere, so neither has its rest. */
        for (size_t i = 0; i + 1 < t.rest.len; i++)
            if (t.rest.base[i] == '.' && t.rest.base[i + 1] == '.' &&
                (i == 0 || t.rest.base[i - 1] == '/') &&
                (i + 2 == t.rest.len || t.rest.base[i + 2] == '/'))
                abort();
        if (t.surface == SL_PROXY_AZURE && sl_proxy_name_is_sane(t.name) &&
            memchr(t.name.base, '/', t.name.len))
            abort();
    }
    free(buf);
    return 0;
}
