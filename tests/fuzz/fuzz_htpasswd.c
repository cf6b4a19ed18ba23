/* Fuzzes the htpasswd line parser of auth_basic (modules/auth_basic):
 * whatever a password file holds, parsing never reads out of bounds, and
 * an accepted entry points inside the line. APR1 entries are verified too
 * (bcrypt and SHA-crypt are libcrypt's and slow by design). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "htpasswd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so reading past the line is caught. */
    char *line = malloc(size ? size : 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    htpasswd_entry_t e;
    char why[256];
    if (htpasswd_parse_line(line, size, &e, why, sizeof why) == HTPASSWD_ENTRY) {
        if (e.user < line || e.user + e.user_len > line + size || e.hash < line ||
            e.hash + e.hash_len > line + size || e.user_len == 0)
            abort();
        if (e.scheme == HTPASSWD_APR1) {
            char *hash = strndup(e.hash, e.hash_len);
            if (hash) {
                htpasswd_verify(e.scheme, hash, line, e.user_len);
                free(hash);
            }
        }
    }
    free(line);
    return 0;
}
