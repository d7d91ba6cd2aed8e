/*
 * Fuzz the scan of a backend's answer for the id of the object it created
 * (the answer comes from the network): never crash, never read outside the
 * text, and an id found is plain (no quote, no backslash) and not empty.
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
