/*
 * Private to the proxy subsystem: the filter that hides the usage chunk of a
 * streamed chat completion from a client that did not ask for it (sse.c).
 *
 * sluice asks every streamed chat completion for
 * stream_options.include_usage, so that every stream is counted; the backend
 * then ends the stream with one more event, `data: {..."choices":[],
 * "usage":{...}}`, which a client that did not ask for it must not see. The
 * filter passes the stream through event by event and drops exactly the
 * events that are such usage chunks.
 *
 * Framing is SSE's: lines end with CRLF, LF or CR; an event ends with an
 * empty line. The bytes may be split anywhere. Bytes of complete events go
 * out from the caller's chunk without a copy; only an event still
 * incomplete at the end of a chunk is held back (copied), and only while it
 * is at most SL_SSE_HOLD_MAX bytes long: a longer event cannot be a usage
 * chunk, so it goes out at once and is never dropped.
 */
#ifndef SL_PROXY_SSE_H
#define SL_PROXY_SSE_H

#include "core/core.h"

/* The longest event the filter holds back and may drop (a usage chunk is ~600 bytes). */
#define SL_SSE_HOLD_MAX 4096

/* Where the bytes the client gets go, in order. */
typedef void (*sl_sse_emit)(void *arg, const char *bytes, size_t len);

struct sl_sse_filter {
    struct sl_buf held; /* owned: the start of an incomplete event (at most SL_SSE_HOLD_MAX) */
    bool passing;       /* the current event is too long to drop: it goes out as it comes */
    bool line_start;    /* the next byte starts a line (so a terminator there ends the event) */
    bool after_cr;      /* the last byte was a CR terminator: a LF now belongs to it */
    bool cr_ended;      /* ...and that CR ended an event */
    bool last_dropped;  /* the last event that ended was dropped */
    uint64_t dropped;   /* events dropped */
    uint64_t bytes_in, bytes_out;
};

void sl_sse_filter_init(struct sl_sse_filter *f);
/* Feed the next bytes of the stream; emit gets what the client may see of them (possibly
 * in several pieces, possibly none yet). */
void sl_sse_filter_feed(struct sl_sse_filter *f, const char *bytes, size_t len, sl_sse_emit emit,
                        void *arg);
/* The stream ended: emit an event still held back (a stream cut mid-event is passed as is). */
void sl_sse_filter_finish(struct sl_sse_filter *f, sl_sse_emit emit, void *arg);
void sl_sse_filter_dispose(struct sl_sse_filter *f);

/* Is event (one whole event, with its terminating empty line) a usage chunk: its data is
 * a JSON object whose `choices` is an empty array and whose `usage` is an object? */
bool sl_sse_event_is_usage_only(struct sl_str event);

#endif
