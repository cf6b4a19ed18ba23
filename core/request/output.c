/* output.c — the response on its way out: the head (after the header
 * filters), the body through the body filters to the transport, the
 * Content-Length checks, the output pump for files that filters must
 * read, and back-pressure (drain callbacks). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "request/request.h"
#include "twister/log.h"

#define PUMP_CHUNK (64 * 1024)

static void pump(tw_request_t *r);
static void drain_cb(tw_loop_t *loop, void *arg);

static inline bool write_high(const tw_request_t *r)
{
    return r->t->ops->write_high(r->t);
}

/* Hands the head to the transport, which adds the framing and decides
 * whether the connection stays open. */
static int write_head(tw_request_t *r)
{
    int status = r->status;
    r->header_only = r->is_head || status < 200 || status == 204 || status == 304;
    tw_response_head_t head = {
        .status = status,
        .headers = r->resp_headers,
        .count = r->resp_count,
        .content_length = r->resp_length,
        .is_head = r->is_head,
        .close = r->close,
    };
    r->head_sent = true;
    r->resp_started = true;
    int rc = r->t->ops->write_head(r->t, &head);
    if (rc == 0)
        r->close = true;
    return rc < 0 ? -1 : 0;
}

/* Runs the header filters (for the core's error pages only those that asked
 * for them), then writes the head. Returns 0, or a filter's failure
 * (TW_ERROR or a status) after which the caller answers with an error
 * instead; on an error page a failure is only logged, as there is no
 * other page to fall back to. */
int tw_req_send_head(tw_request_t *r)
{
    const tw_phase_table_t *t = r->srv->phases;
    r->resp_started = true;
    if (t) {
        for (size_t i = t->header_filter_start; i < t->body_filter_start; i++) {
            const tw_phase_entry_t *e = &t->entries[i];
            if (r->error_response && !e->on_error_pages)
                continue;
            tw_plugin_call_t call = {.kind = TW_CALL_HEADER_FILTER,
                                     .fn.header_filter = e->fn.header_filter};
            r->in_header_filter = true;
            int rc = tw_call_plugin(r, e->module, "header filter", &call, false);
            r->in_header_filter = false;
            if (rc != TW_NEXT && r->error_response) {
                tw_log_error("header filter of module %s failed (%d) on an error page; sent "
                             "as it is",
                             tw_req_module_name(e->module), rc);
            } else if (rc != TW_NEXT) {
                tw_log_error("header filter of module %s failed (%d)",
                             tw_req_module_name(e->module), rc);
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
    tw_req_error(r, rc == TW_ERROR || rc < 200 || rc > 599 ? 500 : rc);
}

/* ---- body output ----------------------------------------------------------------------- */

/* Bytes of len that fit the declared Content-Length; more is the
 * module's error: truncated, and the connection closes after. */
static size_t fit_length(tw_request_t *r, size_t len, const char *what)
{
    if (len && r->resp_length >= 0) {
        uint64_t room = (uint64_t)r->resp_length - r->body_sent;
        if (len > room) {
            tw_log_error("module %s %s more body than its Content-Length %" PRId64
                         "; truncated, closing the connection",
                         tw_req_module_name(r->module), what, r->resp_length);
            len = (size_t)room;
            r->close = true;
        }
    }
    return len;
}

/* Hands body bytes to the transport (which frames them as the head said). */
static int wire_body(tw_request_t *r, const char *data, size_t len, bool last)
{
    if (r->header_only)
        return 0;
    len = fit_length(r, len, "wrote");
    if (!len && !last)
        return write_high(r) ? 1 : 0;
    int rc = r->t->ops->write_body(r->t, data, len, last);
    r->body_sent += len;
    if (rc < 0) {
        errno = EPIPE;
        return -1;
    }
    return rc;
}

static int wire_file(tw_request_t *r, int fd, off_t off, size_t len)
{
    len = fit_length(r, len, "sent");
    if (len == 0) {
        close(fd);
        return write_high(r) ? 1 : 0;
    }
    int rc = r->t->ops->sendfile(r->t, fd, off, len);
    r->body_sent += len;
    if (rc < 0) {
        errno = EPIPE;
        return -1;
    }
    return rc;
}

/* Whether the i-th body filter (from body_filter_start) runs for r. */
static bool body_filter_runs(const tw_request_t *r, size_t i)
{
    return i >= 64 || !(r->body_filters_skipped >> i & 1);
}

/* True if a body filter will see r's body: a file must then be read for
 * it; with none (none loaded, or every one skipped) it goes out with
 * sendfile. */
static bool have_body_filters(const tw_request_t *r)
{
    const tw_phase_table_t *t = r->srv->phases;
    if (!t || t->body_filter_start >= t->count || r->error_response)
        return false;
    for (size_t i = 0; i < t->count - t->body_filter_start; i++)
        if (body_filter_runs(r, i))
            return true;
    return false;
}

int tw_response_skip_body_filter(tw_request_t *r)
{
    if (!r->in_header_filter) {
        tw_log_error("module %s called tw_response_skip_body_filter outside a header filter",
                     tw_req_module_name(r->module));
        errno = EPERM;
        return -1;
    }
    const tw_phase_table_t *t = r->srv->phases;
    for (size_t i = t->body_filter_start; i < t->count && i - t->body_filter_start < 64; i++)
        if (t->entries[i].module == r->module)
            r->body_filters_skipped |= (uint64_t)1 << (i - t->body_filter_start);
    return 0;
}

/* Passes a piece through the body filters from index idx (relative to the
 * first body filter) and on to the wire. Returns 0, 1 (over the high-water
 * mark) or -1. */
static int filter_from(tw_request_t *r, size_t idx, const char *data, size_t len, bool last)
{
    const tw_phase_table_t *t = r->srv->phases;
    while (t && t->body_filter_start + idx < t->count && !body_filter_runs(r, idx))
        idx++; /* skipped for this response */
    size_t i = t ? t->body_filter_start + idx : 0;
    if (!t || i >= t->count)
        return wire_body(r, data, len, last);
    const tw_phase_entry_t *e = &t->entries[i];
    size_t prev_index = r->body_filter_index;
    r->body_filter_index = idx;
    r->in_body_filter++;
    tw_plugin_call_t call = {.kind = TW_CALL_BODY_FILTER,
                             .fn.body_filter = e->fn.body_filter,
                             .data = data,
                             .len = len,
                             .last = last};
    int rc = tw_call_plugin(r, e->module, "body filter", &call, false);
    r->in_body_filter--;
    r->body_filter_index = prev_index;
    if (rc != TW_NEXT) {
        if (!r->filter_failed) {
            tw_log_error("body filter of module %s failed (%d); closing the connection",
                         tw_req_module_name(e->module), rc);
            r->filter_failed = true;
            /* The head is out: the response ends here, the connection
             * closes after what was queued, and the request goes on to LOG
             * once its holders return (whatever the handler does next). */
            tw_req_error(r, 500);
        }
        errno = EIO;
        return -1;
    }
    return r->filter_failed ? -1 : write_high(r) ? 1 : 0;
}

int tw_body_filter_next(tw_request_t *r, const char *data, size_t len, bool last)
{
    if (!r->in_body_filter) {
        tw_log_error("module %s called tw_body_filter_next outside a body filter",
                     tw_req_module_name(r->module));
        errno = EPERM;
        return TW_ERROR;
    }
    int rc = filter_from(r, r->body_filter_index + 1, data, len, last);
    return rc < 0 ? TW_ERROR : TW_NEXT;
}

/* A body piece on its way out: through the filters if any. */
int tw_req_body_out(tw_request_t *r, const char *data, size_t len, bool last)
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
    if (!tw_req_api_allowed(r, fn, TW_API_OUTPUT))
        return -1;
    if (r->finished) {
        errno = EALREADY;
        return -1;
    }
    if (!tw_req_usable(r) || r->filter_failed) {
        errno = EPIPE;
        return -1;
    }
    if (!r->head_sent) {
        int rc = tw_req_send_head(r);
        if (rc != 0) {
            head_failed(r, rc);
            errno = EIO;
            return -1;
        }
    }
    return 0;
}

static void out_fd_cleanup(void *arg);

/* Queues an output op. A file op owns fd from here on: its cleanup is
 * registered before the op is queued, so on ENOMEM nothing is queued (and
 * the caller closes fd) and a queued op always has its file. */
static tw_out_op_t *out_push(tw_request_t *r, int kind, int fd)
{
    tw_out_op_t *op = tw_pool_calloc(r->pool, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    op->fd = -1;
    if (kind == TW_OUT_FILE) {
        if (tw_pool_add_cleanup(r->pool, out_fd_cleanup, op) != 0)
            return NULL;
        op->fd = fd;
    }
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
    if (!tw_req_api_allowed(r, "tw_response_send", TW_API_OUTPUT))
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
    if (content_type && !tw_req_valid_value(content_type, &ctlen)) {
        errno = EINVAL;
        return -1;
    }
    if (!tw_req_usable(r)) {
        errno = EPIPE;
        return -1;
    }
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_hold(r);
    int rc = 0;
    r->status = status;
    if (content_type) {
        tw_req_header_remove(r, "Content-Type", 12);
        rc = tw_req_header_add(r, "Content-Type", 12, content_type, ctlen);
    }
    if (status != 304) /* a 304 keeps what was declared: len is no GET's length */
        r->resp_length = (int64_t)len;
    if (rc == 0) {
        int hr = tw_req_send_head(r);
        if (hr != 0) {
            head_failed(r, hr);
            errno = EIO;
            rc = -1;
        } else {
            if (tw_req_body_out(r, body, len, false) < 0 || tw_req_finish_now(r) < 0)
                rc = -1;
        }
    }
    tw_req_api_release(r);
    tw_transport_end(tr);
    return rc < 0 ? -1 : 0;
}

int tw_response_write(tw_request_t *r, const void *data, size_t len)
{
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_hold(r);
    int rc = output_begin(r, "tw_response_write");
    if (rc == 0) {
        if (r->header_only) {
            rc = 0;
        } else if (r->out_head) {
            tw_out_op_t *op = out_push(r, TW_OUT_DATA, -1);
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
            rc = tw_req_body_out(r, data, len, false);
        } else {
            rc = write_high(r) ? 1 : 0;
        }
    }
    tw_req_api_release(r);
    tw_transport_end(tr);
    return rc;
}

int tw_response_sendfile(tw_request_t *r, int fd, off_t offset, size_t len)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    tw_transport_t *tr = tw_req_begin(r);
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
        tw_out_op_t *op = out_push(r, TW_OUT_FILE, fd);
        if (!op) {
            close(fd);
            errno = ENOMEM;
            rc = -1;
        } else {
            op->off = offset;
            op->len = len;
            pump(r);
            rc = r->out_head ? 1 : r->filter_failed ? -1 : write_high(r) ? 1 : 0;
        }
    } else {
        rc = wire_file(r, fd, offset, len);
    }
    tw_req_api_release(r);
    tw_transport_end(tr);
    return rc;
}

/* Ends the body: the last piece through the filters, the last chunk, the
 * Content-Length check. */
int tw_req_finish_now(tw_request_t *r)
{
    int rc = 0;
    if (!r->header_only && !r->filter_failed)
        rc = tw_req_body_out(r, NULL, 0, true);
    if (!r->header_only && r->resp_length >= 0 && r->body_sent < (uint64_t)r->resp_length) {
        tw_log_error("module %s finished after %" PRIu64 " of %" PRId64
                     " body bytes; closing the connection",
                     tw_req_module_name(r->module), r->body_sent, r->resp_length);
        r->close = true;
    }
    r->finished = true;
    return rc < 0 ? -1 : 0;
}

int tw_response_finish(tw_request_t *r)
{
    if (!tw_req_api_allowed(r, "tw_response_finish", TW_API_OUTPUT))
        return -1;
    if (r->finished) {
        errno = EALREADY;
        return -1;
    }
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_hold(r);
    int rc = 0;
    if (!tw_req_usable(r)) {
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
                if (!out_push(r, TW_OUT_FINISH, -1)) {
                    errno = ENOMEM;
                    rc = -1;
                }
            } else {
                rc = tw_req_finish_now(r);
            }
        } else if (r->finished) {
            rc = 0; /* replaced by an error page */
        }
    }
    tw_req_api_release(r);
    tw_transport_end(tr);
    return rc;
}

/* Moves output queued behind a filtered sendfile while the client keeps
 * up. */
static void pump(tw_request_t *r)
{
    while (r->out_head && tw_req_usable(r) && !r->filter_failed) {
        if (write_high(r))
            return; /* the drain picks it up */
        tw_out_op_t *op = r->out_head;
        if (op->kind == TW_OUT_FILE) {
            if (!r->pump_buf) {
                r->pump_buf = tw_pool_alloc(r->pool, PUMP_CHUNK);
                if (!r->pump_buf) {
                    tw_req_error(r, 500);
                    return;
                }
            }
            size_t want = op->len < PUMP_CHUNK ? op->len : PUMP_CHUNK;
            ssize_t n;
            do
                n = pread(op->fd, r->pump_buf, want, op->off);
            while (n < 0 && errno == EINTR);
            if (n <= 0) {
                tw_log_error("reading a file for module %s: %s", tw_req_module_name(r->module),
                             n < 0 ? strerror(errno) : "unexpected end of file");
                tw_req_error(r, 500);
                return;
            }
            op->off += n;
            op->len -= (size_t)n;
            if (tw_req_body_out(r, r->pump_buf, (size_t)n, false) < 0)
                return;
            if (op->len > 0)
                continue;
            close(op->fd);
            op->fd = -1;
        } else if (op->kind == TW_OUT_DATA) {
            if (tw_req_body_out(r, op->data, op->len, false) < 0)
                return;
        }
        r->out_head = op->next;
        if (!r->out_head)
            r->out_tail = NULL;
        if (op->kind == TW_OUT_FINISH) {
            tw_req_finish_now(r);
            r->out_head = r->out_tail = NULL;
        }
    }
}

/* ---- back-pressure ---------------------------------------------------------------------- */

/* Runs the drain callbacks (each once) while the queue stays low. The
 * caller holds r. */
static void run_drain_cbs(tw_request_t *r)
{
    while (r->drain_cbs && r->t->ops->write_low(r->t) && !r->out_head && !r->aborted &&
           r->stage < TW_AT_LOG) {
        tw_req_cb_t *cb = r->drain_cbs;
        r->drain_cbs = cb->next;
        tw_req_call_cb(r, cb->module, "drain", cb->fn, cb->arg);
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
    (void)loop;
    tw_transport_t *tr = tw_req_begin(r);
    tw_request_drained(r);
    tw_transport_end(tr);
}

int tw_response_on_drain(tw_request_t *r, tw_request_cb fn, void *arg)
{
    if (!tw_req_api_allowed(r, "tw_response_on_drain", TW_API_OUTPUT))
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
    if (r->t->ops->write_low(r->t) && !r->out_head) {
        if (!tw_loop_deferred_queued(&r->drain_node)) {
            tw_loop_deferred_init(&r->drain_node, drain_cb, r);
            tw_loop_defer(r->srv->loop, &r->drain_node);
        }
    } else if (!write_high(r)) {
        r->t->ops->notify_flushed(r->t);
    }
    return 0;
}
