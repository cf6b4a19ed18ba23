/* fuzz_http_parser.c — libFuzzer target for core/http_parser.c.
 *
 * For each input:
 *   - the head parser, with the default limits and with small ones, on the
 *     whole input and split at several points (two- and three-way, and byte
 *     by byte for short inputs): every way must give the same result, and a
 *     finished head must satisfy the parser's invariants;
 *   - the chunked decoder, on the body after a chunked head and on the raw
 *     input, whole and split: same result, same decoded bytes;
 *   - tw_http_normalize_path on the parsed path and on the raw input,
 *     checked against a literal RFC 3986 5.2.4 implementation.
 * Every call gets a buffer of exactly the bytes it may read, so ASan catches
 * a read past them. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_INPUT (64 * 1024)
#define NFIELDS 128

typedef struct {
    tw_http_parser_t p;
    tw_http_field_t fields[NFIELDS];
    tw_parse_result_t r;
} head_run_t;

static char *copy_of(const uint8_t *data, size_t n)
{
    char *b = malloc(n ? n : 1);
    CHECK(b);
    if (n)
        memcpy(b, data, n);
    return b;
}

/* Parses successive prefixes ending at cuts[0..ncuts), then the whole. */
static void parse_cuts(head_run_t *h, const tw_http_limits_t *lim, const uint8_t *data, size_t n,
                       const size_t *cuts, size_t ncuts)
{
    tw_http_parser_init(&h->p, lim, h->fields, NFIELDS);
    h->r = TW_PARSE_AGAIN;
    for (size_t k = 0; k <= ncuts && h->r == TW_PARSE_AGAIN; k++) {
        size_t m = k < ncuts && cuts[k] < n ? cuts[k] : n;
        char *b = copy_of(data, m);
        h->r = tw_http_parse_head(&h->p, b, m);
        free(b);
    }
}

static bool span_eq(tw_span_t a, tw_span_t b)
{
    return a.off == b.off && a.len == b.len;
}

static void same_head(const head_run_t *a, const head_run_t *b)
{
    CHECK(a->r == b->r);
    if (a->r == TW_PARSE_ERROR) {
        CHECK(a->p.status == b->p.status);
        CHECK(a->p.pos == b->p.pos);
        return;
    }
    if (a->r != TW_PARSE_DONE)
        return;
    CHECK(span_eq(a->p.method, b->p.method) && span_eq(a->p.target, b->p.target));
    CHECK(span_eq(a->p.path, b->p.path) && span_eq(a->p.query, b->p.query));
    CHECK(span_eq(a->p.host, b->p.host) && span_eq(a->p.host_name, b->p.host_name));
    CHECK(a->p.port == b->p.port && a->p.target_form == b->p.target_form);
    CHECK(a->p.version == b->p.version && a->p.body_kind == b->p.body_kind);
    CHECK(a->p.content_length == b->p.content_length && a->p.keep_alive == b->p.keep_alive);
    CHECK(a->p.expect_continue == b->p.expect_continue && a->p.head_len == b->p.head_len);
    CHECK(a->p.field_count == b->p.field_count);
    CHECK(memcmp(a->fields, b->fields, a->p.field_count * sizeof(tw_http_field_t)) == 0);
}

static bool in_head(tw_span_t s, size_t head_len)
{
    return (size_t)s.off + s.len <= head_len;
}

/* What a finished head must satisfy. */
static void head_invariants(const head_run_t *h, const uint8_t *data, size_t n)
{
    const tw_http_parser_t *p = &h->p;
    if (h->r == TW_PARSE_ERROR) {
        CHECK(p->status == 400 || p->status == 414 || p->status == 417 || p->status == 431 ||
              p->status == 501 || p->status == 505);
        CHECK(p->error != NULL && !p->keep_alive);
        return;
    }
    if (h->r != TW_PARSE_DONE)
        return;
    CHECK(p->head_len >= 18 && p->head_len <= n);
    CHECK(data[p->head_len - 1] == '\n' && data[p->head_len - 2] == '\r');
    CHECK(data[p->head_len - 3] == '\n' && data[p->head_len - 4] == '\r');
    CHECK(p->version == 10 || p->version == 11);
    CHECK(p->method.len > 0 && p->target.len > 0);
    CHECK(in_head(p->method, p->head_len) && in_head(p->target, p->head_len));
    CHECK(in_head(p->path, p->head_len) && in_head(p->query, p->head_len));
    CHECK(in_head(p->host, p->head_len) && in_head(p->host_name, p->head_len));
    CHECK(p->host_name.len <= p->host.len);
    CHECK(p->port >= -1 && p->port <= 65535);
    CHECK(p->field_count <= NFIELDS);
    for (size_t i = 0; i < p->target.len; i++) {
        uint8_t c = data[p->target.off + i];
        CHECK(c > 0x20 && c < 0x7f && c != '#');
    }
    switch (p->target_form) {
    case TW_TARGET_ORIGIN:
        CHECK(data[p->path.off] == '/' && p->path.len > 0);
        break;
    case TW_TARGET_ABSOLUTE:
        CHECK(data[p->path.off] == '/' && p->path.len > 0 && p->host.len > 0);
        break;
    case TW_TARGET_ASTERISK:
        CHECK(p->target.len == 1 && data[p->target.off] == '*');
        break;
    case TW_TARGET_AUTHORITY:
        CHECK(p->path.len == 0 && p->port >= 0);
        break;
    default:
        CHECK(0);
    }
    for (size_t i = 0; i < p->field_count; i++) {
        const tw_http_field_t *f = &h->fields[i];
        CHECK(f->name.len > 0 && in_head(f->name, p->head_len) && in_head(f->value, p->head_len));
        CHECK(data[f->name.off + f->name.len] == ':');
        for (size_t k = 0; k < f->value.len; k++) {
            uint8_t c = data[f->value.off + k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (f->value.len) {
            uint8_t a = data[f->value.off], z = data[f->value.off + f->value.len - 1];
            CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t');
        }
    }
    if (p->body_kind == TW_BODY_CHUNKED)
        CHECK(p->version == 11 && p->content_length == 0);
    CHECK(p->content_length <= ((uint64_t)1 << 62));
}

/* ---- chunked ----------------------------------------------------------------- */

typedef struct {
    tw_chunk_result_t r;
    size_t at; /* absolute offset where it stopped (error or done) */
    size_t out_len;
    uint8_t *out;
} chunk_run_t;

static void decode_cuts(chunk_run_t *c, const uint8_t *data, size_t n, const size_t *cuts,
                        size_t ncuts, size_t max_line, size_t max_trailers)
{
    tw_chunked_decoder_t d;
    tw_chunked_init(&d);
    if (max_line)
        d.max_line = max_line;
    if (max_trailers)
        d.max_trailers = max_trailers;
    c->out_len = 0;
    c->r = TW_CHUNK_AGAIN;
    c->at = n;
    size_t start = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        CHECK(end >= start);
        size_t m = end - start, at = 0;
        char *b = copy_of(data + start, m);
        for (;;) {
            size_t used = SIZE_MAX, off = SIZE_MAX, len = SIZE_MAX;
            tw_chunk_result_t r = tw_chunked_decode(&d, b + at, m - at, &used, &off, &len);
            CHECK(used <= m - at);
            if (r == TW_CHUNK_DATA) {
                CHECK(len > 0 && off + len == used);
                memcpy(c->out + c->out_len, b + at + off, len);
                c->out_len += len;
                at += used;
                continue;
            }
            if (r == TW_CHUNK_AGAIN) {
                CHECK(used == m - at);
                break;
            }
            CHECK(r == TW_CHUNK_DONE || (r == TW_CHUNK_ERROR && d.error));
            c->r = r;
            c->at = start + at + used;
            free(b);
            return;
        }
        free(b);
        start = end;
    }
}

static void same_chunked(const chunk_run_t *a, const chunk_run_t *b)
{
    /* every body byte before the stop is delivered, however it was split */
    CHECK(a->r == b->r && a->at == b->at);
    CHECK(a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0);
}

static void fuzz_chunked(const uint8_t *data, size_t n, uint64_t seed, size_t max_line,
                         size_t max_trailers)
{
    chunk_run_t whole = {.out = malloc(n + 1)}, split = {.out = malloc(n + 1)};
    CHECK(whole.out && split.out);
    decode_cuts(&whole, data, n, NULL, 0, max_line, max_trailers);
    CHECK(whole.out_len <= n);
    if (whole.r == TW_CHUNK_DONE)
        CHECK(whole.at >= 5 && data[whole.at - 1] == '\n' && data[whole.at - 2] == '\r');
    size_t cuts[3] = {n / 2, n ? (size_t)(seed % (n + 1)) : 0, n ? n - 1 : 0};
    for (size_t k = 0; k < 3; k++) {
        decode_cuts(&split, data, n, &cuts[k], 1, max_line, max_trailers);
        same_chunked(&whole, &split);
    }
    if (n <= 2048) {
        size_t *all = malloc((n + 1) * sizeof(*all));
        CHECK(all);
        for (size_t k = 0; k < n; k++)
            all[k] = k + 1;
        decode_cuts(&split, data, n, all, n, max_line, max_trailers);
        same_chunked(&whole, &split);
        free(all);
    }
    free(whole.out);
    free(split.out);
}

/* ---- path normalisation ------------------------------------------------------ */

static int hexv(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 5.2.4 as written (input and output buffers), after decoding
 * and merging repeated slashes;
 * returns -1 where the output would climb above the root. */
static long oracle_normalize(const uint8_t *path, size_t len, char *out)
{
    if (len == 0 || path[0] != '/')
        return -1;
    char *in = malloc(len + 1);
    CHECK(in);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = path[i];
        if (c == '%') {
            if (i + 2 >= len || hexv(path[i + 1]) < 0 || hexv(path[i + 2]) < 0) {
                free(in);
                return -1;
            }
            c = hexv(path[i + 1]) * 16 + hexv(path[i + 2]);
            if (c == 0) {
                free(in);
                return -1;
            }
            i += 2;
        }
        if (c == '/' && n > 0 && in[n - 1] == '/')
            continue; /* repeated slashes are merged first (nginx's merge_slashes) */
        in[n++] = (char)c;
    }
    size_t r = 0, w = 0;
    while (r < n) {
        size_t rest = n - r;
        const char *s = in + r;
        if (rest >= 3 && memcmp(s, "/./", 3) == 0) {
            r += 2;
        } else if (rest == 2 && memcmp(s, "/.", 2) == 0) {
            in[++r] = '/'; /* "/." becomes "/" */
        } else if ((rest >= 4 && memcmp(s, "/../", 4) == 0) ||
                   (rest == 3 && memcmp(s, "/..", 3) == 0)) {
            if (w == 0) {
                free(in);
                return -1; /* nothing to remove: climbing above the root */
            }
            while (w > 0 && out[--w] != '/')
                ;
            if (rest >= 4) {
                r += 3; /* "/../" becomes "/" */
            } else {
                r += 2; /* "/.." becomes "/" */
                in[r] = '/';
            }
        } else {
            size_t e = r + 1;
            while (e < n && in[e] != '/')
                e++;
            memcpy(out + w, in + r, e - r);
            w += e - r;
            r = e;
        }
    }
    free(in);
    return (long)w;
}

static void fuzz_normalize(const uint8_t *path, size_t len)
{
    char *in = malloc(len + 1), *out = malloc(len + 1), *want = malloc(len + 1);
    CHECK(in && out && want);
    memcpy(in, path, len); /* len + 1: in place, the NUL needs room too */
    size_t out_len = SIZE_MAX;
    int rc = tw_http_normalize_path(in, len, out, &out_len);
    long w = oracle_normalize(path, len, want);
    if (w < 0) {
        CHECK(rc == 400);
    } else {
        CHECK(rc == 0);
        CHECK(out_len == (size_t)w && memcmp(out, want, out_len) == 0 && out[out_len] == '\0');
        CHECK(out_len >= 1 && out[0] == '/');
        /* in place gives the same */
        size_t ip_len = SIZE_MAX;
        CHECK(tw_http_normalize_path(in, len, in, &ip_len) == 0);
        CHECK(ip_len == out_len && memcmp(in, out, out_len) == 0);
    }
    free(in);
    free(out);
    free(want);
}

/* ---- the head ---------------------------------------------------------------- */

static void fuzz_head(const uint8_t *data, size_t n, const tw_http_limits_t *lim, uint64_t seed)
{
    static head_run_t whole, split;
    parse_cuts(&whole, lim, data, n, NULL, 0);
    head_invariants(&whole, data, n);

    size_t two[] = {1, n / 2, n ? n - 1 : 0, n ? (size_t)(seed % n) : 0};
    for (size_t k = 0; k < sizeof(two) / sizeof(two[0]); k++) {
        parse_cuts(&split, lim, data, n, &two[k], 1);
        same_head(&whole, &split);
    }
    size_t a = n ? (size_t)((seed >> 16) % n) : 0, b = n ? (size_t)((seed >> 32) % n) : 0;
    size_t three[3] = {a < b ? a : b, a < b ? a : b, a < b ? b : a};
    parse_cuts(&split, lim, data, n, three, 3);
    same_head(&whole, &split);
    if (n <= 1024) {
        size_t *all = malloc((n + 1) * sizeof(*all));
        CHECK(all);
        for (size_t k = 0; k < n; k++)
            all[k] = k + 1;
        parse_cuts(&split, lim, data, n, all, n);
        same_head(&whole, &split);
        free(all);
    }

    if (whole.r == TW_PARSE_DONE) {
        const tw_http_parser_t *p = &whole.p;
        if (p->path.len && data[p->path.off] == '/')
            fuzz_normalize(data + p->path.off, p->path.len);
        if (p->body_kind == TW_BODY_CHUNKED)
            fuzz_chunked(data + p->head_len, n - p->head_len, seed, 0, 0);
        for (size_t i = 0; i < p->field_count; i++)
            (void)tw_span_equals_nocase((const char *)data, whole.fields[i].name, "host");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ull;

    tw_http_limits_t lim;
    tw_http_limits_default(&lim);
    fuzz_head(data, size, &lim, seed);
    tw_http_limits_t small = {.request_line_max = 40, .header_size_max = 96, .headers_max = 4};
    fuzz_head(data, size, &small, seed);

    /* the raw input as a chunked body, with default and small limits */
    fuzz_chunked(data, size, seed, 0, 0);
    fuzz_chunked(data, size, seed, 16, 48);
    /* and as a path */
    if (size && data[0] == '/')
        fuzz_normalize(data, size);
    return 0;
}
