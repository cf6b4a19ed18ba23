/* h1_body.c — request bodies on an HTTP/1.1 connection: the decoder
 * (h1_body.h: Content-Length and chunked framing, the limit enforced as
 * soon as a length is announced), and reading a body for the request
 * engine — 100-continue, delivery with back-pressure, and the body's
 * timeouts. The body state lives in the connection's work record. */
#include "http1/h1.h"

#include <string.h>

#include "twister/log.h"

/* ---- the decoder ------------------------------------------------------------- */

void tw_h1_body_init(tw_h1_body_decoder_t *d, tw_body_kind_t kind, uint64_t content_length,
                     uint64_t limit)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->remaining = kind == TW_BODY_LENGTH ? content_length : 0;
    d->limit = limit;
    d->done = kind == TW_BODY_NONE;
    if (kind == TW_BODY_CHUNKED)
        tw_chunked_init(&d->chunked);
}

/* The decoded size announced so far (bytes received plus what the current
 * chunk still declares): past the limit it is refused before its bytes. */
static bool over_limit(const tw_h1_body_decoder_t *d, uint64_t more)
{
    uint64_t announced = d->received + more;
    return announced < d->received || announced > d->limit;
}

tw_h1_body_result_t tw_h1_body_feed(tw_h1_body_decoder_t *d, const char *in, size_t len,
                                    size_t *consumed, const char **piece, size_t *piece_len)
{
    *consumed = 0;
    *piece = NULL;
    *piece_len = 0;
    if (d->done)
        return TW_H1_BODY_DONE;
    if (d->kind == TW_BODY_LENGTH) {
        if (over_limit(d, d->remaining))
            return TW_H1_BODY_TOO_LARGE;
        if (d->remaining == 0) {
            d->done = true;
            return TW_H1_BODY_DONE;
        }
        size_t n = len < d->remaining ? len : (size_t)d->remaining;
        if (n == 0)
            return TW_H1_BODY_AGAIN;
        d->remaining -= n;
        d->received += n;
        *consumed = n;
        *piece = in;
        *piece_len = n;
        return TW_H1_BODY_DATA;
    }
    size_t off = 0, olen = 0;
    tw_chunk_result_t rc = tw_chunked_decode(&d->chunked, in, len, consumed, &off, &olen);
    switch (rc) {
    case TW_CHUNK_DATA:
        /* The rest of this chunk counts now: its size line announced it. */
        if (over_limit(d, olen + d->chunked.remaining))
            return TW_H1_BODY_TOO_LARGE;
        d->received += olen;
        *piece = in + off;
        *piece_len = olen;
        return TW_H1_BODY_DATA;
    case TW_CHUNK_AGAIN:
        /* A size line read (or partly read: the size only grows) whose
         * chunk would pass the limit is refused before its data arrives. */
        return over_limit(d, d->chunked.remaining) ? TW_H1_BODY_TOO_LARGE : TW_H1_BODY_AGAIN;
    case TW_CHUNK_DONE:
        d->done = true;
        return TW_H1_BODY_DONE;
    default:
        return d->chunked.size_overflow ? TW_H1_BODY_TOO_LARGE : TW_H1_BODY_ERROR;
    }
}

const char *tw_h1_body_error(const tw_h1_body_decoder_t *d)
{
    return d->chunked.error ? d->chunked.error : "malformed";
}

uint64_t tw_h1_body_rate_deadline(uint64_t start, uint64_t paused_ms, uint64_t received,
                                  uint64_t min_rate, uint64_t grace_ms)
{
    uint64_t need = min_rate ? received * 1000 / min_rate : 0;
    return start + paused_ms + grace_ms + need;
}

/* ---- reading a request body for the engine ------------------------------------ */

bool tw_h1_has_body(const tw_conn_work_t *w)
{
    return w->body_kind == TW_BODY_CHUNKED ||
           (w->body_kind == TW_BODY_LENGTH && w->content_length > 0);
}

/* The body is over (delivered, failed or dropped): the connection goes
 * back to waiting for the request's end. */
static void body_stop(tw_http_conn_t *c, tw_h1_body_state_t state)
{
    c->w->body_state = (uint8_t)state;
    if (state == TW_H1_BODY_FAILED)
        c->must_close = true;
    if (c->state == TW_CONN_BODY)
        c->state = TW_CONN_REQUEST;
}

void tw_h1_read_body(tw_transport_t *t, uint64_t limit)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    tw_conn_work_t *w = c->w;
    if (!tw_h1_has_body(w)) {
        body_stop(c, TW_H1_BODY_COMPLETE);
        tw_request_body_end(c->req);
        return;
    }
    if (!tw_h1_open(c)) {
        body_stop(c, TW_H1_BODY_FAILED);
        tw_request_body_fail(c->req, TW_ERROR);
        return;
    }
    tw_h1_body_init(&w->body, w->body_kind, w->content_length, limit);
    w->body_state = TW_H1_BODY_READING;
    w->body_paused = false;
    if (w->expect_continue && w->version >= 11 && !w->head_sent && !w->continue_sent) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        w->continue_sent = true;
        tw_h1_write(c, cont, sizeof cont - 1);
    }
    c->state = TW_CONN_BODY;
    w->body_start = w->last_read = tw_loop_now(c->srv->loop);
    w->paused_ms = 0;
    tw_h1_timer_update(c);
    /* Inside the read callback the processing loop feeds the body next;
     * from anywhere else tw_h1_leave arms a read, which offers what is
     * buffered. */
}

void tw_h1_want_body(tw_transport_t *t, bool on)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    tw_conn_work_t *w = c->w;
    if (!w || w->body_state != TW_H1_BODY_READING || w->body_paused == !on)
        return;
    w->body_paused = !on;
    if (!on) {
        w->paused_at = tw_loop_now(c->srv->loop);
        return;
    }
    w->last_read = tw_loop_now(c->srv->loop);
    w->paused_ms += w->last_read - w->paused_at;
    if (c->state != TW_CONN_BODY)
        return;
    tw_h1_timer_update(c);
    if (w->body.kind == TW_BODY_LENGTH && w->body.remaining == 0) {
        /* It paused on the last piece: the end is all that is left. */
        body_stop(c, TW_H1_BODY_COMPLETE);
        tw_request_hold(c->req);
        tw_request_body_end(c->req);
        tw_request_release(c->req);
    }
}

/* Pieces of a body decoded ahead of delivery (see below). */
#define LOOKAHEAD_PIECES 32

typedef struct {
    const char *ptr;
    size_t len;
    size_t end;                 /* input bytes used once this piece is out */
    tw_h1_body_decoder_t after; /* the decoder state at that point */
} piece_t;

/* The engine's answer to a piece: true to go on. */
static bool delivered(tw_http_conn_t *c, tw_body_verdict_t v)
{
    switch (v) {
    case TW_BODY_MORE:
        return true;
    case TW_BODY_PAUSE:
        tw_h1_want_body(&c->transport, false);
        return false;
    case TW_BODY_DROP:
        body_stop(c, TW_H1_BODY_FAILED);
        if (c->stream)
            tw_stream_close(c->stream);
        return false;
    default:
        body_stop(c, TW_H1_BODY_FAILED);
        return false;
    }
}

static void body_refused(tw_http_conn_t *c, int status)
{
    tw_conn_work_t *w = c->w;
    if (status == 400 && tw_log_enabled(TW_LOG_INFO))
        tw_log_info("bad chunked body from %s: %s", tw_h1_peer_text(c), tw_h1_body_error(&w->body));
    body_stop(c, TW_H1_BODY_FAILED);
    tw_request_body_fail(c->req, status);
}

static void body_complete(tw_http_conn_t *c, size_t used)
{
    /* A response written from the end callback must see only what follows
     * the body as pipelined input (the drain decides on it). */
    c->w->in_feeding = used;
    body_stop(c, TW_H1_BODY_COMPLETE);
    tw_request_body_end(c->req);
    c->w->in_feeding = 0;
}

/* Feeds body bytes to the request. Bodies are decoded ahead over
 * everything available before any piece is delivered, so a framing error
 * or the body limit found in this batch is answered 400/413 before the
 * handler has seen (and perhaps started streaming a response to) the
 * bytes before it. A handler that pauses on a piece gets the decoder
 * rewound to just after that piece; the rest is offered again later. */
size_t tw_h1_feed_body(tw_http_conn_t *c, const char *p, size_t avail)
{
    tw_conn_work_t *w = c->w;
    w->last_read = tw_loop_now(c->srv->loop);
    size_t used = 0;
    piece_t pieces[LOOKAHEAD_PIECES];
    for (;;) {
        size_t n = 0;
        tw_h1_body_result_t res = TW_H1_BODY_AGAIN;
        while (n < LOOKAHEAD_PIECES) {
            size_t consumed;
            const char *piece;
            size_t plen;
            res = tw_h1_body_feed(&w->body, p + used, avail - used, &consumed, &piece, &plen);
            used += consumed;
            if (res != TW_H1_BODY_DATA)
                break;
            pieces[n++] = (piece_t){piece, plen, used, w->body};
        }
        if (res == TW_H1_BODY_ERROR || res == TW_H1_BODY_TOO_LARGE) {
            body_refused(c, res == TW_H1_BODY_ERROR ? 400 : 413);
            return avail;
        }
        for (size_t i = 0; i < n; i++) {
            if (!delivered(c, tw_request_body_data(c->req, pieces[i].ptr, pieces[i].len))) {
                if (w->body_state == TW_H1_BODY_READING) { /* paused */
                    w->body = pieces[i].after;
                    return pieces[i].end;
                }
                return avail;
            }
        }
        if (res == TW_H1_BODY_DONE) {
            body_complete(c, used);
            return used;
        }
        if (used >= avail || n < LOOKAHEAD_PIECES)
            return used; /* everything was consumed; the rest comes later */
    }
}

uint64_t tw_h1_body_deadline(const tw_http_conn_t *c)
{
    const tw_http_server_t *srv = c->srv;
    const tw_conn_work_t *w = c->w;
    if (!c->req || w->body_paused)
        return 0;
    uint64_t d = w->last_read + srv->body_timeout_ms;
    if (srv->min_body_rate) {
        uint64_t rate_d = tw_h1_body_rate_deadline(w->body_start, w->paused_ms, w->body.received,
                                                   srv->min_body_rate, srv->body_rate_grace_ms);
        d = d < rate_d ? d : rate_d;
    }
    return d;
}
