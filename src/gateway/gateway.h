/*
 * gateway: the processes sluice runs. `sluice serve` runs the gateway's
 * public listener (plus the simulated endpoints of a `simulator:` section,
 * when there is one); `sluice sim` runs only the simulated endpoints. Both
 * use worker threads with their own loops (http runner) and an admin
 * listener on the main thread, and shut down gracefully on SIGTERM/SIGINT.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stdio.h>

#include "config/config.h"

enum sl_gateway_mode {
    SL_GATEWAY_SERVE, /* the gateway, and the simulator section if present */
    SL_GATEWAY_SIM,   /* only the simulator section */
};

/* Runs until a shutdown signal; returns the process exit code (0 after a
 * graceful shutdown, 1 when it could not start). Takes its own reference to cfg. */
int sl_gateway_run(struct sl_config *cfg, enum sl_gateway_mode mode);

/* `sluice status`: GET /sluice/status from the admin listener at admin (with the admin_token
 * token, unless NULL) and print it to out, as tables of routes and backends, or as the JSON
 * itself when json. Problems (cannot connect, not a sluice gateway, bad answer) go to err,
 * naming the address. Returns the process exit code: 0 printed, 1 not. */
int sl_gateway_print_status(const struct sl_config_addr *admin, const char *token, bool json,
                            FILE *out, FILE *err);

#endif
