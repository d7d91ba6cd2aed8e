/* What every fuzz target needs (tests only). */
#ifndef SL_TESTS_FUZZ_INPUT_H
#define SL_TESTS_FUZZ_INPUT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd copy of the input of exactly its size (1 byte for none), so that ASan catches
 * any read past its end; NULL when out of memory (skip the input). The caller frees it. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf != NULL && size)
        memcpy(buf, data, size);
    return buf;
}

#endif
