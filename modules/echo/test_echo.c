/* test_echo.c — echo's unit tests through libtwister-test: bodies in
 * pieces, chunked, the body timeout on the manual clock, and a client that
 * goes away in the middle of its body. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static const char config[] = "modules: [echo]\n"
                             "timeouts: { body: 5s }\n"
                             "servers:\n"
                             "  - listen: [\"8080\"]\n"
                             "    routes:\n"
                             "      - path: /echo\n"
                             "        handler: echo\n"
                             "      - path: /buffered\n"
                             "        handler: echo\n"
                             "        echo: { buffer: true }\n";

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

START_TEST(test_body_comes_back)
{
    static const char *const headers[] = {"Content-Type: text/x-test", NULL};
    tw_test_response_t *r = tw_test_fetch(srv, "POST", "/echo", headers, "ping pong", 9);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 200);
    size_t len;
    const char *body = tw_test_response_body(r, &len);
    ck_assert_uint_eq(len, 9);
    ck_assert_str_eq(body, "ping pong");
    ck_assert_str_eq(tw_test_response_header(r, "Content-Length"), "9");
}
END_TEST

START_TEST(test_chunked_request_is_answered_chunked)
{
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: t\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    tw_test_response_t *r = tw_test_request(srv, req, sizeof req - 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 200);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "abcde");
    ck_assert_str_eq(tw_test_response_header(r, "Transfer-Encoding"), "chunked");
}
END_TEST

START_TEST(test_body_in_pieces_step_by_step)
{
    tw_test_conn_t *c = tw_test_connect(srv);
    static const char head[] = "POST /buffered HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc";
    ck_assert_int_eq(tw_test_send(c, head, sizeof head - 1), 0);
    ck_assert_int_eq(tw_test_run(srv), 0);
    /* The handler waits for the rest of the body: no answer yet. */
    ck_assert_ptr_null(tw_test_response(c));
    ck_assert_uint_eq(tw_test_connections(srv), 1);
    ck_assert_int_eq(tw_test_advance(srv, 4000), 0); /* within timeouts.body */
    ck_assert_int_eq(tw_test_send(c, "def", 3), 0);
    ck_assert_int_eq(tw_test_run(srv), 0);
    tw_test_response_t *r = tw_test_response(c);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "abcdef");
}
END_TEST

START_TEST(test_stalled_body_times_out)
{
    tw_test_conn_t *c = tw_test_connect(srv);
    static const char head[] = "POST /buffered HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab";
    ck_assert_int_eq(tw_test_send(c, head, sizeof head - 1), 0);
    ck_assert_int_eq(tw_test_run(srv), 0);
    ck_assert_int_eq(tw_test_advance(srv, 4999), 0);
    ck_assert_ptr_null(tw_test_response(c));
    ck_assert_int_eq(tw_test_advance(srv, 2), 0);
    tw_test_response_t *r = tw_test_response(c);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 408);
}
END_TEST

START_TEST(test_client_goes_away_mid_body)
{
    tw_test_conn_t *c = tw_test_connect(srv);
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf";
    ck_assert_int_eq(tw_test_send(c, head, sizeof head - 1), 0);
    ck_assert_int_eq(tw_test_run(srv), 0);
    ck_assert_uint_eq(tw_test_connections(srv), 1);
    tw_test_client_close(c);
    ck_assert_int_eq(tw_test_send(c, "x", 1), -1);
    ck_assert_int_eq(tw_test_run(srv), 0);
    /* The server noticed, ended the request and freed the connection. */
    ck_assert_uint_eq(tw_test_connections(srv), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("echo");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_body_comes_back);
    tcase_add_test(tc, test_chunked_request_is_answered_chunked);
    tcase_add_test(tc, test_body_in_pieces_step_by_step);
    tcase_add_test(tc, test_stalled_body_times_out);
    tcase_add_test(tc, test_client_goes_away_mid_body);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
