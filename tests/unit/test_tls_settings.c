/* test_tls_settings.c — core/tls/tls_settings.c: the tls: block, and the
 * "tls" listen flag and its rules in core/settings.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

static tw_conf_error_t err;

#define NAME "/etc/tw/t.yaml"

static tw_settings_t *load(const char *yaml)
{
    tw_settings_t *s = NULL;
    memset(&err, 0, sizeof(err));
    int rc = tw_settings_load_string(NAME, yaml, strlen(yaml), "/usr/lib/tw", &s, &err);
    ck_assert_int_eq(rc, s ? 0 : -1);
    return s;
}

START_TEST(test_defaults)
{
    tw_settings_t *s = load("servers:\n"
                            "  - listen: [\"127.0.0.1:8443 tls\", 8080]\n"
                            "    tls: { certificate: ./cert.pem, key: /keys/k.pem }\n");
    ck_assert_msg(s != NULL, "%s", err.message);
    ck_assert_uint_eq(s->nlisteners, 2);
    ck_assert_str_eq(s->listeners[0].text, "127.0.0.1:8443");
    ck_assert(s->listeners[0].tls);
    ck_assert(!s->listeners[1].tls);
    const tw_tls_conf_t *t = s->servers[0].tls;
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->ncertificates, 1);
    ck_assert_str_eq(t->certificates[0], "/etc/tw/cert.pem");
    ck_assert_str_eq(t->keys[0], "/keys/k.pem");
    ck_assert_uint_eq(t->protocols, TW_TLS_V1_2 | TW_TLS_V1_3);
    ck_assert_str_eq(t->ciphers, TW_TLS_DEFAULT_CIPHERS);
    ck_assert_ptr_null(t->ciphers_node);
    ck_assert(t->session_tickets);
    ck_assert(!t->ocsp_stapling);
    ck_assert_ptr_null(t->ocsp_response);
    tw_settings_free(s);
}
END_TEST

START_TEST(test_everything_set)
{
    tw_settings_t *s = load("servers:\n"
                            "  - listen: \"[::1]:443 tls\"\n"
                            "    server_names: [a.test]\n"
                            "    tls:\n"
                            "      certificate: [rsa.pem, ec.pem]\n"
                            "      key: [rsa.key, ec.key]\n"
                            "      protocols: TLSv1.3\n"
                            "      ciphers: ECDHE-RSA-AES128-GCM-SHA256\n"
                            "      session_tickets: off\n"
                            "      ocsp_stapling: on\n"
                            "      ocsp_response: ocsp.der\n"
                            "  - listen: \"[::1]:443 tls\"\n"
                            "    server_names: [b.test]\n");
    ck_assert_msg(s != NULL, "%s", err.message);
    ck_assert_uint_eq(s->nlisteners, 1);
    const tw_tls_conf_t *t = s->servers[0].tls;
    ck_assert_uint_eq(t->ncertificates, 2);
    ck_assert_str_eq(t->certificates[1], "/etc/tw/ec.pem");
    ck_assert_str_eq(t->keys[1], "/etc/tw/ec.key");
    ck_assert_uint_eq(t->protocols, TW_TLS_V1_3);
    ck_assert_str_eq(t->ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
    ck_assert(!t->session_tickets);
    ck_assert(t->ocsp_stapling);
    ck_assert_str_eq(t->ocsp_response, "/etc/tw/ocsp.der");
    ck_assert_ptr_null(s->servers[1].tls); /* reached by SNI with the default certificate */
    tw_settings_free(s);
}
END_TEST

typedef struct {
    const char *yaml;
    const char *message; /* the whole "file:line:col: path: message" */
} error_case_t;

#define TLS_SERVER(extra)                                                                          \
    "servers:\n"                                                                                   \
    "  - listen: [\"8443 tls\"]\n"                                                                 \
    "    tls: { certificate: c.pem, key: k.pem" extra " }\n"

static const error_case_t errors[] = {
    {"servers:\n  - listen: [\"8443 tsl\"]\n",
     NAME ":2:14: servers[0].listen[0]: unknown listen flag 'tsl' (known: tls, proxy_protocol)"},
    {"servers:\n  - listen: [\"8443 tls\"]\n",
     NAME ":2:14: servers[0].listen[0]: 0.0.0.0:8443 has the 'tls' flag but its first server "
          "(servers[0]) has no tls: block (certificate and key)"},
    {"servers:\n  - listen: [8443]\n    tls: { certificate: c.pem, key: k.pem }\n",
     NAME ":3:10: servers[0].tls: tls: is set but none of this server's listen addresses has "
          "the 'tls' flag (\"ADDR:PORT tls\")"},
    {"servers:\n  - listen: [\"8443 tls\"]\n    tls: { certificate: c.pem, key: k.pem }\n"
     "  - listen: [8443]\n",
     NAME ":4:14: servers[1].listen[0]: 0.0.0.0:8443 is listed without 'tls' here but with it "
          "at line 2"},
    {"servers:\n  - listen: [\"8443 tls\"]\n    tls: { key: k.pem }\n",
     NAME ":3:10: servers[0].tls: missing 'certificate' (the PEM certificate chain)"},
    {"servers:\n  - listen: [\"8443 tls\"]\n    tls: { certificate: c.pem }\n",
     NAME ":3:10: servers[0].tls: missing 'key' (the certificate's private key file)"},
    {"servers:\n  - listen: [\"8443 tls\"]\n    tls: { certificate: [a, b], key: k }\n",
     NAME ":3:38: servers[0].tls.key: expected one key per certificate (2), got 1"},
    {TLS_SERVER(", protocols: [TLSv1.2, TLSv1.4]"),
     NAME ":3:65: servers[0].tls.protocols[1]: unknown protocol 'TLSv1.4' (expected TLSv1.2 or "
          "TLSv1.3)"},
    {TLS_SERVER(", protocols: [TLSv1]"),
     NAME ":3:56: servers[0].tls.protocols[0]: protocol 'TLSv1' is insecure and not supported "
          "(use TLSv1.2 and TLSv1.3)"},
    {TLS_SERVER(", protocols: []"),
     NAME ":3:55: servers[0].tls.protocols: expected at least one protocol (TLSv1.2, TLSv1.3)"},
    {TLS_SERVER(", ciphers: \"\""),
     NAME ":3:53: servers[0].tls.ciphers: expected a cipher list, got an empty value"},
    {TLS_SERVER(", ocsp_stapling: on"),
     NAME ":3:59: servers[0].tls.ocsp_stapling: ocsp_stapling needs ocsp_response (the DER "
          "response file to staple)"},
    {TLS_SERVER(", session_ticket: on"),
     NAME ":3:44: servers[0].tls.session_ticket: unknown key 'session_ticket'; did you mean "
          "'session_tickets'?"},
};

START_TEST(test_errors)
{
    tw_settings_t *s = load(errors[_i].yaml);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err.message, errors[_i].message);
}
END_TEST

static Suite *tls_settings_suite(void)
{
    Suite *s = suite_create("tls_settings");
    TCase *tc = tcase_create("tls_settings");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_everything_set);
    tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof(errors) / sizeof(errors[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tls_settings_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
