/* tls.h — one TLS session under an IOStream (stream_transport.h): the
 * non-blocking handshake, records in and out, sendfile (kernel TLS when
 * the kernel and OpenSSL do it, else through a read buffer), close_notify.
 *
 * The handshake needs no call of its own: the first read runs it, inside
 * the stream's loop, so whatever bounds a connection waiting for its first
 * request (the header timeout) bounds a slow handshake. A plaintext HTTP
 * request on the port gets a plaintext 400 and the connection closes. */
#ifndef TWISTER_TLS_H
#define TWISTER_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "tls/tls_facts.h"
#include "twister/stream.h"

/* Puts a server-side TLS session from ctx under stream s (right after
 * tw_stream_adopt). facts (may be NULL) is filled at the handshake and
 * must outlive the stream; app is SSL_set_app_data's (for the SNI
 * callback). Returns 0, or -1 with errno (ENOMEM); the stream is then
 * unchanged and the caller closes it. */
int tw_tls_attach(tw_stream_t *s, SSL_CTX *ctx, void *app, tw_tls_facts_t *facts);

#endif
