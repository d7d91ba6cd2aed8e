/*
 * core: the small pieces every subsystem uses — string views, growable
 * buffers, a per-request arena, error codes, clocks, ids and logging.
 * core depends on nothing else in sluice.
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* ---- errors: functions return 0 or one of these ---- */
enum {
    SL_OK = 0,
    SL_EINVAL = -1,    /* malformed input */
    SL_ENOMEM = -2,    /* allocation failed */
    SL_EAGAIN = -3,    /* need more input */
    SL_ETOOBIG = -4,   /* input exceeds a configured bound */
    SL_ENOTFOUND = -5, /* no such thing */
    SL_EIO = -6,       /* operating system error (see errno) */
    SL_EUNSUPP = -7,   /* valid but not supported */
    SL_ESTATE = -8,    /* call not allowed in the current state */
    SL_EPERM = -9,     /* not allowed: unknown credentials, over a limit */
};
const char *sl_strerror(int err);

#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- string views: never own their bytes ---- */
struct sl_str {
    const char *base;
    size_t len;
};
#define SL_STR(lit) ((struct sl_str){(lit), sizeof(lit) - 1})
#define SL_STR_NULL ((struct sl_str){NULL, 0})
struct sl_str sl_str_from_cstr(const char *s);
bool sl_str_eq(struct sl_str a, struct sl_str b);
bool sl_str_eq_ci(struct sl_str a, struct sl_str b);
bool sl_str_starts_with(struct sl_str s, struct sl_str prefix);
/* Parse a non-negative decimal integer occupying all of s; SL_EINVAL otherwise. */
int sl_str_to_u64(struct sl_str s, uint64_t *out);
/* The raw (not percent-decoded) value of the first `name=value` pair of a
 * query string (without '?'); SL_STR_NULL when absent or empty. */
struct sl_str sl_query_param(struct sl_str query, struct sl_str name);
/* Take the next '&'-separated pair off the front of *query into *pair (possibly
 * empty); false once *query is used up. */
bool sl_query_next(struct sl_str *query, struct sl_str *pair);
/* Constant-time equality for secrets of equal length. */
bool sl_str_eq_consttime(struct sl_str a, struct sl_str b);

/* ---- growable byte buffer: owns base ---- */
struct sl_buf {
    char *base;
    size_t len;
    size_t cap;
};
void sl_buf_init(struct sl_buf *b);
void sl_buf_dispose(struct sl_buf *b);
int sl_buf_reserve(struct sl_buf *b, size_t extra);
/* Give back room beyond len + extra (+ the NUL); may move the bytes. */
int sl_buf_shrink(struct sl_buf *b, size_t extra);
int sl_buf_append(struct sl_buf *b, const void *data, size_t len);
int sl_buf_append_str(struct sl_buf *b, struct sl_str s);
int sl_buf_appendf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_buf_vappendf(struct sl_buf *b, const char *fmt, va_list ap);
/* Append s as the contents of a JSON string (no quotes), escaping as JSON requires. */
int sl_buf_append_json_escaped(struct sl_buf *b, struct sl_str s);
/* Append v in decimal. */
int sl_buf_append_u64(struct sl_buf *b, uint64_t v);
/* Drop the first n bytes, moving the rest to the front. */
void sl_buf_consume(struct sl_buf *b, size_t n);

/* ---- arena: bump allocator owning every block it hands out ---- */
struct sl_arena_block;
struct sl_arena {
    struct sl_arena_block *head; /* owned; list of blocks, newest first */
    size_t block_size;
};
void sl_arena_init(struct sl_arena *a, size_t block_size);
void *sl_arena_alloc(struct sl_arena *a, size_t size);
char *sl_arena_strdup(struct sl_arena *a, struct sl_str s);
/* Free everything but the first block, which is kept for reuse. */
void sl_arena_reset(struct sl_arena *a);
void sl_arena_dispose(struct sl_arena *a);

/* ---- clocks and ids ---- */
uint64_t sl_clock_mono_us(void);
/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12), and back. */
int64_t sl_days_from_civil(int64_t y, unsigned m, unsigned d);
void sl_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* unix_ms as RFC 3339 UTC: "2026-11-26T06:10:00Z", or with millis "2026-11-26T06:10:00.123Z"
 * (out: at least 32 bytes). */
void sl_clock_format(int64_t unix_ms, bool millis, char *out, size_t outlen);
/* Wall-clock milliseconds since the Unix epoch. */
uint64_t sl_clock_unix_ms(void);
/* RFC 3339 UTC time with milliseconds, e.g. 2026-01-02T03:04:05.678Z; out >= 32 bytes. */
void sl_clock_rfc3339(char *out, size_t outlen);
#define SL_REQUEST_ID_LEN 32
/* A new random request id: 32 lowercase hex characters, NUL-terminated (out >= 33 bytes). */
void sl_request_id_new(char *out);
/* Ids a client may set: 1..128 bytes of [A-Za-z0-9._:-]. */
bool sl_request_id_is_sane(struct sl_str id);

/* ---- logging ---- */
enum sl_log_level { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };
enum sl_log_format { SL_LOG_JSON, SL_LOG_TEXT };
void sl_log_setup(enum sl_log_level level, enum sl_log_format format);
enum sl_log_level sl_log_level(void);
enum sl_log_format sl_log_format(void);
const char *sl_log_level_name(enum sl_log_level level);
void sl_log(enum sl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define sl_log_debug(...)                                                                          \
    do {                                                                                           \
        if (sl_log_level() <= SL_LOG_DEBUG)                                                        \
            sl_log(SL_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define sl_log_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_log_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_log_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
/* Write a preformatted line (with its newline) to the log stream in one write. */
void sl_log_write_line(const char *line, size_t len);

#endif
