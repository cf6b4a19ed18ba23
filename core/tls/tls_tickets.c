/* tls_tickets.c — see tls_tickets.h. */
#include "tls/tls_tickets.h"

#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* The ex_data slot of SSL_CTX that holds the tickets. Indices are
 * process-wide by OpenSSL's design; the first call allocates it. */
static int tickets_index(void)
{
    static int index = -1;
    if (index < 0)
        index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return index;
}

int tw_tls_tickets_make(tw_tls_tickets_t *t)
{
    memset(t, 0, sizeof *t);
    if (RAND_priv_bytes(t->secrets[0], sizeof t->secrets[0]) != 1)
        return -1;
    t->count = 1;
    return 0;
}

void tw_tls_tickets_follow(tw_tls_tickets_t *t, const tw_tls_tickets_t *previous)
{
    t->count = t->count ? 1 : 0;
    for (size_t i = 0; i < previous->count && t->count < TW_TLS_TICKET_SECRETS; i++)
        memcpy(t->secrets[t->count++], previous->secrets[i], sizeof t->secrets[0]);
}

void tw_tls_tickets_clear(tw_tls_tickets_t *t)
{
    OPENSSL_cleanse(t, sizeof *t);
}

/* SHA-256(secret | epoch | label): one key part per label. */
static void derive_part(const unsigned char secret[32], uint64_t epoch, char label,
                        unsigned char out[32])
{
    unsigned char in[32 + 8 + 1];
    memcpy(in, secret, 32);
    for (int i = 0; i < 8; i++)
        in[32 + i] = (unsigned char)(epoch >> (8 * i));
    in[40] = (unsigned char)label;
    unsigned int len = 32;
    EVP_Digest(in, sizeof in, out, &len, EVP_sha256(), NULL);
    OPENSSL_cleanse(in, sizeof in);
}

static void derive(const unsigned char secret[32], uint64_t epoch, tw_tls_ticket_key_t *k)
{
    unsigned char name[32];
    derive_part(secret, epoch, 'n', name);
    memcpy(k->name, name, sizeof k->name);
    derive_part(secret, epoch, 'a', k->aes);
    derive_part(secret, epoch, 'h', k->hmac);
}

void tw_tls_tickets_current(const tw_tls_tickets_t *t, uint64_t epoch, tw_tls_ticket_key_t *k)
{
    derive(t->secrets[0], epoch, k);
}

int tw_tls_tickets_find(const tw_tls_tickets_t *t, const unsigned char name[16], uint64_t epoch,
                        tw_tls_ticket_key_t *k)
{
    for (size_t s = 0; s < t->count; s++)
        for (uint64_t e = 0; e < TW_TLS_TICKET_EPOCHS && e <= epoch; e++) {
            derive(t->secrets[s], epoch - e, k);
            if (memcmp(name, k->name, sizeof k->name) == 0)
                return s == 0 && e == 0 ? 1 : 2;
        }
    OPENSSL_cleanse(k, sizeof *k);
    return 0;
}

static int set_hmac(EVP_MAC_CTX *hctx, const tw_tls_ticket_key_t *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's ticket callback: 1 (use this key), 2 (decrypted; issue a new
 * ticket with the current key), 0 (unknown key: full handshake), -1. */
static int on_ticket(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    const tw_tls_tickets_t *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tickets_index());
    if (!t || t->count == 0)
        return 0; /* no ticket issued, none accepted: full handshakes */
    uint64_t now = (uint64_t)time(NULL) / TW_TLS_TICKET_EPOCH_S;
    tw_tls_ticket_key_t k;
    int rc;
    if (enc) {
        tw_tls_tickets_current(t, now, &k);
        rc = RAND_bytes(iv, 16) == 1 &&
                     EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
                     set_hmac(hctx, &k) == 1
                 ? 1
                 : -1;
        if (rc == 1)
            memcpy(key_name, k.name, sizeof k.name);
    } else {
        rc = tw_tls_tickets_find(t, key_name, now, &k);
        if (rc > 0 && (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
                       set_hmac(hctx, &k) != 1))
            rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

void tw_tls_tickets_install(SSL_CTX *ctx, const tw_tls_tickets_t *t, bool enabled)
{
    /* Set even when disabled: after SNI switched a session to this
     * context, the listener's default context decides whether tickets are
     * issued, and its callback finds the keys here. */
    SSL_CTX_set_ex_data(ctx, tickets_index(), (void *)t);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
    SSL_CTX_set_timeout(ctx, TW_TLS_TICKET_LIFETIME_S);
    if (!enabled) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
}
