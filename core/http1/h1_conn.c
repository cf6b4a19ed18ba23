/* h1_conn.c — one HTTP/1.1 connection (Tornado's HTTP1Connection): reads
 * requests off an IOStream with the incremental parser, hands them to the
 * request engine through the transport table at the end of this file,
 * enforces the timeouts, and ends the connection (gracefully, lingering,
 * or at once). Bodies are h1_body.c's, the response framing and the
 * keep-alive decision h1_out.c's, the server's lists h1_server.c's; the
 * engine's fields are never touched here (the request is opaque).
 *
 * Reading. One tw_stream_read_some is pending while the connection wants
 * input (waiting for a head, reading a body, lingering). Its callback gets
 * every buffered byte from the first byte of the current request and
 * consumes what it used: the head (copied into the request pool, so the
 * stream's buffer may move), then body bytes as the handler reads them, then
 * the next pipelined head — all in one callback when handlers answer at
 * once, so a batch of pipelined requests costs one read and one writev.
 * While a handler holds a request without reading its body, no read is
 * pending and nothing is parsed ahead: the stream keeps reading ahead into
 * its bounded buffer (and notices a peer that hangs up), and what it holds
 * is parsed once the response is done. Bytes the stream already offered
 * but the connection could not take yet (pipelined behind an asynchronous
 * handler, or behind a paused body stream) are moved to a small per-
 * connection stash, because the stream offers unconsumed bytes again only
 * when more arrive; they are processed from there, in order, first.
 *
 * Output. The stream is corked while the engine works on a connection and
 * uncorked when it returns to the loop, so a head and its body, and the
 * responses of a pipelined batch, leave in one writev.
 *
 * Unread bodies. A handler that answers without reading a request body
 * (401, 413, a redirect) gets its response with "Connection: close"; the
 * body is never parsed as a request: after the response the connection
 * shuts down its sending side and drops what arrives (lingering close, so
 * the client reads the response instead of a reset) until the client
 * closes or linger_ms passes. Closing is simpler and safer than discarding
 * an unbounded body, and with "Expect: 100-continue" (no 100 sent) the
 * client never sends the body at all.
 *
 * Memory: see h1.h. The stream's buffers and the pool's blocks come from
 * the block cache (internal.h), so a busy keep-alive connection pays no
 * malloc per request.
 *
 * Closing. A final response to a client that announced it was done
 * (Connection: close, HTTP/1.0) with nothing unread closes right after
 * the response is written; other final responses close lingering (below).
 *
 * Timeouts, one read-side timer per active connection (armed lazily: it
 * may fire early, then it re-arms for what is left): before the first
 * byte of a request, keepalive_timeout_ms (header_timeout_ms for a new
 * connection), then silent close — for a resting connection the server's
 * rest timer does this; from the first byte of a head, header_timeout_ms
 * absolute — a client dribbling a byte a second is cut off — then 408;
 * while a body is read, body_timeout_ms between reads and an average of
 * min_body_rate bytes/s after body_rate_grace_ms, then 408. A second timer
 * closes a connection whose queued response makes no progress for
 * send_timeout_ms. */
#include "http1/h1.h"
#include "tls/tls_context.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "handoff.h"
#include "proxy_protocol.h"
#include "proxy_transport.h"
#include "twister/log.h"

#ifndef NDEBUG
#include <assert.h>
#include <fcntl.h>
#endif

static const tw_transport_ops_t h1_ops;

static size_t conn_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg);
static void conn_on_close(tw_stream_t *s, void *arg);
static void conn_on_timer(tw_loop_t *loop, tw_timer_t *t, void *arg);
static void conn_process(tw_http_conn_t *c);
static void conn_stash_cb(tw_loop_t *loop, void *arg);
static inline bool stash_pending(const tw_http_conn_t *c);
static tw_request_t *request_begin_bad(tw_http_conn_t *c, const char *data, size_t len);

static inline bool conn_open(const tw_http_conn_t *c)
{
    return tw_h1_open(c);
}

static inline tw_loop_t *conn_loop(const tw_http_conn_t *c)
{
    return c->srv->loop;
}

static inline uint64_t conn_now(const tw_http_conn_t *c)
{
    return tw_loop_now(c->srv->loop);
}

/* ---- work records --------------------------------------------------------------- */

/* Gives c a work record (from the free list) and moves it to the active
 * list. Returns false on ENOMEM. */
static bool conn_activate(tw_http_conn_t *c)
{
    if (c->w)
        return true;
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = tw_h1_work_get(srv);
    if (!w)
        return false;
    w->next_free = NULL;
    w->stash = NULL;
    tw_loop_deferred_init(&w->stash_node, conn_stash_cb, c);
    w->flush_notify = false;
    w->in_stash = false;
    w->in = NULL;
    w->in_len = w->in_used = w->in_feeding = 0;
    tw_timer_init(&w->timer, conn_on_timer, c);
    w->timer_deadline = 0;
    w->head_start = w->body_start = w->last_read = w->linger_start = 0;
    w->body_state = TW_H1_BODY_UNREAD;
    w->body_paused = w->body_discard = false;
    tw_timer_init(&w->send_timer, tw_h1_on_send_timer, c);
    w->out_total = w->send_mark = 0;
    w->peer_text[0] = '\0';
    c->w = w;
    if (c->list != TW_CONN_ACTIVE) {
        tw_h1_list_unlink(srv, c);
        tw_h1_list_link_after(srv, c, TW_CONN_ACTIVE, NULL);
    }
    return true;
}

/* Releases what only an active connection needs (c is not on the stack
 * of anything that could use it). */
static void conn_release_work(tw_http_conn_t *c)
{
    tw_conn_work_t *w = c->w;
    if (!w)
        return;
    tw_timer_stop(conn_loop(c), &w->timer);
    tw_timer_stop(conn_loop(c), &w->send_timer);
    tw_loop_defer_cancel(conn_loop(c), &w->stash_node);
    free(w->stash);
    c->w = NULL;
    tw_h1_work_put(c->srv, w);
}

void tw_h1_detach_stream(tw_http_conn_t *c)
{
    if (c->stream) {
        tw_stream_t *s = c->stream;
        c->stream = NULL;
        tw_stream_set_close_cb(s, NULL, NULL);
        tw_stream_set_drain_cb(s, NULL, NULL);
        tw_stream_cancel_read(s);
        tw_stream_close(s);
    }
    c->reading = false;
    c->state = TW_CONN_CLOSED;
}

/* Hard close of one connection: the request (if any) is aborted and ended
 * now, the connection freed now. */
void tw_h1_hard_close(tw_http_conn_t *c)
{
    tw_h1_detach_stream(c);
    if (!c->req) {
        tw_h1_conn_free(c);
        return;
    }
    tw_h1_enter(c);
    tw_request_abort(c->req, false);
    if (c->req && !c->freeing) {
        /* Suspended: it ends when its handler resumes. Off the active list,
         * so a hard stop visits every connection once. */
        tw_h1_list_unlink(c->srv, c);
        tw_h1_list_link_after(c->srv, c, TW_CONN_STOPPED, NULL);
    }
    tw_h1_leave(c);
}

void tw_h1_end_stopped(tw_http_conn_t *c)
{
    tw_h1_enter(c);
    tw_request_abort(c->req, true);
    tw_h1_leave(c);
}

void tw_h1_conn_drain_began(tw_http_conn_t *c)
{
    if (c->state == TW_CONN_IDLE || (c->state == TW_CONN_HEAD && c->w->head_blank))
        tw_h1_timer_update(c);
}

/* ---- connection lifecycle ------------------------------------------------------ */

int tw_http_conn_start(tw_http_server_t *srv, tw_loop_t *loop, int fd, const struct sockaddr *peer,
                       socklen_t peer_len, size_t listener_index)
{
    return tw_h1_conn_new(srv, loop, fd, peer, peer_len, listener_index) ? 0 : -1;
}

tw_http_conn_t *tw_h1_conn_new(tw_http_server_t *srv, tw_loop_t *loop, int fd,
                               const struct sockaddr *peer, socklen_t peer_len,
                               size_t listener_index)
{
#ifndef NDEBUG
    assert(fcntl(fd, F_GETFL) & O_NONBLOCK); /* accept4 with SOCK_NONBLOCK */
#endif
    if (!srv->loop)
        srv->loop = loop;
    if (srv->loop != loop) { /* one server, one loop */
        close(fd);
        errno = EINVAL;
        return NULL;
    }
    tw_http_conn_t *c = tw_block_alloc(sizeof *c); /* see tw_stream_adopt */
    if (c)
        memset(c, 0, sizeof *c);
    if (!c) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    /* The stream's buffer must hold the largest head the limits allow (and
     * some body behind it), or a legal head would fail as too large. */
    tw_stream_options_t opts = srv->stream;
    size_t head_max = srv->limits.request_line_max + srv->limits.header_size_max + 4096;
    if (opts.max_buffer_size && opts.max_buffer_size < head_max)
        opts.max_buffer_size = head_max;
    c->stream = tw_stream_adopt(loop, fd, &opts); /* owns fd from here, even on error */
    if (!c->stream) {
        int e = errno;
        tw_block_free(c, sizeof *c);
        errno = e;
        return NULL;
    }
    c->srv = srv;
    c->transport.ops = &h1_ops;
    c->transport.peer = &c->peer.sa;
    c->transport.listener_index = listener_index;
    c->proxy_pending =
        listener_index < srv->proxy_protocol_count && srv->proxy_protocol[listener_index];
    if (peer && peer_len > 0) {
        if ((size_t)peer_len <= sizeof c->peer) {
            memcpy(&c->peer, peer, (size_t)peer_len);
            c->transport.peer_len = peer_len;
        } else {
            /* Longer than any IP address (a named unix socket): the family only. */
            c->peer.sa.sa_family = peer->sa_family;
            c->transport.peer_len = (socklen_t)sizeof peer->sa_family;
        }
    }
    int tls = 0;
    if (c->proxy_pending && tw_tls_server_listens(srv->tls, listener_index)) {
        /* The balancer's PROXY header comes in clear before the client's
         * TLS: read it alone, then start TLS (conn_proxy_header). */
        tw_proxy_transport_attach(c->stream);
        c->tls_after_proxy = true;
        tls = 1;
    } else {
        tls = tw_tls_server_attach(srv->tls, c->stream, listener_index, &c->transport.tls_facts);
    }
    if (tls < 0) {
        int e = errno;
        tw_stream_close(c->stream); /* its close callback is not set: nothing follows */
        tw_block_free(c, sizeof *c);
        errno = e;
        return NULL;
    }
    c->transport.tls = tls == 1;
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6))
        tw_stream_nodelay_when_needed(c->stream);
    tw_stream_set_close_cb(c->stream, conn_on_close, c);
    tw_stream_set_drain_cb(c->stream, tw_h1_on_drain, c);

    srv->conn_count++;
    srv->counters.accepted++;

    /* At rest until its first byte arrives. */
    c->state = TW_CONN_IDLE;
    c->idle_since = conn_now(c);
    tw_h1_list_insert_rest(srv, c, TW_CONN_REST_NEW);
    if (!c->prev)
        tw_h1_rest_timer_update(srv);
    if (tw_stream_read_some(c->stream, conn_on_data, c) == 0)
        c->reading = true;
    return c;
}

/* Unlinks c at once; the memory goes when nothing on the stack uses it. */
void tw_h1_conn_free(tw_http_conn_t *c)
{
    tw_http_server_t *srv = c->srv;
    if (!c->freeing) {
        c->freeing = true;
        if (c->list == TW_CONN_MOVING)
            tw_handoff_cancel(srv->handoff, c); /* its socket is gone: no verdict */
        tw_h1_list_unlink(srv, c);
        srv->conn_count--;
        if (c->w) {
            tw_timer_stop(conn_loop(c), &c->w->timer);
            tw_timer_stop(conn_loop(c), &c->w->send_timer);
        }
        tw_h1_server_check_all_closed(srv);
    }
    if (c->depth > 0)
        return;
    conn_release_work(c);
    tw_block_free(c, sizeof *c);
}

/* The stream closed (peer, error, timeout, or us). The stream is freed
 * right after this returns. */
static void conn_on_close(tw_stream_t *s, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    c->stream = NULL;
    c->reading = false;
    c->state = TW_CONN_CLOSED;
    if (c->w) {
        tw_timer_stop(conn_loop(c), &c->w->timer);
        tw_timer_stop(conn_loop(c), &c->w->send_timer);
    }
    if (c->req) {
        tw_h1_enter(c);
        tw_request_abort(c->req, false);
        tw_h1_leave(c); /* frees c once the request has ended */
    } else {
        tw_h1_conn_free(c);
    }
}

/* Stops serving requests on c: once the queued output is written the
 * sending side shuts down and input is dropped until the peer closes or
 * linger_ms passes. */
static void conn_linger_begin(tw_http_conn_t *c)
{
    if (!c->w || c->w->linger_start || !conn_open(c))
        return;
    shutdown(tw_stream_fd(c->stream), SHUT_WR);
    c->w->linger_start = conn_now(c);
    tw_h1_timer_update(c);
}

/* Ends the connection after what is queued. quiet: the client announced
 * its last request and nothing of it is unread, so nothing more can come
 * that would turn our close into a reset: close without lingering. */
static void conn_close_gracefully(tw_http_conn_t *c, bool quiet)
{
    c->must_close = true;
    if (!conn_open(c))
        return;
    if (c->state == TW_CONN_LINGER)
        return;
    c->state = TW_CONN_LINGER;
    if (c->w)
        c->w->linger_start = 0;
    if (quiet || c->srv->linger_ms == 0 || !c->w) {
        tw_stream_close_after_write(c->stream);
        return;
    }
    if (tw_stream_write_queued(c->stream) == 0)
        conn_linger_begin(c);
    else
        tw_h1_notify_flushed(&c->transport); /* the shutdown waits for the response */
}

/* ---- enter / leave: corking, re-arming reads, deferred frees ------------------ */

static void conn_arm_read(tw_http_conn_t *c)
{
    if (c->reading || (c->w && tw_loop_deferred_queued(&c->w->stash_node)) || !conn_open(c) ||
        c->freeing)
        return;
    bool wanted;
    switch (c->state) {
    case TW_CONN_IDLE:
        wanted = !c->output_blocked;
        break;
    case TW_CONN_HEAD:
    case TW_CONN_LINGER:
        wanted = true;
        break;
    case TW_CONN_BODY:
        wanted = c->req && !c->w->body_paused;
        break;
    default:
        wanted = false;
        break;
    }
    if (!wanted)
        return;
    if (stash_pending(c) && c->state != TW_CONN_HEAD) {
        /* What the stash holds goes first (a HEAD state with a stash holds a
         * partial head: it needs the socket's bytes, appended). */
        tw_loop_defer(conn_loop(c), &c->w->stash_node);
        return;
    }
    if (tw_stream_read_some(c->stream, conn_on_data, c) == 0)
        c->reading = true;
}

/* An active connection went idle (back on the loop, no request): it comes
 * to rest if nothing is left in flight, else its idle timer runs — and
 * with output still queued, the flush brings it back here to rest. */
static void conn_idle_settle(tw_http_conn_t *c, size_t queued)
{
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = c->w;
    if (queued == 0 && !c->req && !c->must_close && !c->output_blocked && !w->stash &&
        !tw_loop_deferred_queued(&w->stash_node) && tw_stream_buffered(c->stream) == 0) {
        conn_release_work(c);
        tw_stream_shrink(c->stream);
        tw_h1_list_unlink(srv, c);
        tw_h1_list_insert_rest(srv, c, c->served ? TW_CONN_REST_KEPT : TW_CONN_REST_NEW);
        if (srv->draining && tw_h1_handoff_offer(c))
            return;   /* on its way to the new generation */
        if (!c->prev) /* behind others, the timer is already armed for them */
            tw_h1_rest_timer_update(srv);
        return;
    }
    tw_h1_timer_update(c);
    if (queued > 0 && !c->output_blocked)
        tw_h1_notify_flushed_once(c); /* conn_on_flushed comes back here to rest */
}

void tw_h1_enter(tw_http_conn_t *c)
{
    if (c->depth++ == 0) {
        if (conn_open(c) && !c->corked) {
            tw_stream_cork(c->stream);
            c->corked = true;
        }
    }
}

void tw_h1_leave(tw_http_conn_t *c)
{
    if (--c->depth > 0)
        return;
    if (c->stream) {
        if (c->corked) {
            c->corked = false;
            tw_stream_uncork(c->stream);
        }
        conn_arm_read(c);
        tw_conn_work_t *w = c->w;
        if (conn_open(c) && w && !c->freeing) {
            size_t queued = tw_stream_write_queued(c->stream);
            if (queued > 0 && c->srv->send_timeout_ms && !tw_timer_active(&w->send_timer)) {
                w->send_mark = w->out_total - queued;
                tw_timer_start(conn_loop(c), &w->send_timer, c->srv->send_timeout_ms);
            }
            if (c->state == TW_CONN_LINGER && !w->linger_start && queued == 0 && c->srv->linger_ms)
                conn_linger_begin(c);
            if (c->state == TW_CONN_IDLE)
                conn_idle_settle(c, queued);
        }
    }
    if (c->freeing)
        tw_h1_conn_free(c);
}

/* ---- the end of a request ------------------------------------------------------ */

/* Bytes received after what the engine consumed so far. */
size_t tw_h1_buffered_after(const tw_http_conn_t *c)
{
    size_t n = c->stream ? tw_stream_buffered(c->stream) : 0;
    const tw_conn_work_t *w = c->w;
    if (!w)
        return n;
    if (w->in && !w->in_stash)
        return w->in_len - w->in_used - w->in_feeding; /* the stream's bytes, being processed */
    if (w->in)
        n += w->in_len - w->in_used - w->in_feeding;
    else if (w->stash)
        n += w->stash->len - w->stash->off;
    return n;
}

/* The request ended (the engine's done): decide keep-alive, reset the
 * pool, go on with the next request or close. */
static void h1_done(tw_transport_t *t, bool close)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    tw_conn_work_t *w = c->w;
    bool body_done = !tw_h1_has_body(w) || w->body_state == TW_H1_BODY_COMPLETE;
    if (!body_done && w->body_discard && w->body_state == TW_H1_BODY_UNREAD && w->in &&
        w->in_len - w->in_used >= w->content_length) {
        w->in_used += (size_t)w->content_length;
        body_done = true;
    }
    bool keep = w->keep_alive && !c->must_close && !close && body_done && conn_open(c);
    bool quiet = !keep && w->client_close && body_done && tw_h1_buffered_after(c) == 0;
    c->srv->counters.responses++;
    c->served++;
    c->req = NULL;
    tw_pool_reset(w->pool); /* runs the request's cleanups: timers, files */
    if (!c->stream) {
        tw_h1_conn_free(c); /* a zombie: its client left while the request ran */
        return;
    }
    if (!keep) {
        conn_close_gracefully(c, quiet);
        return;
    }
    c->state = TW_CONN_IDLE;
    c->idle_since = conn_now(c);
    if (tw_h1_write_high(&c->transport)) {
        c->output_blocked = true; /* unblocked by the drain or the flush */
        tw_h1_notify_flushed(&c->transport);
    }
    tw_h1_timer_update(c);
}

/* ---- the read-side timer ------------------------------------------------------ */

/* When the current state times out, or 0 if it does not. */
static uint64_t conn_deadline(const tw_http_conn_t *c)
{
    const tw_http_server_t *srv = c->srv;
    switch (c->state) {
    case TW_CONN_IDLE:
        if (c->output_blocked)
            return 0; /* the send timer watches a client that does not read */
        return tw_h1_idle_deadline(c);
    case TW_CONN_HEAD:
        if (c->w->head_blank)
            return tw_h1_idle_deadline(c); /* empty lines only: still idle */
        return c->w->head_start + srv->header_timeout_ms;
    case TW_CONN_BODY:
        return tw_h1_body_deadline(c);
    case TW_CONN_LINGER:
        return c->w->linger_start ? c->w->linger_start + c->srv->linger_ms : 0;
    default:
        return 0;
    }
}

void tw_h1_timer_update(tw_http_conn_t *c)
{
    tw_conn_work_t *w = c->w;
    if (!w)
        return; /* resting (the rest timer's) or closed */
    if (c->state == TW_CONN_IDLE && c->depth > 0)
        return; /* tw_h1_leave settles it: rest, or this timer */
    uint64_t d = conn_deadline(c);
    if (!d)
        return; /* an armed timer fires, finds nothing to do */
    if (tw_timer_active(&w->timer) && w->timer_deadline <= d)
        return; /* it fires early and re-arms for the rest */
    uint64_t now = conn_now(c);
    w->timer_deadline = d;
    tw_timer_start(conn_loop(c), &w->timer, d > now ? d - now : 0);
}

static void conn_on_timer(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)t;
    if (!conn_open(c) || !c->w)
        return;
    uint64_t d = conn_deadline(c);
    if (!d)
        return;
    uint64_t now = tw_loop_now(loop);
    if (now < d) {
        c->w->timer_deadline = d;
        tw_timer_start(loop, &c->w->timer, d - now);
        return;
    }
    tw_h1_enter(c);
    switch (c->state) {
    case TW_CONN_IDLE:
        /* No byte of a new request: close without a word. */
        tw_stream_close(c->stream);
        break;
    case TW_CONN_HEAD: {
        if (c->w->head_blank || c->proxy_pending) {
            /* Nothing but empty lines, which precede no request yet: an
             * idle connection, closed without a word. */
            tw_stream_close(c->stream);
            break;
        }
        c->srv->counters.timeouts++;
        c->must_close = true;
        c->state = TW_CONN_REQUEST;
        tw_request_t *r = request_begin_bad(c, NULL, 0);
        if (!r) {
            tw_stream_close(c->stream);
            break;
        }
        c->req = r;
        tw_request_fail(r, 408);
        break;
    }
    case TW_CONN_BODY:
        c->srv->counters.timeouts++;
        c->must_close = true;
        c->state = TW_CONN_REQUEST;
        c->w->body_state = TW_H1_BODY_FAILED;
        tw_request_body_fail(c->req, 408);
        break;
    case TW_CONN_LINGER:
        tw_stream_close(c->stream);
        break;
    default:
        break;
    }
    tw_h1_leave(c);
}

/* ---- reading requests --------------------------------------------------------- */

static inline bool stash_pending(const tw_http_conn_t *c)
{
    return c->w && c->w->stash && c->w->stash->off < c->w->stash->len;
}

/* The stash is rare: it goes as soon as it is empty. */
static void stash_clear(tw_http_conn_t *c)
{
    free(c->w->stash);
    c->w->stash = NULL;
}

/* Appends to the stash, compacting first. */
static bool stash_append(tw_http_conn_t *c, const char *data, size_t len)
{
    tw_conn_stash_t *st = c->w->stash;
    size_t have = 0, cap = 0;
    if (st) {
        if (st->off > 0) {
            memmove(st->data, st->data + st->off, st->len - st->off);
            st->len -= st->off;
            st->off = 0;
        }
        have = st->len;
        cap = st->cap;
    }
    if (have + len > cap) {
        size_t ncap = cap ? cap : 4096;
        while (ncap < have + len)
            ncap *= 2;
        tw_conn_stash_t *n = realloc(st, sizeof *n + ncap);
        if (!n)
            return false;
        if (!st)
            n->off = n->len = 0;
        n->cap = ncap;
        c->w->stash = st = n;
    }
    memcpy(st->data + st->len, data, len);
    st->len += len;
    return true;
}

/* Processes what the stash holds, as conn_on_data does for the stream. */
static void conn_run_stash(tw_http_conn_t *c)
{
    if (!stash_pending(c))
        return;
    tw_conn_work_t *w = c->w;
    w->in = w->stash->data + w->stash->off;
    w->in_len = w->stash->len - w->stash->off;
    w->in_used = 0;
    w->in_stash = true;
    conn_process(c);
    w->stash->off += w->in_used;
    w->in = NULL;
    w->in_len = w->in_used = 0;
    w->in_stash = false;
    if (!stash_pending(c) || !conn_open(c) || c->state == TW_CONN_LINGER)
        stash_clear(c);
}

static void conn_stash_cb(tw_loop_t *loop, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)loop;
    tw_h1_enter(c);
    conn_run_stash(c);
    tw_h1_leave(c);
}

size_t tw_h1_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    return conn_on_data(s, status, data, len, arg);
}

static size_t conn_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    c->reading = false;
    if (status != TW_STREAM_OK) {
        if (status == TW_STREAM_TOO_LARGE && c->state == TW_CONN_HEAD && !c->req) {
            /* The buffer filled before the parser's limits: the head is too big. */
            tw_h1_enter(c);
            c->must_close = true;
            c->state = TW_CONN_REQUEST;
            tw_request_t *r = request_begin_bad(c, stash_pending(c) ? NULL : data, len);
            if (r) {
                c->req = r;
                tw_request_fail(r, 431);
            } else {
                tw_stream_close(c->stream);
            }
            tw_h1_leave(c);
        }
        /* EOF and errors: the stream closes and conn_on_close follows. */
        return len;
    }
    if (!conn_activate(c)) {
        tw_log_error("http: cannot serve a connection: out of memory");
        tw_stream_close(c->stream);
        return len;
    }
    size_t used;
    tw_conn_work_t *w = c->w;
    tw_h1_enter(c);
    if (stash_pending(c)) {
        /* Older bytes wait in the stash (a head split across it and the
         * socket): keep the order by appending. */
        if (!stash_append(c, data, len))
            tw_stream_close(c->stream);
        used = len;
        conn_run_stash(c);
    } else {
        w->in = data;
        w->in_len = len;
        w->in_used = 0;
        conn_process(c);
        used = w->in_used;
        w->in = NULL;
        w->in_len = w->in_used = 0;
        if (used < len && conn_open(c) && c->state != TW_CONN_HEAD) {
            /* Stopped with bytes left (a handler holds the request, a body
             * stream paused): the stream would offer them again only once
             * more arrive, so keep them. */
            if (!stash_append(c, data + used, len - used))
                tw_stream_close(c->stream);
            used = len;
        }
    }
    tw_h1_leave(c); /* re-arms the read if the state wants more */
    return used;
}

/* Starts a new request head at the first byte of in. The parser's field
 * array is the server's scratch array while the head arrives in one piece
 * (the usual case: nothing in the pool); a head split across reads moves
 * its fields into the pool (conn_parse) before the scratch is reused. */
static bool conn_begin_head(tw_http_conn_t *c)
{
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = c->w;
    if (!w->pool && !(w->pool = tw_pool_new(srv->pool_size)))
        return false;
    size_t cap = srv->limits.headers_max ? srv->limits.headers_max : 100;
    if (srv->scratch_cap < cap) {
        tw_http_field_t *f = realloc(srv->scratch_fields, cap * sizeof *f);
        if (!f)
            return false;
        srv->scratch_fields = f;
        srv->scratch_cap = cap;
    }
    tw_http_parser_init(&w->parser, &srv->limits, srv->scratch_fields, cap);
    w->parser.method_filter = srv->method_filter;
    w->parser.method_filter_arg = srv->method_filter_arg;
    c->state = TW_CONN_HEAD;
    w->head_start = conn_now(c);
    w->head_blank = false;
    w->head_is_head = false;
    return true;
}

/* After TW_PARSE_AGAIN: whether the avail bytes of p the parser took are
 * only empty lines (at most 8 CRLFs and a CR: the parser's limit). */
static bool only_empty_lines(const char *p, size_t avail)
{
    if (avail > 17 || p[0] != '\r')
        return false;
    for (size_t i = 0; i < avail; i++)
        if (p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

/* The head is incomplete: give its fields storage of their own. */
static bool conn_keep_fields(tw_http_conn_t *c)
{
    tw_http_parser_t *p = &c->w->parser;
    if (p->fields != c->srv->scratch_fields)
        return true;
    size_t cap = p->field_capacity;
    tw_http_field_t *fields = tw_pool_alloc(c->w->pool, cap * sizeof *fields);
    if (!fields)
        return false;
    size_t used = p->field_count < cap ? p->field_count + 1 : cap; /* + the one being read */
    memcpy(fields, p->fields, used * sizeof *fields);
    p->fields = fields;
    return true;
}

/* What the wire needs of the request that begins: from the parsed head
 * (good), or nothing to rely on (a refused head). */
static void request_begin(tw_http_conn_t *c, bool good)
{
    tw_conn_work_t *w = c->w;
    const tw_http_parser_t *p = &w->parser;
    w->version = good ? p->version : 11;
    w->client_keep_alive = good && p->keep_alive;
    w->client_close = good && !p->keep_alive;
    w->expect_continue = good && p->expect_continue;
    w->body_kind = good ? p->body_kind : TW_BODY_NONE;
    w->content_length = good && p->body_kind == TW_BODY_LENGTH ? p->content_length : 0;
    w->framing = (tw_h1_framing_t){0};
    w->head_sent = w->keep_alive = w->continue_sent = false;
    w->body_state = TW_H1_BODY_UNREAD;
    w->body_paused = w->body_discard = false;
    w->paused_ms = 0;
}

/* A bare request for a head that was refused (its error page and LOG). */
static tw_request_t *request_begin_bad(tw_http_conn_t *c, const char *data, size_t len)
{
    tw_conn_work_t *w = c->w;
    request_begin(c, false);
    if (!w->pool && !(w->pool = tw_pool_new(c->srv->pool_size)))
        return NULL;
    return tw_request_create_bad(c->srv, w->pool, &c->transport, &w->parser, data, len,
                                 w->head_is_head);
}

static void conn_parse(tw_http_conn_t *c, const char *p, size_t avail)
{
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = c->w;
    if (w->head_blank) {
        /* Empty lines came first (RFC 9112 2.2): they are no request, and
         * the header timeout counts from the bytes after them. */
        w->head_blank = false;
        w->head_start = conn_now(c);
    }
    tw_parse_result_t rc = tw_http_parse_head(&w->parser, p, avail);
    if (rc == TW_PARSE_AGAIN) {
        if (!conn_keep_fields(c))
            tw_stream_close(c->stream);
        const tw_span_t m = w->parser.method;
        w->head_is_head = m.len == 4 && memcmp(p + m.off, "HEAD", 4) == 0;
        w->head_blank = m.len == 0 && only_empty_lines(p, avail);
        tw_h1_timer_update(c);
        return;
    }
    srv->counters.requests++;
    c->state = TW_CONN_REQUEST;
    if (rc == TW_PARSE_ERROR) {
        /* Nothing after a malformed head can be trusted: drop it all. */
        c->must_close = true;
        tw_request_t *r = request_begin_bad(c, p, avail);
        w->in_used = w->in_len;
        if (!r) {
            tw_stream_close(c->stream);
            return;
        }
        if (tw_log_enabled(TW_LOG_INFO))
            tw_log_info("bad request from %s: %s", tw_h1_peer_text(c),
                        w->parser.error ? w->parser.error : "malformed");
        c->req = r;
        tw_request_fail(r, w->parser.status ? w->parser.status : 400);
        return;
    }
    int status = 0;
    request_begin(c, true);
    tw_request_t *r = tw_request_create(srv, w->pool, &c->transport, &w->parser, p, &status);
    w->in_used += w->parser.head_len;
    if (!r) {
        c->must_close = true;
        if (status)
            r = request_begin_bad(c, p, w->parser.head_len);
        if (!r) {
            tw_stream_close(c->stream);
            return;
        }
        c->req = r;
        tw_request_fail(r, status);
        return;
    }
    c->req = r;
    tw_request_run(r);
}

/* The PROXY header a proxy_protocol listener expects before HTTP: its
 * client becomes the connection's peer. Anything but a valid header closes
 * the connection without a word (the peer is a balancer, not a browser);
 * a partial one waits, under the header timeout. Returns true once the
 * header is consumed. */
static bool conn_proxy_header(tw_http_conn_t *c, const char *p, size_t avail)
{
    tw_proxy_header_t h;
    tw_proxy_result_t rc = tw_proxy_parse(p, avail, &h);
    if (rc == TW_PROXY_AGAIN) {
        tw_h1_timer_update(c);
        return false;
    }
    if (rc == TW_PROXY_ERROR) {
        if (tw_log_enabled(TW_LOG_INFO))
            tw_log_info("closing the connection from %s: %s", tw_h1_peer_text(c), h.error);
        tw_stream_close(c->stream);
        return false;
    }
    c->w->in_used += h.length;
    c->proxy_pending = false;
    if (c->tls_after_proxy) {
        c->tls_after_proxy = false;
        if (tw_tls_server_attach(c->srv->tls, c->stream, c->transport.listener_index,
                                 &c->transport.tls_facts) != 1) {
            tw_log_error("closing the connection from %s: cannot start TLS: %s", tw_h1_peer_text(c),
                         strerror(errno));
            tw_stream_close(c->stream);
            return false;
        }
    }
    if (h.has_source && (size_t)h.source_len <= sizeof c->peer) {
        memcpy(&c->peer, &h.source, (size_t)h.source_len);
        c->transport.peer_len = h.source_len;
        c->w->peer_text[0] = '\0'; /* formatted again from the new address */
    }
    /* The request head starts after it (and its header timeout with it). */
    c->state = TW_CONN_IDLE;
    return true;
}

/* Pieces of a chunked body decoded ahead of delivery (see below). */
/* Consumes what the state machine can from w->in. Handlers that answer at
 * once let it run through a whole batch of pipelined requests. */
static void conn_process(tw_http_conn_t *c)
{
    tw_conn_work_t *w = c->w;
    while (conn_open(c) && !c->freeing) {
        size_t avail = w->in_len - w->in_used;
        const char *p = w->in + w->in_used;
        switch (c->state) {
        case TW_CONN_IDLE:
            if (avail == 0)
                return;
            if (c->must_close) {
                w->in_used = w->in_len;
                return;
            }
            if (tw_h1_write_high(&c->transport)) {
                /* The client does not read our answers: stop parsing its
                 * requests until it does. */
                c->output_blocked = true;
                return;
            }
            if (!conn_begin_head(c)) {
                tw_stream_close(c->stream);
                return;
            }
            continue;
        case TW_CONN_HEAD:
            if (avail == 0)
                return;
            if (c->proxy_pending) {
                if (!conn_proxy_header(c, p, avail))
                    return;
                continue;
            }
            conn_parse(c, p, avail);
            if (c->state == TW_CONN_HEAD)
                return; /* needs more bytes */
            continue;
        case TW_CONN_BODY: {
            tw_request_t *r = c->req;
            if (avail == 0 || !r || w->body_paused)
                return;
            tw_request_hold(r);
            size_t used = tw_h1_feed_body(c, p, avail);
            w->in_used += used;
            tw_request_release(r); /* may end r */
            if (used == 0 && c->state == TW_CONN_BODY)
                return;
            continue;
        }
        case TW_CONN_LINGER:
            w->in_used = w->in_len;
            return;
        default:
            return;
        }
    }
}

/* ---- misc --------------------------------------------------------------------- */

/* Formats c's peer address into buf (64 bytes). */
static const char *peer_format(const tw_http_conn_t *c, char *buf, size_t size)
{
    const struct sockaddr *sa = &c->peer.sa;
    const char *out = NULL;
    if (c->transport.peer_len >= (socklen_t)sizeof(struct sockaddr_in) &&
        sa->sa_family == AF_INET) {
        out = inet_ntop(AF_INET, &c->peer.in4.sin_addr, buf, (socklen_t)size);
    } else if (c->transport.peer_len >= (socklen_t)sizeof(struct sockaddr_in6) &&
               sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &c->peer.in6.sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            out = inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)size);
        else
            out = inet_ntop(AF_INET6, a, buf, (socklen_t)size);
    } else if (c->transport.peer_len > 0 && sa->sa_family == AF_UNIX) {
        snprintf(buf, size, "unix:");
        out = buf;
    }
    if (!out)
        snprintf(buf, size, "-");
    return buf;
}

const char *tw_h1_peer_text(tw_http_conn_t *c)
{
    static __thread char scratch[64];
    if (!c->w)
        return peer_format(c, scratch, sizeof scratch);
    if (!c->w->peer_text[0])
        peer_format(c, c->w->peer_text, sizeof c->w->peer_text);
    return c->w->peer_text;
}

/* ---- the transport the request engine drives ---------------------------------- */

static void h1_begin(tw_transport_t *t)
{
    tw_h1_enter(tw_h1_conn_of(t));
}

static void h1_end(tw_transport_t *t)
{
    tw_h1_leave(tw_h1_conn_of(t));
}

static bool h1_is_open(const tw_transport_t *t)
{
    return tw_h1_open(tw_h1_conn_of(t));
}

static void h1_drop(tw_transport_t *t)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    c->must_close = true;
    if (c->stream)
        tw_stream_close(c->stream);
}

static const char *h1_peer_text(tw_transport_t *t)
{
    return tw_h1_peer_text(tw_h1_conn_of(t));
}

static const tw_transport_ops_t h1_ops = {
    .begin = h1_begin,
    .end = h1_end,
    .is_open = h1_is_open,
    .write_head = tw_h1_write_head,
    .write_body = tw_h1_write_body,
    .sendfile = tw_h1_sendfile,
    .write_low = tw_h1_write_low,
    .write_high = tw_h1_write_high,
    .notify_flushed = tw_h1_notify_flushed,
    .read_body = tw_h1_read_body,
    .want_body = tw_h1_want_body,
    .drop = h1_drop,
    .peer_text = h1_peer_text,
    .done = h1_done,
    .upgrade = tw_h1_upgrade,
};
