/* limit_conn — at most N requests in progress per key, across workers.
 *
 *   modules: [limit_conn, ...]
 *   limit_conn:
 *     status: 503
 *     zones:
 *       per_ip: { key: "$remote_addr", size: 10m }
 *   routes:
 *     - prefix: /download/
 *       limit_conn: { zone: per_ip, max: 10, dry_run: false }
 *
 * Each worker keeps its own count per key in the shared zone (a node per
 * key and worker pid), and a request is refused when the counts of all
 * workers for its key reach max. The count is taken in ACCESS and given
 * back by a cleanup of the request's pool, so it is released however the
 * request ends (answered, aborted, failed, the connection reset). When a
 * worker dies, its counts are reclaimed: the master counts every worker it
 * reaps in the server's stats, and the next request to see that number
 * move (or to find the zone's lock left by a dead holder) drops the nodes
 * of pids that no longer run. A node with a count is never evicted; a key
 * that finds no room is let through and logged. Refusals are logged and
 * counted in twister_limit_conn_refused_total{zone,dry_run}. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <twister/twister.h>

#include "../limit_req/limit_table.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

#define MAX_ZONES 64

typedef struct {
    const char *name;
    lt_key_t key;
    uint64_t size;
    tw_zone_t *zone;
    tw_metrics_counter_t *refused, *would_refuse;
} conn_zone_t;

typedef struct {
    int status;
    conn_zone_t zones[MAX_ZONES];
    size_t nzones;
} conn_global_t;

typedef struct {
    conn_zone_t *zone;
    int64_t max;
    int status;
    bool dry_run;
} conn_route_t;

/* What the request's cleanup needs to give its count back. */
typedef struct {
    conn_zone_t *zone;
    bool held; /* the count was taken */
    uint64_t hash;
    size_t len;
    char key[LT_KEY_MAX];
} held_t;

/* Per worker (one process), set in init_worker. */
static struct {
    tw_worker_t *worker;
    int64_t pid;
    uint64_t reaped_seen;
} state;

/* ---- configure ------------------------------------------------------------- */

static int parse_zone(tw_configure_t *cf, conn_zone_t *z, const char *name,
                      const tw_conf_node_t *node, tw_conf_error_t *err)
{
    static const char *const keys[] = {"key", "size", NULL};
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    z->name = tw_configure_strdup(cf, name);
    z->size = 1 << 20;
    const tw_conf_node_t *n;
    if (!(n = tw_conf_map_get(node, "key")))
        return tw_conf_error(err, node, "limit_conn zone %s needs a key", name);
    if (lt_key_parse(cf, n, &z->key, err))
        return -1;
    if ((n = tw_conf_map_get(node, "size")) && lt_get_size(n, 64 << 10, 1ull << 34, &z->size, err))
        return -1;
    if (tw_zone_declare(cf, name, z->size, lt_table_init, NULL, &z->zone) != 0)
        return tw_conf_error(err, node, "limit_conn zone %s: %s", name,
                             errno == ENOSPC   ? "larger than what shared_zones has left"
                             : errno == EINVAL ? "a zone name is [A-Za-z0-9_.-], at most 63 bytes"
                                               : strerror(errno));
    char labels[160];
    snprintf(labels, sizeof labels, "zone=\"%s\",dry_run=\"false\"", name);
    if (tw_metrics_counter_declare(cf, "twister_limit_conn_refused_total",
                                   "Requests limit_conn refused (dry_run: would have).", labels,
                                   &z->refused) != 0)
        return tw_conf_error(err, node, "limit_conn zone %s: counter: %s", name, strerror(errno));
    snprintf(labels, sizeof labels, "zone=\"%s\",dry_run=\"true\"", name);
    if (tw_metrics_counter_declare(cf, "twister_limit_conn_refused_total",
                                   "Requests limit_conn refused (dry_run: would have).", labels,
                                   &z->would_refuse) != 0)
        return tw_conf_error(err, node, "limit_conn zone %s: counter: %s", name, strerror(errno));
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
    conn_global_t *g = tw_configure_alloc(cf, sizeof *g);
    if (!g)
        return tw_conf_error(err, node, "out of memory");
    g->status = 503;
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
    static const char *const keys[] = {"zone", "max", "status", "dry_run", NULL};
    conn_global_t *g = tw_configure_global_conf(cf);
    if (!node || (tw_conf_type(node) == TW_CONF_SCALAR && !*tw_conf_scalar(node)))
        return 0;
    if (tw_conf_check_keys(node, keys, err))
        return -1;
    conn_route_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    c->status = g->status;
    const tw_conf_node_t *n = tw_conf_map_get(node, "zone");
    const char *name;
    if (!n)
        return tw_conf_error(err, node, "limit_conn needs the zone to count in");
    if (tw_conf_get_string(n, &name, err))
        return -1;
    for (size_t i = 0; i < g->nzones; i++)
        if (strcmp(g->zones[i].name, name) == 0)
            c->zone = &g->zones[i];
    if (!c->zone)
        return tw_conf_error(err, n, "no limit_conn zone is named '%s' (limit_conn.zones)", name);
    long long v;
    if (!(n = tw_conf_map_get(node, "max")))
        return tw_conf_error(err, node, "limit_conn needs max (requests in progress per key)");
    if (tw_conf_get_int(n, 1, 1000000, &v, err))
        return -1;
    c->max = v;
    if ((n = tw_conf_map_get(node, "status")) && get_status(n, &c->status, err))
        return -1;
    if ((n = tw_conf_map_get(node, "dry_run")) && tw_conf_get_bool(n, &c->dry_run, err))
        return -1;
    *conf = c;
    return 0;
}

static int limit_conn_configure(tw_configure_t *cf, tw_conf_scope_t scope,
                                const tw_conf_node_t *node, void **conf, tw_conf_error_t *err)
{
    return scope == TW_SCOPE_GLOBAL ? configure_global(cf, node, conf, err)
                                    : configure_route(cf, node, conf, err);
}

/* ---- counting ---------------------------------------------------------------- */

static bool holds_count(const lt_node_t *node)
{
    return node->a > 0;
}

/* Drops the nodes of workers that no longer run; the zone's lock is held. */
static void reclaim_dead(lt_table_t *t, const char *zone)
{
    int64_t alive[16] = {0}, dead[16] = {0};
    size_t nalive = 0, ndead = 0;
    uint64_t freed = 0;
    for (uint64_t i = 0; i < t->capacity; i++) {
        lt_node_t *node = &t->nodes[i];
        if (!node->used || node->pid == state.pid)
            continue;
        bool known_alive = false, known_dead = false;
        for (size_t k = 0; k < nalive; k++)
            known_alive |= alive[k] == node->pid;
        for (size_t k = 0; k < ndead; k++)
            known_dead |= dead[k] == node->pid;
        if (!known_alive && !known_dead) {
            if (tw_zone_owner_alive((pid_t)node->pid)) {
                known_alive = true;
                if (nalive < 16)
                    alive[nalive++] = node->pid;
            } else {
                known_dead = true;
                if (ndead < 16)
                    dead[ndead++] = node->pid;
            }
        }
        if (known_dead) {
            freed += node->a > 0 ? (uint64_t)node->a : 0;
            node->used = 0;
        }
    }
    if (freed)
        tw_log_warn("limit_conn: zone %s: reclaimed %llu request%s held by dead workers", zone,
                    (unsigned long long)freed, freed == 1 ? "" : "s");
}

static void add_count(lt_node_t *node, void *arg)
{
    *(int64_t *)arg += node->a > 0 ? node->a : 0;
}

static void release(void *arg)
{
    held_t *h = arg;
    lt_table_t *t = tw_zone_data(h->zone->zone);
    if (!h->held || tw_zone_lock(h->zone->zone) < 0)
        return;
    lt_node_t *node = lt_find(t, h->key, h->len, h->hash, state.pid, false, NULL);
    if (node && node->a > 0)
        node->a--;
    tw_zone_unlock(h->zone->zone);
}

static void printable(char *out, size_t cap, const char *key, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (key[i] < 0x20 || key[i] == 0x7f || key[i] == '"') ? '?' : key[i];
    out[n] = '\0';
}

/* Passing is TW_DECLINED, not TW_NEXT, so that the phase's other ACCESS
 * handlers still have their say. */
static int limit_conn_access(tw_request_t *r)
{
    const conn_route_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (!c)
        return TW_DECLINED;
    conn_zone_t *z = c->zone;
    lt_table_t *t = tw_zone_data(z->zone);
    held_t *h = tw_request_alloc(r, sizeof *h);
    if (!t || !h)
        return t ? TW_ERROR : TW_DECLINED;
    memset(h, 0, sizeof *h); /* tw_request_alloc does not zero */
    h->zone = z;
    h->len = lt_key_of(&z->key, r, h->key, &h->hash);
    if (!h->len)
        return TW_DECLINED;
    /* Registered before the count is taken: one that could not be
     * registered afterwards would leak it. */
    if (tw_pool_add_cleanup(tw_request_pool(r), release, h) != 0)
        return TW_ERROR;

    tw_server_stats_t st;
    bool someone_died =
        tw_server_stats(state.worker, &st) == 0 && st.workers_reaped != state.reaped_seen;
    int rc = tw_zone_lock(z->zone);
    if (rc < 0)
        return TW_DECLINED;
    if (rc == TW_ZONE_RECOVERED || someone_died) {
        reclaim_dead(t, z->name);
        state.reaped_seen = st.workers_reaped;
    }
    int64_t total = 0;
    lt_each_of_key(t, h->key, h->len, h->hash, add_count, &total);
    bool refuse = total >= c->max;
    lt_node_t *node = NULL;
    if (!refuse || c->dry_run) {
        node = lt_find(t, h->key, h->len, h->hash, state.pid, true, holds_count);
        if (node) {
            node->a++;
            h->held = true;
        }
    }
    tw_zone_unlock(z->zone);
    if (!node && (!refuse || c->dry_run))
        tw_log_warn("limit_conn: zone %s has no room for another key: not limited", z->name);
    if (!refuse)
        return TW_DECLINED;
    char shown[LT_KEY_MAX + 1];
    printable(shown, sizeof shown, h->key, h->len);
    tw_log_warn("limit_conn: %s request by zone %s, key \"%s\" (%s): %lld in progress, max %lld",
                c->dry_run ? "would refuse (dry run)" : "refused", z->name, shown, z->key.text,
                (long long)total, (long long)c->max);
    tw_metrics_counter_add(c->dry_run ? z->would_refuse : z->refused, 1);
    if (c->dry_run)
        return TW_DECLINED;
    /* Answered here rather than returned as a status: under `satisfy: any`
     * a returned status is only a vote, and another handler's pass would
     * let the request through over the limit. */
    const char *text = tw_http_status_text(c->status);
    char body[80];
    int n = snprintf(body, sizeof body, "%d %s\n", c->status, text ? text : "");
    if (tw_response_send(r, c->status, "text/plain", body, (size_t)n) != 0)
        return c->status;
    return TW_DONE;
}

static int limit_conn_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    return tw_phases_add(phases, TW_PHASE_ACCESS, limit_conn_access, TW_ORDER_FIRST + 60);
}

static int limit_conn_init_worker(tw_worker_t *worker, tw_conf_error_t *err)
{
    (void)err;
    state.worker = worker;
    state.pid = getpid();
    tw_server_stats_t st;
    state.reaped_seen = tw_server_stats(worker, &st) == 0 ? st.workers_reaped : 0;
    /* A worker starts when another died (respawn) or a reload began: the
     * moment to reclaim what dead workers held. Nodes with this very pid
     * were left by a dead worker whose pid the kernel has given to this
     * one: they are not ours to release either. */
    const conn_global_t *g = tw_worker_global_conf(worker, &twister_module_v1);
    for (size_t i = 0; g && i < g->nzones; i++) {
        lt_table_t *t = tw_zone_data(g->zones[i].zone);
        if (!t || tw_zone_lock(g->zones[i].zone) < 0)
            continue;
        for (uint64_t k = 0; k < t->capacity; k++)
            if (t->nodes[k].used && t->nodes[k].pid == state.pid)
                t->nodes[k].used = 0;
        reclaim_dead(t, g->zones[i].name);
        tw_zone_unlock(g->zones[i].zone);
    }
    return 0;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "limit_conn",
    .version = "1.0.0",
    .description = "At most N requests in progress per key across workers",
    .configure = limit_conn_configure,
    .register_phases = limit_conn_register,
    .init_worker = limit_conn_init_worker,
    .content = NULL,
};
