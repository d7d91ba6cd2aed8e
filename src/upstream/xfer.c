/*
 * One upstream transfer: the easy handle's options, curl's header/write/
 * prereq/progress callbacks turned into on_response/on_body/on_done, flow
 * control, our own first-byte and idle timeouts, and what a failure is
 * called (enum sl_upstream_failure plus a message naming the peer, never a
 * request header).
 *
 * Timeouts: connect and total are curl's (CURLOPT_CONNECTTIMEOUT_MS,
 * CURLOPT_TIMEOUT_MS). First-byte and idle share one uv timer per transfer:
 * first-byte is armed once the whole request has gone out (PREREQFUNCTION
 * says a connection is ready; the progress callback says the body's last
 * byte was sent) and stopped by the status line; idle then measures silence
 * since the status line or the last body bytes. It is re-armed lazily (each
 * chunk only records the loop time) and stopped while the caller has the
 * transfer paused.
 */
#include "upstream/internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void set_state(struct sl_upstream_xfer *x, enum sl_xfer_state s)
{
    x->state = s;
}

static bool is_live(const struct sl_upstream_xfer *x)
{
    return x->state == SL_XFER_PENDING || x->state == SL_XFER_CONNECTING ||
           x->state == SL_XFER_WAITING || x->state == SL_XFER_RECEIVING;
}

/* ---- u->active ---- */

static void active_link(struct sl_upstream_xfer *x)
{
    struct sl_upstream *u = x->u;
    x->prev = NULL;
    x->next = u->active;
    if (u->active)
        u->active->prev = x;
    u->active = x;
}

static void active_unlink(struct sl_upstream_xfer *x)
{
    struct sl_upstream *u = x->u;
    if (x->prev)
        x->prev->next = x->next;
    else if (u->active == x)
        u->active = x->next;
    else
        return; /* not on the list */
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* ---- recycling ---- */

static void on_xfer_timer_closed(uv_handle_t *h)
{
    struct sl_upstream_xfer *x = h->data;
    struct sl_upstream *u = x->u;
    free(x);
    sl_upstream_handle_gone(u);
}

void sl_xfer_destroy(struct sl_upstream_xfer *x)
{
    struct sl_upstream *u = x->u;
    if (x->in_multi) {
        curl_multi_remove_handle(u->multi, x->easy);
        x->in_multi = false;
    }
    sl_upstream_unclaim(u, x);
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    free(x->req_headers);
    x->req_headers = NULL;
    sl_buf_dispose(&x->head);
    uv_close((uv_handle_t *)&x->timer, on_xfer_timer_closed);
}

/* Back to the pool with its easy handle (reset) and stopped timer, or freed
 * when the pool is full or the upstream is closing. x is off every list. */
static void recycle(struct sl_upstream_xfer *x)
{
    struct sl_upstream *u = x->u;
    uv_timer_stop(&x->timer);
    sl_upstream_unclaim(u, x);
    if (u->closing || u->n_free >= SL_UPSTREAM_FREE_MAX) {
        sl_xfer_destroy(x);
        return;
    }
    curl_easy_reset(x->easy);
    free(x->req_headers);
    sl_buf_dispose(&x->head);
    CURL *easy = x->easy;
    memset(x, 0, offsetof(struct sl_upstream_xfer, timer));
    memset(&x->state, 0, sizeof(*x) - offsetof(struct sl_upstream_xfer, state));
    x->u = u;
    x->easy = easy;
    set_state(x, SL_XFER_POOLED);
    x->next = u->free_list;
    u->free_list = x;
    u->n_free++;
}

static struct sl_upstream_xfer *take(struct sl_upstream *u)
{
    struct sl_upstream_xfer *x = u->free_list;
    if (x != NULL) {
        u->free_list = x->next;
        x->next = NULL;
        u->n_free--;
        return x;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        free(x);
        return NULL;
    }
    x->u = u;
    uv_timer_init(u->loop, &x->timer);
    x->timer.data = x;
    u->handles_open++;
    return x;
}

/* ---- failures ---- */

static enum sl_upstream_failure classify(const struct sl_upstream_xfer *x, CURLcode rc)
{
    bool responded = x->state == SL_XFER_RECEIVING;
    switch (rc) {
    case CURLE_OK:
        return responded ? SL_UPSTREAM_OK : SL_UPSTREAM_PROTOCOL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return SL_UPSTREAM_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return SL_UPSTREAM_TLS;
    case CURLE_OPERATION_TIMEDOUT:
        /* curl applies the smaller of the two while connecting. */
        if (!x->prereq_seen && x->connect_ms && (!x->total_ms || x->connect_ms <= x->total_ms))
            return SL_UPSTREAM_TIMEOUT_CONNECT;
        return SL_UPSTREAM_TIMEOUT_TOTAL;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return responded ? SL_UPSTREAM_PROTOCOL : SL_UPSTREAM_RESET;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_FAILED_INIT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNKNOWN_OPTION:
        return SL_UPSTREAM_INTERNAL;
    default: /* PARTIAL_FILE, WEIRD_SERVER_REPLY, BAD_CONTENT_ENCODING, ... */
        return SL_UPSTREAM_PROTOCOL;
    }
}

/* "host:port" of the URL, for messages: never its userinfo, path or query. */
static void peer_name(struct sl_upstream_xfer *x, char *out, size_t n)
{
    char *url = NULL, *host = NULL, *port = NULL;
    CURLU *h = curl_url();
    snprintf(out, n, "the upstream");
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (h != NULL && url != NULL &&
        curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) ==
            CURLUE_OK &&
        curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        snprintf(out, n, "%s:%s", host, port);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(h);
}

static void describe(struct sl_upstream_xfer *x, enum sl_upstream_failure f, CURLcode rc, char *out,
                     size_t n)
{
    char who[300], err[128];
    /* curl's own text names the operation and the peer, never header values. */
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    unsigned long long ms = 0;
    peer_name(x, who, sizeof(who));
    if (x->fail_msg != NULL) {
        snprintf(out, n, "%s: %s", who, x->fail_msg);
        return;
    }
    switch (f) {
    case SL_UPSTREAM_OK:
        snprintf(out, n, "ok");
        return;
    case SL_UPSTREAM_CONNECT:
        if (rc == CURLE_COULDNT_RESOLVE_HOST) {
            snprintf(out, n, "could not resolve %s: %s", who, detail);
        } else if (rc == CURLE_COULDNT_CONNECT) {
            long os_errno = 0;
            curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &os_errno);
            if (os_errno != 0)
                detail = strerror_r((int)os_errno, err, sizeof(err));
            snprintf(out, n, "could not connect to %s: %s", who, detail);
        } else {
            snprintf(out, n, "connection to %s failed: %s", who, detail);
        }
        return;
    case SL_UPSTREAM_RESET:
        snprintf(out, n, "connection to %s failed before a response: %s", who, detail);
        return;
    case SL_UPSTREAM_TLS:
        snprintf(out, n, "TLS with %s failed: %s", who, detail);
        return;
    case SL_UPSTREAM_TIMEOUT_CONNECT:
        ms = x->connect_ms;
        snprintf(out, n, "connecting to %s timed out after %llu ms", who, ms);
        return;
    case SL_UPSTREAM_TIMEOUT_FIRST_BYTE:
        ms = x->first_byte_ms;
        snprintf(out, n, "%s sent no response within %llu ms of the request (first-byte timeout)",
                 who, ms);
        return;
    case SL_UPSTREAM_TIMEOUT_IDLE:
        ms = x->idle_ms;
        snprintf(out, n, "%s sent nothing for %llu ms in the middle of the response (idle timeout)",
                 who, ms);
        return;
    case SL_UPSTREAM_TIMEOUT_TOTAL:
        ms = x->total_ms;
        snprintf(out, n, "%s did not complete the response within %llu ms (total timeout)", who,
                 ms);
        return;
    case SL_UPSTREAM_PROTOCOL:
        snprintf(out, n, "%s: the response was malformed or cut short: %s", who, detail);
        return;
    case SL_UPSTREAM_INTERNAL:
        snprintf(out, n, "internal error talking to %s: %s", who, detail);
        return;
    }
    snprintf(out, n, "%s: %s", who, detail);
}

/* The end, for a transfer that is not cancelled and not inside curl:
 * on_done, then back to the pool. */
static void complete(struct sl_upstream_xfer *x, enum sl_upstream_failure f, const char *msg)
{
    struct sl_upstream *u = x->u;
    uv_timer_stop(&x->timer);
    x->timer_kind = SL_XFER_TIMER_NONE;
    sl_upstream_unqueue_resume(u, x);
    if (x->in_multi) {
        /* Before the response is complete this closes an HTTP/1 connection
         * (and resets an HTTP/2 stream): it is never reused half-read. */
        curl_multi_remove_handle(u->multi, x->easy);
        x->in_multi = false;
    }
    sl_upstream_unclaim(u, x);
    active_unlink(x);
    set_state(x, SL_XFER_DONE);
    x->cb.on_done(x->data, f, msg);
    recycle(x);
}

static void fail(struct sl_upstream_xfer *x, enum sl_upstream_failure f, CURLcode rc)
{
    char msg[300 + CURL_ERROR_SIZE + 200];
    describe(x, f, rc, msg, sizeof(msg));
    complete(x, f, msg);
}

void sl_xfer_finished(struct sl_upstream_xfer *x, CURLcode rc)
{
    if (rc == CURLE_OK && x->state == SL_XFER_RECEIVING) {
        complete(x, SL_UPSTREAM_OK, "ok");
        return;
    }
    enum sl_upstream_failure f = x->fail != SL_UPSTREAM_OK ? x->fail : classify(x, rc);
    if (rc == CURLE_OK && x->fail_msg == NULL)
        x->fail_msg = "the connection ended without a final response";
    fail(x, f, rc);
}

/* From inside a curl callback: remember why, and make curl stop. */
static size_t abort_in_cb(struct sl_upstream_xfer *x, enum sl_upstream_failure f, const char *msg)
{
    if (x->fail == SL_UPSTREAM_OK) {
        x->fail = f;
        x->fail_msg = msg;
    }
    return 0;
}

/* ---- timers ---- */

static void on_xfer_timer(uv_timer_t *t);

static void arm(struct sl_upstream_xfer *x, enum sl_xfer_timer kind, uint64_t ms)
{
    x->timer_kind = kind;
    uv_timer_start(&x->timer, on_xfer_timer, ms, 0);
}

static void disarm(struct sl_upstream_xfer *x)
{
    uv_timer_stop(&x->timer);
    x->timer_kind = SL_XFER_TIMER_NONE;
}

static void arm_idle(struct sl_upstream_xfer *x)
{
    if (x->idle_ms == 0 || x->paused)
        return;
    x->last_active = uv_now(x->u->loop);
    arm(x, SL_XFER_TIMER_IDLE, x->idle_ms);
}

/* The whole request went out: the server's turn. */
static void mark_sent(struct sl_upstream_xfer *x)
{
    if (x->sent)
        return;
    x->sent = true;
    if (x->first_byte_ms && x->status == 0 && x->state == SL_XFER_WAITING)
        arm(x, SL_XFER_TIMER_FIRST_BYTE, x->first_byte_ms);
}

static void on_xfer_timer(uv_timer_t *t)
{
    struct sl_upstream_xfer *x = t->data;
    struct sl_upstream *u = x->u;
    enum sl_upstream_failure f;
    if (x->timer_kind == SL_XFER_TIMER_IDLE) {
        uint64_t quiet = uv_now(u->loop) - x->last_active;
        if (quiet < x->idle_ms) { /* bytes came since it was armed */
            uv_timer_start(t, on_xfer_timer, x->idle_ms - quiet, 0);
            return;
        }
        f = SL_UPSTREAM_TIMEOUT_IDLE;
    } else if (x->timer_kind == SL_XFER_TIMER_FIRST_BYTE) {
        f = SL_UPSTREAM_TIMEOUT_FIRST_BYTE;
    } else {
        return;
    }
    x->timer_kind = SL_XFER_TIMER_NONE;
    if (!is_live(x))
        return;
    u->busy++;
    fail(x, f, CURLE_OK);
    u->busy--;
    sl_upstream_settle(u);
}

/* ---- curl callbacks ---- */

static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct sl_upstream_xfer *x = ud;
    if (x->state == SL_XFER_CANCELLED)
        return CURL_PREREQFUNC_ABORT;
    x->prereq_seen = true;
    sl_upstream_unclaim(x->u, x);
    if (x->state == SL_XFER_CONNECTING)
        set_state(x, SL_XFER_WAITING);
    if (x->body_len == 0)
        mark_sent(x);
    return CURL_PREREQFUNC_OK;
}

/* Installed only to see the end of a request body (for the first-byte timer). */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct sl_upstream_xfer *x = ud;
    if (x->state == SL_XFER_CANCELLED)
        return 1;
    if (!x->sent && x->prereq_seen && ulnow >= 0 && (uint64_t)ulnow >= x->body_len)
        mark_sent(x);
    return 0;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(struct sl_str s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!is_tchar((unsigned char)s.base[i]))
            return false;
    return true;
}

static struct sl_str trim(struct sl_str s)
{
    while (s.len > 0 && (s.base[0] == ' ' || s.base[0] == '\t')) {
        s.base++;
        s.len--;
    }
    while (s.len > 0 && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* "HTTP/1.1 200 OK", "HTTP/2 200": the status, or -1. */
static int parse_status(struct sl_str line)
{
    const char *sp = memchr(line.base, ' ', line.len);
    if (sp == NULL)
        return -1;
    size_t rest = line.len - (size_t)(sp + 1 - line.base);
    const char *d = sp + 1;
    if (rest < 3 || (rest > 3 && d[3] != ' '))
        return -1;
    int status = 0;
    for (int i = 0; i < 3; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        status = status * 10 + (d[i] - '0');
    }
    return status >= 100 ? status : -1;
}

/* The final head is complete: on_response with views into x->head. */
static bool deliver_response(struct sl_upstream_xfer *x)
{
    struct sl_http_header local[32];
    struct sl_http_header *h = x->n_head > 0 ? local : NULL;
    if (x->n_head > SL_ARRAY_LEN(local)) {
        h = malloc(x->n_head * sizeof(*h));
        if (h == NULL) {
            abort_in_cb(x, SL_UPSTREAM_INTERNAL, "out of memory");
            return false;
        }
    }
    const char *p = x->head.base;
    for (size_t i = 0; i < x->n_head; i++) {
        const char *nl = memchr(p, '\n', x->head.len - (size_t)(p - x->head.base));
        const char *colon = memchr(p, ':', (size_t)(nl - p));
        h[i].name = (struct sl_str){p, (size_t)(colon - p)};
        h[i].value = (struct sl_str){colon + 1, (size_t)(nl - colon - 1)};
        p = nl + 1;
    }
    set_state(x, SL_XFER_RECEIVING);
    x->cb.on_response(x->data, x->status, h, x->n_head);
    if (h != local && h != NULL)
        free(h);
    /* A stream may live for minutes: keep nothing of its head. */
    sl_buf_dispose(&x->head);
    x->n_head = 0;
    return x->state != SL_XFER_CANCELLED;
}

static size_t on_header(char *bytes, size_t size, size_t nitems, void *ud)
{
    struct sl_upstream_xfer *x = ud;
    size_t n = size * nitems;
    if (x->state == SL_XFER_CANCELLED)
        return 0;
    if (x->state != SL_XFER_WAITING && x->state != SL_XFER_CONNECTING)
        return n; /* trailers after the body: not passed on */
    struct sl_str line = {bytes, n};
    if (line.len > 0 && line.base[line.len - 1] == '\n')
        line.len--;
    if (line.len > 0 && line.base[line.len - 1] == '\r')
        line.len--;

    if (sl_str_starts_with(line, SL_STR("HTTP/"))) {
        /* A new status line: after 1xx interim responses, start over. */
        int status = parse_status(line);
        if (status < 0)
            return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "malformed status line");
        x->status = status;
        x->head.len = 0;
        x->n_head = 0;
        if (x->timer_kind == SL_XFER_TIMER_FIRST_BYTE)
            disarm(x);
        arm_idle(x);
        return n;
    }
    if (x->status == 0)
        return n; /* nothing of ours precedes a status line */
    if (line.len == 0) {
        if (x->status < 200) {
            x->status = 0; /* interim response over: wait for the next status line */
            return n;
        }
        return deliver_response(x) ? n : 0;
    }
    if (line.base[0] == ' ' || line.base[0] == '\t') {
        /* obs-fold continues the previous value: join with one space. */
        struct sl_str more = trim(line);
        if (x->n_head == 0)
            return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "malformed response header");
        if (memchr(more.base, '\r', more.len) || memchr(more.base, '\0', more.len))
            return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "malformed response header");
        if (x->head.len + more.len + 2 > SL_UPSTREAM_MAX_HEAD_BYTES)
            return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "response head too large");
        x->head.len--; /* the '\n' */
        if (sl_buf_append(&x->head, " ", 1) || sl_buf_append_str(&x->head, more) ||
            sl_buf_append(&x->head, "\n", 1))
            return abort_in_cb(x, SL_UPSTREAM_INTERNAL, "out of memory");
        return n;
    }
    const char *colon = memchr(line.base, ':', line.len);
    if (colon == NULL)
        return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "malformed response header");
    struct sl_str name = {line.base, (size_t)(colon - line.base)};
    struct sl_str value = trim((struct sl_str){colon + 1, line.len - name.len - 1});
    if (!is_token(name) || memchr(value.base, '\r', value.len) ||
        memchr(value.base, '\0', value.len))
        return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "malformed response header");
    if (x->n_head >= SL_UPSTREAM_MAX_HEADERS ||
        x->head.len + name.len + value.len + 2 > SL_UPSTREAM_MAX_HEAD_BYTES)
        return abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "response head too large");
    if (sl_buf_append_str(&x->head, name) || sl_buf_append(&x->head, ":", 1) ||
        sl_buf_append_str(&x->head, value) || sl_buf_append(&x->head, "\n", 1))
        return abort_in_cb(x, SL_UPSTREAM_INTERNAL, "out of memory");
    x->n_head++;
    return n;
}

/*
 * Body bytes. Pausing: we return CURL_WRITEFUNC_PAUSE, and curl keeps the
 * bytes it offered (plus any that arrive meanwhile) and offers them again,
 * from the same first byte, on unpause. But the caller consumed them when it
 * asked to pause, so x->skip counts the bytes at the front of curl's kept
 * data that were already delivered.
 */
static size_t on_write(char *bytes, size_t size, size_t nitems, void *ud)
{
    struct sl_upstream_xfer *x = ud;
    size_t n = size * nitems;
    if (x->state == SL_XFER_CANCELLED)
        return CURL_WRITEFUNC_ERROR;
    if (x->state != SL_XFER_RECEIVING) {
        abort_in_cb(x, SL_UPSTREAM_PROTOCOL, "body bytes before a response head");
        return CURL_WRITEFUNC_ERROR;
    }
    if (x->paused) { /* paused from outside on_body: nothing consumed */
        x->curl_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    size_t seen = SL_MIN(x->skip, n);
    x->skip -= seen;
    if (seen == n)
        return n;
    x->last_active = uv_now(x->u->loop);
    bool more = x->cb.on_body(x->data, bytes + seen, n - seen);
    if (x->state == SL_XFER_CANCELLED)
        return CURL_WRITEFUNC_ERROR;
    if (!more || x->paused) {
        if (!x->paused)
            sl_upstream_pause(x);
        x->curl_paused = true;
        x->skip = n;
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

/* ---- the request ---- */

static bool is_ours(struct sl_str name)
{
    /* Framing and connection management belong to curl and this pool. */
    static const struct sl_str ours[] = {
        SL_STR("Content-Length"), SL_STR("Transfer-Encoding"),
        SL_STR("Expect"),         SL_STR("Connection"),
        SL_STR("Keep-Alive"),     SL_STR("Proxy-Connection"),
        SL_STR("Upgrade"),        SL_STR("TE"),
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ours); i++)
        if (sl_str_eq_ci(name, ours[i]))
            return true;
    return false;
}

static bool header_ok(const struct sl_http_header *h)
{
    struct sl_str v = h->value;
    if (!is_token(h->name))
        return false;
    if (v.len == 0)
        return true;
    return v.base != NULL && !memchr(v.base, '\r', v.len) && !memchr(v.base, '\n', v.len) &&
           !memchr(v.base, '\0', v.len);
}

/*
 * The curl_slist for CURLOPT_HTTPHEADER in one allocation: nodes first, then
 * their text. curl only reads the list, so we build and free it ourselves.
 * "Name:" tells curl to drop a header it would add (Expect, Accept, the
 * form Content-Type it assumes for POSTFIELDS); "Name;" sends an empty one.
 */
static int build_headers(struct sl_upstream_xfer *x, const struct sl_upstream_request *r)
{
    static const char *const drops[] = {"Expect:", "Accept:", "Content-Type:"};
    bool have[SL_ARRAY_LEN(drops)] = {true, false, false};
    size_t nodes = 0, text = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct sl_http_header *h = &r->headers[i];
        if (is_ours(h->name))
            continue;
        if (sl_str_eq_ci(h->name, SL_STR("Accept")))
            have[1] = true;
        if (sl_str_eq_ci(h->name, SL_STR("Content-Type")))
            have[2] = true;
        nodes++;
        text += h->name.len + 2 + h->value.len + 1;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(drops); i++) {
        if (i == 0 || !have[i]) {
            nodes++;
            text += strlen(drops[i]) + 1;
        }
    }
    struct curl_slist *list = malloc(nodes * sizeof(*list) + text);
    if (list == NULL)
        return SL_ENOMEM;
    char *p = (char *)(list + nodes);
    size_t k = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct sl_http_header *h = &r->headers[i];
        if (is_ours(h->name))
            continue;
        list[k].data = p;
        memcpy(p, h->name.base, h->name.len);
        p += h->name.len;
        if (h->value.len == 0) {
            *p++ = ';';
        } else {
            *p++ = ':';
            *p++ = ' ';
            memcpy(p, h->value.base, h->value.len);
            p += h->value.len;
        }
        *p++ = '\0';
        k++;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(drops); i++) {
        if (i == 0 || !have[i]) {
            size_t len = strlen(drops[i]) + 1;
            list[k].data = p;
            memcpy(p, drops[i], len);
            p += len;
            k++;
        }
    }
    for (size_t i = 0; i < k; i++)
        list[i].next = i + 1 < k ? &list[i + 1] : NULL;
    x->req_headers = list;
    return SL_OK;
}

static long ms_opt(uint64_t ms)
{
    return ms > (uint64_t)LONG_MAX ? LONG_MAX : (long)ms;
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK)                                             \
            goto fail;                                                                             \
    } while (0)

static int configure(struct sl_upstream_xfer *x, const struct sl_upstream_request *r)
{
    CURL *e = x->easy;
    SETOPT(CURLOPT_PRIVATE, (void *)x);
    SETOPT(CURLOPT_URL, r->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    if (!sl_upstream_env_proxy)
        SETOPT(CURLOPT_PROXY, "");
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(CURLOPT_SHARE, x->u->share);
    sl_upstream_set_socket_callbacks(x->u, e);
    /* The gateway built the path; send it exactly, and pass bodies as they are. */
    SETOPT(CURLOPT_PATH_AS_IS, 1L);
    SETOPT(CURLOPT_HTTP_CONTENT_DECODING, 0L);
    SETOPT(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    /* Notice pooled connections that died quietly (NAT, load balancers). */
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_TCP_KEEPIDLE, 60L);
    SETOPT(CURLOPT_TCP_KEEPINTVL, 20L);
    SETOPT(CURLOPT_HTTPHEADER, x->req_headers);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, (void *)x);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, (void *)x);
    SETOPT(CURLOPT_PREREQFUNCTION, on_prereq);
    SETOPT(CURLOPT_PREREQDATA, (void *)x);
    if (r->expect_stream)
        SETOPT(CURLOPT_BUFFERSIZE, (long)SL_UPSTREAM_STREAM_READ);
    if (r->first_byte_timeout_ms && x->body_len > 0) {
        SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
        SETOPT(CURLOPT_XFERINFODATA, (void *)x);
        SETOPT(CURLOPT_NOPROGRESS, 0L);
    }
    if (r->http2 && strncasecmp(r->url, "https://", 8) == 0) {
        SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        /* Wait for a connection being set up to multiplex on, rather than
         * opening one per concurrent request. Only over TLS: a plain
         * http:// backend speaks HTTP/1.1, where waiting would serialise a
         * burst of new requests behind connections that cannot be shared. */
        SETOPT(CURLOPT_PIPEWAIT, 1L);
    } else {
        SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        /* See sl_upstream.n_idle. */
        struct sl_upstream *u = x->u;
        if (u->n_idle > u->n_claims) {
            x->claim = true;
            u->n_claims++;
        } else {
            SETOPT(CURLOPT_FRESH_CONNECT, 1L);
            u->fresh_connects++;
        }
    }
    if (r->connect_timeout_ms)
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, ms_opt(r->connect_timeout_ms));
    if (r->total_timeout_ms)
        SETOPT(CURLOPT_TIMEOUT_MS, ms_opt(r->total_timeout_ms));
    SETOPT(CURLOPT_SSL_VERIFYPEER, r->insecure ? 0L : 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, r->insecure ? 0L : 2L);
    if (r->ca_file)
        SETOPT(CURLOPT_CAINFO, r->ca_file);

    /* The body is sent from the caller's memory (POSTFIELDS does not copy). */
    const char *m = r->method;
    if (strcmp(m, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") == 0 && r->body.len == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        bool post = strcmp(m, "POST") == 0;
        if (post || r->body.len > 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
            SETOPT(CURLOPT_POSTFIELDS, r->body.len ? r->body.base : "");
        }
        if (!post)
            SETOPT(CURLOPT_CUSTOMREQUEST, m);
    }
    return SL_OK;
fail:
    return SL_EINVAL;
}

int sl_upstream_start(struct sl_upstream *u, const struct sl_upstream_request *r,
                      const struct sl_upstream_callbacks *cb, void *data,
                      struct sl_upstream_xfer **out)
{
    int err = SL_EINVAL;
    struct sl_upstream_xfer *x = NULL;
    if (u->closing)
        return SL_ESTATE;
    if (r->url == NULL || r->method == NULL || !is_token(sl_str_from_cstr(r->method)) ||
        cb->on_response == NULL || cb->on_body == NULL || cb->on_done == NULL ||
        (r->body.len > 0 && r->body.base == NULL) || (r->n_headers > 0 && r->headers == NULL))
        return SL_EINVAL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!header_ok(&r->headers[i]))
            return SL_EINVAL; /* CR/LF would let a value smuggle in headers */

    x = take(u);
    if (x == NULL)
        return SL_ENOMEM;
    x->cb = *cb;
    x->data = data;
    x->body_len = r->body.len;
    x->connect_ms = r->connect_timeout_ms;
    x->first_byte_ms = r->first_byte_timeout_ms;
    x->idle_ms = r->idle_timeout_ms;
    x->total_ms = r->total_timeout_ms;
    x->errbuf[0] = '\0';
    if ((err = build_headers(x, r)) != SL_OK)
        goto fail;
    if ((err = configure(x, r)) != SL_OK)
        goto fail;

    if (u->in_curl > 0) {
        /* Inside a callback curl refuses new handles: settle adds it. */
        set_state(x, SL_XFER_PENDING);
        sl_upstream_todo(u, x);
    } else {
        CURLMcode mc = curl_multi_add_handle(u->multi, x->easy);
        if (mc != CURLM_OK) {
            err = mc == CURLM_OUT_OF_MEMORY ? SL_ENOMEM : SL_EIO;
            goto fail;
        }
        x->in_multi = true;
        set_state(x, SL_XFER_CONNECTING);
    }
    active_link(x);
    *out = x;
    return SL_OK;
fail:
    recycle(x);
    return err;
}

void sl_xfer_add(struct sl_upstream_xfer *x)
{
    if (curl_multi_add_handle(x->u->multi, x->easy) == CURLM_OK) {
        x->in_multi = true;
        set_state(x, SL_XFER_CONNECTING);
        return;
    }
    x->fail_msg = "curl refused the transfer";
    fail(x, SL_UPSTREAM_INTERNAL, CURLE_FAILED_INIT);
}

/* ---- flow control and cancellation ---- */

void sl_upstream_pause(struct sl_upstream_xfer *x)
{
    if (!is_live(x) || x->paused)
        return;
    /* Lazy: the next write callback returns CURL_WRITEFUNC_PAUSE, so this
     * never calls into curl and is safe from anywhere. */
    x->paused = true;
    sl_upstream_unqueue_resume(x->u, x);
    if (x->timer_kind == SL_XFER_TIMER_IDLE)
        disarm(x);
}

void sl_upstream_resume(struct sl_upstream_xfer *x)
{
    if (!is_live(x) || !x->paused)
        return;
    x->paused = false;
    if (x->status != 0)
        arm_idle(x);
    if (x->curl_paused)
        sl_upstream_queue_resume(x->u, x);
}

void sl_xfer_unpause(struct sl_upstream_xfer *x)
{
    struct sl_upstream *u = x->u;
    if (!is_live(x) || x->paused || !x->curl_paused)
        return;
    x->curl_paused = false;
    /* May deliver the kept bytes right here, through on_write. */
    u->in_curl++;
    CURLcode rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
    u->in_curl--;
    if (rc != CURLE_OK && is_live(x)) {
        x->fail_msg = "could not resume the transfer";
        fail(x, x->fail != SL_UPSTREAM_OK ? x->fail : SL_UPSTREAM_INTERNAL, rc);
    }
}

void sl_xfer_abandon(struct sl_upstream_xfer *x)
{
    disarm(x);
    sl_upstream_unqueue_resume(x->u, x);
    set_state(x, SL_XFER_CANCELLED);
}

void sl_xfer_reap(struct sl_upstream_xfer *x)
{
    struct sl_upstream *u = x->u;
    if (x->in_multi) {
        curl_multi_remove_handle(u->multi, x->easy);
        x->in_multi = false;
    }
    sl_upstream_unclaim(u, x);
    active_unlink(x);
    recycle(x);
}

void sl_upstream_cancel(struct sl_upstream_xfer *x)
{
    if (x == NULL || !is_live(x))
        return; /* done (inside on_done) or already cancelled */
    struct sl_upstream *u = x->u;
    sl_xfer_abandon(x);
    if (u->in_curl > 0 || x->todo_queued) {
        /* curl is on the stack (or settle already holds x): reap afterwards. */
        sl_upstream_todo(u, x);
        sl_upstream_settle(u);
    } else {
        sl_xfer_reap(x);
    }
}
