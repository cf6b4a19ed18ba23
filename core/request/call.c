/* call.c — every call from the engine into plugin code goes through
 * tw_call_plugin: it attributes the request to the module (for API misuse
 * errors), counts the call as running plugin code (so the request cannot
 * end under it and a resume from inside is deferred), and keeps the
 * worker's crash record (activity.h) naming the module, the phase and the
 * request line while the call runs — restoring the outer record when
 * calls nest (a body filter under a handler). One function, so the order
 * in which the record is written cannot drift between call sites. */
#include <errno.h>
#include <string.h>

#include "request/request.h"
#include "twister/log.h"

const char *tw_req_module_name(const tw_module_t *m)
{
    return m && m->name ? m->name : "core";
}

size_t tw_req_module_index(tw_http_server_t *srv, const tw_module_t *m)
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

typedef struct {
    bool saved;
    tw_activity_t copy;
} activity_save_t;

static void activity_enter(tw_request_t *r, const tw_module_t *m, const char *where,
                           activity_save_t *save)
{
    tw_http_server_t *srv = r->srv;
    tw_activity_t *a = srv->activity;
    save->saved = false;
    if (!a)
        return;
    if (a->module[0]) { /* nested: restore the outer record after */
        save->saved = true;
        memcpy(&save->copy, a, sizeof save->copy);
    }
    if (srv->activity_serial == r->serial && a->request[0]) {
        /* The record already holds this request's line (the handlers of
         * one request follow each other): only the phase and module. */
        tw_activity_set_phase(a, tw_req_module_name(m), where);
    } else {
        tw_activity_enter(a, tw_req_module_name(m), where, r->request_line.ptr,
                          r->request_line.len);
        srv->activity_serial = r->serial;
    }
}

static void activity_leave(tw_request_t *r, activity_save_t *save)
{
    tw_activity_t *a = r->srv->activity;
    if (!a)
        return;
    if (save->saved) {
        tw_activity_restore(a, &save->copy);
        r->srv->activity_serial = 0; /* whose line it is now is not known */
    } else {
        tw_activity_leave(a);
    }
}

int tw_call_plugin(tw_request_t *r, const tw_module_t *module, const char *where,
                   const tw_plugin_call_t *call, bool keep_module)
{
    activity_save_t save;
    const tw_module_t *prev_module = r->module;
    const char *prev_where = r->where;
    int rc = 0;
    r->module = module;
    r->where = where;
    r->running++;
    r->srv->depth++;
    activity_enter(r, module, where, &save);
    switch (call->kind) {
    case TW_CALL_HANDLER:
        rc = call->fn.handler(r);
        break;
    case TW_CALL_HEADER_FILTER:
        rc = call->fn.header_filter(r);
        break;
    case TW_CALL_BODY_FILTER:
        rc = call->fn.body_filter(r, call->data, call->len, call->last);
        break;
    case TW_CALL_CB:
        call->fn.cb(r, call->arg);
        break;
    case TW_CALL_BODY_DONE:
        call->fn.body_done(r, call->status, call->arg);
        break;
    case TW_CALL_BODY_CHUNK:
        rc = call->fn.body_chunk(r, call->status, call->data, call->len, call->last, call->arg);
        break;
    case TW_CALL_VARIABLE:
        *call->value = call->fn.variable(r);
        break;
    }
    activity_leave(r, &save);
    r->srv->depth--;
    r->running--;
    if (!keep_module) {
        r->module = prev_module;
        r->where = prev_where;
    }
    return rc;
}

void tw_req_call_cb(tw_request_t *r, const tw_module_t *module, const char *where, tw_request_cb fn,
                    void *arg)
{
    tw_request_hold(r);
    tw_plugin_call_t call = {.kind = TW_CALL_CB, .fn.cb = fn, .arg = arg};
    tw_call_plugin(r, module, where, &call, false);
    tw_request_release(r);
}

bool tw_req_api_allowed(tw_request_t *r, const char *fn, int kind)
{
    const char *why = NULL;
    if (r->stage >= TW_AT_LOG)
        why = "after the response was sent (LOG phase)";
    else if (r->in_body_filter && kind != TW_API_HEADERS)
        why = "from a body filter";
    else if (r->in_body_filter)
        why = "from a body filter (the head is out)";
    else if (r->in_header_filter && kind != TW_API_HEADERS)
        why = "from a header filter";
    else if (kind == TW_API_URI && (r->stage != TW_AT_PHASES || r->phase == TW_PHASE_FIND_ROUTE))
        why = r->stage != TW_AT_PHASES ? "once the response is being produced" : "in FIND_ROUTE";
    if (!why)
        return true;
    tw_log_error("module %s called %s %s; ignored", tw_req_module_name(r->module), fn, why);
    errno = EPERM;
    return false;
}
