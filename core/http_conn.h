/* http_conn.h — HTTPConnection and the per-worker HTTP server context.
 *
 * The worker fills a tw_http_server_t (after tw_http_server_init set the
 * defaults) with the generation's limits, timeouts, modules, compiled phase
 * table and route lookup, then hands it every accepted socket with
 * tw_http_conn_start. Each connection reads requests with the incremental
 * parser, runs them through the phases (the request engine, core/request/)
 * and writes the responses, strictly in order, keeping the connection alive
 * when HTTP allows it. The implementation is the HTTP/1.1 layer in
 * core/http1/ (h1.h describes its files).
 *
 * Draining (zero-loss reload): after tw_http_server_drain, requests in
 * flight finish and their responses carry "Connection: close" (unless the
 * client already pipelined more requests behind them, which are then served
 * too, the last one with "Connection: close"); a connection that is or
 * becomes idle is closed once no byte has arrived for drain_grace_ms, so a
 * request written just as the drain began is still served. all_closed runs
 * when the last connection is gone; the worker bounds the whole drain with
 * tw_http_server_close_all. */
#ifndef TWISTER_HTTP_CONN_H
#define TWISTER_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "activity.h"
#include "http_parser.h"
#include "internal.h"
#include "phases.h"
#include "route.h"
#include "twister/http.h"
#include "twister/loop.h"
#include "twister/stream.h"

typedef struct tw_http_conn tw_http_conn_t;
struct tw_handoff;
struct tw_handoff_conn;

/* The Allow value for "OPTIONS *" and for a route without a method list
 * (what the parser accepts, less CONNECT and TRACE, which the core refuses),
 * when no module added methods (tw_http_server_t.allow_any). */
#define TW_HTTP_ALLOW_ANY "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"

/* Looks up the route for r (tw_request_host, tw_request_path) on the
 * listener it arrived on. Returns 0 with *route set, or 404. */
typedef int (*tw_http_find_route_fn)(void *arg, tw_request_t *r, size_t listener_index,
                                     const tw_http_route_t **route);

/* Statistics, for logs and tests. */
typedef struct {
    uint64_t accepted;          /* connections started */
    uint64_t requests;          /* request heads parsed (including bad ones) */
    uint64_t responses;         /* requests ended (after LOG) */
    uint64_t aborted;           /* requests whose client went away */
    uint64_t timeouts;          /* connections closed by a timeout */
    uint64_t adopted;           /* connections adopted from an older generation */
    uint64_t handed_off;        /* connections moved to a newer generation */
    uint64_t handoff_fallbacks; /* offered there and given back (then closed here) */
} tw_http_counters_t;

typedef struct tw_http_server {
    /* ---- set by the worker (tw_http_server_init fills the defaults) ---- */
    tw_http_limits_t limits;       /* head limits: 414/431 */
    uint64_t body_limit;           /* default request body limit [1 MiB]; routes override */
    uint64_t header_timeout_ms;    /* whole head, from its first byte [10 s]: 408 */
    uint64_t body_timeout_ms;      /* between two reads of a body [30 s]: 408 */
    uint64_t send_timeout_ms;      /* a response making no progress [30 s]: close */
    uint64_t keepalive_timeout_ms; /* idle between requests [75 s]; 0: no keep-alive */
    uint64_t min_body_rate;        /* bytes/s a body must average, measured from
                                      its start with the grace on top [1 KiB];
                                      0: off */
    uint64_t body_rate_grace_ms;   /* how far behind min_body_rate a body may fall
                                      [10 s] (time a handler paused it is not
                                      counted) */
    uint64_t drain_grace_ms;       /* idle time before closing while draining [1 s] */
    uint64_t linger_ms;            /* reading and dropping unread input after a final
                                      response, so the client sees it instead of a
                                      reset [2 s]; 0: close at once */
    tw_stream_options_t stream;    /* per connection; max_buffer_size bounds parse-ahead */
    size_t pool_size;              /* first block of each connection's request pool [4 KiB] */

    const tw_module_t *const *modules; /* the loaded modules, in config order */
    size_t module_count;
    const bool *module_disabled;      /* per module index: quarantined; NULL: none is */
    unsigned char id_random[512];     /* tw_request_id's random bytes, refilled when used up */
    size_t id_random_left;            /* unused bytes at the end of id_random */
    void **global_conf;               /* per module index: its TW_SCOPE_GLOBAL conf */
    const tw_phase_table_t *phases;   /* tw_phases_table() of the compiled registry; NULL: none */
    tw_http_find_route_fn find_route; /* NULL: every request is 404 */
    void *find_route_arg;
    tw_http_method_filter_fn method_filter; /* extra methods (tw_configure_add_method) */
    void *method_filter_arg;
    const char *server_header;  /* Server header value ["twister"]; NULL or "": none */
    const char *allow_any;      /* Allow for OPTIONS and a 405 on a route without a
                                   method list [NULL: TW_HTTP_ALLOW_ANY]; the
                                   worker appends the modules' extra methods */
    tw_activity_t *activity;    /* crash-safe record in shared memory, or NULL */
    const bool *proxy_protocol; /* per listener index: a PROXY header precedes HTTP */
    size_t proxy_protocol_count;
    struct tw_tls_server *tls; /* TLS per listener (tls/tls_context.h), or NULL */
    struct tw_worker *worker;  /* what tw_request_worker answers; NULL in a check */
    /* Reload hand-off (handoff.h), set by the worker: while draining with
     * a handoff that can offer, idle connections go to the new generation
     * instead of being closed, and in-flight responses keep the connection
     * alive so that it moves once the request is done. listen_fds (per
     * listener index) names a connection's listener on the wire. */
    struct tw_handoff *handoff;
    const int *listen_fds;
    size_t listen_fd_count;
    uint64_t handoff_window_ms; /* for how long into the drain responses keep
                                   connections alive to move them [0: all of
                                   it]; then Connection: close, the old way */

    tw_http_counters_t counters; /* maintained by the engine */

    /* ---- private to core/http1/ and core/request/ ---- */
    tw_loop_t *loop; /* the one loop every connection of srv runs on */
    /* Open connections, on five doubly linked lists: [0] active ones,
     * [1] resting ones that have served nothing yet, [2] resting ones that
     * have (the two use different timeouts), [3] ones a hard stop closed
     * whose request waits for its suspended handler, [4] idle ones offered
     * to the new generation, waiting for its verdict; a resting list is
     * ordered by idle_since, and tails[] is where insertion starts looking. */
    tw_http_conn_t *lists[5], *tails[5];
    size_t conn_count;
    tw_timer_t rest_timer;          /* closes resting connections whose time is up */
    uint64_t rest_deadline;         /* what rest_timer is armed for */
    struct tw_conn_work *free_work; /* work records of connections that came to rest */
    size_t free_work_count;
    bool draining;
    uint64_t drain_start;
    void (*all_closed)(void *arg);
    void *all_closed_arg;
    tw_loop_deferred_t all_closed_node; /* runs all_closed from the loop */
    unsigned depth;                     /* plugin calls on the stack (any request) */
    uint64_t serial;                    /* request numbering */
    tw_http_field_t *scratch_fields;    /* parser storage for heads that arrive whole */
    size_t scratch_cap;
    uint64_t activity_serial;       /* whose request line the activity record holds
                                       (0: unknown) */
    const tw_module_t *last_module; /* one-entry cache for module index lookups */
    size_t last_module_index;
    time_t date_sec;   /* the second date_buf was formatted for */
    char date_buf[32]; /* "Sun, 06 Nov 1994 08:49:37 GMT" */
} tw_http_server_t;

/* Fills srv with the defaults above (zeroing everything else); loop is the
 * worker's loop. */
void tw_http_server_init(tw_http_server_t *srv, tw_loop_t *loop);
/* Hard-closes every connection (tw_http_server_close_all), ends the
 * requests still suspended without their handlers (their pool cleanups
 * run; resuming one afterwards is a use after free, so call this only once
 * the modules' exit_worker hooks stopped their work), and releases what srv
 * holds; srv itself is the caller's. */
void tw_http_server_cleanup(tw_http_server_t *srv);
/* Starts serving an accepted socket (takes ownership of fd, also on error),
 * already non-blocking (accept4 with SOCK_NONBLOCK; debug builds check).
 * peer/peer_len is the client's address. Returns 0, or -1 with errno. */
int tw_http_conn_start(tw_http_server_t *srv, tw_loop_t *loop, int fd, const struct sockaddr *peer,
                       socklen_t peer_len, size_t listener_index);
/* Adopts an idle connection an older generation handed off (handoff.h):
 * served from now on with this server's config, as if it had been
 * accepted on listener_index and had served conn->served requests. Takes
 * fd either way. Refuses (-1, fd closed: the sender keeps its own copy)
 * a TLS listener's connection (its state cannot move without kTLS), one
 * whose listener changed its proxy_protocol setting, and on ENOMEM. */
int tw_http_conn_adopt(tw_http_server_t *srv, int fd, const struct tw_handoff_conn *conn,
                       size_t listener_index);
/* The verdict on a connection this server offered (a tw_handoff_done_fn,
 * arg is srv): moved, it is closed here without a word; not moved, it
 * rests again and closes after the drain grace. */
void tw_http_server_handoff_done(void *arg, void *token, bool moved);
/* While draining with a hand-off that can offer: offers every resting
 * connection to the new generation (the drain does this when it begins;
 * call it again when a channel arrives late). */
void tw_http_server_hand_off_idle(tw_http_server_t *srv);
/* The drain's bound, per connection: closes (hard, as close_all) every
 * connection whose limit has passed elapsed_ms after the drain began —
 * its request's route `drain: { keep }`, or shutdown_ms — and returns the
 * next limit still ahead (0: none; every connection left is past it or
 * none is left). */
uint64_t tw_http_server_drain_expire(tw_http_server_t *srv, uint64_t elapsed_ms,
                                     uint64_t shutdown_ms);
/* Begins the graceful drain described above; all_closed(arg) runs (from a
 * loop callback, never inside this call) once no connection is left. */
void tw_http_server_drain(tw_http_server_t *srv, void (*all_closed)(void *arg), void *arg);
/* Number of open connections (including ones whose client left while a
 * handler still holds the request). */
size_t tw_http_server_connections(const tw_http_server_t *srv);
/* Connections at rest: idle, holding no buffer, pool, parser or timer of
 * their own (for stats and tests). */
size_t tw_http_server_resting(const tw_http_server_t *srv);
/* Heap bytes the open connections hold: their records, streams (with
 * buffers), work records and request pools' first blocks (for stats and
 * tests). */
size_t tw_http_server_memory(const tw_http_server_t *srv);
/* Hard stop: closes every socket and aborts every request (abort
 * callbacks, then LOG) now, freeing its connection — except a request whose
 * handler is suspended: as when its client leaves, it ends when the
 * handler resumes it (its connection, without a socket, is counted until
 * then); tw_http_server_cleanup ends whatever is left. Run the loop once
 * more (or free it) afterwards so that the streams release their buffers. */
void tw_http_server_close_all(tw_http_server_t *srv);

#endif
