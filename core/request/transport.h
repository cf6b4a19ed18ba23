/* transport.h — the one seam between the request engine (core/request/)
 * and the protocol layer that carries its requests (core/http1/ today).
 *
 * Why a table of functions: the engine decides what a response is (status,
 * headers, body bytes, when it ends) and the transport decides how it goes
 * on the wire (framing, keep-alive, timeouts, reading the request body).
 * With this table between them neither writes the other's fields, each can
 * be tested alone (tests/unit/test_request_engine.c drives the engine
 * through a transport with no socket), and another protocol — or a
 * server-side fake — plugs in without touching the engine (h2o's
 * h2o_conn_callbacks_t plays the same part).
 *
 * Direction. The engine calls the transport only through tw_transport_t's
 * ops; the transport calls the engine only through the functions declared
 * at the end of this header. A transport op may call back into the engine
 * (say, read_body delivering an empty body at once); the engine holds the
 * request across every op, so such a nested call never ends it under the
 * caller. */
#ifndef TWISTER_TRANSPORT_H
#define TWISTER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "http_parser.h"
#include "tls/tls_facts.h"
#include "twister/http.h"
#include "twister/stream.h"

typedef struct tw_http_server tw_http_server_t;
typedef struct tw_transport tw_transport_t;

/* A response head as the engine hands it over: the transport adds the
 * framing (Content-Length or chunked), Date, Server and Connection. */
typedef struct {
    int status;
    const tw_header_t *headers; /* no framing headers among them */
    size_t count;
    int64_t content_length; /* declared body length, -1 if none */
    bool is_head;           /* answers a HEAD request */
    bool close;             /* the engine wants the connection closed after it */
} tw_response_head_t;

/* What a transport does for the engine. */
typedef struct {
    /* Engine work on the transport begins/ends (nested calls counted): the
     * transport may batch output in between (cork) and act on what changed
     * when the outermost end returns. */
    void (*begin)(tw_transport_t *t);
    void (*end)(tw_transport_t *t);
    /* False once the peer is gone (or the transport closed itself). */
    bool (*is_open)(const tw_transport_t *t);
    /* Queues the head. Returns 1 if the connection stays open after this
     * response, 0 if it closes, -1 with errno (EPIPE, ENOMEM). */
    int (*write_head)(tw_transport_t *t, const tw_response_head_t *head);
    /* Queues body bytes (copied), framed as the head decided; last ends the
     * body. Returns 0, 1 over the high-water mark, -1 with EPIPE. */
    int (*write_body)(tw_transport_t *t, const void *data, size_t len, bool last);
    /* Queues len bytes of fd from off (ownership of fd passes, also on
     * error). Returns as write_body. */
    int (*sendfile)(tw_transport_t *t, int fd, off_t off, size_t len);
    /* The output queue is under the low-water / over the high-water mark. */
    bool (*write_low)(const tw_transport_t *t);
    bool (*write_high)(const tw_transport_t *t);
    /* Calls tw_request_drained once everything queued so far is written. */
    void (*notify_flushed)(tw_transport_t *t);
    /* Starts reading the request body (at most limit bytes; more is 413).
     * Delivers through tw_request_body_data/end/fail, possibly before it
     * returns (an empty body, bytes already buffered). */
    void (*read_body)(tw_transport_t *t, uint64_t limit);
    /* Stops (on = false) or resumes delivering body bytes. */
    void (*want_body)(tw_transport_t *t, bool on);
    /* Closes at once, as if the peer had left (tw_request_abort follows). */
    void (*drop)(tw_transport_t *t);
    /* The peer's address as text (valid until the request ends). */
    const char *(*peer_text)(tw_transport_t *t);
    /* The request ended (LOG ran). close: it must not be followed by another
     * on this connection. The transport frees the request's pool: the
     * request is gone when this returns. */
    void (*done)(tw_transport_t *t, bool close);
    /* Sends "101 Switching Protocols" with fields and stops reading
     * requests: the connection's stream is the caller's to read and write
     * until the request ends, which closes it. NULL (EOPNOTSUPP) for a
     * transport that cannot; may be NULL. */
    tw_stream_t *(*upgrade)(tw_transport_t *t, const tw_header_t *fields, size_t count);
} tw_transport_ops_t;

/* The transport a request runs on; a protocol layer embeds it in its
 * connection record. */
struct tw_transport {
    const tw_transport_ops_t *ops;
    const struct sockaddr *peer; /* the client's address (peer_len 0: unknown) */
    socklen_t peer_len;
    size_t listener_index; /* which listener it arrived on (for FIND_ROUTE) */
    bool tls;              /* it arrived on a TLS listener */
    /* Its TLS protocol and cipher, once the handshake is done. */
    tw_tls_facts_t tls_facts;
};

/* ---- the engine, for a transport ------------------------------------------ */

/* Builds a request from a complete head (copied into pool, which the
 * transport owns and resets after done). Returns NULL on ENOMEM, or with
 * *status set (400) for a path that cannot be normalised. */
tw_request_t *tw_request_create(tw_http_server_t *srv, tw_pool_t *pool, tw_transport_t *t,
                                const tw_http_parser_t *p, const char *data, int *status);
/* Builds a bare request for a head that was refused, so that the error
 * response and LOG have something to work with. data/len: what of the head
 * is at hand (NULL after a timeout); is_head: the method was seen to be
 * HEAD (for an error page without a body). */
tw_request_t *tw_request_create_bad(tw_http_server_t *srv, tw_pool_t *pool, tw_transport_t *t,
                                    const tw_http_parser_t *p, const char *data, size_t len,
                                    bool is_head);
/* Runs the phases from POST_READ. May end r. */
void tw_request_run(tw_request_t *r);
/* Answers r with the core's error page for status, closing the connection
 * after it, and ends it. */
void tw_request_fail(tw_request_t *r, int status);
/* The peer went away (force: the server hard-stops). Abort callbacks run;
 * the request ends now, or when its suspended handler resumes. */
void tw_request_abort(tw_request_t *r, bool force);
/* The output queue fell under the low-water mark. */
void tw_request_drained(tw_request_t *r);

/* What tw_request_body_data asks of the transport. */
typedef enum {
    TW_BODY_MORE = 0,  /* go on delivering */
    TW_BODY_PAUSE = 1, /* stop until want_body(true) */
    TW_BODY_STOP = -1, /* the body failed (the engine answered): read no more */
    TW_BODY_DROP = -2, /* the handler gave up: drop the connection */
} tw_body_verdict_t;

/* A decoded piece of the request body. */
tw_body_verdict_t tw_request_body_data(tw_request_t *r, const char *data, size_t len);
/* The whole body was delivered. */
void tw_request_body_end(tw_request_t *r);
/* The body cannot be read: an HTTP status (400, 408, 413) or TW_ERROR. */
void tw_request_body_fail(tw_request_t *r, int status);

/* The route's `drain: { keep }` for r (0: none, or no route yet): how long
 * r may run on after its generation began to drain. */
uint64_t tw_request_drain_keep_ms(const tw_request_t *r);

/* Holds r across a stretch of transport code that calls into the engine
 * more than once: r cannot end until the matching release, whose
 * outermost call ends (or resumes) r if that is due. */
void tw_request_hold(tw_request_t *r);
void tw_request_release(tw_request_t *r);

#endif
