/* twister/module.h — how a plugin describes itself to the server.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * TW_MODULE_SYMBOL, a const tw_module_t:
 *
 *     #include <twister/twister.h>
 *     static int hello_content(tw_request_t *r) {
 *         return tw_response_send(r, 200, "text/plain", "hi\n", 3) ? TW_ERROR : TW_DONE;
 *     }
 *     TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
 *         TW_MODULE_HEADER,
 *         .name = "hello",
 *         .version = "1.0.0",
 *         .content = hello_content,
 *     };
 *
 * The loader checks, before touching anything else: the magic number, the
 * ABI major (must equal the server's), the ABI minor (the server's must be
 * at least the plugin's), the struct size, then that no other loaded module
 * has the same name. Every hook is optional.
 *
 * Lifecycle, per generation of workers (a SIGHUP makes a new generation):
 *   configure(GLOBAL) once, configure(ROUTE) for each route that uses the
 *   module, register_phases, init_worker ... requests ... exit_worker.
 * All hooks run in worker processes (or the -t checker), never in the
 * master, so a crashing plugin can only fail a reload, not the server. */
#ifndef TWISTER_MODULE_H
#define TWISTER_MODULE_H

#include <stdint.h>

#include "twister/conf.h"
#include "twister/http.h"
#include "twister/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ABI: the major changes when anything existing changes (rebuild plugins);
 * the minor when something is only added. */
#define TW_ABI_MAJOR 1
#define TW_ABI_MINOR 3
#define TW_MODULE_MAGIC 0x54574d31u /* "TWM1" */
/* The descriptor symbol; the ABI major is part of its name. */
#define TW_MODULE_SYMBOL "twister_module_v1"
/* Gives the descriptor default visibility even under -fvisibility=hidden. */
#define TW_MODULE_EXPORT __attribute__((visibility("default")))
/* The fields the loader checks; put it first in every descriptor. */
#define TW_MODULE_HEADER                                                                           \
    .magic = TW_MODULE_MAGIC, .abi_major = TW_ABI_MAJOR, .abi_minor = TW_ABI_MINOR,                \
    .size = sizeof(tw_module_t)

typedef struct tw_configure tw_configure_t;
typedef struct tw_phases tw_phases_t;
typedef struct tw_worker tw_worker_t;

typedef enum {
    TW_SCOPE_GLOBAL = 1, /* the top-level key named after the module */
    TW_SCOPE_ROUTE = 2,  /* a route's key named after the module */
} tw_conf_scope_t;

/* Handler order within a phase: lower runs first; equal orders run in the
 * order the modules are listed under `modules:` in the config. */
enum {
    TW_ORDER_FIRST = 0,
    TW_ORDER_MIDDLE = 500,
    TW_ORDER_LAST = 1000,
};

struct tw_module {
    uint32_t magic;          /* TW_MODULE_MAGIC */
    uint16_t abi_major;      /* TW_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;      /* TW_ABI_MINOR the plugin was built with */
    uint32_t size;           /* sizeof(tw_module_t) the plugin was built with */
    const char *name;        /* unique; also the key of its config sections */
    const char *version;     /* the plugin's own version, shown by -M */
    const char *description; /* one line, shown by -M; may be NULL */

    /* Parses the module's settings into *conf (allocate it with
     * tw_configure_alloc). Called with TW_SCOPE_GLOBAL once, node being the
     * top-level section named after the module or NULL; then with
     * TW_SCOPE_ROUTE for each route that names the module as its handler or
     * has a section named after it (node NULL if it has none). Returns 0,
     * or -1 after filling err (use tw_conf_error). */
    int (*configure)(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                     void **conf, tw_conf_error_t *err);
    /* Adds phase handlers and filters (tw_phases_add...). Returns 0 or -1
     * after filling err. */
    int (*register_phases)(tw_phases_t *phases, tw_conf_error_t *err);
    /* Runs in each worker before it accepts connections (open files, start
     * timers). Returns 0 or -1 after filling err; the generation then
     * fails and a reload is rolled back. */
    int (*init_worker)(tw_worker_t *worker, tw_conf_error_t *err);
    /* Runs in each worker as it exits (also after a failed init). */
    void (*exit_worker)(tw_worker_t *worker);
    /* The CONTENT handler for routes whose `handler:` names this module,
     * or NULL for a module that only filters or guards. */
    tw_handler_fn content;
};

/* ---- configure-time helpers ------------------------------------------- */

/* Allocates n zeroed bytes that live as long as the generation. NULL on
 * ENOMEM. */
void *tw_configure_alloc(tw_configure_t *cf, size_t n);
/* Copies a string into generation memory. NULL on ENOMEM. */
char *tw_configure_strdup(tw_configure_t *cf, const char *s);
/* In TW_SCOPE_ROUTE: the module's global conf (NULL if it has none). */
void *tw_configure_global_conf(tw_configure_t *cf);
/* The directory of the main config file, for resolving relative paths. */
const char *tw_configure_dir(tw_configure_t *cf);
/* Makes the server accept an extra request method (e.g. "PURGE") instead
 * of answering it 501. Errors: EINVAL for a non-token name. */
int tw_configure_add_method(tw_configure_t *cf, const char *method);
/* In TW_SCOPE_ROUTE, for a route whose handler is this module: the
 * methods (a NULL-terminated list; "GET" implies "HEAD") its content
 * handler accepts there. A route without its own `methods:` list then
 * answers OPTIONS with exactly these in Allow and any other method 405
 * with that Allow, before the handler runs; a route's `methods:` list wins
 * over the declaration. The strings are copied. Errors: EINVAL for an
 * empty list, a non-token method, the wrong scope or a module that is not
 * the route's handler; ENOMEM. Since ABI 1.2. */
int tw_configure_set_methods(tw_configure_t *cf, const char *const *methods);

/* ---- phase registration ------------------------------------------------ */

/* Adds handler to phase (POST_READ, REWRITE, ACCESS or LOG; CONTENT
 * handlers come from the descriptor, FIND_ROUTE is the core's) with order
 * (TW_ORDER_* or any number 0..1000). Errors: EINVAL. */
int tw_phases_add(tw_phases_t *phases, tw_phase_t phase, tw_handler_fn handler, int order);
/* Adds a header filter; filters run in ascending order. Errors: EINVAL. */
int tw_phases_add_header_filter(tw_phases_t *phases, tw_header_filter_fn filter, int order);
/* Adds a header filter that also runs for the error pages the core
 * produces itself (404, a refusal's 403, ...), which plain header filters
 * never see; its failure there is logged and the page still goes out.
 * Since ABI 1.2. Errors: EINVAL. */
int tw_phases_add_header_filter_always(tw_phases_t *phases, tw_header_filter_fn filter, int order);
/* Adds a body filter; filters run in ascending order. Errors: EINVAL. */
int tw_phases_add_body_filter(tw_phases_t *phases, tw_body_filter_fn filter, int order);

/* ---- the worker -------------------------------------------------------- */

/* The worker's loop (for timers and fd watches that outlive requests). */
tw_loop_t *tw_worker_loop(tw_worker_t *worker);
/* The worker's index within its generation, from 0. */
unsigned tw_worker_index(const tw_worker_t *worker);
/* The generation number: 1 for the first, then one more for every
 * generation the master starts (a reload, or a quarantine), whether it
 * comes up or fails; so numbers of a serving generation can have gaps. */
unsigned tw_worker_generation(const tw_worker_t *worker);
/* The module's global conf in this generation (NULL if none). */
void *tw_worker_global_conf(const tw_worker_t *worker, const tw_module_t *module);
/* Sets the module's per-worker state: one pointer per module and worker,
 * for what static variables would otherwise hold (open files, counters,
 * caches), so that a module needs no global state. The module owns what
 * it points to (allocate it in init_worker, free it in exit_worker).
 * Errors: EINVAL if module is not loaded in this generation. Since ABI
 * 1.2. */
int tw_worker_set_ctx(tw_worker_t *worker, const tw_module_t *module, void *ctx);
/* The module's per-worker state (NULL until set, and for a NULL worker).
 * Since ABI 1.2. */
void *tw_worker_ctx(const tw_worker_t *worker, const tw_module_t *module);
/* The worker a request runs in (for its index, generation and the
 * module's per-worker state), owned by the server; NULL only where no
 * worker runs (a configuration check). Since ABI 1.2. */
tw_worker_t *tw_request_worker(const tw_request_t *r);

#ifdef __cplusplus
}
#endif
#endif
