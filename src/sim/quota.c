/*
 * Azure-like limits per deployment, with an injected clock so tests can
 * check every boundary.
 *
 * Standard (pay-as-you-go) deployments:
 *   - tokens: a sliding minute of 60 one-second buckets. A request is charged
 *     its prompt estimate plus its max tokens at admission (as Azure does) and
 *     admitted when the charge fits under the TPM limit, or when the minute
 *     holds nothing (so one request larger than the limit is not refused
 *     forever).
 *   - requests: at most RPM in the same sliding minute, and, as Azure enforces
 *     RPM over short periods, at most ceil(RPM / 6) in each fixed 10-second
 *     slice of the clock. RPM 0 means Azure's default of 6 per 1000 TPM.
 * Provisioned (PTU) deployments: utilisation is the tokens admitted over the
 * last second (10 buckets of 100 ms) against TPM / 60; a request is admitted
 * while utilisation is below 100% (it may overshoot, as on Azure) and refused
 * otherwise.
 *
 * Every refusal says exactly when a request would be admitted: the moment
 * enough old buckets have left their windows. Buckets are counted from the
 * monotonic clock, so "exactly" holds to the millisecond.
 */
#include "sim/internal.h"

#include <string.h>

void sl_sim_window_init(struct sl_sim_window *w, uint32_t n, uint64_t bucket_ms)
{
    memset(w, 0, sizeof(*w));
    w->n = n ? SL_MIN(n, SL_SIM_WINDOW_MAX) : 1;
    w->bucket_ms = bucket_ms ? bucket_ms : 1;
}

void sl_sim_window_clear(struct sl_sim_window *w)
{
    sl_sim_window_init(w, w->n, w->bucket_ms);
}

static void advance(struct sl_sim_window *w, uint64_t now_ms)
{
    uint64_t idx = now_ms / w->bucket_ms;
    if (idx <= w->head)
        return; /* same bucket (or a clock that went back: keep counting) */
    if (idx - w->head >= w->n) {
        memset(w->v, 0, sizeof(w->v));
        w->total = 0;
    } else {
        for (uint64_t k = w->head + 1; k <= idx; k++) {
            w->total -= w->v[k % w->n];
            w->v[k % w->n] = 0;
        }
    }
    w->head = idx;
}

uint64_t sl_sim_window_total(struct sl_sim_window *w, uint64_t now_ms)
{
    advance(w, now_ms);
    return w->total;
}

void sl_sim_window_add(struct sl_sim_window *w, uint64_t now_ms, uint64_t amount)
{
    advance(w, now_ms);
    w->v[w->head % w->n] += amount;
    w->total += amount;
}

uint64_t sl_sim_window_wait_ms(struct sl_sim_window *w, uint64_t now_ms, uint64_t target)
{
    advance(w, now_ms);
    if (w->total <= target)
        return 0;
    uint64_t oldest = w->head >= w->n - 1 ? w->head - (w->n - 1) : 0;
    uint64_t left = w->total;
    for (uint64_t k = oldest; k <= w->head; k++) {
        left -= w->v[k % w->n];
        if (left <= target)
            return (k + w->n) * w->bucket_ms - now_ms; /* bucket k leaves the window then */
    }
    return (w->head + w->n) * w->bucket_ms - now_ms; /* not reached: target >= 0 */
}

void sl_sim_quota_init(struct sl_sim_quota *q, enum sl_sim_capacity capacity, uint64_t tpm,
                       uint64_t rpm)
{
    memset(q, 0, sizeof(*q));
    q->capacity = capacity;
    q->tpm = tpm;
    q->rpm = rpm ? rpm : (tpm ? SL_MAX(tpm * 6 / 1000, 1) : 0);
    q->rps10 = (q->rpm + 5) / 6;
    q->ptu_tokens = tpm ? SL_MAX(tpm / 60, 1) : 0;
    sl_sim_window_init(&q->tokens, 60, 1000);
    sl_sim_window_init(&q->requests, 60, 1000);
    sl_sim_window_init(&q->slice, 1, 10000);
    sl_sim_window_init(&q->utilisation, 10, 100);
}

void sl_sim_quota_clear(struct sl_sim_quota *q)
{
    sl_sim_window_clear(&q->tokens);
    sl_sim_window_clear(&q->requests);
    sl_sim_window_clear(&q->slice);
    sl_sim_window_clear(&q->utilisation);
}

static void refuse(struct sl_sim_admission *out, enum sl_sim_limit limit, uint64_t wait_ms)
{
    out->admitted = false;
    if (out->limit == SL_SIM_LIMIT_NONE || limit == SL_SIM_LIMIT_TOKENS)
        out->limit = limit;
    out->retry_after_ms = SL_MAX(out->retry_after_ms, SL_MAX(wait_ms, 1));
}

static void admit_provisioned(struct sl_sim_quota *q, uint64_t now_ms, uint64_t tokens,
                              struct sl_sim_admission *out)
{
    uint64_t used = sl_sim_window_total(&q->utilisation, now_ms);
    out->used_tokens = used;
    out->utilisation_pct10 = used * 1000 / q->ptu_tokens;
    if (used >= q->ptu_tokens) {
        refuse(out, SL_SIM_LIMIT_PROVISIONED,
               sl_sim_window_wait_ms(&q->utilisation, now_ms, q->ptu_tokens - 1));
        out->remaining_tokens = 0;
        return;
    }
    sl_sim_window_add(&q->utilisation, now_ms, tokens);
    used += tokens;
    out->remaining_tokens = used >= q->ptu_tokens ? 0 : q->ptu_tokens - used;
}

void sl_sim_quota_admit(struct sl_sim_quota *q, uint64_t now_ms, uint64_t tokens,
                        struct sl_sim_admission *out)
{
    memset(out, 0, sizeof(*out));
    out->admitted = true;
    out->remaining_requests = UINT64_MAX;
    out->remaining_tokens = UINT64_MAX;
    if (q->capacity == SL_SIM_CAPACITY_PROVISIONED) {
        if (q->ptu_tokens)
            admit_provisioned(q, now_ms, tokens, out);
        return;
    }
    uint64_t used = 0, reqs = 0;
    if (q->tpm) {
        used = sl_sim_window_total(&q->tokens, now_ms);
        out->used_tokens = used;
        if (used > 0 && used + tokens > q->tpm) {
            uint64_t target = tokens > q->tpm ? 0 : q->tpm - tokens;
            refuse(out, SL_SIM_LIMIT_TOKENS, sl_sim_window_wait_ms(&q->tokens, now_ms, target));
        }
    }
    if (q->rpm) {
        reqs = sl_sim_window_total(&q->requests, now_ms);
        if (reqs >= q->rpm)
            refuse(out, SL_SIM_LIMIT_REQUESTS,
                   sl_sim_window_wait_ms(&q->requests, now_ms, q->rpm - 1));
        if (sl_sim_window_total(&q->slice, now_ms) >= q->rps10)
            refuse(out, SL_SIM_LIMIT_REQUESTS,
                   sl_sim_window_wait_ms(&q->slice, now_ms, q->rps10 - 1));
    }
    if (!out->admitted) {
        if (q->tpm)
            out->remaining_tokens = used >= q->tpm ? 0 : q->tpm - used;
        if (q->rpm)
            out->remaining_requests = reqs >= q->rpm ? 0 : q->rpm - reqs;
        return;
    }
    if (q->tpm) {
        sl_sim_window_add(&q->tokens, now_ms, tokens);
        used += tokens;
        out->remaining_tokens = used >= q->tpm ? 0 : q->tpm - used;
    }
    if (q->rpm) {
        sl_sim_window_add(&q->requests, now_ms, 1);
        sl_sim_window_add(&q->slice, now_ms, 1);
        out->remaining_requests = reqs + 1 >= q->rpm ? 0 : q->rpm - reqs - 1;
    }
}
