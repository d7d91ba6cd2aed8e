/*
 * The usage-chunk filter of streamed chat completions (see sse.h): SSE
 * framing followed byte by byte, whole events passed from the caller's
 * chunk, at most one incomplete event held back.
 *
 * Where an event ends: at the terminator of an empty line. A CR may be
 * followed by a LF that belongs to it; when that CR ended an event, the LF
 * is the event's last byte, so it goes (or is dropped) with that event,
 * even when it arrives in the next chunk.
 */
#include "proxy/sse.h"

#include <jansson.h>
#include <string.h>

void sl_sse_filter_init(struct sl_sse_filter *f)
{
    memset(f, 0, sizeof(*f));
    sl_buf_init(&f->held);
    f->line_start = true;
}

void sl_sse_filter_dispose(struct sl_sse_filter *f)
{
    sl_buf_dispose(&f->held);
}

static void out(struct sl_sse_filter *f, const char *bytes, size_t len, sl_sse_emit emit, void *arg)
{
    if (len == 0)
        return;
    f->bytes_out += len;
    emit(arg, bytes, len);
}

static void out_held(struct sl_sse_filter *f, sl_sse_emit emit, void *arg)
{
    out(f, f->held.base, f->held.len, emit, arg);
    f->held.len = 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Does text hold `"choices"`, a colon and an empty array? (Cheap: most events do not, and
 * only those that do are parsed.) */
static bool has_empty_choices(const char *p, size_t len)
{
    static const char key[] = "\"choices\"";
    const char *end = p + len;
    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        p += sizeof(key) - 1;
        const char *q = p;
        while (q < end && is_space(*q))
            q++;
        if (q == end || *q++ != ':')
            continue;
        while (q < end && is_space(*q))
            q++;
        if (q == end || *q++ != '[')
            continue;
        while (q < end && is_space(*q))
            q++;
        if (q < end && *q == ']')
            return true;
    }
    return false;
}

bool sl_sse_event_is_usage_only(struct sl_str ev)
{
    /* The event's data: the values of its `data` fields joined by LF (as a client reads
     * them). Never longer than the event itself. */
    char data[SL_SSE_HOLD_MAX];
    size_t n = 0, i = 0;
    bool any = false;
    if (ev.len > sizeof(data))
        return false;
    while (i < ev.len) {
        size_t start = i;
        while (i < ev.len && ev.base[i] != '\r' && ev.base[i] != '\n')
            i++;
        struct sl_str line = {ev.base + start, i - start};
        if (i < ev.len && ev.base[i] == '\r' && i + 1 < ev.len && ev.base[i + 1] == '\n')
            i++;
        i++;
        if (!sl_str_starts_with(line, SL_STR("data")) || (line.len > 4 && line.base[4] != ':'))
            continue;
        size_t v = line.len > 4 ? 5 : 4;
        if (v < line.len && line.base[v] == ' ')
            v++;
        if (any)
            data[n++] = '\n';
        memcpy(data + n, line.base + v, line.len - v);
        n += line.len - v;
        any = true;
    }
    if (!any || !has_empty_choices(data, n))
        return false;
    json_error_t jerr;
    json_t *doc = json_loadb(data, n, 0, &jerr);
    json_t *choices = json_object_get(doc, "choices");
    bool usage_only = json_is_array(choices) && json_array_size(choices) == 0 &&
                      json_is_object(json_object_get(doc, "usage"));
    json_decref(doc);
    return usage_only;
}

/*
 * An event ended at bytes[end] (its terminator). It started at bytes[ev], after what is
 * held of it. *run is where the bytes of this chunk not yet emitted start.
 */
static void end_event(struct sl_sse_filter *f, const char *bytes, size_t ev, size_t end,
                      size_t *run, sl_sse_emit emit, void *arg)
{
    size_t size = f->held.len + (end + 1 - ev);
    bool drop = false;
    if (f->passing || size > SL_SSE_HOLD_MAX) {
        out_held(f, emit, arg); /* nothing held when passing */
    } else if (f->held.len) {
        /* The event began in an earlier chunk: it is whole in held now (ev and *run are 0). */
        if (sl_buf_append(&f->held, bytes, end + 1) != SL_OK) {
            out_held(f, emit, arg); /* cannot look at it: pass it */
        } else {
            drop = sl_sse_event_is_usage_only((struct sl_str){f->held.base, f->held.len});
            if (drop)
                f->held.len = 0;
            else
                out_held(f, emit, arg);
            *run = end + 1;
        }
    } else if (sl_sse_event_is_usage_only((struct sl_str){bytes + ev, end + 1 - ev})) {
        drop = true;
        out(f, bytes + *run, ev - *run, emit, arg);
        *run = end + 1;
    }
    if (drop)
        f->dropped++;
    f->passing = false;
    f->last_dropped = drop;
}

void sl_sse_filter_feed(struct sl_sse_filter *f, const char *bytes, size_t len, sl_sse_emit emit,
                        void *arg)
{
    size_t run = 0; /* the bytes of this chunk not yet emitted start here */
    size_t ev = 0;  /* the current event's bytes in this chunk start here */
    f->bytes_in += len;
    for (size_t i = 0; i < len; i++) {
        char c = bytes[i];
        if (f->after_cr) {
            f->after_cr = false;
            bool ended = f->cr_ended;
            f->cr_ended = false;
            if (c == '\n') {
                /* The second half of a CRLF: when it ended an event, it is that event's. */
                if (ended) {
                    if (f->last_dropped) {
                        out(f, bytes + run, i - run, emit, arg);
                        run = i + 1;
                    }
                    ev = i + 1;
                }
                continue;
            }
        }
        if (c != '\n' && c != '\r') {
            f->line_start = false;
            while (i + 1 < len && bytes[i + 1] != '\n' && bytes[i + 1] != '\r')
                i++; /* the rest of the line */
            continue;
        }
        f->after_cr = c == '\r';
        if (!f->line_start) {
            f->line_start = true;
            continue;
        }
        /* An empty line: the event ends here. */
        f->cr_ended = c == '\r';
        end_event(f, bytes, ev, i, &run, emit, arg);
        ev = i + 1;
    }
    if (f->passing || ev == len) {
        out(f, bytes + run, len - run, emit, arg);
        return;
    }
    /* The event at ev is incomplete: hold it back while it could still be a usage chunk. */
    if (f->held.len + (len - ev) > SL_SSE_HOLD_MAX ||
        sl_buf_append(&f->held, bytes + ev, len - ev) != SL_OK) {
        out_held(f, emit, arg);
        out(f, bytes + run, len - run, emit, arg);
        f->passing = true;
        return;
    }
    out(f, bytes + run, ev - run, emit, arg);
}

void sl_sse_filter_finish(struct sl_sse_filter *f, sl_sse_emit emit, void *arg)
{
    out_held(f, emit, arg);
    f->passing = false;
}
