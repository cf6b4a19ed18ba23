/* test_request_engine.c — the request engine (core/request/) alone: real
 * phases, a real route table and real modules, driven through a transport
 * that is a plain record of what the engine asked for (no socket, no
 * framing). It checks what the engine hands the transport — the head, the
 * body bytes, the close wish, done — and its own contracts: suspend and
 * resume, abort, error pages, the body entry points, back-pressure. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_conn.h"
#include "http_parser.h"
#include "phases.h"
#include "request/transport.h"
#include "route.h"
#include "twister/twister.h"

/* ---- the recording transport ---------------------------------------------------- */

typedef struct {
    tw_transport_t t;
    tw_pool_t *pool;
    bool open;
    bool stay_open; /* what write_head answers */
    bool high;      /* the queue is over the high-water mark */
    int depth, max_depth;
    int heads;
    int status;
    int64_t content_length;
    bool head_close, head_is_head;
    char headers[512];
    char body[4096];
    size_t body_len;
    int last_count;
    int reads;
    uint64_t read_limit;
    int want_on, want_off;
    int drops;
    int flush_notes;
    int done;
    bool done_close;
    int sendfiles; /* sendfile ops (the file went out zero-copy) */
} fake_t;

static fake_t *fake_of(const tw_transport_t *t)
{
    return (fake_t *)t;
}

static void f_begin(tw_transport_t *t)
{
    fake_t *f = fake_of(t);
    if (++f->depth > f->max_depth)
        f->max_depth = f->depth;
}

static void f_end(tw_transport_t *t)
{
    fake_t *f = fake_of(t);
    ck_assert_int_gt(f->depth, 0);
    f->depth--;
}

static bool f_is_open(const tw_transport_t *t)
{
    return fake_of(t)->open;
}

static int f_write_head(tw_transport_t *t, const tw_response_head_t *h)
{
    fake_t *f = fake_of(t);
    if (!f->open) {
        errno = EPIPE;
        return -1;
    }
    f->heads++;
    f->status = h->status;
    f->content_length = h->content_length;
    f->head_close = h->close;
    f->head_is_head = h->is_head;
    f->headers[0] = '\0';
    for (size_t i = 0; i < h->count; i++) {
        size_t n = strlen(f->headers);
        snprintf(f->headers + n, sizeof f->headers - n, "%.*s: %.*s\n", (int)h->headers[i].name.len,
                 h->headers[i].name.ptr, (int)h->headers[i].value.len, h->headers[i].value.ptr);
    }
    return f->stay_open && !h->close ? 1 : 0;
}

static int f_write_body(tw_transport_t *t, const void *data, size_t len, bool last)
{
    fake_t *f = fake_of(t);
    if (!f->open) {
        errno = EPIPE;
        return -1;
    }
    ck_assert_uint_le(f->body_len + len, sizeof f->body);
    if (len)
        memcpy(f->body + f->body_len, data, len);
    f->body_len += len;
    f->last_count += last;
    return f->high ? 1 : 0;
}

static int f_sendfile(tw_transport_t *t, int fd, off_t off, size_t len)
{
    fake_t *f = fake_of(t);
    ssize_t n = pread(fd, f->body + f->body_len, len, off);
    close(fd);
    f->sendfiles++;
    ck_assert_int_eq(n, (ssize_t)len);
    f->body_len += len;
    return f->high ? 1 : 0;
}

static bool f_write_low(const tw_transport_t *t)
{
    return !fake_of(t)->high;
}

static bool f_write_high(const tw_transport_t *t)
{
    return fake_of(t)->high;
}

static void f_notify_flushed(tw_transport_t *t)
{
    fake_of(t)->flush_notes++;
}

static void f_read_body(tw_transport_t *t, uint64_t limit)
{
    fake_t *f = fake_of(t);
    f->reads++;
    f->read_limit = limit;
}

static void f_want_body(tw_transport_t *t, bool on)
{
    if (on)
        fake_of(t)->want_on++;
    else
        fake_of(t)->want_off++;
}

static void f_drop(tw_transport_t *t)
{
    fake_of(t)->drops++;
}

static const char *f_peer_text(tw_transport_t *t)
{
    (void)t;
    return "fake";
}

static void f_done(tw_transport_t *t, bool close)
{
    fake_t *f = fake_of(t);
    f->done++;
    f->done_close = close;
    tw_pool_reset(f->pool); /* as a connection does: the request is gone */
}

static const tw_transport_ops_t fake_ops = {
    .begin = f_begin,
    .end = f_end,
    .is_open = f_is_open,
    .write_head = f_write_head,
    .write_body = f_write_body,
    .sendfile = f_sendfile,
    .write_low = f_write_low,
    .write_high = f_write_high,
    .notify_flushed = f_notify_flushed,
    .read_body = f_read_body,
    .want_body = f_want_body,
    .drop = f_drop,
    .peer_text = f_peer_text,
    .done = f_done,
};

/* ---- modules, handlers, routes --------------------------------------------------- */

static tw_module_t mod_app = {TW_MODULE_HEADER, .name = "app", .version = "1"};
static tw_module_t mod_log = {TW_MODULE_HEADER, .name = "logger", .version = "1"};
static const tw_module_t *const all_modules[] = {&mod_app, &mod_log};

static int log_count, log_status, aborts, drains, rewrites;
static tw_request_t *held;
static char body_seen[256];
static int body_status = -100;

static int log_handler(tw_request_t *r)
{
    log_count++;
    log_status = tw_response_status(r);
    return TW_NEXT;
}

static int rewrite_handler(tw_request_t *r)
{
    rewrites++;
    tw_str_t p = tw_request_path(r);
    if (p.len == 6 && memcmp(p.ptr, "/alias", 6) == 0)
        tw_request_set_uri(r, "/hello", 6);
    return TW_NEXT;
}

static int h_hello(tw_request_t *r)
{
    tw_response_set_header(r, "X-App", "1");
    return tw_response_send(r, 200, "text/plain", "hello", 5) == 0 ? TW_DONE : TW_ERROR;
}

static int h_suspend(tw_request_t *r)
{
    held = r;
    return TW_SUSPENDED;
}

static void on_abort(tw_request_t *r, void *arg)
{
    (void)r;
    (void)arg;
    aborts++;
}

static int h_suspend_abortable(tw_request_t *r)
{
    held = r;
    ck_assert_int_eq(tw_request_on_abort(r, on_abort, NULL), 0);
    return TW_SUSPENDED;
}

static int h_fail(tw_request_t *r)
{
    (void)r;
    return 503;
}

static void body_in(tw_request_t *r, int status, void *arg)
{
    (void)arg;
    body_status = status;
    if (status != TW_NEXT)
        return;
    size_t n;
    const char *b = tw_request_body(r, &n);
    snprintf(body_seen, sizeof body_seen, "%.*s", (int)n, b);
    tw_response_send(r, 200, NULL, b, n);
}

static int h_echo(tw_request_t *r)
{
    held = r;
    return tw_request_read_body(r, body_in, NULL) == 0 ? TW_DONE : TW_ERROR;
}

static void on_drain(tw_request_t *r, void *arg)
{
    (void)arg;
    drains++;
    tw_response_finish(r);
}

static int h_stream(tw_request_t *r)
{
    held = r;
    int rc = tw_response_write(r, "chunk", 5);
    if (rc == 1)
        tw_response_on_drain(r, on_drain, NULL);
    else
        tw_response_finish(r);
    return TW_DONE;
}

static char edit_log[256];

/* Changes the request, then answers with what a later module would see. */
static int h_edit(tw_request_t *r)
{
    const tw_header_t *old = tw_request_header(r, "X-Old");
    ck_assert_ptr_nonnull(old);
    ck_assert_int_eq(tw_request_set_header(r, "X-Old", "new"), 0);
    ck_assert_int_eq(tw_request_add_header(r, "X-Multi", "a"), 0);
    ck_assert_int_eq(tw_request_add_header(r, "X-Multi", "b"), 0);
    for (int i = 0; i < 40; i++) /* grows the copied array several times */
        ck_assert_int_eq(tw_request_add_header(r, "X-Filler", "f"), 0);
    ck_assert_int_eq(tw_request_remove_header(r, "X-Filler"), 40);
    ck_assert_int_eq(tw_request_remove_header(r, "X-Gone"), 1);
    ck_assert_int_eq(tw_request_remove_header(r, "X-Gone"), 0);
    /* No header injection, no changing the body's framing. */
    errno = 0;
    ck_assert_int_eq(tw_request_set_header(r, "X-Bad", "a\r\nX-Evil: 1"), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_request_add_header(r, "Bad Name", "v"), -1);
    ck_assert_int_eq(tw_request_set_header(r, "Content-Length", "5"), -1);
    ck_assert_int_eq(tw_request_remove_header(r, "Transfer-Encoding"), -1);
    ck_assert_int_eq(errno, EINVAL);

    ck_assert_str_eq(tw_request_peer_text(r), "fake");
    struct sockaddr_in6 six = {.sin6_family = AF_INET6, .sin6_port = htons(4242)};
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::7", &six.sin6_addr), 1);
    ck_assert_int_eq(tw_request_set_peer(r, (struct sockaddr *)&six, sizeof six), 0);
    struct sockaddr_in bad = {.sin_family = AF_UNIX};
    ck_assert_int_eq(tw_request_set_peer(r, (struct sockaddr *)&bad, sizeof bad), -1);
    ck_assert_int_eq(tw_request_set_user(r, "al\nice"), -1);
    ck_assert_ptr_null(tw_request_user(r));
    ck_assert_int_eq(tw_request_set_user(r, "alice"), 0);

    socklen_t len = 0;
    const struct sockaddr *peer = tw_request_peer(r, &len);
    ck_assert_int_eq(peer->sa_family, AF_INET6);
    ck_assert_uint_eq(len, sizeof six);
    const tw_header_t *h = tw_request_header(r, "X-Multi");
    const tw_header_t *h2 = tw_request_header_next(r, "X-Multi", h);
    snprintf(body_seen, sizeof body_seen, "%s|%.*s|%.*s,%.*s|%zu|%s", tw_request_peer_text(r),
             (int)tw_request_header(r, "x-old")->value.len,
             tw_request_header(r, "x-old")->value.ptr, (int)h->value.len, h->value.ptr,
             (int)h2->value.len, h2->value.ptr, tw_request_header_count(r), tw_request_user(r));
    return tw_response_send(r, 200, NULL, body_seen, strlen(body_seen)) == 0 ? TW_DONE : TW_ERROR;
}

/* LOG sees the changed request; it may no longer change it. */
static int edit_log_handler(tw_request_t *r)
{
    snprintf(edit_log, sizeof edit_log, "%s %s %d", tw_request_peer_text(r),
             tw_request_user(r) ? tw_request_user(r) : "-",
             tw_request_set_header(r, "X-Late", "1") == -1 && errno == EPERM);
    return TW_NEXT;
}

/* Sends a small file with tw_response_sendfile. */
static int h_file(tw_request_t *r)
{
    char path[] = "/tmp/twister-engine-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(write(fd, "file body", 9), 9);
    if (tw_response_set_content_length(r, 9) != 0 || tw_response_sendfile(r, fd, 0, 9) < 0)
        return TW_ERROR;
    return tw_response_finish(r) == 0 ? TW_DONE : TW_ERROR;
}

#define ROUTE(p, h)                                                                                \
    {                                                                                              \
        .name = p, .handler = &mod_app, .content = h                                               \
    }
static tw_http_route_t routes[] = {
    ROUTE("/hello", h_hello),
    ROUTE("/suspend", h_suspend),
    ROUTE("/abortable", h_suspend_abortable),
    ROUTE("/fail", h_fail),
    {.name = "/echo", .handler = &mod_app, .content = h_echo, .body_limit = 8},
    ROUTE("/stream", h_stream),
    {.name = "/any", .handler = &mod_app, .content = h_hello, .satisfy_any = true},
    ROUTE("/edit", h_edit),
    ROUTE("/file", h_file),
};

static int find_route(void *arg, tw_request_t *r, size_t listener, const tw_http_route_t **out)
{
    (void)arg;
    (void)listener;
    tw_str_t p = tw_request_path(r);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strlen(routes[i].name) == p.len && memcmp(routes[i].name, p.ptr, p.len) == 0) {
            *out = &routes[i];
            return 0;
        }
    }
    return 404;
}

/* ---- the fixture ----------------------------------------------------------------- */

static tw_loop_t *loop;
static tw_http_server_t srv;
static tw_phases_t *phases;
static fake_t fake;
static tw_http_field_t fields[32];
static tw_http_parser_t parser;

static void setup(void)
{
    log_count = aborts = drains = rewrites = 0;
    log_status = 0;
    held = NULL;
    body_seen[0] = '\0';
    body_status = -100;
    loop = tw_loop_new();
    ck_assert_ptr_nonnull(loop);
    tw_http_server_init(&srv, loop);
    srv.modules = all_modules;
    srv.module_count = 2;
    phases = tw_phases_new();
    tw_phases_begin_module(phases, &mod_log, 1);
    tw_phases_add(phases, TW_PHASE_REWRITE, rewrite_handler, TW_ORDER_MIDDLE);
    tw_phases_add(phases, TW_PHASE_LOG, log_handler, TW_ORDER_MIDDLE);
    char msg[256];
    ck_assert_int_eq(tw_phases_compile(phases, msg, sizeof msg), 0);
    srv.phases = tw_phases_table(phases);
    srv.find_route = find_route;
    memset(&fake, 0, sizeof fake);
    fake.t.ops = &fake_ops;
    fake.open = true;
    fake.stay_open = true;
    fake.pool = tw_pool_new(4096);
    ck_assert_ptr_nonnull(fake.pool);
}

static void teardown(void)
{
    tw_http_server_cleanup(&srv);
    for (int i = 0; i < 3; i++)
        tw_loop_run_once(loop, 0);
    tw_pool_free(fake.pool);
    tw_phases_free(phases);
    tw_loop_free(loop);
}

/* Parses head and starts its request on the fake transport. */
static tw_request_t *start(const char *head)
{
    tw_http_limits_t limits;
    tw_http_limits_default(&limits);
    tw_http_parser_init(&parser, &limits, fields, 32);
    ck_assert_int_eq(tw_http_parse_head(&parser, head, strlen(head)), TW_PARSE_DONE);
    int status = -1;
    tw_request_t *r = tw_request_create(&srv, fake.pool, &fake.t, &parser, head, &status);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(status, 0);
    tw_request_run(r);
    return r;
}

static void spin(void)
{
    for (int i = 0; i < 3; i++)
        tw_loop_run_once(loop, 0);
}

/* ---- the tests ------------------------------------------------------------------- */

START_TEST(test_phases_route_response)
{
    start("GET /alias HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(rewrites, 1);
    ck_assert_int_eq(fake.heads, 1);
    ck_assert_int_eq(fake.status, 200);
    ck_assert_int_eq(fake.content_length, 5);
    ck_assert_ptr_nonnull(strstr(fake.headers, "X-App: 1\n"));
    ck_assert_ptr_nonnull(strstr(fake.headers, "Content-Type: text/plain\n"));
    ck_assert_ptr_null(strstr(fake.headers, "Content-Length")); /* framing is the transport's */
    ck_assert_uint_eq(fake.body_len, 5);
    ck_assert_int_eq(memcmp(fake.body, "hello", 5), 0);
    ck_assert_int_eq(fake.last_count, 1);
    ck_assert_int_eq(log_count, 1);
    ck_assert_int_eq(log_status, 200);
    ck_assert_int_eq(fake.done, 1);
    ck_assert(!fake.done_close); /* the transport said it stays open */
    ck_assert_int_eq(fake.depth, 0);
}
END_TEST

START_TEST(test_keep_alive_answer)
{
    fake.stay_open = false; /* the transport will close after this response */
    start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(fake.status, 200);
    ck_assert_int_eq(fake.done, 1);
    ck_assert(fake.done_close);
}
END_TEST

START_TEST(test_error_pages)
{
    start("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(fake.status, 404);
    ck_assert_int_eq(fake.content_length, (int64_t)fake.body_len);
    fake.body[fake.body_len] = '\0';
    ck_assert_ptr_nonnull(strstr(fake.body, "404 Not Found"));
    ck_assert_int_eq(fake.done, 1);
    ck_assert_int_eq(log_status, 404);

    memset(fake.body, 0, sizeof fake.body);
    fake.body_len = 0;
    start("GET /fail HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(fake.status, 503);
    ck_assert_ptr_nonnull(strstr(fake.body, "503 Service Unavailable"));
    ck_assert_int_eq(fake.done, 2);

    /* A status that must close the connection says so with its head. */
    tw_request_t *r = start("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    tw_request_fail(r, 400);
    ck_assert_int_eq(fake.status, 400);
    ck_assert(fake.head_close);
    ck_assert_int_eq(fake.done, 2); /* suspended: it ends when resumed */
    tw_request_resume(r, TW_DONE);
    ck_assert_int_eq(fake.done, 3);
    ck_assert(fake.done_close);
}
END_TEST

START_TEST(test_suspend_resume)
{
    tw_request_t *r = start("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_ptr_eq(held, r);
    ck_assert_int_eq(fake.heads, 0);
    ck_assert_int_eq(fake.done, 0);
    spin();
    ck_assert_int_eq(fake.done, 0); /* nothing ends a suspended request */
    /* A response sent from outside the handler does not end it either... */
    ck_assert_int_eq(tw_response_send(r, 201, NULL, "ok", 2), 0);
    ck_assert_int_eq(fake.status, 201);
    spin();
    ck_assert_int_eq(fake.done, 0);
    /* ...the resume does. */
    tw_request_resume(r, TW_DONE);
    ck_assert_int_eq(fake.done, 1);
    ck_assert_int_eq(log_status, 201);
}
END_TEST

START_TEST(test_resume_with_status)
{
    tw_request_t *r = start("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    tw_request_resume(r, 429);
    ck_assert_int_eq(fake.status, 429);
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

START_TEST(test_abort_while_suspended)
{
    tw_request_t *r = start("GET /abortable HTTP/1.1\r\nHost: x\r\n\r\n");
    fake.open = false;
    tw_request_abort(r, false);
    ck_assert_int_eq(aborts, 1);
    ck_assert_int_eq(fake.done, 0); /* the handler still holds it */
    ck_assert_int_eq(srv.counters.aborted, 1);
    errno = 0;
    ck_assert_int_eq(tw_response_send(r, 200, NULL, "x", 1), -1);
    ck_assert_int_eq(errno, EPIPE);
    tw_request_resume(r, TW_DONE);
    ck_assert_int_eq(fake.done, 1);
    ck_assert_int_eq(log_status, 499);
    ck_assert_int_eq(fake.heads, 0);
}
END_TEST

START_TEST(test_abort_not_suspended)
{
    tw_request_t *r = start("GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n");
    ck_assert_int_eq(fake.reads, 1);
    fake.open = false;
    tw_request_abort(r, false);
    ck_assert_int_eq(body_status, TW_ERROR); /* the body callback learns of it */
    ck_assert_int_eq(fake.done, 1);
    ck_assert_int_eq(log_status, 499);
}
END_TEST

START_TEST(test_body_delivery)
{
    tw_request_t *r = start("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    ck_assert_int_eq(fake.reads, 1);
    ck_assert_uint_eq(fake.read_limit, 8); /* the route's */
    ck_assert_int_eq(tw_request_body_data(r, "ab", 2), TW_BODY_MORE);
    ck_assert_int_eq(tw_request_body_data(r, "cde", 3), TW_BODY_MORE);
    ck_assert_int_eq(fake.done, 0);
    tw_request_body_end(r);
    ck_assert_int_eq(body_status, TW_NEXT);
    ck_assert_str_eq(body_seen, "abcde");
    ck_assert_int_eq(fake.status, 200);
    ck_assert_uint_eq(fake.body_len, 5);
    /* Finished from a callback: the end comes from the loop, not inside it. */
    spin();
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

START_TEST(test_body_limits)
{
    /* A declared length over the route's limit: 413 before any read. */
    start("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n");
    ck_assert_int_eq(fake.reads, 0);
    ck_assert_int_eq(fake.status, 413);
    ck_assert(fake.head_close);
    ck_assert_int_eq(fake.done, 1);

    /* Delivered bytes past the limit are refused by the engine too. */
    tw_request_t *r = start("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    ck_assert_int_eq(fake.reads, 1);
    ck_assert_int_eq(tw_request_body_data(r, "12345678", 8), TW_BODY_MORE);
    ck_assert_int_eq(tw_request_body_data(r, "9", 1), TW_BODY_STOP);
    ck_assert_int_eq(body_status, 413);
    ck_assert_int_eq(fake.status, 413);
    ck_assert_int_eq(fake.done, 2);
    ck_assert(fake.done_close);
}
END_TEST

START_TEST(test_back_pressure)
{
    fake.high = true;
    tw_request_t *r = start("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_ptr_eq(held, r);
    ck_assert_int_eq(fake.status, 200);
    ck_assert_int_eq(fake.content_length, -1);
    ck_assert_uint_eq(fake.body_len, 5);
    ck_assert_int_eq(drains, 0);
    ck_assert_int_eq(fake.done, 0);
    tw_request_drained(r); /* still high: nothing runs */
    ck_assert_int_eq(drains, 0);
    fake.high = false;
    tw_request_drained(r);
    ck_assert_int_eq(drains, 1);
    ck_assert_int_eq(fake.last_count, 1);
    spin();
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

START_TEST(test_head_request)
{
    start("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(fake.status, 200);
    ck_assert(fake.head_is_head);
    ck_assert_int_eq(fake.content_length, 5);
    ck_assert_uint_eq(fake.body_len, 0); /* no body bytes for a HEAD */
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

/* ---- ACCESS: every check runs unless one refuses; `satisfy: any` -------------- */

#define GUARDS 3
static int votes[GUARDS], guard_calls[GUARDS];
static bool guard_suspends;

/* Votes votes[i]; a 401 comes with its challenge header, as auth does. */
static int guard(tw_request_t *r, int i)
{
    guard_calls[i]++;
    if (i == 0 && guard_suspends) {
        held = r;
        return TW_SUSPENDED;
    }
    if (votes[i] == 401)
        ck_assert_int_eq(tw_response_set_header(r, "WWW-Authenticate", "Basic realm=\"t\""), 0);
    return votes[i];
}
static int guard0(tw_request_t *r)
{
    return guard(r, 0);
}
static int guard1(tw_request_t *r)
{
    return guard(r, 1);
}
static int guard2(tw_request_t *r)
{
    return guard(r, 2);
}

static void setup_access(void)
{
    setup();
    memset(guard_calls, 0, sizeof guard_calls);
    guard_suspends = false;
    tw_phases_free(phases);
    phases = tw_phases_new();
    tw_phases_begin_module(phases, &mod_app, 0);
    tw_phases_add(phases, TW_PHASE_ACCESS, guard0, 100);
    tw_phases_add(phases, TW_PHASE_ACCESS, guard1, 200);
    tw_phases_add(phases, TW_PHASE_ACCESS, guard2, 300);
    tw_phases_begin_module(phases, &mod_log, 1);
    tw_phases_add(phases, TW_PHASE_LOG, log_handler, TW_ORDER_MIDDLE);
    char msg[256];
    ck_assert_int_eq(tw_phases_compile(phases, msg, sizeof msg), 0);
    srv.phases = tw_phases_table(phases);
}

static void vote(int a, int b, int c)
{
    votes[0] = a;
    votes[1] = b;
    votes[2] = c;
}

static void assert_calls(int a, int b, int c)
{
    ck_assert_int_eq(guard_calls[0], a);
    ck_assert_int_eq(guard_calls[1], b);
    ck_assert_int_eq(guard_calls[2], c);
}

START_TEST(test_access_all_runs_every_check)
{
    /* A pass does not skip the checks after it: the last one refuses. */
    vote(TW_NEXT, TW_DECLINED, 403);
    start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 1, 1);
    ck_assert_int_eq(fake.status, 403);
    ck_assert_int_eq(log_status, 403);
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

START_TEST(test_access_all_pass)
{
    vote(TW_NEXT, TW_NEXT, TW_DECLINED);
    start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 1, 1);
    ck_assert_int_eq(fake.status, 200);
    ck_assert_uint_eq(fake.body_len, 5);
}
END_TEST

START_TEST(test_access_all_first_refusal_ends)
{
    /* A refusal keeps the headers its handler set (the challenge). */
    vote(401, TW_NEXT, TW_NEXT);
    start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 0, 0);
    ck_assert_int_eq(fake.status, 401);
    ck_assert_ptr_nonnull(strstr(fake.headers, "WWW-Authenticate: Basic realm=\"t\"\n"));
    ck_assert_ptr_nonnull(strstr(fake.headers, "Content-Type: text/html"));
    fake.body[fake.body_len] = '\0';
    ck_assert_ptr_nonnull(strstr(fake.body, "401 Unauthorized"));
    ck_assert_int_eq(fake.content_length, (int64_t)fake.body_len);
}
END_TEST

START_TEST(test_access_all_after_suspend)
{
    /* A suspended check that passes on resume still lets the others run. */
    guard_suspends = true;
    vote(TW_NEXT, TW_NEXT, 403);
    tw_request_t *r = start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_ptr_eq(held, r);
    assert_calls(1, 0, 0);
    tw_request_resume(r, TW_NEXT);
    assert_calls(1, 1, 1);
    ck_assert_int_eq(fake.status, 403);
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

START_TEST(test_access_any_one_pass_is_enough)
{
    /* The refusal before the pass is forgotten, challenge header and all. */
    vote(401, TW_NEXT, 403);
    start("GET /any HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 1, 0);
    ck_assert_int_eq(fake.status, 200);
    ck_assert_ptr_null(strstr(fake.headers, "WWW-Authenticate"));
    ck_assert_ptr_nonnull(strstr(fake.headers, "X-App: 1\n"));
}
END_TEST

START_TEST(test_access_any_last_refusal)
{
    vote(401, 403, TW_DECLINED);
    start("GET /any HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 1, 1);
    ck_assert_int_eq(fake.status, 403);
    ck_assert_int_eq(log_status, 403);
    ck_assert_int_eq(fake.done, 1);
}
END_TEST

START_TEST(test_access_any_no_opinion)
{
    vote(TW_DECLINED, TW_DECLINED, TW_DECLINED);
    start("GET /any HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 1, 1);
    ck_assert_int_eq(fake.status, 200);
}
END_TEST

START_TEST(test_access_any_error_is_not_a_vote)
{
    vote(TW_ERROR, TW_NEXT, TW_NEXT);
    start("GET /any HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_calls(1, 0, 0);
    ck_assert_int_eq(fake.status, 500);
}
END_TEST

START_TEST(test_request_edit)
{
    tw_phases_begin_module(phases, &mod_log, 1);
    tw_phases_add(phases, TW_PHASE_LOG, edit_log_handler, TW_ORDER_LAST);
    char msg[256];
    ck_assert_int_eq(tw_phases_compile(phases, msg, sizeof msg), 0);
    srv.phases = tw_phases_table(phases);
    start("GET /edit HTTP/1.1\r\nHost: x\r\nX-Old: old\r\nX-Gone: 1\r\n\r\n");
    ck_assert_int_eq(fake.status, 200);
    fake.body[fake.body_len] = '\0';
    /* Host, X-Old, X-Multi twice. */
    ck_assert_str_eq(fake.body, "2001:db8::7|new|a,b|4|alice");
    ck_assert_str_eq(edit_log, "2001:db8::7 alice 1");
}
END_TEST

static int hf_always(tw_request_t *r)
{
    return tw_response_set_header(r, "X-Always", "1") == 0 ? TW_NEXT : TW_ERROR;
}

static int hf_plain(tw_request_t *r)
{
    return tw_response_set_header(r, "X-Plain", "1") == 0 ? TW_NEXT : TW_ERROR;
}

START_TEST(test_header_filter_on_error_pages)
{
    tw_phases_begin_module(phases, &mod_app, 0);
    ck_assert_int_eq(tw_phases_add_header_filter_always(phases, hf_always, 10), 0);
    ck_assert_int_eq(tw_phases_add_header_filter(phases, hf_plain, 20), 0);
    ck_assert_int_eq(tw_phases_add_header_filter_always(phases, NULL, 10), -1);
    char msg[256];
    ck_assert_int_eq(tw_phases_compile(phases, msg, sizeof msg), 0);
    srv.phases = tw_phases_table(phases);
    start("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(fake.status, 404);
    ck_assert_ptr_nonnull(strstr(fake.headers, "X-Always: 1\n"));
    ck_assert_ptr_null(strstr(fake.headers, "X-Plain")); /* as before: opt-in */
    start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(fake.status, 200);
    ck_assert_ptr_nonnull(strstr(fake.headers, "X-Always: 1\n"));
    ck_assert_ptr_nonnull(strstr(fake.headers, "X-Plain: 1\n"));
}
END_TEST

/* ---- body filters a response skips ------------------------------------------- */

static int filter_sees;    /* body filter calls */
static bool filter_skips;  /* what the header filter decides */
static int skip_result;    /* tw_response_skip_body_filter's answer */
static int skip_from_body; /* ...when called from the body filter */

static int skipping_header_filter(tw_request_t *r)
{
    if (filter_skips)
        skip_result = tw_response_skip_body_filter(r);
    return TW_NEXT;
}

static int counting_body_filter(tw_request_t *r, const char *data, size_t len, bool last)
{
    filter_sees++;
    skip_from_body = tw_response_skip_body_filter(r);
    return tw_body_filter_next(r, data, len, last);
}

static void setup_filters(void)
{
    setup();
    filter_sees = 0;
    filter_skips = false;
    skip_result = skip_from_body = 0;
    tw_phases_free(phases);
    phases = tw_phases_new();
    tw_phases_begin_module(phases, &mod_app, 0);
    tw_phases_add_header_filter(phases, skipping_header_filter, 500);
    tw_phases_add_body_filter(phases, counting_body_filter, 500);
    tw_phases_begin_module(phases, &mod_log, 1);
    tw_phases_add(phases, TW_PHASE_LOG, log_handler, TW_ORDER_MIDDLE);
    char msg[256];
    ck_assert_int_eq(tw_phases_compile(phases, msg, sizeof msg), 0);
    srv.phases = tw_phases_table(phases);
}

START_TEST(test_a_body_filter_sees_a_file_read_for_it)
{
    start("GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    spin();
    ck_assert_int_eq(fake.status, 200);
    ck_assert_uint_eq(fake.body_len, 9);
    ck_assert_int_eq(memcmp(fake.body, "file body", 9), 0);
    ck_assert_int_gt(filter_sees, 0);
    ck_assert_int_eq(fake.sendfiles, 0);  /* read for the filter */
    ck_assert_int_eq(skip_from_body, -1); /* only a header filter may skip */
}
END_TEST

START_TEST(test_a_skipped_body_filter_leaves_sendfile_alone)
{
    filter_skips = true;
    start("GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    spin();
    ck_assert_int_eq(skip_result, 0);
    ck_assert_int_eq(fake.status, 200);
    ck_assert_uint_eq(fake.body_len, 9);
    ck_assert_int_eq(memcmp(fake.body, "file body", 9), 0);
    ck_assert_int_eq(filter_sees, 0);
    ck_assert_int_eq(fake.sendfiles, 1);
    ck_assert_int_eq(fake.last_count, 1);
    /* Only that response: the next one's filter runs again. */
    filter_skips = false;
    start("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_gt(filter_sees, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("request_engine");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_phases_route_response);
    tcase_add_test(tc, test_keep_alive_answer);
    tcase_add_test(tc, test_error_pages);
    tcase_add_test(tc, test_suspend_resume);
    tcase_add_test(tc, test_resume_with_status);
    tcase_add_test(tc, test_abort_while_suspended);
    tcase_add_test(tc, test_abort_not_suspended);
    tcase_add_test(tc, test_body_delivery);
    tcase_add_test(tc, test_body_limits);
    tcase_add_test(tc, test_back_pressure);
    tcase_add_test(tc, test_head_request);
    tcase_add_test(tc, test_request_edit);
    tcase_add_test(tc, test_header_filter_on_error_pages);
    suite_add_tcase(s, tc);
    TCase *access = tcase_create("access");
    tcase_add_checked_fixture(access, setup_access, teardown);
    tcase_add_test(access, test_access_all_runs_every_check);
    tcase_add_test(access, test_access_all_pass);
    tcase_add_test(access, test_access_all_first_refusal_ends);
    tcase_add_test(access, test_access_all_after_suspend);
    tcase_add_test(access, test_access_any_one_pass_is_enough);
    tcase_add_test(access, test_access_any_last_refusal);
    tcase_add_test(access, test_access_any_no_opinion);
    tcase_add_test(access, test_access_any_error_is_not_a_vote);
    suite_add_tcase(s, access);
    TCase *filters = tcase_create("filters");
    tcase_add_checked_fixture(filters, setup_filters, teardown);
    tcase_add_test(filters, test_a_body_filter_sees_a_file_read_for_it);
    tcase_add_test(filters, test_a_skipped_body_filter_leaves_sendfile_alone);
    suite_add_tcase(s, filters);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
