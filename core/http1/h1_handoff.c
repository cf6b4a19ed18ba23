/* h1_handoff.c — an HTTP/1.1 connection's side of the reload hand-off
 * (handoff.h): offering an idle connection of a draining server to the new
 * generation, the verdict, and adopting one on the other side.
 *
 * What can move: a connection at rest — no request, no work record,
 * nothing buffered either way — on a plain (non-TLS) socket. Its whole
 * state is then the socket and a few numbers (tw_handoff_conn_t). A TLS
 * connection's keys and sequence numbers live in OpenSSL in this process;
 * without kTLS they cannot be exported, so it keeps the graceful close.
 *
 * While offered, the connection reads nothing (its read is cancelled and
 * reading paused, so the loop stops polling it): bytes the client sends
 * meanwhile stay in the kernel's receive buffer for whoever ends up
 * owning the socket. Moved, the local descriptor is closed without a
 * shutdown (the adopter's keeps the connection open); given back, it
 * rests again and the drain's grace applies from that moment. */
#include <string.h>
#include <unistd.h>

#include "handoff.h"
#include "http1/h1.h"
#include "tls/tls_context.h"

bool tw_h1_handing_off(const tw_http_server_t *srv)
{
    return srv->draining && tw_handoff_can_offer(srv->handoff);
}

bool tw_h1_may_move(const tw_http_conn_t *c)
{
    return tw_h1_handing_off(c->srv) && !c->stays && !c->transport.tls && !c->tls_after_proxy &&
           c->transport.listener_index < c->srv->listen_fd_count;
}

bool tw_h1_keep_for_handoff(const tw_http_conn_t *c)
{
    const tw_http_server_t *srv = c->srv;
    return tw_h1_may_move(c) &&
           (!srv->handoff_window_ms ||
            tw_loop_now(srv->loop) - srv->drain_start < srv->handoff_window_ms);
}

static uint64_t idle_timeout(const tw_http_server_t *srv, uint32_t served)
{
    return served ? srv->keepalive_timeout_ms : srv->header_timeout_ms;
}

bool tw_h1_handoff_offer(tw_http_conn_t *c)
{
    tw_http_server_t *srv = c->srv;
    size_t li = c->transport.listener_index;
    if (!tw_h1_may_move(c) || c->w || c->list == TW_CONN_MOVING || !tw_h1_open(c))
        return false;
    int fd = tw_stream_fd(c->stream);
    if (fd < 0 || tw_stream_buffered(c->stream) > 0 || tw_stream_write_queued(c->stream) > 0)
        return false;
    uint64_t now = tw_loop_now(srv->loop);
    uint64_t deadline = c->idle_since + idle_timeout(srv, c->served);
    tw_handoff_conn_t st;
    memset(&st, 0, sizeof st);
    st.listener_fd = srv->listen_fds[li];
    st.served = c->served;
    st.idle_ms = (uint32_t)(now > c->idle_since ? now - c->idle_since : 0);
    st.deadline_ms = (uint32_t)(deadline > now ? deadline - now : 0);
    st.proxy_pending = c->proxy_pending;
    st.proxy_listener = li < srv->proxy_protocol_count && srv->proxy_protocol[li];
    if (c->transport.peer_len > 0 && (size_t)c->transport.peer_len <= sizeof st.peer) {
        memcpy(&st.peer, &c->peer, (size_t)c->transport.peer_len);
        st.peer_len = (uint32_t)c->transport.peer_len;
    }
    /* From here on what arrives is for whoever ends up with the socket. */
    tw_stream_cancel_read(c->stream);
    c->reading = false;
    tw_stream_pause_reading(c->stream);
    if (tw_handoff_offer(srv->handoff, fd, &st, c) != 0) {
        tw_stream_resume_reading(c->stream);
        if (tw_stream_read_some(c->stream, tw_h1_on_data, c) == 0)
            c->reading = true;
        return false;
    }
    tw_h1_list_unlink(srv, c);
    tw_h1_list_link_after(srv, c, TW_CONN_MOVING, NULL);
    return true;
}

void tw_http_server_handoff_done(void *arg, void *token, bool moved)
{
    tw_http_server_t *srv = arg;
    tw_http_conn_t *c = token;
    /* Off the moving list first: its offer is settled, nothing to cancel. */
    tw_h1_list_unlink(srv, c);
    tw_h1_list_link_after(srv, c, TW_CONN_ACTIVE, NULL);
    if (moved) {
        srv->counters.handed_off++;
        tw_h1_detach_stream(c); /* a plain close: the adopter holds the socket */
        tw_h1_conn_free(c);
        return;
    }
    srv->counters.handoff_fallbacks++;
    c->stays = true; /* its next response says Connection: close */
    if (!tw_h1_open(c)) {
        tw_h1_detach_stream(c);
        tw_h1_conn_free(c);
        return;
    }
    /* Back to rest, as today's drain has it: closed after the grace, which
     * starts now, unless a request arrives first (then it is served, and
     * its response says Connection: close). */
    tw_h1_list_unlink(srv, c);
    c->idle_since = tw_loop_now(srv->loop);
    tw_h1_list_insert_rest(srv, c, c->served ? TW_CONN_REST_KEPT : TW_CONN_REST_NEW);
    tw_stream_resume_reading(c->stream);
    if (tw_stream_read_some(c->stream, tw_h1_on_data, c) == 0)
        c->reading = true;
    tw_h1_rest_timer_update(srv);
}

int tw_http_conn_adopt(tw_http_server_t *srv, int fd, const tw_handoff_conn_t *st,
                       size_t listener_index)
{
    bool proxy = listener_index < srv->proxy_protocol_count && srv->proxy_protocol[listener_index];
    if (!srv->loop || tw_tls_server_listens(srv->tls, listener_index) ||
        proxy != (st->proxy_listener != 0) || (st->proxy_pending && !proxy)) {
        close(fd);
        return -1;
    }
    const struct sockaddr *peer = st->peer_len ? &st->peer.sa : NULL;
    tw_http_conn_t *c =
        tw_h1_conn_new(srv, srv->loop, fd, peer, (socklen_t)st->peer_len, listener_index);
    if (!c)
        return -1;            /* fd closed */
    srv->counters.accepted--; /* counted as adopted, not as accepted */
    srv->counters.adopted++;
    c->served = st->served;
    c->proxy_pending = st->proxy_pending != 0;
    /* Idle since when the old generation says, and never kept longer than
     * either config would: a lowered keep-alive applies at once, a raised
     * one does not extend what the old one promised. */
    uint64_t now = tw_loop_now(srv->loop);
    uint64_t since = now > st->idle_ms ? now - st->idle_ms : 0;
    uint64_t timeout = idle_timeout(srv, c->served);
    uint64_t old_deadline = now + st->deadline_ms;
    if (old_deadline > timeout && old_deadline - timeout < since)
        since = old_deadline - timeout;
    else if (old_deadline <= timeout)
        since = 0;
    tw_h1_list_unlink(srv, c);
    c->idle_since = since;
    tw_h1_list_insert_rest(srv, c, c->served ? TW_CONN_REST_KEPT : TW_CONN_REST_NEW);
    if (!tw_h1_handoff_offer(c)) /* a draining adopter passes it on */
        tw_h1_rest_timer_update(srv);
    return 0;
}
