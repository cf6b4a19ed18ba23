/* headers — response (and request) headers per route, after nginx's
 * add_header / more_set_headers / proxy_set_header:
 *
 *   headers:
 *     set: { X-Frame-Options: DENY, X-Served-By: "$host" }   # replace
 *     add: { Cache-Control: no-store }                       # append
 *     remove: [X-Powered-By]
 *     always: true                     # also on the core's error pages
 *     request: { set: { X-Real-IP: $remote_addr }, remove: [Cookie] }
 *     request_id: true                 # X-Request-Id, kept or generated
 *
 * Values may hold any of the server's variables ($host, $uri,
 * $request_uri, $remote_addr, $request_id, $http_NAME, a module's own;
 * twister/variables.h), compiled at configure time.
 * Response headers are applied by a header filter (an "always" one, which
 * also sees the core's error pages, for confs with always: true); request
 * headers by an ACCESS handler that runs first and has no opinion. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    const char *name;
    tw_template_t *value;
} field_t;

typedef struct {
    field_t *set, *add;
    size_t nset, nadd;
    const char **remove;
    size_t nremove;
} ops_t;

typedef struct {
    ops_t response, request;
    bool always;
    bool request_id;
} headers_conf_t;

/* Per request. */
typedef struct {
    bool id_checked;   /* the client's X-Request-Id was considered */
    bool request_done; /* request headers applied (once, even after a redirect) */
} headers_ctx_t;

#define REQUEST_ID_HEADER "X-Request-Id"
#define MAX_VALUE 8192

/* ---- configuration --------------------------------------------------------- */

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c))
            return false;
    }
    return true;
}

static bool is_name(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* The names no module may set or remove: the core writes them. */
static const char *core_owned(const char *name, bool request)
{
    if (is_name(name, "Content-Length") || is_name(name, "Transfer-Encoding"))
        return "the core frames the body";
    if (!request && is_name(name, "Connection"))
        return "the core manages the connection";
    if (!request && (is_name(name, "Server") || is_name(name, "Date")))
        return "the core writes it (server_header: \"\" at the top level drops Server)";
    return NULL;
}

static int check_name(const tw_conf_node_t *node, const char *name, bool request,
                      tw_conf_error_t *err)
{
    if (!is_token(name))
        return tw_conf_error(err, node, "'%s' is not a header name (a token)", name);
    const char *why = core_owned(name, request);
    if (why)
        return tw_conf_error(err, node, "%s cannot be changed here: %s", name, why);
    return 0;
}

static int parse_fields(tw_configure_t *cf, const tw_conf_node_t *map, bool request, field_t **out,
                        size_t *count, tw_conf_error_t *err)
{
    if (tw_conf_type(map) != TW_CONF_MAP)
        return tw_conf_error(err, map, "expected a map of header: value");
    size_t n = tw_conf_count(map);
    field_t *fields = tw_configure_alloc(cf, (n ? n : 1) * sizeof *fields);
    if (!fields)
        return tw_conf_error(err, map, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *name = tw_conf_map_key(map, i);
        const tw_conf_node_t *value = tw_conf_map_value(map, i);
        if (check_name(tw_conf_map_key_node(map, i), name, request, err) != 0)
            return -1;
        if (tw_conf_type(value) != TW_CONF_SCALAR)
            return tw_conf_error(err, value, "expected a header value (a string)");
        const char *text = tw_conf_scalar(value);
        for (const char *p = text; *p; p++)
            if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
                return tw_conf_error(err, value, "a header value cannot hold control characters");
        fields[i].name = name;
        if (!(fields[i].value = tw_template_compile(cf, text, value, err)))
            return -1;
    }
    *out = fields;
    *count = n;
    return 0;
}

static int parse_ops(tw_configure_t *cf, const tw_conf_node_t *node, ops_t *ops, bool request,
                     tw_conf_error_t *err)
{
    const tw_conf_node_t *n;
    if ((n = tw_conf_map_get(node, "set")) &&
        parse_fields(cf, n, request, &ops->set, &ops->nset, err) != 0)
        return -1;
    if ((n = tw_conf_map_get(node, "add")) &&
        parse_fields(cf, n, request, &ops->add, &ops->nadd, err) != 0)
        return -1;
    if ((n = tw_conf_map_get(node, "remove"))) {
        if (tw_conf_type(n) != TW_CONF_LIST)
            return tw_conf_error(err, n, "expected a list of header names");
        ops->nremove = tw_conf_count(n);
        ops->remove = tw_configure_alloc(cf, (ops->nremove ? ops->nremove : 1) * sizeof(char *));
        if (!ops->remove)
            return tw_conf_error(err, n, "out of memory");
        for (size_t i = 0; i < ops->nremove; i++) {
            const tw_conf_node_t *item = tw_conf_list_item(n, i);
            if (tw_conf_type(item) != TW_CONF_SCALAR)
                return tw_conf_error(err, item, "expected a header name");
            if (check_name(item, tw_conf_scalar(item), request, err) != 0)
                return -1;
            ops->remove[i] = tw_conf_scalar(item);
        }
    }
    return 0;
}

static int headers_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                             void **conf, tw_conf_error_t *err)
{
    (void)scope;
    *conf = NULL;
    if (node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0'))
        return 0;
    static const char *const keys[] = {"set",     "add",        "remove", "always",
                                       "request", "request_id", NULL};
    static const char *const request_keys[] = {"set", "add", "remove", NULL};
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    headers_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    memset(c, 0, sizeof *c);
    const tw_conf_node_t *n;
    if (parse_ops(cf, node, &c->response, false, err) != 0)
        return -1;
    if ((n = tw_conf_map_get(node, "request"))) {
        if (tw_conf_check_keys(n, request_keys, err) != 0 ||
            parse_ops(cf, n, &c->request, true, err) != 0)
            return -1;
    }
    if ((n = tw_conf_map_get(node, "always")) && tw_conf_get_bool(n, &c->always, err) != 0)
        return -1;
    if ((n = tw_conf_map_get(node, "request_id")) && tw_conf_get_bool(n, &c->request_id, err) != 0)
        return -1;
    *conf = c;
    return 0;
}

/* ---- requests ---------------------------------------------------------------- */

static const headers_conf_t *conf_of(const tw_request_t *r)
{
    const headers_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    return c ? c : tw_request_global_conf(r, &twister_module_v1);
}

static headers_ctx_t *ctx_of(tw_request_t *r)
{
    headers_ctx_t *x = tw_request_ctx(r, &twister_module_v1);
    if (!x && (x = tw_request_alloc(r, sizeof *x))) {
        memset(x, 0, sizeof *x);
        tw_request_set_ctx(r, &twister_module_v1, x);
    }
    return x;
}

/* A client's id is kept if it is short and plain; otherwise a new one. */
static bool acceptable_id(const tw_header_t *h)
{
    if (!h || h->value.len == 0 || h->value.len > 32)
        return false;
    for (size_t i = 0; i < h->value.len; i++) {
        char c = h->value.ptr[i];
        if (!is_letter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.')
            return false;
    }
    return true;
}

/* For request_id: true, the request's id ($request_id, the core's): the
 * client's X-Request-Id when it is acceptable, else the core's random
 * one. */
static const char *request_id(tw_request_t *r, const headers_conf_t *c)
{
    headers_ctx_t *x = ctx_of(r);
    if (x && !x->id_checked) {
        x->id_checked = true;
        const tw_header_t *h = tw_request_header(r, REQUEST_ID_HEADER);
        if (acceptable_id(h))
            tw_request_set_id(r, h->value.ptr, h->value.len);
    }
    return tw_request_id(r);
}

/* The value of f for r, NUL-terminated (in the request's pool or the
 * config); NULL if it is too long or memory runs out. */
static const char *expand(tw_request_t *r, const field_t *f)
{
    size_t len;
    const char *v = tw_template_expand(r, f->value, TW_TEMPLATE_TEXT, &len);
    return v && len <= MAX_VALUE ? v : NULL;
}

/* Applies ops with the setters of one side. A value the request made
 * unusable (a control character from a decoded $uri) skips that header:
 * never an injection, never a failed response. */
static void apply(tw_request_t *r, const headers_conf_t *c, const ops_t *ops,
                  int (*set)(tw_request_t *, const char *, const char *),
                  int (*add)(tw_request_t *, const char *, const char *),
                  int (*remove)(tw_request_t *, const char *))
{
    for (size_t i = 0; i < ops->nremove; i++)
        remove(r, ops->remove[i]);
    for (size_t i = 0; i < ops->nset; i++) {
        const char *v = expand(r, &ops->set[i]);
        if (v)
            set(r, ops->set[i].name, v);
    }
    for (size_t i = 0; i < ops->nadd; i++) {
        const char *v = expand(r, &ops->add[i]);
        if (v)
            add(r, ops->add[i].name, v);
    }
}

static int headers_request(tw_request_t *r)
{
    const headers_conf_t *c = conf_of(r);
    if (!c)
        return TW_DECLINED;
    headers_ctx_t *x = ctx_of(r);
    if (!x || x->request_done)
        return TW_DECLINED;
    x->request_done = true;
    if (c->request_id) /* adopted first: a template may use $request_id */
        tw_request_set_header(r, REQUEST_ID_HEADER, request_id(r, c));
    apply(r, c, &c->request, tw_request_set_header, tw_request_add_header,
          tw_request_remove_header);
    return TW_DECLINED; /* an editor, not a check: no opinion */
}

static void apply_response(tw_request_t *r, const headers_conf_t *c)
{
    if (c->request_id)
        tw_response_set_header(r, REQUEST_ID_HEADER, request_id(r, c));
    apply(r, c, &c->response, tw_response_set_header, tw_response_add_header,
          tw_response_remove_header);
}

/* Responses a handler produced, for confs without always. */
static int headers_filter(tw_request_t *r)
{
    const headers_conf_t *c = conf_of(r);
    if (c && !c->always)
        apply_response(r, c);
    return TW_NEXT;
}

/* Every response, the core's error pages included, for confs with always. */
static int headers_filter_always(tw_request_t *r)
{
    const headers_conf_t *c = conf_of(r);
    if (c && c->always)
        apply_response(r, c);
    return TW_NEXT;
}

static int headers_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    if (tw_phases_add(phases, TW_PHASE_ACCESS, headers_request, TW_ORDER_FIRST) != 0 ||
        tw_phases_add_header_filter(phases, headers_filter, TW_ORDER_MIDDLE) != 0 ||
        tw_phases_add_header_filter_always(phases, headers_filter_always, TW_ORDER_MIDDLE) != 0)
        return -1;
    return 0;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "headers",
    .version = "1.0.0",
    .description = "sets, adds and removes response and request headers",
    .configure = headers_configure,
    .register_phases = headers_register,
};
