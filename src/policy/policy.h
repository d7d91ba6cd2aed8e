/*
 * policy: what one request may ask for. Applies a client's and a route's
 * caps (struct sl_config_caps; the stricter of the two wins) to a request's
 * JSON body: clamps or refuses max tokens, inserts a default, refuses `n`,
 * `best_of`, `top_logprobs`/`logprobs` over their caps, forbidden or
 * unlisted parameters, and oversized bodies; and estimates the tokens a
 * request can use, for rate limits and budgets.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include <jansson.h>

#include "config/config.h"

/* What kind of call a body belongs to: decides which max-tokens field applies. */
enum sl_policy_call {
    SL_POLICY_CHAT,        /* chat/completions: max_tokens or max_completion_tokens */
    SL_POLICY_COMPLETIONS, /* completions: max_tokens */
    SL_POLICY_RESPONSES,   /* responses: max_output_tokens */
    SL_POLICY_OTHER,       /* embeddings, images, files, threads...: no max-tokens field */
};
/* From the path after the deployment or the v1 prefix ("chat/completions", "responses"...). */
enum sl_policy_call sl_policy_call_of(struct sl_str rest);

/* Why a request was refused: the HTTP status (400 or 413), and a message naming the
 * parameter and the cap (never the client's other values). */
struct sl_policy_refusal {
    int status;
    char message[256];
};

/*
 * Apply the caps to doc (a JSON object; modified in place when clamping or
 * inserting a default: *changed is then set, and the caller re-serialises
 * it). body_len is the size of the body as sent. Either caps may be NULL.
 * Returns SL_OK, or SL_EPERM with *refusal filled.
 */
int sl_policy_apply(const struct sl_config_caps *client, const struct sl_config_caps *route,
                    enum sl_policy_call call, json_t *doc, size_t body_len, bool *changed,
                    struct sl_policy_refusal *refusal);

/* True when the caps could change or refuse a body of this call (the body must be parsed). */
bool sl_policy_applies(const struct sl_config_caps *client, const struct sl_config_caps *route,
                       enum sl_policy_call call);

/*
 * The tokens a request can use at most, for admission: a prompt estimate
 * (the body's text at about 4 bytes a token; body_len / 4 when doc is NULL)
 * plus its max tokens (times `n`) when it sets them, else plus
 * SL_POLICY_UNKNOWN_OUTPUT_TOKENS. Corrected later by the usage the backend reports.
 */
#define SL_POLICY_UNKNOWN_OUTPUT_TOKENS 256
uint64_t sl_policy_estimate_tokens(const json_t *doc, enum sl_policy_call call, size_t body_len);

#endif
