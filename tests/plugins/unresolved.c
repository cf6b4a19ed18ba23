/* Fixture: calls a function no server provides. It links (shared objects
 * may leave symbols undefined) but dlopen(RTLD_NOW) refuses it. */
#include <twister/twister.h>

int tw_no_such_function(tw_request_t *r);

static int unresolved_content(tw_request_t *r)
{
    return tw_no_such_function(r);
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "unresolved",
    .content = unresolved_content,
};
