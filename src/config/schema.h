/*
 * The configuration schema: a table of fields, each declared once with its
 * YAML key, type, default, bounds, doc string and place in the struct it
 * fills. Private to the config subsystem (and its tests).
 *
 * The loader (load.c) walks a YAML tree against a schema; the reference
 * writer (reference.c) turns the same schema into docs/config.md. A list of
 * mappings (e.g. `backends:`) is a field of type SL_CFG_OBJECT_LIST whose
 * `sub` schema describes one element, so new list sections need no new code.
 */
#ifndef SL_CONFIG_SCHEMA_H
#define SL_CONFIG_SCHEMA_H

#include <stddef.h>

#include "config/config.h"

enum sl_cfg_type {
    SL_CFG_BOOL,        /* bool */
    SL_CFG_INT,         /* unsigned integer member of width 1, 2, 4 or 8 bytes */
    SL_CFG_SIZE,        /* bytes; stored like SL_CFG_INT */
    SL_CFG_DURATION,    /* milliseconds; stored like SL_CFG_INT */
    SL_CFG_RATIO,       /* 0..1 as "0.25" or "25%"; uint32_t parts per million (1000000 = 1) */
    SL_CFG_MONEY,       /* an amount like "12.50" (USD); uint64_t millionths (12500000) */
    SL_CFG_ENUM,        /* int-sized enum, one of `choices` */
    SL_CFG_STRING,      /* char *, owned by the struct; bounds apply to the length */
    SL_CFG_STRING_LIST, /* char ** plus a size_t count, all owned; bounds: count; none empty */
    SL_CFG_ADDR,        /* struct sl_config_addr */
    SL_CFG_ADDR_LIST,   /* struct sl_config_addr * plus a size_t count; bounds: count */
    SL_CFG_OBJECT_LIST, /* array of sub->size-byte structs plus a size_t count; bounds: count */
};

/* One allowed value of an SL_CFG_ENUM field. */
struct sl_cfg_choice {
    const char *name; /* static */
    int value;
};

struct sl_cfg_schema;

/*
 * One field. Every pointer is to static data. Dotted names make sections:
 * "limits.max_body_bytes" is key max_body_bytes in the mapping under limits.
 */
struct sl_cfg_field {
    const char *name;
    enum sl_cfg_type type;
    /* Default as it would be written in YAML, parsed by the same code as a
     * value from the file. NULL: no default (an empty list for lists, NULL
     * for a string: "not set"). */
    const char *def;
    bool required; /* the key must be present (only sensible without a default) */
    uint64_t min, max;
    const char *doc;
    size_t offset, width;                /* member position and size in the struct */
    size_t count_offset;                 /* lists: the size_t element count */
    const struct sl_cfg_choice *choices; /* SL_CFG_ENUM: ends with {NULL, 0} */
    const struct sl_cfg_schema *sub;     /* SL_CFG_OBJECT_LIST: one element */
    /* SL_CFG_STRING, and each element of SL_CFG_STRING_LIST: what the value
     * must look like beyond its length, checked at the value's place. May
     * normalise text by shortening it. 0, or SL_EINVAL with the reason in
     * why (never quoting a value that may be a secret). NULL: anything. */
    int (*check)(struct sl_buf *text, struct sl_buf *why);
    /* The reference lists the field under this section instead of the one
     * its name implies; NULL for that one. */
    const char *section;
};

#define SL_CFG_MEMBER(type, member)                                                                \
    .offset = offsetof(type, member), .width = sizeof(((type *)0)->member)
#define SL_CFG_COUNT(type, member) .count_offset = offsetof(type, member)
#define SL_CFG_UNBOUNDED .min = 0, .max = UINT64_MAX

/* A heading in the reference; fields belong to the section named by their
 * name up to the last dot ("" for top-level keys). All pointers static. */
struct sl_cfg_section {
    const char *name;
    const char *title;
    const char *doc;
};

struct sl_cfg_check;

/* A struct described field by field. All pointers static. */
struct sl_cfg_schema {
    const struct sl_cfg_field *fields;
    size_t n_fields;
    const struct sl_cfg_section *sections;
    size_t n_sections;
    size_t size; /* sizeof the struct the offsets refer to */
    /* Lists of this schema: a SL_CFG_STRING field whose value must differ
     * between elements (e.g. "name"); NULL for none. */
    const char *unique;
    /* Cross-field checks and derived values, run after every field is set;
     * problems are reported with sl_cfg_check_error. May be NULL. */
    void (*finish)(void *obj, struct sl_cfg_check *chk);
    /* Frees what finish derived (members that are not fields); run by
     * sl_cfg_dispose_fields before the fields are freed. May be NULL. */
    void (*dispose)(void *obj);
    /* Lists of this schema: introduces the table of one entry's keys in the
     * reference. May be NULL. */
    const char *doc;
};

/* The schema of struct sl_config (schema.c). */
extern const struct sl_cfg_schema sl_config_schema;

/* The `simulator:` section (schema_sim.c): one entry of simulator.endpoints,
 * the section's doc, and the checks that need the whole configuration
 * (endpoint listeners against the gateway's and each other's), run by
 * sl_config_schema's finish. */
extern const struct sl_cfg_schema sl_cfg_sim_endpoint_schema;
extern const char sl_cfg_sim_doc[];
void sl_cfg_sim_check_listeners(const struct sl_config *c, struct sl_cfg_check *chk);

/* The gateway's sections (schema_gateway.c): one entry of `backends`,
 * `routes` and `clients`; the doc of the section holding them; the checks
 * across them (routes to backends, keys across clients) and the route
 * index, run by sl_config_schema's finish; and freeing that index. */
extern const struct sl_cfg_schema sl_cfg_backend_schema;
extern const struct sl_cfg_schema sl_cfg_route_schema;
extern const struct sl_cfg_schema sl_cfg_client_schema;
extern const char sl_cfg_gateway_doc[];
void sl_cfg_gateway_finish(struct sl_config *c, struct sl_cfg_check *chk);
void sl_cfg_gateway_dispose(struct sl_config *c);

/* The clients' side (schema_clients.c): one entry of `clients`, `jwt_issuers` and `prices`,
 * and the checks across lists that concern clients (keys, grants, limits, issuers,
 * budgets), run by sl_cfg_gateway_finish after the routes are resolved. */
extern const struct sl_cfg_schema sl_cfg_jwt_issuer_schema;
extern const struct sl_cfg_schema sl_cfg_price_schema;
void sl_cfg_clients_finish(struct sl_config *c, struct sl_cfg_check *chk);

/* `caps.max_tokens_mode` choices (schema_clients.c). */
extern const struct sl_cfg_choice sl_cfg_cap_modes[];

/*
 * The `caps` rows of a struct that has a `struct sl_config_caps caps` member
 * (clients and routes): the same keys, documented once.
 */
#define CAPS_FIELDS(T)                                                                             \
    {                                                                                              \
        .name = "caps.max_tokens",                                                                 \
        .type = SL_CFG_INT,                                                                        \
        .def = "0",                                                                                \
        .min = 0,                                                                                  \
        .max = 10000000,                                                                           \
        .doc = "The most output tokens a request may ask for, in `max_tokens`, "                   \
               "`max_completion_tokens` or `max_output_tokens`. What happens to a request "        \
               "asking more is `max_tokens_mode`'s choice. `0`: no cap.",                          \
        SL_CFG_MEMBER(T, caps.max_tokens),                                                         \
    },                                                                                             \
        {                                                                                          \
            .name = "caps.max_tokens_mode",                                                        \
            .type = SL_CFG_ENUM,                                                                   \
            .def = "clamp",                                                                        \
            SL_CFG_UNBOUNDED,                                                                      \
            .doc = "`clamp`: a request asking for more than `max_tokens` is sent with the cap "    \
                   "instead (the body is rewritten; every other field is kept). `reject`: it is "  \
                   "answered 400, naming the parameter and the cap.",                              \
            SL_CFG_MEMBER(T, caps.max_tokens_mode),                                                \
            .choices = sl_cfg_cap_modes,                                                           \
        },                                                                                         \
        {                                                                                          \
            .name = "caps.default_max_tokens",                                                     \
            .type = SL_CFG_INT,                                                                    \
            .def = "0",                                                                            \
            .min = 0,                                                                              \
            .max = 10000000,                                                                       \
            .doc =                                                                                 \
                "Set as `max_tokens` (`max_output_tokens` on the Responses API) on chat, "         \
                "completion and response requests that set none, so that rate limits charge "      \
                "what a request can really use rather than the model's maximum. `0`: none set.",   \
            SL_CFG_MEMBER(T, caps.default_max_tokens),                                             \
        },                                                                                         \
        {                                                                                          \
            .name = "caps.max_n",                                                                  \
            .type = SL_CFG_INT,                                                                    \
            .def = "0",                                                                            \
            .min = 0,                                                                              \
            .max = 128,                                                                            \
            .doc = "The most choices (`n`) a request may ask for; more is answered 400. `0`: no "  \
                   "cap.",                                                                         \
            SL_CFG_MEMBER(T, caps.max_n),                                                          \
        },                                                                                         \
        {                                                                                          \
            .name = "caps.max_best_of",                                                            \
            .type = SL_CFG_INT,                                                                    \
            .def = "0",                                                                            \
            .min = 0,                                                                              \
            .max = 128,                                                                            \
            .doc = "The largest `best_of` (legacy completions) a request may ask for; more is "    \
                   "answered 400. `0`: no cap.",                                                   \
            SL_CFG_MEMBER(T, caps.max_best_of),                                                    \
        },                                                                                         \
        {                                                                                          \
            .name = "caps.max_top_logprobs",                                                       \
            .type = SL_CFG_INT,                                                                    \
            .def = "0",                                                                            \
            .min = 0,                                                                              \
            .max = 20,                                                                             \
            .doc =                                                                                 \
                "The largest `top_logprobs` (chat) or `logprobs` (legacy completions) a request "  \
                "may ask for; more is answered 400. `0`: no cap.",                                 \
            SL_CFG_MEMBER(T, caps.max_top_logprobs),                                               \
        },                                                                                         \
        {                                                                                          \
            .name = "caps.max_prompt_bytes",                                                       \
            .type = SL_CFG_SIZE,                                                                   \
            .def = "0",                                                                            \
            .min = 0,                                                                              \
            .max = 1ull << 30,                                                                     \
            .doc =                                                                                 \
                "The largest request body, prompt included; a larger one is answered 413. `0`: "   \
                "only `limits.max_body_bytes` applies.",                                           \
            SL_CFG_MEMBER(T, caps.max_prompt_bytes),                                               \
        },                                                                                         \
        {                                                                                          \
            .name = "caps.forbid",                                                                 \
            .type = SL_CFG_STRING_LIST,                                                            \
            .min = 0,                                                                              \
            .max = 64,                                                                             \
            .doc =                                                                                 \
                "Body parameters a request must not use, e.g. `[logit_bias, tools]`; a request "   \
                "with one is answered 400 naming it.",                                             \
            SL_CFG_MEMBER(T, caps.forbid),                                                         \
            SL_CFG_COUNT(T, caps.n_forbid),                                                        \
            .check = sl_cfg_check_name,                                                            \
        },                                                                                         \
    {                                                                                              \
        .name = "caps.allow", .type = SL_CFG_STRING_LIST, .min = 0, .max = 128,                    \
        .doc = "When given, the only body parameters a request may use (`model` is always "        \
               "allowed); any other is answered 400 naming it.",                                   \
        SL_CFG_MEMBER(T, caps.allow), SL_CFG_COUNT(T, caps.n_allow), .check = sl_cfg_check_name,   \
    }

/* ---- checks on single values of the gateway's sections (checks.c) ---- */
/* Letters, digits, '.', '_' and '-', neither "." alone nor with "..". */
bool sl_cfg_name_ok(struct sl_str s);
int sl_cfg_hex_value(char c); /* of a lowercase hex digit */
/* Where the authority of URL s starts (after "http://" or "https://"); 0 for another scheme. */
size_t sl_cfg_url_authority(struct sl_str s);
int sl_cfg_check_route_name(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_name(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_api_version(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_api_key(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_text(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_url(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_hashed_key(struct sl_buf *text, struct sl_buf *why);
int sl_cfg_check_ca_file(struct sl_buf *text, struct sl_buf *why);
/* "10.0.0.0/8", "2001:db8::/32" or a single address. */
int sl_cfg_check_cidr(struct sl_buf *text, struct sl_buf *why);
/* Parse a checked CIDR: the address family's bytes (4 or 16) and the prefix length. */
int sl_cfg_parse_cidr(const char *s, unsigned char addr[16], int *family, unsigned *bits);

/* ---- used by finish callbacks (implemented in load.c) ---- */
/* True when field `name` was given in the file (not defaulted). */
bool sl_cfg_check_in_file(const struct sl_cfg_check *chk, const char *name);
/* True when field `name` holds a valid value (its default or the file's). */
bool sl_cfg_check_usable(const struct sl_cfg_check *chk, const char *name);
/* An allocation failed: the load fails with SL_ENOMEM. */
void sl_cfg_check_nomem(struct sl_cfg_check *chk);
/* Report a problem at field `name`'s value in the file, or at the object
 * when the field was defaulted. */
void sl_cfg_check_error(struct sl_cfg_check *chk, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for field `name` of entry i of this object's list-of-mappings
 * field `list` (only meaningful when `list` is usable): at that field's
 * value, or at the entry when the field was defaulted. */
void sl_cfg_check_error_in(struct sl_cfg_check *chk, const char *list, size_t i, const char *name,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same for element elem of that entry's list-of-values field `name`:
 * at the element when the file wrote a list, else at the field. */
void sl_cfg_check_error_in_elem(struct sl_cfg_check *chk, const char *list, size_t i,
                                const char *name, size_t elem, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* ---- generic loading, for any schema (load.c) ---- */
/*
 * Fill obj (schema->size bytes, zeroed by the caller) from YAML text. On
 * success returns 0; otherwise SL_EINVAL (or SL_ENOMEM) with every problem
 * appended to errs. Either way obj holds owned values afterwards: release
 * them with sl_cfg_dispose_fields.
 */
int sl_cfg_load_schema(const struct sl_cfg_schema *schema, const char *name, const char *data,
                       size_t len, void *obj, struct sl_config_errors *errs);
/* Free what obj's fields own (strings, lists); obj itself is the caller's. */
void sl_cfg_dispose_fields(const struct sl_cfg_schema *schema, void *obj);

/* ---- value parsers (types.c): 0, or SL_EINVAL with the reason in why ---- */
int sl_cfg_parse_bool(struct sl_str s, bool *out, struct sl_buf *why);
int sl_cfg_parse_int(struct sl_str s, uint64_t *out, struct sl_buf *why);
int sl_cfg_parse_size(struct sl_str s, uint64_t *out, struct sl_buf *why);
int sl_cfg_parse_duration(struct sl_str s, uint64_t *out, struct sl_buf *why);
/* "0.25", "1", ".5" or "25%" into parts per million; more precise values are
 * rounded to the nearest millionth, but one that would round to 0 is refused. */
int sl_cfg_parse_ratio(struct sl_str s, uint64_t *out, struct sl_buf *why);
/* "12.50", "0.000150" or "3" into millionths; at most 6 decimal places, not negative. */
int sl_cfg_parse_money(struct sl_str s, uint64_t *out, struct sl_buf *why);
int sl_cfg_parse_enum(struct sl_str s, const struct sl_cfg_choice *choices, int *out,
                      struct sl_buf *why);
int sl_cfg_parse_addr(struct sl_str s, struct sl_config_addr *out, struct sl_buf *why);
/* Append v as it would be written for a field of type t ("16KiB", "10s", "256",
 * "0.05" for a ratio of 50000 ppm). */
int sl_cfg_format_value(enum sl_cfg_type t, uint64_t v, struct sl_buf *out);
/* Append s in double quotes, escaped, cut after 64 bytes ("...") for messages. */
int sl_cfg_quote(struct sl_buf *out, struct sl_str s);
/* The closest of n candidates to word (edit distance, ignoring case), or NULL
 * when none is near enough to be a likely typo. */
const char *sl_cfg_suggest(struct sl_str word, const char *const *candidates, size_t n);
/* True when a and b could not both be bound (same address, or a wildcard
 * host and the same port). */
bool sl_cfg_addr_overlaps(const struct sl_config_addr *a, const struct sl_config_addr *b);

/* ---- reference (reference.c) ---- */
/* Append the Markdown tables for every section of schema. */
int sl_cfg_write_schema_reference(const struct sl_cfg_schema *schema, struct sl_buf *out);

#endif
