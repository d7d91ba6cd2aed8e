/*
 * Checks on single values of the gateway's sections (see struct
 * sl_cfg_field.check): names, URLs, keys and their hashes, CA files.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/schema.h"

/* A CA bundle is a few hundred KiB; anything much bigger is not one. */
#define MAX_CA_FILE_BYTES (16u << 20)
#define HASH_PREFIX "sha256:"
#define HASH_PREFIX_LEN (sizeof(HASH_PREFIX) - 1)

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int sl_cfg_hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* Letters, digits, '.', '_' and '-', neither "." alone nor with "..": safe
 * as a URL path segment, a header value, a log field or a query value. */
bool sl_cfg_name_ok(struct sl_str s)
{
    for (size_t i = 0; i < s.len; i++)
        if (!is_name_char(s.base[i]))
            return false;
    if (s.len == 1 && s.base[0] == '.')
        return false;
    for (size_t i = 0; i + 1 < s.len; i++)
        if (s.base[i] == '.' && s.base[i + 1] == '.')
            return false;
    return true;
}

static int reject_name(struct sl_buf *text, struct sl_buf *why, const char *where)
{
    sl_buf_appendf(why,
                   "expected letters, digits, \".\", \"_\" and \"-\" only, and neither \".\" "
                   "alone nor \"..\" (%s), got ",
                   where);
    sl_cfg_quote(why, (struct sl_str){text->base, text->len});
    return SL_EINVAL;
}

/* A route's name: clients send it in URL paths, so nothing that a path
 * could read as a separator, an escape or a step up. */
int sl_cfg_check_route_name(struct sl_buf *text, struct sl_buf *why)
{
    if (sl_cfg_name_ok((struct sl_str){text->base, text->len}))
        return SL_OK;
    return reject_name(text, why, "clients send the name in URL paths");
}

/* Backend and client names go into headers, logs and metrics. */
int sl_cfg_check_name(struct sl_buf *text, struct sl_buf *why)
{
    if (sl_cfg_name_ok((struct sl_str){text->base, text->len}))
        return SL_OK;
    return reject_name(text, why, "the name appears in headers and logs");
}

int sl_cfg_check_api_version(struct sl_buf *text, struct sl_buf *why)
{
    if (sl_cfg_name_ok((struct sl_str){text->base, text->len}))
        return SL_OK;
    sl_buf_appendf(why, "expected an API version like 2024-10-21 or 2025-01-01-preview, got ");
    sl_cfg_quote(why, (struct sl_str){text->base, text->len});
    return SL_EINVAL;
}

/* Printable ASCII without spaces: what can go into a URL, a header or a body
 * field unescaped. Reports the first other character by position only, so
 * that a secret is never quoted. */
static int check_printable(struct sl_buf *text, struct sl_buf *why, const char *what)
{
    for (size_t i = 0; i < text->len; i++) {
        unsigned char c = (unsigned char)text->base[i];
        if (c > 0x20 && c < 0x7f)
            continue;
        const char *hint = "";
        if ((c == '\n' || c == '\r') && i + 2 >= text->len)
            hint = " (a trailing line break, as when a value is read from a file?)";
        else if (c == ' ')
            hint = " (a space)";
        sl_buf_appendf(why, "%s must be printable ASCII without spaces; character %zu is not%s",
                       what, i + 1, hint);
        return SL_EINVAL;
    }
    return SL_OK;
}

int sl_cfg_check_api_key(struct sl_buf *text, struct sl_buf *why)
{
    return check_printable(text, why, "the key");
}

int sl_cfg_check_text(struct sl_buf *text, struct sl_buf *why)
{
    return check_printable(text, why, "the value");
}

/* Where the authority of URL s starts (after "http://" or "https://", in
 * any case); 0 for another scheme. */
size_t sl_cfg_url_authority(struct sl_str s)
{
    if (s.len >= 8 && sl_str_eq_ci((struct sl_str){s.base, 8}, SL_STR("https://")))
        return 8;
    if (s.len >= 7 && sl_str_eq_ci((struct sl_str){s.base, 7}, SL_STR("http://")))
        return 7;
    return 0;
}

/*
 * A backend's base URL: http:// or https://, a host, an optional port and
 * path; no query, fragment or credentials. One trailing '/' is dropped so
 * that "https://host/" and "https://host" mean the same.
 */
int sl_cfg_check_url(struct sl_buf *text, struct sl_buf *why)
{
    static const char expected[] = "expected a URL like https://NAME.openai.azure.com or "
                                   "https://HOST/v1 (http:// or https://, a host, a path if "
                                   "needed)";
    struct sl_str s = {text->base, text->len};
    /* Credentials first, before any message quotes the URL: what precedes
     * an '@' in the authority is a password. */
    const char *scheme_end = memmem(s.base, s.len, "://", 3);
    size_t from = scheme_end ? (size_t)(scheme_end - s.base) + 3 : 0;
    const char *auth_slash = memchr(s.base + from, '/', s.len - from);
    size_t auth_to = auth_slash ? (size_t)(auth_slash - s.base) : s.len;
    if (memchr(s.base + from, '@', auth_to - from)) {
        sl_buf_appendf(why, "a URL must not hold a user or password: put the backend's "
                            "credential in api_key");
        return SL_EINVAL;
    }
    size_t at = sl_cfg_url_authority(s);
    if (at == 0 || at > s.len)
        goto bad;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c <= 0x20 || c >= 0x7f) {
            sl_buf_appendf(why,
                           "a URL cannot hold spaces or control characters (character %zu); "
                           "percent-encode them",
                           i + 1);
            return SL_EINVAL;
        }
    }
    size_t after_scheme = s.len > at ? s.len - at : 0; /* spelled out for GCC's -O2 range check */
    const char *slash = after_scheme ? memchr(s.base + at, '/', after_scheme) : NULL;
    size_t auth_end = slash ? (size_t)(slash - s.base) : s.len;
    struct sl_str auth = {s.base + at, auth_end - at};
    if (memchr(s.base, '?', s.len) || memchr(s.base, '#', s.len)) {
        sl_buf_appendf(why, "a backend URL has no query (\"?...\") nor fragment (\"#...\"): "
                            "sluice adds the path and the client's query to it, got ");
        sl_cfg_quote(why, s);
        return SL_EINVAL;
    }
    /* host, [v6], host:port or [v6]:port */
    const char *port = NULL;
    if (auth.len > 0 && auth.base[0] == '[') {
        const char *close = memchr(auth.base, ']', auth.len);
        if (close == NULL || close == auth.base + 1)
            goto bad;
        if (close + 1 < auth.base + auth.len) {
            if (close[1] != ':')
                goto bad;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(auth.base, ':', auth.len);
        if (colon == auth.base || auth.len == 0)
            goto bad;
        port = colon ? colon + 1 : NULL;
    }
    if (port) {
        uint64_t p = 0;
        struct sl_str ps = {port, (size_t)(auth.base + auth.len - port)};
        if (sl_str_to_u64(ps, &p) != SL_OK || p < 1 || p > 65535) {
            sl_buf_appendf(why, "%s, got ", expected);
            sl_cfg_quote(why, s);
            sl_buf_appendf(why, " (the port must be a number from 1 to 65535)");
            return SL_EINVAL;
        }
    }
    struct sl_str path = {s.base + auth_end, s.len - auth_end};
    for (size_t i = 0; i + 1 < path.len; i++) {
        if (path.base[i] == '/' && path.base[i + 1] == '/') {
            sl_buf_appendf(why, "%s, got ", expected);
            sl_cfg_quote(why, s);
            sl_buf_appendf(why, " (\"//\" makes an empty path segment)");
            return SL_EINVAL;
        }
    }
    if (path.len > 0 && path.base[path.len - 1] == '/') {
        text->len--;
        text->base[text->len] = '\0';
    }
    return SL_OK;
bad:
    sl_buf_appendf(why, "%s, got ", expected);
    sl_cfg_quote(why, s);
    return SL_EINVAL;
}

/* "sha256:" and 64 lowercase hex digits. The value is never quoted: a user
 * who pasted a key where its hash belongs must not see it in logs. */
int sl_cfg_check_hashed_key(struct sl_buf *text, struct sl_buf *why)
{
    static const char expected[] = "expected a hashed key, \"" HASH_PREFIX "\" followed by 64 "
                                   "lowercase hex digits, as `sluice hash-key` prints it";
    struct sl_str s = {text->base, text->len};
    if (s.len >= HASH_PREFIX_LEN &&
        sl_str_eq_ci((struct sl_str){s.base, HASH_PREFIX_LEN}, SL_STR(HASH_PREFIX)) &&
        !sl_str_starts_with(s, SL_STR(HASH_PREFIX))) {
        sl_buf_appendf(why, "%s; write \"" HASH_PREFIX "\" in lower case", expected);
        return SL_EINVAL;
    }
    if (!sl_str_starts_with(s, SL_STR(HASH_PREFIX))) {
        sl_buf_appendf(why,
                       "%s; if this is a key itself, store its hash instead: the file "
                       "never holds client keys",
                       expected);
        return SL_EINVAL;
    }
    size_t n = s.len - HASH_PREFIX_LEN;
    if (n != 64) {
        sl_buf_appendf(why, "%s, got %zu characters after \"" HASH_PREFIX "\"", expected, n);
        return SL_EINVAL;
    }
    for (size_t i = HASH_PREFIX_LEN; i < s.len; i++) {
        if (!is_hex_lower(s.base[i])) {
            sl_buf_appendf(why, "%s; character %zu is not%s", expected, i + 1,
                           s.base[i] >= 'A' && s.base[i] <= 'F' ? " (upper case)" : "");
            return SL_EINVAL;
        }
    }
    return SL_OK;
}

/* A CA file must be there when the configuration is loaded, not only when
 * the first request fails to connect: read it now and find a certificate. */
int sl_cfg_check_ca_file(struct sl_buf *text, struct sl_buf *why)
{
    int err = SL_EINVAL;
    struct stat st;
    FILE *f = NULL;
    X509 *cert = NULL;
    /* O_NONBLOCK: a FIFO must not hang the load; it is refused below. */
    int fd = open(text->base, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        sl_buf_appendf(why, "cannot read ");
        sl_cfg_quote(why, (struct sl_str){text->base, text->len});
        sl_buf_appendf(why, ": %s", strerror(errno));
        return SL_EINVAL;
    }
    if (fstat(fd, &st) != 0) {
        sl_buf_appendf(why, "cannot read ");
        sl_cfg_quote(why, (struct sl_str){text->base, text->len});
        sl_buf_appendf(why, ": %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        sl_buf_appendf(why, "expected a PEM file of CA certificates, and ");
        sl_cfg_quote(why, (struct sl_str){text->base, text->len});
        sl_buf_appendf(why, " is %s", S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
        goto out;
    }
    if (st.st_size > (off_t)MAX_CA_FILE_BYTES) {
        sl_buf_appendf(why, "expected a PEM file of CA certificates, and ");
        sl_cfg_quote(why, (struct sl_str){text->base, text->len});
        sl_buf_appendf(why, " is larger than %u MiB", MAX_CA_FILE_BYTES >> 20);
        goto out;
    }
    if ((f = fdopen(fd, "rb")) == NULL) {
        sl_buf_appendf(why, "cannot read ");
        sl_cfg_quote(why, (struct sl_str){text->base, text->len});
        sl_buf_appendf(why, ": %s", strerror(errno));
        goto out;
    }
    fd = -1;
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    ERR_clear_error();
    if (cert == NULL) {
        sl_buf_appendf(why, "expected a PEM file of CA certificates, and ");
        sl_cfg_quote(why, (struct sl_str){text->base, text->len});
        sl_buf_appendf(why, " holds none (no \"-----BEGIN CERTIFICATE-----\" block)");
        goto out;
    }
    err = SL_OK;
out:
    X509_free(cert);
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    return err;
}

int sl_cfg_parse_cidr(const char *s, unsigned char addr[16], int *family, unsigned *bits)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(host))
        return SL_EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, host, addr) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        *family = AF_INET6;
    else
        return SL_EINVAL;
    unsigned max = *family == AF_INET ? 32 : 128;
    uint64_t b = max;
    if (slash && (sl_str_to_u64(sl_str_from_cstr(slash + 1), &b) != SL_OK || b > max))
        return SL_EINVAL;
    *bits = (unsigned)b;
    return SL_OK;
}

int sl_cfg_check_cidr(struct sl_buf *text, struct sl_buf *why)
{
    unsigned char addr[16];
    int family;
    unsigned bits;
    if (sl_cfg_parse_cidr(text->base, addr, &family, &bits) == SL_OK)
        return SL_OK;
    sl_buf_appendf(why, "expected a network like 10.0.0.0/8 or 2001:db8::/32, or one address, "
                        "got ");
    sl_cfg_quote(why, (struct sl_str){text->base, text->len});
    return SL_EINVAL;
}
