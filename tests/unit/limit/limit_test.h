/*
 * Scaffolding shared by the limit unit tests (tests only): a real
 * configuration loaded from YAML and its limiter, and shorthands for
 * admitting. Each test file is its own program, so the helpers are static
 * inline.
 */
#ifndef SL_TESTS_LIMIT_TEST_H
#define SL_TESTS_LIMIT_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../load_test.h"

#include "limit/internal.h"

/* Two routes; clients follow, each starting with CLIENT_A.. (its name and a key of its own:
 * any well-formed hash will do, the limiter never sees keys), then its limits and "}". */
#define LIMIT_BASE                                                                                 \
    "backends:\n"                                                                                  \
    "  - {name: b1, url: 'http://h1', model: gpt-4o}\n"                                            \
    "routes:\n"                                                                                    \
    "  - {name: big, backend: b1}\n"                                                               \
    "  - {name: mini, backend: b1}\n"                                                              \
    "clients:\n"
#define CLIENT_A "  - {name: a, keys: ['sha256:aa" ZEROS "']"
#define CLIENT_B "  - {name: b, keys: ['sha256:bb" ZEROS "']"
#define ZEROS "00000000000000000000000000000000000000000000000000000000000000"

/* One loaded configuration and its limiter; owned by the test. */
struct fixture {
    struct sl_config *cfg;
    struct sl_limiter *l;
};

static inline void fixture_load(struct fixture *f, const char *yaml)
{
    f->cfg = unit_load_config(yaml, strlen(yaml));
    assert_int_equal(sl_limiter_new(f->cfg, &f->l), SL_OK);
}

static inline void fixture_free(struct fixture *f)
{
    sl_limiter_free(f->l);
    sl_config_unref(f->cfg);
}

/* Admit, which must succeed; the ticket. */
static inline struct sl_limit_ticket admit_ok(struct fixture *f, size_t client, size_t route,
                                              uint64_t tokens, uint64_t now,
                                              struct sl_limit_status *st)
{
    struct sl_limit_ticket t;
    struct sl_limit_status local;
    int err = sl_limiter_admit(f->l, client, route, tokens, now, &t, st ? st : &local);
    if (err != SL_OK)
        fail_msg("refused at %llu: %s", (unsigned long long)now, (st ? st : &local)->which);
    return t;
}

/* Admit, which must be refused by `which`; the status. */
static inline struct sl_limit_status admit_refused(struct fixture *f, size_t client, size_t route,
                                                   uint64_t tokens, uint64_t now, const char *which)
{
    struct sl_limit_ticket t;
    struct sl_limit_status st;
    assert_int_equal(sl_limiter_admit(f->l, client, route, tokens, now, &t, &st), SL_EPERM);
    assert_false(t.active);
    assert_non_null(st.which);
    assert_string_equal(st.which, which);
    assert_true(st.retry_after_ms >= 1);
    assert_true(st.retry_after_ms <= 60000);
    return st;
}

#endif
