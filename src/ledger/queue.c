/*
 * The hand-over from workers to the writer: Dmitry Vyukov's bounded MPMC
 * ring (per-cell sequence numbers), used here with many producers and one
 * consumer. A push is one CAS on the shared position plus a copy; it never
 * waits, and a full ring is known at once.
 */
#include "ledger/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sl_ledger_queue_init(struct sl_ledger_queue *q, size_t cap, size_t elem_size)
{
    memset(q, 0, sizeof(*q));
    if (cap == 0 || elem_size == 0 || cap > SIZE_MAX / elem_size)
        return SL_EINVAL;
    /* calloc of the cells maps zero pages: only the cells a burst reaches are touched. */
    q->cells = calloc(cap, elem_size);
    q->seqs = malloc(cap * sizeof(*q->seqs));
    if (q->cells == NULL || q->seqs == NULL) {
        sl_ledger_queue_dispose(q);
        return SL_ENOMEM;
    }
    q->cap = cap;
    q->elem_size = elem_size;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&q->seqs[i], i);
    atomic_init(&q->enq, 0);
    atomic_init(&q->deq, 0);
    return SL_OK;
}

void sl_ledger_queue_dispose(struct sl_ledger_queue *q)
{
    free(q->cells);
    free(q->seqs);
    q->cells = NULL;
    q->seqs = NULL;
}

bool sl_ledger_queue_push(struct sl_ledger_queue *q, const void *elem)
{
    size_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
    size_t i;
    for (;;) {
        i = pos % q->cap;
        size_t seq = atomic_load_explicit(&q->seqs[i], memory_order_acquire);
        intptr_t diff = (intptr_t)seq - (intptr_t)pos;
        if (diff == 0) {
            /* The cell is free for position pos: claim it. */
            if (atomic_compare_exchange_weak_explicit(&q->enq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (diff < 0) {
            /* The cell still holds the element from one lap ago: full. */
            return false;
        } else {
            pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
        }
    }
    memcpy(q->cells + i * q->elem_size, elem, q->elem_size);
    atomic_store_explicit(&q->seqs[i], pos + 1, memory_order_release);
    return true;
}

void *sl_ledger_queue_peek(struct sl_ledger_queue *q)
{
    size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
    size_t i = pos % q->cap;
    if (atomic_load_explicit(&q->seqs[i], memory_order_acquire) != pos + 1)
        return NULL;
    return q->cells + i * q->elem_size;
}

void sl_ledger_queue_release(struct sl_ledger_queue *q)
{
    size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
    /* Hand the cell to the producer of the next lap. */
    atomic_store_explicit(&q->seqs[pos % q->cap], pos + q->cap, memory_order_release);
    atomic_store_explicit(&q->deq, pos + 1, memory_order_relaxed);
}

size_t sl_ledger_queue_length(const struct sl_ledger_queue *q)
{
    size_t deq = atomic_load_explicit(&q->deq, memory_order_relaxed);
    size_t enq = atomic_load_explicit(&q->enq, memory_order_relaxed);
    return enq > deq ? enq - deq : 0;
}
