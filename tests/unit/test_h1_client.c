/* test_h1_client.c — the HTTP/1.1 client half (core/http1/h1_client.c):
 * response heads parsed strictly, bodies decoded in any split, request
 * heads validated. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "twister/upstream.h"

static int parse(tw_pool_t *pool, const char *head, bool is_head, tw_http_response_t *out)
{
    return tw_http_response_parse(pool, head, strlen(head), is_head, out);
}

START_TEST(test_basic_head)
{
    tw_pool_t *pool = tw_pool_new(0);
    tw_http_response_t r;
    ck_assert_int_eq(parse(pool,
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                           "Content-Length:  12 \r\nX-Empty:\r\n\r\n",
                           false, &r),
                     0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.version, 11);
    ck_assert_uint_eq(r.count, 3);
    ck_assert_str_eq(r.fields[1].name.ptr, "Content-Length");
    ck_assert_str_eq(r.fields[1].value.ptr, "12");
    ck_assert_uint_eq(r.fields[2].value.len, 0);
    ck_assert_int_eq(r.body, TW_HTTP_BODY_LENGTH);
    ck_assert_uint_eq(r.content_length, 12);
    ck_assert(r.keep_alive);
    tw_pool_free(pool);
}
END_TEST

START_TEST(test_framing_choices)
{
    tw_pool_t *pool = tw_pool_new(0);
    tw_http_response_t r;
    ck_assert_int_eq(
        parse(pool, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, &r), 0);
    ck_assert_int_eq(r.body, TW_HTTP_BODY_CHUNKED);
    ck_assert_int_eq(parse(pool, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, &r),
                     0);
    ck_assert_int_eq(r.body, TW_HTTP_BODY_CLOSE);
    ck_assert(!r.keep_alive);
    ck_assert_int_eq(parse(pool, "HTTP/1.0 200 OK\r\n\r\n", false, &r), 0);
    ck_assert_int_eq(r.body, TW_HTTP_BODY_CLOSE);
    ck_assert_int_eq(parse(pool, "HTTP/1.1 204 No Content\r\n\r\n", false, &r), 0);
    ck_assert_int_eq(r.body, TW_HTTP_BODY_NONE);
    ck_assert(r.keep_alive);
    ck_assert_int_eq(parse(pool, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, &r), 0);
    ck_assert_int_eq(r.body, TW_HTTP_BODY_NONE);
    ck_assert_uint_eq(r.content_length, 5);
    ck_assert_int_eq(
        parse(pool, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, &r),
        0);
    ck_assert(!r.keep_alive);
    ck_assert_int_eq(parse(pool,
                           "HTTP/1.0 200\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                           false, &r),
                     0);
    ck_assert(r.keep_alive);
    ck_assert_uint_eq(r.reason.len, 0);
    tw_pool_free(pool);
}
END_TEST

START_TEST(test_malformed_heads)
{
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: \x7f\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n",
    };
    tw_pool_t *pool = tw_pool_new(0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tw_http_response_t r;
        errno = 0;
        ck_assert_msg(parse(pool, bad[i], false, &r) == -1, "accepted #%zu", i);
        ck_assert_int_eq(errno, EPROTO);
        ck_assert_ptr_nonnull(r.error);
    }
    tw_pool_free(pool);
}
END_TEST

/* Feeds body one byte at a time and returns the decoded bytes. */
static char *decode_bytewise(tw_http_decoder_t *d, const char *body, size_t len, int *final)
{
    static char out[256];
    size_t n = 0;
    *final = TW_HTTP_DECODE_AGAIN;
    for (size_t i = 0; i < len && *final == TW_HTTP_DECODE_AGAIN; i++) {
        size_t used, plen;
        const char *piece;
        int rc = tw_http_decoder_feed(d, body + i, 1, &used, &piece, &plen);
        if (rc == TW_HTTP_DECODE_DATA) {
            memcpy(out + n, piece, plen);
            n += plen;
            rc = tw_http_decoder_feed(d, body + i + used, 1 - used, &used, &piece, &plen);
        }
        if (rc != TW_HTTP_DECODE_AGAIN)
            *final = rc;
    }
    out[n] = '\0';
    return out;
}

START_TEST(test_bodies)
{
    tw_pool_t *pool = tw_pool_new(0);
    tw_http_response_t r;
    int final;
    ck_assert_int_eq(
        parse(pool, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, &r), 0);
    tw_http_decoder_t *d = tw_http_decoder_new(pool, &r);
    const char chunked[] = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n";
    ck_assert_str_eq(decode_bytewise(d, chunked, sizeof chunked - 1, &final), "hello world");
    ck_assert_int_eq(final, TW_HTTP_DECODE_DONE);

    d = tw_http_decoder_new(pool, &r);
    const char smuggle[] = "5\r\nhello\n0\r\n\r\n";
    decode_bytewise(d, smuggle, sizeof smuggle - 1, &final);
    ck_assert_int_eq(final, TW_HTTP_DECODE_ERROR);
    ck_assert_str_ne(tw_http_decoder_error(d), "");

    d = tw_http_decoder_new(pool, &r);
    decode_bytewise(d, "5\r\nhel", 6, &final);
    ck_assert_int_eq(tw_http_decoder_eof(d), TW_HTTP_DECODE_ERROR);

    ck_assert_int_eq(parse(pool, "HTTP/1.0 200 OK\r\n\r\n", false, &r), 0);
    d = tw_http_decoder_new(pool, &r);
    ck_assert_str_eq(decode_bytewise(d, "abc", 3, &final), "abc");
    ck_assert_int_eq(tw_http_decoder_eof(d), TW_HTTP_DECODE_DONE);
    tw_pool_free(pool);
}
END_TEST

START_TEST(test_request_head)
{
    tw_pool_t *pool = tw_pool_new(0);
    tw_header_t f[] = {{{"Host", 4}, {"a", 1}}};
    size_t len;
    char *h = tw_http_request_head(pool, (tw_str_t){"GET", 3}, (tw_str_t){"/x?y", 4}, f, 1, &len);
    ck_assert_ptr_nonnull(h);
    const char want[] = "GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n";
    ck_assert_uint_eq(len, sizeof want - 1);
    ck_assert_int_eq(memcmp(h, want, len), 0);
    tw_header_t bad[] = {{{"Host", 4}, {"a\r\nX: y", 7}}};
    errno = 0;
    ck_assert_ptr_null(
        tw_http_request_head(pool, (tw_str_t){"GET", 3}, (tw_str_t){"/", 1}, bad, 1, &len));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(
        tw_http_request_head(pool, (tw_str_t){"GET", 3}, (tw_str_t){"/ x", 3}, f, 1, &len));
    tw_pool_free(pool);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("h1_client");
    TCase *tc = tcase_create("client");
    tcase_add_test(tc, test_basic_head);
    tcase_add_test(tc, test_framing_choices);
    tcase_add_test(tc, test_malformed_heads);
    tcase_add_test(tc, test_bodies);
    tcase_add_test(tc, test_request_head);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
