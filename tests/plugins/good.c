/* The smallest valid module: a descriptor and nothing else. It calls no
 * server function, so any process can load it. */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "good",
    .version = "1.0.0",
    .description = "a valid module with no hooks (loader test fixture)",
};
