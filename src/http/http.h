/*
 * http: the HTTP/1.1 server side. One struct sl_http_server per event loop
 * owns its listening sockets and connections; a handler callback receives
 * each complete request (head and body) and answers it through the response
 * writer below, synchronously or later from any callback on the same loop.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <uv.h>

#include "config/config.h"
#include "core/core.h"
#include "http/parser.h"

struct sl_http_server;
struct sl_http_conn;
struct sl_http_request;

/* Called once per request, on the server's loop. The request belongs to the
 * handler until it calls sl_http_finish(); the server never frees it before. */
typedef void (*sl_http_on_request)(struct sl_http_request *req, void *data);
/* Called when the client went away while the handler owns the request; the
 * handler should stop its work and call sl_http_finish() soon. */
typedef void (*sl_http_on_abort)(struct sl_http_request *req, void *data);
/* Called when the response's output queue has drained below the low mark. */
typedef void (*sl_http_on_drain)(struct sl_http_request *req, void *data);

struct sl_http_server_options {
    const struct sl_config_addr *listen; /* borrowed for the call only */
    size_t n_listen;
    const struct sl_config_limits *limits; /* copied */
    bool access_log;
    const char *name; /* "public" or "admin": appears in logs; borrowed, static */
    /* Other servers of this process (one per worker) listen on the same
     * addresses with SO_REUSEPORT. The first of them makes sure no other
     * process holds the addresses, which SO_REUSEPORT would silently allow. */
    bool share_port;
    bool first_sharer;
    sl_http_on_request on_request;
    void *data;        /* passed to on_request */
    void *worker_data; /* per-loop state, for sl_http_request_worker_data */
};

/* What a handler adds to its request's access-log line: who used how much. */
struct sl_http_log_usage {
    const char *client, *route, *backend; /* NULL: left out */
    uint64_t prompt_tokens, completion_tokens, total_tokens;
    uint64_t cost_micros; /* millionths of USD */
    bool estimated;       /* the counts are an estimate (the backend reported none) */
};

/* A request as the handler sees it. Views point into connection buffers and
 * stay valid until sl_http_finish(). */
struct sl_http_request {
    struct sl_http_request_head head;
    struct sl_str body;
    char id[129];           /* x-request-id: the client's when sane, else generated */
    struct sl_arena *arena; /* per-request memory, freed at sl_http_finish() */
    uint64_t start_us;      /* when the head was complete */
    struct sl_http_conn *conn;
    struct sl_http_server *server;
    bool is_head; /* HEAD request: the writer drops body bytes */
    /* Set by the handler when it has usage to log; it and its strings must stay valid
     * until sl_http_finish() (e.g. in the arena). NULL: none. */
    const struct sl_http_log_usage *log_usage;
};

int sl_http_server_new(uv_loop_t *loop, const struct sl_http_server_options *opts,
                       struct sl_http_server **out);
/* Stop accepting, close idle connections, let in-flight requests finish for
 * up to deadline_ms, then close everything. on_closed runs once all handles
 * are closed; the server frees itself afterwards. */
void sl_http_server_shutdown(struct sl_http_server *s, uint64_t deadline_ms,
                             void (*on_closed)(void *data), void *data);
/* Open connections of this server right now. */
size_t sl_http_server_connections(const struct sl_http_server *s);
/* Close the listening sockets (new connections are refused) / open them again.
 * On the server's own loop only. */
void sl_http_server_pause(struct sl_http_server *s);
int sl_http_server_resume(struct sl_http_server *s);
/* The loop a request runs on: timers for it belong there. */
uv_loop_t *sl_http_request_loop(const struct sl_http_request *req);
/* The client's address as text ("10.1.2.3", "::1"); "" when unknown. */
const char *sl_http_request_remote(const struct sl_http_request *req);
/* The per-worker state the runner's worker_init made for this request's loop. */
void *sl_http_request_worker_data(const struct sl_http_request *req);

/* ---- response writer ---- */
enum sl_http_framing {
    SL_HTTP_FRAMING_LENGTH,  /* Content-Length: content_length */
    SL_HTTP_FRAMING_CHUNKED, /* chunked (close-delimited for HTTP/1.0 clients) */
};

/* Extra response headers; names and values must be valid header text. */
int sl_http_start_response(struct sl_http_request *req, int status,
                           const struct sl_http_header *headers, size_t n_headers,
                           enum sl_http_framing framing, uint64_t content_length);
/* Send what is queued now (e.g. the head, before a stream's first event),
 * rather than with the next write. */
void sl_http_flush(struct sl_http_request *req);
/* Queue body bytes (copied). Returns SL_ESTATE after the client went away. */
int sl_http_write(struct sl_http_request *req, const void *data, size_t len);
/* True when the output queue is above the high mark: stop producing until on_drain. */
bool sl_http_congested(const struct sl_http_request *req);
void sl_http_set_callbacks(struct sl_http_request *req, sl_http_on_drain on_drain,
                           sl_http_on_abort on_abort, void *data);
/* End the response and release the request. If the response was never
 * started, or was cut short, the connection is closed afterwards. */
void sl_http_finish(struct sl_http_request *req);

/* End the request without completing its response: the connection closes
 * after what was written so far (the client sees a cut body and no final
 * chunk), or at once with a TCP reset when reset is true. Releases the request. */
void sl_http_abort(struct sl_http_request *req, bool reset);

/* One complete response with a body; finishes the request. */
void sl_http_respond(struct sl_http_request *req, int status, struct sl_str content_type,
                     struct sl_str body);
/* A JSON error {"error":{"code":...,"message":...}}; finishes the request. */
void sl_http_respond_error(struct sl_http_request *req, int status, const char *code,
                           const char *message);
/* The same with extra response headers (at most 7; e.g. Retry-After). */
void sl_http_respond_error_with(struct sl_http_request *req, int status, const char *code,
                                const char *message, const struct sl_http_header *extra,
                                size_t n_extra);

/* ---- running servers on worker threads ---- */

/* Listeners answered by one handler: the gateway's public API, a simulated
 * endpoint, the admin API. */
struct sl_http_site {
    const struct sl_config_addr *listen; /* n_listen; borrowed for the run */
    size_t n_listen;
    const char *name; /* for logs; borrowed for the run */
    sl_http_on_request on_request;
    void *data; /* passed to on_request from every worker: must be thread-safe */
};

struct sl_http_runner;
struct sl_http_worker;

struct sl_http_runner_options {
    unsigned workers;                 /* threads, each with its own loop */
    const struct sl_http_site *sites; /* n_sites, served by every worker (SO_REUSEPORT) */
    size_t n_sites;
    const struct sl_http_site *admin; /* served on the main thread; NULL for none */
    const struct sl_config_limits *limits;
    bool access_log;
    /* Optional per-worker state (e.g. an upstream client): worker_init runs
     * for each worker before anything is served, with the worker's loop;
     * worker_dispose runs on that loop once its servers have closed, and
     * must call done(arg) when the loop no longer needs to run for it. */
    int (*worker_init)(uv_loop_t *loop, unsigned index, void *data, void **worker_data);
    void (*worker_dispose)(void *worker_data, void (*done)(void *arg), void *arg);
    void *data; /* passed to worker_init */
    /* SIGHUP, on the main thread (e.g. reload the configuration); NULL: logged, ignored. */
    void (*on_reload)(void *data);
    void *reload_data;
};

/* Opens every listener (so a port in use is reported before anything runs). */
int sl_http_runner_new(const struct sl_http_runner_options *o, struct sl_http_runner **out);
/* Serves until SIGTERM or SIGINT, then shuts down gracefully. Returns 0. */
int sl_http_runner_run(struct sl_http_runner *r);
void sl_http_runner_free(struct sl_http_runner *r);
/* Run fn(worker, arg) on every worker's loop, soon; callable from any thread.
 * arg must stay valid until every worker has run fn. *queued (when given) is
 * the number of workers that will run it: all, unless an error is returned
 * (SL_ESTATE: some are stopping; SL_ENOMEM). */
int sl_http_runner_broadcast(struct sl_http_runner *r,
                             void (*fn)(struct sl_http_worker *w, void *arg), void *arg,
                             unsigned *queued);
/* True once a shutdown has begun (callable from any thread). */
bool sl_http_runner_stopping(const struct sl_http_runner *r);
/* The worker's server for site index `site` (in the order given to the runner). */
struct sl_http_server *sl_http_worker_server(struct sl_http_worker *w, size_t site);
unsigned sl_http_worker_index(const struct sl_http_worker *w);

const char *sl_http_status_reason(int status);
/* The Azure-style error code for an HTTP status ("BadRequest", ...). */
const char *sl_http_status_code_name(int status);

#endif
