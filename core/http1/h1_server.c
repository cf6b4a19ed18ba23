/* h1_server.c — the per-worker HTTP server context (http_conn.h): the
 * connection lists, the work records that active connections borrow, the
 * rest timer that closes idle connections at rest, the graceful drain and
 * the hard stop. One connection's life is h1_conn.c's.
 *
 * Resting connections wait on two lists (new ones, kept-alive ones: each
 * has one timeout, so each is ordered by idle_since) and one server timer
 * closes those whose time is up — no timer, buffer or pool per idle
 * connection. */
#include "http1/h1.h"

#include <stdlib.h>
#include <string.h>

#include "twister/log.h"

/* Work records (with their reset pools) kept for connections that wake up. */
#define WORK_FREE_MAX 64

static void server_all_closed_cb(tw_loop_t *loop, void *arg);
static void server_on_rest_timer(tw_loop_t *loop, tw_timer_t *t, void *arg);

/* ---- the server's connection lists ---------------------------------------------- */

void tw_h1_list_unlink(tw_http_server_t *srv, tw_http_conn_t *c)
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
void tw_h1_list_link_after(tw_http_server_t *srv, tw_http_conn_t *c, unsigned l,
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
void tw_h1_list_insert_rest(tw_http_server_t *srv, tw_http_conn_t *c, unsigned l)
{
    tw_http_conn_t *t = srv->tails[l];
    while (t && t->idle_since > c->idle_since)
        t = t->prev;
    tw_h1_list_link_after(srv, c, l, t);
}

/* ---- work records --------------------------------------------------------------- */

void tw_h1_work_put(tw_http_server_t *srv, tw_conn_work_t *w)
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

tw_conn_work_t *tw_h1_work_get(tw_http_server_t *srv)
{
    tw_conn_work_t *w = srv->free_work;
    if (w) {
        srv->free_work = w->next_free;
        srv->free_work_count--;
    } else {
        w = malloc(sizeof *w);
        if (!w)
            return NULL;
        w->pool = NULL;
    }
    return w;
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
    tw_loop_deferred_init(&srv->all_closed_node, server_all_closed_cb, srv);
}

void tw_http_server_cleanup(tw_http_server_t *srv)
{
    tw_http_server_close_all(srv);
    while (srv->lists[TW_CONN_STOPPED])
        tw_h1_end_stopped(srv->lists[TW_CONN_STOPPED]);
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
        tw_loop_defer_cancel(srv->loop, &srv->all_closed_node);
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
    for (unsigned l = 0; l < TW_CONN_LISTS; l++) {
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

void tw_h1_server_check_all_closed(tw_http_server_t *srv)
{
    if (srv->draining && srv->conn_count == 0 && srv->all_closed && srv->loop)
        tw_loop_defer(srv->loop, &srv->all_closed_node);
}

void tw_http_server_drain(tw_http_server_t *srv, void (*all_closed)(void *arg), void *arg)
{
    srv->all_closed = all_closed;
    srv->all_closed_arg = arg;
    if (!srv->draining) {
        srv->draining = true;
        srv->drain_start = srv->loop ? tw_loop_now(srv->loop) : 0;
        /* With a hand-off, resting connections go to the new generation
         * now (the rest timer then looks at fewer); those that cannot
         * move, and every one without a hand-off, close after the short
         * grace; the others learn about the drain when their response
         * head is written, or move once they come to rest. */
        tw_http_server_hand_off_idle(srv);
        for (tw_http_conn_t *c = srv->lists[TW_CONN_ACTIVE]; c; c = c->next)
            tw_h1_conn_drain_began(c);
        tw_h1_rest_timer_update(srv);
    }
    tw_h1_server_check_all_closed(srv);
}

void tw_http_server_hand_off_idle(tw_http_server_t *srv)
{
    if (!tw_h1_handing_off(srv))
        return;
    for (unsigned l = TW_CONN_REST_NEW; l <= TW_CONN_REST_KEPT; l++) {
        tw_http_conn_t *c = srv->lists[l], *next;
        for (; c; c = next) {
            next = c->next;
            tw_h1_handoff_offer(c);
        }
    }
}

uint64_t tw_http_server_drain_expire(tw_http_server_t *srv, uint64_t elapsed_ms,
                                     uint64_t shutdown_ms)
{
    uint64_t next = 0;
    static const unsigned open_lists[] = {TW_CONN_ACTIVE, TW_CONN_REST_NEW, TW_CONN_REST_KEPT,
                                          TW_CONN_MOVING};
    for (size_t i = 0; i < sizeof open_lists / sizeof open_lists[0]; i++) {
        tw_http_conn_t *c = srv->lists[open_lists[i]], *after;
        for (; c; c = after) {
            after = c->next; /* a hard close unlinks c at once */
            uint64_t keep = tw_request_drain_keep_ms(c->req);
            uint64_t limit = keep ? keep : shutdown_ms;
            if (limit <= elapsed_ms)
                tw_h1_hard_close(c);
            else if (!next || limit < next)
                next = limit;
        }
    }
    return next;
}

/* Closes c's socket without running its callbacks: the connection is
 * marked closed and the caller frees or aborts it right away. */
void tw_http_server_close_all(tw_http_server_t *srv)
{
    /* conn_free unlinks at once, so this terminates even when the memory
     * of a connection has to wait for the stack to unwind. */
    static const unsigned open_lists[] = {TW_CONN_ACTIVE, TW_CONN_REST_NEW, TW_CONN_REST_KEPT,
                                          TW_CONN_MOVING};
    for (size_t i = 0; i < sizeof open_lists / sizeof open_lists[0]; i++)
        while (srv->lists[open_lists[i]])
            tw_h1_hard_close(srv->lists[open_lists[i]]);
}

/* ---- the rest timer ------------------------------------------------------------ */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* When an idle connection closes (the drain grace included). A new
 * connection gets the header timeout for its first byte. */
uint64_t tw_h1_idle_deadline(const tw_http_conn_t *c)
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
void tw_h1_rest_timer_update(tw_http_server_t *srv)
{
    uint64_t d = 0;
    for (unsigned l = TW_CONN_REST_NEW; l <= TW_CONN_REST_KEPT; l++) {
        if (srv->lists[l]) {
            uint64_t dl = tw_h1_idle_deadline(srv->lists[l]);
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
        while ((c = srv->lists[l]) && tw_h1_idle_deadline(c) <= now) {
            tw_h1_detach_stream(c);
            tw_h1_conn_free(c); /* unlinks it */
        }
    }
    tw_h1_rest_timer_update(srv);
}
