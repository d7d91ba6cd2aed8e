/*
 * metrics: the counters and histograms behind GET /metrics (Prometheus text
 * format 0.0.4), named after the OpenTelemetry GenAI conventions where they
 * apply (gen_ai_client_token_usage, gen_ai_server_time_to_first_token_seconds,
 * gen_ai_client_operation_duration_seconds) and sluice_* otherwise.
 *
 * One registry per process, created with the proxy and kept across
 * configuration reloads: series are keyed by names (client, route, backend,
 * model, status), never by configuration indices. Each worker thread writes
 * only its own shard (no locks, no atomic read-modify-write: a relaxed load
 * and store of counters it alone writes); the scraper reads every shard with
 * relaxed loads and sums them. A shard allocates only when a label
 * combination appears for the first time, up to max_series; beyond that,
 * calls count into one `_other` series per status and the overflow is
 * counted (sluice_metrics_series_overflow_total).
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include "core/core.h"
#include "ledger/ledger.h"

struct sl_metrics;

/* The default bound on label combinations per shard. */
#define SL_METRICS_MAX_SERIES 10000
/* The label value every name takes in the overflow series. */
#define SL_METRICS_OTHER "_other"

/* 0 and *out, or SL_ENOMEM. n_shards: one per worker thread (at least 1); max_series: label
 * combinations per shard (0: SL_METRICS_MAX_SERIES). */
int sl_metrics_new(unsigned n_shards, size_t max_series, struct sl_metrics **out);
void sl_metrics_free(struct sl_metrics *m);

/*
 * One finished call, as the ledger records it (any status, 0 for a cut
 * connection): counts the request, its tokens, cost, retries (attempts - 1)
 * and latencies. spill: a backend outside the route's first priority group
 * answered it. Only the thread that owns shard may call this for it.
 */
void sl_metrics_observe(struct sl_metrics *m, unsigned shard, const struct sl_ledger_record *r,
                        bool spill);

/* A call of route started (delta 1) or stopped (-1) waiting for a backend (the
 * sluice_queue_waiting gauge). Same threading rule. */
void sl_metrics_queue_add(struct sl_metrics *m, unsigned shard, const char *route, int delta);

/* The utilisation a provisioned (PTU) backend reported in its last answer, in millionths of
 * capacity (`azure-openai-deployment-utilization: 25.3%` is 253000). Same threading rule. */
void sl_metrics_ptu(struct sl_metrics *m, unsigned shard, const char *backend, uint64_t ppm,
                    uint64_t now_ms);
/* The value of an azure-openai-deployment-utilization header ("25.3%", "7%", "100.0 %") in
 * millionths: SL_OK, or SL_EINVAL for anything else (negative, over 1000 %, garbage). */
int sl_metrics_parse_utilization(struct sl_str value, uint64_t *ppm);

/* Append every family of the registry, with its # HELP and # TYPE lines. Any thread, any
 * time (the shards keep counting meanwhile). SL_OK or SL_ENOMEM. */
int sl_metrics_render(struct sl_metrics *m, struct sl_buf *out);

/* Label combinations dropped into the overflow series since start, over all shards. */
uint64_t sl_metrics_overflow(const struct sl_metrics *m);

/* ---- writing the exposition format (for families kept elsewhere: backend state...) ---- */
/* "# HELP name help\n# TYPE name type\n" (help escaped as the format requires). */
int sl_metrics_write_family(struct sl_buf *out, const char *name, const char *type,
                            const char *help);
/* v escaped for a label value (backslash, double quote and newline), without the quotes. */
int sl_metrics_write_label_value(struct sl_buf *out, struct sl_str v);
/* `name{label="value"} number\n` with one label (label may be NULL: no braces). */
int sl_metrics_write_sample1(struct sl_buf *out, const char *name, const char *label,
                             const char *value, const char *number);

#endif
