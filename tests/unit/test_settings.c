/* test_settings.c — core/settings.c: the Twister schema. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "settings.h"

static tw_conf_error_t err;

/* The config "lives" in /etc/tw (which does not exist, so paths stay as
 * written and the expectations do not depend on the machine). */
#define NAME "/etc/tw/t.yaml"

static tw_settings_t *load(const char *yaml)
{
    tw_settings_t *s = NULL;
    memset(&err, 0, sizeof(err));
    int rc = tw_settings_load_string(NAME, yaml, strlen(yaml), "/usr/lib/tw", &s, &err);
    ck_assert_int_eq(rc, s ? 0 : -1);
    return s;
}

static tw_settings_t *load_ok(const char *yaml)
{
    tw_settings_t *s = load(yaml);
    ck_assert_msg(s != NULL, "%s", err.message);
    return s;
}

#define MIN_SERVER "servers: [{listen: 8080}]\n"

START_TEST(test_defaults)
{
    tw_settings_t *s = load_ok(MIN_SERVER);
    ck_assert_str_eq(s->config_path, NAME);
    ck_assert_str_eq(s->config_dir, "/etc/tw");
    ck_assert_uint_eq(s->workers, 0);
    ck_assert_ptr_null(s->user);
    ck_assert_str_eq(s->pid_file, "/etc/tw/twister.pid");
    ck_assert_ptr_null(s->error_log);
    ck_assert_int_eq(s->log_level, TW_LOG_INFO);
    ck_assert_str_eq(s->module_dir, "/usr/lib/tw");
    ck_assert_uint_eq(s->nmodules, 0);
    ck_assert_uint_eq(s->nsections, 0);
    ck_assert_uint_eq(s->worker_connections, 10000);
    ck_assert_int_eq(s->backlog, 511);
    ck_assert_uint_eq(s->max_draining_generations, 4);
    ck_assert_uint_eq(s->min_body_rate, 1024);
    ck_assert(s->server_tokens);
    ck_assert_str_eq(s->server_header, "twister");
    ck_assert_uint_eq(s->limits.request_line, 8192);
    ck_assert_uint_eq(s->limits.header_size, 32768);
    ck_assert_uint_eq(s->limits.headers, 100);
    ck_assert_uint_eq(s->limits.body, 1048576);
    ck_assert_uint_eq(s->timeouts.header_ms, 10000);
    ck_assert_uint_eq(s->timeouts.body_ms, 30000);
    ck_assert_uint_eq(s->timeouts.send_ms, 30000);
    ck_assert_uint_eq(s->timeouts.keepalive_ms, 75000);
    ck_assert_uint_eq(s->timeouts.shutdown_ms, 30000);
    ck_assert_uint_eq(s->nservers, 1);
    ck_assert_uint_eq(s->nlisteners, 1);
    ck_assert_str_eq(s->listeners[0].text, "0.0.0.0:8080");
    ck_assert_uint_eq(s->servers[0].nroutes, 0);
    ck_assert_uint_eq(s->servers[0].nserver_names, 0);
    ck_assert_str_eq(s->servers[0].name, "servers[0]");
    ck_assert_ptr_nonnull(s->router);
    tw_settings_free(s);
    tw_settings_free(NULL);

    /* No caller default: the compiled-in one. */
    const char *y = MIN_SERVER;
    ck_assert_int_eq(tw_settings_load_string("t.yaml", y, strlen(y), NULL, &s, &err), 0);
    ck_assert_str_eq(s->module_dir, TW_SETTINGS_DEFAULT_MODULE_DIR);
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_str_eq(s->config_dir, cwd); /* "t.yaml" is in the current directory */
    tw_settings_free(s);
}
END_TEST

START_TEST(test_overrides)
{
    tw_settings_t *s =
        load_ok("workers: 8\n"
                "user: www-data\n"
                "pid_file: run/tw.pid\n"
                "error_log: ./logs/error.log\n"
                "log_level: debug\n"
                "module_dir: mods\n"
                "worker_connections: 512\n"
                "backlog: 128\n"
                "max_draining_generations: 2\n"
                "min_body_rate: 0\n"
                "server_tokens: off\n"
                "server_header: Apache\n"
                "limits: {request_line: 4k, header_size: 16k, headers: 50, body: 10m}\n"
                "timeouts: {header: 5s, body: 1m, send: 500ms, keepalive: 0,\n"
                "           shutdown: 1h30m}\n" MIN_SERVER);
    ck_assert_uint_eq(s->workers, 8);
    ck_assert_str_eq(s->user, "www-data");
    ck_assert_str_eq(s->pid_file, "/etc/tw/run/tw.pid");
    ck_assert_str_eq(s->error_log, "/etc/tw/logs/error.log");
    ck_assert_int_eq(s->log_level, TW_LOG_DEBUG);
    ck_assert_str_eq(s->module_dir, "/etc/tw/mods");
    ck_assert_uint_eq(s->worker_connections, 512);
    ck_assert_int_eq(s->backlog, 128);
    ck_assert_uint_eq(s->max_draining_generations, 2);
    ck_assert_uint_eq(s->min_body_rate, 0);
    ck_assert(!s->server_tokens);
    ck_assert_str_eq(s->server_header, "Apache");
    ck_assert_uint_eq(s->limits.request_line, 4096);
    ck_assert_uint_eq(s->limits.header_size, 16384);
    ck_assert_uint_eq(s->limits.headers, 50);
    ck_assert_uint_eq(s->limits.body, 10u << 20);
    ck_assert_uint_eq(s->timeouts.header_ms, 5000);
    ck_assert_uint_eq(s->timeouts.body_ms, 60000);
    ck_assert_uint_eq(s->timeouts.send_ms, 500);
    ck_assert_uint_eq(s->timeouts.keepalive_ms, 0);
    ck_assert_uint_eq(s->timeouts.shutdown_ms, 5400000);
    tw_settings_free(s);

    s = load_ok("workers: auto\npid_file: ''\nerror_log: stderr\nserver_header: ''\n"
                "user: ~\nlog_level: error\n" MIN_SERVER);
    ck_assert_uint_eq(s->workers, 0);
    ck_assert_ptr_null(s->pid_file);
    ck_assert_ptr_null(s->error_log);
    ck_assert_ptr_null(s->server_header);
    ck_assert_ptr_null(s->user);
    ck_assert_int_eq(s->log_level, TW_LOG_ERROR);
    tw_settings_free(s);

    s = load_ok("pid_file: /run/tw.pid\nlog_level: warn\n" MIN_SERVER);
    ck_assert_str_eq(s->pid_file, "/run/tw.pid");
    ck_assert_int_eq(s->log_level, TW_LOG_WARN);
    tw_settings_free(s);
}
END_TEST

START_TEST(test_modules)
{
    tw_settings_t *s = load_ok("modules:\n"
                               "  - hello\n"
                               "  - ./plugins/myplugin.so\n"
                               "  - /opt/tw/x.so\n"
                               "  - sub/dir/y\n"
                               "  - static.so\n"
                               "hello: {greeting: hi}\n"
                               "myplugin: [1, 2]\n"
                               "other: x\n" MIN_SERVER);
    ck_assert_uint_eq(s->nmodules, 5);
    ck_assert_str_eq(s->modules[0].name, "hello");
    ck_assert_str_eq(s->modules[0].base, "hello");
    ck_assert_str_eq(s->modules[0].path, "/usr/lib/tw/hello.so");
    ck_assert_uint_eq(tw_conf_line(s->modules[0].node), 2);
    ck_assert_str_eq(tw_conf_path(s->modules[0].node), "modules[0]");
    ck_assert_str_eq(s->modules[1].name, "./plugins/myplugin.so");
    ck_assert_str_eq(s->modules[1].base, "myplugin");
    ck_assert_str_eq(s->modules[1].path, "/etc/tw/plugins/myplugin.so");
    ck_assert_str_eq(s->modules[2].path, "/opt/tw/x.so");
    ck_assert_str_eq(s->modules[2].base, "x");
    ck_assert_str_eq(s->modules[3].path, "/etc/tw/sub/dir/y");
    ck_assert_str_eq(s->modules[3].base, "y");
    ck_assert_str_eq(s->modules[4].path, "/etc/tw/static.so");
    ck_assert_str_eq(s->modules[4].base, "static");

    /* Non-core top-level keys are module sections, in config order. */
    ck_assert_uint_eq(s->nsections, 3);
    ck_assert_str_eq(s->sections[0].name, "hello");
    ck_assert_str_eq(tw_conf_scalar(tw_conf_map_get(s->sections[0].node, "greeting")), "hi");
    ck_assert_str_eq(s->sections[1].name, "myplugin");
    ck_assert_int_eq(tw_conf_type(s->sections[1].node), TW_CONF_LIST);
    ck_assert_str_eq(s->sections[2].name, "other");
    ck_assert_uint_eq(tw_conf_line(s->sections[2].key), 9);

    /* Once the modules are loaded: sections must belong to one. */
    static const char *const names[] = {"hello", "myplugin", "x", "y", "static"};
    ck_assert_int_eq(tw_settings_check_modules(s, names, 5, &err), -1);
    ck_assert_str_eq(err.message, "/etc/tw/t.yaml:9:1: other: unknown key 'other': not a global "
                                  "setting, nor the name of a loaded module");
    static const char *const names2[] = {"hello", "myplugin", "othr"};
    ck_assert_int_eq(tw_settings_check_modules(s, names2, 3, &err), -1);
    ck_assert_str_eq(err.message,
                     "/etc/tw/t.yaml:9:1: other: unknown key 'other'; did you mean 'othr'?");
    static const char *const names3[] = {"hello", "myplugin", "other"};
    ck_assert_int_eq(tw_settings_check_modules(s, names3, 3, &err), 0);
    tw_settings_free(s);

    s = load_ok("modules: hello\n" MIN_SERVER);
    ck_assert_uint_eq(s->nmodules, 1);
    ck_assert_str_eq(s->modules[0].path, "/usr/lib/tw/hello.so");
    tw_settings_free(s);
}
END_TEST

START_TEST(test_routes)
{
    tw_settings_t *s = load_ok("limits: {body: 2m}\n"
                               "modules: [hello, static]\n"
                               "servers:\n"
                               "  - listen: 8080\n"
                               "    routes:\n"
                               "      - path: /hello\n"
                               "        methods: [GET]\n"
                               "        handler: hello\n"
                               "        hello: {message: Hi}\n"
                               "        auth: {user: x}\n"
                               "      - prefix: /static/\n"
                               "        methods: [POST, GET, PUT]\n"
                               "        handler: static\n"
                               "        limits: {body: 10m}\n"
                               "      - regex: '^/u/([0-9]+)$'\n"
                               "        methods: POST\n"
                               "      - path: /h\n"
                               "        satisfy: any\n"
                               "        methods: [HEAD, GET, PURGE]\n");
    const tw_server_conf_t *srv = &s->servers[0];
    ck_assert_uint_eq(srv->nroutes, 4);
    const tw_route_t *r = &srv->routes[0];
    ck_assert_int_eq(r->kind, TW_MATCH_EXACT);
    ck_assert_str_eq(r->pattern, "/hello");
    ck_assert_uint_eq(r->pattern_len, 6);
    ck_assert_str_eq(r->handler, "hello");
    ck_assert_str_eq(tw_conf_path(r->handler_node), "servers[0].routes[0].handler");
    ck_assert_str_eq(r->http.name, "servers[0].routes[0] (/hello)");
    ck_assert_uint_eq(r->http.body_limit, 2u << 20);
    ck_assert(!r->http.satisfy_any);
    ck_assert(srv->routes[3].http.satisfy_any);
    ck_assert_str_eq(r->http.methods[0], "GET");
    ck_assert_str_eq(r->http.methods[1], "HEAD");
    ck_assert_ptr_null(r->http.methods[2]);
    ck_assert_str_eq(r->http.allow, "GET, HEAD");
    ck_assert_ptr_null(r->http.handler);
    ck_assert_ptr_null(r->http.content);
    ck_assert_ptr_null(r->http.module_conf);
    ck_assert_ptr_eq(r->server, srv);
    ck_assert_uint_eq(r->index, 0);
    ck_assert_uint_eq(r->nsections, 2);
    ck_assert_str_eq(r->sections[0].name, "hello");
    ck_assert_str_eq(tw_conf_scalar(tw_conf_map_get(r->sections[0].node, "message")), "Hi");
    ck_assert_str_eq(r->sections[1].name, "auth");
    ck_assert_ptr_eq((const void *)r, (const void *)&r->http); /* http is the first member */

    r = &srv->routes[1];
    ck_assert_int_eq(r->kind, TW_MATCH_PREFIX);
    ck_assert_str_eq(r->http.name, "servers[0].routes[1] (prefix /static/)");
    ck_assert_uint_eq(r->http.body_limit, 10u << 20);
    ck_assert_str_eq(r->http.allow, "POST, GET, HEAD, PUT");
    ck_assert_uint_eq(r->nsections, 0);

    r = &srv->routes[2];
    ck_assert_int_eq(r->kind, TW_MATCH_REGEX);
    ck_assert_str_eq(r->http.name, "servers[0].routes[2] (regex ^/u/([0-9]+)$)");
    ck_assert_str_eq(r->http.allow, "POST");
    ck_assert_str_eq(r->http.methods[0], "POST");
    ck_assert_ptr_null(r->http.methods[1]);
    ck_assert_ptr_null(r->handler);
    ck_assert_uint_eq(r->regex.re_nsub, 1);

    r = &srv->routes[3];
    ck_assert_str_eq(r->http.allow, "HEAD, GET, PURGE");
    ck_assert_ptr_null(r->http.methods[3]);

    static const char *const names[] = {"hello", "static", "auth"};
    ck_assert_int_eq(tw_settings_check_modules(s, names, 3, &err), 0);
    static const char *const names2[] = {"hello", "static"};
    ck_assert_int_eq(tw_settings_check_modules(s, names2, 2, &err), -1);
    ck_assert_str_eq(err.message, "/etc/tw/t.yaml:10:9: servers[0].routes[0].auth: unknown key "
                                  "'auth': not a route setting, nor the name of a loaded module");
    static const char *const names3[] = {"hellp", "static", "auth"};
    ck_assert_int_eq(tw_settings_check_modules(s, names3, 3, &err), -1);
    ck_assert_str_eq(err.message, "/etc/tw/t.yaml:9:9: servers[0].routes[0].hello: unknown key "
                                  "'hello'; did you mean 'hellp'?");
    static const char *const names4[] = {"hello", "statc", "auth"};
    ck_assert_int_eq(tw_settings_check_modules(s, names4, 3, &err), -1);
    ck_assert_str_eq(err.message, "/etc/tw/t.yaml:13:18: servers[0].routes[1].handler: no loaded "
                                  "module is named 'static'; did you mean 'statc'?");
    tw_settings_free(s);

    /* No methods: any method, and no Allow. */
    s = load_ok("servers: [{listen: 80, routes: [{path: /}]}]");
    ck_assert_ptr_null(s->servers[0].routes[0].http.methods);
    ck_assert_ptr_null(s->servers[0].routes[0].http.allow);
    ck_assert_uint_eq(s->servers[0].routes[0].http.body_limit, 1u << 20);
    tw_settings_free(s);
}
END_TEST

/* ---- listen ------------------------------------------------------------ */

static const struct {
    const char *text;
    int family; /* 0: error */
    const char *addr;
    unsigned port;
    const char *why;
} listens[] = {
    {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080, NULL},
    {"8080", AF_INET, "0.0.0.0", 8080, NULL},
    {"*:80", AF_INET, "0.0.0.0", 80, NULL},
    {"0.0.0.0:65535", AF_INET, "0.0.0.0", 65535, NULL},
    {"[::1]:8080", AF_INET6, "::1", 8080, NULL},
    {"[::]:1", AF_INET6, "::", 1, NULL},
    {"[2001:db8::1]:443", AF_INET6, "2001:db8::1", 443, NULL},
    {"", 0, NULL, 0, "empty address"},
    {"0", 0, NULL, 0, "expected a port from 1 to 65535, or address:port"},
    {"65536", 0, NULL, 0, "expected a port from 1 to 65535, or address:port"},
    {"99999999999999999999", 0, NULL, 0, "expected a port from 1 to 65535, or address:port"},
    {"127.0.0.1", 0, NULL, 0, "expected a port from 1 to 65535, or address:port"},
    {"127.0.0.1:", 0, NULL, 0, "expected a port from 1 to 65535"},
    {"127.0.0.1:http", 0, NULL, 0, "expected a port from 1 to 65535"},
    {"127.0.0.1:-1", 0, NULL, 0, "expected a port from 1 to 65535"},
    {"127.0.0.256:80", 0, NULL, 0, "bad IPv4 address"},
    {"localhost:80", 0, NULL, 0, "expected an IP address (host names are not resolved)"},
    {":80", 0, NULL, 0, "bad IPv4 address"},
    {"::1:80", 0, NULL, 0, "an IPv6 address needs brackets: [::1]:8080"},
    {"[::1]", 0, NULL, 0, "missing :port after the IPv6 address"},
    {"[::1]:0", 0, NULL, 0, "expected a port from 1 to 65535"},
    {"[::1:80", 0, NULL, 0, "expected [IPv6]:port"},
    {"[1.2.3.4]:80", 0, NULL, 0, "bad IPv6 address"},
    {"8080 ", 0, NULL, 0, "expected a port from 1 to 65535, or address:port"},
};

START_TEST(test_parse_listen)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *why = NULL;
    int rc = tw_settings_parse_listen(listens[_i].text, &ss, &len, &why);
    if (!listens[_i].family) {
        ck_assert_int_eq(rc, -1);
        ck_assert_str_eq(why, listens[_i].why);
        return;
    }
    ck_assert_msg(rc == 0, "%s: %s", listens[_i].text, why);
    ck_assert_int_eq(ss.ss_family, listens[_i].family);
    char host[64];
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        ck_assert_uint_eq(len, sizeof(*sin));
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        ck_assert_uint_eq(ntohs(sin->sin_port), listens[_i].port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        ck_assert_uint_eq(len, sizeof(*sin6));
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        ck_assert_uint_eq(ntohs(sin6->sin6_port), listens[_i].port);
    }
    ck_assert_str_eq(host, listens[_i].addr);
}
END_TEST

START_TEST(test_listen_flags)
{
    tw_settings_t *s = load_ok("servers:\n"
                               "  - listen: [\"127.0.0.1:8080  proxy_protocol\", 9090]\n"
                               "  - listen: [\"127.0.0.1:8080 proxy_protocol\"]\n");
    ck_assert_uint_eq(s->nlisteners, 2);
    ck_assert_str_eq(s->listeners[0].text, "127.0.0.1:8080");
    ck_assert(s->listeners[0].proxy_protocol);
    ck_assert(!s->listeners[1].proxy_protocol);
    tw_settings_free(s);
}
END_TEST

START_TEST(test_listeners)
{
    tw_settings_t *s = load_ok("servers:\n"
                               "  - listen: [\"127.0.0.1:8080\", 9090]\n"
                               "    server_names: [a.test]\n"
                               "  - listen: [\"*:9090\", \"[::1]:8080\"]\n"
                               "    server_names: [B.Test., \"*.Example.com\"]\n"
                               "  - listen: \"0.0.0.0:9090\"\n");
    ck_assert_uint_eq(s->nlisteners, 3);
    ck_assert_str_eq(s->listeners[0].text, "127.0.0.1:8080");
    ck_assert_str_eq(s->listeners[1].text, "0.0.0.0:9090");
    ck_assert_str_eq(s->listeners[2].text, "[::1]:8080");
    ck_assert_uint_eq(s->listeners[0].addrlen, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(s->listeners[2].addrlen, sizeof(struct sockaddr_in6));
    ck_assert_str_eq(tw_conf_path(s->listeners[1].node), "servers[0].listen[1]");

    ck_assert_uint_eq(s->listeners[0].nservers, 1);
    ck_assert_ptr_eq(s->listeners[0].servers[0], &s->servers[0]);
    ck_assert_uint_eq(s->listeners[1].nservers, 3);
    ck_assert_ptr_eq(s->listeners[1].servers[0], &s->servers[0]);
    ck_assert_ptr_eq(s->listeners[1].servers[1], &s->servers[1]);
    ck_assert_ptr_eq(s->listeners[1].servers[2], &s->servers[2]);
    ck_assert_uint_eq(s->listeners[2].nservers, 1);
    ck_assert_ptr_eq(s->listeners[2].servers[0], &s->servers[1]);

    ck_assert_uint_eq(s->servers[1].nlisteners, 2);
    ck_assert_uint_eq(s->servers[1].listeners[0], 1);
    ck_assert_uint_eq(s->servers[1].listeners[1], 2);
    ck_assert_uint_eq(s->servers[1].nserver_names, 2);
    ck_assert_str_eq(s->servers[1].server_names[0], "b.test");
    ck_assert_str_eq(s->servers[1].server_names[1], "*.example.com");
    ck_assert_str_eq(s->servers[1].name, "servers[1] (b.test)");
    ck_assert_str_eq(s->servers[2].name, "servers[2]");
    tw_settings_free(s);
}
END_TEST

/* ---- errors ------------------------------------------------------------ */

#define F "/etc/tw/t.yaml:"

static const struct {
    const char *yaml;
    const char *msg;
} errors[] = {
    {"", F "1:1: expected a map of settings (workers, modules, servers, ...)"},
    {"[1]", F "1:1: expected a map of settings (workers, modules, servers, ...)"},
    {"workers: 4\n", F "1:1: missing 'servers' (at least one server is needed)"},
    {"servers: []\n", F "1:10: servers: expected a list of servers (at least one)"},
    {"servers: {a: 1}\n", F "1:10: servers: expected a list of servers (at least one)"},
    {"worker: 4\n" MIN_SERVER, F "1:1: worker: unknown key 'worker'; did you mean 'workers'?"},
    {"servers: [{listen: 80}]\nlimit: {body: 1m}\n",
     F "2:1: limit: unknown key 'limit'; did you mean 'limits'?"},
    {"workers: 0\n" MIN_SERVER,
     F "1:10: workers: expected auto or a number from 1 to 256, got '0'"},
    {"workers: 257\n" MIN_SERVER,
     F "1:10: workers: expected auto or a number from 1 to 256, got '257'"},
    {"workers: [1]\n" MIN_SERVER,
     F "1:10: workers: expected auto or a number from 1 to 256, got a collection"},
    {"workers: Auto\n" MIN_SERVER,
     F "1:10: workers: expected auto or a number from 1 to 256, got 'Auto'"},
    {"user: [a]\n" MIN_SERVER, F "1:7: user: expected a string, got a list"},
    {"error_log: ''\n" MIN_SERVER,
     F "1:12: error_log: expected stderr or a file path, got an empty value"},
    {"log_level: warning\n" MIN_SERVER,
     F "1:12: log_level: expected error, warn, info or debug, got 'warning'"},
    {"log_level: debgu\n" MIN_SERVER,
     F "1:12: log_level: expected error, warn, info or debug, got 'debgu'; did you mean 'debug'?"},
    {"module_dir: ~\n" MIN_SERVER, F "1:13: module_dir: expected a directory, got an empty value"},
    {"worker_connections: 0\n" MIN_SERVER,
     F "1:21: worker_connections: expected an integer from 1 to 1000000, got '0'"},
    {"backlog: 65536\n" MIN_SERVER,
     F "1:10: backlog: expected an integer from 1 to 65535, got '65536'"},
    {"max_draining_generations: 65\n" MIN_SERVER,
     F "1:27: max_draining_generations: expected an integer from 1 to 64, got '65'"},
    {"min_body_rate: fast\n" MIN_SERVER, F "1:16: min_body_rate: expected a size (bytes, or a "
                                           "number with k, m or g: 64k, 1m), got 'fast'"},
    {"server_tokens: maybe\n" MIN_SERVER,
     F "1:16: server_tokens: expected true or false (or yes/no, on/off), got 'maybe'"},
    {"server_header: \"a\\r\\nX: y\"\n" MIN_SERVER,
     F "1:16: server_header: expected printable ASCII (it goes into a header)"},
    {"limits: {bdy: 1m}\n" MIN_SERVER,
     F "1:10: limits.bdy: unknown key 'bdy'; did you mean 'body'?"},
    {"limits: [1]\n" MIN_SERVER, F "1:9: limits: expected a map, got a list"},
    {"limits: {body: 1x}\n" MIN_SERVER,
     F "1:16: limits.body: expected a size (bytes, or a number with k, m or g: 64k, 1m), got '1x'"},
    {"limits: {request_line: 100}\n" MIN_SERVER,
     F "1:24: limits.request_line: expected a size from 256 to 16777216 bytes, got '100'"},
    {"limits: {header_size: 1g}\n" MIN_SERVER,
     F "1:23: limits.header_size: expected a size from 256 to 16777216 bytes, got '1g'"},
    {"limits: {request_line: 16k, header_size: 8k}\n" MIN_SERVER,
     F "1:42: limits.header_size: header_size (8192) must be at least request_line (16384)"},
    {"limits: {request_line: 64k}\n" MIN_SERVER,
     F "1:24: limits.request_line: header_size (32768) must be at least request_line (65536)"},
    {"limits: {headers: 0}\n" MIN_SERVER,
     F "1:19: limits.headers: expected an integer from 1 to 100000, got '0'"},
    {"timeouts: {header: 0}\n" MIN_SERVER,
     F "1:20: timeouts.header: expected a duration greater than 0"},
    {"timeouts: {send: 10q}\n" MIN_SERVER,
     F "1:18: timeouts.send: expected a duration (500ms, 30s, 5m, 1h30m, 2d; a bare number is "
       "seconds), got '10q'"},
    {"timeouts: {keeplive: 1s}\n" MIN_SERVER,
     F "1:12: timeouts.keeplive: unknown key 'keeplive'; did you mean 'keepalive'?"},
    {"modules: [{a: 1}]\n" MIN_SERVER,
     F "1:11: modules[0]: expected a module name or path, got a map"},
    {"modules: {a: 1}\n" MIN_SERVER,
     F "1:10: modules: expected a module name or path or a list of them, got a map"},
    {"modules: ['']\n" MIN_SERVER,
     F "1:11: modules[0]: expected a module name or path, got an empty value"},
    {"modules: [he llo]\n" MIN_SERVER, F
     "1:11: modules[0]: expected a module name (letters, digits, _ and -) or a path to a .so, got "
     "'he llo'"},
    {"modules: [hello, ./hello.so, /usr/lib/tw/hello.so]\n" MIN_SERVER,
     F "1:30: modules[2]: module /usr/lib/tw/hello.so is already listed at line 1"},
    {"servers: [8080]\n", F "1:11: servers[0]: expected a server (a map with listen and routes)"},
    {"servers: [{}]\n",
     F "1:11: servers[0]: missing 'listen' (the addresses this server answers on)"},
    {"servers: [{listen: 80, lisen: 81}]\n",
     F "1:24: servers[0].lisen: unknown key 'lisen'; did you mean 'listen'?"},
    {"servers: [{listen: []}]\n",
     F "1:20: servers[0].listen: expected at least one listen address"},
    {"servers: [{listen: {a: 1}}]\n",
     F "1:20: servers[0].listen: expected a listen address or a list of them, got a map"},
    {"servers: [{listen: [[80]]}]\n",
     F "1:21: servers[0].listen[0]: expected a listen address, got a list"},
    {"servers: [{listen: 70000}]\n",
     F "1:20: servers[0].listen: expected a listen address (127.0.0.1:8080, [::1]:8080, *:8080 or "
       "8080), got '70000': expected a port from 1 to 65535, or address:port"},
    {"servers: [{listen: [80, '*:80']}]\n",
     F "1:25: servers[0].listen[1]: 0.0.0.0:80 is already listed in this server"},
    {"servers: [{listen: 80, server_names: [a, A.]}]\n",
     F "1:42: servers[0].server_names[1]: server name 'a' is listed twice"},
    {"servers: [{listen: 80, server_names: ['a b']}]\n",
     F "1:39: servers[0].server_names[0]: 'a b' is not a host name (letters, digits, '-' and '.')"},
    {"servers: [{listen: 80, server_names: ['a.*.com']}]\n",
     F "1:39: servers[0].server_names[0]: a wildcard goes only at the start: '*.example.com'"},
    {"servers: [{listen: 80, server_names: ['*']}]\n",
     F "1:39: servers[0].server_names[0]: a wildcard goes only at the start: '*.example.com'"},
    {"servers: [{listen: 80, server_names: [a..b]}]\n",
     F "1:39: servers[0].server_names[0]: 'a..b' is not a host name (empty label)"},
    {"servers: [{listen: 80, server_names: ['.']}]\n",
     F "1:39: servers[0].server_names[0]: expected a server name, got an empty value"},
    {"servers: [{listen: 80, routes: {path: /}}]\n",
     F "1:32: servers[0].routes: expected a list of routes"},
    {"servers: [{listen: 80, routes: [/x]}]\n",
     F "1:33: servers[0].routes[0]: expected a route (a map with path, prefix or regex)"},
    {"servers: [{listen: 80, routes: [{handler: x}]}]\n",
     F "1:33: servers[0].routes[0]: a route needs one of path (exact), prefix or regex"},
    {"servers: [{listen: 80, routes: [{path: /, prefix: /}]}]\n",
     F "1:51: servers[0].routes[0].prefix: a route has one of path, prefix or regex, not path and "
       "prefix"},
    {"servers: [{listen: 80, routes: [{path: x}]}]\n",
     F "1:40: servers[0].routes[0].path: expected a path starting with '/', got 'x'"},
    {"servers: [{listen: 80, routes: [{prefix: ''}]}]\n",
     F "1:42: servers[0].routes[0].prefix: expected a path, got an empty value"},
    {"servers: [{listen: 80, routes: [{path: '/a?b'}]}]\n",
     F "1:40: servers[0].routes[0].path: a route path cannot contain '?' or '#' (routes match the "
       "path without the query)"},
    {"servers: [{listen: 80, routes: [{regex: '(a'}]}]\n",
     F "1:41: servers[0].routes[0].regex: bad regular expression (POSIX ERE): Unmatched ( or \\("},
    {"servers: [{listen: 80, routes: [{regex: ''}]}]\n",
     F "1:41: servers[0].routes[0].regex: expected a regular expression, got an empty value"},
    {"servers: [{listen: ['80 tls_maybe']}]\n",
     F "1:21: servers[0].listen[0]: unknown listen flag 'tls_maybe' (known: tls, proxy_protocol)"},
    {"servers: [{listen: ['80 proxy_protocol', '0.0.0.0:80']}]\n",
     F "1:42: servers[0].listen[1]: 0.0.0.0:80 is listed elsewhere with proxy_protocol: a "
       "listener either expects a PROXY header on every connection or on none"},
    {"servers: [{listen: 80, routes: [{path: /, satisfy: some}]}]\n",
     F "1:52: servers[0].routes[0].satisfy: expected all (every ACCESS check must pass) or any "
       "(one passing check is enough), got 'some'"},
    {"servers: [{listen: 80, routes: [{path: /, methods: []}]}]\n",
     F "1:52: servers[0].routes[0].methods: expected at least one method (leave methods out to "
       "allow any)"},
    {"servers: [{listen: 80, routes: [{path: /, methods: [get]}]}]\n",
     F "1:53: servers[0].routes[0].methods[0]: methods are case-sensitive; did you mean 'GET'?"},
    {"servers: [{listen: 80, routes: [{path: /, methods: ['GE T']}]}]\n",
     F "1:53: servers[0].routes[0].methods[0]: 'GE T' is not a valid method (a token: letters, "
       "digits and !#$%&'*+-.^_`|~)"},
    {"servers: [{listen: 80, routes: [{path: /, methods: [GET, POST, GET]}]}]\n",
     F "1:64: servers[0].routes[0].methods[2]: method GET is listed twice"},
    {"servers: [{listen: 80, routes: [{path: /, handler: ''}]}]\n",
     F "1:52: servers[0].routes[0].handler: expected a module name, got an empty value"},
    {"servers: [{listen: 80, routes: [{path: /, limits: {body: 1m, header_size: 1k}}]}]\n",
     F "1:62: servers[0].routes[0].limits.header_size: unknown key 'header_size' (expected one of: "
       "body)"},
    {"servers: [{listen: 80, routes: [{path: /, hanlder: x}]}]\n",
     F "1:43: servers[0].routes[0].hanlder: unknown key 'hanlder'; did you mean 'handler'?"},
    {"servers: [{listen: 80, routes: [{path: /, method: [GET]}]}]\n",
     F "1:43: servers[0].routes[0].method: unknown key 'method'; did you mean 'methods'?"},
    {"servers:\n"
     "  - {listen: \"127.0.0.1:80\"}\n"
     "  - {listen: [81, 80]}\n",
     F "3:19: servers[1].listen[1]: cannot listen on both 0.0.0.0:80 and 127.0.0.1:80 (line 2): "
       "the wildcard address takes the port on every address; use one of them"},
    {"servers: [{listen: ['[::]:80', '[::1]:80']}]\n",
     F "1:32: servers[0].listen[1]: cannot listen on both [::1]:80 and [::]:80 (line 1): the "
       "wildcard address takes the port on every address; use one of them"},
    /* Conflicts found when the router tables are built. */
    {"servers: [{listen: 80, routes: [{path: /a}, {path: /b}, {path: /a}]}]\n",
     F "1:64: servers[0].routes[2].path: this route can never match: servers[0].routes[0] has the "
       "same pattern"},
    {"servers: [{listen: 80, routes: [{prefix: /a}, {prefix: /a}]}]\n",
     F "1:56: servers[0].routes[1].prefix: this route can never match: servers[0].routes[0] has "
       "the same pattern"},
    {"servers: [{listen: 80, routes: [{regex: a}, {regex: b}, {regex: a}]}]\n",
     F "1:65: servers[0].routes[2].regex: this route can never match: servers[0].routes[0] has the "
       "same pattern"},
    {"servers:\n"
     "  - {listen: 80, server_names: [a, b]}\n"
     "  - {listen: [81, 80], server_names: [c, B]}\n",
     F "3:42: servers[1].server_names[1]: server name 'B' is already used by servers[0] (a) on "
       "0.0.0.0:80"},
    {"servers:\n"
     "  - {listen: 80, server_names: ['*.a.com']}\n"
     "  - {listen: 80, server_names: ['*.A.com']}\n",
     F "3:33: servers[1].server_names[0]: server name '*.A.com' is already used by servers[0] "
       "(*.a.com) on 0.0.0.0:80"},
};

/* ---- regex bounds ------------------------------------------------------ */

static const struct {
    const char *pattern;
    const char *why; /* NULL: accepted */
} regexes[] = {
    /* Real route regexes. */
    {"^/u/([0-9]+)$", NULL},
    {"^/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", NULL},
    {"^/objects/([0-9a-f]{64}/){1,8}$", NULL},
    {"^/(a|b|c)/x{1,3}$", NULL},
    {"a{255}", NULL},
    {"a{0,255}", NULL},
    {"a{,255}", NULL},
    {"a{255,}", NULL},
    {"(a{25}){40}", NULL}, /* 1000: the product limit */
    {"(a|b|c|d){250}", NULL},
    /* Not repetitions at all: literal braces, brackets, escapes. */
    {"a\\{1000\\}{2}", NULL},
    {"[{]1000}{2}", NULL},
    {"[]{]1000}{2}", NULL},
    {"[^]{]1000}{2}", NULL},
    {"[[:alpha:]{]1000}{2}", NULL},
    {"[\\]{1000}", "at character 4: repetition count 1000 in '{1000}' is more than 255"},
    {"a{x}{1000", NULL},
    {"a{,}", NULL},
    {")a{2})", NULL},
    {"", NULL},
    /* Too large. */
    {"a{1000}{1000}{1000}", "at character 2: repetition count 1000 in '{1000}' is more than 255"},
    {"a{256}", "at character 2: repetition count 256 in '{256}' is more than 255"},
    {"a{1,99999999999999999999999}", "at character 2: repetition count "},
    {"a{100}{100}", "at character 7: nested repetitions multiply to 10000 copies; at most 1000"},
    {"((a{100})x){11}",
     "at character 12: nested repetitions multiply to 1100 copies; at most 1000"},
    {"(a{10}(b{10}(c{11})))", NULL}, /* side by side in groups, not nested */
    {"((c{10}){10}){11}", "at character 14: nested repetitions multiply to 1100 copies"},
    {"a++++++++++", "at character 11: nested repetitions multiply to 1024 copies; at most 1000"},
    {"(x{250}){3}(y{250}){3}(z{250}){3}", NULL}, /* 2257 elements */
    {"(x{250}){4}(y{250}){4}(z{250}){4}(w{250}){4}(v{250}){4}",
     "at character 45: the pattern unrolls to more than 4096 elements"},
    {"((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))",
     "at character 33: groups nested more than 32 deep"},
};

START_TEST(test_regex_bounds)
{
    char why[256];
    int rc = tw_settings_check_regex(regexes[_i].pattern, why, sizeof(why));
    if (!regexes[_i].why) {
        ck_assert_msg(rc == 0, "'%s' refused: %s", regexes[_i].pattern, why);
        return;
    }
    ck_assert_msg(rc == -1, "'%s' accepted", regexes[_i].pattern);
    ck_assert_msg(strncmp(why, regexes[_i].why, strlen(regexes[_i].why)) == 0, "'%s': %s",
                  regexes[_i].pattern, why);
}
END_TEST

START_TEST(test_regex_bounds_in_a_route)
{
    /* The config names the route's regex node; regcomp is never reached. */
    tw_settings_t *s = load("servers:\n"
                            "  - listen: 80\n"
                            "    routes:\n"
                            "      - regex: 'a{1000}{1000}{1000}'\n");
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err.message, F "4:16: servers[0].routes[0].regex: regular expression too "
                                    "costly to compile: at character 2: repetition count 1000 "
                                    "in '{1000}' is more than 255");
}
END_TEST

START_TEST(test_errors)
{
    tw_settings_t *s = load(errors[_i].yaml);
    if (s)
        tw_settings_free(s);
    ck_assert_msg(s == NULL, "loaded: %s", errors[_i].yaml);
    ck_assert_str_eq(err.message, errors[_i].msg);
}
END_TEST

START_TEST(test_many_server_names)
{
    /* Close to the node limit: the duplicate check must be linear (it
     * compared every name with every other, which at this size takes far
     * longer than the test's timeout). The duplicate, differing only in
     * case and a trailing dot, is the last name. */
    enum {
        NAMES = 190000
    };
    size_t cap = 64 + (size_t)NAMES * 40;
    char *yaml = malloc(cap);
    ck_assert_ptr_nonnull(yaml);
    size_t n = (size_t)snprintf(yaml, cap, "servers:\n  - listen: 80\n    server_names:\n");
    for (int i = 0; i < NAMES - 1; i++)
        n += (size_t)snprintf(yaml + n, cap - n, "      - host%d.example.com\n", i);
    n += (size_t)snprintf(yaml + n, cap - n, "      - HOST123456.Example.com.\n");
    tw_settings_t *s = NULL;
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(tw_settings_load_string(NAME, yaml, n, "/usr/lib/tw", &s, &err), -1);
    char want[200];
    snprintf(want, sizeof(want),
             F "%d:9: servers[0].server_names[%d]: server name 'host123456.example.com' is "
               "listed twice",
             3 + NAMES, NAMES - 1);
    ck_assert_str_eq(err.message, want);

    /* Without the duplicate it loads. */
    n -= strlen("      - HOST123456.Example.com.\n");
    ck_assert_msg(tw_settings_load_string(NAME, yaml, n, "/usr/lib/tw", &s, &err) == 0, "%s",
                  err.message);
    ck_assert_uint_eq(s->servers[0].nserver_names, NAMES - 1);
    tw_settings_free(s);
    free(yaml);
}
END_TEST

START_TEST(test_not_conflicts)
{
    /* The same name on different listeners, a module named like a near
     * miss of a core key, the same path in different servers. */
    tw_settings_t *s = load_ok("modules: [limit]\n"
                               "limit: {rate: 1}\n"
                               "servers:\n"
                               "  - {listen: 80, server_names: [a], routes: [{path: /}]}\n"
                               "  - {listen: 81, server_names: [a], routes: [{path: /}]}\n");
    ck_assert_uint_eq(s->nsections, 1);
    ck_assert_str_eq(s->sections[0].name, "limit");
    tw_settings_free(s);
}
END_TEST

START_TEST(test_load_file)
{
    char dir[] = "/tmp/tw_test_settings_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], real[4096], want[4200];
    snprintf(path, sizeof(path), "%s/t.yaml", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("modules: [./p/m.so]\n" MIN_SERVER, f);
    fclose(f);
    ck_assert_ptr_nonnull(realpath(dir, real));
    tw_settings_t *s;
    ck_assert_int_eq(tw_settings_load(path, "/m", &s, &err), 0);
    ck_assert_str_eq(s->config_dir, real);
    snprintf(want, sizeof(want), "%s/p/m.so", real);
    ck_assert_str_eq(s->modules[0].path, want);
    tw_settings_free(s);

    f = fopen(path, "w");
    fputs("servers: [{listen: 0}]\n", f);
    fclose(f);
    ck_assert_int_eq(tw_settings_load(path, "/m", &s, &err), -1);
    ck_assert_ptr_null(s);
    snprintf(want, sizeof(want), "%s:1:20: servers[0].listen: expected", path);
    ck_assert_msg(strncmp(err.message, want, strlen(want)) == 0, "%s", err.message);
    unlink(path);
    rmdir(dir);

    ck_assert_int_eq(tw_settings_load("/nonexistent/t.yaml", NULL, &s, &err), -1);
    ck_assert_str_eq(err.message, "/nonexistent/t.yaml: cannot read: No such file or directory");

    /* A loaded tree is taken over (and freed on error). */
    const char *y = "servers: 1\n";
    tw_conf_doc_t *doc = tw_conf_load_string("x.yaml", y, strlen(y), &err);
    ck_assert_ptr_nonnull(doc);
    ck_assert_int_eq(tw_settings_from_doc(doc, NULL, &s, &err), -1);
    ck_assert_str_eq(err.message,
                     "x.yaml:1:10: servers: expected a list of servers (at least one)");
}
END_TEST

START_TEST(test_example_config)
{
    /* The shipped example config must load. */
    const char *src = getenv("TW_SOURCE_DIR");
    if (!src)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/conf/twister.yaml", src);
    if (access(path, R_OK) != 0)
        return;
    tw_settings_t *s;
    int rc = tw_settings_load(path, NULL, &s, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_uint_ge(s->nservers, 1);
    tw_settings_free(s);
}
END_TEST

START_TEST(test_crash_policy)
{
    tw_settings_t *s = load_ok(MIN_SERVER);
    ck_assert_uint_eq(s->crash_policy.max, 5);
    ck_assert_uint_eq(s->crash_policy.within_ms, 60000);
    ck_assert_int_eq(s->crash_policy.action, TW_CRASH_QUARANTINE);
    tw_settings_free(s);

    static const struct {
        const char *policy;
        unsigned max;
        uint64_t within_ms;
        tw_crash_action_t action;
    } good[] = {
        {"{ max: 3, within: 60s, action: quarantine }", 3, 60000, TW_CRASH_QUARANTINE},
        {"{ action: restart }", 5, 60000, TW_CRASH_RESTART},
        {"{ max: 1, action: stop }", 1, 60000, TW_CRASH_STOP},
        {"{ within: 5m }", 5, 300000, TW_CRASH_QUARANTINE},
        {"{}", 5, 60000, TW_CRASH_QUARANTINE},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "crash_policy: %s\n" MIN_SERVER, good[i].policy);
        s = load_ok(yaml);
        ck_assert_msg(s->crash_policy.max == good[i].max &&
                          s->crash_policy.within_ms == good[i].within_ms &&
                          s->crash_policy.action == good[i].action,
                      "case %zu (%s)", i, good[i].policy);
        tw_settings_free(s);
    }

    static const struct {
        const char *policy;
        const char *message;
    } bad[] = {
        {"{ action: quarantin }", "/etc/tw/t.yaml:1:25: crash_policy.action: expected quarantine, "
                                  "restart or stop, got 'quarantin'; did you "
                                  "mean 'quarantine'?"},
        {"{ max: 0 }",
         "/etc/tw/t.yaml:1:22: crash_policy.max: expected an integer from 1 to 10000"},
        {"{ within: 0s }",
         "/etc/tw/t.yaml:1:25: crash_policy.within: expected a duration greater than 0"},
        {"{ limit: 3 }", "/etc/tw/t.yaml:1:17:"},
        {"restart",
         "/etc/tw/t.yaml:1:15: crash_policy: expected a map: { max: 5, within: 60s, action: "
         "quarantine | restart | stop }"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "crash_policy: %s\n" MIN_SERVER, bad[i].policy);
        ck_assert_ptr_null(load(yaml));
        ck_assert_msg(strncmp(err.message, bad[i].message, strlen(bad[i].message)) == 0,
                      "case %zu: %s", i, err.message);
    }
}
END_TEST

static Suite *settings_suite(void)
{
    Suite *s = suite_create("settings");
    TCase *tc = tcase_create("settings");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_modules);
    tcase_add_test(tc, test_routes);
    tcase_add_loop_test(tc, test_parse_listen, 0, (int)(sizeof(listens) / sizeof(listens[0])));
    tcase_add_test(tc, test_listeners);
    tcase_add_test(tc, test_listen_flags);
    tcase_add_loop_test(tc, test_regex_bounds, 0, (int)(sizeof(regexes) / sizeof(regexes[0])));
    tcase_add_test(tc, test_regex_bounds_in_a_route);
    tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof(errors) / sizeof(errors[0])));
    tcase_add_test(tc, test_not_conflicts);
    tcase_add_test(tc, test_many_server_names);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_example_config);
    tcase_add_test(tc, test_crash_policy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(settings_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
