/* Fixture: dup_a.so and dup_b.so are both named "dup"; the second one
 * loaded must be refused. */
#include <twister/twister.h>

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "dup",
    .version = "a",
};
