/* request.h — the request and connection records shared by http_conn.c
 * (connection, reading, timeouts, framing on the wire) and request.c (the
 * public request/response API of twister/http.h and the phase engine).
 * Core-internal: plugins see tw_request_t only through twister/http.h.
 *
 * Lifetime: an active connection owns one pool (in its work record), reset
 * between requests and freed when the connection comes to rest, and at most
 * one live request allocated from it. The connection record outlives its
 * stream: when the client goes away while a handler holds a suspended
 * request, the stream is gone but the connection stays (a "zombie") until
 * the handler resumes and the request ends (LOG runs, the pool is reset);
 * only then is the connection freed. Everything a request arms (timers,
 * deferred loop callbacks, fd ownership) is undone by its pool cleanups or
 * at its end, so nothing fires into freed memory. */
#ifndef TWISTER_REQUEST_H
#define TWISTER_REQUEST_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http_conn.h"
#include "http_parser.h"
#include "phases.h"
#include "route.h"
#include "twister/http.h"
#include "twister/loop.h"
#include "twister/pool.h"
#include "twister/stream.h"

/* Connection states (what the connection is waiting for). */
typedef enum {
    TW_CONN_IDLE = 0, /* no request: waiting for the first byte of one */
    TW_CONN_HEAD,     /* part of a head is buffered */
    TW_CONN_REQUEST,  /* a handler holds the request; input is not consumed */
    TW_CONN_BODY,     /* the body is being read for the handler */
    TW_CONN_LINGER,   /* final response queued: dropping input until close */
    TW_CONN_CLOSED,   /* the stream is gone */
} tw_conn_state_t;

/* The connection's memory comes in two parts. The connection record below
 * is all an idle keep-alive connection costs (with its stream's struct):
 * while it rests — no request, nothing buffered or queued, no stash — it
 * sits on one of the server's two resting lists, ordered by idle_since,
 * and the server's one rest timer closes it when its turn comes. As soon
 * as bytes arrive it becomes active and takes a work record (parser,
 * request pool, timers, input bookkeeping) from the server's free list;
 * when it comes to rest again the work record, the pool and the stream's
 * buffers go back. */

/* Bytes the stream offered that the connection could not consume yet (a
 * handler held the request, a body stream paused); see http_conn.c. Rare:
 * allocated on demand, freed once processed. */
typedef struct {
    size_t off, len, cap;
    char data[];
} tw_conn_stash_t;

typedef struct tw_conn_work tw_conn_work_t;

struct tw_conn_work {
    tw_conn_work_t *next_free; /* srv->free_work */
    tw_pool_t *pool;           /* the request pool, reset between requests */
    tw_conn_stash_t *stash;    /* NULL when empty */
    bool stash_scheduled;      /* conn_stash_cb is queued */
    bool flush_notify;         /* an idle connection waits for its output to flush */
    bool head_blank;           /* HEAD: nothing but empty lines (CRLF) so far: still
                                  idle for the timers (RFC 9112 2.2) */
    bool head_is_head;         /* HEAD: the method read so far is "HEAD" (for an
                                  error page once the head is no longer at hand) */

    /* the bytes being processed: the stream's (inside its read callback)
     * or the stash's */
    bool in_stash;
    const char *in;
    size_t in_len, in_used;
    size_t in_feeding; /* bytes of in the body feed has used but not yet
                          added to in_used (while the body's end is announced) */

    /* the read-side timer: keep-alive, header, body, drain grace, linger */
    tw_timer_t timer;
    uint64_t timer_deadline; /* what timer is armed for (it may fire early) */
    uint64_t head_start;     /* HEAD: the first byte of the request line */
    uint64_t body_start;     /* BODY: when reading began */
    uint64_t last_read;      /* BODY: the last body byte */
    uint64_t linger_start;

    /* the send timer: no progress writing a response for send_timeout_ms */
    tw_timer_t send_timer;
    uint64_t out_total; /* bytes ever queued on the stream */
    uint64_t send_mark; /* bytes written when send_timer was armed */

    tw_http_parser_t parser; /* HEAD: the head being read */
    char peer_text[64];      /* "" until first asked */
};

/* Which server list a connection is on. */
enum {
    TW_CONN_ACTIVE = 0,
    TW_CONN_REST_NEW = 1,
    TW_CONN_REST_KEPT = 2
};

/* The peer address, as much of it as an IP address needs. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} tw_conn_peer_t;

struct tw_http_conn {
    tw_http_server_t *srv;
    tw_stream_t *stream;         /* NULL once closed */
    tw_http_conn_t *prev, *next; /* the server list `list` names */
    tw_conn_work_t *w;           /* NULL while resting (and possibly once closed) */
    tw_request_t *req;           /* the live request, or NULL */
    uint64_t idle_since;         /* IDLE: when the last request ended */
    uint32_t served;             /* requests completed on this connection */
    uint32_t listener_index;
    uint8_t state;    /* tw_conn_state_t */
    uint8_t list;     /* TW_CONN_ACTIVE or a resting list */
    uint8_t peer_len; /* 0 if unknown */
    bool reading;     /* a tw_stream_read_some is pending */
    bool corked;
    bool must_close;     /* no further request on this connection */
    bool output_blocked; /* the next request waits for the write queue to drain */
    bool freeing;        /* conn_free ran or is scheduled */
    unsigned depth;      /* enter/leave nesting on this connection */
    tw_conn_peer_t peer;
};

/* Request body reading modes. */
typedef enum {
    TW_RB_NONE = 0, /* not asked for */
    TW_RB_WHOLE,    /* tw_request_read_body */
    TW_RB_STREAM,   /* tw_request_stream_body */
} tw_rb_mode_t;

/* Where the request is, for API checks. */
typedef enum {
    TW_AT_PHASES = 0, /* running or suspended in POST_READ .. CONTENT */
    TW_AT_RESPONSE,   /* a handler returned TW_DONE: it owns the response */
    TW_AT_LOG,        /* running LOG handlers */
    TW_AT_ENDED,
} tw_req_stage_t;

typedef struct tw_req_cb {
    struct tw_req_cb *next;
    tw_request_cb fn;
    void *arg;
    const tw_module_t *module;
} tw_req_cb_t;

/* Output queued behind a body-filtered sendfile that waits for the client. */
typedef struct tw_out_op {
    struct tw_out_op *next;
    enum {
        TW_OUT_DATA,
        TW_OUT_FILE,
        TW_OUT_FINISH
    } kind;
    int fd;
    off_t off;
    size_t len;
    char *data;
} tw_out_op_t;

typedef struct {
    tw_str_t name; /* NUL-terminated copies in the pool */
    tw_str_t value;
} tw_resp_header_t;

struct tw_request {
    tw_http_conn_t *conn;
    tw_http_server_t *srv;
    tw_pool_t *pool;
    uint64_t serial;
    uint64_t start_us; /* loop clock when the head was complete */

    /* ---- the head (strings point into a pool copy of it) ---- */
    tw_str_t method, target, path, query, host;
    tw_str_t request_line;   /* for logs and the activity record */
    bool request_line_clean; /* from a parsed head: no control characters */
    int version;             /* 10 or 11 */
    tw_target_form_t target_form;
    tw_header_t *headers;
    size_t header_count;
    tw_body_kind_t body_kind;
    uint64_t content_length;
    bool client_keep_alive; /* what version and Connection allow */
    bool client_close;      /* a well-formed head that announced its connection's
                               last request (Connection: close, or HTTP/1.0) */
    bool expect_continue;
    bool is_head;

    /* ---- the phase engine ---- */
    tw_req_stage_t stage;
    tw_phase_t phase;
    size_t handler_index;      /* within the phase */
    const tw_module_t *module; /* whose code runs (or last ran) for this request */
    const char *where;         /* phase or callback name, for errors and activity */
    const tw_http_route_t *route;
    void **ctx; /* per module index */
    unsigned redirects;
    unsigned running; /* plugin code of this request is on the stack */
    bool suspended;
    bool resume_pending; /* resume was called while running */
    int resume_rc;
    bool uri_changed;
    bool aborted;          /* the client went away */
    bool settle_scheduled; /* settle_cb is queued on the loop */
    bool in_header_filter;
    unsigned in_body_filter; /* body filter calls on the stack */
    size_t body_filter_index;
    bool filter_failed;
    tw_req_cb_t *abort_cbs;
    tw_req_cb_t *drain_cbs;
    bool drain_scheduled;

    /* ---- the request body ---- */
    tw_rb_mode_t rb_mode;
    bool rb_done; /* every body byte was consumed from the connection */
    bool rb_failed;
    bool rb_paused;
    bool rb_discard; /* unread, fully buffered: dropped at the end */
    bool continue_sent;
    uint64_t rb_remaining; /* Content-Length bytes still to read */
    uint64_t rb_received;  /* decoded body bytes so far */
    uint64_t body_limit;
    tw_chunked_decoder_t decoder;
    char *body;
    size_t body_len, body_cap;
    tw_body_done_cb body_done;
    tw_body_chunk_cb body_chunk;
    void *body_arg;
    const tw_module_t *body_module;

    /* ---- the response ---- */
    int status;
    tw_resp_header_t *resp_headers;
    size_t resp_count, resp_cap;
    int64_t resp_length; /* Content-Length, -1 if unknown */
    bool resp_started;   /* a handler began producing a response */
    bool head_sent;
    bool finished;                    /* tw_response_finish ran (all output queued) */
    bool chunked;                     /* chunked framing on the wire */
    bool header_only;                 /* HEAD, 1xx, 204, 304: no body bytes */
    bool keep_alive;                  /* decided when the head was sent */
    bool force_close;                 /* Connection: close asked by a handler, or an error */
    bool error_response;              /* the core's own error page is being sent */
    uint64_t body_sent;               /* body bytes on the wire (after filters) */
    tw_out_op_t *out_head, *out_tail; /* output waiting behind a filtered sendfile */
    char *pump_buf;
};

/* ---- http_conn.c, for request.c --------------------------------------- */

/* Marks the start/end of engine work on c: the first enter corks the
 * stream, the last leave uncorks it, re-arms reading and frees a
 * connection whose last request ended. */
void tw_http_conn_enter(tw_http_conn_t *c);
void tw_http_conn_leave(tw_http_conn_t *c);
/* Queues bytes of the response (copied). Returns 0, 1 over the high-water
 * mark, or -1 with EPIPE once the client is gone. */
int tw_http_conn_write(tw_http_conn_t *c, const void *data, size_t len);
/* Queues len bytes of fd (ownership passes to the stream). As above. */
int tw_http_conn_sendfile(tw_http_conn_t *c, int fd, off_t off, size_t len);
/* Calls tw_request_drained (and begins a lingering close) once everything
 * queued so far has been written. */
void tw_http_conn_notify_flushed(tw_http_conn_t *c);
/* True if the write queue is under the low-water mark. */
bool tw_http_conn_write_low(const tw_http_conn_t *c);
/* True if the write queue is over the high-water mark. */
bool tw_http_conn_write_high(const tw_http_conn_t *c);
/* Whether r's response may keep the connection open (called when its head
 * is serialised): client, draining, unread body, server limits. */
bool tw_http_conn_keep_alive(tw_http_conn_t *c, tw_request_t *r);
/* Starts reading r's body (mode already set): 100 Continue, timers, and
 * delivery of what is buffered. */
void tw_http_conn_body_start(tw_request_t *r);
/* Resumes a paused body stream. */
void tw_http_conn_body_resume(tw_request_t *r);
/* r ended (LOG ran): decide keep-alive, reset the pool, go on with the
 * next request or close. */
void tw_http_conn_request_done(tw_request_t *r);
/* The peer address as text: cached on the connection while it is active,
 * else in a per-thread buffer that the next call reuses (for a log line). */
const char *tw_http_conn_peer_text(tw_http_conn_t *c);
/* The cached Date header value (formatted once per second). */
const char *tw_http_server_date(tw_http_server_t *srv);

/* ---- request.c, for http_conn.c ---------------------------------------- */

/* Builds the request from a complete head (copied into the pool). Returns
 * NULL on ENOMEM or with *status set (400) for a bad path. */
tw_request_t *tw_request_create(tw_http_conn_t *c, const tw_http_parser_t *p, const char *data,
                                int *status);
/* Builds a bare request for a head the parser refused, so that the error
 * response and LOG have something to work with. */
tw_request_t *tw_request_create_bad(tw_http_conn_t *c, const tw_http_parser_t *p, const char *data,
                                    size_t len);
/* Runs the phases from POST_READ. */
void tw_request_run(tw_request_t *r);
/* Answers r with the core's error page for status (closing the connection
 * when it must) and ends it. */
void tw_request_fail(tw_request_t *r, int status);
/* The client went away (or the server hard-stops): abort callbacks run and
 * the request ends now, or when its suspended handler resumes. force: end
 * it now even if suspended (hard stop). */
void tw_request_abort(tw_request_t *r, bool force);
/* The write queue fell under the low-water mark. */
void tw_request_drained(tw_request_t *r);
/* Body delivery (from http_conn.c's reader): a decoded piece, the end, or
 * a failure status (400, 408, 413, TW_ERROR). Return false when the
 * connection must stop feeding body bytes for now (paused or failed). */
bool tw_request_body_piece(tw_request_t *r, const char *data, size_t len);
void tw_request_body_end(tw_request_t *r);
void tw_request_body_fail(tw_request_t *r, int status);
/* Holds r: it cannot end until the matching release. */
void tw_request_hold(tw_request_t *r);
/* Releases r; the outermost release ends (or resumes) it if due. Call only
 * where nothing up the stack touches r afterwards. */
void tw_request_release(tw_request_t *r);
/* Calls plugin code in fn with the activity record set, holding r (the
 * release may end r). */
void tw_request_call_cb(tw_request_t *r, const tw_module_t *module, const char *what,
                        tw_request_cb fn, void *arg);

#endif
