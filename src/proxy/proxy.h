/*
 * proxy: the gateway's request path. Identifies the client, maps what it asks
 * for (the Azure deployment in the path, or `model` in the body on v1 paths)
 * to a route, picks a backend of the route's pool (src/balance/), swaps the
 * client's credential for the backend's, streams the backend's answer back
 * as it arrives, and retries on another backend while nothing has gone to
 * the client yet.
 */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include "config/config.h"
#include "http/http.h"

/* The request path for one configuration: its backends' state, shared by every worker. */
struct sl_proxy;

/* 0 and *out, or SL_ENOMEM. cfg is borrowed and must outlive the proxy. */
int sl_proxy_new(const struct sl_config *cfg, struct sl_proxy **out);
void sl_proxy_free(struct sl_proxy *p);

/* Runner hooks (data: the struct sl_proxy): each worker gets its own upstream client
 * (connection pool) and round-robin counters. */
int sl_proxy_worker_init(uv_loop_t *loop, unsigned index, void *data, void **worker_data);
void sl_proxy_worker_dispose(void *worker_data, void (*done)(void *arg), void *arg);

/* Handle one client request on the public listener; data is the struct sl_proxy. */
void sl_proxy_on_request(struct sl_http_request *req, void *data);
/* GET /readyz: 200 while this process can serve (routing.readiness), else 503. */
void sl_proxy_on_readyz(struct sl_http_request *req, struct sl_proxy *p);
/* GET /sluice/status (admin listener): routes, backends, circuits, as JSON. */
void sl_proxy_on_status(struct sl_http_request *req, struct sl_proxy *p);

/* Start-up warnings about the configuration (insecure backends, payload logging, no clients). */
void sl_proxy_log_config_warnings(const struct sl_config *cfg);

#endif
