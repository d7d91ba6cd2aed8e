/*
 * config: the one YAML configuration file, loaded into an immutable,
 * refcounted snapshot. Every field is declared once in the schema table
 * (schema.c) that drives parsing, defaults, bounds, error messages and the
 * generated reference docs/config.md.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdatomic.h>
#include <stdio.h>

#include "core/core.h"

/* A listen address as written ("127.0.0.1:8080", "[::1]:8080", ":8080"). */
struct sl_config_addr {
    char host[64]; /* numeric IPv4/IPv6 literal without brackets; "0.0.0.0" for ":port" */
    uint16_t port;
};
/* Append a as it is written in the file: "127.0.0.1:8080" or "[::1]:8080". */
int sl_config_addr_format(const struct sl_config_addr *a, struct sl_buf *out);

struct sl_config_limits {
    uint64_t max_header_bytes;    /* request line + headers */
    uint64_t max_body_bytes;      /* request body */
    uint64_t header_timeout_ms;   /* to receive a whole request head */
    uint64_t request_timeout_ms;  /* to receive a whole request body */
    uint64_t idle_timeout_ms;     /* keep-alive connection with no request */
    uint64_t shutdown_timeout_ms; /* graceful shutdown deadline for in-flight requests */
    uint64_t max_connections;     /* per worker */
};

struct sl_config_log {
    enum sl_log_level level;
    enum sl_log_format format;
    bool access; /* one JSON line per request */
};

/*
 * A loaded configuration. Immutable once returned by a loader; shared by
 * reference (sl_config_ref/_unref) so that a reload can swap in a new one
 * while requests still use the old one. Owns every pointer it holds.
 */
struct sl_config {
    atomic_uint refs;
    char *source;                  /* file name it came from, or "<default>" */
    struct sl_config_addr *listen; /* n_listen public listeners */
    size_t n_listen;
    struct sl_config_addr admin_listen;
    unsigned workers; /* resolved: never 0 (0 in the file means one per core) */
    struct sl_config_limits limits;
    struct sl_config_log log;
};

/* One problem found while loading; owns its strings. */
struct sl_config_error {
    char *file;
    unsigned line, col; /* 1-based; 0 when not tied to a place */
    char *path;         /* dotted key path, e.g. "limits.max_body_bytes" or "listen[1]" */
    char *message;
};
struct sl_config_errors {
    struct sl_config_error *items; /* owned */
    size_t n, cap;
};
void sl_config_errors_init(struct sl_config_errors *e);
void sl_config_errors_dispose(struct sl_config_errors *e);
/* Prints each as "FILE:LINE:COL: key.path: message\n". */
void sl_config_errors_print(const struct sl_config_errors *e, FILE *out);

/*
 * Load and validate. On success returns 0 and *out holds one reference. On
 * failure returns SL_EINVAL (or SL_EIO when the file cannot be read) and every
 * problem found is appended to errs; *out is NULL.
 */
int sl_config_load_file(const char *path, struct sl_config **out, struct sl_config_errors *errs);
int sl_config_load_buffer(const char *name, const char *data, size_t len, struct sl_config **out,
                          struct sl_config_errors *errs);
/* The configuration used when none is given (all defaults). */
int sl_config_load_default(struct sl_config **out, struct sl_config_errors *errs);

struct sl_config *sl_config_ref(struct sl_config *c);
void sl_config_unref(struct sl_config *c);

/* Append the Markdown reference of every field (the contents of docs/config.md). */
int sl_config_write_reference(struct sl_buf *out);

#endif
