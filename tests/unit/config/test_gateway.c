/* The gateway's sections (backends, routes, clients): every value as loaded
 * and resolved, every mistake with its exact position, hashing of client
 * keys, route and client lookups, and the example file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_test.h"

/* sha256("sluice-dev-key") and sha256("abc"), as the file holds them. */
#define DEV_HASH "sha256:f8f3fb39d80a5e70db8cf57f3592d6ad263ea2e049f6c0cc09bf0ad75deb41c4"
#define ABC_HASH "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define ONES_HASH "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define CA_FILE "tests/unit/config/ca.pem"
#define X16 "xxxxxxxxxxxxxxxx"
#define X128 X16 X16 X16 X16 X16 X16 X16 X16

/* No error message may hold secret. */
static void expect_not_said(const char *secret)
{
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.items[i].message, secret) || strstr(errs.items[i].path, secret))
            fail_msg("an error repeats a secret: %s", errs.items[i].message);
}

/* The 32 bytes that hex (64 lowercase digits) stands for. */
static void expect_digest(const unsigned char got[32], const char *hex)
{
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        assert_int_equal(got[i], v);
    }
}

static void test_none(void **state)
{
    struct sl_config *c = load_ok("");
    assert_int_equal(c->n_backends, 0);
    assert_null(c->backends);
    assert_int_equal(c->n_routes, 0);
    assert_null(c->routes);
    assert_null(c->route_order);
    assert_int_equal(c->n_clients, 0);
    assert_null(c->clients);
    assert_true(c->backend_header);
    assert_null(sl_config_find_route(c, SL_STR("gpt-4o")));
    assert_null(sl_config_find_client(c, SL_STR("sluice-dev-key")));
    sl_config_unref(c);
    c = load_ok("backends: []\nroutes:\nclients: []\nbackend_header: false\n");
    assert_int_equal(c->n_backends + c->n_routes + c->n_clients, 0);
    assert_false(c->backend_header);
    sl_config_unref(c);
}

static void test_full(void **state)
{
    setenv("SL_TEST_BACKEND_KEY", "k-from-env", 1);
    struct sl_config *c = load_ok("backend_header: false\n"
                                  "backends:\n"
                                  "  - name: eastus.gpt-4o_1\n"
                                  "    url: https://east.openai.azure.com/\n"
                                  "    type: azure\n"
                                  "    api_key: ${SL_TEST_BACKEND_KEY}\n"
                                  "    region: eastus\n"
                                  "    model: gpt-4o\n"
                                  "    version: '2024-08-06'\n"
                                  "    deployment: prod-gpt-4o\n"
                                  "    connect_timeout: 1500ms\n"
                                  "    first_byte_timeout: 5m\n"
                                  "    idle_timeout: 30s\n"
                                  "    total_timeout: 0\n"
                                  "    ca_file: " CA_FILE "\n"
                                  "    insecure: true\n"
                                  "    http2: false\n"
                                  "  - name: local\n"
                                  "    url: 'http://[::1]:8000/v1'\n"
                                  "    type: openai\n"
                                  "    model: llama\n"
                                  "    deployment: meta-llama/Llama-3.1-8B-Instruct\n"
                                  "routes:\n"
                                  "  - name: gpt-4o\n"
                                  "    backend: eastus.gpt-4o_1\n"
                                  "    api_version: 2024-10-21\n"
                                  "    log_payloads: true\n"
                                  "  - {name: llama, backend: local}\n"
                                  "  - {name: GPT-4o, backend: eastus.gpt-4o_1}\n"
                                  "clients:\n"
                                  "  - name: billing\n"
                                  "    keys:\n"
                                  "      - " ABC_HASH "\n"
                                  "      - " DEV_HASH "\n"
                                  "  - name: search\n"
                                  "    keys: " ONES_HASH "\n");
    assert_false(c->backend_header);
    assert_int_equal(c->n_backends, 2);
    const struct sl_config_backend *b = &c->backends[0];
    assert_string_equal(b->name, "eastus.gpt-4o_1");
    assert_string_equal(b->url, "https://east.openai.azure.com"); /* one '/' dropped */
    assert_int_equal(b->type, SL_BACKEND_AZURE);
    assert_string_equal(b->api_key, "k-from-env");
    assert_string_equal(b->region, "eastus");
    assert_string_equal(b->model, "gpt-4o");
    assert_string_equal(b->version, "2024-08-06");
    assert_string_equal(b->deployment, "prod-gpt-4o");
    assert_int_equal(b->connect_timeout_ms, 1500);
    assert_int_equal(b->first_byte_timeout_ms, 300000);
    assert_int_equal(b->idle_timeout_ms, 30000);
    assert_int_equal(b->total_timeout_ms, 0);
    assert_string_equal(b->ca_file, CA_FILE);
    assert_true(b->insecure);
    assert_false(b->http2);

    /* Everything the second backend leaves out takes its default. */
    b = &c->backends[1];
    assert_string_equal(b->name, "local");
    assert_string_equal(b->url, "http://[::1]:8000/v1");
    assert_int_equal(b->type, SL_BACKEND_OPENAI);
    assert_null(b->api_key);
    assert_null(b->region);
    assert_string_equal(b->model, "llama");
    assert_null(b->version);
    assert_string_equal(b->deployment, "meta-llama/Llama-3.1-8B-Instruct"); /* '/' is fine */
    assert_int_equal(b->connect_timeout_ms, 5000);
    assert_int_equal(b->first_byte_timeout_ms, 60000);
    assert_int_equal(b->idle_timeout_ms, 60000);
    assert_int_equal(b->total_timeout_ms, 600000);
    assert_null(b->ca_file);
    assert_false(b->insecure);
    assert_true(b->http2);

    assert_int_equal(c->n_routes, 3);
    const struct sl_config_route *r = &c->routes[0];
    assert_string_equal(r->name, "gpt-4o");
    assert_string_equal(r->backend, "eastus.gpt-4o_1");
    assert_int_equal(r->pool[0].backend_index, 0);
    assert_string_equal(r->api_version, "2024-10-21");
    assert_true(r->log_payloads);
    r = &c->routes[1];
    assert_string_equal(r->name, "llama");
    assert_string_equal(r->backend, "local");
    assert_int_equal(r->pool[0].backend_index, 1);
    assert_null(r->api_version);
    assert_false(r->log_payloads);
    assert_int_equal(c->routes[2].pool[0].backend_index, 0);
    /* The index is in name order: "GPT-4o" < "gpt-4o" < "llama". */
    assert_non_null(c->route_order);
    assert_int_equal(c->route_order[0], 2);
    assert_int_equal(c->route_order[1], 0);
    assert_int_equal(c->route_order[2], 1);

    assert_int_equal(c->n_clients, 2);
    const struct sl_config_client *cl = &c->clients[0];
    assert_string_equal(cl->name, "billing");
    assert_int_equal(cl->n_keys, 2);
    assert_string_equal(cl->keys[0], ABC_HASH);
    assert_string_equal(cl->keys[1], DEV_HASH);
    assert_non_null(cl->key_hashes);
    static const unsigned char abc[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
    };
    assert_memory_equal(cl->key_hashes[0], abc, 32);
    expect_digest(cl->key_hashes[1], &DEV_HASH[7]);
    cl = &c->clients[1];
    assert_string_equal(cl->name, "search");
    assert_int_equal(cl->n_keys, 1); /* one key is a one-element list */
    expect_digest(cl->key_hashes[0], &ONES_HASH[7]);
    sl_config_unref(c); /* ASan: key_hashes and route_order are freed with the rest */
}

static void test_hash_key(void **state)
{
    char out[SL_CONFIG_HASHED_KEY_SIZE];
    memset(out, 'x', sizeof(out));
    sl_config_hash_key(SL_STR("abc"), out);
    assert_string_equal(out, ABC_HASH);
    sl_config_hash_key(SL_STR("sluice-dev-key"), out);
    assert_string_equal(out, DEV_HASH);
    sl_config_hash_key(SL_STR(""), out);
    assert_string_equal(out,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sl_config_hash_key(SL_STR_NULL, out);
    assert_string_equal(out,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* Only the first len bytes count. */
    sl_config_hash_key((struct sl_str){"abcdef", 3}, out);
    assert_string_equal(out, ABC_HASH);
}

static void test_find_route(void **state)
{
    struct sl_config *c = load_ok("backends: [{name: b, url: 'http://127.0.0.1:1', model: m}]\n"
                                  "routes:\n"
                                  "  - {name: gpt-4o, backend: b}\n"
                                  "  - {name: gpt-4o-mini, backend: b}\n"
                                  "  - {name: text-embedding-3-small, backend: b}\n"
                                  "  - {name: a, backend: b}\n"
                                  "  - {name: z.9, backend: b}\n");
    static const char *const names[] = {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "a",
                                        "z.9"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        const struct sl_config_route *r = sl_config_find_route(c, sl_str_from_cstr(names[i]));
        assert_ptr_equal(r, &c->routes[i]);
    }
    /* A view need not end at a NUL. */
    const char *path = "gpt-4o/chat/completions";
    assert_ptr_equal(sl_config_find_route(c, (struct sl_str){path, 6}), &c->routes[0]);
    assert_ptr_equal(sl_config_find_route(c, (struct sl_str){path, 6}), &c->routes[0]);
    /* Exact and case-sensitive. */
    static const char *const misses[] = {"GPT-4o", "gpt-4", "gpt-4o-", "gpt-4o-minix", "",
                                         "b",      "0",     "zz",      "gpt-4o/"};
    for (size_t i = 0; i < SL_ARRAY_LEN(misses); i++)
        assert_null(sl_config_find_route(c, sl_str_from_cstr(misses[i])));
    assert_null(sl_config_find_route(c, (struct sl_str){"gpt-4o\0x", 8}));
    assert_null(sl_config_find_route(c, SL_STR_NULL));
    assert_null(sl_config_find_route(NULL, SL_STR("gpt-4o")));
    sl_config_unref(c);

    /* Many routes: every one found by the binary search, nothing else. */
    struct sl_buf yaml;
    sl_buf_init(&yaml);
    sl_buf_appendf(&yaml, "backends: [{name: b, url: 'http://127.0.0.1:1', model: m}]\n"
                          "routes:\n");
    for (unsigned i = 0; i < 300; i++)
        sl_buf_appendf(&yaml, "  - {name: r%u, backend: b}\n", (i * 7919u) % 1000u);
    c = load_ok(yaml.base);
    for (size_t i = 0; i < c->n_routes; i++)
        assert_ptr_equal(sl_config_find_route(c, sl_str_from_cstr(c->routes[i].name)),
                         &c->routes[i]);
    assert_null(sl_config_find_route(c, SL_STR("r")));
    assert_null(sl_config_find_route(c, SL_STR("r1000")));
    sl_config_unref(c);
    sl_buf_dispose(&yaml);
}

static void test_find_client(void **state)
{
    struct sl_config *c = load_ok("clients:\n"
                                  "  - {name: a, keys: [" ONES_HASH ", " ABC_HASH "]}\n"
                                  "  - {name: dev, keys: " DEV_HASH "}\n");
    assert_ptr_equal(sl_config_find_client(c, SL_STR("abc")), &c->clients[0]);
    assert_ptr_equal(sl_config_find_client(c, SL_STR("sluice-dev-key")), &c->clients[1]);
    assert_null(sl_config_find_client(c, SL_STR("sluice-dev-keY")));
    assert_null(sl_config_find_client(c, SL_STR("ab")));
    assert_null(sl_config_find_client(c, SL_STR("")));
    assert_null(sl_config_find_client(c, SL_STR_NULL));
    /* The hash itself is not a key. */
    assert_null(sl_config_find_client(c, SL_STR(ABC_HASH)));
    assert_null(sl_config_find_client(NULL, SL_STR("abc")));
    sl_config_unref(c);
}

static void test_defaults_and_required(void **state)
{
    struct sl_config *c = load_ok("backends:\n"
                                  "  - {name: b, url: 'https://h.example', model: m}\n");
    const struct sl_config_backend *b = &c->backends[0];
    assert_int_equal(b->type, SL_BACKEND_AZURE);
    assert_null(b->api_key);
    assert_null(b->region);
    assert_null(b->version);
    assert_null(b->deployment);
    assert_int_equal(b->connect_timeout_ms, 5000);
    assert_int_equal(b->first_byte_timeout_ms, 60000);
    assert_int_equal(b->idle_timeout_ms, 60000);
    assert_int_equal(b->total_timeout_ms, 600000);
    assert_null(b->ca_file);
    assert_false(b->insecure);
    assert_true(b->http2);
    sl_config_unref(c);

    load_bad("backends:\n"
             "  - name: b\n"
             "routes:\n"
             "  - backend: b\n"
             "clients:\n"
             "  - name: c\n"
             "  - {name: d, keys: []}\n");
    expect_error(2, 5, "backends[0]", "missing required key \"url\"");
    expect_error(2, 5, "backends[0]", "missing required key \"model\"");
    expect_error(4, 5, "routes[0]", "missing required key \"name\"");
    expect_error(6, 5, "clients[0].keys",
                 "a client needs `keys` (hashed API keys) or `jwt_issuer`");
    expect_error(7, 21, "clients[1].keys", "a client needs `keys`");
    expect_errors(5);
}

static void test_bad_urls(void **state)
{
    load_bad("backends:\n"
             "  - {name: a, model: m, url: 'ftp://h.example'}\n"
             "  - {name: b, model: m, url: 'https://h.example/?api-version=1'}\n"
             "  - {name: c, model: m, url: 'https://h.example/v1#x'}\n"
             "  - {name: d, model: m, url: 'https://user:hunter2@h.example'}\n"
             "  - {name: e, model: m, url: 'https://h.example//'}\n"
             "  - {name: f, model: m, url: 'https://'}\n"
             "  - {name: g, model: m, url: 'https://h.example:99999'}\n"
             "  - {name: h, model: m, url: 'https://h.example/a b'}\n"
             "  - {name: i, model: m, url: h.example}\n"
             "  - {name: j, model: m, url: 'https://:443'}\n"
             "  - {name: k, model: m, url: 'https://x.openai.azure.com/openai/deployments/d'}\n"
             "  - {name: l, model: m, url: 'ftp://u:hunter3@h?x'}\n");
    expect_error(2, 30, "backends[0].url", "expected a URL like https://NAME.openai.azure.com");
    expect_error(2, 30, "backends[0].url", "got \"ftp://h.example\"");
    expect_error(3, 30, "backends[1].url", "no query (\"?...\") nor fragment");
    expect_error(4, 30, "backends[2].url", "no query (\"?...\") nor fragment");
    expect_error(5, 30, "backends[3].url", "must not hold a user or password");
    expect_error(6, 30, "backends[4].url", "\"//\" makes an empty path segment");
    expect_error(7, 30, "backends[5].url", "got \"https://\"");
    expect_error(8, 30, "backends[6].url", "the port must be a number from 1 to 65535");
    expect_error(9, 30, "backends[7].url", "cannot hold spaces or control characters");
    expect_error(10, 30, "backends[8].url", "got \"h.example\"");
    expect_error(11, 30, "backends[9].url", "got \"https://:443\"");
    expect_error(12, 30, "backends[10].url",
                 "sluice adds \"/openai/...\" itself (did you mean "
                 "\"https://x.openai.azure.com\"?)");
    expect_error(13, 30, "backends[11].url", "must not hold a user or password");
    expect_errors(12);
    expect_not_said("hunter2");
    expect_not_said("hunter3");

    /* One trailing '/' goes; the scheme is case-insensitive; an OpenAI base keeps its path,
     * and only an Azure URL is checked for "/openai". */
    struct sl_config *c = load_ok("backends:\n"
                                  "  - {name: a, model: m, url: 'HTTPS://h.example/v1/'}\n"
                                  "  - {name: b, model: m, url: 'http://10.0.0.5:8000'}\n"
                                  "  - {name: c, model: m, url: 'https://h/openai-proxy/'}\n"
                                  "  - {name: d, model: m, url: 'https://h/x/openai', type: "
                                  "openai}\n");
    assert_string_equal(c->backends[0].url, "HTTPS://h.example/v1");
    assert_string_equal(c->backends[1].url, "http://10.0.0.5:8000");
    assert_string_equal(c->backends[2].url, "https://h/openai-proxy");
    assert_string_equal(c->backends[3].url, "https://h/x/openai");
    sl_config_unref(c);
}

static void test_unknown_backend(void **state)
{
    load_bad("backends:\n"
             "  - {name: eastus-payg, url: 'https://e.example', model: m}\n"
             "  - {name: sweden, url: 'https://s.example', model: m}\n"
             "routes:\n"
             "  - name: gpt-4o\n"
             "    backend: eastus-payj\n"
             "  - {name: mini, backend: westus}\n"
             "  - {name: ok, backend: sweden}\n");
    expect_error(6, 14, "routes[0].backend",
                 "route \"gpt-4o\": no backend \"eastus-payj\" (did you mean \"eastus-payg\"?)");
    expect_error(7, 27, "routes[1].backend",
                 "no backend \"westus\"; the backends are eastus-payg, sweden");
    expect_errors(2);

    load_bad("routes: [{name: r, backend: b}]\n");
    expect_error(1, 29, "routes[0].backend", "there are no backends");
    expect_errors(1);

    /* A route to a backend with a problem is not checked again: one error to fix. */
    load_bad("backends: [{name: b, url: 'ftp://x', model: m}]\n"
             "routes: [{name: r, backend: b}]\n");
    expect_error(1, 27, "backends[0].url", "expected a URL");
    expect_errors(1);
}

static void test_route_names(void **state)
{
    load_bad("backends: [{name: b, url: 'http://h', model: m}]\n"
             "routes:\n"
             "  - {name: a/b, backend: b}\n"
             "  - {name: .., backend: b}\n"
             "  - {name: '%2F', backend: b}\n"
             "  - {name: ., backend: b}\n"
             "  - {name: a..b, backend: b}\n"
             "  - {name: 'a b', backend: b}\n"
             "  - {name: 'gpt?x', backend: b}\n"
             "  - {name: gpt-4o, backend: b}\n"
             "  - {name: gpt-4o, backend: b}\n"
             "  - {name: " X128 "x, backend: b}\n");
    expect_error(3, 12, "routes[0].name", "got \"a/b\"");
    expect_error(3, 12, "routes[0].name", "clients send the name in URL paths");
    expect_error(4, 12, "routes[1].name", "got \"..\"");
    expect_error(5, 12, "routes[2].name", "got \"%2F\"");
    expect_error(6, 12, "routes[3].name", "got \".\"");
    expect_error(7, 12, "routes[4].name", "got \"a..b\"");
    expect_error(8, 12, "routes[5].name", "got \"a b\"");
    expect_error(9, 12, "routes[6].name", "got \"gpt?x\"");
    expect_error(11, 12, "routes[8].name", "name \"gpt-4o\" is already used by entry 7 (line 10)");
    expect_error(12, 12, "routes[9].name", "must be at most 128 characters long");
    expect_errors(9);

    struct sl_config *c = load_ok("backends: [{name: b, url: 'http://h', model: m}]\n"
                                  "routes:\n"
                                  "  - {name: gpt-35-turbo_0125.v2, backend: b}\n"
                                  "  - {name: a.b, backend: b}\n"
                                  "  - {name: '-', backend: b}\n");
    assert_int_equal(c->n_routes, 3);
    sl_config_unref(c);
}

static void test_backend_values(void **state)
{
    setenv("SL_TEST_NEWLINE_KEY", "supersecret\n", 1);
    load_bad("backends:\n"
             "  - name: a/b\n"
             "    url: 'http://h'\n"
             "    model: m\n"
             "    api_key: ${SL_TEST_NEWLINE_KEY}\n"
             "    deployment: x/y\n"
             "  - name: b\n"
             "    url: 'http://h'\n"
             "    model: 'gpt 4o'\n"
             "    api_key: 'two words'\n"
             "    total_timeout: 25h\n"
             "    connect_timeout: 0\n"
             "    type: azur\n"
             "  - {name: a/b, url: 'http://h', model: m}\n"
             "routes:\n"
             "  - {name: r, backend: b, api_version: '2024-10-21&x=1'}\n");
    expect_error(2, 11, "backends[0].name", "got \"a/b\"");
    expect_error(2, 11, "backends[0].name", "the name appears in headers and logs");
    expect_error(5, 14, "backends[0].api_key",
                 "the key must be printable ASCII without spaces; character 12 is not (a "
                 "trailing line break");
    expect_error(6, 17, "backends[0].deployment", "an Azure deployment name is letters, digits");
    expect_error(9, 12, "backends[1].model", "character 4 is not (a space)");
    expect_error(10, 14, "backends[1].api_key", "character 4 is not (a space)");
    expect_error(11, 20, "backends[1].total_timeout", "must be at most 24h");
    expect_error(12, 22, "backends[1].connect_timeout", "must be at least 1ms");
    expect_error(13, 11, "backends[1].type", "expected one of azure, openai, got \"azur\"");
    expect_error(14, 12, "backends[2].name", "got \"a/b\"");
    expect_error(16, 40, "routes[0].api_version",
                 "expected an API version like 2024-10-21 or 2025-01-01-preview");
    expect_errors(10);
    expect_not_said("supersecret");
    expect_not_said("two words");

    /* Backend names are unique; an OpenAI model name may hold '/'. */
    load_bad("backends:\n"
             "  - {name: b, url: 'http://h', model: m, type: openai, deployment: org/model}\n"
             "  - {name: b, url: 'http://h', model: m}\n");
    expect_error(3, 12, "backends[1].name", "name \"b\" is already used by entry 0 (line 2)");
    expect_errors(1);
}

static void test_ca_file(void **state)
{
    load_bad("backends:\n"
             "  - {name: a, url: 'https://h', model: m, ca_file: /nonexistent/ca.pem}\n"
             "  - {name: b, url: 'https://h', model: m, ca_file: tests/unit/config}\n"
             "  - {name: c, url: 'https://h', model: m, ca_file: examples/sluice.yaml}\n"
             "  - {name: d, url: 'https://h', model: m, ca_file: /dev/null}\n");
    expect_error(2, 52, "backends[0].ca_file",
                 "cannot read \"/nonexistent/ca.pem\": No such file or directory");
    expect_error(3, 52, "backends[1].ca_file", "\"tests/unit/config\" is a directory");
    expect_error(4, 52, "backends[2].ca_file",
                 "\"examples/sluice.yaml\" holds none (no \"-----BEGIN CERTIFICATE-----\"");
    expect_error(5, 52, "backends[3].ca_file", "\"/dev/null\" is not a regular file");
    expect_errors(4);
}

static void test_bad_keys(void **state)
{
    load_bad("clients:\n"
             "  - name: a\n"
             "    keys:\n"
             "      - my-raw-secret-key\n"
             "      - sha256:abc\n"
             "      - SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
             "      - sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
             "      - sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adff\n"
             "  - {name: 'b c', keys: " ABC_HASH "}\n"
             "  - name: d\n"
             "    keys: [" ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH
             ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH
             ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH ", " ABC_HASH
             "]\n");
    expect_error(4, 9, "clients[0].keys[0]",
                 "expected a hashed key, \"sha256:\" followed by 64 lowercase hex digits, as "
                 "`sluice hash-key` prints it; if this is a key itself, store its hash");
    expect_error(5, 9, "clients[0].keys[1]", "prints it, got 3 characters after");
    expect_error(6, 9, "clients[0].keys[2]", "write \"sha256:\" in lower case");
    expect_error(7, 9, "clients[0].keys[3]", "character 8 is not (upper case)");
    expect_error(8, 9, "clients[0].keys[4]", "got 66 characters after \"sha256:\"");
    expect_error(9, 12, "clients[1].name", "got \"b c\"");
    expect_error(11, 11, "clients[2].keys", "must list at most 16 values, got 17");
    expect_errors(7);
    expect_not_said("my-raw-secret-key");
}

static void test_duplicate_keys(void **state)
{
    load_bad("clients:\n"
             "  - name: billing\n"
             "    keys:\n"
             "      - " ONES_HASH "\n"
             "      - " ABC_HASH "\n"
             "  - name: search\n"
             "    keys:\n"
             "      - " DEV_HASH "\n"
             "      - " ABC_HASH "\n"
             "  - name: batch\n"
             "    keys: " DEV_HASH "\n"
             "  - name: ops\n"
             "    keys: [" ONES_HASH ", " ONES_HASH "]\n");
    expect_error(9, 9, "clients[1].keys[1]",
                 "client \"search\" has the same key as client \"billing\" "
                 "(clients[0].keys[1]); a key must identify one client");
    expect_error(11, 11, "clients[2].keys",
                 "client \"batch\" has the same key as client \"search\" (clients[1].keys[0])");
    expect_error(13, 12, "clients[3].keys[0]",
                 "client \"ops\" has the same key as client \"billing\" (clients[0].keys[0])");
    expect_error(13, 85, "clients[3].keys[1]",
                 "client \"ops\" has the same key as client \"billing\" (clients[0].keys[0])");
    expect_errors(4);
    /* Reported in file order. */
    assert_int_equal(errs.items[0].line, 9);
    assert_int_equal(errs.items[1].line, 11);

    load_bad("clients:\n"
             "  - name: a\n"
             "    keys: [" ABC_HASH ", " DEV_HASH ", " ABC_HASH "]\n");
    expect_error(3, 158, "clients[0].keys[2]",
                 "client \"a\" lists this key twice (keys[0] and keys[2])");
    expect_errors(1);

    load_bad("clients:\n"
             "  - {name: a, keys: " ABC_HASH "}\n"
             "  - {name: a, keys: " DEV_HASH "}\n");
    expect_error(3, 12, "clients[1].name", "name \"a\" is already used by entry 0 (line 2)");
    expect_errors(1);
}

/* examples/sluice.yaml: a gateway in front of the built-in simulated endpoints. */
/* Every pool member of every route of c is a deployment that sim's simulator serves. */
static void expect_served(const struct sl_config *c, const struct sl_config *sim)
{
    for (size_t i = 0; i < c->n_routes; i++) {
        for (size_t m = 0; m < c->routes[i].n_pool; m++) {
            const struct sl_config_backend *be = &c->backends[c->routes[i].pool[m].backend_index];
            const char *want = be->deployment ? be->deployment : c->routes[i].name;
            bool served = false;
            for (size_t e = 0; e < sim->simulator.n_endpoints; e++) {
                const struct sl_config_sim_endpoint *ep = &sim->simulator.endpoints[e];
                char url[96];
                snprintf(url, sizeof(url), "http://%s:%u", ep->listen.host,
                         (unsigned)ep->listen.port);
                for (size_t d = 0; strcmp(url, be->url) == 0 && d < ep->n_deployments; d++)
                    served = served || strcmp(ep->deployments[d].name, want) == 0;
            }
            if (!served)
                fail_msg("route %s: backend %s does not serve %s", c->routes[i].name, be->name,
                         want);
        }
    }
}

static void test_example_file(void **state)
{
    struct sl_config *c = NULL;
    int err = sl_config_load_file("examples/sluice.yaml", &c, &errs);
    if (err)
        sl_config_errors_print(&errs, stderr);
    assert_int_equal(err, SL_OK);
    assert_true(c->backend_header);
    assert_int_equal(c->n_backends, 3);
    const struct sl_config_route *r = sl_config_find_route(c, SL_STR("gpt-4o"));
    assert_non_null(r);
    const struct sl_config_backend *b = &c->backends[r->pool[0].backend_index];
    assert_string_equal(b->name, "sim-eastus-payg");
    assert_string_equal(b->url, "http://127.0.0.1:8092");
    assert_int_equal(b->type, SL_BACKEND_AZURE);
    r = sl_config_find_route(c, SL_STR("gpt-4o-mini"));
    assert_non_null(r);
    assert_string_equal(c->backends[r->pool[0].backend_index].url, "http://127.0.0.1:8093");
    r = sl_config_find_route(c, SL_STR("text-embedding-3-small"));
    assert_non_null(r);
    assert_string_equal(c->backends[r->pool[0].backend_index].url, "http://127.0.0.1:8091");
    assert_int_equal(c->n_routes, 3);
    assert_int_equal(c->n_clients, 1);
    assert_string_equal(c->clients[0].name, "dev");
    assert_ptr_equal(sl_config_find_client(c, SL_STR("sluice-dev-key")), &c->clients[0]);
    sl_config_unref(c);

    /* Each backend is a deployment that the built-in simulator serves. */
    struct sl_config *def = NULL;
    err = sl_config_load_file("examples/sluice.yaml", &c, &errs);
    assert_int_equal(err, SL_OK);
    assert_int_equal(sl_config_load_default(&def, &errs), SL_OK);
    expect_served(c, def);
    /* ...and so is every backend of the built-in configuration's own pools. */
    expect_served(def, def);
    const struct sl_config_route *gpt = sl_config_find_route(def, SL_STR("gpt-4o"));
    assert_int_equal(gpt->n_pool, 3);
    assert_int_equal(gpt->pool[1].priority, 2);
    sl_config_unref(def);
    sl_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults_and_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
