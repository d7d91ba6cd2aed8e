/* Clients: identities, grants, limits, caps, budgets; JWT issuers, prices, front door. */
#include "config_test.h"

#define KEY "'sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881'"
#define BASE                                                                                       \
    "backends:\n"                                                                                  \
    "  - {name: ptu, url: 'http://h1', model: gpt-4o}\n"                                           \
    "  - {name: payg, url: 'http://h2', model: gpt-4o}\n"                                          \
    "routes:\n"                                                                                    \
    "  - {name: gpt-4o, backends: [{backend: ptu}, {backend: payg}]}\n"                            \
    "  - {name: mini, backend: payg, caps: {max_tokens: 100, max_tokens_mode: reject}}\n"

static void test_full_client(void **state)
{
    struct sl_config *c = load_ok(
        BASE
        "jwt_issuers:\n"
        "  - {name: entra, issuer: 'https://login.example/t/v2.0', audiences: [api://sluice], "
        "secret: '0123456789abcdef0123456789abcdef', claim: appid}\n"
        "prices:\n"
        "  - {model: gpt-4o, input: '2.50', output: 10}\n"
        "  - {model: mini, input: '0.15', cached_input: '0.075', output: '0.6'}\n"
        "usage: {db: /tmp/u.db}\n"
        "front_door: {header: X-Azure-FDID, values: [abc], networks: [10.0.0.0/8, "
        "'2001:db8::/32', 192.168.1.7]}\n"
        "queue: {max_length: 10, max_wait: 5s}\n"
        "clients:\n"
        "  - name: batch\n"
        "    team: data\n"
        "    tags: [prod]\n"
        "    keys: [" KEY "]\n"
        "    jwt_issuer: entra\n"
        "    jwt_ids: [app-1, app-2]\n"
        "    routes: [mini]\n"
        "    backends: [payg]\n"
        "    priority: low\n"
        "    rpm: 60\n"
        "    tpm: 10000\n"
        "    route_limits: [{route: mini, rpm: 6}]\n"
        "    caps: {max_tokens: 500, default_max_tokens: 200, max_n: 1, forbid: [logit_bias]}\n"
        "    budgets: [{window: day, tokens: 100000}, {window: month, cost: '250.5', "
        "alert_at: 90%}]\n");
    const struct sl_config_client *cl = &c->clients[0];
    assert_string_equal(cl->team, "data");
    assert_int_equal(cl->jwt_issuer_index, 0);
    assert_int_equal(cl->n_jwt_ids, 2);
    assert_non_null(cl->route_grants);
    assert_int_equal(cl->route_grants[0], 2);  /* mini only */
    assert_int_equal(cl->backend_allow[0], 2); /* payg only */
    assert_int_equal(cl->priority, SL_PRIORITY_LOW);
    assert_int_equal(cl->rpm, 60);
    assert_int_equal(cl->route_limits[0].route_index, 1);
    assert_int_equal(cl->route_limits[0].rpm, 6);
    assert_int_equal(cl->caps.max_tokens, 500);
    assert_int_equal(cl->caps.max_tokens_mode, SL_CAP_CLAMP);
    assert_int_equal(cl->caps.default_max_tokens, 200);
    assert_string_equal(cl->caps.forbid[0], "logit_bias");
    assert_int_equal(cl->budgets[0].window, SL_BUDGET_DAY);
    assert_int_equal(cl->budgets[0].alert_ppm, 800000);
    assert_int_equal(cl->budgets[1].cost, 250500000);
    assert_int_equal(c->routes[1].caps.max_tokens_mode, SL_CAP_REJECT);
    assert_int_equal(c->prices[0].input, 2500000);
    assert_int_equal(c->prices[0].cached_input, 2500000); /* as input */
    assert_int_equal(c->prices[1].cached_input, 75000);
    assert_int_equal(c->prices[0].output, 10000000);
    assert_string_equal(c->jwt_issuers[0].claim, "appid");
    assert_int_equal(c->jwt_issuers[0].leeway_ms, 60000);
    assert_int_equal(c->front_door.n_networks, 3);
    assert_int_equal(c->queue.max_wait_ms, 5000);
    assert_int_equal(c->usage.flush_interval_ms, 100);
    sl_config_unref(c);
}

static void test_bad_clients(void **state)
{
    load_bad(BASE "prices:\n"
                  "  - {model: gpt-4o, input: '-1', output: '$3'}\n"
                  "clients:\n"
                  "  - {name: a}\n"
                  "  - {name: b, keys: [" KEY "], jwt_ids: [x]}\n");
    expect_error(8, 28, "prices[0].input", "it cannot be negative");
    expect_error(8, 42, "prices[0].output", "without a currency sign");
    expect_error(10, 5, "clients[0].keys", "a client needs `keys`");
    expect_error(11, 107, "clients[1].jwt_ids", "`jwt_issuer` and `jwt_ids` go together");
    expect_errors(4);

    load_bad(BASE "clients:\n"
                  "  - {name: a, keys: [" KEY "], routes: [mini, gpt4o], backends: [nope],\n"
                  "     jwt_issuer: entra, jwt_ids: [x], route_limits: [{route: nope, tpm: 5}],\n"
                  "     budgets: [{window: day, cost: 5}]}\n");
    expect_error(8, 113, "clients[0].routes[1]", "no route \"gpt4o\"");
    expect_error(8, 132, "clients[0].backends[0]", "no backend \"nope\"");
    expect_error(9, 18, "clients[0].jwt_issuer", "no jwt_issuers entry \"entra\"");
    expect_error(9, 53, "clients[0].route_limits", "no route \"nope\"");
    expect_error(10, 15, "clients[0].budgets", "set `usage.db`");
    expect_error(10, 15, "clients[0].budgets", "no `prices`");
    expect_errors(6);

    load_bad(BASE "clients: [{name: a, keys: [" KEY "], budgets: [{window: week}]}]\n");
    expect_error(7, 114, "clients[0].budgets[0].tokens", "needs `tokens`, `cost` or both");
    expect_errors(1);
}

static void test_bad_issuers(void **state)
{
    load_bad("jwt_issuers:\n"
             "  - {name: a, issuer: i, audiences: [x]}\n"
             "  - {name: b, issuer: i, audiences: [x], secret: short}\n"
             "  - {name: c, issuer: i, audiences: [x], public_key_file: k.pem, algorithms: "
             "[none, HS256]}\n"
             "front_door: {networks: [10.0.0.0/33]}\n");
    expect_error(2, 5, "jwt_issuers[0].jwks_file", "exactly one of");
    expect_error(3, 50, "jwt_issuers[1].secret", "at least 32");
    expect_error(4, 78, "jwt_issuers[2].algorithms", "unsigned tokens are never accepted");
    expect_error(4, 78, "jwt_issuers[2].algorithms", "HS256 needs a `secret`");
    expect_error(4, 59, "jwt_issuers[2].public_key_file", "cannot read \"k.pem\"");
    expect_error(5, 25, "front_door.networks[0]", "expected a network like 10.0.0.0/8");
    expect_errors(6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_issuers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
