/* static_util.h — the parts of the static module that need no server:
 * opening a path beneath a root without escaping it, HTTP dates, entity
 * tags, byte ranges, MIME types and URL path encoding. Plain libc, so
 * tests/plugins/test_static_util.c tests them directly. */
#ifndef TWISTER_STATIC_UTIL_H
#define TWISTER_STATIC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* ---- opening files beneath a root -------------------------------------- */

typedef enum {
    ST_RESOLVE_OPENAT2 = 1, /* openat2(2) with RESOLVE_BENEATH (Linux 5.6+) */
    ST_RESOLVE_WALK = 2,    /* component by component with O_NOFOLLOW */
} st_resolver_t;

typedef struct {
    int fd;                 /* the root directory (O_PATH is enough) */
    bool beneath;           /* refuse anything that resolves outside the root;
                               false follows symlinks anywhere (but still
                               never a ".." component) */
    st_resolver_t resolver; /* how; st_probe_resolver picks it */
} st_root_t;

/* ST_RESOLVE_OPENAT2 if the kernel has openat2 (and no seccomp filter
 * hides it), else ST_RESOLVE_WALK. */
st_resolver_t st_probe_resolver(int root_fd);

/* Opens rel, a path relative to the root ("" or "." is the root itself;
 * empty and "." components are skipped), read-only, non-blocking (a FIFO
 * must not hang the worker), close-on-exec. Returns the fd, or -errno:
 *   -ENOENT, -ENOTDIR        no such file
 *   -EXDEV                   rel is absolute ("/etc/passwd": openat would
 *                            ignore the root), has a ".." component, or
 *                            (with beneath) resolves outside the root: an
 *                            absolute symlink, a symlink leading out of it
 *   -ELOOP                   too many symlinks, or a file swapped for one
 *   -EACCES, -EPERM, ...     as open(2) says */
int st_open(const st_root_t *root, const char *rel);

/* ---- HTTP dates (RFC 9110 §5.6.7) ------------------------------------ */

/* "Sun, 06 Nov 1994 08:49:37 GMT": always 29 bytes and a NUL. */
#define ST_HTTP_DATE_SIZE 30

/* Formats t as an IMF-fixdate into buf (ST_HTTP_DATE_SIZE bytes). Returns
 * false, with buf empty, when t has no IMF-fixdate: its year is outside
 * 0000..9999 (an mtime of 2^62 on tmpfs, say), which gmtime_r may not even
 * be able to convert. */
bool st_http_date(time_t t, char *buf);
/* Parses an IMF-fixdate, an RFC 850 date or an asctime date (recipients
 * must accept all three). Returns the time, or -1 if s is none of them. */
time_t st_http_date_parse(const char *s, size_t len);

/* ---- entity tags -------------------------------------------------------- */

#define ST_ETAG_MAX 48

/* A strong tag from the modification time (in nanoseconds, so that two
 * writes in one second differ) and the size: "<mtime hex>-<size hex>". */
void st_etag(const struct stat *st, char *buf);
/* True if the If-None-Match / If-Match field value list contains etag:
 * "*" matches anything; weak comparison ignores W/ prefixes, strong
 * comparison never matches a weak tag. A malformed list matches nothing. */
bool st_etag_match(const char *list, size_t len, const char *etag, bool weak);

/* True if an If-Range field value (RFC 9110 §13.1.5) lets a Range be
 * served: it is parsed by its grammar, entity-tag / HTTP-date. A strong
 * tag ("...") must equal etag; a weak one (W/"...") never matches; any
 * other value is an HTTP-date, which matches only a strong Last-Modified
 * (modified_strong; modified is then its time) of exactly that second.
 * Anything malformed does not match (the whole file is sent). */
bool st_if_range_match(const char *value, size_t len, const char *etag, time_t modified,
                       bool modified_strong);

/* ---- byte ranges (RFC 9110 §14) ------------------------------------------ */

typedef enum {
    ST_RANGE_NONE = 0,          /* no usable range: serve the whole file (200) */
    ST_RANGE_OK = 1,            /* *first..*last (inclusive) within the file (206) */
    ST_RANGE_UNSATISFIABLE = 2, /* 416 with Content-Range: bytes * /size */
} st_range_t;

/* Parses a Range field value for a file of size bytes. Only one range is
 * served: a list of several is ST_RANGE_NONE (the whole file, which HTTP
 * allows; multipart/byteranges is not worth its cost), as is any syntax
 * error or an empty file. */
st_range_t st_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first,
                          uint64_t *last);

/* ---- MIME types ----------------------------------------------------------- */

/* The built-in type for a file name's extension (case-insensitive), or
 * NULL if it has none or an unknown one. */
const char *st_mime_builtin(const char *name);
/* The extension of name's last component (after its last '.'), without the
 * dot, or NULL ("README", ".profile" have none). */
const char *st_extension(const char *name);

/* ---- URLs ----------------------------------------------------------------- */

/* Percent-encodes a decoded path for a Location header: keeps unreserved
 * characters, sub-delims, ':', '@' and '/'. out needs 3 * len + 1 bytes.
 * Returns the encoded length. */
size_t st_path_encode(const char *path, size_t len, char *out);

#endif
