/* test_pool.c — core/pool.c: alignment, large allocations, cleanups,
 * reset and free. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "twister/pool.h"

START_TEST(test_alignment)
{
    tw_pool_t *p = tw_pool_new(0);
    ck_assert_ptr_nonnull(p);
    /* Every size from 0 to 100, then some large ones: 16-byte aligned. */
    for (size_t n = 0; n <= 100; n++) {
        char *a = tw_pool_alloc(p, n);
        ck_assert_ptr_nonnull(a);
        ck_assert_uint_eq((uintptr_t)a % 16, 0);
        memset(a, 0xab, n);
    }
    for (size_t n = 1000; n < 100000; n += 7919) {
        char *a = tw_pool_alloc(p, n);
        ck_assert_ptr_nonnull(a);
        ck_assert_uint_eq((uintptr_t)a % 16, 0);
        memset(a, 0xcd, n);
    }
    tw_pool_free(p);
}
END_TEST

START_TEST(test_allocations_do_not_overlap)
{
    tw_pool_t *p = tw_pool_new(256);
    enum {
        N = 500
    };
    unsigned char *ptrs[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        sizes[i] = (size_t)(i * 37 % 300) + 1; /* some exceed a quarter block */
        ptrs[i] = tw_pool_alloc(p, sizes[i]);
        ck_assert_ptr_nonnull(ptrs[i]);
        memset(ptrs[i], i & 0xff, sizes[i]);
    }
    for (int i = 0; i < N; i++)
        for (size_t k = 0; k < sizes[i]; k++)
            ck_assert_uint_eq(ptrs[i][k], (unsigned)(i & 0xff));
    tw_pool_free(p);
}
END_TEST

START_TEST(test_calloc_strndup)
{
    tw_pool_t *p = tw_pool_new(64);
    unsigned char *z = tw_pool_calloc(p, 1000);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(z[i], 0);
    char *s = tw_pool_strndup(p, "hello world", 5);
    ck_assert_str_eq(s, "hello");
    char *e = tw_pool_strndup(p, "", 0);
    ck_assert_str_eq(e, "");
    tw_pool_free(p);
}
END_TEST

static char order[16];
static int order_len;

static void push_order(void *arg)
{
    order[order_len++] = *(const char *)arg;
}

static const char A = 'a', B = 'b', C = 'c';

START_TEST(test_cleanups_newest_first)
{
    tw_pool_t *p = tw_pool_new(0);
    order_len = 0;
    ck_assert_int_eq(tw_pool_add_cleanup(p, push_order, (void *)&A), 0);
    ck_assert_int_eq(tw_pool_add_cleanup(p, push_order, (void *)&B), 0);
    ck_assert_int_eq(tw_pool_add_cleanup(p, push_order, (void *)&C), 0);
    tw_pool_free(p);
    ck_assert_int_eq(order_len, 3);
    ck_assert(memcmp(order, "cba", 3) == 0);
}
END_TEST

START_TEST(test_reset_runs_cleanups_and_reuses_first_block)
{
    tw_pool_t *p = tw_pool_new(1024);
    order_len = 0;
    char *first = tw_pool_alloc(p, 16);
    tw_pool_add_cleanup(p, push_order, (void *)&A);
    for (int i = 0; i < 100; i++)
        ck_assert_ptr_nonnull(tw_pool_alloc(p, 200)); /* spill into more blocks */
    ck_assert_ptr_nonnull(tw_pool_alloc(p, 1 << 20)); /* a large one */
    tw_pool_add_cleanup(p, push_order, (void *)&B);
    tw_pool_reset(p);
    ck_assert_int_eq(order_len, 2);
    ck_assert(memcmp(order, "ba", 2) == 0);
    /* The first block is kept and reused from its start. */
    char *again = tw_pool_alloc(p, 16);
    ck_assert_ptr_eq(again, first);
    /* Cleanups do not run twice. */
    tw_pool_reset(p);
    ck_assert_int_eq(order_len, 2);
    tw_pool_add_cleanup(p, push_order, (void *)&C);
    tw_pool_free(p);
    ck_assert_int_eq(order_len, 3);
    ck_assert_int_eq(order[2], 'c');
}
END_TEST

static tw_pool_t *nested_pool;

static void cleanup_adds_cleanup(void *arg)
{
    (void)arg;
    tw_pool_add_cleanup(nested_pool, push_order, (void *)&C);
}

START_TEST(test_cleanup_registering_cleanup)
{
    nested_pool = tw_pool_new(0);
    order_len = 0;
    tw_pool_add_cleanup(nested_pool, cleanup_adds_cleanup, NULL);
    tw_pool_free(nested_pool);
    ck_assert_int_eq(order_len, 1);
    ck_assert_int_eq(order[0], 'c');
}
END_TEST

/* The block cache: a freed block of a cached size comes back on the next
 * allocation of that size; each size keeps a bounded number. (Under
 * AddressSanitizer the cache passes everything through: nothing is kept.) */
START_TEST(test_block_cache)
{
    /* Many odd sizes (plugins' pools) take the slots first... */
    for (size_t n = 100; n < 100 + 40 * 16; n += 16)
        tw_block_free(tw_block_alloc(n), n);
    /* ...but an empty list gives its slot up to a new size. */
    tw_block_trim();
    ck_assert_uint_eq(tw_block_cached(), 0);
    char *a = tw_block_alloc(4096);
    ck_assert_ptr_nonnull(a);
    memset(a, 1, 4096);
    tw_block_free(a, 4096);
    bool caching = tw_block_cached() > 0;
    if (caching) {
        ck_assert_uint_eq(tw_block_cached(), 4096);
        char *b = tw_block_alloc(4096);
        ck_assert_ptr_eq(b, a);
        ck_assert_uint_eq(tw_block_cached(), 0);
        /* Another size is another list. */
        tw_block_free(b, 4096);
        char *c = tw_block_alloc(8192);
        ck_assert_ptr_ne(c, a);
        tw_block_free(c, 8192);
        ck_assert_uint_eq(tw_block_cached(), 4096 + 8192);
    }
    /* Bounded: at most 128 KiB (or 4 blocks) per size. */
    enum {
        N = 200
    };
    char *v[N];
    for (int i = 0; i < N; i++)
        ck_assert_ptr_nonnull(v[i] = tw_block_alloc(4096));
    for (int i = 0; i < N; i++)
        tw_block_free(v[i], 4096);
    ck_assert_uint_le(tw_block_cached(), 128 * 1024 + 8192);
    /* Pools take their blocks from the cache and give them back. */
    size_t before = tw_block_cached();
    tw_pool_t *p = tw_pool_new(4096);
    for (int i = 0; i < 10; i++)
        ck_assert_ptr_nonnull(tw_pool_alloc(p, 1000));
    tw_pool_free(p);
    if (caching)
        ck_assert_uint_ge(tw_block_cached(), before);
    tw_block_trim();
    ck_assert_uint_eq(tw_block_cached(), 0);
    tw_block_free(NULL, 4096);
}
END_TEST

START_TEST(test_free_null)
{
    tw_pool_free(NULL);
    tw_pool_reset(NULL);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_alignment);
    tcase_add_test(tc, test_allocations_do_not_overlap);
    tcase_add_test(tc, test_calloc_strndup);
    tcase_add_test(tc, test_cleanups_newest_first);
    tcase_add_test(tc, test_reset_runs_cleanups_and_reuses_first_block);
    tcase_add_test(tc, test_cleanup_registering_cleanup);
    tcase_add_test(tc, test_block_cache);
    tcase_add_test(tc, test_free_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
