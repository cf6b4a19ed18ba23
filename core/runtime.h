/* runtime.h — a generation brought to life in the process that runs its
 * plugins: the loaded modules, their configs, the compiled phase table,
 * the HTTP server context built from them, and (in a worker) the worker
 * that the plugin API's tw_worker_t stands for.
 *
 * generation.h is the master's half (parse + snapshot, no plugin code);
 * this is the other half, used by a worker and by the -t checker. It owns
 * everything a plugin can see of the server outside a request, so the
 * process driver (worker.c) only starts a runtime, hands its HTTP server
 * the accepted connections and frees it: nothing here calls back into the
 * driver, and a test or another driver can run a runtime alone. */
#ifndef TWISTER_RUNTIME_H
#define TWISTER_RUNTIME_H

#include <stdio.h>

#include "activity.h"
#include "generation.h"
#include "twister/conf.h"
#include "twister/loop.h"
#include "twister/module.h"

typedef struct tw_runtime tw_runtime_t;
struct tw_http_server;

/* The worker a runtime serves, as its driver knows it. */
typedef struct {
    tw_loop_t *loop;         /* the worker's loop */
    unsigned index;          /* within its generation, from 0 */
    tw_activity_t *activity; /* its crash-safe slot, or NULL */
} tw_runtime_worker_t;

/* Loads g's module snapshots and runs configure (global, then per route)
 * and register_phases, then builds the HTTP server context. With a worker
 * (NULL for the -t checker) it also runs every init_worker hook, recording
 * each in the worker's crash slot. g must outlive the runtime. Returns
 * NULL with the error (naming the config file:line:col and the module) in
 * err. */
tw_runtime_t *tw_runtime_activate(tw_generation_t *g, const tw_runtime_worker_t *worker,
                                  tw_conf_error_t *err);
/* The same without a worker, for the -t checker: configure and
 * register_phases run, init_worker does not. Each hook is recorded in
 * activity (may be NULL) so that the process waiting for this one can name
 * a hook that crashed or hung. */
tw_runtime_t *tw_runtime_check(tw_generation_t *g, tw_activity_t *activity, tw_conf_error_t *err);
/* Runs exit_worker hooks (of the modules whose init_worker ran) and frees
 * the runtime. Modules stay mapped: a process exits soon after, and
 * unmapping code that may still have callbacks registered is the classic
 * in-place reload crash. NULL is a no-op. */
void tw_runtime_free(tw_runtime_t *rt);
/* The HTTP server context of a runtime (owned by it). */
struct tw_http_server *tw_runtime_http(tw_runtime_t *rt);
/* Prints the loaded modules (name, version, ABI, file) to out. */
void tw_runtime_print_modules(const tw_runtime_t *rt, FILE *out);
/* The modules of the generation cf configures (config order), with their
 * quarantine flags, for resolving variables (request/variables.c). */
void tw_configure_modules(const tw_configure_t *cf, const tw_module_t *const **mods,
                          const bool **disabled, size_t *count);
/* The generation memory tw_configure_alloc takes from. */
struct tw_pool *tw_configure_pool(const tw_configure_t *cf);
/* Prints the compiled phase table to out. */
void tw_runtime_print_phases(const tw_runtime_t *rt, FILE *out);

#endif
