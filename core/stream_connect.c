/* stream_connect.c — outgoing connections: a non-blocking connect that
 * becomes an IOStream, and ties between a stream and a request.
 *
 * A connect reports from the loop, never inside tw_stream_connect: an
 * immediate result (a unix socket usually connects at once) is delivered
 * through a deferred callback, so the caller can finish setting up before
 * its callback runs. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "twister/upstream.h"

struct tw_connect {
    tw_loop_t *loop;
    int fd;
    int err; /* an immediate result, delivered from the deferred callback */
    bool watching;
    tw_timer_t timer;
    tw_loop_deferred_t defer;
    tw_connect_cb cb;
    void *arg;
};

static void connect_release(tw_connect_t *c)
{
    tw_timer_stop(c->loop, &c->timer);
    tw_loop_defer_cancel(c->loop, &c->defer);
    if (c->watching)
        tw_loop_unwatch(c->loop, c->fd);
    c->watching = false;
}

/* Hands the outcome to the callback and frees c. */
static void connect_finish(tw_connect_t *c, int err)
{
    connect_release(c);
    tw_stream_t *s = NULL;
    if (err == 0) {
        s = tw_stream_new(c->loop, c->fd, NULL); /* owns the fd even on failure */
        if (!s)
            err = errno ? errno : ENOMEM;
    } else {
        close(c->fd);
    }
    c->fd = -1;
    tw_connect_cb cb = c->cb;
    void *arg = c->arg;
    free(c);
    cb(s, err, arg);
}

static void connect_on_deferred(tw_loop_t *loop, void *arg)
{
    (void)loop;
    tw_connect_t *c = arg;
    connect_finish(c, c->err);
}

static void connect_on_timeout(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    (void)loop;
    (void)timer;
    connect_finish(arg, ETIMEDOUT);
}

static void connect_on_io(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)events;
    tw_connect_t *c = arg;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    connect_finish(c, err);
}

tw_connect_t *tw_stream_connect(tw_loop_t *loop, const tw_addr_t *addr, uint64_t timeout_ms,
                                tw_connect_cb cb, void *arg)
{
    if (!addr || addr->len == 0 || !cb) {
        errno = EINVAL;
        return NULL;
    }
    tw_connect_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->cb = cb;
    c->arg = arg;
    tw_timer_init(&c->timer, connect_on_timeout, c);
    tw_loop_deferred_init(&c->defer, connect_on_deferred, c);
    int family = addr->sa.ss_family;
    c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int rc;
    do
        rc = connect(c->fd, (const struct sockaddr *)&addr->sa, addr->len);
    while (rc < 0 && errno == EINTR && family == AF_UNIX);
    /* A TCP connect interrupted by a signal goes on in the background
     * (EINTR then means "in progress"), so it is waited for like EINPROGRESS. */
    if (rc == 0 || (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN)) {
        c->err = rc == 0 ? 0 : errno;
        tw_loop_defer(loop, &c->defer);
        return c;
    }
    if (family == AF_UNIX && errno == EAGAIN) {
        /* A unix listener with a full backlog: refuse now rather than spin. */
        c->err = EAGAIN;
        tw_loop_defer(loop, &c->defer);
        return c;
    }
    if (tw_loop_watch(loop, c->fd, TW_EV_WRITE, connect_on_io, c) < 0 ||
        (timeout_ms && tw_timer_start(loop, &c->timer, timeout_ms) < 0)) {
        int e = errno;
        connect_release(c);
        close(c->fd);
        free(c);
        errno = e;
        return NULL;
    }
    c->watching = true;
    return c;
}

void tw_connect_cancel(tw_connect_t *c)
{
    if (!c)
        return;
    connect_release(c);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* ---- ties --------------------------------------------------------------- */

typedef struct {
    tw_stream_t *stream; /* NULL once the stream is freed or untied */
} tie_t;

static void tie_cleanup(void *arg)
{
    tie_t *t = arg;
    tw_stream_t *s = t->stream;
    if (!s)
        return;
    t->stream = NULL;
    tw_stream_set_tie(s, NULL);
    /* Callbacks first: the close callback would run on a later iteration,
     * after the pool that its argument points into is gone. */
    tw_stream_set_close_cb(s, NULL, NULL);
    tw_stream_set_drain_cb(s, NULL, NULL);
    tw_stream_cancel_read(s);
    tw_stream_close(s);
}

int tw_request_tie_stream(tw_request_t *r, tw_stream_t *s)
{
    tie_t *t = tw_request_alloc(r, sizeof *t);
    if (!t || tw_pool_add_cleanup(tw_request_pool(r), tie_cleanup, t) < 0) {
        errno = ENOMEM;
        return -1;
    }
    tw_stream_untie(s);
    t->stream = s;
    tw_stream_set_tie(s, &t->stream);
    return 0;
}

void tw_stream_untie(tw_stream_t *s)
{
    tw_stream_t **old = tw_stream_set_tie(s, NULL);
    if (old)
        *old = NULL;
}
