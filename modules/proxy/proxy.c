/* proxy — a reverse proxy to HTTP/1.1 upstreams, written on the public API
 * alone (twister/upstream.h for connections, pools and the HTTP client).
 *
 *   proxy:
 *     upstreams:
 *       app:
 *         servers: ["127.0.0.1:9001", "127.0.0.1:9002 weight=2", "unix:/run/app.sock"]
 *         balance: round_robin   # least_conn, hash (hash_key: $remote_addr, $cookie_id, ...)
 *         keepalive: 32
 *         max_fails: 3
 *         fail_timeout: 10s
 *   routes:
 *     - prefix: /api/
 *       handler: proxy
 *       proxy: { pass: app, connect_timeout: 2s, read_timeout: 30s }
 *
 * A request is streamed both ways: the client's body goes to the upstream
 * as it arrives (paused while the upstream socket is full), the response
 * comes back as the upstream sends it (the upstream read stops while the
 * client is slow), so memory per request is bounded by the stream buffers.
 *
 * State in this file is per worker: each worker is its own process and the
 * upstreams are allocated in the generation's memory, so a reload starts
 * with fresh counters, pools and addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

#define MAX_SERVERS 64       /* per upstream: the tried set is a 64-bit mask */
#define HEAD_MAX (64 * 1024) /* an upstream response head larger than this is a 502 */

typedef enum {
    BALANCE_ROUND_ROBIN,
    BALANCE_LEAST_CONN,
    BALANCE_HASH
} balance_t;

typedef struct {
    const char *spec; /* as configured, for re-resolving */
    bool named;       /* a host name: re-resolved in the background */
    tw_addr_t addr;
    int weight;
    int current; /* smooth weighted round robin */
    unsigned active;
    unsigned fails;
    uint64_t fail_window_end;
    uint64_t down_until;
} server_t;

typedef struct upstream {
    const char *name;
    server_t *servers;
    size_t count;
    balance_t balance;
    const char *hash_header; /* a header's value (hash_key without '$') */
    tw_template_t *hash_key; /* hash_key with variables; neither: $remote_addr */
    uint64_t keepalive;
    uint64_t keepalive_ms;
    uint64_t max_fails;
    uint64_t fail_timeout_ms;
    uint64_t resolve_ms;
    size_t rr_next;
    tw_conn_pool_t *pool; /* created on first use in the worker */
    tw_loop_t *loop;
    tw_timer_t resolve_timer;
    bool resolving;
    struct upstream *next;
} upstream_t;

typedef struct {
    upstream_t *upstreams; /* every upstream, named or implicit (pass: ADDR) */
} proxy_global_t;

typedef struct {
    upstream_t *upstream;
    uint64_t connect_ms, read_ms, send_ms;
    tw_header_t *set_headers;   /* the names (values: the templates' text) */
    tw_template_t **set_values; /* per set_headers entry */
    size_t set_count;
    const char *host; /* Host sent upstream; NULL: the client's */
    bool buffering;   /* accepted for nginx users; the proxy always streams */
    bool forwarded;   /* also send RFC 7239 Forwarded */
    bool via;         /* add "Via: 1.1 twister" both ways (RFC 9110 7.6.3) */
} proxy_route_t;

/* ---- configuration ------------------------------------------------------- */

static int parse_server(tw_configure_t *cf, const tw_conf_node_t *node, server_t *s,
                        tw_conf_error_t *err)
{
    const char *text;
    if (tw_conf_get_string(node, &text, err))
        return -1;
    char *copy = tw_configure_strdup(cf, text);
    if (!copy)
        return tw_conf_error(err, node, "out of memory");
    s->weight = 1;
    char *save = NULL;
    char *addr = strtok_r(copy, " \t", &save);
    if (!addr)
        return tw_conf_error(err, node, "expected an address");
    for (char *opt = strtok_r(NULL, " \t", &save); opt; opt = strtok_r(NULL, " \t", &save)) {
        char *end;
        if (strncmp(opt, "weight=", 7) != 0)
            return tw_conf_error(err, node, "unknown server option '%s' (expected weight=N)", opt);
        long w = strtol(opt + 7, &end, 10);
        if (*end || end == opt + 7 || w < 1 || w > 1000)
            return tw_conf_error(err, node, "weight wants a number from 1 to 1000");
        s->weight = (int)w;
    }
    s->spec = addr;
    if (tw_addr_parse(addr, &s->addr) == 0)
        return 0;
    if (strncmp(addr, "unix:", 5) == 0)
        return tw_conf_error(err, node, "bad unix socket path '%s'", addr + 5);
    /* A name: resolved now, while the generation is built, never on a
     * request's path. */
    size_t n;
    if (tw_addr_resolve(addr, &s->addr, 1, &n))
        return tw_conf_error(err, node, "cannot resolve '%s': %s", addr,
                             errno == EINVAL ? "expected HOST:PORT, [IPv6]:PORT or unix:/path"
                                             : strerror(errno));
    s->named = true;
    return 0;
}

static upstream_t *upstream_new(tw_configure_t *cf, proxy_global_t *g, const char *name)
{
    upstream_t *u = tw_configure_alloc(cf, sizeof *u);
    if (!u)
        return NULL;
    u->name = tw_configure_strdup(cf, name);
    u->keepalive = 32;
    u->keepalive_ms = 60000;
    u->max_fails = 1;
    u->fail_timeout_ms = 10000;
    u->resolve_ms = 30000;
    u->next = g->upstreams;
    g->upstreams = u;
    return u;
}

static int parse_upstream(tw_configure_t *cf, proxy_global_t *g, const char *name,
                          const tw_conf_node_t *node, tw_conf_error_t *err)
{
    static const char *const keys[] = {"servers",      "balance",           "hash_key",
                                       "keepalive",    "keepalive_timeout", "max_fails",
                                       "fail_timeout", "resolve",           NULL};
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    for (upstream_t *o = g->upstreams; o; o = o->next)
        if (strcmp(o->name, name) == 0)
            return tw_conf_error(err, node, "upstream '%s' is defined twice", name);
    upstream_t *u = upstream_new(cf, g, name);
    if (!u)
        return tw_conf_error(err, node, "out of memory");
    const tw_conf_node_t *servers = tw_conf_map_get(node, "servers");
    if (tw_conf_type(servers) != TW_CONF_LIST || tw_conf_count(servers) == 0)
        return tw_conf_error(err, servers ? servers : node,
                             "servers: expected a list of addresses");
    u->count = tw_conf_count(servers);
    if (u->count > MAX_SERVERS)
        return tw_conf_error(err, servers, "at most %d servers per upstream", MAX_SERVERS);
    u->servers = tw_configure_alloc(cf, u->count * sizeof *u->servers);
    if (!u->servers)
        return tw_conf_error(err, node, "out of memory");
    for (size_t i = 0; i < u->count; i++)
        if (parse_server(cf, tw_conf_list_item(servers, i), &u->servers[i], err))
            return -1;
    const tw_conf_node_t *n;
    if ((n = tw_conf_map_get(node, "balance"))) {
        const char *b;
        if (tw_conf_get_string(n, &b, err))
            return -1;
        if (strcmp(b, "round_robin") == 0)
            u->balance = BALANCE_ROUND_ROBIN;
        else if (strcmp(b, "least_conn") == 0)
            u->balance = BALANCE_LEAST_CONN;
        else if (strcmp(b, "hash") == 0)
            u->balance = BALANCE_HASH;
        else
            return tw_conf_error(err, n, "expected round_robin, least_conn or hash");
    }
    if ((n = tw_conf_map_get(node, "hash_key"))) {
        const char *k;
        if (tw_conf_get_string(n, &k, err))
            return -1;
        if (!strchr(k, '$'))
            u->hash_header = tw_configure_strdup(cf, k); /* a header's name, as before 1.3 */
        else if (strcmp(k, "$remote_addr") != 0 &&
                 !(u->hash_key = tw_template_compile(cf, k, n, err)))
            return -1;
    }
    long long v;
    if ((n = tw_conf_map_get(node, "keepalive"))) {
        if (tw_conf_get_int(n, 0, 100000, &v, err))
            return -1;
        u->keepalive = (uint64_t)v;
    }
    if ((n = tw_conf_map_get(node, "max_fails"))) {
        if (tw_conf_get_int(n, 0, 1000, &v, err))
            return -1;
        u->max_fails = (uint64_t)v;
    }
    if ((n = tw_conf_map_get(node, "keepalive_timeout")) &&
        tw_conf_get_duration_ms(n, &u->keepalive_ms, err))
        return -1;
    if ((n = tw_conf_map_get(node, "fail_timeout")) &&
        tw_conf_get_duration_ms(n, &u->fail_timeout_ms, err))
        return -1;
    if ((n = tw_conf_map_get(node, "resolve")) && tw_conf_get_duration_ms(n, &u->resolve_ms, err))
        return -1;
    return 0;
}

static int configure_global(tw_configure_t *cf, const tw_conf_node_t *node, void **conf,
                            tw_conf_error_t *err)
{
    static const char *const keys[] = {"upstreams", NULL};
    proxy_global_t *g = tw_configure_alloc(cf, sizeof *g);
    if (!g)
        return tw_conf_error(err, node, "out of memory");
    *conf = g;
    if (!node)
        return 0;
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    const tw_conf_node_t *ups = tw_conf_map_get(node, "upstreams");
    if (!ups)
        return 0;
    if (tw_conf_type(ups) != TW_CONF_MAP)
        return tw_conf_error(err, ups, "expected a map of upstream names");
    for (size_t i = 0; i < tw_conf_count(ups); i++)
        if (parse_upstream(cf, g, tw_conf_map_key(ups, i), tw_conf_map_value(ups, i), err))
            return -1;
    return 0;
}

static int configure_route(tw_configure_t *cf, const tw_conf_node_t *node, void **conf,
                           tw_conf_error_t *err)
{
    static const char *const keys[] = {"pass",         "connect_timeout",
                                       "read_timeout", "send_timeout",
                                       "set_headers",  "buffering",
                                       "host",         "forwarded",
                                       "via",          NULL};
    if (!node)
        return 0; /* the handler then answers 500 and says why */
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    proxy_global_t *g = tw_configure_global_conf(cf);
    proxy_route_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c || !g)
        return tw_conf_error(err, node, "out of memory");
    c->connect_ms = 5000;
    c->read_ms = 60000;
    c->send_ms = 60000;
    const tw_conf_node_t *pass = tw_conf_map_get(node, "pass");
    const char *name;
    if (tw_conf_get_string(pass ? pass : node, &name, err))
        return pass ? -1 : tw_conf_error(err, node, "pass: expected an upstream name or address");
    for (upstream_t *u = g->upstreams; u; u = u->next)
        if (strcmp(u->name, name) == 0)
            c->upstream = u;
    if (!c->upstream) {
        /* pass: ADDRESS is an upstream of one server. */
        if (!strchr(name, ':'))
            return tw_conf_error(err, pass, "no upstream named '%s'", name);
        upstream_t *u = upstream_new(cf, g, name);
        if (!u || !(u->servers = tw_configure_alloc(cf, sizeof *u->servers)))
            return tw_conf_error(err, pass, "out of memory");
        u->count = 1;
        u->max_fails = 0;
        if (parse_server(cf, pass, &u->servers[0], err))
            return -1;
        c->upstream = u;
    }
    const tw_conf_node_t *n;
    if ((n = tw_conf_map_get(node, "connect_timeout")) &&
        tw_conf_get_duration_ms(n, &c->connect_ms, err))
        return -1;
    if ((n = tw_conf_map_get(node, "read_timeout")) && tw_conf_get_duration_ms(n, &c->read_ms, err))
        return -1;
    if ((n = tw_conf_map_get(node, "send_timeout")) && tw_conf_get_duration_ms(n, &c->send_ms, err))
        return -1;
    if ((n = tw_conf_map_get(node, "buffering")) && tw_conf_get_bool(n, &c->buffering, err))
        return -1;
    if ((n = tw_conf_map_get(node, "forwarded")) && tw_conf_get_bool(n, &c->forwarded, err))
        return -1;
    if ((n = tw_conf_map_get(node, "via")) && tw_conf_get_bool(n, &c->via, err))
        return -1;
    if ((n = tw_conf_map_get(node, "host")) && tw_conf_get_string(n, &c->host, err))
        return -1;
    if ((n = tw_conf_map_get(node, "set_headers"))) {
        if (tw_conf_type(n) != TW_CONF_MAP)
            return tw_conf_error(err, n, "expected a map of header names to values");
        c->set_count = tw_conf_count(n);
        c->set_headers = tw_configure_alloc(cf, (c->set_count + 1) * sizeof *c->set_headers);
        c->set_values = tw_configure_alloc(cf, (c->set_count + 1) * sizeof *c->set_values);
        if (!c->set_headers || !c->set_values)
            return tw_conf_error(err, n, "out of memory");
        for (size_t i = 0; i < c->set_count; i++) {
            const char *k = tw_conf_map_key(n, i), *v;
            if (tw_conf_get_string(tw_conf_map_value(n, i), &v, err))
                return -1;
            for (const char *p = k; *p; p++)
                if (*p <= ' ' || *p == ':' || *p == 0x7f)
                    return tw_conf_error(err, tw_conf_map_key_node(n, i), "not a header name");
            for (const char *p = v; *p; p++)
                if ((unsigned char)*p < ' ' && *p != '\t')
                    return tw_conf_error(err, tw_conf_map_value(n, i),
                                         "control character in a header value");
            c->set_headers[i] = (tw_header_t){{k, strlen(k)}, {v, strlen(v)}};
            if (!(c->set_values[i] = tw_template_compile(cf, v, tw_conf_map_value(n, i), err)))
                return -1;
        }
    }
    *conf = c;
    return 0;
}

static int proxy_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                           void **conf, tw_conf_error_t *err)
{
    return scope == TW_SCOPE_GLOBAL ? configure_global(cf, node, conf, err)
                                    : configure_route(cf, node, conf, err);
}

/* ---- background re-resolution ---------------------------------------------- */

typedef struct {
    upstream_t *upstream;
    size_t index;
    tw_addr_t addr;
    int ok;
} resolve_job_t;

static void resolve_work(void *arg)
{
    resolve_job_t *j = arg;
    size_t n;
    j->ok = tw_addr_resolve(j->upstream->servers[j->index].spec, &j->addr, 1, &n) == 0;
}

static void resolve_next(upstream_t *u, size_t from);

static void resolve_done(tw_loop_t *loop, void *arg)
{
    (void)loop;
    resolve_job_t *j = arg;
    server_t *s = &j->upstream->servers[j->index];
    if (j->ok && (j->addr.len != s->addr.len || memcmp(&j->addr.sa, &s->addr.sa, s->addr.len))) {
        tw_log_info("proxy: upstream %s: %s now resolves to %s (was %s)", j->upstream->name,
                    s->spec, j->addr.text, s->addr.text);
        s->addr = j->addr;
    } else if (!j->ok) {
        tw_log_warn("proxy: upstream %s: cannot re-resolve %s; keeping %s", j->upstream->name,
                    s->spec, s->addr.text);
    }
    upstream_t *u = j->upstream;
    size_t next = j->index + 1;
    free(j);
    resolve_next(u, next);
}

/* Resolves the named servers one after the other, then re-arms the timer. */
static void resolve_next(upstream_t *u, size_t from)
{
    for (size_t i = from; i < u->count; i++) {
        if (!u->servers[i].named)
            continue;
        resolve_job_t *j = calloc(1, sizeof *j);
        if (j) {
            j->upstream = u;
            j->index = i;
            if (tw_loop_queue_work(u->loop, resolve_work, resolve_done, j) == 0)
                return;
            free(j);
        }
    }
    u->resolving = false;
    tw_timer_start(u->loop, &u->resolve_timer, u->resolve_ms);
}

static void resolve_tick(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    (void)loop;
    (void)timer;
    upstream_t *u = arg;
    u->resolving = true;
    resolve_next(u, 0);
}

static int proxy_init_worker(tw_worker_t *worker, tw_conf_error_t *err)
{
    (void)err;
    proxy_global_t *g = tw_worker_global_conf(worker, &twister_module_v1);
    if (!g)
        return 0;
    for (upstream_t *u = g->upstreams; u; u = u->next) {
        u->loop = tw_worker_loop(worker);
        tw_timer_init(&u->resolve_timer, resolve_tick, u);
        bool named = false;
        for (size_t i = 0; i < u->count; i++)
            named |= u->servers[i].named;
        if (named && u->resolve_ms)
            tw_timer_start(u->loop, &u->resolve_timer, u->resolve_ms);
    }
    return 0;
}

static void proxy_exit_worker(tw_worker_t *worker)
{
    proxy_global_t *g = tw_worker_global_conf(worker, &twister_module_v1);
    if (!g)
        return;
    for (upstream_t *u = g->upstreams; u; u = u->next) {
        if (u->loop)
            tw_timer_stop(u->loop, &u->resolve_timer);
        tw_conn_pool_free(u->pool);
        u->pool = NULL;
    }
}

/* ---- picking a server ---------------------------------------------------- */

static bool server_usable(const server_t *s, uint64_t now)
{
    return s->down_until <= now;
}

static uint32_t fnv1a(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* The next server for r that it has not tried, or -1. */
static int pick_server(upstream_t *u, tw_request_t *r, uint64_t tried)
{
    uint64_t now = tw_loop_now(tw_request_loop(r));
    int best = -1;
    if (u->balance == BALANCE_HASH) {
        tw_str_t key = {0};
        if (u->hash_header) {
            const tw_header_t *h = tw_request_header(r, u->hash_header);
            if (h)
                key = h->value;
        } else if (u->hash_key) {
            key.ptr = tw_template_expand(r, u->hash_key, TW_TEMPLATE_TEXT, &key.len);
        } else {
            key.ptr = tw_request_peer_text(r);
            key.len = strlen(key.ptr);
        }
        size_t start = fnv1a(key.ptr ? key.ptr : "", key.len) % u->count;
        for (size_t k = 0; k < u->count; k++) {
            size_t i = (start + k) % u->count;
            if (!(tried >> i & 1) && server_usable(&u->servers[i], now))
                return (int)i;
        }
        return -1;
    }
    if (u->balance == BALANCE_LEAST_CONN) {
        /* Fewest active per weight; ties go round robin. */
        for (size_t k = 0; k < u->count; k++) {
            size_t i = (u->rr_next + k) % u->count;
            server_t *s = &u->servers[i];
            if ((tried >> i & 1) || !server_usable(s, now))
                continue;
            if (best < 0 || (uint64_t)s->active * (unsigned)u->servers[best].weight <
                                (uint64_t)u->servers[best].active * (unsigned)s->weight)
                best = (int)i;
        }
        if (best >= 0)
            u->rr_next = ((size_t)best + 1) % u->count;
        return best;
    }
    /* Smooth weighted round robin (as nginx): even spread, weights kept. */
    int total = 0;
    for (size_t i = 0; i < u->count; i++) {
        server_t *s = &u->servers[i];
        if ((tried >> i & 1) || !server_usable(s, now))
            continue;
        s->current += s->weight;
        total += s->weight;
        if (best < 0 || s->current > u->servers[best].current)
            best = (int)i;
    }
    if (best >= 0)
        u->servers[best].current -= total;
    return best;
}

static void server_failed(upstream_t *u, server_t *s, uint64_t now)
{
    if (u->max_fails == 0)
        return;
    if (now >= s->fail_window_end) {
        s->fails = 0;
        s->fail_window_end = now + u->fail_timeout_ms;
    }
    if (++s->fails >= u->max_fails) {
        s->down_until = now + u->fail_timeout_ms;
        s->fails = 0;
        tw_log_warn("proxy: upstream %s: %s marked down for %llu ms", u->name, s->addr.text,
                    (unsigned long long)u->fail_timeout_ms);
    }
}

/* ---- the request --------------------------------------------------------- */

typedef enum {
    WAIT_NONE,
    WAIT_READ, /* the upstream's response */
    WAIT_SEND  /* the upstream to take the request body */
} wait_t;

typedef struct {
    tw_request_t *r;
    tw_loop_t *loop;
    const proxy_route_t *conf;
    upstream_t *up;
    int server;   /* index, -1 before the first pick */
    bool counted; /* server's active count includes us */
    uint64_t tried;
    unsigned attempts;
    tw_connect_t *connecting;
    tw_stream_t *us; /* the upstream connection (tied to r) */
    bool reused;
    char *head;
    size_t head_len;
    bool is_head;
    bool has_body, body_chunked, body_started, body_sent_any, body_done, body_paused;
    char *pending; /* a piece of the client's body that arrived between attempts */
    size_t pending_len;
    bool pending_last, has_pending;
    bool response_started; /* a byte of the response arrived */
    bool client_slow;
    bool finished;
    bool upgrade;        /* the client asked for a protocol switch (WebSocket) */
    tw_stream_t *client; /* after a 101: the client's raw stream */
    bool tunnel_client_waits, tunnel_upstream_waits;
    tw_http_response_t resp;
    tw_http_decoder_t *decoder;
    int last_status;        /* of the last failed attempt: the answer if none is left */
    bool connect_timed_out; /* a connect timeout is a 504 but still retried */
    tw_timer_t timer;
    wait_t waiting;
} proxy_ctx_t;

static void attach(proxy_ctx_t *c, tw_stream_t *s);
static void complete(proxy_ctx_t *c);
static void tunnel_start(proxy_ctx_t *c);
static void try_next(proxy_ctx_t *c);

static void uncount(proxy_ctx_t *c)
{
    if (c->counted) {
        c->up->servers[c->server].active--;
        c->counted = false;
    }
}

static void ctx_cleanup(void *arg)
{
    proxy_ctx_t *c = arg;
    tw_timer_stop(c->loop, &c->timer);
    if (c->connecting)
        tw_connect_cancel(c->connecting);
    c->connecting = NULL;
    uncount(c);
    /* c->us is tied to the request: it is closed by the tie. */
}

/* Closes the upstream connection, or gives it back to the pool. */
static void release_upstream(proxy_ctx_t *c, bool reusable)
{
    tw_stream_t *s = c->us;
    if (!s)
        return;
    c->us = NULL;
    tw_stream_set_close_cb(s, NULL, NULL);
    tw_stream_set_drain_cb(s, NULL, NULL);
    tw_stream_cancel_read(s);
    tw_stream_untie(s);
    if (reusable && c->up->keepalive > 0) {
        if (!c->up->pool)
            c->up->pool = tw_conn_pool_new(c->loop, c->up->keepalive, c->up->keepalive_ms);
        if (c->up->pool) {
            tw_conn_pool_put(c->up->pool, &c->up->servers[c->server].addr, s);
            return;
        }
    }
    tw_stream_close(s);
}

static void finish(proxy_ctx_t *c, int rc)
{
    if (c->finished)
        return;
    c->finished = true;
    tw_timer_stop(c->loop, &c->timer);
    if (c->connecting)
        tw_connect_cancel(c->connecting);
    c->connecting = NULL;
    if (c->client) {
        /* The connection is the server's again (to close it): our read
         * must not outlive this context. */
        tw_stream_cancel_read(c->client);
        c->client = NULL;
    }
    release_upstream(c, false);
    uncount(c);
    tw_request_resume(c->r, rc);
}

static void wait_for(proxy_ctx_t *c, wait_t what)
{
    c->waiting = what;
    uint64_t ms = what == WAIT_READ ? c->conf->read_ms : c->conf->send_ms;
    if (what == WAIT_NONE || ms == 0)
        tw_timer_stop(c->loop, &c->timer);
    else
        tw_timer_start(c->loop, &c->timer, ms);
}

static const char *server_text(const proxy_ctx_t *c)
{
    return c->server >= 0 ? c->up->servers[c->server].addr.text : "-";
}

/* An attempt failed. Retries the next server when nothing has reached the
 * client and the request can be sent again; otherwise answers status
 * (502/504), or closes the client connection if the response had begun. */
static void upstream_failed(proxy_ctx_t *c, int status, const char *reason, bool server_fault)
{
    tw_log_error("proxy: %.*s %s: upstream %s (%s): %s%s", (int)tw_request_method(c->r).len,
                 tw_request_method(c->r).ptr, tw_request_path(c->r).ptr, c->up->name,
                 server_text(c), reason, c->reused ? " (reused connection)" : "");
    if (server_fault && c->server >= 0)
        server_failed(c->up, &c->up->servers[c->server], tw_loop_now(c->loop));
    release_upstream(c, false);
    uncount(c);
    bool idempotent = tw_request_method_is(c->r, "GET") || tw_request_method_is(c->r, "HEAD") ||
                      tw_request_method_is(c->r, "PUT") || tw_request_method_is(c->r, "DELETE") ||
                      tw_request_method_is(c->r, "OPTIONS");
    /* A request can go to another server while no byte of its body went
     * out; an idempotent one with no body at all, always (before any
     * response byte, which the caller checks). */
    bool resendable = !c->body_sent_any || (!c->has_body && idempotent);
    c->last_status = status;
    if (!c->response_started && resendable && (status == 502 || c->connect_timed_out) &&
        !tw_response_head_sent(c->r)) {
        c->connect_timed_out = false;
        try_next(c);
        return;
    }
    finish(c, status);
}

static void on_timer(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    (void)loop;
    (void)timer;
    proxy_ctx_t *c = arg;
    upstream_failed(c, 504,
                    c->waiting == WAIT_SEND ? "timed out sending the request"
                                            : "timed out waiting for the response",
                    true);
}

static void on_abort(tw_request_t *r, void *arg)
{
    (void)r;
    finish(arg, TW_DONE);
}

static void on_upstream_close(tw_stream_t *s, void *arg)
{
    proxy_ctx_t *c = arg;
    if (c->us != s)
        return;
    c->us = NULL;
    if (c->client) {
        finish(c, TW_DONE); /* the tunnel ends with either side */
        return;
    }
    if (c->decoder && tw_http_decoder_eof(c->decoder) == TW_HTTP_DECODE_DONE) {
        /* A close-delimited body ended while the client was catching up. */
        c->resp.keep_alive = false;
        complete(c);
        return;
    }
    int e = tw_stream_error(s);
    upstream_failed(c, 502, e ? strerror(e) : "connection closed", !c->reused);
}

static void on_connected(tw_stream_t *s, int err, void *arg)
{
    proxy_ctx_t *c = arg;
    c->connecting = NULL;
    if (!s) {
        c->connect_timed_out = err == ETIMEDOUT;
        upstream_failed(c, err == ETIMEDOUT ? 504 : 502,
                        err == ETIMEDOUT ? "connect timed out" : strerror(err), true);
        return;
    }
    attach(c, s);
}

static void try_next(proxy_ctx_t *c)
{
    int i = pick_server(c->up, c->r, c->tried);
    if (i < 0) {
        tw_log_error("proxy: %.*s %s: upstream %s: no server left to try",
                     (int)tw_request_method(c->r).len, tw_request_method(c->r).ptr,
                     tw_request_path(c->r).ptr, c->up->name);
        finish(c, c->last_status ? c->last_status : 502);
        return;
    }
    c->server = i;
    c->tried |= 1ull << i;
    c->attempts++;
    server_t *s = &c->up->servers[i];
    s->active++;
    c->counted = true;
    tw_stream_t *idle = c->up->pool ? tw_conn_pool_get(c->up->pool, &s->addr) : NULL;
    if (idle) {
        /* A reused connection that fails before the response is the
         * server closing an idle keep-alive: retry it on the same server. */
        c->reused = true;
        c->tried &= ~(1ull << i);
        attach(c, idle);
        return;
    }
    c->reused = false;
    c->connecting = tw_stream_connect(c->loop, &s->addr, c->conf->connect_ms, on_connected, c);
    if (!c->connecting)
        upstream_failed(c, 502, strerror(errno), false);
}

/* ---- request to the upstream ---------------------------------------------- */

static bool is_hop_by_hop(tw_str_t name)
{
    static const char *const hop[] = {"Connection",        "Keep-Alive", "Proxy-Connection", "TE",
                                      "Transfer-Encoding", "Upgrade",    "Trailer",          NULL};
    for (const char *const *h = hop; *h; h++)
        if (name.len == strlen(*h) && strncasecmp(name.ptr, *h, name.len) == 0)
            return true;
    return false;
}

static bool name_eq(tw_str_t a, const char *b)
{
    return a.len == strlen(b) && strncasecmp(a.ptr, b, a.len) == 0;
}

/* True if a Connection field among fields[0..n) lists name. */
static bool connection_lists(const tw_header_t *fields, size_t n, tw_str_t name)
{
    for (size_t f = 0; f < n; f++) {
        if (!name_eq(fields[f].name, "Connection"))
            continue;
        tw_str_t v = fields[f].value;
        size_t i = 0;
        while (i < v.len) {
            while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t' || v.ptr[i] == ','))
                i++;
            size_t start = i;
            while (i < v.len && v.ptr[i] != ',' && v.ptr[i] != ' ' && v.ptr[i] != '\t')
                i++;
            if (i - start == name.len && strncasecmp(v.ptr + start, name.ptr, name.len) == 0)
                return true;
        }
    }
    return false;
}

static bool is_set_header(const proxy_route_t *conf, tw_str_t name)
{
    for (size_t i = 0; i < conf->set_count; i++)
        if (name.len == conf->set_headers[i].name.len &&
            strncasecmp(name.ptr, conf->set_headers[i].name.ptr, name.len) == 0)
            return true;
    return false;
}

static bool header_value_ok(tw_str_t v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        if ((ch < ' ' && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static tw_str_t str(const char *s)
{
    return (tw_str_t){s, strlen(s)};
}

static int build_head(proxy_ctx_t *c)
{
    tw_request_t *r = c->r;
    tw_pool_t *pool = tw_request_pool(r);
    size_t n = tw_request_header_count(r);
    tw_header_t *in = tw_request_alloc(r, (n + 1) * sizeof *in);
    tw_header_t *out = tw_request_alloc(r, (n + 11 + c->conf->set_count) * sizeof *out);
    if (!in || !out)
        return -1;
    for (size_t i = 0; i < n; i++)
        in[i] = *tw_request_header_at(r, i);
    size_t k = 0;
    const tw_header_t *host = tw_request_header(r, "Host");
    tw_str_t xff_prev = {0};
    for (size_t i = 0; i < n; i++) {
        tw_str_t name = in[i].name;
        if (is_hop_by_hop(name) || connection_lists(in, n, name) || name_eq(name, "Host") ||
            name_eq(name, "Content-Length") || name_eq(name, "Expect") ||
            name_eq(name, "X-Forwarded-Proto") || name_eq(name, "X-Forwarded-Host") ||
            (c->conf->forwarded && name_eq(name, "Forwarded")) || is_set_header(c->conf, name))
            continue;
        if (name_eq(name, "X-Forwarded-For")) {
            if (!xff_prev.len) {
                xff_prev = in[i].value;
            } else {
                /* Repeated fields are one list (RFC 9110 5.3). */
                size_t len = xff_prev.len + 2 + in[i].value.len;
                char *j = tw_request_alloc(r, len + 1);
                if (!j)
                    return -1;
                snprintf(j, len + 1, "%.*s, %.*s", (int)xff_prev.len, xff_prev.ptr,
                         (int)in[i].value.len, in[i].value.ptr);
                xff_prev = (tw_str_t){j, len};
            }
            continue;
        }
        out[k++] = in[i];
    }
    const tw_header_t *upgrade = tw_request_header(r, "Upgrade");
    c->upgrade =
        upgrade && connection_lists(in, n, str("upgrade")) && tw_request_content_length(r) == 0;
    if (c->upgrade) {
        out[k++] = (tw_header_t){str("Upgrade"), upgrade->value};
        out[k++] = (tw_header_t){str("Connection"), str("upgrade")};
    }
    const char *peer = tw_request_peer_text(r);
    if (c->conf->host)
        out[k++] = (tw_header_t){str("Host"), str(c->conf->host)};
    else if (host)
        out[k++] = (tw_header_t){str("Host"), host->value};
    else
        out[k++] = (tw_header_t){str("Host"), str(c->up->name)};
    char *xff;
    if (xff_prev.len) {
        size_t len = xff_prev.len + 2 + strlen(peer);
        if (!(xff = tw_request_alloc(r, len + 1)))
            return -1;
        snprintf(xff, len + 1, "%.*s, %s", (int)xff_prev.len, xff_prev.ptr, peer);
    } else {
        xff = (char *)peer;
    }
    out[k++] = (tw_header_t){str("X-Forwarded-For"), str(xff)};
    const char *scheme = tw_request_scheme(r);
    out[k++] = (tw_header_t){str("X-Forwarded-Proto"), str(scheme)};
    if (host)
        out[k++] = (tw_header_t){str("X-Forwarded-Host"), host->value};
    if (c->conf->forwarded) {
        bool v6 = strchr(peer, ':') != NULL;
        size_t len = strlen(peer) + 64 + (host ? host->value.len : 0);
        char *fwd = tw_request_alloc(r, len);
        if (!fwd)
            return -1;
        int m = snprintf(fwd, len, "for=%s%s%s;proto=%s", v6 ? "\"[" : "", peer, v6 ? "]\"" : "",
                         scheme);
        if (host && (size_t)m < len)
            snprintf(fwd + m, len - (size_t)m, ";host=\"%.*s\"", (int)host->value.len,
                     host->value.ptr);
        out[k++] = (tw_header_t){str("Forwarded"), str(fwd)};
    }
    if (c->conf->via)
        out[k++] = (tw_header_t){str("Via"), str("1.1 twister")};
    int64_t cl = tw_request_content_length(r);
    c->has_body = cl != 0;
    c->body_chunked = cl < 0;
    if (cl > 0) {
        char *num = tw_request_alloc(r, 24);
        if (!num)
            return -1;
        snprintf(num, 24, "%lld", (long long)cl);
        out[k++] = (tw_header_t){str("Content-Length"), str(num)};
    } else if (cl < 0) {
        out[k++] = (tw_header_t){str("Transfer-Encoding"), str("chunked")};
    }
    for (size_t i = 0; i < c->conf->set_count; i++) {
        tw_str_t v;
        v.ptr = tw_template_expand(r, c->conf->set_values[i], TW_TEMPLATE_TEXT, &v.len);
        if (!v.ptr)
            return -1;
        /* An empty value removes the field (as nginx's proxy_set_header);
         * one the request made unsendable (a CR from a decoded $uri) is
         * dropped: never a header injected upstream. */
        if (v.len && header_value_ok(v))
            out[k++] = (tw_header_t){c->conf->set_headers[i].name, v};
    }
    tw_str_t target = tw_request_target(r);
    if (target.len == 0 || target.ptr[0] != '/') {
        /* absolute-form: the upstream gets origin-form. */
        tw_str_t path = tw_request_path(r), query = tw_request_query(r);
        size_t len = path.len + (query.len ? 1 + query.len : 0);
        char *t = tw_request_alloc(r, len + 1);
        if (!t)
            return -1;
        snprintf(t, len + 1, "%.*s%s%.*s", (int)path.len, path.ptr, query.len ? "?" : "",
                 (int)query.len, query.ptr);
        target = (tw_str_t){t, len};
    }
    c->head = tw_http_request_head(pool, tw_request_method(r), target, out, k, &c->head_len);
    return c->head ? 0 : -1;
}

static void tunnel_read_client(proxy_ctx_t *c);

static void on_upstream_drain(tw_stream_t *s, void *arg)
{
    (void)s;
    proxy_ctx_t *c = arg;
    if (c->client) {
        if (c->tunnel_client_waits) {
            c->tunnel_client_waits = false;
            tunnel_read_client(c);
        }
        return;
    }
    if (c->body_paused) {
        c->body_paused = false;
        wait_for(c, WAIT_READ);
        tw_request_resume_body(c->r);
    }
}

static int send_upstream(proxy_ctx_t *c, const void *data, size_t len)
{
    int rc = tw_stream_write(c->us, data, len, NULL, NULL);
    if (rc < 0)
        return -1;
    return rc;
}

/* Sends one piece of the client's body (framed as announced upstream).
 * Returns 0, 1 (the upstream is full: pause the client's body) or -1. */
static int send_body_piece(proxy_ctx_t *c, const char *data, size_t len, bool last)
{
    int rc = 0;
    if (len) {
        c->body_sent_any = true;
        if (c->body_chunked) {
            char line[24];
            size_t n = tw_http_chunk_line(len, line);
            rc = send_upstream(c, line, n);
            if (rc >= 0)
                rc = send_upstream(c, data, len);
            if (rc >= 0)
                rc = send_upstream(c, "\r\n", 2);
        } else {
            rc = send_upstream(c, data, len);
        }
    }
    if (rc >= 0 && last) {
        if (c->body_chunked)
            rc = send_upstream(c, "0\r\n\r\n", 5);
        c->body_done = true;
    }
    if (rc < 0)
        return -1;
    if (rc == 1 && !last) {
        c->body_paused = true;
        wait_for(c, WAIT_SEND);
        return 1;
    }
    wait_for(c, WAIT_READ); /* progress: the read timeout starts again */
    return 0;
}

static int on_body_chunk(tw_request_t *r, int status, const char *data, size_t len, bool last,
                         void *arg)
{
    (void)r;
    proxy_ctx_t *c = arg;
    if (c->finished)
        return 1; /* answered already (an early upstream response): read no more */
    if (status != 0) {
        /* The client's body failed (framing, timeout, limit, gone): the
         * upstream got a partial request and must not be reused. */
        release_upstream(c, false);
        finish(c, status);
        return 0;
    }
    if (!c->us) {
        /* Between two attempts (nothing of the body was sent yet, or there
         * would be none): hold this piece until the next connection. */
        c->pending = len ? tw_request_alloc(c->r, len) : NULL;
        if (len && !c->pending) {
            finish(c, TW_ERROR);
            return 1;
        }
        if (len)
            memcpy(c->pending, data, len);
        c->pending_len = len;
        c->pending_last = last;
        c->has_pending = true;
        return 1;
    }
    int rc = send_body_piece(c, data, len, last);
    return rc < 0 ? 0 : rc; /* a failed write: the close callback reports it */
}

/* ---- response from the upstream -------------------------------------------- */

static void complete(proxy_ctx_t *c)
{
    bool reusable = c->resp.keep_alive && (c->body_done || !c->has_body);
    if (tw_response_finish(c->r) < 0 && errno != EALREADY) {
        finish(c, TW_DONE);
        return;
    }
    c->up->servers[c->server].fails = 0;
    release_upstream(c, reusable);
    finish(c, TW_DONE);
}

static size_t on_body_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg);

static void read_body(proxy_ctx_t *c)
{
    if (tw_stream_read_some(c->us, on_body_data, c) < 0)
        upstream_failed(c, 502, "connection lost", false);
    else
        wait_for(c, WAIT_READ);
}

static void on_client_drain(tw_request_t *r, void *arg)
{
    (void)r;
    proxy_ctx_t *c = arg;
    c->client_slow = false;
    if (!c->finished && c->us)
        read_body(c);
}

static size_t on_body_data(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    (void)s;
    proxy_ctx_t *c = arg;
    size_t off = 0;
    /* Everything delivered is decoded and written now (the client side
     * copies it), so nothing stays behind in the stream; a slow client
     * only stops the next read. */
    for (;;) { /* also once with nothing left: a length-delimited body ends there */
        size_t used, plen;
        const char *piece;
        int rc = tw_http_decoder_feed(c->decoder, data + off, len - off, &used, &piece, &plen);
        off += used;
        if (rc == TW_HTTP_DECODE_DATA) {
            int w = tw_response_write(c->r, piece, plen);
            if (w < 0) {
                finish(c, TW_DONE); /* the client is gone or a filter failed */
                return len;
            }
            if (w == 1)
                c->client_slow = true;
            continue;
        }
        if (rc == TW_HTTP_DECODE_DONE) {
            if (off < len)
                c->resp.keep_alive = false; /* bytes after the body: not reusable */
            complete(c);
            return len;
        }
        if (rc == TW_HTTP_DECODE_ERROR) {
            char why[160];
            snprintf(why, sizeof why, "malformed response body: %s",
                     tw_http_decoder_error(c->decoder));
            upstream_failed(c, 502, why, true);
            return len;
        }
        break; /* AGAIN */
    }
    if (status != TW_STREAM_OK) {
        if (status == TW_STREAM_EOF && tw_http_decoder_eof(c->decoder) == TW_HTTP_DECODE_DONE) {
            c->resp.keep_alive = false;
            complete(c);
        } else {
            upstream_failed(c, 502, "connection closed in the middle of the body", true);
        }
        return len;
    }
    if (c->client_slow) {
        wait_for(c, WAIT_NONE);
        if (tw_response_on_drain(c->r, on_client_drain, c) < 0)
            finish(c, TW_DONE);
    } else {
        read_body(c);
    }
    return len;
}

/* ---- tunnels (after a 101) ----------------------------------------------------- */

/* Bytes from one side go to the other as they come; a side whose peer is
 * not keeping up is not read until that peer drains. The tunnel ends when
 * either side closes (or the worker's drain times out: the abort). */

static size_t tunnel_from_upstream(tw_stream_t *s, int status, const char *data, size_t len,
                                   void *arg);

static void tunnel_read_upstream(proxy_ctx_t *c)
{
    if (c->us && tw_stream_read_some(c->us, tunnel_from_upstream, c) < 0)
        finish(c, TW_DONE);
}

static void tunnel_client_drained(tw_request_t *r, void *arg)
{
    (void)r;
    proxy_ctx_t *c = arg;
    if (!c->finished && c->tunnel_upstream_waits) {
        c->tunnel_upstream_waits = false;
        tunnel_read_upstream(c);
    }
}

static size_t tunnel_from_upstream(tw_stream_t *s, int status, const char *data, size_t len,
                                   void *arg)
{
    (void)s;
    proxy_ctx_t *c = arg;
    int w = len ? tw_stream_write(c->client, data, len, NULL, NULL) : 0;
    if (status != TW_STREAM_OK || w < 0) {
        finish(c, TW_DONE);
        return len;
    }
    if (w == 1) {
        c->tunnel_upstream_waits = true;
        if (tw_response_on_drain(c->r, tunnel_client_drained, c) < 0)
            finish(c, TW_DONE);
    } else {
        tunnel_read_upstream(c);
    }
    return len;
}

static size_t tunnel_from_client(tw_stream_t *s, int status, const char *data, size_t len,
                                 void *arg)
{
    (void)s;
    proxy_ctx_t *c = arg;
    int w = len && c->us ? tw_stream_write(c->us, data, len, NULL, NULL) : 0;
    if (status != TW_STREAM_OK || w < 0 || !c->us) {
        finish(c, TW_DONE);
        return len;
    }
    if (w == 1)
        c->tunnel_client_waits = true; /* on_upstream_drain reads on */
    else
        tunnel_read_client(c);
    return len;
}

static void tunnel_read_client(proxy_ctx_t *c)
{
    if (tw_stream_read_some(c->client, tunnel_from_client, c) < 0)
        finish(c, TW_DONE);
}

static void tunnel_start(proxy_ctx_t *c)
{
    tw_http_response_t *resp = &c->resp;
    tw_header_t *fields = tw_request_alloc(c->r, (resp->count + 2) * sizeof *fields);
    if (!fields) {
        upstream_failed(c, 502, "out of memory", false);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < resp->count; i++) {
        tw_str_t name = resp->fields[i].name;
        if (name_eq(name, "Upgrade") ||
            (!is_hop_by_hop(name) && !connection_lists(resp->fields, resp->count, name) &&
             !name_eq(name, "Content-Length") && !name_eq(name, "Date") &&
             !name_eq(name, "Server")))
            fields[k++] = resp->fields[i];
    }
    fields[k++] = (tw_header_t){str("Connection"), str("upgrade")};
    c->client = tw_request_upgrade(c->r, fields, k);
    if (!c->client) {
        upstream_failed(c, 502, "cannot switch the client connection", false);
        return;
    }
    wait_for(c, WAIT_NONE);
    tunnel_read_upstream(c); /* bytes after the 101 head are already buffered */
    tunnel_read_client(c);
}

static void pass_response_head(proxy_ctx_t *c)
{
    tw_request_t *r = c->r;
    tw_http_response_t *resp = &c->resp;
    tw_response_set_status(r, resp->status);
    for (size_t i = 0; i < resp->count; i++) {
        tw_str_t name = resp->fields[i].name;
        if (is_hop_by_hop(name) || connection_lists(resp->fields, resp->count, name) ||
            name_eq(name, "Content-Length") || name_eq(name, "Date") || name_eq(name, "Server"))
            continue;
        /* Parsed names and values are NUL-terminated (twister/upstream.h). */
        if (tw_response_add_header(r, name.ptr, resp->fields[i].value.ptr) < 0)
            tw_log_warn("proxy: upstream %s (%s): dropped header %s", c->up->name, server_text(c),
                        name.ptr);
    }
    if (c->conf->via)
        tw_response_add_header(r, "Via", "1.1 twister");
    if (resp->body == TW_HTTP_BODY_LENGTH ||
        (resp->body == TW_HTTP_BODY_NONE && (c->is_head || resp->status == 304) &&
         resp->content_length > 0)) /* HEAD and 304 keep the length a GET had */
        tw_response_set_content_length(r, resp->content_length);
    else if (resp->body == TW_HTTP_BODY_NONE && resp->status != 204 && resp->status != 304 &&
             !c->is_head)
        tw_response_set_content_length(r, 0);
}

static void on_head(tw_stream_t *s, int status, const char *data, size_t len, void *arg)
{
    proxy_ctx_t *c = arg;
    if (status != TW_STREAM_OK) {
        if (status == TW_STREAM_TOO_LARGE) {
            c->response_started = true;
            upstream_failed(c, 502, "response head too large", true);
            return;
        }
        if (len > 0)
            c->response_started = true;
        /* EOF or reset before a response: the close callback follows; a
         * reused idle connection that the server had closed is retried. */
        c->us = NULL;
        tw_stream_set_close_cb(s, NULL, NULL);
        tw_stream_untie(s);
        tw_stream_close(s);
        int e = tw_stream_error(s);
        upstream_failed(c, 502,
                        e     ? strerror(e)
                        : len ? "malformed response head: no CRLF CRLF before the close"
                              : "connection closed before a response",
                        !c->reused);
        return;
    }
    c->response_started = true;
    if (tw_http_response_parse(tw_request_pool(c->r), data, len, c->is_head, &c->resp) < 0) {
        char why[160];
        snprintf(why, sizeof why, "malformed response head: %s",
                 errno == EPROTO ? c->resp.error : strerror(errno));
        upstream_failed(c, 502, why, true);
        return;
    }
    if (c->resp.status > 599) {
        upstream_failed(c, 502, "malformed response head: status over 599", true);
        return;
    }
    if (c->resp.status < 200) {
        if (c->resp.status == 101) {
            if (!c->upgrade) {
                upstream_failed(c, 502, "101 Switching Protocols without an Upgrade request", true);
                return;
            }
            tunnel_start(c);
            return;
        }
        /* 100 Continue, 103 Early Hints: interim, the final one follows. */
        if (tw_stream_read_until(s, "\r\n\r\n", 4, HEAD_MAX, on_head, c) < 0)
            upstream_failed(c, 502, "connection lost", false);
        return;
    }
    pass_response_head(c);
    if (c->resp.body == TW_HTTP_BODY_NONE) {
        complete(c);
        return;
    }
    c->decoder = tw_http_decoder_new(tw_request_pool(c->r), &c->resp);
    if (!c->decoder) {
        upstream_failed(c, 502, "out of memory", false);
        return;
    }
    read_body(c);
}

static void attach(proxy_ctx_t *c, tw_stream_t *s)
{
    c->us = s;
    if (tw_request_tie_stream(c->r, s) < 0) {
        c->us = NULL;
        tw_stream_close(s);
        upstream_failed(c, 502, "out of memory", false);
        return;
    }
    tw_stream_set_close_cb(s, on_upstream_close, c);
    tw_stream_set_drain_cb(s, on_upstream_drain, c);
    if (tw_stream_write(s, c->head, c->head_len, NULL, NULL) < 0) {
        upstream_failed(c, 502, "cannot write the request", !c->reused);
        return;
    }
    if (tw_stream_read_until(s, "\r\n\r\n", 4, HEAD_MAX, on_head, c) < 0) {
        upstream_failed(c, 502, "connection lost", false);
        return;
    }
    wait_for(c, WAIT_READ);
    if (c->has_body && !c->body_started) {
        c->body_started = true;
        if (tw_request_stream_body(c->r, on_body_chunk, c) < 0)
            finish(c, 400);
    } else if (c->has_pending) {
        c->has_pending = false;
        int rc = send_body_piece(c, c->pending, c->pending_len, c->pending_last);
        if (rc == 0 && !c->pending_last)
            tw_request_resume_body(c->r);
    } else if (c->body_paused) {
        c->body_paused = false; /* paused for the failed connection */
        tw_request_resume_body(c->r);
    } else if (!c->has_body) {
        c->body_done = true;
    }
}

static int proxy_content(tw_request_t *r)
{
    const proxy_route_t *conf = tw_request_route_conf(r, &twister_module_v1);
    if (!conf) {
        tw_log_error("proxy: route for %s has no proxy.pass", tw_request_path(r).ptr);
        return 500;
    }
    proxy_ctx_t *c = tw_request_alloc(r, sizeof *c);
    if (!c)
        return TW_ERROR;
    memset(c, 0, sizeof *c);
    c->r = r;
    c->loop = tw_request_loop(r);
    c->conf = conf;
    c->up = conf->upstream;
    c->server = -1;
    c->is_head = tw_request_method_is(r, "HEAD");
    tw_timer_init(&c->timer, on_timer, c);
    if (tw_pool_add_cleanup(tw_request_pool(r), ctx_cleanup, c) < 0 ||
        tw_request_on_abort(r, on_abort, c) < 0)
        return TW_ERROR;
    if (build_head(c) < 0) {
        tw_log_error("proxy: cannot build the upstream request for %s: %s", tw_request_path(r).ptr,
                     strerror(errno));
        return errno == EINVAL ? 400 : TW_ERROR;
    }
    tw_request_set_ctx(r, &twister_module_v1, c);
    try_next(c);
    return TW_SUSPENDED;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "proxy",
    .version = "1.0.0",
    .description = "reverse proxy to HTTP/1.1 upstreams (keep-alive pools, balancing, retries)",
    .configure = proxy_configure,
    .init_worker = proxy_init_worker,
    .exit_worker = proxy_exit_worker,
    .content = proxy_content,
};
