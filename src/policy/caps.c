/*
 * Request caps: what one request body may ask for. A client's caps and its
 * route's caps both apply, combined field by field so that the stricter
 * wins: the smaller non-zero number, `reject` over `clamp`, the union of
 * the forbidden parameters and the intersection of the allowed ones.
 *
 * The body is the client's: every value is checked for its type and range
 * before it is compared, and refusals name the parameter and the cap but
 * never echo the client's text (a parameter name is quoted only when it is
 * a plain identifier).
 */
#include <stdio.h>
#include <string.h>

#include "policy/policy.h"

/* The largest value a token-count parameter may have: the APIs take 32-bit integers, and
 * anything bigger is a client bug (or a probe), not a request to clamp. */
#define WHOLE_MAX ((json_int_t)INT32_MAX)

/* The combined caps of a client and a route. Borrows a and b (for their lists). */
struct effective {
    uint64_t max_tokens;
    bool reject;
    uint64_t default_max_tokens;
    uint64_t max_n;
    uint64_t max_best_of;
    uint64_t max_top_logprobs;
    uint64_t max_prompt_bytes;
    const struct sl_config_caps *a, *b; /* either may be NULL */
};

/* The smaller of two caps where 0 means none. */
static uint64_t stricter(uint64_t x, uint64_t y)
{
    if (x == 0)
        return y;
    if (y == 0)
        return x;
    return SL_MIN(x, y);
}

static void combine(const struct sl_config_caps *a, const struct sl_config_caps *b,
                    struct effective *e)
{
    static const struct sl_config_caps none;
    const struct sl_config_caps *x = a ? a : &none, *y = b ? b : &none;
    e->max_tokens = stricter(x->max_tokens, y->max_tokens);
    /* `clamp` is the default, so a `reject` was asked for on purpose by one side. */
    e->reject = x->max_tokens_mode == SL_CAP_REJECT || y->max_tokens_mode == SL_CAP_REJECT;
    e->default_max_tokens = stricter(x->default_max_tokens, y->default_max_tokens);
    e->max_n = stricter(x->max_n, y->max_n);
    e->max_best_of = stricter(x->max_best_of, y->max_best_of);
    e->max_top_logprobs = stricter(x->max_top_logprobs, y->max_top_logprobs);
    e->max_prompt_bytes = stricter(x->max_prompt_bytes, y->max_prompt_bytes);
    e->a = a;
    e->b = b;
}

static bool has_lists(const struct sl_config_caps *c)
{
    return c && (c->n_forbid || c->n_allow);
}

/* Whether anything but the body-size cap acts on this call: those need the parsed body. */
static bool needs_body(const struct effective *e, enum sl_policy_call call)
{
    if (has_lists(e->a) || has_lists(e->b))
        return true;
    if (e->max_n || e->max_best_of || e->max_top_logprobs)
        return true;
    return call != SL_POLICY_OTHER && (e->max_tokens || e->default_max_tokens);
}

/* rest names what (exactly, with a trailing '/', or followed by a query). */
static bool names(struct sl_str rest, struct sl_str what)
{
    if (!sl_str_starts_with(rest, what))
        return false;
    struct sl_str after = {rest.base + what.len, rest.len - what.len};
    if (after.len && after.base[0] == '/') {
        after.base++;
        after.len--;
    }
    return after.len == 0 || after.base[0] == '?';
}

enum sl_policy_call sl_policy_call_of(struct sl_str rest)
{
    if (rest.base == NULL)
        return SL_POLICY_OTHER;
    if (names(rest, SL_STR("chat/completions")))
        return SL_POLICY_CHAT;
    if (names(rest, SL_STR("completions")))
        return SL_POLICY_COMPLETIONS;
    /* Only creating a response: "responses/{id}", ".../cancel" and the like carry no
     * max_output_tokens and must not get a default inserted into their (empty) body. */
    if (names(rest, SL_STR("responses")))
        return SL_POLICY_RESPONSES;
    return SL_POLICY_OTHER;
}

bool sl_policy_applies(const struct sl_config_caps *client, const struct sl_config_caps *route,
                       enum sl_policy_call call)
{
    struct effective e;
    combine(client, route, &e);
    return e.max_prompt_bytes || needs_body(&e, call);
}

__attribute__((format(printf, 3, 4))) static int refuse(struct sl_policy_refusal *r, int status,
                                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->status = status;
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    return SL_EPERM;
}

/* A parameter name fit to quote back: a plain identifier of at most 64 bytes. */
static bool quotable(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int refuse_param(struct sl_policy_refusal *r, const char *key)
{
    if (quotable(key))
        return refuse(r, 400, "the parameter `%s` is not allowed here", key);
    return refuse(r, 400, "the request has a parameter that is not allowed here");
}

static bool listed(char *const *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

/* Forbidden parameters (either list) and, where allow lists are given, unlisted ones. */
static int check_params(const struct effective *e, json_t *doc, struct sl_policy_refusal *r)
{
    const struct sl_config_caps *sides[2] = {e->a, e->b};
    for (size_t s = 0; s < 2; s++)
        for (size_t i = 0; sides[s] && i < sides[s]->n_forbid; i++)
            if (json_object_get(doc, sides[s]->forbid[i]))
                return refuse_param(r, sides[s]->forbid[i]);
    bool any_allow = (e->a && e->a->n_allow) || (e->b && e->b->n_allow);
    if (!any_allow)
        return SL_OK;
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        if (strcmp(key, "model") == 0)
            continue;
        for (size_t s = 0; s < 2; s++)
            if (sides[s] && sides[s]->n_allow && !listed(sides[s]->allow, sides[s]->n_allow, key))
                return refuse_param(r, key);
    }
    return SL_OK;
}

/*
 * The whole-number parameter key of doc: SL_ENOTFOUND when absent or null (the APIs read
 * null as "not set"), SL_EINVAL when it is not an integer from min to WHOLE_MAX.
 */
static int whole(const json_t *doc, const char *key, json_int_t min, json_int_t *out)
{
    const json_t *v = json_object_get(doc, key);
    if (v == NULL || json_is_null(v))
        return SL_ENOTFOUND;
    if (!json_is_integer(v))
        return SL_EINVAL;
    json_int_t i = json_integer_value(v);
    if (i < min || i > WHOLE_MAX)
        return SL_EINVAL;
    *out = i;
    return SL_OK;
}

/* A count parameter (n, best_of, top_logprobs, logprobs) against its cap. */
static int check_count(const json_t *doc, const char *key, json_int_t min, uint64_t cap,
                       struct sl_policy_refusal *r)
{
    if (cap == 0)
        return SL_OK;
    json_int_t v = 0;
    int err = whole(doc, key, min, &v);
    if (err == SL_ENOTFOUND)
        return SL_OK;
    if (err != SL_OK)
        return min > 0 ? refuse(r, 400, "`%s` must be a positive whole number", key)
                       : refuse(r, 400, "`%s` must be a whole number, 0 or more", key);
    if ((uint64_t)v > cap)
        return refuse(r, 400, "`%s` is %lld, over this deployment's cap of %llu", key, (long long)v,
                      (unsigned long long)cap);
    return SL_OK;
}

/* The max-tokens parameters of a call, the one that wins first; NULL-terminated. */
static const char *const *token_fields(enum sl_policy_call call)
{
    /* Chat takes both names (max_tokens is deprecated in favour of max_completion_tokens);
     * both are capped, so that sending both cannot slip one past the cap. */
    static const char *const chat[] = {"max_completion_tokens", "max_tokens", NULL};
    static const char *const completions[] = {"max_tokens", NULL};
    static const char *const responses[] = {"max_output_tokens", NULL};
    static const char *const other[] = {NULL};
    switch (call) {
    case SL_POLICY_CHAT:
        return chat;
    case SL_POLICY_COMPLETIONS:
        return completions;
    case SL_POLICY_RESPONSES:
        return responses;
    default:
        return other;
    }
}

/* Refuse, clamp or insert the call's max tokens. */
static int apply_max_tokens(const struct effective *e, enum sl_policy_call call, json_t *doc,
                            bool *changed, struct sl_policy_refusal *r)
{
    const char *const *fields = token_fields(call);
    bool present = false;
    /* Every refusal first, so that a refused body is left as it came. */
    for (size_t i = 0; fields[i]; i++) {
        json_int_t v = 0;
        int err = whole(doc, fields[i], 1, &v);
        if (err == SL_ENOTFOUND)
            continue;
        present = true;
        if (e->max_tokens == 0)
            continue; /* only a default to insert: the backend judges the client's value */
        if (err != SL_OK)
            return refuse(r, 400, "`%s` must be a positive whole number", fields[i]);
        if ((uint64_t)v > e->max_tokens && e->reject)
            return refuse(r, 400, "`%s` is %lld, over this deployment's cap of %llu", fields[i],
                          (long long)v, (unsigned long long)e->max_tokens);
    }
    for (size_t i = 0; e->max_tokens && fields[i]; i++) {
        json_int_t v = 0;
        if (whole(doc, fields[i], 1, &v) != SL_OK || (uint64_t)v <= e->max_tokens)
            continue;
        if (json_object_set_new(doc, fields[i], json_integer((json_int_t)e->max_tokens)) != 0)
            return SL_ENOMEM;
        *changed = true;
    }
    if (!present && e->default_max_tokens && fields[0]) {
        uint64_t d = e->default_max_tokens;
        if (e->max_tokens && d > e->max_tokens)
            d = e->max_tokens;
        /* Chat's default goes in max_tokens, the name every API version knows. */
        const char *field = call == SL_POLICY_RESPONSES ? "max_output_tokens" : "max_tokens";
        if (json_object_set_new(doc, field, json_integer((json_int_t)d)) != 0)
            return SL_ENOMEM;
        *changed = true;
    }
    return SL_OK;
}

int sl_policy_apply(const struct sl_config_caps *client, const struct sl_config_caps *route,
                    enum sl_policy_call call, json_t *doc, size_t body_len, bool *changed,
                    struct sl_policy_refusal *refusal)
{
    struct effective e;
    int err;
    combine(client, route, &e);
    *changed = false;
    refusal->status = 0;
    refusal->message[0] = '\0';

    if (e.max_prompt_bytes && body_len > e.max_prompt_bytes)
        return refuse(refusal, 413,
                      "the request body is %zu bytes, over this deployment's limit of %llu",
                      body_len, (unsigned long long)e.max_prompt_bytes);
    if (doc == NULL || !json_is_object(doc)) {
        /* A body the caps cannot read must not slip past them; other calls (multipart
         * uploads, bodiless requests) have nothing the caps could look at. */
        if (call != SL_POLICY_OTHER && needs_body(&e, call))
            return refuse(refusal, 400, "the request body must be a JSON object");
        return SL_OK;
    }
    if ((err = check_params(&e, doc, refusal)) != SL_OK)
        goto fail;
    if ((err = check_count(doc, "n", 1, e.max_n, refusal)) != SL_OK)
        goto fail;
    if ((err = check_count(doc, "best_of", 1, e.max_best_of, refusal)) != SL_OK)
        goto fail;
    if ((err = check_count(doc, "top_logprobs", 0, e.max_top_logprobs, refusal)) != SL_OK)
        goto fail;
    /* Legacy completions take an integer `logprobs`; chat's is a boolean switch. */
    if (call == SL_POLICY_COMPLETIONS &&
        (err = check_count(doc, "logprobs", 0, e.max_top_logprobs, refusal)) != SL_OK)
        goto fail;
    if (call != SL_POLICY_OTHER &&
        (err = apply_max_tokens(&e, call, doc, changed, refusal)) != SL_OK)
        goto fail;
    return SL_OK;
fail:
    return err;
}
