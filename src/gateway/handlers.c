/*
 * What the gateway answers on its listeners. Public: /healthz (the process
 * is up), /readyz (it can serve: routes have backends), and the proxied
 * API. Admin: /healthz, /sluice/status, the web console (/console/), and the
 * simulator's control API; with an admin_token, only for those who send it.
 */
#include "gateway/internal.h"
#include "ledger/ledger.h"

static void respond_health(struct sl_http_request *req)
{
    if (!sl_str_eq(req->head.method, SL_STR("GET")) && !req->is_head) {
        struct sl_http_header allow = {SL_STR("Allow"), SL_STR("GET, HEAD")};
        static const char body[] = "{\"error\":{\"code\":\"MethodNotAllowed\",\"message\":\"/"
                                   "healthz supports GET and HEAD\"}}";
        struct sl_http_header hs[] = {{SL_STR("Content-Type"), SL_STR("application/json")}, allow};
        if (sl_http_start_response(req, 405, hs, 2, SL_HTTP_FRAMING_LENGTH, sizeof(body) - 1) ==
            SL_OK)
            sl_http_write(req, body, sizeof(body) - 1);
        sl_http_finish(req);
        return;
    }
    sl_http_respond(req, 200, SL_STR("application/json"), SL_STR("{\"status\":\"ok\"}"));
}

static void respond_not_found(struct sl_http_request *req)
{
    sl_http_respond_error(req, 404, "NotFound",
                          "this path is not served by the gateway; see docs/api.md for the paths "
                          "it serves");
}

void sl_gateway_on_public_request(struct sl_http_request *req, void *data)
{
    if (sl_str_eq(req->head.path, SL_STR("/healthz")))
        respond_health(req);
    else if (sl_str_eq(req->head.path, SL_STR("/readyz")))
        sl_proxy_on_readyz(req, data);
    else
        sl_proxy_on_request(req, data);
}

/* GET /sluice/usage?from=&to=&by=: the usage report of the ledger file, as JSON (the
 * report reads the file on this thread: it is the admin listener's, not a worker's). */
static void respond_usage(struct sl_http_request *req, const struct sl_config *cfg)
{
    if (!sl_str_eq(req->head.method, SL_STR("GET"))) {
        sl_http_respond_error(req, 405, "MethodNotAllowed", "/sluice/usage supports GET");
        return;
    }
    if (cfg->usage.db == NULL) {
        sl_http_respond_error(req, 404, "NotFound",
                              "the usage ledger is off: set usage.db in the configuration to "
                              "record and report usage");
        return;
    }
    struct sl_ledger_report_query q;
    struct sl_buf out, why;
    sl_buf_init(&out);
    sl_buf_init(&why);
    uint64_t now = sl_clock_unix_ms();
    sl_ledger_report_query_init(&q, now);
    int err = sl_ledger_report_query_parse(req->head.query, now, &q, &why);
    if (err != SL_OK)
        sl_http_respond_error(req, 400, "BadRequest", why.base ? why.base : "bad query");
    else if ((err = sl_ledger_report(cfg->usage.db, &q, &out, &why)) != SL_OK)
        sl_http_respond_error(req, err == SL_ENOTFOUND ? 404 : 500,
                              err == SL_ENOTFOUND ? "NotFound" : "InternalServerError",
                              why.base ? why.base : sl_strerror(err));
    else
        sl_http_respond(req, 200, SL_STR("application/json"), (struct sl_str){out.base, out.len});
    sl_buf_dispose(&out);
    sl_buf_dispose(&why);
}

void sl_gateway_on_admin_request(struct sl_http_request *req, void *data)
{
    struct sl_gateway_admin *admin = data;
    if (!sl_gateway_admin_allowed(req, admin->cfg))
        return; /* answered 401 or 403 */
    if (sl_str_eq(req->head.path, SL_STR("/healthz")))
        respond_health(req);
    else if (sl_console_owns(req->head.path))
        sl_console_on_request(req, admin->cfg, admin->proxy != NULL);
    else if (admin->proxy && sl_str_eq(req->head.path, SL_STR("/sluice/status")))
        sl_proxy_on_status(req, admin->proxy);
    else if (admin->proxy && sl_str_eq(req->head.path, SL_STR("/sluice/usage")))
        respond_usage(req, admin->cfg);
    else if (admin->proxy && sl_str_eq(req->head.path, SL_STR("/metrics")))
        sl_proxy_on_metrics(req, admin->proxy);
    else if (admin->sim == NULL || !sl_sim_on_admin_request(admin->sim, req))
        respond_not_found(req);
}
