#include "core/core.h"

#include <stdlib.h>
#include <string.h>

/* One block of arena memory; data follows the header. */
struct sl_arena_block {
    struct sl_arena_block *next;
    size_t size;
    size_t used;
    max_align_t data[];
};

void sl_arena_init(struct sl_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 4096;
}

void *sl_arena_alloc(struct sl_arena *a, size_t size)
{
    const size_t align = _Alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    struct sl_arena_block *blk = a->head;
    if (blk == NULL || blk->size - blk->used < size) {
        size_t bsize = size > a->block_size ? size : a->block_size;
        blk = malloc(sizeof(*blk) + bsize);
        if (blk == NULL)
            return NULL;
        blk->size = bsize;
        blk->used = 0;
        /* A block for one oversize object goes behind the current one, so the
         * current block keeps serving small allocations. */
        if (a->head && size > a->block_size) {
            blk->next = a->head->next;
            a->head->next = blk;
        } else {
            blk->next = a->head;
            a->head = blk;
        }
    }
    void *p = (char *)blk->data + blk->used;
    blk->used += size;
    return p;
}

char *sl_arena_strdup(struct sl_arena *a, struct sl_str s)
{
    char *p = sl_arena_alloc(a, s.len + 1);
    if (p == NULL)
        return NULL;
    if (s.len)
        memcpy(p, s.base, s.len);
    p[s.len] = '\0';
    return p;
}

void sl_arena_reset(struct sl_arena *a)
{
    struct sl_arena_block *keep = NULL, *blk = a->head;
    while (blk) {
        struct sl_arena_block *next = blk->next;
        if (keep == NULL && blk->size == a->block_size) {
            keep = blk;
        } else {
            free(blk);
        }
        blk = next;
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    a->head = keep;
}

void sl_arena_dispose(struct sl_arena *a)
{
    struct sl_arena_block *blk = a->head;
    while (blk) {
        struct sl_arena_block *next = blk->next;
        free(blk);
        blk = next;
    }
    a->head = NULL;
}
