/* conn_pool.c — per-worker keep-alive pools of idle upstream connections.
 *
 * An idle connection keeps a read pending, so that the server closing it
 * (or sending bytes nobody asked for, which makes it unusable) is noticed
 * by the loop and the entry goes at once; before reuse a MSG_PEEK catches
 * what the loop has not seen yet. Entries are in one list, oldest first:
 * over max_idle the oldest is closed, and each has its idle timer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "twister/upstream.h"

typedef struct entry {
    struct entry *prev, *next;
    struct tw_conn_pool *pool;
    tw_addr_t addr;
    tw_stream_t *stream;
    tw_timer_t timer;
} entry_t;

struct tw_conn_pool {
    tw_loop_t *loop;
    size_t max_idle;
    uint64_t idle_ms;
    size_t count;
    entry_t *head, *tail;
};

tw_conn_pool_t *tw_conn_pool_new(tw_loop_t *loop, size_t max_idle, uint64_t idle_ms)
{
    tw_conn_pool_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->max_idle = max_idle;
    p->idle_ms = idle_ms;
    return p;
}

/* Unlinks e and frees it; the stream is the caller's again (callbacks
 * cleared). */
static tw_stream_t *entry_take(entry_t *e)
{
    tw_conn_pool_t *p = e->pool;
    *(e->prev ? &e->prev->next : &p->head) = e->next;
    *(e->next ? &e->next->prev : &p->tail) = e->prev;
    p->count--;
    tw_timer_stop(p->loop, &e->timer);
    tw_stream_t *s = e->stream;
    tw_stream_set_close_cb(s, NULL, NULL);
    tw_stream_cancel_read(s);
    free(e);
    return s;
}

static void entry_close(entry_t *e)
{
    tw_stream_close(entry_take(e));
}

static void entry_on_close(tw_stream_t *s, void *arg)
{
    (void)s;
    entry_t *e = arg;
    entry_take(e);
}

/* Anything arriving on an idle connection (bytes or EOF) makes it useless. */
static size_t entry_on_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    (void)status;
    (void)data;
    (void)len;
    entry_close(arg);
    return 0;
}

static void entry_on_timeout(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    (void)loop;
    (void)timer;
    entry_close(arg);
}

/* True if the socket has neither bytes nor an EOF waiting. */
static bool still_quiet(tw_stream_t *s)
{
    int fd = tw_stream_fd(s);
    if (fd < 0 || tw_stream_closed(s) || tw_stream_buffered(s) > 0)
        return false;
    char c;
    ssize_t n;
    do
        n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

tw_stream_t *tw_conn_pool_get(tw_conn_pool_t *p, const tw_addr_t *addr)
{
    /* Newest first: it is the least likely to have been closed by the peer. */
    for (entry_t *e = p->tail; e;) {
        entry_t *prev = e->prev;
        if (e->addr.len == addr->len && memcmp(&e->addr.sa, &addr->sa, addr->len) == 0) {
            tw_stream_t *s = entry_take(e);
            if (still_quiet(s))
                return s;
            tw_stream_close(s);
        }
        e = prev;
    }
    return NULL;
}

void tw_conn_pool_put(tw_conn_pool_t *p, const tw_addr_t *addr, tw_stream_t *s)
{
    if (p->max_idle == 0 || !still_quiet(s) || tw_stream_write_queued(s) > 0) {
        tw_stream_close(s);
        return;
    }
    entry_t *e = calloc(1, sizeof *e);
    if (!e) {
        tw_stream_close(s);
        return;
    }
    e->pool = p;
    e->addr = *addr;
    e->stream = s;
    tw_timer_init(&e->timer, entry_on_timeout, e);
    tw_stream_untie(s);
    tw_stream_set_drain_cb(s, NULL, NULL);
    tw_stream_cancel_read(s);
    e->prev = p->tail;
    *(p->tail ? &p->tail->next : &p->head) = e;
    p->tail = e;
    p->count++;
    tw_stream_set_close_cb(s, entry_on_close, e);
    if (tw_stream_read_some(s, entry_on_data, e) < 0 ||
        (p->idle_ms && tw_timer_start(p->loop, &e->timer, p->idle_ms) < 0)) {
        entry_close(e);
        return;
    }
    tw_stream_shrink(s);
    while (p->count > p->max_idle)
        entry_close(p->head);
}

size_t tw_conn_pool_idle(const tw_conn_pool_t *p)
{
    return p->count;
}

void tw_conn_pool_free(tw_conn_pool_t *p)
{
    if (!p)
        return;
    while (p->head)
        entry_close(p->head);
    free(p);
}
