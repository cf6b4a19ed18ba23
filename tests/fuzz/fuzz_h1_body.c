/* fuzz_h1_body.c — libFuzzer target for the HTTP/1.1 body decoder
 * (core/http1/h1_body.c).
 *
 * The first input byte picks the framing (Content-Length or chunked) and
 * the limit; the rest is the body. It is decoded whole and split at
 * several points (byte by byte for short inputs): every way must end the
 * same (complete, incomplete or refused), a complete body must decode to
 * the same bytes and end at the same offset, and the decoder must never
 * hand out more than its limit. (A refusal may come earlier in one split
 * than in another — a size line can pass the limit before it turns out
 * malformed — so only its class is compared.) Every call gets a buffer of
 * exactly the bytes it may read, so ASan catches a read past them. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1/h1_body.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_INPUT (64 * 1024)

typedef enum {
    END_MORE,
    END_DONE,
    END_REFUSED
} end_t;

typedef struct {
    end_t end;
    size_t used; /* input bytes the body took (END_DONE) */
    char *out;
    size_t out_len;
} run_t;

/* Feeds the pieces [cuts[i-1], cuts[i]) of data, each in its own buffer. */
static void run(run_t *r, tw_body_kind_t kind, uint64_t length, uint64_t limit, const uint8_t *data,
                size_t n, const size_t *cuts, size_t ncuts)
{
    tw_h1_body_decoder_t d;
    tw_h1_body_init(&d, kind, length, limit);
    r->end = END_MORE;
    r->used = 0;
    r->out_len = 0;
    size_t start = 0;
    for (size_t c = 0; c <= ncuts && r->end == END_MORE; c++) {
        size_t stop = c < ncuts ? cuts[c] : n;
        if (stop < start)
            continue;
        size_t len = stop - start;
        char *buf = malloc(len ? len : 1);
        CHECK(buf);
        memcpy(buf, data + start, len);
        size_t at = 0;
        for (;;) {
            size_t used;
            const char *piece;
            size_t plen;
            tw_h1_body_result_t rc = tw_h1_body_feed(&d, buf + at, len - at, &used, &piece, &plen);
            CHECK(used <= len - at);
            if (rc == TW_H1_BODY_DATA) {
                CHECK(plen > 0 && piece >= buf + at && piece + plen <= buf + at + used);
                memcpy(r->out + r->out_len, piece, plen);
                r->out_len += plen;
                at += used;
                continue;
            }
            at += used;
            if (rc == TW_H1_BODY_DONE) {
                r->end = END_DONE;
                r->used = start + at;
            } else if (rc != TW_H1_BODY_AGAIN) {
                r->end = END_REFUSED;
            } else {
                CHECK(at == len);
            }
            break;
        }
        free(buf);
        CHECK(d.received == r->out_len && d.received <= limit);
        start = stop;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    static const uint64_t limits[4] = {0, 10, 1000, UINT64_MAX};
    tw_body_kind_t kind = sel & 1 ? TW_BODY_CHUNKED : TW_BODY_LENGTH;
    uint64_t limit = limits[(sel >> 1) & 3];
    uint64_t length = (uint64_t)(sel >> 3) * 37; /* up to 1147 */

    run_t whole = {.out = malloc(size + 1)}, split = {.out = malloc(size + 1)};
    CHECK(whole.out && split.out);
    run(&whole, kind, length, limit, data, size, NULL, 0);

    size_t cuts[3] = {size / 3, size / 2, size - size / 4};
    size_t bytes[64];
    const size_t *sets[2] = {cuts, bytes};
    size_t counts[2] = {3, 0};
    if (size <= 64) {
        for (size_t i = 0; i < size; i++)
            bytes[i] = i + 1;
        counts[1] = size;
    }
    for (size_t s = 0; s < 2; s++) {
        if (s == 1 && !counts[1])
            continue;
        run(&split, kind, length, limit, data, size, sets[s], counts[s]);
        CHECK(split.end == whole.end);
        if (whole.end == END_DONE) {
            CHECK(split.used == whole.used);
            CHECK(split.out_len == whole.out_len);
            CHECK(memcmp(split.out, whole.out, whole.out_len) == 0);
        } else if (whole.end == END_MORE) {
            CHECK(split.out_len == whole.out_len);
        }
    }
    free(whole.out);
    free(split.out);
    return 0;
}
