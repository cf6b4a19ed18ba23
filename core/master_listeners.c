/* master_listeners.c — the listening sockets, owned by the master for
 * life.
 *
 * A reload must not rebind what is already bound (connections would be
 * refused in between, and a port dropped to an unprivileged user could not
 * be bound again), so the master keeps one set of listeners across
 * generations and matches a new generation's addresses against it: what
 * it already has is shared, what is new is opened before the fork, and
 * what no live generation uses any more is closed. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "master_internal.h"
#include "twister/log.h"

static int listener_find(master_t *m, const struct sockaddr *a, socklen_t len)
{
    for (size_t i = 0; i < m->listener_count; i++)
        if (tw_sockaddr_equal((struct sockaddr *)&m->listeners[i].addr, m->listeners[i].len, a,
                              len))
            return (int)i;
    return -1;
}

/* Opens the listeners g needs that are not open yet and fills g's fds. New
 * ones are opened before the generation forks; nothing is rebound. */
int tw_master_open_listeners(master_t *m, tw_generation_t *g, char *err, size_t errlen)
{
    size_t n = tw_generation_listener_count(g);
    g->listen_fds = calloc(n ? n : 1, sizeof(int));
    if (!g->listen_fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        socklen_t len;
        const struct sockaddr *a = tw_generation_listener(g, i, &len);
        int idx = listener_find(m, a, len);
        if (idx < 0) {
            int fd = tw_listener_open(a, len, tw_generation_backlog(g), err, errlen);
            if (fd < 0)
                return -1;
            listener_t *grown = realloc(m->listeners, (m->listener_count + 1) * sizeof *grown);
            if (!grown) {
                close(fd);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            m->listeners = grown;
            listener_t *l = &m->listeners[m->listener_count];
            memset(l, 0, sizeof *l);
            memcpy(&l->addr, a, len);
            l->len = len;
            l->fd = fd;
            idx = (int)m->listener_count++;
            char text[80];
            tw_log_info("listening on %s", tw_sockaddr_text(a, text, sizeof text));
        }
        g->listen_fds[i] = m->listeners[idx].fd;
    }
    return 0;
}

bool tw_master_generation_uses_fd(const gen_t *ge, int fd)
{
    if (!ge)
        return false;
    size_t n = tw_generation_listener_count(ge->g);
    for (size_t i = 0; i < n; i++)
        if (ge->g->listen_fds && ge->g->listen_fds[i] == fd)
            return true;
    return false;
}

/* Closes listeners that no live generation uses any more. */
void tw_master_close_unused_listeners(master_t *m)
{
    for (size_t i = 0; i < m->listener_count;) {
        int fd = m->listeners[i].fd;
        bool used = tw_master_generation_uses_fd(m->serving, fd) ||
                    tw_master_generation_uses_fd(m->starting, fd);
        for (gen_t *d = m->draining; d && !used; d = d->next)
            used = tw_master_generation_uses_fd(d, fd);
        if (used) {
            i++;
            continue;
        }
        char text[80];
        tw_log_info("closing listener %s (no longer configured)",
                    tw_sockaddr_text((struct sockaddr *)&m->listeners[i].addr, text, sizeof text));
        close(fd);
        m->listeners[i] = m->listeners[--m->listener_count];
    }
}
