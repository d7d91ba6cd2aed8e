/*
 * Loading a configuration in a unit test (tests only): the YAML must load;
 * otherwise the test fails with every problem printed. Static inline: each
 * test file is its own program.
 */
#ifndef SL_TESTS_LOAD_TEST_H
#define SL_TESTS_LOAD_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"

/* The configuration of yaml (len bytes), loaded as "t.yaml"; the caller unrefs it. */
static inline struct sl_config *unit_load_config(const char *yaml, size_t len)
{
    struct sl_config *c = NULL;
    struct sl_config_errors errs;
    sl_config_errors_init(&errs);
    int err = sl_config_load_buffer("t.yaml", yaml, len, &c, &errs);
    if (err != SL_OK) {
        fprintf(stderr, "%.*s", (int)len, yaml);
        sl_config_errors_print(&errs, stderr);
        sl_config_errors_dispose(&errs);
        fail_msg("load failed: %s", sl_strerror(err));
    }
    sl_config_errors_dispose(&errs);
    return c;
}

#endif
