/*
 * Private to the http subsystem: the connection and server structs shared by
 * server.c (listeners, accept, shutdown, access log), conn.c (reading,
 * framing, timeouts) and response.c (the writer).
 */
#ifndef SL_HTTP_INTERNAL_H
#define SL_HTTP_INTERNAL_H

#include <time.h>

#include "http/http.h"

/* Output above this many queued bytes makes a response "congested"; it
 * drains (on_drain) once the queue is below the low mark. */
#define SL_HTTP_OUT_HIGH_MARK (256 * 1024)
#define SL_HTTP_OUT_LOW_MARK (64 * 1024)
/* After a response that closes the connection, wait this long for the client
 * to close its side before closing ours, so unread input does not turn our
 * close into a reset that destroys the response (lingering close). */
#define SL_HTTP_LINGER_MS 2000
/* A dispatched request's input buffer keeps this much room beyond its bytes,
 * and gives back the rest when that is at least SL_HTTP_IN_GIVE_BACK_MIN. */
#define SL_HTTP_IN_SLACK 128
#define SL_HTTP_IN_GIVE_BACK_MIN 1024

enum sl_conn_state {
    SL_CONN_READ_HEAD,  /* waiting for (the rest of) a request head */
    SL_CONN_READ_BODY,  /* head parsed, reading its body */
    SL_CONN_DISPATCHED, /* the handler owns the current request */
    SL_CONN_LINGER,     /* response sent, waiting for the client to close */
    SL_CONN_CLOSED,     /* handles closing or closed */
};

enum sl_conn_timer {
    SL_TIMER_NONE,
    SL_TIMER_IDLE,   /* keep-alive, no bytes of a next request yet */
    SL_TIMER_HEAD,   /* a request head is arriving */
    SL_TIMER_BODY,   /* a request body is arriving */
    SL_TIMER_LINGER, /* lingering close */
};

struct sl_http_listener {
    uv_tcp_t tcp;
    struct sl_http_server *server; /* borrowed */
    struct sl_config_addr addr;
    bool open;    /* tcp is initialised and not closing */
    bool closing; /* uv_close called, close callback pending */
};

/*
 * One client connection. Owned by its server's list until both handles are
 * closed and no handler owns its request any more; then freed.
 * All sl_bufs are owned and reused across the requests of the connection.
 */
struct sl_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct sl_http_server *server; /* borrowed; outlives the connection */
    struct sl_http_conn *prev, *next;
    enum sl_conn_state state;
    enum sl_conn_timer timer_kind;
    uint64_t deadline;  /* loop time (ms) when timer_kind's phase runs out */
    uint64_t timer_due; /* loop time the uv timer is set for (<= deadline while active) */
    int handles_open;   /* tcp and timer: freed when 0 and !req_owned */
    bool req_owned;     /* the handler holds req */
    bool reading;
    bool in_process;  /* inside conn_process(): defer flushes and re-entry */
    bool writing;     /* write_req is in flight */
    bool close_after; /* close once the output is flushed */
    bool peer_gone;   /* the client closed or the socket failed */

    struct sl_buf in; /* bytes from the client: current head, body, pipelined rest */
    size_t head_len;  /* length of the current request head in `in`, 0 before it is complete */
    size_t body_raw;  /* raw body bytes after the head that belong to the current request */
    struct sl_http_chunked chunked;
    struct sl_buf chunked_body; /* decoded chunked body */

    struct sl_buf out;      /* response bytes not yet handed to the kernel */
    struct sl_buf inflight; /* bytes owned by write_req until on_write */
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;

    /* The current request and its response. */
    struct sl_http_request req;
    struct sl_arena arena;
    int status;
    bool response_started;
    bool keep_alive;
    bool http10;
    enum sl_http_framing framing;
    uint64_t content_length;
    uint64_t body_sent;   /* body bytes accepted from the handler */
    uint64_t bytes_total; /* response bytes, head included */
    bool was_congested;
    sl_http_on_drain on_drain;
    sl_http_on_abort on_abort;
    void *cb_data;
    char remote[48]; /* client address, for the access log */
};

/*
 * Per-loop server: listeners, connections, the access-log buffer. Frees
 * itself after shutdown once every handle is closed.
 */
struct sl_http_server {
    uv_loop_t *loop;                    /* borrowed */
    struct sl_http_listener *listeners; /* owned array of n_listeners */
    size_t n_listeners;
    bool share_port;     /* listeners use SO_REUSEPORT */
    bool paused;         /* listeners closed on request (sl_http_server_pause) */
    bool resume_pending; /* reopen once the paused listeners have finished closing */
    struct sl_config_limits limits;
    bool access_log;
    const char *name; /* static */
    sl_http_on_request on_request;
    void *data;
    void *worker_data;          /* borrowed: the runner's per-worker state */
    struct sl_http_conn *conns; /* owned list */
    size_t n_conns;
    struct sl_buf log;             /* access-log lines not yet written */
    uv_check_t log_flush;          /* writes `log` after each poll... */
    uv_prepare_t log_flush_timers; /* ...and before each poll, for lines from timers */
    bool shutting_down;
    bool timers_closing; /* deadline and log_flush are being closed */
    uv_timer_t deadline;
    int handles_open; /* listeners, log_flush, log_flush_timers, deadline */
    void (*on_closed)(void *data);
    void *closed_data;
    /* Where heads are parsed; a complete head's headers are then copied
     * into its request's arena, so a connection holds only what it uses. */
    struct sl_http_header parse_headers[SL_HTTP_MAX_HEADERS];
    time_t date_sec; /* second for which `date` is valid */
    char date[40];   /* "Date: ...\r\n" value, e.g. "Thu, 01 Jan 2026 00:00:00 GMT" */
};

/* conn.c */
void sl_conn_accept(struct sl_http_server *s, uv_stream_t *listener);
void sl_conn_close(struct sl_http_conn *c);
/* Close with a TCP reset, dropping queued output; no on_abort (the handler asked). */
void sl_conn_reset(struct sl_http_conn *c);
void sl_conn_flush(struct sl_http_conn *c);
/* The client's x-request-id when the head is parsed and it is sane, else a new one. */
void sl_conn_set_request_id(struct sl_http_conn *c);
/* After a response is complete: log, reset, and go on with the next request. */
void sl_conn_request_done(struct sl_http_conn *c);
/* Server shutdown: close if idle, else close after the current response. */
void sl_conn_drain(struct sl_http_conn *c);

/* response.c */
void sl_response_reset(struct sl_http_conn *c);
/* A complete error response for a request the handler never saw; closes after. */
void sl_response_protocol_error(struct sl_http_conn *c, int status, const char *message);
/* server.c */
void sl_server_log_access(struct sl_http_server *s, struct sl_http_conn *c);
void sl_server_conn_freed(struct sl_http_server *s, struct sl_http_conn *c);
const char *sl_server_date(struct sl_http_server *s);

#endif
