/*
 * Usage reports: the ledger's requests in a time range, grouped by client,
 * route, backend, model or UTC day, with sums of tokens and cost, error
 * counts and latency percentiles, as JSON (report_format.c turns that into
 * a table or CSV).
 *
 * The file is opened read-only, never created: a report on a wrong path
 * says so instead of leaving an empty database behind. It may be read while
 * a gateway writes it (WAL: the report sees the last commit).
 *
 * Percentiles are computed here, not in SQL: the rows come sorted by group,
 * each group's latencies and TTFTs are collected, sorted and read at the
 * nearest rank (the smallest value with at least p% of the values at or
 * below it). That costs 16 bytes a row (32 with the total), which is
 * nothing at the scale of a report (a million requests: 32 MB).
 */
#include "ledger/internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const group_names[] = {"client", "route", "backend", "model", "day"};
static const char *const group_columns[] = {
    "client", "route", "backend", "model",
    "strftime('%Y-%m-%d', time_unix_ms / 1000, 'unixepoch')"};

#define WEEK_MS (7 * 24 * 3600 * UINT64_C(1000))

void sl_ledger_report_query_init(struct sl_ledger_report_query *q, uint64_t now_ms)
{
    q->from_ms = now_ms > WEEK_MS ? now_ms - WEEK_MS : 0;
    q->to_ms = now_ms + 1; /* up to now, included */
    q->by = SL_LEDGER_BY_CLIENT;
}

const char *sl_ledger_group_name(enum sl_ledger_group g)
{
    return (size_t)g < SL_ARRAY_LEN(group_names) ? group_names[g] : "?";
}

int sl_ledger_group_parse(struct sl_str s, enum sl_ledger_group *out)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(group_names); i++)
        if (sl_str_eq(s, sl_str_from_cstr(group_names[i]))) {
            *out = (enum sl_ledger_group)i;
            return SL_OK;
        }
    return SL_EINVAL;
}

/* n decimal digits at p: true and *out. */
static bool digits(const char *p, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    *out = v;
    return true;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* "90s", "30m", "24h", "7d", "2w": a time that long before now. */
static int parse_relative(struct sl_str s, uint64_t now_ms, uint64_t *out_ms)
{
    static const struct {
        char unit;
        uint64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}, {'w', WEEK_MS}};
    if (s.len < 2 || s.len > 12)
        return SL_EINVAL;
    uint64_t n = 0;
    if (sl_str_to_u64((struct sl_str){s.base, s.len - 1}, &n) != SL_OK)
        return SL_EINVAL;
    for (size_t i = 0; i < SL_ARRAY_LEN(units); i++) {
        if (s.base[s.len - 1] != units[i].unit)
            continue;
        uint64_t back = n > UINT64_MAX / units[i].ms ? UINT64_MAX : n * units[i].ms;
        *out_ms = back < now_ms ? now_ms - back : 0;
        return SL_OK;
    }
    return SL_EINVAL;
}

int sl_ledger_parse_time(struct sl_str s, uint64_t now_ms, uint64_t *out_ms)
{
    const char *p = s.base;
    unsigned y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    if (s.len < 10 || p[4] != '-' || p[7] != '-')
        return parse_relative(s, now_ms, out_ms);
    if (!digits(p, 4, &y) || !digits(p + 5, 2, &mo) || !digits(p + 8, 2, &d) || y < 1970 ||
        mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return SL_EINVAL;
    int64_t offset_min = 0;
    if (s.len > 10) {
        /* THH:MM:SS[.fraction](Z|+HH:MM|-HH:MM) */
        size_t i = 19;
        if (s.len < 20 || (p[10] != 'T' && p[10] != 't' && p[10] != ' ') || p[13] != ':' ||
            p[16] != ':' || !digits(p + 11, 2, &h) || !digits(p + 14, 2, &mi) ||
            !digits(p + 17, 2, &sec) || h > 23 || mi > 59 || sec > 60)
            return SL_EINVAL;
        if (p[i] == '.') {
            size_t start = ++i;
            unsigned scale = 100;
            while (i < s.len && p[i] >= '0' && p[i] <= '9') {
                ms += (unsigned)(p[i] - '0') * scale;
                scale /= 10;
                i++;
            }
            if (i == start)
                return SL_EINVAL;
        }
        if (i + 1 == s.len && (p[i] == 'Z' || p[i] == 'z')) {
            /* UTC */
        } else if (i + 6 == s.len && (p[i] == '+' || p[i] == '-') && p[i + 3] == ':') {
            unsigned oh, om;
            if (!digits(p + i + 1, 2, &oh) || !digits(p + i + 4, 2, &om) || oh > 23 || om > 59)
                return SL_EINVAL;
            offset_min = (p[i] == '+' ? 1 : -1) * (int64_t)(oh * 60 + om);
        } else {
            return SL_EINVAL;
        }
    }
    if (sec == 60)
        sec = 59; /* a leap second reads as the second before it */
    int64_t t = sl_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    if (t < 0)
        return SL_EINVAL;
    *out_ms = (uint64_t)t * 1000 + ms;
    return SL_OK;
}

/* Percent-decode s into out (NUL-terminated): false when it does not fit or is malformed. */
static bool percent_decode(struct sl_str s, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.base[i];
        if (c == '%') {
            unsigned v = 0;
            for (size_t k = 1; k <= 2; k++) {
                char x = i + k < s.len ? s.base[i + k] : 0;
                int dv = x >= '0' && x <= '9'   ? x - '0'
                         : x >= 'a' && x <= 'f' ? x - 'a' + 10
                         : x >= 'A' && x <= 'F' ? x - 'A' + 10
                                                : -1;
                if (dv < 0)
                    return false;
                v = v * 16 + (unsigned)dv;
            }
            c = (char)v;
            i += 2;
        }
        if (n + 1 >= size)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

int sl_ledger_report_query_parse(struct sl_str query, uint64_t now_ms,
                                 struct sl_ledger_report_query *q, struct sl_buf *why)
{
    struct sl_str pair;
    while (sl_query_next(&query, &pair)) {
        const char *eq = memchr(pair.base, '=', pair.len);
        struct sl_str name = {pair.base, eq ? (size_t)(eq - pair.base) : pair.len};
        struct sl_str raw = eq ? (struct sl_str){eq + 1, pair.len - name.len - 1} : SL_STR_NULL;
        bool from = sl_str_eq(name, SL_STR("from")), to = sl_str_eq(name, SL_STR("to"));
        bool by = sl_str_eq(name, SL_STR("by"));
        if (!from && !to && !by)
            continue;
        char value[80];
        if (!percent_decode(raw, value, sizeof(value)) || value[0] == '\0') {
            sl_buf_appendf(why, "%.*s: give a value", (int)name.len, name.base);
            return SL_EINVAL;
        }
        struct sl_str v = sl_str_from_cstr(value);
        if (by && sl_ledger_group_parse(v, &q->by) != SL_OK) {
            sl_buf_appendf(why, "by: %s is not one of client, route, backend, model, day", value);
            return SL_EINVAL;
        }
        if ((from || to) && sl_ledger_parse_time(v, now_ms, from ? &q->from_ms : &q->to_ms)) {
            sl_buf_appendf(why,
                           "%s: %s is not a time: give an RFC 3339 date (2026-11-26) or "
                           "date-time (2026-11-26T10:00:00Z), or a time ago (24h, 7d)",
                           from ? "from" : "to", value);
            return SL_EINVAL;
        }
    }
    if (q->from_ms >= q->to_ms) {
        sl_buf_appendf(why, "from must be before to");
        return SL_EINVAL;
    }
    return SL_OK;
}

/* ---- the query ---- */

/* One group's sums, and the latencies and TTFTs of its rows. */
struct acc {
    uint64_t requests, errors, prompt, cached, completion, reasoning, total, cost, estimated;
    uint64_t *latency, *ttft; /* owned; n_latency, n_ttft values (a TTFT of 0: none) */
    size_t n_latency, n_ttft, cap_latency, cap_ttft;
};

static int push(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        uint64_t *p = realloc(*v, c * sizeof(*p));
        if (p == NULL)
            return SL_ENOMEM;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return SL_OK;
}

static void acc_clear(struct acc *a)
{
    uint64_t *lat = a->latency, *ttft = a->ttft;
    size_t cl = a->cap_latency, ct = a->cap_ttft;
    memset(a, 0, sizeof(*a));
    a->latency = lat;
    a->ttft = ttft;
    a->cap_latency = cl;
    a->cap_ttft = ct;
}

static void acc_dispose(struct acc *a)
{
    free(a->latency);
    free(a->ttft);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank p-th percentile of v (sorted here); "null" when there are none. */
static void append_percentile(struct sl_buf *out, const char *name, uint64_t *v, size_t n,
                              unsigned p, bool sorted)
{
    if (n == 0) {
        sl_buf_appendf(out, ",\"%s\":null", name);
        return;
    }
    if (!sorted)
        qsort(v, n, sizeof(*v), cmp_u64);
    size_t rank = (size_t)(((uint64_t)n * p + 99) / 100);
    sl_buf_appendf(out, ",\"%s\":%llu", name, (unsigned long long)v[rank ? rank - 1 : 0]);
}

static void append_row(struct sl_buf *out, struct sl_str key, struct acc *a)
{
    sl_buf_appendf(out, "{\"key\":\"");
    sl_buf_append_json_escaped(out, key);
    sl_buf_appendf(out,
                   "\",\"requests\":%llu,\"errors\":%llu,\"prompt_tokens\":%llu,"
                   "\"cached_tokens\":%llu,\"completion_tokens\":%llu,\"reasoning_tokens\":%llu,"
                   "\"total_tokens\":%llu",
                   (unsigned long long)a->requests, (unsigned long long)a->errors,
                   (unsigned long long)a->prompt, (unsigned long long)a->cached,
                   (unsigned long long)a->completion, (unsigned long long)a->reasoning,
                   (unsigned long long)a->total);
    append_percentile(out, "latency_p50_ms", a->latency, a->n_latency, 50, false);
    append_percentile(out, "latency_p95_ms", a->latency, a->n_latency, 95, true);
    append_percentile(out, "ttft_p50_ms", a->ttft, a->n_ttft, 50, false);
    append_percentile(out, "ttft_p95_ms", a->ttft, a->n_ttft, 95, true);
    sl_buf_appendf(out, ",\"cost_micros\":%llu,\"cost_usd\":%llu.%06llu,\"estimated\":%llu}",
                   (unsigned long long)a->cost, (unsigned long long)(a->cost / 1000000),
                   (unsigned long long)(a->cost % 1000000), (unsigned long long)a->estimated);
}

static uint64_t col_u64(sqlite3_stmt *st, int col)
{
    sqlite3_int64 v = sqlite3_column_int64(st, col);
    return v > 0 ? (uint64_t)v : 0;
}

/* Add the current row to a. */
static int acc_add(struct acc *a, sqlite3_stmt *st)
{
    int status = sqlite3_column_int(st, 1);
    a->requests++;
    a->errors += status >= 400 || status == 0;
    a->prompt += col_u64(st, 2);
    a->cached += col_u64(st, 3);
    a->completion += col_u64(st, 4);
    a->reasoning += col_u64(st, 5);
    a->total += col_u64(st, 6);
    a->estimated += sqlite3_column_int(st, 7) != 0;
    a->cost += col_u64(st, 10);
    int err = push(&a->latency, &a->n_latency, &a->cap_latency, col_u64(st, 8));
    uint64_t ttft = col_u64(st, 9);
    if (err == SL_OK && ttft)
        err = push(&a->ttft, &a->n_ttft, &a->cap_ttft, ttft);
    return err;
}

static void append_time(struct sl_buf *out, const char *name, uint64_t ms)
{
    char when[40];
    sl_clock_format((int64_t)ms, true, when, sizeof(when));
    sl_buf_appendf(out, "\"%s\":\"%s\"", name, when);
}

/* One integer from a one-row query: SQLITE_OK and *out, or the error. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Why SQLite could not read the file, for a person. */
static int explain_failure(const char *path, sqlite3 *db, int rc, struct sl_buf *why)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
        sl_buf_appendf(why, "%s is not a sluice ledger (not a SQLite database)", path);
        return SL_EINVAL;
    case SQLITE_CORRUPT:
        sl_buf_appendf(why, "%s: the ledger is corrupt (%s)", path, sqlite3_errmsg(db));
        return SL_EINVAL;
    default:
        sl_buf_appendf(why, "cannot read %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
        return SL_EIO;
    }
}

/* Open path read-only and check that it is a ledger this sluice can read. */
static int open_ledger(const char *path, sqlite3 **out, struct sl_buf *why)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        sl_buf_appendf(why, "cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    }
    if (!S_ISREG(sb.st_mode)) {
        sl_buf_appendf(why, "cannot open %s: not a regular file", path);
        return SL_EINVAL;
    }
    sqlite3 *db = NULL;
    int64_t app_id = 0, version = 0;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, 5000);
        rc = query_int(db, "PRAGMA application_id", &app_id);
    }
    if (rc == SQLITE_OK)
        rc = query_int(db, "PRAGMA user_version", &version);
    int err = SL_EINVAL;
    if (rc != SQLITE_OK)
        err = explain_failure(path, db, rc, why);
    else if (app_id != SL_LEDGER_APP_ID)
        sl_buf_appendf(why, "%s is not a sluice ledger (%s)", path,
                       sb.st_size == 0 ? "an empty file" : "a SQLite database of something else");
    else if (version > SL_LEDGER_SCHEMA_VERSION || version < 1)
        sl_buf_appendf(why,
                       "%s: a sluice ledger of schema version %lld, which this sluice "
                       "cannot read (it knows up to %d)",
                       path, (long long)version, SL_LEDGER_SCHEMA_VERSION);
    else
        err = SL_OK;
    if (err != SL_OK) {
        sqlite3_close(db);
        return err;
    }
    *out = db;
    return SL_OK;
}

int sl_ledger_report(const char *path, const struct sl_ledger_report_query *q, struct sl_buf *out,
                     struct sl_buf *why)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct acc group, all;
    struct sl_buf key, sql, j; /* j: the report, appended to out once whole */
    memset(&group, 0, sizeof(group));
    memset(&all, 0, sizeof(all));
    sl_buf_init(&key);
    sl_buf_init(&sql);
    sl_buf_init(&j);
    if ((size_t)q->by >= SL_ARRAY_LEN(group_columns)) {
        sl_buf_appendf(why, "no such grouping");
        return SL_EINVAL;
    }
    int err = open_ledger(path, &db, why);
    if (err != SL_OK)
        goto done;
    sl_buf_appendf(&sql,
                   "SELECT %s, status, prompt_tokens, cached_tokens, completion_tokens, "
                   "reasoning_tokens, total_tokens, estimated, latency_ms, ttft_ms, cost_micros "
                   "FROM requests WHERE time_unix_ms >= ?1 AND time_unix_ms < ?2 ORDER BY 1",
                   group_columns[q->by]);
    err = SL_ENOMEM;
    if (sql.base == NULL)
        goto done;
    int rc = sqlite3_prepare_v2(db, sql.base, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_ERROR) {
            sl_buf_appendf(why, "%s is not a sluice ledger of this version (its tables differ: %s)",
                           path, sqlite3_errmsg(db));
            err = SL_EINVAL;
        } else {
            err = explain_failure(path, db, rc, why);
        }
        goto done;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)SL_MIN(q->from_ms, (uint64_t)INT64_MAX));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)SL_MIN(q->to_ms, (uint64_t)INT64_MAX));
    sl_buf_append(&j, "{", 1);
    append_time(&j, "from", q->from_ms);
    sl_buf_append(&j, ",", 1);
    append_time(&j, "to", q->to_ms);
    sl_buf_appendf(&j, ",\"by\":\"%s\",\"groups\":[", group_names[q->by]);
    bool have_group = false;
    err = SL_OK;
    while (err == SL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        struct sl_str ks = {k ? k : "", (size_t)sqlite3_column_bytes(st, 0)};
        if (!have_group || !sl_str_eq(ks, (struct sl_str){key.base, key.len})) {
            if (have_group) {
                append_row(&j, (struct sl_str){key.base, key.len}, &group);
                sl_buf_append(&j, ",", 1);
            }
            acc_clear(&group);
            key.len = 0;
            if (sl_buf_append_str(&key, ks) != SL_OK || key.base == NULL)
                err = SL_ENOMEM;
            have_group = true;
        }
        if (err == SL_OK)
            err = acc_add(&group, st);
        if (err == SL_OK)
            err = acc_add(&all, st);
    }
    if (err == SL_OK && rc != SQLITE_DONE) {
        err = explain_failure(path, db, rc, why);
        goto done;
    }
    if (err != SL_OK) {
        sl_buf_appendf(why, "out of memory reading %s", path);
        goto done;
    }
    if (have_group)
        append_row(&j, (struct sl_str){key.base, key.len}, &group);
    sl_buf_appendf(&j, "],\"total\":");
    append_row(&j, SL_STR("total"), &all);
    /* The appends above are not checked one by one (only memory can make them fail): the
     * report is checked whole instead, which costs little next to the query. */
    json_t *check = sl_buf_append(&j, "}", 1) == SL_OK ? json_loadb(j.base, j.len, 0, NULL) : NULL;
    json_decref(check);
    if (check == NULL || sl_buf_append(out, j.base, j.len) != SL_OK) {
        sl_buf_appendf(why, "out of memory reading %s", path);
        err = SL_ENOMEM;
    }
done:
    sl_buf_dispose(&j);
    sqlite3_finalize(st);
    if (db)
        sqlite3_close(db);
    acc_dispose(&group);
    acc_dispose(&all);
    sl_buf_dispose(&key);
    sl_buf_dispose(&sql);
    return err;
}
