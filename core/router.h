/* router.h — which server and which route answer a request.
 *
 * Server: among the servers on the listener the request came in on,
 *   1. a server_names entry equal to the Host (case-insensitive, port and
 *      trailing dot ignored);
 *   2. else the wildcard "*.suffix" with the longest suffix that ends the
 *      Host ("*.example.com" matches a.example.com and a.b.example.com,
 *      not example.com);
 *   3. else the listener's first server in config order (the default).
 *
 * Route: within that server,
 *   1. an exact `path:` equal to the request path;
 *   2. else the first `regex:` route, in config order, that matches;
 *   3. else the `prefix:` route with the longest prefix of the path
 *      (a plain byte prefix: "/static" also matches "/staticky");
 *   4. else no route: status 404.
 * This is nginx's effective order (=, regex, longest prefix) without its
 * ^~ exception, so a catch-all `prefix: /` never hides a regex route.
 * Methods are not looked at: the HTTP engine checks route->http.methods.
 *
 * The tables are built once at load time (tw_settings_load calls
 * tw_router_build): exact names and paths are binary-searched, so a
 * lookup costs O(log n) plus the regexes and prefixes tried. */
#ifndef TWISTER_ROUTER_H
#define TWISTER_ROUTER_H

#include <regex.h>
#include <stddef.h>

#include "settings.h"

/* Builds s->router from s->servers and s->listeners (memory in s->arena);
 * rejects conflicting server names on a listener and duplicate route
 * patterns in a server. Returns 0 or -1 with err set. */
int tw_router_build(tw_settings_t *s, tw_conf_error_t *err);

/* The server for host on listener listener_index (the Host header value as
 * received, may carry ":port"; NULL or empty: the default server). NULL
 * only if listener_index is out of range. */
const tw_server_conf_t *tw_router_find_server(const tw_settings_t *s, size_t listener_index,
                                              const char *host, size_t host_len);

/* The route of server for path (the decoded path, without the query), or
 * NULL if none matches. */
const tw_route_t *tw_router_find_route(const tw_settings_t *s, const tw_server_conf_t *server,
                                       const char *path, size_t path_len);

/* Regex captures kept per match: $0 (the whole match) .. $9. */
#define TW_ROUTER_CAPTURES 10

/* How a route matched: its kind (settings.h) and its captures. */
typedef struct {
    tw_match_kind_t kind;
    /* For a regex route: the offsets into path of $0..$9 (rm_so -1 for a
     * group that did not take part or does not exist); count is the
     * number of slots the regex has, 1 + its groups, at most 10. */
    regmatch_t captures[TW_ROUTER_CAPTURES];
    size_t count;
} tw_route_match_t;

/* tw_router_find_route, also filling *match (which may be NULL). */
const tw_route_t *tw_router_match_route(const tw_settings_t *s, const tw_server_conf_t *server,
                                        const char *path, size_t path_len, tw_route_match_t *match);

/* Both steps: the route for (listener, Host, path) with *status = 0, or
 * NULL with *status = 404 when no route matches (or the listener index is
 * out of range). status may be NULL. */
const tw_route_t *tw_router_find(const tw_settings_t *s, size_t listener_index, const char *host,
                                 size_t host_len, const char *path, size_t path_len, int *status);

#endif
