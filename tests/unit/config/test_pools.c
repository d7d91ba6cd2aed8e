/* Route pools, circuit-breaker settings, residency and the `routing` section. */
#include "config_test.h"

#define BACKENDS                                                                                   \
    "backends:\n"                                                                                  \
    "  - {name: ptu, url: 'http://h1', model: gpt-4o, version: '1', region: eastus, "              \
    "geography: us}\n"                                                                             \
    "  - {name: payg, url: 'http://h2', model: gpt-4o, version: '1', region: westeurope, "         \
    "geography: eu}\n"                                                                             \
    "  - {name: next, url: 'http://h3', model: gpt-4o, version: '2'}\n"

static void test_defaults(void **state)
{
    struct sl_config *c = load_ok(BACKENDS "routes:\n"
                                           "  - {name: r, backend: payg}\n");
    const struct sl_config_backend *b = &c->backends[0];
    assert_string_equal(b->geography, "us");
    assert_int_equal(b->failure_threshold, 5);
    assert_int_equal(b->open_time_ms, 5000);
    assert_int_equal(b->max_open_time_ms, 300000);
    assert_int_equal(b->throttle_time_ms, 10000);
    assert_int_equal(b->max_retry_after_ms, 300000);
    assert_null(c->backends[2].geography);
    /* The shorthand is a pool of one. */
    const struct sl_config_route *r = &c->routes[0];
    assert_int_equal(r->n_pool, 1);
    assert_string_equal(r->pool[0].backend, "payg");
    assert_int_equal(r->pool[0].backend_index, 1);
    assert_int_equal(r->pool[0].priority, 1);
    assert_int_equal(r->pool[0].weight, 1);
    assert_int_equal(r->max_attempts, 3);
    assert_int_equal(r->retry_budget_ppm, 200000);
    assert_int_equal(r->n_geographies, 0);
    assert_false(r->allow_mixed_versions);
    assert_false(r->region_header);
    assert_false(r->prefer_low_latency);
    assert_int_equal(c->routing.readiness, SL_READINESS_ANY);
    assert_int_equal(c->routing.pin_ttl_ms, 24 * 3600 * 1000ull);
    assert_int_equal(c->routing.session_ttl_ms, 3600 * 1000ull);
    assert_int_equal(c->routing.max_pins, 100000);
    sl_config_unref(c);
}

static void test_pool(void **state)
{
    struct sl_config *c =
        load_ok(BACKENDS "routes:\n"
                         "  - name: r\n"
                         "    backends:\n"
                         "      - {backend: payg, priority: 2, weight: 10}\n"
                         "      - {backend: ptu, weight: 90}\n"
                         "    max_attempts: 5\n"
                         "    retry_budget: 50%\n"
                         "    geographies: [eu, us]\n"
                         "    region_header: true\n"
                         "    prefer_low_latency: true\n"
                         "clients:\n"
                         "  - name: c\n"
                         "    keys: ['sha256:" /* sha256("x") */
                         "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881']\n"
                         "    region: westeurope\n"
                         "    geographies: [eu]\n"
                         "routing: {readiness: all, pin_ttl: 1h, session_ttl: 10m, "
                         "max_pins: 500}\n");
    const struct sl_config_route *r = &c->routes[0];
    assert_null(r->backend);
    assert_int_equal(r->n_pool, 2);
    /* Sorted by priority: ptu (1) before payg (2). */
    assert_string_equal(r->pool[0].backend, "ptu");
    assert_int_equal(r->pool[0].backend_index, 0);
    assert_int_equal(r->pool[0].priority, 1);
    assert_int_equal(r->pool[0].weight, 90);
    assert_string_equal(r->pool[1].backend, "payg");
    assert_int_equal(r->pool[1].backend_index, 1);
    assert_int_equal(r->pool[1].priority, 2);
    assert_int_equal(r->pool[1].weight, 10);
    assert_int_equal(r->max_attempts, 5);
    assert_int_equal(r->retry_budget_ppm, 500000);
    assert_int_equal(r->n_geographies, 2);
    assert_string_equal(r->geographies[1], "us");
    assert_true(r->region_header);
    assert_true(r->prefer_low_latency);
    assert_string_equal(c->clients[0].region, "westeurope");
    assert_int_equal(c->clients[0].n_geographies, 1);
    assert_string_equal(c->clients[0].geographies[0], "eu");
    assert_int_equal(c->routing.readiness, SL_READINESS_ALL);
    assert_int_equal(c->routing.pin_ttl_ms, 3600 * 1000ull);
    assert_int_equal(c->routing.session_ttl_ms, 600 * 1000ull);
    assert_int_equal(c->routing.max_pins, 500);
    sl_config_unref(c);
}

static void test_bad_pools(void **state)
{
    load_bad(BACKENDS "routes:\n"
                      "  - {name: a, backend: ptu, backends: [{backend: payg}]}\n"
                      "  - {name: b}\n"
                      "  - name: c\n"
                      "    backends:\n"
                      "      - {backend: ptu, weight: 0}\n"
                      "      - {backend: ptu}\n"
                      "      - {backend: pyag}\n"
                      "  - {name: d, backends: []}\n");
    expect_error(6, 39, "routes[0].backends", "either `backend` (one backend) or `backends`");
    expect_error(7, 5, "routes[1].backend", "needs `backend: NAME` or a pool under `backends:`");
    expect_error(10, 32, "routes[2].backends[0].weight", "at least 1");
    expect_error(11, 19, "routes[2].backends[1].backend", "\"ptu\" is already used by entry 0");
    expect_error(13, 25, "routes[3].backends", "at least 1");
    expect_errors(5);

    /* Names are resolved once every route is well-formed. */
    load_bad(BACKENDS "routes:\n"
                      "  - name: c\n"
                      "    backends:\n"
                      "      - {backend: ptu}\n"
                      "      - {backend: pyag}\n");
    expect_error(8, 7, "routes[0].backends",
                 "backends[1]: no backend \"pyag\" (did you mean "
                 "\"payg\"?)");
    expect_errors(1);
}

static void test_mixed_versions(void **state)
{
    load_bad(BACKENDS "routes:\n"
                      "  - {name: r, backends: [{backend: ptu}, {backend: next}]}\n");
    expect_error(6, 25, "routes[0].backends",
                 "backend \"ptu\" runs gpt-4o version 1 but backend \"next\" runs gpt-4o "
                 "version 2");
    expect_error(6, 25, "routes[0].backends", "allow_mixed_versions: true");
    expect_errors(1);
    struct sl_config *c = load_ok(BACKENDS "routes:\n"
                                           "  - {name: r, backends: [{backend: ptu, weight: 9}, "
                                           "{backend: next}], allow_mixed_versions: true}\n");
    assert_int_equal(c->routes[0].n_pool, 2);
    sl_config_unref(c);
}

static void test_bad_residency_and_breaker(void **state)
{
    load_bad(BACKENDS "  - {name: x, url: 'http://h4', model: m, open_time: 10m, "
                      "max_open_time: 1m, geography: 'e u'}\n"
                      "routing: {readiness: some}\n");
    expect_error(5, 54, "backends[3].open_time", "longer than max_open_time");
    expect_error(5, 89, "backends[3].geography", "expected letters, digits");
    expect_error(6, 22, "routing.readiness", "expected one of any, all, got \"some\"");
    expect_errors(3);

    load_bad(BACKENDS "routes:\n"
                      "  - {name: r, backends: [{backend: ptu}, {backend: next}], "
                      "allow_mixed_versions: true, geographies: [eu]}\n");
    expect_error(6, 101, "routes[0].geographies",
                 "bound to geographies (eu) its pool has no backend");
    expect_errors(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_residency_and_breaker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
