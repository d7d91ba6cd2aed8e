/*
 * Choosing the backend of one attempt: filter the route's pool by the query,
 * take the lowest priority group that has an available backend, prefer the
 * client's region inside it, then the lowest latency or smooth weighted round
 * robin (nginx's: every candidate gains its weight, the richest is chosen and
 * pays the total back, which spreads 5:1:1 as a a b a c a a, not a a a a a b c).
 */
#include <string.h>

#include "balance/internal.h"

/* What sl_balance_choose knows about a pool member (worker scratch). */
enum {
    MEMBER_INELIGIBLE, /* filtered out by the query */
    MEMBER_UNAVAILABLE = 1 + SL_AVAIL_NO,
    MEMBER_YES = 1 + SL_AVAIL_YES,
    MEMBER_PROBE = 1 + SL_AVAIL_PROBE,
};

bool sl_balance_eligible(const struct sl_config *cfg, const struct sl_config_route *r,
                         const struct sl_balance_query *q, size_t bi)
{
    const char *geo = cfg->backends[bi].geography;
    if (q->only != SIZE_MAX && bi != q->only)
        return false;
    if (q->allowed && !((q->allowed[bi / 64] >> (bi % 64)) & 1))
        return false;
    if (q->tried && (q->tried[bi / 64] >> (bi % 64)) & 1)
        return false;
    /* The route's own binding holds whatever the caller passes: residency is never
     * traded for availability. (The loader already keeps such members out of bound
     * routes; this is the second lock on the door.) Names compare exactly, as the
     * loader compares them. */
    for (size_t pass = 0; pass < 2; pass++) {
        const char *const *list = pass ? q->geographies : (const char *const *)r->geographies;
        size_t n = pass ? q->n_geographies : r->n_geographies;
        bool ok = n == 0;
        for (size_t i = 0; i < n && !ok && geo; i++)
            ok = strcmp(geo, list[i]) == 0;
        if (!ok)
            return false;
    }
    return true;
}

static bool in_region(const struct sl_config_backend *cb, struct sl_str region)
{
    return cb->region && sl_str_eq_ci(sl_str_from_cstr(cb->region), region);
}

/*
 * Among members [lo, hi) whose scratch is MEMBER_YES or MEMBER_PROBE (and in the
 * region, when by_region), the one to use; SIZE_MAX when none.
 */
static size_t pick_in_group(struct sl_balance_worker *w, const struct sl_config_route *r,
                            size_t route, size_t lo, size_t hi, bool by_region,
                            struct sl_str region)
{
    const struct sl_config *cfg = w->b->cfg;
    size_t best = SIZE_MAX;

    if (r->prefer_low_latency) {
        uint64_t best_ttfb = 0;
        for (size_t i = lo; i < hi; i++) {
            size_t bi = r->pool[i].backend_index;
            if (w->avail[i] != MEMBER_YES && w->avail[i] != MEMBER_PROBE)
                continue;
            if (by_region && !in_region(&cfg->backends[bi], region))
                continue;
            /* No sample yet counts as 0: a new backend gets tried, then measured. */
            uint64_t t = atomic_load_explicit(&w->b->backends[bi].ttfb_ewma, memory_order_relaxed);
            if (best == SIZE_MAX || t < best_ttfb) {
                best = i;
                best_ttfb = t;
            }
        }
        return best;
    }

    int64_t *current = w->current + w->b->routes[route].swrr_base;
    int64_t total = 0;
    for (size_t i = lo; i < hi; i++) {
        size_t bi = r->pool[i].backend_index;
        if (w->avail[i] != MEMBER_YES && w->avail[i] != MEMBER_PROBE)
            continue;
        if (by_region && !in_region(&cfg->backends[bi], region))
            continue;
        int64_t weight = (int64_t)SL_MIN(r->pool[i].weight, (uint64_t)INT32_MAX);
        current[i] += weight;
        total += weight;
        if (best == SIZE_MAX || current[i] > current[best])
            best = i;
    }
    if (best != SIZE_MAX)
        current[best] -= total;
    return best;
}

int sl_balance_choose(struct sl_balance_worker *w, const struct sl_balance_query *q,
                      uint64_t now_ms, struct sl_balance_pick *pick, uint64_t *retry_at)
{
    struct sl_balance *b = w->b;
    const struct sl_config *cfg = b->cfg;
    const struct sl_config_route *r = &cfg->routes[q->route];
    size_t n_eligible = 0;
    uint64_t soonest = UINT64_MAX;

    for (size_t i = 0; i < r->n_pool; i++) {
        size_t bi = r->pool[i].backend_index;
        w->avail[i] = MEMBER_INELIGIBLE;
        if (!sl_balance_eligible(cfg, r, q, bi))
            continue;
        n_eligible++;
        uint64_t reopen = 0;
        enum sl_balance_avail a = sl_balance_avail(&b->backends[bi], now_ms, &reopen);
        w->avail[i] = (unsigned char)(1 + a);
        w->reopen[i] = reopen;
    }
    if (n_eligible == 0)
        return SL_ENOTFOUND;

    /* Each pass either returns or marks one member unavailable (a half-open trial
     * another worker took first), so this ends. */
    for (;;) {
        size_t lo = 0, chosen = SIZE_MAX;
        while (lo < r->n_pool && chosen == SIZE_MAX) {
            size_t hi = lo;
            bool any = false, any_regional = false;
            while (hi < r->n_pool && r->pool[hi].priority == r->pool[lo].priority) {
                if (w->avail[hi] == MEMBER_YES || w->avail[hi] == MEMBER_PROBE) {
                    any = true;
                    if (q->region.len &&
                        in_region(&cfg->backends[r->pool[hi].backend_index], q->region))
                        any_regional = true;
                }
                hi++;
            }
            if (any)
                chosen = pick_in_group(w, r, q->route, lo, hi, any_regional, q->region);
            lo = hi;
        }
        if (chosen == SIZE_MAX)
            break;

        size_t bi = r->pool[chosen].backend_index;
        struct sl_balance_backend *be = &b->backends[bi];
        pick->backend = bi;
        pick->probe = w->avail[chosen] == MEMBER_PROBE && sl_balance_take_trial(be, now_ms);
        if (w->avail[chosen] == MEMBER_PROBE && !pick->probe) {
            /* Another worker took the trial, or a report changed the circuit: look again. */
            uint64_t reopen = now_ms + 1000;
            if (sl_balance_avail(be, now_ms, &reopen) != SL_AVAIL_YES) {
                w->avail[chosen] = MEMBER_UNAVAILABLE;
                w->reopen[chosen] = reopen;
                continue;
            }
        }
        atomic_fetch_add_explicit(&be->in_flight, 1, memory_order_relaxed);
        if (retry_at)
            *retry_at = now_ms;
        return SL_OK;
    }

    for (size_t i = 0; i < r->n_pool; i++)
        if (w->avail[i] == MEMBER_UNAVAILABLE)
            soonest = SL_MIN(soonest, w->reopen[i]);
    if (retry_at)
        *retry_at = SL_MAX(soonest, now_ms);
    return SL_EAGAIN;
}

void sl_balance_outlook(struct sl_balance *b, const struct sl_balance_query *q, uint64_t now_ms,
                        uint64_t *reopen_at, bool *throttled)
{
    const struct sl_config_route *r = &b->cfg->routes[q->route];
    *reopen_at = 0;
    *throttled = false;
    for (size_t m = 0; m < r->n_pool; m++) {
        size_t bi = r->pool[m].backend_index;
        if (!sl_balance_eligible(b->cfg, r, q, bi))
            continue;
        uint64_t w = atomic_load_explicit(&b->backends[bi].circuit, memory_order_acquire);
        uint64_t until = SL_CIRCUIT_UNTIL(w);
        if (SL_CIRCUIT_MODE(w) == SL_CIRCUIT_CLOSED || until <= now_ms)
            continue;
        *throttled = *throttled || SL_CIRCUIT_MODE(w) == SL_CIRCUIT_THROTTLED;
        if (*reopen_at == 0 || until < *reopen_at)
            *reopen_at = until;
    }
}
