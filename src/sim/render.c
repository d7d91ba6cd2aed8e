/*
 * JSON bodies and SSE events, written with sl_buf appends (no JSON library
 * on the way out: this is the hot path). Shapes follow what Azure OpenAI and
 * OpenAI return: Azure adds prompt_filter_results and per-choice
 * content_filter_results, and its streams open with a chunk that has empty
 * choices, created 0 and empty id/model/object.
 *
 * Each function ORs the append results together: after an allocation
 * failure the output is garbage, but the caller learns of it and answers 500.
 */
#include "sim/internal.h"

#include <string.h>

#define LIT SL_SIM_LIT

#define FILTER_CHOICE                                                                              \
    "\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},"             \
    "\"protected_material_code\":{\"filtered\":false,\"detected\":false},"                         \
    "\"protected_material_text\":{\"filtered\":false,\"detected\":false},"                         \
    "\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},"                                    \
    "\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},"                                       \
    "\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}"
#define FILTER_PROMPT                                                                              \
    "\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},"             \
    "\"jailbreak\":{\"filtered\":false,\"detected\":false},"                                       \
    "\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},"                                    \
    "\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},"                                       \
    "\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}"

struct sl_str sl_sim_model_name(const struct sl_sim_call *c)
{
    if (c->dep == NULL)
        return SL_STR("");
    /* Azure reports embeddings models without their version. */
    if (c->r.op == SL_SIM_OP_EMBEDDINGS)
        return sl_str_from_cstr(c->dep->cfg->model ? c->dep->cfg->model : c->dep->model_name);
    return sl_str_from_cstr(c->dep->model_name);
}

uint64_t sl_sim_choice_seed(const struct sl_sim_call *c, size_t prompt, size_t j)
{
    uint64_t h = c->r.n_hashes ? c->r.hashes[prompt < c->r.n_hashes ? prompt : 0] : 0;
    return sl_sim_mix(sl_sim_mix(c->seed, h), j);
}

static int plans_alloc(struct sl_sim_call *c)
{
    if (c->plans)
        return SL_OK;
    c->n_choices = (c->r.n_hashes ? c->r.n_hashes : 1) * (c->r.n ? c->r.n : 1);
    c->plans = sl_arena_alloc(c->req->arena, c->n_choices * sizeof(*c->plans));
    return c->plans ? SL_OK : SL_ENOMEM;
}

/* Plan choice i (and write its text when text is not NULL). */
static void plan_choice(struct sl_sim_call *c, size_t i, char *text)
{
    uint32_t n = c->r.n ? c->r.n : 1;
    sl_sim_plan(sl_sim_choice_seed(c, i / n, i % n), c->max_tokens, c->r.stops, c->r.n_stops,
                &c->plans[i], text);
}

int sl_sim_plan_choices(struct sl_sim_call *c)
{
    if (plans_alloc(c) != SL_OK)
        return SL_ENOMEM;
    c->completion_tokens = 0;
    for (size_t i = 0; i < c->n_choices; i++) {
        plan_choice(c, i, NULL);
        c->completion_tokens += c->plans[i].tokens;
    }
    return SL_OK;
}

static int quoted(struct sl_buf *b, struct sl_str s)
{
    int rc = LIT(b, "\"");
    rc |= sl_buf_append_json_escaped(b, s);
    return rc | LIT(b, "\"");
}

static int quoted_or_null(struct sl_buf *b, struct sl_str s)
{
    return s.base ? quoted(b, s) : LIT(b, "null");
}

static int num(struct sl_buf *b, const char *key_lit, uint64_t v)
{
    return sl_buf_append(b, key_lit, strlen(key_lit)) | sl_buf_append_u64(b, v);
}

static int usage_chat(struct sl_buf *b, struct sl_sim_call *c)
{
    int rc = num(b, "\"usage\":{\"prompt_tokens\":", c->prompt_tokens);
    rc |= num(b, ",\"completion_tokens\":", c->completion_tokens);
    rc |= num(b, ",\"total_tokens\":", c->prompt_tokens + c->completion_tokens);
    if (c->r.op == SL_SIM_OP_CHAT)
        rc |= LIT(b, ",\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
                     "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
                     "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}");
    return rc | LIT(b, "}");
}

static int prompt_filters(struct sl_buf *b, struct sl_sim_call *c)
{
    int rc = LIT(b, "\"prompt_filter_results\":[");
    size_t prompts = c->r.op == SL_SIM_OP_COMPLETIONS ? c->r.n_hashes : 1;
    for (size_t p = 0; p < prompts; p++) {
        rc |= num(b, p ? ",{\"prompt_index\":" : "{\"prompt_index\":", p);
        rc |= LIT(b, ",");
        rc |= LIT(b, FILTER_PROMPT);
        rc |= LIT(b, "}");
    }
    return rc | LIT(b, "]");
}

/* "id", "object", "created", "model" of a completion or a chunk. */
static int envelope(struct sl_buf *b, struct sl_sim_call *c, const char *object)
{
    int rc = LIT(b, "{\"id\":\"");
    rc |= sl_buf_append(b, c->id, strlen(c->id));
    rc |= LIT(b, "\",\"object\":\"");
    rc |= sl_buf_append(b, object, strlen(object));
    rc |= num(b, "\",\"created\":", c->created);
    rc |= LIT(b, ",\"model\":");
    rc |= quoted(b, sl_sim_model_name(c));
    if (c->r.op == SL_SIM_OP_CHAT) {
        rc |= LIT(b, ",\"system_fingerprint\":\"");
        rc |= sl_buf_append(b, c->dep->fingerprint, strlen(c->dep->fingerprint));
        rc |= LIT(b, "\"");
    }
    return rc;
}

/* Writes the members of choice i of a chat completion before its logprobs. */
static int chat_choice(struct sl_buf *b, size_t i, struct sl_str text)
{
    int rc = num(b, i ? ",{\"index\":" : "{\"index\":", i);
    rc |= LIT(b, ",\"message\":{\"role\":\"assistant\",\"content\":");
    rc |= quoted(b, text);
    return rc | LIT(b, ",\"refusal\":null,\"annotations\":[]}");
}

/* Writes the members of choice i of a text completion before its logprobs. */
static int text_choice(struct sl_buf *b, size_t i, struct sl_str text)
{
    int rc = SL_SIM_CSTR(b, i ? ",{\"text\":" : "{\"text\":");
    rc |= quoted(b, text);
    return rc | num(b, ",\"index\":", i);
}

/* A whole (non-streamed) completion of the given object type; choice writes what sets
 * one choice of that type apart, the rest is common to chat and text completions. */
static int render_completion(struct sl_buf *b, struct sl_sim_call *c, const char *object,
                             int (*choice)(struct sl_buf *b, size_t i, struct sl_str text))
{
    char text[SL_SIM_TEXT_MAX];
    if (plans_alloc(c) != SL_OK)
        return SL_ENOMEM;
    int rc = envelope(b, c, object);
    rc |= LIT(b, ",\"choices\":[");
    c->completion_tokens = 0;
    for (size_t i = 0; i < c->n_choices; i++) {
        plan_choice(c, i, text);
        c->completion_tokens += c->plans[i].tokens;
        rc |= choice(b, i, (struct sl_str){text, c->plans[i].bytes});
        rc |= LIT(b, ",\"logprobs\":null,\"finish_reason\":\"");
        rc |= sl_buf_append_str(b, sl_str_from_cstr(sl_sim_finish_name(c->plans[i].finish)));
        rc |= LIT(b, "\"");
        if (c->azure) {
            rc |= LIT(b, ",");
            rc |= LIT(b, FILTER_CHOICE);
        }
        rc |= LIT(b, "}");
    }
    rc |= LIT(b, "],");
    rc |= usage_chat(b, c);
    if (c->azure) {
        rc |= LIT(b, ",");
        rc |= prompt_filters(b, c);
    }
    rc |= LIT(b, "}");
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_render_chat(struct sl_buf *b, struct sl_sim_call *c)
{
    return render_completion(b, c, "chat.completion", chat_choice);
}

int sl_sim_render_completions(struct sl_buf *b, struct sl_sim_call *c)
{
    return render_completion(b, c, "text_completion", text_choice);
}

int sl_sim_render_embeddings(struct sl_buf *b, struct sl_sim_call *c)
{
    size_t dims = (size_t)(c->r.dimensions ? c->r.dimensions : c->dep->cfg->dimensions);
    float *v = sl_arena_alloc(c->req->arena, (dims ? dims : 1) * sizeof(float));
    if (v == NULL)
        return SL_ENOMEM;
    int rc = LIT(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < c->r.n_hashes; i++) {
        sl_sim_embed(sl_sim_mix(c->seed, c->r.hashes[i]), dims, v);
        rc |= num(
            b, i ? ",{\"object\":\"embedding\",\"index\":" : "{\"object\":\"embedding\",\"index\":",
            i);
        rc |= LIT(b, ",\"embedding\":");
        if (c->r.base64) {
            rc |= LIT(b, "\"");
            rc |= sl_sim_append_base64_floats(b, v, dims);
            rc |= LIT(b, "\"}");
        } else {
            rc |= sl_sim_append_floats(b, v, dims);
            rc |= LIT(b, "}");
        }
    }
    rc |= LIT(b, "],\"model\":");
    rc |= quoted(b, sl_sim_model_name(c));
    rc |= num(b, ",\"usage\":{\"prompt_tokens\":", c->prompt_tokens);
    rc |= num(b, ",\"total_tokens\":", c->prompt_tokens);
    rc |= LIT(b, "}}");
    return rc ? SL_ENOMEM : SL_OK;
}

/* The output message of a response: its text when done, empty while in progress. */
static int response_message(struct sl_buf *b, struct sl_sim_call *c, struct sl_str text,
                            const char *status, bool with_content)
{
    int rc = LIT(b, "{\"id\":\"");
    rc |= sl_buf_append(b, c->item_id, strlen(c->item_id));
    rc |= LIT(b, "\",\"type\":\"message\",\"status\":\"");
    rc |= sl_buf_append(b, status, strlen(status));
    rc |= LIT(b, "\",\"content\":[");
    if (with_content) {
        rc |= LIT(b, "{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":");
        rc |= quoted(b, text);
        rc |= LIT(b, "}");
    }
    return rc | LIT(b, "],\"role\":\"assistant\"}");
}

int sl_sim_render_response(struct sl_buf *b, struct sl_sim_call *c, bool in_progress)
{
    char text[SL_SIM_TEXT_MAX];
    if (plans_alloc(c) != SL_OK)
        return SL_ENOMEM;
    plan_choice(c, 0, text);
    c->completion_tokens = c->plans[0].tokens;
    bool incomplete = c->plans[0].finish == SL_SIM_FINISH_LENGTH;
    const char *status = in_progress ? "in_progress" : incomplete ? "incomplete" : "completed";
    int rc = LIT(b, "{\"id\":\"");
    rc |= sl_buf_append(b, c->id, strlen(c->id));
    rc |= num(b, "\",\"object\":\"response\",\"created_at\":", c->created);
    rc |= LIT(b, ",\"status\":\"");
    rc |= sl_buf_append(b, status, strlen(status));
    rc |= LIT(b, "\",\"background\":false,\"error\":null,\"incomplete_details\":");
    rc |=
        SL_SIM_CSTR(b, incomplete && !in_progress ? "{\"reason\":\"max_output_tokens\"}" : "null");
    rc |= LIT(b, ",\"instructions\":");
    rc |= quoted_or_null(b, c->r.instructions);
    rc |= LIT(b, ",\"max_output_tokens\":");
    rc |= c->r.max_tokens ? sl_buf_append_u64(b, c->r.max_tokens) : LIT(b, "null");
    rc |= LIT(b, ",\"model\":");
    rc |= quoted(b, sl_sim_model_name(c));
    rc |= LIT(b, ",\"output\":[");
    if (!in_progress)
        rc |= response_message(b, c, (struct sl_str){text, c->plans[0].bytes},
                               incomplete ? "incomplete" : "completed", true);
    rc |= LIT(b, "],\"parallel_tool_calls\":true,\"previous_response_id\":");
    rc |= quoted_or_null(b, c->r.previous_response_id);
    rc |= LIT(b, ",\"reasoning\":{\"effort\":null,\"summary\":null},\"service_tier\":\"default\","
                 "\"store\":");
    rc |= SL_SIM_CSTR(b, c->r.store ? "true" : "false");
    rc |= LIT(b, ",\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},"
                 "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":\"disabled\","
                 "\"usage\":");
    if (in_progress) {
        rc |= LIT(b, "null");
    } else {
        rc |= num(b, "{\"input_tokens\":", c->prompt_tokens);
        rc |= num(b, ",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":",
                  c->completion_tokens);
        rc |= num(b, ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":",
                  c->prompt_tokens + c->completion_tokens);
        rc |= LIT(b, "}");
    }
    rc |= LIT(b, ",\"user\":null,\"metadata\":{}}");
    return rc ? SL_ENOMEM : SL_OK;
}

/* ---- streaming events ---- */

static int chunk_open(struct sl_buf *b, struct sl_sim_call *c)
{
    int rc = LIT(b, "data: ");
    rc |= envelope(b, c, c->r.op == SL_SIM_OP_CHAT ? "chat.completion.chunk" : "text_completion");
    return rc | LIT(b, ",\"choices\":[");
}

static int chunk_close(struct sl_buf *b, struct sl_sim_call *c)
{
    /* With include_usage every chunk but the last says usage is null. */
    int rc = LIT(b, "]");
    if (c->r.include_usage)
        rc |= LIT(b, ",\"usage\":null");
    return rc | LIT(b, "}\n\n");
}

int sl_sim_event_prompt_filter(struct sl_buf *b, struct sl_sim_call *c)
{
    int rc =
        LIT(b, "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",");
    rc |= prompt_filters(b, c);
    rc |= LIT(b, "}\n\n");
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_event_role(struct sl_buf *b, struct sl_sim_call *c, size_t choice)
{
    int rc = chunk_open(b, c);
    rc |= num(b, "{\"index\":", choice);
    rc |= LIT(b, ",\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
                 "\"logprobs\":null,\"finish_reason\":null");
    if (c->azure)
        rc |= LIT(b, ",\"content_filter_results\":{}");
    rc |= LIT(b, "}");
    rc |= chunk_close(b, c);
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_event_token(struct sl_buf *b, struct sl_sim_call *c, size_t choice, struct sl_str text)
{
    int rc = chunk_open(b, c);
    if (c->r.op == SL_SIM_OP_CHAT) {
        rc |= num(b, "{\"index\":", choice);
        rc |= LIT(b, ",\"delta\":{\"content\":");
        rc |= quoted(b, text);
        rc |= LIT(b, "},\"logprobs\":null,\"finish_reason\":null");
    } else {
        rc |= LIT(b, "{\"text\":");
        rc |= quoted(b, text);
        rc |= num(b, ",\"index\":", choice);
        rc |= LIT(b, ",\"logprobs\":null,\"finish_reason\":null");
    }
    if (c->azure) {
        rc |= LIT(b, ",");
        rc |= LIT(b, FILTER_CHOICE);
    }
    rc |= LIT(b, "}");
    rc |= chunk_close(b, c);
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_event_finish(struct sl_buf *b, struct sl_sim_call *c, size_t choice)
{
    int rc = chunk_open(b, c);
    const char *why = sl_sim_finish_name(c->plans[choice].finish);
    if (c->r.op == SL_SIM_OP_CHAT) {
        rc |= num(b, "{\"index\":", choice);
        rc |= LIT(b, ",\"delta\":{},\"logprobs\":null,\"finish_reason\":\"");
    } else {
        rc |= num(b, "{\"text\":\"\",\"index\":", choice);
        rc |= LIT(b, ",\"logprobs\":null,\"finish_reason\":\"");
    }
    rc |= sl_buf_append(b, why, strlen(why));
    rc |= LIT(b, "\"");
    if (c->azure)
        rc |= LIT(b, ",\"content_filter_results\":{}");
    rc |= LIT(b, "}");
    rc |= chunk_close(b, c);
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_event_usage(struct sl_buf *b, struct sl_sim_call *c)
{
    int rc = LIT(b, "data: ");
    rc |= envelope(b, c, c->r.op == SL_SIM_OP_CHAT ? "chat.completion.chunk" : "text_completion");
    rc |= LIT(b, ",\"choices\":[],");
    rc |= usage_chat(b, c);
    rc |= LIT(b, "}\n\n");
    return rc ? SL_ENOMEM : SL_OK;
}

static int event_open(struct sl_buf *b, const char *type, uint64_t seq)
{
    size_t tl = strlen(type);
    int rc = LIT(b, "event: ");
    rc |= sl_buf_append(b, type, tl);
    rc |= LIT(b, "\ndata: {\"type\":\"");
    rc |= sl_buf_append(b, type, tl);
    return rc | num(b, "\",\"sequence_number\":", seq);
}

static int item_ref(struct sl_buf *b, struct sl_sim_call *c)
{
    int rc = LIT(b, ",\"item_id\":\"");
    rc |= sl_buf_append(b, c->item_id, strlen(c->item_id));
    return rc | LIT(b, "\",\"output_index\":0,\"content_index\":0");
}

int sl_sim_event_response_start(struct sl_buf *b, struct sl_sim_call *c, uint32_t step,
                                uint64_t seq)
{
    int rc = 0;
    switch (step) {
    case 0:
    case 1:
        rc |= event_open(b, step == 0 ? "response.created" : "response.in_progress", seq);
        rc |= LIT(b, ",\"response\":");
        rc |= sl_sim_render_response(b, c, true);
        break;
    case 2:
        rc |= event_open(b, "response.output_item.added", seq);
        rc |= LIT(b, ",\"output_index\":0,\"item\":");
        rc |= response_message(b, c, SL_STR(""), "in_progress", false);
        break;
    default:
        rc |= event_open(b, "response.content_part.added", seq);
        rc |= item_ref(b, c);
        rc |= LIT(b, ",\"part\":{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],"
                     "\"text\":\"\"}");
        break;
    }
    rc |= LIT(b, "}\n\n");
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_event_response_delta(struct sl_buf *b, struct sl_sim_call *c, struct sl_str text,
                                uint64_t seq)
{
    int rc = event_open(b, "response.output_text.delta", seq);
    rc |= item_ref(b, c);
    rc |= LIT(b, ",\"delta\":");
    rc |= quoted(b, text);
    rc |= LIT(b, ",\"logprobs\":[]}\n\n");
    return rc ? SL_ENOMEM : SL_OK;
}

int sl_sim_event_response_end(struct sl_buf *b, struct sl_sim_call *c, uint32_t step, uint64_t seq)
{
    char text[SL_SIM_TEXT_MAX];
    struct sl_sim_plan plan;
    sl_sim_plan(sl_sim_choice_seed(c, 0, 0), c->max_tokens, c->r.stops, c->r.n_stops, &plan, text);
    struct sl_str t = {text, plan.bytes};
    const char *status = plan.finish == SL_SIM_FINISH_LENGTH ? "incomplete" : "completed";
    int rc = 0;
    switch (step) {
    case 0:
        rc |= event_open(b, "response.output_text.done", seq);
        rc |= item_ref(b, c);
        rc |= LIT(b, ",\"text\":");
        rc |= quoted(b, t);
        rc |= LIT(b, ",\"logprobs\":[]");
        break;
    case 1:
        rc |= event_open(b, "response.content_part.done", seq);
        rc |= item_ref(b, c);
        rc |= LIT(b, ",\"part\":{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],"
                     "\"text\":");
        rc |= quoted(b, t);
        rc |= LIT(b, "}");
        break;
    case 2:
        rc |= event_open(b, "response.output_item.done", seq);
        rc |= LIT(b, ",\"output_index\":0,\"item\":");
        rc |= response_message(b, c, t, status, true);
        break;
    default:
        rc |= event_open(
            b, plan.finish == SL_SIM_FINISH_LENGTH ? "response.incomplete" : "response.completed",
            seq);
        rc |= LIT(b, ",\"response\":");
        rc |= sl_sim_render_response(b, c, false);
        break;
    }
    rc |= LIT(b, "}\n\n");
    return rc ? SL_ENOMEM : SL_OK;
}
