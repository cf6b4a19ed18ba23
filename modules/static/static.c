/* static — serves files from a directory.
 *
 * The file for a request is root + the full request path, as nginx's
 * `root` does: with `prefix: /assets/` and `root: ./www`, /assets/app.js
 * is ./www/assets/app.js. See README.md for the settings and behaviour.
 *
 * Safety: the root is opened once per worker (init_worker, after the
 * worker dropped privileges) and every file is opened relative to it with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), or an equivalent
 * component walk on kernels without openat2. So nothing outside the root
 * is ever served: not through "..", not through a symlink (unless
 * allow_symlinks_outside), not through a rename race. The core already
 * removes dot segments from the path; ".." is refused here as well. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <twister/twister.h>

#include "accept_encoding.h"
#include "file_cache.h"
#include "static_util.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

/* open_file_cache and sendfile_min defaults (README.md). */
#define STATIC_CACHE_MAX 1000
#define STATIC_CACHE_VALID_MS 1000
#define STATIC_CACHE_INACTIVE_MS 20000
#define STATIC_CACHE_MEMORY (8u << 20)
#define STATIC_SENDFILE_MIN (8u << 10)
#define STATIC_SENDFILE_MIN_MAX (1u << 20)

/* An extra `mime_types:` entry. */
typedef struct {
    const char *ext; /* without the dot */
    const char *type;
} static_mime_t;

/* One route's settings, and its root once a worker opened it. */
typedef struct static_conf {
    const char *root;                /* absolute or relative to the cwd */
    const tw_conf_node_t *root_node; /* for errors in init_worker */
    const char **index;              /* file names tried for a directory */
    size_t nindex;
    static_mime_t *mime; /* checked before the built-in table */
    size_t nmime;
    const char *cache_control; /* NULL: no Cache-Control header */
    bool gzip_static;          /* serve name.gz to clients that accept gzip */
    fc_settings_t cache_set;   /* open_file_cache and sendfile_min */
    st_root_t dir;             /* dir.fd is -1 until init_worker */
    fc_cache_t *cache;         /* this worker's open files, from init_worker */
    tw_loop_t *loop;           /* this worker's loop (the cache's clock) */
    struct static_conf *next;  /* every route of the generation */
} static_conf_t;

/* The global conf only links the routes, for init_worker/exit_worker. */
typedef struct {
    static_conf_t *routes;
} static_global_t;

/* ---- configuration ------------------------------------------------------- */

static bool is_empty(const tw_conf_node_t *node)
{
    return node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0');
}

/* A header value we can send: printable ASCII and spaces. */
static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static int conf_index(tw_configure_t *cf, static_conf_t *c, const tw_conf_node_t *node,
                      tw_conf_error_t *err)
{
    bool one = tw_conf_type(node) == TW_CONF_SCALAR; /* `index: home.html` */
    size_t n = one ? 1 : tw_conf_count(node);
    if (!one && tw_conf_type(node) != TW_CONF_LIST)
        return tw_conf_error(err, node, "expected a list of file names");
    c->index = tw_configure_alloc(cf, (n ? n : 1) * sizeof *c->index);
    if (c->index == NULL)
        return tw_conf_error(err, node, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const tw_conf_node_t *item = one ? node : tw_conf_list_item(node, i);
        const char *name;
        if (tw_conf_get_string(item, &name, err) != 0)
            return -1;
        if (*name == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            return tw_conf_error(err, item, "expected a file name (no '/'), got '%s'", name);
        c->index[i] = name;
    }
    c->nindex = n;
    return 0;
}

static int conf_mime(tw_configure_t *cf, static_conf_t *c, const tw_conf_node_t *node,
                     tw_conf_error_t *err)
{
    if (tw_conf_type(node) != TW_CONF_MAP)
        return tw_conf_error(err, node,
                             "expected a map of extension: type, e.g. {md: text/markdown}");
    size_t n = tw_conf_count(node);
    c->mime = tw_configure_alloc(cf, (n ? n : 1) * sizeof *c->mime);
    if (c->mime == NULL)
        return tw_conf_error(err, node, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *ext = tw_conf_map_key(node, i);
        const tw_conf_node_t *value = tw_conf_map_value(node, i);
        const char *type;
        if (tw_conf_get_string(value, &type, err) != 0)
            return -1;
        if (*ext == '.')
            ext++;
        if (*ext == '\0' || strchr(ext, '/') || strchr(ext, '.'))
            return tw_conf_error(err, value, "'%s' is not a file extension",
                                 tw_conf_map_key(node, i));
        if (!strchr(type, '/') || !header_safe(type))
            return tw_conf_error(err, value, "expected a media type like text/plain, got '%s'",
                                 type);
        c->mime[i] = (static_mime_t){ext, type};
    }
    c->nmime = n;
    return 0;
}

/* open_file_cache: off, or a map of max, valid, inactive, memory. */
static int conf_cache(static_conf_t *c, const tw_conf_node_t *node, tw_conf_error_t *err)
{
    static const char *const keys[] = {"max", "valid", "inactive", "memory", NULL};
    bool on;
    if (tw_conf_type(node) == TW_CONF_SCALAR) {
        if (tw_conf_get_bool(node, &on, err) != 0)
            return -1;
        if (!on)
            c->cache_set.max = 0;
        return 0;
    }
    if (tw_conf_type(node) != TW_CONF_MAP)
        return tw_conf_error(err, node,
                             "expected off, or a map such as { max: 1000, valid: 1s, inactive: "
                             "20s, memory: 8m }");
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    const tw_conf_node_t *v;
    long long max;
    uint64_t size;
    if ((v = tw_conf_map_get(node, "max")) != NULL) {
        if (tw_conf_get_int(v, 0, 1000000, &max, err) != 0)
            return -1;
        c->cache_set.max = (size_t)max;
    }
    if ((v = tw_conf_map_get(node, "valid")) != NULL &&
        tw_conf_get_duration_ms(v, &c->cache_set.valid_ms, err) != 0)
        return -1;
    if ((v = tw_conf_map_get(node, "inactive")) != NULL &&
        tw_conf_get_duration_ms(v, &c->cache_set.inactive_ms, err) != 0)
        return -1;
    if ((v = tw_conf_map_get(node, "memory")) != NULL) {
        if (tw_conf_get_size(v, &size, err) != 0)
            return -1;
        c->cache_set.memory = (size_t)size;
    }
    return 0;
}

static int static_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                            void **conf, tw_conf_error_t *err)
{
    static const char *const keys[] = {
        "root",        "index",           "allow_symlinks_outside", "mime_types", "cache_control",
        "gzip_static", "open_file_cache", "sendfile_min",           NULL};

    if (scope == TW_SCOPE_GLOBAL) {
        if (!is_empty(node))
            return tw_conf_error(err, node,
                                 "static has no global settings; put them in a route's static: "
                                 "section");
        *conf = tw_configure_alloc(cf, sizeof(static_global_t));
        return *conf ? 0 : tw_conf_error(err, node, "out of memory");
    }

    if (is_empty(node))
        return tw_conf_error(err, node,
                             "the static handler needs a root: give the route a "
                             "`static: { root: DIR }` section");
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    static_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (c == NULL)
        return tw_conf_error(err, node, "out of memory");
    c->dir.fd = -1;
    c->cache_set = (fc_settings_t){
        .max = STATIC_CACHE_MAX,
        .valid_ms = STATIC_CACHE_VALID_MS,
        .inactive_ms = STATIC_CACHE_INACTIVE_MS,
        .memory = STATIC_CACHE_MEMORY,
        .sendfile_min = STATIC_SENDFILE_MIN,
    };

    /* root: required, relative to the config file's directory. */
    const tw_conf_node_t *root = tw_conf_map_get(node, "root");
    const char *path;
    if (root == NULL)
        return tw_conf_error(err, node, "missing root: the directory to serve");
    if (tw_conf_get_string(root, &path, err) != 0)
        return -1;
    if (*path == '\0')
        return tw_conf_error(err, root, "expected a directory, got an empty value");
    if (path[0] != '/') {
        const char *dir = tw_configure_dir(cf);
        size_t len = strlen(dir) + 1 + strlen(path) + 1;
        char *full = tw_configure_alloc(cf, len);
        if (full == NULL)
            return tw_conf_error(err, root, "out of memory");
        snprintf(full, len, "%s/%s", dir, path);
        path = full;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return tw_conf_error(err, root, "cannot use '%s': %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return tw_conf_error(err, root, "'%s' is not a directory", path);
    c->root = path;
    c->root_node = root;

    const tw_conf_node_t *v;
    if ((v = tw_conf_map_get(node, "index")) != NULL) {
        if (conf_index(cf, c, v, err) != 0)
            return -1;
    } else {
        static const char *default_index[] = {"index.html"};
        c->index = default_index;
        c->nindex = 1;
    }
    bool outside = false;
    if ((v = tw_conf_map_get(node, "allow_symlinks_outside")) != NULL &&
        tw_conf_get_bool(v, &outside, err) != 0)
        return -1;
    c->dir.beneath = !outside;
    if ((v = tw_conf_map_get(node, "mime_types")) != NULL && conf_mime(cf, c, v, err) != 0)
        return -1;
    if ((v = tw_conf_map_get(node, "cache_control")) != NULL) {
        if (tw_conf_get_string(v, &c->cache_control, err) != 0)
            return -1;
        if (!header_safe(c->cache_control))
            return tw_conf_error(err, v, "expected printable ASCII");
    }

    if ((v = tw_conf_map_get(node, "gzip_static")) != NULL &&
        tw_conf_get_bool(v, &c->gzip_static, err) != 0)
        return -1;
    if ((v = tw_conf_map_get(node, "open_file_cache")) != NULL && conf_cache(c, v, err) != 0)
        return -1;
    if ((v = tw_conf_map_get(node, "sendfile_min")) != NULL) {
        uint64_t size;
        if (tw_conf_get_size(v, &size, err) != 0)
            return -1;
        if (size > STATIC_SENDFILE_MIN_MAX)
            return tw_conf_error(err, v, "at most 1m: smaller files are read into memory");
        c->cache_set.sendfile_min = (size_t)size;
    }
    /* Only GET and HEAD: OPTIONS and 405 then list exactly those. EINVAL
     * means static is not this route's handler: nothing to declare. */
    static const char *const methods[] = {"GET", NULL};
    if (tw_configure_set_methods(cf, methods) != 0 && errno != EINVAL)
        return tw_conf_error(err, node, "out of memory");

    static_global_t *g = tw_configure_global_conf(cf);
    if (g != NULL) {
        c->next = g->routes;
        g->routes = c;
    }
    *conf = c;
    return 0;
}

/* ---- worker lifecycle ------------------------------------------------------- */

static void static_exit_worker(tw_worker_t *worker)
{
    static_global_t *g = tw_worker_global_conf(worker, &twister_module_v1);
    for (static_conf_t *c = g ? g->routes : NULL; c; c = c->next) {
        fc_cache_free(c->cache);
        c->cache = NULL;
        if (c->dir.fd >= 0) {
            close(c->dir.fd);
            c->dir.fd = -1;
        }
    }
}

/* Opens every route's root, as the worker's user. */
static int static_init_worker(tw_worker_t *worker, tw_conf_error_t *err)
{
    static_global_t *g = tw_worker_global_conf(worker, &twister_module_v1);
    for (static_conf_t *c = g ? g->routes : NULL; c; c = c->next) {
        c->dir.fd = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (c->dir.fd < 0)
            return tw_conf_error(err, c->root_node, "cannot open '%s': %s", c->root,
                                 strerror(errno));
        c->dir.resolver = st_probe_resolver(c->dir.fd);
        c->loop = tw_worker_loop(worker);
        c->cache = fc_cache_new(&c->cache_set, &c->dir, c->loop);
        if (c->cache == NULL)
            return tw_conf_error(err, c->root_node, "out of memory");
    }
    return 0;
}

/* ---- serving ------------------------------------------------------------------ */

static int send_text(tw_request_t *r, int status)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, tw_http_status_text(status));
    return tw_response_send(r, status, "text/plain", body, (size_t)n) == 0 ? TW_DONE : TW_ERROR;
}

/* What an open(2) error means to the client. */
static int open_error(int neg_errno, const char *rel)
{
    switch (-neg_errno) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 404;
    case EACCES:
    case EPERM:
    case EXDEV: /* resolves outside the root */
    case ELOOP: /* a symlink we may not follow */
    case ENXIO: /* a socket */
    case ENODEV:
        return 403;
    default:
        tw_log_error("static: cannot open '%s': %s", rel, strerror(-neg_errno));
        return TW_ERROR;
    }
}

static const char *mime_type(const static_conf_t *c, const char *name)
{
    const char *ext = st_extension(name);
    for (size_t i = 0; ext && i < c->nmime; i++)
        if (strcasecmp(ext, c->mime[i].ext) == 0)
            return c->mime[i].type;
    const char *type = st_mime_builtin(name);
    return type ? type : "application/octet-stream";
}

/* The representation's validators and caching headers, for 200, 206, 304
 * and 416 alike. */
static int set_validators(tw_request_t *r, const static_conf_t *c, const char *etag,
                          const fc_modified_t *modified)
{
    if (tw_response_set_header(r, "ETag", etag) != 0 ||
        (modified->known && tw_response_set_header(r, "Last-Modified", modified->text) != 0))
        return -1;
    if (c->cache_control && tw_response_set_header(r, "Cache-Control", c->cache_control) != 0)
        return -1;
    return 0;
}

static time_t header_date(const tw_header_t *h)
{
    return h ? st_http_date_parse(h->value.ptr, h->value.len) : (time_t)-1;
}

/* RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match,
 * If-Modified-Since, in that order. Returns 0 to go on, or 304/412. */
static int preconditions(tw_request_t *r, const fc_modified_t *modified, const char *etag)
{
    const tw_header_t *h;
    time_t t;
    /* Without a modification date the date conditions do not apply
     * (§13.1.3, §13.1.4): they are ignored, never evaluated against a
     * date the client was not given. */
    if ((h = tw_request_header(r, "If-Match")) != NULL) {
        if (!st_etag_match(h->value.ptr, h->value.len, etag, false))
            return 412;
    } else if (modified->known &&
               (t = header_date(tw_request_header(r, "If-Unmodified-Since"))) != -1) {
        if (modified->time > t)
            return 412;
    }
    if ((h = tw_request_header(r, "If-None-Match")) != NULL) {
        if (st_etag_match(h->value.ptr, h->value.len, etag, true))
            return 304; /* weak comparison, GET/HEAD only (all we serve) */
    } else if (modified->known &&
               (t = header_date(tw_request_header(r, "If-Modified-Since"))) != -1) {
        if (modified->time <= t)
            return 304;
    }
    return 0;
}

/* If-Range: a Range applies only if the representation is still the one
 * the client has part of (a strong ETag match, or exactly its date). */
static bool if_range_holds(tw_request_t *r, const fc_modified_t *modified, const char *etag)
{
    const tw_header_t *h = tw_request_header(r, "If-Range");
    return h == NULL ||
           st_if_range_match(h->value.ptr, h->value.len, etag, modified->time, modified->strong);
}

/* name.gz beside name, through the cache, if it is a regular file not
 * older than name (a stale one would serve old content); NULL otherwise. */
static fc_file_t *open_precompressed(tw_request_t *r, const static_conf_t *c, const char *name,
                                     const struct stat *st)
{
    size_t len = strlen(name);
    char *gz_name = tw_request_alloc(r, len + 4);
    if (gz_name == NULL)
        return NULL;
    memcpy(gz_name, name, len);
    memcpy(gz_name + len, ".gz", 4);
    fc_file_t *gz;
    int fd;
    struct stat other;
    int rc = fc_open(c->cache, gz_name, tw_loop_now(c->loop), &gz, &fd, &other);
    if (rc == 1)
        close(fd);
    if (rc != 0)
        return NULL;
    if (gz->st.st_mtim.tv_sec < st->st_mtim.tv_sec ||
        (gz->st.st_mtim.tv_sec == st->st_mtim.tv_sec &&
         gz->st.st_mtim.tv_nsec < st->st_mtim.tv_nsec)) {
        fc_done(c->cache, gz);
        return NULL;
    }
    return gz;
}

/* The body: a small file's bytes from memory, copied into the output
 * buffer behind the head, so both leave in one send; a large one with
 * sendfile, from a descriptor the response owns. */
static int send_body(tw_request_t *r, const static_conf_t *c, fc_file_t *f, uint64_t first,
                     uint64_t length)
{
    if (f->content)
        return tw_response_write(r, f->content + first, (size_t)length) < 0 ? -1 : 0;
    int fd = fc_take_fd(c->cache, f);
    if (fd < 0) {
        tw_log_error("static: cannot duplicate a cached descriptor: %s", strerror(errno));
        return -1;
    }
    /* sendfile may queue the bytes (returns 1): finishing then only marks
     * the end; the connection sends the rest as the client reads. A file
     * that shrinks meanwhile cuts the response short, and the connection
     * closes instead of passing a short body off as complete. */
    return tw_response_sendfile(r, fd, (off_t)first, (size_t)length) < 0 ? -1 : 0;
}

/* Serves the regular file f, named name; hands f back to the cache. */
static int serve_file(tw_request_t *r, const static_conf_t *c, fc_file_t *f, const char *name)
{
    fc_file_t *orig = f, *gz = NULL;
    int rc = TW_ERROR;
    if (f->type == NULL) /* the name's type: kept with the entry */
        f->type = mime_type(c, name);
    if (c->gzip_static && (gz = open_precompressed(r, c, name, &f->st)) != NULL) {
        /* Two representations exist: caches must key on the encoding. */
        if (tw_response_add_header(r, "Vary", "Accept-Encoding") != 0)
            goto out;
        if (ae_accepts_gzip(r))
            f = gz; /* its own ETag, length and ranges */
    }
    bool gzipped = f == gz;
    /* A date known strong stays so; one that was not (a file modified this
     * second, or in the future) is worked out again for this response. */
    const fc_modified_t modified =
        f->modified.strong ? f->modified : fc_modification_date(&f->st, time(NULL));
    const char *etag = f->etag;
    bool head = tw_request_method_is(r, "HEAD");

    int pre = preconditions(r, &modified, etag);
    if (pre == 304) {
        if (set_validators(r, c, etag, &modified) == 0 && tw_response_set_status(r, 304) == 0 &&
            tw_response_finish(r) == 0)
            rc = TW_DONE;
        goto out;
    }
    if (pre != 0) {
        rc = send_text(r, pre);
        goto out;
    }

    uint64_t size = (uint64_t)f->st.st_size, first = 0, last = size ? size - 1 : 0;
    int status = 200;
    char content_range[80];
    const tw_header_t *range = head ? NULL : tw_request_header(r, "Range");
    if (range != NULL && if_range_holds(r, &modified, etag)) {
        switch (st_range_parse(range->value.ptr, range->value.len, size, &first, &last)) {
        case ST_RANGE_OK:
            status = 206;
            snprintf(content_range, sizeof content_range, "bytes %llu-%llu/%llu",
                     (unsigned long long)first, (unsigned long long)last, (unsigned long long)size);
            break;
        case ST_RANGE_UNSATISFIABLE:
            snprintf(content_range, sizeof content_range, "bytes */%llu", (unsigned long long)size);
            if (set_validators(r, c, etag, &modified) == 0 &&
                tw_response_set_header(r, "Content-Range", content_range) == 0)
                rc = send_text(r, 416);
            goto out;
        case ST_RANGE_NONE:
            first = 0;
            last = size ? size - 1 : 0;
            break;
        }
    }
    uint64_t length = size ? last - first + 1 : 0;

    if (tw_response_set_status(r, status) != 0 ||
        tw_response_set_header(r, "Content-Type", orig->type) != 0 ||
        tw_response_set_header(r, "Accept-Ranges", "bytes") != 0 ||
        (gzipped && tw_response_set_header(r, "Content-Encoding", "gzip") != 0) ||
        set_validators(r, c, etag, &modified) != 0 ||
        (status == 206 && tw_response_set_header(r, "Content-Range", content_range) != 0) ||
        tw_response_set_content_length(r, length) != 0)
        goto out;
    if (!head && length > 0 && send_body(r, c, f, first, length) != 0)
        goto out; /* the client is gone, or no descriptor */
    rc = tw_response_finish(r) == 0 ? TW_DONE : TW_ERROR;
out:
    if (gz)
        fc_done(c->cache, gz);
    fc_done(c->cache, orig);
    return rc;
}

/* A directory asked for without its trailing slash: 301 to path + "/",
 * keeping the query, so that relative links in its index resolve. */
static int redirect_slash(tw_request_t *r, tw_str_t path)
{
    tw_str_t query = tw_request_query(r);
    size_t cap = 3 * path.len + 2 + query.len + 1;
    char *location = tw_request_alloc(r, cap);
    if (location == NULL)
        return TW_ERROR;
    size_t n = st_path_encode(path.ptr, path.len, location);
    location[n++] = '/';
    if (query.len > 0) {
        location[n++] = '?';
        memcpy(location + n, query.ptr, query.len);
        n += query.len;
    }
    location[n] = '\0';
    if (tw_response_set_header(r, "Location", location) != 0)
        return TW_ERROR;
    return send_text(r, 301);
}

/* True if path has a ".." component (the core removes them; this is the
 * second line of defence) or a NUL byte (%00). */
static bool suspicious(tw_str_t path)
{
    if (memchr(path.ptr, '\0', path.len) != NULL)
        return true;
    for (size_t i = 0; i + 1 < path.len; i++)
        if (path.ptr[i] == '.' && path.ptr[i + 1] == '.' && (i == 0 || path.ptr[i - 1] == '/') &&
            (i + 2 == path.len || path.ptr[i + 2] == '/'))
            return true;
    return false;
}

static int static_content(tw_request_t *r)
{
    const static_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (c == NULL || c->dir.fd < 0 || c->cache == NULL)
        return TW_ERROR;
    if (!tw_request_method_is(r, "GET") && !tw_request_method_is(r, "HEAD")) {
        if (tw_response_set_header(r, "Allow", "GET, HEAD") != 0)
            return TW_ERROR;
        return send_text(r, 405);
    }

    tw_str_t path = tw_request_path(r);
    /* The core merges "//" and removes dot-segments; refusing what would
     * still slip through is defence in depth ("//etc/passwd" would be an
     * absolute name to openat, whatever the root). */
    if (path.len == 0 || path.ptr[0] != '/' || suspicious(path) ||
        memmem(path.ptr, path.len, "//", 2) != NULL)
        return 403;
    const char *rel = path.ptr + 1; /* NUL-terminated, without NULs inside */

    uint64_t now = tw_loop_now(c->loop);
    fc_file_t *f;
    int fd;
    struct stat st;
    int rc = fc_open(c->cache, rel, now, &f, &fd, &st);
    if (rc < 0)
        return open_error(rc, rel);
    if (rc == 0)
        return serve_file(r, c, f, rel);
    close(fd);
    if (!S_ISDIR(st.st_mode)) /* FIFOs, sockets, devices */
        return 403;
    if (path.ptr[path.len - 1] != '/')
        return redirect_slash(r, path);

    /* A directory: its first index file that is a regular file. */
    size_t rlen = path.len - 1;
    for (size_t i = 0; i < c->nindex; i++) {
        size_t len = rlen + strlen(c->index[i]) + 1;
        char *name = tw_request_alloc(r, len);
        if (name == NULL)
            return TW_ERROR;
        snprintf(name, len, "%s%s", rel, c->index[i]);
        rc = fc_open(c->cache, name, now, &f, &fd, &st);
        if (rc == -ENOENT || rc == -ENOTDIR)
            continue;
        if (rc < 0)
            return open_error(rc, name);
        if (rc == 0)
            return serve_file(r, c, f, name);
        close(fd);
    }
    return 403; /* no index file, and no directory listings */
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "static",
    .version = "1.0.0",
    .description = "serves files from a directory (ETag, ranges, conditional requests)",
    .configure = static_configure,
    .init_worker = static_init_worker,
    .exit_worker = static_exit_worker,
    .content = static_content,
};
