/* Unit tests for the PROXY protocol parser (core/proxy_protocol.c):
 * versions 1 and 2, every prefix of a valid header asks for more, and the
 * malformed, truncated and oversized headers are refused. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_protocol.h"

static const char sig[12] = "\r\n\r\n\0\r\nQUIT\n";

static const char *source_text(const tw_proxy_header_t *h, char *buf, size_t size)
{
    const struct sockaddr *sa = (const struct sockaddr *)&h->source;
    char ip[64];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)&h->source;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(buf, size, "%s:%u", ip, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const void *)&h->source;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(buf, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    return buf;
}

/* Every proper prefix of a valid header wants more; the whole is DONE. */
static void assert_prefixes_wait(const char *data, size_t len)
{
    tw_proxy_header_t h;
    for (size_t i = 0; i < len; i++)
        ck_assert_msg(tw_proxy_parse(data, i, &h) == TW_PROXY_AGAIN, "prefix %zu", i);
}

START_TEST(test_v1_tcp4)
{
    const char *line = "PROXY TCP4 192.0.2.7 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t hlen = strlen("PROXY TCP4 192.0.2.7 198.51.100.2 56324 443\r\n");
    tw_proxy_header_t h;
    ck_assert_int_eq(tw_proxy_parse(line, strlen(line), &h), TW_PROXY_DONE);
    ck_assert_uint_eq(h.length, hlen);
    ck_assert(h.has_source);
    char buf[80];
    ck_assert_str_eq(source_text(&h, buf, sizeof buf), "192.0.2.7:56324");
    assert_prefixes_wait(line, hlen);
}
END_TEST

START_TEST(test_v1_tcp6_and_unknown)
{
    const char *line = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    tw_proxy_header_t h;
    ck_assert_int_eq(tw_proxy_parse(line, strlen(line), &h), TW_PROXY_DONE);
    char buf[80];
    ck_assert_str_eq(source_text(&h, buf, sizeof buf), "[2001:db8::1]:1");
    const char *unknown = "PROXY UNKNOWN ffff::1 whatever\r\n";
    ck_assert_int_eq(tw_proxy_parse(unknown, strlen(unknown), &h), TW_PROXY_DONE);
    ck_assert(!h.has_source);
    ck_assert_uint_eq(h.length, strlen(unknown));
    ck_assert_int_eq(tw_proxy_parse("PROXY UNKNOWN\r\n", 15, &h), TW_PROXY_DONE);
}
END_TEST

static const char *const bad_v1[] = {
    "PROXY TCP4 192.0.2.7 198.51.100.2 56324\r\n",       /* a field missing */
    "PROXY TCP4 192.0.2.7 198.51.100.2 56324 443 9\r\n", /* one too many */
    "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",       /* v6 in TCP4 */
    "PROXY TCP6 192.0.2.7 198.51.100.2 1 2\r\n",         /* v4 in TCP6 */
    "PROXY TCP4 192.0.2.7 198.51.100.2 65536 443\r\n",   /* port too big */
    "PROXY TCP4 192.0.2.7 198.51.100.2 0443 443\r\n",    /* leading zero */
    "PROXY TCP4 192.0.2.7  198.51.100.2 1 443\r\n",      /* double space */
    "PROXY UDP4 192.0.2.7 198.51.100.2 1 2\r\n",         /* no such protocol */
    "PROXY TCP4 192.0.2.7 198.51.100.2 1 2\n",           /* LF without CR */
    "GET / HTTP/1.1\r\n\r\n",                            /* no header at all */
    "proxy TCP4 192.0.2.7 198.51.100.2 1 2\r\n",         /* case matters */
};

START_TEST(test_v1_malformed)
{
    tw_proxy_header_t h;
    const char *line = bad_v1[_i];
    ck_assert_msg(tw_proxy_parse(line, strlen(line), &h) == TW_PROXY_ERROR, "%s", line);
    ck_assert_ptr_nonnull(h.error);
}
END_TEST

START_TEST(test_v1_oversized)
{
    char line[200] = "PROXY TCP4 ";
    memset(line + 11, '1', sizeof line - 12);
    line[sizeof line - 1] = '\0';
    tw_proxy_header_t h;
    ck_assert_int_eq(tw_proxy_parse(line, 106, &h), TW_PROXY_AGAIN);
    ck_assert_int_eq(tw_proxy_parse(line, 107, &h), TW_PROXY_ERROR);
    ck_assert_int_eq(tw_proxy_parse(line, strlen(line), &h), TW_PROXY_ERROR);
}
END_TEST

/* A v2 header: command, family/transport, payload (len bytes). */
static size_t v2(char *out, unsigned char ver_cmd, unsigned char fam, const void *payload,
                 size_t len)
{
    memcpy(out, sig, 12);
    out[12] = (char)ver_cmd;
    out[13] = (char)fam;
    out[14] = (char)(len >> 8);
    out[15] = (char)(len & 0xff);
    memcpy(out + 16, payload, len);
    return 16 + len;
}

START_TEST(test_v2_inet_with_tlvs)
{
    unsigned char p[12 + 7] = {203,
                               0,
                               113,
                               9,
                               10,
                               0,
                               0,
                               1,
                               0x1f,
                               0x90,
                               0x01,
                               0xbb,
                               /* a TLV: PP2_TYPE_AUTHORITY "a.b" */ 0x02,
                               0,
                               3,
                               'a',
                               '.',
                               'b',
                               /* and a NOOP */ 0x04};
    char buf[64 + 4];
    size_t n = v2(buf, 0x21, 0x11, p, sizeof p);
    memcpy(buf + n, "GET ", 4);
    tw_proxy_header_t h;
    ck_assert_int_eq(tw_proxy_parse(buf, n + 4, &h), TW_PROXY_DONE);
    ck_assert_uint_eq(h.length, n);
    char text[80];
    ck_assert_str_eq(source_text(&h, text, sizeof text), "203.0.113.9:8080");
    assert_prefixes_wait(buf, n);
}
END_TEST

START_TEST(test_v2_inet6_local_unspec)
{
    unsigned char p[36] = {0x20,        0x01,        0x0d,        0xb8,     [15] = 5, [16] = 0xfe,
                           [17] = 0x80, [32] = 0x30, [33] = 0x39, [34] = 0, [35] = 80};
    char buf[128];
    size_t n = v2(buf, 0x21, 0x21, p, sizeof p);
    tw_proxy_header_t h;
    ck_assert_int_eq(tw_proxy_parse(buf, n, &h), TW_PROXY_DONE);
    char text[80];
    ck_assert_str_eq(source_text(&h, text, sizeof text), "[2001:db8::5]:12345");
    /* LOCAL (a health check): no address, whatever the family says. */
    n = v2(buf, 0x20, 0x11, p, 12);
    ck_assert_int_eq(tw_proxy_parse(buf, n, &h), TW_PROXY_DONE);
    ck_assert(!h.has_source);
    /* PROXY with UNSPEC: keep the peer too. */
    n = v2(buf, 0x21, 0x00, p, 0);
    ck_assert_int_eq(tw_proxy_parse(buf, n, &h), TW_PROXY_DONE);
    ck_assert(!h.has_source);
    ck_assert_uint_eq(h.length, 16);
}
END_TEST

START_TEST(test_v2_malformed)
{
    unsigned char p[40] = {0};
    char buf[128];
    tw_proxy_header_t h;
    struct {
        unsigned char ver_cmd, fam;
        size_t len;
    } cases[] = {
        {0x11, 0x11, 12}, /* version 1 in a v2 signature */
        {0x22, 0x11, 12}, /* command 2 */
        {0x21, 0x11, 11}, /* too short for IPv4 */
        {0x21, 0x21, 35}, /* too short for IPv6 */
        {0x21, 0x41, 12}, /* family 4 */
        {0x21, 0x13, 12}, /* transport 3 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = v2(buf, cases[i].ver_cmd, cases[i].fam, p, cases[i].len);
        ck_assert_msg(tw_proxy_parse(buf, n, &h) == TW_PROXY_ERROR, "case %zu", i);
    }
    /* A signature that goes wrong midway is no header. */
    memcpy(buf, sig, 12);
    buf[7] = 'X';
    ck_assert_int_eq(tw_proxy_parse(buf, 12, &h), TW_PROXY_ERROR);
}
END_TEST

START_TEST(test_v2_oversized)
{
    char buf[16];
    v2(buf, 0x21, 0x11, "", 0);
    buf[14] = (char)0x10;
    buf[15] = 0x01; /* 4097 bytes announced */
    tw_proxy_header_t h;
    ck_assert_int_eq(tw_proxy_parse(buf, 16, &h), TW_PROXY_ERROR);
    buf[14] = 0x10;
    buf[15] = 0x00; /* 4096: allowed, waits for them */
    ck_assert_int_eq(tw_proxy_parse(buf, 16, &h), TW_PROXY_AGAIN);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("proxy_protocol");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_v1_tcp4);
    tcase_add_test(tc, test_v1_tcp6_and_unknown);
    tcase_add_loop_test(tc, test_v1_malformed, 0, (int)(sizeof bad_v1 / sizeof bad_v1[0]));
    tcase_add_test(tc, test_v1_oversized);
    tcase_add_test(tc, test_v2_inet_with_tlvs);
    tcase_add_test(tc, test_v2_inet6_local_unspec);
    tcase_add_test(tc, test_v2_malformed);
    tcase_add_test(tc, test_v2_oversized);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
