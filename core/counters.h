/* counters.h — the registry behind twister/metrics.h: modules' counters
 * in one core-owned shared zone ("twister/counters").
 *
 * A runtime collects its modules' declarations; a worker, once the zone is
 * attached, binds each to its slot (found by name and labels, or claimed).
 * Slots are claimed without a lock: a slot's state goes EMPTY → CLAIMED by
 * compare-and-swap, its strings are written, then READY is stored; readers
 * only look at READY slots. A worker that dies between CLAIMED and READY
 * loses that one slot, and nothing else can be torn: values are single
 * atomic words. */
#ifndef TWISTER_COUNTERS_H
#define TWISTER_COUNTERS_H

#include <stddef.h>

#include "twister/metrics.h"
#include "twister/pool.h"

typedef struct {
    tw_metrics_counter_t *head;
} tw_counter_list_t;

/* The size of the counters zone. */
size_t tw_counters_zone_size(void);
/* Records a declaration (tw_metrics_counter_declare's work). */
int tw_counter_list_add(tw_counter_list_t *list, tw_pool_t *pool, const char *name,
                        const char *help, const char *labels, tw_metrics_counter_t **out);
/* Binds every declared counter to its slot in zone (the attached counters
 * zone). A counter that finds no room stays unbound (its adds are lost);
 * that is logged once. */
void tw_counter_list_attach(tw_counter_list_t *list, void *zone);
/* tw_metrics_counters_each over zone. */
int tw_counters_each(void *zone, tw_metrics_counter_fn fn, void *arg);

#endif
