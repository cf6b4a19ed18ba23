/* test_limit_table.c — modules/limit_req/limit_table.c, the keyed table
 * limit_req and limit_conn keep in their zones: find or create, nodes per
 * (key, pid), eviction of the least recently used node of a full window,
 * nodes that must not be evicted, and the walk over a key's nodes. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limit_table.h"

static lt_table_t *table(size_t nodes)
{
    size_t size = sizeof(lt_table_t) + nodes * sizeof(lt_node_t);
    void *mem = calloc(1, size);
    ck_assert_ptr_nonnull(mem);
    ck_assert_int_eq(lt_table_init(NULL, mem, size, NULL), 0);
    ck_assert_uint_eq(((lt_table_t *)mem)->capacity, nodes);
    return mem;
}

static void add_count(lt_node_t *n, void *arg)
{
    *(int64_t *)arg += n->a;
}

START_TEST(test_find_and_create)
{
    lt_table_t *t = table(256);
    ck_assert_ptr_null(lt_find(t, "a", 1, 42, 0, false, NULL));
    lt_node_t *a = lt_find(t, "a", 1, 42, 0, true, NULL);
    ck_assert_ptr_nonnull(a);
    a->a = 7;
    ck_assert_ptr_eq(lt_find(t, "a", 1, 42, 0, false, NULL), a);
    /* Same hash, another key or another pid: other nodes. */
    lt_node_t *b = lt_find(t, "b", 1, 42, 0, true, NULL);
    lt_node_t *a_other_pid = lt_find(t, "a", 1, 42, 99, true, NULL);
    ck_assert_ptr_ne(b, a);
    ck_assert_ptr_ne(a_other_pid, a);
    ck_assert_int_eq(b->a, 0);
    a_other_pid->a = 3;
    int64_t total = 0;
    lt_each_of_key(t, "a", 1, 42, add_count, &total);
    ck_assert_int_eq(total, 10);
    free(t);
}
END_TEST

static bool holds(const lt_node_t *n)
{
    return n->a > 0;
}

START_TEST(test_full_window_evicts_least_recently_used)
{
    lt_table_t *t = table(LT_WINDOW * 4);
    /* Fill one window: keys with the same hash, so they share it. */
    lt_node_t *nodes[LT_WINDOW];
    char key[16];
    for (int i = 0; i < LT_WINDOW; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        nodes[i] = lt_find(t, key, (size_t)n, 5, 0, true, NULL);
        ck_assert_ptr_nonnull(nodes[i]);
    }
    /* Touch k0, so k1 is now the least recently used. */
    ck_assert_ptr_eq(lt_find(t, "k0", 2, 5, 0, false, NULL), nodes[0]);
    lt_node_t *fresh = lt_find(t, "new", 3, 5, 0, true, NULL);
    ck_assert_ptr_eq(fresh, nodes[1]);
    ck_assert_ptr_null(lt_find(t, "k1", 2, 5, 0, false, NULL));
    ck_assert_ptr_nonnull(lt_find(t, "k0", 2, 5, 0, false, NULL));
    ck_assert_int_eq(fresh->a, 0);

    /* Nodes that keep() protects are never evicted; with all of them
     * protected there is no room, and no node is taken. */
    for (int i = 0; i < LT_WINDOW; i++)
        nodes[i]->a = 1;
    ck_assert_ptr_null(lt_find(t, "other", 5, 5, 0, true, holds));
    nodes[9]->a = 0;
    ck_assert_ptr_eq(lt_find(t, "other", 5, 5, 0, true, holds), nodes[9]);
    free(t);
}
END_TEST

START_TEST(test_keys_are_cut_but_hashed_whole)
{
    lt_table_t *t = table(64);
    char long_key[LT_KEY_MAX + 20];
    memset(long_key, 'x', sizeof long_key);
    /* Two keys that share the first LT_KEY_MAX bytes but not their hash. */
    lt_node_t *one = lt_find(t, long_key, LT_KEY_MAX, 1, 0, true, NULL);
    lt_node_t *two = lt_find(t, long_key, LT_KEY_MAX, 2, 0, true, NULL);
    ck_assert_ptr_ne(one, two);
    ck_assert_uint_eq(one->keylen, LT_KEY_MAX);
    free(t);
}
END_TEST

static Suite *limit_table_suite(void)
{
    Suite *s = suite_create("limit_table");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_find_and_create);
    tcase_add_test(tc, test_full_window_evicts_least_recently_used);
    tcase_add_test(tc, test_keys_are_cut_but_hashed_whole);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(limit_table_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
