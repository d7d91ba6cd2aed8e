/* The `simulator:` section: every value as loaded, every mistake with its
 * exact position, the checks across sections, the built-in simulator
 * configuration and the example file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_test.h"

static void test_no_simulator(void **state)
{
    struct sl_config *c = load_ok("");
    assert_int_equal(c->simulator.seed, 0);
    assert_int_equal(c->simulator.n_endpoints, 0);
    assert_null(c->simulator.endpoints);
    sl_config_unref(c);
    c = load_ok("simulator:\n");
    assert_int_equal(c->simulator.n_endpoints, 0);
    sl_config_unref(c);
    c = load_ok("simulator:\n  endpoints: []\n");
    assert_int_equal(c->simulator.n_endpoints, 0);
    sl_config_unref(c);
}

/* The configuration of `sluice serve` without --config brings its own backends. */
static void test_builtin_default_has_simulated_endpoints(void **state)
{
    struct sl_config *c = NULL;
    assert_int_equal(sl_config_load_default(&c, &errs), SL_OK);
    assert_string_equal(c->source, "<default>");
    assert_int_equal(c->simulator.n_endpoints, 3);
    assert_string_equal(c->simulator.endpoints[0].name, "sim-eastus-ptu");
    assert_int_equal(c->simulator.endpoints[0].listen.port, 8091);
    assert_int_equal(c->simulator.endpoints[0].deployments[0].capacity,
                     SL_SIM_CAPACITY_PROVISIONED);
    assert_string_equal(c->simulator.endpoints[2].region, "swedencentral");
    for (size_t i = 0; i < c->simulator.n_endpoints; i++)
        assert_string_equal(c->simulator.endpoints[i].listen.host, "127.0.0.1");
    sl_config_unref(c);
}

static void test_full(void **state)
{
    setenv("SL_TEST_SIM_KEY", "k-from-env", 1);
    struct sl_config *c = load_ok("simulator:\n"
                                  "  seed: 7\n"
                                  "  endpoints:\n"
                                  "    - name: ptu\n"
                                  "      listen: 127.0.0.1:8101\n"
                                  "      region: swedencentral\n"
                                  "      flavor: openai\n"
                                  "      api_keys: [one, '${SL_TEST_SIM_KEY}']\n"
                                  "      deployments:\n"
                                  "        - name: big\n"
                                  "          model: gpt-4o\n"
                                  "          version: '2024-08-06'\n"
                                  "          kind: completions\n"
                                  "          capacity: provisioned\n"
                                  "          tpm: 150000\n"
                                  "          rpm: 900\n"
                                  "          ttft: 1m30s\n"
                                  "          tokens_per_second: 100000\n"
                                  "          jitter_percent: 100\n"
                                  "          default_max_tokens: 1000000\n"
                                  "          context_window: 32768\n"
                                  "          dimensions: 16384\n"
                                  "        - name: emb\n"
                                  "          model: text-embedding-3-small\n"
                                  "          kind: embeddings\n"
                                  "      faults:\n"
                                  "        - kind: status\n"
                                  "          status: 429\n"
                                  "          retry_after: 1500ms\n"
                                  "          probability: 25%\n"
                                  "          count: 2\n"
                                  "          deployment: big\n"
                                  "          duration: 2s\n"
                                  "          after: 0\n"
                                  "        - kind: cut_stream\n"
                                  "          probability: 0.05\n"
                                  "          after: 5\n"
                                  "        - {kind: malformed_json, probability: 0}\n"
                                  "    - name: payg\n"
                                  "      listen: '[::1]:8102'\n"
                                  "      api_keys: solo\n"
                                  "      deployments: [{name: small, model: gpt-4o-mini}]\n");
    const struct sl_config_sim *sim = &c->simulator;
    assert_int_equal(sim->seed, 7);
    assert_int_equal(sim->n_endpoints, 2);

    const struct sl_config_sim_endpoint *ep = &sim->endpoints[0];
    assert_string_equal(ep->name, "ptu");
    assert_string_equal(ep->listen.host, "127.0.0.1");
    assert_int_equal(ep->listen.port, 8101);
    assert_string_equal(ep->region, "swedencentral");
    assert_int_equal(ep->flavor, SL_SIM_FLAVOR_OPENAI);
    assert_int_equal(ep->n_api_keys, 2);
    assert_string_equal(ep->api_keys[0], "one");
    assert_string_equal(ep->api_keys[1], "k-from-env");
    assert_int_equal(ep->n_deployments, 2);

    const struct sl_config_sim_deployment *d = &ep->deployments[0];
    assert_string_equal(d->name, "big");
    assert_string_equal(d->model, "gpt-4o");
    assert_string_equal(d->version, "2024-08-06");
    assert_int_equal(d->kind, SL_SIM_KIND_COMPLETIONS);
    assert_int_equal(d->capacity, SL_SIM_CAPACITY_PROVISIONED);
    assert_int_equal(d->tpm, 150000);
    assert_int_equal(d->rpm, 900);
    assert_int_equal(d->ttft_ms, 90000);
    assert_int_equal(d->tokens_per_second, 100000);
    assert_int_equal(d->jitter_percent, 100);
    assert_int_equal(d->default_max_tokens, 1000000);
    assert_int_equal(d->context_window, 32768);
    assert_int_equal(d->dimensions, 16384);

    /* Everything a deployment does not say takes its default. */
    d = &ep->deployments[1];
    assert_string_equal(d->name, "emb");
    assert_string_equal(d->model, "text-embedding-3-small");
    assert_string_equal(d->version, "");
    assert_int_equal(d->kind, SL_SIM_KIND_EMBEDDINGS);
    assert_int_equal(d->capacity, SL_SIM_CAPACITY_STANDARD);
    assert_int_equal(d->tpm, 0);
    assert_int_equal(d->rpm, 0); /* stays 0: "derived from tpm" is the simulator's job */
    assert_int_equal(d->ttft_ms, 50);
    assert_int_equal(d->tokens_per_second, 200);
    assert_int_equal(d->jitter_percent, 10);
    assert_int_equal(d->default_max_tokens, 256);
    assert_int_equal(d->context_window, 128000);
    assert_int_equal(d->dimensions, 1536);

    assert_int_equal(ep->n_faults, 3);
    const struct sl_config_sim_fault *f = &ep->faults[0];
    assert_int_equal(f->kind, SL_SIM_FAULT_STATUS);
    assert_int_equal(f->status, 429);
    assert_int_equal(f->retry_after_ms, 1500);
    assert_int_equal(f->probability_ppm, 250000);
    assert_int_equal(f->count, 2);
    assert_string_equal(f->deployment, "big");
    assert_int_equal(f->duration_ms, 2000);
    assert_int_equal(f->after, 0);
    f = &ep->faults[1];
    assert_int_equal(f->kind, SL_SIM_FAULT_CUT_STREAM);
    assert_int_equal(f->status, 500);
    assert_int_equal(f->retry_after_ms, 0);
    assert_int_equal(f->probability_ppm, 50000);
    assert_int_equal(f->count, 0);
    assert_null(f->deployment);
    assert_int_equal(f->duration_ms, 10000);
    assert_int_equal(f->after, 5);
    f = &ep->faults[2];
    assert_int_equal(f->kind, SL_SIM_FAULT_MALFORMED_JSON);
    assert_int_equal(f->probability_ppm, 0);

    /* Endpoint defaults; one key is a one-element list. */
    ep = &sim->endpoints[1];
    assert_string_equal(ep->name, "payg");
    assert_string_equal(ep->listen.host, "::1");
    assert_int_equal(ep->listen.port, 8102);
    assert_string_equal(ep->region, "eastus");
    assert_int_equal(ep->flavor, SL_SIM_FLAVOR_AZURE);
    assert_int_equal(ep->n_api_keys, 1);
    assert_string_equal(ep->api_keys[0], "solo");
    assert_int_equal(ep->n_deployments, 1);
    assert_string_equal(ep->deployments[0].name, "small");
    assert_int_equal(ep->n_faults, 0);
    assert_null(ep->faults);
    sl_config_unref(c); /* ASan checks that every string and list is freed */
}

static void test_api_keys(void **state)
{
    struct sl_config *c = load_ok("simulator:\n"
                                  "  endpoints:\n"
                                  "    - name: a\n"
                                  "      listen: 127.0.0.1:8101\n"
                                  "      deployments: [{name: d, model: m}]\n"
                                  "    - name: b\n"
                                  "      listen: 127.0.0.1:8102\n"
                                  "      api_keys:\n"
                                  "      deployments: [{name: d, model: m}]\n"
                                  "    - name: c\n"
                                  "      listen: 127.0.0.1:8103\n"
                                  "      api_keys:\n"
                                  "        - k1\n"
                                  "        - k2\n"
                                  "        - k3\n"
                                  "      deployments: [{name: d, model: m}]\n");
    /* Left out, or given no value: none (any non-empty key is accepted). */
    assert_int_equal(c->simulator.endpoints[0].n_api_keys, 0);
    assert_null(c->simulator.endpoints[0].api_keys);
    assert_int_equal(c->simulator.endpoints[1].n_api_keys, 0);
    assert_int_equal(c->simulator.endpoints[2].n_api_keys, 3);
    assert_string_equal(c->simulator.endpoints[2].api_keys[2], "k3");
    sl_config_unref(c);

    unsetenv("SL_TEST_SIM_UNSET");
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: a\n"
             "      listen: 127.0.0.1:8101\n"
             "      api_keys: ['', '${SL_TEST_SIM_UNSET}', {k: v}]\n"
             "      deployments: [{name: d, model: m}]\n"
             "    - name: b\n"
             "      listen: 127.0.0.1:8102\n"
             "      api_keys: {k: v}\n"
             "      deployments: [{name: d, model: m}]\n");
    expect_error(5, 18, "simulator.endpoints[0].api_keys[0]", "must not be empty");
    expect_error(5, 22, "simulator.endpoints[0].api_keys[1]",
                 "environment variable SL_TEST_SIM_UNSET is not set");
    expect_error(5, 46, "simulator.endpoints[0].api_keys[2]",
                 "expected a single value, got a mapping");
    expect_error(9, 17, "simulator.endpoints[1].api_keys",
                 "expected a value, or a list of values, got a mapping");
    expect_errors(4);
}

static void test_value_errors(void **state)
{
    load_bad("simulator:\n"
             "  seed: -1\n"
             "  endpoints:\n"
             "    - name: a\n"
             "      listen: 127.0.0.1:8101\n"
             "      flavor: azure-openai\n"
             "      deployments:\n"
             "        - name: d\n"
             "          model: m\n"
             "          kind: chatt\n"
             "          capacity: ptu\n"
             "          tpm: 2000000000\n"
             "          ttft: 11m\n"
             "          tokens_per_second: 0\n"
             "          jitter_percent: 101\n"
             "          dimensions: 16385\n"
             "      faults:\n"
             "        - kind: timeout\n"
             "        - kind: status\n"
             "          status: 200\n"
             "          probability: 1.5\n"
             "        - kind: reset\n"
             "          probability: -0.1\n"
             "        - kind: trickle\n"
             "          probability: abc\n"
             "          retry_after: 2h\n");
    expect_error(2, 9, "simulator.seed", "expected a whole number of 0 or more, got \"-1\"");
    expect_error(6, 15, "simulator.endpoints[0].flavor",
                 "expected one of azure, openai, got \"azure-openai\"");
    expect_error(10, 17, "simulator.endpoints[0].deployments[0].kind",
                 "expected one of chat, completions, embeddings, got \"chatt\" (did you mean "
                 "\"chat\"?)");
    expect_error(11, 21, "simulator.endpoints[0].deployments[0].capacity",
                 "expected one of standard, provisioned, got \"ptu\"");
    expect_error(12, 16, "simulator.endpoints[0].deployments[0].tpm",
                 "must be at most 1000000000, got \"2000000000\"");
    expect_error(13, 17, "simulator.endpoints[0].deployments[0].ttft",
                 "must be at most 10m, got \"11m\"");
    expect_error(14, 30, "simulator.endpoints[0].deployments[0].tokens_per_second",
                 "must be at least 1, got \"0\"");
    expect_error(15, 27, "simulator.endpoints[0].deployments[0].jitter_percent",
                 "must be at most 100, got \"101\"");
    expect_error(16, 23, "simulator.endpoints[0].deployments[0].dimensions",
                 "must be at most 16384, got \"16385\"");
    expect_error(18, 17, "simulator.endpoints[0].faults[0].kind",
                 "expected one of none, status, reset, refuse, stall_headers, stall_stream, "
                 "cut_stream, trickle, malformed_json, got \"timeout\"");
    expect_error(20, 19, "simulator.endpoints[0].faults[1].status",
                 "must be at least 400, got \"200\"");
    expect_error(21, 24, "simulator.endpoints[0].faults[1].probability",
                 "must be at most 1 (or 100%), got \"1.5\"");
    expect_error(23, 24, "simulator.endpoints[0].faults[2].probability",
                 "expected a number from 0 to 1 like 0.25, or a percentage like 25%, got "
                 "\"-0.1\" (it cannot be negative)");
    expect_error(25, 24, "simulator.endpoints[0].faults[3].probability",
                 "expected a number from 0 to 1 like 0.25, or a percentage like 25%, got "
                 "\"abc\"");
    expect_error(26, 24, "simulator.endpoints[0].faults[3].retry_after",
                 "must be at most 1h, got \"2h\"");
    expect_errors(15);
}

static void test_missing_and_duplicates(void **state)
{
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: a\n"
             "      listen: 127.0.0.1:8101\n"
             "    - name: b\n"
             "      listen: 127.0.0.1:8102\n"
             "      deployments: []\n"
             "    - name: a\n"
             "      listen: 127.0.0.1:8103\n"
             "      deployments:\n"
             "        - name: gpt-4o\n"
             "          model: gpt-4o\n"
             "        - {name: gpt-4o, model: gpt-4o-mini}\n"
             "        - {model: x}\n"
             "      faults:\n"
             "        - {status: 429}\n"
             "    - region: eastus\n");
    expect_error(3, 7, "simulator.endpoints[0]", "missing required key \"deployments\"");
    expect_error(7, 20, "simulator.endpoints[1].deployments", "must list at least 1 entry");
    expect_error(13, 18, "simulator.endpoints[2].deployments[1].name",
                 "name \"gpt-4o\" is already used by entry 0 (line 11)");
    expect_error(14, 11, "simulator.endpoints[2].deployments[2]", "missing required key \"name\"");
    expect_error(16, 11, "simulator.endpoints[2].faults[0]", "missing required key \"kind\"");
    expect_error(8, 13, "simulator.endpoints[2].name",
                 "name \"a\" is already used by entry 0 (line 3)");
    expect_error(17, 7, "simulator.endpoints[3]", "missing required key \"name\"");
    expect_error(17, 7, "simulator.endpoints[3]", "missing required key \"listen\"");
    expect_error(17, 7, "simulator.endpoints[3]", "missing required key \"deployments\"");
    expect_errors(9);

    /* Not a list; an entry that is not a mapping; an unknown key with a hint. */
    load_bad("simulator:\n"
             "  endpoints: {name: a}\n");
    expect_error(2, 14, "simulator.endpoints", "expected a list of mappings, got a mapping");
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: a\n"
             "      listen: 127.0.0.1:8101\n"
             "      deployments: [gpt-4o]\n"
             "      fault:\n"
             "        - kind: reset\n");
    expect_error(5, 21, "simulator.endpoints[0].deployments[0]",
                 "expected a mapping (one entry of deployments), got a single value");
    expect_error(6, 7, "simulator.endpoints[0].fault",
                 "unknown key \"fault\" (did you mean \"faults\"?)");
    expect_errors(2);
}

static void test_fault_checks(void **state)
{
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: east\n"
             "      listen: 127.0.0.1:8101\n"
             "      deployments:\n"
             "        - {name: gpt-4o, model: gpt-4o}\n"
             "        - {name: text-embedding-3-small, model: text-embedding-3-small}\n"
             "      faults:\n"
             "        - kind: status\n"
             "          deployment: gpt4o\n"
             "        - {kind: status, status: 429, deployment: gpt-4o}\n"
             "        - {kind: reset, deployment: whisper}\n"
             "    - name: west\n"
             "      listen: 127.0.0.1:8102\n"
             "      deployments: [{name: gpt-4o, model: gpt-4o}]\n"
             "      faults:\n"
             "        - kind: reset\n"
             "          status: 503\n");
    expect_error(10, 23, "simulator.endpoints[0].faults[0].deployment",
                 "endpoint \"east\" has no deployment \"gpt4o\" (did you mean \"gpt-4o\"?)");
    expect_error(12, 37, "simulator.endpoints[0].faults[2].deployment",
                 "endpoint \"east\" has no deployment \"whisper\"; its deployments are gpt-4o, "
                 "text-embedding-3-small");
    expect_error(18, 19, "simulator.endpoints[1].faults[0].status",
                 "only a fault of kind status answers with a status, and this one is kind "
                 "reset (remove status, or set kind: status)");
    expect_errors(3);

    /* A fault's deployment is looked up once the endpoint's lists are valid: with
     * another problem in them, that one is reported first. */
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: east\n"
             "      listen: 127.0.0.1:8101\n"
             "      deployments: [{name: gpt-4o, model: gpt-4o}]\n"
             "      faults: [{kind: reset, deployment: nope}, {kind: reset, status: 503}]\n");
    expect_error(6, 71, "simulator.endpoints[0].faults[1].status", "only a fault of kind status");
    expect_errors(1);

    /* status with its own kind, or left at its default with another kind: fine. */
    struct sl_config *c = load_ok("simulator:\n"
                                  "  endpoints:\n"
                                  "    - name: east\n"
                                  "      listen: 127.0.0.1:8101\n"
                                  "      deployments: [{name: gpt-4o, model: gpt-4o}]\n"
                                  "      faults:\n"
                                  "        - {kind: status, status: 503, deployment: gpt-4o}\n"
                                  "        - {kind: stall_headers, duration: 0}\n");
    assert_int_equal(c->simulator.endpoints[0].faults[0].status, 503);
    assert_int_equal(c->simulator.endpoints[0].faults[1].duration_ms, 0);
    sl_config_unref(c);
}

static void test_listen_collisions(void **state)
{
    /* The gateway's default listen is :8080 (every interface), admin 127.0.0.1:9090. */
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: on-admin\n"
             "      listen: 127.0.0.1:9090\n"
             "      deployments: [{name: d, model: m}]\n"
             "    - name: on-listen\n"
             "      listen: 127.0.0.1:8080\n"
             "      deployments: [{name: d, model: m}]\n"
             "    - name: first\n"
             "      listen: 127.0.0.1:8101\n"
             "      deployments: [{name: d, model: m}]\n"
             "    - name: again\n"
             "      listen: 127.0.0.1:8101\n"
             "      deployments: [{name: d, model: m}]\n"
             "    - name: wild\n"
             "      listen: :8101\n"
             "      deployments: [{name: d, model: m}]\n");
    expect_error(4, 15, "simulator.endpoints[0].listen",
                 "endpoint \"on-admin\" listens on 127.0.0.1:9090, whose port is taken by "
                 "admin_listen 127.0.0.1:9090; give each its own port");
    expect_error(7, 15, "simulator.endpoints[1].listen",
                 "endpoint \"on-listen\" listens on 127.0.0.1:8080, whose port is taken by the "
                 "gateway's listen address 0.0.0.0:8080 (a wildcard host takes the port on "
                 "every address)");
    expect_error(13, 15, "simulator.endpoints[3].listen",
                 "endpoint \"again\" listens on 127.0.0.1:8101, whose port is taken by endpoint "
                 "\"first\" (simulator.endpoints[2]) at 127.0.0.1:8101; give each its own port");
    expect_error(16, 15, "simulator.endpoints[4].listen",
                 "endpoint \"wild\" listens on 0.0.0.0:8101, whose port is taken by endpoint "
                 "\"first\" (simulator.endpoints[2]) at 127.0.0.1:8101 (a wildcard host");
    expect_errors(4);

    /* Set elsewhere in the file, before or after the section: still compared. */
    load_bad("simulator:\n"
             "  endpoints:\n"
             "    - name: sim\n"
             "      listen: '[::1]:7000'\n"
             "      deployments: [{name: d, model: m}]\n"
             "listen: ['127.0.0.1:8080', '[::]:7000']\n"
             "admin_listen: 127.0.0.1:9999\n");
    expect_error(4, 15, "simulator.endpoints[0].listen",
                 "endpoint \"sim\" listens on [::1]:7000, whose port is taken by the gateway's "
                 "listen address [::]:7000");
    expect_errors(1);
    load_bad("admin_listen: 127.0.0.1:7001\n"
             "simulator:\n"
             "  endpoints:\n"
             "    - {name: sim, listen: ':7001', deployments: [{name: d, model: m}]}\n");
    expect_error(4, 27, "simulator.endpoints[0].listen",
                 "whose port is taken by admin_listen 127.0.0.1:7001");
    expect_errors(1);

    /* Same host, other ports; or other hosts, same port: fine. */
    struct sl_config *c = load_ok("simulator:\n"
                                  "  endpoints:\n"
                                  "    - {name: a, listen: '127.0.0.1:8101', deployments: "
                                  "[{name: d, model: m}]}\n"
                                  "    - {name: b, listen: '127.0.0.2:8101', deployments: "
                                  "[{name: d, model: m}]}\n"
                                  "    - {name: c, listen: '127.0.0.1:9091', deployments: "
                                  "[{name: d, model: m}]}\n");
    assert_int_equal(c->simulator.n_endpoints, 3);
    sl_config_unref(c);
}

static void expect_deployment(const struct sl_config_sim_deployment *d, const char *name,
                              const char *version, enum sl_sim_kind kind)
{
    assert_string_equal(d->name, name);
    assert_string_equal(d->model, name);
    assert_string_equal(d->version, version);
    assert_int_equal(d->kind, kind);
    assert_int_equal(d->capacity, SL_SIM_CAPACITY_STANDARD);
    assert_int_equal(d->tpm, 0);
    assert_int_equal(d->rpm, 0);
    assert_int_equal(d->ttft_ms, 50);
    assert_int_equal(d->tokens_per_second, 200);
    assert_int_equal(d->jitter_percent, 10);
    assert_int_equal(d->default_max_tokens, 256);
    assert_int_equal(d->context_window, 128000);
    assert_int_equal(d->dimensions, 1536);
}

static struct sl_config *sim_default(const char *host, uint16_t port)
{
    struct sl_config_addr addr;
    struct sl_config *c = NULL;
    memset(&addr, 0, sizeof(addr));
    snprintf(addr.host, sizeof(addr.host), "%s", host);
    addr.port = port;
    int err = sl_config_load_sim_default(&addr, &c, &errs);
    if (err != SL_OK) {
        sl_config_errors_print(&errs, stderr);
        fail_msg("sim default for %s:%u failed: %s", host, (unsigned)port, sl_strerror(err));
    }
    return c;
}

static void test_sim_default(void **state)
{
    struct sl_config *c = sim_default("127.0.0.1", 8000);
    assert_string_equal(c->source, "<sim default>");
    /* Beside a gateway on its defaults: admin on port + 1, not 9090. */
    assert_string_equal(c->admin_listen.host, "127.0.0.1");
    assert_int_equal(c->admin_listen.port, 8001);
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0].host, "0.0.0.0");
    assert_int_equal(c->listen[0].port, 8080);
    /* Otherwise all defaults. */
    assert_int_equal(c->limits.max_body_bytes, 16 * 1024 * 1024);
    assert_int_equal(c->log.level, SL_LOG_INFO);
    assert_int_equal(c->simulator.seed, 0);

    assert_int_equal(c->simulator.n_endpoints, 1);
    const struct sl_config_sim_endpoint *ep = &c->simulator.endpoints[0];
    assert_string_equal(ep->name, "sim");
    assert_string_equal(ep->listen.host, "127.0.0.1");
    assert_int_equal(ep->listen.port, 8000);
    assert_string_equal(ep->region, "eastus");
    assert_int_equal(ep->flavor, SL_SIM_FLAVOR_AZURE);
    assert_int_equal(ep->n_api_keys, 0);
    assert_int_equal(ep->n_faults, 0);
    assert_int_equal(ep->n_deployments, 4);
    expect_deployment(&ep->deployments[0], "gpt-4o", "2024-08-06", SL_SIM_KIND_CHAT);
    expect_deployment(&ep->deployments[1], "gpt-4o-mini", "2024-07-18", SL_SIM_KIND_CHAT);
    expect_deployment(&ep->deployments[2], "gpt-35-turbo-instruct", "0914",
                      SL_SIM_KIND_COMPLETIONS);
    expect_deployment(&ep->deployments[3], "text-embedding-3-small", "1", SL_SIM_KIND_EMBEDDINGS);
    sl_config_unref(c);

    /* Loopback keeps admin on the same host; any other address puts it on loopback: the
     * control API has no admin_token. */
    c = sim_default("::1", 7000);
    assert_string_equal(c->admin_listen.host, "::1");
    assert_int_equal(c->admin_listen.port, 7001);
    assert_string_equal(c->simulator.endpoints[0].listen.host, "::1");
    sl_config_unref(c);
    c = sim_default("0.0.0.0", 7000);
    assert_string_equal(c->admin_listen.host, "127.0.0.1");
    assert_int_equal(c->admin_listen.port, 7001);
    sl_config_unref(c);
    c = sim_default("::", 7000);
    assert_string_equal(c->admin_listen.host, "::1");
    sl_config_unref(c);

    /* The last port has no port + 1: admin goes below it. */
    c = sim_default("127.0.0.1", 65535);
    assert_int_equal(c->admin_listen.port, 65534);
    sl_config_unref(c);

    /* On the gateway's default port (or next to it), the unused gateway listen moves
     * out of the way rather than making the configuration invalid. */
    c = sim_default("0.0.0.0", 8080);
    assert_int_equal(c->simulator.endpoints[0].listen.port, 8080);
    assert_int_equal(c->admin_listen.port, 8081);
    assert_int_equal(c->listen[0].port, 8082);
    sl_config_unref(c);
    c = sim_default("127.0.0.1", 8079);
    assert_int_equal(c->admin_listen.port, 8080);
    assert_int_equal(c->listen[0].port, 8081);
    sl_config_unref(c);

    /* An address no file could hold fails like a file would. */
    struct sl_config_addr bad = {"127.0.0.1", 0};
    c = (struct sl_config *)1;
    assert_int_equal(sl_config_load_sim_default(&bad, &c, &errs), SL_EINVAL);
    assert_null(c);
    assert_true(errs.n > 0);
    assert_string_equal(errs.items[0].file, "<sim default>");
}

static void test_example_file(void **state)
{
    struct sl_config *c = NULL;
    int err = sl_config_load_file("examples/sim-topologies.yaml", &c, &errs);
    if (err)
        sl_config_errors_print(&errs, stderr);
    assert_int_equal(err, SL_OK);
    const struct sl_config_sim *sim = &c->simulator;
    assert_int_equal(sim->n_endpoints, 4);
    assert_string_equal(sim->endpoints[0].name, "aoai-eastus-ptu");
    assert_int_equal(sim->endpoints[0].deployments[0].capacity, SL_SIM_CAPACITY_PROVISIONED);
    assert_string_equal(sim->endpoints[2].region, "swedencentral");
    assert_int_equal(sim->endpoints[3].flavor, SL_SIM_FLAVOR_OPENAI);
    /* Each has a gpt-4o and an embeddings deployment. */
    for (size_t i = 0; i < sim->n_endpoints; i++) {
        const struct sl_config_sim_endpoint *ep = &sim->endpoints[i];
        bool chat = false, embeddings = false;
        for (size_t j = 0; j < ep->n_deployments; j++) {
            chat = chat || strcmp(ep->deployments[j].name, "gpt-4o") == 0;
            embeddings = embeddings || ep->deployments[j].kind == SL_SIM_KIND_EMBEDDINGS;
        }
        if (!chat || !embeddings)
            fail_msg("endpoint %s lacks gpt-4o or an embeddings deployment", ep->name);
    }
    sl_config_unref(c);
}

/* The example's fault rules are commented out (so that it serves cleanly as it is):
 * uncommented, they must be valid too. A block starts at a "# faults:" line and runs
 * over the comment lines after it; "# " is taken off each. */
static void test_example_faults(void **state)
{
    FILE *f = fopen("examples/sim-topologies.yaml", "rb");
    assert_non_null(f);
    struct sl_buf out;
    sl_buf_init(&out);
    char line[512];
    bool in_block = false;
    size_t blocks = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t indent = strspn(line, " ");
        bool comment = line[indent] == '#';
        if (comment && strncmp(line + indent, "# faults:", 9) == 0) {
            in_block = true;
            blocks++;
        } else if (!comment) {
            in_block = false;
        }
        if (in_block && strncmp(line + indent, "# ", 2) == 0) {
            sl_buf_append(&out, line, indent);
            sl_buf_appendf(&out, "%s", line + indent + 2);
        } else {
            sl_buf_appendf(&out, "%s", line);
        }
    }
    fclose(f);
    assert_int_equal(blocks, 2);
    struct sl_config *c = load_ok(out.base);
    assert_int_equal(c->simulator.endpoints[1].n_faults, 2);
    assert_int_equal(c->simulator.endpoints[1].faults[0].status, 429);
    assert_int_equal(c->simulator.endpoints[1].faults[0].probability_ppm, 50000);
    assert_int_equal(c->simulator.endpoints[2].n_faults, 1);
    sl_config_unref(c);
    sl_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_simulator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builtin_default_has_simulated_endpoints, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sim_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_example_faults, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
