/* api.c — what a handler reads of its request (the accessors of
 * twister/http.h), its module contexts and configuration, and the calls
 * that change its course: tw_request_set_uri, tw_request_on_abort,
 * tw_request_set_timer. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "request/request.h"
#include "twister/log.h"
#include "twister/module.h"

tw_str_t tw_request_method(const tw_request_t *r)
{
    return r->method;
}

bool tw_request_method_is(const tw_request_t *r, const char *name)
{
    size_t n = strlen(name);
    return n == r->method.len && memcmp(name, r->method.ptr, n) == 0;
}

tw_str_t tw_request_target(const tw_request_t *r)
{
    return r->target;
}

tw_str_t tw_request_path(const tw_request_t *r)
{
    return r->path;
}

tw_str_t tw_request_query(const tw_request_t *r)
{
    return r->query;
}

int tw_request_version(const tw_request_t *r)
{
    return r->version;
}

tw_str_t tw_request_host(const tw_request_t *r)
{
    return r->host;
}

bool tw_req_name_is(const tw_str_t *s, const char *name, size_t n)
{
    return s->len == n && strncasecmp(s->ptr, name, n) == 0;
}

const tw_header_t *tw_request_header(const tw_request_t *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->header_count; i++)
        if (tw_req_name_is(&r->headers[i].name, name, n))
            return &r->headers[i];
    return NULL;
}

const tw_header_t *tw_request_header_next(const tw_request_t *r, const char *name,
                                          const tw_header_t *prev)
{
    if (!prev)
        return tw_request_header(r, name);
    if (prev < r->headers || prev >= r->headers + r->header_count)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = (size_t)(prev - r->headers) + 1; i < r->header_count; i++)
        if (tw_req_name_is(&r->headers[i].name, name, n))
            return &r->headers[i];
    return NULL;
}

size_t tw_request_header_count(const tw_request_t *r)
{
    return r->header_count;
}

const tw_header_t *tw_request_header_at(const tw_request_t *r, size_t i)
{
    return i < r->header_count ? &r->headers[i] : NULL;
}

const struct sockaddr *tw_request_peer(const tw_request_t *r, socklen_t *len)
{
    if (r->peer) {
        if (len)
            *len = r->peer_len;
        return (const struct sockaddr *)r->peer;
    }
    if (len)
        *len = r->t->peer_len;
    return r->t->peer;
}

const char *tw_request_scheme(const tw_request_t *r)
{
    return r->t->tls ? "https" : "http";
}

const char *tw_request_tls_protocol(const tw_request_t *r)
{
    return r->t->tls ? r->t->tls_facts.protocol : NULL;
}

const char *tw_request_tls_cipher(const tw_request_t *r)
{
    return r->t->tls ? r->t->tls_facts.cipher : NULL;
}

const char *tw_request_peer_text(const tw_request_t *r)
{
    if (r->peer_text)
        return r->peer_text;
    return r->t->ops->peer_text(r->t);
}

int64_t tw_request_content_length(const tw_request_t *r)
{
    if (r->body_kind == TW_BODY_CHUNKED)
        return -1;
    return r->body_kind == TW_BODY_LENGTH ? (int64_t)r->content_length : 0;
}

tw_pool_t *tw_request_pool(tw_request_t *r)
{
    return r->pool;
}

void *tw_request_alloc(tw_request_t *r, size_t n)
{
    return tw_pool_alloc(r->pool, n);
}

uint64_t tw_request_elapsed_us(const tw_request_t *r)
{
    uint64_t now = tw_loop_clock_us(r->srv->loop);
    return now > r->start_us ? now - r->start_us : 0;
}

uint64_t tw_response_body_bytes(const tw_request_t *r)
{
    return r->body_sent; /* 0 for HEAD and the other header-only responses */
}

tw_loop_t *tw_request_loop(tw_request_t *r)
{
    return r->srv->loop;
}

void *tw_request_ctx(const tw_request_t *r, const tw_module_t *module)
{
    size_t i = tw_req_module_index(r->srv, module);
    return i == SIZE_MAX || !r->ctx ? NULL : r->ctx[i];
}

void tw_request_set_ctx(tw_request_t *r, const tw_module_t *module, void *ctx)
{
    size_t i = tw_req_module_index(r->srv, module);
    if (i == SIZE_MAX || !r->ctx) {
        tw_log_error("tw_request_set_ctx: module %s is not loaded", tw_req_module_name(module));
        return;
    }
    r->ctx[i] = ctx;
}

void *tw_request_route_conf(const tw_request_t *r, const tw_module_t *module)
{
    if (!r->route || !r->route->module_conf)
        return NULL;
    size_t i = tw_req_module_index(r->srv, module);
    return i == SIZE_MAX ? NULL : r->route->module_conf[i];
}

void *tw_request_global_conf(const tw_request_t *r, const tw_module_t *module)
{
    if (!r->srv->global_conf)
        return NULL;
    size_t i = tw_req_module_index(r->srv, module);
    return i == SIZE_MAX ? NULL : r->srv->global_conf[i];
}

int tw_request_set_uri(tw_request_t *r, const char *uri, size_t len)
{
    if (!tw_req_api_allowed(r, "tw_request_set_uri", TW_API_URI))
        return -1;
    if (r->resp_started) {
        tw_log_error("module %s called tw_request_set_uri after starting a response",
                     tw_req_module_name(r->module));
        errno = EPERM;
        return -1;
    }
    bool redirect = r->phase == TW_PHASE_ACCESS || r->phase == TW_PHASE_CONTENT;
    if (redirect && r->redirects >= TW_MAX_REDIRECTS) {
        tw_log_error("module %s: more than %d internal redirects", tw_req_module_name(r->module),
                     TW_MAX_REDIRECTS);
        errno = EPERM;
        return -1;
    }
    if (!uri || len == 0 || uri[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    const char *q = memchr(uri, '?', len);
    size_t plen = q ? (size_t)(q - uri) : len;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)uri[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '#') {
            errno = EINVAL;
            return -1;
        }
    }
    char *path = tw_pool_alloc(r->pool, plen + 2);
    if (!path) {
        errno = ENOMEM;
        return -1;
    }
    size_t out = 0;
    if (tw_http_normalize_path(uri, plen, path, &out) != 0) {
        errno = EINVAL;
        return -1;
    }
    tw_str_t query = {"", 0};
    if (q) {
        char *qs = tw_pool_strndup(r->pool, q + 1, len - plen - 1);
        if (!qs) {
            errno = ENOMEM;
            return -1;
        }
        query = (tw_str_t){qs, len - plen - 1};
    }
    r->path = (tw_str_t){path, out};
    r->query = query;
    if (redirect)
        r->uri_changed = true;
    return 0;
}

int tw_request_on_abort(tw_request_t *r, tw_request_cb fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    tw_req_cb_t *cb = tw_pool_alloc(r->pool, sizeof *cb);
    if (!cb) {
        errno = ENOMEM;
        return -1;
    }
    *cb = (tw_req_cb_t){NULL, fn, arg, r->module};
    tw_req_cb_t **tail = &r->abort_cbs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = cb;
    return 0;
}

typedef struct {
    tw_timer_t timer;
    tw_request_t *r;
    tw_request_cb fn;
    void *arg;
    const tw_module_t *module;
} req_timer_t;

static void req_timer_fire(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    req_timer_t *rt = arg;
    tw_request_t *r = rt->r;
    tw_transport_t *tr = r->t;
    (void)loop;
    (void)t;
    tr->ops->begin(tr);
    tw_req_call_cb(r, rt->module, "timer", rt->fn, rt->arg); /* may end r (rt with it) */
    tr->ops->end(tr);
}

static void req_timer_cleanup(void *arg)
{
    req_timer_t *rt = arg;
    tw_timer_stop(rt->r->srv->loop, &rt->timer);
}

int tw_request_set_timer(tw_request_t *r, uint64_t ms, tw_request_cb fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (r->stage >= TW_AT_LOG) {
        errno = EPERM;
        return -1;
    }
    req_timer_t *rt = tw_pool_alloc(r->pool, sizeof *rt);
    if (!rt || tw_pool_add_cleanup(r->pool, req_timer_cleanup, rt) != 0) {
        errno = ENOMEM;
        return -1;
    }
    rt->r = r;
    rt->fn = fn;
    rt->arg = arg;
    rt->module = r->module;
    tw_timer_init(&rt->timer, req_timer_fire, rt);
    if (tw_timer_start(r->srv->loop, &rt->timer, ms) != 0)
        return -1;
    return 0;
}

tw_worker_t *tw_request_worker(const tw_request_t *r)
{
    return r->srv->worker;
}

void tw_request_log(const tw_request_t *r, tw_log_level_t level, const char *fmt, ...)
{
    if (!tw_log_enabled(level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tw_log(level, "module %s: %s (request '%.*s', client %s)", tw_req_module_name(r->module), msg,
           (int)(r->request_line.len > 512 ? 512 : r->request_line.len), r->request_line.ptr,
           tw_request_peer_text(r));
}
