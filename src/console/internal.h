/* Private to the console subsystem. */
#ifndef SL_CONSOLE_INTERNAL_H
#define SL_CONSOLE_INTERNAL_H

#include "console/console.h"

/* The console's files, as the build embeds them: the generated source
 * (build/<preset>/generated/console_assets.c, written by
 * cmake/embed_console.cmake) defines the table. */
struct sl_console_asset {
    const char *name;          /* file name under console/, e.g. "app.js" */
    const unsigned char *data; /* len bytes (plus a NUL that is not part of the file) */
    size_t len;
    const char *etag; /* quoted, from the file's SHA-256: "\"3f2a...\"" */
};

extern const struct sl_console_asset sl_console_assets[];
extern const size_t sl_console_n_assets;

/* Relay (relay.c): forward the request to the public listener's v1 path `path` ("/v1/...")
 * and stream the answer back. Finishes the request. */
void sl_console_relay(struct sl_http_request *req, const struct sl_config *cfg, struct sl_str path);

#endif
