/*
 * The gateway's sections: `backends` (where requests go), `routes` (what
 * clients call, mapped to a backend) and `clients` (who may call, by hashed
 * key). The schemas of one entry of each, the checks on single values
 * (URLs, names that end up in URL paths, hashed keys, CA files), and the
 * checks and derived values that need several lists at once: each route's
 * backend, keys shared between clients, and the route index that
 * sl_config_find_route searches. The top-level rows (backends, routes,
 * clients, backend_header) are in schema.c's table, which points here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/schema.h"

_Static_assert(sizeof(enum sl_backend_type) == sizeof(int), "enum fields are stored as int");

#define SECONDS 1000ull
#define MINUTES (60 * SECONDS)
#define HOURS (60 * MINUTES)
#define MAX_NAME 64
#define MAX_ROUTE_NAME 128
#define MAX_KEYS 16
/* A CA bundle is a few hundred KiB; anything much bigger is not one. */
#define MAX_CA_FILE_BYTES (16u << 20)
#define HASH_PREFIX "sha256:"
#define HASH_PREFIX_LEN (sizeof(HASH_PREFIX) - 1)

const char sl_cfg_gateway_doc[] =
    "What the gateway does with a request. Three lists work together:\n"
    "\n"
    "- **`clients`** are the applications allowed to call sluice. Each has keys of its own, "
    "which it sends as an `api-key` header or as `Authorization: Bearer KEY`, exactly as it "
    "would to Azure OpenAI or OpenAI. The file holds only the keys' SHA-256 hashes "
    "(`sluice hash-key` prints one), so that reading it reveals no key. A request whose key "
    "is not one of them is answered 401.\n"
    "- **`backends`** are the model deployments sluice forwards requests to: a deployment of "
    "an Azure OpenAI resource, or a model of an OpenAI-compatible server. sluice "
    "authenticates to each with the backend's own `api_key`. The client's key is removed "
    "from the request, so backends never see it, and a backend's key is never shown to "
    "clients nor written to the logs.\n"
    "- **`routes`** map the name a client asks for (the deployment in an Azure path, or "
    "`model` in the body of an OpenAI-style request) to the backend that serves it. A name "
    "without a route is answered 404 `DeploymentNotFound`.\n"
    "\n"
    "For example, to serve `gpt-4o` from one Azure OpenAI deployment to one application:\n"
    "\n"
    "```yaml\n"
    "backends:\n"
    "  - name: eastus-gpt-4o\n"
    "    url: https://my-resource.openai.azure.com\n"
    "    api_key: ${AOAI_EASTUS_KEY}\n"
    "    model: gpt-4o\n"
    "    version: \"2024-08-06\"\n"
    "routes:\n"
    "  - name: gpt-4o\n"
    "    backend: eastus-gpt-4o\n"
    "clients:\n"
    "  - name: billing-app\n"
    "    keys: [\"sha256:<64 hex digits from sluice hash-key>\"]\n"
    "```\n"
    "\n"
    "`examples/sluice.yaml` has a gateway section in front of the simulated endpoints.";

static const struct sl_cfg_choice backend_types[] = {
    {"azure", SL_BACKEND_AZURE},
    {"openai", SL_BACKEND_OPENAI},
    {NULL, 0},
};

/* ---- one backend ---- */

static const struct sl_cfg_field backend_fields[] = {
    {
        .name = "name",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Name of the backend in `routes`, in logs and in the `x-sluice-backend` "
               "response header: letters, digits, `.`, `_` and `-`. Unique among the backends.",
        SL_CFG_MEMBER(struct sl_config_backend, name),
        .check = sl_cfg_check_name,
    },
    {
        .name = "url",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = 2048,
        .doc = "Base URL of the backend. For `type: azure`, the resource's endpoint, "
               "`https://NAME.openai.azure.com`; for `type: openai`, the API's base with its "
               "version, e.g. `https://api.openai.com/v1` or `http://10.0.0.5:8000/v1`. "
               "`http://` or `https://`, without query, fragment, user or password; a "
               "trailing `/` is dropped.",
        SL_CFG_MEMBER(struct sl_config_backend, url),
        .check = sl_cfg_check_url,
    },
    {
        .name = "type",
        .type = SL_CFG_ENUM,
        .def = "azure",
        SL_CFG_UNBOUNDED,
        .doc = "`azure`: an Azure OpenAI resource, called with Azure's paths and its key in "
               "the `api-key` header. `openai`: an OpenAI-compatible server (OpenAI itself, or "
               "a model server of your own), called with OpenAI's paths and its key as "
               "`Authorization: Bearer KEY`.",
        SL_CFG_MEMBER(struct sl_config_backend, type),
        .choices = backend_types,
    },
    {
        .name = "api_key",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 4096,
        .doc = "The key sluice sends to the backend: in the `api-key` header for `type: "
               "azure`, as `Authorization: Bearer KEY` for `type: openai`. Write it as "
               "`${NAME}` so that it comes from the environment, not the file. It replaces "
               "the client's key, and is never shown to clients nor written to logs. Not "
               "set: requests go to the backend without a key.",
        SL_CFG_MEMBER(struct sl_config_backend, api_key),
        .check = sl_cfg_check_api_key,
    },
    {
        .name = "region",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Azure region of the resource, e.g. `swedencentral`, for logs and metrics.",
        SL_CFG_MEMBER(struct sl_config_backend, region),
        .check = sl_cfg_check_text,
    },
    {
        .name = "model",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_ROUTE_NAME,
        .doc = "The model the deployment runs, e.g. `gpt-4o`, for logs and metrics. Requests "
               "are sent to `deployment`, whatever this says.",
        SL_CFG_MEMBER(struct sl_config_backend, model),
        .check = sl_cfg_check_text,
    },
    {
        .name = "version",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Version of the model, e.g. `2024-08-06`. Quote it in YAML when it looks "
               "like a number.",
        SL_CFG_MEMBER(struct sl_config_backend, version),
        .check = sl_cfg_check_text,
    },
    {
        .name = "deployment",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_ROUTE_NAME,
        .doc = "The name the backend knows the model by: the deployment in Azure paths "
               "(`type: azure`; letters, digits, `.`, `_` and `-`), or the `model` sent to an "
               "OpenAI-compatible server. Not set: the `name` of the route being served.",
        SL_CFG_MEMBER(struct sl_config_backend, deployment),
        .check = sl_cfg_check_text,
    },
    {
        .name = "connect_timeout",
        .type = SL_CFG_DURATION,
        .def = "5s",
        .min = 1,
        .max = 10 * MINUTES,
        .doc = "Time to connect to the backend, TLS handshake included. When it runs out the "
               "client gets an error naming the backend.",
        SL_CFG_MEMBER(struct sl_config_backend, connect_timeout_ms),
    },
    {
        .name = "first_byte_timeout",
        .type = SL_CFG_DURATION,
        .def = "60s",
        .min = 1,
        .max = HOURS,
        .doc = "Time from sending a request to receiving the response head. Models can be "
               "slow to start, and a request that is not streamed gets its head only once "
               "the whole answer is written: raise it for long answers and reasoning models.",
        SL_CFG_MEMBER(struct sl_config_backend, first_byte_timeout_ms),
    },
    {
        .name = "idle_timeout",
        .type = SL_CFG_DURATION,
        .def = "60s",
        .min = 1,
        .max = HOURS,
        .doc = "Longest wait for the next bytes of a response body, e.g. between two events "
               "of a stream. A response that stalls longer is cut off, and the client sees "
               "an error, not a shortened answer.",
        SL_CFG_MEMBER(struct sl_config_backend, idle_timeout_ms),
    },
    {
        .name = "total_timeout",
        .type = SL_CFG_DURATION,
        .def = "10m",
        .min = 0,
        .max = 24 * HOURS,
        .doc = "Longest time one request may take from start to end, streaming included. "
               "`0`: no limit.",
        SL_CFG_MEMBER(struct sl_config_backend, total_timeout_ms),
    },
    {
        .name = "ca_file",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 4096,
        .doc = "PEM file of the certificate authorities to trust for this backend, instead of "
               "the system's. It is read when the configuration is loaded and must hold a "
               "certificate then. A relative path is from sluice's working directory.",
        SL_CFG_MEMBER(struct sl_config_backend, ca_file),
        .check = sl_cfg_check_ca_file,
    },
    {
        .name = "insecure",
        .type = SL_CFG_BOOL,
        .def = "false",
        SL_CFG_UNBOUNDED,
        .doc = "Skip the verification of the backend's TLS certificate. For testing only: "
               "anyone on the way could read and change the traffic, the backend's key "
               "included. sluice logs a warning at start-up for every backend with it.",
        SL_CFG_MEMBER(struct sl_config_backend, insecure),
    },
    {
        .name = "http2",
        .type = SL_CFG_BOOL,
        .def = "true",
        SL_CFG_UNBOUNDED,
        .doc = "Offer HTTP/2 when connecting over TLS; the backend chooses. `http://` URLs "
               "always use HTTP/1.1.",
        SL_CFG_MEMBER(struct sl_config_backend, http2),
    },
    {
        .name = "geography",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "The data-residency area the backend is in, e.g. `eu` or `us`: a route or "
               "client bound to `geographies` is only ever served by backends in one of them, "
               "on failover and retries too. Not set: the backend serves no bound route.",
        SL_CFG_MEMBER(struct sl_config_backend, geography),
        .check = sl_cfg_check_name,
    },
    {
        .name = "failure_threshold",
        .type = SL_CFG_INT,
        .def = "5",
        .min = 1,
        .max = 1000,
        .doc = "Consecutive failures (a 500, 502, 503 or 504, a connection failure, a timeout) "
               "after which the backend's circuit opens: no request is sent to it for "
               "`open_time`, then one trial request decides whether it serves again.",
        SL_CFG_MEMBER(struct sl_config_backend, failure_threshold),
    },
    {
        .name = "open_time",
        .type = SL_CFG_DURATION,
        .def = "5s",
        .min = 10,
        .max = HOURS,
        .doc = "How long the circuit stays open after `failure_threshold` failures. Each failed "
               "trial doubles it, up to `max_open_time`; a successful one closes the circuit "
               "and starts again from this.",
        SL_CFG_MEMBER(struct sl_config_backend, open_time_ms),
    },
    {
        .name = "max_open_time",
        .type = SL_CFG_DURATION,
        .def = "5m",
        .min = 10,
        .max = 24 * HOURS,
        .doc = "The longest the circuit stays open after failures, however often the trial "
               "requests fail.",
        SL_CFG_MEMBER(struct sl_config_backend, max_open_time_ms),
    },
    {
        .name = "throttle_time",
        .type = SL_CFG_DURATION,
        .def = "10s",
        .min = 1,
        .max = HOURS,
        .doc = "How long a 429 keeps requests away from the backend when it says nothing about "
               "when to come back. Otherwise its `retry-after-ms`, `Retry-After` or "
               "`x-ratelimit-reset-*` header decides, exactly.",
        SL_CFG_MEMBER(struct sl_config_backend, throttle_time_ms),
    },
    {
        .name = "max_retry_after",
        .type = SL_CFG_DURATION,
        .def = "5m",
        .min = 1,
        .max = 24 * HOURS,
        .doc = "A 429 asking for a longer pause than this is taken as asking for this long "
               "(and logged): a wrong header must not take a backend out for a day.",
        SL_CFG_MEMBER(struct sl_config_backend, max_retry_after_ms),
    },
};

/* In a (checked) URL, where a path segment "/openai" starts; NULL if none. */
static const char *azure_api_path(const char *url)
{
    struct sl_str s = sl_str_from_cstr(url);
    const char *p = strchr(url + sl_cfg_url_authority(s), '/');
    for (; p; p = strchr(p + 1, '/'))
        if (strncmp(p, "/openai", 7) == 0 && (p[7] == '/' || p[7] == '\0'))
            return p;
    return NULL;
}

static void backend_finish(void *obj, struct sl_cfg_check *chk)
{
    const struct sl_config_backend *b = obj;
    /* An Azure deployment is a URL path segment; an OpenAI model name is a
     * body field and may hold '/' ("meta-llama/Llama-3.1-8B-Instruct"). */
    if (b->type == SL_BACKEND_AZURE && b->deployment &&
        !sl_cfg_name_ok(sl_str_from_cstr(b->deployment)) && sl_cfg_check_usable(chk, "type"))
        sl_cfg_check_error(chk, "deployment",
                           "an Azure deployment name is letters, digits, \".\", \"_\" and \"-\" "
                           "only, and neither \".\" alone nor \"..\" (it goes into URL paths), "
                           "got \"%s\"",
                           b->deployment);
    if (b->open_time_ms > b->max_open_time_ms && sl_cfg_check_usable(chk, "open_time") &&
        sl_cfg_check_usable(chk, "max_open_time"))
        sl_cfg_check_error(
            chk, sl_cfg_check_in_file(chk, "open_time") ? "open_time" : "max_open_time",
            "open_time (%llu ms) is longer than max_open_time (%llu ms)",
            (unsigned long long)b->open_time_ms, (unsigned long long)b->max_open_time_ms);
    /* The most common paste: a whole request URL where the endpoint belongs. */
    const char *cut = b->url ? azure_api_path(b->url) : NULL;
    if (b->type == SL_BACKEND_AZURE && cut && sl_cfg_check_usable(chk, "type")) {
        sl_cfg_check_error(chk, "url",
                           "for type azure, url is the resource's endpoint, like "
                           "https://NAME.openai.azure.com: sluice adds \"/openai/...\" itself "
                           "(did you mean \"%.*s\"?)",
                           (int)(cut - b->url), b->url);
    }
}

const struct sl_cfg_schema sl_cfg_backend_schema = {
    .fields = backend_fields,
    .n_fields = SL_ARRAY_LEN(backend_fields),
    .size = sizeof(struct sl_config_backend),
    .unique = "name",
    .finish = backend_finish,
    .doc = "A backend is one model deployment on one endpoint: a deployment of an Azure "
           "OpenAI resource, or a model of an OpenAI-compatible server. Requests reach it "
           "through the `routes` that name it. Its timeouts bound each request sent to it.",
};

/* ---- one route ---- */

static const struct sl_cfg_field pool_member_fields[] = {
    {
        .name = "backend",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "The `name` of a backend. A backend appears once per pool.",
        SL_CFG_MEMBER(struct sl_config_pool_member, backend),
    },
    {
        .name = "priority",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 0,
        .max = 1000,
        .doc = "The member's group: requests go to the group with the lowest number that has "
               "a backend available, and spill over to the next group only while none is "
               "(e.g. PTU at 1, pay-as-you-go at 2).",
        SL_CFG_MEMBER(struct sl_config_pool_member, priority),
    },
    {
        .name = "weight",
        .type = SL_CFG_INT,
        .def = "1",
        .min = 1,
        .max = 1000,
        .doc = "The member's share of its group's requests, against the others' weights "
               "(90 and 10 send 90 % and 10 %), spread evenly by smooth weighted round robin.",
        SL_CFG_MEMBER(struct sl_config_pool_member, weight),
    },
};

static const struct sl_cfg_schema pool_member_schema = {
    .fields = pool_member_fields,
    .n_fields = SL_ARRAY_LEN(pool_member_fields),
    .size = sizeof(struct sl_config_pool_member),
    .unique = "backend",
    .doc = "One backend of a route's pool.",
};

static const struct sl_cfg_field route_fields[] = {
    {
        .name = "name",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_ROUTE_NAME,
        .doc = "The name clients call: the deployment in Azure paths "
               "(`/openai/deployments/{name}/...`), or `model` in the body on OpenAI-style "
               "paths. Letters, digits, `.`, `_` and `-`, but not `.` alone nor `..` "
               "anywhere; case-sensitive. Unique among the routes.",
        SL_CFG_MEMBER(struct sl_config_route, name),
        .check = sl_cfg_check_route_name,
    },
    {
        .name = "backend",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "The `name` of the one backend that serves the route: short for `backends: "
               "[{backend: NAME}]`. Give either this or `backends`.",
        SL_CFG_MEMBER(struct sl_config_route, backend),
    },
    {
        .name = "backends",
        .type = SL_CFG_OBJECT_LIST,
        .min = 1,
        .max = 64,
        .doc = "The pool of backends that serve the route, each with a `priority` group and a "
               "`weight` (see below). A backend that is throttled or failing is skipped until "
               "it recovers. Give either this or `backend`.",
        SL_CFG_MEMBER(struct sl_config_route, pool),
        SL_CFG_COUNT(struct sl_config_route, n_pool),
        .sub = &pool_member_schema,
    },
    {
        .name = "allow_mixed_versions",
        .type = SL_CFG_BOOL,
        .def = "false",
        SL_CFG_UNBOUNDED,
        .doc = "Let the pool mix backends whose `model` or `version` differ: a deliberate "
               "roll-out (a weighted canary of a new model version). Otherwise the "
               "configuration is refused, because clients of one name would get answers from "
               "different models.",
        SL_CFG_MEMBER(struct sl_config_route, allow_mixed_versions),
    },
    {
        .name = "max_attempts",
        .type = SL_CFG_INT,
        .def = "3",
        .min = 1,
        .max = 10,
        .doc = "Backends tried for one request, the first included. A request is retried on "
               "another backend of the pool (never the one that just failed) after a 429, "
               "500, 502, 503 or 504, a connection failure or a timeout, as long as nothing "
               "was sent to the client yet. `1`: never retry.",
        SL_CFG_MEMBER(struct sl_config_route, max_attempts),
    },
    {
        .name = "retry_budget",
        .type = SL_CFG_RATIO,
        .def = "20%",
        .min = 0,
        .max = 1000000,
        .doc = "Retries allowed as a share of the route's requests over the last 10 seconds "
               "(at least 100 per 10 seconds), so that an outage does not multiply the load on "
               "the backends that are left.",
        SL_CFG_MEMBER(struct sl_config_route, retry_budget_ppm),
    },
    {
        .name = "geographies",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 16,
        .doc = "Data residency: the route is only ever served by backends whose `geography` "
               "is one of these, on failover, retries and spill-over too. When none of them "
               "is available the client gets 429 or 503 saying so. Not set: any backend.",
        SL_CFG_MEMBER(struct sl_config_route, geographies),
        SL_CFG_COUNT(struct sl_config_route, n_geographies),
        .check = sl_cfg_check_name,
    },
    {
        .name = "region_header",
        .type = SL_CFG_BOOL,
        .def = "false",
        SL_CFG_UNBOUNDED,
        .doc = "Let clients declare their region in an `x-sluice-region` header (e.g. "
               "`westeurope`), overriding the client's `region`: within a priority group, a "
               "backend in that region is preferred while it is available.",
        SL_CFG_MEMBER(struct sl_config_route, region_header),
    },
    {
        .name = "prefer_low_latency",
        .type = SL_CFG_BOOL,
        .def = "false",
        SL_CFG_UNBOUNDED,
        .doc = "Within a priority group (and after the client's region), send each request to "
               "the backend with the lowest recent time to first byte instead of by weight. "
               "Never overrides priority groups, geographies or pinning.",
        SL_CFG_MEMBER(struct sl_config_route, prefer_low_latency),
    },
    {
        .name = "api_version",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "The `api-version` sent to the backend, e.g. `2024-10-21`, replacing the "
               "client's: one version upstream, whatever the clients ask for. Not set: the "
               "client's passes through.",
        SL_CFG_MEMBER(struct sl_config_route, api_version),
        .check = sl_cfg_check_api_version,
    },
    {
        .name = "log_payloads",
        .type = SL_CFG_BOOL,
        .def = "false",
        SL_CFG_UNBOUNDED,
        .doc = "For debugging only: log the bodies of this route's requests and responses "
               "(at `debug` level). They hold prompts and completions, which sluice otherwise "
               "never logs; it logs a warning at start-up while this is on. Do not leave it "
               "on in production.",
        SL_CFG_MEMBER(struct sl_config_route, log_payloads),
    },
    CAPS_FIELDS(struct sl_config_route),
};

/* Exactly one of `backend` and `backends`; the shorthand becomes a pool of one. */
static void route_finish(void *obj, struct sl_cfg_check *chk)
{
    struct sl_config_route *r = obj;
    bool one = sl_cfg_check_in_file(chk, "backend"), pool = sl_cfg_check_in_file(chk, "backends");
    if (one && pool) {
        sl_cfg_check_error(chk, "backends",
                           "give either `backend` (one backend) or `backends` (a pool), not both");
        return;
    }
    if (!one && !pool) {
        sl_cfg_check_error(chk, "backend",
                           "a route needs `backend: NAME` or a pool under `backends:`");
        return;
    }
    if (!one || r->backend == NULL)
        return;
    r->pool = calloc(1, sizeof(*r->pool));
    char *name = strdup(r->backend);
    if (r->pool == NULL || name == NULL) {
        free(name);
        sl_cfg_check_nomem(chk);
        return;
    }
    r->pool[0] = (struct sl_config_pool_member){.backend = name, .priority = 1, .weight = 1};
    r->n_pool = 1;
}

const struct sl_cfg_schema sl_cfg_route_schema = {
    .fields = route_fields,
    .n_fields = SL_ARRAY_LEN(route_fields),
    .size = sizeof(struct sl_config_route),
    .unique = "name",
    .finish = route_finish,
    .doc = "A route gives a pool of backends a name that clients call. On Azure paths the "
           "deployment in the path picks the route, whatever `model` the body names; on "
           "OpenAI-style paths (`/v1/...`, `/openai/v1/...`) `model` in the body does. Each "
           "request goes to a backend of the pool, under the backend's `deployment` name when "
           "it has one: docs/routing.md explains the choice, failover and retries.",
};

/* ---- checks across lists ---- */

/* Why `name` names no backend, for a message: a near name, or the list. */
static void no_backend_hint(const struct sl_config *c, const char **names, const char *name,
                            struct sl_buf *hint)
{
    hint->len = 0;
    const char *near = sl_cfg_suggest(sl_str_from_cstr(name), names, c->n_backends);
    if (near) {
        sl_buf_appendf(hint, " (did you mean \"%s\"?)", near);
    } else if (c->n_backends == 0) {
        sl_buf_appendf(hint, "; there are no backends: declare it under \"backends:\"");
    } else {
        sl_buf_appendf(hint, "; the backends are ");
        for (size_t k = 0; k < c->n_backends && k < 10; k++)
            sl_buf_appendf(hint, "%s%s", k ? ", " : "", names[k]);
        if (c->n_backends > 10)
            sl_buf_appendf(hint, " and %zu more", c->n_backends - 10);
    }
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* A pool serves one model: every member runs the first one's model and version, unless the
 * route says it is a deliberate mixed roll-out. */
static void check_versions(const struct sl_config *c, size_t i, struct sl_cfg_check *chk)
{
    const struct sl_config_route *r = &c->routes[i];
    if (r->allow_mixed_versions || r->n_pool < 2)
        return;
    const struct sl_config_backend *first = &c->backends[r->pool[0].backend_index];
    for (size_t m = 1; m < r->n_pool; m++) {
        const struct sl_config_backend *b = &c->backends[r->pool[m].backend_index];
        if (same_text(first->model, b->model) && same_text(first->version, b->version))
            continue;
        sl_cfg_check_error_in(chk, "routes", i, "backends",
                              "route \"%s\" mixes models: backend \"%s\" runs %s version %s "
                              "but backend \"%s\" runs %s version %s; a pool serves one model "
                              "and version (set allow_mixed_versions: true for a deliberate "
                              "roll-out)",
                              r->name, first->name, first->model,
                              first->version ? first->version : "(not set)", b->name, b->model,
                              b->version ? b->version : "(not set)");
        return;
    }
}

static bool in_list(const char *s, char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* A route bound to geographies needs a backend in one of them. */
static void check_geographies(const struct sl_config *c, size_t i, struct sl_cfg_check *chk)
{
    const struct sl_config_route *r = &c->routes[i];
    if (r->n_geographies == 0)
        return;
    for (size_t m = 0; m < r->n_pool; m++)
        if (in_list(c->backends[r->pool[m].backend_index].geography, r->geographies,
                    r->n_geographies))
            return;
    struct sl_buf list;
    sl_buf_init(&list);
    for (size_t g = 0; g < r->n_geographies; g++)
        sl_buf_appendf(&list, "%s%s", g ? ", " : "", r->geographies[g]);
    sl_cfg_check_error_in(chk, "routes", i, "geographies",
                          "route \"%s\" is bound to geographies (%s) its pool has no backend "
                          "in: give a backend of the pool a matching `geography`, or add one "
                          "that has it",
                          r->name, list.base ? list.base : "");
    sl_buf_dispose(&list);
}

/* Lower priority first; members of a group keep their order in the file. */
static void sort_pool(struct sl_config_route *r)
{
    for (size_t i = 1; i < r->n_pool; i++) {
        struct sl_config_pool_member m = r->pool[i];
        size_t j = i;
        for (; j > 0 && r->pool[j - 1].priority > m.priority; j--)
            r->pool[j] = r->pool[j - 1];
        r->pool[j] = m;
    }
}

/* Each pool member's backend must exist (resolves backend_index); then the checks that need
 * the backends: one model per pool, geographies. */
static void resolve_routes(struct sl_config *c, struct sl_cfg_check *chk)
{
    const char **names = NULL;
    struct sl_buf hint;
    sl_buf_init(&hint);
    if (!sl_cfg_check_usable(chk, "routes") || !sl_cfg_check_usable(chk, "backends"))
        goto out;
    if (c->n_backends) {
        names = calloc(c->n_backends, sizeof(*names));
        if (names == NULL) {
            sl_cfg_check_nomem(chk);
            goto out;
        }
    }
    for (size_t i = 0; i < c->n_backends; i++)
        names[i] = c->backends[i].name;
    for (size_t i = 0; i < c->n_routes; i++) {
        struct sl_config_route *r = &c->routes[i];
        bool resolved = true;
        for (size_t m = 0; m < r->n_pool; m++) {
            struct sl_config_pool_member *pm = &r->pool[m];
            size_t b = 0;
            while (b < c->n_backends && strcmp(names[b], pm->backend) != 0)
                b++;
            pm->backend_index = b;
            if (b < c->n_backends)
                continue;
            resolved = false;
            no_backend_hint(c, names, pm->backend, &hint);
            if (r->backend)
                sl_cfg_check_error_in(chk, "routes", i, "backend",
                                      "route \"%s\": no backend \"%s\"%s", r->name, pm->backend,
                                      hint.base ? hint.base : "");
            else
                sl_cfg_check_error_in(chk, "routes", i, "backends",
                                      "route \"%s\": backends[%zu]: no backend \"%s\"%s", r->name,
                                      m, pm->backend, hint.base ? hint.base : "");
        }
        if (!resolved)
            continue;
        check_versions(c, i, chk);
        check_geographies(c, i, chk);
        sort_pool(r);
    }
out:
    free(names);
    sl_buf_dispose(&hint);
}

static int compare_routes(const void *a, const void *b)
{
    const struct sl_config_route *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The index sl_config_find_route searches: routes by name. */
static void index_routes(struct sl_config *c, struct sl_cfg_check *chk)
{
    const struct sl_config_route **sorted = NULL;
    if (c->n_routes == 0 || !sl_cfg_check_usable(chk, "routes"))
        return;
    sorted = calloc(c->n_routes, sizeof(*sorted));
    c->route_order = calloc(c->n_routes, sizeof(*c->route_order));
    if (sorted == NULL || c->route_order == NULL) {
        sl_cfg_check_nomem(chk);
        goto out;
    }
    for (size_t i = 0; i < c->n_routes; i++)
        sorted[i] = &c->routes[i];
    qsort(sorted, c->n_routes, sizeof(*sorted), compare_routes);
    for (size_t i = 0; i < c->n_routes; i++)
        c->route_order[i] = (size_t)(sorted[i] - c->routes);
out:
    free(sorted);
}

void sl_cfg_gateway_finish(struct sl_config *c, struct sl_cfg_check *chk)
{
    resolve_routes(c, chk);
    index_routes(c, chk);
    sl_cfg_clients_finish(c, chk);
}

void sl_cfg_gateway_dispose(struct sl_config *c)
{
    free(c->route_order);
    c->route_order = NULL;
}
