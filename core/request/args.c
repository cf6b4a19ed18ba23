/* args.c — values a handler reads out of the request: query arguments,
 * cookies, regex route captures, and percent-decoding (twister/http.h). */
#include <errno.h>
#include <string.h>

#include "request/request.h"

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

ssize_t tw_percent_decode(char *dst, const char *src, size_t len, bool plus_is_space)
{
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi = i + 1 < len ? hex_value((unsigned char)src[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value((unsigned char)src[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                errno = EINVAL;
                return -1;
            }
            dst[out++] = (char)(hi << 4 | lo);
            i += 2;
            continue;
        }
        dst[out++] = plus_is_space && c == '+' ? ' ' : c;
    }
    return (ssize_t)out;
}

/* Decodes s[0..len) into the request's pool, NUL-terminated. */
static int decode_into_pool(tw_request_t *r, const char *s, size_t len, tw_str_t *out)
{
    char *buf = tw_pool_alloc(r->pool, len + 1);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n = tw_percent_decode(buf, s, len, true);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    *out = (tw_str_t){buf, (size_t)n};
    return 0;
}

/* True if the encoded key k[0..klen) decodes to name (without allocating:
 * keys are short and mostly unencoded). */
static bool key_is(const char *k, size_t klen, const char *name)
{
    size_t ni = 0, nlen = strlen(name);
    for (size_t i = 0; i < klen; i++, ni++) {
        char c = k[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 1 < klen ? hex_value((unsigned char)k[i + 1]) : -1;
            int lo = i + 2 < klen ? hex_value((unsigned char)k[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (ni >= nlen || name[ni] != c)
            return false;
    }
    return ni == nlen;
}

int tw_request_arg(tw_request_t *r, const char *name, tw_str_t *value)
{
    *value = (tw_str_t){NULL, 0};
    if (!name) {
        errno = EINVAL;
        return -1;
    }
    const char *p = r->query.ptr, *end = r->query.ptr + r->query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if (kend > p || *name == '\0') {
            if (key_is(p, (size_t)(kend - p), name)) {
                const char *v = eq ? eq + 1 : stop;
                return decode_into_pool(r, v, (size_t)(stop - v), value) == 0 ? 1 : -1;
            }
        }
        p = stop + 1;
    }
    return 0;
}

static bool is_cookie_space(char c)
{
    return c == ' ' || c == '\t';
}

int tw_request_cookie(const tw_request_t *r, const char *name, tw_str_t *value)
{
    *value = (tw_str_t){NULL, 0};
    size_t nlen = name ? strlen(name) : 0;
    if (!nlen)
        return 0;
    for (const tw_header_t *h = tw_request_header(r, "Cookie"); h;
         h = tw_request_header_next(r, "Cookie", h)) {
        const char *p = h->value.ptr, *end = h->value.ptr + h->value.len;
        while (p < end) {
            while (p < end && (is_cookie_space(*p) || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq) {
                const char *kend = eq;
                while (kend > p && is_cookie_space(kend[-1]))
                    kend--;
                if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
                    const char *v = eq + 1, *vend = stop;
                    while (v < vend && is_cookie_space(*v))
                        v++;
                    while (vend > v && is_cookie_space(vend[-1]))
                        vend--;
                    if (vend - v >= 2 && *v == '"' && vend[-1] == '"') {
                        v++;
                        vend--;
                    }
                    *value = (tw_str_t){v, (size_t)(vend - v)};
                    return 1;
                }
            }
            p = stop;
        }
    }
    return 0;
}

void tw_req_set_captures(tw_request_t *r, const regmatch_t *m, size_t count)
{
    r->capture_count = 0;
    if (!count)
        return;
    if (!r->captures && !(r->captures = tw_pool_alloc(r->pool, 10 * sizeof *r->captures)))
        return; /* no captures is what an allocation failure can cost */
    if (count > 10)
        count = 10;
    for (size_t i = 0; i < count; i++) {
        if (m[i].rm_so < 0 || (size_t)m[i].rm_eo > r->path.len || m[i].rm_eo < m[i].rm_so)
            r->captures[i] = (tw_str_t){NULL, 0};
        else
            r->captures[i] =
                (tw_str_t){r->path.ptr + m[i].rm_so, (size_t)(m[i].rm_eo - m[i].rm_so)};
    }
    r->capture_count = count;
}

int tw_request_capture(const tw_request_t *r, unsigned i, tw_str_t *value)
{
    *value = (tw_str_t){NULL, 0};
    if (i >= r->capture_count || !r->captures[i].ptr)
        return 0;
    *value = r->captures[i];
    return 1;
}
