/* h1_client.c — the client half of HTTP/1.1 (RFC 9112): request heads
 * written with the server's head writer, response heads parsed with the
 * server's strictness, and response bodies decoded with the server's body
 * decoder plus the close-delimited case only responses have.
 *
 * A proxy passes what this accepts on to its client, so everything that
 * could make two parties disagree about where a message ends is refused:
 * bare LF and bare CR, obs-fold, whitespace before a colon, control
 * characters, Content-Length that is not all digits or differs between
 * fields, and Transfer-Encoding together with Content-Length. */
#include <errno.h>
#include <string.h>

#include "http1/h1_body.h"
#include "http1/h1_out.h"
#include "twister/upstream.h"

#define RESPONSE_FIELDS_MAX 100

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool name_is(tw_str_t n, const char *name)
{
    return n.len == strlen(name) && strncasecmp(n.ptr, name, n.len) == 0;
}

/* True if the comma-separated list v has an element equal to token. */
static bool list_has(tw_str_t v, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t' || v.ptr[i] == ','))
            i++;
        size_t start = i;
        while (i < v.len && v.ptr[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v.ptr[end - 1] == ' ' || v.ptr[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(v.ptr + start, token, tlen) == 0)
            return true;
    }
    return false;
}

/* The last element of a comma-separated list. */
static tw_str_t list_last(tw_str_t v)
{
    size_t end = v.len;
    while (end > 0 && (v.ptr[end - 1] == ' ' || v.ptr[end - 1] == '\t' || v.ptr[end - 1] == ','))
        end--;
    size_t start = end;
    while (start > 0 && v.ptr[start - 1] != ',')
        start--;
    while (start < end && (v.ptr[start] == ' ' || v.ptr[start] == '\t'))
        start++;
    return (tw_str_t){v.ptr + start, end - start};
}

static int fail(tw_http_response_t *out, const char *why)
{
    out->error = why;
    errno = EPROTO;
    return -1;
}

int tw_http_response_parse(tw_pool_t *pool, const char *data, size_t len, bool head_request,
                           tw_http_response_t *out)
{
    memset(out, 0, sizeof *out);
    if (len < 4 || memcmp(data + len - 4, "\r\n\r\n", 4) != 0)
        return fail(out, "incomplete head");
    char *copy = tw_pool_strndup(pool, data, len);
    tw_header_t *fields = tw_pool_alloc(pool, RESPONSE_FIELDS_MAX * sizeof *fields);
    if (!copy || !fields) {
        errno = ENOMEM;
        return -1;
    }
    const char *p = copy, *end = copy + len - 2; /* the final CRLF */
    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
    if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return fail(out, "bad status line");
    out->version = p[7] == '1' ? 11 : 10;
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return fail(out, "bad status code");
    out->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (out->status < 100)
        return fail(out, "bad status code");
    p += 12;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol[1] != '\n')
        return fail(out, "bare CR or LF");
    if (p < eol) {
        if (*p != ' ')
            return fail(out, "bad status line");
        p++;
    }
    for (const char *q = p; q < eol; q++)
        if (!is_value_char((unsigned char)*q))
            return fail(out, "control character in the reason phrase");
    out->reason = (tw_str_t){p, (size_t)(eol - p)};
    p = eol + 2;

    int cl_count = 0;
    bool has_te = false, te_chunked = false, conn_close = false, conn_keep_alive = false;
    uint64_t cl = 0;
    while (p < end) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol[1] != '\n')
            return fail(out, "bare CR or LF");
        if (memchr(p, '\n', (size_t)(eol - p)))
            return fail(out, "bare LF");
        if (out->count == RESPONSE_FIELDS_MAX)
            return fail(out, "too many header fields");
        const char *colon = p;
        while (colon < eol && is_tchar((unsigned char)*colon))
            colon++;
        if (colon == p || colon == eol || *colon != ':')
            return fail(out, *p == ' ' || *p == '\t' ? "obs-fold" : "bad field name");
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++)
            if (!is_value_char((unsigned char)*q))
                return fail(out, "control character in a field value");
        tw_header_t *h = &fields[out->count++];
        h->name = (tw_str_t){p, (size_t)(colon - p)};
        h->value = (tw_str_t){v, (size_t)(ve - v)};
        copy[colon - copy] = '\0'; /* names become C strings for the caller */
        copy[eol - copy] = '\0';   /* and so do values (ve <= eol) */
        if (ve < eol)
            copy[ve - copy] = '\0';
        if (name_is(h->name, "Content-Length")) {
            if (h->value.len == 0 || h->value.len > 19)
                return fail(out, "bad Content-Length");
            uint64_t n = 0;
            for (size_t i = 0; i < h->value.len; i++) {
                char c = h->value.ptr[i];
                if (c < '0' || c > '9')
                    return fail(out, "bad Content-Length");
                n = n * 10 + (uint64_t)(c - '0');
            }
            if (cl_count++ && n != cl)
                return fail(out, "conflicting Content-Length");
            cl = n;
        } else if (name_is(h->name, "Transfer-Encoding")) {
            has_te = true;
            tw_str_t last = list_last(h->value);
            te_chunked = last.len == 7 && strncasecmp(last.ptr, "chunked", 7) == 0;
        } else if (name_is(h->name, "Connection")) {
            conn_close |= list_has(h->value, "close");
            conn_keep_alive |= list_has(h->value, "keep-alive");
        }
        p = eol + 2;
    }
    out->fields = fields;
    if (has_te && cl_count)
        return fail(out, "Transfer-Encoding with Content-Length");
    out->keep_alive = out->version == 11 ? !conn_close : conn_keep_alive && !conn_close;
    if (head_request || out->status < 200 || out->status == 204 || out->status == 304) {
        out->body = TW_HTTP_BODY_NONE;
        out->content_length = cl; /* what a GET would have carried */
    } else if (has_te) {
        /* RFC 9112 6.3: a final coding other than chunked runs to the close. */
        out->body = te_chunked ? TW_HTTP_BODY_CHUNKED : TW_HTTP_BODY_CLOSE;
    } else if (cl_count) {
        out->body = cl ? TW_HTTP_BODY_LENGTH : TW_HTTP_BODY_NONE;
        out->content_length = cl;
    } else {
        out->body = TW_HTTP_BODY_CLOSE;
    }
    if (out->body == TW_HTTP_BODY_CLOSE)
        out->keep_alive = false;
    return 0;
}

/* ---- bodies ------------------------------------------------------------- */

struct tw_http_decoder {
    bool close_delimited;
    bool done;
    const char *error;
    tw_h1_body_decoder_t body;
};

tw_http_decoder_t *tw_http_decoder_new(tw_pool_t *pool, const tw_http_response_t *resp)
{
    tw_http_decoder_t *d = tw_pool_calloc(pool, sizeof *d);
    if (!d)
        return NULL;
    switch (resp->body) {
    case TW_HTTP_BODY_LENGTH:
        tw_h1_body_init(&d->body, TW_BODY_LENGTH, resp->content_length, UINT64_MAX);
        break;
    case TW_HTTP_BODY_CHUNKED:
        tw_h1_body_init(&d->body, TW_BODY_CHUNKED, 0, UINT64_MAX);
        break;
    case TW_HTTP_BODY_CLOSE:
        d->close_delimited = true;
        break;
    case TW_HTTP_BODY_NONE:
        d->done = true;
        break;
    }
    return d;
}

tw_http_decode_result_t tw_http_decoder_feed(tw_http_decoder_t *d, const char *in, size_t len,
                                             size_t *consumed, const char **piece,
                                             size_t *piece_len)
{
    *consumed = 0;
    *piece = NULL;
    *piece_len = 0;
    if (d->error)
        return TW_HTTP_DECODE_ERROR;
    if (d->done)
        return TW_HTTP_DECODE_DONE;
    if (d->close_delimited) {
        if (len == 0)
            return TW_HTTP_DECODE_AGAIN;
        *consumed = len;
        *piece = in;
        *piece_len = len;
        return TW_HTTP_DECODE_DATA;
    }
    switch (tw_h1_body_feed(&d->body, in, len, consumed, piece, piece_len)) {
    case TW_H1_BODY_AGAIN:
        return TW_HTTP_DECODE_AGAIN;
    case TW_H1_BODY_DATA:
        return TW_HTTP_DECODE_DATA;
    case TW_H1_BODY_DONE:
        d->done = true;
        return TW_HTTP_DECODE_DONE;
    case TW_H1_BODY_ERROR:
        d->error = tw_h1_body_error(&d->body);
        return TW_HTTP_DECODE_ERROR;
    case TW_H1_BODY_TOO_LARGE:
        d->error = "chunk size too large";
        return TW_HTTP_DECODE_ERROR;
    }
    d->error = "decoder state";
    return TW_HTTP_DECODE_ERROR;
}

tw_http_decode_result_t tw_http_decoder_eof(tw_http_decoder_t *d)
{
    if (d->error)
        return TW_HTTP_DECODE_ERROR;
    if (d->done || d->close_delimited) {
        d->done = true;
        return TW_HTTP_DECODE_DONE;
    }
    d->error = "connection closed before the end of the body";
    return TW_HTTP_DECODE_ERROR;
}

const char *tw_http_decoder_error(const tw_http_decoder_t *d)
{
    return d->error ? d->error : "";
}

/* ---- request heads ------------------------------------------------------ */

char *tw_http_request_head(tw_pool_t *pool, tw_str_t method, tw_str_t target,
                           const tw_header_t *fields, size_t count, size_t *len)
{
    bool ok = method.len > 0 && target.len > 0;
    for (size_t i = 0; ok && i < method.len; i++)
        ok = is_tchar((unsigned char)method.ptr[i]);
    for (size_t i = 0; ok && i < target.len; i++)
        ok = (unsigned char)target.ptr[i] > 0x20 && target.ptr[i] != 0x7f;
    for (size_t f = 0; ok && f < count; f++) {
        ok = fields[f].name.len > 0;
        for (size_t i = 0; ok && i < fields[f].name.len; i++)
            ok = is_tchar((unsigned char)fields[f].name.ptr[i]);
        for (size_t i = 0; ok && i < fields[f].value.len; i++)
            ok = is_value_char((unsigned char)fields[f].value.ptr[i]);
    }
    if (!ok) {
        errno = EINVAL;
        return NULL;
    }
    size_t line_len = method.len + 1 + target.len + 9;
    char *line = tw_pool_alloc(pool, line_len);
    if (!line) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(line, method.ptr, method.len);
    line[method.len] = ' ';
    memcpy(line + method.len + 1, target.ptr, target.len);
    memcpy(line + method.len + 1 + target.len, " HTTP/1.1", 9);
    tw_h1_head_t h = {.start_line = line, .start_len = line_len, .fields = fields, .count = count};
    char *buf = tw_pool_alloc(pool, tw_h1_head_size(&h));
    if (!buf) {
        errno = ENOMEM;
        return NULL;
    }
    *len = tw_h1_head_write(&h, buf);
    return buf;
}

size_t tw_http_chunk_line(size_t len, char *buf)
{
    return tw_h1_chunk_line(len, buf);
}
