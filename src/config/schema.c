/*
 * The fields of struct sl_config, each declared once. Parsing, defaults,
 * bounds, error messages and docs/config.md all come from this table: to
 * add a setting, add a member to config.h and a row here, then regenerate
 * docs/config.md.
 */
#include <arpa/inet.h>
#include <string.h>

#include <uv.h>

#include "config/schema.h"

_Static_assert(sizeof(enum sl_log_level) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_log_format) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_readiness) == sizeof(int), "enum fields are stored as int");

#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define SECONDS 1000ull
#define HOURS (3600ull * SECONDS)
#define DAYS (24 * HOURS)
#define MAX_WORKERS 256

static const struct sl_cfg_choice readiness_choices[] = {
    {"any", SL_READINESS_ANY},
    {"all", SL_READINESS_ALL},
    {NULL, 0},
};

static const struct sl_cfg_choice log_levels[] = {
    {"debug", SL_LOG_DEBUG},
    {"info", SL_LOG_INFO},
    {"warn", SL_LOG_WARN},
    {"error", SL_LOG_ERROR},
    {NULL, 0},
};

static const struct sl_cfg_choice log_formats[] = {
    {"json", SL_LOG_JSON},
    {"text", SL_LOG_TEXT},
    {NULL, 0},
};

static const struct sl_cfg_field fields[] = {
    {
        .name = "listen",
        .type = SL_CFG_ADDR_LIST,
        .def = "0.0.0.0:8080",
        .min = 1,
        .max = 64,
        .doc = "Addresses on which clients reach the API. One address, or a list of them.",
        SL_CFG_MEMBER(struct sl_config, listen),
        SL_CFG_COUNT(struct sl_config, n_listen),
    },
    {
        .name = "admin_listen",
        .type = SL_CFG_ADDR,
        .def = "127.0.0.1:9090",
        SL_CFG_UNBOUNDED,
        .doc = "Address of the admin endpoints (health, metrics, console). It must not share a "
               "port with any `listen` address: keep it off the public network.",
        SL_CFG_MEMBER(struct sl_config, admin_listen),
    },
    {
        .name = "admin_token",
        .type = SL_CFG_STRING,
        .min = 16,
        .max = 256,
        .doc = "A secret that requests to the admin listener must carry as `Authorization: "
               "Bearer TOKEN` (all but `/healthz` and the console's page itself); others are "
               "answered 401. Required when `admin_listen` is not a loopback address; write "
               "it as `${SLUICE_ADMIN_TOKEN}` to keep it out of the file. Changes apply at a "
               "restart.",
        SL_CFG_MEMBER(struct sl_config, admin_token),
        .check = sl_cfg_check_text,
    },
    {
        .name = "workers",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = MAX_WORKERS,
        .doc = "Worker threads, each serving its share of connections. `0` means one per CPU "
               "core available to the process.",
        SL_CFG_MEMBER(struct sl_config, workers),
    },
    {
        .name = "limits.max_header_bytes",
        .type = SL_CFG_SIZE,
        .def = "16KiB",
        .min = KIB,
        .max = MIB,
        .doc = "Largest request head (request line and headers). Larger heads are answered "
               "with 431.",
        SL_CFG_MEMBER(struct sl_config, limits.max_header_bytes),
    },
    {
        .name = "limits.max_body_bytes",
        .type = SL_CFG_SIZE,
        .def = "16MiB",
        .min = 0,
        .max = GIB,
        .doc = "Largest request body. Larger bodies are answered with 413.",
        SL_CFG_MEMBER(struct sl_config, limits.max_body_bytes),
    },
    {
        .name = "limits.header_timeout",
        .type = SL_CFG_DURATION,
        .def = "10s",
        .min = 1,
        .max = HOURS,
        .doc = "Time a client has to send a complete request head. After it the gateway "
               "answers 408 and closes the connection.",
        SL_CFG_MEMBER(struct sl_config, limits.header_timeout_ms),
    },
    {
        .name = "limits.request_timeout",
        .type = SL_CFG_DURATION,
        .def = "60s",
        .min = 1,
        .max = HOURS,
        .doc = "Time a client has to send the complete request body. After it the gateway "
               "answers 408 and closes the connection.",
        SL_CFG_MEMBER(struct sl_config, limits.request_timeout_ms),
    },
    {
        .name = "limits.idle_timeout",
        .type = SL_CFG_DURATION,
        .def = "75s",
        .min = 1,
        .max = HOURS,
        .doc = "How long a keep-alive connection may wait for its next request before the "
               "gateway closes it.",
        SL_CFG_MEMBER(struct sl_config, limits.idle_timeout_ms),
    },
    {
        .name = "limits.shutdown_timeout",
        .type = SL_CFG_DURATION,
        .def = "30s",
        .min = 0,
        .max = HOURS,
        .doc = "On shutdown, how long requests in flight (streams included) may take to "
               "finish before their connections are closed. `0` closes them at once.",
        SL_CFG_MEMBER(struct sl_config, limits.shutdown_timeout_ms),
    },
    {
        .name = "limits.max_connections",
        .type = SL_CFG_INT,
        .def = "10000",
        .min = 1,
        .max = 1000000,
        .doc = "Open client connections per worker; the gateway as a whole accepts up to this "
               "times `workers`.",
        SL_CFG_MEMBER(struct sl_config, limits.max_connections),
    },
    {
        .name = "log.level",
        .type = SL_CFG_ENUM,
        .def = "info",
        SL_CFG_UNBOUNDED,
        .doc = "Least severe message written to the log.",
        SL_CFG_MEMBER(struct sl_config, log.level),
        .choices = log_levels,
    },
    {
        .name = "log.format",
        .type = SL_CFG_ENUM,
        .def = "json",
        SL_CFG_UNBOUNDED,
        .doc = "`json`: one JSON object per line, for log collectors. `text`: plain lines "
               "for people.",
        SL_CFG_MEMBER(struct sl_config, log.format),
        .choices = log_formats,
    },
    {
        .name = "log.access",
        .type = SL_CFG_BOOL,
        .def = "true",
        SL_CFG_UNBOUNDED,
        .doc = "Write one access-log line per request.",
        SL_CFG_MEMBER(struct sl_config, log.access),
    },
    /* The gateway's lists; one entry of each is described in schema_gateway.c. */
    {
        .name = "backends",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 1024,
        .doc = "The model deployments that sluice forwards requests to (see below).",
        SL_CFG_MEMBER(struct sl_config, backends),
        SL_CFG_COUNT(struct sl_config, n_backends),
        .sub = &sl_cfg_backend_schema,
        .section = "gateway",
    },
    {
        .name = "routes",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 1024,
        .doc = "The names that clients call, each sent to a backend (see below). A name "
               "without a route is answered 404.",
        SL_CFG_MEMBER(struct sl_config, routes),
        SL_CFG_COUNT(struct sl_config, n_routes),
        .sub = &sl_cfg_route_schema,
        .section = "gateway",
    },
    {
        .name = "clients",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 1024,
        .doc = "The applications allowed to call the gateway, each with its own keys (see "
               "below).",
        SL_CFG_MEMBER(struct sl_config, clients),
        SL_CFG_COUNT(struct sl_config, n_clients),
        .sub = &sl_cfg_client_schema,
        .section = "gateway",
    },
    {
        .name = "backend_header",
        .type = SL_CFG_BOOL,
        .def = "true",
        SL_CFG_UNBOUNDED,
        .doc = "Add an `x-sluice-backend: NAME` header, naming the backend that answered, to "
               "every proxied response: handy to see where requests went. `false` keeps "
               "backend names from clients.",
        SL_CFG_MEMBER(struct sl_config, backend_header),
        .section = "gateway",
    },
    {
        .name = "jwt_issuers",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 64,
        .doc = "Issuers of JWT bearer tokens that identify clients (see below).",
        SL_CFG_MEMBER(struct sl_config, jwt_issuers),
        SL_CFG_COUNT(struct sl_config, n_jwt_issuers),
        .sub = &sl_cfg_jwt_issuer_schema,
        .section = "gateway",
    },
    {
        .name = "prices",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 1024,
        .doc = "What each model's tokens cost, for money budgets and usage reports (see below).",
        SL_CFG_MEMBER(struct sl_config, prices),
        SL_CFG_COUNT(struct sl_config, n_prices),
        .sub = &sl_cfg_price_schema,
        .section = "gateway",
    },
    {
        .name = "front_door.header",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 128,
        .doc = "A header every request must carry with one of `values`, e.g. `X-Azure-FDID` "
               "with your Azure Front Door's id, so that only traffic through it is served; "
               "others are answered 403. Not set: no header check.",
        SL_CFG_MEMBER(struct sl_config, front_door.header),
        .check = sl_cfg_check_name,
    },
    {
        .name = "front_door.values",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 64,
        .doc = "The accepted values of `header`.",
        SL_CFG_MEMBER(struct sl_config, front_door.values),
        SL_CFG_COUNT(struct sl_config, front_door.n_values),
        .check = sl_cfg_check_text,
    },
    {
        .name = "front_door.networks",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 256,
        .doc = "The networks requests may come from, e.g. `[10.0.0.0/8, 2001:db8::/32]` (the "
               "connection's address; no header is trusted for it). Others are answered 403. "
               "Not given: any.",
        SL_CFG_MEMBER(struct sl_config, front_door.networks),
        SL_CFG_COUNT(struct sl_config, front_door.n_networks),
        .check = sl_cfg_check_cidr,
    },
    {
        .name = "queue.max_length",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 1000000,
        .doc = "Requests that may wait, per route and worker, when every backend they may use "
               "is throttled or failing, instead of being answered 429 at once; they are sent "
               "as backends reopen, highest client `priority` first. When it is full, a new "
               "request is answered 429, unless it outranks a waiting one, which is answered "
               "429 instead. `0`: no waiting (429 at once).",
        SL_CFG_MEMBER(struct sl_config, queue.max_length),
    },
    {
        .name = "queue.max_wait",
        .type = SL_CFG_DURATION,
        .def = "30s",
        .min = 0,
        .max = 10 * 60 * SECONDS,
        .doc = "The longest a request waits for a backend; then it is answered 429 with the "
               "time the soonest backend reopens.",
        SL_CFG_MEMBER(struct sl_config, queue.max_wait_ms),
    },
    {
        .name = "usage.db",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 4096,
        .doc = "The SQLite file of the usage ledger: one record per request (client, route, "
               "backend, tokens, cost). Budgets are kept there across restarts. Not set: no "
               "ledger.",
        SL_CFG_MEMBER(struct sl_config, usage.db),
    },
    {
        .name = "usage.flush_interval",
        .type = SL_CFG_DURATION,
        .def = "100ms",
        .min = 1,
        .max = 60 * SECONDS,
        .doc = "Records reach the file within this; a crash loses at most this much.",
        SL_CFG_MEMBER(struct sl_config, usage.flush_interval_ms),
    },
    {
        .name = "usage.queue_size",
        .type = SL_CFG_INT,
        .def = "8192",
        .min = 16,
        .max = 16777216,
        .doc = "Records waiting for the writer, at most; beyond it records are dropped (and "
               "counted), never waited for. Each takes about 700 bytes; the default absorbs "
               "some 80,000 requests a second at a 100 ms flush interval.",
        SL_CFG_MEMBER(struct sl_config, usage.queue_size),
    },
    {
        .name = "alerts.webhook",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 2048,
        .doc = "A URL that budget alerts are POSTed to as JSON. Not set: alerts are logged and "
               "counted only.",
        SL_CFG_MEMBER(struct sl_config, alerts.webhook),
        .check = sl_cfg_check_url,
    },
    {
        .name = "routing.readiness",
        .type = SL_CFG_ENUM,
        .def = "any",
        SL_CFG_UNBOUNDED,
        .doc = "When `GET /readyz` answers 503, so that a load balancer in front stops sending "
               "traffic here: `any` — as soon as one route has no backend available (every "
               "one open or throttled); `all` — only when no route has one.",
        SL_CFG_MEMBER(struct sl_config, routing.readiness),
        .choices = readiness_choices,
    },
    {
        .name = "routing.pin_ttl",
        .type = SL_CFG_DURATION,
        .def = "24h",
        .min = SECONDS,
        .max = 90 * DAYS,
        .doc = "How long sluice remembers which backend holds a stateful object (a thread, an "
               "assistant, a file, a stored response) after it was last used: requests that "
               "name the object go to that backend only. Objects older than this, or created "
               "before a restart, are routed like any request.",
        SL_CFG_MEMBER(struct sl_config, routing.pin_ttl_ms),
    },
    {
        .name = "routing.session_ttl",
        .type = SL_CFG_DURATION,
        .def = "1h",
        .min = SECONDS,
        .max = 90 * DAYS,
        .doc = "How long requests with the same `x-sluice-session` header keep going to the "
               "backend that served the first one (while it is available) after the last "
               "such request.",
        SL_CFG_MEMBER(struct sl_config, routing.session_ttl_ms),
    },
    {
        .name = "routing.max_pins",
        .type = SL_CFG_INT,
        .def = "100000",
        .min = 16,
        .max = 100000000,
        .doc = "Objects and sessions remembered at most; when full, the oldest is forgotten. "
               "Each takes about 100 bytes plus its id.",
        SL_CFG_MEMBER(struct sl_config, routing.max_pins),
    },
    /* The rest of the simulator's schema is in schema_sim.c. */
    {
        .name = "simulator.seed",
        .type = SL_CFG_INT,
        .def = "0",
        SL_CFG_UNBOUNDED,
        .doc = "Seed of the generated answers: the same seed and the same request give the "
               "same answer, so that test runs repeat. Change it to vary the answers.",
        SL_CFG_MEMBER(struct sl_config, simulator.seed),
    },
    {
        .name = "simulator.endpoints",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 64,
        .doc = "The simulated endpoints (see below), each on its own address. None: nothing "
               "is simulated.",
        SL_CFG_MEMBER(struct sl_config, simulator.endpoints),
        SL_CFG_COUNT(struct sl_config, simulator.n_endpoints),
        .sub = &sl_cfg_sim_endpoint_schema,
    },
};

static const struct sl_cfg_section sections[] = {
    {"", "Top-level keys", "Where the gateway listens and how many workers it runs."},
    {"limits", "`limits`: connections and requests",
     "Bounds on what one client connection may send, and how long it may take. A client "
     "that exceeds one gets an HTTP error (with a JSON body) and, for timeouts, a closed "
     "connection."},
    {"log", "`log`: logging", "The gateway logs to standard error."},
    {"gateway", "`backends`, `routes` and `clients`: the gateway", sl_cfg_gateway_doc},
    {"front_door", "`front_door`: only traffic through your front door",
     "Checks on where requests come from, made before anything else (docs/clients.md)."},
    {"queue", "`queue`: waiting for capacity",
     "When every backend a request may use is throttled, the request waits, highest client "
     "`priority` first, instead of being answered 429 at once."},
    {"usage", "`usage`: the usage ledger", "Where each request's usage is recorded."},
    {"alerts", "`alerts`: budget alerts", "Where budget alerts go besides the log."},
    {"routing", "`routing`: readiness and pinning",
     "How `/readyz` reports this process, and how long requests stick to the backend that "
     "holds their state. docs/routing.md explains pools, failover and pinning."},
    {"simulator", "`simulator`: simulated Azure OpenAI endpoints", sl_cfg_sim_doc},
};

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: reachable from this machine only. */
static bool addr_is_loopback(const struct sl_config_addr *a)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, a->host, b) == 1)
        return b[0] == 127;
    if (inet_pton(AF_INET6, a->host, b) != 1)
        return false;
    static const unsigned char one[16] = {[15] = 1};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(b, one, 16) == 0 || (memcmp(b, mapped, 12) == 0 && b[12] == 127);
}

static void finish(void *obj, struct sl_cfg_check *chk)
{
    struct sl_config *c = obj;
    if (sl_cfg_check_usable(chk, "listen") && sl_cfg_check_usable(chk, "admin_listen")) {
        /* Blame the key the file set; with both defaulted this cannot happen. */
        const char *at = sl_cfg_check_in_file(chk, "admin_listen") ? "admin_listen" : "listen";
        for (size_t i = 0; i < c->n_listen; i++) {
            if (!sl_cfg_addr_overlaps(&c->admin_listen, &c->listen[i]))
                continue;
            struct sl_buf admin, pub;
            sl_buf_init(&admin);
            sl_buf_init(&pub);
            sl_config_addr_format(&c->admin_listen, &admin);
            sl_config_addr_format(&c->listen[i], &pub);
            sl_cfg_check_error(chk, at,
                               "admin_listen %s uses the same port as listen address %s; keep "
                               "the admin endpoints off the public listeners (e.g. on "
                               "127.0.0.1:9090)",
                               admin.base ? admin.base : "", pub.base ? pub.base : "");
            sl_buf_dispose(&admin);
            sl_buf_dispose(&pub);
            break;
        }
    }
    if (sl_cfg_check_usable(chk, "admin_listen") && sl_cfg_check_usable(chk, "admin_token") &&
        c->admin_token == NULL && !addr_is_loopback(&c->admin_listen)) {
        struct sl_buf admin;
        sl_buf_init(&admin);
        sl_config_addr_format(&c->admin_listen, &admin);
        sl_cfg_check_error(chk, "admin_listen",
                           "admin_listen %s is not a loopback address: set admin_token (e.g. "
                           "admin_token: ${SLUICE_ADMIN_TOKEN}), which every admin request "
                           "must then carry, or listen on 127.0.0.1",
                           admin.base ? admin.base : "");
        sl_buf_dispose(&admin);
    }
    sl_cfg_gateway_finish(c, chk);
    sl_cfg_sim_check_listeners(c, chk);
    if (c->workers == 0) {
        unsigned n = uv_available_parallelism();
        c->workers = n == 0 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
    }
}

static void dispose(void *obj)
{
    sl_cfg_gateway_dispose(obj);
}

const struct sl_cfg_schema sl_config_schema = {
    .fields = fields,
    .n_fields = SL_ARRAY_LEN(fields),
    .sections = sections,
    .n_sections = SL_ARRAY_LEN(sections),
    .size = sizeof(struct sl_config),
    .finish = finish,
    .dispose = dispose,
};
