/*
 * The balance of one configuration: its shared state's life cycle, the
 * per-worker round robin state, readiness and the /sluice/status document.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "balance/internal.h"

/* calloc for over-aligned structs (the cache-line-aligned shared state). */
static void *zalloc_aligned(size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size > SIZE_MAX / n)
        return NULL;
    size_t bytes = n * size;
    bytes = (bytes + SL_BALANCE_CACHE_LINE - 1) / SL_BALANCE_CACHE_LINE * SL_BALANCE_CACHE_LINE;
    void *p = aligned_alloc(SL_BALANCE_CACHE_LINE, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

int sl_balance_new(const struct sl_config *cfg, struct sl_balance **out)
{
    struct sl_balance *b = calloc(1, sizeof(*b));
    size_t n_backends_init = 0;
    bool pins_init = false;
    *out = NULL;
    if (b == NULL)
        goto fail;
    b->cfg = cfg;
    b->backends = zalloc_aligned(cfg->n_backends, sizeof(*b->backends));
    b->routes = zalloc_aligned(cfg->n_routes, sizeof(*b->routes));
    if (b->backends == NULL || b->routes == NULL)
        goto fail;
    for (; n_backends_init < cfg->n_backends; n_backends_init++)
        sl_balance_backend_init(&b->backends[n_backends_init]);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct sl_balance_route *r = &b->routes[i];
        for (size_t k = 0; k < 2; k++) {
            atomic_init(&r->win[k].epoch, 0);
            atomic_init(&r->win[k].requests, 0);
            atomic_init(&r->win[k].retries, 0);
        }
        r->swrr_base = b->n_swrr;
        b->n_swrr += cfg->routes[i].n_pool;
        b->max_pool = SL_MAX(b->max_pool, cfg->routes[i].n_pool);
    }
    /* Pin keys come from clients and upstreams: an unguessable hash key keeps anyone
     * from filling one chain on purpose. A failed getrandom leaves a weaker, still
     * per-process, key. */
    if (getrandom(b->hash_key, sizeof(b->hash_key), GRND_NONBLOCK) !=
        (ssize_t)sizeof(b->hash_key)) {
        b->hash_key[0] = sl_clock_mono_us() * 0x9e3779b97f4a7c15ull;
        b->hash_key[1] = (uint64_t)(uintptr_t)b * 0xbf58476d1ce4e5b9ull;
    }
    if (sl_balance_pins_init(b) != SL_OK)
        goto fail;
    pins_init = true;
    *out = b;
    return SL_OK;

fail:
    if (b) {
        if (pins_init)
            sl_balance_pins_dispose(b);
        for (size_t i = 0; i < n_backends_init; i++)
            sl_balance_backend_dispose(&b->backends[i]);
        free(b->backends);
        free(b->routes);
        free(b);
    }
    return SL_ENOMEM;
}

void sl_balance_free(struct sl_balance *b)
{
    if (b == NULL)
        return;
    sl_balance_pins_dispose(b);
    for (size_t i = 0; i < b->cfg->n_backends; i++)
        sl_balance_backend_dispose(&b->backends[i]);
    free(b->backends);
    free(b->routes);
    free(b);
}

int sl_balance_worker_new(struct sl_balance *b, struct sl_balance_worker **out)
{
    struct sl_balance_worker *w = calloc(1, sizeof(*w));
    *out = NULL;
    if (w == NULL)
        goto fail;
    w->b = b;
    w->current = calloc(b->n_swrr ? b->n_swrr : 1, sizeof(*w->current));
    w->avail = calloc(b->max_pool ? b->max_pool : 1, sizeof(*w->avail));
    w->reopen = calloc(b->max_pool ? b->max_pool : 1, sizeof(*w->reopen));
    if (w->current == NULL || w->avail == NULL || w->reopen == NULL)
        goto fail;
    *out = w;
    return SL_OK;

fail:
    sl_balance_worker_free(w);
    return SL_ENOMEM;
}

void sl_balance_worker_free(struct sl_balance_worker *w)
{
    if (w == NULL)
        return;
    free(w->current);
    free(w->avail);
    free(w->reopen);
    free(w);
}

/* ---- availability ---- */

static bool in_geographies(const char *geo, char *const *list, size_t n)
{
    if (n == 0)
        return true;
    if (geo == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(geo, list[i]) == 0)
            return true;
    return false;
}

bool sl_balance_route_available(struct sl_balance *b, size_t route, uint64_t now_ms)
{
    const struct sl_config_route *r = &b->cfg->routes[route];
    for (size_t i = 0; i < r->n_pool; i++) {
        size_t bi = r->pool[i].backend_index;
        uint64_t reopen;
        if (!in_geographies(b->cfg->backends[bi].geography, r->geographies, r->n_geographies))
            continue;
        if (sl_balance_avail(&b->backends[bi], now_ms, &reopen) != SL_AVAIL_NO)
            return true;
    }
    return false;
}

bool sl_balance_ready(struct sl_balance *b, uint64_t now_ms, struct sl_buf *down)
{
    const struct sl_config *cfg = b->cfg;
    size_t n_down = 0;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        if (sl_balance_route_available(b, i, now_ms))
            continue;
        if (down) {
            /* Out of memory only shortens the list; readiness itself is still right. */
            if (n_down)
                sl_buf_append(down, ",", 1);
            sl_buf_append_str(down, sl_str_from_cstr(cfg->routes[i].name));
        }
        n_down++;
    }
    /* No routes at all (a simulator-only process): nothing is missing. */
    if (cfg->n_routes == 0)
        return true;
    if (cfg->routing.readiness == SL_READINESS_ALL)
        return n_down < cfg->n_routes;
    return n_down == 0;
}

/* ---- /sluice/status ---- */

/* Unix ms as a JSON string, RFC 3339 UTC with milliseconds. */
static int append_time(struct sl_buf *out, uint64_t unix_ms)
{
    char when[40];
    sl_clock_format((int64_t)unix_ms, true, when, sizeof(when));
    return sl_buf_appendf(out, "\"%s\"", when);
}

/* s as a JSON string, or null. */
static int append_string(struct sl_buf *out, const char *s)
{
    int err;
    if (s == NULL)
        return sl_buf_append(out, "null", 4);
    if ((err = sl_buf_append(out, "\"", 1)) != SL_OK ||
        (err = sl_buf_append_json_escaped(out, sl_str_from_cstr(s))) != SL_OK)
        return err;
    return sl_buf_append(out, "\"", 1);
}

static int append_backend(struct sl_balance *b, size_t i, uint64_t now_ms, uint64_t now_unix_ms,
                          struct sl_buf *out)
{
    const struct sl_config_backend *cb = &b->cfg->backends[i];
    struct sl_balance_backend *be = &b->backends[i];
    uint64_t until, success, errors, throttled;
    char why[sizeof(be->why)];
    int last_status, err;

    enum sl_balance_state st = sl_balance_backend_state(be, now_ms, &until);
    sl_balance_backend_counts(be, now_ms, &success, &errors, &throttled);
    pthread_mutex_lock(&be->why_lock);
    memcpy(why, be->why, sizeof(why));
    last_status = be->last_status;
    pthread_mutex_unlock(&be->why_lock);
    uint64_t ewma = atomic_load_explicit(&be->ttfb_ewma, memory_order_relaxed);
    int64_t in_flight = atomic_load_explicit(&be->in_flight, memory_order_relaxed);

    if ((err = sl_buf_append(out, "{\"name\":", 8)) != SL_OK ||
        (err = append_string(out, cb->name)) != SL_OK ||
        (err = sl_buf_appendf(out, ",\"state\":\"%s\",\"until\":", sl_balance_state_name(st))) !=
            SL_OK)
        goto fail;
    if (until)
        err = append_time(out, now_unix_ms + (until - now_ms));
    else
        err = sl_buf_append(out, "null", 4);
    if (err != SL_OK)
        goto fail;
    /* The reason explains a circuit that is not closed; the last bad status stays
     * visible after it closed again. */
    if ((err = sl_buf_append(out, ",\"reason\":", 10)) != SL_OK ||
        (err = append_string(out, st != SL_BALANCE_CLOSED && why[0] ? why : NULL)) != SL_OK)
        goto fail;
    if (last_status)
        err = sl_buf_appendf(out, ",\"last_status\":%d", last_status);
    else
        err = sl_buf_append(out, ",\"last_status\":null", 19);
    if (err != SL_OK)
        goto fail;
    if ((err = sl_buf_appendf(out, ",\"consecutive_failures\":%u,\"in_flight\":%lld,\"ttfb_ms\":",
                              (unsigned)atomic_load_explicit(&be->failures, memory_order_relaxed),
                              (long long)(in_flight > 0 ? in_flight : 0))) != SL_OK)
        goto fail;
    if (ewma)
        err = sl_buf_append_u64(out, ((ewma - 1) + 500) / 1000);
    else
        err = sl_buf_append(out, "null", 4);
    if (err != SL_OK)
        goto fail;
    if ((err = sl_buf_appendf(out, ",\"success\":%llu,\"errors\":%llu,\"throttled\":%llu",
                              (unsigned long long)success, (unsigned long long)errors,
                              (unsigned long long)throttled)) != SL_OK ||
        (err = sl_buf_append(out, ",\"region\":", 10)) != SL_OK ||
        (err = append_string(out, cb->region)) != SL_OK ||
        (err = sl_buf_append(out, ",\"geography\":", 13)) != SL_OK ||
        (err = append_string(out, cb->geography)) != SL_OK ||
        (err = sl_buf_append(out, "}", 1)) != SL_OK)
        goto fail;
    return SL_OK;

fail:
    return err;
}

static int append_route(struct sl_balance *b, size_t i, uint64_t now_ms, struct sl_buf *out)
{
    const struct sl_config_route *r = &b->cfg->routes[i];
    uint64_t requests, retries;
    int err;

    sl_balance_route_window(b, i, now_ms, &requests, &retries);
    if ((err = sl_buf_append(out, "{\"name\":", 8)) != SL_OK ||
        (err = append_string(out, r->name)) != SL_OK ||
        (err = sl_buf_appendf(out, ",\"available\":%s,\"requests\":%llu,\"retries\":%llu",
                              sl_balance_route_available(b, i, now_ms) ? "true" : "false",
                              (unsigned long long)requests, (unsigned long long)retries)) !=
            SL_OK ||
        (err = sl_buf_append(out, ",\"backends\":[", 13)) != SL_OK)
        goto fail;
    for (size_t k = 0; k < r->n_pool; k++) {
        const struct sl_config_pool_member *m = &r->pool[k];
        if ((k && (err = sl_buf_append(out, ",", 1)) != SL_OK) ||
            (err = sl_buf_append(out, "{\"name\":", 8)) != SL_OK ||
            (err = append_string(out, b->cfg->backends[m->backend_index].name)) != SL_OK ||
            (err = sl_buf_appendf(out, ",\"priority\":%llu,\"weight\":%llu}",
                                  (unsigned long long)m->priority,
                                  (unsigned long long)m->weight)) != SL_OK)
            goto fail;
    }
    err = sl_buf_append(out, "]}", 2);
fail:
    return err;
}

int sl_balance_status_json(struct sl_balance *b, uint64_t now_ms, uint64_t now_unix_ms,
                           struct sl_buf *out)
{
    const struct sl_config *cfg = b->cfg;
    int err;

    if ((err = sl_buf_append(out, "{\"time\":", 8)) != SL_OK ||
        (err = append_time(out, now_unix_ms)) != SL_OK ||
        (err = sl_buf_appendf(out, ",\"ready\":%s,\"routes\":[",
                              sl_balance_ready(b, now_ms, NULL) ? "true" : "false")) != SL_OK)
        goto fail;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if ((i && (err = sl_buf_append(out, ",", 1)) != SL_OK) ||
            (err = append_route(b, i, now_ms, out)) != SL_OK)
            goto fail;
    if ((err = sl_buf_append(out, "],\"backends\":[", 14)) != SL_OK)
        goto fail;
    for (size_t i = 0; i < cfg->n_backends; i++)
        if ((i && (err = sl_buf_append(out, ",", 1)) != SL_OK) ||
            (err = append_backend(b, i, now_ms, now_unix_ms, out)) != SL_OK)
            goto fail;
    err = sl_buf_append(out, "]}", 2);
fail:
    return err;
}

void sl_balance_for_each_backend(struct sl_balance *b, uint64_t now_ms,
                                 void (*fn)(void *arg, const struct sl_balance_backend_view *v),
                                 void *arg)
{
    for (size_t i = 0; i < b->cfg->n_backends; i++) {
        struct sl_balance_backend *be = &b->backends[i];
        struct sl_balance_backend_view v = {.name = b->cfg->backends[i].name};
        v.state = sl_balance_backend_state(be, now_ms, &v.until_ms);
        int64_t in_flight = atomic_load_explicit(&be->in_flight, memory_order_relaxed);
        v.in_flight = in_flight > 0 ? (uint64_t)in_flight : 0;
        uint64_t ewma = atomic_load_explicit(&be->ttfb_ewma, memory_order_relaxed);
        v.ttfb_us = ewma ? ewma - 1 : 0;
        fn(arg, &v);
    }
}

void sl_balance_adopt(struct sl_balance *b, struct sl_balance *old)
{
    for (size_t i = 0; i < b->cfg->n_backends; i++) {
        const char *name = b->cfg->backends[i].name;
        size_t j = 0;
        while (j < old->cfg->n_backends && strcmp(old->cfg->backends[j].name, name) != 0)
            j++;
        if (j == old->cfg->n_backends)
            continue;
        struct sl_balance_backend *to = &b->backends[i], *from = &old->backends[j];
        /* A trial running on the old state stays its own: the new state starts without one. */
        uint64_t circuit = atomic_load(&from->circuit) & ~SL_CIRCUIT_TRIAL;
        atomic_store(&to->circuit, circuit);
        atomic_store(&to->failures, atomic_load(&from->failures));
        atomic_store(&to->level, atomic_load(&from->level));
        atomic_store(&to->ttfb_ewma, atomic_load(&from->ttfb_ewma));
        for (size_t k = 0; k < SL_BALANCE_BUCKETS; k++) {
            atomic_store(&to->buckets[k].epoch, atomic_load(&from->buckets[k].epoch));
            atomic_store(&to->buckets[k].success, atomic_load(&from->buckets[k].success));
            atomic_store(&to->buckets[k].errors, atomic_load(&from->buckets[k].errors));
            atomic_store(&to->buckets[k].throttled, atomic_load(&from->buckets[k].throttled));
        }
        pthread_mutex_lock(&from->why_lock);
        memcpy(to->why, from->why, sizeof(to->why));
        to->last_status = from->last_status;
        pthread_mutex_unlock(&from->why_lock);
    }
    sl_balance_pins_adopt(b, old);
}
