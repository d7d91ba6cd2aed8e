/*
 * Retry budgets: retries may add at most route.retry_budget to a route's
 * requests, so that when every backend is struggling, retries do not
 * multiply the load that made them struggle (the Finagle/Envoy idea).
 *
 * Two 10 s windows per route, used in turn; the previous one counts in
 * proportion to how much of it still lies within the last 10 s, which is a
 * sliding window for the price of two counters.
 */
#include "balance/internal.h"

/* The first retries of every 10 s window are always allowed: otherwise a quiet route
 * (1 request a minute) could never retry at all. */
#define SL_BALANCE_MIN_RETRIES 100

/* The window for now_ms, emptied first when it last counted an older period. */
static struct sl_balance_window *current_window(struct sl_balance_route *r, uint64_t now_ms)
{
    uint64_t epoch = now_ms / SL_BALANCE_BUDGET_MS + 1;
    struct sl_balance_window *win = &r->win[epoch & 1];
    uint64_t seen = atomic_load_explicit(&win->epoch, memory_order_acquire);
    /* The first to see a new period resets; counts from others in between are lost,
     * which only makes the budget a little more generous for a moment. */
    if (seen < epoch &&
        atomic_compare_exchange_strong_explicit(&win->epoch, &seen, epoch, memory_order_acq_rel,
                                                memory_order_acquire)) {
        atomic_store_explicit(&win->requests, 0, memory_order_relaxed);
        atomic_store_explicit(&win->retries, 0, memory_order_relaxed);
    }
    return win;
}

/* The previous period's counts, or 0 when that window holds an older one. */
static void previous_window(struct sl_balance_route *r, uint64_t now_ms, uint64_t *requests,
                            uint64_t *retries)
{
    uint64_t epoch = now_ms / SL_BALANCE_BUDGET_MS + 1;
    struct sl_balance_window *win = &r->win[(epoch - 1) & 1];
    *requests = *retries = 0;
    if (atomic_load_explicit(&win->epoch, memory_order_acquire) != epoch - 1)
        return;
    *requests = atomic_load_explicit(&win->requests, memory_order_relaxed);
    *retries = atomic_load_explicit(&win->retries, memory_order_relaxed);
}

void sl_balance_count_request(struct sl_balance *b, size_t route, uint64_t now_ms)
{
    struct sl_balance_window *win = current_window(&b->routes[route], now_ms);
    atomic_fetch_add_explicit(&win->requests, 1, memory_order_relaxed);
}

bool sl_balance_take_retry(struct sl_balance *b, size_t route, uint64_t now_ms)
{
    struct sl_balance_route *r = &b->routes[route];
    uint64_t ppm = b->cfg->routes[route].retry_budget_ppm;
    struct sl_balance_window *win = current_window(r, now_ms);
    uint64_t prev_requests, prev_retries;
    previous_window(r, now_ms, &prev_requests, &prev_retries);

    /* The share of the previous window still inside the last 10 s, in 1/1000. */
    uint64_t keep = 1000 - (now_ms % SL_BALANCE_BUDGET_MS) * 1000 / SL_BALANCE_BUDGET_MS;
    uint64_t requests =
        atomic_load_explicit(&win->requests, memory_order_relaxed) + prev_requests * keep / 1000;
    uint64_t old_retries = prev_retries * keep / 1000;
    /* requests * ppm cannot overflow in any real 10 s (ppm <= 10^6 or so). */
    uint64_t limit = requests * ppm / 1000000;

    uint64_t n = atomic_load_explicit(&win->retries, memory_order_relaxed);
    do {
        if (n >= SL_BALANCE_MIN_RETRIES && n + old_retries >= limit)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&win->retries, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

void sl_balance_route_window(struct sl_balance *b, size_t route, uint64_t now_ms,
                             uint64_t *requests, uint64_t *retries)
{
    struct sl_balance_window *win = &b->routes[route].win[(now_ms / SL_BALANCE_BUDGET_MS + 1) & 1];
    *requests = *retries = 0;
    if (atomic_load_explicit(&win->epoch, memory_order_acquire) !=
        now_ms / SL_BALANCE_BUDGET_MS + 1)
        return;
    *requests = atomic_load_explicit(&win->requests, memory_order_relaxed);
    *retries = atomic_load_explicit(&win->retries, memory_order_relaxed);
}
