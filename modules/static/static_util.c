/* static_util.c — see static_util.h. */
#include "static_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- opening files beneath a root -------------------------------------- */

/* O_NONBLOCK: opening a FIFO (or a device) without it can block forever;
 * regular files ignore the flag. Anything not a regular file or a
 * directory is refused by the caller after fstat. */
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
#define MAX_LINKS 40 /* as the kernel's own limit */
#define MAX_DEPTH 128

static long sys_openat2(int dirfd, const char *path, struct open_how *how)
{
    return syscall(SYS_openat2, dirfd, path, how, sizeof *how);
}

st_resolver_t st_probe_resolver(int root_fd)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC | O_DIRECTORY,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    long fd = sys_openat2(root_fd, ".", &how);
    if (fd >= 0) {
        close((int)fd);
        return ST_RESOLVE_OPENAT2;
    }
    /* ENOSYS: kernel before 5.6; EPERM: a seccomp filter that predates it. */
    return (errno == ENOSYS || errno == EPERM) ? ST_RESOLVE_WALK : ST_RESOLVE_OPENAT2;
}

static void close_stack(int *stack, size_t depth)
{
    for (size_t i = 1; i <= depth; i++) /* stack[0] is the caller's root */
        close(stack[i]);
}

/* The fallback for kernels without openat2, with RESOLVE_BENEATH's rules:
 * each component is looked at without following it (O_NOFOLLOW, fstatat
 * AT_SYMLINK_NOFOLLOW); a symlink's target is spliced into the components
 * still to resolve, refused if absolute; ".." pops our own stack of
 * directory fds (never the kernel's ".."), refused above the root. Every
 * step is relative to an fd checked to be a directory, so swapping a
 * component for a symlink meanwhile fails (ELOOP/ENOTDIR) instead of
 * escaping. */
static int open_walk(int root_fd, const char *rel)
{
    int stack[MAX_DEPTH + 1];
    size_t depth = 0;
    stack[0] = root_fd;
    int links = 0, rc;

    /* todo: the components left, consumed from the front. */
    size_t cap = strlen(rel) + 1;
    char *todo = malloc(cap);
    if (todo == NULL)
        return -ENOMEM;
    memcpy(todo, rel, cap);
    char *p = todo;

    for (;;) {
        while (*p == '/')
            p++;
        if (*p == '\0') { /* the path names the directory on top */
            rc = openat(stack[depth], ".", OPEN_FLAGS | O_DIRECTORY);
            rc = rc < 0 ? -errno : rc;
            break;
        }
        char *end = strchrnul(p, '/');
        size_t clen = (size_t)(end - p);
        char comp[NAME_MAX + 1];
        if (clen > NAME_MAX) {
            rc = -ENAMETOOLONG;
            break;
        }
        memcpy(comp, p, clen);
        comp[clen] = '\0';
        p = end;
        bool final = true;
        for (const char *q = p; *q; q++)
            if (*q != '/') {
                final = false;
                break;
            }

        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            if (depth == 0) {
                rc = -EXDEV;
                break;
            }
            close(stack[depth--]);
            continue;
        }

        struct stat st;
        if (fstatat(stack[depth], comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -errno;
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlinkat(stack[depth], comp, target, sizeof target - 1);
            if (n < 0) {
                rc = -errno;
                break;
            }
            if (++links > MAX_LINKS) {
                rc = -ELOOP;
                break;
            }
            if (n == 0 || target[0] == '/') { /* RESOLVE_BENEATH refuses these too */
                rc = -EXDEV;
                break;
            }
            /* todo = target rest (rest is empty or starts with '/', which
             * must stay as it is: "link/" asks for a directory) */
            size_t rest = strlen(p);
            char *next = malloc((size_t)n + rest + 1);
            if (next == NULL) {
                rc = -ENOMEM;
                break;
            }
            memcpy(next, target, (size_t)n);
            memcpy(next + n, p, rest + 1);
            free(todo);
            todo = p = next;
            continue;
        }

        if (final) {
            /* "file.txt/" names a directory, as the kernel would say. */
            rc = openat(stack[depth], comp, OPEN_FLAGS | O_NOFOLLOW | (*p ? O_DIRECTORY : 0));
            rc = rc < 0 ? -errno : rc;
            break;
        }
        if (depth == MAX_DEPTH) {
            rc = -ENAMETOOLONG;
            break;
        }
        int dfd = openat(stack[depth], comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
            rc = -errno;
            break;
        }
        if (fstat(dfd, &st) < 0 || !S_ISDIR(st.st_mode)) { /* swapped meanwhile */
            close(dfd);
            rc = -ENOTDIR;
            break;
        }
        stack[++depth] = dfd;
    }
    close_stack(stack, depth);
    free(todo);
    return rc;
}

int st_open(const st_root_t *root, const char *rel)
{
    if (*rel == '\0')
        rel = ".";
    /* An absolute path ignores the directory fd altogether (openat and,
     * without RESOLVE_BENEATH, openat2): never relative to the root. */
    if (*rel == '/')
        return -EXDEV;
    /* ".." is never needed (the core normalises paths) and, without
     * RESOLVE_BENEATH, would leave the root: refuse it outright. */
    for (const char *p = rel; (p = strstr(p, "..")) != NULL; p += 2)
        if ((p == rel || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
            return -EXDEV;
    if (root->resolver == ST_RESOLVE_OPENAT2) {
        /* Without `beneath`, symlinks may lead anywhere, but never through
         * /proc magic links; ".." components are refused by the caller. */
        struct open_how how = {
            .flags = OPEN_FLAGS,
            .resolve = RESOLVE_NO_MAGICLINKS | (root->beneath ? RESOLVE_BENEATH : 0),
        };
        long fd = -1;
        /* EAGAIN: the kernel saw a rename race inside the root; retry a
         * few times, then give up rather than spin. */
        for (int tries = 0; tries < 8; tries++) {
            fd = sys_openat2(root->fd, rel, &how);
            if (fd >= 0 || errno != EAGAIN)
                break;
        }
        return fd < 0 ? -errno : (int)fd;
    }
    if (!root->beneath) {
        int fd = openat(root->fd, rel, OPEN_FLAGS);
        return fd < 0 ? -errno : fd;
    }
    return open_walk(root->fd, rel);
}

/* ---- HTTP dates ------------------------------------------------------------ */

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void two_digits(char *out, int v)
{
    out[0] = (char)('0' + v / 10);
    out[1] = (char)('0' + v % 10);
}

bool st_http_date(time_t t, char *buf)
{
    struct tm tm;
    buf[0] = '\0';
    /* gmtime_r fails (EOVERFLOW) when the year does not fit an int, and
     * leaves tm as it was: never format what it did not fill in. */
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return false;
    /* Not strftime: its names follow the locale; HTTP's are English. By
     * hand, every field in the range gmtime_r gives it. */
    int year = tm.tm_year + 1900;
    memcpy(buf, days[tm.tm_wday], 3);
    memcpy(buf + 3, ", ", 2);
    two_digits(buf + 5, tm.tm_mday);
    buf[7] = ' ';
    memcpy(buf + 8, months[tm.tm_mon], 3);
    buf[11] = ' ';
    two_digits(buf + 12, year / 100);
    two_digits(buf + 14, year % 100);
    buf[16] = ' ';
    two_digits(buf + 17, tm.tm_hour);
    buf[19] = ':';
    two_digits(buf + 20, tm.tm_min);
    buf[22] = ':';
    two_digits(buf + 23, tm.tm_sec); /* 60 for a leap second */
    memcpy(buf + 25, " GMT", 5);     /* with the NUL: 30 bytes */
    return true;
}

/* A tiny cursor parser for the three date formats. */
typedef struct {
    const char *p, *end;
    bool ok;
} cursor_t;

static void expect(cursor_t *c, const char *lit)
{
    size_t n = strlen(lit);
    if (c->ok && (size_t)(c->end - c->p) >= n && memcmp(c->p, lit, n) == 0)
        c->p += n;
    else
        c->ok = false;
}

static int number(cursor_t *c, int min_digits, int max_digits)
{
    int v = 0, n = 0;
    while (c->ok && c->p < c->end && n < max_digits && isdigit((unsigned char)*c->p)) {
        v = v * 10 + (*c->p++ - '0');
        n++;
    }
    if (n < min_digits)
        c->ok = false;
    return v;
}

static int month(cursor_t *c)
{
    for (int i = 0; c->ok && i < 12; i++)
        if (c->end - c->p >= 3 && memcmp(c->p, months[i], 3) == 0) {
            c->p += 3;
            return i;
        }
    c->ok = false;
    return 0;
}

static void skip_word(cursor_t *c) /* the day name, checked by nobody */
{
    const char *start = c->p;
    while (c->p < c->end && isalpha((unsigned char)*c->p))
        c->p++;
    if (c->p == start)
        c->ok = false;
}

static void clock_part(cursor_t *c, struct tm *tm)
{
    tm->tm_hour = number(c, 2, 2);
    expect(c, ":");
    tm->tm_min = number(c, 2, 2);
    expect(c, ":");
    tm->tm_sec = number(c, 2, 2);
}

time_t st_http_date_parse(const char *s, size_t len)
{
    struct tm tm = {0};
    cursor_t c = {s, s + len, true};
    skip_word(&c);
    if (!c.ok)
        return -1;
    if (c.p < c.end && *c.p == ',' && c.p - s == 3) { /* Sun, 06 Nov 1994 08:49:37 GMT */
        expect(&c, ", ");
        tm.tm_mday = number(&c, 2, 2);
        expect(&c, " ");
        tm.tm_mon = month(&c);
        expect(&c, " ");
        tm.tm_year = number(&c, 4, 4) - 1900;
        expect(&c, " ");
        clock_part(&c, &tm);
        expect(&c, " GMT");
    } else if (c.p < c.end && *c.p == ',') { /* Sunday, 06-Nov-94 08:49:37 GMT */
        expect(&c, ", ");
        tm.tm_mday = number(&c, 2, 2);
        expect(&c, "-");
        tm.tm_mon = month(&c);
        expect(&c, "-");
        int yy = number(&c, 2, 2);
        /* RFC 9110: a two-digit year more than 50 years ahead is in the past. */
        tm.tm_year = yy < 70 ? yy + 100 : yy;
        expect(&c, " ");
        clock_part(&c, &tm);
        expect(&c, " GMT");
    } else { /* Sun Nov  6 08:49:37 1994 */
        expect(&c, " ");
        tm.tm_mon = month(&c);
        expect(&c, " ");
        if (c.ok && c.p < c.end && *c.p == ' ')
            c.p++;
        tm.tm_mday = number(&c, 1, 2);
        expect(&c, " ");
        clock_part(&c, &tm);
        expect(&c, " ");
        tm.tm_year = number(&c, 4, 4) - 1900;
    }
    if (!c.ok || c.p != c.end || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    return timegm(&tm);
}

/* ---- entity tags --------------------------------------------------------- */

void st_etag(const struct stat *st, char *buf)
{
    unsigned long long ns = (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
                            (unsigned long long)st->st_mtim.tv_nsec;
    snprintf(buf, ST_ETAG_MAX, "\"%llx-%llx\"", ns, (unsigned long long)st->st_size);
}

bool st_etag_match(const char *list, size_t len, const char *etag, bool weak)
{
    const char *p = list, *end = list + len;
    size_t elen = strlen(etag);
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            return false;
        if (*p == '*')
            return true;
        bool is_weak = false;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = true;
            p += 2;
        }
        if (p == end || *p != '"')
            return false; /* malformed */
        const char *close = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (close == NULL)
            return false;
        size_t tlen = (size_t)(close - p) + 1;
        if ((weak || !is_weak) && tlen == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = close + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p != ',')
            return false; /* malformed */
    }
}

bool st_if_range_match(const char *value, size_t len, const char *etag, time_t modified,
                       bool modified_strong)
{
    const char *p = value, *end = value + len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t n = (size_t)(end - p);
    /* "W/" is the only way a weak tag starts; a date starting with "Wed"
     * must not be taken for one. */
    if (n >= 2 && p[0] == 'W' && p[1] == '/')
        return false; /* weak: never a match for If-Range */
    if (n >= 1 && p[0] == '"') {
        /* opaque-tag = DQUOTE *etagc DQUOTE, and nothing after it */
        if (n < 2 || end[-1] != '"')
            return false;
        for (const char *q = p + 1; q < end - 1; q++)
            if ((unsigned char)*q < 0x21 || *q == '"' || *q == 0x7f)
                return false;
        return n == strlen(etag) && memcmp(p, etag, n) == 0;
    }
    time_t t = st_http_date_parse(p, n);
    return modified_strong && t != -1 && t == modified;
}

/* ---- byte ranges --------------------------------------------------------- */

/* Decimal digits, saturating at UINT64_MAX; false if there are none. */
static bool digits(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    while (*p < end && isdigit((unsigned char)**p)) {
        unsigned d = (unsigned)(**p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        (*p)++;
    }
    *out = v;
    return *p > s;
}

st_range_t st_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first,
                          uint64_t *last)
{
    const char *p = value, *end = value + len;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (size == 0 || end - p < 6 || strncasecmp(p, "bytes=", 6) != 0)
        return ST_RANGE_NONE;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    for (const char *q = p; q < end; q++)
        if (*q == ',')
            return ST_RANGE_NONE; /* several ranges: serve the whole file */

    uint64_t a, b;
    if (p < end && *p == '-') { /* -n: the last n bytes */
        p++;
        if (!digits(&p, end, &b) || p != end)
            return ST_RANGE_NONE;
        if (b == 0)
            return ST_RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return ST_RANGE_OK;
    }
    if (!digits(&p, end, &a) || p == end || *p != '-')
        return ST_RANGE_NONE;
    p++;
    bool has_last = digits(&p, end, &b);
    if (p != end || (has_last && b < a))
        return ST_RANGE_NONE;
    if (a >= size)
        return ST_RANGE_UNSATISFIABLE;
    *first = a;
    *last = has_last && b < size - 1 ? b : size - 1;
    return ST_RANGE_OK;
}

/* ---- MIME types ------------------------------------------------------------ */

/* Sorted by extension (lowercase ASCII order) for bsearch. Text types say
 * their charset, so browsers do not guess. */
static const struct {
    const char *ext, *type;
} mime_table[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"atom", "application/atom+xml"},
    {"avif", "image/avif"},
    {"bin", "application/octet-stream"},
    {"bmp", "image/bmp"},
    {"css", "text/css; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/x-icon"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"jsonld", "application/ld+json"},
    {"m4a", "audio/mp4"},
    {"manifest", "application/manifest+json"},
    {"map", "application/json"},
    {"md", "text/markdown; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"rss", "application/rss+xml"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xml", "application/xml"},
    {"zip", "application/zip"},
};

const char *st_extension(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot == NULL || dot == base || dot[1] == '\0')
        return NULL;
    return dot + 1;
}

const char *st_mime_builtin(const char *name)
{
    const char *ext = st_extension(name);
    if (ext == NULL)
        return NULL;
    size_t lo = 0, hi = sizeof mime_table / sizeof mime_table[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcasecmp(ext, mime_table[mid].ext);
        if (c == 0)
            return mime_table[mid].type;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- URLs ----------------------------------------------------------------- */

size_t st_path_encode(const char *path, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL);
        if (keep) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
    return n;
}
