/* gzip — compresses responses on the way out, after nginx's gzip module:
 *
 *   gzip: { types: [text/html, text/css, application/json], min_length: 256, level: 5 }
 *
 * The header filter decides (a listed type, long enough or of unknown
 * length, a client that accepts gzip, nothing that forbids it) and
 * rewrites the head: Content-Encoding, Vary, no Content-Length (the body
 * streams chunked), a weak ETag. The body filter then runs one deflate
 * stream per response, with a fixed output buffer, and ends it when the
 * response ends; a pool cleanup frees the zlib state however the request
 * ends. See README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include <twister/twister.h>

#include "accept_encoding.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    bool off;
    const char **types; /* media types, lowercase, without parameters */
    size_t ntypes;
    uint64_t min_length;
    int level;
} gzip_conf_t;

/* One response being compressed. */
typedef struct {
    z_stream z;
    bool open; /* deflateInit2 succeeded: deflateEnd is due */
    unsigned char out[16384];
} gzip_ctx_t;

static const char *const default_types[] = {"text/html", NULL};

/* ---- configuration --------------------------------------------------------- */

static int gzip_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                          void **conf, tw_conf_error_t *err)
{
    *conf = NULL;
    if (node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0'))
        return 0;
    static const char *const keys[] = {"types", "min_length", "level", "off", NULL};
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    gzip_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    /* A route starts from the top level's settings. */
    const gzip_conf_t *global = scope == TW_SCOPE_ROUTE ? tw_configure_global_conf(cf) : NULL;
    if (global)
        *c = *global;
    else
        *c = (gzip_conf_t){false, (const char **)default_types, 1, 20, 1};
    const tw_conf_node_t *n;
    if ((n = tw_conf_map_get(node, "off")) && tw_conf_get_bool(n, &c->off, err) != 0)
        return -1;
    long long v;
    if ((n = tw_conf_map_get(node, "level"))) {
        if (tw_conf_get_int(n, 1, 9, &v, err) != 0)
            return -1;
        c->level = (int)v;
    }
    if ((n = tw_conf_map_get(node, "min_length")) && tw_conf_get_size(n, &c->min_length, err) != 0)
        return -1;
    if ((n = tw_conf_map_get(node, "types"))) {
        if (tw_conf_type(n) != TW_CONF_LIST || tw_conf_count(n) == 0)
            return tw_conf_error(err, n, "expected a list of media types, like [text/html]");
        c->ntypes = tw_conf_count(n);
        c->types = tw_configure_alloc(cf, c->ntypes * sizeof *c->types);
        if (!c->types)
            return tw_conf_error(err, n, "out of memory");
        for (size_t i = 0; i < c->ntypes; i++) {
            const tw_conf_node_t *item = tw_conf_list_item(n, i);
            const char *t = tw_conf_type(item) == TW_CONF_SCALAR ? tw_conf_scalar(item) : "";
            const char *slash = strchr(t, '/');
            if (!slash || slash == t || !slash[1] || strpbrk(t, " ;,\t"))
                return tw_conf_error(err, item,
                                     "expected a media type like text/css (no parameters), got "
                                     "'%s'",
                                     t);
            char *lower = tw_configure_strdup(cf, t);
            if (!lower)
                return tw_conf_error(err, item, "out of memory");
            for (char *p = lower; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
            c->types[i] = lower;
        }
    }
    *conf = c;
    return 0;
}

/* ---- deciding -------------------------------------------------------------- */

static const gzip_conf_t *conf_of(const tw_request_t *r)
{
    const gzip_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    return c ? c : tw_request_global_conf(r, &twister_module_v1);
}

static bool type_listed(const gzip_conf_t *c, const char *type)
{
    size_t len = strcspn(type, ";");
    while (len && (type[len - 1] == ' ' || type[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < c->ntypes; i++)
        if (strlen(c->types[i]) == len && strncasecmp(c->types[i], type, len) == 0)
            return true;
    return false;
}

/* Adds Accept-Encoding to Vary unless it is there (or Vary is "*"). */
static int add_vary(tw_request_t *r)
{
    const char *vary = tw_response_header(r, "Vary");
    if (!vary)
        return tw_response_set_header(r, "Vary", "Accept-Encoding");
    const char *p = vary;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        if ((n == 15 && strncasecmp(p, "Accept-Encoding", 15) == 0) || (n == 1 && *p == '*'))
            return 0;
        p += n;
    }
    return tw_response_add_header(r, "Vary", "Accept-Encoding");
}

static void ctx_cleanup(void *arg)
{
    gzip_ctx_t *x = arg;
    if (x->open)
        deflateEnd(&x->z);
    x->open = false;
}

/* The head of a gzip-coded response: another encoding is other bytes, so
 * a strong validator no longer holds and the length and ranges of the
 * original no longer apply. Returns 0 or -1. */
static int gzip_head(tw_request_t *r)
{
    const char *etag = tw_response_header(r, "ETag");
    if (etag && strncmp(etag, "W/", 2) != 0) {
        size_t len = strlen(etag);
        char *weak = tw_request_alloc(r, len + 3);
        if (!weak)
            return -1;
        memcpy(weak, "W/", 2);
        memcpy(weak + 2, etag, len + 1);
        if (tw_response_set_header(r, "ETag", weak) != 0)
            return -1;
    }
    if (tw_response_remove_header(r, "Content-Length") < 0 ||
        tw_response_remove_header(r, "Accept-Ranges") < 0 ||
        tw_response_set_header(r, "Content-Encoding", "gzip") != 0)
        return -1;
    return 0;
}

static int gzip_decide(tw_request_t *r)
{
    const gzip_conf_t *c = conf_of(r);
    if (!c || c->off)
        return TW_NEXT;
    int status = tw_response_status(r);
    if (status < 200 || status > 299 || status == 204 || status == 206)
        return TW_NEXT;
    const char *type = tw_response_header(r, "Content-Type");
    const char *length = tw_response_header(r, "Content-Length");
    if (!type || !type_listed(c, type) || tw_response_header(r, "Content-Encoding") ||
        tw_response_header(r, "Content-Range"))
        return TW_NEXT;
    unsigned long long declared = 0;
    if (length) {
        declared = strtoull(length, NULL, 10);
        if (declared < c->min_length)
            return TW_NEXT;
    }
    /* Vary goes on whenever the answer depends on Accept-Encoding. */
    if (add_vary(r) != 0)
        return TW_ERROR;
    if (!ae_accepts_gzip(r))
        return TW_NEXT;
    if (tw_request_method_is(r, "HEAD")) /* the head a GET would get; no body to code */
        return gzip_head(r) == 0 ? TW_NEXT : TW_ERROR;
    gzip_ctx_t *x = tw_request_alloc(r, sizeof *x);
    if (!x)
        return TW_ERROR;
    memset(&x->z, 0, sizeof x->z);
    x->open = false;
    if (tw_pool_add_cleanup(tw_request_pool(r), ctx_cleanup, x) != 0)
        return TW_ERROR;
    /* windowBits 15 (+ 16: a gzip wrapper) and memLevel 8 are zlib's
     * defaults, about 256 KiB of state; a body of known length needs no
     * window larger than itself, so shrink both for it as nginx does (a
     * 4 KiB file then costs a sixteenth of the memory and of the setup). */
    int wbits = 15, mem_level = 8;
    if (declared > 0) {
        while (wbits > 9 && declared < (1ull << (wbits - 1)) - 262) {
            wbits--;
            mem_level--;
        }
        if (mem_level < 1)
            mem_level = 1;
    }
    if (deflateInit2(&x->z, c->level, Z_DEFLATED, wbits + 16, mem_level, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return TW_ERROR;
    x->open = true;
    if (gzip_head(r) != 0)
        return TW_ERROR;
    tw_request_set_ctx(r, &twister_module_v1, x);
    return TW_NEXT;
}

/* A response gzip does not compress skips its body filter: a file then
 * still goes out with sendfile instead of being read through the filter
 * chain (loading gzip must not cost every other route its zero copy). */
static int gzip_header_filter(tw_request_t *r)
{
    int rc = gzip_decide(r);
    if (rc == TW_NEXT && tw_request_ctx(r, &twister_module_v1) == NULL &&
        tw_response_skip_body_filter(r) != 0)
        return TW_ERROR;
    return rc;
}

/* ---- compressing ------------------------------------------------------------ */

static int gzip_body_filter(tw_request_t *r, const char *data, size_t len, bool last)
{
    gzip_ctx_t *x = tw_request_ctx(r, &twister_module_v1);
    if (!x || !x->open)
        return tw_body_filter_next(r, data, len, last);
    x->z.next_in = (unsigned char *)(uintptr_t)data;
    x->z.avail_in = (uInt)len;
    int flush = last ? Z_FINISH : Z_NO_FLUSH;
    for (;;) {
        x->z.next_out = x->out;
        x->z.avail_out = sizeof x->out;
        int rc = deflate(&x->z, flush);
        if (rc == Z_STREAM_ERROR)
            return TW_ERROR;
        size_t produced = sizeof x->out - x->z.avail_out;
        bool done = last ? rc == Z_STREAM_END : x->z.avail_in == 0 && x->z.avail_out != 0;
        if ((produced || (done && last)) &&
            tw_body_filter_next(r, (const char *)x->out, produced, done && last) != TW_NEXT)
            return TW_ERROR;
        if (done)
            break;
    }
    if (last) {
        deflateEnd(&x->z);
        x->open = false;
    }
    return TW_NEXT;
}

static int gzip_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    /* Late among header filters, so it sees the headers others set, and
     * early among body filters, so later ones see the compressed bytes. */
    if (tw_phases_add_header_filter(phases, gzip_header_filter, 900) != 0 ||
        tw_phases_add_body_filter(phases, gzip_body_filter, 100) != 0)
        return -1;
    return 0;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "gzip",
    .version = "1.0.0",
    .description = "compresses responses with gzip",
    .configure = gzip_configure,
    .register_phases = gzip_register,
};
