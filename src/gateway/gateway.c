#include "gateway/internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* One worker thread: owns its loop, its wake-up handle and its HTTP server. */
struct sl_worker {
    unsigned index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;             /* main thread → worker: begin graceful shutdown */
    struct sl_http_server *http; /* owned until its shutdown completes */
    struct sl_gateway *gw;       /* borrowed */
    bool thread_started;
};

/* The serve process. Owns the config reference and the workers. */
struct sl_gateway {
    struct sl_config *cfg;
    struct sl_worker *workers; /* n_workers */
    unsigned n_workers;
    uv_loop_t *main_loop; /* borrowed: the default loop */
    uv_signal_t sigterm, sigint;
    struct sl_http_server *admin;
    bool stopping;
};

static void on_worker_http_closed(void *data)
{
    struct sl_worker *w = data;
    w->http = NULL;
    uv_close((uv_handle_t *)&w->stop, NULL);
}

static void on_worker_stop(uv_async_t *h)
{
    struct sl_worker *w = h->data;
    if (w->http)
        sl_http_server_shutdown(w->http, w->gw->cfg->limits.shutdown_timeout_ms,
                                on_worker_http_closed, w);
    else
        uv_close((uv_handle_t *)&w->stop, NULL);
}

static void worker_main(void *arg)
{
    struct sl_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void on_admin_closed(void *data)
{
    struct sl_gateway *gw = data;
    gw->admin = NULL;
}

static void begin_shutdown(struct sl_gateway *gw, const char *why)
{
    if (gw->stopping) {
        sl_log_warn("%s again during shutdown: exiting now", why);
        exit(1);
    }
    gw->stopping = true;
    sl_log_info("%s: shutting down (in-flight requests get up to %llu ms)", why,
                (unsigned long long)gw->cfg->limits.shutdown_timeout_ms);
    for (unsigned i = 0; i < gw->n_workers; i++)
        uv_async_send(&gw->workers[i].stop);
    if (gw->admin)
        sl_http_server_shutdown(gw->admin, gw->cfg->limits.shutdown_timeout_ms, on_admin_closed,
                                gw);
    /* The signal handles stay referenced only until the rest has closed, so
     * a second signal still reaches us while draining. */
    uv_unref((uv_handle_t *)&gw->sigterm);
    uv_unref((uv_handle_t *)&gw->sigint);
}

static void on_signal(uv_signal_t *h, int signum)
{
    begin_shutdown(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int start_workers(struct sl_gateway *gw)
{
    const struct sl_config *cfg = gw->cfg;
    for (unsigned i = 0; i < gw->n_workers; i++) {
        struct sl_worker *w = &gw->workers[i];
        w->index = i;
        w->gw = gw;
        if (uv_loop_init(&w->loop) != 0)
            return SL_EIO;
        uv_async_init(&w->loop, &w->stop, on_worker_stop);
        w->stop.data = w;
        struct sl_http_server_options opts = {
            .listen = cfg->listen,
            .n_listen = cfg->n_listen,
            .limits = &cfg->limits,
            .access_log = cfg->log.access,
            .name = "public",
            .share_port = true,
            .first_sharer = i == 0,
            .on_request = sl_gateway_on_public_request,
            .data = w,
        };
        /* Listeners are opened here, before any thread runs, so that a port
         * in use is reported once and the process exits cleanly. */
        int err = sl_http_server_new(&w->loop, &opts, &w->http);
        if (err)
            return err;
    }
    for (unsigned i = 0; i < gw->n_workers; i++) {
        struct sl_worker *w = &gw->workers[i];
        if (uv_thread_create(&w->thread, worker_main, w) != 0)
            return SL_EIO;
        w->thread_started = true;
    }
    return SL_OK;
}

static void stop_workers(struct sl_gateway *gw)
{
    for (unsigned i = 0; i < gw->n_workers; i++) {
        struct sl_worker *w = &gw->workers[i];
        if (w->gw == NULL)
            continue;
        if (w->thread_started) {
            /* After a signal the workers were told already, and one that has
             * finished has closed its async handle: sending again is unsafe. */
            if (!gw->stopping)
                uv_async_send(&w->stop);
            uv_thread_join(&w->thread);
        } else {
            on_worker_stop(&w->stop);
            uv_run(&w->loop, UV_RUN_DEFAULT);
        }
        uv_loop_close(&w->loop);
    }
}

int sl_gateway_run(struct sl_config *cfg)
{
    struct sl_gateway gw;
    int rc = 1;
    memset(&gw, 0, sizeof(gw));
    gw.cfg = sl_config_ref(cfg);
    gw.n_workers = cfg->workers;
    gw.main_loop = uv_default_loop();
    gw.workers = calloc(gw.n_workers, sizeof(*gw.workers));
    if (gw.workers == NULL)
        goto fail;

    /* A client that disconnects must not kill the process mid-write. */
    signal(SIGPIPE, SIG_IGN);
    sl_log_setup(cfg->log.level, cfg->log.format);

    if (start_workers(&gw) != SL_OK)
        goto fail;
    struct sl_http_server_options admin_opts = {
        .listen = &cfg->admin_listen,
        .n_listen = 1,
        .limits = &cfg->limits,
        .access_log = cfg->log.access,
        .name = "admin",
        .on_request = sl_gateway_on_admin_request,
        .data = &gw,
    };
    if (sl_http_server_new(gw.main_loop, &admin_opts, &gw.admin) != SL_OK)
        goto fail;

    uv_signal_init(gw.main_loop, &gw.sigterm);
    uv_signal_init(gw.main_loop, &gw.sigint);
    gw.sigterm.data = gw.sigint.data = &gw;
    uv_signal_start(&gw.sigterm, on_signal, SIGTERM);
    uv_signal_start(&gw.sigint, on_signal, SIGINT);

    for (size_t i = 0; i < cfg->n_listen; i++)
        sl_log_info("listening on %s%s%s:%u (%u workers)",
                    strchr(cfg->listen[i].host, ':') ? "[" : "", cfg->listen[i].host,
                    strchr(cfg->listen[i].host, ':') ? "]" : "", cfg->listen[i].port, gw.n_workers);
    sl_log_info("admin listener on %s%s%s:%u", strchr(cfg->admin_listen.host, ':') ? "[" : "",
                cfg->admin_listen.host, strchr(cfg->admin_listen.host, ':') ? "]" : "",
                cfg->admin_listen.port);

    uv_run(gw.main_loop, UV_RUN_DEFAULT);
    stop_workers(&gw);
    uv_close((uv_handle_t *)&gw.sigterm, NULL);
    uv_close((uv_handle_t *)&gw.sigint, NULL);
    uv_run(gw.main_loop, UV_RUN_DEFAULT);
    sl_log_info("shutdown complete");
    rc = 0;
    goto done;
fail:
    sl_log_error("could not start: see the messages above; check the listen addresses in the "
                 "configuration and that no other process uses those ports");
    if (gw.workers)
        stop_workers(&gw);
    if (gw.admin) {
        sl_http_server_shutdown(gw.admin, 0, on_admin_closed, &gw);
        uv_run(gw.main_loop, UV_RUN_DEFAULT);
    }
done:
    free(gw.workers);
    sl_config_unref(gw.cfg);
    return rc;
}
