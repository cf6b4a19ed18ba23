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
#include "http_conn.h"
#include "internal.h"
#include "log_setup.h"
#include "runtime.h"
#include "twister/log.h"

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

static void shutdown_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    worker_state_t *ws = arg;
    (void)t;
    tw_log_warn("shutdown timeout: closing %zu connection(s)",
                tw_http_server_connections(ws->http));
    tw_http_server_close_all(ws->http);
    tw_loop_stop(loop);
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
    tw_timer_start(ws->loop, &ws->shutdown_timer, tw_generation_shutdown_ms(ws->params->gen));
    tw_http_server_drain(ws->http, all_closed, ws);
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

/* The master asks "STATUS" over the control socket (for `twister -s
 * status`); the answer is "STATUS <connections> <requests served>". */
static void on_control(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    worker_state_t *ws = arg;
    (void)events;
    char msg[64];
    ssize_t n = recv(fd, msg, sizeof msg - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        tw_loop_unwatch(loop, fd); /* the master is gone; PDEATHSIG follows */
        return;
    }
    msg[n] = '\0';
    if (strcmp(msg, "STATUS") == 0 && ws->http) {
        char answer[96];
        snprintf(answer, sizeof answer, "STATUS %zu %llu", tw_http_server_connections(ws->http),
                 (unsigned long long)ws->http->counters.responses);
        report(fd, answer, NULL);
    }
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
    tw_http_server_close_all(ws.http);
    tw_loop_run_once(ws.loop, 0);
    ws.http = NULL;
    tw_runtime_free(rt);
    tw_loop_run_once(ws.loop, 0);
    tw_loop_unwatch(ws.loop, params->control_fd);
    close(params->control_fd);
    tw_loop_free(ws.loop);
    return ws.exit_status;
}
