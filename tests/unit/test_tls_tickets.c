/* test_tls_tickets.c — core/tls/tls_tickets.c: keys that rotate by epoch
 * and survive a reload for decryption. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_tickets.h"

START_TEST(test_rotation_by_epoch)
{
    tw_tls_tickets_t t;
    ck_assert_int_eq(tw_tls_tickets_make(&t), 0);
    tw_tls_ticket_key_t made, found, next;
    tw_tls_tickets_current(&t, 1000, &made);
    ck_assert_int_eq(tw_tls_tickets_find(&t, made.name, 1000, &found), 1);
    ck_assert_mem_eq(found.aes, made.aes, sizeof made.aes);
    ck_assert_mem_eq(found.hmac, made.hmac, sizeof made.hmac);
    /* The next epoch encrypts with another key, and still decrypts this
     * one (asking for a fresh ticket) until it is TW_TLS_TICKET_EPOCHS old. */
    tw_tls_tickets_current(&t, 1001, &next);
    ck_assert(memcmp(next.name, made.name, sizeof made.name) != 0);
    ck_assert(memcmp(next.aes, made.aes, sizeof made.aes) != 0);
    for (uint64_t e = 1; e < TW_TLS_TICKET_EPOCHS; e++)
        ck_assert_int_eq(tw_tls_tickets_find(&t, made.name, 1000 + e, &found), 2);
    ck_assert_int_eq(tw_tls_tickets_find(&t, made.name, 1000 + TW_TLS_TICKET_EPOCHS, &found), 0);
    /* A key from the future is unknown too. */
    ck_assert_int_eq(tw_tls_tickets_find(&t, next.name, 1000, &found), 0);
    tw_tls_tickets_clear(&t);
}
END_TEST

START_TEST(test_reload_keeps_previous_secrets)
{
    tw_tls_tickets_t g1, g2, g3, g4;
    ck_assert_int_eq(tw_tls_tickets_make(&g1), 0);
    ck_assert_int_eq(tw_tls_tickets_make(&g2), 0);
    tw_tls_tickets_follow(&g2, &g1);
    ck_assert_uint_eq(g2.count, 2);
    tw_tls_ticket_key_t k1, k2, found;
    tw_tls_tickets_current(&g1, 50, &k1);
    tw_tls_tickets_current(&g2, 50, &k2);
    ck_assert(memcmp(k1.name, k2.name, sizeof k1.name) != 0); /* a reload makes a new key */
    ck_assert_int_eq(tw_tls_tickets_find(&g2, k1.name, 50, &found), 2);
    ck_assert_mem_eq(found.aes, k1.aes, sizeof k1.aes);
    ck_assert_int_eq(tw_tls_tickets_find(&g2, k2.name, 50, &found), 1);
    /* Only TW_TLS_TICKET_SECRETS generations back. */
    ck_assert_int_eq(tw_tls_tickets_make(&g3), 0);
    tw_tls_tickets_follow(&g3, &g2);
    ck_assert_int_eq(tw_tls_tickets_make(&g4), 0);
    tw_tls_tickets_follow(&g4, &g3);
    ck_assert_uint_eq(g4.count, TW_TLS_TICKET_SECRETS);
    ck_assert_int_eq(tw_tls_tickets_find(&g3, k1.name, 50, &found), 2);
    ck_assert_int_eq(tw_tls_tickets_find(&g4, k1.name, 50, &found), 0);
    ck_assert_int_eq(tw_tls_tickets_find(&g4, k2.name, 50, &found), 2);
}
END_TEST

static Suite *tls_tickets_suite(void)
{
    Suite *s = suite_create("tls_tickets");
    TCase *tc = tcase_create("tls_tickets");
    tcase_add_test(tc, test_rotation_by_epoch);
    tcase_add_test(tc, test_reload_keeps_previous_secrets);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tls_tickets_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
