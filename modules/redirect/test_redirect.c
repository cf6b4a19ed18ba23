/* test_redirect.c — redirect's unit tests through libtwister-test, with
 * access_log on the same routes: templates with variables and regex
 * captures, fixed answers, and the lines the access log receives when its
 * flush timer fires on the manual clock. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static const char config[] =
    "modules: [access_log, redirect]\n"
    "access_log: { path: \"$TW_TEST_DIR/access.log\", format: common, flush_interval: 1s }\n"
    "servers:\n"
    "  - listen: [\"8080\"]\n"
    "    routes:\n"
    "      - path: /old\n"
    "        handler: redirect\n"
    "        redirect: { return: 301 https://example.com$uri }\n"
    "      - regex: \"^/items/([a-z]+)/([0-9]+)$\"\n"
    "        handler: redirect\n"
    "        redirect: { return: \"302 /new/$2/$1$is_args$args\" }\n"
    "      - path: /gone\n"
    "        handler: redirect\n"
    "        redirect: { return: \"410\" }\n"
    "      - path: /ping\n"
    "        handler: redirect\n"
    "        redirect: { return: 200 \"pong\" }\n";

static tw_test_server_t *srv;

static void setup(void)
{
    char err[1024];
    srv = tw_test_server_new(config, err, sizeof err);
    ck_assert_msg(srv != NULL, "%s", err);
}

static void teardown(void)
{
    tw_test_server_free(srv);
}

static tw_test_response_t *get(const char *target)
{
    tw_test_response_t *r = tw_test_fetch(srv, "GET", target, NULL, NULL, 0);
    ck_assert_msg(r != NULL, "no response to %s", target);
    return r;
}

START_TEST(test_uri_variable)
{
    tw_test_response_t *r = get("/old");
    ck_assert_int_eq(tw_test_response_status(r), 301);
    ck_assert_str_eq(tw_test_response_header(r, "Location"), "https://example.com/old");
}
END_TEST

START_TEST(test_regex_captures_and_args)
{
    tw_test_response_t *r = get("/items/books/42?x=1");
    ck_assert_int_eq(tw_test_response_status(r), 302);
    ck_assert_str_eq(tw_test_response_header(r, "Location"), "/new/42/books?x=1");
    r = get("/items/books/4x2");
    ck_assert_int_eq(tw_test_response_status(r), 404);
}
END_TEST

START_TEST(test_fixed_answers)
{
    ck_assert_int_eq(tw_test_response_status(get("/gone")), 410);
    tw_test_response_t *r = get("/ping");
    ck_assert_int_eq(tw_test_response_status(r), 200);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "pong");
}
END_TEST

START_TEST(test_access_log_flushes_on_its_timer)
{
    get("/gone");
    get("/old");
    /* Buffered: nothing written until flush_interval passes. */
    char *log = tw_test_read_file(srv, "access.log", NULL);
    ck_assert_str_eq(log ? log : "", "");
    free(log);
    ck_assert_int_eq(tw_test_advance(srv, 1000), 0);
    log = tw_test_read_file(srv, "access.log", NULL);
    ck_assert_ptr_nonnull(log);
    /* Two lines, in order (the time in them is the plugin's own
     * time(NULL), not the test clock). */
    const char *gone = strstr(log, "\"GET /gone HTTP/1.1\" 410 ");
    const char *old = strstr(log, "\"GET /old HTTP/1.1\" 301 ");
    ck_assert_msg(gone && old && gone < old, "%s", log);
    ck_assert_int_eq(strncmp(log, "127.0.0.1 - - [", 15), 0);
    free(log);
    /* Nothing went wrong, so the error log has no error line. */
    ck_assert_ptr_null(strstr(tw_test_error_log(srv, NULL), "[error]"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redirect");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_uri_variable);
    tcase_add_test(tc, test_regex_captures_and_args);
    tcase_add_test(tc, test_fixed_answers);
    tcase_add_test(tc, test_access_log_flushes_on_its_timer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
