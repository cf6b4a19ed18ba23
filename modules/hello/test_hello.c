/* test_hello.c — hello's unit tests, through libtwister-test: the real
 * server in this process (parser, phases, the built hello.so), no socket,
 * no fork, a manual clock. The example of modules/README.md's "Testing
 * your plugin". */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static const char config[] = "modules: [hello]\n"
                             "server_tokens: false\n"
                             "hello: { message: \"global\\n\" }\n"
                             "servers:\n"
                             "  - listen: [\"8080\"]\n"
                             "    routes:\n"
                             "      - path: /hello\n"
                             "        handler: hello\n"
                             "      - path: /hi\n"
                             "        handler: hello\n"
                             "        hello: { message: \"Hi!\" }\n";

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

START_TEST(test_route_message_and_headers)
{
    tw_test_response_t *r = tw_test_fetch(srv, "GET", "/hi", NULL, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 200);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "Hi!");
    ck_assert_str_eq(tw_test_response_header(r, "Content-Type"), "text/plain; charset=utf-8");
    ck_assert_str_eq(tw_test_response_header(r, "Content-Length"), "3");
}
END_TEST

START_TEST(test_global_message_exact_bytes)
{
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tw_test_response_t *r = tw_test_request(srv, req, sizeof req - 1);
    ck_assert_ptr_nonnull(r);
    /* The manual clock makes even the Date header exact. */
    ck_assert_str_eq(tw_test_response_raw(r, NULL), "HTTP/1.1 200 OK\r\n"
                                                    "Content-Type: text/plain; charset=utf-8\r\n"
                                                    "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                                                    "Server: twister\r\n"
                                                    "Content-Length: 7\r\n"
                                                    "Connection: close\r\n"
                                                    "\r\n"
                                                    "global\n");
    ck_assert(tw_test_closed(tw_test_last_conn(srv)));
}
END_TEST

START_TEST(test_head_and_keep_alive)
{
    tw_test_conn_t *c = tw_test_connect(srv);
    ck_assert_int_eq(tw_test_send_request(c, "HEAD", "/hi", NULL, NULL, 0), 0);
    ck_assert_int_eq(tw_test_send_request(c, "GET", "/hello", NULL, NULL, 0), 0);
    ck_assert_int_eq(tw_test_run(srv), 0);
    tw_test_response_t *head = tw_test_response(c);
    tw_test_response_t *get = tw_test_response(c);
    ck_assert_ptr_nonnull(head);
    ck_assert_ptr_nonnull(get);
    ck_assert_str_eq(tw_test_response_header(head, "Content-Length"), "3");
    ck_assert_str_eq(tw_test_response_body(head, NULL), "");
    ck_assert_str_eq(tw_test_response_body(get, NULL), "global\n");
    ck_assert_ptr_null(tw_test_response(c));
    ck_assert(!tw_test_closed(c));
}
END_TEST

START_TEST(test_unknown_path_is_404_and_keepalive_times_out)
{
    tw_test_response_t *r = tw_test_fetch(srv, "GET", "/nope", NULL, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 404);
    tw_test_conn_t *c = tw_test_last_conn(srv);
    /* The idle connection closes after timeouts.keepalive (75 s). */
    ck_assert_int_eq(tw_test_advance(srv, 74000), 0);
    ck_assert(!tw_test_closed(c));
    ck_assert_int_eq(tw_test_advance(srv, 2000), 0);
    ck_assert(tw_test_closed(c));
    ck_assert_uint_eq(tw_test_connections(srv), 0);
}
END_TEST

START_TEST(test_bad_config_names_the_line)
{
    char err[1024];
    tw_test_server_t *bad = tw_test_server_new("modules: [hello]\n"
                                               "hello: { mesage: x }\n"
                                               "servers:\n"
                                               "  - listen: [\"8080\"]\n"
                                               "    routes: [ { path: /, handler: hello } ]\n",
                                               err, sizeof err);
    ck_assert_ptr_null(bad);
    ck_assert_msg(strstr(err, "twister-test.yaml:2:") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "mesage") != NULL, "%s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hello");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_route_message_and_headers);
    tcase_add_test(tc, test_global_message_exact_bytes);
    tcase_add_test(tc, test_head_and_keep_alive);
    tcase_add_test(tc, test_unknown_path_is_404_and_keepalive_times_out);
    tcase_add_test(tc, test_bad_config_names_the_line);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
