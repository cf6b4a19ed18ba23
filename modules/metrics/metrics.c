/* metrics — Prometheus metrics for every request, readiness and liveness.
 *
 *   modules: [metrics, ...]
 *   metrics: { buckets: [0.005, 0.05, 0.5, 5], max_series: 2048, status: code }
 *   servers:
 *     - routes:
 *         - { path: /metrics, handler: metrics, metrics: { allow: [127.0.0.1, "::1"] } }
 *         - { path: /ready, handler: metrics, metrics: { serve: ready } }
 *         - { path: /live, handler: metrics, metrics: { serve: live } }
 *         - { path: /health, handler: hello, metrics: { off: true } }  # not counted
 *
 * A LOG-phase handler counts every request of every route into a shared
 * zone, so the numbers hold across all workers and (the zone being kept
 * while its shape is unchanged) across reloads. Labels come from the
 * config only: the route's pattern, its server, the method out of a fixed
 * set (anything else is "other") and the status (or its class), so the
 * number of series is bounded by the config, and by max_series on top.
 *
 * The zone is a fixed table of series found by hash (open addressing).
 * Series are never removed, so a worker caches where each of its routes'
 * series are and the hot path is a few atomic adds. A series is created
 * without a lock: claimed by compare-and-swap, filled, then published; a
 * worker killed in between loses that one slot and nothing else. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

#define MAX_BUCKETS 24
#define LABELS_MAX 232
#define ALLOW_MAX 32

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

enum {
    SERIES_EMPTY = 0,
    SERIES_CLAIMED = 1,
    SERIES_READY = 2
};
enum {
    KIND_REQUESTS = 1,
    KIND_ROUTE = 2
};
enum {
    SERVE_METRICS,
    SERVE_READY,
    SERVE_LIVE
};

typedef struct {
    uint32_t state;
    uint32_t kind;
    uint64_t hash;
    char labels[LABELS_MAX];
    uint64_t count;                /* requests */
    uint64_t sum_us;               /* KIND_ROUTE: total duration */
    uint64_t bytes_in;             /* KIND_ROUTE: request body bytes */
    uint64_t bytes_out;            /* KIND_ROUTE: response body bytes */
    uint64_t buckets[MAX_BUCKETS]; /* KIND_ROUTE: per bucket, not cumulative */
} series_t;

/* Connection counters: each worker publishes its own (a process-local
 * tw_worker_conn_stats_t) into its slot once a second and before it
 * answers a scrape; the slot of a worker that has died is folded into
 * `retired` by the next worker to take the lock, so totals span every
 * worker since the zone was made. */
enum {
    C_ACCEPTED,
    C_CLOSED,
    C_TIMEOUTS,
    C_REQUESTS,
    C_ABORTED,
    C_OPEN,
    C_IDLE,
    C_COUNT
};
#define C_TOTALS C_OPEN /* the ones before it add up; the rest are gauges */
#define WORKER_SLOTS 512

typedef struct {
    int64_t pid; /* 0: free */
    uint64_t values[C_COUNT];
} worker_slot_t;

typedef struct {
    uint64_t capacity;
    uint64_t dropped; /* requests not counted: the table was full */
    uint64_t retired[C_TOTALS];
    worker_slot_t workers[WORKER_SLOTS];
    uint32_t nbuckets;
    uint32_t reserved;
    double bounds[MAX_BUCKETS];
    series_t series[];
} table_t;

typedef struct {
    int family;
    unsigned prefix;
    unsigned char addr[16];
} cidr_t;

typedef struct {
    /* global */
    double bounds[MAX_BUCKETS];
    unsigned nbuckets;
    uint64_t max_series;
    bool status_class;
    tw_zone_t *zone;
    /* route */
    int serve;
    bool off; /* this route's requests are not counted */
    cidr_t allow[ALLOW_MAX];
    size_t nallow; /* 0: anyone */
} metrics_conf_t;

/* Where a worker found a series, by (route, method, status): series never
 * move, so an entry stays right for the generation. */
typedef struct {
    const void *route;
    const void *server;
    unsigned method;
    unsigned status;
    series_t *requests;
    series_t *per_route;
} cache_entry_t;

#define CACHE_SIZE 1024

/* Per worker (one process), reset in init_worker. */
static struct {
    const metrics_conf_t *conf;
    table_t *table;
    tw_worker_t *worker;
    worker_slot_t *slot; /* this worker's, or NULL if none was free */
    tw_timer_t timer;    /* publishes into slot */
    bool timer_armed;
    cache_entry_t cache[CACHE_SIZE];
} state;

static const char *const methods[] = {"GET",     "HEAD",  "POST",    "PUT",   "DELETE",
                                      "OPTIONS", "PATCH", "CONNECT", "TRACE", "other"};
#define N_METHODS (sizeof methods / sizeof methods[0])

/* ---- configure ------------------------------------------------------------- */

static int parse_cidr(const char *text, cidr_t *out)
{
    char buf[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    out->prefix = max;
    if (slash) {
        char *end;
        errno = 0;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || p > max)
            return -1;
        out->prefix = (unsigned)p;
    }
    return 0;
}

static int parse_buckets(metrics_conf_t *c, const tw_conf_node_t *n, tw_conf_error_t *err)
{
    if (tw_conf_type(n) != TW_CONF_LIST || tw_conf_count(n) == 0 || tw_conf_count(n) > MAX_BUCKETS)
        return tw_conf_error(err, n, "expected a list of 1 to %d bucket bounds in seconds",
                             MAX_BUCKETS);
    c->nbuckets = (unsigned)tw_conf_count(n);
    for (size_t i = 0; i < c->nbuckets; i++) {
        const tw_conf_node_t *item = tw_conf_list_item(n, i);
        const char *s;
        if (tw_conf_get_string(item, &s, err))
            return -1;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !(v > 0) || v > 1e9)
            return tw_conf_error(err, item, "expected a number of seconds above 0, got '%s'", s);
        if (i > 0 && v <= c->bounds[i - 1])
            return tw_conf_error(err, item, "bucket bounds must increase");
        c->bounds[i] = v;
    }
    return 0;
}

static int table_init(tw_zone_t *zone, void *data, size_t size, void *arg)
{
    const metrics_conf_t *c = arg;
    table_t *t = data;
    (void)zone;
    t->capacity = (size - sizeof *t) / sizeof(series_t);
    t->nbuckets = c->nbuckets;
    memcpy(t->bounds, c->bounds, sizeof t->bounds);
    return 0;
}

static int configure_global(tw_configure_t *cf, const tw_conf_node_t *node, metrics_conf_t *c,
                            tw_conf_error_t *err)
{
    static const char *const keys[] = {"buckets", "max_series", "status", NULL};
    memcpy(c->bounds, default_buckets, sizeof default_buckets);
    c->nbuckets = sizeof default_buckets / sizeof default_buckets[0];
    c->max_series = 2048;
    if (node && !(tw_conf_type(node) == TW_CONF_SCALAR && !*tw_conf_scalar(node))) {
        if (tw_conf_check_keys(node, keys, err))
            return -1;
        const tw_conf_node_t *n;
        if ((n = tw_conf_map_get(node, "buckets")) && parse_buckets(c, n, err))
            return -1;
        long long v;
        if ((n = tw_conf_map_get(node, "max_series"))) {
            if (tw_conf_get_int(n, 16, 1000000, &v, err))
                return -1;
            c->max_series = (uint64_t)v;
        }
        if ((n = tw_conf_map_get(node, "status"))) {
            const char *s;
            if (tw_conf_get_string(n, &s, err))
                return -1;
            if (strcmp(s, "class") == 0)
                c->status_class = true;
            else if (strcmp(s, "code") != 0)
                return tw_conf_error(err, n, "expected code or class, got '%s'", s);
        }
    }
    /* The zone's name carries its shape: a reload that changes buckets,
     * max_series or status makes a new table (the old one's series would
     * not fit it) and keeps the table otherwise. */
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *p = (const unsigned char *)c->bounds;
    for (size_t i = 0; i < sizeof c->bounds; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h = (h ^ c->nbuckets ^ (c->status_class ? 0x100 : 0)) * 0x100000001b3ull;
    char name[64];
    snprintf(name, sizeof name, "series-%016llx", (unsigned long long)h);
    size_t size = sizeof(table_t) + c->max_series * sizeof(series_t);
    if (tw_zone_declare(cf, name, size, table_init, c, &c->zone) != 0)
        return tw_conf_error(err, node, "metrics: cannot declare its zone of %zu bytes: %s", size,
                             errno == ENOSPC ? "larger than shared_zones" : strerror(errno));
    return 0;
}

static int configure_route(const tw_conf_node_t *node, metrics_conf_t *c, tw_conf_error_t *err)
{
    static const char *const keys[] = {"serve", "allow", "off", NULL};
    if (!node || (tw_conf_type(node) == TW_CONF_SCALAR && !*tw_conf_scalar(node)))
        return 0;
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    const tw_conf_node_t *n;
    if ((n = tw_conf_map_get(node, "serve"))) {
        const char *s;
        if (tw_conf_get_string(n, &s, err))
            return -1;
        if (strcmp(s, "metrics") == 0)
            c->serve = SERVE_METRICS;
        else if (strcmp(s, "ready") == 0)
            c->serve = SERVE_READY;
        else if (strcmp(s, "live") == 0)
            c->serve = SERVE_LIVE;
        else
            return tw_conf_error(err, n, "expected metrics, ready or live, got '%s'", s);
    }
    if ((n = tw_conf_map_get(node, "off")) && tw_conf_get_bool(n, &c->off, err))
        return -1;
    if ((n = tw_conf_map_get(node, "allow"))) {
        if (tw_conf_type(n) != TW_CONF_LIST || tw_conf_count(n) == 0 ||
            tw_conf_count(n) > ALLOW_MAX)
            return tw_conf_error(err, n, "expected a list of 1 to %d addresses or CIDR blocks",
                                 ALLOW_MAX);
        for (size_t i = 0; i < tw_conf_count(n); i++) {
            const tw_conf_node_t *item = tw_conf_list_item(n, i);
            const char *s;
            if (tw_conf_get_string(item, &s, err))
                return -1;
            if (parse_cidr(s, &c->allow[i]) != 0)
                return tw_conf_error(err, item,
                                     "expected an address or CIDR block (10.0.0.0/8, ::1), got "
                                     "'%s'",
                                     s);
        }
        c->nallow = tw_conf_count(n);
    }
    return 0;
}

static int metrics_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                             void **conf, tw_conf_error_t *err)
{
    metrics_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    int rc = scope == TW_SCOPE_GLOBAL ? configure_global(cf, node, c, err)
                                      : configure_route(node, c, err);
    if (rc != 0)
        return -1;
    *conf = c;
    return 0;
}

/* ---- counting (LOG) ------------------------------------------------------------ */

static uint64_t hash_labels(const char *s, uint32_t kind)
{
    uint64_t h = 0xcbf29ce484222325ull ^ kind;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Finds or creates the series (kind, labels). NULL when the table is full. */
static series_t *series_find(table_t *t, uint32_t kind, const char *labels)
{
    uint64_t h = hash_labels(labels, kind);
    uint64_t cap = t->capacity;
    for (uint64_t probe = 0; probe < cap; probe++) {
        series_t *s = &t->series[(h + probe) % cap];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (st == SERIES_EMPTY) {
            uint32_t expected = SERIES_EMPTY;
            if (__atomic_compare_exchange_n(&s->state, &expected, SERIES_CLAIMED, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                s->kind = kind;
                s->hash = h;
                snprintf(s->labels, sizeof s->labels, "%s", labels);
                __atomic_store_n(&s->state, SERIES_READY, __ATOMIC_RELEASE);
                return s;
            }
            st = expected;
        }
        /* Another worker is filling it, maybe with this very series: wait
         * a little; one that died there leaves the slot claimed for good. */
        for (int spin = 0; st == SERIES_CLAIMED && spin < 100000; spin++)
            st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (st == SERIES_READY && s->hash == h && s->kind == kind &&
            strncmp(s->labels, labels, sizeof s->labels) == 0)
            return s;
    }
    return NULL;
}

/* Appends value to buf as a Prometheus label value (\, " and newline
 * escaped). */
static size_t put_label_value(char *buf, size_t at, size_t cap, const char *value)
{
    for (; value && *value && at + 3 < cap; value++) {
        char ch = *value;
        if (ch == '\\' || ch == '"') {
            buf[at++] = '\\';
            buf[at++] = ch;
        } else if (ch == '\n') {
            buf[at++] = '\\';
            buf[at++] = 'n';
        } else {
            buf[at++] = ch;
        }
    }
    buf[at] = '\0';
    return at;
}

static size_t put(char *buf, size_t at, size_t cap, const char *text)
{
    size_t n = strlen(text);
    if (at + n >= cap)
        n = at < cap - 1 ? cap - 1 - at : 0;
    memcpy(buf + at, text, n);
    buf[at + n] = '\0';
    return at + n;
}

static size_t route_labels(char *buf, size_t cap, const char *server, const char *route)
{
    size_t at = put(buf, 0, cap, "server=\"");
    at = put_label_value(buf, at, cap - 2, server ? server : "");
    at = put(buf, at, cap, "\",route=\"");
    at = put_label_value(buf, at, cap - 2, route ? route : "(none)");
    return put(buf, at, cap, "\"");
}

static unsigned method_index(const tw_request_t *r)
{
    for (unsigned i = 0; i + 1 < N_METHODS; i++)
        if (tw_request_method_is(r, methods[i]))
            return i;
    return N_METHODS - 1;
}

static int metrics_log(tw_request_t *r)
{
    table_t *t = state.table;
    if (!t)
        return TW_NEXT;
    const metrics_conf_t *rc = tw_request_route_conf(r, &twister_module_v1);
    if (rc && rc->off)
        return TW_NEXT;
    const char *route = tw_request_route_label(r), *server = tw_request_server_label(r);
    unsigned method = method_index(r);
    unsigned status = (unsigned)tw_response_status(r);
    if (status < 100 || status > 599)
        status = 0;
    if (state.conf->status_class && status)
        status = status / 100 * 100;
    uintptr_t key = (uintptr_t)route * 31 + (uintptr_t)server + method * 1009 + status * 7919;
    cache_entry_t *e = &state.cache[(key ^ (key >> 12)) % CACHE_SIZE];
    if (e->route != route || e->server != server || e->method != method || e->status != status ||
        !e->requests) {
        char labels[LABELS_MAX], code[16];
        size_t at = route_labels(labels, sizeof labels, server, route);
        series_t *per_route = series_find(t, KIND_ROUTE, labels);
        if (!status)
            snprintf(code, sizeof code, "000");
        else if (state.conf->status_class)
            snprintf(code, sizeof code, "%uxx", status / 100);
        else
            snprintf(code, sizeof code, "%u", status);
        at = put(labels, at, sizeof labels, ",method=\"");
        at = put(labels, at, sizeof labels, methods[method]);
        at = put(labels, at, sizeof labels, "\",code=\"");
        at = put(labels, at, sizeof labels, code);
        put(labels, at, sizeof labels, "\"");
        series_t *requests = series_find(t, KIND_REQUESTS, labels);
        if (!requests || !per_route) {
            __atomic_add_fetch(&t->dropped, 1, __ATOMIC_RELAXED);
            return TW_NEXT;
        }
        *e = (cache_entry_t){.route = route,
                             .server = server,
                             .method = method,
                             .status = status,
                             .requests = requests,
                             .per_route = per_route};
    }
    __atomic_add_fetch(&e->requests->count, 1, __ATOMIC_RELAXED);
    series_t *s = e->per_route;
    uint64_t us = tw_request_elapsed_us(r);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->sum_us, us, __ATOMIC_RELAXED);
    int64_t in = tw_request_content_length(r);
    if (in > 0)
        __atomic_add_fetch(&s->bytes_in, (uint64_t)in, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->bytes_out, tw_response_body_bytes(r), __ATOMIC_RELAXED);
    double seconds = (double)us / 1e6;
    unsigned nb = t->nbuckets < MAX_BUCKETS ? t->nbuckets : MAX_BUCKETS;
    for (unsigned i = 0; i < nb; i++) {
        if (seconds <= t->bounds[i]) {
            __atomic_add_fetch(&s->buckets[i], 1, __ATOMIC_RELAXED);
            break;
        }
    }
    return TW_NEXT;
}

/* ---- connection counters ------------------------------------------------------- */

#define PUBLISH_MS 1000

static void publish(void)
{
    tw_worker_conn_stats_t st;
    if (!state.slot || tw_worker_conn_stats(state.worker, &st) != 0)
        return;
    uint64_t v[C_COUNT] = {st.accepted, st.closed, st.timeouts, st.requests,
                           st.aborted,  st.open,   st.idle};
    for (int i = 0; i < C_COUNT; i++)
        __atomic_store_n(&state.slot->values[i], v[i], __ATOMIC_RELAXED);
}

static void publish_tick(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    (void)arg;
    publish();
    tw_timer_start(loop, timer, PUBLISH_MS);
}

/* Folds the slots of dead workers into the totals; the zone lock is held.
 * A worker killed here may leave one dead worker's counts added twice or
 * not at all (a bounded error, never a torn table). */
static void fold_dead(table_t *t)
{
    for (size_t i = 0; i < WORKER_SLOTS; i++) {
        worker_slot_t *w = &t->workers[i];
        if (w->pid == 0 || tw_zone_owner_alive((pid_t)w->pid))
            continue;
        for (int k = 0; k < C_TOTALS; k++)
            __atomic_add_fetch(&t->retired[k], w->values[k], __ATOMIC_RELAXED);
        memset(w->values, 0, sizeof w->values);
        w->pid = 0;
    }
}

static void claim_slot(table_t *t, int64_t pid)
{
    if (tw_zone_lock(state.conf->zone) < 0)
        return;
    fold_dead(t);
    for (size_t i = 0; i < WORKER_SLOTS && !state.slot; i++) {
        if (t->workers[i].pid == 0) {
            memset(t->workers[i].values, 0, sizeof t->workers[i].values);
            t->workers[i].pid = pid;
            state.slot = &t->workers[i];
        }
    }
    tw_zone_unlock(state.conf->zone);
    if (!state.slot)
        tw_log_warn("metrics: more than %d live workers: this one's connections are not counted",
                    WORKER_SLOTS);
}

/* ---- rendering (CONTENT) --------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} out_t;

__attribute__((format(printf, 2, 3))) static void out_printf(out_t *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->cap - o->len;
        int n = o->failed ? 0 : vsnprintf(o->data ? o->data + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (o->failed || n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 65536;
        while (cap - o->len <= (size_t)n)
            cap *= 2;
        char *grown = realloc(o->data, cap);
        if (!grown) {
            o->failed = true;
            return;
        }
        o->data = grown;
        o->cap = cap;
    }
}

static void family(out_t *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static series_t *ready_series(table_t *t, uint64_t i, uint32_t kind)
{
    series_t *s = &t->series[i];
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SERIES_READY || s->kind != kind)
        return NULL;
    s->labels[LABELS_MAX - 1] = '\0';
    return s;
}

static void render_table(out_t *o, table_t *t)
{
    uint64_t cap = t->capacity;
    family(o, "twister_http_requests_total", "counter",
           "Requests answered, by server, route, method and status.");
    for (uint64_t i = 0; i < cap; i++) {
        series_t *s = ready_series(t, i, KIND_REQUESTS);
        if (s)
            out_printf(o, "twister_http_requests_total{%s} %llu\n", s->labels,
                       (unsigned long long)tw_counter_get(&s->count));
    }
    family(o, "twister_http_request_duration_seconds", "histogram",
           "Time from the request head to the end of the response.");
    unsigned nb = t->nbuckets < MAX_BUCKETS ? t->nbuckets : MAX_BUCKETS;
    for (uint64_t i = 0; i < cap; i++) {
        series_t *s = ready_series(t, i, KIND_ROUTE);
        if (!s)
            continue;
        uint64_t cumulative = 0;
        for (unsigned b = 0; b < nb; b++) {
            cumulative += tw_counter_get(&s->buckets[b]);
            out_printf(o, "twister_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n",
                       s->labels, t->bounds[b], (unsigned long long)cumulative);
        }
        /* The adds are not one transaction: never show +Inf below a bucket. */
        uint64_t count = tw_counter_get(&s->count);
        if (count < cumulative)
            count = cumulative;
        out_printf(o, "twister_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n",
                   s->labels, (unsigned long long)count);
        out_printf(o, "twister_http_request_duration_seconds_sum{%s} %.6f\n", s->labels,
                   (double)tw_counter_get(&s->sum_us) / 1e6);
        out_printf(o, "twister_http_request_duration_seconds_count{%s} %llu\n", s->labels,
                   (unsigned long long)count);
    }
    static const struct {
        const char *name, *help;
        size_t offset;
    } bytes[] = {
        {"twister_http_request_body_bytes_total", "Request body bytes received (as declared).",
         offsetof(series_t, bytes_in)},
        {"twister_http_response_body_bytes_total", "Response body bytes sent.",
         offsetof(series_t, bytes_out)},
    };
    for (size_t k = 0; k < 2; k++) {
        family(o, bytes[k].name, "counter", bytes[k].help);
        for (uint64_t i = 0; i < cap; i++) {
            series_t *s = ready_series(t, i, KIND_ROUTE);
            if (s)
                out_printf(
                    o, "%s{%s} %llu\n", bytes[k].name, s->labels,
                    (unsigned long long)tw_counter_get((uint64_t *)((char *)s + bytes[k].offset)));
        }
    }
    uint64_t sums[C_COUNT] = {0};
    if (tw_zone_lock(state.conf->zone) >= 0) {
        fold_dead(t);
        tw_zone_unlock(state.conf->zone);
    }
    for (int k = 0; k < C_TOTALS; k++)
        sums[k] = tw_counter_get(&t->retired[k]);
    for (size_t i = 0; i < WORKER_SLOTS; i++) {
        if (__atomic_load_n(&t->workers[i].pid, __ATOMIC_RELAXED) == 0)
            continue;
        for (int k = 0; k < C_COUNT; k++)
            sums[k] += tw_counter_get(&t->workers[i].values[k]);
    }
    uint64_t idle = sums[C_IDLE] < sums[C_OPEN] ? sums[C_IDLE] : sums[C_OPEN];
    uint64_t closed_timeout = sums[C_TIMEOUTS] < sums[C_CLOSED] ? sums[C_TIMEOUTS] : sums[C_CLOSED];
    family(o, "twister_connections_accepted_total", "counter", "Connections accepted.");
    out_printf(o, "twister_connections_accepted_total %llu\n",
               (unsigned long long)sums[C_ACCEPTED]);
    family(o, "twister_connections_closed_total", "counter", "Connections closed, by reason.");
    out_printf(o, "twister_connections_closed_total{reason=\"timeout\"} %llu\n",
               (unsigned long long)closed_timeout);
    out_printf(o, "twister_connections_closed_total{reason=\"other\"} %llu\n",
               (unsigned long long)(sums[C_CLOSED] - closed_timeout));
    family(o, "twister_connections", "gauge", "Open connections, by state.");
    out_printf(o, "twister_connections{state=\"active\"} %llu\n",
               (unsigned long long)(sums[C_OPEN] - idle));
    out_printf(o, "twister_connections{state=\"idle\"} %llu\n", (unsigned long long)idle);
    family(o, "twister_http_requests_aborted_total", "counter",
           "Requests whose client went away before the end of the response.");
    out_printf(o, "twister_http_requests_aborted_total %llu\n",
               (unsigned long long)sums[C_ABORTED]);
    family(o, "twister_metrics_dropped_total", "counter",
           "Requests not counted because the series table (max_series) was full.");
    out_printf(o, "twister_metrics_dropped_total %llu\n",
               (unsigned long long)tw_counter_get(&t->dropped));
}

static void render_server(out_t *o)
{
    tw_server_stats_t st;
    if (tw_server_stats(state.worker, &st) != 0)
        return;
    family(o, "twister_generation", "gauge", "The serving generation (1, +1 per reload).");
    out_printf(o, "twister_generation %llu\n", (unsigned long long)st.generation);
    family(o, "twister_config_info", "gauge", "The serving config, by a hash of its file.");
    out_printf(o, "twister_config_info{hash=\"%016llx\"} 1\n", (unsigned long long)st.config_hash);
    family(o, "twister_start_time_seconds", "gauge", "When the server started (Unix time).");
    out_printf(o, "twister_start_time_seconds %llu\n", (unsigned long long)st.started_unix);
    family(o, "twister_reloads_total", "counter", "Reloads, by result.");
    out_printf(o, "twister_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)st.reloads_ok);
    out_printf(o, "twister_reloads_total{result=\"failed\"} %llu\n",
               (unsigned long long)st.reloads_failed);
    family(o, "twister_worker_restarts_total", "counter",
           "Workers that died or failed to start, by cause.");
    out_printf(o, "twister_worker_restarts_total{cause=\"signal\"} %llu\n",
               (unsigned long long)st.worker_crashes);
    out_printf(o, "twister_worker_restarts_total{cause=\"exit\"} %llu\n",
               (unsigned long long)st.worker_exits);
    out_printf(o, "twister_worker_restarts_total{cause=\"start_failure\"} %llu\n",
               (unsigned long long)st.worker_start_failures);
    tw_reload_stats_t rs;
    if (tw_server_reload_stats(state.worker, &rs) != 0)
        return;
    family(o, "twister_reload_connections_total", "counter",
           "Connections of draining generations, by what the reload did with them: handed_off "
           "(moved idle to the new generation), kept (busy: finished on the old one), closed "
           "(ended on the old one).");
    out_printf(o, "twister_reload_connections_total{outcome=\"handed_off\"} %llu\n",
               (unsigned long long)rs.handed_off);
    out_printf(o, "twister_reload_connections_total{outcome=\"kept\"} %llu\n",
               (unsigned long long)rs.kept);
    out_printf(o, "twister_reload_connections_total{outcome=\"closed\"} %llu\n",
               (unsigned long long)rs.closed);
}

typedef struct {
    out_t *o;
    char last[TW_METRICS_NAME_MAX + 1];
} counters_ctx_t;

static void render_counter(const char *name, const char *help, const char *labels, uint64_t value,
                           void *arg)
{
    counters_ctx_t *c = arg;
    if (strcmp(c->last, name) != 0) {
        family(c->o, name, "counter", *help ? help : "A module's counter.");
        snprintf(c->last, sizeof c->last, "%s", name);
    }
    if (*labels)
        out_printf(c->o, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else
        out_printf(c->o, "%s %llu\n", name, (unsigned long long)value);
}

static bool peer_allowed(const tw_request_t *r, const metrics_conf_t *c)
{
    if (!c->nallow)
        return true;
    socklen_t len;
    const struct sockaddr *sa = tw_request_peer(r, &len);
    if (!sa)
        return false;
    unsigned char addr[16];
    int family_ = sa->sa_family;
    if (family_ == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (family_ == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family_ = AF_INET;
            memcpy(addr, a6->s6_addr + 12, 4);
        } else {
            memcpy(addr, a6->s6_addr, 16);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < c->nallow; i++) {
        const cidr_t *b = &c->allow[i];
        if (b->family != family_)
            continue;
        unsigned full = b->prefix / 8, rest = b->prefix % 8;
        if (memcmp(addr, b->addr, full) != 0)
            continue;
        if (rest && ((addr[full] ^ b->addr[full]) & (0xff00 >> rest) & 0xff))
            continue;
        return true;
    }
    return false;
}

static int metrics_content(tw_request_t *r)
{
    const metrics_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (c && !peer_allowed(r, c))
        return 403;
    if (!tw_request_method_is(r, "GET") && !tw_request_method_is(r, "HEAD"))
        return 405;
    int serve = c ? c->serve : SERVE_METRICS;
    if (serve == SERVE_LIVE)
        return tw_response_send(r, 200, "text/plain", "alive\n", 6) ? TW_ERROR : TW_DONE;
    if (serve == SERVE_READY) {
        bool draining = tw_worker_draining(state.worker);
        const char *text = draining ? "draining\n" : "ready\n";
        return tw_response_send(r, draining ? 503 : 200, "text/plain", text, strlen(text))
                   ? TW_ERROR
                   : TW_DONE;
    }
    out_t o = {0};
    publish();
    if (state.table)
        render_table(&o, state.table);
    render_server(&o);
    counters_ctx_t cc = {.o = &o};
    tw_metrics_counters_each(state.worker, render_counter, &cc);
    int rc = TW_ERROR;
    if (!o.failed && tw_response_send(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                                      o.data ? o.data : "", o.len) == 0)
        rc = TW_DONE;
    free(o.data);
    return rc;
}

/* ---- lifecycle ----------------------------------------------------------------- */

static int metrics_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    return tw_phases_add(phases, TW_PHASE_LOG, metrics_log, TW_ORDER_FIRST);
}

static int metrics_init_worker(tw_worker_t *worker, tw_conf_error_t *err)
{
    (void)err;
    memset(&state, 0, sizeof state);
    state.worker = worker;
    state.conf = tw_worker_global_conf(worker, &twister_module_v1);
    state.table = state.conf ? tw_zone_data(state.conf->zone) : NULL;
    if (state.table) {
        claim_slot(state.table, getpid());
        tw_timer_init(&state.timer, publish_tick, NULL);
        tw_timer_start(tw_worker_loop(worker), &state.timer, PUBLISH_MS);
        state.timer_armed = true;
    }
    return 0;
}

/* The last numbers go in before the worker ends; the slot stays until the
 * next worker folds it (this process is still alive here). */
static void metrics_exit_worker(tw_worker_t *worker)
{
    publish();
    if (state.timer_armed)
        tw_timer_stop(tw_worker_loop(worker), &state.timer);
    state.timer_armed = false;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "metrics",
    .version = "1.0.0",
    .description = "Prometheus metrics across workers and reloads; /ready and /live",
    .configure = metrics_configure,
    .register_phases = metrics_register,
    .init_worker = metrics_init_worker,
    .exit_worker = metrics_exit_worker,
    .content = metrics_content,
};
