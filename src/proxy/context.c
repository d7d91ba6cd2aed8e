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

static void conf_free(struct sl_proxy_conf *c)
{
    for (unsigned i = 0; c->picks && i < c->n_workers; i++)
        sl_balance_worker_free(c->picks[i]);
    free(c->picks);
    sl_balance_free(c->balance);
    sl_auth_free(c->auth);
    sl_limiter_free(c->limiter);
    sl_config_unref(c->cfg);
    free(c);
}

/* The state of cfg, with one reference for the caller; why says what failed. */
static int conf_new(struct sl_proxy *p, struct sl_config *cfg, struct sl_proxy_conf **out,
                    struct sl_buf *why)
{
    struct sl_proxy_conf *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (c == NULL)
        return SL_ENOMEM;
    atomic_init(&c->refs, 1);
    c->cfg = sl_config_ref(cfg);
    c->n_workers = p->n_workers;
    c->ledger = p->ledger;
    c->picks = calloc(c->n_workers ? c->n_workers : 1, sizeof(*c->picks));
    int err = c->picks ? sl_balance_new(cfg, &c->balance) : SL_ENOMEM;
    for (unsigned i = 0; err == SL_OK && i < c->n_workers; i++)
        err = sl_balance_worker_new(c->balance, &c->picks[i]);
    if (err == SL_OK)
        err = sl_limiter_new(cfg, &c->limiter);
    if (err == SL_OK)
        err = sl_auth_new(cfg, &c->auth, why);
    if (err == SL_ENOMEM && why->len == 0)
        sl_buf_appendf(why, "out of memory");
    if (err) {
        conf_free(c);
        return err;
    }
    *out = c;
    return SL_OK;
}

struct sl_proxy_conf *sl_proxy_conf_acquire(struct sl_proxy *p)
{
    /* Safe without a lock: the proxy's own reference to the current state is dropped only
     * after every worker went through its loop since it stopped being current. */
    struct sl_proxy_conf *c = atomic_load_explicit(&p->current, memory_order_acquire);
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void sl_proxy_conf_release(struct sl_proxy_conf *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        conf_free(c);
}

int sl_proxy_new(struct sl_config *cfg, unsigned workers, struct sl_proxy **out, struct sl_buf *why)
{
    struct sl_proxy *p = calloc(1, sizeof(*p));
    struct sl_proxy_conf *c = NULL;
    *out = NULL;
    if (p == NULL)
        return SL_ENOMEM;
    p->n_workers = workers;
    int err = sl_metrics_new(workers, 0, &p->metrics);
    if (err == SL_ENOMEM)
        sl_buf_appendf(why, "out of memory");
    if (err == SL_OK && cfg->usage.db)
        err = sl_ledger_open(cfg, &p->ledger, why);
    if (err == SL_OK)
        err = conf_new(p, cfg, &c, why);
    if (err) {
        if (p->ledger)
            sl_ledger_close(p->ledger);
        sl_metrics_free(p->metrics);
        free(p);
        return err;
    }
    atomic_init(&p->current, c);
    *out = p;
    return SL_OK;
}

void sl_proxy_free(struct sl_proxy *p)
{
    if (p == NULL)
        return;
    sl_proxy_conf_release(atomic_load(&p->current));
    /* After the workers: no request can add a record any more. */
    if (p->ledger)
        sl_ledger_close(p->ledger);
    sl_metrics_free(p->metrics);
    free(p);
}

struct sl_metrics *sl_proxy_metrics(struct sl_proxy *p)
{
    return p->metrics;
}

int sl_proxy_swap(struct sl_proxy *p, struct sl_config *cfg, struct sl_proxy_conf **old,
                  struct sl_buf *why)
{
    struct sl_proxy_conf *c = NULL;
    *old = NULL;
    int err = conf_new(p, cfg, &c, why);
    if (err)
        return err;
    struct sl_proxy_conf *prev = atomic_load(&p->current);
    sl_balance_adopt(c->balance, prev->balance);
    sl_limiter_adopt(c->limiter, prev->limiter);
    atomic_store_explicit(&p->current, c, memory_order_release);
    *old = prev;
    return SL_OK;
}

int sl_proxy_worker_init(uv_loop_t *loop, unsigned index, void *data, void **worker_data)
{
    struct sl_proxy_worker *w = calloc(1, sizeof(*w));
    *worker_data = NULL;
    if (w == NULL)
        return SL_ENOMEM;
    w->proxy = data;
    w->index = index;
    int err = sl_upstream_new(loop, &w->upstream);
    if (err) {
        free(w);
        return err;
    }
    sl_proxy_queue_init(w, loop);
    *worker_data = w;
    return SL_OK;
}

static void on_wake_closed(uv_handle_t *h)
{
    struct sl_proxy_worker *w = h->data;
    void (*done)(void *arg) = w->disposed;
    void *arg = w->disposed_arg;
    free(w);
    done(arg);
}

/* Once the upstream is closed (every call is over by then): the queue's timer goes. */
static void on_upstream_closed(void *data)
{
    struct sl_proxy_worker *w = data;
    uv_close((uv_handle_t *)&w->wake, on_wake_closed);
}

void sl_proxy_worker_dispose(void *worker_data, void (*done)(void *arg), void *arg)
{
    struct sl_proxy_worker *w = worker_data;
    if (w == NULL) {
        done(arg);
        return;
    }
    w->disposed = done;
    w->disposed_arg = arg;
    sl_upstream_close(w->upstream, on_upstream_closed, w);
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
    struct sl_proxy_conf *conf = sl_proxy_conf_acquire(p);
    struct sl_buf down, body;
    sl_buf_init(&down);
    sl_buf_init(&body);
    bool ready = sl_balance_ready(conf->balance, uv_now(sl_http_request_loop(req)), &down);
    sl_proxy_conf_release(conf);
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
    struct sl_proxy_conf *conf = sl_proxy_conf_acquire(p);
    int err = sl_balance_status_json(conf->balance, uv_now(sl_http_request_loop(req)),
                                     sl_clock_unix_ms(), &body);
    sl_proxy_conf_release(conf);
    if (err)
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
    else
        sl_http_respond(req, 200, SL_STR("application/json"), (struct sl_str){body.base, body.len});
    sl_buf_dispose(&body);
}
