/*
 * libFuzzer target for the HTTP/1.1 request parser and the chunked decoder.
 *
 * Besides "no crash, no sanitizer report" it checks the properties the
 * connection code relies on:
 *   - a parse result is well-formed (views inside the head, statuses in range);
 *   - a prefix of the input parses to SL_EAGAIN or to exactly the answer the
 *     whole input gives (incremental parsing cannot change the verdict);
 *   - max_head only turns answers into 431 or SL_EAGAIN, never into others;
 *   - the chunked decoder gives the same result, the same consumed count and
 *     the same output however its input is split.
 * Every prefix and piece is copied into a buffer of exactly its size so that
 * ASan reports any read past the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct outcome {
    long rc;
    int status;
    const char *reason;
};

/* Heads are large; keep them out of the stack frame. */
static struct sl_http_header g_ref_headers[SL_HTTP_MAX_HEADERS], g_cur_headers[SL_HTTP_MAX_HEADERS];
static struct sl_http_request_head g_ref = {.headers = g_ref_headers},
                                   g_cur = {.headers = g_cur_headers};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

/* A heap copy of exactly n bytes (one byte allocated when n is 0). */
static char *copy_of(const uint8_t *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

static bool in_head(struct sl_str s, const char *buf, long n)
{
    return s.base >= buf && s.len <= (size_t)n && s.base + s.len <= buf + n;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_view(struct sl_str s, const char *buf, long n, bool may_be_empty)
{
    CHECK(s.base != NULL);
    CHECK(in_head(s, buf, n));
    CHECK(may_be_empty || s.len > 0);
    CHECK(memchr(s.base, '\r', s.len) == NULL && memchr(s.base, '\n', s.len) == NULL);
}

static struct outcome parse(const char *buf, size_t len, size_t max_head,
                            struct sl_http_request_head *h)
{
    struct sl_http_parse_error e = {0, NULL};
    struct outcome o = {0, 0, NULL};
    o.rc = sl_http_parse_request(buf, len, max_head, h, &e);
    if (o.rc == SL_EINVAL) {
        o.status = e.status;
        o.reason = e.reason;
        CHECK(o.status == 400 || o.status == 417 || o.status == 431 || o.status == 505);
        CHECK(o.reason != NULL && o.reason[0] != '\0');
    } else if (o.rc == SL_EAGAIN) {
        CHECK(len <= max_head);
    } else {
        CHECK(o.rc > 0 && (size_t)o.rc <= len && (size_t)o.rc <= max_head);
        CHECK(o.rc >= 4 && memcmp(buf + o.rc - 4, "\r\n\r\n", 4) == 0);
        check_view(h->method, buf, o.rc, false);
        check_view(h->target, buf, o.rc, false);
        check_view(h->path, buf, o.rc, false);
        check_view(h->query, buf, o.rc, true);
        CHECK(h->minor_version == 0 || h->minor_version == 1);
        CHECK(h->n_headers <= SL_HTTP_MAX_HEADERS);
        for (size_t i = 0; i < h->n_headers; i++) {
            struct sl_str v = h->headers[i].value;
            check_view(h->headers[i].name, buf, o.rc, false);
            check_view(v, buf, o.rc, true);
            CHECK(memchr(h->headers[i].name.base, ':', h->headers[i].name.len) == NULL);
            CHECK(v.len == 0 || (!is_ows(v.base[0]) && !is_ows(v.base[v.len - 1])));
        }
        if (h->host.base || h->minor_version == 1)
            check_view(h->host, buf, o.rc, true);
        CHECK(h->body_kind == SL_HTTP_BODY_NONE || h->body_kind == SL_HTTP_BODY_LENGTH ||
              h->body_kind == SL_HTTP_BODY_CHUNKED);
        CHECK(h->body_kind != SL_HTTP_BODY_CHUNKED || h->minor_version == 1);
        CHECK(h->body_kind == SL_HTTP_BODY_LENGTH ||
              sl_http_find_header(h, SL_STR("content-length")) == NULL);
        CHECK(!h->expect_continue || h->minor_version == 1);
    }
    return o;
}

static bool same_view(struct sl_str a, const char *abuf, struct sl_str b, const char *bbuf)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == NULL && b.base == NULL && a.len == b.len;
    return a.len == b.len && a.base - abuf == b.base - bbuf;
}

static bool same_outcome(struct outcome a, const struct sl_http_request_head *ha, const char *abuf,
                         struct outcome b, const struct sl_http_request_head *hb, const char *bbuf)
{
    if (a.rc != b.rc || a.status != b.status)
        return false;
    if (a.rc == SL_EINVAL)
        return strcmp(a.reason, b.reason) == 0;
    if (a.rc < 0)
        return true;
    if (!same_view(ha->method, abuf, hb->method, bbuf) ||
        !same_view(ha->target, abuf, hb->target, bbuf) ||
        !same_view(ha->path, abuf, hb->path, bbuf) ||
        !same_view(ha->query, abuf, hb->query, bbuf) ||
        !same_view(ha->host, abuf, hb->host, bbuf) || ha->minor_version != hb->minor_version ||
        ha->n_headers != hb->n_headers || ha->body_kind != hb->body_kind ||
        ha->keep_alive != hb->keep_alive || ha->expect_continue != hb->expect_continue)
        return false;
    if (ha->body_kind == SL_HTTP_BODY_LENGTH && ha->content_length != hb->content_length)
        return false;
    for (size_t i = 0; i < ha->n_headers; i++)
        if (!same_view(ha->headers[i].name, abuf, hb->headers[i].name, bbuf) ||
            !same_view(ha->headers[i].value, abuf, hb->headers[i].value, bbuf))
            return false;
    return true;
}

static bool too_large(struct outcome o)
{
    return o.rc == SL_EINVAL && o.status == 431 && strcmp(o.reason, "request head too large") == 0;
}

/* Prefixes of the input: SL_EAGAIN or the whole-input answer, never anything else. */
static void check_prefixes(const uint8_t *data, size_t size, size_t max_head, uint64_t *rng)
{
    const char *buf = (const char *)data;
    struct outcome whole = parse(buf, size, max_head, &g_ref);

    size_t n_checks = size <= 160 ? size : 40;
    for (size_t i = 0; i < n_checks; i++) {
        size_t k;
        if (size <= 160)
            k = i;
        else if (i < 4) /* the edges: nearly everything, and just before the head ends */
            k = i < 2 ? size - 1 - i : (whole.rc > 0 ? (size_t)whole.rc - (i - 2) : i);
        else
            k = (size_t)(splitmix(rng) % size);
        char *prefix = copy_of(data, k);
        struct outcome part = parse(prefix, k, max_head, &g_cur);
        if (part.rc != SL_EAGAIN && !same_outcome(whole, &g_ref, buf, part, &g_cur, prefix)) {
            fprintf(stderr, "prefix %zu of %zu (max_head %zu): rc %ld/%d (%s), whole %ld/%d (%s)\n",
                    k, size, max_head, part.rc, part.status, part.reason ? part.reason : "-",
                    whole.rc, whole.status, whole.reason ? whole.reason : "-");
            abort();
        }
        /* once the head is complete, every longer prefix has it too */
        CHECK(whole.rc <= 0 || k < (size_t)whole.rc || part.rc == whole.rc);
        free(prefix);
    }
}

/* max_head may only turn an answer into 431 (too large) or SL_EAGAIN (nothing seen yet). */
static void check_bound(const uint8_t *data, size_t size, size_t max_head)
{
    const char *buf = (const char *)data;
    struct outcome unbounded = parse(buf, size, SIZE_MAX, &g_ref);
    struct outcome bounded = parse(buf, size, max_head, &g_cur);
    if (size <= max_head || !too_large(bounded))
        CHECK(same_outcome(unbounded, &g_ref, buf, bounded, &g_cur, buf));
    else
        CHECK(unbounded.rc <= 0 || (size_t)unbounded.rc > max_head);
}

struct chunked_run {
    int rc;
    size_t consumed;
    struct sl_buf out;
};

/*
 * Decode in pieces: piece_max 0 means all at once, otherwise random piece
 * sizes in 1..piece_max.
 */
static void chunked_run(const uint8_t *data, size_t size, size_t max_line, size_t max_body,
                        size_t piece_max, uint64_t *rng, struct chunked_run *r)
{
    struct sl_http_chunked d;
    sl_http_chunked_init(&d, max_line);
    sl_buf_init(&r->out);
    r->consumed = 0;
    r->rc = SL_EAGAIN;
    size_t off = 0;
    do {
        size_t n = size - off;
        if (piece_max && n > 0) {
            size_t want = 1 + (size_t)(splitmix(rng) % piece_max); /* SL_MIN evaluates twice */
            n = SL_MIN(n, want);
        }
        char *piece = copy_of(data + off, n);
        size_t used = (size_t)-1;
        r->rc = sl_http_chunked_decode(&d, piece, n, &used, &r->out, max_body);
        free(piece);
        CHECK(used <= n);
        CHECK(r->rc == SL_OK || r->rc == SL_EAGAIN || r->rc == SL_EINVAL || r->rc == SL_ETOOBIG);
        CHECK(r->rc != SL_EAGAIN || used == n);
        CHECK(r->out.len <= max_body);
        off += used;
        if (r->rc != SL_EAGAIN)
            break;
    } while (off < size);
    r->consumed = off;
}

static void check_chunked(const uint8_t *data, size_t size, size_t max_line, size_t max_body,
                          uint64_t *rng)
{
    static const size_t piece_max[] = {1, 3, 16, 256};
    struct chunked_run whole, part;
    chunked_run(data, size, max_line, max_body, 0, rng, &whole);
    for (size_t i = 0; i < SL_ARRAY_LEN(piece_max); i++) {
        if (piece_max[i] == 1 && size > 4096)
            continue;
        chunked_run(data, size, max_line, max_body, piece_max[i], rng, &part);
        if (part.rc != whole.rc || part.consumed != whole.consumed ||
            part.out.len != whole.out.len ||
            (part.out.len && memcmp(part.out.base, whole.out.base, part.out.len) != 0)) {
            fprintf(stderr, "chunked split %zu: rc %d consumed %zu out %zu; whole %d %zu %zu\n",
                    piece_max[i], part.rc, part.consumed, part.out.len, whole.rc, whole.consumed,
                    whole.out.len);
            abort();
        }
        sl_buf_dispose(&part.out);
    }
    sl_buf_dispose(&whole.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t rng = hash_bytes(data, size);
    const size_t max_heads[] = {SIZE_MAX, 16384, 256, 40, size, size / 2, 1, 0};

    for (size_t i = 0; i < SL_ARRAY_LEN(max_heads); i++) {
        check_prefixes(data, size, max_heads[i], &rng);
        check_bound(data, size, max_heads[i]);
    }

    /* Pipelined requests, and the chunked body after a chunked head. */
    size_t off = 0;
    for (int i = 0; i < 16 && off < size; i++) {
        struct outcome o = parse((const char *)data + off, size - off, 16384, &g_ref);
        if (o.rc <= 0)
            break;
        off += (size_t)o.rc;
        if (g_ref.body_kind == SL_HTTP_BODY_CHUNKED) {
            check_chunked(data + off, size - off, 4096, 1 << 20, &rng);
            break;
        }
        if (g_ref.body_kind == SL_HTTP_BODY_LENGTH)
            off += (size_t)SL_MIN(g_ref.content_length, (uint64_t)(size - off));
    }

    /* The whole input as a chunked body, with loose and tight bounds. */
    check_chunked(data, size, 4096, 1 << 20, &rng);
    check_chunked(data, size, 16, 64, &rng);
    return 0;
}
