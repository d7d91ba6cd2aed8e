/*
 * The upstream client against real loopback servers: sluice's own HTTP
 * server on the same loop (echo, streams on timers, stalls, a big body
 * under backpressure), a blocking thread that plays canned byte sequences
 * (interim responses, folded and malformed heads, cut bodies), and, when the
 * openssl tool is installed, `openssl s_server` for TLS verification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../net_test.h"
#include "http/http.h"
#include "upstream/internal.h"
#include "upstream/upstream.h"

#define MAX_RECS 256

/* One transfer as the test sees it, and how it should behave. */
struct rec {
    struct sl_upstream_xfer *x;
    int status;
    int n_response;
    struct sl_buf heads; /* "Name: value\n" for every response header */
    size_t n_heads;
    struct sl_buf body;
    int n_body;
    bool done;
    enum sl_upstream_failure failure;
    char message[600];
    uint64_t start_ms, done_ms;
    bool cancelled;
    int after_end; /* callbacks after on_done or cancel: must stay 0 */
    char req_body[32];
    /* behaviour */
    int cancel_at_body; /* cancel inside the n-th on_body (1-based) */
    bool cancel_at_response;
    int pause_every;        /* return false from every n-th on_body... */
    int pause_ms;           /* ...and resume this much later */
    int first_pause_ms;     /* return false from the first on_body, resume this much later */
    bool pause_at_response; /* sl_upstream_pause from on_response (outside on_body) */
    bool paused;
    int body_while_paused;
    size_t largest_body;         /* the most bytes one on_body call had */
    bool gate;                   /* the /gate stream: see test_streaming_is_incremental */
    void (*then)(struct rec *r); /* in on_done */
    void (*on_first_body)(struct rec *r);
    struct rec *victim; /* cancelled from this transfer's on_response */
};

static struct fx {
    uv_loop_t loop;
    struct sl_http_server *server;
    struct sl_upstream *u;
    uint16_t port;
    char base[64]; /* http://127.0.0.1:port */
    uv_timer_t watchdog, resume, later;
    struct rec *resume_rec;
    void (*later_fn)(void);
    void (*all_done)(void); /* when pending reaches 0, instead of finishing */
    int pending;            /* transfers whose end the test waits for */
    bool closing;
    bool upstream_closed;
    int calls_after_close;
    /* what the server saw */
    int requests;
    int server_aborts;
    int congestions;
    bool gate_first_seen;
    bool gate_last_sent;
    int first_bodies;
    int close_after_first_bodies;
    struct rec recs[MAX_RECS];
} F;

/* ---- the loop's end ---- */

static void on_upstream_closed(void *data)
{
    F.upstream_closed = true;
}

static void on_server_closed(void *data) {}

/* The test's work is over: close everything so uv_run returns. */
static void finish(void)
{
    if (F.closing)
        return;
    F.closing = true;
    uv_close((uv_handle_t *)&F.watchdog, NULL);
    uv_close((uv_handle_t *)&F.resume, NULL);
    uv_close((uv_handle_t *)&F.later, NULL);
    sl_upstream_close(F.u, on_upstream_closed, NULL);
    sl_http_server_shutdown(F.server, 0, on_server_closed, NULL);
}

static void one_ended(void)
{
    if (--F.pending > 0)
        return;
    void (*fn)(void) = F.all_done;
    F.all_done = NULL;
    if (fn)
        fn();
    if (F.pending == 0)
        finish();
}

static void on_watchdog(uv_timer_t *t)
{
    fail_msg("the test did not finish in time");
}

static void on_later(uv_timer_t *t)
{
    void (*fn)(void) = F.later_fn;
    F.later_fn = NULL;
    fn();
}

static void later(uint64_t ms, void (*fn)(void))
{
    F.later_fn = fn;
    uv_timer_start(&F.later, on_later, ms, 0);
}

/* ---- the test server (sluice's own, on the same loop) ---- */

struct sreq {
    struct sl_http_request *req;
    uv_timer_t timer;
    unsigned n, i, ms;
    size_t total, sent;
    bool gate;
};

static void on_sreq_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sreq_end(struct sreq *s)
{
    uv_timer_stop(&s->timer);
    sl_http_finish(s->req);
    uv_close((uv_handle_t *)&s->timer, on_sreq_closed);
}

static void on_sreq_abort(struct sl_http_request *req, void *data)
{
    F.server_aborts++;
    sreq_end(data);
}

static void on_hold_abort(struct sl_http_request *req, void *data)
{
    F.server_aborts++;
    sl_http_finish(req);
}

static struct sreq *sreq_new(struct sl_http_request *req)
{
    struct sreq *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->req = req;
    uv_timer_init(&F.loop, &s->timer);
    s->timer.data = s;
    return s;
}

static unsigned qnum(struct sl_http_request *req, const char *name, unsigned dflt)
{
    uint64_t v;
    struct sl_str s = sl_query_param(req->head.query, sl_str_from_cstr(name));
    return s.len && sl_str_to_u64(s, &v) == SL_OK ? (unsigned)v : dflt;
}

static void on_stream_tick(uv_timer_t *t)
{
    struct sreq *s = t->data;
    char line[32];
    if (s->gate) {
        if (!F.gate_first_seen)
            return; /* keep polling: the client has not seen "first" yet */
        F.gate_last_sent = true;
        sl_http_write(s->req, "last\n", 5);
        sreq_end(s);
        return;
    }
    int n = snprintf(line, sizeof(line), "chunk %u\n", s->i++);
    sl_http_write(s->req, line, (size_t)n);
    sl_http_flush(s->req);
    if (s->i == s->n)
        sreq_end(s);
}

static void serve_stream(struct sl_http_request *req, bool gate)
{
    struct sreq *s = sreq_new(req);
    s->gate = gate;
    s->n = qnum(req, "n", 5);
    s->ms = qnum(req, "ms", 10);
    struct sl_http_header h = {SL_STR("Content-Type"), SL_STR("text/event-stream")};
    sl_http_start_response(req, 200, &h, 1, SL_HTTP_FRAMING_CHUNKED, 0);
    sl_http_set_callbacks(req, NULL, on_sreq_abort, s);
    if (gate) {
        sl_http_write(req, "first\n", 6);
        sl_http_flush(req);
        uv_timer_start(&s->timer, on_stream_tick, 1, 1);
        return;
    }
    uv_timer_start(&s->timer, on_stream_tick, 0, s->ms);
}

static void pump(struct sreq *s)
{
    static char block[16384];
    while (s->sent < s->total) {
        if (sl_http_congested(s->req)) {
            F.congestions++;
            return; /* on_drain calls again */
        }
        size_t n = SL_MIN(sizeof(block), s->total - s->sent);
        for (size_t i = 0; i < n; i++)
            block[i] = (char)('a' + (s->sent + i) % 26);
        sl_http_write(s->req, block, n);
        s->sent += n;
    }
    sreq_end(s);
}

static void on_big_drain(struct sl_http_request *req, void *data)
{
    pump(data);
}

static void on_slow_tick(uv_timer_t *t)
{
    struct sreq *s = t->data;
    uv_timer_stop(t);
    sl_http_start_response(s->req, 200, NULL, 0, SL_HTTP_FRAMING_LENGTH, 2);
    sl_http_write(s->req, "ok", 2);
    sreq_end(s);
}

static struct sl_str header_or_none(struct sl_http_request *req, const char *name)
{
    const struct sl_http_header *h = sl_http_find_header(&req->head, sl_str_from_cstr(name));
    return h ? h->value : SL_STR("(none)");
}

static void serve_echo(struct sl_http_request *req)
{
    struct sl_http_header hs[] = {
        {SL_STR("X-Test"), SL_STR("yes")},
        {SL_STR("X-Method"), req->head.method},
        {SL_STR("X-Accept"), header_or_none(req, "Accept")},
        {SL_STR("X-Content-Type"), header_or_none(req, "Content-Type")},
        {SL_STR("X-Expect"), header_or_none(req, "Expect")},
        {SL_STR("X-Api-Key"), header_or_none(req, "api-key")},
        {SL_STR("X-Empty-Seen"), header_or_none(req, "X-Empty")},
        {SL_STR("X-Connection"), header_or_none(req, "Connection")},
    };
    sl_http_start_response(req, 200, hs, SL_ARRAY_LEN(hs), SL_HTTP_FRAMING_LENGTH, req->body.len);
    sl_http_write(req, req->body.base, req->body.len);
    sl_http_finish(req);
}

static void serve_headers(struct sl_http_request *req)
{
    static char names[64][16];
    struct sl_http_header hs[64];
    unsigned n = SL_MIN(qnum(req, "n", 10), 64);
    for (unsigned i = 0; i < n; i++) {
        int len = snprintf(names[i], sizeof(names[i]), "X-H-%u", i);
        hs[i].name = (struct sl_str){names[i], (size_t)len};
        hs[i].value = SL_STR("v");
    }
    sl_http_start_response(req, 200, hs, n, SL_HTTP_FRAMING_LENGTH, 0);
    sl_http_finish(req);
}

static void on_request(struct sl_http_request *req, void *data)
{
    F.requests++;

    struct sl_str path = req->head.path;
    if (sl_str_eq(path, SL_STR("/echo"))) {
        serve_echo(req);
    } else if (sl_str_eq(path, SL_STR("/headers"))) {
        serve_headers(req);
    } else if (sl_str_eq(path, SL_STR("/stream"))) {
        serve_stream(req, false);
    } else if (sl_str_eq(path, SL_STR("/gate"))) {
        serve_stream(req, true);
    } else if (sl_str_eq(path, SL_STR("/stall"))) {
        sl_http_set_callbacks(req, NULL, on_hold_abort, NULL);
    } else if (sl_str_eq(path, SL_STR("/stall-body"))) {
        sl_http_start_response(req, 200, NULL, 0, SL_HTTP_FRAMING_CHUNKED, 0);
        sl_http_write(req, "first", 5);
        sl_http_flush(req);
        sl_http_set_callbacks(req, NULL, on_hold_abort, NULL);
    } else if (sl_str_eq(path, SL_STR("/big"))) {
        struct sreq *s = sreq_new(req);
        s->total = qnum(req, "size", 1 << 20);
        sl_http_start_response(req, 200, NULL, 0, SL_HTTP_FRAMING_CHUNKED, 0);
        sl_http_set_callbacks(req, on_big_drain, on_sreq_abort, s);
        pump(s);
    } else if (sl_str_eq(path, SL_STR("/slow"))) {
        struct sreq *s = sreq_new(req);
        sl_http_set_callbacks(req, NULL, on_sreq_abort, s);
        uv_timer_start(&s->timer, on_slow_tick, qnum(req, "ms", 50), 0);
    } else {
        sl_http_respond_error(req, 404, "NotFound", "no such path");
    }
}

static void dispose_recs(void);

static void setup_fx(void)
{
    dispose_recs();
    memset(&F, 0, sizeof(F));
    assert_int_equal(uv_loop_init(&F.loop), 0);
    F.port = free_port();
    snprintf(F.base, sizeof(F.base), "http://127.0.0.1:%u", F.port);
    struct sl_config_addr addr = {.port = F.port};
    snprintf(addr.host, sizeof(addr.host), "127.0.0.1");
    struct sl_config_limits limits = {
        .max_header_bytes = 16384,
        .max_body_bytes = 1 << 24,
        .header_timeout_ms = 10000,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .shutdown_timeout_ms = 1000,
        .max_connections = 2000,
    };
    struct sl_http_server_options opts = {
        .listen = &addr,
        .n_listen = 1,
        .limits = &limits,
        .name = "test",
        .on_request = on_request,
    };
    assert_int_equal(sl_http_server_new(&F.loop, &opts, &F.server), SL_OK);
    assert_int_equal(sl_upstream_new(&F.loop, &F.u), SL_OK);
    uv_timer_init(&F.loop, &F.watchdog);
    uv_timer_start(&F.watchdog, on_watchdog, 20000, 0);
    uv_timer_init(&F.loop, &F.resume);
    uv_timer_init(&F.loop, &F.later);
}

static void run_fx(void)
{
    uv_run(&F.loop, UV_RUN_DEFAULT);
    assert_true(F.closing);
    assert_true(F.upstream_closed);
    assert_int_equal(uv_loop_close(&F.loop), 0);
    for (size_t i = 0; i < MAX_RECS; i++)
        assert_int_equal(F.recs[i].after_end, 0);
}

/* What the last test kept for its asserts. */
static void dispose_recs(void)
{
    for (size_t i = 0; i < MAX_RECS; i++) {
        sl_buf_dispose(&F.recs[i].heads);
        sl_buf_dispose(&F.recs[i].body);
    }
}

/* ---- transfers ---- */

static void rec_on_response(void *data, int status, const struct sl_http_header *h, size_t n)
{
    struct rec *r = data;
    if (r->done || r->cancelled)
        r->after_end++;
    if (F.closing)
        F.calls_after_close++;
    r->n_response++;
    r->status = status;
    r->n_heads = n;
    for (size_t i = 0; i < n; i++)
        sl_buf_appendf(&r->heads, "%.*s: %.*s\n", (int)h[i].name.len, h[i].name.base,
                       (int)h[i].value.len, h[i].value.base);
    if (r->victim != NULL) {
        r->victim->cancelled = true;
        sl_upstream_cancel(r->victim->x);
        one_ended();
    }
    if (r->pause_at_response) {
        sl_upstream_pause(r->x);
        r->paused = true;
        F.resume_rec = r;
    }
    if (r->cancel_at_response) {
        r->cancelled = true;
        sl_upstream_cancel(r->x);
        one_ended();
    }
}

static void on_resume(uv_timer_t *t)
{
    struct rec *r = F.resume_rec;
    r->paused = false;
    sl_upstream_resume(r->x);
}

static bool rec_on_body(void *data, const char *bytes, size_t len)
{
    struct rec *r = data;
    if (r->done || r->cancelled)
        r->after_end++;
    if (F.closing)
        F.calls_after_close++;
    if (r->paused)
        r->body_while_paused++;
    r->largest_body = SL_MAX(r->largest_body, len);
    r->n_body++;
    assert_int_equal(sl_buf_append(&r->body, bytes, len), SL_OK);
    if (r->gate && r->n_body == 1) {
        assert_false(F.gate_last_sent); /* "first" came before the server sent "last" */
        F.gate_first_seen = true;
    }
    if (r->n_body == 1 && r->on_first_body)
        r->on_first_body(r);
    if (r->n_body == 1 && F.close_after_first_bodies &&
        ++F.first_bodies == F.close_after_first_bodies)
        finish(); /* closes the upstream from inside on_body */
    if (r->cancel_at_body == r->n_body) {
        r->cancelled = true;
        sl_upstream_cancel(r->x);
        one_ended();
        return true;
    }
    int pause_ms = -1;
    if (r->n_body == 1 && r->first_pause_ms)
        pause_ms = r->first_pause_ms;
    else if (r->pause_every && r->n_body % r->pause_every == 0)
        pause_ms = r->pause_ms;
    if (pause_ms >= 0) {
        r->paused = true;
        F.resume_rec = r;
        uv_timer_start(&F.resume, on_resume, (uint64_t)pause_ms, 0);
        return false;
    }
    return true;
}

static void rec_on_done(void *data, enum sl_upstream_failure failure, const char *message)
{
    struct rec *r = data;
    if (r->done || r->cancelled)
        r->after_end++;
    if (F.closing)
        F.calls_after_close++;
    r->done = true;
    r->failure = failure;
    snprintf(r->message, sizeof(r->message), "%s", message);
    r->done_ms = uv_now(&F.loop);
    if (r->then)
        r->then(r);
    one_ended();
}

static const struct sl_upstream_callbacks rec_cb = {rec_on_response, rec_on_body, rec_on_done};

static int start_req(struct rec *r, const char *method, const char *url,
                     const struct sl_upstream_request *tmpl)
{
    struct sl_upstream_request req = {0};
    if (tmpl)
        req = *tmpl;
    req.method = method;
    req.url = url;
    req.body = sl_str_from_cstr(r->req_body);
    int err = sl_upstream_start(F.u, &req, &rec_cb, r, &r->x);
    if (err == SL_OK) {
        F.pending++;
        r->start_ms = uv_now(&F.loop);
    }
    return err;
}

static void start(struct rec *r, const char *method, const char *path,
                  const struct sl_upstream_request *tmpl)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", F.base, path);
    assert_int_equal(start_req(r, method, url, tmpl), SL_OK);
}

static bool has_head(const struct rec *r, const char *line)
{
    return r->heads.base && strstr(r->heads.base, line) != NULL;
}

static void assert_ok(const struct rec *r, int status)
{
    if (getenv("SL_TEST_VERBOSE"))
        fprintf(stderr, "status %d, %d body calls, %zu body bytes, heads:\n%s", r->status,
                r->n_body, r->body.len, r->heads.base ? r->heads.base : "");
    if (r->failure != SL_UPSTREAM_OK)
        fail_msg("transfer failed: %s: %s", sl_upstream_failure_name(r->failure), r->message);
    assert_true(r->done);
    assert_int_equal(r->status, status);
    assert_int_equal(r->n_response, 1);
}

/* ---- tests ---- */

static void test_methods_headers_and_bodies(void **state)
{
    setup_fx();
    struct sl_http_header hs[] = {
        {SL_STR("api-key"), SL_STR("k-123")},
        {SL_STR("Content-Type"), SL_STR("application/json")},
        {SL_STR("X-Empty"), SL_STR("")},
        {SL_STR("Connection"), SL_STR("close")}, /* ours: dropped */
        {SL_STR("Content-Length"), SL_STR("999")},
    };
    struct sl_upstream_request with_headers = {.headers = hs, .n_headers = SL_ARRAY_LEN(hs)};
    struct sl_http_header accept = {SL_STR("Accept"), SL_STR("application/json")};
    struct sl_upstream_request with_accept = {.headers = &accept, .n_headers = 1};
    struct rec *get = &F.recs[0], *post = &F.recs[1], *put = &F.recs[2], *head = &F.recs[3],
               *del = &F.recs[4], *empty = &F.recs[5], *many = &F.recs[6];
    snprintf(post->req_body, sizeof(post->req_body), "{\"hello\":\"world\"}");
    snprintf(put->req_body, sizeof(put->req_body), "put body");
    start(get, "GET", "/echo", &with_accept);
    start(post, "POST", "/echo?x=1", &with_headers);
    start(put, "PUT", "/echo", NULL);
    start(head, "HEAD", "/echo", NULL);
    start(del, "DELETE", "/echo", NULL);
    start(empty, "POST", "/echo", NULL);
    start(many, "GET", "/headers?n=40", NULL);
    run_fx();

    assert_ok(get, 200);
    assert_int_equal(get->body.len, 0);
    assert_true(has_head(get, "X-Test: yes\n"));
    assert_true(has_head(get, "X-Method: GET\n"));
    assert_true(has_head(get, "X-Accept: application/json\n")); /* the caller's, kept */

    assert_ok(post, 200);
    assert_string_equal(post->body.base, "{\"hello\":\"world\"}");
    assert_true(has_head(post, "X-Method: POST\n"));
    assert_true(has_head(post, "X-Api-Key: k-123\n"));
    assert_true(has_head(post, "X-Content-Type: application/json\n"));
    assert_true(has_head(post, "X-Accept: (none)\n")); /* curl's Accept: */ /* removed */
    assert_true(has_head(post, "X-Expect: (none)\n"));
    assert_true(has_head(post, "X-Empty-Seen: \n")); /* an empty header is sent, not dropped */
    assert_false(has_head(post, "X-Connection: close"));

    assert_ok(put, 200);
    assert_string_equal(put->body.base, "put body");
    assert_true(has_head(put, "X-Method: PUT\n"));
    assert_true(has_head(put, "X-Content-Type: (none)\n")); /* no form type invented */

    assert_ok(head, 200);
    assert_int_equal(head->n_body, 0);
    assert_true(has_head(head, "X-Method: HEAD\n"));

    assert_ok(del, 200);
    assert_true(has_head(del, "X-Method: DELETE\n"));

    assert_ok(empty, 200);
    assert_int_equal(empty->body.len, 0);
    assert_true(has_head(empty, "X-Method: POST\n"));
    assert_true(has_head(empty, "X-Content-Type: (none)\n"));

    assert_ok(many, 200);
    assert_true(many->n_heads >= 40);
    assert_true(has_head(many, "X-H-0: v\n"));
    assert_true(has_head(many, "X-H-39: v\n"));
}

static void test_expect_stream_reads_small(void **state)
{
    /* The same 256 KiB answer, read with curl's buffer and with the small
     * one a stream asks for: complete both ways, in pieces of at most 1 KiB
     * with the latter. */
    setup_fx();
    struct sl_upstream_request small = {.expect_stream = true};
    start(&F.recs[0], "GET", "/big?size=262144", NULL);
    start(&F.recs[1], "GET", "/big?size=262144", &small);
    run_fx();
    for (int i = 0; i < 2; i++) {
        assert_ok(&F.recs[i], 200);
        assert_int_equal(F.recs[i].body.len, 262144);
    }
    assert_true(F.recs[0].largest_body > SL_UPSTREAM_STREAM_READ);
    assert_true(F.recs[1].largest_body <= SL_UPSTREAM_STREAM_READ);
}

static void test_streaming_is_incremental(void **state)
{
    setup_fx();
    struct rec *r = &F.recs[0];
    r->gate = true;
    start(r, "GET", "/gate", NULL);
    run_fx();
    assert_ok(r, 200);
    assert_true(has_head(r, "Content-Type: text/event-stream\n"));
    assert_int_equal(r->n_body, 2);
    assert_string_equal(r->body.base, "first\nlast\n");
}

static void test_pause_and_resume(void **state)
{
    setup_fx();
    /* Paused (by returning false) at the first chunk for long enough that the
     * server's socket and queue fill up, then every 64th chunk briefly. */
    struct rec *r = &F.recs[0];
    r->first_pause_ms = 300;
    r->pause_every = 64;
    r->pause_ms = 5;
    start(r, "GET", "/big?size=16777216", NULL);
    run_fx();
    assert_ok(r, 200);
    assert_int_equal(r->body.len, 16777216);
    for (size_t i = 0; i < r->body.len; i += 4093)
        assert_int_equal(r->body.base[i], (char)('a' + i % 26));
    assert_int_equal(r->body_while_paused, 0);
    assert_true(F.congestions > 0); /* curl really stopped reading */
}

static void test_pause_outside_on_body(void **state)
{
    setup_fx();
    /* Paused from on_response, before any body byte, and resumed from a timer;
     * meanwhile the idle timeout must not fire. */
    struct rec *r = &F.recs[0];
    struct sl_upstream_request t = {.idle_timeout_ms = 100};
    r->pause_at_response = true;
    start(r, "GET", "/stream?n=5&ms=5", &t);
    uv_timer_start(&F.resume, on_resume, 300, 0);
    run_fx();
    assert_ok(r, 200);
    assert_int_equal(r->body_while_paused, 0);
    assert_string_equal(r->body.base, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    assert_true(r->done_ms - r->start_ms >= 300);
}

static void after_cancel(void)
{
    /* The cancelled transfer's connection must not be reused. */
    start(&F.recs[1], "GET", "/echo", NULL);
    F.pending--; /* the placeholder taken in test_cancel_inside_on_body */
}

static void test_cancel_inside_on_body(void **state)
{
    setup_fx();
    struct rec *r = &F.recs[0];
    r->cancel_at_body = 2;
    start(r, "GET", "/stream?n=50&ms=5", NULL);
    F.pending++; /* keep the loop going until after_cancel */
    later(100, after_cancel);
    run_fx();
    assert_true(r->cancelled);
    assert_false(r->done);
    assert_int_equal(r->n_body, 2);
    assert_int_equal(r->after_end, 0);
    assert_int_equal(F.server_aborts, 1); /* the server saw the connection go */
    assert_ok(&F.recs[1], 200);
}

static void cancel_paused(void)
{
    struct rec *r = &F.recs[0];
    assert_true(r->paused);
    r->cancelled = true;
    sl_upstream_cancel(r->x); /* curl holds it paused: removed all the same */
    one_ended();
}

static void resume_then_close(void)
{
    struct rec *r = &F.recs[0];
    r->paused = false;
    sl_upstream_resume(r->x); /* queued for the next turn... */
    finish();                 /* ...which never comes for this upstream */
}

static void test_cancel_or_close_while_paused(void **state)
{
    setup_fx();
    struct rec *r = &F.recs[0];
    r->first_pause_ms = 60000;
    start(r, "GET", "/big?size=8388608", NULL);
    later(100, cancel_paused);
    run_fx();
    assert_true(r->cancelled && !r->done);
    assert_int_equal(r->n_body, 1);
    assert_int_equal(F.server_aborts, 1);

    setup_fx();
    r->first_pause_ms = 60000;
    start(r, "GET", "/big?size=8388608", NULL);
    later(100, resume_then_close);
    run_fx();
    assert_false(r->done);
    assert_int_equal(r->n_body, 1);
    assert_int_equal(F.calls_after_close, 0);
}

static void start_from_callback(struct rec *r)
{
    /* Starting a transfer from inside curl's callback is deferred, not refused. */
    start(&F.recs[3], "POST", "/echo", NULL);
}

static void test_cancel_and_start_from_callbacks(void **state)
{
    setup_fx();
    struct rec *a = &F.recs[0], *b = &F.recs[1], *c = &F.recs[2], *d = &F.recs[3];
    snprintf(d->req_body, sizeof(d->req_body), "from a callback");
    /* b stalls; a's on_response cancels b. */
    start(b, "GET", "/stall", NULL);
    a->victim = b;
    a->cancel_at_body = 2;
    a->on_first_body = start_from_callback;
    start(a, "GET", "/stream?n=20&ms=20", NULL);
    /* c cancels itself in on_response; then pause at body 1 and cancel at body 2
     * on a stream that is resumed from the kick (cancel inside curl_easy_pause). */
    c->cancel_at_response = true;
    start(c, "GET", "/echo", NULL);
    struct rec *e = &F.recs[4];
    e->pause_every = 1;
    e->pause_ms = 30;
    e->cancel_at_body = 2;
    start(e, "GET", "/big?size=1048576", NULL);
    run_fx();
    assert_true(a->cancelled && !a->done);
    assert_true(b->cancelled && !b->done);
    assert_int_equal(b->n_response, 0);
    assert_true(c->cancelled && !c->done);
    assert_int_equal(c->n_response, 1);
    assert_int_equal(c->n_body, 0);
    assert_ok(d, 200);
    assert_string_equal(d->body.base, "from a callback");
    assert_true(e->cancelled && !e->done);
    assert_int_equal(e->n_body, 2);
}

static void test_connection_refused(void **state)
{
    setup_fx();
    uint16_t port = free_port(); /* nothing listens there */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/openai/x", port);
    struct sl_http_header key = {SL_STR("api-key"), SL_STR("SECRET-MARKER")};
    struct sl_upstream_request t = {.headers = &key, .n_headers = 1, .connect_timeout_ms = 2000};
    struct rec *r = &F.recs[0];
    assert_int_equal(start_req(r, "GET", url, &t), SL_OK);
    run_fx();
    assert_true(r->done);
    assert_int_equal(r->failure, SL_UPSTREAM_CONNECT);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", port);
    assert_non_null(strstr(r->message, want));
    assert_non_null(strstr(r->message, "Connection refused"));
    assert_null(strstr(r->message, "SECRET"));
    assert_null(strstr(r->message, "/openai"));
    assert_int_equal(r->n_response, 0);
}

static void test_unresolvable_and_tls_mismatch(void **state)
{
    setup_fx();
    struct rec *dns = &F.recs[0], *tls = &F.recs[1];
    assert_int_equal(start_req(dns, "GET", "http://no-such-host.invalid/x", NULL), SL_OK);
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/echo", F.port); /* plain HTTP there */
    assert_int_equal(start_req(tls, "GET", url, NULL), SL_OK);
    run_fx();
    assert_int_equal(dns->failure, SL_UPSTREAM_CONNECT);
    assert_non_null(strstr(dns->message, "no-such-host.invalid"));
    assert_int_equal(tls->failure, SL_UPSTREAM_TLS);
    assert_non_null(strstr(tls->message, "TLS"));
}

static void test_first_byte_timeout(void **state)
{
    setup_fx();
    struct sl_upstream_request t = {.first_byte_timeout_ms = 100};
    struct rec *get = &F.recs[0], *post = &F.recs[1], *slow = &F.recs[2];
    snprintf(post->req_body, sizeof(post->req_body), "a request body");
    start(get, "GET", "/stall", &t);
    start(post, "POST", "/stall", &t);
    struct sl_upstream_request t2 = {.first_byte_timeout_ms = 1000};
    start(slow, "GET", "/slow?ms=50", &t2);
    run_fx();
    for (int i = 0; i < 2; i++) {
        struct rec *r = &F.recs[i];
        assert_int_equal(r->failure, SL_UPSTREAM_TIMEOUT_FIRST_BYTE);
        assert_int_equal(r->n_response, 0);
        assert_true(r->done_ms - r->start_ms >= 100);
        assert_true(r->done_ms - r->start_ms < 1000);
        assert_non_null(strstr(r->message, "first-byte"));
    }
    assert_ok(slow, 200);
    assert_string_equal(slow->body.base, "ok");
    assert_int_equal(F.server_aborts, 2); /* the timed-out connections were closed */
}

static void test_idle_timeout(void **state)
{
    setup_fx();
    struct sl_upstream_request t = {.idle_timeout_ms = 100};
    struct rec *stalled = &F.recs[0], *steady = &F.recs[1], *paused = &F.recs[2];
    start(stalled, "GET", "/stall-body", &t);
    /* 12 chunks 30 ms apart: 360 ms in all, never 100 ms quiet. */
    start(steady, "GET", "/stream?n=12&ms=30", &t);
    /* Paused by us for 300 ms: that silence is ours, not the server's. */
    paused->first_pause_ms = 300;
    start(paused, "GET", "/stream?n=3&ms=5", &t);
    run_fx();
    assert_int_equal(stalled->failure, SL_UPSTREAM_TIMEOUT_IDLE);
    assert_int_equal(stalled->n_response, 1);
    assert_string_equal(stalled->body.base, "first");
    assert_true(stalled->done_ms - stalled->start_ms >= 100);
    assert_non_null(strstr(stalled->message, "idle"));
    assert_ok(steady, 200);
    assert_int_equal(steady->n_body, 12);
    assert_ok(paused, 200);
}

static void test_total_timeout(void **state)
{
    setup_fx();
    struct sl_upstream_request t = {.total_timeout_ms = 150, .idle_timeout_ms = 1000};
    struct rec *r = &F.recs[0];
    start(r, "GET", "/stream?n=50&ms=20", &t);
    run_fx();
    assert_int_equal(r->failure, SL_UPSTREAM_TIMEOUT_TOTAL);
    assert_int_equal(r->n_response, 1);
    assert_true(r->n_body > 0);
    assert_true(r->done_ms - r->start_ms >= 140);
    assert_true(r->done_ms - r->start_ms < 1000);
}

static void test_connect_timeout(void **state)
{
    /* A listener whose accept queue is full drops SYNs: connect hangs. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    int fillers[8];
    for (int i = 0; i < 8; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    usleep(50000);
    /* Where the kernel accepts anyway, this test cannot work: skip it. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(probe, (struct sockaddr *)&sa, sizeof(sa));
    struct pollfd pfd = {.fd = probe, .events = POLLOUT};
    bool hangs = poll(&pfd, 1, 200) == 0;
    close(probe);
    if (!hangs) {
        for (int i = 0; i < 8; i++)
            close(fillers[i]);
        close(lfd);
        skip();
    }

    setup_fx();
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", ntohs(sa.sin_port));
    struct sl_upstream_request t = {.connect_timeout_ms = 150, .total_timeout_ms = 5000};
    struct rec *r = &F.recs[0];
    assert_int_equal(start_req(r, "GET", url, &t), SL_OK);
    run_fx();
    for (int i = 0; i < 8; i++)
        close(fillers[i]);
    close(lfd);
    assert_int_equal(r->failure, SL_UPSTREAM_TIMEOUT_CONNECT);
    assert_non_null(strstr(r->message, "timed out"));
    assert_true(r->done_ms - r->start_ms >= 140);
    assert_true(r->done_ms - r->start_ms < 2000);
}

/* A keep-alive server on a thread that counts the connections it accepts and
 * answers every request head with "ok". */
struct ka_server {
    int lfd;
    uint16_t port;
    atomic_int accepts;
    atomic_int requests;
    atomic_bool stop;
    atomic_bool close_after; /* close each connection once it was answered (unannounced) */
    uv_thread_t thread;
};

static void ka_main(void *arg)
{
    struct ka_server *k = arg;
    struct pollfd fds[64] = {{.fd = k->lfd, .events = POLLIN}};
    static char bufs[64][4096];
    size_t lens[64] = {0};
    nfds_t n = 1;
    while (!atomic_load(&k->stop)) {
        if (poll(fds, n, 20) <= 0)
            continue;
        if ((fds[0].revents & POLLIN) && n < SL_ARRAY_LEN(fds)) {
            int fd = accept(k->lfd, NULL, NULL);
            if (fd >= 0) {
                atomic_fetch_add(&k->accepts, 1);
                fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
                lens[n++] = 0;
            }
        }
        for (nfds_t i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(fds[i].fd, bufs[i] + lens[i], sizeof(bufs[i]) - 1 - lens[i]);
            if (got <= 0) {
                close(fds[i].fd);
                fds[i] = fds[n - 1];
                memcpy(bufs[i], bufs[n - 1], lens[n - 1]);
                lens[i] = lens[n - 1];
                n--;
                i--;
                continue;
            }
            lens[i] += (size_t)got;
            bufs[i][lens[i]] = '\0';
            char *end;
            while ((end = strstr(bufs[i], "\r\n\r\n")) != NULL) {
                static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                ssize_t w = write(fds[i].fd, ok, sizeof(ok) - 1);
                (void)w;
                atomic_fetch_add(&k->requests, 1);
                size_t used = (size_t)(end + 4 - bufs[i]);
                memmove(bufs[i], bufs[i] + used, lens[i] - used + 1);
                lens[i] -= used;
            }
            if (atomic_load(&k->close_after) && atomic_load(&k->requests) > 0 && lens[i] == 0) {
                close(fds[i].fd);
                fds[i] = fds[n - 1];
                memcpy(bufs[i], bufs[n - 1], lens[n - 1]);
                lens[i] = lens[n - 1];
                n--;
                i--;
            }
        }
    }
    for (nfds_t i = 0; i < n; i++)
        close(fds[i].fd);
}

static void ka_start(struct ka_server *k)
{
    memset(k, 0, sizeof(*k));
    k->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(k->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(k->lfd, 64), 0);
    assert_int_equal(getsockname(k->lfd, (struct sockaddr *)&sa, &len), 0);
    k->port = ntohs(sa.sin_port);
    uv_thread_create(&k->thread, ka_main, k);
}

static void ka_stop(struct ka_server *k)
{
    atomic_store(&k->stop, true);
    uv_thread_join(&k->thread);
}

static int seq_left;
static char seq_url[128];

static struct rec *seq_next;

static void then_next(struct rec *r);

static void start_next(void)
{
    seq_next->then = then_next;
    assert_int_equal(start_req(seq_next, "GET", seq_url, NULL), SL_OK);
    F.pending--; /* the placeholder taken in then_next */
}

/* The next request starts on a later loop turn, as a proxy's next client
 * request does, after the finished transfer let go of the connection. */
static uint64_t seq_watchers;

static void then_next(struct rec *r)
{
    seq_watchers = F.u->watchers_opened;
    if (--seq_left > 0) {
        seq_next = r + 1;
        F.pending++;
        later(1, start_next);
    }
}

static void test_connection_reuse(void **state)
{
    struct ka_server k;
    ka_start(&k);
    setup_fx();
    snprintf(seq_url, sizeof(seq_url), "http://127.0.0.1:%u/seq", k.port);
    seq_left = 20;
    F.recs[0].then = then_next;
    assert_int_equal(start_req(&F.recs[0], "GET", seq_url, NULL), SL_OK);
    run_fx();
    ka_stop(&k);
    for (int i = 0; i < 20; i++) {
        assert_ok(&F.recs[i], 200);
        assert_string_equal(F.recs[i].body.base, "ok");
    }
    assert_int_equal(atomic_load(&k.requests), 20);
    assert_int_equal(atomic_load(&k.accepts), 1); /* one connection carried all 20 */
    /* ...and one socket watcher: between transfers the kept connection stays
     * registered with the loop rather than being removed and added again. */
    assert_int_equal(seq_watchers, 1);
}

static struct ka_server ka_pool;
static int pool_phase;
static uint64_t pool_fresh;
static size_t pool_idle, pool_claims;

static void pool_burst(void)
{
    /* Five at once: as many reuse idle connections as there are, the others
     * open new ones without curl searching the pool for them. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(start_req(&F.recs[1 + pool_phase * 5 + i], "GET", seq_url, NULL), SL_OK);
    F.pending--; /* the placeholder taken in then_pool */
    pool_phase++;
}

static void then_pool(struct rec *r)
{
    pool_fresh = F.u->fresh_connects;
    pool_idle = F.u->n_idle;
    pool_claims = F.u->n_claims;
    if (F.pending > 1 || pool_phase == 2)
        return; /* the others of the burst are still running */
    if (pool_phase == 0)
        assert_int_equal(F.u->fresh_connects, 1); /* the first: the pool was empty */
    if (pool_phase == 1)
        assert_int_equal(F.u->fresh_connects, 5); /* 1 reused the idle one, 4 new */
    F.pending++;
    later(5, pool_burst);
}

static void test_fresh_connections_only_when_none_idle(void **state)
{
    pool_phase = 0;
    ka_start(&ka_pool);
    setup_fx();
    snprintf(seq_url, sizeof(seq_url), "http://127.0.0.1:%u/pool", ka_pool.port);
    for (int i = 0; i < 11; i++)
        F.recs[i].then = then_pool;
    assert_int_equal(start_req(&F.recs[0], "GET", seq_url, NULL), SL_OK);
    run_fx();
    ka_stop(&ka_pool);
    for (int i = 0; i < 11; i++)
        assert_ok(&F.recs[i], 200);
    /* The second burst found five idle connections and took them all. */
    assert_int_equal(pool_fresh, 5);
    assert_int_equal(atomic_load(&ka_pool.accepts), 5);
    assert_int_equal(pool_idle, 5);
    assert_int_equal(pool_claims, 0);
}

static struct ka_server ka_closing;
static uint64_t idle_cpu_us;

static uint64_t thread_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
}

static void after_idle(void)
{
    idle_cpu_us = thread_cpu_us() - idle_cpu_us;
    assert_int_equal(start_req(&F.recs[1], "GET", seq_url, NULL), SL_OK);
    F.pending--; /* the placeholder taken in then_idle */
}

static void then_idle(struct rec *r)
{
    /* The server closes the kept connection now; the loop must not spin on
     * it while no transfer uses it. */
    idle_cpu_us = thread_cpu_us();
    F.pending++;
    later(200, after_idle);
}

static void test_kept_connection_closed_while_idle(void **state)
{
    ka_start(&ka_closing);
    atomic_store(&ka_closing.close_after, true);
    setup_fx();
    snprintf(seq_url, sizeof(seq_url), "http://127.0.0.1:%u/seq", ka_closing.port);
    F.recs[0].then = then_idle;
    assert_int_equal(start_req(&F.recs[0], "GET", seq_url, NULL), SL_OK);
    run_fx();
    ka_stop(&ka_closing);
    assert_ok(&F.recs[0], 200);
    assert_ok(&F.recs[1], 200); /* on a new connection: curl found the old one dead */
    assert_string_equal(F.recs[1].body.base, "ok");
    assert_int_equal(atomic_load(&ka_closing.accepts), 2);
    assert_true(idle_cpu_us < 50000);
}

static void test_many_concurrent(void **state)
{
    setup_fx();
    for (int i = 0; i < 200; i++) {
        snprintf(F.recs[i].req_body, sizeof(F.recs[i].req_body), "body %d", i);
        start(&F.recs[i], "POST", "/echo", NULL);
    }
    run_fx();
    for (int i = 0; i < 200; i++) {
        assert_ok(&F.recs[i], 200);
        assert_string_equal(F.recs[i].body.base, F.recs[i].req_body);
    }
    assert_int_equal(F.requests, 200);
}

static void close_now(void)
{
    finish();
}

static void test_close_with_transfers_in_flight(void **state)
{
    /* Closed from inside an on_body callback... */
    setup_fx();
    F.close_after_first_bodies = 20;
    for (int i = 0; i < 20; i++)
        start(&F.recs[i], "GET", "/stream?n=100&ms=10", NULL);
    run_fx();
    for (int i = 0; i < 20; i++)
        assert_false(F.recs[i].done);
    assert_int_equal(F.calls_after_close, 0);

    /* ...and from outside any callback, some transfers still connecting. */
    setup_fx();
    for (int i = 0; i < 20; i++)
        start(&F.recs[i], "GET", i % 2 ? "/stall" : "/stream?n=100&ms=10", NULL);
    later(50, close_now);
    run_fx();
    for (int i = 0; i < 20; i++)
        assert_false(F.recs[i].done);
    assert_int_equal(F.calls_after_close, 0);

    /* ...and before the loop ever ran. */
    setup_fx();
    for (int i = 0; i < 5; i++)
        start(&F.recs[i], "POST", "/echo", NULL);
    finish();
    run_fx();
    assert_int_equal(F.calls_after_close, 0);
}

static void test_bad_requests(void **state)
{
    setup_fx();
    struct rec *r = &F.recs[0];
    char url[128];
    snprintf(url, sizeof(url), "%s/echo", F.base);
    struct sl_http_header crlf = {SL_STR("X-A"), SL_STR("v\r\nInjected: yes")};
    struct sl_upstream_request t = {.headers = &crlf, .n_headers = 1};
    assert_int_equal(start_req(r, "GET", url, &t), SL_EINVAL);
    struct sl_http_header badname = {SL_STR("X A"), SL_STR("v")};
    t.headers = &badname;
    assert_int_equal(start_req(r, "GET", url, &t), SL_EINVAL);
    assert_int_equal(start_req(r, "GE T", url, NULL), SL_EINVAL);
    /* A scheme curl must not use. */
    assert_int_equal(start_req(r, "GET", "file:///etc/passwd", NULL), SL_OK);
    run_fx();
    assert_true(r->done);
    assert_int_equal(r->failure, SL_UPSTREAM_INTERNAL);
    assert_int_equal(r->n_response, 0);
    assert_int_equal(F.requests, 0);

    setup_fx();
    finish();
    assert_int_equal(start_req(&F.recs[0], "GET", url, NULL), SL_ESTATE);
    run_fx();
}

/* ---- canned byte sequences from a blocking thread ---- */

struct canned {
    int lfd;
    const char **replies; /* one per accepted connection, NULL-terminated */
};

static void canned_main(void *arg)
{
    struct canned *c = arg;
    for (const char **r = c->replies; *r; r++) {
        int fd = accept(c->lfd, NULL, NULL);
        if (fd < 0)
            return;
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[4096];
        size_t got = 0;
        while (got < sizeof(buf) - 1) {
            ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        ssize_t w = write(fd, *r, strlen(*r));
        (void)w;
        shutdown(fd, SHUT_WR);
        usleep(20000);
        close(fd);
    }
}

static void then_canned_next(struct rec *r);
static const char *canned_url;
static int canned_left;

static void then_canned_next(struct rec *r)
{
    if (--canned_left > 0) {
        (r + 1)->then = then_canned_next;
        assert_int_equal(start_req(r + 1, "GET", canned_url, NULL), SL_OK);
    }
}

static void test_canned_responses(void **state)
{
    static const char *replies[] = {
        /* interim responses, then a final head with a folded line */
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Folded: a\r\n  b\r\nConnection: close\r\n\r\nok",
        /* the body is cut short */
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
        /* nothing at all */
        "",
        /* a malformed header line */
        "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        /* trailers are not passed on */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "2\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n",
        /* more header lines than we keep (filled in below) */
        NULL,
        NULL,
    };
    static char many[300 * 8 + 64];
    size_t used = (size_t)snprintf(many, sizeof(many), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 300; i++)
        used += (size_t)snprintf(many + used, sizeof(many) - used, "X-N: v\r\n");
    snprintf(many + used, sizeof(many) - used, "Content-Length: 0\r\n\r\n");
    replies[5] = many;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    struct timeval tv = {5, 0}; /* accept gives up if the test failed early */
    setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct canned c = {lfd, replies};
    uv_thread_t t;
    uv_thread_create(&t, canned_main, &c);

    setup_fx();
    static char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/canned", ntohs(sa.sin_port));
    canned_url = url;
    canned_left = 6;
    F.recs[0].then = then_canned_next;
    assert_int_equal(start_req(&F.recs[0], "GET", url, NULL), SL_OK);
    run_fx();
    uv_thread_join(&t);
    close(lfd);

    struct rec *interim = &F.recs[0], *cut = &F.recs[1], *nothing = &F.recs[2],
               *malformed = &F.recs[3], *trailers = &F.recs[4];
    assert_ok(interim, 200);
    assert_true(has_head(interim, "X-Folded: a b\n"));
    assert_false(has_head(interim, "Link"));
    assert_string_equal(interim->body.base, "ok");

    assert_int_equal(cut->failure, SL_UPSTREAM_PROTOCOL);
    assert_int_equal(cut->n_response, 1);
    assert_string_equal(cut->body.base, "ab");

    assert_int_equal(nothing->failure, SL_UPSTREAM_RESET);
    assert_int_equal(nothing->n_response, 0);
    assert_non_null(strstr(nothing->message, "before a response"));

    assert_int_equal(malformed->failure, SL_UPSTREAM_PROTOCOL);
    assert_int_equal(malformed->n_response, 0);
    if (!strstr(malformed->message, "malformed response header"))
        fail_msg("message: %s", malformed->message);

    assert_ok(trailers, 200);
    assert_string_equal(trailers->body.base, "hi");
    assert_false(has_head(trailers, "X-Trailer"));

    struct rec *too_many = &F.recs[5];
    assert_int_equal(too_many->failure, SL_UPSTREAM_PROTOCOL);
    assert_int_equal(too_many->n_response, 0);
    assert_non_null(strstr(too_many->message, "response head too large"));
}

/* ---- TLS against openssl s_server ---- */

static bool run_quiet(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static bool port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static int tls_left;
static char tls_url[128];
static char tls_ca[256];

static void then_tls_next(struct rec *r)
{
    struct rec *next = r + 1;
    struct sl_upstream_request t = {.total_timeout_ms = 5000};
    switch (--tls_left) {
    case 2: /* with the self-signed certificate as the CA */
        t.ca_file = tls_ca;
        break;
    case 1: /* not verified at all; also offering HTTP/2 (s_server answers in HTTP/1) */
        t.insecure = true;
        t.http2 = true;
        break;
    default:
        return;
    }
    next->then = then_tls_next;
    assert_int_equal(start_req(next, "GET", tls_url, &t), SL_OK);
}

/* A self-signed certificate for 127.0.0.1 in a new temporary directory;
 * false when the openssl tool is missing. */
static bool make_cert(char *dir, char *key, char *cert, size_t n)
{
    if (mkdtemp(dir) == NULL)
        return false;
    snprintf(key, n, "%s/key.pem", dir);
    snprintf(cert, n, "%s/cert.pem", dir);
    char *gen[] = {"openssl",
                   "req",
                   "-x509",
                   "-newkey",
                   "ec",
                   "-pkeyopt",
                   "ec_paramgen_curve:prime256v1",
                   "-nodes",
                   "-keyout",
                   key,
                   "-out",
                   cert,
                   "-days",
                   "1",
                   "-subj",
                   "/CN=localhost",
                   "-addext",
                   "subjectAltName=IP:127.0.0.1",
                   NULL};
    if (run_quiet(gen))
        return true;
    unlink(key);
    unlink(cert);
    rmdir(dir);
    return false;
}

static void remove_cert(const char *dir, const char *key, const char *cert)
{
    unlink(key);
    unlink(cert);
    rmdir(dir);
}

static pid_t spawn_quiet(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void stop_child(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static void test_tls_verification(void **state)
{
    char dir[] = "/tmp/sl-upstream-tls-XXXXXX";
    char key[256], cert[256], port_arg[32];
    if (!make_cert(dir, key, cert, sizeof(key)))
        skip();
    uint16_t port = free_port();
    snprintf(port_arg, sizeof(port_arg), "%u", port);
    char *argv[] = {"openssl", "s_server", "-accept", port_arg, "-cert", cert,
                    "-key",    key,        "-www",    "-quiet", NULL};
    pid_t srv = spawn_quiet(argv);
    for (int i = 0; i < 200 && !port_open(port); i++)
        usleep(10000);

    setup_fx();
    snprintf(tls_url, sizeof(tls_url), "https://127.0.0.1:%u/", port);
    snprintf(tls_ca, sizeof(tls_ca), "%s", cert);
    tls_left = 3;
    struct sl_upstream_request t = {.total_timeout_ms = 5000};
    F.recs[0].then = then_tls_next;
    assert_int_equal(start_req(&F.recs[0], "GET", tls_url, &t), SL_OK);
    run_fx();
    stop_child(srv);
    remove_cert(dir, key, cert);

    /* The system's CAs do not know a self-signed certificate. */
    assert_int_equal(F.recs[0].failure, SL_UPSTREAM_TLS);
    assert_non_null(strstr(F.recs[0].message, "certificate"));
    assert_ok(&F.recs[1], 200);
    assert_ok(&F.recs[2], 200);
    assert_non_null(strstr(F.recs[2].body.base, "s_server"));
}

/* ---- HTTP/2 against node's http2 server ---- */

static const char h2_server_js[] =
    "const http2 = require('http2'), fs = require('fs');\n"
    "const [port, cert, key] = process.argv.slice(1);\n"
    "let sessions = 0;\n"
    "const s = http2.createSecureServer({cert: fs.readFileSync(cert), key: "
    "fs.readFileSync(key)});\n"
    "s.on('session', () => sessions++);\n"
    "s.on('stream', (st, h) => {\n"
    "  const p = h[':path'];\n"
    "  st.on('error', () => {});\n"
    "  if (p === '/stats') { st.respond({':status': 200}); st.end(String(sessions)); return; }\n"
    "  if (p === '/echo') {\n"
    "    const b = []; st.on('data', d => b.push(d));\n"
    "    st.on('end', () => { st.respond({':status': 200, 'x-test': 'yes',\n"
    "      'x-api-key': String(h['api-key'])}); st.end(Buffer.concat(b)); });\n"
    "    return;\n"
    "  }\n"
    "  if (p === '/big') {\n"
    "    st.respond({':status': 200}); const total = 2 << 20; let sent = 0;\n"
    "    const pump = () => { while (sent < total) { const n = Math.min(16384, total - sent);\n"
    "      const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = 97 + (sent + i) % 26;\n"
    "      sent += n; if (!st.write(b)) { st.once('drain', pump); return; } } st.end(); };\n"
    "    pump(); return;\n"
    "  }\n"
    "  if (p === '/stream') {\n"
    "    st.respond({':status': 200, 'content-type': 'text/event-stream'}); let i = 0;\n"
    "    const t = setInterval(() => { if (st.destroyed || st.closed) { clearInterval(t); return; "
    "}\n"
    "      st.write('chunk ' + i + '\\n'); if (++i === 20) { clearInterval(t); st.end(); } }, "
    "10);\n"
    "    st.on('close', () => clearInterval(t)); return;\n"
    "  }\n"
    "  st.respond({':status': 404}); st.end();\n"
    "});\n"
    "s.listen(Number(port), '127.0.0.1');\n";

static char h2_base[128];
static char h2_ca[256];

static void h2_stats(void)
{
    char url[160];
    snprintf(url, sizeof(url), "%s/stats", h2_base);
    struct sl_upstream_request t = {.http2 = true, .ca_file = h2_ca, .total_timeout_ms = 5000};
    assert_int_equal(start_req(&F.recs[40], "GET", url, &t), SL_OK);
}

static void test_http2_multiplexing(void **state)
{
    char dir[] = "/tmp/sl-upstream-h2-XXXXXX";
    char key[256], cert[256], port_arg[32];
    char node[] = "node";
    if (!make_cert(dir, key, cert, sizeof(key)))
        skip();
    uint16_t port = free_port();
    snprintf(port_arg, sizeof(port_arg), "%u", port);
    char *argv[] = {node, "-e", (char *)h2_server_js, port_arg, cert, key, NULL};
    pid_t srv = spawn_quiet(argv);
    for (int i = 0; i < 300 && !port_open(port); i++)
        usleep(10000);
    if (!port_open(port)) {
        stop_child(srv);
        remove_cert(dir, key, cert);
        skip();
    }

    setup_fx();
    snprintf(h2_base, sizeof(h2_base), "https://127.0.0.1:%u", port);
    snprintf(h2_ca, sizeof(h2_ca), "%s", cert);
    struct sl_http_header key_h = {SL_STR("api-key"), SL_STR("k-h2")};
    struct sl_upstream_request t = {.http2 = true,
                                    .ca_file = h2_ca,
                                    .total_timeout_ms = 10000,
                                    .idle_timeout_ms = 2000,
                                    .headers = &key_h,
                                    .n_headers = 1};
    char url[160];
    /* 20 streams at once, one cancelled mid-body, one paused and resumed,
     * one with a request body: all on one connection. */
    snprintf(url, sizeof(url), "%s/stream", h2_base);
    for (int i = 0; i < 20; i++)
        assert_int_equal(start_req(&F.recs[i], "GET", url, &t), SL_OK);
    F.recs[20].cancel_at_body = 3;
    assert_int_equal(start_req(&F.recs[20], "GET", url, &t), SL_OK);
    snprintf(url, sizeof(url), "%s/big", h2_base);
    F.recs[21].first_pause_ms = 200;
    F.recs[21].pause_every = 16;
    F.recs[21].pause_ms = 5;
    assert_int_equal(start_req(&F.recs[21], "GET", url, &t), SL_OK);
    snprintf(url, sizeof(url), "%s/echo", h2_base);
    snprintf(F.recs[22].req_body, sizeof(F.recs[22].req_body), "over h2");
    assert_int_equal(start_req(&F.recs[22], "POST", url, &t), SL_OK);
    F.all_done = h2_stats;
    run_fx();
    stop_child(srv);
    remove_cert(dir, key, cert);

    for (int i = 0; i < 20; i++) {
        assert_ok(&F.recs[i], 200);
        assert_int_equal(F.recs[i].body.len, 10 * 8 + 10 * 9); /* "chunk 0\n" .. "chunk 19\n" */
        assert_true(has_head(&F.recs[i], "content-type: text/event-stream\n"));
    }
    assert_true(F.recs[20].cancelled && !F.recs[20].done);
    assert_ok(&F.recs[21], 200);
    assert_int_equal(F.recs[21].body.len, 2 << 20);
    for (size_t i = 0; i < F.recs[21].body.len; i += 4093)
        assert_int_equal(F.recs[21].body.base[i], (char)('a' + i % 26));
    assert_int_equal(F.recs[21].body_while_paused, 0);
    assert_ok(&F.recs[22], 200);
    assert_string_equal(F.recs[22].body.base, "over h2");
    assert_true(has_head(&F.recs[22], "x-api-key: k-h2\n"));
    assert_ok(&F.recs[40], 200);
    assert_string_equal(F.recs[40].body.base, "1"); /* one TLS connection for everything */
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods_headers_and_bodies),
        cmocka_unit_test(test_streaming_is_incremental),
        cmocka_unit_test(test_expect_stream_reads_small),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_pause_outside_on_body),
        cmocka_unit_test(test_cancel_inside_on_body),
        cmocka_unit_test(test_cancel_and_start_from_callbacks),
        cmocka_unit_test(test_cancel_or_close_while_paused),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_unresolvable_and_tls_mismatch),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_connection_reuse),
        cmocka_unit_test(test_kept_connection_closed_while_idle),
        cmocka_unit_test(test_fresh_connections_only_when_none_idle),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_close_with_transfers_in_flight),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_canned_responses),
        cmocka_unit_test(test_tls_verification),
        cmocka_unit_test(test_http2_multiplexing),
    };
    if (getenv("SL_TEST_FILTER")) /* e.g. SL_TEST_FILTER='test_pause*' */
        cmocka_set_test_filter(getenv("SL_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    dispose_recs();
    return failed;
}
