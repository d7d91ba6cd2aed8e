/*
 * struct sl_config snapshots: loading one from a file, a buffer or nothing,
 * and sharing it by reference count. A snapshot is never changed after
 * loading, so readers on any thread need no lock; the last unref frees it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "config/schema.h"

static void config_free(struct sl_config *c)
{
    if (c == NULL)
        return;
    sl_cfg_dispose_fields(&sl_config_schema, c);
    free(c->source);
    free(c);
}

int sl_config_load_buffer(const char *name, const char *data, size_t len, struct sl_config **out,
                          struct sl_config_errors *errs)
{
    int err = SL_ENOMEM;
    size_t name_len = strlen(name);
    struct sl_config *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (c == NULL || (c->source = malloc(name_len + 1)) == NULL)
        goto fail;
    memcpy(c->source, name, name_len + 1);
    if ((err = sl_cfg_load_schema(&sl_config_schema, name, data, len, c, errs)) != SL_OK)
        goto fail;
    atomic_init(&c->refs, 1);
    *out = c;
    return SL_OK;
fail:
    config_free(c);
    return err;
}

/* Reports a problem with the file as a whole (no line) into errs. */
static void report_file(const char *path, struct sl_config_errors *errs, const char *fmt,
                        const char *detail)
{
    struct sl_cfg_load ld = {.file = path, .errs = errs};
    sl_buf_init(&ld.path);
    sl_cfg_report(&ld, 0, 0, fmt, detail);
    sl_buf_dispose(&ld.path);
}

int sl_config_load_file(const char *path, struct sl_config **out, struct sl_config_errors *errs)
{
    struct sl_buf data;
    int err = SL_EIO;
    FILE *f = fopen(path, "rb");
    sl_buf_init(&data);
    *out = NULL;
    if (f == NULL) {
        report_file(path, errs, "cannot open the file: %s", strerror(errno));
        goto fail;
    }
    /* Read at most one byte past the limit: enough to say it is too big. */
    while (data.len <= SL_CFG_MAX_FILE_BYTES) {
        if ((err = sl_buf_reserve(&data, 65536)) != SL_OK)
            goto fail;
        size_t want = SL_MIN(data.cap - data.len - 1, SL_CFG_MAX_FILE_BYTES + 1 - data.len);
        size_t got = fread(data.base + data.len, 1, want, f);
        data.len += got;
        if (got < want)
            break;
    }
    if (ferror(f)) {
        report_file(path, errs, "cannot read the file: %s", strerror(errno));
        err = SL_EIO;
        goto fail;
    }
    err = sl_config_load_buffer(path, data.base ? data.base : "", data.len, out, errs);
fail:
    if (f)
        fclose(f);
    sl_buf_dispose(&data);
    return err;
}

struct sl_config *sl_config_ref(struct sl_config *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void sl_config_unref(struct sl_config *c)
{
    /* acq_rel: the freeing thread must see every other holder's last reads done. */
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}
