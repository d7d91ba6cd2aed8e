/*
 * The simulator's lifetime: per-endpoint and per-deployment state built from
 * the configuration, fault rule selection and resets.
 */
#include "sim/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int deployment_init(struct sl_sim_endpoint *ep, struct sl_sim_deployment *dep,
                           const struct sl_config_sim_deployment *d)
{
    struct sl_buf name;
    dep->cfg = d;
    dep->ep = ep;
    sl_buf_init(&name);
    /* Azure reports the model with its version: "gpt-4o-2024-08-06". */
    int rc = sl_buf_append_str(&name, sl_str_from_cstr(d->model ? d->model : d->name));
    if (d->version && d->version[0])
        rc |= sl_buf_appendf(&name, "-%s", d->version);
    if (rc) {
        sl_buf_dispose(&name);
        return SL_ENOMEM;
    }
    dep->model_name = name.base;
    snprintf(dep->fingerprint, sizeof(dep->fingerprint), "fp_%010llx",
             (unsigned long long)(sl_sim_hash(7, name.base, name.len) & 0xffffffffffull));
    if (uv_mutex_init(&dep->lock) != 0)
        return SL_ENOMEM;
    dep->lock_ready = true;
    sl_sim_quota_init(&dep->quota, d->capacity, d->tpm, d->rpm);
    return SL_OK;
}

static int endpoint_init(struct sl_sim *sim, struct sl_sim_endpoint *ep, size_t i)
{
    const struct sl_config_sim_endpoint *cfg = &sim->cfg->simulator.endpoints[i];
    int err;
    ep->sim = sim;
    ep->index = i;
    ep->cfg = cfg;
    if (uv_mutex_init(&ep->fault_lock) != 0)
        return SL_ENOMEM;
    if (sl_sim_store_init(&ep->store) != SL_OK) {
        uv_mutex_destroy(&ep->fault_lock);
        return SL_ENOMEM;
    }
    ep->locks_ready = true;
    ep->fault_rng = sl_sim_mix(sim->cfg->simulator.seed, i);
    if ((err = sl_sim_rules_from_config(cfg->faults, cfg->n_faults, &ep->config_rules)) != SL_OK)
        return err;
    ep->n_config_rules = cfg->n_faults;
    atomic_store(&ep->has_rules, cfg->n_faults > 0);
    ep->n_workers = sim->cfg->workers ? sim->cfg->workers : 1;
    ep->listening = calloc(ep->n_workers, sizeof(*ep->listening));
    if (ep->listening == NULL)
        return SL_ENOMEM;
    for (size_t w = 0; w < ep->n_workers; w++)
        atomic_init(&ep->listening[w], true);
    ep->deployments = calloc(cfg->n_deployments ? cfg->n_deployments : 1, sizeof(*ep->deployments));
    if (ep->deployments == NULL)
        return SL_ENOMEM;
    for (size_t d = 0; d < cfg->n_deployments; d++)
        if ((err = deployment_init(ep, &ep->deployments[d], &cfg->deployments[d])) != SL_OK)
            return err;
    return SL_OK;
}

static void endpoint_dispose(struct sl_sim_endpoint *ep)
{
    if (ep->deployments) {
        for (size_t d = 0; d < ep->cfg->n_deployments; d++) {
            free(ep->deployments[d].model_name);
            if (ep->deployments[d].lock_ready)
                uv_mutex_destroy(&ep->deployments[d].lock);
        }
        free(ep->deployments);
    }
    free(ep->listening);
    sl_sim_rules_free(ep->runtime, ep->n_runtime);
    sl_sim_rules_free(ep->config_rules, ep->n_config_rules);
    if (ep->locks_ready) {
        sl_sim_store_dispose(&ep->store);
        uv_mutex_destroy(&ep->fault_lock);
    }
}

int sl_sim_new(struct sl_config *cfg, struct sl_sim **out)
{
    int err = SL_ENOMEM;
    struct sl_sim *sim = calloc(1, sizeof(*sim));
    *out = NULL;
    if (sim == NULL)
        return SL_ENOMEM;
    sim->cfg = sl_config_ref(cfg);
    size_t n = cfg->simulator.n_endpoints;
    sim->endpoints = calloc(n ? n : 1, sizeof(*sim->endpoints));
    if (sim->endpoints == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        sim->n_endpoints = i + 1;
        if ((err = endpoint_init(sim, &sim->endpoints[i], i)) != SL_OK)
            goto fail;
    }
    *out = sim;
    return SL_OK;
fail:
    sl_sim_free(sim);
    return err;
}

void sl_sim_free(struct sl_sim *sim)
{
    if (sim == NULL)
        return;
    for (size_t i = 0; i < sim->n_endpoints; i++)
        endpoint_dispose(&sim->endpoints[i]);
    free(sim->endpoints);
    sl_config_unref(sim->cfg);
    free(sim);
}

size_t sl_sim_endpoint_count(const struct sl_sim *sim)
{
    return sim->n_endpoints;
}

void *sl_sim_endpoint_data(struct sl_sim *sim, size_t i)
{
    return i < sim->n_endpoints ? &sim->endpoints[i] : NULL;
}

void sl_sim_attach_runner(struct sl_sim *sim, struct sl_http_runner *runner, size_t first_site)
{
    sim->runner = runner;
    sim->first_site = first_site;
}

struct sl_sim_deployment *sl_sim_find_deployment(struct sl_sim_endpoint *ep, struct sl_str name)
{
    for (size_t i = 0; i < ep->cfg->n_deployments; i++)
        if (sl_str_eq(name, sl_str_from_cstr(ep->cfg->deployments[i].name)))
            return &ep->deployments[i];
    return NULL;
}

bool sl_sim_pick_fault(struct sl_sim_endpoint *ep, struct sl_str deployment,
                       struct sl_sim_fault *out)
{
    memset(out, 0, sizeof(*out));
    if (!atomic_load_explicit(&ep->has_rules, memory_order_acquire))
        return false;
    uv_mutex_lock(&ep->fault_lock);
    bool hit =
        sl_sim_rules_pick(ep->runtime, ep->n_runtime, deployment, &ep->fault_rng, out) ||
        sl_sim_rules_pick(ep->config_rules, ep->n_config_rules, deployment, &ep->fault_rng, out);
    uv_mutex_unlock(&ep->fault_lock);
    return hit;
}

void sl_sim_endpoint_reset(struct sl_sim_endpoint *ep)
{
    struct sl_sim_rule *old;
    size_t n_old;
    uv_mutex_lock(&ep->fault_lock);
    old = ep->runtime;
    n_old = ep->n_runtime;
    ep->runtime = NULL;
    ep->n_runtime = 0;
    for (size_t i = 0; i < ep->n_config_rules; i++)
        ep->config_rules[i].used = 0;
    ep->fault_rng = sl_sim_mix(ep->sim->cfg->simulator.seed, ep->index);
    atomic_store(&ep->has_rules, ep->n_config_rules > 0);
    uv_mutex_unlock(&ep->fault_lock);
    sl_sim_rules_free(old, n_old);
    for (size_t d = 0; d < ep->cfg->n_deployments; d++) {
        struct sl_sim_deployment *dep = &ep->deployments[d];
        uv_mutex_lock(&dep->lock);
        sl_sim_quota_clear(&dep->quota);
        uv_mutex_unlock(&dep->lock);
        sl_sim_counters_clear(&dep->stats);
    }
    sl_sim_counters_clear(&ep->stats);
    atomic_store(&ep->last_request_ms, 0);
    sl_sim_store_clear(&ep->store);
}
