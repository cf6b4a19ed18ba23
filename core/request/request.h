/* request.h — the request record and what the engine's files share.
 *
 * The engine is split by responsibility, one file each: engine.c (the
 * phase loop, hold/release/settle/resume/abort/end, error pages),
 * call.c (every call into plugin code), api.c (the request accessors,
 * URI, timers, abort callbacks), body.c (the request body API and its
 * delivery), headers.c (the response-header API), output.c (the head,
 * the filter chains, the output pump, back-pressure) and status.c (the
 * reason phrases). The wire is the transport's (transport.h): nothing
 * here knows about sockets, framing or the connection's fields.
 *
 * Lifetime: a request lives in a pool its transport owns. It ends once
 * LOG has run (after its response was queued, after a failure, or after
 * the peer left and no handler is suspended on it); then the transport's
 * done op resets the pool, which runs the request's cleanups (its timers,
 * the files it queued), so nothing armed for it fires into freed memory.
 * It never ends while plugin code of the request, or core code holding it
 * (r->running), is on the stack: only the outermost release ends it, and a
 * release inside a plugin's own callback defers the end to the loop
 * through the request's settle node (no allocation, so it cannot fail).
 * Core-internal: plugins see tw_request_t only through twister/http.h. */
#ifndef TWISTER_REQUEST_REQUEST_H
#define TWISTER_REQUEST_REQUEST_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "activity.h"
#include "http_conn.h"
#include "internal.h"
#include "phases.h"
#include "request/transport.h"
#include "route.h"
#include "twister/http.h"
#include "twister/loop.h"
#include "twister/pool.h"
#include "twister/variables.h"

#define TW_MAX_REDIRECTS 10

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

struct tw_request {
    tw_transport_t *t;
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
    size_t header_cap;             /* 0 while headers is the parser's array (edit.c copies it) */
    struct sockaddr_storage *peer; /* set by tw_request_set_peer; NULL: the transport's */
    socklen_t peer_len;
    char *peer_text;
    char *user; /* tw_request_set_user */
    char *id;   /* tw_request_id, made on first use */
    tw_body_kind_t body_kind;
    uint64_t content_length;
    bool is_head;

    /* ---- the phase engine ---- */
    tw_req_stage_t stage;
    tw_phase_t phase;
    size_t handler_index;      /* within the phase */
    const tw_module_t *module; /* whose code runs (or last ran) for this request */
    const char *where;         /* phase or callback name, for errors and activity */
    const tw_http_route_t *route;
    tw_str_t *captures;   /* a regex route's $0..$9, into path (args.c) */
    size_t capture_count; /* 0: not a regex route */
    void **ctx;           /* per module index */
    unsigned redirects;
    unsigned running; /* plugin code of this request is on the stack */
    bool suspended;
    bool resume_pending; /* resume was called while running */
    int resume_rc;
    bool uri_changed;
    int access_refusal;        /* `satisfy: any`: the last refusal's status, 0 if none */
    size_t access_header_mark; /* response headers before ACCESS, dropped again on a pass */
    bool aborted;              /* the client went away */
    bool in_header_filter;
    /* Body filters (bit i: the i-th after body_filter_start) whose module
     * said, from its header filter, that this body is none of its business
     * (tw_response_skip_body_filter): the bytes go past them. */
    uint64_t body_filters_skipped;
    unsigned in_body_filter; /* body filter calls on the stack */
    size_t body_filter_index;
    bool filter_failed;
    tw_req_cb_t *abort_cbs;
    tw_req_cb_t *drain_cbs;
    tw_loop_deferred_t settle_node; /* settle_cb, queued without allocating */
    tw_loop_deferred_t drain_node;  /* the drain callbacks' first run */

    /* ---- the request body ---- */
    tw_rb_mode_t rb_mode;
    bool rb_done; /* every body byte was delivered */
    bool rb_failed;
    bool rb_paused;       /* the chunk callback paused the stream */
    uint64_t rb_received; /* decoded body bytes so far */
    uint64_t body_limit;
    char *body;
    size_t body_len, body_cap;
    tw_body_done_cb body_done;
    tw_body_chunk_cb body_chunk;
    void *body_arg;
    const tw_module_t *body_module;

    /* ---- the response ---- */
    int status;
    tw_header_t *resp_headers;
    size_t resp_count, resp_cap;
    int64_t resp_length; /* Content-Length, -1 if unknown */
    bool resp_started;   /* a handler began producing a response */
    bool head_sent;
    bool finished;                    /* tw_response_finish ran (all output queued) */
    bool header_only;                 /* HEAD, 1xx, 204, 304: no body bytes */
    bool close;                       /* no request may follow this one on its connection */
    bool error_response;              /* the core's own error page is being sent */
    bool error_keeps_headers;         /* an ACCESS refusal: its headers go on the error page */
    uint64_t body_sent;               /* body bytes on the wire (after filters) */
    tw_out_op_t *out_head, *out_tail; /* output waiting behind a filtered sendfile */
    char *pump_buf;
};

/* ---- engine.c ---- */

/* Answers with the core's page for status, or closes the connection if a
 * response head already went out. The caller settles r. */
void tw_req_error(tw_request_t *r, int status);
/* The release of a public API call: never ends r inside the plugin's call
 * (a due end is deferred to the loop). */
void tw_req_api_release(tw_request_t *r);
/* Queues r's settle on the loop (once). */
void tw_req_schedule_settle(tw_request_t *r);
/* Engine work on r's transport (see tw_transport_ops_t.begin/end). */
static inline tw_transport_t *tw_req_begin(tw_request_t *r)
{
    r->t->ops->begin(r->t);
    return r->t;
}
/* Ends what tw_req_begin began; takes the transport because r may have
 * ended in between. */
static inline void tw_transport_end(tw_transport_t *t)
{
    t->ops->end(t);
}
/* The response can still reach the client. */
static inline bool tw_req_usable(const tw_request_t *r)
{
    return !r->aborted && r->t->ops->is_open(r->t);
}

/* ---- call.c ---- */

/* One call into plugin code: which function, and its arguments. */
typedef enum {
    TW_CALL_HANDLER,       /* handler(r) */
    TW_CALL_HEADER_FILTER, /* header_filter(r) */
    TW_CALL_BODY_FILTER,   /* body_filter(r, data, len, last) */
    TW_CALL_CB,            /* cb(r, arg) */
    TW_CALL_BODY_DONE,     /* body_done(r, status, arg) */
    TW_CALL_BODY_CHUNK,    /* body_chunk(r, status, data, len, last, arg) */
    TW_CALL_VARIABLE,      /* *value = variable(r) */
} tw_call_kind_t;

typedef struct {
    tw_call_kind_t kind;
    union {
        tw_handler_fn handler;
        tw_header_filter_fn header_filter;
        tw_body_filter_fn body_filter;
        tw_request_cb cb;
        tw_body_done_cb body_done;
        tw_body_chunk_cb body_chunk;
        tw_variable_fn variable;
    } fn;
    tw_str_t *value; /* TW_CALL_VARIABLE's result */
    void *arg;
    int status;
    const char *data;
    size_t len;
    bool last;
} tw_plugin_call_t;

/* Calls plugin code of module for r, with r->module/r->where and the crash
 * record set to it for the call and restored afterwards (keep_module: r
 * stays attributed to module, as after a phase handler, so that errors
 * about what it returned name it). Holds r, never ends it. Returns what
 * the function returned (0 for the void kinds). */
int tw_call_plugin(tw_request_t *r, const tw_module_t *module, const char *where,
                   const tw_plugin_call_t *call, bool keep_module);
/* Runs a request callback (timer, drain, abort) and then releases r,
 * which may end it. */
void tw_req_call_cb(tw_request_t *r, const tw_module_t *module, const char *where, tw_request_cb fn,
                    void *arg);
/* "core" for NULL. */
const char *tw_req_module_name(const tw_module_t *m);
/* module's index in the server's module list, or SIZE_MAX. */
size_t tw_req_module_index(tw_http_server_t *srv, const tw_module_t *m);

/* What a plugin is calling, for tw_req_api_allowed. */
enum {
    TW_API_HEADERS,
    TW_API_OUTPUT,
    TW_API_READ_BODY,
    TW_API_URI,
    TW_API_REQUEST /* changing the request itself (edit.c) */
};
/* Checks that the running plugin may call fn now; logs and sets EPERM if
 * not. */
bool tw_req_api_allowed(tw_request_t *r, const char *fn, int kind);

/* ---- variables.c ---- */

/* Checks the variable tables of the loaded modules mods[0..count): valid
 * names with getters, none the core or another module provides. Returns
 * -1 if all is well, else the index of the first offending module with
 * the reason in why. */
int tw_variables_check_modules(const tw_module_t *const *mods, size_t count, char *why,
                               size_t whylen);
/* tw_template_compile's parser: text against the core's variables and
 * those of mods[0..count) (disabled may be NULL), into pool. NULL with
 * *unknown the first unknown name, or with *unknown {NULL, 0} when memory
 * runs out. */
tw_template_t *tw_template_parse(tw_pool_t *pool, const char *text, const tw_module_t *const *mods,
                                 const bool *disabled, size_t count, tw_str_t *unknown);
/* The pieces of t (literal text and variables, in order). */
size_t tw_template_pieces(const tw_template_t *t);
/* Piece i's TW_VARIABLE_* flags; *is_variable says whether it is one. */
unsigned tw_template_piece_flags(const tw_template_t *t, size_t i, bool *is_variable);
/* tw_template_expand's writer: renders t with values[i] for each variable
 * piece i (literal pieces' entries are overwritten with their text) in
 * mode, into pool. NULL when memory runs out. */
char *tw_template_render(const tw_template_t *t, tw_template_mode_t mode, tw_str_t *values,
                         tw_pool_t *pool, size_t *len);

/* ---- args.c ---- */

/* Records a regex route's captures for r: count (offset pairs into r's
 * path, rm_so < 0 for an unset group), copied. count 0 clears them. */
void tw_req_set_captures(tw_request_t *r, const regmatch_t *m, size_t count);

/* ---- headers.c ---- */

/* Case-insensitive comparison of a header name. */
bool tw_req_name_is(const tw_str_t *s, const char *name, size_t n);
/* Adds a response header (copied). Returns 0 or -1 with ENOMEM. */
int tw_req_header_add(tw_request_t *r, const char *name, size_t nlen, const char *value,
                      size_t vlen);
/* Removes every header named name; returns how many. */
int tw_req_header_remove(tw_request_t *r, const char *name, size_t nlen);
/* True if value is a valid field value (no CTLs but HTAB); *len its length. */
bool tw_req_valid_value(const char *value, size_t *len);
/* True if name is a non-empty token; *len its length. */
bool tw_req_valid_name(const char *name, size_t *len);

/* ---- output.c ---- */

/* Writes the head (after the header filters, unless it is an error page).
 * Returns 0, or a filter's failure (TW_ERROR or a status). */
int tw_req_send_head(tw_request_t *r);
/* A body piece on its way out: through the filters if any. */
int tw_req_body_out(tw_request_t *r, const char *data, size_t len, bool last);
/* Ends the body: the last piece, the Content-Length check. */
int tw_req_finish_now(tw_request_t *r);

#endif
