/* test_router.c — core/router.c: which server and route answer. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

static const char *const yaml =
    "servers:\n"
    "  - listen: [8080, \"[::1]:8080\"]\n" /* servers[0]: the default on 8080 */
    "    server_names: [default.test]\n"
    "    routes:\n"
    "      - path: /\n"                      /* 0 */
    "      - path: /exact\n"                 /* 1 */
    "      - prefix: /static/\n"             /* 2 */
    "      - prefix: /static/img/\n"         /* 3 */
    "      - prefix: /s\n"                   /* 4 */
    "      - regex: '^/u/([0-9]+)$'\n"       /* 5 */
    "      - regex: '\\.php$'\n"             /* 6 */
    "      - regex: '^/static/special'\n"    /* 7 */
    "      - regex: '^/static/special/x$'\n" /* 8: never reached (7 first) */
    "  - listen: \"*:8080\"\n"               /* servers[1] */
    "    server_names: [example.com, \"*.example.com\", www.test.]\n"
    "    routes:\n"
    "      - prefix: /\n" /* 0 */
    "      - path: /x\n"  /* 1 */
    "  - listen: 8080\n"  /* servers[2] */
    "    server_names: [\"*.a.example.com\", \"*.com\", \"[::1]\", 127.0.0.1]\n"
    "    routes: [{path: /com}]\n"
    "  - listen: 9090\n"; /* servers[3]: no routes */

static tw_settings_t *settings;

static void setup(void)
{
    tw_conf_error_t err;
    int rc = tw_settings_load_string("r.yaml", yaml, strlen(yaml), NULL, &settings, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
}

static void teardown(void)
{
    tw_settings_free(settings);
    settings = NULL;
}

static const struct {
    size_t listener;
    const char *host; /* NULL: no Host */
    const char *path;
    int server; /* -1: none (listener out of range) */
    int route;  /* -1: 404 */
} cases[] = {
    /* routes: exact, then regexes in order, then the longest prefix */
    {0, NULL, "/", 0, 0},
    {0, "default.test", "/exact", 0, 1},
    {0, NULL, "/exact/", -2, -1},
    {0, NULL, "/EXACT", -2, -1},
    {0, NULL, "/static/a.css", 0, 2},
    {0, NULL, "/static/img/a.png", 0, 3},
    {0, NULL, "/static/img/", 0, 3},
    {0, NULL, "/static/img", 0, 2},
    {0, NULL, "/static", 0, 4},
    {0, NULL, "/sx", 0, 4},
    {0, NULL, "/s", 0, 4},
    {0, NULL, "/static/special/x", 0, 7},
    {0, NULL, "/static/x.php", 0, 6},
    {0, NULL, "/u/42", 0, 5},
    {0, NULL, "/u/", -2, -1},
    {0, NULL, "/u/42/", -2, -1},
    {0, NULL, "", -2, -1},
    {0, NULL, "/other", -2, -1},
    /* virtual hosts: exact, then the longest wildcard, then the default */
    {0, "example.com", "/y", 1, 0},
    {0, "EXAMPLE.Com", "/x", 1, 1},
    {0, "example.com:8080", "/x", 1, 1},
    {0, "example.com.", "/x", 1, 1},
    {0, "example.com.:80", "/x", 1, 1},
    {0, "www.example.com", "/x", 1, 1},
    {0, "a.b.c.example.com", "/x", 1, 1},
    {0, "a.example.com", "/x", 1, 1},
    {0, "b.a.example.com", "/com", 2, 0},
    {0, "x.y.a.example.com", "/com", 2, 0},
    {0, "foo.com", "/com", 2, 0},
    {0, "www.test", "/x", 1, 1},
    {0, "WWW.TEST.", "/x", 1, 1},
    {0, "[::1]:8080", "/com", 2, 0},
    {0, "[::1]", "/com", 2, 0},
    {0, "127.0.0.1:8080", "/com", 2, 0},
    {0, "com", "/", 0, 0},
    {0, ".com", "/", 0, 0},
    {0, "example.org", "/", 0, 0},
    {0, "www.test.org", "/", 0, 0},
    {0, "", "/", 0, 0},
    {0, ":80", "/", 0, 0},
    {0, ".", "/", 0, 0},
    {0, "default.test", "/x", 0, -1},
    /* [::1]:8080 has only servers[0]: every Host lands there */
    {1, "example.com", "/exact", 0, 1},
    {1, NULL, "/x", 0, -1},
    /* 9090: a server without routes */
    {2, "example.com", "/", 3, -1},
    /* no such listener */
    {3, NULL, "/", -1, -1},
};

START_TEST(test_find)
{
    const tw_settings_t *s = settings;
    const char *host = cases[_i].host;
    size_t hlen = host ? strlen(host) : 0;
    const char *path = cases[_i].path;
    const tw_server_conf_t *srv = tw_router_find_server(s, cases[_i].listener, host, hlen);
    if (cases[_i].server == -1) {
        ck_assert_ptr_null(srv);
    } else {
        ck_assert_ptr_nonnull(srv);
        int want = cases[_i].server >= 0 ? cases[_i].server : (int)srv->index;
        ck_assert_msg((int)srv->index == want, "%s %s: server %zu, want %d", host, path, srv->index,
                      want);
    }
    int status = -1;
    const tw_route_t *r =
        tw_router_find(s, cases[_i].listener, host, hlen, path, strlen(path), &status);
    if (cases[_i].route < 0) {
        ck_assert_msg(r == NULL, "%s %s: got %s", host, path, r ? r->http.name : "");
        ck_assert_int_eq(status, 404);
    } else {
        ck_assert_msg(r != NULL, "%s %s: 404", host, path);
        ck_assert_int_eq(status, 0);
        ck_assert_ptr_eq(r->server, srv);
        ck_assert_msg((int)r->index == cases[_i].route, "%s %s: %s, want routes[%d]", host, path,
                      r->http.name, cases[_i].route);
    }
}
END_TEST

START_TEST(test_match_captures)
{
    const tw_settings_t *s = settings;
    const tw_server_conf_t *srv = tw_router_find_server(s, 0, NULL, 0);
    tw_route_match_t m;
    /* A regex route keeps its groups: $0 the match, $1 the group. */
    const char *path = "/u/42";
    const tw_route_t *r = tw_router_match_route(s, srv, path, strlen(path), &m);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->index, 5);
    ck_assert_int_eq(m.kind, TW_MATCH_REGEX);
    ck_assert_uint_eq(m.count, 2);
    ck_assert_int_eq(m.captures[0].rm_so, 0);
    ck_assert_int_eq(m.captures[0].rm_eo, 5);
    ck_assert_int_eq(m.captures[1].rm_so, 3);
    ck_assert_int_eq(m.captures[1].rm_eo, 5);
    /* Offsets are relative to path even without a NUL after it. */
    const char buf[] = "/u/7XYZ";
    r = tw_router_match_route(s, srv, buf, 4, &m);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(m.captures[1].rm_so, 3);
    ck_assert_int_eq(m.captures[1].rm_eo, 4);
    /* A regex without groups: only $0. */
    path = "/a.php";
    r = tw_router_match_route(s, srv, path, strlen(path), &m);
    ck_assert_int_eq(r->index, 6);
    ck_assert_uint_eq(m.count, 1);
    /* Exact and prefix matches say so and have no captures. */
    r = tw_router_match_route(s, srv, "/exact", 6, &m);
    ck_assert_int_eq(m.kind, TW_MATCH_EXACT);
    ck_assert_uint_eq(m.count, 0);
    r = tw_router_match_route(s, srv, "/static/a", 9, &m);
    ck_assert_int_eq(m.kind, TW_MATCH_PREFIX);
    ck_assert_uint_eq(m.count, 0);
    ck_assert_ptr_null(tw_router_match_route(s, srv, "/nothing", 8, &m));
    ck_assert_uint_eq(m.count, 0);
}
END_TEST

START_TEST(test_lengths)
{
    /* Host and path are (pointer, length): bytes past the length are not
     * looked at, and need not be NUL-terminated. */
    const tw_settings_t *s = settings;
    int status;
    const tw_route_t *r = tw_router_find(s, 0, "example.comXXX", 11, "/xyz", 2, &status);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->server->index, 1);
    ck_assert_uint_eq(r->index, 1);
    r = tw_router_find(s, 0, NULL, 0, "/u/42abc", 5, &status);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->index, 5);
    /* A NUL inside the path is a byte like any other. */
    r = tw_router_find(s, 0, NULL, 0, "/exact\0", 7, &status);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(status, 404);
    r = tw_router_find(s, 0, NULL, 0, "/u/4\0002", 6, NULL); /* status may be NULL */
    ck_assert_ptr_null(r);
    /* A Host longer than any DNS name: the default server. */
    char big[600];
    memset(big, 'a', sizeof(big));
    memcpy(big + sizeof(big) - 12, ".example.com", 12);
    const tw_server_conf_t *srv = tw_router_find_server(s, 0, big, sizeof(big));
    ck_assert_uint_eq(srv->index, 0);
}
END_TEST

START_TEST(test_many_routes)
{
    /* Exact paths are binary-searched: many of them all resolve. */
    size_t cap = 1 << 20, n = 0;
    char *y = malloc(cap);
    n += (size_t)snprintf(y + n, cap - n, "servers:\n  - listen: 80\n    routes:\n");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(y + n, cap - n, "      - %s: /p%d\n", i % 2 ? "path" : "prefix",
                              (i * 7919) % 2000);
    tw_settings_t *s;
    tw_conf_error_t err;
    ck_assert_msg(tw_settings_load_string("m.yaml", y, n, NULL, &s, &err) == 0, "%s", err.message);
    free(y);
    for (int i = 0; i < 2000; i++) {
        char path[32];
        int len = snprintf(path, sizeof(path), "/p%d", (i * 7919) % 2000);
        const tw_route_t *r = tw_router_find(s, 0, NULL, 0, path, (size_t)len, NULL);
        ck_assert_ptr_nonnull(r);
        /* Exact wins; a prefix /pN also matches /pN itself (as its own
         * longest prefix: /p1 and /p12 are both prefixes of /p12). */
        ck_assert_str_eq(r->pattern, path);
    }
    tw_settings_free(s);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_find, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_match_captures);
    tcase_add_test(tc, test_lengths);
    tcase_add_test(tc, test_many_routes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
