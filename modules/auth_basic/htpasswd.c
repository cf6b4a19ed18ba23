/* htpasswd.c — see htpasswd.h. */
#include "htpasswd.h"

#include <crypt.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most work one password check may cost (see scheme_of). */
#define MAX_BCRYPT_COST 14
#define MAX_SHA_ROUNDS 500000

/* The characters of the crypt alphabet (salts, digests). */
static bool is_crypt_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '/';
}

static bool starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* The scheme of a hash, or -1 with a reason. */
static int scheme_of(const char *h, size_t len, char *why, size_t whylen)
{
    int scheme = -1;
    if (starts(h, len, "$2y$") || starts(h, len, "$2b$") || starts(h, len, "$2a$"))
        scheme = HTPASSWD_BCRYPT;
    else if (starts(h, len, "$5$"))
        scheme = HTPASSWD_SHA256;
    else if (starts(h, len, "$6$"))
        scheme = HTPASSWD_SHA512;
    else if (starts(h, len, "$1$"))
        scheme = HTPASSWD_MD5CRYPT;
    else if (starts(h, len, "$apr1$"))
        scheme = HTPASSWD_APR1;
    else if (starts(h, len, "{SHA}")) {
        snprintf(why, whylen,
                 "an unsalted {SHA} hash (htpasswd -s) is refused: recreate the entry with "
                 "htpasswd -B (bcrypt)");
        return -1;
    } else if (len == 13) {
        snprintf(why, whylen,
                 "a DES crypt hash (htpasswd -d) is refused (8-character passwords, 12-bit "
                 "salt): recreate the entry with htpasswd -B (bcrypt)");
        return -1;
    } else {
        snprintf(why, whylen,
                 "not a supported hash ($2y$ bcrypt, $5$/$6$ SHA-crypt, $apr1$ or $1$ MD5): "
                 "plain-text passwords are refused: use htpasswd -B");
        return -1;
    }
    /* What follows the prefix: crypt alphabet and '$' only (bcrypt costs are
     * digits, SHA-crypt may say rounds=N). */
    for (size_t i = 1; i < len; i++) {
        char c = h[i];
        if (!is_crypt_char(c) && c != '$' && c != '=') {
            snprintf(why, whylen, "the hash has a character '%c' no %s hash has",
                     c >= 0x20 && c < 0x7f ? c : '?', "crypt");
            return -1;
        }
    }
    if (scheme == HTPASSWD_BCRYPT && len != 60) {
        snprintf(why, whylen, "a bcrypt hash has 60 characters, this one %zu", len);
        return -1;
    }
    /* Every request with a password pays the hash's cost on the worker's
     * thread: refuse costs that would stall it for a second or more. */
    if (scheme == HTPASSWD_BCRYPT) {
        int cost = h[4] >= '0' && h[4] <= '9' && h[5] >= '0' && h[5] <= '9' && h[6] == '$'
                       ? (h[4] - '0') * 10 + (h[5] - '0')
                       : -1;
        if (cost < 4 || cost > MAX_BCRYPT_COST) {
            snprintf(why, whylen,
                     "bcrypt cost must be 4..%d (each check runs on the worker; htpasswd -B -C "
                     "5..12 is usual)",
                     MAX_BCRYPT_COST);
            return -1;
        }
    }
    if ((scheme == HTPASSWD_SHA256 || scheme == HTPASSWD_SHA512) && len > 10 &&
        memcmp(h + 3, "rounds=", 7) == 0) {
        /* The hash is not NUL-terminated: count digits within len. */
        size_t i = 10;
        unsigned long rounds = 0;
        while (i < len && h[i] >= '0' && h[i] <= '9' && rounds <= MAX_SHA_ROUNDS)
            rounds = rounds * 10 + (unsigned long)(h[i++] - '0');
        if (i == 10 || i >= len || h[i] != '$' || rounds > MAX_SHA_ROUNDS) {
            snprintf(why, whylen, "SHA-crypt rounds must be at most %d", MAX_SHA_ROUNDS);
            return -1;
        }
    }
    if (len < 12 || h[len - 1] == '$') {
        snprintf(why, whylen, "the hash is truncated");
        return -1;
    }
    return scheme;
}

htpasswd_line_t htpasswd_parse_line(const char *line, size_t len, htpasswd_entry_t *out, char *why,
                                    size_t whylen)
{
    if (len && line[len - 1] == '\r')
        len--;
    size_t start = 0;
    while (start < len && (line[start] == ' ' || line[start] == '\t'))
        start++;
    if (start == len || line[start] == '#')
        return HTPASSWD_BLANK;
    const char *colon = memchr(line, ':', len);
    if (!colon) {
        snprintf(why, whylen, "expected user:hash");
        return HTPASSWD_BAD;
    }
    size_t ulen = (size_t)(colon - line);
    if (ulen == 0) {
        snprintf(why, whylen, "the user name is empty");
        return HTPASSWD_BAD;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, whylen, "a control character at byte %zu", i + 1);
            return HTPASSWD_BAD;
        }
    }
    const char *hash = colon + 1;
    size_t hlen = len - ulen - 1;
    /* Apache allows a comment field after the hash: user:hash:comment. */
    const char *more = memchr(hash, ':', hlen);
    if (more)
        hlen = (size_t)(more - hash);
    int scheme = scheme_of(hash, hlen, why, whylen);
    if (scheme < 0)
        return HTPASSWD_BAD;
    *out = (htpasswd_entry_t){line, ulen, hash, hlen, (htpasswd_scheme_t)scheme};
    return HTPASSWD_ENTRY;
}

/* Equal lengths and bytes, in time that depends on the lengths only. */
static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    volatile unsigned char diff = alen != blen;
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static const char crypt_alphabet[] =
    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static char *put_base64(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        *p++ = crypt_alphabet[v & 0x3f];
        v >>= 6;
    }
    return p;
}

static bool md5(EVP_MD_CTX *ctx, const void *const *parts, const size_t *lens, size_t n,
                unsigned char digest[16])
{
    if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lens[i] && EVP_DigestUpdate(ctx, parts[i], lens[i]) != 1)
            return false;
    unsigned int out = 0;
    return EVP_DigestFinal_ex(ctx, digest, &out) == 1 && out == 16;
}

/* Poul-Henning Kamp's MD5-crypt with Apache's "$apr1$" magic: the
 * composition of MD5 calls that htpasswd -m computes. */
bool htpasswd_apr1(const char *pw, size_t len, const char *salt, size_t salt_len, char out[38])
{
    static const char magic[] = "$apr1$";
    const size_t mlen = sizeof magic - 1;
    const char *dollar = memchr(salt, '$', salt_len);
    if (dollar)
        salt_len = (size_t)(dollar - salt);
    if (salt_len > 8)
        salt_len = 8;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return false;
    bool ok = false;
    unsigned char alt[16], fin[16];
    {
        const void *p[] = {pw, salt, pw};
        const size_t l[] = {len, salt_len, len};
        if (!md5(ctx, p, l, 3, alt))
            goto out;
    }
    if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1 || EVP_DigestUpdate(ctx, pw, len) != 1 ||
        EVP_DigestUpdate(ctx, magic, mlen) != 1 || EVP_DigestUpdate(ctx, salt, salt_len) != 1)
        goto out;
    for (size_t left = len; left > 0; left -= left > 16 ? 16 : left)
        if (EVP_DigestUpdate(ctx, alt, left > 16 ? 16 : left) != 1)
            goto out;
    for (size_t i = len; i; i >>= 1)
        if (EVP_DigestUpdate(ctx, (i & 1) ? "\0" : pw, 1) != 1)
            goto out;
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(ctx, fin, &dlen) != 1)
        goto out;
    for (int i = 0; i < 1000; i++) {
        const void *p[4];
        size_t l[4], n = 0;
        if (i & 1)
            p[n] = pw, l[n++] = len;
        else
            p[n] = fin, l[n++] = 16;
        if (i % 3)
            p[n] = salt, l[n++] = salt_len;
        if (i % 7)
            p[n] = pw, l[n++] = len;
        if (i & 1)
            p[n] = fin, l[n++] = 16;
        else
            p[n] = pw, l[n++] = len;
        if (!md5(ctx, p, l, n, fin))
            goto out;
    }
    char *q = out;
    memcpy(q, magic, mlen);
    q += mlen;
    memcpy(q, salt, salt_len);
    q += salt_len;
    *q++ = '$';
    static const int order[5][3] = {{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}};
    for (int i = 0; i < 5; i++)
        q = put_base64(q,
                       (unsigned)fin[order[i][0]] << 16 | (unsigned)fin[order[i][1]] << 8 |
                           fin[order[i][2]],
                       4);
    q = put_base64(q, fin[11], 2);
    *q = '\0';
    ok = true;
out:
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool htpasswd_verify(htpasswd_scheme_t scheme, const char *hash, const char *password, size_t len)
{
    size_t hlen = strlen(hash);
    if (memchr(password, '\0', len))
        return false; /* crypt_r would stop there: "secret\0junk" is not "secret" */
    if (scheme == HTPASSWD_APR1) {
        char computed[38];
        if (hlen < 6 || !htpasswd_apr1(password, len, hash + 6, hlen - 6, computed))
            return false;
        return same_bytes(computed, strlen(computed), hash, hlen);
    }
    char *pw = malloc(len + 1);
    struct crypt_data *data = calloc(1, sizeof *data); /* about 32 KiB: not on the stack */
    bool ok = false;
    if (pw && data) {
        memcpy(pw, password, len);
        pw[len] = '\0';
        /* crypt_rn rather than crypt_r: the same function, and it returns
         * NULL on failure; it is also not wrapped by the sanitizers, whose
         * crypt_r wrapper cannot reach a libcrypt loaded with a plugin. */
        const char *computed = crypt_rn(pw, hash, data, (int)sizeof *data);
        /* Failures are NULL (or "*0"/"*1" from older libcrypts): never a hash. */
        ok = computed && computed[0] != '*' && same_bytes(computed, strlen(computed), hash, hlen);
        explicit_bzero(pw, len);
    }
    free(pw);
    free(data);
    return ok;
}
