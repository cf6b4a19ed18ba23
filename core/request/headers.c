/* headers.c — the response-header API: status, fields (validated as RFC
 * 9110 tokens and field values), and the framing headers, which are
 * interpreted rather than stored (Content-Length as the declared length,
 * "Connection: close" as the wish to close, Transfer-Encoding refused):
 * the framing on the wire is the transport's. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "request/request.h"

static const unsigned char token_chars[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

bool tw_req_valid_name(const char *name, size_t *len)
{
    size_t n = 0;
    for (; name[n]; n++)
        if (!token_chars[(unsigned char)name[n]])
            return false;
    *len = n;
    return n > 0;
}

/* Bytes a field value may hold: none of the control characters but HTAB
 * (so no CR, LF or NUL: the NUL ends the scan). */
#define VALUE_ROW16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char value_chars[256] = {
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,              /* 0x00: HTAB only */
    VALUE_ROW16(0), /* 0x10 */
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0, /* 0x70: DEL */
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
};
#undef VALUE_ROW16

bool tw_req_valid_value(const char *value, size_t *len)
{
    size_t n = 0;
    while (value_chars[(unsigned char)value[n]])
        n++;
    if (value[n] != '\0')
        return false;
    *len = n;
    return true;
}

int tw_req_header_add(tw_request_t *r, const char *name, size_t nlen, const char *value,
                      size_t vlen)
{
    if (r->resp_count == r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap * 2 : 8;
        tw_header_t *h = tw_pool_alloc(r->pool, cap * sizeof *h);
        if (!h) {
            errno = ENOMEM;
            return -1;
        }
        if (r->resp_count)
            memcpy(h, r->resp_headers, r->resp_count * sizeof *h);
        r->resp_headers = h;
        r->resp_cap = cap;
    }
    char *n = tw_pool_strndup(r->pool, name, nlen);
    char *v = tw_pool_strndup(r->pool, value, vlen);
    if (!n || !v) {
        errno = ENOMEM;
        return -1;
    }
    r->resp_headers[r->resp_count++] = (tw_header_t){{n, nlen}, {v, vlen}};
    return 0;
}

int tw_req_header_remove(tw_request_t *r, const char *name, size_t nlen)
{
    size_t out = 0;
    int removed = 0;
    for (size_t i = 0; i < r->resp_count; i++) {
        if (tw_req_name_is(&r->resp_headers[i].name, name, nlen))
            removed++;
        else
            r->resp_headers[out++] = r->resp_headers[i];
    }
    r->resp_count = out;
    return removed;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* The framing headers are the core's: Content-Length sets the declared
 * length, Transfer-Encoding is refused, "Connection: close" asks for the
 * connection to close after this response. Returns 1 if name was one of
 * them (handled, or -1 on error), 0 otherwise. */
static int framing_header(tw_request_t *r, const char *name, size_t nlen, const char *value,
                          size_t vlen)
{
    tw_str_t n = {name, nlen};
    if (tw_req_name_is(&n, "Content-Length", 14)) {
        uint64_t v;
        if (!parse_u64(value, vlen, &v) || v > INT64_MAX) {
            errno = EINVAL;
            return -1;
        }
        r->resp_length = (int64_t)v;
        return 1;
    }
    if (tw_req_name_is(&n, "Transfer-Encoding", 17)) {
        errno = EINVAL;
        return -1;
    }
    if (tw_req_name_is(&n, "Connection", 10)) {
        if (vlen == 5 && strncasecmp(value, "close", 5) == 0)
            r->close = true;
        else if (!(vlen == 10 && strncasecmp(value, "keep-alive", 10) == 0)) {
            errno = EINVAL;
            return -1;
        }
        return 1;
    }
    return 0;
}

static int header_op(tw_request_t *r, const char *fn, const char *name, const char *value,
                     bool replace)
{
    if (!tw_req_api_allowed(r, fn, TW_API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    size_t nlen, vlen;
    if (!name || !value || !tw_req_valid_name(name, &nlen) || !tw_req_valid_value(value, &vlen)) {
        errno = EINVAL;
        return -1;
    }
    int f = framing_header(r, name, nlen, value, vlen);
    if (f != 0)
        return f < 0 ? -1 : 0;
    if (replace)
        tw_req_header_remove(r, name, nlen);
    return tw_req_header_add(r, name, nlen, value, vlen);
}

int tw_response_set_status(tw_request_t *r, int status)
{
    if (!tw_req_api_allowed(r, "tw_response_set_status", TW_API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    /* 1xx responses are the core's (100 Continue); a handler's final
     * answer is 200..599. */
    if (status < 200 || status > 599) {
        errno = EINVAL;
        return -1;
    }
    r->status = status;
    return 0;
}

int tw_response_status(const tw_request_t *r)
{
    return r->status;
}

int tw_response_set_header(tw_request_t *r, const char *name, const char *value)
{
    return header_op(r, "tw_response_set_header", name, value, true);
}

int tw_response_add_header(tw_request_t *r, const char *name, const char *value)
{
    return header_op(r, "tw_response_add_header", name, value, false);
}

int tw_response_remove_header(tw_request_t *r, const char *name)
{
    if (!tw_req_api_allowed(r, "tw_response_remove_header", TW_API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    size_t nlen;
    if (!name || !tw_req_valid_name(name, &nlen))
        return 0;
    tw_str_t n = {name, nlen};
    if (tw_req_name_is(&n, "Content-Length", 14)) {
        int had = r->resp_length >= 0;
        r->resp_length = -1;
        return had;
    }
    if (tw_req_name_is(&n, "Connection", 10)) {
        int had = r->close;
        r->close = false;
        return had;
    }
    return tw_req_header_remove(r, name, nlen);
}

const char *tw_response_header(const tw_request_t *r, const char *name)
{
    size_t n = strlen(name);
    if (n == 14 && strcasecmp(name, "Content-Length") == 0) {
        if (r->resp_length < 0)
            return NULL;
        char *buf = tw_pool_alloc(r->pool, 24);
        if (!buf)
            return NULL;
        snprintf(buf, 24, "%" PRId64, r->resp_length);
        return buf;
    }
    for (size_t i = 0; i < r->resp_count; i++)
        if (tw_req_name_is(&r->resp_headers[i].name, name, n))
            return r->resp_headers[i].value.ptr;
    return NULL;
}

int tw_response_set_content_length(tw_request_t *r, uint64_t len)
{
    if (!tw_req_api_allowed(r, "tw_response_set_content_length", TW_API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    if (len > INT64_MAX) {
        errno = EINVAL;
        return -1;
    }
    r->resp_length = (int64_t)len;
    return 0;
}

bool tw_response_head_sent(const tw_request_t *r)
{
    return r->head_sent;
}
