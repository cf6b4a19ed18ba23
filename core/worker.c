/* worker.c — a worker process: the driver around one runtime.
 *
 * Start-up: activate the generation's runtime (runtime.c: dlopen the
 * snapshots, configure, init_worker) and tell the master READY or why
 * not. Then accept on the shared listeners (EPOLLEXCLUSIVE: one connection
 * wakes one worker) and hand each connection to the runtime's HTTP server.
 * SIGQUIT drains: stop accepting, let the HTTP engine finish what is in
 * flight, exit when the last connection is gone or timeouts.shutdown has
 * passed. SIGTERM/SIGINT exit at once.
 *
 * The driver is the top of a worker: it calls the runtime and the HTTP
 * server, and nothing calls back into it, so the plugin API's view of the
 * worker (tw_worker_t) lives in the runtime. */
#include "worker.h"

#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crash_report.h"
#include "handoff.h"
#include "http_conn.h"
#include "internal.h"
#include "log_setup.h"
#include "runtime.h"
#include "twister/log.h"
#include "zone.h"

/* Connections accepted per wake-up before yielding to the rest of the
 * loop, so a flood of connects cannot starve established connections.
 *
 * Accepting until EAGAIN costs one failing accept4 per wake-up, which is
 * one system call in six for connections that come one at a time (a
 * quiet server, Connection: close clients). So a wake-up that had to wait
 * for the listener (a connection just arrived) accepts one; the batch is
 * for a listener found ready by a poll that did not wait (the loop had
 * work queued, the backlog filled meanwhile: a burst). The listener is
 * level-triggered, so a connection left behind is reported again by this
 * worker's next poll. */
#define ACCEPT_BATCH 64
/* How long accepting pauses after EMFILE/ENFILE, instead of spinning. */
#define ACCEPT_PAUSE_MS 100

typedef struct {
    tw_loop_t *loop;
    const tw_worker_params_t *params;
    tw_http_server_t *http;
    int *listen_fds;
    size_t listen_count;
    bool accepting;
    bool draining;
    tw_timer_t accept_timer;   /* resumes accepting after EMFILE or the cap */
    tw_timer_t shutdown_timer; /* bounds the drain */
    int exit_status;
    /* The reload hand-off (handoff.h): channels to the new generation's
     * workers (outbound) and from an older one's (inbound). */
    tw_handoff_t *handoff;
    size_t drain_connections; /* open when the drain began */
    size_t drain_busy;        /* of those, not at rest: they finish here first */
    size_t first_pass_left;   /* verdicts to wait for before reporting */
    uint64_t drain_adopted;   /* the adopted counter when the drain began */
    uint64_t drain_start;     /* loop time the drain began */
    bool drained;             /* a drain began: it is accounted for at the exit */
    bool reported;            /* the first pass went to the master (or it need not) */
} worker_state_t;

/* ---- accepting ------------------------------------------------------------- */

static void on_acceptable(tw_loop_t *loop, int fd, unsigned events, void *arg);

static void set_accepting(worker_state_t *ws, bool on)
{
    if (ws->accepting == on || (on && ws->draining))
        return;
    ws->accepting = on;
    for (size_t i = 0; i < ws->listen_count; i++) {
        if (on)
            tw_loop_watch_exclusive(ws->loop, ws->listen_fds[i], on_acceptable, ws);
        else
            tw_loop_unwatch(ws->loop, ws->listen_fds[i]);
    }
}

static void accept_resume(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    worker_state_t *ws = arg;
    (void)t;
    if (ws->draining)
        return;
    if (tw_http_server_connections(ws->http) >= ws->params->connection_cap) {
        tw_timer_start(loop, &ws->accept_timer, ACCEPT_PAUSE_MS);
        return;
    }
    set_accepting(ws, true);
}

static size_t listener_index_of(const worker_state_t *ws, int fd)
{
    for (size_t i = 0; i < ws->listen_count; i++)
        if (ws->listen_fds[i] == fd)
            return i;
    return 0;
}

static void on_acceptable(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    worker_state_t *ws = arg;
    (void)events;
    size_t listener = listener_index_of(ws, fd);
    int batch = tw_loop_polled_at_once(loop) ? ACCEPT_BATCH : 1;
    for (int i = 0; i < batch; i++) {
        if (tw_http_server_connections(ws->http) >= ws->params->connection_cap) {
            /* At the cap: leave further connections in the shared backlog
             * for workers that have room. */
            set_accepting(ws, false);
            tw_timer_start(loop, &ws->accept_timer, ACCEPT_PAUSE_MS);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int c = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                tw_log_error("accept: %s; pausing for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                set_accepting(ws, false);
                tw_timer_start(loop, &ws->accept_timer, ACCEPT_PAUSE_MS);
            }
            return;
        }
        tw_http_conn_start(ws->http, loop, c, (struct sockaddr *)&peer, len, listener);
    }
}

/* ---- signals and shutdown ------------------------------------------------------- */

static void all_closed(void *arg)
{
    worker_state_t *ws = arg;
    tw_loop_stop(ws->loop);
}

/* The drain's bounds: timeouts.shutdown for most connections, a route's
 * drain: { keep } for a request of that route (a tunnel, a stream). At
 * each, what is past its bound is closed; the last one ends the worker. */
static void shutdown_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    worker_state_t *ws = arg;
    (void)t;
    uint64_t elapsed = tw_loop_now(loop) - ws->drain_start;
    uint64_t shutdown = tw_generation_shutdown_ms(ws->params->gen);
    size_t before = tw_http_server_connections(ws->http);
    uint64_t next = tw_http_server_drain_expire(ws->http, elapsed, shutdown);
    size_t left = tw_http_server_connections(ws->http);
    if (before > left)
        tw_log_warn("drain: closing %zu connection(s) past their bound (timeouts.shutdown or "
                    "their route's drain: keep)",
                    before - left);
    if (next && left) {
        tw_timer_start(loop, &ws->shutdown_timer, next - elapsed);
        return;
    }
    tw_http_server_close_all(ws->http);
    tw_loop_stop(loop);
}

static void report(int fd, const char *prefix, const char *text);

/* Tells the master what the drain's first pass did with the connections
 * open when it began: "HANDOFF <handed off> <kept to finish> <closed>"
 * (for the `-s reload` reply and the log). Closed are the idle ones that
 * could not move; they close after the grace. */
static void report_first_pass(worker_state_t *ws)
{
    if (ws->reported || !ws->http)
        return;
    ws->reported = true;
    size_t moved = (size_t)ws->http->counters.handed_off;
    size_t idle = ws->drain_connections - ws->drain_busy;
    char msg[96];
    snprintf(msg, sizeof msg, "HANDOFF %zu %zu %zu", moved, ws->drain_busy,
             idle > moved ? idle - moved : 0);
    report(ws->params->control_fd, msg, NULL);
}

static void on_handoff_verdict(void *arg, void *token, bool moved)
{
    worker_state_t *ws = arg;
    tw_http_server_handoff_done(ws->http, token, moved);
    if (ws->first_pass_left > 0 && --ws->first_pass_left == 0)
        report_first_pass(ws);
}

/* A connection an older generation hands us: served here if there is
 * room and its listener is ours. */
static int on_handoff_adopt(void *arg, int fd, const tw_handoff_conn_t *conn)
{
    worker_state_t *ws = arg;
    const tw_generation_t *g = ws->params->gen;
    size_t count = tw_generation_listener_count(g), index = count;
    for (size_t i = 0; i < count; i++)
        if (g->listen_fds[i] == conn->listener_fd)
            index = i;
    if (!ws->http || index == count ||
        tw_http_server_connections(ws->http) >= ws->params->connection_cap) {
        close(fd);
        return -1;
    }
    return tw_http_conn_adopt(ws->http, fd, conn, index);
}

static void begin_drain(worker_state_t *ws)
{
    if (ws->draining)
        return;
    set_accepting(ws, false);
    ws->draining = true;
    tw_timer_stop(ws->loop, &ws->accept_timer);
    /* Our copies of the listeners are no use any more; the master and the
     * new generation keep theirs. */
    for (size_t i = 0; i < ws->listen_count; i++)
        close(ws->listen_fds[i]);
    ws->listen_count = 0;
    ws->drain_start = tw_loop_now(ws->loop);
    ws->drain_connections = tw_http_server_connections(ws->http);
    ws->drain_busy = ws->drain_connections - tw_http_server_resting(ws->http);
    ws->drain_adopted = ws->http->counters.adopted;
    ws->drained = true;
    /* Only a worker that got channels reports: the master counts on it. */
    ws->reported = !tw_handoff_can_offer(ws->handoff);
    size_t before = tw_handoff_pending(ws->handoff);
    tw_http_server_drain(ws->http, all_closed, ws);
    ws->first_pass_left = tw_handoff_pending(ws->handoff) - before;
    if (ws->first_pass_left == 0)
        report_first_pass(ws);
    /* The first bound: the earliest of the open connections' (the
     * timer looks again at each one). */
    uint64_t first =
        tw_http_server_drain_expire(ws->http, 0, tw_generation_shutdown_ms(ws->params->gen));
    tw_timer_start(ws->loop, &ws->shutdown_timer, first);
    tw_zone_region_t *zones = ws->params->gen->zones;
    if (zones && ws->drain_busy)
        tw_counter_add(&tw_zone_region_reload_stats(zones)->kept, ws->drain_busy);
}

static void on_signal(tw_loop_t *loop, int signo, void *arg)
{
    worker_state_t *ws = arg;
    if (!ws->http)
        return; /* shutting down: the server is being freed */
    switch (signo) {
    case SIGQUIT:
        begin_drain(ws);
        break;
    case SIGTERM:
    case SIGINT:
        tw_http_server_close_all(ws->http);
        tw_loop_stop(loop);
        break;
    case SIGUSR1:
        tw_log_reopen();
        break;
    case SIGHUP:
        /* Reloads are the master's business. */
        break;
    }
}

static void report(int fd, const char *prefix, const char *text)
{
    char msg[4096];
    int n = snprintf(msg, sizeof msg, "%s%s", prefix, text ? text : "");
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    ssize_t ignored = send(fd, msg, (size_t)n, MSG_NOSIGNAL);
    (void)ignored;
}

/* The master's messages on the control socket:
 *   STATUS          (for `twister -s status`); the answer is
 *                   "STATUS <connections> <requests served>"
 *   HANDOFF + fd    a channel to a worker of the new generation
 *   ADOPT + fd      a channel from a worker of the old generation
 *   DRAIN           drain (as SIGQUIT), after the HANDOFF channels: the
 *                   socket keeps their order, which signals would not */
static bool control_message(tw_loop_t *loop, int fd, worker_state_t *ws);

/* The master's messages come in bursts (a channel per new worker, then
 * DRAIN): take them together, before the connections' events of the
 * same wake-up. */
static void on_control(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    for (int i = 0; i < 64 && control_message(loop, fd, arg); i++)
        ;
}

/* Reads and acts on one message; false when none was there. */
static bool control_message(tw_loop_t *loop, int fd, worker_state_t *ws)
{
    char msg[64];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof msg - 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n <= 0) {
        tw_loop_unwatch(loop, fd); /* the master is gone; PDEATHSIG follows */
        return false;
    }
    msg[n] = '\0';
    int passed = -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&passed, CMSG_DATA(cm), sizeof passed);
    if (passed >= 0) {
        bool outbound = strcmp(msg, "HANDOFF") == 0;
        if (!ws->handoff || (!outbound && strcmp(msg, "ADOPT") != 0))
            close(passed);
        else if (tw_handoff_add_channel(ws->handoff, passed, outbound) != 0) /* closes it */
            tw_log_warn("reload hand-off: cannot watch a channel: %s", strerror(errno));
        else if (outbound && ws->draining && ws->http)
            tw_http_server_hand_off_idle(ws->http); /* late: what rests now */
        return true;
    }
    if (strcmp(msg, "DRAIN") == 0 && ws->http) {
        begin_drain(ws);
    } else if (strcmp(msg, "STATUS") == 0 && ws->http) {
        char answer[96];
        snprintf(answer, sizeof answer, "STATUS %zu %llu", tw_http_server_connections(ws->http),
                 (unsigned long long)ws->http->counters.responses);
        report(fd, answer, NULL);
    }
    return true;
}

static int drop_privileges(const tw_worker_params_t *p)
{
    if (!p->drop_privileges)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid(p->gid) != 0 || setuid(p->uid) != 0)
        return -1;
    return 0;
}

int tw_worker_main(const tw_worker_params_t *params)
{
    worker_state_t ws = {.params = params, .exit_status = 0};
    tw_generation_t *g = params->gen;
    /* A worker must not outlive its master (tests, crashes, kill -9). */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        return 1;
    char title[16];
    snprintf(title, sizeof title, "twister w%u/%u", params->index, g->number);
    prctl(PR_SET_NAME, title);
    tw_log_set_role("worker", g->number, (int)params->index);
    /* Before any plugin code runs: a crash in configure or init_worker
     * deserves a backtrace as much as one while serving. */
    if (params->crash_report && tw_crash_report_install(params->crash_report) != 0)
        tw_log_warn("cannot install the crash reporter: %s; crashes will have no backtrace",
                    strerror(errno));

    ws.loop = tw_loop_new();
    if (!ws.loop) {
        report(params->control_fd, "ERROR ", "cannot create the event loop");
        return 1;
    }
    tw_timer_init(&ws.accept_timer, accept_resume, &ws);
    tw_timer_init(&ws.shutdown_timer, shutdown_timeout, &ws);
    int sigs[] = {SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGHUP};
    sigset_t handled;
    sigemptyset(&handled);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        tw_loop_add_signal(ws.loop, sigs[i], on_signal, &ws);
        sigaddset(&handled, sigs[i]);
    }
    /* The loop's signalfd is in place: what arrived before it is raised
     * again for the loop to read (it is still blocked, so it waits there),
     * and every other signal is unblocked, as in any process. */
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigismember(&params->handover_signals, sigs[i]) == 1)
            raise(sigs[i]);
    sigprocmask(SIG_SETMASK, &handled, NULL);

    if (drop_privileges(params) != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot switch to user %s: %s", tw_generation_user(g),
                 strerror(errno));
        report(params->control_fd, "ERROR ", why);
        return 1;
    }

    tw_conf_error_t err = {{0}};
    tw_runtime_worker_t self = {
        .loop = ws.loop, .index = params->index, .activity = params->activity};
    tw_runtime_t *rt = tw_runtime_activate(g, &self, &err);
    if (!rt) {
        report(params->control_fd, "ERROR ", err.message);
        tw_loop_free(ws.loop);
        return 1;
    }
    ws.http = tw_runtime_http(rt);
    ws.listen_fds = g->listen_fds;
    ws.listen_count = tw_generation_listener_count(g);
    /* Without memory for it a reload closes idle connections, as before. */
    ws.handoff = tw_handoff_new(ws.loop, on_handoff_verdict, on_handoff_adopt, &ws);
    ws.http->handoff = ws.handoff;
    ws.http->listen_fds = g->listen_fds;
    ws.http->listen_fd_count = ws.listen_count;
    /* Half the drain keeps busy connections alive to move them; the other
     * half closes the ones that never rested, before the bound cuts them. */
    uint64_t window = tw_generation_shutdown_ms(g) / 2;
    ws.http->handoff_window_ms = window ? window : 1;
    set_accepting(&ws, true);
    report(params->control_fd, "READY", NULL);
    tw_loop_watch(ws.loop, params->control_fd, TW_EV_READ, on_control, &ws);

    tw_loop_run(ws.loop);

    /* Nothing may reach the HTTP server once it is freed: no accepts, no
     * timers. Streams free their buffers from a loop callback, so give them
     * one more iteration after the last connection closed. */
    ws.draining = true;
    if (ws.accepting)
        for (size_t i = 0; i < ws.listen_count; i++)
            tw_loop_unwatch(ws.loop, ws.listen_fds[i]);
    ws.accepting = false;
    tw_timer_stop(ws.loop, &ws.accept_timer);
    tw_timer_stop(ws.loop, &ws.shutdown_timer);
    if (ws.drained) {
        /* What this drain did, for the log and the metrics: every
         * connection it had or adopted either moved or ended here. */
        const tw_http_counters_t *k = &ws.http->counters;
        size_t ended =
            ws.drain_connections + (size_t)(k->adopted - ws.drain_adopted) - (size_t)k->handed_off;
        if (ws.params->gen->zones) {
            tw_reload_stats_t *rs = tw_zone_region_reload_stats(ws.params->gen->zones);
            tw_counter_add(&rs->handed_off, k->handed_off);
            tw_counter_add(&rs->closed, ended);
        }
        tw_log_info("drained: %llu connection%s handed off to the new generation, %zu closed "
                    "here (%llu offered but not taken)",
                    (unsigned long long)k->handed_off, k->handed_off == 1 ? "" : "s", ended,
                    (unsigned long long)k->handoff_fallbacks);
    }
    tw_http_server_close_all(ws.http);
    ws.http->handoff = NULL;
    tw_handoff_free(ws.handoff);
    ws.handoff = NULL;
    tw_loop_run_once(ws.loop, 0);
    ws.http = NULL;
    tw_runtime_free(rt);
    tw_loop_run_once(ws.loop, 0);
    tw_loop_unwatch(ws.loop, params->control_fd);
    close(params->control_fd);
    tw_loop_free(ws.loop);
    return ws.exit_status;
}
