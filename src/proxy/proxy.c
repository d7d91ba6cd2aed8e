/*
 * The gateway's request path: which surface the client used, who the client
 * is, which route and backend serve it, and the upstream request to make.
 * forward.c then streams the backend's answer back.
 */
#include "proxy/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The api-version sent upstream on Azure paths when the client sent none. */
#define SL_PROXY_DEFAULT_API_VERSION "2024-10-21"

static const struct sl_str resource_paths[] = {
    SL_STR("responses"), SL_STR("assistants"),    SL_STR("threads"),
    SL_STR("files"),     SL_STR("vector_stores"), SL_STR("batches"),
};

/* A deployment or model name a route could have: see the route schema. */
bool sl_proxy_name_is_sane(struct sl_str s)
{
    if (s.len == 0 || s.len > 128 || sl_str_eq(s, SL_STR(".")) || sl_str_eq(s, SL_STR("..")))
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static struct sl_str str_after(struct sl_str s, size_t n)
{
    return (struct sl_str){s.base + n, s.len - n};
}

/*
 * A path a backend (or anything between) could read differently from us is
 * refused: empty, "." and ".." segments, and percent-encoded '.', '/' or '\\',
 * which some servers decode before routing. Otherwise the rest of a path
 * could step out of the deployment the route checked.
 */
bool sl_proxy_path_is_plain(struct sl_str path)
{
    for (size_t i = 0; i < path.len; i++) {
        char c = path.base[i];
        if (c == '%' && i + 2 < path.len) {
            char h = path.base[i + 1], l = (char)(path.base[i + 2] | 0x20);
            if ((h == '2' && (l == 'e' || l == 'f')) || (h == '5' && l == 'c') ||
                (h == '3' && l == 'b'))
                return false;
        }
        /* Path parameters (";") have no use here, and some servers read "..;" as "..". */
        if (c == '\\' || c == ';')
            return false;
        if (c != '/')
            continue;
        size_t seg = i + 1, end = seg;
        while (end < path.len && path.base[end] != '/')
            end++;
        size_t n = end - seg;
        bool last = end == path.len;
        if ((n == 0 && !last) || (n == 1 && path.base[seg] == '.') ||
            (n == 2 && path.base[seg] == '.' && path.base[seg + 1] == '.'))
            return false;
    }
    return true;
}

static bool is_stateful(struct sl_str rest)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(resource_paths); i++) {
        struct sl_str r = resource_paths[i];
        if (sl_str_starts_with(rest, r) && (rest.len == r.len || rest.base[r.len] == '/'))
            return true;
    }
    return false;
}

/* Which API surface the path belongs to; SL_ENOTFOUND when none. */
int sl_proxy_classify(struct sl_str path, struct sl_proxy_target *t)
{
    static const struct sl_str azure = SL_STR("/openai/deployments/");
    memset(t, 0, sizeof(*t));
    if (sl_str_starts_with(path, azure)) {
        struct sl_str rest = str_after(path, azure.len);
        const char *slash = memchr(rest.base, '/', rest.len);
        if (slash == NULL)
            return SL_ENOTFOUND;
        t->surface = SL_PROXY_AZURE;
        t->name = (struct sl_str){rest.base, (size_t)(slash - rest.base)};
        t->rest = str_after(rest, t->name.len + 1);
        return t->rest.len ? SL_OK : SL_ENOTFOUND;
    }
    if (sl_str_starts_with(path, SL_STR("/openai/v1/"))) {
        t->surface = SL_PROXY_V1;
        t->rest = str_after(path, 11);
        t->stateful = is_stateful(t->rest);
        return t->rest.len ? SL_OK : SL_ENOTFOUND;
    }
    if (sl_str_starts_with(path, SL_STR("/v1/"))) {
        t->surface = SL_PROXY_V1;
        t->rest = str_after(path, 4);
        t->stateful = is_stateful(t->rest);
        return t->rest.len ? SL_OK : SL_ENOTFOUND;
    }
    if (sl_str_starts_with(path, SL_STR("/openai/")) && is_stateful(str_after(path, 8))) {
        t->surface = SL_PROXY_RESOURCE;
        t->rest = str_after(path, 8);
        t->stateful = true;
        return SL_OK;
    }
    return SL_ENOTFOUND;
}

static bool granted(const struct sl_config_client *client, size_t route)
{
    return client->route_grants == NULL || (client->route_grants[route / 64] >> (route % 64)) & 1;
}

/* The models the client may use. */
static void respond_models(struct sl_http_request *req, const struct sl_config *cfg,
                           const struct sl_config_client *client)
{
    struct sl_buf b;
    sl_buf_init(&b);
    sl_buf_appendf(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        if (!granted(client, i))
            continue;
        sl_buf_appendf(&b, "%s{\"id\":\"", first ? "" : ",");
        first = false;
        sl_buf_append_json_escaped(&b, sl_str_from_cstr(cfg->routes[i].name));
        sl_buf_appendf(&b, "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"sluice\"}");
    }
    sl_buf_appendf(&b, "]}");
    sl_http_respond(req, 200, SL_STR("application/json"), (struct sl_str){b.base, b.len});
    sl_buf_dispose(&b);
}

static void respond_no_route(struct sl_http_request *req)
{
    /* The name is not echoed: the message must not help probe for route names. */
    sl_http_respond_error(req, 404, "DeploymentNotFound",
                          "The API deployment for this resource does not exist. If you created "
                          "the deployment within the last 5 minutes, please wait a moment and "
                          "try again.");
}

/*
 * The name the backend knows the model by: its `deployment`, else for an
 * OpenAI-style backend its `model`, else the route's own name.
 */
static const char *upstream_name(const struct sl_config_route *route,
                                 const struct sl_config_backend *b)
{
    if (b->deployment)
        return b->deployment;
    return b->type == SL_BACKEND_OPENAI ? b->model : route->name;
}

/*
 * Append the client's query to b. With api_version set, the client's
 * api-version is replaced by it; otherwise the client's is kept when
 * keep_api_version (Azure backends) and dropped when not (OpenAI-style).
 */
static void append_query(struct sl_buf *b, struct sl_str query, const char *api_version,
                         bool keep_api_version)
{
    bool first = true;
    struct sl_str pair;
    while (sl_query_next(&query, &pair)) {
        bool is_version = sl_str_starts_with(pair, SL_STR("api-version="));
        if (pair.len && (!is_version || (keep_api_version && api_version == NULL))) {
            sl_buf_append(b, first ? "?" : "&", 1);
            sl_buf_append_str(b, pair);
            first = false;
        }
    }
    if (api_version) {
        sl_buf_append(b, first ? "?" : "&", 1);
        sl_buf_appendf(b, "api-version=%s", api_version);
    }
}

/* The upstream URL for t on backend b, into the request's arena. */
static char *build_url(struct sl_http_request *req, const struct sl_proxy_target *t,
                       const struct sl_config_route *route, const struct sl_config_backend *b)
{
    struct sl_buf u;
    sl_buf_init(&u);
    sl_buf_append_str(&u, sl_str_from_cstr(b->url));
    if (b->type == SL_BACKEND_AZURE) {
        const char *version = route && route->api_version ? route->api_version : NULL;
        switch (t->surface) {
        case SL_PROXY_AZURE: {
            sl_buf_appendf(&u, "/openai/deployments/%s/", upstream_name(route, b));
            sl_buf_append_str(&u, t->rest);
            if (!version && sl_query_param(req->head.query, SL_STR("api-version")).len == 0)
                version = SL_PROXY_DEFAULT_API_VERSION;
            append_query(&u, req->head.query, version, true);
            break;
        }
        case SL_PROXY_V1:
            sl_buf_appendf(&u, "/openai/v1/");
            sl_buf_append_str(&u, t->rest);
            append_query(&u, req->head.query, NULL, true);
            break;
        case SL_PROXY_RESOURCE:
            sl_buf_appendf(&u, "/openai/");
            sl_buf_append_str(&u, t->rest);
            append_query(&u, req->head.query, version, true);
            break;
        }
    } else {
        /* OpenAI-style: the base URL already ends in its version (".../v1"). */
        sl_buf_append(&u, "/", 1);
        sl_buf_append_str(&u, t->rest);
        append_query(&u, req->head.query, NULL, false);
    }
    char *url = u.base ? sl_arena_strdup(req->arena, (struct sl_str){u.base, u.len}) : NULL;
    sl_buf_dispose(&u);
    return url;
}

/* Request headers sluice replaces or must not pass on. */
static bool drop_request_header(struct sl_str name, const struct sl_http_request_head *h,
                                size_t scope)
{
    static const struct sl_str drop[] = {
        SL_STR("host"),         SL_STR("content-length"), SL_STR("expect"),
        SL_STR("api-key"),      SL_STR("authorization"),  SL_STR("accept-encoding"),
        SL_STR("x-request-id"),
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(drop); i++)
        if (sl_str_eq_ci(name, drop[i]))
            return true;
    return sl_proxy_hop_by_hop(name, h->headers, scope);
}

static int build_headers(struct sl_proxy_call *call)
{
    struct sl_http_request *req = call->req;
    const struct sl_config_backend *b = call->backend;
    size_t n = 0, cap = req->head.n_headers + 3;
    struct sl_http_header *hs = sl_arena_alloc(req->arena, cap * sizeof(*hs));
    if (hs == NULL)
        return SL_ENOMEM;
    size_t scope = sl_proxy_connection_scope(req->head.headers, req->head.n_headers);
    for (size_t i = 0; i < req->head.n_headers; i++)
        if (!drop_request_header(req->head.headers[i].name, &req->head, scope))
            hs[n++] = req->head.headers[i];
    hs[n++] = (struct sl_http_header){SL_STR("x-request-id"), sl_str_from_cstr(req->id)};
    if (b->api_key) {
        if (b->type == SL_BACKEND_AZURE) {
            hs[n++] = (struct sl_http_header){SL_STR("api-key"), sl_str_from_cstr(b->api_key)};
        } else {
            struct sl_buf v;
            sl_buf_init(&v);
            sl_buf_appendf(&v, "Bearer %s", b->api_key);
            char *value =
                v.base ? sl_arena_strdup(req->arena, (struct sl_str){v.base, v.len}) : NULL;
            sl_buf_dispose(&v);
            if (value == NULL)
                return SL_ENOMEM;
            hs[n++] = (struct sl_http_header){SL_STR("Authorization"), sl_str_from_cstr(value)};
        }
    }
    call->headers = hs;
    call->n_headers = n;
    return SL_OK;
}

/* The body to send: the client's, or a copy whose `model` names the upstream model. */
static int prepare_body(struct sl_proxy_call *call)
{
    struct sl_http_request *req = call->req;
    const char *want = upstream_name(call->route, call->backend);
    bool needs_model =
        call->backend->type == SL_BACKEND_OPENAI || call->target.surface != SL_PROXY_AZURE;
    call->body = req->body;
    if (call->doc == NULL)
        return SL_OK;
    json_t *model = json_object_get(call->doc, "model");
    bool set_model =
        needs_model && !(json_is_string(model) && strcmp(json_string_value(model), want) == 0);
    if (!set_model && !call->body_changed)
        return SL_OK; /* already right: forward the bytes as sent */
    /* The route name may be a view into the document: keep what it points at alive. */
    json_t *old = set_model ? json_incref(model) : NULL;
    int err = !set_model || json_object_set_new(call->doc, "model", json_string(want)) == 0
                  ? SL_OK
                  : SL_ENOMEM;
    size_t len = err ? 0 : json_dumpb(call->doc, NULL, 0, JSON_COMPACT);
    char *copy = err ? NULL : sl_arena_alloc(req->arena, len ? len : 1);
    if (copy == NULL || json_dumpb(call->doc, copy, len, JSON_COMPACT) != len)
        err = SL_ENOMEM;
    else
        call->body = (struct sl_str){copy, len};
    if (old) {
        /* Back as the client sent it, for the next attempt's comparison. */
        json_object_set(call->doc, "model", old);
        json_decref(old);
    }
    return err;
}

int sl_proxy_prepare_attempt(struct sl_proxy_call *call)
{
    call->backend = &call->cfg->backends[call->pick.backend];
    call->url = build_url(call->req, &call->target, call->route, call->backend);
    int err = call->url ? prepare_body(call) : SL_ENOMEM;
    if (err == SL_OK)
        err = build_headers(call);
    if (err == SL_OK && call->route->log_payloads)
        sl_log_debug("payload request_id=%s route=%s backend=%s request_body=%.*s", call->req->id,
                     call->route->name, call->backend->name,
                     (int)SL_MIN(call->body.len, (size_t)4096), call->body.base);
    return err;
}

void sl_proxy_call_end(struct sl_proxy_call *call, int status)
{
    if (call->conf == NULL)
        return; /* ended already */
    call->status = status;
    sl_proxy_account(call);
    sl_sse_filter_dispose(&call->sse);
    json_decref(call->doc);
    call->doc = NULL;
    call->target.name = SL_STR_NULL; /* may have pointed into doc */
    sl_proxy_conf_release(call->conf);
    call->conf = NULL;
}

/* The body as a JSON object, or NULL after answering 400. */
static json_t *parse_body(struct sl_http_request *req)
{
    json_error_t jerr;
    json_t *doc = json_loadb(req->body.base, req->body.len, 0, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        sl_http_respond_error(req, 400, "BadRequest",
                              "the request body is not a JSON object; it must be one, with the "
                              "model to use in `model`");
        return NULL;
    }
    return doc;
}

static bool pool_has(const struct sl_config_route *r, size_t backend)
{
    for (size_t m = 0; m < r->n_pool; m++)
        if (r->pool[m].backend_index == backend)
            return true;
    return false;
}

/* A stateful call that names no model: the client's first route whose pool has the backend
 * holding its object, else the client's first route. */
static const struct sl_config_route *
route_of_backend(const struct sl_config *cfg, const struct sl_config_client *client, size_t b)
{
    for (size_t i = 0; b != SIZE_MAX && i < cfg->n_routes; i++)
        if (granted(client, i) && pool_has(&cfg->routes[i], b))
            return &cfg->routes[i];
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (granted(client, i))
            return &cfg->routes[i];
    return NULL;
}

static bool pool_has_type(const struct sl_config *cfg, const struct sl_config_route *r,
                          enum sl_backend_type type)
{
    for (size_t m = 0; m < r->n_pool; m++)
        if (cfg->backends[r->pool[m].backend_index].type == type)
            return true;
    return false;
}

static bool listed(const char *s, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Where the request may be served: the route's geographies, the client's, or those in both
 * (possibly none at all: then nothing may serve it). SL_ENOMEM. */
static int bind_geographies(struct sl_proxy_call *call, const struct sl_config_client *client)
{
    const struct sl_config_route *r = call->route;
    size_t cap = r->n_geographies ? r->n_geographies : client->n_geographies;
    call->n_geographies = 0;
    if (cap == 0)
        return SL_OK;
    call->geographies = sl_arena_alloc(call->req->arena, cap * sizeof(*call->geographies));
    if (call->geographies == NULL)
        return SL_ENOMEM;
    if (r->n_geographies == 0) {
        for (size_t i = 0; i < cap; i++)
            call->geographies[call->n_geographies++] = client->geographies[i];
        return SL_OK;
    }
    for (size_t i = 0; i < r->n_geographies; i++)
        if (client->n_geographies == 0 ||
            listed(r->geographies[i], client->geographies, client->n_geographies))
            call->geographies[call->n_geographies++] = r->geographies[i];
    if (call->n_geographies == 0)
        call->geographies[call->n_geographies++] = ""; /* matches no backend */
    return SL_OK;
}

/* Who the client is, where it runs, which session it is in: what limits the choice. */
static int bind_client(struct sl_proxy_call *call, const struct sl_config_client *client)
{
    struct sl_http_request *req = call->req;
    int err = bind_geographies(call, client);
    if (err)
        return err;
    call->tried = sl_arena_alloc(req->arena,
                                 SL_BALANCE_BITMAP_WORDS(call->cfg->n_backends) * sizeof(uint64_t));
    if (call->tried == NULL)
        return SL_ENOMEM;
    memset(call->tried, 0, SL_BALANCE_BITMAP_WORDS(call->cfg->n_backends) * sizeof(uint64_t));
    call->region = client->region ? sl_str_from_cstr(client->region) : SL_STR_NULL;
    const struct sl_http_header *h = sl_http_find_header(&req->head, SL_STR("x-sluice-region"));
    if (h && h->value.len && call->route->region_header)
        call->region = h->value;
    call->session_backend = SIZE_MAX;
    h = sl_http_find_header(&req->head, SL_STR("x-sluice-session"));
    if (h && h->value.len) {
        struct sl_buf k;
        sl_buf_init(&k);
        sl_buf_appendf(&k, "s:%s:", call->route->name);
        sl_buf_append_str(&k, h->value);
        char *key = k.base ? sl_arena_strdup(req->arena, (struct sl_str){k.base, k.len}) : NULL;
        sl_buf_dispose(&k);
        if (key == NULL)
            return SL_ENOMEM;
        call->session_key = sl_str_from_cstr(key);
    }
    return SL_OK;
}

/* The body as JSON when it is a JSON object, quietly: NULL when it is not (caps decide). */
static json_t *try_parse_body(struct sl_http_request *req)
{
    json_error_t jerr;
    json_t *doc = json_loadb(req->body.base, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

/* Does the body ask for a stream? (Without parsing it: `"stream"`, a colon, `true`.) */
static bool asks_stream(struct sl_str body)
{
    static const char key[] = "\"stream\"";
    const char *p = body.base, *end = body.base + body.len;
    while (p && (p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        p += sizeof(key) - 1;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p >= end || *p != ':')
            continue;
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        return end - p >= 4 && memcmp(p, "true", 4) == 0;
    }
    return false;
}

static bool limits_tokens(const struct sl_config_client *cl)
{
    if (cl->tpm)
        return true;
    for (size_t i = 0; i < cl->n_route_limits; i++)
        if (cl->route_limits[i].tpm)
            return true;
    return cl->n_budgets > 0;
}

/*
 * Every stream is counted: a streamed chat completion asks the backend for its usage chunk
 * (stream_options.include_usage), which forward.c then hides from a client that did not ask
 * for it itself. A body that is not a JSON object, or whose stream_options is not an
 * object, is left alone (the backend judges it).
 */
static void ask_usage(struct sl_proxy_call *call)
{
    if (call->doc == NULL && (call->doc = try_parse_body(call->req)) == NULL)
        return;
    json_t *opts = json_object_get(call->doc, "stream_options");
    if (opts != NULL && !json_is_object(opts) && !json_is_null(opts))
        return;
    if (json_is_object(opts) && json_is_true(json_object_get(opts, "include_usage")))
        return; /* the client asked: it gets the chunk */
    int err = json_is_object(opts) ? json_object_set_new(opts, "include_usage", json_true())
                                   : json_object_set_new(call->doc, "stream_options",
                                                         json_pack("{s:b}", "include_usage", 1));
    if (err != 0)
        return; /* out of memory: the stream goes as sent, estimated */
    call->body_changed = true;
    call->hide_usage = true;
    sl_sse_filter_init(&call->sse);
}

/* The client's and route's caps on the body, and what the request may cost. False after
 * answering (a refused body). */
static bool apply_caps(struct sl_proxy_call *call)
{
    struct sl_http_request *req = call->req;
    call->kind = sl_policy_call_of(call->target.rest);
    const struct sl_config_caps *cc = &call->client->caps, *rc = &call->route->caps;
    bool caps = sl_policy_applies(cc, rc, call->kind);
    if (call->doc == NULL && req->body.len && (caps || limits_tokens(call->client)))
        call->doc = try_parse_body(req);
    if (caps) {
        struct sl_policy_refusal refusal;
        if (sl_policy_apply(cc, rc, call->kind, call->doc, req->body.len, &call->body_changed,
                            &refusal) != SL_OK) {
            sl_proxy_call_end(call, refusal.status);
            sl_http_respond_error(req, refusal.status,
                                  refusal.status == 413 ? "RequestEntityTooLarge" : "BadRequest",
                                  refusal.message);
            return false;
        }
    }
    call->estimate = sl_policy_estimate_tokens(call->doc, call->kind, req->body.len);
    call->stream =
        call->doc ? json_is_true(json_object_get(call->doc, "stream")) : asks_stream(req->body);
    if (call->kind == SL_POLICY_CHAT && call->stream)
        ask_usage(call);
    return true;
}

/* Serve req with conf: true when a call took over the reference to conf. */
static bool serve(struct sl_http_request *req, struct sl_proxy_conf *conf)
{
    const struct sl_config *cfg = conf->cfg;
    struct sl_proxy_target t;
    json_t *doc = NULL;

    char why[256];
    if (!sl_proxy_front_door_ok(cfg, req, why, sizeof(why))) {
        sl_http_respond_error(req, 403, "Forbidden", why);
        return false;
    }
    if (!sl_proxy_path_is_plain(req->head.path)) {
        sl_http_respond_error(req, 400, "BadRequest",
                              "the path has an empty, '.' or '..' segment, a ';', or an encoded "
                              "'.', '/', ';' or '\\'; send it in plain form");
        return false;
    }
    if (sl_proxy_classify(req->head.path, &t) != SL_OK) {
        sl_http_respond_error(req, 404, "NotFound",
                              "this path is not served by the gateway; see docs/api.md");
        return false;
    }
    const struct sl_config_client *client = NULL;
    struct sl_buf denied;
    sl_buf_init(&denied);
    int err = sl_auth_identify(conf->auth, &req->head, (uint64_t)time(NULL), &client, &denied);
    if (err != SL_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "Access denied due to invalid subscription key or wrong API endpoint (%s). Make "
                 "sure to provide a valid key for an active subscription and use a correct "
                 "regional API endpoint for your resource.",
                 denied.base ? denied.base : "out of memory");
        sl_buf_dispose(&denied);
        if (err == SL_ENOMEM)
            sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
        else
            sl_http_respond_error(req, 401, "401", msg);
        return false;
    }
    sl_buf_dispose(&denied);
    bool is_models = t.surface == SL_PROXY_V1 && sl_str_eq(t.rest, SL_STR("models"));
    if (is_models && sl_str_eq(req->head.method, SL_STR("GET"))) {
        respond_models(req, cfg, client);
        return false;
    }
    if (t.surface == SL_PROXY_AZURE && !sl_proxy_name_is_sane(t.name)) {
        sl_http_respond_error(req, 400, "InvalidDeploymentName",
                              "the deployment name in the path may only contain letters, digits, "
                              "'.', '_' and '-'");
        return false;
    }
    /* v1 and resource paths name their model in the JSON body. */
    if (t.surface != SL_PROXY_AZURE && req->body.len) {
        if ((doc = parse_body(req)) == NULL)
            return false;
        json_t *m = json_object_get(doc, "model");
        if (m && !json_is_string(m)) {
            json_decref(doc);
            sl_http_respond_error(req, 400, "BadRequest", "`model` must be a string");
            return false;
        }
        if (m)
            t.name = sl_str_from_cstr(json_string_value(m));
    }
    if (t.name.len == 0 && !t.stateful) {
        json_decref(doc);
        sl_http_respond_error(req, 400, "BadRequest",
                              "the request names no model: set `model` in the body to one of the "
                              "deployments this gateway serves (GET /v1/models lists them)");
        return false;
    }
    struct sl_proxy_call *call = sl_arena_alloc(req->arena, sizeof(*call));
    if (call == NULL) {
        json_decref(doc);
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
        return false;
    }
    memset(call, 0, sizeof(*call));
    call->arrival_unix_ms = sl_clock_unix_ms();
    sl_usage_scanner_init(&call->usage);
    call->req = req;
    call->worker = sl_http_request_worker_data(req);
    call->conf = conf;
    call->cfg = cfg;
    call->target = t;
    call->doc = doc;
    call->pinned = SIZE_MAX;
    /* A request about a stateful object goes where the object is. */
    struct sl_str object = t.stateful ? sl_proxy_object_key(call) : SL_STR_NULL;
    if (object.len && sl_balance_pinned(conf->balance, object, uv_now(sl_http_request_loop(req)),
                                        &call->pinned) != SL_OK)
        call->pinned = SIZE_MAX;
    call->pin_answer = t.stateful && object.len == 0 && sl_str_eq(req->head.method, SL_STR("POST"));
    call->client = client;
    call->route = t.name.len ? sl_config_find_route(cfg, t.name)
                             : route_of_backend(cfg, client, call->pinned);
    if (call->route == NULL) {
        sl_proxy_call_end(call, 404);
        respond_no_route(req);
        return true;
    }
    if (!granted(client, (size_t)(call->route - cfg->routes))) {
        char msg[320];
        snprintf(msg, sizeof(msg),
                 "client %s may not use the deployment %s; ask the gateway's operators to grant "
                 "it",
                 client->name, call->route->name);
        sl_proxy_call_end(call, 403);
        sl_http_respond_error(req, 403, "PermissionDenied", msg);
        return true;
    }
    /* An OpenAI-style backend reads the model from the body: it must be set there. */
    if (call->doc == NULL && req->body.len && pool_has_type(cfg, call->route, SL_BACKEND_OPENAI) &&
        (call->doc = parse_body(req)) == NULL) {
        sl_proxy_call_end(call, 400);
        return true;
    }
    if (bind_client(call, client) != SL_OK) {
        sl_proxy_call_end(call, 500);
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
        return true;
    }
    if (!apply_caps(call) || !sl_proxy_admit(call))
        return true; /* answered */
    sl_proxy_forward(call);
    return true;
}

void sl_proxy_on_request(struct sl_http_request *req, void *data)
{
    struct sl_proxy_conf *conf = sl_proxy_conf_acquire(data);
    if (!serve(req, conf))
        sl_proxy_conf_release(conf);
}

void sl_proxy_log_config_warnings(const struct sl_config *cfg)
{
    if (cfg->n_routes && cfg->n_clients == 0)
        sl_log_warn("no clients are configured: every proxied request will be refused with 401 "
                    "(add a `clients` section; `sluice hash-key` makes the key hashes)");
    for (size_t i = 0; i < cfg->n_backends; i++)
        if (cfg->backends[i].insecure)
            sl_log_warn("backend %s: TLS verification is OFF (insecure: true); use only for "
                        "testing",
                        cfg->backends[i].name);
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (cfg->routes[i].log_payloads)
            sl_log_warn("route %s: log_payloads is on: with log.level debug, request bodies "
                        "(prompts) are written to the log; use only for debugging",
                        cfg->routes[i].name);
}
