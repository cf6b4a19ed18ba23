/* realip — the real client behind trusted proxies, after nginx's realip:
 *
 *   realip: { from: [10.0.0.0/8, "fd00::/8"], header: X-Forwarded-For, recursive: true }
 *
 * Only when the immediate peer is in `from` is the header believed. For
 * X-Forwarded-For (a list, every field of it, oldest hop first) the
 * client is the right-most address; with `recursive: true` the right-most
 * one that is not itself trusted (nginx's real_ip_recursive), so a chain
 * of our own proxies is skipped but nothing a client wrote to the left of
 * it is believed. Any other header holds one address (X-Real-IP). The
 * address found replaces the peer (tw_request_set_peer) in POST_READ,
 * before anything else looks at it: access rules, rate limits, logs, the
 * X-Forwarded-For a proxy sends on. Top level only (it runs before
 * routing). $realip_remote_addr keeps the proxy's own address. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <twister/twister.h>

#include "cidr.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    cidr_t *from;
    size_t nfrom;
    const char *header;
    bool is_list; /* X-Forwarded-For: comma-separated hops */
    bool recursive;
} realip_conf_t;

/* Hops examined per request: a longer chain is cut at its right end. */
#define MAX_HOPS 32

static int realip_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                            void **conf, tw_conf_error_t *err)
{
    *conf = NULL;
    if (node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0'))
        return 0;
    if (scope == TW_SCOPE_ROUTE)
        return tw_conf_error(err, node,
                             "realip goes at the top level: it runs before the route is known");
    static const char *const keys[] = {"from", "header", "recursive", NULL};
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    realip_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    memset(c, 0, sizeof *c);
    c->header = "X-Forwarded-For";
    const tw_conf_node_t *from = tw_conf_map_get(node, "from"), *n;
    if (!from)
        return tw_conf_error(err, node, "missing 'from' (the proxies whose header is believed)");
    if (tw_conf_type(from) != TW_CONF_LIST || tw_conf_count(from) == 0)
        return tw_conf_error(err, from, "expected a list of addresses or CIDR blocks");
    c->nfrom = tw_conf_count(from);
    c->from = tw_configure_alloc(cf, c->nfrom * sizeof *c->from);
    if (!c->from)
        return tw_conf_error(err, from, "out of memory");
    for (size_t i = 0; i < c->nfrom; i++) {
        const tw_conf_node_t *item = tw_conf_list_item(from, i);
        const char *t = tw_conf_type(item) == TW_CONF_SCALAR ? tw_conf_scalar(item) : "";
        char why[200];
        if (cidr_parse(t, strlen(t), &c->from[i], why, sizeof why) != 0)
            return tw_conf_error(err, item, "%s", why);
    }
    if ((n = tw_conf_map_get(node, "header"))) {
        if (tw_conf_get_string(n, &c->header, err) != 0)
            return -1;
        for (const char *p = c->header; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == ':' || (unsigned char)*p >= 0x7f)
                return tw_conf_error(err, n, "'%s' is not a header name", c->header);
        if (!*c->header)
            return tw_conf_error(err, n, "expected a header name");
    }
    c->is_list = strcasecmp(c->header, "X-Forwarded-For") == 0;
    if ((n = tw_conf_map_get(node, "recursive")) && tw_conf_get_bool(n, &c->recursive, err) != 0)
        return -1;
    *conf = c;
    return 0;
}

/* Parses one hop: an address, "v4:port" or "[v6]:port" (what some load
 * balancers write). */
static bool parse_hop(const char *p, size_t len, struct sockaddr_storage *sa, socklen_t *salen)
{
    if (len && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (!close)
            return false;
        return cidr_parse_addr(p + 1, (size_t)(close - p - 1), sa, salen) == 0;
    }
    if (cidr_parse_addr(p, len, sa, salen) == 0)
        return true;
    const char *colon = memchr(p, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - p) - 1))
        return cidr_parse_addr(p, (size_t)(colon - p), sa, salen) == 0;
    return false;
}

typedef struct {
    const char *p;
    size_t len;
} hop_t;

/* The hops of every field of the header, oldest first (the last MAX_HOPS). */
static size_t collect_hops(tw_request_t *r, const char *name, hop_t *hops)
{
    size_t n = 0, total = 0;
    for (const tw_header_t *h = tw_request_header(r, name); h;
         h = tw_request_header_next(r, name, h)) {
        const char *p = h->value.ptr, *end = p + h->value.len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *item_end = comma ? comma : end;
            const char *a = p, *b = item_end;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            /* A ring of the last MAX_HOPS: the right end is what counts. */
            hops[total++ % MAX_HOPS] = (hop_t){a, (size_t)(b - a)};
            p = comma ? comma + 1 : end;
        }
    }
    n = total < MAX_HOPS ? total : MAX_HOPS;
    if (total > MAX_HOPS) {
        hop_t ordered[MAX_HOPS];
        for (size_t i = 0; i < MAX_HOPS; i++)
            ordered[i] = hops[(total + i) % MAX_HOPS];
        memcpy(hops, ordered, sizeof ordered);
    }
    return n;
}

static int realip_post_read(tw_request_t *r)
{
    const realip_conf_t *c = tw_request_global_conf(r, &twister_module_v1);
    if (!c || !cidr_match_any(c->from, c->nfrom, tw_request_peer(r, NULL)))
        return TW_DECLINED;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    bool found = false;
    if (!c->is_list) {
        const tw_header_t *h = tw_request_header(r, c->header);
        if (h && tw_request_header_next(r, c->header, h) == NULL)
            found = parse_hop(h->value.ptr, h->value.len, &sa, &salen);
    } else {
        hop_t hops[MAX_HOPS];
        size_t n = collect_hops(r, c->header, hops);
        /* From the right: the first hop not trusted, or the left-most if
         * the whole chain is ours. A hop that is not an address ends the
         * walk without a change: a garbled header proves nothing. */
        for (size_t i = n; i-- > 0;) {
            struct sockaddr_storage hop;
            socklen_t hoplen;
            if (!parse_hop(hops[i].p, hops[i].len, &hop, &hoplen)) {
                found = false;
                break;
            }
            sa = hop;
            salen = hoplen;
            found = true;
            if (!c->recursive || !cidr_match_any(c->from, c->nfrom, (struct sockaddr *)&hop))
                break;
        }
    }
    if (!found)
        return TW_DECLINED;
    /* The proxy's address, for $realip_remote_addr: set_peer replaces
     * what tw_request_peer_text answers. */
    const char *proxy = tw_request_peer_text(r);
    size_t len = strlen(proxy);
    char *copy = tw_request_alloc(r, len + 1);
    if (!copy)
        return TW_ERROR;
    memcpy(copy, proxy, len + 1);
    tw_request_set_ctx(r, &twister_module_v1, copy);
    if (tw_request_set_peer(r, (struct sockaddr *)&sa, salen) != 0)
        return TW_ERROR;
    return TW_DECLINED; /* others in POST_READ still run */
}

/* $realip_remote_addr (nginx's name): the address the connection came
 * from, before this module put the client's in its place. */
static tw_str_t realip_remote_addr(tw_request_t *r)
{
    const char *addr = tw_request_ctx(r, &twister_module_v1);
    if (!addr)
        addr = tw_request_peer_text(r); /* not replaced: the peer is it */
    return (tw_str_t){addr, strlen(addr)};
}

static const tw_variable_t realip_variables[] = {
    {"realip_remote_addr", realip_remote_addr, 0},
    {NULL, NULL, 0},
};

static int realip_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    return tw_phases_add(phases, TW_PHASE_POST_READ, realip_post_read, TW_ORDER_FIRST);
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "realip",
    .version = "1.0.0",
    .description = "takes the client address from a trusted proxy's header",
    .configure = realip_configure,
    .register_phases = realip_register,
    .variables = realip_variables,
};
