/* h1_body.h — the HTTP/1.1 message body decoder (RFC 9112 6): a body
 * delimited by Content-Length or in chunked coding, decoded from bytes fed
 * in any split, with a limit on the decoded size that is enforced as soon
 * as a length is announced (a Content-Length, a chunk-size line), before
 * the bytes it announces are read. It knows nothing of connections, so a
 * server reading a request body and a client reading a response body use
 * the same code. */
#ifndef TWISTER_H1_BODY_H
#define TWISTER_H1_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_parser.h"

typedef struct {
    tw_body_kind_t kind; /* TW_BODY_NONE: an empty body */
    uint64_t remaining;  /* LENGTH: bytes still to come */
    uint64_t limit;      /* decoded bytes allowed (UINT64_MAX: no limit) */
    uint64_t received;   /* decoded bytes so far */
    bool done;
    tw_chunked_decoder_t chunked;
} tw_h1_body_decoder_t;

typedef enum {
    TW_H1_BODY_AGAIN = 0,      /* everything passed was used; feed more */
    TW_H1_BODY_DATA = 1,       /* *piece, *piece_len: decoded bytes (never empty) */
    TW_H1_BODY_DONE = 2,       /* the body is complete; what follows is not its */
    TW_H1_BODY_ERROR = -1,     /* malformed framing (400); decoder error says why */
    TW_H1_BODY_TOO_LARGE = -2, /* the body would pass the limit (413), or a chunk
                                  size beyond 63 bits was announced */
} tw_h1_body_result_t;

/* Prepares d for a body of kind (content_length for TW_BODY_LENGTH). */
void tw_h1_body_init(tw_h1_body_decoder_t *d, tw_body_kind_t kind, uint64_t content_length,
                     uint64_t limit);
/* Decodes from in[0..len): *consumed receives the bytes used; on DATA the
 * piece points into in. Call again with the rest until AGAIN or DONE. */
tw_h1_body_result_t tw_h1_body_feed(tw_h1_body_decoder_t *d, const char *in, size_t len,
                                    size_t *consumed, const char **piece, size_t *piece_len);
/* Why the last feed failed (ERROR), for a log line. */
const char *tw_h1_body_error(const tw_h1_body_decoder_t *d);

/* When a body arriving at min_rate bytes/s fails (ms, absolute): start,
 * plus the time the server itself held the body back (paused_ms: a
 * handler that paused the stream), plus a grace window, plus the time the
 * bytes received so far take at min_rate. The rate is measured over the
 * whole body with the window on top (Apache's MinRate extends its timeout
 * the same way, per MinRate bytes): a client at exactly the rate stays
 * grace_ms ahead of its deadline instead of meeting it whenever a byte is
 * due, and a slower one is still cut off once its deficit passes the
 * window. */
uint64_t tw_h1_body_rate_deadline(uint64_t start, uint64_t paused_ms, uint64_t received,
                                  uint64_t min_rate, uint64_t grace_ms);

#endif
