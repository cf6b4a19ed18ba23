/* tls_facts.h — what the request engine may learn of a connection's TLS:
 * static strings of OpenSSL's, set when the handshake completes. */
#ifndef TWISTER_TLS_FACTS_H
#define TWISTER_TLS_FACTS_H

typedef struct {
    const char *protocol; /* "TLSv1.3"; NULL before the handshake */
    const char *cipher;   /* "TLS_AES_256_GCM_SHA384"; NULL before it */
} tw_tls_facts_t;

#endif
