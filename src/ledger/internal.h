/*
 * ledger internals: the hand-over queue, the budget table, calendar windows,
 * the SQLite store and the alert sender. Private to src/ledger (and its unit
 * tests, which drive the clock through sl_ledger_open_at).
 */
#ifndef SL_LEDGER_INTERNAL_H
#define SL_LEDGER_INTERNAL_H

#include "ledger/ledger.h"

#include <pthread.h>
#include <stdatomic.h>

#include <curl/curl.h>
#include <sqlite3.h>

/* The file's marks (store.c): PRAGMA application_id 'SLCE' and user_version. */
#define SL_LEDGER_APP_ID 0x534c4345
#define SL_LEDGER_SCHEMA_VERSION 1

/* ---- bounded multi-producer queue (Vyukov's bounded MPMC ring) ----
 * Each cell has a sequence number that says whose turn it is: pos for the
 * producer that claims position pos, pos + 1 once that producer has filled
 * it, pos + cap once the consumer has emptied it. Producers claim positions
 * with a CAS on enq and never wait for each other; a full ring is seen at
 * once and the push fails. The sequence numbers are kept apart from the
 * cells so that opening touches only them, not the cells' memory. */
struct sl_ledger_queue {
    unsigned char *cells; /* owned; cap * elem_size bytes */
    _Atomic size_t *seqs; /* owned; cap sequence numbers */
    size_t cap, elem_size;
    _Alignas(64) _Atomic size_t enq; /* next position to claim (producers) */
    _Alignas(64) _Atomic size_t deq; /* next position to read (the one consumer) */
};
int sl_ledger_queue_init(struct sl_ledger_queue *q, size_t cap, size_t elem_size);
void sl_ledger_queue_dispose(struct sl_ledger_queue *q);
/* Copy elem in; false when the ring is full. Any thread. */
bool sl_ledger_queue_push(struct sl_ledger_queue *q, const void *elem);
/* The oldest filled element, or NULL (empty, or its producer is still copying). Consumer
 * only; the element stays valid until sl_ledger_queue_release. */
void *sl_ledger_queue_peek(struct sl_ledger_queue *q);
void sl_ledger_queue_release(struct sl_ledger_queue *q);
/* Elements waiting, roughly (any thread). */
size_t sl_ledger_queue_length(const struct sl_ledger_queue *q);

/* ---- calendar windows (UTC) ---- */
#define SL_LEDGER_N_WINDOWS 3 /* enum sl_budget_window values */
/* The window of kind w holding t: its number (days, weeks or months since 1970) and its
 * first and next-window start in ms. */
struct sl_ledger_span {
    int64_t n;
    int64_t start_ms, end_ms;
};
struct sl_ledger_span sl_ledger_window_span(enum sl_budget_window w, uint64_t t_ms);
const char *sl_ledger_window_name(enum sl_budget_window w);      /* "day" */
const char *sl_ledger_window_adjective(enum sl_budget_window w); /* "daily" */

/* ---- budgets ---- */
/* What one client used in one window. Two per window kind, by the window number's parity,
 * so that a late record of the previous window still lands in its own window while the
 * new one fills. `n` holds the window number + 1 (0: never used); while a cell is being
 * taken over for a new window it carries SL_LEDGER_TAKING and others wait (a few
 * instructions, once per window). */
#define SL_LEDGER_TAKING ((uint64_t)1 << 63)
struct sl_ledger_usage_cell {
    _Atomic uint64_t n;
    _Atomic uint64_t tokens, cost;
};

/* A client with budgets, by name. Created at open for the configured clients, or by the
 * first request of a client that a reload gave budgets; never freed before close. */
struct sl_ledger_account {
    char name[64]; /* NUL-terminated, cut like sl_ledger_record.client */
    uint64_t hash;
    struct sl_ledger_usage_cell cells[SL_LEDGER_N_WINDOWS][2];
    /* false until the writer has added this window's sums from the file (accounts made
     * after open); the writer does it before it writes any record counted here. */
    _Atomic bool loaded;
    struct sl_ledger_account *next_overflow; /* owned by the overflow list; under its mutex */
};

/* Open addressing, fixed size, insert-only: slots go from NULL to an account once (CAS),
 * so lookups take no lock. When it is full (far more clients added by reloads than were
 * configured at start), the rest go to a list under a mutex. */
struct sl_ledger_accounts {
    _Atomic(struct sl_ledger_account *) *slots; /* owned, with the accounts they point to */
    size_t mask;
    _Atomic size_t used;
    pthread_mutex_t overflow_lock;
    struct sl_ledger_account *overflow; /* owned; under overflow_lock */
    _Atomic bool has_overflow;
    _Atomic bool unloaded; /* some account waits for its sums (the writer looks) */
};

/* A threshold crossed, for the writer to record, log and post. Plain data. */
struct sl_ledger_alert {
    char client[64];
    enum sl_budget_window window;
    int64_t window_start_ms;
    uint32_t budget;     /* index into the client's budgets */
    uint32_t level_ppm;  /* the share crossed: the budget's alert_at, or 1000000 */
    uint32_t covers_ppm; /* a lower level crossed by the same record, recorded as sent
                          * without an alert of its own; 0: none */
    uint64_t used_tokens, limit_tokens, used_cost, limit_cost;
    uint64_t time_ms; /* the record that crossed it */
};

/* ---- the ledger ---- */
struct sl_ledger_webhook; /* alert.c */
struct sl_ledger {
    char *path;    /* owned copy of usage.db, for messages */
    char *webhook; /* owned copy of alerts.webhook; NULL: none */
    uint64_t flush_interval_ms;
    sqlite3 *db; /* owned; used by the writer thread only once it runs */
    sqlite3_stmt *insert, *sums, *alert_insert; /* owned */
    struct sl_ledger_queue records;             /* of struct sl_ledger_record */
    struct sl_ledger_queue alerts;              /* of struct sl_ledger_alert */
    struct sl_ledger_accounts accounts;
    CURLM *multi;                       /* owned; the writer waits on it and runs the webhooks */
    struct sl_ledger_webhook *webhooks; /* owned; the POSTs running (writer only) */
    pthread_t thread;
    bool thread_started;
    _Atomic bool stop;
    _Atomic bool kicked; /* a producer woke the writer early; it clears this */
    _Atomic uint64_t dropped, alert_drops, write_errors, alerts_sent;
    _Atomic uint64_t last_drop_warn_ms;
    _Atomic uint64_t written; /* records committed */
};

/* sl_ledger_open with the clock given (budget windows at open are those of now_unix_ms). */
int sl_ledger_open_at(const struct sl_config *cfg, uint64_t now_unix_ms, struct sl_ledger **out,
                      struct sl_buf *why);
/* Alerts recorded (first time in their window) since open. */
uint64_t sl_ledger_alerts_sent(const struct sl_ledger *l);
/* Records committed to the file since open (for tests and measurements). */
uint64_t sl_ledger_written(const struct sl_ledger *l);

int sl_ledger_accounts_init(struct sl_ledger_accounts *a, size_t n_clients);
void sl_ledger_accounts_dispose(struct sl_ledger_accounts *a);
/* The account of name (cut to 63 bytes), or NULL; create: make it when missing (loaded:
 * false), NULL only when out of memory. */
struct sl_ledger_account *sl_ledger_accounts_get(struct sl_ledger_accounts *a, const char *name,
                                                 bool create);
/* The cell of window w number n, taken over from an older window when needed; NULL when
 * the cell already holds a newer window (the record is too old to count). */
struct sl_ledger_usage_cell *sl_ledger_usage_cell(struct sl_ledger_account *acc,
                                                  enum sl_budget_window w, int64_t n);
/* Count tokens and cost at time t_ms into acc's windows that client's budgets use, and
 * queue an alert for every threshold this crossed. */
void sl_ledger_count(struct sl_ledger *l, struct sl_ledger_account *acc,
                     const struct sl_config_client *client, uint64_t t_ms, uint64_t tokens,
                     uint64_t cost);

/* ---- store (writer thread after open) ---- */
int sl_ledger_store_open(struct sl_ledger *l, struct sl_buf *why);
void sl_ledger_store_close(struct sl_ledger *l);
/* Tokens and cost of client since start_ms. */
int sl_ledger_store_sums(struct sl_ledger *l, const char *client, int64_t start_ms,
                         uint64_t *tokens, uint64_t *cost);
int sl_ledger_store_begin(struct sl_ledger *l);
int sl_ledger_store_commit(struct sl_ledger *l);
void sl_ledger_store_rollback(struct sl_ledger *l);
int sl_ledger_store_insert(struct sl_ledger *l, const struct sl_ledger_record *r);
/* 1 when the alert is new (a row was added), 0 when it was sent before, or an error. */
int sl_ledger_store_alert(struct sl_ledger *l, const struct sl_ledger_alert *a, uint64_t now_ms);

/* ---- alerts (writer thread) ---- */
/* Log a newly recorded alert and start its webhook POST when one is set. */
void sl_ledger_alert_send(struct sl_ledger *l, const struct sl_ledger_alert *a, uint64_t now_ms);
/* Collect finished webhook transfers (retrying a failed one once). */
void sl_ledger_alert_collect(struct sl_ledger *l);
/* Abandon transfers still running (at close, after they had their time). */
void sl_ledger_alert_abort(struct sl_ledger *l);

#endif
