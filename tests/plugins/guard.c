/* guard — the guide's worked example (modules/README.md, "A worked
 * example: an ACCESS guard and a header filter"): refuses requests without
 * the route's key, and marks the responses it let through.
 *
 *   routes:
 *     - prefix: /private/
 *       handler: static
 *       guard: { key: s3cret }        # ?key=s3cret or Cookie: key=s3cret
 */
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    const char *key;
} guard_conf_t;

static int guard_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                           void **conf, tw_conf_error_t *err)
{
    static const char *const keys[] = {"key", NULL};
    if (scope == TW_SCOPE_GLOBAL)
        return node ? tw_conf_error(err, node, "guard has no global settings") : 0;
    const tw_conf_node_t *key = node ? tw_conf_map_get(node, "key") : NULL;
    if (!key)
        return tw_conf_error(err, node, "guard needs `guard: { key: SECRET }`");
    guard_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c || tw_conf_check_keys(node, keys, err) != 0 ||
        tw_conf_get_string(key, &c->key, err) != 0)
        return c ? -1 : tw_conf_error(err, node, "out of memory");
    c->key = tw_configure_strdup(cf, c->key);
    *conf = c;
    return 0;
}

static bool same(tw_str_t s, const char *key)
{
    return s.ptr && s.len == strlen(key) && memcmp(s.ptr, key, s.len) == 0;
}

/* ACCESS: the routes with a guard section need the key. */
static int guard_access(tw_request_t *r)
{
    const guard_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (!c)
        return TW_DECLINED; /* not a guarded route */
    tw_str_t given;
    int found = tw_request_arg(r, "key", &given);
    if (found < 0)
        return 400; /* a malformed %-escape */
    if ((found && same(given, c->key)) ||
        (tw_request_cookie(r, "key", &given) && same(given, c->key))) {
        tw_request_set_ctx(r, &twister_module_v1, (void *)c); /* for the filter */
        return TW_NEXT;
    }
    tw_request_log(r, TW_LOG_INFO, "refused: no valid key");
    return 403;
}

/* Header filter: every response that passed the guard says so. */
static int guard_header_filter(tw_request_t *r)
{
    if (tw_request_ctx(r, &twister_module_v1) == NULL)
        return TW_NEXT;
    if (tw_response_set_header(r, "X-Guarded", "passed") != 0 ||
        tw_response_set_header(r, "Cache-Control", "private") != 0)
        return TW_ERROR;
    return TW_NEXT;
}

static int guard_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    if (tw_phases_add(phases, TW_PHASE_ACCESS, guard_access, TW_ORDER_MIDDLE) != 0 ||
        tw_phases_add_header_filter(phases, guard_header_filter, TW_ORDER_MIDDLE) != 0)
        return -1;
    return 0;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "guard",
    .version = "1.0.0",
    .description = "refuses requests without the route's key; marks the ones it let through",
    .configure = guard_configure,
    .register_phases = guard_register,
};
