/* proxy_transport.c — see proxy_transport.h. A balancer sends the PROXY
 * header and then the client's bytes, often in one segment; a TLS session
 * must see the ClientHello from its first byte, so the header is read by
 * peeking and then taking exactly its own bytes: whatever follows stays in
 * the socket for OpenSSL. */
#include "proxy_transport.h"

#include <errno.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "proxy_protocol.h"
#include "stream_transport.h"

static int fd_of(void *ctx)
{
    return (int)(intptr_t)ctx;
}

static ssize_t header_recv(void *ctx, void *buf, size_t len)
{
    ssize_t n;
    do
        n = recv(fd_of(ctx), buf, len, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n;
    /* A complete header: its length. A valid prefix (AGAIN) or garbage
     * (ERROR): every byte seen is the header's, or the connection closes
     * on it anyway. */
    tw_proxy_header_t h;
    size_t take = (size_t)n;
    if (tw_proxy_parse(buf, (size_t)n, &h) == TW_PROXY_DONE && h.length < take)
        take = h.length;
    do
        n = recv(fd_of(ctx), buf, take, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t header_send(void *ctx, const struct iovec *iov, int cnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
    return sendmsg(fd_of(ctx), &m, MSG_NOSIGNAL);
}

static ssize_t header_sendfile(void *ctx, int file_fd, off_t *off, size_t len)
{
    return sendfile(fd_of(ctx), file_fd, off, len);
}

/* A short read says nothing about the socket here: it stopped at the
 * header's end on purpose, and what follows may already be there. */
static bool header_drained(void *ctx)
{
    (void)ctx;
    return false;
}

static unsigned header_events(void *ctx)
{
    (void)ctx;
    return 0;
}

static void header_close(void *ctx)
{
    (void)ctx;
}

static size_t header_memory(const void *ctx)
{
    (void)ctx;
    return 0;
}

static const tw_stream_transport_t header_transport = {
    .recv = header_recv,
    .send = header_send,
    .sendfile = header_sendfile,
    .events = header_events,
    .drained = header_drained,
    .close = header_close,
    .memory = header_memory,
};

void tw_proxy_transport_attach(tw_stream_t *s)
{
    tw_stream_set_transport(s, &header_transport, (void *)(intptr_t)tw_stream_fd(s));
}
