/*
 * The schema walk: fills a struct from a YAML node tree as its schema says,
 * applying defaults first and reporting every problem with its position and
 * key path. A value with problems leaves the field at its default, so that
 * the walk can go on and find the rest.
 */
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "config/schema.h"

struct entry_state;

/* Where one element of a list of values is in the file. */
struct elem_pos {
    unsigned line, col;
};

/* What the walk learnt about one field of one object; lives in the arena. */
struct field_state {
    unsigned line, col; /* of the value when given in the file; 0 when defaulted */
    bool failed;        /* the file's value was rejected */
    /* A list of values from the file: where each element is, so that a
     * finish callback can point at one. */
    const struct elem_pos *elems;
    size_t n_elems;
    /* A list of mappings from the file: where each entry and its fields
     * are, so that a finish callback can point into an entry. */
    const struct entry_state *entries;
    size_t n_entries;
};

/* One entry of a list of mappings; lives in the arena. */
struct entry_state {
    unsigned line, col; /* of the entry's mapping */
    /* One per field of the list's sub schema; NULL when the entry is not a mapping. */
    const struct field_state *fields;
};

/* Handed to a schema's finish callback; borrows everything. */
struct sl_cfg_check {
    struct sl_cfg_load *ld;
    const struct sl_cfg_schema *schema;
    const struct field_state *states;
    unsigned line, col; /* the object's mapping; 0 when it was not in the file */
};

static bool load_object(struct sl_cfg_load *ld, const struct sl_cfg_schema *schema, void *obj,
                        const struct sl_cfg_node *map, struct field_state **states_out);

static void path_push_key(struct sl_cfg_load *ld, struct sl_str key)
{
    int err = ld->path.len ? sl_buf_append(&ld->path, ".", 1) : SL_OK;
    if (err == SL_OK)
        err = sl_buf_append_json_escaped(&ld->path, key);
    if (err)
        ld->err = err;
}

static void path_push_index(struct sl_cfg_load *ld, size_t i)
{
    if (sl_buf_appendf(&ld->path, "[%zu]", i) != SL_OK)
        ld->err = SL_ENOMEM;
}

static void path_pop(struct sl_cfg_load *ld, size_t len)
{
    if (ld->path.base && len <= ld->path.len) {
        ld->path.len = len;
        ld->path.base[len] = '\0';
    }
}

static const char *text_of(const struct sl_buf *b)
{
    return b->base ? b->base : "";
}

/* ---- field storage ---- */

static void store_uint(void *dst, size_t width, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;
    switch (width) {
    case 1:
        memcpy(dst, &u8, 1);
        break;
    case 2:
        memcpy(dst, &u16, 2);
        break;
    case 4:
        memcpy(dst, &u32, 4);
        break;
    default:
        memcpy(dst, &v, sizeof(v));
    }
}

static void *member(void *obj, const struct sl_cfg_field *f)
{
    return (char *)obj + f->offset;
}

static size_t *count_member(void *obj, const struct sl_cfg_field *f)
{
    return (size_t *)(void *)((char *)obj + f->count_offset);
}

void sl_cfg_dispose_fields(const struct sl_cfg_schema *schema, void *obj)
{
    if (schema->dispose)
        schema->dispose(obj);
    for (size_t i = 0; i < schema->n_fields; i++) {
        const struct sl_cfg_field *f = &schema->fields[i];
        void **p = member(obj, f);
        switch (f->type) {
        case SL_CFG_STRING:
        case SL_CFG_ADDR_LIST:
            free(*p);
            break;
        case SL_CFG_STRING_LIST:
            for (size_t j = 0; *p && j < *count_member(obj, f); j++)
                free(((char **)*p)[j]);
            free(*p);
            break;
        case SL_CFG_OBJECT_LIST:
            for (size_t j = 0; *p && j < *count_member(obj, f); j++)
                sl_cfg_dispose_fields(f->sub, (char *)*p + j * f->sub->size);
            free(*p);
            break;
        default:
            continue;
        }
        *p = NULL;
        if (f->type != SL_CFG_STRING)
            *count_member(obj, f) = 0;
    }
}

/* ---- messages ---- */

/* What a field's value should look like, for "expected ..., got ..." */
static void describe_expected(const struct sl_cfg_field *f, struct sl_buf *out)
{
    switch (f->type) {
    case SL_CFG_BOOL:
        sl_buf_appendf(out, "true or false");
        break;
    case SL_CFG_INT:
        sl_buf_appendf(out, "a whole number");
        break;
    case SL_CFG_SIZE:
        sl_buf_appendf(out, "a size like 16KiB or 1048576");
        break;
    case SL_CFG_DURATION:
        sl_buf_appendf(out, "a duration like 500ms, 10s, 2m or 1h");
        break;
    case SL_CFG_RATIO:
        sl_buf_appendf(out, "a number from 0 to 1 like 0.25, or a percentage like 25%%");
        break;
    case SL_CFG_MONEY:
        sl_buf_appendf(out, "an amount like 12.50");
        break;
    case SL_CFG_ENUM:
        sl_buf_appendf(out, "one of ");
        for (const struct sl_cfg_choice *c = f->choices; c->name; c++)
            sl_buf_appendf(out, "%s%s", c == f->choices ? "" : ", ", c->name);
        break;
    case SL_CFG_STRING:
        sl_buf_appendf(out, "a single value");
        break;
    case SL_CFG_STRING_LIST:
        sl_buf_appendf(out, "a value, or a list of values");
        break;
    case SL_CFG_ADDR:
        sl_buf_appendf(out, "an address like 127.0.0.1:8080");
        break;
    case SL_CFG_ADDR_LIST:
        sl_buf_appendf(out, "an address like 127.0.0.1:8080, or a list of them");
        break;
    case SL_CFG_OBJECT_LIST:
        sl_buf_appendf(out, "a list of mappings");
        break;
    }
}

static void report_kind(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                        const struct sl_cfg_node *v)
{
    struct sl_buf want;
    sl_buf_init(&want);
    describe_expected(f, &want);
    if (sl_cfg_node_is_null(v))
        sl_cfg_report(ld, v->line, v->col, "missing value: expected %s%s%s%s", text_of(&want),
                      f->def ? " (leave the key out to get the default, " : "",
                      f->def ? f->def : "", f->def ? ")" : "");
    else
        sl_cfg_report(ld, v->line, v->col, "expected %s, got %s", text_of(&want),
                      sl_cfg_node_kind_name(v));
    sl_buf_dispose(&want);
}

/* Reports a count outside a list field's bounds; false if it was. */
static bool check_count(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                        const struct sl_cfg_node *v, size_t n)
{
    const char *what = f->type == SL_CFG_ADDR_LIST     ? "address"
                       : f->type == SL_CFG_STRING_LIST ? "value"
                                                       : "entry";
    const char *whats = f->type == SL_CFG_ADDR_LIST     ? "addresses"
                        : f->type == SL_CFG_STRING_LIST ? "values"
                                                        : "entries";
    if (n < f->min) {
        sl_cfg_report(ld, v->line, v->col, "must list at least %llu %s", (unsigned long long)f->min,
                      f->min == 1 ? what : whats);
        return false;
    }
    if (n > f->max) {
        sl_cfg_report(ld, v->line, v->col, "must list at most %llu %s, got %zu",
                      (unsigned long long)f->max, f->max == 1 ? what : whats, n);
        return false;
    }
    return true;
}

/* ---- scalars ---- */

/*
 * The text of scalar node v for field f, after interpolation when it came
 * from the file. Reports and returns SL_EINVAL when v is not a usable scalar.
 */
static int scalar_text(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                       const struct sl_cfg_node *v, bool from_file, struct sl_buf *text)
{
    if (v->kind == SL_CFG_NODE_ALIAS)
        return SL_EINVAL; /* reported by the tree parser */
    if (v->kind != SL_CFG_NODE_SCALAR || sl_cfg_node_is_null(v)) {
        report_kind(ld, f, v);
        return SL_EINVAL;
    }
    if (from_file)
        return sl_cfg_interpolate(ld, v, text);
    text->len = 0;
    int err = sl_buf_append(text, v->text, v->len);
    if (err)
        ld->err = err;
    return err;
}

/* Reports why (from a parser) at v, noting the text as written when
 * interpolation changed it. */
static void report_value(struct sl_cfg_load *ld, const struct sl_cfg_node *v,
                         const struct sl_buf *text, const struct sl_buf *why)
{
    struct sl_str as_written = {v->text, v->len};
    struct sl_buf from;
    sl_buf_init(&from);
    if (!sl_str_eq(as_written, (struct sl_str){text->base, text->len})) {
        sl_buf_appendf(&from, " (from ");
        sl_cfg_quote(&from, as_written);
        sl_buf_appendf(&from, ")");
    }
    sl_cfg_report(ld, v->line, v->col, "%s%s", why->base ? why->base : "invalid value",
                  text_of(&from));
    sl_buf_dispose(&from);
}

static int check_bounds(const struct sl_cfg_field *f, uint64_t n, const struct sl_buf *text,
                        struct sl_buf *why)
{
    if (n >= f->min && n <= f->max)
        return SL_OK;
    sl_buf_appendf(why, "must be at %s ", n < f->min ? "least" : "most");
    sl_cfg_format_value(f->type, n < f->min ? f->min : f->max, why);
    sl_buf_appendf(why, ", got ");
    sl_cfg_quote(why, (struct sl_str){text->base, text->len});
    return SL_EINVAL;
}

static int check_string(const struct sl_cfg_field *f, const struct sl_buf *text, struct sl_buf *why)
{
    if (memchr(text->base, '\0', text->len)) {
        sl_buf_appendf(why, "must not contain NUL characters");
        return SL_EINVAL;
    }
    if (text->len < f->min || text->len > f->max) {
        uint64_t bound = text->len < f->min ? f->min : f->max;
        sl_buf_appendf(why, "must be at %s %llu character%s long",
                       text->len < f->min ? "least" : "most", (unsigned long long)bound,
                       bound == 1 ? "" : "s");
        return SL_EINVAL;
    }
    return SL_OK;
}

/* Stores a copy of text in the char * at dst, freeing what was there. */
static int store_string(const struct sl_buf *text, void *dst)
{
    char *copy = malloc(text->len + 1);
    if (copy == NULL)
        return SL_ENOMEM;
    memcpy(copy, text->base ? text->base : "", text->len);
    copy[text->len] = '\0';
    free(*(char **)dst);
    *(char **)dst = copy;
    return SL_OK;
}

/* Parses text as field f's (scalar) type and stores it in dst; for a list
 * type, as one element. A string field's check may shorten text first. */
static int parse_store(const struct sl_cfg_field *f, struct sl_buf *text, void *dst,
                       struct sl_buf *why)
{
    struct sl_str s = {text->base, text->len};
    uint64_t n = 0;
    int err = SL_EINVAL;
    switch (f->type) {
    case SL_CFG_BOOL: {
        bool b;
        if ((err = sl_cfg_parse_bool(s, &b, why)) == SL_OK)
            *(bool *)dst = b;
        return err;
    }
    case SL_CFG_INT:
        err = sl_cfg_parse_int(s, &n, why);
        break;
    case SL_CFG_SIZE:
        err = sl_cfg_parse_size(s, &n, why);
        break;
    case SL_CFG_DURATION:
        err = sl_cfg_parse_duration(s, &n, why);
        break;
    case SL_CFG_RATIO:
        err = sl_cfg_parse_ratio(s, &n, why);
        break;
    case SL_CFG_MONEY:
        err = sl_cfg_parse_money(s, &n, why);
        break;
    case SL_CFG_ENUM: {
        int v;
        if ((err = sl_cfg_parse_enum(s, f->choices, &v, why)) == SL_OK)
            memcpy(dst, &v, sizeof(v));
        return err;
    }
    case SL_CFG_ADDR:
    case SL_CFG_ADDR_LIST: { /* one element */
        struct sl_config_addr a;
        memset(&a, 0, sizeof(a));
        if ((err = sl_cfg_parse_addr(s, &a, why)) == SL_OK)
            memcpy(dst, &a, sizeof(a));
        return err;
    }
    case SL_CFG_STRING:
        if ((err = check_string(f, text, why)) != SL_OK)
            return err;
        if (f->check && (err = f->check(text, why)) != SL_OK)
            return err;
        return store_string(text, dst);
    case SL_CFG_STRING_LIST: /* one element; the field's bounds are its count */
        if (memchr(text->base, '\0', text->len)) {
            sl_buf_appendf(why, "must not contain NUL characters");
            return SL_EINVAL;
        }
        if (text->len == 0) {
            sl_buf_appendf(why, "must not be empty");
            return SL_EINVAL;
        }
        if (f->check && (err = f->check(text, why)) != SL_OK)
            return err;
        return store_string(text, dst);
    default:
        return SL_EINVAL;
    }
    if (err == SL_OK)
        err = check_bounds(f, n, text, why);
    if (err == SL_OK)
        store_uint(dst, f->width, n);
    return err;
}

static int convert_scalar(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                          const struct sl_cfg_node *v, bool from_file, void *dst)
{
    struct sl_buf text, why;
    sl_buf_init(&text);
    sl_buf_init(&why);
    int err = scalar_text(ld, f, v, from_file, &text);
    if (err)
        goto fail;
    if ((err = parse_store(f, &text, dst, &why)) == SL_ENOMEM) {
        ld->err = err;
        goto fail;
    }
    if (err)
        report_value(ld, v, &text, &why);
fail:
    sl_buf_dispose(&text);
    sl_buf_dispose(&why);
    return err;
}

/* ---- lists ---- */

static int convert_addr_list(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                             const struct sl_cfg_node *v, bool from_file, void *obj)
{
    struct sl_config_addr *arr = NULL;
    const struct sl_cfg_node **nodes = NULL;
    size_t n = 0, base = ld->path.len;
    bool bad = false;
    int err = SL_EINVAL;

    if (v->kind == SL_CFG_NODE_ALIAS)
        goto fail;
    if (v->kind == SL_CFG_NODE_MAPPING || sl_cfg_node_is_null(v)) {
        report_kind(ld, f, v);
        goto fail;
    }
    /* A single address is a one-element list. */
    n = v->kind == SL_CFG_NODE_SCALAR ? 1 : v->n_children;
    bad = !check_count(ld, f, v, n);
    arr = calloc(n ? n : 1, sizeof(*arr));
    nodes = calloc(n ? n : 1, sizeof(*nodes));
    if (arr == NULL || nodes == NULL) {
        err = ld->err = SL_ENOMEM;
        goto fail;
    }
    const struct sl_cfg_node *e = v->kind == SL_CFG_NODE_SCALAR ? v : v->first;
    for (size_t i = 0; i < n && e; i++, e = e->next) {
        nodes[i] = e;
        if (v->kind == SL_CFG_NODE_SEQUENCE)
            path_push_index(ld, i);
        if (convert_scalar(ld, f, e, from_file, &arr[i]) != SL_OK) {
            bad = true;
            nodes[i] = NULL;
        }
        for (size_t j = 0; nodes[i] && j < i; j++) {
            if (nodes[j] && sl_cfg_addr_overlaps(&arr[i], &arr[j])) {
                bool same = strcmp(arr[i].host, arr[j].host) == 0;
                sl_cfg_report(ld, e->line, e->col, "%s %.*s[%zu] (line %u)%s",
                              same ? "repeats" : "overlaps", (int)base, text_of(&ld->path), j,
                              nodes[j]->line,
                              same ? "" : "; a wildcard host takes the port on every address");
                bad = true;
                break;
            }
        }
        path_pop(ld, base);
    }
    if (bad || ld->err)
        goto fail;
    free(*(void **)member(obj, f));
    *(struct sl_config_addr **)member(obj, f) = arr;
    *count_member(obj, f) = n;
    free(nodes);
    return SL_OK;
fail:
    free(arr);
    free(nodes);
    return ld->err ? ld->err : err;
}

/* Fills string list field f from v; st (NULL for a default) learns where each element is. */
static int convert_string_list(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                               const struct sl_cfg_node *v, void *obj, struct field_state *st)
{
    bool from_file = st != NULL;
    struct elem_pos *pos = NULL;
    char **arr = NULL;
    size_t n = 0, base = ld->path.len;
    bool bad = false;
    int err = SL_EINVAL;

    if (v->kind == SL_CFG_NODE_ALIAS)
        goto fail;
    if (v->kind == SL_CFG_NODE_MAPPING) {
        report_kind(ld, f, v);
        goto fail;
    }
    /* One value is a one-element list; no value (every element commented
     * out) is an empty one, as for a list of mappings. */
    if (v->kind == SL_CFG_NODE_SCALAR)
        n = sl_cfg_node_is_null(v) ? 0 : 1;
    else
        n = v->n_children;
    bad = !check_count(ld, f, v, n);
    arr = calloc(n ? n : 1, sizeof(*arr));
    /* In the arena: finish callbacks read it later. */
    pos = from_file ? sl_arena_alloc(ld->arena, (n ? n : 1) * sizeof(*pos)) : NULL;
    if (arr == NULL || (from_file && pos == NULL)) {
        err = ld->err = SL_ENOMEM;
        goto fail;
    }
    const struct sl_cfg_node *e = n == 0 ? NULL : v->kind == SL_CFG_NODE_SCALAR ? v : v->first;
    for (size_t i = 0; i < n && e && !ld->err; i++, e = e->next) {
        if (pos)
            pos[i] = (struct elem_pos){e->line, e->col};
        if (v->kind == SL_CFG_NODE_SEQUENCE)
            path_push_index(ld, i);
        /* The field's own wording ("a value, or a list...") and default
         * do not fit one element: say what an element should be. */
        if (v->kind == SL_CFG_NODE_SEQUENCE && e->kind != SL_CFG_NODE_ALIAS &&
            (e->kind != SL_CFG_NODE_SCALAR || sl_cfg_node_is_null(e))) {
            if (sl_cfg_node_is_null(e))
                sl_cfg_report(ld, e->line, e->col,
                              "missing value: expected a single value (or no \"-\" entry)");
            else
                sl_cfg_report(ld, e->line, e->col, "expected a single value, got %s",
                              sl_cfg_node_kind_name(e));
            bad = true;
        } else if (convert_scalar(ld, f, e, from_file, &arr[i]) != SL_OK) {
            bad = true;
        }
        path_pop(ld, base);
    }
    if (bad || ld->err)
        goto fail;
    char ***dst = member(obj, f);
    for (size_t j = 0; *dst && j < *count_member(obj, f); j++)
        free((*dst)[j]);
    free(*dst);
    *dst = arr;
    *count_member(obj, f) = n;
    /* A single value is its own list: the field's place and path are the element's. */
    if (st && v->kind == SL_CFG_NODE_SEQUENCE) {
        st->elems = pos;
        st->n_elems = n;
    }
    return SL_OK;
fail:
    for (size_t j = 0; arr && j < n; j++)
        free(arr[j]);
    free(arr);
    return ld->err ? ld->err : err;
}

/* Reports a second element whose `unique` field repeats an earlier one's. */
static void check_unique(struct sl_cfg_load *ld, const struct sl_cfg_schema *sub, char *arr,
                         const struct entry_state *entries, size_t i)
{
    size_t u = 0;
    while (u < sub->n_fields && strcmp(sub->fields[u].name, sub->unique) != 0)
        u++;
    if (u == sub->n_fields || sub->fields[u].type != SL_CFG_STRING || entries[i].fields == NULL)
        return;
    const char *mine = *(char **)(arr + i * sub->size + sub->fields[u].offset);
    for (size_t j = 0; mine && j < i; j++) {
        const char *other = *(char **)(arr + j * sub->size + sub->fields[u].offset);
        if (entries[j].fields && other && strcmp(mine, other) == 0) {
            size_t base = ld->path.len;
            path_push_key(ld, sl_str_from_cstr(sub->unique));
            sl_cfg_report(ld, entries[i].fields[u].line, entries[i].fields[u].col,
                          "%s \"%s\" is already used by entry %zu (line %u)", sub->unique, mine, j,
                          entries[j].fields[u].line);
            path_pop(ld, base);
            return;
        }
    }
}

/* Fills list field f from v; st (NULL for a default) learns where each entry is. */
static int convert_object_list(struct sl_cfg_load *ld, const struct sl_cfg_field *f,
                               const struct sl_cfg_node *v, void *obj, struct field_state *st)
{
    const struct sl_cfg_schema *sub = f->sub;
    char *arr = NULL;
    struct entry_state *entries = NULL;
    size_t n = 0, built = 0, base = ld->path.len, before = ld->n_problems;
    bool bad = false;
    int err = SL_EINVAL;

    if (v->kind == SL_CFG_NODE_ALIAS)
        goto fail;
    if (v->kind == SL_CFG_NODE_SEQUENCE) {
        n = v->n_children;
    } else if (!sl_cfg_node_is_null(v)) {
        report_kind(ld, f, v);
        goto fail;
    }
    bad = !check_count(ld, f, v, n);
    if (n > SIZE_MAX / sub->size) {
        err = ld->err = SL_ENOMEM;
        goto fail;
    }
    arr = calloc(n ? n : 1, sub->size);
    /* In the arena: finish callbacks of enclosing objects read it later. */
    entries = sl_arena_alloc(ld->arena, (n ? n : 1) * sizeof(*entries));
    if (arr == NULL || entries == NULL) {
        err = ld->err = SL_ENOMEM;
        goto fail;
    }
    const struct sl_cfg_node *e = n ? v->first : NULL;
    for (size_t i = 0; i < n && e; i++, e = e->next) {
        void *elem = arr + i * sub->size;
        struct field_state *fields = NULL;
        built = i + 1;
        entries[i] = (struct entry_state){.line = e->line, .col = e->col};
        path_push_index(ld, i);
        if (e->kind == SL_CFG_NODE_ALIAS) {
            bad = true;
        } else if (e->kind != SL_CFG_NODE_MAPPING) {
            sl_cfg_report(ld, e->line, e->col, "expected a mapping (one entry of %s), got %s",
                          f->name, sl_cfg_node_kind_name(e));
            bad = true;
        } else if (!load_object(ld, sub, elem, e, &fields)) {
            bad = true;
        }
        entries[i].fields = fields;
        if (sub->unique)
            check_unique(ld, sub, arr, entries, i);
        path_pop(ld, base);
        if (ld->err)
            goto fail;
    }
    if (bad || ld->n_problems != before)
        goto fail;
    void **dst = member(obj, f);
    for (size_t j = 0; *dst && j < *count_member(obj, f); j++)
        sl_cfg_dispose_fields(sub, (char *)*dst + j * sub->size);
    free(*dst);
    *dst = arr;
    *count_member(obj, f) = n;
    if (st) {
        st->entries = entries;
        st->n_entries = n;
    }
    return SL_OK;
fail:
    for (size_t j = 0; arr && j < built; j++)
        sl_cfg_dispose_fields(sub, arr + j * sub->size);
    free(arr);
    return ld->err ? ld->err : err;
}

/* Sets field f of obj from node v (from the file, with its state st, or a
 * default's text with st NULL). */
static int convert(struct sl_cfg_load *ld, const struct sl_cfg_field *f, void *obj,
                   const struct sl_cfg_node *v, struct field_state *st)
{
    bool from_file = st != NULL;
    switch (f->type) {
    case SL_CFG_ADDR_LIST:
        return convert_addr_list(ld, f, v, from_file, obj);
    case SL_CFG_STRING_LIST:
        return convert_string_list(ld, f, v, obj, st);
    case SL_CFG_OBJECT_LIST:
        return convert_object_list(ld, f, v, obj, st);
    default:
        return convert_scalar(ld, f, v, from_file, member(obj, f));
    }
}

static void apply_defaults(struct sl_cfg_load *ld, const struct sl_cfg_schema *schema, void *obj)
{
    size_t base = ld->path.len;
    for (size_t i = 0; i < schema->n_fields; i++) {
        const struct sl_cfg_field *f = &schema->fields[i];
        if (f->def == NULL)
            continue;
        struct sl_cfg_node v = {.kind = SL_CFG_NODE_SCALAR, .text = f->def, .len = strlen(f->def)};
        path_push_key(ld, sl_str_from_cstr(f->name));
        convert(ld, f, obj, &v, NULL);
        path_pop(ld, base);
    }
}

/* ---- mappings ---- */

/* How key (at dotted prefix rel) relates to field name. */
enum key_match { KEY_NONE, KEY_FIELD, KEY_SECTION };

static enum key_match match_key(const char *name, struct sl_str rel, struct sl_str key)
{
    size_t nlen = strlen(name);
    if (rel.len) {
        if (nlen <= rel.len || memcmp(name, rel.base, rel.len) != 0 || name[rel.len] != '.')
            return KEY_NONE;
        name += rel.len + 1;
        nlen -= rel.len + 1;
    }
    if (nlen < key.len || memcmp(name, key.base, key.len) != 0)
        return KEY_NONE;
    if (nlen == key.len)
        return KEY_FIELD;
    return name[key.len] == '.' ? KEY_SECTION : KEY_NONE;
}

/* The keys valid in the mapping at rel (each once), into names. */
static size_t keys_at(struct sl_cfg_load *ld, const struct sl_cfg_schema *schema, struct sl_str rel,
                      const char **names)
{
    size_t n = 0;
    for (size_t i = 0; i < schema->n_fields; i++) {
        const char *name = schema->fields[i].name;
        if (rel.len) {
            if (strlen(name) <= rel.len || memcmp(name, rel.base, rel.len) != 0 ||
                name[rel.len] != '.')
                continue;
            name += rel.len + 1;
        }
        const char *dot = strchr(name, '.');
        struct sl_str k = {name, dot ? (size_t)(dot - name) : strlen(name)};
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = sl_str_eq(k, sl_str_from_cstr(names[j]));
        if (!seen) {
            char *copy = sl_arena_strdup(ld->arena, k);
            if (copy == NULL) {
                ld->err = SL_ENOMEM;
                break;
            }
            names[n++] = copy;
        }
    }
    return n;
}

static void report_unknown(struct sl_cfg_load *ld, const struct sl_cfg_schema *schema,
                           struct sl_str rel, const struct sl_cfg_node *key)
{
    struct sl_str k = {key->text, key->len};
    struct sl_buf msg, quoted;
    const char **names = sl_arena_alloc(ld->arena, (schema->n_fields + 1) * sizeof(*names));
    sl_buf_init(&msg);
    sl_buf_init(&quoted);
    if (names == NULL) {
        ld->err = SL_ENOMEM;
        return;
    }
    size_t n = keys_at(ld, schema, rel, names);
    const char *near = sl_cfg_suggest(k, names, n);
    sl_cfg_quote(&quoted, k);
    if (near) {
        sl_buf_appendf(&msg, " (did you mean \"%s\"?)", near);
        goto out;
    }
    /* A key that exists, but in another section. */
    for (size_t i = 0; i < schema->n_fields; i++) {
        const char *name = schema->fields[i].name, *dot = strrchr(name, '.');
        if (dot && sl_str_eq(k, sl_str_from_cstr(dot + 1))) {
            sl_buf_appendf(&msg, " (it belongs in the \"%.*s:\" section)", (int)(dot - name), name);
            goto out;
        }
    }
    for (size_t i = 0; i < schema->n_fields && memchr(k.base, '.', k.len); i++) {
        const char *name = schema->fields[i].name;
        if (match_key(name, rel, k) != KEY_NONE) {
            const char *dot = memchr(k.base, '.', k.len);
            sl_buf_appendf(&msg,
                           " (write it as nested mappings: \"%.*s:\", then \"%s: ...\" "
                           "indented on the next line)",
                           (int)(dot - k.base), k.base, dot + 1);
            goto out;
        }
    }
    sl_buf_appendf(&msg, "; valid keys here: ");
    for (size_t i = 0; i < n; i++)
        sl_buf_appendf(&msg, "%s%s", i ? ", " : "", names[i]);
out:
    sl_cfg_report(ld, key->line, key->col, "unknown key %s%s", text_of(&quoted), text_of(&msg));
    sl_buf_dispose(&msg);
    sl_buf_dispose(&quoted);
}

/* A key already seen in one mapping, to catch duplicates. */
struct seen_key {
    struct sl_str key;
    unsigned line;
};

static void walk_mapping(struct sl_cfg_load *ld, const struct sl_cfg_schema *schema, void *obj,
                         struct field_state *states, struct sl_str rel,
                         const struct sl_cfg_node *map)
{
    /* Only known keys are remembered, so this stays small. */
    struct seen_key *seen = sl_arena_alloc(ld->arena, (schema->n_fields + 1) * sizeof(*seen));
    size_t n_seen = 0;
    if (seen == NULL) {
        ld->err = SL_ENOMEM;
        return;
    }
    const struct sl_cfg_node *key = map->first, *v;
    for (; key && (v = key->next) != NULL && !ld->err; key = v->next) {
        size_t base = ld->path.len;
        if (key->kind == SL_CFG_NODE_ALIAS)
            continue;
        if (key->kind != SL_CFG_NODE_SCALAR) {
            sl_cfg_report(ld, key->line, key->col, "keys must be plain names, got %s",
                          sl_cfg_node_kind_name(key));
            continue;
        }
        struct sl_str k = {key->text, key->len};
        enum key_match m = KEY_NONE;
        size_t fi = 0;
        /* Dotted keys are not a shorthand for sections: one spelling only. */
        bool plain_name = k.len > 0 && !memchr(k.base, '.', k.len) && !memchr(k.base, 0, k.len);
        for (size_t i = 0; plain_name && i < schema->n_fields && m != KEY_FIELD; i++) {
            enum key_match mi = match_key(schema->fields[i].name, rel, k);
            if (mi != KEY_NONE) {
                m = mi;
                fi = i;
            }
        }
        path_push_key(ld, k);
        if (m == KEY_NONE) {
            report_unknown(ld, schema, rel, key);
            goto next;
        }
        size_t j = 0;
        while (j < n_seen && !sl_str_eq(seen[j].key, k))
            j++;
        if (j < n_seen) {
            sl_cfg_report(ld, key->line, key->col,
                          "duplicate key \"%.*s\" (first given at line %u)", (int)k.len, k.base,
                          seen[j].line);
            goto next;
        }
        if (n_seen <= schema->n_fields)
            seen[n_seen++] = (struct seen_key){k, key->line};
        if (m == KEY_FIELD) {
            const struct sl_cfg_field *f = &schema->fields[fi];
            size_t before = ld->n_problems;
            states[fi].line = v->line;
            states[fi].col = v->col;
            convert(ld, f, obj, v, &states[fi]);
            /* An alias was reported when the tree was read: the field has no value. */
            states[fi].failed = ld->n_problems != before || v->kind == SL_CFG_NODE_ALIAS;
        } else if (v->kind == SL_CFG_NODE_MAPPING) {
            struct sl_buf sub;
            sl_buf_init(&sub);
            if (sl_buf_appendf(&sub, "%.*s%s%.*s", (int)rel.len, rel.base ? rel.base : "",
                               rel.len ? "." : "", (int)k.len, k.base) != SL_OK) {
                ld->err = SL_ENOMEM;
            } else {
                walk_mapping(ld, schema, obj, states, (struct sl_str){sub.base, sub.len}, v);
            }
            sl_buf_dispose(&sub);
        } else if (v->kind != SL_CFG_NODE_ALIAS && !sl_cfg_node_is_null(v)) {
            /* A null section ("limits:" with every key commented out) is empty. */
            sl_cfg_report(ld, v->line, v->col,
                          "expected a mapping of settings (like \"%s: ...\" on the next line, "
                          "indented), got %s",
                          schema->fields[fi].name + rel.len + (rel.len ? 1 : 0) + k.len + 1,
                          sl_cfg_node_kind_name(v));
        }
    next:
        path_pop(ld, base);
    }
}

/*
 * Fills obj: defaults, then map's keys (map may be NULL), then required keys
 * and the schema's finish callback. ld->path holds obj's path. Returns true
 * when no problem was found; *states_out (if given) gets the field states.
 */
static bool load_object(struct sl_cfg_load *ld, const struct sl_cfg_schema *schema, void *obj,
                        const struct sl_cfg_node *map, struct field_state **states_out)
{
    size_t before = ld->n_problems;
    struct field_state *states =
        sl_arena_alloc(ld->arena, (schema->n_fields + 1) * sizeof(*states));
    if (states == NULL) {
        ld->err = SL_ENOMEM;
        return false;
    }
    memset(states, 0, (schema->n_fields + 1) * sizeof(*states));
    if (states_out)
        *states_out = states;
    apply_defaults(ld, schema, obj);
    if (map)
        walk_mapping(ld, schema, obj, states, SL_STR_NULL, map);
    for (size_t i = 0; i < schema->n_fields && !ld->err; i++)
        if (schema->fields[i].required && states[i].line == 0)
            sl_cfg_report(ld, map ? map->line : 0, map ? map->col : 0,
                          "missing required key \"%s\"", schema->fields[i].name);
    if (schema->finish && !ld->err) {
        struct sl_cfg_check chk = {
            .ld = ld,
            .schema = schema,
            .states = states,
            .line = map ? map->line : 0,
            .col = map ? map->col : 0,
        };
        schema->finish(obj, &chk);
    }
    /* A field whose value was an alias (reported with the tree) has none: the object is
     * not usable either, though nothing new was reported here. */
    bool failed = false;
    for (size_t i = 0; i < schema->n_fields; i++)
        failed = failed || states[i].failed;
    return ld->n_problems == before && !ld->err && !failed;
}

/* ---- finish callbacks' view ---- */

static const struct field_state *state_of(const struct sl_cfg_check *chk, const char *name)
{
    for (size_t i = 0; i < chk->schema->n_fields; i++)
        if (strcmp(chk->schema->fields[i].name, name) == 0)
            return &chk->states[i];
    return NULL;
}

bool sl_cfg_check_in_file(const struct sl_cfg_check *chk, const char *name)
{
    const struct field_state *st = state_of(chk, name);
    return st && st->line != 0;
}

bool sl_cfg_check_usable(const struct sl_cfg_check *chk, const char *name)
{
    const struct field_state *st = state_of(chk, name);
    return st && !st->failed;
}

void sl_cfg_check_nomem(struct sl_cfg_check *chk)
{
    chk->ld->err = SL_ENOMEM;
}

void sl_cfg_check_error(struct sl_cfg_check *chk, const char *name, const char *fmt, ...)
{
    const struct field_state *st = state_of(chk, name);
    struct sl_cfg_load *ld = chk->ld;
    size_t base = ld->path.len;
    va_list ap;
    path_push_key(ld, sl_str_from_cstr(name));
    va_start(ap, fmt);
    if (st && st->line)
        sl_cfg_vreport(ld, st->line, st->col, fmt, ap);
    else
        sl_cfg_vreport(ld, chk->line, chk->col, fmt, ap);
    va_end(ap);
    path_pop(ld, base);
}

/* Reports at field `name` of entry i of list `list` (element elem of it when
 * elem != SIZE_MAX), at the most precise place known. */
static void vreport_in(struct sl_cfg_check *chk, const char *list, size_t i, const char *name,
                       size_t elem, const char *fmt, va_list ap)
{
    const struct sl_cfg_field *lf = NULL;
    const struct field_state *ls = NULL;
    struct sl_cfg_load *ld = chk->ld;
    size_t base = ld->path.len;
    unsigned line = chk->line, col = chk->col;
    bool indexed = false;
    for (size_t k = 0; k < chk->schema->n_fields && lf == NULL; k++) {
        if (strcmp(chk->schema->fields[k].name, list) == 0) {
            lf = &chk->schema->fields[k];
            ls = &chk->states[k];
        }
    }
    /* The most precise place known: the element, the field, its entry, the
     * list, the object. */
    if (ls && ls->line) {
        line = ls->line;
        col = ls->col;
    }
    if (ls && i < ls->n_entries) {
        const struct entry_state *e = &ls->entries[i];
        line = e->line;
        col = e->col;
        for (size_t k = 0; e->fields && lf->sub && k < lf->sub->n_fields; k++) {
            const struct field_state *fs = &e->fields[k];
            if (strcmp(lf->sub->fields[k].name, name) != 0 || fs->line == 0)
                continue;
            line = fs->line;
            col = fs->col;
            if (elem < fs->n_elems && fs->elems) {
                line = fs->elems[elem].line;
                col = fs->elems[elem].col;
                indexed = true;
            }
        }
    }
    path_push_key(ld, sl_str_from_cstr(list));
    path_push_index(ld, i);
    path_push_key(ld, sl_str_from_cstr(name));
    if (indexed)
        path_push_index(ld, elem);
    sl_cfg_vreport(ld, line, col, fmt, ap);
    path_pop(ld, base);
}

void sl_cfg_check_error_in(struct sl_cfg_check *chk, const char *list, size_t i, const char *name,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_in(chk, list, i, name, SIZE_MAX, fmt, ap);
    va_end(ap);
}

void sl_cfg_check_error_in_elem(struct sl_cfg_check *chk, const char *list, size_t i,
                                const char *name, size_t elem, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_in(chk, list, i, name, elem, fmt, ap);
    va_end(ap);
}

/* ---- entry point ---- */

int sl_cfg_load_schema(const struct sl_cfg_schema *schema, const char *name, const char *data,
                       size_t len, void *obj, struct sl_config_errors *errs)
{
    struct sl_arena arena;
    struct sl_cfg_load ld = {.file = name, .errs = errs, .arena = &arena};
    struct sl_cfg_node *root = NULL;
    sl_arena_init(&arena, 16384);
    sl_buf_init(&ld.path);

    if (len > SL_CFG_MAX_FILE_BYTES) {
        sl_cfg_report(&ld, 0, 0, "the file is larger than %u MiB", SL_CFG_MAX_FILE_BYTES >> 20);
        goto out;
    }
    if (sl_cfg_tree_parse(&ld, data, len, &root) != SL_OK)
        goto out;
    if (root && sl_cfg_node_is_null(root))
        root = NULL; /* an empty document: every default */
    if (root && root->kind == SL_CFG_NODE_ALIAS)
        goto out;
    if (root && root->kind != SL_CFG_NODE_MAPPING) {
        sl_cfg_report(&ld, root->line, root->col,
                      "the top level must be a mapping of keys (like \"listen: ...\"), got %s",
                      sl_cfg_node_kind_name(root));
        goto out;
    }
    load_object(&ld, schema, obj, root, NULL);
out:
    sl_buf_dispose(&ld.path);
    sl_arena_dispose(&arena);
    if (ld.err)
        return ld.err;
    return ld.n_problems ? SL_EINVAL : SL_OK;
}
