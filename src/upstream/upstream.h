/*
 * upstream: HTTP(S) requests to backends through libcurl's multi interface,
 * driven by a worker's uv_loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION).
 * One struct sl_upstream per loop holds the curl multi handle and so the
 * keep-alive connection pool of that worker; it is only ever used from its
 * own loop's thread.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <uv.h>

#include "core/core.h"
#include "http/parser.h"

struct sl_upstream;
struct sl_upstream_xfer;

/* Why a transfer failed. */
enum sl_upstream_failure {
    SL_UPSTREAM_OK,
    SL_UPSTREAM_CONNECT,            /* DNS, refused, unreachable: the request was not sent */
    SL_UPSTREAM_RESET,              /* the connection failed once the request was (maybe) sent,
                                     * before a response */
    SL_UPSTREAM_TLS,                /* handshake or certificate verification */
    SL_UPSTREAM_TIMEOUT_CONNECT,    /* connect_timeout_ms */
    SL_UPSTREAM_TIMEOUT_FIRST_BYTE, /* first_byte_timeout_ms: from request sent to the status line
                                     */
    SL_UPSTREAM_TIMEOUT_IDLE,       /* idle_timeout_ms: between body bytes */
    SL_UPSTREAM_TIMEOUT_TOTAL,      /* total_timeout_ms */
    SL_UPSTREAM_PROTOCOL,           /* malformed response, or the connection closed mid-body */
    SL_UPSTREAM_INTERNAL,           /* out of memory, curl refused the options */
};
const char *sl_upstream_failure_name(enum sl_upstream_failure f);

/* What to send. Everything is copied by sl_upstream_start except body,
 * which must stay valid until on_done (or sl_upstream_cancel).
 * Headers go out as given, except the ones framing and connection
 * management own (Content-Length, Transfer-Encoding, Expect, Connection,
 * Keep-Alive, Proxy-Connection, Upgrade, TE), which are dropped; curl adds
 * nothing of its own (no Accept, no form Content-Type, no Expect). A name
 * that is not a token or a value with CR, LF or NUL makes start fail with
 * SL_EINVAL. */
struct sl_upstream_request {
    const char *method; /* "POST", "GET", ... */
    const char *url;    /* absolute http:// or https:// URL, NUL-terminated */
    const struct sl_http_header *headers;
    size_t n_headers;
    struct sl_str body;
    uint64_t connect_timeout_ms;    /* 0: none (curl's default) */
    uint64_t first_byte_timeout_ms; /* 0: none */
    uint64_t idle_timeout_ms;       /* 0: none */
    uint64_t total_timeout_ms;      /* 0: none */
    const char *ca_file;            /* NULL: the system's CAs */
    bool insecure;                  /* skip TLS verification (the caller warns loudly) */
    bool http2;                     /* offer HTTP/2 (ALPN) on https; HTTP/1.1 otherwise */
    /* The answer is expected to be a long-lived trickle (server-sent events):
     * read it SL_UPSTREAM_STREAM_READ bytes at a time rather than curl's
     * 16 KiB, which an open stream would otherwise keep (about 5 KiB less
     * memory per stream). A large answer then takes more reads. */
    bool expect_stream;
};
#define SL_UPSTREAM_STREAM_READ 1024

/*
 * Callbacks, all on the loop's thread. `data` is the pointer given to
 * sl_upstream_start. None is called after sl_upstream_cancel. From inside
 * any of them the caller may start, pause, resume and cancel transfers and
 * close the upstream; none of these functions ever calls back before it
 * returns.
 */
struct sl_upstream_callbacks {
    /* The final response's status and headers (1xx interim responses are
     * skipped), once, before any body byte. Views are valid during the call. */
    void (*on_response)(void *data, int status, const struct sl_http_header *headers,
                        size_t n_headers);
    /* Body bytes as they arrive (valid during the call). Return false to
     * pause the transfer until sl_upstream_resume; the bytes given are
     * consumed either way. */
    bool (*on_body)(void *data, const char *bytes, size_t len);
    /* The transfer is over: failure SL_UPSTREAM_OK (message "ok") when the
     * whole response arrived; otherwise why it failed, and message says it
     * for humans, naming host:port (never request headers, path or query).
     * It may come while paused once every body byte was delivered. The
     * transfer is freed right after. */
    void (*on_done)(void *data, enum sl_upstream_failure failure, const char *message);
};

/* Also initialises libcurl for the process on first use (any thread). */
int sl_upstream_new(uv_loop_t *loop, struct sl_upstream **out);
/* Cancel every transfer (no callbacks), close every handle; on_closed runs
 * when the loop no longer needs to run for this upstream; then it is freed. */
void sl_upstream_close(struct sl_upstream *u, void (*on_closed)(void *data), void *data);

/* 0 and *out, or SL_EINVAL (bad request fields), SL_ENOMEM, SL_EIO (curl
 * refused), SL_ESTATE (closing). Once it returned 0, on_done runs exactly
 * once unless the transfer is cancelled or the upstream closed. */
int sl_upstream_start(struct sl_upstream *u, const struct sl_upstream_request *r,
                      const struct sl_upstream_callbacks *cb, void *data,
                      struct sl_upstream_xfer **out);
/* Flow control: stop / restart reading the response body. Pausing takes
 * effect at the next body bytes; after resume, body bytes flow again from
 * the next loop turn (never from inside sl_upstream_resume). The idle
 * timeout does not count while paused. */
void sl_upstream_pause(struct sl_upstream_xfer *x);
void sl_upstream_resume(struct sl_upstream_xfer *x);
/* Abandon the transfer at once: its connection is closed (not reused), no
 * callback runs afterwards, x is freed. Safe to call from inside a callback. */
void sl_upstream_cancel(struct sl_upstream_xfer *x);

#endif
