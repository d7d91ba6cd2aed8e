/*
 * The shards' tables: entries in chunks that never move (readers on other
 * threads hold no lock while the writer adds), found by the writer through
 * an open-addressing index of its own.
 */
#include "metrics/internal.h"

#include <stdlib.h>
#include <string.h>

int sl_metrics_table_init(struct sl_metrics_table *t, size_t entry_size, size_t cap)
{
    memset(t, 0, sizeof(*t));
    t->entry_size = entry_size;
    t->cap = cap;
    atomic_init(&t->n, 0);
    t->chunks = calloc(cap / SL_METRICS_CHUNK + 1, sizeof(*t->chunks));
    t->n_slots = 64;
    t->slots = calloc(t->n_slots, sizeof(*t->slots));
    if (t->chunks == NULL || t->slots == NULL) {
        sl_metrics_table_dispose(t);
        return SL_ENOMEM;
    }
    return SL_OK;
}

void sl_metrics_table_dispose(struct sl_metrics_table *t)
{
    for (size_t i = 0; t->chunks && i <= t->cap / SL_METRICS_CHUNK; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->slots);
    t->chunks = NULL;
    t->slots = NULL;
}

void *sl_metrics_table_find(const struct sl_metrics_table *t, uint64_t hash,
                            bool (*eq)(const void *entry, const void *key), const void *key)
{
    size_t mask = t->n_slots - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        uint32_t s = t->slots[i];
        if (s == 0)
            return NULL;
        struct sl_metrics_entry *e = sl_metrics_table_at(t, s - 1);
        if (e->hash == hash && eq(e, key))
            return e;
    }
}

/* Put entry number idx into slots (which has room). */
static void index_put(uint32_t *slots, size_t n_slots, uint64_t hash, uint32_t idx)
{
    size_t mask = n_slots - 1, i = (size_t)hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = idx + 1;
}

/* Keep the index at most half full: double it (rehashing every entry) when it would not be. */
static int index_grow(struct sl_metrics_table *t, size_t n)
{
    if ((n + 1) * 2 <= t->n_slots)
        return SL_OK;
    size_t n_slots = t->n_slots * 2;
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct sl_metrics_entry *e = sl_metrics_table_at(t, i);
        index_put(slots, n_slots, e->hash, (uint32_t)i);
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return SL_OK;
}

void *sl_metrics_table_add(struct sl_metrics_table *t, uint64_t hash, size_t limit)
{
    size_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
    if (n >= limit || n >= t->cap)
        return NULL;
    void **chunk = &t->chunks[n / SL_METRICS_CHUNK];
    if (*chunk == NULL && (*chunk = calloc(SL_METRICS_CHUNK, t->entry_size)) == NULL)
        return NULL;
    if (index_grow(t, n) != SL_OK)
        return NULL;
    struct sl_metrics_entry *e = sl_metrics_table_at(t, n);
    e->hash = hash;
    index_put(t->slots, t->n_slots, hash, (uint32_t)n);
    return e;
}

void sl_metrics_table_publish(struct sl_metrics_table *t)
{
    size_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
    atomic_store_explicit(&t->n, n + 1, memory_order_release);
}

uint64_t sl_metrics_hash(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    /* A separator, so that ("ab", "c") and ("a", "bc") differ. */
    h ^= 0xff;
    h *= 0x100000001b3ull;
    return h;
}
