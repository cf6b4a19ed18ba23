/* Fixture: calls tw_router_find, a function the core has (core/router.h)
 * but no public header declares. The server exports only the public API,
 * so dlopen(RTLD_NOW) refuses the plugin, naming the function. */
#include <stddef.h>

#include <twister/twister.h>

const void *tw_router_find(const void *settings, size_t listener_index, const char *host,
                           size_t host_len, const char *path, size_t path_len, int *status);

static int internal_symbol_content(tw_request_t *r)
{
    int status = 0;
    return tw_router_find(NULL, 0, "", 0, "/", 1, &status) ? 200 : status;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "internal_symbol",
    .content = internal_symbol_content,
};
