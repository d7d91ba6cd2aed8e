/*
 * What a call may use and what it used: the client's budgets and rate
 * limits at admission (charging an estimate), and at the end the tokens the
 * backend reported, which settle the rate limits, count against the budgets
 * and go into the usage ledger. A backend that reports no usage leaves the
 * estimate standing (for an answer the client got) and the record marked
 * estimated.
 */
#include "proxy/internal.h"

#include <stdio.h>
#include <string.h>

static uint64_t now_ms(const struct sl_proxy_call *call)
{
    return uv_now(sl_http_request_loop(call->req));
}

static void refuse(struct sl_proxy_call *call, const char *code, const char *msg, uint64_t retry_ms,
                   const struct sl_limit_status *st)
{
    char rr[24], rt[24];
    struct sl_http_header hs[4];
    struct sl_proxy_retry r;
    sl_proxy_retry_headers(&r, retry_ms);
    size_t n = 0;
    hs[n++] = r.h[0];
    hs[n++] = r.h[1];
    if (st && st->remaining_requests != UINT64_MAX) {
        snprintf(rr, sizeof(rr), "%llu", (unsigned long long)st->remaining_requests);
        hs[n++] =
            (struct sl_http_header){SL_STR("x-ratelimit-remaining-requests"), sl_str_from_cstr(rr)};
    }
    if (st && st->remaining_tokens != UINT64_MAX) {
        snprintf(rt, sizeof(rt), "%llu", (unsigned long long)st->remaining_tokens);
        hs[n++] =
            (struct sl_http_header){SL_STR("x-ratelimit-remaining-tokens"), sl_str_from_cstr(rt)};
    }
    struct sl_http_request *req = call->req;
    sl_proxy_call_end(call, 429);
    sl_http_respond_error_with(req, 429, code, msg, hs, n);
}

static const char *limit_words(const char *which)
{
    if (strcmp(which, "rpm") == 0)
        return "requests-per-minute limit";
    if (strcmp(which, "tpm") == 0)
        return "tokens-per-minute limit";
    if (strcmp(which, "route rpm") == 0)
        return "requests-per-minute limit on this deployment";
    return "tokens-per-minute limit on this deployment";
}

bool sl_proxy_admit(struct sl_proxy_call *call)
{
    const struct sl_config_client *cl = call->client;
    char msg[512];
    struct sl_budget_refusal br;
    if (call->conf->ledger && cl->n_budgets &&
        sl_ledger_budget_check(call->conf->ledger, cl, sl_clock_unix_ms(), &br) != SL_OK) {
        uint64_t now_s = sl_clock_unix_ms() / 1000;
        uint64_t wait_ms = br.resets_unix_s > now_s ? (br.resets_unix_s - now_s) * 1000 : 1000;
        refuse(call, "BudgetExceeded", br.message, wait_ms, NULL);
        return false;
    }
    struct sl_limit_status st;
    size_t client = (size_t)(cl - call->cfg->clients);
    size_t route = (size_t)(call->route - call->cfg->routes);
    if (sl_limiter_admit(call->conf->limiter, client, route, call->estimate, now_ms(call),
                         &call->ticket, &st) == SL_OK)
        return true;
    bool never = st.retry_after_ms >= SL_PROXY_MAX_RETRY_AFTER_MS &&
                 (strcmp(st.which, "tpm") == 0 || strcmp(st.which, "route tpm") == 0) &&
                 st.remaining_tokens != UINT64_MAX;
    uint64_t wait =
        SL_MIN(st.retry_after_ms ? st.retry_after_ms : 1, (uint64_t)SL_PROXY_MAX_RETRY_AFTER_MS);
    snprintf(msg, sizeof(msg), "client %s is over its %s; retry after %llu ms%s", cl->name,
             limit_words(st.which), (unsigned long long)wait,
             never ? " (a request this large, about its prompt plus max_tokens, may not fit "
                     "in one minute's limit: lower max_tokens)"
                   : "");
    refuse(call, "429", msg, wait, &st);
    return false;
}

/* Copy src into a fixed field, cut to fit. */
static void put(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* The access-log line's usage fields: copies in the request's arena, since the configuration
 * the names come from may be gone by the time the line is written. */
static void log_usage(struct sl_proxy_call *call, const struct sl_usage *u, bool estimated)
{
    struct sl_arena *arena = call->req->arena;
    struct sl_http_log_usage *l = call->client ? sl_arena_alloc(arena, sizeof(*l)) : NULL;
    if (l == NULL)
        return;
    const struct sl_config_backend *b = call->backend;
    memset(l, 0, sizeof(*l));
    l->client = sl_arena_strdup(arena, sl_str_from_cstr(call->client->name));
    l->route = call->route ? sl_arena_strdup(arena, sl_str_from_cstr(call->route->name)) : NULL;
    l->backend = b ? sl_arena_strdup(arena, sl_str_from_cstr(b->name)) : NULL;
    l->prompt_tokens = u->prompt;
    l->completion_tokens = u->completion;
    l->total_tokens = u->total;
    l->cost_micros = b ? sl_usage_cost(call->cfg, b->model, u) : 0;
    l->estimated = estimated;
    call->req->log_usage = l;
}

void sl_proxy_account(struct sl_proxy_call *call)
{
    struct sl_usage u = sl_usage_scanner_result(&call->usage);
    sl_usage_scanner_dispose(&call->usage);
    bool answered = call->status >= 200 && call->status < 300;
    bool estimated = false;
    if (!u.found && (answered || (call->status == 0 && call->responded))) {
        /* No usage reported: the estimate is what is known. */
        memset(&u, 0, sizeof(u));
        u.prompt = u.total = call->estimate;
        estimated = true;
    } else if (!u.found) {
        memset(&u, 0, sizeof(u)); /* refused or failed: nothing was used */
    }
    if (call->ticket.active)
        sl_limiter_settle(call->conf->limiter, &call->ticket, u.total, now_ms(call));
    log_usage(call, &u, estimated);
    struct sl_ledger *ledger = call->conf->ledger;
    struct sl_proxy_worker *w = call->worker;
    struct sl_metrics *metrics = w ? w->proxy->metrics : NULL;
    if ((ledger == NULL && metrics == NULL) || call->client == NULL)
        return;
    struct sl_ledger_record r;
    memset(&r, 0, sizeof(r));
    const struct sl_config_backend *b = call->backend;
    uint64_t now = now_ms(call), start = call->req->start_us / 1000;
    r.time_unix_ms = call->arrival_unix_ms;
    put(r.request_id, sizeof(r.request_id), call->req->id);
    put(r.client, sizeof(r.client), call->client->name);
    put(r.route, sizeof(r.route), call->route ? call->route->name : "");
    put(r.backend, sizeof(r.backend), b ? b->name : "");
    put(r.region, sizeof(r.region), b ? b->region : "");
    put(r.model, sizeof(r.model), b ? b->model : "");
    put(r.version, sizeof(r.version), b ? b->version : "");
    r.status = call->status;
    r.attempts = call->attempts;
    r.usage = u;
    r.estimated = estimated;
    r.latency_ms = now > start ? now - start : 0;
    r.ttft_ms = call->first_byte_ms > start ? call->first_byte_ms - start : 0;
    r.stream = call->stream;
    r.stream_ms = call->stream && call->first_byte_ms ? now - call->first_byte_ms : 0;
    r.cost = b ? sl_usage_cost(call->cfg, b->model, &u) : 0;
    /* Spill-over counts calls a lower-priority backend answered. */
    if (metrics)
        sl_metrics_observe(metrics, w->index, &r, call->spill && call->responded);
    if (ledger)
        sl_ledger_add(ledger, call->client, &r);
}
