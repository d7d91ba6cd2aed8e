/* Private to the proxy subsystem. */
#ifndef SL_PROXY_INTERNAL_H
#define SL_PROXY_INTERNAL_H

#include "proxy/proxy.h"
#include "upstream/upstream.h"

enum sl_proxy_surface {
    SL_PROXY_AZURE,    /* /openai/deployments/{name}/{rest} */
    SL_PROXY_V1,       /* /openai/v1/{rest}, /v1/{rest}: model in the body */
    SL_PROXY_RESOURCE, /* /openai/{responses,assistants,threads,files,...}: stateful */
};

/* What the client asked for; views into the request (or its parsed body). */
struct sl_proxy_target {
    enum sl_proxy_surface surface;
    struct sl_str name; /* deployment (Azure path) or body `model`; empty when none */
    struct sl_str rest; /* path after the deployment, after v1/, or after /openai/ */
    bool stateful;      /* responses, assistants, threads, files, batches, vector stores */
};

/*
 * One proxied request. Lives in the request's arena, so it is gone once the
 * request is finished: everything that can outlive a callback checks
 * `in_callback` / `finish_pending` first (forward.c).
 */
struct sl_proxy_call {
    struct sl_http_request *req;             /* borrowed until finished */
    const struct sl_config *cfg;             /* borrowed */
    const struct sl_config_route *route;     /* borrowed from cfg */
    const struct sl_config_backend *backend; /* borrowed from cfg */
    struct sl_proxy_target target;
    char *url;                      /* arena */
    struct sl_http_header *headers; /* arena; values borrowed from the request and cfg */
    size_t n_headers;
    struct sl_str body;            /* the request's body, or an arena copy */
    struct sl_upstream_xfer *xfer; /* NULL once done or cancelled */
    bool responded;                /* the response head went to the client */
    bool paused;                   /* upstream paused for backpressure */
    int in_callback;               /* inside an upstream callback */
    bool finish_pending;           /* the client went away during a callback */
};

/* The pure parts of reading a client's path (proxy.c; fuzzed): */
/* False for paths a backend could read differently: dot or empty segments, ';', encoded separators.
 */
bool sl_proxy_path_is_plain(struct sl_str path);
/* Which surface path belongs to, and the parts of it; SL_ENOTFOUND when none. */
int sl_proxy_classify(struct sl_str path, struct sl_proxy_target *t);
/* A deployment name a route could have: 1..128 of [A-Za-z0-9._-], not "." or "..". */
bool sl_proxy_name_is_sane(struct sl_str name);

/* True for a header that only describes one hop: the standard ones, and
 * those named by a Connection header among headers[0..n) (headers.c). */
bool sl_proxy_hop_by_hop(struct sl_str name, const struct sl_http_header *headers, size_t n);

/* Send the call upstream and stream the answer back (forward.c). */
void sl_proxy_forward(struct sl_proxy_call *call);

#endif
