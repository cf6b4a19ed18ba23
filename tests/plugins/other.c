/* A second valid module, used to overwrite good.so on disk: a snapshot
 * taken before must still load "good", one taken after loads "other". */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "other",
    .version = "2.0.0",
};
