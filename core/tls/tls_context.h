/* tls_context.h — the certificates of a generation, from files to the
 * OpenSSL contexts a worker handshakes with.
 *
 * Two halves, like generation.h and runtime.h. The master (as root, before
 * any worker exists) reads every certificate, key and OCSP response into
 * memory and checks them by building the contexts once: a missing file, a
 * key that does not match its certificate, a bad cipher list is a config
 * error at its file:line:column, so -t finds it and a reload that hits it
 * keeps the old generation serving; an expired certificate is a warning.
 * The workers inherit those bytes over fork and build their contexts from
 * them: a worker never opens a key file, so the key need not be readable
 * by `user:`.
 *
 * SNI switches a handshake to the named server's context, which brings
 * that server's certificates, OCSP staple and ALPN; the protocol versions,
 * cipher list and session_tickets of the listener's default server apply
 * to every handshake on the listener (OpenSSL fixes them before SNI is
 * read). */
#ifndef TWISTER_TLS_CONTEXT_H
#define TWISTER_TLS_CONTEXT_H

#include <stddef.h>

#include "tls/tls.h"
#include "tls/tls_tickets.h"
#include "twister/conf.h"
#include "twister/stream.h"

typedef struct tw_settings tw_settings_t;
typedef struct tw_tls_material tw_tls_material_t;
typedef struct tw_tls_server tw_tls_server_t;

/* Master: reads and checks the TLS files of every server of s, and makes
 * fresh ticket keys. Returns 0 with *out (NULL if no listener has tls),
 * or -1 with err. */
int tw_tls_material_load(const tw_settings_t *s, tw_tls_material_t **out, tw_conf_error_t *err);
/* Master, on reload: m also accepts the tickets previous accepted (its
 * newest keys), so sessions resume across the reload. Either may be NULL. */
void tw_tls_material_follow(tw_tls_material_t *m, const tw_tls_material_t *previous);
/* Wipes the key bytes and frees m (NULL is a no-op). */
void tw_tls_material_free(tw_tls_material_t *m);

/* Worker: builds the contexts of s from m (which must outlive the result).
 * Returns NULL with err set (m NULL: returns NULL with err empty). */
tw_tls_server_t *tw_tls_server_new(const tw_settings_t *s, const tw_tls_material_t *m,
                                   tw_conf_error_t *err);
/* Frees the contexts (sessions still open keep theirs alive). */
void tw_tls_server_free(tw_tls_server_t *srv);
/* True if the listener at listener_index has tls (srv may be NULL). */
bool tw_tls_server_listens(const tw_tls_server_t *srv, size_t listener_index);
/* Puts TLS under a fresh connection's stream if its listener has tls:
 * returns 1 if it did, 0 for a plaintext listener, -1 with errno. */
int tw_tls_server_attach(tw_tls_server_t *srv, tw_stream_t *s, size_t listener_index,
                         tw_tls_facts_t *facts);

#endif
