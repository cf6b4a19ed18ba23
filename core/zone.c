/* zone.c — the shared-zone region and the zone helpers (see zone.h and
 * twister/zone.h).
 *
 * The region starts with a directory: the region's own robust lock, the
 * core's counters, and a fixed table of entries (key, offset, size, the
 * last generation that attached it, the zone's robust lock). Zone memory
 * follows, page-aligned. Crash safety of the directory: an entry is
 * filled completely and only then marked used, and freeing marks it free
 * before its pages go, so a worker that dies under the region lock leaves
 * at worst an unused half-written entry; that is why a recovered region
 * lock needs no repair. Everything read from the region is bounds-checked
 * before use, because the master reads it too and a plugin bug in a worker
 * could have scribbled over it. */
#include "zone.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "twister/log.h"

#define REGION_MAGIC 0x3153454e4f5a5754ull /* "TWZONES1" */
#define MAX_ZONES 256
#define KEY_MAX (2 * (TW_ZONE_NAME_MAX + 1))

enum {
    ENTRY_FREE = 0,
    ENTRY_USED = 1
};

typedef struct {
    uint32_t state;
    uint32_t initialized;
    uint32_t last_generation;
    uint32_t reserved;
    uint64_t offset;   /* from the region's start */
    uint64_t size;     /* page-rounded */
    char key[KEY_MAX]; /* "module/name" */
    pthread_mutex_t lock;
} entry_t;

struct tw_zone_region {
    uint64_t magic;
    uint64_t size;
    uint64_t data_start;
    pthread_mutex_t lock;
    tw_server_stats_t stats;
    tw_reload_stats_t reload;
    entry_t entries[MAX_ZONES];
};

struct tw_zone {
    tw_zone_t *next;
    char key[KEY_MAX];
    const char *name; /* points into key */
    size_t size;      /* page-rounded */
    tw_zone_init_fn init;
    void *init_arg;
    void *data;
    entry_t *entry;
};

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static size_t round_up(size_t n, size_t to)
{
    return n > SIZE_MAX - to ? 0 : (n + to - 1) / to * to;
}

static int init_robust_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int rc = pthread_mutexattr_init(&attr);
    if (rc == 0)
        rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

/* 0, TW_ZONE_RECOVERED, or -1 with errno. */
static int robust_lock(pthread_mutex_t *m, bool try_only)
{
    int rc = try_only ? pthread_mutex_trylock(m) : pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        rc = pthread_mutex_consistent(m);
        if (rc == 0)
            return TW_ZONE_RECOVERED;
    }
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

/* ---- the region (master) ------------------------------------------------- */

size_t tw_zone_region_cost(size_t size)
{
    return round_up(size, page_size());
}

tw_zone_region_t *tw_zone_region_map(size_t size)
{
    size_t dir = round_up(sizeof(tw_zone_region_t), page_size());
    size = round_up(size, page_size());
    if (size < dir)
        size = dir;
    /* A named memfd rather than MAP_ANONYMOUS only so that the region is
     * recognisable in /proc/PID/maps; both are sparse shared memory. */
    int fd = memfd_create("twister-zones", MFD_CLOEXEC);
    if (fd < 0)
        return NULL;
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)size) == 0)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    if (p == MAP_FAILED)
        return NULL;
    tw_zone_region_t *region = p;
    region->size = size;
    region->data_start = dir;
    int rc = init_robust_mutex(&region->lock);
    for (size_t i = 0; rc == 0 && i < MAX_ZONES; i++)
        rc = init_robust_mutex(&region->entries[i].lock);
    if (rc != 0) {
        munmap(p, size);
        errno = rc;
        return NULL;
    }
    region->stats.started_unix = (uint64_t)time(NULL);
    region->magic = REGION_MAGIC;
    return region;
}

void tw_zone_region_unmap(tw_zone_region_t *region)
{
    if (region)
        munmap(region, region->size);
}

size_t tw_zone_region_size(const tw_zone_region_t *region)
{
    return region->size;
}

tw_server_stats_t *tw_zone_region_stats(tw_zone_region_t *region)
{
    return &region->stats;
}

tw_reload_stats_t *tw_zone_region_reload_stats(tw_zone_region_t *region)
{
    return &region->reload;
}

static bool entry_sane(const tw_zone_region_t *region, const entry_t *e)
{
    return e->offset >= region->data_start && e->offset % page_size() == 0 && e->size > 0 &&
           e->size <= region->size && e->offset <= region->size - e->size;
}

/* Gives an entry's pages back to the kernel and frees the entry. */
static void entry_release(tw_zone_region_t *region, entry_t *e)
{
    e->state = ENTRY_FREE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!entry_sane(region, e))
        return;
    char *at = (char *)region + e->offset;
    if (madvise(at, e->size, MADV_REMOVE) != 0)
        madvise(at, e->size, MADV_DONTNEED);
}

int tw_zone_region_collect(tw_zone_region_t *region, unsigned oldest_live)
{
    if (!region || region->magic != REGION_MAGIC)
        return 0;
    if (robust_lock(&region->lock, true) < 0)
        return -1;
    int freed = 0;
    for (size_t i = 0; i < MAX_ZONES; i++) {
        entry_t *e = &region->entries[i];
        if (e->state == ENTRY_USED && e->last_generation < oldest_live) {
            e->key[KEY_MAX - 1] = '\0';
            tw_log_info("shared zone %s (%llu bytes) is no longer used: freed", e->key,
                        (unsigned long long)e->size);
            entry_release(region, e);
            freed++;
        }
    }
    pthread_mutex_unlock(&region->lock);
    return freed;
}

/* ---- declarations (configure) ---------------------------------------------- */

static bool valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > TW_ZONE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int tw_zone_list_add(tw_zone_list_t *list, tw_pool_t *pool, const char *module, const char *name,
                     size_t size, tw_zone_init_fn init, void *arg, size_t capacity, tw_zone_t **out)
{
    if (!out || !valid_name(name) || !valid_name(module) || size == 0 ||
        !(size = tw_zone_region_cost(size))) {
        errno = EINVAL;
        return -1;
    }
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s/%s", module, name);
    for (tw_zone_t *z = list->head; z; z = z->next) {
        if (strcmp(z->key, key) == 0) {
            if (z->size != size) {
                errno = EEXIST;
                return -1;
            }
            *out = z;
            return 0;
        }
    }
    if (capacity && (size > capacity || list->total > capacity - size)) {
        errno = ENOSPC;
        return -1;
    }
    tw_zone_t *z = tw_pool_calloc(pool, sizeof *z);
    if (!z) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(z->key, key, sizeof key);
    z->name = z->key + strlen(module) + 1;
    z->size = size;
    z->init = init;
    z->init_arg = arg;
    tw_zone_t **tail = &list->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = z;
    list->total += size;
    *out = z;
    return 0;
}

/* ---- attaching (worker) ---------------------------------------------------- */

/* The lowest offset where size bytes fit between the used entries. */
static uint64_t find_room(const tw_zone_region_t *region, uint64_t size)
{
    uint64_t at = region->data_start;
    bool moved = true;
    while (moved) {
        moved = false;
        if (at > region->size || size > region->size - at)
            return 0;
        for (size_t i = 0; i < MAX_ZONES; i++) {
            const entry_t *e = &region->entries[i];
            if (e->state != ENTRY_USED || !entry_sane(region, e))
                continue;
            if (e->offset < at + size && at < e->offset + e->size) {
                at = e->offset + e->size;
                moved = true;
            }
        }
    }
    return at;
}

/* Finds zone z's entry in the region or makes one; the region lock is
 * held. */
static entry_t *find_or_create(tw_zone_region_t *region, const tw_zone_t *z, unsigned generation,
                               char *why, size_t whylen)
{
    entry_t *free_entry = NULL;
    uint64_t other_size = 0;
    for (size_t i = 0; i < MAX_ZONES; i++) {
        entry_t *e = &region->entries[i];
        if (e->state != ENTRY_USED) {
            if (!free_entry)
                free_entry = e;
            continue;
        }
        if (strncmp(e->key, z->key, KEY_MAX) != 0 || !entry_sane(region, e))
            continue;
        if (e->size == z->size) {
            if (e->last_generation < generation)
                e->last_generation = generation;
            return e;
        }
        other_size = e->size;
    }
    if (!free_entry) {
        snprintf(why, whylen, "shared zone %s: the region has no free entry (%d zones)", z->key,
                 MAX_ZONES);
        return NULL;
    }
    uint64_t at = find_room(region, z->size);
    if (!at) {
        snprintf(why, whylen,
                 "shared zone %s: no room for %zu bytes in the %llu-byte shared_zones region "
                 "(zones of draining generations are still in use; raise shared_zones and "
                 "restart)",
                 z->key, z->size, (unsigned long long)region->size);
        return NULL;
    }
    if (other_size)
        tw_log_warn("shared zone %s changed size from %llu to %zu bytes: it starts afresh", z->key,
                    (unsigned long long)other_size, z->size);
    char *mem = (char *)region + at;
    memset(mem, 0, z->size);
    free_entry->offset = at;
    free_entry->size = z->size;
    free_entry->last_generation = generation;
    free_entry->initialized = 0;
    memcpy(free_entry->key, z->key, KEY_MAX);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    free_entry->state = ENTRY_USED;
    return free_entry;
}

static int attach_one(tw_zone_t *z, tw_zone_region_t *region, unsigned generation, char *why,
                      size_t whylen)
{
    if (robust_lock(&region->lock, false) < 0) {
        snprintf(why, whylen, "shared zones: lock: %s", strerror(errno));
        return -1;
    }
    entry_t *e = find_or_create(region, z, generation, why, whylen);
    pthread_mutex_unlock(&region->lock);
    if (!e)
        return -1;
    z->entry = e;
    z->data = (char *)region + e->offset;
    if (__atomic_load_n(&e->initialized, __ATOMIC_ACQUIRE))
        return 0;
    int rc = robust_lock(&e->lock, false);
    if (rc < 0) {
        snprintf(why, whylen, "shared zone %s: lock: %s", z->key, strerror(errno));
        return -1;
    }
    if (!e->initialized) {
        /* A worker that died inside init left whatever it had written. */
        if (rc == TW_ZONE_RECOVERED)
            memset(z->data, 0, z->size);
        if (z->init && z->init(z, z->data, z->size, z->init_arg) != 0) {
            memset(z->data, 0, z->size);
            pthread_mutex_unlock(&e->lock);
            snprintf(why, whylen, "shared zone %s: its init hook failed", z->key);
            return -1;
        }
        __atomic_store_n(&e->initialized, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&e->lock);
    return 0;
}

int tw_zone_list_attach(tw_zone_list_t *list, tw_zone_region_t *region, unsigned generation,
                        char *why, size_t whylen)
{
    for (tw_zone_t *z = list->head; z; z = z->next)
        if (attach_one(z, region, generation, why, whylen) != 0)
            return -1;
    return 0;
}

/* ---- the plugin's view ------------------------------------------------------ */

void *tw_zone_data(const tw_zone_t *zone)
{
    return zone ? zone->data : NULL;
}

size_t tw_zone_size(const tw_zone_t *zone)
{
    return zone->size;
}

const char *tw_zone_name(const tw_zone_t *zone)
{
    return zone->name;
}

int tw_zone_lock(tw_zone_t *zone)
{
    if (!zone || !zone->entry) {
        errno = EINVAL;
        return -1;
    }
    return robust_lock(&zone->entry->lock, false);
}

void tw_zone_unlock(tw_zone_t *zone)
{
    if (zone && zone->entry)
        pthread_mutex_unlock(&zone->entry->lock);
}

bool tw_zone_owner_alive(pid_t pid)
{
    if (pid <= 0)
        return false;
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* ---- counters ----------------------------------------------------------------- */

uint64_t tw_counter_add(uint64_t *counter, uint64_t delta)
{
    return __atomic_add_fetch(counter, delta, __ATOMIC_RELAXED);
}

uint64_t tw_counter_sub(uint64_t *counter, uint64_t delta)
{
    uint64_t old = __atomic_load_n(counter, __ATOMIC_RELAXED), new;
    do {
        new = old > delta ? old - delta : 0;
    } while (
        !__atomic_compare_exchange_n(counter, &old, new, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return new;
}

uint64_t tw_counter_get(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* ---- slots -------------------------------------------------------------------- */

#define SLOTS_MAGIC 0x31544f4c53575421ull

typedef struct {
    uint64_t magic;
    uint64_t stride; /* header + payload, 16-aligned */
    uint64_t capacity;
    uint64_t used;
    uint64_t free_head; /* index + 1; 0: none */
    uint64_t reserved;  /* keeps the slots 16-aligned */
} slots_t;

typedef struct {
    uint64_t in_use;
    uint64_t next_free; /* index + 1 */
} slot_head_t;

static slot_head_t *slot_head(slots_t *s, size_t i)
{
    return (slot_head_t *)((char *)(s + 1) + i * s->stride);
}

size_t tw_slots_init(void *mem, size_t size, size_t slot_size)
{
    slots_t *s = mem;
    if (!mem || size < sizeof *s || slot_size == 0 || slot_size > SIZE_MAX / 2)
        return 0;
    s->stride = round_up(sizeof(slot_head_t) + slot_size, 16);
    s->capacity = (size - sizeof *s) / s->stride;
    s->magic = SLOTS_MAGIC;
    tw_slots_repair(mem);
    return s->capacity;
}

size_t tw_slots_repair(void *mem)
{
    slots_t *s = mem;
    s->free_head = 0;
    s->used = 0;
    for (size_t i = s->capacity; i-- > 0;) {
        slot_head_t *h = slot_head(s, i);
        if (h->in_use) {
            s->used++;
        } else {
            h->next_free = s->free_head;
            s->free_head = i + 1;
        }
    }
    return s->used;
}

void *tw_slots_alloc(void *mem)
{
    slots_t *s = mem;
    if (s->magic != SLOTS_MAGIC || s->free_head == 0 || s->free_head > s->capacity)
        return NULL;
    size_t i = s->free_head - 1;
    slot_head_t *h = slot_head(s, i);
    memset(h + 1, 0, s->stride - sizeof *h);
    s->free_head = h->next_free <= s->capacity ? h->next_free : 0;
    h->in_use = 1;
    s->used++;
    return h + 1;
}

void tw_slots_free(void *mem, void *slot)
{
    slots_t *s = mem;
    char *base = (char *)(s + 1);
    if (!slot || (char *)slot < base + sizeof(slot_head_t))
        return;
    size_t i = (size_t)((char *)slot - sizeof(slot_head_t) - base) / s->stride;
    if (i >= s->capacity)
        return;
    slot_head_t *h = slot_head(s, i);
    if (!h->in_use)
        return;
    h->in_use = 0;
    h->next_free = s->free_head;
    s->free_head = i + 1;
    s->used--;
}

void *tw_slots_at(void *mem, size_t i)
{
    slots_t *s = mem;
    if (i >= s->capacity || !slot_head(s, i)->in_use)
        return NULL;
    return slot_head(s, i) + 1;
}

size_t tw_slots_capacity(const void *mem)
{
    return ((const slots_t *)mem)->capacity;
}

size_t tw_slots_used(const void *mem)
{
    return ((const slots_t *)mem)->used;
}
