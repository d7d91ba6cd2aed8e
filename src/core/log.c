#include "core/core.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

/* Logging settings are written once at start-up (and on reload) and read by
 * every worker, hence relaxed atomics rather than a lock. */
static _Atomic int log_level = SL_LOG_INFO;
static _Atomic int log_format = SL_LOG_JSON;

void sl_log_setup(enum sl_log_level level, enum sl_log_format format)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
    atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

enum sl_log_level sl_log_level(void)
{
    return (enum sl_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

enum sl_log_format sl_log_format(void)
{
    return (enum sl_log_format)atomic_load_explicit(&log_format, memory_order_relaxed);
}

const char *sl_log_level_name(enum sl_log_level level)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return (unsigned)level < SL_ARRAY_LEN(names) ? names[level] : "info";
}

void sl_log_write_line(const char *line, size_t len)
{
    /* One write per line (or batch of lines) keeps lines from different
     * threads whole; retry on short writes and EINTR. */
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        line += n;
        len -= (size_t)n;
    }
}

void sl_log(enum sl_log_level level, const char *fmt, ...)
{
    if (level < sl_log_level())
        return;
    char stackbuf[1024];
    struct sl_buf msg = {stackbuf, 0, sizeof(stackbuf)};
    struct sl_buf line;
    char when[40];
    va_list ap;

    /* Format the message in a stack buffer when it fits. */
    va_start(ap, fmt);
    int n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    msg.len = (size_t)n < sizeof(stackbuf) ? (size_t)n : sizeof(stackbuf) - 1;

    sl_clock_rfc3339(when, sizeof(when));
    sl_buf_init(&line);
    if (sl_log_format() == SL_LOG_JSON) {
        sl_buf_appendf(&line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", when,
                       sl_log_level_name(level));
        sl_buf_append_json_escaped(&line, (struct sl_str){msg.base, msg.len});
        sl_buf_append(&line, "\"}\n", 3);
    } else {
        sl_buf_appendf(&line, "%s %-5s %.*s\n", when, sl_log_level_name(level), (int)msg.len,
                       msg.base);
    }
    if (line.base)
        sl_log_write_line(line.base, line.len);
    sl_buf_dispose(&line);
}
