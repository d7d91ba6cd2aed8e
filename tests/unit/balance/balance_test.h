/*
 * Scaffolding shared by the balance unit tests (tests only): a real
 * configuration loaded from YAML, its balance and one worker, and shorthands
 * for choosing and reporting. Each test file is its own program, so the
 * helpers are static inline.
 */
#ifndef SL_TESTS_BALANCE_TEST_H
#define SL_TESTS_BALANCE_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../load_test.h"

#include "balance/internal.h"

/* One loaded configuration with its balance and a worker; owned by the test. */
struct fixture {
    struct sl_config *cfg;
    struct sl_balance *b;
    struct sl_balance_worker *w;
};

static inline void fixture_load(struct fixture *f, const char *yaml)
{
    f->cfg = unit_load_config(yaml, strlen(yaml));
    assert_int_equal(sl_balance_new(f->cfg, &f->b), SL_OK);
    assert_int_equal(sl_balance_worker_new(f->b, &f->w), SL_OK);
}

static inline void fixture_free(struct fixture *f)
{
    sl_balance_worker_free(f->w);
    sl_balance_free(f->b);
    sl_config_unref(f->cfg);
}

static inline size_t backend_index(const struct fixture *f, const char *name)
{
    for (size_t i = 0; i < f->cfg->n_backends; i++)
        if (strcmp(f->cfg->backends[i].name, name) == 0)
            return i;
    fail_msg("no backend %s", name);
    return SIZE_MAX;
}

static inline size_t route_index(const struct fixture *f, const char *name)
{
    for (size_t i = 0; i < f->cfg->n_routes; i++)
        if (strcmp(f->cfg->routes[i].name, name) == 0)
            return i;
    fail_msg("no route %s", name);
    return SIZE_MAX;
}

/* A query for route with no limits. */
static inline struct sl_balance_query query(size_t route)
{
    return (struct sl_balance_query){.route = route, .only = SIZE_MAX};
}

/* Choose on q, which must succeed; the chosen backend's name. */
static inline const char *choose_ok(struct fixture *f, const struct sl_balance_query *q,
                                    uint64_t now, struct sl_balance_pick *pick)
{
    uint64_t retry_at = 0;
    int err = sl_balance_choose(f->w, q, now, pick, &retry_at);
    if (err != SL_OK)
        fail_msg("choose at %llu: %s", (unsigned long long)now, sl_strerror(err));
    return f->cfg->backends[pick->backend].name;
}

/* Report how pick ended. */
static inline void report(struct fixture *f, const struct sl_balance_pick *pick,
                          enum sl_balance_outcome outcome, int status, uint64_t retry_after_ms,
                          uint64_t now)
{
    struct sl_balance_result r = {
        .outcome = outcome,
        .status = status,
        .retry_after_ms = retry_after_ms,
        .why = outcome == SL_BALANCE_THROTTLED ? "429 retry-after-ms"
               : outcome == SL_BALANCE_FAILURE ? "503"
                                               : NULL,
    };
    sl_balance_report(f->b, pick, &r, now);
}

/* Choose and report outcome at once; the chosen backend's name. */
static inline const char *attempt(struct fixture *f, size_t route, uint64_t now,
                                  enum sl_balance_outcome outcome, int status,
                                  uint64_t retry_after_ms)
{
    struct sl_balance_query q = query(route);
    struct sl_balance_pick pick;
    const char *name = choose_ok(f, &q, now, &pick);
    report(f, &pick, outcome, status, retry_after_ms, now);
    return name;
}

/* The state of backend name at now. */
static inline enum sl_balance_state state_of(struct fixture *f, const char *name, uint64_t now)
{
    uint64_t until;
    return sl_balance_backend_state(&f->b->backends[backend_index(f, name)], now, &until);
}

#endif
