/* twister/zone.h — memory shared by every worker of every generation.
 *
 * Workers are separate processes, so a count that must hold across them
 * (metrics, rate limits, connection limits) lives in a *zone*: a named
 * block of shared memory that a module declares in its configure hook:
 *
 *     static tw_zone_t *hits;
 *     configure(GLOBAL): tw_zone_declare(cf, "hits", 4096, NULL, NULL, &hits);
 *     a handler:         tw_counter_add(tw_zone_data(hits), 1);
 *
 * How the memory gets there without plugin code in the master: at start
 * the master maps one shared region (the `shared_zones:` setting, default
 * 64m; sparse shared memory, so only the pages in use cost memory)
 * before it forks anything; every worker of every generation inherits it
 * at the same address. A declaration only records (module, name, size);
 * the worker attaches its zones after the configure hooks, before
 * init_worker: under the region's lock it finds the zone of that module
 * with that name *and size*, or carves a new one. So a reload keeps a
 * zone's contents when name and size are unchanged, a changed size gets a
 * fresh zone (logged), and the master, once a generation has drained,
 * gives the pages of zones no live generation uses back to the kernel. The
 * master only ever reads the region's core-owned directory and writes its
 * core-owned counters (tw_server_stats_t); it never calls a plugin. The
 * region's size is fixed for the life of the master: changing it takes a
 * restart (a reload says so).
 *
 * A zone's memory is zeroed when it is created. The optional init hook
 * runs once per zone, in the first worker that attaches (never in the
 * master, never in -t), under the zone's lock; a worker that dies inside
 * it leaves the zone zeroed again for the next worker to retry.
 *
 * Crash safety — what a plugin must do, since a worker can die at any
 * instruction (kill -9, a segfault in another module):
 *   - Prefer single atomic words (tw_counter_*): they are never torn.
 *   - Anything bigger is changed only under tw_zone_lock, and written so
 *     that a half-done change can be detected or is harmless: e.g. fill a
 *     slot completely, then publish it by setting its key last; keep
 *     invariants checkable (counts ≤ capacity, indexes in range).
 *   - When tw_zone_lock returns TW_ZONE_RECOVERED, the previous holder died
 *     inside its critical section: check and repair (or reset) what that
 *     section touches before using it. The lock is yours either way.
 *   - Never store pointers to process-private memory in a zone; offsets
 *     within the zone are the safe choice (the zone is at the same address
 *     in every worker, but a design that relies on it breaks in tests).
 *   - Per-worker state that must be undone when a worker dies (a
 *     connection count) records the owner pid, so that the next one to
 *     look can tell a dead owner (tw_zone_owner_alive) and reclaim it. */
#ifndef TWISTER_ZONE_H
#define TWISTER_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "twister/module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_zone tw_zone_t;

/* Fills a freshly created (zeroed) zone; returns 0, or -1 to fail the
 * worker's start (the generation then fails and a reload is rolled back). */
typedef int (*tw_zone_init_fn)(tw_zone_t *zone, void *data, size_t size, void *arg);

/* The longest zone name, in bytes. */
#define TW_ZONE_NAME_MAX 63
/* tw_zone_lock's answer when the previous holder died holding the lock. */
#define TW_ZONE_RECOVERED 1

/* Declares the calling module's zone name of size bytes (rounded up to
 * pages) and returns its handle in *out; call it from configure. Declaring
 * the same name again in one generation returns the same handle if the
 * size matches. The handle lives as long as the generation; its memory is
 * there from init_worker on. Errors: EINVAL (name empty, longer than
 * TW_ZONE_NAME_MAX or not [A-Za-z0-9_.-], size 0), EEXIST (declared before
 * with another size), ENOSPC (more than the shared_zones region holds),
 * ENOMEM. */
int tw_zone_declare(tw_configure_t *cf, const char *name, size_t size, tw_zone_init_fn init,
                    void *arg, tw_zone_t **out);
/* The zone's memory (owned by the server, shared by all workers), or NULL
 * before the worker has attached it (configure, -t). */
void *tw_zone_data(const tw_zone_t *zone);
/* The zone's usable size in bytes. */
size_t tw_zone_size(const tw_zone_t *zone);
/* The zone's name as declared. */
const char *tw_zone_name(const tw_zone_t *zone);
/* Takes the zone's process-shared lock (robust: a holder that died does
 * not block the others). Returns 0, TW_ZONE_RECOVERED (held, but the last
 * holder died in its critical section: repair first), or -1 with errno
 * (EINVAL: not attached; ENOTRECOVERABLE). Do not hold it across a
 * suspension or any blocking call. */
int tw_zone_lock(tw_zone_t *zone);
/* Releases the lock taken by tw_zone_lock. */
void tw_zone_unlock(tw_zone_t *zone);
/* Whether process pid (an owner recorded in a zone) still runs; false for
 * pid ≤ 0. */
bool tw_zone_owner_alive(pid_t pid);

/* ---- atomic counters: one 64-bit word anywhere in a zone ---------------- */

/* Adds delta to *counter atomically; returns the new value. */
uint64_t tw_counter_add(uint64_t *counter, uint64_t delta);
/* Subtracts delta from *counter atomically, not below 0; returns the new
 * value. */
uint64_t tw_counter_sub(uint64_t *counter, uint64_t delta);
/* Reads *counter atomically. */
uint64_t tw_counter_get(const uint64_t *counter);

/* ---- fixed-size slots inside a zone (a small slab) ----------------------- */

/* Lays out size bytes at mem (inside a zone) as slots of slot_size bytes
 * each; returns the number of slots, 0 if none fits. Call it from the
 * zone's init hook. The slot functions need the zone's lock held. */
size_t tw_slots_init(void *mem, size_t size, size_t slot_size);
/* A free slot, zeroed, or NULL when all are in use. */
void *tw_slots_alloc(void *mem);
/* Returns slot (from tw_slots_alloc on the same mem) to the free list. */
void tw_slots_free(void *mem, void *slot);
/* Slot i (0 ≤ i < tw_slots_capacity) if it is in use, else NULL. */
void *tw_slots_at(void *mem, size_t i);
/* The number of slots mem was laid out with. */
size_t tw_slots_capacity(const void *mem);
/* The number of slots in use. */
size_t tw_slots_used(const void *mem);
/* Rebuilds the free list and the used count from the slots' own flags:
 * what to do after TW_ZONE_RECOVERED. Returns the number in use. */
size_t tw_slots_repair(void *mem);

/* ---- the server's own counters (kept by the master in a core zone) ------- */

typedef struct {
    uint64_t generation;            /* the serving generation's number */
    uint64_t config_hash;           /* FNV-1a of the serving config file */
    uint64_t reloads_ok;            /* reloads that reached READY */
    uint64_t reloads_failed;        /* reloads rolled back (config or start-up) */
    uint64_t worker_crashes;        /* serving workers that died of a signal */
    uint64_t worker_exits;          /* serving workers that exited unasked */
    uint64_t worker_start_failures; /* workers that failed to start */
    uint64_t started_unix;          /* when the master started, seconds */
    uint64_t workers_reaped;        /* worker processes that ended, any generation:
                                       when it moves, counts a dead worker owned in a
                                       zone can be reclaimed (tw_zone_owner_alive) */
} tw_server_stats_t;

/* Copies the server's counters into *out; -1 with EINVAL outside a worker. */
int tw_server_stats(const tw_worker_t *worker, tw_server_stats_t *out);

/* What reloads did with the old generations' connections (since the
 * master started). Counted by the draining workers. */
typedef struct {
    uint64_t handed_off; /* idle keep-alive connections moved to the new generation */
    uint64_t kept;       /* connections busy when their generation began to drain:
                            they finished on it (and moved later if they could) */
    uint64_t closed;     /* connections the old generations closed while draining
                            (could not move: TLS, hand-off off, the new workers
                            full or gone; or a long request cut off) */
} tw_reload_stats_t;

/* Copies the reload hand-off counters into *out (caller's memory); -1
 * with EINVAL outside a worker. Since ABI 1.3. */
int tw_server_reload_stats(const tw_worker_t *worker, tw_reload_stats_t *out);
/* Whether the worker is draining (SIGQUIT or a reload): readiness says no. */
bool tw_worker_draining(const tw_worker_t *worker);

#ifdef __cplusplus
}
#endif
#endif
