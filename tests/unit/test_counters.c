/* test_counters.c — core/counters.c: what a counter declaration accepts,
 * binding across processes and generations (same name and labels, same
 * word), a full table, and the sorted walk. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "counters.h"

static void *shared_zone(void)
{
    void *p = mmap(NULL, tw_counters_zone_size(), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

START_TEST(test_declarations_are_checked)
{
    tw_pool_t *pool = tw_pool_new(0);
    tw_counter_list_t list = {0};
    tw_metrics_counter_t *c = NULL;
    static const char *const bad_names[] = {"", "1abc_total", "a-b_total", "no_suffix", "_total"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        errno = 0;
        ck_assert_int_eq(tw_counter_list_add(&list, pool, bad_names[i], "", "", &c), -1);
        ck_assert_int_eq(errno, EINVAL);
    }
    static const char *const bad_labels[] = {
        "a",         "a=b",       "a=\"b",          "a=\"b\",",
        "a:b=\"c\"", "a=\"\\x\"", "a=\"b\"c=\"d\"", "a=\"line\nbreak\""};
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++)
        ck_assert_msg(tw_counter_list_add(&list, pool, "x_total", "", bad_labels[i], &c) == -1,
                      "accepted labels %s", bad_labels[i]);
    ck_assert_int_eq(tw_counter_list_add(&list, pool, "x_total", "two\nlines", "", &c), -1);

    tw_metrics_counter_t *a = NULL, *b = NULL, *again = NULL;
    ck_assert_int_eq(tw_counter_list_add(&list, pool, "x_total", "help", "", &a), 0);
    ck_assert_int_eq(
        tw_counter_list_add(&list, pool, "x_total", "help", "zone=\"a \\\"q\\\"\",k=\"\"", &b), 0);
    ck_assert_int_eq(tw_counter_list_add(&list, pool, "x_total", "other help", "", &again), 0);
    ck_assert_ptr_eq(a, again);
    ck_assert_ptr_ne(a, b);
    /* Not attached: adds are lost, reads are 0, nothing crashes. */
    tw_metrics_counter_add(a, 5);
    tw_metrics_counter_add(NULL, 5);
    ck_assert_uint_eq(tw_metrics_counter_get(a), 0);
    tw_pool_free(pool);
}
END_TEST

typedef struct {
    char seen[8][200];
    unsigned long long values[8];
    int n;
} walk_t;

static void collect(const char *name, const char *help, const char *labels, uint64_t value,
                    void *arg)
{
    walk_t *w = arg;
    (void)help;
    if (w->n < 8) {
        snprintf(w->seen[w->n], sizeof w->seen[0], "%s{%s}", name, labels);
        w->values[w->n] = (unsigned long long)value;
    }
    w->n++;
}

START_TEST(test_bound_across_processes_and_generations)
{
    void *zone = shared_zone();
    tw_pool_t *pool = tw_pool_new(0);
    enum {
        PROCS = 3,
        EACH = 20000
    };
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            /* Each process is a worker of its own: declares, attaches,
             * counts. */
            tw_counter_list_t list = {0};
            tw_metrics_counter_t *c = NULL, *other = NULL;
            if (tw_counter_list_add(&list, pool, "b_total", "B.", "w=\"all\"", &c) ||
                tw_counter_list_add(&list, pool, "a_total", "A.", "", &other))
                _exit(1);
            tw_counter_list_attach(&list, zone);
            for (int k = 0; k < EACH; k++)
                tw_metrics_counter_add(c, 1);
            tw_metrics_counter_add(other, 2);
            _exit(0);
        }
    }
    for (int i = 0; i < PROCS; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* A later generation declaring the same counter continues it. */
    tw_counter_list_t next = {0};
    tw_metrics_counter_t *c = NULL;
    ck_assert_int_eq(tw_counter_list_add(&next, pool, "b_total", "B.", "w=\"all\"", &c), 0);
    tw_counter_list_attach(&next, zone);
    ck_assert_uint_eq(tw_metrics_counter_get(c), (uint64_t)PROCS * EACH);

    walk_t w = {0};
    ck_assert_int_eq(tw_counters_each(zone, collect, &w), 0);
    ck_assert_int_eq(w.n, 2);
    ck_assert_str_eq(w.seen[0], "a_total{}");
    ck_assert_uint_eq(w.values[0], 2 * PROCS);
    ck_assert_str_eq(w.seen[1], "b_total{w=\"all\"}");
    tw_pool_free(pool);
    munmap(zone, tw_counters_zone_size());
}
END_TEST

START_TEST(test_full_table_drops_only_the_extra)
{
    void *zone = shared_zone();
    tw_pool_t *pool = tw_pool_new(0);
    tw_counter_list_t list = {0};
    tw_metrics_counter_t *last = NULL;
    for (int i = 0; i <= TW_METRICS_COUNTERS_MAX; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        ck_assert_int_eq(tw_counter_list_add(&list, pool, "many_total", "", labels, &last), 0);
    }
    tw_counter_list_attach(&list, zone);
    /* One of them found no room; every other one counts. */
    int counting = 0;
    tw_metrics_counter_t *c = last;
    for (int i = 0; i <= TW_METRICS_COUNTERS_MAX; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        ck_assert_int_eq(tw_counter_list_add(&list, pool, "many_total", "", labels, &c), 0);
        tw_metrics_counter_add(c, 1);
        counting += tw_metrics_counter_get(c) == 1;
    }
    ck_assert_int_eq(counting, TW_METRICS_COUNTERS_MAX);
    tw_pool_free(pool);
    munmap(zone, tw_counters_zone_size());
}
END_TEST

static Suite *counters_suite(void)
{
    Suite *s = suite_create("counters");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_declarations_are_checked);
    tcase_add_test(tc, test_bound_across_processes_and_generations);
    tcase_add_test(tc, test_full_table_drops_only_the_extra);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(counters_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
