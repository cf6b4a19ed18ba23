/* http_conn.c — HTTPConnection: reads requests off an IOStream with the
 * incremental parser, feeds request bodies to their handlers, enforces the
 * timeouts, and decides when a connection stays open. The phases and the
 * response API are request.c's; this file owns the connection.
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
 * Memory. A connection at rest — between requests, nothing buffered or
 * queued — holds only its record and its stream's struct (no buffers, no
 * pool, no parser, no timer): it waits on one of the server's two resting
 * lists (new connections, kept-alive ones: each has one timeout, so each
 * is ordered by idle_since), and one server timer closes the ones whose
 * time is up. It comes to rest as soon as it goes idle (not after a
 * delay: memory freed later would mostly stay with the process), and takes
 * a work record back from the server's free list when bytes arrive. The
 * stream's buffers and the pool's blocks come from the block cache
 * (internal.h), so a busy keep-alive connection pays no malloc per request.
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
#include "http_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "request.h"
#include "twister/log.h"

#ifndef NDEBUG
#include <assert.h>
#include <fcntl.h>
#endif

/* Unread request bodies up to this size that are already buffered when the
 * response starts are dropped instead of closing the connection. */
#define DISCARD_MAX (64 * 1024)
/* Work records (with their reset pools) kept for connections that wake up. */
#define WORK_FREE_MAX 64

static size_t conn_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg);
static void conn_on_close(tw_stream_t *s, void *arg);
static void conn_on_timer(tw_loop_t *loop, tw_timer_t *t, void *arg);
static void conn_on_send_timer(tw_loop_t *loop, tw_timer_t *t, void *arg);
static void conn_on_drain(tw_stream_t *s, void *arg);
static void conn_process(tw_http_conn_t *c);
static void conn_free(tw_http_conn_t *c);
static void conn_timer_update(tw_http_conn_t *c);
static void rest_timer_update(tw_http_server_t *srv);
static uint64_t conn_idle_deadline(const tw_http_conn_t *c);
static void server_all_closed_cb(tw_loop_t *loop, void *arg);
static void server_on_rest_timer(tw_loop_t *loop, tw_timer_t *t, void *arg);
static void conn_stash_cb(tw_loop_t *loop, void *arg);
static inline bool stash_pending(const tw_http_conn_t *c);
static void conn_on_flushed(tw_stream_t *s, int status, void *arg);
static void conn_notify_flushed_once(tw_http_conn_t *c);

static inline bool conn_open(const tw_http_conn_t *c)
{
    return c->stream && !tw_stream_closed(c->stream);
}

static inline tw_loop_t *conn_loop(const tw_http_conn_t *c)
{
    return c->srv->loop;
}

static inline uint64_t conn_now(const tw_http_conn_t *c)
{
    return tw_loop_now(c->srv->loop);
}

/* ---- the server's connection lists ---------------------------------------------- */

static void list_unlink(tw_http_server_t *srv, tw_http_conn_t *c)
{
    unsigned l = c->list;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->lists[l] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->tails[l] = c->prev;
    c->prev = c->next = NULL;
}

/* Links c into list l after `after` (NULL: at the head). */
static void list_link_after(tw_http_server_t *srv, tw_http_conn_t *c, unsigned l,
                            tw_http_conn_t *after)
{
    c->list = (uint8_t)l;
    c->prev = after;
    c->next = after ? after->next : srv->lists[l];
    if (c->next)
        c->next->prev = c;
    else
        srv->tails[l] = c;
    if (after)
        after->next = c;
    else
        srv->lists[l] = c;
}

/* A resting list stays ordered by idle_since: look from the tail (where
 * a connection that just went idle belongs). */
static void list_insert_rest(tw_http_server_t *srv, tw_http_conn_t *c, unsigned l)
{
    tw_http_conn_t *t = srv->tails[l];
    while (t && t->idle_since > c->idle_since)
        t = t->prev;
    list_link_after(srv, c, l, t);
}

/* ---- work records --------------------------------------------------------------- */

static void work_put(tw_http_server_t *srv, tw_conn_work_t *w)
{
    if (srv->free_work_count < WORK_FREE_MAX) {
        tw_pool_reset(w->pool); /* no-op for NULL; normally already reset */
        w->next_free = srv->free_work;
        srv->free_work = w;
        srv->free_work_count++;
        return;
    }
    tw_pool_free(w->pool);
    free(w);
}

/* Gives c a work record (from the free list) and moves it to the active
 * list. Returns false on ENOMEM. */
static bool conn_activate(tw_http_conn_t *c)
{
    if (c->w)
        return true;
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = srv->free_work;
    if (w) {
        srv->free_work = w->next_free;
        srv->free_work_count--;
    } else {
        w = malloc(sizeof *w);
        if (!w)
            return false;
        w->pool = NULL;
    }
    w->next_free = NULL;
    w->stash = NULL;
    w->stash_scheduled = false;
    w->flush_notify = false;
    w->in_stash = false;
    w->in = NULL;
    w->in_len = w->in_used = w->in_feeding = 0;
    tw_timer_init(&w->timer, conn_on_timer, c);
    w->timer_deadline = 0;
    w->head_start = w->body_start = w->last_read = w->linger_start = 0;
    tw_timer_init(&w->send_timer, conn_on_send_timer, c);
    w->out_total = w->send_mark = 0;
    w->peer_text[0] = '\0';
    c->w = w;
    if (c->list != TW_CONN_ACTIVE) {
        list_unlink(srv, c);
        list_link_after(srv, c, TW_CONN_ACTIVE, NULL);
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
    if (w->stash_scheduled)
        tw_loop_cancel_callbacks(conn_loop(c), conn_stash_cb, c);
    free(w->stash);
    c->w = NULL;
    work_put(c->srv, w);
}

/* ---- the server --------------------------------------------------------------- */

void tw_http_server_init(tw_http_server_t *srv, tw_loop_t *loop)
{
    memset(srv, 0, sizeof *srv);
    tw_http_limits_default(&srv->limits);
    srv->body_limit = 1024 * 1024;
    srv->header_timeout_ms = 10000;
    srv->body_timeout_ms = 30000;
    srv->send_timeout_ms = 30000;
    srv->keepalive_timeout_ms = 75000;
    srv->min_body_rate = 1024;
    srv->body_rate_grace_ms = 10000;
    srv->drain_grace_ms = 1000;
    srv->linger_ms = 2000;
    tw_stream_options_default(&srv->stream);
    srv->pool_size = 4096;
    srv->server_header = "twister";
    srv->loop = loop;
    srv->date_sec = (time_t)-1;
    tw_timer_init(&srv->rest_timer, server_on_rest_timer, srv);
}

void tw_http_server_cleanup(tw_http_server_t *srv)
{
    tw_http_server_close_all(srv);
    free(srv->scratch_fields);
    srv->scratch_fields = NULL;
    srv->scratch_cap = 0;
    while (srv->free_work) {
        tw_conn_work_t *w = srv->free_work;
        srv->free_work = w->next_free;
        tw_pool_free(w->pool);
        free(w);
    }
    srv->free_work_count = 0;
    if (srv->loop) {
        tw_timer_stop(srv->loop, &srv->rest_timer);
        tw_loop_cancel_callbacks(srv->loop, server_all_closed_cb, srv);
    }
}

size_t tw_http_server_connections(const tw_http_server_t *srv)
{
    return srv->conn_count;
}

size_t tw_http_server_resting(const tw_http_server_t *srv)
{
    size_t n = 0;
    for (unsigned l = TW_CONN_REST_NEW; l <= TW_CONN_REST_KEPT; l++)
        for (const tw_http_conn_t *c = srv->lists[l]; c; c = c->next)
            n++;
    return n;
}

size_t tw_http_server_memory(const tw_http_server_t *srv)
{
    size_t n = 0;
    for (unsigned l = 0; l < 3; l++) {
        for (const tw_http_conn_t *c = srv->lists[l]; c; c = c->next) {
            n += sizeof *c;
            if (c->stream)
                n += tw_stream_memory(c->stream);
            if (c->w)
                n += sizeof *c->w + (c->w->pool ? srv->pool_size : 0);
        }
    }
    return n;
}

static void server_all_closed_cb(tw_loop_t *loop, void *arg)
{
    tw_http_server_t *srv = arg;
    (void)loop;
    if (srv->conn_count == 0 && srv->all_closed) {
        void (*fn)(void *) = srv->all_closed;
        srv->all_closed = NULL;
        fn(srv->all_closed_arg);
    }
}

static void server_check_all_closed(tw_http_server_t *srv)
{
    if (srv->draining && srv->conn_count == 0 && srv->all_closed && srv->loop)
        tw_loop_add_callback(srv->loop, server_all_closed_cb, srv);
}

void tw_http_server_drain(tw_http_server_t *srv, void (*all_closed)(void *arg), void *arg)
{
    srv->all_closed = all_closed;
    srv->all_closed_arg = arg;
    if (!srv->draining) {
        srv->draining = true;
        srv->drain_start = srv->loop ? tw_loop_now(srv->loop) : 0;
        /* Idle connections now close after the short grace; the others learn
         * about the drain when their response head is written. */
        for (tw_http_conn_t *c = srv->lists[TW_CONN_ACTIVE]; c; c = c->next)
            if (c->state == TW_CONN_IDLE || (c->state == TW_CONN_HEAD && c->w->head_blank))
                conn_timer_update(c);
        rest_timer_update(srv);
    }
    server_check_all_closed(srv);
}

/* Closes c's socket without running its callbacks: the connection is
 * marked closed and the caller frees or aborts it right away. */
static void conn_detach_stream(tw_http_conn_t *c)
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
static void conn_hard_close(tw_http_conn_t *c)
{
    conn_detach_stream(c);
    if (c->req) {
        tw_http_conn_enter(c);
        tw_request_abort(c->req, true);
        tw_http_conn_leave(c);
    } else {
        conn_free(c);
    }
}

void tw_http_server_close_all(tw_http_server_t *srv)
{
    /* conn_free unlinks at once, so this terminates even when the memory
     * of a connection has to wait for the stack to unwind. */
    for (unsigned l = 0; l < 3; l++)
        while (srv->lists[l])
            conn_hard_close(srv->lists[l]);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", formatted at most once per second. */
const char *tw_http_server_date(tw_http_server_t *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != srv->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        /* By hand: locale-free, and no snprintf in the hot path. */
        char *p = srv->date_buf;
        unsigned year = (unsigned)(tm.tm_year + 1900) % 10000;
        memcpy(p, days[tm.tm_wday % 7], 3);
        p[3] = ',';
        p[4] = ' ';
        p[5] = (char)('0' + tm.tm_mday / 10);
        p[6] = (char)('0' + tm.tm_mday % 10);
        p[7] = ' ';
        memcpy(p + 8, months[tm.tm_mon % 12], 3);
        p[11] = ' ';
        p[12] = (char)('0' + year / 1000);
        p[13] = (char)('0' + year / 100 % 10);
        p[14] = (char)('0' + year / 10 % 10);
        p[15] = (char)('0' + year % 10);
        p[16] = ' ';
        p[17] = (char)('0' + tm.tm_hour / 10);
        p[18] = (char)('0' + tm.tm_hour % 10);
        p[19] = ':';
        p[20] = (char)('0' + tm.tm_min / 10);
        p[21] = (char)('0' + tm.tm_min % 10);
        p[22] = ':';
        p[23] = (char)('0' + tm.tm_sec / 10 % 10);
        p[24] = (char)('0' + tm.tm_sec % 10);
        memcpy(p + 25, " GMT", 5);
        srv->date_sec = now;
    }
    return srv->date_buf;
}

/* ---- connection lifecycle ------------------------------------------------------ */

int tw_http_conn_start(tw_http_server_t *srv, tw_loop_t *loop, int fd, const struct sockaddr *peer,
                       socklen_t peer_len, size_t listener_index)
{
#ifndef NDEBUG
    assert(fcntl(fd, F_GETFL) & O_NONBLOCK); /* accept4 with SOCK_NONBLOCK */
#endif
    if (!srv->loop)
        srv->loop = loop;
    if (srv->loop != loop) { /* one server, one loop */
        close(fd);
        errno = EINVAL;
        return -1;
    }
    tw_http_conn_t *c = tw_block_alloc(sizeof *c); /* see tw_stream_adopt */
    if (c)
        memset(c, 0, sizeof *c);
    if (!c) {
        close(fd);
        errno = ENOMEM;
        return -1;
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
        return -1;
    }
    c->srv = srv;
    c->listener_index = (uint32_t)listener_index;
    if (peer && peer_len > 0) {
        if ((size_t)peer_len <= sizeof c->peer) {
            memcpy(&c->peer, peer, (size_t)peer_len);
            c->peer_len = (uint8_t)peer_len;
        } else {
            /* Longer than any IP address (a named unix socket): the family only. */
            c->peer.sa.sa_family = peer->sa_family;
            c->peer_len = (uint8_t)sizeof peer->sa_family;
        }
    }
    tw_stream_set_close_cb(c->stream, conn_on_close, c);
    tw_stream_set_drain_cb(c->stream, conn_on_drain, c);

    srv->conn_count++;
    srv->counters.accepted++;

    /* At rest until its first byte arrives. */
    c->state = TW_CONN_IDLE;
    c->idle_since = conn_now(c);
    list_insert_rest(srv, c, TW_CONN_REST_NEW);
    if (!c->prev)
        rest_timer_update(srv);
    if (tw_stream_read_some(c->stream, conn_on_data, c) == 0)
        c->reading = true;
    return 0;
}

/* Unlinks c at once; the memory goes when nothing on the stack uses it. */
static void conn_free(tw_http_conn_t *c)
{
    tw_http_server_t *srv = c->srv;
    if (!c->freeing) {
        c->freeing = true;
        list_unlink(srv, c);
        srv->conn_count--;
        if (c->w) {
            tw_timer_stop(conn_loop(c), &c->w->timer);
            tw_timer_stop(conn_loop(c), &c->w->send_timer);
        }
        server_check_all_closed(srv);
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
        tw_http_conn_enter(c);
        tw_request_abort(c->req, false);
        tw_http_conn_leave(c); /* frees c once the request has ended */
    } else {
        conn_free(c);
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
    conn_timer_update(c);
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
        tw_http_conn_notify_flushed(c); /* the shutdown waits for the response */
}

/* ---- enter / leave: corking, re-arming reads, deferred frees ------------------ */

static void conn_arm_read(tw_http_conn_t *c)
{
    if (c->reading || (c->w && c->w->stash_scheduled) || !conn_open(c) || c->freeing)
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
        wanted = c->req && !c->req->rb_paused;
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
        if (tw_loop_add_callback(conn_loop(c), conn_stash_cb, c) == 0)
            c->w->stash_scheduled = true;
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
        !w->stash_scheduled && tw_stream_buffered(c->stream) == 0) {
        conn_release_work(c);
        tw_stream_shrink(c->stream);
        list_unlink(srv, c);
        list_insert_rest(srv, c, c->served ? TW_CONN_REST_KEPT : TW_CONN_REST_NEW);
        if (!c->prev) /* behind others, the timer is already armed for them */
            rest_timer_update(srv);
        return;
    }
    conn_timer_update(c);
    if (queued > 0 && !c->output_blocked)
        conn_notify_flushed_once(c); /* conn_on_flushed comes back here to rest */
}

void tw_http_conn_enter(tw_http_conn_t *c)
{
    if (c->depth++ == 0) {
        c->srv->depth++;
        if (conn_open(c) && !c->corked) {
            tw_stream_cork(c->stream);
            c->corked = true;
        }
    }
}

void tw_http_conn_leave(tw_http_conn_t *c)
{
    if (--c->depth > 0)
        return;
    c->srv->depth--;
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
        conn_free(c);
}

/* ---- output ------------------------------------------------------------------ */

/* Runs once everything queued before it reached the kernel (a zero-length
 * write with a callback completes in order): begins a lingering close, and
 * gives a request waiting for a drain its chance. */
static void conn_on_flushed(tw_stream_t *s, int status, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    if (c->w)
        c->w->flush_notify = false;
    if (status != TW_STREAM_OK || !conn_open(c))
        return;
    tw_http_conn_enter(c);
    if (c->req)
        tw_request_drained(c->req);
    else if (c->output_blocked && tw_http_conn_write_low(c)) {
        c->output_blocked = false;
        conn_timer_update(c);
    }
    tw_http_conn_leave(c); /* starts the linger once nothing is queued */
}

void tw_http_conn_notify_flushed(tw_http_conn_t *c)
{
    if (conn_open(c))
        tw_stream_write(c->stream, "", 0, conn_on_flushed, c);
}

/* As above, at most one pending at a time (for the idle settling). */
static void conn_notify_flushed_once(tw_http_conn_t *c)
{
    if (c->w && !c->w->flush_notify && conn_open(c)) {
        c->w->flush_notify = true;
        tw_http_conn_notify_flushed(c);
    }
}

int tw_http_conn_write(tw_http_conn_t *c, const void *data, size_t len)
{
    if (!conn_open(c)) {
        errno = EPIPE;
        return -1;
    }
    if (len == 0)
        return tw_http_conn_write_high(c) ? 1 : 0;
    if (c->w)
        c->w->out_total += len;
    return tw_stream_write(c->stream, data, len, NULL, NULL);
}

int tw_http_conn_sendfile(tw_http_conn_t *c, int fd, off_t off, size_t len)
{
    if (!conn_open(c)) {
        close(fd);
        errno = EPIPE;
        return -1;
    }
    if (c->w)
        c->w->out_total += len;
    return tw_stream_sendfile(c->stream, fd, off, len, NULL, NULL);
}

bool tw_http_conn_write_low(const tw_http_conn_t *c)
{
    return !conn_open(c) || tw_stream_write_queued(c->stream) <= c->srv->stream.write_low_water;
}

bool tw_http_conn_write_high(const tw_http_conn_t *c)
{
    return conn_open(c) && tw_stream_write_queued(c->stream) > c->srv->stream.write_high_water;
}

static void conn_on_drain(tw_stream_t *s, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    tw_http_conn_enter(c);
    if (c->req) {
        tw_request_drained(c->req);
    } else if (c->output_blocked) {
        c->output_blocked = false; /* conn_arm_read picks the next request up */
        conn_timer_update(c);
    }
    tw_http_conn_leave(c);
}

static void conn_on_send_timer(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)t;
    if (!conn_open(c) || !c->w)
        return;
    size_t queued = tw_stream_write_queued(c->stream);
    if (queued == 0)
        return;
    uint64_t written = c->w->out_total - queued;
    if (written != c->w->send_mark) {
        c->w->send_mark = written;
        tw_timer_start(loop, &c->w->send_timer, c->srv->send_timeout_ms);
        return;
    }
    tw_log_info("closing connection from %s: the client read nothing for %llu ms",
                tw_http_conn_peer_text(c), (unsigned long long)c->srv->send_timeout_ms);
    c->srv->counters.timeouts++;
    tw_stream_close(c->stream);
}

/* ---- keep-alive decisions ----------------------------------------------------- */

static bool request_has_body(const tw_request_t *r)
{
    return r->body_kind == TW_BODY_CHUNKED ||
           (r->body_kind == TW_BODY_LENGTH && r->content_length > 0);
}

/* Bytes received after what the engine consumed so far. */
static size_t conn_buffered_after(const tw_http_conn_t *c)
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

bool tw_http_conn_keep_alive(tw_http_conn_t *c, tw_request_t *r)
{
    tw_http_server_t *srv = c->srv;
    if (!conn_open(c) || c->must_close || r->force_close || !r->client_keep_alive ||
        srv->keepalive_timeout_ms == 0)
        return false;
    bool body_pending = request_has_body(r) && !r->rb_done;
    if (body_pending && r->rb_mode == TW_RB_NONE && r->body_kind == TW_BODY_LENGTH && c->w->in &&
        c->w->in_len - c->w->in_used >= r->content_length && r->content_length <= DISCARD_MAX) {
        /* The whole unread body is already here: drop it when the request
         * ends (it is still in this pass of the input) and stay open. */
        r->rb_discard = true;
        body_pending = false;
    } else if (body_pending && (r->rb_mode == TW_RB_NONE || r->rb_failed)) {
        return false; /* unread body: we close rather than read and drop it */
    }
    if (srv->draining) {
        /* Serve what the client already pipelined behind this request; the
         * last response of the batch carries the close. */
        size_t after = conn_buffered_after(c);
        if (r->rb_discard)
            after -= (size_t)r->content_length;
        return !body_pending && after > 0;
    }
    return true;
}

void tw_http_conn_request_done(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    tw_conn_work_t *w = c->w;
    bool body_done = !request_has_body(r) || r->rb_done;
    if (!body_done && r->rb_discard && r->rb_mode == TW_RB_NONE && w->in &&
        w->in_len - w->in_used >= r->content_length) {
        w->in_used += (size_t)r->content_length;
        body_done = true;
    }
    bool keep = r->keep_alive && !c->must_close && !r->aborted && body_done && conn_open(c);
    bool quiet = !keep && r->client_close && body_done && conn_buffered_after(c) == 0;
    c->srv->counters.responses++;
    c->served++;
    c->req = NULL;
    tw_pool_reset(w->pool); /* runs the request's cleanups: timers, files */
    if (!c->stream) {
        conn_free(c); /* a zombie: its client left while the request ran */
        return;
    }
    if (!keep) {
        conn_close_gracefully(c, quiet);
        return;
    }
    c->state = TW_CONN_IDLE;
    c->idle_since = conn_now(c);
    if (tw_http_conn_write_high(c)) {
        c->output_blocked = true; /* unblocked by the drain or the flush */
        tw_http_conn_notify_flushed(c);
    }
    conn_timer_update(c);
}

/* ---- the read-side timer ------------------------------------------------------ */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* When an idle connection closes (the drain grace included). A new
 * connection gets the header timeout for its first byte. */
static uint64_t conn_idle_deadline(const tw_http_conn_t *c)
{
    const tw_http_server_t *srv = c->srv;
    uint64_t d = c->idle_since + (c->served ? srv->keepalive_timeout_ms : srv->header_timeout_ms);
    if (srv->draining) {
        uint64_t base = c->idle_since > srv->drain_start ? c->idle_since : srv->drain_start;
        d = min_u64(d, base + srv->drain_grace_ms);
    }
    return d;
}

/* The server's rest timer is armed for the earliest deadline of the two
 * resting lists (each is ordered, so that is one of their heads). Like the
 * connection timers it may fire early and re-arm. */
static void rest_timer_update(tw_http_server_t *srv)
{
    uint64_t d = 0;
    for (unsigned l = TW_CONN_REST_NEW; l <= TW_CONN_REST_KEPT; l++) {
        if (srv->lists[l]) {
            uint64_t dl = conn_idle_deadline(srv->lists[l]);
            d = d && d < dl ? d : dl;
        }
    }
    if (!d || !srv->loop)
        return;
    if (tw_timer_active(&srv->rest_timer) && srv->rest_deadline <= d)
        return;
    uint64_t now = tw_loop_now(srv->loop);
    srv->rest_deadline = d;
    tw_timer_start(srv->loop, &srv->rest_timer, d > now ? d - now : 0);
}

/* Closes the resting connections whose time is up: without a word, as an
 * idle connection's timer does. */
static void server_on_rest_timer(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    tw_http_server_t *srv = arg;
    (void)t;
    uint64_t now = tw_loop_now(loop);
    for (unsigned l = TW_CONN_REST_NEW; l <= TW_CONN_REST_KEPT; l++) {
        tw_http_conn_t *c;
        while ((c = srv->lists[l]) && conn_idle_deadline(c) <= now) {
            conn_detach_stream(c);
            conn_free(c); /* unlinks it */
        }
    }
    rest_timer_update(srv);
}

/* When the current state times out, or 0 if it does not. */
static uint64_t conn_deadline(const tw_http_conn_t *c)
{
    const tw_http_server_t *srv = c->srv;
    switch (c->state) {
    case TW_CONN_IDLE:
        if (c->output_blocked)
            return 0; /* the send timer watches a client that does not read */
        return conn_idle_deadline(c);
    case TW_CONN_HEAD:
        if (c->w->head_blank)
            return conn_idle_deadline(c); /* empty lines only: still idle */
        return c->w->head_start + srv->header_timeout_ms;
    case TW_CONN_BODY: {
        const tw_request_t *r = c->req;
        if (!r || r->rb_paused)
            return 0;
        uint64_t d = c->w->last_read + srv->body_timeout_ms;
        if (srv->min_body_rate) {
            uint64_t need = r->rb_received * 1000 / srv->min_body_rate;
            uint64_t rate_d = c->w->body_start +
                              (need > srv->body_rate_grace_ms ? need : srv->body_rate_grace_ms);
            d = min_u64(d, rate_d);
        }
        return d;
    }
    case TW_CONN_LINGER:
        return c->w->linger_start ? c->w->linger_start + c->srv->linger_ms : 0;
    default:
        return 0;
    }
}

static void conn_timer_update(tw_http_conn_t *c)
{
    tw_conn_work_t *w = c->w;
    if (!w)
        return; /* resting (the rest timer's) or closed */
    if (c->state == TW_CONN_IDLE && c->depth > 0)
        return; /* tw_http_conn_leave settles it: rest, or this timer */
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
    tw_http_conn_enter(c);
    switch (c->state) {
    case TW_CONN_IDLE:
        /* No byte of a new request: close without a word. */
        tw_stream_close(c->stream);
        break;
    case TW_CONN_HEAD: {
        if (c->w->head_blank) {
            /* Nothing but empty lines, which precede no request yet: an
             * idle connection, closed without a word. */
            tw_stream_close(c->stream);
            break;
        }
        c->srv->counters.timeouts++;
        c->must_close = true;
        c->state = TW_CONN_REQUEST;
        tw_request_t *r = tw_request_create_bad(c, &c->w->parser, NULL, 0);
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
        tw_request_body_fail(c->req, 408);
        break;
    case TW_CONN_LINGER:
        tw_stream_close(c->stream);
        break;
    default:
        break;
    }
    tw_http_conn_leave(c);
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
    c->w->stash_scheduled = false;
    tw_http_conn_enter(c);
    conn_run_stash(c);
    tw_http_conn_leave(c);
}

static size_t conn_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    c->reading = false;
    if (status != TW_STREAM_OK) {
        if (status == TW_STREAM_TOO_LARGE && c->state == TW_CONN_HEAD && !c->req) {
            /* The buffer filled before the parser's limits: the head is too big. */
            tw_http_conn_enter(c);
            c->must_close = true;
            c->state = TW_CONN_REQUEST;
            tw_request_t *r =
                tw_request_create_bad(c, &c->w->parser, stash_pending(c) ? NULL : data, len);
            if (r) {
                c->req = r;
                tw_request_fail(r, 431);
            } else {
                tw_stream_close(c->stream);
            }
            tw_http_conn_leave(c);
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
    tw_http_conn_enter(c);
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
    tw_http_conn_leave(c); /* re-arms the read if the state wants more */
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
        conn_timer_update(c);
        return;
    }
    srv->counters.requests++;
    c->state = TW_CONN_REQUEST;
    if (rc == TW_PARSE_ERROR) {
        /* Nothing after a malformed head can be trusted: drop it all. */
        c->must_close = true;
        tw_request_t *r = tw_request_create_bad(c, &w->parser, p, avail);
        w->in_used = w->in_len;
        if (!r) {
            tw_stream_close(c->stream);
            return;
        }
        if (tw_log_enabled(TW_LOG_INFO))
            tw_log_info("bad request from %s: %s", tw_http_conn_peer_text(c),
                        w->parser.error ? w->parser.error : "malformed");
        c->req = r;
        tw_request_fail(r, w->parser.status ? w->parser.status : 400);
        return;
    }
    int status = 0;
    tw_request_t *r = tw_request_create(c, &w->parser, p, &status);
    w->in_used += w->parser.head_len;
    if (!r) {
        c->must_close = true;
        if (status)
            r = tw_request_create_bad(c, &w->parser, p, w->parser.head_len);
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

/* Pieces of a chunked body decoded ahead of delivery (see below). */
#define LOOKAHEAD_PIECES 32

typedef struct {
    const char *ptr;
    size_t len;
    size_t end;                 /* input bytes used once this piece is out */
    tw_chunked_decoder_t after; /* the decoder state at that point */
} piece_t;

/* Feeds body bytes to the request. Chunked bodies are decoded ahead over
 * everything available before any piece is delivered, so a framing error
 * or the body limit found in this batch is answered 400/413 before the
 * handler has seen (and perhaps started streaming a response to) the
 * bytes before it. A handler that pauses on a piece gets the decoder
 * rewound to just after that piece; the rest is offered again later. */
static size_t conn_feed_body(tw_http_conn_t *c, tw_request_t *r, const char *p, size_t avail)
{
    tw_conn_work_t *w = c->w;
    w->last_read = conn_now(c);
    if (r->body_kind == TW_BODY_LENGTH) {
        size_t n = avail < r->rb_remaining ? avail : (size_t)r->rb_remaining;
        r->rb_remaining -= n;
        bool more = n == 0 || tw_request_body_piece(r, p, n);
        if (more && r->rb_remaining == 0) {
            /* A response written from the end callback must see only what
             * follows the body as pipelined input (the drain decides on it). */
            w->in_feeding = n;
            tw_request_body_end(r);
            w->in_feeding = 0;
        }
        return n;
    }
    size_t used = 0;
    piece_t pieces[LOOKAHEAD_PIECES];
    for (;;) {
        size_t n = 0;
        uint64_t total = 0;
        tw_chunk_result_t res = TW_CHUNK_AGAIN;
        while (used < avail && n < LOOKAHEAD_PIECES) {
            size_t consumed = 0, off = 0, olen = 0;
            res = tw_chunked_decode(&r->decoder, p + used, avail - used, &consumed, &off, &olen);
            const char *piece = p + used + off;
            used += consumed;
            if (res != TW_CHUNK_DATA)
                break;
            pieces[n++] = (piece_t){piece, olen, used, r->decoder};
            total += olen;
            res = TW_CHUNK_AGAIN;
        }
        if (res == TW_CHUNK_ERROR) {
            if (tw_log_enabled(TW_LOG_INFO))
                tw_log_info("bad chunked body from %s: %s", tw_http_conn_peer_text(c),
                            r->decoder.error ? r->decoder.error : "malformed");
            c->must_close = true;
            c->state = TW_CONN_REQUEST;
            tw_request_body_fail(r, 400);
            return avail;
        }
        if (r->rb_received + total > r->body_limit) {
            c->state = TW_CONN_REQUEST;
            tw_request_body_fail(r, 413);
            return avail;
        }
        for (size_t i = 0; i < n; i++) {
            if (!tw_request_body_piece(r, pieces[i].ptr, pieces[i].len)) {
                if (r->rb_paused && !r->rb_failed && !r->aborted) {
                    r->decoder = pieces[i].after;
                    return pieces[i].end;
                }
                return avail;
            }
        }
        if (res == TW_CHUNK_DONE) {
            w->in_feeding = used;
            tw_request_body_end(r);
            w->in_feeding = 0;
            return used;
        }
        if (used >= avail || n < LOOKAHEAD_PIECES)
            return used; /* everything was consumed; the rest comes later */
    }
}

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
            if (tw_http_conn_write_high(c)) {
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
            conn_parse(c, p, avail);
            if (c->state == TW_CONN_HEAD)
                return; /* needs more bytes */
            continue;
        case TW_CONN_BODY: {
            tw_request_t *r = c->req;
            if (avail == 0 || !r || r->rb_paused)
                return;
            tw_request_hold(r);
            size_t used = conn_feed_body(c, r, p, avail);
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

/* ---- request bodies ------------------------------------------------------------ */

void tw_http_conn_body_start(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    if (!request_has_body(r)) {
        r->rb_done = true;
        tw_request_body_end(r);
        return;
    }
    if (!conn_open(c)) {
        tw_request_body_fail(r, TW_ERROR);
        return;
    }
    r->rb_remaining = r->body_kind == TW_BODY_LENGTH ? r->content_length : 0;
    tw_chunked_init(&r->decoder);
    if (r->expect_continue && r->version >= 11 && !r->head_sent && !r->continue_sent) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        r->continue_sent = true;
        tw_http_conn_write(c, cont, sizeof cont - 1);
    }
    c->state = TW_CONN_BODY;
    c->w->body_start = c->w->last_read = conn_now(c);
    conn_timer_update(c);
    /* Inside conn_on_data the processing loop feeds the body next; from
     * anywhere else tw_http_conn_leave arms a read, which offers what is
     * buffered. */
}

void tw_http_conn_body_resume(tw_request_t *r)
{
    tw_http_conn_t *c = r->conn;
    r->rb_paused = false;
    if (c->state != TW_CONN_BODY)
        return;
    c->w->last_read = conn_now(c);
    conn_timer_update(c);
    if (r->body_kind == TW_BODY_LENGTH && r->rb_remaining == 0 && !r->rb_done && !r->rb_failed) {
        /* It paused on the last piece: the end is all that is left. */
        tw_request_hold(r);
        tw_request_body_end(r);
        tw_request_release(r);
    }
}

/* ---- misc --------------------------------------------------------------------- */

/* Formats c's peer address into buf (64 bytes). */
static const char *conn_peer_format(const tw_http_conn_t *c, char *buf, size_t size)
{
    const struct sockaddr *sa = &c->peer.sa;
    const char *out = NULL;
    if (c->peer_len >= (socklen_t)sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        out = inet_ntop(AF_INET, &c->peer.in4.sin_addr, buf, (socklen_t)size);
    } else if (c->peer_len >= (socklen_t)sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &c->peer.in6.sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            out = inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)size);
        else
            out = inet_ntop(AF_INET6, a, buf, (socklen_t)size);
    } else if (c->peer_len > 0 && sa->sa_family == AF_UNIX) {
        snprintf(buf, size, "unix:");
        out = buf;
    }
    if (!out)
        snprintf(buf, size, "-");
    return buf;
}

const char *tw_http_conn_peer_text(tw_http_conn_t *c)
{
    static __thread char scratch[64];
    if (!c->w)
        return conn_peer_format(c, scratch, sizeof scratch);
    if (!c->w->peer_text[0])
        conn_peer_format(c, c->w->peer_text, sizeof c->w->peer_text);
    return c->w->peer_text;
}
