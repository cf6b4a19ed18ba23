/* accept_encoding.h — whether a request's Accept-Encoding lets a response
 * be gzip-coded, for the modules that send gzip (gzip, static's
 * gzip_static). */
#ifndef TWISTER_MODULES_ACCEPT_ENCODING_H
#define TWISTER_MODULES_ACCEPT_ENCODING_H

#include <stdbool.h>

#include <twister/twister.h>

/* True if Accept-Encoding (every field of it) allows gzip: "gzip" or
 * "x-gzip" with q > 0, or else "*" with q > 0 (RFC 9110 12.5.3); false
 * without the header (identity is what a client that says nothing gets). */
bool ae_accepts_gzip(const tw_request_t *r);

#endif
