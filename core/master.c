/* master.c — the master process.
 *
 * The master is small and trusted: it parses configs, snapshots module
 * files, owns the listening sockets and forks workers. It never dlopens a
 * plugin, so no plugin bug can take it down. This file is its frame: the
 * process-wide settings read once at start (log, open-files limit, shared
 * zones, pid file), the signals — which arrive through the loop
 * (signalfd), so nothing here runs in signal context —, the stop and its
 * bound, and the final clean-up. The generations, workers, listeners,
 * crash budgets and control socket it drives have a file each (see
 * master_internal.h). */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log_setup.h"
#include "master_internal.h"
#include "os.h"
#include "twister/log.h"

/* ---- signals and the stop ------------------------------------------------------ */

void tw_master_maybe_finish_stop(master_t *m)
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

void tw_master_begin_stop(master_t *m, int sig)
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
        graceful && m->serving ? tw_generation_drain_bound_ms(m->serving->g) + 5000 : 10000;
    tw_timer_init(&m->stop_timer, stop_backstop, m);
    tw_timer_start(m->loop, &m->stop_timer, bound);
    tw_master_maybe_finish_stop(m);
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
        tw_master_start_generation(m);
        break;
    case SIGQUIT:
    case SIGTERM:
    case SIGINT:
        tw_master_begin_stop(m, signo);
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
                    m.fd_limit, tw_master_connection_cap(&m, probe),
                    tw_generation_worker_connections(probe));
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
    tw_loop_add_signal(m.loop, SIGCHLD, tw_master_on_sigchld, &m);
    prctl(PR_SET_CHILD_SUBREAPER, 0);

    write_pid_file(&m, pid_path[0] ? pid_path : NULL);
    tw_master_open_control_socket(&m);
    m.started_ms = tw_loop_now(m.loop);
    tw_timer_init(&m.status_timer, tw_master_status_timeout, &m);
    tw_timer_init(&m.handoff_timer, tw_master_handoff_timeout, &m);
    tw_log_info("twister master started (pid %d), config %s", (int)getpid(), config_path);
    tw_master_start_generation(&m);
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
        worker_t *w = tw_master_find_worker(&m, pid);
        if (w) {
            w->gen->alive--;
            tw_master_unlink_worker(&m, w);
        }
    }
    tw_timer_stop(m.loop, &m.status_timer);
    tw_master_answer_waiters(&m.status_clients, "ERROR the server is stopping\n");
    tw_master_handoff_reply(&m);
    tw_master_answer_waiters(&m.waiters_now, "ERROR the server is stopping\n");
    tw_master_answer_waiters(&m.waiters_next, "ERROR the server is stopping\n");
    while (m.control_clients)
        tw_master_control_client_free(m.control_clients, true);
    if (m.serving)
        tw_master_free_gen(m.serving);
    while (m.draining) {
        gen_t *d = m.draining;
        m.draining = d->next;
        tw_master_free_gen(d);
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
