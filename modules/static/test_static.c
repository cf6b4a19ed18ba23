/* test_static.c — static's unit tests through libtwister-test: files
 * written into the test server's directory before it starts, served with
 * their headers, ranges, and conditional requests. (tests/plugins/
 * test_static_util.c tests the helpers alone; test_static.py the binary.) */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static const char config[] = "modules: [static]\n"
                             "servers:\n"
                             "  - listen: [\"8080\"]\n"
                             "    routes:\n"
                             "      - prefix: /\n"
                             "        handler: static\n"
                             "        static: { root: \"$TW_TEST_DIR/www\" }\n";

static tw_test_server_t *srv;

static void setup(void)
{
    srv = tw_test_server_create();
    ck_assert_ptr_nonnull(srv);
    ck_assert_int_eq(tw_test_write_file(srv, "www/index.html", "<h1>home</h1>\n", 14), 0);
    ck_assert_int_eq(tw_test_write_file(srv, "www/a/b.txt", "0123456789", 10), 0);
    char err[1024];
    ck_assert_msg(tw_test_server_start(srv, config, err, sizeof err) == 0, "%s", err);
}

static void teardown(void)
{
    tw_test_server_free(srv);
}

START_TEST(test_file_with_type_and_length)
{
    tw_test_response_t *r = tw_test_fetch(srv, "GET", "/a/b.txt", NULL, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 200);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "0123456789");
    ck_assert_str_eq(tw_test_response_header(r, "Content-Length"), "10");
    ck_assert_ptr_nonnull(strstr(tw_test_response_header(r, "Content-Type"), "text/plain"));
    ck_assert_ptr_nonnull(tw_test_response_header(r, "ETag"));
}
END_TEST

START_TEST(test_index_range_and_etag)
{
    tw_test_response_t *r = tw_test_fetch(srv, "GET", "/", NULL, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "<h1>home</h1>\n");

    static const char *const range[] = {"Range: bytes=2-4", NULL};
    r = tw_test_fetch(srv, "GET", "/a/b.txt", range, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 206);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "234");
    ck_assert_str_eq(tw_test_response_header(r, "Content-Range"), "bytes 2-4/10");

    char inm[256];
    snprintf(inm, sizeof inm, "If-None-Match: %s", tw_test_response_header(r, "ETag"));
    const char *const cond[] = {inm, NULL};
    r = tw_test_fetch(srv, "GET", "/a/b.txt", cond, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 304);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "");
}
END_TEST

START_TEST(test_missing_and_outside_the_root)
{
    tw_test_response_t *r = tw_test_fetch(srv, "GET", "/nope.txt", NULL, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 404);
    static const char raw[] = "GET /../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n";
    r = tw_test_request(srv, raw, sizeof raw - 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_ne(tw_test_response_status(r), 200);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_file_with_type_and_length);
    tcase_add_test(tc, test_index_range_and_etag);
    tcase_add_test(tc, test_missing_and_outside_the_root);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
