/* edit.c — what modules change of the request itself: its header fields
 * (for the module a request is handed to next, say a proxy), the client's
 * address (the real client behind a trusted proxy) and the user it
 * authenticated as. The request keeps the parser's header array until the
 * first change, then owns a growable copy in its pool. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "request/request.h"

/* The framing the body is read with: fixed once the head is parsed. */
static bool is_framing(const char *name, size_t nlen)
{
    tw_str_t n = {name, nlen};
    return tw_req_name_is(&n, "Content-Length", 14) || tw_req_name_is(&n, "Transfer-Encoding", 17);
}

static int check_field(tw_request_t *r, const char *fn, const char *name, const char *value,
                       size_t *nlen, size_t *vlen)
{
    if (!tw_req_api_allowed(r, fn, TW_API_REQUEST))
        return -1;
    if (!name || !tw_req_valid_name(name, nlen) || is_framing(name, *nlen) ||
        (value && !tw_req_valid_value(value, vlen))) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static int remove_fields(tw_request_t *r, const char *name, size_t nlen)
{
    size_t out = 0;
    int removed = 0;
    for (size_t i = 0; i < r->header_count; i++) {
        if (tw_req_name_is(&r->headers[i].name, name, nlen))
            removed++;
        else
            r->headers[out++] = r->headers[i];
    }
    r->header_count = out;
    return removed;
}

/* Makes room for one more field, moving off the parser's array first. */
static int reserve_field(tw_request_t *r)
{
    if (r->header_count < r->header_cap)
        return 0;
    size_t cap = r->header_cap ? r->header_cap * 2 : r->header_count + 8;
    tw_header_t *h = tw_pool_alloc(r->pool, cap * sizeof *h);
    if (!h) {
        errno = ENOMEM;
        return -1;
    }
    if (r->header_count)
        memcpy(h, r->headers, r->header_count * sizeof *h);
    r->headers = h;
    r->header_cap = cap;
    return 0;
}

static int add_field(tw_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen,
                     bool replace)
{
    char *n = tw_pool_strndup(r->pool, name, nlen);
    char *v = tw_pool_strndup(r->pool, value, vlen);
    if (!n || !v) {
        errno = ENOMEM;
        return -1;
    }
    /* Copying may move the array: reserve before removing so a failure
     * leaves the request as it was. */
    if (reserve_field(r) != 0)
        return -1;
    if (replace)
        remove_fields(r, name, nlen);
    r->headers[r->header_count++] = (tw_header_t){{n, nlen}, {v, vlen}};
    return 0;
}

int tw_request_set_header(tw_request_t *r, const char *name, const char *value)
{
    size_t nlen, vlen;
    if (!value) {
        errno = EINVAL;
        return -1;
    }
    if (check_field(r, "tw_request_set_header", name, value, &nlen, &vlen) != 0)
        return -1;
    return add_field(r, name, nlen, value, vlen, true);
}

int tw_request_add_header(tw_request_t *r, const char *name, const char *value)
{
    size_t nlen, vlen;
    if (!value) {
        errno = EINVAL;
        return -1;
    }
    if (check_field(r, "tw_request_add_header", name, value, &nlen, &vlen) != 0)
        return -1;
    return add_field(r, name, nlen, value, vlen, false);
}

int tw_request_remove_header(tw_request_t *r, const char *name)
{
    size_t nlen, vlen;
    if (check_field(r, "tw_request_remove_header", name, NULL, &nlen, &vlen) != 0)
        return -1;
    return remove_fields(r, name, nlen);
}

int tw_request_set_peer(tw_request_t *r, const struct sockaddr *addr, socklen_t len)
{
    if (!tw_req_api_allowed(r, "tw_request_set_peer", TW_API_REQUEST))
        return -1;
    const void *ip;
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        ip = &((const struct sockaddr_in *)addr)->sin_addr;
        len = sizeof(struct sockaddr_in);
    } else if (addr && addr->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        ip = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        len = sizeof(struct sockaddr_in6);
    } else {
        errno = EINVAL;
        return -1;
    }
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(addr->sa_family, ip, text, sizeof text)) {
        errno = EINVAL;
        return -1;
    }
    /* Both buffers first: a failure leaves the old address whole. */
    struct sockaddr_storage *peer = r->peer ? r->peer : tw_pool_alloc(r->pool, sizeof *peer);
    char *peer_text = r->peer_text ? r->peer_text : tw_pool_alloc(r->pool, INET6_ADDRSTRLEN);
    if (!peer || !peer_text) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(peer_text, text, strlen(text) + 1);
    memset(peer, 0, sizeof *peer);
    memcpy(peer, addr, (size_t)len);
    r->peer = peer;
    r->peer_text = peer_text;
    r->peer_len = len;
    return 0;
}

int tw_request_set_user(tw_request_t *r, const char *name)
{
    if (!tw_req_api_allowed(r, "tw_request_set_user", TW_API_REQUEST))
        return -1;
    if (!name) {
        r->user = NULL;
        return 0;
    }
    size_t len;
    if (!tw_req_valid_value(name, &len)) {
        errno = EINVAL;
        return -1;
    }
    char *copy = tw_pool_strndup(r->pool, name, len);
    if (!copy) {
        errno = ENOMEM;
        return -1;
    }
    r->user = copy;
    return 0;
}

const char *tw_request_user(const tw_request_t *r)
{
    return r->user;
}
