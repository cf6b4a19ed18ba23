/* htpasswd.h — the password file of auth_basic: parsing a line, telling
 * the hash schemes apart, verifying a password against a hash. Pure
 * functions (no I/O, no global state), so the parser can be fuzzed. */
#ifndef TWISTER_MODULES_HTPASSWD_H
#define TWISTER_MODULES_HTPASSWD_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    HTPASSWD_BCRYPT,   /* $2y$, $2b$, $2a$ (htpasswd -B) */
    HTPASSWD_SHA256,   /* $5$ SHA-crypt */
    HTPASSWD_SHA512,   /* $6$ SHA-crypt */
    HTPASSWD_MD5CRYPT, /* $1$ */
    HTPASSWD_APR1,     /* $apr1$ (htpasswd -m, Apache's default) */
} htpasswd_scheme_t;

/* What a line holds. */
typedef enum {
    HTPASSWD_ENTRY, /* user and hash are set */
    HTPASSWD_BLANK, /* empty or a # comment */
    HTPASSWD_BAD,   /* why says what is wrong */
} htpasswd_line_t;

typedef struct {
    const char *user; /* into the line, not NUL-terminated */
    size_t user_len;
    const char *hash;
    size_t hash_len;
    htpasswd_scheme_t scheme;
} htpasswd_entry_t;

/* Parses one line (len bytes, without its newline; a trailing CR is
 * ignored): "user:hash", as htpasswd writes it. Plain-text passwords,
 * unsalted hashes ({SHA}) and the old 13-character DES crypt are refused
 * with a reason, as are empty users and users with ':' or control
 * characters. */
htpasswd_line_t htpasswd_parse_line(const char *line, size_t len, htpasswd_entry_t *out, char *why,
                                    size_t whylen);

/* Verifies password (len bytes) against the NUL-terminated hash of the
 * given scheme, comparing in constant time. False on any mismatch or
 * failure. Bcrypt and SHA-crypt run through libcrypt's crypt_rn; APR1 is
 * computed from OpenSSL's MD5. */
bool htpasswd_verify(htpasswd_scheme_t scheme, const char *hash, const char *password, size_t len);

/* The APR1 hash of password with salt (at most 8 characters, up to the
 * first '$'), "$apr1$salt$digest", into out (at least 38 bytes). Returns
 * false if MD5 is unavailable. */
bool htpasswd_apr1(const char *password, size_t len, const char *salt, size_t salt_len,
                   char out[38]);

#endif
