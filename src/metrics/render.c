/*
 * GET /metrics: the shards' series summed and written in the Prometheus
 * text format (0.0.4). The scraper copies every published series of every
 * shard (relaxed loads: each number is whole, the set a moment's), merges
 * equal label combinations, and for each family groups them by the labels
 * that family keeps. Histogram counts are the sums of their buckets, so
 * `le="+Inf"` and `_count` always agree.
 */
#include "metrics/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which labels a family keeps. */
enum {
    K_CLIENT = 1,
    K_ROUTE = 2,
    K_BACKEND = 4,
    K_MODEL = 8,
    K_CLASS = 16,  /* status_class */
    K_STATUS = 32, /* status */
};

#define NB (SL_METRICS_MAX_BUCKETS + 1)

struct hist_snap {
    uint64_t bucket[NB];
    uint64_t sum;
};

/* One label combination's numbers, summed over shards (and then over a family's group). */
struct snap {
    const struct sl_metrics_series *s; /* its labels (any shard's: keys never change) */
    uint64_t requests, spill, retries, prompt, cached, completion, reasoning, cost;
    struct hist_snap duration, ttft, input, output;
};

static uint64_t load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

static void hist_copy(struct hist_snap *d, const struct sl_metrics_hist *h)
{
    for (size_t i = 0; i < NB; i++)
        d->bucket[i] = load(&h->bucket[i]);
    d->sum = load(&h->sum);
}

static void hist_add(struct hist_snap *d, const struct hist_snap *h)
{
    for (size_t i = 0; i < NB; i++)
        d->bucket[i] += h->bucket[i];
    d->sum += h->sum;
}

static uint64_t hist_count(const struct hist_snap *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i < NB; i++)
        n += h->bucket[i];
    return n;
}

static void snap_copy(struct snap *d, const struct sl_metrics_series *s)
{
    d->s = s;
    d->requests = load(&s->requests);
    d->spill = load(&s->spill);
    d->retries = load(&s->retries);
    d->prompt = load(&s->prompt);
    d->cached = load(&s->cached);
    d->completion = load(&s->completion);
    d->reasoning = load(&s->reasoning);
    d->cost = load(&s->cost);
    hist_copy(&d->duration, &s->duration);
    hist_copy(&d->ttft, &s->ttft);
    hist_copy(&d->input, &s->input);
    hist_copy(&d->output, &s->output);
}

static void snap_add(struct snap *d, const struct snap *a)
{
    d->requests += a->requests;
    d->spill += a->spill;
    d->retries += a->retries;
    d->prompt += a->prompt;
    d->cached += a->cached;
    d->completion += a->completion;
    d->reasoning += a->reasoning;
    d->cost += a->cost;
    hist_add(&d->duration, &a->duration);
    hist_add(&d->ttft, &a->ttft);
    hist_add(&d->input, &a->input);
    hist_add(&d->output, &a->output);
}

static int class_rank(int status)
{
    return status >= 100 && status < 600 ? status / 100 : status == 0 ? 0 : 9;
}

static int compare(const struct sl_metrics_series *a, const struct sl_metrics_series *b,
                   unsigned mask)
{
    int c;
    if ((mask & K_CLIENT) && (c = strcmp(a->client, b->client)) != 0)
        return c;
    if ((mask & K_ROUTE) && (c = strcmp(a->route, b->route)) != 0)
        return c;
    if ((mask & K_BACKEND) && (c = strcmp(a->backend, b->backend)) != 0)
        return c;
    if ((mask & K_MODEL) && (c = strcmp(a->model, b->model)) != 0)
        return c;
    if ((mask & K_CLASS) && (c = class_rank(a->status) - class_rank(b->status)) != 0)
        return c;
    if ((mask & K_STATUS) && a->status != b->status)
        return a->status < b->status ? -1 : 1;
    return 0;
}

static int compare_snaps(const void *a, const void *b, void *mask)
{
    const struct snap *x = *(const struct snap *const *)a, *y = *(const struct snap *const *)b;
    return compare(x->s, y->s, *(const unsigned *)mask);
}

/* ---- writing ---- */

int sl_metrics_write_label_value(struct sl_buf *out, struct sl_str v)
{
    size_t start = 0;
    int err = SL_OK;
    for (size_t i = 0; i < v.len && err == SL_OK; i++) {
        const char *esc = v.base[i] == '\\'   ? "\\\\"
                          : v.base[i] == '"'  ? "\\\""
                          : v.base[i] == '\n' ? "\\n"
                                              : NULL;
        if (esc == NULL)
            continue;
        if ((err = sl_buf_append(out, v.base + start, i - start)) == SL_OK)
            err = sl_buf_append(out, esc, 2);
        start = i + 1;
    }
    return err ? err : sl_buf_append(out, v.base + start, v.len - start);
}

int sl_metrics_write_family(struct sl_buf *out, const char *name, const char *type,
                            const char *help)
{
    int err = sl_buf_appendf(out, "# HELP %s ", name);
    /* HELP text escapes only backslash and newline. */
    for (const char *p = help; err == SL_OK && *p; p++) {
        if (*p == '\\')
            err = sl_buf_append(out, "\\\\", 2);
        else if (*p == '\n')
            err = sl_buf_append(out, "\\n", 2);
        else
            err = sl_buf_append(out, p, 1);
    }
    return err ? err : sl_buf_appendf(out, "\n# TYPE %s %s\n", name, type);
}

int sl_metrics_write_sample1(struct sl_buf *out, const char *name, const char *label,
                             const char *value, const char *number)
{
    int err = sl_buf_append_str(out, sl_str_from_cstr(name));
    if (err == SL_OK && label) {
        if ((err = sl_buf_appendf(out, "{%s=\"", label)) == SL_OK &&
            (err = sl_metrics_write_label_value(out, sl_str_from_cstr(value))) == SL_OK)
            err = sl_buf_append(out, "\"}", 2);
    }
    return err ? err : sl_buf_appendf(out, " %s\n", number);
}

static int write_label(struct sl_buf *out, const char *name, const char *value)
{
    int err;
    if (out->len && (err = sl_buf_append(out, ",", 1)) != SL_OK)
        return err;
    if ((err = sl_buf_appendf(out, "%s=\"", name)) != SL_OK ||
        (err = sl_metrics_write_label_value(out, sl_str_from_cstr(value))) != SL_OK)
        return err;
    return sl_buf_append(out, "\"", 1);
}

/* The labels of s that mask keeps (without braces), into lbl (emptied first). */
static int write_labels(struct sl_buf *lbl, const struct sl_metrics_series *s, unsigned mask,
                        bool gen_ai)
{
    int err = SL_OK;
    char status[16];
    lbl->len = 0;
    if (mask & K_CLIENT)
        err = write_label(lbl, "client", s->client);
    if (err == SL_OK && (mask & K_ROUTE))
        err = write_label(lbl, "route", s->route);
    if (err == SL_OK && (mask & K_BACKEND))
        err = write_label(lbl, "backend", s->backend);
    if (err == SL_OK && (mask & K_MODEL))
        err = write_label(lbl, gen_ai ? "gen_ai_request_model" : "model", s->model);
    if (err == SL_OK && (mask & K_CLASS))
        err = write_label(lbl, "status_class", sl_metrics_status_class(s->status));
    if (err == SL_OK && (mask & K_STATUS)) {
        snprintf(status, sizeof(status), "%d", s->status);
        err = write_label(lbl, "status", status);
    }
    return err;
}

/* `name{lbl[,extra="v"]} number` */
static int write_sample(struct sl_buf *out, const char *name, const struct sl_buf *lbl,
                        const char *extra, const char *extra_value, const char *number)
{
    int err = sl_buf_append_str(out, sl_str_from_cstr(name));
    bool any = lbl->len || extra;
    if (err == SL_OK && any)
        err = sl_buf_append(out, "{", 1);
    if (err == SL_OK && lbl->len)
        err = sl_buf_append(out, lbl->base, lbl->len);
    if (err == SL_OK && extra) {
        if ((err = sl_buf_appendf(out, "%s%s=\"", lbl->len ? "," : "", extra)) == SL_OK &&
            (err = sl_metrics_write_label_value(out, sl_str_from_cstr(extra_value))) == SL_OK)
            err = sl_buf_append(out, "\"", 1);
    }
    if (err == SL_OK && any)
        err = sl_buf_append(out, "}", 1);
    return err ? err : sl_buf_appendf(out, " %s\n", number);
}

static void format_u64(char *buf, size_t size, uint64_t v)
{
    snprintf(buf, size, "%llu", (unsigned long long)v);
}

/* v / 10^digits as a decimal, trailing zeros trimmed ("0.01", "2.5", "1"). */
static void format_fixed(char *buf, size_t size, uint64_t v, unsigned digits)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < digits; i++)
        scale *= 10;
    uint64_t frac = v % scale;
    if (frac == 0) {
        snprintf(buf, size, "%llu", (unsigned long long)(v / scale));
        return;
    }
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(buf, size, "%llu.%0*llu", (unsigned long long)(v / scale), (int)digits,
             (unsigned long long)frac);
}

static int write_hist(struct sl_buf *out, const char *name, const struct sl_buf *lbl,
                      const char *extra, const char *extra_value, const struct sl_metrics_layout *l,
                      const struct hist_snap *h, struct sl_buf *tmp)
{
    char metric[128], le[32], num[32];
    uint64_t cum = 0;
    int err = SL_OK;
    /* The bucket's labels: lbl plus the extra one, then le. */
    tmp->len = 0;
    if (lbl->len)
        err = sl_buf_append(tmp, lbl->base, lbl->len);
    if (err == SL_OK && extra)
        err = write_label(tmp, extra, extra_value);
    snprintf(metric, sizeof(metric), "%s_bucket", name);
    for (size_t i = 0; err == SL_OK && i <= l->n; i++) {
        cum += h->bucket[i];
        if (i == l->n)
            snprintf(le, sizeof(le), "+Inf");
        else
            format_fixed(le, sizeof(le), l->bounds[i], l->millis ? 3 : 0);
        format_u64(num, sizeof(num), cum);
        err = write_sample(out, metric, tmp, "le", le, num);
    }
    if (err)
        return err;
    format_fixed(num, sizeof(num), h->sum, l->millis ? 3 : 0);
    snprintf(metric, sizeof(metric), "%s_sum", name);
    if ((err = write_sample(out, metric, tmp, NULL, NULL, num)) != SL_OK)
        return err;
    format_u64(num, sizeof(num), cum);
    snprintf(metric, sizeof(metric), "%s_count", name);
    return write_sample(out, metric, tmp, NULL, NULL, num);
}

/* ---- families ---- */

enum family {
    F_REQUESTS,
    F_ERRORS,
    F_TOKENS,
    F_COST,
    F_RETRIES,
    F_SPILL,
    F_TOKEN_USAGE,
    F_TTFT,
    F_DURATION,
};

static const struct family_desc {
    const char *name, *type, *help;
    unsigned mask;
    bool gen_ai;
} families[] = {
    [F_REQUESTS] = {"sluice_requests_total", "counter",
                    "Proxied requests that reached a client and route, by the status class the "
                    "client got (cut: the connection was cut after the answer began).",
                    K_CLIENT | K_ROUTE | K_BACKEND | K_CLASS, false},
    [F_ERRORS] = {"sluice_errors_total", "counter",
                  "Proxied requests answered with a status of 400 or more, by status.",
                  K_CLIENT | K_ROUTE | K_BACKEND | K_STATUS, false},
    [F_TOKENS] = {"sluice_tokens_total", "counter",
                  "Tokens used, as the backends reported them (or estimated when they did not), "
                  "by type: prompt (cached included), cached, completion (reasoning included), "
                  "reasoning.",
                  K_CLIENT | K_ROUTE | K_BACKEND, false},
    [F_COST] = {"sluice_cost_usd_total", "counter",
                "What the tokens cost in US dollars, from the configured price table.",
                K_CLIENT | K_ROUTE | K_BACKEND, false},
    [F_RETRIES] = {"sluice_retries_total", "counter",
                   "Attempts beyond the first: requests sent again to another backend.", K_ROUTE,
                   false},
    [F_SPILL] = {"sluice_spillover_total", "counter",
                 "Requests answered by a backend outside the route's first priority group.",
                 K_ROUTE | K_BACKEND, false},
    [F_TOKEN_USAGE] = {"gen_ai_client_token_usage", "histogram",
                       "Tokens used per request (OpenTelemetry gen_ai.client.token.usage), by "
                       "gen_ai_token_type: input (prompt) or output (completion).",
                       K_ROUTE | K_BACKEND | K_MODEL, true},
    [F_TTFT] = {"gen_ai_server_time_to_first_token_seconds", "histogram",
                "Seconds from a request's arrival to the first byte of its successful answer "
                "(OpenTelemetry gen_ai.server.time_to_first_token).",
                K_ROUTE | K_BACKEND | K_MODEL, true},
    [F_DURATION] = {"gen_ai_client_operation_duration_seconds", "histogram",
                    "Seconds from a request's arrival to the end of its answer (OpenTelemetry "
                    "gen_ai.client.operation.duration), by status class.",
                    K_ROUTE | K_BACKEND | K_MODEL | K_CLASS, true},
};

static int write_group(struct sl_buf *out, enum family f, const struct snap *g, struct sl_buf *lbl,
                       struct sl_buf *tmp)
{
    const struct family_desc *d = &families[f];
    char num[48];
    int err = write_labels(lbl, g->s, d->mask, d->gen_ai);
    if (err)
        return err;
    switch (f) {
    case F_REQUESTS:
    case F_ERRORS:
        format_u64(num, sizeof(num), g->requests);
        return write_sample(out, d->name, lbl, NULL, NULL, num);
    case F_TOKENS: {
        const char *types[] = {"prompt", "cached", "completion", "reasoning"};
        const uint64_t values[] = {g->prompt, g->cached, g->completion, g->reasoning};
        for (size_t i = 0; i < 4 && err == SL_OK; i++) {
            format_u64(num, sizeof(num), values[i]);
            err = write_sample(out, d->name, lbl, "type", types[i], num);
        }
        return err;
    }
    case F_COST:
        format_fixed(num, sizeof(num), g->cost, 6);
        return write_sample(out, d->name, lbl, NULL, NULL, num);
    case F_RETRIES:
        format_u64(num, sizeof(num), g->retries);
        return write_sample(out, d->name, lbl, NULL, NULL, num);
    case F_SPILL:
        format_u64(num, sizeof(num), g->spill);
        return write_sample(out, d->name, lbl, NULL, NULL, num);
    case F_TOKEN_USAGE:
        if (hist_count(&g->input) == 0)
            return SL_OK;
        if ((err = write_hist(out, d->name, lbl, "gen_ai_token_type", "input",
                              &sl_metrics_tokens_layout, &g->input, tmp)) != SL_OK)
            return err;
        return write_hist(out, d->name, lbl, "gen_ai_token_type", "output",
                          &sl_metrics_tokens_layout, &g->output, tmp);
    case F_TTFT:
        if (hist_count(&g->ttft) == 0)
            return SL_OK;
        return write_hist(out, d->name, lbl, NULL, NULL, &sl_metrics_ttft_layout, &g->ttft, tmp);
    case F_DURATION:
        return write_hist(out, d->name, lbl, NULL, NULL, &sl_metrics_duration_layout, &g->duration,
                          tmp);
    }
    return SL_OK;
}

/* One family: the snaps (merged by every label) grouped by the family's labels. */
static int write_family(struct sl_buf *out, enum family f, struct snap **order, size_t n,
                        struct sl_buf *lbl, struct sl_buf *tmp)
{
    const struct family_desc *d = &families[f];
    int err = sl_metrics_write_family(out, d->name, d->type, d->help);
    if (err)
        return err;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) /* errors_total: only statuses of 400 and more */
        if (f != F_ERRORS || order[i]->s->status >= 400)
            order[m++] = order[i];
    unsigned mask = d->mask;
    if (m > 1)
        qsort_r(order, m, sizeof(*order), compare_snaps, &mask);
    for (size_t i = 0; i < m && err == SL_OK;) {
        struct snap g = *order[i];
        size_t j = i + 1;
        for (; j < m && compare(order[j]->s, g.s, mask) == 0; j++)
            snap_add(&g, order[j]);
        err = write_group(out, f, &g, lbl, tmp);
        i = j;
    }
    return err;
}

/* Every shard's series, summed by their full label set: *snaps (malloc'd) and *n. */
static int collect(struct sl_metrics *m, struct snap **snaps, size_t *n)
{
    size_t total = 0;
    *n = 0;
    *snaps = NULL;
    /* The counts of this moment: series published later wait for the next scrape. */
    size_t *counts = malloc(m->n_shards * sizeof(*counts));
    if (counts == NULL)
        return SL_ENOMEM;
    for (unsigned i = 0; i < m->n_shards; i++)
        total += counts[i] = sl_metrics_table_count(&m->shards[i].series);
    struct snap *all = total ? malloc(total * sizeof(*all)) : NULL;
    struct snap **order = total ? malloc(total * sizeof(*order)) : NULL;
    if (total == 0 || all == NULL || order == NULL) {
        free(counts);
        free(all);
        free(order);
        return total ? SL_ENOMEM : SL_OK;
    }
    size_t k = 0;
    for (unsigned i = 0; i < m->n_shards; i++)
        for (size_t j = 0; j < counts[i]; j++) {
            snap_copy(&all[k], sl_metrics_table_at(&m->shards[i].series, j));
            order[k] = &all[k];
            k++;
        }
    free(counts);
    unsigned mask = K_CLIENT | K_ROUTE | K_BACKEND | K_MODEL | K_STATUS;
    qsort_r(order, total, sizeof(*order), compare_snaps, &mask);
    struct snap *merged = malloc(total * sizeof(*merged));
    if (merged == NULL) {
        free(all);
        free(order);
        return SL_ENOMEM;
    }
    size_t out = 0;
    for (size_t i = 0; i < total; i++) {
        if (out && compare(merged[out - 1].s, order[i]->s, mask) == 0)
            snap_add(&merged[out - 1], order[i]);
        else
            merged[out++] = *order[i];
    }
    free(all);
    free(order);
    *snaps = merged;
    *n = out;
    return SL_OK;
}

/* sluice_queue_waiting: the routes' counts summed over shards. */
static int write_queue(struct sl_metrics *m, struct sl_buf *out)
{
    int err = sl_metrics_write_family(out, "sluice_queue_waiting", "gauge",
                                      "Requests waiting now for a backend of the route to reopen.");
    char num[32];
    for (unsigned i = 0; err == SL_OK && i < m->n_shards; i++) {
        const struct sl_metrics_table *t = &m->shards[i].routes;
        for (size_t j = 0, n = sl_metrics_table_count(t); err == SL_OK && j < n; j++) {
            const struct sl_metrics_route *r = sl_metrics_table_at(t, j);
            /* Written once per name: the first shard that has it sums them all. */
            bool seen = false;
            for (unsigned a = 0; a < i && !seen; a++) {
                const struct sl_metrics_table *ta = &m->shards[a].routes;
                for (size_t b = 0, nb = sl_metrics_table_count(ta); b < nb && !seen; b++)
                    seen =
                        strcmp(((const struct sl_metrics_route *)sl_metrics_table_at(ta, b))->name,
                               r->name) == 0;
            }
            if (seen)
                continue;
            int64_t sum = 0;
            for (unsigned a = i; a < m->n_shards; a++) {
                const struct sl_metrics_table *ta = &m->shards[a].routes;
                for (size_t b = 0, nb = sl_metrics_table_count(ta); b < nb; b++) {
                    const struct sl_metrics_route *x = sl_metrics_table_at(ta, b);
                    if (strcmp(x->name, r->name) == 0)
                        sum += atomic_load_explicit((_Atomic int64_t *)&x->waiting,
                                                    memory_order_relaxed);
                }
            }
            snprintf(num, sizeof(num), "%lld", (long long)(sum > 0 ? sum : 0));
            err = sl_metrics_write_sample1(out, "sluice_queue_waiting", "route", r->name, num);
        }
    }
    return err;
}

/* sluice_backend_ptu_utilization_ratio: each backend's latest report over all shards. */
static int write_ptu(struct sl_metrics *m, struct sl_buf *out)
{
    int err = sl_metrics_write_family(
        out, "sluice_backend_ptu_utilization_ratio", "gauge",
        "The provisioned (PTU) deployment's utilisation from its last answer's "
        "azure-openai-deployment-utilization header (1 is 100 %).");
    char num[32];
    for (unsigned i = 0; err == SL_OK && i < m->n_shards; i++) {
        const struct sl_metrics_table *t = &m->shards[i].ptu;
        for (size_t j = 0, n = sl_metrics_table_count(t); err == SL_OK && j < n; j++) {
            const struct sl_metrics_ptu *p = sl_metrics_table_at(t, j);
            const struct sl_metrics_ptu *best = p;
            uint64_t best_at = load(&p->at_ms);
            bool earlier = false; /* written by an earlier shard already */
            for (unsigned a = 0; a < m->n_shards; a++) {
                const struct sl_metrics_table *ta = &m->shards[a].ptu;
                for (size_t b = 0, nb = sl_metrics_table_count(ta); b < nb; b++) {
                    const struct sl_metrics_ptu *x = sl_metrics_table_at(ta, b);
                    if (x == p || strcmp(x->name, p->name) != 0)
                        continue;
                    if (a < i)
                        earlier = true;
                    uint64_t at = load(&x->at_ms);
                    if (at > best_at) {
                        best = x;
                        best_at = at;
                    }
                }
            }
            if (earlier || best_at == 0)
                continue;
            format_fixed(num, sizeof(num), load(&best->ppm), 6);
            err = sl_metrics_write_sample1(out, "sluice_backend_ptu_utilization_ratio", "backend",
                                           p->name, num);
        }
    }
    return err;
}

int sl_metrics_render(struct sl_metrics *m, struct sl_buf *out)
{
    struct snap *snaps = NULL;
    size_t n = 0;
    struct sl_buf lbl, tmp;
    sl_buf_init(&lbl);
    sl_buf_init(&tmp);
    struct snap **order = NULL;
    int err = collect(m, &snaps, &n);
    if (err == SL_OK && n && (order = malloc(n * sizeof(*order))) == NULL)
        err = SL_ENOMEM;
    for (size_t f = 0; err == SL_OK && f < SL_ARRAY_LEN(families); f++) {
        for (size_t i = 0; i < n; i++)
            order[i] = &snaps[i];
        err = write_family(out, (enum family)f, order, n, &lbl, &tmp);
    }
    if (err == SL_OK)
        err = write_queue(m, out);
    if (err == SL_OK)
        err = write_ptu(m, out);
    if (err == SL_OK)
        err = sl_metrics_write_family(out, "sluice_metrics_series_overflow_total", "counter",
                                      "Observations counted in the _other series because a "
                                      "worker already holds the most label combinations it "
                                      "keeps.");
    if (err == SL_OK) {
        char num[32];
        format_u64(num, sizeof(num), sl_metrics_overflow(m));
        err =
            sl_metrics_write_sample1(out, "sluice_metrics_series_overflow_total", NULL, NULL, num);
    }
    free(order);
    free(snaps);
    sl_buf_dispose(&lbl);
    sl_buf_dispose(&tmp);
    return err;
}
