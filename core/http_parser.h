/* http_parser.h — strict, incremental HTTP/1.1 request parser (RFC 9112).
 *
 * The parser is fed the bytes of the connection's read buffer from the
 * start of the current request each time more arrive; it remembers where it
 * stopped and never allocates. Everything it finds is recorded as offsets
 * (tw_span_t) relative to the first byte of the request, so that the buffer
 * may move (compaction, growth) between calls as long as the request's
 * first byte stays the first byte passed in. */
#ifndef TWISTER_HTTP_PARSER_H
#define TWISTER_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t off;
    uint32_t len;
} tw_span_t;

typedef struct {
    tw_span_t name;
    tw_span_t value; /* leading and trailing OWS removed */
} tw_http_field_t;

typedef struct {
    size_t request_line_max; /* [8 KiB] longer: 414 */
    size_t header_size_max;  /* bytes of all header lines [32 KiB] more: 431 */
    size_t headers_max;      /* field lines [100] more: 431 */
} tw_http_limits_t;

typedef enum {
    TW_PARSE_DONE = 0,   /* the head is complete: p->head_len bytes */
    TW_PARSE_AGAIN = 1,  /* need more bytes */
    TW_PARSE_ERROR = -1, /* p->status holds the status to answer with */
} tw_parse_result_t;

typedef enum {
    TW_TARGET_ORIGIN = 1,    /* /path?query */
    TW_TARGET_ABSOLUTE = 2,  /* http://host/path?query */
    TW_TARGET_AUTHORITY = 3, /* host:port (CONNECT only) */
    TW_TARGET_ASTERISK = 4,  /* * (OPTIONS only) */
} tw_target_form_t;

typedef enum {
    TW_BODY_NONE = 0,
    TW_BODY_LENGTH = 1,  /* content_length bytes */
    TW_BODY_CHUNKED = 2, /* Transfer-Encoding: chunked */
} tw_body_kind_t;

/* Decides whether a method token outside the known set is one the server
 * serves; returns true to accept. The RFC 9110 methods (GET HEAD POST PUT
 * DELETE CONNECT OPTIONS TRACE) and PATCH are always accepted and the filter
 * is not asked about them; without a filter any other well-formed token
 * gives 501. */
typedef bool (*tw_http_method_filter_fn)(const char *method, size_t len, void *arg);

typedef struct {
    /* results, valid once tw_http_parse_head returned TW_PARSE_DONE */
    tw_span_t method;
    tw_span_t target;    /* raw request-target */
    tw_span_t path;      /* raw path part of the target (not decoded); "/" for an
                            absolute-form target with an empty path, "*" for the
                            asterisk form, len 0 for the authority form */
    tw_span_t query;     /* raw query without '?' (len 0 if none) */
    tw_span_t host;      /* host[:port] from Host, or the authority of an absolute-
                            or authority-form target (the target wins); len 0 if
                            neither (HTTP/1.0 without Host; an empty Host is 400) */
    tw_span_t host_name; /* host without ":port" (an IPv6 literal keeps its []) */
    int port;            /* the explicit port of host, or -1 */
    tw_target_form_t target_form;
    int version; /* 10 or 11 (other 1.x are answered as 11) */
    tw_http_field_t *fields;
    size_t field_count;
    tw_body_kind_t body_kind;
    uint64_t content_length;
    bool keep_alive;      /* from version and Connection */
    bool expect_continue; /* Expect: 100-continue */
    size_t head_len;      /* bytes of the head including the final CRLF */

    /* on TW_PARSE_ERROR */
    int status;        /* 400, 414, 417, 431, 501, 505 */
    const char *error; /* static text for the log: what was wrong */

    /* configuration */
    tw_http_limits_t limits;
    size_t field_capacity;
    tw_http_method_filter_fn method_filter;
    void *method_filter_arg;

    /* private state */
    unsigned state;
    size_t pos;
    size_t line_start;
    size_t mark;
    unsigned host_count;
    unsigned content_length_count;
    bool has_transfer_encoding;
    uint8_t method_id;    /* which known method, 0 for another token */
    uint8_t empty_lines;  /* skipped before the request line */
    uint8_t te_chunked;   /* times "chunked" was listed */
    bool te_last_chunked; /* the last coding listed is chunked */
    bool te_other;        /* a coding other than chunked was listed */
    bool conn_close;      /* Connection: close */
    bool conn_keep_alive; /* Connection: keep-alive */
    bool expect_bad;      /* an expectation other than 100-continue */
    size_t rl_limit;      /* request line bytes must end before this offset */
    size_t hdr_start;     /* offset of the first field line */
    size_t hdr_limit;     /* field lines must end before this offset */
    size_t value_start;   /* of the field value being read */
} tw_http_parser_t;

/* Fills limits with the defaults. */
void tw_http_limits_default(tw_http_limits_t *limits);

/* Prepares p to parse one request head; fields is caller storage for up to
 * capacity field lines (capacity >= limits->headers_max). */
void tw_http_parser_init(tw_http_parser_t *p, const tw_http_limits_t *limits,
                         tw_http_field_t *fields, size_t capacity);

/* Parses data[0..len), which starts at the request's first byte and extends
 * what was passed before. Up to 8 empty lines (CRLF) before the request line
 * are skipped (RFC 9112 2.2) and counted in head_len; a 9th is 400. The
 * result does not depend on how the bytes were split between calls.
 * Limits: the request line (method SP target SP version, without CRLF and
 * skipped empty lines) over request_line_max is 414, the field lines (from
 * the first one through the CRLF of the last, not the final empty line)
 * over header_size_max, or more than headers_max (or field_capacity) fields,
 * is 431 — as soon as the first byte over the limit arrives.
 * Errors, in the order they are detected: syntax 400 / limits 414 431 at the
 * offending byte; version 505 then target-form 400 at the end of the request
 * line; Host / Content-Length / Transfer-Encoding syntax 400 at the end of
 * their field line; then, once the head is complete: missing Host, framing
 * conflicts (400), unknown method (501), unknown transfer coding (501),
 * unsupported expectation (417). After DONE or ERROR, further calls return
 * the same. */
tw_parse_result_t tw_http_parse_head(tw_http_parser_t *p, const char *data, size_t len);

/* Case-insensitive comparison of a span of base with a NUL-terminated name. */
bool tw_span_equals_nocase(const char *base, tw_span_t span, const char *name);

/* Decodes a raw path once, merges repeated slashes and removes dot-segments
 * (RFC 3986 5.2.4). Writes at most len+1 bytes (NUL-terminated) to out and the
 * length to *out_len. Returns 0, or 400 for a path that would climb above
 * '/', %00 (an encoded NUL), a malformed %-escape (%zz, a truncated %), or a
 * path not starting with '/'.
 * - Decoding comes first, so "%2e%2e" is a dot-segment like "..".
 * - "%2F" decodes to '/' and then separates segments like a plain '/' (the
 *   result names a file path; there is no "encoded slash" distinction).
 * - Repeated slashes are merged ("/a//b" is "/a/b", as with nginx's default
 *   merge_slashes), before dot-segments are removed ("/a//.." is "/").
 * - A trailing "/." or "/.." leaves a trailing '/' ("/a/b/.." is "/a/").
 * out may be path itself (normalising in place). */
int tw_http_normalize_path(const char *path, size_t len, char *out, size_t *out_len);

/* ---- chunked transfer coding (RFC 9112 7.1) ---------------------------- */

typedef struct {
    unsigned state;
    uint64_t remaining;   /* bytes left in the current chunk (while its size line is
                             read: the size so far, which only grows) */
    size_t line_bytes;    /* bytes in the current size/extension/trailer line */
    size_t trailer_bytes; /* bytes of all trailer lines */
    size_t max_line;      /* a longer chunk-size line or trailer: error [4 KiB] */
    size_t max_trailers;  /* [32 KiB] */
    const char *error;    /* on TW_CHUNK_ERROR */
    bool size_overflow;   /* on TW_CHUNK_ERROR: a chunk size beyond 63 bits */
} tw_chunked_decoder_t;

typedef enum {
    TW_CHUNK_AGAIN = 1,  /* everything passed was consumed; need more */
    TW_CHUNK_DATA = 2,   /* out_off, out_len give a piece of body inside data */
    TW_CHUNK_DONE = 0,   /* the last chunk and the trailers are complete */
    TW_CHUNK_ERROR = -1, /* malformed framing: answer 400 and close */
} tw_chunk_result_t;

/* Prepares a decoder with the default limits. */
void tw_chunked_init(tw_chunked_decoder_t *d);

/* Decodes from data[0..len): sets *consumed to the bytes used; on DATA the
 * body piece is data[*out_off .. *out_off + *out_len) (never empty) and
 * *consumed = *out_off + *out_len. Call again with the rest until AGAIN
 * (then *consumed == len) or DONE (then *consumed ends right after the
 * final CRLF: what follows is the next request). The decoder keeps its own
 * state, so each call takes only new bytes, split anywhere. Chunk
 * extensions (BWS around ';' and '=', token or quoted-string values) and
 * trailer fields (like header fields: no obs-fold, no CTLs) are checked for
 * syntax and ignored. Sizes that overflow 63 bits, non-hex digits, a sign,
 * "0x", a space before the size, a bare LF or CR without LF, and anything
 * but CRLF after chunk data are errors; d->error says which. */
tw_chunk_result_t tw_chunked_decode(tw_chunked_decoder_t *d, const char *data, size_t len,
                                    size_t *consumed, size_t *out_off, size_t *out_len);

#endif
