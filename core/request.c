/* request.c — the request and response API of twister/http.h and the phase
 * engine that drives a request through POST_READ, REWRITE, FIND_ROUTE,
 * ACCESS, CONTENT, the filters and LOG.
 *
 * The engine keeps a position (phase, handler index) in the compiled flat
 * table (phases.h), so a suspended handler resumes exactly where it left.
 *
 * When a request may end. Ending runs LOG and resets the pool, so it must
 * never happen while plugin code of the request, or core code holding the
 * request, is on the stack. r->running counts those holders; only the
 * outermost release ends the request. Public API calls made from a plugin's
 * own callbacks (say, tw_response_send from its timer) hold the request
 * too, and if their release finds the request ready to end they schedule
 * the end on the loop instead of doing it inside the plugin's call: the
 * plugin may still touch its request context after tw_response_finish.
 * tw_request_resume is the exception: it runs the engine at once (unless
 * the engine is already on the stack, then it is deferred), so the request
 * may be gone when it returns. */
#include "request.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "activity.h"
#include "internal.h"
#include "twister/log.h"
#include "twister/module.h"

#define MAX_REDIRECTS 10
#define PUMP_CHUNK (64 * 1024)

static void run(tw_request_t *r);
static bool handle_rc(tw_request_t *r, int rc);
static void settle(tw_request_t *r);
static void request_error(tw_request_t *r, int status);
static void schedule_settle(tw_request_t *r);
static int finish_now(tw_request_t *r);
static void pump(tw_request_t *r);
static void drain_cb(tw_loop_t *loop, void *arg);

/* ---- small helpers ---------------------------------------------------------------- */

static const char *module_name(const tw_module_t *m)
{
    return m && m->name ? m->name : "core";
}

static size_t module_index(tw_http_server_t *srv, const tw_module_t *m)
{
    if (!m)
        return SIZE_MAX;
    if (srv->last_module == m)
        return srv->last_module_index;
    for (size_t i = 0; i < srv->module_count; i++) {
        if (srv->modules[i] == m) {
            srv->last_module = m;
            srv->last_module_index = i;
            return i;
        }
    }
    return SIZE_MAX;
}

static inline bool conn_usable(const tw_request_t *r)
{
    return r->conn->stream && !tw_stream_closed(r->conn->stream) && !r->aborted;
}

static inline const tw_phase_table_t *table(const tw_request_t *r)
{
    return r->srv->phases;
}

void tw_request_hold(tw_request_t *r)
{
    r->running++;
}

void tw_request_release(tw_request_t *r)
{
    if (--r->running > 0)
        return;
    settle(r);
}

/* The release of a public API call: never ends r inside the plugin's call. */
static void api_release(tw_request_t *r)
{
    if (--r->running > 0 || r->stage >= TW_AT_LOG)
        return;
    bool resume = r->suspended && r->resume_pending;
    bool end = !r->suspended && (r->finished || r->aborted) && (!r->out_head || r->aborted);
    if (resume || end)
        schedule_settle(r);
}

/* ---- the activity record (what the master logs if we crash) --------------------- */

typedef struct {
    bool saved;
    tw_activity_t copy;
} activity_save_t;

/* Fills one field of the record: truncated, NUL-terminated, control bytes
 * replaced so the crash log line stays one line. */
static void activity_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    dst[len] = '\0';
}

/* Written before module is set, so a crash never shows a module with a
 * stale phase or request. */
static void activity_write(tw_activity_t *a, const char *module, const char *phase,
                           const char *request, size_t request_len, bool request_clean)
{
    a->module[0] = '\0';
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    activity_field(a->phase, sizeof a->phase, phase, strlen(phase));
    if (request_clean) { /* a parsed request line: nothing to replace */
        size_t n = request_len < sizeof a->request ? request_len : sizeof a->request - 1;
        memcpy(a->request, request, n);
        a->request[n] = '\0';
    } else {
        activity_field(a->request, sizeof a->request, request, request_len);
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    activity_field(a->module, sizeof a->module, module, strlen(module));
}

static void activity_enter(tw_request_t *r, const tw_module_t *m, const char *what,
                           activity_save_t *save)
{
    tw_http_server_t *srv = r->srv;
    tw_activity_t *a = srv->activity;
    save->saved = false;
    if (!a)
        return;
    if (a->module[0]) { /* nested (a filter under a handler): restore it after */
        save->saved = true;
        memcpy(&save->copy, a, sizeof save->copy);
    }
    if (srv->activity_serial == r->serial && a->request[0]) {
        /* The record already holds this request's line (the handlers of
         * one request follow each other): only the phase and module. */
        const char *module = module_name(m);
        a->module[0] = '\0';
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        activity_field(a->phase, sizeof a->phase, what, strlen(what));
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        activity_field(a->module, sizeof a->module, module, strlen(module));
    } else {
        activity_write(a, module_name(m), what, r->request_line.ptr, r->request_line.len,
                       r->request_line_clean);
        srv->activity_serial = r->serial;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static void activity_leave(tw_request_t *r, activity_save_t *save)
{
    tw_activity_t *a = r->srv->activity;
    if (!a)
        return;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (save->saved) {
        memcpy(a, &save->copy, sizeof *a);
        r->srv->activity_serial = 0; /* whose line it is now is not known */
    } else {
        a->module[0] = '\0';
    }
}

/* Calls a phase handler with the bookkeeping every plugin call needs.
 * r->module stays the handler's afterwards: errors about what it returned,
 * and API misuse from its own loop callbacks, are logged under its name. */
static int call_handler(tw_request_t *r, const tw_module_t *m, tw_handler_fn fn, const char *what)
{
    activity_save_t save;
    r->module = m;
    r->where = what;
    r->running++;
    activity_enter(r, m, what, &save);
    int rc = fn(r);
    activity_leave(r, &save);
    r->running--;
    return rc;
}

void tw_request_call_cb(tw_request_t *r, const tw_module_t *module, const char *what,
                        tw_request_cb fn, void *arg)
{
    activity_save_t save;
    const tw_module_t *prev_module = r->module;
    const char *prev_where = r->where;
    r->module = module;
    r->where = what;
    r->running++;
    activity_enter(r, module, what, &save);
    fn(r, arg);
    activity_leave(r, &save);
    r->module = prev_module;
    r->where = prev_where;
    tw_request_release(r);
}

/* Checks that the running plugin may call fn now; logs and sets EPERM if
 * not. */
enum {
    API_HEADERS,
    API_OUTPUT,
    API_READ_BODY,
    API_URI
};

static bool api_allowed(tw_request_t *r, const char *fn, int kind)
{
    const char *why = NULL;
    if (r->stage >= TW_AT_LOG)
        why = "after the response was sent (LOG phase)";
    else if (r->in_body_filter && kind != API_HEADERS)
        why = "from a body filter";
    else if (r->in_body_filter)
        why = "from a body filter (the head is out)";
    else if (r->in_header_filter && kind != API_HEADERS)
        why = "from a header filter";
    else if (kind == API_URI && (r->stage != TW_AT_PHASES || r->phase == TW_PHASE_FIND_ROUTE))
        why = r->stage != TW_AT_PHASES ? "once the response is being produced" : "in FIND_ROUTE";
    if (!why)
        return true;
    tw_log_error("module %s called %s %s; ignored", module_name(r->module), fn, why);
    errno = EPERM;
    return false;
}

/* ---- creating requests --------------------------------------------------------------- */

static tw_str_t span_str(const char *base, tw_span_t s)
{
    tw_str_t out = {base + s.off, s.len};
    if (s.len == 0)
        out.ptr = "";
    return out;
}

static tw_request_t *request_alloc(tw_http_conn_t *c)
{
    tw_http_server_t *srv = c->srv;
    tw_request_t *r = tw_pool_calloc(c->w->pool, sizeof *r);
    if (!r)
        return NULL;
    r->conn = c;
    r->srv = srv;
    r->pool = c->w->pool;
    r->serial = ++srv->serial;
    r->start_us = tw_loop_now_us(srv->loop);
    r->status = 200;
    r->resp_length = -1;
    r->version = 11;
    r->body_limit = srv->body_limit;
    static const tw_str_t empty = {"", 0};
    r->method = r->target = r->query = r->host = r->request_line = empty;
    r->path = (tw_str_t){"/", 1};
    if (srv->module_count) {
        r->ctx = tw_pool_calloc(r->pool, srv->module_count * sizeof *r->ctx);
        if (!r->ctx)
            return NULL;
    }
    return r;
}

/* The request line (method SP target SP version) for logs. */
static void set_request_line(tw_request_t *r, const char *head, size_t len)
{
    if (!r->method.len)
        return;
    const char *start = r->method.ptr;
    const char *end = head + len;
    const char *p = r->target.len ? r->target.ptr + r->target.len : start + r->method.len;
    while (p < end && *p != '\r' && *p != '\n')
        p++;
    r->request_line = (tw_str_t){start, (size_t)(p - start)};
}

tw_request_t *tw_request_create(tw_http_conn_t *c, const tw_http_parser_t *p, const char *data,
                                int *status)
{
    *status = 0;
    tw_request_t *r = request_alloc(c);
    if (!r)
        return NULL;
    char *head = tw_pool_alloc(r->pool, p->head_len + 1);
    tw_header_t *headers =
        p->field_count ? tw_pool_alloc(r->pool, p->field_count * sizeof *headers) : NULL;
    if (!head || (p->field_count && !headers))
        return NULL;
    memcpy(head, data, p->head_len);
    head[p->head_len] = '\0';

    r->method = span_str(head, p->method);
    r->target = span_str(head, p->target);
    r->query = span_str(head, p->query);
    r->host = span_str(head, p->host_name);
    r->version = p->version;
    r->target_form = p->target_form;
    r->body_kind = p->body_kind;
    r->content_length = p->body_kind == TW_BODY_LENGTH ? p->content_length : 0;
    r->client_keep_alive = p->keep_alive;
    r->client_close = !p->keep_alive;
    r->expect_continue = p->expect_continue;
    r->is_head = r->method.len == 4 && memcmp(r->method.ptr, "HEAD", 4) == 0;
    for (size_t i = 0; i < p->field_count; i++) {
        headers[i].name = span_str(head, p->fields[i].name);
        headers[i].value = span_str(head, p->fields[i].value);
    }
    r->headers = headers;
    r->header_count = p->field_count;
    set_request_line(r, head, p->head_len);
    r->request_line_clean = true; /* the parser allows no control characters in it */

    if (p->target_form == TW_TARGET_ORIGIN || p->target_form == TW_TARGET_ABSOLUTE) {
        char *path = tw_pool_alloc(r->pool, p->path.len + 2);
        size_t plen = 0;
        if (!path)
            return NULL;
        if (p->path.len == 0) {
            path[0] = '/';
            path[1] = '\0';
            plen = 1;
        } else if (tw_http_normalize_path(head + p->path.off, p->path.len, path, &plen) != 0) {
            *status = 400;
            return NULL;
        }
        r->path = (tw_str_t){path, plen};
    } else if (p->target_form == TW_TARGET_ASTERISK) {
        r->path = (tw_str_t){"*", 1};
    } else {
        r->path = (tw_str_t){"", 0};
    }
    return r;
}

tw_request_t *tw_request_create_bad(tw_http_conn_t *c, const tw_http_parser_t *p, const char *data,
                                    size_t len)
{
    tw_request_t *r = request_alloc(c);
    if (!r)
        return NULL;
    r->client_keep_alive = false;
    /* A HEAD is known from its method alone, so the error page for a
     * request line refused before its end (414, 400) has no body; data no
     * longer holds the head after a timeout (408): the connection noted it. */
    bool have_method = data && p->method.len && (size_t)p->method.off + p->method.len <= len;
    if (have_method)
        r->is_head = p->method.len == 4 && memcmp(data + p->method.off, "HEAD", 4) == 0;
    else
        r->is_head = c->w && c->w->head_is_head;
    if (r->is_head)
        r->method = (tw_str_t){"HEAD", 4};
    /* Keep the method, and the target when it was read, for the log. */
    if (have_method) {
        bool have_target = p->target.len && (size_t)p->target.off + p->target.len <= len;
        size_t n = have_target ? (size_t)p->target.off + p->target.len
                               : (size_t)p->method.off + p->method.len;
        char *head = n <= 8192 ? tw_pool_strndup(r->pool, data, n) : NULL;
        if (head) {
            r->method = span_str(head, p->method);
            if (have_target)
                r->target = span_str(head, p->target);
            set_request_line(r, head, n);
        }
    }
    return r;
}

/* ---- the phase engine ------------------------------------------------------------------ */

void tw_request_run(tw_request_t *r)
{
    r->stage = TW_AT_PHASES;
    r->phase = TW_PHASE_POST_READ;
    r->handler_index = 0;
    run(r);
}

/* What a route without a method list accepts (TRACE is refused). */
static const char *allow_any(const tw_http_server_t *srv)
{
    return srv->allow_any ? srv->allow_any : TW_HTTP_ALLOW_ANY;
}

/* Answers OPTIONS for the server ("*") or a route: Allow, no content. */
static int answer_options(tw_request_t *r, const char *allow)
{
    tw_response_set_header(r, "Allow", allow);
    return tw_response_send(r, 200, NULL, NULL, 0) == 0 ? TW_DONE : TW_ERROR;
}

/* The core's FIND_ROUTE: the route, then 404, 405, 413 before any body byte
 * is read. On a route without a method list the core answers OPTIONS
 * itself and refuses TRACE (405, as nginx does); a route hands them to its
 * handler only by listing them. */
static int find_route(tw_request_t *r)
{
    tw_http_server_t *srv = r->srv;
    if (r->target_form == TW_TARGET_ASTERISK) {
        /* "OPTIONS *": what the server supports as a whole. */
        return answer_options(r, allow_any(srv));
    }
    if (r->target_form == TW_TARGET_AUTHORITY) {
        /* CONNECT: no tunnels here. */
        r->force_close = true;
        return 501;
    }
    const tw_http_route_t *route = NULL;
    int rc = srv->find_route
                 ? srv->find_route(srv->find_route_arg, r, r->conn->listener_index, &route)
                 : 404;
    if (rc != 0 || !route)
        return rc >= 400 && rc <= 599 ? rc : 404;
    r->route = route;
    if (route->methods) {
        bool ok = false;
        for (const char *const *m = route->methods; *m && !ok; m++) {
            size_t n = strlen(*m);
            if ((n == r->method.len && memcmp(*m, r->method.ptr, n) == 0) ||
                (r->is_head && strcmp(*m, "GET") == 0))
                ok = true;
        }
        if (!ok)
            return 405;
    } else if (r->method.len == 7 && memcmp(r->method.ptr, "OPTIONS", 7) == 0) {
        return answer_options(r, allow_any(srv));
    } else if (r->method.len == 5 && memcmp(r->method.ptr, "TRACE", 5) == 0) {
        return 405; /* request_error adds Allow: allow_any */
    }
    r->body_limit = route->body_limit ? route->body_limit : srv->body_limit;
    if (r->body_kind == TW_BODY_LENGTH && r->content_length > r->body_limit &&
        r->rb_mode == TW_RB_NONE) {
        r->force_close = true;
        return 413;
    }
    return TW_NEXT;
}

/* Runs handlers from the saved position until the request suspends, hands
 * its response to a handler, or fails. May end r. */
static void run(tw_request_t *r)
{
    for (;;) {
        if (r->stage != TW_AT_PHASES)
            return;
        const tw_phase_table_t *t = table(r);
        int rc;
        switch (r->phase) {
        case TW_PHASE_POST_READ:
        case TW_PHASE_REWRITE:
        case TW_PHASE_ACCESS: {
            size_t i = t ? t->phase_start[r->phase] + r->handler_index : 0;
            if (!t || i >= t->phase_start[r->phase + 1]) {
                r->phase = r->phase + 1;
                r->handler_index = 0;
                continue;
            }
            const tw_phase_entry_t *e = &t->entries[i];
            rc = call_handler(r, e->module, e->fn.handler, tw_phase_name(r->phase));
            break;
        }
        case TW_PHASE_FIND_ROUTE:
            r->where = "FIND_ROUTE";
            r->module = NULL;
            r->running++; /* its OPTIONS answer must not end r under us */
            rc = find_route(r);
            r->running--;
            break;
        case TW_PHASE_CONTENT:
            if (!r->route || !r->route->content) {
                if (r->route)
                    tw_log_error("route %s has no content handler",
                                 r->route->name ? r->route->name : "?");
                rc = r->route ? 500 : 404;
                break;
            }
            rc = call_handler(r, r->route->handler, r->route->content, "CONTENT");
            break;
        default:
            return;
        }
        if (!handle_rc(r, rc))
            return;
    }
}

/* Acts on a handler's answer; true to keep running handlers. May end r
 * (then returns false). */
static bool handle_rc(tw_request_t *r, int rc)
{
    if (rc == TW_SUSPENDED) {
        if (r->resume_pending) { /* resumed before it even returned */
            r->resume_pending = false;
            rc = r->resume_rc;
        } else {
            r->suspended = true;
            return false;
        }
    } else if (r->resume_pending) {
        tw_log_error("module %s called tw_request_resume without returning TW_SUSPENDED",
                     module_name(r->module));
        r->resume_pending = false;
    }
    if (r->aborted) {
        settle(r);
        return false;
    }
    if ((rc == TW_NEXT || rc == TW_DECLINED) && r->resp_started && r->phase != TW_PHASE_CONTENT) {
        /* It answered: whatever it says, the response is under way. */
        rc = TW_DONE;
    }
    switch (rc) {
    case TW_NEXT:
        if (r->uri_changed && (r->phase == TW_PHASE_ACCESS || r->phase == TW_PHASE_CONTENT) &&
            !r->resp_started) {
            r->uri_changed = false;
            if (++r->redirects > MAX_REDIRECTS) {
                tw_log_error("more than %d internal redirects for '%.*s'", MAX_REDIRECTS,
                             (int)r->request_line.len, r->request_line.ptr);
                request_error(r, 500);
                settle(r);
                return false;
            }
            r->route = NULL;
            r->phase = TW_PHASE_REWRITE;
            r->handler_index = 0;
            return true;
        }
        if (r->phase == TW_PHASE_CONTENT)
            goto done;
        r->uri_changed = false;
        r->phase = r->phase + 1;
        r->handler_index = 0;
        return true;
    case TW_DECLINED:
        if (r->phase == TW_PHASE_CONTENT) {
            if (r->resp_started)
                goto done;
            request_error(r, 404);
            settle(r);
            return false;
        }
        r->handler_index++;
        return true;
    case TW_DONE:
    done:
        r->stage = TW_AT_RESPONSE;
        settle(r);
        return false;
    case TW_ERROR:
        request_error(r, 500);
        settle(r);
        return false;
    default:
        if (rc < 200 || rc > 599) {
            tw_log_error("module %s returned %d from %s; answering 500", module_name(r->module), rc,
                         tw_phase_name(r->phase));
            rc = 500;
        }
        request_error(r, rc);
        settle(r);
        return false;
    }
}

static void resume_now(tw_request_t *r, int rc)
{
    r->suspended = false;
    if (r->aborted) {
        settle(r);
        return;
    }
    tw_request_hold(r);
    bool more = handle_rc(r, rc);
    if (more)
        run(r);
    /* handle_rc/run may have ended r only if running was 0; we hold it. */
    tw_request_release(r);
}

static void settle_cb(tw_loop_t *loop, void *arg)
{
    tw_request_t *r = arg;
    tw_http_conn_t *c = r->conn;
    (void)loop;
    r->settle_scheduled = false;
    tw_http_conn_enter(c);
    if (r->running == 0)
        settle(r);
    tw_http_conn_leave(c);
}

static void schedule_settle(tw_request_t *r)
{
    if (r->settle_scheduled)
        return;
    if (tw_loop_add_callback(r->srv->loop, settle_cb, r) == 0)
        r->settle_scheduled = true;
    else
        tw_log_error("cannot schedule the end of a request: out of memory");
}

static void request_end(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    r->stage = TW_AT_LOG;
    if (r->settle_scheduled)
        tw_loop_cancel_callbacks(c->srv->loop, settle_cb, r);
    if (r->drain_scheduled)
        tw_loop_cancel_callbacks(c->srv->loop, drain_cb, r);
    r->settle_scheduled = r->drain_scheduled = false;
    if (r->aborted && !r->head_sent)
        r->status = 499; /* nginx's "client closed request", for the log */
    const tw_phase_table_t *t = table(r);
    if (t) {
        r->phase = TW_PHASE_LOG;
        r->running++; /* LOG handlers cannot end the request twice */
        for (size_t i = t->phase_start[TW_PHASE_LOG]; i < t->phase_start[TW_PHASE_LOG + 1]; i++) {
            const tw_phase_entry_t *e = &t->entries[i];
            int rc = call_handler(r, e->module, e->fn.handler, "LOG");
            if (rc == TW_SUSPENDED)
                tw_log_error("module %s suspended in LOG; LOG handlers cannot suspend",
                             module_name(e->module));
        }
        r->running--;
    }
    r->stage = TW_AT_ENDED;
    tw_http_conn_request_done(r); /* resets the pool: r is gone */
}

/* Ends r if it is due (its response is out, or the client left) and no
 * one holds it; resumes it if a resume is pending. */
static void settle(tw_request_t *r)
{
    if (r->running > 0 || r->stage >= TW_AT_LOG)
        return;
    if (r->suspended) {
        if (r->resume_pending) {
            r->resume_pending = false;
            resume_now(r, r->resume_rc);
        }
        return;
    }
    if (r->aborted) {
        request_end(r);
        return;
    }
    if (r->stage == TW_AT_PHASES)
        return; /* running handlers; they decide */
    if (r->finished && !r->out_head)
        request_end(r);
}

void tw_request_resume(tw_request_t *r, int rc)
{
    if (r->stage >= TW_AT_LOG) {
        tw_log_error("tw_request_resume on a request that has ended");
        return;
    }
    if (r->running > 0) {
        /* From the handler itself or one of the request's callbacks: act
         * once it returns. */
        if (r->resume_pending) {
            tw_log_error("module %s resumed a request twice", module_name(r->module));
            return;
        }
        r->resume_pending = true;
        r->resume_rc = rc;
        return;
    }
    if (!r->suspended) {
        tw_log_error("tw_request_resume on a request that is not suspended (module %s)",
                     module_name(r->module));
        return;
    }
    if (r->srv->depth > 0 || r->resume_pending) {
        /* The engine is on the stack (another request's handler): later. */
        r->resume_pending = true;
        r->resume_rc = rc;
        schedule_settle(r);
        return;
    }
    tw_http_conn_t *c = r->conn;
    tw_http_conn_enter(c);
    resume_now(r, rc);
    tw_http_conn_leave(c);
}

void tw_request_abort(tw_request_t *r, bool force)
{
    if (r->stage >= TW_AT_LOG)
        return;
    tw_request_hold(r);
    if (!r->aborted) {
        r->aborted = true;
        r->srv->counters.aborted++;
        if (r->rb_mode != TW_RB_NONE && !r->rb_done && !r->rb_failed)
            tw_request_body_fail(r, TW_ERROR);
        r->out_head = r->out_tail = NULL; /* their files close with the pool */
        r->drain_cbs = NULL;
        while (r->abort_cbs) {
            tw_req_cb_t *cb = r->abort_cbs;
            r->abort_cbs = cb->next;
            tw_request_call_cb(r, cb->module, "abort", cb->fn, cb->arg);
        }
    }
    if (force) {
        r->suspended = false;
        r->resume_pending = false;
    }
    tw_request_release(r);
}

/* ---- error responses ------------------------------------------------------------------- */

static bool status_closes(int status)
{
    switch (status) {
    case 400:
    case 408:
    case 413:
    case 414:
    case 417:
    case 431:
    case 501:
    case 505:
        return true;
    default:
        return false;
    }
}

static void resp_reset(tw_request_t *r)
{
    r->resp_count = 0;
    r->resp_length = -1;
}

static int resp_add(tw_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen);
static int write_head(tw_request_t *r);
static int wire_body(tw_request_t *r, const char *data, size_t len, bool last);

/* Answers with the core's page for status, or closes the connection if a
 * response head already went out. The caller settles r. */
static void request_error(tw_request_t *r, int status)
{
    tw_http_conn_t *c = r->conn;
    if (r->stage >= TW_AT_LOG)
        return;
    r->stage = TW_AT_RESPONSE;
    if (status < 200 || status > 599)
        status = 500;
    if (status_closes(status))
        c->must_close = true;
    if (r->finished)
        return;
    if (r->head_sent || !conn_usable(r)) {
        if (r->head_sent)
            tw_log_error("module %s failed after the response head was sent; closing the "
                         "connection",
                         module_name(r->module));
        c->must_close = true;
        r->force_close = true;
        r->finished = true;
        r->out_head = r->out_tail = NULL;
        return;
    }
    const char *text = tw_http_status_text(status);
    char body[256];
    int n = snprintf(body, sizeof body,
                     "<html><head><title>%d %s</title></head>"
                     "<body><h1>%d %s</h1></body></html>\n",
                     status, text, status, text);
    if (n < 0 || (size_t)n >= sizeof body)
        n = 0;
    resp_reset(r);
    r->out_head = r->out_tail = NULL;
    r->status = status;
    r->error_response = true;
    r->resp_started = true;
    resp_add(r, "Content-Type", 12, "text/html; charset=utf-8", 24);
    if (status == 405 && r->route) {
        /* The route's list; for a route without one, what the core's own
         * refusal (TRACE, in FIND_ROUTE) leaves allowed. A handler's 405
         * on such a route says nothing the core could list. */
        const char *allow = r->route->allow;
        if (!allow && !r->route->methods && r->phase == TW_PHASE_FIND_ROUTE)
            allow = allow_any(r->srv);
        if (allow)
            resp_add(r, "Allow", 5, allow, strlen(allow));
    }
    r->resp_length = n;
    if (write_head(r) == 0)
        wire_body(r, body, (size_t)n, true);
    r->finished = true;
}

void tw_request_fail(tw_request_t *r, int status)
{
    tw_http_conn_t *c = r->conn;
    tw_request_hold(r);
    r->stage = TW_AT_PHASES;
    request_error(r, status);
    c->must_close = true;
    tw_request_release(r);
}

/* ---- the request ------------------------------------------------------------------------ */

tw_str_t tw_request_method(const tw_request_t *r)
{
    return r->method;
}

bool tw_request_method_is(const tw_request_t *r, const char *name)
{
    size_t n = strlen(name);
    return n == r->method.len && memcmp(name, r->method.ptr, n) == 0;
}

tw_str_t tw_request_target(const tw_request_t *r)
{
    return r->target;
}

tw_str_t tw_request_path(const tw_request_t *r)
{
    return r->path;
}

tw_str_t tw_request_query(const tw_request_t *r)
{
    return r->query;
}

int tw_request_version(const tw_request_t *r)
{
    return r->version;
}

tw_str_t tw_request_host(const tw_request_t *r)
{
    return r->host;
}

static bool name_is(const tw_str_t *s, const char *name, size_t n)
{
    return s->len == n && strncasecmp(s->ptr, name, n) == 0;
}

const tw_header_t *tw_request_header(const tw_request_t *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->header_count; i++)
        if (name_is(&r->headers[i].name, name, n))
            return &r->headers[i];
    return NULL;
}

const tw_header_t *tw_request_header_next(const tw_request_t *r, const char *name,
                                          const tw_header_t *prev)
{
    if (!prev)
        return tw_request_header(r, name);
    if (prev < r->headers || prev >= r->headers + r->header_count)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = (size_t)(prev - r->headers) + 1; i < r->header_count; i++)
        if (name_is(&r->headers[i].name, name, n))
            return &r->headers[i];
    return NULL;
}

size_t tw_request_header_count(const tw_request_t *r)
{
    return r->header_count;
}

const tw_header_t *tw_request_header_at(const tw_request_t *r, size_t i)
{
    return i < r->header_count ? &r->headers[i] : NULL;
}

const struct sockaddr *tw_request_peer(const tw_request_t *r, socklen_t *len)
{
    if (len)
        *len = r->conn->peer_len;
    return &r->conn->peer.sa;
}

const char *tw_request_peer_text(const tw_request_t *r)
{
    return tw_http_conn_peer_text(r->conn);
}

int64_t tw_request_content_length(const tw_request_t *r)
{
    if (r->body_kind == TW_BODY_CHUNKED)
        return -1;
    return r->body_kind == TW_BODY_LENGTH ? (int64_t)r->content_length : 0;
}

tw_pool_t *tw_request_pool(tw_request_t *r)
{
    return r->pool;
}

void *tw_request_alloc(tw_request_t *r, size_t n)
{
    return tw_pool_alloc(r->pool, n);
}

uint64_t tw_request_elapsed_us(const tw_request_t *r)
{
    uint64_t now = tw_clock_us();
    return now > r->start_us ? now - r->start_us : 0;
}

uint64_t tw_response_body_bytes(const tw_request_t *r)
{
    return r->body_sent; /* 0 for HEAD and the other header-only responses */
}

tw_loop_t *tw_request_loop(tw_request_t *r)
{
    return r->srv->loop;
}

void *tw_request_ctx(const tw_request_t *r, const tw_module_t *module)
{
    size_t i = module_index(r->srv, module);
    return i == SIZE_MAX || !r->ctx ? NULL : r->ctx[i];
}

void tw_request_set_ctx(tw_request_t *r, const tw_module_t *module, void *ctx)
{
    size_t i = module_index(r->srv, module);
    if (i == SIZE_MAX || !r->ctx) {
        tw_log_error("tw_request_set_ctx: module %s is not loaded", module_name(module));
        return;
    }
    r->ctx[i] = ctx;
}

void *tw_request_route_conf(const tw_request_t *r, const tw_module_t *module)
{
    if (!r->route || !r->route->module_conf)
        return NULL;
    size_t i = module_index(r->srv, module);
    return i == SIZE_MAX ? NULL : r->route->module_conf[i];
}

void *tw_request_global_conf(const tw_request_t *r, const tw_module_t *module)
{
    if (!r->srv->global_conf)
        return NULL;
    size_t i = module_index(r->srv, module);
    return i == SIZE_MAX ? NULL : r->srv->global_conf[i];
}

int tw_request_set_uri(tw_request_t *r, const char *uri, size_t len)
{
    if (!api_allowed(r, "tw_request_set_uri", API_URI))
        return -1;
    if (r->resp_started) {
        tw_log_error("module %s called tw_request_set_uri after starting a response",
                     module_name(r->module));
        errno = EPERM;
        return -1;
    }
    bool redirect = r->phase == TW_PHASE_ACCESS || r->phase == TW_PHASE_CONTENT;
    if (redirect && r->redirects >= MAX_REDIRECTS) {
        tw_log_error("module %s: more than %d internal redirects", module_name(r->module),
                     MAX_REDIRECTS);
        errno = EPERM;
        return -1;
    }
    if (!uri || len == 0 || uri[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    const char *q = memchr(uri, '?', len);
    size_t plen = q ? (size_t)(q - uri) : len;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)uri[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '#') {
            errno = EINVAL;
            return -1;
        }
    }
    char *path = tw_pool_alloc(r->pool, plen + 2);
    if (!path) {
        errno = ENOMEM;
        return -1;
    }
    size_t out = 0;
    if (tw_http_normalize_path(uri, plen, path, &out) != 0) {
        errno = EINVAL;
        return -1;
    }
    tw_str_t query = {"", 0};
    if (q) {
        char *qs = tw_pool_strndup(r->pool, q + 1, len - plen - 1);
        if (!qs) {
            errno = ENOMEM;
            return -1;
        }
        query = (tw_str_t){qs, len - plen - 1};
    }
    r->path = (tw_str_t){path, out};
    r->query = query;
    if (redirect)
        r->uri_changed = true;
    return 0;
}

int tw_request_on_abort(tw_request_t *r, tw_request_cb fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    tw_req_cb_t *cb = tw_pool_alloc(r->pool, sizeof *cb);
    if (!cb) {
        errno = ENOMEM;
        return -1;
    }
    *cb = (tw_req_cb_t){NULL, fn, arg, r->module};
    tw_req_cb_t **tail = &r->abort_cbs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = cb;
    return 0;
}

typedef struct {
    tw_timer_t timer;
    tw_request_t *r;
    tw_request_cb fn;
    void *arg;
    const tw_module_t *module;
} req_timer_t;

static void req_timer_fire(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    req_timer_t *rt = arg;
    tw_request_t *r = rt->r;
    tw_http_conn_t *c = r->conn;
    (void)loop;
    (void)t;
    tw_http_conn_enter(c);
    tw_request_call_cb(r, rt->module, "timer", rt->fn, rt->arg); /* may end r (rt with it) */
    tw_http_conn_leave(c);
}

static void req_timer_cleanup(void *arg)
{
    req_timer_t *rt = arg;
    tw_timer_stop(rt->r->srv->loop, &rt->timer);
}

int tw_request_set_timer(tw_request_t *r, uint64_t ms, tw_request_cb fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (r->stage >= TW_AT_LOG) {
        errno = EPERM;
        return -1;
    }
    req_timer_t *rt = tw_pool_alloc(r->pool, sizeof *rt);
    if (!rt || tw_pool_add_cleanup(r->pool, req_timer_cleanup, rt) != 0) {
        errno = ENOMEM;
        return -1;
    }
    rt->r = r;
    rt->fn = fn;
    rt->arg = arg;
    rt->module = r->module;
    tw_timer_init(&rt->timer, req_timer_fire, rt);
    if (tw_timer_start(r->srv->loop, &rt->timer, ms) != 0)
        return -1;
    return 0;
}

/* ---- the request body ------------------------------------------------------------------- */

static int body_begin(tw_request_t *r, const char *fn, tw_rb_mode_t mode)
{
    if (!api_allowed(r, fn, API_READ_BODY))
        return -1;
    if (r->rb_mode != TW_RB_NONE) {
        errno = EALREADY;
        return -1;
    }
    if (r->aborted) {
        errno = EPIPE;
        return -1;
    }
    r->rb_mode = mode;
    r->body_module = r->module;
    return 0;
}

static void body_start(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    tw_http_conn_enter(c);
    tw_request_hold(r);
    if (r->body_kind == TW_BODY_LENGTH && r->content_length > r->body_limit)
        tw_request_body_fail(r, 413);
    else
        tw_http_conn_body_start(r);
    api_release(r);
    tw_http_conn_leave(c);
}

int tw_request_read_body(tw_request_t *r, tw_body_done_cb cb, void *arg)
{
    if (!cb) {
        errno = EINVAL;
        return -1;
    }
    if (body_begin(r, "tw_request_read_body", TW_RB_WHOLE) != 0)
        return -1;
    r->body_done = cb;
    r->body_arg = arg;
    body_start(r);
    return 0;
}

const char *tw_request_body(const tw_request_t *r, size_t *len)
{
    if (len)
        *len = r->rb_mode == TW_RB_WHOLE && r->rb_done ? r->body_len : 0;
    return r->rb_mode == TW_RB_WHOLE && r->rb_done && r->body ? r->body : "";
}

int tw_request_stream_body(tw_request_t *r, tw_body_chunk_cb cb, void *arg)
{
    if (!cb) {
        errno = EINVAL;
        return -1;
    }
    if (body_begin(r, "tw_request_stream_body", TW_RB_STREAM) != 0)
        return -1;
    r->body_chunk = cb;
    r->body_arg = arg;
    body_start(r);
    return 0;
}

void tw_request_resume_body(tw_request_t *r)
{
    if (r->rb_mode != TW_RB_STREAM || !r->rb_paused)
        return;
    tw_http_conn_t *c = r->conn;
    tw_http_conn_enter(c);
    tw_http_conn_body_resume(r);
    tw_http_conn_leave(c); /* arms the read that delivers what is buffered */
}

/* Calls the body callback with the activity record set. Returns what a
 * chunk callback returned (0 for the whole-body callback). */
static int body_call(tw_request_t *r, int status, const char *data, size_t len, bool last)
{
    activity_save_t save;
    const tw_module_t *prev_module = r->module;
    const char *prev_where = r->where;
    int rc = 0;
    r->module = r->body_module;
    r->where = "body";
    r->running++;
    activity_enter(r, r->body_module, "body", &save);
    if (r->rb_mode == TW_RB_WHOLE)
        r->body_done(r, status, r->body_arg);
    else
        rc = r->body_chunk(r, status, data, len, last, r->body_arg);
    activity_leave(r, &save);
    r->running--;
    r->module = prev_module;
    r->where = prev_where;
    return rc;
}

bool tw_request_body_piece(tw_request_t *r, const char *data, size_t len)
{
    if (r->rb_failed || r->aborted)
        return false;
    r->rb_received += len;
    if (r->rb_received > r->body_limit) {
        tw_request_body_fail(r, 413);
        return false;
    }
    if (len == 0)
        return true;
    if (r->rb_mode == TW_RB_WHOLE) {
        if (r->body_len + len > r->body_cap) {
            size_t want = r->body_cap ? r->body_cap * 2 : 4096;
            if (r->body_kind == TW_BODY_LENGTH)
                want = (size_t)r->content_length;
            if (want < r->body_len + len)
                want = r->body_len + len;
            if (want > r->body_limit && r->body_limit >= r->body_len + len)
                want = (size_t)r->body_limit;
            char *nb = tw_pool_alloc(r->pool, want);
            if (!nb) {
                tw_request_body_fail(r, 500);
                return false;
            }
            if (r->body_len)
                memcpy(nb, r->body, r->body_len);
            r->body = nb;
            r->body_cap = want;
        }
        memcpy(r->body + r->body_len, data, len);
        r->body_len += len;
        return true;
    }
    int rc = body_call(r, 0, data, len, false);
    if (rc == 1) {
        r->rb_paused = true;
        return false;
    }
    if (rc < 0) {
        /* The handler gives up on this request: treat it as a disconnect. */
        r->rb_failed = true;
        r->conn->must_close = true;
        if (r->conn->stream)
            tw_stream_close(r->conn->stream);
        return false;
    }
    return !r->rb_failed && !r->aborted;
}

void tw_request_body_end(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    if (r->rb_failed)
        return;
    r->rb_done = true;
    if (c->state == TW_CONN_BODY)
        c->state = TW_CONN_REQUEST;
    tw_request_hold(r);
    body_call(r, TW_NEXT, "", 0, true);
    tw_request_release(r);
}

void tw_request_body_fail(tw_request_t *r, int status)
{
    tw_http_conn_t *c = r->conn;
    if (r->rb_done || r->rb_failed)
        return;
    r->rb_failed = true;
    c->must_close = true;
    if (c->state == TW_CONN_BODY)
        c->state = TW_CONN_REQUEST;
    if (r->rb_mode == TW_RB_NONE)
        return;
    tw_request_hold(r);
    body_call(r, status, NULL, 0, false);
    /* A handler that relies on callbacks (it returned TW_DONE) and did not
     * finish gets the core's answer: the error page, or, once its head is
     * out, the end of the connection. */
    if (status != TW_ERROR && !r->suspended && !r->finished && !r->aborted &&
        r->stage == TW_AT_RESPONSE)
        request_error(r, status);
    tw_request_release(r);
}

/* ---- response headers ------------------------------------------------------------------ */

static const unsigned char token_chars[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool valid_name(const char *name, size_t *len)
{
    size_t n = 0;
    for (; name[n]; n++)
        if (!token_chars[(unsigned char)name[n]])
            return false;
    *len = n;
    return n > 0;
}

/* Bytes a field value may hold: none of the control characters but HTAB
 * (so no CR, LF or NUL: the NUL ends the scan). */
#define VALUE_ROW16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char value_chars[256] = {
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,              /* 0x00: HTAB only */
    VALUE_ROW16(0), /* 0x10 */
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0, /* 0x70: DEL */
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
    VALUE_ROW16(1),
};
#undef VALUE_ROW16

static bool valid_value(const char *value, size_t *len)
{
    size_t n = 0;
    while (value_chars[(unsigned char)value[n]])
        n++;
    if (value[n] != '\0')
        return false;
    *len = n;
    return true;
}

static int resp_add(tw_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (r->resp_count == r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap * 2 : 8;
        tw_resp_header_t *h = tw_pool_alloc(r->pool, cap * sizeof *h);
        if (!h) {
            errno = ENOMEM;
            return -1;
        }
        if (r->resp_count)
            memcpy(h, r->resp_headers, r->resp_count * sizeof *h);
        r->resp_headers = h;
        r->resp_cap = cap;
    }
    char *n = tw_pool_strndup(r->pool, name, nlen);
    char *v = tw_pool_strndup(r->pool, value, vlen);
    if (!n || !v) {
        errno = ENOMEM;
        return -1;
    }
    r->resp_headers[r->resp_count++] = (tw_resp_header_t){{n, nlen}, {v, vlen}};
    return 0;
}

static int resp_remove(tw_request_t *r, const char *name, size_t nlen)
{
    size_t out = 0;
    int removed = 0;
    for (size_t i = 0; i < r->resp_count; i++) {
        if (name_is(&r->resp_headers[i].name, name, nlen))
            removed++;
        else
            r->resp_headers[out++] = r->resp_headers[i];
    }
    r->resp_count = out;
    return removed;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* The framing headers are the core's: Content-Length sets the declared
 * length, Transfer-Encoding is refused, "Connection: close" asks for the
 * connection to close after this response. Returns 1 if name was one of
 * them (handled, or -1 on error), 0 otherwise. */
static int framing_header(tw_request_t *r, const char *name, size_t nlen, const char *value,
                          size_t vlen)
{
    tw_str_t n = {name, nlen};
    if (name_is(&n, "Content-Length", 14)) {
        uint64_t v;
        if (!parse_u64(value, vlen, &v) || v > INT64_MAX) {
            errno = EINVAL;
            return -1;
        }
        r->resp_length = (int64_t)v;
        return 1;
    }
    if (name_is(&n, "Transfer-Encoding", 17)) {
        errno = EINVAL;
        return -1;
    }
    if (name_is(&n, "Connection", 10)) {
        if (vlen == 5 && strncasecmp(value, "close", 5) == 0)
            r->force_close = true;
        else if (!(vlen == 10 && strncasecmp(value, "keep-alive", 10) == 0)) {
            errno = EINVAL;
            return -1;
        }
        return 1;
    }
    return 0;
}

static int header_op(tw_request_t *r, const char *fn, const char *name, const char *value,
                     bool replace)
{
    if (!api_allowed(r, fn, API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    size_t nlen, vlen;
    if (!name || !value || !valid_name(name, &nlen) || !valid_value(value, &vlen)) {
        errno = EINVAL;
        return -1;
    }
    int f = framing_header(r, name, nlen, value, vlen);
    if (f != 0)
        return f < 0 ? -1 : 0;
    if (replace)
        resp_remove(r, name, nlen);
    return resp_add(r, name, nlen, value, vlen);
}

int tw_response_set_status(tw_request_t *r, int status)
{
    if (!api_allowed(r, "tw_response_set_status", API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    /* 1xx responses are the core's (100 Continue); a handler's final
     * answer is 200..599. */
    if (status < 200 || status > 599) {
        errno = EINVAL;
        return -1;
    }
    r->status = status;
    return 0;
}

int tw_response_status(const tw_request_t *r)
{
    return r->status;
}

int tw_response_set_header(tw_request_t *r, const char *name, const char *value)
{
    return header_op(r, "tw_response_set_header", name, value, true);
}

int tw_response_add_header(tw_request_t *r, const char *name, const char *value)
{
    return header_op(r, "tw_response_add_header", name, value, false);
}

int tw_response_remove_header(tw_request_t *r, const char *name)
{
    if (!api_allowed(r, "tw_response_remove_header", API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    size_t nlen;
    if (!name || !valid_name(name, &nlen))
        return 0;
    tw_str_t n = {name, nlen};
    if (name_is(&n, "Content-Length", 14)) {
        int had = r->resp_length >= 0;
        r->resp_length = -1;
        return had;
    }
    if (name_is(&n, "Connection", 10)) {
        int had = r->force_close;
        r->force_close = false;
        return had;
    }
    return resp_remove(r, name, nlen);
}

const char *tw_response_header(const tw_request_t *r, const char *name)
{
    size_t n = strlen(name);
    if (n == 14 && strcasecmp(name, "Content-Length") == 0) {
        if (r->resp_length < 0)
            return NULL;
        char *buf = tw_pool_alloc(r->pool, 24);
        if (!buf)
            return NULL;
        snprintf(buf, 24, "%" PRId64, r->resp_length);
        return buf;
    }
    for (size_t i = 0; i < r->resp_count; i++)
        if (name_is(&r->resp_headers[i].name, name, n))
            return r->resp_headers[i].value.ptr;
    return NULL;
}

int tw_response_set_content_length(tw_request_t *r, uint64_t len)
{
    if (!api_allowed(r, "tw_response_set_content_length", API_HEADERS))
        return -1;
    if (r->head_sent) {
        errno = EALREADY;
        return -1;
    }
    if (len > INT64_MAX) {
        errno = EINVAL;
        return -1;
    }
    r->resp_length = (int64_t)len;
    return 0;
}

bool tw_response_head_sent(const tw_request_t *r)
{
    return r->head_sent;
}

/* ---- serialising the head -------------------------------------------------------------- */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Writes the status line and headers, deciding the framing and whether the
 * connection stays open. */
static int write_head(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    tw_http_server_t *srv = r->srv;
    int status = r->status;
    bool has_date = false, has_server = false;
    for (size_t i = 0; i < r->resp_count; i++) {
        if (name_is(&r->resp_headers[i].name, "Date", 4))
            has_date = true;
        else if (name_is(&r->resp_headers[i].name, "Server", 6))
            has_server = true;
    }
    bool no_body_status = status < 200 || status == 204 || status == 304;
    r->header_only = r->is_head || no_body_status;
    bool emit_length = false, close_delimited = false;
    r->chunked = false;
    if (status < 200 || status == 204) {
        emit_length = false;
    } else if (status == 304 || r->is_head) {
        emit_length = r->resp_length >= 0;
    } else if (r->resp_length >= 0) {
        emit_length = true;
    } else if (r->version >= 11) {
        r->chunked = true;
    } else {
        close_delimited = true;
    }
    r->keep_alive = !close_delimited && tw_http_conn_keep_alive(c, r);

    const char *reason = tw_http_status_text(status);
    size_t reason_len = strlen(reason);
    const char *server = srv->server_header;
    size_t server_len = server && !has_server ? strlen(server) : 0;
    size_t size = 9 + 3 + 1 + reason_len + 2;
    for (size_t i = 0; i < r->resp_count; i++)
        size += r->resp_headers[i].name.len + 2 + r->resp_headers[i].value.len + 2;
    size += has_date ? 0 : 6 + 29 + 2;
    size += server_len ? 8 + server_len + 2 : 0;
    size += emit_length ? 16 + 20 + 2 : 0;
    size += r->chunked ? 28 : 0;
    size += 24 + 2;

    char stack[1024];
    char *buf = size <= sizeof stack ? stack : tw_pool_alloc(r->pool, size);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    char *p = buf;
    p = put(p, "HTTP/1.1 ", 9);
    if (status < 100 || status > 999)
        status = 500;
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, reason_len);
    p = put(p, "\r\n", 2);
    for (size_t i = 0; i < r->resp_count; i++) {
        const tw_resp_header_t *h = &r->resp_headers[i];
        p = put(p, h->name.ptr, h->name.len);
        p = put(p, ": ", 2);
        p = put(p, h->value.ptr, h->value.len);
        p = put(p, "\r\n", 2);
    }
    if (!has_date) {
        const char *date = tw_http_server_date(srv);
        p = put(p, "Date: ", 6);
        p = put(p, date, strlen(date));
        p = put(p, "\r\n", 2);
    }
    if (server_len) {
        p = put(p, "Server: ", 8);
        p = put(p, server, server_len);
        p = put(p, "\r\n", 2);
    }
    if (emit_length) {
        p = put(p, "Content-Length: ", 16);
        p = put_u64(p, (uint64_t)r->resp_length);
        p = put(p, "\r\n", 2);
    }
    if (r->chunked)
        p = put(p, "Transfer-Encoding: chunked\r\n", 28);
    if (!r->keep_alive)
        p = put(p, "Connection: close\r\n", 19);
    else if (r->version < 11)
        p = put(p, "Connection: keep-alive\r\n", 24);
    p = put(p, "\r\n", 2);

    r->head_sent = true;
    r->resp_started = true;
    if (!r->keep_alive)
        c->must_close = true;
    return tw_http_conn_write(c, buf, (size_t)(p - buf)) < 0 ? -1 : 0;
}

/* Runs the header filters (not for the core's error pages), then writes the
 * head. Returns 0, or a filter's failure (TW_ERROR or a status) after which
 * the caller answers with an error instead. */
static int send_head(tw_request_t *r)
{
    const tw_phase_table_t *t = table(r);
    r->resp_started = true;
    if (t && !r->error_response) {
        for (size_t i = t->header_filter_start; i < t->body_filter_start; i++) {
            const tw_phase_entry_t *e = &t->entries[i];
            activity_save_t save;
            const tw_module_t *prev_module = r->module;
            const char *prev_where = r->where;
            r->module = e->module;
            r->where = "header filter";
            r->in_header_filter = true;
            activity_enter(r, e->module, "header filter", &save);
            int rc = e->fn.header_filter(r);
            activity_leave(r, &save);
            r->in_header_filter = false;
            r->module = prev_module;
            r->where = prev_where;
            if (rc != TW_NEXT) {
                tw_log_error("header filter of module %s failed (%d)", module_name(e->module), rc);
                return rc;
            }
        }
    }
    if (write_head(r) != 0)
        return TW_ERROR;
    return 0;
}

/* The head failed (a filter refused it, or the write did): answer with an
 * error page instead; the handler's further output is dropped. */
static void head_failed(tw_request_t *r, int rc)
{
    r->resp_started = false;
    request_error(r, rc == TW_ERROR || rc < 200 || rc > 599 ? 500 : rc);
}

/* ---- body output ----------------------------------------------------------------------- */

/* Puts body bytes on the wire with the framing chosen for the head. */
static int wire_body(tw_request_t *r, const char *data, size_t len, bool last)
{
    tw_http_conn_t *c = r->conn;
    if (r->header_only)
        return 0;
    int rc = 0;
    if (len && r->resp_length >= 0) {
        uint64_t room = (uint64_t)r->resp_length - r->body_sent;
        if (len > room) {
            tw_log_error("module %s wrote more body than its Content-Length %" PRId64
                         "; truncated, closing the connection",
                         module_name(r->module), r->resp_length);
            len = (size_t)room;
            c->must_close = true;
        }
    }
    if (len) {
        if (r->chunked) {
            char hdr[24];
            int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
            if (tw_http_conn_write(c, hdr, (size_t)n) < 0 || tw_http_conn_write(c, data, len) < 0 ||
                tw_http_conn_write(c, "\r\n", 2) < 0)
                rc = -1;
        } else if (tw_http_conn_write(c, data, len) < 0) {
            rc = -1;
        }
        r->body_sent += len;
    }
    if (last && r->chunked && rc == 0 && tw_http_conn_write(c, "0\r\n\r\n", 5) < 0)
        rc = -1;
    if (rc < 0) {
        errno = EPIPE;
        return -1;
    }
    return tw_http_conn_write_high(c) ? 1 : 0;
}

static int wire_file(tw_request_t *r, int fd, off_t off, size_t len)
{
    tw_http_conn_t *c = r->conn;
    if (len && r->resp_length >= 0) {
        uint64_t room = (uint64_t)r->resp_length - r->body_sent;
        if (len > room) {
            tw_log_error("module %s sent more body than its Content-Length %" PRId64
                         "; truncated, closing the connection",
                         module_name(r->module), r->resp_length);
            len = (size_t)room;
            c->must_close = true;
        }
    }
    if (len == 0) {
        close(fd);
        return tw_http_conn_write_high(c) ? 1 : 0;
    }
    int rc = 0;
    if (r->chunked) {
        char hdr[24];
        int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
        if (tw_http_conn_write(c, hdr, (size_t)n) < 0) {
            close(fd);
            rc = -1;
        } else if (tw_http_conn_sendfile(c, fd, off, len) < 0 ||
                   tw_http_conn_write(c, "\r\n", 2) < 0) {
            rc = -1;
        }
    } else if (tw_http_conn_sendfile(c, fd, off, len) < 0) {
        rc = -1;
    }
    r->body_sent += len;
    if (rc < 0) {
        errno = EPIPE;
        return -1;
    }
    return tw_http_conn_write_high(c) ? 1 : 0;
}

static bool have_body_filters(const tw_request_t *r)
{
    const tw_phase_table_t *t = table(r);
    return t && t->body_filter_start < t->count && !r->error_response;
}

/* Passes a piece through the body filters from index idx (relative to the
 * first body filter) and on to the wire. Returns 0, 1 (over the high-water
 * mark) or -1. */
static int filter_from(tw_request_t *r, size_t idx, const char *data, size_t len, bool last)
{
    const tw_phase_table_t *t = table(r);
    size_t i = t ? t->body_filter_start + idx : 0;
    if (!t || i >= t->count)
        return wire_body(r, data, len, last);
    const tw_phase_entry_t *e = &t->entries[i];
    activity_save_t save;
    const tw_module_t *prev_module = r->module;
    const char *prev_where = r->where;
    size_t prev_index = r->body_filter_index;
    r->module = e->module;
    r->where = "body filter";
    r->body_filter_index = idx;
    r->in_body_filter++;
    activity_enter(r, e->module, "body filter", &save);
    int rc = e->fn.body_filter(r, data, len, last);
    activity_leave(r, &save);
    r->in_body_filter--;
    r->body_filter_index = prev_index;
    r->module = prev_module;
    r->where = prev_where;
    if (rc != TW_NEXT) {
        tw_log_error("body filter of module %s failed (%d); closing the connection",
                     module_name(e->module), rc);
        r->conn->must_close = true;
        r->filter_failed = true;
        errno = EIO;
        return -1;
    }
    return r->filter_failed ? -1 : tw_http_conn_write_high(r->conn) ? 1 : 0;
}

int tw_body_filter_next(tw_request_t *r, const char *data, size_t len, bool last)
{
    if (!r->in_body_filter) {
        tw_log_error("module %s called tw_body_filter_next outside a body filter",
                     module_name(r->module));
        errno = EPERM;
        return TW_ERROR;
    }
    int rc = filter_from(r, r->body_filter_index + 1, data, len, last);
    return rc < 0 ? TW_ERROR : TW_NEXT;
}

/* A body piece on its way out: through the filters if any. */
static int body_out(tw_request_t *r, const char *data, size_t len, bool last)
{
    if (r->header_only)
        return 0;
    if (have_body_filters(r))
        return filter_from(r, 0, data, len, last);
    return wire_body(r, data, len, last);
}

/* Checks shared by the output calls; starts the head if needed. Returns 0
 * to go on, 1 if the call is to be swallowed (response replaced by an error
 * page), -1 on error (errno set). */
static int output_begin(tw_request_t *r, const char *fn)
{
    if (!api_allowed(r, fn, API_OUTPUT))
        return -1;
    if (r->finished) {
        errno = EALREADY;
        return -1;
    }
    if (!conn_usable(r) || r->filter_failed) {
        errno = EPIPE;
        return -1;
    }
    if (!r->head_sent) {
        int rc = send_head(r);
        if (rc != 0) {
            head_failed(r, rc);
            errno = EIO;
            return -1;
        }
    }
    return 0;
}

static tw_out_op_t *out_push(tw_request_t *r, int kind)
{
    tw_out_op_t *op = tw_pool_calloc(r->pool, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    op->fd = -1;
    if (r->out_tail)
        r->out_tail->next = op;
    else
        r->out_head = op;
    r->out_tail = op;
    return op;
}

static void out_fd_cleanup(void *arg)
{
    tw_out_op_t *op = arg;
    if (op->fd >= 0) {
        close(op->fd);
        op->fd = -1;
    }
}

int tw_response_send(tw_request_t *r, int status, const char *content_type, const void *body,
                     size_t len)
{
    if (!api_allowed(r, "tw_response_send", API_OUTPUT))
        return -1;
    if (r->head_sent || r->finished) {
        errno = EALREADY;
        return -1;
    }
    if (status < 200 || status > 599) {
        errno = EINVAL;
        return -1;
    }
    size_t ctlen = 0;
    if (content_type && !valid_value(content_type, &ctlen)) {
        errno = EINVAL;
        return -1;
    }
    if (!conn_usable(r)) {
        errno = EPIPE;
        return -1;
    }
    tw_http_conn_t *c = r->conn;
    tw_http_conn_enter(c);
    tw_request_hold(r);
    int rc = 0;
    r->status = status;
    if (content_type) {
        resp_remove(r, "Content-Type", 12);
        rc = resp_add(r, "Content-Type", 12, content_type, ctlen);
    }
    if (status != 304) /* a 304 keeps what was declared: len is no GET's length */
        r->resp_length = (int64_t)len;
    if (rc == 0) {
        int hr = send_head(r);
        if (hr != 0) {
            head_failed(r, hr);
            errno = EIO;
            rc = -1;
        } else {
            if (body_out(r, body, len, false) < 0 || finish_now(r) < 0)
                rc = -1;
        }
    }
    api_release(r);
    tw_http_conn_leave(c);
    return rc < 0 ? -1 : 0;
}

int tw_response_write(tw_request_t *r, const void *data, size_t len)
{
    tw_http_conn_t *c = r->conn;
    tw_http_conn_enter(c);
    tw_request_hold(r);
    int rc = output_begin(r, "tw_response_write");
    if (rc == 0) {
        if (r->header_only) {
            rc = 0;
        } else if (r->out_head) {
            tw_out_op_t *op = out_push(r, TW_OUT_DATA);
            char *copy = len ? tw_pool_alloc(r->pool, len) : NULL;
            if (!op || (len && !copy)) {
                errno = ENOMEM;
                rc = -1;
            } else {
                if (len)
                    memcpy(copy, data, len);
                op->data = copy;
                op->len = len;
                rc = 1;
            }
        } else if (len) {
            rc = body_out(r, data, len, false);
        } else {
            rc = tw_http_conn_write_high(c) ? 1 : 0;
        }
    }
    api_release(r);
    tw_http_conn_leave(c);
    return rc;
}

int tw_response_sendfile(tw_request_t *r, int fd, off_t offset, size_t len)
{
    tw_http_conn_t *c = r->conn;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    tw_http_conn_enter(c);
    tw_request_hold(r);
    int rc = output_begin(r, "tw_response_sendfile");
    if (rc != 0) {
        close(fd);
    } else if (r->header_only || len == 0) {
        close(fd);
        rc = 0;
    } else if (have_body_filters(r) || r->out_head) {
        /* Filters must see the bytes: read the file in pieces, as fast as
         * the client takes them. */
        tw_out_op_t *op = out_push(r, TW_OUT_FILE);
        if (!op || tw_pool_add_cleanup(r->pool, out_fd_cleanup, op) != 0) {
            close(fd);
            errno = ENOMEM;
            rc = -1;
        } else {
            op->fd = fd;
            op->off = offset;
            op->len = len;
            pump(r);
            rc = r->out_head ? 1 : r->filter_failed ? -1 : tw_http_conn_write_high(c) ? 1 : 0;
        }
    } else {
        rc = wire_file(r, fd, offset, len);
    }
    api_release(r);
    tw_http_conn_leave(c);
    return rc;
}

/* Ends the body: the last piece through the filters, the last chunk, the
 * Content-Length check. */
static int finish_now(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    int rc = 0;
    if (!r->header_only && !r->filter_failed)
        rc = body_out(r, NULL, 0, true);
    if (!r->header_only && r->resp_length >= 0 && r->body_sent < (uint64_t)r->resp_length) {
        tw_log_error("module %s finished after %" PRIu64 " of %" PRId64
                     " body bytes; closing the connection",
                     module_name(r->module), r->body_sent, r->resp_length);
        c->must_close = true;
    }
    r->finished = true;
    return rc < 0 ? -1 : 0;
}

int tw_response_finish(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    if (!api_allowed(r, "tw_response_finish", API_OUTPUT))
        return -1;
    if (r->finished) {
        errno = EALREADY;
        return -1;
    }
    tw_http_conn_enter(c);
    tw_request_hold(r);
    int rc = 0;
    if (!conn_usable(r)) {
        r->finished = true; /* nothing can be sent; the request may end */
    } else {
        /* Nothing was written: an empty body, "Content-Length: 0" — but not
         * for a HEAD or a 304, where it would describe the GET's content
         * (RFC 9110 8.6): those send a length only if one was declared. */
        if (!r->head_sent && r->resp_length < 0 && !r->is_head && r->status != 304)
            r->resp_length = 0;
        rc = output_begin(r, "tw_response_finish");
        if (rc == 0) {
            if (r->out_head) {
                if (!out_push(r, TW_OUT_FINISH)) {
                    errno = ENOMEM;
                    rc = -1;
                }
            } else {
                rc = finish_now(r);
            }
        } else if (r->finished) {
            rc = 0; /* replaced by an error page */
        }
    }
    api_release(r);
    tw_http_conn_leave(c);
    return rc;
}

/* Moves output queued behind a filtered sendfile while the client keeps
 * up. */
static void pump(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    while (r->out_head && conn_usable(r) && !r->filter_failed) {
        if (tw_http_conn_write_high(c))
            return; /* the drain picks it up */
        tw_out_op_t *op = r->out_head;
        if (op->kind == TW_OUT_FILE) {
            if (!r->pump_buf) {
                r->pump_buf = tw_pool_alloc(r->pool, PUMP_CHUNK);
                if (!r->pump_buf) {
                    request_error(r, 500);
                    return;
                }
            }
            size_t want = op->len < PUMP_CHUNK ? op->len : PUMP_CHUNK;
            ssize_t n = pread(op->fd, r->pump_buf, want, op->off);
            if (n <= 0) {
                tw_log_error("reading a file for module %s: %s", module_name(r->module),
                             n < 0 ? strerror(errno) : "unexpected end of file");
                request_error(r, 500);
                return;
            }
            op->off += n;
            op->len -= (size_t)n;
            if (body_out(r, r->pump_buf, (size_t)n, false) < 0)
                return;
            if (op->len > 0)
                continue;
            close(op->fd);
            op->fd = -1;
        } else if (op->kind == TW_OUT_DATA) {
            if (body_out(r, op->data, op->len, false) < 0)
                return;
        }
        r->out_head = op->next;
        if (!r->out_head)
            r->out_tail = NULL;
        if (op->kind == TW_OUT_FINISH) {
            finish_now(r);
            r->out_head = r->out_tail = NULL;
        }
    }
}

/* ---- back-pressure ---------------------------------------------------------------------- */

/* Runs the drain callbacks (each once) while the queue stays low. The
 * caller holds r. */
static void run_drain_cbs(tw_request_t *r)
{
    while (r->drain_cbs && tw_http_conn_write_low(r->conn) && !r->out_head && !r->aborted &&
           r->stage < TW_AT_LOG) {
        tw_req_cb_t *cb = r->drain_cbs;
        r->drain_cbs = cb->next;
        tw_request_call_cb(r, cb->module, "drain", cb->fn, cb->arg);
    }
}

void tw_request_drained(tw_request_t *r)
{
    if (r->stage >= TW_AT_LOG)
        return;
    tw_request_hold(r);
    if (r->out_head)
        pump(r);
    run_drain_cbs(r);
    tw_request_release(r);
}

static void drain_cb(tw_loop_t *loop, void *arg)
{
    tw_request_t *r = arg;
    tw_http_conn_t *c = r->conn;
    (void)loop;
    r->drain_scheduled = false;
    tw_http_conn_enter(c);
    tw_request_drained(r);
    tw_http_conn_leave(c);
}

int tw_response_on_drain(tw_request_t *r, tw_request_cb fn, void *arg)
{
    if (!api_allowed(r, "tw_response_on_drain", API_OUTPUT))
        return -1;
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    tw_req_cb_t *cb = tw_pool_alloc(r->pool, sizeof *cb);
    if (!cb) {
        errno = ENOMEM;
        return -1;
    }
    *cb = (tw_req_cb_t){NULL, fn, arg, r->module};
    tw_req_cb_t **tail = &r->drain_cbs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = cb;
    /* The stream calls its drain callback only after a write it refused
     * (returned 1): if the queue is already low, run it from the loop; if it
     * is between the marks, ask to hear when it is all written. */
    if (tw_http_conn_write_low(r->conn) && !r->out_head) {
        if (!r->drain_scheduled && tw_loop_add_callback(r->srv->loop, drain_cb, r) == 0)
            r->drain_scheduled = true;
    } else if (!tw_http_conn_write_high(r->conn)) {
        tw_http_conn_notify_flushed(r->conn);
    }
    return 0;
}

/* ---- status text (RFC 9110 section 15, plus common extensions) ------------------------ */

const char *tw_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 208:
        return "Already Reported";
    case 226:
        return "IM Used";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 423:
        return "Locked";
    case 424:
        return "Failed Dependency";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 506:
        return "Variant Also Negotiates";
    case 507:
        return "Insufficient Storage";
    case 508:
        return "Loop Detected";
    case 510:
        return "Not Extended";
    case 511:
        return "Network Authentication Required";
    default:
        return "Unknown";
    }
}
