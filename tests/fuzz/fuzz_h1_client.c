/* fuzz_h1_client.c — libFuzzer target for the HTTP/1.1 response parser and
 * body decoder (core/http1/h1_client.c), as a proxy reads an upstream.
 *
 * The input is a response: its head up to the first CRLFCRLF goes to the
 * parser (in an exact-size buffer, so ASan catches a read past it); an
 * accepted head must be self-consistent (framing a function of status and
 * fields, no field name or value with CR, LF or NUL). The rest is decoded
 * whole and byte by byte: both must end the same way with the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twister/upstream.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct {
    int end; /* AGAIN, DONE or ERROR */
    size_t used;
    char *out;
    size_t out_len;
} run_t;

static void decode(tw_pool_t *pool, const tw_http_response_t *r, const uint8_t *in, size_t len,
                   size_t step, run_t *run)
{
    tw_http_decoder_t *d = tw_http_decoder_new(pool, r);
    CHECK(d);
    run->out = malloc(len + 1);
    run->out_len = 0;
    run->end = TW_HTTP_DECODE_AGAIN;
    run->used = 0;
    size_t pos = 0;
    while (pos < len && run->end == TW_HTTP_DECODE_AGAIN) {
        size_t n = len - pos < step ? len - pos : step;
        char *buf = malloc(n);
        memcpy(buf, in + pos, n);
        size_t off = 0;
        for (;;) {
            size_t used, plen;
            const char *piece;
            int rc = tw_http_decoder_feed(d, buf + off, n - off, &used, &piece, &plen);
            CHECK(used <= n - off);
            off += used;
            if (rc == TW_HTTP_DECODE_DATA) {
                CHECK(plen > 0 && piece >= buf && piece + plen <= buf + n);
                memcpy(run->out + run->out_len, piece, plen);
                run->out_len += plen;
                continue;
            }
            if (rc != TW_HTTP_DECODE_AGAIN)
                run->end = rc;
            break;
        }
        free(buf);
        pos += off;
        if (run->end == TW_HTTP_DECODE_AGAIN)
            CHECK(off == n);
    }
    run->used = pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memmem(data, size, "\r\n\r\n", 4);
    if (!sep)
        return 0;
    size_t head_len = (size_t)(sep - data) + 4;
    char *head = malloc(head_len);
    memcpy(head, data, head_len);
    tw_pool_t *pool = tw_pool_new(0);
    tw_http_response_t r;
    bool is_head = size > 0 && (data[size - 1] & 1);
    if (tw_http_response_parse(pool, head, head_len, is_head, &r) == 0) {
        CHECK(r.status >= 100 && r.status <= 999);
        for (size_t i = 0; i < r.count; i++) {
            CHECK(r.fields[i].name.len > 0);
            CHECK(!memchr(r.fields[i].name.ptr, '\r', r.fields[i].name.len));
            CHECK(!memchr(r.fields[i].value.ptr, '\n', r.fields[i].value.len));
            CHECK(!memchr(r.fields[i].value.ptr, '\0', r.fields[i].value.len));
        }
        if (is_head || r.status == 204 || r.status == 304 || r.status < 200)
            CHECK(r.body == TW_HTTP_BODY_NONE);
        if (r.body == TW_HTTP_BODY_CLOSE)
            CHECK(!r.keep_alive);
        const uint8_t *body = data + head_len;
        size_t body_len = size - head_len;
        run_t whole, bytewise;
        decode(pool, &r, body, body_len, body_len ? body_len : 1, &whole);
        decode(pool, &r, body, body_len, 1, &bytewise);
        CHECK(whole.end == bytewise.end);
        if (whole.end == TW_HTTP_DECODE_DONE)
            CHECK(whole.used == bytewise.used);
        if (whole.end != TW_HTTP_DECODE_ERROR) {
            CHECK(whole.out_len == bytewise.out_len);
            CHECK(memcmp(whole.out, bytewise.out, whole.out_len) == 0);
        }
        if (r.body == TW_HTTP_BODY_LENGTH && whole.end == TW_HTTP_DECODE_DONE)
            CHECK(whole.out_len == r.content_length);
        free(whole.out);
        free(bytewise.out);
    }
    tw_pool_free(pool);
    free(head);
    return 0;
}
