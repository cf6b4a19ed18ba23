/* Fixture: a descriptor with an empty name. */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "",
};
