/* h1_out.c — the response on the wire: the head (status line, the
 * engine's fields, Date, Server, Content-Length or chunked, Connection),
 * body framing, the Date cache, the keep-alive decision, and the output
 * side of the transport (queue marks, flush notifications). The head
 * writer and framing functions at the top need no connection (h1_out.h);
 * the flush notifications and the send timeout close the file. */
#include "http1/h1.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "twister/log.h"

/* Unread request bodies up to this size that are already buffered when the
 * response starts are dropped instead of closing the connection. */
#define DISCARD_MAX (64 * 1024)

/* ---- heads and framing, without a connection -------------------------------- */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

size_t tw_h1_head_size(const tw_h1_head_t *h)
{
    size_t n = h->start_len + 2 + 2;
    for (size_t i = 0; i < h->count; i++)
        n += h->fields[i].name.len + 2 + h->fields[i].value.len + 2;
    for (size_t i = 0; i < h->extra_count; i++)
        n += h->extra[i].name.len + 2 + h->extra[i].value.len + 2;
    return n;
}

static char *put_fields(char *p, const tw_header_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p = put(p, f[i].name.ptr, f[i].name.len);
        p = put(p, ": ", 2);
        p = put(p, f[i].value.ptr, f[i].value.len);
        p = put(p, "\r\n", 2);
    }
    return p;
}

size_t tw_h1_head_write(const tw_h1_head_t *h, char *buf)
{
    char *p = put(buf, h->start_line, h->start_len);
    p = put(p, "\r\n", 2);
    p = put_fields(p, h->fields, h->count);
    p = put_fields(p, h->extra, h->extra_count);
    p = put(p, "\r\n", 2);
    return (size_t)(p - buf);
}

size_t tw_h1_status_line(int status, char *buf)
{
    if (status < 100 || status > 999)
        status = 500;
    const char *reason = tw_http_status_text(status);
    size_t reason_len = strlen(reason);
    if (reason_len > 40)
        reason_len = 40;
    char *p = put(buf, "HTTP/1.1 ", 9);
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, reason_len);
    return (size_t)(p - buf);
}

tw_h1_framing_t tw_h1_response_framing(int status, int64_t length, bool is_head, int version)
{
    tw_h1_framing_t f = {0};
    f.header_only = is_head || status < 200 || status == 204 || status == 304;
    if (status < 200 || status == 204)
        f.emit_length = false;
    else if (status == 304 || is_head)
        f.emit_length = length >= 0;
    else if (length >= 0)
        f.emit_length = true;
    else if (version >= 11)
        f.chunked = true;
    else
        f.close_delimited = true;
    return f;
}

size_t tw_h1_u64(uint64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

size_t tw_h1_chunk_line(size_t len, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = hex[len & 15];
        len >>= 4;
    } while (len);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\r';
    buf[n + 1] = '\n';
    return n + 2;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", formatted at most once per second. */
const char *tw_h1_date(time_t now, time_t *sec, char *buf)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (now != *sec) {
        struct tm tm;
        if (!gmtime_r(&now, &tm))
            return buf[0] ? buf : "Thu, 01 Jan 1970 00:00:00 GMT";
        /* By hand: locale-free, and no snprintf in the hot path. */
        char *p = buf;
        unsigned year = (unsigned)(tm.tm_year + 1900) % 10000;
        memcpy(p, days[tm.tm_wday % 7], 3);
        p[3] = ',';
        p[4] = ' ';
        p[5] = (char)('0' + tm.tm_mday / 10);
        p[6] = (char)('0' + tm.tm_mday % 10);
        p[7] = ' ';
        memcpy(p + 8, months[tm.tm_mon % 12], 3);
        p[11] = ' ';
        p[12] = (char)('0' + year / 1000);
        p[13] = (char)('0' + year / 100 % 10);
        p[14] = (char)('0' + year / 10 % 10);
        p[15] = (char)('0' + year % 10);
        p[16] = ' ';
        p[17] = (char)('0' + tm.tm_hour / 10);
        p[18] = (char)('0' + tm.tm_hour % 10);
        p[19] = ':';
        p[20] = (char)('0' + tm.tm_min / 10);
        p[21] = (char)('0' + tm.tm_min % 10);
        p[22] = ':';
        p[23] = (char)('0' + tm.tm_sec / 10 % 10);
        p[24] = (char)('0' + tm.tm_sec % 10);
        memcpy(p + 25, " GMT", 5);
        *sec = now;
    }
    return buf;
}

/* ---- the keep-alive decision ------------------------------------------------- */

/* Whether the response being started may keep the connection open: the
 * client, draining, an unread body, the server's limits. */
static bool keep_alive(tw_http_conn_t *c, bool engine_close)
{
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = c->w;
    if (!tw_h1_open(c) || c->must_close || engine_close || !w->client_keep_alive ||
        srv->keepalive_timeout_ms == 0)
        return false;
    bool body_pending = tw_h1_has_body(w) && w->body_state != TW_H1_BODY_COMPLETE;
    if (body_pending && w->body_state == TW_H1_BODY_UNREAD && w->body_kind == TW_BODY_LENGTH &&
        w->in && w->in_len - w->in_used >= w->content_length && w->content_length <= DISCARD_MAX) {
        /* The whole unread body is already here: drop it when the request
         * ends (it is still in this pass of the input) and stay open. */
        w->body_discard = true;
        body_pending = false;
    } else if (body_pending &&
               (w->body_state == TW_H1_BODY_UNREAD || w->body_state == TW_H1_BODY_FAILED)) {
        return false; /* unread body: we close rather than read and drop it */
    }
    if (srv->draining && !tw_h1_keep_for_handoff(c)) {
        /* Serve what the client already pipelined behind this request; the
         * last response of the batch carries the close. */
        size_t after = tw_h1_buffered_after(c);
        if (w->body_discard)
            after -= (size_t)w->content_length;
        return !body_pending && after > 0;
    }
    return true;
}

/* ---- the transport's output side -------------------------------------------- */

int tw_h1_write(tw_http_conn_t *c, const void *data, size_t len)
{
    if (!tw_h1_open(c)) {
        errno = EPIPE;
        return -1;
    }
    if (len == 0)
        return tw_h1_write_high(&c->transport) ? 1 : 0;
    if (c->w)
        c->w->out_total += len;
    return tw_stream_write(c->stream, data, len, NULL, NULL);
}

int tw_h1_write_head(tw_transport_t *t, const tw_response_head_t *head)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    tw_http_server_t *srv = c->srv;
    tw_conn_work_t *w = c->w;
    bool has_date = false, has_server = false;
    for (size_t i = 0; i < head->count; i++) {
        const tw_str_t *n = &head->headers[i].name;
        if (n->len == 4 && strncasecmp(n->ptr, "Date", 4) == 0)
            has_date = true;
        else if (n->len == 6 && strncasecmp(n->ptr, "Server", 6) == 0)
            has_server = true;
    }
    w->framing =
        tw_h1_response_framing(head->status, head->content_length, head->is_head, w->version);
    w->keep_alive = !w->framing.close_delimited && keep_alive(c, head->close);
    w->head_sent = true;
    if (!w->keep_alive)
        c->must_close = true;

    char status_line[64], length[24];
    tw_header_t extra[5];
    size_t n = 0;
    if (!has_date) {
        const char *date = tw_h1_date(tw_loop_wall_time(srv->loop), &srv->date_sec, srv->date_buf);
        extra[n++] = (tw_header_t){{"Date", 4}, {date, 29}};
    }
    const char *server = srv->server_header;
    if (server && *server && !has_server)
        extra[n++] = (tw_header_t){{"Server", 6}, {server, strlen(server)}};
    if (w->framing.emit_length)
        extra[n++] = (tw_header_t){{"Content-Length", 14},
                                   {length, tw_h1_u64((uint64_t)head->content_length, length)}};
    if (w->framing.chunked)
        extra[n++] = (tw_header_t){{"Transfer-Encoding", 17}, {"chunked", 7}};
    if (!w->keep_alive)
        extra[n++] = (tw_header_t){{"Connection", 10}, {"close", 5}};
    else if (w->version < 11)
        extra[n++] = (tw_header_t){{"Connection", 10}, {"keep-alive", 10}};
    tw_h1_head_t h = {status_line,   tw_h1_status_line(head->status, status_line),
                      head->headers, head->count,
                      extra,         n};

    size_t size = tw_h1_head_size(&h);
    char stack[1024];
    char *buf = size <= sizeof stack ? stack : tw_pool_alloc(w->pool, size);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    size_t len = tw_h1_head_write(&h, buf);
    if (tw_h1_write(c, buf, len) < 0)
        return -1;
    return w->keep_alive ? 1 : 0;
}

int tw_h1_write_body(tw_transport_t *t, const void *data, size_t len, bool last)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    tw_conn_work_t *w = c->w;
    bool chunked = w && w->framing.chunked;
    int rc = 0;
    if (len) {
        if (chunked) {
            char hdr[24];
            if (tw_h1_write(c, hdr, tw_h1_chunk_line(len, hdr)) < 0 ||
                tw_h1_write(c, data, len) < 0 || tw_h1_write(c, "\r\n", 2) < 0)
                rc = -1;
        } else if (tw_h1_write(c, data, len) < 0) {
            rc = -1;
        }
    }
    if (last && chunked && rc == 0 && tw_h1_write(c, "0\r\n\r\n", 5) < 0)
        rc = -1;
    if (rc < 0) {
        errno = EPIPE;
        return -1;
    }
    return tw_h1_write_high(t) ? 1 : 0;
}

static int queue_file(tw_http_conn_t *c, int fd, off_t off, size_t len)
{
    if (!tw_h1_open(c)) {
        close(fd);
        errno = EPIPE;
        return -1;
    }
    if (c->w)
        c->w->out_total += len;
    return tw_stream_sendfile(c->stream, fd, off, len, NULL, NULL);
}

int tw_h1_sendfile(tw_transport_t *t, int fd, off_t off, size_t len)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    int rc = 0;
    if (c->w && c->w->framing.chunked) {
        char hdr[24];
        if (tw_h1_write(c, hdr, tw_h1_chunk_line(len, hdr)) < 0) {
            close(fd);
            rc = -1;
        } else if (queue_file(c, fd, off, len) < 0 || tw_h1_write(c, "\r\n", 2) < 0) {
            rc = -1;
        }
    } else if (queue_file(c, fd, off, len) < 0) {
        rc = -1;
    }
    if (rc < 0) {
        errno = EPIPE;
        return -1;
    }
    return tw_h1_write_high(t) ? 1 : 0;
}

bool tw_h1_write_low(const tw_transport_t *t)
{
    const tw_http_conn_t *c = tw_h1_conn_of(t);
    return !tw_h1_open(c) || tw_stream_write_queued(c->stream) <= c->srv->stream.write_low_water;
}

bool tw_h1_write_high(const tw_transport_t *t)
{
    const tw_http_conn_t *c = tw_h1_conn_of(t);
    return tw_h1_open(c) && tw_stream_write_queued(c->stream) > c->srv->stream.write_high_water;
}

/* ---- flushes, drains and the send timeout -------------------------------------- */

/* Runs once everything queued before it reached the kernel (a zero-length
 * write with a callback completes in order): begins a lingering close, and
 * gives a request waiting for a drain its chance. */
static void conn_on_flushed(tw_stream_t *s, int status, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    if (c->w)
        c->w->flush_notify = false;
    if (status != TW_STREAM_OK || !tw_h1_open(c))
        return;
    tw_h1_enter(c);
    if (c->req)
        tw_request_drained(c->req);
    else if (c->output_blocked && tw_h1_write_low(&c->transport)) {
        c->output_blocked = false;
        tw_h1_timer_update(c);
    }
    tw_h1_leave(c); /* starts the linger once nothing is queued */
}

void tw_h1_notify_flushed(tw_transport_t *t)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    if (tw_h1_open(c))
        tw_stream_write(c->stream, "", 0, conn_on_flushed, c);
}

/* As above, at most one pending at a time (for the idle settling). */
void tw_h1_notify_flushed_once(tw_http_conn_t *c)
{
    if (c->w && !c->w->flush_notify && tw_h1_open(c)) {
        c->w->flush_notify = true;
        tw_h1_notify_flushed(&c->transport);
    }
}

void tw_h1_on_drain(tw_stream_t *s, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)s;
    tw_h1_enter(c);
    if (c->req) {
        tw_request_drained(c->req);
    } else if (c->output_blocked) {
        c->output_blocked = false; /* tw_h1_leave picks the next request up */
        tw_h1_timer_update(c);
    }
    tw_h1_leave(c);
}

void tw_h1_on_send_timer(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    tw_http_conn_t *c = arg;
    (void)t;
    if (!tw_h1_open(c) || !c->w)
        return;
    size_t queued = tw_stream_write_queued(c->stream);
    if (queued == 0)
        return;
    uint64_t written = c->w->out_total - queued;
    if (written != c->w->send_mark) {
        c->w->send_mark = written;
        tw_timer_start(loop, &c->w->send_timer, c->srv->send_timeout_ms);
        return;
    }
    tw_log_info("closing connection from %s: the client read nothing for %llu ms",
                tw_h1_peer_text(c), (unsigned long long)c->srv->send_timeout_ms);
    c->srv->counters.timeouts++;
    tw_stream_close(c->stream);
}
