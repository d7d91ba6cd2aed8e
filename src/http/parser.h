/*
 * The HTTP/1.1 request parser: strict, zero-copy and bounded. Private to the
 * http subsystem (and its unit tests and fuzz target).
 *
 * Every sl_str in a parsed head points into the caller's input buffer; the
 * head is valid only while that buffer is unchanged.
 */
#ifndef SL_HTTP_PARSER_H
#define SL_HTTP_PARSER_H

#include "core/core.h"

#define SL_HTTP_MAX_HEADERS 100

struct sl_http_header {
    struct sl_str name;  /* as sent (case preserved), never empty */
    struct sl_str value; /* leading/trailing whitespace removed */
};

enum sl_http_body_kind {
    SL_HTTP_BODY_NONE,    /* no body */
    SL_HTTP_BODY_LENGTH,  /* Content-Length bytes follow (possibly 0) */
    SL_HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
};

struct sl_http_request_head {
    struct sl_str method;
    struct sl_str target; /* request-target as sent */
    struct sl_str path;   /* target up to '?' (for absolute-form: the path part) */
    struct sl_str query;  /* after '?', without it; empty when absent */
    int minor_version;    /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    /* The caller's storage for SL_HTTP_MAX_HEADERS entries, of which the
     * parser fills n_headers (the parser never changes this pointer). */
    struct sl_http_header *headers;
    size_t n_headers;
    /* Derived from the headers: */
    enum sl_http_body_kind body_kind;
    uint64_t content_length; /* valid when body_kind == SL_HTTP_BODY_LENGTH */
    bool keep_alive;         /* from the version and the Connection header */
    bool expect_continue;    /* Expect: 100-continue */
    struct sl_str host;      /* the Host header (empty for HTTP/1.0 without one) */
};

/* What a parse error should be answered with. */
struct sl_http_parse_error {
    int status;         /* 400, 417, 431 or 505 */
    const char *reason; /* static, human-readable; names what was wrong */
};

/*
 * Parse the request head at the start of buf[0..len).
 * Returns the length of the head, including its final CRLF CRLF, when it is
 * complete and valid; SL_EAGAIN when more bytes are needed (and the head so far
 * is within max_head bytes and not yet invalid); SL_EINVAL with *err filled in
 * otherwise (a head longer than max_head gives 431).
 * Empty lines (CRLF) before the request line are skipped, and count in the
 * returned length.
 */
long sl_http_parse_request(const char *buf, size_t len, size_t max_head,
                           struct sl_http_request_head *head, struct sl_http_parse_error *err);

/* Find a header by name (case-insensitive); the first one, or NULL. */
const struct sl_http_header *sl_http_find_header(const struct sl_http_request_head *head,
                                                 struct sl_str name);

/*
 * Decoder for chunked request bodies. Chunk extensions are ignored; trailer
 * fields are checked for syntax and dropped.
 */
struct sl_http_chunked {
    int state;          /* private */
    uint64_t remaining; /* bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size/trailer line seen so far */
    size_t trailer_len; /* total trailer bytes seen */
    size_t max_line;    /* bound for a size line or trailer section */
};
void sl_http_chunked_init(struct sl_http_chunked *d, size_t max_line);
/*
 * Decode in[0..len), appending body bytes to out. *consumed is set to the
 * bytes of in that were used. Returns SL_OK when the last chunk and trailers
 * are complete (bytes after them belong to the next request), SL_EAGAIN when
 * all of in was used and more is needed, SL_EINVAL on malformed framing and
 * SL_ETOOBIG when out would grow beyond max_body.
 */
int sl_http_chunked_decode(struct sl_http_chunked *d, const char *in, size_t len, size_t *consumed,
                           struct sl_buf *out, size_t max_body);

#endif
