#include "gateway/internal.h"

#include <string.h>

static void log_listen(const char *what, const struct sl_config_addr *a, unsigned workers)
{
    struct sl_buf b;
    sl_buf_init(&b);
    sl_config_addr_format(a, &b);
    if (workers)
        sl_log_info("%s listening on %s (%u workers)", what, b.base, workers);
    else
        sl_log_info("%s listening on %s", what, b.base);
    sl_buf_dispose(&b);
}

int sl_gateway_run(struct sl_config *cfg)
{
    struct sl_http_runner *runner = NULL;
    int rc = 1;
    cfg = sl_config_ref(cfg);
    sl_log_setup(cfg->log.level, cfg->log.format);

    struct sl_http_site public_site = {
        .listen = cfg->listen,
        .n_listen = cfg->n_listen,
        .name = "public",
        .on_request = sl_gateway_on_public_request,
        .data = cfg,
    };
    struct sl_http_site admin_site = {
        .listen = &cfg->admin_listen,
        .n_listen = 1,
        .name = "admin",
        .on_request = sl_gateway_on_admin_request,
        .data = cfg,
    };
    struct sl_http_runner_options opts = {
        .workers = cfg->workers,
        .sites = &public_site,
        .n_sites = 1,
        .admin = &admin_site,
        .limits = &cfg->limits,
        .access_log = cfg->log.access,
    };
    if (sl_http_runner_new(&opts, &runner) != SL_OK) {
        sl_log_error("could not start: see the messages above; check the listen addresses in the "
                     "configuration and that no other process uses those ports");
        goto done;
    }
    for (size_t i = 0; i < cfg->n_listen; i++)
        log_listen("public", &cfg->listen[i], cfg->workers);
    log_listen("admin", &cfg->admin_listen, 0);
    if (sl_http_runner_run(runner) == SL_OK)
        rc = 0;
done:
    sl_http_runner_free(runner);
    sl_config_unref(cfg);
    return rc;
}
