/* twister/metrics.h — a module's own counters, counted across all workers
 * and generations and shown by the `metrics` module (if loaded) in the
 * Prometheus format:
 *
 *     static tw_metrics_counter_t *refused;
 *     configure(GLOBAL):
 *         tw_metrics_counter_declare(cf, "mymod_refused_total",
 *                                    "Requests mymod refused.", "", &refused);
 *     a handler:
 *         tw_metrics_counter_add(refused, 1);
 *
 * Counters live in a core-owned shared zone (see twister/zone.h) with room
 * for TW_METRICS_COUNTERS_MAX counters, kept across reloads (matched by
 * name and labels) for the life of the server. Declare every counter in
 * configure, with labels from the config, never from request data: that
 * keeps the number of series bounded. */
#ifndef TWISTER_METRICS_H
#define TWISTER_METRICS_H

#include <stdint.h>

#include "twister/module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_metrics_counter tw_metrics_counter_t;

/* How many distinct counters (name + labels) the server keeps. */
#define TW_METRICS_COUNTERS_MAX 1024
/* The longest name, help text and label set, in bytes. */
#define TW_METRICS_NAME_MAX 63
#define TW_METRICS_HELP_MAX 127
#define TW_METRICS_LABELS_MAX 159

/* Declares a counter from configure and returns its handle in *out (it
 * lives as long as the generation). name is a Prometheus metric name
 * ([a-zA-Z_:][a-zA-Z0-9_:]*, ending in _total as Prometheus wants); labels is ""
 * or `key="value",...` with Prometheus escaping; help is one line. The
 * same name and labels declared again return the same handle. Errors:
 * EINVAL (a bad name, labels or help, too long), ENOMEM. */
int tw_metrics_counter_declare(tw_configure_t *cf, const char *name, const char *help,
                               const char *labels, tw_metrics_counter_t **out);
/* Adds delta to the counter, atomically across workers. A no-op before the
 * worker has attached it (configure, -t) and for NULL. */
void tw_metrics_counter_add(tw_metrics_counter_t *counter, uint64_t delta);
/* The counter's current value (0 before it is attached). */
uint64_t tw_metrics_counter_get(const tw_metrics_counter_t *counter);

/* Receives one counter: the strings are the server's, valid during the
 * call only. */
typedef void (*tw_metrics_counter_fn)(const char *name, const char *help, const char *labels,
                                      uint64_t value, void *arg);
/* Calls fn for every counter any generation declared, sorted by name then
 * labels so that a name's series are adjacent. Returns 0, or -1 with EINVAL
 * outside a worker. */
int tw_metrics_counters_each(const tw_worker_t *worker, tw_metrics_counter_fn fn, void *arg);

/* One worker's own connection counters since it started (process-local:
 * the metrics module adds them up across workers). */
typedef struct {
    uint64_t accepted; /* connections accepted */
    uint64_t closed;   /* connections that ended, for any reason */
    uint64_t timeouts; /* ... of which a timeout closed */
    uint64_t requests; /* request heads read */
    uint64_t aborted;  /* requests whose client went away first */
    uint64_t open;     /* connections open now */
    uint64_t idle;     /* ... of which are between requests */
} tw_worker_conn_stats_t;

/* Fills *out with the calling worker's connection counters. Returns 0, or
 * -1 with EINVAL outside a worker. */
int tw_worker_conn_stats(const tw_worker_t *worker, tw_worker_conn_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
