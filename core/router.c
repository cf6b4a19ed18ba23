/* router.c — server and route lookup (the rules are in router.h).
 *
 * Built once per settings, read-only afterwards: sorted arrays searched
 * with bsearch for exact names and paths; wildcard names stored as their
 * ".suffix" so a Host is matched by looking up each of its dot-suffixes,
 * longest first; prefixes kept longest first; regexes in config order. */
#include "router.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name; /* lowercase; for a wildcard the ".suffix" */
    size_t len;
    const tw_server_conf_t *server;
    const tw_conf_node_t *node; /* where it was written, for conflicts */
} name_ent_t;

typedef struct {
    name_ent_t *exact; /* sorted by (bytes, length) */
    size_t nexact;
    name_ent_t *wild; /* sorted the same way */
    size_t nwild;
} listener_tab_t;

typedef struct {
    const tw_route_t **exact; /* sorted by pattern */
    size_t nexact;
    const tw_route_t **regex; /* config order */
    size_t nregex;
    const tw_route_t **prefix; /* longest first */
    size_t nprefix;
} server_tab_t;

struct tw_router {
    listener_tab_t *listeners; /* per settings listener */
    server_tab_t *servers;     /* per settings server */
};

/* Byte order, then length: a total order on (ptr, len) strings. */
static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int cmp_name(const void *x, const void *y)
{
    const name_ent_t *a = x, *b = y;
    int c = cmp_bytes(a->name, a->len, b->name, b->len);
    /* Ties in config order (servers in order, names in order within one),
     * so that a conflict is reported at its second occurrence. */
    if (!c)
        c = (a->server->index > b->server->index) - (a->server->index < b->server->index);
    if (!c)
        c = (tw_conf_line(a->node) > tw_conf_line(b->node)) -
            (tw_conf_line(a->node) < tw_conf_line(b->node));
    if (!c)
        c = (tw_conf_column(a->node) > tw_conf_column(b->node)) -
            (tw_conf_column(a->node) < tw_conf_column(b->node));
    return c;
}

static int cmp_route_pattern(const void *x, const void *y)
{
    const tw_route_t *a = *(const tw_route_t *const *)x, *b = *(const tw_route_t *const *)y;
    int c = cmp_bytes(a->pattern, a->pattern_len, b->pattern, b->pattern_len);
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

static int cmp_route_longest(const void *x, const void *y)
{
    const tw_route_t *a = *(const tw_route_t *const *)x, *b = *(const tw_route_t *const *)y;
    if (a->pattern_len != b->pattern_len)
        return a->pattern_len < b->pattern_len ? 1 : -1;
    int c = memcmp(a->pattern, b->pattern, a->pattern_len);
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

static const tw_conf_node_t *pattern_node(const tw_route_t *r)
{
    static const char *const keys[] = {NULL, "path", "prefix", "regex"};
    const tw_conf_node_t *n = tw_conf_map_get(r->node, keys[r->kind]);
    return n ? n : r->node;
}

/* After sorting, equal patterns are adjacent: the second one can never
 * match, which is certainly not what the author meant. */
static int check_dup_routes(const tw_route_t **v, size_t n, tw_conf_error_t *err)
{
    for (size_t i = 1; i < n; i++) {
        const tw_route_t *a = v[i - 1], *b = v[i];
        if (a->pattern_len == b->pattern_len && !memcmp(a->pattern, b->pattern, a->pattern_len)) {
            const tw_route_t *second = a->index > b->index ? a : b, *first = a == second ? b : a;
            return tw_conf_error(err, pattern_node(second),
                                 "this route can never match: %s has the same pattern",
                                 tw_conf_path(first->node));
        }
    }
    return 0;
}

static int build_server(tw_settings_t *s, const tw_server_conf_t *srv, server_tab_t *t,
                        tw_conf_error_t *err)
{
    size_t n = srv->nroutes ? srv->nroutes : 1;
    t->exact = tw_conf_arena_alloc(s->arena, n * sizeof(*t->exact));
    t->regex = tw_conf_arena_alloc(s->arena, n * sizeof(*t->regex));
    t->prefix = tw_conf_arena_alloc(s->arena, n * sizeof(*t->prefix));
    if (!t->exact || !t->regex || !t->prefix)
        return tw_conf_error(err, srv->node, "out of memory");
    for (size_t i = 0; i < srv->nroutes; i++) {
        const tw_route_t *r = &srv->routes[i];
        if (r->kind == TW_MATCH_EXACT)
            t->exact[t->nexact++] = r;
        else if (r->kind == TW_MATCH_PREFIX)
            t->prefix[t->nprefix++] = r;
        else
            t->regex[t->nregex++] = r;
    }
    qsort(t->exact, t->nexact, sizeof(*t->exact), cmp_route_pattern);
    qsort(t->prefix, t->nprefix, sizeof(*t->prefix), cmp_route_longest);
    if (check_dup_routes(t->exact, t->nexact, err) || check_dup_routes(t->prefix, t->nprefix, err))
        return -1;
    /* Regexes: the same text twice is a dead route too (order kept). */
    for (size_t i = 0; i < t->nregex; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->regex[i]->pattern, t->regex[j]->pattern) == 0)
                return tw_conf_error(err, pattern_node(t->regex[i]),
                                     "this route can never match: %s has the same pattern",
                                     tw_conf_path(t->regex[j]->node));
    return 0;
}

static int check_dup_names(const tw_listener_conf_t *l, const name_ent_t *v, size_t n,
                           tw_conf_error_t *err)
{
    for (size_t i = 1; i < n; i++) {
        if (cmp_bytes(v[i - 1].name, v[i - 1].len, v[i].name, v[i].len))
            continue;
        /* Duplicates inside one server were rejected while parsing. */
        return tw_conf_error(err, v[i].node, "server name '%s' is already used by %s on %s",
                             tw_conf_scalar(v[i].node), v[i - 1].server->name, l->text);
    }
    return 0;
}

static int build_listener(tw_settings_t *s, const tw_listener_conf_t *l, listener_tab_t *t,
                          tw_conf_error_t *err)
{
    size_t total = 1;
    for (size_t i = 0; i < l->nservers; i++)
        total += l->servers[i]->nserver_names;
    t->exact = tw_conf_arena_alloc(s->arena, total * sizeof(*t->exact));
    t->wild = tw_conf_arena_alloc(s->arena, total * sizeof(*t->wild));
    if (!t->exact || !t->wild)
        return tw_conf_error(err, l->node, "out of memory");
    for (size_t i = 0; i < l->nservers; i++) {
        const tw_server_conf_t *srv = l->servers[i];
        for (size_t j = 0; j < srv->nserver_names; j++) {
            const char *name = srv->server_names[j];
            name_ent_t e = {name, strlen(name), srv, srv->server_name_nodes[j]};
            if (name[0] == '*') {
                e.name++; /* keep the dot: ".example.com" */
                e.len--;
                t->wild[t->nwild++] = e;
            } else {
                t->exact[t->nexact++] = e;
            }
        }
    }
    qsort(t->exact, t->nexact, sizeof(*t->exact), cmp_name);
    qsort(t->wild, t->nwild, sizeof(*t->wild), cmp_name);
    return check_dup_names(l, t->exact, t->nexact, err) ||
                   check_dup_names(l, t->wild, t->nwild, err)
               ? -1
               : 0;
}

int tw_router_build(tw_settings_t *s, tw_conf_error_t *err)
{
    struct tw_router *r = tw_conf_arena_alloc(s->arena, sizeof(*r));
    if (!r)
        return tw_conf_error(err, NULL, "out of memory");
    r->listeners = tw_conf_arena_alloc(s->arena, (s->nlisteners + 1) * sizeof(*r->listeners));
    r->servers = tw_conf_arena_alloc(s->arena, (s->nservers + 1) * sizeof(*r->servers));
    if (!r->listeners || !r->servers)
        return tw_conf_error(err, NULL, "out of memory");
    for (size_t i = 0; i < s->nservers; i++)
        if (build_server(s, &s->servers[i], &r->servers[i], err))
            return -1;
    for (size_t i = 0; i < s->nlisteners; i++)
        if (build_listener(s, &s->listeners[i], &r->listeners[i], err))
            return -1;
    s->router = r;
    return 0;
}

static const name_ent_t *find_name(const name_ent_t *v, size_t n, const char *name, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_bytes(name, len, v[mid].name, v[mid].len);
        if (c == 0)
            return &v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const tw_server_conf_t *tw_router_find_server(const tw_settings_t *s, size_t listener_index,
                                              const char *host, size_t host_len)
{
    if (!s->router || listener_index >= s->nlisteners)
        return NULL;
    const tw_listener_conf_t *l = &s->listeners[listener_index];
    const listener_tab_t *t = &s->router->listeners[listener_index];
    if (!host || !host_len || (!t->nexact && !t->nwild))
        return l->servers[0];

    /* Normalise: drop ":port" (not inside "[v6]"), a trailing dot, and
     * lowercase. Longer than a DNS name can be: no name matches. */
    size_t len = host_len;
    if (host[0] == '[') {
        const char *end = memchr(host, ']', host_len);
        if (end)
            len = (size_t)(end - host) + 1;
    } else {
        const char *colon = memchr(host, ':', host_len);
        if (colon)
            len = (size_t)(colon - host);
    }
    if (len && host[len - 1] == '.')
        len--;
    char buf[256];
    if (!len || len >= sizeof(buf))
        return l->servers[0];
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)host[i]);

    const name_ent_t *e = find_name(t->exact, t->nexact, buf, len);
    if (e)
        return e->server;
    /* "a.b.example.com": try ".b.example.com", then ".example.com", then
     * ".com" — the first found is the longest wildcard. The dot at 0 is
     * skipped so that "*.example.com" never matches ".example.com". */
    for (size_t i = 1; i < len && t->nwild; i++) {
        if (buf[i] != '.')
            continue;
        if ((e = find_name(t->wild, t->nwild, buf + i, len - i)))
            return e->server;
    }
    return l->servers[0];
}

const tw_route_t *tw_router_find_route(const tw_settings_t *s, const tw_server_conf_t *server,
                                       const char *path, size_t path_len)
{
    return tw_router_match_route(s, server, path, path_len, NULL);
}

const tw_route_t *tw_router_match_route(const tw_settings_t *s, const tw_server_conf_t *server,
                                        const char *path, size_t path_len, tw_route_match_t *match)
{
    tw_route_match_t ignored;
    if (!match)
        match = &ignored;
    match->count = 0;
    if (!s->router || !server)
        return NULL;
    const server_tab_t *t = &s->router->servers[server->index];

    size_t lo = 0, hi = t->nexact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const tw_route_t *r = t->exact[mid];
        int c = cmp_bytes(path, path_len, r->pattern, r->pattern_len);
        if (c == 0) {
            match->kind = r->kind;
            return r;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }

    for (size_t i = 0; i < t->nregex; i++) {
        const tw_route_t *r = t->regex[i];
        regmatch_t *m = match->captures;
        size_t slots =
            r->regex.re_nsub + 1 < TW_ROUTER_CAPTURES ? r->regex.re_nsub + 1 : TW_ROUTER_CAPTURES;
#ifdef REG_STARTEND
        /* Matches path[0..path_len) in place: no copy, NULs allowed. */
        m[0].rm_so = 0;
        m[0].rm_eo = (regoff_t)path_len;
        int rc = regexec(&r->regex, path, slots, m, REG_STARTEND);
#else
        char *z = strndup(path, path_len);
        int rc = z ? regexec(&r->regex, z, slots, m, 0) : REG_NOMATCH;
        free(z);
#endif
        if (rc == 0) {
            match->kind = r->kind;
            match->count = slots;
            return r;
        }
    }

    for (size_t i = 0; i < t->nprefix; i++) {
        const tw_route_t *r = t->prefix[i];
        if (r->pattern_len <= path_len && memcmp(path, r->pattern, r->pattern_len) == 0) {
            match->kind = r->kind;
            return r;
        }
    }
    return NULL;
}

const tw_route_t *tw_router_find(const tw_settings_t *s, size_t listener_index, const char *host,
                                 size_t host_len, const char *path, size_t path_len, int *status)
{
    const tw_server_conf_t *srv = tw_router_find_server(s, listener_index, host, host_len);
    const tw_route_t *r = srv ? tw_router_find_route(s, srv, path, path_len) : NULL;
    if (status)
        *status = r ? 0 : 404;
    return r;
}
