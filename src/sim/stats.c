/*
 * What each simulated deployment saw, for tests to assert on exactly:
 * requests by status, tokens served, streams, throttling and every injected
 * fault. Relaxed atomics: counters are independent and only read by the
 * control API.
 */
#include "sim/internal.h"

void sl_sim_count(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static uint64_t get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

static void zero(_Atomic uint64_t *counter)
{
    atomic_store_explicit(counter, 0, memory_order_relaxed);
}

void sl_sim_counters_clear(struct sl_sim_counters *c)
{
    zero(&c->requests);
    zero(&c->prompt_tokens);
    zero(&c->completion_tokens);
    zero(&c->streams_started);
    zero(&c->streams_completed);
    zero(&c->streams_cut);
    zero(&c->throttled);
    zero(&c->resets);
    for (size_t i = 0; i < SL_SIM_FAULT_KINDS; i++)
        zero(&c->faults[i]);
    for (size_t i = 0; i < SL_SIM_STATUS_SLOTS; i++)
        zero(&c->by_status[i]);
}

void sl_sim_count_status(struct sl_sim_counters *c, int status)
{
    if (status >= SL_SIM_STATUS_MIN && status < SL_SIM_STATUS_MIN + SL_SIM_STATUS_SLOTS)
        sl_sim_count(&c->by_status[status - SL_SIM_STATUS_MIN], 1);
}

static int field(struct sl_buf *b, const char *name, uint64_t v, bool comma)
{
    return sl_buf_appendf(b, "%s\"%s\":%llu", comma ? "," : "", name, (unsigned long long)v);
}

int sl_sim_counters_append_json(struct sl_buf *b, const struct sl_sim_counters *c)
{
    int rc = SL_SIM_LIT(b, "{");
    rc |= field(b, "requests", get(&c->requests), false);
    rc |= SL_SIM_LIT(b, ",\"by_status\":{");
    bool first = true;
    for (size_t i = 0; i < SL_SIM_STATUS_SLOTS; i++) {
        uint64_t v = get(&c->by_status[i]);
        if (v == 0)
            continue;
        rc |= sl_buf_appendf(b, "%s\"%zu\":%llu", first ? "" : ",", i + SL_SIM_STATUS_MIN,
                             (unsigned long long)v);
        first = false;
    }
    rc |= SL_SIM_LIT(b, "}");
    rc |= field(b, "prompt_tokens", get(&c->prompt_tokens), true);
    rc |= field(b, "completion_tokens", get(&c->completion_tokens), true);
    rc |= SL_SIM_LIT(b, ",\"streams\":{");
    rc |= field(b, "started", get(&c->streams_started), false);
    rc |= field(b, "completed", get(&c->streams_completed), true);
    rc |= field(b, "cut", get(&c->streams_cut), true);
    rc |= SL_SIM_LIT(b, "}");
    rc |= field(b, "throttled", get(&c->throttled), true);
    rc |= field(b, "connections_reset", get(&c->resets), true);
    rc |= SL_SIM_LIT(b, ",\"faults\":{");
    for (size_t i = 0; i < SL_SIM_FAULT_KINDS; i++)
        rc |=
            field(b, sl_sim_fault_kind_name((enum sl_sim_fault_kind)i), get(&c->faults[i]), i > 0);
    rc |= SL_SIM_LIT(b, "}}");
    return rc ? SL_ENOMEM : SL_OK;
}
