/* test_h1_out.c — the HTTP/1.1 head writer and framing rules
 * (core/http1/h1_out.c) on their own, as a client writing a request would
 * use them: no connection, no server. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http1/h1_out.h"

START_TEST(test_request_head)
{
    tw_header_t fields[] = {{{"Host", 4}, {"example.com", 11}}, {{"X-A", 3}, {"1", 1}}};
    tw_header_t extra[] = {{{"Content-Length", 14}, {"5", 1}}};
    tw_h1_head_t h = {"POST /up HTTP/1.1", 17, fields, 2, extra, 1};
    size_t size = tw_h1_head_size(&h);
    char *buf = malloc(size);
    ck_assert_uint_eq(tw_h1_head_write(&h, buf), size);
    const char want[] = "POST /up HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n"
                        "Content-Length: 5\r\n\r\n";
    ck_assert_uint_eq(size, sizeof want - 1);
    ck_assert_int_eq(memcmp(buf, want, size), 0);
    free(buf);
}
END_TEST

START_TEST(test_status_line)
{
    char buf[64];
    size_t n = tw_h1_status_line(404, buf);
    ck_assert_int_eq((int)n, 22);
    ck_assert_int_eq(memcmp(buf, "HTTP/1.1 404 Not Found", n), 0);
    n = tw_h1_status_line(42, buf); /* not a status: the server's fault */
    ck_assert_int_eq(memcmp(buf, "HTTP/1.1 500 Internal Server Error", n), 0);
}
END_TEST

START_TEST(test_framing)
{
    static const struct {
        int status;
        int64_t length;
        bool is_head;
        int version;
        bool header_only, emit_length, chunked, close_delimited;
    } cases[] = {
        {200, 5, false, 11, false, true, false, false},
        {200, -1, false, 11, false, false, true, false},
        {200, -1, false, 10, false, false, false, true},
        {200, 5, true, 11, true, true, false, false},   /* HEAD keeps a declared length */
        {200, -1, true, 11, true, false, false, false}, /* and invents none */
        {204, 5, false, 11, true, false, false, false}, /* 204 never has one */
        {304, 5, false, 11, true, true, false, false},
        {304, -1, false, 11, true, false, false, false},
        {101, -1, false, 11, true, false, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_h1_framing_t f = tw_h1_response_framing(cases[i].status, cases[i].length,
                                                   cases[i].is_head, cases[i].version);
        ck_assert_msg(f.header_only == cases[i].header_only &&
                          f.emit_length == cases[i].emit_length && f.chunked == cases[i].chunked &&
                          f.close_delimited == cases[i].close_delimited,
                      "case %zu", i);
    }
}
END_TEST

START_TEST(test_numbers_and_date)
{
    char buf[32];
    ck_assert_uint_eq(tw_h1_chunk_line(0x1a2b, buf), 6);
    ck_assert_int_eq(memcmp(buf, "1a2b\r\n", 6), 0);
    ck_assert_uint_eq(tw_h1_chunk_line(0, buf), 3);
    ck_assert_uint_eq(tw_h1_u64(18446744073709551615u, buf), 20);
    ck_assert_int_eq(memcmp(buf, "18446744073709551615", 20), 0);
    time_t sec = (time_t)-1;
    char date[32] = "";
    const char *d = tw_h1_date(time(NULL), &sec, date);
    ck_assert_uint_eq(strlen(d), 29);
    ck_assert_int_eq(memcmp(d + 25, " GMT", 4), 0);
    ck_assert(sec != (time_t)-1);
    /* 2026-01-01T00:00:00Z, the test library's manual wall clock. */
    ck_assert_str_eq(tw_h1_date(1767225600, &sec, date), "Thu, 01 Jan 2026 00:00:00 GMT");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("h1_out");
    TCase *tc = tcase_create("writer");
    tcase_add_test(tc, test_request_head);
    tcase_add_test(tc, test_status_line);
    tcase_add_test(tc, test_framing);
    tcase_add_test(tc, test_numbers_and_date);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
