/*
 * The curl multi handle on a uv_loop: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t each) and when to call it back
 * (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); we hand every event to
 * curl_multi_socket_action and then collect finished transfers. Also the
 * upstream's lifecycle and the deferred work described in internal.h.
 */
#include "upstream/internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* curl_global_init is not thread-safe: the first worker to start does it. It
 * is never undone (curl's globals live as long as the process). */
static uv_once_t global_once = UV_ONCE_INIT;
static CURLcode global_rc;
bool sl_upstream_env_proxy;

static bool env_set(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0';
}

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    /* The proxy variables curl reads for every transfer: read once, they do not change. */
    static const char *const names[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                        "ALL_PROXY"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        sl_upstream_env_proxy = sl_upstream_env_proxy || env_set(names[i]);
}

const char *sl_upstream_failure_name(enum sl_upstream_failure f)
{
    switch (f) {
    case SL_UPSTREAM_OK:
        return "ok";
    case SL_UPSTREAM_CONNECT:
        return "connect";
    case SL_UPSTREAM_RESET:
        return "reset";
    case SL_UPSTREAM_TLS:
        return "tls";
    case SL_UPSTREAM_TIMEOUT_CONNECT:
        return "timeout_connect";
    case SL_UPSTREAM_TIMEOUT_FIRST_BYTE:
        return "timeout_first_byte";
    case SL_UPSTREAM_TIMEOUT_IDLE:
        return "timeout_idle";
    case SL_UPSTREAM_TIMEOUT_TOTAL:
        return "timeout_total";
    case SL_UPSTREAM_PROTOCOL:
        return "protocol";
    case SL_UPSTREAM_INTERNAL:
        return "internal";
    }
    return "unknown";
}

/* ---- handles closing: on_closed once the last one is gone ---- */

static void maybe_closed(struct sl_upstream *u)
{
    if (!u->closed || u->handles_open > 0)
        return;
    void (*on_closed)(void *) = u->on_closed;
    void *data = u->closed_data;
    free(u->by_fd);
    free(u);
    if (on_closed)
        on_closed(data);
}

void sl_upstream_handle_gone(struct sl_upstream *u)
{
    u->handles_open--;
    maybe_closed(u);
}

static void on_own_handle_closed(uv_handle_t *h)
{
    sl_upstream_handle_gone(h->data);
}

/* ---- curl's view of the loop ---- */

static void collect(struct sl_upstream *u)
{
    CURLMsg *m;
    int left;
    while (!u->closing && (m = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        struct sl_upstream_xfer *x = (struct sl_upstream_xfer *)priv;
        /* A transfer cancelled during the call is reaped by settle. */
        if (x != NULL && x->state != SL_XFER_CANCELLED)
            sl_xfer_finished(x, rc);
    }
}

static void drive(struct sl_upstream *u, curl_socket_t fd, int flags)
{
    int running;
    if (u->closed)
        return;
    u->busy++;
    u->in_curl++;
    curl_multi_socket_action(u->multi, fd, flags, &running);
    u->in_curl--;
    collect(u);
    u->busy--;
    sl_upstream_settle(u);
}

static void sock_set_events(struct sl_upstream_sock *s, int events);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sl_upstream_sock *s = h->data;
    int flags = 0;
    if (!s->curl_wants) {
        /* A kept connection between transfers became readable: the server
         * closed it (or sent something unasked). Stop watching; curl finds
         * it dead when it next looks at it. */
        sock_set_events(s, 0);
        return;
    }
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & (UV_READABLE | UV_DISCONNECT))
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    drive(s->u, s->fd, flags);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sl_upstream_sock *s = h->data;
    struct sl_upstream *u = s->u;
    free(s);
    sl_upstream_handle_gone(u);
}

static struct sl_upstream_sock *sock_find(struct sl_upstream *u, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < u->n_by_fd ? u->by_fd[fd] : NULL;
}

/* uv_close stops the watcher at once (and takes the descriptor out of
 * epoll), so the descriptor may be closed and its number reused right
 * after, before the close callback has run. */
static void sock_close(struct sl_upstream_sock *s)
{
    struct sl_upstream *u = s->u;
    if (s->prev)
        s->prev->next = s->next;
    else
        u->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    if (sock_find(u, s->fd) == s)
        u->by_fd[s->fd] = NULL;
    if (s->idle) {
        s->idle = false;
        u->n_idle--;
    }
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static struct sl_upstream_sock *sock_open(struct sl_upstream *u, curl_socket_t fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= u->n_by_fd) {
        size_t n = u->n_by_fd ? u->n_by_fd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct sl_upstream_sock **grown = realloc(u->by_fd, n * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        memset(grown + u->n_by_fd, 0, (n - u->n_by_fd) * sizeof(*grown));
        u->by_fd = grown;
        u->n_by_fd = n;
    }
    /* A watcher left on this number belongs to a descriptor closed behind
     * our back (curl closes its resolver's sockets itself): drop it. */
    if (u->by_fd[fd] != NULL)
        sock_close(u->by_fd[fd]);
    struct sl_upstream_sock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (uv_poll_init_socket(u->loop, &s->poll, fd) != 0) {
        free(s);
        return NULL;
    }
    u->watchers_opened++;
    s->poll.data = s;
    s->fd = fd;
    s->u = u;
    s->next = u->socks;
    if (u->socks)
        u->socks->prev = s;
    u->socks = s;
    u->handles_open++;
    u->by_fd[fd] = s;
    return s;
}

/* Start, change or stop the watcher; nothing to do when already so. */
static void sock_set_events(struct sl_upstream_sock *s, int events)
{
    if (events == s->events)
        return;
    if (events == 0 ? uv_poll_stop(&s->poll) : uv_poll_start(&s->poll, events, on_poll))
        return;
    s->events = events;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct sl_upstream *u = userp;
    struct sl_upstream_sock *s = sock_find(u, fd);
    if (what == CURL_POLL_REMOVE) {
        if (s == NULL)
            return 0;
        s->curl_wants = false;
        if (!s->connection) {
            sock_close(s);
            return 0;
        }
        if (s->events != 0)
            sock_set_events(s, UV_READABLE); /* see struct sl_upstream_sock */
        if (!s->idle) {
            s->idle = true;
            u->n_idle++;
        }
        return 0;
    }
    if (s == NULL && (s = sock_open(u, fd)) == NULL)
        return -1;
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    s->curl_wants = true;
    if (s->idle) {
        s->idle = false;
        u->n_idle--;
    }
    sock_set_events(s, events);
    return events == s->events ? 0 : -1;
}

/* Connection sockets: we open them so that we know which to keep watching
 * between transfers, and close them so that their watcher is closed first
 * (libuv's rule). clientp is u: a connection outlives its first transfer. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *address)
{
    struct sl_upstream *u = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    curl_socket_t fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    struct sl_upstream_sock *s = sock_open(u, fd);
    if (s == NULL) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    s->connection = true;
    return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct sl_upstream_sock *s = sock_find(clientp, fd);
    if (s != NULL)
        sock_close(s);
    return close(fd);
}

void sl_upstream_unclaim(struct sl_upstream *u, struct sl_upstream_xfer *x)
{
    if (x->claim) {
        x->claim = false;
        u->n_claims--;
    }
}

void sl_upstream_set_socket_callbacks(struct sl_upstream *u, CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, (void *)u);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, (void *)u);
}

static void on_timer(uv_timer_t *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct sl_upstream *u = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&u->timer);
    else /* 0 too: curl must not be re-entered from here, so on the next turn */
        uv_timer_start(&u->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- deferred work ---- */

void sl_upstream_todo(struct sl_upstream *u, struct sl_upstream_xfer *x)
{
    if (x->todo_queued)
        return;
    x->todo_queued = true;
    x->tnext = NULL;
    *u->todo_tail = x;
    u->todo_tail = &x->tnext;
}

static void on_kick(uv_timer_t *t)
{
    struct sl_upstream *u = t->data;
    u->busy++;
    while (u->resume != NULL && !u->closing) {
        struct sl_upstream_xfer *x = u->resume;
        sl_upstream_unqueue_resume(u, x);
        sl_xfer_unpause(x);
    }
    u->busy--;
    sl_upstream_settle(u);
}

void sl_upstream_queue_resume(struct sl_upstream *u, struct sl_upstream_xfer *x)
{
    if (x->resume_queued)
        return;
    x->resume_queued = true;
    x->rprev = NULL;
    x->rnext = u->resume;
    if (u->resume)
        u->resume->rprev = x;
    u->resume = x;
    if (!uv_is_active((uv_handle_t *)&u->kick))
        uv_timer_start(&u->kick, on_kick, 0, 0);
}

void sl_upstream_unqueue_resume(struct sl_upstream *u, struct sl_upstream_xfer *x)
{
    if (!x->resume_queued)
        return;
    if (x->rprev)
        x->rprev->rnext = x->rnext;
    else
        u->resume = x->rnext;
    if (x->rnext)
        x->rnext->rprev = x->rprev;
    x->rprev = x->rnext = NULL;
    x->resume_queued = false;
}

static void finish_close(struct sl_upstream *u)
{
    u->closed = true;
    u->todo = NULL;
    u->todo_tail = &u->todo;
    while (u->resume != NULL)
        sl_upstream_unqueue_resume(u, u->resume);
    /* Every transfer left is cancelled: no callbacks, just handles. */
    while (u->active != NULL) {
        struct sl_upstream_xfer *x = u->active;
        u->active = x->next;
        x->prev = x->next = NULL;
        sl_xfer_destroy(x);
    }
    while (u->free_list != NULL) {
        struct sl_upstream_xfer *x = u->free_list;
        u->free_list = x->next;
        x->next = NULL;
        sl_xfer_destroy(x);
    }
    u->n_free = 0;
    /* We close the remaining watchers ourselves below; curl need not tell us. */
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, NULL);
    curl_multi_cleanup(u->multi);
    u->multi = NULL;
    curl_share_cleanup(u->share);
    u->share = NULL;
    while (u->socks != NULL)
        sock_close(u->socks);
    uv_close((uv_handle_t *)&u->timer, on_own_handle_closed);
    uv_close((uv_handle_t *)&u->kick, on_own_handle_closed);
}

void sl_upstream_settle(struct sl_upstream *u)
{
    if (u->busy > 0 || u->in_curl > 0 || u->closed)
        return;
    u->busy++;
    while (u->todo != NULL) {
        struct sl_upstream_xfer *x = u->todo;
        u->todo = x->tnext;
        if (u->todo == NULL)
            u->todo_tail = &u->todo;
        x->tnext = NULL;
        x->todo_queued = false;
        if (x->state == SL_XFER_CANCELLED)
            sl_xfer_reap(x);
        else if (x->state == SL_XFER_PENDING)
            sl_xfer_add(x);
    }
    u->busy--;
    if (u->closing)
        finish_close(u);
}

/* ---- lifecycle ---- */

int sl_upstream_new(uv_loop_t *loop, struct sl_upstream **out)
{
    int err = SL_ENOMEM;
    struct sl_upstream *u = NULL;

    uv_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        err = SL_EIO;
        goto fail;
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        goto fail;
    u->loop = loop;
    u->todo_tail = &u->todo;
    u->multi = curl_multi_init();
    u->share = curl_share_init();
    if (u->multi == NULL || u->share == NULL)
        goto fail;
    /* TLS session resumption across the transfers (easy handles) of this pool. */
    if (curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        goto fail;

    CURLM *m = u->multi;
    CURLMcode mc = CURLM_OK;
    mc |= curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    mc |= curl_multi_setopt(m, CURLMOPT_SOCKETDATA, u);
    mc |= curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    mc |= curl_multi_setopt(m, CURLMOPT_TIMERDATA, u);
    /* Idle connections kept for reuse. No cap on connections per host or in
     * total: a cap would queue requests invisibly inside curl, and how many
     * requests may run is the policy layer's decision, not the pool's. */
    mc |= curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)SL_UPSTREAM_MAX_IDLE_CONNS);
    mc |= curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    mc |= curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    mc |= curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (mc != CURLM_OK) {
        err = SL_EINVAL;
        goto fail;
    }

    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    uv_timer_init(loop, &u->kick);
    u->kick.data = u;
    u->handles_open = 2;
    *out = u;
    return SL_OK;
fail:
    if (u != NULL) {
        if (u->multi)
            curl_multi_cleanup(u->multi);
        if (u->share)
            curl_share_cleanup(u->share);
        free(u);
    }
    return err;
}

void sl_upstream_close(struct sl_upstream *u, void (*on_closed)(void *data), void *data)
{
    if (u->closing)
        return;
    u->closing = true;
    u->on_closed = on_closed;
    u->closed_data = data;
    for (struct sl_upstream_xfer *x = u->active; x != NULL; x = x->next)
        sl_xfer_abandon(x);
    sl_upstream_settle(u);
}
