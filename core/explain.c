/* explain.c — see explain.h. The request goes through the real parser,
 * path normalisation and router, so what it prints is what a worker does. */
#include "explain.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "http_conn.h"
#include "http_parser.h"
#include "phases.h"
#include "router.h"
#include "settings.h"

static void where(const tw_conf_node_t *node, char *buf, size_t len)
{
    if (node && tw_conf_file(node))
        snprintf(buf, len, "%s:%u:%u", tw_conf_file(node), tw_conf_line(node),
                 tw_conf_column(node));
    else
        snprintf(buf, len, "(default)");
}

static const char *kind_name(tw_match_kind_t kind)
{
    return kind == TW_MATCH_EXACT ? "path" : kind == TW_MATCH_REGEX ? "regex" : "prefix";
}

static int listener_port(const tw_listener_conf_t *l)
{
    if (l->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
}

/* Whether route r alone would match path (the router's rules, without the
 * precedence between routes). */
static bool route_matches(const tw_route_t *r, const char *path, size_t len)
{
    if (r->kind == TW_MATCH_EXACT)
        return r->pattern_len == len && memcmp(r->pattern, path, len) == 0;
    if (r->kind == TW_MATCH_PREFIX)
        return r->pattern_len <= len && memcmp(r->pattern, path, r->pattern_len) == 0;
    char *z = strndup(path, len);
    bool ok = z && regexec(&r->regex, z, 0, NULL, 0) == 0;
    free(z);
    return ok;
}

static void explain_server(const tw_settings_t *s, const tw_server_conf_t *srv,
                           const tw_listener_conf_t *l, const char *host, size_t host_len,
                           FILE *out)
{
    char at[512];
    where(srv->node, at, sizeof at);
    fprintf(out, "server   %s at %s\n", srv->name, at);
    for (size_t i = 0; i < srv->nserver_names; i++) {
        const char *name = srv->server_names[i];
        size_t n = strlen(name);
        bool exact = n == host_len && strncasecmp(name, host, n) == 0;
        bool wild = name[0] == '*' && host_len > n - 1 &&
                    strncasecmp(host + host_len - (n - 1), name + 1, n - 1) == 0;
        if (exact || wild) {
            where(srv->server_name_nodes[i], at, sizeof at);
            fprintf(out, "         why: Host '%.*s' matches server_names entry '%s' (%s, at %s)\n",
                    (int)host_len, host, name, exact ? "exact" : "wildcard", at);
            return;
        }
    }
    (void)s;
    if (host_len)
        fprintf(out,
                "         why: no server_names entry on %s matches Host '%.*s': the "
                "listener's first server is the default\n",
                l->text, (int)host_len, host);
    else
        fprintf(out, "         why: no Host: the listener's first server is the default\n");
}

static void explain_routes(const tw_server_conf_t *srv, const tw_route_t *chosen,
                           const tw_route_match_t *match, const char *path, size_t len, FILE *out)
{
    char at[512];
    if (!chosen) {
        fprintf(out, "route    none: the request is answered 404\n");
    } else {
        where(chosen->node, at, sizeof at);
        fprintf(out, "route    %s at %s\n", chosen->http.name, at);
        if (chosen->kind == TW_MATCH_EXACT)
            fprintf(out, "         why: exact path match (exact paths are tried first)\n");
        else if (chosen->kind == TW_MATCH_REGEX)
            fprintf(out, "         why: the first regex route, in config order, that matches "
                         "(regexes are tried after exact paths)\n");
        else
            fprintf(out, "         why: the longest prefix that starts the path (prefixes are "
                         "tried after exact paths and regexes)\n");
        for (size_t i = 1; chosen->kind == TW_MATCH_REGEX && i < match->count; i++)
            if (match->captures[i].rm_so >= 0)
                fprintf(out, "         $%zu = '%.*s'\n", i,
                        (int)(match->captures[i].rm_eo - match->captures[i].rm_so),
                        path + match->captures[i].rm_so);
    }
    fprintf(out, "         every route of %s, in config order:\n", srv->name);
    for (size_t i = 0; i < srv->nroutes; i++) {
        const tw_route_t *r = &srv->routes[i];
        where(r->node, at, sizeof at);
        const char *verdict = r == chosen                   ? "MATCHES (chosen)"
                              : route_matches(r, path, len) ? "matches, but loses to the chosen one"
                                                            : "does not match";
        fprintf(out, "           routes[%zu] %-6s %-24s %s (%s)\n", i, kind_name(r->kind),
                r->pattern, verdict, at);
    }
}

/* The modules[] entry of module i, and whether route has a section for it. */
static void module_note(const tw_generation_t *g, const tw_route_t *route, const tw_module_t *m,
                        size_t mi, char *buf, size_t len)
{
    char at[512];
    where(mi < g->snapshot_count ? g->snapshots[mi].node : NULL, at, sizeof at);
    const tw_conf_node_t *section = NULL;
    for (size_t k = 0; route && k < route->nsections; k++)
        if (strcmp(route->sections[k].name, m->name) == 0)
            section = route->sections[k].key;
    char sec[512];
    if (section)
        where(section, sec, sizeof sec);
    snprintf(buf, len, "loaded at %s; %s%s", at,
             section ? "route section at " : "no section on this route", section ? sec : "");
}

static size_t module_index(const tw_http_server_t *h, const tw_module_t *m)
{
    for (size_t i = 0; i < h->module_count; i++)
        if (h->modules[i] == m)
            return i;
    return SIZE_MAX;
}

static void print_entries(const tw_http_server_t *h, const tw_generation_t *g,
                          const tw_route_t *route, const char *title, size_t from, size_t to,
                          FILE *out)
{
    const tw_phase_table_t *t = h->phases;
    if (!t || from == to) {
        fprintf(out, "  %-13s(none)\n", title);
        return;
    }
    fprintf(out, "  %s\n", title);
    for (size_t i = from; i < to; i++) {
        const tw_phase_entry_t *e = &t->entries[i];
        char note[1200];
        module_note(g, route, e->module, module_index(h, e->module), note, sizeof note);
        fprintf(out, "    %zu. %-14s order %-4d %s\n", i - from + 1,
                e->module ? e->module->name : "core", e->order, note);
    }
}

static void explain_phases(tw_http_server_t *h, const tw_generation_t *g, const tw_route_t *route,
                           FILE *out)
{
    const tw_phase_table_t *t = h->phases;
    static const tw_phase_t order[] = {TW_PHASE_POST_READ, TW_PHASE_REWRITE, TW_PHASE_FIND_ROUTE,
                                       TW_PHASE_ACCESS,    TW_PHASE_CONTENT, TW_PHASE_LOG};
    fprintf(out, "phases, in the order they run:\n");
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        tw_phase_t p = order[k];
        if (p == TW_PHASE_FIND_ROUTE) {
            fprintf(out, "  %-13score (the route above)\n", "FIND_ROUTE");
            continue;
        }
        if (p == TW_PHASE_CONTENT) {
            const tw_module_t *m = route ? route->http.handler : NULL;
            char note[1200] = "";
            if (m)
                module_note(g, route, m, module_index(h, m), note, sizeof note);
            char at[512];
            where(route ? route->handler_node : NULL, at, sizeof at);
            if (m)
                fprintf(out, "  %-13s%s (handler: at %s; %s)\n", "CONTENT", m->name, at, note);
            else
                fprintf(out, "  %-13s(no handler: 404)\n", "CONTENT");
            continue;
        }
        size_t from = t ? t->phase_start[p] : 0, to = t ? t->phase_start[p + 1] : 0;
        print_entries(h, g, route, tw_phase_name(p), from, to, out);
    }
    fprintf(out, "filters, in the order they run:\n");
    print_entries(h, g, route, "header", t ? t->header_filter_start : 0,
                  t ? t->body_filter_start : 0, out);
    print_entries(h, g, route, "body", t ? t->body_filter_start : 0, t ? t->count : 0, out);
}

/* tw_conf_dump of node, each line indented by four spaces. */
static void dump_indented(const tw_conf_node_t *node, FILE *out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return;
    tw_conf_dump(node, mem);
    fclose(mem);
    for (char *line = text; line && *line;) {
        size_t n = strcspn(line, "\n");
        fprintf(out, "    %.*s\n", (int)n, line);
        line += n + (line[n] == '\n');
    }
    free(text);
}

static void explain_settings(const tw_settings_t *s, const tw_route_t *route, FILE *out)
{
    char at[512];
    fprintf(out, "module settings in effect:\n");
    bool any = false;
    for (size_t k = 0; k < s->nsections; k++) {
        where(s->sections[k].key, at, sizeof at);
        fprintf(out, "  %s (global section, at %s):\n", s->sections[k].name, at);
        dump_indented(s->sections[k].node, out);
        any = true;
    }
    for (size_t k = 0; route && k < route->nsections; k++) {
        where(route->sections[k].key, at, sizeof at);
        fprintf(out, "  %s (this route, at %s):\n", route->sections[k].name, at);
        dump_indented(route->sections[k].node, out);
        any = true;
    }
    if (!any)
        fprintf(out, "  (none: every module runs with its defaults)\n");
}

int tw_explain(tw_runtime_t *rt, const tw_generation_t *g, const char *method, const char *url,
               FILE *out)
{
    const tw_settings_t *s = g->settings;
    tw_http_server_t *h = tw_runtime_http(rt);

    /* The head a client would send: an absolute URL's authority is its
     * Host; an origin-form URL goes without one (HTTP/1.0). */
    const char *scheme_end = strstr(url, "://");
    bool absolute = url[0] != '/' && scheme_end;
    size_t authority_len = absolute ? strcspn(scheme_end + 3, "/?#") : 0;
    size_t cap = strlen(method) + 2 * strlen(url) + 48;
    char *head = malloc(cap);
    if (!head)
        return 1;
    if (absolute)
        snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: %.*s\r\n\r\n", method, url, (int)authority_len,
                 scheme_end + 3);
    else
        snprintf(head, cap, "%s %s HTTP/1.0\r\n\r\n", method, url);
    tw_http_limits_t limits = {s->limits.request_line, s->limits.header_size, s->limits.headers};
    tw_http_field_t fields[8];
    tw_http_parser_t p;
    tw_http_parser_init(&p, &limits, fields, 8);
    p.method_filter = h->method_filter;
    p.method_filter_arg = h->method_filter_arg;
    fprintf(out, "request  %s %s\n", method, url);
    if (tw_http_parse_head(&p, head, strlen(head)) != TW_PARSE_DONE) {
        fprintf(out,
                "refused  %d %s: %s (before any route is looked at; percent-encode spaces and "
                "control characters in the URL)\n",
                p.status, tw_http_status_text(p.status), p.error ? p.error : "bad request");
        free(head);
        return 1;
    }
    char *path = malloc(p.path.len + 1);
    size_t path_len = 0;
    int bad = path ? tw_http_normalize_path(head + p.path.off, p.path.len, path, &path_len) : 400;
    if (bad) {
        fprintf(out, "refused  %d %s: the path does not normalise\n", bad,
                tw_http_status_text(bad));
        free(path);
        free(head);
        return 1;
    }
    fprintf(out, "path     %.*s (decoded and normalised)\n", (int)path_len, path);

    size_t li = 0;
    for (size_t i = 0; p.port > 0 && i < s->nlisteners; i++)
        if (listener_port(&s->listeners[i]) == p.port) {
            li = i;
            break;
        }
    const tw_listener_conf_t *l = &s->listeners[li];
    char at[512];
    where(l->node, at, sizeof at);
    fprintf(out, "listener %s at %s%s\n", l->text, at,
            p.port > 0 && listener_port(l) != p.port ? " (no listener on the URL's port: the first)"
                                                     : "");
    const char *host = head + p.host_name.off;
    size_t host_len = p.host_name.len;
    const tw_server_conf_t *srv = tw_router_find_server(s, li, host, host_len);
    if (srv)
        explain_server(s, srv, l, host, host_len, out);
    tw_route_match_t match;
    const tw_route_t *route = srv ? tw_router_match_route(s, srv, path, path_len, &match) : NULL;
    if (srv)
        explain_routes(srv, route, &match, path, path_len, out);

    if (route) {
        const tw_http_route_t *hr = &route->http;
        bool ok = true;
        if (hr->methods) {
            ok = false;
            for (const char *const *m = hr->methods; *m; m++)
                ok |= strcmp(*m, method) == 0;
        }
        if (!hr->methods)
            fprintf(out, "method   %s: accepted (the route has no method list%s)\n", method,
                    strcmp(method, "OPTIONS") == 0 ? "; the core answers OPTIONS itself" : "");
        else if (ok)
            fprintf(out, "method   %s: accepted (allowed: %s%s)\n", method, hr->allow,
                    hr->methods_declared ? ", as the handler module declared" : "");
        else if (hr->methods_declared && strcmp(method, "OPTIONS") == 0)
            fprintf(out, "method   OPTIONS: the core answers 200 with Allow: %s\n", hr->allow);
        else
            fprintf(out, "method   %s: refused 405 with Allow: %s%s\n", method, hr->allow,
                    hr->methods_declared ? " (as the handler module declared)" : "");
    }
    explain_phases(h, g, route, out);
    explain_settings(s, route, out);
    free(path);
    free(head);
    return 0;
}
