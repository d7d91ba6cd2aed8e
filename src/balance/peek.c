/* What the proxy asks about one backend's circuit when it must answer for them all. */
#include "balance/internal.h"

bool sl_balance_throttled(struct sl_balance *b, size_t backend, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(&b->backends[backend].circuit, memory_order_acquire);
    return SL_CIRCUIT_MODE(w) == SL_CIRCUIT_THROTTLED && SL_CIRCUIT_UNTIL(w) > now_ms;
}

uint64_t sl_balance_reopens_at(struct sl_balance *b, size_t backend, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(&b->backends[backend].circuit, memory_order_acquire);
    if (SL_CIRCUIT_MODE(w) == SL_CIRCUIT_CLOSED || SL_CIRCUIT_UNTIL(w) <= now_ms)
        return 0;
    return SL_CIRCUIT_UNTIL(w);
}
