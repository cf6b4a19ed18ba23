/* test_h1_body.c — the HTTP/1.1 body decoder (core/http1/h1_body.c) on its
 * own, as a client would use it: Content-Length and chunked bodies fed in
 * every split, the limit enforced as soon as a length is announced, and the
 * body rate deadline at its boundary. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1/h1_body.h"

/* Feeds in[0..len) in pieces of step bytes; collects the decoded body.
 * Returns the final result (DONE, or the error). */
static tw_h1_body_result_t feed_all(tw_h1_body_decoder_t *d, const char *in, size_t len,
                                    size_t step, char *out, size_t *out_len)
{
    *out_len = 0;
    size_t pos = 0;
    while (pos <= len) {
        size_t end = pos + step < len ? pos + step : len;
        size_t at = pos;
        for (;;) {
            size_t used;
            const char *piece;
            size_t plen;
            tw_h1_body_result_t rc = tw_h1_body_feed(d, in + at, end - at, &used, &piece, &plen);
            at += used;
            if (rc == TW_H1_BODY_DATA) {
                memcpy(out + *out_len, piece, plen);
                *out_len += plen;
                continue;
            }
            if (rc != TW_H1_BODY_AGAIN)
                return rc;
            break;
        }
        if (end == len)
            return TW_H1_BODY_AGAIN;
        pos = end;
    }
    return TW_H1_BODY_AGAIN;
}

START_TEST(test_length_every_split)
{
    const char *in = "hello worldGET";
    for (size_t step = 1; step <= 14; step++) {
        tw_h1_body_decoder_t d;
        tw_h1_body_init(&d, TW_BODY_LENGTH, 11, 100);
        char out[64];
        size_t n;
        ck_assert_int_eq(feed_all(&d, in, strlen(in), step, out, &n), TW_H1_BODY_DONE);
        ck_assert_uint_eq(n, 11);
        ck_assert_int_eq(memcmp(out, "hello world", 11), 0);
        ck_assert_uint_eq(d.received, 11);
    }
}
END_TEST

START_TEST(test_chunked_every_split)
{
    const char *in = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
    size_t len = strlen(in) - 4;
    for (size_t step = 1; step <= len; step++) {
        tw_h1_body_decoder_t d;
        tw_h1_body_init(&d, TW_BODY_CHUNKED, 0, 100);
        char out[64];
        size_t n;
        ck_assert_int_eq(feed_all(&d, in, len, step, out, &n), TW_H1_BODY_DONE);
        ck_assert_uint_eq(n, 11);
        ck_assert_int_eq(memcmp(out, "hello world", 11), 0);
    }
}
END_TEST

START_TEST(test_empty_and_errors)
{
    tw_h1_body_decoder_t d;
    size_t used, plen;
    const char *piece;
    tw_h1_body_init(&d, TW_BODY_NONE, 0, 10);
    ck_assert_int_eq(tw_h1_body_feed(&d, "x", 1, &used, &piece, &plen), TW_H1_BODY_DONE);
    ck_assert_uint_eq(used, 0);
    tw_h1_body_init(&d, TW_BODY_CHUNKED, 0, 10);
    ck_assert_int_eq(tw_h1_body_feed(&d, "0x5\r\n", 5, &used, &piece, &plen), TW_H1_BODY_ERROR);
    ck_assert_ptr_nonnull(tw_h1_body_error(&d));
}
END_TEST

/* The limit holds as soon as a size is announced, before its bytes. */
START_TEST(test_limit_on_announced_size)
{
    tw_h1_body_decoder_t d;
    size_t used, plen;
    const char *piece;
    /* A chunk-size line alone. */
    tw_h1_body_init(&d, TW_BODY_CHUNKED, 0, 10);
    ck_assert_int_eq(tw_h1_body_feed(&d, "b\r\n", 3, &used, &piece, &plen), TW_H1_BODY_TOO_LARGE);
    /* Exactly the limit is fine, one more announced byte is not. */
    tw_h1_body_init(&d, TW_BODY_CHUNKED, 0, 10);
    ck_assert_int_eq(tw_h1_body_feed(&d, "a\r\n0123456789\r\n", 15, &used, &piece, &plen),
                     TW_H1_BODY_DATA);
    ck_assert_uint_eq(plen, 10);
    ck_assert_int_eq(tw_h1_body_feed(&d, "\r\n1\r\n", 5, &used, &piece, &plen),
                     TW_H1_BODY_TOO_LARGE);
    /* A size line that passes the limit before its end. */
    tw_h1_body_init(&d, TW_BODY_CHUNKED, 0, 1000);
    ck_assert_int_eq(tw_h1_body_feed(&d, "10000", 5, &used, &piece, &plen), TW_H1_BODY_TOO_LARGE);
    /* A size no 63 bits hold. */
    tw_h1_body_init(&d, TW_BODY_CHUNKED, 0, UINT64_MAX);
    ck_assert_int_eq(tw_h1_body_feed(&d, "fffffffffffffffff\r\n", 19, &used, &piece, &plen),
                     TW_H1_BODY_TOO_LARGE);
    /* A Content-Length over the limit. */
    tw_h1_body_init(&d, TW_BODY_LENGTH, 11, 10);
    ck_assert_int_eq(tw_h1_body_feed(&d, "x", 1, &used, &piece, &plen), TW_H1_BODY_TOO_LARGE);
}
END_TEST

/* At exactly the minimum rate the deadline for what was received stays a
 * whole grace window after the moment the next byte is due; behind the
 * rate by more than the window, it has passed. */
START_TEST(test_rate_deadline_boundary)
{
    const uint64_t rate = 1000, grace = 100; /* 1 byte/ms */
    for (uint64_t t = 0; t <= 100000; t += 250) {
        uint64_t received = t * rate / 1000; /* exactly on the rate at time t */
        uint64_t next_due = t + 1;
        ck_assert_uint_ge(tw_h1_body_rate_deadline(0, 0, received, rate, grace),
                          next_due + grace - 1);
        /* A client at half the rate falls behind by t/2: cut off past 2 x grace. */
        uint64_t slow = received / 2;
        bool cut = tw_h1_body_rate_deadline(0, 0, slow, rate, grace) < t;
        ck_assert(cut == (t > 2 * grace));
    }
    /* Time the server paused the body moves the deadline by as much. */
    ck_assert_uint_eq(tw_h1_body_rate_deadline(10, 500, 0, rate, grace),
                      tw_h1_body_rate_deadline(10, 0, 0, rate, grace) + 500);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("h1_body");
    TCase *tc = tcase_create("decoder");
    tcase_add_test(tc, test_length_every_split);
    tcase_add_test(tc, test_chunked_every_split);
    tcase_add_test(tc, test_empty_and_errors);
    tcase_add_test(tc, test_limit_on_announced_size);
    tcase_add_test(tc, test_rate_deadline_boundary);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
