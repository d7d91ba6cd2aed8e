/*
 * metrics internals: the per-shard tables and the histogram layouts. Private
 * to src/metrics/ (and its unit tests).
 */
#ifndef SL_METRICS_INTERNAL_H
#define SL_METRICS_INTERNAL_H

#include "metrics/metrics.h"

#include <stdatomic.h>

#define SL_METRICS_CACHE_LINE 64
/* Entries are allocated this many at a time, so that they never move. */
#define SL_METRICS_CHUNK 64
/* Statuses are clamped to 0..999: at most this many overflow series per shard. */
#define SL_METRICS_STATUSES 1000
/* Routes (queue gauge) and backends (PTU) tracked per shard. */
#define SL_METRICS_MAX_NAMES 4096

/* Histogram upper bounds, in the unit observed (ms or tokens); +Inf is implicit. */
#define SL_METRICS_MAX_BUCKETS 16
struct sl_metrics_layout {
    const uint64_t *bounds;
    size_t n;    /* bounds in use (<= SL_METRICS_MAX_BUCKETS) */
    bool millis; /* bounds and sum are ms, exposed as seconds */
};
extern const struct sl_metrics_layout sl_metrics_duration_layout, sl_metrics_ttft_layout,
    sl_metrics_tokens_layout;

/* Counts per bucket (not cumulative; the last one is +Inf) and the sum. The count is the
 * buckets' sum, so that `le="+Inf"` and `_count` always agree. */
struct sl_metrics_hist {
    _Atomic uint64_t bucket[SL_METRICS_MAX_BUCKETS + 1];
    _Atomic uint64_t sum;
};

/*
 * A table of fixed-size entries that one thread adds to and any thread
 * reads: entries live in chunks that never move; n is published with
 * release once an entry's key is written, so a reader that loads it with
 * acquire sees every key below it. The hash index (slots) is the writer's
 * alone and grows by reallocation.
 */
struct sl_metrics_table {
    size_t entry_size;
    size_t cap;       /* entries at most */
    void **chunks;    /* owned: cap / SL_METRICS_CHUNK + 1 pointers; chunks owned */
    _Atomic size_t n; /* entries published */
    uint32_t *slots;  /* owned: n_slots entry numbers + 1 (0: empty), a power of two */
    size_t n_slots;
};

/* Every entry starts with this. */
struct sl_metrics_entry {
    uint64_t hash;
};

/* One label combination of finished calls. Keys are written once, before publication. */
struct sl_metrics_series {
    struct sl_metrics_entry e;
    int status; /* 0..999; 0: the connection was cut */
    char client[64], route[129], backend[64], model[129];
    _Atomic uint64_t requests, spill, retries;
    _Atomic uint64_t prompt, cached, completion, reasoning, cost; /* cost: micro-USD */
    struct sl_metrics_hist duration, ttft, input, output;
};

/* A route's calls waiting for a backend on this shard's worker (summed on scrape). */
struct sl_metrics_route {
    struct sl_metrics_entry e;
    char name[129];
    _Atomic int64_t waiting;
};

/* A backend's last reported PTU utilisation. */
struct sl_metrics_ptu {
    struct sl_metrics_entry e;
    char name[64];
    _Atomic uint64_t ppm;
    _Atomic uint64_t at_ms; /* monotonic; 0: never */
};

struct sl_metrics_shard {
    _Alignas(SL_METRICS_CACHE_LINE) struct sl_metrics_table series, routes, ptu;
    size_t max_series; /* ordinary combinations; the rest of series.cap is for overflow */
    _Atomic uint64_t overflow;
};

struct sl_metrics {
    struct sl_metrics_shard *shards; /* owned: n_shards (aligned_alloc) */
    unsigned n_shards;
};

/* table.c */
int sl_metrics_table_init(struct sl_metrics_table *t, size_t entry_size, size_t cap);
void sl_metrics_table_dispose(struct sl_metrics_table *t);
/* Entry i (< published n) */
static inline void *sl_metrics_table_at(const struct sl_metrics_table *t, size_t i)
{
    return (char *)t->chunks[i / SL_METRICS_CHUNK] + (i % SL_METRICS_CHUNK) * t->entry_size;
}
/* The writer's lookup: the entry with hash for which eq(entry, key) holds, or NULL. */
void *sl_metrics_table_find(const struct sl_metrics_table *t, uint64_t hash,
                            bool (*eq)(const void *entry, const void *key), const void *key);
/* A new zeroed entry with hash, indexed but not yet published (the caller fills the key,
 * then calls sl_metrics_table_publish); NULL when limit entries exist or memory is short. */
void *sl_metrics_table_add(struct sl_metrics_table *t, uint64_t hash, size_t limit);
void sl_metrics_table_publish(struct sl_metrics_table *t);
/* Published entries, for readers. */
static inline size_t sl_metrics_table_count(const struct sl_metrics_table *t)
{
    return atomic_load_explicit(&((struct sl_metrics_table *)t)->n, memory_order_acquire);
}

/* FNV-1a over s (NUL-terminated), continuing from h. */
uint64_t sl_metrics_hash(uint64_t h, const char *s);
#define SL_METRICS_HASH_SEED 0xcbf29ce484222325ull

/* "2xx", "4xx", "cut"... */
const char *sl_metrics_status_class(int status);

#endif
