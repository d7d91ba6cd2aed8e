/*
 * The server and response writer over real loopback sockets: a client thread
 * with blocking sockets talks to a server running on a uv_loop in the test
 * thread. Covers streaming that is really incremental (SSE), chunked bodies
 * under backpressure from a slow reader, HTTP/1.0 close-delimited bodies and
 * HEAD.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <errno.h>
#include <unistd.h>

#include "../net_test.h"
#include "http/http.h"
#include "http/internal.h"

struct fixture {
    uv_loop_t loop;
    uv_async_t done;
    uv_timer_t poll;
    struct sl_http_server *server;
    uint16_t port;
    /* streaming handler state */
    struct sl_http_request *req;
    size_t stream_total, stream_sent;
    int congestions;
    int drains;
    atomic_bool client_got_first;
    /* client results */
    char *response;
    size_t response_len;
    const char *client_request;
    int connect_rc;
    int connect_retries; /* further attempts 10 ms apart when refused */
    int read_errno;
    size_t slow_read_delay_us;
    size_t held_in_room;  /* /held: unused room of the input buffer while dispatched */
    size_t event_out_cap; /* /events: capacity of the output buffer after the events */
};

/* Blocking client: send the request, read until EOF (or 10 s), keep everything. */
static void client_main(void *arg)
{
    struct fixture *f = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback_addr(f->port);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (f->slow_read_delay_us) {
        int small = 4096; /* a small window makes the server feel the slow reader */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    f->connect_rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    /* A resumed listener opens once the loop has run: allow it a moment. */
    for (int i = 0; f->connect_rc != 0 && i < f->connect_retries; i++) {
        close(fd);
        usleep(10000);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        f->connect_rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    }
    if (f->connect_rc == 0) {
        size_t n = strlen(f->client_request);
        if (write(fd, f->client_request, n) == (ssize_t)n) {
            size_t cap = 1 << 16;
            f->response = malloc(cap);
            for (;;) {
                if (f->response_len + 65536 > cap)
                    f->response = realloc(f->response, cap *= 2);
                ssize_t r = read(fd, f->response + f->response_len, 16384);
                if (r < 0)
                    f->read_errno = errno;
                if (r <= 0)
                    break;
                f->response_len += (size_t)r;
                if (memmem(f->response, f->response_len, "data: first\n\n", 13))
                    atomic_store(&f->client_got_first, true);
                if (f->slow_read_delay_us)
                    usleep((useconds_t)f->slow_read_delay_us);
            }
        }
    }
    close(fd);
    uv_async_send(&f->done);
}

static void on_server_closed(void *data)
{
    (void)data;
}

static void on_done(uv_async_t *h)
{
    struct fixture *f = h->data;
    sl_http_server_shutdown(f->server, 1000, on_server_closed, f);
    uv_close((uv_handle_t *)&f->done, NULL);
    if (!uv_is_closing((uv_handle_t *)&f->poll))
        uv_close((uv_handle_t *)&f->poll, NULL);
}

/* ---- handlers ---- */

static void pump(struct fixture *f)
{
    static char block[16384];
    while (f->stream_sent < f->stream_total) {
        if (sl_http_congested(f->req)) {
            f->congestions++;
            return; /* resumed by on_drain */
        }
        size_t n = SL_MIN(sizeof(block), f->stream_total - f->stream_sent);
        for (size_t i = 0; i < n; i++)
            block[i] = (char)('a' + (f->stream_sent + i) % 26);
        assert_int_equal(sl_http_write(f->req, block, n), SL_OK);
        f->stream_sent += n;
    }
    sl_http_finish(f->req);
    f->req = NULL;
}

static void on_drain(struct sl_http_request *req, void *data)
{
    struct fixture *f = data;
    f->drains++;
    pump(f);
}

static void on_abort(struct sl_http_request *req, void *data)
{
    struct fixture *f = data;
    sl_http_finish(req);
    f->req = NULL;
}

static void on_poll_first(uv_timer_t *t)
{
    struct fixture *f = t->data;
    if (!atomic_load(&f->client_got_first))
        return;
    uv_timer_stop(t);
    /* The client has the first event while the response is still open: so
     * nothing was buffered. Now end the stream. */
    sl_http_write(f->req, "data: [DONE]\n\n", 14);
    sl_http_finish(f->req);
    f->req = NULL;
}

static void on_held_tick(uv_timer_t *t)
{
    struct fixture *f = t->data;
    uv_timer_stop(t);
    /* Long after dispatch: the head's and the body's views still hold. */
    const struct sl_http_header *h = sl_http_find_header(&f->req->head, SL_STR("X-Thing"));
    struct sl_http_header out = {SL_STR("X-Thing-Was"), h ? h->value : SL_STR("none")};
    sl_http_start_response(f->req, 200, &out, 1, SL_HTTP_FRAMING_LENGTH, f->req->body.len);
    sl_http_write(f->req, f->req->body.base, f->req->body.len);
    sl_http_finish(f->req);
    f->req = NULL;
}

static void on_events_tick(uv_timer_t *t)
{
    struct fixture *f = t->data;
    static char event[3000];
    uv_timer_stop(t);
    memset(event, 'x', sizeof(event));
    memcpy(event, "data: ", 6);
    memcpy(event + sizeof(event) - 2, "\n\n", 2);
    for (int i = 0; i < 3; i++)
        sl_http_write(f->req, event, sizeof(event));
    const struct sl_http_conn *c = f->req->conn;
    f->event_out_cap = c->out.cap;
    sl_http_finish(f->req);
    f->req = NULL;
}

static void on_request(struct sl_http_request *req, void *data)
{
    struct fixture *f = data;
    f->req = req;
    if (sl_str_eq(req->head.path, SL_STR("/events"))) {
        struct sl_http_header h = {SL_STR("Content-Type"), SL_STR("text/event-stream")};
        sl_http_start_response(req, 200, &h, 1, SL_HTTP_FRAMING_CHUNKED, 0);
        sl_http_flush(req);
        uv_timer_start(&f->poll, on_events_tick, 20, 0);
        return;
    }
    if (sl_str_eq(req->head.path, SL_STR("/held"))) {
        const struct sl_http_conn *c = req->conn;
        f->held_in_room = c->in.cap - c->in.len;
        uv_timer_start(&f->poll, on_held_tick, 20, 0);
        return;
    }
    if (sl_str_eq(req->head.path, SL_STR("/sse"))) {
        struct sl_http_header h = {SL_STR("Content-Type"), SL_STR("text/event-stream")};
        sl_http_start_response(req, 200, &h, 1, SL_HTTP_FRAMING_CHUNKED, 0);
        sl_http_set_callbacks(req, NULL, on_abort, f);
        sl_http_write(req, "data: first\n\n", 13);
        uv_timer_start(&f->poll, on_poll_first, 1, 1);
        return;
    }
    if (sl_str_eq(req->head.path, SL_STR("/big"))) {
        sl_http_start_response(req, 200, NULL, 0, SL_HTTP_FRAMING_CHUNKED, 0);
        sl_http_set_callbacks(req, on_drain, on_abort, f);
        pump(f);
        return;
    }
    if (sl_str_eq(req->head.path, SL_STR("/cut")) || sl_str_eq(req->head.path, SL_STR("/reset"))) {
        sl_http_start_response(req, 200, NULL, 0, SL_HTTP_FRAMING_CHUNKED, 0);
        sl_http_write(req, "data: {\"half", 12);
        sl_http_abort(req, sl_str_eq(req->head.path, SL_STR("/reset")));
        f->req = NULL;
        return;
    }
    if (sl_str_eq(req->head.path, SL_STR("/length-only"))) {
        /* A HEAD answer as a proxy relays it: the length of a body it never sends. */
        sl_http_start_response(req, 200, NULL, 0, SL_HTTP_FRAMING_LENGTH, 5);
        sl_http_finish(req);
        f->req = NULL;
        return;
    }
    if (sl_str_eq(req->head.path, SL_STR("/echo"))) {
        sl_http_respond(req, 200, SL_STR("text/plain"), req->body);
        f->req = NULL;
        return;
    }
    sl_http_respond_error(req, 404, "NotFound", "no such path");
    f->req = NULL;
}

static void run(struct fixture *f, const char *request)
{
    memset(f, 0, sizeof(*f));
    uv_loop_init(&f->loop);
    f->port = free_port();
    struct sl_config_addr addr = {"127.0.0.1", f->port};
    struct sl_config_limits limits = {16384, 1 << 20, 5000, 5000, 5000, 1000, 100};
    struct sl_http_server_options opts = {
        .listen = &addr,
        .n_listen = 1,
        .limits = &limits,
        .name = "test",
        .on_request = on_request,
        .data = f,
    };
    assert_int_equal(sl_http_server_new(&f->loop, &opts, &f->server), SL_OK);
    uv_async_init(&f->loop, &f->done, on_done);
    f->done.data = f;
    uv_timer_init(&f->loop, &f->poll);
    f->poll.data = f;
    f->client_request = request;
}

static void run_client(struct fixture *f)
{
    uv_thread_t t;
    uv_thread_create(&t, client_main, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_thread_join(&t);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Decode a chunked body that starts right after the head. */
static size_t dechunk(const char *p, size_t len, char *out)
{
    size_t n = 0;
    const char *end = p + len;
    while (p < end) {
        char *eol;
        unsigned long size = strtoul(p, &eol, 16);
        assert_true(eol + 2 <= end && eol[0] == '\r' && eol[1] == '\n');
        p = eol + 2;
        if (size == 0)
            break;
        assert_true(p + size + 2 <= end);
        memcpy(out + n, p, size);
        n += size;
        p += size + 2;
    }
    return n;
}

static const char *body_of(struct fixture *f)
{
    char *sep = memmem(f->response, f->response_len, "\r\n\r\n", 4);
    assert_non_null(sep);
    return sep + 4;
}

static void test_sse_is_incremental(void **state)
{
    struct fixture f;
    run(&f, "GET /sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    run_client(&f);
    assert_true(atomic_load(&f.client_got_first));
    assert_non_null(memmem(f.response, f.response_len, "Transfer-Encoding: chunked", 26));
    assert_non_null(memmem(f.response, f.response_len, "text/event-stream", 17));
    char out[256];
    const char *b = body_of(&f);
    size_t n = dechunk(b, f.response_len - (size_t)(b - f.response), out);
    assert_int_equal(n, 27);
    assert_memory_equal(out, "data: first\n\ndata: [DONE]\n\n", 27);
    free(f.response);
}

static void test_backpressure_with_slow_reader(void **state)
{
    struct fixture f;
    run(&f, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f.stream_total = 4 << 20;
    f.slow_read_delay_us = 200;
    run_client(&f);
    /* The writer must have stopped at the high mark and resumed on drain,
     * rather than queueing all 4 MiB. */
    assert_true(f.congestions > 0);
    assert_true(f.drains > 0);
    char *out = malloc(f.stream_total);
    const char *b = body_of(&f);
    size_t n = dechunk(b, f.response_len - (size_t)(b - f.response), out);
    assert_int_equal(n, f.stream_total);
    for (size_t i = 0; i < n; i += 4093)
        assert_int_equal(out[i], (char)('a' + i % 26));
    free(out);
    free(f.response);
}

static void test_http10_stream_is_close_delimited(void **state)
{
    struct fixture f;
    run(&f, "GET /big HTTP/1.0\r\n\r\n");
    f.stream_total = 100000;
    run_client(&f);
    assert_null(memmem(f.response, f.response_len, "Transfer-Encoding", 17));
    assert_non_null(memmem(f.response, f.response_len, "Connection: close", 17));
    const char *b = body_of(&f);
    assert_int_equal(f.response_len - (size_t)(b - f.response), 100000);
    free(f.response);
}

static void test_head_has_no_body(void **state)
{
    struct fixture f;
    run(&f,
        "HEAD /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    run_client(&f);
    assert_non_null(memmem(f.response, f.response_len, "Content-Length: 5\r\n", 19));
    const char *b = body_of(&f);
    assert_int_equal(f.response_len - (size_t)(b - f.response), 0);
    free(f.response);
}

static void test_head_keeps_the_connection(void **state)
{
    struct fixture f;
    run(&f, "HEAD /length-only HTTP/1.1\r\nHost: x\r\n\r\n"
            "HEAD /length-only HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    run_client(&f);
    /* Both answered on one connection: the first did not close it. */
    const char *second = memmem(f.response + 1, f.response_len - 1, "HTTP/1.1 200", 12);
    assert_non_null(second);
    assert_null(memmem(f.response, (size_t)(second - f.response), "Connection: close", 17));
    free(f.response);
}

static void test_echo_chunked_request_body(void **state)
{
    struct fixture f;
    run(&f,
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
    run_client(&f);
    assert_non_null(memmem(f.response, f.response_len, "HTTP/1.1 200 OK\r\n", 17));
    const char *b = body_of(&f);
    assert_int_equal(f.response_len - (size_t)(b - f.response), 11);
    assert_memory_equal(b, "hello world", 11);
    free(f.response);
}

static void test_held_request_gives_back_input_room(void **state)
{
    /* A handler that keeps its request (a stream) does not keep the input
     * buffer's spare room meanwhile, and what it holds stays valid. */
    struct fixture f;
    run(&f, "POST /held HTTP/1.1\r\nHost: x\r\nX-Thing: kept value\r\nContent-Length: 11\r\n"
            "Connection: close\r\n\r\nhello world");
    run_client(&f);
    assert_true(f.held_in_room <= 1 + SL_HTTP_IN_SLACK);
    assert_non_null(memmem(f.response, f.response_len, "HTTP/1.1 200 OK\r\n", 17));
    assert_non_null(memmem(f.response, f.response_len, "X-Thing-Was: kept value\r\n", 25));
    const char *b = body_of(&f);
    assert_int_equal(f.response_len - (size_t)(b - f.response), 11);
    assert_memory_equal(b, "hello world", 11);
    free(f.response);
}

static void test_stream_events_bypass_the_output_buffer(void **state)
{
    /* Events for a client that keeps up go to the kernel from the caller's
     * memory: the output buffer stays as small as the head left it. */
    struct fixture f;
    run(&f, "GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    run_client(&f);
    assert_true(f.event_out_cap < 3000);
    char body[9000];
    const char *b = body_of(&f);
    size_t n = dechunk(b, f.response_len - (size_t)(b - f.response), body);
    assert_int_equal(n, 9000);
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(body + i * 3000, "data: xxx", 9);
        assert_memory_equal(body + i * 3000 + 2998, "\n\n", 2);
    }
    free(f.response);
}

static void test_abort_cuts_the_stream(void **state)
{
    struct fixture f;
    run(&f, "GET /cut HTTP/1.1\r\nHost: x\r\n\r\n");
    run_client(&f);
    /* What was written arrives, then EOF: no final chunk, so the client can
     * tell the body is incomplete. */
    const char *b = body_of(&f);
    size_t n = f.response_len - (size_t)(b - f.response);
    assert_int_equal(n, 17);
    assert_memory_equal(b, "c\r\ndata: {\"half\r\n", 17);
    assert_int_equal(f.read_errno, 0);
    free(f.response);
}

static void test_abort_with_reset(void **state)
{
    struct fixture f;
    run(&f, "GET /reset HTTP/1.1\r\nHost: x\r\n\r\n");
    run_client(&f);
    assert_int_equal(f.read_errno, ECONNRESET);
    free(f.response);
}

static void on_pause_poll(uv_timer_t *t);

static void test_pause_refuses_connections(void **state)
{
    struct fixture f;
    run(&f, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    sl_http_server_pause(f.server);
    sl_http_server_pause(f.server); /* idempotent */
    uv_timer_start(&f.poll, on_pause_poll, 1, 0);
    run_client(&f);
    assert_int_equal(f.connect_rc, -1);
    free(f.response);

    /* Resumed (before the closing handles have even finished), it listens again. */
    struct fixture g;
    run(&g, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    sl_http_server_pause(g.server);
    assert_int_equal(sl_http_server_resume(g.server), SL_OK);
    g.connect_retries = 200;
    run_client(&g);
    assert_int_equal(g.connect_rc, 0);
    assert_non_null(memmem(g.response, g.response_len, "HTTP/1.1 200 OK", 15));
    free(g.response);
}

static void on_pause_poll(uv_timer_t *t)
{
    (void)t; /* keeps the loop turning until the client reports */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_is_incremental),
        cmocka_unit_test(test_backpressure_with_slow_reader),
        cmocka_unit_test(test_http10_stream_is_close_delimited),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_echo_chunked_request_body),
        cmocka_unit_test(test_held_request_gives_back_input_room),
        cmocka_unit_test(test_stream_events_bypass_the_output_buffer),
        cmocka_unit_test(test_head_keeps_the_connection),
        cmocka_unit_test(test_abort_cuts_the_stream),
        cmocka_unit_test(test_abort_with_reset),
        cmocka_unit_test(test_pause_refuses_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
