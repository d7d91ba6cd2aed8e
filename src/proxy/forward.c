/*
 * Streams a backend's answer to the client as it arrives: the head as soon
 * as the backend's head is in, then every body chunk, pausing the upstream
 * transfer while the client's socket is congested. A failure before the
 * first byte went out becomes a 502/504 naming the backend; after it, the
 * client connection is cut, so that no truncated answer looks complete.
 */
#include "proxy/internal.h"

#include <stdio.h>
#include <string.h>

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

static void finish(struct sl_proxy_call *call)
{
    sl_http_finish(call->req); /* frees call (arena) */
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
    if (call->xfer) {
        sl_upstream_cancel(call->xfer); /* the backend stops generating at once */
        call->xfer = NULL;
    }
    if (call->in_callback)
        call->finish_pending = true;
    else
        finish(call);
}

static void on_response(void *data, int status, const struct sl_http_header *headers, size_t n)
{
    struct sl_proxy_call *call = data;
    struct sl_http_request *req = call->req;
    call->in_callback++;
    struct sl_http_header *out = sl_arena_alloc(req->arena, (n + 1) * sizeof(*out));
    size_t m = 0;
    uint64_t length = 0;
    bool has_length = false;
    for (size_t i = 0; out && i < n; i++) {
        if (sl_str_eq_ci(headers[i].name, SL_STR("content-length")))
            has_length = sl_str_to_u64(headers[i].value, &length) == SL_OK;
        if (!drop_response_header(headers[i].name, headers, n))
            out[m++] = headers[i];
    }
    if (out && call->cfg->backend_header)
        out[m++] = (struct sl_http_header){SL_STR("x-sluice-backend"),
                                           sl_str_from_cstr(call->backend->name)};
    call->responded = true;
    sl_http_start_response(req, status, out, out ? m : 0,
                           has_length ? SL_HTTP_FRAMING_LENGTH : SL_HTTP_FRAMING_CHUNKED, length);
    /* A stream's head goes out now: its client must not wait for the first
     * event. A sized answer's head goes with its body, in one write. */
    if (!has_length || length == 0)
        sl_http_flush(req);
    leave(call);
}

static bool on_body(void *data, const char *bytes, size_t len)
{
    struct sl_proxy_call *call = data;
    call->in_callback++;
    bool go_on = true;
    if (!call->finish_pending) {
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
        finish(call);
        return;
    }
    sl_log_warn("request %s: backend %s failed (%s): %s", req->id, call->backend->name,
                sl_upstream_failure_name(failure), message ? message : "");
    if (call->responded) {
        /* Bytes already went out: only a cut connection tells the client. */
        sl_http_abort(req, false);
        return;
    }
    bool timeout = failure == SL_UPSTREAM_TIMEOUT_CONNECT ||
                   failure == SL_UPSTREAM_TIMEOUT_FIRST_BYTE ||
                   failure == SL_UPSTREAM_TIMEOUT_IDLE || failure == SL_UPSTREAM_TIMEOUT_TOTAL;
    char msg[512];
    snprintf(msg, sizeof(msg), "backend %s %s: %s", call->backend->name,
             timeout ? "did not answer in time" : "could not be reached",
             message ? message : sl_upstream_failure_name(failure));
    sl_http_respond_error(req, timeout ? 504 : 502, timeout ? "GatewayTimeout" : "BadGateway", msg);
}

static const struct sl_upstream_callbacks callbacks = {on_response, on_body, on_done};

void sl_proxy_forward(struct sl_proxy_call *call)
{
    struct sl_http_request *req = call->req;
    const struct sl_config_backend *b = call->backend;
    struct sl_upstream *up = sl_http_request_worker_data(req);
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
    };
    sl_http_set_callbacks(req, on_client_drain, on_client_abort, call);
    if (up == NULL || sl_upstream_start(up, &r, &callbacks, call, &call->xfer) != SL_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "backend %s could not be reached: the request could not be "
                 "started",
                 b->name);
        sl_http_respond_error(req, 502, "BadGateway", msg);
    }
}

int sl_proxy_worker_init(uv_loop_t *loop, unsigned index, void *data, void **worker_data)
{
    struct sl_upstream *u = NULL;
    int err = sl_upstream_new(loop, &u);
    *worker_data = u;
    return err;
}

void sl_proxy_worker_dispose(void *worker_data, void (*done)(void *arg), void *arg)
{
    if (worker_data == NULL) {
        done(arg);
        return;
    }
    sl_upstream_close(worker_data, done, arg);
}
