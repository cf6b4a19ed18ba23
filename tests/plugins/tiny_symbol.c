/* Fixture: the descriptor symbol is not a descriptor at all. */
#include <twister/twister.h>

TW_MODULE_EXPORT const int twister_module_v1 = 1;
