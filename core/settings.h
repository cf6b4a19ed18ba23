/* settings.h — the Twister configuration schema.
 *
 * tw_settings_load() reads the YAML file (config.c), checks every core key
 * and turns it into a tw_settings_t: plain C values with the defaults
 * filled in, listen addresses parsed, routes compiled (router.c). Module
 * settings are not interpreted here: each module section is recorded as a
 * (name, node) pair for the generation to hand to that module's configure
 * hook once the modules are loaded.
 *
 * One tw_settings_t owns everything it points to, including the config
 * tree (doc) its nodes come from: tw_settings_free() releases it all. It
 * is immutable after loading, so a generation can share it with its
 * workers across fork().
 *
 * The schema, with defaults:
 *
 *   workers: auto              # or 1..256; auto is stored as 0
 *   user: www-data             # optional; NULL when absent
 *   pid_file: twister.pid      # "" or ~ disables; relative to the config dir
 *   error_log: stderr          # or a path, relative to the config dir
 *   log_level: info            # error | warn | info | debug
 *   module_dir: <caller's default>   # relative to the config dir
 *   modules: [hello, ./plugins/my.so]
 *   worker_connections: 10000  # 1..1000000, per worker
 *   backlog: 511               # 1..65535, listen(2) backlog
 *   max_draining_generations: 4  # 1..64
 *   reload: { handoff: on }    # idle keep-alive connections move to the new
 *                              # generation on reload; off: they are closed
 *   min_body_rate: 1k          # bytes/s a body upload must sustain; 0: off
 *   shared_zones: 64m          # the region every shared zone lives in
 *                              # (1m..1t; fixed until restart)
 *   server_tokens: true        # "Server: twister/0.1.0" vs "Server: twister"
 *   server_header: twister     # the Server header's name; "" omits it
 *   limits:   { request_line: 8k, header_size: 32k, headers: 100, body: 1m }
 *   timeouts: { header: 10s, body: 30s, send: 30s, keepalive: 75s,
 *               shutdown: 30s,       # keepalive: 0 disables keep-alive
 *               configure: 10s }     # bound on the modules' configure hooks (-t)
 *   crash_policy: { max: 5, within: 60s, action: quarantine }
 *                              # what `max` crashes of one module within
 *                              # `within` do: quarantine | restart | stop
 *   servers:
 *     - listen: ["127.0.0.1:8080", "[::1]:8080", "8080", "*:8080",
 *                "127.0.0.1:8443 tls"]    # flags after the address
 *       tls: { certificate: ..., key: ... }   # tls/tls_settings.h
 *       server_names: [localhost, "*.example.com"]
 *       routes:
 *         - path: /hello | prefix: /static/ | regex: '^/u/([0-9]+)$'
 *           methods: [GET, HEAD]
 *           handler: hello
 *           limits: { body: 10m }
 *           drain: { keep: 10m }   # on reload, a request still running here
 *                                  # (a tunnel, a stream) may finish on the
 *                                  # old generation this long [shutdown]
 *           hello: { message: "Hi" }   # any other key: a module section
 *   hello: { ... }             # any other top-level key: a module's
 *                              # global section
 */
#ifndef TWISTER_SETTINGS_H
#define TWISTER_SETTINGS_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "route.h"
#include "tls/tls_settings.h"
#include "twister/conf.h"
#include "twister/log.h"

/* Used for module_dir when the caller passes NULL. */
#define TW_SETTINGS_DEFAULT_MODULE_DIR "/usr/lib/twister/modules"

/* A section of the config that belongs to a module: the top-level key or
 * the route key named after it, and the node under that key. */
typedef struct {
    const char *name;           /* the key, as written ("hello") */
    const tw_conf_node_t *node; /* its value (any type; "" for an empty key) */
    const tw_conf_node_t *key;  /* the key itself, for "unknown module" errors */
} tw_conf_section_t;

/* One entry of `modules:`. */
typedef struct {
    const char *name;           /* as written: "hello" or "./plugins/my.so" */
    const char *base;           /* file name without directory and ".so": "my" */
    const char *path;           /* resolved file: "<module_dir>/hello.so" or
                                 * "<config dir>/plugins/my.so" */
    const tw_conf_node_t *node; /* the list item, for "modules[2]: ..." errors */
} tw_module_entry_t;

/* How a route's pattern is compared with the request path. */
typedef enum {
    TW_MATCH_EXACT = 1,  /* `path:`   the whole path equals pattern */
    TW_MATCH_PREFIX = 2, /* `prefix:` the path starts with pattern (bytes) */
    TW_MATCH_REGEX = 3,  /* `regex:`  POSIX ERE search (anchor it yourself) */
} tw_match_kind_t;

typedef struct tw_server_conf tw_server_conf_t;

/* One entry of a server's `routes:`. */
typedef struct tw_route {
    tw_http_route_t http;               /* what the HTTP engine uses; first member */
    tw_match_kind_t kind;               /* exact, prefix or regex */
    const char *pattern;                /* the path, prefix or regex as written */
    size_t pattern_len;                 /* strlen(pattern) */
    regex_t regex;                      /* compiled pattern when kind == TW_MATCH_REGEX */
    const char *handler;                /* `handler:` module name as written; NULL if absent */
    const tw_conf_node_t *handler_node; /* the handler: value, for errors */
    tw_conf_section_t *sections;        /* module sections of this route, config order */
    size_t nsections;                   /* number of sections */
    const tw_conf_node_t *node;         /* the route's map */
    const tw_server_conf_t *server;     /* the server it belongs to */
    size_t index;                       /* position in server->routes */
} tw_route_t;

/* One entry of `servers:`. */
struct tw_server_conf {
    size_t index;                             /* position in settings->servers */
    const char *name;                         /* "servers[0]" (plus " (first-name)" if named) */
    const char **server_names;                /* lowercased, trailing dot removed; "*.x.com"
                                               * for wildcards */
    const tw_conf_node_t **server_name_nodes; /* where each name was written */
    size_t nserver_names;                     /* number of server_names (may be 0) */
    size_t *listeners;                        /* indices into settings->listeners, config order */
    size_t nlisteners;                        /* number of listeners (at least 1) */
    tw_route_t *routes;                       /* routes, config order */
    size_t nroutes;                           /* number of routes (may be 0: everything 404s) */
    const tw_tls_conf_t *tls;                 /* `tls:` block, or NULL */
    const tw_conf_node_t *node;               /* the server's map */
};

/* One distinct listen address (de-duplicated across all servers: "8080",
 * "*:8080" and "0.0.0.0:8080" are one listener). */
typedef struct {
    struct sockaddr_storage addr;     /* AF_INET or AF_INET6 with the port */
    socklen_t addrlen;                /* sizeof(sockaddr_in) or sizeof(sockaddr_in6) */
    const char *text;                 /* canonical "127.0.0.1:8080", "[::1]:8080" */
    const tw_conf_node_t *node;       /* the first listen entry that named it */
    const tw_server_conf_t **servers; /* servers on it in config order; [0] is
                                       * the default (no Host match) */
    size_t nservers;                  /* number of servers (at least 1) */
    bool proxy_protocol;              /* "proxy_protocol" flag: a PROXY header comes first */
    bool tls;                         /* "ADDR:PORT tls": TLS is terminated here */
} tw_listener_conf_t;

/* Per-request limits (`limits:`). */
typedef struct {
    uint64_t request_line; /* max request line bytes (8k) */
    uint64_t header_size;  /* max bytes of the whole head (32k) */
    unsigned headers;      /* max header fields (100) */
    uint64_t body;         /* default max body bytes (1m); routes override */
} tw_limits_t;

/* Timeouts in milliseconds (`timeouts:`). */
typedef struct {
    uint64_t header_ms;    /* to receive the whole head (10s) */
    uint64_t body_ms;      /* between two reads of the body (30s) */
    uint64_t send_ms;      /* between two successful writes (30s) */
    uint64_t keepalive_ms; /* idle between requests (75s); 0: no keep-alive */
    uint64_t shutdown_ms;  /* graceful drain bound on reload/stop (30s) */
    uint64_t configure_ms; /* bound on the configure hooks in -t, -T, -M (10s) */
} tw_timeouts_t;

/* What the master does when one module has crashed workers `max` times
 * within `within_ms` (`crash_policy:`). */
typedef enum {
    TW_CRASH_QUARANTINE = 0, /* a new generation with the module disabled */
    TW_CRASH_RESTART = 1,    /* respawn the workers, as for any crash */
    TW_CRASH_STOP = 2,       /* stop the server (exit status 1) */
} tw_crash_action_t;

typedef struct {
    unsigned max;             /* crashes of one module that spend the budget (5) */
    uint64_t within_ms;       /* the window they are counted in (60s) */
    tw_crash_action_t action; /* quarantine by default */
} tw_crash_policy_t;

struct tw_router;

typedef struct tw_settings {
    tw_conf_doc_t *doc;      /* the config tree; every node pointer below
                              * points into it */
    tw_conf_arena_t *arena;  /* all other memory of the settings */
    const char *config_path; /* the file as given to tw_settings_load */
    const char *config_dir;  /* its directory, absolute when resolvable;
                              * base of every relative path */

    unsigned workers;            /* 1..256, or 0 for auto (one per CPU) */
    const char *user;            /* user to run workers as, or NULL */
    const char *pid_file;        /* resolved path, or NULL for none */
    const char *error_log;       /* resolved path, or NULL for stderr */
    tw_log_level_t log_level;    /* TW_LOG_INFO by default */
    const char *module_dir;      /* resolved module directory */
    tw_module_entry_t *modules;  /* `modules:` in config order */
    size_t nmodules;             /* number of modules */
    tw_conf_section_t *sections; /* top-level module sections, config order */
    size_t nsections;            /* number of top-level module sections */

    unsigned worker_connections;       /* max connections per worker (10000) */
    int backlog;                       /* listen backlog (511) */
    unsigned max_draining_generations; /* old generations kept draining (4) */
    bool reload_handoff;               /* reload: { handoff } (on) */
    uint64_t min_body_rate;            /* bytes/s; 0 disables the check (1k) */
    uint64_t shared_zones;             /* bytes of the shared-zone region (64m) */
    bool server_tokens;                /* append "/<version>" to the Server header */
    const char *server_header;         /* Server header name ("twister"); NULL: none */
    tw_limits_t limits;                /* global request limits */
    tw_timeouts_t timeouts;            /* timeouts */
    tw_crash_policy_t crash_policy;    /* what a module's repeated crashes do */

    tw_server_conf_t *servers;     /* `servers:` in config order (at least 1) */
    size_t nservers;               /* number of servers */
    tw_listener_conf_t *listeners; /* distinct listen addresses, in order of
                                    * first appearance */
    size_t nlisteners;             /* number of listeners */

    struct tw_router *router; /* compiled lookup tables (router.c) */
} tw_settings_t;

/* Loads and checks the config file at path. default_module_dir is used when
 * the file has no module_dir (NULL: TW_SETTINGS_DEFAULT_MODULE_DIR).
 * Returns 0 with *out set, or -1 with "file:line:col: path: message" in err. */
int tw_settings_load(const char *path, const char *default_module_dir, tw_settings_t **out,
                     tw_conf_error_t *err);
/* Like tw_settings_load, from text in memory; name is used in messages and
 * its directory as the config dir. */
int tw_settings_load_string(const char *name, const char *text, size_t len,
                            const char *default_module_dir, tw_settings_t **out,
                            tw_conf_error_t *err);
/* Like tw_settings_load, from a loaded tree; takes ownership of doc (freed
 * on error too). */
int tw_settings_from_doc(tw_conf_doc_t *doc, const char *default_module_dir, tw_settings_t **out,
                         tw_conf_error_t *err);
/* Releases s and everything it owns (NULL is a no-op). */
void tw_settings_free(tw_settings_t *s);

/* Checks that every module section (top-level and per route) and every
 * route's handler names one of the nnames loaded modules; the error is at
 * the first offending key, with "did you mean" among core keys and module
 * names. Call it once the modules are loaded. Returns 0 or -1. */
int tw_settings_check_modules(const tw_settings_t *s, const char *const *names, size_t nnames,
                              tw_conf_error_t *err);

/* Bounds on a route regex, checked before regcomp: glibc unrolls a bounded
 * repetition into that many copies of what it repeats, so 'a{1000}{1000}'
 * costs 200 MB and 'a{1000}{1000}{1000}' gigabytes (in the master and in
 * every worker). Real route regexes stay far below these. */
#define TW_REGEX_MAX_REPEAT 255    /* any count in {n,m} (POSIX RE_DUP_MAX) */
#define TW_REGEX_MAX_NESTED 1000   /* repetitions nested or stacked, multiplied */
#define TW_REGEX_MAX_UNROLLED 4096 /* elements once every repetition is unrolled */
#define TW_REGEX_MAX_DEPTH 32      /* groups nested in groups */

/* Checks that the POSIX ERE pattern stays within the TW_REGEX_MAX_* bounds
 * (its syntax is left to regcomp). Returns 0, or -1 with the reason, naming
 * the character where it was found, in why (whylen bytes). */
int tw_settings_check_regex(const char *pattern, char *why, size_t whylen);

/* Parses one listen address ("127.0.0.1:8080", "[::1]:8080", "8080",
 * "*:8080") into addr/len. Returns 0, or -1 with a reason in why. */
int tw_settings_parse_listen(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                             const char **why);

#endif
