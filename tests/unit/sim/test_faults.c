/* Fault rules: order, counts, deployment filters, seeded probability, the control API's JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sim/internal.h"

static struct sl_sim_rule rule(enum sl_sim_fault_kind kind, uint64_t status, uint64_t count)
{
    return (struct sl_sim_rule){
        .kind = kind, .status = status, .count = count, .probability_ppm = 1000000};
}

/* The kind (and status) each of n requests to dep gets; -1 for no rule. */
static void sequence(struct sl_sim_rule *rules, size_t n_rules, const char *dep, uint64_t *rng,
                     int *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sl_sim_fault f;
        memset(&f, 0, sizeof(f));
        if (sl_sim_rules_pick(rules, n_rules, sl_str_from_cstr(dep), rng, &f))
            out[i] = (int)f.kind * 1000 + (int)f.status;
        else
            out[i] = -1;
    }
}

static void test_scripted_sequence(void **state)
{
    /* [429 x2, none x1, 503 x1] */
    struct sl_sim_rule rules[] = {
        rule(SL_SIM_FAULT_STATUS, 429, 2),
        rule(SL_SIM_FAULT_NONE, 0, 1),
        rule(SL_SIM_FAULT_STATUS, 503, 1),
    };
    rules[0].retry_after_ms = 2000;
    int got[6];
    uint64_t rng = 1;
    sequence(rules, 3, "gpt-4o", &rng, got, 6);
    int want[6] = {1429, 1429, 0, 1503, -1, -1};
    assert_memory_equal(got, want, sizeof(want));
    assert_int_equal(rules[0].used, 2);
    assert_int_equal(rules[2].used, 1);
    /* the chosen fault carries the rule's parameters */
    rules[0].used = 0;
    struct sl_sim_fault f;
    assert_true(sl_sim_rules_pick(rules, 3, SL_STR("x"), &rng, &f));
    assert_int_equal(f.retry_after_ms, 2000);
}

static void test_deployment_filter_and_unlimited(void **state)
{
    struct sl_sim_rule rules[] = {rule(SL_SIM_FAULT_RESET, 0, 0),
                                  rule(SL_SIM_FAULT_STATUS, 500, 0)};
    rules[0].deployment = "mini";
    int got[4];
    uint64_t rng = 1;
    sequence(rules, 2, "gpt-4o", &rng, got, 2);
    assert_int_equal(got[0], 1500);
    assert_int_equal(got[1], 1500);
    sequence(rules, 2, "mini", &rng, got, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], SL_SIM_FAULT_RESET * 1000);
    assert_int_equal(rules[0].used, 4);
    assert_false(sl_sim_rules_pick(rules, 0, SL_STR("mini"), &rng, &(struct sl_sim_fault){0}));
}

static void test_probability_is_seeded(void **state)
{
    struct sl_sim_rule rules[] = {rule(SL_SIM_FAULT_STATUS, 503, 0)};
    rules[0].probability_ppm = 250000;
    static int a[20000], b[20000];
    uint64_t rng = 42;
    sequence(rules, 1, "d", &rng, a, 20000);
    rng = 42;
    sequence(rules, 1, "d", &rng, b, 20000);
    assert_memory_equal(a, b, sizeof(a)); /* same seed, same faults */
    int hits = 0;
    for (int i = 0; i < 20000; i++)
        hits += a[i] == 1503;
    assert_in_range(hits, 4600, 5400);
    rng = 43;
    sequence(rules, 1, "d", &rng, b, 20000);
    assert_memory_not_equal(a, b, sizeof(a));
    /* probability 0 never applies, and does not use up its count */
    rules[0].probability_ppm = 0;
    rules[0].count = 1;
    rules[0].used = 0;
    sequence(rules, 1, "d", &rng, a, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(a[i], -1);
    assert_int_equal(rules[0].used, 0);
}

static void test_kind_names(void **state)
{
    for (int k = 0; k < SL_SIM_FAULT_KINDS; k++) {
        enum sl_sim_fault_kind back;
        const char *name = sl_sim_fault_kind_name((enum sl_sim_fault_kind)k);
        assert_int_equal(sl_sim_fault_kind_parse(sl_str_from_cstr(name), &back), SL_OK);
        assert_int_equal(back, k);
    }
    enum sl_sim_fault_kind back;
    assert_int_equal(sl_sim_fault_kind_parse(SL_STR("explode"), &back), SL_EINVAL);
}

static void test_rules_from_json(void **state)
{
    struct sl_arena arena;
    struct sl_sim_rule *rules;
    struct sl_str ep;
    size_t n;
    char why[256];
    sl_arena_init(&arena, 1024);
    const char *ok = "{\"endpoint\":\"east\",\"faults\":[{\"kind\":\"status\",\"status\":429,"
                     "\"retry_after_ms\":2000,\"probability\":0.5,\"count\":2,\"deployment\":"
                     "\"gpt-4o\"},{\"kind\":\"none\"},{\"kind\":\"stall_stream\",\"after\":3,"
                     "\"duration_ms\":700,\"deployment\":null}]}";
    assert_int_equal(
        sl_sim_rules_from_json(ok, strlen(ok), &ep, &arena, &rules, &n, why, sizeof(why)), SL_OK);
    assert_true(sl_str_eq(ep, SL_STR("east")));
    assert_int_equal(n, 3);
    assert_int_equal(rules[0].kind, SL_SIM_FAULT_STATUS);
    assert_int_equal(rules[0].status, 429);
    assert_int_equal(rules[0].retry_after_ms, 2000);
    assert_int_equal(rules[0].probability_ppm, 500000);
    assert_int_equal(rules[0].count, 2);
    assert_string_equal(rules[0].deployment, "gpt-4o");
    assert_int_equal(rules[1].kind, SL_SIM_FAULT_NONE);
    assert_int_equal(rules[1].probability_ppm, 1000000);
    assert_null(rules[2].deployment);
    assert_int_equal(rules[2].after, 3);
    assert_int_equal(rules[2].duration_ms, 700);
    /* and back out, as GET /_sim/faults shows them */
    struct sl_buf b;
    sl_buf_init(&b);
    assert_int_equal(sl_sim_rules_append_json(&b, rules, n), SL_OK);
    assert_non_null(strstr(b.base, "\"kind\":\"status\",\"status\":429"));
    assert_non_null(strstr(b.base, "\"deployment\":\"gpt-4o\""));
    sl_buf_dispose(&b);
    sl_sim_rules_free(rules, n);

    const char *bad[] = {
        "{not json",
        "[]",
        "{\"endpoint\":\"e\"}",
        "{\"endpoint\":\"e\",\"faults\":\"x\"}",
        "{\"endpoint\":5,\"faults\":[]}",
        "{\"faults\":[{\"kind\":\"explode\"}]}",
        "{\"faults\":[{}]}",
        "{\"faults\":[1]}",
        "{\"faults\":[{\"kind\":\"status\",\"status\":200}]}",
        "{\"faults\":[{\"kind\":\"status\",\"probability\":1.5}]}",
        "{\"faults\":[{\"kind\":\"status\",\"probability\":\"x\"}]}",
        "{\"faults\":[{\"kind\":\"reset\",\"count\":-1}]}",
        "{\"faults\":[{\"kind\":\"reset\",\"deployment\":3}]}",
        "{\"faults\":[{\"kind\":\"reset\",\"colour\":\"red\"}]}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        why[0] = '\0';
        assert_int_equal(sl_sim_rules_from_json(bad[i], strlen(bad[i]), &ep, &arena, &rules, &n,
                                                why, sizeof(why)),
                         SL_EINVAL);
        assert_true(why[0] != '\0');
        assert_null(rules);
    }
    sl_arena_dispose(&arena);
}

static void test_rules_from_config(void **state)
{
    struct sl_config_sim_fault f[2] = {
        {.kind = SL_SIM_FAULT_TRICKLE, .duration_ms = 50, .probability_ppm = 1000000},
        {.kind = SL_SIM_FAULT_STATUS,
         .status = 500,
         .deployment = "d",
         .count = 1,
         .probability_ppm = 1000000},
    };
    struct sl_sim_rule *rules;
    assert_int_equal(sl_sim_rules_from_config(f, 2, &rules), SL_OK);
    assert_int_equal(rules[0].kind, SL_SIM_FAULT_TRICKLE);
    assert_string_equal(rules[1].deployment, "d");
    assert_true(rules[1].deployment != f[1].deployment); /* a copy */
    sl_sim_rules_free(rules, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripted_sequence),
        cmocka_unit_test(test_deployment_filter_and_unlimited),
        cmocka_unit_test(test_probability_is_seeded),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_rules_from_json),
        cmocka_unit_test(test_rules_from_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
