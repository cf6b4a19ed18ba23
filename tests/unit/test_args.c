/* test_args.c — core/request/args.c: percent-decoding (the request-bound
 * getters are covered end to end by tests/integration/test_plugin_kit.py). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "twister/http.h"

static const struct {
    const char *in;
    bool plus_is_space;
    const char *out; /* NULL: EINVAL */
    size_t out_len;
} cases[] = {
    {"", false, "", 0},
    {"plain", false, "plain", 5},
    {"a%20b", false, "a b", 3},
    {"a+b", false, "a+b", 3},
    {"a+b", true, "a b", 3},
    {"%2B+", true, "+ ", 2},
    {"%7e%7E", false, "~~", 2},
    {"%00x", false, "\0x", 2}, /* a NUL is a byte like any other here */
    {"%e2%82%ac", false, "\xe2\x82\xac", 3},
    {"100%", false, NULL, 0},
    {"%4", false, NULL, 0},
    {"%zz", false, NULL, 0},
    {"%%41", false, NULL, 0},
};

START_TEST(test_percent_decode)
{
    const char *in = cases[_i].in;
    char out[32];
    errno = 0;
    ssize_t n = tw_percent_decode(out, in, strlen(in), cases[_i].plus_is_space);
    if (!cases[_i].out) {
        ck_assert_int_eq(n, -1);
        ck_assert_int_eq(errno, EINVAL);
        return;
    }
    ck_assert_int_eq(n, (ssize_t)cases[_i].out_len);
    ck_assert_mem_eq(out, cases[_i].out, cases[_i].out_len);
}
END_TEST

START_TEST(test_decode_in_place)
{
    char buf[] = "x%41%42+y";
    ssize_t n = tw_percent_decode(buf, buf, strlen(buf), true);
    ck_assert_int_eq(n, 5);
    ck_assert_mem_eq(buf, "xAB y", 5);
}
END_TEST

static Suite *args_suite(void)
{
    Suite *s = suite_create("args");
    TCase *tc = tcase_create("args");
    tcase_add_loop_test(tc, test_percent_decode, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_decode_in_place);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(args_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
