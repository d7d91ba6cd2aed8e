/*
 * The "refuse" fault: for a while every worker closes the endpoint's
 * listening sockets, so new connections are refused (ECONNREFUSED), as when
 * an endpoint is down. The request that triggered it is reset, but only once
 * no worker listens any more: a client that reconnects at once (a gateway
 * retrying) must be refused, not accepted by a worker that has not heard.
 *
 * Workers are told through the runner's broadcast; each keeps a flag saying
 * whether its listener is open. The period ends on a timer on the triggering
 * worker's loop, which then tells every worker to listen again.
 */
#include "sim/internal.h"

#include <stdlib.h>

#define REFUSE_POLL_MS 100    /* how often the period's timer checks for a shutdown */
#define RESET_WAIT_MAX_MS 200 /* longest wait for the workers before the reset anyway */

static struct sl_http_server *endpoint_server(struct sl_http_worker *w, struct sl_sim_endpoint *ep)
{
    return sl_http_worker_server(w, ep->sim->first_site + ep->index);
}

static void set_listening(struct sl_http_worker *w, struct sl_sim_endpoint *ep, bool on)
{
    unsigned i = sl_http_worker_index(w);
    if (i < ep->n_workers)
        atomic_store(&ep->listening[i], on);
}

static void pause_listener(struct sl_http_worker *w, void *arg)
{
    struct sl_sim_endpoint *ep = arg;
    struct sl_http_server *s = endpoint_server(w, ep);
    if (s)
        sl_http_server_pause(s);
    set_listening(w, ep, false);
}

static void resume_listener(struct sl_http_worker *w, void *arg)
{
    struct sl_sim_endpoint *ep = arg;
    /* A later refuse may have extended the period. */
    if (sl_clock_mono_us() / 1000 < atomic_load(&ep->refuse_until_ms))
        return;
    struct sl_http_server *s = endpoint_server(w, ep);
    if (s)
        sl_http_server_resume(s);
    set_listening(w, ep, true);
}

/* Ends a refuse period, on the loop of the worker that began it. Owned by itself. */
struct refuse_timer {
    uv_timer_t timer;
    struct sl_sim_endpoint *ep; /* borrowed; outlives the runner */
};

static void on_refuse_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_refuse_timer(uv_timer_t *t)
{
    struct refuse_timer *rt = t->data;
    struct sl_sim_endpoint *ep = rt->ep;
    uint64_t now = sl_clock_mono_us() / 1000, until = atomic_load(&ep->refuse_until_ms);
    if (now >= until) {
        sl_http_runner_broadcast(ep->sim->runner, resume_listener, ep, NULL);
        uv_close((uv_handle_t *)t, on_refuse_timer_closed);
        return;
    }
    /* A shutdown must not wait for the period to end, and this timer keeps
     * the loop running: it looks every REFUSE_POLL_MS whether the runner is
     * stopping, and goes away once it is. */
    if (sl_http_runner_stopping(ep->sim->runner)) {
        uv_close((uv_handle_t *)t, on_refuse_timer_closed);
        return;
    }
    uv_timer_start(t, on_refuse_timer, SL_MIN(until - now, REFUSE_POLL_MS), 0);
}

static int start_period(struct sl_sim_endpoint *ep, uv_loop_t *loop, uint64_t ms)
{
    uint64_t until = sl_clock_mono_us() / 1000 + ms;
    uint64_t cur = atomic_load(&ep->refuse_until_ms);
    while (cur < until && !atomic_compare_exchange_weak(&ep->refuse_until_ms, &cur, until))
        ;
    struct refuse_timer *rt = malloc(sizeof(*rt));
    if (rt == NULL)
        return SL_ENOMEM;
    rt->ep = ep;
    uv_timer_init(loop, &rt->timer);
    rt->timer.data = rt;
    /* Referenced, so it is always closed before its loop ends (see above). */
    uv_timer_start(&rt->timer, on_refuse_timer, SL_MIN(ms, REFUSE_POLL_MS), 0);
    return SL_OK;
}

/* The triggering request until its reset. Lives in the request's arena. */
struct refuse_wait {
    uv_timer_t timer;
    struct sl_sim_call *c; /* borrowed: same arena */
    uint64_t give_up_ms;   /* reset then even if a worker has not answered */
    bool gone;             /* the client went away first */
    bool closing;
};

static bool nobody_listens(const struct sl_sim_endpoint *ep)
{
    for (size_t i = 0; i < ep->n_workers; i++)
        if (atomic_load(&ep->listening[i]))
            return false;
    return true;
}

static void on_wait_closed(uv_handle_t *h)
{
    struct refuse_wait *rw = h->data;
    struct sl_sim_call *c = rw->c;
    if (rw->gone) {
        sl_sim_record(c, 0);
        sl_http_finish(c->req);
    } else {
        sl_sim_reply_reset(c);
    }
}

static void wait_end(struct refuse_wait *rw)
{
    if (rw->closing)
        return;
    rw->closing = true;
    uv_timer_stop(&rw->timer);
    uv_close((uv_handle_t *)&rw->timer, on_wait_closed);
}

static void on_wait_abort(struct sl_http_request *req, void *data)
{
    struct refuse_wait *rw = data;
    rw->gone = true;
    wait_end(rw);
}

static void on_wait_timer(uv_timer_t *t)
{
    struct refuse_wait *rw = t->data;
    if (nobody_listens(rw->c->ep) || sl_clock_mono_us() / 1000 >= rw->give_up_ms)
        wait_end(rw);
    else
        uv_timer_start(t, on_wait_timer, 1, 0);
}

void sl_sim_refuse(struct sl_sim_call *c)
{
    struct sl_sim_endpoint *ep = c->ep;
    uv_loop_t *loop = sl_http_request_loop(c->req);
    if (ep->sim->runner == NULL) {
        sl_log_warn("sim %s: the refuse fault needs the runner; resetting the connection only",
                    ep->cfg->name);
        sl_sim_reply_reset(c);
        return;
    }
    struct refuse_wait *rw = sl_arena_alloc(c->req->arena, sizeof(*rw));
    if (rw == NULL || start_period(ep, loop, c->fault.duration_ms) != SL_OK) {
        sl_sim_reply_reset(c);
        return;
    }
    /* This worker stops at once; the others when their loops run the broadcast. */
    sl_http_server_pause(c->req->server);
    sl_http_runner_broadcast(ep->sim->runner, pause_listener, ep, NULL);
    rw->c = c;
    rw->give_up_ms = sl_clock_mono_us() / 1000 + RESET_WAIT_MAX_MS;
    rw->gone = false;
    rw->closing = false;
    uv_timer_init(loop, &rw->timer);
    rw->timer.data = rw;
    sl_http_set_callbacks(c->req, NULL, on_wait_abort, rw);
    uv_timer_start(&rw->timer, on_wait_timer, 1, 0);
}
