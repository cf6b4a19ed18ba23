/* twister/upstream.h — calling other services from a handler without
 * blocking the loop: addresses, non-blocking connects into an IOStream,
 * tying a stream to a request, per-worker keep-alive pools, an HTTP/1.1
 * client (request heads, response heads, body decoding) and a thread pool
 * for blocking work. Since ABI 1.2.
 *
 * Lifetime rule: a stream a request uses must not outlive the request's
 * memory. Tie it (tw_request_tie_stream): when the request ends its close,
 * drain and read callbacks are cleared and then it is closed, so nothing
 * fires into the freed pool. Closing a stream from a plain pool cleanup is
 * not enough: its close callback runs on a later loop iteration, after the
 * pool is gone. */
#ifndef TWISTER_UPSTREAM_H
#define TWISTER_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "twister/http.h"
#include "twister/loop.h"
#include "twister/pool.h"
#include "twister/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- addresses ---------------------------------------------------------- */

/* A socket address and its text ("127.0.0.1:9001", "[::1]:80",
 * "unix:/run/app.sock"); a plain value, copy it freely. */
typedef struct {
    struct sockaddr_storage sa;
    socklen_t len;
    char text[112];
} tw_addr_t;

/* Parses a numeric address: "IPv4:port", "[IPv6]:port" or "unix:/path".
 * Never blocks. Errors: EINVAL (syntax, port, a path too long). */
int tw_addr_parse(const char *spec, tw_addr_t *out);
/* Resolves "host:port" (or anything tw_addr_parse takes) into up to max
 * addresses with getaddrinfo; *count receives how many. This blocks: call
 * it while configuring or from tw_loop_queue_work, never from a handler.
 * Errors: EINVAL (syntax), ENOENT (the name has no address), EAGAIN (a
 * temporary resolver failure), ENOMEM. */
int tw_addr_resolve(const char *spec, tw_addr_t *out, size_t max, size_t *count);

/* ---- connecting --------------------------------------------------------- */

typedef struct tw_connect tw_connect_t;
/* The result of tw_stream_connect: a connected stream (the callback owns
 * it) and err 0, or s NULL and err ECONNREFUSED, ETIMEDOUT, ENETUNREACH,
 * ENOENT (no such unix socket), ... */
typedef void (*tw_connect_cb)(tw_stream_t *s, int err, void *arg);

/* Starts a non-blocking connect to addr (TCP gets TCP_NODELAY) that gives
 * up after timeout_ms (0: no timeout). cb runs once, from the loop, never
 * inside this call. The handle is valid until cb starts or
 * tw_connect_cancel. Returns NULL with errno (ENOMEM, EMFILE, EINVAL for an
 * empty address); cb never runs then. */
tw_connect_t *tw_stream_connect(tw_loop_t *loop, const tw_addr_t *addr, uint64_t timeout_ms,
                                tw_connect_cb cb, void *arg);
/* Abandons a connect in progress: cb never runs, the socket is closed. */
void tw_connect_cancel(tw_connect_t *c);

/* Ties s to r: when r ends, s loses its close, drain and read callbacks
 * and is closed. A stream that closes earlier unties itself. One tie per
 * stream (tying again moves it). Errors: ENOMEM. */
int tw_request_tie_stream(tw_request_t *r, tw_stream_t *s);
/* Undoes tw_request_tie_stream (e.g. to give the stream to a pool). */
void tw_stream_untie(tw_stream_t *s);

/* ---- taking over the client connection ---------------------------------- */

/* Answers r with "101 Switching Protocols" and fields (Upgrade,
 * Connection, Sec-WebSocket-Accept, ...) and hands over the client's
 * stream: read and write it directly (set no close callback: the client
 * closing is reported through tw_request_on_abort; for back-pressure use
 * tw_response_on_drain). Call it from a suspended CONTENT handler; the
 * stream is closed when you resume the request (the drain timeout of a
 * reload and a hard stop end it like any request: abort callbacks run).
 * Bytes the client pipelined behind its request head before the 101 are
 * not delivered. Errors (NULL): EALREADY once a response was started,
 * EINVAL for a request with a body or a bad field, EPIPE if the client is
 * gone, EOPNOTSUPP, ENOMEM. */
tw_stream_t *tw_request_upgrade(tw_request_t *r, const tw_header_t *fields, size_t count);

/* ---- keep-alive pools --------------------------------------------------- */

typedef struct tw_conn_pool tw_conn_pool_t;

/* A per-worker pool of idle connections keeping at most max_idle of them
 * (over all addresses; the oldest go first) for at most idle_ms each.
 * Returns NULL on ENOMEM. */
tw_conn_pool_t *tw_conn_pool_new(tw_loop_t *loop, size_t max_idle, uint64_t idle_ms);
/* An idle connection to addr that is still open (checked for EOF and
 * unsolicited bytes), or NULL. The caller owns it; its callbacks are
 * cleared. */
tw_stream_t *tw_conn_pool_get(tw_conn_pool_t *pool, const tw_addr_t *addr);
/* Gives s (idle: no read pending, nothing queued or buffered) to the pool,
 * which takes ownership: kept, or closed if it is not reusable. */
void tw_conn_pool_put(tw_conn_pool_t *pool, const tw_addr_t *addr, tw_stream_t *s);
/* Idle connections held. */
size_t tw_conn_pool_idle(const tw_conn_pool_t *pool);
/* Closes every idle connection and frees the pool. NULL is a no-op. */
void tw_conn_pool_free(tw_conn_pool_t *pool);

/* ---- blocking work ------------------------------------------------------ */

/* Runs in a worker thread: may block; must not touch the loop, requests
 * or streams. */
typedef void (*tw_work_fn)(void *arg);
/* Runs on the loop after work returned. */
typedef void (*tw_work_done_fn)(tw_loop_t *loop, void *arg);

/* Runs work(arg) on the loop's thread pool (started on first use, a few
 * threads), then done(loop, arg) on the loop, woken through an eventfd.
 * arg must stay valid until done runs: do not point it into a request's
 * pool. If the loop is freed first, work still finishes and done never
 * runs. Errors: EINVAL (work NULL), ENOMEM, EAGAIN (no thread). */
int tw_loop_queue_work(tw_loop_t *loop, tw_work_fn work, tw_work_done_fn done, void *arg);

/* ---- HTTP/1.1 client ---------------------------------------------------- */

typedef enum {
    TW_HTTP_BODY_NONE = 0,   /* no body (HEAD, 1xx, 204, 304, Content-Length: 0) */
    TW_HTTP_BODY_LENGTH = 1, /* content_length bytes */
    TW_HTTP_BODY_CHUNKED = 2,
    TW_HTTP_BODY_CLOSE = 3, /* until the server closes the connection */
} tw_http_body_t;

/* A parsed response head. Strings point into the parser's pool copy. */
typedef struct {
    int status;      /* 100..999 */
    int version;     /* 10 or 11 */
    tw_str_t reason; /* may be empty */
    tw_header_t *fields;
    size_t count;
    tw_http_body_t body;
    uint64_t content_length; /* for TW_HTTP_BODY_LENGTH */
    bool keep_alive;         /* the connection may carry another request */
    const char *error;       /* after a failed parse: what was wrong */
} tw_http_response_t;

/* Parses a complete response head data[0..len) (the status line through
 * the empty line, as tw_stream_read_until(s, "\r\n\r\n", ...) delivers it)
 * to a request that was a HEAD or not, with the server side's strictness:
 * bare LF, obs-fold, bad tokens, control characters, conflicting or bad
 * Content-Length, Transfer-Encoding with Content-Length are errors. Field
 * strings are copied into pool. Returns 0, or -1 with errno EPROTO
 * (malformed; out->error says why) or ENOMEM. */
int tw_http_response_parse(tw_pool_t *pool, const char *data, size_t len, bool head_request,
                           tw_http_response_t *out);

typedef struct tw_http_decoder tw_http_decoder_t;

typedef enum {
    TW_HTTP_DECODE_AGAIN = 0, /* everything passed was used; feed more */
    TW_HTTP_DECODE_DATA = 1,  /* *piece, *piece_len: decoded body bytes */
    TW_HTTP_DECODE_DONE = 2,  /* the body is complete; the rest is not its */
    TW_HTTP_DECODE_ERROR = -1 /* malformed framing; tw_http_decoder_error says why */
} tw_http_decode_result_t;

/* A decoder for the body resp announces, in pool. NULL on ENOMEM. */
tw_http_decoder_t *tw_http_decoder_new(tw_pool_t *pool, const tw_http_response_t *resp);
/* Decodes from in[0..len): *consumed receives the bytes used; on DATA the
 * piece points into in. Call again with the rest until AGAIN or DONE. */
tw_http_decode_result_t tw_http_decoder_feed(tw_http_decoder_t *d, const char *in, size_t len,
                                             size_t *consumed, const char **piece,
                                             size_t *piece_len);
/* The peer closed: DONE for a close-delimited body (or one already
 * complete), ERROR (a truncated body) otherwise. */
tw_http_decode_result_t tw_http_decoder_eof(tw_http_decoder_t *d);
/* Why the decoder failed, for a log line. */
const char *tw_http_decoder_error(const tw_http_decoder_t *d);

/* Serialises "METHOD target HTTP/1.1", the fields and the empty line into
 * pool memory; *len receives the length. Errors (NULL): EINVAL for a
 * method or field name that is not a token, a target or value with a
 * control character (HTAB is allowed in values); ENOMEM. */
char *tw_http_request_head(tw_pool_t *pool, tw_str_t method, tw_str_t target,
                           const tw_header_t *fields, size_t count, size_t *len);
/* A chunk-size line for len bytes ("1a\r\n") into buf (24 bytes); returns
 * its length. */
size_t tw_http_chunk_line(size_t len, char *buf);

#ifdef __cplusplus
}
#endif
#endif
