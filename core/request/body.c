/* body.c — the request body as handlers see it: read whole into the pool
 * (tw_request_read_body) or streamed with back-pressure
 * (tw_request_stream_body), and the entry points through which the
 * transport delivers it (tw_request_body_data/end/fail). Framing, timeouts
 * and 100-continue are the transport's; the body limit is checked on both
 * sides (the transport refuses a declared chunk that would pass it before
 * reading it, the engine never stores more than it). */
#include <errno.h>
#include <string.h>

#include "request/request.h"
#include "twister/log.h"

static int body_begin(tw_request_t *r, const char *fn, tw_rb_mode_t mode)
{
    if (!tw_req_api_allowed(r, fn, TW_API_READ_BODY))
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
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_hold(r);
    if (r->body_kind == TW_BODY_LENGTH && r->content_length > r->body_limit)
        tw_request_body_fail(r, 413);
    else
        tr->ops->read_body(tr, r->body_limit);
    tw_req_api_release(r);
    tw_transport_end(tr);
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
    r->rb_paused = false;
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_hold(r);
    tr->ops->want_body(tr, true);
    tw_req_api_release(r);
    tw_transport_end(tr); /* arms the read that delivers what is buffered */
}

/* Calls the body callback. Returns what a chunk callback returned (0 for
 * the whole-body callback). */
static int body_call(tw_request_t *r, int status, const char *data, size_t len, bool last)
{
    tw_plugin_call_t call = {
        .arg = r->body_arg, .status = status, .data = data, .len = len, .last = last};
    if (r->rb_mode == TW_RB_WHOLE) {
        call.kind = TW_CALL_BODY_DONE;
        call.fn.body_done = r->body_done;
    } else {
        call.kind = TW_CALL_BODY_CHUNK;
        call.fn.body_chunk = r->body_chunk;
    }
    return tw_call_plugin(r, r->body_module, "body", &call, false);
}

/* Room for len more bytes of a whole body; false on ENOMEM. */
static bool body_grow(tw_request_t *r, size_t len)
{
    if (r->body_len + len <= r->body_cap)
        return true;
    size_t want = r->body_cap ? r->body_cap * 2 : 4096;
    if (r->body_kind == TW_BODY_LENGTH)
        want = (size_t)r->content_length;
    if (want < r->body_len + len)
        want = r->body_len + len;
    if (want > r->body_limit && r->body_limit >= r->body_len + len)
        want = (size_t)r->body_limit;
    char *nb = tw_pool_alloc(r->pool, want);
    if (!nb)
        return false;
    if (r->body_len)
        memcpy(nb, r->body, r->body_len);
    r->body = nb;
    r->body_cap = want;
    return true;
}

tw_body_verdict_t tw_request_body_data(tw_request_t *r, const char *data, size_t len)
{
    if (r->rb_failed || r->aborted)
        return TW_BODY_STOP;
    r->rb_received += len;
    if (r->rb_received > r->body_limit) {
        tw_request_body_fail(r, 413);
        return TW_BODY_STOP;
    }
    if (len == 0)
        return TW_BODY_MORE;
    if (r->rb_mode == TW_RB_WHOLE) {
        if (!body_grow(r, len)) {
            tw_request_body_fail(r, 500);
            return TW_BODY_STOP;
        }
        memcpy(r->body + r->body_len, data, len);
        r->body_len += len;
        return TW_BODY_MORE;
    }
    int rc = body_call(r, 0, data, len, false);
    if (rc < 0) {
        /* The handler gives up on this request: treat it as a disconnect. */
        r->rb_failed = true;
        r->close = true;
        return TW_BODY_DROP;
    }
    if (r->rb_failed || r->aborted)
        return TW_BODY_STOP;
    if (rc == 1) {
        r->rb_paused = true;
        return TW_BODY_PAUSE;
    }
    return TW_BODY_MORE;
}

void tw_request_body_end(tw_request_t *r)
{
    if (r->rb_failed || r->rb_done)
        return;
    r->rb_done = true;
    tw_request_hold(r);
    body_call(r, TW_NEXT, "", 0, true);
    tw_request_release(r);
}

void tw_request_body_fail(tw_request_t *r, int status)
{
    if (r->rb_done || r->rb_failed)
        return;
    r->rb_failed = true;
    r->close = true;
    if (r->rb_mode == TW_RB_NONE)
        return;
    tw_request_hold(r);
    body_call(r, status, NULL, 0, false);
    /* A handler that relies on callbacks (it returned TW_DONE) and did not
     * finish gets the core's answer: the error page, or, once its head is
     * out, the end of the connection. */
    if (status != TW_ERROR && !r->suspended && !r->finished && !r->aborted &&
        r->stage == TW_AT_RESPONSE)
        tw_req_error(r, status);
    tw_request_release(r);
}
