/* handoff.h — moving idle connections between worker processes of two
 * generations over Unix sockets (handoff.c).
 *
 * On a reload the master gives every draining worker one channel to each
 * worker of the new generation (a SOCK_SEQPACKET socketpair, one end to
 * each side, over their control sockets). The old worker offers its idle
 * connections on them: each socket travels with SCM_RIGHTS, in batches,
 * with a small fixed record of the state that must follow it
 * (tw_handoff_conn_t). The new worker adopts each one, or refuses it (full,
 * no such listener, draining), and answers per connection. Only then does
 * the old worker let go of its descriptor; a refusal, a channel that fails
 * or a peer that is gone gives the connection back to it, which falls back
 * to the graceful close. While a socket is between the two processes, what
 * its client sends waits in the kernel's receive buffer: nobody reads it
 * until the adopter does, so no byte is lost either way.
 *
 * This file knows nothing of HTTP: the connection layer fills the record,
 * gets the verdict through a callback, and adopts through another. */
#ifndef TWISTER_HANDOFF_H
#define TWISTER_HANDOFF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "twister/loop.h"

/* Connections per message. SCM_MAX_FD is 253; 64 keeps a message small
 * (about 4 KiB) and a refused batch cheap. */
#define TW_HANDOFF_BATCH 64
/* Batches a sender keeps unanswered per channel: the flow control. */
#define TW_HANDOFF_WINDOW 4

/* What travels with one connection. Both ends are built from the same
 * source, so a fixed layout in host order is enough. Times are relative
 * (the two processes' loop clocks need not agree). */
typedef struct tw_handoff_conn {
    uint32_t id;            /* the sender's token, echoed in the answer */
    int32_t listener_fd;    /* the listening socket it was accepted on: the
                               master's descriptor number, the same in every
                               generation that serves that address */
    uint32_t served;        /* requests completed on it (0: none yet) */
    uint32_t idle_ms;       /* how long it has been idle */
    uint32_t deadline_ms;   /* how long until the old generation would have
                               closed it for idleness (keep-alive or header
                               timeout) */
    uint8_t proxy_pending;  /* its PROXY header has not been read yet */
    uint8_t proxy_listener; /* its listener expects PROXY headers */
    uint8_t pad[2];
    uint32_t peer_len; /* 0: unknown */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer; /* the client (after PROXY, the balancer's client) */
} tw_handoff_conn_t;

typedef struct tw_handoff tw_handoff_t;

/* The sender's verdict on one offered connection, from a loop callback:
 * moved (the peer owns it now; close the local descriptor without a
 * shutdown) or not (it is the caller's again). */
typedef void (*tw_handoff_done_fn)(void *arg, void *token, bool moved);
/* The receiver's adoption of one connection. It takes fd either way:
 * returns 0 if it serves the connection now, -1 if it refused (and closed
 * fd, which closes nothing for the client: the sender still holds it). */
typedef int (*tw_handoff_adopt_fn)(void *arg, int fd, const tw_handoff_conn_t *conn);

/* A handoff endpoint on loop: done gets the verdicts on what this process
 * offers, adopt gets what others offer it (either may be NULL if the
 * process only receives or only sends). Returns NULL on ENOMEM. */
tw_handoff_t *tw_handoff_new(tw_loop_t *loop, tw_handoff_done_fn done, tw_handoff_adopt_fn adopt,
                             void *arg);
/* Frees h and closes its channels. No callback runs: offered connections
 * still unanswered are forgotten (cancel them first if their tokens must
 * not be reused). */
void tw_handoff_free(tw_handoff_t *h);
/* Adds a channel (takes fd): outbound (this process offers on it) or
 * inbound (it adopts what arrives). Returns 0, or -1 with errno (fd is
 * closed). */
int tw_handoff_add_channel(tw_handoff_t *h, int fd, bool outbound);
/* Whether some outbound channel is still usable. */
bool tw_handoff_can_offer(const tw_handoff_t *h);
/* Offers the connection on fd (which stays the caller's until the
 * verdict) with its state; token comes back with the verdict. The batch
 * leaves at the end of the loop iteration, or when full. Returns 0, or -1
 * with errno when nothing can take it (no usable channel, ENOMEM): then
 * no verdict follows. */
int tw_handoff_offer(tw_handoff_t *h, int fd, const tw_handoff_conn_t *conn, void *token);
/* Forgets token: no verdict comes for it (its connection is gone). */
void tw_handoff_cancel(tw_handoff_t *h, void *token);
/* Connections offered and not answered yet. */
size_t tw_handoff_pending(const tw_handoff_t *h);

#endif
