/* test_testing.c — libtwister-test itself (core/testing/testing.c), with
 * the shipped modules as the plugins under test: the error log capture,
 * peer addresses, shared zones in a server without a master, stepping a
 * suspended request, config errors, and pipelined responses read apart. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static tw_test_server_t *start(const char *yaml)
{
    char err[1024];
    tw_test_server_t *s = tw_test_server_new(yaml, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    return s;
}

START_TEST(test_error_log_and_zones)
{
    /* limit_conn refuses the second request of one address while the
     * first (echo, waiting for its body) is in progress, and logs it. */
    tw_test_server_t *s = start("modules: [limit_conn, echo]\n"
                                "limit_conn:\n"
                                "  zones: { per_ip: { key: \"$remote_addr\", size: 1m } }\n"
                                "servers:\n"
                                "  - listen: [\"8080\"]\n"
                                "    routes:\n"
                                "      - path: /up\n"
                                "        handler: echo\n"
                                "        echo: { buffer: true }\n"
                                "        limit_conn: { zone: per_ip, max: 1 }\n");
    tw_test_conn_t *first = tw_test_connect_from(s, "192.0.2.1", 0);
    ck_assert_ptr_nonnull(first);
    static const char partial[] = "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab";
    ck_assert_int_eq(tw_test_send(first, partial, sizeof partial - 1), 0);
    ck_assert_int_eq(tw_test_run(s), 0);
    ck_assert_ptr_null(tw_test_response(first));

    tw_test_conn_t *second = tw_test_connect_from(s, "192.0.2.1", 0);
    ck_assert_int_eq(tw_test_send(second, partial, sizeof partial - 1), 0);
    ck_assert_int_eq(tw_test_run(s), 0);
    tw_test_response_t *r = tw_test_response(second);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 503);
    const char *log = tw_test_error_log(s, NULL);
    ck_assert_msg(strstr(log, "[warn]") && strstr(log, "limit_conn:") && strstr(log, "192.0.2.1"),
                  "%s", log);

    /* Another address is not limited. */
    tw_test_conn_t *third = tw_test_connect_from(s, "2001:db8::7", 0);
    ck_assert_ptr_nonnull(third);
    static const char one[] = "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nz";
    ck_assert_int_eq(tw_test_send(third, one, sizeof one - 1), 0);
    ck_assert_int_eq(tw_test_run(s), 0);
    r = tw_test_response(third);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "z");

    /* The first completes, step by step. */
    ck_assert_int_eq(tw_test_send(first, "cd", 2), 0);
    int steps = 0;
    while (!(r = tw_test_response(first)) && steps++ < 100)
        ck_assert_int_ge(tw_test_step(s), 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "abcd");
    ck_assert_ptr_null(tw_test_connect_from(s, "not an address", 0));
    ck_assert_ptr_null(tw_test_connect_from(s, "127.0.0.1", 1));
    tw_test_server_free(s);
}
END_TEST

START_TEST(test_pipelined_and_interim_responses)
{
    tw_test_server_t *s = start("modules: [hello, echo]\n"
                                "servers:\n"
                                "  - listen: [\"8080\"]\n"
                                "    routes:\n"
                                "      - { path: /a, handler: hello, hello: { message: A } }\n"
                                "      - { path: /e, handler: echo }\n");
    static const char two[] =
        "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    tw_test_response_t *r = tw_test_request(s, two, sizeof two - 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tw_test_response_body(r, NULL), "A");
    r = tw_test_response(tw_test_last_conn(s));
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 404);
    size_t len;
    tw_test_received(tw_test_last_conn(s), &len);
    size_t a, b;
    tw_test_response_raw(tw_test_request(s, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n", 28), &a);
    ck_assert_uint_gt(len, a);

    /* Expect: 100-continue gets its interim answer first. */
    static const char *const expect[] = {"Expect: 100-continue", "Content-Length: 2", NULL};
    tw_test_conn_t *c = tw_test_connect(s);
    ck_assert_int_eq(tw_test_send_request(c, "PUT", "/e", expect, NULL, 0), 0);
    ck_assert_int_eq(tw_test_run(s), 0);
    r = tw_test_response(c);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(tw_test_response_status(r), 100);
    ck_assert_int_eq(tw_test_send(c, "hi", 2), 0);
    ck_assert_int_eq(tw_test_run(s), 0);
    r = tw_test_response(c);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tw_test_response_body(r, &b), "hi");
    ck_assert_uint_eq(b, 2);
    tw_test_server_free(s);
}
END_TEST

START_TEST(test_config_errors_and_files)
{
    char err[1024];
    ck_assert_ptr_null(tw_test_server_new(
        "modules: [no_such_module]\nservers: [ { listen: [\"80\"], routes: [] } ]\n", err,
        sizeof err));
    ck_assert_msg(strstr(err, "twister-test.yaml:1:") != NULL, "%s", err);
    tw_test_server_t *s = tw_test_server_create();
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tw_test_write_file(s, "d/e/f.txt", "x", 1), 0);
    ck_assert_int_eq(tw_test_write_file(s, "/abs", "x", 1), -1);
    char *f = tw_test_read_file(s, "d/e/f.txt", NULL);
    ck_assert_str_eq(f, "x");
    free(f);
    ck_assert_ptr_null(tw_test_read_file(s, "missing", NULL));
    ck_assert_int_eq(tw_test_server_start(s, "servers: {", err, sizeof err), -1);
    ck_assert_str_eq(tw_test_server_error(s), err);
    tw_test_server_free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("testing");
    TCase *tc = tcase_create("harness");
    tcase_add_test(tc, test_error_log_and_zones);
    tcase_add_test(tc, test_pipelined_and_interim_responses);
    tcase_add_test(tc, test_config_errors_and_files);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
