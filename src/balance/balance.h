/*
 * balance: which backend of a route's pool serves an attempt, and what the
 * backends' recent answers say about them (one circuit breaker per backend).
 *
 * One struct sl_balance per loaded configuration, shared by every worker
 * thread of the process. Backend and route state are atomics: no lock is
 * taken per request. The smooth weighted round robin counters live in a
 * struct sl_balance_worker, one per worker thread, so workers never contend
 * on them (each worker's choices follow the weights, and so does their sum).
 * Only the pin table (stateful objects and sessions) takes a lock, one of
 * several shards, and only for requests that use it.
 *
 * Times are monotonic milliseconds (uv_now() of any worker's loop, or
 * sl_clock_mono_us() / 1000: both count from the same clock).
 */
#ifndef SL_BALANCE_H
#define SL_BALANCE_H

#include "config/config.h"
#include "http/parser.h"

struct sl_balance;
struct sl_balance_worker;

/* A backend's circuit, as /sluice/status shows it. */
enum sl_balance_state {
    SL_BALANCE_CLOSED,    /* serving */
    SL_BALANCE_OPEN,      /* not serving until `until` (throttled by a 429, or failing) */
    SL_BALANCE_HALF_OPEN, /* the open period ran out after failures: one trial request decides */
};
const char *sl_balance_state_name(enum sl_balance_state s); /* "closed", "open", "half-open" */

/* How an attempt on a backend ended. */
enum sl_balance_outcome {
    SL_BALANCE_SUCCESS,   /* any answer that says nothing against the backend: 1xx-4xx but 429 */
    SL_BALANCE_THROTTLED, /* 429: open for the time its retry headers say */
    SL_BALANCE_FAILURE,   /* 500, 502, 503, 504, connection failure or timeout */
    SL_BALANCE_CANCELLED, /* the client went away first: says nothing about the backend */
};

/* The retryable statuses: 429, 500, 502, 503, 504. */
bool sl_balance_status_retryable(int status);
/* The outcome an HTTP status means (see enum sl_balance_outcome). */
enum sl_balance_outcome sl_balance_status_outcome(int status);

/* 0 and *out; SL_ENOMEM. cfg is borrowed and must outlive the balance. */
int sl_balance_new(const struct sl_config *cfg, struct sl_balance **out);
void sl_balance_free(struct sl_balance *b);
/*
 * After a configuration reload: b (new, not yet in use) takes over what old knows about the
 * backends both configurations have, by name: circuits, failure counts, back-off, latency
 * averages and the pin table (moved, not copied: pins old makes afterwards are lost). Old
 * stays usable by requests still running on it.
 */
void sl_balance_adopt(struct sl_balance *b, struct sl_balance *old);

/* Per-worker state (round robin counters): used from one thread only. */
int sl_balance_worker_new(struct sl_balance *b, struct sl_balance_worker **out);
void sl_balance_worker_free(struct sl_balance_worker *w);

/* What limits the choice for one attempt. Views are borrowed for the call. */
struct sl_balance_query {
    size_t route;                   /* index into cfg->routes */
    const uint64_t *tried;          /* bitmap over cfg->backends of those already tried for this
                                     * request (never chosen again), or NULL */
    const uint64_t *allowed;        /* bitmap over cfg->backends of those the client may use
                                     * (struct sl_config_client.backend_allow), or NULL: any */
    const char *const *geographies; /* n_geographies areas a backend must be in; 0: any */
    size_t n_geographies;
    struct sl_str region; /* the client's region (nearest first); empty: unknown */
    size_t only;          /* pinned: this backend index only; SIZE_MAX: any */
};

/* The bitmap words sl_balance_query.tried needs for n backends. */
#define SL_BALANCE_BITMAP_WORDS(n) (((n) + 63) / 64)

/* What sl_balance_choose decided. */
struct sl_balance_pick {
    size_t backend; /* index into cfg->backends */
    bool probe;     /* this attempt is the backend's one half-open trial */
};

/*
 * Choose the backend for one attempt: among the route's pool members that
 * pass the query (not tried, in the geographies, the pinned one), the lowest
 * priority group that has an available backend; inside it, those in the
 * client's region if any is available, and then the lowest latency
 * (route.prefer_low_latency) or smooth weighted round robin.
 * Returns
 * - SL_OK: *pick is set and the backend counts the attempt in flight; call
 *   sl_balance_report exactly once when it ends;
 * - SL_EAGAIN: eligible backends exist but none is available now (open,
 *   throttled, or half-open with its trial already running); *retry_at is
 *   the soonest time one reopens (never before now);
 * - SL_ENOTFOUND: no pool member passes the query at all.
 */
int sl_balance_choose(struct sl_balance_worker *w, const struct sl_balance_query *q,
                      uint64_t now_ms, struct sl_balance_pick *pick, uint64_t *retry_at);

/* How an attempt ended, for sl_balance_report. */
struct sl_balance_result {
    enum sl_balance_outcome outcome;
    int status;              /* the backend's HTTP status; 0 when it sent none */
    uint64_t retry_after_ms; /* SL_BALANCE_THROTTLED: from sl_balance_retry_after; 0: none
                              * given (the backend's throttle_time applies) */
    uint64_t ttfb_ms;        /* time to the response head, for the latency average; 0: none */
    const char *why;         /* short reason for /sluice/status, e.g. "429 retry-after-ms: 2000"
                              * or "connect: Connection refused"; copied; never secrets */
};
/* The attempt chosen by sl_balance_choose (with pick.probe) ended. */
void sl_balance_report(struct sl_balance *b, const struct sl_balance_pick *pick,
                       const struct sl_balance_result *r, uint64_t now_ms);

/*
 * How long a throttled backend asks to be left alone, from its response
 * headers, in this order: `retry-after-ms` (milliseconds), `Retry-After`
 * (seconds, or an HTTP date, against now_unix_ms), then the larger of
 * `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` ("6m0s", "1.5s",
 * "20ms" or seconds). A value that does not parse, or is negative, is
 * skipped for the next; a value over max_ms is clamped to it (*clamped set).
 * Returns SL_OK and *ms (0 allowed), or SL_ENOTFOUND when no header gave one.
 */
int sl_balance_retry_after(const struct sl_http_header *headers, size_t n, uint64_t now_unix_ms,
                           uint64_t max_ms, uint64_t *ms, bool *clamped);

/*
 * Retry budget of a route: every first attempt counts a request; a retry is
 * allowed while the retries of the last 10 s stay under retry_budget of the
 * requests (and always for the first 100 of any 10 s, so that a quiet route
 * can still retry). Returns true and counts the retry, or false.
 */
void sl_balance_count_request(struct sl_balance *b, size_t route, uint64_t now_ms);
bool sl_balance_take_retry(struct sl_balance *b, size_t route, uint64_t now_ms);

/*
 * How the pool members that pass q look now (sl_balance_choose's filter; q->tried is
 * honoured, so pass NULL to see every member): *reopen_at, the soonest time one that is open
 * reopens (0: none is open), and *throttled, whether one is open because of a 429 rather
 * than failures. Decides a 429 or a 503, and its retry headers.
 */
void sl_balance_outlook(struct sl_balance *b, const struct sl_balance_query *q, uint64_t now_ms,
                        uint64_t *reopen_at, bool *throttled);

/* True when the route has a backend a request could be sent to now. */
bool sl_balance_route_available(struct sl_balance *b, size_t route, uint64_t now_ms);
/* /readyz: whether the process should get traffic (cfg->routing.readiness); routes that
 * have no available backend are appended to down (comma-separated names), when given. */
bool sl_balance_ready(struct sl_balance *b, uint64_t now_ms, struct sl_buf *down);

/*
 * The JSON of GET /sluice/status:
 * {"time":"<rfc3339>","ready":true,
 *  "routes":[{"name":"gpt-4o","available":true,"requests":N,"retries":N,
 *             "backends":[{"name":"ptu","priority":1,"weight":1}]}],
 *  "backends":[{"name":"ptu","state":"open","until":"<rfc3339>"|null,
 *               "reason":"429 retry-after-ms: 2000"|null,"last_status":429|null,
 *               "consecutive_failures":N,"in_flight":N,"ttfb_ms":N|null,
 *               "success":N,"errors":N,"throttled":N,     (the last 60 s)
 *               "region":"eastus"|null,"geography":"eu"|null}]}
 * now_unix_ms converts monotonic times to wall-clock ones.
 */
int sl_balance_status_json(struct sl_balance *b, uint64_t now_ms, uint64_t now_unix_ms,
                           struct sl_buf *out);

/* One backend's state at a moment (for metrics). */
struct sl_balance_backend_view {
    const char *name; /* the configuration's */
    enum sl_balance_state state;
    uint64_t until_ms;  /* monotonic: when an open circuit's period ends; 0 unless open */
    uint64_t in_flight; /* attempts chosen and not yet reported */
    uint64_t ttfb_us;   /* recent time to the response head (average); 0: no sample yet */
};
/* Call fn for every backend of the configuration, in its order. */
void sl_balance_for_each_backend(struct sl_balance *b, uint64_t now_ms,
                                 void (*fn)(void *arg, const struct sl_balance_backend_view *v),
                                 void *arg);

/*
 * The pin table: which backend holds a stateful object (a thread, a stored
 * response, an assistant, a file...) or serves a client session. Keys are
 * opaque bytes (the caller prefixes sessions so they cannot collide with
 * object ids). An entry lasts ttl_ms after it was last set; when the table
 * holds cfg->routing.max_pins entries, the oldest is dropped for a new one.
 */
void sl_balance_pin(struct sl_balance *b, struct sl_str key, size_t backend, uint64_t ttl_ms,
                    uint64_t now_ms);
/* SL_OK and *backend, or SL_ENOTFOUND (never set, expired, or dropped). */
int sl_balance_pinned(struct sl_balance *b, struct sl_str key, uint64_t now_ms, size_t *backend);

#endif
