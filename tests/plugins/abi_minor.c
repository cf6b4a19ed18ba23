/* Fixture: built against newer headers of the same major (they may declare
 * functions this server lacks). */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    .magic = TW_MODULE_MAGIC,
    .abi_major = TW_ABI_MAJOR,
    .abi_minor = TW_ABI_MINOR + 1,
    .size = sizeof(tw_module_t),
    .name = "abi_minor",
};
