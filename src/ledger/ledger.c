/*
 * The ledger's life: open (file, budget sums, writer thread), the workers'
 * side (count, queue, never wait) and the writer thread, which wakes every
 * flush_interval (or early, when the queue is half full), writes everything
 * queued in one transaction, records and sends alerts, and at close writes
 * what is left.
 *
 * The writer waits on its curl multi handle rather than a condition
 * variable: that one wait covers the flush timer, the webhooks' sockets and
 * curl_multi_wakeup from producers, so no worker ever takes a lock to wake it.
 */
#include "ledger/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALERT_QUEUE_SIZE 1024
#define DROP_WARN_EVERY_MS 10000
#define SHUTDOWN_WEBHOOK_MS 5500

static uint64_t mono_ms(void)
{
    return sl_clock_mono_us() / 1000;
}

/* Add what the file holds for acc's current windows (of now_ms) to its counters. Counters
 * may already hold records counted since the account was made: those are not in the file
 * yet (see drain), so adding keeps both. */
static int account_load(struct sl_ledger *l, struct sl_ledger_account *acc, uint64_t now_ms)
{
    for (unsigned w = 0; w < SL_LEDGER_N_WINDOWS; w++) {
        struct sl_ledger_span span = sl_ledger_window_span(w, now_ms);
        uint64_t tokens, cost;
        int err = sl_ledger_store_sums(l, acc->name, span.start_ms, &tokens, &cost);
        if (err != SL_OK)
            return err;
        struct sl_ledger_usage_cell *c = sl_ledger_usage_cell(acc, w, span.n);
        if (c != NULL) {
            atomic_fetch_add_explicit(&c->tokens, tokens, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->cost, cost, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&acc->loaded, true, memory_order_release);
    return SL_OK;
}

/* Load every account a worker made since the last look (clients given budgets by a
 * reload). Writer thread. */
static void load_new_accounts(struct sl_ledger *l)
{
    struct sl_ledger_accounts *a = &l->accounts;
    uint64_t now = sl_clock_unix_ms();
    for (size_t i = 0; i <= a->mask; i++) {
        struct sl_ledger_account *acc = atomic_load_explicit(&a->slots[i], memory_order_acquire);
        if (acc != NULL && !atomic_load_explicit(&acc->loaded, memory_order_acquire) &&
            account_load(l, acc, now) != SL_OK)
            sl_log_error("usage ledger %s: cannot read the budget use of client %s: %s", l->path,
                         acc->name, sqlite3_errmsg(l->db));
    }
    if (!atomic_load_explicit(&a->has_overflow, memory_order_acquire))
        return;
    pthread_mutex_lock(&a->overflow_lock);
    for (struct sl_ledger_account *acc = a->overflow; acc != NULL; acc = acc->next_overflow)
        if (!atomic_load_explicit(&acc->loaded, memory_order_acquire))
            account_load(l, acc, now);
    pthread_mutex_unlock(&a->overflow_lock);
}

/* Write what is queued in one transaction, then record and send new alerts. A transaction
 * takes at most a queue's worth, so that under a load the writer cannot keep up with it
 * still commits (and a crash loses little); true when records are left for the next. */
static bool drain(struct sl_ledger *l)
{
    const struct sl_ledger_record *r = sl_ledger_queue_peek(&l->records);
    bool more = false;
    if (r != NULL) {
        uint64_t n = 0, failed = 0;
        bool in_tx = sl_ledger_store_begin(l) == SL_OK;
        for (; r != NULL; r = sl_ledger_queue_peek(&l->records)) {
            if (n == l->records.cap) {
                more = true;
                break;
            }
            /* An account made since the last look may already count this record; its sums
             * must be read before the record is in the file, or it would count twice. The
             * worker made the account before it queued the record, so the flag is seen. */
            if (atomic_load_explicit(&l->accounts.unloaded, memory_order_acquire) &&
                atomic_exchange(&l->accounts.unloaded, false))
                load_new_accounts(l);
            if (sl_ledger_store_insert(l, r) != SL_OK)
                failed++;
            sl_ledger_queue_release(&l->records);
            n++;
        }
        if (!in_tx || sl_ledger_store_commit(l) != SL_OK) {
            sl_ledger_store_rollback(l);
            failed = n;
        }
        atomic_fetch_add_explicit(&l->written, n - failed, memory_order_relaxed);
        if (failed > 0) {
            atomic_fetch_add_explicit(&l->write_errors, failed, memory_order_relaxed);
            sl_log_error("usage ledger %s: %llu of %llu records not written: %s", l->path,
                         (unsigned long long)failed, (unsigned long long)n, sqlite3_errmsg(l->db));
        }
    } else if (atomic_load_explicit(&l->accounts.unloaded, memory_order_acquire) &&
               atomic_exchange(&l->accounts.unloaded, false)) {
        load_new_accounts(l);
    }

    const struct sl_ledger_alert *qa;
    while ((qa = sl_ledger_queue_peek(&l->alerts)) != NULL) {
        struct sl_ledger_alert a = *qa;
        sl_ledger_queue_release(&l->alerts);
        uint64_t now = sl_clock_unix_ms();
        int rc = sl_ledger_store_alert(l, &a, now);
        if (rc < 0)
            sl_log_error("usage ledger %s: cannot record a budget alert of client %s: %s", l->path,
                         a.client, sqlite3_errmsg(l->db));
        if (rc != 0) /* new, or not recorded: better twice than never */
            sl_ledger_alert_send(l, &a, now);
    }
    return more;
}

static void *writer_main(void *arg)
{
    struct sl_ledger *l = arg;
    for (;;) {
        /* Read the flag before draining: whatever was queued before close() set it is
         * written by this last round. */
        bool stopping = atomic_load(&l->stop);
        bool more = drain(l);
        atomic_store_explicit(&l->kicked, false, memory_order_relaxed);
        if (l->webhooks != NULL)
            sl_ledger_alert_collect(l);
        if (stopping && !more)
            break;
        curl_multi_poll(l->multi, NULL, 0, more ? 0 : (int)l->flush_interval_ms, NULL);
    }
    /* Alerts already decided get their chance to go out (each POST has its own timeout). */
    uint64_t deadline = mono_ms() + SHUTDOWN_WEBHOOK_MS;
    while (l->webhooks != NULL && mono_ms() < deadline) {
        curl_multi_poll(l->multi, NULL, 0, 100, NULL);
        sl_ledger_alert_collect(l);
    }
    sl_ledger_alert_abort(l);
    return NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    /* Reference-counted by curl and thread-safe in the curl we build against; the
     * upstream does the same. Never undone: curl's globals live as long as the process. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sl_ledger_open_at(const struct sl_config *cfg, uint64_t now_unix_ms, struct sl_ledger **out,
                      struct sl_buf *why)
{
    int err = SL_ENOMEM;
    struct sl_ledger *l = NULL;
    *out = NULL;
    if (cfg->usage.db == NULL) {
        if (why != NULL)
            sl_buf_appendf(why, "no usage ledger is configured (usage.db)");
        return SL_EINVAL;
    }
    if ((l = calloc(1, sizeof(*l))) == NULL)
        goto fail;
    atomic_init(&l->stop, false);
    atomic_init(&l->kicked, false);
    atomic_init(&l->dropped, 0);
    atomic_init(&l->alert_drops, 0);
    atomic_init(&l->write_errors, 0);
    atomic_init(&l->alerts_sent, 0);
    atomic_init(&l->last_drop_warn_ms, 0);
    l->flush_interval_ms = cfg->usage.flush_interval_ms != 0 ? cfg->usage.flush_interval_ms : 100;
    if ((l->path = strdup(cfg->usage.db)) == NULL)
        goto fail;
    if (cfg->alerts.webhook != NULL && (l->webhook = strdup(cfg->alerts.webhook)) == NULL)
        goto fail;
    size_t n_budgeted = 0;
    for (size_t i = 0; i < cfg->n_clients; i++)
        n_budgeted += cfg->clients[i].n_budgets > 0;
    if ((err = sl_ledger_queue_init(&l->records,
                                    cfg->usage.queue_size != 0 ? cfg->usage.queue_size : 65536,
                                    sizeof(struct sl_ledger_record))) != SL_OK ||
        (err = sl_ledger_queue_init(&l->alerts, ALERT_QUEUE_SIZE,
                                    sizeof(struct sl_ledger_alert))) != SL_OK ||
        (err = sl_ledger_accounts_init(&l->accounts, n_budgeted)) != SL_OK)
        goto fail;
    if ((err = sl_ledger_store_open(l, why)) != SL_OK) {
        err = SL_EIO;
        goto fail;
    }
    /* The budgets' current windows, from the file: they survive restarts. */
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct sl_config_client *cl = &cfg->clients[i];
        if (cl->n_budgets == 0)
            continue;
        struct sl_ledger_account *acc = sl_ledger_accounts_get(&l->accounts, cl->name, true);
        err = SL_ENOMEM;
        if (acc == NULL)
            goto fail;
        if (account_load(l, acc, now_unix_ms) != SL_OK) {
            if (why != NULL)
                sl_buf_appendf(why, "usage ledger %s: cannot read the budget use of client %s (%s)",
                               l->path, cl->name, sqlite3_errmsg(l->db));
            err = SL_EIO;
            goto fail;
        }
    }
    atomic_store(&l->accounts.unloaded, false);
    pthread_once(&curl_once, curl_init);
    err = SL_ENOMEM;
    if ((l->multi = curl_multi_init()) == NULL)
        goto fail;
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        if (why != NULL)
            sl_buf_appendf(why, "usage ledger %s: cannot start the writer thread", l->path);
        err = SL_EIO;
        goto fail;
    }
    l->thread_started = true;
    *out = l;
    return SL_OK;
fail:
    if (err == SL_ENOMEM && why != NULL && why->len == 0)
        sl_buf_appendf(why, "usage ledger %s: out of memory", cfg->usage.db);
    sl_ledger_close(l);
    return err;
}

int sl_ledger_open(const struct sl_config *cfg, struct sl_ledger **out, struct sl_buf *why)
{
    return sl_ledger_open_at(cfg, sl_clock_unix_ms(), out, why);
}

void sl_ledger_close(struct sl_ledger *l)
{
    if (l == NULL)
        return;
    if (l->thread_started) {
        atomic_store(&l->stop, true);
        curl_multi_wakeup(l->multi);
        pthread_join(l->thread, NULL);
    }
    uint64_t dropped = atomic_load(&l->dropped);
    if (dropped > 0 && l->thread_started)
        sl_log_warn("usage ledger %s: %llu records were dropped (queue full) since start", l->path,
                    (unsigned long long)dropped);
    sl_ledger_store_close(l);
    if (l->multi != NULL)
        curl_multi_cleanup(l->multi);
    sl_ledger_queue_dispose(&l->records);
    sl_ledger_queue_dispose(&l->alerts);
    sl_ledger_accounts_dispose(&l->accounts);
    free(l->path);
    free(l->webhook);
    free(l);
}

void sl_ledger_add(struct sl_ledger *l, const struct sl_config_client *client,
                   const struct sl_ledger_record *r)
{
    if (l == NULL || r == NULL)
        return;
    /* Count before queueing: the writer relies on an account existing before any record
     * it counts can reach the file (see drain). */
    if (client != NULL && client->n_budgets > 0 && (r->usage.total != 0 || r->cost != 0)) {
        struct sl_ledger_account *acc = sl_ledger_accounts_get(&l->accounts, client->name, true);
        if (acc != NULL)
            sl_ledger_count(l, acc, client, r->time_unix_ms, r->usage.total, r->cost);
    }
    if (!sl_ledger_queue_push(&l->records, r)) {
        uint64_t n = atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed) + 1;
        uint64_t now = mono_ms();
        uint64_t last = atomic_load_explicit(&l->last_drop_warn_ms, memory_order_relaxed);
        if ((last == 0 || now - last >= DROP_WARN_EVERY_MS) &&
            atomic_compare_exchange_strong(&l->last_drop_warn_ms, &last, now))
            sl_log_warn("usage ledger %s: queue full (%zu records), a record was dropped (%llu "
                        "since start)",
                        l->path, l->records.cap, (unsigned long long)n);
        return;
    }
    /* Half full: wake the writer now rather than at the next flush, once per round. */
    if (sl_ledger_queue_length(&l->records) >= l->records.cap / 2 &&
        !atomic_load_explicit(&l->kicked, memory_order_relaxed) &&
        !atomic_exchange(&l->kicked, true))
        curl_multi_wakeup(l->multi);
}

uint64_t sl_ledger_dropped(const struct sl_ledger *l)
{
    return l != NULL ? atomic_load_explicit(&l->dropped, memory_order_relaxed) : 0;
}

uint64_t sl_ledger_alerts_sent(const struct sl_ledger *l)
{
    return l != NULL ? atomic_load_explicit(&l->alerts_sent, memory_order_relaxed) : 0;
}

uint64_t sl_ledger_written(const struct sl_ledger *l)
{
    return atomic_load_explicit(&l->written, memory_order_relaxed);
}
