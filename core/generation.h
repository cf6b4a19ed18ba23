/* generation.h — one generation of configuration as the master holds it:
 * the parsed settings, the resolved worker count, the module snapshots
 * taken when the config was read, and the listening sockets it serves.
 *
 * This is the master's half. Preparing runs no plugin code, so a broken
 * plugin can never take the master down; the other half, runtime.h, brings
 * a prepared generation to life in a worker (or the -t checker) by loading
 * the snapshots and running the modules' hooks. Nothing here is global: a
 * reload prepares a new generation beside the old one, and a failed reload
 * just frees it. */
#ifndef TWISTER_GENERATION_H
#define TWISTER_GENERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "twister/conf.h"

typedef struct tw_settings tw_settings_t;
struct tw_zone_region;

/* A module file snapshot: the bytes of the .so copied into a memfd when the
 * config was read, so that a rebuilt plugin takes effect on reload and
 * overwriting the file in place cannot crash running workers. */
typedef struct {
    int memfd;
    char *path;                 /* the resolved file path */
    const tw_conf_node_t *node; /* the modules[] entry, for errors */
} tw_snapshot_t;

typedef struct tw_generation {
    unsigned number; /* 1, 2, ... */
    tw_settings_t *settings;
    unsigned *settings_refs; /* generations sharing settings (one config read) */
    unsigned workers;        /* resolved worker count (auto → CPUs) */
    tw_snapshot_t *snapshots;
    size_t snapshot_count;
    int *listen_fds; /* per settings listener, set by the master */
    char **disabled; /* names of the modules quarantined in this generation */
    size_t disabled_count;
    /* Certificates and keys read by the master (tls/tls_context.h), NULL
     * without TLS. */
    struct tw_tls_material *tls;
    struct tw_zone_region *zones; /* the master's shared-zone region, or NULL */
    uint64_t config_hash;         /* FNV-1a of the main config file's bytes */
} tw_generation_t;

/* Reads config_path and snapshots every module file. module_dir is the
 * default for `module_dir:`. Runs no plugin code. Returns NULL with a
 * file:line:col message in err. */
tw_generation_t *tw_generation_prepare(const char *config_path, const char *module_dir,
                                       unsigned number, tw_conf_error_t *err);
/* Like tw_generation_prepare, from the len bytes of YAML at text; name is
 * the file name messages give and its directory the config directory (the
 * test library runs a config string without writing it anywhere). */
tw_generation_t *tw_generation_prepare_string(const char *name, const char *text, size_t len,
                                              const char *module_dir, unsigned number,
                                              tw_conf_error_t *err);
/* A new generation numbered number from the same config read as from
 * (settings shared, snapshots duplicated), with the disabled_count
 * modules in disabled quarantined: a worker loads them but runs none of
 * their hooks, and their routes answer 503. The names are copied. Runs no
 * plugin code. Returns NULL with errno set. */
tw_generation_t *tw_generation_quarantine(const tw_generation_t *from, unsigned number,
                                          const char *const *disabled, size_t disabled_count);
/* True if module name is quarantined in g. */
bool tw_generation_disabled(const tw_generation_t *g, const char *name);
/* On reload: g's session tickets keep accepting previous's (see
 * tls/tls_tickets.h). previous may be NULL. */
void tw_generation_follow(tw_generation_t *g, const tw_generation_t *previous);
/* Closes the snapshots and frees everything (not the listen fds). */
void tw_generation_free(tw_generation_t *g);

/* Settings the master needs, read through the generation so that the
 * master does not depend on the settings layout. */
size_t tw_generation_listener_count(const tw_generation_t *g);
/* The i-th distinct listen address; *len receives its size. */
const struct sockaddr *tw_generation_listener(const tw_generation_t *g, size_t i, socklen_t *len);
/* The pid file path (absolute or relative to the cwd), or NULL for none. */
const char *tw_generation_pid_file(const tw_generation_t *g);
/* "stderr" or a path. */
const char *tw_generation_error_log(const tw_generation_t *g);
/* The configured log level name. */
const char *tw_generation_log_level(const tw_generation_t *g);
/* The user to run workers as, or NULL. */
const char *tw_generation_user(const tw_generation_t *g);
/* timeouts.shutdown in milliseconds. */
uint64_t tw_generation_shutdown_ms(const tw_generation_t *g);
/* reload: { handoff }: whether a reload to g hands the old generation's
 * idle connections to g's workers. */
bool tw_generation_handoff(const tw_generation_t *g);
/* The longest a worker of g may drain: timeouts.shutdown, or a route's
 * longer drain: { keep }. */
uint64_t tw_generation_drain_bound_ms(const tw_generation_t *g);
/* How many old generations may drain at once. */
unsigned tw_generation_max_draining(const tw_generation_t *g);
/* listen(2) backlog. */
int tw_generation_backlog(const tw_generation_t *g);
/* Per-worker connection cap. */
unsigned tw_generation_worker_connections(const tw_generation_t *g);
/* crash_policy: crashes of one module that spend its budget, the window
 * in milliseconds, and the action (a tw_crash_action_t, settings.h). */
unsigned tw_generation_crash_max(const tw_generation_t *g);
uint64_t tw_generation_crash_within_ms(const tw_generation_t *g);
int tw_generation_crash_action(const tw_generation_t *g);
/* The configured size of the shared-zone region (shared_zones). */
size_t tw_generation_shared_zones(const tw_generation_t *g);

#endif
