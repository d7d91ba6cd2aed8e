/*
 * usage internals: finding `"usage": {` in text that may come in two
 * pieces (the scanner's carry and a new chunk), following a JSON object to
 * its closing brace, and reading a usage object. Private to src/usage/.
 */
#ifndef SL_USAGE_INTERNAL_H
#define SL_USAGE_INTERNAL_H

#include "usage/usage.h"

/* Two pieces of text read as one: a then b. Borrows both. */
struct sl_usage_text {
    const char *a;
    size_t alen;
    const char *b;
    size_t blen;
};

static inline size_t sl_usage_text_len(const struct sl_usage_text *t)
{
    return t->alen + t->blen;
}

static inline char sl_usage_text_at(const struct sl_usage_text *t, size_t k)
{
    return k < t->alen ? t->a[k] : t->b[k - t->alen];
}

/* The first '"' at or after k that may open `"usage"`: any quote in a (the carry, a few
 * bytes), then in b the next whole `"usage"`, or else a quote among b's last 6 bytes
 * (the key may go on in the next chunk); false when there is none. */
bool sl_usage_next_candidate(const struct sl_usage_text *t, size_t k, size_t *q);

/* Whether the '"' at q is escaped: an odd run of backslashes before it, not looking
 * before floor. */
bool sl_usage_quote_escaped(const struct sl_usage_text *t, size_t q, size_t floor);

enum sl_usage_match {
    SL_USAGE_MATCH_NO,   /* the quote at q does not open `"usage"` `:` `{` */
    SL_USAGE_MATCH_YES,  /* it does; *brace is where the object starts */
    SL_USAGE_MATCH_MORE, /* the text ends before it can tell */
};
/* Whether `"usage"`, optional whitespace, ':', optional whitespace and '{' start at q. */
enum sl_usage_match sl_usage_match_key(const struct sl_usage_text *t, size_t q, size_t *brace);

/* Following a JSON object byte by byte, strings and escapes included. */
struct sl_usage_follow {
    int depth; /* braces open; 0 before the first */
    bool in_string;
    bool escaped;
};
/* Take one byte; true when it closed the outermost object. */
static inline bool sl_usage_follow_byte(struct sl_usage_follow *f, char c)
{
    if (f->in_string) {
        if (f->escaped)
            f->escaped = false;
        else if (c == '\\')
            f->escaped = true;
        else if (c == '"')
            f->in_string = false;
    } else if (c == '"') {
        f->in_string = true;
    } else if (c == '{') {
        f->depth++;
    } else if (c == '}') {
        return --f->depth == 0;
    }
    return false;
}

/* The counts of one usage object's JSON text (validated as usage.h says). */
struct sl_usage sl_usage_read_object(struct sl_str object);

#endif
