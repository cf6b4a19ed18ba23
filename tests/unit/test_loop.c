/* test_loop.c — core/loop.c: timers, deferred callbacks, fd watches and
 * signals. The loop is driven with tw_loop_run_once and bounded iteration
 * counts; the few real timers are short and only their order is asserted. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "twister/loop.h"

static tw_loop_t *loop;

static void setup(void)
{
    loop = tw_loop_new();
    ck_assert_ptr_nonnull(loop);
}

static void teardown(void)
{
    tw_loop_free(loop);
    loop = NULL;
}

/* ---- timers ------------------------------------------------------------------ */

static int fired[64];
static int nfired;

static void record_timer(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    fired[nfired++] = (int)(intptr_t)arg;
}

START_TEST(test_timers_deadline_then_start_order)
{
    tw_timer_t t[6];
    /* Started in one iteration: same clock, so equal delays tie. */
    uint64_t delays[6] = {20, 5, 5, 0, 5, 20};
    for (int i = 0; i < 6; i++) {
        tw_timer_init(&t[i], record_timer, (void *)(intptr_t)i);
        ck_assert_int_eq(tw_timer_start(loop, &t[i], delays[i]), 0);
        ck_assert(tw_timer_active(&t[i]));
    }
    ck_assert_uint_eq(tw_loop_timer_count(loop), 6);
    nfired = 0;
    for (int i = 0; i < 200 && nfired < 6; i++)
        tw_loop_run_once(loop, -1); /* the wait is bounded by the next timer */
    ck_assert_int_eq(nfired, 6);
    int want[6] = {3, 1, 2, 4, 0, 5};
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(fired[i], want[i]);
    for (int i = 0; i < 6; i++)
        ck_assert(!tw_timer_active(&t[i]));
    ck_assert_uint_eq(tw_loop_timer_count(loop), 0);
}
END_TEST

START_TEST(test_timer_restart_moves_it)
{
    tw_timer_t a, b;
    tw_timer_init(&a, record_timer, (void *)1);
    tw_timer_init(&b, record_timer, (void *)2);
    tw_timer_start(loop, &a, 0);
    tw_timer_start(loop, &b, 0);
    tw_timer_start(loop, &a, 0); /* re-armed: now after b */
    ck_assert_uint_eq(tw_loop_timer_count(loop), 2);
    nfired = 0;
    for (int i = 0; i < 10 && nfired < 2; i++)
        tw_loop_run_once(loop, 0);
    ck_assert_int_eq(nfired, 2);
    ck_assert_int_eq(fired[0], 2);
    ck_assert_int_eq(fired[1], 1);
}
END_TEST

START_TEST(test_cancelled_timer_never_fires)
{
    tw_timer_t a, b;
    tw_timer_init(&a, record_timer, (void *)1);
    tw_timer_init(&b, record_timer, (void *)2);
    tw_timer_start(loop, &a, 0);
    tw_timer_start(loop, &b, 2);
    tw_timer_stop(loop, &a);
    tw_timer_stop(loop, &a); /* idempotent */
    ck_assert(!tw_timer_active(&a));
    nfired = 0;
    for (int i = 0; i < 100 && nfired < 1; i++)
        tw_loop_run_once(loop, -1);
    for (int i = 0; i < 3; i++)
        tw_loop_run_once(loop, 0);
    ck_assert_int_eq(nfired, 1);
    ck_assert_int_eq(fired[0], 2);
}
END_TEST

static tw_timer_t victim;

static void stop_victim(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    fired[nfired++] = 1;
    tw_timer_stop(l, &victim);
}

START_TEST(test_stop_due_timer_from_other_timer)
{
    tw_timer_t killer;
    tw_timer_init(&killer, stop_victim, NULL);
    tw_timer_init(&victim, record_timer, (void *)2);
    tw_timer_start(loop, &killer, 0);
    tw_timer_start(loop, &victim, 0); /* due in the same iteration, after killer */
    nfired = 0;
    for (int i = 0; i < 5; i++)
        tw_loop_run_once(loop, 0);
    ck_assert_int_eq(nfired, 1);
    ck_assert_int_eq(fired[0], 1);
    ck_assert(!tw_timer_active(&victim));
}
END_TEST

static tw_timer_t chained;

static void start_chained(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    fired[nfired++] = 1;
    tw_timer_start(l, &chained, 0);
}

START_TEST(test_timer_started_in_timer_waits_an_iteration)
{
    tw_timer_t first;
    tw_timer_init(&first, start_chained, NULL);
    tw_timer_init(&chained, record_timer, (void *)2);
    tw_timer_start(loop, &first, 0);
    nfired = 0;
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(nfired, 1);
    ck_assert(tw_timer_active(&chained));
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(nfired, 2);
    ck_assert_int_eq(fired[1], 2);
}
END_TEST

static void self_restart(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    (*(int *)arg)++;
    tw_timer_start(l, t, 0);
}

START_TEST(test_zero_timer_does_not_starve)
{
    int count = 0;
    tw_timer_t t;
    tw_timer_init(&t, self_restart, &count);
    tw_timer_start(loop, &t, 0);
    for (int i = 0; i < 5; i++)
        tw_loop_run_once(loop, 0);
    ck_assert_int_eq(count, 5); /* once per iteration */
    tw_timer_stop(loop, &t);
}
END_TEST

/* Many timers: started, some stopped, some restarted; the survivors fire
 * in (deadline, start) order and the others never. */
typedef struct {
    tw_timer_t t;
    int id;
    bool stopped;
    bool fired;
} big_timer_t;

static big_timer_t *big;
static uint64_t last_deadline, last_seq;
static int big_fired;
static bool order_ok;

static void big_cb(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    big_timer_t *b = arg;
    if (b->stopped || b->fired)
        order_ok = false;
    if (t->deadline < last_deadline || (t->deadline == last_deadline && t->sequence < last_seq))
        order_ok = false;
    last_deadline = t->deadline;
    last_seq = t->sequence;
    b->fired = true;
    big_fired++;
}

START_TEST(test_200k_timers)
{
    enum {
        N = 200000
    };
    big = calloc(N, sizeof *big);
    uint32_t rng = 12345;
    for (int i = 0; i < N; i++) {
        rng = rng * 1103515245u + 12345u;
        big[i].id = i;
        tw_timer_init(&big[i].t, big_cb, &big[i]);
        ck_assert_int_eq(tw_timer_start(loop, &big[i].t, (rng >> 16) % 8), 0);
    }
    ck_assert_uint_eq(tw_loop_timer_count(loop), N);
    int alive = N;
    for (int i = 0; i < N; i++) {
        rng = rng * 1103515245u + 12345u;
        unsigned r = (rng >> 16) % 4;
        if (r == 0) {
            tw_timer_stop(loop, &big[i].t);
            big[i].stopped = true;
            alive--;
        } else if (r == 1) {
            tw_timer_start(loop, &big[i].t, (rng >> 20) % 8); /* restart */
        }
    }
    ck_assert_uint_eq(tw_loop_timer_count(loop), (size_t)alive);
    order_ok = true;
    big_fired = 0;
    last_deadline = last_seq = 0;
    for (int i = 0; i < 1000 && big_fired < alive; i++)
        tw_loop_run_once(loop, -1);
    ck_assert(order_ok);
    ck_assert_int_eq(big_fired, alive);
    ck_assert_uint_eq(tw_loop_timer_count(loop), 0);
    free(big);
}
END_TEST

/* ---- deferred callbacks ---------------------------------------------------------- */

static int cb_runs;
static int cb_order[16];

static void count_cb(tw_loop_t *l, void *arg)
{
    cb_order[cb_runs++] = (int)(intptr_t)arg;
}

static void adds_another(tw_loop_t *l, void *arg)
{
    cb_order[cb_runs++] = 1;
    tw_loop_add_callback(l, count_cb, (void *)2);
}

START_TEST(test_callback_added_runs_next_iteration)
{
    cb_runs = 0;
    ck_assert_int_eq(tw_loop_add_callback(loop, adds_another, NULL), 0);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(cb_runs, 1); /* the one it added waits */
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(cb_runs, 2);
    ck_assert_int_eq(cb_order[1], 2);
}
END_TEST

static void requeue(tw_loop_t *l, void *arg)
{
    (*(int *)arg)++;
    tw_loop_add_callback(l, requeue, arg);
}

START_TEST(test_requeueing_callback_does_not_starve)
{
    int n = 0;
    nfired = 0;
    tw_timer_t t;
    tw_timer_init(&t, record_timer, (void *)7);
    tw_timer_start(loop, &t, 0);
    tw_loop_add_callback(loop, requeue, &n);
    /* A blocking wait would hang here if the queued callback were ignored;
     * each iteration returns because the queue forces a 0 timeout. */
    for (int i = 0; i < 4; i++)
        tw_loop_run_once(loop, -1);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(nfired, 1); /* the timer got its turn */
    ck_assert_uint_eq(tw_loop_cancel_callbacks(loop, requeue, &n), 1);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(n, 4);
}
END_TEST

static void cancel_later(tw_loop_t *l, void *arg)
{
    cb_order[cb_runs++] = 1;
    tw_loop_cancel_callbacks(l, count_cb, arg);
}

START_TEST(test_cancel_callbacks)
{
    cb_runs = 0;
    int a, b;
    tw_loop_add_callback(loop, cancel_later, &a); /* cancels a later one of the same batch */
    tw_loop_add_callback(loop, count_cb, &a);
    tw_loop_add_callback(loop, count_cb, &b);
    tw_loop_add_callback(loop, count_cb, &a);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(cb_runs, 2);
    ck_assert_int_eq(cb_order[1], (int)(intptr_t)&b);
    ck_assert_uint_eq(tw_loop_cancel_callbacks(loop, count_cb, &a), 0);
}
END_TEST

/* Intrusive deferral (internal.h): the node is the caller's, so queuing
 * it cannot fail; it shares one FIFO with tw_loop_add_callback, queues at
 * most once, waits for the next iteration when queued from a callback, and
 * can be unqueued from anywhere, including a callback of the same batch. */
static tw_loop_deferred_t nodes[3];

static void node_cb(tw_loop_t *l, void *arg)
{
    int me = (int)(intptr_t)arg;
    cb_order[cb_runs++] = me;
    if (me == 10) {
        tw_loop_defer_cancel(l, &nodes[1]); /* later in this batch: dropped */
        tw_loop_defer(l, &nodes[0]);        /* itself again: next iteration */
    }
}

START_TEST(test_deferred_nodes)
{
    cb_runs = 0;
    tw_loop_deferred_init(&nodes[0], node_cb, (void *)(intptr_t)10);
    tw_loop_deferred_init(&nodes[1], node_cb, (void *)(intptr_t)11);
    tw_loop_deferred_init(&nodes[2], node_cb, (void *)(intptr_t)12);
    tw_loop_defer(loop, &nodes[0]);
    ck_assert_int_eq(tw_loop_add_callback(loop, node_cb, (void *)(intptr_t)20), 0);
    tw_loop_defer(loop, &nodes[1]);
    tw_loop_defer(loop, &nodes[1]); /* already queued: once */
    tw_loop_defer(loop, &nodes[2]);
    ck_assert(tw_loop_deferred_queued(&nodes[2]));
    tw_loop_defer_cancel(loop, &nodes[2]);
    ck_assert(!tw_loop_deferred_queued(&nodes[2]));
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(cb_runs, 2); /* 10, then 20; 11 was dropped by 10, 12 cancelled */
    ck_assert_int_eq(cb_order[0], 10);
    ck_assert_int_eq(cb_order[1], 20);
    ck_assert(tw_loop_deferred_queued(&nodes[0]));
    tw_loop_defer_cancel(loop, &nodes[0]);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(cb_runs, 2);
    /* A node queued when the loop is freed is simply forgotten. */
    tw_loop_defer(loop, &nodes[1]);
}
END_TEST

/* ---- fd watches ------------------------------------------------------------------------ */

typedef struct {
    int fds[2][2]; /* two socketpairs */
    int ran[2];
    int closed_index;
    unsigned events[2];
} batch_t;

static batch_t batch;

static void batch_cb(tw_loop_t *l, int fd, unsigned events, void *arg)
{
    int me = (int)(intptr_t)arg;
    batch.ran[me]++;
    batch.events[me] = events;
    if (batch.closed_index < 0) {
        /* First to run: unwatch and close the other, whose event is already
         * in this batch. */
        int other = 1 - me;
        batch.closed_index = other;
        ck_assert_int_eq(tw_loop_unwatch(l, batch.fds[other][0]), 0);
        close(batch.fds[other][0]);
    }
}

START_TEST(test_unwatch_drops_event_in_same_batch)
{
    batch.closed_index = -1;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, batch.fds[i]), 0);
        ck_assert_int_eq(write(batch.fds[i][1], "x", 1), 1);
        ck_assert_int_eq(
            tw_loop_watch(loop, batch.fds[i][0], TW_EV_READ, batch_cb, (void *)(intptr_t)i), 0);
    }
    int ran = tw_loop_run_once(loop, 100);
    ck_assert_int_eq(ran, 1);
    ck_assert_int_ge(batch.closed_index, 0);
    ck_assert_int_eq(batch.ran[batch.closed_index], 0);
    ck_assert_int_eq(batch.ran[1 - batch.closed_index], 1);
    ck_assert_uint_eq(batch.events[1 - batch.closed_index], TW_EV_READ);
    int live = 1 - batch.closed_index;
    tw_loop_unwatch(loop, batch.fds[live][0]);
    close(batch.fds[live][0]);
    close(batch.fds[0][1]);
    close(batch.fds[1][1]);
}
END_TEST

/* The dropped fd number is reused by a new registration within the same
 * batch: the stale event must not reach the new owner either. */
static int reuse_spare;
static int new_owner_runs;

static void new_owner_cb(tw_loop_t *l, int fd, unsigned events, void *arg)
{
    new_owner_runs++;
}

static void reuse_cb(tw_loop_t *l, int fd, unsigned events, void *arg)
{
    int me = (int)(intptr_t)arg;
    batch.ran[me]++;
    if (batch.closed_index < 0) {
        int other = 1 - me;
        batch.closed_index = other;
        int num = batch.fds[other][0];
        tw_loop_unwatch(l, num);
        /* Same number, different file (a quiet socket). */
        ck_assert_int_eq(dup2(reuse_spare, num), num);
        ck_assert_int_eq(tw_loop_watch(l, num, TW_EV_READ, new_owner_cb, NULL), 0);
    }
}

START_TEST(test_stale_event_not_delivered_to_reused_fd)
{
    int quiet[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, quiet), 0);
    reuse_spare = quiet[0];
    batch.closed_index = -1;
    batch.ran[0] = batch.ran[1] = 0;
    new_owner_runs = 0;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, batch.fds[i]), 0);
        ck_assert_int_eq(write(batch.fds[i][1], "x", 1), 1);
        tw_loop_watch(loop, batch.fds[i][0], TW_EV_READ, reuse_cb, (void *)(intptr_t)i);
    }
    ck_assert_int_eq(tw_loop_run_once(loop, 100), 1);
    ck_assert_int_eq(new_owner_runs, 0);
    /* The new registration works on its own: its socket is quiet. */
    ck_assert_int_eq(tw_loop_run_once(loop, 0), 1); /* the surviving fd is still readable */
    ck_assert_int_eq(new_owner_runs, 0);
    ck_assert_int_eq(write(quiet[1], "y", 1), 1);
    tw_loop_run_once(loop, 100);
    tw_loop_run_once(loop, 0);
    ck_assert_int_ge(new_owner_runs, 1);
    for (int i = 0; i < 2; i++) {
        tw_loop_unwatch(loop, batch.fds[i][0]);
        close(batch.fds[i][0]);
        close(batch.fds[i][1]);
    }
    close(quiet[0]);
    close(quiet[1]);
}
END_TEST

static int io_runs;
static unsigned io_events;

static void io_cb(tw_loop_t *l, int fd, unsigned events, void *arg)
{
    io_runs++;
    io_events |= events;
}

START_TEST(test_masks)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_uint_eq(tw_loop_events(loop, sv[0]), 0);
    ck_assert_int_eq(tw_loop_set_events(loop, sv[0], TW_EV_READ), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(tw_loop_unwatch(loop, sv[0]), -1);
    ck_assert_int_eq(errno, ENOENT);

    io_runs = 0;
    io_events = 0;
    ck_assert_int_eq(tw_loop_watch(loop, sv[0], TW_EV_WRITE, io_cb, NULL), 0);
    ck_assert_uint_eq(tw_loop_events(loop, sv[0]), TW_EV_WRITE);
    tw_loop_run_once(loop, 100);
    ck_assert_int_eq(io_runs, 1);
    ck_assert_uint_eq(io_events, TW_EV_WRITE);

    /* Silent: registered, but nothing wakes it, not even a hang-up. */
    ck_assert_int_eq(tw_loop_set_events(loop, sv[0], 0), 0);
    ck_assert_uint_eq(tw_loop_events(loop, sv[0]), 0);
    close(sv[1]);
    io_runs = 0;
    ck_assert_int_eq(tw_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(io_runs, 0);

    /* Back on: the hang-up is a readable event. */
    io_events = 0;
    ck_assert_int_eq(tw_loop_set_events(loop, sv[0], TW_EV_READ), 0);
    tw_loop_run_once(loop, 100);
    ck_assert_int_eq(io_runs, 1);
    ck_assert(io_events & TW_EV_READ);

    /* Re-watching replaces callback and mask. */
    ck_assert_int_eq(tw_loop_watch(loop, sv[0], TW_EV_READ | TW_EV_WRITE, io_cb, NULL), 0);
    ck_assert_uint_eq(tw_loop_events(loop, sv[0]), TW_EV_READ | TW_EV_WRITE);
    ck_assert_int_eq(tw_loop_unwatch(loop, sv[0]), 0);
    ck_assert_uint_eq(tw_loop_events(loop, sv[0]), 0);
    close(sv[0]);
}
END_TEST

START_TEST(test_hangup_wakes_both_directions)
{
    /* A socket whose send buffer is full (not writable) and whose peer
     * then resets: EPOLLERR/EPOLLHUP must reach the write side too. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int one = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &one, sizeof one);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    char buf[4096] = {0};
    while (write(sv[0], buf, sizeof buf) > 0) {
    }
    io_runs = 0;
    io_events = 0;
    ck_assert_int_eq(tw_loop_watch(loop, sv[0], TW_EV_WRITE, io_cb, NULL), 0);
    ck_assert_int_eq(tw_loop_run_once(loop, 0), 0); /* not writable */
    close(sv[1]);
    for (int i = 0; i < 10 && !io_runs; i++)
        tw_loop_run_once(loop, 50);
    ck_assert_int_ge(io_runs, 1);
    ck_assert(io_events & TW_EV_WRITE);
    tw_loop_unwatch(loop, sv[0]);
    close(sv[0]);
}
END_TEST

static void accept_cb(tw_loop_t *l, int fd, unsigned events, void *arg)
{
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0)
        close(c);
    (*(int *)arg)++;
}

START_TEST(test_watch_exclusive)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(ls, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &alen);
    ck_assert_int_eq(listen(ls, 16), 0);
    int accepted = 0;
    ck_assert_int_eq(tw_loop_watch_exclusive(loop, ls, accept_cb, &accepted), 0);
    ck_assert_uint_eq(tw_loop_events(loop, ls), TW_EV_READ);
    ck_assert_int_eq(tw_loop_set_events(loop, ls, TW_EV_READ | TW_EV_WRITE), -1);
    ck_assert_int_eq(errno, EINVAL);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    for (int i = 0; i < 10 && !accepted; i++)
        tw_loop_run_once(loop, 100);
    ck_assert_int_eq(accepted, 1);
    ck_assert_int_eq(tw_loop_unwatch(loop, ls), 0);
    close(c);
    close(ls);
}
END_TEST

START_TEST(test_cloexec)
{
    /* Every fd a loop opens (epoll, signalfd) is close-on-exec. */
    bool before[256];
    for (int fd = 0; fd < 256; fd++)
        before[fd] = fcntl(fd, F_GETFD) >= 0;
    tw_loop_t *l = tw_loop_new();
    ck_assert_int_eq(tw_loop_add_signal(l, SIGUSR2, NULL, NULL), 0);
    int found = 0;
    for (int fd = 0; fd < 256; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || before[fd])
            continue;
        found++;
        ck_assert_msg(fl & FD_CLOEXEC, "fd %d lacks FD_CLOEXEC", fd);
    }
    ck_assert_int_eq(found, 2);
    tw_loop_free(l);
}
END_TEST

/* ---- signals --------------------------------------------------------------------------------- */

static int got_usr1, got_usr2;

static void sig_cb(tw_loop_t *l, int signo, void *arg)
{
    if (signo == SIGUSR1)
        got_usr1++;
    if (signo == SIGUSR2)
        got_usr2++;
    ck_assert_ptr_eq(arg, (void *)loop);
}

START_TEST(test_signals)
{
    got_usr1 = got_usr2 = 0;
    ck_assert_int_eq(tw_loop_add_signal(loop, SIGUSR1, sig_cb, loop), 0);
    ck_assert_int_eq(tw_loop_add_signal(loop, SIGUSR2, sig_cb, loop), 0);
    ck_assert_int_eq(tw_loop_add_signal(loop, SIGKILL, sig_cb, loop), -1);
    ck_assert_int_eq(errno, EINVAL);
    raise(SIGUSR1);
    raise(SIGUSR2);
    for (int i = 0; i < 10 && !(got_usr1 && got_usr2); i++)
        tw_loop_run_once(loop, 100);
    ck_assert_int_eq(got_usr1, 1);
    ck_assert_int_eq(got_usr2, 1);

    /* Removing one keeps the other. */
    ck_assert_int_eq(tw_loop_remove_signal(loop, SIGUSR1), 0);
    ck_assert_int_eq(tw_loop_remove_signal(loop, SIGUSR1), -1);
    ck_assert_int_eq(errno, ENOENT);
    raise(SIGUSR2);
    for (int i = 0; i < 10 && got_usr2 < 2; i++)
        tw_loop_run_once(loop, 100);
    ck_assert_int_eq(got_usr2, 2);
    ck_assert_int_eq(tw_loop_remove_signal(loop, SIGUSR2), 0);

    /* And again from scratch: the signalfd is recreated. */
    ck_assert_int_eq(tw_loop_add_signal(loop, SIGUSR1, sig_cb, loop), 0);
    raise(SIGUSR1);
    for (int i = 0; i < 10 && got_usr1 < 2; i++)
        tw_loop_run_once(loop, 100);
    ck_assert_int_eq(got_usr1, 2);
    ck_assert_int_eq(tw_loop_remove_signal(loop, SIGUSR1), 0);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    ck_assert(!sigismember(&cur, SIGUSR1));
}
END_TEST

/* ---- run / stop ---------------------------------------------------------------------------------
 */

static void stop_cb(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    (*(int *)arg)++;
    tw_loop_stop(l);
}

START_TEST(test_run_and_stop)
{
    int n = 0;
    tw_timer_t t;
    tw_timer_init(&t, stop_cb, &n);
    tw_timer_start(loop, &t, 1);
    ck_assert_int_eq(tw_loop_run(loop), 0);
    ck_assert_int_eq(n, 1);
    /* A stop requested before run is not lost: run returns at once. */
    tw_loop_stop(loop);
    ck_assert_int_eq(tw_loop_run(loop), 0);
    ck_assert_int_eq(n, 1);
}
END_TEST

START_TEST(test_free_leaves_timers_idle)
{
    tw_loop_t *l = tw_loop_new();
    tw_timer_t t;
    tw_timer_init(&t, record_timer, NULL);
    tw_timer_start(l, &t, 1000);
    tw_loop_add_callback(l, count_cb, NULL);
    tw_loop_free(l);
    ck_assert(!tw_timer_active(&t));
}
END_TEST

/* The test library's clock: manual time never moves by itself, timers fire
 * when it is set past their deadline, and wall time follows it. */
static void count_fire(tw_loop_t *l, tw_timer_t *t, void *arg)
{
    (void)l;
    (void)t;
    ++*(int *)arg;
}

START_TEST(test_manual_clock)
{
    tw_loop_set_manual_clock(loop, 5000000, 1767225600 - 5);
    ck_assert_uint_eq(tw_loop_now(loop), 5000);
    ck_assert_int_eq((long)tw_loop_wall_time(loop), 1767225600);
    int hits = 0;
    tw_timer_t t;
    tw_timer_init(&t, count_fire, &hits);
    ck_assert_int_eq(tw_timer_start(loop, &t, 100), 0);
    uint64_t next = 0;
    ck_assert(tw_loop_next_deadline(loop, &next));
    ck_assert_uint_eq(next, 5100);
    for (int i = 0; i < 3; i++)
        tw_loop_run_once(loop, 0);
    ck_assert_uint_eq(tw_loop_now(loop), 5000); /* no reading of the real clock */
    ck_assert_int_eq(hits, 0);
    tw_loop_set_time_us(loop, 5099999);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(hits, 0);
    tw_loop_set_time_us(loop, 5100000);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(hits, 1);
    ck_assert(!tw_loop_next_deadline(loop, &next));
    tw_loop_set_time_us(loop, 1000); /* never backwards */
    ck_assert_uint_eq(tw_loop_clock_us(loop), 5100000);
    ck_assert_int_eq((long)tw_loop_wall_time(loop), 1767225600);
}
END_TEST

static Suite *loop_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("timers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_timers_deadline_then_start_order);
    tcase_add_test(tc, test_timer_restart_moves_it);
    tcase_add_test(tc, test_cancelled_timer_never_fires);
    tcase_add_test(tc, test_stop_due_timer_from_other_timer);
    tcase_add_test(tc, test_timer_started_in_timer_waits_an_iteration);
    tcase_add_test(tc, test_zero_timer_does_not_starve);
    tcase_add_test(tc, test_200k_timers);
    tcase_add_test(tc, test_manual_clock);
    suite_add_tcase(s, tc);

    tc = tcase_create("callbacks");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_callback_added_runs_next_iteration);
    tcase_add_test(tc, test_requeueing_callback_does_not_starve);
    tcase_add_test(tc, test_cancel_callbacks);
    tcase_add_test(tc, test_deferred_nodes);
    suite_add_tcase(s, tc);

    tc = tcase_create("fds");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_unwatch_drops_event_in_same_batch);
    tcase_add_test(tc, test_stale_event_not_delivered_to_reused_fd);
    tcase_add_test(tc, test_masks);
    tcase_add_test(tc, test_hangup_wakes_both_directions);
    tcase_add_test(tc, test_watch_exclusive);
    tcase_add_test(tc, test_cloexec);
    suite_add_tcase(s, tc);

    tc = tcase_create("signals");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_signals);
    suite_add_tcase(s, tc);

    tc = tcase_create("run");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_run_and_stop);
    tcase_add_test(tc, test_free_leaves_timers_idle);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loop_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
