/* access_log — one line per request, written in the LOG phase.
 *
 *   modules: [access_log, ...]
 *   access_log: { path: logs/access.log, format: combined }
 *
 * Formats: "combined" (nginx's default), "common" (CLF), "json" (one
 * object per line), or a line of the server's variables, nginx's
 * log_format: `format: '$remote_addr $request_id "$request" $status'`
 * (values escaped as nginx does, "-" for a missing one). Each worker appends to the file with
 * O_APPEND and writes whole lines, so workers never interleave within a line. Lines are buffered
 * (up to buffer_size bytes or flush_interval) to keep the hot path free of a write(2) per request.
 * Log rotation needs no signal: once a second each worker checks whether the path now names another
 * file (mv + create, logrotate's default) and reopens it. A route can opt out with `access_log: {
 * off: true }`. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

/* The longest line written; longer ones are cut (a request target is at
 * most limits.request_line, 8 KiB by default, escaped up to 4x). */
#define ACCESS_LINE_MAX (40 * 1024)

typedef enum {
    FORMAT_COMBINED,
    FORMAT_COMMON,
    FORMAT_JSON,
    FORMAT_TEMPLATE, /* the user's, with the server's variables */
} format_t;

typedef struct {
    const char *path; /* global: the file; NULL when only routes opt out */
    format_t format;
    tw_template_t *template; /* FORMAT_TEMPLATE */
    uint64_t buffer_size;
    uint64_t flush_ms;
    bool off; /* route: do not log requests of this route */
} access_conf_t;

/* Per worker state: the open file and the line buffer. Allocated in
 * init_worker and kept with tw_worker_set_ctx, so that nothing outlives
 * the worker's runtime and a new generation never sees the old one's. */
typedef struct {
    const access_conf_t *conf;
    int fd;
    dev_t dev;
    ino_t ino;
    struct stat refused; /* what the path named when a reopen last failed:
                            not tried (nor reported) again until it changes */
    char *buf;
    size_t len;
    tw_loop_t *loop;
    tw_timer_t timer;
    time_t time_sec; /* the second time_text was formatted for */
    char time_text[40];
} access_state_t;

static int access_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                            void **conf, tw_conf_error_t *err)
{
    static const char *const global_keys[] = {"path", "format", "buffer_size", "flush_interval",
                                              NULL};
    static const char *const route_keys[] = {"off", NULL};
    if (!node)
        return 0;
    access_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    c->buffer_size = 64 * 1024;
    c->flush_ms = 1000;
    if (scope == TW_SCOPE_ROUTE) {
        if (tw_conf_check_keys(node, route_keys, err))
            return -1;
        const tw_conf_node_t *off = tw_conf_map_get(node, "off");
        if (off && tw_conf_get_bool(off, &c->off, err))
            return -1;
        *conf = c;
        return 0;
    }
    if (tw_conf_check_keys(node, global_keys, err))
        return -1;
    const tw_conf_node_t *n = tw_conf_map_get(node, "path");
    const char *path;
    if (!n)
        return tw_conf_error(err, node, "access_log needs a path");
    if (tw_conf_get_string(n, &path, err))
        return -1;
    if (!*path)
        return tw_conf_error(err, n, "expected a file path, got an empty value");
    char full[4096];
    if (path[0] != '/') {
        if ((size_t)snprintf(full, sizeof full, "%s/%s", tw_configure_dir(cf), path) >= sizeof full)
            return tw_conf_error(err, n, "path too long");
        path = full;
    }
    c->path = tw_configure_strdup(cf, path);
    if (!c->path)
        return tw_conf_error(err, n, "out of memory");
    if ((n = tw_conf_map_get(node, "format"))) {
        const char *f;
        if (tw_conf_get_string(n, &f, err))
            return -1;
        if (strcmp(f, "combined") == 0)
            c->format = FORMAT_COMBINED;
        else if (strcmp(f, "common") == 0)
            c->format = FORMAT_COMMON;
        else if (strcmp(f, "json") == 0)
            c->format = FORMAT_JSON;
        else if (strchr(f, '$')) {
            c->format = FORMAT_TEMPLATE;
            if (!(c->template = tw_template_compile(cf, f, n, err)))
                return -1;
        } else
            return tw_conf_error(err, n,
                                 "expected combined, common, json or a line with variables "
                                 "('$remote_addr \"$request\" $status'), got '%s'",
                                 f);
    }
    if ((n = tw_conf_map_get(node, "buffer_size"))) {
        if (tw_conf_get_size(n, &c->buffer_size, err))
            return -1;
        if (c->buffer_size > 16 * 1024 * 1024)
            return tw_conf_error(err, n, "at most 16m");
    }
    if ((n = tw_conf_map_get(node, "flush_interval")) &&
        tw_conf_get_duration_ms(n, &c->flush_ms, err))
        return -1;
    *conf = c;
    return 0;
}

static void flush(access_state_t *as)
{
    size_t off = 0;
    while (off < as->len && as->fd >= 0) {
        ssize_t n = write(as->fd, as->buf + off, as->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            tw_log_error("access_log: cannot write %s: %s", as->conf->path, strerror(errno));
            break;
        }
        off += (size_t)n;
    }
    as->len = 0;
}

/* What the log path names, when it is not something a log can be. */
static const char *not_a_log(mode_t mode)
{
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISBLK(mode)  ? "a block device"
                            : "not a regular file";
}

/* Opens the log path and makes it the current file. O_NONBLOCK: opening a
 * FIFO for writing blocks until a reader comes, which would freeze the
 * worker (and, at every rotation check, every worker); with it, the open
 * fails (ENXIO) or succeeds and fstat refuses the FIFO. A regular file
 * ignores the flag; a character device (/dev/null, a terminal) is allowed
 * and then never blocks a write either. Returns 0, or -1 with *why. */
static int open_log(access_state_t *as, const char **why)
{
    int fd;
    do
        fd = open(as->conf->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                  0644);
    while (fd < 0 && errno == EINTR);
    struct stat st;
    if (fd < 0) {
        /* ENXIO: a FIFO without a reader, or a socket; say which. */
        int e = errno;
        *why = e == ENXIO && stat(as->conf->path, &st) == 0 && !S_ISREG(st.st_mode)
                   ? not_a_log(st.st_mode)
                   : strerror(e);
        return -1;
    }
    const char *bad = NULL;
    if (fstat(fd, &st) != 0)
        bad = strerror(errno);
    else if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode))
        bad = not_a_log(st.st_mode);
    if (bad) {
        *why = bad;
        close(fd);
        return -1;
    }
    as->dev = st.st_dev;
    as->ino = st.st_ino;
    if (as->fd >= 0)
        close(as->fd);
    as->fd = fd;
    return 0;
}

/* The same file, not only the same inode number: a file created where a
 * refused one was deleted may get its number again, but never its change
 * time. */
static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Once per flush interval: write what is buffered, and follow a rotated
 * file (the path now names another inode, or nothing). */
static void tick(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    access_state_t *as = arg;
    flush(as);
    struct stat st;
    const char *why;
    bool exists = stat(as->conf->path, &st) == 0;
    if (exists && st.st_ino == as->ino && st.st_dev == as->dev)
        ; /* not rotated */
    else if (exists && same_file(&st, &as->refused))
        ; /* the FIFO (or directory) already refused: once a second is noise */
    else if (open_log(as, &why) != 0) {
        tw_log_error("access_log: cannot reopen %s: %s; still writing to the old file",
                     as->conf->path, why);
        as->refused = exists ? st : (struct stat){0};
    }
    tw_timer_start(loop, timer, as->conf->flush_ms);
}

static int access_init_worker(tw_worker_t *w, tw_conf_error_t *err)
{
    const access_conf_t *c = tw_worker_global_conf(w, &twister_module_v1);
    if (!c || !c->path)
        return 0;
    access_state_t *as = calloc(1, sizeof *as);
    if (!as || !(as->buf = malloc(c->buffer_size + ACCESS_LINE_MAX))) {
        free(as);
        snprintf(err->message, sizeof err->message, "access_log: out of memory");
        return -1;
    }
    as->fd = -1;
    as->conf = c;
    const char *why;
    if (open_log(as, &why) != 0) {
        snprintf(err->message, sizeof err->message, "access_log: cannot open %s: %s", c->path, why);
        free(as->buf);
        free(as);
        return -1;
    }
    as->loop = tw_worker_loop(w);
    tw_timer_init(&as->timer, tick, as);
    tw_timer_start(as->loop, &as->timer, c->flush_ms);
    tw_worker_set_ctx(w, &twister_module_v1, as);
    return 0;
}

static void access_exit_worker(tw_worker_t *w)
{
    access_state_t *as = tw_worker_ctx(w, &twister_module_v1);
    if (!as)
        return;
    flush(as);
    tw_timer_stop(as->loop, &as->timer);
    if (as->fd >= 0)
        close(as->fd);
    free(as->buf);
    free(as);
    tw_worker_set_ctx(w, &twister_module_v1, NULL);
}

/* A line being built: appends clamp at the end, so a huge request target
 * truncates its line instead of overrunning the buffer. */
typedef struct {
    char *p;
    char *end;
} line_t;

static void put(line_t *l, const char *s, size_t len)
{
    size_t room = (size_t)(l->end - l->p);
    if (len > room)
        len = room;
    memcpy(l->p, s, len);
    l->p += len;
}

static void putf(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line_t *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->p, (size_t)(l->end - l->p), fmt, ap);
    va_end(ap);
    if (n > 0)
        l->p += (size_t)n < (size_t)(l->end - l->p) ? (size_t)n : (size_t)(l->end - l->p);
}

/* Appends s, escaping what would break the line or the quoted field it
 * stands in: quotes, backslashes, control and non-ASCII bytes. */
static void put_escaped(line_t *l, const char *s, size_t len, bool json)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len && l->end - l->p >= 6; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *l->p++ = '\\';
            *l->p++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            put(l, json ? "\\u00" : "\\x", json ? 4 : 2);
            *l->p++ = hex[ch >> 4];
            *l->p++ = hex[ch & 15];
        } else {
            *l->p++ = (char)ch;
        }
    }
}

static void put_header(line_t *l, const tw_request_t *r, const char *name, bool json)
{
    const tw_header_t *h = tw_request_header(r, name);
    if (h)
        put_escaped(l, h->value.ptr, h->value.len, json);
    else if (!json)
        put(l, "-", 1);
}

static const char *local_time(access_state_t *as)
{
    time_t now = time(NULL);
    if (now != as->time_sec) {
        struct tm tm;
        /* A clock beyond what struct tm holds leaves tm unset (and
         * strftime's buffer undefined when it returns 0): log "-". */
        if (localtime_r(&now, &tm) == NULL ||
            strftime(as->time_text, sizeof as->time_text,
                     as->conf->format == FORMAT_JSON ? "%Y-%m-%dT%H:%M:%S%z"
                                                     : "%d/%b/%Y:%H:%M:%S %z",
                     &tm) == 0)
            memcpy(as->time_text, "-", 2);
        as->time_sec = now;
    }
    return as->time_text;
}

static int access_log_handler(tw_request_t *r)
{
    access_state_t *as = tw_worker_ctx(tw_request_worker(r), &twister_module_v1);
    if (!as)
        return TW_NEXT;
    const access_conf_t *route = tw_request_route_conf(r, &twister_module_v1);
    if (route && route->off)
        return TW_NEXT;
    /* The buffer has ACCESS_LINE_MAX bytes of room past buffer_size: a line always
     * fits (clamped), and a full buffer is flushed after it. */
    line_t l = {as->buf + as->len, as->buf + as->len + ACCESS_LINE_MAX - 1};
    if (as->conf->format == FORMAT_TEMPLATE) {
        size_t n;
        const char *text = tw_template_expand(r, as->conf->template, TW_TEMPLATE_LOG, &n);
        if (!text)
            return TW_NEXT; /* out of memory: this line is lost, not the request */
        put(&l, text, n);
        *l.p++ = '\n';
        as->len = (size_t)(l.p - as->buf);
        if (as->len >= as->conf->buffer_size)
            flush(as);
        return TW_NEXT;
    }
    bool json = as->conf->format == FORMAT_JSON;
    tw_str_t method = tw_request_method(r), target = tw_request_target(r);
    int version = tw_request_version(r);
    unsigned long long bytes = (unsigned long long)tw_response_body_bytes(r);
    const char *user = tw_request_user(r); /* an auth module's, or "-" */
    if (json) {
        putf(&l, "{\"time\":\"%s\",\"remote_addr\":\"%s\",", local_time(as),
             tw_request_peer_text(r));
        if (user) {
            put(&l, "\"remote_user\":\"", 15);
            put_escaped(&l, user, strlen(user), true);
            put(&l, "\",", 2);
        }
        put(&l, "\"request\":\"", 11);
    } else {
        putf(&l, "%s - ", tw_request_peer_text(r));
        if (user && *user)
            put_escaped(&l, user, strlen(user), false);
        else
            put(&l, "-", 1);
        putf(&l, " [%s] \"", local_time(as));
    }
    put_escaped(&l, method.ptr, method.len, json);
    put(&l, " ", 1);
    put_escaped(&l, target.ptr, target.len, json);
    putf(&l, " HTTP/%d.%d\"", version / 10, version % 10);
    if (json) {
        putf(&l,
             ",\"status\":%d,\"body_bytes_sent\":%llu,\"request_time\":%.3f,\"http_referer\":\"",
             tw_response_status(r), bytes, (double)tw_request_elapsed_us(r) / 1e6);
        put_header(&l, r, "Referer", true);
        put(&l, "\",\"http_user_agent\":\"", 21);
        put_header(&l, r, "User-Agent", true);
        const char *proto = tw_request_tls_protocol(r), *cipher = tw_request_tls_cipher(r);
        putf(&l, "\",\"scheme\":\"%s\"", tw_request_scheme(r));
        if (proto && cipher) /* OpenSSL's names: nothing to escape */
            putf(&l, ",\"tls_protocol\":\"%s\",\"tls_cipher\":\"%s\"", proto, cipher);
        put(&l, "}", 1);
    } else {
        putf(&l, " %d %llu", tw_response_status(r), bytes);
        if (as->conf->format == FORMAT_COMBINED) {
            put(&l, " \"", 2);
            put_header(&l, r, "Referer", false);
            put(&l, "\" \"", 3);
            put_header(&l, r, "User-Agent", false);
            put(&l, "\"", 1);
        }
    }
    *l.p++ = '\n'; /* the end was set one byte short for this */
    as->len = (size_t)(l.p - as->buf);
    if (as->len >= as->conf->buffer_size)
        flush(as);
    return TW_NEXT;
}

static int access_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    if (tw_phases_add(phases, TW_PHASE_LOG, access_log_handler, TW_ORDER_MIDDLE) != 0) {
        snprintf(err->message, sizeof err->message, "access_log: cannot register");
        return -1;
    }
    return 0;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "access_log",
    .version = "1.0.0",
    .description = "one line per request (combined, common, json or your own), rotation-safe",
    .configure = access_configure,
    .register_phases = access_register,
    .init_worker = access_init_worker,
    .exit_worker = access_exit_worker,
};
