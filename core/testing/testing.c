/* testing.c — libtwister-test (twister/testing.h): a runtime driven the
 * way a worker drives one, minus the process around it.
 *
 * A worker (worker.c) activates its generation's runtime and hands the
 * runtime's HTTP server every accepted socket. Here the generation comes
 * from a YAML string (tw_generation_prepare_string), the runtime is
 * activated in this process with a worker identity (index 0, so
 * init_worker runs), and each "accepted socket" is one end of a
 * socketpair whose other end the test holds: the real parser, phase
 * table and modules answer. The loop runs with a manual clock
 * (tw_loop_set_manual_clock) and is only ever turned without waiting, so
 * a test is deterministic and takes milliseconds. The error log goes to a
 * file in the server's temporary directory and is read back from there. */
#include "twister/testing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "generation.h"
#include "http_conn.h"
#include "internal.h"
#include "log_setup.h"
#include "runtime.h"

#ifndef TW_INSTALL_MODULE_DIR
#define TW_INSTALL_MODULE_DIR "/usr/local/lib/twister/modules"
#endif

#define MAX_ITERATIONS 100000
/* Waits for tw_loop_queue_work threads, each bounded by the loop. */
#define MAX_WORK_WAITS 20000
/* The manual clock starts here (a nonzero time, as a real clock never
 * reads 0) and the wall clock at 2026-01-01T00:00:00Z. */
#define CLOCK_START_US 1000000000ull
#define WALL_START 1767225600

typedef struct {
    char *name, *value;
} header_t;

struct tw_test_response {
    struct tw_test_response *next;
    int status;
    char *raw;
    size_t raw_len;
    char *body;
    size_t body_len;
    header_t *headers;
    size_t nheaders;
};

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

struct tw_test_conn {
    struct tw_test_conn *next;
    tw_test_server_t *srv;
    int fd;      /* the client's end, -1 once closed */
    bool eof;    /* the server closed its end */
    buf_t in;    /* everything received */
    size_t used; /* bytes of in parsed into responses */
    buf_t out;   /* queued for the server */
    size_t sent; /* bytes of out written */
    /* Whether each request sent expects a body-less answer (HEAD), in order. */
    bool *heads;
    size_t nheads, heads_cap, heads_done;
    tw_test_response_t *responses, *last_response; /* returned so far */
};

struct tw_test_server {
    char dir[PATH_MAX];
    char error[1024];
    tw_loop_t *loop;
    tw_generation_t *gen;
    tw_runtime_t *rt;
    tw_http_server_t *http;
    tw_test_conn_t *conns, *last_conn;
    unsigned peers; /* peer port numbering */
    char *log_text;
    bool log_open;
};

/* ---- small helpers ------------------------------------------------------------ */

static int buf_add(buf_t *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

static void set_error(tw_test_server_t *s, char *err, size_t errlen, const char *msg)
{
    snprintf(s->error, sizeof s->error, "%s", msg);
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path); /* best effort: go on with the rest */
    return 0;
}

static int make_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* ---- the server ------------------------------------------------------------------ */

tw_test_server_t *tw_test_server_create(void)
{
    tw_test_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/twister-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    s->loop = tw_loop_new();
    if (!s->loop) {
        int e = errno;
        rmdir(s->dir);
        free(s);
        errno = e;
        return NULL;
    }
    tw_loop_set_manual_clock(s->loop, CLOCK_START_US,
                             WALL_START - (int64_t)(CLOCK_START_US / 1000000u));
    return s;
}

const char *tw_test_dir(const tw_test_server_t *s)
{
    return s->dir;
}

int tw_test_write_file(tw_test_server_t *s, const char *relpath, const void *data, size_t len)
{
    char path[PATH_MAX + 256];
    if (!relpath || relpath[0] == '/' ||
        snprintf(path, sizeof path, "%s/%s", s->dir, relpath) >= (int)sizeof path) {
        errno = EINVAL;
        return -1;
    }
    if (make_parents(path) != 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd);
}

/* yaml with every "$TW_TEST_DIR" replaced by dir, malloc'd. */
static char *substitute(const char *yaml, const char *dir)
{
    static const char token[] = "$TW_TEST_DIR";
    buf_t b = {0};
    const char *p = yaml, *hit;
    while ((hit = strstr(p, token))) {
        if (buf_add(&b, p, (size_t)(hit - p)) || buf_add(&b, dir, strlen(dir)))
            goto oom;
        p = hit + sizeof token - 1;
    }
    if (buf_add(&b, p, strlen(p)) == 0)
        return b.p;
oom:
    free(b.p);
    return NULL;
}

int tw_test_server_start(tw_test_server_t *s, const char *yaml, char *err, size_t errlen)
{
    if (s->rt) {
        set_error(s, err, errlen, "the test server is already started");
        errno = EINVAL;
        return -1;
    }
    char *text = substitute(yaml ? yaml : "", s->dir);
    if (!text) {
        set_error(s, err, errlen, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    /* The config is named as if it were a file in the current directory,
     * so that relative paths (a plugin in the build tree) mean what they
     * say in a test run from there. */
    char name[PATH_MAX + 32];
    char cwd[PATH_MAX];
    snprintf(name, sizeof name, "%s/twister-test.yaml", getcwd(cwd, sizeof cwd) ? cwd : ".");
    const char *module_dir = getenv("TWISTER_MODULE_DIR");
    if (!module_dir || !*module_dir)
        module_dir = TW_INSTALL_MODULE_DIR;
    tw_conf_error_t cerr = {{0}};
    s->gen = tw_generation_prepare_string(name, text, strlen(text), module_dir, 1, &cerr);
    free(text);
    if (!s->gen) {
        set_error(s, err, errlen, cerr.message);
        errno = EINVAL;
        return -1;
    }

    char log_path[PATH_MAX + 16];
    snprintf(log_path, sizeof log_path, "%s/error.log", s->dir);
    if (tw_log_open(log_path) == 0)
        s->log_open = true;
    tw_log_level_t level = TW_LOG_INFO;
    tw_log_parse_level(tw_generation_log_level(s->gen), &level);
    tw_log_set_level(level);
    tw_log_set_role("worker", 1, 0);

    tw_runtime_worker_t self = {.loop = s->loop, .index = 0, .activity = NULL};
    s->rt = tw_runtime_activate(s->gen, &self, &cerr);
    if (!s->rt) {
        set_error(s, err, errlen, cerr.message);
        errno = EINVAL;
        return -1;
    }
    s->http = tw_runtime_http(s->rt);
    s->error[0] = '\0';
    return 0;
}

tw_test_server_t *tw_test_server_new(const char *yaml, char *err, size_t errlen)
{
    tw_test_server_t *s = tw_test_server_create();
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "cannot create a test server: %s", strerror(errno));
        return NULL;
    }
    if (tw_test_server_start(s, yaml, err, errlen) != 0) {
        int e = errno;
        tw_test_server_free(s);
        errno = e;
        return NULL;
    }
    return s;
}

const char *tw_test_server_error(const tw_test_server_t *s)
{
    return s->error;
}

static void response_free(tw_test_response_t *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->raw);
    free(r->body);
    free(r);
}

static void close_client(tw_test_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void tw_test_server_free(tw_test_server_t *s)
{
    if (!s)
        return;
    for (tw_test_conn_t *c = s->conns; c; c = c->next)
        close_client(c);
    if (s->http) {
        /* As a worker ends: no connection left, streams released, then the
         * modules' exit_worker hooks. */
        tw_http_server_close_all(s->http);
        tw_loop_run_once(s->loop, 0);
    }
    tw_runtime_free(s->rt);
    if (s->loop)
        tw_loop_run_once(s->loop, 0);
    tw_generation_free(s->gen);
    tw_loop_free(s->loop);
    while (s->conns) {
        tw_test_conn_t *c = s->conns;
        s->conns = c->next;
        while (c->responses) {
            tw_test_response_t *r = c->responses;
            c->responses = r->next;
            response_free(r);
        }
        free(c->in.p);
        free(c->out.p);
        free(c->heads);
        free(c);
    }
    if (s->log_open)
        tw_log_close();
    free(s->log_text);
    nftw(s->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(s);
}

/* ---- running ---------------------------------------------------------------------- */

/* Moves queued bytes to the server and what it wrote to the clients.
 * Returns how many transfers moved something. */
static int pump(tw_test_server_t *s)
{
    int moved = 0;
    for (tw_test_conn_t *c = s->conns; c; c = c->next) {
        if (c->fd < 0)
            continue;
        while (c->sent < c->out.len) {
            ssize_t n = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (errno == EPIPE || errno == ECONNRESET)
                    c->sent = c->out.len; /* the server is gone: nobody reads it */
                break;
            }
            c->sent += (size_t)n;
            moved++;
        }
        while (!c->eof) {
            char tmp[16384];
            ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n <= 0) {
                c->eof = true; /* EOF, or a reset: the server closed */
                moved++;
                break;
            }
            if (buf_add(&c->in, tmp, (size_t)n) != 0)
                break;
            moved++;
        }
    }
    return moved;
}

int tw_test_step(tw_test_server_t *s)
{
    int n = tw_loop_run_once(s->loop, 0);
    if (n < 0)
        return -1;
    return n + pump(s);
}

int tw_test_run(tw_test_server_t *s)
{
    int waits = 0;
    for (int i = 0; i < MAX_ITERATIONS; i++) {
        int n = tw_test_step(s);
        if (n < 0)
            return -1;
        if (n > 0 || tw_loop_has_pending(s->loop))
            continue;
        if (tw_loop_work_outstanding(s->loop) > 0 && waits++ < MAX_WORK_WAITS) {
            /* A thread is working for the loop: wait for its eventfd (the
             * manual clock bounds the wait by the next timer, which does
             * not fire since time does not move). */
            if (tw_loop_run_once(s->loop, 10) < 0)
                return -1;
            continue;
        }
        return 0;
    }
    errno = EBUSY;
    return -1;
}

int tw_test_advance(tw_test_server_t *s, uint64_t ms)
{
    if (tw_test_run(s) != 0)
        return -1;
    uint64_t target = tw_loop_now(s->loop) + ms;
    for (int i = 0; i < MAX_ITERATIONS; i++) {
        uint64_t next;
        if (!tw_loop_next_deadline(s->loop, &next) || next > target)
            break;
        if (next > tw_loop_now(s->loop))
            tw_loop_set_time_us(s->loop, next * 1000u);
        if (tw_test_run(s) != 0)
            return -1;
    }
    tw_loop_set_time_us(s->loop, target * 1000u);
    return tw_test_run(s);
}

uint64_t tw_test_now(const tw_test_server_t *s)
{
    return tw_loop_now(s->loop) - CLOCK_START_US / 1000u;
}

tw_loop_t *tw_test_loop(tw_test_server_t *s)
{
    return s->loop;
}

size_t tw_test_connections(const tw_test_server_t *s)
{
    return s->http ? tw_http_server_connections(s->http) : 0;
}

/* ---- connections --------------------------------------------------------------------- */

tw_test_conn_t *tw_test_connect_from(tw_test_server_t *s, const char *peer, size_t listener_index)
{
    if (!s->http || listener_index >= tw_generation_listener_count(s->gen)) {
        errno = EINVAL;
        return NULL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    uint16_t port = htons((uint16_t)(40000 + s->peers++ % 20000));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, peer, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = port;
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, peer, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = port;
        len = sizeof *in6;
    } else {
        errno = EINVAL;
        return NULL;
    }
    tw_test_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    if (tw_http_conn_start(s->http, s->loop, sv[1], (struct sockaddr *)&ss, len, listener_index) !=
        0) {
        int e = errno;
        close(sv[0]);
        free(c);
        errno = e;
        return NULL;
    }
    c->srv = s;
    c->fd = sv[0];
    c->next = s->conns;
    s->conns = c;
    return c;
}

tw_test_conn_t *tw_test_connect(tw_test_server_t *s)
{
    return tw_test_connect_from(s, "127.0.0.1", 0);
}

static int expect(tw_test_conn_t *c, bool head)
{
    if (c->nheads == c->heads_cap) {
        size_t cap = c->heads_cap ? c->heads_cap * 2 : 8;
        bool *v = realloc(c->heads, cap * sizeof *v);
        if (!v)
            return -1;
        c->heads = v;
        c->heads_cap = cap;
    }
    c->heads[c->nheads++] = head;
    return 0;
}

int tw_test_send(tw_test_conn_t *c, const void *data, size_t len)
{
    if (c->fd < 0) {
        errno = EPIPE;
        return -1;
    }
    if (expect(c, len >= 5 && memcmp(data, "HEAD ", 5) == 0) != 0)
        return -1;
    return buf_add(&c->out, data, len);
}

static bool has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return true;
    return false;
}

int tw_test_send_request(tw_test_conn_t *c, const char *method, const char *target,
                         const char *const *headers, const void *body, size_t body_len)
{
    buf_t b = {0};
    int rc = buf_add(&b, method, strlen(method)) | buf_add(&b, " ", 1) |
             buf_add(&b, target, strlen(target)) | buf_add(&b, " HTTP/1.1\r\n", 11);
    if (!has_header(headers, "Host"))
        rc |= buf_add(&b, "Host: test\r\n", 12);
    for (size_t i = 0; headers && headers[i]; i++)
        rc |= buf_add(&b, headers[i], strlen(headers[i])) | buf_add(&b, "\r\n", 2);
    if (body && !has_header(headers, "Content-Length") &&
        !has_header(headers, "Transfer-Encoding")) {
        char line[64];
        int n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", body_len);
        rc |= buf_add(&b, line, (size_t)n);
    }
    rc |= buf_add(&b, "\r\n", 2);
    if (body)
        rc |= buf_add(&b, body, body_len);
    if (rc != 0) {
        free(b.p);
        errno = ENOMEM;
        return -1;
    }
    rc = tw_test_send(c, b.p, b.len);
    free(b.p);
    return rc;
}

const char *tw_test_received(const tw_test_conn_t *c, size_t *len)
{
    if (len)
        *len = c->in.len;
    return c->in.p ? c->in.p : "";
}

bool tw_test_closed(const tw_test_conn_t *c)
{
    return c->eof;
}

void tw_test_client_close(tw_test_conn_t *c)
{
    close_client(c);
}

/* ---- parsing responses ------------------------------------------------------------------ */

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

/* Decodes a chunked body at p..end into body. Returns the bytes it spans
 * (trailers included), 0 if incomplete, -1 if malformed. */
static ssize_t dechunk(const char *p, const char *end, buf_t *body)
{
    const char *start = p;
    for (;;) {
        const char *eol = find_crlf(p, end);
        if (!eol)
            return 0;
        char *stop;
        unsigned long long size = strtoull(p, &stop, 16);
        if (stop == p)
            return -1;
        p = eol + 2;
        if (size == 0) {
            /* Trailers, up to an empty line. */
            for (;;) {
                eol = find_crlf(p, end);
                if (!eol)
                    return 0;
                bool empty = eol == p;
                p = eol + 2;
                if (empty)
                    return p - start;
            }
        }
        if ((unsigned long long)(end - p) < size + 2)
            return 0;
        if (buf_add(body, p, (size_t)size) != 0)
            return -1;
        p += size + 2;
    }
}

static const char *header_of(const tw_test_response_t *r, const char *name, size_t index)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0 && index-- == 0)
            return r->headers[i].value;
    return NULL;
}

/* Parses the next response in c->in from c->used; NULL if incomplete. */
static tw_test_response_t *parse_next(tw_test_conn_t *c)
{
    const char *start = c->in.p + c->used, *end = c->in.p + c->in.len;
    if (!c->in.p || start >= end)
        return NULL;
    const char *head_end = NULL;
    for (const char *p = start; p + 3 < end; p++)
        if (memcmp(p, "\r\n\r\n", 4) == 0) {
            head_end = p + 4;
            break;
        }
    if (!head_end)
        return NULL;
    tw_test_response_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    const char *eol = find_crlf(start, head_end);
    if (eol - start < 12 || strncmp(start, "HTTP/1.", 7) != 0)
        r->status = -1;
    else
        r->status = atoi(start + 9);
    size_t cap = 0;
    for (const char *p = eol + 2; p < head_end - 2;) {
        const char *le = find_crlf(p, head_end);
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            if (r->nheaders == cap) {
                cap = cap ? cap * 2 : 16;
                header_t *v = realloc(r->headers, cap * sizeof *v);
                if (!v)
                    break;
                r->headers = v;
            }
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            r->headers[r->nheaders].name = strndup(p, (size_t)(colon - p));
            r->headers[r->nheaders].value = strndup(v, (size_t)(ve - v));
            r->nheaders++;
        }
        p = le + 2;
    }
    bool interim = r->status >= 100 && r->status < 200 && r->status != 101;
    bool head = false;
    if (!interim && c->heads_done < c->nheads)
        head = c->heads[c->heads_done];
    buf_t body = {0};
    size_t total = (size_t)(head_end - start);
    const char *te = header_of(r, "Transfer-Encoding", 0);
    const char *cl = header_of(r, "Content-Length", 0);
    bool complete = true;
    if (interim || head || r->status == 204 || r->status == 304 || r->status == 101) {
        /* no body */
    } else if (te && strcasestr(te, "chunked")) {
        ssize_t n = dechunk(head_end, end, &body);
        if (n <= 0)
            complete = n < 0 ? c->eof : false;
        else
            total += (size_t)n;
    } else if (cl) {
        size_t want = (size_t)strtoull(cl, NULL, 10);
        if ((size_t)(end - head_end) < want)
            complete = false;
        else if (buf_add(&body, head_end, want) == 0)
            total += want;
    } else {
        complete = c->eof; /* delimited by the close */
        if (complete && buf_add(&body, head_end, (size_t)(end - head_end)) == 0)
            total += (size_t)(end - head_end);
    }
    if (!complete) {
        free(body.p);
        response_free(r);
        return NULL;
    }
    r->body = body.p ? body.p : strdup("");
    r->body_len = body.len;
    r->raw = strndup(start, total);
    r->raw_len = total;
    c->used += total;
    if (!interim && c->heads_done < c->nheads)
        c->heads_done++;
    return r;
}

tw_test_response_t *tw_test_response(tw_test_conn_t *c)
{
    tw_test_response_t *r = parse_next(c);
    if (!r)
        return NULL;
    if (c->last_response)
        c->last_response->next = r;
    else
        c->responses = r;
    c->last_response = r;
    return r;
}

/* ---- one-shot requests ------------------------------------------------------------------- */

tw_test_response_t *tw_test_request(tw_test_server_t *s, const void *raw, size_t len)
{
    tw_test_conn_t *c = tw_test_connect(s);
    if (!c)
        return NULL;
    s->last_conn = c;
    if (tw_test_send(c, raw, len) != 0 || tw_test_run(s) != 0)
        return NULL;
    return tw_test_response(c);
}

tw_test_response_t *tw_test_fetch(tw_test_server_t *s, const char *method, const char *target,
                                  const char *const *headers, const void *body, size_t body_len)
{
    tw_test_conn_t *c = tw_test_connect(s);
    if (!c)
        return NULL;
    s->last_conn = c;
    if (tw_test_send_request(c, method, target, headers, body, body_len) != 0 ||
        tw_test_run(s) != 0)
        return NULL;
    return tw_test_response(c);
}

tw_test_conn_t *tw_test_last_conn(tw_test_server_t *s)
{
    return s->last_conn;
}

/* ---- responses --------------------------------------------------------------------------- */

int tw_test_response_status(const tw_test_response_t *r)
{
    return r->status;
}

const char *tw_test_response_header(const tw_test_response_t *r, const char *name)
{
    return header_of(r, name, 0);
}

const char *tw_test_response_header_at(const tw_test_response_t *r, const char *name, size_t index)
{
    return header_of(r, name, index);
}

const char *tw_test_response_body(const tw_test_response_t *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body;
}

const char *tw_test_response_raw(const tw_test_response_t *r, size_t *len)
{
    if (len)
        *len = r->raw_len;
    return r->raw;
}

/* ---- logs and files ---------------------------------------------------------------------- */

char *tw_test_read_file(const tw_test_server_t *s, const char *relpath, size_t *len)
{
    char path[PATH_MAX + 256];
    if (!relpath || snprintf(path, sizeof path, "%s/%s", s->dir, relpath) >= (int)sizeof path) {
        errno = EINVAL;
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    buf_t b = {0};
    if (buf_add(&b, "", 0) != 0) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        char tmp[8192];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || buf_add(&b, tmp, (size_t)n) != 0)
            break;
    }
    close(fd);
    if (len)
        *len = b.len;
    return b.p;
}

const char *tw_test_error_log(tw_test_server_t *s, size_t *len)
{
    free(s->log_text);
    size_t n = 0;
    s->log_text = tw_test_read_file(s, "error.log", &n);
    if (!s->log_text) {
        s->log_text = strdup("");
        n = 0;
    }
    if (len)
        *len = n;
    return s->log_text ? s->log_text : "";
}
