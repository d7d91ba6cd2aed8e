/*
 * A client connection: reads bytes, frames requests (head, then a
 * Content-Length or chunked body), enforces the size and time bounds, and
 * hands one request at a time to the handler. Pipelined requests wait in the
 * input buffer until the response before them is finished, which keeps
 * responses in request order without any queue.
 */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

static void conn_process(struct sl_http_conn *c);
static void conn_start_reading(struct sl_http_conn *c);

static void conn_maybe_free(struct sl_http_conn *c)
{
    if (c->handles_open > 0 || c->req_owned)
        return;
    sl_buf_dispose(&c->in);
    sl_buf_dispose(&c->chunked_body);
    sl_buf_dispose(&c->out);
    sl_buf_dispose(&c->inflight);
    sl_arena_dispose(&c->arena);
    sl_server_conn_freed(c->server, c);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sl_http_conn *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

void sl_conn_close(struct sl_http_conn *c)
{
    if (c->state == SL_CONN_CLOSED)
        return;
    bool handler_active = c->req_owned && !c->peer_gone;
    c->state = SL_CONN_CLOSED;
    c->peer_gone = true;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    /* The handler still owns the request: tell it, once. It keeps the
     * connection struct alive until it calls sl_http_finish(). */
    if (handler_active && c->on_abort)
        c->on_abort(&c->req, c->cb_data);
}

void sl_conn_reset(struct sl_http_conn *c)
{
    if (c->state == SL_CONN_CLOSED)
        return;
    c->state = SL_CONN_CLOSED;
    c->peer_gone = true;
    if (uv_tcp_close_reset(&c->tcp, on_handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void arm_timer(struct sl_http_conn *c, enum sl_conn_timer kind);

static void on_timer(uv_timer_t *t)
{
    struct sl_http_conn *c = t->data;
    if (c->timer_kind == SL_TIMER_NONE)
        return; /* the phase that armed it is over */
    uint64_t now = uv_now(c->server->loop);
    if (now < c->deadline) {
        /* Armed for an earlier phase; the current deadline is later. */
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        return;
    }
    enum sl_conn_timer kind = c->timer_kind;
    c->timer_kind = SL_TIMER_NONE;
    switch (kind) {
    case SL_TIMER_HEAD:
        if (c->in.len == 0)
            sl_conn_close(c); /* not a byte sent: nobody to answer */
        else
            sl_response_protocol_error(c, 408, "the request head was not received in time");
        break;
    case SL_TIMER_BODY:
        sl_response_protocol_error(c, 408, "the request body was not received in time");
        break;
    case SL_TIMER_IDLE:
    case SL_TIMER_LINGER:
    case SL_TIMER_NONE:
        sl_conn_close(c);
        break;
    }
}

/*
 * Deadlines are lazy: changing phase only records the new deadline, and the
 * timer is restarted only when the new deadline is earlier than the one it
 * is set for; a timer that fires early re-arms itself (on_timer). A
 * keep-alive request thus costs no timer heap operation at all.
 */
static void arm_timer(struct sl_http_conn *c, enum sl_conn_timer kind)
{
    if (c->timer_kind == kind)
        return; /* deadlines run from when the phase began, not from the last byte */
    c->timer_kind = kind;
    uint64_t ms = 0;
    switch (kind) {
    case SL_TIMER_NONE:
        return;
    case SL_TIMER_IDLE:
        ms = c->server->limits.idle_timeout_ms;
        break;
    case SL_TIMER_HEAD:
        ms = c->server->limits.header_timeout_ms;
        break;
    case SL_TIMER_BODY:
        ms = c->server->limits.request_timeout_ms;
        break;
    case SL_TIMER_LINGER:
        ms = SL_HTTP_LINGER_MS;
        break;
    }
    c->deadline = uv_now(c->server->loop) + ms;
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->deadline < c->timer_due) {
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

/* Views in the parsed head point into `in`; when growing `in` moves it, move them too. */
static void rebase_head(struct sl_http_request_head *h, const char *from, const char *to)
{
#define REBASE(s)                                                                                  \
    do {                                                                                           \
        if ((s).base)                                                                              \
            (s).base = to + ((s).base - from);                                                     \
    } while (0)
    REBASE(h->method);
    REBASE(h->target);
    REBASE(h->path);
    REBASE(h->query);
    REBASE(h->host);
    for (size_t i = 0; i < h->n_headers; i++) {
        REBASE(h->headers[i].name);
        REBASE(h->headers[i].value);
    }
#undef REBASE
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sl_http_conn *c = h->data;
    /* Start small (most heads are a few hundred bytes) and let the buffer
     * double as needed: an idle connection should cost little memory. */
    size_t want = 2048 - 1;
    if (c->state == SL_CONN_READ_BODY && c->req.head.body_kind == SL_HTTP_BODY_LENGTH) {
        uint64_t need = c->head_len + c->req.head.content_length - c->in.len;
        want = need < 64 * 1024 ? (size_t)need + 1024 : 64 * 1024;
    }
    size_t avail = c->in.cap > c->in.len + 1 ? c->in.cap - c->in.len - 1 : 0;
    /* While the handler owns the request its views point into `in`, so the
     * buffer must not move: read into what is left, if anything. */
    if (c->state != SL_CONN_DISPATCHED && c->state != SL_CONN_LINGER && avail < want / 2) {
        const char *old = c->in.base;
        if (sl_buf_reserve(&c->in, want) == SL_OK) {
            if (c->head_len && old && old != c->in.base)
                rebase_head(&c->req.head, old, c->in.base);
            avail = c->in.cap - c->in.len - 1;
        }
    }
    if (c->state == SL_CONN_LINGER) {
        c->in.len = 0; /* lingering: input is read only to be discarded */
        if (c->in.cap < 4096)
            sl_buf_reserve(&c->in, 4096);
        avail = c->in.cap ? c->in.cap - 1 : 0;
    }
    buf->base = c->in.base ? c->in.base + c->in.len : NULL;
    buf->len = avail;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sl_http_conn *c = stream->data;
    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) {
        /* Only while dispatched with a full buffer: wait for the response. */
        uv_read_stop(stream);
        c->reading = false;
        return;
    }
    if (nread < 0) {
        uv_read_stop(stream);
        c->reading = false;
        if (c->state == SL_CONN_DISPATCHED || c->state == SL_CONN_LINGER ||
            (!c->writing && c->out.len == 0)) {
            /* Mid-request this aborts the handler's work: the client is gone. */
            sl_conn_close(c);
            return;
        }
        /* A response is still queued (the client half-closed): send it, then close. */
        c->peer_gone = true;
        c->close_after = true;
        return;
    }
    if (c->state == SL_CONN_LINGER) {
        c->in.len = 0;
        return;
    }
    bool was_empty = c->in.len == 0;
    c->in.len += (size_t)nread;
    c->in.base[c->in.len] = '\0';
    if (c->state == SL_CONN_READ_HEAD && was_empty) {
        /* Like nginx's $request_time: a request's time starts at its first byte. */
        c->req.start_us = sl_clock_mono_us();
        arm_timer(c, SL_TIMER_HEAD);
    }
    if (c->state != SL_CONN_DISPATCHED)
        conn_process(c);
}

static void conn_start_reading(struct sl_http_conn *c)
{
    if (c->reading || c->state == SL_CONN_CLOSED)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

void sl_conn_set_request_id(struct sl_http_conn *c)
{
    struct sl_http_request *req = &c->req;
    const struct sl_http_header *rid =
        c->head_len ? sl_http_find_header(&req->head, SL_STR("x-request-id")) : NULL;
    if (rid && sl_request_id_is_sane(rid->value)) {
        memcpy(req->id, rid->value.base, rid->value.len);
        req->id[rid->value.len] = '\0';
    } else {
        sl_request_id_new(req->id);
    }
}

/*
 * The handler may keep a request for minutes (a stream), holding views into
 * `in`: give back the buffer's unused room first, keeping a little so that
 * reading goes on (a client that goes away is noticed at once). The next
 * request on the connection grows the buffer again.
 */
static void give_back_input(struct sl_http_conn *c)
{
    if (c->in.cap < c->in.len + 1 + SL_HTTP_IN_SLACK + SL_HTTP_IN_GIVE_BACK_MIN)
        return;
    const char *old = c->in.base;
    size_t body_at = c->req.body.base == old + c->head_len ? c->head_len : SIZE_MAX;
    if (sl_buf_shrink(&c->in, SL_HTTP_IN_SLACK) != SL_OK || c->in.base == old)
        return;
    rebase_head(&c->req.head, old, c->in.base);
    if (body_at != SIZE_MAX)
        c->req.body.base = c->in.base + body_at;
}

static void dispatch(struct sl_http_conn *c)
{
    struct sl_http_request *req = &c->req;
    struct sl_http_server *s = c->server;
    sl_conn_set_request_id(c);
    req->is_head = sl_str_eq(req->head.method, SL_STR("HEAD"));
    req->arena = &c->arena;
    req->conn = c;
    req->server = s;
    c->keep_alive = req->head.keep_alive && !s->shutting_down;
    c->http10 = req->head.minor_version == 0;
    give_back_input(c);
    c->state = SL_CONN_DISPATCHED;
    c->req_owned = true;
    arm_timer(c, SL_TIMER_NONE);
    s->on_request(req, s->data);
}

/* Start reading a body, or dispatch at once if there is none. */
static int begin_body(struct sl_http_conn *c)
{
    struct sl_http_request_head *h = &c->req.head;
    const struct sl_config_limits *lim = &c->server->limits;
    if (h->body_kind == SL_HTTP_BODY_LENGTH && h->content_length > lim->max_body_bytes) {
        sl_response_protocol_error(c, 413, "the request body is larger than the allowed maximum");
        return SL_ETOOBIG;
    }
    if (h->body_kind == SL_HTTP_BODY_NONE ||
        (h->body_kind == SL_HTTP_BODY_LENGTH && h->content_length == 0)) {
        c->req.body = SL_STR_NULL;
        dispatch(c);
        return SL_OK;
    }
    if (h->body_kind == SL_HTTP_BODY_CHUNKED) {
        sl_http_chunked_init(&c->chunked, (size_t)lim->max_header_bytes);
        c->chunked_body.len = 0;
    }
    c->state = SL_CONN_READ_BODY;
    if (h->expect_continue && !c->http10) {
        /* Only when the body is not already here: the client is waiting. */
        size_t have = c->in.len - c->head_len;
        if (have == 0) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            sl_buf_append(&c->out, cont, sizeof(cont) - 1);
            sl_conn_flush(c);
        }
    }
    arm_timer(c, SL_TIMER_BODY);
    return SL_OK;
}

/* Returns SL_OK when the body is complete (and dispatched), SL_EAGAIN for more. */
static int read_body(struct sl_http_conn *c)
{
    struct sl_http_request_head *h = &c->req.head;
    if (h->body_kind == SL_HTTP_BODY_LENGTH) {
        if (c->in.len - c->head_len < h->content_length)
            return SL_EAGAIN;
        c->body_raw = (size_t)h->content_length;
        c->req.body = (struct sl_str){c->in.base + c->head_len, c->body_raw};
        dispatch(c);
        return SL_OK;
    }
    size_t consumed = 0;
    char *raw = c->in.base + c->head_len;
    int err = sl_http_chunked_decode(&c->chunked, raw, c->in.len - c->head_len, &consumed,
                                     &c->chunked_body, (size_t)c->server->limits.max_body_bytes);
    /* Decoded bytes now live in chunked_body: drop their raw form so chunk
     * overhead never counts against memory. */
    memmove(raw, raw + consumed, c->in.len - c->head_len - consumed);
    c->in.len -= consumed;
    c->in.base[c->in.len] = '\0';
    if (err == SL_EAGAIN)
        return SL_EAGAIN;
    if (err == SL_ETOOBIG) {
        sl_response_protocol_error(c, 413, "the request body is larger than the allowed maximum");
        return err;
    }
    if (err != SL_OK) {
        sl_response_protocol_error(c, 400, "invalid chunked request body");
        return err;
    }
    c->body_raw = 0;
    c->req.body = (struct sl_str){c->chunked_body.base, c->chunked_body.len};
    dispatch(c);
    return SL_OK;
}

/* Move the parsed headers from the server's scratch space into the request's arena. */
static int keep_headers(struct sl_http_conn *c)
{
    struct sl_http_request_head *h = &c->req.head;
    struct sl_http_header *hs =
        sl_arena_alloc(&c->arena, (h->n_headers ? h->n_headers : 1) * sizeof(*hs));
    if (hs == NULL) {
        h->n_headers = 0;
        return SL_ENOMEM;
    }
    memcpy(hs, h->headers, h->n_headers * sizeof(*hs));
    h->headers = hs;
    return SL_OK;
}

static void conn_process(struct sl_http_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    for (;;) {
        if (c->state == SL_CONN_READ_HEAD) {
            if (c->in.len == 0)
                break;
            struct sl_http_parse_error perr = {0, NULL};
            c->req.head.headers = c->server->parse_headers;
            long n = sl_http_parse_request(c->in.base, c->in.len,
                                           (size_t)c->server->limits.max_header_bytes, &c->req.head,
                                           &perr);
            if (n == SL_EAGAIN)
                break;
            if (n < 0) {
                int status = perr.status ? perr.status : 400;
                const char *reason = perr.reason ? perr.reason : "malformed request";
                if (status == 431 && memchr(c->in.base, '\n', c->in.len) == NULL) {
                    /* Too large before the request line even ended: the target is too long. */
                    status = 414;
                    reason = "the request target is too long";
                }
                sl_response_protocol_error(c, status, reason);
                break;
            }
            c->head_len = (size_t)n;
            if (keep_headers(c) != SL_OK) {
                sl_response_protocol_error(c, 503, "the gateway is out of memory");
                break;
            }
            c->http10 = c->req.head.minor_version == 0;
            if (begin_body(c) != SL_OK)
                break;
            continue;
        }
        if (c->state == SL_CONN_READ_BODY) {
            if (read_body(c) != SL_OK)
                break;
            continue;
        }
        break; /* dispatched, lingering or closed */
    }
    c->in_process = false;
    if (c->state != SL_CONN_CLOSED)
        sl_conn_flush(c);
}

void sl_conn_request_done(struct sl_http_conn *c)
{
    struct sl_http_server *s = c->server;
    sl_server_log_access(s, c);
    c->req_owned = false;
    sl_arena_reset(&c->arena);
    if (c->state == SL_CONN_CLOSED) {
        conn_maybe_free(c);
        return;
    }
    /* Drop the finished request's bytes; a pipelined next one moves to the front. */
    sl_buf_consume(&c->in, c->head_len + c->body_raw);
    c->head_len = 0;
    c->body_raw = 0;
    c->req.body = SL_STR_NULL;
    sl_response_reset(c);
    if (!c->keep_alive || s->shutting_down) {
        c->close_after = true;
        c->state = SL_CONN_LINGER;
        sl_conn_flush(c);
        return;
    }
    c->state = SL_CONN_READ_HEAD;
    c->req.start_us = c->in.len ? sl_clock_mono_us() : 0;
    arm_timer(c, c->in.len ? SL_TIMER_HEAD : SL_TIMER_IDLE);
    conn_start_reading(c);
    if (!c->in_process) {
        conn_process(c); /* also flushes */
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct sl_http_conn *c = req->data;
    if (c->state == SL_CONN_CLOSED)
        return;
    if (status < 0) {
        sl_conn_close(c);
        return;
    }
    /* Our side is closed; wait a little for the client to close its side. */
    c->state = SL_CONN_LINGER;
    c->in.len = 0;
    conn_start_reading(c);
    arm_timer(c, SL_TIMER_LINGER);
}

static void after_output(struct sl_http_conn *c)
{
    if (c->close_after && !c->writing && c->out.len == 0) {
        c->close_after = false;
        if (c->peer_gone) {
            sl_conn_close(c);
            return;
        }
        c->state = SL_CONN_LINGER;
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            sl_conn_close(c);
        return;
    }
    size_t queued = c->out.len + c->inflight.len;
    if (c->was_congested && queued <= SL_HTTP_OUT_LOW_MARK) {
        c->was_congested = false;
        if (c->req_owned && c->on_drain)
            c->on_drain(&c->req, c->cb_data);
    }
}

static void on_write(uv_write_t *wr, int status)
{
    struct sl_http_conn *c = wr->data;
    c->writing = false;
    c->inflight.len = 0;
    if (c->state == SL_CONN_CLOSED)
        return;
    if (status < 0) {
        sl_conn_close(c);
        return;
    }
    sl_conn_flush(c);
}

void sl_conn_flush(struct sl_http_conn *c)
{
    if (c->state == SL_CONN_CLOSED || c->in_process)
        return;
    if (c->writing || c->out.len == 0) {
        after_output(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.base, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
        sl_conn_close(c);
        return;
    }
    if (n > 0)
        sl_buf_consume(&c->out, (size_t)n);
    if (c->out.len > 0) {
        /* The kernel is full: hand the rest to libuv and collect new output
         * in the other buffer meanwhile. */
        struct sl_buf tmp = c->inflight;
        c->inflight = c->out;
        c->out = tmp;
        c->out.len = 0;
        b = uv_buf_init(c->inflight.base, (unsigned)c->inflight.len);
        c->write_req.data = c;
        if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
            sl_conn_close(c);
            return;
        }
        c->writing = true;
    }
    after_output(c);
}

void sl_conn_drain(struct sl_http_conn *c)
{
    if (c->state == SL_CONN_READ_HEAD && c->in.len == 0 && !c->writing && c->out.len == 0) {
        sl_conn_close(c);
        return;
    }
    /* Otherwise the connection closes after the current response, which says
     * so when it has not started yet. */
    c->keep_alive = false;
}

void sl_conn_accept(struct sl_http_server *s, uv_stream_t *listener)
{
    struct sl_http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    sl_arena_init(&c->arena, 1024);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        sl_conn_close(c);
        return;
    }
    if (s->n_conns > s->limits.max_connections || s->shutting_down) {
        sl_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof(c->remote));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof(c->remote));
    }
    c->state = SL_CONN_READ_HEAD;
    c->timer_kind = SL_TIMER_NONE;
    arm_timer(c, SL_TIMER_HEAD);
    conn_start_reading(c);
}
