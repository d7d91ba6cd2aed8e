/*
 * limit internals: the sliding-minute window behind every limit and the
 * limiter's tables. Private to src/limit/ (and its unit tests).
 */
#ifndef SL_LIMIT_INTERNAL_H
#define SL_LIMIT_INTERNAL_H

#include <stdatomic.h>

#include "limit/limit.h"

/* Windows are written by every worker: give each its own cache lines. */
#define SL_LIMIT_CACHE_LINE 64

/*
 * One limit (a client's RPM, a client's TPM on one route, ...) over a
 * sliding minute: 60 one-second slots, each one 64-bit word that holds the
 * second it counts and its count, so that "reset an old slot and charge it"
 * is one compare-and-swap and no count is ever lost to a reset:
 *   bits 40-63  the second (monotonic ms / 1000), modulo 2^24 (194 days)
 *   bits 0-39   what was charged in that second (tokens or requests)
 * A charge counts from its second until 60 s after that second's start,
 * i.e. for between 59 and 60 s: the window is never longer than a minute,
 * so that a refused client is never told to wait more than 60 s.
 *
 * `total` is what the live slots hold, kept as its own counter so that
 * admission is one compare-and-swap against the limit instead of a sum of
 * 60 slots. Increases go to total before the slot and decreases to the slot
 * before total (with release/acquire between them), so that total is never
 * below the sum of the live slots: a race can refuse a request for a moment,
 * never admit one past the limit. Expired slots leave total when anyone
 * sweeps them (once a second per window, on admission) or reuses them.
 */
#define SL_LIMIT_SLOTS 60
#define SL_LIMIT_SLOT_MS 1000
#define SL_LIMIT_WINDOW_MS (SL_LIMIT_SLOTS * SL_LIMIT_SLOT_MS)
#define SL_LIMIT_COUNT_BITS 40
#define SL_LIMIT_COUNT_MAX ((UINT64_C(1) << SL_LIMIT_COUNT_BITS) - 1)
#define SL_LIMIT_TAG_MASK ((UINT64_C(1) << (64 - SL_LIMIT_COUNT_BITS)) - 1)

struct sl_limit_window {
    _Alignas(SL_LIMIT_CACHE_LINE) _Atomic uint64_t total; /* charged in the live slots */
    _Atomic uint64_t swept; /* 1 + the second of the last sweep; 0: never */
    uint64_t limit;         /* per minute; never 0 (no window is made for "no limit") */
    _Alignas(SL_LIMIT_CACHE_LINE) _Atomic uint64_t slots[SL_LIMIT_SLOTS]; /* [second % 60] */
};

/* window.c */
void sl_limit_window_init(struct sl_limit_window *w, uint64_t limit);
/* Take n from what is left at now_ms: true, and *left is what remains after it; or false
 * (nothing taken), and *left is what remains. Counts nothing until sl_limit_window_charge
 * (or is undone by sl_limit_window_unreserve): several windows can be reserved together and
 * all given back when one of them refuses. */
bool sl_limit_window_reserve(struct sl_limit_window *w, uint64_t n, uint64_t now_ms,
                             uint64_t *left);
void sl_limit_window_unreserve(struct sl_limit_window *w, uint64_t n);
/* Put a reserved n in now_ms's slot, where it stays for the next minute. */
void sl_limit_window_charge(struct sl_limit_window *w, uint64_t n, uint64_t now_ms);
/* What is left at now_ms (0 when over the limit). */
uint64_t sl_limit_window_left(struct sl_limit_window *w, uint64_t now_ms);
/* How long from now_ms until n more fits, as the slots stand: 0 when it fits now, at most
 * SL_LIMIT_WINDOW_MS (also when n is more than the limit). */
uint64_t sl_limit_window_wait(struct sl_limit_window *w, uint64_t n, uint64_t now_ms);
/* A charge of `charged` made at at_ms turned out to be `actual`: give back or add the
 * difference (see window.c for a charge that has already expired). */
void sl_limit_window_adjust(struct sl_limit_window *w, uint64_t at_ms, uint64_t charged,
                            uint64_t actual, uint64_t now_ms);

/* ---- the limiter ---- */

/* A client's limits on one route (its route_limits entry for that route). */
struct sl_limit_route {
    size_t route;                /* index into cfg->routes */
    struct sl_limit_window *rpm; /* borrowed from sl_limiter.windows; NULL: no limit */
    struct sl_limit_window *tpm;
};

struct sl_limit_client {
    struct sl_limit_window *rpm; /* borrowed from sl_limiter.windows; NULL: no limit */
    struct sl_limit_window *tpm;
    struct sl_limit_route *routes; /* borrowed from sl_limiter.routes: n_routes, by route */
    size_t n_routes;
};

struct sl_limiter {
    const struct sl_config *cfg;     /* borrowed: outlives the limiter */
    struct sl_limit_window *windows; /* owned: n_windows (aligned_alloc); NULL when none */
    size_t n_windows;
    struct sl_limit_client *clients; /* owned: cfg->n_clients */
    struct sl_limit_route *routes;   /* owned: every client's, grouped by client */
    size_t n_routes;
};

#endif
