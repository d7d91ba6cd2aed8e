/*
 * admin_token: required off loopback, optional on it, bounded and printable, and never
 * quoted back in an error.
 */
#include <stdlib.h>

#include "config_test.h"

static void test_loopback_needs_none(void **state)
{
    const char *const ok[] = {
        "admin_listen: 127.0.0.1:9090\n", "admin_listen: 127.8.9.10:9090\n",
        "admin_listen: '[::1]:9090'\n",   "admin_listen: '[::ffff:127.0.0.1]:9090'\n",
        "listen: 127.0.0.1:8080\n", /* admin_listen defaulted: 127.0.0.1:9090 */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct sl_config *c = load_ok(ok[i]);
        assert_null(c->admin_token);
        sl_config_unref(c);
    }
}

static void test_elsewhere_needs_one(void **state)
{
    const char *const bad[] = {
        "admin_listen: 0.0.0.0:9090\n",
        "admin_listen: 10.1.2.3:9090\n",
        "admin_listen: '[::]:9090'\n",
        "admin_listen: ':9090'\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        load_bad(bad[i]);
        expect_error(1, 15, "admin_listen", "is not a loopback address: set admin_token");
        expect_errors(1);
    }
    struct sl_config *c = load_ok("admin_listen: 0.0.0.0:9090\n"
                                  "admin_token: 0123456789abcdef\n");
    assert_string_equal(c->admin_token, "0123456789abcdef");
    sl_config_unref(c);
}

static void test_token_checks(void **state)
{
    /* Allowed on loopback too. */
    struct sl_config *c = load_ok("admin_token: a-long-enough-token\n");
    assert_string_equal(c->admin_token, "a-long-enough-token");
    sl_config_unref(c);

    load_bad("admin_token: short-secret\n");
    expect_error(1, 14, "admin_token", "at least 16");
    load_bad("admin_token: 'has a space in it!'\n");
    expect_error(1, 14, "admin_token", "printable ASCII without spaces");
    for (size_t i = 0; i < errs.n; i++)
        assert_null(strstr(errs.items[i].message, "space in it"));

    /* From the environment. */
    setenv("SL_TEST_ADMIN_TOKEN", "from-the-environment", 1);
    c = load_ok("admin_listen: 0.0.0.0:9090\nadmin_token: ${SL_TEST_ADMIN_TOKEN}\n");
    assert_string_equal(c->admin_token, "from-the-environment");
    sl_config_unref(c);
    unsetenv("SL_TEST_ADMIN_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loopback_needs_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elsewhere_needs_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_checks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
