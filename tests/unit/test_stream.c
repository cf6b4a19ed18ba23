/* test_stream.c — core/stream.c over socketpair(AF_UNIX, SOCK_STREAM)
 * fixtures: the stream owns sv[0], the test plays the peer on sv[1]. The
 * loop is driven with tw_loop_run_once and bounded iteration counts. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "twister/stream.h"

static tw_loop_t *loop;
static tw_stream_t *st;
static int peer = -1;
static int closes;
static int close_error;

/* An ordered record of what happened, e.g. "R0 C" = read OK then close. */
static char events[256];

static void note(const char *what)
{
    strncat(events, what, sizeof events - strlen(events) - 1);
}

static void on_close(tw_stream_t *s, void *arg)
{
    closes++;
    close_error = tw_stream_error(s);
    note("C ");
    tw_stream_close(s); /* idempotent, also from here */
}

static void make_stream_with(const tw_stream_options_t *o, int bufsize)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (bufsize) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    }
    st = tw_stream_new(loop, sv[0], o);
    ck_assert_ptr_nonnull(st);
    ck_assert(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    peer = sv[1];
    tw_stream_set_close_cb(st, on_close, NULL);
}

static void make_stream(void)
{
    make_stream_with(NULL, 0);
}

static void pump(int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_ge(tw_loop_run_once(loop, 0), 0);
}

#define PUMP_UNTIL(cond, max)                                                                      \
    do {                                                                                           \
        for (int i_ = 0; i_ < (max) && !(cond); i_++)                                              \
            ck_assert_int_ge(tw_loop_run_once(loop, 20), 0);                                       \
    } while (0)

static void peer_send(const char *s)
{
    size_t n = strlen(s);
    ck_assert_int_eq(write(peer, s, n), (ssize_t)n);
}

static void setup(void)
{
    loop = tw_loop_new();
    st = NULL;
    peer = -1;
    closes = 0;
    close_error = 0;
    events[0] = '\0';
}

static void teardown(void)
{
    if (st && closes == 0) {
        tw_stream_close(st);
        pump(2);
        ck_assert_int_eq(closes, 1);
    }
    if (peer >= 0)
        close(peer);
    tw_loop_free(loop);
}

/* ---- read results ----------------------------------------------------------------- */

typedef struct {
    int calls;
    int status;
    size_t len;
    char data[1 << 17];
} rd_t;

static rd_t rd;

static void on_read(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    rd.calls++;
    rd.status = status;
    rd.len = len;
    memcpy(rd.data, data, len < sizeof rd.data ? len : sizeof rd.data);
    char n[16];
    snprintf(n, sizeof n, "R%d ", status);
    note(n);
}

static void reset_rd(void)
{
    rd.calls = 0;
    rd.status = 99;
    rd.len = 0;
}

static bool rd_is(const char *s)
{
    return rd.len == strlen(s) && memcmp(rd.data, s, rd.len) == 0;
}

/* ---- read_until ------------------------------------------------------------------------ */

START_TEST(test_read_until_split_delimiter)
{
    make_stream();
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n\r\n", 4, 0, on_read, NULL), 0);
    peer_send("GET / HTTP/1.1\r\nHost: x\r\n\r");
    pump(3);
    ck_assert_int_eq(rd.calls, 0);
    peer_send("\nnext");
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_OK);
    ck_assert(rd_is("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    ck_assert_uint_eq(tw_stream_buffered(st), 4); /* "next" stays */
    /* EBUSY / EINVAL */
    ck_assert_int_eq(tw_stream_read_until(st, "x", 0, 0, on_read, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_stream_read_bytes(st, 0, false, on_read, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_stream_read_until(st, "x", 1, 0, on_read, NULL), 0);
    ck_assert_int_eq(tw_stream_read_until(st, "x", 1, 0, on_read, NULL), -1);
    ck_assert_int_eq(errno, EBUSY);
    tw_stream_cancel_read(st);
}
END_TEST

START_TEST(test_read_until_long_delimiter_tiny_reads)
{
    /* 3-byte reads, a 22-byte delimiter (longer than the inline copy), and
     * near-misses of it before the real one. */
    tw_stream_options_t o = {.read_chunk_size = 3};
    make_stream_with(&o, 0);
    static const char delim[] = "--boundary-0123456789--";
    size_t dlen = strlen(delim);
    const char *text = "preamble --boundary-0123 --boundary-012345678 "
                       "--boundary-0123456789--tail";
    reset_rd();
    char *heap_delim = strdup(delim); /* the stream must copy it */
    ck_assert_int_eq(tw_stream_read_until(st, heap_delim, dlen, 0, on_read, NULL), 0);
    free(heap_delim);
    peer_send(text);
    PUMP_UNTIL(rd.calls, 500);
    ck_assert_int_eq(rd.status, TW_STREAM_OK);
    size_t want = strlen(text) - strlen("tail");
    ck_assert_uint_eq(rd.len, want);
    ck_assert(memcmp(rd.data, text, want) == 0);

    /* One byte per write as well: the delimiter arrives split everywhere. */
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, delim, dlen, 0, on_read, NULL), 0);
    const char *more = "xx--boundary-0123456789--";
    for (const char *p = more; *p; p++) {
        ck_assert_int_eq(write(peer, p, 1), 1);
        pump(1);
    }
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.calls, 1);
    ck_assert(rd_is("tailxx--boundary-0123456789--"));
}
END_TEST

START_TEST(test_read_until_max_bytes)
{
    make_stream();
    reset_rd();
    /* No delimiter within max_bytes. */
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n", 2, 100, on_read, NULL), 0);
    char junk[150];
    memset(junk, 'a', sizeof junk);
    ck_assert_int_eq(write(peer, junk, sizeof junk), (ssize_t)sizeof junk);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_TOO_LARGE);
    ck_assert(!tw_stream_closed(st)); /* the owner may still answer 431 */
    ck_assert_uint_eq(tw_stream_buffered(st), 150);

    /* A delimiter that ends past max_bytes is too large too. */
    reset_rd();
    ck_assert_int_eq(write(peer, "\r\n", 2), 2);
    pump(3);
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n", 2, 100, on_read, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_TOO_LARGE);
    /* ...and fits with a larger limit. */
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n", 2, 152, on_read, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_OK);
    ck_assert_uint_eq(rd.len, 152);
}
END_TEST

START_TEST(test_read_until_max_buffer_size)
{
    tw_stream_options_t o = {.max_buffer_size = 1024};
    make_stream_with(&o, 0);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, on_read, NULL), 0);
    char junk[5000];
    memset(junk, 'b', sizeof junk);
    ck_assert_int_eq(write(peer, junk, sizeof junk), (ssize_t)sizeof junk);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_TOO_LARGE);
    ck_assert_uint_eq(rd.len, 1024); /* never more than the cap */
    ck_assert_uint_le(tw_stream_memory(st), 4096 + 1024);
    /* A full buffer with no read pending stops reading. */
    pump(3);
    ck_assert_uint_eq(tw_stream_buffered(st), 1024);
    ck_assert(!(tw_loop_events(loop, tw_stream_fd(st)) & TW_EV_READ));
}
END_TEST

/* ---- read_bytes / read_until_close / read_some --------------------------------------------- */

START_TEST(test_read_bytes_exact_and_partial)
{
    make_stream();
    reset_rd();
    peer_send("abcdefghij");
    ck_assert_int_eq(tw_stream_read_bytes(st, 4, false, on_read, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert(rd_is("abcd"));
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, 10, false, on_read, NULL), 0);
    pump(3);
    ck_assert_int_eq(rd.calls, 0); /* 6 of 10 */
    peer_send("klmn");
    PUMP_UNTIL(rd.calls, 50);
    ck_assert(rd_is("efghijklmn"));
    /* Partial: whatever is there, up to n. */
    reset_rd();
    peer_send("xyz");
    ck_assert_int_eq(tw_stream_read_bytes(st, 100, true, on_read, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert(rd_is("xyz"));
    reset_rd();
    peer_send("123456");
    pump(3);
    ck_assert_int_eq(tw_stream_read_bytes(st, 4, true, on_read, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert(rd_is("1234"));
    /* Exact and larger than the buffer can ever hold. */
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, 1 << 20, false, on_read, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_TOO_LARGE);
}
END_TEST

START_TEST(test_read_bytes_large_body)
{
    /* A body bigger than the first buffer: the buffer grows as needed. */
    tw_stream_options_t o = {.max_buffer_size = 100000};
    make_stream_with(&o, 0);
    static char body[90000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)(i * 7);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, sizeof body, false, on_read, NULL), 0);
    size_t sent = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 1000 && !rd.calls; i++) {
        if (sent < sizeof body) {
            ssize_t n = write(peer, body + sent, sizeof body - sent);
            if (n > 0)
                sent += (size_t)n;
        }
        tw_loop_run_once(loop, 0);
    }
    ck_assert_int_eq(rd.status, TW_STREAM_OK);
    ck_assert_uint_eq(rd.len, sizeof body);
    ck_assert(memcmp(rd.data, body, sizeof body) == 0);
}
END_TEST

START_TEST(test_read_until_close)
{
    make_stream();
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until_close(st, on_read, NULL), 0);
    char buf[5000];
    memset(buf, 'z', sizeof buf);
    ck_assert_int_eq(write(peer, buf, sizeof buf), (ssize_t)sizeof buf);
    pump(3);
    ck_assert_int_eq(rd.calls, 0);
    close(peer);
    peer = -1;
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(rd.calls, 1);
    ck_assert_int_eq(rd.status, TW_STREAM_OK);
    ck_assert_uint_eq(rd.len, sizeof buf);
    ck_assert_str_eq(events, "R0 C ");
}
END_TEST

static int some_calls;
static size_t some_len;
static size_t some_consume;
static char some_data[256];
static int some_status;

static size_t on_some(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    some_calls++;
    some_status = status;
    some_len = len;
    memcpy(some_data, data, len < sizeof some_data ? len : sizeof some_data);
    return some_consume;
}

START_TEST(test_read_some_consumed_count)
{
    make_stream();
    peer_send("abc");
    some_calls = 0;
    some_consume = 1;
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    PUMP_UNTIL(some_calls, 50);
    ck_assert_uint_eq(some_len, 3);
    ck_assert(memcmp(some_data, "abc", 3) == 0);
    ck_assert_uint_eq(tw_stream_buffered(st), 2);
    /* "bc" was offered already: not again until new bytes arrive. */
    some_consume = 0;
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    pump(5);
    ck_assert_int_eq(some_calls, 1);
    peer_send("d");
    PUMP_UNTIL(some_calls == 2, 50);
    ck_assert_uint_eq(some_len, 3);
    ck_assert(memcmp(some_data, "bcd", 3) == 0);
    /* Consumed nothing: waits again; then consumes everything. */
    some_consume = 4;
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    pump(3);
    ck_assert_int_eq(some_calls, 2);
    peer_send("e");
    PUMP_UNTIL(some_calls == 3, 50);
    ck_assert(memcmp(some_data, "bcde", 4) == 0);
    ck_assert_uint_eq(tw_stream_buffered(st), 0);
    /* At EOF: what is left is offered with TW_STREAM_EOF. */
    peer_send("fg");
    some_consume = 0;
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    PUMP_UNTIL(some_calls == 4, 50);
    ck_assert_int_eq(some_status, TW_STREAM_OK);
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    close(peer);
    peer = -1;
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(some_calls, 5);
    ck_assert_int_eq(some_status, TW_STREAM_EOF);
    ck_assert_uint_eq(some_len, 2);
}
END_TEST

START_TEST(test_read_some_full_buffer_too_large)
{
    tw_stream_options_t o = {.max_buffer_size = 1024};
    make_stream_with(&o, 0);
    char junk[3000];
    memset(junk, 'q', sizeof junk);
    ck_assert_int_eq(write(peer, junk, sizeof junk), (ssize_t)sizeof junk);
    some_calls = 0;
    some_consume = 0;
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    PUMP_UNTIL(some_calls, 50);
    ck_assert_int_eq(some_status, TW_STREAM_OK);
    ck_assert_int_eq(tw_stream_read_some(st, on_some, NULL), 0);
    PUMP_UNTIL(some_calls == 2, 50);
    ck_assert_int_eq(some_status, TW_STREAM_TOO_LARGE);
    ck_assert_uint_eq(some_len, 1024);
}
END_TEST

/* ---- callback timing and re-entrancy --------------------------------------------------------- */

START_TEST(test_callback_never_inside_the_call)
{
    make_stream();
    peer_send("hello\n");
    pump(3); /* read ahead into the buffer */
    ck_assert_uint_eq(tw_stream_buffered(st), 6);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, on_read, NULL), 0);
    ck_assert_int_eq(rd.calls, 0);
    pump(1);
    ck_assert_int_eq(rd.calls, 1);
    ck_assert(rd_is("hello\n"));
}
END_TEST

static int pipelined;

static void on_pipelined(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    char want[16];
    snprintf(want, sizeof want, "r%d\r\n", pipelined);
    ck_assert_int_eq(status, TW_STREAM_OK);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert(memcmp(data, want, len) == 0);
    pipelined++;
    if (pipelined < 16)
        ck_assert_int_eq(tw_stream_read_until(s, "\r\n", 2, 0, on_pipelined, NULL), 0);
}

START_TEST(test_pipelined_reads_in_one_iteration)
{
    make_stream();
    char all[256] = "";
    for (int i = 0; i < 16; i++) {
        char one[16];
        snprintf(one, sizeof one, "r%d\r\n", i);
        strcat(all, one);
    }
    pipelined = 0;
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n", 2, 0, on_pipelined, NULL), 0);
    peer_send(all);
    ck_assert_int_ge(tw_loop_run_once(loop, 1000), 1);
    /* Each callback starts the next read; the dispatcher runs them all in
     * the same iteration without recursing. */
    ck_assert_int_eq(pipelined, 16);
}
END_TEST

static void close_in_read(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    note("R ");
    tw_stream_close(s);
    tw_stream_close(s);
    ck_assert(tw_stream_closed(s));
    ck_assert_int_eq(tw_stream_fd(s), -1);
    ck_assert_int_eq(tw_stream_write(s, "x", 1, NULL, NULL), -1);
    ck_assert_int_eq(errno, EPIPE);
    ck_assert_int_eq(tw_stream_read_bytes(s, 1, false, on_read, NULL), -1);
    ck_assert_int_eq(errno, EPIPE);
    /* data stays valid until we return */
    ck_assert(memcmp(data, "line\n", 5) == 0);
}

START_TEST(test_close_inside_read_callback)
{
    make_stream();
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, close_in_read, NULL), 0);
    peer_send("line\nmore");
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(closes, 1);
    ck_assert_str_eq(events, "R C ");
    pump(3);
    ck_assert_int_eq(closes, 1);
    /* The peer sees the close. */
    char c;
    ck_assert_int_eq(read(peer, &c, 1), 0);
}
END_TEST

START_TEST(test_close_callback_runs_once_from_next_iteration)
{
    make_stream();
    tw_stream_close(st);
    tw_stream_close(st);
    ck_assert_int_eq(closes, 0); /* not inside the call */
    pump(1);
    ck_assert_int_eq(closes, 1);
    pump(3);
    ck_assert_int_eq(closes, 1);
}
END_TEST

/* ---- peer close ------------------------------------------------------------------------------ */

START_TEST(test_peer_close_with_pending_read)
{
    make_stream();
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n", 2, 0, on_read, NULL), 0);
    peer_send("partial");
    pump(2);
    close(peer);
    peer = -1;
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(rd.calls, 1);
    ck_assert_int_eq(rd.status, TW_STREAM_EOF);
    ck_assert(rd_is("partial"));
    ck_assert_str_eq(events, "R-1 C ");
    ck_assert_int_eq(close_error, 0);
    pump(3);
    ck_assert_int_eq(closes, 1);
}
END_TEST

START_TEST(test_peer_reset_gives_io_error)
{
    /* An AF_UNIX peer that closes with our bytes unread resets us. */
    make_stream();
    reset_rd();
    ck_assert_int_eq(tw_stream_write(st, "unread", 6, NULL, NULL), 0);
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, on_read, NULL), 0);
    pump(2);
    close(peer);
    peer = -1;
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(rd.calls, 1);
    ck_assert_int_eq(rd.status, TW_STREAM_IO_ERROR);
    ck_assert_int_eq(close_error, ECONNRESET);
    ck_assert_str_eq(events, "R-3 C ");
}
END_TEST

START_TEST(test_peer_close_while_idle)
{
    make_stream();
    close(peer);
    peer = -1;
    PUMP_UNTIL(closes, 50); /* noticed by reading ahead */
    ck_assert_int_eq(closes, 1);
}
END_TEST

START_TEST(test_peer_close_keeps_buffered_bytes)
{
    make_stream();
    peer_send("abc");
    close(peer);
    peer = -1;
    pump(5);
    ck_assert_int_eq(closes, 0);
    ck_assert_uint_eq(tw_stream_buffered(st), 3);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, 2, false, on_read, NULL), 0);
    pump(2);
    ck_assert(rd_is("ab"));
    ck_assert_int_eq(closes, 0);
    ck_assert_int_eq(tw_stream_read_bytes(st, 5, false, on_read, NULL), 0);
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(rd.status, TW_STREAM_EOF);
    ck_assert(rd_is("c"));
}
END_TEST

START_TEST(test_half_close_still_flushes_response)
{
    /* Request, then the peer shuts down its write side: the response
     * queued meanwhile still goes out before the stream closes. */
    make_stream_with(NULL, 4096);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, on_read, NULL), 0);
    peer_send("req\n");
    PUMP_UNTIL(rd.calls, 50);
    static char resp[200000];
    memset(resp, 'r', sizeof resp);
    ck_assert_int_eq(tw_stream_write(st, resp, sizeof resp, NULL, NULL), 0);
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, on_read, NULL), 0);
    shutdown(peer, SHUT_WR);
    size_t got = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    char buf[65536];
    for (int i = 0; i < 10000 && !closes; i++) {
        ssize_t n = read(peer, buf, sizeof buf);
        if (n > 0)
            got += (size_t)n;
        tw_loop_run_once(loop, 0);
    }
    ssize_t n;
    while ((n = read(peer, buf, sizeof buf)) > 0)
        got += (size_t)n;
    ck_assert_int_eq(closes, 1);
    ck_assert_uint_eq(got, sizeof resp);
    ck_assert_str_eq(events, "R0 R-1 C ");
}
END_TEST

/* ---- writes ------------------------------------------------------------------------------------
 */

static inline unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 131u) ^ (i >> 9));
}

typedef struct {
    int fd;
    size_t received;
    bool bad;
} sink_t;

static void sink_cb(tw_loop_t *l, int fd, unsigned ev, void *arg)
{
    sink_t *k = arg;
    unsigned char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf);
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] != pattern(k->received + (size_t)i))
            k->bad = true;
    if (n > 0)
        k->received += (size_t)n;
}

#define BIG_TOTAL (4u << 20)

static unsigned char *big_src;
static size_t produced;
static int next_write_id, next_completion, completions_bad, releases;
static int producer_blocked;

static void on_written(tw_stream_t *s, int status, void *arg)
{
    if (status != TW_STREAM_OK || (int)(intptr_t)arg != next_completion)
        completions_bad++;
    next_completion++;
}

static void on_release(void *data, void *arg)
{
    releases++;
}

static void produce(tw_stream_t *s)
{
    static const size_t sizes[] = {1, 7, 100, 4096, 65536, 3, 300000, 17, 1500, 9000};
    while (produced < BIG_TOTAL) {
        size_t n = sizes[next_write_id % 10];
        if (n > BIG_TOTAL - produced)
            n = BIG_TOTAL - produced;
        int id = next_write_id++;
        int rc;
        if (id % 3 == 2)
            rc = tw_stream_write_ref(s, big_src + produced, n, on_release, NULL, on_written,
                                     (void *)(intptr_t)id);
        else
            rc = tw_stream_write(s, big_src + produced, n, on_written, (void *)(intptr_t)id);
        ck_assert_int_ge(rc, 0);
        produced += n;
        if (rc == 1) {
            producer_blocked++;
            return; /* wait for the drain callback */
        }
    }
}

static void on_drain(tw_stream_t *s, void *arg)
{
    produce(s);
}

START_TEST(test_megabytes_through_tiny_buffers)
{
    tw_stream_options_t o = {.write_high_water = 256 * 1024, .write_low_water = 32 * 1024};
    make_stream_with(&o, 4096);
    big_src = malloc(BIG_TOTAL);
    for (size_t i = 0; i < BIG_TOTAL; i++)
        big_src[i] = pattern(i);
    produced = 0;
    next_write_id = next_completion = completions_bad = releases = producer_blocked = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    sink_t sink = {.fd = peer};
    ck_assert_int_eq(tw_loop_watch(loop, peer, TW_EV_READ, sink_cb, &sink), 0);
    tw_stream_set_drain_cb(st, on_drain, NULL);
    produce(st);
    for (int i = 0; i < 2000000 && (sink.received < BIG_TOTAL || next_completion < next_write_id);
         i++)
        tw_loop_run_once(loop, 100);
    ck_assert(!sink.bad);
    ck_assert_uint_eq(sink.received, BIG_TOTAL);
    ck_assert_int_eq(next_completion, next_write_id);
    ck_assert_int_eq(completions_bad, 0);
    ck_assert_int_eq(releases, next_write_id / 3);
    ck_assert_int_gt(producer_blocked, 0); /* back-pressure was exercised */
    ck_assert_uint_eq(tw_stream_write_queued(st), 0);
    tw_loop_unwatch(loop, peer);
    tw_stream_close(st);
    pump(2);
    ck_assert_int_eq(releases, next_write_id / 3); /* not twice */
    free(big_src);
}
END_TEST

static int cb_count;

static void count_written(tw_stream_t *s, int status, void *arg)
{
    cb_count++;
}

START_TEST(test_write_completion_not_inline)
{
    make_stream();
    cb_count = 0;
    ck_assert_int_eq(tw_stream_write(st, "hi", 2, count_written, NULL), 0);
    ck_assert_int_eq(cb_count, 0);
    char buf[4];
    ck_assert_int_eq(read(peer, buf, sizeof buf), 2); /* sent at once */
    pump(1);
    ck_assert_int_eq(cb_count, 1);
    /* Zero-length writes complete in order too. */
    ck_assert_int_eq(tw_stream_write(st, "", 0, count_written, NULL), 0);
    pump(1);
    ck_assert_int_eq(cb_count, 2);
}
END_TEST

static void release_count(void *data, void *arg)
{
    (*(int *)arg)++;
}

START_TEST(test_write_ref_released_once_on_close)
{
    make_stream_with(NULL, 4096);
    static char blob[1 << 20];
    int rel = 0;
    cb_count = 0;
    /* The peer does not read: most of it stays queued. */
    ck_assert_int_eq(
        tw_stream_write_ref(st, blob, sizeof blob, release_count, &rel, count_written, NULL), 1);
    pump(3);
    ck_assert_int_eq(rel, 0);
    tw_stream_close(st);
    ck_assert_int_eq(rel, 0);
    pump(2);
    ck_assert_int_eq(rel, 1);
    ck_assert_int_eq(cb_count, 0); /* write callbacks never run after close */
    ck_assert_int_eq(closes, 1);
}
END_TEST

START_TEST(test_write_ref_after_close)
{
    make_stream();
    int rel = 0;
    tw_stream_close(st);
    ck_assert_int_eq(tw_stream_write_ref(st, "x", 1, release_count, &rel, NULL, NULL), -1);
    ck_assert_int_eq(errno, EPIPE);
    ck_assert_int_eq(rel, 1);
    pump(2);
    ck_assert_int_eq(rel, 1);
}
END_TEST

START_TEST(test_write_ref_released_after_write)
{
    make_stream();
    int rel = 0;
    cb_count = 0;
    ck_assert_int_eq(tw_stream_write_ref(st, "abc", 3, release_count, &rel, count_written, NULL),
                     0);
    ck_assert_int_eq(rel, 0);
    pump(1);
    ck_assert_int_eq(rel, 1);
    ck_assert_int_eq(cb_count, 1);
    tw_stream_close(st);
    pump(2);
    ck_assert_int_eq(rel, 1);
}
END_TEST

static size_t read_all(int fd, char *buf, size_t cap, int iterations)
{
    size_t got = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < iterations; i++) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        tw_loop_run_once(loop, 0);
    }
    return got;
}

START_TEST(test_cork_batches_writes)
{
    make_stream();
    cb_count = 0;
    tw_stream_cork(st);
    tw_stream_cork(st); /* nests */
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(tw_stream_write(st, "HTTP/1.1 200 OK\r\n", 17, count_written, NULL), 0);
    ck_assert_uint_eq(tw_stream_write_queued(st), 16 * 17);
    char buf[1024];
    ck_assert_int_eq(recv(peer, buf, sizeof buf, MSG_DONTWAIT), -1);
    tw_stream_uncork(st);
    pump(2);
    ck_assert_int_eq(recv(peer, buf, sizeof buf, MSG_DONTWAIT), -1); /* still corked */
    tw_stream_uncork(st);
    ck_assert_uint_eq(tw_stream_write_queued(st), 0);
    ck_assert_int_eq(recv(peer, buf, sizeof buf, MSG_DONTWAIT), 16 * 17);
    pump(1);
    ck_assert_int_eq(cb_count, 16);
}
END_TEST

START_TEST(test_sendfile_range)
{
    make_stream_with(NULL, 4096);
    char path[] = "/tmp/twsfXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    static unsigned char file[100000];
    for (size_t i = 0; i < sizeof file; i++)
        file[i] = pattern(i);
    ck_assert_int_eq(write(fd, file, sizeof file), (ssize_t)sizeof file);
    cb_count = 0;
    tw_stream_cork(st);
    ck_assert_int_ge(tw_stream_write(st, "HEAD\n", 5, count_written, NULL), 0);
    ck_assert_int_ge(tw_stream_sendfile(st, fd, 1000, 50000, count_written, NULL), 0);
    ck_assert_int_ge(tw_stream_write(st, "TAIL", 4, count_written, NULL), 0);
    tw_stream_uncork(st);
    static char got[60000];
    size_t n = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 100000 && (n < 50009 || cb_count < 3); i++) {
        ssize_t r = read(peer, got + n, sizeof got - n);
        if (r > 0)
            n += (size_t)r;
        tw_loop_run_once(loop, 0);
    }
    ck_assert_uint_eq(n, 50009);
    ck_assert(memcmp(got, "HEAD\n", 5) == 0);
    ck_assert(memcmp(got + 5, file + 1000, 50000) == 0);
    ck_assert(memcmp(got + 50005, "TAIL", 4) == 0);
    ck_assert_int_eq(cb_count, 3);
    /* The stream closed the file when done. */
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
}
END_TEST

START_TEST(test_sendfile_short_file_closes_with_eio)
{
    make_stream();
    char path[] = "/tmp/twsfXXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    ck_assert_int_eq(write(fd, "0123456789", 10), 10);
    cb_count = 0;
    ck_assert_int_ge(tw_stream_sendfile(st, fd, 5, 100, count_written, NULL), 0);
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(closes, 1);
    ck_assert_int_eq(close_error, EIO);
    ck_assert_int_eq(cb_count, 0);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
}
END_TEST

START_TEST(test_sendfile_after_close_closes_file)
{
    make_stream();
    char path[] = "/tmp/twsfXXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    tw_stream_close(st);
    ck_assert_int_eq(tw_stream_sendfile(st, fd, 0, 1, NULL, NULL), -1);
    ck_assert_int_eq(errno, EPIPE);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
    pump(2);
}
END_TEST

/* ---- back-pressure ------------------------------------------------------------------------------
 */

static int drains;

static void count_drain(tw_stream_t *s, void *arg)
{
    drains++;
}

START_TEST(test_back_pressure_pauses_reading)
{
    tw_stream_options_t o = {.write_high_water = 64 * 1024, .write_low_water = 16 * 1024};
    make_stream_with(&o, 4096);
    int fd = tw_stream_fd(st);
    drains = 0;
    tw_stream_set_drain_cb(st, count_drain, NULL);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, 10, false, on_read, NULL), 0);
    ck_assert(tw_loop_events(loop, fd) & TW_EV_READ);

    static char out[200000];
    memset(out, 'o', sizeof out);
    ck_assert_int_eq(tw_stream_write(st, out, sizeof out, NULL, NULL), 1);
    ck_assert(!(tw_loop_events(loop, fd) & TW_EV_READ)); /* stopped reading */
    ck_assert(tw_loop_events(loop, fd) & TW_EV_WRITE);
    peer_send("0123456789");
    pump(5);
    ck_assert_int_eq(rd.calls, 0); /* the peer's bytes are not consumed */
    ck_assert_uint_eq(tw_stream_buffered(st), 0);
    ck_assert_int_eq(drains, 0);

    /* The peer drains what we wrote: reading resumes, drain fires. */
    static char sink[200000];
    size_t got = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 100000 && (got < sizeof out || !rd.calls); i++) {
        ssize_t n = read(peer, sink + got, sizeof sink - got);
        if (n > 0)
            got += (size_t)n;
        tw_loop_run_once(loop, 0);
    }
    ck_assert_uint_eq(got, sizeof out);
    ck_assert_int_eq(drains, 1);
    ck_assert_int_eq(rd.calls, 1);
    ck_assert(rd_is("0123456789"));
    ck_assert(tw_loop_events(loop, fd) & TW_EV_READ);
    ck_assert(!(tw_loop_events(loop, fd) & TW_EV_WRITE));
}
END_TEST

START_TEST(test_pause_and_resume_reading)
{
    make_stream();
    int fd = tw_stream_fd(st);
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, 3, false, on_read, NULL), 0);
    tw_stream_pause_reading(st);
    ck_assert(!(tw_loop_events(loop, fd) & TW_EV_READ));
    peer_send("abc");
    pump(3);
    ck_assert_int_eq(rd.calls, 0);
    tw_stream_resume_reading(st);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert(rd_is("abc"));
}
END_TEST

START_TEST(test_cancel_read)
{
    make_stream();
    reset_rd();
    ck_assert_int_eq(tw_stream_read_bytes(st, 3, false, on_read, NULL), 0);
    tw_stream_cancel_read(st);
    peer_send("abc");
    pump(3);
    ck_assert_int_eq(rd.calls, 0);
    ck_assert_uint_eq(tw_stream_buffered(st), 3); /* read ahead, kept */
}
END_TEST

/* ---- close_after_write, write errors
 * ------------------------------------------------------------- */

START_TEST(test_close_after_write_flushes)
{
    make_stream_with(NULL, 4096);
    static char out[300000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)pattern(i);
    cb_count = 0;
    ck_assert_int_ge(tw_stream_write(st, out, sizeof out, count_written, NULL), 0);
    tw_stream_close_after_write(st);
    ck_assert(tw_stream_closed(st));
    ck_assert_int_eq(tw_stream_write(st, "x", 1, NULL, NULL), -1);
    static char got[300001];
    size_t n = read_all(peer, got, sizeof got, 100000);
    PUMP_UNTIL(closes, 50);
    ck_assert_uint_eq(n, sizeof out);
    ck_assert(memcmp(got, out, sizeof out) == 0);
    ck_assert_int_eq(cb_count, 1); /* completions run before the close */
    ck_assert_int_eq(closes, 1);
}
END_TEST

START_TEST(test_close_after_write_with_nothing_queued)
{
    make_stream();
    tw_stream_close_after_write(st);
    pump(1);
    ck_assert_int_eq(closes, 1);
}
END_TEST

START_TEST(test_write_to_closed_peer_no_sigpipe)
{
    /* SIGPIPE keeps its default action here: without MSG_NOSIGNAL the test
     * process would die. */
    make_stream();
    close(peer);
    peer = -1;
    static char out[100000];
    ck_assert_int_ge(tw_stream_write(st, out, sizeof out, NULL, NULL), 0);
    PUMP_UNTIL(closes, 50);
    ck_assert_int_eq(closes, 1);
    ck_assert(close_error == EPIPE || close_error == ECONNRESET);
}
END_TEST

/* ---- memory
 * ----------------------------------------------------------------------------------------- */

static void shrink_in_read(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    tw_stream_shrink(s); /* deferred until the bytes are consumed */
    ck_assert(memcmp(data, "hello\r\n", 7) == 0);
    rd.calls++;
}

/* What HTTPConnection does: consume everything from read_some, start the
 * next read_some, and shrink if nothing follows. */
static size_t keepalive_cb(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    some_calls++;
    ck_assert_uint_eq(tw_stream_buffered(s), 0); /* the delivered bytes are ours */
    ck_assert_int_eq(tw_stream_read_some(s, keepalive_cb, NULL), 0);
    tw_stream_shrink(s);
    return len;
}

static void pipelined_count(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    ck_assert_uint_eq(len, 4);
    ck_assert_uint_eq(tw_stream_buffered(s), 8); /* what follows the delivered bytes */
    rd.calls++;
}

START_TEST(test_buffered_inside_callbacks_and_idle_shrink)
{
    make_stream();
    size_t base = tw_stream_memory(st);
    peer_send("aaa\nbbb\nccc\n");
    rd.calls = 0;
    ck_assert_int_eq(tw_stream_read_until(st, "\n", 1, 0, pipelined_count, NULL), 0);
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_uint_eq(tw_stream_buffered(st), 8);
    some_calls = 0;
    ck_assert_int_eq(tw_stream_read_some(st, keepalive_cb, NULL), 0);
    PUMP_UNTIL(some_calls, 50);
    ck_assert_uint_eq(tw_stream_buffered(st), 0);
    ck_assert_uint_eq(tw_stream_memory(st), base); /* idle: no buffer */
    peer_send("GET / HTTP/1.1\r\n\r\n");
    PUMP_UNTIL(some_calls == 2, 50);
    ck_assert_uint_eq(tw_stream_memory(st), base);
}
END_TEST

START_TEST(test_shrink_frees_buffers)
{
    make_stream();
    size_t base = tw_stream_memory(st);
    rd.calls = 0;
    ck_assert_int_eq(tw_stream_read_until(st, "\r\n", 2, 0, shrink_in_read, NULL), 0);
    peer_send("hello\r\n");
    PUMP_UNTIL(rd.calls, 50);
    ck_assert_uint_eq(tw_stream_memory(st), base);

    /* Writes: the output buffer and the record ring go back as soon as
     * everything queued is written. */
    tw_stream_cork(st);
    tw_stream_write(st, "response", 8, NULL, NULL);
    ck_assert_uint_gt(tw_stream_memory(st), base); /* corked: queued */
    tw_stream_uncork(st);
    ck_assert_uint_eq(tw_stream_memory(st), base);
    tw_stream_shrink(st);
    ck_assert_uint_eq(tw_stream_memory(st), base);

    /* Not freed while bytes are buffered. */
    peer_send("pending");
    pump(3);
    tw_stream_shrink(st);
    ck_assert_uint_gt(tw_stream_memory(st), base);
    ck_assert_uint_eq(tw_stream_buffered(st), 7);
    ck_assert_uint_le(base, 512); /* an idle connection is small */
}
END_TEST

static Suite *stream_suite(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("read");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_read_until_split_delimiter);
    tcase_add_test(tc, test_read_until_long_delimiter_tiny_reads);
    tcase_add_test(tc, test_read_until_max_bytes);
    tcase_add_test(tc, test_read_until_max_buffer_size);
    tcase_add_test(tc, test_read_bytes_exact_and_partial);
    tcase_add_test(tc, test_read_bytes_large_body);
    tcase_add_test(tc, test_read_until_close);
    tcase_add_test(tc, test_read_some_consumed_count);
    tcase_add_test(tc, test_read_some_full_buffer_too_large);
    tcase_add_test(tc, test_cancel_read);
    tcase_add_test(tc, test_pause_and_resume_reading);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifecycle");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_callback_never_inside_the_call);
    tcase_add_test(tc, test_pipelined_reads_in_one_iteration);
    tcase_add_test(tc, test_close_inside_read_callback);
    tcase_add_test(tc, test_close_callback_runs_once_from_next_iteration);
    tcase_add_test(tc, test_peer_close_with_pending_read);
    tcase_add_test(tc, test_peer_close_while_idle);
    tcase_add_test(tc, test_peer_reset_gives_io_error);
    tcase_add_test(tc, test_peer_close_keeps_buffered_bytes);
    tcase_add_test(tc, test_half_close_still_flushes_response);
    tcase_add_test(tc, test_shrink_frees_buffers);
    tcase_add_test(tc, test_buffered_inside_callbacks_and_idle_shrink);
    suite_add_tcase(s, tc);

    tc = tcase_create("write");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_megabytes_through_tiny_buffers);
    tcase_add_test(tc, test_write_completion_not_inline);
    tcase_add_test(tc, test_write_ref_released_once_on_close);
    tcase_add_test(tc, test_write_ref_after_close);
    tcase_add_test(tc, test_write_ref_released_after_write);
    tcase_add_test(tc, test_cork_batches_writes);
    tcase_add_test(tc, test_sendfile_range);
    tcase_add_test(tc, test_sendfile_short_file_closes_with_eio);
    tcase_add_test(tc, test_sendfile_after_close_closes_file);
    tcase_add_test(tc, test_back_pressure_pauses_reading);
    tcase_add_test(tc, test_close_after_write_flushes);
    tcase_add_test(tc, test_close_after_write_with_nothing_queued);
    tcase_add_test(tc, test_write_to_closed_peer_no_sigpipe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stream_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
