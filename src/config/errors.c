/* The list of problems a load found, and the helpers that word them. */
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "config/schema.h"

void sl_config_errors_init(struct sl_config_errors *e)
{
    e->items = NULL;
    e->n = 0;
    e->cap = 0;
}

void sl_config_errors_dispose(struct sl_config_errors *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->items[i].file);
        free(e->items[i].path);
        free(e->items[i].message);
    }
    free(e->items);
    sl_config_errors_init(e);
}

void sl_config_errors_print(const struct sl_config_errors *e, FILE *out)
{
    for (size_t i = 0; i < e->n; i++) {
        const struct sl_config_error *it = &e->items[i];
        fputs(it->file ? it->file : "<config>", out);
        if (it->line)
            fprintf(out, ":%u:%u", it->line, it->col);
        fputs(": ", out);
        if (it->path && it->path[0])
            fprintf(out, "%s: ", it->path);
        fprintf(out, "%s\n", it->message ? it->message : "");
    }
}

static char *dup_bytes(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Appends one error taking ownership of message (a malloc'd string). */
static int errors_add(struct sl_config_errors *e, const char *file, unsigned line, unsigned col,
                      struct sl_str path, char *message)
{
    int err = SL_ENOMEM;
    struct sl_config_error it = {.line = line, .col = col, .message = message};
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        struct sl_config_error *items = realloc(e->items, cap * sizeof(*items));
        if (items == NULL)
            goto fail;
        e->items = items;
        e->cap = cap;
    }
    it.file = dup_bytes(file, strlen(file));
    it.path = dup_bytes(path.base ? path.base : "", path.len);
    if (it.file == NULL || it.path == NULL)
        goto fail;
    e->items[e->n++] = it;
    return SL_OK;
fail:
    free(it.file);
    free(it.path);
    free(message);
    return err;
}

void sl_cfg_vreport(struct sl_cfg_load *ld, unsigned line, unsigned col, const char *fmt,
                    va_list ap)
{
    struct sl_buf msg;
    sl_buf_init(&msg);
    ld->n_problems++;
    if (ld->n_problems > SL_CFG_MAX_ERRORS + 1)
        return;
    int err = ld->n_problems > SL_CFG_MAX_ERRORS
                  ? sl_buf_appendf(&msg, "too many problems; only the first %d are shown",
                                   SL_CFG_MAX_ERRORS)
                  : sl_buf_vappendf(&msg, fmt, ap);
    if (err)
        goto fail;
    struct sl_str path = {ld->path.base, ld->path.len};
    if (ld->n_problems > SL_CFG_MAX_ERRORS) {
        line = col = 0;
        path = SL_STR_NULL;
    }
    /* errors_add owns msg.base from here, freed even on failure. */
    err = errors_add(ld->errs, ld->file, line, col, path, msg.base);
    if (err)
        ld->err = err;
    return;
fail:
    sl_buf_dispose(&msg);
    ld->err = err;
}

void sl_cfg_report(struct sl_cfg_load *ld, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_cfg_vreport(ld, line, col, fmt, ap);
    va_end(ap);
}

int sl_cfg_quote(struct sl_buf *out, struct sl_str s)
{
    const size_t max = 64;
    bool cut = s.len > max;
    if (cut) {
        s.len = max;
        /* Do not end inside a UTF-8 sequence. */
        while (s.len > 0 && ((unsigned char)s.base[s.len] & 0xC0) == 0x80)
            s.len--;
    }
    int err = sl_buf_append(out, "\"", 1);
    if (err == SL_OK)
        err = sl_buf_append_json_escaped(out, s);
    if (err == SL_OK)
        err = cut ? sl_buf_append(out, "...\"", 4) : sl_buf_append(out, "\"", 1);
    return err;
}

static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Levenshtein distance ignoring ASCII case, giving up (returning limit + 1)
 * once it must exceed limit; words are short keys, so one row on the stack. */
static size_t distance(struct sl_str a, const char *b, size_t limit)
{
    size_t blen = strlen(b);
    size_t row[65];
    if (blen >= SL_ARRAY_LEN(row) || a.len > blen + limit || blen > a.len + limit)
        return limit + 1;
    for (size_t j = 0; j <= blen; j++)
        row[j] = j;
    for (size_t i = 1; i <= a.len; i++) {
        size_t diag = row[0], best;
        row[0] = best = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t up = row[j];
            size_t cost = fold((unsigned char)a.base[i - 1]) != fold((unsigned char)b[j - 1]);
            size_t v = SL_MIN(SL_MIN(up + 1, row[j - 1] + 1), diag + cost);
            row[j] = v;
            diag = up;
            best = SL_MIN(best, v);
        }
        if (best > limit)
            return limit + 1;
    }
    return row[blen];
}

const char *sl_cfg_suggest(struct sl_str word, const char *const *candidates, size_t n)
{
    /* Two edits catch most typos; short words allow one, or everything
     * would look like everything else. */
    size_t limit = word.len <= 3 ? 1 : 2;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = distance(word, candidates[i], limit);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}
