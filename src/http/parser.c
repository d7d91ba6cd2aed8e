/*
 * The HTTP/1.1 request head parser and the chunked body decoder.
 *
 * The head parser is one left-to-right pass over buf that keeps no state
 * between calls: a caller with more bytes simply calls again with the longer
 * buffer (re-parsing is cheap next to a syscall, and keeps the parser free of
 * resumption bugs). Every decision at byte i depends only on bytes 0..i, so a
 * prefix of a request gives either SL_EAGAIN or exactly the answer the whole
 * request gives; the fuzz target checks this.
 *
 * Only buf[0..max_head) is ever looked at. Running out of that window with more
 * bytes in buf means the head is too large (431); running out of buf means
 * SL_EAGAIN.
 *
 * Errors in the bytes themselves (bad characters, bare CR or LF, folding) are
 * reported at the first bad byte, even before the head is complete. Errors in
 * what the headers mean (duplicate or conflicting framing headers, Host,
 * Expect) are reported when the head is complete, so that a malformed head is
 * always answered 400 rather than, say, 417.
 *
 * Choices the header leaves open:
 *   - Content-Length: 0 gives SL_HTTP_BODY_LENGTH with content_length 0.
 *   - Every non-NULL view points into buf (callers rebase them when the buffer
 *     moves). For absolute-form without a path ("http://h" or "http://h?q"),
 *     path is the "/" view of the last slash of "://".
 *   - An absent query is an empty view at the end of the path (never NULL).
 *   - A missing Host (allowed only in HTTP/1.0) leaves host SL_STR_NULL.
 *   - Expect: 100-continue in an HTTP/1.0 request is ignored, as RFC 9110
 *     §10.1.1 requires; any other Expect value gives 417 in either version.
 *   - Host must be empty or host[:port] (reg-name or [IPv6]); so must the
 *     authority of an absolute-form target (no userinfo, non-empty host).
 */
#include "http/parser.h"

#include <limits.h>
#include <string.h>

/* Empty lines tolerated before the request line (RFC 9112 §2.2). */
#define SL_HTTP_MAX_EMPTY_LINES 8

/* Byte classes, as bits of sl_http_cc[]. */
enum {
    CC_TCHAR = 1,  /* token character (RFC 9110 §5.6.2) */
    CC_TARGET = 2, /* allowed in a request-target: visible ASCII 0x21-0x7E */
    CC_VALUE = 4,  /* allowed in a field value: HTAB, SP, VCHAR, obs-text */
    CC_HOST = 8,   /* allowed in Host / an authority: unreserved, sub-delims, ":[]%" */
};

/* One lookup per byte on the hot path; generated, checked by the unit tests. */
// clang-format off
static const unsigned char sl_http_cc[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,  /* 0x00 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
     4, 15,  6,  7, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15,  6,  /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14,  6, 14,  6,  6,  /* 0x30 */
     6, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14,  6, 14,  7, 15,  /* 0x50 */
     7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  7,  6, 15,  0,  /* 0x70 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x80 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x90 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xa0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xb0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xc0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xd0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xe0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xf0 */
};
// clang-format on

static const char R_BARE_CR[] = "bare CR in request head";
static const char R_BARE_LF[] = "bare LF in request head";

static inline bool is_cc(unsigned char c, unsigned cls)
{
    return (sl_http_cc[c] & cls) != 0;
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static inline struct sl_str span(const unsigned char *from, const unsigned char *to)
{
    return (struct sl_str){(const char *)from, (size_t)(to - from)};
}

/* Skip field-value bytes; unrolled because values are most of a head's bytes. */
static inline const unsigned char *skip_value(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8) {
        if (!is_cc(p[0], CC_VALUE))
            return p;
        if (!is_cc(p[1], CC_VALUE))
            return p + 1;
        if (!is_cc(p[2], CC_VALUE))
            return p + 2;
        if (!is_cc(p[3], CC_VALUE))
            return p + 3;
        if (!is_cc(p[4], CC_VALUE))
            return p + 4;
        if (!is_cc(p[5], CC_VALUE))
            return p + 5;
        if (!is_cc(p[6], CC_VALUE))
            return p + 6;
        if (!is_cc(p[7], CC_VALUE))
            return p + 7;
        p += 8;
    }
    while (p < end && is_cc(*p, CC_VALUE))
        p++;
    return p;
}

static inline const unsigned char *skip_class(const unsigned char *p, const unsigned char *end,
                                              unsigned cls)
{
    while (p < end && is_cc(*p, cls))
        p++;
    return p;
}

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * uri-host [":" port] (RFC 3986 §3.2.2) with a non-empty host: a reg-name, or an
 * IPv6 address in brackets. It says where a request goes, so nothing else passes.
 */
static bool valid_authority(struct sl_str s)
{
    const unsigned char *p = (const unsigned char *)s.base, *end = p + s.len;
    const unsigned char *host = p;

    if (p < end && *p == '[') {
        for (p++; p < end && *p != ']'; p++)
            if (!is_digit(*p) && !((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') && *p != ':' &&
                *p != '.')
                return false;
        if (p == end || p == host + 1)
            return false;
        p++;
    } else {
        while (p < end && *p != ':' && *p != '[' && *p != ']' && is_cc(*p, CC_HOST))
            p++;
        if (p == host)
            return false;
    }
    if (p < end && *p == ':')
        for (p++; p < end && is_digit(*p);)
            p++;
    return p == end;
}

/* Fill path and query from the target; *reason is set when it is not acceptable. */
static int split_target(struct sl_http_request_head *head, const char **reason)
{
    struct sl_str t = head->target;
    const char *end = t.base + t.len;
    const char *path = t.base;
    const char *slash = t.base; /* a "/" in buf, for an absolute-form target without a path */

    if (t.base[0] == '*') {
        /* asterisk-form is the whole target, and means something only to OPTIONS */
        if (t.len != 1 || !sl_str_eq(head->method, SL_STR("OPTIONS"))) {
            *reason = "asterisk-form target is only allowed with OPTIONS";
            return SL_EINVAL;
        }
        head->path = t;
        head->query = (struct sl_str){end, 0};
        return SL_OK;
    }
    if (t.base[0] != '/') {
        size_t scheme; /* length of "http://" or "https://" */
        if (t.len >= 7 && sl_str_eq_ci((struct sl_str){t.base, 7}, SL_STR("http://")))
            scheme = 7;
        else if (t.len >= 8 && sl_str_eq_ci((struct sl_str){t.base, 8}, SL_STR("https://")))
            scheme = 8;
        else {
            *reason = "unsupported request-target form";
            return SL_EINVAL;
        }
        const char *auth = t.base + scheme;
        slash = auth - 1;
        path = auth;
        while (path < end && *path != '/' && *path != '?')
            path++;
        if (!valid_authority((struct sl_str){auth, (size_t)(path - auth)})) {
            *reason = "invalid authority in absolute-form target";
            return SL_EINVAL;
        }
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    if (q == NULL) {
        head->path = (struct sl_str){path, (size_t)(end - path)};
        head->query = (struct sl_str){end, 0};
    } else {
        head->path = (struct sl_str){path, (size_t)(q - path)};
        head->query = (struct sl_str){q + 1, (size_t)(end - q - 1)};
    }
    if (head->path.len == 0)
        head->path = (struct sl_str){slash, 1};
    return SL_OK;
}

/* What the headers mean, collected while parsing and judged at the end of the head. */
struct head_facts {
    unsigned n_content_length;
    unsigned n_transfer_encoding;
    unsigned n_host;
    bool conn_close;
    bool conn_keep_alive;
    bool expect_unsupported;
    const char *reason; /* first 400-class problem, NULL when none */
};

static void note_connection(struct head_facts *f, struct sl_str v)
{
    const char *p = v.base, *end = v.base + v.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *b = p;
        while (b < e && is_ows((unsigned char)*b))
            b++;
        const char *t = e;
        while (t > b && is_ows((unsigned char)t[-1]))
            t--;
        struct sl_str opt = {b, (size_t)(t - b)};
        if (sl_str_eq_ci(opt, SL_STR("close")))
            f->conn_close = true;
        else if (sl_str_eq_ci(opt, SL_STR("keep-alive")))
            f->conn_keep_alive = true;
        p = comma ? comma + 1 : end;
    }
}

static void note_header(struct head_facts *f, struct sl_http_request_head *head, struct sl_str name,
                        struct sl_str value)
{
    const char *reason = NULL;

    /* Dispatch on length first: most headers are none of these. */
    switch (name.len) {
    case 4:
        if (!sl_str_eq_ci(name, SL_STR("host")))
            break;
        if (++f->n_host > 1)
            reason = "more than one Host header";
        else if (value.len && !valid_authority(value))
            reason = "invalid Host header";
        else
            head->host = value;
        break;
    case 6:
        if (!sl_str_eq_ci(name, SL_STR("expect")))
            break;
        if (!sl_str_eq_ci(value, SL_STR("100-continue")))
            f->expect_unsupported = true;
        else if (head->minor_version == 1)
            head->expect_continue = true;
        break;
    case 10:
        if (sl_str_eq_ci(name, SL_STR("connection")))
            note_connection(f, value);
        break;
    case 14:
        if (!sl_str_eq_ci(name, SL_STR("content-length")))
            break;
        if (++f->n_content_length > 1)
            reason = "more than one Content-Length header";
        else if (f->n_transfer_encoding)
            reason = "both Content-Length and Transfer-Encoding are present";
        else if (sl_str_to_u64(value, &head->content_length) != SL_OK)
            reason = "invalid Content-Length";
        break;
    case 17:
        if (!sl_str_eq_ci(name, SL_STR("transfer-encoding")))
            break;
        if (++f->n_transfer_encoding > 1)
            reason = "more than one Transfer-Encoding header";
        else if (f->n_content_length)
            reason = "both Content-Length and Transfer-Encoding are present";
        else if (head->minor_version == 0)
            reason = "Transfer-Encoding in an HTTP/1.0 request";
        else if (!sl_str_eq_ci(value, SL_STR("chunked")))
            reason = "unsupported Transfer-Encoding (only chunked is accepted)";
        break;
    default:
        break;
    }
    if (reason && f->reason == NULL)
        f->reason = reason;
}

long sl_http_parse_request(const char *buf, size_t len, size_t max_head,
                           struct sl_http_request_head *head, struct sl_http_parse_error *err)
{
    const unsigned char *const start = (const unsigned char *)buf;
    const size_t window = SL_MIN(SL_MIN(len, max_head), (size_t)LONG_MAX);
    const unsigned char *const end = window ? start + window : start;
    const unsigned char *p = start, *tok;
    struct head_facts facts = {0};
    int status = 400;
    const char *reason = NULL;

    head->method = head->target = head->path = head->query = SL_STR_NULL;
    head->minor_version = 1;
    head->n_headers = 0;
    head->body_kind = SL_HTTP_BODY_NONE;
    head->content_length = 0;
    head->keep_alive = false;
    head->expect_continue = false;
    head->host = SL_STR_NULL;

    /* Empty lines before the request line: tolerated, but only a few. */
    for (unsigned n = 0;; n++) {
        if (p == end)
            goto more;
        if (*p != '\r')
            break;
        if (n == SL_HTTP_MAX_EMPTY_LINES) {
            reason = "too many empty lines before the request line";
            goto fail;
        }
        if (++p == end)
            goto more;
        if (*p != '\n') {
            reason = R_BARE_CR;
            goto fail;
        }
        p++;
    }

    /* method SP */
    tok = p;
    p = skip_class(p, end, CC_TCHAR);
    if (p == end)
        goto more;
    if (*p != ' ' || p == tok) {
        reason = *p == '\n' ? R_BARE_LF : "invalid character in method";
        goto fail;
    }
    head->method = span(tok, p++);

    /* request-target SP */
    tok = p;
    p = skip_class(p, end, CC_TARGET);
    if (p == end)
        goto more;
    if (*p != ' ') {
        if (*p == '\r' || *p == '\n')
            reason = "no HTTP version in request line";
        else
            reason = "invalid character in request-target";
        goto fail;
    }
    if (p == tok) {
        reason = "extra space in request line";
        goto fail;
    }
    head->target = span(tok, p++);
    if (split_target(head, &reason) != SL_OK)
        goto fail;

    /* HTTP-version CRLF, checked byte by byte so that garbage is refused early */
    for (size_t i = 0; i < 10; i++) {
        static const char want[] = "HTTP/1.1\r\n";
        if (p + i == end)
            goto more;
        unsigned char c = p[i];
        bool ok = (i == 5 || i == 7) ? is_digit(c) : c == (unsigned char)want[i];
        if (!ok) {
            if (i == 8 && c == '\n')
                reason = R_BARE_LF;
            else if (i == 9)
                reason = R_BARE_CR;
            else if (i == 0 && c == ' ')
                reason = "extra space in request line";
            else
                reason = "malformed HTTP version";
            goto fail;
        }
    }
    if (p[5] != '1' || p[7] > '1') {
        status = 505;
        reason = "HTTP version not supported";
        goto fail;
    }
    head->minor_version = p[7] - '0';
    p += 10;

    /* header fields, until the empty line */
    for (;;) {
        if (p == end)
            goto more;
        if (*p == '\r') {
            if (++p == end)
                goto more;
            if (*p != '\n') {
                reason = R_BARE_CR;
                goto fail;
            }
            p++;
            break;
        }
        if (is_ows(*p)) {
            reason = "obsolete line folding in header";
            goto fail;
        }
        if (head->n_headers == SL_HTTP_MAX_HEADERS) {
            status = 431;
            reason = "too many header fields";
            goto fail;
        }

        tok = p;
        p = skip_class(p, end, CC_TCHAR);
        if (p == end)
            goto more;
        if (*p != ':') {
            if (*p == '\n')
                reason = R_BARE_LF;
            else if (is_ows(*p))
                reason = "whitespace between header name and colon";
            else if (*p == '\r')
                reason = "header line without colon";
            else
                reason = "invalid character in header name";
            goto fail;
        }
        if (p == tok) {
            reason = "empty header name";
            goto fail;
        }
        struct sl_str name = span(tok, p++);

        while (p < end && is_ows(*p))
            p++;
        tok = p;
        p = skip_value(p, end);
        if (p == end)
            goto more;
        if (*p != '\r') {
            reason = *p == '\n' ? R_BARE_LF : "invalid character in header value";
            goto fail;
        }
        if (p + 1 == end)
            goto more;
        if (p[1] != '\n') {
            reason = R_BARE_CR;
            goto fail;
        }
        const unsigned char *vend = p;
        while (vend > tok && is_ows(vend[-1]))
            vend--;
        struct sl_http_header *h = &head->headers[head->n_headers++];
        h->name = name;
        h->value = span(tok, vend);
        note_header(&facts, head, h->name, h->value);
        p += 2;
    }

    /* The head is complete and well-formed; now judge what it says. */
    if (facts.reason) {
        reason = facts.reason;
        goto fail;
    }
    if (head->minor_version == 1 && facts.n_host == 0) {
        reason = "missing Host header";
        goto fail;
    }
    if (facts.expect_unsupported) {
        status = 417;
        reason = "unsupported Expect value (only 100-continue is accepted)";
        goto fail;
    }
    if (facts.n_transfer_encoding)
        head->body_kind = SL_HTTP_BODY_CHUNKED;
    else if (facts.n_content_length)
        head->body_kind = SL_HTTP_BODY_LENGTH;
    if (facts.conn_close)
        head->keep_alive = false;
    else
        head->keep_alive = head->minor_version == 1 || facts.conn_keep_alive;
    return (long)(p - start);

more:
    if (len <= max_head)
        return SL_EAGAIN;
    status = 431;
    reason = "request head too large";
fail:
    if (err) {
        err->status = status;
        err->reason = reason;
    }
    return SL_EINVAL;
}

const struct sl_http_header *sl_http_find_header(const struct sl_http_request_head *head,
                                                 struct sl_str name)
{
    for (size_t i = 0; i < head->n_headers; i++)
        if (sl_str_eq_ci(head->headers[i].name, name))
            return &head->headers[i];
    return NULL;
}

/* ---- chunked bodies (RFC 9112 §7.1) ---- */

/*
 * Decoder states, in stream order (the states from CH_TRAILER0 on are the
 * trailer section); a negative d->state is the sticky error that stopped it.
 */
enum {
    CH_SIZE_START,     /* first hex digit of a chunk-size */
    CH_SIZE,           /* more hex digits, ';' or CR */
    CH_EXT_NAME0,      /* first byte of a chunk-ext-name */
    CH_EXT_NAME,       /* rest of the name, '=', ';' or CR */
    CH_EXT_VALUE0,     /* token or quoted-string */
    CH_EXT_TOKEN,      /* rest of a token value */
    CH_EXT_QUOTED,     /* inside a quoted-string */
    CH_EXT_QPAIR,      /* after a backslash inside a quoted-string */
    CH_EXT_QUOTED_END, /* after the closing quote: ';' or CR */
    CH_SIZE_LF,        /* LF ending the size line */
    CH_DATA,           /* chunk data */
    CH_DATA_CR,        /* CR after the data */
    CH_DATA_LF,        /* LF after the data */
    CH_TRAILER0,       /* start of a trailer line, or CR of the final empty line */
    CH_TRAILER_NAME,   /* field name up to ':' */
    CH_TRAILER_VALUE,  /* field value up to CR */
    CH_TRAILER_LF,     /* LF ending a trailer line */
    CH_FINAL_LF,       /* LF of the final empty line */
    CH_DONE,
};

void sl_http_chunked_init(struct sl_http_chunked *d, size_t max_line)
{
    d->state = CH_SIZE_START;
    d->remaining = 0;
    d->line_len = 0;
    d->trailer_len = 0;
    d->max_line = max_line;
}

/* Where a byte of a size line or of the trailer section leads; -1 when it is malformed. */
static int chunked_step(struct sl_http_chunked *d, unsigned char c)
{
    switch (d->state) {
    case CH_SIZE_START:
    case CH_SIZE: {
        unsigned v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v = (c | 0x20) - 'a' + 10;
        else if (d->state == CH_SIZE && c == ';')
            return CH_EXT_NAME0;
        else if (d->state == CH_SIZE && c == '\r')
            return CH_SIZE_LF;
        else
            return -1;
        if (d->remaining >> 59) /* the chunk would be 2^63 bytes or more */
            return -1;
        d->remaining = d->remaining << 4 | v;
        return CH_SIZE;
    }
    case CH_EXT_NAME0:
        return is_cc(c, CC_TCHAR) ? CH_EXT_NAME : -1;
    case CH_EXT_NAME:
        if (is_cc(c, CC_TCHAR))
            return CH_EXT_NAME;
        return c == '=' ? CH_EXT_VALUE0 : c == ';' ? CH_EXT_NAME0 : c == '\r' ? CH_SIZE_LF : -1;
    case CH_EXT_VALUE0:
        return c == '"' ? CH_EXT_QUOTED : is_cc(c, CC_TCHAR) ? CH_EXT_TOKEN : -1;
    case CH_EXT_TOKEN:
        if (is_cc(c, CC_TCHAR))
            return CH_EXT_TOKEN;
        return c == ';' ? CH_EXT_NAME0 : c == '\r' ? CH_SIZE_LF : -1;
    case CH_EXT_QUOTED:
        if (c == '"')
            return CH_EXT_QUOTED_END;
        if (c == '\\')
            return CH_EXT_QPAIR;
        return is_cc(c, CC_VALUE) ? CH_EXT_QUOTED : -1;
    case CH_EXT_QPAIR:
        return is_cc(c, CC_VALUE) ? CH_EXT_QUOTED : -1;
    case CH_EXT_QUOTED_END:
        return c == ';' ? CH_EXT_NAME0 : c == '\r' ? CH_SIZE_LF : -1;
    case CH_SIZE_LF:
        if (c != '\n')
            return -1;
        return d->remaining ? CH_DATA : CH_TRAILER0;
    case CH_DATA_CR:
        return c == '\r' ? CH_DATA_LF : -1;
    case CH_DATA_LF:
        return c == '\n' ? CH_SIZE_START : -1;
    case CH_TRAILER0:
        /* SP/HTAB here would be obs-fold; a bare LF is refused like in the head */
        return c == '\r' ? CH_FINAL_LF : is_cc(c, CC_TCHAR) ? CH_TRAILER_NAME : -1;
    case CH_TRAILER_NAME:
        return is_cc(c, CC_TCHAR) ? CH_TRAILER_NAME : c == ':' ? CH_TRAILER_VALUE : -1;
    case CH_TRAILER_VALUE:
        return is_cc(c, CC_VALUE) ? CH_TRAILER_VALUE : c == '\r' ? CH_TRAILER_LF : -1;
    case CH_TRAILER_LF:
        return c == '\n' ? CH_TRAILER0 : -1;
    case CH_FINAL_LF:
        return c == '\n' ? CH_DONE : -1;
    default:
        return -1;
    }
}

int sl_http_chunked_decode(struct sl_http_chunked *d, const char *in, size_t len, size_t *consumed,
                           struct sl_buf *out, size_t max_body)
{
    const unsigned char *p = (const unsigned char *)in;
    const unsigned char *const end = len ? p + len : p;
    int err = SL_OK;

    if (d->state < 0) {
        err = d->state;
        goto fail;
    }
    while (p < end && d->state != CH_DONE) {
        if (d->state == CH_DATA) {
            size_t n = (size_t)SL_MIN(d->remaining, (uint64_t)(end - p));
            if (out->len > max_body || n > max_body - out->len) {
                err = SL_ETOOBIG;
                goto fail;
            }
            if ((err = sl_buf_append(out, p, n)) != SL_OK)
                goto fail;
            p += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        /* Size lines and the trailer section are bounded (the CRLF after data is 2 bytes). */
        if (d->state >= CH_TRAILER0) {
            if (++d->trailer_len > d->max_line) {
                err = SL_EINVAL;
                goto fail;
            }
        } else if (d->state != CH_DATA_CR && d->state != CH_DATA_LF) {
            if (++d->line_len > d->max_line) {
                err = SL_EINVAL;
                goto fail;
            }
        }
        int next = chunked_step(d, *p);
        if (next < 0) {
            err = SL_EINVAL;
            goto fail;
        }
        if (next == CH_DATA) {
            /* Refuse an oversized chunk now rather than after buffering most of it. */
            if (out->len > max_body || d->remaining > max_body - out->len) {
                err = SL_ETOOBIG;
                goto fail;
            }
        } else if (next == CH_SIZE_START) {
            d->line_len = 0;
        }
        d->state = next;
        p++;
    }
    *consumed = (size_t)(p - (const unsigned char *)in);
    return d->state == CH_DONE ? SL_OK : SL_EAGAIN;

fail:
    d->state = err;
    *consumed = (size_t)(p - (const unsigned char *)in);
    return err;
}
