/* cidr.c — parsing and matching of address blocks (cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The address of sa, IPv4-mapped IPv6 unwrapped; false for other families. */
static bool address_of(const struct sockaddr *sa, int *family, uint8_t addr[16])
{
    if (sa->sa_family == AF_INET) {
        *family = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
        *family = AF_INET;
        memcpy(addr, a6->s6_addr + 12, 4);
    } else {
        *family = AF_INET6;
        memcpy(addr, a6->s6_addr, 16);
    }
    return true;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int cidr_parse(const char *text, size_t len, cidr_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (len == 3 && memcmp(text, "all", 3) == 0) {
        out->family = AF_UNSPEC;
        return 0;
    }
    char buf[INET6_ADDRSTRLEN + 8];
    if (len == 0 || len >= sizeof buf) {
        snprintf(why, whylen, "'%.*s' is not an address or CIDR block", (int)len, text);
        return -1;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        if (slash[1] < '0' || slash[1] > '9' ||
            (bits = strtol(slash + 1, &end, 10), *end != '\0')) {
            snprintf(why, whylen, "'%.*s' has a bad prefix length after '/'", (int)len, text);
            return -1;
        }
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, &a6) == 1) {
        out->family = AF_INET6;
        memcpy(out->addr, a6.s6_addr, 16);
    } else {
        snprintf(why, whylen,
                 "'%.*s' is not an IPv4 or IPv6 address or CIDR block (like 10.0.0.0/8, ::1 or "
                 "all)",
                 (int)len, text);
        return -1;
    }
    unsigned max = out->family == AF_INET ? 32 : 128;
    if (bits > (long)max) {
        snprintf(why, whylen, "'%.*s': the prefix length is at most %u", (int)len, text, max);
        return -1;
    }
    out->bits = bits < 0 ? max : (unsigned)bits;
    /* A mapped block is the IPv4 block it carries. */
    if (out->family == AF_INET6 && out->bits >= 96 && IN6_IS_ADDR_V4MAPPED(&a6)) {
        out->family = AF_INET;
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->bits -= 96;
        max = 32;
    }
    uint8_t net[16] = {0};
    memcpy(net, out->addr, max / 8);
    for (unsigned i = out->bits; i < max; i++)
        net[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    if (memcmp(net, out->addr, max / 8) != 0) {
        char fixed[INET6_ADDRSTRLEN];
        inet_ntop(out->family, net, fixed, sizeof fixed);
        snprintf(why, whylen, "'%.*s' has bits set past its /%u prefix; did you mean %s/%u?",
                 (int)len, text, out->bits, fixed, out->bits);
        return -1;
    }
    return 0;
}

int cidr_parse_addr(const char *text, size_t len, struct sockaddr_storage *sa, socklen_t *salen)
{
    char buf[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, buf, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        *salen = sizeof *in;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        *salen = sizeof *in6;
        return 0;
    }
    return -1;
}

bool cidr_match(const cidr_t *c, const struct sockaddr *sa)
{
    int family;
    uint8_t addr[16];
    if (!sa || !address_of(sa, &family, addr))
        return false;
    if (c->family == AF_UNSPEC)
        return true;
    return family == c->family && prefix_equal(addr, c->addr, c->bits);
}

bool cidr_match_any(const cidr_t *list, size_t n, const struct sockaddr *sa)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&list[i], sa))
            return true;
    return false;
}
