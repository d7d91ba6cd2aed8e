/*
 * config: the one YAML configuration file, loaded into an immutable,
 * refcounted snapshot. Every field is declared once in the schema table
 * (schema.c) that drives parsing, defaults, bounds, error messages and the
 * generated reference docs/config.md.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdatomic.h>
#include <stdio.h>

#include "core/core.h"

/* A listen address as written ("127.0.0.1:8080", "[::1]:8080", ":8080"). */
struct sl_config_addr {
    char host[64]; /* numeric IPv4/IPv6 literal without brackets; "0.0.0.0" for ":port" */
    uint16_t port;
};
/* Append a as it is written in the file: "127.0.0.1:8080" or "[::1]:8080". */
int sl_config_addr_format(const struct sl_config_addr *a, struct sl_buf *out);
/* Parse an address written as in the file (e.g. a command-line option): 0, or SL_EINVAL
 * with the reason, quoting s, appended to why. */
int sl_config_parse_addr(struct sl_str s, struct sl_config_addr *out, struct sl_buf *why);

struct sl_config_limits {
    uint64_t max_header_bytes;    /* request line + headers */
    uint64_t max_body_bytes;      /* request body */
    uint64_t header_timeout_ms;   /* to receive a whole request head */
    uint64_t request_timeout_ms;  /* to receive a whole request body */
    uint64_t idle_timeout_ms;     /* keep-alive connection with no request */
    uint64_t shutdown_timeout_ms; /* graceful shutdown deadline for in-flight requests */
    uint64_t max_connections;     /* per worker */
};

struct sl_config_log {
    enum sl_log_level level;
    enum sl_log_format format;
    bool access; /* one JSON line per request */
};

/* ---- the gateway: backends, routes, clients ---- */
enum sl_backend_type {
    SL_BACKEND_AZURE,  /* Azure OpenAI: /openai/deployments/{d}/..., `api-key` header */
    SL_BACKEND_OPENAI, /* OpenAI-compatible: /v1/..., `Authorization: Bearer` */
};

/* A model deployment on an endpoint that the gateway sends requests to. Owns its strings. */
struct sl_config_backend {
    char *name;
    char *url; /* base URL: "https://x.openai.azure.com" (azure), "https://host/v1" (openai) */
    enum sl_backend_type type;
    char *api_key;    /* the credential sluice sends upstream (usually ${ENV}); NULL: none */
    char *region;     /* e.g. "eastus"; NULL when not given */
    char *model;      /* e.g. "gpt-4o" */
    char *version;    /* e.g. "2024-08-06"; NULL when not given */
    char *deployment; /* the upstream deployment (azure) or model (openai) name;
                       * NULL: the route's name is used */
    uint64_t connect_timeout_ms;
    uint64_t first_byte_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t total_timeout_ms;
    char *ca_file;   /* NULL: the system's CA store */
    bool insecure;   /* skip TLS verification: logged loudly at start-up */
    bool http2;      /* offer HTTP/2 over TLS */
    char *geography; /* data-residency area, e.g. "eu"; NULL: none (serves no bound route) */
    /* Circuit breaker (src/balance/): */
    uint64_t failure_threshold;  /* consecutive failures (5xx, connection, timeout) that open it */
    uint64_t open_time_ms;       /* first open period after failures; doubles per failed probe */
    uint64_t max_open_time_ms;   /* cap of that doubling */
    uint64_t throttle_time_ms;   /* a 429 without any retry header keeps it open this long */
    uint64_t max_retry_after_ms; /* longer retry headers are clamped to this (and logged) */
};

enum sl_client_priority {
    SL_PRIORITY_HIGH, /* served first when capacity is short */
    SL_PRIORITY_NORMAL,
    SL_PRIORITY_LOW,
};

enum sl_cap_mode {
    SL_CAP_CLAMP,  /* lower the request's value to the cap */
    SL_CAP_REJECT, /* answer 400 naming the parameter and the cap */
};

/* Bounds on what one request may ask for, of a client or a route (both apply: the stricter
 * wins). 0 means "no cap" for every number. Owns its lists. */
struct sl_config_caps {
    uint64_t max_tokens; /* max_tokens / max_completion_tokens / max_output_tokens */
    enum sl_cap_mode max_tokens_mode;
    uint64_t default_max_tokens; /* set on requests that name none */
    uint64_t max_n;
    uint64_t max_best_of;
    uint64_t max_top_logprobs;
    uint64_t max_prompt_bytes; /* the request body's size, prompts included */
    char **forbid;             /* n_forbid body parameters refused (400) */
    size_t n_forbid;
    char **allow; /* n_allow: when given, the only body parameters accepted */
    size_t n_allow;
};

/* One backend of a route's pool. Owns backend. */
struct sl_config_pool_member {
    char *backend;        /* the backend's name */
    size_t backend_index; /* resolved: index into sl_config.backends */
    uint64_t priority;    /* group: the lowest group with an available backend serves */
    uint64_t weight;      /* share within its group (smooth weighted round robin) */
};

/* A client-facing deployment/model name and where it goes. Owns its strings and pool. */
struct sl_config_route {
    char *name;    /* what clients put in the path (Azure) or in `model` (v1) */
    char *backend; /* shorthand for a pool of one backend; NULL when `backends` is given */
    struct sl_config_pool_member *pool; /* n_pool members: `backends`, or the one `backend`
                                         * (resolved), sorted by priority, then file order */
    size_t n_pool;
    char *api_version; /* upstream api-version to use instead of the client's; NULL: pass */
    bool log_payloads; /* debug: log request/response bodies of this route (warned at start) */
    bool allow_mixed_versions; /* a deliberate roll-out: the pool may mix models/versions */
    uint64_t max_attempts;     /* backends tried per request, the first included */
    uint32_t retry_budget_ppm; /* retries allowed as a share of requests (over 10 s) */
    char **geographies;        /* n_geographies areas the route is bound to; none: unbound */
    size_t n_geographies;
    bool region_header;      /* clients may declare their region in `x-sluice-region` */
    bool prefer_low_latency; /* within a group, the backend with the lowest recent TTFB */
    struct sl_config_caps caps;
};

/* Requests and tokens per minute of a client on one route. Owns route. */
struct sl_config_route_limit {
    char *route;
    size_t route_index; /* resolved */
    uint64_t rpm, tpm;  /* 0: no limit */
};

enum sl_budget_window {
    SL_BUDGET_DAY,   /* calendar day, UTC */
    SL_BUDGET_WEEK,  /* ISO week (from Monday), UTC */
    SL_BUDGET_MONTH, /* calendar month, UTC */
};

/* What a client may spend in a window. */
struct sl_config_budget {
    enum sl_budget_window window;
    uint64_t tokens;    /* total tokens; 0: no token budget */
    uint64_t cost;      /* USD in millionths (from the price table); 0: no money budget */
    uint32_t alert_ppm; /* alert when this share is used */
};

/* An application allowed to call the gateway. Owns its strings and lists. */
struct sl_config_client {
    char *name;
    char *team;  /* for reports; NULL: none */
    char **tags; /* n_tags labels, for reports */
    size_t n_tags;
    char **keys; /* n_keys hashed keys, "sha256:<64 hex>" (`sluice hash-key` prints them);
                  * several at once so a key can be rotated without downtime */
    size_t n_keys;
    unsigned char (*key_hashes)[32]; /* resolved: the n_keys SHA-256 digests */
    char *jwt_issuer;                /* the `jwt_issuers` entry its tokens come from; NULL: none */
    size_t jwt_issuer_index;         /* resolved */
    char **jwt_ids; /* n_jwt_ids values of the issuer's claim that name this client */
    size_t n_jwt_ids;
    char *region;       /* where the client runs, for nearest-first; NULL: unknown */
    char **geographies; /* n_geographies areas it is bound to; none: unbound */
    size_t n_geographies;
    char **routes; /* n_routes granted routes; none: every route */
    size_t n_routes;
    uint64_t *route_grants; /* resolved: bitmap over sl_config.routes; NULL: every route */
    char **backends;        /* n_backends backends it may be served by; none: any */
    size_t n_backends;
    uint64_t *backend_allow; /* resolved: bitmap over sl_config.backends; NULL: any */
    enum sl_client_priority priority;
    uint64_t rpm, tpm;                          /* over all routes; 0: no limit */
    struct sl_config_route_limit *route_limits; /* n_route_limits per-route limits */
    size_t n_route_limits;
    struct sl_config_caps caps;
    struct sl_config_budget *budgets; /* n_budgets */
    size_t n_budgets;
};

/* Where JWT bearer tokens come from and how to check them (`jwt_issuers`). Owns its strings;
 * the keys are loaded by the auth subsystem from the files named here. */
struct sl_config_jwt_issuer {
    char *name;       /* what clients' jwt_issuer names */
    char *issuer;     /* the `iss` tokens must carry */
    char **audiences; /* n_audiences: `aud` must hold one of them */
    size_t n_audiences;
    char *jwks_file;       /* JSON Web Key Set (RS256/ES256); NULL: not this way */
    char *public_key_file; /* PEM public key (RSA or EC P-256); NULL: not this way */
    char *secret;          /* HS256 shared secret; NULL: not this way */
    char **algorithms;     /* n_algorithms accepted `alg`s; none: those the key supports */
    size_t n_algorithms;
    char *claim;        /* the claim naming the client, e.g. "azp", "appid", "oid" */
    uint64_t leeway_ms; /* clock skew allowed on exp and nbf */
};

/* Prices per million tokens of one model, in millionths of USD (`prices`). Owns model. */
struct sl_config_price {
    char *model; /* a backend `model`, e.g. "gpt-4o" */
    uint64_t input, cached_input, output;
};

/* Requests must come through this front door (`front_door`). Owns its lists. */
struct sl_config_front_door {
    char *header;  /* e.g. "X-Azure-FDID"; NULL: no header check */
    char **values; /* n_values accepted values of it */
    size_t n_values;
    char **networks; /* n_networks CIDRs the client's address must be in; none: any */
    size_t n_networks;
};

/* Requests waiting for a backend when every one is throttled (`queue`). */
struct sl_config_queue {
    uint64_t max_length;  /* waiting requests per route and worker; 0: no queue */
    uint64_t max_wait_ms; /* longest wait before 429 */
};

/* The usage ledger (`usage`). Owns db. */
struct sl_config_usage {
    char *db;                   /* SQLite file; NULL: no ledger (and no budgets) */
    uint64_t flush_interval_ms; /* records reach the file within this */
    uint64_t queue_size;        /* records waiting for the writer, at most */
};

/* Budget alerts (`alerts`). Owns webhook. */
struct sl_config_alerts {
    char *webhook; /* URL POSTed a JSON alert; NULL: log and metric only */
};

enum sl_readiness {
    SL_READINESS_ANY, /* /readyz is 503 when any route has no available backend */
    SL_READINESS_ALL, /* ... only when no route has one */
};

/* How routes pick and stick to backends (`routing:`). */
struct sl_config_routing {
    enum sl_readiness readiness;
    uint64_t pin_ttl_ms;     /* how long a stateful object's backend is remembered */
    uint64_t session_ttl_ms; /* how long an `x-sluice-session` stays on its backend */
    uint64_t max_pins;       /* entries in the pin table; the oldest go first */
};

/* ---- simulator (`simulator:`): simulated Azure OpenAI / OpenAI endpoints ---- */
enum sl_sim_flavor {
    SL_SIM_FLAVOR_AZURE,  /* Azure OpenAI: api-version, content-filter fields, x-ms-* headers */
    SL_SIM_FLAVOR_OPENAI, /* a plain OpenAI-compatible server */
};
enum sl_sim_kind {
    SL_SIM_KIND_CHAT,        /* chat completions (and responses) */
    SL_SIM_KIND_COMPLETIONS, /* legacy completions */
    SL_SIM_KIND_EMBEDDINGS,
};
enum sl_sim_capacity {
    SL_SIM_CAPACITY_STANDARD,    /* pay-as-you-go: TPM/RPM quota over the minute */
    SL_SIM_CAPACITY_PROVISIONED, /* PTU: 429 when utilisation over the last second passes 100% */
};
enum sl_sim_fault_kind {
    SL_SIM_FAULT_NONE,           /* serve normally (a step in a scripted sequence) */
    SL_SIM_FAULT_STATUS,         /* answer `status` with an Azure error body (429: retry headers) */
    SL_SIM_FAULT_RESET,          /* reset the connection instead of answering */
    SL_SIM_FAULT_REFUSE,         /* stop listening for `duration`: connections are refused */
    SL_SIM_FAULT_STALL_HEADERS,  /* wait `duration` before sending anything */
    SL_SIM_FAULT_STALL_STREAM,   /* stream `after` chunks, then stall for `duration` */
    SL_SIM_FAULT_CUT_STREAM,     /* stream `after` chunks, then close mid-event (no [DONE]) */
    SL_SIM_FAULT_TRICKLE,        /* send the response slowly: one chunk per `duration` */
    SL_SIM_FAULT_MALFORMED_JSON, /* 200 with a body that is not valid JSON */
};

/* One fault rule. Rules are tried in order; see docs/simulator.md. Owns deployment. */
struct sl_config_sim_fault {
    enum sl_sim_fault_kind kind;
    uint64_t status;          /* SL_SIM_FAULT_STATUS: 400..599 */
    uint64_t retry_after_ms;  /* 429: value of retry-after-ms / retry-after; 0 = none */
    uint32_t probability_ppm; /* chance per request, parts per million (1000000 = always) */
    uint64_t count;           /* times it applies before it is used up; 0 = unlimited */
    char *deployment;         /* only requests to this deployment; NULL = any */
    uint64_t duration_ms;     /* stall / refuse / trickle period */
    uint64_t after;           /* stall_stream / cut_stream: chunks sent first */
};

/* A simulated model deployment. Owns its strings. */
struct sl_config_sim_deployment {
    char *name;    /* deployment name in Azure paths; model name on v1 paths */
    char *model;   /* model name reported in responses, e.g. "gpt-4o" */
    char *version; /* model version, e.g. "2024-08-06" */
    enum sl_sim_kind kind;
    enum sl_sim_capacity capacity;
    uint64_t tpm;                /* tokens per minute; 0 = unlimited */
    uint64_t rpm;                /* requests per minute; 0 = 6 per 1000 TPM, as Azure assigns */
    uint64_t ttft_ms;            /* time to first token */
    uint64_t tokens_per_second;  /* streaming speed after the first token */
    uint64_t jitter_percent;     /* +/- variation of ttft and token pace */
    uint64_t default_max_tokens; /* output cap (and TPM charge) when a request sets none */
    uint64_t context_window;     /* prompt + max tokens beyond this: 400 context_length_exceeded */
    uint64_t dimensions;         /* embeddings: vector length */
};

/* A simulated endpoint (an Azure OpenAI resource or an OpenAI-compatible server). */
struct sl_config_sim_endpoint {
    char *name;
    struct sl_config_addr listen;
    char *region; /* x-ms-region */
    enum sl_sim_flavor flavor;
    char **api_keys; /* n_api_keys accepted keys; none: any non-empty key is accepted */
    size_t n_api_keys;
    struct sl_config_sim_deployment *deployments;
    size_t n_deployments;
    struct sl_config_sim_fault *faults;
    size_t n_faults;
};

struct sl_config_sim {
    uint64_t seed; /* varies generated content; same seed, same request → same answer */
    struct sl_config_sim_endpoint *endpoints;
    size_t n_endpoints;
};

/*
 * A loaded configuration. Immutable once returned by a loader; shared by
 * reference (sl_config_ref/_unref) so that a reload can swap in a new one
 * while requests still use the old one. Owns every pointer it holds.
 */
struct sl_config {
    atomic_uint refs;
    char *source;                  /* file name it came from, or "<default>" */
    struct sl_config_addr *listen; /* n_listen public listeners */
    size_t n_listen;
    struct sl_config_addr admin_listen;
    /* The bearer token the admin listener requires (of all but /healthz and the console's
     * static files); NULL: none (admin_listen is then on loopback). */
    char *admin_token;
    unsigned workers; /* resolved: never 0 (0 in the file means one per core) */
    struct sl_config_limits limits;
    struct sl_config_log log;
    struct sl_config_backend *backends;
    size_t n_backends;
    struct sl_config_route *routes;
    size_t n_routes;
    struct sl_config_client *clients;
    size_t n_clients;
    bool backend_header; /* add `x-sluice-backend: <name>` to proxied responses */
    struct sl_config_routing routing;
    struct sl_config_jwt_issuer *jwt_issuers;
    size_t n_jwt_issuers;
    struct sl_config_price *prices;
    size_t n_prices;
    struct sl_config_front_door front_door;
    struct sl_config_queue queue;
    struct sl_config_usage usage;
    struct sl_config_alerts alerts;
    struct sl_config_sim simulator;
    size_t *route_order; /* derived: the n_routes indices of routes sorted by name, for
                          * sl_config_find_route; NULL when there are none */
};

/* One problem found while loading; owns its strings. */
struct sl_config_error {
    char *file;
    unsigned line, col; /* 1-based; 0 when not tied to a place */
    char *path;         /* dotted key path, e.g. "limits.max_body_bytes" or "listen[1]" */
    char *message;
};
struct sl_config_errors {
    struct sl_config_error *items; /* owned */
    size_t n, cap;
};
void sl_config_errors_init(struct sl_config_errors *e);
void sl_config_errors_dispose(struct sl_config_errors *e);
/* Prints each as "FILE:LINE:COL: key.path: message\n". */
void sl_config_errors_print(const struct sl_config_errors *e, FILE *out);

/*
 * Load and validate. On success returns 0 and *out holds one reference. On
 * failure returns SL_EINVAL (or SL_EIO when the file cannot be read) and every
 * problem found is appended to errs; *out is NULL.
 */
int sl_config_load_file(const char *path, struct sl_config **out, struct sl_config_errors *errs);
int sl_config_load_buffer(const char *name, const char *data, size_t len, struct sl_config **out,
                          struct sl_config_errors *errs);
/* The configuration `sluice serve` uses when none is given: defaults plus
 * simulated endpoints on 127.0.0.1:8091-8093 (see default.c). */
int sl_config_load_default(struct sl_config **out, struct sl_config_errors *errs);

struct sl_config *sl_config_ref(struct sl_config *c);
void sl_config_unref(struct sl_config *c);

/* The simulator configuration `sluice sim --listen ADDR` runs: one Azure-flavoured endpoint
 * at addr with a default set of deployments (see docs/simulator.md). */
int sl_config_load_sim_default(const struct sl_config_addr *addr, struct sl_config **out,
                               struct sl_config_errors *errs);

/* Append the Markdown reference of every field (the contents of docs/config.md). */
int sl_config_write_reference(struct sl_buf *out);

/* ---- the gateway's tables at run time (gateway.c) ---- */
/* A client key as the config stores it: "sha256:" and the 64 lowercase hex digits of
 * SHA-256(key), NUL-terminated (71 characters + NUL = 72 bytes). `sluice hash-key` prints it. */
#define SL_CONFIG_HASHED_KEY_SIZE 72
void sl_config_hash_key(struct sl_str key, char out[72]);
/* The route clients call `name` (exact, case-sensitive), or NULL. O(log n_routes). */
const struct sl_config_route *sl_config_find_route(const struct sl_config *c, struct sl_str name);
/* The client one of whose keys is `key` (the key as the client sent it, not hashed), or NULL
 * (also for an empty key). Every stored hash is compared in constant time, without stopping
 * at a match, so that the time taken says nothing about which key or client matched. */
const struct sl_config_client *sl_config_find_client(const struct sl_config *c, struct sl_str key);
/* True when b keeps what only a restart can change: listeners, workers, limits, the simulated
 * endpoints' addresses, the usage ledger's file. */
bool sl_config_same_listeners(const struct sl_config *a, const struct sl_config *b);

#endif
