/* control_client.c — the client side of `twister -s SIGNAL`, run by the
 * operator's command, never by the master: it finds the running master
 * through the config's pid file, and talks to it over the control socket
 * next to that file (reload waits for the outcome; status prints the
 * master's answer) or with a signal (stop, quit, reopen). Kept apart from
 * control_server.c, the master's end, because it shares no state with the
 * master process, only the socket's path and its one-line protocol. */
#include "control_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

void tw_control_path(const char *pid_file, char *out, size_t len)
{
    snprintf(out, len, "%s.sock", pid_file);
}

/* ---- `twister -s` ---------------------------------------------------------------- */

/* The pid in path, or -1. Non-blocking and regular files only: a FIFO
 * named as pid_file must not hang `twister -s`. */
static pid_t read_pid(const char *path)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    struct stat st;
    char buf[32];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        do
            n = read(fd, buf, sizeof buf - 1);
        while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    if (end == buf || pid <= 0 || pid > INT32_MAX)
        return -1;
    return (pid_t)pid;
}

/* True while pid runs (a zombie waiting for its parent to reap it has
 * stopped as far as the caller of `-s stop` is concerned). */
static bool process_running(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return !(close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z');
}

/* Connects to the master's control socket and sends command; returns
 * the connected fd, or -1. */
static int control_connect(const char *pid_file, const char *command)
{
    char path[PATH_MAX];
    tw_control_path(pid_file, path, sizeof path);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path)
        return -1;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    size_t len = strlen(command);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(fd, command, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Prints the master's status report (`-s status`). */
static int status_via_socket(const char *pid_file)
{
    int fd = control_connect(pid_file, "status\n");
    if (fd < 0) {
        fprintf(stderr, "twister: the master's control socket is not answering\n");
        return 1;
    }
    struct timeval tv = {.tv_sec = TW_STATUS_TIMEOUT_MS / 1000 + 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    bool any = false, error = false;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (!any && n >= 6 && memcmp(buf, "ERROR ", 6) == 0)
            error = true;
        any = true;
        fwrite(buf, 1, (size_t)n, error ? stderr : stdout);
    }
    close(fd);
    fflush(stdout);
    if (!any)
        fprintf(stderr, "twister: no status from the master\n");
    return any && !error ? 0 : 1;
}

/* Reloads through the control socket and prints the outcome; config_path
 * is the file the user named, which the master may not be running. */
static int reload_via_socket(const char *pid_file, const char *config_path)
{
    int fd = control_connect(pid_file, "reload\n");
    if (fd < 0)
        return -1;
    /* Bounded: a generation gets TW_STARTUP_TIMEOUT_MS to come up, and a reload
     * may wait for one in progress first. */
    struct timeval tv = {.tv_sec = 3 * TW_STARTUP_TIMEOUT_MS / 1000 + 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char reply[PATH_MAX + 4096];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, reply + got, sizeof reply - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof reply - 1)
            break;
    }
    close(fd);
    reply[got] = '\0';
    /* "CONFIG <the master's config file>\n" at once, then the outcome. */
    char *outcome = reply;
    const char *master_config = NULL;
    if (strncmp(reply, "CONFIG ", 7) == 0) {
        master_config = reply + 7;
        outcome = reply + strcspn(reply, "\n");
        if (*outcome)
            *outcome++ = '\0';
    }
    outcome[strcspn(outcome, "\n")] = '\0';
    int rc = 1;
    if (strncmp(outcome, "OK ", 3) == 0) {
        printf("reload OK: %s\n", outcome + 3);
        fflush(stdout);
        rc = 0;
    } else if (strncmp(outcome, "ERROR ", 6) == 0) {
        fprintf(stderr, "twister: reload failed: %s\n", outcome + 6);
    } else {
        fprintf(stderr, "twister: no answer from the master about the reload\n");
    }
    char named[PATH_MAX];
    if (master_config && (!realpath(config_path, named) || strcmp(named, master_config) != 0))
        fprintf(stderr,
                "twister: note: the running master was started with %s and reloaded that file, "
                "not %s (a reload rereads the master's own config; to run %s, start a master "
                "with -c %s)\n",
                master_config, config_path, config_path, config_path);
    return rc;
}

/* The pid file the config names (relative to the config's directory), as
 * settings.c resolves it; "" if the config disables it. */
static int find_pid_file(const char *config_path, char *out, size_t len)
{
    tw_conf_error_t err = {{0}};
    tw_conf_doc_t *doc = tw_conf_load(config_path, &err);
    if (!doc) {
        fprintf(stderr, "twister: %s\n", err.message);
        return -1;
    }
    const tw_conf_node_t *n = tw_conf_map_get(tw_conf_root(doc), "pid_file");
    const char *value = n ? tw_conf_scalar(n) : "twister.pid";
    if (!value) {
        fprintf(stderr, "twister: %s:%u:%u: pid_file: expected a string\n", tw_conf_file(n),
                tw_conf_line(n), tw_conf_column(n));
        tw_conf_doc_free(doc);
        return -1;
    }
    out[0] = '\0';
    if (value[0] == '/') {
        snprintf(out, len, "%s", value);
    } else if (value[0]) {
        char real[PATH_MAX], dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", config_path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
        while (value[0] == '.' && value[1] == '/')
            value += 2;
        if ((size_t)snprintf(out, len, "%s/%s", realpath(dir, real) ? real : dir, value) >= len) {
            fprintf(stderr, "twister: pid file path too long\n");
            tw_conf_doc_free(doc);
            return -1;
        }
    }
    tw_conf_doc_free(doc);
    return 0;
}

void tw_control_print_quarantine(const char *config_path, FILE *out)
{
    char pid_file[PATH_MAX] = "";
    /* -T has checked the config: finding its pid file cannot fail now. */
    int found = find_pid_file(config_path, pid_file, sizeof pid_file);
    pid_t pid = found == 0 && pid_file[0] ? read_pid(pid_file) : -1;
    if (pid <= 0 || !process_running(pid))
        return;
    int fd = control_connect(pid_file, "status\n");
    if (fd < 0)
        return;
    struct timeval tv = {.tv_sec = TW_STATUS_TIMEOUT_MS / 1000 + 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char reply[65536];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, reply + got, sizeof reply - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (got += (size_t)n) == sizeof reply - 1)
            break;
    }
    close(fd);
    reply[got] = '\0';
    bool in_quarantine = false;
    for (char *line = strtok(reply, "\n"); line; line = strtok(NULL, "\n")) {
        const char *prefix = "quarantined module ";
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            const char *name = line + strlen(prefix);
            const char *colon = strchr(name, ':');
            int len = colon ? (int)(colon - name) : (int)strlen(name);
            fprintf(out,
                    "\n# the running master (pid %d) has module %.*s QUARANTINED (%s): its "
                    "routes answer 503 and its phase handlers and filters are skipped until the "
                    "next successful reload\n",
                    (int)pid, len, name, colon && colon[1] ? colon + 2 : "");
            in_quarantine = true;
        } else if (in_quarantine && strncmp(line, "  crash ", 8) == 0) {
            fprintf(out, "#%s\n", line);
        } else {
            in_quarantine = false;
        }
    }
}

int tw_control_signal(const char *config_path, const char *module_dir, const char *command)
{
    static const struct {
        const char *name;
        int sig;
    } commands[] = {{"reload", SIGHUP}, {"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}};
    bool status = strcmp(command, "status") == 0; /* no signal: the control socket only */
    int sig = 0;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(command, commands[i].name) == 0)
            sig = commands[i].sig;
    if (!sig && !status) {
        fprintf(stderr, "twister: -s takes reload, stop, quit, reopen or status, not '%s'\n",
                command);
        return 2;
    }
    /* Only the pid file is needed here, so only the YAML is read: a config
     * with schema errors must still reach the master, which reports them
     * (and keeps serving) like any failed reload. */
    (void)module_dir;
    char pid_file[PATH_MAX] = "";
    if (find_pid_file(config_path, pid_file, sizeof pid_file) != 0)
        return 1;
    if (!pid_file[0]) {
        fprintf(stderr, "twister: the config has no pid_file, so -s cannot find the master\n");
        return 1;
    }
    pid_t pid = read_pid(pid_file);
    if (pid <= 0 || !process_running(pid)) {
        fprintf(stderr, "twister: no running master (pid file %s)\n", pid_file);
        return 1;
    }
    if (status)
        return status_via_socket(pid_file);
    if (sig == SIGHUP) {
        int rc = reload_via_socket(pid_file, config_path);
        if (rc >= 0)
            return rc;
        fprintf(stderr, "twister: the master's control socket is not answering; sending SIGHUP "
                        "instead (see the error log for the outcome)\n");
    }
    if (kill(pid, sig) != 0) {
        fprintf(stderr, "twister: cannot signal %d: %s\n", (int)pid, strerror(errno));
        return 1;
    }
    if (sig == SIGTERM || sig == SIGQUIT) {
        /* Wait (bounded) until the master is gone, so scripts can rely on
         * "stop returned" meaning "stopped". */
        for (int i = 0; i < 600 && process_running(pid); i++) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}
