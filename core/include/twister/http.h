/* twister/http.h — what a handler sees of a request and its response, and
 * the phases a request goes through.
 *
 * A request runs through the phases
 *   POST_READ -> REWRITE -> FIND_ROUTE -> ACCESS -> CONTENT -> LOG
 * and its response through the header filters and the body filters on the
 * way out. Handlers answer with one of the tw_handler_result_t codes, or
 * with an HTTP status (100..599) to make the core send that error response.
 *
 * Memory: strings handed out by the functions below stay valid until the
 * request ends (they live in the request's pool) unless a comment says
 * otherwise. A request ends after its LOG phase; pool cleanups run then.
 *
 * Who may call what. Handlers of POST_READ through CONTENT, and the
 * callbacks they arm (timers, body, drain, abort), may use everything
 * below; any of them may produce the response (then it returns TW_DONE).
 * Header filters may change the status and headers only; body filters only
 * pass data on with tw_body_filter_next. LOG handlers only read: response
 * and body calls, tw_request_set_uri and timers fail there. A call made
 * where it is not allowed fails with EPERM and the error log names the
 * module (the Errors lists below leave that case out); such misuse never
 * crashes the server.
 *
 * The core owns the framing: Content-Length (set it with
 * tw_response_set_content_length or the header of that name), chunked
 * coding (chosen by the core for 1.1 clients when no length is declared),
 * Connection, Date and Server (the last two can be overridden). HEAD
 * responses carry the headers a GET would (Content-Length included) and no
 * body bytes (writes are accepted and dropped, sendfile fds closed); 1xx,
 * 204 and 304 responses never carry body bytes (a 304 keeps a declared
 * Content-Length and gets none otherwise, 204 never sends one; a HEAD
 * response that declared no length sends none). Error pages the core produces
 * itself bypass the body filters, and the header filters but those added
 * with tw_phases_add_header_filter_always (module.h). */
#ifndef TWISTER_HTTP_H
#define TWISTER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "twister/log.h"
#include "twister/loop.h"
#include "twister/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_request tw_request_t;
typedef struct tw_module tw_module_t;

/* A length-delimited string; not NUL-terminated unless said so. */
typedef struct {
    const char *ptr;
    size_t len;
} tw_str_t;

/* One header field; name and value as received (value without OWS). */
typedef struct {
    tw_str_t name;
    tw_str_t value;
} tw_header_t;

typedef enum {
    TW_PHASE_POST_READ = 0, /* right after the head is parsed */
    TW_PHASE_REWRITE,       /* may change the path (tw_request_set_uri) */
    TW_PHASE_FIND_ROUTE,    /* core only: picks the server and route */
    TW_PHASE_ACCESS,        /* may refuse: return 401, 403, ... (a vote, below) */
    TW_PHASE_CONTENT,       /* the route's handler module produces the response */
    TW_PHASE_LOG,           /* after the response was sent, aborted or failed */
    TW_PHASE_COUNT
} tw_phase_t;

/* What a handler returns. Any value in 200..599 instead means "answer with
 * this status": the core produces a small error response (if no response
 * has started; otherwise the connection closes) and the request goes on to
 * LOG. Statuses under 200 are answered 500.
 * - TW_NEXT from CONTENT is TW_DONE, unless the handler called
 *   tw_request_set_uri: then it is an internal redirect.
 * - TW_DECLINED from CONTENT without a response started answers 404.
 * - TW_DONE: the handler owns the response; the request goes on to LOG
 *   once it is finished (tw_response_send/tw_response_finish), which may
 *   happen later from a callback (body, timer, drain).
 * - TW_SUSPENDED: the request waits, whatever else happens (even a finished
 *   response), until tw_request_resume. A handler that returned anything
 *   else must not call tw_request_resume.
 *
 * ACCESS is a vote: every ACCESS handler runs, in order, so that a check
 * ordered after a passing one (an address list after a password) is never
 * skipped. An ACCESS handler (or the rc it resumes with) says
 * - TW_NEXT: pass (this check lets the request through);
 * - TW_DECLINED: no opinion (this check does not apply here);
 * - a status (401, 403, 429, ...): refuse. The core answers with its page
 *   for that status and keeps the response headers ACCESS handlers set
 *   (set WWW-Authenticate, then return 401);
 * - TW_DONE: it answered itself; the request goes on to LOG (final, in
 *   either mode);
 * - TW_ERROR: internal failure, 500 (final, in either mode).
 * With the route's `satisfy: all` (the default, nginx's) the first refusal
 * ends the phase with that status; CONTENT follows when none refused. With
 * `satisfy: any` the first pass ends the phase and CONTENT follows: the
 * refusals before it are forgotten, with the headers set during ACCESS;
 * if nobody passes, the last refusal's status is answered (with the
 * headers its handler set), and if nobody refuses either CONTENT follows.
 * TW_NEXT after tw_request_set_uri is an internal redirect in both modes. */
typedef enum {
    TW_NEXT = 0,       /* done with this phase: go on to the next phase */
    TW_DECLINED = -1,  /* not mine: try the next handler of this phase */
    TW_DONE = -2,      /* the response is produced (or being streamed) */
    TW_SUSPENDED = -3, /* async work started; tw_request_resume continues */
    TW_ERROR = -4,     /* internal failure: 500 (or close if headers went out) */
} tw_handler_result_t;

/* A phase or CONTENT handler. */
typedef int (*tw_handler_fn)(tw_request_t *r);
/* A header filter: may change the status and headers before they are
 * serialised. Returns TW_NEXT or an error code/status. */
typedef int (*tw_header_filter_fn)(tw_request_t *r);
/* A body filter: receives each piece of the body (last marks the end) and
 * passes what it produces on with tw_body_filter_next. Returns TW_NEXT or
 * TW_ERROR. data is valid only during the call. */
typedef int (*tw_body_filter_fn)(tw_request_t *r, const char *data, size_t len, bool last);
/* A plain request callback (drain, abort, timers). */
typedef void (*tw_request_cb)(tw_request_t *r, void *arg);
/* Whole-body completion: status is TW_NEXT when the body is in, an HTTP
 * status (400, 408, 413) when it could not be read, or TW_ERROR when the
 * client went away. If the handler returned TW_DONE and its response is
 * not finished when the callback returns with a failure status, the core
 * answers that status (or closes the connection if the head is out). */
typedef void (*tw_body_done_cb)(tw_request_t *r, int status, void *arg);
/* Streamed body: called for each decoded piece (last is true once, at the
 * end, possibly with len 0). Return 0 to go on, 1 to pause (call
 * tw_request_resume_body later), or -1 to abort the request (the
 * connection closes as if the client had left: abort callbacks run). On a
 * framing error, a timeout, the body limit (413) or a disconnect
 * (TW_ERROR) it is called with data NULL and status != 0; the core answers
 * as for tw_body_done_cb. */
typedef int (*tw_body_chunk_cb)(tw_request_t *r, int status, const char *data, size_t len,
                                bool last, void *arg);

/* ---- the request ---------------------------------------------------- */

/* The method token, e.g. "GET". */
tw_str_t tw_request_method(const tw_request_t *r);
/* True if the method equals name (case-sensitive, as methods are). */
bool tw_request_method_is(const tw_request_t *r, const char *name);
/* The request-target exactly as received. */
tw_str_t tw_request_target(const tw_request_t *r);
/* The path: percent-decoded once, dot-segments removed, always starting
 * with '/' ("*" for "OPTIONS *"). NUL-terminated. */
tw_str_t tw_request_path(const tw_request_t *r);
/* The query without '?', as received (not decoded); empty if none. */
tw_str_t tw_request_query(const tw_request_t *r);
/* HTTP version as 10 or 11. */
int tw_request_version(const tw_request_t *r);
/* The Host (from the header or an absolute-form target), without port. */
tw_str_t tw_request_host(const tw_request_t *r);
/* The first header named name (case-insensitive), or NULL. */
const tw_header_t *tw_request_header(const tw_request_t *r, const char *name);
/* The next header named name after prev (for repeated fields), or NULL. */
const tw_header_t *tw_request_header_next(const tw_request_t *r, const char *name,
                                          const tw_header_t *prev);
/* Number of header fields. */
size_t tw_request_header_count(const tw_request_t *r);
/* The i-th header field in arrival order, or NULL. */
const tw_header_t *tw_request_header_at(const tw_request_t *r, size_t i);
/* The peer's address; *len receives its size. */
const struct sockaddr *tw_request_peer(const tw_request_t *r, socklen_t *len);
/* The peer's address as text ("127.0.0.1" or "::1"), NUL-terminated. */
const char *tw_request_peer_text(const tw_request_t *r);
/* "https" if r arrived on a TLS listener, else "http" (static; ABI 1.2). */
const char *tw_request_scheme(const tw_request_t *r);
/* The TLS protocol of r's connection ("TLSv1.3"; static), or NULL on
 * plaintext (ABI 1.2). */
const char *tw_request_tls_protocol(const tw_request_t *r);
/* The TLS cipher of r's connection ("TLS_AES_256_GCM_SHA384"; static), or
 * NULL on plaintext (ABI 1.2). */
const char *tw_request_tls_cipher(const tw_request_t *r);
/* Content-Length of the request body, 0 if there is no body, or -1 if the
 * body is chunked. */
int64_t tw_request_content_length(const tw_request_t *r);

/* Changing the request (since ABI 1.2): for modules that sit in front of
 * another (headers for a proxy, realip, auth). Callable from the handlers
 * of POST_READ through CONTENT and their callbacks, not from filters or
 * LOG (EPERM). Names must be tokens and values free of CR, LF, NUL and the
 * other control characters but HTAB (EINVAL); both are copied into the
 * request's pool. Content-Length and Transfer-Encoding are the framing
 * the body is read with and cannot be changed (EINVAL); a changed Host
 * header does not change tw_request_host (the route is chosen from the
 * Host the request arrived with). Pointers from tw_request_header* stay
 * valid, but may show the old field after a change: look them up again. */

/* Sets request header name to value, replacing every earlier one.
 * Errors: EINVAL, EPERM, ENOMEM. */
int tw_request_set_header(tw_request_t *r, const char *name, const char *value);
/* Appends one more request header name: value. Errors as
 * tw_request_set_header. */
int tw_request_add_header(tw_request_t *r, const char *name, const char *value);
/* Removes every request header named name; returns how many were removed,
 * or -1 with EPERM, or EINVAL for Content-Length / Transfer-Encoding. */
int tw_request_remove_header(tw_request_t *r, const char *name);
/* Replaces the client's address for the rest of the request (the real
 * client behind a trusted proxy): tw_request_peer, tw_request_peer_text,
 * later ACCESS checks and the logs see addr from now on. addr (AF_INET or
 * AF_INET6, len bytes) is copied. Errors: EINVAL (another family, or len
 * too short), EPERM (as above), ENOMEM. */
int tw_request_set_peer(tw_request_t *r, const struct sockaddr *addr, socklen_t len);
/* Records who the request authenticated as (auth modules), for the logs'
 * remote user; name is copied, NULL forgets it. Callable where
 * tw_request_set_peer is. Errors: EINVAL for a control character, EPERM,
 * ENOMEM. */
int tw_request_set_user(tw_request_t *r, const char *name);
/* The user recorded by tw_request_set_user (NUL-terminated), or NULL. */
const char *tw_request_user(const tw_request_t *r);

/* The request's pool: memory and cleanups that end with the request. */
tw_pool_t *tw_request_pool(tw_request_t *r);
/* Shorthand for tw_pool_alloc(tw_request_pool(r), n). NULL on ENOMEM. */
void *tw_request_alloc(tw_request_t *r, size_t n);
/* The loop the request runs on (for timers and fd watches). */
tw_loop_t *tw_request_loop(tw_request_t *r);

/* The module's per-request context slot (NULL until set). */
void *tw_request_ctx(const tw_request_t *r, const tw_module_t *module);
/* Sets the module's per-request context slot; survives internal redirects. */
void tw_request_set_ctx(tw_request_t *r, const tw_module_t *module, void *ctx);
/* The module's configuration for the request's route (what its configure
 * hook produced with TW_SCOPE_ROUTE), or NULL if the route has none. Only
 * meaningful from ACCESS on (the route is found in FIND_ROUTE). */
void *tw_request_route_conf(const tw_request_t *r, const tw_module_t *module);
/* The module's global configuration (TW_SCOPE_GLOBAL), or NULL. */
void *tw_request_global_conf(const tw_request_t *r, const tw_module_t *module);
/* The matched route's pattern as written in the config ("/api/"), or NULL
 * before FIND_ROUTE or when none matched. Comes from the config, never from
 * the request, so it is safe as a metrics label. Owned by the server. */
const char *tw_request_route_label(const tw_request_t *r);
/* The matched route's server as logs name it ("servers[0] (example.com)"),
 * or NULL likewise. Owned by the server. */
const char *tw_request_server_label(const tw_request_t *r);

/* Replaces the URI (path and optional "?query"), normalising the path as
 * the parser does. Called in POST_READ or REWRITE it takes effect in
 * FIND_ROUTE; called in ACCESS or CONTENT it is an internal redirect: once
 * the handler returns TW_NEXT the request goes through REWRITE and
 * FIND_ROUTE again, keeping module contexts. Errors: EINVAL for a path the
 * parser would refuse (or one not starting with '/', or with a control
 * character, space or '#'), ENOMEM, EPERM from another phase, once a
 * response was started, or after 10 redirects
 * (the error log names the module). */
int tw_request_set_uri(tw_request_t *r, const char *uri, size_t len);

/* Continues a request whose handler returned TW_SUSPENDED, as if that
 * handler had returned rc. Call it from a loop callback: it runs the
 * request on at once, so r may have ended (and must not be touched) when it
 * returns. Called from inside the request's own handler or callbacks, or
 * while another request's handler runs, it takes effect right after they
 * return. On a request whose client went away it just ends the request.
 * Calling it for a request that is not suspended logs an error and does
 * nothing. */
void tw_request_resume(tw_request_t *r, int rc);
/* Runs fn(r, arg) if the client goes away before the request ends. The
 * request then ends when the suspended handler resumes or right away if it
 * is not suspended. A hard stop of the worker (its drain timed out, or
 * SIGTERM) counts as every client going away, with the same guarantee: a
 * suspended request stays valid until its handler resumes it — except
 * that when the worker exits, after the modules' exit_worker hooks,
 * whatever is still suspended is ended without its handler (its pool
 * cleanups run). Errors: EINVAL (fn NULL), ENOMEM. */
int tw_request_on_abort(tw_request_t *r, tw_request_cb fn, void *arg);
/* Runs fn(r, arg) after ms milliseconds unless the request ends first (then
 * the timer is cancelled, never fired). Errors: EINVAL (fn NULL), ENOMEM. */
int tw_request_set_timer(tw_request_t *r, uint64_t ms, tw_request_cb fn, void *arg);

/* Reads the whole body (up to the route's body limit) into the pool, then
 * calls cb (possibly before this returns, e.g. for an empty body). Sends
 * "100 Continue" first if the client expects it; a handler that answers
 * without reading the body never causes a 100, and the connection closes
 * after its response (unless the whole body had already arrived). Errors:
 * EINVAL (cb NULL), EALREADY if the body is being or was read, EPIPE if
 * the client is gone. */
int tw_request_read_body(tw_request_t *r, tw_body_done_cb cb, void *arg);
/* The body read by tw_request_read_body; *len receives its size. */
const char *tw_request_body(const tw_request_t *r, size_t *len);
/* Streams the body through cb as it arrives, with back-pressure (see
 * tw_body_chunk_cb). Errors as tw_request_read_body. */
int tw_request_stream_body(tw_request_t *r, tw_body_chunk_cb cb, void *arg);
/* Resumes a body stream that cb paused. */
void tw_request_resume_body(tw_request_t *r);

/* ---- the response ------------------------------------------------------ */

/* Sets the status (200..599; 200 by default; 1xx responses are the
 * core's). Errors: EINVAL, EALREADY once the head was sent. */
int tw_response_set_status(tw_request_t *r, int status);
/* The response status so far; in LOG, 499 if the client went away before
 * a response head was sent. */
int tw_response_status(const tw_request_t *r);
/* Sets header name to value, replacing any earlier ones. Both are copied.
 * The framing headers are interpreted, not stored: Content-Length as
 * tw_response_set_content_length, "Connection: close" closes the
 * connection after this response, Transfer-Encoding is refused (EINVAL).
 * Errors: EINVAL for a name that is not a token or a value with a control
 * character (CR, LF, NUL, ...; HTAB is fine); EALREADY once the head was
 * sent; ENOMEM. */
int tw_response_set_header(tw_request_t *r, const char *name, const char *value);
/* Adds one more header name: value (for repeatable fields). Errors as
 * tw_response_set_header. */
int tw_response_add_header(tw_request_t *r, const char *name, const char *value);
/* Removes every header named name. Returns how many were removed, or -1
 * with EALREADY once the head was sent. */
int tw_response_remove_header(tw_request_t *r, const char *name);
/* The first response header named name, NUL-terminated, or NULL. */
const char *tw_response_header(const tw_request_t *r, const char *name);
/* Declares the body length (otherwise streamed bodies go chunked to 1.1
 * clients and close-delimited to 1.0 clients). Errors: EINVAL over
 * INT64_MAX, EALREADY once the head was sent. */
int tw_response_set_content_length(tw_request_t *r, uint64_t len);

/* Sends a whole response in one call: status, Content-Type (may be NULL),
 * the body (copied; len may be 0) with Content-Length, and finishes. For a
 * 304 the body is ignored and only a length declared earlier is sent.
 * Errors: EINVAL for a status outside 200..599 or a Content-Type with a
 * control character, EALREADY once the head was sent or the response
 * finished, ENOMEM, EPIPE if the client is gone, EIO if a header filter
 * refused the response (its error page was sent instead). */
int tw_response_send(tw_request_t *r, int status, const char *content_type, const void *body,
                     size_t len);
/* Streams a piece of body (copied), sending the head first if needed.
 * Returns 0, or 1 when the client is not keeping up: stop writing until
 * the drain callback runs. -1 with errno: EPIPE once the client is gone
 * (or after a body filter failed), EIO if a header filter refused the
 * response (its error page was sent instead) or a body filter failed now
 * (the response ends there and the connection closes after it), EALREADY
 * once the response is finished, ENOMEM. */
int tw_response_write(tw_request_t *r, const void *data, size_t len);
/* Streams len bytes of fd from offset with sendfile(2) (body filters that
 * must see the bytes get them read from the file). Takes ownership of fd
 * (closed on every error too). Returns as tw_response_write; EBADF for a
 * negative fd. */
int tw_response_sendfile(tw_request_t *r, int fd, off_t offset, size_t len);
/* Runs fn(r, arg) once the queued response bytes drop under the low-water
 * mark (once per call; from the loop if they already are). Not run if the
 * client goes away (abort callbacks are). Errors: EINVAL (fn NULL),
 * ENOMEM. */
int tw_response_on_drain(tw_request_t *r, tw_request_cb fn, void *arg);
/* Ends the response body (the last chunk for chunked responses). The
 * request then goes on to LOG once its bytes are queued, never before the
 * current callback returns (so the caller may still use r and its pool).
 * A body shorter than the declared Content-Length closes the connection
 * after it. Finishing after the client left, or after a header filter
 * replaced the response with its error page, succeeds (there is nothing
 * to send). Errors: EALREADY once finished (a failed body filter also
 * finishes the response), EIO if a body filter fails on the end, EPIPE if
 * the client went away meanwhile, ENOMEM. */
int tw_response_finish(tw_request_t *r);
/* True once the status line and headers were handed to the connection. */
bool tw_response_head_sent(const tw_request_t *r);
/* From a header filter: this module's body filter has nothing to do with
 * this response (gzip for a type it does not compress, say), so the body
 * goes past it; when no body filter is left to see the body, a file sent
 * with tw_response_sendfile stays zero-copy instead of being read into
 * memory for the filters. Since ABI 1.3. Errors: EPERM outside a header
 * filter. */
int tw_response_skip_body_filter(tw_request_t *r);
/* Passes a body piece on to the next body filter (or the connection).
 * For use inside a tw_body_filter_fn only. Returns TW_NEXT or TW_ERROR. */
int tw_body_filter_next(tw_request_t *r, const char *data, size_t len, bool last);

/* Body bytes handed to the connection for this response so far (not
 * counting the head or chunked framing; 0 for HEAD). Since ABI 1.1. */
uint64_t tw_response_body_bytes(const tw_request_t *r);
/* Microseconds since the request's head was complete. Since ABI 1.1. */
uint64_t tw_request_elapsed_us(const tw_request_t *r);

/* ---- values out of the request (since ABI 1.2) ---------------------------
 * Arguments and cookies are looked up on each call (a linear scan of the
 * query or the Cookie headers); a handler that reads many keeps what it
 * found in its request context. */

/* Percent-decodes src[0..len) into dst (which may be src itself; it needs
 * len bytes, the result is never longer), turning '+' into a space if
 * plus_is_space (query strings, forms). Returns the decoded length, or -1
 * with EINVAL for a '%' not followed by two hex digits (dst is then
 * partly written). Does not NUL-terminate. */
ssize_t tw_percent_decode(char *dst, const char *src, size_t len, bool plus_is_space);
/* The first query argument named name ("a" in "?a=1&b"), percent-decoded
 * with '+' as a space, into *value (NUL-terminated, in the request's pool;
 * empty for "?a" or "?a="). Names are compared after decoding, exactly.
 * Returns 1 if found, 0 if not (*value {NULL, 0}), -1 with EINVAL for a
 * malformed escape in that argument or ENOMEM. */
int tw_request_arg(tw_request_t *r, const char *name, tw_str_t *value);
/* The first cookie named name in the Cookie header fields (RFC 6265
 * "a=1; b=2", several fields allowed), its value as sent without
 * surrounding double quotes, not decoded; value points into the request's
 * head (not NUL-terminated). Returns 1 if found, 0 if not. */
int tw_request_cookie(const tw_request_t *r, const char *name, tw_str_t *value);
/* Capture i of the request's regex route: 0 is the whole match, 1..9 the
 * parenthesised groups, as offsets into tw_request_path (so not
 * NUL-terminated). Set in FIND_ROUTE (again after an internal redirect).
 * Returns 1, or 0 with *value {NULL, 0} when the route is not a regex
 * route, the group does not exist or did not take part, or i > 9. */
int tw_request_capture(const tw_request_t *r, unsigned i, tw_str_t *value);
/* Writes one line to the error log at level, prefixed with the module
 * whose code is running for r and followed by the request line and the
 * client address: "module auth: no key (request 'GET /x HTTP/1.1', client
 * 10.0.0.1)". Never fails visibly. */
void tw_request_log(const tw_request_t *r, tw_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The reason phrase of status ("Not Found"), or "Unknown". */
const char *tw_http_status_text(int status);

#ifdef __cplusplus
}
#endif
#endif
