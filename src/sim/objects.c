/*
 * Everything but inference: threads and assistants (create, retrieve,
 * delete), stored responses (retrieve, delete) and the model list. Ids are
 * per endpoint (see store.c), so another endpoint answers 404, as another
 * Azure resource would.
 */
#include "sim/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIT SL_SIM_LIT

struct object_kind {
    enum sl_sim_object kind;
    const char *name;    /* "thread" */
    const char *deleted; /* object of the deletion answer */
    const char *missing; /* 404 message format, with the id */
};

static const struct object_kind kinds[] = {
    {SL_SIM_OBJ_RESPONSE, "response", "response", "Response with id '%.*s' not found."},
    {SL_SIM_OBJ_THREAD, "thread", "thread.deleted", "No thread found with id '%.*s'."},
    {SL_SIM_OBJ_ASSISTANT, "assistant", "assistant.deleted", "No assistant found with id '%.*s'."},
};

static void reply_buf(struct sl_sim_call *c, struct sl_buf *b, int rc)
{
    if (rc)
        sl_sim_reply_openai_error(c, 500, "The server is out of memory.", "server_error", NULL,
                                  NULL);
    else
        sl_sim_reply_body(c, 200, (struct sl_str){b->base, b->len});
    sl_buf_dispose(b);
}

static void retrieve_or_delete(struct sl_sim_call *c, const struct object_kind *k, struct sl_str id)
{
    struct sl_str body;
    int err;
    bool del = sl_str_eq(c->req->head.method, SL_STR("DELETE"));
    if (del)
        err = sl_sim_store_delete(&c->ep->store, k->kind, id);
    else
        err = sl_sim_store_get(&c->ep->store, k->kind, id, c->req->arena, &body, NULL);
    if (err == SL_ENOTFOUND) {
        char msg[200];
        snprintf(msg, sizeof(msg), k->missing, (int)SL_MIN(id.len, 100), id.base);
        sl_sim_reply_openai_error(c, 404, msg, "invalid_request_error", NULL, NULL);
        return;
    }
    if (err) {
        sl_sim_reply_openai_error(c, 500, "The server is out of memory.", "server_error", NULL,
                                  NULL);
        return;
    }
    if (!del) {
        sl_sim_reply_body(c, 200, body);
        return;
    }
    struct sl_buf b;
    sl_buf_init(&b);
    int rc = LIT(&b, "{\"id\":\"");
    rc |= sl_buf_append_json_escaped(&b, id);
    rc |= LIT(&b, "\",\"object\":\"");
    rc |= sl_buf_append(&b, k->deleted, strlen(k->deleted));
    rc |= LIT(&b, "\",\"deleted\":true}");
    reply_buf(c, &b, rc);
}

/* A member as JSON text, or "null"; an object member defaults to "{}". */
static int echo(struct sl_buf *b, json_t *root, const char *key, const char *absent)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return sl_buf_append(b, absent, strlen(absent));
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return SL_ENOMEM;
    int rc = sl_buf_append(b, text, strlen(text));
    free(text);
    return rc;
}

static void create(struct sl_sim_call *c, const struct object_kind *k)
{
    json_error_t jerr;
    json_t *root = NULL;
    struct sl_str body = c->req->body;
    if (body.len) {
        root = json_loadb(body.base, body.len, 0, &jerr);
        if (!json_is_object(root)) {
            json_decref(root);
            sl_sim_reply_openai_error(c, 400, "We could not parse the JSON body of your request.",
                                      "invalid_request_error", NULL, NULL);
            return;
        }
    } else {
        root = json_object();
    }
    json_t *model = json_object_get(root, "model");
    if (k->kind == SL_SIM_OBJ_ASSISTANT && !json_is_string(model)) {
        json_decref(root);
        sl_sim_reply_openai_error(c, 400, "Missing required parameter: 'model'.",
                                  "invalid_request_error", "model", "missing_required_parameter");
        return;
    }
    char id[40];
    sl_sim_id_new(id, k->kind == SL_SIM_OBJ_THREAD ? "thread_" : "asst_", 24, false);
    struct sl_buf b;
    sl_buf_init(&b);
    int rc = LIT(&b, "{\"id\":\"");
    rc |= sl_buf_append(&b, id, strlen(id));
    rc |= LIT(&b, "\",\"object\":\"");
    rc |= sl_buf_append(&b, k->name, strlen(k->name));
    rc |= LIT(&b, "\",\"created_at\":");
    rc |= sl_buf_append_u64(&b, (uint64_t)time(NULL));
    if (k->kind == SL_SIM_OBJ_ASSISTANT) {
        rc |= LIT(&b, ",\"name\":");
        rc |= echo(&b, root, "name", "null");
        rc |= LIT(&b, ",\"description\":");
        rc |= echo(&b, root, "description", "null");
        rc |= LIT(&b, ",\"model\":");
        rc |= echo(&b, root, "model", "null");
        rc |= LIT(&b, ",\"instructions\":");
        rc |= echo(&b, root, "instructions", "null");
        rc |= LIT(&b, ",\"tools\":");
        rc |= echo(&b, root, "tools", "[]");
        rc |= LIT(&b, ",\"top_p\":1.0,\"temperature\":1.0,\"tool_resources\":{},\"metadata\":");
        rc |= echo(&b, root, "metadata", "{}");
        rc |= LIT(&b, ",\"response_format\":\"auto\"}");
    } else {
        rc |= LIT(&b, ",\"metadata\":");
        rc |= echo(&b, root, "metadata", "{}");
        rc |= LIT(&b, ",\"tool_resources\":{}}");
    }
    json_decref(root);
    if (rc == SL_OK && sl_sim_store_put(&c->ep->store, k->kind, sl_str_from_cstr(id),
                                        (struct sl_str){b.base, b.len}, 0) != SL_OK)
        rc = SL_ENOMEM;
    reply_buf(c, &b, rc ? SL_ENOMEM : SL_OK);
}

static int model_entry(struct sl_buf *b, const struct sl_config_sim_deployment *d)
{
    int rc = LIT(b, "{\"id\":\"");
    rc |= sl_buf_append_json_escaped(b, sl_str_from_cstr(d->name));
    return rc | LIT(b, "\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"system\"}");
}

static void models(struct sl_sim_call *c, bool one, struct sl_str id)
{
    const struct sl_config_sim_endpoint *ecfg = c->ep->cfg;
    struct sl_buf b;
    int rc = 0;
    sl_buf_init(&b);
    if (one) {
        struct sl_sim_deployment *d = sl_sim_find_deployment(c->ep, id);
        if (d == NULL) {
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "The model '%.*s' does not exist or you do not have access to it.",
                     (int)SL_MIN(id.len, 100), id.base);
            sl_sim_reply_openai_error(c, 404, msg, "invalid_request_error", "model",
                                      "model_not_found");
            return;
        }
        rc = model_entry(&b, d->cfg);
    } else {
        rc = LIT(&b, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; i < ecfg->n_deployments; i++) {
            if (i)
                rc |= LIT(&b, ",");
            rc |= model_entry(&b, &ecfg->deployments[i]);
        }
        rc |= LIT(&b, "]}");
    }
    reply_buf(c, &b, rc ? SL_ENOMEM : SL_OK);
}

void sl_sim_serve_object(struct sl_sim_call *c, enum sl_sim_target target, struct sl_str id)
{
    switch (target) {
    case SL_SIM_T_RESPONSE:
        retrieve_or_delete(c, &kinds[0], id);
        return;
    case SL_SIM_T_THREADS:
        create(c, &kinds[1]);
        return;
    case SL_SIM_T_THREAD:
        retrieve_or_delete(c, &kinds[1], id);
        return;
    case SL_SIM_T_ASSISTANTS:
        create(c, &kinds[2]);
        return;
    case SL_SIM_T_ASSISTANT:
        retrieve_or_delete(c, &kinds[2], id);
        return;
    case SL_SIM_T_MODELS:
    case SL_SIM_T_MODEL:
        models(c, target == SL_SIM_T_MODEL, id);
        return;
    default:
        sl_sim_reply_azure_error(c, 404, "404", "Resource not found");
        return;
    }
}
