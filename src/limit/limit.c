/*
 * The limiter: every window is made once, from the configuration, so that
 * admission allocates nothing and takes no lock. A request passes up to four
 * windows (the client's RPM and TPM, and those of its limits on the route);
 * it is charged only when all of them have room: each is reserved in turn
 * and the reservations are given back when one refuses.
 *
 * How far over a limit concurrent workers can go: not at all through races.
 * Each window's check and reservation are one compare-and-swap on its total,
 * so two workers can never both take its last unit. What remains is the
 * window's own grain: a charge expires 59 to 60 s after it was made (the
 * second it falls in counts whole), so over any 60 s a client can get its
 * limit plus what it was charged in one second, and a worker whose clock
 * runs ahead of the others' lets charges expire that much earlier for all.
 * The price of the reservations is the other way: a request refused by its
 * second window holds the first one's unit for a moment, and a request racing
 * with it may be refused although it would have fitted.
 */
#include <stdlib.h>
#include <string.h>

#include "limit/internal.h"

/* The windows a request passes, in the order they are reserved and reported. */
enum { SL_LIMIT_RPM, SL_LIMIT_TPM, SL_LIMIT_ROUTE_RPM, SL_LIMIT_ROUTE_TPM, SL_LIMIT_KINDS };
static const char *const kind_names[SL_LIMIT_KINDS] = {"rpm", "tpm", "route rpm", "route tpm"};

static int compare_route_limits(const void *a, const void *b)
{
    const struct sl_config_route_limit *x = *(const struct sl_config_route_limit *const *)a;
    const struct sl_config_route_limit *y = *(const struct sl_config_route_limit *const *)b;
    return x->route_index < y->route_index ? -1 : x->route_index > y->route_index;
}

/* Hand out the next window for `limit`, or NULL for 0 (no limit). */
static struct sl_limit_window *next_window(struct sl_limiter *l, uint64_t limit)
{
    if (limit == 0)
        return NULL;
    struct sl_limit_window *w = &l->windows[l->n_windows++];
    sl_limit_window_init(w, limit);
    return w;
}

/* A client's route limits, sorted by route for find_route (the configuration allows one
 * entry per route); entries without any limit are left out. sorted is scratch for n
 * pointers. */
static void build_routes(struct sl_limiter *l, const struct sl_config_client *cc,
                         struct sl_limit_client *c, const struct sl_config_route_limit **sorted)
{
    c->routes = &l->routes[l->n_routes];
    c->n_routes = 0;
    for (size_t k = 0; k < cc->n_route_limits; k++)
        sorted[k] = &cc->route_limits[k];
    if (cc->n_route_limits > 1)
        qsort(sorted, cc->n_route_limits, sizeof(*sorted), compare_route_limits);
    for (size_t k = 0; k < cc->n_route_limits; k++) {
        if (sorted[k]->rpm == 0 && sorted[k]->tpm == 0)
            continue;
        struct sl_limit_route *r = &c->routes[c->n_routes++];
        r->route = sorted[k]->route_index;
        r->rpm = next_window(l, sorted[k]->rpm);
        r->tpm = next_window(l, sorted[k]->tpm);
    }
    l->n_routes += c->n_routes;
}

int sl_limiter_new(const struct sl_config *cfg, struct sl_limiter **out)
{
    const struct sl_config_route_limit **sorted = NULL;
    struct sl_limiter *l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto fail;
    l->cfg = cfg;
    /* At most two windows per client and per route limit entry; limits of 0 leave some
     * unused, which costs nothing but memory. */
    size_t n_windows = 0, n_routes = 0, max_route_limits = 0;
    for (size_t i = 0; i < cfg->n_clients; i++) {
        n_windows += 2 + 2 * cfg->clients[i].n_route_limits;
        n_routes += cfg->clients[i].n_route_limits;
        max_route_limits = SL_MAX(max_route_limits, cfg->clients[i].n_route_limits);
    }
    if (cfg->n_clients > 0 && (l->clients = calloc(cfg->n_clients, sizeof(*l->clients))) == NULL)
        goto fail;
    if (n_routes > 0 && ((l->routes = calloc(n_routes, sizeof(*l->routes))) == NULL ||
                         (sorted = calloc(max_route_limits, sizeof(*sorted))) == NULL))
        goto fail;
    if (n_windows > 0) {
        /* sizeof is a multiple of the cache line (the members' _Alignas), as aligned_alloc
         * wants. */
        l->windows = aligned_alloc(SL_LIMIT_CACHE_LINE, n_windows * sizeof(*l->windows));
        if (l->windows == NULL)
            goto fail;
    }
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct sl_config_client *cc = &cfg->clients[i];
        l->clients[i].rpm = next_window(l, cc->rpm);
        l->clients[i].tpm = next_window(l, cc->tpm);
        build_routes(l, cc, &l->clients[i], sorted);
    }
    free(sorted);
    *out = l;
    return SL_OK;

fail:
    free(sorted);
    sl_limiter_free(l);
    *out = NULL;
    return SL_ENOMEM;
}

void sl_limiter_free(struct sl_limiter *l)
{
    if (l == NULL)
        return;
    free(l->windows);
    free(l->routes);
    free(l->clients);
    free(l);
}

/* The client's limits on route, or NULL. Binary search: a client has few. */
static const struct sl_limit_route *find_route(const struct sl_limit_client *c, size_t route)
{
    size_t lo = 0, hi = c->n_routes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->routes[mid].route == route)
            return &c->routes[mid];
        if (c->routes[mid].route < route)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The windows client's request on route passes, by kind (NULL: no such limit); false
 * when the client is unknown to the limiter (no limits at all). */
static bool windows_of(struct sl_limiter *l, size_t client, size_t route,
                       struct sl_limit_window *w[SL_LIMIT_KINDS])
{
    memset(w, 0, SL_LIMIT_KINDS * sizeof(*w));
    if (client >= l->cfg->n_clients)
        return false;
    const struct sl_limit_client *c = &l->clients[client];
    const struct sl_limit_route *r = find_route(c, route);
    w[SL_LIMIT_RPM] = c->rpm;
    w[SL_LIMIT_TPM] = c->tpm;
    w[SL_LIMIT_ROUTE_RPM] = r ? r->rpm : NULL;
    w[SL_LIMIT_ROUTE_TPM] = r ? r->tpm : NULL;
    return true;
}

static uint64_t charge_of(int kind, uint64_t tokens)
{
    return kind == SL_LIMIT_RPM || kind == SL_LIMIT_ROUTE_RPM ? 1 : tokens;
}

static void note_left(struct sl_limit_status *st, int kind, uint64_t left)
{
    uint64_t *field = kind == SL_LIMIT_RPM || kind == SL_LIMIT_ROUTE_RPM ? &st->remaining_requests
                                                                         : &st->remaining_tokens;
    *field = SL_MIN(*field, left);
}

/*
 * The refusal, reported for the limit that keeps the request out longest (the
 * others have room by then too), and what is left now in every window. failed is the
 * window that refused the reservation: the one named if, by the time we look again,
 * every window seems to have room (a race with a reservation given back).
 */
static void refuse(struct sl_limit_window *w[SL_LIMIT_KINDS], int failed, uint64_t tokens,
                   uint64_t now_ms, struct sl_limit_status *st)
{
    uint64_t longest = 0;
    st->which = kind_names[failed];
    for (int k = 0; k < SL_LIMIT_KINDS; k++) {
        if (w[k] == NULL)
            continue;
        note_left(st, k, sl_limit_window_left(w[k], now_ms));
        uint64_t wait = sl_limit_window_wait(w[k], charge_of(k, tokens), now_ms);
        if (wait > longest) {
            longest = wait;
            st->which = kind_names[k];
        }
    }
    st->retry_after_ms = SL_MAX(longest, 1);
}

int sl_limiter_admit(struct sl_limiter *l, size_t client, size_t route, uint64_t tokens,
                     uint64_t now_ms, struct sl_limit_ticket *ticket, struct sl_limit_status *st)
{
    struct sl_limit_window *w[SL_LIMIT_KINDS];
    *st = (struct sl_limit_status){
        .remaining_requests = UINT64_MAX, .remaining_tokens = UINT64_MAX, .which = NULL};
    *ticket = (struct sl_limit_ticket){.client = client, .route = route, .at_ms = now_ms};
    if (!windows_of(l, client, route, w))
        return SL_OK; /* nothing to count, nothing to settle */

    /* A request bigger than a whole minute's tokens can never fit: say so rather than
     * have the client wait a minute to be refused again. */
    for (int k = SL_LIMIT_TPM; k < SL_LIMIT_KINDS; k += 2) {
        if (w[k] != NULL && tokens > w[k]->limit) {
            for (int j = 0; j < SL_LIMIT_KINDS; j++)
                if (w[j] != NULL)
                    note_left(st, j, sl_limit_window_left(w[j], now_ms));
            st->which = kind_names[k];
            st->retry_after_ms = SL_LIMIT_WINDOW_MS;
            return SL_EPERM;
        }
    }

    int k;
    for (k = 0; k < SL_LIMIT_KINDS; k++) {
        uint64_t left;
        if (w[k] == NULL)
            continue;
        if (!sl_limit_window_reserve(w[k], charge_of(k, tokens), now_ms, &left))
            break;
        note_left(st, k, left);
    }
    if (k < SL_LIMIT_KINDS) {
        for (int j = 0; j < k; j++)
            if (w[j] != NULL)
                sl_limit_window_unreserve(w[j], charge_of(j, tokens));
        st->remaining_requests = st->remaining_tokens = UINT64_MAX;
        refuse(w, k, tokens, now_ms, st);
        return SL_EPERM;
    }
    for (k = 0; k < SL_LIMIT_KINDS; k++)
        if (w[k] != NULL)
            sl_limit_window_charge(w[k], charge_of(k, tokens), now_ms);
    ticket->tokens = tokens;
    ticket->active = true;
    return SL_OK;
}

void sl_limiter_settle(struct sl_limiter *l, struct sl_limit_ticket *ticket, uint64_t tokens,
                       uint64_t now_ms)
{
    struct sl_limit_window *w[SL_LIMIT_KINDS];
    if (!ticket->active)
        return;
    ticket->active = false;
    if (tokens == ticket->tokens || !windows_of(l, ticket->client, ticket->route, w))
        return;
    /* Requests stay counted: a request that failed was still made. */
    for (int k = SL_LIMIT_TPM; k < SL_LIMIT_KINDS; k += 2)
        if (w[k] != NULL)
            sl_limit_window_adjust(w[k], ticket->at_ms, ticket->tokens, tokens, now_ms);
}

/* Copy what old has counted into w (both exist; their limits may differ). */
static void copy_window(struct sl_limit_window *w, struct sl_limit_window *old)
{
    if (w == NULL || old == NULL)
        return;
    for (size_t i = 0; i < SL_LIMIT_SLOTS; i++)
        atomic_store(&w->slots[i], atomic_load(&old->slots[i]));
    atomic_store(&w->swept, atomic_load(&old->swept));
    atomic_store(&w->total, atomic_load(&old->total));
}

static const struct sl_limit_route *route_named(const struct sl_limiter *l,
                                                const struct sl_limit_client *c, const char *name)
{
    for (size_t k = 0; k < c->n_routes; k++)
        if (strcmp(l->cfg->routes[c->routes[k].route].name, name) == 0)
            return &c->routes[k];
    return NULL;
}

void sl_limiter_adopt(struct sl_limiter *l, struct sl_limiter *old)
{
    for (size_t i = 0; i < l->cfg->n_clients; i++) {
        const char *name = l->cfg->clients[i].name;
        size_t j = 0;
        while (j < old->cfg->n_clients && strcmp(old->cfg->clients[j].name, name) != 0)
            j++;
        if (j == old->cfg->n_clients)
            continue;
        struct sl_limit_client *c = &l->clients[i], *o = &old->clients[j];
        copy_window(c->rpm, o->rpm);
        copy_window(c->tpm, o->tpm);
        for (size_t k = 0; k < c->n_routes; k++) {
            const struct sl_limit_route *r =
                route_named(old, o, l->cfg->routes[c->routes[k].route].name);
            if (r) {
                copy_window(c->routes[k].rpm, r->rpm);
                copy_window(c->routes[k].tpm, r->tpm);
            }
        }
    }
}
