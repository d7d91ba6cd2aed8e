/*
 * balance internals: the shared per-backend and per-route state, the pin
 * table, and the helpers the files of src/balance/ share. Private to
 * src/balance/ (and its unit tests).
 */
#ifndef SL_BALANCE_INTERNAL_H
#define SL_BALANCE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "balance/balance.h"

/* Per-backend state is written by every worker: give each its own cache lines. */
#define SL_BALANCE_CACHE_LINE 64

/*
 * A circuit is one 64-bit word so that a transition is one compare-and-swap
 * and a reader never sees a mode with another mode's deadline:
 *   bits 0-1  mode (below)
 *   bit  2    the half-open trial is taken (only with SL_CIRCUIT_FAILED)
 *   bits 8-63 until: monotonic ms the open period ends (2^56 ms is ample)
 * The half-open state is not stored: it is a failed circuit whose open
 * period has run out, so that nobody has to be awake to flip it.
 */
enum sl_circuit_mode {
    SL_CIRCUIT_CLOSED = 0,
    SL_CIRCUIT_THROTTLED = 1, /* open until `until`, then closed again (a 429 is no failure) */
    SL_CIRCUIT_FAILED = 2,    /* open until `until`, then half-open: one trial decides */
};
#define SL_CIRCUIT_MODE(w) ((unsigned)((w)&3u))
#define SL_CIRCUIT_TRIAL ((uint64_t)4)
#define SL_CIRCUIT_UNTIL(w) ((w) >> 8)
#define SL_CIRCUIT_WORD(mode, trial, until)                                                        \
    ((uint64_t)(mode) | ((trial) ? SL_CIRCUIT_TRIAL : 0) | ((uint64_t)(until) << 8))
#define SL_CIRCUIT_MAX_UNTIL (UINT64_MAX >> 8)

/* Outcome counts over the last minute: 6 buckets of 10 s, each tagged with
 * the 10 s period it counts, reset by whoever first writes to it in a new
 * period. Approximate under races (a count may land in a bucket being reset). */
#define SL_BALANCE_BUCKETS 6
#define SL_BALANCE_BUCKET_MS 10000
struct sl_balance_bucket {
    _Atomic uint64_t epoch; /* now_ms / SL_BALANCE_BUCKET_MS + 1; 0: never used */
    _Atomic uint32_t success, errors, throttled;
};

/* How a circuit looks to a chooser at one moment. */
enum sl_balance_avail {
    SL_AVAIL_YES,   /* closed (or its throttle ran out) */
    SL_AVAIL_PROBE, /* half-open and its trial is free: choosing it takes the trial */
    SL_AVAIL_NO,    /* open, or half-open with the trial running */
};

/* Shared state of one backend (cfg->backends[i]). Everything but why/last_status
 * is atomic; those two change only on failures and throttles, under why_lock. */
struct sl_balance_backend {
    _Alignas(SL_BALANCE_CACHE_LINE) _Atomic uint64_t circuit; /* see SL_CIRCUIT_WORD */
    _Atomic uint32_t failures;  /* consecutive failures; reset by any success */
    _Atomic uint32_t level;     /* failed trials since the last good one: open_time << level */
    _Atomic int64_t in_flight;  /* chosen and not yet reported */
    _Atomic uint64_t ttfb_ewma; /* TTFB average in µs, plus 1; 0: no sample yet */
    struct sl_balance_bucket buckets[SL_BALANCE_BUCKETS];
    pthread_mutex_t why_lock;
    char why[128];   /* the last failure or throttle, for /sluice/status; "" none */
    int last_status; /* its HTTP status; 0 none */
};

/* Retry budget of one route: two 10 s windows used in turn. */
#define SL_BALANCE_BUDGET_MS 10000
struct sl_balance_window {
    _Atomic uint64_t epoch; /* now_ms / SL_BALANCE_BUDGET_MS + 1; 0: never used */
    _Atomic uint64_t requests, retries;
};
struct sl_balance_route {
    _Alignas(SL_BALANCE_CACHE_LINE) struct sl_balance_window win[2];
    size_t swrr_base; /* this route's first slot in sl_balance_worker.current */
};

/* ---- pin table ---- */
#define SL_BALANCE_PIN_SHARDS 16
/* Keys up to this long are stored as they are; longer ones by their SHA-256 (so that a
 * client cannot make the table hold megabytes per entry). */
#define SL_BALANCE_PIN_KEY_MAX 256
struct sl_balance_pin; /* an entry: pins.c */
struct sl_balance_pin_shard {
    pthread_mutex_t lock;
    struct sl_balance_pin **slots; /* owned: n_slots hash chains (a power of two) */
    size_t n_slots;
    size_t n;                      /* entries */
    struct sl_balance_pin *oldest; /* least recently set: the first dropped when full */
    struct sl_balance_pin *newest; /* the order list's other end */
};

struct sl_balance {
    const struct sl_config *cfg;         /* borrowed: outlives the balance */
    struct sl_balance_backend *backends; /* owned: cfg->n_backends (aligned_alloc) */
    struct sl_balance_route *routes;     /* owned: cfg->n_routes (aligned_alloc) */
    size_t n_swrr;                       /* pool members of all routes */
    size_t max_pool;                     /* the largest pool */
    struct sl_balance_pin_shard shards[SL_BALANCE_PIN_SHARDS];
    size_t pins_per_shard; /* cfg->routing.max_pins spread over the shards, rounded up */
    uint64_t hash_key[2];  /* SipHash key, random per process: keys come from clients */
};

/* Used by one worker thread only. */
struct sl_balance_worker {
    struct sl_balance *b; /* borrowed */
    int64_t *current;     /* owned: smooth weighted round robin weights, n_swrr */
    unsigned char *avail; /* owned: max_pool scratch for sl_balance_choose */
    uint64_t *reopen;     /* owned: max_pool scratch for sl_balance_choose */
};

/* choose.c: does backend bi of route r pass q (and the route's own geographies)? */
bool sl_balance_eligible(const struct sl_config *cfg, const struct sl_config_route *r,
                         const struct sl_balance_query *q, size_t bi);

/* circuit.c */
void sl_balance_backend_init(struct sl_balance_backend *be);
void sl_balance_backend_dispose(struct sl_balance_backend *be);
/* How the circuit looks at now; *reopen is set for SL_AVAIL_NO (when to look again). */
enum sl_balance_avail sl_balance_avail(const struct sl_balance_backend *be, uint64_t now_ms,
                                       uint64_t *reopen);
/* Take the half-open trial: true when this caller got it. */
bool sl_balance_take_trial(struct sl_balance_backend *be, uint64_t now_ms);
/* The state /sluice/status shows, and the end of the open period (0 unless open). */
enum sl_balance_state sl_balance_backend_state(const struct sl_balance_backend *be, uint64_t now_ms,
                                               uint64_t *until);
/* Outcome counts of the last minute. */
void sl_balance_backend_counts(const struct sl_balance_backend *be, uint64_t now_ms,
                               uint64_t *success, uint64_t *errors, uint64_t *throttled);

/* budget.c */
void sl_balance_route_window(struct sl_balance *b, size_t route, uint64_t now_ms,
                             uint64_t *requests, uint64_t *retries);

/* pins.c */
int sl_balance_pins_init(struct sl_balance *b);
void sl_balance_pins_dispose(struct sl_balance *b);
/* Move old's pins into b (not yet in use), renumbering backends by name. */
void sl_balance_pins_adopt(struct sl_balance *b, struct sl_balance *old);
/* The shard that holds key (for the unit tests: eviction is per shard). */
size_t sl_balance_pin_shard(const struct sl_balance *b, struct sl_str key);

/* retry_after.c: exposed for the unit tests. Parse a Go duration ("1h2m3.5s", "20ms")
 * or plain seconds ("30", "0.5") into ms, rounded up; SL_EINVAL / SL_ETOOBIG. */
int sl_balance_parse_duration(struct sl_str s, uint64_t *ms);
/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") as unix ms; SL_EINVAL. */
int sl_balance_parse_http_date(struct sl_str s, uint64_t *unix_ms);

#endif
