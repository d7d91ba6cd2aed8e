/*
 * The process model: `workers` threads, each running its own uv_loop with
 * its own server per site (listening sockets shared through SO_REUSEPORT, so
 * the kernel spreads connections and no lock is shared on the request path),
 * plus the admin site on the main thread, which also handles SIGTERM/SIGINT.
 * Work reaches a worker only through its task queue and async handle.
 */
#include "http/internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* A function to run on a worker's loop; owned by the queue until run. */
struct sl_http_task {
    void (*fn)(struct sl_http_worker *w, void *arg);
    void *arg;
    struct sl_http_task *next;
};

/* One worker thread. Owns its loop, wake-up handle, servers and queue. */
struct sl_http_worker {
    unsigned index;
    struct sl_http_runner *runner; /* borrowed */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    struct sl_http_server **servers; /* n_sites; NULL once closed */
    void *data;                      /* from worker_init; released by worker_dispose */
    bool data_ready;
    size_t open_servers;
    uv_mutex_t lock;            /* guards the fields below; taken off the request path only */
    struct sl_http_task *tasks; /* FIFO: head */
    struct sl_http_task **tail;
    bool stop_requested;
    bool wakeup_closed; /* no task can be queued any more */
    bool loop_ready, thread_started, joined, stopping;
};

struct sl_http_runner {
    struct sl_http_site *sites; /* owned copy of the options' array */
    size_t n_sites;
    struct sl_http_site admin_site;
    bool has_admin;
    struct sl_config_limits limits;
    bool access_log;
    struct sl_http_worker *workers; /* owned; n_workers */
    unsigned n_workers;
    uv_loop_t *main_loop; /* the default loop */
    uv_signal_t sigterm, sigint, sighup;
    bool signals_ready;
    void (*on_reload)(void *data); /* SIGHUP; NULL: ignored (logged) */
    void *reload_data;
    struct sl_http_server *admin;
    int (*worker_init)(uv_loop_t *loop, unsigned index, void *data, void **worker_data);
    void (*worker_dispose)(void *worker_data, void (*done)(void *arg), void *arg);
    void *worker_init_data;
    atomic_bool stopping; /* read by other threads through sl_http_runner_stopping */
};

static void on_worker_server_closed(void *data);

static void worker_begin_stop(struct sl_http_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    for (size_t i = 0; i < w->runner->n_sites; i++)
        if (w->servers[i])
            sl_http_server_shutdown(w->servers[i], w->runner->limits.shutdown_timeout_ms,
                                    on_worker_server_closed, w);
    if (w->open_servers == 0)
        on_worker_server_closed(w); /* nothing was open: close the wake-up handle now */
}

/* The worker's servers and state are gone: let its loop end. */
static void on_worker_released(void *data)
{
    struct sl_http_worker *w = data;
    uv_mutex_lock(&w->lock);
    bool close_it = !w->wakeup_closed;
    w->wakeup_closed = true;
    struct sl_http_task *t = w->tasks;
    w->tasks = NULL;
    w->tail = &w->tasks;
    uv_mutex_unlock(&w->lock);
    while (t) { /* tasks that came too late: drop them */
        struct sl_http_task *next = t->next;
        free(t);
        t = next;
    }
    if (close_it)
        uv_close((uv_handle_t *)&w->wakeup, NULL);
}

static void on_worker_server_closed(void *data)
{
    struct sl_http_worker *w = data;
    if (w->open_servers > 0 && --w->open_servers > 0)
        return;
    /* Requests are all finished: now the per-worker state can go. */
    if (w->data_ready && w->runner->worker_dispose) {
        w->data_ready = false;
        w->runner->worker_dispose(w->data, on_worker_released, w);
        return;
    }
    on_worker_released(w);
}

static void on_wakeup(uv_async_t *h)
{
    struct sl_http_worker *w = h->data;
    uv_mutex_lock(&w->lock);
    struct sl_http_task *t = w->tasks;
    w->tasks = NULL;
    w->tail = &w->tasks;
    bool stop = w->stop_requested;
    uv_mutex_unlock(&w->lock);
    while (t) {
        struct sl_http_task *next = t->next;
        if (!w->stopping)
            t->fn(w, t->arg);
        free(t);
        t = next;
    }
    if (stop)
        worker_begin_stop(w);
}

static void worker_main(void *arg)
{
    struct sl_http_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int worker_init(struct sl_http_runner *r, struct sl_http_worker *w, unsigned index)
{
    w->index = index;
    w->runner = r;
    w->tail = &w->tasks;
    w->servers = calloc(r->n_sites ? r->n_sites : 1, sizeof(*w->servers));
    if (w->servers == NULL || uv_mutex_init(&w->lock) != 0)
        return SL_ENOMEM;
    if (uv_loop_init(&w->loop) != 0)
        return SL_EIO;
    w->loop_ready = true;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    if (r->worker_init) {
        int err = r->worker_init(&w->loop, index, r->worker_init_data, &w->data);
        if (err)
            return err;
        w->data_ready = true;
    }
    for (size_t i = 0; i < r->n_sites; i++) {
        const struct sl_http_site *site = &r->sites[i];
        struct sl_http_server_options opts = {
            .listen = site->listen,
            .n_listen = site->n_listen,
            .limits = &r->limits,
            .access_log = r->access_log,
            .name = site->name,
            .share_port = true,
            .first_sharer = index == 0,
            .on_request = site->on_request,
            .data = site->data,
            .worker_data = w->data,
        };
        int err = sl_http_server_new(&w->loop, &opts, &w->servers[i]);
        if (err)
            return err;
        w->open_servers++;
    }
    return SL_OK;
}

/* Stop a worker that may or may not be running, and wait for it. */
static void worker_join(struct sl_http_worker *w)
{
    if (!w->loop_ready || w->joined)
        return;
    w->joined = true;
    if (w->thread_started) {
        uv_mutex_lock(&w->lock);
        w->stop_requested = true;
        if (!w->wakeup_closed)
            uv_async_send(&w->wakeup);
        uv_mutex_unlock(&w->lock);
        uv_thread_join(&w->thread);
    } else {
        worker_begin_stop(w);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
}

static void worker_dispose(struct sl_http_worker *w)
{
    if (w->loop_ready) {
        uv_loop_close(&w->loop);
        uv_mutex_destroy(&w->lock);
    }
    free(w->servers);
}

int sl_http_runner_broadcast(struct sl_http_runner *r,
                             void (*fn)(struct sl_http_worker *w, void *arg), void *arg,
                             unsigned *queued)
{
    int err = SL_OK;
    if (queued)
        *queued = 0;
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct sl_http_worker *w = &r->workers[i];
        struct sl_http_task *t = malloc(sizeof(*t));
        if (t == NULL) {
            err = SL_ENOMEM;
            continue;
        }
        t->fn = fn;
        t->arg = arg;
        t->next = NULL;
        uv_mutex_lock(&w->lock);
        if (w->wakeup_closed) {
            free(t);
            err = SL_ESTATE;
        } else {
            *w->tail = t;
            w->tail = &t->next;
            uv_async_send(&w->wakeup);
            if (queued)
                (*queued)++;
        }
        uv_mutex_unlock(&w->lock);
    }
    return err;
}

bool sl_http_runner_stopping(const struct sl_http_runner *r)
{
    return atomic_load(&r->stopping);
}

struct sl_http_server *sl_http_worker_server(struct sl_http_worker *w, size_t site)
{
    return site < w->runner->n_sites ? w->servers[site] : NULL;
}

unsigned sl_http_worker_index(const struct sl_http_worker *w)
{
    return w->index;
}

static void on_admin_closed(void *data)
{
    struct sl_http_runner *r = data;
    r->admin = NULL;
}

static void begin_shutdown(struct sl_http_runner *r, const char *why)
{
    if (atomic_exchange(&r->stopping, true)) {
        sl_log_warn("%s again during shutdown: exiting now", why);
        exit(1);
    }
    sl_log_info("%s: shutting down (in-flight requests get up to %llu ms)", why,
                (unsigned long long)r->limits.shutdown_timeout_ms);
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct sl_http_worker *w = &r->workers[i];
        uv_mutex_lock(&w->lock);
        w->stop_requested = true;
        if (!w->wakeup_closed)
            uv_async_send(&w->wakeup);
        uv_mutex_unlock(&w->lock);
    }
    if (r->admin)
        sl_http_server_shutdown(r->admin, r->limits.shutdown_timeout_ms, on_admin_closed, r);
    /* Unreferenced, the signal handles no longer keep the main loop running,
     * but a second signal still reaches us while draining. */
    uv_unref((uv_handle_t *)&r->sigterm);
    uv_unref((uv_handle_t *)&r->sigint);
    uv_unref((uv_handle_t *)&r->sighup);
}

static void on_signal(uv_signal_t *h, int signum)
{
    begin_shutdown(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_sighup(uv_signal_t *h, int signum)
{
    struct sl_http_runner *r = h->data;
    if (atomic_load(&r->stopping))
        return;
    if (r->on_reload)
        r->on_reload(r->reload_data);
    else
        sl_log_warn("SIGHUP: this process does not reload its configuration; restart it instead");
}

static void close_admin_now(struct sl_http_runner *r)
{
    if (r->admin) {
        sl_http_server_shutdown(r->admin, 0, on_admin_closed, r);
        uv_run(r->main_loop, UV_RUN_DEFAULT);
    }
}

void sl_http_runner_free(struct sl_http_runner *r)
{
    if (r == NULL)
        return;
    for (unsigned i = 0; i < r->n_workers; i++)
        worker_join(&r->workers[i]);
    close_admin_now(r);
    if (r->signals_ready) {
        uv_close((uv_handle_t *)&r->sigterm, NULL);
        uv_close((uv_handle_t *)&r->sigint, NULL);
        uv_close((uv_handle_t *)&r->sighup, NULL);
        uv_run(r->main_loop, UV_RUN_DEFAULT);
    }
    for (unsigned i = 0; i < r->n_workers; i++)
        worker_dispose(&r->workers[i]);
    free(r->workers);
    free(r->sites);
    free(r);
}

int sl_http_runner_new(const struct sl_http_runner_options *o, struct sl_http_runner **out)
{
    int err = SL_ENOMEM;
    struct sl_http_runner *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (r == NULL)
        return SL_ENOMEM;
    r->main_loop = uv_default_loop();
    r->limits = *o->limits;
    r->access_log = o->access_log;
    r->worker_init = o->worker_init;
    r->worker_dispose = o->worker_dispose;
    r->worker_init_data = o->data;
    r->on_reload = o->on_reload;
    r->reload_data = o->reload_data;
    r->n_sites = o->n_sites;
    r->sites = calloc(o->n_sites ? o->n_sites : 1, sizeof(*r->sites));
    r->workers = calloc(o->workers ? o->workers : 1, sizeof(*r->workers));
    if (r->sites == NULL || r->workers == NULL)
        goto fail;
    if (o->n_sites)
        memcpy(r->sites, o->sites, o->n_sites * sizeof(*r->sites));
    if (o->admin) {
        r->admin_site = *o->admin;
        r->has_admin = true;
    }
    /* A client that disconnects must not kill the process mid-write. */
    signal(SIGPIPE, SIG_IGN);
    /* Listeners are opened here, before any thread runs, so that a port in
     * use is reported once and nothing has started serving. */
    for (unsigned i = 0; i < (o->workers ? o->workers : 1); i++) {
        r->n_workers = i + 1;
        if ((err = worker_init(r, &r->workers[i], i)) != SL_OK)
            goto fail;
    }
    if (r->has_admin) {
        struct sl_http_server_options admin_opts = {
            .listen = r->admin_site.listen,
            .n_listen = r->admin_site.n_listen,
            .limits = &r->limits,
            .access_log = r->access_log,
            .name = r->admin_site.name,
            .on_request = r->admin_site.on_request,
            .data = r->admin_site.data,
        };
        if ((err = sl_http_server_new(r->main_loop, &admin_opts, &r->admin)) != SL_OK)
            goto fail;
    }
    uv_signal_init(r->main_loop, &r->sigterm);
    uv_signal_init(r->main_loop, &r->sigint);
    uv_signal_init(r->main_loop, &r->sighup);
    r->sigterm.data = r->sigint.data = r->sighup.data = r;
    r->signals_ready = true;
    *out = r;
    return SL_OK;
fail:
    sl_http_runner_free(r);
    return err;
}

int sl_http_runner_run(struct sl_http_runner *r)
{
    /* Handlers first: a signal must never find the process with default
     * (terminating) dispositions once workers can run. */
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sighup, on_sighup, SIGHUP);
    for (unsigned i = 0; i < r->n_workers; i++) {
        struct sl_http_worker *w = &r->workers[i];
        if (uv_thread_create(&w->thread, worker_main, w) != 0) {
            sl_log_error("could not start worker thread %u", i);
            return SL_EIO;
        }
        w->thread_started = true;
    }
    uv_run(r->main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < r->n_workers; i++)
        worker_join(&r->workers[i]);
    sl_log_info("shutdown complete");
    return SL_OK;
}
