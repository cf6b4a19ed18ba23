/* test_zone.c — core/zone.c: declarations, attaching across generations
 * (kept, resized, collected), the init hook, the robust lock when its
 * holder is killed, counters from several processes, and the slots. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "twister/pool.h"
#include "zone.h"

#define REGION (4u << 20)

static tw_zone_t *declare(tw_zone_list_t *list, tw_pool_t *pool, const char *name, size_t size,
                          tw_zone_init_fn init, void *arg)
{
    tw_zone_t *z = NULL;
    ck_assert_int_eq(tw_zone_list_add(list, pool, "mod", name, size, init, arg, REGION, &z), 0);
    ck_assert_ptr_nonnull(z);
    return z;
}

static int attach(tw_zone_list_t *list, tw_zone_region_t *region, unsigned generation)
{
    char why[512] = "";
    int rc = tw_zone_list_attach(list, region, generation, why, sizeof why);
    if (rc != 0)
        ck_assert_str_ne(why, "");
    return rc;
}

START_TEST(test_declare_checks)
{
    tw_pool_t *pool = tw_pool_new(0);
    tw_zone_list_t list = {0};
    tw_zone_t *z = NULL, *again = NULL;
    errno = 0;
    ck_assert_int_eq(tw_zone_list_add(&list, pool, "mod", "", 10, NULL, NULL, REGION, &z), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_zone_list_add(&list, pool, "mod", "a/b", 10, NULL, NULL, REGION, &z), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_zone_list_add(&list, pool, "mod", "a", 0, NULL, NULL, REGION, &z), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_zone_list_add(&list, pool, "mod", "a", REGION + 1, NULL, NULL, REGION, &z),
                     -1);
    ck_assert_int_eq(errno, ENOSPC);

    z = declare(&list, pool, "a", 100, NULL, NULL);
    ck_assert_int_eq(tw_zone_list_add(&list, pool, "mod", "a", 200, NULL, NULL, REGION, &again), 0);
    ck_assert_ptr_eq(again, z); /* both round to one page */
    ck_assert_int_eq(tw_zone_list_add(&list, pool, "mod", "a", 100000, NULL, NULL, REGION, &again),
                     -1);
    ck_assert_int_eq(errno, EEXIST);
    ck_assert_str_eq(tw_zone_name(z), "a");
    ck_assert_ptr_null(tw_zone_data(z)); /* not attached yet */
    ck_assert_int_eq(tw_zone_lock(z), -1);
    tw_pool_free(pool);
}
END_TEST

static int count_inits(tw_zone_t *zone, void *data, size_t size, void *arg)
{
    (void)zone;
    (void)size;
    ((uint64_t *)data)[1] = 0xfeed;
    tw_counter_add(arg, 1);
    return 0;
}

START_TEST(test_kept_across_generations_resized_and_collected)
{
    tw_zone_region_t *region = tw_zone_region_map(REGION);
    ck_assert_ptr_nonnull(region);
    uint64_t *inits = (uint64_t *)tw_zone_region_stats(region); /* any shared word */
    tw_pool_t *pool = tw_pool_new(0);

    tw_zone_list_t gen1 = {0};
    tw_zone_t *a1 = declare(&gen1, pool, "a", 8192, count_inits, inits);
    ck_assert_int_eq(attach(&gen1, region, 1), 0);
    uint64_t *data = tw_zone_data(a1);
    ck_assert_uint_eq(data[1], 0xfeed);
    tw_counter_add(&data[0], 41);

    /* Another worker of generation 1 (a child process) sees the count and
     * does not run init again. */
    pid_t pid = fork();
    if (pid == 0) {
        tw_zone_list_t again = {0};
        tw_zone_t *z = declare(&again, pool, "a", 8192, count_inits, inits);
        _exit(attach(&again, region, 1) == 0 && tw_counter_add(tw_zone_data(z), 1) == 42 ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(tw_counter_get(inits), 1);

    /* Generation 2, same name and size: the same memory, contents kept. */
    tw_zone_list_t gen2 = {0};
    tw_zone_t *a2 = declare(&gen2, pool, "a", 8192, count_inits, inits);
    tw_zone_t *b2 = declare(&gen2, pool, "b", 4096, NULL, NULL);
    ck_assert_int_eq(attach(&gen2, region, 2), 0);
    ck_assert_ptr_eq(tw_zone_data(a2), data);
    ck_assert_uint_eq(tw_counter_get(&data[0]), 42);
    ck_assert_uint_eq(tw_counter_get(inits), 1);
    ck_assert_ptr_nonnull(tw_zone_data(b2));
    ck_assert_ptr_ne(tw_zone_data(b2), data);

    /* Generation 3 resizes a: a fresh zone beside the old one, which
     * generation 2 may still be draining with. */
    tw_zone_list_t gen3 = {0};
    tw_zone_t *a3 = declare(&gen3, pool, "a", 3 * 8192, count_inits, inits);
    ck_assert_int_eq(attach(&gen3, region, 3), 0);
    uint64_t *fresh = tw_zone_data(a3);
    ck_assert_ptr_ne(fresh, data);
    ck_assert_uint_eq(fresh[0], 0);
    ck_assert_uint_eq(fresh[1], 0xfeed);
    ck_assert_uint_eq(tw_counter_get(inits), 2);
    ck_assert_uint_eq(tw_counter_get(&data[0]), 42);

    /* Once generation 3 is the oldest live one, the old a and b go. */
    ck_assert_int_eq(tw_zone_region_collect(region, 3), 2);
    ck_assert_int_eq(tw_zone_region_collect(region, 3), 0);
    /* Their room is reused: a new zone starts zeroed. */
    tw_zone_list_t gen4 = {0};
    tw_zone_t *c4 = declare(&gen4, pool, "c", 8192, NULL, NULL);
    ck_assert_int_eq(attach(&gen4, region, 4), 0);
    ck_assert_ptr_eq(tw_zone_data(c4), data);
    ck_assert_uint_eq(((uint64_t *)tw_zone_data(c4))[0], 0);

    tw_pool_free(pool);
    tw_zone_region_unmap(region);
}
END_TEST

START_TEST(test_region_full_is_an_error)
{
    tw_zone_region_t *region = tw_zone_region_map(1u << 20);
    tw_pool_t *pool = tw_pool_new(0);
    tw_zone_list_t gen1 = {0}, gen2 = {0};
    declare(&gen1, pool, "big", 600u << 10, NULL, NULL);
    ck_assert_int_eq(attach(&gen1, region, 1), 0);
    /* Generation 1 still holds its zone: a resized one does not fit. */
    declare(&gen2, pool, "big", 700u << 10, NULL, NULL);
    ck_assert_int_eq(attach(&gen2, region, 2), -1);
    tw_pool_free(pool);
    tw_zone_region_unmap(region);
}
END_TEST

static int failing_init(tw_zone_t *zone, void *data, size_t size, void *arg)
{
    (void)zone;
    (void)size;
    (void)arg;
    memset(data, 0xff, 64);
    return -1;
}

START_TEST(test_failed_init_leaves_zone_for_retry)
{
    tw_zone_region_t *region = tw_zone_region_map(REGION);
    tw_pool_t *pool = tw_pool_new(0);
    uint64_t *inits = (uint64_t *)tw_zone_region_stats(region);
    tw_zone_list_t bad = {0}, good = {0};
    declare(&bad, pool, "z", 4096, failing_init, NULL);
    ck_assert_int_eq(attach(&bad, region, 1), -1);
    tw_zone_t *z = declare(&good, pool, "z", 4096, count_inits, inits);
    ck_assert_int_eq(attach(&good, region, 1), 0);
    ck_assert_uint_eq(((uint64_t *)tw_zone_data(z))[0], 0);
    ck_assert_uint_eq(((uint64_t *)tw_zone_data(z))[1], 0xfeed);
    ck_assert_uint_eq(tw_counter_get(inits), 1);
    tw_pool_free(pool);
    tw_zone_region_unmap(region);
}
END_TEST

START_TEST(test_lock_survives_killed_holder)
{
    tw_zone_region_t *region = tw_zone_region_map(REGION);
    tw_pool_t *pool = tw_pool_new(0);
    tw_zone_list_t list = {0};
    tw_zone_t *z = declare(&list, pool, "locked", 4096, NULL, NULL);
    ck_assert_int_eq(attach(&list, region, 1), 0);
    volatile uint64_t *word = tw_zone_data(z);

    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (tw_zone_lock(z) != 0)
            _exit(1);
        word[0] = 1; /* a critical section the parent will find half done */
        ssize_t w = write(ready[1], "x", 1);
        (void)w;
        for (;;)
            pause();
    }
    char c;
    ssize_t n;
    while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
        ;
    ck_assert_int_eq(n, 1);
    kill(pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));

    /* The parent gets the lock, told that its holder died. */
    ck_assert_int_eq(tw_zone_lock(z), TW_ZONE_RECOVERED);
    ck_assert_uint_eq(word[0], 1);
    word[0] = 0;
    tw_zone_unlock(z);
    ck_assert_int_eq(tw_zone_lock(z), 0);
    tw_zone_unlock(z);
    ck_assert(!tw_zone_owner_alive(pid));
    ck_assert(tw_zone_owner_alive(getpid()));
    close(ready[0]);
    close(ready[1]);
    tw_pool_free(pool);
    tw_zone_region_unmap(region);
}
END_TEST

START_TEST(test_counters_from_many_processes)
{
    tw_zone_region_t *region = tw_zone_region_map(REGION);
    tw_pool_t *pool = tw_pool_new(0);
    tw_zone_list_t list = {0};
    tw_zone_t *z = declare(&list, pool, "count", 4096, NULL, NULL);
    ck_assert_int_eq(attach(&list, region, 1), 0);
    uint64_t *counter = tw_zone_data(z);
    enum {
        PROCS = 4,
        EACH = 100000
    };
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (int k = 0; k < EACH; k++)
                tw_counter_add(counter, 1);
            _exit(0);
        }
    }
    for (int i = 0; i < PROCS; i++)
        ck_assert_int_eq(waitpid(pids[i], NULL, 0), pids[i]);
    ck_assert_uint_eq(tw_counter_get(counter), (uint64_t)PROCS * EACH);
    ck_assert_uint_eq(tw_counter_sub(counter, (uint64_t)PROCS * EACH + 5), 0);
    tw_pool_free(pool);
    tw_zone_region_unmap(region);
}
END_TEST

START_TEST(test_slots)
{
    static char mem[4096] __attribute__((aligned(16)));
    size_t cap = tw_slots_init(mem, sizeof mem, 48);
    ck_assert_uint_gt(cap, 10);
    ck_assert_uint_eq(tw_slots_capacity(mem), cap);
    void *all[200];
    ck_assert_uint_lt(cap, 200);
    for (size_t i = 0; i < cap; i++) {
        all[i] = tw_slots_alloc(mem);
        ck_assert_ptr_nonnull(all[i]);
        ck_assert_uint_eq((uintptr_t)all[i] % 16, 0);
        memset(all[i], 0xaa, 48);
        for (size_t k = 0; k < i; k++)
            ck_assert_ptr_ne(all[k], all[i]);
    }
    ck_assert_ptr_null(tw_slots_alloc(mem));
    ck_assert_uint_eq(tw_slots_used(mem), cap);
    tw_slots_free(mem, all[3]);
    tw_slots_free(mem, all[3]); /* twice: ignored */
    ck_assert_uint_eq(tw_slots_used(mem), cap - 1);
    ck_assert_ptr_null(tw_slots_at(mem, 3));
    ck_assert_ptr_eq(tw_slots_at(mem, 4), all[4]);
    char *again = tw_slots_alloc(mem);
    ck_assert_ptr_eq(again, all[3]);
    ck_assert_int_eq(again[0], 0); /* handed out zeroed */

    /* A torn free list (a holder died mid-change) is rebuilt from the
     * slots' own flags. */
    tw_slots_free(mem, all[7]);
    tw_slots_free(mem, all[9]);
    ((uint64_t *)mem)[3] = 12345; /* used count garbage */
    ((uint64_t *)mem)[4] = 0;     /* free list lost */
    ck_assert_ptr_null(tw_slots_alloc(mem));
    ck_assert_uint_eq(tw_slots_repair(mem), cap - 2);
    ck_assert_ptr_nonnull(tw_slots_alloc(mem));
    ck_assert_ptr_nonnull(tw_slots_alloc(mem));
    ck_assert_ptr_null(tw_slots_alloc(mem));
}
END_TEST

static Suite *zone_suite(void)
{
    Suite *s = suite_create("zone");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_declare_checks);
    tcase_add_test(tc, test_kept_across_generations_resized_and_collected);
    tcase_add_test(tc, test_region_full_is_an_error);
    tcase_add_test(tc, test_failed_init_leaves_zone_for_retry);
    tcase_add_test(tc, test_lock_survives_killed_holder);
    tcase_add_test(tc, test_counters_from_many_processes);
    tcase_add_test(tc, test_slots);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(zone_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
