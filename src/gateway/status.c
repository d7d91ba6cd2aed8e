/*
 * `sluice status`: a running gateway's GET /sluice/status, printed for people.
 *
 * A small blocking HTTP/1.1 client: this runs in a command-line process, not on a
 * worker's loop, so blocking is fine; every wait is bounded (connect 3 s, the whole
 * answer 10 s) and so is the answer's size (4 MiB). The answer may come with a
 * Content-Length, chunked, or delimited by the end of the connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gateway/gateway.h"

#define STATUS_PATH "/sluice/status"
#define STATUS_CONNECT_MS 3000
#define STATUS_ANSWER_MS 10000
#define STATUS_MAX_BYTES ((size_t)4 << 20)

/* Where to connect, and how to name it in messages. */
struct status_target {
    struct sockaddr_storage sa;
    socklen_t salen;
    char text[80];     /* "127.0.0.1:9090" or "[::1]:9090" */
    const char *token; /* the admin_token to send; NULL: none */
};

/* The parts of an HTTP answer status needs. body views into the answer or into dechunked. */
struct status_answer {
    int status;
    struct sl_str reason;
    struct sl_str body;
    struct sl_buf dechunked; /* owned: the body when it came chunked */
};

/* ---- the address --------------------------------------------------------------------------- */

/* A wildcard listen address is reached on the loopback of its family. */
static const char *connect_host(const char *host)
{
    if (strcmp(host, "0.0.0.0") == 0)
        return "127.0.0.1";
    if (strcmp(host, "::") == 0)
        return "::1";
    return host;
}

static int target_init(const struct sl_config_addr *admin, struct status_target *t)
{
    struct sl_buf b;
    sl_buf_init(&b);
    int err = sl_config_addr_format(admin, &b);
    snprintf(t->text, sizeof(t->text), "%.*s", err ? 0 : (int)b.len, err ? "" : b.base);
    sl_buf_dispose(&b);
    if (err)
        return err;
    memset(&t->sa, 0, sizeof(t->sa));
    const char *host = connect_host(admin->host);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&t->sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&t->sa;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(admin->port);
        t->salen = sizeof(*in4);
        return SL_OK;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(admin->port);
        t->salen = sizeof(*in6);
        return SL_OK;
    }
    return SL_EINVAL;
}

/* ---- the exchange -------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return sl_clock_mono_us() / 1000;
}

/* Wait for events on fd until deadline_ms: 0 ready, SL_EAGAIN timed out, SL_EIO (errno). */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return SL_EAGAIN;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)SL_MIN(deadline_ms - now, (uint64_t)60000));
        if (n > 0)
            return SL_OK;
        if (n < 0 && errno != EINTR)
            return SL_EIO;
    }
}

/* A non-blocking socket connected to t within STATUS_CONNECT_MS: 0 and *fd, or SL_EIO with
 * errno set (ETIMEDOUT when the time ran out). */
static int connect_to(const struct status_target *t, int *fd)
{
    int s = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return SL_EIO;
    int e = 0;
    if (connect(s, (const struct sockaddr *)&t->sa, t->salen) == 0)
        goto done;
    e = errno;
    if (e != EINPROGRESS)
        goto fail;
    int w = wait_fd(s, POLLOUT, now_ms() + STATUS_CONNECT_MS);
    if (w != SL_OK) {
        e = w == SL_EAGAIN ? ETIMEDOUT : errno;
        goto fail;
    }
    socklen_t len = sizeof(e);
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    if (e != 0)
        goto fail;
done:
    *fd = s;
    return SL_OK;
fail:
    close(s);
    errno = e;
    return SL_EIO;
}

static int send_all(int fd, const char *data, size_t len, uint64_t deadline_ms)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return SL_EIO;
        int w = wait_fd(fd, POLLOUT, deadline_ms);
        if (w != SL_OK)
            return w;
    }
    return SL_OK;
}

/* Everything until the server closes: 0, SL_EAGAIN (deadline), SL_ETOOBIG, SL_EIO, SL_ENOMEM. */
static int read_all(int fd, struct sl_buf *out, uint64_t deadline_ms)
{
    for (;;) {
        if (sl_buf_reserve(out, 16384) != SL_OK)
            return SL_ENOMEM;
        ssize_t n = recv(fd, out->base + out->len, out->cap - out->len, 0);
        if (n == 0)
            return SL_OK;
        if (n > 0) {
            out->len += (size_t)n;
            if (out->len > STATUS_MAX_BYTES)
                return SL_ETOOBIG;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return SL_EIO;
        int w = wait_fd(fd, POLLIN, deadline_ms);
        if (w != SL_OK)
            return w;
    }
}

/* ---- reading the answer ---------------------------------------------------------------------- */

/* The next CRLF-terminated line of *rest (without CRLF); false when there is none. */
static bool next_line(struct sl_str *rest, struct sl_str *line)
{
    for (size_t i = 0; i + 1 < rest->len; i++) {
        if (rest->base[i] == '\r' && rest->base[i + 1] == '\n') {
            *line = (struct sl_str){rest->base, i};
            rest->base += i + 2;
            rest->len -= i + 2;
            return true;
        }
    }
    return false;
}

static struct sl_str trim(struct sl_str s)
{
    while (s.len && (s.base[0] == ' ' || s.base[0] == '\t')) {
        s.base++;
        s.len--;
    }
    while (s.len && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* The hexadecimal size at the start of a chunk-size line (extensions after ';' ignored). */
static int chunk_size(struct sl_str line, size_t *size)
{
    size_t v = 0, i = 0;
    for (; i < line.len; i++) {
        char c = line.base[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            break;
        if (v > STATUS_MAX_BYTES)
            return SL_ETOOBIG;
        v = v * 16 + (size_t)d;
    }
    struct sl_str after = trim((struct sl_str){line.base + i, line.len - i});
    if (i == 0 || (after.len && after.base[0] != ';'))
        return SL_EINVAL;
    *size = v;
    return SL_OK;
}

static int dechunk(struct sl_str in, struct sl_buf *out)
{
    struct sl_str line;
    for (;;) {
        size_t size;
        if (!next_line(&in, &line) || chunk_size(line, &size) != SL_OK)
            return SL_EINVAL;
        if (size == 0)
            return SL_OK; /* trailers, if any, are of no interest */
        if (in.len < size + 2 || in.base[size] != '\r' || in.base[size + 1] != '\n')
            return SL_EINVAL;
        if (sl_buf_append(out, in.base, size) != SL_OK)
            return SL_ENOMEM;
        in.base += size + 2;
        in.len -= size + 2;
    }
}

/* "HTTP/1.x NNN reason": the status and reason. */
static int parse_status_line(struct sl_str line, struct status_answer *a)
{
    if (line.len < 12 || memcmp(line.base, "HTTP/1.", 7) != 0 || line.base[8] != ' ')
        return SL_EINVAL;
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line.base[i] < '0' || line.base[i] > '9')
            return SL_EINVAL;
        status = status * 10 + (line.base[i] - '0');
    }
    if (line.len > 12 && line.base[12] != ' ')
        return SL_EINVAL;
    a->status = status;
    a->reason = line.len > 13 ? (struct sl_str){line.base + 13, line.len - 13} : SL_STR("");
    return SL_OK;
}

/* Split raw into the status and the (decoded) body. */
static int parse_answer(struct sl_str raw, struct status_answer *a)
{
    struct sl_str rest = raw, line;
    if (!next_line(&rest, &line) || parse_status_line(line, a) != SL_OK)
        return SL_EINVAL;
    bool chunked = false, sized = false;
    uint64_t length = 0;
    for (;;) {
        if (!next_line(&rest, &line))
            return SL_EINVAL;
        if (line.len == 0)
            break;
        const char *colon = memchr(line.base, ':', line.len);
        if (!colon)
            return SL_EINVAL;
        struct sl_str name = {line.base, (size_t)(colon - line.base)};
        struct sl_str value = trim((struct sl_str){colon + 1, line.len - name.len - 1});
        if (sl_str_eq_ci(name, SL_STR("Transfer-Encoding")))
            chunked = sl_str_eq_ci(value, SL_STR("chunked"));
        else if (sl_str_eq_ci(name, SL_STR("Content-Length"))) {
            if (sl_str_to_u64(value, &length) != SL_OK)
                return SL_EINVAL;
            sized = true;
        }
    }
    if (chunked) {
        int err = dechunk(rest, &a->dechunked);
        a->body = (struct sl_str){a->dechunked.base, a->dechunked.len};
        return err;
    }
    if (sized && length > rest.len)
        return SL_EINVAL; /* cut short */
    a->body = (struct sl_str){rest.base, sized ? (size_t)length : rest.len};
    return SL_OK;
}

/* ---- fetching ---------------------------------------------------------------------------------
 */

/* GET /sluice/status into raw; problems are reported to err. */
static int fetch(const struct status_target *t, struct sl_buf *raw, FILE *err)
{
    int fd = -1, rc = SL_EIO;
    if (connect_to(t, &fd) != SL_OK) {
        fprintf(err,
                "sluice: status: cannot connect to %s: %s (is `sluice serve` running, and is this "
                "its admin_listen?)\n",
                t->text, strerror(errno));
        goto fail;
    }
    struct sl_buf req;
    sl_buf_init(&req);
    rc = sl_buf_appendf(&req,
                        "GET " STATUS_PATH " HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                        "User-Agent: sluice-status\r\nConnection: close\r\n",
                        t->text);
    if (rc == SL_OK && t->token)
        rc = sl_buf_appendf(&req, "Authorization: Bearer %s\r\n", t->token);
    if (rc == SL_OK)
        rc = sl_buf_append(&req, "\r\n", 2);
    uint64_t deadline = now_ms() + STATUS_ANSWER_MS;
    if (rc == SL_OK)
        rc = send_all(fd, req.base, req.len, deadline);
    sl_buf_dispose(&req);
    if (rc == SL_OK)
        rc = read_all(fd, raw, deadline);
    if (rc == SL_EAGAIN)
        fprintf(err, "sluice: status: %s did not answer within %d s\n", t->text,
                STATUS_ANSWER_MS / 1000);
    else if (rc == SL_ETOOBIG)
        fprintf(err, "sluice: status: the answer of %s is larger than %zu MiB\n", t->text,
                STATUS_MAX_BYTES >> 20);
    else if (rc != SL_OK)
        fprintf(err, "sluice: status: reading the answer of %s: %s\n", t->text,
                rc == SL_EIO ? strerror(errno) : sl_strerror(rc));
fail:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* The message of an Azure-shaped JSON error body, for a non-200 answer; NULL if none. */
static const char *error_message(json_t *body)
{
    json_t *msg = json_object_get(json_object_get(body, "error"), "message");
    return json_is_string(msg) ? json_string_value(msg) : NULL;
}

static void report_not_ok(const struct status_target *t, const struct status_answer *a, FILE *err)
{
    json_t *body = json_loadb(a->body.base, a->body.len, 0, NULL);
    const char *msg = error_message(body);
    fprintf(err, "sluice: status: %s answered %d %.*s to GET " STATUS_PATH "%s%s%s\n", t->text,
            a->status, (int)SL_MIN(a->reason.len, (size_t)80), a->reason.base, msg ? ": " : "",
            msg ? msg : "",
            a->status == 404   ? " (is this the admin_listen of a sluice gateway, not of `sluice "
                                 "sim`?)"
            : a->status == 401 ? " (give the configuration with --config FILE, or the token in "
                                 "SLUICE_ADMIN_TOKEN)"
                               : "");
    json_decref(body);
}

/* ---- printing ----------------------------------------------------------------------------------
 */

/* A table of text cells, printed with aligned columns. Owns every cell. */
struct table {
    size_t ncols;
    char **cells; /* rows * ncols, row-major; the first row is the heading */
    size_t n, cap;
};

static void table_dispose(struct table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
}

/* Append one cell; control characters become '?' so that a reason cannot garble the table. */
static int table_cell(struct table *t, const char *s)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **cells = realloc(t->cells, cap * sizeof(*cells));
        if (!cells)
            return SL_ENOMEM;
        t->cells = cells;
        t->cap = cap;
    }
    size_t len = strlen(s);
    char *c = malloc(len + 1);
    if (!c)
        return SL_ENOMEM;
    for (size_t i = 0; i < len; i++)
        c[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    c[len] = '\0';
    t->cells[t->n++] = c;
    return SL_OK;
}

static int table_cellf(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int table_cellf(struct table *t, const char *fmt, ...)
{
    char cell[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cell, sizeof(cell), fmt, ap);
    va_end(ap);
    return table_cell(t, cell);
}

static void table_print(const struct table *t, FILE *out)
{
    size_t width[16] = {0};
    for (size_t i = 0; i < t->n; i++)
        width[i % t->ncols] = SL_MAX(width[i % t->ncols], strlen(t->cells[i]));
    for (size_t i = 0; i < t->n; i++) {
        size_t col = i % t->ncols;
        if (col + 1 == t->ncols)
            fprintf(out, "%s\n", t->cells[i]);
        else
            fprintf(out, "%-*s  ", (int)width[col], t->cells[i]);
    }
}

/* A JSON string, or "-" for null or anything else. */
static const char *text_or_dash(json_t *v)
{
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : "-";
}

/* A JSON number as an integer cell, or "-". */
static int number_cell(struct table *t, json_t *v)
{
    if (json_is_integer(v))
        return table_cellf(t, "%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return table_cellf(t, "%.0f", json_real_value(v));
    return table_cell(t, "-");
}

/* Milliseconds since the epoch of an RFC 3339 UTC time ("2026-01-02T03:04:05.678Z"). */
static int parse_time(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int frac = 0, used = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
        return SL_EINVAL;
    const char *p = s + used;
    int digits = 0;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
    for (; digits < 3; digits++)
        frac *= 10;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = timegm(&tm);
    if (secs == (time_t)-1)
        return SL_EINVAL;
    *ms = (int64_t)secs * 1000 + frac;
    return SL_OK;
}

/* "in 12s", "in 1.5s", "in 3m20s", "now", or the time itself when it cannot be read. */
static int until_cell(struct table *t, json_t *until, int64_t now)
{
    int64_t at;
    if (!json_is_string(until))
        return table_cell(t, "-");
    if (parse_time(json_string_value(until), &at) != SL_OK)
        return table_cell(t, json_string_value(until));
    int64_t d = at - now;
    if (d <= 0)
        return table_cell(t, "now");
    if (d < 10000)
        return table_cellf(t, "in %.1fs", (double)d / 1000);
    int64_t s = (d + 999) / 1000;
    if (s < 120)
        return table_cellf(t, "in %llds", (long long)s);
    if (s < 7200)
        return table_cellf(t, "in %lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    return table_cellf(t, "in %lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
}

/* "ptu(p1,w90) payg(p2,w10)" */
static int members_cell(struct table *t, json_t *members)
{
    struct sl_buf b;
    sl_buf_init(&b);
    int rc = SL_OK;
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        json_t *prio = json_object_get(m, "priority"), *weight = json_object_get(m, "weight");
        rc = sl_buf_appendf(
            &b, "%s%s(p%lld,w%lld)", i ? " " : "", text_or_dash(json_object_get(m, "name")),
            (long long)json_integer_value(prio), (long long)json_integer_value(weight));
        if (rc != SL_OK)
            goto fail;
    }
    rc = sl_buf_append(&b, "", 1);
    if (rc == SL_OK)
        rc = table_cell(t, b.base);
fail:
    sl_buf_dispose(&b);
    return rc;
}

static int route_rows(struct table *t, json_t *routes)
{
    static const char *const head[] = {"ROUTE", "AVAILABLE", "BACKENDS"};
    int rc = SL_OK;
    for (size_t i = 0; rc == SL_OK && i < SL_ARRAY_LEN(head); i++)
        rc = table_cell(t, head[i]);
    size_t i;
    json_t *r;
    json_array_foreach(routes, i, r)
    {
        if (rc == SL_OK)
            rc = table_cell(t, text_or_dash(json_object_get(r, "name")));
        if (rc == SL_OK)
            rc = table_cell(t, json_is_true(json_object_get(r, "available")) ? "yes" : "no");
        if (rc == SL_OK)
            rc = members_cell(t, json_object_get(r, "backends"));
    }
    return rc;
}

static int backend_row(struct table *t, json_t *b, int64_t now)
{
    int rc = table_cell(t, text_or_dash(json_object_get(b, "name")));
    if (rc == SL_OK)
        rc = table_cell(t, text_or_dash(json_object_get(b, "state")));
    if (rc == SL_OK)
        rc = until_cell(t, json_object_get(b, "until"), now);
    if (rc == SL_OK)
        rc = table_cell(t, text_or_dash(json_object_get(b, "reason")));
    static const char *const numbers[] = {"in_flight", "success", "errors", "throttled", "ttfb_ms"};
    for (size_t i = 0; rc == SL_OK && i < SL_ARRAY_LEN(numbers); i++)
        rc = number_cell(t, json_object_get(b, numbers[i]));
    if (rc == SL_OK)
        rc = table_cell(t, text_or_dash(json_object_get(b, "region")));
    if (rc == SL_OK)
        rc = table_cell(t, text_or_dash(json_object_get(b, "geography")));
    return rc;
}

static int backend_rows(struct table *t, json_t *backends, int64_t now)
{
    static const char *const head[] = {"BACKEND", "STATE", "UNTIL",   "REASON", "IN-FLIGHT", "OK",
                                       "ERR",     "429",   "TTFB-MS", "REGION", "GEOGRAPHY"};
    int rc = SL_OK;
    for (size_t i = 0; rc == SL_OK && i < SL_ARRAY_LEN(head); i++)
        rc = table_cell(t, head[i]);
    size_t i;
    json_t *b;
    json_array_foreach(backends, i, b)
    {
        if (rc == SL_OK)
            rc = backend_row(t, b, now);
    }
    return rc;
}

/* The server's clock ("time"), so that "in 12s" does not depend on this machine's. */
static int64_t status_now(json_t *root)
{
    int64_t ms;
    if (parse_time(json_string_value(json_object_get(root, "time")), &ms) == SL_OK)
        return ms;
    return (int64_t)sl_clock_unix_ms();
}

static int print_tables(const struct status_target *target, json_t *root, FILE *out)
{
    struct table routes = {.ncols = 3}, backends = {.ncols = 11};
    json_t *ready = json_object_get(root, "ready");
    int rc = route_rows(&routes, json_object_get(root, "routes"));
    if (rc == SL_OK)
        rc = backend_rows(&backends, json_object_get(root, "backends"), status_now(root));
    if (rc != SL_OK)
        goto fail;
    fprintf(out, "sluice at %s: %s\n\n", target->text,
            json_is_boolean(ready) ? (json_is_true(ready) ? "ready" : "NOT READY (/readyz is 503)")
                                   : "readiness unknown");
    table_print(&routes, out);
    fputc('\n', out);
    table_print(&backends, out);
    fprintf(out, "\nOK, ERR and 429 count the answers of the last 60 s.\n");
fail:
    table_dispose(&routes);
    table_dispose(&backends);
    return rc;
}

/* ---- the command
 * --------------------------------------------------------------------------------- */

/* The answer as tables (or as it is, with json); problems to err. */
static int print_answer(const struct status_target *t, const struct status_answer *a, bool json,
                        FILE *out, FILE *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(a->body.base, a->body.len, 0, &jerr);
    int rc = SL_EINVAL;
    if (!root) {
        fprintf(err, "sluice: status: the answer of %s is not JSON: %s (line %d, column %d)\n",
                t->text, jerr.text, jerr.line, jerr.column);
        goto fail;
    }
    if (!json_is_array(json_object_get(root, "routes")) ||
        !json_is_array(json_object_get(root, "backends"))) {
        fprintf(err,
                "sluice: status: the answer of %s is not a sluice status (no \"routes\" and "
                "\"backends\" lists)\n",
                t->text);
        goto fail;
    }
    if (json) {
        fwrite(a->body.base, 1, a->body.len, out);
        if (a->body.len == 0 || a->body.base[a->body.len - 1] != '\n')
            fputc('\n', out);
        rc = SL_OK;
    } else {
        rc = print_tables(t, root, out);
        if (rc != SL_OK)
            fprintf(err, "sluice: status: %s\n", sl_strerror(rc));
    }
fail:
    json_decref(root);
    return rc;
}

int sl_gateway_print_status(const struct sl_config_addr *admin, const char *token, bool json,
                            FILE *out, FILE *err)
{
    struct status_target t;
    struct sl_buf raw;
    struct status_answer a = {0};
    sl_buf_init(&raw);
    sl_buf_init(&a.dechunked);
    int rc = target_init(admin, &t);
    if (rc != SL_OK) {
        fprintf(err, "sluice: status: cannot use the address %s:%u\n", admin->host,
                (unsigned)admin->port);
        goto fail;
    }
    t.token = token;
    rc = fetch(&t, &raw, err);
    if (rc != SL_OK)
        goto fail;
    rc = parse_answer((struct sl_str){raw.base, raw.len}, &a);
    if (rc != SL_OK) {
        fprintf(err,
                "sluice: status: %s did not answer with HTTP/1.1 (is this sluice's "
                "admin_listen?)\n",
                t.text);
        goto fail;
    }
    if (a.status != 200) {
        report_not_ok(&t, &a, err);
        rc = SL_EINVAL;
        goto fail;
    }
    rc = print_answer(&t, &a, json, out, err);
fail:
    sl_buf_dispose(&a.dechunked);
    sl_buf_dispose(&raw);
    fflush(out);
    return rc == SL_OK ? 0 : 1;
}
