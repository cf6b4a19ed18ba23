/* hello — answers every request of its routes with a fixed message.
 *
 * The module to copy when you start a plugin: one descriptor, one
 * configure hook that reads settings at two scopes, one content handler.
 *
 *   modules: [hello]
 *   hello: { message: "Hello from every route" }   # optional default
 *   servers:
 *     - listen: ["8080"]
 *       routes:
 *         - path: /hello
 *           handler: hello
 *           hello: { message: "Hi!" }              # this route only
 *
 * Build it out of tree with
 *   cc -shared -fPIC $(pkg-config --cflags twister) -o hello.so hello.c */
#include <string.h>

#include <twister/twister.h>

/* The descriptor is defined at the bottom; handlers name it to find their
 * own config in a request. */
TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

#define HELLO_DEFAULT "Hello, World!"

/* What configure builds for a scope (global or one route). It lives as
 * long as the generation, so the content handler never parses anything. */
typedef struct {
    const char *message;
    size_t len; /* strlen(message), computed once here rather than per request */
} hello_conf_t;

/* Called once for the top-level `hello:` section (node NULL if there is
 * none), then once per route that uses the module (node NULL if the route
 * has no `hello:` section). A route starts from the global settings. */
static int hello_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                           void **conf, tw_conf_error_t *err)
{
    static const char *const keys[] = {"message", NULL};

    hello_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (c == NULL)
        return tw_conf_error(err, node, "out of memory");
    const hello_conf_t *global = scope == TW_SCOPE_ROUTE ? tw_configure_global_conf(cf) : NULL;
    c->message = global ? global->message : HELLO_DEFAULT;

    /* `hello:` with nothing after it is YAML null: no settings. */
    if (node != NULL && !(tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0')) {
        if (tw_conf_check_keys(node, keys, err) != 0) /* a map, and no unknown keys */
            return -1;
        const tw_conf_node_t *message = tw_conf_map_get(node, "message");
        if (message != NULL && tw_conf_get_string(message, &c->message, err) != 0)
            return -1; /* err says: file:line:col: ...hello.message: expected a string */
    }
    c->len = strlen(c->message);
    *conf = c;
    return 0;
}

/* The content handler: runs for every request of a route whose handler is
 * hello. tw_response_send copies the body, sets Content-Length and
 * finishes the response (the core leaves the body out for HEAD). */
static int hello_content(tw_request_t *r)
{
    const hello_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (c == NULL) /* cannot happen: configure runs for every hello route */
        return TW_ERROR;
    if (tw_response_send(r, 200, "text/plain; charset=utf-8", c->message, c->len) != 0)
        return TW_ERROR;
    return TW_DONE;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER, /* magic, ABI version and struct size: always first */
    .name = "hello",  /* also the key of its config sections */
    .version = "1.0.0",
    .description = "answers with a fixed message",
    .configure = hello_configure,
    .content = hello_content,
};
