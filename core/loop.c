/* loop.c — the IOLoop: one epoll instance, a timer heap, deferred callbacks
 * and signals through one signalfd, all delivered on the loop's thread.
 *
 * An iteration runs, in this order:
 *   1. the deferred callbacks queued before the iteration began;
 *   2. epoll_wait, bounded by the next timer (0 if callbacks are queued);
 *   3. the fd callbacks of the ready fds;
 *   4. the timers that are due.
 * The clock is read once after the wait, for 3 and 4 (and for timers they
 * arm), and once before it, so that long callbacks do not stretch the
 * wait. Timers last means a single tw_loop_run_once(-1) waits for the next
 * timer and fires it.
 *
 * The clock can be made manual (tw_loop_set_manual_clock, for the
 * in-process test library): the loop then never reads CLOCK_MONOTONIC and
 * time moves only when the driver sets it, so timeouts and plugin timers
 * fire exactly when a test says. The production path pays one predictable
 * branch per clock reading for it.
 *
 * Level-triggered epoll, on purpose. The fd-watch API is public (plugins
 * watch their own upstream sockets), and with level triggering a callback
 * that reads less than everything cannot lose the readiness — the classic
 * edge-triggered bug. The cost ET avoids, epoll_ctl calls to re-arm, we
 * avoid instead by calling epoll_ctl only when a mask really changes; and
 * IOStream keeps EPOLLIN armed across requests, so a keep-alive connection
 * normally costs no epoll_ctl at all per request. An fd whose mask drops to
 * 0 is removed from the epoll set (and re-added later): with level
 * triggering, a registered-but-silent fd would still report EPOLLHUP on
 * every wait and spin the loop. */
#include "twister/loop.h"

#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* ---- fd records ------------------------------------------------------------ */

enum {
    FD_WATCHED = 1u << 0,   /* the owner registered the fd */
    FD_IN_EPOLL = 1u << 1,  /* the kernel's epoll set holds it (mask != 0) */
    FD_EXCLUSIVE = 1u << 2, /* added with EPOLLEXCLUSIVE: cannot be modified */
};

/* One record per fd, in an array indexed by the fd (redis ae). The
 * generation is bumped on every unwatch and travels in the epoll data next
 * to the fd, so an event that was already collected for a registration
 * that is gone (unwatched, maybe the fd number reused by a new connection,
 * all by an earlier callback of the same batch) is recognised and dropped. */
typedef struct {
    tw_io_cb cb;
    void *arg;
    uint32_t gen;
    uint8_t mask;  /* TW_EV_* the owner asked for */
    uint8_t state; /* FD_* */
} fd_rec_t;

/* ---- deferred callbacks ------------------------------------------------------ */

/* Deferred callbacks are nodes on intrusive FIFO lists (libuv's rule): the
 * core embeds a node in the record that needs it (a closing stream, a
 * request about to end), so deferring never allocates and cannot fail.
 * tw_loop_add_callback takes a node from the loop's own free list (or the
 * heap when it is empty), so plugins keep a fn/arg API. An iteration moves
 * `pending` to `running` and runs that, so callbacks added meanwhile wait
 * for the next iteration. */
enum {
    NODE_IDLE = 0,
    NODE_PENDING = 1,
    NODE_RUNNING = 2
};

typedef struct {
    tw_loop_deferred_t *head, *tail;
    size_t len;
} cb_queue_t;

/* ---- the loop ---------------------------------------------------------------- */

#define MAX_EVENTS 256

struct tw_loop {
    int epfd;
    bool stop;
    bool polled_at_once; /* the last epoll_wait had a 0 timeout */

    fd_rec_t *fds;
    size_t nfds; /* capacity of fds */

    tw_timer_t **heap; /* binary min-heap on (deadline, sequence) */
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    uint64_t now;      /* ms, CLOCK_MONOTONIC */
    uint64_t now_us;   /* the same reading, in microseconds */
    bool manual_clock; /* time moves only by tw_loop_set_time_us */
    int64_t wall_base; /* with a manual clock: the wall time (s) at now_us 0 */

    cb_queue_t pending, running;
    tw_loop_deferred_t *free_nodes; /* tw_loop_add_callback's, for reuse */

    int sigfd; /* -1 when no signal is handled */
    uint64_t sigfd_gen;
    sigset_t sigmask;
    struct {
        tw_signal_cb cb;
        void *arg;
    } sigs[_NSIG];

    tw_work_queue_t *work; /* tw_loop_queue_work's threads, started on first use */

    struct epoll_event events[MAX_EVENTS];
};

static uint64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

tw_loop_t *tw_loop_new(void)
{
    tw_loop_t *loop = calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int e = errno;
        free(loop);
        errno = e;
        return NULL;
    }
    loop->sigfd = -1;
    sigemptyset(&loop->sigmask);
    loop->now_us = clock_us();
    loop->now = loop->now_us / 1000u;
    return loop;
}

void tw_loop_free(tw_loop_t *loop)
{
    if (!loop)
        return;
    tw_work_queue_free(loop->work); /* first: it unwatches its eventfd */
    /* Timers still armed belong to their owners: leave them idle. */
    for (size_t i = 0; i < loop->heap_len; i++)
        loop->heap[i]->heap_index = SIZE_MAX;
    if (loop->sigfd >= 0) {
        close(loop->sigfd);
        pthread_sigmask(SIG_UNBLOCK, &loop->sigmask, NULL);
    }
    close(loop->epfd);
    free(loop->fds);
    free(loop->heap);
    /* Queued nodes are their owners' (or, for tw_loop_add_callback's, the
     * loop's: freed with the free list). */
    for (unsigned q = 0; q < 2; q++) {
        cb_queue_t *list = q ? &loop->running : &loop->pending;
        while (list->head) {
            tw_loop_deferred_t *d = list->head;
            list->head = d->next;
            d->queue = NODE_IDLE;
            d->prev = d->next = NULL;
            if (d->pooled)
                free(d);
        }
    }
    while (loop->free_nodes) {
        tw_loop_deferred_t *d = loop->free_nodes;
        loop->free_nodes = d->next;
        free(d);
    }
    free(loop);
}

uint64_t tw_loop_now(const tw_loop_t *loop)
{
    return loop->now;
}

void tw_loop_update_time(tw_loop_t *loop)
{
    if (loop->manual_clock)
        return;
    loop->now_us = clock_us();
    loop->now = loop->now_us / 1000u;
}

void tw_loop_set_manual_clock(tw_loop_t *loop, uint64_t now_us, int64_t wall_base)
{
    loop->manual_clock = true;
    loop->wall_base = wall_base;
    loop->now_us = now_us;
    loop->now = now_us / 1000u;
}

void tw_loop_set_time_us(tw_loop_t *loop, uint64_t now_us)
{
    if (!loop->manual_clock || now_us < loop->now_us)
        return; /* a monotonic clock never goes back */
    loop->now_us = now_us;
    loop->now = now_us / 1000u;
}

uint64_t tw_loop_clock_us(const tw_loop_t *loop)
{
    return loop->manual_clock ? loop->now_us : clock_us();
}

time_t tw_loop_wall_time(const tw_loop_t *loop)
{
    if (loop->manual_clock)
        return (time_t)(loop->wall_base + (int64_t)(loop->now_us / 1000000u));
    return time(NULL);
}

bool tw_loop_next_deadline(const tw_loop_t *loop, uint64_t *deadline_ms)
{
    if (loop->heap_len == 0)
        return false;
    *deadline_ms = loop->heap[0]->deadline;
    return true;
}

bool tw_loop_has_pending(const tw_loop_t *loop)
{
    return loop->pending.head != NULL;
}

uint64_t tw_loop_now_us(const tw_loop_t *loop)
{
    return loop->now_us;
}

uint64_t tw_clock_us(void)
{
    return clock_us();
}

void tw_loop_stop(tw_loop_t *loop)
{
    loop->stop = true;
}

/* ---- fd watches ---------------------------------------------------------------- */

static int fds_reserve(tw_loop_t *loop, int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if ((size_t)fd < loop->nfds)
        return 0;
    size_t n = loop->nfds ? loop->nfds : 64;
    while (n <= (size_t)fd)
        n *= 2;
    /* calloc, not realloc + memset: a large array comes zeroed from mmap,
     * so the records of fds never used cost no resident memory. */
    fd_rec_t *v = calloc(n, sizeof *v);
    if (!v)
        return -1;
    if (loop->nfds)
        memcpy(v, loop->fds, loop->nfds * sizeof *v);
    free(loop->fds);
    loop->fds = v;
    loop->nfds = n;
    return 0;
}

static fd_rec_t *fd_get(const tw_loop_t *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nfds || !(loop->fds[fd].state & FD_WATCHED))
        return NULL;
    return &loop->fds[fd];
}

/* Brings the kernel's registration of fd in line with mask: removed when
 * mask is 0, added or modified otherwise. */
static int fd_apply(tw_loop_t *loop, int fd, fd_rec_t *rec, unsigned mask)
{
    if (mask == 0) {
        if (rec->state & FD_IN_EPOLL) {
            /* EBADF/ENOENT: the owner closed the fd first; the kernel has
             * already forgotten it, which is all we wanted. */
            epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
            rec->state &= (uint8_t)~FD_IN_EPOLL;
        }
        rec->mask = 0;
        return 0;
    }
    struct epoll_event ev = {
        .events = ((mask & TW_EV_READ) ? EPOLLIN : 0u) | ((mask & TW_EV_WRITE) ? EPOLLOUT : 0u),
        .data.u64 = ((uint64_t)rec->gen << 32) | (uint32_t)fd,
    };
    int op = (rec->state & FD_IN_EPOLL) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(loop->epfd, op, fd, &ev);
    if (rc < 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
        /* The fd was closed and its number reused without an unwatch:
         * register the new file. */
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
    if (rc < 0)
        return -1;
    rec->state |= FD_IN_EPOLL;
    rec->mask = (uint8_t)mask;
    return 0;
}

int tw_loop_watch(tw_loop_t *loop, int fd, unsigned events, tw_io_cb cb, void *arg)
{
    if (fds_reserve(loop, fd) < 0)
        return -1;
    fd_rec_t *rec = &loop->fds[fd];
    events &= TW_EV_READ | TW_EV_WRITE;
    if (rec->state & FD_EXCLUSIVE) {
        /* An exclusive registration cannot be modified: start over. */
        tw_loop_unwatch(loop, fd);
        rec = &loop->fds[fd];
    }
    bool fresh = !(rec->state & FD_WATCHED);
    unsigned old_mask = rec->mask;
    if (fresh || old_mask != events) {
        if (fd_apply(loop, fd, rec, events) < 0)
            return -1;
    }
    rec->cb = cb;
    rec->arg = arg;
    rec->state |= FD_WATCHED;
    return 0;
}

int tw_loop_watch_exclusive(tw_loop_t *loop, int fd, tw_io_cb cb, void *arg)
{
    if (fds_reserve(loop, fd) < 0)
        return -1;
    if (loop->fds[fd].state & FD_WATCHED)
        tw_loop_unwatch(loop, fd);
    fd_rec_t *rec = &loop->fds[fd];
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLEXCLUSIVE,
        .data.u64 = ((uint64_t)rec->gen << 32) | (uint32_t)fd,
    };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    rec->cb = cb;
    rec->arg = arg;
    rec->mask = TW_EV_READ;
    rec->state = FD_WATCHED | FD_IN_EPOLL | FD_EXCLUSIVE;
    return 0;
}

int tw_loop_set_events(tw_loop_t *loop, int fd, unsigned events)
{
    fd_rec_t *rec = fd_get(loop, fd);
    if (!rec) {
        errno = ENOENT;
        return -1;
    }
    events &= TW_EV_READ | TW_EV_WRITE;
    if (rec->mask == events)
        return 0;
    if (rec->state & FD_EXCLUSIVE) {
        errno = EINVAL;
        return -1;
    }
    return fd_apply(loop, fd, rec, events);
}

unsigned tw_loop_events(const tw_loop_t *loop, int fd)
{
    const fd_rec_t *rec = fd_get(loop, fd);
    return rec ? rec->mask : 0;
}

int tw_loop_unwatch(tw_loop_t *loop, int fd)
{
    fd_rec_t *rec = fd_get(loop, fd);
    if (!rec) {
        errno = ENOENT;
        return -1;
    }
    if (rec->state & FD_IN_EPOLL)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    rec->gen++; /* any event still in this batch for fd is now stale */
    rec->state = 0;
    rec->mask = 0;
    rec->cb = NULL;
    rec->arg = NULL;
    return 0;
}

/* ---- timers: a binary min-heap of pointers ----------------------------------- */

static inline bool timer_before(const tw_timer_t *a, const tw_timer_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->sequence < b->sequence);
}

static inline void heap_set(tw_loop_t *loop, size_t i, tw_timer_t *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(tw_loop_t *loop, size_t i)
{
    tw_timer_t *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(tw_loop_t *loop, size_t i)
{
    tw_timer_t *t = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_before(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!timer_before(loop->heap[c], t))
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

static void heap_remove(tw_loop_t *loop, tw_timer_t *t)
{
    size_t i = t->heap_index;
    tw_timer_t *last = loop->heap[--loop->heap_len];
    t->heap_index = SIZE_MAX;
    if (last == t)
        return;
    heap_set(loop, i, last);
    /* The moved element may belong above or below its new place. */
    if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void tw_timer_init(tw_timer_t *timer, tw_timer_cb cb, void *arg)
{
    timer->deadline = 0;
    timer->sequence = 0;
    timer->heap_index = SIZE_MAX;
    timer->cb = cb;
    timer->arg = arg;
}

int tw_timer_start(tw_loop_t *loop, tw_timer_t *timer, uint64_t ms)
{
    uint64_t deadline = loop->now + ms;
    if (deadline < loop->now)
        deadline = UINT64_MAX;
    if (timer->heap_index == SIZE_MAX && loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        tw_timer_t **h = realloc(loop->heap, cap * sizeof *h);
        if (!h)
            return -1;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    timer->deadline = deadline;
    /* A fresh sequence number also makes the "started during timer
     * processing" rule work: run_timers stops at numbers it has not seen. */
    timer->sequence = loop->timer_seq++;
    if (timer->heap_index == SIZE_MAX) {
        heap_set(loop, loop->heap_len++, timer);
        heap_up(loop, timer->heap_index);
    } else {
        /* Re-arming only moves it later in practice, but be exact. */
        size_t i = timer->heap_index;
        if (i > 0 && timer_before(timer, loop->heap[(i - 1) / 2]))
            heap_up(loop, i);
        else
            heap_down(loop, i);
    }
    return 0;
}

void tw_timer_stop(tw_loop_t *loop, tw_timer_t *timer)
{
    if (timer->heap_index != SIZE_MAX)
        heap_remove(loop, timer);
}

bool tw_timer_active(const tw_timer_t *timer)
{
    return timer->heap_index != SIZE_MAX;
}

size_t tw_loop_timer_count(const tw_loop_t *loop)
{
    return loop->heap_len;
}

/* Runs the due timers in (deadline, start order). A timer is removed from
 * the heap before its callback runs, so a callback may restart it, and a
 * timer stopped by an earlier callback is simply no longer there. Timers
 * started meanwhile carry a sequence number >= limit and wait for the next
 * iteration even if they are due (a 0 ms timer cannot starve the loop). */
static int run_timers(tw_loop_t *loop)
{
    uint64_t limit = loop->timer_seq;
    int ran = 0;
    while (loop->heap_len > 0) {
        tw_timer_t *t = loop->heap[0];
        if (t->deadline > loop->now || t->sequence >= limit)
            break;
        heap_remove(loop, t);
        t->cb(loop, t, t->arg);
        ran++;
    }
    return ran;
}

/* ---- deferred callbacks ----------------------------------------------------------- */

static void queue_push(cb_queue_t *q, tw_loop_deferred_t *d)
{
    d->next = NULL;
    d->prev = q->tail;
    if (q->tail)
        q->tail->next = d;
    else
        q->head = d;
    q->tail = d;
    q->len++;
}

static void queue_unlink(cb_queue_t *q, tw_loop_deferred_t *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        q->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        q->tail = d->prev;
    d->prev = d->next = NULL;
    q->len--;
}

void tw_loop_deferred_init(tw_loop_deferred_t *d, tw_callback_fn fn, void *arg)
{
    *d = (tw_loop_deferred_t){.fn = fn, .arg = arg};
}

void tw_loop_defer(tw_loop_t *loop, tw_loop_deferred_t *d)
{
    if (d->queue != NODE_IDLE)
        return;
    d->queue = NODE_PENDING;
    queue_push(&loop->pending, d);
}

static void node_release(tw_loop_t *loop, tw_loop_deferred_t *d)
{
    if (d->pooled) {
        d->next = loop->free_nodes;
        loop->free_nodes = d;
    }
}

void tw_loop_defer_cancel(tw_loop_t *loop, tw_loop_deferred_t *d)
{
    if (d->queue == NODE_IDLE)
        return;
    queue_unlink(d->queue == NODE_PENDING ? &loop->pending : &loop->running, d);
    d->queue = NODE_IDLE;
    node_release(loop, d);
}

bool tw_loop_deferred_queued(const tw_loop_deferred_t *d)
{
    return d->queue != NODE_IDLE;
}

int tw_loop_add_callback(tw_loop_t *loop, tw_callback_fn fn, void *arg)
{
    tw_loop_deferred_t *d = loop->free_nodes;
    if (d)
        loop->free_nodes = d->next;
    else if (!(d = malloc(sizeof *d)))
        return -1;
    tw_loop_deferred_init(d, fn, arg);
    d->pooled = true;
    tw_loop_defer(loop, d);
    return 0;
}

size_t tw_loop_cancel_callbacks(tw_loop_t *loop, tw_callback_fn fn, void *arg)
{
    size_t n = 0;
    /* Not yet run in the current batch, and queued for the next one. */
    for (unsigned q = 0; q < 2; q++) {
        tw_loop_deferred_t *d = (q ? &loop->pending : &loop->running)->head;
        while (d) {
            tw_loop_deferred_t *next = d->next;
            if (d->pooled && d->fn == fn && d->arg == arg) {
                tw_loop_defer_cancel(loop, d);
                n++;
            }
            d = next;
        }
    }
    return n;
}

static int run_callbacks(tw_loop_t *loop)
{
    if (!loop->pending.head)
        return 0;
    loop->running = loop->pending;
    loop->pending = (cb_queue_t){0};
    for (tw_loop_deferred_t *d = loop->running.head; d; d = d->next)
        d->queue = NODE_RUNNING;
    int ran = 0;
    tw_loop_deferred_t *d;
    while ((d = loop->running.head)) {
        queue_unlink(&loop->running, d);
        d->queue = NODE_IDLE;
        tw_callback_fn fn = d->fn;
        void *arg = d->arg;
        /* Back on the free list first: the callback may queue another. */
        node_release(loop, d);
        fn(loop, arg);
        ran++;
    }
    return ran;
}

/* ---- signals ------------------------------------------------------------------------ */

static void on_signalfd(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    uint64_t gen = loop->sigfd_gen;
    struct signalfd_siginfo si[16];
    for (;;) {
        ssize_t n = read(fd, si, sizeof si);
        if (n < (ssize_t)sizeof si[0]) {
            if (n < 0 && errno == EINTR)
                continue;
            return; /* EAGAIN: drained */
        }
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            uint32_t signo = si[i].ssi_signo;
            if (signo < _NSIG && loop->sigs[signo].cb)
                loop->sigs[signo].cb(loop, (int)signo, loop->sigs[signo].arg);
            if (loop->sigfd_gen != gen)
                return; /* a callback replaced or closed the signalfd */
        }
    }
}

int tw_loop_add_signal(tw_loop_t *loop, int signo, tw_signal_cb cb, void *arg)
{
    if (signo <= 0 || signo >= _NSIG || signo == SIGKILL || signo == SIGSTOP) {
        errno = EINVAL;
        return -1;
    }
    sigset_t mask = loop->sigmask, one;
    sigaddset(&mask, signo);
    sigemptyset(&one);
    sigaddset(&one, signo);
    /* Block first: a signal that arrives before the signalfd knows it must
     * stay pending, not run its default action. */
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    if (loop->sigfd < 0) {
        int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0 || tw_loop_watch(loop, fd, TW_EV_READ, on_signalfd, NULL) < 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            if (!sigismember(&loop->sigmask, signo))
                pthread_sigmask(SIG_UNBLOCK, &one, NULL);
            errno = e;
            return -1;
        }
        loop->sigfd = fd;
        loop->sigfd_gen++;
    } else if (signalfd(loop->sigfd, &mask, 0) < 0) {
        int e = errno;
        if (!sigismember(&loop->sigmask, signo))
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        errno = e;
        return -1;
    }
    loop->sigmask = mask;
    loop->sigs[signo].cb = cb;
    loop->sigs[signo].arg = arg;
    return 0;
}

int tw_loop_remove_signal(tw_loop_t *loop, int signo)
{
    if (signo <= 0 || signo >= _NSIG || !sigismember(&loop->sigmask, signo)) {
        errno = ENOENT;
        return -1;
    }
    sigdelset(&loop->sigmask, signo);
    loop->sigs[signo].cb = NULL;
    loop->sigs[signo].arg = NULL;
    if (sigisemptyset(&loop->sigmask)) {
        tw_loop_unwatch(loop, loop->sigfd);
        close(loop->sigfd);
        loop->sigfd = -1;
        loop->sigfd_gen++;
    } else {
        signalfd(loop->sigfd, &loop->sigmask, 0);
    }
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    return 0;
}

/* ---- running ---------------------------------------------------------------------------- */

static int poll_timeout(const tw_loop_t *loop, int requested)
{
    if (loop->pending.head || loop->stop)
        return 0;
    if (loop->heap_len == 0)
        return requested;
    uint64_t deadline = loop->heap[0]->deadline;
    uint64_t wait = deadline > loop->now ? deadline - loop->now : 0;
    if (wait > INT32_MAX)
        wait = INT32_MAX;
    if (requested >= 0 && (uint64_t)requested < wait)
        return requested;
    return (int)wait;
}

static int dispatch_events(tw_loop_t *loop, int n)
{
    int ran = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = loop->events[i].data.u64;
        uint32_t e = loop->events[i].events;
        int fd = (int)(uint32_t)data;
        /* Re-read the record each time: an earlier callback may have
         * unwatched fd, or grown (moved) the array. */
        fd_rec_t *rec = fd_get(loop, fd);
        if (!rec || rec->gen != (uint32_t)(data >> 32))
            continue;
        unsigned ev = 0;
        if (e & EPOLLIN)
            ev |= TW_EV_READ;
        if (e & EPOLLOUT)
            ev |= TW_EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            ev |= TW_EV_READ | TW_EV_WRITE; /* each side learns of it */
        ev &= rec->mask;                    /* as the mask is now, not at wait time */
        if (ev == 0)
            continue;
        rec->cb(loop, fd, ev, rec->arg);
        ran++;
    }
    return ran;
}

bool tw_loop_polled_at_once(const tw_loop_t *loop)
{
    return loop->polled_at_once;
}

int tw_loop_run_once(tw_loop_t *loop, int timeout_ms)
{
    int ran = run_callbacks(loop);
    tw_loop_update_time(loop);
    int timeout = poll_timeout(loop, timeout_ms);
    loop->polled_at_once = timeout == 0;
    int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, timeout);
    if (n < 0 && errno != EINTR)
        return -1;
    tw_loop_update_time(loop);
    if (n > 0)
        ran += dispatch_events(loop, n);
    ran += run_timers(loop);
    return ran;
}

int tw_loop_run(tw_loop_t *loop)
{
    int rc = 0;
    while (!loop->stop) {
        if (tw_loop_run_once(loop, -1) < 0) {
            rc = -1;
            break;
        }
    }
    loop->stop = false;
    return rc;
}

tw_work_queue_t **tw_loop_work_slot(tw_loop_t *loop)
{
    return &loop->work;
}
