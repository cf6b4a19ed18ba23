/* test_handoff.c — core/handoff.c: sockets offered over a channel are
 * adopted or refused one by one, with their state; bytes written while a
 * socket is between the two ends are read by the adopter; batches beyond
 * the window all get their verdict; a channel whose peer is gone gives
 * everything back; a cancelled offer gets no verdict. Both ends run on one
 * loop in this process; the "connections" are socketpairs (real sockets,
 * what SCM_RIGHTS moves is the same). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handoff.h"

#define MAX_CONNS 1000

typedef struct {
    /* sender side */
    int verdicts;
    int moved;
    bool got[MAX_CONNS];
    bool was_moved[MAX_CONNS];
    /* receiver side */
    int adopt_limit;    /* adopt this many, refuse the rest */
    bool close_adopted; /* keep no descriptor (tests with many sockets) */
    int adopted;
    int adopted_fds[MAX_CONNS];
    tw_handoff_conn_t adopted_state[MAX_CONNS];
} fixture_t;

static void on_done(void *arg, void *token, bool moved)
{
    fixture_t *f = arg;
    int i = (int)(intptr_t)token - 1;
    ck_assert_int_ge(i, 0);
    ck_assert_msg(!f->got[i], "two verdicts for %d", i);
    f->got[i] = true;
    f->was_moved[i] = moved;
    f->verdicts++;
    f->moved += moved;
}

static int on_adopt(void *arg, int fd, const tw_handoff_conn_t *conn)
{
    fixture_t *f = arg;
    if (f->adopted >= f->adopt_limit) {
        close(fd);
        return -1;
    }
    if (f->close_adopted) {
        close(fd);
        fd = -1;
    }
    f->adopted_fds[f->adopted] = fd;
    f->adopted_state[f->adopted] = *conn;
    f->adopted++;
    return 0;
}

typedef struct {
    tw_loop_t *loop;
    tw_handoff_t *sender, *receiver;
    int channel[2];
    int conns[MAX_CONNS][2]; /* [0]: the server's end (offered), [1]: the client's */
} setup_t;

static void setup(setup_t *s, fixture_t *f)
{
    memset(f, 0, sizeof *f);
    s->loop = tw_loop_new();
    ck_assert_ptr_nonnull(s->loop);
    s->sender = tw_handoff_new(s->loop, on_done, NULL, f);
    s->receiver = tw_handoff_new(s->loop, NULL, on_adopt, f);
    ck_assert_ptr_nonnull(s->sender);
    ck_assert_ptr_nonnull(s->receiver);
    ck_assert(!tw_handoff_can_offer(s->sender));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s->channel), 0);
    ck_assert_int_eq(tw_handoff_add_channel(s->sender, s->channel[0], true), 0);
    ck_assert_int_eq(tw_handoff_add_channel(s->receiver, s->channel[1], false), 0);
    ck_assert(tw_handoff_can_offer(s->sender));
    ck_assert(!tw_handoff_can_offer(s->receiver));
}

static void offer(setup_t *s, int i, uint32_t served)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->conns[i]), 0);
    tw_handoff_conn_t st = {
        .listener_fd = 7, .served = served, .idle_ms = 100 + (uint32_t)i, .deadline_ms = 5000};
    ck_assert_int_eq(tw_handoff_offer(s->sender, s->conns[i][0], &st, (void *)(intptr_t)(i + 1)),
                     0);
}

static void run_until(setup_t *s, fixture_t *f, int verdicts)
{
    for (int round = 0; round < 10000 && f->verdicts < verdicts; round++)
        tw_loop_run_once(s->loop, 100);
    ck_assert_int_eq(f->verdicts, verdicts);
}

static void teardown(setup_t *s, fixture_t *f, int n)
{
    tw_handoff_free(s->sender);
    tw_handoff_free(s->receiver);
    tw_loop_free(s->loop);
    for (int i = 0; i < n; i++) {
        close(s->conns[i][0]);
        close(s->conns[i][1]);
    }
    for (int i = 0; i < f->adopted; i++)
        if (f->adopted_fds[i] >= 0)
            close(f->adopted_fds[i]);
}

START_TEST(test_adopted_and_refused_with_state)
{
    setup_t s;
    fixture_t f;
    setup(&s, &f);
    f.adopt_limit = 3;
    for (int i = 0; i < 5; i++)
        offer(&s, i, (uint32_t)i * 10);
    ck_assert_uint_eq(tw_handoff_pending(s.sender), 5);
    /* Written while the socket is in flight: nobody has read it yet. */
    ck_assert_int_eq(write(s.conns[0][1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    run_until(&s, &f, 5);
    ck_assert_uint_eq(tw_handoff_pending(s.sender), 0);
    ck_assert_int_eq(f.moved, 3);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(f.was_moved[i], i < 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(f.adopted_state[i].served, (uint32_t)i * 10);
        ck_assert_int_eq(f.adopted_state[i].idle_ms, 100 + (uint32_t)i);
        ck_assert_int_eq(f.adopted_state[i].listener_fd, 7);
        ck_assert_int_eq(f.adopted_state[i].deadline_ms, 5000);
    }
    /* The adopter reads the bytes that waited in the kernel. */
    char buf[64];
    ck_assert_int_eq(read(f.adopted_fds[0], buf, sizeof buf), 18);
    ck_assert_int_eq(memcmp(buf, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    /* A moved socket stays open when the sender closes its descriptor. */
    close(s.conns[1][0]);
    s.conns[1][0] = -1;
    ck_assert_int_eq(write(s.conns[1][1], "x", 1), 1);
    ck_assert_int_eq(read(f.adopted_fds[1], buf, 1), 1);
    /* A refused one is still the sender's: its descriptor works. */
    ck_assert_int_eq(write(s.conns[4][1], "y", 1), 1);
    ck_assert_int_eq(read(s.conns[4][0], buf, 1), 1);
    teardown(&s, &f, 5);
}
END_TEST

START_TEST(test_many_batches_through_the_window)
{
    setup_t s;
    fixture_t f;
    setup(&s, &f);
    f.adopt_limit = MAX_CONNS;
    f.close_adopted = true;
    /* More than TW_HANDOFF_WINDOW full batches at once. */
    int n = TW_HANDOFF_BATCH * (TW_HANDOFF_WINDOW + 1) + 5;
    ck_assert_int_le(n, MAX_CONNS);
    for (int i = 0; i < n; i++)
        offer(&s, i, 1);
    run_until(&s, &f, n);
    ck_assert_int_eq(f.moved, n);
    ck_assert_int_eq(f.adopted, n);
    teardown(&s, &f, n);
}
END_TEST

START_TEST(test_peer_gone_gives_everything_back)
{
    setup_t s;
    fixture_t f;
    setup(&s, &f);
    f.adopt_limit = MAX_CONNS;
    for (int i = 0; i < 3; i++)
        offer(&s, i, 1);
    /* The receiving worker is gone before it read anything. */
    tw_handoff_free(s.receiver);
    s.receiver = NULL;
    run_until(&s, &f, 3);
    ck_assert_int_eq(f.moved, 0);
    ck_assert(!tw_handoff_can_offer(s.sender));
    /* Nothing takes offers any more: refused at once, no verdict. */
    int extra[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, extra), 0);
    tw_handoff_conn_t st = {.listener_fd = 7};
    errno = 0;
    ck_assert_int_eq(tw_handoff_offer(s.sender, extra[0], &st, (void *)99), -1);
    ck_assert_int_eq(errno, EPIPE);
    close(extra[0]);
    close(extra[1]);
    teardown(&s, &f, 3);
}
END_TEST

START_TEST(test_cancelled_offer_gets_no_verdict)
{
    setup_t s;
    fixture_t f;
    setup(&s, &f);
    f.adopt_limit = MAX_CONNS;
    for (int i = 0; i < 4; i++)
        offer(&s, i, 1);
    /* Its connection closed before the batch left: not sent, no verdict. */
    tw_handoff_cancel(s.sender, (void *)(intptr_t)2);
    close(s.conns[1][0]);
    s.conns[1][0] = -1;
    for (int round = 0; round < 100 && tw_handoff_pending(s.sender) > 0; round++)
        tw_loop_run_once(s.loop, 100);
    ck_assert_uint_eq(tw_handoff_pending(s.sender), 0);
    ck_assert_int_eq(f.verdicts, 3);
    ck_assert(!f.got[1]);
    ck_assert_int_eq(f.adopted, 3);
    teardown(&s, &f, 4);
}
END_TEST

START_TEST(test_two_channels_share_the_offers)
{
    setup_t s;
    fixture_t f;
    setup(&s, &f);
    f.adopt_limit = MAX_CONNS;
    fixture_t g;
    memset(&g, 0, sizeof g);
    g.adopt_limit = MAX_CONNS;
    f.close_adopted = g.close_adopted = true;
    tw_handoff_t *second = tw_handoff_new(s.loop, NULL, on_adopt, &g);
    int ch[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch), 0);
    ck_assert_int_eq(tw_handoff_add_channel(s.sender, ch[0], true), 0);
    ck_assert_int_eq(tw_handoff_add_channel(second, ch[1], false), 0);
    int n = TW_HANDOFF_BATCH * 4;
    for (int i = 0; i < n; i++)
        offer(&s, i, 1);
    run_until(&s, &f, n);
    /* Round robin by batch: half each. */
    ck_assert_int_eq(f.adopted, n / 2);
    ck_assert_int_eq(g.adopted, n / 2);
    tw_handoff_free(second);
    teardown(&s, &f, n);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("handoff");
    TCase *tc = tcase_create("handoff");
    tcase_add_test(tc, test_adopted_and_refused_with_state);
    tcase_add_test(tc, test_many_batches_through_the_window);
    tcase_add_test(tc, test_peer_gone_gives_everything_back);
    tcase_add_test(tc, test_cancelled_offer_gets_no_verdict);
    tcase_add_test(tc, test_two_channels_share_the_offers);
    suite_add_tcase(suite, tc);
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
