/* tls.c — see tls.h. */
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "stream_transport.h"
#include "twister/log.h"
#include "twister/loop.h"

/* A record's worth: writes are gathered up to this so a small head and
 * its body share one record. */
#define TLS_RECORD 16384

typedef struct {
    SSL *ssl;
    int fd;
    tw_tls_facts_t *facts;
    bool read_wants_write; /* the last read stopped on WANT_WRITE */
    bool write_wants_read; /* the last write stopped on WANT_READ */
    bool failed;           /* a fatal error: no close_notify */
    bool ktls_logged;
} tls_conn_t;

static const char plain_http_reply[] = "HTTP/1.1 400 Bad Request\r\n"
                                       "Content-Type: text/plain\r\n"
                                       "Content-Length: 45\r\n"
                                       "Connection: close\r\n"
                                       "\r\n"
                                       "This port speaks HTTPS: use https:// to talk\n";

static void note_handshake(tls_conn_t *t)
{
    if (t->facts && !t->facts->protocol && SSL_is_init_finished(t->ssl)) {
        t->facts->protocol = SSL_get_version(t->ssl);
        t->facts->cipher = SSL_get_cipher_name(t->ssl);
    }
}

/* Maps an SSL_read/SSL_write failure to the errno the stream expects.
 * reading says which call it was. Returns -1 (or 0 for a clean EOF). */
static ssize_t tls_fail(tls_conn_t *t, int rc, bool reading)
{
    int e = SSL_get_error(t->ssl, rc);
    if (reading)
        t->read_wants_write = false;
    else
        t->write_wants_read = false;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (!reading)
            t->write_wants_read = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (reading)
            t->read_wants_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL: {
        int saved = errno;
        t->failed = true;
        ERR_clear_error();
        if (saved == 0) /* EOF without close_notify */
            return 0;
        errno = saved;
        return -1;
    }
    default: {
        unsigned long err = ERR_peek_last_error();
        t->failed = true;
        if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_HTTP_REQUEST) {
            /* The client spoke HTTP to an HTTPS port: best effort, one
             * send. What it sent is read first, or the close would reset
             * the connection and the client could lose the reply. */
            char sink[4096];
            ssize_t n;
            for (int i = 0; i < 16; i++) {
                do
                    n = recv(t->fd, sink, sizeof sink, MSG_DONTWAIT);
                while (n < 0 && errno == EINTR);
                if (n <= 0)
                    break;
            }
            do
                n = send(t->fd, plain_http_reply, sizeof plain_http_reply - 1, MSG_NOSIGNAL);
            while (n < 0 && errno == EINTR);
            shutdown(t->fd, SHUT_WR);
        }
        if (!SSL_is_init_finished(t->ssl)) {
            char why[256];
            ERR_error_string_n(err, why, sizeof why);
            tw_log_debug("tls: handshake failed: %s", why);
        }
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    }
}

static ssize_t tls_recv(void *ctx, void *buf, size_t len)
{
    tls_conn_t *t = ctx;
    if (len > INT32_MAX)
        len = INT32_MAX;
    ERR_clear_error();
    errno = 0; /* SSL_ERROR_SYSCALL with errno 0 is an EOF */
    int rc = SSL_read(t->ssl, buf, (int)len);
    if (rc > 0) {
        t->read_wants_write = false;
        note_handshake(t);
        return rc;
    }
    ssize_t r = tls_fail(t, rc, true);
    note_handshake(t);
    return r;
}

static ssize_t tls_write(tls_conn_t *t, const void *p, size_t len)
{
    if (len > INT32_MAX)
        len = INT32_MAX;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write(t->ssl, p, (int)len);
    if (rc > 0) {
        t->write_wants_read = false;
        return rc;
    }
    ssize_t r = tls_fail(t, rc, false);
    if (r == 0) { /* the peer ended the session under a write */
        errno = EPIPE;
        r = -1;
    }
    return r;
}

static ssize_t tls_send(void *ctx, const struct iovec *iov, int cnt)
{
    tls_conn_t *t = ctx;
    if (cnt == 1 || iov[0].iov_len >= TLS_RECORD)
        return tls_write(t, iov[0].iov_base, iov[0].iov_len);
    /* Gathered, so that the retry after a WANT_WRITE (which OpenSSL wants
     * with the same bytes in front) gathers the same bytes again. */
    char buf[TLS_RECORD];
    size_t n = 0;
    for (int i = 0; i < cnt && n < sizeof buf; i++) {
        size_t take = iov[i].iov_len < sizeof buf - n ? iov[i].iov_len : sizeof buf - n;
        memcpy(buf + n, iov[i].iov_base, take);
        n += take;
    }
    return tls_write(t, buf, n);
}

static ssize_t tls_sendfile(void *ctx, int file_fd, off_t *off, size_t len)
{
    tls_conn_t *t = ctx;
    if (BIO_get_ktls_send(SSL_get_wbio(t->ssl))) {
        if (!t->ktls_logged) {
            t->ktls_logged = true;
            tw_log_debug("tls: sendfile with kernel TLS");
        }
        ERR_clear_error();
        errno = 0;
        ossl_ssize_t n = SSL_sendfile(t->ssl, file_fd, *off, len, 0);
        if (n > 0) {
            *off += n;
            return n;
        }
        if (n == 0)
            return 0;
        return tls_fail(t, (int)n, false);
    }
    /* No kernel TLS: through a buffer. Reading the same offset again after
     * a WANT_WRITE gives OpenSSL the same bytes, as it wants. */
    char buf[TLS_RECORD];
    size_t want = len < sizeof buf ? len : sizeof buf;
    ssize_t got;
    do
        got = pread(file_fd, buf, want, *off);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return got;
    ssize_t n = tls_write(t, buf, (size_t)got);
    if (n > 0)
        *off += n;
    return n;
}

static bool tls_drained(void *ctx)
{
    tls_conn_t *t = ctx;
    /* Read-ahead asked the socket for a whole buffer: if OpenSSL holds
     * nothing more, the socket had nothing more (and if it did after all,
     * level-triggered EPOLLIN says so). */
    return !SSL_has_pending(t->ssl);
}

static unsigned tls_events(void *ctx)
{
    tls_conn_t *t = ctx;
    return (t->read_wants_write ? TW_EV_WRITE : 0u) | (t->write_wants_read ? TW_EV_READ : 0u);
}

static void tls_close(void *ctx)
{
    tls_conn_t *t = ctx;
    /* One try at close_notify: a non-blocking socket that cannot take it
     * now is closing anyway. */
    if (!t->failed && SSL_is_init_finished(t->ssl)) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
    }
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
}

static size_t tls_memory(const void *ctx)
{
    (void)ctx;
    return sizeof(tls_conn_t); /* OpenSSL's own heap is not counted here */
}

static const tw_stream_transport_t tls_transport = {
    .recv = tls_recv,
    .send = tls_send,
    .sendfile = tls_sendfile,
    .events = tls_events,
    .drained = tls_drained,
    .close = tls_close,
    .memory = tls_memory,
};

int tw_tls_attach(tw_stream_t *s, SSL_CTX *ctx, void *app, tw_tls_facts_t *facts)
{
    tls_conn_t *t = calloc(1, sizeof *t);
    if (!t) {
        errno = ENOMEM;
        return -1;
    }
    t->fd = tw_stream_fd(s);
    t->facts = facts;
    if (!(t->ssl = SSL_new(ctx)) || SSL_set_fd(t->ssl, t->fd) != 1) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        errno = ENOMEM;
        return -1;
    }
    SSL_set_app_data(t->ssl, app);
    /* What the stream's retries rely on: a write may take part of what it
     * is given, and the retry after WANT_WRITE comes from another address
     * (the queue's copy) with at least the same bytes in front. */
    SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    /* One read(2) takes all the socket holds (up to a buffer), not a
     * record header and then its body: half the system calls. */
    SSL_set_read_ahead(t->ssl, 1);
    SSL_set_accept_state(t->ssl);
    tw_stream_set_transport(s, &tls_transport, t);
    return 0;
}
