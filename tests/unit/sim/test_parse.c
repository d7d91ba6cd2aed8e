/* Request bodies: the prompt-token approximation, content hashes and OpenAI-style refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sim/internal.h"

static struct sl_arena arena;
static struct sl_sim_req req;
static struct sl_sim_parse_error perr;

static int parse(enum sl_sim_op op, const char *body)
{
    sl_arena_reset(&arena);
    return sl_sim_parse_request(op, sl_str_from_cstr(body), &arena, &req, &perr);
}

static void refused(enum sl_sim_op op, const char *body, const char *param, const char *code)
{
    assert_int_equal(parse(op, body), SL_EINVAL);
    assert_int_equal(perr.status, 400);
    assert_true(perr.message[0] != '\0');
    assert_string_equal(perr.param, param ? param : "");
    if (code)
        assert_string_equal(perr.code, code);
    else
        assert_null(perr.code);
}

static void test_chat_prompt_tokens(void **state)
{
    /* 3 priming + (3 + ceil(14/4)) + (3 + ceil(10/4)) */
    assert_int_equal(parse(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"You "
                                           "are terse.\"},{\"role\":\"user\",\"content\":\"Say "
                                           "hello.\"}]}"),
                     SL_OK);
    assert_int_equal(req.prompt_tokens, 3 + 3 + 4 + 3 + 3);
    assert_int_equal(req.n, 1);
    assert_int_equal(req.n_hashes, 1);
    assert_false(req.stream);
    assert_int_equal(req.max_tokens, 0);
    assert_int_equal(req.model.len, 0);
    /* a name costs 1 + its tokens; text parts count, an image counts 85 */
    assert_int_equal(parse(SL_SIM_OP_CHAT,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"name\":\"bob\","
                           "\"content\":[{\"type\":\"text\",\"text\":\"12345678\"},{\"type\":"
                           "\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]}]}"),
                     SL_OK);
    assert_int_equal(req.prompt_tokens, 3 + 3 + 1 + 1 + 2 + 85);
    assert_true(sl_str_eq(req.model, SL_STR("m")));
    /* null content (an assistant with tool calls) is fine */
    assert_int_equal(parse(SL_SIM_OP_CHAT,
                           "{\"messages\":[{\"role\":\"assistant\",\"content\":null,"
                           "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                           "{\"role\":\"tool\",\"content\":\"ok\"}]}"),
                     SL_OK);
}

static void test_chat_options(void **state)
{
    assert_int_equal(
        parse(SL_SIM_OP_CHAT,
              "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,"
              "\"stream_options\":{\"include_usage\":true},\"n\":3,\"max_tokens\":7,"
              "\"max_completion_tokens\":9,\"stop\":[\"a\",\"bc\"],\"temperature\":0.2}"),
        SL_OK);
    assert_true(req.stream);
    assert_true(req.include_usage);
    assert_int_equal(req.n, 3);
    assert_int_equal(req.max_tokens, 9); /* the newer name wins */
    assert_int_equal(req.n_stops, 2);
    assert_true(sl_str_eq(req.stops[1], SL_STR("bc")));
    assert_int_equal(parse(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                           "\"stop\":\"END\",\"max_tokens\":null}"),
                     SL_OK);
    assert_int_equal(req.n_stops, 1);
    assert_true(sl_str_eq(req.stops[0], SL_STR("END")));
    assert_int_equal(req.max_tokens, 0);
}

static void test_content_hash(void **state)
{
    assert_int_equal(
        parse(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"), SL_OK);
    uint64_t h = req.hashes[0];
    /* layout, model, limits and stops do not change the answer's seed... */
    assert_int_equal(parse(SL_SIM_OP_CHAT,
                           " { \"model\" : \"x\", \"max_tokens\": 3, \"stop\": \"a\","
                           " \"messages\" : [ { \"content\" : \"hi\", \"role\" : "
                           "\"user\" } ] } "),
                     SL_OK);
    assert_true(req.hashes[0] == h);
    /* ...the content, the role and the seed parameter do */
    assert_int_equal(
        parse(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"ho\"}]}"), SL_OK);
    assert_true(req.hashes[0] != h);
    assert_int_equal(
        parse(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"hi\"}]}"), SL_OK);
    assert_true(req.hashes[0] != h);
    assert_int_equal(
        parse(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"seed\":5}"),
        SL_OK);
    assert_true(req.hashes[0] != h);
}

static void test_chat_refusals(void **state)
{
    refused(SL_SIM_OP_CHAT, "{\"messages\":", NULL, NULL);
    assert_non_null(strstr(perr.message, "could not parse the JSON body"));
    refused(SL_SIM_OP_CHAT, "", NULL, NULL);
    refused(SL_SIM_OP_CHAT, "[1]", NULL, "invalid_type");
    refused(SL_SIM_OP_CHAT, "{}", "messages", "missing_required_parameter");
    refused(SL_SIM_OP_CHAT, "{\"messages\":[]}", "messages", "empty_array");
    refused(SL_SIM_OP_CHAT, "{\"messages\":\"hi\"}", "messages", "invalid_type");
    refused(SL_SIM_OP_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role",
            "missing_required_parameter");
    refused(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
            "messages[0].role", "invalid_value");
    refused(SL_SIM_OP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}",
            "messages[0].content", "invalid_type");
    const char *m = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
    char body[256];
    struct {
        const char *rest, *param, *code;
    } cases[] = {
        {"\"n\":0}", "n", "integer_below_min_value"},
        {"\"n\":129}", "n", "integer_above_max_value"},
        {"\"n\":1.5}", "n", "invalid_type"},
        {"\"max_tokens\":0}", "max_tokens", "integer_below_min_value"},
        {"\"max_tokens\":\"ten\"}", "max_tokens", "invalid_type"},
        {"\"max_tokens\":1e999}", "max_tokens", "invalid_type"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "array_above_max_length"},
        {"\"stop\":[1]}", "stop", "invalid_type"},
        {"\"stream\":\"yes\"}", "stream", "invalid_type"},
        {"\"stream_options\":{\"include_usage\":true}}", "stream_options", "invalid_value"},
        {"\"model\":42}", "model", "invalid_type"},
        {"\"seed\":\"x\"}", "seed", "invalid_type"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        snprintf(body, sizeof(body), "%s%s", m, cases[i].rest);
        if (strstr(cases[i].rest, "1e999")) {
            /* jansson refuses the number itself: not JSON to it */
            assert_int_equal(parse(SL_SIM_OP_CHAT, body), SL_EINVAL);
            continue;
        }
        refused(SL_SIM_OP_CHAT, body, cases[i].param, cases[i].code);
    }
}

static void test_completions(void **state)
{
    assert_int_equal(parse(SL_SIM_OP_COMPLETIONS, "{\"prompt\":\"Once upon a time\"}"), SL_OK);
    assert_int_equal(req.prompt_tokens, 4);
    assert_int_equal(req.n_hashes, 1);
    uint64_t once = req.hashes[0];
    assert_int_equal(
        parse(SL_SIM_OP_COMPLETIONS, "{\"prompt\":[\"Once upon a time\",\"ab\"],\"n\":2}"), SL_OK);
    assert_int_equal(req.n_hashes, 2);
    assert_true(req.hashes[0] == once);
    assert_true(req.hashes[1] != once);
    assert_int_equal(req.prompt_tokens, 5);
    assert_int_equal(parse(SL_SIM_OP_COMPLETIONS, "{\"prompt\":[1,2,3]}"), SL_OK);
    assert_int_equal(req.n_hashes, 1);
    assert_int_equal(req.prompt_tokens, 3);
    assert_int_equal(parse(SL_SIM_OP_COMPLETIONS, "{\"prompt\":[[1,2],[3]]}"), SL_OK);
    assert_int_equal(req.n_hashes, 2);
    assert_int_equal(req.prompt_tokens, 3);
    assert_int_equal(parse(SL_SIM_OP_COMPLETIONS, "{\"prompt\":\"\"}"), SL_OK);
    refused(SL_SIM_OP_COMPLETIONS, "{}", "prompt", "missing_required_parameter");
    refused(SL_SIM_OP_COMPLETIONS, "{\"prompt\":{\"a\":1}}", "prompt", "invalid_type");
    refused(SL_SIM_OP_COMPLETIONS, "{\"prompt\":[]}", "prompt", "empty_array");
    refused(SL_SIM_OP_COMPLETIONS, "{\"prompt\":[[1],[\"x\"]]}", "prompt", "invalid_type");
    refused(SL_SIM_OP_COMPLETIONS, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":50}", "n",
            "invalid_value");
}

static void test_embeddings(void **state)
{
    assert_int_equal(parse(SL_SIM_OP_EMBEDDINGS, "{\"input\":\"hello world\"}"), SL_OK);
    assert_int_equal(req.prompt_tokens, 3);
    assert_int_equal(req.n_hashes, 1);
    assert_false(req.base64);
    uint64_t h = req.hashes[0];
    assert_int_equal(parse(SL_SIM_OP_EMBEDDINGS,
                           "{\"input\":[\"hello world\",\"x\"],"
                           "\"encoding_format\":\"base64\",\"dimensions\":8}"),
                     SL_OK);
    assert_true(req.base64);
    assert_int_equal(req.dimensions, 8);
    assert_int_equal(req.n_hashes, 2);
    assert_true(req.hashes[0] == h); /* per input, wherever it stands */
    assert_int_equal(req.prompt_tokens, 4);
    assert_int_equal(parse(SL_SIM_OP_EMBEDDINGS, "{\"input\":[[1,2,3],[4]]}"), SL_OK);
    assert_int_equal(req.n_hashes, 2);
    assert_int_equal(req.prompt_tokens, 4);
    refused(SL_SIM_OP_EMBEDDINGS, "{}", "input", "missing_required_parameter");
    refused(SL_SIM_OP_EMBEDDINGS, "{\"input\":\"\"}", "input", NULL);
    refused(SL_SIM_OP_EMBEDDINGS, "{\"input\":[\"a\",\"\"]}", "input", NULL);
    refused(SL_SIM_OP_EMBEDDINGS, "{\"input\":[]}", "input", "empty_array");
    refused(SL_SIM_OP_EMBEDDINGS, "{\"input\":\"a\",\"encoding_format\":\"hex\"}",
            "encoding_format", "invalid_value");
    refused(SL_SIM_OP_EMBEDDINGS, "{\"input\":\"a\",\"dimensions\":0}", "dimensions",
            "integer_below_min_value");
    /* more inputs than the API allows */
    struct sl_buf b;
    sl_buf_init(&b);
    sl_buf_appendf(&b, "{\"input\":[");
    for (int i = 0; i <= SL_SIM_MAX_INPUTS; i++)
        sl_buf_appendf(&b, "%s\"x\"", i ? "," : "");
    sl_buf_appendf(&b, "]}");
    refused(SL_SIM_OP_EMBEDDINGS, b.base, "input", "array_above_max_length");
    sl_buf_dispose(&b);
}

static void test_responses(void **state)
{
    assert_int_equal(parse(SL_SIM_OP_RESPONSES, "{\"model\":\"gpt-4o\",\"input\":\"Hello there\"}"),
                     SL_OK);
    assert_int_equal(req.prompt_tokens, 3 + 3 + 3);
    assert_true(req.store);
    assert_int_equal(req.n, 1);
    assert_int_equal(parse(SL_SIM_OP_RESPONSES,
                           "{\"model\":\"m\",\"instructions\":\"Be brief.\",\"input\":[{\"role\":"
                           "\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Hi\"}]}],"
                           "\"previous_response_id\":\"resp_1\",\"max_output_tokens\":16,"
                           "\"store\":false,\"stream\":true}"),
                     SL_OK);
    assert_int_equal(req.prompt_tokens, 3 + (3 + 3) + (3 + 1));
    assert_true(sl_str_eq(req.instructions, SL_STR("Be brief.")));
    assert_true(sl_str_eq(req.previous_response_id, SL_STR("resp_1")));
    assert_int_equal(req.max_tokens, 16);
    assert_false(req.store);
    assert_true(req.stream);
    refused(SL_SIM_OP_RESPONSES, "{\"model\":\"m\"}", "input", "missing_required_parameter");
    refused(SL_SIM_OP_RESPONSES, "{\"input\":\"x\",\"max_output_tokens\":5}", "max_output_tokens",
            "integer_below_min_value");
    refused(SL_SIM_OP_RESPONSES, "{\"input\":5}", "input", "invalid_type");
}

static int setup(void **state)
{
    sl_arena_init(&arena, 4096);
    return 0;
}

static int teardown(void **state)
{
    sl_arena_dispose(&arena);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_prompt_tokens), cmocka_unit_test(test_chat_options),
        cmocka_unit_test(test_content_hash),       cmocka_unit_test(test_chat_refusals),
        cmocka_unit_test(test_completions),        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
