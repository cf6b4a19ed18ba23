/* hits — the shared-zone example of modules/README.md ("Shared zones"):
 * counts requests across all workers and reloads, and remembers the last
 * visitor, which takes the zone's lock. Built and tested like any plugin
 * (tests/integration/test_metrics.py), so the guide's copy stays true. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

/* The zone's layout. It is shared by every worker, so: no pointers. */
typedef struct {
    uint64_t hits;      /* one word, changed with tw_counter_add: never torn */
    char last_peer[64]; /* several words: changed under the zone's lock only */
} hits_zone_t;

typedef struct {
    tw_zone_t *zone;
    tw_metrics_counter_t *served; /* shown by the metrics module, if loaded */
} hits_conf_t;

/* Runs once, in the first worker that attaches the zone (never in the
 * master): the zone is zeroed, so only non-zero defaults go here. */
static int hits_zone_init(tw_zone_t *zone, void *data, size_t size, void *arg)
{
    (void)zone;
    (void)size;
    (void)arg;
    hits_zone_t *h = data;
    snprintf(h->last_peer, sizeof h->last_peer, "nobody");
    return 0;
}

static int hits_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                          void **conf, tw_conf_error_t *err)
{
    if (scope != TW_SCOPE_GLOBAL)
        return 0;
    hits_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    /* Same name and size on the next reload: the same memory, so the
     * count goes on. */
    if (tw_zone_declare(cf, "hits", sizeof(hits_zone_t), hits_zone_init, NULL, &c->zone) != 0)
        return tw_conf_error(err, node, "hits: cannot declare its zone: %s", strerror(errno));
    if (tw_metrics_counter_declare(cf, "hits_served_total", "Requests the hits module answered.",
                                   "", &c->served) != 0)
        return tw_conf_error(err, node, "hits: cannot declare its counter: %s", strerror(errno));
    *conf = c;
    return 0;
}

static int hits_content(tw_request_t *r)
{
    const hits_conf_t *c = tw_request_global_conf(r, &twister_module_v1);
    hits_zone_t *h = tw_zone_data(c->zone);
    uint64_t n = tw_counter_add(&h->hits, 1);

    char previous[sizeof h->last_peer];
    int locked = tw_zone_lock(c->zone);
    if (locked < 0)
        return TW_ERROR;
    /* The last holder died inside this section: last_peer may be half
     * written. Repair before use; the lock is ours either way. */
    if (locked == TW_ZONE_RECOVERED || !memchr(h->last_peer, '\0', sizeof h->last_peer))
        snprintf(h->last_peer, sizeof h->last_peer, "unknown");
    memcpy(previous, h->last_peer, sizeof previous);
    snprintf(h->last_peer, sizeof h->last_peer, "%s", tw_request_peer_text(r));
    tw_zone_unlock(c->zone); /* never hold it across a suspension */

    tw_metrics_counter_add(c->served, 1);
    char body[160];
    int len = snprintf(body, sizeof body, "hit %llu; previous visitor %s\n", (unsigned long long)n,
                       previous);
    return tw_response_send(r, 200, "text/plain", body, (size_t)len) == 0 ? TW_DONE : TW_ERROR;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "hits",
    .version = "1.0.0",
    .description = "Counts requests across workers in a shared zone",
    .configure = hits_configure,
    .content = hits_content,
};
