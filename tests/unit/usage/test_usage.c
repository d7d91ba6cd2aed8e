/*
 * Usage from answers: real-shaped JSON and streams (fed whole, byte by
 * byte, split at every boundary and at random), absurd or malformed counts
 * (never trusted), "usage" inside a string (never captured), and cost math.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "usage/usage.h"

/* An Azure chat completion as it comes back, with content filter results. */
static const char AZURE_CHAT[] =
    "{\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":"
    "\"safe\"}},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null,\"message\":{"
    "\"content\":\"Usage is \\\"usage\\\": {\\\"prompt_tokens\\\": 1}, quoted.\",\"refusal\":"
    "null,\"role\":\"assistant\"}}],\"created\":1735689600,\"id\":\"chatcmpl-AbC\",\"model\":"
    "\"gpt-4o-2024-08-06\",\"object\":\"chat.completion\",\"prompt_filter_results\":[{"
    "\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":"
    "\"safe\"}}}],\"system_fingerprint\":\"fp_1\",\"usage\":{\"completion_tokens\":12,"
    "\"completion_tokens_details\":{\"accepted_prediction_tokens\":0,\"audio_tokens\":0,"
    "\"reasoning_tokens\":3,\"rejected_prediction_tokens\":0},\"prompt_tokens\":19,"
    "\"prompt_tokens_details\":{\"audio_tokens\":0,\"cached_tokens\":8},\"total_tokens\":31}}";

/* A streamed chat completion with stream_options.include_usage. */
static const char CHAT_STREAM[] =
    "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\","
    "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":999}\","
    "\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"id\":\"chatcmpl-1\","
    "\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\" ends in a backslash \\\\\"},"
    "\"finish_reason\":null,\"index\":0}],\"id\":\"chatcmpl-1\",\"usage\":null}\n\n"
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],"
    "\"id\":\"chatcmpl-1\",\"usage\":null}\n\n"
    "data: {\"choices\":[],\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
    "\"usage\": {\"completion_tokens\":7,\"completion_tokens_details\":{\"reasoning_tokens\":0},"
    "\"prompt_tokens\":25,\"prompt_tokens_details\":{\"cached_tokens\":0},\"total_tokens\":32}}"
    "\n\n"
    "data: [DONE]\n\n";

/* A Responses API stream: usage null while in progress, final in response.completed. */
static const char RESPONSES_STREAM[] =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\","
    "\"status\":\"in_progress\",\"tools\":[],\"usage\":null}}\n\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi \\\"usage\\\" : {\","
    "\"sequence_number\":4}\n\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":"
    "\"resp_1\",\"status\":\"completed\",\"text\":{\"format\":{\"type\":\"text\"}},\"usage\" :\n"
    " {\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":"
    "11,\"output_tokens_details\":{\"reasoning_tokens\":4},\"total_tokens\":48},\"user\":null,"
    "\"metadata\":{}}}\n\n";

static const char EMBEDDINGS[] =
    "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
    "\"AAAAAA==\"}],\"model\":\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":8,"
    "\"total_tokens\":8}}";

static struct sl_usage parse(const char *text)
{
    return sl_usage_parse(sl_str_from_cstr(text));
}

static void expect(struct sl_usage u, uint64_t prompt, uint64_t cached, uint64_t completion,
                   uint64_t reasoning, uint64_t total)
{
    assert_true(u.found);
    assert_int_equal(u.prompt, prompt);
    assert_int_equal(u.cached, cached);
    assert_int_equal(u.completion, completion);
    assert_int_equal(u.reasoning, reasoning);
    assert_int_equal(u.total, total);
}

static void expect_none(struct sl_usage u)
{
    assert_false(u.found);
    assert_int_equal(u.prompt + u.cached + u.completion + u.reasoning + u.total, 0);
}

/* Feed text in the given chunk sizes (cycled); each chunk is its own allocation, so that a
 * read past a chunk's end is caught under ASan. */
static struct sl_usage scan_sizes(const char *text, size_t len, const size_t *sizes, size_t n_sizes)
{
    struct sl_usage_scanner s;
    sl_usage_scanner_init(&s);
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = SL_MIN(sizes[i % n_sizes], len - off);
        char *chunk = malloc(n);
        assert_non_null(chunk);
        memcpy(chunk, text + off, n);
        sl_usage_scanner_feed(&s, chunk, n);
        free(chunk);
        off += n;
    }
    assert_int_equal(s.bytes, len);
    struct sl_usage u = sl_usage_scanner_result(&s);
    sl_usage_scanner_dispose(&s);
    return u;
}

static struct sl_usage scan_whole(const char *text)
{
    size_t len = strlen(text);
    return scan_sizes(text, len, &len, 1);
}

/* The same usage whichever way text is split: whole, byte by byte, at every single
 * boundary, at every pair of boundaries (for short texts) and at random. */
static void expect_every_split(const char *text, struct sl_usage want)
{
    size_t len = strlen(text);
    struct sl_usage got;
    size_t one = 1;
    got = scan_whole(text);
    assert_memory_equal(&got, &want, sizeof(got));
    got = scan_sizes(text, len, &one, 1);
    assert_memory_equal(&got, &want, sizeof(got));
    for (size_t cut = 1; cut < len; cut++) {
        size_t sizes[2] = {cut, len};
        got = scan_sizes(text, len, sizes, 2);
        assert_memory_equal(&got, &want, sizeof(got));
    }
    uint32_t seed = 12345;
    for (int round = 0; round < 300; round++) {
        size_t sizes[16];
        for (size_t i = 0; i < SL_ARRAY_LEN(sizes); i++) {
            seed = seed * 1103515245u + 12345u;
            sizes[i] = 1 + (seed >> 16) % (round % 2 ? 7 : 40);
        }
        got = scan_sizes(text, len, sizes, SL_ARRAY_LEN(sizes));
        assert_memory_equal(&got, &want, sizeof(got));
    }
}

static void test_azure_chat(void **state)
{
    struct sl_usage u = parse(AZURE_CHAT);
    expect(u, 19, 8, 12, 3, 31);
    expect_every_split(AZURE_CHAT, u);
}

static void test_chat_stream(void **state)
{
    struct sl_usage u = parse(CHAT_STREAM);
    expect(u, 25, 0, 7, 0, 32);
    expect_every_split(CHAT_STREAM, u);
}

static void test_responses_stream(void **state)
{
    struct sl_usage u = parse(RESPONSES_STREAM);
    expect(u, 37, 5, 11, 4, 48);
    expect_every_split(RESPONSES_STREAM, u);
}

static void test_embeddings(void **state)
{
    struct sl_usage u = parse(EMBEDDINGS);
    expect(u, 8, 0, 0, 0, 8);
    expect_every_split(EMBEDDINGS, u);
}

static void test_usage_object_itself(void **state)
{
    expect(parse("  {\"prompt_tokens\":3,\"completion_tokens\":4}"), 3, 0, 4, 0, 7);
    expect(parse("{\"input_tokens\":3,\"output_tokens\":4,\"total_tokens\":9}"), 3, 0, 4, 0, 9);
    /* Details given as null count 0. */
    expect(parse("{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7,"
                 "\"prompt_tokens_details\":null,\"completion_tokens_details\":{"
                 "\"reasoning_tokens\":null}}"),
           3, 0, 4, 0, 7);
    /* The bounds themselves are accepted. */
    expect(parse("{\"prompt_tokens\":1099511627776,\"completion_tokens\":0}"), 1ull << 40, 0, 0, 0,
           1ull << 40);
}

static void test_absurd_not_trusted(void **state)
{
    static const char *const bad[] = {
        "{\"prompt_tokens\":\"19\",\"completion_tokens\":1}",
        "{\"prompt_tokens\":-1,\"completion_tokens\":1}",
        "{\"prompt_tokens\":19,\"completion_tokens\":-1}",
        "{\"prompt_tokens\":19.0,\"completion_tokens\":1}",
        "{\"prompt_tokens\":1125899906842624,\"completion_tokens\":1}", /* 2^50 */
        "{\"prompt_tokens\":1099511627777,\"completion_tokens\":1}",    /* 2^40 + 1 */
        "{\"prompt_tokens\":99999999999999999999999,\"completion_tokens\":1}",
        "{\"prompt_tokens\":5,\"completion_tokens\":1,"
        "\"prompt_tokens_details\":{\"cached_tokens\":6}}",
        "{\"prompt_tokens\":5,\"completion_tokens\":1,"
        "\"completion_tokens_details\":{\"reasoning_tokens\":2}}",
        "{\"prompt_tokens\":5,\"completion_tokens\":1,\"prompt_tokens_details\":[]}",
        "{\"prompt_tokens\":5,\"completion_tokens\":1,"
        "\"prompt_tokens_details\":{\"cached_tokens\":\"0\"}}",
        "{\"prompt_tokens\":5,\"completion_tokens\":4,\"total_tokens\":8}",
        "{\"prompt_tokens\":5,\"completion_tokens\":4,\"total_tokens\":true}",
        "{\"prompt_tokens\":5,\"prompt_tokens\":6}",
        "{\"completion_tokens\":4,\"total_tokens\":4}",
        "{\"total_tokens\":4}",
        "{\"input_tokens\":5,\"output_tokens\":1,"
        "\"input_tokens_details\":{\"cached_tokens\":9}}",
        "{\"input_tokens\":5,\"output_tokens\":1,"
        "\"output_tokens_details\":{\"reasoning_tokens\":2}}",
        "{}",
        "{\"prompt_tokens\":5,\"completion_tokens\":1",
        "{\"id\":\"x\",\"usage\":null}",
        "{\"id\":\"x\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\"",
        "data: {\"usage\":null}\n\ndata: [DONE]\n\n",
        "{\"usage\":{\"prompt_tokens\":[5]}}",
        "",
        "   ",
        "not json at all",
        "[1,2,3]",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        expect_none(parse(bad[i]));
        size_t n_bad = strlen(bad[i]);
        if (n_bad && bad[i][0] == '{' && bad[i][n_bad - 1] == '}') {
            /* The same object as a stream's usage (a cut one would be closed by the
             * stream's own brace, so only whole ones). */
            char text[512];
            int n = snprintf(text, sizeof(text), "data: {\"choices\":[],\"usage\":%s}\n\n", bad[i]);
            assert_true(n > 0 && (size_t)n < sizeof(text));
            expect_none(scan_whole(text));
        }
    }
    expect_none(sl_usage_parse(SL_STR_NULL));
    /* A garbage object after a good one replaces it: the last usage is the answer's. */
    expect_none(scan_whole("{\"usage\":{\"prompt_tokens\":1}}{\"usage\":{\"prompt_tokens\":-1}}"));
}

/* "usage" inside a string (its quotes escaped) is text, not a key. */
static void test_usage_in_strings(void **state)
{
    static const char text[] =
        "{\"choices\":[{\"message\":{\"content\":\"say \\\"usage\\\":{\\\"prompt_tokens\\\":5,"
        "\\\"completion_tokens\\\":5} please\"}}]}";
    expect_none(parse(text));
    expect_every_split(text, (struct sl_usage){0});
    /* A real key after a string ending in an escaped backslash: the quote is real. */
    static const char after_backslash[] =
        "{\"content\":\"path C:\\\\\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}";
    struct sl_usage u = parse(after_backslash);
    expect(u, 2, 0, 1, 0, 3);
    expect_every_split(after_backslash, u);
    /* Three backslashes: the third escapes the quote, so "usage" is still inside the string. */
    static const char escaped[] = "{\"content\":\"a\\\\\\\"usage\\\":{\\\"prompt_tokens\\\":2}\"}";
    expect_none(parse(escaped));
    expect_every_split(escaped, (struct sl_usage){0});
    /* Only a key whose own text starts with a quote can look like `"usage":{` and not be
     * it (inside a string the closing quote would be escaped too): the escape decides, also
     * when a chunk ends between the backslash and the quote. */
    static const char quote_key[] =
        "{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1},\"x\":{"
        "\"\\\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}}";
    u = parse(quote_key);
    expect(u, 2, 0, 1, 0, 3);
    expect_every_split(quote_key, u);
    /* Braces inside strings of the usage object do not end it early. */
    static const char braces[] =
        "{\"usage\":{\"note\":\"}{\\\"}\",\"prompt_tokens\":4,\"completion_tokens\":1}}";
    u = parse(braces);
    expect(u, 4, 0, 1, 0, 5);
    expect_every_split(braces, u);
}

/* A usage object longer than the capture is abandoned; a later one is still found. */
static void test_oversized(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b);
    assert_int_equal(sl_buf_append_str(&b, SL_STR("data: {\"usage\":{\"pad\":\"")), SL_OK);
    for (int i = 0; i < SL_USAGE_CAPTURE_BYTES; i++)
        assert_int_equal(sl_buf_append(&b, "x", 1), SL_OK);
    assert_int_equal(
        sl_buf_append_str(&b, SL_STR("\",\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n")),
        SL_OK);
    expect_none(scan_whole(b.base));
    size_t sizes[] = {7, 100, 3};
    expect_none(scan_sizes(b.base, b.len, sizes, 3));
    assert_int_equal(sl_buf_append_str(&b, SL_STR("data: {\"usage\":{\"prompt_tokens\":6,"
                                                  "\"completion_tokens\":2}}\n\n")),
                     SL_OK);
    expect(scan_whole(b.base), 6, 0, 2, 0, 8);
    expect(scan_sizes(b.base, b.len, sizes, 3), 6, 0, 2, 0, 8);
    sl_buf_dispose(&b);

    /* Exactly the capture's size is still taken. */
    char exact[SL_USAGE_CAPTURE_BYTES + 32];
    int head = snprintf(exact, sizeof(exact), "\"usage\":{\"prompt_tokens\":1,\"x\":\"");
    size_t fill = SL_USAGE_CAPTURE_BYTES - (size_t)(head - 8) - 2;
    memset(exact + head, 'y', fill);
    memcpy(exact + head + fill, "\"}", 3);
    expect(scan_whole(exact), 1, 0, 0, 0, 1);
    /* One byte more is not. */
    memset(exact + head, 'y', fill + 1);
    memcpy(exact + head + fill + 1, "\"}", 3);
    expect_none(scan_whole(exact));
}

static void test_scanner_allocates_late(void **state)
{
    struct sl_usage_scanner s;
    sl_usage_scanner_init(&s);
    for (int i = 0; i < 1000; i++) {
        static const char chunk[] =
            "data: {\"choices\":[{\"delta\":{\"content\":\"usage \\\"usage\\\"\"}}],"
            "\"usage\":null,\"usages\":{}}\n\n";
        sl_usage_scanner_feed(&s, chunk, sizeof(chunk) - 1);
    }
    assert_null(s.capture);
    expect_none(sl_usage_scanner_result(&s));
    /* Whitespace around the colon, the key split from its brace across chunks. */
    sl_usage_scanner_feed(&s, "{\"usage\" ", 9);
    sl_usage_scanner_feed(&s, ": ", 2);
    sl_usage_scanner_feed(&s, "\n{\"prompt_tokens\":", 18);
    assert_non_null(s.capture);
    expect_none(sl_usage_scanner_result(&s)); /* not complete yet */
    sl_usage_scanner_feed(&s, "3}", 2);
    expect(sl_usage_scanner_result(&s), 3, 0, 0, 0, 3);
    /* A cut stream: the object started but never closed. */
    sl_usage_scanner_feed(&s, ",\"usage\":{\"prompt_tokens\":4", 27);
    expect_none(sl_usage_scanner_result(&s));
    sl_usage_scanner_feed(&s, NULL, 0);
    sl_usage_scanner_dispose(&s);
    sl_usage_scanner_dispose(&s); /* idempotent */
}

static void test_cost(void **state)
{
    struct sl_config_price prices[] = {
        {.model = "gpt-4o", .input = 2500000, .cached_input = 1250000, .output = 10000000},
        {.model = "cheap", .input = 400000, .cached_input = 400000, .output = 1},
        {.model = "max", .input = UINT64_MAX, .cached_input = UINT64_MAX, .output = UINT64_MAX},
    };
    struct sl_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.prices = prices;
    cfg.n_prices = SL_ARRAY_LEN(prices);

    struct sl_usage u = {.prompt = 1000, .cached = 200, .completion = 500, .found = true};
    /* 800 × 2.5 + 200 × 1.25 + 500 × 10 USD per million = 7250 µUSD. */
    assert_int_equal(sl_usage_cost(&cfg, "gpt-4o", &u), 7250);
    /* Reasoning is part of completion, not billed again. */
    u.reasoning = 400;
    assert_int_equal(sl_usage_cost(&cfg, "gpt-4o", &u), 7250);
    /* Rounded to the nearest micro-dollar: 2.5 -> 3, 0.4 -> 0, 1.6 -> 2. */
    struct sl_usage one = {.prompt = 1, .total = 1, .found = true};
    assert_int_equal(sl_usage_cost(&cfg, "gpt-4o", &one), 3);
    assert_int_equal(sl_usage_cost(&cfg, "cheap", &one), 0);
    one.prompt = 4;
    assert_int_equal(sl_usage_cost(&cfg, "cheap", &one), 2);
    /* 2^40 tokens at 10^12 µUSD per million: 2^40 × 10^6 µUSD, no overflow on the way. */
    prices[1].input = 1000000000000ull;
    struct sl_usage big = {.prompt = 1ull << 40, .found = true};
    assert_true(sl_usage_cost(&cfg, "cheap", &big) == (1ull << 40) * 1000000ull);
    big.completion = 1ull << 40;
    prices[1].output = 1000000000000ull;
    assert_true(sl_usage_cost(&cfg, "cheap", &big) == (1ull << 41) * 1000000ull);
    /* Beyond 64 bits: saturates. */
    struct sl_usage huge = {.prompt = UINT64_MAX, .completion = UINT64_MAX, .found = true};
    assert_true(sl_usage_cost(&cfg, "max", &huge) == UINT64_MAX);
    /* No price, no usage, no config: 0. */
    assert_int_equal(sl_usage_cost(&cfg, "gpt-5", &u), 0);
    assert_int_equal(sl_usage_cost(&cfg, NULL, &u), 0);
    assert_int_equal(sl_usage_cost(NULL, "gpt-4o", &u), 0);
    struct sl_usage none = {.prompt = 1000};
    assert_int_equal(sl_usage_cost(&cfg, "gpt-4o", &none), 0);
    /* From a parsed answer. */
    struct sl_usage parsed = parse(AZURE_CHAT); /* 19 prompt (8 cached), 12 completion */
    /* 11 × 2.5 + 8 × 1.25 + 12 × 10 = 157.5 -> 158 */
    assert_int_equal(sl_usage_cost(&cfg, "gpt-4o", &parsed), 158);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_azure_chat),
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_responses_stream),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_usage_object_itself),
        cmocka_unit_test(test_absurd_not_trusted),
        cmocka_unit_test(test_usage_in_strings),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_scanner_allocates_late),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
