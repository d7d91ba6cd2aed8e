#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sl_buf_init(struct sl_buf *b)
{
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

void sl_buf_dispose(struct sl_buf *b)
{
    free(b->base);
    sl_buf_init(b);
}

int sl_buf_reserve(struct sl_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return SL_ETOOBIG;
    size_t need = b->len + extra + 1; /* room for a terminating NUL */
    if (need <= b->cap)
        return SL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->base, cap);
    if (p == NULL)
        return SL_ENOMEM;
    b->base = p;
    b->cap = cap;
    return SL_OK;
}

int sl_buf_shrink(struct sl_buf *b, size_t extra)
{
    if (b->base == NULL || extra > SIZE_MAX - b->len - 1)
        return SL_OK;
    size_t cap = b->len + extra + 1;
    if (cap >= b->cap)
        return SL_OK;
    char *p = realloc(b->base, cap);
    if (p == NULL)
        return SL_ENOMEM;
    b->base = p;
    b->cap = cap;
    return SL_OK;
}

int sl_buf_append(struct sl_buf *b, const void *data, size_t len)
{
    int err = sl_buf_reserve(b, len);
    if (err)
        return err;
    if (len)
        memcpy(b->base + b->len, data, len);
    b->len += len;
    b->base[b->len] = '\0';
    return SL_OK;
}

int sl_buf_append_str(struct sl_buf *b, struct sl_str s)
{
    return sl_buf_append(b, s.base, s.len);
}

int sl_buf_vappendf(struct sl_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int err = sl_buf_reserve(b, 64);
    if (err)
        goto fail;
    int n = vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
    if (n < 0) {
        err = SL_EINVAL;
        goto fail;
    }
    if ((size_t)n >= b->cap - b->len) {
        if ((err = sl_buf_reserve(b, (size_t)n)) != 0)
            goto fail;
        vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap2);
    }
    b->len += (size_t)n;
    va_end(ap2);
    return SL_OK;
fail:
    va_end(ap2);
    return err;
}

int sl_buf_appendf(struct sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int err = sl_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return err;
}

int sl_buf_append_json_escaped(struct sl_buf *b, struct sl_str s)
{
    static const char hex[] = "0123456789abcdef";
    int err = sl_buf_reserve(b, s.len);
    if (err)
        return err;
    size_t run = 0; /* start of the pending run of bytes needing no escape */
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if ((err = sl_buf_append(b, s.base + run, i - run)) != 0)
            return err;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if ((err = sl_buf_append(b, esc, n)) != 0)
            return err;
        run = i + 1;
    }
    return sl_buf_append(b, s.base + run, s.len - run);
}

void sl_buf_consume(struct sl_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->base, b->base + n, b->len - n);
        b->len -= n;
    }
    if (b->base)
        b->base[b->len] = '\0';
}

int sl_buf_append_u64(struct sl_buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return sl_buf_append(b, tmp + sizeof(tmp) - n, n);
}
