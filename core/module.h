/* module.h — the module loader: snapshots of plugin files, the descriptor
 * checks, and the registry of one generation's loaded modules.
 *
 * The two halves run in different processes:
 *   master   tw_module_snapshot: copies the .so's bytes into a sealed memfd.
 *            It reads bytes and runs no plugin code, so a broken plugin can
 *            never take the master down.
 *   worker   tw_module_load: dlopens the inherited memfd through
 *            /proc/self/fd/N and checks the descriptor (magic, ABI major,
 *            ABI minor, struct size, name) before anything else touches it.
 *
 * Why snapshots: dlopen of a path that is already loaded returns the old
 * object (a rebuilt plugin would silently not reload), and overwriting a
 * mapped .so in place crashes the processes that run it. A memfd per
 * generation makes a rebuilt plugin take effect on the next reload and
 * keeps the running generation's code immutable.
 *
 * Every function that can fail writes one line of text into err: the file,
 * what was expected, what was found and how to fix it. Callers prefix the
 * config position of the modules[] entry that named the file:
 *   conf/site.yaml:4:5: modules[1]: plugins/my.so: built for ABI 2.0, ... */
#ifndef TWISTER_CORE_MODULE_H
#define TWISTER_CORE_MODULE_H

#include <stddef.h>

#include "twister/module.h"

/* Copies the file at path into a new sealed memfd (close-on-exec; a forked
 * worker inherits it, only exec drops it) and stores it in *memfd_out.
 * Refuses what cannot be a plugin (not a regular file, not an ELF shared
 * object) so that such mistakes surface when the config is read. Returns 0,
 * or -1 with the reason in err. */
int tw_module_snapshot(const char *path, int *memfd_out, char *err, size_t errlen);

/* Loads a snapshot: dlopen("/proc/self/fd/N", RTLD_NOW | RTLD_LOCAL), finds
 * TW_MODULE_SYMBOL and checks the descriptor (tw_module_check). display_path
 * is the file the snapshot was taken from, for messages. On success stores
 * the descriptor in *out and the dlopen handle (for tw_module_unload; a
 * process that never unloads has nothing to free) in *handle, and returns
 * 0; the caller may close memfd at any time after.
 * Returns -1 with the reason in err (dlerror() text verbatim when dlopen
 * fails). Runs the plugin's ELF constructors, if it has any: call it only
 * where plugin code may run (a worker or the -t checker). */
int tw_module_load(int memfd, const char *display_path, const tw_module_t **out, void **handle,
                   char *err, size_t errlen);

/* Checks a descriptor the way tw_module_load does, in this order: magic, ABI
 * major (equal), ABI minor (the server's at least the plugin's), struct
 * size (at least the fields this server reads), name (non-empty, letters,
 * digits, '_' and '-': it is the module's config key). Reads nothing of the
 * descriptor beyond what an earlier check proved is there. Returns 0, or -1
 * with the reason in err. */
int tw_module_check(const tw_module_t *m, const char *display_path, char *err, size_t errlen);

/* Drops a handle from tw_module_load (dlclose). The descriptor and every
 * function of the module are invalid afterwards. NULL is a no-op. Servers
 * do not unload (a process exits instead: unmapping code that may still
 * have callbacks registered is the classic in-place reload crash); tests
 * do. */
void tw_module_unload(void *handle);
/* m's table of variables (NULL-name terminated), or NULL when it has none
 * or its descriptor predates the field (ABI < 1.3). */
const tw_variable_t *tw_module_variables(const tw_module_t *m);

/* ---- the registry of a generation's modules ---------------------------- */

/* One loaded module. */
typedef struct {
    const tw_module_t *module; /* the checked descriptor */
    void *handle;              /* from tw_module_load; NULL for a built-in */
    char *path;                /* the file it was loaded from (for messages, -M) */
    char *configured;          /* the modules[] entry as written ("hello") */
} tw_loaded_module_t;

/* The modules of one generation, in config order. A module's position is
 * its index: the engine keeps per-module arrays (route confs, request
 * contexts) indexed by it. Zero-initialise or tw_modules_init it. */
typedef struct tw_modules {
    tw_loaded_module_t *items;
    size_t count;
    size_t cap;
} tw_modules_t;

/* Makes mods empty. */
void tw_modules_init(tw_modules_t *mods);

/* Appends a loaded module; path and configured are copied (configured may
 * be NULL). The registry owns handle on success; on failure the caller
 * still does. Errors (-1, reason in err): a module with the same name is
 * already registered ("module name 'hello' is already used by ..."), or
 * ENOMEM. */
int tw_modules_add(tw_modules_t *mods, const tw_module_t *module, void *handle, const char *path,
                   const char *configured, char *err, size_t errlen);

/* tw_module_load then tw_modules_add; unloads the module again if adding
 * it fails. Returns 0 or -1 with the reason in err. */
int tw_modules_load(tw_modules_t *mods, int memfd, const char *path, const char *configured,
                    char *err, size_t errlen);

/* The index of module (compared by descriptor address, as plugins pass
 * their own descriptor to tw_request_ctx & co.), or -1 if it is not
 * registered. A linear scan: a server loads a handful of modules, and a
 * few pointer compares beat any hash at that size. */
int tw_modules_index(const tw_modules_t *mods, const tw_module_t *module);

/* The module named name, or NULL. */
const tw_loaded_module_t *tw_modules_find(const tw_modules_t *mods, const char *name);

/* Unloads every module, newest first, and empties mods (for tests and the
 * -t checker; see tw_module_unload). */
void tw_modules_unload(tw_modules_t *mods);

/* Empties mods and frees its bookkeeping but leaves every module loaded:
 * what a server does when a runtime ends, since code that may still have
 * callbacks registered must stay mapped until the process exits. */
void tw_modules_forget(tw_modules_t *mods);

#endif
