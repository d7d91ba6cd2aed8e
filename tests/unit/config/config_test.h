/*
 * Scaffolding shared by the config unit tests (tests only): one error list
 * per test, cmocka setup/teardown for it, loading a buffer that must load or
 * must be rejected, and checks on what the user is told. Each test file is
 * its own program, so the helpers are static; they are inline so that a file
 * that needs only some of them compiles without unused-function warnings.
 */
#ifndef SL_TESTS_CONFIG_TEST_H
#define SL_TESTS_CONFIG_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"

/* The problems reported by the last load; owned here, emptied by teardown. */
static struct sl_config_errors errs;

static inline int setup(void **state)
{
    sl_config_errors_init(&errs);
    return 0;
}

static inline int teardown(void **state)
{
    sl_config_errors_dispose(&errs);
    return 0;
}

/* Loads yaml as "t.yaml", which must succeed; the caller unrefs the result. */
static inline struct sl_config *load_ok(const char *yaml)
{
    struct sl_config *c = NULL;
    int err = sl_config_load_buffer("t.yaml", yaml, strlen(yaml), &c, &errs);
    if (err != SL_OK) {
        sl_config_errors_print(&errs, stderr);
        fail_msg("load failed: %s", sl_strerror(err));
    }
    assert_non_null(c);
    return c;
}

/* Loads yaml as "t.yaml", which must be rejected; errs then holds only its problems. */
static inline void load_bad(const char *yaml)
{
    struct sl_config *c = (struct sl_config *)1;
    sl_config_errors_dispose(&errs);
    assert_int_equal(sl_config_load_buffer("t.yaml", yaml, strlen(yaml), &c, &errs), SL_EINVAL);
    assert_null(c);
    assert_true(errs.n > 0);
}

/* Asserts that an error at line:col for path says msg (a substring), in "t.yaml". */
static inline void expect_error(unsigned line, unsigned col, const char *path, const char *msg)
{
    for (size_t i = 0; i < errs.n; i++) {
        const struct sl_config_error *e = &errs.items[i];
        if (e->line == line && e->col == col && strcmp(e->path, path) == 0 &&
            strstr(e->message, msg) != NULL) {
            assert_string_equal(e->file, "t.yaml");
            return;
        }
    }
    sl_config_errors_print(&errs, stderr);
    fail_msg("no error %u:%u %s: ...%s...", line, col, path, msg);
}

/* Asserts that there are exactly n errors. */
static inline void expect_errors(size_t n)
{
    if (errs.n != n) {
        sl_config_errors_print(&errs, stderr);
        fail_msg("%zu errors, want %zu", errs.n, n);
    }
}

#endif
