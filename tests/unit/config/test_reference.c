/* docs/config.md must be what the schema generates, and the schema itself
 * must be consistent (every default valid, every field documented). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
#include "config_test.h"

static const char doc_path[] = "docs/config.md";

static void test_doc_is_current(void **state)
{
    struct sl_buf want, have;
    sl_buf_init(&want);
    sl_buf_init(&have);
    assert_int_equal(sl_config_write_reference(&want), SL_OK);
    FILE *f = fopen(doc_path, "rb");
    if (f) {
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            sl_buf_append(&have, chunk, n);
        fclose(f);
    }
    if (f == NULL || have.len != want.len || memcmp(have.base, want.base, want.len) != 0) {
        size_t at = 0;
        while (have.base && at < have.len && at < want.len && have.base[at] == want.base[at])
            at++;
        fail_msg("%s is %s (first difference at byte %zu); regenerate it with:\n"
                 "    build/dev/sluice config-reference > docs/config.md\n"
                 "(or `make docs`) and commit the result",
                 doc_path, f ? "stale" : "missing", at);
    }
    sl_buf_dispose(&want);
    sl_buf_dispose(&have);
}

/* The section f is listed under is declared. */
static bool in_section(const struct sl_cfg_schema *s, const struct sl_cfg_field *f)
{
    const char *name = f->section ? f->section : f->name;
    const char *dot = f->section ? name + strlen(name) : strrchr(name, '.');
    size_t len = dot ? (size_t)(dot - name) : 0;
    for (size_t i = 0; i < s->n_sections; i++)
        if (strlen(s->sections[i].name) == len && strncmp(s->sections[i].name, name, len) == 0)
            return true;
    return false;
}

/* Checks every field of schema (and, recursively, of its lists' entries),
 * whose keys appear in the reference as prefix + name. */
static void check_fields(const struct sl_cfg_schema *s, const char *prefix, const char *doc,
                         bool top)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        const struct sl_cfg_field *f = &s->fields[i];
        char key[256];
        snprintf(key, sizeof(key), "| `%s%s` |", prefix, f->name);
        if (top && !in_section(s, f))
            fail_msg("%s: no section declared for it", f->name);
        if (!top && f->section)
            fail_msg("%s%s: only top-level keys can move to another section", prefix, f->name);
        if (strstr(doc, key) == NULL)
            fail_msg("%s%s: missing from the reference", prefix, f->name);
        if (f->doc == NULL || f->doc[0] == '\0')
            fail_msg("%s%s: no doc string", prefix, f->name);
        if (f->min > f->max)
            fail_msg("%s%s: min > max", prefix, f->name);
        /* Without a default, only a list (empty) or a string (not set) makes sense. */
        if (f->def == NULL && !f->required && f->type != SL_CFG_OBJECT_LIST &&
            f->type != SL_CFG_STRING_LIST && f->type != SL_CFG_STRING)
            fail_msg("%s%s: neither a default nor required", prefix, f->name);
        if (f->required && f->def != NULL)
            fail_msg("%s%s: required, yet with a default", prefix, f->name);
        switch (f->type) {
        case SL_CFG_INT:
        case SL_CFG_SIZE:
        case SL_CFG_DURATION:
            if (f->width != 1 && f->width != 2 && f->width != 4 && f->width != 8)
                fail_msg("%s%s: member width %zu", prefix, f->name, f->width);
            if (f->width < 8 && f->max >= (1ull << (8 * f->width)))
                fail_msg("%s%s: max does not fit the member", prefix, f->name);
            break;
        case SL_CFG_RATIO:
            if (f->width != sizeof(uint32_t) || f->max > 1000000)
                fail_msg("%s%s: ratio needs a uint32_t member and max <= 1000000", prefix, f->name);
            break;
        case SL_CFG_ENUM:
            if (f->width != sizeof(int) || f->choices == NULL)
                fail_msg("%s%s: enum needs an int member and choices", prefix, f->name);
            break;
        case SL_CFG_BOOL:
            if (f->width != sizeof(bool))
                fail_msg("%s%s: bool member expected", prefix, f->name);
            break;
        case SL_CFG_STRING:
            if (f->width != sizeof(char *))
                fail_msg("%s%s: char * member expected", prefix, f->name);
            break;
        case SL_CFG_STRING_LIST:
            if (f->width != sizeof(char **))
                fail_msg("%s%s: char ** member expected", prefix, f->name);
            break;
        case SL_CFG_OBJECT_LIST: {
            if (f->sub == NULL || f->sub->size == 0)
                fail_msg("%s%s: list of mappings without a sub schema", prefix, f->name);
            char sub[256];
            snprintf(sub, sizeof(sub), "%s%s[].", prefix, f->name);
            check_fields(f->sub, sub, doc, false);
            break;
        }
        default:
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(f->name, s->fields[j].name) == 0)
                fail_msg("%s%s: declared twice", prefix, f->name);
    }
}

static void test_schema_consistent(void **state)
{
    struct sl_buf doc;
    sl_buf_init(&doc);
    assert_int_equal(sl_config_write_reference(&doc), SL_OK);
    check_fields(&sl_config_schema, "", doc.base, true);
    sl_buf_dispose(&doc);

    /* Every default parses and lies within its bounds: loading nothing succeeds, and
     * so does a list entry with nothing but its required keys. */
    static const char *const minimal[] = {
        "",
        "simulator:\n"
        "  endpoints:\n"
        "    - name: e\n"
        "      listen: 127.0.0.1:8101\n"
        "      deployments: [{name: d, model: m}]\n"
        "      faults: [{kind: none}]\n",
        "backends: [{name: b, url: 'http://127.0.0.1:1', model: m}]\n"
        "routes: [{name: r, backend: b}]\n"
        "clients: [{name: c, keys: "
        "'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'}]\n",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(minimal); i++)
        sl_config_unref(load_ok(minimal[i]));
}

static void test_reference_shape(void **state)
{
    struct sl_buf doc;
    sl_buf_init(&doc);
    assert_int_equal(sl_config_write_reference(&doc), SL_OK);
    assert_true(strncmp(doc.base, "# sluice configuration reference\n", 33) == 0);
    assert_non_null(strstr(doc.base, "sluice check-config FILE"));
    assert_non_null(strstr(doc.base, "`FILE:LINE:COL: key.path: message`"));
    assert_non_null(strstr(doc.base, "## `limits`: connections and requests"));
    assert_non_null(strstr(doc.base, "| `limits.max_body_bytes` | size | `16MiB` | 0 to 1GiB | "));
    assert_non_null(strstr(doc.base, "| `log.level` | one of `debug`, `info`, `warn`, `error` | "
                                     "`info` |"));
    assert_non_null(strstr(doc.base, "## `simulator`: simulated Azure OpenAI endpoints"));
    assert_non_null(strstr(doc.base, "`sluice sim --config FILE` serves these endpoints"));
    assert_non_null(strstr(doc.base, "[simulator.md](simulator.md)"));
    assert_non_null(strstr(doc.base, "### Each entry of `simulator.endpoints[].deployments`"));
    assert_non_null(strstr(doc.base, "| `simulator.endpoints[].api_keys` | string, or list of "
                                     "strings | none | 0 to 64 entries |"));
    assert_non_null(strstr(doc.base, "| `simulator.endpoints[].faults[].probability` | ratio | "
                                     "`1` | 0 to 1 |"));
    assert_non_null(strstr(doc.base, "| `simulator.endpoints[].faults[].deployment` | string | "
                                     "none |"));
    /* The gateway's lists have their own section, before the simulator's. */
    const char *gw = strstr(doc.base, "## `backends`, `routes` and `clients`: the gateway");
    assert_non_null(gw);
    assert_true(gw < strstr(doc.base, "## `simulator`"));
    assert_non_null(strstr(gw, "| `backend_header` | boolean | `true` |"));
    assert_non_null(strstr(gw, "### Each entry of `backends`\n\nA backend is one model"));
    assert_non_null(strstr(gw, "| `backends[].url` | string | required | 1 to 2048 characters |"));
    assert_non_null(strstr(gw, "| `backends[].total_timeout` | duration | `10m` | 0 to 24h |"));
    assert_non_null(strstr(gw, "| `routes[].name` | string | required | 1 to 128 characters |"));
    assert_non_null(strstr(gw, "| `clients[].keys` | string, or list of strings | none | 0 "
                               "to 16 entries |"));
    assert_non_null(strstr(gw, "| `clients[].caps.max_tokens_mode` | one of `clamp`, `reject` | "
                               "`clamp` |"));
    assert_non_null(strstr(gw, "| `prices[].output` | amount | required |"));
    /* ...and not in the top-level table as well. */
    const char *top = strstr(doc.base, "## Top-level keys");
    assert_non_null(top);
    const char *next = strstr(top + 1, "\n## ");
    assert_non_null(next);
    const char *row = strstr(top, "| `backends` |");
    assert_true(row == NULL || row > next);
    assert_int_equal(doc.base[doc.len - 1], '\n');
    sl_buf_dispose(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_is_current),
        cmocka_unit_test_setup_teardown(test_schema_consistent, setup, teardown),
        cmocka_unit_test(test_reference_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
