/*
 * Per-loop HTTP server: opens its own listening sockets with SO_REUSEPORT
 * (so every worker accepts on the same port and the kernel spreads
 * connections), keeps the connection list, batches access-log lines, and
 * runs graceful shutdown.
 */
#include "http/internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Flush the access log once it holds this much, or at the end of each loop
 * iteration: one write per batch, never one per request under load. */
#define SL_ACCESS_LOG_FLUSH_BYTES (32 * 1024)

static void on_server_handle_closed(uv_handle_t *h);

static void maybe_closed(struct sl_http_server *s)
{
    if (!s->shutting_down || s->n_conns > 0)
        return;
    if (!s->timers_closing) {
        s->timers_closing = true;
        uv_close((uv_handle_t *)&s->deadline, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->log_flush, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->log_flush_timers, on_server_handle_closed);
        return;
    }
    if (s->handles_open > 0)
        return;
    if (s->log.len)
        sl_log_write_line(s->log.base, s->log.len);
    sl_buf_dispose(&s->log);
    void (*cb)(void *) = s->on_closed;
    void *data = s->closed_data;
    free(s->listeners);
    free(s);
    if (cb)
        cb(data);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct sl_http_server *s = h->data;
    s->handles_open--;
    maybe_closed(s);
}

static int open_listener(struct sl_http_server *s, struct sl_http_listener *l, bool probe);

static void on_listener_closed(uv_handle_t *h)
{
    struct sl_http_listener *l = h->data;
    struct sl_http_server *s = l->server;
    l->closing = false;
    s->handles_open--;
    if (s->resume_pending && !s->shutting_down) {
        bool all_closed = true;
        for (size_t i = 0; i < s->n_listeners; i++)
            all_closed = all_closed && !s->listeners[i].closing;
        if (all_closed) {
            s->resume_pending = false;
            sl_http_server_resume(s);
        }
    }
    maybe_closed(s);
}

static void close_listener(struct sl_http_listener *l)
{
    if (!l->open)
        return;
    l->open = false;
    l->closing = true;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}

void sl_http_server_pause(struct sl_http_server *s)
{
    s->resume_pending = false; /* a later pause wins over a resume still waiting */
    if (s->shutting_down || s->paused)
        return;
    s->paused = true;
    for (size_t i = 0; i < s->n_listeners; i++)
        close_listener(&s->listeners[i]);
}

int sl_http_server_resume(struct sl_http_server *s)
{
    if (s->shutting_down || !s->paused)
        return SL_OK;
    for (size_t i = 0; i < s->n_listeners; i++) {
        if (s->listeners[i].closing) {
            s->resume_pending = true; /* handles are still closing: reopen after */
            return SL_OK;
        }
    }
    s->paused = false;
    int err = SL_OK;
    for (size_t i = 0; i < s->n_listeners; i++) {
        int e = open_listener(s, &s->listeners[i], false);
        if (e) {
            sl_log_error("%s listener: could not listen again: %s", s->name, uv_strerror(e));
            err = SL_EIO;
        }
    }
    return err;
}

uv_loop_t *sl_http_request_loop(const struct sl_http_request *req)
{
    return req->server->loop;
}

void *sl_http_request_worker_data(const struct sl_http_request *req)
{
    return req->server->worker_data;
}

const char *sl_http_request_remote(const struct sl_http_request *req)
{
    return req->conn->remote;
}

void sl_server_conn_freed(struct sl_http_server *s, struct sl_http_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    maybe_closed(s);
}

size_t sl_http_server_connections(const struct sl_http_server *s)
{
    return s->n_conns;
}

const char *sl_server_date(struct sl_http_server *s)
{
    time_t now = time(NULL);
    if (now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

static void flush_log(struct sl_http_server *s)
{
    if (s->log.len == 0)
        return;
    sl_log_write_line(s->log.base, s->log.len);
    s->log.len = 0;
}

static void on_log_check(uv_check_t *h)
{
    flush_log(h->data);
}

static void on_log_prepare(uv_prepare_t *h)
{
    flush_log(h->data);
}

/* A JSON string field ,"name":"value" when value is set. */
static void append_log_string(struct sl_buf *b, const char *name, const char *value)
{
    if (value == NULL)
        return;
    sl_buf_appendf(b, ",\"%s\":\"", name);
    sl_buf_append_json_escaped(b, sl_str_from_cstr(value));
    sl_buf_append(b, "\"", 1);
}

/* Who the request was for and what it used, as the handler said. */
static void append_log_usage(struct sl_buf *b, const struct sl_http_log_usage *u)
{
    append_log_string(b, "client", u->client);
    append_log_string(b, "route", u->route);
    append_log_string(b, "backend", u->backend);
    sl_buf_appendf(b,
                   ",\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_tokens\":%llu,"
                   "\"cost_micros\":%llu,\"estimated\":%s",
                   (unsigned long long)u->prompt_tokens, (unsigned long long)u->completion_tokens,
                   (unsigned long long)u->total_tokens, (unsigned long long)u->cost_micros,
                   u->estimated ? "true" : "false");
}

void sl_server_log_access(struct sl_http_server *s, struct sl_http_conn *c)
{
    if (!s->access_log)
        return;
    struct sl_buf *b = &s->log;
    char when[40];
    sl_clock_rfc3339(when, sizeof(when));
    uint64_t dur = sl_clock_mono_us() - c->req.start_us;
    const struct sl_http_request_head *h = &c->req.head;
    /* Path only: the query string may carry values that are not ours to log. */
    sl_buf_append(b, "{\"time\":\"", 9);
    sl_buf_append(b, when, strlen(when));
    sl_buf_append(b, "\",\"type\":\"access\",\"listener\":\"", 30);
    sl_buf_append(b, s->name, strlen(s->name));
    sl_buf_append(b, "\",\"request_id\":\"", 16);
    sl_buf_append(b, c->req.id, strlen(c->req.id));
    sl_buf_append(b, "\",\"remote\":\"", 12);
    sl_buf_append(b, c->remote, strlen(c->remote));
    sl_buf_append(b, "\",\"method\":\"", 12);
    sl_buf_append_json_escaped(b, h->method);
    sl_buf_append(b, "\",\"path\":\"", 10);
    sl_buf_append_json_escaped(b, h->path);
    sl_buf_append(b, "\",\"status\":", 11);
    sl_buf_append_u64(b, (uint64_t)c->status);
    sl_buf_append(b, ",\"bytes\":", 9);
    sl_buf_append_u64(b, c->bytes_total);
    sl_buf_append(b, ",\"duration_us\":", 15);
    sl_buf_append_u64(b, dur);
    if (c->req.log_usage)
        append_log_usage(b, c->req.log_usage);
    sl_buf_append(b, "}\n", 2);
    if (b->len >= SL_ACCESS_LOG_FLUSH_BYTES)
        flush_log(s);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct sl_http_listener *l = listener->data;
    if (status < 0) {
        sl_log_warn("%s listener: accept failed: %s", l->server->name, uv_strerror(status));
        return;
    }
    sl_conn_accept(l->server, listener);
}

/* A bound (not yet listening) socket in *out_fd, or a negative uv error. */
static int bind_socket(const struct sl_config_addr *a, bool reuseport, int *out_fd)
{
    struct sockaddr_storage ss;
    int err;
    int fd = -1;
    int one = 1;
    memset(&ss, 0, sizeof(ss));
    if (strchr(a->host, ':'))
        err = uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)&ss);
    else
        err = uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)&ss);
    if (err)
        goto fail;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        goto fail;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
        err = -errno;
        goto fail;
    }
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        err = -errno;
        goto fail;
    }
    *out_fd = fd;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    return err;
}

/* libuv 1.44 cannot set SO_REUSEPORT itself: make the socket, then hand it over. */
static int open_listener(struct sl_http_server *s, struct sl_http_listener *l, bool probe)
{
    int fd = -1;
    int err;
    if (probe) {
        /* Without SO_REUSEPORT this bind fails while another process listens there. */
        if ((err = bind_socket(&l->addr, false, &fd)) != 0)
            return err;
        close(fd);
    }
    if ((err = bind_socket(&l->addr, s->share_port, &fd)) != 0)
        return err;
    uv_tcp_init(s->loop, &l->tcp);
    l->tcp.data = l;
    l->server = s;
    l->open = true;
    s->handles_open++;
    if ((err = uv_tcp_open(&l->tcp, fd)) != 0) {
        close(fd);
        close_listener(l);
        return err;
    }
    /* The kernel caps the backlog at net.core.somaxconn: ask for all of it, so a
     * burst of connections (a gateway opening many upstream streams at once)
     * waits in the queue instead of being dropped and retried a second later. */
    if ((err = uv_listen((uv_stream_t *)&l->tcp, 65535, on_connection)) != 0) {
        close_listener(l);
        return err;
    }
    return 0;
}

int sl_http_server_new(uv_loop_t *loop, const struct sl_http_server_options *opts,
                       struct sl_http_server **out)
{
    struct sl_http_server *s = calloc(1, sizeof(*s));
    int err = SL_ENOMEM;
    *out = NULL;
    if (s == NULL)
        return SL_ENOMEM;
    s->loop = loop;
    s->limits = *opts->limits;
    s->access_log = opts->access_log;
    s->name = opts->name;
    s->on_request = opts->on_request;
    s->data = opts->data;
    s->worker_data = opts->worker_data;
    s->share_port = opts->share_port;
    sl_buf_init(&s->log);
    s->listeners = calloc(opts->n_listen ? opts->n_listen : 1, sizeof(*s->listeners));
    if (s->listeners == NULL)
        goto fail;
    /* Lines logged by I/O callbacks are written after the poll (check);
     * lines logged by timers, before the loop blocks in the next poll (prepare). */
    uv_check_init(loop, &s->log_flush);
    s->log_flush.data = s;
    uv_check_start(&s->log_flush, on_log_check);
    uv_unref((uv_handle_t *)&s->log_flush);
    uv_prepare_init(loop, &s->log_flush_timers);
    s->log_flush_timers.data = s;
    uv_prepare_start(&s->log_flush_timers, on_log_prepare);
    uv_unref((uv_handle_t *)&s->log_flush_timers);
    uv_timer_init(loop, &s->deadline);
    s->deadline.data = s;
    uv_unref((uv_handle_t *)&s->deadline);
    s->handles_open = 3;
    for (size_t i = 0; i < opts->n_listen; i++) {
        const struct sl_config_addr *a = &opts->listen[i];
        s->listeners[i].addr = *a;
        if ((err = open_listener(s, &s->listeners[i], opts->share_port && opts->first_sharer)) !=
            0) {
            sl_log_error("%s listener %s%s%s:%u: %s", s->name, strchr(a->host, ':') ? "[" : "",
                         a->host, strchr(a->host, ':') ? "]" : "", a->port, uv_strerror(err));
            s->n_listeners = i;
            sl_http_server_shutdown(s, 0, NULL, NULL);
            return SL_EIO;
        }
        s->n_listeners = i + 1;
    }
    *out = s;
    return SL_OK;
fail:
    free(s->listeners);
    free(s);
    return err;
}

static void on_deadline(uv_timer_t *t)
{
    struct sl_http_server *s = t->data;
    if (s->n_conns)
        sl_log_warn("%s listener: shutdown deadline reached, closing %zu connection(s)", s->name,
                    s->n_conns);
    for (struct sl_http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        sl_conn_close(c);
    }
}

void sl_http_server_shutdown(struct sl_http_server *s, uint64_t deadline_ms,
                             void (*on_closed)(void *data), void *data)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->on_closed = on_closed;
    s->closed_data = data;
    for (size_t i = 0; i < s->n_listeners; i++)
        close_listener(&s->listeners[i]);
    for (struct sl_http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        sl_conn_drain(c);
    }
    if (s->n_conns) {
        uv_ref((uv_handle_t *)&s->deadline);
        uv_timer_start(&s->deadline, on_deadline, deadline_ms, 0);
    }
    flush_log(s);
    maybe_closed(s);
}
