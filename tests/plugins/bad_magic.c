/* Fixture: a descriptor with the wrong magic number (a struct that is not
 * a tw_module_t at all, or memory corruption). */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    .magic = 0x12345678u,
    .abi_major = TW_ABI_MAJOR,
    .abi_minor = TW_ABI_MINOR,
    .size = sizeof(tw_module_t),
    .name = "bad_magic",
};
