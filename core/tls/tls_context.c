/* tls_context.c — see tls_context.h. */
#include "tls/tls_context.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "router.h"
#include "settings.h"
#include "twister/log.h"

#define TLS_FILE_MAX (1u << 20) /* a PEM chain or an OCSP response is far smaller */

typedef struct {
    char *data;
    size_t len;
} blob_t;

typedef struct {
    blob_t *certs; /* per certificate of the server's tls: */
    blob_t *keys;
    size_t n;    /* certificates (and keys) */
    blob_t ocsp; /* DER, or empty */
} server_material_t;

struct tw_tls_material {
    server_material_t *servers; /* per settings server (empty for no tls:) */
    size_t nservers;
    tw_tls_tickets_t tickets;
};

typedef struct {
    tw_tls_server_t *srv;
    size_t index;
    SSL_CTX *ctx; /* the default server's */
} listener_t;

struct tw_tls_server {
    const tw_settings_t *settings;
    const tw_tls_material_t *material;
    SSL_CTX **ctx;         /* per settings server, NULL without tls: */
    listener_t *listeners; /* per settings listener (ctx NULL: plaintext) */
};

/* ---- reading files (master) ---------------------------------------------------- */

static int read_file(const char *path, const tw_conf_node_t *node, const char *what, blob_t *out,
                     tw_conf_error_t *err)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return tw_conf_error(err, node, "cannot open %s %s: %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TLS_FILE_MAX) {
        close(fd);
        return tw_conf_error(err, node, "%s %s is not a regular file under 1 MiB", what, path);
    }
    out->data = malloc((size_t)st.st_size + 1);
    if (!out->data) {
        close(fd);
        return tw_conf_error(err, node, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, out->data + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return tw_conf_error(err, node, "cannot read %s %s: %s", what, path, strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    out->data[got] = '\0';
    out->len = got;
    return 0;
}

static void blob_free(blob_t *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->len);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
}

/* ---- building contexts (both) ------------------------------------------------------ */

static int ssl_error(tw_conf_error_t *err, const tw_conf_node_t *node, const char *what)
{
    char why[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, why, sizeof why);
    ERR_clear_error();
    return tw_conf_error(err, node, "%s%s%s", what, *why ? ": " : "", why);
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* nothing we speak: no ALPN, as if not asked */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int on_status(SSL *ssl, void *arg)
{
    const blob_t *ocsp = arg;
    if (!ocsp || !ocsp->len)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_memdup(ocsp->data, ocsp->len); /* OpenSSL frees it */
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)ocsp->len);
    return SSL_TLSEXT_ERR_OK;
}

/* SNI: the server the name selects on this listener, with its certificate;
 * a name no server has (or a server without tls:) keeps the default. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    const listener_t *l = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!l || !name)
        return SSL_TLSEXT_ERR_OK;
    const tw_server_conf_t *sc =
        tw_router_find_server(l->srv->settings, l->index, name, strlen(name));
    SSL_CTX *ctx = sc ? l->srv->ctx[sc->index] : NULL;
    if (ctx && ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* Still served (a client may not check, or its clock may be off), but the
 * operator should know: a warning at the certificate's line. */
static void warn_validity(X509 *x, const tw_conf_node_t *node, const char *path)
{
    const char *why = X509_cmp_current_time(X509_get0_notAfter(x)) < 0    ? "has expired"
                      : X509_cmp_current_time(X509_get0_notBefore(x)) > 0 ? "is not valid yet"
                                                                          : NULL;
    if (why)
        tw_log_warn("%s:%u:%u: %s: the certificate %s %s", tw_conf_file(node), tw_conf_line(node),
                    tw_conf_column(node), tw_conf_path(node), path, why);
}

static int add_pair(SSL_CTX *ctx, const tw_tls_conf_t *tc, size_t i, const blob_t *cert,
                    const blob_t *key, int *types, bool warn, tw_conf_error_t *err)
{
    const tw_conf_node_t *cn = tc->cert_nodes[i], *kn = tc->key_nodes[i];
    int rc = -1;
    BIO *bio = BIO_new_mem_buf(cert->data, (int)cert->len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *pkey = NULL;
    if (!x) {
        ssl_error(err, cn, "no PEM certificate in the file");
        goto out;
    }
    for (X509 *c; (c = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL));)
        if (!chain || !sk_X509_push(chain, c)) {
            X509_free(c);
            ssl_error(err, cn, "out of memory");
            goto out;
        }
    ERR_clear_error(); /* the end of the file */
    BIO_free(bio);
    bio = BIO_new_mem_buf(key->data, (int)key->len);
    if (!bio || !(pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL))) {
        ssl_error(err, kn,
                  "no usable PEM private key in the file (encrypted keys are not "
                  "supported)");
        goto out;
    }
    if (X509_check_private_key(x, pkey) != 1) {
        ERR_clear_error();
        tw_conf_error(err, kn, "the key %s does not match the certificate %s", tc->keys[i],
                      tc->certificates[i]);
        goto out;
    }
    int type = EVP_PKEY_get_base_id(pkey);
    for (size_t j = 0; j < i; j++)
        if (types[j] == type) {
            tw_conf_error(err, cn,
                          "certificate %zu has the same key type as certificate %zu: "
                          "several certificates must differ in type (RSA, ECDSA)",
                          i + 1, j + 1);
            goto out;
        }
    types[i] = type;
    if (warn)
        warn_validity(x, cn, tc->certificates[i]);
    if (SSL_CTX_use_cert_and_key(ctx, x, pkey, chain, 1) != 1) {
        ssl_error(err, cn, "cannot use the certificate");
        goto out;
    }
    rc = 0;
out:
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* The context of one server. warn: log an expired certificate. */
static SSL_CTX *build_ctx(const tw_tls_conf_t *tc, const server_material_t *sm,
                          const tw_tls_tickets_t *tickets, bool warn, tw_conf_error_t *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, tc->node, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx,
                                  tc->protocols & TW_TLS_V1_2 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx,
                                  tc->protocols & TW_TLS_V1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_ENABLE_KTLS |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Workers share no session cache: resumption is by ticket. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid_ctx[] = "twister";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    tw_tls_tickets_install(ctx, tickets, tc->session_tickets);
    if (SSL_CTX_set_cipher_list(ctx, tc->ciphers) != 1) {
        ssl_error(err, tc->ciphers_node ? tc->ciphers_node : tc->node,
                  "no usable cipher in the list");
        goto fail;
    }
    int types[16] = {0};
    if (tc->ncertificates > 16) {
        tw_conf_error(err, tc->cert_nodes[16], "at most 16 certificates per server");
        goto fail;
    }
    for (size_t i = 0; i < tc->ncertificates; i++)
        if (add_pair(ctx, tc, i, &sm->certs[i], &sm->keys[i], types, warn, err))
            goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    if (sm->ocsp.len) {
        SSL_CTX_set_tlsext_status_cb(ctx, on_status);
        SSL_CTX_set_tlsext_status_arg(ctx, (void *)&sm->ocsp);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- the master's half ---------------------------------------------------------------- */

void tw_tls_material_free(tw_tls_material_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nservers; i++) {
        server_material_t *sm = &m->servers[i];
        for (size_t j = 0; j < sm->n; j++) {
            blob_free(&sm->certs[j]);
            blob_free(&sm->keys[j]);
        }
        free(sm->certs);
        free(sm->keys);
        blob_free(&sm->ocsp);
    }
    free(m->servers);
    tw_tls_tickets_clear(&m->tickets);
    free(m);
}

static int check_ocsp(const tw_tls_conf_t *tc, const blob_t *b, tw_conf_error_t *err)
{
    const unsigned char *p = (const unsigned char *)b->data;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)b->len);
    if (!r)
        return ssl_error(err, tc->ocsp_node, "not a DER OCSP response");
    OCSP_RESPONSE_free(r);
    return 0;
}

void tw_tls_material_follow(tw_tls_material_t *m, const tw_tls_material_t *previous)
{
    if (m && previous)
        tw_tls_tickets_follow(&m->tickets, &previous->tickets);
}

int tw_tls_material_load(const tw_settings_t *s, tw_tls_material_t **out, tw_conf_error_t *err)
{
    *out = NULL;
    bool any = false;
    for (size_t i = 0; i < s->nlisteners; i++)
        any |= s->listeners[i].tls;
    if (!any)
        return 0;
    tw_tls_material_t *m = calloc(1, sizeof *m);
    if (!m || !(m->servers = calloc(s->nservers, sizeof *m->servers))) {
        free(m);
        return tw_conf_error(err, tw_conf_root(s->doc), "out of memory");
    }
    m->nservers = s->nservers;
    if (tw_tls_tickets_make(&m->tickets) != 0) {
        tw_conf_error(err, tw_conf_root(s->doc), "cannot make session ticket keys");
        goto fail;
    }
    for (size_t i = 0; i < s->nservers; i++) {
        const tw_tls_conf_t *tc = s->servers[i].tls;
        server_material_t *sm = &m->servers[i];
        if (!tc)
            continue;
        sm->certs = calloc(tc->ncertificates, sizeof *sm->certs);
        sm->keys = calloc(tc->ncertificates, sizeof *sm->keys);
        if (!sm->certs || !sm->keys) {
            tw_conf_error(err, tc->node, "out of memory");
            goto fail;
        }
        sm->n = tc->ncertificates;
        for (size_t j = 0; j < tc->ncertificates; j++)
            if (read_file(tc->certificates[j], tc->cert_nodes[j], "certificate", &sm->certs[j],
                          err) ||
                read_file(tc->keys[j], tc->key_nodes[j], "key", &sm->keys[j], err))
                goto fail;
        if (tc->ocsp_response &&
            (read_file(tc->ocsp_response, tc->ocsp_node, "OCSP response", &sm->ocsp, err) ||
             check_ocsp(tc, &sm->ocsp, err)))
            goto fail;
        SSL_CTX *ctx = build_ctx(tc, sm, &m->tickets, true, err);
        if (!ctx)
            goto fail;
        SSL_CTX_free(ctx);
    }
    *out = m;
    return 0;
fail:
    tw_tls_material_free(m);
    return -1;
}

/* ---- the worker's half ------------------------------------------------------------------- */

tw_tls_server_t *tw_tls_server_new(const tw_settings_t *s, const tw_tls_material_t *m,
                                   tw_conf_error_t *err)
{
    if (!m)
        return NULL;
    tw_tls_server_t *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->ctx = calloc(s->nservers, sizeof *srv->ctx)) ||
        !(srv->listeners = calloc(s->nlisteners, sizeof *srv->listeners))) {
        if (srv)
            free(srv->ctx);
        free(srv);
        tw_conf_error(err, tw_conf_root(s->doc), "out of memory");
        return NULL;
    }
    srv->settings = s;
    srv->material = m;
    for (size_t i = 0; i < s->nservers; i++) {
        const tw_tls_conf_t *tc = s->servers[i].tls;
        if (tc && !(srv->ctx[i] = build_ctx(tc, &m->servers[i], &m->tickets, false, err))) {
            tw_tls_server_free(srv);
            return NULL;
        }
    }
    for (size_t i = 0; i < s->nlisteners; i++) {
        srv->listeners[i].srv = srv;
        srv->listeners[i].index = i;
        if (s->listeners[i].tls)
            srv->listeners[i].ctx = srv->ctx[s->listeners[i].servers[0]->index];
    }
    return srv;
}

void tw_tls_server_free(tw_tls_server_t *srv)
{
    if (!srv)
        return;
    for (size_t i = 0; srv->ctx && i < srv->settings->nservers; i++)
        SSL_CTX_free(srv->ctx[i]);
    free(srv->ctx);
    free(srv->listeners);
    free(srv);
}

bool tw_tls_server_listens(const tw_tls_server_t *srv, size_t listener_index)
{
    return srv && listener_index < srv->settings->nlisteners && srv->listeners[listener_index].ctx;
}

int tw_tls_server_attach(tw_tls_server_t *srv, tw_stream_t *s, size_t listener_index,
                         tw_tls_facts_t *facts)
{
    if (!tw_tls_server_listens(srv, listener_index))
        return 0;
    listener_t *l = &srv->listeners[listener_index];
    return tw_tls_attach(s, l->ctx, l, facts) == 0 ? 1 : -1;
}
