/* h1_out.h — writing HTTP/1.1 heads and framing bodies (RFC 9112 4-7),
 * without a connection: a head is a start line and fields into a buffer,
 * the framing a function of status, declared length, method and version.
 * The server's response path (h1_out.c) and a client's request path use
 * the same functions. */
#ifndef TWISTER_H1_OUT_H
#define TWISTER_H1_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "twister/http.h"

/* A head to serialise: the start line without its CRLF ("HTTP/1.1 200 OK",
 * "GET /x HTTP/1.1"), then fields, then extra fields (what the layer adds:
 * Date, framing, Connection), then the empty line. */
typedef struct {
    const char *start_line;
    size_t start_len;
    const tw_header_t *fields;
    size_t count;
    const tw_header_t *extra;
    size_t extra_count;
} tw_h1_head_t;

/* Bytes tw_h1_head_write produces for h. */
size_t tw_h1_head_size(const tw_h1_head_t *h);
/* Writes h into buf (at least tw_h1_head_size bytes); returns the length. */
size_t tw_h1_head_write(const tw_h1_head_t *h, char *buf);
/* "HTTP/1.1 404 Not Found" into buf (64 bytes); returns its length. */
size_t tw_h1_status_line(int status, char *buf);

/* How a response body is delimited. */
typedef struct {
    bool header_only;     /* no body bytes (HEAD, 1xx, 204, 304) */
    bool emit_length;     /* send Content-Length */
    bool chunked;         /* chunked coding */
    bool close_delimited; /* the body ends with the connection (HTTP/1.0) */
} tw_h1_framing_t;

/* The framing of a response with status and declared length (-1: none) to
 * a request of version (10, 11) that was a HEAD or not. */
tw_h1_framing_t tw_h1_response_framing(int status, int64_t length, bool is_head, int version);
/* A chunk-size line for len bytes ("1a\r\n") into buf (24 bytes); returns
 * its length. */
size_t tw_h1_chunk_line(size_t len, char *buf);
/* Decimal digits of v into buf (24 bytes); returns their count. */
size_t tw_h1_u64(uint64_t v, char *buf);
/* The IMF-fixdate for now (seconds since the epoch) into buf (30 bytes:
 * "Sun, 06 Nov 1994 08:49:37 GMT" and NUL), formatted again only when
 * *sec differs from now. */
const char *tw_h1_date(time_t now, time_t *sec, char *buf);

#endif
