/* tls_tickets.h — session ticket keys shared by every worker.
 *
 * The master makes a random secret per generation and hands it, with the
 * secrets of the generations before it, to the workers over fork. A
 * worker derives the actual keys from a secret and the hour (the epoch),
 * so every worker of a generation encrypts with the same key without any
 * message between them, the key changes every TW_TLS_TICKET_EPOCH_S, and
 * a ticket from the last TW_TLS_TICKET_EPOCHS epochs (or from the
 * previous generations, kept after a reload) is still accepted, so
 * rotation never breaks the resumption of a recent session. */
#ifndef TWISTER_TLS_TICKETS_H
#define TWISTER_TLS_TICKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define TW_TLS_TICKET_EPOCH_S 3600u /* a new key every hour */
#define TW_TLS_TICKET_EPOCHS 3u     /* tickets decrypt for up to 3 epochs */
#define TW_TLS_TICKET_SECRETS 3u    /* this generation's and two before it */
#define TW_TLS_TICKET_LIFETIME_S ((TW_TLS_TICKET_EPOCHS - 1) * TW_TLS_TICKET_EPOCH_S)

typedef struct {
    unsigned char secrets[TW_TLS_TICKET_SECRETS][32]; /* [0] encrypts */
    size_t count;
} tw_tls_tickets_t;

/* Makes a fresh secret into t. Returns 0, or -1 if the random generator
 * failed. */
int tw_tls_tickets_make(tw_tls_tickets_t *t);
/* Keeps t's newest secret and appends previous's newest ones after it. */
void tw_tls_tickets_follow(tw_tls_tickets_t *t, const tw_tls_tickets_t *previous);
/* Wipes the secrets. */
void tw_tls_tickets_clear(tw_tls_tickets_t *t);
/* One epoch's key, derived from a secret. */
typedef struct {
    unsigned char name[16]; /* sent in the ticket: which key made it */
    unsigned char aes[32];
    unsigned char hmac[32];
} tw_tls_ticket_key_t;

/* The key that encrypts new tickets during epoch (time / EPOCH_S). */
void tw_tls_tickets_current(const tw_tls_tickets_t *t, uint64_t epoch, tw_tls_ticket_key_t *k);
/* The key named name, if a ticket under it is still accepted during
 * epoch: 1 if it is the current key, 2 if an older one (the session gets
 * a fresh ticket), 0 if none (a full handshake follows). */
int tw_tls_tickets_find(const tw_tls_tickets_t *t, const unsigned char name[16], uint64_t epoch,
                        tw_tls_ticket_key_t *k);
/* Installs the ticket callback on ctx, using t (which must outlive ctx);
 * with enabled false, ctx issues no tickets. */
void tw_tls_tickets_install(SSL_CTX *ctx, const tw_tls_tickets_t *t, bool enabled);

#endif
