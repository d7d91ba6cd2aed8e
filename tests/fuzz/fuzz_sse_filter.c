/*
 * Fuzz the usage-chunk filter of streams: whatever the bytes and however
 * they are split (chunk sizes from the input's first bytes), the client's
 * output is the input minus exactly the events a reference reading of the
 * whole input drops (complete events of at most SL_SSE_HOLD_MAX bytes that
 * are usage chunks), in order, byte for byte. The reference splits events
 * with code of its own, on the whole buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_SIZES 4

static void collect(void *arg, const char *bytes, size_t len)
{
    if (len == 0 || sl_buf_append(arg, bytes, len) != SL_OK)
        abort(); /* empty pieces are never emitted */
}

/* The length of the line terminator at text[i] (0: none). */
static size_t terminator(const char *text, size_t len, size_t i)
{
    if (text[i] == '\n')
        return 1;
    if (text[i] == '\r')
        return i + 1 < len && text[i + 1] == '\n' ? 2 : 1;
    return 0;
}

/* The expected output of the whole text, and how many events it drops. */
static uint64_t reference(const char *text, size_t len, struct sl_buf *out)
{
    uint64_t dropped = 0;
    size_t ev = 0, i = 0;
    bool line_start = true;
    while (i < len) {
        size_t t = terminator(text, len, i);
        if (t == 0) {
            line_start = false;
            i++;
            continue;
        }
        if (!line_start) {
            line_start = true;
            i += t;
            continue;
        }
        /* An empty line ends the event: it is judged on its bytes through the terminator's
         * first byte, and a CRLF's LF goes with it. */
        size_t judged = i + 1 - ev;
        size_t whole = i + t - ev;
        if (judged <= SL_SSE_HOLD_MAX &&
            sl_sse_event_is_usage_only((struct sl_str){text + ev, judged}))
            dropped++;
        else if (sl_buf_append(out, text + ev, whole) != SL_OK)
            abort();
        i += t;
        ev = i;
    }
    if (ev < len && sl_buf_append(out, text + ev, len - ev) != SL_OK)
        abort();
    return dropped;
}

static void filter(const char *text, size_t len, const size_t *sizes, struct sl_buf *out,
                   uint64_t *dropped)
{
    struct sl_sse_filter f;
    sl_sse_filter_init(&f);
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = SL_MIN(sizes[i % N_SIZES], len - off);
        char *chunk = malloc(n); /* exact size: reads past it are caught */
        if (chunk == NULL)
            abort();
        memcpy(chunk, text + off, n);
        sl_sse_filter_feed(&f, chunk, n, collect, out);
        free(chunk);
        if (f.held.len > SL_SSE_HOLD_MAX)
            abort();
        off += n;
    }
    sl_sse_filter_finish(&f, collect, out);
    if (f.bytes_in != len || f.bytes_out != out->len || f.held.len != 0)
        abort();
    *dropped = f.dropped;
    sl_sse_filter_dispose(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < N_SIZES)
        return 0;
    size_t sizes[N_SIZES];
    for (size_t i = 0; i < N_SIZES; i++)
        sizes[i] = data[i] >= 0xf0 ? SIZE_MAX : 1 + data[i] % 64;
    const char *text = (const char *)data + N_SIZES;
    size_t len = size - N_SIZES;

    struct sl_buf want, got, whole;
    sl_buf_init(&want);
    sl_buf_init(&got);
    sl_buf_init(&whole);
    uint64_t want_dropped = reference(text, len, &want), got_dropped = 0, whole_dropped = 0;
    filter(text, len, sizes, &got, &got_dropped);
    size_t one[N_SIZES] = {SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX};
    filter(text, len, one, &whole, &whole_dropped);
    if (got.len != want.len || (want.len && memcmp(got.base, want.base, want.len) != 0) ||
        got_dropped != want_dropped)
        abort();
    if (whole.len != want.len || (want.len && memcmp(whole.base, want.base, want.len) != 0) ||
        whole_dropped != want_dropped)
        abort();
    sl_buf_dispose(&want);
    sl_buf_dispose(&got);
    sl_buf_dispose(&whole);
    return 0;
}
