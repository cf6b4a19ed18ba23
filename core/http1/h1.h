/* h1.h — what the files of the HTTP/1.1 layer share: the connection
 * record, its work record, and the functions one file offers the others.
 *
 * The layer is split by what it does on the wire: h1_server.c (the
 * per-worker server context, its resting lists and rest timer, drain and
 * hard stop), h1_conn.c (one connection: lifecycle, reading and parsing
 * heads, pipelining, the stash, timeouts, linger, and the transport table
 * the request engine drives it through), h1_body.c (request body framing:
 * Content-Length, chunked decoding, 100-continue, the body rate), and
 * h1_out.c (the status line and headers, Content-Length or chunked
 * framing, the Date cache, the keep-alive decision). The request engine
 * (core/request/) is reached only through request/transport.h.
 *
 * Memory. The connection record is all an idle keep-alive connection
 * costs (with its stream's struct): while it rests — no request, nothing
 * buffered or queued, no stash — it sits on one of the server's two
 * resting lists, ordered by idle_since, and the server's one rest timer
 * closes it when its turn comes. As soon as bytes arrive it becomes
 * active and takes a work record (parser, request pool, timers, input
 * bookkeeping, the request's framing and body state) from the server's
 * free list; when it comes to rest again the work record, the pool and the
 * stream's buffers go back.
 *
 * Lifetime. The connection record outlives its stream: when the client
 * goes away while a handler holds a suspended request, the stream is gone
 * but the connection stays (a "zombie") until the handler resumes and the
 * request ends (transport done: the pool is reset); only then is the
 * connection freed. */
#ifndef TWISTER_H1_H
#define TWISTER_H1_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http1/h1_body.h"
#include "http1/h1_out.h"
#include "http_conn.h"
#include "http_parser.h"
#include "internal.h"
#include "request/transport.h"
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

/* Bytes the stream offered that the connection could not consume yet (a
 * handler held the request, a body stream paused); see h1_conn.c. Rare:
 * allocated on demand, freed once processed. */
typedef struct {
    size_t off, len, cap;
    char data[];
} tw_conn_stash_t;

/* Where reading the request body stands. */
typedef enum {
    TW_H1_BODY_UNREAD = 0, /* the engine did not ask for it (yet) */
    TW_H1_BODY_READING,    /* being delivered */
    TW_H1_BODY_COMPLETE,   /* every byte was delivered */
    TW_H1_BODY_FAILED,     /* refused, timed out, or dropped by the engine */
} tw_h1_body_state_t;

typedef struct tw_conn_work tw_conn_work_t;

struct tw_conn_work {
    tw_conn_work_t *next_free;     /* srv->free_work */
    tw_pool_t *pool;               /* the request pool, reset between requests */
    tw_conn_stash_t *stash;        /* NULL when empty */
    tw_loop_deferred_t stash_node; /* conn_stash_cb, queued without allocating */
    bool flush_notify;             /* an idle connection waits for its output to flush */
    bool head_blank;               /* HEAD: nothing but empty lines (CRLF) so far: still
                                      idle for the timers (RFC 9112 2.2) */
    bool head_is_head;             /* HEAD: the method read so far is "HEAD" (for an
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
    uint64_t linger_start;

    /* the send timer: no progress writing a response for send_timeout_ms */
    tw_timer_t send_timer;
    uint64_t out_total; /* bytes ever queued on the stream */
    uint64_t send_mark; /* bytes written when send_timer was armed */

    tw_http_parser_t parser; /* HEAD: the head being read */
    char peer_text[64];      /* "" until first asked */

    /* ---- the request in flight, as the wire sees it ---- */
    int version;            /* 10 or 11 */
    bool client_keep_alive; /* what version and Connection allow */
    bool client_close;      /* the head announced its connection's last request */
    bool expect_continue;
    tw_body_kind_t body_kind;
    uint64_t content_length;
    tw_h1_framing_t framing; /* the response's, decided with its head */
    bool head_sent;
    bool keep_alive; /* decided when the head was sent */
    bool continue_sent;
    uint8_t body_state;        /* tw_h1_body_state_t */
    bool body_paused;          /* the engine asked for no more for now */
    bool body_discard;         /* unread, fully buffered: dropped at the end */
    tw_h1_body_decoder_t body; /* READING: the framing decoder */
    uint64_t body_start;       /* READING: when reading began */
    uint64_t last_read;        /* READING: the last body byte */
    uint64_t paused_at;        /* READING, paused: since when */
    uint64_t paused_ms;        /* READING: time the server held the body back */
};

/* Which server list a connection is on. */
enum {
    TW_CONN_ACTIVE = 0,
    TW_CONN_REST_NEW = 1,
    TW_CONN_REST_KEPT = 2,
    TW_CONN_STOPPED = 3, /* hard-stopped, its request suspended */
    TW_CONN_MOVING = 4   /* offered to the new generation (h1_handoff.c) */
};
#define TW_CONN_LISTS 5

/* The peer address, as much of it as an IP address needs. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} tw_conn_peer_t;

struct tw_http_conn {
    tw_transport_t transport; /* what the request engine holds */
    tw_http_server_t *srv;
    tw_stream_t *stream;         /* NULL once closed */
    tw_http_conn_t *prev, *next; /* the server list `list` names */
    tw_conn_work_t *w;           /* NULL while resting (and possibly once closed) */
    tw_request_t *req;           /* the live request, or NULL (opaque here) */
    uint64_t idle_since;         /* IDLE: when the last request ended */
    uint32_t served;             /* requests completed on this connection */
    uint8_t state;               /* tw_conn_state_t */
    uint8_t list;                /* TW_CONN_ACTIVE or a resting list */
    bool reading;                /* a tw_stream_read_some is pending */
    bool corked;
    bool proxy_pending;   /* the listener's PROXY header has not been read yet */
    bool tls_after_proxy; /* then TLS (a listener with tls and proxy_protocol) */
    bool must_close;      /* no further request on this connection */
    bool output_blocked;  /* the next request waits for the write queue to drain */
    bool freeing;         /* conn_free ran or is scheduled */
    bool stays;           /* offered to the new generation and given back:
                             it drains here, the old way */
    unsigned depth;       /* enter/leave nesting on this connection */
    tw_conn_peer_t peer;
};

static inline tw_http_conn_t *tw_h1_conn_of(const tw_transport_t *t)
{
    return (tw_http_conn_t *)((char *)t - offsetof(tw_http_conn_t, transport));
}

static inline bool tw_h1_open(const tw_http_conn_t *c)
{
    return c->stream && !tw_stream_closed(c->stream);
}

/* ---- h1_server.c ---- */

/* Server list handling (see h1_server.c). */
void tw_h1_list_unlink(tw_http_server_t *srv, tw_http_conn_t *c);
void tw_h1_list_link_after(tw_http_server_t *srv, tw_http_conn_t *c, unsigned l,
                           tw_http_conn_t *after);
void tw_h1_list_insert_rest(tw_http_server_t *srv, tw_http_conn_t *c, unsigned l);
/* Re-arms the server's rest timer for the earliest resting deadline. */
void tw_h1_rest_timer_update(tw_http_server_t *srv);
/* When an idle connection closes (the drain grace included). */
uint64_t tw_h1_idle_deadline(const tw_http_conn_t *c);
/* Queues all_closed if the drain is complete. */
void tw_h1_server_check_all_closed(tw_http_server_t *srv);
/* A work record from the free list (or the heap); NULL on ENOMEM. */
tw_conn_work_t *tw_h1_work_get(tw_http_server_t *srv);
/* Gives a work record back. */
void tw_h1_work_put(tw_http_server_t *srv, tw_conn_work_t *w);

/* ---- h1_conn.c ---- */

void tw_h1_enter(tw_http_conn_t *c);
void tw_h1_leave(tw_http_conn_t *c);
/* Closes c's socket without running its callbacks (the caller frees or
 * aborts it right away). */
void tw_h1_detach_stream(tw_http_conn_t *c);
/* Unlinks c at once; the memory goes when nothing on the stack uses it. */
void tw_h1_conn_free(tw_http_conn_t *c);
/* Hard close: the request (if any) is aborted now (a suspended one then
 * waits for its handler on the TW_CONN_STOPPED list). */
void tw_h1_hard_close(tw_http_conn_t *c);
/* Ends the suspended request of a hard-stopped connection without its
 * handler (the final teardown). */
void tw_h1_end_stopped(tw_http_conn_t *c);
/* Re-arms the read-side timer for the current state. */
void tw_h1_timer_update(tw_http_conn_t *c);
/* Idle connection timers and lists after a drain began. */
void tw_h1_conn_drain_began(tw_http_conn_t *c);
/* Bytes received after what the engine consumed so far. */
size_t tw_h1_buffered_after(const tw_http_conn_t *c);
/* The peer address as text (cached while active). */
const char *tw_h1_peer_text(tw_http_conn_t *c);

/* The start of a connection on fd (shared by accept and adoption):
 * returns it at rest on TW_CONN_REST_NEW, reading, or NULL with errno
 * (fd closed). */
tw_http_conn_t *tw_h1_conn_new(tw_http_server_t *srv, tw_loop_t *loop, int fd,
                               const struct sockaddr *peer, socklen_t peer_len,
                               size_t listener_index);
/* The stream's read callback (resting and active connections). */
size_t tw_h1_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg);

/* ---- h1_handoff.c ---- */

/* While srv drains with a hand-off: offers c, which has just come to
 * rest, to the new generation (it moves to TW_CONN_MOVING until the
 * verdict). Returns false, leaving c as it was, if c cannot move (TLS,
 * bytes buffered) or nothing takes offers. */
bool tw_h1_handoff_offer(tw_http_conn_t *c);
/* Whether srv drains into a new generation. */
bool tw_h1_handing_off(const tw_http_server_t *srv);
/* Whether c may move there once it rests (then its responses keep it
 * alive while draining): plain, on a listener named on the wire, and not
 * given back already. */
bool tw_h1_may_move(const tw_http_conn_t *c);
/* Whether c's response keeps it alive while draining, so that it can move
 * when it rests: it may move, and the drain is within srv's
 * handoff_window_ms (after that, a connection that never rests — a
 * client pipelining without pause — gets Connection: close, the old way,
 * before the shutdown bound cuts it off). */
bool tw_h1_keep_for_handoff(const tw_http_conn_t *c);

/* ---- h1_body.c ---- */

/* Reads the request body for the engine (transport read_body / want_body). */
void tw_h1_read_body(tw_transport_t *t, uint64_t limit);
void tw_h1_want_body(tw_transport_t *t, bool on);
/* Feeds body bytes from p; returns how many were used. */
size_t tw_h1_feed_body(tw_http_conn_t *c, const char *p, size_t avail);
/* When a body being read times out (0: it does not). */
uint64_t tw_h1_body_deadline(const tw_http_conn_t *c);
/* True if the request announced a body. */
bool tw_h1_has_body(const tw_conn_work_t *w);

/* ---- h1_out.c ---- */

int tw_h1_write_head(tw_transport_t *t, const tw_response_head_t *head);
int tw_h1_write_body(tw_transport_t *t, const void *data, size_t len, bool last);
int tw_h1_sendfile(tw_transport_t *t, int fd, off_t off, size_t len);
bool tw_h1_write_low(const tw_transport_t *t);
bool tw_h1_write_high(const tw_transport_t *t);
void tw_h1_notify_flushed(tw_transport_t *t);
/* notify_flushed, at most one pending at a time (an idle connection waits
 * for its output to flush before it comes to rest). */
void tw_h1_notify_flushed_once(tw_http_conn_t *c);
/* The stream's drain callback and the send timer's. */
void tw_h1_on_drain(tw_stream_t *s, void *arg);
void tw_h1_on_send_timer(tw_loop_t *loop, tw_timer_t *t, void *arg);
/* Queues raw bytes (copied). Returns 0, 1 over the high-water mark, -1. */
int tw_h1_write(tw_http_conn_t *c, const void *data, size_t len);
/* The transport's upgrade op (h1_upgrade.c). */
tw_stream_t *tw_h1_upgrade(tw_transport_t *t, const tw_header_t *fields, size_t count);

#endif
