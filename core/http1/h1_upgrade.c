/* h1_upgrade.c — handing an HTTP/1.1 connection over to another protocol
 * (RFC 9110 7.8): the 101 head goes out through the shared head writer,
 * the connection stops reading requests, and the stream is the handler's
 * until its request ends. The connection keeps owning the stream, so a
 * tunnel still counts as a connection of its worker: a draining worker
 * waits for it up to the drain timeout, and a hard stop aborts it like any
 * request (its abort callbacks run, then it is closed). */
#include <errno.h>

#include "http1/h1.h"
#include "http1/h1_out.h"

tw_stream_t *tw_h1_upgrade(tw_transport_t *t, const tw_header_t *fields, size_t count)
{
    tw_http_conn_t *c = tw_h1_conn_of(t);
    if (!tw_h1_open(c)) {
        errno = EPIPE;
        return NULL;
    }
    char line[64];
    tw_h1_head_t h = {.start_line = line, .fields = fields, .count = count};
    h.start_len = tw_h1_status_line(101, line);
    char *buf = tw_pool_alloc(c->w->pool, tw_h1_head_size(&h));
    if (!buf) {
        errno = ENOMEM;
        return NULL;
    }
    size_t len = tw_h1_head_write(&h, buf);
    if (c->reading) {
        tw_stream_cancel_read(c->stream);
        c->reading = false;
    }
    c->must_close = true; /* what follows is not HTTP */
    if (tw_h1_write(c, buf, len) < 0) {
        errno = EPIPE;
        return NULL;
    }
    return c->stream;
}
