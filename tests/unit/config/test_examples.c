/*
 * Every YAML file under examples/ loads without a problem, and in each file that brings its own
 * simulated endpoints, every backend is a deployment one of them serves (so that
 * `make run ARGS="--config examples/FILE.yaml"` works as the file says).
 */
#include <glob.h>

#include "config_test.h"

/* Whether an endpoint of c's simulator section serves backend b for a route named route. */
static bool simulated(const struct sl_config *c, const struct sl_config_backend *b,
                      const char *route)
{
    const char *want = b->deployment ? b->deployment : route;
    for (size_t e = 0; e < c->simulator.n_endpoints; e++) {
        const struct sl_config_sim_endpoint *ep = &c->simulator.endpoints[e];
        char url[96];
        snprintf(url, sizeof(url), "http://%s:%u%s", ep->listen.host, (unsigned)ep->listen.port,
                 ep->flavor == SL_SIM_FLAVOR_OPENAI ? "/v1" : "");
        if (strcmp(url, b->url) != 0)
            continue;
        for (size_t d = 0; d < ep->n_deployments; d++)
            if (strcmp(ep->deployments[d].name, want) == 0)
                return true;
    }
    return false;
}

static void check_served(const char *file, const struct sl_config *c)
{
    if (c->simulator.n_endpoints == 0)
        return; /* its backends are elsewhere (e.g. the built-in simulated endpoints) */
    for (size_t r = 0; r < c->n_routes; r++) {
        const struct sl_config_route *route = &c->routes[r];
        for (size_t m = 0; m < route->n_pool; m++) {
            const struct sl_config_backend *b = &c->backends[route->pool[m].backend_index];
            if (!simulated(c, b, route->name))
                fail_msg("%s: route %s: backend %s (%s) is not served by the file's "
                         "simulator section",
                         file, route->name, b->name, b->url);
        }
    }
}

static void test_every_example_loads(void **state)
{
    glob_t g;
    assert_int_equal(glob("examples/*.yaml", 0, NULL, &g), 0);
    /* sluice.yaml, sim-topologies.yaml and one file per topology T1-T4 at least */
    assert_true(g.gl_pathc >= 6);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *file = g.gl_pathv[i];
        struct sl_config *c = NULL;
        sl_config_errors_dispose(&errs);
        int err = sl_config_load_file(file, &c, &errs);
        if (err != SL_OK) {
            sl_config_errors_print(&errs, stderr);
            fail_msg("%s: does not load: %s (%zu problems, printed above)", file, sl_strerror(err),
                     errs.n);
        }
        check_served(file, c);
        sl_config_unref(c);
    }
    globfree(&g);
}

/* The topology files exist under the names docs/routing.md gives them. */
static void test_topology_files(void **state)
{
    static const char *const files[] = {
        "examples/t1-ptu-spillover.yaml",
        "examples/t2-active-active.yaml",
        "examples/t3-active-passive.yaml",
        "examples/t4-eu-only.yaml",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(files); i++) {
        struct sl_config *c = NULL;
        sl_config_errors_dispose(&errs);
        if (sl_config_load_file(files[i], &c, &errs) != SL_OK) {
            sl_config_errors_print(&errs, stderr);
            fail_msg("%s: does not load", files[i]);
        }
        if (c->n_routes == 0 || c->simulator.n_endpoints < 2)
            fail_msg("%s: expected routes and at least two simulated endpoints", files[i]);
        /* make run starts it: the gateway on its usual ports, the simulator beside it */
        assert_int_equal(c->admin_listen.port, 9090);
        assert_int_equal(c->listen[0].port, 8080);
        assert_non_null(sl_config_find_client(c, SL_STR("sluice-dev-key")));
        sl_config_unref(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_example_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topology_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
