/* twister/loop.h — the IOLoop: one epoll instance, timers, deferred
 * callbacks and signals, all delivered as plain callbacks on one thread.
 *
 * Every callback runs on the loop's thread, never inside a signal handler.
 * Functions returning int return 0 on success and -1 with errno set on
 * failure unless their comment says otherwise.
 *
 * One iteration runs: the deferred callbacks queued before it began, then
 * epoll_wait (bounded by the next timer; 0 if callbacks are queued), then
 * the callbacks of the ready fds, then the due timers. fd watches are
 * level-triggered. */
#ifndef TWISTER_LOOP_H
#define TWISTER_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_loop tw_loop_t;
typedef struct tw_timer tw_timer_t;

/* Event bits for fd watches. Errors and hang-ups wake both directions, so a
 * reader and a writer each learn about them through their own callback. */
enum {
    TW_EV_READ = 1u << 0,
    TW_EV_WRITE = 1u << 1,
};

/* Called when fd becomes ready; events holds the TW_EV_* bits that fired. */
typedef void (*tw_io_cb)(tw_loop_t *loop, int fd, unsigned events, void *arg);
/* Called once when a started timer expires (it is inactive again by then). */
typedef void (*tw_timer_cb)(tw_loop_t *loop, tw_timer_t *timer, void *arg);
/* A deferred callback queued with tw_loop_add_callback. */
typedef void (*tw_callback_fn)(tw_loop_t *loop, void *arg);
/* Called on the loop thread when signo was delivered to the process. */
typedef void (*tw_signal_cb)(tw_loop_t *loop, int signo, void *arg);

/* A timer is embedded in its owner's struct, so arming one never allocates.
 * The fields are the loop's; read them only through the functions below. */
struct tw_timer {
    uint64_t deadline; /* absolute, in loop milliseconds */
    uint64_t sequence; /* start order: ties fire in start order */
    size_t heap_index; /* position in the loop's heap; SIZE_MAX if idle */
    tw_timer_cb cb;
    void *arg;
};

/* Creates a loop (epoll fd, close-on-exec). Returns NULL with errno set. */
tw_loop_t *tw_loop_new(void);
/* Frees the loop and its queued callbacks (without running them); does not
 * close watched fds; leaves armed timers idle; closes the signalfd and
 * unblocks the signals it handled. */
void tw_loop_free(tw_loop_t *loop);

/* Runs iterations until tw_loop_stop is called (also when called before
 * tw_loop_run). Returns 0, or -1 if epoll_wait failed with something other
 * than EINTR. */
int tw_loop_run(tw_loop_t *loop);
/* Runs one iteration, waiting at most timeout_ms (-1: until something
 * happens, bounded by the next timer). Returns the number of callbacks run,
 * or -1 on an epoll failure. Meant for tests and embedding. */
int tw_loop_run_once(tw_loop_t *loop, int timeout_ms);
/* Makes tw_loop_run return after the current iteration. */
void tw_loop_stop(tw_loop_t *loop);

/* The loop's time in milliseconds (CLOCK_MONOTONIC), cached once per
 * iteration so that many timers armed in one iteration share one clock read. */
uint64_t tw_loop_now(const tw_loop_t *loop);
/* Re-reads the clock into the cache (for long callbacks and tests). */
void tw_loop_update_time(tw_loop_t *loop);

/* Watches fd for events (TW_EV_* bits, may be 0 to keep it registered but
 * silent: such an fd is kept out of the epoll set, so even a hang-up does
 * not wake the loop). Registering an fd already watched replaces its
 * callback and mask. Errors: EEXIST never; EBADF/EPERM/ENOMEM from
 * epoll_ctl (with a 0 mask epoll_ctl does not run, so a bad fd shows only
 * when events are first asked for). */
int tw_loop_watch(tw_loop_t *loop, int fd, unsigned events, tw_io_cb cb, void *arg);
/* Changes the event mask of a watched fd; epoll_ctl only runs when the mask
 * really changes. Errors: ENOENT if fd is not watched. */
int tw_loop_set_events(tw_loop_t *loop, int fd, unsigned events);
/* Returns the current event mask of fd, or 0 if it is not watched. */
unsigned tw_loop_events(const tw_loop_t *loop, int fd);
/* Stops watching fd. Safe from any callback, including for an fd whose event
 * is pending later in the same batch: that event is then dropped (also if
 * the fd number is closed and watched again meanwhile). Does not close fd;
 * call it before closing. Errors: ENOENT if fd is not watched. */
int tw_loop_unwatch(tw_loop_t *loop, int fd);
/* Watches a listening fd with EPOLLEXCLUSIVE so that one connection wakes
 * one worker, not all. Such a watch cannot be modified, only removed. */
int tw_loop_watch_exclusive(tw_loop_t *loop, int fd, tw_io_cb cb, void *arg);

/* Prepares a timer; call once before the first start. */
void tw_timer_init(tw_timer_t *timer, tw_timer_cb cb, void *arg);
/* Arms (or re-arms) timer to fire after ms milliseconds. O(log n). Timers
 * started while timers are being run fire no earlier than the next
 * iteration, so a 0 ms timer cannot starve the loop. Due timers fire in
 * deadline order, ties in start order. Errors: ENOMEM (only when arming an
 * idle timer needs the heap to grow; the timer then stays idle). */
int tw_timer_start(tw_loop_t *loop, tw_timer_t *timer, uint64_t ms);
/* Disarms timer; a no-op if it is idle. Safe from any callback, including
 * for a timer due in the same iteration (it will not fire). O(log n). */
void tw_timer_stop(tw_loop_t *loop, tw_timer_t *timer);
/* True while timer is armed. */
bool tw_timer_active(const tw_timer_t *timer);
/* Number of armed timers (for tests and stats). */
size_t tw_loop_timer_count(const tw_loop_t *loop);

/* Queues fn(loop, arg) to run on the next iteration (never the current
 * one, so a callback that re-queues itself cannot starve the loop).
 * Errors: ENOMEM (only when the loop has no free queue entry left and the
 * heap has none either; entries are reused, so a steady state allocates
 * nothing). */
int tw_loop_add_callback(tw_loop_t *loop, tw_callback_fn fn, void *arg);
/* Drops every queued callback whose fn and arg both match (for owners that
 * are about to be freed). Returns how many were dropped. */
size_t tw_loop_cancel_callbacks(tw_loop_t *loop, tw_callback_fn fn, void *arg);

/* Delivers signo through the loop (signalfd): the signal is blocked for the
 * calling thread and cb runs on the loop thread each time it arrives.
 * Errors: EINVAL for SIGKILL/SIGSTOP, errors of signalfd. */
int tw_loop_add_signal(tw_loop_t *loop, int signo, tw_signal_cb cb, void *arg);
/* Stops delivering signo and unblocks it (a signal still pending then gets
 * its normal disposition). Errors: ENOENT if not added. */
int tw_loop_remove_signal(tw_loop_t *loop, int signo);

#ifdef __cplusplus
}
#endif
#endif
