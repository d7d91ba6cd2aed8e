/*
 * The proxy's state for one configuration (the backends' circuits, shared
 * by every worker) and per worker (an upstream client, round-robin
 * counters), and what it reports about itself: /readyz and /sluice/status.
 */
#include "proxy/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sl_proxy_new(const struct sl_config *cfg, struct sl_proxy **out)
{
    struct sl_proxy *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (p == NULL)
        return SL_ENOMEM;
    p->cfg = cfg;
    int err = sl_balance_new(cfg, &p->balance);
    if (err) {
        free(p);
        return err;
    }
    *out = p;
    return SL_OK;
}

void sl_proxy_free(struct sl_proxy *p)
{
    if (p == NULL)
        return;
    sl_balance_free(p->balance);
    free(p);
}

int sl_proxy_worker_init(uv_loop_t *loop, unsigned index, void *data, void **worker_data)
{
    struct sl_proxy_worker *w = calloc(1, sizeof(*w));
    *worker_data = NULL;
    if (w == NULL)
        return SL_ENOMEM;
    w->proxy = data;
    int err = sl_balance_worker_new(w->proxy->balance, &w->picks);
    if (err == SL_OK)
        err = sl_upstream_new(loop, &w->upstream);
    if (err) {
        sl_balance_worker_free(w->picks);
        free(w);
        return err;
    }
    *worker_data = w;
    return SL_OK;
}

/* Once the upstream is closed: the rest of the worker's state goes. */
struct dispose_ctx {
    struct sl_proxy_worker *w;
    void (*done)(void *arg);
    void *arg;
};

static void on_upstream_closed(void *data)
{
    struct dispose_ctx *d = data;
    sl_balance_worker_free(d->w->picks);
    free(d->w);
    d->done(d->arg);
    free(d);
}

void sl_proxy_worker_dispose(void *worker_data, void (*done)(void *arg), void *arg)
{
    struct sl_proxy_worker *w = worker_data;
    struct dispose_ctx *d = w ? malloc(sizeof(*d)) : NULL;
    if (d == NULL) {
        if (w) {
            /* Cannot wait for the upstream without memory: close it, free the rest now. */
            sl_upstream_close(w->upstream, done, arg);
            sl_balance_worker_free(w->picks);
            free(w);
            return;
        }
        done(arg);
        return;
    }
    *d = (struct dispose_ctx){w, done, arg};
    sl_upstream_close(w->upstream, on_upstream_closed, d);
}

static uint64_t unix_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool only_get(struct sl_http_request *req, const char *path)
{
    if (sl_str_eq(req->head.method, SL_STR("GET")) || req->is_head)
        return true;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s supports GET and HEAD", path);
    struct sl_http_header allow = {SL_STR("Allow"), SL_STR("GET, HEAD")};
    sl_http_respond_error_with(req, 405, "MethodNotAllowed", msg, &allow, 1);
    return false;
}

void sl_proxy_on_readyz(struct sl_http_request *req, struct sl_proxy *p)
{
    if (!only_get(req, "/readyz"))
        return;
    struct sl_buf down, body;
    sl_buf_init(&down);
    sl_buf_init(&body);
    bool ready = sl_balance_ready(p->balance, uv_now(sl_http_request_loop(req)), &down);
    if (ready) {
        sl_buf_appendf(&body, "{\"status\":\"ready\"}");
    } else {
        /* down is "a,b": a JSON list of the names (route names need no escaping, but
         * escape anyway). */
        sl_buf_appendf(&body, "{\"status\":\"unready\",\"routes\":[");
        struct sl_str rest = {down.base, down.len};
        bool first = true;
        while (rest.len) {
            const char *comma = memchr(rest.base, ',', rest.len);
            size_t n = comma ? (size_t)(comma - rest.base) : rest.len;
            sl_buf_appendf(&body, "%s\"", first ? "" : ",");
            sl_buf_append_json_escaped(&body, (struct sl_str){rest.base, n});
            sl_buf_appendf(&body, "\"");
            first = false;
            rest.base += comma ? n + 1 : n;
            rest.len -= comma ? n + 1 : n;
        }
        sl_buf_appendf(&body, "]}");
    }
    sl_http_respond(req, ready ? 200 : 503, SL_STR("application/json"),
                    (struct sl_str){body.base, body.len});
    sl_buf_dispose(&down);
    sl_buf_dispose(&body);
}

void sl_proxy_on_status(struct sl_http_request *req, struct sl_proxy *p)
{
    if (!only_get(req, "/sluice/status"))
        return;
    struct sl_buf body;
    sl_buf_init(&body);
    int err =
        sl_balance_status_json(p->balance, uv_now(sl_http_request_loop(req)), unix_ms(), &body);
    if (err)
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
    else
        sl_http_respond(req, 200, SL_STR("application/json"), (struct sl_str){body.base, body.len});
    sl_buf_dispose(&body);
}
