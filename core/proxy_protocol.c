/* proxy_protocol.c — the PROXY protocol parser (proxy_protocol.h), after
 * HAProxy's specification "The PROXY protocol", versions 1 and 2. */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const char v2_signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                      '\n', 'Q',  'U',  'I',  'T',  '\n'};

static tw_proxy_result_t fail(tw_proxy_header_t *out, const char *why)
{
    out->error = why;
    return TW_PROXY_ERROR;
}

/* One space-terminated field of a v1 line: [*p, end). */
static bool v1_field(const char **p, const char *end, const char **start, size_t *len)
{
    const char *s = *p, *e = s;
    while (e < end && *e != ' ')
        e++;
    if (e == s || e - s > 45)
        return false;
    *start = s;
    *len = (size_t)(e - s);
    *p = e < end ? e + 1 : e;
    return true;
}

static bool v1_port(const char *s, size_t len, unsigned *port)
{
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *port = v;
    return v <= 65535;
}

static bool v1_addr(int family, const char *s, size_t len, void *addr)
{
    char buf[46];
    if (len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(family, buf, addr) == 1;
}

/* "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" or "PROXY UNKNOWN ...\r\n". */
static tw_proxy_result_t parse_v1(const char *data, size_t len, tw_proxy_header_t *out)
{
    const char *crlf = NULL;
    size_t scan = len < TW_PROXY_V1_MAX ? len : TW_PROXY_V1_MAX;
    for (size_t i = 0; i < scan; i++) {
        if (data[i] == '\r' && i + 1 < scan && data[i + 1] == '\n') {
            crlf = data + i;
            break;
        }
        if (data[i] == '\n' || data[i] == '\0' || (data[i] == '\r' && i + 1 < scan))
            return fail(out, "a bad byte in a PROXY v1 line");
    }
    if (!crlf) {
        if (len >= TW_PROXY_V1_MAX)
            return fail(out, "a PROXY v1 line longer than 107 bytes");
        return TW_PROXY_AGAIN;
    }
    const char *p = data + 6, *end = crlf; /* after "PROXY " */
    out->length = (size_t)(crlf - data) + 2;
    if (end - p >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' '))
        return TW_PROXY_DONE; /* the balancer could not tell: keep the peer */
    int family;
    if (end - p >= 5 && memcmp(p, "TCP4 ", 5) == 0)
        family = AF_INET;
    else if (end - p >= 5 && memcmp(p, "TCP6 ", 5) == 0)
        family = AF_INET6;
    else
        return fail(out, "a PROXY v1 line with an unknown protocol (TCP4, TCP6 or UNKNOWN)");
    p += 5;
    const char *f[4];
    size_t flen[4];
    for (int i = 0; i < 4; i++)
        if (!v1_field(&p, end, &f[i], &flen[i]))
            return fail(out, "a PROXY v1 line with a missing or bad field");
    if (p != end)
        return fail(out, "a PROXY v1 line with more fields than four");
    unsigned sport, dport;
    unsigned char src[16], dst[16];
    if (!v1_addr(family, f[0], flen[0], src) || !v1_addr(family, f[1], flen[1], dst) ||
        !v1_port(f[2], flen[2], &sport) || !v1_port(f[3], flen[3], &dport))
        return fail(out, "a PROXY v1 line with a bad address or port");
    memset(&out->source, 0, sizeof out->source);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&out->source;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)sport);
        memcpy(&in->sin_addr, src, 4);
        out->source_len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->source;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)sport);
        memcpy(&in6->sin6_addr, src, 16);
        out->source_len = sizeof *in6;
    }
    out->has_source = true;
    return TW_PROXY_DONE;
}

static tw_proxy_result_t parse_v2(const unsigned char *d, size_t len, tw_proxy_header_t *out)
{
    if (len < 16)
        return TW_PROXY_AGAIN;
    unsigned version = d[12] >> 4, command = d[12] & 0x0f;
    unsigned family = d[13] >> 4, transport = d[13] & 0x0f;
    size_t payload = (size_t)d[14] << 8 | d[15];
    if (version != 2)
        return fail(out, "a PROXY header of an unknown version");
    if (command > 1)
        return fail(out, "a PROXY v2 header with an unknown command");
    if (payload > TW_PROXY_V2_MAX_PAYLOAD)
        return fail(out, "a PROXY v2 header longer than 4096 bytes");
    if (len < 16 + payload)
        return TW_PROXY_AGAIN;
    out->length = 16 + payload;
    if (command == 0)
        return TW_PROXY_DONE; /* LOCAL: the balancer's own check; keep the peer */
    if (transport != 1 && transport != 2 && !(family == 0 && transport == 0))
        return fail(out, "a PROXY v2 header with an unknown transport");
    const unsigned char *a = d + 16;
    memset(&out->source, 0, sizeof out->source);
    if (family == 1) { /* AF_INET: src, dst, sport, dport */
        if (payload < 12)
            return fail(out, "a PROXY v2 header too short for its IPv4 addresses");
        struct sockaddr_in *in = (struct sockaddr_in *)&out->source;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a, 4);
        memcpy(&in->sin_port, a + 8, 2);
        out->source_len = sizeof *in;
        out->has_source = true;
    } else if (family == 2) {
        if (payload < 36)
            return fail(out, "a PROXY v2 header too short for its IPv6 addresses");
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->source;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, a, 16);
        memcpy(&in6->sin6_port, a + 32, 2);
        out->source_len = sizeof *in6;
        out->has_source = true;
    } else if (family > 3) {
        return fail(out, "a PROXY v2 header with an unknown address family");
    }
    /* UNSPEC and UNIX carry no IP client: keep the peer. TLVs are skipped. */
    return TW_PROXY_DONE;
}

tw_proxy_result_t tw_proxy_parse(const char *data, size_t len, tw_proxy_header_t *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return TW_PROXY_AGAIN;
    size_t n = len < 12 ? len : 12;
    if (memcmp(data, v2_signature, n) == 0)
        return n < 12 ? TW_PROXY_AGAIN : parse_v2((const unsigned char *)data, len, out);
    n = len < 6 ? len : 6;
    if (memcmp(data, "PROXY ", n) == 0)
        return n < 6 ? TW_PROXY_AGAIN : parse_v1(data, len, out);
    return fail(out, "no PROXY protocol header where the listener expects one");
}
