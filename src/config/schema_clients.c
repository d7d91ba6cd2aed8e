/*
 * The clients' side of the gateway: `clients` (who may call, by hashed key or
 * JWT; what they may use and how much), `jwt_issuers` (whose tokens are
 * accepted) and `prices` (what tokens cost, for budgets and reports), with
 * the checks across lists that concern them.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "config/schema.h"

_Static_assert(sizeof(enum sl_client_priority) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_cap_mode) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_budget_window) == sizeof(int), "enum fields are stored as int");

#define SECONDS 1000ull
#define MINUTES (60 * SECONDS)
#define MAX_NAME 64
#define MAX_ROUTE_NAME 128
#define MAX_KEYS 16
#define HASH_PREFIX_LEN (sizeof("sha256:") - 1)

const struct sl_cfg_choice sl_cfg_cap_modes[] = {
    {"clamp", SL_CAP_CLAMP},
    {"reject", SL_CAP_REJECT},
    {NULL, 0},
};

static const struct sl_cfg_choice priorities[] = {
    {"high", SL_PRIORITY_HIGH},
    {"normal", SL_PRIORITY_NORMAL},
    {"low", SL_PRIORITY_LOW},
    {NULL, 0},
};

static const struct sl_cfg_choice budget_windows[] = {
    {"day", SL_BUDGET_DAY},
    {"week", SL_BUDGET_WEEK},
    {"month", SL_BUDGET_MONTH},
    {NULL, 0},
};

/* ---- a client's per-route limit and budget ---- */

static const struct sl_cfg_field route_limit_fields[] = {
    {
        .name = "route",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_ROUTE_NAME,
        .doc = "The `name` of a route.",
        SL_CFG_MEMBER(struct sl_config_route_limit, route),
    },
    {
        .name = "rpm",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 100000000,
        .doc = "Requests per minute on this route. `0`: no limit.",
        SL_CFG_MEMBER(struct sl_config_route_limit, rpm),
    },
    {
        .name = "tpm",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 100000000000ull,
        .doc = "Tokens per minute on this route. `0`: no limit.",
        SL_CFG_MEMBER(struct sl_config_route_limit, tpm),
    },
};

static const struct sl_cfg_schema route_limit_schema = {
    .fields = route_limit_fields,
    .n_fields = SL_ARRAY_LEN(route_limit_fields),
    .size = sizeof(struct sl_config_route_limit),
    .unique = "route",
    .doc = "A client's limits on one route, on top of its overall `rpm` and `tpm`.",
};

static const struct sl_cfg_field budget_fields[] = {
    {
        .name = "window",
        .type = SL_CFG_ENUM,
        .required = true,
        SL_CFG_UNBOUNDED,
        .doc = "The period the budget covers, in UTC: a calendar `day`, an ISO `week` (from "
               "Monday) or a calendar `month`. It starts again at the next one.",
        SL_CFG_MEMBER(struct sl_config_budget, window),
        .choices = budget_windows,
    },
    {
        .name = "tokens",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = UINT64_MAX / 2,
        .doc = "Tokens (input and output) the client may use in the window. `0`: no token "
               "budget.",
        SL_CFG_MEMBER(struct sl_config_budget, tokens),
    },
    {
        .name = "cost",
        .type = SL_CFG_MONEY,
        .def = "0",
        SL_CFG_UNBOUNDED,
        .doc = "USD the client may spend in the window, e.g. `250.00`, priced with `prices`. "
               "`0`: no money budget.",
        SL_CFG_MEMBER(struct sl_config_budget, cost),
    },
    {
        .name = "alert_at",
        .type = SL_CFG_RATIO,
        .def = "80%",
        .min = 1,
        .max = 1000000,
        .doc = "When this share of the budget is used, an alert is logged, counted in the "
               "metrics and sent to `alerts.webhook`: once per window.",
        SL_CFG_MEMBER(struct sl_config_budget, alert_ppm),
    },
};

static void budget_finish(void *obj, struct sl_cfg_check *chk)
{
    const struct sl_config_budget *b = obj;
    if (b->tokens == 0 && b->cost == 0 && sl_cfg_check_usable(chk, "tokens") &&
        sl_cfg_check_usable(chk, "cost"))
        sl_cfg_check_error(chk, "tokens", "a budget needs `tokens`, `cost` or both");
}

static const struct sl_cfg_schema budget_schema = {
    .fields = budget_fields,
    .n_fields = SL_ARRAY_LEN(budget_fields),
    .size = sizeof(struct sl_config_budget),
    .unique = NULL,
    .finish = budget_finish,
    .doc = "What a client may use in a window. At 100 % its requests are answered 429 with a "
           "message naming the budget and when it starts again (docs/clients.md). Budgets need "
           "the usage ledger (`usage.db`), which keeps them across restarts.",
};

/* ---- one client ---- */

static const struct sl_cfg_field client_fields[] = {
    {
        .name = "name",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Name of the client in logs and metrics: letters, digits, `.`, `_` and `-`. "
               "Unique among the clients.",
        SL_CFG_MEMBER(struct sl_config_client, name),
        .check = sl_cfg_check_name,
    },
    {
        .name = "team",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "The team the client belongs to, for usage reports.",
        SL_CFG_MEMBER(struct sl_config_client, team),
        .check = sl_cfg_check_name,
    },
    {
        .name = "tags",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 32,
        .doc = "Labels for usage reports, e.g. `[prod, cost-center-42]`.",
        SL_CFG_MEMBER(struct sl_config_client, tags),
        SL_CFG_COUNT(struct sl_config_client, n_tags),
        .check = sl_cfg_check_name,
    },
    {
        .name = "keys",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = MAX_KEYS,
        .doc = "Hashes of the client's keys, each `sha256:` and 64 lowercase hex digits, as "
               "`sluice hash-key` prints them; never the keys themselves. Several keys let "
               "one be replaced without downtime: add the new one, move the application to "
               "it, remove the old one. A key belongs to one client only. A client has keys, "
               "`jwt_ids`, or both.",
        SL_CFG_MEMBER(struct sl_config_client, keys),
        SL_CFG_COUNT(struct sl_config_client, n_keys),
        .check = sl_cfg_check_hashed_key,
    },
    {
        .name = "jwt_issuer",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "The `name` of the `jwt_issuers` entry whose tokens identify this client.",
        SL_CFG_MEMBER(struct sl_config_client, jwt_issuer),
    },
    {
        .name = "jwt_ids",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 64,
        .doc = "Values of the issuer's `claim` that name this client, e.g. the application "
               "(client) ids of its Entra ID app registrations. A token from `jwt_issuer` whose "
               "claim is one of them is this client.",
        SL_CFG_MEMBER(struct sl_config_client, jwt_ids),
        SL_CFG_COUNT(struct sl_config_client, n_jwt_ids),
        .check = sl_cfg_check_text,
    },
    {
        .name = "routes",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 1024,
        .doc = "The routes (models) the client may use; any other is answered 403. Not given: "
               "every route.",
        SL_CFG_MEMBER(struct sl_config_client, routes),
        SL_CFG_COUNT(struct sl_config_client, n_routes),
    },
    {
        .name = "backends",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 1024,
        .doc = "The backends the client may be served by, e.g. only the pay-as-you-go ones so "
               "that a batch client never takes provisioned (PTU) capacity. Not given: any "
               "backend of the route.",
        SL_CFG_MEMBER(struct sl_config_client, backends),
        SL_CFG_COUNT(struct sl_config_client, n_backends),
    },
    {
        .name = "priority",
        .type = SL_CFG_ENUM,
        .def = "normal",
        SL_CFG_UNBOUNDED,
        .doc = "When every backend of a route is throttled, requests wait in a queue (see "
               "`queue`) and are sent as capacity returns: `high` first, then `normal`, then "
               "`low`.",
        SL_CFG_MEMBER(struct sl_config_client, priority),
        .choices = priorities,
    },
    {
        .name = "rpm",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 100000000,
        .doc = "Requests per minute the client may send, over all routes (a sliding minute). "
               "More are answered 429 with `retry-after-ms`, `Retry-After` and "
               "`x-ratelimit-remaining-requests`. `0`: no limit.",
        SL_CFG_MEMBER(struct sl_config_client, rpm),
    },
    {
        .name = "tpm",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 100000000000ull,
        .doc = "Tokens per minute the client may use, over all routes. A request is admitted "
               "on an estimate (its prompt, plus its `max_tokens`), corrected by the usage the "
               "backend reports. `0`: no limit.",
        SL_CFG_MEMBER(struct sl_config_client, tpm),
    },
    {
        .name = "route_limits",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 1024,
        .doc = "Limits per route, on top of `rpm` and `tpm` (see below).",
        SL_CFG_MEMBER(struct sl_config_client, route_limits),
        SL_CFG_COUNT(struct sl_config_client, n_route_limits),
        .sub = &route_limit_schema,
    },
    {
        .name = "budgets",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = 8,
        .doc = "Token and money budgets per day, week or month (see below).",
        SL_CFG_MEMBER(struct sl_config_client, budgets),
        SL_CFG_COUNT(struct sl_config_client, n_budgets),
        .sub = &budget_schema,
    },
    {
        .name = "region",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Where the client runs, as a backend `region` (e.g. `westeurope`): within a "
               "priority group, a backend in the same region serves it while one is available "
               "(nearest first).",
        SL_CFG_MEMBER(struct sl_config_client, region),
        .check = sl_cfg_check_text,
    },
    {
        .name = "geographies",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 16,
        .doc = "Data residency: the client's requests are only ever served by backends whose "
               "`geography` is one of these, whatever route they call, on failover and "
               "retries too. When the route also has `geographies`, a backend must be in both.",
        SL_CFG_MEMBER(struct sl_config_client, geographies),
        SL_CFG_COUNT(struct sl_config_client, n_geographies),
        .check = sl_cfg_check_name,
    },
    CAPS_FIELDS(struct sl_config_client),
};

static void client_finish(void *obj, struct sl_cfg_check *chk)
{
    struct sl_config_client *cl = obj;
    if (cl->n_keys == 0 && cl->n_jwt_ids == 0 && sl_cfg_check_usable(chk, "keys") &&
        sl_cfg_check_usable(chk, "jwt_ids"))
        sl_cfg_check_error(chk, "keys",
                           "a client needs `keys` (hashed API keys) or `jwt_issuer` and "
                           "`jwt_ids` (JWT identities), or both");
    if ((cl->jwt_issuer == NULL) != (cl->n_jwt_ids == 0) && sl_cfg_check_usable(chk, "jwt_ids") &&
        sl_cfg_check_usable(chk, "jwt_issuer"))
        sl_cfg_check_error(chk, cl->jwt_issuer ? "jwt_issuer" : "jwt_ids",
                           "`jwt_issuer` and `jwt_ids` go together: the issuer whose tokens "
                           "identify the client, and the claim values that name it");
    if (cl->n_keys == 0 || !sl_cfg_check_usable(chk, "keys"))
        return;
    cl->key_hashes = calloc(cl->n_keys, sizeof(*cl->key_hashes));
    if (cl->key_hashes == NULL) {
        sl_cfg_check_nomem(chk);
        return;
    }
    for (size_t k = 0; k < cl->n_keys; k++) {
        const char *hex = cl->keys[k] + HASH_PREFIX_LEN; /* checked: 64 lowercase hex */
        for (size_t i = 0; i < 32; i++)
            cl->key_hashes[k][i] = (unsigned char)(sl_cfg_hex_value(hex[2 * i]) << 4 |
                                                   sl_cfg_hex_value(hex[2 * i + 1]));
    }
}

static void client_dispose(void *obj)
{
    struct sl_config_client *cl = obj;
    free(cl->key_hashes);
    cl->key_hashes = NULL;
    free(cl->route_grants);
    cl->route_grants = NULL;
    free(cl->backend_allow);
    cl->backend_allow = NULL;
}

const struct sl_cfg_schema sl_cfg_client_schema = {
    .fields = client_fields,
    .n_fields = SL_ARRAY_LEN(client_fields),
    .size = sizeof(struct sl_config_client),
    .unique = "name",
    .finish = client_finish,
    .dispose = client_dispose,
    .doc = "A client is an application allowed to call the gateway. It sends one of its keys "
           "as `api-key: KEY` or as `Authorization: Bearer KEY`, the way the official SDKs "
           "do, or a JWT from one of the `jwt_issuers` as `Authorization: Bearer TOKEN`; "
           "sluice removes it before the request goes on. Make a key with a random generator "
           "(e.g. `openssl rand -hex 32`), give it to the application, and list its hash "
           "here. docs/clients.md explains grants, caps, limits, priorities and budgets.",
};

/* ---- one JWT issuer ---- */

static const struct sl_cfg_field jwt_issuer_fields[] = {
    {
        .name = "name",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "What clients' `jwt_issuer` names. Unique among the issuers.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, name),
        .check = sl_cfg_check_name,
    },
    {
        .name = "issuer",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = 1024,
        .doc = "The `iss` claim tokens must carry, exactly, e.g. "
               "`https://login.microsoftonline.com/TENANT_ID/v2.0`.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, issuer),
        .check = sl_cfg_check_text,
    },
    {
        .name = "audiences",
        .type = SL_CFG_STRING_LIST,
        .required = true,
        .min = 1,
        .max = 16,
        .doc = "Accepted `aud` values, e.g. `[api://sluice]`: a token must be meant for one of "
               "them.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, audiences),
        SL_CFG_COUNT(struct sl_config_jwt_issuer, n_audiences),
        .check = sl_cfg_check_text,
    },
    {
        .name = "jwks_file",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 4096,
        .doc = "A JSON Web Key Set file (the issuer's `jwks_uri` document, saved) with its RSA "
               "and EC P-256 signing keys; a token's `kid` picks the key. Give exactly one of "
               "`jwks_file`, `public_key_file` and `secret`. Reloading the configuration "
               "(SIGHUP) reads it again.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, jwks_file),
    },
    {
        .name = "public_key_file",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = 4096,
        .doc = "A PEM file with the issuer's public key (RSA for RS256, EC P-256 for ES256).",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, public_key_file),
    },
    {
        .name = "secret",
        .type = SL_CFG_STRING,
        .min = 32,
        .max = 4096,
        .doc = "The shared secret of HS256 tokens (at least 32 characters), as `${NAME}` so "
               "that it comes from the environment. Never logged.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, secret),
    },
    {
        .name = "algorithms",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = 3,
        .doc = "Accepted `alg` values among `RS256`, `ES256` and `HS256`. Not given: those the "
               "key can check. `none` is never accepted.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, algorithms),
        SL_CFG_COUNT(struct sl_config_jwt_issuer, n_algorithms),
    },
    {
        .name = "claim",
        .type = SL_CFG_STRING,
        .def = "azp",
        .min = 1,
        .max = MAX_NAME,
        .doc = "The claim whose value names the client (see clients' `jwt_ids`): `azp` or "
               "`appid` for the calling application in Entra ID tokens, `oid` for an identity, "
               "`sub` generally.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, claim),
        .check = sl_cfg_check_name,
    },
    {
        .name = "leeway",
        .type = SL_CFG_DURATION,
        .def = "60s",
        .min = 0,
        .max = 10 * MINUTES,
        .doc = "Clock difference allowed when checking `exp` and `nbf`.",
        SL_CFG_MEMBER(struct sl_config_jwt_issuer, leeway_ms),
    },
};

static bool is_algorithm(const char *a)
{
    return strcmp(a, "RS256") == 0 || strcmp(a, "ES256") == 0 || strcmp(a, "HS256") == 0;
}

static void jwt_issuer_finish(void *obj, struct sl_cfg_check *chk)
{
    const struct sl_config_jwt_issuer *j = obj;
    int ways = (j->jwks_file != NULL) + (j->public_key_file != NULL) + (j->secret != NULL);
    bool usable = sl_cfg_check_usable(chk, "jwks_file") &&
                  sl_cfg_check_usable(chk, "public_key_file") && sl_cfg_check_usable(chk, "secret");
    if (ways != 1 && usable)
        sl_cfg_check_error(chk,
                           j->secret            ? "secret"
                           : j->public_key_file ? "public_key_file"
                                                : "jwks_file",
                           "give exactly one of `jwks_file`, `public_key_file` and `secret` "
                           "(%d given)",
                           ways);
    /* Read the key file now, so that a missing or unusable key fails the load (and
     * check-config), not every request. */
    if (ways == 1 && usable && (j->jwks_file || j->public_key_file)) {
        struct sl_buf why;
        sl_buf_init(&why);
        int err = sl_auth_check_issuer(j, &why);
        if (err == SL_ENOMEM)
            sl_cfg_check_nomem(chk);
        else if (err != SL_OK)
            sl_cfg_check_error(chk, j->jwks_file ? "jwks_file" : "public_key_file", "%.*s",
                               (int)why.len, why.base ? why.base : "");
        sl_buf_dispose(&why);
    }
    for (size_t i = 0; i < j->n_algorithms; i++) {
        const char *a = j->algorithms[i];
        if (!is_algorithm(a))
            sl_cfg_check_error(
                chk, "algorithms",
                "\"%s\" is not an accepted algorithm: use RS256, ES256 or HS256%s", a,
                strcmp(a, "none") == 0 ? " (unsigned tokens are never accepted)" : "");
        else if ((strcmp(a, "HS256") == 0) != (j->secret != NULL) && ways == 1)
            sl_cfg_check_error(chk, "algorithms", "%s needs %s", a,
                               j->secret ? "a public key (jwks_file or public_key_file), not a "
                                           "secret"
                                         : "a `secret`, not a public key");
    }
}

const struct sl_cfg_schema sl_cfg_jwt_issuer_schema = {
    .fields = jwt_issuer_fields,
    .n_fields = SL_ARRAY_LEN(jwt_issuer_fields),
    .size = sizeof(struct sl_config_jwt_issuer),
    .unique = "name",
    .finish = jwt_issuer_finish,
    .doc = "An issuer of JWT bearer tokens (e.g. an Entra ID tenant) whose tokens identify "
           "clients. A token is accepted when its signature checks with the issuer's key, its "
           "`alg` is accepted (never `none`), `iss` and `aud` match, and `exp`/`nbf` allow "
           "it now; otherwise the request is answered 401 saying which check failed.",
};

/* ---- one price ---- */

static const struct sl_cfg_field price_fields[] = {
    {
        .name = "model",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_ROUTE_NAME,
        .doc = "A backend `model`, e.g. `gpt-4o`. Unique among the prices.",
        SL_CFG_MEMBER(struct sl_config_price, model),
        .check = sl_cfg_check_text,
    },
    {
        .name = "input",
        .type = SL_CFG_MONEY,
        .required = true,
        SL_CFG_UNBOUNDED,
        .doc = "USD per million input (prompt) tokens, e.g. `2.50`.",
        SL_CFG_MEMBER(struct sl_config_price, input),
    },
    {
        .name = "cached_input",
        .type = SL_CFG_MONEY,
        .def = "0",
        SL_CFG_UNBOUNDED,
        .doc = "USD per million cached input tokens. `0`: as `input`.",
        SL_CFG_MEMBER(struct sl_config_price, cached_input),
    },
    {
        .name = "output",
        .type = SL_CFG_MONEY,
        .required = true,
        SL_CFG_UNBOUNDED,
        .doc = "USD per million output (completion and reasoning) tokens.",
        SL_CFG_MEMBER(struct sl_config_price, output),
    },
};

static void price_finish(void *obj, struct sl_cfg_check *chk)
{
    struct sl_config_price *p = obj;
    if (p->cached_input == 0)
        p->cached_input = p->input;
}

const struct sl_cfg_schema sl_cfg_price_schema = {
    .fields = price_fields,
    .n_fields = SL_ARRAY_LEN(price_fields),
    .size = sizeof(struct sl_config_price),
    .unique = "model",
    .finish = price_finish,
    .doc = "What one model's tokens cost, for money budgets and usage reports.",
};

/* ---- checks across lists ---- */

/* Index of name in the n names of an array of structs whose first member is the name. */
static size_t find_named(const char *name, const void *items, size_t n, size_t size)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(*(char *const *)((const char *)items + i * size), name) == 0)
            return i;
    return n;
}

/* A bitmap over n items of the given names; reports unknown ones at element e of field. */
static uint64_t *bitmap_of(struct sl_cfg_check *chk, size_t ci, const char *field,
                           char *const *names, size_t n_names, const void *items, size_t n,
                           size_t size, const char *what)
{
    uint64_t *bits = calloc((n + 63) / 64 + 1, sizeof(*bits));
    if (bits == NULL) {
        sl_cfg_check_nomem(chk);
        return NULL;
    }
    for (size_t e = 0; e < n_names; e++) {
        size_t i = find_named(names[e], items, n, size);
        if (i < n)
            bits[i / 64] |= 1ull << (i % 64);
        else
            sl_cfg_check_error_in_elem(chk, "clients", ci, field, e, "no %s \"%s\"", what,
                                       names[e]);
    }
    return bits;
}

/* Names to indices: jwt_issuer, routes, backends, route_limits. */
static void resolve_clients(struct sl_config *c, struct sl_cfg_check *chk)
{
    bool routes_ok = sl_cfg_check_usable(chk, "routes");
    bool backends_ok = sl_cfg_check_usable(chk, "backends");
    for (size_t i = 0; i < c->n_clients; i++) {
        struct sl_config_client *cl = &c->clients[i];
        if (cl->jwt_issuer && sl_cfg_check_usable(chk, "jwt_issuers")) {
            cl->jwt_issuer_index = find_named(cl->jwt_issuer, c->jwt_issuers, c->n_jwt_issuers,
                                              sizeof(*c->jwt_issuers));
            if (cl->jwt_issuer_index == c->n_jwt_issuers)
                sl_cfg_check_error_in(chk, "clients", i, "jwt_issuer",
                                      "client \"%s\": no jwt_issuers entry \"%s\"", cl->name,
                                      cl->jwt_issuer);
        }
        if (cl->n_routes && routes_ok)
            cl->route_grants = bitmap_of(chk, i, "routes", cl->routes, cl->n_routes, c->routes,
                                         c->n_routes, sizeof(*c->routes), "route");
        if (cl->n_backends && backends_ok)
            cl->backend_allow =
                bitmap_of(chk, i, "backends", cl->backends, cl->n_backends, c->backends,
                          c->n_backends, sizeof(*c->backends), "backend");
        for (size_t k = 0; routes_ok && k < cl->n_route_limits; k++) {
            struct sl_config_route_limit *l = &cl->route_limits[k];
            l->route_index = find_named(l->route, c->routes, c->n_routes, sizeof(*c->routes));
            if (l->route_index == c->n_routes)
                sl_cfg_check_error_in(chk, "clients", i, "route_limits",
                                      "client \"%s\": route_limits[%zu]: no route \"%s\"", cl->name,
                                      k, l->route);
        }
    }
}

/* A JWT identity names one client: the same issuer and id twice would be ambiguous. */
static void check_jwt_ids(struct sl_config *c, struct sl_cfg_check *chk)
{
    for (size_t i = 0; i < c->n_clients; i++) {
        const struct sl_config_client *a = &c->clients[i];
        for (size_t k = 0; a->jwt_issuer && k < a->n_jwt_ids; k++) {
            for (size_t j = 0; j <= i; j++) {
                const struct sl_config_client *b = &c->clients[j];
                if (b->jwt_issuer == NULL || strcmp(a->jwt_issuer, b->jwt_issuer) != 0)
                    continue;
                size_t until = j == i ? k : b->n_jwt_ids;
                for (size_t m = 0; m < until; m++)
                    if (strcmp(a->jwt_ids[k], b->jwt_ids[m]) == 0)
                        sl_cfg_check_error_in_elem(chk, "clients", i, "jwt_ids", k,
                                                   "client \"%s\": jwt id \"%s\" of issuer "
                                                   "\"%s\" is also client \"%s\"'s; it must "
                                                   "name one client",
                                                   a->name, a->jwt_ids[k], a->jwt_issuer, b->name);
            }
        }
    }
}

/* Budgets are kept in the usage ledger; money budgets need prices for what they buy. */
static void check_budgets(struct sl_config *c, struct sl_cfg_check *chk)
{
    for (size_t i = 0; i < c->n_clients; i++) {
        const struct sl_config_client *cl = &c->clients[i];
        if (cl->n_budgets == 0)
            continue;
        if (c->usage.db == NULL && sl_cfg_check_usable(chk, "usage.db"))
            sl_cfg_check_error_in(chk, "clients", i, "budgets",
                                  "client \"%s\" has budgets, which are kept in the usage "
                                  "ledger: set `usage.db` (a SQLite file)",
                                  cl->name);
        bool money = false;
        for (size_t b = 0; b < cl->n_budgets; b++)
            money = money || cl->budgets[b].cost;
        if (money && c->n_prices == 0 && sl_cfg_check_usable(chk, "prices"))
            sl_cfg_check_error_in(chk, "clients", i, "budgets",
                                  "client \"%s\" has a money budget (`cost`), but there are no "
                                  "`prices` to price its tokens",
                                  cl->name);
    }
}

/* One hashed key, where it is declared. */
struct key_ref {
    const unsigned char *hash;
    size_t client, key;
};

/* A key declared again: where, and where first. */
struct key_dup {
    struct key_ref at, first;
};

static int compare_places(const struct key_ref *x, const struct key_ref *y)
{
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

/* By hash, then in file order. */
static int compare_keys(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    int d = memcmp(x->hash, y->hash, 32);
    return d ? d : compare_places(x, y);
}

static int compare_dups(const void *a, const void *b)
{
    const struct key_dup *x = a, *y = b;
    return compare_places(&x->at, &y->at);
}

/* A key must identify one client: report each repeat at its place, naming
 * the first declaration, in file order. Sorted, so that thousands of keys
 * stay cheap. */
static void check_keys(struct sl_config *c, struct sl_cfg_check *chk)
{
    struct key_ref *refs = NULL;
    struct key_dup *dups = NULL;
    size_t n = 0, n_dups = 0;
    if (!sl_cfg_check_usable(chk, "clients"))
        return;
    for (size_t i = 0; i < c->n_clients; i++)
        n += c->clients[i].key_hashes ? c->clients[i].n_keys : 0;
    if (n < 2)
        return;
    refs = calloc(n, sizeof(*refs));
    dups = calloc(n, sizeof(*dups));
    if (refs == NULL || dups == NULL) {
        sl_cfg_check_nomem(chk);
        goto out;
    }
    n = 0;
    for (size_t i = 0; i < c->n_clients; i++)
        for (size_t k = 0; c->clients[i].key_hashes && k < c->clients[i].n_keys; k++)
            refs[n++] = (struct key_ref){c->clients[i].key_hashes[k], i, k};
    qsort(refs, n, sizeof(*refs), compare_keys);
    for (size_t i = 1, first = 0; i < n; i++) {
        if (memcmp(refs[i].hash, refs[first].hash, 32) == 0)
            dups[n_dups++] = (struct key_dup){refs[i], refs[first]};
        else
            first = i;
    }
    qsort(dups, n_dups, sizeof(*dups), compare_dups);
    for (size_t d = 0; d < n_dups; d++) {
        const struct key_ref *at = &dups[d].at, *first = &dups[d].first;
        const char *mine = c->clients[at->client].name;
        if (first->client == at->client)
            sl_cfg_check_error_in_elem(chk, "clients", at->client, "keys", at->key,
                                       "client \"%s\" lists this key twice (keys[%zu] and "
                                       "keys[%zu])",
                                       mine, first->key, at->key);
        else
            sl_cfg_check_error_in_elem(chk, "clients", at->client, "keys", at->key,
                                       "client \"%s\" has the same key as client \"%s\" "
                                       "(clients[%zu].keys[%zu]); a key must identify one "
                                       "client: give each its own",
                                       mine, c->clients[first->client].name, first->client,
                                       first->key);
    }
out:
    free(refs);
    free(dups);
}

void sl_cfg_clients_finish(struct sl_config *c, struct sl_cfg_check *chk)
{
    if (!sl_cfg_check_usable(chk, "clients"))
        return;
    check_keys(c, chk);
    resolve_clients(c, chk);
    check_jwt_ids(c, chk);
    check_budgets(c, chk);
}
