/*
 * The pin table: key bytes → backend, for stateful objects (threads, stored
 * responses, files...) that live on one backend, and for client sessions.
 *
 * 16 shards, each a mutex over a chained hash table whose entries are also on
 * a list in the order they were last set, so that a full shard drops its
 * oldest entry in O(1). Expired entries are dropped when a lookup finds them
 * or when they reach the old end of the list; nothing sweeps in the
 * background. Keys are hashed with SipHash under a random per-process key:
 * they come from clients and upstreams, and must not be able to line up in
 * one chain.
 *
 * Keys longer than SL_BALANCE_PIN_KEY_MAX bytes are stored as their SHA-256
 * digest (flagged, so that a digest never equals a short key): an entry never
 * holds more than that many key bytes, whatever a client sends.
 */
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "balance/internal.h"

struct sl_balance_pin {
    struct sl_balance_pin *chain; /* next in the hash chain */
    struct sl_balance_pin *older; /* towards shard.oldest */
    struct sl_balance_pin *newer; /* towards shard.newest */
    uint64_t hash;
    uint64_t expires; /* monotonic ms */
    size_t backend;
    bool digest; /* key holds the SHA-256 of a longer key */
    size_t key_len;
    unsigned char key[]; /* owned (part of the entry) */
};

/* The shard comes from the hash's top 4 bits (its low bits pick the chain). */
_Static_assert(SL_BALANCE_PIN_SHARDS == 16, "shard index is hash >> 60");

/* ---- SipHash-2-4 ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash(const uint64_t key[2], const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ key[0], v1 = 0x646f72616e646f6dull ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ key[0], v3 = 0x7465646279746573ull ^ key[1];
    size_t end = len - len % 8;
    for (size_t i = 0; i < end; i += 8) {
        uint64_t m = 0;
        for (int k = 7; k >= 0; k--)
            m = (m << 8) | in[i + (size_t)k];
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t k = 0; k < len % 8; k++)
        last |= (uint64_t)in[end + k] << (8 * k);
    v3 ^= last;
    SIPROUND;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- shards ---- */

int sl_balance_pins_init(struct sl_balance *b)
{
    uint64_t max = b->cfg->routing.max_pins;
    b->pins_per_shard = (size_t)((max + SL_BALANCE_PIN_SHARDS - 1) / SL_BALANCE_PIN_SHARDS);
    for (size_t i = 0; i < SL_BALANCE_PIN_SHARDS; i++) {
        struct sl_balance_pin_shard *s = &b->shards[i];
        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->lock, NULL);
    }
    return SL_OK;
}

void sl_balance_pins_dispose(struct sl_balance *b)
{
    for (size_t i = 0; i < SL_BALANCE_PIN_SHARDS; i++) {
        struct sl_balance_pin_shard *s = &b->shards[i];
        struct sl_balance_pin *p = s->oldest;
        while (p) {
            struct sl_balance_pin *next = p->newer;
            free(p);
            p = next;
        }
        free(s->slots);
        pthread_mutex_destroy(&s->lock);
    }
}

/* The key as stored: itself, or its digest in tmp when too long. */
struct stored_key {
    const unsigned char *bytes;
    size_t len;
    bool digest;
};
static struct stored_key stored_key(struct sl_str key, unsigned char tmp[SHA256_DIGEST_LENGTH])
{
    struct stored_key k = {(const unsigned char *)(key.len ? key.base : ""), key.len, false};
    if (key.len > SL_BALANCE_PIN_KEY_MAX) {
        SHA256(k.bytes, key.len, tmp);
        k.bytes = tmp;
        k.len = SHA256_DIGEST_LENGTH;
        k.digest = true;
    }
    return k;
}

static struct sl_balance_pin **find_slot(struct sl_balance_pin_shard *s, uint64_t hash,
                                         const struct stored_key *k)
{
    struct sl_balance_pin **pp = &s->slots[hash & (s->n_slots - 1)];
    for (; *pp; pp = &(*pp)->chain) {
        struct sl_balance_pin *p = *pp;
        if (p->hash == hash && p->digest == k->digest && p->key_len == k->len &&
            memcmp(p->key, k->bytes, k->len) == 0)
            break;
    }
    return pp;
}

static void list_unlink(struct sl_balance_pin_shard *s, struct sl_balance_pin *p)
{
    if (p->older)
        p->older->newer = p->newer;
    else
        s->oldest = p->newer;
    if (p->newer)
        p->newer->older = p->older;
    else
        s->newest = p->older;
    p->older = p->newer = NULL;
}

static void list_push_newest(struct sl_balance_pin_shard *s, struct sl_balance_pin *p)
{
    p->older = s->newest;
    p->newer = NULL;
    if (s->newest)
        s->newest->newer = p;
    else
        s->oldest = p;
    s->newest = p;
}

/* Unlink p, whose chain link is *pp, and free it. */
static void drop(struct sl_balance_pin_shard *s, struct sl_balance_pin **pp)
{
    struct sl_balance_pin *p = *pp;
    *pp = p->chain;
    list_unlink(s, p);
    s->n--;
    free(p);
}

static void drop_entry(struct sl_balance_pin_shard *s, struct sl_balance_pin *p)
{
    struct sl_balance_pin **pp = &s->slots[p->hash & (s->n_slots - 1)];
    while (*pp != p)
        pp = &(*pp)->chain;
    drop(s, pp);
}

/* Keep chains short: double the slots when the entries outnumber them. Out of
 * memory leaves the table as it is (longer chains, still correct). */
static void maybe_grow(struct sl_balance_pin_shard *s)
{
    if (s->n_slots && s->n < s->n_slots)
        return;
    size_t n_slots = s->n_slots ? s->n_slots * 2 : 16;
    struct sl_balance_pin **slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return;
    for (struct sl_balance_pin *p = s->oldest; p; p = p->newer) {
        struct sl_balance_pin **head = &slots[p->hash & (n_slots - 1)];
        p->chain = *head;
        *head = p;
    }
    free(s->slots);
    s->slots = slots;
    s->n_slots = n_slots;
}

size_t sl_balance_pin_shard(const struct sl_balance *b, struct sl_str key)
{
    unsigned char tmp[SHA256_DIGEST_LENGTH];
    struct stored_key k = stored_key(key, tmp);
    return (size_t)(siphash(b->hash_key, k.bytes, k.len) >> 60);
}

void sl_balance_pin(struct sl_balance *b, struct sl_str key, size_t backend, uint64_t ttl_ms,
                    uint64_t now_ms)
{
    unsigned char tmp[SHA256_DIGEST_LENGTH];
    struct stored_key k = stored_key(key, tmp);
    uint64_t hash = siphash(b->hash_key, k.bytes, k.len);
    struct sl_balance_pin_shard *s = &b->shards[hash >> 60];
    uint64_t expires = now_ms + ttl_ms < now_ms ? UINT64_MAX : now_ms + ttl_ms;

    if (b->pins_per_shard == 0)
        return;
    pthread_mutex_lock(&s->lock);
    maybe_grow(s);
    if (s->n_slots == 0)
        goto done;
    struct sl_balance_pin **pp = find_slot(s, hash, &k);
    struct sl_balance_pin *p = *pp;
    if (p) {
        p->backend = backend;
        p->expires = expires;
        list_unlink(s, p);
        list_push_newest(s, p);
        goto done;
    }
    /* Make room: first whatever has expired at the old end, then the oldest. */
    while (s->oldest && s->oldest->expires <= now_ms)
        drop_entry(s, s->oldest);
    while (s->n >= b->pins_per_shard && s->oldest)
        drop_entry(s, s->oldest);
    p = malloc(sizeof(*p) + k.len);
    if (p == NULL)
        goto done; /* unpinned: the request still works, a later one may land elsewhere */
    memset(p, 0, sizeof(*p));
    p->hash = hash;
    p->expires = expires;
    p->backend = backend;
    p->digest = k.digest;
    p->key_len = k.len;
    memcpy(p->key, k.bytes, k.len);
    pp = &s->slots[hash & (s->n_slots - 1)];
    p->chain = *pp;
    *pp = p;
    list_push_newest(s, p);
    s->n++;
done:
    pthread_mutex_unlock(&s->lock);
}

int sl_balance_pinned(struct sl_balance *b, struct sl_str key, uint64_t now_ms, size_t *backend)
{
    unsigned char tmp[SHA256_DIGEST_LENGTH];
    struct stored_key k = stored_key(key, tmp);
    uint64_t hash = siphash(b->hash_key, k.bytes, k.len);
    struct sl_balance_pin_shard *s = &b->shards[hash >> 60];
    int err = SL_ENOTFOUND;

    pthread_mutex_lock(&s->lock);
    if (s->n_slots == 0)
        goto done;
    struct sl_balance_pin **pp = find_slot(s, hash, &k);
    if (*pp == NULL)
        goto done;
    if ((*pp)->expires <= now_ms) {
        drop(s, pp);
        goto done;
    }
    *backend = (*pp)->backend;
    err = SL_OK;
done:
    pthread_mutex_unlock(&s->lock);
    return err;
}

/* The backend of the same name in b's configuration, or SIZE_MAX. */
static size_t same_backend(const struct sl_balance *b, const struct sl_balance *old, size_t i)
{
    const char *name = old->cfg->backends[i].name;
    for (size_t j = 0; j < b->cfg->n_backends; j++)
        if (strcmp(b->cfg->backends[j].name, name) == 0)
            return j;
    return SIZE_MAX;
}

void sl_balance_pins_adopt(struct sl_balance *b, struct sl_balance *old)
{
    /* The entries move as they are, hashes included: b takes old's hash key (b is not in use
     * yet), and each entry's backend is renumbered by name; those whose backend is gone are
     * dropped. */
    b->hash_key[0] = old->hash_key[0];
    b->hash_key[1] = old->hash_key[1];
    for (size_t i = 0; i < SL_BALANCE_PIN_SHARDS; i++) {
        struct sl_balance_pin_shard *from = &old->shards[i], *to = &b->shards[i];
        pthread_mutex_lock(&from->lock);
        pthread_mutex_lock(&to->lock);
        struct sl_balance_pin_shard moved = *from;
        from->slots = NULL;
        from->n_slots = from->n = 0;
        from->oldest = from->newest = NULL;
        free(to->slots);
        to->slots = moved.slots;
        to->n_slots = moved.n_slots;
        to->n = moved.n;
        to->oldest = moved.oldest;
        to->newest = moved.newest;
        for (struct sl_balance_pin *p = to->oldest, *next; p; p = next) {
            next = p->newer;
            p->backend = same_backend(b, old, p->backend);
            if (p->backend == SIZE_MAX)
                drop_entry(to, p);
        }
        while (to->n > b->pins_per_shard && to->oldest)
            drop_entry(to, to->oldest);
        pthread_mutex_unlock(&to->lock);
        pthread_mutex_unlock(&from->lock);
    }
}
