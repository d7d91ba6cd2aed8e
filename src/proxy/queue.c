/*
 * Calls waiting for a backend. When every backend a call may use is
 * throttled or failing, the call waits (queue.max_length per route and
 * worker, at most queue.max_wait) instead of being answered 429 at once, and
 * goes as soon as a backend reopens: the highest client priority first, then
 * the oldest. One list and one timer per worker, so no locks: the timer fires
 * when the first waiting call may go or must give up.
 */
#include "proxy/internal.h"

#include <string.h>

static uint64_t now_ms(struct sl_proxy_worker *w)
{
    return uv_now(w->wake.loop);
}

/* a goes before b: a higher priority (a lower number). Among equals, the list keeps the
 * order they came in. */
static bool goes_before(const struct sl_proxy_call *a, const struct sl_proxy_call *b)
{
    return a->client->priority < b->client->priority;
}

/* The sluice_queue_waiting gauge follows calls into (delta 1) and out of (-1) the list. */
static void count_waiting(struct sl_proxy_call *c, int delta)
{
    struct sl_metrics *m = c->worker->proxy->metrics;
    if (m)
        sl_metrics_queue_add(m, c->worker->index, c->route->name, delta);
}

/* Put c in w's list after every call that goes before it or as early. */
static void insert_call(struct sl_proxy_worker *w, struct sl_proxy_call *c)
{
    struct sl_proxy_call **pp = &w->waiting, *prev = NULL;
    while (*pp && !goes_before(c, *pp)) {
        prev = *pp;
        pp = &(*pp)->next_waiting;
    }
    c->next_waiting = *pp;
    c->prev_waiting = prev;
    if (*pp)
        (*pp)->prev_waiting = c;
    *pp = c;
    c->queued = true;
    count_waiting(c, 1);
}

static void unlink_call(struct sl_proxy_worker *w, struct sl_proxy_call *c)
{
    if (c->prev_waiting)
        c->prev_waiting->next_waiting = c->next_waiting;
    else
        w->waiting = c->next_waiting;
    if (c->next_waiting)
        c->next_waiting->prev_waiting = c->prev_waiting;
    c->next_waiting = c->prev_waiting = NULL;
    c->queued = false;
    count_waiting(c, -1);
}

static void on_wake(uv_timer_t *t);

/* Sleep until the soonest time a waiting call may go or must give up. */
static void arm(struct sl_proxy_worker *w)
{
    uint64_t soonest = UINT64_MAX, now = now_ms(w);
    for (struct sl_proxy_call *c = w->waiting; c; c = c->next_waiting) {
        soonest = SL_MIN(soonest, c->retry_at);
        soonest = SL_MIN(soonest, c->wait_until);
    }
    if (soonest == UINT64_MAX)
        uv_timer_stop(&w->wake);
    else
        uv_timer_start(&w->wake, on_wake, soonest > now ? soonest - now : 0, 0);
}

static void on_wake(uv_timer_t *t)
{
    struct sl_proxy_worker *w = t->data;
    uint64_t now = now_ms(w);
    /* Detach the list first: a call started here may come back to wait (its backend
     * throttles at once), and must not be tried again in this same pass. */
    struct sl_proxy_call *c = w->waiting, *keep = NULL, **keep_tail = &keep;
    w->waiting = NULL;
    while (c) {
        struct sl_proxy_call *next = c->next_waiting;
        c->next_waiting = c->prev_waiting = NULL;
        c->queued = false;
        count_waiting(c, -1);
        if (c->retry_at <= now) {
            uint64_t retry_at = c->retry_at;
            if (sl_proxy_try_start(c, &retry_at) == SL_OK) {
                c = next;
                continue;
            }
            c->retry_at = retry_at > now ? retry_at : now + 1;
        }
        if (c->wait_until <= now) {
            sl_proxy_give_up(c, c->retry_at);
        } else {
            *keep_tail = c;
            keep_tail = &c->next_waiting;
        }
        c = next;
    }
    /* The kept calls go back in order, behind none of those that came back meanwhile of
     * the same priority (they were waiting first). */
    struct sl_proxy_call *back = w->waiting;
    w->waiting = NULL;
    for (c = keep; c;) {
        struct sl_proxy_call *next = c->next_waiting;
        insert_call(w, c);
        c = next;
    }
    for (c = back; c;) {
        struct sl_proxy_call *next = c->next_waiting;
        count_waiting(c, -1); /* counted when it came back: insert_call counts it again */
        insert_call(w, c);
        c = next;
    }
    arm(w);
}

int sl_proxy_queue_wait(struct sl_proxy_call *call, uint64_t retry_at)
{
    struct sl_proxy_worker *w = call->worker;
    const struct sl_config_queue *q = &call->cfg->queue;
    if (q->max_length == 0 || q->max_wait_ms == 0 || call->pinned != SIZE_MAX || w == NULL)
        return SL_EAGAIN;
    uint64_t now = now_ms(w);
    /* The wait counts from the first time the call waited: an attempt made meanwhile (sent
     * when a backend reopened, throttled again) does not start it over. */
    uint64_t wait_until = call->wait_until ? call->wait_until : now + q->max_wait_ms;
    /* No backend reopens within the wait: the client may as well know now. */
    if (retry_at > wait_until)
        return SL_EAGAIN;
    /* How many of this route wait here, and the one a newcomer would displace: the lowest
     * priority, newest. */
    size_t n = 0;
    struct sl_proxy_call *last = NULL;
    for (struct sl_proxy_call *c = w->waiting; c; c = c->next_waiting) {
        if (c->route != call->route)
            continue;
        n++;
        if (last == NULL || !goes_before(c, last))
            last = c;
    }
    if (n >= q->max_length) {
        if (last == NULL || !goes_before(call, last))
            return SL_EAGAIN;
        unlink_call(w, last);
        sl_proxy_give_up(last, last->retry_at);
    }
    call->retry_at = retry_at > now ? retry_at : now + 1;
    call->wait_until = wait_until;
    /* After the wait, every backend may be tried again, those that failed it before too. */
    memset(call->tried, 0, SL_BALANCE_BITMAP_WORDS(call->cfg->n_backends) * sizeof(uint64_t));
    insert_call(w, call);
    arm(w);
    return SL_OK;
}

void sl_proxy_queue_leave(struct sl_proxy_call *call)
{
    if (!call->queued)
        return;
    unlink_call(call->worker, call);
    arm(call->worker);
}

void sl_proxy_queue_init(struct sl_proxy_worker *w, uv_loop_t *loop)
{
    uv_timer_init(loop, &w->wake);
    w->wake.data = w;
    w->waiting = NULL;
}
