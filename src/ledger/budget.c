/*
 * Budgets: what each client used in its current windows, kept in memory by
 * client name so that any worker can count and check without a lock, and so
 * that the numbers outlive configuration reloads (a reload may change the
 * limits; what was used stays). Usage is kept per window kind, not per
 * budget: two budgets over the same window share what was used.
 *
 * Thresholds are found by the counting itself: fetch_add returns the value
 * before, so exactly one record sees a threshold crossed in its window. The
 * writer records each alert in budget_alerts (first one wins), which also
 * keeps a restart, or tokens and cost crossing separately, from alerting
 * twice.
 */
#include "ledger/internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PPM 1000000u

/* FNV-1a: client names are short and chosen by operators, not attackers. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* name cut to fit an account's (and a record's) 64 bytes. */
static void cut_name(const char *name, char out[64])
{
    size_t n = strnlen(name, 63);
    memcpy(out, name, n);
    out[n] = '\0';
}

int sl_ledger_accounts_init(struct sl_ledger_accounts *a, size_t n_clients)
{
    memset(a, 0, sizeof(*a));
    /* Room for four times the clients configured at start (at least 64), so that clients
     * added by reloads rarely reach the overflow list. */
    size_t cap = 64;
    while (cap < 4 * n_clients)
        cap *= 2;
    a->slots = calloc(cap, sizeof(*a->slots));
    if (a->slots == NULL)
        return SL_ENOMEM;
    a->mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&a->slots[i], NULL);
    atomic_init(&a->used, 0);
    atomic_init(&a->has_overflow, false);
    atomic_init(&a->unloaded, false);
    pthread_mutex_init(&a->overflow_lock, NULL);
    return SL_OK;
}

void sl_ledger_accounts_dispose(struct sl_ledger_accounts *a)
{
    if (a->slots == NULL)
        return;
    for (size_t i = 0; i <= a->mask; i++)
        free(atomic_load(&a->slots[i]));
    free(a->slots);
    a->slots = NULL;
    while (a->overflow != NULL) {
        struct sl_ledger_account *next = a->overflow->next_overflow;
        free(a->overflow);
        a->overflow = next;
    }
    pthread_mutex_destroy(&a->overflow_lock);
}

static struct sl_ledger_account *account_new(const char *key, uint64_t h)
{
    struct sl_ledger_account *acc = calloc(1, sizeof(*acc));
    if (acc == NULL)
        return NULL;
    memcpy(acc->name, key, strlen(key) + 1);
    acc->hash = h;
    for (size_t w = 0; w < SL_LEDGER_N_WINDOWS; w++)
        for (size_t p = 0; p < 2; p++) {
            atomic_init(&acc->cells[w][p].n, 0);
            atomic_init(&acc->cells[w][p].tokens, 0);
            atomic_init(&acc->cells[w][p].cost, 0);
        }
    atomic_init(&acc->loaded, false);
    return acc;
}

/* The slow path: clients beyond the table's room, under a mutex. */
static struct sl_ledger_account *overflow_get(struct sl_ledger_accounts *a, const char *key,
                                              uint64_t h, bool create)
{
    struct sl_ledger_account *acc;
    pthread_mutex_lock(&a->overflow_lock);
    for (acc = a->overflow; acc != NULL; acc = acc->next_overflow)
        if (acc->hash == h && strcmp(acc->name, key) == 0)
            goto done;
    if (create && (acc = account_new(key, h)) != NULL) {
        acc->next_overflow = a->overflow;
        a->overflow = acc;
        atomic_store(&a->has_overflow, true);
        atomic_store(&a->unloaded, true);
    }
done:
    pthread_mutex_unlock(&a->overflow_lock);
    return acc;
}

struct sl_ledger_account *sl_ledger_accounts_get(struct sl_ledger_accounts *a, const char *name,
                                                 bool create)
{
    char key[64];
    cut_name(name, key);
    uint64_t h = name_hash(key);
    struct sl_ledger_account *mine = NULL; /* made here, not yet in the table */
    for (size_t probe = 0, i = h & a->mask; probe <= a->mask; probe++, i = (i + 1) & a->mask) {
        struct sl_ledger_account *acc = atomic_load_explicit(&a->slots[i], memory_order_acquire);
        if (acc == NULL) {
            /* Keep a quarter of the table empty so that probes stay short. */
            if (!create ||
                atomic_load_explicit(&a->used, memory_order_relaxed) >= (a->mask + 1) / 4 * 3)
                break;
            if (mine == NULL && (mine = account_new(key, h)) == NULL)
                return NULL;
            if (atomic_compare_exchange_strong_explicit(
                    &a->slots[i], &acc, mine, memory_order_acq_rel, memory_order_acquire)) {
                atomic_fetch_add_explicit(&a->used, 1, memory_order_relaxed);
                atomic_store_explicit(&a->unloaded, true, memory_order_release);
                return mine;
            }
            /* Another thread filled this slot first; acc is its account. */
        }
        if (acc->hash == h && strcmp(acc->name, key) == 0) {
            free(mine);
            return acc;
        }
    }
    free(mine);
    if (!create && !atomic_load_explicit(&a->has_overflow, memory_order_acquire))
        return NULL;
    return overflow_get(a, key, h, create);
}

struct sl_ledger_usage_cell *sl_ledger_usage_cell(struct sl_ledger_account *acc,
                                                  enum sl_budget_window w, int64_t n)
{
    struct sl_ledger_usage_cell *c = &acc->cells[w][n & 1];
    uint64_t want = (uint64_t)n + 1;
    for (;;) {
        uint64_t cur = atomic_load_explicit(&c->n, memory_order_acquire);
        if (cur == want)
            return c;
        if (cur & SL_LEDGER_TAKING) {
            /* Another thread is zeroing it for a new window: a few instructions. */
            sched_yield();
            continue;
        }
        if (cur > want)
            return NULL;
        if (atomic_compare_exchange_weak_explicit(&c->n, &cur, want | SL_LEDGER_TAKING,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            atomic_store_explicit(&c->tokens, 0, memory_order_relaxed);
            atomic_store_explicit(&c->cost, 0, memory_order_relaxed);
            atomic_store_explicit(&c->n, want, memory_order_release);
            return c;
        }
    }
}

/* The amount at which level_ppm of limit is reached (rounded up). */
static uint64_t threshold(uint64_t limit, uint32_t level_ppm)
{
    unsigned __int128 v = (unsigned __int128)limit * level_ppm + (PPM - 1);
    return (uint64_t)(v / PPM);
}

static bool crossed(uint64_t before, uint64_t after, uint64_t limit, uint32_t level_ppm)
{
    if (limit == 0)
        return false;
    uint64_t t = threshold(limit, level_ppm);
    return before < t && after >= t;
}

void sl_ledger_count(struct sl_ledger *l, struct sl_ledger_account *acc,
                     const struct sl_config_client *client, uint64_t t_ms, uint64_t tokens,
                     uint64_t cost)
{
    unsigned kinds = 0;
    for (size_t b = 0; b < client->n_budgets; b++)
        kinds |= 1u << client->budgets[b].window;
    for (unsigned w = 0; w < SL_LEDGER_N_WINDOWS; w++) {
        if (!(kinds & (1u << w)) || (tokens == 0 && cost == 0))
            continue;
        struct sl_ledger_span span = sl_ledger_window_span(w, t_ms);
        struct sl_ledger_usage_cell *c = sl_ledger_usage_cell(acc, w, span.n);
        if (c == NULL)
            continue; /* a record of a window that is over: nothing to enforce any more */
        uint64_t t0 = atomic_fetch_add_explicit(&c->tokens, tokens, memory_order_relaxed);
        uint64_t c0 = atomic_fetch_add_explicit(&c->cost, cost, memory_order_relaxed);
        for (size_t b = 0; b < client->n_budgets; b++) {
            const struct sl_config_budget *bg = &client->budgets[b];
            if (bg->window != (enum sl_budget_window)w)
                continue;
            /* One alert per record: when a record crosses both levels at once, the 100 %
             * alert is sent and the lower one recorded with it. */
            bool at_alert = crossed(t0, t0 + tokens, bg->tokens, bg->alert_ppm) ||
                            crossed(c0, c0 + cost, bg->cost, bg->alert_ppm);
            bool at_full = bg->alert_ppm < PPM && (crossed(t0, t0 + tokens, bg->tokens, PPM) ||
                                                   crossed(c0, c0 + cost, bg->cost, PPM));
            if (!at_alert && !at_full)
                continue;
            struct sl_ledger_alert a = {
                .window = w,
                .window_start_ms = span.start_ms,
                .budget = (uint32_t)b,
                .level_ppm = at_full ? PPM : bg->alert_ppm,
                .covers_ppm = at_full && at_alert ? bg->alert_ppm : 0,
                .used_tokens = t0 + tokens,
                .limit_tokens = bg->tokens,
                .used_cost = c0 + cost,
                .limit_cost = bg->cost,
                .time_ms = t_ms,
            };
            cut_name(client->name, a.client);
            if (!sl_ledger_queue_push(&l->alerts, &a))
                atomic_fetch_add_explicit(&l->alert_drops, 1, memory_order_relaxed);
        }
    }
}

/* Money for people: "$250.50" (cents rounded half up). */
static void format_money(uint64_t micros, char *out, size_t outlen)
{
    uint64_t cents = micros / 10000 + (micros % 10000 >= 5000);
    snprintf(out, outlen, "$%llu.%02llu", (unsigned long long)(cents / 100),
             (unsigned long long)(cents % 100));
}

int sl_ledger_budget_check(struct sl_ledger *l, const struct sl_config_client *client,
                           uint64_t now_unix_ms, struct sl_budget_refusal *refusal)
{
    if (l == NULL || client == NULL || client->n_budgets == 0)
        return SL_OK;
    struct sl_ledger_account *acc = sl_ledger_accounts_get(&l->accounts, client->name, false);
    if (acc == NULL)
        return SL_OK; /* nothing counted yet */
    for (size_t b = 0; b < client->n_budgets; b++) {
        const struct sl_config_budget *bg = &client->budgets[b];
        struct sl_ledger_span span = sl_ledger_window_span(bg->window, now_unix_ms);
        const struct sl_ledger_usage_cell *c = &acc->cells[bg->window][span.n & 1];
        if (atomic_load_explicit(&c->n, memory_order_acquire) != (uint64_t)span.n + 1)
            continue; /* nothing used in this window yet */
        uint64_t tokens = atomic_load_explicit(&c->tokens, memory_order_relaxed);
        uint64_t cost = atomic_load_explicit(&c->cost, memory_order_relaxed);
        bool over_tokens = bg->tokens != 0 && tokens >= bg->tokens;
        bool over_cost = bg->cost != 0 && cost >= bg->cost;
        if (!over_tokens && !over_cost)
            continue;
        if (refusal != NULL) {
            char amount[48], reset[32];
            if (over_tokens)
                snprintf(amount, sizeof(amount), "%llu tokens", (unsigned long long)bg->tokens);
            else
                format_money(bg->cost, amount, sizeof(amount));
            sl_clock_format(span.end_ms, false, reset, sizeof(reset));
            refusal->budget = b;
            refusal->resets_unix_s = (uint64_t)(span.end_ms / 1000);
            snprintf(refusal->message, sizeof(refusal->message),
                     "client %s has used its %s budget of %s; it resets at %s", client->name,
                     sl_ledger_window_adjective(bg->window), amount, reset);
        }
        return SL_EPERM;
    }
    return SL_OK;
}
