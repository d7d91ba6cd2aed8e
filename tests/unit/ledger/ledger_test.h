/*
 * Scaffolding shared by the ledger unit tests (tests only): a temporary
 * directory per test, configurations loaded from YAML, records made to
 * order, and a second SQLite connection to look at what the writer wrote.
 * Each test file is its own program, so the helpers are static inline.
 */
#ifndef SL_TESTS_LEDGER_TEST_H
#define SL_TESTS_LEDGER_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../load_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ledger/internal.h"

/* 2026-11-26T10:00:00Z, a Thursday. */
#define T0 UINT64_C(1795687200000)
#define HOUR_MS UINT64_C(3600000)
#define DAY_MS (24 * HOUR_MS)

#define KEY "'sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881'"

/* The test's directory and ledger file; made by setup, removed by teardown. */
static char dir[64];
static char db_path[128];

static inline int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-ledger-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(db_path, sizeof(db_path), "%s/usage.db", dir);
    return 0;
}

static inline int teardown(void **state)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads "usage: {db: <db_path>, EXTRA_USAGE}" plus more (clients, prices, alerts...). */
static inline struct sl_config *load_config(const char *usage_extra, const char *more)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "backends:\n"
             "  - {name: b1, url: 'http://127.0.0.1:1', model: gpt-4o}\n"
             "routes:\n"
             "  - {name: gpt-4o, backend: b1}\n"
             "prices:\n"
             "  - {model: gpt-4o, input: '2.50', output: 10}\n"
             "usage: {db: '%s'%s%s}\n"
             "%s",
             db_path, usage_extra != NULL ? ", " : "", usage_extra != NULL ? usage_extra : "",
             more != NULL ? more : "");
    return unit_load_config(yaml, strlen(yaml));
}

static inline struct sl_ledger *open_ok(const struct sl_config *cfg, uint64_t now_ms)
{
    struct sl_ledger *l = NULL;
    struct sl_buf why;
    sl_buf_init(&why);
    int err = sl_ledger_open_at(cfg, now_ms, &l, &why);
    if (err != SL_OK)
        fail_msg("open failed: %s: %.*s", sl_strerror(err), (int)why.len, why.base);
    sl_buf_dispose(&why);
    assert_non_null(l);
    return l;
}

/* A record of client at t with tokens in all (prompt 2/3 of them) and cost. */
static inline struct sl_ledger_record make_record(const char *client, uint64_t t, uint64_t tokens,
                                                  uint64_t cost)
{
    struct sl_ledger_record r;
    memset(&r, 0, sizeof(r));
    r.time_unix_ms = t;
    snprintf(r.request_id, sizeof(r.request_id), "req-%llu", (unsigned long long)t);
    snprintf(r.client, sizeof(r.client), "%s", client);
    snprintf(r.route, sizeof(r.route), "gpt-4o");
    snprintf(r.backend, sizeof(r.backend), "b1");
    snprintf(r.model, sizeof(r.model), "gpt-4o");
    r.status = 200;
    r.attempts = 1;
    r.usage.prompt = tokens - tokens / 3;
    r.usage.completion = tokens / 3;
    r.usage.total = tokens;
    r.usage.found = true;
    r.latency_ms = 100;
    r.cost = cost;
    return r;
}

/* A second connection to the ledger file (read only), as a report would open it. */
static inline sqlite3 *db_open(void)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

/* One integer from a query on a fresh connection (-1 when the query fails). */
static inline int64_t db_int(const char *sql)
{
    sqlite3 *db = db_open();
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static inline uint64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

#endif
