/* cidr.h — IPv4/IPv6 addresses and CIDR blocks, for the modules that
 * decide by client address (access, realip). An IPv4-mapped IPv6 address
 * (::ffff:10.1.2.3) is the IPv4 address it carries, on both sides, so an
 * IPv4 rule matches a client that reached a dual-stack socket. */
#ifndef TWISTER_MODULES_CIDR_H
#define TWISTER_MODULES_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    int family;       /* AF_INET, AF_INET6, or AF_UNSPEC for "all" */
    unsigned bits;    /* prefix length: 0..32 or 0..128 */
    uint8_t addr[16]; /* network byte order; 4 bytes used for AF_INET */
} cidr_t;

/* Parses "10.0.0.0/8", "::1", "fd00::/8", "192.0.2.7" or "all" (len bytes
 * of text, not NUL-terminated). Returns 0, or -1 with a reason in why
 * (host bits set past the prefix are refused: "10.0.0.1/8" is a typo more
 * often than not). */
int cidr_parse(const char *text, size_t len, cidr_t *out, char *why, size_t whylen);
/* Parses a bare address (no prefix) into *sa (port 0), with *salen its
 * size. Returns 0, or -1 if text is not an address. */
int cidr_parse_addr(const char *text, size_t len, struct sockaddr_storage *sa, socklen_t *salen);
/* True if the address sa (AF_INET or AF_INET6) lies in c. */
bool cidr_match(const cidr_t *c, const struct sockaddr *sa);
/* True if sa lies in one of the n blocks. */
bool cidr_match_any(const cidr_t *list, size_t n, const struct sockaddr *sa);

#endif
