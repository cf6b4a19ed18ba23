/* stream.c — IOStream: a non-blocking socket with a read buffer and a write
 * queue, after Tornado's IOStream. This is the server's hot path.
 *
 * Callbacks and re-entrancy. Every user callback (read, write completion,
 * drain, release, close) runs from a dispatcher that holds `depth` > 0;
 * API calls made meanwhile only record what they want (a new read, a
 * completion to report) and the dispatcher loops over it after the
 * callback returns — a trampoline, so 16 pipelined requests neither recurse
 * 16 deep nor take 16 loop iterations. An API call made from outside the
 * stream's callbacks that has something to report queues one deferred loop
 * callback for it. So a callback never runs inside the call that caused it,
 * and the stream struct is freed only from its own deferred callback, after
 * the close callback, when nothing up the stack can still be using it.
 * The deferred callback is a node embedded in the stream (internal.h), so
 * queuing it never allocates: a close always completes.
 *
 * Memory. An idle stream is this struct alone (kept small: 32-bit sizes
 * and offsets). The read buffer holds unread bytes in rbuf[rpos, rend). It
 * is allocated on first use at 4 KiB, grows (doubling, up to
 * max_buffer_size) only when a read needs more room than compaction can
 * give, and tw_stream_shrink frees it once empty (a read that finds
 * nothing frees an empty 4 KiB one at once). The output buffer goes back
 * as soon as everything in it is written, the record ring as soon as it
 * is empty. 4 KiB buffers, the ring and the struct itself come from the
 * per-thread block cache (internal.h), so taking them again per request
 * is a free-list pop, not malloc. The read size adapts: it starts at
 * 4 KiB and doubles (up to read_chunk_size) while reads come back full.
 * Reads use recv(2) (read(2) only for a non-socket).
 *
 * EPOLLIN stays armed whenever reading is allowed and the buffer is not
 * full, whether or not a read is pending: a readable event with no read
 * pending reads ahead into the buffer (once per event, bounded by
 * max_buffer_size), which is also how a peer closing an idle connection is
 * noticed. In exchange a keep-alive connection costs no epoll_ctl per
 * request: the mask only changes for back-pressure, pauses and full
 * buffers. A read that returns less than asked means the socket is
 * drained (stream sockets fill reads while data is queued), so we wait for
 * EPOLLIN instead of paying for a read(2) that returns EAGAIN. A socket
 * adopted right after accept (tw_stream_adopt) is read once before epoll
 * hears of it: its request has usually arrived with the handshake, and a
 * connection answered at once then costs no epoll_ctl at all.
 *
 * Peer EOF: a pending read is satisfied from the buffer if it can be;
 * otherwise it gets TW_STREAM_EOF (read_until_close gets OK). Then the
 * stream closes — after flushing what is queued, so the response to a
 * request followed by a half-close still goes out. With no read pending,
 * EOF closes the stream at once if nothing is buffered; bytes still
 * buffered are kept for the next read, which then sees the EOF.
 *
 * Writing. A write with nothing queued goes straight to send(2); what the
 * kernel does not take is queued. Queued records are copies (coalesced in
 * one contiguous output buffer, adjacent copies merged into one record),
 * caller-owned references, or file ranges. A flush sends consecutive
 * memory records with one sendmsg (send for one) and file ranges with
 * sendfile(2), always with MSG_NOSIGNAL (and MSG_MORE once the stream
 * closes after the write, so that the close sends the last segment with
 * the FIN). EPOLLOUT is armed only while the kernel refuses bytes. The
 * record queue is a ring; neither it nor the output buffer costs a malloc
 * per write in steady state. */
#include "twister/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "stream_transport.h"
#include "twister/log.h"

#define RBUF_INITIAL 4096            /* first read buffer, and first read size */
#define WBUF_INITIAL 4096            /* first output buffer */
#define WQ_INITIAL 8                 /* first write-record ring */
#define IOV_BATCH 64                 /* iovecs per sendmsg */
#define FILLS_PER_DISPATCH 64        /* read(2) calls before yielding to other fds */
#define SENDFILE_MAX (1u << 30)      /* bytes per sendfile call */
#define DELIM_INLINE 8               /* delimiters up to this long are not malloced */
#define STREAM_BUFFER_MAX (1u << 30) /* max_buffer_size and read_chunk_size are capped here */
#define WBUF_MAX (UINT32_MAX / 2)    /* the output buffer never grows past this */

typedef enum {
    RD_NONE,
    RD_UNTIL,
    RD_BYTES,
    RD_CLOSE,
    RD_SOME
} rd_kind_t;
typedef enum {
    WR_BUF,
    WR_REF,
    WR_FILE
} wr_kind_t;

/* One queued write. BUF records hold no pointer: their bytes are the output
 * buffer's unwritten bytes, in record order. */
typedef struct {
    size_t len; /* bytes still to write */
    union {
        const char *ptr; /* REF: next byte to write */
        off_t off;       /* FILE: next offset */
    } u;
    const void *base; /* REF: what release gets */
    int file_fd;      /* FILE: owned, closed when done */
    uint8_t kind;     /* wr_kind_t */
    tw_stream_write_cb cb;
    void *cb_arg;
    tw_stream_release_fn release;
    void *release_arg;
} wrec_t;

/* Sizes and offsets are 32-bit: the read buffer is capped at
 * STREAM_BUFFER_MAX and the output buffer refuses to grow past
 * WBUF_MAX, which keeps the struct (the whole cost of an idle connection
 * on this side) small. */
typedef struct {
    uint32_t max_buffer_size, read_chunk_size, write_high_water, write_low_water;
} stream_opt_t;

struct tw_stream {
    tw_loop_t *loop;
    char *rbuf; /* unread bytes: rbuf[rpos, rend) */
    char *wbuf; /* unwritten copies: wbuf[wpos, wend) */
    wrec_t *wq; /* ring, wq_cap a power of two */
    union {
        tw_stream_read_cb read;
        tw_stream_data_cb data;
    } rcb;
    void *rarg;
    union {
        char *ptr; /* dlen > DELIM_INLINE: malloced */
        char buf[DELIM_INLINE];
    } delim;
    size_t rlimit; /* UNTIL: max bytes incl. delimiter; BYTES: n */
    size_t queued; /* unwritten bytes */
    tw_stream_close_cb close_cb;
    void *close_arg;
    tw_stream_drain_cb drain_cb;
    void *drain_arg;
    tw_stream_t **tie; /* cleared at teardown: the owner's pointer (stream_connect.c) */

    int fd;
    int error;
    unsigned depth; /* dispatchers running on the stack */
    unsigned cork;  /* tw_stream_cork nesting */
    stream_opt_t opt;

    /* read side */
    uint32_t rcap, rpos, rend;
    uint32_t rhint;     /* next read(2) size */
    uint32_t scanned;   /* UNTIL: buffered bytes already searched */
    uint32_t offered;   /* SOME: buffered bytes already offered */
    uint32_t delivered; /* bytes handed to the read callback running now */
    uint32_t dlen;      /* UNTIL: delimiter length */

    /* write side */
    uint32_t wcap, wpos, wend;
    uint32_t wq_cap, wq_head, wq_len;
    uint32_t wq_done; /* records at the head fully written, callbacks not yet run */

    uint8_t rkind;                 /* rd_kind_t */
    bool rpartial;                 /* BYTES */
    bool closed;                   /* fd closed, teardown queued */
    bool close_after_write;        /* closing once the queue drains */
    bool eof;                      /* read(2) returned 0 */
    bool rd_failed;                /* read(2) failed (error holds errno) */
    bool user_paused;              /* tw_stream_pause_reading */
    bool bp_paused;                /* more than write_high_water queued */
    bool readable;                 /* socket may hold unread bytes */
    bool want_out;                 /* the kernel refused bytes: waiting for EPOLLOUT */
    bool deferred;                 /* stream_on_deferred is queued */
    tw_loop_deferred_t defer_node; /* its queue entry: deferring cannot fail */
    bool drain_wanted;             /* a write returned 1: drain callback owed */
    bool drain_due;                /* ...and the queue is now under low water */
    bool delivering;               /* a read callback holds a pointer into rbuf */
    bool shrink_wanted;            /* tw_stream_shrink called while delivering */
    bool probing;                  /* adopted: the first read comes before any EPOLLIN */
    bool not_socket;               /* recv(2) said ENOTSOCK: read(2) it is */
    bool nodelay_wanted;           /* TCP_NODELAY before the second write */
    bool wrote_once;               /* ...and the first write has been made */

    /* What the stream reads and writes through (TLS), or NULL: the socket. */
    const tw_stream_transport_t *tp;
    void *tp_ctx;
};

static const char empty_data[1] = "";

/* Before every write system call: TCP_NODELAY once a second write comes
 * (tw_stream_nodelay_when_needed). */
static inline void before_write(tw_stream_t *s)
{
    if (!s->nodelay_wanted)
        return;
    if (!s->wrote_once) {
        s->wrote_once = true;
        return;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->nodelay_wanted = false;
}

void tw_stream_nodelay_when_needed(tw_stream_t *s)
{
    s->nodelay_wanted = true;
}

static void stream_on_deferred(tw_loop_t *loop, void *arg);
static void stream_on_io(tw_loop_t *loop, int fd, unsigned events, void *arg);

void tw_stream_options_default(tw_stream_options_t *opts)
{
    opts->max_buffer_size = 64 * 1024;
    opts->read_chunk_size = 16 * 1024;
    opts->write_high_water = 256 * 1024;
    opts->write_low_water = 64 * 1024;
}

/* ---- small helpers -------------------------------------------------------------- */

static inline size_t rbuffered(const tw_stream_t *s)
{
    return s->rend - s->rpos;
}

static inline wrec_t *wq_at(const tw_stream_t *s, size_t i)
{
    return &s->wq[(s->wq_head + i) & (s->wq_cap - 1)];
}

static inline bool reading_allowed(const tw_stream_t *s)
{
    return !s->closed && !s->close_after_write && !s->eof && !s->rd_failed && !s->user_paused &&
           !s->bp_paused;
}

static inline const char *delim_bytes(const tw_stream_t *s)
{
    return s->dlen > DELIM_INLINE ? s->delim.ptr : s->delim.buf;
}

static void read_clear(tw_stream_t *s)
{
    if (s->dlen > DELIM_INLINE)
        free(s->delim.ptr);
    s->dlen = 0;
    s->rkind = RD_NONE;
}

/* ---- buffers: standard sizes go through the block cache -------------------------- */

static void buf_release(void *p, size_t cap, size_t standard)
{
    if (cap == standard)
        tw_block_free(p, cap);
    else
        free(p);
}

static void rbuf_release(tw_stream_t *s)
{
    buf_release(s->rbuf, s->rcap, RBUF_INITIAL);
    s->rbuf = NULL;
    s->rcap = s->rpos = s->rend = 0;
}

/* The output buffer goes back as soon as it holds nothing unwritten, the
 * record ring as soon as it is empty: an idle stream holds neither. */
static void wbuf_release(tw_stream_t *s)
{
    buf_release(s->wbuf, s->wcap, WBUF_INITIAL);
    s->wbuf = NULL;
    s->wcap = s->wpos = s->wend = 0;
}

static void wq_release(tw_stream_t *s)
{
    buf_release(s->wq, s->wq_cap * sizeof(wrec_t), WQ_INITIAL * sizeof(wrec_t));
    s->wq = NULL;
    s->wq_cap = s->wq_head = 0;
}

static void stream_defer(tw_stream_t *s)
{
    if (s->deferred)
        return;
    tw_loop_defer(s->loop, &s->defer_node);
    s->deferred = true;
}

static void stream_update_events(tw_stream_t *s)
{
    if (s->closed)
        return;
    unsigned m = 0;
    if (reading_allowed(s) && rbuffered(s) < s->opt.max_buffer_size &&
        !(s->probing && s->deferred)) /* the queued dispatch reads first */
        m |= TW_EV_READ;
    if (s->want_out && s->cork == 0)
        m |= TW_EV_WRITE;
    if (s->tp)
        m |= s->tp->events(s->tp_ctx);
    if (tw_loop_set_events(s->loop, s->fd, m) < 0) {
        /* epoll_ctl failed (ENOMEM, ENOSPC): we could wait forever. */
        int e = errno;
        tw_log_error("stream: cannot update epoll for fd %d: %s", s->fd, strerror(e));
        if (!s->error)
            s->error = e;
        tw_stream_close(s);
    }
}

/* True if the dispatcher has something to do without waiting for the
 * socket. Errs on the side of true: a spare dispatch finds nothing. */
static bool stream_has_work(const tw_stream_t *s)
{
    if (s->wq_done > 0 || s->drain_due)
        return true;
    if (s->close_after_write)
        return s->wq_len == 0;
    if (s->rkind == RD_NONE)
        return false;
    return rbuffered(s) > 0 || s->eof || s->rd_failed || (s->readable && reading_allowed(s)) ||
           (s->rkind == RD_BYTES && !s->rpartial && s->rlimit > s->opt.max_buffer_size);
}

/* Called at the end of every API call: inside a callback the running
 * dispatcher takes over; outside, queue a dispatch if there is work and
 * bring the epoll mask up to date. */
static void stream_settle(tw_stream_t *s)
{
    if (s->depth > 0 || s->closed)
        return;
    if (stream_has_work(s))
        stream_defer(s);
    stream_update_events(s);
}

static void stream_fail(tw_stream_t *s, int err)
{
    if (!s->error)
        s->error = err;
    tw_stream_close(s);
}

/* ---- creation ---------------------------------------------------------------------- */

static uint32_t clamp_u32(size_t v, uint32_t max)
{
    return v > max ? max : (uint32_t)v;
}

static tw_stream_t *stream_create(tw_loop_t *loop, int fd, const tw_stream_options_t *opts,
                                  bool set_nonblock)
{
    /* The struct comes from the block cache: a connection per request
     * (Connection: close) pays no malloc for it in steady state. */
    tw_stream_t *s = tw_block_alloc(sizeof *s);
    if (!s) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    memset(s, 0, sizeof *s);
    tw_loop_deferred_init(&s->defer_node, stream_on_deferred, s);
    tw_stream_options_t o;
    tw_stream_options_default(&o);
    if (opts) {
        if (opts->max_buffer_size)
            o.max_buffer_size = opts->max_buffer_size;
        if (opts->read_chunk_size)
            o.read_chunk_size = opts->read_chunk_size;
        if (opts->write_high_water)
            o.write_high_water = opts->write_high_water;
        if (opts->write_low_water)
            o.write_low_water = opts->write_low_water;
    }
    s->opt.max_buffer_size = clamp_u32(o.max_buffer_size, STREAM_BUFFER_MAX);
    s->opt.read_chunk_size = clamp_u32(o.read_chunk_size, s->opt.max_buffer_size);
    s->opt.write_high_water = clamp_u32(o.write_high_water, UINT32_MAX);
    s->opt.write_low_water = clamp_u32(o.write_low_water, s->opt.write_high_water);
    s->rhint = s->opt.read_chunk_size < RBUF_INITIAL ? s->opt.read_chunk_size : RBUF_INITIAL;
    s->loop = loop;
    s->fd = fd;

    if (set_nonblock) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
            goto fail;
        /* Armed from the start: see "EPOLLIN stays armed" above. */
        if (tw_loop_watch(loop, fd, TW_EV_READ, stream_on_io, s) < 0)
            goto fail;
        return s;
    }
    /* A freshly accepted socket: its request has often arrived already, so
     * the first dispatch reads before epoll hears of the fd; only if that
     * read finds nothing is EPOLLIN armed. A connection answered at once
     * (Connection: close) costs no epoll_ctl at all. */
    if (tw_loop_watch(loop, fd, 0, stream_on_io, s) < 0)
        goto fail;
    s->readable = true;
    s->probing = true;
    stream_defer(s);
    return s;
fail:;
    int e = errno;
    close(fd);
    tw_block_free(s, sizeof *s);
    errno = e;
    return NULL;
}

tw_stream_t *tw_stream_new(tw_loop_t *loop, int fd, const tw_stream_options_t *opts)
{
    return stream_create(loop, fd, opts, true);
}

tw_stream_t *tw_stream_adopt(tw_loop_t *loop, int fd, const tw_stream_options_t *opts)
{
    return stream_create(loop, fd, opts, false);
}

/* ---- the read buffer ------------------------------------------------------------------ */

/* Makes room for `need` bytes in all (unread + new), keeping the unread
 * ones. Copies only the unread bytes. */
static int rbuf_grow(tw_stream_t *s, size_t need)
{
    size_t avail = rbuffered(s);
    size_t cap = s->rcap ? s->rcap : RBUF_INITIAL;
    while (cap < need)
        cap *= 2;
    if (cap > s->opt.max_buffer_size)
        cap = s->opt.max_buffer_size > need ? s->opt.max_buffer_size : need;
    char *b;
    if (!s->rbuf) {
        b = tw_block_alloc(cap);
        if (!b)
            return -1;
    } else if (s->rpos == 0 && s->rcap != RBUF_INITIAL) {
        b = realloc(s->rbuf, cap);
        if (!b)
            return -1;
    } else {
        b = malloc(cap);
        if (!b)
            return -1;
        memcpy(b, s->rbuf + s->rpos, avail);
        rbuf_release(s);
    }
    s->rbuf = b;
    s->rcap = (uint32_t)cap;
    s->rpos = 0;
    s->rend = (uint32_t)avail;
    return 0;
}

enum {
    FILL_OK,
    FILL_AGAIN,
    FILL_EOF,
    FILL_ERR,
    FILL_FULL
};

/* One read(2) into the buffer. */
static int stream_fill(tw_stream_t *s)
{
    size_t avail = rbuffered(s);
    size_t room = s->opt.max_buffer_size - avail;
    if (room == 0)
        return FILL_FULL;
    size_t want = s->rhint;
    /* A known-length read may ask for all it still needs at once. */
    if (s->rkind == RD_BYTES && s->rlimit > avail && s->rlimit - avail > want)
        want = s->rlimit - avail;
    if (want > s->opt.read_chunk_size)
        want = s->opt.read_chunk_size;
    if (want > room)
        want = room;
    if (s->rcap - s->rend < want) {
        if (s->rpos > 0 && s->rcap - avail >= want && avail <= s->rcap / 2) {
            memmove(s->rbuf, s->rbuf + s->rpos, avail);
            s->rpos = 0;
            s->rend = avail;
        } else if (rbuf_grow(s, avail + want) < 0) {
            if (s->rcap == s->rend) {
                s->error = ENOMEM;
                s->rd_failed = true;
                return FILL_ERR;
            }
            want = s->rcap - s->rend; /* make do with what we have */
        }
    }
    ssize_t n;
    s->probing = false;
    /* recv, not read: a socket's read(2) goes through the VFS layers for
     * nothing. A stream on something else (a pipe) falls back to read. */
    if (s->tp)
        n = s->tp->recv(s->tp_ctx, s->rbuf + s->rend, want);
    else
        do
            n = s->not_socket ? read(s->fd, s->rbuf + s->rend, want)
                              : recv(s->fd, s->rbuf + s->rend, want, 0);
        while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ENOTSOCK && !s->not_socket) {
        s->not_socket = true;
        do
            n = read(s->fd, s->rbuf + s->rend, want);
        while (n < 0 && errno == EINTR);
    }
    if (n > 0) {
        s->rend += (uint32_t)n;
        if ((size_t)n == want) {
            if (s->rhint < s->opt.read_chunk_size)
                s->rhint =
                    s->rhint * 2 < s->opt.read_chunk_size ? s->rhint * 2 : s->opt.read_chunk_size;
        } else if (!s->tp || s->tp->drained(s->tp_ctx)) {
            /* Short read: the socket is drained. (A transport says: a TLS
             * read returns one record, and others may wait behind it.) */
            s->readable = false;
        }
        return FILL_OK;
    }
    int e = errno;
    s->readable = false;
    if (avail == 0 && s->rcap == RBUF_INITIAL && !s->delivering)
        rbuf_release(s); /* nothing came: an idle stream keeps no buffer */
    if (n == 0) {
        s->eof = true;
        return FILL_EOF;
    }
    if (e == EAGAIN || e == EWOULDBLOCK)
        return FILL_AGAIN;
    s->error = e;
    s->rd_failed = true;
    return FILL_ERR;
}

static void rbuf_free_if_empty(tw_stream_t *s)
{
    if (rbuffered(s) == 0 && s->rbuf) {
        rbuf_release(s);
        s->rhint = s->opt.read_chunk_size < RBUF_INITIAL ? s->opt.read_chunk_size : RBUF_INITIAL;
    }
}

/* ---- completing reads -------------------------------------------------------------------- */

static void stream_end(tw_stream_t *s);

/* Runs the pending read's callback with the first len buffered bytes,
 * then consumes what it took. */
static void deliver(tw_stream_t *s, int status, size_t len)
{
    rd_kind_t kind = s->rkind;
    tw_stream_read_cb rcb = s->rcb.read;
    tw_stream_data_cb dcb = s->rcb.data;
    void *arg = s->rarg;
    read_clear(s); /* first: the callback may start the next read */

    const char *data = s->rbuf ? s->rbuf + s->rpos : empty_data;
    size_t consumed = 0;
    s->delivering = true;
    s->delivered = (uint32_t)len;
    if (kind == RD_SOME) {
        size_t c = dcb(s, status, data, len, arg);
        consumed = c < len ? c : len;
    } else {
        rcb(s, status, data, len, arg);
        if (status == TW_STREAM_OK)
            consumed = len;
    }
    s->delivering = false;
    s->delivered = 0;
    if (s->closed)
        return;
    s->rpos += (uint32_t)consumed;
    if (kind == RD_SOME)
        s->offered = (uint32_t)(len - consumed);
    else
        s->offered = s->offered > consumed ? s->offered - (uint32_t)consumed : 0;
    if (s->rpos == s->rend)
        s->rpos = s->rend = 0;
    if (s->shrink_wanted) {
        s->shrink_wanted = false;
        tw_stream_shrink(s);
    }
}

/* Completes the pending read if the buffer (or the EOF) allows. Returns
 * true if a callback ran. */
static bool read_try_complete(tw_stream_t *s)
{
    size_t avail = rbuffered(s);
    size_t max = s->opt.max_buffer_size;
    bool ended = s->eof || s->rd_failed;
    switch (s->rkind) {
    case RD_UNTIL: {
        /* Search only what is new, plus dlen-1 bytes of overlap for a
         * delimiter split across reads. */
        size_t dlen = s->dlen;
        size_t start = s->scanned >= dlen - 1 ? s->scanned - (dlen - 1) : 0;
        if (avail >= start + dlen) {
            const char *base = s->rbuf + s->rpos;
            const char *d = delim_bytes(s);
            const char *hit = dlen == 1 ? memchr(base + start, d[0], avail - start)
                                        : memmem(base + start, avail - start, d, dlen);
            if (hit) {
                size_t end = (size_t)(hit - base) + dlen;
                if (end > s->rlimit)
                    deliver(s, TW_STREAM_TOO_LARGE, avail);
                else
                    deliver(s, TW_STREAM_OK, end);
                return true;
            }
        }
        s->scanned = (uint32_t)avail;
        if (avail >= s->rlimit) {
            deliver(s, TW_STREAM_TOO_LARGE, avail);
            return true;
        }
        break;
    }
    case RD_BYTES:
        if (avail >= s->rlimit) {
            deliver(s, TW_STREAM_OK, s->rlimit);
            return true;
        }
        if (s->rpartial && avail > 0) {
            deliver(s, TW_STREAM_OK, avail);
            return true;
        }
        if (!s->rpartial && s->rlimit > max) {
            deliver(s, TW_STREAM_TOO_LARGE, avail);
            return true;
        }
        break;
    case RD_CLOSE:
        if (s->eof && !s->rd_failed) {
            deliver(s, TW_STREAM_OK, avail);
            stream_end(s);
            return true;
        }
        if (!ended && avail >= max) {
            deliver(s, TW_STREAM_TOO_LARGE, avail);
            return true;
        }
        break;
    case RD_SOME:
        if (avail > s->offered) {
            deliver(s, TW_STREAM_OK, avail);
            return true;
        }
        if (!ended && avail >= max) {
            deliver(s, TW_STREAM_TOO_LARGE, avail);
            return true;
        }
        break;
    case RD_NONE:
        return false;
    }
    if (ended) {
        deliver(s, s->rd_failed ? TW_STREAM_IO_ERROR : TW_STREAM_EOF, avail);
        stream_end(s);
        return true;
    }
    return false;
}

/* ---- the write queue ------------------------------------------------------------------------ */

static wrec_t *wq_push(tw_stream_t *s)
{
    if (s->wq_len == s->wq_cap) {
        if (s->wq_cap >= UINT32_MAX / 2) {
            errno = ENOMEM;
            return NULL;
        }
        size_t cap = s->wq_cap ? (size_t)s->wq_cap * 2 : WQ_INITIAL;
        wrec_t *v = cap == WQ_INITIAL ? tw_block_alloc(cap * sizeof *v) : malloc(cap * sizeof *v);
        if (!v)
            return NULL;
        for (size_t i = 0; i < s->wq_len; i++)
            v[i] = *wq_at(s, i);
        if (s->wq)
            wq_release(s);
        s->wq = v;
        s->wq_cap = (uint32_t)cap;
        s->wq_head = 0;
    }
    wrec_t *r = wq_at(s, s->wq_len++);
    memset(r, 0, sizeof *r);
    r->file_fd = -1;
    return r;
}

static wrec_t wq_pop(tw_stream_t *s)
{
    wrec_t r = s->wq[s->wq_head];
    s->wq_head = (s->wq_head + 1) & (s->wq_cap - 1);
    if (--s->wq_len == 0)
        wq_release(s);
    return r;
}

/* A record just pushed with nothing to write is complete at once if every
 * record before it is (completions stay in order). */
static void wq_complete_if_empty(tw_stream_t *s)
{
    wrec_t *r = wq_at(s, s->wq_len - 1);
    if (r->len == 0 && s->wq_done == s->wq_len - 1) {
        if (r->kind == WR_FILE && r->file_fd >= 0) {
            close(r->file_fd);
            r->file_fd = -1;
        }
        s->wq_done++;
    }
}

/* Drops completed records that have nothing left to report. */
static void wq_pop_silent(tw_stream_t *s)
{
    while (s->wq_done > 0) {
        const wrec_t *r = wq_at(s, 0);
        if (r->cb || (r->kind == WR_REF && r->release))
            break;
        wq_pop(s);
        s->wq_done--;
    }
}

static int wbuf_append(tw_stream_t *s, const char *p, size_t n)
{
    if (s->wcap - s->wend < n) {
        size_t used = s->wend - s->wpos;
        if (n > WBUF_MAX - used) {
            errno = ENOMEM;
            return -1;
        }
        /* Compact only when at most half is in use, so the bytes moved are
         * paid for by the room freed (no quadratic copying). */
        if (s->wpos > 0 && used <= s->wcap / 2 && s->wcap - used >= n) {
            memmove(s->wbuf, s->wbuf + s->wpos, used);
        } else {
            size_t cap = s->wcap ? (size_t)s->wcap * 2 : WBUF_INITIAL;
            while (cap < used + n)
                cap *= 2;
            if (cap > WBUF_MAX)
                cap = WBUF_MAX;
            char *b = cap == WBUF_INITIAL ? tw_block_alloc(cap) : malloc(cap);
            if (!b)
                return -1;
            if (used)
                memcpy(b, s->wbuf + s->wpos, used);
            if (s->wbuf)
                wbuf_release(s);
            s->wbuf = b;
            s->wcap = (uint32_t)cap;
        }
        s->wpos = 0;
        s->wend = (uint32_t)used;
    }
    memcpy(s->wbuf + s->wend, p, n);
    s->wend += (uint32_t)n;
    return 0;
}

/* Back-pressure bookkeeping after the queue changed. */
static void stream_water(tw_stream_t *s)
{
    if (s->queued > s->opt.write_high_water) {
        s->bp_paused = true;
    } else if (s->queued <= s->opt.write_low_water) {
        s->bp_paused = false;
        if (s->drain_wanted) {
            s->drain_wanted = false;
            s->drain_due = true;
        }
    }
}

static int write_result(tw_stream_t *s)
{
    if (s->queued > s->opt.write_high_water) {
        s->drain_wanted = true;
        return 1;
    }
    return 0;
}

/* Marks n bytes written, in record order. */
static void wq_consume(tw_stream_t *s, size_t n)
{
    s->queued -= n;
    while (s->wq_done < s->wq_len) {
        wrec_t *r = wq_at(s, s->wq_done);
        if (r->kind == WR_FILE)
            break;
        size_t take = r->len < n ? r->len : n;
        if (r->kind == WR_BUF)
            s->wpos += (uint32_t)take;
        else
            r->u.ptr += take;
        r->len -= take;
        n -= take;
        if (r->len > 0)
            break;
        s->wq_done++;
    }
}

enum {
    FLUSH_AGAIN = 0,
    FLUSH_PROGRESS = 1,
    FLUSH_ERROR = -1
};

static int send_errno(tw_stream_t *s)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return FLUSH_AGAIN;
    s->error = errno;
    return FLUSH_ERROR;
}

/* Sends the run of memory records at the front with one sendmsg. */
static int flush_iov(tw_stream_t *s)
{
    struct iovec iov[IOV_BATCH];
    int cnt = 0;
    size_t total = 0, woff = s->wpos;
    /* Closing once this is out: MSG_MORE keeps a final short segment in
     * the kernel until the close, which sends it with the FIN — one
     * segment (and one ACK) instead of two. */
    int flags = s->close_after_write ? MSG_NOSIGNAL | MSG_MORE : MSG_NOSIGNAL;
    for (size_t i = s->wq_done; i < s->wq_len; i++) {
        const wrec_t *r = wq_at(s, i);
        if (r->kind == WR_FILE) {
            flags |= MSG_MORE; /* the head and the file share segments */
            break;
        }
        if (r->len == 0)
            continue;
        const char *p;
        if (r->kind == WR_BUF) {
            p = s->wbuf + woff;
            woff += r->len;
        } else {
            p = r->u.ptr;
        }
        if (cnt > 0 && (const char *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len == p) {
            iov[cnt - 1].iov_len += r->len;
        } else {
            if (cnt == IOV_BATCH)
                break;
            iov[cnt++] = (struct iovec){.iov_base = (void *)p, .iov_len = r->len};
        }
        total += r->len;
    }
    if (total == 0) {
        wq_consume(s, 0); /* zero-length records complete in place */
        return FLUSH_PROGRESS;
    }
    ssize_t n;
    before_write(s);
    for (;;) {
        if (s->tp) {
            n = s->tp->send(s->tp_ctx, iov, cnt);
        } else if (cnt == 1) {
            n = send(s->fd, iov[0].iov_base, iov[0].iov_len, flags);
        } else {
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
            n = sendmsg(s->fd, &msg, flags);
        }
        if (n >= 0)
            break;
        if (errno != EINTR)
            return send_errno(s);
    }
    wq_consume(s, (size_t)n);
    return (size_t)n == total ? FLUSH_PROGRESS : FLUSH_AGAIN;
}

static int flush_file(tw_stream_t *s, wrec_t *r)
{
    while (r->len > 0) {
        size_t want = r->len < SENDFILE_MAX ? r->len : SENDFILE_MAX;
        before_write(s);
        ssize_t n = s->tp ? s->tp->sendfile(s->tp_ctx, r->file_fd, &r->u.off, want)
                          : sendfile(s->fd, r->file_fd, &r->u.off, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return send_errno(s);
        }
        if (n == 0) {
            s->error = EIO; /* the file is shorter than the range: the response would be cut */
            return FLUSH_ERROR;
        }
        r->len -= (size_t)n;
        s->queued -= (size_t)n;
        if ((size_t)n < want)
            return FLUSH_AGAIN;
    }
    close(r->file_fd);
    r->file_fd = -1;
    s->wq_done++;
    return FLUSH_PROGRESS;
}

/* Writes as much of the queue as the kernel takes. On a socket error the
 * stream is closed (check s->closed). */
static void stream_flush(tw_stream_t *s)
{
    int rc = FLUSH_PROGRESS;
    while (rc == FLUSH_PROGRESS && s->wq_done < s->wq_len) {
        wrec_t *r = wq_at(s, s->wq_done);
        rc = r->kind == WR_FILE ? flush_file(s, r) : flush_iov(s);
    }
    if (rc == FLUSH_ERROR) {
        tw_stream_close(s);
        return;
    }
    s->want_out = s->wq_done < s->wq_len;
    if (s->wpos == s->wend && s->wbuf)
        wbuf_release(s);
    wq_pop_silent(s);
    stream_water(s);
}

/* True if a write may go straight to the kernel: nothing unwritten ahead
 * of it and not corked. */
static inline bool can_send_now(const tw_stream_t *s)
{
    return s->cork == 0 && s->wq_done == s->wq_len;
}

/* send(2) straight from the caller's memory. Returns the bytes taken (0 if
 * none) or -1 on a socket error (s->error set). */
static ssize_t send_direct(tw_stream_t *s, const char *p, size_t len)
{
    before_write(s);
    for (;;) {
        struct iovec one = {.iov_base = (void *)p, .iov_len = len};
        ssize_t n = s->tp ? s->tp->send(s->tp_ctx, &one, 1) : send(s->fd, p, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        s->error = errno;
        return -1;
    }
}

/* ---- the dispatcher ----------------------------------------------------------------------------
 */

/* EOF or a read error was seen: close, after flushing what is queued unless
 * the socket is broken. */
static void stream_end(tw_stream_t *s)
{
    if (s->closed)
        return;
    if (s->rd_failed || s->wq_len == 0) {
        tw_stream_close(s);
        return;
    }
    tw_stream_close_after_write(s);
}

static void stream_dispatch(tw_stream_t *s)
{
    unsigned fills = 0;
    s->depth++;
    while (!s->closed) {
        /* Completed writes report first, in order. */
        if (s->wq_done > 0) {
            wrec_t r = wq_pop(s);
            s->wq_done--;
            if (r.kind == WR_REF && r.release)
                r.release((void *)r.base, r.release_arg);
            if (r.cb && !s->closed)
                r.cb(s, TW_STREAM_OK, r.cb_arg);
            continue;
        }
        if (s->drain_due) {
            s->drain_due = false;
            if (s->drain_cb)
                s->drain_cb(s, s->drain_arg);
            continue;
        }
        if (s->close_after_write) {
            if (s->wq_len == 0)
                tw_stream_close(s);
            break;
        }
        if (s->rkind != RD_NONE && read_try_complete(s))
            continue;
        if (s->rkind == RD_NONE && (s->eof || s->rd_failed)) {
            /* Bytes still buffered wait for the next read, which sees EOF. */
            if (s->rd_failed || rbuffered(s) == 0) {
                stream_end(s);
                continue;
            }
            break;
        }
        if (!reading_allowed(s) || !s->readable || fills >= FILLS_PER_DISPATCH)
            break;
        if (s->rkind == RD_NONE && fills > 0)
            break; /* read-ahead: one read per event */
        fills++;
        int rc = stream_fill(s);
        if (rc == FILL_AGAIN || rc == FILL_FULL)
            break;
    }
    s->depth--;
    stream_update_events(s);
}

static void stream_teardown(tw_stream_t *s);

/* A stream that closed during a dispatch run straight from the loop (an
 * fd event or its own deferred callback) has nothing up the stack but the
 * loop: it is torn down now instead of from a deferred callback, which
 * would make the loop's next epoll_wait a wasted non-blocking one (a
 * Connection: close request would cost one system call more). */
static void stream_teardown_if_closed(tw_stream_t *s)
{
    if (!s->closed || s->depth > 0)
        return;
    if (s->deferred) {
        tw_loop_defer_cancel(s->loop, &s->defer_node);
        s->deferred = false;
    }
    stream_teardown(s);
}

static void stream_on_io(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    tw_stream_t *s = arg;
    /* Under a transport either event may be what the other direction
     * waited for (a TLS read that had to write first, or the reverse). */
    if ((events & TW_EV_WRITE || (s->tp && events)) && s->cork == 0 && s->wq_done < s->wq_len)
        stream_flush(s);
    if (!s->closed) {
        if (events & TW_EV_READ || (s->tp && events))
            s->readable = true;
        stream_dispatch(s);
    }
    stream_teardown_if_closed(s);
}

static void stream_teardown(tw_stream_t *s)
{
    /* Whatever is still queued is released now: exactly once. */
    while (s->wq_len > 0) {
        wrec_t r = wq_pop(s);
        if (r.kind == WR_FILE && r.file_fd >= 0)
            close(r.file_fd);
        if (r.kind == WR_REF && r.release)
            r.release((void *)r.base, r.release_arg);
    }
    s->wq_done = 0;
    if (s->tie)
        *s->tie = NULL;
    s->depth++;
    if (s->close_cb)
        s->close_cb(s, s->close_arg);
    s->depth--;
    read_clear(s);
    if (s->rbuf)
        rbuf_release(s);
    if (s->wbuf)
        wbuf_release(s);
    if (s->wq)
        wq_release(s);
    tw_block_free(s, sizeof *s);
}

static void stream_on_deferred(tw_loop_t *loop, void *arg)
{
    tw_stream_t *s = arg;
    s->deferred = false;
    if (s->depth > 0) {
        /* Only if a callback ran the loop re-entrantly: try again later. */
        stream_defer(s);
        return;
    }
    if (!s->closed)
        stream_dispatch(s);
    stream_teardown_if_closed(s);
}

/* ---- reads
 * ----------------------------------------------------------------------------------------- */

static int read_begin(tw_stream_t *s)
{
    if (s->closed || s->close_after_write) {
        errno = EPIPE;
        return -1;
    }
    if (s->rkind != RD_NONE) {
        errno = EBUSY;
        return -1;
    }
    return 0;
}

int tw_stream_read_until(tw_stream_t *s, const char *delim, size_t dlen, size_t max_bytes,
                         tw_stream_read_cb cb, void *arg)
{
    if (!delim || dlen == 0) {
        errno = EINVAL;
        return -1;
    }
    if (read_begin(s) < 0)
        return -1;
    if (dlen > s->opt.max_buffer_size) {
        errno = EINVAL;
        return -1;
    }
    char *d = s->delim.buf;
    if (dlen > DELIM_INLINE) {
        if (!(d = malloc(dlen)))
            return -1;
        s->delim.ptr = d;
    }
    memcpy(d, delim, dlen);
    s->dlen = (uint32_t)dlen;
    s->rlimit =
        max_bytes && max_bytes < s->opt.max_buffer_size ? max_bytes : s->opt.max_buffer_size;
    s->scanned = 0;
    s->rkind = RD_UNTIL;
    s->rcb.read = cb;
    s->rarg = arg;
    stream_settle(s);
    return 0;
}

int tw_stream_read_bytes(tw_stream_t *s, size_t n, bool partial, tw_stream_read_cb cb, void *arg)
{
    if (n == 0) {
        errno = EINVAL;
        return -1;
    }
    if (read_begin(s) < 0)
        return -1;
    s->rlimit = n;
    s->rpartial = partial;
    s->rkind = RD_BYTES;
    s->rcb.read = cb;
    s->rarg = arg;
    stream_settle(s);
    return 0;
}

int tw_stream_read_until_close(tw_stream_t *s, tw_stream_read_cb cb, void *arg)
{
    if (read_begin(s) < 0)
        return -1;
    s->rkind = RD_CLOSE;
    s->rcb.read = cb;
    s->rarg = arg;
    stream_settle(s);
    return 0;
}

int tw_stream_read_some(tw_stream_t *s, tw_stream_data_cb cb, void *arg)
{
    if (read_begin(s) < 0)
        return -1;
    s->rkind = RD_SOME;
    s->rcb.data = cb;
    s->rarg = arg;
    stream_settle(s);
    return 0;
}

void tw_stream_cancel_read(tw_stream_t *s)
{
    read_clear(s);
}

size_t tw_stream_buffered(const tw_stream_t *s)
{
    /* Inside a read callback the delivered bytes are the callback's. */
    return rbuffered(s) - s->delivered;
}

void tw_stream_pause_reading(tw_stream_t *s)
{
    s->user_paused = true;
    stream_settle(s);
}

void tw_stream_resume_reading(tw_stream_t *s)
{
    s->user_paused = false;
    stream_settle(s);
}

void tw_stream_shrink(tw_stream_t *s)
{
    if (s->closed)
        return;
    if (s->delivering) {
        s->shrink_wanted = true; /* the callback still holds a pointer into rbuf */
        return;
    }
    rbuf_free_if_empty(s);
    if (s->wpos == s->wend && s->wbuf)
        wbuf_release(s);
    if (s->wq_len == 0 && s->wq)
        wq_release(s);
}

size_t tw_stream_memory(const tw_stream_t *s)
{
    return sizeof *s + s->rcap + s->wcap + s->wq_cap * sizeof(wrec_t) +
           (s->dlen > DELIM_INLINE ? s->dlen : 0) + (s->tp ? s->tp->memory(s->tp_ctx) : 0);
}

/* ---- writes
 * ------------------------------------------------------------------------------------------- */

int tw_stream_write(tw_stream_t *s, const void *data, size_t len, tw_stream_write_cb cb, void *arg)
{
    if (s->closed || s->close_after_write) {
        errno = EPIPE;
        return -1;
    }
    const char *p = data;
    if (can_send_now(s) && len > 0) {
        ssize_t n = send_direct(s, p, len);
        if (n < 0) {
            stream_fail(s, s->error); /* the close callback reports it */
            return 0;
        }
        p += n;
        len -= (size_t)n;
        if (len > 0)
            s->want_out = true;
    }
    if (len == 0 && !cb) {
        stream_settle(s);
        return write_result(s);
    }
    wrec_t *tail = s->wq_len > s->wq_done ? wq_at(s, s->wq_len - 1) : NULL;
    if (tail && tail->kind == WR_BUF && !tail->cb && len > 0) {
        /* Coalesce with the copy before: one record, one completion. */
        if (wbuf_append(s, p, len) < 0)
            goto nomem;
        tail->len += len;
        tail->cb = cb;
        tail->cb_arg = arg;
    } else {
        wrec_t *r = wq_push(s);
        if (!r)
            goto nomem;
        if (len > 0 && wbuf_append(s, p, len) < 0) {
            s->wq_len--;
            goto nomem;
        }
        r->kind = WR_BUF;
        r->len = len;
        r->cb = cb;
        r->cb_arg = arg;
        wq_complete_if_empty(s);
    }
    s->queued += len;
    stream_water(s);
    stream_settle(s);
    return write_result(s);
nomem:
    if (p != data) /* part of it went out: the stream cannot go on */
        stream_fail(s, ENOMEM);
    errno = ENOMEM;
    return -1;
}

int tw_stream_write_ref(tw_stream_t *s, const void *data, size_t len, tw_stream_release_fn release,
                        void *release_arg, tw_stream_write_cb cb, void *arg)
{
    if (s->closed || s->close_after_write) {
        if (release)
            release((void *)data, release_arg);
        errno = EPIPE;
        return -1;
    }
    const char *p = data;
    bool failed = false;
    if (can_send_now(s) && len > 0) {
        ssize_t n = send_direct(s, p, len);
        if (n < 0) {
            failed = true;
        } else {
            p += n;
            len -= (size_t)n;
            if (len > 0)
                s->want_out = true;
        }
    }
    wrec_t *r = wq_push(s);
    if (!r) {
        if (p != data || failed)
            stream_fail(s, failed ? s->error : ENOMEM);
        if (release)
            release((void *)data, release_arg);
        errno = ENOMEM;
        return -1;
    }
    r->kind = WR_REF;
    r->u.ptr = p;
    r->base = data;
    r->len = len;
    r->release = release;
    r->release_arg = release_arg;
    r->cb = cb;
    r->cb_arg = arg;
    if (failed) {
        /* Queued so that the teardown releases it, like any unsent data. */
        stream_fail(s, s->error);
        return 0;
    }
    wq_complete_if_empty(s);
    s->queued += len;
    stream_water(s);
    stream_settle(s);
    return write_result(s);
}

int tw_stream_sendfile(tw_stream_t *s, int file_fd, off_t offset, size_t len, tw_stream_write_cb cb,
                       void *arg)
{
    if (s->closed || s->close_after_write) {
        close(file_fd);
        errno = EPIPE;
        return -1;
    }
    wrec_t *r = wq_push(s);
    if (!r) {
        close(file_fd);
        errno = ENOMEM;
        return -1;
    }
    r->kind = WR_FILE;
    r->file_fd = file_fd;
    r->u.off = offset;
    r->len = len;
    r->cb = cb;
    r->cb_arg = arg;
    wq_complete_if_empty(s);
    s->queued += len;
    if (s->cork == 0 && !s->want_out)
        stream_flush(s);
    if (s->closed)
        return 0; /* the close callback reports the failure */
    stream_water(s);
    stream_settle(s);
    return write_result(s);
}

void tw_stream_cork(tw_stream_t *s)
{
    /* A closing stream must flush: corking it would stall the close. */
    if (!s->closed && !s->close_after_write)
        s->cork++;
}

void tw_stream_uncork(tw_stream_t *s)
{
    if (s->cork == 0 || --s->cork > 0 || s->closed)
        return;
    if (!s->want_out && s->wq_done < s->wq_len)
        stream_flush(s);
    stream_settle(s);
}

size_t tw_stream_write_queued(const tw_stream_t *s)
{
    return s->queued;
}

void tw_stream_set_drain_cb(tw_stream_t *s, tw_stream_drain_cb cb, void *arg)
{
    s->drain_cb = cb;
    s->drain_arg = arg;
}

/* ---- closing
 * ------------------------------------------------------------------------------------------- */

void tw_stream_set_close_cb(tw_stream_t *s, tw_stream_close_cb cb, void *arg)
{
    s->close_cb = cb;
    s->close_arg = arg;
}

void tw_stream_close(tw_stream_t *s)
{
    if (!s || s->closed)
        return;
    s->closed = true;
    read_clear(s);
    if (s->tp) {
        s->tp->close(s->tp_ctx);
        s->tp = NULL;
    }
    if (s->fd >= 0) {
        tw_loop_unwatch(s->loop, s->fd); /* no epoll_ctl if it was never armed */
        close(s->fd);
        s->fd = -1;
    }
    stream_defer(s); /* the close callback and the free run from there */
}

void tw_stream_close_after_write(tw_stream_t *s)
{
    if (s->closed || s->close_after_write)
        return;
    s->close_after_write = true;
    read_clear(s);
    s->cork = 0;
    if (!s->want_out && s->wq_done < s->wq_len)
        stream_flush(s);
    if (s->closed)
        return;
    if (s->wq_len == 0) {
        tw_stream_close(s);
        return;
    }
    stream_settle(s);
}

bool tw_stream_closed(const tw_stream_t *s)
{
    return s->closed || s->close_after_write;
}

int tw_stream_error(const tw_stream_t *s)
{
    return s->error;
}

int tw_stream_fd(const tw_stream_t *s)
{
    return s->fd;
}

tw_loop_t *tw_stream_loop(const tw_stream_t *s)
{
    return s->loop;
}

void tw_stream_set_transport(tw_stream_t *s, const tw_stream_transport_t *t, void *ctx)
{
    s->tp = t;
    s->tp_ctx = ctx;
}

tw_stream_t **tw_stream_set_tie(tw_stream_t *s, tw_stream_t **slot)
{
    tw_stream_t **old = s->tie;
    s->tie = slot;
    return old;
}
