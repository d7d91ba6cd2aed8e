/*
 * Objects an endpoint created and can be asked for again: responses (for
 * retrieval and previous_response_id), threads, assistants. Ids are only
 * known to the endpoint that made them, which is what lets tests check that
 * a gateway pins stateful calls. Bounded: a ring of SL_SIM_STORE_CAP entries
 * per endpoint, the oldest forgotten first, with a chained hash index.
 */
#include "sim/internal.h"

#include <stdlib.h>
#include <string.h>

#define STORE_BUCKETS 8192 /* power of two, twice the capacity */
#define STORE_ID_MAX 72

/* One stored object. Owns body. */
struct sl_sim_store_entry {
    struct sl_sim_store_entry *next; /* hash chain */
    enum sl_sim_object kind;
    bool used;
    char id[STORE_ID_MAX];
    size_t id_len;
    char *body;
    size_t body_len;
    uint64_t tokens;
};

int sl_sim_store_init(struct sl_sim_store *s)
{
    memset(s, 0, sizeof(*s));
    return uv_mutex_init(&s->lock) == 0 ? SL_OK : SL_ENOMEM;
}

static void free_entries(struct sl_sim_store *s)
{
    if (s->entries)
        for (size_t i = 0; i < SL_SIM_STORE_CAP; i++)
            free(s->entries[i].body);
    free(s->entries);
    free(s->buckets);
    s->entries = NULL;
    s->buckets = NULL;
    s->next = 0;
}

void sl_sim_store_dispose(struct sl_sim_store *s)
{
    free_entries(s);
    uv_mutex_destroy(&s->lock);
}

void sl_sim_store_clear(struct sl_sim_store *s)
{
    uv_mutex_lock(&s->lock);
    free_entries(s);
    uv_mutex_unlock(&s->lock);
}

static struct sl_sim_store_entry **bucket_of(struct sl_sim_store *s, struct sl_str id)
{
    return &s->buckets[sl_sim_hash_str(0, id) & (STORE_BUCKETS - 1)];
}

/* The link pointing at the entry for id, or NULL. Lock held. */
static struct sl_sim_store_entry **find(struct sl_sim_store *s, enum sl_sim_object kind,
                                        struct sl_str id)
{
    if (s->buckets == NULL || id.len >= STORE_ID_MAX)
        return NULL;
    for (struct sl_sim_store_entry **l = bucket_of(s, id); *l; l = &(*l)->next)
        if ((*l)->kind == kind && sl_str_eq((struct sl_str){(*l)->id, (*l)->id_len}, id))
            return l;
    return NULL;
}

static void unlink_entry(struct sl_sim_store *s, struct sl_sim_store_entry *e)
{
    for (struct sl_sim_store_entry **l = bucket_of(s, (struct sl_str){e->id, e->id_len}); *l;
         l = &(*l)->next) {
        if (*l == e) {
            *l = e->next;
            break;
        }
    }
    e->used = false;
}

int sl_sim_store_put(struct sl_sim_store *s, enum sl_sim_object kind, struct sl_str id,
                     struct sl_str body, uint64_t tokens)
{
    if (id.len >= STORE_ID_MAX)
        return SL_EINVAL;
    /* The copy is made outside the lock; the lock only links it in. */
    char *copy = malloc(body.len + 1);
    char *old = NULL;
    int err = SL_ENOMEM;
    if (copy == NULL)
        return SL_ENOMEM;
    memcpy(copy, body.base, body.len);
    copy[body.len] = '\0';
    uv_mutex_lock(&s->lock);
    if (s->entries == NULL) {
        s->entries = calloc(SL_SIM_STORE_CAP, sizeof(*s->entries));
        s->buckets = calloc(STORE_BUCKETS, sizeof(*s->buckets));
        if (s->entries == NULL || s->buckets == NULL) {
            free_entries(s);
            goto fail;
        }
    }
    struct sl_sim_store_entry *e = &s->entries[s->next];
    s->next = (s->next + 1) % SL_SIM_STORE_CAP;
    if (e->used)
        unlink_entry(s, e);
    old = e->body;
    e->kind = kind;
    e->used = true;
    memcpy(e->id, id.base, id.len);
    e->id_len = id.len;
    e->body = copy;
    e->body_len = body.len;
    e->tokens = tokens;
    struct sl_sim_store_entry **b = bucket_of(s, id);
    e->next = *b;
    *b = e;
    copy = NULL;
    err = SL_OK;
fail:
    uv_mutex_unlock(&s->lock);
    free(old);
    free(copy);
    return err;
}

int sl_sim_store_get(struct sl_sim_store *s, enum sl_sim_object kind, struct sl_str id,
                     struct sl_arena *arena, struct sl_str *body, uint64_t *tokens)
{
    int err = SL_ENOTFOUND;
    uv_mutex_lock(&s->lock);
    struct sl_sim_store_entry **l = find(s, kind, id);
    if (l) {
        struct sl_sim_store_entry *e = *l;
        err = SL_OK;
        if (body) {
            char *c = sl_arena_strdup(arena, (struct sl_str){e->body, e->body_len});
            if (c == NULL)
                err = SL_ENOMEM;
            else
                *body = (struct sl_str){c, e->body_len};
        }
        if (tokens)
            *tokens = e->tokens;
    }
    uv_mutex_unlock(&s->lock);
    return err;
}

int sl_sim_store_delete(struct sl_sim_store *s, enum sl_sim_object kind, struct sl_str id)
{
    char *body = NULL;
    int err = SL_ENOTFOUND;
    uv_mutex_lock(&s->lock);
    struct sl_sim_store_entry **l = find(s, kind, id);
    if (l) {
        struct sl_sim_store_entry *e = *l;
        *l = e->next;
        e->used = false;
        body = e->body;
        e->body = NULL;
        err = SL_OK;
    }
    uv_mutex_unlock(&s->lock);
    free(body);
    return err;
}
