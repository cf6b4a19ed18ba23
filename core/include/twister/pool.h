/* twister/pool.h — a per-request (or per-generation) arena: many small
 * allocations, freed all at once, plus cleanup callbacks run at that time. */
#ifndef TWISTER_POOL_H
#define TWISTER_POOL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_pool tw_pool_t;
/* Runs when the pool is reset or freed, newest first. */
typedef void (*tw_cleanup_fn)(void *arg);

/* Creates a pool whose first block holds block_size bytes (0: 4 KiB).
 * Returns NULL on ENOMEM. */
tw_pool_t *tw_pool_new(size_t block_size);
/* Runs the cleanups, then frees every block and the pool. NULL is a no-op. */
void tw_pool_free(tw_pool_t *pool);
/* Runs the cleanups and frees all but the first block, for reuse. */
void tw_pool_reset(tw_pool_t *pool);
/* Returns n bytes aligned for any type, owned by the pool; NULL on ENOMEM. */
void *tw_pool_alloc(tw_pool_t *pool, size_t n);
/* As tw_pool_alloc, zero-filled. */
void *tw_pool_calloc(tw_pool_t *pool, size_t n);
/* Copies len bytes of s and a terminating NUL into the pool; NULL on ENOMEM. */
char *tw_pool_strndup(tw_pool_t *pool, const char *s, size_t len);
/* Registers fn(arg) to run when the pool is reset or freed. Errors: ENOMEM. */
int tw_pool_add_cleanup(tw_pool_t *pool, tw_cleanup_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
