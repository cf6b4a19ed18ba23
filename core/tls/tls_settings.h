/* tls_settings.h — the `tls:` block of a server, as the config states it.
 *
 *   tls:
 *     certificate: fullchain.pem       # or a list: [rsa.pem, ecdsa.pem]
 *     key: privkey.pem                 # one per certificate, same order
 *     protocols: [TLSv1.2, TLSv1.3]    # the default; older ones are refused
 *     ciphers: "..."                   # TLS 1.2 cipher list [Mozilla intermediate]
 *     session_tickets: on              # resumption with the master's shared keys
 *     ocsp_stapling: off               # on: staple ocsp_response
 *     ocsp_response: cert.ocsp.der     # a DER OCSP response (e.g. from `openssl ocsp`)
 *
 * Only the syntax is checked here (settings time, no file is opened): the
 * files are read and the certificates checked by tls_context.c in the
 * master, where the same nodes give the errors their file:line:column. */
#ifndef TWISTER_TLS_SETTINGS_H
#define TWISTER_TLS_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "twister/conf.h"

/* Protocol bits of tw_tls_conf_t.protocols. */
#define TW_TLS_V1_2 0x1u
#define TW_TLS_V1_3 0x2u

/* Mozilla's "intermediate" TLS 1.2 list (TLS 1.3 suites are OpenSSL's). */
#define TW_TLS_DEFAULT_CIPHERS                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

typedef struct {
    const char **certificates;          /* resolved paths */
    const tw_conf_node_t **cert_nodes;  /* where each was written */
    const char **keys;                  /* resolved paths, one per certificate */
    const tw_conf_node_t **key_nodes;   /* where each was written */
    size_t ncertificates;               /* at least 1 */
    unsigned protocols;                 /* TW_TLS_V1_* bits, at least one */
    const char *ciphers;                /* OpenSSL cipher list */
    const tw_conf_node_t *ciphers_node; /* NULL when defaulted */
    bool session_tickets;               /* [true] */
    bool ocsp_stapling;                 /* [false] */
    const char *ocsp_response;          /* resolved path, or NULL */
    const tw_conf_node_t *ocsp_node;    /* ocsp_response's node (or ocsp_stapling's) */
    const tw_conf_node_t *node;         /* the tls: map */
} tw_tls_conf_t;

/* Parses the tls: map at node, paths resolved against config_dir, memory
 * from arena. Returns 0 with *out set, or -1 with err at the bad node. */
int tw_tls_settings_parse(tw_conf_arena_t *arena, const char *config_dir,
                          const tw_conf_node_t *node, tw_tls_conf_t **out, tw_conf_error_t *err);

#endif
