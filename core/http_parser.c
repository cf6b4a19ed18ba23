/* http_parser.c — strict, incremental HTTP/1.1 request parser (RFC 9112),
 * the chunked transfer-coding decoder and request path normalisation.
 *
 * The head parser is a resumable state machine that walks the bytes in
 * order, once: every decision about byte i depends only on bytes 0..i, so
 * the result is the same however the input is split between calls. The
 * inner loops are tight scans over a byte-class table, bounded by the limit
 * of the section being read (request line, field lines): a limit is hit as
 * soon as a byte beyond it arrives, without waiting for the line to end.
 *
 * Errors are reported in this order:
 *   1. syntax (400), too long (414, 431), unsupported version (505): at the
 *      byte where they become certain;
 *   2. per-field checks (Host, Content-Length, Transfer-Encoding syntax):
 *      when the field line is complete (400);
 *   3. once the head is complete: missing Host, Transfer-Encoding framing
 *      (400), then unknown method (501), unknown transfer coding (501), then
 *      an unmet expectation (417).
 * So a 501 or 417 is only ever given for a head that is otherwise valid. */
#include "http_parser.h"

#include <string.h>

/* ---- byte classes ------------------------------------------------------- */

enum {
    C_TCHAR = 1,  /* token character (RFC 9110 5.6.2) */
    C_TARGET = 2, /* allowed in a request-target: VCHAR except '#' */
    C_VALUE = 4,  /* allowed in a field value: VCHAR, obs-text, SP, HTAB */
    C_HEX = 8,    /* HEXDIG */
    C_REG = 16,   /* reg-name: unreserved / sub-delims (not '%') */
    C_QDTEXT = 32 /* quoted-string text: HTAB SP 21 23-5B 5D-7E obs-text */
};

#define IS_DIGIT_(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA_(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_TCHAR_(c)                                                                               \
    (IS_DIGIT_(c) || IS_ALPHA_(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||       \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_SUBDELIM_(c)                                                                            \
    ((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||          \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define IS_UNRESERVED_(c)                                                                          \
    (IS_DIGIT_(c) || IS_ALPHA_(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~')
#define CLASS_(c)                                                                                  \
    ((IS_TCHAR_(c) ? C_TCHAR : 0) | (((c) > 0x20 && (c) < 0x7f && (c) != '#') ? C_TARGET : 0) |    \
     (((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f)) ? C_VALUE : 0) |                               \
     ((IS_DIGIT_(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F')) ? C_HEX : 0) |    \
     ((IS_UNRESERVED_(c) || IS_SUBDELIM_(c)) ? C_REG : 0) |                                        \
     (((c) == '\t' || (c) == ' ' || (c) == 0x21 || ((c) >= 0x23 && (c) <= 0x5b) ||                 \
       ((c) >= 0x5d && (c) <= 0x7e) || (c) >= 0x80)                                                \
          ? C_QDTEXT                                                                               \
          : 0))
#define R4_(b) CLASS_(b), CLASS_((b) + 1), CLASS_((b) + 2), CLASS_((b) + 3)
#define R16_(b) R4_(b), R4_((b) + 4), R4_((b) + 8), R4_((b) + 12)
#define R64_(b) R16_(b), R16_((b) + 16), R16_((b) + 32), R16_((b) + 48)

static const uint8_t byte_class[256] = {R64_(0), R64_(64), R64_(128), R64_(192)};

#define IS(c, cls) ((byte_class[(unsigned char)(c)] & (cls)) != 0)

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

static inline int hex_value(unsigned char c)
{
    if (c <= '9')
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

/* Case-insensitive comparison of s[0..n) with the lowercase literal name. */
static bool eq_nocase(const unsigned char *s, size_t n, const char *name, size_t name_len)
{
    if (n != name_len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != (unsigned char)name[i])
            return false;
    return true;
}

#define EQ_NOCASE(s, n, lit) eq_nocase((s), (n), lit, sizeof(lit) - 1)

bool tw_span_equals_nocase(const char *base, tw_span_t span, const char *name)
{
    size_t n = strlen(name);
    if (span.len != n)
        return false;
    const unsigned char *s = (const unsigned char *)base + span.off;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != lower((unsigned char)name[i]))
            return false;
    return true;
}

/* ---- limits and setup ----------------------------------------------------- */

#define DEFAULT_REQUEST_LINE_MAX (8u * 1024)
#define DEFAULT_HEADER_SIZE_MAX (32u * 1024)
#define DEFAULT_HEADERS_MAX 100u
/* Spans are 32-bit: keep every offset well inside that. */
#define LIMIT_CAP ((size_t)1 << 30)
/* Empty lines (CRLF) tolerated before the request line (RFC 9112 2.2). */
#define MAX_EMPTY_LINES 8
/* Content-Length values above this are refused (2^62). */
#define CONTENT_LENGTH_MAX ((uint64_t)1 << 62)

void tw_http_limits_default(tw_http_limits_t *limits)
{
    limits->request_line_max = DEFAULT_REQUEST_LINE_MAX;
    limits->header_size_max = DEFAULT_HEADER_SIZE_MAX;
    limits->headers_max = DEFAULT_HEADERS_MAX;
}

enum {
    S_START = 0, /* before the request line: empty lines are skipped */
    S_START_LF,  /* CR of an empty line seen */
    S_METHOD,
    S_TARGET,
    S_VERSION,    /* "HTTP/x.y", mark = its first byte */
    S_VERSION_CR, /* the CR ending the request line */
    S_RL_LF,      /* its LF */
    S_LINE_START, /* first byte of a field line or of the final empty line */
    S_NAME,       /* line_start = first byte of the name */
    S_VALUE_OWS,  /* the name is in fields[field_count] */
    S_VALUE,      /* value_start = first byte of the value */
    S_VALUE_LF,   /* the value is in fields[field_count] too */
    S_END_LF,     /* CR of the final empty line seen */
    S_DONE,
    S_ERROR,
};

enum {
    M_OTHER = 0,
    M_GET,
    M_HEAD,
    M_POST,
    M_PUT,
    M_DELETE,
    M_CONNECT,
    M_OPTIONS,
    M_TRACE,
    M_PATCH,
};

void tw_http_parser_init(tw_http_parser_t *p, const tw_http_limits_t *limits,
                         tw_http_field_t *fields, size_t capacity)
{
    memset(p, 0, sizeof(*p));
    if (limits)
        p->limits = *limits;
    else
        tw_http_limits_default(&p->limits);
    if (p->limits.request_line_max > LIMIT_CAP)
        p->limits.request_line_max = LIMIT_CAP;
    if (p->limits.header_size_max > LIMIT_CAP)
        p->limits.header_size_max = LIMIT_CAP;
    p->fields = fields;
    p->field_capacity = fields ? capacity : 0;
    p->port = -1;
    p->state = S_START;
}

static tw_parse_result_t fail(tw_http_parser_t *p, size_t pos, int status, const char *why)
{
    p->state = S_ERROR;
    p->pos = pos;
    p->status = status;
    p->error = why;
    p->keep_alive = false;
    p->expect_continue = false;
    return TW_PARSE_ERROR;
}

static tw_span_t span(size_t off, size_t len)
{
    return (tw_span_t){(uint32_t)off, (uint32_t)len};
}

static int method_id(const unsigned char *m, size_t n)
{
#define M_(lit, id)                                                                                \
    if (n == sizeof(lit) - 1 && memcmp(m, lit, sizeof(lit) - 1) == 0)                              \
        return id;
    switch (n) {
    case 3:
        M_("GET", M_GET)
        M_("PUT", M_PUT)
        break;
    case 4:
        M_("POST", M_POST)
        M_("HEAD", M_HEAD)
        break;
    case 5:
        M_("PATCH", M_PATCH)
        M_("TRACE", M_TRACE)
        break;
    case 6:
        M_("DELETE", M_DELETE)
        break;
    case 7:
        M_("OPTIONS", M_OPTIONS)
        M_("CONNECT", M_CONNECT)
        break;
    }
#undef M_
    return M_OTHER;
}

/* ---- hosts ------------------------------------------------------------------ */

/* dec-octet "." dec-octet "." dec-octet "." dec-octet, no leading zeros. */
static bool valid_ipv4(const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (int octet = 0; octet < 4; octet++) {
        if (octet > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        size_t st = i;
        unsigned v = 0;
        while (i < n && IS_DIGIT_(s[i]) && i - st < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == st || v > 255 || (s[st] == '0' && i - st > 1))
            return false;
    }
    return i == n;
}

/* IPv6address (RFC 3986 3.2.2), with an optional IPv4 tail. */
static bool valid_ipv6(const unsigned char *s, size_t n)
{
    size_t i = 0;
    unsigned groups = 0;
    bool elided = false;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        elided = true;
        i = 2;
    }
    while (i < n) {
        size_t st = i;
        while (i < n && i - st < 4 && IS(s[i], C_HEX))
            i++;
        if (i < n && s[i] == '.') {
            if (!valid_ipv4(s + st, n - st))
                return false;
            groups += 2;
            break;
        }
        if (i == st)
            return false;
        groups++;
        if (i == n)
            break;
        if (s[i] != ':')
            return false;
        i++;
        if (i < n && s[i] == ':') {
            if (elided)
                return false;
            elided = true;
            i++;
        } else if (i == n) {
            return false;
        }
    }
    return elided ? groups <= 7 : groups == 8;
}

/* "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
static bool valid_ipvfuture(const unsigned char *s, size_t n)
{
    size_t i = 1;
    while (i < n && IS(s[i], C_HEX))
        i++;
    if (i == 1 || i >= n || s[i] != '.' || i + 1 == n)
        return false;
    for (i++; i < n; i++)
        if (!IS(s[i], C_REG) && s[i] != ':')
            return false;
    return true;
}

/* uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2). The host must not be
 * empty; the port, when present, is at most 65535 (an empty port after ':'
 * is allowed, as RFC 3986 does, unless need_port). */
static bool parse_host(const unsigned char *s, size_t n, bool need_port, size_t *name_len,
                       int *port)
{
    size_t i = 0;
    if (n == 0)
        return false;
    if (s[0] == '[') {
        const unsigned char *close = memchr(s, ']', n);
        if (!close)
            return false;
        size_t in = (size_t)(close - s) - 1;
        if (in == 0)
            return false;
        if (s[1] == 'v' || s[1] == 'V') {
            if (!valid_ipvfuture(s + 1, in))
                return false;
        } else if (!valid_ipv6(s + 1, in)) {
            return false;
        }
        i = in + 2;
    } else {
        while (i < n && s[i] != ':') {
            /* ',' is a sub-delim, but no host has one and a Host "a,b"
             * reads like a list of two: refused */
            if (IS(s[i], C_REG) && s[i] != ',') {
                i++;
            } else if (s[i] == '%' && i + 2 < n && IS(s[i + 1], C_HEX) && IS(s[i + 2], C_HEX)) {
                i += 3;
            } else {
                return false;
            }
        }
        if (i == 0)
            return false;
    }
    *name_len = i;
    *port = -1;
    if (i == n)
        return !need_port;
    if (s[i] != ':')
        return false;
    i++;
    if (i == n)
        return !need_port;
    if (n - i > 5)
        return false;
    long v = 0;
    for (; i < n; i++) {
        if (!IS_DIGIT_(s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* ---- the request-target ------------------------------------------------------- */

/* Splits t[0..n) at the first '?' into path and query spans (offsets off+). */
static void split_query(tw_http_parser_t *p, const unsigned char *t, size_t n, size_t off)
{
    const unsigned char *q = memchr(t, '?', n);
    if (q) {
        size_t pl = (size_t)(q - t);
        p->path = span(off, pl);
        p->query = span(off + pl + 1, n - pl - 1);
    } else {
        p->path = span(off, n);
        p->query = span(off + n, 0);
    }
}

static tw_parse_result_t classify_target(tw_http_parser_t *p, const unsigned char *d, size_t at)
{
    size_t off = p->target.off, n = p->target.len;
    const unsigned char *t = d + off;

    if (t[0] == '/') {
        p->target_form = TW_TARGET_ORIGIN;
        split_query(p, t, n, off);
    } else if (t[0] == '*') {
        if (n != 1)
            return fail(p, at, 400, "invalid request target");
        if (p->method_id != M_OPTIONS)
            return fail(p, at, 400, "asterisk-form target with a method other than OPTIONS");
        p->target_form = TW_TARGET_ASTERISK;
        p->path = span(off, 1);
        p->query = span(off + 1, 0);
    } else if ((n >= 7 && EQ_NOCASE(t, 7, "http://")) || (n >= 8 && EQ_NOCASE(t, 8, "https://"))) {
        size_t a = (lower(t[4]) == 's') ? 8 : 7, e = a;
        while (e < n && t[e] != '/' && t[e] != '?')
            e++;
        if (memchr(t + a, '@', e - a))
            return fail(p, at, 400, "userinfo in the request target");
        size_t name_len;
        int port;
        if (!parse_host(t + a, e - a, false, &name_len, &port))
            return fail(p, at, 400, "invalid authority in the request target");
        p->target_form = TW_TARGET_ABSOLUTE;
        p->host = span(off + a, e - a);
        p->host_name = span(off + a, name_len);
        p->port = port;
        if (e < n && t[e] == '/') {
            split_query(p, t + e, n - e, off + e);
        } else {
            /* path-abempty is empty: the path is "/", the last '/' of "://" */
            p->path = span(off + a - 1, 1);
            p->query = e < n ? span(off + e + 1, n - e - 1) : span(off + n, 0);
        }
    } else if (p->method_id == M_CONNECT) {
        size_t name_len;
        int port;
        if (!parse_host(t, n, true, &name_len, &port))
            return fail(p, at, 400, "invalid authority-form target");
        p->target_form = TW_TARGET_AUTHORITY;
        p->host = span(off, n);
        p->host_name = span(off, name_len);
        p->port = port;
        p->path = span(off, 0);
        p->query = span(off, 0);
    } else {
        return fail(p, at, 400, "invalid request target");
    }
    if (p->method_id == M_CONNECT && p->target_form != TW_TARGET_AUTHORITY)
        return fail(p, at, 400, "CONNECT needs an authority-form target");
    return TW_PARSE_AGAIN;
}

/* ---- framing fields ------------------------------------------------------------- */

/* Content-Length = 1*DIGIT; a list of identical values ("5, 5") and repeated
 * identical fields fold to one value. */
static const char *content_length_field(tw_http_parser_t *p, const unsigned char *v, size_t n)
{
    size_t i = 0;
    do {
        while (i < n && is_ows(v[i]))
            i++;
        size_t st = i;
        uint64_t x = 0;
        while (i < n && IS_DIGIT_(v[i])) {
            if (x > CONTENT_LENGTH_MAX / 10)
                return "Content-Length too large";
            x = x * 10 + (uint64_t)(v[i] - '0');
            if (x > CONTENT_LENGTH_MAX)
                return "Content-Length too large";
            i++;
        }
        if (i == st)
            return "invalid Content-Length";
        while (i < n && is_ows(v[i]))
            i++;
        if (i < n && v[i] != ',')
            return "invalid Content-Length";
        if (p->content_length_count > 0 && x != p->content_length)
            return "conflicting Content-Length values";
        p->content_length = x;
        p->content_length_count++;
    } while (i++ < n);
    return NULL;
}

/* Transfer-Encoding = #transfer-coding, across repeated fields in order. No
 * empty elements, no parameters. */
static const char *transfer_encoding_field(tw_http_parser_t *p, const unsigned char *v, size_t n)
{
    size_t i = 0;
    p->has_transfer_encoding = true;
    do {
        while (i < n && is_ows(v[i]))
            i++;
        size_t st = i;
        while (i < n && IS(v[i], C_TCHAR))
            i++;
        if (i == st)
            return "empty or invalid Transfer-Encoding element";
        size_t en = i;
        while (i < n && is_ows(v[i]))
            i++;
        if (i < n && v[i] != ',')
            return "invalid Transfer-Encoding";
        if (EQ_NOCASE(v + st, en - st, "chunked")) {
            if (p->te_chunked < 255)
                p->te_chunked++;
            p->te_last_chunked = true;
        } else {
            p->te_other = true;
            p->te_last_chunked = false;
        }
    } while (i++ < n);
    return NULL;
}

/* Calls fn for each non-empty element of a comma list. */
static void list_elements(tw_http_parser_t *p, const unsigned char *v, size_t n,
                          void (*fn)(tw_http_parser_t *, const unsigned char *, size_t))
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t st = i;
        while (i < n && v[i] != ',')
            i++;
        size_t en = i;
        while (en > st && is_ows(v[en - 1]))
            en--;
        if (en > st)
            fn(p, v + st, en - st);
    }
}

static void connection_element(tw_http_parser_t *p, const unsigned char *e, size_t n)
{
    if (EQ_NOCASE(e, n, "close"))
        p->conn_close = true;
    else if (EQ_NOCASE(e, n, "keep-alive"))
        p->conn_keep_alive = true;
}

static void expect_element(tw_http_parser_t *p, const unsigned char *e, size_t n)
{
    if (EQ_NOCASE(e, n, "100-continue"))
        p->expect_continue = true;
    else
        p->expect_bad = true;
}

/* Looks at a complete field line; returns an error text for a 400. */
static const char *field_semantics(tw_http_parser_t *p, const unsigned char *d,
                                   const tw_http_field_t *f)
{
    const unsigned char *name = d + f->name.off, *v = d + f->value.off;
    size_t n = f->value.len;
    switch (f->name.len) {
    case 4:
        if (EQ_NOCASE(name, 4, "host")) {
            if (++p->host_count > 1)
                return "more than one Host field";
            if (n == 0) {
                /* An empty Host is for a target URI without an authority
                 * (RFC 9110 7.2), which an "http" URI never is: its host
                 * must not be empty (RFC 9110 4.2.1). RFC 9112 3.3 lets a
                 * server reject it or apply a default; we reject, as nginx
                 * does, rather than route it to the default server. */
                return "empty Host";
            }
            size_t name_len;
            int port;
            if (!parse_host(v, n, false, &name_len, &port))
                return "invalid Host";
            if (p->target_form != TW_TARGET_ABSOLUTE && p->target_form != TW_TARGET_AUTHORITY) {
                p->host = f->value;
                p->host_name = span(f->value.off, name_len);
                p->port = port;
            }
        }
        break;
    case 6:
        if (EQ_NOCASE(name, 6, "expect") && p->version == 11)
            list_elements(p, v, n, expect_element);
        break;
    case 10:
        if (EQ_NOCASE(name, 10, "connection"))
            list_elements(p, v, n, connection_element);
        break;
    case 14:
        if (EQ_NOCASE(name, 14, "content-length"))
            return content_length_field(p, v, n);
        break;
    case 17:
        if (EQ_NOCASE(name, 17, "transfer-encoding"))
            return transfer_encoding_field(p, v, n);
        break;
    }
    return NULL;
}

/* The head is complete: checks that need all of it. */
static tw_parse_result_t finish_head(tw_http_parser_t *p, const char *data, size_t at)
{
    if (p->version == 11 && p->host_count == 0)
        return fail(p, at, 400, "HTTP/1.1 request without Host");
    if (p->has_transfer_encoding) {
        if (p->version == 10)
            return fail(p, at, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (p->content_length_count > 0)
            return fail(p, at, 400, "both Content-Length and Transfer-Encoding");
        if (!p->te_last_chunked)
            return fail(p, at, 400, "Transfer-Encoding does not end with chunked");
        if (p->te_chunked > 1)
            return fail(p, at, 400, "chunked applied more than once");
    }
    if (p->method_id == M_OTHER &&
        !(p->method_filter &&
          p->method_filter(data + p->method.off, p->method.len, p->method_filter_arg)))
        return fail(p, at, 501, "method not implemented");
    if (p->te_other)
        return fail(p, at, 501, "transfer coding not implemented");
    if (p->expect_bad)
        return fail(p, at, 417, "unsupported expectation");

    if (p->has_transfer_encoding) {
        p->body_kind = TW_BODY_CHUNKED;
        p->content_length = 0;
    } else if (p->content_length_count > 0) {
        p->body_kind = TW_BODY_LENGTH;
    } else {
        p->body_kind = TW_BODY_NONE;
    }
    if (p->version == 11)
        p->keep_alive = !p->conn_close;
    else
        p->keep_alive = p->conn_keep_alive && !p->conn_close;
    p->head_len = at;
    p->pos = at;
    p->state = S_DONE;
    return TW_PARSE_DONE;
}

/* ---- the head ------------------------------------------------------------------- */

tw_parse_result_t tw_http_parse_head(tw_http_parser_t *p, const char *data, size_t len)
{
    const unsigned char *d = (const unsigned char *)data;
    size_t i = p->pos, e;

    if (p->state == S_DONE)
        return TW_PARSE_DONE;
    if (p->state == S_ERROR)
        return TW_PARSE_ERROR;

    while (i < len) {
        switch (p->state) {
        case S_START:
            if (d[i] == '\r') {
                p->state = S_START_LF;
                i++;
                break;
            }
            if (d[i] == '\n')
                return fail(p, i, 400, "bare LF before the request line");
            p->rl_limit = i + p->limits.request_line_max;
            p->method.off = (uint32_t)i;
            p->state = S_METHOD;
            break;

        case S_START_LF:
            if (d[i] != '\n')
                return fail(p, i, 400, "CR without LF before the request line");
            if (++p->empty_lines > MAX_EMPTY_LINES)
                return fail(p, i, 400, "too many empty lines before the request line");
            p->state = S_START;
            i++;
            break;

        case S_METHOD:
            e = len < p->rl_limit ? len : p->rl_limit;
            while (i < e && IS(d[i], C_TCHAR))
                i++;
            if (i == e) {
                if (i < len)
                    return fail(p, i, 414, "request line too long");
                goto again;
            }
            if (d[i] != ' ' || i == p->method.off)
                return fail(p, i, 400, "invalid method");
            p->method.len = (uint32_t)(i - p->method.off);
            p->method_id = (uint8_t)method_id(d + p->method.off, p->method.len);
            p->target.off = (uint32_t)++i;
            p->state = S_TARGET;
            break;

        case S_TARGET:
            e = len < p->rl_limit ? len : p->rl_limit;
            while (i < e && IS(d[i], C_TARGET))
                i++;
            if (i == e) {
                if (i < len)
                    return fail(p, i, 414, "request line too long");
                goto again;
            }
            if (d[i] != ' ') {
                if (d[i] == '#')
                    return fail(p, i, 400, "fragment in the request target");
                if (d[i] == '\r' || d[i] == '\n')
                    return fail(p, i, 400, "request line without HTTP version");
                return fail(p, i, 400, "invalid character in the request target");
            }
            if (i == p->target.off)
                return fail(p, i, 400, "empty request target");
            p->target.len = (uint32_t)(i - p->target.off);
            p->mark = ++i;
            p->state = S_VERSION;
            break;

        case S_VERSION: {
            size_t k = i - p->mark;
            if (i >= p->rl_limit)
                return fail(p, i, 414, "request line too long");
            unsigned char c = d[i];
            bool ok = k < 5 ? c == (unsigned char)"HTTP/"[k] : k == 6 ? c == '.' : IS_DIGIT_(c);
            if (!ok)
                return fail(p, i, 400, "malformed HTTP version");
            if (++i - p->mark == 8)
                p->state = S_VERSION_CR;
            break;
        }

        case S_VERSION_CR:
            if (d[i] != '\r') {
                if (i >= p->rl_limit)
                    return fail(p, i, 414, "request line too long");
                return fail(p, i, 400,
                            d[i] == '\n' ? "bare LF after the request line"
                                         : "malformed HTTP version");
            }
            p->state = S_RL_LF;
            i++;
            break;

        case S_RL_LF: {
            if (d[i] != '\n')
                return fail(p, i, 400, "CR without LF after the request line");
            unsigned major = d[p->mark + 5] - '0', minor = d[p->mark + 7] - '0';
            if (major != 1)
                return fail(p, i, 505, "HTTP version not supported");
            p->version = minor == 0 ? 10 : 11;
            if (classify_target(p, d, i) == TW_PARSE_ERROR)
                return TW_PARSE_ERROR;
            i++;
            p->hdr_start = i;
            p->hdr_limit = i + p->limits.header_size_max;
            p->state = S_LINE_START;
            break;
        }

        case S_LINE_START: {
            unsigned char c = d[i];
            if (c == '\r') {
                p->state = S_END_LF;
                i++;
                break;
            }
            if (i >= p->hdr_limit)
                return fail(p, i, 431, "header fields too large");
            if (!IS(c, C_TCHAR)) {
                if (c == '\n')
                    return fail(p, i, 400, "bare LF in the header section");
                if (is_ows(c))
                    return fail(p, i, 400, "obsolete line folding or whitespace before a field");
                if (c == ':')
                    return fail(p, i, 400, "empty field name");
                return fail(p, i, 400, "invalid character in a field name");
            }
            if (p->field_count >= p->limits.headers_max || p->field_count >= p->field_capacity)
                return fail(p, i, 431, "too many header fields");
            p->line_start = i++;
            p->state = S_NAME;
            break;
        }

        case S_NAME:
            e = len < p->hdr_limit ? len : p->hdr_limit;
            while (i < e && IS(d[i], C_TCHAR))
                i++;
            if (i == e) {
                if (i < len)
                    return fail(p, i, 431, "header fields too large");
                goto again;
            }
            if (d[i] != ':') {
                if (is_ows(d[i]))
                    return fail(p, i, 400, "whitespace between field name and colon");
                if (d[i] == '\r' || d[i] == '\n')
                    return fail(p, i, 400, "field line without a colon");
                return fail(p, i, 400, "invalid character in a field name");
            }
            p->fields[p->field_count].name = span(p->line_start, i - p->line_start);
            i++;
            p->state = S_VALUE_OWS;
            break;

        case S_VALUE_OWS:
            e = len < p->hdr_limit ? len : p->hdr_limit;
            while (i < e && is_ows(d[i]))
                i++;
            if (i == e) {
                if (i < len)
                    return fail(p, i, 431, "header fields too large");
                goto again;
            }
            p->value_start = i;
            p->state = S_VALUE;
            break;

        case S_VALUE: {
            e = len < p->hdr_limit ? len : p->hdr_limit;
            while (i < e && IS(d[i], C_VALUE))
                i++;
            if (i == e) {
                if (i < len)
                    return fail(p, i, 431, "header fields too large");
                goto again;
            }
            if (d[i] != '\r')
                return fail(p, i, 400,
                            d[i] == '\n' ? "bare LF in a field line"
                                         : "invalid character in a field value");
            size_t ve = i;
            while (ve > p->value_start && is_ows(d[ve - 1]))
                ve--;
            p->fields[p->field_count].value = span(p->value_start, ve - p->value_start);
            p->state = S_VALUE_LF;
            i++;
            break;
        }

        case S_VALUE_LF: {
            if (i >= p->hdr_limit)
                return fail(p, i, 431, "header fields too large");
            if (d[i] != '\n')
                return fail(p, i, 400, "CR without LF in a field line");
            /* name and value were stored as they ended */
            const char *why = field_semantics(p, d, &p->fields[p->field_count++]);
            if (why)
                return fail(p, i, 400, why);
            p->state = S_LINE_START;
            i++;
            break;
        }

        case S_END_LF:
            if (d[i] != '\n')
                return fail(p, i, 400, "CR without LF after the header section");
            return finish_head(p, data, i + 1);

        default:
            return fail(p, i, 400, "parser misuse");
        }
    }
again:
    p->pos = i;
    return TW_PARSE_AGAIN;
}

/* ---- path normalisation ------------------------------------------------------------ */

int tw_http_normalize_path(const char *path, size_t len, char *out, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)path;
    size_t n = 0;

    if (len == 0 || s[0] != '/')
        return 400;
    /* 1. decode %XX once */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '%') {
            if (i + 2 >= len || !IS(s[i + 1], C_HEX) || !IS(s[i + 2], C_HEX))
                return 400;
            c = (unsigned char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
            if (c == 0)
                return 400;
            i += 2;
        }
        out[n++] = (char)c;
    }
    /* 2. remove dot-segments in place: out[0..w) is the output so far, made
     * of "/segment" units; r walks the decoded input, always at a '/' */
    size_t w = 0, r = 0;
    while (r < n) {
        size_t st = r + 1, en = st;
        while (en < n && out[en] != '/')
            en++;
        size_t sl = en - st;
        bool last = en == n;
        if (sl == 0 && !last) {
            /* An empty segment ("//"): merged away, as nginx's merge_slashes
             * does by default, so that no handler sees "//x" (which a file
             * module would open as an absolute path and a redirect would
             * turn into a protocol-relative URL). A trailing "/" stays. */
        } else if (sl == 1 && out[st] == '.') {
            if (last)
                out[w++] = '/';
        } else if (sl == 2 && out[st] == '.' && out[st + 1] == '.') {
            if (w == 0)
                return 400;
            while (out[--w] != '/')
                ;
            if (last)
                out[w++] = '/';
        } else {
            memmove(out + w, out + r, sl + 1);
            w += sl + 1;
        }
        r = en;
    }
    out[w] = '\0';
    *out_len = w;
    return 0;
}

/* ---- chunked transfer coding --------------------------------------------------------- */

enum {
    K_SIZE_START = 0,  /* first HEXDIG of a chunk-size */
    K_SIZE,            /* more HEXDIG, ';', BWS or CR */
    K_SIZE_BWS,        /* BWS after the size: ';' must follow */
    K_EXT_NAME_BWS,    /* after ';': BWS then a name */
    K_EXT_NAME,        /* in a chunk-ext-name */
    K_EXT_NAME_AFTER,  /* BWS after a name: '=' or ';' must follow */
    K_EXT_VALUE_BWS,   /* after '=': BWS then a token or quoted-string */
    K_EXT_TOKEN,       /* in a token value */
    K_EXT_QUOTED,      /* in a quoted-string */
    K_EXT_QPAIR,       /* after '\' in a quoted-string */
    K_EXT_VALUE_AFTER, /* after a value: BWS then ';' (after BWS) or CR */
    K_SIZE_LF,         /* LF ending the chunk-size line */
    K_DATA,
    K_DATA_CR,
    K_DATA_LF,
    K_TR_START, /* first byte of a trailer field line or the final CRLF */
    K_TR_NAME,
    K_TR_VALUE,
    K_TR_LF,
    K_END_LF,
    K_DONE,
    K_ERROR,
};

#define CHUNK_LINE_MAX 4096
#define CHUNK_TRAILERS_MAX (32 * 1024)

void tw_chunked_init(tw_chunked_decoder_t *d)
{
    memset(d, 0, sizeof(*d));
    d->state = K_SIZE_START;
    d->max_line = CHUNK_LINE_MAX;
    d->max_trailers = CHUNK_TRAILERS_MAX;
}

static tw_chunk_result_t chunk_fail(tw_chunked_decoder_t *d, const char *why, size_t i,
                                    size_t *consumed)
{
    d->state = K_ERROR;
    d->error = why;
    *consumed = i;
    return TW_CHUNK_ERROR;
}

tw_chunk_result_t tw_chunked_decode(tw_chunked_decoder_t *d, const char *data, size_t len,
                                    size_t *consumed, size_t *out_off, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;

    *out_off = 0;
    *out_len = 0;
    if (d->state == K_DONE) {
        *consumed = 0;
        return TW_CHUNK_DONE;
    }
    if (d->state == K_ERROR) {
        *consumed = 0;
        return TW_CHUNK_ERROR;
    }

    while (i < len) {
        unsigned char c = s[i];
        unsigned st = d->state;

        if (st == K_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > d->remaining)
                n = (size_t)d->remaining;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = K_DATA_CR;
            *out_off = i;
            *out_len = n;
            *consumed = i + n;
            return TW_CHUNK_DATA;
        }
        /* the size line (all states before K_DATA) is bounded */
        /* line limits count the bytes before the CR; the trailer limit
         * counts everything after the last-chunk line */
        if (st < K_SIZE_LF) {
            if (c != '\r' && ++d->line_bytes > d->max_line)
                return chunk_fail(d, "chunk-size line too long", i, consumed);
        } else if (st >= K_TR_START) {
            if (++d->trailer_bytes > d->max_trailers)
                return chunk_fail(d, "trailer section too large", i, consumed);
            if (st <= K_TR_VALUE && c != '\r' && ++d->line_bytes > d->max_line)
                return chunk_fail(d, "trailer field line too long", i, consumed);
        }

        switch (st) {
        case K_SIZE_START:
            if (!IS(c, C_HEX))
                return chunk_fail(d, "invalid chunk size", i, consumed);
            d->remaining = (uint64_t)hex_value(c);
            d->state = K_SIZE;
            break;
        case K_SIZE:
            if (IS(c, C_HEX)) {
                if (d->remaining >> 59) {
                    d->size_overflow = true;
                    return chunk_fail(d, "chunk size too large", i, consumed);
                }
                d->remaining = d->remaining << 4 | (uint64_t)hex_value(c);
            } else if (c == ';') {
                d->state = K_EXT_NAME_BWS;
            } else if (is_ows(c)) {
                d->state = K_SIZE_BWS;
            } else if (c == '\r') {
                d->state = K_SIZE_LF;
            } else {
                return chunk_fail(d, "invalid chunk size", i, consumed);
            }
            break;
        case K_SIZE_BWS:
        case K_EXT_VALUE_AFTER:
            if (c == ';')
                d->state = K_EXT_NAME_BWS;
            else if (is_ows(c))
                d->state = K_SIZE_BWS;
            else if (c == '\r' && st == K_EXT_VALUE_AFTER)
                d->state = K_SIZE_LF;
            else
                return chunk_fail(d, "invalid chunk extension", i, consumed);
            break;
        case K_EXT_NAME_BWS:
            if (IS(c, C_TCHAR))
                d->state = K_EXT_NAME;
            else if (!is_ows(c))
                return chunk_fail(d, "invalid chunk extension name", i, consumed);
            break;
        case K_EXT_NAME:
            if (IS(c, C_TCHAR))
                break;
            if (c == '=')
                d->state = K_EXT_VALUE_BWS;
            else if (c == ';')
                d->state = K_EXT_NAME_BWS;
            else if (is_ows(c))
                d->state = K_EXT_NAME_AFTER;
            else if (c == '\r')
                d->state = K_SIZE_LF;
            else
                return chunk_fail(d, "invalid chunk extension name", i, consumed);
            break;
        case K_EXT_NAME_AFTER:
            if (c == '=')
                d->state = K_EXT_VALUE_BWS;
            else if (c == ';')
                d->state = K_EXT_NAME_BWS;
            else if (!is_ows(c))
                return chunk_fail(d, "invalid chunk extension", i, consumed);
            break;
        case K_EXT_VALUE_BWS:
            if (c == '"')
                d->state = K_EXT_QUOTED;
            else if (IS(c, C_TCHAR))
                d->state = K_EXT_TOKEN;
            else if (!is_ows(c))
                return chunk_fail(d, "invalid chunk extension value", i, consumed);
            break;
        case K_EXT_TOKEN:
            if (IS(c, C_TCHAR))
                break;
            if (c == ';')
                d->state = K_EXT_NAME_BWS;
            else if (is_ows(c))
                d->state = K_SIZE_BWS;
            else if (c == '\r')
                d->state = K_SIZE_LF;
            else
                return chunk_fail(d, "invalid chunk extension value", i, consumed);
            break;
        case K_EXT_QUOTED:
            if (c == '"')
                d->state = K_EXT_VALUE_AFTER;
            else if (c == '\\')
                d->state = K_EXT_QPAIR;
            else if (!IS(c, C_QDTEXT))
                return chunk_fail(d, "invalid quoted-string in a chunk extension", i, consumed);
            break;
        case K_EXT_QPAIR:
            if (!IS(c, C_VALUE))
                return chunk_fail(d, "invalid quoted-pair in a chunk extension", i, consumed);
            d->state = K_EXT_QUOTED;
            break;
        case K_SIZE_LF:
            if (c != '\n')
                return chunk_fail(d, "CR without LF after the chunk size", i, consumed);
            d->line_bytes = 0;
            d->state = d->remaining ? K_DATA : K_TR_START;
            break;
        case K_DATA_CR:
            if (c != '\r')
                return chunk_fail(d, "chunk data not followed by CRLF", i, consumed);
            d->state = K_DATA_LF;
            break;
        case K_DATA_LF:
            if (c != '\n')
                return chunk_fail(d, "chunk data not followed by CRLF", i, consumed);
            d->state = K_SIZE_START;
            break;
        case K_TR_START:
            if (c == '\r')
                d->state = K_END_LF;
            else if (IS(c, C_TCHAR))
                d->state = K_TR_NAME;
            else
                return chunk_fail(d, "invalid trailer field", i, consumed);
            break;
        case K_TR_NAME:
            if (c == ':')
                d->state = K_TR_VALUE;
            else if (!IS(c, C_TCHAR))
                return chunk_fail(d, "invalid trailer field name", i, consumed);
            break;
        case K_TR_VALUE:
            if (c == '\r')
                d->state = K_TR_LF;
            else if (!IS(c, C_VALUE))
                return chunk_fail(d, "invalid trailer field value", i, consumed);
            break;
        case K_TR_LF:
            if (c != '\n')
                return chunk_fail(d, "CR without LF in a trailer field", i, consumed);
            d->line_bytes = 0;
            d->state = K_TR_START;
            break;
        case K_END_LF:
            if (c != '\n')
                return chunk_fail(d, "CR without LF after the trailer section", i, consumed);
            d->state = K_DONE;
            *consumed = i + 1;
            return TW_CHUNK_DONE;
        default:
            return chunk_fail(d, "decoder misuse", i, consumed);
        }
        i++;
    }
    *consumed = i;
    return TW_CHUNK_AGAIN;
}
