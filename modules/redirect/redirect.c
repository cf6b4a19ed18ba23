/* redirect — fixed responses and redirects, after nginx's `return`:
 *
 *   redirect: { return: 301 https://example.com$uri }   # Location + short body
 *   redirect: { return: "404" }                          # status, short body
 *   redirect: { return: 200 "pong" }                     # status and text
 *
 * The value is a status, then optionally a URL (for 3xx) or a text (for
 * anything else; surrounding double quotes are dropped). The server's
 * variables are substituted per request ($uri, $args, $is_args,
 * $request_uri, $host, $scheme, $1..$9 — the groups of the route's
 * `regex:` — and every other one, twister/variables.h), the template
 * compiled at configure time. See README.md. */
#include <stdio.h>
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    int status;
    bool is_redirect;        /* 3xx: the template is the Location */
    tw_template_t *template; /* the URL or text; NULL: the default body */
} redirect_conf_t;

/* ---- configuration --------------------------------------------------------- */

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
    if (len > 0 && !(c->template = tw_template_compile(cf, rest, ret, err)))
        return -1;
    *conf = c;
    return 0;
}

/* ---- serving -------------------------------------------------------------- */

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
    if (c->template) {
        size_t n;
        /* In a URL, decoded values ($uri, $1) are percent-encoded. */
        const char *expanded = tw_template_expand(
            r, c->template, c->is_redirect ? TW_TEMPLATE_URL : TW_TEMPLATE_TEXT, &n);
        if (expanded == NULL)
            return TW_ERROR;
        const char *text = expanded;
        if (c->is_redirect) {
            /* A Location that starts with a variable ("$request_uri",
             * "$uri/") must stay on this site: "//evil.example" from the
             * request would be a protocol-relative URL to another host.
             * (A template that itself starts with "//" means it.) Such a
             * template is not literal, so its expansion is the request's
             * own writable copy (twister/variables.h). */
            if (tw_template_starts_with_variable(c->template) && text[0] == '/') {
                char *own = (char *)expanded;
                size_t k = 1;
                while (own[k] == '/' || own[k] == '\\') /* browsers read '\' as '/' */
                    k++;
                own += k - 1;
                own[0] = '/';
                text = own;
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
