#include "gateway/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void log_listen(const char *what, const char *name, const struct sl_config_addr *a,
                       unsigned workers)
{
    struct sl_buf b;
    sl_buf_init(&b);
    sl_config_addr_format(a, &b);
    if (workers)
        sl_log_info("%s%s%s listening on %s (%u workers)", what, name ? " " : "", name ? name : "",
                    b.base, workers);
    else
        sl_log_info("%s%s%s listening on %s", what, name ? " " : "", name ? name : "", b.base);
    sl_buf_dispose(&b);
}

/* Releases a configuration's state once every worker went through its loop since it was
 * replaced: no request handler can still be reading it then. */
struct reload_grace {
    atomic_uint pending; /* workers yet to go through their loop, plus the main thread */
    struct sl_proxy_conf *old;
};

static void grace_done(struct reload_grace *g)
{
    if (atomic_fetch_sub(&g->pending, 1) == 1) {
        sl_proxy_conf_release(g->old);
        free(g);
    }
}

static void on_worker_quiet(struct sl_http_worker *w, void *arg)
{
    grace_done(arg);
}

/* SIGHUP: read the configuration file again; keep the running one when it has errors. */
static void on_reload(void *data)
{
    struct sl_gateway_reload *rl = data;
    struct sl_config *next = NULL;
    struct sl_config_errors errs;
    sl_config_errors_init(&errs);
    sl_log_info("SIGHUP: reloading %s", rl->path);
    if (sl_config_load_file(rl->path, &next, &errs) != SL_OK) {
        for (size_t i = 0; i < errs.n; i++)
            sl_log_error("%s:%u:%u: %s: %s", errs.items[i].file, errs.items[i].line,
                         errs.items[i].col, errs.items[i].path, errs.items[i].message);
        sl_log_error("reload of %s failed: the running configuration stays in use; fix the "
                     "file and send SIGHUP again",
                     rl->path);
        sl_config_errors_dispose(&errs);
        return;
    }
    sl_config_errors_dispose(&errs);
    if (!sl_config_same_listeners(rl->running, next))
        sl_log_warn("reload: listen addresses, workers, limits and the simulator section only "
                    "change at a restart; the rest of %s now applies",
                    rl->path);
    struct reload_grace *g = calloc(1, sizeof(*g));
    struct sl_proxy_conf *old = NULL;
    struct sl_buf why;
    sl_buf_init(&why);
    if (g == NULL || sl_proxy_swap(rl->proxy, next, &old, &why) != SL_OK) {
        free(g);
        sl_config_unref(next);
        sl_log_error("reload of %s failed: %s; the running configuration stays in use", rl->path,
                     why.base ? why.base : "out of memory");
        sl_buf_dispose(&why);
        return;
    }
    sl_buf_dispose(&why);
    sl_proxy_log_config_warnings(next);
    sl_config_unref(next); /* the proxy holds it now */
    g->old = old;
    unsigned queued = 0, n = rl->workers;
    atomic_init(&g->pending, n + 1);
    sl_http_runner_broadcast(rl->runner, on_worker_quiet, g, &queued);
    /* Workers that will not run the task (stopping) count as done now, and so does the main
     * thread. */
    atomic_fetch_sub(&g->pending, n - queued);
    grace_done(g);
    sl_log_info("reloaded %s", rl->path);
}

int sl_gateway_run(struct sl_config *cfg, enum sl_gateway_mode mode)
{
    struct sl_http_runner *runner = NULL;
    struct sl_sim *sim = NULL;
    struct sl_proxy *proxy = NULL;
    struct sl_http_site *sites = NULL;
    size_t n_sites = 0;
    int rc = 1;
    cfg = sl_config_ref(cfg);
    sl_log_setup(cfg->log.level, cfg->log.format);

    const struct sl_config_sim *simcfg = &cfg->simulator;
    if (mode == SL_GATEWAY_SIM && simcfg->n_endpoints == 0) {
        sl_log_error("%s has no simulator endpoints: add a `simulator.endpoints` section, or run "
                     "`sluice sim --listen 127.0.0.1:8081` for a default one",
                     cfg->source);
        goto done;
    }
    sites = calloc(1 + simcfg->n_endpoints, sizeof(*sites));
    if (sites == NULL)
        goto done;
    if (mode == SL_GATEWAY_SERVE) {
        struct sl_buf why;
        sl_buf_init(&why);
        if (sl_proxy_new(cfg, cfg->workers, &proxy, &why) != SL_OK) {
            sl_log_error("could not start: %s", why.base ? why.base : "out of memory");
            sl_buf_dispose(&why);
            goto done;
        }
        sl_buf_dispose(&why);
        sites[n_sites++] = (struct sl_http_site){
            .listen = cfg->listen,
            .n_listen = cfg->n_listen,
            .name = "public",
            .on_request = sl_gateway_on_public_request,
            .data = proxy,
        };
    }
    size_t first_sim_site = n_sites;
    if (simcfg->n_endpoints) {
        if (sl_sim_new(cfg, &sim) != SL_OK) {
            sl_log_error("could not set up the simulated endpoints");
            goto done;
        }
        for (size_t i = 0; i < simcfg->n_endpoints; i++) {
            sites[n_sites++] = (struct sl_http_site){
                .listen = &simcfg->endpoints[i].listen,
                .n_listen = 1,
                .name = simcfg->endpoints[i].name,
                .on_request = sl_sim_on_request,
                .data = sl_sim_endpoint_data(sim, i),
            };
        }
    }
    struct sl_gateway_admin admin = {cfg, sim, proxy};
    struct sl_gateway_reload reload = {cfg->source, cfg, proxy, NULL, cfg->workers};
    struct sl_http_site admin_site = {
        .listen = &cfg->admin_listen,
        .n_listen = 1,
        .name = "admin",
        .on_request = sl_gateway_on_admin_request,
        .data = &admin,
    };
    struct sl_http_runner_options opts = {
        .workers = cfg->workers,
        .sites = sites,
        .n_sites = n_sites,
        .admin = &admin_site,
        .limits = &cfg->limits,
        .access_log = cfg->log.access,
        .worker_init = mode == SL_GATEWAY_SERVE ? sl_proxy_worker_init : NULL,
        .worker_dispose = mode == SL_GATEWAY_SERVE ? sl_proxy_worker_dispose : NULL,
        .data = proxy,
        .on_reload =
            mode == SL_GATEWAY_SERVE && strcmp(cfg->source, "<default>") ? on_reload : NULL,
        .reload_data = &reload,
    };
    if (mode == SL_GATEWAY_SERVE)
        sl_proxy_log_config_warnings(cfg);
    if (sl_http_runner_new(&opts, &runner) != SL_OK) {
        sl_log_error("could not start: see the messages above; check the listen addresses in the "
                     "configuration and that no other process uses those ports");
        goto done;
    }
    reload.runner = runner;
    if (sim)
        sl_sim_attach_runner(sim, runner, first_sim_site);
    for (size_t i = 0; i < n_sites; i++)
        for (size_t j = 0; j < sites[i].n_listen; j++)
            log_listen(i < first_sim_site ? "public" : "simulated endpoint",
                       i < first_sim_site ? NULL : sites[i].name, &sites[i].listen[j],
                       cfg->workers);
    log_listen("admin", NULL, &cfg->admin_listen, 0);
    if (sl_http_runner_run(runner) == SL_OK)
        rc = 0;
done:
    sl_http_runner_free(runner);
    if (sim)
        sl_sim_free(sim);
    sl_proxy_free(proxy);
    free(sites);
    sl_config_unref(cfg);
    return rc;
}
