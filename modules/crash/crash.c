/* crash — TEST ONLY: a module that misbehaves on request, for the master,
 * worker and reload tests. Never install it (the build does not).
 *
 *   crash: { configure: ok|fail|segv|hang, init: ok|fail|segv|leak,   # global
 *            init_crash_file: PATH, init_fail_worker: N, marker_dir: DIR }
 *   routes:
 *     - path: /crash
 *       handler: crash
 *       crash: { mode: ok|segv|abort|exit, delay: 2s, configure: ok|fail|segv|hang }
 *
 * configure: fail/segv/hang — the global (or that route's) configure hook
 * fails, crashes or never returns (a reload must be refused / rolled back,
 * -t must name the module and the route). init_fail_worker: only that
 * worker's init_worker fails. marker_dir: init_worker creates
 * DIR/worker-<generation>-<index> and exit_worker removes it (exit_worker
 * must run even when the generation is abandoned). init: fail/segv — init_worker
 * fails or crashes (the new generation never reports READY); init: leak
 * allocates 4242 bytes and loses them (a sanitizer build must report the
 * leak when the worker stops). init_crash_file: init_worker crashes while
 * PATH exists, so that a generation can start fine and its respawned
 * workers then crash at start-up. Per route:
 * mode segv/abort/exit kills the worker inside the content handler (the
 * master must respawn it); delay answers only after that long, through a
 * timer (requests in flight across a reload or a drain). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef enum {
    ACT_OK = 0,
    ACT_FAIL,
    ACT_SEGV,
    ACT_ABORT,
    ACT_EXIT,
    ACT_LEAK,
    ACT_HANG
} action_t;

typedef struct {
    action_t configure, init;    /* global */
    action_t mode;               /* route */
    uint64_t delay_ms;           /* route */
    const char *init_crash_file; /* global */
    long init_fail_worker;       /* global, -1: none */
    const char *marker_dir;      /* global */
} crash_conf_t;

static int get_action(const tw_conf_node_t *map, const char *key, const char *const *allowed,
                      action_t *out, tw_conf_error_t *err)
{
    static const struct {
        const char *name;
        action_t act;
    } names[] = {{"ok", ACT_OK},     {"fail", ACT_FAIL}, {"segv", ACT_SEGV}, {"abort", ACT_ABORT},
                 {"exit", ACT_EXIT}, {"leak", ACT_LEAK}, {"hang", ACT_HANG}};
    const tw_conf_node_t *node = tw_conf_map_get(map, key);
    const char *s;
    if (node == NULL)
        return 0;
    if (tw_conf_get_string(node, &s, err) != 0)
        return -1;
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0)
            for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
                if (strcmp(s, names[k].name) == 0) {
                    *out = names[k].act;
                    return 0;
                }
    return tw_conf_error(err, node, "unknown %s '%s'", key, s);
}

/* Really crash, the way a buggy plugin does: a store through a null
 * pointer, so that the worker's crash reporter sees a real fault here (the
 * tests resolve its backtrace to the line below). The pointer comes out of
 * an empty asm so that the compiler can neither prove it null (and replace
 * the store with a trap) nor drop the store, and UBSan must not stop the
 * process before the fault does. */
__attribute__((noinline, no_sanitize("undefined"))) static void write_through_null(void)
{
    int *p = NULL;
    __asm__ volatile("" : "+r"(p));
    *p = 1; /* crash: segv here */
}

static void crash_now(action_t act)
{
    if (act == ACT_SEGV)
        write_through_null();
    if (act == ACT_ABORT)
        abort();
    if (act == ACT_EXIT)
        exit(3);
    if (act == ACT_HANG)
        for (;;)
            pause();
    if (act == ACT_LEAK) {
        /* The empty asm makes the block escape, so the compiler keeps the
         * allocation; the only pointer to it dies with this scope. */
        void *lost = malloc(4242);
        __asm__ volatile("" : : "r"(lost) : "memory");
    }
}

static int crash_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                           void **conf, tw_conf_error_t *err)
{
    static const char *const global_keys[] = {"configure",        "init",       "init_crash_file",
                                              "init_fail_worker", "marker_dir", NULL};
    static const char *const route_keys[] = {"mode", "delay", "configure", NULL};
    static const char *const hook_actions[] = {"ok", "fail", "segv", "hang", NULL};
    static const char *const init_actions[] = {"ok", "fail", "segv", "leak", NULL};
    static const char *const route_actions[] = {"ok", "segv", "abort", "exit", NULL};

    crash_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (c == NULL)
        return tw_conf_error(err, node, "out of memory");
    *conf = c;
    c->init_fail_worker = -1;
    if (node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0'))
        return 0;
    if (scope == TW_SCOPE_GLOBAL) {
        if (tw_conf_check_keys(node, global_keys, err) != 0 ||
            get_action(node, "configure", hook_actions, &c->configure, err) != 0 ||
            get_action(node, "init", init_actions, &c->init, err) != 0)
            return -1;
        const tw_conf_node_t *file = tw_conf_map_get(node, "init_crash_file");
        if (file && tw_conf_get_string(file, &c->init_crash_file, err) != 0)
            return -1;
        if (c->init_crash_file)
            c->init_crash_file = tw_configure_strdup(cf, c->init_crash_file);
        const tw_conf_node_t *fail_worker = tw_conf_map_get(node, "init_fail_worker");
        long long n;
        if (fail_worker) {
            if (tw_conf_get_int(fail_worker, 0, 1023, &n, err) != 0)
                return -1;
            c->init_fail_worker = (long)n;
        }
        const tw_conf_node_t *dir = tw_conf_map_get(node, "marker_dir");
        if (dir && tw_conf_get_string(dir, &c->marker_dir, err) != 0)
            return -1;
        if (c->marker_dir)
            c->marker_dir = tw_configure_strdup(cf, c->marker_dir);
        if (c->configure == ACT_FAIL)
            return tw_conf_error(err, tw_conf_map_get(node, "configure"),
                                 "crash: configure failed as configured");
        crash_now(c->configure);
        return 0;
    }
    action_t at_configure = ACT_OK;
    if (tw_conf_check_keys(node, route_keys, err) != 0 ||
        get_action(node, "mode", route_actions, &c->mode, err) != 0 ||
        get_action(node, "configure", hook_actions, &at_configure, err) != 0)
        return -1;
    if (at_configure == ACT_FAIL)
        return tw_conf_error(err, tw_conf_map_get(node, "configure"),
                             "crash: route configure failed as configured");
    crash_now(at_configure);
    const tw_conf_node_t *delay = tw_conf_map_get(node, "delay");
    if (delay && tw_conf_get_duration_ms(delay, &c->delay_ms, err) != 0)
        return -1;
    return 0;
}

static void marker_path(const crash_conf_t *c, const tw_worker_t *worker, char *buf, size_t len)
{
    snprintf(buf, len, "%s/worker-%u-%u", c->marker_dir, tw_worker_generation(worker),
             tw_worker_index(worker));
}

static int crash_init_worker(tw_worker_t *worker, tw_conf_error_t *err)
{
    const crash_conf_t *c = tw_worker_global_conf(worker, &twister_module_v1);
    if (c == NULL)
        return 0;
    if (c->init == ACT_FAIL) {
        snprintf(err->message, sizeof err->message,
                 "crash: init_worker failed as configured (worker %u)", tw_worker_index(worker));
        return -1;
    }
    crash_now(c->init);
    if (c->init_crash_file && access(c->init_crash_file, F_OK) == 0)
        crash_now(ACT_SEGV);
    if (c->init_fail_worker >= 0 && (unsigned long)c->init_fail_worker == tw_worker_index(worker)) {
        snprintf(err->message, sizeof err->message,
                 "crash: init_worker failed as configured (worker %u)", tw_worker_index(worker));
        return -1;
    }
    if (c->marker_dir) {
        char path[4096];
        marker_path(c, worker, path, sizeof path);
        FILE *f = fopen(path, "w");
        if (f == NULL) {
            snprintf(err->message, sizeof err->message, "crash: cannot create %.900s", path);
            return -1;
        }
        fclose(f);
    }
    return 0;
}

static void crash_exit_worker(tw_worker_t *worker)
{
    const crash_conf_t *c = tw_worker_global_conf(worker, &twister_module_v1);
    if (c == NULL || c->marker_dir == NULL)
        return;
    char path[4096];
    marker_path(c, worker, path, sizeof path);
    unlink(path);
}

static int answer(tw_request_t *r)
{
    static const char body[] = "crash: still alive\n";
    return tw_response_send(r, 200, "text/plain", body, sizeof body - 1) == 0 ? TW_DONE : TW_ERROR;
}

static void delayed(tw_request_t *r, void *arg)
{
    (void)arg;
    tw_request_resume(r, answer(r));
}

static int crash_content(tw_request_t *r)
{
    const crash_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (c == NULL)
        return TW_ERROR;
    crash_now(c->mode);
    if (c->delay_ms > 0) {
        /* The async pattern: a request timer (cancelled if the request
         * ends first), then resume with what the handler would return. */
        if (tw_request_set_timer(r, c->delay_ms, delayed, NULL) != 0)
            return TW_ERROR;
        return TW_SUSPENDED;
    }
    return answer(r);
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "crash",
    .version = "1.0.0",
    .description = "TEST ONLY: crashes or fails on purpose",
    .configure = crash_configure,
    .init_worker = crash_init_worker,
    .exit_worker = crash_exit_worker,
    .content = crash_content,
};
