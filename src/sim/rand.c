/*
 * Hashing and pseudo-random numbers for the simulator. Generated content
 * must be the same for the same request on every run and every platform, so
 * everything here is fixed-width integer arithmetic (splitmix64 and a
 * multiply-xorshift hash), never rand() or the platform's hash.
 */
#include "sim/internal.h"

#include <string.h>

uint64_t sl_sim_mix(uint64_t a, uint64_t b)
{
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15u + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t sl_sim_hash(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = sl_sim_mix(seed, len);
    /* Eight bytes at a time: prompts can be megabytes. */
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9fb21c651e98df25u;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < len; i++)
        tail |= (uint64_t)p[i] << (8 * i);
    return sl_sim_mix(h, tail);
}

uint64_t sl_sim_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t sl_sim_rand_below(uint64_t *state, uint64_t n)
{
    /* The modulo bias is at most n / 2^64: irrelevant for sizes used here. */
    return sl_sim_rand(state) % n;
}

uint64_t sl_sim_random_seed(void)
{
    char hex[SL_REQUEST_ID_LEN + 1];
    sl_request_id_new(hex);
    return sl_sim_hash(0, hex, SL_REQUEST_ID_LEN);
}

void sl_sim_id_new(char *out, const char *prefix, size_t n, bool hex)
{
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static const char hexd[] = "0123456789abcdef";
    size_t plen = strlen(prefix);
    memcpy(out, prefix, plen);
    uint64_t state = sl_sim_random_seed(), r = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            r = sl_sim_rand(&state);
        out[plen + i] = hex ? hexd[r & 15] : alnum[(r & 0xff) % 62];
        r >>= 8;
    }
    out[plen + n] = '\0';
}

void sl_sim_uuid_new(char *out)
{
    char hex[SL_REQUEST_ID_LEN + 1];
    sl_request_id_new(hex);
    hex[12] = '4'; /* version 4, RFC 4122 variant */
    hex[16] = "89ab"[(hex[16] - '0') & 3];
    size_t o = 0;
    for (size_t i = 0; i < SL_REQUEST_ID_LEN; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[o++] = '-';
        out[o++] = hex[i];
    }
    out[o] = '\0';
}
