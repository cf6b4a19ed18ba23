/* handoff.c — the channels that move idle connections from a draining
 * worker to the workers of the new generation (see handoff.h).
 *
 * Wire format, one SOCK_SEQPACKET message each (both ends run the same
 * build, so host order and a fixed layout are enough):
 *   OFFER   head + count tw_handoff_conn_t, and the count sockets as one
 *           SCM_RIGHTS array in the same order
 *   ANSWER  head + count uint32_t: an offered id, with ANSWER_ADOPTED set
 *           if the receiver took it
 * A sender keeps at most TW_HANDOFF_WINDOW offers unanswered per channel,
 * so answers (small, and read as they come) can never fill the channel
 * the other way. The receiver answers every offer: a socket it cannot
 * take (full, an unknown listener, a truncated control message) is closed
 * on its side and refused, and stays the sender's, which never closed its
 * own descriptor.
 *
 * Offered connections wait in a FIFO; a deferred callback sends them at
 * the end of the loop iteration in batches, round-robin over the
 * channels that have room in their window, so one draining worker spreads
 * its connections over every new worker. A channel that fails (the peer
 * died, a send error) gives its unanswered connections back with a "not
 * moved" verdict; queued ones go to the other channels, or back too when
 * none is left. */
#include "handoff.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define MSG_MAGIC 0x54574831u /* "TWH1" */
#define KIND_OFFER 1u
#define KIND_ANSWER 2u
#define ANSWER_ADOPTED 0x80000000u
/* Offers read per wake-up on one inbound channel, so a flood of them
 * cannot starve the receiver's own connections. */
#define RECV_BATCHES 8
/* After EAGAIN with nothing in flight (no answer will wake the sender). */
#define RETRY_MS 10

typedef struct {
    uint32_t magic;
    uint32_t kind;
    uint32_t count;
    uint32_t reserved;
} msg_head_t;

typedef struct {
    void *token;   /* NULL: free, or cancelled while in flight */
    int fd;        /* the caller's descriptor, offered */
    int channel;   /* in flight on this channel; -1: queued */
    uint32_t next; /* the queue or the free list */
    bool used;
    tw_handoff_conn_t conn;
} item_t;

typedef struct {
    int fd; /* -1: dead */
    bool outbound;
    unsigned inflight; /* offers unanswered */
    tw_handoff_t *h;
} channel_t;

#define NONE UINT32_MAX

struct tw_handoff {
    tw_loop_t *loop;
    tw_handoff_done_fn done;
    tw_handoff_adopt_fn adopt;
    void *arg;
    channel_t **channels;
    size_t channel_count;
    size_t next_channel; /* round robin */
    item_t *items;       /* slots; an item's id is its index */
    uint32_t item_cap;
    uint32_t free_head;
    uint32_t queue_head, queue_tail;
    size_t pending; /* items in use (queued or in flight) */
    tw_loop_deferred_t flush_node;
    tw_timer_t retry_timer;
    unsigned depth; /* callbacks on the stack (a verdict may offer again) */
};

static void flush_cb(tw_loop_t *loop, void *arg);
static void retry_cb(tw_loop_t *loop, tw_timer_t *t, void *arg);
static void channel_readable(tw_loop_t *loop, int fd, unsigned events, void *arg);

tw_handoff_t *tw_handoff_new(tw_loop_t *loop, tw_handoff_done_fn done, tw_handoff_adopt_fn adopt,
                             void *arg)
{
    tw_handoff_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->loop = loop;
    h->done = done;
    h->adopt = adopt;
    h->arg = arg;
    h->free_head = h->queue_head = h->queue_tail = NONE;
    tw_loop_deferred_init(&h->flush_node, flush_cb, h);
    tw_timer_init(&h->retry_timer, retry_cb, h);
    return h;
}

static void channel_close(channel_t *ch)
{
    if (ch->fd >= 0) {
        tw_loop_unwatch(ch->h->loop, ch->fd);
        close(ch->fd);
        ch->fd = -1;
    }
}

void tw_handoff_free(tw_handoff_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->channel_count; i++) {
        channel_close(h->channels[i]);
        free(h->channels[i]);
    }
    free(h->channels);
    free(h->items);
    tw_loop_defer_cancel(h->loop, &h->flush_node);
    tw_timer_stop(h->loop, &h->retry_timer);
    free(h);
}

int tw_handoff_add_channel(tw_handoff_t *h, int fd, bool outbound)
{
    channel_t **list = realloc(h->channels, (h->channel_count + 1) * sizeof *list);
    channel_t *ch = list ? calloc(1, sizeof *ch) : NULL;
    if (list)
        h->channels = list;
    if (!ch) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    ch->fd = fd;
    ch->outbound = outbound;
    ch->h = h;
    if (tw_loop_watch(h->loop, fd, TW_EV_READ, channel_readable, ch) != 0) {
        int e = errno;
        close(fd);
        free(ch);
        errno = e;
        return -1;
    }
    h->channels[h->channel_count++] = ch;
    if (outbound && h->queue_head != NONE)
        tw_loop_defer(h->loop, &h->flush_node);
    return 0;
}

bool tw_handoff_can_offer(const tw_handoff_t *h)
{
    for (size_t i = 0; h && i < h->channel_count; i++)
        if (h->channels[i]->outbound && h->channels[i]->fd >= 0)
            return true;
    return false;
}

size_t tw_handoff_pending(const tw_handoff_t *h)
{
    return h ? h->pending : 0;
}

/* ---- the item slots ---------------------------------------------------------- */

static uint32_t item_alloc(tw_handoff_t *h)
{
    if (h->free_head == NONE) {
        uint32_t cap = h->item_cap ? h->item_cap * 2 : 256;
        if (cap > ANSWER_ADOPTED)
            return NONE;
        item_t *items = realloc(h->items, cap * sizeof *items);
        if (!items)
            return NONE;
        h->items = items;
        for (uint32_t i = cap; i-- > h->item_cap;) {
            items[i].used = false;
            items[i].next = h->free_head;
            h->free_head = i;
        }
        h->item_cap = cap;
    }
    uint32_t id = h->free_head;
    h->free_head = h->items[id].next;
    h->items[id].used = true;
    h->items[id].next = NONE;
    h->pending++;
    return id;
}

static void item_release(tw_handoff_t *h, uint32_t id)
{
    item_t *it = &h->items[id];
    it->used = false;
    it->token = NULL;
    it->next = h->free_head;
    h->free_head = id;
    h->pending--;
}

/* Gives an item its verdict and frees its slot. */
static void item_finish(tw_handoff_t *h, uint32_t id, bool moved)
{
    void *token = h->items[id].token;
    item_release(h, id);
    if (token && h->done)
        h->done(h->arg, token, moved);
}

static void queue_push(tw_handoff_t *h, uint32_t id)
{
    h->items[id].channel = -1;
    h->items[id].next = NONE;
    if (h->queue_tail == NONE)
        h->queue_head = id;
    else
        h->items[h->queue_tail].next = id;
    h->queue_tail = id;
}

int tw_handoff_offer(tw_handoff_t *h, int fd, const tw_handoff_conn_t *conn, void *token)
{
    if (!tw_handoff_can_offer(h)) {
        errno = EPIPE;
        return -1;
    }
    uint32_t id = item_alloc(h);
    if (id == NONE) {
        errno = ENOMEM;
        return -1;
    }
    item_t *it = &h->items[id];
    it->token = token;
    it->fd = fd;
    it->conn = *conn;
    it->conn.id = id;
    queue_push(h, id);
    tw_loop_defer(h->loop, &h->flush_node);
    return 0;
}

void tw_handoff_cancel(tw_handoff_t *h, void *token)
{
    if (!h || !token)
        return;
    for (uint32_t i = 0; i < h->item_cap; i++) {
        if (h->items[i].used && h->items[i].token == token) {
            h->items[i].token = NULL; /* the slot goes with its answer */
            if (h->items[i].channel < 0)
                h->items[i].fd = -1; /* queued: sent as a hole, refused */
        }
    }
}

/* ---- sending -------------------------------------------------------------------- */

/* A channel failed: its unanswered items get "not moved"; the queue goes
 * to the other channels. */
static void channel_fail(tw_handoff_t *h, channel_t *ch, size_t index)
{
    channel_close(ch);
    ch->inflight = 0;
    for (uint32_t i = 0; i < h->item_cap; i++)
        if (h->items[i].used && h->items[i].channel == (int)index)
            item_finish(h, i, false);
    if (h->queue_head != NONE)
        tw_loop_defer(h->loop, &h->flush_node);
}

/* Sends up to TW_HANDOFF_BATCH queued items on ch. Returns 0, 1 on
 * EAGAIN, -1 when the channel failed. */
static int send_batch(tw_handoff_t *h, channel_t *ch, size_t index)
{
    struct {
        msg_head_t head;
        tw_handoff_conn_t conns[TW_HANDOFF_BATCH];
    } msg;
    int fds[TW_HANDOFF_BATCH];
    uint32_t ids[TW_HANDOFF_BATCH];
    uint32_t n = 0, nfds = 0;
    for (uint32_t id = h->queue_head; id != NONE && n < TW_HANDOFF_BATCH; id = h->items[id].next) {
        item_t *it = &h->items[id];
        ids[n] = id;
        msg.conns[n] = it->conn;
        if (it->fd < 0) {
            /* Cancelled while queued: no socket; the receiver refuses it. */
            msg.conns[n].listener_fd = -1;
        }
        n++;
    }
    /* The sockets go in order; a hole (cancelled) must not shift the rest,
     * so a batch with holes stops before the first one and the hole is
     * answered locally. */
    uint32_t sendable = 0;
    while (sendable < n && h->items[ids[sendable]].fd >= 0) {
        fds[nfds++] = h->items[ids[sendable]].fd;
        sendable++;
    }
    if (sendable == 0) {
        /* The head of the queue is a hole: drop it. */
        uint32_t id = h->queue_head;
        h->queue_head = h->items[id].next;
        if (h->queue_head == NONE)
            h->queue_tail = NONE;
        item_finish(h, id, false);
        return 0;
    }
    n = sendable;
    msg.head = (msg_head_t){.magic = MSG_MAGIC, .kind = KIND_OFFER, .count = n};
    struct iovec iov = {.iov_base = &msg, .iov_len = sizeof msg.head + n * sizeof msg.conns[0]};
    union {
        char buf[CMSG_SPACE(sizeof(int) * TW_HANDOFF_BATCH)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    ssize_t rc;
    do
        rc = sendmsg(ch->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 1;
        return -1;
    }
    /* Off the queue, in flight on this channel. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = h->queue_head;
        h->queue_head = h->items[id].next;
        h->items[id].channel = (int)index;
        h->items[id].next = NONE;
    }
    if (h->queue_head == NONE)
        h->queue_tail = NONE;
    ch->inflight++;
    return 0;
}

static void flush(tw_handoff_t *h)
{
    bool again = false;
    while (h->queue_head != NONE) {
        /* The next channel (round robin) with room in its window. */
        channel_t *ch = NULL;
        size_t index = 0;
        bool usable = false;
        for (size_t k = 0; k < h->channel_count; k++) {
            size_t i = (h->next_channel + k) % h->channel_count;
            channel_t *c = h->channels[i];
            if (!c->outbound || c->fd < 0)
                continue;
            usable = true;
            if (c->inflight < TW_HANDOFF_WINDOW) {
                ch = c;
                index = i;
                break;
            }
        }
        if (!usable) {
            /* Nobody left to take them: every queued one goes back. */
            while (h->queue_head != NONE) {
                uint32_t id = h->queue_head;
                h->queue_head = h->items[id].next;
                if (h->queue_head == NONE)
                    h->queue_tail = NONE;
                item_finish(h, id, false);
            }
            return;
        }
        if (!ch)
            return; /* every window is full: an answer calls flush again */
        h->next_channel = (index + 1) % h->channel_count;
        int rc = send_batch(h, ch, index);
        if (rc < 0) {
            channel_fail(h, ch, index);
        } else if (rc > 0) {
            if (ch->inflight == 0)
                again = true;
            break;
        }
    }
    if (again && !tw_timer_active(&h->retry_timer))
        tw_timer_start(h->loop, &h->retry_timer, RETRY_MS);
}

static void flush_cb(tw_loop_t *loop, void *arg)
{
    (void)loop;
    flush(arg);
}

static void retry_cb(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    (void)loop;
    (void)t;
    flush(arg);
}

/* ---- receiving ------------------------------------------------------------------- */

/* An inbound offer: adopt or refuse each socket, answer. */
static int on_offer(tw_handoff_t *h, channel_t *ch, const msg_head_t *head, const char *body,
                    size_t body_len, const int *fds, size_t nfds)
{
    uint32_t count = head->count;
    if (count > TW_HANDOFF_BATCH || body_len < count * sizeof(tw_handoff_conn_t))
        count = 0; /* malformed: refuse what came (the fds are closed below) */
    struct {
        msg_head_t head;
        uint32_t ids[TW_HANDOFF_BATCH];
    } answer = {.head = {.magic = MSG_MAGIC, .kind = KIND_ANSWER, .count = count}};
    for (uint32_t i = 0; i < count; i++) {
        tw_handoff_conn_t conn;
        memcpy(&conn, body + i * sizeof conn, sizeof conn);
        int fd = i < nfds ? fds[i] : -1;
        bool adopted = false;
        /* A refused socket is closed here or by adopt: the sender still
         * holds it, so that closes nothing for the client. */
        if (fd >= 0 && conn.listener_fd >= 0 && h->adopt)
            adopted = h->adopt(h->arg, fd, &conn) == 0;
        else if (fd >= 0)
            close(fd);
        answer.ids[i] = conn.id | (adopted ? ANSWER_ADOPTED : 0);
    }
    for (size_t i = count; i < nfds; i++)
        close(fds[i]);
    if (count == 0)
        return 0;
    size_t len = sizeof answer.head + count * sizeof answer.ids[0];
    /* The answer must get through: a sender that never hears that we took
     * a connection would give it back to its own reading, and two
     * processes would read one socket. The window keeps at most
     * TW_HANDOFF_WINDOW small answers unread, far below the socket's
     * buffer, so this does not wait in practice; the wait is bounded all
     * the same. A send that fails means the sender is gone: then nobody
     * else reads what we adopted (its descriptors closed with it). */
    ssize_t rc;
    for (int tries = 0; tries < 100; tries++) {
        rc = send(ch->fd, &answer, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (rc >= 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK &&
                        errno != ENOBUFS && errno != ENOMEM))
            break;
        if (errno != EINTR) {
            struct pollfd p = {.fd = ch->fd, .events = POLLOUT};
            poll(&p, 1, 10);
        }
    }
    return rc == (ssize_t)len ? 0 : -1;
}

/* An answer to our offers. */
static void on_answer(tw_handoff_t *h, channel_t *ch, const msg_head_t *head, const char *body,
                      size_t body_len)
{
    uint32_t count = head->count;
    if (body_len < count * sizeof(uint32_t))
        return;
    if (ch->inflight > 0)
        ch->inflight--;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t v;
        memcpy(&v, body + i * sizeof v, sizeof v);
        uint32_t id = v & ~ANSWER_ADOPTED;
        if (id < h->item_cap && h->items[id].used && h->items[id].channel >= 0)
            item_finish(h, id, (v & ANSWER_ADOPTED) != 0);
    }
}

static void channel_readable(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    channel_t *ch = arg;
    tw_handoff_t *h = ch->h;
    (void)loop;
    (void)events;
    size_t index = 0;
    while (index < h->channel_count && h->channels[index] != ch)
        index++;
    for (int round = 0; round < RECV_BATCHES && ch->fd == fd; round++) {
        struct {
            msg_head_t head;
            tw_handoff_conn_t conns[TW_HANDOFF_BATCH];
        } msg;
        union {
            char buf[CMSG_SPACE(sizeof(int) * TW_HANDOFF_BATCH)];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = &msg, .iov_len = sizeof msg};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n;
        do
            n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        int fds[TW_HANDOFF_BATCH];
        size_t nfds = 0;
        for (struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm;
             cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int got;
                memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
                if (nfds < TW_HANDOFF_BATCH)
                    fds[nfds++] = got;
                else
                    close(got);
            }
        }
        if (n <= 0) {
            /* The peer is gone (or the channel broke). */
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
            if (ch->outbound)
                channel_fail(h, ch, index);
            else
                channel_close(ch);
            return;
        }
        const msg_head_t *head = &msg.head;
        const char *body = (const char *)msg.conns;
        size_t body_len = (size_t)n > sizeof *head ? (size_t)n - sizeof *head : 0;
        if ((size_t)n < sizeof *head || head->magic != MSG_MAGIC) {
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
            continue;
        }
        h->depth++;
        if (head->kind == KIND_OFFER && !ch->outbound) {
            if (on_offer(h, ch, head, body, body_len, fds, nfds) != 0)
                channel_close(ch);
        } else {
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
            if (head->kind == KIND_ANSWER && ch->outbound)
                on_answer(h, ch, head, body, body_len);
        }
        h->depth--;
    }
    if (h->queue_head != NONE)
        flush(h);
}
