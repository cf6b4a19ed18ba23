/* stream_transport.h — a byte transport under an IOStream (TLS): the
 * stream keeps its buffers, queue, callbacks and API, and reads and writes
 * through these hooks instead of the socket. Internal to the core. */
#ifndef TWISTER_STREAM_TRANSPORT_H
#define TWISTER_STREAM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "twister/stream.h"

typedef struct {
    /* Like recv(2): bytes read, 0 at the peer's end, -1 with errno
     * (EAGAIN: wait for events()). */
    ssize_t (*recv)(void *ctx, void *buf, size_t len);
    /* Like sendmsg(2) of iov[0..cnt): bytes taken, -1 with errno. */
    ssize_t (*send)(void *ctx, const struct iovec *iov, int cnt);
    /* Like sendfile(2) from *off (advanced by what was sent). */
    ssize_t (*sendfile)(void *ctx, int file_fd, off_t *off, size_t len);
    /* After a read shorter than asked: true if the socket is drained too
     * (the stream then waits for EPOLLIN rather than reading again). */
    bool (*drained)(void *ctx);
    /* Loop events (TW_EV_*) the transport waits for besides the stream's
     * own: a read that must first write, or a write that must first read. */
    unsigned (*events)(void *ctx);
    /* The stream closes: end the session and free ctx (fd still open). */
    void (*close)(void *ctx);
    /* Heap bytes ctx holds, for tw_stream_memory. */
    size_t (*memory)(const void *ctx);
} tw_stream_transport_t;

/* Makes s read and write through t (ctx is t's state, owned by t from
 * here: t->close frees it). Call before the stream's first dispatch, i.e.
 * right after tw_stream_adopt/new. */
void tw_stream_set_transport(tw_stream_t *s, const tw_stream_transport_t *t, void *ctx);

#endif
