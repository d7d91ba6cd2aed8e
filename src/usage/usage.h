/*
 * usage: the tokens a request used, as its backend reports them: the
 * `usage` object of a JSON answer, or of a stream's last chunk (chat
 * completions with stream_options.include_usage, and the Responses API's
 * response.completed event). The scanner sees the answer's bytes as they
 * go to the client and copies only the usage object itself.
 */
#ifndef SL_USAGE_H
#define SL_USAGE_H

#include "core/core.h"

/* Token counts of one answer. */
struct sl_usage {
    uint64_t prompt;     /* prompt_tokens / input_tokens */
    uint64_t cached;     /* prompt_tokens_details.cached_tokens / input_tokens_details... */
    uint64_t completion; /* completion_tokens / output_tokens (reasoning included) */
    uint64_t reasoning;  /* completion_tokens_details.reasoning_tokens / output_tokens_details */
    uint64_t total;      /* total_tokens, or prompt + completion */
    bool found;          /* a usage object was read; otherwise the counts are 0 */
};

/*
 * The usage in text: either a usage object itself ("{...}") or text that
 * holds `"usage": {...}` (the last complete one counts). Counts that are
 * not integers from 0 to 2^40, or that contradict each other (cached >
 * prompt, reasoning > completion, total < prompt + completion), make it not
 * found: a malformed or absurd usage is not trusted (the caller estimates).
 */
struct sl_usage sl_usage_parse(struct sl_str text);

/* The longest usage object the scanner captures (with every details field: ~500 bytes). */
#define SL_USAGE_CAPTURE_BYTES 1024

/*
 * Follows one answer's bytes as they pass (split anywhere). It keeps a few
 * bytes to find a `"usage":{` split between two chunks, and allocates only
 * when a usage object starts: it then captures that object (the last one
 * wins). Lives in the request; dispose frees the capture.
 */
struct sl_usage_scanner {
    char carry[16]; /* the last bytes of the previous chunk */
    size_t carry_len;
    char *capture; /* malloc'd SL_USAGE_CAPTURE_BYTES once a usage object starts; NULL before */
    size_t capture_len;
    int depth;      /* braces open in the object being captured; 0: not capturing */
    bool in_string; /* inside a JSON string of the captured object */
    bool escaped;   /* after a backslash in that string */
    bool complete;  /* the last capture ended with its closing brace */
    uint64_t bytes; /* seen in all */
};
void sl_usage_scanner_init(struct sl_usage_scanner *s);
void sl_usage_scanner_feed(struct sl_usage_scanner *s, const char *bytes, size_t len);
/* The usage of what was fed (found only for a complete object that sl_usage_parse accepts). */
struct sl_usage sl_usage_scanner_result(const struct sl_usage_scanner *s);
void sl_usage_scanner_dispose(struct sl_usage_scanner *s);

struct sl_config;
/* What u cost on model, in millionths of USD, from cfg's `prices` (cached prompt tokens at
 * the cached price, the rest of the prompt at the input price, completion at the output
 * price); 0 when the model has no price. */
uint64_t sl_usage_cost(const struct sl_config *cfg, const char *model, const struct sl_usage *u);

#endif
