/* The ledger file: records read back exactly, close writes everything, the flush interval
 * bounds how long a record waits, and files that are not a sluice ledger are refused. */
#include "ledger_test.h"

#include <fcntl.h>
#include <sys/stat.h>

static void test_round_trip(void **state)
{
    struct sl_config *cfg = load_config(NULL, NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    struct sl_ledger_record r;
    memset(&r, 0, sizeof(r));
    r.time_unix_ms = T0 + 123;
    snprintf(r.request_id, sizeof(r.request_id), "0123456789abcdef0123456789abcdef");
    snprintf(r.client, sizeof(r.client), "batch");
    snprintf(r.route, sizeof(r.route), "gpt-4o");
    snprintf(r.backend, sizeof(r.backend), "ptu-eastus");
    snprintf(r.region, sizeof(r.region), "eastus");
    snprintf(r.model, sizeof(r.model), "gpt-4o");
    snprintf(r.version, sizeof(r.version), "2024-08-06");
    r.status = 429;
    r.attempts = 3;
    r.usage = (struct sl_usage){
        .prompt = 1000, .cached = 256, .completion = 300, .reasoning = 64, .total = 1300};
    r.estimated = true;
    r.latency_ms = 1234;
    r.ttft_ms = 210;
    r.stream_ms = 1024;
    r.cost = 5500;
    r.stream = true;
    /* Fields filled to the last byte (no NUL) are written cut at their size. */
    memset(r.model, 'm', sizeof(r.model));
    sl_ledger_add(l, NULL, &r);
    struct sl_ledger_record empty = make_record("", T0, 0, 0);
    empty.backend[0] = '\0';
    empty.status = 0;
    sl_ledger_add(l, NULL, &empty);
    sl_ledger_close(l);

    sqlite3 *db = db_open();
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT time_unix_ms, request_id, client, route, backend, region, "
                           "model, version, status, attempts, prompt_tokens, cached_tokens, "
                           "completion_tokens, reasoning_tokens, total_tokens, estimated, "
                           "latency_ms, ttft_ms, stream_ms, cost_micros, stream FROM requests "
                           "ORDER BY rowid",
                           -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), T0 + 123);
    assert_string_equal(sqlite3_column_text(st, 1), "0123456789abcdef0123456789abcdef");
    assert_string_equal(sqlite3_column_text(st, 2), "batch");
    assert_string_equal(sqlite3_column_text(st, 3), "gpt-4o");
    assert_string_equal(sqlite3_column_text(st, 4), "ptu-eastus");
    assert_string_equal(sqlite3_column_text(st, 5), "eastus");
    assert_int_equal(sqlite3_column_bytes(st, 6), sizeof(r.model));
    assert_string_equal(sqlite3_column_text(st, 7), "2024-08-06");
    int64_t want[] = {429, 3, 1000, 256, 300, 64, 1300, 1, 1234, 210, 1024, 5500, 1};
    for (int i = 0; i < (int)SL_ARRAY_LEN(want); i++)
        assert_int_equal(sqlite3_column_int64(st, 8 + i), want[i]);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(st, 2), "");
    assert_string_equal(sqlite3_column_text(st, 4), "");
    assert_int_equal(sqlite3_column_int64(st, 8), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    sqlite3 *db2 = db_open();
    assert_int_equal(sqlite3_prepare_v2(db2, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db2);
    assert_int_equal(db_int("PRAGMA user_version"), 1);
    sl_config_unref(cfg);
}

/* Everything queued is in the file after close, even with a flush interval far away. */
static void test_close_writes_all(void **state)
{
    struct sl_config *cfg = load_config("flush_interval: 60s", NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    for (uint64_t i = 0; i < 5000; i++) {
        struct sl_ledger_record r = make_record("a", T0 + i, 10, 1);
        sl_ledger_add(l, NULL, &r);
    }
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM requests"), 5000);
    assert_int_equal(db_int("SELECT count(DISTINCT time_unix_ms) FROM requests"), 5000);
    assert_int_equal(db_int("SELECT sum(total_tokens) FROM requests"), 50000);

    /* Reopening appends to the same file. */
    l = open_ok(cfg, T0);
    struct sl_ledger_record r = make_record("a", T0, 10, 1);
    sl_ledger_add(l, NULL, &r);
    sl_ledger_close(l);
    assert_int_equal(db_int("SELECT count(*) FROM requests"), 5001);
    sl_config_unref(cfg);
}

/* While the ledger stays open, a record is in the file within flush_interval (plus slack
 * for a loaded machine), seen through a second connection. */
static void test_flush_interval(void **state)
{
    struct sl_config *cfg = load_config("flush_interval: 50ms", NULL);
    struct sl_ledger *l = open_ok(cfg, T0);
    uint64_t worst = 0;
    for (int round = 1; round <= 5; round++) {
        struct sl_ledger_record r = make_record("a", T0 + (uint64_t)round, 10, 1);
        uint64_t t0 = now_mono_ms();
        sl_ledger_add(l, NULL, &r);
        while (db_int("SELECT count(*) FROM requests") < round) {
            assert_true(now_mono_ms() - t0 < 1000);
            sleep_ms(2);
        }
        worst = SL_MAX(worst, now_mono_ms() - t0);
        sleep_ms(17 * (unsigned)round % 50); /* land at different points of the interval */
    }
    print_message("flush interval 50 ms: slowest record visible after %llu ms\n",
                  (unsigned long long)worst);
    assert_true(worst <= 50 + 150);
    sl_ledger_close(l);
    sl_config_unref(cfg);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void expect_refused(const struct sl_config *cfg, int want_err, const char *msg)
{
    struct sl_ledger *l = (struct sl_ledger *)1;
    struct sl_buf why;
    sl_buf_init(&why);
    assert_int_equal(sl_ledger_open_at(cfg, T0, &l, &why), want_err);
    assert_null(l);
    assert_non_null(why.base);
    print_message("refused: %s\n", why.base);
    assert_non_null(strstr(why.base, db_path));
    if (strstr(why.base, msg) == NULL)
        fail_msg("got \"%s\", want ...%s...", why.base, msg);
    sl_buf_dispose(&why);
}

static void exec_sql(const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
    sqlite3_close(db);
}

static void test_not_a_ledger(void **state)
{
    struct sl_config *cfg = load_config(NULL, NULL);

    /* Not SQLite at all. */
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(db_path, junk, sizeof(junk));
    expect_refused(cfg, SL_EIO, "not a SQLite database");

    /* Another program's SQLite database: refused, and left alone. */
    unlink(db_path);
    exec_sql("CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('x');");
    expect_refused(cfg, SL_EIO, "not a sluice ledger");
    assert_int_equal(db_int("SELECT count(*) FROM sqlite_master"), 1);

    /* A ledger from a newer sluice. */
    unlink(db_path);
    struct sl_ledger *l = open_ok(cfg, T0);
    sl_ledger_close(l);
    exec_sql("PRAGMA user_version = 7");
    expect_refused(cfg, SL_EIO, "newer sluice (schema version 7");

    /* Our mark, but not our tables. */
    unlink(db_path);
    exec_sql("CREATE TABLE requests(x); CREATE TABLE budget_alerts(y); "
             "PRAGMA application_id = 1397506885; PRAGMA user_version = 1;");
    expect_refused(cfg, SL_EIO, "tables differ");

    /* A ledger whose pages were overwritten. */
    unlink(db_path);
    l = open_ok(cfg, T0);
    for (uint64_t i = 0; i < 2000; i++) {
        struct sl_ledger_record r = make_record("a", T0 + i, 10, 1);
        sl_ledger_add(l, NULL, &r);
    }
    sl_ledger_close(l);
    int fd = open(db_path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, 100, 0), 100); /* the header */
    close(fd);
    expect_refused(cfg, SL_EIO, "usage ledger");

    /* A directory where the file should be. */
    unlink(db_path);
    assert_int_equal(mkdir(db_path, 0755), 0);
    expect_refused(cfg, SL_EIO, "usage ledger");
    rmdir(db_path);
    sl_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_writes_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_ledger, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
