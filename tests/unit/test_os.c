/* Unit tests for core/os.c: cgroup cpu.max parsing and CPU counting. */
#include <check.h>
#include <stdlib.h>

#include "os.h"

START_TEST(cpu_max_lines)
{
    static const struct {
        const char *line;
        unsigned cpus;
    } cases[] = {
        {"max 100000\n", 0},  {"100000 100000\n", 1}, {"150000 100000\n", 2},
        {"200000 100000", 2}, {"50000 100000\n", 1},  {"0 100000\n", 0},
        {"garbage\n", 0},     {"100000 0\n", 0},      {"400000 100000\n", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(tw_os_parse_cpu_max(cases[i].line) == cases[i].cpus, "case %zu (%s)", i,
                      cases[i].line);
}
END_TEST

START_TEST(available_cpus_positive)
{
    unsigned n = tw_os_available_cpus();
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, 4096);
}
END_TEST

START_TEST(nofile_never_lowered)
{
    unsigned long now = tw_os_raise_nofile(16);
    ck_assert_uint_ge(now, 16);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("os");
    TCase *tc = tcase_create("os");
    tcase_add_test(tc, cpu_max_lines);
    tcase_add_test(tc, available_cpus_positive);
    tcase_add_test(tc, nofile_never_lowered);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
