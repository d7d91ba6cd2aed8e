/*
 * libFuzzer target for the simulator's request-body handling: every
 * operation's parser and validator (sl_sim_parse_request), the planning and
 * rendering of the answer it leads to, and the control API's fault-rule
 * parser. Besides "no crash, no sanitizer report" it checks:
 *   - a refusal is a 4xx/5xx with a message, and touches nothing else;
 *   - an accepted request is within the API's bounds (n, stops, inputs);
 *   - parsing is deterministic (same bytes, same hashes and token counts);
 *   - the planned answer honours max_tokens and the stop sequences.
 * The input is copied into a buffer of exactly its size so ASan sees any
 * read past the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_plan(const struct sl_sim_req *r)
{
    static char text[SL_SIM_TEXT_MAX];
    struct sl_sim_plan p;
    uint64_t max = r->max_tokens % 200;
    sl_sim_plan(r->n_hashes ? r->hashes[0] : 0, max, r->stops, r->n_stops, &p, text);
    CHECK(max == 0 || p.tokens <= max);
    CHECK(p.bytes < SL_SIM_TEXT_MAX);
    for (size_t i = 0; i < r->n_stops; i++)
        if (r->stops[i].len)
            CHECK(memmem(text, p.bytes, r->stops[i].base, r->stops[i].len) == NULL);
}

static void one_op(enum sl_sim_op op, struct sl_str body, struct sl_arena *arena)
{
    struct sl_sim_req a, b;
    struct sl_sim_parse_error ea, eb;
    int ra = sl_sim_parse_request(op, body, arena, &a, &ea);
    int rb = sl_sim_parse_request(op, body, arena, &b, &eb);
    CHECK(ra == rb);
    if (ra != SL_OK) {
        CHECK(ra == SL_EINVAL || ra == SL_ENOMEM);
        CHECK(ea.status >= 400 && ea.status <= 599);
        CHECK(ea.message[0] != '\0');
        CHECK(strcmp(ea.message, eb.message) == 0 && strcmp(ea.param, eb.param) == 0);
        return;
    }
    CHECK(a.op == op);
    CHECK(a.n >= 1 && a.n <= SL_SIM_MAX_N);
    CHECK(a.n_stops <= SL_SIM_MAX_STOPS);
    CHECK(a.n_hashes >= 1 && a.n_hashes <= SL_SIM_MAX_INPUTS);
    CHECK(a.prompt_tokens == b.prompt_tokens && a.n_hashes == b.n_hashes);
    CHECK(memcmp(a.hashes, b.hashes, a.n_hashes * sizeof(uint64_t)) == 0);
    CHECK(a.prompt_tokens <= 3 + 85 * (uint64_t)body.len); /* an image part is 85 */
    CHECK(op != SL_SIM_OP_COMPLETIONS || (uint64_t)a.n * a.n_hashes <= SL_SIM_MAX_N);
    CHECK(!a.include_usage || a.stream);
    if (op == SL_SIM_OP_CHAT || op == SL_SIM_OP_COMPLETIONS)
        check_plan(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_arena arena;
    char *copy = malloc(size ? size : 1);
    CHECK(copy != NULL);
    if (size)
        memcpy(copy, data, size);
    struct sl_str body = {copy, size};
    sl_arena_init(&arena, 4096);
    static const enum sl_sim_op ops[] = {SL_SIM_OP_CHAT, SL_SIM_OP_COMPLETIONS,
                                         SL_SIM_OP_EMBEDDINGS, SL_SIM_OP_RESPONSES};
    for (size_t i = 0; i < SL_ARRAY_LEN(ops); i++) {
        one_op(ops[i], body, &arena);
        sl_arena_reset(&arena);
    }

    struct sl_sim_rule *rules = NULL;
    struct sl_str ep;
    size_t n = 0;
    char why[256];
    int rc = sl_sim_rules_from_json(copy, size, &ep, &arena, &rules, &n, why, sizeof(why));
    if (rc == SL_OK) {
        struct sl_buf out;
        uint64_t rng = 1;
        struct sl_sim_fault f;
        sl_buf_init(&out);
        CHECK(sl_sim_rules_append_json(&out, rules, n) == SL_OK);
        for (int k = 0; k < 8; k++)
            if (sl_sim_rules_pick(rules, n, SL_STR("gpt-4o"), &rng, &f))
                CHECK((unsigned)f.kind < SL_SIM_FAULT_KINDS);
        sl_buf_dispose(&out);
        sl_sim_rules_free(rules, n);
    } else {
        CHECK(rules == NULL && why[0] != '\0');
    }
    sl_arena_dispose(&arena);
    free(copy);
    return 0;
}
