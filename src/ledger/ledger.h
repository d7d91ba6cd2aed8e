/*
 * ledger: one record per proxied request (who, which route and backend,
 * tokens, cost, timings), written to SQLite (WAL) in batches by a thread of
 * its own, and the clients' budgets kept from the same numbers.
 *
 * Workers hand records over through a bounded queue and never wait: when
 * the queue is full a record is dropped and counted. The writer commits at
 * least every usage.flush_interval, so a crash loses at most that much;
 * sl_ledger_close writes everything still queued.
 *
 * Budgets: each record's tokens and cost count against the client's
 * budgets at once (in memory, per window); on start the current windows'
 * sums are read back from the file, so budgets survive restarts. Counters
 * are kept by client name, so they survive configuration reloads too.
 */
#ifndef SL_LEDGER_H
#define SL_LEDGER_H

#include "config/config.h"
#include "usage/usage.h"

struct sl_ledger;

/* One request, as recorded. Plain data (strings copied, cut to fit). */
struct sl_ledger_record {
    uint64_t time_unix_ms; /* when the request arrived */
    char request_id[40];
    char client[64], route[129], backend[64], region[64], model[129], version[64];
    int status;        /* sent to the client (0: the connection was cut) */
    unsigned attempts; /* backends tried */
    struct sl_usage usage;
    bool estimated;      /* the backend reported no usage: the counts are sluice's estimate */
    uint64_t latency_ms; /* arrival to the end of the answer */
    uint64_t ttft_ms;    /* arrival to the first byte of the answer; 0: none */
    uint64_t stream_ms;  /* first byte to the end, for streams; 0 otherwise */
    uint64_t cost;       /* millionths of USD (sl_usage_cost) */
    bool stream;
};

/*
 * Open (creating when needed) cfg->usage.db, read the budgets' current sums,
 * and start the writer thread: 0 and *out; SL_EIO with why naming the file
 * and what went wrong (cannot open, not a sluice ledger, corrupt).
 */
int sl_ledger_open(const struct sl_config *cfg, struct sl_ledger **out, struct sl_buf *why);
/* Write every queued record, stop the thread, close the file. */
void sl_ledger_close(struct sl_ledger *l);

/* Queue r (any thread, never blocks) and count it against client's budgets (client may be
 * NULL: no budgets). */
void sl_ledger_add(struct sl_ledger *l, const struct sl_config_client *client,
                   const struct sl_ledger_record *r);
/* Records dropped because the queue was full, since open. */
uint64_t sl_ledger_dropped(const struct sl_ledger *l);
/* Budget alerts recorded (the first time in their window), since open. */
uint64_t sl_ledger_alerts_sent(const struct sl_ledger *l);

/* A budget that is used up. */
struct sl_budget_refusal {
    size_t budget;          /* index into client->budgets */
    uint64_t resets_unix_s; /* when its window starts again */
    char message[256];      /* "client batch has used its daily budget of 100000 tokens; it
                             * resets at 2026-11-27T00:00:00Z" */
};

/* May client send a request now? SL_OK, or SL_EPERM when one of its budgets is used up
 * (*refusal says which). Alerts at a budget's alert_at are sent by sl_ledger_add. */
int sl_ledger_budget_check(struct sl_ledger *l, const struct sl_config_client *client,
                           uint64_t now_unix_ms, struct sl_budget_refusal *refusal);

/* ---- reports (report.c, report_format.c): read the file, never write it ---- */

enum sl_ledger_group {
    SL_LEDGER_BY_CLIENT,
    SL_LEDGER_BY_ROUTE,
    SL_LEDGER_BY_BACKEND,
    SL_LEDGER_BY_MODEL,
    SL_LEDGER_BY_DAY, /* UTC calendar day of the request's arrival */
};

/* Which requests a report covers and how it groups them. */
struct sl_ledger_report_query {
    uint64_t from_ms, to_ms; /* arrival time in [from_ms, to_ms), Unix milliseconds */
    enum sl_ledger_group by;
};

/* The defaults: the last 7 days up to now_ms, by client. */
void sl_ledger_report_query_init(struct sl_ledger_report_query *q, uint64_t now_ms);
/* "client", "route", "backend", "model", "day": SL_OK, or SL_EINVAL. */
int sl_ledger_group_parse(struct sl_str s, enum sl_ledger_group *out);
const char *sl_ledger_group_name(enum sl_ledger_group g);
/* A report time: an RFC 3339 date ("2026-11-26", its 00:00 UTC) or date-time
 * ("2026-11-26T10:00:00Z", "...10:00:00.5+02:00"), or a time before now_ms ("90m", "24h",
 * "7d", "30s"): SL_OK and *out_ms, or SL_EINVAL. */
int sl_ledger_parse_time(struct sl_str s, uint64_t now_ms, uint64_t *out_ms);
/* A query string's from, to and by (percent-encoded, as in a URL) over the defaults in q:
 * SL_OK, or SL_EINVAL with why naming the parameter. Other parameters are ignored. */
int sl_ledger_report_query_parse(struct sl_str query, uint64_t now_ms,
                                 struct sl_ledger_report_query *q, struct sl_buf *why);

/*
 * The report of the ledger file db for q, as JSON appended to out:
 *   {"from":RFC3339,"to":RFC3339,"by":"client","groups":[ROW...],"total":ROW}
 * ROW: {"key","requests","errors","prompt_tokens","cached_tokens","completion_tokens",
 * "reasoning_tokens","total_tokens","latency_p50_ms","latency_p95_ms","ttft_p50_ms",
 * "ttft_p95_ms","cost_micros","cost_usd","estimated"}, groups sorted by key. The file is
 * opened read-only (never created). SL_OK; SL_ENOTFOUND (no such file), SL_EINVAL (not a
 * sluice ledger, corrupt) or SL_EIO, with why saying so and naming the file.
 */
int sl_ledger_report(const char *db, const struct sl_ledger_report_query *q, struct sl_buf *out,
                     struct sl_buf *why);

enum sl_ledger_format { SL_LEDGER_TABLE, SL_LEDGER_CSV, SL_LEDGER_JSON };
/* "table", "csv", "json": SL_OK, or SL_EINVAL. */
int sl_ledger_format_parse(struct sl_str s, enum sl_ledger_format *out);
/* A report (sl_ledger_report's JSON) as an aligned table with a total line, as CSV (a
 * header and one line per group, no total), or as the JSON itself with a newline. SL_OK,
 * SL_EINVAL (not such JSON) or SL_ENOMEM. */
int sl_ledger_report_format(struct sl_str json, enum sl_ledger_format format, struct sl_buf *out);

#endif
