/*
 * Which stateful object a request is about, and the id of one an answer
 * creates. A thread, an assistant, a file or a stored response exists on the
 * backend that created it only: requests naming it must go there (R6).
 */
#include "proxy/internal.h"

#include <string.h>

/* Answers are scanned this far for the created object's id. */
#define ID_SCAN_BYTES 2048

struct sl_str sl_proxy_pin_key(struct sl_http_request *req, struct sl_str id)
{
    char *k = sl_arena_alloc(req->arena, id.len + 3);
    if (k == NULL)
        return SL_STR_NULL;
    memcpy(k, "o:", 2);
    memcpy(k + 2, id.base, id.len);
    k[id.len + 2] = '\0';
    return (struct sl_str){k, id.len + 2};
}

/* The object in a path after the resource: "threads/thread_1/runs" names thread_1;
 * "threads/runs" (create a thread and run it) and "threads" name none. */
static struct sl_str path_object(struct sl_str rest)
{
    const char *slash = memchr(rest.base, '/', rest.len);
    if (slash == NULL)
        return SL_STR_NULL;
    struct sl_str id = {slash + 1, (size_t)(rest.base + rest.len - slash - 1)};
    const char *end = memchr(id.base, '/', id.len);
    if (end)
        id.len = (size_t)(end - id.base);
    if (sl_str_eq(id, SL_STR("runs")))
        return SL_STR_NULL;
    return id;
}

struct sl_str sl_proxy_object_key(struct sl_proxy_call *call)
{
    struct sl_str id = path_object(call->target.rest);
    static const char *const fields[] = {"previous_response_id", "thread_id", "assistant_id"};
    for (size_t i = 0; id.len == 0 && call->doc && i < SL_ARRAY_LEN(fields); i++) {
        json_t *v = json_object_get(call->doc, fields[i]);
        if (json_is_string(v))
            id = (struct sl_str){json_string_value(v), json_string_length(v)};
    }
    return id.len ? sl_proxy_pin_key(call->req, id) : SL_STR_NULL;
}

static size_t skip_space(struct sl_str t, size_t i)
{
    while (i < t.len &&
           (t.base[i] == ' ' || t.base[i] == '\t' || t.base[i] == '\r' || t.base[i] == '\n'))
        i++;
    return i;
}

struct sl_str sl_proxy_find_id(struct sl_str t)
{
    static const char key[] = "\"id\"";
    for (size_t i = 0; i + sizeof(key) - 1 <= t.len; i++) {
        if (memcmp(t.base + i, key, sizeof(key) - 1) != 0)
            continue;
        size_t j = skip_space(t, i + sizeof(key) - 1);
        if (j >= t.len || t.base[j] != ':')
            continue;
        j = skip_space(t, j + 1);
        if (j >= t.len || t.base[j] != '"')
            continue;
        size_t from = ++j;
        while (j < t.len && t.base[j] != '"' && t.base[j] != '\\')
            j++;
        /* Ids are plain text: one with an escape, or cut off, is not taken. */
        if (j >= t.len || t.base[j] != '"' || j == from)
            return SL_STR_NULL;
        return (struct sl_str){t.base + from, j - from};
    }
    return SL_STR_NULL;
}

struct sl_str sl_proxy_scan_id(struct sl_proxy_call *call, const char *bytes, size_t len)
{
    if (call->id_scan == NULL) {
        call->id_scan = sl_arena_alloc(call->req->arena, ID_SCAN_BYTES);
        if (call->id_scan == NULL)
            return SL_STR_NULL;
    }
    size_t n = SL_MIN(len, (size_t)ID_SCAN_BYTES - call->id_scan_len);
    memcpy(call->id_scan + call->id_scan_len, bytes, n);
    call->id_scan_len += n;
    struct sl_str id = sl_proxy_find_id((struct sl_str){call->id_scan, call->id_scan_len});
    if (id.len == 0 && call->id_scan_len == ID_SCAN_BYTES)
        call->pin_answer = false; /* not in the first bytes: give up */
    return id;
}
