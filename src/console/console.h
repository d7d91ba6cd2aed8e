/*
 * console: the web console on the admin listener, under /console/. Its
 * files (the .html, .css, .js and .svg files of console/) are compiled into the binary at
 * build time (cmake/embed_console.cmake), so the page needs nothing from the
 * network. Its data come from the admin listener's own JSON (/sluice/status,
 * /sluice/usage, /metrics); its chat playground goes through
 * /console/api/v1/..., which relays to the gateway's public listener with
 * the client key the operator typed, as any client's request (see relay.c).
 */
#ifndef SL_CONSOLE_H
#define SL_CONSOLE_H

#include "config/config.h"
#include "http/http.h"

/* True for /console and every path under /console/. */
bool sl_console_owns(struct sl_str path);
/* True for a GET or HEAD of the console's page or one of its files: public code without
 * data, served without the admin token (the page asks for it before its first API call). */
bool sl_console_is_static(const struct sl_http_request *req);
/*
 * Answer a request sl_console_owns: /console redirects to /console/, which is index.html;
 * files with their Content-Type, an ETag and Cache-Control: no-cache (304 when unchanged);
 * /console/api/v1/chat/completions (POST) and /console/api/v1/models (GET) are relayed to
 * the first public listen address of cfg when relay is true (`sluice serve`); anything
 * else is 404. cfg is borrowed and must outlive the request.
 */
void sl_console_on_request(struct sl_http_request *req, const struct sl_config *cfg, bool relay);

#endif
