/* internal.h — hooks between the core's hot-path components that are not
 * part of the plugin API: the block cache (pool.c), the loop's clock in
 * microseconds (loop.c) and adopting a freshly accepted, already
 * non-blocking socket (stream.c).
 *
 * ---- the block cache: a per-thread cache of fixed-size heap blocks ----
 *
 * The hot path borrows the same few block sizes over and over: a stream's
 * 4 KiB read and output buffers, its write-record ring, a request pool's
 * first block. A connection gives them back as soon as it goes idle (so an
 * idle keep-alive connection holds none of them), and a busy one takes them
 * again for the next request: a small free list per size makes that a
 * pointer pop and push instead of a trip through malloc, and keeps the
 * memory of a burst for the next one instead of fragmenting the heap.
 *
 * A block comes from malloc and may be handed to free or realloc like any
 * other (the cache only ever holds blocks nobody uses). Each size keeps at
 * most a bounded number of blocks; beyond that they go back to free. A
 * worker is one thread: the cache is thread-local so that a plugin that
 * uses pools from threads of its own stays correct. Under AddressSanitizer
 * the cache passes everything through to malloc and free, so a use after
 * "free" is still reported. */
#ifndef TWISTER_INTERNAL_H
#define TWISTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "twister/loop.h"
#include "twister/stream.h"

/* A block of exactly size bytes (from the cache if one is there), or NULL
 * with errno ENOMEM. */
void *tw_block_alloc(size_t size);
/* Gives back a block of size bytes obtained from tw_block_alloc (or from
 * malloc with that size). NULL is a no-op. */
void tw_block_free(void *p, size_t size);
/* Frees every block this thread's cache holds. */
void tw_block_trim(void);
/* Bytes this thread's cache holds (for tests and stats). */
size_t tw_block_cached(void);

/* ---- loop.c ---- */

/* The loop's clock reading (tw_loop_now's), in microseconds. */
uint64_t tw_loop_now_us(const tw_loop_t *loop);
/* CLOCK_MONOTONIC now, in microseconds. */
uint64_t tw_clock_us(void);
/* Makes the loop's clock manual from now on (the test library): it reads
 * now_us and moves only by tw_loop_set_time_us; tw_loop_wall_time is then
 * wall_base (seconds since the epoch) plus the loop's time. */
void tw_loop_set_manual_clock(tw_loop_t *loop, uint64_t now_us, int64_t wall_base);
/* Sets a manual clock to now_us (never backwards; a no-op otherwise). */
void tw_loop_set_time_us(tw_loop_t *loop, uint64_t now_us);
/* The time now in microseconds: CLOCK_MONOTONIC read afresh, or the
 * manual clock's reading. */
uint64_t tw_loop_clock_us(const tw_loop_t *loop);
/* True if the epoll_wait whose events are being run did not wait (other
 * work was queued): an fd it reported was ready before the loop asked. */
bool tw_loop_polled_at_once(const tw_loop_t *loop);
/* time(NULL), or the manual clock's wall time. */
time_t tw_loop_wall_time(const tw_loop_t *loop);
/* The earliest armed timer's deadline (tw_loop_now's scale) into
 * *deadline_ms; false when no timer is armed. */
bool tw_loop_next_deadline(const tw_loop_t *loop, uint64_t *deadline_ms);
/* True while deferred callbacks wait for the next iteration. */
bool tw_loop_has_pending(const tw_loop_t *loop);

/* A deferred callback embedded in the record that needs it (libuv-style):
 * queuing it never allocates, so the core's close and end paths cannot
 * fail. The fields are the loop's. */
typedef struct tw_loop_deferred {
    struct tw_loop_deferred *prev, *next;
    tw_callback_fn fn;
    void *arg;
    unsigned char queue; /* idle, pending or running (loop.c) */
    bool pooled;         /* one of tw_loop_add_callback's own nodes */
} tw_loop_deferred_t;

/* Prepares d to run fn(loop, arg); d must not be queued. */
void tw_loop_deferred_init(tw_loop_deferred_t *d, tw_callback_fn fn, void *arg);
/* Queues d for the next iteration (as tw_loop_add_callback); a no-op if
 * it is already queued. Cannot fail. */
void tw_loop_defer(tw_loop_t *loop, tw_loop_deferred_t *d);
/* Unqueues d if it is queued (then it does not run). */
void tw_loop_defer_cancel(tw_loop_t *loop, tw_loop_deferred_t *d);
/* True while d waits to run. */
bool tw_loop_deferred_queued(const tw_loop_deferred_t *d);

/* ---- stream.c ---- */

/* tw_stream_new for a socket just accepted with SOCK_NONBLOCK: no fcntl,
 * and the first read is tried (from a deferred dispatch) before EPOLLIN is
 * armed, since the request has usually arrived already. */
tw_stream_t *tw_stream_adopt(tw_loop_t *loop, int fd, const tw_stream_options_t *opts);

/* Asks for TCP_NODELAY on the stream's socket, set only before its second
 * write: the first write of a connection leaves at once whatever Nagle
 * says (nothing is unacknowledged yet), so a connection answered in one
 * write (Connection: close) never pays the setsockopt; any later write
 * could wait for an ACK without it. */
void tw_stream_nodelay_when_needed(tw_stream_t *s);

/* Makes the stream store NULL into *slot when it is freed (NULL: no
 * slot); returns the previous slot. For ties (stream_connect.c). */
tw_stream_t **tw_stream_set_tie(tw_stream_t *s, tw_stream_t **slot);

/* ---- work.c ---- */

typedef struct tw_work_queue tw_work_queue_t;
/* Stops the loop's worker threads (after the work running now) and frees
 * the queue; done callbacks of unfinished work never run. NULL is a no-op. */
void tw_work_queue_free(tw_work_queue_t *q);
/* The loop's work queue slot (loop.c). */
tw_work_queue_t **tw_loop_work_slot(tw_loop_t *loop);
/* Work items queued on loop whose done callback has not run yet (queued,
 * running on a thread, or finished and waiting for the loop). */
size_t tw_loop_work_outstanding(tw_loop_t *loop);

#endif /* TWISTER_INTERNAL_H */
