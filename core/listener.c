/* listener.c — see listener.h. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *tw_sockaddr_host_text(const struct sockaddr *addr, char *buf, size_t len)
{
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
        if (!inet_ntop(AF_INET6, &a6->sin6_addr, buf, (socklen_t)len))
            snprintf(buf, len, "?");
    } else if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
        if (!inet_ntop(AF_INET, &a4->sin_addr, buf, (socklen_t)len))
            snprintf(buf, len, "?");
    } else {
        snprintf(buf, len, "unix");
    }
    return buf;
}

const char *tw_sockaddr_text(const struct sockaddr *addr, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    tw_sockaddr_host_text(addr, host, sizeof host);
    if (addr->sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%u", host, ntohs(((const struct sockaddr_in6 *)addr)->sin6_port));
    else if (addr->sa_family == AF_INET)
        snprintf(buf, len, "%s:%u", host, ntohs(((const struct sockaddr_in *)addr)->sin_port));
    else
        snprintf(buf, len, "%s", host);
    return buf;
}

bool tw_sockaddr_equal(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
                       socklen_t blen)
{
    (void)alen;
    (void)blen;
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

/* How long the kernel holds a silent new connection back from accept. */
#define DEFER_ACCEPT_S 1

int tw_listener_open(const struct sockaddr *addr, socklen_t len, int backlog, char *err,
                     size_t errlen)
{
    char text[64];
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    if (addr->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        goto fail;
    if (bind(fd, addr, len) != 0 || listen(fd, backlog) != 0)
        goto fail;
    /* A connection reaches accept only once its first bytes have arrived
     * (nginx's `deferred`): the worker's first read of it then finds the
     * request instead of EAGAIN, and a client that connects and says
     * nothing costs the workers nothing until the kernel gives up waiting
     * (after about DEFER_ACCEPT_S, when it is accepted like any other and
     * the header timeout applies). Best effort: not every socket has it. */
    if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) {
        int secs = DEFER_ACCEPT_S;
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
    }
    return fd;
fail:;
    int saved = errno;
    snprintf(err, errlen, "cannot listen on %s: %s", tw_sockaddr_text(addr, text, sizeof text),
             strerror(saved));
    if (fd >= 0)
        close(fd);
    errno = saved;
    return -1;
}
