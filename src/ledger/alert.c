/*
 * Budget alerts, once the writer has recorded one as new: a log line, a
 * counter, and (when alerts.webhook is set) a JSON POST. The POST runs on
 * the writer's curl multi handle, which the writer also waits on between
 * batches, so a slow or dead webhook never holds up the records: it gets
 * 5 s and one retry, and its failures are logged.
 */
#include "ledger/internal.h"

#include <stdlib.h>
#include <string.h>

#define WEBHOOK_TIMEOUT_MS 5000
#define WEBHOOK_ATTEMPTS 2

/* One POST in flight. Owns its easy handle, headers and body. */
struct sl_ledger_webhook {
    struct sl_ledger_webhook *next;
    CURL *easy;
    struct curl_slist *headers;
    struct sl_buf body; /* CURLOPT_POSTFIELDS points here */
    unsigned attempts;
    char client[64];
};

/* "12.345678" */
static void format_micros(uint64_t micros, char *out, size_t outlen)
{
    snprintf(out, outlen, "%llu.%06llu", (unsigned long long)(micros / 1000000),
             (unsigned long long)(micros % 1000000));
}

/* The larger of the token and money shares used. */
static double share_used(const struct sl_ledger_alert *a)
{
    double s = 0;
    if (a->limit_tokens != 0)
        s = (double)a->used_tokens / (double)a->limit_tokens;
    if (a->limit_cost != 0 && (double)a->used_cost / (double)a->limit_cost > s)
        s = (double)a->used_cost / (double)a->limit_cost;
    return s;
}

static int alert_json(const struct sl_ledger_alert *a, uint64_t now_ms, struct sl_buf *b)
{
    char start[32], now[32], used[32], limit[32];
    sl_clock_format(a->window_start_ms, false, start, sizeof(start));
    sl_clock_format((int64_t)now_ms, false, now, sizeof(now));
    int err = sl_buf_append_str(b, SL_STR("{\"type\":\"budget_alert\",\"client\":\""));
    if (err == SL_OK)
        err = sl_buf_append_json_escaped(b, sl_str_from_cstr(a->client));
    if (err == SL_OK)
        err = sl_buf_appendf(b, "\",\"window\":\"%s\",\"window_start\":\"%s\",\"budget\":%u",
                             sl_ledger_window_name(a->window), start, a->budget);
    if (err == SL_OK)
        err = sl_buf_appendf(
            b, ",\"used_tokens\":%llu,\"limit_tokens\":", (unsigned long long)a->used_tokens);
    if (err == SL_OK)
        err = a->limit_tokens != 0 ? sl_buf_appendf(b, "%llu", (unsigned long long)a->limit_tokens)
                                   : sl_buf_append_str(b, SL_STR("null"));
    format_micros(a->used_cost, used, sizeof(used));
    if (err == SL_OK)
        err = sl_buf_appendf(b, ",\"used_cost\":\"%s\",\"limit_cost\":", used);
    format_micros(a->limit_cost, limit, sizeof(limit));
    if (err == SL_OK)
        err = a->limit_cost != 0 ? sl_buf_appendf(b, "\"%s\"", limit)
                                 : sl_buf_append_str(b, SL_STR("null"));
    if (err == SL_OK)
        err = sl_buf_appendf(b, ",\"share\":%.6g,\"threshold\":%.6g,\"time\":\"%s\"}",
                             share_used(a), a->level_ppm / 1e6, now);
    return err;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    return size * nmemb;
}

static void webhook_free(struct sl_ledger_webhook *w)
{
    if (w->easy != NULL)
        curl_easy_cleanup(w->easy);
    curl_slist_free_all(w->headers);
    sl_buf_dispose(&w->body);
    free(w);
}

static void webhook_start(struct sl_ledger *l, const struct sl_ledger_alert *a, uint64_t now_ms)
{
    struct sl_ledger_webhook *w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto fail;
    sl_buf_init(&w->body);
    memcpy(w->client, a->client, sizeof(w->client));
    if (alert_json(a, now_ms, &w->body) != SL_OK || (w->easy = curl_easy_init()) == NULL)
        goto fail;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h == NULL)
        goto fail;
    w->headers = h;
    curl_easy_setopt(w->easy, CURLOPT_URL, l->webhook);
    curl_easy_setopt(w->easy, CURLOPT_HTTPHEADER, w->headers);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDS, w->body.base);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDSIZE, (long)w->body.len);
    curl_easy_setopt(w->easy, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
    curl_easy_setopt(w->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(w->easy, CURLOPT_PRIVATE, w);
    curl_easy_setopt(w->easy, CURLOPT_USERAGENT, "sluice/" SL_VERSION);
    w->attempts = 1;
    if (curl_multi_add_handle(l->multi, w->easy) != CURLM_OK)
        goto fail;
    w->next = l->webhooks;
    l->webhooks = w;
    return;
fail:
    sl_log_error("budget alert for client %s: cannot start the webhook POST", a->client);
    if (w != NULL)
        webhook_free(w);
}

void sl_ledger_alert_send(struct sl_ledger *l, const struct sl_ledger_alert *a, uint64_t now_ms)
{
    char start[32], tokens[64] = "", money[96] = "";
    sl_clock_format(a->window_start_ms, false, start, sizeof(start));
    atomic_fetch_add_explicit(&l->alerts_sent, 1, memory_order_relaxed);
    if (a->limit_tokens != 0)
        snprintf(tokens, sizeof(tokens), "; %llu of %llu tokens",
                 (unsigned long long)a->used_tokens, (unsigned long long)a->limit_tokens);
    if (a->limit_cost != 0) {
        char used[32], limit[32];
        format_micros(a->used_cost, used, sizeof(used));
        format_micros(a->limit_cost, limit, sizeof(limit));
        snprintf(money, sizeof(money), "; %s of %s USD", used, limit);
    }
    /* Rounded down: 99.99 % used must not read as 100 %. */
    sl_log_warn("budget alert: client %s has used %.1f%% of its %s budget #%u (window from %s, "
                "alert at %.0f%%)%s%s",
                a->client, (double)(uint64_t)(share_used(a) * 1000) / 10,
                sl_ledger_window_adjective(a->window), a->budget, start, a->level_ppm / 1e4, tokens,
                money);
    if (l->webhook != NULL && l->multi != NULL)
        webhook_start(l, a, now_ms);
}

static void webhook_unlink(struct sl_ledger *l, struct sl_ledger_webhook *w)
{
    for (struct sl_ledger_webhook **p = &l->webhooks; *p != NULL; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

void sl_ledger_alert_collect(struct sl_ledger *l)
{
    int running, left;
    CURLMsg *msg;
    curl_multi_perform(l->multi, &running);
    while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct sl_ledger_webhook *w = NULL;
        long status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&w);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(l->multi, w->easy);
        if (rc == CURLE_OK && status >= 200 && status < 300) {
            webhook_unlink(l, w);
            webhook_free(w);
            continue;
        }
        bool retry = w->attempts < WEBHOOK_ATTEMPTS && !atomic_load(&l->stop);
        sl_log_warn("budget alert for client %s: webhook POST failed (%s%s%ld)%s", w->client,
                    rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP status",
                    rc != CURLE_OK ? ", status " : " ", status,
                    retry ? "; trying once more" : "; giving up");
        if (retry) {
            w->attempts++;
            if (curl_multi_add_handle(l->multi, w->easy) == CURLM_OK)
                continue;
        }
        webhook_unlink(l, w);
        webhook_free(w);
    }
}

void sl_ledger_alert_abort(struct sl_ledger *l)
{
    while (l->webhooks != NULL) {
        struct sl_ledger_webhook *w = l->webhooks;
        l->webhooks = w->next;
        sl_log_warn("budget alert for client %s: webhook POST abandoned at shutdown", w->client);
        curl_multi_remove_handle(l->multi, w->easy);
        webhook_free(w);
    }
}
