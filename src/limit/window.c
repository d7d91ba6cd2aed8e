/*
 * The sliding minute behind every limit (see internal.h for the layout and
 * the invariant that total never falls below what the live slots hold).
 *
 * Admission costs, per window: one load of `swept`, one compare-and-swap on
 * `total` (the check against the limit and the reservation in one step, so
 * that concurrent workers can never take the last slot twice) and one on the
 * current second's slot. Once a second per window, the first admission also
 * sweeps the 60 slots for expired charges.
 */
#include "limit/internal.h"

static uint64_t slot_word(uint64_t sec, uint64_t count)
{
    return ((sec & SL_LIMIT_TAG_MASK) << SL_LIMIT_COUNT_BITS) | count;
}

static uint64_t slot_tag(uint64_t word)
{
    return word >> SL_LIMIT_COUNT_BITS;
}

static uint64_t slot_count(uint64_t word)
{
    return word & SL_LIMIT_COUNT_MAX;
}

/* How many seconds before `sec` the slot tagged `tag` was written, modulo the tag's range.
 * More than half the range means the tag is ahead of sec: written by a worker whose clock
 * is ahead of this caller's (by a minute or more, for the slot sec itself would use). */
static uint64_t tag_age(uint64_t tag, uint64_t sec)
{
    return (sec - tag) & SL_LIMIT_TAG_MASK;
}

static bool tag_ahead(uint64_t tag, uint64_t sec)
{
    return tag_age(tag, sec) > SL_LIMIT_TAG_MASK / 2;
}

static bool tag_expired(uint64_t tag, uint64_t sec)
{
    return tag_age(tag, sec) >= SL_LIMIT_SLOTS && !tag_ahead(tag, sec);
}

void sl_limit_window_init(struct sl_limit_window *w, uint64_t limit)
{
    atomic_init(&w->total, 0);
    atomic_init(&w->swept, 0);
    w->limit = limit;
    for (size_t i = 0; i < SL_LIMIT_SLOTS; i++)
        atomic_init(&w->slots[i], 0);
}

/* Take the expired slots' charges out of total, once per second. Every worker that sees a
 * new second sweeps (they race on each slot's compare-and-swap, and only the winner takes
 * the count out of total): letting one claim the sweep would make the others refuse
 * against a stale total meanwhile. */
static void sweep(struct sl_limit_window *w, uint64_t sec)
{
    if (atomic_load_explicit(&w->swept, memory_order_acquire) > sec)
        return;
    for (size_t i = 0; i < SL_LIMIT_SLOTS; i++) {
        uint64_t v = atomic_load_explicit(&w->slots[i], memory_order_acquire);
        while (slot_count(v) > 0 && tag_expired(slot_tag(v), sec)) {
            /* Keep the tag: a settle of that old charge must find it gone, not reused. */
            if (atomic_compare_exchange_weak_explicit(&w->slots[i], &v, v & ~SL_LIMIT_COUNT_MAX,
                                                      memory_order_acq_rel, memory_order_acquire)) {
                atomic_fetch_sub_explicit(&w->total, slot_count(v), memory_order_acq_rel);
                break;
            }
        }
    }
    uint64_t seen = atomic_load_explicit(&w->swept, memory_order_relaxed);
    while (seen <= sec &&
           !atomic_compare_exchange_weak_explicit(&w->swept, &seen, sec + 1, memory_order_release,
                                                  memory_order_relaxed))
        ;
}

static uint64_t left_of(const struct sl_limit_window *w, uint64_t total)
{
    return total >= w->limit ? 0 : w->limit - total;
}

bool sl_limit_window_reserve(struct sl_limit_window *w, uint64_t n, uint64_t now_ms, uint64_t *left)
{
    sweep(w, now_ms / SL_LIMIT_SLOT_MS);
    uint64_t t = atomic_load_explicit(&w->total, memory_order_acquire);
    do {
        if (n > w->limit || t > w->limit - n) {
            *left = left_of(w, t);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&w->total, &t, t + n, memory_order_acq_rel,
                                                    memory_order_acquire));
    *left = w->limit - (t + n);
    return true;
}

void sl_limit_window_unreserve(struct sl_limit_window *w, uint64_t n)
{
    atomic_fetch_sub_explicit(&w->total, n, memory_order_acq_rel);
}

void sl_limit_window_charge(struct sl_limit_window *w, uint64_t n, uint64_t now_ms)
{
    if (n == 0)
        return;
    uint64_t sec = now_ms / SL_LIMIT_SLOT_MS;
    _Atomic uint64_t *slot = &w->slots[sec % SL_LIMIT_SLOTS];
    uint64_t v = atomic_load_explicit(slot, memory_order_acquire);
    uint64_t gone, excess, next;
    do {
        uint64_t tag = slot_tag(v), count;
        if (slot_count(v) > 0 && (tag == (sec & SL_LIMIT_TAG_MASK) || tag_ahead(tag, sec))) {
            /* Ours, or (only with clocks a minute apart) a faster clock's: adding to
             * that only makes this charge last longer. */
            gone = 0;
            count = slot_count(v) + n;
        } else {
            /* Empty (whatever its tag says: a new window's slots say second 0), or it
             * last counted a second a minute or more ago and the sweep has not come by
             * yet: reuse it, and its old charge leaves total below. */
            gone = slot_count(v);
            count = n;
            tag = sec;
        }
        excess = count > SL_LIMIT_COUNT_MAX ? count - SL_LIMIT_COUNT_MAX : 0;
        next = slot_word(tag, count - excess);
    } while (!atomic_compare_exchange_weak_explicit(slot, &v, next, memory_order_acq_rel,
                                                    memory_order_acquire));
    if (gone + excess > 0)
        atomic_fetch_sub_explicit(&w->total, gone + excess, memory_order_acq_rel);
}

uint64_t sl_limit_window_left(struct sl_limit_window *w, uint64_t now_ms)
{
    sweep(w, now_ms / SL_LIMIT_SLOT_MS);
    return left_of(w, atomic_load_explicit(&w->total, memory_order_acquire));
}

uint64_t sl_limit_window_wait(struct sl_limit_window *w, uint64_t n, uint64_t now_ms)
{
    if (n > w->limit)
        return SL_LIMIT_WINDOW_MS;
    uint64_t total = atomic_load_explicit(&w->total, memory_order_acquire);
    if (total <= w->limit - n)
        return 0;
    uint64_t need = total - (w->limit - n), freed = 0;
    uint64_t sec = now_ms / SL_LIMIT_SLOT_MS;
    /* Oldest second first: its charge is the first to go. */
    for (uint64_t age = SL_LIMIT_SLOTS; age-- > 0;) {
        if (age > sec)
            continue;
        uint64_t v =
            atomic_load_explicit(&w->slots[(sec - age) % SL_LIMIT_SLOTS], memory_order_acquire);
        if (slot_tag(v) != ((sec - age) & SL_LIMIT_TAG_MASK))
            continue;
        freed += slot_count(v);
        if (freed >= need)
            return (sec - age) * SL_LIMIT_SLOT_MS + SL_LIMIT_WINDOW_MS - now_ms;
    }
    /* The rest is held by reservations in flight or a faster clock's slots: a minute is
     * the most anything can take. */
    return SL_LIMIT_WINDOW_MS;
}

/* Move up to `delta` of at_ms's slot out of it (give) or into it (!give), while that slot
 * still counts that second; what was moved. */
static uint64_t move_in_slot(struct sl_limit_window *w, uint64_t at_sec, uint64_t delta, bool give)
{
    _Atomic uint64_t *slot = &w->slots[at_sec % SL_LIMIT_SLOTS];
    uint64_t v = atomic_load_explicit(slot, memory_order_acquire);
    uint64_t moved;
    do {
        if (slot_tag(v) != (at_sec & SL_LIMIT_TAG_MASK))
            return 0;
        uint64_t count = slot_count(v);
        /* Never below 0: someone may have swept the slot (count 0, same tag). */
        moved = give ? SL_MIN(count, delta) : SL_MIN(SL_LIMIT_COUNT_MAX - count, delta);
        if (moved == 0)
            return 0;
        uint64_t next = slot_word(at_sec, give ? count - moved : count + moved);
        if (atomic_compare_exchange_weak_explicit(slot, &v, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            return moved;
    } while (true);
}

/*
 * A charge that is still in the window is corrected where it was made, so that the
 * correction expires with it. One that has already expired (a request longer than the
 * window) gives nothing back, since nothing of it is counted any more; tokens it used
 * beyond its charge are charged now instead: they were used recently, and dropping them
 * would let a client under-estimate long streams for free.
 */
void sl_limit_window_adjust(struct sl_limit_window *w, uint64_t at_ms, uint64_t charged,
                            uint64_t actual, uint64_t now_ms)
{
    uint64_t at_sec = at_ms / SL_LIMIT_SLOT_MS;
    bool live = now_ms / SL_LIMIT_SLOT_MS < at_sec + SL_LIMIT_SLOTS;
    if (actual < charged) {
        uint64_t moved = live ? move_in_slot(w, at_sec, charged - actual, true) : 0;
        if (moved > 0)
            atomic_fetch_sub_explicit(&w->total, moved, memory_order_acq_rel);
    } else if (actual > charged) {
        uint64_t add = SL_MIN(actual - charged, SL_LIMIT_COUNT_MAX);
        /* total first: it must never be below what the slots hold. */
        atomic_fetch_add_explicit(&w->total, add, memory_order_acq_rel);
        uint64_t moved = live ? move_in_slot(w, at_sec, add, false) : 0;
        sl_limit_window_charge(w, add - moved, now_ms);
    }
}
