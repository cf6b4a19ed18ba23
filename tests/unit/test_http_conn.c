/* test_http_conn.c — the HTTP/1.1 layer (core/http1/) with the request
 * engine on top, driven over a
 * socketpair: the server end goes to tw_http_conn_start, the test plays the
 * client on the other end and turns the loop until what it expects arrives
 * (never asserting on elapsed time). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"
#include "http_conn.h"
#include "phases.h"
#include "route.h"
#include "twister/twister.h"

/* pread as the server's output pump sees it: the first pread_eintr calls
 * are interrupted by a signal (EINTR), as on a slow file system. */
static int pread_eintr;

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    if (pread_eintr > 0) {
        pread_eintr--;
        errno = EINTR;
        return -1;
    }
    return syscall(SYS_pread64, fd, buf, n, off);
}

/* ---- the test modules ------------------------------------------------------------ */

static char trace[512];
static int log_count, abort_count, rewrite_passes;
static int last_log_status;
static uint64_t log_body_bytes[8]; /* tw_response_body_bytes in LOG, per request */
static uint64_t log_elapsed_us[8];
static int log_set_uri_errno, log_write_errno, wrong_set_uri_errno;
static int upload_status = -100;
static int big_write_returned_one;
static int loop_set_uri_errno;
static bool hang_resumed_after_abort;
static char file_path[64];

static void trace_add(const char *s)
{
    strncat(trace, s, sizeof trace - strlen(trace) - 1);
}

static bool path_is(tw_request_t *r, const char *p)
{
    tw_str_t path = tw_request_path(r);
    return path.len == strlen(p) && memcmp(path.ptr, p, path.len) == 0;
}

static int a_rewrite_500(tw_request_t *r)
{
    if (path_is(r, "/trace"))
        trace_add("A500 ");
    rewrite_passes++;
    return TW_DECLINED;
}

static int a_access_1000(tw_request_t *r)
{
    if (path_is(r, "/trace"))
        trace_add("A1000 ");
    return TW_NEXT;
}

static int b_rewrite_100(tw_request_t *r)
{
    if (path_is(r, "/trace"))
        trace_add("B100 ");
    return TW_DECLINED;
}

static int b_rewrite_500(tw_request_t *r)
{
    if (path_is(r, "/trace"))
        trace_add("B500 ");
    return TW_NEXT;
}

static int b_log(tw_request_t *r)
{
    if (log_count < 8) {
        log_body_bytes[log_count] = tw_response_body_bytes(r);
        log_elapsed_us[log_count] = tw_request_elapsed_us(r);
    }
    log_count++;
    last_log_status = tw_response_status(r);
    if (!path_is(r, "/wrong") && !path_is(r, "/hello"))
        return TW_NEXT;
    errno = 0;
    if (tw_request_set_uri(r, "/x", 2) == -1)
        log_set_uri_errno = errno;
    errno = 0;
    if (tw_response_write(r, "x", 1) == -1)
        log_write_errno = errno;
    return TW_NEXT;
}

static int a_register(tw_phases_t *p, tw_conf_error_t *err)
{
    (void)err;
    tw_phases_add(p, TW_PHASE_REWRITE, a_rewrite_500, 500);
    tw_phases_add(p, TW_PHASE_ACCESS, a_access_1000, TW_ORDER_LAST);
    return 0;
}

static int b_register(tw_phases_t *p, tw_conf_error_t *err)
{
    (void)err;
    tw_phases_add(p, TW_PHASE_REWRITE, b_rewrite_500, 500);
    tw_phases_add(p, TW_PHASE_REWRITE, b_rewrite_100, 100);
    tw_phases_add(p, TW_PHASE_LOG, b_log, TW_ORDER_MIDDLE);
    return 0;
}

static tw_module_t mod_a = {TW_MODULE_HEADER, .name = "a", .version = "1"};
static tw_module_t mod_b = {TW_MODULE_HEADER, .name = "b", .version = "1"};
static tw_module_t mod_f = {TW_MODULE_HEADER, .name = "f", .version = "1"};
static tw_module_t mod_app = {TW_MODULE_HEADER, .name = "app", .version = "1"};
static const tw_module_t *const all_modules[] = {&mod_a, &mod_b, &mod_f, &mod_app};

/* The filter module: only acts on requests that set its context. */
static int f_header(tw_request_t *r)
{
    if (!tw_request_ctx(r, &mod_f))
        return TW_NEXT;
    if (tw_request_ctx(r, &mod_f) == (void *)2)
        return 403;
    tw_response_set_header(r, "X-Filtered", "1");
    tw_response_remove_header(r, "Content-Length");
    return TW_NEXT;
}

static int f_body(tw_request_t *r, const char *data, size_t len, bool last)
{
    if (!tw_request_ctx(r, &mod_f))
        return tw_body_filter_next(r, data, len, last);
    if (tw_request_ctx(r, &mod_f) == (void *)3)
        return TW_ERROR; /* a filter that fails on the first piece */
    char buf[256];
    while (len) {
        size_t n = len < sizeof buf ? len : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (data[i] >= 'a' && data[i] <= 'z') ? (char)(data[i] - 32) : data[i];
        if (tw_body_filter_next(r, buf, n, false) != TW_NEXT)
            return TW_ERROR;
        data += n;
        len -= n;
    }
    return last ? tw_body_filter_next(r, NULL, 0, true) : TW_NEXT;
}

/* ---- content handlers ------------------------------------------------------------- */

static int h_hello(tw_request_t *r)
{
    if (tw_request_ctx(r, &mod_app))
        return tw_response_send(r, 200, "text/plain", "hello-redirected\n", 17) ? TW_ERROR
                                                                                : TW_DONE;
    return tw_response_send(r, 200, "text/plain", "hello\n", 6) ? TW_ERROR : TW_DONE;
}

static void echo_done(tw_request_t *r, int status, void *arg)
{
    (void)arg;
    if (status != TW_NEXT)
        return; /* the core answers */
    size_t len;
    const char *b = tw_request_body(r, &len);
    tw_response_send(r, 200, "application/octet-stream", b, len);
}

static int h_echo(tw_request_t *r)
{
    return tw_request_read_body(r, echo_done, NULL) ? TW_ERROR : TW_DONE;
}

static int h_reject(tw_request_t *r)
{
    (void)r;
    return 413;
}

static int h_unauth(tw_request_t *r)
{
    tw_response_set_header(r, "WWW-Authenticate", "Basic realm=\"t\"");
    return tw_response_send(r, 401, "text/plain", "no\n", 3) ? TW_ERROR : TW_DONE;
}

static void resume_timer(tw_request_t *r, void *arg)
{
    (void)arg;
    tw_response_send(r, 200, "text/plain", "late\n", 5);
    tw_request_resume(r, TW_DONE);
}

static int h_suspend(tw_request_t *r)
{
    return tw_request_set_timer(r, 20, resume_timer, NULL) ? TW_ERROR : TW_SUSPENDED;
}

#define BIG_TOTAL (3u * 1024 * 1024 + 123)

typedef struct {
    size_t sent;
} big_ctx_t;

static void big_more(tw_request_t *r, void *arg);

static void big_pump(tw_request_t *r)
{
    big_ctx_t *ctx = tw_request_ctx(r, &mod_app);
    static char chunk[50000];
    while (ctx->sent < BIG_TOTAL) {
        size_t n = BIG_TOTAL - ctx->sent < sizeof chunk ? BIG_TOTAL - ctx->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = (char)('a' + (ctx->sent + i) % 26);
        int rc = tw_response_write(r, chunk, n);
        ck_assert_int_ge(rc, 0);
        ctx->sent += n;
        if (rc == 1) {
            big_write_returned_one++;
            tw_response_on_drain(r, big_more, NULL);
            return;
        }
    }
    tw_response_finish(r);
}

static void big_more(tw_request_t *r, void *arg)
{
    (void)arg;
    big_pump(r);
}

static int h_big(tw_request_t *r)
{
    big_ctx_t *ctx = tw_request_alloc(r, sizeof *ctx);
    ctx->sent = 0;
    tw_request_set_ctx(r, &mod_app, ctx);
    big_pump(r);
    return TW_DONE;
}

static int h_redir(tw_request_t *r)
{
    tw_request_set_ctx(r, &mod_app, (void *)1);
    return tw_request_set_uri(r, "/hello?from=redir", 17) ? TW_ERROR : TW_NEXT;
}

static int h_loop(tw_request_t *r)
{
    if (tw_request_set_uri(r, "/loop", 5) != 0) {
        loop_set_uri_errno = errno;
        return TW_ERROR;
    }
    return TW_NEXT;
}

static void upload_abort(tw_request_t *r, void *arg)
{
    (void)r;
    (void)arg;
    abort_count++;
}

static void upload_done(tw_request_t *r, int status, void *arg)
{
    (void)r;
    (void)arg;
    upload_status = status;
}

static int h_upload(tw_request_t *r)
{
    tw_request_on_abort(r, upload_abort, NULL);
    return tw_request_read_body(r, upload_done, NULL) ? TW_ERROR : TW_DONE;
}

static void hang_resume(tw_request_t *r, void *arg)
{
    (void)arg;
    hang_resumed_after_abort = true;
    tw_request_resume(r, TW_DONE);
}

static void hang_abort(tw_request_t *r, void *arg)
{
    (void)arg;
    abort_count++;
    /* The request stays valid while suspended: resume it later. */
    tw_request_set_timer(r, 20, hang_resume, NULL);
}

static int never_resumed(tw_request_t *r)
{
    tw_request_on_abort(r, upload_abort, NULL);
    return TW_SUSPENDED;
}

static int h_hang(tw_request_t *r)
{
    tw_request_on_abort(r, hang_abort, NULL);
    return TW_SUSPENDED;
}

typedef struct {
    char buf[256];
    size_t len;
    int pieces;
} sbody_ctx_t;

static unsigned sbody_pause_ms = 10;
static bool sbody_resumed;

static void sbody_unpause(tw_request_t *r, void *arg)
{
    (void)arg;
    sbody_resumed = true;
    tw_request_resume_body(r);
}

static int sbody_chunk(tw_request_t *r, int status, const char *data, size_t len, bool last,
                       void *arg)
{
    sbody_ctx_t *ctx = arg;
    if (status != 0)
        return 0;
    if (len && ctx->len + len <= sizeof ctx->buf) {
        memcpy(ctx->buf + ctx->len, data, len);
        ctx->len += len;
    }
    if (last) {
        tw_response_send(r, 200, "text/plain", ctx->buf, ctx->len);
        return 0;
    }
    if (ctx->pieces++ == 0) {
        tw_request_set_timer(r, sbody_pause_ms, sbody_unpause, NULL);
        return 1; /* pause once */
    }
    return 0;
}

static int h_sbody(tw_request_t *r)
{
    sbody_ctx_t *ctx = tw_request_alloc(r, sizeof *ctx);
    memset(ctx, 0, sizeof *ctx);
    return tw_request_stream_body(r, sbody_chunk, ctx) ? TW_ERROR : TW_DONE;
}

static int h_file(tw_request_t *r)
{
    int fd = open(file_path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    tw_response_set_content_length(r, 26);
    tw_response_set_header(r, "Content-Type", "text/plain");
    if (tw_response_sendfile(r, fd, 0, 26) < 0)
        return TW_ERROR;
    return tw_response_finish(r) ? TW_ERROR : TW_DONE;
}

static int h_upper(tw_request_t *r)
{
    tw_request_set_ctx(r, &mod_f, (void *)1);
    return tw_response_send(r, 200, "text/plain", "hello world\n", 12) ? TW_ERROR : TW_DONE;
}

static int ffail_write_errno;

/* The body filter fails on the first write: the handler gives up. */
static int h_filter_fails(tw_request_t *r)
{
    tw_request_set_ctx(r, &mod_f, (void *)3);
    errno = 0;
    if (tw_response_write(r, "abc", 3) < 0)
        ffail_write_errno = errno;
    return TW_DONE;
}

static int h_upper_file(tw_request_t *r)
{
    tw_request_set_ctx(r, &mod_f, (void *)1);
    return h_file(r);
}

static int h_wrong(tw_request_t *r)
{
    if (tw_response_send(r, 200, "text/plain", "ok\n", 3))
        return TW_ERROR;
    errno = 0;
    if (tw_request_set_uri(r, "/hello", 6) == -1)
        wrong_set_uri_errno = errno;
    return TW_DONE;
}

static int h_header_bad(tw_request_t *r)
{
    int e1 = tw_response_set_header(r, "X-Bad", "a\r\nInjected: 1");
    int e1errno = errno;
    int e2 = tw_response_set_header(r, "Bad Name", "v");
    int e3 = tw_response_set_header(r, "Transfer-Encoding", "chunked");
    char body[64];
    int n = snprintf(body, sizeof body, "%d %d %d %d %d\n", e1, e1errno == EINVAL, e2, e3,
                     tw_response_set_header(r, "X-Good", "fine\tvalue"));
    return tw_response_send(r, 200, "text/plain", body, (size_t)n) ? TW_ERROR : TW_DONE;
}

static int h_nocontent(tw_request_t *r)
{
    tw_response_set_status(r, 204);
    return tw_response_finish(r) ? TW_ERROR : TW_DONE;
}

static int h_chunked_out(tw_request_t *r)
{
    tw_response_write(r, "abc", 3);
    tw_response_write(r, "", 0);
    tw_response_write(r, "defgh", 5);
    tw_response_finish(r);
    return TW_DONE;
}

static tw_activity_t activity_rec;
static char seen_activity[400];

static int h_activity(tw_request_t *r)
{
    snprintf(seen_activity, sizeof seen_activity, "%s|%s|%s", activity_rec.module,
             activity_rec.phase, activity_rec.request);
    return tw_response_send(r, 200, NULL, "", 0) ? TW_ERROR : TW_DONE;
}

static int h_api(tw_request_t *r)
{
    char out[1024];
    tw_str_t m = tw_request_method(r), t = tw_request_target(r), p = tw_request_path(r),
             q = tw_request_query(r), h = tw_request_host(r);
    const tw_header_t *x1 = tw_request_header(r, "x-a");
    const tw_header_t *x2 = tw_request_header_next(r, "X-A", x1);
    const tw_header_t *x3 = tw_request_header_next(r, "X-A", x2);
    socklen_t plen = 99;
    tw_request_peer(r, &plen);
    int n = snprintf(
        out, sizeof out, "%.*s %d %.*s %.*s %.*s %d %.*s %.*s %.*s %d %zu %s %lld %d %d %s %s %d",
        (int)m.len, m.ptr, tw_request_method_is(r, "GET"), (int)t.len, t.ptr, (int)p.len, p.ptr,
        (int)q.len, q.ptr, tw_request_version(r), (int)h.len, h.ptr, (int)x1->value.len,
        x1->value.ptr, (int)x2->value.len, x2->value.ptr, x3 == NULL, tw_request_header_count(r),
        tw_request_header_at(r, 0)->name.ptr[0] == 'H' ? "host-first" : "?",
        (long long)tw_request_content_length(r), tw_request_alloc(r, 10) != NULL,
        tw_request_loop(r) != NULL, (char *)tw_request_route_conf(r, &mod_app),
        (char *)tw_request_global_conf(r, &mod_app), (int)plen);
    return tw_response_send(r, 200, "text/plain", out, (size_t)n) ? TW_ERROR : TW_DONE;
}

static int h_resume_early(tw_request_t *r)
{
    tw_response_send(r, 200, NULL, "early\n", 6);
    tw_request_resume(r, TW_DONE);
    return TW_SUSPENDED;
}

static int h_not_modified(tw_request_t *r)
{
    tw_response_set_status(r, 304);
    tw_response_set_content_length(r, 100);
    tw_response_set_header(r, "ETag", "\"x\"");
    return tw_response_finish(r) ? TW_ERROR : TW_DONE;
}

static int h_short(tw_request_t *r)
{
    /* Declares 10 bytes, writes 3: the connection must close after. */
    tw_response_set_content_length(r, 10);
    tw_response_write(r, "abc", 3);
    tw_response_finish(r);
    return TW_DONE;
}

static int drained_now;
static void drain_now_cb(tw_request_t *r, void *arg)
{
    (void)arg;
    drained_now++;
    tw_response_send(r, 200, NULL, "drained\n", 8);
}

static int h_drain_low(tw_request_t *r)
{
    /* Nothing queued: the drain callback still runs (from the loop). */
    return tw_response_on_drain(r, drain_now_cb, NULL) ? TW_ERROR : TW_DONE;
}

static tw_request_t *waiting;

static int h_wait(tw_request_t *r)
{
    waiting = r;
    return TW_SUSPENDED;
}

static int h_notify(tw_request_t *r)
{
    /* Answers the waiting request from this request's handler: the resume
     * must be deferred (the engine is on the stack). */
    ck_assert_ptr_nonnull(waiting);
    tw_response_send(waiting, 200, NULL, "notified\n", 9);
    tw_request_resume(waiting, TW_DONE);
    waiting = NULL;
    return tw_response_send(r, 200, NULL, "sent\n", 5) ? TW_ERROR : TW_DONE;
}

static char big_path[64];
#define BIG_FILE (1024 * 1024 + 7)

static int h_upper_big(tw_request_t *r)
{
    tw_request_set_ctx(r, &mod_f, (void *)1);
    int fd = open(big_path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    tw_response_set_content_length(r, BIG_FILE); /* the filter drops it: chunked */
    if (tw_response_sendfile(r, fd, 0, BIG_FILE) < 0)
        return TW_ERROR;
    tw_response_write(r, "tail", 4); /* queued behind the file, in order */
    return tw_response_finish(r) ? TW_ERROR : TW_DONE;
}

static int hfail_send_rc = 99;
static int h_hfail(tw_request_t *r)
{
    tw_request_set_ctx(r, &mod_f, (void *)2);
    hfail_send_rc = tw_response_send(r, 200, NULL, "secret", 6);
    return TW_DONE;
}

static int secho_chunk(tw_request_t *r, int status, const char *data, size_t len, bool last,
                       void *arg)
{
    (void)arg;
    if (status != 0)
        return 0; /* the core answers if nothing went out */
    if (len && tw_response_write(r, data, len) < 0)
        return -1;
    if (last)
        tw_response_finish(r);
    return 0;
}

static int h_secho(tw_request_t *r)
{
    return tw_request_stream_body(r, secho_chunk, NULL) ? TW_ERROR : TW_DONE;
}

/* Finishes with nothing written and no length declared. */
static int h_empty(tw_request_t *r)
{
    return tw_response_finish(r) ? TW_ERROR : TW_DONE;
}

/* A 304 without a declared length, by finish or by send. */
static int h_nm_finish(tw_request_t *r)
{
    tw_response_set_status(r, 304);
    tw_response_set_header(r, "ETag", "\"x\"");
    return tw_response_finish(r) ? TW_ERROR : TW_DONE;
}

static int h_nm_send(tw_request_t *r)
{
    tw_response_set_header(r, "ETag", "\"x\"");
    return tw_response_send(r, 304, NULL, NULL, 0) ? TW_ERROR : TW_DONE;
}

/* Answers with the method: shows that the handler got the request. */
static int h_method(tw_request_t *r)
{
    tw_str_t m = tw_request_method(r);
    return tw_response_send(r, 200, "text/plain", m.ptr, m.len) ? TW_ERROR : TW_DONE;
}

static void *api_confs[4] = {NULL, NULL, NULL, "routeconf"};
static void *global_confs[4] = {NULL, NULL, NULL, "globalconf"};

static const char *const get_only[] = {"GET", NULL};
static const char *const post_only[] = {"POST", NULL};
static const char *const with_options[] = {"GET", "HEAD", "OPTIONS", "TRACE", NULL};

#define ROUTE(p, fn)                                                                               \
    {                                                                                              \
        .name = p, .handler = &mod_app, .content = fn                                              \
    }
static tw_http_route_t routes[] = {
    {.name = "/hello",
     .handler = &mod_app,
     .content = h_hello,
     .methods = get_only,
     .allow = "GET, HEAD"},
    {.name = "/postonly",
     .handler = &mod_app,
     .content = h_hello,
     .methods = post_only,
     .allow = "POST"},
    {.name = "/small", .handler = &mod_app, .content = h_echo, .body_limit = 1000},
    ROUTE("/echo", h_echo),
    ROUTE("/ffail", h_filter_fails),
    ROUTE("/forever", never_resumed),
    ROUTE("/reject", h_reject),
    ROUTE("/unauth", h_unauth),
    ROUTE("/suspend", h_suspend),
    ROUTE("/big", h_big),
    ROUTE("/redir", h_redir),
    ROUTE("/loop", h_loop),
    ROUTE("/upload", h_upload),
    ROUTE("/hang", h_hang),
    ROUTE("/sbody", h_sbody),
    ROUTE("/file", h_file),
    ROUTE("/upper", h_upper),
    ROUTE("/upperfile", h_upper_file),
    ROUTE("/wrong", h_wrong),
    ROUTE("/trace", h_hello),
    ROUTE("/headers", h_header_bad),
    ROUTE("/nocontent", h_nocontent),
    ROUTE("/chunked", h_chunked_out),
    ROUTE("/activity", h_activity),
    {.name = "/api", .handler = &mod_app, .content = h_api, .module_conf = api_confs},
    ROUTE("/early", h_resume_early),
    ROUTE("/notmodified", h_not_modified),
    ROUTE("/short", h_short),
    ROUTE("/drainlow", h_drain_low),
    ROUTE("/wait", h_wait),
    ROUTE("/notify", h_notify),
    ROUTE("/upperbig", h_upper_big),
    ROUTE("/hfail", h_hfail),
    ROUTE("/secho", h_secho),
    ROUTE("/empty", h_empty),
    ROUTE("/nmfinish", h_nm_finish),
    ROUTE("/nmsend", h_nm_send),
    ROUTE("/method", h_method),
    {.name = "/listed",
     .handler = &mod_app,
     .content = h_method,
     .methods = with_options,
     .allow = "GET, HEAD, OPTIONS, TRACE"},
};

static int find_route(void *arg, tw_request_t *r, size_t listener, const tw_http_route_t **out)
{
    (void)arg;
    (void)listener;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (path_is(r, routes[i].name)) {
            *out = &routes[i];
            return 0;
        }
    }
    return 404;
}

/* ---- the fixture ------------------------------------------------------------------ */

static tw_loop_t *loop;
static tw_http_server_t srv;
static tw_phases_t *phases, *phases_filtered;
static int client = -1;
static char *rbuf;
static size_t rlen, rcap;
static bool client_eof;
static int all_closed_calls;

static tw_phases_t *build_phases(bool filters)
{
    tw_phases_t *p = tw_phases_new();
    tw_conf_error_t err;
    tw_phases_begin_module(p, &mod_a, 0);
    a_register(p, &err);
    tw_phases_begin_module(p, &mod_b, 1);
    b_register(p, &err);
    if (filters) {
        tw_phases_begin_module(p, &mod_f, 2);
        tw_phases_add_header_filter(p, f_header, 500);
        tw_phases_add_body_filter(p, f_body, 500);
    }
    char msg[256];
    ck_assert_int_eq(tw_phases_compile(p, msg, sizeof msg), 0);
    return p;
}

static void setup(void)
{
    trace[0] = '\0';
    log_count = abort_count = rewrite_passes = 0;
    last_log_status = 0;
    log_set_uri_errno = log_write_errno = wrong_set_uri_errno = loop_set_uri_errno = 0;
    upload_status = -100;
    big_write_returned_one = 0;
    hang_resumed_after_abort = false;
    all_closed_calls = 0;
    rcap = 8 << 20;
    rbuf = malloc(rcap);
    rlen = 0;
    client_eof = false;
    client = -1;

    loop = tw_loop_new();
    ck_assert_ptr_nonnull(loop);
    tw_http_server_init(&srv, loop);
    srv.modules = all_modules;
    srv.module_count = 4;
    phases = build_phases(false);
    phases_filtered = build_phases(true);
    srv.phases = tw_phases_table(phases);
    srv.find_route = find_route;
    srv.global_conf = global_confs;
    memset(&activity_rec, 0, sizeof activity_rec);
    seen_activity[0] = '\0';
    drained_now = 0;
    waiting = NULL;

    snprintf(file_path, sizeof file_path, "/tmp/tw_test_file_%d", (int)getpid());
    FILE *f = fopen(file_path, "w");
    fputs("abcdefghijklmnopqrstuvwxyz", f);
    fclose(f);
}

static void teardown(void)
{
    if (client >= 0)
        close(client);
    tw_http_server_cleanup(&srv);
    for (int i = 0; i < 3; i++)
        tw_loop_run_once(loop, 0);
    tw_loop_free(loop);
    tw_phases_free(phases);
    tw_phases_free(phases_filtered);
    unlink(file_path);
    free(rbuf);
}

/* tw_http_conn_start wants the socket non-blocking already. */
static void server_nonblock(int fd)
{
    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* A new client connection; returns its fd (also kept in `client`). */
static int connect_client(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    server_nonblock(sv[0]); /* what accept4(SOCK_NONBLOCK) gives the worker */
    ck_assert_int_eq(tw_http_conn_start(&srv, loop, sv[0], NULL, 0, 0), 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    if (client >= 0)
        close(client);
    client = sv[1];
    rlen = 0;
    client_eof = false;
    return client;
}

static void send_str(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(client, s, n);
        if (w < 0 && errno == EAGAIN) {
            tw_loop_run_once(loop, 1);
            continue;
        }
        ck_assert_int_gt(w, 0);
        s += w;
        n -= (size_t)w;
    }
}

#define SEND(lit) send_str(lit, sizeof(lit) - 1)
#define SEND_ON(fd, lit)                                                                           \
    ck_assert_int_eq(write(fd, lit, sizeof(lit) - 1), (ssize_t)(sizeof(lit) - 1))

static void read_client(void)
{
    for (;;) {
        if (rlen == rcap)
            return;
        ssize_t n = read(client, rbuf + rlen, rcap - rlen);
        if (n > 0) {
            rlen += (size_t)n;
            continue;
        }
        if (n == 0)
            client_eof = true;
        return;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Turns the loop (reading what the server sends) until pred holds, for at
 * most 5 s. */
static bool spin_until(bool (*pred)(void))
{
    uint64_t end = now_ms() + 5000;
    while (now_ms() < end) {
        tw_loop_run_once(loop, 2);
        read_client();
        if (pred())
            return true;
    }
    return pred();
}

/* Turns the loop for about ms milliseconds. */
static void spin_for(unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end) {
        tw_loop_run_once(loop, 1);
        read_client();
    }
}

/* ---- parsing responses ------------------------------------------------------------ */

typedef struct {
    int status;
    char head[4096];
    char *body; /* malloc'd, decoded */
    size_t body_len;
    bool chunked;
} resp_t;

static resp_t resps[16];
static size_t nresps;
static bool head_flags[16]; /* request i was a HEAD */

static const char *hdr(const resp_t *r, const char *name)
{
    static char val[512];
    size_t n = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t len = (size_t)(e - v) < sizeof val - 1 ? (size_t)(e - v) : sizeof val - 1;
            memcpy(val, v, len);
            val[len] = '\0';
            return val;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

/* Parses one response at buf; returns bytes used, 0 if incomplete. */
static size_t parse_one(const char *buf, size_t len, bool head_req, bool eof, resp_t *out)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t hlen = (size_t)(end - buf) + 4;
    ck_assert_uint_lt(hlen, sizeof out->head);
    memcpy(out->head, buf, hlen);
    out->head[hlen] = '\0';
    ck_assert_int_eq(strncmp(buf, "HTTP/1.1 ", 9), 0);
    out->status = atoi(buf + 9);
    out->body = NULL;
    out->body_len = 0;
    out->chunked = false;
    if (head_req || out->status < 200 || out->status == 204 || out->status == 304)
        return hlen;
    const char *cl = hdr(out, "Content-Length");
    const char *te = hdr(out, "Transfer-Encoding");
    if (cl) {
        size_t n = strtoul(cl, NULL, 10);
        if (len - hlen < n)
            return 0;
        out->body = malloc(n + 1);
        memcpy(out->body, buf + hlen, n);
        out->body_len = n;
        return hlen + n;
    }
    if (te) {
        ck_assert_str_eq(te, "chunked");
        out->chunked = true;
        size_t pos = hlen;
        char *body = malloc(len + 1);
        size_t blen = 0;
        for (;;) {
            const char *le = memmem(buf + pos, len - pos, "\r\n", 2);
            if (!le) {
                free(body);
                return 0;
            }
            size_t n = strtoul(buf + pos, NULL, 16);
            size_t data = (size_t)(le - buf) + 2;
            if (n == 0) {
                if (len - data < 2) {
                    free(body);
                    return 0;
                }
                ck_assert(memcmp(buf + data, "\r\n", 2) == 0);
                out->body = body;
                out->body_len = blen;
                return data + 2;
            }
            if (len - data < n + 2) {
                free(body);
                return 0;
            }
            memcpy(body + blen, buf + data, n);
            blen += n;
            ck_assert(memcmp(buf + data + n, "\r\n", 2) == 0);
            pos = data + n + 2;
        }
    }
    if (!eof)
        return 0; /* close-delimited */
    out->body = malloc(len - hlen + 1);
    memcpy(out->body, buf + hlen, len - hlen);
    out->body_len = len - hlen;
    return len;
}

static void free_resps(void)
{
    for (size_t i = 0; i < nresps; i++)
        free(resps[i].body);
    nresps = 0;
}

/* Parses everything received; returns the number of complete responses
 * (1xx interim responses count). */
static size_t parse_all(void)
{
    free_resps();
    size_t pos = 0;
    while (nresps < 16) {
        size_t n =
            parse_one(rbuf + pos, rlen - pos, head_flags[nresps], client_eof, &resps[nresps]);
        if (!n)
            break;
        pos += n;
        nresps++;
    }
    return nresps;
}

static size_t want_responses;
static bool have_responses(void)
{
    return parse_all() >= want_responses;
}
static bool have_eof(void)
{
    return client_eof;
}

static void expect_responses(size_t n)
{
    want_responses = n;
    ck_assert_msg(spin_until(have_responses), "expected %zu responses, got %zu: %.*s", n,
                  parse_all(), (int)(rlen < 600 ? rlen : 600), rbuf);
}

static void expect_eof(void)
{
    ck_assert_msg(spin_until(have_eof), "connection not closed");
}

static bool body_is(const resp_t *r, const char *s)
{
    return r->body_len == strlen(s) && memcmp(r->body, s, r->body_len) == 0;
}

static void reset_client_state(void)
{
    memset(head_flags, 0, sizeof head_flags);
    free_resps();
}

/* ---- tests --------------------------------------------------------------------------- */

START_TEST(test_simple_get)
{
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert(body_is(&resps[0], "hello\n"));
    ck_assert_str_eq(hdr(&resps[0], "Content-Length"), "6");
    ck_assert_str_eq(hdr(&resps[0], "Server"), "twister");
    ck_assert_ptr_nonnull(hdr(&resps[0], "Date"));
    ck_assert_ptr_null(hdr(&resps[0], "Connection"));
    ck_assert_int_eq(log_count, 1);
    ck_assert_int_eq(last_log_status, 200);
    ck_assert_int_eq(log_set_uri_errno, EPERM);
    ck_assert_int_eq(log_write_errno, EPERM);
    /* Still open: a second request on the same connection. */
    SEND("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_int_eq(resps[1].status, 404);
    ck_assert_ptr_nonnull(hdr(&resps[1], "Content-Length"));
    ck_assert(!client_eof);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 1);
}
END_TEST

START_TEST(test_pipelined_in_order)
{
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
         "GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(5);
    ck_assert(body_is(&resps[0], "hello\n"));
    ck_assert(body_is(&resps[1], "abcde"));
    ck_assert(body_is(&resps[2], "late\n"));
    ck_assert_int_eq(resps[3].status, 404);
    ck_assert(body_is(&resps[4], "hello\n"));
    ck_assert_int_eq(log_count, 5);
    ck_assert(!client_eof);
}
END_TEST

START_TEST(test_pipelined_sync_batch)
{
    reset_client_state();
    connect_client();
    char req[4096] = "";
    for (int i = 0; i < 12; i++)
        strcat(req, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    send_str(req, strlen(req));
    expect_responses(12);
    for (int i = 0; i < 12; i++)
        ck_assert(body_is(&resps[i], "hello\n"));
}
END_TEST

static const char chunked_req[] =
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
static const char chunked_body[] = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";

START_TEST(test_chunked_every_split)
{
    size_t blen = sizeof chunked_body - 1;
    for (size_t split = 0; split <= blen; split++) {
        reset_client_state();
        connect_client();
        send_str(chunked_req, sizeof chunked_req - 1);
        send_str(chunked_body, split);
        spin_for(2);
        send_str(chunked_body + split, blen - split);
        expect_responses(1);
        ck_assert_int_eq(resps[0].status, 200);
        ck_assert_msg(body_is(&resps[0], "hello world"), "split %zu", split);
    }
}
END_TEST

START_TEST(test_chunked_byte_by_byte)
{
    reset_client_state();
    connect_client();
    char all[512];
    snprintf(all, sizeof all, "%s%s", chunked_req, chunked_body);
    for (size_t i = 0; all[i]; i++) {
        send_str(all + i, 1);
        tw_loop_run_once(loop, 0);
    }
    expect_responses(1);
    ck_assert(body_is(&resps[0], "hello world"));
}
END_TEST

START_TEST(test_chunked_bad_framing)
{
    reset_client_state();
    connect_client();
    SEND("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 400);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
}
END_TEST

START_TEST(test_stream_body_pause)
{
    reset_client_state();
    connect_client();
    SEND("POST /sbody HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
    spin_for(3);
    SEND("56789GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert(body_is(&resps[0], "0123456789"));
    ck_assert(body_is(&resps[1], "hello\n"));
}
END_TEST

static bool sbody_was_resumed(void)
{
    return sbody_resumed;
}

/* The time a handler keeps the body paused is the server's, not the
 * client's: it does not count against min_body_rate (the client used to
 * get a 408 as soon as the handler resumed reading). */
START_TEST(test_body_rate_ignores_server_pause)
{
    srv.min_body_rate = 1000; /* 1 byte/ms */
    srv.body_rate_grace_ms = 500;
    sbody_pause_ms = 600; /* longer than the grace */
    sbody_resumed = false;
    reset_client_state();
    connect_client();
    SEND("POST /sbody HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
    ck_assert(spin_until(sbody_was_resumed));
    spin_for(50); /* the client is a little slow after the resume */
    SEND("56789");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert(body_is(&resps[0], "0123456789"));
    sbody_pause_ms = 10;
}
END_TEST

/* A client that sends at exactly min_body_rate is served: the deadline is
 * measured over the body with a grace window on top, so it never falls on
 * the moment the next byte is due (it used to, and the client got 408). */
START_TEST(test_body_rate_boundary)
{
    srv.min_body_rate = 1000; /* 1 byte/ms */
    srv.body_rate_grace_ms = 100;
    srv.body_timeout_ms = 5000;
    reset_client_state();
    connect_client();
    SEND("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n");
    char piece[25];
    memset(piece, 'r', sizeof piece);
    uint64_t start = now_ms();
    /* 25 bytes every 25 ms: the rate exactly, each piece on its due time. */
    for (int i = 0; i < 20 && !client_eof; i++) {
        while (now_ms() < start + (uint64_t)i * 25) {
            tw_loop_run_once(loop, 1);
            read_client();
        }
        send_str(piece, sizeof piece);
    }
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_uint_eq(resps[0].body_len, 500);
}
END_TEST

static bool have_continue(void)
{
    return rlen >= 25 && memcmp(rbuf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0;
}

START_TEST(test_expect_continue_read)
{
    reset_client_state();
    connect_client();
    SEND("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    ck_assert(spin_until(have_continue));
    SEND("data");
    expect_responses(2);
    ck_assert_int_eq(resps[0].status, 100);
    ck_assert_int_eq(resps[1].status, 200);
    ck_assert(body_is(&resps[1], "data"));
    ck_assert_ptr_null(hdr(&resps[1], "Connection"));
}
END_TEST

START_TEST(test_expect_continue_rejected)
{
    reset_client_state();
    connect_client();
    SEND("POST /reject HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 413);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    ck_assert_ptr_null(strstr(rbuf, "100 Continue"));
    expect_eof();
    ck_assert_ptr_null(memmem(rbuf, rlen, "100 Continue", 12));
}
END_TEST

START_TEST(test_unread_body_closes)
{
    /* No Expect: the handler answers 401 without reading; the body must
     * never be parsed as a request. */
    reset_client_state();
    connect_client();
    SEND("POST /unauth HTTP/1.1\r\nHost: x\r\nContent-Length: 33\r\n\r\n"
         "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 401);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1);
    ck_assert_int_eq(log_count, 1);
}
END_TEST

START_TEST(test_body_limit_413)
{
    reset_client_state();
    connect_client();
    SEND("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 413);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
    /* Chunked over the limit: 413 while reading. */
    reset_client_state();
    connect_client();
    SEND("POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'x', sizeof chunk);
    SEND("2bc\r\n");
    send_str(chunk, sizeof chunk);
    SEND("\r\n2bc\r\n");
    send_str(chunk, sizeof chunk);
    SEND("\r\n0\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 413);
    expect_eof();
}
END_TEST

/* A chunk whose size line alone passes the route's limit is answered 413
 * at once: the server does not wait for (and read) the data it announces.
 * The same for a size no 63-bit length can hold, and for a size line the
 * limit is passed by before the line even ends. */
START_TEST(test_chunk_size_over_limit)
{
    static const char *const sizes[] = {
        "40000000\r\n",             /* 1 GiB, no data sent */
        "3e8\r\n",                  /* 1000 bytes: exactly the limit, then more */
        "ffffffffffffffffffff\r\n", /* beyond 63 bits */
        "4000000",                  /* the limit is passed before the CRLF */
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        reset_client_state();
        connect_client();
        SEND("POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        if (i == 1) {
            char chunk[1000];
            memset(chunk, 'x', sizeof chunk);
            SEND("3e8\r\n");
            send_str(chunk, sizeof chunk);
            SEND("\r\n1\r\n"); /* one byte more: refused before it arrives */
        } else {
            send_str(sizes[i], strlen(sizes[i]));
        }
        expect_responses(1);
        ck_assert_int_eq(resps[0].status, 413);
        ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
        expect_eof();
    }
}
END_TEST

static bool no_connections(void)
{
    return tw_http_server_connections(&srv) == 0;
}

/* A body filter that fails ends the response: the connection closes after
 * what was sent, and the request reaches LOG (it used to wait forever, with
 * no timer armed). */
START_TEST(test_body_filter_failure_ends_request)
{
    srv.phases = tw_phases_table(phases_filtered);
    ffail_write_errno = 0;
    reset_client_state();
    connect_client();
    SEND("GET /ffail HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_eof();
    ck_assert_int_eq(ffail_write_errno, EIO);
    ck_assert_int_eq(log_count, 1);
    ck_assert_int_eq(last_log_status, 200); /* the head was out */
    close(client);                          /* ends the lingering close */
    client = -1;
    ck_assert(spin_until(no_connections));
}
END_TEST

START_TEST(test_head)
{
    reset_client_state();
    connect_client();
    head_flags[0] = true;
    SEND("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_str_eq(hdr(&resps[0], "Content-Length"), "6");
    ck_assert_uint_eq(resps[0].body_len, 0);
    ck_assert(body_is(&resps[1], "hello\n"));
    /* HEAD of a sendfile response: no body bytes, fd closed. */
    reset_client_state();
    connect_client();
    head_flags[0] = true;
    SEND("HEAD /file HTTP/1.1\r\nHost: x\r\n\r\nGET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_str_eq(hdr(&resps[0], "Content-Length"), "26");
    ck_assert(body_is(&resps[1], "abcdefghijklmnopqrstuvwxyz"));
    /* What LOG sees: body bytes sent (none for HEAD), and a sane elapsed time. */
    ck_assert_int_eq(log_count, 4);
    ck_assert_uint_eq(log_body_bytes[0], 0);
    ck_assert_uint_eq(log_body_bytes[1], 6);
    ck_assert_uint_eq(log_body_bytes[2], 0);
    ck_assert_uint_eq(log_body_bytes[3], 26);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_lt(log_elapsed_us[i], 10 * 1000 * 1000);
}
END_TEST

START_TEST(test_keepalive_versions)
{
    /* 1.0 without keep-alive: closed after the response. */
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.0\r\n\r\n");
    expect_responses(1);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
    /* 1.0 with keep-alive: echoed, stays open. */
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_responses(1);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "keep-alive");
    SEND("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_responses(2);
    ck_assert(!client_eof);
    /* 1.0 streaming without a length: close-delimited. */
    reset_client_state();
    connect_client();
    SEND("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_eof();
    expect_responses(1);
    ck_assert(body_is(&resps[0], "abcdefgh"));
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    /* 1.1 with Connection: close. */
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect_responses(1);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
}
END_TEST

START_TEST(test_chunked_response)
{
    reset_client_state();
    connect_client();
    SEND("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert(resps[0].chunked);
    ck_assert(body_is(&resps[0], "abcdefgh"));
    ck_assert_ptr_null(hdr(&resps[0], "Content-Length"));
}
END_TEST

START_TEST(test_error_responses)
{
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        {"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501},
        {"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET /../x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reset_client_state();
        connect_client();
        send_str(cases[i].req, strlen(cases[i].req));
        expect_responses(1);
        ck_assert_msg(resps[0].status == cases[i].status, "case %zu: %d", i, resps[0].status);
        ck_assert_ptr_nonnull(hdr(&resps[0], "Content-Length"));
        ck_assert_ptr_nonnull(hdr(&resps[0], "Date"));
        ck_assert_str_eq(hdr(&resps[0], "Server"), "twister");
        ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
        ck_assert(resps[0].body_len > 0);
        expect_eof();
    }
    /* A too-long request line: 414. */
    reset_client_state();
    connect_client();
    char *big = malloc(10000);
    memset(big, 'a', 10000);
    SEND("GET /");
    send_str(big, 9000);
    SEND(" HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 414);
    expect_eof();
    free(big);
}
END_TEST

START_TEST(test_405_allow)
{
    reset_client_state();
    connect_client();
    SEND("GET /postonly HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 405);
    ck_assert_str_eq(hdr(&resps[0], "Allow"), "POST");
    ck_assert_ptr_nonnull(hdr(&resps[0], "Content-Length"));
    /* 405 does not close a connection with no body pending. */
    SEND("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_int_eq(resps[1].status, 405);
    ck_assert_str_eq(hdr(&resps[1], "Allow"), "GET, HEAD");
    SEND("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    ck_assert_int_eq(resps[2].status, 200);
    ck_assert_ptr_nonnull(hdr(&resps[2], "Allow"));
    ck_assert_str_eq(hdr(&resps[2], "Content-Length"), "0");
}
END_TEST

/* An idle keep-alive connection holds nothing but its record and its
 * stream's struct: no buffers, pool, parser or timer, from the moment its
 * response is out (not after a delay). */
START_TEST(test_idle_connection_holds_nothing)
{
    reset_client_state();
    connect_client();
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 1);
    size_t idle = tw_http_server_memory(&srv);
    ck_assert_uint_le(idle, 512);
    ck_assert_uint_eq(tw_loop_timer_count(loop), 1); /* the server's rest timer only */

    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 1);
    ck_assert_uint_eq(tw_http_server_memory(&srv), idle);

    /* A pipelined batch, then a head split across reads: active (with its
     * buffers and parser) while the head is incomplete, at rest after. */
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_memory(&srv), idle);
    SEND("GET /hello HTTP/1.1\r\n");
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 0);
    ck_assert_uint_gt(tw_http_server_memory(&srv), idle);
    SEND("Host: x\r\n\r\n");
    expect_responses(4);
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 1);
    ck_assert_uint_eq(tw_http_server_memory(&srv), idle);

    /* An asynchronous handler: active while it holds the request. */
    SEND("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(3);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 0);
    expect_responses(5);
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 1);
    ck_assert_uint_eq(tw_http_server_memory(&srv), idle);
    ck_assert(!client_eof);
}
END_TEST

/* A client that announced its last request gets the response and the
 * close at once: no lingering for input that cannot come. */
START_TEST(test_close_without_linger)
{
    srv.linger_ms = 60000;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect_responses(1);
    expect_eof();
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 0);
    /* An unread body still lingers (the client may be sending it). */
    reset_client_state();
    connect_client();
    SEND("POST /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n");
    expect_responses(1);
    expect_eof();
    spin_for(5);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 1);
}
END_TEST

START_TEST(test_header_timeout)
{
    srv.header_timeout_ms = 50;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 408);
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
    ck_assert_int_eq(log_count, 1);
}
END_TEST

START_TEST(test_slowloris)
{
    srv.header_timeout_ms = 150;
    reset_client_state();
    connect_client();
    const char *req =
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    /* One byte every 10 ms takes ~800 ms; the head must be cut off. */
    for (size_t i = 0; req[i] && !client_eof; i++) {
        send_str(req + i, 1);
        spin_for(10);
    }
    expect_eof();
    parse_all();
    ck_assert_uint_eq(nresps, 1);
    ck_assert_int_eq(resps[0].status, 408);
}
END_TEST

START_TEST(test_keepalive_timeout)
{
    srv.keepalive_timeout_ms = 50;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1); /* closed silently */
    /* A connection that never sends a byte: header timeout, silently. */
    srv.header_timeout_ms = 50;
    reset_client_state();
    connect_client();
    expect_eof();
    ck_assert_uint_eq(rlen, 0);
}
END_TEST

START_TEST(test_body_timeout)
{
    srv.body_timeout_ms = 50;
    reset_client_state();
    connect_client();
    SEND("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 408);
    expect_eof();
    /* Too slow on average after the grace: also 408. */
    srv.body_timeout_ms = 5000;
    srv.min_body_rate = 1000; /* 1 byte/ms */
    srv.body_rate_grace_ms = 50;
    reset_client_state();
    connect_client();
    SEND("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    for (int i = 0; i < 100 && !client_eof; i++) {
        SEND("x");
        spin_for(5);
    }
    expect_eof();
    parse_all();
    ck_assert_int_eq(resps[0].status, 408);
}
END_TEST

START_TEST(test_abort_mid_body)
{
    reset_client_state();
    connect_client();
    SEND("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    spin_for(5);
    close(client);
    client = -1;
    uint64_t end = now_ms() + 5000;
    while (log_count == 0 && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(log_count, 1);
    ck_assert_int_eq(abort_count, 1);
    ck_assert_int_eq(upload_status, TW_ERROR);
    ck_assert_int_eq(last_log_status, 499);
    end = now_ms() + 1000;
    while (tw_http_server_connections(&srv) && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 0);
}
END_TEST

START_TEST(test_abort_suspended)
{
    reset_client_state();
    connect_client();
    SEND("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(5);
    close(client);
    client = -1;
    uint64_t end = now_ms() + 5000;
    while (log_count == 0 && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(abort_count, 1);
    ck_assert(hang_resumed_after_abort);
    ck_assert_int_eq(log_count, 1);
    end = now_ms() + 1000;
    while (tw_http_server_connections(&srv) && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 0);
}
END_TEST

/* A hard stop is the client going away for every request at once: the
 * sockets close and abort callbacks run, but a suspended request still
 * ends only when its handler resumes it (tw_request_on_abort's contract:
 * the handler may touch the request until then). */
START_TEST(test_close_all_suspended)
{
    reset_client_state();
    connect_client();
    SEND("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(5);
    tw_http_server_close_all(&srv);
    ck_assert_int_eq(abort_count, 1);
    ck_assert_int_eq(log_count, 0);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 1); /* no socket: waits for the handler */
    expect_eof();
    /* The abort callback armed a timer that resumes the request. */
    uint64_t end = now_ms() + 5000;
    while (log_count == 0 && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert(hang_resumed_after_abort);
    ck_assert_int_eq(log_count, 1);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 0);
}
END_TEST

/* What is still suspended when the server is torn down (the worker exits,
 * after the modules' exit_worker) ends then, without its handler. */
START_TEST(test_cleanup_ends_suspended)
{
    reset_client_state();
    connect_client();
    SEND("GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(5);
    tw_http_server_close_all(&srv);
    ck_assert_int_eq(abort_count, 1);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 1);
    spin_for(30);
    ck_assert_int_eq(log_count, 0);
    tw_http_server_cleanup(&srv);
    ck_assert_int_eq(log_count, 1);
    ck_assert_int_eq(last_log_status, 499);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 0);
}
END_TEST

START_TEST(test_suspend_resume_timer)
{
    reset_client_state();
    connect_client();
    SEND("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert(body_is(&resps[0], "late\n"));
    ck_assert_int_eq(log_count, 1);
}
END_TEST

static int sndbuf_small(int fd)
{
    int v = 4096;
    return setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

START_TEST(test_backpressure_stream)
{
    srv.stream.write_high_water = 64 * 1024;
    srv.stream.write_low_water = 16 * 1024;
    reset_client_state();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sndbuf_small(sv[0]);
    int v = 4096;
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    server_nonblock(sv[0]); /* what accept4(SOCK_NONBLOCK) gives the worker */
    ck_assert_int_eq(tw_http_conn_start(&srv, loop, sv[0], NULL, 0, 0), 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    client = sv[1];
    SEND("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Do not read for a while: the server must stop at the high-water mark. */
    for (int i = 0; i < 20; i++)
        tw_loop_run_once(loop, 1);
    ck_assert_int_ge(big_write_returned_one, 1);
    expect_responses(1);
    ck_assert(resps[0].chunked);
    ck_assert_uint_eq(resps[0].body_len, BIG_TOTAL);
    for (size_t i = 0; i < BIG_TOTAL; i++)
        if (resps[0].body[i] != (char)('a' + i % 26))
            ck_abort_msg("byte %zu wrong", i);
    ck_assert_int_ge(big_write_returned_one, 2);
    /* Once the last bytes are out, the connection comes to rest and gives
     * its buffers back (its request ended with output still queued). */
    spin_for(20);
    ck_assert_uint_eq(tw_http_server_resting(&srv), 1);
    ck_assert_uint_le(tw_http_server_memory(&srv), 512);
}
END_TEST

static void on_all_closed(void *arg)
{
    (void)arg;
    all_closed_calls++;
}

START_TEST(test_drain_in_flight)
{
    reset_client_state();
    connect_client();
    SEND("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(3);
    tw_http_server_drain(&srv, on_all_closed, NULL);
    expect_responses(1);
    ck_assert(body_is(&resps[0], "late\n"));
    ck_assert_str_eq(hdr(&resps[0], "Connection"), "close");
    expect_eof();
    /* The server lingers (reading) until the client closes its end too. */
    close(client);
    client = -1;
    uint64_t end = now_ms() + 1000;
    while (!all_closed_calls && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(all_closed_calls, 1);
}
END_TEST

START_TEST(test_drain_idle_grace)
{
    srv.drain_grace_ms = 60;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_ptr_null(hdr(&resps[0], "Connection"));
    tw_http_server_drain(&srv, on_all_closed, NULL);
    ck_assert_int_eq(all_closed_calls, 0); /* never inside drain */
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1);
    uint64_t end = now_ms() + 1000;
    while (!all_closed_calls && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(all_closed_calls, 1);
}
END_TEST

START_TEST(test_drain_request_during_grace)
{
    srv.drain_grace_ms = 2000;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    tw_http_server_drain(&srv, on_all_closed, NULL);
    spin_for(5);
    /* Written just as the drain began: still served, with close. */
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_int_eq(resps[1].status, 200);
    ck_assert_str_eq(hdr(&resps[1], "Connection"), "close");
    expect_eof();
}
END_TEST

START_TEST(test_drain_pipelined)
{
    srv.drain_grace_ms = 2000;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    tw_http_server_drain(&srv, on_all_closed, NULL);
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    ck_assert_ptr_null(hdr(&resps[1], "Connection"));
    ck_assert_str_eq(hdr(&resps[2], "Connection"), "close");
    expect_eof();
    /* The server lingers (reading) until the client closes its end too. */
    close(client);
    client = -1;
    uint64_t end = now_ms() + 1000;
    while (!all_closed_calls && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(all_closed_calls, 1);
}
END_TEST

/* ---- the reload hand-off: srv drains into srv2, on the same loop ---------- */

static tw_http_server_t srv2;

static int adopt_into_srv2(void *arg, int fd, const tw_handoff_conn_t *conn)
{
    (void)arg;
    ck_assert_int_eq(conn->listener_fd, 42);
    return tw_http_conn_adopt(&srv2, fd, conn, 0);
}

static void handoff_done(void *arg, void *token, bool moved)
{
    tw_http_server_handoff_done(arg, token, moved);
}

/* srv's hand-off offers to srv2's; returns both ends for freeing. */
static void handoff_setup(tw_handoff_t **out, tw_handoff_t **in)
{
    tw_http_server_init(&srv2, loop);
    srv2.modules = all_modules;
    srv2.module_count = 4;
    srv2.phases = tw_phases_table(phases);
    srv2.find_route = find_route;
    srv2.global_conf = global_confs;
    srv2.server_header = "adopter"; /* which server answered */
    static const int fds[1] = {42};
    *out = tw_handoff_new(loop, handoff_done, NULL, &srv);
    *in = tw_handoff_new(loop, NULL, adopt_into_srv2, NULL);
    int ch[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch), 0);
    ck_assert_int_eq(tw_handoff_add_channel(*out, ch[0], true), 0);
    ck_assert_int_eq(tw_handoff_add_channel(*in, ch[1], false), 0);
    srv.handoff = *out;
    srv.listen_fds = fds;
    srv.listen_fd_count = 1;
}

static void handoff_teardown(tw_handoff_t *out, tw_handoff_t *in)
{
    tw_http_server_cleanup(&srv2);
    tw_http_server_close_all(&srv);
    srv.handoff = NULL;
    tw_handoff_free(out);
    tw_handoff_free(in);
}

START_TEST(test_drain_hands_idle_connection_off)
{
    tw_handoff_t *out, *in;
    handoff_setup(&out, &in);
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_str_eq(hdr(&resps[0], "Server"), "twister");
    tw_http_server_drain(&srv, on_all_closed, NULL);
    /* Written while the socket is on its way: the adopter reads it. */
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_str_eq(hdr(&resps[1], "Server"), "adopter");
    ck_assert_ptr_null(hdr(&resps[1], "Connection"));
    ck_assert_uint_eq(srv.counters.handed_off, 1);
    ck_assert_uint_eq(srv2.counters.adopted, 1);
    ck_assert_uint_eq(srv2.counters.accepted, 0);
    uint64_t end = now_ms() + 1000;
    while (!all_closed_calls && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(all_closed_calls, 1); /* the old server is empty at once */
    ck_assert_uint_eq(tw_http_server_connections(&srv2), 1);
    ck_assert(!client_eof);
    handoff_teardown(out, in);
}
END_TEST

START_TEST(test_drain_hands_off_after_in_flight_request)
{
    tw_handoff_t *out, *in;
    handoff_setup(&out, &in);
    reset_client_state();
    connect_client();
    SEND("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(3);
    tw_http_server_drain(&srv, on_all_closed, NULL);
    expect_responses(1);
    ck_assert(body_is(&resps[0], "late\n"));
    ck_assert_ptr_null(hdr(&resps[0], "Connection")); /* kept alive: it moves */
    uint64_t end = now_ms() + 1000;
    while (!all_closed_calls && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(all_closed_calls, 1);
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_str_eq(hdr(&resps[1], "Server"), "adopter");
    handoff_teardown(out, in);
}
END_TEST

START_TEST(test_drain_falls_back_when_refused)
{
    /* srv2 has no loop yet: it refuses, and srv closes after its grace. */
    tw_handoff_t *out, *in;
    handoff_setup(&out, &in);
    srv2.loop = NULL;
    srv.drain_grace_ms = 60;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    tw_http_server_drain(&srv, on_all_closed, NULL);
    expect_eof();
    ck_assert_uint_eq(srv.counters.handed_off, 0);
    ck_assert_uint_eq(srv.counters.handoff_fallbacks, 1);
    srv2.loop = loop;
    handoff_teardown(out, in);
}
END_TEST

START_TEST(test_drain_no_connections)
{
    tw_http_server_drain(&srv, on_all_closed, NULL);
    ck_assert_int_eq(all_closed_calls, 0);
    tw_loop_run_once(loop, 0);
    ck_assert_int_eq(all_closed_calls, 1);
}
END_TEST

START_TEST(test_internal_redirect)
{
    reset_client_state();
    connect_client();
    SEND("GET /redir HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert(body_is(&resps[0], "hello-redirected\n")); /* ctx kept */
    ck_assert_int_eq(rewrite_passes, 2);
    SEND("GET /loop HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_int_eq(resps[1].status, 500);
    ck_assert_int_eq(loop_set_uri_errno, EPERM);
    ck_assert_int_eq(rewrite_passes, 2 + 11);
}
END_TEST

START_TEST(test_phase_order)
{
    reset_client_state();
    connect_client();
    SEND("GET /trace HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    /* REWRITE by (order, config index): b@100, a@500, b@500 (a is listed
     * first); a DECLINED goes on to the next handler, b's NEXT ends the
     * phase; ACCESS a@1000. */
    ck_assert_str_eq(trace, "B100 A500 B500 A1000 ");
}
END_TEST

START_TEST(test_wrong_phase)
{
    reset_client_state();
    connect_client();
    SEND("GET /wrong HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_int_eq(wrong_set_uri_errno, EPERM);
    ck_assert_int_eq(log_set_uri_errno, EPERM);
    ck_assert_int_eq(log_write_errno, EPERM);
}
END_TEST

START_TEST(test_header_validation)
{
    reset_client_state();
    connect_client();
    SEND("GET /headers HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert(body_is(&resps[0], "-1 1 -1 -1 0\n"));
    ck_assert_ptr_null(hdr(&resps[0], "Injected"));
    ck_assert_str_eq(hdr(&resps[0], "X-Good"), "fine\tvalue");
}
END_TEST

START_TEST(test_no_content)
{
    reset_client_state();
    connect_client();
    SEND("GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert_int_eq(resps[0].status, 204);
    ck_assert_ptr_null(hdr(&resps[0], "Content-Length"));
    ck_assert_ptr_null(hdr(&resps[0], "Transfer-Encoding"));
    ck_assert(body_is(&resps[1], "hello\n"));
}
END_TEST

START_TEST(test_sendfile)
{
    reset_client_state();
    connect_client();
    SEND("GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert(body_is(&resps[0], "abcdefghijklmnopqrstuvwxyz"));
}
END_TEST

START_TEST(test_filters)
{
    srv.phases = tw_phases_table(phases_filtered);
    reset_client_state();
    connect_client();
    SEND("GET /upper HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /upperfile HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    ck_assert(body_is(&resps[0], "HELLO WORLD\n"));
    ck_assert_str_eq(hdr(&resps[0], "X-Filtered"), "1");
    ck_assert(resps[0].chunked);
    ck_assert(body_is(&resps[1], "ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    ck_assert(body_is(&resps[2], "hello\n"));
    ck_assert_ptr_null(hdr(&resps[2], "X-Filtered"));
}
END_TEST

/* A pread the output pump makes for a filtered file is retried on EINTR
 * (it used to fail the response). */
START_TEST(test_filtered_file_pread_eintr)
{
    srv.phases = tw_phases_table(phases_filtered);
    pread_eintr = 2;
    reset_client_state();
    connect_client();
    SEND("GET /upperfile HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert(body_is(&resps[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    ck_assert_int_eq(pread_eintr, 0);
}
END_TEST

START_TEST(test_request_api)
{
    reset_client_state();
    connect_client();
    SEND("GET /a/../api?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 200);
    resps[0].body[resps[0].body_len] = '\0';
    ck_assert_str_eq(resps[0].body, "GET 1 /a/../api?x=1 /api x=1 11 Example.com 1 2 1 3 "
                                    "host-first 0 1 1 routeconf globalconf 0");
}
END_TEST

START_TEST(test_request_api_split_head)
{
    /* The same head one byte at a time: its fields move from the shared
     * scratch array into the request pool between reads. */
    reset_client_state();
    connect_client();
    const char *req =
        "GET /a/../api?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    for (size_t i = 0; req[i]; i++) {
        send_str(req + i, 1);
        tw_loop_run_once(loop, 0);
        if (i == 40) { /* another connection parses a head meanwhile */
            int first = client;
            client = -1;
            connect_client();
            SEND("GET /hello HTTP/1.1\r\nHost: x\r\nA: b\r\nC: d\r\n\r\n");
            expect_responses(1);
            close(client);
            client = first;
            rlen = 0;
        }
    }
    expect_responses(1);
    resps[0].body[resps[0].body_len] = '\0';
    ck_assert_str_eq(resps[0].body, "GET 1 /a/../api?x=1 /api x=1 11 Example.com 1 2 1 3 "
                                    "host-first 0 1 1 routeconf globalconf 0");
}
END_TEST

START_TEST(test_activity_record)
{
    srv.activity = &activity_rec;
    reset_client_state();
    connect_client();
    SEND("GET /activity HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert_str_eq(seen_activity, "app|CONTENT|GET /activity HTTP/1.1");
    ck_assert_str_eq(activity_rec.module, ""); /* cleared after the call */
}
END_TEST

START_TEST(test_discard_small_body)
{
    reset_client_state();
    connect_client();
    SEND("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
         "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
         "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    ck_assert_int_eq(resps[0].status, 404);
    ck_assert_ptr_null(hdr(&resps[0], "Connection"));
    ck_assert_int_eq(resps[1].status, 405);
    ck_assert(body_is(&resps[2], "hello\n"));
    ck_assert(!client_eof);
}
END_TEST

START_TEST(test_misc_responses)
{
    reset_client_state();
    connect_client();
    SEND("GET /early HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /notmodified HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /drainlow HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /short HTTP/1.1\r\nHost: x\r\n\r\n");
    want_responses = 3;
    ck_assert(spin_until(have_responses));
    ck_assert(body_is(&resps[0], "early\n"));
    ck_assert_int_eq(resps[1].status, 304);
    ck_assert_str_eq(hdr(&resps[1], "Content-Length"), "100");
    ck_assert_uint_eq(resps[1].body_len, 0);
    ck_assert(body_is(&resps[2], "drained\n"));
    ck_assert_int_eq(drained_now, 1);
    /* The short response: head says 10, 3 bytes come, then the close. */
    expect_eof();
    ck_assert(memmem(rbuf, rlen, "Content-Length: 10\r\n", 20) != NULL);
    ck_assert(rlen >= 3 && memcmp(rbuf + rlen - 3, "abc", 3) == 0);
}
END_TEST

/* RFC 9110 8.6: a HEAD or a 304 finished with nothing written sends no
 * Content-Length unless one was declared (the GET's would differ); other
 * empty responses send "Content-Length: 0". */
START_TEST(test_no_implicit_length_head_304)
{
    reset_client_state();
    connect_client();
    head_flags[1] = true;
    SEND("GET /empty HTTP/1.1\r\nHost: x\r\n\r\n"
         "HEAD /empty HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /nmfinish HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /nmsend HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /notmodified HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(6);
    ck_assert_int_eq(resps[0].status, 200);
    ck_assert_str_eq(hdr(&resps[0], "Content-Length"), "0");
    ck_assert_int_eq(resps[1].status, 200);
    ck_assert_ptr_null(hdr(&resps[1], "Content-Length"));
    ck_assert_ptr_null(hdr(&resps[1], "Transfer-Encoding"));
    for (int i = 2; i <= 3; i++) {
        ck_assert_int_eq(resps[i].status, 304);
        ck_assert_ptr_null(hdr(&resps[i], "Content-Length"));
        ck_assert_ptr_null(hdr(&resps[i], "Transfer-Encoding"));
        ck_assert_str_eq(hdr(&resps[i], "ETag"), "\"x\"");
    }
    ck_assert_str_eq(hdr(&resps[4], "Content-Length"), "100"); /* declared: kept */
    /* Nothing stray on the wire: the last response parses as hello. */
    ck_assert(body_is(&resps[5], "hello\n"));
    ck_assert(!client_eof);
}
END_TEST

/* TRACE and OPTIONS on a route without a method list are the core's: 405
 * and an answer with Allow. A route that lists them hands them over. */
START_TEST(test_trace_options_on_routes)
{
    reset_client_state();
    connect_client();
    SEND("TRACE /method HTTP/1.1\r\nHost: x\r\n\r\n"
         "OPTIONS /method HTTP/1.1\r\nHost: x\r\n\r\n"
         "OPTIONS /listed HTTP/1.1\r\nHost: x\r\n\r\n"
         "TRACE /listed HTTP/1.1\r\nHost: x\r\n\r\n"
         "OPTIONS /hello HTTP/1.1\r\nHost: x\r\n\r\n"
         "POST /method HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    expect_responses(6);
    ck_assert_int_eq(resps[0].status, 405);
    ck_assert_str_eq(hdr(&resps[0], "Allow"), TW_HTTP_ALLOW_ANY);
    ck_assert(memmem(resps[0].body, resps[0].body_len, "TRACE", 5) == NULL);
    ck_assert_int_eq(resps[1].status, 200);
    ck_assert_str_eq(hdr(&resps[1], "Allow"), TW_HTTP_ALLOW_ANY);
    ck_assert_str_eq(hdr(&resps[1], "Content-Length"), "0");
    ck_assert_uint_eq(resps[1].body_len, 0);
    ck_assert(body_is(&resps[2], "OPTIONS"));
    ck_assert(body_is(&resps[3], "TRACE"));
    ck_assert_int_eq(resps[4].status, 405); /* a list without OPTIONS */
    ck_assert_str_eq(hdr(&resps[4], "Allow"), "GET, HEAD");
    ck_assert(body_is(&resps[5], "POST"));
    ck_assert(!client_eof);
    /* Methods added by modules are listed too (the worker sets allow_any). */
    srv.allow_any = TW_HTTP_ALLOW_ANY ", PURGE";
    SEND("OPTIONS /method HTTP/1.1\r\nHost: x\r\n\r\n"
         "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(8);
    ck_assert_str_eq(hdr(&resps[6], "Allow"), TW_HTTP_ALLOW_ANY ", PURGE");
    ck_assert_str_eq(hdr(&resps[7], "Allow"), TW_HTTP_ALLOW_ANY ", PURGE");
    srv.allow_any = NULL;
}
END_TEST

/* RFC 9112 2.2: empty lines before a request line are no request. A
 * connection that received only those is idle: no 408, a silent close at
 * the keep-alive timeout (or the drain grace), and the header timeout
 * counts from the request line. */
START_TEST(test_empty_lines_keep_a_connection_idle)
{
    srv.header_timeout_ms = 30;
    srv.keepalive_timeout_ms = 150;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    uint64_t requests = srv.counters.requests, timeouts = srv.counters.timeouts;
    SEND("\r\n");
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1); /* no 408 */
    ck_assert_uint_eq(srv.counters.requests, requests);
    ck_assert_uint_eq(srv.counters.timeouts, timeouts);
    ck_assert_int_eq(log_count, 1);

    /* A CR and its LF in separate reads; a new connection (header timeout
     * for its first request line): silent too. */
    srv.header_timeout_ms = 300;
    reset_client_state();
    connect_client();
    SEND("\r");
    spin_for(5);
    SEND("\n\r\n");
    expect_eof();
    ck_assert_uint_eq(rlen, 0);

    /* Empty lines, then a request after longer than the header timeout. */
    srv.header_timeout_ms = 100;
    srv.keepalive_timeout_ms = 5000;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    SEND("\r\n\r\n");
    spin_for(200);
    ck_assert_uint_eq(parse_all(), 1);
    ck_assert(!client_eof);
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert(body_is(&resps[1], "hello\n"));
    /* They still count toward the parser's limit of empty lines (8). */
    SEND("\r\n\r\n\r\n\r\n\r\n");
    spin_for(5);
    SEND("\r\n\r\n\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    ck_assert_int_eq(resps[2].status, 400);
    expect_eof();

    /* Draining: such a connection closes after the grace, silently. */
    srv.drain_grace_ms = 30;
    reset_client_state();
    connect_client();
    SEND("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    SEND("\r\n");
    spin_for(5);
    tw_http_server_drain(&srv, on_all_closed, NULL);
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1);
}
END_TEST

/* An error page for a HEAD has no body, however early the request was
 * refused: a request line over the limit, a head timed out before its
 * target ended. */
START_TEST(test_head_error_pages_without_target)
{
    reset_client_state();
    connect_client();
    char *big = malloc(9000);
    memset(big, 'a', 9000);
    head_flags[0] = true;
    SEND("HEAD /");
    send_str(big, 9000);
    free(big);
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1);
    ck_assert_int_eq(resps[0].status, 414);
    ck_assert_uint_eq(rlen, strlen(resps[0].head)); /* nothing after the head */
    ck_assert_ptr_nonnull(hdr(&resps[0], "Content-Length"));
    ck_assert_int_eq(log_count, 1);

    srv.header_timeout_ms = 50;
    reset_client_state();
    connect_client();
    head_flags[0] = true;
    SEND("HEAD /partial-tar");
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1);
    ck_assert_int_eq(resps[0].status, 408);
    ck_assert_uint_eq(rlen, strlen(resps[0].head));

    /* A GET cut off the same way has its page. */
    reset_client_state();
    connect_client();
    SEND("GET /partial-tar");
    expect_eof();
    ck_assert_uint_eq(parse_all(), 1);
    ck_assert_int_eq(resps[0].status, 408);
    ck_assert_uint_gt(resps[0].body_len, 0);
}
END_TEST

START_TEST(test_send_timeout)
{
    srv.send_timeout_ms = 100;
    srv.stream.write_high_water = 64 * 1024;
    srv.stream.write_low_water = 16 * 1024;
    reset_client_state();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sndbuf_small(sv[0]);
    server_nonblock(sv[0]); /* what accept4(SOCK_NONBLOCK) gives the worker */
    ck_assert_int_eq(tw_http_conn_start(&srv, loop, sv[0], NULL, 0, 0), 0);
    client = sv[1];
    SEND("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The client never reads: the server gives up. */
    uint64_t end = now_ms() + 5000;
    while ((log_count == 0 || tw_http_server_connections(&srv)) && now_ms() < end)
        tw_loop_run_once(loop, 5);
    ck_assert_int_eq(log_count, 1);
    ck_assert_uint_eq(tw_http_server_connections(&srv), 0);
    ck_assert_uint_eq(srv.counters.timeouts, 1);
}
END_TEST

START_TEST(test_resume_from_other_request)
{
    reset_client_state();
    connect_client();
    int first = client;
    client = -1;
    SEND_ON(first, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    spin_for(5);
    ck_assert_ptr_nonnull(waiting);
    connect_client();
    SEND("GET /notify HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(1);
    ck_assert(body_is(&resps[0], "sent\n"));
    /* The first connection got its answer too. */
    close(client);
    client = first;
    rlen = 0;
    expect_responses(1);
    ck_assert(body_is(&resps[0], "notified\n"));
    ck_assert_int_eq(log_count, 2);
}
END_TEST

START_TEST(test_pipelined_split_behind_async)
{
    reset_client_state();
    connect_client();
    SEND("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\nGET /hel");
    spin_for(5);
    SEND("lo HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(3);
    ck_assert(body_is(&resps[0], "late\n"));
    ck_assert(body_is(&resps[1], "hello\n"));
    ck_assert(body_is(&resps[2], "hello\n"));
    /* And the connection goes on as usual. */
    SEND("GET /suspend HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(4);
    ck_assert(body_is(&resps[3], "late\n"));
}
END_TEST

START_TEST(test_filtered_sendfile_big)
{
    srv.phases = tw_phases_table(phases_filtered);
    srv.stream.write_high_water = 64 * 1024;
    srv.stream.write_low_water = 16 * 1024;
    snprintf(big_path, sizeof big_path, "/tmp/tw_test_big_%d", (int)getpid());
    FILE *f = fopen(big_path, "w");
    for (size_t i = 0; i < BIG_FILE; i++)
        fputc('a' + (int)(i % 26), f);
    fclose(f);
    reset_client_state();
    connect_client();
    SEND("GET /upperbig HTTP/1.1\r\nHost: x\r\n\r\nGET /hfail HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    unlink(big_path);
    ck_assert(resps[0].chunked);
    ck_assert_uint_eq(resps[0].body_len, BIG_FILE + 4);
    for (size_t i = 0; i < BIG_FILE; i++)
        if (resps[0].body[i] != (char)('A' + i % 26))
            ck_abort_msg("byte %zu wrong", i);
    ck_assert(memcmp(resps[0].body + BIG_FILE, "TAIL", 4) == 0);
    /* A header filter refused the second response: its error page instead. */
    ck_assert_int_eq(resps[1].status, 403);
    ck_assert_int_eq(hfail_send_rc, -1);
    ck_assert_ptr_null(memmem(rbuf, rlen, "secret", 6));
}
END_TEST

START_TEST(test_streamed_body_lookahead)
{
    /* A streaming handler answers on the first piece; a framing error later
     * in the same packet must still get a clean 400. */
    reset_client_state();
    connect_client();
    SEND("POST /secho HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n1\r\nxy\r\n0\r\n\r\n");
    expect_responses(1);
    ck_assert_int_eq(resps[0].status, 400);
    expect_eof();
    /* Valid: streamed back, chunked. */
    reset_client_state();
    connect_client();
    SEND("POST /secho HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_responses(2);
    ck_assert(body_is(&resps[0], "abcde"));
    ck_assert(body_is(&resps[1], "hello\n"));
    /* A bad chunk that arrives after the response started: the connection
     * closes (the response is cut short, never completed). */
    reset_client_state();
    connect_client();
    SEND("POST /secho HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n");
    spin_for(5);
    SEND("zz\r\n");
    expect_eof();
    ck_assert_uint_eq(parse_all(), 0);
    ck_assert_ptr_nonnull(memmem(rbuf, rlen, "abc", 3));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("http_conn");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_simple_get);
    tcase_add_test(tc, test_pipelined_in_order);
    tcase_add_test(tc, test_pipelined_sync_batch);
    tcase_add_test(tc, test_chunked_every_split);
    tcase_add_test(tc, test_chunked_byte_by_byte);
    tcase_add_test(tc, test_chunked_bad_framing);
    tcase_add_test(tc, test_stream_body_pause);
    tcase_add_test(tc, test_expect_continue_read);
    tcase_add_test(tc, test_expect_continue_rejected);
    tcase_add_test(tc, test_unread_body_closes);
    tcase_add_test(tc, test_body_limit_413);
    tcase_add_test(tc, test_chunk_size_over_limit);
    tcase_add_test(tc, test_body_filter_failure_ends_request);
    tcase_add_test(tc, test_body_rate_ignores_server_pause);
    tcase_add_test(tc, test_body_rate_boundary);
    tcase_add_test(tc, test_head);
    tcase_add_test(tc, test_keepalive_versions);
    tcase_add_test(tc, test_chunked_response);
    tcase_add_test(tc, test_error_responses);
    tcase_add_test(tc, test_405_allow);
    tcase_add_test(tc, test_idle_connection_holds_nothing);
    tcase_add_test(tc, test_close_without_linger);
    tcase_add_test(tc, test_header_timeout);
    tcase_add_test(tc, test_slowloris);
    tcase_add_test(tc, test_keepalive_timeout);
    tcase_add_test(tc, test_body_timeout);
    tcase_add_test(tc, test_abort_mid_body);
    tcase_add_test(tc, test_abort_suspended);
    tcase_add_test(tc, test_close_all_suspended);
    tcase_add_test(tc, test_cleanup_ends_suspended);
    tcase_add_test(tc, test_filtered_file_pread_eintr);
    tcase_add_test(tc, test_suspend_resume_timer);
    tcase_add_test(tc, test_backpressure_stream);
    tcase_add_test(tc, test_drain_in_flight);
    tcase_add_test(tc, test_drain_idle_grace);
    tcase_add_test(tc, test_drain_request_during_grace);
    tcase_add_test(tc, test_drain_pipelined);
    tcase_add_test(tc, test_drain_no_connections);
    tcase_add_test(tc, test_drain_hands_idle_connection_off);
    tcase_add_test(tc, test_drain_hands_off_after_in_flight_request);
    tcase_add_test(tc, test_drain_falls_back_when_refused);
    tcase_add_test(tc, test_internal_redirect);
    tcase_add_test(tc, test_phase_order);
    tcase_add_test(tc, test_wrong_phase);
    tcase_add_test(tc, test_header_validation);
    tcase_add_test(tc, test_no_content);
    tcase_add_test(tc, test_sendfile);
    tcase_add_test(tc, test_filters);
    tcase_add_test(tc, test_request_api);
    tcase_add_test(tc, test_request_api_split_head);
    tcase_add_test(tc, test_activity_record);
    tcase_add_test(tc, test_discard_small_body);
    tcase_add_test(tc, test_misc_responses);
    tcase_add_test(tc, test_no_implicit_length_head_304);
    tcase_add_test(tc, test_trace_options_on_routes);
    tcase_add_test(tc, test_empty_lines_keep_a_connection_idle);
    tcase_add_test(tc, test_head_error_pages_without_target);
    tcase_add_test(tc, test_send_timeout);
    tcase_add_test(tc, test_resume_from_other_request);
    tcase_add_test(tc, test_pipelined_split_behind_async);
    tcase_add_test(tc, test_filtered_sendfile_big);
    tcase_add_test(tc, test_streamed_body_lookahead);
    suite_add_tcase(s, tc);
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
