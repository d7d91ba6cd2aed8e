/* Private to the proxy subsystem. */
#ifndef SL_PROXY_INTERNAL_H
#define SL_PROXY_INTERNAL_H

#include "proxy/proxy.h"
#include <jansson.h>
#include <stdatomic.h>

#include "auth/auth.h"
#include "balance/balance.h"
#include "ledger/ledger.h"
#include "limit/limit.h"
#include "metrics/metrics.h"
#include "policy/policy.h"
#include "proxy/sse.h"
#include "upstream/upstream.h"
#include "usage/usage.h"

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
 * The state of one loaded configuration, shared by every worker: the
 * backends' circuits and pins, identities, limits. Refcounted: the proxy
 * holds one reference while it is current, and each request in flight one,
 * so that after a reload requests finish with the configuration they
 * started with.
 */
struct sl_proxy_conf {
    atomic_uint refs;
    struct sl_config *cfg;            /* one reference */
    struct sl_balance *balance;       /* owned */
    struct sl_balance_worker **picks; /* owned: one per worker (round-robin counters) */
    unsigned n_workers;
    struct sl_auth *auth;       /* owned: keys and JWT issuers */
    struct sl_limiter *limiter; /* owned: requests and tokens per minute */
    struct sl_ledger *ledger;   /* the proxy's; NULL without usage.db */
};

/* The gateway's request path: the current configuration's state, swapped on reload. */
struct sl_proxy {
    _Atomic(struct sl_proxy_conf *) current; /* one reference */
    unsigned n_workers;
    struct sl_ledger *ledger;   /* owned; NULL without usage.db; kept across reloads */
    struct sl_metrics *metrics; /* owned: one shard per worker; kept across reloads */
};

/* Per worker thread: used only on its loop. */
struct sl_proxy_worker {
    struct sl_proxy *proxy;       /* borrowed */
    unsigned index;               /* which of conf->picks is this worker's */
    struct sl_upstream *upstream; /* owned; closed by sl_proxy_worker_dispose */
    /* Calls waiting for a backend (queue.c): highest priority first, then oldest. */
    struct sl_proxy_call *waiting; /* the first; linked through call->next_waiting */
    uv_timer_t wake;               /* when the first waiting call may go, or must give up */
    void (*disposed)(void *arg);   /* sl_proxy_worker_dispose's done, once all is closed */
    void *disposed_arg;
};

/* The current configuration's state, with a reference for the caller. */
struct sl_proxy_conf *sl_proxy_conf_acquire(struct sl_proxy *p);

/*
 * One proxied request, across its attempts. Lives in the request's arena,
 * so it is gone once the request is finished: everything that can outlive a
 * callback checks `in_callback` / `finish_pending` first (forward.c).
 */
struct sl_proxy_call {
    struct sl_http_request *req;             /* borrowed until finished */
    struct sl_proxy_worker *worker;          /* borrowed */
    struct sl_proxy_conf *conf;              /* one reference, released when the call ends */
    const struct sl_config *cfg;             /* conf's */
    const struct sl_config_client *client;   /* who sent it; borrowed from cfg */
    const struct sl_config_route *route;     /* borrowed from cfg */
    const struct sl_config_backend *backend; /* the current attempt's; borrowed from cfg */
    struct sl_proxy_target target;
    json_t *doc; /* the parsed body (v1 and OpenAI-style backends), for each attempt's `model`;
                  * owned, released by sl_proxy_call_end; NULL when not parsed */
    /* What limits the choice of backend (see struct sl_balance_query): */
    uint64_t *tried;          /* arena bitmap over cfg->backends */
    const char **geographies; /* arena; n_geographies */
    size_t n_geographies;
    struct sl_str region;      /* the client's, or x-sluice-region */
    size_t pinned;             /* the backend holding the object the request names; SIZE_MAX */
    struct sl_str session_key; /* arena: the pin key of x-sluice-session; empty: none */
    size_t session_backend;    /* where the session went last; SIZE_MAX */
    bool pin_answer;           /* a created object: remember the id in the answer */
    /* The current attempt: */
    struct sl_balance_pick pick;
    bool picked;       /* pick is reported to the balance when the attempt ends */
    bool spill;        /* pick is outside the route's first priority group (metrics) */
    unsigned attempts; /* started so far */
    uint64_t attempt_start_ms;
    uint64_t ttfb_ms;
    char *url;                      /* arena */
    struct sl_http_header *headers; /* arena; values borrowed from the request and cfg */
    size_t n_headers;
    struct sl_str body;            /* the request's body, or an arena copy */
    struct sl_upstream_xfer *xfer; /* NULL once done or cancelled */
    char *id_scan;                 /* arena: the start of a created object's answer */
    size_t id_scan_len;
    bool responded; /* the response head went to the client */
    bool paused;    /* upstream paused for backpressure */
    /* Accounting (account.c): */
    enum sl_policy_call kind;
    bool body_changed; /* caps rewrote doc: send it re-serialised */
    bool stream;       /* the client asked for a stream */
    uint64_t estimate; /* tokens the request may use, charged at admission */
    struct sl_limit_ticket ticket;
    struct sl_usage_scanner usage; /* follows the answer as the backend sent it */
    bool hide_usage;               /* sluice asked for the stream's usage chunk, not the client */
    bool filtering;                /* the answer goes through sse (a 2xx stream, hide_usage) */
    struct sl_sse_filter sse;      /* hides the usage chunk; disposed by sl_proxy_call_end */
    uint64_t arrival_unix_ms;
    uint64_t first_byte_ms; /* monotonic: when the answer's head went out; 0: never */
    int status;             /* what the client got (0: cut off) */
    /* Waiting for a backend (queue.c): */
    bool queued;
    struct sl_proxy_call *next_waiting, *prev_waiting;
    uint64_t wait_until; /* monotonic ms: then 429 */
    uint64_t retry_at;   /* monotonic ms: the soonest a backend may take it */
    int in_callback;     /* inside an upstream callback */
    bool finish_pending; /* the client went away during a callback */
};

/* Queueing (queue.c). Make call wait for a backend until one reopens at retry_at, or the
 * queue's max_wait: SL_OK (the call now belongs to the queue), or SL_EAGAIN when it cannot
 * wait (no queue, full with no lower priority to displace, pinned). */
int sl_proxy_queue_wait(struct sl_proxy_call *call, uint64_t retry_at);
/* Take a waiting call out (the client went away). */
void sl_proxy_queue_leave(struct sl_proxy_call *call);
/* The worker's timer (w->wake); close it with uv_close before freeing w. */
void sl_proxy_queue_init(struct sl_proxy_worker *w, uv_loop_t *loop);
/* forward.c, for the queue: try to start a waiting call now. SL_OK when it was started or
 * answered; SL_EAGAIN with *retry_at updated when still no backend can take it. */
int sl_proxy_try_start(struct sl_proxy_call *call, uint64_t *retry_at);
/* forward.c: answer a call that cannot wait longer (429/503 with retry headers). */
void sl_proxy_give_up(struct sl_proxy_call *call, uint64_t retry_at);

/* Did req come through the front door (front_door.header and .networks)? Otherwise why
 * (for the 403) is set (front_door.c). */
bool sl_proxy_front_door_ok(const struct sl_config *cfg, struct sl_http_request *req, char *why,
                            size_t why_size);

/* Prepare the call for the backend chosen in call->pick: URL, headers and body
 * (proxy.c). SL_OK or SL_ENOMEM. */
int sl_proxy_prepare_attempt(struct sl_proxy_call *call);
/* The call is over, answered with status (0: cut off): its usage is accounted (rate limits,
 * budgets, the ledger) and what it holds outside the arena is released, its configuration
 * included. Once; later calls do nothing. */
void sl_proxy_call_end(struct sl_proxy_call *call, int status);

/* Accounting (account.c). Budgets and rate limits: true when the call may go on; false after
 * answering 429. */
bool sl_proxy_admit(struct sl_proxy_call *call);
/* Settle the rate limits with the usage the answer reported, count it against the budgets
 * and queue the ledger record (from sl_proxy_call_end). */
void sl_proxy_account(struct sl_proxy_call *call);

/* Pinning (pins.c): the pin key of the stateful object the request names, in the path or in
 * the body (previous_response_id, thread_id, assistant_id), into the arena; empty when none. */
struct sl_str sl_proxy_object_key(struct sl_proxy_call *call);
/* The pin key of an object id (arena); empty on allocation failure. */
struct sl_str sl_proxy_pin_key(struct sl_http_request *req, struct sl_str id);
/* Feed the start of a created object's answer; returns the object's id once it is there
 * (a view into call->id_scan), else an empty string. */
struct sl_str sl_proxy_scan_id(struct sl_proxy_call *call, const char *bytes, size_t len);
/* The first `"id": "..."` string in json text (pure; fuzzed); empty when none whole. */
struct sl_str sl_proxy_find_id(struct sl_str text);

/* The pure parts of reading a client's path (proxy.c; fuzzed): */
/* False for paths a backend could read differently: dot or empty segments, ';', encoded separators.
 */
bool sl_proxy_path_is_plain(struct sl_str path);
/* Which surface path belongs to, and the parts of it; SL_ENOTFOUND when none. */
int sl_proxy_classify(struct sl_str path, struct sl_proxy_target *t);
/* A deployment name a route could have: 1..128 of [A-Za-z0-9._-], not "." or "..". */
bool sl_proxy_name_is_sane(struct sl_str name);

/* Clients are told to come back within this, whatever the backends said (LangChain and the
 * OpenAI SDKs give up on longer waits). */
#define SL_PROXY_MAX_RETRY_AFTER_MS 60000

/* The retry headers of a refusal: `retry-after-ms` and `Retry-After` (whole seconds, rounded
 * up) for a wait of wait_ms; h's values live in the struct (headers.c). */
struct sl_proxy_retry {
    char ms[24], secs[24];
    struct sl_http_header h[2];
};
void sl_proxy_retry_headers(struct sl_proxy_retry *r, uint64_t wait_ms);

/* True for a header that only describes one hop: the standard ones, and
 * those named by a Connection header among headers[0..n) (headers.c). */
bool sl_proxy_hop_by_hop(struct sl_str name, const struct sl_http_header *headers, size_t n);
/* The n to pass to sl_proxy_hop_by_hop for each header of a message: n when the message has a
 * Connection header, else 0 (so that checking every header is linear, not quadratic). */
size_t sl_proxy_connection_scope(const struct sl_http_header *headers, size_t n);

/* Choose a backend, send the call upstream and stream the answer back, retrying on
 * another backend while nothing went to the client (forward.c). */
void sl_proxy_forward(struct sl_proxy_call *call);

#endif
