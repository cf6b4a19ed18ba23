/* Fixture: a descriptor shorter than the fields the server reads (a
 * hand-made struct, or headers edited out of step with the ABI number). */
#include <stddef.h>
#include <stdint.h>

#include <twister/twister.h>

struct short_module {
    uint32_t magic;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size;
    const char *name;
};

TW_MODULE_EXPORT const struct short_module twister_module_v1 = {
    .magic = TW_MODULE_MAGIC,
    .abi_major = TW_ABI_MAJOR,
    .abi_minor = TW_ABI_MINOR,
    .size = sizeof(struct short_module),
    .name = "short_size",
};
