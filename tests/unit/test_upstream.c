/* test_upstream.c — outgoing connections (core/stream_connect.c), address
 * parsing (core/resolver.c), keep-alive pools (core/conn_pool.c) and the
 * work queue (core/work.c), against real sockets on loopback. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "twister/upstream.h"

typedef struct {
    int done;
    int err;
    tw_stream_t *stream;
} result_t;

static void on_connect(tw_stream_t *s, int err, void *arg)
{
    result_t *r = arg;
    r->done++;
    r->err = err;
    r->stream = s;
}

static int listen_tcp(tw_addr_t *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    socklen_t len = sizeof in;
    getsockname(fd, (struct sockaddr *)&in, &len);
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%u", ntohs(in.sin_port));
    ck_assert_int_eq(tw_addr_parse(spec, addr), 0);
    ck_assert_str_eq(addr->text, spec);
    return fd;
}

static void run_until(tw_loop_t *loop, const int *flag)
{
    for (int i = 0; i < 200 && !*flag; i++)
        tw_loop_run_once(loop, 50);
}

START_TEST(test_addr_parse)
{
    tw_addr_t a;
    ck_assert_int_eq(tw_addr_parse("[::1]:8080", &a), 0);
    ck_assert_str_eq(a.text, "[::1]:8080");
    ck_assert_int_eq(tw_addr_parse("unix:/run/app.sock", &a), 0);
    ck_assert_str_eq(a.text, "unix:/run/app.sock");
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:0",    "127.0.0.1:70000", "::1:80",
                                      "unix:",     "example.com:80", "1.2.3.4:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        ck_assert_msg(tw_addr_parse(bad[i], &a) == -1 && errno == EINVAL, "%s", bad[i]);
    }
    tw_addr_t many[4];
    size_t n;
    ck_assert_int_eq(tw_addr_resolve("localhost:80", many, 4, &n), 0);
    ck_assert_uint_ge(n, 1);
}
END_TEST

START_TEST(test_connect_and_refused)
{
    tw_loop_t *loop = tw_loop_new();
    tw_addr_t addr;
    int lfd = listen_tcp(&addr);
    result_t r = {0};
    ck_assert_ptr_nonnull(tw_stream_connect(loop, &addr, 2000, on_connect, &r));
    ck_assert_int_eq(r.done, 0); /* never inside the call */
    run_until(loop, &r.done);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.err, 0);
    ck_assert_ptr_nonnull(r.stream);
    tw_stream_close(r.stream);
    tw_loop_run_once(loop, 0);
    close(lfd); /* nothing listens there now */
    result_t refused = {0};
    ck_assert_ptr_nonnull(tw_stream_connect(loop, &addr, 2000, on_connect, &refused));
    run_until(loop, &refused.done);
    ck_assert_int_eq(refused.err, ECONNREFUSED);
    ck_assert_ptr_null(refused.stream);

    result_t cancelled = {0};
    tw_connect_t *c = tw_stream_connect(loop, &addr, 2000, on_connect, &cancelled);
    tw_connect_cancel(c);
    for (int i = 0; i < 5; i++)
        tw_loop_run_once(loop, 10);
    ck_assert_int_eq(cancelled.done, 0);
    tw_loop_free(loop);
}
END_TEST

START_TEST(test_connect_unix)
{
    tw_loop_t *loop = tw_loop_new();
    char path[] = "/tmp/tw-upstream-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(path));
    char sock[128], spec[140];
    snprintf(sock, sizeof sock, "%s/s", path);
    snprintf(spec, sizeof spec, "unix:%s", sock);
    tw_addr_t addr;
    ck_assert_int_eq(tw_addr_parse(spec, &addr), 0);
    result_t missing = {0};
    ck_assert_ptr_nonnull(tw_stream_connect(loop, &addr, 1000, on_connect, &missing));
    run_until(loop, &missing.done);
    ck_assert_int_eq(missing.err, ENOENT);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&addr.sa, addr.len), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    result_t r = {0};
    ck_assert_ptr_nonnull(tw_stream_connect(loop, &addr, 1000, on_connect, &r));
    run_until(loop, &r.done);
    ck_assert_int_eq(r.err, 0);
    tw_stream_close(r.stream);
    tw_loop_run_once(loop, 0);
    close(lfd);
    unlink(sock);
    rmdir(path);
    tw_loop_free(loop);
}
END_TEST

START_TEST(test_pool_reuse_and_eof)
{
    tw_loop_t *loop = tw_loop_new();
    tw_addr_t addr;
    int lfd = listen_tcp(&addr);
    result_t r = {0};
    tw_stream_connect(loop, &addr, 2000, on_connect, &r);
    run_until(loop, &r.done);
    ck_assert_ptr_nonnull(r.stream);
    int peer = accept(lfd, NULL, NULL);
    tw_conn_pool_t *pool = tw_conn_pool_new(loop, 4, 60000);
    tw_conn_pool_put(pool, &addr, r.stream);
    ck_assert_uint_eq(tw_conn_pool_idle(pool), 1);
    tw_stream_t *again = tw_conn_pool_get(pool, &addr);
    ck_assert_ptr_eq(again, r.stream);
    ck_assert_uint_eq(tw_conn_pool_idle(pool), 0);
    tw_conn_pool_put(pool, &addr, again);
    close(peer); /* the server drops the idle connection */
    int gone = 0;
    for (int i = 0; i < 100 && !gone; i++) {
        tw_loop_run_once(loop, 20);
        gone = tw_conn_pool_idle(pool) == 0;
    }
    ck_assert_int_eq(gone, 1);
    ck_assert_ptr_null(tw_conn_pool_get(pool, &addr));
    tw_conn_pool_free(pool);
    tw_loop_run_once(loop, 0); /* the closed stream is freed from the loop */
    close(lfd);
    tw_loop_free(loop);
}
END_TEST

typedef struct {
    int value;
    int done;
} job_t;

static void job_work(void *arg)
{
    job_t *j = arg;
    usleep(1000);
    j->value = 42;
}

static void job_done(tw_loop_t *loop, void *arg)
{
    (void)loop;
    ((job_t *)arg)->done = 1;
}

START_TEST(test_queue_work)
{
    tw_loop_t *loop = tw_loop_new();
    job_t jobs[8] = {{0}};
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(tw_loop_queue_work(loop, job_work, job_done, &jobs[i]), 0);
    for (int i = 0; i < 8; i++) {
        run_until(loop, &jobs[i].done);
        ck_assert_int_eq(jobs[i].done, 1);
        ck_assert_int_eq(jobs[i].value, 42);
    }
    errno = 0;
    ck_assert_int_eq(tw_loop_queue_work(loop, NULL, job_done, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    job_t late = {0};
    tw_loop_queue_work(loop, job_work, job_done, &late);
    tw_loop_free(loop); /* joins the threads; done never runs */
    ck_assert_int_eq(late.done, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("upstream");
    tcase_add_test(tc, test_addr_parse);
    tcase_add_test(tc, test_connect_and_refused);
    tcase_add_test(tc, test_connect_unix);
    tcase_add_test(tc, test_pool_reuse_and_eof);
    tcase_add_test(tc, test_queue_work);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
