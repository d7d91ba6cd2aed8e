/*
 * ${NAME} interpolation in scalar values, so that secrets can stay out of
 * the file. `$${` stands for a literal `${`; any other `$` is literal.
 */
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "config/schema.h"

static bool name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

int sl_cfg_interpolate(struct sl_cfg_load *ld, const struct sl_cfg_node *n, struct sl_buf *out)
{
    const char *s = n->text;
    size_t len = n->len, run = 0, i = 0;
    bool bad = false;
    int err;
    char name[256];

    out->len = 0;
    if ((err = sl_buf_reserve(out, len)) != 0)
        goto fail;
    out->base[0] = '\0';
    while (i < len) {
        if (s[i] != '$') {
            i++;
            continue;
        }
        if (i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
            /* "$${" -> "${": keep the text up to and including the first '$'. */
            if ((err = sl_buf_append(out, s + run, i + 1 - run)) != 0)
                goto fail;
            i += 2;
            run = i;
            continue;
        }
        if (i + 1 >= len || s[i + 1] != '{') {
            i++;
            continue;
        }
        if ((err = sl_buf_append(out, s + run, i - run)) != 0)
            goto fail;
        size_t start = i + 2, end = start;
        while (end < len && name_char(s[end]))
            end++;
        if (end == start || !name_start(s[start]) || end >= len || s[end] != '}' ||
            end - start >= sizeof(name)) {
            sl_cfg_report(ld, n->line, n->col,
                          "malformed \"${\": expected ${NAME} with NAME made of letters, digits "
                          "and _ (not starting with a digit); write $${ for a literal ${");
            bad = true;
            /* Skip past "${" and go on looking for more problems. */
            i = start;
            run = i;
            continue;
        }
        memcpy(name, s + start, end - start);
        name[end - start] = '\0';
        const char *value = getenv(name);
        if (value == NULL) {
            sl_cfg_report(ld, n->line, n->col, "environment variable %s is not set", name);
            bad = true;
        } else if ((err = sl_buf_append(out, value, strlen(value))) != 0) {
            goto fail;
        }
        i = end + 1;
        run = i;
    }
    if ((err = sl_buf_append(out, s + run, len - run)) != 0)
        goto fail;
    return bad ? SL_EINVAL : SL_OK;
fail:
    ld->err = err;
    return err;
}
