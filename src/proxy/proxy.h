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

/* The request path: the current configuration and its backends' state. */
struct sl_proxy;
/* A configuration's state, replaced by sl_proxy_swap (see below). */
struct sl_proxy_conf;

/* 0 and *out; or an error with why saying what (the usage ledger's file cannot be opened, a
 * JWT issuer's key cannot be read...). Takes a reference to cfg. workers: the runner's. */
int sl_proxy_new(struct sl_config *cfg, unsigned workers, struct sl_proxy **out,
                 struct sl_buf *why);
void sl_proxy_free(struct sl_proxy *p);

/*
 * Reload: new requests use cfg from now on (the backends' circuits and the
 * pinned objects carry over, by backend name); requests in flight finish
 * with the configuration they started with. *old is the previous state:
 * release it with sl_proxy_conf_release once every worker has been through
 * its loop since the swap (a request handler may still be reading it until
 * then). 0, or an error with why (nothing changed: a key file cannot be read...).
 */
int sl_proxy_swap(struct sl_proxy *p, struct sl_config *cfg, struct sl_proxy_conf **old,
                  struct sl_buf *why);
void sl_proxy_conf_release(struct sl_proxy_conf *c);

/* Runner hooks (data: the struct sl_proxy): each worker gets its own upstream client
 * (connection pool). */
int sl_proxy_worker_init(uv_loop_t *loop, unsigned index, void *data, void **worker_data);
void sl_proxy_worker_dispose(void *worker_data, void (*done)(void *arg), void *arg);

/* Handle one client request on the public listener; data is the struct sl_proxy. */
void sl_proxy_on_request(struct sl_http_request *req, void *data);
/* GET /readyz: 200 while this process can serve (routing.readiness), else 503. */
void sl_proxy_on_readyz(struct sl_http_request *req, struct sl_proxy *p);
/* GET /sluice/status (admin listener): routes, backends, circuits, as JSON. */
void sl_proxy_on_status(struct sl_http_request *req, struct sl_proxy *p);
/* GET /metrics (admin listener): the Prometheus text format (scrape.c). */
void sl_proxy_on_metrics(struct sl_http_request *req, struct sl_proxy *p);

/* The process's metrics registry (counters of every worker, kept across reloads). */
struct sl_metrics *sl_proxy_metrics(struct sl_proxy *p);

/* Start-up warnings about the configuration (insecure backends, payload logging, no clients). */
void sl_proxy_log_config_warnings(const struct sl_config *cfg);

#endif
