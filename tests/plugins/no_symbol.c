/* Fixture: a valid descriptor under the wrong name (the symbol must be
 * TW_MODULE_SYMBOL, "twister_module_v1"). */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module = {
    TW_MODULE_HEADER,
    .name = "no_symbol",
};
