/* master.c — the master process.
 *
 * The master is small and trusted: it parses configs, snapshots module
 * files, owns the listening sockets and forks workers. It never dlopens a
 * plugin, so no plugin bug can take it down. Generations:
 *
 *   STARTING  forked, waiting for every worker to report READY (bounded)
 *   SERVING   the one current generation
 *   DRAINING  told to finish in-flight requests and exit (SIGQUIT)
 *
 * A reload builds a new generation next to the serving one; only when all
 * its workers are READY does the old one drain. If any worker fails (an
 * init error, a crash, the start-up timeout) the new generation is killed
 * and the old one never noticed. Signals arrive through the loop
 * (signalfd), so nothing here runs in signal context. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
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

#include "activity.h"
#include "config.h"
#include "control_client.h"
#include "crash_report.h"
#include "generation.h"
#include "listener.h"
#include "log_setup.h"
#include "os.h"
#include "settings.h" /* tw_crash_action_t only: settings are read through generation.h */
#include "twister/log.h"
#include "twister/loop.h"
#include "worker.h"
#include "zone.h"

enum {
    GEN_STARTING,
    GEN_SERVING,
    GEN_DRAINING
};
enum {
    W_STARTING,
    W_READY,
    W_DRAINING
};

/* How long the workers of a generation that failed to start get to run
 * their exit_worker hooks after SIGTERM before they are killed. */
#define ABANDON_GRACE_MS 2000
/* A worker that dies sooner than this after its start counts as crashing
 * at start-up; its respawn backs off exponentially. */
#define QUICK_DEATH_MS 2000
#define RESPAWN_MAX_DELAY_MS 30000
/* A respawned worker of the first generation that fails to start this
 * many times in a row (with the back-off in between, about 3 s in all)
 * ends the server: there is no older generation to fall back on, and a
 * master that respawns forever hides the failure from its supervisor. */
#define FIRST_GENERATION_START_FAILURES_MAX 5

typedef struct master master_t;
typedef struct gen gen_t;

typedef struct worker {
    struct worker *next;
    master_t *master;
    gen_t *gen;
    pid_t pid;
    unsigned index;
    int control_fd;
    int state;
    uint64_t started_ms;
    /* Its answer to the latest status query (`-s status`). */
    unsigned long status_serial; /* the query it answered */
    unsigned long connections;
    unsigned long long requests;
} worker_t;

/* A respawn waiting for its back-off delay. */
typedef struct respawn {
    tw_timer_t timer;
    gen_t *gen;
    unsigned index;
} respawn_t;

/* What a worker leaves behind for the master when it dies: what it was
 * doing (activity.h) and its stack (crash_report.h). One shared mapping
 * per generation holds every worker's. */
typedef struct {
    tw_activity_t activity;
    tw_crash_report_t report;
} crash_slot_t;

/* How many of a module's crashes the master keeps to show (the log and
 * `-s status`); the budget itself counts them all. */
#define CRASH_RECORDS_KEPT 8

/* One crash the master attributed to a module, from the crash slot. */
typedef struct {
    time_t when;
    pid_t pid;
    unsigned generation;
    unsigned worker;
    int signo;
    char phase[24];
    char request[256];
} crash_record_t;

/* The crashes attributed to one module in one generation, and whether the
 * module is quarantined there. */
typedef struct {
    char module[64];
    unsigned total;       /* crashes attributed to it */
    uint64_t *recent;     /* loop times of the last crash_policy.max crashes, a ring */
    unsigned recent_len;  /* entries in use */
    unsigned recent_next; /* where the next one goes (the oldest once full) */
    crash_record_t records[CRASH_RECORDS_KEPT]; /* the latest, a ring by total */
    bool quarantined;                           /* disabled in this generation */
    unsigned quarantined_by;                    /* the generation that started without it */
    time_t quarantined_at;
} module_crashes_t;

struct gen {
    gen_t *next;
    master_t *master;
    tw_generation_t *g;
    int state;
    unsigned ready;
    unsigned alive;
    crash_slot_t *slots;      /* one per worker index, MAP_SHARED */
    unsigned *quick_deaths;   /* per worker index, for back-off */
    unsigned *start_failures; /* per worker index: respawns in a row that never got READY */
    respawn_t *respawns;      /* per worker index */
    tw_timer_t timer;         /* start-up timeout, then drain backstop */
    bool quarantine;          /* started by the master to quarantine a module, not a reload */
    uint64_t started_ms;
    module_crashes_t *crashes; /* per module that crashed or is quarantined here */
    size_t crash_count;
    char error[2048];
};

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
    int fd;
} listener_t;

/* A `twister -s reload` client waiting for the outcome. */
typedef struct waiter {
    struct waiter *next;
    int fd;
} waiter_t;

/* How long a control client may take to send its command. `twister -s`
 * sends it right after connecting; a client that does not is stuck or
 * hostile, and each one holds a descriptor of the master. */
#define CONTROL_COMMAND_TIMEOUT_MS 5000
/* The longest command line a control client may send. */
#define CONTROL_COMMAND_MAX 64

/* A control client that has connected and not sent its whole command. */
typedef struct control_client {
    struct control_client *next;
    master_t *master;
    int fd;
    tw_timer_t timer; /* CONTROL_COMMAND_TIMEOUT_MS from the connect */
    size_t len;
    char command[CONTROL_COMMAND_MAX];
} control_client_t;

struct master {
    tw_loop_t *loop;
    const char *config_path;
    char config_realpath[PATH_MAX]; /* told to `-s reload`, which may name another file */
    const char *module_dir;
    unsigned generation_counter;
    gen_t *serving;
    gen_t *starting;
    gen_t *draining;   /* list */
    worker_t *workers; /* list */
    listener_t *listeners;
    size_t listener_count;
    bool reload_again;
    /* A module's budget ran out while a reload was starting: quarantine
     * it once the reload is over, unless the reload replaced its
     * generation. */
    gen_t *quarantine_from;
    char quarantine_module[64];
    waiter_t *waiters_now;      /* answered by the reload in progress */
    waiter_t *waiters_next;     /* arrived during it: answered by the next */
    bool first_generation_done; /* what ends later is a reload */
    char last_reload[2300];     /* "OK generation 3" / "ERROR ...", for -s status */
    time_t last_reload_at;
    int control_fd;
    char control_path[PATH_MAX];
    control_client_t *control_clients; /* list */
    char pid_path[PATH_MAX];
    bool stopping;
    uint64_t started_ms;
    /* The newest generation that failed to start, for `-s status`. */
    unsigned failed_number;
    time_t failed_at;
    char failed_why[1024];
    /* The status query in flight: its clients, how many workers have yet
     * to answer, and the bound on waiting for them. */
    waiter_t *status_clients;
    unsigned long status_serial;
    unsigned status_pending;
    tw_timer_t status_timer;
    int exit_status;
    unsigned long fd_limit; /* RLIMIT_NOFILE in force, for connection caps */
    tw_timer_t stop_timer;
    tw_zone_region_t *zones; /* shared zones, mapped before the first fork */
};

static void start_generation(master_t *m);
static void gen_failed(gen_t *ge, const char *why);
static void begin_stop(master_t *m, int sig);

/* The server's counters in the shared-zone region (the master writes only
 * these core-owned words there, and never runs plugin code on them). */
static tw_server_stats_t *stats(master_t *m)
{
    return tw_zone_region_stats(m->zones);
}

/* Frees the shared zones that no live generation attaches any more. */
static void collect_zones(master_t *m)
{
    unsigned oldest = m->generation_counter + 1;
    gen_t *live[2] = {m->serving, m->starting};
    for (size_t i = 0; i < 2; i++)
        if (live[i] && live[i]->g->number < oldest)
            oldest = live[i]->g->number;
    for (gen_t *d = m->draining; d; d = d->next)
        if (d->g->number < oldest)
            oldest = d->g->number;
    tw_zone_region_collect(m->zones, oldest);
}

/* ---- small helpers ---------------------------------------------------- */

static void answer_waiters(waiter_t **list, const char *text)
{
    for (waiter_t *w = *list, *next; w; w = next) {
        next = w->next;
        ssize_t ignored = send(w->fd, text, strlen(text), MSG_NOSIGNAL);
        (void)ignored;
        close(w->fd);
        free(w);
    }
    *list = NULL;
}

static worker_t *find_worker(master_t *m, pid_t pid)
{
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->pid == pid)
            return w;
    return NULL;
}

static void unlink_worker(master_t *m, worker_t *dead)
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

static void signal_generation(master_t *m, gen_t *ge, int sig)
{
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->gen == ge)
            kill(w->pid, sig);
}

static void free_gen(gen_t *ge)
{
    master_t *m = ge->master;
    tw_timer_stop(m->loop, &ge->timer);
    for (unsigned i = 0; i < ge->g->workers; i++)
        tw_timer_stop(m->loop, &ge->respawns[i].timer);
    if (ge->slots)
        munmap(ge->slots, sizeof(crash_slot_t) * ge->g->workers);
    free(ge->quick_deaths);
    free(ge->start_failures);
    free(ge->respawns);
    for (size_t i = 0; i < ge->crash_count; i++)
        free(ge->crashes[i].recent);
    free(ge->crashes);
    if (m->quarantine_from == ge)
        m->quarantine_from = NULL;
    tw_generation_free(ge->g);
    free(ge);
}

/* ---- listeners: matched by address across generations ------------------- */

static int listener_find(master_t *m, const struct sockaddr *a, socklen_t len)
{
    for (size_t i = 0; i < m->listener_count; i++)
        if (tw_sockaddr_equal((struct sockaddr *)&m->listeners[i].addr, m->listeners[i].len, a,
                              len))
            return (int)i;
    return -1;
}

/* Opens the listeners g needs that are not open yet and fills g's fds. New
 * ones are opened before the generation forks; nothing is rebound. */
static int open_listeners(master_t *m, tw_generation_t *g, char *err, size_t errlen)
{
    size_t n = tw_generation_listener_count(g);
    g->listen_fds = calloc(n ? n : 1, sizeof(int));
    if (!g->listen_fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        socklen_t len;
        const struct sockaddr *a = tw_generation_listener(g, i, &len);
        int idx = listener_find(m, a, len);
        if (idx < 0) {
            int fd = tw_listener_open(a, len, tw_generation_backlog(g), err, errlen);
            if (fd < 0)
                return -1;
            listener_t *grown = realloc(m->listeners, (m->listener_count + 1) * sizeof *grown);
            if (!grown) {
                close(fd);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            m->listeners = grown;
            listener_t *l = &m->listeners[m->listener_count];
            memset(l, 0, sizeof *l);
            memcpy(&l->addr, a, len);
            l->len = len;
            l->fd = fd;
            idx = (int)m->listener_count++;
            char text[80];
            tw_log_info("listening on %s", tw_sockaddr_text(a, text, sizeof text));
        }
        g->listen_fds[i] = m->listeners[idx].fd;
    }
    return 0;
}

static bool generation_uses_fd(const gen_t *ge, int fd)
{
    if (!ge)
        return false;
    size_t n = tw_generation_listener_count(ge->g);
    for (size_t i = 0; i < n; i++)
        if (ge->g->listen_fds && ge->g->listen_fds[i] == fd)
            return true;
    return false;
}

/* Closes listeners that no live generation uses any more. */
static void close_unused_listeners(master_t *m)
{
    for (size_t i = 0; i < m->listener_count;) {
        int fd = m->listeners[i].fd;
        bool used = generation_uses_fd(m->serving, fd) || generation_uses_fd(m->starting, fd);
        for (gen_t *d = m->draining; d && !used; d = d->next)
            used = generation_uses_fd(d, fd);
        if (used) {
            i++;
            continue;
        }
        char text[80];
        tw_log_info("closing listener %s (no longer configured)",
                    tw_sockaddr_text((struct sockaddr *)&m->listeners[i].addr, text, sizeof text));
        close(fd);
        m->listeners[i] = m->listeners[--m->listener_count];
    }
}

/* ---- workers -------------------------------------------------------------- */

static void control_readable(tw_loop_t *loop, int fd, unsigned events, void *arg);
static void status_answered(master_t *m);

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
        if (!generation_uses_fd(ge, m->listeners[i].fd))
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
static unsigned connection_cap(const master_t *m, const tw_generation_t *g)
{
    unsigned want = tw_generation_worker_connections(g);
    unsigned long room = m->fd_limit > 128 ? (m->fd_limit - 64) / 2 : 32;
    return want < room ? want : (unsigned)room;
}

static int spawn_worker(master_t *m, gen_t *ge, unsigned index)
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
            .connection_cap = connection_cap(m, ge->g),
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

static void generation_ready(gen_t *ge);

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
    unsigned long connections;
    unsigned long long requests;
    if (sscanf(msg, "STATUS %lu %llu", &connections, &requests) == 2) {
        w->connections = connections;
        w->requests = requests;
        if (w->status_serial != w->master->status_serial) {
            w->status_serial = w->master->status_serial;
            status_answered(w->master);
        }
    } else if (strcmp(msg, "READY") == 0) {
        if (w->state == W_STARTING) {
            w->state = W_READY;
            ge->start_failures[w->index] = 0;
            ge->error[0] = '\0';
            ge->ready++;
            if (ge->state == GEN_STARTING && ge->ready == ge->g->workers)
                generation_ready(ge);
        }
    } else if (strncmp(msg, "ERROR ", 6) == 0) {
        if (ge->state == GEN_STARTING) {
            gen_failed(ge, msg + 6);
        } else {
            tw_log_error("worker %u of generation %u failed to start: %s", w->index, ge->g->number,
                         msg + 6);
            snprintf(ge->error, sizeof ge->error, "%.2000s", msg + 6);
        }
    }
}

static void respawn_fire(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    respawn_t *r = arg;
    master_t *m = r->gen->master;
    (void)loop;
    (void)t;
    if (m->serving == r->gen && !m->stopping && spawn_worker(m, r->gen, r->index) != 0)
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

static void maybe_finish_stop(master_t *m);

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

/* ---- crash budgets and quarantine -------------------------------------------- */

static void launch_generation(master_t *m, tw_generation_t *g, const gen_t *quarantine_of,
                              const char *module);

static module_crashes_t *module_crashes(gen_t *ge, const char *module)
{
    for (size_t i = 0; i < ge->crash_count; i++)
        if (strcmp(ge->crashes[i].module, module) == 0)
            return &ge->crashes[i];
    module_crashes_t *grown = realloc(ge->crashes, (ge->crash_count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    ge->crashes = grown;
    module_crashes_t *mc = &ge->crashes[ge->crash_count++];
    memset(mc, 0, sizeof *mc);
    snprintf(mc->module, sizeof mc->module, "%s", module);
    return mc;
}

static void format_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "worker 0 (pid 4242) of generation 1, SIGSEGV, phase CONTENT, request
 * 'GET /crash HTTP/1.1', at 2026-12-02T07:10:00Z" */
static void describe_record(const crash_record_t *r, char *buf, size_t len)
{
    char when[32];
    format_time(r->when, when, sizeof when);
    const char *sig = sigabbrev_np(r->signo);
    snprintf(buf, len, "worker %u (pid %d) of generation %u, SIG%s, phase %s%s%s%s, at %s",
             r->worker, (int)r->pid, r->generation, sig ? sig : "?", r->phase,
             r->request[0] ? ", request '" : "", r->request, r->request[0] ? "'" : "", when);
}

static void log_records(const module_crashes_t *mc)
{
    unsigned kept = mc->total < CRASH_RECORDS_KEPT ? mc->total : CRASH_RECORDS_KEPT;
    for (unsigned k = mc->total - kept; k < mc->total; k++) {
        char text[512];
        describe_record(&mc->records[k % CRASH_RECORDS_KEPT], text, sizeof text);
        tw_log_error("  crash %u of module %s: %s", k + 1, mc->module, text);
    }
}

/* Starts a generation from ge's config read in which module is disabled
 * too. ge keeps serving until it is READY. */
static void start_quarantine(master_t *m, gen_t *ge, const char *module)
{
    if (m->starting && m->starting->quarantine && tw_generation_disabled(m->starting->g, module))
        return; /* on its way already */
    if (m->starting) {
        tw_log_error("a reload is starting: quarantining module %s waits for its outcome", module);
        m->quarantine_from = ge;
        snprintf(m->quarantine_module, sizeof m->quarantine_module, "%s", module);
        return;
    }
    const char *names[ge->g->disabled_count + 1];
    for (size_t i = 0; i < ge->g->disabled_count; i++)
        names[i] = ge->g->disabled[i];
    names[ge->g->disabled_count] = module;
    tw_generation_t *g = tw_generation_quarantine(ge->g, m->generation_counter + 1, names,
                                                  ge->g->disabled_count + 1);
    if (!g) {
        tw_log_error("cannot quarantine module %s: %s; generation %u keeps serving", module,
                     strerror(errno), ge->g->number);
        return;
    }
    launch_generation(m, g, ge, module);
}

/* Counts a crash that the slot attributes to a module against the
 * module's budget and applies crash_policy when the budget is spent.
 * Returns true if the server is stopping because of it. */
static bool count_crash(master_t *m, gen_t *ge, unsigned index, pid_t pid, int signo)
{
    tw_activity_t a;
    memcpy(&a, &ge->slots[index].activity, sizeof a);
    a.module[sizeof a.module - 1] = a.phase[sizeof a.phase - 1] = '\0';
    a.request[sizeof a.request - 1] = '\0';
    if (!a.module[0])
        return false; /* not in plugin code: nobody's budget */
    module_crashes_t *mc = module_crashes(ge, a.module);
    unsigned max = tw_generation_crash_max(ge->g);
    if (!mc || (!mc->recent && !(mc->recent = calloc(max, sizeof *mc->recent))))
        return false;
    crash_record_t *r = &mc->records[mc->total++ % CRASH_RECORDS_KEPT];
    *r = (crash_record_t){.when = time(NULL),
                          .pid = pid,
                          .generation = ge->g->number,
                          .worker = index,
                          .signo = signo};
    memcpy(r->phase, a.phase, sizeof r->phase);
    memcpy(r->request, a.request, sizeof r->request);

    uint64_t now = tw_loop_now(m->loop), within = tw_generation_crash_within_ms(ge->g);
    mc->recent[mc->recent_next] = now;
    mc->recent_next = (mc->recent_next + 1) % max;
    if (mc->recent_len < max)
        mc->recent_len++;
    if (mc->recent_len < max || now - mc->recent[mc->recent_next % max] > within)
        return false;
    /* Spent: the next budget starts empty. */
    mc->recent_len = 0;
    mc->recent_next = 0;
    static const char *const actions[] = {"quarantine", "restart", "stop"};
    int action = tw_generation_crash_action(ge->g);
    tw_log_error("module %s crashed workers %u times within %llu s (crash_policy: max %u, "
                 "within %llu s, action %s)",
                 mc->module, max, (unsigned long long)(within / 1000), max,
                 (unsigned long long)(within / 1000), actions[action]);
    log_records(mc);
    switch (action) {
    case TW_CRASH_RESTART:
        tw_log_error("module %s: respawning its workers as for any crash (crash_policy action "
                     "restart)",
                     mc->module);
        return false;
    case TW_CRASH_STOP:
        tw_log_error("module %s: stopping the server (crash_policy action stop)", mc->module);
        begin_stop(m, SIGQUIT);
        m->exit_status = 1;
        return true;
    default:
        tw_log_error("QUARANTINE of module %s: starting a generation without it; its routes "
                     "will answer 503 and its phase handlers and filters are skipped until the "
                     "next successful reload",
                     mc->module);
        start_quarantine(m, ge, mc->module);
        return false;
    }
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
    tw_counter_add(&stats(m)->workers_reaped, 1);
    /* A worker that said why it failed and exited: SIGCHLD may come before
     * the loop read its message, which says more than its exit status. */
    char peek;
    while (ge->state == GEN_STARTING && w->control_fd >= 0 &&
           recv(w->control_fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
        control_readable(m->loop, w->control_fd, TW_EV_READ, w);
    ge->alive--;
    unlink_worker(m, w);

    if (ge->state == GEN_STARTING) {
        tw_counter_add(&stats(m)->worker_start_failures, 1);
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
        gen_failed(ge, why);
    } else if (ge->state == GEN_SERVING && !m->stopping) {
        char activity[1024];
        tw_activity_describe(&ge->slots[index].activity, activity, sizeof activity);
        if (abnormal || state != W_DRAINING) {
            tw_counter_add(state == W_STARTING   ? &stats(m)->worker_start_failures
                           : WIFSIGNALED(status) ? &stats(m)->worker_crashes
                                                 : &stats(m)->worker_exits,
                           1);
            tw_log_error("worker %u (pid %d) of generation %u crashed with %s%s%s; respawning",
                         index, (int)pid, ge->g->number, how, activity[0] ? " " : "", activity);
        }
        if (WIFSIGNALED(status)) {
            log_crash_report(ge, index, pid);
            if (count_crash(m, ge, index, pid, WTERMSIG(status))) {
                maybe_finish_stop(m);
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
            begin_stop(m, SIGTERM);
            m->exit_status = 1;
            maybe_finish_stop(m);
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
        if (delay == 0 && spawn_worker(m, ge, index) == 0)
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
            free_gen(ge);
            close_unused_listeners(m);
            collect_zones(m);
        }
    }
    maybe_finish_stop(m);
}

static void on_sigchld(tw_loop_t *loop, int signo, void *arg)
{
    master_t *m = arg;
    (void)loop;
    (void)signo;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        worker_t *w = find_worker(m, pid);
        if (w)
            worker_exited(m, w, status);
    }
}

/* ---- generations ----------------------------------------------------------- */

static void drain_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    gen_t *ge = arg;
    (void)loop;
    (void)t;
    tw_log_warn("generation %u still has workers after the shutdown timeout; killing them",
                ge->g->number);
    signal_generation(ge->master, ge, SIGKILL);
}

/* The end of an abandoned generation's grace (see gen_failed). */
static void abandon_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    gen_t *ge = arg;
    (void)loop;
    (void)t;
    signal_generation(ge->master, ge, SIGKILL);
}

static void start_draining(master_t *m, gen_t *ge)
{
    ge->state = GEN_DRAINING;
    for (unsigned i = 0; i < ge->g->workers; i++)
        tw_timer_stop(m->loop, &ge->respawns[i].timer);
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->gen == ge)
            w->state = W_DRAINING;
    signal_generation(m, ge, SIGQUIT);
    tw_timer_init(&ge->timer, drain_timeout, ge);
    tw_timer_start(m->loop, &ge->timer, tw_generation_shutdown_ms(ge->g) + 5000);
    ge->next = m->draining;
    m->draining = ge;
    if (ge->alive == 0) {
        /* Nothing to wait for (all its workers were already gone). */
        tw_log_info("generation %u has drained", ge->g->number);
        m->draining = ge->next;
        free_gen(ge);
        return;
    }
    /* Bound how many old generations drain at once: the oldest go first. */
    unsigned count = 0, max = tw_generation_max_draining(m->serving ? m->serving->g : ge->g);
    for (gen_t *d = m->draining; d; d = d->next) {
        if (++count > max) {
            tw_log_warn("more than %u generations draining: stopping generation %u now", max,
                        d->g->number);
            signal_generation(m, d, SIGTERM);
        }
    }
}

/* The end of a generation's start, READY or not: answers the `-s reload`
 * clients waiting for it, remembers a reload's outcome for `-s status`,
 * and starts what waited for it. quarantine: the generation was the
 * master's own, to quarantine a module, not a reload. */
static void finish_reload(master_t *m, bool quarantine, const char *text)
{
    answer_waiters(&m->waiters_now, text);
    m->waiters_now = m->waiters_next;
    m->waiters_next = NULL;
    tw_os_sd_notify("READY=1");
    if (!quarantine && m->first_generation_done) {
        snprintf(m->last_reload, sizeof m->last_reload, "%.*s", (int)strcspn(text, "\n"), text);
        m->last_reload_at = time(NULL);
    }
    m->first_generation_done = true;
    if (m->stopping)
        return;
    gen_t *from = m->quarantine_from;
    m->quarantine_from = NULL;
    if (from && from == m->serving) {
        /* The reload failed: the budget that ran out meanwhile still counts. */
        start_quarantine(m, from, m->quarantine_module);
    } else if (from) {
        tw_log_info("module %s is not quarantined: the reload replaced generation %u",
                    m->quarantine_module, from->g->number);
    }
    if (m->reload_again && !m->starting) {
        m->reload_again = false;
        start_generation(m);
    }
}

/* Appends ", module X" for each quarantined module of ge to out. */
static size_t list_quarantined(const gen_t *ge, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ge->crash_count && n < len; i++)
        if (ge->crashes[i].quarantined)
            n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "", ge->crashes[i].module);
    return n;
}

static void generation_ready(gen_t *ge)
{
    master_t *m = ge->master;
    tw_timer_stop(m->loop, &ge->timer);
    gen_t *old = m->serving;
    ge->state = GEN_SERVING;
    m->serving = ge;
    m->starting = NULL;
    char quarantined[512];
    __atomic_store_n(&stats(m)->generation, ge->g->number, __ATOMIC_RELAXED);
    __atomic_store_n(&stats(m)->config_hash, ge->g->config_hash, __ATOMIC_RELAXED);
    if (old)
        tw_counter_add(&stats(m)->reloads_ok, 1);
    tw_log_info("generation %u is serving with %u worker%s", ge->g->number, ge->g->workers,
                ge->g->workers == 1 ? "" : "s");
    if (list_quarantined(ge, quarantined, sizeof quarantined))
        tw_log_error("generation %u is serving with module%s %s QUARANTINED: %s routes answer "
                     "503, %s phase handlers and filters are skipped; a reload lifts it",
                     ge->g->number, strchr(quarantined, ',') ? "s" : "", quarantined,
                     strchr(quarantined, ',') ? "their" : "its",
                     strchr(quarantined, ',') ? "their" : "its");
    char text[700];
    int n = snprintf(text, sizeof text, "OK generation %u", ge->g->number);
    if (old && !ge->quarantine && list_quarantined(old, quarantined, sizeof quarantined)) {
        tw_log_info("generation %u lifts the quarantine of module%s %s", ge->g->number,
                    strchr(quarantined, ',') ? "s" : "", quarantined);
        snprintf(text + n, sizeof text - (size_t)n, " (lifted the quarantine of module%s %s)",
                 strchr(quarantined, ',') ? "s" : "", quarantined);
    }
    if (old) {
        tw_log_info("generation %u is draining", old->g->number);
        start_draining(m, old);
    }
    close_unused_listeners(m);
    strcat(text, "\n");
    finish_reload(m, ge->quarantine, text);
}

static void gen_failed(gen_t *ge, const char *why)
{
    master_t *m = ge->master;
    if (ge->state != GEN_STARTING)
        return;
    bool quarantine = ge->quarantine;
    snprintf(ge->error, sizeof ge->error, "%s", why);
    tw_log_error("generation %u failed to start: %s", ge->g->number, why);
    m->failed_number = ge->g->number;
    m->failed_at = time(NULL);
    snprintf(m->failed_why, sizeof m->failed_why, "%s", why);
    tw_counter_add(&stats(m)->reloads_failed, 1);
    tw_timer_stop(m->loop, &ge->timer);
    /* Stop its workers: SIGTERM first, so that those whose init_worker ran
     * run exit_worker too (a worker still inside a hook has SIGTERM
     * blocked until its loop runs); SIGKILL after a short grace for the
     * rest. They are reaped by SIGCHLD and the generation is freed once
     * none is left. */
    ge->state = GEN_DRAINING;
    signal_generation(m, ge, SIGTERM);
    tw_timer_init(&ge->timer, abandon_timeout, ge);
    tw_timer_start(m->loop, &ge->timer, ABANDON_GRACE_MS);
    m->starting = NULL;
    ge->next = m->draining;
    m->draining = ge;
    if (ge->alive == 0) {
        m->draining = ge->next;
        free_gen(ge);
    }
    close_unused_listeners(m);
    if (m->serving)
        tw_log_error("keeping generation %u", m->serving->g->number);
    char text[2200];
    snprintf(text, sizeof text, "ERROR %s\n", why);
    finish_reload(m, quarantine, text);
    if (!m->serving && !m->stopping) {
        m->exit_status = 1;
        m->stopping = true;
        maybe_finish_stop(m);
    }
}

static void startup_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    gen_t *ge = arg;
    (void)loop;
    (void)t;
    char why[1024];
    snprintf(why, sizeof why, "workers did not report ready within %d s",
             TW_STARTUP_TIMEOUT_MS / 1000);
    /* Name the hook a stuck worker is in (the first one found). */
    for (worker_t *w = ge->master->workers; w; w = w->next) {
        char hook[512];
        if (w->gen == ge && w->state == W_STARTING &&
            tw_activity_describe_hook(&ge->slots[w->index].activity, hook, sizeof hook)) {
            snprintf(why, sizeof why, "%s did not return within %d s (worker %u, during start-up)",
                     hook, TW_STARTUP_TIMEOUT_MS / 1000, w->index);
            break;
        }
    }
    gen_failed(ge, why);
}

/* Reads the config into a new generation and forks its workers. Errors
 * before the fork (config, snapshots) leave everything as it was. */
static void start_generation(master_t *m)
{
    tw_conf_error_t err = {{0}};
    if (m->starting) {
        m->reload_again = true;
        return;
    }
    tw_generation_t *g =
        tw_generation_prepare(m->config_path, m->module_dir, m->generation_counter + 1, &err);
    if (!g) {
        char text[2200];
        tw_counter_add(&stats(m)->reloads_failed, 1);
        tw_log_error("reload failed: %s", err.message);
        if (m->serving)
            tw_log_error("keeping generation %u", m->serving->g->number);
        snprintf(text, sizeof text, "ERROR %s\n", err.message);
        finish_reload(m, false, text);
        return;
    }
    launch_generation(m, g, NULL, NULL);
}

/* Opens g's listeners and forks its workers. For a quarantine
 * (quarantine_of set), g is quarantine_of's config with module disabled
 * as well, and the crash records of the quarantined modules go with it.
 * Errors before the fork (listeners, memory) leave everything as it was. */
static void launch_generation(master_t *m, tw_generation_t *g, const gen_t *quarantine_of,
                              const char *module)
{
    bool quarantine = quarantine_of != NULL;
    char text[2200];
    char why[1024];
    if (open_listeners(m, g, why, sizeof why) != 0) {
        if (!quarantine)
            tw_counter_add(&stats(m)->reloads_failed, 1);
        tw_log_error("%s failed: %s", quarantine ? "quarantine" : "reload", why);
        snprintf(text, sizeof text, "ERROR %s\n", why);
        tw_generation_free(g);
        close_unused_listeners(m);
        if (!quarantine)
            finish_reload(m, false, text);
        return;
    }
    if (m->serving)
        tw_generation_follow(g, m->serving->g);
    g->zones = m->zones;
    if (tw_zone_region_cost(tw_generation_shared_zones(g)) != tw_zone_region_size(m->zones))
        tw_log_warn("shared_zones: the region stays %zu bytes until a restart",
                    tw_zone_region_size(m->zones));
    gen_t *ge = calloc(1, sizeof *ge);
    unsigned n = g->workers;
    if (ge) {
        ge->slots = mmap(NULL, sizeof(crash_slot_t) * n, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ge->quick_deaths = calloc(n, sizeof *ge->quick_deaths);
        ge->start_failures = calloc(n, sizeof *ge->start_failures);
        ge->respawns = calloc(n, sizeof *ge->respawns);
        if (quarantine)
            ge->crashes = calloc(quarantine_of->crash_count + 1, sizeof *ge->crashes);
    }
    if (!ge || ge->slots == MAP_FAILED || !ge->quick_deaths || !ge->start_failures ||
        !ge->respawns || (quarantine && !ge->crashes)) {
        tw_log_error("%s failed: out of memory", quarantine ? "quarantine" : "reload");
        if (ge && ge->slots != MAP_FAILED && ge->slots)
            munmap(ge->slots, sizeof(crash_slot_t) * n);
        if (ge) {
            free(ge->quick_deaths);
            free(ge->start_failures);
            free(ge->respawns);
            free(ge->crashes);
        }
        free(ge);
        tw_generation_free(g);
        close_unused_listeners(m);
        if (!quarantine)
            finish_reload(m, false, "ERROR out of memory\n");
        return;
    }
    m->generation_counter = g->number;
    ge->master = m;
    ge->g = g;
    ge->state = GEN_STARTING;
    ge->quarantine = quarantine;
    ge->started_ms = tw_loop_now(m->loop);
    if (quarantine) {
        /* What was quarantined stays so, with its records, and module
         * joins it: the records are what an operator needs to see. */
        for (size_t i = 0; i < quarantine_of->crash_count; i++) {
            const module_crashes_t *from = &quarantine_of->crashes[i];
            if (!from->quarantined && strcmp(from->module, module) != 0)
                continue;
            module_crashes_t *mc = &ge->crashes[ge->crash_count++];
            *mc = *from;
            mc->recent = NULL;
            mc->recent_len = mc->recent_next = 0;
            if (!from->quarantined) {
                mc->quarantined = true;
                mc->quarantined_by = g->number;
                mc->quarantined_at = time(NULL);
            }
        }
    }
    for (unsigned i = 0; i < n; i++) {
        ge->respawns[i].gen = ge;
        ge->respawns[i].index = i;
        tw_timer_init(&ge->respawns[i].timer, respawn_fire, &ge->respawns[i]);
    }
    m->starting = ge;
    tw_timer_init(&ge->timer, startup_timeout, ge);
    tw_timer_start(m->loop, &ge->timer, TW_STARTUP_TIMEOUT_MS);
    if (quarantine)
        tw_log_info("starting generation %u with %u worker%s and module %s quarantined", g->number,
                    n, n == 1 ? "" : "s", module);
    else
        tw_log_info("starting generation %u with %u worker%s", g->number, n, n == 1 ? "" : "s");
    for (unsigned i = 0; i < n; i++) {
        if (spawn_worker(m, ge, i) != 0) {
            gen_failed(ge, "could not fork a worker");
            return;
        }
    }
}

/* ---- control socket: `twister -s reload` waits for the outcome here ------ */

/* ---- control socket: `twister -s status` ---------------------------------- */


static const char *gen_state_name(const gen_t *ge)
{
    switch (ge->state) {
    case GEN_STARTING:
        return "starting";
    case GEN_SERVING:
        return "serving";
    default:
        return "draining";
    }
}

static void status_generation(master_t *m, FILE *out, const gen_t *ge)
{
    uint64_t now = tw_loop_now(m->loop);
    char quarantined[512];
    fprintf(out, "generation %u: %s, %u worker%s, up %llus%s%s\n", ge->g->number,
            gen_state_name(ge), ge->g->workers, ge->g->workers == 1 ? "" : "s",
            (unsigned long long)((now - ge->started_ms) / 1000),
            list_quarantined(ge, quarantined, sizeof quarantined) ? ", quarantined: " : "",
            quarantined);
    for (unsigned i = 0; i < ge->g->workers; i++) {
        const worker_t *found = NULL;
        for (const worker_t *w = m->workers; w; w = w->next)
            if (w->gen == ge && w->index == i)
                found = w;
        if (!found) {
            fprintf(out, "  worker %u: not running (respawning)\n", i);
            continue;
        }
        fprintf(out, "  worker %u: pid %d, up %llus, ", i, (int)found->pid,
                (unsigned long long)((now - found->started_ms) / 1000));
        if (found->status_serial == m->status_serial)
            fprintf(out, "connections %lu, requests %llu\n", found->connections, found->requests);
        else
            fprintf(out, "connections ?, requests ? (%s)\n",
                    found->state == W_STARTING ? "starting" : "did not answer");
    }
}

static void status_modules(FILE *out, const gen_t *ge)
{
    for (size_t i = 0; i < ge->crash_count; i++) {
        const module_crashes_t *mc = &ge->crashes[i];
        if (mc->quarantined) {
            char since[32];
            format_time(mc->quarantined_at, since, sizeof since);
            fprintf(out, "quarantined module %s: since generation %u at %s, %u crash%s\n",
                    mc->module, mc->quarantined_by, since, mc->total, mc->total == 1 ? "" : "es");
        } else {
            fprintf(out, "crashes of module %s in generation %u: %u (budget: %u within %llus)\n",
                    mc->module, ge->g->number, mc->total, tw_generation_crash_max(ge->g),
                    (unsigned long long)(tw_generation_crash_within_ms(ge->g) / 1000));
        }
        unsigned kept = mc->total < CRASH_RECORDS_KEPT ? mc->total : CRASH_RECORDS_KEPT;
        for (unsigned k = mc->total - kept; k < mc->total; k++) {
            char text[512];
            describe_record(&mc->records[k % CRASH_RECORDS_KEPT], text, sizeof text);
            fprintf(out, "  crash %u: %s\n", k + 1, text);
        }
    }
}

/* Writes the status report (see README, Operations) to every client of
 * the query. */
static void status_reply(master_t *m)
{
    tw_timer_stop(m->loop, &m->status_timer);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out) {
        fprintf(out, "master: pid %d, up %llus, config %s\n", (int)getpid(),
                (unsigned long long)((tw_loop_now(m->loop) - m->started_ms) / 1000),
                m->config_realpath);
        const gen_t *gens[] = {m->starting, m->serving};
        for (size_t i = 0; i < 2; i++)
            if (gens[i])
                status_generation(m, out, gens[i]);
        for (const gen_t *d = m->draining; d; d = d->next)
            if (d->state == GEN_DRAINING && d->g->number != m->failed_number)
                status_generation(m, out, d);
        if (m->failed_number && (!m->serving || m->failed_number > m->serving->g->number)) {
            char when[32];
            format_time(m->failed_at, when, sizeof when);
            fprintf(out, "generation %u: failed at %s: %s\n", m->failed_number, when,
                    m->failed_why);
        }
        bool any = false;
        if (m->serving) {
            for (size_t i = 0; i < m->serving->crash_count; i++)
                any |= m->serving->crashes[i].quarantined;
            status_modules(out, m->serving);
        }
        if (!any)
            fprintf(out, "quarantined: none\n");
        if (m->last_reload[0]) {
            char when[32];
            format_time(m->last_reload_at, when, sizeof when);
            fprintf(out, "last reload: %s at %s\n", m->last_reload, when);
        } else {
            fprintf(out, "last reload: none\n");
        }
        fclose(out);
    }
    for (waiter_t *w = m->status_clients, *next; w; w = next) {
        next = w->next;
        /* Blocking for the write: the report is a few kilobytes and the
         * client reads it at once; a client that does not gets cut off by
         * the send timeout. */
        int flags = fcntl(w->fd, F_GETFL);
        fcntl(w->fd, F_SETFL, flags & ~O_NONBLOCK);
        struct timeval tv = {.tv_sec = 1};
        setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const char *p = text ? text : "ERROR out of memory\n";
        size_t left = text ? len : strlen(p);
        while (left > 0) {
            ssize_t n = send(w->fd, p, left, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            p += n;
            left -= (size_t)n;
        }
        close(w->fd);
        free(w);
    }
    m->status_clients = NULL;
    free(text);
}

static void status_answered(master_t *m)
{
    if (m->status_clients && m->status_pending > 0 && --m->status_pending == 0)
        status_reply(m);
}

static void status_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    (void)loop;
    (void)t;
    status_reply(arg);
}

/* Asks every worker for its numbers; the report goes out when all have
 * answered or TW_STATUS_TIMEOUT_MS has passed. A client that arrives while
 * a query is in flight gets its report. */
static void start_status(master_t *m, int fd)
{
    waiter_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    bool in_flight = m->status_clients != NULL;
    c->next = m->status_clients;
    m->status_clients = c;
    if (in_flight)
        return;
    m->status_serial++;
    m->status_pending = 0;
    for (worker_t *w = m->workers; w; w = w->next) {
        if (w->control_fd < 0 || w->state == W_STARTING)
            continue;
        if (send(w->control_fd, "STATUS", 6, MSG_NOSIGNAL | MSG_DONTWAIT) == 6)
            m->status_pending++;
    }
    if (m->status_pending == 0) {
        status_reply(m);
        return;
    }
    tw_timer_start(m->loop, &m->status_timer, TW_STATUS_TIMEOUT_MS);
}

/* Runs one command from the control socket; fd is the client's, which
 * the reload's waiter list takes over or which is closed here. */
static void run_control_command(master_t *m, int fd, const char *command, size_t len)
{
    if (len == strlen("status") && memcmp(command, "status", len) == 0) {
        start_status(m, fd);
        return;
    }
    if (len != strlen("reload") || memcmp(command, "reload", len) != 0) {
        /* Exact commands only: "reloadx" or "reload now" must not reload
         * the server on the strength of their first six bytes. */
        char shown[CONTROL_COMMAND_MAX + 1];
        size_t i = 0;
        for (; i < len && i < sizeof shown - 1; i++)
            shown[i] = command[i] < 0x20 || command[i] == 0x7f ? '?' : command[i];
        shown[i] = '\0';
        char reply[160];
        int n = snprintf(reply, sizeof reply,
                         "ERROR unknown command '%s' (the control socket takes: reload, status)\n",
                         shown);
        ssize_t ignored = send(fd, reply, (size_t)n, MSG_NOSIGNAL);
        (void)ignored;
        close(fd);
        return;
    }
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        return;
    }
    w->fd = fd;
    /* Like nginx, a reload rereads the file this master was started with,
     * whatever file the client was given: tell the client which one, so
     * that it can say so when they differ. */
    char line[PATH_MAX + 16];
    int n = snprintf(line, sizeof line, "CONFIG %s\n", m->config_realpath);
    ssize_t ignored = send(fd, line, (size_t)n, MSG_NOSIGNAL);
    (void)ignored;
    tw_log_info("reload requested on the control socket");
    tw_os_sd_notify("RELOADING=1");
    if (m->starting) {
        w->next = m->waiters_next;
        m->waiters_next = w;
        m->reload_again = true;
    } else {
        w->next = m->waiters_now;
        m->waiters_now = w;
        start_generation(m);
    }
}

/* Forgets a control client; its fd stays open unless close_fd. */
static void control_client_free(control_client_t *c, bool close_fd)
{
    master_t *m = c->master;
    for (control_client_t **p = &m->control_clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    tw_timer_stop(m->loop, &c->timer);
    tw_loop_unwatch(m->loop, c->fd);
    if (close_fd)
        close(c->fd);
    free(c);
}

static void control_client_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    control_client_t *c = arg;
    (void)loop;
    (void)t;
    static const char reply[] = "ERROR no command within the time allowed\n";
    ssize_t ignored = send(c->fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
    (void)ignored;
    control_client_free(c, true);
}

/* Collects the command up to its newline (or the client's end of
 * stream); a stream socket may deliver it in pieces. */
static void control_client_readable(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    control_client_t *c = arg;
    (void)loop;
    (void)events;
    ssize_t n = recv(fd, c->command + c->len, sizeof c->command - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0 || (n == 0 && c->len == 0)) {
        control_client_free(c, true);
        return;
    }
    c->len += (size_t)n;
    char *end = memchr(c->command, '\n', c->len);
    if (!end && n > 0) {
        if (c->len < sizeof c->command)
            return; /* more to come */
        static const char reply[] = "ERROR command too long\n";
        ssize_t ignored = send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
        (void)ignored;
        control_client_free(c, true);
        return;
    }
    size_t len = end ? (size_t)(end - c->command) : c->len;
    if (len > 0 && c->command[len - 1] == '\r')
        len--;
    master_t *m = c->master;
    char command[sizeof c->command];
    memcpy(command, c->command, len);
    control_client_free(c, false);
    run_control_command(m, fd, command, len);
}

static void control_acceptable(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    master_t *m = arg;
    (void)events;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        control_client_t *c = calloc(1, sizeof *c);
        if (!c || tw_loop_watch(loop, cfd, TW_EV_READ, control_client_readable, c) != 0) {
            free(c);
            close(cfd);
            continue;
        }
        c->master = m;
        c->fd = cfd;
        c->next = m->control_clients;
        m->control_clients = c;
        tw_timer_init(&c->timer, control_client_timeout, c);
        tw_timer_start(loop, &c->timer, CONTROL_COMMAND_TIMEOUT_MS);
    }
}

static void open_control_socket(master_t *m)
{
    m->control_fd = -1;
    if (!m->pid_path[0])
        return;
    tw_control_path(m->pid_path, m->control_path, sizeof m->control_path);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(m->control_path) >= sizeof a.sun_path) {
        tw_log_warn("control socket path too long: %s", m->control_path);
        m->control_path[0] = '\0';
        return;
    }
    strcpy(a.sun_path, m->control_path);
    unlink(m->control_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* Whoever can connect can reload the server: bind creates the socket
     * 0600 already (the master is single-threaded, so the umask is ours
     * alone for the call). A chmod after bind would leave a window in
     * which anyone could connect and keep the connection. */
    int rc = -1;
    if (fd >= 0) {
        mode_t umask_was = umask(0177);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
        umask(umask_was);
    }
    if (rc != 0 || listen(fd, 16) != 0) {
        tw_log_warn("cannot open control socket %s: %s", m->control_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        m->control_path[0] = '\0';
        return;
    }
    m->control_fd = fd;
    tw_loop_watch(m->loop, fd, TW_EV_READ, control_acceptable, m);
}

/* ---- signals ------------------------------------------------------------------ */

static void maybe_finish_stop(master_t *m)
{
    if (m->stopping && m->workers == NULL)
        tw_loop_stop(m->loop);
}

static void stop_backstop(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    master_t *m = arg;
    (void)loop;
    (void)t;
    for (worker_t *w = m->workers; w; w = w->next)
        kill(w->pid, SIGKILL);
}

static void begin_stop(master_t *m, int sig)
{
    bool graceful = sig == SIGQUIT;
    if (m->stopping && graceful)
        return;
    m->stopping = true;
    tw_os_sd_notify("STOPPING=1");
    tw_log_info("%s stop (%s)", graceful ? "graceful" : "fast", strsignal(sig));
    for (worker_t *w = m->workers; w; w = w->next)
        kill(w->pid, graceful ? SIGQUIT : SIGTERM);
    /* Stop accepting at once: nothing new should queue in our backlog. */
    for (size_t i = 0; i < m->listener_count; i++)
        shutdown(m->listeners[i].fd, SHUT_RD);
    uint64_t bound =
        graceful && m->serving ? tw_generation_shutdown_ms(m->serving->g) + 5000 : 10000;
    tw_timer_init(&m->stop_timer, stop_backstop, m);
    tw_timer_start(m->loop, &m->stop_timer, bound);
    maybe_finish_stop(m);
}

static void on_signal(tw_loop_t *loop, int signo, void *arg)
{
    master_t *m = arg;
    (void)loop;
    switch (signo) {
    case SIGHUP:
        if (m->stopping)
            break;
        tw_log_info("SIGHUP: reloading %s", m->config_path);
        tw_os_sd_notify("RELOADING=1");
        start_generation(m);
        break;
    case SIGQUIT:
    case SIGTERM:
    case SIGINT:
        begin_stop(m, signo);
        break;
    case SIGUSR1:
        tw_log_reopen();
        tw_log_info("log reopened");
        for (worker_t *w = m->workers; w; w = w->next)
            kill(w->pid, SIGUSR1);
        break;
    }
}

/* ---- pid file ------------------------------------------------------------------ */

static void write_pid_file(master_t *m, const char *path)
{
    m->pid_path[0] = '\0';
    if (!path)
        return;
    snprintf(m->pid_path, sizeof m->pid_path, "%s", path);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* Not fopen: a FIFO left at the temporary name would block the master
     * in open(2) before it ever serves; open non-blocking and refuse what
     * is not a regular file. */
    char line[24];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    const char *why = NULL;
    int fd;
    do
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    while (fd < 0 && errno == EINTR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "its temporary file is not a regular file";
    else if (write(fd, line, (size_t)len) != len)
        why = strerror(errno);
    if (fd >= 0 && close(fd) != 0 && !why)
        why = strerror(errno);
    if (!why && rename(tmp, path) != 0)
        why = strerror(errno);
    if (why) {
        tw_log_warn("cannot write pid file %s: %s", path, why);
        m->pid_path[0] = '\0';
    }
}

/* ---- main --------------------------------------------------------------------- */

int tw_master_run(const char *config_path, const char *module_dir)
{
    master_t m = {.config_path = config_path, .module_dir = module_dir, .control_fd = -1};
    if (!realpath(config_path, m.config_realpath))
        snprintf(m.config_realpath, sizeof m.config_realpath, "%s", config_path);
    tw_log_set_role("master", 0, -1);
    signal(SIGPIPE, SIG_IGN);

    tw_conf_error_t err = {{0}};
    /* Read the config once up front for the process-wide settings (log,
     * pid file); the first generation reads it again like any reload. */
    tw_generation_t *probe = tw_generation_prepare(config_path, module_dir, 0, &err);
    if (!probe) {
        fprintf(stderr, "twister: %s\n", err.message);
        return 1;
    }
    if (tw_log_open(tw_generation_error_log(probe)) != 0)
        fprintf(stderr, "twister: cannot open error log %s: %s; using stderr\n",
                tw_generation_error_log(probe), strerror(errno));
    tw_log_level_t level;
    if (tw_log_parse_level(tw_generation_log_level(probe), &level) == 0)
        tw_log_set_level(level);
    unsigned long want = (unsigned long)tw_generation_worker_connections(probe) * 2 + 64;
    m.fd_limit = tw_os_raise_nofile(want);
    if (m.fd_limit < want)
        tw_log_info("open files limit is %lu (the hard limit): each worker takes at most %u "
                    "connections instead of worker_connections %u",
                    m.fd_limit, connection_cap(&m, probe), tw_generation_worker_connections(probe));
    m.zones = tw_zone_region_map(tw_generation_shared_zones(probe));
    if (!m.zones) {
        tw_log_error("cannot map the shared_zones region: %s", strerror(errno));
        tw_generation_free(probe);
        return 1;
    }
    char pid_path[PATH_MAX] = "";
    if (tw_generation_pid_file(probe))
        snprintf(pid_path, sizeof pid_path, "%s", tw_generation_pid_file(probe));
    tw_generation_free(probe);

    m.loop = tw_loop_new();
    if (!m.loop) {
        tw_log_error("cannot create the event loop: %s", strerror(errno));
        return 1;
    }
    int sigs[] = {SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        tw_loop_add_signal(m.loop, sigs[i], on_signal, &m);
    tw_loop_add_signal(m.loop, SIGCHLD, on_sigchld, &m);
    prctl(PR_SET_CHILD_SUBREAPER, 0);

    write_pid_file(&m, pid_path[0] ? pid_path : NULL);
    open_control_socket(&m);
    m.started_ms = tw_loop_now(m.loop);
    tw_timer_init(&m.status_timer, status_timeout, &m);
    tw_log_info("twister master started (pid %d), config %s", (int)getpid(), config_path);
    start_generation(&m);
    if (!m.stopping)
        tw_loop_run(m.loop);

    /* Shut down: everything is reaped by now (or the loop stopped after the
     * first generation failed). */
    for (worker_t *w = m.workers; w; w = w->next)
        kill(w->pid, SIGKILL);
    while (m.workers) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0)
            break;
        worker_t *w = find_worker(&m, pid);
        if (w) {
            w->gen->alive--;
            unlink_worker(&m, w);
        }
    }
    tw_timer_stop(m.loop, &m.status_timer);
    answer_waiters(&m.status_clients, "ERROR the server is stopping\n");
    answer_waiters(&m.waiters_now, "ERROR the server is stopping\n");
    answer_waiters(&m.waiters_next, "ERROR the server is stopping\n");
    while (m.control_clients)
        control_client_free(m.control_clients, true);
    if (m.serving)
        free_gen(m.serving);
    while (m.draining) {
        gen_t *d = m.draining;
        m.draining = d->next;
        free_gen(d);
    }
    for (size_t i = 0; i < m.listener_count; i++)
        close(m.listeners[i].fd);
    free(m.listeners);
    if (m.control_fd >= 0) {
        close(m.control_fd);
        unlink(m.control_path);
    }
    if (m.pid_path[0])
        unlink(m.pid_path);
    tw_loop_free(m.loop);
    tw_zone_region_unmap(m.zones);
    tw_log_info("master exiting");
    return m.exit_status;
}
