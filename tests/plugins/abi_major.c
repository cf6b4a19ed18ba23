/* Fixture: exports the right symbol but claims another ABI major (a
 * descriptor filled in by hand instead of with TW_MODULE_HEADER). */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    .magic = TW_MODULE_MAGIC,
    .abi_major = TW_ABI_MAJOR + 1,
    .abi_minor = 0,
    .size = sizeof(tw_module_t),
    .name = "abi_major",
};
