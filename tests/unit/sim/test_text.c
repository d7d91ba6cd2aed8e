/* Token counting and generated text: determinism, max_tokens, stop sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sim/internal.h"

static void test_tokens_for_bytes(void **state)
{
    assert_int_equal(sl_sim_tokens_for_bytes(0), 0);
    assert_int_equal(sl_sim_tokens_for_bytes(1), 1);
    assert_int_equal(sl_sim_tokens_for_bytes(4), 1);
    assert_int_equal(sl_sim_tokens_for_bytes(5), 2);
    assert_int_equal(sl_sim_tokens_for_bytes(400), 100);
}

/* The whole natural answer of seed, token by token. */
static size_t render(uint64_t seed, char *text, size_t *n_tokens)
{
    struct sl_sim_gen g;
    char tok[SL_SIM_TOKEN_MAX];
    size_t len = 0, n;
    *n_tokens = 0;
    sl_sim_gen_init(&g, seed);
    while ((n = sl_sim_gen_next(&g, tok)) > 0) {
        assert_true(n <= SL_SIM_TOKEN_MAX);
        /* every token but the first starts with a space, and has one word */
        assert_true((*n_tokens == 0) == (tok[0] != ' '));
        assert_null(memchr(tok + 1, ' ', n - 1));
        memcpy(text + len, tok, n);
        len += n;
        (*n_tokens)++;
    }
    return len;
}

static void test_generation_is_deterministic(void **state)
{
    static char a[SL_SIM_TEXT_MAX], b[SL_SIM_TEXT_MAX];
    size_t na, nb;
    for (uint64_t seed = 0; seed < 200; seed++) {
        size_t la = render(seed, a, &na), lb = render(seed, b, &nb);
        assert_int_equal(la, lb);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, la);
        assert_true(na >= SL_SIM_GEN_MIN_TOKENS && na < SL_SIM_GEN_MAX_TOKENS);
        assert_true(la < SL_SIM_TEXT_MAX);
        assert_true(a[0] >= 'A' && a[0] <= 'Z'); /* starts a sentence */
        assert_int_equal(a[la - 1], '.');        /* and ends one */
    }
    size_t l1 = render(1, a, &na), l2 = render(2, b, &nb);
    assert_false(l1 == l2 && memcmp(a, b, l1) == 0);
}

static void test_plan_without_limits(void **state)
{
    static char full[SL_SIM_TEXT_MAX], text[SL_SIM_TEXT_MAX];
    size_t n;
    size_t len = render(42, full, &n);
    struct sl_sim_plan p;
    sl_sim_plan(42, 0, NULL, 0, &p, text);
    assert_int_equal(p.tokens, n);
    assert_int_equal(p.bytes, len);
    assert_int_equal(p.finish, SL_SIM_FINISH_STOP);
    assert_memory_equal(full, text, len);
    /* a limit above the natural length changes nothing */
    sl_sim_plan(42, n, NULL, 0, &p, NULL);
    assert_int_equal(p.tokens, n);
    assert_int_equal(p.finish, SL_SIM_FINISH_STOP);
    assert_string_equal(sl_sim_finish_name(SL_SIM_FINISH_STOP), "stop");
    assert_string_equal(sl_sim_finish_name(SL_SIM_FINISH_LENGTH), "length");
}

static void test_plan_max_tokens(void **state)
{
    static char full[SL_SIM_TEXT_MAX], text[SL_SIM_TEXT_MAX];
    size_t n;
    render(7, full, &n);
    struct sl_sim_plan p;
    sl_sim_plan(7, 3, NULL, 0, &p, text);
    assert_int_equal(p.tokens, 3);
    assert_int_equal(p.finish, SL_SIM_FINISH_LENGTH);
    /* the same answer, cut: a prefix of three words */
    assert_memory_equal(full, text, p.bytes);
    size_t spaces = 0;
    for (size_t i = 0; i < p.bytes; i++)
        spaces += text[i] == ' ';
    assert_int_equal(spaces, 2);
    assert_int_equal(full[p.bytes], ' ');
    sl_sim_plan(7, n - 1, NULL, 0, &p, NULL);
    assert_int_equal(p.tokens, n - 1);
    assert_int_equal(p.finish, SL_SIM_FINISH_LENGTH);
}

static void test_plan_stop_sequences(void **state)
{
    static char full[SL_SIM_TEXT_MAX], text[SL_SIM_TEXT_MAX];
    size_t n;
    size_t len = render(11, full, &n);
    struct sl_sim_plan p;

    struct sl_str space = SL_STR(" ");
    sl_sim_plan(11, 0, &space, 1, &p, text);
    const char *first_space = memchr(full, ' ', len);
    assert_int_equal(p.bytes, first_space - full);
    assert_int_equal(p.tokens, 1);
    assert_int_equal(p.finish, SL_SIM_FINISH_STOP);

    /* a stop sequence spanning two tokens cuts inside the first of them */
    const char *second = memchr(first_space + 1, ' ', len - (size_t)(first_space + 1 - full));
    assert_non_null(second);
    struct sl_str span = {first_space - 2, (size_t)(second - first_space) + 3};
    sl_sim_plan(11, 0, &span, 1, &p, text);
    assert_int_equal(p.bytes, first_space - 2 - full);
    assert_int_equal(p.tokens, 1);
    assert_int_equal(p.finish, SL_SIM_FINISH_STOP);

    /* the earliest of several, whatever their order */
    struct sl_str stops[3] = {SL_STR("zzzz-absent"), span, space};
    sl_sim_plan(11, 0, stops, 3, &p, text);
    assert_int_equal(p.bytes, first_space - 2 - full);

    /* at the very start: nothing is emitted */
    struct sl_str head = {full, 3};
    sl_sim_plan(11, 0, &head, 1, &p, text);
    assert_int_equal(p.bytes, 0);
    assert_int_equal(p.tokens, 0);
    assert_int_equal(p.finish, SL_SIM_FINISH_STOP);

    /* absent or empty stops change nothing; a stop beyond max_tokens neither */
    struct sl_str none[2] = {SL_STR("no such text"), SL_STR("")};
    sl_sim_plan(11, 0, none, 2, &p, text);
    assert_int_equal(p.bytes, len);
    struct sl_str last = {full + len - 2, 2};
    sl_sim_plan(11, 2, &last, 1, &p, text);
    assert_int_equal(p.tokens, 2);
    assert_int_equal(p.finish, SL_SIM_FINISH_LENGTH);
}

/* What a stream emits (tokens regenerated, the last cut to the plan) is the plan's text. */
static void test_stream_matches_plan(void **state)
{
    static char text[SL_SIM_TEXT_MAX], streamed[SL_SIM_TEXT_MAX];
    struct sl_str stops[2] = {SL_STR("e d"), SL_STR("s, ")};
    for (uint64_t seed = 100; seed < 400; seed++) {
        struct sl_sim_plan p;
        sl_sim_plan(seed, seed % 50, stops, 2, &p, text);
        struct sl_sim_gen g;
        char tok[SL_SIM_TOKEN_MAX];
        size_t bytes = 0;
        sl_sim_gen_init(&g, seed);
        for (uint32_t i = 0; i < p.tokens; i++) {
            size_t n = sl_sim_gen_next(&g, tok);
            n = SL_MIN(n, p.bytes - bytes);
            assert_true(n > 0); /* every counted token shows */
            memcpy(streamed + bytes, tok, n);
            bytes += n;
        }
        assert_int_equal(bytes, p.bytes);
        assert_memory_equal(streamed, text, bytes);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_for_bytes),
        cmocka_unit_test(test_generation_is_deterministic),
        cmocka_unit_test(test_plan_without_limits),
        cmocka_unit_test(test_plan_max_tokens),
        cmocka_unit_test(test_plan_stop_sequences),
        cmocka_unit_test(test_stream_matches_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
