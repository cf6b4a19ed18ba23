/* resolver.c — upstream addresses: numeric parsing that never blocks, and
 * getaddrinfo for names, which does (so it is only called while a
 * generation is configured or from a worker thread). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "twister/upstream.h"

static int parse_port(const char *s, unsigned *port)
{
    if (!*s)
        return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    *port = (unsigned)v;
    return 0;
}

/* Splits "host:port" / "[v6]:port" into host (brackets removed) and port. */
static int split_host_port(const char *spec, char *host, size_t cap, unsigned *port)
{
    const char *colon;
    const char *h = spec;
    size_t hlen;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':')
            return -1;
        h = spec + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - spec);
        if (memchr(spec, ':', hlen))
            return -1; /* an IPv6 literal needs brackets */
    }
    if (hlen == 0 || hlen >= cap || parse_port(colon + 1, port))
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

static void addr_text(tw_addr_t *a)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(a->text, sizeof a->text, "%s:%u", ip, ntohs(in->sin_port));
    } else if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(a->text, sizeof a->text, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
}

int tw_addr_parse(const char *spec, tw_addr_t *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof un->sun_path || n + 6 > sizeof out->text) {
            errno = EINVAL;
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n + 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        snprintf(out->text, sizeof out->text, "unix:%s", path);
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 1];
    unsigned port;
    if (split_host_port(spec, host, sizeof host, &port)) {
        errno = EINVAL;
        return -1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->sa;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        out->len = sizeof *in;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *in6;
    } else {
        errno = EINVAL;
        return -1;
    }
    addr_text(out);
    return 0;
}

int tw_addr_resolve(const char *spec, tw_addr_t *out, size_t max, size_t *count)
{
    *count = 0;
    if (max == 0) {
        errno = EINVAL;
        return -1;
    }
    if (tw_addr_parse(spec, &out[0]) == 0) {
        *count = 1;
        return 0;
    }
    if (strncmp(spec, "unix:", 5) == 0)
        return -1; /* errno from tw_addr_parse */
    char host[256];
    unsigned port;
    if (split_host_port(spec, host, sizeof host, &port)) {
        errno = EINVAL;
        return -1;
    }
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        errno = rc == EAI_AGAIN ? EAGAIN : rc == EAI_MEMORY ? ENOMEM : ENOENT;
        return -1;
    }
    for (struct addrinfo *ai = res; ai && *count < max; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof out->sa)
            continue;
        tw_addr_t *a = &out[*count];
        memset(a, 0, sizeof *a);
        memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
        a->len = ai->ai_addrlen;
        addr_text(a);
        bool dup = false;
        for (size_t i = 0; i < *count; i++)
            dup |= out[i].len == a->len && memcmp(&out[i].sa, &a->sa, a->len) == 0;
        if (!dup)
            (*count)++;
    }
    freeaddrinfo(res);
    if (*count == 0) {
        errno = ENOENT;
        return -1;
    }
    return 0;
}
