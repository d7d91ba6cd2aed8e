/*
 * proxy: the gateway's request path. Identifies the client, maps what it asks
 * for (the Azure deployment in the path, or `model` in the body on v1 paths)
 * to a route and its backend, swaps the client's credential for the
 * backend's, and streams the backend's answer back as it arrives.
 */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include "config/config.h"
#include "http/http.h"

/* Runner hooks: each worker gets its own upstream client (connection pool). */
int sl_proxy_worker_init(uv_loop_t *loop, unsigned index, void *data, void **worker_data);
void sl_proxy_worker_dispose(void *worker_data, void (*done)(void *arg), void *arg);

/* Handle one client request; data is the struct sl_config (borrowed). */
void sl_proxy_on_request(struct sl_http_request *req, void *data);

/* Start-up warnings about the configuration (insecure backends, payload logging, no clients). */
void sl_proxy_log_config_warnings(const struct sl_config *cfg);

#endif
