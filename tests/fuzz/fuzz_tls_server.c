/* fuzz_tls_server.c — libFuzzer target for a TLS session under an IOStream
 * (core/tls/tls.c) fed by a hostile client.
 *
 * The input is what the client sends, cut into writes at the points its
 * first byte picks; then the client half-closes. Whatever the bytes — a
 * ClientHello, a plaintext request, garbage — the stream must end closed
 * within a bounded number of loop iterations (never a hang), exactly once,
 * and without ASan or leak reports. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"
#include "twister/loop.h"
#include "twister/stream.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define FUZZ_MAX_INPUT (32 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *server_ctx(void)
{
    static SSL_CTX *ctx;
    if (ctx)
        return ctx;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, pkey, EVP_sha256());
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, x);
    SSL_CTX_use_PrivateKey(ctx, pkey);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ctx;
}

static int closes;

static void on_close(tw_stream_t *s, void *arg)
{
    (void)s;
    (void)arg;
    closes++;
}

static size_t swallow(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    (void)data;
    (void)arg;
    if (status == TW_STREAM_OK)
        tw_stream_read_some(s, swallow, NULL); /* keep reading whatever the session yields */
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    unsigned cut = data[0] ? data[0] : 1;
    data++;
    size--;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    tw_loop_t *loop = tw_loop_new();
    tw_stream_t *st = tw_stream_new(loop, sv[0], NULL);
    CHECK(st);
    tw_tls_facts_t facts = {0};
    CHECK(tw_tls_attach(st, server_ctx(), NULL, &facts) == 0);
    closes = 0;
    tw_stream_set_close_cb(st, on_close, NULL);
    CHECK(tw_stream_read_some(st, swallow, NULL) == 0);
    for (size_t off = 0; off < size;) {
        size_t n = size - off < cut ? size - off : cut;
        if (send(sv[1], data + off, n, MSG_NOSIGNAL) != (ssize_t)n)
            break;
        off += n;
        for (int i = 0; i < 3; i++)
            tw_loop_run_once(loop, 0);
        /* Drain what the server answered so its writes never block. */
        char sink[4096];
        while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0)
            ;
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 50 && closes == 0; i++) {
        tw_loop_run_once(loop, 1);
        char sink[4096];
        while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0)
            ;
    }
    CHECK(closes == 1); /* the client left: the stream must be gone, not waiting */
    tw_loop_run_once(loop, 0);
    close(sv[1]);
    tw_loop_free(loop);
    return 0;
}
