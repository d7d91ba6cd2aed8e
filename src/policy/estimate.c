/*
 * The tokens a request can use, estimated before it is sent, for rate
 * limits and budgets: about 4 bytes of text a token, plus a few tokens of
 * framing per message, plus the most output it asks for. It is corrected
 * by the usage the backend reports, so it favours being cheap and a little
 * high over being exact; a tokenizer would be neither.
 */
#include "policy/policy.h"

#define BYTES_PER_TOKEN 4
#define TOKENS_PER_MESSAGE 4
/* Token arrays and parts nest only a little in every API; deeper is not text we count. */
#define MAX_DEPTH 4

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* What the text of one prompt-like value weighs. */
struct weight {
    uint64_t bytes;  /* of text */
    uint64_t tokens; /* given as token ids, and message framing */
    bool seen;       /* some field the estimate reads was there */
};

static void weigh(const json_t *v, struct weight *w, int depth);

/* A message or an input item: its content (a string or parts) and a part's text. */
static void weigh_item(const json_t *item, struct weight *w, int depth)
{
    const json_t *content = json_object_get(item, "content");
    const json_t *text = json_object_get(item, "text");
    if (json_is_string(text))
        w->bytes = add_sat(w->bytes, json_string_length(text));
    if (content)
        weigh(content, w, depth + 1);
}

/* Strings count by their bytes, token ids as one token each, arrays by their members. */
static void weigh(const json_t *v, struct weight *w, int depth)
{
    if (v == NULL || depth > MAX_DEPTH)
        return;
    if (json_is_string(v)) {
        w->bytes = add_sat(w->bytes, json_string_length(v));
    } else if (json_is_integer(v)) {
        w->tokens = add_sat(w->tokens, 1);
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *m;
        json_array_foreach(v, i, m)
        {
            if (json_is_object(m) && depth == 0 && json_object_get(m, "role"))
                w->tokens = add_sat(w->tokens, TOKENS_PER_MESSAGE);
            if (json_is_object(m))
                weigh_item(m, w, depth);
            else
                weigh(m, w, depth + 1);
        }
    }
}

static uint64_t bytes_to_tokens(uint64_t bytes)
{
    return bytes / BYTES_PER_TOKEN + (bytes % BYTES_PER_TOKEN != 0);
}

static uint64_t prompt_tokens(const json_t *doc, size_t body_len)
{
    static const char *const fields[] = {"messages", "prompt", "input", "instructions"};
    struct weight w = {0, 0, false};
    if (doc == NULL || !json_is_object(doc))
        return bytes_to_tokens(body_len);
    for (size_t i = 0; i < SL_ARRAY_LEN(fields); i++) {
        const json_t *v = json_object_get(doc, fields[i]);
        if (v == NULL)
            continue;
        w.seen = true;
        weigh(v, &w, 0);
    }
    /* A body of a shape we do not read (assistants, threads...): its size is the estimate. */
    if (!w.seen)
        return bytes_to_tokens(body_len);
    return add_sat(bytes_to_tokens(w.bytes), w.tokens);
}

/* A positive whole number at key, else 0. */
static uint64_t positive(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return 0;
    return (uint64_t)json_integer_value(v);
}

uint64_t sl_policy_estimate_tokens(const json_t *doc, enum sl_policy_call call, size_t body_len)
{
    uint64_t prompt = prompt_tokens(doc, body_len);
    if (call == SL_POLICY_OTHER)
        return prompt; /* embeddings and the rest: no output tokens to speak of */
    if (doc == NULL || !json_is_object(doc))
        return add_sat(prompt, SL_POLICY_UNKNOWN_OUTPUT_TOKENS);
    uint64_t max = 0;
    switch (call) {
    case SL_POLICY_CHAT:
        max = positive(doc, "max_completion_tokens");
        if (max == 0)
            max = positive(doc, "max_tokens");
        break;
    case SL_POLICY_COMPLETIONS:
        max = positive(doc, "max_tokens");
        break;
    default:
        max = positive(doc, "max_output_tokens");
        break;
    }
    if (max == 0)
        return add_sat(prompt, SL_POLICY_UNKNOWN_OUTPUT_TOKENS);
    /* Every choice is generated (and billed); legacy completions generate best_of of them. */
    uint64_t choices = SL_MAX(positive(doc, "n"), 1);
    if (call == SL_POLICY_COMPLETIONS)
        choices = SL_MAX(choices, positive(doc, "best_of"));
    return add_sat(prompt, mul_sat(max, choices));
}
