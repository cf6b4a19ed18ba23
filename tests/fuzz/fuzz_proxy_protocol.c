/* fuzz_proxy_protocol.c — libFuzzer target for the PROXY protocol parser
 * (core/proxy_protocol.c). The input is parsed whole and as every prefix
 * of itself up to its first 256 bytes: a prefix of a header that parses
 * must never be refused (it waits for more), a header's length never
 * exceeds what was read, and an address is only reported for a header.
 * Each call reads an exact-size copy, so ASan catches reads past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_protocol.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tw_proxy_result_t parse_copy(const uint8_t *data, size_t size, tw_proxy_header_t *h)
{
    char *copy = malloc(size ? size : 1);
    CHECK(copy);
    memcpy(copy, data, size);
    tw_proxy_result_t rc = tw_proxy_parse(copy, size, h);
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tw_proxy_header_t whole;
    tw_proxy_result_t rc = parse_copy(data, size, &whole);
    if (rc == TW_PROXY_DONE) {
        CHECK(whole.length > 0 && whole.length <= size);
        CHECK(!whole.has_source || whole.source_len > 0);
    } else {
        CHECK(!whole.has_source);
    }
    size_t limit = size < 256 ? size : 256;
    for (size_t i = 0; i < limit; i++) {
        tw_proxy_header_t h;
        tw_proxy_result_t r = parse_copy(data, i, &h);
        if (rc == TW_PROXY_DONE && i < whole.length)
            CHECK(r == TW_PROXY_AGAIN);
        if (rc == TW_PROXY_DONE && i >= whole.length)
            CHECK(r == TW_PROXY_DONE && h.length == whole.length);
    }
    return 0;
}
