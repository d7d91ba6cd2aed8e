/*
 * The console's page and files, from the table the build generated, and the
 * dispatch of its API paths.
 */
#include <string.h>

#include "console/internal.h"

#define PREFIX "/console/"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define API "api/"
#define API_LEN (sizeof(API) - 1)

/* The page runs only its own files and talks only to the listener it came from. */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
};

static const char *content_type(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < SL_ARRAY_LEN(content_types); i++) {
        size_t e = strlen(content_types[i].ext);
        if (n > e && memcmp(name + n - e, content_types[i].ext, e) == 0)
            return content_types[i].type;
    }
    return "application/octet-stream";
}

bool sl_console_owns(struct sl_str path)
{
    return sl_str_eq(path, SL_STR("/console")) ||
           (path.len >= PREFIX_LEN && memcmp(path.base, PREFIX, PREFIX_LEN) == 0);
}

/* The asset a path under /console/ names ("" is index.html), or NULL. */
static const struct sl_console_asset *find_asset(struct sl_str path)
{
    struct sl_str name = {path.base + PREFIX_LEN, path.len - PREFIX_LEN};
    if (name.len == 0)
        name = SL_STR("index.html");
    for (size_t i = 0; i < sl_console_n_assets; i++)
        if (sl_str_eq(name, sl_str_from_cstr(sl_console_assets[i].name)))
            return &sl_console_assets[i];
    return NULL;
}

static bool is_get(const struct sl_http_request *req)
{
    return req->is_head || sl_str_eq(req->head.method, SL_STR("GET"));
}

bool sl_console_is_static(const struct sl_http_request *req)
{
    struct sl_str path = req->head.path;
    if (!is_get(req) || !sl_console_owns(path))
        return false;
    return sl_str_eq(path, SL_STR("/console")) || find_asset(path) != NULL;
}

/* If-None-Match lists the ETag (or is "*"). */
static bool not_modified(const struct sl_http_request *req, const char *etag)
{
    const struct sl_http_header *h = sl_http_find_header(&req->head, SL_STR("if-none-match"));
    if (h == NULL)
        return false;
    if (sl_str_eq(h->value, SL_STR("*")))
        return true;
    size_t n = strlen(etag);
    for (size_t i = 0; i + n <= h->value.len; i++)
        if (memcmp(h->value.base + i, etag, n) == 0)
            return true;
    return false;
}

static void method_not_allowed(struct sl_http_request *req, const char *allow)
{
    struct sl_http_header h = {SL_STR("Allow"), sl_str_from_cstr(allow)};
    sl_http_respond_error_with(req, 405, "MethodNotAllowed",
                               "this console path does not support the method", &h, 1);
}

static void serve_asset(struct sl_http_request *req, const struct sl_console_asset *a)
{
    const char *type = content_type(a->name);
    struct sl_http_header h[] = {
        {SL_STR("Content-Type"), sl_str_from_cstr(type)},
        {SL_STR("ETag"), sl_str_from_cstr(a->etag)},
        {SL_STR("Cache-Control"), SL_STR("no-cache")},
        {SL_STR("X-Content-Type-Options"), SL_STR("nosniff")},
        {SL_STR("Referrer-Policy"), SL_STR("no-referrer")},
        {SL_STR("X-Frame-Options"), SL_STR("DENY")},
        {SL_STR("Content-Security-Policy"), SL_STR(CSP)},
    };
    bool fresh = not_modified(req, a->etag);
    /* A 304 carries no Content-Type, and no body. */
    const struct sl_http_header *hs = fresh ? h + 1 : h;
    size_t n = fresh ? SL_ARRAY_LEN(h) - 1 : SL_ARRAY_LEN(h);
    if (sl_http_start_response(req, fresh ? 304 : 200, hs, n, SL_HTTP_FRAMING_LENGTH,
                               fresh ? 0 : a->len) == SL_OK &&
        !fresh)
        sl_http_write(req, a->data, a->len);
    sl_http_finish(req);
}

static void not_found(struct sl_http_request *req)
{
    sl_http_respond_error(req, 404, "NotFound",
                          "the console has no such file; open /console/ (docs/console.md)");
}

static void serve_api(struct sl_http_request *req, const struct sl_config *cfg, bool relay,
                      struct sl_str what)
{
    bool chat = sl_str_eq(what, SL_STR("v1/chat/completions"));
    bool models = sl_str_eq(what, SL_STR("v1/models"));
    if (!relay || (!chat && !models)) {
        sl_http_respond_error(req, 404, "NotFound",
                              relay ? "the console relays only v1/chat/completions and v1/models"
                                    : "this process has no public listener to relay to");
        return;
    }
    if (chat && !sl_str_eq(req->head.method, SL_STR("POST"))) {
        method_not_allowed(req, "POST");
        return;
    }
    if (models && !sl_str_eq(req->head.method, SL_STR("GET"))) {
        method_not_allowed(req, "GET");
        return;
    }
    /* "/v1/..." is the tail of the console path from its "/v1". */
    struct sl_str path = {what.base - 1, what.len + 1};
    sl_console_relay(req, cfg, path);
}

void sl_console_on_request(struct sl_http_request *req, const struct sl_config *cfg, bool relay)
{
    struct sl_str path = req->head.path;
    if (sl_str_eq(path, SL_STR("/console"))) {
        if (!is_get(req)) {
            method_not_allowed(req, "GET, HEAD");
            return;
        }
        struct sl_http_header loc = {SL_STR("Location"), SL_STR(PREFIX)};
        if (sl_http_start_response(req, 301, &loc, 1, SL_HTTP_FRAMING_LENGTH, 0) == SL_OK)
            sl_http_flush(req);
        sl_http_finish(req);
        return;
    }
    struct sl_str rest = {path.base + PREFIX_LEN, path.len - PREFIX_LEN};
    if (rest.len >= API_LEN && memcmp(rest.base, API, API_LEN) == 0) {
        serve_api(req, cfg, relay, (struct sl_str){rest.base + API_LEN, rest.len - API_LEN});
        return;
    }
    const struct sl_console_asset *a = find_asset(path);
    if (a == NULL) {
        not_found(req);
        return;
    }
    if (!is_get(req)) {
        method_not_allowed(req, "GET, HEAD");
        return;
    }
    serve_asset(req, a);
}
