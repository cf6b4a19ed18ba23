/* listener.h — listening sockets. They belong to the master for its whole
 * life and are matched by address across reloads, so an address that stays
 * in the config is never closed or rebound and no queued connection is
 * lost. */
#ifndef TWISTER_LISTENER_H
#define TWISTER_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>

/* Opens a non-blocking, close-on-exec TCP listener on addr with
 * SO_REUSEADDR (and IPV6_V6ONLY for IPv6, so [::]:80 and 0.0.0.0:80 can
 * coexist). Returns the fd, or -1 with errno and a message in err. */
int tw_listener_open(const struct sockaddr *addr, socklen_t len, int backlog, char *err,
                     size_t errlen);
/* True if a and b are the same address and port. */
bool tw_sockaddr_equal(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
                       socklen_t blen);
/* Formats addr as "127.0.0.1:8080" or "[::1]:8080" into buf. */
const char *tw_sockaddr_text(const struct sockaddr *addr, char *buf, size_t len);
/* Formats addr's host part only ("127.0.0.1" or "::1") into buf. */
const char *tw_sockaddr_host_text(const struct sockaddr *addr, char *buf, size_t len);

#endif
