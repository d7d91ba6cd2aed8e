/* Loading struct sl_config from YAML: defaults, every kind of mistake with
 * its exact position, env interpolation, hostile YAML and refcounting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_test.h"

static void test_defaults(void **state)
{
    struct sl_config *c = NULL;
    assert_int_equal(sl_config_load_default(&c, &errs), SL_OK);
    assert_int_equal(errs.n, 0);
    assert_string_equal(c->source, "<default>");
    sl_config_unref(c);
    c = load_ok("");
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0].host, "0.0.0.0");
    assert_int_equal(c->listen[0].port, 8080);
    assert_string_equal(c->admin_listen.host, "127.0.0.1");
    assert_int_equal(c->admin_listen.port, 9090);
    assert_true(c->workers >= 1 && c->workers <= 256);
    assert_int_equal(c->limits.max_header_bytes, 16 * 1024);
    assert_int_equal(c->limits.max_body_bytes, 16 * 1024 * 1024);
    assert_int_equal(c->limits.header_timeout_ms, 10000);
    assert_int_equal(c->limits.request_timeout_ms, 60000);
    assert_int_equal(c->limits.idle_timeout_ms, 75000);
    assert_int_equal(c->limits.shutdown_timeout_ms, 30000);
    assert_int_equal(c->limits.max_connections, 10000);
    assert_int_equal(c->log.level, SL_LOG_INFO);
    assert_int_equal(c->log.format, SL_LOG_JSON);
    assert_true(c->log.access);
    sl_config_unref(c);

    /* Empty files, empty documents and empty sections mean defaults too. */
    const char *empties[] = {"", "# nothing\n", "---\n", "~\n", "limits:\nlog:\n  # off\n"};
    for (size_t i = 0; i < SL_ARRAY_LEN(empties); i++) {
        c = load_ok(empties[i]);
        assert_int_equal(c->limits.max_connections, 10000);
        sl_config_unref(c);
    }
}

static void test_values(void **state)
{
    struct sl_config *c = load_ok("listen: ['1.2.3.4:80', '[::1]:8443']\n"
                                  "admin_listen: 127.0.0.1:9999\n"
                                  "workers: 3\n"
                                  "limits:\n"
                                  "  max_header_bytes: 32KiB\n"
                                  "  max_body_bytes: 0\n"
                                  "  header_timeout: 500ms\n"
                                  "  request_timeout: 2m\n"
                                  "  idle_timeout: 1m30s\n"
                                  "  shutdown_timeout: 0\n"
                                  "  max_connections: 1\n"
                                  "log: {level: debug, format: text, access: false}\n");
    assert_int_equal(c->n_listen, 2);
    assert_string_equal(c->listen[1].host, "::1");
    assert_int_equal(c->listen[1].port, 8443);
    assert_int_equal(c->admin_listen.port, 9999);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->limits.max_header_bytes, 32768);
    assert_int_equal(c->limits.max_body_bytes, 0);
    assert_int_equal(c->limits.header_timeout_ms, 500);
    assert_int_equal(c->limits.request_timeout_ms, 120000);
    assert_int_equal(c->limits.idle_timeout_ms, 90000);
    assert_int_equal(c->limits.shutdown_timeout_ms, 0);
    assert_int_equal(c->limits.max_connections, 1);
    assert_int_equal(c->log.level, SL_LOG_DEBUG);
    assert_int_equal(c->log.format, SL_LOG_TEXT);
    assert_false(c->log.access);
    sl_config_unref(c);

    /* One address where a list is expected. */
    c = load_ok("listen: ':8081'\n");
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0].host, "0.0.0.0");
    assert_int_equal(c->listen[0].port, 8081);
    sl_config_unref(c);
}

static void test_three_mistakes(void **state)
{
    load_bad("# three mistakes on three lines\n"
             "workers: 300\n"
             "limits:\n"
             "  max_body_bytes: 16 furlongs\n"
             "  header_timeout: 10\n"
             "log:\n"
             "  level: loud\n");
    expect_error(2, 10, "workers", "must be at most 256, got \"300\"");
    expect_error(4, 19, "limits.max_body_bytes",
                 "expected a size like 16KiB or 1048576, got \"16 furlongs\"");
    expect_error(5, 19, "limits.header_timeout", "the unit is required");
    expect_error(7, 10, "log.level", "expected one of debug, info, warn, error, got \"loud\"");
    assert_int_equal(errs.n, 4);
}

static void test_bounds(void **state)
{
    load_bad("limits:\n"
             "  max_body_bytes: 2GiB\n"
             "  max_header_bytes: 512\n"
             "  header_timeout: 0\n"
             "  shutdown_timeout: 2h\n"
             "  max_connections: 0\n");
    expect_error(2, 19, "limits.max_body_bytes", "must be at most 1GiB, got \"2GiB\"");
    expect_error(3, 21, "limits.max_header_bytes", "must be at least 1KiB, got \"512\"");
    expect_error(4, 19, "limits.header_timeout", "must be at least 1ms, got \"0\"");
    expect_error(5, 21, "limits.shutdown_timeout", "must be at most 1h, got \"2h\"");
    expect_error(6, 20, "limits.max_connections", "must be at least 1, got \"0\"");
    assert_int_equal(errs.n, 5);
}

static void test_unknown_key(void **state)
{
    load_bad("limits:\n"
             "  max_body_byte: 1MiB\n"
             "wokers: 2\n"
             "max_connections: 5\n"
             "upstreams: []\n"
             "limits.idle_timeout: 5s\n");
    expect_error(2, 3, "limits.max_body_byte",
                 "unknown key \"max_body_byte\" (did you mean \"max_body_bytes\"?)");
    expect_error(3, 1, "wokers", "unknown key \"wokers\" (did you mean \"workers\"?)");
    expect_error(4, 1, "max_connections", "it belongs in the \"limits:\" section");
    expect_error(5, 1, "upstreams",
                 "unknown key \"upstreams\"; valid keys here: listen, admin_listen, admin_token, "
                 "workers, limits, log, backends, routes, clients, backend_header, jwt_issuers, "
                 "prices, front_door, queue, usage, alerts, routing, simulator");
    expect_error(6, 1, "limits.idle_timeout", "nested mappings");
    assert_int_equal(errs.n, 5);
}

static void test_duplicate_key(void **state)
{
    load_bad("workers: 2\n"
             "limits:\n"
             "  idle_timeout: 5s\n"
             "  idle_timeout: 6s\n"
             "workers: 3\n"
             "limits: {}\n");
    expect_error(4, 3, "limits.idle_timeout",
                 "duplicate key \"idle_timeout\" (first given at line 3)");
    expect_error(5, 1, "workers", "duplicate key \"workers\" (first given at line 1)");
    expect_error(6, 1, "limits", "duplicate key \"limits\"");
    assert_int_equal(errs.n, 3);
}

static void test_wrong_kinds(void **state)
{
    load_bad("workers: [1, 2]\n"
             "limits: 5\n"
             "log:\n"
             "  level: {a: b}\n"
             "  access:\n"
             "admin_listen: [':1']\n"
             "listen: {a: 1}\n"
             "? [a]\n"
             ": 1\n");
    expect_error(1, 10, "workers", "expected a whole number, got a list");
    expect_error(2, 9, "limits", "expected a mapping of settings");
    expect_error(4, 10, "log.level", "expected one of debug, info, warn, error, got a mapping");
    expect_error(5, 10, "log.access", "missing value: expected true or false");
    expect_error(6, 15, "admin_listen", "expected an address like 127.0.0.1:8080, got a list");
    expect_error(7, 9, "listen", "got a mapping");
    expect_error(8, 3, "", "keys must be plain names, got a list");
    assert_int_equal(errs.n, 7);

    sl_config_errors_dispose(&errs);
    load_bad("- listen\n");
    expect_error(1, 1, "", "the top level must be a mapping");
    sl_config_errors_dispose(&errs);
    load_bad("just text\n");
    expect_error(1, 1, "", "the top level must be a mapping");
}

static void test_listen_lists(void **state)
{
    load_bad("listen:\n"
             "  - 1.2.3.4:80\n"
             "  - localhost:80\n"
             "  - 1.2.3.4:80\n"
             "  - 9000\n");
    expect_error(3, 5, "listen[1]", "host names are not resolved");
    expect_error(4, 5, "listen[2]", "repeats listen[0] (line 2)");
    expect_error(5, 5, "listen[3]", "\":PORT\" means every interface");
    assert_int_equal(errs.n, 3);

    sl_config_errors_dispose(&errs);
    load_bad("listen: []\n");
    expect_error(1, 9, "listen", "must list at least 1 address");
}

static void test_admin_collision(void **state)
{
    load_bad("listen: ['127.0.0.1:8080', ':9090']\n"
             "admin_listen: 127.0.0.1:9090\n");
    expect_error(2, 15, "admin_listen", "uses the same port as listen address 0.0.0.0:9090");
    expect_error(2, 15, "admin_listen", "keep the admin endpoints off the public listeners");
    assert_int_equal(errs.n, 1);

    /* admin_listen defaulted: blame the listen key that the file set. */
    sl_config_errors_dispose(&errs);
    load_bad("listen: 127.0.0.1:9090\n");
    expect_error(1, 9, "listen", "uses the same port");

    /* Same address, different port: fine. */
    struct sl_config *c = load_ok("listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:8081\n");
    sl_config_unref(c);
}

static void test_env(void **state)
{
    setenv("SL_TEST_WORKERS", "7", 1);
    setenv("SL_TEST_PORT", "8443", 1);
    setenv("SL_TEST_SIZE", "16 furlongs", 1);
    unsetenv("SL_TEST_UNSET");
    struct sl_config *c = load_ok("workers: ${SL_TEST_WORKERS}\n"
                                  "listen: '127.0.0.1:${SL_TEST_PORT}'\n");
    assert_int_equal(c->workers, 7);
    assert_int_equal(c->listen[0].port, 8443);
    sl_config_unref(c);

    load_bad("workers: ${SL_TEST_UNSET}\n"
             "limits:\n"
             "  max_body_bytes: ${SL_TEST_SIZE}\n"
             "  idle_timeout: '${1BAD}'\n"
             "  header_timeout: '${OPEN'\n"
             "admin_listen: '$${SL_TEST_PORT}'\n");
    expect_error(1, 10, "workers", "environment variable SL_TEST_UNSET is not set");
    expect_error(3, 19, "limits.max_body_bytes",
                 "got \"16 furlongs\" (units are B, KiB, MiB and GiB) (from \"${SL_TEST_SIZE}\")");
    expect_error(4, 17, "limits.idle_timeout", "malformed \"${\"");
    expect_error(5, 19, "limits.header_timeout", "malformed \"${\"");
    /* $${ is a literal ${, which is then not an address. */
    expect_error(6, 15, "admin_listen", "got \"${SL_TEST_PORT}\"");
    assert_int_equal(errs.n, 5);
}

static void test_env_escape(void **state)
{
    /* Through a field whose parser echoes the text back. */
    setenv("SL_TEST_LEVEL", "warn", 1);
    struct sl_config *c = load_ok("log:\n  level: ${SL_TEST_LEVEL}\n");
    assert_int_equal(c->log.level, SL_LOG_WARN);
    sl_config_unref(c);
    load_bad("log:\n  level: a$$b$${X}$\n");
    expect_error(2, 10, "log.level", "got \"a$$b${X}$\"");
}

static void test_yaml_errors(void **state)
{
    load_bad("workers: 2\n"
             "limits:\n"
             "  idle_timeout: [5s\n"
             "log: {\n");
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.items[0].message, "invalid YAML: "));
    assert_true(errs.items[0].line >= 3);

    sl_config_errors_dispose(&errs);
    load_bad("a: b: c\n");
    expect_error(1, 5, "", "invalid YAML: mapping values are not allowed in this context");

    sl_config_errors_dispose(&errs);
    load_bad("log:\n\tlevel: info\n");
    expect_error(2, 1, "", "indent with spaces, not tabs");

    sl_config_errors_dispose(&errs);
    load_bad("workers: 1\n---\nworkers: 2\n");
    expect_error(2, 1, "", "only one YAML document");

    sl_config_errors_dispose(&errs);
    load_bad("workers: \"\x01\"\n");
    expect_error(1, 11, "", "invalid YAML: control characters are not allowed");
}

static void test_aliases(void **state)
{
    load_bad("limits: &l\n"
             "  idle_timeout: 5s\n"
             "log: *l\n"
             "workers: *nope\n");
    expect_error(3, 6, "", "aliases (*\"l\") are not supported");
    assert_true(errs.n >= 1);

    /* An alias where an entry's required name belongs leaves the entry without one: the
     * checks across lists must not read it (they sort and compare route names). */
    load_bad("backends:\n"
             "  - {name: b, url: 'http://h', model: m}\n"
             "routes:\n"
             "  - {name: *n, backend: b}\n"
             "  - {name: r, backend: b}\n");
    expect_error(4, 12, "", "aliases (*\"n\") are not supported");
    expect_errors(1);

    /* Billion laughs: cheap to reject, since nothing is expanded. */
    sl_config_errors_dispose(&errs);
    load_bad("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
             "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
             "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
             "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
             "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
             "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
             "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
             "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n");
    assert_true(errs.n <= 101);
    assert_non_null(strstr(errs.items[0].message, "not supported"));
}

static void test_depth(void **state)
{
    char deep[256];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "limits: ");
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    load_bad(deep);
    /* The top-level mapping is the first level, the 32nd '[' the 33rd. */
    expect_error(1, 9 + 31, "", "nested more than 32 levels deep");
    assert_int_equal(errs.n, 1);

    /* Just under the bound parses (and is then the wrong kind). */
    sl_config_errors_dispose(&errs);
    n = (size_t)snprintf(deep, sizeof(deep), "limits: ");
    for (int i = 0; i < 31; i++)
        deep[n++] = '[';
    for (int i = 0; i < 31; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    load_bad(deep);
    expect_error(1, 9, "limits", "expected a mapping of settings");
}

static void test_many_errors(void **state)
{
    struct sl_buf yaml;
    sl_buf_init(&yaml);
    for (int i = 0; i < 500; i++)
        sl_buf_appendf(&yaml, "unknown_%d: 1\n", i);
    load_bad(yaml.base);
    assert_int_equal(errs.n, 101);
    assert_non_null(strstr(errs.items[100].message, "too many problems"));
    sl_buf_dispose(&yaml);
}

static void test_print(void **state)
{
    load_bad("workers: x\n");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    sl_config_errors_print(&errs, f);
    fclose(f);
    assert_string_equal(text, "t.yaml:1:10: workers: expected a whole number, got \"x\"\n");
    free(text);
}

static void test_file(void **state)
{
    struct sl_config *c = (struct sl_config *)1;
    assert_int_equal(sl_config_load_file("tests/unit/config/no-such-file.yaml", &c, &errs), SL_EIO);
    assert_null(c);
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.items[0].line, 0);
    assert_non_null(strstr(errs.items[0].message, "cannot open the file"));

    sl_config_errors_dispose(&errs);
    c = NULL;
    int err = sl_config_load_file("examples/sluice.yaml", &c, &errs);
    if (err)
        sl_config_errors_print(&errs, stderr);
    assert_int_equal(err, SL_OK);
    assert_string_equal(c->source, "examples/sluice.yaml");
    sl_config_unref(c);
}

static void test_refcount(void **state)
{
    struct sl_config *c = load_ok("workers: 2\n");
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_ptr_equal(sl_config_ref(c), c);
    assert_ptr_equal(sl_config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 3);
    sl_config_unref(c);
    sl_config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_int_equal(c->workers, 2);
    sl_config_unref(c); /* frees; ASan reports a leak or double free otherwise */
    sl_config_unref(NULL);
    assert_null(sl_config_ref(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_mistakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_collision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refcount, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
