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
#include "tls/tls_context.h"

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

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

/* Reads the config from the file config_path, or from text (len bytes)
 * named config_path when text is not NULL. */
static tw_generation_t *prepare(const char *config_path, const char *text, size_t len,
                                const char *module_dir, unsigned number, tw_conf_error_t *err)
{
    tw_generation_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err->message, sizeof err->message, "%s: out of memory", config_path);
        return NULL;
    }
    g->number = number;
    g->settings_refs = malloc(sizeof *g->settings_refs);
    if (!g->settings_refs) {
        snprintf(err->message, sizeof err->message, "%s: out of memory", config_path);
        free(g);
        return NULL;
    }
    *g->settings_refs = 1;
    int rc = text ? tw_settings_load_string(config_path, text, len, module_dir, &g->settings, err)
                  : tw_settings_load(config_path, module_dir, &g->settings, err);
    if (rc != 0) {
        free(g->settings_refs);
        free(g);
        return NULL;
    }
    tw_settings_t *s = g->settings;
    /* As root, before any worker: a worker never opens a key file. */
    if (tw_tls_material_load(s, &g->tls, err) != 0) {
        tw_generation_free(g);
        return NULL;
    }
    g->config_hash = text ? hash_bytes(text, len) : hash_file(config_path);
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

tw_generation_t *tw_generation_prepare(const char *config_path, const char *module_dir,
                                       unsigned number, tw_conf_error_t *err)
{
    return prepare(config_path, NULL, 0, module_dir, number, err);
}

tw_generation_t *tw_generation_prepare_string(const char *name, const char *text, size_t len,
                                              const char *module_dir, unsigned number,
                                              tw_conf_error_t *err)
{
    return prepare(name, text, len, module_dir, number, err);
}

/* ---- quarantine (master) ------------------------------------------------- */

tw_generation_t *tw_generation_quarantine(const tw_generation_t *from, unsigned number,
                                          const char *const *disabled, size_t disabled_count)
{
    tw_generation_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->number = number;
    g->settings = from->settings;
    g->settings_refs = from->settings_refs;
    ++*g->settings_refs;
    g->workers = from->workers;
    g->snapshots = calloc(from->snapshot_count ? from->snapshot_count : 1, sizeof *g->snapshots);
    g->disabled = calloc(disabled_count ? disabled_count : 1, sizeof *g->disabled);
    if (!g->snapshots || !g->disabled)
        goto fail;
    for (size_t i = 0; i < from->snapshot_count; i++) {
        tw_snapshot_t *snap = &g->snapshots[i];
        snap->node = from->snapshots[i].node;
        snap->memfd = fcntl(from->snapshots[i].memfd, F_DUPFD_CLOEXEC, 0);
        snap->path = strdup(from->snapshots[i].path);
        g->snapshot_count = i + 1;
        if (snap->memfd < 0 || !snap->path)
            goto fail;
    }
    for (size_t i = 0; i < disabled_count; i++) {
        if (!(g->disabled[i] = strdup(disabled[i])))
            goto fail;
        g->disabled_count = i + 1;
    }
    return g;
fail:;
    int e = errno;
    tw_generation_free(g);
    errno = e;
    return NULL;
}

bool tw_generation_disabled(const tw_generation_t *g, const char *name)
{
    for (size_t i = 0; i < g->disabled_count; i++)
        if (strcmp(g->disabled[i], name) == 0)
            return true;
    return false;
}

void tw_generation_follow(tw_generation_t *g, const tw_generation_t *previous)
{
    if (previous)
        tw_tls_material_follow(g->tls, previous->tls);
}

void tw_generation_free(tw_generation_t *g)
{
    if (!g)
        return;
    tw_tls_material_free(g->tls);
    for (size_t i = 0; i < g->snapshot_count; i++) {
        if (g->snapshots[i].memfd >= 0)
            close(g->snapshots[i].memfd);
        free(g->snapshots[i].path);
    }
    free(g->snapshots);
    free(g->listen_fds);
    for (size_t i = 0; i < g->disabled_count; i++)
        free(g->disabled[i]);
    free(g->disabled);
    if (g->settings_refs && --*g->settings_refs == 0) {
        tw_settings_free(g->settings);
        free(g->settings_refs);
    }
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

bool tw_generation_handoff(const tw_generation_t *g)
{
    return g->settings->reload_handoff;
}

uint64_t tw_generation_drain_bound_ms(const tw_generation_t *g)
{
    uint64_t ms = g->settings->timeouts.shutdown_ms;
    for (size_t i = 0; i < g->settings->nservers; i++) {
        const tw_server_conf_t *srv = &g->settings->servers[i];
        for (size_t r = 0; r < srv->nroutes; r++)
            if (srv->routes[r].http.drain_keep_ms > ms)
                ms = srv->routes[r].http.drain_keep_ms;
    }
    return ms;
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

unsigned tw_generation_crash_max(const tw_generation_t *g)
{
    return g->settings->crash_policy.max;
}

uint64_t tw_generation_crash_within_ms(const tw_generation_t *g)
{
    return g->settings->crash_policy.within_ms;
}

int tw_generation_crash_action(const tw_generation_t *g)
{
    return (int)g->settings->crash_policy.action;
}

size_t tw_generation_shared_zones(const tw_generation_t *g)
{
    return (size_t)g->settings->shared_zones;
}
