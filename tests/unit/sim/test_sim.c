/*
 * The simulator's state built from a configuration written in C, its object
 * store, fault selection and reset, and the JSON it renders (parsed back with
 * jansson: valid, Azure-shaped, and the same text streamed or not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/internal.h"

static struct sl_config_sim_deployment deps[3];
static struct sl_config_sim_endpoint eps[2];
static struct sl_config_sim_fault faults[1];
static char *keys[] = {"k1"};
static struct sl_config cfg;
static struct sl_sim *sim;

static int setup(void **state)
{
    deps[0] = (struct sl_config_sim_deployment){.name = "gpt-4o",
                                                .model = "gpt-4o",
                                                .version = "2024-08-06",
                                                .kind = SL_SIM_KIND_CHAT,
                                                .tpm = 1000,
                                                .default_max_tokens = 50,
                                                .context_window = 128000,
                                                .tokens_per_second = 100};
    deps[1] = (struct sl_config_sim_deployment){.name = "instruct",
                                                .model = "gpt-35-turbo-instruct",
                                                .version = "",
                                                .kind = SL_SIM_KIND_COMPLETIONS};
    deps[2] = (struct sl_config_sim_deployment){.name = "emb",
                                                .model = "text-embedding-3-small",
                                                .version = "1",
                                                .kind = SL_SIM_KIND_EMBEDDINGS,
                                                .dimensions = 8};
    faults[0] = (struct sl_config_sim_fault){
        .kind = SL_SIM_FAULT_STATUS, .status = 503, .count = 1, .probability_ppm = 1000000};
    eps[0] = (struct sl_config_sim_endpoint){.name = "east",
                                             .region = "eastus",
                                             .flavor = SL_SIM_FLAVOR_AZURE,
                                             .api_keys = keys,
                                             .n_api_keys = 1,
                                             .deployments = deps,
                                             .n_deployments = 3,
                                             .faults = faults,
                                             .n_faults = 1};
    eps[1] = (struct sl_config_sim_endpoint){.name = "plain",
                                             .region = "local",
                                             .flavor = SL_SIM_FLAVOR_OPENAI,
                                             .deployments = deps,
                                             .n_deployments = 1};
    memset(&cfg, 0, sizeof(cfg));
    /* The test keeps its own reference: the config is static, never freed. */
    atomic_init(&cfg.refs, 1);
    cfg.simulator = (struct sl_config_sim){.seed = 1, .endpoints = eps, .n_endpoints = 2};
    return sl_sim_new(&cfg, &sim) == SL_OK ? 0 : -1;
}

static int teardown(void **state)
{
    sl_sim_free(sim);
    assert_int_equal(atomic_load(&cfg.refs), 1);
    return 0;
}

static void test_state(void **state)
{
    assert_int_equal(sl_sim_endpoint_count(sim), 2);
    struct sl_sim_endpoint *ep = sl_sim_endpoint_data(sim, 0);
    assert_non_null(ep);
    assert_null(sl_sim_endpoint_data(sim, 2));
    struct sl_sim_deployment *d = sl_sim_find_deployment(ep, SL_STR("gpt-4o"));
    assert_non_null(d);
    assert_string_equal(d->model_name, "gpt-4o-2024-08-06");
    assert_int_equal(strlen(d->fingerprint), 13);
    assert_memory_equal(d->fingerprint, "fp_", 3);
    assert_int_equal(d->quota.rpm, 6);
    assert_string_equal(sl_sim_find_deployment(ep, SL_STR("instruct"))->model_name,
                        "gpt-35-turbo-instruct");
    assert_null(sl_sim_find_deployment(ep, SL_STR("nope")));
    assert_int_equal(atomic_load(&cfg.refs), 2);
}

static void test_faults_and_reset(void **state)
{
    struct sl_sim_endpoint *ep = sl_sim_endpoint_data(sim, 0);
    struct sl_sim_fault f;
    /* the config's rule: once */
    assert_true(sl_sim_pick_fault(ep, SL_STR("gpt-4o"), &f));
    assert_int_equal(f.kind, SL_SIM_FAULT_STATUS);
    assert_int_equal(f.status, 503);
    assert_false(sl_sim_pick_fault(ep, SL_STR("gpt-4o"), &f));
    assert_int_equal(f.kind, SL_SIM_FAULT_NONE);
    /* the other endpoint has none */
    assert_false(sl_sim_pick_fault(sl_sim_endpoint_data(sim, 1), SL_STR("gpt-4o"), &f));
    sl_sim_count(&ep->deployments[0].stats.requests, 3);
    sl_sim_endpoint_reset(ep);
    assert_int_equal(atomic_load(&ep->deployments[0].stats.requests), 0);
    /* reset gives the config's rules their counts back */
    assert_true(sl_sim_pick_fault(ep, SL_STR("gpt-4o"), &f));
    assert_int_equal(f.status, 503);
}

static void test_store(void **state)
{
    struct sl_sim_store s;
    struct sl_arena arena;
    struct sl_str body;
    uint64_t tokens = 0;
    char id[32];
    sl_arena_init(&arena, 4096);
    assert_int_equal(sl_sim_store_init(&s), SL_OK);
    assert_int_equal(
        sl_sim_store_get(&s, SL_SIM_OBJ_THREAD, SL_STR("thread_x"), &arena, &body, NULL),
        SL_ENOTFOUND);
    assert_int_equal(
        sl_sim_store_put(&s, SL_SIM_OBJ_RESPONSE, SL_STR("resp_1"), SL_STR("{\"a\":1}"), 42),
        SL_OK);
    assert_int_equal(
        sl_sim_store_get(&s, SL_SIM_OBJ_RESPONSE, SL_STR("resp_1"), &arena, &body, &tokens), SL_OK);
    assert_true(sl_str_eq(body, SL_STR("{\"a\":1}")));
    assert_int_equal(tokens, 42);
    /* kinds are separate */
    assert_int_equal(sl_sim_store_get(&s, SL_SIM_OBJ_THREAD, SL_STR("resp_1"), &arena, &body, NULL),
                     SL_ENOTFOUND);
    assert_int_equal(sl_sim_store_delete(&s, SL_SIM_OBJ_RESPONSE, SL_STR("resp_1")), SL_OK);
    assert_int_equal(sl_sim_store_delete(&s, SL_SIM_OBJ_RESPONSE, SL_STR("resp_1")), SL_ENOTFOUND);
    /* bounded: the oldest is forgotten first */
    for (int i = 0; i <= SL_SIM_STORE_CAP; i++) {
        snprintf(id, sizeof(id), "thread_%d", i);
        assert_int_equal(
            sl_sim_store_put(&s, SL_SIM_OBJ_THREAD, sl_str_from_cstr(id), SL_STR("{}"), 0), SL_OK);
    }
    assert_int_equal(
        sl_sim_store_get(&s, SL_SIM_OBJ_THREAD, SL_STR("thread_0"), &arena, &body, NULL),
        SL_ENOTFOUND);
    assert_int_equal(
        sl_sim_store_get(&s, SL_SIM_OBJ_THREAD, SL_STR("thread_1"), &arena, &body, NULL), SL_OK);
    snprintf(id, sizeof(id), "thread_%d", SL_SIM_STORE_CAP);
    assert_int_equal(
        sl_sim_store_get(&s, SL_SIM_OBJ_THREAD, sl_str_from_cstr(id), &arena, &body, NULL), SL_OK);
    sl_sim_store_clear(&s);
    assert_int_equal(
        sl_sim_store_get(&s, SL_SIM_OBJ_THREAD, SL_STR("thread_1"), &arena, &body, NULL),
        SL_ENOTFOUND);
    sl_sim_store_dispose(&s);
    sl_arena_dispose(&arena);
}

/* A call as the handler would set it up, for a body parsed from text. */
struct fixture {
    struct sl_arena arena;
    struct sl_http_request req;
    struct sl_sim_call c;
};

static void call_for(struct fixture *fx, size_t ep, const char *dep, enum sl_sim_op op,
                     const char *body)
{
    struct sl_sim_parse_error perr;
    memset(fx, 0, sizeof(*fx));
    sl_arena_init(&fx->arena, 4096);
    fx->req.arena = &fx->arena;
    fx->c.req = &fx->req;
    fx->c.ep = sl_sim_endpoint_data(sim, ep);
    fx->c.azure = fx->c.ep->cfg->flavor == SL_SIM_FLAVOR_AZURE;
    fx->c.dep = sl_sim_find_deployment(fx->c.ep, sl_str_from_cstr(dep));
    assert_int_equal(sl_sim_parse_request(op, sl_str_from_cstr(body), &fx->arena, &fx->c.r, &perr),
                     SL_OK);
    fx->c.prompt_tokens = fx->c.r.prompt_tokens;
    fx->c.max_tokens = fx->c.r.max_tokens ? fx->c.r.max_tokens : fx->c.dep->cfg->default_max_tokens;
    fx->c.seed = 77;
    fx->c.created = 1700000000;
    sl_sim_id_new(fx->c.id, "chatcmpl-", 29, false);
    sl_sim_id_new(fx->c.item_id, "msg_", 48, true);
}

static json_t *load(struct sl_buf *b)
{
    json_error_t err;
    json_t *j = json_loadb(b->base, b->len, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %.*s", err.text, (int)b->len, b->base);
    return j;
}

static const char *str_at(json_t *j, const char *path)
{
    json_t *v = j;
    char key[64];
    const char *p = path;
    while (*p && v) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, p);
        v = json_is_array(v) ? json_array_get(v, (size_t)strtoul(key, NULL, 10))
                             : json_object_get(v, key);
        p += n + (p[n] == '.');
    }
    return json_string_value(v);
}

static json_int_t int_at(json_t *j, const char *a, const char *b)
{
    return json_integer_value(json_object_get(json_object_get(j, a), b));
}

static void test_render_chat(void **state)
{
    struct fixture fx;
    struct sl_buf b;
    call_for(
        &fx, 0, "gpt-4o", SL_SIM_OP_CHAT,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"n\":2,\"max_tokens\":30}");
    sl_buf_init(&b);
    assert_int_equal(sl_sim_render_chat(&b, &fx.c), SL_OK);
    json_t *j = load(&b);
    assert_string_equal(str_at(j, "object"), "chat.completion");
    assert_string_equal(str_at(j, "model"), "gpt-4o-2024-08-06");
    assert_memory_equal(str_at(j, "id"), "chatcmpl-", 9);
    assert_int_equal(strlen(str_at(j, "id")), 9 + 29);
    assert_string_equal(str_at(j, "choices.0.message.role"), "assistant");
    assert_string_equal(str_at(j, "choices.1.content_filter_results.hate.severity"), "safe");
    assert_string_equal(str_at(j, "prompt_filter_results.0.content_filter_results.hate.severity"),
                        "safe");
    const char *c0 = str_at(j, "choices.0.message.content");
    const char *c1 = str_at(j, "choices.1.message.content");
    assert_string_not_equal(c0, c1); /* each choice its own answer */
    json_int_t ct = int_at(j, "usage", "completion_tokens");
    assert_int_equal(int_at(j, "usage", "prompt_tokens"), 3 + 3 + 2);
    assert_int_equal(int_at(j, "usage", "total_tokens"), 8 + ct);
    assert_true(ct <= 60);
    /* the stream's token events carry the same text */
    struct sl_sim_plan p = fx.c.plans[0];
    struct sl_sim_gen g;
    char tok[SL_SIM_TOKEN_MAX];
    struct sl_buf streamed;
    sl_buf_init(&streamed);
    sl_sim_gen_init(&g, sl_sim_choice_seed(&fx.c, 0, 0));
    for (uint32_t i = 0; i < p.tokens; i++) {
        size_t n = sl_sim_gen_next(&g, tok);
        sl_buf_append(&streamed, tok, SL_MIN(n, p.bytes - streamed.len));
    }
    assert_string_equal(streamed.base, c0);
    sl_buf_dispose(&streamed);
    char first[SL_SIM_TEXT_MAX];
    snprintf(first, sizeof(first), "%s", c0);
    json_decref(j);

    /* the same request again: the same answer */
    b.len = 0;
    fx.c.plans = NULL;
    assert_int_equal(sl_sim_render_chat(&b, &fx.c), SL_OK);
    j = load(&b);
    assert_string_equal(str_at(j, "choices.0.message.content"), first);
    json_decref(j);
    sl_buf_dispose(&b);
    sl_arena_dispose(&fx.arena);
}

static void test_render_openai_flavour(void **state)
{
    struct fixture fx;
    struct sl_buf b;
    call_for(&fx, 1, "gpt-4o", SL_SIM_OP_CHAT,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}");
    sl_buf_init(&b);
    assert_int_equal(sl_sim_render_chat(&b, &fx.c), SL_OK);
    json_t *j = load(&b);
    assert_null(json_object_get(j, "prompt_filter_results"));
    assert_null(json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                                "content_filter_results"));
    json_decref(j);
    sl_buf_dispose(&b);
    sl_arena_dispose(&fx.arena);
}

static void test_render_events(void **state)
{
    struct fixture fx;
    struct sl_buf b;
    call_for(&fx, 0, "gpt-4o", SL_SIM_OP_CHAT,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true}}");
    assert_int_equal(sl_sim_plan_choices(&fx.c), SL_OK);
    sl_buf_init(&b);
    int (*events[])(struct sl_buf *, struct sl_sim_call *) = {sl_sim_event_prompt_filter,
                                                              sl_sim_event_usage};
    for (size_t i = 0; i < 5; i++) {
        b.len = 0;
        if (i < 2)
            assert_int_equal(events[i](&b, &fx.c), SL_OK);
        else if (i == 2)
            assert_int_equal(sl_sim_event_role(&b, &fx.c, 0), SL_OK);
        else if (i == 3)
            assert_int_equal(sl_sim_event_token(&b, &fx.c, 0, SL_STR(" word")), SL_OK);
        else
            assert_int_equal(sl_sim_event_finish(&b, &fx.c, 0), SL_OK);
        assert_memory_equal(b.base, "data: ", 6);
        assert_memory_equal(b.base + b.len - 2, "\n\n", 2);
        struct sl_buf data = {b.base + 6, b.len - 8, 0};
        json_t *j = load(&data);
        if (i == 0) {
            assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
            assert_string_equal(str_at(j, "id"), "");
        } else if (i == 1) {
            assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
            assert_true(
                json_is_integer(json_object_get(json_object_get(j, "usage"), "total_tokens")));
        } else {
            assert_string_equal(str_at(j, "object"), "chat.completion.chunk");
            assert_true(json_is_null(json_object_get(j, "usage")));
        }
        if (i == 3)
            assert_string_equal(str_at(j, "choices.0.delta.content"), " word");
        if (i == 4)
            assert_string_equal(str_at(j, "choices.0.finish_reason"),
                                sl_sim_finish_name(fx.c.plans[0].finish));
        json_decref(j);
    }
    sl_buf_dispose(&b);
    sl_arena_dispose(&fx.arena);
}

static void test_render_completions_embeddings_responses(void **state)
{
    struct fixture fx;
    struct sl_buf b;
    sl_buf_init(&b);
    call_for(&fx, 0, "instruct", SL_SIM_OP_COMPLETIONS,
             "{\"prompt\":[\"a\",\"b\"],\"max_tokens\":5,\"n\":2}");
    assert_int_equal(sl_sim_render_completions(&b, &fx.c), SL_OK);
    json_t *j = load(&b);
    assert_string_equal(str_at(j, "object"), "text_completion");
    assert_string_equal(str_at(j, "model"), "gpt-35-turbo-instruct");
    assert_int_equal(json_array_size(json_object_get(j, "choices")), 4);
    assert_int_equal(json_array_size(json_object_get(j, "prompt_filter_results")), 2);
    assert_string_equal(str_at(j, "choices.3.finish_reason"), "length");
    json_decref(j);
    sl_arena_dispose(&fx.arena);

    b.len = 0;
    call_for(&fx, 0, "emb", SL_SIM_OP_EMBEDDINGS,
             "{\"input\":[\"x\",\"y\"],\"encoding_format\":\"base64\"}");
    assert_int_equal(sl_sim_render_embeddings(&b, &fx.c), SL_OK);
    j = load(&b);
    assert_string_equal(str_at(j, "model"), "text-embedding-3-small");
    assert_int_equal(strlen(str_at(j, "data.1.embedding")), (8 * 4 + 2) / 3 * 4);
    assert_int_equal(int_at(j, "usage", "prompt_tokens"), 2);
    json_decref(j);
    sl_arena_dispose(&fx.arena);

    b.len = 0;
    call_for(&fx, 0, "gpt-4o", SL_SIM_OP_RESPONSES,
             "{\"model\":\"gpt-4o\",\"input\":\"Hi\",\"instructions\":\"Be \\\"brief\\\"\"}");
    assert_int_equal(sl_sim_render_response(&b, &fx.c, false), SL_OK);
    j = load(&b);
    assert_string_equal(str_at(j, "object"), "response");
    assert_string_equal(str_at(j, "instructions"), "Be \"brief\"");
    assert_string_equal(str_at(j, "output.0.content.0.type"), "output_text");
    assert_int_equal(int_at(j, "usage", "total_tokens"),
                     int_at(j, "usage", "input_tokens") + int_at(j, "usage", "output_tokens"));
    json_decref(j);
    for (uint32_t step = 0; step < 4; step++) {
        b.len = 0;
        assert_int_equal(sl_sim_event_response_start(&b, &fx.c, step, step), SL_OK);
        assert_memory_equal(b.base, "event: response.", 16);
        b.len = 0;
        assert_int_equal(sl_sim_event_response_end(&b, &fx.c, step, 10 + step), SL_OK);
        const char *data = strstr(b.base, "\ndata: ");
        assert_non_null(data);
        struct sl_buf d = {(char *)data + 7, strlen(data + 7) - 2, 0};
        j = load(&d);
        assert_int_equal(json_integer_value(json_object_get(j, "sequence_number")), 10 + step);
        json_decref(j);
    }
    sl_buf_dispose(&b);
    sl_arena_dispose(&fx.arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_faults_and_reset),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_render_chat),
        cmocka_unit_test(test_render_openai_flavour),
        cmocka_unit_test(test_render_events),
        cmocka_unit_test(test_render_completions_embeddings_responses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
