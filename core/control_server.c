/* control_server.c — the master's end of the control socket.
 *
 * `twister -s reload` and `-s status` (control_client.c) connect to a Unix
 * socket next to the pid file rather than signal the master, because a
 * signal cannot carry the outcome back: a reload client waits here until
 * its generation is serving or has failed. Whoever can connect can reload
 * the server, so the socket is created 0600, commands must match exactly,
 * and a client that does not send one in time is cut off. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_client.h"
#include "master_internal.h"
#include "os.h"
#include "twister/log.h"

/* How long a control client may take to send its command. `twister -s`
 * sends it right after connecting; a client that does not is stuck or
 * hostile, and each one holds a descriptor of the master. */
#define CONTROL_COMMAND_TIMEOUT_MS 5000

void tw_master_answer_waiters(waiter_t **list, const char *text)
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

/* Runs one command from the control socket; fd is the client's, which
 * the reload's waiter list takes over or which is closed here. */
static void run_control_command(master_t *m, int fd, const char *command, size_t len)
{
    if (len == strlen("status") && memcmp(command, "status", len) == 0) {
        tw_master_start_status(m, fd);
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
        tw_master_start_generation(m);
    }
}

/* Forgets a control client; its fd stays open unless close_fd. */
void tw_master_control_client_free(control_client_t *c, bool close_fd)
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
    tw_master_control_client_free(c, true);
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
        tw_master_control_client_free(c, true);
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
        tw_master_control_client_free(c, true);
        return;
    }
    size_t len = end ? (size_t)(end - c->command) : c->len;
    if (len > 0 && c->command[len - 1] == '\r')
        len--;
    master_t *m = c->master;
    char command[sizeof c->command];
    memcpy(command, c->command, len);
    tw_master_control_client_free(c, false);
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

void tw_master_open_control_socket(master_t *m)
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
