/*
 * Sends a call to a backend of its route's pool and streams the answer to
 * the client as it arrives: the head as soon as the backend's head is in,
 * then every body chunk, pausing the upstream transfer while the client's
 * socket is congested.
 *
 * While nothing has gone to the client, an answer that says the backend is
 * throttled or failing (429, 5xx, no connection, a timeout) is not passed
 * on: the attempt is reported to the balance (which opens the backend's
 * circuit when it must) and the call is retried on another backend of the
 * pool, never the same one, up to the route's max_attempts and retry budget.
 * When no backend is left to try, the client gets the last answer, or a
 * 429/503 saying when a backend reopens. After the first byte went out, a
 * failure cuts the client connection, so that no truncated answer looks
 * complete.
 */
#include "proxy/internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Response headers sluice sets itself, or that only describe the backend's hop. */
static bool drop_response_header(struct sl_str name, const struct sl_http_header *all, size_t n)
{
    static const struct sl_str drop[] = {
        SL_STR("content-length"), SL_STR("date"),    SL_STR("server"),
        SL_STR("x-request-id"),   SL_STR("alt-svc"),
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(drop); i++)
        if (sl_str_eq_ci(name, drop[i]))
            return true;
    return sl_proxy_hop_by_hop(name, all, n);
}

static struct sl_balance *balance_of(const struct sl_proxy_call *call)
{
    return call->conf->balance;
}

static uint64_t now_ms(const struct sl_proxy_call *call)
{
    return uv_now(sl_http_request_loop(call->req));
}

static size_t route_index(const struct sl_proxy_call *call)
{
    return (size_t)(call->route - call->cfg->routes);
}

/* Tell the balance how the current attempt ended (once per attempt). */
static void end_attempt(struct sl_proxy_call *call, enum sl_balance_outcome outcome, int status,
                        uint64_t retry_after_ms, const char *why)
{
    if (!call->picked)
        return;
    call->picked = false;
    struct sl_balance_result r = {
        .outcome = outcome,
        .status = status,
        .retry_after_ms = retry_after_ms,
        .ttfb_ms = call->ttfb_ms,
        .why = why,
    };
    sl_balance_report(balance_of(call), &call->pick, &r, now_ms(call));
}

/* The request is over: release the call (and with the request, the arena it lives in). */
static void finish(struct sl_proxy_call *call)
{
    end_attempt(call, SL_BALANCE_CANCELLED, 0, 0, NULL);
    sl_proxy_call_end(call, call->responded ? call->status : 0);
    sl_http_finish(call->req);
}

/* The same, answering an error of our own first. */
static void finish_error(struct sl_proxy_call *call, int status, const char *code,
                         const char *message, const struct sl_http_header *extra, size_t n_extra)
{
    end_attempt(call, SL_BALANCE_CANCELLED, 0, 0, NULL);
    sl_proxy_call_end(call, status);
    sl_http_respond_error_with(call->req, status, code, message, extra, n_extra);
}

/* Leave a callback: if the client went away meanwhile, finish now. Returns
 * true when the call is gone. */
static bool leave(struct sl_proxy_call *call)
{
    if (--call->in_callback == 0 && call->finish_pending) {
        finish(call);
        return true;
    }
    return false;
}

/* The backends of the route the call may use: only that one when only is not SIZE_MAX, and
 * none of those in tried. */
static struct sl_balance_query query_of(const struct sl_proxy_call *call, size_t only,
                                        const uint64_t *tried)
{
    return (struct sl_balance_query){
        .route = route_index(call),
        .tried = tried,
        .allowed = call->client->backend_allow,
        .geographies = call->geographies,
        .n_geographies = call->n_geographies,
        .region = call->region,
        .only = only,
    };
}

/* The backend for the next attempt. */
static int choose(struct sl_proxy_call *call, size_t only, uint64_t *retry_at)
{
    struct sl_balance_query q = query_of(call, only, call->tried);
    return sl_balance_choose(call->conf->picks[call->worker->index], &q, now_ms(call), &call->pick,
                             retry_at);
}

/*
 * Over every backend the call may use, those already tried included: the soonest time one
 * reopens, into *reopen_at (own_reopen counts too: the backend that just throttled, whose
 * report may not show yet; 0 for none), and whether one is throttled rather than failing
 * (a 429 for the client, not a 503).
 */
static bool outlook(const struct sl_proxy_call *call, uint64_t own_reopen, uint64_t *reopen_at)
{
    struct sl_balance_query q = query_of(call, call->pinned, NULL);
    bool throttled = false;
    sl_balance_outlook(balance_of(call), &q, now_ms(call), reopen_at, &throttled);
    if (own_reopen && (*reopen_at == 0 || own_reopen < *reopen_at))
        *reopen_at = own_reopen;
    return throttled;
}

/* "eu, us" for messages. */
static void append_geographies(struct sl_buf *b, const struct sl_proxy_call *call)
{
    for (size_t i = 0; i < call->n_geographies; i++)
        sl_buf_appendf(b, "%s%s", i ? ", " : "", call->geographies[i]);
}

/*
 * No backend can take the call now. err is what sl_balance_choose said:
 * SL_EAGAIN (some will reopen at retry_at) or SL_ENOTFOUND (none may serve
 * it). Throttled backends make it a 429, failing ones a 503; both say when
 * to come back, in the headers the OpenAI SDKs and LangChain honour.
 */
static void respond_unavailable(struct sl_proxy_call *call, int err, uint64_t retry_at)
{
    char msg[512];
    struct sl_buf where;
    sl_buf_init(&where);
    if (call->n_geographies) {
        sl_buf_appendf(&where, " in geography ");
        append_geographies(&where, call);
    }
    const char *in = where.base ? where.base : "";
    const char *route = call->route->name;
    const char *holder = call->pinned != SIZE_MAX ? call->cfg->backends[call->pinned].name : NULL;
    uint64_t now = now_ms(call);
    if (err != SL_EAGAIN) {
        if (holder)
            snprintf(msg, sizeof(msg),
                     "the object this request names is held by backend %s, which cannot serve "
                     "route %s here%s",
                     holder, route, in);
        else
            snprintf(msg, sizeof(msg),
                     "no backend of route %s may serve this request%s: check the route's and the "
                     "client's geographies",
                     route, in);
        sl_buf_dispose(&where);
        finish_error(call, 503, "ServiceUnavailable", msg, NULL, 0);
        return;
    }
    uint64_t ignored;
    bool throttled = outlook(call, 0, &ignored);
    uint64_t wait = retry_at > now ? retry_at - now : 1;
    wait = SL_MIN(wait, (uint64_t)SL_PROXY_MAX_RETRY_AFTER_MS);
    if (holder)
        snprintf(msg, sizeof(msg),
                 "backend %s, which holds the object this request names, is %s; retry after %llu "
                 "ms",
                 holder, throttled ? "throttled" : "failing", (unsigned long long)wait);
    else
        snprintf(msg, sizeof(msg), "every backend of route %s%s is %s; retry after %llu ms", route,
                 in, throttled ? "throttled or unavailable" : "failing or unavailable",
                 (unsigned long long)wait);
    sl_buf_dispose(&where);
    struct sl_proxy_retry r;
    sl_proxy_retry_headers(&r, wait);
    finish_error(call, throttled ? 429 : 503, throttled ? "429" : "ServiceUnavailable", msg, r.h,
                 SL_ARRAY_LEN(r.h));
}

static const struct sl_upstream_callbacks callbacks;

/* Is backend b outside the route's first priority group (the pool is sorted by priority)? */
static bool spills(const struct sl_config_route *r, size_t b)
{
    for (size_t m = 0; m < r->n_pool; m++)
        if (r->pool[m].backend_index == b)
            return r->pool[m].priority > r->pool[0].priority;
    return false;
}

/* Send the call to the backend in call->pick. False when it could not start (the client
 * has been answered then). */
static bool start_attempt(struct sl_proxy_call *call)
{
    struct sl_http_request *req = call->req;
    call->picked = true;
    call->spill = spills(call->route, call->pick.backend);
    call->attempts++;
    call->tried[call->pick.backend / 64] |= 1ull << (call->pick.backend % 64);
    call->attempt_start_ms = now_ms(call);
    call->ttfb_ms = 0;
    if (sl_proxy_prepare_attempt(call) != SL_OK) {
        finish_error(call, 500, "InternalServerError", "out of memory", NULL, 0);
        return false;
    }
    const struct sl_config_backend *b = call->backend;
    char method[16];
    snprintf(method, sizeof(method), "%.*s", (int)SL_MIN(req->head.method.len, 15),
             req->head.method.base);
    struct sl_upstream_request r = {
        .method = method,
        .url = call->url,
        .headers = call->headers,
        .n_headers = call->n_headers,
        .body = call->body,
        .connect_timeout_ms = b->connect_timeout_ms,
        .first_byte_timeout_ms = b->first_byte_timeout_ms,
        .idle_timeout_ms = b->idle_timeout_ms,
        .total_timeout_ms = b->total_timeout_ms,
        .ca_file = b->ca_file,
        .insecure = b->insecure,
        .http2 = b->http2,
        .expect_stream = call->stream,
    };
    struct sl_upstream *up = call->worker ? call->worker->upstream : NULL;
    if (up == NULL || sl_upstream_start(up, &r, &callbacks, call, &call->xfer) != SL_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "backend %s could not be reached: the request could not be started", b->name);
        finish_error(call, 502, "BadGateway", msg, NULL, 0);
        return false;
    }
    return true;
}

static bool is_idempotent(const struct sl_proxy_call *call)
{
    struct sl_str m = call->req->head.method;
    return !call->target.stateful || sl_str_eq(m, SL_STR("GET")) || sl_str_eq(m, SL_STR("HEAD"));
}

/* May the attempt that just ended like this be tried again elsewhere? */
static bool may_retry(const struct sl_proxy_call *call, enum sl_balance_outcome outcome,
                      enum sl_upstream_failure failure)
{
    if (call->responded || call->finish_pending || call->pinned != SIZE_MAX)
        return false; /* bytes went out, nobody waits, or only one backend has the object */
    if (outcome != SL_BALANCE_THROTTLED && outcome != SL_BALANCE_FAILURE)
        return false;
    if (call->attempts >= call->route->max_attempts || failure == SL_UPSTREAM_TIMEOUT_TOTAL)
        return false;
    /* A call that creates or changes state may have done so unless the backend refused it
     * (429) or the connection never got as far as the request. */
    if (!is_idempotent(call))
        return outcome == SL_BALANCE_THROTTLED || failure == SL_UPSTREAM_CONNECT ||
               failure == SL_UPSTREAM_TLS || failure == SL_UPSTREAM_TIMEOUT_CONNECT;
    return true;
}

enum retry_result {
    RETRY_STARTED,     /* a new attempt runs on another backend */
    RETRY_ANSWERED,    /* the client got an answer (a 429/503 of ours, or an error) */
    RETRY_NOT_ALLOWED, /* pass the backend's own answer on */
};

/*
 * The attempt failed before anything went to the client: try the next backend. own_reopen is
 * when the failed backend itself reopens, if it is throttled (0 otherwise); with every other
 * backend unavailable, the client is told the soonest reopen of them all.
 */
static enum retry_result retry(struct sl_proxy_call *call, enum sl_balance_outcome outcome,
                               enum sl_upstream_failure failure, uint64_t own_reopen)
{
    if (!may_retry(call, outcome, failure))
        return RETRY_NOT_ALLOWED;
    uint64_t retry_at = 0;
    const char *failed = call->backend->name;
    int err = choose(call, SIZE_MAX, &retry_at);
    if (err == SL_EAGAIN) {
        if (call->xfer) {
            sl_upstream_cancel(call->xfer);
            call->xfer = NULL;
        }
        uint64_t at = own_reopen && own_reopen < retry_at ? own_reopen : retry_at;
        if (sl_proxy_queue_wait(call, at) == SL_OK)
            return RETRY_STARTED; /* it goes when a backend reopens */
        respond_unavailable(call, err, at);
        return RETRY_ANSWERED;
    }
    if (err != SL_OK && outcome == SL_BALANCE_THROTTLED) {
        /* Every backend was tried and the last one throttled too: the call waits for the
         * soonest of them to reopen, when the queue takes it; otherwise the client is told
         * that time (a lone backend's own 429 goes on as it is, with that time). */
        uint64_t at = 0;
        outlook(call, own_reopen, &at);
        struct sl_upstream_xfer *xfer = call->xfer;
        call->xfer = NULL;
        if (sl_proxy_queue_wait(call, at) == SL_OK) {
            if (xfer)
                sl_upstream_cancel(xfer);
            return RETRY_STARTED; /* it goes when a backend reopens */
        }
        call->xfer = xfer;
        if (call->attempts > 1) {
            if (call->xfer) {
                sl_upstream_cancel(call->xfer);
                call->xfer = NULL;
            }
            respond_unavailable(call, SL_EAGAIN, at);
            return RETRY_ANSWERED;
        }
    }
    if (err != SL_OK)
        return RETRY_NOT_ALLOWED; /* the backend's own answer tells the most */
    if (!sl_balance_take_retry(balance_of(call), route_index(call), now_ms(call))) {
        struct sl_balance_result r = {.outcome = SL_BALANCE_CANCELLED};
        sl_balance_report(balance_of(call), &call->pick, &r, now_ms(call));
        sl_log_warn("request %s: route %s is out of retry budget; backend %s's answer goes to "
                    "the client",
                    call->req->id, call->route->name, failed);
        return RETRY_NOT_ALLOWED;
    }
    if (call->xfer) {
        sl_upstream_cancel(call->xfer);
        call->xfer = NULL;
    }
    sl_log_info("request %s: retrying on backend %s after backend %s failed (attempt %u of %llu)",
                call->req->id, call->cfg->backends[call->pick.backend].name, failed,
                call->attempts + 1, (unsigned long long)call->route->max_attempts);
    call->paused = false;
    call->pin_answer = call->pin_answer && call->id_scan_len == 0;
    return start_attempt(call) ? RETRY_STARTED : RETRY_ANSWERED;
}

static void on_client_drain(struct sl_http_request *req, void *data)
{
    struct sl_proxy_call *call = data;
    if (!call->paused)
        return;
    call->paused = false;
    if (call->in_callback == 0 && call->xfer)
        sl_upstream_resume(call->xfer);
}

static void on_client_abort(struct sl_http_request *req, void *data)
{
    struct sl_proxy_call *call = data;
    sl_proxy_queue_leave(call);
    if (call->xfer) {
        sl_upstream_cancel(call->xfer); /* the backend stops generating at once */
        call->xfer = NULL;
    }
    if (call->in_callback)
        call->finish_pending = true;
    else
        finish(call);
}

/* A 429's retry headers, for the balance; the backend's max_retry_after bounds them. */
static uint64_t throttle_ms(struct sl_proxy_call *call, const struct sl_http_header *headers,
                            size_t n)
{
    uint64_t ms = 0;
    bool clamped = false;
    if (sl_balance_retry_after(headers, n, sl_clock_unix_ms(), call->backend->max_retry_after_ms,
                               &ms, &clamped) != SL_OK)
        return 0;
    if (clamped)
        sl_log_warn("backend %s asked for a pause longer than its max_retry_after; it is left "
                    "alone for %llu ms",
                    call->backend->name, (unsigned long long)ms);
    return ms ? ms : 1;
}

/* A provisioned (PTU) deployment says how busy it is in every answer: keep the last word
 * for the sluice_backend_ptu_utilization_ratio gauge. */
static void note_utilization(struct sl_proxy_call *call, const struct sl_http_header *headers,
                             size_t n, uint64_t now)
{
    static const struct sl_str name = SL_STR("azure-openai-deployment-utilization");
    struct sl_proxy_worker *w = call->worker;
    uint64_t ppm;
    for (size_t i = 0; w && i < n; i++)
        if (headers[i].name.len == name.len && sl_str_eq_ci(headers[i].name, name) &&
            sl_metrics_parse_utilization(headers[i].value, &ppm) == SL_OK) {
            sl_metrics_ptu(w->proxy->metrics, w->index, call->backend->name, ppm, now);
            return;
        }
}

static void on_response(void *data, int status, const struct sl_http_header *headers, size_t n)
{
    struct sl_proxy_call *call = data;
    struct sl_http_request *req = call->req;
    call->in_callback++;
    uint64_t now = now_ms(call);
    call->ttfb_ms = now - call->attempt_start_ms;
    note_utilization(call, headers, n, now);
    enum sl_balance_outcome outcome = sl_balance_status_outcome(status);
    if (outcome != SL_BALANCE_SUCCESS) {
        uint64_t wait = outcome == SL_BALANCE_THROTTLED ? throttle_ms(call, headers, n) : 0;
        char why[64];
        if (wait)
            snprintf(why, sizeof(why), "%d, retry after %llu ms", status, (unsigned long long)wait);
        else
            snprintf(why, sizeof(why), "%d", status);
        end_attempt(call, outcome, status, wait, why);
        uint64_t reopen = outcome == SL_BALANCE_THROTTLED
                              ? now + (wait ? wait : call->backend->throttle_time_ms)
                              : 0;
        switch (retry(call, outcome, SL_UPSTREAM_OK, reopen)) {
        case RETRY_STARTED:
            leave(call);
            return;
        case RETRY_ANSWERED:
            return; /* the call is gone */
        case RETRY_NOT_ALLOWED:
            break;
        }
    } else if (call->session_key.len && status < 300) {
        sl_balance_pin(balance_of(call), call->session_key, call->pick.backend,
                       call->cfg->routing.session_ttl_ms, now);
    }
    if (status >= 300)
        call->pin_answer = false;
    /* A throttled answer that reaches the client says when the soonest backend it may use
     * reopens, within 60 s (what clients honour), not what this one backend asked: unless the
     * request is pinned to it, when its own word is the one that counts. */
    bool own_retry = outcome == SL_BALANCE_THROTTLED && call->pinned == SIZE_MAX;
    struct sl_proxy_retry retry;
    if (own_retry) {
        uint64_t at = 0;
        outlook(call, 0, &at);
        uint64_t wait = at > now ? at - now : 1;
        sl_proxy_retry_headers(&retry, SL_MIN(wait, (uint64_t)SL_PROXY_MAX_RETRY_AFTER_MS));
    }
    struct sl_http_header *out = sl_arena_alloc(req->arena, (n + 3) * sizeof(*out));
    size_t m = 0;
    uint64_t length = 0;
    bool has_length = false;
    size_t scope = sl_proxy_connection_scope(headers, n);
    for (size_t i = 0; out && i < n; i++) {
        if (sl_str_eq_ci(headers[i].name, SL_STR("content-length")))
            has_length = sl_str_to_u64(headers[i].value, &length) == SL_OK;
        if (own_retry && (sl_str_eq_ci(headers[i].name, SL_STR("retry-after")) ||
                          sl_str_eq_ci(headers[i].name, SL_STR("retry-after-ms"))))
            continue;
        if (!drop_response_header(headers[i].name, headers, scope))
            out[m++] = headers[i];
    }
    if (out && own_retry) {
        out[m++] = retry.h[0];
        out[m++] = retry.h[1];
    }
    if (out && call->cfg->backend_header)
        out[m++] = (struct sl_http_header){SL_STR("x-sluice-backend"),
                                           sl_str_from_cstr(call->backend->name)};
    call->responded = true;
    call->status = status;
    call->first_byte_ms = now;
    /* A stream whose usage chunk the client did not ask for loses it on the way, so its
     * length is no longer the backend's. */
    call->filtering = call->hide_usage && status >= 200 && status < 300;
    if (call->filtering)
        has_length = false;
    sl_http_start_response(req, status, out, out ? m : 0,
                           has_length ? SL_HTTP_FRAMING_LENGTH : SL_HTTP_FRAMING_CHUNKED, length);
    /* A stream's head goes out now: its client must not wait for the first
     * event. A sized answer's head goes with its body, in one write. */
    if (!has_length || length == 0)
        sl_http_flush(req);
    leave(call);
}

/* What the usage-chunk filter lets through, to the client. */
static void write_filtered(void *arg, const char *bytes, size_t len)
{
    struct sl_proxy_call *call = arg;
    if (!call->finish_pending)
        sl_http_write(call->req, bytes, len);
}

static bool on_body(void *data, const char *bytes, size_t len)
{
    struct sl_proxy_call *call = data;
    call->in_callback++;
    bool go_on = true;
    if (call->pin_answer) {
        struct sl_str id = sl_proxy_scan_id(call, bytes, len);
        if (id.len) {
            call->pin_answer = false;
            struct sl_str key = sl_proxy_pin_key(call->req, id);
            if (key.len)
                sl_balance_pin(balance_of(call), key, call->pick.backend,
                               call->cfg->routing.pin_ttl_ms, now_ms(call));
        }
    }
    sl_usage_scanner_feed(&call->usage, bytes, len);
    if (!call->finish_pending) {
        if (call->filtering)
            sl_sse_filter_feed(&call->sse, bytes, len, write_filtered, call);
        else
            sl_http_write(call->req, bytes, len);
        if (!call->finish_pending && sl_http_congested(call->req)) {
            call->paused = true;
            go_on = false;
        }
    }
    if (leave(call))
        return false;
    return go_on;
}

static void on_done(void *data, enum sl_upstream_failure failure, const char *message)
{
    struct sl_proxy_call *call = data;
    struct sl_http_request *req = call->req;
    call->xfer = NULL;
    if (call->finish_pending) {
        finish(call);
        return;
    }
    if (failure == SL_UPSTREAM_OK) {
        end_attempt(call, SL_BALANCE_SUCCESS, 0, 0, NULL);
        if (call->filtering)
            sl_sse_filter_finish(&call->sse, write_filtered, call);
        finish(call);
        return;
    }
    /* Our own trouble (memory, options) says nothing about the backend. */
    enum sl_balance_outcome outcome =
        failure == SL_UPSTREAM_INTERNAL ? SL_BALANCE_CANCELLED : SL_BALANCE_FAILURE;
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", sl_upstream_failure_name(failure), message ? message : "");
    end_attempt(call, outcome, 0, 0, why);
    sl_log_warn("request %s: backend %s failed (%s): %s", req->id, call->backend->name,
                sl_upstream_failure_name(failure), message ? message : "");
    if (call->responded) {
        /* Bytes already went out: only a cut connection tells the client. */
        sl_proxy_call_end(call, 0);
        sl_http_abort(req, false);
        return;
    }
    call->in_callback++;
    enum retry_result rr = retry(call, outcome, failure, 0);
    if (rr == RETRY_ANSWERED)
        return;
    if (rr == RETRY_STARTED) {
        leave(call);
        return;
    }
    call->in_callback--;
    bool timeout = failure == SL_UPSTREAM_TIMEOUT_CONNECT ||
                   failure == SL_UPSTREAM_TIMEOUT_FIRST_BYTE ||
                   failure == SL_UPSTREAM_TIMEOUT_IDLE || failure == SL_UPSTREAM_TIMEOUT_TOTAL;
    char msg[512];
    snprintf(msg, sizeof(msg), "backend %s %s: %s", call->backend->name,
             timeout ? "did not answer in time" : "could not be reached",
             message ? message : sl_upstream_failure_name(failure));
    finish_error(call, timeout ? 504 : 502, timeout ? "GatewayTimeout" : "BadGateway", msg, NULL,
                 0);
}

static const struct sl_upstream_callbacks callbacks = {on_response, on_body, on_done};

void sl_proxy_forward(struct sl_proxy_call *call)
{
    struct sl_balance *b = balance_of(call);
    uint64_t now = now_ms(call), retry_at = 0;
    sl_http_set_callbacks(call->req, on_client_drain, on_client_abort, call);
    sl_balance_count_request(b, route_index(call), now);
    int err = SL_ENOTFOUND;
    if (call->pinned != SIZE_MAX) {
        err = choose(call, call->pinned, &retry_at);
    } else {
        /* A session goes back to its backend while that one is available. */
        if (call->session_key.len &&
            sl_balance_pinned(b, call->session_key, now, &call->session_backend) == SL_OK)
            err = choose(call, call->session_backend, &retry_at);
        if (err != SL_OK)
            err = choose(call, SIZE_MAX, &retry_at);
    }
    if (err == SL_EAGAIN && sl_proxy_queue_wait(call, retry_at) == SL_OK)
        return; /* it goes when a backend reopens */
    if (err != SL_OK) {
        respond_unavailable(call, err, retry_at);
        return;
    }
    start_attempt(call);
}

int sl_proxy_try_start(struct sl_proxy_call *call, uint64_t *retry_at)
{
    int err = choose(call, SIZE_MAX, retry_at);
    if (err == SL_EAGAIN)
        return SL_EAGAIN;
    if (err != SL_OK)
        respond_unavailable(call, err, *retry_at);
    else
        start_attempt(call);
    return SL_OK;
}

void sl_proxy_give_up(struct sl_proxy_call *call, uint64_t retry_at)
{
    respond_unavailable(call, SL_EAGAIN, retry_at);
}
