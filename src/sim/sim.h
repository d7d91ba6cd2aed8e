/*
 * sim: simulated Azure OpenAI / OpenAI-compatible endpoints (`sluice sim`).
 * Each endpoint of the configuration's `simulator:` section is one HTTP site
 * answering the data-plane API (chat, completions, embeddings, responses,
 * threads, assistants, models) with deterministic generated content, Azure's
 * quota behaviour (TPM/RPM, PTU utilisation) and injectable failures; the
 * control API (/_sim/...) lives on the admin listener. See docs/simulator.md.
 *
 * Thread safety: sl_sim_on_request may run on several workers at once; the
 * state it shares (quotas, fault rules, stored objects, stats) is guarded by
 * small per-endpoint/per-deployment locks and atomics.
 */
#ifndef SL_SIM_H
#define SL_SIM_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "http/http.h"

struct sl_sim;

/* Build the simulator's state for cfg->simulator. cfg is referenced (one
 * sl_config_ref held until sl_sim_free), not copied. */
int sl_sim_new(struct sl_config *cfg, struct sl_sim **out);
/* After every request has finished (the runner has stopped). */
void sl_sim_free(struct sl_sim *sim);
size_t sl_sim_endpoint_count(const struct sl_sim *sim);
/* Site handler for endpoint i: pass sl_sim_on_request as on_request and
 * sl_sim_endpoint_data(sim, i) as data. */
void *sl_sim_endpoint_data(struct sl_sim *sim, size_t i);
void sl_sim_on_request(struct sl_http_request *req, void *endpoint_data);
/* The control API on the admin listener: returns true when it handled req
 * (every path under /_sim/), false to let the caller answer. */
bool sl_sim_on_admin_request(struct sl_sim *sim, struct sl_http_request *req);
/* Lets the "refuse" fault pause/resume listeners: the runner, and the site
 * index of endpoint 0 (endpoint i is site first_site + i). */
void sl_sim_attach_runner(struct sl_sim *sim, struct sl_http_runner *runner, size_t first_site);

#endif
