/*
 * Fault rules: which failure, if any, a request suffers. Rules are tried in
 * order; the first one that is not used up, whose deployment filter matches
 * and whose probability roll hits, applies and is used once. A `none` rule
 * serves the request normally, so scripted sequences such as
 * [429 x2, none x1, 503 x1] work. Rolls come from a seeded generator, so a
 * fixed seed and a fixed request order give the same faults every run.
 */
#include "sim/internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[SL_SIM_FAULT_KINDS] = {
    [SL_SIM_FAULT_NONE] = "none",
    [SL_SIM_FAULT_STATUS] = "status",
    [SL_SIM_FAULT_RESET] = "reset",
    [SL_SIM_FAULT_REFUSE] = "refuse",
    [SL_SIM_FAULT_STALL_HEADERS] = "stall_headers",
    [SL_SIM_FAULT_STALL_STREAM] = "stall_stream",
    [SL_SIM_FAULT_CUT_STREAM] = "cut_stream",
    [SL_SIM_FAULT_TRICKLE] = "trickle",
    [SL_SIM_FAULT_MALFORMED_JSON] = "malformed_json",
};

const char *sl_sim_fault_kind_name(enum sl_sim_fault_kind k)
{
    return (unsigned)k < SL_SIM_FAULT_KINDS ? kind_names[k] : "unknown";
}

int sl_sim_fault_kind_parse(struct sl_str name, enum sl_sim_fault_kind *out)
{
    for (size_t i = 0; i < SL_SIM_FAULT_KINDS; i++) {
        if (sl_str_eq(name, sl_str_from_cstr(kind_names[i]))) {
            *out = (enum sl_sim_fault_kind)i;
            return SL_OK;
        }
    }
    return SL_EINVAL;
}

bool sl_sim_rules_pick(struct sl_sim_rule *rules, size_t n, struct sl_str deployment, uint64_t *rng,
                       struct sl_sim_fault *out)
{
    for (size_t i = 0; i < n; i++) {
        struct sl_sim_rule *r = &rules[i];
        if (r->count && r->used >= r->count)
            continue;
        if (r->deployment && !sl_str_eq(deployment, sl_str_from_cstr(r->deployment)))
            continue;
        /* Certain rules do not roll, so they leave the sequence of others alone. */
        if (r->probability_ppm < 1000000 &&
            sl_sim_rand_below(rng, 1000000) >= (uint64_t)r->probability_ppm)
            continue;
        r->used++;
        *out =
            (struct sl_sim_fault){r->kind, r->status, r->retry_after_ms, r->duration_ms, r->after};
        return true;
    }
    return false;
}

void sl_sim_rules_free(struct sl_sim_rule *rules, size_t n)
{
    for (size_t i = 0; rules && i < n; i++)
        free(rules[i].deployment);
    free(rules);
}

static char *dup_cstr(const char *s, size_t len)
{
    char *c = malloc(len + 1);
    if (c) {
        memcpy(c, s, len);
        c[len] = '\0';
    }
    return c;
}

int sl_sim_rules_from_config(const struct sl_config_sim_fault *f, size_t n,
                             struct sl_sim_rule **out)
{
    struct sl_sim_rule *rules = calloc(n ? n : 1, sizeof(*rules));
    *out = NULL;
    if (rules == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        rules[i] = (struct sl_sim_rule){
            .kind = f[i].kind,
            .status = f[i].status,
            .retry_after_ms = f[i].retry_after_ms,
            .probability_ppm = f[i].probability_ppm,
            .count = f[i].count,
            .duration_ms = f[i].duration_ms,
            .after = f[i].after,
        };
        if (f[i].deployment &&
            (rules[i].deployment = dup_cstr(f[i].deployment, strlen(f[i].deployment))) == NULL)
            goto fail;
    }
    *out = rules;
    return SL_OK;
fail:
    sl_sim_rules_free(rules, n);
    return SL_ENOMEM;
}

/* An optional non-negative integer member; false (with why set) when invalid. */
static bool get_count(json_t *obj, const char *key, uint64_t *out, char *why, size_t why_len,
                      size_t i)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(why, why_len, "faults[%zu].%s: expected a non-negative integer", i, key);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static const char *const rule_keys[] = {"kind",  "status",     "retry_after_ms", "probability",
                                        "count", "deployment", "duration_ms",    "after"};

static int rule_from_json(json_t *o, size_t i, struct sl_sim_rule *r, char *why, size_t why_len)
{
    const char *key;
    json_t *v;
    if (!json_is_object(o)) {
        snprintf(why, why_len, "faults[%zu]: expected an object", i);
        return SL_EINVAL;
    }
    json_object_foreach(o, key, v)
    {
        bool known = false;
        for (size_t k = 0; k < SL_ARRAY_LEN(rule_keys) && !known; k++)
            known = strcmp(key, rule_keys[k]) == 0;
        if (!known) {
            snprintf(why, why_len, "faults[%zu]: unknown field '%.64s'", i, key);
            return SL_EINVAL;
        }
    }
    json_t *kind = json_object_get(o, "kind");
    if (!json_is_string(kind) ||
        sl_sim_fault_kind_parse((struct sl_str){json_string_value(kind), json_string_length(kind)},
                                &r->kind) != SL_OK) {
        snprintf(why, why_len,
                 "faults[%zu].kind: expected one of none, status, reset, refuse, stall_headers, "
                 "stall_stream, cut_stream, trickle, malformed_json",
                 i);
        return SL_EINVAL;
    }
    /* The same defaults as a rule in the configuration file (schema_sim.c). */
    r->status = r->kind == SL_SIM_FAULT_STATUS ? 500 : 0;
    r->probability_ppm = 1000000;
    r->duration_ms = 10000;
    r->after = 3;
    if (!get_count(o, "status", &r->status, why, why_len, i) ||
        !get_count(o, "retry_after_ms", &r->retry_after_ms, why, why_len, i) ||
        !get_count(o, "count", &r->count, why, why_len, i) ||
        !get_count(o, "duration_ms", &r->duration_ms, why, why_len, i) ||
        !get_count(o, "after", &r->after, why, why_len, i))
        return SL_EINVAL;
    if (r->kind == SL_SIM_FAULT_STATUS && (r->status < 400 || r->status > 599)) {
        snprintf(why, why_len, "faults[%zu].status: expected 400..599", i);
        return SL_EINVAL;
    }
    json_t *p = json_object_get(o, "probability");
    if (p && !json_is_null(p)) {
        double d = json_number_value(p);
        if (!json_is_number(p) || !(d >= 0.0 && d <= 1.0)) {
            snprintf(why, why_len, "faults[%zu].probability: expected a number from 0 to 1", i);
            return SL_EINVAL;
        }
        r->probability_ppm = (uint32_t)lround(d * 1000000.0);
    }
    json_t *d = json_object_get(o, "deployment");
    if (d && !json_is_null(d)) {
        if (!json_is_string(d)) {
            snprintf(why, why_len, "faults[%zu].deployment: expected a string", i);
            return SL_EINVAL;
        }
        if ((r->deployment = dup_cstr(json_string_value(d), json_string_length(d))) == NULL)
            return SL_ENOMEM;
    }
    return SL_OK;
}

int sl_sim_rules_from_json(const char *json, size_t len, struct sl_str *endpoint,
                           struct sl_arena *arena, struct sl_sim_rule **out, size_t *n, char *why,
                           size_t why_len)
{
    json_error_t jerr;
    struct sl_sim_rule *rules = NULL;
    size_t count = 0;
    int err = SL_EINVAL;
    *out = NULL;
    *n = 0;
    *endpoint = SL_STR_NULL;
    json_t *root = json_loadb(json ? json : "", len, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(why, why_len,
                 "the body must be a JSON object: {\"endpoint\": ..., \"faults\": "
                 "[...]}");
        goto fail;
    }
    json_t *ep = json_object_get(root, "endpoint");
    if (ep && !json_is_null(ep)) {
        if (!json_is_string(ep)) {
            snprintf(why, why_len, "endpoint: expected a string");
            goto fail;
        }
        char *c =
            sl_arena_strdup(arena, (struct sl_str){json_string_value(ep), json_string_length(ep)});
        if (c == NULL) {
            err = SL_ENOMEM;
            goto fail;
        }
        *endpoint = (struct sl_str){c, json_string_length(ep)};
    }
    json_t *arr = json_object_get(root, "faults");
    if (!json_is_array(arr)) {
        snprintf(why, why_len, "faults: expected an array of rules");
        goto fail;
    }
    count = json_array_size(arr);
    rules = calloc(count ? count : 1, sizeof(*rules));
    if (rules == NULL) {
        err = SL_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < count; i++)
        if ((err = rule_from_json(json_array_get(arr, i), i, &rules[i], why, why_len)) != SL_OK)
            goto fail;
    json_decref(root);
    *out = rules;
    *n = count;
    return SL_OK;
fail:
    sl_sim_rules_free(rules, count);
    json_decref(root);
    return err;
}

int sl_sim_rules_append_json(struct sl_buf *b, const struct sl_sim_rule *rules, size_t n)
{
    int rc = SL_SIM_LIT(b, "[");
    for (size_t i = 0; i < n; i++) {
        const struct sl_sim_rule *r = &rules[i];
        rc |=
            sl_buf_appendf(b, "%s{\"kind\":\"%s\"", i ? "," : "", sl_sim_fault_kind_name(r->kind));
        if (r->kind == SL_SIM_FAULT_STATUS)
            rc |= sl_buf_appendf(b, ",\"status\":%llu", (unsigned long long)r->status);
        rc |= sl_buf_appendf(b,
                             ",\"retry_after_ms\":%llu,\"probability\":%.6f,\"count\":%llu,"
                             "\"used\":%llu,\"duration_ms\":%llu,\"after\":%llu,\"deployment\":",
                             (unsigned long long)r->retry_after_ms, r->probability_ppm / 1e6,
                             (unsigned long long)r->count, (unsigned long long)r->used,
                             (unsigned long long)r->duration_ms, (unsigned long long)r->after);
        if (r->deployment) {
            rc |= SL_SIM_LIT(b, "\"");
            rc |= sl_buf_append_json_escaped(b, sl_str_from_cstr(r->deployment));
            rc |= SL_SIM_LIT(b, "\"}");
        } else {
            rc |= SL_SIM_LIT(b, "null}");
        }
    }
    rc |= SL_SIM_LIT(b, "]");
    return rc ? SL_ENOMEM : SL_OK;
}
