/*
 * Reading the usage a backend reports. The numbers come from outside and
 * end up in bills, so nothing is trusted: a count that is not a plain
 * integer in range, or counts that contradict each other, make the whole
 * usage "not found" and the caller falls back to its estimate.
 *
 * Shapes read:
 *   chat, completions  {"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,
 *                       "prompt_tokens_details":{"cached_tokens":0},
 *                       "completion_tokens_details":{"reasoning_tokens":0}}
 *   responses          {"input_tokens":9,"output_tokens":12,"total_tokens":21,
 *                       "input_tokens_details":{"cached_tokens":0},
 *                       "output_tokens_details":{"reasoning_tokens":0}}
 *   embeddings         {"prompt_tokens":8,"total_tokens":8}
 */
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "usage/internal.h"

#define KEY "\"usage\""
#define KEY_LEN (sizeof(KEY) - 1)

/*
 * The first KEY in p[0..n). This runs over every byte of every answer, and JSON is full of
 * quotes, so with SSE2 (every x86-64) it tests 16 positions at once for the two bytes that
 * best tell the key apart: 'u' after a position and '"' six bytes on. memmem does the rest.
 */
static const char *find_key(const char *p, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128i u = _mm_set1_epi8('u'), quote = _mm_set1_epi8('"');
    for (; i + 16 + KEY_LEN - 1 <= n; i += 16) {
        __m128i second = _mm_loadu_si128((const __m128i *)(const void *)(p + i + 1));
        __m128i last = _mm_loadu_si128((const __m128i *)(const void *)(p + i + KEY_LEN - 1));
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(second, u), _mm_cmpeq_epi8(last, quote)));
        for (; m; m &= m - 1) {
            size_t at = i + (size_t)__builtin_ctz(m);
            if (memcmp(p + at, KEY, KEY_LEN) == 0)
                return p + at;
        }
    }
#endif
    return memmem(p + i, n - i, KEY, KEY_LEN);
}

/* No real answer comes near this; beyond it a count is garbage (and sums cannot overflow). */
#define MAX_COUNT (1ull << 40)

bool sl_usage_next_candidate(const struct sl_usage_text *t, size_t k, size_t *q)
{
    if (k < t->alen) {
        const char *p = memchr(t->a + k, '"', t->alen - k);
        if (p) {
            *q = (size_t)(p - t->a);
            return true;
        }
        k = t->alen;
    }
    size_t off = k - t->alen;
    if (off >= t->blen)
        return false;
    const char *p = find_key(t->b + off, t->blen - off);
    if (p == NULL) {
        /* Not all of it: a start of it can only be among the last few bytes. */
        size_t tail = t->blen > KEY_LEN - 1 ? t->blen - (KEY_LEN - 1) : 0;
        tail = SL_MAX(tail, off);
        p = memchr(t->b + tail, '"', t->blen - tail);
        if (p == NULL)
            return false;
    }
    *q = t->alen + (size_t)(p - t->b);
    return true;
}

bool sl_usage_quote_escaped(const struct sl_usage_text *t, size_t q, size_t floor)
{
    size_t run = 0;
    while (q > floor && sl_usage_text_at(t, q - 1) == '\\') {
        run++;
        q--;
    }
    return run & 1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum sl_usage_match sl_usage_match_key(const struct sl_usage_text *t, size_t q, size_t *brace)
{
    static const char key[] = "\"usage\"";
    size_t len = sl_usage_text_len(t), k = q;
    for (size_t i = 0; i < sizeof(key) - 1; i++, k++) {
        if (k == len)
            return SL_USAGE_MATCH_MORE;
        if (sl_usage_text_at(t, k) != key[i])
            return SL_USAGE_MATCH_NO;
    }
    bool colon = false;
    for (; k < len; k++) {
        char c = sl_usage_text_at(t, k);
        if (is_space(c))
            continue;
        if (!colon && c == ':') {
            colon = true;
            continue;
        }
        if (colon && c == '{') {
            *brace = k;
            return SL_USAGE_MATCH_YES;
        }
        return SL_USAGE_MATCH_NO;
    }
    return SL_USAGE_MATCH_MORE;
}

/*
 * The usage object is read by hand rather than with a JSON library: it is read for every
 * answer, and building a document of it cost more than the rest of the proxy's work on a
 * request. The reader is strict where it matters: the counts it takes must be plain integers
 * (or null), each at most once; a key with an escape in it, a malformed value anywhere, or
 * nesting deeper than a few levels makes the whole usage "not found".
 */
struct reader {
    const char *p, *end;
};

static void skip_space(struct reader *r)
{
    while (r->p < r->end && is_space(*r->p))
        r->p++;
}

static bool eat(struct reader *r, char c)
{
    skip_space(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

/* A string's raw contents (escapes left as they are); *escaped when it has any. */
static bool read_string(struct reader *r, struct sl_str *out, bool *escaped)
{
    if (!eat(r, '"'))
        return false;
    const char *from = r->p;
    *escaped = false;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            *escaped = true;
            if (++r->p == r->end)
                return false;
        }
        r->p++;
    }
    if (r->p == r->end)
        return false;
    *out = (struct sl_str){from, (size_t)(r->p - from)};
    r->p++;
    return true;
}

static bool skip_value(struct reader *r, int depth);

/* The members of an object whose '{' was read, each value skipped. */
static bool skip_members(struct reader *r, int depth)
{
    if (eat(r, '}'))
        return true;
    do {
        struct sl_str key;
        bool escaped;
        if (!read_string(r, &key, &escaped) || !eat(r, ':') || !skip_value(r, depth))
            return false;
    } while (eat(r, ','));
    return eat(r, '}');
}

static bool skip_number(struct reader *r)
{
    const char *from = r->p;
    if (r->p < r->end && *r->p == '-')
        r->p++;
    while (r->p < r->end && ((*r->p >= '0' && *r->p <= '9') || *r->p == '.' || *r->p == 'e' ||
                             *r->p == 'E' || *r->p == '+' || *r->p == '-'))
        r->p++;
    return r->p > from;
}

static bool skip_word(struct reader *r, const char *w, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
        return false;
    r->p += n;
    return true;
}

static bool skip_value(struct reader *r, int depth)
{
    struct sl_str str;
    bool escaped;
    if (depth > 8)
        return false;
    skip_space(r);
    if (r->p == r->end)
        return false;
    switch (*r->p) {
    case '"':
        return read_string(r, &str, &escaped);
    case '{':
        r->p++;
        return skip_members(r, depth + 1);
    case '[':
        r->p++;
        if (eat(r, ']'))
            return true;
        do {
            if (!skip_value(r, depth + 1))
                return false;
        } while (eat(r, ','));
        return eat(r, ']');
    case 't':
        return skip_word(r, "true", 4);
    case 'f':
        return skip_word(r, "false", 5);
    case 'n':
        return skip_word(r, "null", 4);
    default:
        return skip_number(r);
    }
}

/* A count: an integer from 0 to MAX_COUNT, or null (*given false). */
static bool read_count(struct reader *r, uint64_t *out, bool *given)
{
    skip_space(r);
    *out = 0;
    *given = false;
    if (skip_word(r, "null", 4))
        return true;
    const char *from = r->p;
    uint64_t v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        v = v * 10 + (uint64_t)(*r->p - '0');
        if (v > MAX_COUNT)
            return false;
        r->p++;
    }
    /* No sign, fraction or exponent: a count is a whole number. A leading zero is JSON only
     * as "0" itself. */
    if (r->p == from || (*from == '0' && r->p - from > 1))
        return false;
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
        return false;
    *out = v;
    *given = true;
    return true;
}

/* The counts the reader knows, in either style. */
enum field {
    F_PROMPT,        /* prompt_tokens */
    F_COMPLETION,    /* completion_tokens */
    F_INPUT,         /* input_tokens */
    F_OUTPUT,        /* output_tokens */
    F_TOTAL,         /* total_tokens */
    F_PROMPT_CACHED, /* prompt_tokens_details.cached_tokens */
    F_COMPL_REASON,  /* completion_tokens_details.reasoning_tokens */
    F_INPUT_CACHED,  /* input_tokens_details.cached_tokens */
    F_OUTPUT_REASON, /* output_tokens_details.reasoning_tokens */
    F_COUNT
};

struct counts {
    uint64_t v[F_COUNT];
    bool given[F_COUNT];
    unsigned seen; /* bit per field and per details object: duplicates are refused */
};

/* A details object's members: the one count it holds for us (key), the rest skipped. */
static bool read_details(struct reader *r, struct counts *c, const char *key, enum field f)
{
    skip_space(r);
    if (skip_word(r, "null", 4))
        return true;
    if (!eat(r, '{'))
        return false;
    if (eat(r, '}'))
        return true;
    do {
        struct sl_str k;
        bool escaped;
        if (!read_string(r, &k, &escaped) || escaped || !eat(r, ':'))
            return false;
        if (sl_str_eq(k, sl_str_from_cstr(key))) {
            if (c->seen & (1u << f))
                return false;
            c->seen |= 1u << f;
            if (!read_count(r, &c->v[f], &c->given[f]))
                return false;
        } else if (!skip_value(r, 2)) {
            return false;
        }
    } while (eat(r, ','));
    return eat(r, '}');
}

static bool read_member(struct reader *r, struct counts *c, struct sl_str k)
{
    static const struct {
        const char *name;
        enum field f;
    } plain[] = {
        {"prompt_tokens", F_PROMPT}, {"completion_tokens", F_COMPLETION}, {"input_tokens", F_INPUT},
        {"output_tokens", F_OUTPUT}, {"total_tokens", F_TOTAL},
    };
    static const struct {
        const char *name, *key;
        enum field f;
    } details[] = {
        {"prompt_tokens_details", "cached_tokens", F_PROMPT_CACHED},
        {"completion_tokens_details", "reasoning_tokens", F_COMPL_REASON},
        {"input_tokens_details", "cached_tokens", F_INPUT_CACHED},
        {"output_tokens_details", "reasoning_tokens", F_OUTPUT_REASON},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(plain); i++) {
        if (!sl_str_eq(k, sl_str_from_cstr(plain[i].name)))
            continue;
        if (c->seen & (1u << plain[i].f))
            return false;
        c->seen |= 1u << plain[i].f;
        return read_count(r, &c->v[plain[i].f], &c->given[plain[i].f]);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(details); i++) {
        unsigned bit = 1u << (F_COUNT + i);
        if (!sl_str_eq(k, sl_str_from_cstr(details[i].name)))
            continue;
        if (c->seen & bit)
            return false;
        c->seen |= bit;
        return read_details(r, c, details[i].key, details[i].f);
    }
    return skip_value(r, 1);
}

struct sl_usage sl_usage_read_object(struct sl_str object)
{
    /* Zeroed as a whole (padding too): callers may compare results byte for byte. */
    struct sl_usage u;
    memset(&u, 0, sizeof(u));
    struct counts c;
    memset(&c, 0, sizeof(c));
    struct reader r = {object.base, object.base + object.len};
    if (!eat(&r, '{'))
        goto fail;
    if (!eat(&r, '}')) {
        do {
            struct sl_str k;
            bool escaped;
            /* A key spelled with escapes could name a count twice in disguise. */
            if (!read_string(&r, &k, &escaped) || escaped || !eat(&r, ':') ||
                !read_member(&r, &c, k))
                goto fail;
        } while (eat(&r, ','));
        if (!eat(&r, '}'))
            goto fail;
    }
    skip_space(&r);
    if (r.p != r.end)
        goto fail;
    /* The chat style if it names prompt_tokens, else the Responses style. */
    bool chat = c.seen & (1u << F_PROMPT);
    enum field prompt = chat ? F_PROMPT : F_INPUT, completion = chat ? F_COMPLETION : F_OUTPUT;
    enum field cached = chat ? F_PROMPT_CACHED : F_INPUT_CACHED;
    enum field reasoning = chat ? F_COMPL_REASON : F_OUTPUT_REASON;
    if (!c.given[prompt])
        goto fail;
    u.prompt = c.v[prompt];
    u.completion = c.v[completion];
    u.cached = c.v[cached];
    u.reasoning = c.v[reasoning];
    u.total = c.v[F_TOTAL];
    if (u.cached > u.prompt || u.reasoning > u.completion)
        goto fail;
    if (!c.given[F_TOTAL])
        u.total = u.prompt + u.completion;
    else if (u.total < u.prompt + u.completion)
        goto fail;
    u.found = true;
    return u;
fail:
    memset(&u, 0, sizeof(u));
    return u;
}

struct sl_usage sl_usage_parse(struct sl_str text)
{
    struct sl_usage none = {0};
    if (text.base == NULL || text.len == 0)
        return none;
    struct sl_usage_text t = {NULL, 0, text.base, text.len};
    struct sl_str last = SL_STR_NULL;
    size_t k = 0, q = 0, brace = 0;
    /* The last complete `"usage": {...}`: a whole answer, a stream's events, or an object
     * that holds one. A key is a quote no backslash escapes (in valid JSON a quote inside a
     * string always is), so text that merely mentions "usage" does not count. */
    while (sl_usage_next_candidate(&t, k, &q)) {
        if (sl_usage_quote_escaped(&t, q, 0)) {
            k = q + 1;
            continue;
        }
        enum sl_usage_match m = sl_usage_match_key(&t, q, &brace);
        if (m == SL_USAGE_MATCH_MORE)
            break;
        if (m == SL_USAGE_MATCH_NO) {
            k = q + 1;
            continue;
        }
        struct sl_usage_follow f = {0, false, false};
        size_t end = brace;
        while (end < text.len && !sl_usage_follow_byte(&f, text.base[end]))
            end++;
        if (end == text.len)
            break; /* cut short: nothing after it can be complete either */
        last = (struct sl_str){text.base + brace, end + 1 - brace};
        k = end + 1;
    }
    if (last.base)
        return sl_usage_read_object(last);
    /* No key: the text may be the usage object itself. */
    size_t i = 0;
    while (i < text.len && is_space(text.base[i]))
        i++;
    if (i < text.len && text.base[i] == '{')
        return sl_usage_read_object((struct sl_str){text.base + i, text.len - i});
    return none;
}
