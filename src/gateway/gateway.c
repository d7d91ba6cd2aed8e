#include "gateway/internal.h"

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
        if (sl_proxy_new(cfg, &proxy) != SL_OK) {
            sl_log_error("could not set up the gateway's routes: out of memory");
            goto done;
        }
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
    };
    if (mode == SL_GATEWAY_SERVE)
        sl_proxy_log_config_warnings(cfg);
    if (sl_http_runner_new(&opts, &runner) != SL_OK) {
        sl_log_error("could not start: see the messages above; check the listen addresses in the "
                     "configuration and that no other process uses those ports");
        goto done;
    }
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
