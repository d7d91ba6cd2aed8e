/*
 * Private to the simulator (and its unit tests and fuzz target): the pure
 * pieces (hashing, token counting, text and embedding generation, request
 * parsing, quota windows, fault rules) and the shared state behind
 * struct sl_sim.
 */
#ifndef SL_SIM_INTERNAL_H
#define SL_SIM_INTERNAL_H

#include <stdatomic.h>

#include "sim/sim.h"

/* Append a string literal ("" lit refuses anything else at compile time). */
#define SL_SIM_LIT(b, lit) sl_buf_append((b), "" lit, sizeof(lit) - 1)
/* Append a NUL-terminated string. */
#define SL_SIM_CSTR(b, s) sl_buf_append_str((b), sl_str_from_cstr(s))

/* ---- hashing and deterministic pseudo-random numbers (rand.c) ---- */
uint64_t sl_sim_mix(uint64_t a, uint64_t b);
uint64_t sl_sim_hash(uint64_t seed, const void *data, size_t len);
static inline uint64_t sl_sim_hash_str(uint64_t seed, struct sl_str s)
{
    return sl_sim_hash(seed, s.base, s.len);
}
/* splitmix64: advances *state, returns the next value. */
uint64_t sl_sim_rand(uint64_t *state);
/* A uniform value in [0, n) (n > 0). */
uint64_t sl_sim_rand_below(uint64_t *state, uint64_t n);
/* A seed that differs on every call (ids, timing jitter): from the request-id source. */
uint64_t sl_sim_random_seed(void);
/* A fresh random id: prefix then n characters from base62 (or lowercase hex),
 * NUL-terminated; out must hold strlen(prefix) + n + 1 bytes. */
void sl_sim_id_new(char *out, const char *prefix, size_t n, bool hex);
/* A random UUID (8-4-4-4-12 lowercase hex), out >= 37 bytes. */
void sl_sim_uuid_new(char *out);

/* ---- token counting ----
 * The documented approximation: a string costs ceil(bytes / 4) tokens; see
 * parse.c for how messages, prompts and inputs add up. */
static inline uint64_t sl_sim_tokens_for_bytes(size_t bytes)
{
    return ((uint64_t)bytes + 3) / 4;
}
#define SL_SIM_TOKENS_PER_MESSAGE 3 /* role and delimiters of each chat message */
#define SL_SIM_TOKENS_REPLY_PRIMING 3
#define SL_SIM_TOKENS_PER_NAME 1
#define SL_SIM_TOKENS_PER_IMAGE 85 /* a low-detail image part */

/* ---- generated text (text.c) ----
 * A token is one word with its leading space (none for the first) and any
 * punctuation, so counts are exact. Natural answers are 16..159 tokens. */
#define SL_SIM_TOKEN_MAX 24
#define SL_SIM_GEN_MIN_TOKENS 16
#define SL_SIM_GEN_MAX_TOKENS 160
#define SL_SIM_TEXT_MAX (SL_SIM_GEN_MAX_TOKENS * SL_SIM_TOKEN_MAX)

struct sl_sim_gen {
    uint64_t rng;
    uint32_t emitted;       /* tokens produced so far */
    uint32_t length;        /* natural length in tokens */
    uint32_t sentence_left; /* words left in the current sentence */
};
void sl_sim_gen_init(struct sl_sim_gen *g, uint64_t seed);
/* Writes the next token to out (SL_SIM_TOKEN_MAX bytes); returns its length,
 * 0 after the natural end. */
size_t sl_sim_gen_next(struct sl_sim_gen *g, char *out);

enum sl_sim_finish {
    SL_SIM_FINISH_STOP,   /* natural end or a stop sequence */
    SL_SIM_FINISH_LENGTH, /* cut by max_tokens */
};
/* What one choice emits: the first `tokens` tokens of the generator, the
 * whole text cut to `bytes` bytes (a stop sequence may end it mid-token). */
struct sl_sim_plan {
    uint32_t tokens;
    uint32_t bytes;
    enum sl_sim_finish finish;
};
/* Plans (and writes to text, SL_SIM_TEXT_MAX bytes, when not NULL) the answer
 * for seed: honours max_tokens (0 = none) and the stop sequences (cut before
 * the earliest occurrence of any of them). */
void sl_sim_plan(uint64_t seed, uint64_t max_tokens, const struct sl_str *stops, size_t n_stops,
                 struct sl_sim_plan *plan, char *text);
const char *sl_sim_finish_name(enum sl_sim_finish f);

/* ---- embeddings (embed.c) ---- */
/* The unit-norm vector for seed: dims float32 values; a shorter dims gives
 * the renormalised prefix of a longer one (as text-embedding-3 does). */
void sl_sim_embed(uint64_t seed, size_t dims, float *out);
/* Append the vector as a JSON array / as base64 of little-endian float32. */
int sl_sim_append_floats(struct sl_buf *b, const float *v, size_t n);
int sl_sim_append_base64_floats(struct sl_buf *b, const float *v, size_t n);

/* ---- parsed request bodies (parse.c) ---- */
enum sl_sim_op {
    SL_SIM_OP_CHAT,
    SL_SIM_OP_COMPLETIONS,
    SL_SIM_OP_EMBEDDINGS,
    SL_SIM_OP_RESPONSES,
};
#define SL_SIM_MAX_STOPS 4
#define SL_SIM_MAX_N 128
#define SL_SIM_MAX_INPUTS 2048

/* An inference request as the simulator needs it. Every pointer is into the
 * arena given to the parser (the JSON document is gone after parsing). */
struct sl_sim_req {
    enum sl_sim_op op;
    struct sl_str model; /* body "model"; empty when absent */
    bool stream;
    bool include_usage;  /* stream_options.include_usage */
    uint32_t n;          /* choices per prompt, 1..128 */
    uint64_t max_tokens; /* max_tokens / max_completion_tokens / max_output_tokens; 0 = none */
    struct sl_str stops[SL_SIM_MAX_STOPS];
    size_t n_stops;
    uint64_t prompt_tokens;
    /* One hash per prompt (chat and responses: one; completions: each prompt;
     * embeddings: each input): seeds generated content. */
    uint64_t *hashes;
    size_t n_hashes;
    bool base64;                        /* embeddings: encoding_format "base64" */
    uint64_t dimensions;                /* embeddings: requested length; 0 = the deployment's */
    struct sl_str previous_response_id; /* responses */
    struct sl_str instructions;         /* responses */
    bool store;                         /* responses: keep for retrieval (default true) */
};

/* Why a body was refused, in OpenAI's error terms. */
struct sl_sim_parse_error {
    int status;       /* 400 */
    const char *code; /* static; NULL for none */
    char param[64];   /* "" for none */
    char message[512];
};

/* Parse and validate a request body for op. Returns 0, or SL_EINVAL with err
 * filled in. Pure: no state besides the arena. */
int sl_sim_parse_request(enum sl_sim_op op, struct sl_str body, struct sl_arena *arena,
                         struct sl_sim_req *out, struct sl_sim_parse_error *err);

/* ---- quota windows (quota.c) ----
 * A window of n buckets of bucket_ms each; an amount added at time t counts
 * until the bucket holding t leaves the window, (t / bucket_ms + n) * bucket_ms. */
#define SL_SIM_WINDOW_MAX 60
struct sl_sim_window {
    uint64_t bucket_ms;
    uint32_t n;
    uint64_t head; /* absolute index (t / bucket_ms) of the newest bucket */
    uint64_t total;
    uint64_t v[SL_SIM_WINDOW_MAX]; /* v[index % n] */
};
void sl_sim_window_init(struct sl_sim_window *w, uint32_t n, uint64_t bucket_ms);
void sl_sim_window_clear(struct sl_sim_window *w);
/* The total inside the window at now_ms. */
uint64_t sl_sim_window_total(struct sl_sim_window *w, uint64_t now_ms);
void sl_sim_window_add(struct sl_sim_window *w, uint64_t now_ms, uint64_t amount);
/* Milliseconds from now_ms until the total is at most target (0 if already). */
uint64_t sl_sim_window_wait_ms(struct sl_sim_window *w, uint64_t now_ms, uint64_t target);

/* Per-deployment limits. Not locked: the caller holds the deployment's lock. */
struct sl_sim_quota {
    enum sl_sim_capacity capacity;
    uint64_t tpm;                     /* 0 = unlimited */
    uint64_t rpm;                     /* resolved; 0 = unlimited */
    uint64_t rps10;                   /* requests per 10 s slice: ceil(rpm / 6) */
    uint64_t ptu_tokens;              /* provisioned: tokens per second at 100% utilisation */
    struct sl_sim_window tokens;      /* standard: 60 x 1 s */
    struct sl_sim_window requests;    /* standard: 60 x 1 s */
    struct sl_sim_window slice;       /* standard: 1 x 10 s (fixed slices) */
    struct sl_sim_window utilisation; /* provisioned: 10 x 100 ms */
};
enum sl_sim_limit {
    SL_SIM_LIMIT_NONE,
    SL_SIM_LIMIT_TOKENS,
    SL_SIM_LIMIT_REQUESTS,
    SL_SIM_LIMIT_PROVISIONED,
};
struct sl_sim_admission {
    bool admitted;
    enum sl_sim_limit limit;     /* which limit refused (the tokens one when both) */
    uint64_t retry_after_ms;     /* when refused: a request then is admitted */
    uint64_t remaining_requests; /* after this request; UINT64_MAX = unlimited */
    uint64_t remaining_tokens;
    uint64_t used_tokens;       /* in the window, before this request */
    uint64_t utilisation_pct10; /* provisioned: per mille of capacity over the last second */
};
/* rpm 0 means the Azure default (6 per 1000 TPM, at least 1 when tpm > 0). */
void sl_sim_quota_init(struct sl_sim_quota *q, enum sl_sim_capacity capacity, uint64_t tpm,
                       uint64_t rpm);
void sl_sim_quota_clear(struct sl_sim_quota *q);
/* Admit one request charging `tokens` at now_ms (monotonic ms), or say when
 * it would be admitted. */
void sl_sim_quota_admit(struct sl_sim_quota *q, uint64_t now_ms, uint64_t tokens,
                        struct sl_sim_admission *out);

/* ---- fault rules (faults.c) ---- */
/* One rule with its use count. Owns deployment. */
struct sl_sim_rule {
    enum sl_sim_fault_kind kind;
    uint64_t status;
    uint64_t retry_after_ms;
    uint32_t probability_ppm;
    uint64_t count; /* 0 = unlimited */
    uint64_t used;
    char *deployment; /* NULL = any */
    uint64_t duration_ms;
    uint64_t after;
};
/* What a request is to suffer (kind NONE: nothing). */
struct sl_sim_fault {
    enum sl_sim_fault_kind kind;
    uint64_t status;
    uint64_t retry_after_ms;
    uint64_t duration_ms;
    uint64_t after;
};
#define SL_SIM_FAULT_KINDS (SL_SIM_FAULT_MALFORMED_JSON + 1)
const char *sl_sim_fault_kind_name(enum sl_sim_fault_kind k);
int sl_sim_fault_kind_parse(struct sl_str name, enum sl_sim_fault_kind *out);
/* The first applicable rule of rules[0..n): not used up, deployment matches,
 * probability roll (from *rng) hits; it is used once. Returns true and fills
 * out when one applied. */
bool sl_sim_rules_pick(struct sl_sim_rule *rules, size_t n, struct sl_str deployment, uint64_t *rng,
                       struct sl_sim_fault *out);
int sl_sim_rules_from_config(const struct sl_config_sim_fault *f, size_t n,
                             struct sl_sim_rule **out);
/* Parse a JSON array of rules (the control API). On SL_EINVAL, why is set. */
int sl_sim_rules_from_json(const char *json, size_t len, struct sl_str *endpoint,
                           struct sl_arena *arena, struct sl_sim_rule **out, size_t *n, char *why,
                           size_t why_len);
void sl_sim_rules_free(struct sl_sim_rule *rules, size_t n);
int sl_sim_rules_append_json(struct sl_buf *b, const struct sl_sim_rule *rules, size_t n);

/* ---- stored objects: responses, threads, assistants (store.c) ---- */
enum sl_sim_object {
    SL_SIM_OBJ_RESPONSE,
    SL_SIM_OBJ_THREAD,
    SL_SIM_OBJ_ASSISTANT,
};
#define SL_SIM_STORE_CAP 4096 /* per endpoint; the oldest is forgotten first */
struct sl_sim_store_entry;
/* Per endpoint, thread-safe. Owns its entries and their bodies. */
struct sl_sim_store {
    uv_mutex_t lock;
    struct sl_sim_store_entry *entries; /* ring of SL_SIM_STORE_CAP, allocated on first put */
    struct sl_sim_store_entry **buckets;
    size_t next; /* ring slot written next */
};
int sl_sim_store_init(struct sl_sim_store *s);
void sl_sim_store_dispose(struct sl_sim_store *s);
void sl_sim_store_clear(struct sl_sim_store *s);
/* Keep a copy of body under id; tokens is what a later request referring to
 * it adds to its prompt (responses: input + output tokens). */
int sl_sim_store_put(struct sl_sim_store *s, enum sl_sim_object kind, struct sl_str id,
                     struct sl_str body, uint64_t tokens);
/* Copy the body stored under id into the arena; SL_ENOTFOUND when unknown. */
int sl_sim_store_get(struct sl_sim_store *s, enum sl_sim_object kind, struct sl_str id,
                     struct sl_arena *arena, struct sl_str *body, uint64_t *tokens);
int sl_sim_store_delete(struct sl_sim_store *s, enum sl_sim_object kind, struct sl_str id);

/* ---- statistics (stats.c) ---- */
#define SL_SIM_STATUS_MIN 100
#define SL_SIM_STATUS_SLOTS 500 /* 100..599 */
/* Counters, updated with relaxed atomics from any worker. */
struct sl_sim_counters {
    _Atomic uint64_t requests;
    _Atomic uint64_t prompt_tokens;
    _Atomic uint64_t completion_tokens;
    _Atomic uint64_t streams_started;
    _Atomic uint64_t streams_completed;
    _Atomic uint64_t streams_cut;
    _Atomic uint64_t throttled;
    _Atomic uint64_t resets; /* connections reset or cut instead of answered */
    _Atomic uint64_t faults[SL_SIM_FAULT_KINDS];
    _Atomic uint64_t by_status[SL_SIM_STATUS_SLOTS];
};
void sl_sim_counters_clear(struct sl_sim_counters *c);
void sl_sim_count(_Atomic uint64_t *counter, uint64_t n);
void sl_sim_count_status(struct sl_sim_counters *c, int status);
int sl_sim_counters_append_json(struct sl_buf *b, const struct sl_sim_counters *c);

/* ---- answering a request (handler.c, render.c, reply.c, deliver.c, objects.c) ---- */

/* What a path names. */
enum sl_sim_target {
    SL_SIM_T_CHAT,
    SL_SIM_T_COMPLETIONS,
    SL_SIM_T_EMBEDDINGS,
    SL_SIM_T_RESPONSES,  /* create */
    SL_SIM_T_RESPONSE,   /* one, by id */
    SL_SIM_T_THREADS,    /* create */
    SL_SIM_T_THREAD,     /* one, by id */
    SL_SIM_T_ASSISTANTS, /* create */
    SL_SIM_T_ASSISTANT,  /* one, by id */
    SL_SIM_T_MODELS,     /* list */
    SL_SIM_T_MODEL,      /* one, by id */
};

/* Which API surface a path belongs to. */
enum sl_sim_surface {
    SL_SIM_SURFACE_DEPLOYMENT, /* /openai/deployments/{d}/...: deployment from the path */
    SL_SIM_SURFACE_RESOURCE,   /* /openai/{responses,threads,assistants,models} */
    SL_SIM_SURFACE_V1,         /* /openai/v1/... and /v1/...: model from the body */
};

/*
 * One request being answered, from routing to the last byte. Lives in the
 * request's arena; everything it points to outlives the request.
 */
struct sl_sim_call {
    struct sl_http_request *req;   /* borrowed until sl_http_finish/abort */
    struct sl_sim_endpoint *ep;    /* borrowed */
    struct sl_sim_deployment *dep; /* borrowed; NULL until resolved */
    enum sl_sim_surface surface;
    bool azure;                /* the endpoint's flavour is Azure */
    bool counted;              /* the request is in the stats already */
    struct sl_str api_version; /* the query's api-version, or "v1" */
    struct sl_sim_req r;
    uint64_t seed;          /* content seed, before mixing in each prompt and choice */
    uint64_t created;       /* unix seconds */
    uint64_t max_tokens;    /* per choice: the request's, else the deployment default; 0 = none */
    uint64_t prompt_tokens; /* r.prompt_tokens plus a previous response's tokens */
    char id[64];            /* chatcmpl-..., cmpl-..., resp_... */
    char item_id[64];       /* responses: the output message's id */
    struct sl_sim_admission adm;
    bool have_adm;
    struct sl_sim_fault fault;
    struct sl_sim_plan *plans; /* n_choices, in the arena */
    size_t n_choices;
    uint64_t completion_tokens;
};

/* Response headers assembled for one response; values live in store. */
struct sl_sim_headers {
    struct sl_http_header h[20];
    size_t n;
    char store[768];
    size_t used;
};
void sl_sim_headers_build(struct sl_sim_headers *hs, struct sl_sim_call *c, bool sse);
void sl_sim_headers_add(struct sl_sim_headers *hs, const char *name, struct sl_str value);

/* Seed of choice j of prompt p. */
uint64_t sl_sim_choice_seed(const struct sl_sim_call *c, size_t prompt, size_t j);
/* Plan every choice (fills c->plans, c->completion_tokens). */
int sl_sim_plan_choices(struct sl_sim_call *c);

/* Whole bodies (non-streaming). */
int sl_sim_render_chat(struct sl_buf *b, struct sl_sim_call *c);
int sl_sim_render_completions(struct sl_buf *b, struct sl_sim_call *c);
int sl_sim_render_embeddings(struct sl_buf *b, struct sl_sim_call *c);
/* A response object; in_progress renders the one of response.created. */
int sl_sim_render_response(struct sl_buf *b, struct sl_sim_call *c, bool in_progress);
/* The model name a deployment reports. */
struct sl_str sl_sim_model_name(const struct sl_sim_call *c);

/* Streaming events (SSE text, "data: ...\n\n" and for responses "event: ...\n"). */
int sl_sim_event_prompt_filter(struct sl_buf *b, struct sl_sim_call *c);
int sl_sim_event_role(struct sl_buf *b, struct sl_sim_call *c, size_t choice);
int sl_sim_event_token(struct sl_buf *b, struct sl_sim_call *c, size_t choice, struct sl_str text);
int sl_sim_event_finish(struct sl_buf *b, struct sl_sim_call *c, size_t choice);
int sl_sim_event_usage(struct sl_buf *b, struct sl_sim_call *c);
/* Responses streaming: event number `step` of the prelude (0..3) / the end (0..3). */
int sl_sim_event_response_start(struct sl_buf *b, struct sl_sim_call *c, uint32_t step,
                                uint64_t seq);
int sl_sim_event_response_delta(struct sl_buf *b, struct sl_sim_call *c, struct sl_str text,
                                uint64_t seq);
int sl_sim_event_response_end(struct sl_buf *b, struct sl_sim_call *c, uint32_t step, uint64_t seq);

/* Answer and release the request (each finishes it and records the status). */
void sl_sim_reply_body(struct sl_sim_call *c, int status, struct sl_str body);
/* {"error":{"code":...,"message":...}}: Azure's own errors (401, 404, 429, ...). */
void sl_sim_reply_azure_error(struct sl_sim_call *c, int status, const char *code,
                              const char *message);
/* {"error":{"message","type","param","code"}}: OpenAI's shape (validation errors everywhere). */
void sl_sim_reply_openai_error(struct sl_sim_call *c, int status, const char *message,
                               const char *type, const char *param, const char *code);
/* 429 with retry-after headers (retry_ms 0: none) and the flavour's wording. */
void sl_sim_reply_throttled(struct sl_sim_call *c, enum sl_sim_limit limit, uint64_t retry_ms);
/* A status fault: an error body of that status, shaped for the flavour. */
void sl_sim_reply_fault_status(struct sl_sim_call *c);
/* Close the connection instead of answering (reset: a TCP RST). */
void sl_sim_reply_reset(struct sl_sim_call *c);
/* Serve an admitted inference request: body or stream, delays and delivery faults (deliver.c). */
void sl_sim_reply_serve(struct sl_sim_call *c);
/* The counters a call counts in: its deployment's, or its endpoint's before one is known. */
struct sl_sim_counters *sl_sim_counters_of(struct sl_sim_call *c);
/* Count a request once, with its status (0: no status, the connection was cut). */
void sl_sim_record(struct sl_sim_call *c, int status);

/* 405 with an Allow header. */
void sl_sim_reply_method_not_allowed(struct sl_sim_call *c, const char *allow);

/* Threads, assistants, stored responses and models (objects.c): everything
 * but inference. The caller has checked the method. */
void sl_sim_serve_object(struct sl_sim_call *c, enum sl_sim_target target, struct sl_str id);

/* ---- the simulator's state (sim.c) ---- */
struct sl_sim_endpoint;

/* One simulated deployment: config (borrowed from the sim's config
 * reference), derived names, quota and counters. */
struct sl_sim_deployment {
    const struct sl_config_sim_deployment *cfg;
    struct sl_sim_endpoint *ep; /* borrowed: the owner */
    char *model_name;           /* owned: "gpt-4o-2024-08-06" (model-version) */
    char fingerprint[16];       /* "fp_" + 10 hex, stable per model and version */
    uv_mutex_t lock;            /* guards quota */
    bool lock_ready;
    struct sl_sim_quota quota;
    struct sl_sim_counters stats;
};

/* One simulated endpoint: the data of its site handler. */
struct sl_sim_endpoint {
    struct sl_sim *sim; /* borrowed: the owner */
    size_t index;
    const struct sl_config_sim_endpoint *cfg; /* borrowed from the sim's config reference */
    struct sl_sim_deployment *deployments;    /* owned, cfg->n_deployments */
    struct sl_sim_counters stats;             /* requests tied to no deployment */
    _Atomic uint64_t last_request_ms;         /* unix ms of the latest request, 0 = none */
    /* Fault rules: runtime ones (control API) are tried before config ones. */
    uv_mutex_t fault_lock;       /* guards the rules, their counts and fault_rng */
    bool locks_ready;            /* fault_lock and store are initialised */
    struct sl_sim_rule *runtime; /* owned, n_runtime */
    size_t n_runtime;
    struct sl_sim_rule *config_rules; /* owned copies with use counts, n_config_rules */
    size_t n_config_rules;
    uint64_t fault_rng;
    _Atomic bool has_rules; /* false: skip the lock on the request path */
    struct sl_sim_store store;
    _Atomic uint64_t refuse_until_ms; /* monotonic ms the "refuse" fault ends */
    _Atomic bool *listening;          /* owned, one per worker: its listener is open (refuse.c) */
    size_t n_workers;
};

/* The simulator. Owns the endpoints; holds one config reference. */
struct sl_sim {
    struct sl_config *cfg;
    struct sl_sim_endpoint *endpoints; /* owned, n_endpoints */
    size_t n_endpoints;
    struct sl_http_runner *runner; /* borrowed; NULL until attached */
    size_t first_site;
};

struct sl_sim_deployment *sl_sim_find_deployment(struct sl_sim_endpoint *ep, struct sl_str name);
/* Pick the fault for a request to deployment: true when a rule matched
 * (out->kind may still be NONE), false (and kind NONE) otherwise. */
bool sl_sim_pick_fault(struct sl_sim_endpoint *ep, struct sl_str deployment,
                       struct sl_sim_fault *out);
/* Restore an endpoint to its starting state (stats, quotas, rules, store). */
void sl_sim_endpoint_reset(struct sl_sim_endpoint *ep);
/* The "refuse" fault (refuse.c): stop listening on every worker for c->fault.duration_ms,
 * then reset the triggering request once no worker accepts connections any more. */
void sl_sim_refuse(struct sl_sim_call *c);

#endif
