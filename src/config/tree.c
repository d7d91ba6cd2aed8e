/*
 * YAML text to a tree of nodes, with positions, using libyaml's event API.
 * The event API (rather than the document loader) lets us see aliases and
 * nesting as they come, so hostile input is cut off early: aliases are
 * rejected (no billion laughs), depth and node count are bounded, and the
 * tree is built with an explicit stack rather than recursion.
 */
#include <string.h>
#include <yaml.h>

#include "config/load.h"
#include "config/schema.h"

/* libyaml marks are 0-based; ours are 1-based. */
static unsigned mark_line(yaml_mark_t m)
{
    return m.line < 0xFFFFFFF0u ? (unsigned)m.line + 1 : 0;
}

static unsigned mark_col(yaml_mark_t m)
{
    return m.column < 0xFFFFFFF0u ? (unsigned)m.column + 1 : 0;
}

bool sl_cfg_node_is_null(const struct sl_cfg_node *n)
{
    if (n->kind != SL_CFG_NODE_SCALAR || !n->plain)
        return false;
    struct sl_str s = {n->text, n->len};
    return s.len == 0 || sl_str_eq(s, SL_STR("~")) || sl_str_eq(s, SL_STR("null")) ||
           sl_str_eq(s, SL_STR("Null")) || sl_str_eq(s, SL_STR("NULL"));
}

const char *sl_cfg_node_kind_name(const struct sl_cfg_node *n)
{
    switch (n->kind) {
    case SL_CFG_NODE_MAPPING:
        return "a mapping";
    case SL_CFG_NODE_SEQUENCE:
        return "a list";
    case SL_CFG_NODE_ALIAS:
        return "an alias";
    default:
        return sl_cfg_node_is_null(n) ? "no value" : "a single value";
    }
}

static void report_syntax(struct sl_cfg_load *ld, const yaml_parser_t *p, const char *data,
                          size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding, control characters) carry a byte
         * offset rather than a mark. */
        unsigned line = 1, col = 1;
        size_t end = SL_MIN(p->problem_offset, len);
        for (size_t i = 0; i < end; i++) {
            if (data[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        sl_cfg_report(ld, line, col, "invalid YAML: %s", problem);
        return;
    }
    /* The most common cause of all, which libyaml's wording hides. */
    size_t at = p->problem_mark.index;
    const char *hint = at < len && data[at] == '\t' ? "; indent with spaces, not tabs" : "";
    if (p->context) {
        sl_cfg_report(ld, mark_line(p->problem_mark), mark_col(p->problem_mark),
                      "invalid YAML: %s (%s at line %u, column %u)%s", problem, p->context,
                      mark_line(p->context_mark), mark_col(p->context_mark), hint);
    } else {
        sl_cfg_report(ld, mark_line(p->problem_mark), mark_col(p->problem_mark),
                      "invalid YAML: %s%s", problem, hint);
    }
}

int sl_cfg_tree_parse(struct sl_cfg_load *ld, const char *data, size_t len,
                      struct sl_cfg_node **root)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct sl_cfg_node *stack[SL_CFG_MAX_DEPTH];
    size_t depth = 0, n_nodes = 0, n_docs = 0;
    bool done = false, have_event = false;
    int err = SL_OK;

    *root = NULL;
    ld->path.len = 0;
    if (!yaml_parser_initialize(&parser)) {
        ld->err = SL_ENOMEM;
        return SL_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR) {
                err = ld->err = SL_ENOMEM;
                goto fail;
            }
            report_syntax(ld, &parser, data, len);
            err = SL_EINVAL;
            goto fail;
        }
        have_event = true;
        unsigned line = mark_line(ev.start_mark), col = mark_col(ev.start_mark);
        struct sl_cfg_node *node = NULL;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++n_docs > 1) {
                sl_cfg_report(ld, line, col,
                              "only one YAML document per file is supported (found a second "
                              "\"---\")");
                err = SL_EINVAL;
                goto fail;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        case YAML_SCALAR_EVENT:
        case YAML_ALIAS_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++n_nodes > SL_CFG_MAX_NODES) {
                sl_cfg_report(ld, line, col, "too many values (more than %u)", SL_CFG_MAX_NODES);
                err = SL_EINVAL;
                goto fail;
            }
            node = sl_arena_alloc(ld->arena, sizeof(*node));
            if (node == NULL) {
                err = ld->err = SL_ENOMEM;
                goto fail;
            }
            memset(node, 0, sizeof(*node));
            node->line = line;
            node->col = col;
            break;
        default:
            break;
        }
        if (node) {
            if (ev.type == YAML_SCALAR_EVENT) {
                node->kind = SL_CFG_NODE_SCALAR;
                node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                node->len = ev.data.scalar.length;
                node->text = sl_arena_strdup(
                    ld->arena, (struct sl_str){(const char *)ev.data.scalar.value, node->len});
                if (node->text == NULL) {
                    err = ld->err = SL_ENOMEM;
                    goto fail;
                }
            } else if (ev.type == YAML_ALIAS_EVENT) {
                const char *anchor = (const char *)ev.data.alias.anchor;
                struct sl_buf name;
                sl_buf_init(&name);
                sl_cfg_quote(&name, sl_str_from_cstr(anchor ? anchor : ""));
                node->kind = SL_CFG_NODE_ALIAS;
                sl_cfg_report(ld, line, col,
                              "aliases (*%s) are not supported; write the value out in full",
                              name.base ? name.base : "");
                sl_buf_dispose(&name);
            } else {
                node->kind = ev.type == YAML_MAPPING_START_EVENT ? SL_CFG_NODE_MAPPING
                                                                 : SL_CFG_NODE_SEQUENCE;
            }
            if (depth == 0) {
                *root = node;
            } else {
                struct sl_cfg_node *parent = stack[depth - 1];
                if (parent->last)
                    parent->last->next = node;
                else
                    parent->first = node;
                parent->last = node;
                parent->n_children++;
            }
            if (node->kind == SL_CFG_NODE_MAPPING || node->kind == SL_CFG_NODE_SEQUENCE) {
                if (depth == SL_CFG_MAX_DEPTH) {
                    sl_cfg_report(ld, line, col, "nested more than %d levels deep",
                                  SL_CFG_MAX_DEPTH);
                    err = SL_EINVAL;
                    goto fail;
                }
                stack[depth++] = node;
            }
        }
        yaml_event_delete(&ev);
        have_event = false;
    }
    yaml_parser_delete(&parser);
    return SL_OK;
fail:
    if (have_event)
        yaml_event_delete(&ev);
    yaml_parser_delete(&parser);
    return err;
}
