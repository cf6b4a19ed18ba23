/* generation.c — the master's half of a generation (see generation.h).
 *
 * Preparing a generation = reading the settings, resolving the worker
 * count, and copying every module file into a memfd snapshot. It runs no
 * plugin code, so it is safe in the master; bringing the generation to
 * life (dlopen, configure, init_worker) is runtime.c's job, in the
 * process that will run the plugins. */
#include "generation.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "module.h"
#include "os.h"
#include "settings.h"

/* ---- preparing (master) ------------------------------------------------- */

/* Tells operators (through metrics) which config a generation runs. Only
 * a regular file is hashed (opened non-blocking: a FIFO must not stall
 * the master); 0 otherwise. */
static uint64_t hash_file(const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    char buf[8192];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)buf[i]) * 0x100000001b3ull;
    }
    close(fd);
    return h;
}

tw_generation_t *tw_generation_prepare(const char *config_path, const char *module_dir,
                                       unsigned number, tw_conf_error_t *err)
{
    tw_generation_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err->message, sizeof err->message, "%s: out of memory", config_path);
        return NULL;
    }
    g->number = number;
    if (tw_settings_load(config_path, module_dir, &g->settings, err) != 0) {
        free(g);
        return NULL;
    }
    tw_settings_t *s = g->settings;
    g->config_hash = hash_file(config_path);
    g->workers = s->workers ? s->workers : tw_os_available_cpus();
    g->snapshots = calloc(s->nmodules ? s->nmodules : 1, sizeof *g->snapshots);
    if (!g->snapshots) {
        snprintf(err->message, sizeof err->message, "%s: out of memory", config_path);
        tw_generation_free(g);
        return NULL;
    }
    for (size_t i = 0; i < s->nmodules; i++) {
        tw_snapshot_t *snap = &g->snapshots[i];
        snap->memfd = -1;
        snap->node = s->modules[i].node;
        snap->path = strdup(s->modules[i].path);
        g->snapshot_count = i + 1;
        char why[900];
        if (!snap->path ||
            tw_module_snapshot(s->modules[i].path, &snap->memfd, why, sizeof why) != 0) {
            tw_conf_error(err, s->modules[i].node, "%s", snap->path ? why : "out of memory");
            tw_generation_free(g);
            return NULL;
        }
    }
    return g;
}

void tw_generation_free(tw_generation_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->snapshot_count; i++) {
        if (g->snapshots[i].memfd >= 0)
            close(g->snapshots[i].memfd);
        free(g->snapshots[i].path);
    }
    free(g->snapshots);
    free(g->listen_fds);
    tw_settings_free(g->settings);
    free(g);
}

size_t tw_generation_listener_count(const tw_generation_t *g)
{
    return g->settings->nlisteners;
}

const struct sockaddr *tw_generation_listener(const tw_generation_t *g, size_t i, socklen_t *len)
{
    *len = g->settings->listeners[i].addrlen;
    return (const struct sockaddr *)&g->settings->listeners[i].addr;
}

const char *tw_generation_pid_file(const tw_generation_t *g)
{
    return g->settings->pid_file;
}

const char *tw_generation_error_log(const tw_generation_t *g)
{
    return g->settings->error_log ? g->settings->error_log : "stderr";
}

const char *tw_generation_log_level(const tw_generation_t *g)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    unsigned l = (unsigned)g->settings->log_level;
    return l < 4 ? names[l] : "info";
}

const char *tw_generation_user(const tw_generation_t *g)
{
    return g->settings->user;
}

uint64_t tw_generation_shutdown_ms(const tw_generation_t *g)
{
    return g->settings->timeouts.shutdown_ms;
}

unsigned tw_generation_max_draining(const tw_generation_t *g)
{
    return g->settings->max_draining_generations;
}

int tw_generation_backlog(const tw_generation_t *g)
{
    return g->settings->backlog;
}

unsigned tw_generation_worker_connections(const tw_generation_t *g)
{
    return g->settings->worker_connections;
}

size_t tw_generation_shared_zones(const tw_generation_t *g)
{
    return (size_t)g->settings->shared_zones;
}
