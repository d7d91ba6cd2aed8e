/*
 * The registry and what workers record into it. Each shard is written by
 * its worker thread only: a counter is bumped with a relaxed load and store
 * (no read-modify-write, no lock prefix), which readers on other threads
 * see whole. Nothing is allocated per call once a label combination exists.
 */
#include "metrics/internal.h"

#include <stdlib.h>
#include <string.h>

/* The OpenTelemetry GenAI conventions' advised bucket boundaries. */
static const uint64_t duration_ms[] = {10,   20,   40,   80,    160,   320,   640,
                                       1280, 2560, 5120, 10240, 20480, 40960, 81920};
static const uint64_t ttft_ms[] = {1,   5,   10,  20,   40,   60,   80,   100,
                                   250, 500, 750, 1000, 2500, 5000, 7500, 10000};
static const uint64_t tokens[] = {1,     4,     16,     64,      256,     1024,     4096,
                                  16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};

const struct sl_metrics_layout sl_metrics_duration_layout = {duration_ms, SL_ARRAY_LEN(duration_ms),
                                                             true};
const struct sl_metrics_layout sl_metrics_ttft_layout = {ttft_ms, SL_ARRAY_LEN(ttft_ms), true};
const struct sl_metrics_layout sl_metrics_tokens_layout = {tokens, SL_ARRAY_LEN(tokens), false};

int sl_metrics_new(unsigned n_shards, size_t max_series, struct sl_metrics **out)
{
    struct sl_metrics *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (m == NULL)
        return SL_ENOMEM;
    m->n_shards = n_shards ? n_shards : 1;
    if (max_series == 0)
        max_series = SL_METRICS_MAX_SERIES;
    size_t bytes = m->n_shards * sizeof(*m->shards);
    bytes = (bytes + SL_METRICS_CACHE_LINE - 1) / SL_METRICS_CACHE_LINE * SL_METRICS_CACHE_LINE;
    m->shards = aligned_alloc(SL_METRICS_CACHE_LINE, bytes);
    if (m->shards == NULL) {
        free(m);
        return SL_ENOMEM;
    }
    memset(m->shards, 0, bytes);
    int err = SL_OK;
    for (unsigned i = 0; i < m->n_shards && err == SL_OK; i++) {
        struct sl_metrics_shard *s = &m->shards[i];
        s->max_series = max_series;
        atomic_init(&s->overflow, 0);
        err = sl_metrics_table_init(&s->series, sizeof(struct sl_metrics_series),
                                    max_series + SL_METRICS_STATUSES);
        if (err == SL_OK)
            err = sl_metrics_table_init(&s->routes, sizeof(struct sl_metrics_route),
                                        SL_METRICS_MAX_NAMES);
        if (err == SL_OK)
            err =
                sl_metrics_table_init(&s->ptu, sizeof(struct sl_metrics_ptu), SL_METRICS_MAX_NAMES);
    }
    if (err) {
        sl_metrics_free(m);
        return err;
    }
    *out = m;
    return SL_OK;
}

void sl_metrics_free(struct sl_metrics *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < m->n_shards; i++) {
        sl_metrics_table_dispose(&m->shards[i].series);
        sl_metrics_table_dispose(&m->shards[i].routes);
        sl_metrics_table_dispose(&m->shards[i].ptu);
    }
    free(m->shards);
    free(m);
}

uint64_t sl_metrics_overflow(const struct sl_metrics *m)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < m->n_shards; i++)
        n += atomic_load_explicit(&m->shards[i].overflow, memory_order_relaxed);
    return n;
}

const char *sl_metrics_status_class(int status)
{
    static const char *const classes[] = {"cut", "1xx", "2xx", "3xx", "4xx", "5xx"};
    if (status >= 100 && status < 600)
        return classes[status / 100];
    return status == 0 ? "cut" : "other";
}

/* ---- recording ---- */

/* Add v to a counter only this thread writes. */
static inline void bump(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static void observe(struct sl_metrics_hist *h, const struct sl_metrics_layout *l, uint64_t v)
{
    size_t i = 0;
    while (i < l->n && v > l->bounds[i])
        i++;
    bump(&h->bucket[i], 1);
    bump(&h->sum, v);
}

static struct sl_metrics_shard *shard_of(struct sl_metrics *m, unsigned shard)
{
    return &m->shards[shard < m->n_shards ? shard : shard % m->n_shards];
}

/* Copy a NUL-terminated string into a fixed field, cut to fit. */
static void put(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

struct series_key {
    const char *client, *route, *backend, *model;
    int status;
};

static bool series_eq(const void *entry, const void *key)
{
    const struct sl_metrics_series *s = entry;
    const struct series_key *k = key;
    return s->status == k->status && strcmp(s->client, k->client) == 0 &&
           strcmp(s->route, k->route) == 0 && strcmp(s->backend, k->backend) == 0 &&
           strcmp(s->model, k->model) == 0;
}

static uint64_t series_hash(const struct series_key *k)
{
    uint64_t h = SL_METRICS_HASH_SEED;
    h = sl_metrics_hash(h, k->client);
    h = sl_metrics_hash(h, k->route);
    h = sl_metrics_hash(h, k->backend);
    h = sl_metrics_hash(h, k->model);
    return (h ^ (uint64_t)k->status) * 0x9e3779b97f4a7c15ull;
}

static struct sl_metrics_series *series_add(struct sl_metrics_table *t, uint64_t hash,
                                            const struct series_key *k, size_t limit)
{
    struct sl_metrics_series *s = sl_metrics_table_add(t, hash, limit);
    if (s == NULL)
        return NULL;
    s->status = k->status;
    put(s->client, sizeof(s->client), k->client);
    put(s->route, sizeof(s->route), k->route);
    put(s->backend, sizeof(s->backend), k->backend);
    put(s->model, sizeof(s->model), k->model);
    sl_metrics_table_publish(t);
    return s;
}

/* The series of k in shard s: found, added, or else the overflow series of k's status. */
static struct sl_metrics_series *series_of(struct sl_metrics_shard *s, struct series_key *k)
{
    uint64_t hash = series_hash(k);
    struct sl_metrics_series *e = sl_metrics_table_find(&s->series, hash, series_eq, k);
    if (e || (e = series_add(&s->series, hash, k, s->max_series)))
        return e;
    bump(&s->overflow, 1);
    k->client = k->route = k->backend = k->model = SL_METRICS_OTHER;
    hash = series_hash(k);
    e = sl_metrics_table_find(&s->series, hash, series_eq, k);
    return e ? e : series_add(&s->series, hash, k, s->series.cap);
}

void sl_metrics_observe(struct sl_metrics *m, unsigned shard, const struct sl_ledger_record *r,
                        bool spill)
{
    struct sl_metrics_shard *s = shard_of(m, shard);
    struct series_key k = {r->client, r->route, r->backend, r->model,
                           r->status < 0 ? 0 : SL_MIN(r->status, SL_METRICS_STATUSES - 1)};
    struct sl_metrics_series *e = series_of(s, &k);
    if (e == NULL)
        return; /* out of memory: the call goes uncounted */
    const struct sl_usage *u = &r->usage;
    bump(&e->requests, 1);
    if (spill)
        bump(&e->spill, 1);
    if (r->attempts > 1)
        bump(&e->retries, r->attempts - 1);
    if (u->prompt)
        bump(&e->prompt, u->prompt);
    if (u->cached)
        bump(&e->cached, u->cached);
    if (u->completion)
        bump(&e->completion, u->completion);
    if (u->reasoning)
        bump(&e->reasoning, u->reasoning);
    if (r->cost)
        bump(&e->cost, r->cost);
    observe(&e->duration, &sl_metrics_duration_layout, r->latency_ms);
    if (r->status >= 200 && r->status < 300)
        observe(&e->ttft, &sl_metrics_ttft_layout, r->ttft_ms);
    if (u->found || r->estimated) {
        observe(&e->input, &sl_metrics_tokens_layout, u->prompt);
        observe(&e->output, &sl_metrics_tokens_layout, u->completion);
    }
}

/* ---- routes and backends by name ---- */

static bool name_eq_route(const void *entry, const void *key)
{
    return strcmp(((const struct sl_metrics_route *)entry)->name, key) == 0;
}

static bool name_eq_ptu(const void *entry, const void *key)
{
    return strcmp(((const struct sl_metrics_ptu *)entry)->name, key) == 0;
}

void sl_metrics_queue_add(struct sl_metrics *m, unsigned shard, const char *route, int delta)
{
    struct sl_metrics_shard *s = shard_of(m, shard);
    uint64_t hash = sl_metrics_hash(SL_METRICS_HASH_SEED, route);
    struct sl_metrics_route *e = sl_metrics_table_find(&s->routes, hash, name_eq_route, route);
    if (e == NULL) {
        if ((e = sl_metrics_table_add(&s->routes, hash, s->routes.cap)) == NULL) {
            bump(&s->overflow, 1);
            return;
        }
        put(e->name, sizeof(e->name), route);
        sl_metrics_table_publish(&s->routes);
    }
    int64_t v = atomic_load_explicit(&e->waiting, memory_order_relaxed) + delta;
    atomic_store_explicit(&e->waiting, v, memory_order_relaxed);
}

void sl_metrics_ptu(struct sl_metrics *m, unsigned shard, const char *backend, uint64_t ppm,
                    uint64_t now_ms)
{
    struct sl_metrics_shard *s = shard_of(m, shard);
    uint64_t hash = sl_metrics_hash(SL_METRICS_HASH_SEED, backend);
    struct sl_metrics_ptu *e = sl_metrics_table_find(&s->ptu, hash, name_eq_ptu, backend);
    if (e == NULL) {
        if ((e = sl_metrics_table_add(&s->ptu, hash, s->ptu.cap)) == NULL) {
            bump(&s->overflow, 1);
            return;
        }
        put(e->name, sizeof(e->name), backend);
        sl_metrics_table_publish(&s->ptu);
    }
    atomic_store_explicit(&e->ppm, ppm, memory_order_relaxed);
    atomic_store_explicit(&e->at_ms, now_ms ? now_ms : 1, memory_order_relaxed);
}

int sl_metrics_parse_utilization(struct sl_str v, uint64_t *ppm)
{
    size_t i = 0;
    uint64_t whole = 0, frac = 0, scale = 10000; /* ppm per unit of percent */
    while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t'))
        i++;
    size_t digits = 0;
    for (; i < v.len && v.base[i] >= '0' && v.base[i] <= '9'; i++, digits++) {
        whole = whole * 10 + (uint64_t)(v.base[i] - '0');
        if (whole > 1000)
            return SL_EINVAL;
    }
    if (i < v.len && v.base[i] == '.') {
        for (i++; i < v.len && v.base[i] >= '0' && v.base[i] <= '9'; i++, digits++) {
            scale /= 10;
            frac += (uint64_t)(v.base[i] - '0') * scale; /* digits past ppm resolution add 0 */
        }
    }
    while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t'))
        i++;
    if (i < v.len && v.base[i] == '%')
        i++;
    while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t'))
        i++;
    if (digits == 0 || i != v.len)
        return SL_EINVAL;
    uint64_t total = whole * 10000 + frac;
    if (total > 1000 * 10000ull)
        return SL_EINVAL;
    *ppm = total;
    return SL_OK;
}
