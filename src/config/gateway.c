/*
 * The gateway's tables at run time: finding the route a request names and
 * the client a key belongs to, on a loaded (immutable) configuration, so
 * from any thread without a lock. Client keys are kept as SHA-256 hashes:
 * a request's key is hashed and compared with them.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "config/config.h"

_Static_assert(SL_CONFIG_HASHED_KEY_SIZE == 72, "\"sha256:\" + 64 hex digits + NUL");

void sl_config_hash_key(struct sl_str key, char out[72])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(key.len ? key.base : ""), key.len, digest);
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < sizeof(digest); i++) {
        out[7 + 2 * i] = hex[digest[i] >> 4];
        out[7 + 2 * i + 1] = hex[digest[i] & 15];
    }
    out[71] = '\0';
    OPENSSL_cleanse(digest, sizeof(digest));
}

/* strcmp order between a view and a NUL-terminated name without NULs. */
static int compare_name(struct sl_str s, const char *name)
{
    size_t n = strlen(name);
    int d = memcmp(s.base, name, SL_MIN(s.len, n));
    if (d)
        return d;
    return s.len < n ? -1 : s.len > n;
}

const struct sl_config_route *sl_config_find_route(const struct sl_config *c, struct sl_str name)
{
    if (c == NULL || c->route_order == NULL || name.base == NULL)
        return NULL;
    size_t lo = 0, hi = c->n_routes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct sl_config_route *r = &c->routes[c->route_order[mid]];
        int d = compare_name(name, r->name);
        if (d == 0)
            return r;
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct sl_config_client *sl_config_find_client(const struct sl_config *c, struct sl_str key)
{
    const struct sl_config_client *found = NULL;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    if (c == NULL || key.len == 0 || key.base == NULL)
        return NULL;
    SHA256((const unsigned char *)key.base, key.len, digest);
    for (size_t i = 0; i < c->n_clients; i++) {
        const struct sl_config_client *cl = &c->clients[i];
        for (size_t k = 0; cl->key_hashes && k < cl->n_keys; k++) {
            /* No early exit: every hash is compared, whichever matches. */
            int differs = CRYPTO_memcmp(digest, cl->key_hashes[k], sizeof(digest));
            if (differs == 0 && found == NULL)
                found = cl;
        }
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return found;
}

static bool same_addrs(const struct sl_config_addr *a, size_t na, const struct sl_config_addr *b,
                       size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].port != b[i].port || strcmp(a[i].host, b[i].host) != 0)
            return false;
    return true;
}

bool sl_config_same_listeners(const struct sl_config *a, const struct sl_config *b)
{
    if (!same_addrs(a->listen, a->n_listen, b->listen, b->n_listen) ||
        !same_addrs(&a->admin_listen, 1, &b->admin_listen, 1) || a->workers != b->workers ||
        memcmp(&a->limits, &b->limits, sizeof(a->limits)) != 0 ||
        a->simulator.n_endpoints != b->simulator.n_endpoints)
        return false;
    if ((a->usage.db == NULL) != (b->usage.db == NULL) ||
        (a->usage.db && strcmp(a->usage.db, b->usage.db) != 0))
        return false;
    for (size_t i = 0; i < a->simulator.n_endpoints; i++)
        if (!same_addrs(&a->simulator.endpoints[i].listen, 1, &b->simulator.endpoints[i].listen, 1))
            return false;
    return true;
}
