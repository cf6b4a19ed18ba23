/* limit_req — request rate limits per key, counted across all workers.
 *
 *   modules: [limit_req, ...]
 *   limit_req:
 *     status: 429                 # the answer to a refused request
 *     zones:
 *       per_ip: { key: "$remote_addr", rate: 10r/s, burst: 20, nodelay: true, size: 10m }
 *   routes:
 *     - prefix: /api/
 *       limit_req: { zone: per_ip, dry_run: false }
 *
 * nginx's leaky bucket: each key's bucket drains at `rate`; a request adds
 * one; a request that would overflow `burst` is refused with `status` and
 * Retry-After (when the bucket will have room again). Within the burst a
 * request is delayed until the bucket is back at zero, or passes at once
 * with nodelay. The buckets live in a shared zone (one per limit_req zone)
 * whose size bounds the number of keys: a new key evicts the least
 * recently used one of its neighbourhood, never fails. dry_run only logs
 * and counts what it would refuse. Refusals are logged and counted in
 * twister_limit_req_refused_total{zone,dry_run} (see the metrics module). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twister/twister.h>

#include "limit_table.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

#define MAX_ZONES 64

typedef struct {
    const char *name;
    lt_key_t key;
    int64_t rate; /* milli-requests per second */
    int64_t burst;
    bool nodelay;
    uint64_t size;
    tw_zone_t *zone;
    tw_metrics_counter_t *refused, *would_refuse, *delayed;
} req_zone_t;

typedef struct {
    int status;
    req_zone_t zones[MAX_ZONES];
    size_t nzones;
} req_global_t;

typedef struct {
    req_zone_t *zone;
    int status;
    bool dry_run;
} req_route_t;

/* ---- configure ----------------------------------------------------------- */

static int parse_rate(const tw_conf_node_t *node, int64_t *out, tw_conf_error_t *err)
{
    const char *s;
    if (tw_conf_get_string(node, &s, err))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double per = strcmp(end, "r/s") == 0 ? 1 : strcmp(end, "r/m") == 0 ? 60 : 0;
    if (errno || end == s || !per || !(v > 0) || v / per * 1000 < 1 || v > 1e9)
        return tw_conf_error(err, node, "expected a rate like 10r/s or 30r/m, got '%s'", s);
    *out = (int64_t)(v * 1000 / per);
    return 0;
}

static int parse_zone(tw_configure_t *cf, req_zone_t *z, const char *name,
                      const tw_conf_node_t *node, tw_conf_error_t *err)
{
    static const char *const keys[] = {"key", "rate", "burst", "nodelay", "size", NULL};
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    z->name = tw_configure_strdup(cf, name);
    z->size = 1 << 20;
    const tw_conf_node_t *n;
    if (!(n = tw_conf_map_get(node, "key")))
        return tw_conf_error(err, node, "limit_req zone %s needs a key", name);
    if (lt_key_parse(cf, n, &z->key, err))
        return -1;
    if (!(n = tw_conf_map_get(node, "rate")))
        return tw_conf_error(err, node, "limit_req zone %s needs a rate (10r/s)", name);
    if (parse_rate(n, &z->rate, err))
        return -1;
    long long v;
    if ((n = tw_conf_map_get(node, "burst"))) {
        if (tw_conf_get_int(n, 0, 1000000, &v, err))
            return -1;
        z->burst = v;
    }
    if ((n = tw_conf_map_get(node, "nodelay")) && tw_conf_get_bool(n, &z->nodelay, err))
        return -1;
    if ((n = tw_conf_map_get(node, "size")) && lt_get_size(n, 64 << 10, 1ull << 34, &z->size, err))
        return -1;
    if (tw_zone_declare(cf, name, z->size, lt_table_init, NULL, &z->zone) != 0)
        return tw_conf_error(err, node, "limit_req zone %s: %s", name,
                             errno == ENOSPC   ? "larger than what shared_zones has left"
                             : errno == EINVAL ? "a zone name is [A-Za-z0-9_.-], at most 63 bytes"
                                               : strerror(errno));
    char labels[160];
    snprintf(labels, sizeof labels, "zone=\"%s\",dry_run=\"false\"", name);
    if (tw_metrics_counter_declare(cf, "twister_limit_req_refused_total",
                                   "Requests limit_req refused (dry_run: would have).", labels,
                                   &z->refused) != 0)
        return tw_conf_error(err, node, "limit_req zone %s: counter: %s", name, strerror(errno));
    snprintf(labels, sizeof labels, "zone=\"%s\",dry_run=\"true\"", name);
    if (tw_metrics_counter_declare(cf, "twister_limit_req_refused_total",
                                   "Requests limit_req refused (dry_run: would have).", labels,
                                   &z->would_refuse) != 0)
        return tw_conf_error(err, node, "limit_req zone %s: counter: %s", name, strerror(errno));
    snprintf(labels, sizeof labels, "zone=\"%s\"", name);
    if (tw_metrics_counter_declare(cf, "twister_limit_req_delayed_total",
                                   "Requests limit_req delayed within the burst.", labels,
                                   &z->delayed) != 0)
        return tw_conf_error(err, node, "limit_req zone %s: counter: %s", name, strerror(errno));
    return 0;
}

static int get_status(const tw_conf_node_t *n, int *out, tw_conf_error_t *err)
{
    long long v;
    if (tw_conf_get_int(n, 400, 599, &v, err))
        return -1;
    *out = (int)v;
    return 0;
}

static int configure_global(tw_configure_t *cf, const tw_conf_node_t *node, void **conf,
                            tw_conf_error_t *err)
{
    static const char *const keys[] = {"status", "zones", NULL};
    req_global_t *g = tw_configure_alloc(cf, sizeof *g);
    if (!g)
        return tw_conf_error(err, node, "out of memory");
    g->status = 429;
    *conf = g;
    if (!node || (tw_conf_type(node) == TW_CONF_SCALAR && !*tw_conf_scalar(node)))
        return 0;
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    const tw_conf_node_t *n;
    if ((n = tw_conf_map_get(node, "status")) && get_status(n, &g->status, err))
        return -1;
    if ((n = tw_conf_map_get(node, "zones"))) {
        if (tw_conf_type(n) != TW_CONF_MAP)
            return tw_conf_error(err, n, "expected a map of zone names to settings");
        size_t count = tw_conf_count(n);
        if (count > MAX_ZONES)
            return tw_conf_error(err, n, "at most %d zones", MAX_ZONES);
        for (size_t i = 0; i < count; i++) {
            if (parse_zone(cf, &g->zones[i], tw_conf_map_key(n, i), tw_conf_map_value(n, i), err))
                return -1;
            g->nzones = i + 1;
        }
    }
    return 0;
}

static int configure_route(tw_configure_t *cf, const tw_conf_node_t *node, void **conf,
                           tw_conf_error_t *err)
{
    static const char *const keys[] = {"zone", "status", "dry_run", NULL};
    req_global_t *g = tw_configure_global_conf(cf);
    if (!node || (tw_conf_type(node) == TW_CONF_SCALAR && !*tw_conf_scalar(node)))
        return 0;
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    req_route_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    c->status = g->status;
    const tw_conf_node_t *n = tw_conf_map_get(node, "zone");
    const char *name;
    if (!n)
        return tw_conf_error(err, node, "limit_req needs the zone to count in");
    if (tw_conf_get_string(n, &name, err))
        return -1;
    for (size_t i = 0; i < g->nzones; i++)
        if (strcmp(g->zones[i].name, name) == 0)
            c->zone = &g->zones[i];
    if (!c->zone)
        return tw_conf_error(err, n, "no limit_req zone is named '%s' (limit_req.zones)", name);
    if ((n = tw_conf_map_get(node, "status")) && get_status(n, &c->status, err))
        return -1;
    if ((n = tw_conf_map_get(node, "dry_run")) && tw_conf_get_bool(n, &c->dry_run, err))
        return -1;
    *conf = c;
    return 0;
}

static int limit_req_configure(tw_configure_t *cf, tw_conf_scope_t scope,
                               const tw_conf_node_t *node, void **conf, tw_conf_error_t *err)
{
    return scope == TW_SCOPE_GLOBAL ? configure_global(cf, node, conf, err)
                                    : configure_route(cf, node, conf, err);
}

/* ---- ACCESS ---------------------------------------------------------------- */

/* Copies a key for the log with anything unprintable as '?'. */
static void printable(char *out, size_t cap, const char *key, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (key[i] < 0x20 || key[i] == 0x7f || key[i] == '"') ? '?' : key[i];
    out[n] = '\0';
}

static void delay_done(tw_request_t *r, void *arg)
{
    (void)arg;
    tw_request_resume(r, TW_DECLINED);
}

/* Passing is TW_DECLINED, not TW_NEXT, so that the phase's other ACCESS
 * handlers still have their say. */
static int limit_req_access(tw_request_t *r)
{
    const req_route_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (!c)
        return TW_DECLINED;
    req_zone_t *z = c->zone;
    lt_table_t *t = tw_zone_data(z->zone);
    char key[LT_KEY_MAX];
    uint64_t hash;
    size_t len = lt_key_of(&z->key, r, key, &hash);
    if (!t || !len)
        return TW_DECLINED;

    int64_t excess, delay_ms = 0;
    bool refuse = false;
    uint64_t now = lt_now_ms();
    if (tw_zone_lock(z->zone) < 0)
        return TW_DECLINED;
    /* A recovered lock needs no repair: see limit_table.h. */
    lt_node_t *node = lt_find(t, key, len, hash, 0, true, NULL);
    if (!node) {
        tw_zone_unlock(z->zone);
        return TW_DECLINED;
    }
    if (node->b == 0) {
        excess = 0;
    } else {
        int64_t ms = now > (uint64_t)node->b ? (int64_t)(now - (uint64_t)node->b) : 0;
        excess = node->a - z->rate * ms / 1000 + 1000;
        if (excess < 0)
            excess = 0;
    }
    if (excess > z->burst * 1000) {
        refuse = true;
    } else {
        node->a = excess;
        node->b = (int64_t)now;
        if (!z->nodelay && excess > 0)
            delay_ms = excess * 1000 / z->rate;
    }
    tw_zone_unlock(z->zone);

    if (refuse) {
        char shown[LT_KEY_MAX + 1];
        printable(shown, sizeof shown, key, len);
        tw_log_warn(
            "limit_req: %s request by zone %s, key \"%s\" (%s), excess %.3f over burst %lld",
            c->dry_run ? "would refuse (dry run)" : "refused", z->name, shown, z->key.text,
            (double)excess / 1000, (long long)z->burst);
        tw_metrics_counter_add(c->dry_run ? z->would_refuse : z->refused, 1);
        if (c->dry_run)
            return TW_DECLINED;
        int64_t wait_ms = (excess - z->burst * 1000) * 1000 / z->rate;
        long long seconds = (long long)(wait_ms + 999) / 1000;
        char retry[24];
        snprintf(retry, sizeof retry, "%lld", seconds > 0 ? seconds : 1);
        const char *text = tw_http_status_text(c->status);
        char body[80];
        int n = snprintf(body, sizeof body, "%d %s\n", c->status, text ? text : "");
        if (tw_response_set_header(r, "Retry-After", retry) != 0 ||
            tw_response_send(r, c->status, "text/plain", body, (size_t)n) != 0)
            return c->status;
        return TW_DONE;
    }
    if (delay_ms > 0 && !c->dry_run) {
        tw_metrics_counter_add(z->delayed, 1);
        if (tw_request_set_timer(r, (uint64_t)delay_ms, delay_done, NULL) == 0)
            return TW_SUSPENDED;
    }
    return TW_DECLINED;
}

static int limit_req_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    return tw_phases_add(phases, TW_PHASE_ACCESS, limit_req_access, TW_ORDER_FIRST + 50);
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "limit_req",
    .version = "1.0.0",
    .description = "Request rate limits per key across workers (leaky bucket, nginx semantics)",
    .configure = limit_req_configure,
    .register_phases = limit_req_register,
};
