/*
 * Loader internals shared by load.c (schema walk), tree.c (YAML to node
 * tree), env.c (${VAR} interpolation) and errors.c. Private to config.
 */
#ifndef SL_CONFIG_LOAD_H
#define SL_CONFIG_LOAD_H

#include "config/config.h"

/* Deeper YAML nesting is rejected: no schema needs more than a few levels
 * and the bound keeps hostile input from costing stack or time. */
#define SL_CFG_MAX_DEPTH 32
/* Bounds on hostile input: file size, YAML nodes, problems reported. */
#define SL_CFG_MAX_FILE_BYTES (8u << 20)
#define SL_CFG_MAX_NODES (1u << 20)
#define SL_CFG_MAX_ERRORS 100

enum sl_cfg_node_kind {
    SL_CFG_NODE_SCALAR,
    SL_CFG_NODE_MAPPING,
    SL_CFG_NODE_SEQUENCE,
    SL_CFG_NODE_ALIAS, /* rejected when parsed; skipped by the walk */
};

/*
 * One YAML node. Every node and string lives in the load's arena. Mapping
 * children alternate key, value, key, value...
 */
struct sl_cfg_node {
    enum sl_cfg_node_kind kind;
    unsigned line, col; /* 1-based start of the node; 0 for a default */
    const char *text;   /* scalars: the value, NUL-terminated (may hold NULs) */
    size_t len;
    bool plain; /* scalar written without quotes: "", "~" and "null" mean null */
    size_t n_children;
    struct sl_cfg_node *first, *last; /* children; borrowed from the arena */
    struct sl_cfg_node *next;         /* next sibling */
};

/* State of one load. Borrows file, errs and arena from the caller. */
struct sl_cfg_load {
    const char *file;
    struct sl_config_errors *errs;
    struct sl_arena *arena;
    size_t n_problems;  /* found by this load, including any not recorded */
    int err;            /* SL_ENOMEM once an allocation failed, else 0 */
    struct sl_buf path; /* owned: dotted key path of the node being looked at */
};

/* Record a problem at line:col (0 when not tied to a place) for the current path. */
void sl_cfg_report(struct sl_cfg_load *ld, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sl_cfg_vreport(struct sl_cfg_load *ld, unsigned line, unsigned col, const char *fmt,
                    va_list ap);

/* Parse YAML into a node tree in ld->arena. *root is NULL for an empty
 * stream. Returns SL_EINVAL after reporting when the tree must not be
 * walked (syntax error, too deep, too big); aliases are reported but the
 * tree is still returned, with the alias nodes marked. */
int sl_cfg_tree_parse(struct sl_cfg_load *ld, const char *data, size_t len,
                      struct sl_cfg_node **root);

/* Expand ${NAME} and $${ in node's scalar into out (replacing its
 * contents). Reports every problem at the node; SL_EINVAL if any. */
int sl_cfg_interpolate(struct sl_cfg_load *ld, const struct sl_cfg_node *n, struct sl_buf *out);

/* A plain scalar meaning "no value". */
bool sl_cfg_node_is_null(const struct sl_cfg_node *n);
/* "a mapping", "a list", "a value" for messages. */
const char *sl_cfg_node_kind_name(const struct sl_cfg_node *n);

#endif
