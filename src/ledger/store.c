/*
 * The SQLite file: schema, checks that a file is ours, and the statements
 * the writer uses. The file is marked with PRAGMA application_id, so an
 * unrelated SQLite database is refused instead of having tables added to
 * it, and PRAGMA user_version says which schema it holds.
 *
 * Values are stored as given: strings as the record holds them (empty
 * stays empty), counts and times as integers (SQLite's are signed 64-bit;
 * every value here is far below 2^63).
 */
#include "ledger/internal.h"

#include <string.h>

static const char schema_sql[] =
    "CREATE TABLE requests(\n"
    "  time_unix_ms INTEGER NOT NULL, request_id TEXT, client TEXT, route TEXT, backend TEXT,\n"
    "  region TEXT, model TEXT, version TEXT, status INTEGER, attempts INTEGER,\n"
    "  prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,\n"
    "  reasoning_tokens INTEGER, total_tokens INTEGER, estimated INTEGER, latency_ms INTEGER,\n"
    "  ttft_ms INTEGER, stream_ms INTEGER, cost_micros INTEGER, stream INTEGER);\n"
    "CREATE INDEX requests_time ON requests(time_unix_ms);\n"
    "CREATE INDEX requests_client_time ON requests(client, time_unix_ms);\n"
    /* One row per alert sent: the key keeps it to once per window, across restarts. */
    "CREATE TABLE budget_alerts(\n"
    "  client TEXT NOT NULL, \"window\" TEXT NOT NULL, window_start INTEGER NOT NULL,\n"
    "  budget INTEGER NOT NULL, level_ppm INTEGER NOT NULL, sent_unix_ms INTEGER NOT NULL,\n"
    "  PRIMARY KEY(client, \"window\", window_start, budget, level_ppm));\n"
    "PRAGMA application_id = 1397506885;\n" /* SL_LEDGER_APP_ID */
    "PRAGMA user_version = 1;\n";
_Static_assert(SL_LEDGER_APP_ID == 1397506885, "schema_sql spells the application id");

static const char insert_sql[] =
    "INSERT INTO requests(time_unix_ms, request_id, client, route, backend, region, model,\n"
    "  version, status, attempts, prompt_tokens, cached_tokens, completion_tokens,\n"
    "  reasoning_tokens, total_tokens, estimated, latency_ms, ttft_ms, stream_ms, cost_micros,\n"
    "  stream) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
static const char sums_sql[] = "SELECT SUM(total_tokens), SUM(cost_micros) FROM requests "
                               "WHERE client = ? AND time_unix_ms >= ?";
static const char alert_sql[] = "INSERT OR IGNORE INTO budget_alerts(client, \"window\", "
                                "window_start, budget, level_ppm, sent_unix_ms) "
                                "VALUES (?,?,?,?,?,?)";

/* One integer from a one-row query (a PRAGMA): SQLITE_OK and *out, or the error. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto done;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
done:
    sqlite3_finalize(st);
    return rc;
}

/* why gets "usage ledger FILE: what" plus SQLite's words for err when given. */
static void explain(struct sl_ledger *l, struct sl_buf *why, const char *what, bool sqlite_msg)
{
    if (why == NULL)
        return;
    sl_buf_appendf(why, "usage ledger %s: %s", l->path, what);
    if (sqlite_msg && l->db != NULL)
        sl_buf_appendf(why, " (%s)", sqlite3_errmsg(l->db));
}

/* The reading of a failed first query: not SQLite at all, damaged, or something else. */
static const char *open_failure(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
        return "not a SQLite database, so not a sluice ledger";
    case SQLITE_CORRUPT:
        return "the database is corrupt";
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
        return "cannot read or write the file";
    default:
        return "cannot use the database";
    }
}

/* Make an empty file a ledger, or check that an existing one is. */
static int check_schema(struct sl_ledger *l, struct sl_buf *why)
{
    int64_t app_id = 0, version = 0, n_tables = 0;
    int rc = query_int(l->db, "PRAGMA application_id", &app_id);
    if (rc == SQLITE_OK)
        rc = query_int(l->db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK)
        rc = query_int(l->db, "SELECT count(*) FROM sqlite_master", &n_tables);
    if (rc != SQLITE_OK) {
        explain(l, why, open_failure(rc), true);
        return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT ? SL_EINVAL : SL_EIO;
    }
    if (app_id == 0 && n_tables == 0) {
        char *err = NULL;
        rc = sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(l->db, schema_sql, NULL, NULL, &err);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            explain(l, why, "cannot create the ledger's tables", true);
            sqlite3_free(err);
            return SL_EIO;
        }
        return SL_OK;
    }
    if (app_id != SL_LEDGER_APP_ID) {
        explain(l, why,
                "not a sluice ledger (a SQLite database of something else; choose another "
                "file for usage.db)",
                false);
        return SL_EINVAL;
    }
    if (version > SL_LEDGER_SCHEMA_VERSION) {
        if (why != NULL)
            sl_buf_appendf(why,
                           "usage ledger %s: written by a newer sluice (schema version %lld; "
                           "this one knows up to %d)",
                           l->path, (long long)version, SL_LEDGER_SCHEMA_VERSION);
        return SL_EINVAL;
    }
    if (version < 1) {
        explain(l, why, "not a sluice ledger (it has no schema version)", false);
        return SL_EINVAL;
    }
    return SL_OK;
}

int sl_ledger_store_open(struct sl_ledger *l, struct sl_buf *why)
{
    int err = SL_EIO;
    /* NOMUTEX: after open only the writer thread uses the connection. */
    int rc = sqlite3_open_v2(
        l->path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        explain(l, why, "cannot open", true);
        goto fail;
    }
    sqlite3_extended_result_codes(l->db, 1);
    /* A report reading the file at the same time may hold a lock for a moment. */
    sqlite3_busy_timeout(l->db, 5000);
    if ((err = check_schema(l, why)) != SL_OK)
        goto fail;
    err = SL_EIO;
    sqlite3_stmt *st = NULL;
    const char *mode = NULL;
    /* WAL: readers (reports) never block the writer; NORMAL: a commit is durable against a
     * process crash at once, and against power loss at the next checkpoint. */
    if (sqlite3_prepare_v2(l->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mode = (const char *)sqlite3_column_text(st, 0);
    if (mode == NULL || strcmp(mode, "wal") != 0)
        sl_log_warn("usage ledger %s: cannot use WAL mode (journal mode %s); reports reading "
                    "it will block the writer",
                    l->path, mode != NULL ? mode : "unknown");
    sqlite3_finalize(st);
    if (sqlite3_exec(l->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        explain(l, why, "cannot set synchronous=NORMAL", true);
        goto fail;
    }
    /* A file with our mark but not our columns fails here. */
    if (sqlite3_prepare_v3(l->db, insert_sql, -1, SQLITE_PREPARE_PERSISTENT, &l->insert, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(l->db, sums_sql, -1, SQLITE_PREPARE_PERSISTENT, &l->sums, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(l->db, alert_sql, -1, SQLITE_PREPARE_PERSISTENT, &l->alert_insert,
                           NULL) != SQLITE_OK) {
        explain(l, why, "not a sluice ledger of this version (its tables differ)", true);
        err = SL_EINVAL;
        goto fail;
    }
    return SL_OK;
fail:
    sl_ledger_store_close(l);
    return err;
}

void sl_ledger_store_close(struct sl_ledger *l)
{
    sqlite3_finalize(l->insert);
    sqlite3_finalize(l->sums);
    sqlite3_finalize(l->alert_insert);
    l->insert = l->sums = l->alert_insert = NULL;
    if (l->db != NULL && sqlite3_close(l->db) != SQLITE_OK)
        sl_log_error("usage ledger %s: close: %s", l->path, sqlite3_errmsg(l->db));
    l->db = NULL;
}

int sl_ledger_store_sums(struct sl_ledger *l, const char *client, int64_t start_ms,
                         uint64_t *tokens, uint64_t *cost)
{
    sqlite3_bind_text(l->sums, 1, client, -1, SQLITE_STATIC);
    sqlite3_bind_int64(l->sums, 2, start_ms);
    int rc = sqlite3_step(l->sums);
    *tokens = *cost = 0;
    if (rc == SQLITE_ROW) {
        *tokens = (uint64_t)sqlite3_column_int64(l->sums, 0); /* NULL (no rows) reads as 0 */
        *cost = (uint64_t)sqlite3_column_int64(l->sums, 1);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(l->sums);
    sqlite3_clear_bindings(l->sums);
    return rc == SQLITE_DONE ? SL_OK : SL_EIO;
}

int sl_ledger_store_begin(struct sl_ledger *l)
{
    return sqlite3_exec(l->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? SL_OK : SL_EIO;
}

int sl_ledger_store_commit(struct sl_ledger *l)
{
    return sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? SL_OK : SL_EIO;
}

void sl_ledger_store_rollback(struct sl_ledger *l)
{
    if (!sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A record's fixed-size string: up to its NUL or its end. The statement reads it before
 * the cell is released, so SQLITE_STATIC is safe. */
static void bind_field(sqlite3_stmt *st, int col, const char *s, size_t cap)
{
    sqlite3_bind_text(st, col, s, (int)strnlen(s, cap), SQLITE_STATIC);
}
#define BIND_FIELD(st, col, field) bind_field((st), (col), (field), sizeof(field))

int sl_ledger_store_insert(struct sl_ledger *l, const struct sl_ledger_record *r)
{
    sqlite3_stmt *st = l->insert;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->time_unix_ms);
    BIND_FIELD(st, 2, r->request_id);
    BIND_FIELD(st, 3, r->client);
    BIND_FIELD(st, 4, r->route);
    BIND_FIELD(st, 5, r->backend);
    BIND_FIELD(st, 6, r->region);
    BIND_FIELD(st, 7, r->model);
    BIND_FIELD(st, 8, r->version);
    sqlite3_bind_int(st, 9, r->status);
    sqlite3_bind_int64(st, 10, r->attempts);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)r->usage.prompt);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)r->usage.cached);
    sqlite3_bind_int64(st, 13, (sqlite3_int64)r->usage.completion);
    sqlite3_bind_int64(st, 14, (sqlite3_int64)r->usage.reasoning);
    sqlite3_bind_int64(st, 15, (sqlite3_int64)r->usage.total);
    sqlite3_bind_int(st, 16, r->estimated);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)r->latency_ms);
    sqlite3_bind_int64(st, 18, (sqlite3_int64)r->ttft_ms);
    sqlite3_bind_int64(st, 19, (sqlite3_int64)r->stream_ms);
    sqlite3_bind_int64(st, 20, (sqlite3_int64)r->cost);
    sqlite3_bind_int(st, 21, r->stream);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SL_OK : SL_EIO;
}

/* One budget_alerts row: 1 when added, 0 when it was there, or SL_EIO. */
static int store_alert_level(struct sl_ledger *l, const struct sl_ledger_alert *a,
                             uint32_t level_ppm, uint64_t now_ms)
{
    sqlite3_stmt *st = l->alert_insert;
    sqlite3_bind_text(st, 1, a->client, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sl_ledger_window_name(a->window), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, a->window_start_ms);
    sqlite3_bind_int64(st, 4, a->budget);
    sqlite3_bind_int64(st, 5, level_ppm);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)now_ms);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return SL_EIO;
    return sqlite3_changes(l->db) > 0 ? 1 : 0;
}

int sl_ledger_store_alert(struct sl_ledger *l, const struct sl_ledger_alert *a, uint64_t now_ms)
{
    if (a->covers_ppm != 0 && store_alert_level(l, a, a->covers_ppm, now_ms) < 0)
        return SL_EIO;
    return store_alert_level(l, a, a->level_ppm, now_ms);
}
