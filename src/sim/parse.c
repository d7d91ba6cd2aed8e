/*
 * Request bodies: one jansson parse, validation with OpenAI's error wording
 * (Azure passes those through unchanged), and everything the simulator keeps
 * copied into the request's arena so the JSON document can go at once.
 *
 * Prompt tokens, the documented approximation (stable across streaming and
 * non-streaming, and across endpoints):
 *   - a string costs ceil(bytes / 4) tokens (bytes of its UTF-8 form);
 *   - chat: 3 per message, plus its content strings (an image part: 85), plus
 *     1 + its name when it has one, plus the strings of its tool calls; plus
 *     3 for priming the reply; tool/function definitions add the tokens of
 *     every string and key in them;
 *   - responses: like chat, with `instructions` as one more message and a
 *     string `input` as one user message;
 *   - completions and embeddings: each prompt/input string alone, or the
 *     length of a token array.
 */
#include "sim/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* One parse: where results and errors go. */
struct parse {
    struct sl_sim_req *out;         /* borrowed */
    struct sl_sim_parse_error *err; /* borrowed */
    struct sl_arena *arena;         /* borrowed: receives every copied string */
    uint64_t hash;                  /* running hash of the prompt content */
};

static const char invalid_json[] =
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
    "not valid JSON. If you have trouble figuring out how to fix this, please contact us through "
    "our help center at help.openai.com.)";

__attribute__((format(printf, 4, 5))) static int refuse(struct parse *p, const char *param,
                                                        const char *code, const char *fmt, ...)
{
    va_list ap;
    p->err->status = 400;
    p->err->code = code;
    snprintf(p->err->param, sizeof(p->err->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
    return SL_EINVAL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

static int bad_type(struct parse *p, const char *param, const char *expected, const json_t *v)
{
    return refuse(p, param, "invalid_type",
                  "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
                  type_name(v));
}

static int missing(struct parse *p, const char *param)
{
    return refuse(p, param, "missing_required_parameter", "Missing required parameter: '%s'.",
                  param);
}

/* A member, with JSON null treated as absent (as OpenAI does for optional fields). */
static json_t *member(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static struct sl_str str_of(const json_t *v)
{
    return (struct sl_str){json_string_value(v), json_string_length(v)};
}

static int copy_str(struct parse *p, const json_t *v, struct sl_str *out)
{
    struct sl_str s = str_of(v);
    char *c = sl_arena_strdup(p->arena, s);
    if (c == NULL)
        return SL_ENOMEM;
    *out = (struct sl_str){c, s.len};
    return SL_OK;
}

static void hash_str(struct parse *p, const json_t *v)
{
    p->hash = sl_sim_hash_str(p->hash, str_of(v));
}

static int get_bool(struct parse *p, json_t *obj, const char *key, bool *out)
{
    json_t *v = member(obj, key);
    if (v == NULL)
        return SL_OK;
    if (!json_is_boolean(v))
        return bad_type(p, key, "a boolean", v);
    *out = json_is_true(v);
    return SL_OK;
}

/* An optional integer in [min, max]; *out is left alone when absent. */
static int get_uint(struct parse *p, json_t *obj, const char *key, int64_t min, int64_t max,
                    uint64_t *out)
{
    json_t *v = member(obj, key);
    if (v == NULL)
        return SL_OK;
    if (!json_is_integer(v))
        return bad_type(p, key, "an integer", v);
    json_int_t i = json_integer_value(v);
    if (i < min)
        return refuse(
            p, key, "integer_below_min_value",
            "Invalid '%s': integer below minimum value. Expected a value >= %lld, but got "
            "%lld instead.",
            key, (long long)min, (long long)i);
    if (i > max)
        return refuse(
            p, key, "integer_above_max_value",
            "Invalid '%s': integer above maximum value. Expected a value <= %lld, but got "
            "%lld instead.",
            key, (long long)max, (long long)i);
    *out = (uint64_t)i;
    return SL_OK;
}

/* Tokens of every string and key inside v (tool definitions, tool calls). */
static uint64_t all_string_tokens(json_t *v)
{
    uint64_t t = 0;
    if (json_is_string(v))
        return sl_sim_tokens_for_bytes(json_string_length(v));
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) t += all_string_tokens(e);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e) t += sl_sim_tokens_for_bytes(strlen(k)) + all_string_tokens(e);
    }
    return t;
}

/* Message content: a string, or an array of parts (text, images, ...). */
static int content_tokens(struct parse *p, json_t *content, const char *param, uint64_t *tokens)
{
    if (content == NULL)
        return SL_OK;
    if (json_is_string(content)) {
        *tokens += sl_sim_tokens_for_bytes(json_string_length(content));
        hash_str(p, content);
        return SL_OK;
    }
    if (!json_is_array(content))
        return bad_type(p, param, "one of an array of objects or a string", content);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        if (!json_is_object(part))
            return refuse(p, param, "invalid_type",
                          "Invalid type for '%s[%zu]': expected an object, but got %s instead.",
                          param, i, type_name(part));
        json_t *text = member(part, "text");
        json_t *image = member(part, "image_url");
        if (text == NULL)
            text = member(part, "refusal");
        if (json_is_string(text)) {
            *tokens += sl_sim_tokens_for_bytes(json_string_length(text));
            hash_str(p, text);
        } else if (image != NULL || json_is_string(member(part, "file_id"))) {
            *tokens += SL_SIM_TOKENS_PER_IMAGE;
            p->hash = sl_sim_mix(p->hash, SL_SIM_TOKENS_PER_IMAGE);
        }
    }
    return SL_OK;
}

static const char *const chat_roles[] = {"system", "user",     "assistant",
                                         "tool",   "function", "developer"};

static int parse_message(struct parse *p, json_t *m, size_t i, bool strict_role, uint64_t *tokens)
{
    char param[64];
    snprintf(param, sizeof(param), "messages[%zu]", i);
    if (!json_is_object(m))
        return bad_type(p, param, "an object", m);
    json_t *role = member(m, "role");
    if (role == NULL && strict_role) {
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        return missing(p, param);
    }
    if (role != NULL) {
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (!json_is_string(role))
            return bad_type(p, param, "a string", role);
        bool known = !strict_role;
        for (size_t r = 0; r < SL_ARRAY_LEN(chat_roles) && !known; r++)
            known = strcmp(json_string_value(role), chat_roles[r]) == 0;
        if (!known)
            return refuse(p, param, "invalid_value",
                          "Invalid value: '%.64s'. Supported values are: 'system', 'assistant', "
                          "'user', 'function', 'tool', and 'developer'.",
                          json_string_value(role));
        hash_str(p, role);
    }
    *tokens += SL_SIM_TOKENS_PER_MESSAGE;
    snprintf(param, sizeof(param), "messages[%zu].content", i);
    int err = content_tokens(p, member(m, "content"), param, tokens);
    if (err)
        return err;
    json_t *name = member(m, "name");
    if (json_is_string(name))
        *tokens += SL_SIM_TOKENS_PER_NAME + sl_sim_tokens_for_bytes(json_string_length(name));
    json_t *calls = member(m, "tool_calls");
    if (calls)
        *tokens += all_string_tokens(calls);
    /* Responses items that are not messages: tool outputs, calls. */
    json_t *output = member(m, "output");
    if (json_is_string(output)) {
        *tokens += sl_sim_tokens_for_bytes(json_string_length(output));
        hash_str(p, output);
    }
    json_t *args = member(m, "arguments");
    if (json_is_string(args))
        *tokens += sl_sim_tokens_for_bytes(json_string_length(args));
    return SL_OK;
}

static int one_hash(struct parse *p)
{
    p->out->hashes = sl_arena_alloc(p->arena, sizeof(uint64_t));
    if (p->out->hashes == NULL)
        return SL_ENOMEM;
    p->out->hashes[0] = p->hash;
    p->out->n_hashes = 1;
    return SL_OK;
}

static int parse_chat(struct parse *p, json_t *root)
{
    json_t *msgs = member(root, "messages");
    if (msgs == NULL)
        return missing(p, "messages");
    if (!json_is_array(msgs))
        return bad_type(p, "messages", "an array", msgs);
    if (json_array_size(msgs) == 0)
        return refuse(p, "messages", "empty_array",
                      "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                      "but got an empty array instead.");
    uint64_t tokens = SL_SIM_TOKENS_REPLY_PRIMING;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        int err = parse_message(p, m, i, true, &tokens);
        if (err)
            return err;
    }
    json_t *tools = member(root, "tools");
    if (tools == NULL)
        tools = member(root, "functions");
    if (tools)
        tokens += all_string_tokens(tools);
    p->out->prompt_tokens = tokens;
    return one_hash(p);
}

static int parse_responses(struct parse *p, json_t *root)
{
    struct sl_sim_req *r = p->out;
    uint64_t tokens = SL_SIM_TOKENS_REPLY_PRIMING;
    int err;
    json_t *instr = member(root, "instructions");
    if (instr) {
        if (!json_is_string(instr))
            return bad_type(p, "instructions", "a string", instr);
        if ((err = copy_str(p, instr, &r->instructions)) != SL_OK)
            return err;
        tokens += SL_SIM_TOKENS_PER_MESSAGE + sl_sim_tokens_for_bytes(r->instructions.len);
        hash_str(p, instr);
    }
    json_t *prev = member(root, "previous_response_id");
    if (prev) {
        if (!json_is_string(prev))
            return bad_type(p, "previous_response_id", "a string", prev);
        if ((err = copy_str(p, prev, &r->previous_response_id)) != SL_OK)
            return err;
        hash_str(p, prev);
    }
    json_t *input = member(root, "input");
    if (input == NULL && prev == NULL)
        return missing(p, "input");
    if (json_is_string(input)) {
        tokens += SL_SIM_TOKENS_PER_MESSAGE + sl_sim_tokens_for_bytes(json_string_length(input));
        hash_str(p, input);
    } else if (json_is_array(input)) {
        size_t i;
        json_t *item;
        json_array_foreach(input, i, item)
        {
            if ((err = parse_message(p, item, i, false, &tokens)) != SL_OK)
                return err;
        }
    } else if (input != NULL) {
        return bad_type(p, "input", "one of a string or an array of input items", input);
    }
    if ((err = get_uint(p, root, "max_output_tokens", 16, INT64_MAX, &r->max_tokens)) != SL_OK)
        return err;
    if ((err = get_bool(p, root, "store", &r->store)) != SL_OK)
        return err;
    json_t *tools = member(root, "tools");
    if (tools)
        tokens += all_string_tokens(tools);
    r->prompt_tokens = tokens;
    return one_hash(p);
}

/* A prompt or input as a token array: its length is its token count. */
static int token_array(struct parse *p, json_t *arr, const char *param, uint64_t *tokens)
{
    size_t i;
    json_t *t;
    if (json_array_size(arr) == 0)
        return refuse(p, param, "empty_array",
                      "Invalid '%s': empty array. Expected an array with minimum length 1, but got "
                      "an empty array instead.",
                      param);
    json_array_foreach(arr, i, t)
    {
        if (!json_is_integer(t))
            return bad_type(p, param, "an array of integers", t);
        uint64_t v = (uint64_t)json_integer_value(t);
        p->hash = sl_sim_mix(p->hash, v);
    }
    *tokens += json_array_size(arr);
    return SL_OK;
}

/*
 * Completions prompts and embeddings inputs share a shape: a string, an
 * array of strings, a token array, or an array of token arrays. Each item
 * gets its own hash; strict refuses empty strings (embeddings do).
 */
static int parse_items(struct parse *p, json_t *v, const char *param, bool strict)
{
    struct sl_sim_req *r = p->out;
    uint64_t base = p->hash;
    int err;
    if (json_is_array(v) && json_array_size(v) == 0)
        return refuse(p, param, "empty_array",
                      "Invalid '%s': empty array. Expected an array with minimum length 1, but "
                      "got an empty array instead.",
                      param);
    if (!json_is_array(v) && !json_is_string(v))
        return bad_type(p, param, "one of a string or an array", v);
    /* A flat array of integers is one tokenised item; any other array is a list of items. */
    bool list = json_is_array(v) && !json_is_integer(json_array_get(v, 0));
    size_t n = list ? json_array_size(v) : 1;
    if (n > SL_SIM_MAX_INPUTS)
        return refuse(p, param, "array_above_max_length",
                      "Invalid '%s': array too long. Expected an array with maximum length %d, "
                      "but got an array with length %zu instead.",
                      param, SL_SIM_MAX_INPUTS, n);
    r->hashes = sl_arena_alloc(p->arena, n * sizeof(uint64_t));
    if (r->hashes == NULL)
        return SL_ENOMEM;
    r->n_hashes = n;
    uint64_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *item = list ? json_array_get(v, i) : v;
        p->hash = base;
        if (json_is_string(item)) {
            if (strict && json_string_length(item) == 0)
                return refuse(p, param, NULL,
                              "'$.%s' is invalid. Please check the API reference: "
                              "https://platform.openai.com/docs/api-reference.",
                              param);
            tokens += sl_sim_tokens_for_bytes(json_string_length(item));
            hash_str(p, item);
        } else if (json_is_array(item)) {
            if ((err = token_array(p, item, param, &tokens)) != SL_OK)
                return err;
        } else {
            return bad_type(p, param, "one of a string or an array", item);
        }
        r->hashes[i] = p->hash;
    }
    r->prompt_tokens = tokens;
    return SL_OK;
}

static int parse_embeddings(struct parse *p, json_t *root)
{
    struct sl_sim_req *r = p->out;
    json_t *input = member(root, "input");
    if (input == NULL)
        return missing(p, "input");
    int err = parse_items(p, input, "input", true);
    if (err)
        return err;
    json_t *fmt = member(root, "encoding_format");
    if (fmt) {
        if (!json_is_string(fmt))
            return bad_type(p, "encoding_format", "a string", fmt);
        if (strcmp(json_string_value(fmt), "base64") == 0)
            r->base64 = true;
        else if (strcmp(json_string_value(fmt), "float") != 0)
            return refuse(p, "encoding_format", "invalid_value",
                          "Invalid value: '%.64s'. Supported values are: 'float' and 'base64'.",
                          json_string_value(fmt));
    }
    return get_uint(p, root, "dimensions", 1, INT64_MAX, &r->dimensions);
}

static int parse_stop(struct parse *p, json_t *root)
{
    struct sl_sim_req *r = p->out;
    json_t *stop = member(root, "stop");
    int err;
    if (stop == NULL)
        return SL_OK;
    if (json_is_string(stop)) {
        r->n_stops = 1;
        return copy_str(p, stop, &r->stops[0]);
    }
    if (!json_is_array(stop))
        return bad_type(p, "stop", "one of a string or an array of strings", stop);
    if (json_array_size(stop) > SL_SIM_MAX_STOPS)
        return refuse(
            p, "stop", "array_above_max_length",
            "Invalid 'stop': array too long. Expected an array with maximum length %d, but "
            "got an array with length %zu instead.",
            SL_SIM_MAX_STOPS, json_array_size(stop));
    size_t i;
    json_t *s;
    json_array_foreach(stop, i, s)
    {
        if (!json_is_string(s))
            return bad_type(p, "stop", "an array of strings", s);
        if ((err = copy_str(p, s, &r->stops[r->n_stops++])) != SL_OK)
            return err;
    }
    return SL_OK;
}

/* Fields chat, completions and responses share. */
static int parse_generation(struct parse *p, json_t *root)
{
    struct sl_sim_req *r = p->out;
    int err;
    if ((err = get_bool(p, root, "stream", &r->stream)) != SL_OK)
        return err;
    json_t *so = member(root, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return bad_type(p, "stream_options", "an object", so);
        if (!r->stream)
            return refuse(
                p, "stream_options", "invalid_value",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
        json_t *iu = member(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return bad_type(p, "stream_options.include_usage", "a boolean", iu);
        r->include_usage = json_is_true(iu);
    }
    if (r->op == SL_SIM_OP_RESPONSES)
        return SL_OK;
    uint64_t n = 1;
    if ((err = get_uint(p, root, "n", 1, SL_SIM_MAX_N, &n)) != SL_OK)
        return err;
    r->n = (uint32_t)n;
    if ((err = get_uint(p, root, "max_tokens", 1, INT64_MAX, &r->max_tokens)) != SL_OK)
        return err;
    /* The newer name wins when both are sent. */
    if ((err = get_uint(p, root, "max_completion_tokens", 1, INT64_MAX, &r->max_tokens)) != SL_OK)
        return err;
    if ((err = parse_stop(p, root)) != SL_OK)
        return err;
    json_t *seed = member(root, "seed");
    if (seed) {
        if (!json_is_integer(seed))
            return bad_type(p, "seed", "an integer", seed);
        p->hash = sl_sim_mix(p->hash, (uint64_t)json_integer_value(seed));
    }
    return SL_OK;
}

int sl_sim_parse_request(enum sl_sim_op op, struct sl_str body, struct sl_arena *arena,
                         struct sl_sim_req *out, struct sl_sim_parse_error *err)
{
    struct parse p = {out, err, arena, 0};
    json_error_t jerr;
    json_t *root = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    out->op = op;
    out->n = 1;
    out->store = true;
    root = json_loadb(body.base ? body.base : "", body.len, 0, &jerr);
    if (root == NULL) {
        rc = refuse(&p, NULL, NULL, "%s", invalid_json);
        goto fail;
    }
    if (!json_is_object(root)) {
        rc = refuse(&p, NULL, "invalid_type",
                    "Invalid type for the request body: expected an object, but got %s instead.",
                    type_name(root));
        goto fail;
    }
    json_t *model = member(root, "model");
    if (model) {
        if (!json_is_string(model)) {
            rc = bad_type(&p, "model", "a string", model);
            goto fail;
        }
        if ((rc = copy_str(&p, model, &out->model)) != SL_OK)
            goto fail;
    }
    if (op != SL_SIM_OP_EMBEDDINGS && (rc = parse_generation(&p, root)) != SL_OK)
        goto fail;
    switch (op) {
    case SL_SIM_OP_CHAT:
        rc = parse_chat(&p, root);
        break;
    case SL_SIM_OP_COMPLETIONS: {
        json_t *prompt = member(root, "prompt");
        rc = prompt ? parse_items(&p, prompt, "prompt", false) : missing(&p, "prompt");
        if (rc == SL_OK && (uint64_t)out->n * out->n_hashes > SL_SIM_MAX_N)
            rc = refuse(&p, "n", "invalid_value",
                        "Invalid 'n': %u choices for each of %zu prompts is more than the %d "
                        "choices this endpoint answers at once.",
                        out->n, out->n_hashes, SL_SIM_MAX_N);
        break;
    }
    case SL_SIM_OP_EMBEDDINGS:
        rc = parse_embeddings(&p, root);
        break;
    case SL_SIM_OP_RESPONSES:
        rc = parse_responses(&p, root);
        break;
    }
fail:
    if (rc == SL_ENOMEM) {
        refuse(&p, NULL, NULL, "The server had an error while processing your request.");
        err->status = 500;
    }
    json_decref(root);
    return rc;
}
