/*
 * Private to the upstream subsystem: the structs shared by upstream.c (the
 * multi handle on the loop: sockets, timer, lifecycle, deferred work) and
 * xfer.c (one transfer: options, curl callbacks, timeouts, failures).
 *
 * Re-entrancy model. curl forbids most multi calls from inside its callbacks
 * (add/remove handle return CURLM_RECURSIVE_API_CALL), and user callbacks run
 * inside curl (on_response from the header callback, on_body from the write
 * callback). So whatever a user callback asks for that needs curl (cancel,
 * start, close) is recorded and done by sl_upstream_settle() once the curl
 * call returns. Resuming a paused transfer is always deferred to a loop turn
 * (the kick handle), so no user callback ever runs inside sl_upstream_resume().
 */
#ifndef SL_UPSTREAM_INTERNAL_H
#define SL_UPSTREAM_INTERNAL_H

#include <curl/curl.h>

#include "upstream/upstream.h"

/* Transfers (each with its easy handle and timer) kept for reuse per upstream. */
#define SL_UPSTREAM_FREE_MAX 64
/* Bounds on a response head as we store it; beyond them the response is a
 * protocol failure rather than unbounded memory. */
#define SL_UPSTREAM_MAX_HEAD_BYTES (64 * 1024)
#define SL_UPSTREAM_MAX_HEADERS 200
/* Idle connections the pool keeps (CURLMOPT_MAXCONNECTS). */
#define SL_UPSTREAM_MAX_IDLE_CONNS 1024

enum sl_xfer_state {
    SL_XFER_POOLED,     /* on u->free_list, not in use */
    SL_XFER_PENDING,    /* started from inside curl; added to the multi by settle */
    SL_XFER_CONNECTING, /* in the multi, no connection ready yet */
    SL_XFER_WAITING,    /* request being sent / waiting for the final status line */
    SL_XFER_RECEIVING,  /* on_response delivered; body arriving */
    SL_XFER_DONE,       /* on_done is running; freed when it returns */
    SL_XFER_CANCELLED,  /* abandoned; removed from the multi and recycled by settle */
};

enum sl_xfer_timer {
    SL_XFER_TIMER_NONE,
    SL_XFER_TIMER_FIRST_BYTE, /* request sent, status line not seen */
    SL_XFER_TIMER_IDLE,       /* lazily re-armed: last_active + idle_ms */
};

/*
 * One transfer. Owned by its upstream: on u->active from start until it is
 * done or cancelled, then recycled onto u->free_list (easy handle and timer
 * kept) or destroyed (freed in the timer's close callback).
 */
struct sl_upstream_xfer {
    struct sl_upstream *u;                  /* borrowed; outlives the transfer */
    struct sl_upstream_xfer *prev, *next;   /* u->active, or u->free_list (next only) */
    struct sl_upstream_xfer *rprev, *rnext; /* u->resume list while resume_queued */
    struct sl_upstream_xfer *tnext;         /* u->todo list while todo_queued */
    CURL *easy;                             /* owned; reset and reused */
    /* recycle() zeroes everything before and after timer: keep it here. */
    uv_timer_t timer; /* first-byte / idle; initialised while x lives */
    enum sl_xfer_state state;
    enum sl_xfer_timer timer_kind;

    struct sl_upstream_callbacks cb; /* copied at start */
    void *data;                      /* the caller's; passed back to cb */

    struct curl_slist *req_headers; /* owned: one allocation holding nodes and text */
    struct sl_buf head;             /* response header lines "name:value\n"; owned */
    size_t n_head;                  /* lines in head */
    int status;                     /* of the current status line; 0 before one */

    uint64_t body_len;
    uint64_t connect_ms, first_byte_ms, idle_ms, total_ms;
    uint64_t last_active; /* loop time of the last body bytes (idle timeout) */
    size_t skip;          /* bytes at the front of curl's paused data we already consumed */

    bool in_multi;      /* added to u->multi */
    bool paused;        /* the caller wants no body bytes */
    bool curl_paused;   /* curl holds the transfer paused (we returned CURL_WRITEFUNC_PAUSE) */
    bool resume_queued; /* on u->resume */
    bool todo_queued;   /* on u->todo */
    bool prereq_seen;   /* a connection was ready and the request began to go out */
    bool sent;          /* the whole request went out (first-byte timer armed) */
    bool claim;         /* counted in u->n_claims: may take an idle connection */

    enum sl_upstream_failure fail; /* set by our callbacks when they abort curl */
    const char *fail_msg;          /* static; with fail */
    char errbuf[CURL_ERROR_SIZE];  /* CURLOPT_ERRORBUFFER */
};

/*
 * One socket we watch for curl, found by its descriptor (u->by_fd). A
 * connection socket (opened by on_open_socket, closed by on_close_socket)
 * keeps its watcher for as long as the socket lives: when a transfer ends
 * curl stops watching (CURL_POLL_REMOVE) and the next transfer on the kept
 * connection watches it again, usually in the same loop turn, and keeping
 * the watcher reading meanwhile costs no epoll_ctl at all. Any other socket
 * curl watches (its resolver's) is closed when curl lets go. On u->socks
 * until its watcher closes; the close callback frees it.
 */
struct sl_upstream_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sl_upstream *u; /* borrowed */
    struct sl_upstream_sock *prev, *next;
    int events;      /* UV_READABLE | UV_WRITABLE the watcher is started for; 0: stopped */
    bool connection; /* opened through on_open_socket: we close it */
    bool curl_wants; /* curl watches it (between its CURL_POLL_IN/OUT and REMOVE) */
    bool idle;       /* connected, and curl no longer watches it: in its pool (u->n_idle) */
};

/*
 * One per loop. Owns the multi handle (and so the connection pool), its share
 * handle (TLS sessions), every transfer and socket watcher, and its uv
 * handles. Freed after the last handle closed during sl_upstream_close.
 */
/* Whether a proxy is set in the environment (read once by the first sl_upstream_new): when
 * none is, transfers say so to curl, which then skips looking for one every time. */
extern bool sl_upstream_env_proxy;

struct sl_upstream {
    uv_loop_t *loop; /* borrowed */
    CURLM *multi;
    CURLSH *share;
    uv_timer_t timer; /* curl's CURLMOPT_TIMERFUNCTION deadline */
    uv_timer_t kick;  /* runs deferred resumes on the next loop turn */

    struct sl_upstream_xfer *active;    /* doubly linked: every started, unfinished transfer */
    struct sl_upstream_xfer *free_list; /* singly linked, n_free long */
    size_t n_free;
    struct sl_upstream_xfer *resume; /* doubly linked (rprev/rnext): resume on kick */
    struct sl_upstream_xfer *todo;   /* singly linked (tnext): add or reap in settle */
    struct sl_upstream_xfer **todo_tail;
    struct sl_upstream_sock *socks;  /* doubly linked: every watcher not yet closed */
    struct sl_upstream_sock **by_fd; /* owned array of n_by_fd: the open watcher of each fd */
    size_t n_by_fd;
    uint64_t watchers_opened; /* uv_poll handles initialised so far (tests read it) */
    /* Connection reuse without curl's search. curl looks for a connection to
     * reuse by walking every connection to the host, busy ones too, so a
     * burst of N new transfers costs N^2/2 steps. A transfer that cannot
     * find an idle connection (n_idle, less those other new transfers may
     * take: n_claims) is told to open one (CURLOPT_FRESH_CONNECT) and skips
     * the walk. HTTP/1.1 only: an HTTP/2 connection is shared while busy.
     * A connection counts as idle while curl does not watch it; a paused
     * transfer's counts too, which only means a walk that finds nothing. */
    size_t n_idle;
    size_t n_claims;
    uint64_t fresh_connects; /* transfers told to skip the search (tests read it) */

    unsigned in_curl; /* depth of curl calls that may run our callbacks */
    unsigned busy;    /* depth of our own dispatch frames (u must stay alive) */
    int handles_open; /* uv handles not yet closed (timers, polls) */
    bool closing;     /* sl_upstream_close was called */
    bool closed;      /* the multi is gone; waiting for handles to close */
    void (*on_closed)(void *data);
    void *closed_data;
};

/* upstream.c */
/* Run deferred work (adds, reaps, close) when no curl call or dispatch frame
 * is on the stack; otherwise the outermost frame does it. */
void sl_upstream_settle(struct sl_upstream *u);
void sl_upstream_todo(struct sl_upstream *u, struct sl_upstream_xfer *x);
void sl_upstream_queue_resume(struct sl_upstream *u, struct sl_upstream_xfer *x);
void sl_upstream_unqueue_resume(struct sl_upstream *u, struct sl_upstream_xfer *x);
/* Open and close x's connection sockets through this upstream (every transfer). */
void sl_upstream_set_socket_callbacks(struct sl_upstream *u, CURL *easy);
/* x has a connection (or is over): it no longer counts in u->n_claims. */
void sl_upstream_unclaim(struct sl_upstream *u, struct sl_upstream_xfer *x);
/* One of our uv handles finished closing (frees u after the last one when closed). */
void sl_upstream_handle_gone(struct sl_upstream *u);

/* xfer.c */
/* Add a started transfer to the multi; on failure it is completed with
 * SL_UPSTREAM_INTERNAL (on_done runs). */
void sl_xfer_add(struct sl_upstream_xfer *x);
/* Remove a cancelled transfer from the multi and recycle it. */
void sl_xfer_reap(struct sl_upstream_xfer *x);
/* Unpause in curl (deferred resume); may run user callbacks. */
void sl_xfer_unpause(struct sl_upstream_xfer *x);
/* curl reported the transfer finished with rc. */
void sl_xfer_finished(struct sl_upstream_xfer *x, CURLcode rc);
/* Mark abandoned (closing the upstream): no callback runs any more. */
void sl_xfer_abandon(struct sl_upstream_xfer *x);
/* Free a pooled or cancelled transfer for good (closing the upstream). */
void sl_xfer_destroy(struct sl_upstream_xfer *x);

#endif
