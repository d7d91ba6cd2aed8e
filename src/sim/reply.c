/*
 * Sending answers: the headers every response carries, whole bodies, and
 * errors in Azure's shape ({"error":{"code","message"}}) and OpenAI's
 * ({"error":{"message","type","param","code"}}), including 429s with
 * retry-after headers. Timed delivery (latency, streams, delivery faults) is
 * in deliver.c.
 */
#include "sim/internal.h"

#include <stdio.h>
#include <string.h>

#define LIT SL_SIM_LIT

/* ---- headers ---- */

void sl_sim_headers_add(struct sl_sim_headers *hs, const char *name, struct sl_str value)
{
    if (hs->n < SL_ARRAY_LEN(hs->h))
        hs->h[hs->n++] = (struct sl_http_header){sl_str_from_cstr(name), value};
}

/* Format a value into the header block's own storage. */
__attribute__((format(printf, 3, 4))) static void add_fmt(struct sl_sim_headers *hs,
                                                          const char *name, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(hs->store) - hs->used;
    va_start(ap, fmt);
    int n = vsnprintf(hs->store + hs->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        return;
    sl_sim_headers_add(hs, name, (struct sl_str){hs->store + hs->used, (size_t)n});
    hs->used += (size_t)n + 1;
}

void sl_sim_headers_build(struct sl_sim_headers *hs, struct sl_sim_call *c, bool sse)
{
    hs->n = 0;
    hs->used = 0;
    sl_sim_headers_add(hs, "Content-Type",
                       sse ? SL_STR("text/event-stream; charset=utf-8")
                           : SL_STR("application/json"));
    if (sse)
        sl_sim_headers_add(hs, "Cache-Control", SL_STR("no-cache"));
    char uuid[40];
    sl_sim_uuid_new(uuid);
    add_fmt(hs, "apim-request-id", "%s", uuid);
    const struct sl_config_sim_endpoint *ecfg = c->ep->cfg;
    if (c->azure && ecfg->region && ecfg->region[0])
        add_fmt(hs, "x-ms-region", "%s", ecfg->region);
    if (c->azure && c->dep)
        add_fmt(hs, "x-ms-deployment-name", "%s", c->dep->cfg->name);
    uint64_t us = sl_clock_mono_us() - c->req->start_us;
    add_fmt(hs, "openai-processing-ms", "%llu.%03llu", (unsigned long long)(us / 1000),
            (unsigned long long)(us % 1000));
    if (!c->have_adm || c->dep == NULL)
        return;
    const struct sl_sim_quota *q = &c->dep->quota;
    if (q->capacity == SL_SIM_CAPACITY_PROVISIONED) {
        if (q->ptu_tokens)
            add_fmt(hs, "azure-openai-deployment-utilization", "%llu.%llu%%",
                    (unsigned long long)(c->adm.utilisation_pct10 / 10),
                    (unsigned long long)(c->adm.utilisation_pct10 % 10));
        return;
    }
    if (c->adm.remaining_requests != UINT64_MAX) {
        add_fmt(hs, "x-ratelimit-limit-requests", "%llu", (unsigned long long)q->rpm);
        add_fmt(hs, "x-ratelimit-remaining-requests", "%llu",
                (unsigned long long)c->adm.remaining_requests);
    }
    if (c->adm.remaining_tokens != UINT64_MAX) {
        add_fmt(hs, "x-ratelimit-limit-tokens", "%llu", (unsigned long long)q->tpm);
        add_fmt(hs, "x-ratelimit-remaining-tokens", "%llu",
                (unsigned long long)c->adm.remaining_tokens);
    }
}

/* ---- counting ---- */

struct sl_sim_counters *sl_sim_counters_of(struct sl_sim_call *c)
{
    return c->dep ? &c->dep->stats : &c->ep->stats;
}

void sl_sim_record(struct sl_sim_call *c, int status)
{
    struct sl_sim_counters *k = sl_sim_counters_of(c);
    if (!c->counted) {
        c->counted = true;
        sl_sim_count(&k->requests, 1);
    }
    if (status)
        sl_sim_count_status(k, status);
    else
        sl_sim_count(&k->resets, 1);
}

/* ---- whole answers ---- */

static void respond(struct sl_sim_call *c, struct sl_sim_headers *hs, int status,
                    struct sl_str body)
{
    sl_sim_record(c, status);
    if (sl_http_start_response(c->req, status, hs->h, hs->n, SL_HTTP_FRAMING_LENGTH, body.len) ==
        SL_OK)
        sl_http_write(c->req, body.base, body.len);
    sl_http_finish(c->req);
}

void sl_sim_reply_body(struct sl_sim_call *c, int status, struct sl_str body)
{
    struct sl_sim_headers hs;
    sl_sim_headers_build(&hs, c, false);
    respond(c, &hs, status, body);
}

static void reply_buf(struct sl_sim_call *c, struct sl_sim_headers *hs, int status,
                      struct sl_buf *b, int rc)
{
    if (rc != SL_OK) {
        sl_http_respond_error(c->req, 500, "InternalServerError", "out of memory");
        sl_sim_record(c, 500);
    } else {
        respond(c, hs, status, (struct sl_str){b->base, b->len});
    }
    sl_buf_dispose(b);
}

void sl_sim_reply_azure_error(struct sl_sim_call *c, int status, const char *code,
                              const char *message)
{
    struct sl_buf b;
    struct sl_sim_headers hs;
    sl_buf_init(&b);
    int rc = LIT(&b, "{\"error\":{\"code\":\"");
    rc |= sl_buf_append_json_escaped(&b, sl_str_from_cstr(code));
    rc |= LIT(&b, "\",\"message\":\"");
    rc |= sl_buf_append_json_escaped(&b, sl_str_from_cstr(message));
    rc |= LIT(&b, "\"}}");
    sl_sim_headers_build(&hs, c, false);
    reply_buf(c, &hs, status, &b, rc ? SL_ENOMEM : SL_OK);
}

static int append_quoted_or_null(struct sl_buf *b, const char *s)
{
    if (s == NULL || s[0] == '\0')
        return LIT(b, "null");
    int rc = LIT(b, "\"");
    rc |= sl_buf_append_json_escaped(b, sl_str_from_cstr(s));
    return rc | LIT(b, "\"");
}

static int openai_error_body(struct sl_buf *b, const char *message, const char *type,
                             const char *param, const char *code)
{
    int rc = LIT(b, "{\"error\":{\"message\":\"");
    rc |= sl_buf_append_json_escaped(b, sl_str_from_cstr(message));
    rc |= LIT(b, "\",\"type\":");
    rc |= append_quoted_or_null(b, type);
    rc |= LIT(b, ",\"param\":");
    rc |= append_quoted_or_null(b, param);
    rc |= LIT(b, ",\"code\":");
    rc |= append_quoted_or_null(b, code);
    rc |= LIT(b, "}}");
    return rc ? SL_ENOMEM : SL_OK;
}

void sl_sim_reply_openai_error(struct sl_sim_call *c, int status, const char *message,
                               const char *type, const char *param, const char *code)
{
    struct sl_buf b;
    struct sl_sim_headers hs;
    sl_buf_init(&b);
    int rc = openai_error_body(&b, message, type, param, code);
    sl_sim_headers_build(&hs, c, false);
    reply_buf(c, &hs, status, &b, rc);
}

void sl_sim_reply_method_not_allowed(struct sl_sim_call *c, const char *allow)
{
    struct sl_buf b;
    struct sl_sim_headers hs;
    char msg[160];
    struct sl_str m = c->req->head.method, p = c->req->head.path;
    snprintf(msg, sizeof(msg), "Invalid method for URL (%.*s %.*s)", (int)SL_MIN(m.len, 16), m.base,
             (int)SL_MIN(p.len, 100), p.base);
    sl_buf_init(&b);
    int rc = openai_error_body(&b, msg, "invalid_request_error", NULL, NULL);
    sl_sim_headers_build(&hs, c, false);
    sl_sim_headers_add(&hs, "Allow", sl_str_from_cstr(allow));
    reply_buf(c, &hs, 405, &b, rc);
}

static const char *operation_name(enum sl_sim_op op)
{
    switch (op) {
    case SL_SIM_OP_CHAT:
        return "ChatCompletions_Create";
    case SL_SIM_OP_COMPLETIONS:
        return "Completions_Create";
    case SL_SIM_OP_EMBEDDINGS:
        return "Embeddings_Create";
    case SL_SIM_OP_RESPONSES:
        break;
    }
    return "Responses_Create";
}

/* OpenAI's way of writing a wait: "120ms", "1.5s". */
static void format_wait(char *out, size_t len, uint64_t ms)
{
    if (ms < 1000)
        snprintf(out, len, "%llums", (unsigned long long)ms);
    else
        snprintf(out, len, "%llu.%03llus", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
}

void sl_sim_reply_throttled(struct sl_sim_call *c, enum sl_sim_limit limit, uint64_t retry_ms)
{
    struct sl_buf b;
    struct sl_sim_headers hs;
    char msg[512];
    uint64_t secs = (retry_ms + 999) / 1000;
    if (secs == 0 && retry_ms)
        secs = 1;
    sl_buf_init(&b);
    sl_sim_headers_build(&hs, c, false);
    if (retry_ms) {
        add_fmt(&hs, "retry-after", "%llu", (unsigned long long)SL_MAX(secs, 1));
        add_fmt(&hs, "retry-after-ms", "%llu", (unsigned long long)retry_ms);
    }
    int rc;
    if (c->azure) {
        const char *what = limit == SL_SIM_LIMIT_REQUESTS      ? "call rate limit"
                           : limit == SL_SIM_LIMIT_PROVISIONED ? "the provisioned throughput"
                                                               : "token rate limit";
        int n = snprintf(msg, sizeof(msg),
                         "Requests to the %s Operation under Azure OpenAI API version %.*s have "
                         "exceeded %s of your current OpenAI %s pricing tier.",
                         operation_name(c->r.op), (int)SL_MIN(c->api_version.len, 64),
                         c->api_version.base ? c->api_version.base : "", what,
                         limit == SL_SIM_LIMIT_PROVISIONED ? "Provisioned" : "S0");
        if (retry_ms && n > 0 && (size_t)n < sizeof(msg))
            snprintf(msg + n, sizeof(msg) - (size_t)n, " Please retry after %llu second%s.",
                     (unsigned long long)SL_MAX(secs, 1), secs > 1 ? "s" : "");
        n = (int)strlen(msg);
        snprintf(msg + n, sizeof(msg) - (size_t)n,
                 " Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
                 "increase the default rate limit.");
        rc = LIT(&b, "{\"error\":{\"code\":\"429\",\"message\":\"");
        rc |= sl_buf_append_json_escaped(&b, sl_str_from_cstr(msg));
        rc |= LIT(&b, "\",\"param\":null,\"type\":null}}");
        rc = rc ? SL_ENOMEM : SL_OK;
    } else {
        char wait[32];
        const struct sl_sim_quota *q = c->dep ? &c->dep->quota : NULL;
        bool reqs = limit == SL_SIM_LIMIT_REQUESTS;
        format_wait(wait, sizeof(wait), retry_ms);
        snprintf(msg, sizeof(msg),
                 "Rate limit reached for %s in organization org-sluicesim on %s: Limit %llu, Used "
                 "%llu, Requested %llu. Please try again in %s. Visit "
                 "https://platform.openai.com/account/rate-limits to learn more.",
                 c->dep ? c->dep->cfg->name : "this model",
                 reqs ? "requests per min (RPM)" : "tokens per min (TPM)",
                 (unsigned long long)(q ? (reqs ? q->rpm : q->tpm) : 0),
                 (unsigned long long)(reqs ? (q ? q->rpm : 0) : c->adm.used_tokens),
                 (unsigned long long)(reqs ? 1 : c->prompt_tokens + c->max_tokens), wait);
        rc = openai_error_body(&b, msg, reqs ? "requests" : "tokens", NULL, "rate_limit_exceeded");
    }
    reply_buf(c, &hs, 429, &b, rc);
}

void sl_sim_reply_fault_status(struct sl_sim_call *c)
{
    int status = (int)c->fault.status;
    if (status == 429) {
        sl_sim_reply_throttled(c, SL_SIM_LIMIT_TOKENS, c->fault.retry_after_ms);
        return;
    }
    const char *msg = status == 500   ? "The server had an error while processing your request. "
                                        "Sorry about that!"
                      : status == 502 ? "Bad gateway."
                      : status == 503 ? "The service is temporarily unable to process your "
                                        "request. Please try again later."
                      : status == 504 ? "The operation was timeout."
                                      : sl_http_status_reason(status);
    if (c->azure)
        sl_sim_reply_azure_error(c, status, sl_http_status_code_name(status), msg);
    else
        sl_sim_reply_openai_error(
            c, status, msg, status >= 500 ? "server_error" : "invalid_request_error", NULL, NULL);
}

void sl_sim_reply_reset(struct sl_sim_call *c)
{
    sl_sim_record(c, 0);
    sl_http_abort(c->req, true);
}
