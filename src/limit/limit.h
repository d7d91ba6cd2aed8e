/*
 * limit: requests and tokens per minute per client (and per client on one
 * route), over a sliding minute, shared by every worker of the process
 * without locks. A request is admitted on an estimate of its tokens and the
 * estimate is settled against the tokens really used once the backend says
 * (or given back when the request failed before a backend used any).
 *
 * The struct sl_limiter is the process-local implementation; the functions
 * below are the whole interface, so that a shared store (Redis, for several
 * gateway replicas) can back the same calls later.
 */
#ifndef SL_LIMIT_H
#define SL_LIMIT_H

#include "config/config.h"

struct sl_limiter;

/* 0 and *out, or SL_ENOMEM. cfg is borrowed and must outlive the limiter. */
int sl_limiter_new(const struct sl_config *cfg, struct sl_limiter **out);
void sl_limiter_free(struct sl_limiter *l);

/* After a configuration reload: l (new, not yet in use) takes over what old has counted for
 * the clients (and their routes) both configurations have, by name; the new limits apply. */
void sl_limiter_adopt(struct sl_limiter *l, struct sl_limiter *old);

/* An admitted request's charge, to settle later. Plain data: lives in the request. */
struct sl_limit_ticket {
    size_t client, route; /* indices into cfg->clients and cfg->routes */
    uint64_t tokens;      /* charged at admission */
    uint64_t at_ms;       /* when */
    bool active;          /* something to settle */
};

/* Where the client stands, for the 429's headers (and x-ratelimit-remaining-*). */
struct sl_limit_status {
    uint64_t remaining_requests; /* UINT64_MAX: no request limit applies */
    uint64_t remaining_tokens;   /* UINT64_MAX: no token limit applies */
    uint64_t retry_after_ms;     /* refused: when enough will have expired to admit it */
    const char *which;           /* refused: "rpm", "tpm", "route rpm" or "route tpm" */
};

/*
 * Admit one request of `tokens` estimated tokens for client on route at
 * now_ms (monotonic): SL_OK, the request counted and its tokens charged
 * (*ticket to settle), or SL_EPERM when a limit would be passed (nothing
 * charged; *st says which and when to retry). st is filled either way.
 */
int sl_limiter_admit(struct sl_limiter *l, size_t client, size_t route, uint64_t tokens,
                     uint64_t now_ms, struct sl_limit_ticket *ticket, struct sl_limit_status *st);

/* The request used `tokens` in the end (0: none, e.g. it failed before any backend
 * answered): the difference from the charge is given back or added. Once per ticket. */
void sl_limiter_settle(struct sl_limiter *l, struct sl_limit_ticket *ticket, uint64_t tokens,
                       uint64_t now_ms);

#endif
