/* echo — answers a request with what it sent.
 *
 *   - GET and HEAD: text/plain, the request line and the header fields as
 *     received, one per line ("Name: value").
 *   - any other method (POST, PUT, ...): the request body, byte for byte,
 *     with the request's Content-Type (or application/octet-stream).
 *
 * By default the body is streamed, never held whole: each piece that
 * arrives is written out at once, and when the client does not read the
 * response as fast as it sends the request, the body stream is paused
 * until the response drains. A body of any size costs a bounded amount of
 * memory. With `buffer: true` the body is read whole first (up to the
 * route's limit), so that every body error gets its own status.
 *
 *   routes:
 *     - path: /echo
 *       handler: echo
 *       limits: { body: 16m }      # the core's body limit applies (413)
 *       echo: { buffer: false }    # the default */
#include <stdio.h>
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    bool buffer; /* read the whole body before answering */
} echo_conf_t;

/* The state of one echoed body, in the request's pool. */
typedef struct {
    const char *content_type; /* for the response */
    int64_t length;           /* request Content-Length, or -1 for chunked */
    bool started;             /* status and headers are set */
    bool resumed;             /* the handler's outcome is decided */
} echo_ctx_t;

/* ---- configuration ---------------------------------------------------------- */

static int echo_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                          void **conf, tw_conf_error_t *err)
{
    static const char *const keys[] = {"buffer", NULL};
    echo_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (c == NULL)
        return tw_conf_error(err, node, "out of memory");
    const echo_conf_t *global = scope == TW_SCOPE_ROUTE ? tw_configure_global_conf(cf) : NULL;
    c->buffer = global ? global->buffer : false;
    if (node != NULL && !(tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0')) {
        const tw_conf_node_t *v;
        if (tw_conf_check_keys(node, keys, err) != 0)
            return -1;
        if ((v = tw_conf_map_get(node, "buffer")) != NULL &&
            tw_conf_get_bool(v, &c->buffer, err) != 0)
            return -1;
    }
    *conf = c;
    return 0;
}

/* ---- GET and HEAD: the request head as text ------------------------------------ */

static int echo_head(tw_request_t *r)
{
    tw_str_t method = tw_request_method(r), target = tw_request_target(r);
    size_t n = tw_request_header_count(r);

    size_t size = method.len + 1 + target.len + sizeof " HTTP/1.x\n";
    for (size_t i = 0; i < n; i++) {
        const tw_header_t *h = tw_request_header_at(r, i);
        size += h->name.len + 2 + h->value.len + 1;
    }
    char *text = tw_request_alloc(r, size);
    if (text == NULL)
        return TW_ERROR;

    int len = snprintf(text, size, "%.*s %.*s HTTP/1.%d\n", (int)method.len, method.ptr,
                       (int)target.len, target.ptr, tw_request_version(r) == 10 ? 0 : 1);
    size_t used = (size_t)len;
    for (size_t i = 0; i < n; i++) {
        const tw_header_t *h = tw_request_header_at(r, i);
        memcpy(text + used, h->name.ptr, h->name.len);
        used += h->name.len;
        memcpy(text + used, ": ", 2);
        used += 2;
        memcpy(text + used, h->value.ptr, h->value.len);
        used += h->value.len;
        text[used++] = '\n';
    }
    return tw_response_send(r, 200, "text/plain", text, used) == 0 ? TW_DONE : TW_ERROR;
}

/* ---- other methods: the body ------------------------------------------------------ */

/* Ends the suspended handler, once, as if it had returned rc: TW_DONE once
 * the response is finished; an HTTP status while nothing was sent (the
 * core answers it); TW_ERROR otherwise (the core closes the connection: a
 * response cut short is all HTTP/1.1 allows once its head is out). */
static void echo_end(tw_request_t *r, echo_ctx_t *ctx, int rc)
{
    if (ctx->resumed)
        return;
    ctx->resumed = true;
    tw_request_resume(r, rc);
}

/* The client went away (possibly while the body stream was paused). */
static void echo_aborted(tw_request_t *r, void *arg)
{
    echo_end(r, arg, TW_ERROR);
}

/* The response drained under the low-water mark: let the body flow again. */
static void echo_drained(tw_request_t *r, void *arg)
{
    (void)arg;
    tw_request_resume_body(r);
}

/* Streaming: receives the request body piece by piece (tw_body_chunk_cb). */
static int echo_piece(tw_request_t *r, int status, const char *data, size_t len, bool last,
                      void *arg)
{
    echo_ctx_t *ctx = arg;

    if (status != 0) {
        /* The body could not be read: bad chunked framing (400), over the
         * limit (413), too slow (408), or the client left (TW_ERROR). */
        echo_end(r, ctx, !ctx->started && status >= 400 && status <= 599 ? status : TW_ERROR);
        return -1;
    }

    /* The head goes out with the first piece, so that a body that fails
     * before any byte arrived can still be answered with its error. */
    if (!ctx->started) {
        ctx->started = true;
        if (tw_response_set_status(r, 200) != 0 ||
            tw_response_set_header(r, "Content-Type", ctx->content_type) != 0 ||
            (ctx->length >= 0 && tw_response_set_content_length(r, (uint64_t)ctx->length) != 0)) {
            echo_end(r, ctx, TW_ERROR);
            return -1;
        }
    }

    int rc = len > 0 ? tw_response_write(r, data, len) : 0;
    if (rc < 0 || (last && tw_response_finish(r) != 0)) {
        echo_end(r, ctx, TW_ERROR); /* the client is gone */
        return -1;
    }
    if (last) {
        echo_end(r, ctx, TW_DONE);
        return 0;
    }
    if (rc == 1) {
        /* Over the high-water mark: pause the body until the response
         * drains, rather than queueing the whole upload in memory. */
        if (tw_response_on_drain(r, echo_drained, NULL) != 0) {
            echo_end(r, ctx, TW_ERROR);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* buffer: true — the whole body is in (or could not be read). */
static void echo_whole(tw_request_t *r, int status, void *arg)
{
    echo_ctx_t *ctx = arg;
    if (status != TW_NEXT) { /* 400, 408, 413, or TW_ERROR: the client left */
        echo_end(r, ctx, status);
        return;
    }
    size_t len;
    const char *body = tw_request_body(r, &len);
    int rc = tw_response_send(r, 200, ctx->content_type, body, len);
    echo_end(r, ctx, rc == 0 ? TW_DONE : TW_ERROR);
}

static int echo_content(tw_request_t *r)
{
    if (tw_request_method_is(r, "GET") || tw_request_method_is(r, "HEAD"))
        return echo_head(r);

    const echo_conf_t *conf = tw_request_route_conf(r, &twister_module_v1);
    echo_ctx_t *ctx = tw_request_alloc(r, sizeof *ctx);
    if (conf == NULL || ctx == NULL)
        return TW_ERROR;
    const tw_header_t *type = tw_request_header(r, "Content-Type");
    ctx->content_type = type ? tw_pool_strndup(tw_request_pool(r), type->value.ptr, type->value.len)
                             : "application/octet-stream";
    ctx->length = tw_request_content_length(r);
    ctx->started = ctx->resumed = false;
    if (ctx->content_type == NULL)
        return TW_ERROR;

    if (ctx->length == 0) /* no body: an empty answer */
        return tw_response_send(r, 200, ctx->content_type, "", 0) == 0 ? TW_DONE : TW_ERROR;

    /* The body arrives through callbacks, which write the response and
     * decide how the handler ends (echo_end): until then it is suspended. */
    if (tw_request_on_abort(r, echo_aborted, ctx) != 0)
        return TW_ERROR;
    int rc = conf->buffer ? tw_request_read_body(r, echo_whole, ctx)
                          : tw_request_stream_body(r, echo_piece, ctx);
    return rc == 0 ? TW_SUSPENDED : TW_ERROR;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "echo",
    .version = "1.0.0",
    .description = "answers with the request body, or the request head for GET/HEAD",
    .configure = echo_configure,
    .content = echo_content,
};
