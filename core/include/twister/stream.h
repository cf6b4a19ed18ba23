/* twister/stream.h — IOStream: a non-blocking socket with a read buffer and
 * a write queue, after Tornado's IOStream.
 *
 * One read may be pending at a time. A read is satisfied from the buffer
 * first; only then does the stream read from the socket (until EAGAIN or a
 * short read, which means the socket is drained) and, if still unsatisfied,
 * wait for EPOLLIN. Writes are tried at once and only the leftovers wait
 * for EPOLLOUT. A keep-alive connection costs no epoll_ctl per request.
 *
 * Lifetime: the stream owns its fd. Whoever closes it (peer EOF, an error,
 * or the owner through tw_stream_close), the close callback runs exactly
 * once, from a fresh loop iteration, and the stream is freed right after
 * it returns. Pending read and write callbacks never run after close.
 * tw_stream_close is safe from inside any of the stream's own callbacks.
 * Because the close callback runs later, a stream whose callbacks point
 * into a request's memory must not be closed from that request's pool
 * cleanup: tie it with tw_request_tie_stream (twister/upstream.h), which
 * clears its callbacks before closing it when the request ends.
 *
 * Callback timing: a callback never runs inside the call that caused it.
 * Called from inside one of this stream's callbacks, a read that the buffer
 * can satisfy (or a write that completed at once) reports right after that
 * callback returns; called from anywhere else, it reports from a deferred
 * callback on the next loop iteration.
 *
 * Peer EOF: a pending read is satisfied from the buffer if it can be;
 * otherwise it gets TW_STREAM_EOF (read_until_close gets OK with
 * everything). The stream then closes, after flushing what is queued. With
 * no read pending (the stream keeps reading ahead, up to max_buffer_size,
 * to notice this), EOF closes the stream at once if nothing is buffered;
 * buffered bytes are kept for the next read, which then sees the EOF.
 * A read error (ECONNRESET...) is the same with TW_STREAM_IO_ERROR, and
 * closes without flushing. */
#ifndef TWISTER_STREAM_H
#define TWISTER_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "twister/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_stream tw_stream_t;

/* Status passed to read and write callbacks. */
typedef enum {
    TW_STREAM_OK = 0,
    TW_STREAM_EOF = -1,       /* the peer closed before the read was satisfied */
    TW_STREAM_TOO_LARGE = -2, /* max_bytes or max_buffer_size would be exceeded;
                               * the stream stays open, nothing is consumed */
    TW_STREAM_IO_ERROR = -3,  /* a socket error; see tw_stream_error() */
} tw_stream_status_t;

/* A field left 0 takes its default. */
typedef struct {
    size_t max_buffer_size;  /* hard cap on buffered unread bytes [64 KiB] */
    size_t read_chunk_size;  /* bytes asked of each read(2) [16 KiB] */
    size_t write_high_water; /* queued bytes at which reading pauses [256 KiB] */
    size_t write_low_water;  /* queued bytes at or under which it resumes [64 KiB] */
} tw_stream_options_t;

/* Delivers the bytes of a completed read. data is valid only during the
 * callback; the stream consumes those bytes when the callback returns.
 * On a non-OK status data holds whatever was buffered (possibly nothing)
 * and nothing is consumed. */
typedef void (*tw_stream_read_cb)(tw_stream_t *s, int status, const char *data, size_t len,
                                  void *arg);
/* For incremental parsers: receives all buffered bytes and returns how many
 * it consumed; the rest stays buffered for the next read. */
typedef size_t (*tw_stream_data_cb)(tw_stream_t *s, int status, const char *data, size_t len,
                                    void *arg);
/* Called, in write order, when a write has been handed to the kernel
 * (status OK). A socket error closes the stream instead: pending write
 * callbacks then never run, the close callback reports it and
 * tw_stream_error() says why. (IO_ERROR is reserved for that case.) */
typedef void (*tw_stream_write_cb)(tw_stream_t *s, int status, void *arg);
/* Called once when the stream closes, for whatever reason. */
typedef void (*tw_stream_close_cb)(tw_stream_t *s, void *arg);
/* Releases caller-owned memory passed to tw_stream_write_ref. */
typedef void (*tw_stream_release_fn)(void *data, void *arg);
/* Called when the write queue falls to the low-water mark or under it,
 * after a write returned 1 (above the high-water mark). */
typedef void (*tw_stream_drain_cb)(tw_stream_t *s, void *arg);

/* Fills opts with the defaults shown above. */
void tw_stream_options_default(tw_stream_options_t *opts);

/* Wraps a connected socket (made non-blocking here; make it close-on-exec
 * yourself, e.g. with accept4). Takes ownership of fd even on failure. opts
 * may be NULL for defaults. Returns NULL with errno set (ENOMEM, or an
 * fcntl/epoll_ctl error). */
tw_stream_t *tw_stream_new(tw_loop_t *loop, int fd, const tw_stream_options_t *opts);

/* Reads until delim (dlen bytes) appears; delivers the data including the
 * delimiter. More than max_bytes (0: no limit but max_buffer_size) without
 * the delimiter gives TW_STREAM_TOO_LARGE. Errors: EBUSY if a read is
 * pending, EPIPE if closed, EINVAL if dlen is 0. */
int tw_stream_read_until(tw_stream_t *s, const char *delim, size_t dlen, size_t max_bytes,
                         tw_stream_read_cb cb, void *arg);
/* Reads exactly n bytes, or with partial as soon as 1..n are available.
 * Errors: EBUSY, EPIPE, EINVAL if n is 0. */
int tw_stream_read_bytes(tw_stream_t *s, size_t n, bool partial, tw_stream_read_cb cb, void *arg);
/* Reads everything until the peer closes; delivered with status OK at EOF.
 * More than max_buffer_size gives TW_STREAM_TOO_LARGE. Errors: EBUSY, EPIPE. */
int tw_stream_read_until_close(tw_stream_t *s, tw_stream_read_cb cb, void *arg);
/* Delivers all buffered bytes as soon as there are bytes it has not offered
 * before (at once if there are); the callback returns how many it consumed
 * and the rest stays buffered. A parser that consumed nothing is offered the
 * bytes again only once more arrive. A full buffer with nothing new to offer
 * gives TW_STREAM_TOO_LARGE. Errors: EBUSY, EPIPE. */
int tw_stream_read_some(tw_stream_t *s, tw_stream_data_cb cb, void *arg);
/* Cancels the pending read, if any, without running its callback. */
void tw_stream_cancel_read(tw_stream_t *s);
/* Number of bytes buffered and not yet consumed. Inside a read callback,
 * the bytes being delivered to it are not counted: the result is what
 * follows them (e.g. the next pipelined request). */
size_t tw_stream_buffered(const tw_stream_t *s);
/* Stops reading from the socket (the pending read stays pending and can
 * still be satisfied from bytes already buffered). */
void tw_stream_pause_reading(tw_stream_t *s);
/* Undoes tw_stream_pause_reading. */
void tw_stream_resume_reading(tw_stream_t *s);
/* Frees the read buffer if it holds no bytes (and the write buffers if
 * nothing is queued), so that an idle connection costs only the stream
 * struct. Called from a read callback, it acts once the delivered bytes are
 * consumed. */
void tw_stream_shrink(tw_stream_t *s);
/* Heap bytes the stream holds: struct and buffers (for stats and tests). */
size_t tw_stream_memory(const tw_stream_t *s);

/* Sends data now if nothing is queued (and not corked), and queues a copy of
 * what the kernel did not take. cb (may be NULL) runs once it all reached
 * the kernel. Returns 1 if the queue is now above the high-water mark (the
 * caller should wait for the drain callback), 0 if not, -1 with EPIPE if
 * the stream is closed or closing, or ENOMEM. A socket error is not a -1:
 * it closes the stream and the close callback reports it. */
int tw_stream_write(tw_stream_t *s, const void *data, size_t len, tw_stream_write_cb cb, void *arg);
/* Queues data without copying; release(data, release_arg) runs exactly once
 * when the stream no longer needs it (written, or the stream closed; it
 * runs like the other callbacks, never inside this call, except that on -1
 * it has already been called). Returns as tw_stream_write. */
int tw_stream_write_ref(tw_stream_t *s, const void *data, size_t len, tw_stream_release_fn release,
                        void *release_arg, tw_stream_write_cb cb, void *arg);
/* Queues len bytes of file_fd from offset, sent with sendfile(2). The stream
 * takes ownership of file_fd and closes it when done (or on failure).
 * Returns as tw_stream_write. */
int tw_stream_sendfile(tw_stream_t *s, int file_fd, off_t offset, size_t len, tw_stream_write_cb cb,
                       void *arg);
/* While corked, writes only queue; uncork flushes them in one writev.
 * Nests: the last uncork flushes. */
void tw_stream_cork(tw_stream_t *s);
/* Flushes what was queued while corked. */
void tw_stream_uncork(tw_stream_t *s);
/* Bytes queued and not yet written. */
size_t tw_stream_write_queued(const tw_stream_t *s);
/* Sets the callback run when the queue falls under the low-water mark. */
void tw_stream_set_drain_cb(tw_stream_t *s, tw_stream_drain_cb cb, void *arg);

/* Sets the callback run once when the stream closes. */
void tw_stream_set_close_cb(tw_stream_t *s, tw_stream_close_cb cb, void *arg);
/* Closes the stream: drops pending reads and writes (releasing their
 * memory), closes the fd, then runs the close callback on the next
 * iteration. Idempotent. */
void tw_stream_close(tw_stream_t *s);
/* Closes after everything queued has been written and its callbacks have
 * run (for Connection: close responses); uncorks; reading stops at once
 * and a pending read is dropped. */
void tw_stream_close_after_write(tw_stream_t *s);
/* True once the stream is closed or closing. */
bool tw_stream_closed(const tw_stream_t *s);
/* The errno of the failure that closed the stream, or 0. */
int tw_stream_error(const tw_stream_t *s);
/* The socket fd, or -1 once closed. */
int tw_stream_fd(const tw_stream_t *s);
/* The loop this stream runs on. */
tw_loop_t *tw_stream_loop(const tw_stream_t *s);

#ifdef __cplusplus
}
#endif
#endif
