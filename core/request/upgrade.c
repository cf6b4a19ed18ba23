/* upgrade.c — tw_request_upgrade: a handler takes the client connection
 * over after a 101. For the engine the response is then complete (status
 * 101, nothing more to send through it), so when the suspended handler
 * resumes the request goes straight to LOG and the transport closes the
 * connection. */
#include <errno.h>

#include "request/request.h"
#include "twister/upstream.h"

tw_stream_t *tw_request_upgrade(tw_request_t *r, const tw_header_t *fields, size_t count)
{
    if (!tw_req_api_allowed(r, "tw_request_upgrade", TW_API_OUTPUT))
        return NULL;
    if (r->resp_started || r->head_sent || r->finished) {
        errno = EALREADY;
        return NULL;
    }
    if (r->body_kind != TW_BODY_NONE) {
        errno = EINVAL; /* the body's bytes and the new protocol's would mix */
        return NULL;
    }
    if (!tw_req_usable(r)) {
        errno = EPIPE;
        return NULL;
    }
    if (!r->t->ops->upgrade) {
        errno = EOPNOTSUPP;
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        bool ok = fields[i].name.len > 0;
        for (size_t k = 0; ok && k < fields[i].name.len; k++) {
            unsigned char ch = (unsigned char)fields[i].name.ptr[k];
            ok = ch > 0x20 && ch < 0x7f && ch != ':';
        }
        for (size_t k = 0; ok && k < fields[i].value.len; k++) {
            unsigned char ch = (unsigned char)fields[i].value.ptr[k];
            ok = ch == '\t' || (ch >= 0x20 && ch != 0x7f);
        }
        if (!ok) {
            errno = EINVAL;
            return NULL;
        }
    }
    tw_transport_t *tr = tw_req_begin(r);
    tw_stream_t *s = r->t->ops->upgrade(r->t, fields, count);
    if (s) {
        r->status = 101;
        r->resp_started = r->head_sent = r->finished = true;
        r->header_only = true;
        r->close = true;
    }
    tw_transport_end(tr);
    return s;
}
