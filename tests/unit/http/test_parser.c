/*
 * Unit tests for the HTTP/1.1 request parser and the chunked decoder
 * (src/http/parser.c). Each parser rule has at least one test here; the fuzz
 * target (tests/fuzz/fuzz_http_parser.c) checks the split-input invariants on
 * random inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/parser.h"

#define MAX_HEAD 16384

/* The head is large (100 headers); one per test file is plenty. */
static struct sl_http_header g_head_storage[SL_HTTP_MAX_HEADERS];
static struct sl_http_request_head g_head = {.headers = g_head_storage};
static struct sl_http_parse_error g_err;

static long parse_n(const char *s, size_t len, size_t max_head)
{
    g_err.status = 0;
    g_err.reason = NULL;
    return sl_http_parse_request(s, len, max_head, &g_head, &g_err);
}

static long parse(const char *s)
{
    return parse_n(s, strlen(s), MAX_HEAD);
}

static void assert_sl_str(struct sl_str s, const char *want)
{
    size_t n = strlen(want);
    if (s.len != n || (n && memcmp(s.base, want, n) != 0)) {
        print_error("got \"%.*s\" (%zu bytes), want \"%s\"\n", (int)s.len, s.base ? s.base : "",
                    s.len, want);
        fail();
    }
}

/* Whole-buffer parse must fail with this status. */
static void expect_status(const char *req, int status)
{
    long rc = parse(req);
    if (rc != SL_EINVAL || g_err.status != status) {
        print_error("request %s: rc %ld status %d (%s), want status %d\n", req, rc, g_err.status,
                    g_err.reason ? g_err.reason : "-", status);
        fail();
    }
    assert_non_null(g_err.reason);
    assert_true(strlen(g_err.reason) > 0);
}

static void expect_error(const char *req, int status, const char *reason)
{
    expect_status(req, status);
    assert_string_equal(g_err.reason, reason);
}

static void expect_ok(const char *req)
{
    long rc = parse(req);
    if (rc != (long)strlen(req)) {
        print_error("request %s: rc %ld status %d (%s)\n", req, rc, g_err.status,
                    g_err.reason ? g_err.reason : "-");
        fail();
    }
}

/* ---- valid requests ---- */

static void test_get(void **state)
{
    const char *req = "GET /index.html HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "User-Agent: curl/8.0\r\n"
                      "Accept: */*\r\n"
                      "\r\n";
    assert_int_equal(parse(req), strlen(req));
    assert_sl_str(g_head.method, "GET");
    assert_sl_str(g_head.target, "/index.html");
    assert_sl_str(g_head.path, "/index.html");
    assert_sl_str(g_head.query, "");
    assert_non_null(g_head.query.base);
    assert_int_equal(g_head.minor_version, 1);
    assert_int_equal(g_head.n_headers, 3);
    assert_sl_str(g_head.headers[0].name, "Host");
    assert_sl_str(g_head.headers[0].value, "example.com");
    assert_sl_str(g_head.headers[1].name, "User-Agent");
    assert_sl_str(g_head.headers[1].value, "curl/8.0");
    assert_sl_str(g_head.headers[2].name, "Accept");
    assert_sl_str(g_head.headers[2].value, "*/*");
    assert_int_equal(g_head.body_kind, SL_HTTP_BODY_NONE);
    assert_true(g_head.keep_alive);
    assert_false(g_head.expect_continue);
    assert_sl_str(g_head.host, "example.com");
    /* zero-copy: views point into the input */
    assert_ptr_equal(g_head.method.base, req);
    assert_ptr_equal(g_head.headers[0].value.base, req + 32);
}

static void test_post_content_length(void **state)
{
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\n"
                       "Host: gw\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 13\r\n"
                       "\r\n";
    char req[256];
    snprintf(req, sizeof(req), "%s{\"model\":\"x\"}", head);
    assert_int_equal(parse(req), strlen(head));
    assert_sl_str(g_head.method, "POST");
    assert_int_equal(g_head.body_kind, SL_HTTP_BODY_LENGTH);
    assert_int_equal(g_head.content_length, 13);
    assert_sl_str(g_head.path, "/v1/chat/completions");
}

static void test_content_length_values(void **state)
{
    expect_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(g_head.body_kind, SL_HTTP_BODY_LENGTH);
    assert_int_equal(g_head.content_length, 0);
    expect_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:007\r\n\r\n");
    assert_int_equal(g_head.content_length, 7);
    expect_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t18446744073709551615 \r\n\r\n");
    assert_int_equal(g_head.content_length, UINT64_MAX);
    expect_ok("POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 5\r\n\r\n");
    assert_int_equal(g_head.content_length, 5);
}

static void test_chunked_request(void **state)
{
    expect_ok("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(g_head.body_kind, SL_HTTP_BODY_CHUNKED);
    expect_ok("POST /x HTTP/1.1\r\nHost: a\r\ntransfer-encoding: \t ChUnKeD \t\r\n\r\n");
    assert_int_equal(g_head.body_kind, SL_HTTP_BODY_CHUNKED);
}

static void test_pipelined(void **state)
{
    const char *buf = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                      "POST /b?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
                      "GET /c HTTP/1.0\r\n\r\n";
    size_t len = strlen(buf), off = 0;

    long n = parse_n(buf, len, MAX_HEAD);
    assert_int_equal(n, 28);
    assert_sl_str(g_head.path, "/a");
    off += (size_t)n;

    n = parse_n(buf + off, len - off, MAX_HEAD);
    assert_int_equal(n, 52);
    assert_sl_str(g_head.method, "POST");
    assert_sl_str(g_head.path, "/b");
    assert_sl_str(g_head.query, "x=1");
    assert_int_equal(g_head.content_length, 2);
    off += (size_t)n + 2;

    n = parse_n(buf + off, len - off, MAX_HEAD);
    assert_int_equal(n, 19);
    assert_sl_str(g_head.path, "/c");
    assert_int_equal(g_head.minor_version, 0);
    assert_int_equal(off + (size_t)n, len);
}

/* Feed growing prefixes: SL_EAGAIN until the head is complete, then the whole-parse answer. */
static void test_byte_by_byte(void **state)
{
    const char *req = "\r\nPUT /up?load=1 HTTP/1.1\r\n"
                      "Host: example.com:8080\r\n"
                      "Connection: close\r\n"
                      "Expect: 100-continue\r\n"
                      "Content-Length: 4\r\n"
                      "X-Empty:\r\n"
                      "\r\n"
                      "body";
    size_t len = strlen(req), head_len = len - 4;
    for (size_t k = 0; k < head_len; k++) {
        char *copy = malloc(k + 1); /* exact size, so ASan sees any over-read */
        assert_non_null(copy);
        memcpy(copy, req, k);
        long rc = sl_http_parse_request(copy, k, MAX_HEAD, &g_head, &g_err);
        if (rc != SL_EAGAIN) {
            print_error("prefix %zu: rc %ld (%s)\n", k, rc, g_err.reason ? g_err.reason : "-");
            fail();
        }
        free(copy);
    }
    for (size_t k = head_len; k <= len; k++) {
        assert_int_equal(parse_n(req, k, MAX_HEAD), head_len);
        assert_sl_str(g_head.method, "PUT");
        assert_sl_str(g_head.path, "/up");
        assert_sl_str(g_head.query, "load=1");
        assert_sl_str(g_head.host, "example.com:8080");
        assert_int_equal(g_head.n_headers, 5);
        assert_sl_str(g_head.headers[4].name, "X-Empty");
        assert_sl_str(g_head.headers[4].value, "");
        assert_false(g_head.keep_alive);
        assert_true(g_head.expect_continue);
        assert_int_equal(g_head.body_kind, SL_HTTP_BODY_LENGTH);
        assert_int_equal(g_head.content_length, 4);
    }
}

static void test_absolute_form(void **state)
{
    const char *req = "GET http://example.com:8080/a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n";
    expect_ok(req);
    assert_sl_str(g_head.target, "http://example.com:8080/a/b?x=1&y");
    assert_sl_str(g_head.path, "/a/b");
    assert_sl_str(g_head.query, "x=1&y");

    expect_ok("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_sl_str(g_head.path, "/");
    assert_sl_str(g_head.query, "");
    /* even the synthesized "/" points into the input (callers rebase the views) */
    assert_true(g_head.path.base > g_head.target.base &&
                g_head.path.base < g_head.target.base + g_head.target.len);

    expect_ok("GET HTTP://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.path, "/");
    assert_sl_str(g_head.query, "q=1");

    expect_ok("GET http://[::1]:80/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.path, "/x");

    expect_error("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                 "invalid authority in absolute-form target");
    expect_status("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET http://h:8a/x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET http://[::1/x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_error("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                 "unsupported request-target form");
    expect_status("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_query_split(void **state)
{
    expect_ok("GET /p?a=1?b=2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.path, "/p");
    assert_sl_str(g_head.query, "a=1?b=2");
    expect_ok("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.path, "/p");
    assert_sl_str(g_head.query, "");
    expect_ok("GET /?x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.path, "/");
    assert_sl_str(g_head.query, "x");
}

static void test_asterisk_form(void **state)
{
    expect_ok("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.target, "*");
    assert_sl_str(g_head.path, "*");
    expect_error("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                 "asterisk-form target is only allowed with OPTIONS");
    expect_status("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("options * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_keep_alive(void **state)
{
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(g_head.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_false(g_head.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade,  CLOSE \r\n\r\n");
    assert_false(g_head.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n");
    assert_true(g_head.keep_alive);
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
    assert_false(g_head.keep_alive);

    expect_ok("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(g_head.minor_version, 0);
    assert_false(g_head.keep_alive);
    assert_null(g_head.host.base);
    assert_int_equal(g_head.host.len, 0);
    expect_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(g_head.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nConnection: foo,keep-alive\r\n\r\n");
    assert_true(g_head.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    assert_false(g_head.keep_alive);
    expect_ok("GET / HTTP/1.0\r\nHost: h\r\n\r\n");
    assert_sl_str(g_head.host, "h");
}

static void test_version(void **state)
{
    expect_error("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP version not supported");
    expect_status("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    expect_status("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
    expect_status("GET / HTTP/3.1\r\n\r\n", 505);
    /* 505 is known once the request line is complete */
    assert_int_equal(parse("GET / HTTP/2.0\r\n"), SL_EINVAL);
    assert_int_equal(g_err.status, 505);

    expect_error("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400, "malformed HTTP version");
    expect_status("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/11.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/a.b\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400);
    expect_error("GET /\r\nHost: h\r\n\r\n", 400, "no HTTP version in request line");
}

static void test_request_line_errors(void **state)
{
    expect_error("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "extra space in request line");
    expect_error("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, "extra space in request line");
    expect_status("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_error("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in method");
    expect_error("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                 "invalid character in request-target");
    expect_status("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400);
}

static void test_bare_cr_lf(void **state)
{
    const char *bare_cr = "bare CR in request head", *bare_lf = "bare LF in request head";
    expect_error("GET / HTTP/1.1\nHost: h\r\n\r\n", 400, bare_lf);
    expect_error("GET / HTTP/1.1\rHost: h\r\n\r\n", 400, bare_cr);
    expect_error("GET / HTTP/1.1\r\nHost: h\n\r\n", 400, bare_lf);
    expect_error("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400, bare_cr);
    expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, bare_cr);
    expect_error("GET / HTTP/1.1\r\nHost: h\r\n\n", 400, bare_lf);
    expect_error("GET / HTTP/1.1\r\nHost: h\r\n\rX", 400, bare_cr);
    expect_error("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, bare_lf);
    expect_error("\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, bare_cr);
    expect_status("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET\r / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

/* Invalid bytes are refused as soon as they are seen, without waiting for CRLF CRLF. */
static void test_early_detection(void **state)
{
    assert_int_equal(parse("GET /\rX"), SL_EINVAL);
    assert_int_equal(g_err.status, 400);
    assert_int_equal(parse("GET /x\r"), SL_EINVAL);
    assert_int_equal(parse("G\x01"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTP/1.1\r"), SL_EAGAIN);
    assert_int_equal(parse("GET / HTTP/1.1\rX"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTP/1.1\n"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTX"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHo st"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\x01"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n folded"), SL_EINVAL);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nX: y"), SL_EAGAIN);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nX: y\r"), SL_EAGAIN);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r"), SL_EAGAIN);
    assert_int_equal(parse(""), SL_EAGAIN);
}

static void test_empty_lines_before_request(void **state)
{
    const char *req = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    expect_ok(req);
    assert_sl_str(g_head.method, "GET");
    assert_ptr_equal(g_head.method.base, req + 4);

    char buf[256];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    snprintf(buf + n, sizeof(buf) - n, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_ok(buf);
    snprintf(buf + n, sizeof(buf) - n, "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_error(buf, 400, "too many empty lines before the request line");
}

static void test_header_syntax_errors(void **state)
{
    expect_error("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400,
                 "whitespace between header name and colon");
    expect_status("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
    expect_error("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400, "empty header name");
    expect_error("GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n", 400,
                 "invalid character in header name");
    expect_error("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400, "header line without colon");
    expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400,
                 "invalid character in header value");
    expect_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
                  "b\r\n\r\n",
                  400);
    expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400,
                 "obsolete line folding in header");
    expect_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);

    /* NUL cannot go through a C string literal test helper: use an explicit length */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    assert_int_equal(parse_n(nul, sizeof(nul) - 1, MAX_HEAD), SL_EINVAL);
    assert_int_equal(g_err.status, 400);
    assert_string_equal(g_err.reason, "invalid character in header value");
}

static void test_header_values(void **state)
{
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\nX: \t a \t b \t\r\nY:\r\nZ:   \r\n"
              "W: caf\xc3\xa9\x80\xff\r\n\r\n");
    assert_int_equal(g_head.n_headers, 5);
    assert_sl_str(g_head.headers[1].value, "a \t b");
    assert_sl_str(g_head.headers[2].value, "");
    assert_sl_str(g_head.headers[3].value, "");
    assert_sl_str(g_head.headers[4].value, "caf\xc3\xa9\x80\xff");
}

static void test_too_many_headers(void **state)
{
    static char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < SL_HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: %d\r\n", i, i);
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    expect_ok(buf);
    assert_int_equal(g_head.n_headers, SL_HTTP_MAX_HEADERS);
    assert_sl_str(g_head.headers[SL_HTTP_MAX_HEADERS - 1].value, "99");

    snprintf(buf + n, sizeof(buf) - n, "X-100: 100\r\n\r\n");
    expect_error(buf, 431, "too many header fields");
    /* known before the head is complete */
    snprintf(buf + n, sizeof(buf) - n, "X");
    assert_int_equal(parse(buf), SL_EINVAL);
    assert_int_equal(g_err.status, 431);
}

static void test_head_too_large(void **state)
{
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"; /* 27 bytes */
    size_t len = strlen(req);
    assert_int_equal(len, 27);

    assert_int_equal(parse_n(req, len, 27), 27);
    assert_int_equal(parse_n(req, len, 26), SL_EINVAL);
    assert_int_equal(g_err.status, 431);
    assert_string_equal(g_err.reason, "request head too large");
    /* incomplete but already longer than the bound */
    assert_int_equal(parse_n(req, 20, 10), SL_EINVAL);
    assert_int_equal(g_err.status, 431);
    /* incomplete and within the bound: wait */
    assert_int_equal(parse_n(req, 10, 10), SL_EAGAIN);
    /* leading empty lines count */
    assert_int_equal(parse_n("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 29, 28), SL_EINVAL);
    assert_int_equal(g_err.status, 431);
    /* bytes after a complete head do not count */
    assert_int_equal(parse_n("GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /", 32, 27), 27);
    /* an invalid byte inside the bound wins over the bound */
    assert_int_equal(parse_n("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 28, 10), SL_EINVAL);
    assert_int_equal(g_err.status, 400);
}

static void test_content_length_errors(void **state)
{
    const char *bad[] = {"+1",
                         "-1",
                         "1 2",
                         "1,1",
                         "1, 1",
                         "",
                         "0x10",
                         "1.0",
                         "1a",
                         "18446744073709551616",
                         "99999999999999999999999"};
    char buf[256];
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n",
                 bad[i]);
        expect_error(buf, 400, "invalid Content-Length");
    }
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                 400, "more than one Content-Length header");
    expect_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
                  400);
}

static void test_transfer_encoding_errors(void **state)
{
    const char *bad[] = {"gzip",       "gzip, chunked",    "chunked, gzip", "identity",
                         "",           "chunked, chunked", "chunked;q=1",   "chunk",
                         "\"chunked\""};
    char buf[256];
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n",
                 bad[i]);
        expect_error(buf, 400, "unsupported Transfer-Encoding (only chunked is accepted)");
    }
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n",
                 400, "more than one Transfer-Encoding header");
    expect_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                 "Transfer-Encoding in an HTTP/1.0 request");
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n",
                 400, "both Content-Length and Transfer-Encoding are present");
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 5\r\n\r\n",
                 400, "both Content-Length and Transfer-Encoding are present");
}

static void test_host_rules(void **state)
{
    expect_error("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, "missing Host header");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "more than one Host header");
    expect_status("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    expect_error("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host header");
    expect_status("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400);
    expect_ok("GET / HTTP/1.1\r\nHOST: [::1]:8080\r\n\r\n");
    assert_sl_str(g_head.host, "[::1]:8080");
    expect_ok("GET / HTTP/1.1\r\nHost:  api.example.com  \r\n\r\n");
    assert_sl_str(g_head.host, "api.example.com");
    /* an empty Host is valid syntax (RFC 9112 §3.2) */
    expect_ok("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    assert_int_equal(g_head.host.len, 0);
}

static void test_expect(void **state)
{
    expect_ok("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert_true(g_head.expect_continue);
    expect_ok("POST / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_false(g_head.expect_continue);
    /* RFC 9110 §10.1.1: ignored in HTTP/1.0 */
    expect_ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert_false(g_head.expect_continue);
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417,
                 "unsupported Expect value (only 100-continue is accepted)");
    expect_status("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, foo\r\n\r\n", 417);
    expect_status("POST / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n", 417);
    /* a framing problem outranks the expectation */
    expect_status("POST / HTTP/1.1\r\nHost: h\r\nExpect: x\r\nContent-Length: a\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nExpect: x\r\n\r\n", 400);
}

static void test_find_header(void **state)
{
    expect_ok("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    const struct sl_http_header *h = sl_http_find_header(&g_head, SL_STR("X-a"));
    assert_non_null(h);
    assert_ptr_equal(h, &g_head.headers[1]);
    assert_sl_str(h->value, "1");
    assert_null(sl_http_find_header(&g_head, SL_STR("X-B")));
    assert_null(sl_http_find_header(&g_head, SL_STR("X-")));
}

/* Every byte value in each position, against the RFC's definitions written out plainly. */
static bool ref_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void test_byte_classes(void **state)
{
    char buf[128];
    for (int c = 0; c < 256; c++) {
        int n = snprintf(buf, sizeof(buf), "G_T / HTTP/1.1\r\nHost: h\r\n\r\n");
        buf[1] = (char)c;
        long rc = parse_n(buf, (size_t)n, MAX_HEAD);
        if ((rc == n) != ref_tchar(c)) {
            print_error("method byte 0x%02x: rc %ld\n", c, rc);
            fail();
        }

        n = snprintf(buf, sizeof(buf), "GET /a_b HTTP/1.1\r\nHost: h\r\n\r\n");
        buf[6] = (char)c;
        rc = parse_n(buf, (size_t)n, MAX_HEAD);
        if ((rc == n) != (c >= 0x21 && c <= 0x7e)) {
            print_error("target byte 0x%02x: rc %ld\n", c, rc);
            fail();
        }

        n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX_Y: v\r\n\r\n");
        buf[26] = (char)c;
        rc = parse_n(buf, (size_t)n, MAX_HEAD);
        /* a ':' just ends the name early ("X" with value "Y: v"), which is fine */
        if (c != ':' && (rc == n) != ref_tchar(c)) {
            print_error("name byte 0x%02x: rc %ld\n", c, rc);
            fail();
        }

        n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: a_b\r\n\r\n");
        buf[29] = (char)c;
        rc = parse_n(buf, (size_t)n, MAX_HEAD);
        bool value_ok = c == '\t' || (c >= 0x20 && c != 0x7f);
        if ((rc == n) != value_ok) {
            print_error("value byte 0x%02x: rc %ld\n", c, rc);
            fail();
        }
        if (value_ok)
            assert_int_equal((unsigned char)g_head.headers[1].value.base[1], c);
    }
}

/* ---- chunked decoder ---- */

struct chunked_result {
    int rc;
    size_t consumed;
};

static struct chunked_result decode_all(const char *in, size_t len, size_t max_line,
                                        size_t max_body, struct sl_buf *out)
{
    struct sl_http_chunked d;
    struct chunked_result r = {0, 0};
    sl_http_chunked_init(&d, max_line);
    r.rc = sl_http_chunked_decode(&d, in, len, &r.consumed, out, max_body);
    return r;
}

static int decode_str(const char *in, size_t max_line, size_t max_body, struct sl_buf *out)
{
    return decode_all(in, strlen(in), max_line, max_body, out).rc;
}

static void test_chunked_valid(void **state)
{
    const char *body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    struct sl_buf out;
    sl_buf_init(&out);
    struct chunked_result r = decode_all(body, strlen(body), 64, 1024, &out);
    assert_int_equal(r.rc, SL_OK);
    assert_int_equal(r.consumed, strlen(body) - strlen("GET / HTTP/1.1\r\n"));
    assert_int_equal(out.len, 11);
    assert_memory_equal(out.base, "hello world", 11);
    sl_buf_dispose(&out);

    /* hex digits in either case, leading zeros */
    sl_buf_init(&out);
    assert_int_equal(
        decode_str("000a\r\n0123456789\r\nA\r\nabcdefghij\r\n00\r\n\r\n", 64, 1024, &out), SL_OK);
    assert_int_equal(out.len, 20);
    sl_buf_dispose(&out);

    /* an empty body */
    sl_buf_init(&out);
    assert_int_equal(decode_str("0\r\n\r\n", 64, 0, &out), SL_OK);
    assert_int_equal(out.len, 0);
    sl_buf_dispose(&out);
}

static const char ext_and_trailers[] = "5;foo=bar;baz\r\nhello\r\n"
                                       "6;q=\"a \\\" ;b\"\r\n world\r\n"
                                       "1;x=y;z=\"\"\r\n!\r\n"
                                       "0;last\r\n"
                                       "X-Checksum: abc\r\n"
                                       "Y:\r\n"
                                       "\r\n";

static void test_chunked_extensions_trailers(void **state)
{
    struct sl_buf out;
    sl_buf_init(&out);
    struct chunked_result r =
        decode_all(ext_and_trailers, sizeof(ext_and_trailers) - 1, 64, 1024, &out);
    assert_int_equal(r.rc, SL_OK);
    assert_int_equal(r.consumed, sizeof(ext_and_trailers) - 1);
    assert_int_equal(out.len, 12);
    assert_memory_equal(out.base, "hello world!", 12);
    sl_buf_dispose(&out);
}

static void test_chunked_one_byte_at_a_time(void **state)
{
    struct sl_http_chunked d;
    struct sl_buf out;
    size_t len = sizeof(ext_and_trailers) - 1;
    sl_buf_init(&out);
    sl_http_chunked_init(&d, 64);
    for (size_t i = 0; i < len; i++) {
        size_t consumed = 99;
        char byte = ext_and_trailers[i]; /* a copy, so ASan sees any read past it */
        int rc = sl_http_chunked_decode(&d, &byte, 1, &consumed, &out, 1024);
        assert_int_equal(consumed, 1);
        assert_int_equal(rc, i + 1 == len ? SL_OK : SL_EAGAIN);
    }
    assert_int_equal(out.len, 12);
    assert_memory_equal(out.base, "hello world!", 12);

    /* once done, it stays done and takes nothing more */
    size_t consumed = 99;
    assert_int_equal(sl_http_chunked_decode(&d, "5\r\n", 3, &consumed, &out, 1024), SL_OK);
    assert_int_equal(consumed, 0);
    sl_buf_dispose(&out);
}

static void test_chunked_incomplete(void **state)
{
    struct sl_buf out;
    sl_buf_init(&out);
    struct chunked_result r = decode_all("5\r\nhel", 6, 64, 1024, &out);
    assert_int_equal(r.rc, SL_EAGAIN);
    assert_int_equal(r.consumed, 6);
    assert_int_equal(out.len, 3);
    sl_buf_dispose(&out);

    sl_buf_init(&out);
    assert_int_equal(decode_str("7fffffffffffffff\r\n", 64, SIZE_MAX, &out), SL_EAGAIN);
    assert_int_equal(decode_str("0\r\nX: y\r\n", 64, 1024, &out), SL_EAGAIN);
    assert_int_equal(decode_str("", 64, 1024, &out), SL_EAGAIN);
    sl_buf_dispose(&out);
}

static void test_chunked_malformed(void **state)
{
    const char *bad[] = {
        "\r\n",                       /* empty size */
        "+5\r\nhello\r\n0\r\n\r\n",   /* sign */
        "-5\r\nhello\r\n0\r\n\r\n",   /* sign */
        "0x5\r\nhello\r\n0\r\n\r\n",  /* C-style prefix */
        " 5\r\nhello\r\n0\r\n\r\n",   /* space before */
        "5 \r\nhello\r\n0\r\n\r\n",   /* space after */
        "5 ;a\r\nhello\r\n0\r\n\r\n", /* space before extension */
        "g\r\n",                      /* not hex */
        "5\nhello\r\n0\r\n\r\n",      /* bare LF after size */
        "5\rhello\r\n0\r\n\r\n",      /* bare CR after size */
        "5\r\nhelloX\r\n0\r\n\r\n",   /* data longer than size */
        "5\r\nhello\n0\r\n\r\n",      /* bare LF after data */
        "5\r\nhello\r0\r\n\r\n",      /* bare CR after data */
        "5\r\nhello0\r\n\r\n",        /* no CRLF after data */
        "5;\r\nhello\r\n0\r\n\r\n",   /* empty extension name */
        "5;a=\r\nhello\r\n0\r\n\r\n", /* empty extension value */
        "5;a=\"x\r\n",                /* unterminated quoted-string */
        "5;a=\"x\"y\r\n",             /* junk after quoted-string */
        "5;a b\r\n",                  /* space in extension */
        "8000000000000000\r\n",       /* 2^63 */
        "10000000000000000\r\n",      /* 2^64 */
        "0\r\n X: y\r\n\r\n",         /* trailer folding */
        "0\r\nX : y\r\n\r\n",         /* space before colon */
        "0\r\n: y\r\n\r\n",           /* empty trailer name */
        "0\r\nX: a\x01\r\n\r\n",      /* control character */
        "0\r\nX: y\n\r\n",            /* bare LF in trailer */
        "0\r\nX: y\r\n\n",            /* bare LF ending trailers */
        "0\r\n\rX",                   /* bare CR ending trailers */
        "0\r\nNoColon\r\n\r\n",       /* trailer without colon */
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        struct sl_buf out;
        sl_buf_init(&out);
        int rc = decode_str(bad[i], 64, SIZE_MAX, &out);
        if (rc != SL_EINVAL) {
            print_error("case %zu: rc %d\n", i, rc);
            fail();
        }
        sl_buf_dispose(&out);
    }
}

static void test_chunked_errors_stick(void **state)
{
    struct sl_http_chunked d;
    struct sl_buf out;
    size_t consumed = 99;
    sl_buf_init(&out);
    sl_http_chunked_init(&d, 64);
    assert_int_equal(sl_http_chunked_decode(&d, "5\r\nhelloXX", 10, &consumed, &out, 1024),
                     SL_EINVAL);
    assert_int_equal(consumed, 8); /* the bytes before the bad one */
    assert_int_equal(sl_http_chunked_decode(&d, "\r\n0\r\n\r\n", 7, &consumed, &out, 1024),
                     SL_EINVAL);
    assert_int_equal(consumed, 0);
    sl_buf_dispose(&out);
}

static void test_chunked_line_bounds(void **state)
{
    struct sl_buf out;
    sl_buf_init(&out);
    /* size line "5;abcdefgh\r\n" is 12 bytes */
    assert_int_equal(decode_str("5;abcdefgh\r\nhello\r\n0\r\n\r\n", 12, 1024, &out), SL_OK);
    out.len = 0;
    assert_int_equal(decode_str("5;abcdefgh\r\nhello\r\n0\r\n\r\n", 11, 1024, &out), SL_EINVAL);
    out.len = 0;
    /* leading zeros count against the line bound too */
    assert_int_equal(decode_str("0000000000005\r\nhello\r\n0\r\n\r\n", 8, 1024, &out), SL_EINVAL);
    out.len = 0;
    /* the bound is per line: many short lines are fine */
    assert_int_equal(decode_str("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n0\r\n\r\n", 3, 1024, &out),
                     SL_OK);
    assert_int_equal(out.len, 4);
    out.len = 0;
    /* the trailer section, final CRLF included, is bounded as a whole: "A: 1\r\nB: 2\r\n\r\n" */
    assert_int_equal(decode_str("0\r\nA: 1\r\nB: 2\r\n\r\n", 14, 1024, &out), SL_OK);
    out.len = 0;
    assert_int_equal(decode_str("0\r\nA: 1\r\nB: 2\r\n\r\n", 13, 1024, &out), SL_EINVAL);
    sl_buf_dispose(&out);
}

static void test_chunked_too_big(void **state)
{
    struct sl_buf out;
    sl_buf_init(&out);
    assert_int_equal(decode_str("5\r\nhello\r\n0\r\n\r\n", 64, 5, &out), SL_OK);
    out.len = 0;
    struct chunked_result r = decode_all("5\r\nhello\r\n0\r\n\r\n", 16, 64, 4, &out);
    assert_int_equal(r.rc, SL_ETOOBIG);
    assert_int_equal(out.len, 0); /* refused at the size line, before any data */
    out.len = 0;
    assert_int_equal(decode_str("3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 64, 5, &out), SL_ETOOBIG);
    assert_int_equal(out.len, 3);
    out.len = 0;
    assert_int_equal(decode_str("7fffffffffffffff\r\n", 64, 1 << 20, &out), SL_ETOOBIG);
    /* out already holding bytes counts */
    out.len = 0;
    assert_int_equal(sl_buf_append(&out, "xyz", 3), SL_OK);
    assert_int_equal(decode_str("3\r\nabc\r\n0\r\n\r\n", 64, 5, &out), SL_ETOOBIG);
    sl_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_content_length_values),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_asterisk_form),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_request_line_errors),
        cmocka_unit_test(test_bare_cr_lf),
        cmocka_unit_test(test_early_detection),
        cmocka_unit_test(test_empty_lines_before_request),
        cmocka_unit_test(test_header_syntax_errors),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_content_length_errors),
        cmocka_unit_test(test_transfer_encoding_errors),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_byte_classes),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_chunked_one_byte_at_a_time),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_malformed),
        cmocka_unit_test(test_chunked_errors_stick),
        cmocka_unit_test(test_chunked_line_bounds),
        cmocka_unit_test(test_chunked_too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
