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

#include <jansson.h>

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

/* A count at key: absent or null leaves *out 0 and *given false; anything but an integer
 * from 0 to MAX_COUNT is refused. */
static bool count(const json_t *obj, const char *key, uint64_t *out, bool *given)
{
    const json_t *v = json_object_get(obj, key);
    *out = 0;
    if (given)
        *given = false;
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v))
        return false;
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > MAX_COUNT)
        return false;
    *out = (uint64_t)i;
    if (given)
        *given = true;
    return true;
}

/* A count inside a details object (`prompt_tokens_details.cached_tokens`); a missing or
 * null details object counts 0. */
static bool detail(const json_t *obj, const char *details, const char *key, uint64_t *out)
{
    const json_t *d = json_object_get(obj, details);
    *out = 0;
    if (d == NULL || json_is_null(d))
        return true;
    if (!json_is_object(d))
        return false;
    return count(d, key, out, NULL);
}

struct sl_usage sl_usage_read_object(struct sl_str object)
{
    struct sl_usage u = {0};
    json_t *doc = NULL;
    bool given = false, total_given = false;
    /* Duplicate keys would leave it to the parser which count is meant. */
    doc = json_loadb(object.base, object.len, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL || !json_is_object(doc))
        goto fail;
    /* The chat style if it names prompt_tokens, else the Responses style. */
    bool chat = json_object_get(doc, "prompt_tokens") != NULL;
    const char *names[6] = {"prompt_tokens", "completion_tokens", "prompt_tokens_details",
                            "completion_tokens_details"};
    if (!chat) {
        names[0] = "input_tokens";
        names[1] = "output_tokens";
        names[2] = "input_tokens_details";
        names[3] = "output_tokens_details";
    }
    if (!count(doc, names[0], &u.prompt, &given) || !given)
        goto fail;
    if (!count(doc, names[1], &u.completion, NULL))
        goto fail;
    if (!count(doc, "total_tokens", &u.total, &total_given))
        goto fail;
    if (!detail(doc, names[2], "cached_tokens", &u.cached) ||
        !detail(doc, names[3], "reasoning_tokens", &u.reasoning))
        goto fail;
    if (u.cached > u.prompt || u.reasoning > u.completion)
        goto fail;
    if (!total_given)
        u.total = u.prompt + u.completion;
    else if (u.total < u.prompt + u.completion)
        goto fail;
    u.found = true;
    json_decref(doc);
    return u;
fail:
    json_decref(doc);
    return (struct sl_usage){0};
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
