/*
 * The control API on the admin listener, for tests and load scripts:
 *   POST   /_sim/faults   {"endpoint": NAME, "faults": [RULE, ...]} replaces that
 *                        endpoint's runtime rules (tried before the config's)
 *   GET    /_sim/faults   every endpoint's runtime and config rules, with use counts
 *   DELETE /_sim/faults[?endpoint=NAME]  clears runtime rules (all endpoints without NAME)
 *   GET    /_sim/stats    counters per endpoint and deployment
 *   POST   /_sim/reset[?endpoint=NAME]   clears stats, quotas, runtime rules, config rule
 *                        use counts, stored responses/threads/assistants
 */
#include "sim/internal.h"

#include <stdio.h>
#include <string.h>

#define LIT SL_SIM_LIT

static void respond_json(struct sl_http_request *req, int status, struct sl_buf *b, int rc)
{
    if (rc)
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
    else
        sl_http_respond(req, status, SL_STR("application/json"), (struct sl_str){b->base, b->len});
    sl_buf_dispose(b);
}

static struct sl_sim_endpoint *find_endpoint(struct sl_sim *sim, struct sl_str name)
{
    for (size_t i = 0; i < sim->n_endpoints; i++)
        if (sl_str_eq(name, sl_str_from_cstr(sim->endpoints[i].cfg->name)))
            return &sim->endpoints[i];
    return NULL;
}

static void unknown_endpoint(struct sl_http_request *req, struct sl_str name)
{
    char msg[200];
    if (name.len == 0) {
        sl_http_respond_error(req, 400, "BadRequest",
                              "name the endpoint the rules are for: {\"endpoint\": NAME, "
                              "\"faults\": [...]}");
        return;
    }
    snprintf(msg, sizeof(msg), "no simulated endpoint is named '%.*s'", (int)SL_MIN(name.len, 100),
             name.base);
    sl_http_respond_error(req, 404, "NotFound", msg);
}

static void set_faults(struct sl_sim *sim, struct sl_http_request *req)
{
    char why[256] = "";
    struct sl_str name;
    struct sl_sim_rule *rules, *old;
    size_t n, n_old;
    int err = sl_sim_rules_from_json(req->body.base, req->body.len, &name, req->arena, &rules, &n,
                                     why, sizeof(why));
    if (err) {
        sl_http_respond_error(req, err == SL_ENOMEM ? 500 : 400, NULL,
                              err == SL_ENOMEM ? "out of memory" : why);
        return;
    }
    struct sl_sim_endpoint *ep = find_endpoint(sim, name);
    if (ep == NULL) {
        sl_sim_rules_free(rules, n);
        unknown_endpoint(req, name);
        return;
    }
    uv_mutex_lock(&ep->fault_lock);
    old = ep->runtime;
    n_old = ep->n_runtime;
    ep->runtime = rules;
    ep->n_runtime = n;
    atomic_store(&ep->has_rules, n + ep->n_config_rules > 0);
    uv_mutex_unlock(&ep->fault_lock);
    sl_sim_rules_free(old, n_old);
    struct sl_buf b;
    sl_buf_init(&b);
    int rc = LIT(&b, "{\"endpoint\":\"");
    rc |= sl_buf_append_json_escaped(&b, sl_str_from_cstr(ep->cfg->name));
    rc |= LIT(&b, "\",\"faults\":");
    rc |= sl_buf_append_u64(&b, n);
    rc |= LIT(&b, "}");
    respond_json(req, 200, &b, rc);
}

static void clear_runtime(struct sl_sim_endpoint *ep)
{
    uv_mutex_lock(&ep->fault_lock);
    struct sl_sim_rule *old = ep->runtime;
    size_t n_old = ep->n_runtime;
    ep->runtime = NULL;
    ep->n_runtime = 0;
    atomic_store(&ep->has_rules, ep->n_config_rules > 0);
    uv_mutex_unlock(&ep->fault_lock);
    sl_sim_rules_free(old, n_old);
}

/* Apply fn to the endpoint named by ?endpoint=, or to every endpoint without one. */
static bool each_endpoint(struct sl_sim *sim, struct sl_http_request *req,
                          void (*fn)(struct sl_sim_endpoint *ep))
{
    struct sl_str name = sl_query_param(req->head.query, SL_STR("endpoint"));
    if (name.len == 0) {
        for (size_t i = 0; i < sim->n_endpoints; i++)
            fn(&sim->endpoints[i]);
        return true;
    }
    struct sl_sim_endpoint *ep = find_endpoint(sim, name);
    if (ep == NULL) {
        unknown_endpoint(req, name);
        return false;
    }
    fn(ep);
    return true;
}

static int quoted(struct sl_buf *b, const char *s)
{
    int rc = LIT(b, "\"");
    rc |= sl_buf_append_json_escaped(b, sl_str_from_cstr(s ? s : ""));
    return rc | LIT(b, "\"");
}

/* Answers {"endpoints":{"NAME":{...},...}}, members writing what is inside the braces
 * of each endpoint. */
static void respond_per_endpoint(struct sl_sim *sim, struct sl_http_request *req,
                                 int (*members)(struct sl_buf *b, struct sl_sim_endpoint *ep))
{
    struct sl_buf b;
    sl_buf_init(&b);
    int rc = LIT(&b, "{\"endpoints\":{");
    for (size_t i = 0; i < sim->n_endpoints; i++) {
        struct sl_sim_endpoint *ep = &sim->endpoints[i];
        if (i)
            rc |= LIT(&b, ",");
        rc |= quoted(&b, ep->cfg->name);
        rc |= LIT(&b, ":{");
        rc |= members(&b, ep);
        rc |= LIT(&b, "}");
    }
    rc |= LIT(&b, "}}");
    respond_json(req, 200, &b, rc);
}

static int fault_members(struct sl_buf *b, struct sl_sim_endpoint *ep)
{
    int rc = LIT(b, "\"runtime\":");
    uv_mutex_lock(&ep->fault_lock);
    rc |= sl_sim_rules_append_json(b, ep->runtime, ep->n_runtime);
    rc |= LIT(b, ",\"config\":");
    rc |= sl_sim_rules_append_json(b, ep->config_rules, ep->n_config_rules);
    uv_mutex_unlock(&ep->fault_lock);
    return rc;
}

static void list_faults(struct sl_sim *sim, struct sl_http_request *req)
{
    respond_per_endpoint(sim, req, fault_members);
}

static int stats_members(struct sl_buf *b, struct sl_sim_endpoint *ep)
{
    int rc = LIT(b, "\"flavor\":");
    rc |= quoted(b, ep->cfg->flavor == SL_SIM_FLAVOR_AZURE ? "azure" : "openai");
    rc |= LIT(b, ",\"region\":");
    rc |= quoted(b, ep->cfg->region);
    uint64_t last = atomic_load_explicit(&ep->last_request_ms, memory_order_relaxed);
    if (last)
        rc |= sl_buf_appendf(b, ",\"last_request_at\":%llu.%03llu",
                             (unsigned long long)(last / 1000), (unsigned long long)(last % 1000));
    else
        rc |= LIT(b, ",\"last_request_at\":null");
    rc |= LIT(b, ",\"unrouted\":");
    rc |= sl_sim_counters_append_json(b, &ep->stats);
    rc |= LIT(b, ",\"deployments\":{");
    for (size_t d = 0; d < ep->cfg->n_deployments; d++) {
        if (d)
            rc |= LIT(b, ",");
        rc |= quoted(b, ep->cfg->deployments[d].name);
        rc |= LIT(b, ":");
        rc |= sl_sim_counters_append_json(b, &ep->deployments[d].stats);
    }
    return rc | LIT(b, "}");
}

static void stats(struct sl_sim *sim, struct sl_http_request *req)
{
    respond_per_endpoint(sim, req, stats_members);
}

static void ok(struct sl_http_request *req)
{
    sl_http_respond(req, 200, SL_STR("application/json"), SL_STR("{\"ok\":true}"));
}

static void method_not_allowed(struct sl_http_request *req, const char *allow)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "this path answers %s", allow);
    sl_http_respond_error(req, 405, "MethodNotAllowed", msg);
}

bool sl_sim_on_admin_request(struct sl_sim *sim, struct sl_http_request *req)
{
    struct sl_str path = req->head.path, m = req->head.method;
    bool get = sl_str_eq(m, SL_STR("GET")), post = sl_str_eq(m, SL_STR("POST")),
         del = sl_str_eq(m, SL_STR("DELETE"));
    if (!sl_str_starts_with(path, SL_STR("/_sim/")))
        return false;
    if (sl_str_eq(path, SL_STR("/_sim/faults"))) {
        if (post)
            set_faults(sim, req);
        else if (get)
            list_faults(sim, req);
        else if (del) {
            if (each_endpoint(sim, req, clear_runtime))
                ok(req);
        } else
            method_not_allowed(req, "GET, POST, DELETE");
    } else if (sl_str_eq(path, SL_STR("/_sim/stats"))) {
        if (get)
            stats(sim, req);
        else
            method_not_allowed(req, "GET");
    } else if (sl_str_eq(path, SL_STR("/_sim/reset"))) {
        if (post) {
            if (each_endpoint(sim, req, sl_sim_endpoint_reset))
                ok(req);
        } else {
            method_not_allowed(req, "POST");
        }
    } else {
        sl_http_respond_error(req, 404, "NotFound",
                              "the control API serves /_sim/faults, /_sim/stats and /_sim/reset");
    }
    return true;
}
