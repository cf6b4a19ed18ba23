/* test_runtime.c — core/runtime.c: a prepared generation brought to life
 * without a worker process around it (no master, no fork): the -t
 * checker's activation, and a worker's, with its identity and crash slot
 * passed in as plain data. Uses the crash test module, whose init_worker
 * reads its global conf through tw_worker_global_conf and names the
 * worker's index when it fails. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "generation.h"
#include "http_conn.h"
#include "runtime.h"
#include "settings.h"

static char dir[] = "/tmp/twister-runtime-XXXXXX";
static char config[sizeof dir + 32];

/* Writes a config (modules hello and crash, crash's global section as
 * given) and prepares it as generation 7. */
static tw_generation_t *prepare(const char *crash_section)
{
    const char *build = getenv("TW_BUILD_DIR");
    ck_assert_msg(build != NULL, "TW_BUILD_DIR is not set");
    ck_assert_ptr_nonnull(mkdtemp(strcpy(dir, "/tmp/twister-runtime-XXXXXX")));
    snprintf(config, sizeof config, "%s/t.yaml", dir);
    FILE *f = fopen(config, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "module_dir: %s/modules\n"
            "modules: [hello, crash]\n"
            "crash: %s\n"
            "servers:\n"
            "  - listen: [\"127.0.0.1:1\"]\n"
            "    routes:\n"
            "      - path: /hello\n"
            "        handler: hello\n"
            "      - path: /crash\n"
            "        handler: crash\n",
            build, crash_section);
    fclose(f);
    tw_conf_error_t err = {{0}};
    tw_generation_t *g = tw_generation_prepare(config, NULL, 7, &err);
    ck_assert_msg(g != NULL, "%s", err.message);
    return g;
}

static void cleanup(tw_generation_t *g)
{
    tw_generation_free(g);
    unlink(config);
    rmdir(dir);
}

START_TEST(test_check_activation_runs_no_worker_hooks)
{
    /* init: fail would refuse a worker; the checker never runs init_worker. */
    tw_generation_t *g = prepare("{ init: fail }");
    tw_conf_error_t err = {{0}};
    tw_runtime_t *rt = tw_runtime_activate(g, NULL, &err);
    ck_assert_msg(rt != NULL, "%s", err.message);
    ck_assert_ptr_null(tw_runtime_http(rt)->activity);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    tw_runtime_print_modules(rt, out);
    fclose(out);
    ck_assert_ptr_nonnull(strstr(text, "hello "));
    ck_assert_ptr_nonnull(strstr(text, "crash "));
    free(text);
    tw_runtime_free(rt);
    cleanup(g);
}
END_TEST

START_TEST(test_worker_activation_gets_identity_and_crash_slot)
{
    tw_generation_t *g = prepare("{ init: ok }");
    tw_loop_t *loop = tw_loop_new();
    ck_assert_ptr_nonnull(loop);
    tw_activity_t slot;
    memset(&slot, 0, sizeof slot);
    tw_runtime_worker_t self = {.loop = loop, .index = 3, .activity = &slot};
    tw_conf_error_t err = {{0}};
    tw_runtime_t *rt = tw_runtime_activate(g, &self, &err);
    ck_assert_msg(rt != NULL, "%s", err.message);
    /* The HTTP engine records requests in the same slot. */
    ck_assert_ptr_eq(tw_runtime_http(rt)->activity, &slot);
    ck_assert_str_eq(slot.module, ""); /* no plugin code running now */
    tw_runtime_free(rt);
    tw_loop_free(loop);
    cleanup(g);
}
END_TEST

START_TEST(test_failing_init_worker_names_module_and_worker)
{
    tw_generation_t *g = prepare("{ init: fail }");
    tw_loop_t *loop = tw_loop_new();
    tw_activity_t slot;
    memset(&slot, 0, sizeof slot);
    tw_runtime_worker_t self = {.loop = loop, .index = 3, .activity = &slot};
    tw_conf_error_t err = {{0}};
    ck_assert_ptr_null(tw_runtime_activate(g, &self, &err));
    /* crash reads its global conf through tw_worker_global_conf and
     * reports tw_worker_index. */
    ck_assert_str_eq(err.message, "crash: init_worker failed as configured (worker 3)");
    ck_assert_str_eq(slot.module, ""); /* the hook's record was cleared */
    tw_loop_free(loop);
    cleanup(g);
}
END_TEST

START_TEST(test_quarantined_module_runs_no_hook_and_its_routes_answer_from_the_core)
{
    /* Both of crash's hooks would refuse the generation if they ran. */
    tw_generation_t *g = prepare("{ configure: fail, init: fail }");
    const char *disabled[] = {"crash"};
    tw_generation_t *q = tw_generation_quarantine(g, 8, disabled, 1);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(q->number, 8);
    ck_assert_ptr_eq(q->settings, g->settings); /* one config read */
    ck_assert(tw_generation_disabled(q, "crash"));
    ck_assert(!tw_generation_disabled(q, "hello"));
    ck_assert(!tw_generation_disabled(g, "crash"));

    tw_loop_t *loop = tw_loop_new();
    tw_activity_t slot;
    memset(&slot, 0, sizeof slot);
    tw_runtime_worker_t self = {.loop = loop, .index = 0, .activity = &slot};
    tw_conf_error_t err = {{0}};
    tw_runtime_t *rt = tw_runtime_activate(q, &self, &err);
    ck_assert_msg(rt != NULL, "%s", err.message);
    const tw_server_conf_t *srv = &q->settings->servers[0];
    ck_assert_str_eq(srv->routes[0].http.handler->name, "hello");
    ck_assert_str_eq(srv->routes[1].http.handler->name, "quarantine");
    ck_assert_ptr_nonnull(srv->routes[1].http.content);
    tw_runtime_free(rt);
    tw_loop_free(loop);

    /* The original still runs the module: its configure refuses. */
    ck_assert_ptr_null(tw_runtime_activate(g, NULL, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "crash: configure failed as configured"));
    /* Freed in either order, the shared settings go with the last one. */
    tw_generation_free(g);
    g = q;
    cleanup(g);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("activate");
    tcase_add_test(tc, test_check_activation_runs_no_worker_hooks);
    tcase_add_test(tc, test_worker_activation_gets_identity_and_crash_slot);
    tcase_add_test(tc, test_failing_init_worker_names_module_and_worker);
    tcase_add_test(tc, test_quarantined_module_runs_no_hook_and_its_routes_answer_from_the_core);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(runtime_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
