/* engine.c — the phase engine: it drives a request through POST_READ,
 * REWRITE, FIND_ROUTE, ACCESS and CONTENT, keeps it while a handler is
 * suspended, ends it (LOG) when its response is out or its client left, and
 * answers with the core's error pages. What reaches the wire goes through
 * the request's transport (transport.h); this file never sees a socket.
 *
 * The engine keeps a position (phase, handler index) in the compiled flat
 * table (phases.h), so a suspended handler resumes exactly where it left.
 *
 * When a request may end. Ending runs LOG and lets the transport reset the
 * pool, so it must never happen while plugin code of the request, or core
 * code holding the request, is on the stack. r->running counts those
 * holders; only the outermost release ends the request. Public API calls
 * made from a plugin's own callbacks (say, tw_response_send from its timer)
 * hold the request too, and if their release finds the request ready to
 * end they queue the end on the loop instead of doing it inside the
 * plugin's call: the plugin may still touch its request context after
 * tw_response_finish. tw_request_resume is the exception: it runs the
 * engine at once (unless plugin code is on the stack, then it is
 * deferred), so the request may be gone when it returns. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "request/request.h"
#include "twister/log.h"
#include "twister/module.h"

static void run(tw_request_t *r);
static bool handle_rc(tw_request_t *r, int rc);
static void settle(tw_request_t *r);
static void settle_cb(tw_loop_t *loop, void *arg);
static void access_refuse(tw_request_t *r, int status);

uint64_t tw_request_drain_keep_ms(const tw_request_t *r)
{
    return r && r->route ? r->route->drain_keep_ms : 0;
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
void tw_req_api_release(tw_request_t *r)
{
    if (--r->running > 0 || r->stage >= TW_AT_LOG)
        return;
    bool resume = r->suspended && r->resume_pending;
    bool end = !r->suspended && (r->finished || r->aborted) && (!r->out_head || r->aborted);
    if (resume || end)
        tw_req_schedule_settle(r);
}
/* ---- creating requests --------------------------------------------------------------- */

static tw_str_t span_str(const char *base, tw_span_t s)
{
    tw_str_t out = {base + s.off, s.len};
    if (s.len == 0)
        out.ptr = "";
    return out;
}

static tw_request_t *request_alloc(tw_http_server_t *srv, tw_pool_t *pool, tw_transport_t *t)
{
    tw_request_t *r = tw_pool_calloc(pool, sizeof *r);
    if (!r)
        return NULL;
    r->t = t;
    r->srv = srv;
    r->pool = pool;
    r->serial = ++srv->serial;
    r->start_us = tw_loop_now_us(srv->loop);
    r->status = 200;
    r->resp_length = -1;
    r->version = 11;
    r->body_limit = srv->body_limit;
    tw_loop_deferred_init(&r->settle_node, settle_cb, r);
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

tw_request_t *tw_request_create(tw_http_server_t *srv, tw_pool_t *pool, tw_transport_t *t,
                                const tw_http_parser_t *p, const char *data, int *status)
{
    *status = 0;
    tw_request_t *r = request_alloc(srv, pool, t);
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

tw_request_t *tw_request_create_bad(tw_http_server_t *srv, tw_pool_t *pool, tw_transport_t *t,
                                    const tw_http_parser_t *p, const char *data, size_t len,
                                    bool is_head)
{
    tw_request_t *r = request_alloc(srv, pool, t);
    if (!r)
        return NULL;
    r->close = true;
    /* A HEAD is known from its method alone, so the error page for a
     * request line refused before its end (414, 400) has no body; data no
     * longer holds the head after a timeout (408): the transport noted it. */
    bool have_method = data && p->method.len && (size_t)p->method.off + p->method.len <= len;
    if (have_method)
        r->is_head = p->method.len == 4 && memcmp(data + p->method.off, "HEAD", 4) == 0;
    else
        r->is_head = is_head;
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
        r->close = true;
        return 501;
    }
    const tw_http_route_t *route = NULL;
    int rc = srv->find_route ? srv->find_route(srv->find_route_arg, r, r->t->listener_index, &route)
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
        if (!ok && route->methods_declared && r->method.len == 7 &&
            memcmp(r->method.ptr, "OPTIONS", 7) == 0)
            return answer_options(r, route->allow);
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
        r->close = true;
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
        const tw_phase_table_t *t = r->srv->phases;
        int rc;
        switch (r->phase) {
        case TW_PHASE_POST_READ:
        case TW_PHASE_REWRITE:
        case TW_PHASE_ACCESS: {
            size_t i = t ? t->phase_start[r->phase] + r->handler_index : 0;
            if (r->phase == TW_PHASE_ACCESS && r->handler_index == 0) {
                r->access_refusal = 0;
                r->access_header_mark = r->resp_count;
            }
            if (!t || i >= t->phase_start[r->phase + 1]) {
                if (r->phase == TW_PHASE_ACCESS && r->access_refusal) {
                    /* `satisfy: any` and nobody passed: the last refusal. */
                    access_refuse(r, r->access_refusal);
                    return;
                }
                r->phase = r->phase + 1;
                r->handler_index = 0;
                continue;
            }
            const tw_phase_entry_t *e = &t->entries[i];
            tw_plugin_call_t call = {.kind = TW_CALL_HANDLER, .fn.handler = e->fn.handler};
            rc = tw_call_plugin(r, e->module, tw_phase_name(r->phase), &call, true);
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
            tw_plugin_call_t call = {.kind = TW_CALL_HANDLER, .fn.handler = r->route->content};
            rc = tw_call_plugin(r, r->route->handler, "CONTENT", &call, true);
            break;
        default:
            return;
        }
        if (!handle_rc(r, rc))
            return;
    }
}

/* Answers an ACCESS refusal with the core's page for status, keeping the
 * headers the refusing handlers set (WWW-Authenticate). Settles r. */
static void access_refuse(tw_request_t *r, int status)
{
    if (status < 200 || status > 599) {
        tw_log_error("module %s returned %d from ACCESS; answering 500",
                     tw_req_module_name(r->module), status);
        status = 500;
    }
    r->error_keeps_headers = true;
    tw_req_error(r, status);
    settle(r);
}

/* The ACCESS phase's vote counting (twister/http.h): every handler runs
 * unless one refuses; with `satisfy: any` the first pass wins and
 * refusals are only remembered. */
typedef enum {
    ACCESS_GO_ON,    /* run handlers from r's new position */
    ACCESS_HANDLE,   /* handle_rc acts on rc as in any other phase */
    ACCESS_ANSWERED, /* refused and answered: r may have ended */
} access_step_t;

static access_step_t access_vote(tw_request_t *r, int rc)
{
    bool any = r->route && r->route->satisfy_any;
    switch (rc) {
    case TW_DECLINED:
        r->handler_index++;
        return ACCESS_GO_ON;
    case TW_NEXT:
        if (r->uri_changed)
            return ACCESS_HANDLE; /* an internal redirect: handle_rc restarts REWRITE */
        if (!any) {
            r->handler_index++;
            return ACCESS_GO_ON;
        }
        /* A pass is enough: what refusals before it left is forgotten. */
        r->access_refusal = 0;
        if (r->resp_count > r->access_header_mark)
            r->resp_count = r->access_header_mark;
        r->phase = TW_PHASE_CONTENT;
        r->handler_index = 0;
        return ACCESS_GO_ON;
    case TW_DONE:
    case TW_ERROR:
        return ACCESS_HANDLE;
    default:
        if (!any) {
            access_refuse(r, rc);
            return ACCESS_ANSWERED;
        }
        r->access_refusal = rc >= 200 && rc <= 599 ? rc : 500;
        r->handler_index++;
        return ACCESS_GO_ON;
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
                     tw_req_module_name(r->module));
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
    if (r->phase == TW_PHASE_ACCESS) {
        access_step_t step = access_vote(r, rc);
        if (step != ACCESS_HANDLE)
            return step == ACCESS_GO_ON;
    }
    switch (rc) {
    case TW_NEXT:
        if (r->uri_changed && (r->phase == TW_PHASE_ACCESS || r->phase == TW_PHASE_CONTENT) &&
            !r->resp_started) {
            r->uri_changed = false;
            if (++r->redirects > TW_MAX_REDIRECTS) {
                tw_log_error("more than %d internal redirects for '%.*s'", TW_MAX_REDIRECTS,
                             (int)r->request_line.len, r->request_line.ptr);
                tw_req_error(r, 500);
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
            tw_req_error(r, 404);
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
        tw_req_error(r, 500);
        settle(r);
        return false;
    default:
        if (rc < 200 || rc > 599) {
            tw_log_error("module %s returned %d from %s; answering 500",
                         tw_req_module_name(r->module), rc, tw_phase_name(r->phase));
            rc = 500;
        }
        tw_req_error(r, rc);
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
    (void)loop;
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_hold(r);
    tw_request_release(r); /* settles unless someone else holds r */
    tw_transport_end(tr);
}

void tw_req_schedule_settle(tw_request_t *r)
{
    tw_loop_defer(r->srv->loop, &r->settle_node); /* cannot fail */
}

static void request_end(tw_request_t *r)
{
    tw_transport_t *t = r->t;
    r->stage = TW_AT_LOG;
    tw_loop_defer_cancel(r->srv->loop, &r->settle_node);
    tw_loop_defer_cancel(r->srv->loop, &r->drain_node);
    if (r->aborted && !r->head_sent)
        r->status = 499; /* nginx's "client closed request", for the log */
    const tw_phase_table_t *tab = r->srv->phases;
    if (tab) {
        r->phase = TW_PHASE_LOG;
        r->running++; /* LOG handlers cannot end the request twice */
        for (size_t i = tab->phase_start[TW_PHASE_LOG]; i < tab->phase_start[TW_PHASE_LOG + 1];
             i++) {
            const tw_phase_entry_t *e = &tab->entries[i];
            tw_plugin_call_t call = {.kind = TW_CALL_HANDLER, .fn.handler = e->fn.handler};
            int rc = tw_call_plugin(r, e->module, "LOG", &call, true);
            if (rc == TW_SUSPENDED)
                tw_log_error("module %s suspended in LOG; LOG handlers cannot suspend",
                             tw_req_module_name(e->module));
        }
        r->running--;
    }
    r->stage = TW_AT_ENDED;
    t->ops->done(t, r->close); /* resets the pool: r is gone */
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
            tw_log_error("module %s resumed a request twice", tw_req_module_name(r->module));
            return;
        }
        r->resume_pending = true;
        r->resume_rc = rc;
        return;
    }
    if (!r->suspended) {
        tw_log_error("tw_request_resume on a request that is not suspended (module %s)",
                     tw_req_module_name(r->module));
        return;
    }
    if (r->srv->depth > 0 || r->resume_pending) {
        /* Plugin code is on the stack (another request's handler): later. */
        r->resume_pending = true;
        r->resume_rc = rc;
        tw_req_schedule_settle(r);
        return;
    }
    tw_transport_t *tr = tw_req_begin(r);
    resume_now(r, rc);
    tw_transport_end(tr);
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
            tw_req_call_cb(r, cb->module, "abort", cb->fn, cb->arg);
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

/* Answers with the core's page for status, or closes the connection if a
 * response head already went out. The caller settles r. */
void tw_req_error(tw_request_t *r, int status)
{
    if (r->stage >= TW_AT_LOG)
        return;
    r->stage = TW_AT_RESPONSE;
    if (status < 200 || status > 599)
        status = 500;
    if (status_closes(status))
        r->close = true;
    if (r->finished)
        return;
    if (r->head_sent || !tw_req_usable(r)) {
        if (r->head_sent)
            tw_log_error("module %s failed after the response head was sent; closing the "
                         "connection",
                         tw_req_module_name(r->module));
        r->close = true;
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
    if (r->error_keeps_headers) {
        /* The page's own framing and type replace the handler's. */
        r->resp_length = -1;
        tw_req_header_remove(r, "Content-Type", 12);
        tw_req_header_remove(r, "Content-Length", 14);
    } else {
        resp_reset(r);
    }
    r->out_head = r->out_tail = NULL;
    r->status = status;
    r->error_response = true;
    r->resp_started = true;
    tw_req_header_add(r, "Content-Type", 12, "text/html; charset=utf-8", 24);
    if (status == 405 && r->route) {
        /* The route's list; for a route without one, what the core's own
         * refusal (TRACE, in FIND_ROUTE) leaves allowed. A handler's 405
         * on such a route says nothing the core could list. */
        const char *allow = r->route->allow;
        if (!allow && !r->route->methods && r->phase == TW_PHASE_FIND_ROUTE)
            allow = allow_any(r->srv);
        if (allow)
            tw_req_header_add(r, "Allow", 5, allow, strlen(allow));
    }
    r->resp_length = n;
    if (tw_req_send_head(r) == 0)
        tw_req_body_out(r, body, (size_t)n, true);
    r->finished = true;
}

void tw_request_fail(tw_request_t *r, int status)
{
    tw_request_hold(r);
    r->stage = TW_AT_PHASES;
    r->close = true;
    tw_req_error(r, status);
    tw_request_release(r);
}
