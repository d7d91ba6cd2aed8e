/*
 * Request caps and token estimates: every rule, clamp against reject, the
 * default, client and route caps together, bodies with values of the wrong
 * type, and that a rewritten body keeps every other field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

static const char *const CHAT_BODY =
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello there\"}]}],"
    "\"temperature\":0.2,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
    "\"max_tokens\":4000,\"user\":\"u1\",\"seed\":7,\"metadata\":null}";

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    assert_non_null(doc);
    return doc;
}

/* Apply caps to text; returns the error and leaves the (possibly changed) body in *out. */
static int apply(const struct sl_config_caps *client, const struct sl_config_caps *route,
                 enum sl_policy_call call, const char *text, json_t **out, bool *changed,
                 struct sl_policy_refusal *r)
{
    json_t *doc = load(text);
    int err = sl_policy_apply(client, route, call, doc, strlen(text), changed, r);
    if (out)
        *out = doc;
    else
        json_decref(doc);
    return err;
}

static json_int_t int_at(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void test_call_of(void **state)
{
    assert_int_equal(sl_policy_call_of(SL_STR("chat/completions")), SL_POLICY_CHAT);
    assert_int_equal(sl_policy_call_of(SL_STR("chat/completions/")), SL_POLICY_CHAT);
    assert_int_equal(sl_policy_call_of(SL_STR("chat/completions?api-version=2024-10-21")),
                     SL_POLICY_CHAT);
    assert_int_equal(sl_policy_call_of(SL_STR("completions")), SL_POLICY_COMPLETIONS);
    assert_int_equal(sl_policy_call_of(SL_STR("responses")), SL_POLICY_RESPONSES);
    assert_int_equal(sl_policy_call_of(SL_STR("responses?api-version=preview")),
                     SL_POLICY_RESPONSES);
    assert_int_equal(sl_policy_call_of(SL_STR("responses/resp_123")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR("responses/resp_123/cancel")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR("chat/completionsx")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR("chat")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR("embeddings")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR("images/generations")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR("")), SL_POLICY_OTHER);
    assert_int_equal(sl_policy_call_of(SL_STR_NULL), SL_POLICY_OTHER);
}

/* A clamped body, re-serialised, equals the original with only the cap changed. */
static void test_clamp_keeps_other_fields(void **state)
{
    struct sl_config_caps caps = {.max_tokens = 1000};
    struct sl_policy_refusal r;
    bool changed = false;
    json_t *doc = NULL;
    assert_int_equal(apply(&caps, NULL, SL_POLICY_CHAT, CHAT_BODY, &doc, &changed, &r), SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_tokens"), 1000);

    size_t n = json_dumpb(doc, NULL, 0, JSON_COMPACT);
    char *out = malloc(n);
    assert_non_null(out);
    assert_int_equal(json_dumpb(doc, out, n, JSON_COMPACT), n);
    json_t *again = json_loadb(out, n, 0, NULL);
    assert_non_null(again);
    json_t *want = load(CHAT_BODY);
    assert_int_equal(json_object_set_new(want, "max_tokens", json_integer(1000)), 0);
    assert_true(json_equal(again, want));
    /* And only that field: the original differs from the rewrite in max_tokens alone. */
    json_t *orig = load(CHAT_BODY);
    assert_false(json_equal(again, orig));
    assert_int_equal(json_object_del(orig, "max_tokens"), 0);
    assert_int_equal(json_object_del(again, "max_tokens"), 0);
    assert_true(json_equal(again, orig));
    json_decref(orig);
    json_decref(want);
    json_decref(again);
    free(out);
    json_decref(doc);
}

static void test_clamp_and_reject(void **state)
{
    struct sl_config_caps clamp = {.max_tokens = 1000};
    struct sl_config_caps reject = {.max_tokens = 1000, .max_tokens_mode = SL_CAP_REJECT};
    struct sl_policy_refusal r;
    bool changed = true;
    json_t *doc = NULL;

    /* Under or at the cap: untouched. */
    assert_int_equal(
        apply(&clamp, NULL, SL_POLICY_CHAT, "{\"max_tokens\":1000}", &doc, &changed, &r), SL_OK);
    assert_false(changed);
    assert_int_equal(int_at(doc, "max_tokens"), 1000);
    json_decref(doc);

    assert_int_equal(apply(&reject, NULL, SL_POLICY_CHAT, CHAT_BODY, NULL, &changed, &r), SL_EPERM);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.message, "`max_tokens` is 4000, over this deployment's cap of 1000");
    assert_false(changed);

    /* Chat's newer field is named when it is the one over. */
    assert_int_equal(apply(&reject, NULL, SL_POLICY_CHAT, "{\"max_completion_tokens\":1001}", NULL,
                           &changed, &r),
                     SL_EPERM);
    assert_string_equal(r.message,
                        "`max_completion_tokens` is 1001, over this deployment's cap of 1000");
    assert_int_equal(
        apply(&clamp, NULL, SL_POLICY_CHAT, "{\"max_completion_tokens\":5000}", &doc, &changed, &r),
        SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_completion_tokens"), 1000);
    assert_null(json_object_get(doc, "max_tokens"));
    json_decref(doc);

    /* Both names at once: neither slips past. */
    assert_int_equal(apply(&clamp, NULL, SL_POLICY_CHAT,
                           "{\"max_completion_tokens\":10,\"max_tokens\":90000}", &doc, &changed,
                           &r),
                     SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_completion_tokens"), 10);
    assert_int_equal(int_at(doc, "max_tokens"), 1000);
    json_decref(doc);

    /* Completions: max_tokens; Responses: max_output_tokens (max_tokens is not its field). */
    assert_int_equal(apply(&reject, NULL, SL_POLICY_COMPLETIONS,
                           "{\"prompt\":\"x\",\"max_tokens\":2000}", NULL, &changed, &r),
                     SL_EPERM);
    assert_string_equal(r.message, "`max_tokens` is 2000, over this deployment's cap of 1000");
    assert_int_equal(apply(&reject, NULL, SL_POLICY_RESPONSES,
                           "{\"input\":\"x\",\"max_output_tokens\":2000}", NULL, &changed, &r),
                     SL_EPERM);
    assert_string_equal(r.message,
                        "`max_output_tokens` is 2000, over this deployment's cap of 1000");
    assert_int_equal(apply(&clamp, NULL, SL_POLICY_RESPONSES,
                           "{\"input\":\"x\",\"max_output_tokens\":2000}", &doc, &changed, &r),
                     SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_output_tokens"), 1000);
    json_decref(doc);

    /* Embeddings and the like have no max-tokens field. */
    assert_int_equal(apply(&reject, NULL, SL_POLICY_OTHER, "{\"input\":\"x\",\"max_tokens\":9999}",
                           NULL, &changed, &r),
                     SL_OK);
    assert_false(changed);
}

static void test_default_inserted(void **state)
{
    struct sl_config_caps caps = {.default_max_tokens = 300};
    struct sl_config_caps capped = {.max_tokens = 200, .default_max_tokens = 300};
    struct sl_policy_refusal r;
    bool changed = false;
    json_t *doc = NULL;

    assert_int_equal(apply(&caps, NULL, SL_POLICY_CHAT, "{\"messages\":[]}", &doc, &changed, &r),
                     SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_tokens"), 300);
    json_decref(doc);

    assert_int_equal(
        apply(&caps, NULL, SL_POLICY_COMPLETIONS, "{\"prompt\":\"x\"}", &doc, &changed, &r), SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_tokens"), 300);
    json_decref(doc);

    assert_int_equal(
        apply(&caps, NULL, SL_POLICY_RESPONSES, "{\"input\":\"x\"}", &doc, &changed, &r), SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_output_tokens"), 300);
    assert_null(json_object_get(doc, "max_tokens"));
    json_decref(doc);

    /* A default above the cap is the cap. */
    assert_int_equal(apply(&capped, NULL, SL_POLICY_CHAT, "{\"messages\":[]}", &doc, &changed, &r),
                     SL_OK);
    assert_int_equal(int_at(doc, "max_tokens"), 200);
    json_decref(doc);

    /* null means "not set" in these APIs: the default replaces it. */
    assert_int_equal(
        apply(&caps, NULL, SL_POLICY_CHAT, "{\"max_tokens\":null}", &doc, &changed, &r), SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_tokens"), 300);
    json_decref(doc);

    /* A client's own value stays (and with only a default set, is not judged here). */
    assert_int_equal(
        apply(&caps, NULL, SL_POLICY_CHAT, "{\"max_completion_tokens\":50}", &doc, &changed, &r),
        SL_OK);
    assert_false(changed);
    assert_null(json_object_get(doc, "max_tokens"));
    json_decref(doc);

    /* Other calls get none. */
    assert_int_equal(apply(&caps, NULL, SL_POLICY_OTHER, "{\"input\":\"x\"}", &doc, &changed, &r),
                     SL_OK);
    assert_false(changed);
    assert_null(json_object_get(doc, "max_tokens"));
    json_decref(doc);
}

static void test_bad_max_tokens(void **state)
{
    static const char *const bodies[] = {
        "{\"max_tokens\":\"100\"}",     "{\"max_tokens\":-5}",   "{\"max_tokens\":0}",
        "{\"max_tokens\":12.5}",        "{\"max_tokens\":1e3}",  "{\"max_tokens\":2147483648}",
        "{\"max_tokens\":99999999999}", "{\"max_tokens\":true}", "{\"max_tokens\":[1]}",
        "{\"max_tokens\":{}}",
    };
    struct sl_config_caps clamp = {.max_tokens = 1000};
    struct sl_config_caps reject = {.max_tokens = 1000, .max_tokens_mode = SL_CAP_REJECT};
    struct sl_policy_refusal r;
    bool changed = false;
    for (size_t i = 0; i < SL_ARRAY_LEN(bodies); i++) {
        for (int mode = 0; mode < 2; mode++) {
            json_t *doc = NULL;
            assert_int_equal(
                apply(mode ? &reject : &clamp, NULL, SL_POLICY_CHAT, bodies[i], &doc, &changed, &r),
                SL_EPERM);
            assert_int_equal(r.status, 400);
            assert_string_equal(r.message, "`max_tokens` must be a positive whole number");
            assert_false(changed);
            /* A refused body is left as it came. */
            json_t *orig = load(bodies[i]);
            assert_true(json_equal(doc, orig));
            json_decref(orig);
            json_decref(doc);
        }
    }
    assert_int_equal(apply(&clamp, NULL, SL_POLICY_RESPONSES, "{\"max_output_tokens\":\"9\"}", NULL,
                           &changed, &r),
                     SL_EPERM);
    assert_string_equal(r.message, "`max_output_tokens` must be a positive whole number");
    /* null is "not set": no cap to apply, nothing inserted without a default. */
    json_t *doc = NULL;
    assert_int_equal(
        apply(&clamp, NULL, SL_POLICY_CHAT, "{\"max_tokens\":null}", &doc, &changed, &r), SL_OK);
    assert_false(changed);
    assert_true(json_is_null(json_object_get(doc, "max_tokens")));
    json_decref(doc);
    /* The largest value accepted is 2^31 - 1 (clamped). */
    assert_int_equal(
        apply(&clamp, NULL, SL_POLICY_CHAT, "{\"max_tokens\":2147483647}", &doc, &changed, &r),
        SL_OK);
    assert_true(changed);
    assert_int_equal(int_at(doc, "max_tokens"), 1000);
    json_decref(doc);
}

static void test_counts(void **state)
{
    struct sl_config_caps caps = {.max_n = 2, .max_best_of = 3, .max_top_logprobs = 5};
    struct sl_policy_refusal r;
    bool changed = false;
    struct {
        enum sl_policy_call call;
        const char *body;
        const char *message; /* NULL: accepted */
    } cases[] = {
        {SL_POLICY_CHAT, "{\"n\":2,\"top_logprobs\":5,\"logprobs\":true}", NULL},
        {SL_POLICY_CHAT, "{\"n\":3}", "`n` is 3, over this deployment's cap of 2"},
        {SL_POLICY_CHAT, "{\"n\":0}", "`n` must be a positive whole number"},
        {SL_POLICY_CHAT, "{\"n\":\"2\"}", "`n` must be a positive whole number"},
        {SL_POLICY_CHAT, "{\"n\":1.5}", "`n` must be a positive whole number"},
        {SL_POLICY_CHAT, "{\"n\":-1}", "`n` must be a positive whole number"},
        {SL_POLICY_CHAT, "{\"n\":4294967297}", "`n` must be a positive whole number"},
        {SL_POLICY_CHAT, "{\"n\":null}", NULL},
        {SL_POLICY_OTHER, "{\"prompt\":\"cat\",\"n\":4}",
         "`n` is 4, over this deployment's cap of 2"},
        {SL_POLICY_COMPLETIONS, "{\"best_of\":3}", NULL},
        {SL_POLICY_COMPLETIONS, "{\"best_of\":4}",
         "`best_of` is 4, over this deployment's cap of 3"},
        {SL_POLICY_COMPLETIONS, "{\"best_of\":[4]}", "`best_of` must be a positive whole number"},
        {SL_POLICY_CHAT, "{\"top_logprobs\":6}",
         "`top_logprobs` is 6, over this deployment's cap of 5"},
        {SL_POLICY_CHAT, "{\"top_logprobs\":0}", NULL},
        {SL_POLICY_CHAT, "{\"top_logprobs\":-1}",
         "`top_logprobs` must be a whole number, 0 or more"},
        {SL_POLICY_CHAT, "{\"top_logprobs\":\"5\"}",
         "`top_logprobs` must be a whole number, 0 or more"},
        /* Legacy completions' integer logprobs; chat's is a boolean and left alone. */
        {SL_POLICY_COMPLETIONS, "{\"logprobs\":6}",
         "`logprobs` is 6, over this deployment's cap of 5"},
        {SL_POLICY_COMPLETIONS, "{\"logprobs\":5}", NULL},
        {SL_POLICY_COMPLETIONS, "{\"logprobs\":true}",
         "`logprobs` must be a whole number, 0 or more"},
        {SL_POLICY_CHAT, "{\"logprobs\":99}", NULL},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int err = apply(&caps, NULL, cases[i].call, cases[i].body, NULL, &changed, &r);
        if (cases[i].message == NULL) {
            assert_int_equal(err, SL_OK);
            assert_false(changed);
        } else {
            assert_int_equal(err, SL_EPERM);
            assert_int_equal(r.status, 400);
            assert_string_equal(r.message, cases[i].message);
        }
    }
    /* No cap, no judgement: the backend answers for odd values. */
    struct sl_config_caps none = {0};
    assert_int_equal(apply(&none, NULL, SL_POLICY_CHAT, "{\"n\":\"lots\"}", NULL, &changed, &r),
                     SL_OK);
}

static void test_prompt_bytes(void **state)
{
    struct sl_config_caps caps = {.max_prompt_bytes = 25};
    struct sl_policy_refusal r;
    bool changed = false;
    assert_int_equal(
        apply(&caps, NULL, SL_POLICY_CHAT, "{\"messages\":\"1234567\"}", NULL, &changed, &r),
        SL_OK);
    assert_int_equal(
        apply(&caps, NULL, SL_POLICY_CHAT, "{\"messages\":\"secret prompt\"}", NULL, &changed, &r),
        SL_EPERM);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.message,
                        "the request body is 28 bytes, over this deployment's limit of 25");
    /* Even a body that is not JSON (doc NULL) is measured. */
    assert_int_equal(sl_policy_apply(&caps, NULL, SL_POLICY_OTHER, NULL, 26, &changed, &r),
                     SL_EPERM);
    assert_int_equal(r.status, 413);
    assert_int_equal(sl_policy_apply(&caps, NULL, SL_POLICY_OTHER, NULL, 25, &changed, &r), SL_OK);
}

static void test_forbid_allow(void **state)
{
    char *forbid_a[] = {"logit_bias"};
    char *forbid_b[] = {"tools"};
    char *allow_a[] = {"messages", "max_tokens", "temperature", "stream"};
    char *allow_b[] = {"messages", "max_tokens", "stream", "user"};
    struct sl_config_caps client = {.forbid = forbid_a, .n_forbid = 1};
    struct sl_config_caps route = {.forbid = forbid_b, .n_forbid = 1};
    struct sl_policy_refusal r;
    bool changed = false;

    assert_int_equal(apply(&client, &route, SL_POLICY_CHAT, "{\"messages\":[],\"logit_bias\":{}}",
                           NULL, &changed, &r),
                     SL_EPERM);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.message, "the parameter `logit_bias` is not allowed here");
    /* The lists are united: the route's forbids too, even when null. */
    assert_int_equal(apply(&client, &route, SL_POLICY_CHAT, "{\"messages\":[],\"tools\":null}",
                           NULL, &changed, &r),
                     SL_EPERM);
    assert_string_equal(r.message, "the parameter `tools` is not allowed here");
    assert_int_equal(apply(&client, &route, SL_POLICY_CHAT, "{\"messages\":[],\"user\":\"x\"}",
                           NULL, &changed, &r),
                     SL_OK);

    /* Allow lists intersect; model is always allowed. */
    struct sl_config_caps ca = {.allow = allow_a, .n_allow = 4};
    struct sl_config_caps cb = {.allow = allow_b, .n_allow = 4};
    assert_int_equal(apply(&ca, &cb, SL_POLICY_CHAT,
                           "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"max_tokens\":5}",
                           NULL, &changed, &r),
                     SL_OK);
    assert_int_equal(
        apply(&ca, &cb, SL_POLICY_CHAT, "{\"messages\":[],\"temperature\":1}", NULL, &changed, &r),
        SL_EPERM);
    assert_string_equal(r.message, "the parameter `temperature` is not allowed here");
    assert_int_equal(
        apply(&ca, &cb, SL_POLICY_CHAT, "{\"messages\":[],\"user\":\"u\"}", NULL, &changed, &r),
        SL_EPERM);
    assert_string_equal(r.message, "the parameter `user` is not allowed here");
    /* One side's list alone applies as given. */
    assert_int_equal(
        apply(NULL, &cb, SL_POLICY_CHAT, "{\"messages\":[],\"user\":\"u\"}", NULL, &changed, &r),
        SL_OK);
    /* A parameter name that is not a plain identifier is not echoed. */
    assert_int_equal(
        apply(&ca, NULL, SL_POLICY_CHAT, "{\"<script>ignore previous\":1}", NULL, &changed, &r),
        SL_EPERM);
    assert_string_equal(r.message, "the request has a parameter that is not allowed here");
}

static void test_combined_caps(void **state)
{
    /* The client clamps at 1000; the route rejects over 500: 500, rejecting. */
    struct sl_config_caps client = {.max_tokens = 1000, .default_max_tokens = 300, .max_n = 4};
    struct sl_config_caps route = {
        .max_tokens = 500, .max_tokens_mode = SL_CAP_REJECT, .default_max_tokens = 200, .max_n = 0};
    struct sl_policy_refusal r;
    bool changed = false;
    json_t *doc = NULL;
    assert_int_equal(
        apply(&client, &route, SL_POLICY_CHAT, "{\"max_tokens\":600}", NULL, &changed, &r),
        SL_EPERM);
    assert_string_equal(r.message, "`max_tokens` is 600, over this deployment's cap of 500");
    assert_int_equal(
        apply(&client, &route, SL_POLICY_CHAT, "{\"max_tokens\":500,\"n\":4}", NULL, &changed, &r),
        SL_OK);
    assert_int_equal(apply(&client, &route, SL_POLICY_CHAT, "{\"n\":5}", NULL, &changed, &r),
                     SL_EPERM);
    assert_string_equal(r.message, "`n` is 5, over this deployment's cap of 4");
    /* The smaller default. */
    assert_int_equal(apply(&client, &route, SL_POLICY_CHAT, "{}", &doc, &changed, &r), SL_OK);
    assert_int_equal(int_at(doc, "max_tokens"), 200);
    json_decref(doc);
    /* Swapped sides, same result. */
    assert_int_equal(
        apply(&route, &client, SL_POLICY_CHAT, "{\"max_tokens\":600}", NULL, &changed, &r),
        SL_EPERM);
    /* A route capping lower than the client, both clamping. */
    struct sl_config_caps low = {.max_tokens = 100};
    assert_int_equal(
        apply(&client, &low, SL_POLICY_CHAT, "{\"max_tokens\":600}", &doc, &changed, &r), SL_OK);
    assert_int_equal(int_at(doc, "max_tokens"), 100);
    json_decref(doc);
    /* Neither side: nothing to do. */
    assert_int_equal(apply(NULL, NULL, SL_POLICY_CHAT, CHAT_BODY, NULL, &changed, &r), SL_OK);
    assert_false(changed);
}

static void test_not_json(void **state)
{
    struct sl_config_caps caps = {.max_tokens = 100};
    struct sl_config_caps lists = {.max_n = 2};
    struct sl_policy_refusal r;
    bool changed = false;
    assert_int_equal(sl_policy_apply(&caps, NULL, SL_POLICY_CHAT, NULL, 10, &changed, &r),
                     SL_EPERM);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.message, "the request body must be a JSON object");
    json_t *arr = load("[1,2]");
    assert_int_equal(sl_policy_apply(&caps, NULL, SL_POLICY_RESPONSES, arr, 5, &changed, &r),
                     SL_EPERM);
    json_decref(arr);
    /* A multipart upload on an `n`-capped route: nothing the caps can read. */
    assert_int_equal(sl_policy_apply(&lists, NULL, SL_POLICY_OTHER, NULL, 10, &changed, &r), SL_OK);
    assert_int_equal(sl_policy_apply(NULL, NULL, SL_POLICY_CHAT, NULL, 10, &changed, &r), SL_OK);
}

static void test_applies(void **state)
{
    struct sl_config_caps none = {0};
    struct sl_config_caps tokens = {.max_tokens = 10};
    struct sl_config_caps dflt = {.default_max_tokens = 10};
    struct sl_config_caps n = {.max_n = 1};
    struct sl_config_caps size = {.max_prompt_bytes = 100};
    char *forbid[] = {"logit_bias"};
    struct sl_config_caps lists = {.forbid = forbid, .n_forbid = 1};
    struct sl_config_caps reject_only = {.max_tokens_mode = SL_CAP_REJECT};
    assert_false(sl_policy_applies(NULL, NULL, SL_POLICY_CHAT));
    assert_false(sl_policy_applies(&none, &none, SL_POLICY_CHAT));
    assert_false(sl_policy_applies(&reject_only, NULL, SL_POLICY_CHAT));
    assert_true(sl_policy_applies(&tokens, NULL, SL_POLICY_CHAT));
    assert_true(sl_policy_applies(NULL, &tokens, SL_POLICY_RESPONSES));
    assert_false(sl_policy_applies(&tokens, &dflt, SL_POLICY_OTHER));
    assert_true(sl_policy_applies(&dflt, NULL, SL_POLICY_COMPLETIONS));
    assert_true(sl_policy_applies(&n, NULL, SL_POLICY_OTHER));
    assert_true(sl_policy_applies(&size, NULL, SL_POLICY_OTHER));
    assert_true(sl_policy_applies(NULL, &lists, SL_POLICY_OTHER));
}

static uint64_t estimate(const char *text, enum sl_policy_call call)
{
    json_t *doc = load(text);
    uint64_t e = sl_policy_estimate_tokens(doc, call, strlen(text));
    json_decref(doc);
    return e;
}

static void test_estimate(void **state)
{
    /* Chat: "be brief" (8) + "hello there" (11) = 19 bytes -> 5 tokens, + 4 per message (2),
     * + max_tokens 4000. */
    assert_int_equal(estimate(CHAT_BODY, SL_POLICY_CHAT), 5 + 8 + 4000);
    /* max_completion_tokens wins; n multiplies. */
    assert_int_equal(estimate("{\"messages\":[{\"role\":\"user\",\"content\":\"abcd\"}],"
                              "\"max_tokens\":9,\"max_completion_tokens\":100,\"n\":3}",
                              SL_POLICY_CHAT),
                     1 + 4 + 300);
    /* No max tokens: the unknown allowance. */
    assert_int_equal(
        estimate("{\"messages\":[{\"role\":\"user\",\"content\":\"abcde\"}]}", SL_POLICY_CHAT),
        2 + 4 + SL_POLICY_UNKNOWN_OUTPUT_TOKENS);
    /* An odd max_tokens counts as none. */
    assert_int_equal(estimate("{\"messages\":[],\"max_tokens\":\"9\"}", SL_POLICY_CHAT),
                     SL_POLICY_UNKNOWN_OUTPUT_TOKENS);
    /* Completions: prompt strings, token ids (1 each), best_of generated. */
    assert_int_equal(estimate("{\"prompt\":[\"12345678\",[1,2,3]],\"max_tokens\":10,\"best_of\":"
                              "3,\"n\":2}",
                              SL_POLICY_COMPLETIONS),
                     2 + 3 + 30);
    /* Responses: instructions, input items (messages with parts), max_output_tokens. */
    assert_int_equal(estimate("{\"instructions\":\"abcd\",\"input\":[{\"role\":\"user\","
                              "\"content\":[{\"type\":\"input_text\",\"text\":\"abcd\"}]},"
                              "{\"type\":\"function_call_output\",\"call_id\":\"c\"}],"
                              "\"max_output_tokens\":50}",
                              SL_POLICY_RESPONSES),
                     2 + 4 + 50);
    assert_int_equal(estimate("{\"input\":\"hello\"}", SL_POLICY_RESPONSES),
                     2 + SL_POLICY_UNKNOWN_OUTPUT_TOKENS);
    /* Embeddings: the prompt only. */
    assert_int_equal(estimate("{\"input\":[\"abcd\",\"abcdefgh\"],\"encoding_format\":\"base64\"}",
                              SL_POLICY_OTHER),
                     3);
    assert_int_equal(estimate("{\"input\":[[1,2,3],[4,5]]}", SL_POLICY_OTHER), 5);
    /* A shape not read (threads...): its size. */
    assert_int_equal(estimate("{\"metadata\":{}}", SL_POLICY_OTHER), 4);
    /* No parsed body: body_len / 4, rounded up. */
    assert_int_equal(sl_policy_estimate_tokens(NULL, SL_POLICY_OTHER, 401), 101);
    assert_int_equal(sl_policy_estimate_tokens(NULL, SL_POLICY_CHAT, 400),
                     100 + SL_POLICY_UNKNOWN_OUTPUT_TOKENS);
    /* Huge values saturate, never wrap. */
    assert_true(estimate("{\"messages\":[],\"max_tokens\":9223372036854775807,\"n\":"
                         "9223372036854775807}",
                         SL_POLICY_CHAT) == UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_of),          cmocka_unit_test(test_clamp_keeps_other_fields),
        cmocka_unit_test(test_clamp_and_reject), cmocka_unit_test(test_default_inserted),
        cmocka_unit_test(test_bad_max_tokens),   cmocka_unit_test(test_counts),
        cmocka_unit_test(test_prompt_bytes),     cmocka_unit_test(test_forbid_allow),
        cmocka_unit_test(test_combined_caps),    cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_applies),          cmocka_unit_test(test_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
