/* test_headers.c — headers' unit tests through libtwister-test: values
 * built from the server's variables (twister/variables.h), including the
 * forms a template meets rarely: many variables in one value, an
 * absolute-form target, a value that is missing, one too long to send. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static const char config[] =
    "modules: [headers, hello]\n"
    "servers:\n"
    "  - listen: [\"8080\"]\n"
    "    routes:\n"
    "      - prefix: /\n"
    "        handler: hello\n"
    "        headers:\n"
    "          set:\n"
    "            X-Many: \"$host,$host,$host,$host,$host,$host,$host,$host,$host,$host,"
    "$host,$host,$host,$host,$host,$host,$host,$host,$host,$host\"\n"
    "            X-Target: \"$scheme://$host$request_uri ($uri)\"\n"
    "            X-Missing: \"[$http_x_none][$https][$ssl_protocol][$remote_user]\"\n"
    "            X-Long: \"$arg_v$arg_v\"\n"
    "            X-Server: \"$server_protocol $request_method $status\"\n";

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

static tw_test_response_t *raw(const char *request)
{
    tw_test_response_t *r = tw_test_request(srv, request, strlen(request));
    ck_assert_msg(r != NULL, "no response to %s", request);
    return r;
}

START_TEST(test_many_variables_in_one_value)
{
    tw_test_response_t *r = raw("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(tw_test_response_status(r), 200);
    ck_assert_str_eq(tw_test_response_header(r, "X-Many"),
                     "h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h");
}
END_TEST

START_TEST(test_absolute_form_target)
{
    tw_test_response_t *r =
        raw("GET http://example.com/a%20b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    ck_assert_int_eq(tw_test_response_status(r), 200);
    /* $request_uri is the target from the path on; $uri is decoded */
    ck_assert_str_eq(tw_test_response_header(r, "X-Target"), "http://example.com/a%20b?x=1 (/a b)");
}
END_TEST

START_TEST(test_missing_values_are_empty)
{
    tw_test_response_t *r = raw("GET / HTTP/1.0\r\n\r\n");
    ck_assert_str_eq(tw_test_response_header(r, "X-Missing"), "[][][][]");
    /* the status is known once the handler chose it */
    ck_assert_str_eq(tw_test_response_header(r, "X-Server"), "HTTP/1.0 GET 200");
}
END_TEST

START_TEST(test_a_value_too_long_is_skipped)
{
    static char request[12000];
    char value[5000];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    snprintf(request, sizeof request, "GET /?v=%s HTTP/1.1\r\nHost: h\r\n\r\n", value);
    tw_test_response_t *r = raw(request);
    ck_assert_int_eq(tw_test_response_status(r), 200);
    /* 2 x 4999 bytes is over the 8 KiB a header value may take */
    ck_assert_ptr_null(tw_test_response_header(r, "X-Long"));
    ck_assert_str_eq(tw_test_response_header(r, "X-Many"),
                     "h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("headers");
    TCase *tc = tcase_create("variables");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_many_variables_in_one_value);
    tcase_add_test(tc, test_absolute_form_target);
    tcase_add_test(tc, test_missing_values_are_empty);
    tcase_add_test(tc, test_a_value_too_long_is_skipped);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
