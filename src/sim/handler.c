/*
 * The data-plane handler of a simulated endpoint: route, authenticate,
 * check api-version, resolve the deployment, parse and validate the body,
 * apply fault rules, admit against the quota, then serve. Each check answers
 * the way Azure OpenAI (or OpenAI, for the openai flavour) does.
 *
 * Surfaces: Azure `/openai/deployments/{d}/{chat/completions,completions,
 * embeddings}` and `/openai/{responses,threads,assistants,models}[/{id}]`
 * (azure flavour only; api-version required), and `/openai/v1/...` and
 * `/v1/...` (both flavours; the body's model names the deployment).
 */
#include "sim/internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct route {
    enum sl_sim_surface surface;
    enum sl_sim_target target;
    struct sl_str deployment; /* from the path (deployment surface) */
    struct sl_str id;         /* for targets that name one object */
};

static bool eat(struct sl_str *s, struct sl_str prefix)
{
    if (!sl_str_starts_with(*s, prefix))
        return false;
    s->base += prefix.len;
    s->len -= prefix.len;
    return true;
}

static bool has_slash(struct sl_str s)
{
    return memchr(s.base, '/', s.len) != NULL;
}

/* "name" or "name/{id}" → target (or one_target with the id). */
static bool collection(struct sl_str rest, const char *name, enum sl_sim_target all,
                       enum sl_sim_target one, struct route *rt)
{
    struct sl_str n = sl_str_from_cstr(name);
    if (sl_str_eq(rest, n)) {
        rt->target = all;
        return true;
    }
    if (rest.len > n.len + 1 && sl_str_starts_with(rest, n) && rest.base[n.len] == '/') {
        rt->id = (struct sl_str){rest.base + n.len + 1, rest.len - n.len - 1};
        if (has_slash(rt->id))
            return false;
        rt->target = one;
        return true;
    }
    return false;
}

static int route_path(struct sl_str path, bool azure, struct route *rt)
{
    memset(rt, 0, sizeof(*rt));
    struct sl_str rest = path;
    if (eat(&rest, SL_STR("/openai/deployments/"))) {
        const char *slash = memchr(rest.base, '/', rest.len);
        if (!azure || slash == NULL || slash == rest.base)
            return SL_ENOTFOUND;
        rt->surface = SL_SIM_SURFACE_DEPLOYMENT;
        rt->deployment = (struct sl_str){rest.base, (size_t)(slash - rest.base)};
        rest = (struct sl_str){slash + 1, rest.len - rt->deployment.len - 1};
    } else if (eat(&rest, SL_STR("/openai/v1/")) || eat(&rest, SL_STR("/v1/"))) {
        rt->surface = SL_SIM_SURFACE_V1;
    } else if (azure && eat(&rest, SL_STR("/openai/"))) {
        rt->surface = SL_SIM_SURFACE_RESOURCE;
    } else {
        return SL_ENOTFOUND;
    }
    if (rt->surface != SL_SIM_SURFACE_RESOURCE) {
        if (sl_str_eq(rest, SL_STR("chat/completions")))
            rt->target = SL_SIM_T_CHAT;
        else if (sl_str_eq(rest, SL_STR("completions")))
            rt->target = SL_SIM_T_COMPLETIONS;
        else if (sl_str_eq(rest, SL_STR("embeddings")))
            rt->target = SL_SIM_T_EMBEDDINGS;
        else if (rt->surface == SL_SIM_SURFACE_DEPLOYMENT)
            return SL_ENOTFOUND;
        else
            goto resources;
        return SL_OK;
    }
resources:
    if (collection(rest, "responses", SL_SIM_T_RESPONSES, SL_SIM_T_RESPONSE, rt) ||
        collection(rest, "threads", SL_SIM_T_THREADS, SL_SIM_T_THREAD, rt) ||
        collection(rest, "assistants", SL_SIM_T_ASSISTANTS, SL_SIM_T_ASSISTANT, rt) ||
        collection(rest, "models", SL_SIM_T_MODELS, SL_SIM_T_MODEL, rt))
        return SL_OK;
    return SL_ENOTFOUND;
}

/* The methods a target answers. */
static const char *allowed_methods(enum sl_sim_target t)
{
    switch (t) {
    case SL_SIM_T_RESPONSE:
    case SL_SIM_T_THREAD:
    case SL_SIM_T_ASSISTANT:
        return "GET, DELETE";
    case SL_SIM_T_MODELS:
    case SL_SIM_T_MODEL:
        return "GET";
    default:
        return "POST";
    }
}

static bool method_allowed(enum sl_sim_target t, struct sl_str method)
{
    const char *allow = allowed_methods(t);
    if (sl_str_eq(method, SL_STR("GET")) || sl_str_eq(method, SL_STR("HEAD")))
        return strstr(allow, "GET") != NULL;
    if (sl_str_eq(method, SL_STR("POST")))
        return strstr(allow, "POST") != NULL;
    if (sl_str_eq(method, SL_STR("DELETE")))
        return strstr(allow, "DELETE") != NULL;
    return false;
}

/* The key from api-key, or from Authorization: Bearer. */
static struct sl_str client_key(const struct sl_http_request *req)
{
    const struct sl_http_header *h = sl_http_find_header(&req->head, SL_STR("api-key"));
    if (h && h->value.len)
        return h->value;
    h = sl_http_find_header(&req->head, SL_STR("authorization"));
    if (h && h->value.len > 7 && sl_str_eq_ci((struct sl_str){h->value.base, 7}, SL_STR("Bearer ")))
        return (struct sl_str){h->value.base + 7, h->value.len - 7};
    return SL_STR_NULL;
}

static bool authorized(const struct sl_config_sim_endpoint *cfg, struct sl_str key)
{
    if (key.len == 0)
        return false;
    if (cfg->n_api_keys == 0)
        return true;
    bool ok = false;
    for (size_t i = 0; i < cfg->n_api_keys; i++) /* every key, without stopping early */
        ok |= sl_str_eq_consttime(key, sl_str_from_cstr(cfg->api_keys[i]));
    return ok;
}

static void reply_unauthorized(struct sl_sim_call *c, bool missing)
{
    if (c->azure)
        sl_sim_reply_azure_error(
            c, 401, "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource.");
    else if (missing)
        sl_sim_reply_openai_error(
            c, 401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error", NULL, NULL);
    else
        sl_sim_reply_openai_error(c, 401,
                                  "Incorrect API key provided. You can find your API key at "
                                  "https://platform.openai.com/account/api-keys.",
                                  "invalid_request_error", NULL, "invalid_api_key");
}

/* YYYY-MM-DD, optionally -preview; or preview, latest, v1 (the v1 API's values). */
static bool api_version_ok(struct sl_str v)
{
    if (sl_str_eq(v, SL_STR("preview")) || sl_str_eq(v, SL_STR("latest")) ||
        sl_str_eq(v, SL_STR("v1")))
        return true;
    if (v.len != 10 &&
        !(v.len == 18 && sl_str_eq((struct sl_str){v.base + 10, 8}, SL_STR("-preview"))))
        return false;
    for (size_t i = 0; i < 10; i++) {
        bool dash = i == 4 || i == 7;
        char ch = v.base[i];
        if (dash ? ch != '-' : (ch < '0' || ch > '9'))
            return false;
    }
    return true;
}

static void reply_not_found(struct sl_sim_call *c)
{
    if (c->azure) {
        sl_sim_reply_azure_error(c, 404, "404", "Resource not found");
        return;
    }
    char msg[160];
    struct sl_str m = c->req->head.method, p = c->req->head.path;
    snprintf(msg, sizeof(msg), "Invalid URL (%.*s %.*s)", (int)SL_MIN(m.len, 16), m.base,
             (int)SL_MIN(p.len, 100), p.base);
    sl_sim_reply_openai_error(c, 404, msg, "invalid_request_error", NULL, NULL);
}

static void reply_unknown_deployment(struct sl_sim_call *c, struct sl_str name)
{
    if (c->azure) {
        sl_sim_reply_azure_error(
            c, 404, "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment "
            "within the last 5 minutes, please wait a moment and try again.");
        return;
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "The model `%.*s` does not exist or you do not have access to it.",
             (int)SL_MIN(name.len, 128), name.base ? name.base : "");
    sl_sim_reply_openai_error(c, 404, msg, "invalid_request_error", NULL, "model_not_found");
}

static enum sl_sim_kind kind_for(enum sl_sim_op op)
{
    switch (op) {
    case SL_SIM_OP_COMPLETIONS:
        return SL_SIM_KIND_COMPLETIONS;
    case SL_SIM_OP_EMBEDDINGS:
        return SL_SIM_KIND_EMBEDDINGS;
    case SL_SIM_OP_CHAT:
    case SL_SIM_OP_RESPONSES:
        break;
    }
    return SL_SIM_KIND_CHAT;
}

static void reply_wrong_kind(struct sl_sim_call *c)
{
    static const char *const ops[] = {"chatCompletion", "completion", "embeddings", "responses"};
    char msg[400];
    snprintf(msg, sizeof(msg),
             "The %s operation does not work with the specified model, %s. Please choose "
             "different model and try again. You can learn more about which models can be used "
             "with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.",
             ops[c->r.op], c->dep->cfg->model ? c->dep->cfg->model : c->dep->cfg->name);
    if (c->azure)
        sl_sim_reply_azure_error(c, 400, "OperationNotSupported", msg);
    else
        sl_sim_reply_openai_error(c, 400, msg, "invalid_request_error", "model",
                                  "model_not_supported");
}

static enum sl_sim_op op_for(enum sl_sim_target t)
{
    switch (t) {
    case SL_SIM_T_COMPLETIONS:
        return SL_SIM_OP_COMPLETIONS;
    case SL_SIM_T_EMBEDDINGS:
        return SL_SIM_OP_EMBEDDINGS;
    case SL_SIM_T_RESPONSES:
        return SL_SIM_OP_RESPONSES;
    default:
        return SL_SIM_OP_CHAT;
    }
}

/* Body checks that need the deployment. Returns false when it answered. */
static bool check_limits(struct sl_sim_call *c)
{
    const struct sl_config_sim_deployment *d = c->dep->cfg;
    char msg[400];
    if (c->r.op == SL_SIM_OP_EMBEDDINGS) {
        if (c->r.dimensions > d->dimensions) {
            snprintf(msg, sizeof(msg),
                     "Invalid value for 'dimensions' = %llu. Must be less than or equal to %llu.",
                     (unsigned long long)c->r.dimensions, (unsigned long long)d->dimensions);
            sl_sim_reply_openai_error(c, 400, msg, "invalid_request_error", "dimensions", NULL);
            return false;
        }
        return true;
    }
    uint64_t asked = c->r.max_tokens;
    if (d->context_window && c->prompt_tokens + asked > d->context_window) {
        snprintf(msg, sizeof(msg),
                 "This model's maximum context length is %llu tokens. However, you requested %llu "
                 "tokens (%llu in the messages, %llu in the completion). Please reduce the length "
                 "of the messages or completion.",
                 (unsigned long long)d->context_window,
                 (unsigned long long)(c->prompt_tokens + asked),
                 (unsigned long long)c->prompt_tokens, (unsigned long long)asked);
        sl_sim_reply_openai_error(c, 400, msg, "invalid_request_error", "messages",
                                  "context_length_exceeded");
        return false;
    }
    return true;
}

/* A previous response adds its tokens; one this endpoint never made is a 404. */
static bool resolve_previous(struct sl_sim_call *c)
{
    struct sl_str prev = c->r.previous_response_id;
    uint64_t tokens = 0;
    if (prev.len == 0)
        return true;
    if (sl_sim_store_get(&c->ep->store, SL_SIM_OBJ_RESPONSE, prev, NULL, NULL, &tokens) == SL_OK) {
        c->prompt_tokens += tokens;
        return true;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "Previous response with id '%.*s' not found.",
             (int)SL_MIN(prev.len, 100), prev.base);
    sl_sim_reply_openai_error(c, 404, msg, "invalid_request_error", "previous_response_id",
                              "previous_response_not_found");
    return false;
}

/* Fault rules: true when the request is to be served (possibly with a delivery fault). */
static bool apply_fault(struct sl_sim_call *c)
{
    /* A matching `none` rule is counted too: scripted sequences can be checked step by step. */
    if (sl_sim_pick_fault(c->ep, sl_str_from_cstr(c->dep->cfg->name), &c->fault))
        sl_sim_count(&c->dep->stats.faults[c->fault.kind], 1);
    switch (c->fault.kind) {
    case SL_SIM_FAULT_STATUS:
        sl_sim_reply_fault_status(c);
        return false;
    case SL_SIM_FAULT_REFUSE:
        sl_sim_refuse(c);
        return false;
    case SL_SIM_FAULT_RESET:
        sl_sim_reply_reset(c);
        return false;
    default:
        return true;
    }
}

static bool admit(struct sl_sim_call *c)
{
    struct sl_sim_deployment *dep = c->dep;
    uint64_t charge = c->prompt_tokens;
    if (c->r.op != SL_SIM_OP_EMBEDDINGS) {
        uint64_t choices = (uint64_t)(c->r.n ? c->r.n : 1) * (c->r.n_hashes ? c->r.n_hashes : 1);
        charge += c->max_tokens * choices;
    }
    uint64_t now_ms = sl_clock_mono_us() / 1000;
    uv_mutex_lock(&dep->lock);
    sl_sim_quota_admit(&dep->quota, now_ms, charge, &c->adm);
    uv_mutex_unlock(&dep->lock);
    c->have_adm = true;
    if (c->adm.admitted)
        return true;
    sl_sim_count(&dep->stats.throttled, 1);
    sl_sim_reply_throttled(c, c->adm.limit, c->adm.retry_after_ms);
    return false;
}

static void serve_inference(struct sl_sim_call *c, const struct route *rt)
{
    struct sl_sim_parse_error perr;
    enum sl_sim_op op = op_for(rt->target);
    if (rt->surface == SL_SIM_SURFACE_DEPLOYMENT &&
        (c->dep = sl_sim_find_deployment(c->ep, rt->deployment)) == NULL) {
        reply_unknown_deployment(c, rt->deployment);
        return;
    }
    if (sl_sim_parse_request(op, c->req->body, c->req->arena, &c->r, &perr) != SL_OK) {
        sl_sim_reply_openai_error(c, perr.status, perr.message,
                                  perr.status >= 500 ? "server_error" : "invalid_request_error",
                                  perr.param, perr.code);
        return;
    }
    if (c->dep == NULL) {
        if (c->r.model.len == 0) {
            sl_sim_reply_openai_error(c, 400, "you must provide a model parameter",
                                      "invalid_request_error", NULL, NULL);
            return;
        }
        if ((c->dep = sl_sim_find_deployment(c->ep, c->r.model)) == NULL) {
            reply_unknown_deployment(c, c->r.model);
            return;
        }
    }
    const struct sl_config_sim_deployment *d = c->dep->cfg;
    if (d->kind != kind_for(op)) {
        reply_wrong_kind(c);
        return;
    }
    c->prompt_tokens = c->r.prompt_tokens;
    c->max_tokens = c->r.max_tokens ? c->r.max_tokens : d->default_max_tokens;
    if (!resolve_previous(c) || !check_limits(c) || !apply_fault(c) || !admit(c))
        return;
    uint64_t seed = c->ep->sim->cfg->simulator.seed;
    c->seed = op == SL_SIM_OP_EMBEDDINGS ? sl_sim_hash_str(seed, sl_sim_model_name(c))
                                         : sl_sim_hash_str(seed, sl_str_from_cstr(d->name));
    c->created = (uint64_t)time(NULL);
    switch (op) {
    case SL_SIM_OP_CHAT:
        sl_sim_id_new(c->id, "chatcmpl-", 29, false);
        break;
    case SL_SIM_OP_COMPLETIONS:
        sl_sim_id_new(c->id, "cmpl-", 29, false);
        break;
    case SL_SIM_OP_RESPONSES:
        sl_sim_id_new(c->id, "resp_", 48, true);
        sl_sim_id_new(c->item_id, "msg_", 48, true);
        break;
    case SL_SIM_OP_EMBEDDINGS:
        break;
    }
    sl_sim_reply_serve(c);
}

void sl_sim_on_request(struct sl_http_request *req, void *endpoint_data)
{
    struct sl_sim_endpoint *ep = endpoint_data;
    struct route rt;
    atomic_store_explicit(&ep->last_request_ms, sl_clock_unix_ms(), memory_order_relaxed);
    struct sl_sim_call *c = sl_arena_alloc(req->arena, sizeof(*c));
    if (c == NULL) {
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
        return;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->ep = ep;
    c->azure = ep->cfg->flavor == SL_SIM_FLAVOR_AZURE;
    if (route_path(req->head.path, c->azure, &rt) != SL_OK) {
        reply_not_found(c);
        return;
    }
    c->surface = rt.surface;
    if (!method_allowed(rt.target, req->head.method)) {
        sl_sim_reply_method_not_allowed(c, allowed_methods(rt.target));
        return;
    }
    struct sl_str key = client_key(req);
    if (!authorized(ep->cfg, key)) {
        reply_unauthorized(c, key.len == 0);
        return;
    }
    c->api_version = sl_query_param(req->head.query, SL_STR("api-version"));
    if (c->azure && rt.surface != SL_SIM_SURFACE_V1 && !api_version_ok(c->api_version)) {
        sl_sim_reply_azure_error(c, 400, "BadRequest", "API version not supported");
        return;
    }
    if (c->api_version.len == 0)
        c->api_version = SL_STR("v1");
    switch (rt.target) {
    case SL_SIM_T_CHAT:
    case SL_SIM_T_COMPLETIONS:
    case SL_SIM_T_EMBEDDINGS:
    case SL_SIM_T_RESPONSES:
        serve_inference(c, &rt);
        return;
    default:
        sl_sim_serve_object(c, rt.target, rt.id);
        return;
    }
}
