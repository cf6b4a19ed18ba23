/* redirect — fixed responses and redirects, after nginx's `return`:
 *
 *   redirect: { return: 301 https://example.com$uri }   # Location + short body
 *   redirect: { return: "404" }                          # status, short body
 *   redirect: { return: 200 "pong" }                     # status and text
 *
 * The value is a status, then optionally a URL (for 3xx) or a text (for
 * anything else; surrounding double quotes are dropped). Variables are
 * substituted per request: $uri, $args, $is_args, $request_uri, $host,
 * $scheme, and $1..$9, the groups of the route's `regex:`. The template is compiled at configure
 * time into literal and variable pieces, so a request only copies bytes. See README.md. */
#include <stdio.h>
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef enum {
    VAR_NONE = 0,    /* a literal piece */
    VAR_URI,         /* the path, decoded and normalised, slashes merged
                        (percent-encoded in a URL) */
    VAR_ARGS,        /* the query, as received, without '?' */
    VAR_IS_ARGS,     /* "?" if there is a query, else "" */
    VAR_REQUEST_URI, /* the request target as received, from the path on */
    VAR_HOST,        /* the Host, without port */
    VAR_SCHEME,      /* "https" on a TLS listener, else "http" */
    VAR_CAPTURE,     /* $1..$9: a group of the route's regex (decoded path bytes,
                        percent-encoded in a URL); empty if it did not match */
} var_t;

static const char *const var_names[] = {
    [VAR_URI] = "uri",         [VAR_ARGS] = "args",
    [VAR_IS_ARGS] = "is_args", [VAR_REQUEST_URI] = "request_uri",
    [VAR_HOST] = "host",       [VAR_SCHEME] = "scheme",
};

typedef struct {
    var_t var; /* VAR_NONE: the literal text below */
    const char *text;
    size_t len; /* VAR_CAPTURE: the group number */
} piece_t;

typedef struct {
    int status;
    bool is_redirect; /* 3xx: the template is the Location */
    piece_t *pieces;  /* the URL or text template; none: default body */
    size_t npieces;
} redirect_conf_t;

/* ---- configuration --------------------------------------------------------- */

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_name_char(char c)
{
    return is_letter(c) || (c >= '0' && c <= '9') || c == '_';
}

/* Splits text into literal and variable pieces. "$1".."$9" are the
 * route's regex groups; any other '$' not followed by a letter is literal
 * ("$0", "$ ", a final "$"). (${...} is not ours: the
 * config file already replaced it with an environment variable.) */
static int compile(tw_configure_t *cf, redirect_conf_t *c, const char *text,
                   const tw_conf_node_t *node, tw_conf_error_t *err)
{
    size_t max = 1;
    for (const char *p = text; *p; p++)
        max += *p == '$' ? 2 : 0;
    c->pieces = tw_configure_alloc(cf, max * sizeof *c->pieces);
    if (c->pieces == NULL)
        return tw_conf_error(err, node, "out of memory");

    const char *lit = text, *p = text;
    while (*p) {
        if (*p == '$' && p[1] >= '1' && p[1] <= '9') {
            if (p > lit)
                c->pieces[c->npieces++] = (piece_t){VAR_NONE, lit, (size_t)(p - lit)};
            c->pieces[c->npieces++] = (piece_t){VAR_CAPTURE, NULL, (size_t)(p[1] - '0')};
            lit = p = p + 2;
            continue;
        }
        if (*p != '$' || !is_letter(p[1])) {
            p++;
            continue;
        }
        const char *name = p + 1, *end = name;
        while (is_name_char(*end))
            end++;
        var_t var = VAR_NONE;
        for (size_t v = VAR_URI; v <= VAR_SCHEME; v++)
            if (strlen(var_names[v]) == (size_t)(end - name) &&
                memcmp(var_names[v], name, (size_t)(end - name)) == 0)
                var = (var_t)v;
        if (var == VAR_NONE)
            return tw_conf_error(err, node,
                                 "unknown variable $%.*s (known: $uri, $args, $is_args, "
                                 "$request_uri, $host, $scheme)",
                                 (int)(end - name), name);
        if (p > lit)
            c->pieces[c->npieces++] = (piece_t){VAR_NONE, lit, (size_t)(p - lit)};
        c->pieces[c->npieces++] = (piece_t){var, NULL, 0};
        lit = p = end;
    }
    if (p > lit)
        c->pieces[c->npieces++] = (piece_t){VAR_NONE, lit, (size_t)(p - lit)};
    return 0;
}

static int redirect_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                              void **conf, tw_conf_error_t *err)
{
    static const char *const keys[] = {"return", NULL};
    bool empty =
        node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0');

    if (scope == TW_SCOPE_GLOBAL)
        return empty ? 0 : tw_conf_error(err, node, "redirect has no global settings");
    if (empty)
        return tw_conf_error(err, node,
                             "the redirect handler needs `redirect: { return: STATUS "
                             "[URL or text] }` in this route");
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    const tw_conf_node_t *ret = tw_conf_map_get(node, "return");
    const char *value;
    if (ret == NULL)
        return tw_conf_error(err, node,
                             "missing return: e.g. `return: 301 https://example.com$uri`");
    if (tw_conf_get_string(ret, &value, err) != 0)
        return -1;

    redirect_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (c == NULL)
        return tw_conf_error(err, ret, "out of memory");
    const char *p = value;
    int status = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (*p < '0' || *p > '9')
            return tw_conf_error(err, ret,
                                 "expected a status (200..599), then a URL or text, e.g. "
                                 "`301 https://example.com$uri`, got '%s'",
                                 value);
        status = status * 10 + (*p - '0');
    }
    if (status < 200 || status > 599 || (*p != '\0' && *p != ' ' && *p != '\t'))
        return tw_conf_error(err, ret, "expected a status (200..599) first, got '%s'", value);
    if (status == 304)
        return tw_conf_error(err, ret,
                             "304 answers conditional requests; it cannot be returned "
                             "as a fixed response");
    while (*p == ' ' || *p == '\t')
        p++;
    c->status = status;
    c->is_redirect = status >= 300 && status < 400;

    /* The rest: a URL (3xx) or a text, surrounding double quotes dropped. */
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
        p++;
        len -= 2;
    }
    char *rest = tw_configure_alloc(cf, len + 1);
    if (rest == NULL)
        return tw_conf_error(err, ret, "out of memory");
    memcpy(rest, p, len);
    rest[len] = '\0';

    if (c->is_redirect && len == 0)
        return tw_conf_error(err, ret,
                             "a %d needs the URL to redirect to, e.g. `%d "
                             "https://example.com$uri`",
                             status, status);
    if (status == 204 && len > 0)
        return tw_conf_error(err, ret, "a 204 response has no body");
    if (c->is_redirect)
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)rest[i] <= ' ' || rest[i] == 0x7f)
                return tw_conf_error(err, ret,
                                     "the URL has a space or control character; "
                                     "percent-encode it");
    if (len > 0 && compile(cf, c, rest, ret, err) != 0)
        return -1;
    *conf = c;
    return 0;
}

/* ---- serving -------------------------------------------------------------- */

static bool keep_in_url(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL);
}

/* $request_uri: the target as received, but from the path on for an
 * absolute-form target ("GET http://host/a?x" gives "/a?x", as nginx
 * does), so that `http://$host$request_uri` is a URL whatever the form.
 * NULL ptr: out of memory. */
static tw_str_t request_uri_value(tw_request_t *r)
{
    tw_str_t t = tw_request_target(r);
    const char *sep = t.len > 0 && t.ptr[0] != '/' ? memmem(t.ptr, t.len, "://", 3) : NULL;
    if (sep == NULL)
        return t; /* origin-form (or "*") */
    const char *p = sep + 3, *end = t.ptr + t.len;
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p < end && *p == '/')
        return (tw_str_t){p, (size_t)(end - p)};
    /* "http://host" or "http://host?x": the path is "/" */
    char *out = tw_request_alloc(r, 1 + (size_t)(end - p) + 1);
    if (out == NULL)
        return (tw_str_t){NULL, 0};
    out[0] = '/';
    memcpy(out + 1, p, (size_t)(end - p));
    out[1 + (end - p)] = '\0';
    return (tw_str_t){out, 1 + (size_t)(end - p)};
}

/* The per-request values of the variables, computed once per expansion. */
typedef struct {
    tw_str_t uri, request_uri;
} vars_t;

/* A piece's value; *encode says whether it is a decoded path that must be
 * percent-encoded in a URL. */
static tw_str_t piece_value(tw_request_t *r, const piece_t *pc, const vars_t *vars, bool *encode)
{
    *encode = false;
    switch (pc->var) {
    case VAR_URI:
        *encode = true;
        return vars->uri;
    case VAR_ARGS:
        return tw_request_query(r);
    case VAR_IS_ARGS:
        return tw_request_query(r).len ? (tw_str_t){"?", 1} : (tw_str_t){"", 0};
    case VAR_REQUEST_URI:
        return vars->request_uri;
    case VAR_HOST:
        return tw_request_host(r);
    case VAR_SCHEME: {
        const char *scheme = tw_request_scheme(r);
        return (tw_str_t){scheme, strlen(scheme)};
    }
    case VAR_CAPTURE: {
        tw_str_t v;
        *encode = true;
        tw_request_capture(r, (unsigned)pc->len, &v);
        return v.ptr ? v : (tw_str_t){"", 0};
    }
    case VAR_NONE:
        break;
    }
    return (tw_str_t){pc->text, pc->len};
}

/* Expands the template into the request's pool (NUL-terminated). */
static char *expand(tw_request_t *r, const redirect_conf_t *c, size_t *len_out)
{
    size_t size = 1;
    bool encode;
    /* $uri: the normalised path (the core merges repeated slashes, so it
     * never starts with "//", which would make a protocol-relative URL). */
    vars_t vars = {tw_request_path(r), request_uri_value(r)};
    if (vars.uri.ptr == NULL || vars.request_uri.ptr == NULL)
        return NULL;
    for (size_t i = 0; i < c->npieces; i++) {
        tw_str_t v = piece_value(r, &c->pieces[i], &vars, &encode);
        size += encode && c->is_redirect ? 3 * v.len : v.len;
    }
    char *out = tw_request_alloc(r, size), *o = out;
    if (out == NULL)
        return NULL;
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < c->npieces; i++) {
        tw_str_t v = piece_value(r, &c->pieces[i], &vars, &encode);
        if (!(encode && c->is_redirect)) {
            memcpy(o, v.ptr, v.len);
            o += v.len;
            continue;
        }
        for (size_t k = 0; k < v.len; k++) {
            unsigned char ch = (unsigned char)v.ptr[k];
            if (keep_in_url(ch)) {
                *o++ = (char)ch;
            } else {
                *o++ = '%';
                *o++ = hex[ch >> 4];
                *o++ = hex[ch & 15];
            }
        }
    }
    *o = '\0';
    *len_out = (size_t)(o - out);
    return out;
}

static int redirect_content(tw_request_t *r)
{
    const redirect_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (c == NULL)
        return TW_ERROR;

    char line[64];
    const char *body = line;
    size_t len =
        (size_t)snprintf(line, sizeof line, "%d %s\n", c->status, tw_http_status_text(c->status));
    const char *type = "text/plain";
    if (c->npieces > 0) {
        size_t n;
        char *text = expand(r, c, &n);
        if (text == NULL)
            return TW_ERROR;
        if (c->is_redirect) {
            /* A Location that starts with a variable ("$request_uri",
             * "$uri/") must stay on this site: "//evil.example" from the
             * request would be a protocol-relative URL to another host.
             * (A template that itself starts with "//" means it.) */
            if (c->pieces[0].var != VAR_NONE && text[0] == '/') {
                size_t k = 1;
                while (text[k] == '/' || text[k] == '\\') /* browsers read '\' as '/' */
                    k++;
                text += k - 1;
                text[0] = '/';
            }
            if (tw_response_set_header(r, "Location", text) != 0)
                return TW_ERROR; /* cannot happen: the URL was checked and encoded */
        } else {
            body = text;
            len = n;
            type = "text/plain; charset=utf-8";
        }
    }
    if (c->status == 204) {
        body = NULL;
        len = 0;
        type = NULL;
    }
    return tw_response_send(r, c->status, type, body, len) == 0 ? TW_DONE : TW_ERROR;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "redirect",
    .version = "1.0.0",
    .description = "fixed responses and redirects with $uri, $args, $host, $1, ... substituted",
    .configure = redirect_configure,
    .content = redirect_content,
};
