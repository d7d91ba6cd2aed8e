/* The list-of-mappings mechanism (what `backends:` and `routes:` will use),
 * through a small schema that exists only in this test. */
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
#include "config_test.h"

/* One entry of the test list. Owns name and url. */
struct test_backend {
    char *name;
    char *url;
    uint32_t weight;
    uint64_t timeout_ms;
    bool tls_verify;
};

/* The test root. Owns backends (n_backends entries). */
struct test_root {
    struct test_backend *backends;
    size_t n_backends;
    uint16_t workers;
    char **tags; /* n_tags */
    size_t n_tags;
};

static void backend_finish(void *obj, struct sl_cfg_check *chk)
{
    const struct test_backend *b = obj;
    if (sl_cfg_check_usable(chk, "url") && b->url && strncmp(b->url, "https://", 8) != 0)
        sl_cfg_check_error(chk, "url", "must start with https://");
}

static const struct sl_cfg_field backend_fields[] = {
    {.name = "name",
     .type = SL_CFG_STRING,
     .required = true,
     .min = 1,
     .max = 32,
     .doc = "Name used in routes.",
     SL_CFG_MEMBER(struct test_backend, name)},
    {.name = "url",
     .type = SL_CFG_STRING,
     .required = true,
     SL_CFG_UNBOUNDED,
     .doc = "Base URL.",
     SL_CFG_MEMBER(struct test_backend, url)},
    {.name = "weight",
     .type = SL_CFG_INT,
     .def = "1",
     .min = 1,
     .max = 100,
     .doc = "Share of traffic.",
     SL_CFG_MEMBER(struct test_backend, weight)},
    {.name = "timeout",
     .type = SL_CFG_DURATION,
     .def = "30s",
     .min = 1,
     .max = UINT64_MAX,
     .doc = "Per attempt.",
     SL_CFG_MEMBER(struct test_backend, timeout_ms)},
    {.name = "tls.verify",
     .type = SL_CFG_BOOL,
     .def = "true",
     SL_CFG_UNBOUNDED,
     .doc = "Check the certificate.",
     SL_CFG_MEMBER(struct test_backend, tls_verify)},
};

static const struct sl_cfg_schema backend_schema = {
    .fields = backend_fields,
    .n_fields = SL_ARRAY_LEN(backend_fields),
    .size = sizeof(struct test_backend),
    .unique = "name",
    .finish = backend_finish,
};

static const struct sl_cfg_field root_fields[] = {
    {.name = "backends",
     .type = SL_CFG_OBJECT_LIST,
     .min = 0,
     .max = 4,
     .doc = "Upstream servers.",
     SL_CFG_MEMBER(struct test_root, backends),
     SL_CFG_COUNT(struct test_root, n_backends),
     .sub = &backend_schema},
    {.name = "workers",
     .type = SL_CFG_INT,
     .def = "2",
     .min = 0,
     .max = 1000,
     .doc = "Workers.",
     SL_CFG_MEMBER(struct test_root, workers)},
    {.name = "tags",
     .type = SL_CFG_STRING_LIST,
     .def = "untagged",
     .min = 1,
     .max = 3,
     .doc = "Labels.",
     SL_CFG_MEMBER(struct test_root, tags),
     SL_CFG_COUNT(struct test_root, n_tags)},
};

static const struct sl_cfg_section root_sections[] = {{"", "Top", "The top."}};

static const struct sl_cfg_schema root_schema = {
    .fields = root_fields,
    .n_fields = SL_ARRAY_LEN(root_fields),
    .sections = root_sections,
    .n_sections = SL_ARRAY_LEN(root_sections),
    .size = sizeof(struct test_root),
};

static struct test_root root;

static int setup_root(void **state)
{
    memset(&root, 0, sizeof(root));
    return setup(state);
}

static int teardown_root(void **state)
{
    sl_cfg_dispose_fields(&root_schema, &root);
    return teardown(state);
}

static int load(const char *yaml)
{
    return sl_cfg_load_schema(&root_schema, "t.yaml", yaml, strlen(yaml), &root, &errs);
}

static void test_list_ok(void **state)
{
    int err = load("backends:\n"
                   "  - name: east\n"
                   "    url: https://east.example\n"
                   "    weight: 3\n"
                   "    tls:\n"
                   "      verify: false\n"
                   "  - {name: west, url: 'https://west.example', timeout: 2s}\n"
                   "workers: 5\n");
    if (err)
        sl_config_errors_print(&errs, stderr);
    assert_int_equal(err, SL_OK);
    assert_int_equal(root.n_backends, 2);
    assert_string_equal(root.backends[0].name, "east");
    assert_string_equal(root.backends[0].url, "https://east.example");
    assert_int_equal(root.backends[0].weight, 3);
    assert_int_equal(root.backends[0].timeout_ms, 30000); /* default */
    assert_false(root.backends[0].tls_verify);
    assert_string_equal(root.backends[1].name, "west");
    assert_int_equal(root.backends[1].weight, 1);
    assert_int_equal(root.backends[1].timeout_ms, 2000);
    assert_true(root.backends[1].tls_verify);
    assert_int_equal(root.workers, 5);
}

static void test_list_empty(void **state)
{
    assert_int_equal(load("workers: 1\n"), SL_OK);
    assert_int_equal(root.n_backends, 0);
    assert_null(root.backends);
    assert_int_equal(load("backends:\n"), SL_OK);
    assert_int_equal(root.n_backends, 0);
    assert_int_equal(load("backends: []\n"), SL_OK);
    assert_int_equal(root.n_backends, 0);
}

static void test_list_errors(void **state)
{
    int err = load("backends:\n"
                   "  - name: east\n"
                   "    url: https://east.example\n"
                   "  - name: west\n"
                   "    wieght: 2\n"
                   "  - name: east\n"
                   "    url: http://plain.example\n"
                   "  - just-a-name\n"
                   "workers: 1001\n");
    assert_int_equal(err, SL_EINVAL);
    expect_error(4, 5, "backends[1]", "missing required key \"url\"");
    expect_error(5, 5, "backends[1].wieght", "unknown key \"wieght\" (did you mean \"weight\"?)");
    expect_error(6, 11, "backends[2].name", "name \"east\" is already used by entry 0 (line 2)");
    expect_error(7, 10, "backends[2].url", "must start with https://");
    expect_error(8, 5, "backends[3]", "expected a mapping (one entry of backends), got a single");
    expect_error(9, 10, "workers", "must be at most 1000");
    assert_int_equal(errs.n, 6);
    /* A rejected list leaves the field at its default. */
    assert_int_equal(root.n_backends, 0);
}

static void test_list_kinds(void **state)
{
    assert_int_equal(load("backends: {name: x}\n"), SL_EINVAL);
    expect_error(1, 11, "backends", "expected a list of mappings, got a mapping");
    sl_config_errors_dispose(&errs);
    assert_int_equal(load("backends: [{name: '', url: u, tls: 1}, {}, {}, {}, {}]\n"), SL_EINVAL);
    expect_error(1, 11, "backends", "must list at most 4 entries, got 5");
    expect_error(1, 19, "backends[0].name", "must be at least 1 character long");
    expect_error(1, 36, "backends[0].tls", "expected a mapping of settings");
    expect_error(1, 40, "backends[1]", "missing required key \"name\"");
    sl_config_errors_dispose(&errs);
    assert_int_equal(load("backends:\n  - name: \"a\\0b\"\n    url: x\n"), SL_EINVAL);
    expect_error(2, 11, "backends[0].name", "must not contain NUL characters");
}

static void test_string_list(void **state)
{
    /* The default is parsed like a value from the file: one string. */
    assert_int_equal(load("workers: 1\n"), SL_OK);
    assert_int_equal(root.n_tags, 1);
    assert_string_equal(root.tags[0], "untagged");

    /* One value is a one-element list; loading again replaces the list. */
    assert_int_equal(load("tags: blue\n"), SL_OK);
    assert_int_equal(root.n_tags, 1);
    assert_string_equal(root.tags[0], "blue");
    assert_int_equal(load("tags: [red, 'green', \"blue sky\"]\n"), SL_OK);
    assert_int_equal(root.n_tags, 3);
    assert_string_equal(root.tags[0], "red");
    assert_string_equal(root.tags[1], "green");
    assert_string_equal(root.tags[2], "blue sky");

    setenv("SL_TEST_TAG", "from-env", 1);
    assert_int_equal(load("tags:\n  - ${SL_TEST_TAG}\n  - x${SL_TEST_TAG}\n"), SL_OK);
    assert_int_equal(root.n_tags, 2);
    assert_string_equal(root.tags[0], "from-env");
    assert_string_equal(root.tags[1], "xfrom-env");
    sl_cfg_dispose_fields(&root_schema, &root);
    assert_null(root.tags);
    assert_int_equal(root.n_tags, 0);
}

static void test_string_list_errors(void **state)
{
    setenv("SL_TEST_EMPTY", "", 1);
    assert_int_equal(load("tags:\n"
                          "  - ok\n"
                          "  - ''\n"
                          "  - [nested]\n"
                          "  -\n"),
                     SL_EINVAL);
    expect_error(2, 3, "tags", "must list at most 3 values, got 4");
    expect_error(3, 5, "tags[1]", "must not be empty");
    expect_error(4, 5, "tags[2]", "expected a single value, got a list");
    expect_error(5, 4, "tags[3]", "missing value: expected a single value (or no \"-\" entry)");
    assert_int_equal(errs.n, 4);
    /* A rejected list leaves the field at its default. */
    assert_int_equal(root.n_tags, 1);
    assert_string_equal(root.tags[0], "untagged");

    sl_config_errors_dispose(&errs);
    assert_int_equal(load("tags: ${SL_TEST_EMPTY}\n"), SL_EINVAL);
    expect_error(1, 7, "tags", "must not be empty (from \"${SL_TEST_EMPTY}\")");
    sl_config_errors_dispose(&errs);
    assert_int_equal(load("tags: []\n"), SL_EINVAL);
    expect_error(1, 7, "tags", "must list at least 1 value");
    /* No value is an empty list (as for a list of mappings), here too short. */
    sl_config_errors_dispose(&errs);
    assert_int_equal(load("tags:\n"), SL_EINVAL);
    expect_error(1, 6, "tags", "must list at least 1 value");
    sl_config_errors_dispose(&errs);
    assert_int_equal(load("tags: {a: b}\n"), SL_EINVAL);
    expect_error(1, 7, "tags", "expected a value, or a list of values, got a mapping");
    sl_config_errors_dispose(&errs);
    assert_int_equal(load("tags: \"a\\0b\"\n"), SL_EINVAL);
    expect_error(1, 7, "tags", "must not contain NUL characters");
    assert_int_equal(errs.n, 1);
}

static void test_list_reference(void **state)
{
    struct sl_buf out;
    sl_buf_init(&out);
    assert_int_equal(sl_cfg_write_schema_reference(&root_schema, &out), SL_OK);
    assert_non_null(strstr(out.base, "| `backends` | list of mappings (see below) | none | "
                                     "0 to 4 entries | Upstream servers. |"));
    assert_non_null(strstr(out.base, "### Each entry of `backends`"));
    assert_non_null(strstr(out.base, "| `backends[].name` | string | required | 1 to 32 "
                                     "characters | Name used in routes. |"));
    assert_non_null(strstr(out.base, "| `backends[].tls.verify` | boolean | `true` |"));
    assert_non_null(strstr(out.base, "| `backends[].timeout` | duration | `30s` | at least 1ms |"));
    assert_non_null(strstr(out.base, "| `tags` | string, or list of strings | `untagged` | 1 to 3 "
                                     "entries | Labels. |"));
    sl_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_ok, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_list_empty, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_list_errors, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_list_kinds, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_string_list, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_string_list_errors, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_list_reference, setup_root, teardown_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
