/*
 * GET /metrics on the admin listener: the registry's counters and
 * histograms (src/metrics/), then what is read at scrape time: the current
 * configuration's backends (circuit state, remaining open time, attempts in
 * flight, recent time to first byte) and the ledger's own counters.
 */
#include "proxy/internal.h"

#include <stdio.h>
#include <stdlib.h>

/* The backends of the configuration, copied for one scrape. */
struct backends {
    struct sl_balance_backend_view *v; /* owned: n */
    size_t n, cap;
};

static void add_backend(void *arg, const struct sl_balance_backend_view *v)
{
    struct backends *bs = arg;
    if (bs->n < bs->cap)
        bs->v[bs->n++] = *v;
}

static const char *state_label(enum sl_balance_state s)
{
    return s == SL_BALANCE_OPEN ? "open" : s == SL_BALANCE_HALF_OPEN ? "half_open" : "closed";
}

/* value / 10^digits, e.g. 1.234 for (1234, 3). */
static void fixed(char *buf, size_t size, uint64_t value, unsigned digits)
{
    uint64_t scale = digits == 3 ? 1000 : 1000000;
    snprintf(buf, size, "%llu.%0*llu", (unsigned long long)(value / scale), (int)digits,
             (unsigned long long)(value % scale));
}

static int write_backends(const struct backends *bs, uint64_t now, struct sl_buf *out)
{
    char num[32];
    int err = sl_metrics_write_family(
        out, "sluice_backend_state", "gauge",
        "The backend's circuit: 1 for its current state (closed: serving; open: left alone "
        "after a 429 or failures; half_open: one trial request decides), 0 for the others.");
    static const enum sl_balance_state states[] = {SL_BALANCE_CLOSED, SL_BALANCE_OPEN,
                                                   SL_BALANCE_HALF_OPEN};
    for (size_t i = 0; err == SL_OK && i < bs->n; i++)
        for (size_t s = 0; err == SL_OK && s < SL_ARRAY_LEN(states); s++) {
            if ((err = sl_buf_append_str(out, SL_STR("sluice_backend_state{backend=\""))) ==
                    SL_OK &&
                (err = sl_metrics_write_label_value(out, sl_str_from_cstr(bs->v[i].name))) == SL_OK)
                err = sl_buf_appendf(out, "\",state=\"%s\"} %d\n", state_label(states[s]),
                                     bs->v[i].state == states[s]);
        }
    if (err == SL_OK)
        err = sl_metrics_write_family(out, "sluice_backend_retry_after_seconds", "gauge",
                                      "Seconds until an open circuit lets the backend serve "
                                      "again (0 unless open).");
    for (size_t i = 0; err == SL_OK && i < bs->n; i++) {
        uint64_t until = bs->v[i].until_ms;
        fixed(num, sizeof(num), until > now ? until - now : 0, 3);
        err = sl_metrics_write_sample1(out, "sluice_backend_retry_after_seconds", "backend",
                                       bs->v[i].name, num);
    }
    if (err == SL_OK)
        err = sl_metrics_write_family(out, "sluice_backend_in_flight", "gauge",
                                      "Attempts sent to the backend and not yet answered.");
    for (size_t i = 0; err == SL_OK && i < bs->n; i++) {
        snprintf(num, sizeof(num), "%llu", (unsigned long long)bs->v[i].in_flight);
        err = sl_metrics_write_sample1(out, "sluice_backend_in_flight", "backend", bs->v[i].name,
                                       num);
    }
    if (err == SL_OK)
        err = sl_metrics_write_family(out, "sluice_backend_ttfb_seconds", "gauge",
                                      "The backend's recent time to the response head (a moving "
                                      "average; absent before its first answer).");
    for (size_t i = 0; err == SL_OK && i < bs->n; i++) {
        if (bs->v[i].ttfb_us == 0)
            continue;
        fixed(num, sizeof(num), bs->v[i].ttfb_us, 6);
        err = sl_metrics_write_sample1(out, "sluice_backend_ttfb_seconds", "backend", bs->v[i].name,
                                       num);
    }
    return err;
}

static int write_ledger(struct sl_ledger *ledger, struct sl_buf *out)
{
    char num[32];
    snprintf(num, sizeof(num), "%llu",
             (unsigned long long)(ledger ? sl_ledger_dropped(ledger) : 0));
    int err = sl_metrics_write_family(out, "sluice_ledger_dropped_total", "counter",
                                      "Usage records lost because the ledger's queue was full "
                                      "(none is expected).");
    if (err == SL_OK)
        err = sl_metrics_write_sample1(out, "sluice_ledger_dropped_total", NULL, NULL, num);
    snprintf(num, sizeof(num), "%llu",
             (unsigned long long)(ledger ? sl_ledger_alerts_sent(ledger) : 0));
    if (err == SL_OK)
        err = sl_metrics_write_family(out, "sluice_budget_alerts_total", "counter",
                                      "Budget alerts raised (a budget reached its alert_at share "
                                      "or 100 %, once per window).");
    if (err == SL_OK)
        err = sl_metrics_write_sample1(out, "sluice_budget_alerts_total", NULL, NULL, num);
    return err;
}

void sl_proxy_on_metrics(struct sl_http_request *req, struct sl_proxy *p)
{
    if (!sl_str_eq(req->head.method, SL_STR("GET")) && !req->is_head) {
        struct sl_http_header allow = {SL_STR("Allow"), SL_STR("GET, HEAD")};
        sl_http_respond_error_with(req, 405, "MethodNotAllowed", "/metrics supports GET and HEAD",
                                   &allow, 1);
        return;
    }
    struct sl_buf body;
    sl_buf_init(&body);
    struct sl_proxy_conf *conf = sl_proxy_conf_acquire(p);
    uint64_t now = uv_now(sl_http_request_loop(req));
    struct backends bs = {NULL, 0, conf->cfg->n_backends};
    int err = SL_OK;
    if (bs.cap && (bs.v = calloc(bs.cap, sizeof(*bs.v))) == NULL)
        err = SL_ENOMEM;
    if (err == SL_OK) {
        sl_balance_for_each_backend(conf->balance, now, add_backend, &bs);
        err = sl_metrics_render(p->metrics, &body);
    }
    if (err == SL_OK)
        err = write_backends(&bs, now, &body);
    if (err == SL_OK)
        err = write_ledger(p->ledger, &body);
    if (err == SL_OK)
        err = sl_metrics_write_family(&body, "sluice_build_info", "gauge",
                                      "Always 1; the running sluice's version.");
    if (err == SL_OK)
        err = sl_metrics_write_sample1(&body, "sluice_build_info", "version", SL_VERSION, "1");
    /* The names in bs belong to the configuration: release it only now. */
    sl_proxy_conf_release(conf);
    free(bs.v);
    if (err)
        sl_http_respond_error(req, 500, "InternalServerError", "out of memory");
    else
        sl_http_respond(req, 200, SL_STR("text/plain; version=0.0.4; charset=utf-8"),
                        (struct sl_str){body.base ? body.base : "", body.len});
    sl_buf_dispose(&body);
}
