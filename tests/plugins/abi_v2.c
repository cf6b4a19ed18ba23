/* Fixture: a plugin built against the headers of a future ABI major, whose
 * descriptor symbol carries that major in its name. */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v2 = {
    .magic = TW_MODULE_MAGIC,
    .abi_major = 2,
    .abi_minor = 0,
    .size = sizeof(tw_module_t),
    .name = "abi_v2",
};
