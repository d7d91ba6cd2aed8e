/* Private to the gateway subsystem. */
#ifndef SL_GATEWAY_INTERNAL_H
#define SL_GATEWAY_INTERNAL_H

#include "console/console.h"
#include "gateway/gateway.h"
#include "http/http.h"
#include "proxy/proxy.h"
#include "sim/sim.h"

/* What the admin handler needs; owned by sl_gateway_run's frame. */
struct sl_gateway_admin {
    struct sl_config *cfg;  /* borrowed */
    struct sl_sim *sim;     /* borrowed; NULL without simulated endpoints */
    struct sl_proxy *proxy; /* borrowed; NULL in `sluice sim` */
};

/* What a reload (SIGHUP) needs; owned by sl_gateway_run's frame. */
struct sl_gateway_reload {
    const char *path;                /* the configuration file (the running config's source) */
    const struct sl_config *running; /* borrowed: the one the process started with */
    struct sl_proxy *proxy;          /* borrowed */
    struct sl_http_runner *runner;   /* borrowed */
    unsigned workers;
};

/* Whether req may use the admin listener (admin_access.c): true, or false once it has been
 * answered (401 without the admin token, 403 for a cross-origin browser request). */
bool sl_gateway_admin_allowed(struct sl_http_request *req, const struct sl_config *cfg);

void sl_gateway_on_public_request(struct sl_http_request *req, void *data);
void sl_gateway_on_admin_request(struct sl_http_request *req, void *data);

#endif
