/*
 * Fuzz the scan of a backend's answer for the id of the object it created
 * (the answer comes from the network): never crash, never read outside the
 * text, and an id found is plain (no quote, no backslash) and not empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that any read past the end is caught. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    struct sl_str id = sl_proxy_find_id((struct sl_str){buf, size});
    if (id.len) {
        if (id.base < buf || id.base + id.len > buf + size)
            abort();
        if (memchr(id.base, '"', id.len) || memchr(id.base, '\\', id.len))
            abort();
    }
    free(buf);
    return 0;
}
