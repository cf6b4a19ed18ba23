/* runtime.c — a generation brought to life (see runtime.h).
 *
 * Activating, in a worker or the -t checker: dlopen the snapshots, check
 * every config key against the loaded modules' names, run the configure
 * hooks (global sections first, so that route hooks can see them, then per
 * route), collect the phase handlers into one table, build the HTTP server
 * context, and in a worker run the init_worker hooks. This file also
 * answers the configure-time and worker parts of the plugin API
 * (tw_configure_*, tw_worker_*), since both are views of the runtime. */
#include "runtime.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "crash_report.h"
#include "http_conn.h"
#include "module.h"
#include "phases.h"
#include "request/request.h"
#include "router.h"
#include "settings.h"
#include "tls/tls_context.h"
#include "twister/pool.h"
#include "twister/twister.h"
#include "zone.h"

/* What a worker is to the plugin API (module.h's tw_worker_t). */
struct tw_worker {
    tw_runtime_t *runtime;
    tw_loop_t *loop;
    unsigned index;
    unsigned generation;
    tw_activity_t *activity; /* crash-safe slot in memory shared with the master */
};

struct tw_runtime {
    tw_generation_t *gen;
    tw_pool_t *pool;             /* generation memory for configure hooks */
    tw_modules_t registry;       /* the loaded modules (module.c), config order */
    const tw_module_t **modules; /* their descriptors, for the HTTP engine */
    void **global_conf;          /* per module */
    bool *disabled;              /* per module: quarantined, none of its hooks run */
    size_t module_count;
    char **extra_methods; /* added by tw_configure_add_method */
    size_t extra_method_count;
    tw_phases_t *phases;
    tw_http_server_t http;
    struct tw_tls_server *tls; /* TLS contexts, NULL without TLS listeners */
    bool http_ready;
    bool has_worker;         /* false in the -t checker: no init/exit hooks */
    tw_activity_t *activity; /* crash-safe slot (worker or checker), or NULL */
    void **worker_ctx;       /* per module: tw_worker_set_ctx */
    struct tw_worker worker;
    size_t inited;                   /* modules whose init_worker succeeded */
    tw_zone_list_t zones;            /* declared by configure hooks */
    tw_zone_region_t *zones_region;  /* where they are attached */
    tw_zone_region_t *private_zones; /* mapped here when no master gave one */
    tw_counter_list_t counters;      /* tw_metrics_counter_declare */
    tw_zone_t *counters_zone;        /* the core zone they live in */
};

struct tw_configure {
    tw_runtime_t *rt;
    size_t module_index;
    tw_conf_scope_t scope;
    tw_route_t *route; /* in TW_SCOPE_ROUTE */
};

/* ---- the worker part of the plugin API (module.h) -------------------------- */

tw_loop_t *tw_worker_loop(tw_worker_t *worker)
{
    return worker->loop;
}

unsigned tw_worker_index(const tw_worker_t *worker)
{
    return worker->index;
}

unsigned tw_worker_generation(const tw_worker_t *worker)
{
    return worker->generation;
}

void *tw_worker_global_conf(const tw_worker_t *worker, const tw_module_t *module)
{
    const tw_runtime_t *rt = worker->runtime;
    for (size_t i = 0; i < rt->module_count; i++)
        if (rt->modules[i] == module)
            return rt->global_conf[i];
    return NULL;
}

static int module_slot(const tw_runtime_t *rt, const tw_module_t *module)
{
    for (size_t i = 0; i < rt->module_count; i++)
        if (rt->modules[i] == module)
            return (int)i;
    return -1;
}

int tw_worker_set_ctx(tw_worker_t *worker, const tw_module_t *module, void *ctx)
{
    int i = module_slot(worker->runtime, module);
    if (i < 0) {
        errno = EINVAL;
        return -1;
    }
    worker->runtime->worker_ctx[i] = ctx;
    return 0;
}

void *tw_worker_ctx(const tw_worker_t *worker, const tw_module_t *module)
{
    if (!worker)
        return NULL;
    int i = module_slot(worker->runtime, module);
    return i < 0 ? NULL : worker->runtime->worker_ctx[i];
}

/* ---- the configure-time API (module.h) ------------------------------------ */

void *tw_configure_alloc(tw_configure_t *cf, size_t n)
{
    return tw_pool_calloc(cf->rt->pool, n ? n : 1);
}

char *tw_configure_strdup(tw_configure_t *cf, const char *s)
{
    return s ? tw_pool_strndup(cf->rt->pool, s, strlen(s)) : NULL;
}

void *tw_configure_global_conf(tw_configure_t *cf)
{
    return cf->scope == TW_SCOPE_ROUTE ? cf->rt->global_conf[cf->module_index] : NULL;
}

const char *tw_configure_dir(tw_configure_t *cf)
{
    return cf->rt->gen->settings->config_dir;
}

tw_pool_t *tw_configure_pool(const tw_configure_t *cf)
{
    return cf->rt->pool;
}

void tw_configure_modules(const tw_configure_t *cf, const tw_module_t *const **mods,
                          const bool **disabled, size_t *count)
{
    *mods = cf->rt->modules;
    *disabled = cf->rt->disabled;
    *count = cf->rt->module_count;
}

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

int tw_configure_add_method(tw_configure_t *cf, const char *method)
{
    tw_runtime_t *rt = cf->rt;
    if (!method || !is_token(method) || strlen(method) > 32) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < rt->extra_method_count; i++)
        if (strcmp(rt->extra_methods[i], method) == 0)
            return 0;
    char **grown = tw_pool_alloc(rt->pool, (rt->extra_method_count + 1) * sizeof *grown);
    char *copy = tw_pool_strndup(rt->pool, method, strlen(method));
    if (!grown || !copy) {
        errno = ENOMEM;
        return -1;
    }
    if (rt->extra_method_count)
        memcpy(grown, rt->extra_methods, rt->extra_method_count * sizeof *grown);
    grown[rt->extra_method_count++] = copy;
    rt->extra_methods = grown;
    return 0;
}

int tw_configure_set_methods(tw_configure_t *cf, const char *const *methods)
{
    tw_runtime_t *rt = cf->rt;
    tw_route_t *route = cf->route;
    size_t n = 0;
    bool has_head = false;
    for (; methods && methods[n]; n++) {
        if (!is_token(methods[n]) || strlen(methods[n]) > 32) {
            errno = EINVAL;
            return -1;
        }
        has_head |= strcmp(methods[n], "HEAD") == 0;
    }
    if (n == 0 || cf->scope != TW_SCOPE_ROUTE || !route ||
        route->http.handler != rt->modules[cf->module_index]) {
        errno = EINVAL;
        return -1;
    }
    if (route->http.methods)
        return 0; /* the route's own `methods:` list wins */
    const char **list = tw_pool_calloc(rt->pool, (n + 2) * sizeof *list);
    size_t allow_len = 1;
    for (size_t i = 0; i < n; i++)
        allow_len += strlen(methods[i]) + 2;
    allow_len += 6; /* ", HEAD" */
    char *allow = tw_pool_alloc(rt->pool, allow_len);
    if (!list || !allow) {
        errno = ENOMEM;
        return -1;
    }
    size_t k = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!(list[k] = tw_configure_strdup(cf, methods[i]))) {
            errno = ENOMEM;
            return -1;
        }
        k++;
        if (strcmp(methods[i], "GET") == 0 && !has_head)
            list[k++] = "HEAD";
    }
    for (size_t i = 0; i < k; i++) {
        if (i)
            strcat(allow, ", ");
        strcat(allow, list[i]);
    }
    route->http.methods = list;
    route->http.allow = allow;
    route->http.methods_declared = true;
    return 0;
}

static bool extra_method_filter(const char *method, size_t len, void *arg)
{
    tw_runtime_t *rt = arg;
    for (size_t i = 0; i < rt->extra_method_count; i++)
        if (strlen(rt->extra_methods[i]) == len && memcmp(rt->extra_methods[i], method, len) == 0)
            return true;
    return false;
}

/* ---- shared zones (twister/zone.h) ------------------------------------------- */

int tw_zone_declare(tw_configure_t *cf, const char *name, size_t size, tw_zone_init_fn init,
                    void *arg, tw_zone_t **out)
{
    tw_runtime_t *rt = cf->rt;
    size_t capacity = rt->gen->zones ? tw_zone_region_size(rt->gen->zones)
                                     : (size_t)rt->gen->settings->shared_zones;
    return tw_zone_list_add(&rt->zones, rt->pool, rt->modules[cf->module_index]->name, name, size,
                            init, arg, capacity, out);
}

int tw_server_stats(const tw_worker_t *worker, tw_server_stats_t *out)
{
    if (!worker || !worker->runtime->zones_region) {
        errno = EINVAL;
        return -1;
    }
    const tw_server_stats_t *s = tw_zone_region_stats(worker->runtime->zones_region);
    out->generation = tw_counter_get(&s->generation);
    out->config_hash = tw_counter_get(&s->config_hash);
    out->reloads_ok = tw_counter_get(&s->reloads_ok);
    out->reloads_failed = tw_counter_get(&s->reloads_failed);
    out->worker_crashes = tw_counter_get(&s->worker_crashes);
    out->worker_exits = tw_counter_get(&s->worker_exits);
    out->worker_start_failures = tw_counter_get(&s->worker_start_failures);
    out->started_unix = tw_counter_get(&s->started_unix);
    out->workers_reaped = tw_counter_get(&s->workers_reaped);
    return 0;
}

int tw_server_reload_stats(const tw_worker_t *worker, tw_reload_stats_t *out)
{
    if (!worker || !worker->runtime->zones_region) {
        errno = EINVAL;
        return -1;
    }
    const tw_reload_stats_t *s = tw_zone_region_reload_stats(worker->runtime->zones_region);
    out->handed_off = tw_counter_get(&s->handed_off);
    out->kept = tw_counter_get(&s->kept);
    out->closed = tw_counter_get(&s->closed);
    return 0;
}

int tw_metrics_counter_declare(tw_configure_t *cf, const char *name, const char *help,
                               const char *labels, tw_metrics_counter_t **out)
{
    return tw_counter_list_add(&cf->rt->counters, cf->rt->pool, name, help, labels, out);
}

int tw_metrics_counters_each(const tw_worker_t *worker, tw_metrics_counter_fn fn, void *arg)
{
    if (!worker || !tw_zone_data(worker->runtime->counters_zone)) {
        errno = EINVAL;
        return -1;
    }
    return tw_counters_each(tw_zone_data(worker->runtime->counters_zone), fn, arg);
}

int tw_worker_conn_stats(const tw_worker_t *worker, tw_worker_conn_stats_t *out)
{
    if (!worker || !worker->runtime->http_ready) {
        errno = EINVAL;
        return -1;
    }
    const tw_http_server_t *h = &worker->runtime->http;
    out->accepted = h->counters.accepted;
    out->open = tw_http_server_connections(h);
    out->closed = out->accepted > out->open ? out->accepted - out->open : 0;
    out->timeouts = h->counters.timeouts;
    out->requests = h->counters.requests;
    out->aborted = h->counters.aborted;
    out->idle = tw_http_server_resting(h);
    return 0;
}

bool tw_worker_draining(const tw_worker_t *worker)
{
    return worker->runtime->http_ready && worker->runtime->http.draining;
}

/* In a worker: puts the declared zones in the master's region (or, for a
 * runtime driven without a master, in one of its own). */
static int attach_zones(tw_runtime_t *rt, tw_conf_error_t *err)
{
    tw_zone_region_t *region = rt->gen->zones;
    if (!region) {
        region = rt->private_zones = tw_zone_region_map(rt->gen->settings->shared_zones);
        if (!region) {
            snprintf(err->message, sizeof err->message, "shared zones: mmap: %s", strerror(errno));
            return -1;
        }
    }
    rt->zones_region = region;
    if (tw_zone_list_add(&rt->zones, rt->pool, "twister", "counters", tw_counters_zone_size(), NULL,
                         NULL, tw_zone_region_size(region), &rt->counters_zone) != 0) {
        snprintf(err->message, sizeof err->message, "shared zones: the counters zone: %s",
                 strerror(errno));
        return -1;
    }
    if (tw_zone_list_attach(&rt->zones, region, rt->gen->number, err->message,
                            sizeof err->message) != 0)
        return -1;
    tw_counter_list_attach(&rt->counters, tw_zone_data(rt->counters_zone));
    return 0;
}

/* ---- activating (worker, -t) ------------------------------------------------ */

static int module_index_by_name(const tw_runtime_t *rt, const char *name)
{
    const tw_loaded_module_t *lm = tw_modules_find(&rt->registry, name);
    return lm ? tw_modules_index(&rt->registry, lm->module) : -1;
}

/* Runs a module's configure hook. where is the node an error should point
 * at when the module had no node of its own to blame (a route that names
 * the module as its handler without a section for it, or no global
 * section): the message then gets where's file:line:column. */
static int run_configure(tw_runtime_t *rt, size_t mi, tw_route_t *route, const tw_conf_node_t *node,
                         const tw_conf_node_t *where, const char *label, void **out,
                         tw_conf_error_t *err)
{
    const tw_module_t *m = rt->modules[mi];
    tw_conf_scope_t scope = route ? TW_SCOPE_ROUTE : TW_SCOPE_GLOBAL;
    *out = NULL;
    if (!m->configure || rt->disabled[mi])
        return 0;
    tw_configure_t cf = {.rt = rt, .module_index = mi, .scope = scope, .route = route};
    err->message[0] = '\0';
    /* A hook that crashes or hangs is named by the process that waits for
     * this one (the master, or the -t parent). */
    tw_activity_enter(rt->activity, m->name, "configure", label, strlen(label));
    int rc = m->configure(&cf, scope, node, out, err);
    tw_activity_leave(rt->activity);
    if (rc != 0) {
        if (!err->message[0])
            snprintf(err->message, sizeof err->message,
                     "module %s: configure failed without saying why", m->name);
        const char *file = where ? tw_conf_file(where) : NULL;
        if (file && strncmp(err->message, file, strlen(file)) != 0) {
            char copy[sizeof err->message];
            memcpy(copy, err->message, sizeof copy);
            tw_conf_error(err, where, "%s: %.900s", m->name, copy);
        }
        return -1;
    }
    return 0;
}

/* A module is mapped from its memfd snapshot, "/proc/self/fd/N" to the
 * loader: a backtrace should name the file an author can give addr2line. */
static void name_modules_for_backtraces(tw_runtime_t *rt)
{
    size_t n = rt->module_count;
    const void **anchors = tw_pool_alloc(rt->pool, (n ? n : 1) * sizeof *anchors);
    const char **names = tw_pool_alloc(rt->pool, (n ? n : 1) * sizeof *names);
    if (!anchors || !names)
        return;
    for (size_t i = 0; i < n; i++) {
        anchors[i] = rt->modules[i];
        names[i] = rt->registry.items[i].path;
    }
    tw_crash_report_scan(anchors, names, n);
}

/* Loads every snapshot into the registry, which refuses a module name that
 * is already taken. */
static int load_modules(tw_runtime_t *rt, tw_conf_error_t *err)
{
    tw_generation_t *g = rt->gen;
    size_t n = g->snapshot_count;
    rt->modules = tw_pool_calloc(rt->pool, (n ? n : 1) * sizeof *rt->modules);
    rt->global_conf = tw_pool_calloc(rt->pool, (n ? n : 1) * sizeof *rt->global_conf);
    rt->disabled = tw_pool_calloc(rt->pool, (n ? n : 1) * sizeof *rt->disabled);
    rt->worker_ctx = tw_pool_calloc(rt->pool, (n ? n : 1) * sizeof *rt->worker_ctx);
    if (!rt->modules || !rt->global_conf || !rt->disabled || !rt->worker_ctx) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char why[900];
        const tw_snapshot_t *snap = &g->snapshots[i];
        if (tw_modules_load(&rt->registry, snap->memfd, snap->path, tw_conf_scalar(snap->node), why,
                            sizeof why) != 0)
            return tw_conf_error(err, snap->node, "%s", why);
        rt->modules[i] = rt->registry.items[i].module;
        rt->disabled[i] = tw_generation_disabled(g, rt->modules[i]->name);
        rt->module_count = i + 1;
    }
    char why[900];
    int bad = tw_variables_check_modules(rt->modules, rt->module_count, why, sizeof why);
    if (bad >= 0)
        return tw_conf_error(err, g->snapshots[bad].node, "%s", why);
    if (rt->has_worker)
        name_modules_for_backtraces(rt);
    return 0;
}

/* ---- quarantine ------------------------------------------------------------ */

/* A route whose handler is quarantined answers with this core responder
 * instead: its own descriptor, so that the crash record and the log never
 * blame the quarantined module for what the core does. */
static int answer_quarantined(tw_request_t *r);
static const tw_module_t quarantine_responder = {
    TW_MODULE_HEADER,
    .name = "quarantine",
    .version = TW_VERSION,
    .description = "answers 503 for the routes of a quarantined module",
    .content = answer_quarantined,
};

/* How long a client should wait before it retries: the quarantine lasts
 * until the next reload, which nobody can predict; a minute is what
 * peers answer for maintenance. */
#define QUARANTINE_RETRY_AFTER "60"

static int answer_quarantined(tw_request_t *r)
{
    static const char body[] = "503 Service Unavailable\n";
    if (tw_response_set_header(r, "Retry-After", QUARANTINE_RETRY_AFTER) != 0)
        return TW_ERROR;
    return tw_response_send(r, 503, "text/plain", body, sizeof body - 1) == 0 ? TW_DONE : TW_ERROR;
}

static int configure_all(tw_runtime_t *rt, tw_conf_error_t *err)
{
    tw_settings_t *s = rt->gen->settings;
    const char **names = tw_pool_alloc(rt->pool, (rt->module_count + 1) * sizeof *names);
    if (!names)
        return tw_conf_error(err, tw_conf_root(s->doc), "out of memory");
    for (size_t i = 0; i < rt->module_count; i++)
        names[i] = rt->modules[i]->name;
    if (tw_settings_check_modules(s, names, rt->module_count, err) != 0)
        return -1;

    /* Global sections first, so that route configure hooks can see them. */
    for (size_t i = 0; i < rt->module_count; i++) {
        const tw_conf_node_t *node = NULL;
        for (size_t k = 0; k < s->nsections; k++)
            if (strcmp(s->sections[k].name, rt->modules[i]->name) == 0)
                node = s->sections[k].node;
        if (run_configure(rt, i, NULL, node, tw_conf_root(s->doc), "global section",
                          &rt->global_conf[i], err) != 0)
            return -1;
    }
    for (size_t si = 0; si < s->nservers; si++) {
        tw_server_conf_t *srv = &s->servers[si];
        for (size_t ri = 0; ri < srv->nroutes; ri++) {
            tw_route_t *route = &srv->routes[ri];
            char label[96];
            snprintf(label, sizeof label, "route servers[%zu].routes[%zu]", si, ri);
            void **confs =
                tw_pool_calloc(rt->pool, (rt->module_count ? rt->module_count : 1) * sizeof *confs);
            if (!confs)
                return tw_conf_error(err, route->node, "out of memory");
            route->http.module_conf = confs;
            int handler = -1;
            if (route->handler) {
                handler = module_index_by_name(rt, route->handler);
                if (handler < 0)
                    return tw_conf_error(err, route->handler_node, "no loaded module is named '%s'",
                                         route->handler);
                if (!rt->modules[handler]->content)
                    return tw_conf_error(err, route->handler_node,
                                         "module '%s' has no content handler, so it cannot be a "
                                         "route's handler",
                                         route->handler);
                route->http.handler = rt->modules[handler];
                route->http.content = rt->modules[handler]->content;
                if (rt->disabled[handler]) {
                    route->http.handler = &quarantine_responder;
                    route->http.content = answer_quarantined;
                }
            }
            bool handler_configured = false;
            for (size_t k = 0; k < route->nsections; k++) {
                int mi = module_index_by_name(rt, route->sections[k].name);
                if (mi < 0)
                    return tw_conf_error(err, route->sections[k].key,
                                         "no loaded module is named '%s'", route->sections[k].name);
                if (run_configure(rt, (size_t)mi, route, route->sections[k].node,
                                  route->sections[k].key, label, &confs[mi], err) != 0)
                    return -1;
                if (mi == handler)
                    handler_configured = true;
            }
            if (handler >= 0 && !handler_configured &&
                run_configure(rt, (size_t)handler, route, NULL, route->handler_node, label,
                              &confs[handler], err) != 0)
                return -1;
        }
    }
    return 0;
}

static int register_all(tw_runtime_t *rt, tw_conf_error_t *err)
{
    rt->phases = tw_phases_new();
    if (!rt->phases) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < rt->module_count; i++) {
        const tw_module_t *m = rt->modules[i];
        if (!m->register_phases || rt->disabled[i])
            continue;
        tw_phases_begin_module(rt->phases, m, i);
        err->message[0] = '\0';
        tw_activity_enter(rt->activity, m->name, "register_phases", NULL, 0);
        int rc = m->register_phases(rt->phases, err);
        tw_activity_leave(rt->activity);
        if (rc != 0) {
            if (!err->message[0])
                snprintf(err->message, sizeof err->message,
                         "module %s: register_phases failed without saying why", m->name);
            return -1;
        }
    }
    if (tw_phases_compile(rt->phases, err->message, sizeof err->message) != 0)
        return -1;
    return 0;
}

/* FIND_ROUTE for the HTTP engine: the router picks the server by Host on
 * the request's listener, then the route by path. */
static int find_route(void *arg, tw_request_t *r, size_t listener_index,
                      const tw_http_route_t **out)
{
    tw_runtime_t *rt = arg;
    tw_str_t host = tw_request_host(r);
    tw_str_t path = tw_request_path(r);
    const tw_settings_t *s = rt->gen->settings;
    const tw_server_conf_t *srv = tw_router_find_server(s, listener_index, host.ptr, host.len);
    tw_route_match_t match;
    const tw_route_t *route =
        srv ? tw_router_match_route(s, srv, path.ptr, path.len, &match) : NULL;
    tw_req_set_captures(r, match.captures, route ? match.count : 0);
    if (!route || !route->http.content)
        return 404;
    *out = &route->http;
    return 0;
}

static int build_http(tw_runtime_t *rt, tw_conf_error_t *err)
{
    const tw_settings_t *s = rt->gen->settings;
    tw_http_server_t *h = &rt->http;
    tw_http_server_init(h, rt->has_worker ? rt->worker.loop : NULL);
    rt->http_ready = true;
    if (rt->gen->tls && !(rt->tls = tw_tls_server_new(s, rt->gen->tls, err)))
        return -1;
    h->tls = rt->tls;
    h->activity = rt->has_worker ? rt->worker.activity : NULL;
    h->worker = rt->has_worker ? &rt->worker : NULL;
    h->limits.request_line_max = s->limits.request_line;
    h->limits.header_size_max = s->limits.header_size;
    h->limits.headers_max = s->limits.headers;
    h->body_limit = s->limits.body;
    h->header_timeout_ms = s->timeouts.header_ms;
    h->body_timeout_ms = s->timeouts.body_ms;
    h->send_timeout_ms = s->timeouts.send_ms;
    h->keepalive_timeout_ms = s->timeouts.keepalive_ms;
    h->min_body_rate = s->min_body_rate;
    bool *proxy = s->nlisteners ? tw_pool_alloc(rt->pool, s->nlisteners * sizeof *proxy) : NULL;
    if (s->nlisteners && !proxy)
        return tw_conf_error(err, tw_conf_root(s->doc), "out of memory");
    for (size_t i = 0; i < s->nlisteners; i++)
        proxy[i] = s->listeners[i].proxy_protocol;
    h->proxy_protocol = proxy;
    h->proxy_protocol_count = s->nlisteners;
    h->modules = rt->modules;
    h->module_count = rt->module_count;
    h->module_disabled = rt->disabled;
    h->global_conf = rt->global_conf;
    h->phases = tw_phases_table(rt->phases);
    h->find_route = find_route;
    h->find_route_arg = rt;
    if (rt->extra_method_count) {
        h->method_filter = extra_method_filter;
        h->method_filter_arg = rt;
        /* A route without a method list accepts the added methods too
         * (the parser's own methods are never asked about: skip those). */
        static const char *const known[] = {"GET",     "HEAD",  "POST",  "PUT",    "DELETE",
                                            "CONNECT", "TRACE", "PATCH", "OPTIONS"};
        size_t n = sizeof TW_HTTP_ALLOW_ANY;
        for (size_t i = 0; i < rt->extra_method_count; i++)
            n += 2 + strlen(rt->extra_methods[i]);
        char *allow = tw_pool_alloc(rt->pool, n);
        if (!allow)
            return tw_conf_error(err, tw_conf_root(s->doc), "out of memory");
        char *p = allow;
        memcpy(p, TW_HTTP_ALLOW_ANY, sizeof TW_HTTP_ALLOW_ANY - 1);
        p += sizeof TW_HTTP_ALLOW_ANY - 1;
        for (size_t i = 0; i < rt->extra_method_count; i++) {
            bool is_known = false;
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                is_known |= strcmp(rt->extra_methods[i], known[k]) == 0;
            if (is_known)
                continue;
            size_t m = strlen(rt->extra_methods[i]);
            memcpy(p, ", ", 2);
            memcpy(p + 2, rt->extra_methods[i], m);
            p += 2 + m;
        }
        *p = '\0';
        h->allow_any = allow;
    }
    if (!s->server_header || !*s->server_header) {
        h->server_header = NULL;
    } else if (s->server_tokens) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s/%s", s->server_header, TW_VERSION);
        h->server_header = tw_pool_strndup(rt->pool, buf, strlen(buf));
    } else {
        h->server_header = s->server_header;
    }
    if (!h->server_header && s->server_header && *s->server_header)
        return tw_conf_error(err, tw_conf_root(s->doc), "out of memory");
    return 0;
}

/* Runs every init_worker hook in config order, each recorded in the crash
 * slot so that a hook that kills the worker is named in the master's log. */
static int init_workers(tw_runtime_t *rt, tw_conf_error_t *err)
{
    tw_worker_t *w = &rt->worker;
    for (size_t i = 0; i < rt->module_count; i++) {
        const tw_module_t *m = rt->modules[i];
        if (m->init_worker && !rt->disabled[i]) {
            err->message[0] = '\0';
            tw_activity_enter(w->activity, m->name, "init_worker", NULL, 0);
            int rc = m->init_worker(w, err);
            tw_activity_leave(w->activity);
            if (rc != 0) {
                if (!err->message[0]) {
                    snprintf(err->message, sizeof err->message,
                             "module %s: init_worker failed without saying why", m->name);
                } else if (!strstr(err->message, m->name)) {
                    char copy[sizeof err->message];
                    memcpy(copy, err->message, sizeof copy);
                    snprintf(err->message, sizeof err->message, "module %s: init_worker: %.900s",
                             m->name, copy);
                }
                return -1;
            }
        }
        rt->inited = i + 1;
    }
    return 0;
}

static tw_runtime_t *activate(tw_generation_t *g, const tw_runtime_worker_t *worker,
                              tw_activity_t *activity, tw_conf_error_t *err)
{
    tw_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt || !(rt->pool = tw_pool_new(16384))) {
        free(rt);
        snprintf(err->message, sizeof err->message, "out of memory");
        return NULL;
    }
    rt->gen = g;
    rt->activity = activity;
    if (worker) {
        rt->has_worker = true;
        rt->worker = (struct tw_worker){.runtime = rt,
                                        .loop = worker->loop,
                                        .index = worker->index,
                                        .generation = g->number,
                                        .activity = worker->activity};
    }
    if (load_modules(rt, err) != 0 || configure_all(rt, err) != 0 || register_all(rt, err) != 0 ||
        build_http(rt, err) != 0 ||
        (rt->has_worker && (attach_zones(rt, err) != 0 || init_workers(rt, err) != 0))) {
        tw_runtime_free(rt);
        return NULL;
    }
    return rt;
}

tw_runtime_t *tw_runtime_activate(tw_generation_t *g, const tw_runtime_worker_t *worker,
                                  tw_conf_error_t *err)
{
    return activate(g, worker, worker ? worker->activity : NULL, err);
}

tw_runtime_t *tw_runtime_check(tw_generation_t *g, tw_activity_t *activity, tw_conf_error_t *err)
{
    return activate(g, NULL, activity, err);
}

void tw_runtime_free(tw_runtime_t *rt)
{
    if (!rt)
        return;
    tw_worker_t *w = &rt->worker;
    for (size_t i = rt->inited; i-- > 0;) {
        const tw_module_t *m = rt->modules[i];
        if (m->exit_worker && !rt->disabled[i]) {
            tw_activity_enter(w->activity, m->name, "exit_worker", NULL, 0);
            m->exit_worker(w);
            tw_activity_leave(w->activity);
        }
    }
    if (rt->http_ready)
        tw_http_server_cleanup(&rt->http);
    tw_tls_server_free(rt->tls);
    tw_phases_free(rt->phases);
    tw_modules_forget(&rt->registry);
    tw_zone_region_unmap(rt->private_zones);
    tw_pool_free(rt->pool);
    free(rt);
}

tw_http_server_t *tw_runtime_http(tw_runtime_t *rt)
{
    return &rt->http;
}

void tw_runtime_print_modules(const tw_runtime_t *rt, FILE *out)
{
    fprintf(out, "%-12s %-10s %-6s %s\n", "module", "version", "abi", "file");
    for (size_t i = 0; i < rt->module_count; i++) {
        const tw_module_t *m = rt->modules[i];
        fprintf(out, "%-12s %-10s %u.%-4u %s\n", m->name, m->version ? m->version : "-",
                m->abi_major, m->abi_minor, rt->registry.items[i].path);
        if (m->description)
            fprintf(out, "             %s\n", m->description);
    }
}

void tw_runtime_print_phases(const tw_runtime_t *rt, FILE *out)
{
    tw_phases_dump(rt->phases, out);
}
