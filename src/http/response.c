/*
 * The response writer: serializes the status line and headers, frames the
 * body (Content-Length, chunked, or close-delimited for HTTP/1.0), and queues
 * bytes on the connection with backpressure.
 */
#include "http/internal.h"

#include <limits.h>
#include <string.h>

struct status_entry {
    int status;
    const char *reason;
    const char *code; /* Azure-style error code */
};

static const struct status_entry statuses[] = {
    {100, "Continue", "Continue"},
    {200, "OK", "OK"},
    {201, "Created", "Created"},
    {202, "Accepted", "Accepted"},
    {204, "No Content", "NoContent"},
    {301, "Moved Permanently", "MovedPermanently"},
    {302, "Found", "Found"},
    {304, "Not Modified", "NotModified"},
    {400, "Bad Request", "BadRequest"},
    {401, "Unauthorized", "Unauthorized"},
    {402, "Payment Required", "PaymentRequired"},
    {403, "Forbidden", "Forbidden"},
    {404, "Not Found", "NotFound"},
    {405, "Method Not Allowed", "MethodNotAllowed"},
    {408, "Request Timeout", "RequestTimeout"},
    {409, "Conflict", "Conflict"},
    {411, "Length Required", "LengthRequired"},
    {413, "Payload Too Large", "PayloadTooLarge"},
    {414, "URI Too Long", "UriTooLong"},
    {415, "Unsupported Media Type", "UnsupportedMediaType"},
    {417, "Expectation Failed", "ExpectationFailed"},
    {422, "Unprocessable Entity", "UnprocessableEntity"},
    {429, "Too Many Requests", "429"},
    {431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge"},
    {500, "Internal Server Error", "InternalServerError"},
    {501, "Not Implemented", "NotImplemented"},
    {502, "Bad Gateway", "BadGateway"},
    {503, "Service Unavailable", "ServiceUnavailable"},
    {504, "Gateway Timeout", "GatewayTimeout"},
    {505, "HTTP Version Not Supported", "HttpVersionNotSupported"},
};

static const struct status_entry *find_status(int status)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(statuses); i++)
        if (statuses[i].status == status)
            return &statuses[i];
    return NULL;
}

const char *sl_http_status_reason(int status)
{
    const struct status_entry *e = find_status(status);
    return e ? e->reason : "Unknown";
}

const char *sl_http_status_code_name(int status)
{
    const struct status_entry *e = find_status(status);
    return e ? e->code : "Error";
}

void sl_response_reset(struct sl_http_conn *c)
{
    c->status = 0;
    c->response_started = false;
    c->framing = SL_HTTP_FRAMING_LENGTH;
    c->content_length = 0;
    c->body_sent = 0;
    c->bytes_total = 0;
    c->on_drain = NULL;
    c->on_abort = NULL;
    c->cb_data = NULL;
    c->req.log_usage = NULL;
}

#define APPEND_LIT(b, lit) sl_buf_append((b), (lit), sizeof(lit) - 1)

static void append_head(struct sl_http_conn *c, int status, const struct sl_http_header *headers,
                        size_t n_headers, bool close)
{
    struct sl_buf *o = &c->out;
    size_t before = o->len;
    APPEND_LIT(o, "HTTP/1.1 ");
    sl_buf_append_u64(o, (uint64_t)status);
    sl_buf_append(o, " ", 1);
    const char *reason = sl_http_status_reason(status);
    sl_buf_append(o, reason, strlen(reason));
    APPEND_LIT(o, "\r\nDate: ");
    const char *date = sl_server_date(c->server);
    sl_buf_append(o, date, strlen(date));
    APPEND_LIT(o, "\r\n");
    for (size_t i = 0; i < n_headers; i++) {
        sl_buf_append_str(o, headers[i].name);
        APPEND_LIT(o, ": ");
        sl_buf_append_str(o, headers[i].value);
        APPEND_LIT(o, "\r\n");
    }
    if (c->framing == SL_HTTP_FRAMING_LENGTH) {
        APPEND_LIT(o, "Content-Length: ");
        sl_buf_append_u64(o, c->content_length);
        APPEND_LIT(o, "\r\n");
    } else if (!c->http10) {
        APPEND_LIT(o, "Transfer-Encoding: chunked\r\n");
    }
    APPEND_LIT(o, "x-request-id: ");
    sl_buf_append(o, c->req.id, strlen(c->req.id));
    APPEND_LIT(o, "\r\n");
    if (close)
        APPEND_LIT(o, "Connection: close\r\n");
    else if (c->http10)
        APPEND_LIT(o, "Connection: keep-alive\r\n");
    APPEND_LIT(o, "\r\n");
    c->bytes_total += o->len - before;
}

int sl_http_start_response(struct sl_http_request *req, int status,
                           const struct sl_http_header *headers, size_t n_headers,
                           enum sl_http_framing framing, uint64_t content_length)
{
    struct sl_http_conn *c = req->conn;
    if (c->response_started)
        return SL_ESTATE;
    c->response_started = true;
    c->status = status;
    c->framing = framing;
    c->content_length = content_length;
    /* HTTP/1.0 has no chunked coding: such a body ends when the connection does. */
    if (framing == SL_HTTP_FRAMING_CHUNKED && c->http10)
        c->keep_alive = false;
    if (c->peer_gone)
        return SL_ESTATE;
    append_head(c, status, headers, n_headers, !c->keep_alive);
    return SL_OK;
}

int sl_http_write(struct sl_http_request *req, const void *data, size_t len)
{
    struct sl_http_conn *c = req->conn;
    if (!c->response_started)
        return SL_ESTATE;
    if (c->peer_gone)
        return SL_ESTATE;
    if (len == 0)
        return SL_OK;
    if (c->framing == SL_HTTP_FRAMING_LENGTH && c->body_sent + len > c->content_length)
        return SL_EINVAL;
    c->body_sent += len;
    if (req->is_head)
        return SL_OK;
    bool chunked = c->framing == SL_HTTP_FRAMING_CHUNKED && !c->http10;
    char line[20]; /* chunked: the chunk's size in hex and CRLF */
    unsigned n = 0;
    if (chunked) {
        static const char hex[] = "0123456789abcdef";
        char digits[16];
        unsigned d = 0;
        for (size_t v = len; v; v >>= 4)
            digits[d++] = hex[v & 15];
        while (d)
            line[n++] = digits[--d];
        line[n++] = '\r';
        line[n++] = '\n';
    }
    const struct sl_str parts[3] = {
        {line, n},
        {data, len},
        {"\r\n", chunked ? 2 : 0},
    };
    c->bytes_total += parts[0].len + parts[1].len + parts[2].len;
    size_t done = 0;
    /* Nothing queued and the socket idle (a stream keeping up): hand the
     * parts to the kernel as they are, without copying them into `out`,
     * which then need not grow to the size of an event. */
    if (c->out.len == 0 && !c->writing && !c->in_process && len <= UINT_MAX) {
        uv_buf_t bufs[3];
        for (size_t i = 0; i < 3; i++)
            bufs[i] = uv_buf_init((char *)parts[i].base, (unsigned)parts[i].len);
        int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, 3);
        if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) {
            sl_conn_close(c);
            return SL_OK;
        }
        done = w > 0 ? (size_t)w : 0;
    }
    /* What the kernel did not take is queued. */
    for (size_t i = 0; i < 3; i++) {
        size_t skip = SL_MIN(done, parts[i].len);
        done -= skip;
        if (parts[i].len > skip &&
            sl_buf_append(&c->out, parts[i].base + skip, parts[i].len - skip) != SL_OK)
            return SL_ENOMEM;
    }
    if (sl_http_congested(req))
        c->was_congested = true;
    sl_conn_flush(c);
    return SL_OK;
}

void sl_http_flush(struct sl_http_request *req)
{
    sl_conn_flush(req->conn);
}

bool sl_http_congested(const struct sl_http_request *req)
{
    const struct sl_http_conn *c = req->conn;
    return c->out.len + c->inflight.len > SL_HTTP_OUT_HIGH_MARK;
}

void sl_http_set_callbacks(struct sl_http_request *req, sl_http_on_drain on_drain,
                           sl_http_on_abort on_abort, void *data)
{
    struct sl_http_conn *c = req->conn;
    c->on_drain = on_drain;
    c->on_abort = on_abort;
    c->cb_data = data;
}

void sl_http_finish(struct sl_http_request *req)
{
    struct sl_http_conn *c = req->conn;
    if (!c->peer_gone) {
        if (!c->response_started) {
            /* The handler gave up without answering: say so rather than hang. */
            sl_log_error("request %s: handler finished without a response", req->id);
            c->keep_alive = false;
            sl_http_respond_error(req, 500, "InternalServerError",
                                  "the gateway failed to produce a response");
            return; /* sl_http_respond_error finished the request */
        }
        if (c->framing == SL_HTTP_FRAMING_CHUNKED && !c->http10) {
            if (!req->is_head) {
                APPEND_LIT(&c->out, "0\r\n\r\n");
                c->bytes_total += 5;
            }
        } else if (c->framing == SL_HTTP_FRAMING_LENGTH && c->body_sent != c->content_length &&
                   !req->is_head) {
            /* Cut short: only closing tells the client the body is incomplete. */
            c->keep_alive = false;
        }
    }
    sl_conn_request_done(c);
}

void sl_http_abort(struct sl_http_request *req, bool reset)
{
    struct sl_http_conn *c = req->conn;
    c->keep_alive = false;
    if (reset)
        sl_conn_reset(c);
    sl_conn_request_done(c);
}

void sl_http_respond(struct sl_http_request *req, int status, struct sl_str content_type,
                     struct sl_str body)
{
    struct sl_http_header h = {SL_STR("Content-Type"), content_type};
    if (sl_http_start_response(req, status, &h, content_type.len ? 1 : 0, SL_HTTP_FRAMING_LENGTH,
                               body.len) == SL_OK)
        sl_http_write(req, body.base, body.len);
    sl_http_finish(req);
}

static void append_error_body(struct sl_buf *b, const char *code, const char *message)
{
    APPEND_LIT(b, "{\"error\":{\"code\":\"");
    sl_buf_append_json_escaped(b, sl_str_from_cstr(code));
    APPEND_LIT(b, "\",\"message\":\"");
    sl_buf_append_json_escaped(b, sl_str_from_cstr(message));
    APPEND_LIT(b, "\"}}");
}

void sl_http_respond_error(struct sl_http_request *req, int status, const char *code,
                           const char *message)
{
    sl_http_respond_error_with(req, status, code, message, NULL, 0);
}

void sl_http_respond_error_with(struct sl_http_request *req, int status, const char *code,
                                const char *message, const struct sl_http_header *extra,
                                size_t n_extra)
{
    struct sl_buf body;
    struct sl_http_header hs[8];
    size_t n = 0;
    hs[n++] = (struct sl_http_header){SL_STR("Content-Type"), SL_STR("application/json")};
    for (size_t i = 0; i < n_extra && n < SL_ARRAY_LEN(hs); i++)
        hs[n++] = extra[i];
    sl_buf_init(&body);
    append_error_body(&body, code ? code : sl_http_status_code_name(status), message);
    if (sl_http_start_response(req, status, hs, n, SL_HTTP_FRAMING_LENGTH, body.len) == SL_OK)
        sl_http_write(req, body.base, body.len);
    sl_http_finish(req);
    sl_buf_dispose(&body);
}

void sl_response_protocol_error(struct sl_http_conn *c, int status, const char *message)
{
    /* No handler saw this request: answer it here and close. */
    sl_response_reset(c);
    c->keep_alive = false;
    c->http10 = false;
    if (c->head_len == 0) {
        /* The head never parsed: nothing of it is worth logging. */
        c->req.head.method = SL_STR_NULL;
        c->req.head.path = SL_STR_NULL;
    }
    sl_conn_set_request_id(c);
    struct sl_buf body;
    sl_buf_init(&body);
    append_error_body(&body, sl_http_status_code_name(status), message);
    struct sl_http_header h = {SL_STR("Content-Type"), SL_STR("application/json")};
    c->response_started = true;
    c->status = status;
    c->framing = SL_HTTP_FRAMING_LENGTH;
    c->content_length = body.len;
    append_head(c, status, &h, 1, true);
    sl_buf_append(&c->out, body.base, body.len);
    c->bytes_total += body.len;
    c->body_sent = body.len;
    sl_buf_dispose(&body);
    if (c->req.start_us == 0)
        c->req.start_us = sl_clock_mono_us();
    sl_server_log_access(c->server, c);
    c->head_len = 0;
    c->body_raw = 0;
    c->close_after = true;
    c->state = SL_CONN_LINGER;
    sl_conn_flush(c);
}
