/*
 * The usage scanner: follows an answer's bytes as they go to the client and
 * copies out the last `"usage": {...}` object. It sits on the streaming
 * path, so outside a usage object it does no per-byte work but a memmem for
 * `"usage"` and a look at the few bytes after each; it allocates only when
 * a usage object starts, and then only once.
 *
 * Chunks split anywhere, so the key and its colon and brace may straddle
 * two of them: the bytes of a match still pending at the end of a chunk
 * are kept in `carry` (at most 15, which allows the whitespace JSON
 * encoders put around the colon) and read again before the next chunk. An
 * odd run of backslashes ending a chunk is kept as one backslash, because
 * it escapes a quote that opens the next.
 */
#include <stdlib.h>
#include <string.h>

#include "usage/internal.h"

void sl_usage_scanner_init(struct sl_usage_scanner *s)
{
    memset(s, 0, sizeof(*s));
}

void sl_usage_scanner_dispose(struct sl_usage_scanner *s)
{
    free(s->capture);
    memset(s, 0, sizeof(*s));
}

/* Begin capturing at a '{'; false when there is no memory for it (the usage is then
 * missed, and the caller estimates). */
static bool capture_start(struct sl_usage_scanner *s)
{
    if (s->capture == NULL && (s->capture = malloc(SL_USAGE_CAPTURE_BYTES)) == NULL)
        return false;
    /* This object replaces any earlier one: the last usage of an answer is the final one. */
    s->capture[0] = '{';
    s->capture_len = 1;
    s->depth = 1;
    s->in_string = false;
    s->escaped = false;
    s->complete = false;
    return true;
}

/* Capture p[i..len) until the object closes; returns where scanning for keys resumes. */
static size_t capture_bytes(struct sl_usage_scanner *s, const char *p, size_t len, size_t i)
{
    struct sl_usage_follow f = {s->depth, s->in_string, s->escaped};
    size_t room = SL_USAGE_CAPTURE_BYTES - s->capture_len;
    size_t n = SL_MIN(len - i, room);
    size_t j = 0;
    bool closed = false;
    for (; j < n && !closed; j++)
        closed = sl_usage_follow_byte(&f, p[i + j]);
    memcpy(s->capture + s->capture_len, p + i, j);
    s->capture_len += j;
    if (closed) {
        s->depth = 0;
        s->in_string = s->escaped = false;
        s->complete = true;
        return i + j;
    }
    if (j == room && i + j < len) {
        /* Longer than any usage object: not one we trust. Look for keys after it. */
        s->depth = 0;
        s->in_string = s->escaped = false;
        s->capture_len = 0;
        return i + j;
    }
    s->depth = f.depth;
    s->in_string = f.in_string;
    s->escaped = f.escaped;
    return len;
}

void sl_usage_scanner_feed(struct sl_usage_scanner *s, const char *bytes, size_t len)
{
    if (len == 0)
        return;
    s->bytes += len;
    char carry[sizeof(s->carry)];
    size_t clen = s->carry_len;
    memcpy(carry, s->carry, clen);
    s->carry_len = 0;
    /* The carry and the chunk read as one text; positions k are in it. */
    struct sl_usage_text t = {carry, clen, bytes, len};
    size_t total = clen + len, k = 0, floor = 0, q = 0, brace = 0;
    bool pending = false;
    while (k < total) {
        if (s->depth > 0) {
            /* A capture only ever runs in the chunk: the carry never holds a '{' that
             * completed a key (that key would have matched in the previous feed). */
            k = clen + capture_bytes(s, bytes, len, k - clen);
            floor = k; /* escapes before a capture's end are its business */
            continue;
        }
        if (!sl_usage_next_candidate(&t, k, &q))
            break;
        if (sl_usage_quote_escaped(&t, q, floor)) {
            k = q + 1;
            continue;
        }
        enum sl_usage_match m = sl_usage_match_key(&t, q, &brace);
        if (m == SL_USAGE_MATCH_MORE) {
            pending = true;
            break;
        }
        if (m == SL_USAGE_MATCH_NO || brace < clen || !capture_start(s)) {
            k = q + 1;
            continue;
        }
        k = brace + 1;
    }
    if (s->depth > 0)
        return; /* the capture carries its own state into the next chunk */
    if (pending) {
        /* A key cut short; one stretched by more whitespace than the carry holds is lost. */
        if (total - q < sizeof(s->carry)) {
            for (size_t i = q; i < total; i++)
                s->carry[s->carry_len++] = sl_usage_text_at(&t, i);
        }
        return;
    }
    size_t run = 0;
    for (size_t i = total; i > floor && sl_usage_text_at(&t, i - 1) == '\\'; i--)
        run++;
    if (run & 1)
        s->carry[s->carry_len++] = '\\';
}

struct sl_usage sl_usage_scanner_result(const struct sl_usage_scanner *s)
{
    if (!s->complete || s->capture == NULL || s->depth > 0)
        return (struct sl_usage){0};
    /* The capture is the object itself, whatever keys it holds. */
    return sl_usage_read_object((struct sl_str){s->capture, s->capture_len});
}
