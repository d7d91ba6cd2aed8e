/*
 * gateway: the `sluice serve` process. Starts one worker thread per
 * configured worker, each with its own uv_loop and its own listening sockets
 * (SO_REUSEPORT), runs the admin listener on the main thread, and shuts all
 * of it down gracefully on SIGTERM or SIGINT.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include "config/config.h"

/* Runs until a shutdown signal; returns the process exit code (0 after a
 * graceful shutdown, 1 when the listeners could not be opened). Takes its
 * own reference to cfg. */
int sl_gateway_run(struct sl_config *cfg);

#endif
