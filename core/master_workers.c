/* master_workers.c — the master's side of its worker processes.
 *
 * Everything about one worker from the fork to the reaping: the child's
 * hand-over (it must drop what belongs to the master and to the other
 * generations, and keep the signals that arrive before its own signalfd
 * exists), the control channel on which it reports READY, ERROR or its
 * status numbers, and what its death means — a failed start, a crash to
 * count and respawn with back-off, or the end of a drain. What a worker
 * does once it runs is worker.c's; this file never runs plugin code. */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Sanitizer builds check a worker for leaks when it stops normally (see
 * worker_exit). */
#if defined(__SANITIZE_ADDRESS__)
#define TW_WORKER_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define TW_WORKER_LEAK_CHECK 1
#endif
#endif
#ifdef TW_WORKER_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

#include "master_internal.h"
#include "twister/log.h"
#include "worker.h"

/* A worker that dies sooner than this after its start counts as crashing
 * at start-up; its respawn backs off exponentially. */
#define QUICK_DEATH_MS 2000
#define RESPAWN_MAX_DELAY_MS 30000
/* A respawned worker of the first generation that fails to start this
 * many times in a row (with the back-off in between, about 3 s in all)
 * ends the server: there is no older generation to fall back on, and a
 * master that respawns forever hides the failure from its supervisor. */
#define FIRST_GENERATION_START_FAILURES_MAX 5

worker_t *tw_master_find_worker(master_t *m, pid_t pid)
{
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->pid == pid)
            return w;
    return NULL;
}

void tw_master_unlink_worker(master_t *m, worker_t *dead)
{
    for (worker_t **p = &m->workers; *p; p = &(*p)->next) {
        if (*p == dead) {
            *p = dead->next;
            break;
        }
    }
    if (dead->control_fd >= 0) {
        tw_loop_unwatch(m->loop, dead->control_fd);
        close(dead->control_fd);
    }
    free(dead);
}

void tw_master_signal_generation(master_t *m, gen_t *ge, int sig)
{
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->gen == ge)
            kill(w->pid, sig);
}

static void control_readable(tw_loop_t *loop, int fd, unsigned events, void *arg);

/* Signals that reach a freshly forked worker while it hands over from the
 * master's signal handling to its own (see child_close_master_state). Only
 * the child writes it, between fork and tw_worker_main. */
static volatile sig_atomic_t handover_caught[_NSIG];

static void handover_catch(int signo)
{
    handover_caught[signo] = 1;
}

/* In a forked worker: closes the snapshots and unmaps the crash slots of a
 * generation it does not belong to. */
static void child_drop_generation(gen_t *other)
{
    tw_generation_t *g = other->g;
    for (size_t i = 0; i < g->snapshot_count; i++) {
        if (g->snapshots[i].memfd >= 0)
            close(g->snapshots[i].memfd);
        g->snapshots[i].memfd = -1;
    }
    if (other->slots)
        munmap(other->slots, sizeof(crash_slot_t) * g->workers);
    other->slots = NULL;
}

/* In the child right after fork: drop everything that belongs to the master
 * so that the worker starts clean. *caught receives the signals that
 * arrived meanwhile, for the worker to take once its own loop listens. */
static void child_close_master_state(master_t *m, gen_t *ge, sigset_t *caught)
{
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->control_fd >= 0)
            close(w->control_fd);
    if (m->control_fd >= 0)
        close(m->control_fd);
    for (waiter_t *w = m->waiters_now; w; w = w->next)
        close(w->fd);
    for (waiter_t *w = m->waiters_next; w; w = w->next)
        close(w->fd);
    for (waiter_t *w = m->status_clients; w; w = w->next)
        close(w->fd);
    for (control_client_t *c = m->control_clients; c; c = c->next)
        close(c->fd);
    for (size_t i = 0; i < m->listener_count; i++)
        if (!tw_master_generation_uses_fd(ge, m->listeners[i].fd))
            close(m->listeners[i].fd);
    /* The other generations' module snapshots and crash slots: a worker
     * has no business with another generation's code, and must not be
     * able to scribble over its crash records. */
    gen_t *others[2] = {m->serving, m->starting};
    for (size_t i = 0; i < 2; i++)
        if (others[i] && others[i] != ge)
            child_drop_generation(others[i]);
    for (gen_t *d = m->draining; d; d = d->next)
        if (d != ge)
            child_drop_generation(d);

    /* The master's signals are blocked (its loop reads them from a
     * signalfd) and must stay blocked until the worker's own signalfd
     * exists: SIGUSR1 or SIGQUIT with its default action would kill the
     * worker, and the reload it belongs to would fail. Freeing the master's
     * loop unblocks them, so catch what comes in meanwhile (a pending one
     * arrives at once), block them again, and hand the caught ones over. */
    sigset_t blocked;
    sigprocmask(SIG_BLOCK, NULL, &blocked);
    struct sigaction catch = {.sa_handler = handover_catch}, dfl = {.sa_handler = SIG_DFL};
    sigfillset(&catch.sa_mask);
    for (int signo = 1; signo < _NSIG; signo++)
        if (sigismember(&blocked, signo) == 1)
            sigaction(signo, &catch, NULL);
    tw_loop_free(m->loop);
    sigprocmask(SIG_SETMASK, &blocked, NULL);
    sigemptyset(caught);
    for (int signo = 1; signo < _NSIG; signo++) {
        if (sigismember(&blocked, signo) != 1)
            continue;
        sigaction(signo, &dfl, NULL);
        if (handover_caught[signo])
            sigaddset(caught, signo);
    }
    signal(SIGPIPE, SIG_IGN);
}

/* Ends a worker process. It leaves through _exit, since exit would run
 * the master's atexit handlers and flush stdio buffers it inherited from
 * the master; but that skips LeakSanitizer's check at exit, so in a
 * sanitizer build the check runs here (a leak report makes the worker
 * exit with LeakSanitizer's status instead of status). */
static _Noreturn void worker_exit(int status)
{
#ifdef TW_WORKER_LEAK_CHECK
    __lsan_do_leak_check();
#endif
    _exit(status);
}

/* worker_connections, lowered to what the open-files limit allows: each
 * connection needs its socket and, while it sends a file, that file. */
unsigned tw_master_connection_cap(const master_t *m, const tw_generation_t *g)
{
    unsigned want = tw_generation_worker_connections(g);
    unsigned long room = m->fd_limit > 128 ? (m->fd_limit - 64) / 2 : 32;
    return want < room ? want : (unsigned)room;
}

int tw_master_spawn_worker(master_t *m, gen_t *ge, unsigned index)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        tw_log_error("socketpair: %s", strerror(errno));
        return -1;
    }
    memset(&ge->slots[index].activity, 0, sizeof ge->slots[index].activity);
    ge->slots[index].report.text[0] = '\0';
    pid_t pid = fork();
    if (pid < 0) {
        tw_log_error("fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        tw_worker_params_t params = {
            .gen = ge->g,
            .index = index,
            .control_fd = sv[1],
            .activity = &ge->slots[index].activity,
            .crash_report = &ge->slots[index].report,
            .connection_cap = tw_master_connection_cap(m, ge->g),
        };
        child_close_master_state(m, ge, &params.handover_signals);
        const char *user = tw_generation_user(ge->g);
        if (user && geteuid() == 0) {
            struct passwd *pw = getpwnam(user);
            if (pw) {
                params.drop_privileges = true;
                params.uid = pw->pw_uid;
                params.gid = pw->pw_gid;
            }
        }
        worker_exit(tw_worker_main(&params));
    }
    close(sv[1]);
    worker_t *w = calloc(1, sizeof *w);
    if (!w) {
        kill(pid, SIGKILL);
        close(sv[0]);
        return -1;
    }
    w->master = m;
    w->gen = ge;
    w->pid = pid;
    w->index = index;
    w->control_fd = sv[0];
    w->state = W_STARTING;
    w->started_ms = tw_loop_now(m->loop);
    w->next = m->workers;
    m->workers = w;
    ge->alive++;
    tw_loop_watch(m->loop, sv[0], TW_EV_READ, control_readable, w);
    return 0;
}

static void control_readable(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    worker_t *w = arg;
    char msg[4096];
    ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* The worker is gone or going; SIGCHLD does the bookkeeping. */
        tw_loop_unwatch(loop, fd);
        close(fd);
        w->control_fd = -1;
        return;
    }
    msg[n] = '\0';
    gen_t *ge = w->gen;
    unsigned long connections, moved, kept, closed;
    unsigned long long requests;
    if (sscanf(msg, "HANDOFF %lu %lu %lu", &moved, &kept, &closed) == 3) {
        tw_master_handoff_reported(w, moved, kept, closed);
    } else if (sscanf(msg, "STATUS %lu %llu", &connections, &requests) == 2) {
        w->connections = connections;
        w->requests = requests;
        if (w->status_serial != w->master->status_serial) {
            w->status_serial = w->master->status_serial;
            tw_master_status_answered(w->master);
        }
    } else if (strcmp(msg, "READY") == 0) {
        if (w->state == W_STARTING) {
            w->state = W_READY;
            ge->start_failures[w->index] = 0;
            ge->error[0] = '\0';
            ge->ready++;
            if (ge->state == GEN_STARTING && ge->ready == ge->g->workers)
                tw_master_generation_ready(ge);
        }
    } else if (strncmp(msg, "ERROR ", 6) == 0) {
        if (ge->state == GEN_STARTING) {
            tw_master_gen_failed(ge, msg + 6);
        } else {
            tw_log_error("worker %u of generation %u failed to start: %s", w->index, ge->g->number,
                         msg + 6);
            snprintf(ge->error, sizeof ge->error, "%.2000s", msg + 6);
        }
    }
}

void tw_master_respawn_fire(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    respawn_t *r = arg;
    master_t *m = r->gen->master;
    (void)loop;
    (void)t;
    if (m->serving == r->gen && !m->stopping && tw_master_spawn_worker(m, r->gen, r->index) != 0)
        tw_timer_start(m->loop, &r->timer, 1000);
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (SIG%s, %s)%s", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
}

/* Logs the backtrace a crashed worker left in its report slot, one log
 * line per frame, right after the line that says what it was doing. */
static void log_crash_report(gen_t *ge, unsigned index, pid_t pid)
{
    tw_crash_report_t *r = &ge->slots[index].report;
    /* The dead worker wrote the slot; it cannot change any more, but it
     * may have been cut short: never read past the end. */
    r->text[sizeof r->text - 1] = '\0';
    if (!r->text[0])
        return;
    char *line = r->text;
    bool first = true;
    while (*line) {
        size_t len = strcspn(line, "\n");
        if (first)
            tw_log_error("worker %u (pid %d) %.*s", index, (int)pid, (int)len, line);
        else
            tw_log_error("%.*s", (int)len, line);
        first = false;
        line += len;
        if (*line == '\n')
            line++;
    }
    r->text[0] = '\0';
}

static void worker_exited(master_t *m, worker_t *w, int status)
{
    gen_t *ge = w->gen;
    char how[128];
    describe_status(status, how, sizeof how);
    bool abnormal = WIFSIGNALED(status) || WEXITSTATUS(status) != 0;
    unsigned index = w->index;
    int state = w->state;
    pid_t pid = w->pid;
    uint64_t lived = tw_loop_now(m->loop) - w->started_ms;
    tw_counter_add(&tw_master_stats(m)->workers_reaped, 1);
    /* What a worker said just before it exited — why it failed to start,
     * or a draining worker's hand-off report — may still wait in its
     * control socket: SIGCHLD can come before the loop read it. */
    char peek;
    for (int i = 0;
         i < 16 && w->control_fd >= 0 && recv(w->control_fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
         i++)
        control_readable(m->loop, w->control_fd, TW_EV_READ, w);
    ge->alive--;
    tw_master_unlink_worker(m, w);

    if (ge->state == GEN_STARTING) {
        tw_counter_add(&tw_master_stats(m)->worker_start_failures, 1);
        char why[2048];
        char activity[1024], hook[1024];
        tw_activity_describe(&ge->slots[index].activity, activity, sizeof activity);
        /* configure and register_phases crashes read as -t reports them;
         * init_worker's keep the wording the log always had for them. */
        if (WIFSIGNALED(status) && strcmp(ge->slots[index].activity.phase, "init_worker") != 0 &&
            tw_activity_describe_hook(&ge->slots[index].activity, hook, sizeof hook))
            snprintf(why, sizeof why, "%s crashed with SIG%s (worker %u, during start-up)", hook,
                     sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?", index);
        else
            snprintf(why, sizeof why, "worker %u exited during start-up with %s%s%s", index, how,
                     activity[0] ? " " : "", activity);
        if (WIFSIGNALED(status))
            log_crash_report(ge, index, pid);
        tw_master_gen_failed(ge, why);
    } else if (ge->state == GEN_SERVING && !m->stopping) {
        char activity[1024];
        tw_activity_describe(&ge->slots[index].activity, activity, sizeof activity);
        if (abnormal || state != W_DRAINING) {
            tw_counter_add(state == W_STARTING   ? &tw_master_stats(m)->worker_start_failures
                           : WIFSIGNALED(status) ? &tw_master_stats(m)->worker_crashes
                                                 : &tw_master_stats(m)->worker_exits,
                           1);
            tw_log_error("worker %u (pid %d) of generation %u crashed with %s%s%s; respawning",
                         index, (int)pid, ge->g->number, how, activity[0] ? " " : "", activity);
        }
        if (WIFSIGNALED(status)) {
            log_crash_report(ge, index, pid);
            if (tw_master_count_crash(m, ge, index, pid, WTERMSIG(status))) {
                tw_master_maybe_finish_stop(m);
                return;
            }
        }
        if (state == W_STARTING &&
            ++ge->start_failures[index] >= FIRST_GENERATION_START_FAILURES_MAX &&
            ge->g->number == 1) {
            /* The reason: what the worker said, or how it died. */
            char why[2048];
            if (!WIFSIGNALED(status) && ge->error[0])
                snprintf(why, sizeof why, "%s", ge->error);
            else
                snprintf(why, sizeof why, "%s%s%s", how, activity[0] ? " " : "", activity);
            tw_log_error("worker %u of generation 1 failed to start %u times in a row (last: "
                         "%s); giving up: stopping the server",
                         index, ge->start_failures[index], why);
            tw_master_begin_stop(m, SIGTERM);
            m->exit_status = 1;
            tw_master_maybe_finish_stop(m);
            return;
        }
        /* Back off when a worker keeps dying right after it starts. */
        unsigned delay = 0;
        if (lived < QUICK_DEATH_MS) {
            unsigned k = ++ge->quick_deaths[index];
            delay = 100u << (k > 8 ? 8 : k);
            if (delay > RESPAWN_MAX_DELAY_MS)
                delay = RESPAWN_MAX_DELAY_MS;
        } else {
            ge->quick_deaths[index] = 0;
        }
        if (delay == 0 && tw_master_spawn_worker(m, ge, index) == 0)
            return;
        tw_timer_start(m->loop, &ge->respawns[index].timer, delay ? delay : 1000);
    } else if (ge->state == GEN_DRAINING) {
        if (abnormal && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            tw_log_warn("draining worker %u of generation %u ended with %s", index, ge->g->number,
                        how);
        if (ge->alive == 0) {
            tw_log_info("generation %u has drained", ge->g->number);
            for (gen_t **p = &m->draining; *p; p = &(*p)->next) {
                if (*p == ge) {
                    *p = ge->next;
                    break;
                }
            }
            tw_master_free_gen(ge);
            tw_master_close_unused_listeners(m);
            tw_master_collect_zones(m);
        }
    }
    tw_master_maybe_finish_stop(m);
}

void tw_master_on_sigchld(tw_loop_t *loop, int signo, void *arg)
{
    master_t *m = arg;
    (void)loop;
    (void)signo;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        worker_t *w = tw_master_find_worker(m, pid);
        if (w)
            worker_exited(m, w, status);
    }
}
