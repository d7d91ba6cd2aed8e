/*
 * Scaffolding shared by the metrics unit tests (tests only): records made
 * to order and a look-up of one sample's value in rendered text. Each test
 * file is its own program, so the helpers are static inline.
 */
#ifndef SL_TESTS_METRICS_TEST_H
#define SL_TESTS_METRICS_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/internal.h"

/* A finished call of client on route via backend (model gpt-4o). */
static inline struct sl_ledger_record record(const char *client, const char *route,
                                             const char *backend, int status)
{
    struct sl_ledger_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.client, sizeof(r.client), "%s", client);
    snprintf(r.route, sizeof(r.route), "%s", route);
    snprintf(r.backend, sizeof(r.backend), "%s", backend);
    snprintf(r.model, sizeof(r.model), "gpt-4o");
    r.status = status;
    r.attempts = 1;
    r.latency_ms = 50;
    return r;
}

/* The registry's text; the caller frees it. */
static inline char *render(struct sl_metrics *m)
{
    struct sl_buf b;
    sl_buf_init(&b);
    assert_int_equal(sl_metrics_render(m, &b), SL_OK);
    assert_non_null(b.base);
    return b.base;
}

/* The value of the sample whose `name{labels}` is exactly series; fails the test when absent
 * (or present twice). */
static inline const char *sample(const char *text, const char *series)
{
    static char value[64];
    size_t n = strlen(series);
    const char *found = NULL;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n && strncmp(line, series, n) == 0 && line[n] == ' ') {
            if (found)
                fail_msg("sample %s appears twice", series);
            found = line + n + 1;
            snprintf(value, sizeof(value), "%.*s", (int)(len - n - 1), found);
        }
        line = end ? end + 1 : line + len;
    }
    if (found == NULL)
        fail_msg("no sample %s in:\n%s", series, text);
    return value;
}

/* True when a line starts with prefix. */
static inline bool has_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = text; *line;) {
        if (strncmp(line, prefix, n) == 0)
            return true;
        const char *end = strchr(line, '\n');
        if (end == NULL)
            break;
        line = end + 1;
    }
    return false;
}

#endif
