/* zone.h — the shared-zone region, as the core sees it (twister/zone.h is
 * the plugin's view and explains the design).
 *
 * The master maps the region once (tw_zone_region_map) before its first
 * fork, publishes its own counters into it, and after a generation drains
 * returns the pages of zones that no live generation uses
 * (tw_zone_region_collect). A runtime gathers its modules' declarations
 * (tw_zone_list_*) and, in a worker, attaches them (tw_zone_list_attach).
 * The region's directory is written only under the region's robust lock;
 * the master never blocks on it (it tries, and collects later). */
#ifndef TWISTER_ZONE_INTERNAL_H
#define TWISTER_ZONE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "twister/pool.h"
#include "twister/zone.h"

typedef struct tw_zone_region tw_zone_region_t;

/* The default `shared_zones:` size. */
#define TW_ZONE_REGION_DEFAULT (64u << 20)

/* Maps a region of size bytes (at least the directory); NULL with errno. */
tw_zone_region_t *tw_zone_region_map(size_t size);
/* Unmaps it. NULL is a no-op. */
void tw_zone_region_unmap(tw_zone_region_t *region);
/* The size the region was mapped with. */
size_t tw_zone_region_size(const tw_zone_region_t *region);
/* Bytes a zone of size bytes takes in the region (page-rounded), so that
 * configure can refuse what could never fit. */
size_t tw_zone_region_cost(size_t size);
/* The core's counters, for the master to update with tw_counter_add (and
 * plain stores for generation and config_hash). */
tw_server_stats_t *tw_zone_region_stats(tw_zone_region_t *region);
/* The reload hand-off counters there, which the draining workers update
 * with tw_counter_add. */
tw_reload_stats_t *tw_zone_region_reload_stats(tw_zone_region_t *region);
/* Frees the zones last attached by a generation older than oldest_live.
 * Returns the number freed, or -1 if the lock was busy (try later). */
int tw_zone_region_collect(tw_zone_region_t *region, unsigned oldest_live);

/* The zones one runtime declared, in declaration order. */
typedef struct {
    tw_zone_t *head;
    size_t total; /* region bytes they need */
} tw_zone_list_t;

/* Records a declaration (tw_zone_declare's work; see its errors). capacity
 * is the region's size, or 0 when unknown. */
int tw_zone_list_add(tw_zone_list_t *list, tw_pool_t *pool, const char *module, const char *name,
                     size_t size, tw_zone_init_fn init, void *arg, size_t capacity,
                     tw_zone_t **out);
/* Attaches every declared zone in region for generation: finds or
 * creates it, then runs its init hook if no worker has yet. Returns 0 or
 * -1 with a message in why. */
int tw_zone_list_attach(tw_zone_list_t *list, tw_zone_region_t *region, unsigned generation,
                        char *why, size_t whylen);

#endif
