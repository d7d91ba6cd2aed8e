/*
 * One circuit breaker per backend: what its answers say about it, kept in
 * atomics so that every worker reads and updates it without a lock.
 *
 *   closed ──429──► open (throttled) ──until──► closed
 *   closed ──failure_threshold failures──► open (failed) ──until──► half-open
 *   half-open ──one trial──► success: closed, back-off level 0
 *                           failure: open for twice as long as before (up to the max)
 *                           429:     open for its retry time, then half-open again
 *                           client went away: half-open again (trial released)
 *
 * All transitions are compare-and-swap on the one circuit word (internal.h),
 * so that concurrent reports cannot leave a mode with another's deadline.
 */
#include <stdio.h>
#include <string.h>

#include "balance/internal.h"

const char *sl_balance_state_name(enum sl_balance_state s)
{
    switch (s) {
    case SL_BALANCE_CLOSED:
        return "closed";
    case SL_BALANCE_OPEN:
        return "open";
    case SL_BALANCE_HALF_OPEN:
        return "half-open";
    }
    return "unknown";
}

bool sl_balance_status_retryable(int status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

enum sl_balance_outcome sl_balance_status_outcome(int status)
{
    if (status == 429)
        return SL_BALANCE_THROTTLED;
    if (status == 500 || status == 502 || status == 503 || status == 504)
        return SL_BALANCE_FAILURE;
    /* Other 5xx (501 Not Implemented, 505...) answer the request, not the backend's health. */
    return SL_BALANCE_SUCCESS;
}

void sl_balance_backend_init(struct sl_balance_backend *be)
{
    memset(be, 0, sizeof(*be));
    atomic_init(&be->circuit, 0);
    atomic_init(&be->failures, 0);
    atomic_init(&be->level, 0);
    atomic_init(&be->in_flight, 0);
    atomic_init(&be->ttfb_ewma, 0);
    for (size_t i = 0; i < SL_BALANCE_BUCKETS; i++) {
        atomic_init(&be->buckets[i].epoch, 0);
        atomic_init(&be->buckets[i].success, 0);
        atomic_init(&be->buckets[i].errors, 0);
        atomic_init(&be->buckets[i].throttled, 0);
    }
    pthread_mutex_init(&be->why_lock, NULL);
}

void sl_balance_backend_dispose(struct sl_balance_backend *be)
{
    pthread_mutex_destroy(&be->why_lock);
}

enum sl_balance_avail sl_balance_avail(const struct sl_balance_backend *be, uint64_t now_ms,
                                       uint64_t *reopen)
{
    uint64_t w = atomic_load_explicit(&be->circuit, memory_order_acquire);
    uint64_t until = SL_CIRCUIT_UNTIL(w);
    switch (SL_CIRCUIT_MODE(w)) {
    case SL_CIRCUIT_THROTTLED:
        if (now_ms >= until)
            return SL_AVAIL_YES;
        *reopen = until;
        return SL_AVAIL_NO;
    case SL_CIRCUIT_FAILED:
        if (now_ms < until) {
            *reopen = until;
            return SL_AVAIL_NO;
        }
        if (w & SL_CIRCUIT_TRIAL) {
            /* A trial is running and nobody knows how long it takes: a guess. */
            *reopen = now_ms + 1000;
            return SL_AVAIL_NO;
        }
        return SL_AVAIL_PROBE;
    default:
        return SL_AVAIL_YES;
    }
}

bool sl_balance_take_trial(struct sl_balance_backend *be, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(&be->circuit, memory_order_acquire);
    for (;;) {
        if (SL_CIRCUIT_MODE(w) != SL_CIRCUIT_FAILED || (w & SL_CIRCUIT_TRIAL) ||
            now_ms < SL_CIRCUIT_UNTIL(w))
            return false;
        if (atomic_compare_exchange_weak_explicit(&be->circuit, &w, w | SL_CIRCUIT_TRIAL,
                                                  memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

enum sl_balance_state sl_balance_backend_state(const struct sl_balance_backend *be, uint64_t now_ms,
                                               uint64_t *until)
{
    uint64_t w = atomic_load_explicit(&be->circuit, memory_order_acquire);
    uint64_t u = SL_CIRCUIT_UNTIL(w);
    *until = 0;
    switch (SL_CIRCUIT_MODE(w)) {
    case SL_CIRCUIT_THROTTLED:
        if (now_ms >= u)
            return SL_BALANCE_CLOSED;
        *until = u;
        return SL_BALANCE_OPEN;
    case SL_CIRCUIT_FAILED:
        if (now_ms >= u)
            return SL_BALANCE_HALF_OPEN;
        *until = u;
        return SL_BALANCE_OPEN;
    default:
        return SL_BALANCE_CLOSED;
    }
}

/* ---- counts of the last minute ---- */

static struct sl_balance_bucket *bucket_for(struct sl_balance_backend *be, uint64_t now_ms)
{
    uint64_t epoch = now_ms / SL_BALANCE_BUCKET_MS + 1;
    struct sl_balance_bucket *k = &be->buckets[epoch % SL_BALANCE_BUCKETS];
    uint64_t seen = atomic_load_explicit(&k->epoch, memory_order_relaxed);
    /* The first writer of a new period resets the bucket. A count from another thread
     * between the swap and the reset is lost: fine for a status page. */
    if (seen < epoch && atomic_compare_exchange_strong_explicit(
                            &k->epoch, &seen, epoch, memory_order_relaxed, memory_order_relaxed)) {
        atomic_store_explicit(&k->success, 0, memory_order_relaxed);
        atomic_store_explicit(&k->errors, 0, memory_order_relaxed);
        atomic_store_explicit(&k->throttled, 0, memory_order_relaxed);
    }
    return k;
}

void sl_balance_backend_counts(const struct sl_balance_backend *be, uint64_t now_ms,
                               uint64_t *success, uint64_t *errors, uint64_t *throttled)
{
    uint64_t epoch = now_ms / SL_BALANCE_BUCKET_MS + 1;
    *success = *errors = *throttled = 0;
    for (size_t i = 0; i < SL_BALANCE_BUCKETS; i++) {
        const struct sl_balance_bucket *k = &be->buckets[i];
        uint64_t e = atomic_load_explicit(&k->epoch, memory_order_relaxed);
        if (e == 0 || e > epoch || epoch - e >= SL_BALANCE_BUCKETS)
            continue;
        *success += atomic_load_explicit(&k->success, memory_order_relaxed);
        *errors += atomic_load_explicit(&k->errors, memory_order_relaxed);
        *throttled += atomic_load_explicit(&k->throttled, memory_order_relaxed);
    }
}

/* ---- transitions ---- */

/* open_time << level, capped at max_open_time; at least 1 ms so that "open" means open. */
static uint64_t backoff_ms(const struct sl_config_backend *cb, uint32_t level)
{
    uint64_t t = cb->open_time_ms, max = cb->max_open_time_ms;
    if (max < t)
        max = t;
    if (level >= 63 || t > (max >> level))
        t = max;
    else
        t <<= level;
    return t ? t : 1;
}

static uint64_t until_at(uint64_t now_ms, uint64_t ms)
{
    uint64_t u = now_ms + ms;
    if (u < now_ms || u > SL_CIRCUIT_MAX_UNTIL)
        u = SL_CIRCUIT_MAX_UNTIL;
    return u;
}

/* A 429 (not from the trial): open until `until`, or later if it already is. */
static void open_throttled(struct sl_balance_backend *be, uint64_t now_ms, uint64_t until)
{
    uint64_t w = atomic_load_explicit(&be->circuit, memory_order_acquire), nw;
    do {
        unsigned mode = SL_CIRCUIT_MODE(w);
        uint64_t old = SL_CIRCUIT_UNTIL(w);
        if (mode == SL_CIRCUIT_FAILED)
            /* Failing and now throttled too: still needs its trial when the later of
             * both runs out; a running trial keeps running. */
            nw = SL_CIRCUIT_WORD(mode, w & SL_CIRCUIT_TRIAL, SL_MAX(old, until));
        else if (mode == SL_CIRCUIT_THROTTLED && now_ms < old)
            nw = SL_CIRCUIT_WORD(mode, false, SL_MAX(old, until));
        else
            nw = SL_CIRCUIT_WORD(SL_CIRCUIT_THROTTLED, false, until);
        if (nw == w)
            return;
    } while (!atomic_compare_exchange_weak_explicit(&be->circuit, &w, nw, memory_order_acq_rel,
                                                    memory_order_acquire));
}

/* failure_threshold reached (not by the trial): open from closed or throttled. A
 * circuit that failed already stays as it is: these are answers to requests sent
 * before it opened, and must neither extend it nor cancel a trial. */
static void open_failed(struct sl_balance_backend *be, uint64_t now_ms, uint64_t until)
{
    uint64_t w = atomic_load_explicit(&be->circuit, memory_order_acquire), nw;
    do {
        unsigned mode = SL_CIRCUIT_MODE(w);
        uint64_t old = SL_CIRCUIT_UNTIL(w);
        if (mode == SL_CIRCUIT_FAILED)
            return;
        if (mode == SL_CIRCUIT_THROTTLED && now_ms < old)
            nw = SL_CIRCUIT_WORD(SL_CIRCUIT_FAILED, false, SL_MAX(old, until));
        else
            nw = SL_CIRCUIT_WORD(SL_CIRCUIT_FAILED, false, until);
    } while (!atomic_compare_exchange_weak_explicit(&be->circuit, &w, nw, memory_order_acq_rel,
                                                    memory_order_acquire));
}

static void set_why(struct sl_balance_backend *be, const struct sl_balance_result *r)
{
    pthread_mutex_lock(&be->why_lock);
    snprintf(be->why, sizeof(be->why), "%s", r->why ? r->why : "");
    be->last_status = r->status;
    pthread_mutex_unlock(&be->why_lock);
}

static void update_ttfb(struct sl_balance_backend *be, uint64_t ttfb_ms)
{
    if (ttfb_ms == 0)
        return;
    uint64_t x = ttfb_ms > UINT64_MAX / 2000 ? UINT64_MAX / 2000 : ttfb_ms * 1000;
    uint64_t old = atomic_load_explicit(&be->ttfb_ewma, memory_order_relaxed);
    /* alpha = 0.2. Two workers updating at once may lose one sample: harmless. */
    uint64_t avg = old == 0 ? x : ((old - 1) * 4 + x) / 5;
    atomic_store_explicit(&be->ttfb_ewma, avg + 1, memory_order_relaxed);
}

void sl_balance_report(struct sl_balance *b, const struct sl_balance_pick *pick,
                       const struct sl_balance_result *r, uint64_t now_ms)
{
    const struct sl_config_backend *cb = &b->cfg->backends[pick->backend];
    struct sl_balance_backend *be = &b->backends[pick->backend];
    atomic_fetch_sub_explicit(&be->in_flight, 1, memory_order_relaxed);

    switch (r->outcome) {
    case SL_BALANCE_SUCCESS:
        atomic_fetch_add_explicit(&bucket_for(be, now_ms)->success, 1, memory_order_relaxed);
        update_ttfb(be, r->ttfb_ms);
        /* Read first: every success writing the shared line would cost more than the check. */
        if (atomic_load_explicit(&be->failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&be->failures, 0, memory_order_relaxed);
        if (pick->probe) {
            atomic_store_explicit(&be->level, 0, memory_order_relaxed);
            atomic_store_explicit(&be->circuit, 0, memory_order_release);
        }
        break;

    case SL_BALANCE_THROTTLED: {
        atomic_fetch_add_explicit(&bucket_for(be, now_ms)->throttled, 1, memory_order_relaxed);
        set_why(be, r);
        uint64_t ms = r->retry_after_ms ? r->retry_after_ms : cb->throttle_time_ms;
        uint64_t until = until_at(now_ms, ms);
        if (pick->probe)
            /* The backend answers, but says nothing yet about the failures that opened
             * it: the next trial, after the pause it asked for, decides. */
            atomic_store_explicit(&be->circuit, SL_CIRCUIT_WORD(SL_CIRCUIT_FAILED, false, until),
                                  memory_order_release);
        else
            open_throttled(be, now_ms, until);
        break;
    }

    case SL_BALANCE_FAILURE: {
        atomic_fetch_add_explicit(&bucket_for(be, now_ms)->errors, 1, memory_order_relaxed);
        set_why(be, r);
        uint32_t n = atomic_fetch_add_explicit(&be->failures, 1, memory_order_relaxed) + 1;
        if (pick->probe) {
            /* Only the trial's owner changes the level while the circuit is half-open. */
            uint32_t level = atomic_load_explicit(&be->level, memory_order_relaxed);
            if (level < 63)
                level++;
            atomic_store_explicit(&be->level, level, memory_order_relaxed);
            uint64_t until = until_at(now_ms, backoff_ms(cb, level));
            atomic_store_explicit(&be->circuit, SL_CIRCUIT_WORD(SL_CIRCUIT_FAILED, false, until),
                                  memory_order_release);
        } else if (n >= SL_MAX(cb->failure_threshold, 1)) {
            uint32_t level = atomic_load_explicit(&be->level, memory_order_relaxed);
            open_failed(be, now_ms, until_at(now_ms, backoff_ms(cb, level)));
        }
        break;
    }

    case SL_BALANCE_CANCELLED:
        if (pick->probe)
            atomic_fetch_and_explicit(&be->circuit, ~SL_CIRCUIT_TRIAL, memory_order_acq_rel);
        break;
    }
}
