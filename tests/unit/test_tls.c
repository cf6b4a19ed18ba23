/* test_tls.c — core/tls/tls.c: a TLS session under an IOStream, over
 * socketpair(AF_UNIX, SOCK_STREAM), against a non-blocking OpenSSL client
 * driven step by step between loop iterations (no threads, no timing). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"
#include "twister/loop.h"
#include "twister/stream.h"

static tw_loop_t *loop;
static tw_stream_t *st;
static SSL_CTX *server_ctx, *client_ctx;
static SSL *client;
static int peer;
static tw_tls_facts_t facts;
static int closes, close_error, writes_done;

static SSL_CTX *make_server_ctx(void)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(pkey);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    ck_assert_int_gt(X509_sign(x, pkey, EVP_sha256()), 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ck_assert_int_eq(SSL_CTX_use_certificate(ctx, x), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, pkey), 1);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ctx;
}

static void on_close(tw_stream_t *s, void *arg)
{
    (void)arg;
    closes++;
    close_error = tw_stream_error(s);
}

static void setup(void)
{
    loop = tw_loop_new();
    server_ctx = make_server_ctx();
    client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 16384; /* small socket buffers: writes must wait and retry */
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    st = tw_stream_new(loop, sv[0], NULL);
    ck_assert_ptr_nonnull(st);
    memset(&facts, 0, sizeof facts);
    ck_assert_int_eq(tw_tls_attach(st, server_ctx, NULL, &facts), 0);
    tw_stream_set_close_cb(st, on_close, NULL);
    peer = sv[1];
    ck_assert_int_eq(fcntl(peer, F_SETFL, O_NONBLOCK), 0);
    client = SSL_new(client_ctx);
    SSL_set_fd(client, peer);
    SSL_set_connect_state(client);
    closes = close_error = writes_done = 0;
}

static void teardown(void)
{
    if (closes == 0) {
        tw_stream_close(st);
        for (int i = 0; i < 4 && closes == 0; i++)
            tw_loop_run_once(loop, 0);
        ck_assert_int_eq(closes, 1);
    }
    SSL_free(client);
    close(peer);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    tw_loop_free(loop);
}

static void pump(void)
{
    ck_assert_int_ge(tw_loop_run_once(loop, 0), 0);
}

static void client_handshake(void)
{
    for (int i = 0; i < 1000; i++) {
        ERR_clear_error();
        int rc = SSL_do_handshake(client);
        if (rc == 1)
            return;
        int e = SSL_get_error(client, rc);
        ck_assert_msg(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE, "handshake: %d", e);
        pump();
    }
    ck_abort_msg("the handshake did not finish");
}

static void client_write(const void *p, size_t len)
{
    for (int i = 0; i < 1000; i++) {
        int rc = SSL_write(client, p, (int)len);
        if (rc > 0) {
            ck_assert_int_eq(rc, (int)len);
            return;
        }
        pump();
    }
    ck_abort_msg("the client could not write");
}

/* Reads exactly len bytes (pumping the loop while none are there); returns
 * fewer only at the end of the session. */
static size_t client_read(char *buf, size_t len)
{
    size_t got = 0;
    for (int idle = 0; got < len && idle < 1000;) {
        int rc = SSL_read(client, buf + got, (int)(len - got));
        if (rc > 0) {
            got += (size_t)rc;
            idle = 0;
            continue;
        }
        int e = SSL_get_error(client, rc);
        if (e == SSL_ERROR_ZERO_RETURN)
            break;
        ck_assert_msg(e == SSL_ERROR_WANT_READ, "client read: %d", e);
        pump();
        idle++;
    }
    return got;
}

static void echo_line(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    (void)arg;
    ck_assert_int_eq(status, TW_STREAM_OK);
    ck_assert_int_ge(tw_stream_write(s, data, len, NULL, NULL), 0);
}

START_TEST(test_handshake_and_echo)
{
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, echo_line, NULL), 0);
    client_handshake();
    client_write("ping\n", 5);
    char buf[16] = {0};
    ck_assert_uint_eq(client_read(buf, 5), 5);
    ck_assert_str_eq(buf, "ping\n");
    ck_assert_str_eq(facts.protocol, "TLSv1.3");
    ck_assert_ptr_nonnull(facts.cipher);
    ck_assert_str_eq(facts.cipher, SSL_get_cipher_name(client));
}
END_TEST

static int lines_seen;

static void echo_and_read_on(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    echo_line(s, status, data, len, arg);
    lines_seen++;
    ck_assert_int_eq(tw_stream_read_until(s, "\n", 1, 0, echo_and_read_on, NULL), 0);
}

/* Records that OpenSSL read ahead sit in its buffer, not the socket's, so
 * epoll will not report them: the stream must read them without waiting. */
START_TEST(test_records_read_ahead_are_not_stranded)
{
    lines_seen = 0;
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, echo_and_read_on, NULL), 0);
    client_handshake();
    for (int i = 0; i < 4 && !facts.protocol; i++)
        pump();
    /* Three records in one go; the client sends nothing after. */
    client_write("one\n", 4);
    client_write("two\n", 4);
    client_write("three\n", 6);
    char buf[16] = {0};
    ck_assert_uint_eq(client_read(buf, 14), 14);
    ck_assert_str_eq(buf, "one\ntwo\nthree\n");
    ck_assert_int_eq(lines_seen, 3);
}
END_TEST

static void count_write(tw_stream_t *s, int status, void *arg)
{
    (void)s;
    (void)arg;
    ck_assert_int_eq(status, TW_STREAM_OK);
    writes_done++;
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((i * 31 + seed) & 0xff);
}

START_TEST(test_large_writes_and_sendfile_arrive_intact)
{
    client_handshake();
    size_t big = 3u << 20, file_len = (1u << 20) + 4321;
    char *a = malloc(big), *f = malloc(file_len), *got = malloc(big + file_len + 16);
    fill_pattern(a, big, 7);
    fill_pattern(f, file_len, 99);
    char path[] = "/tmp/twister-test-tls-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(write(fd, f, file_len), (ssize_t)file_len);
    /* A small write, a large one from the caller's memory, a file, and a
     * tail: in order, whole, with the socket full most of the time. */
    ck_assert_int_ge(tw_stream_write(st, "head", 4, count_write, NULL), 0);
    ck_assert_int_ge(tw_stream_write(st, a, big, count_write, NULL), 0);
    ck_assert_int_ge(tw_stream_sendfile(st, fd, 0, file_len, count_write, NULL), 0);
    ck_assert_int_ge(tw_stream_write(st, "tail", 4, count_write, NULL), 0);
    size_t total = 4 + big + file_len + 4;
    ck_assert_uint_eq(client_read(got, total), total);
    ck_assert_mem_eq(got, "head", 4);
    ck_assert(memcmp(got + 4, a, big) == 0);
    ck_assert(memcmp(got + 4 + big, f, file_len) == 0);
    ck_assert_mem_eq(got + 4 + big + file_len, "tail", 4);
    for (int i = 0; i < 10 && writes_done < 4; i++)
        pump();
    ck_assert_int_eq(writes_done, 4);
    free(a);
    free(f);
    free(got);
}
END_TEST

START_TEST(test_close_sends_close_notify)
{
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, echo_line, NULL), 0);
    client_handshake();
    client_write("bye\n", 4);
    char buf[8];
    ck_assert_uint_eq(client_read(buf, 4), 4);
    tw_stream_close_after_write(st);
    for (int i = 0; i < 4 && closes == 0; i++)
        pump();
    ck_assert_int_eq(closes, 1);
    ck_assert_uint_eq(client_read(buf, 1), 0);
    ck_assert_int_eq(SSL_get_shutdown(client) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);
}
END_TEST

static char received[64];
static int received_status = 99;

static void on_all(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    (void)arg;
    received_status = status;
    ck_assert_uint_lt(len, sizeof received);
    memcpy(received, data, len);
    received[len] = '\0';
}

START_TEST(test_client_close_notify_is_eof)
{
    ck_assert_int_eq(tw_stream_read_until_close(st, on_all, NULL), 0);
    client_handshake();
    client_write("last words", 10);
    SSL_shutdown(client); /* close_notify */
    for (int i = 0; i < 20 && closes == 0; i++)
        pump();
    ck_assert_int_eq(received_status, TW_STREAM_OK);
    ck_assert_str_eq(received, "last words");
    ck_assert_int_eq(closes, 1);
    ck_assert_int_eq(close_error, 0);
}
END_TEST

START_TEST(test_plaintext_gets_400_and_close)
{
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(write(peer, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    for (int i = 0; i < 20 && closes == 0; i++)
        pump();
    ck_assert_int_eq(closes, 1);
    ck_assert_int_eq(close_error, EPROTO);
    char buf[512] = {0};
    ssize_t n = read(peer, buf, sizeof buf - 1);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "%s", buf);
}
END_TEST

START_TEST(test_garbage_closes)
{
    const unsigned char junk[] = {0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00};
    ck_assert_int_eq(write(peer, junk, sizeof junk), (ssize_t)sizeof junk);
    for (int i = 0; i < 20 && closes == 0; i++)
        pump();
    ck_assert_int_eq(closes, 1);
    ck_assert_int_eq(close_error, EPROTO);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_handshake_and_echo);
    tcase_add_test(tc, test_records_read_ahead_are_not_stranded);
    tcase_add_test(tc, test_large_writes_and_sendfile_arrive_intact);
    tcase_add_test(tc, test_close_sends_close_notify);
    tcase_add_test(tc, test_client_close_notify_is_eof);
    tcase_add_test(tc, test_plaintext_gets_400_and_close);
    tcase_add_test(tc, test_garbage_closes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
