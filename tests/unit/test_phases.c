/* test_phases.c — the phase registry: validation, ordering by (order,
 * config index, registration), the flat table layout and the -T dump. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phases.h"
#include "twister/twister.h"

static tw_module_t m0 = {TW_MODULE_HEADER, .name = "first", .version = "1"};
static tw_module_t m1 = {TW_MODULE_HEADER, .name = "second", .version = "1"};

/* Distinct functions so the table can be checked by identity. */
static int h1(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int h2(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int h3(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int h4(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int h5(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int hf1(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int hf2(tw_request_t *r)
{
    (void)r;
    return TW_NEXT;
}
static int bf1(tw_request_t *r, const char *d, size_t n, bool last)
{
    return tw_body_filter_next(r, d, n, last);
}

START_TEST(test_validation)
{
    tw_phases_t *p = tw_phases_new();
    ck_assert_ptr_nonnull(p);
    tw_phases_begin_module(p, &m0, 0);
    static const struct {
        int phase;
        int order;
        int ok;
    } cases[] = {
        {TW_PHASE_POST_READ, 0, 1}, {TW_PHASE_REWRITE, 1000, 1},
        {TW_PHASE_ACCESS, 500, 1},  {TW_PHASE_LOG, 7, 1},
        {TW_PHASE_CONTENT, 500, 0}, {TW_PHASE_FIND_ROUTE, 500, 0},
        {TW_PHASE_COUNT, 500, 0},   {-1, 500, 0},
        {TW_PHASE_ACCESS, -1, 0},   {TW_PHASE_ACCESS, 1001, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        int rc = tw_phases_add(p, (tw_phase_t)cases[i].phase, h1, cases[i].order);
        if (cases[i].ok) {
            ck_assert_msg(rc == 0, "case %zu", i);
        } else {
            ck_assert_msg(rc == -1 && errno == EINVAL, "case %zu", i);
        }
    }
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_ACCESS, NULL, 500), -1);
    ck_assert_int_eq(tw_phases_add_header_filter(p, NULL, 500), -1);
    ck_assert_int_eq(tw_phases_add_body_filter(p, bf1, 2000), -1);
    ck_assert_int_eq(errno, EINVAL);
    char err[128];
    ck_assert_int_eq(tw_phases_compile(p, err, sizeof err), 0);
    tw_phases_free(p);
    tw_phases_free(NULL);
}
END_TEST

START_TEST(test_ordering)
{
    tw_phases_t *p = tw_phases_new();
    /* Registration order is deliberately the opposite of the result. */
    tw_phases_begin_module(p, &m1, 1);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_ACCESS, h5, TW_ORDER_LAST), 0);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_ACCESS, h3, TW_ORDER_MIDDLE), 0);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_ACCESS, h4, TW_ORDER_MIDDLE), 0);
    ck_assert_int_eq(tw_phases_add_header_filter(p, hf2, 10), 0);
    tw_phases_begin_module(p, &m0, 0);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_ACCESS, h2, TW_ORDER_MIDDLE), 0);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_ACCESS, h1, TW_ORDER_FIRST), 0);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_POST_READ, h1, 300), 0);
    ck_assert_int_eq(tw_phases_add(p, TW_PHASE_LOG, h2, 300), 0);
    ck_assert_int_eq(tw_phases_add_header_filter(p, hf1, 10), 0);
    ck_assert_int_eq(tw_phases_add_body_filter(p, bf1, 10), 0);
    ck_assert_ptr_null(tw_phases_table(p)); /* not compiled yet */

    char err[128];
    ck_assert_int_eq(tw_phases_compile(p, err, sizeof err), 0);
    const tw_phase_table_t *t = tw_phases_table(p);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->count, 10);

    /* POST_READ: h1 */
    ck_assert_uint_eq(t->phase_start[TW_PHASE_POST_READ], 0);
    ck_assert_uint_eq(t->phase_start[TW_PHASE_REWRITE], 1);
    ck_assert_ptr_eq(t->entries[0].fn.handler, h1);
    /* REWRITE and FIND_ROUTE empty */
    ck_assert_uint_eq(t->phase_start[TW_PHASE_FIND_ROUTE], 1);
    ck_assert_uint_eq(t->phase_start[TW_PHASE_ACCESS], 1);
    /* ACCESS: h1@0 (m0), h2@500 (m0, index 0), h3@500, h4@500 (m1, in
     * registration order), h5@1000 */
    size_t a = t->phase_start[TW_PHASE_ACCESS];
    ck_assert_uint_eq(t->phase_start[TW_PHASE_CONTENT] - a, 5);
    tw_handler_fn want[] = {h1, h2, h3, h4, h5};
    const tw_module_t *mods[] = {&m0, &m0, &m1, &m1, &m1};
    for (size_t i = 0; i < 5; i++) {
        ck_assert_msg(t->entries[a + i].fn.handler == want[i], "ACCESS[%zu]", i);
        ck_assert_ptr_eq(t->entries[a + i].module, mods[i]);
    }
    /* CONTENT empty, LOG: h2 */
    ck_assert_uint_eq(t->phase_start[TW_PHASE_LOG], t->phase_start[TW_PHASE_CONTENT]);
    ck_assert_uint_eq(t->phase_start[TW_PHASE_LOG + 1] - t->phase_start[TW_PHASE_LOG], 1);
    ck_assert_ptr_eq(t->entries[t->phase_start[TW_PHASE_LOG]].fn.handler, h2);
    /* header filters: hf1 (m0) before hf2 (m1) at the same order */
    ck_assert_uint_eq(t->header_filter_start, t->phase_start[TW_PHASE_COUNT]);
    ck_assert_uint_eq(t->body_filter_start - t->header_filter_start, 2);
    ck_assert_ptr_eq(t->entries[t->header_filter_start].fn.header_filter, hf1);
    ck_assert_ptr_eq(t->entries[t->header_filter_start + 1].fn.header_filter, hf2);
    ck_assert_uint_eq(t->count - t->body_filter_start, 1);
    ck_assert_ptr_eq(t->entries[t->body_filter_start].fn.body_filter, bf1);

    /* Compiling again is harmless. */
    ck_assert_int_eq(tw_phases_compile(p, err, sizeof err), 0);
    ck_assert_uint_eq(tw_phases_table(p)->count, 10);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tw_phases_dump(p, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "ACCESS:\n     0  first\n   500  first\n   500  second\n"
                                       "   500  second\n  1000  second\n"));
    ck_assert_ptr_nonnull(strstr(text, "REWRITE: (none)\n"));
    ck_assert_ptr_nonnull(strstr(text, "header filters:\n    10  first\n    10  second\n"));
    free(text);
    tw_phases_free(p);
}
END_TEST

START_TEST(test_empty)
{
    tw_phases_t *p = tw_phases_new();
    char err[64];
    ck_assert_int_eq(tw_phases_compile(p, err, sizeof err), 0);
    const tw_phase_table_t *t = tw_phases_table(p);
    ck_assert_uint_eq(t->count, 0);
    for (int i = 0; i <= TW_PHASE_COUNT; i++)
        ck_assert_uint_eq(t->phase_start[i], 0);
    ck_assert_str_eq(tw_phase_name(TW_PHASE_CONTENT), "CONTENT");
    ck_assert_str_eq(tw_phase_name(TW_PHASE_COUNT), "?");
    tw_phases_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("phases");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_validation);
    tcase_add_test(tc, test_ordering);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
