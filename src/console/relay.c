/*
 * The chat playground's way to the models: the page (on the admin listener)
 * posts to /console/api/v1/chat/completions with a client key in `api-key`,
 * and this relays the request to the gateway's own public listener, over
 * loopback, and streams the answer back as it arrives.
 *
 * The request is a client request like any other: the public listener
 * identifies the client by that key and applies its grants, limits, budgets
 * and usage accounting. The console holds no identity of its own, the
 * public listener needs no CORS, and the admin token (the page's
 * Authorization header) is never forwarded. Only a few request headers go
 * through (below), and only the answer headers a client needs come back.
 *
 * One relay owns its own upstream (a curl multi handle on the admin loop)
 * for its one transfer: the playground is one person's typing, and nothing
 * then stays open on the admin loop between requests or at shutdown.
 */
#include <stdlib.h>
#include <string.h>

#include "console/internal.h"
#include "upstream/upstream.h"

#define CONNECT_TIMEOUT_MS 5000

/* Request headers relayed as they came. */
static const char *const pass_request[] = {"api-key", "content-type", "accept", "x-sluice-session"};
/* Response headers relayed back (x-request-id is the admin listener's own). */
static const char *const pass_response[] = {
    "content-type",
    "retry-after",
    "retry-after-ms",
    "x-ms-region",
    "apim-request-id",
    "x-sluice-backend",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
};

/* One relayed request; owned by itself: freed once its upstream has closed. */
struct relay {
    struct sl_http_request *req; /* borrowed until sl_http_finish/abort; NULL after */
    struct sl_upstream *up;      /* owned; closed when the request ends */
    struct sl_upstream_xfer *xfer;
    char url[160];
    bool responded;
    bool paused;
};

static void on_upstream_closed(void *data)
{
    free(data);
}

/* The request is over (answered, cut or abandoned): release the upstream, then the relay. */
static void end(struct relay *r, bool complete)
{
    struct sl_http_request *req = r->req;
    r->req = NULL;
    if (r->xfer) {
        sl_upstream_cancel(r->xfer);
        r->xfer = NULL;
    }
    if (req) {
        sl_http_set_callbacks(req, NULL, NULL, NULL);
        if (complete)
            sl_http_finish(req);
        else
            sl_http_abort(req, false);
    }
    sl_upstream_close(r->up, on_upstream_closed, r);
}

static bool listed(struct sl_str name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sl_str_eq_ci(name, sl_str_from_cstr(names[i])))
            return true;
    return false;
}

static void on_response(void *data, int status, const struct sl_http_header *headers, size_t n)
{
    struct relay *r = data;
    struct sl_http_header out[SL_ARRAY_LEN(pass_response) + 1];
    size_t m = 0;
    for (size_t i = 0; i < n && m < SL_ARRAY_LEN(pass_response); i++)
        if (listed(headers[i].name, pass_response, SL_ARRAY_LEN(pass_response)))
            out[m++] = headers[i];
    out[m++] = (struct sl_http_header){SL_STR("Cache-Control"), SL_STR("no-store")};
    r->responded = true;
    sl_http_start_response(r->req, status, out, m, SL_HTTP_FRAMING_CHUNKED, 0);
    sl_http_flush(r->req); /* a stream's first event must not wait for more */
}

static bool on_body(void *data, const char *bytes, size_t len)
{
    struct relay *r = data;
    if (r->req == NULL)
        return true;
    /* A failed write has ended the relay (on_client_abort) before it returns. */
    if (sl_http_write(r->req, bytes, len) != SL_OK || r->req == NULL)
        return true;
    if (sl_http_congested(r->req)) {
        r->paused = true;
        return false;
    }
    return true;
}

static void on_done(void *data, enum sl_upstream_failure failure, const char *message)
{
    struct relay *r = data;
    r->xfer = NULL;
    if (r->req == NULL) /* the client went away during a callback */
        return;
    if (failure == SL_UPSTREAM_OK || r->responded) {
        end(r, failure == SL_UPSTREAM_OK);
        return;
    }
    char msg[400];
    snprintf(msg, sizeof(msg),
             "the console could not reach the gateway's public listener at %s: %s", r->url,
             message ? message : sl_upstream_failure_name(failure));
    sl_http_respond_error(r->req, 502, "BadGateway", msg);
    r->req = NULL;
    end(r, true);
}

static const struct sl_upstream_callbacks callbacks = {on_response, on_body, on_done};

static void on_client_drain(struct sl_http_request *req, void *data)
{
    struct relay *r = data;
    if (r->paused && r->xfer) {
        r->paused = false;
        sl_upstream_resume(r->xfer);
    }
}

static void on_client_abort(struct sl_http_request *req, void *data)
{
    end(data, true);
}

/* http://HOST:PORT of the first public listener; a wildcard address is reached on the
 * loopback of its family. */
static int format_url(const struct sl_config *cfg, struct sl_str path, char *out, size_t size)
{
    const struct sl_config_addr *a = &cfg->listen[0];
    const char *host = a->host;
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(out, size, "http://%s%s%s:%u%.*s", v6 ? "[" : "", host, v6 ? "]" : "",
                     (unsigned)a->port, (int)path.len, path.base);
    return n > 0 && (size_t)n < size ? SL_OK : SL_ETOOBIG;
}

void sl_console_relay(struct sl_http_request *req, const struct sl_config *cfg, struct sl_str path)
{
    struct sl_http_header hs[SL_ARRAY_LEN(pass_request) + 2];
    size_t n = 0;
    if (!sl_http_find_header(&req->head, SL_STR("api-key"))) {
        sl_http_respond_error(req, 401, "Unauthorized",
                              "the playground needs a client key (api-key header): requests "
                              "go through the public listener as that client's");
        return;
    }
    struct relay *r = calloc(1, sizeof(*r));
    if (r == NULL || cfg->n_listen == 0 || format_url(cfg, path, r->url, sizeof(r->url)) != SL_OK ||
        sl_upstream_new(sl_http_request_loop(req), &r->up) != SL_OK) {
        free(r);
        sl_http_respond_error(req, 500, "InternalError", "the console could not start a request");
        return;
    }
    r->req = req;
    for (size_t i = 0; i < req->head.n_headers; i++)
        if (n < SL_ARRAY_LEN(pass_request) &&
            listed(req->head.headers[i].name, pass_request, SL_ARRAY_LEN(pass_request)))
            hs[n++] = req->head.headers[i];
    hs[n++] = (struct sl_http_header){SL_STR("x-request-id"), sl_str_from_cstr(req->id)};
    /* The front door, when configured, expects its header: this request comes from the
     * gateway's own admin listener, which the operator reached with the admin token. */
    if (cfg->front_door.header && cfg->front_door.n_values)
        hs[n++] = (struct sl_http_header){sl_str_from_cstr(cfg->front_door.header),
                                          sl_str_from_cstr(cfg->front_door.values[0])};
    struct sl_upstream_request ur = {
        .method = sl_str_eq(req->head.method, SL_STR("POST")) ? "POST" : "GET",
        .url = r->url,
        .headers = hs,
        .n_headers = n,
        .body = req->body,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .expect_stream = true,
    };
    sl_http_set_callbacks(req, on_client_drain, on_client_abort, r);
    if (sl_upstream_start(r->up, &ur, &callbacks, r, &r->xfer) != SL_OK) {
        sl_http_set_callbacks(req, NULL, NULL, NULL);
        sl_http_respond_error(req, 500, "InternalError", "the console could not start a request");
        r->req = NULL;
        end(r, true);
    }
}
