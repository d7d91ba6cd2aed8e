/*
 * The usage-chunk filter of streams (proxy/sse.c): which events are usage
 * chunks, and that the client gets the stream minus exactly those, however
 * the bytes are split, with LF, CRLF and CR line ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proxy/sse.h"

#define CHUNK "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}"
#define USAGE                                                                                      \
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,"   \
    "\"total_tokens\":11}}"
#define FILTER                                                                                     \
    "data: {\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0}],\"usage\":null}"
#define DONE "data: [DONE]"

static void collect(void *arg, const char *bytes, size_t len)
{
    assert_true(len > 0);
    assert_int_equal(sl_buf_append(arg, bytes, len), SL_OK);
}

/* Filter text fed in pieces of `piece` bytes (0: whole); the output as a NUL-terminated
 * string the caller frees, and the dropped count. */
static char *run(const char *text, size_t piece, uint64_t *dropped)
{
    struct sl_sse_filter f;
    struct sl_buf out;
    sl_buf_init(&out);
    sl_sse_filter_init(&f);
    size_t len = strlen(text);
    for (size_t off = 0; off < len;) {
        size_t n = piece ? SL_MIN(piece, len - off) : len;
        char *chunk = malloc(n);
        memcpy(chunk, text + off, n);
        sl_sse_filter_feed(&f, chunk, n, collect, &out);
        free(chunk);
        assert_true(f.held.len <= SL_SSE_HOLD_MAX);
        off += n;
    }
    sl_sse_filter_finish(&f, collect, &out);
    assert_int_equal(f.bytes_in, len);
    assert_int_equal(f.bytes_out, out.len);
    if (dropped)
        *dropped = f.dropped;
    sl_sse_filter_dispose(&f);
    sl_buf_append(&out, "", 1);
    return out.base;
}

/* Every split of text gives want. */
static void check_all_splits(const char *text, const char *want, uint64_t want_dropped)
{
    size_t len = strlen(text);
    for (size_t piece = 0; piece <= len + 1; piece++) {
        uint64_t dropped = 0;
        char *got = run(text, piece, &dropped);
        assert_string_equal(got, want);
        assert_int_equal(dropped, want_dropped);
        free(got);
    }
}

static void test_is_usage_only(void **state)
{
    assert_true(sl_sse_event_is_usage_only(SL_STR(USAGE "\n\n")));
    assert_true(sl_sse_event_is_usage_only(SL_STR(USAGE "\r\n\r")));
    assert_true(sl_sse_event_is_usage_only(
        SL_STR("data:{\"choices\" : [ ] , \"usage\" : {}}\n\n"))); /* no space after colon */
    /* The data of several lines, joined, with other fields and comments around. */
    assert_true(sl_sse_event_is_usage_only(
        SL_STR("event: message\n: note\ndata: {\"choices\":\ndata: [],\"usage\":\ndata: {}}\n\n")));
    assert_false(sl_sse_event_is_usage_only(SL_STR(CHUNK "\n\n")));
    assert_false(sl_sse_event_is_usage_only(SL_STR(FILTER "\n\n"))); /* usage null */
    assert_false(sl_sse_event_is_usage_only(SL_STR(DONE "\n\n")));
    assert_false(sl_sse_event_is_usage_only(
        SL_STR("data: {\"choices\":[{}],\"usage\":{}}\n\n"))); /* choices not empty */
    assert_false(sl_sse_event_is_usage_only(SL_STR("data: {\"choices\":[],\"usage\":{}\n\n")));
    assert_false(sl_sse_event_is_usage_only(SL_STR("data: [{\"choices\":[],\"usage\":{}}]\n\n")));
    /* Not a data field: "datum", or a comment that looks like one. */
    assert_false(sl_sse_event_is_usage_only(SL_STR("datum: {\"choices\":[],\"usage\":{}}\n\n")));
    assert_false(sl_sse_event_is_usage_only(SL_STR(": {\"choices\":[],\"usage\":{}}\n\n")));
    assert_false(sl_sse_event_is_usage_only(SL_STR("\n")));
}

static void test_drops_usage_lf(void **state)
{
    check_all_splits(CHUNK "\n\n" CHUNK "\n\n" USAGE "\n\n" DONE "\n\n",
                     CHUNK "\n\n" CHUNK "\n\n" DONE "\n\n", 1);
}

static void test_drops_usage_crlf(void **state)
{
    check_all_splits(CHUNK "\r\n\r\n" USAGE "\r\n\r\n" DONE "\r\n\r\n",
                     CHUNK "\r\n\r\n" DONE "\r\n\r\n", 1);
}

static void test_drops_usage_cr(void **state)
{
    check_all_splits(CHUNK "\r\r" USAGE "\r\r" DONE "\r\r", CHUNK "\r\r" DONE "\r\r", 1);
    /* A CRLF after the CR that ended the usage chunk is its own; a blank line after that is
     * an empty event of its own, and stays. */
    check_all_splits(USAGE "\r\r\n\n" DONE "\n\n", "\n" DONE "\n\n", 1);
}

static void test_keeps_azure_filter_chunk(void **state)
{
    check_all_splits(FILTER "\n\n" CHUNK "\n\n" USAGE "\n\n" DONE "\n\n",
                     FILTER "\n\n" CHUNK "\n\n" DONE "\n\n", 1);
}

static void test_keeps_streams_without_usage(void **state)
{
    const char *s = CHUNK "\n\n" CHUNK "\n\n" DONE "\n\n";
    check_all_splits(s, s, 0);
    /* Not SSE at all (a JSON error body): passed as is. */
    const char *json = "{\"error\":{\"code\":\"x\",\"choices\":[],\"usage\":{}}}";
    check_all_splits(json, json, 0);
}

static void test_cut_usage_chunk_is_passed(void **state)
{
    /* A usage chunk without its blank line is incomplete: the client gets what came. */
    check_all_splits(CHUNK "\n\n" USAGE "\n", CHUNK "\n\n" USAGE "\n", 0);
}

static void test_long_event_is_never_held(void **state)
{
    /* A usage chunk longer than the hold limit goes out as it comes. */
    size_t pad = SL_SSE_HOLD_MAX;
    struct sl_buf b;
    sl_buf_init(&b);
    sl_buf_appendf(&b, "data: {\"choices\":[],\"usage\":{},\"pad\":\"");
    for (size_t i = 0; i < pad; i++)
        sl_buf_append(&b, "x", 1);
    sl_buf_appendf(&b, "\"}\n\n" USAGE "\n\n" DONE "\n\n");
    sl_buf_append(&b, "", 1);
    struct sl_buf want;
    sl_buf_init(&want);
    sl_buf_append(&want, b.base, b.len - 1 - strlen(USAGE "\n\n" DONE "\n\n"));
    sl_buf_appendf(&want, DONE "\n\n");
    sl_buf_append(&want, "", 1);
    uint64_t dropped;
    size_t pieces[] = {0, 1, 7, 1000, 4095, 4096, 4097};
    for (size_t i = 0; i < SL_ARRAY_LEN(pieces); i++) {
        char *got = run(b.base, pieces[i], &dropped);
        assert_string_equal(got, want.base);
        assert_int_equal(dropped, 1);
        free(got);
    }
    sl_buf_dispose(&b);
    sl_buf_dispose(&want);
}

static void test_complete_events_are_not_held(void **state)
{
    /* Whole events go out during the feed; only an incomplete one waits. */
    struct sl_sse_filter f;
    struct sl_buf out;
    sl_buf_init(&out);
    sl_sse_filter_init(&f);
    const char *a = CHUNK "\n\n" CHUNK "\n\ndata: {\"cho";
    sl_sse_filter_feed(&f, a, strlen(a), collect, &out);
    assert_int_equal(out.len, strlen(CHUNK "\n\n" CHUNK "\n\n"));
    assert_int_equal(f.held.len, strlen("data: {\"cho"));
    const char *b = "ices\":[]}\n\n";
    sl_sse_filter_feed(&f, b, strlen(b), collect, &out);
    assert_int_equal(f.held.len, 0);
    assert_int_equal(out.len, strlen(a) + strlen(b));
    sl_sse_filter_dispose(&f);
    sl_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_usage_only),
        cmocka_unit_test(test_drops_usage_lf),
        cmocka_unit_test(test_drops_usage_crlf),
        cmocka_unit_test(test_drops_usage_cr),
        cmocka_unit_test(test_keeps_azure_filter_chunk),
        cmocka_unit_test(test_keeps_streams_without_usage),
        cmocka_unit_test(test_cut_usage_chunk_is_passed),
        cmocka_unit_test(test_long_event_is_never_held),
        cmocka_unit_test(test_complete_events_are_not_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
