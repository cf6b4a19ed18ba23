/* pool.c — a block arena with a cleanup list, and the per-thread block
 * cache of internal.h.
 *
 * Small allocations are carved from blocks of block_size bytes; the first
 * block lives in the same allocation as the pool header, so a request that
 * stays within it costs one block in all, and normal blocks come from the
 * block cache: a connection that creates a pool per busy period pays a
 * free-list pop and push for it, not malloc and free. An allocation
 * larger than a quarter of a block gets a block of its own (kept on a
 * separate list), so one big buffer never wastes the tail of a normal
 * block. Every pointer is 16-byte aligned. Cleanups are a list allocated
 * from the pool itself, pushed at the head: they run newest first. */
#include "twister/pool.h"

#include <errno.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Under AddressSanitizer the cache is a pass-through: every block goes
 * back to free, so a use after "free" is still caught (ASan quarantines
 * freed memory) and LeakSanitizer sees every block. */
#if defined(__SANITIZE_ADDRESS__)
#define BLOCK_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLOCK_CACHE 0
#endif
#endif
#ifndef BLOCK_CACHE
#define BLOCK_CACHE 1
#endif

/* ---- the block cache ---------------------------------------------------------- */

#define BLOCK_CLASSES 16               /* distinct sizes cached at a time */
#define BLOCK_CLASS_BYTES (128 * 1024) /* cached bytes per size, at most */
#define BLOCK_CLASS_MIN 4              /* ...but at least this many blocks */
#define BLOCK_CLASS_MAX 128            /* ...and at most this many */
#define BLOCK_SIZE_MAX (64 * 1024)     /* larger blocks are never cached */

typedef struct free_block {
    struct free_block *next;
} free_block_t;

typedef struct {
    size_t size;
    free_block_t *head;
    unsigned count, limit;
} block_class_t;

/* The sizes register themselves on first use; a worker uses a handful. */
static __thread block_class_t block_classes[BLOCK_CLASSES];
static __thread unsigned block_class_count;

/* The two classes found last are tried first: a request takes and gives
 * back a few buffers of two or three sizes, in turn. */
static __thread unsigned block_class_mru[2];

static block_class_t *block_class(size_t size, bool add)
{
    unsigned a = block_class_mru[0], b = block_class_mru[1];
    if (block_classes[a].size == size)
        return &block_classes[a];
    if (block_classes[b].size == size) {
        block_class_mru[0] = b;
        block_class_mru[1] = a;
        return &block_classes[b];
    }
    for (unsigned i = 0; i < block_class_count; i++) {
        if (block_classes[i].size == size) {
            block_class_mru[1] = a;
            block_class_mru[0] = i;
            return &block_classes[i];
        }
    }
    if (!add || size > BLOCK_SIZE_MAX || size < sizeof(free_block_t))
        return NULL;
    block_class_t *c = NULL;
    if (block_class_count < BLOCK_CLASSES) {
        c = &block_classes[block_class_count++];
    } else {
        /* Full: a size with nothing cached loses nothing by giving up its
         * slot (odd sizes from plugins' pools cannot crowd out the hot ones
         * for long). */
        for (unsigned i = 0; i < BLOCK_CLASSES && !c; i++)
            if (!block_classes[i].head)
                c = &block_classes[i];
        if (!c)
            return NULL;
    }
    c->size = size;
    c->head = NULL;
    c->count = 0;
    size_t limit = BLOCK_CLASS_BYTES / size;
    c->limit = limit < BLOCK_CLASS_MIN   ? BLOCK_CLASS_MIN
               : limit > BLOCK_CLASS_MAX ? BLOCK_CLASS_MAX
                                         : (unsigned)limit;
    return c;
}

void *tw_block_alloc(size_t size)
{
    block_class_t *c = block_class(size, false);
    if (c && c->head) {
        free_block_t *b = c->head;
        c->head = b->next;
        c->count--;
        return b;
    }
    return malloc(size);
}

void tw_block_free(void *p, size_t size)
{
    if (!p)
        return;
    block_class_t *c = BLOCK_CACHE ? block_class(size, true) : NULL;
    if (!c || c->count >= c->limit) {
        free(p);
        return;
    }
    free_block_t *b = p;
    b->next = c->head;
    c->head = b;
    c->count++;
}

void tw_block_trim(void)
{
    for (unsigned i = 0; i < block_class_count; i++) {
        block_class_t *c = &block_classes[i];
        while (c->head) {
            free_block_t *b = c->head;
            c->head = b->next;
            free(b);
        }
        c->count = 0;
    }
}

size_t tw_block_cached(void)
{
    size_t n = 0;
    for (unsigned i = 0; i < block_class_count; i++)
        n += block_classes[i].count * block_classes[i].size;
    return n;
}

/* ---- pools ---------------------------------------------------------------------- */

#define POOL_ALIGN 16
#define ALIGN_UP(n) (((n) + (POOL_ALIGN - 1)) & ~(size_t)(POOL_ALIGN - 1))

typedef struct block {
    struct block *next;
    char *pos; /* next free byte */
    char *end;
    alignas(POOL_ALIGN) char data[];
} block_t;

typedef struct cleanup {
    struct cleanup *next;
    tw_cleanup_fn fn;
    void *arg;
} cleanup_t;

struct tw_pool {
    block_t *current; /* where small allocations come from */
    block_t *extra;   /* normal blocks after the first, newest first */
    block_t *large;   /* one block per large allocation */
    cleanup_t *cleanups;
    size_t block_size;
    block_t first; /* last: its data runs on past the end of the header */
};

static void block_init(block_t *b, size_t size)
{
    b->next = NULL;
    b->pos = b->data;
    b->end = b->data + size;
}

tw_pool_t *tw_pool_new(size_t block_size)
{
    if (block_size == 0)
        block_size = 4096;
    block_size = ALIGN_UP(block_size);
    if (block_size > SIZE_MAX / 2) {
        errno = ENOMEM;
        return NULL;
    }
    tw_pool_t *p = tw_block_alloc(sizeof *p + block_size);
    if (!p)
        return NULL;
    p->block_size = block_size;
    p->extra = NULL;
    p->large = NULL;
    p->cleanups = NULL;
    block_init(&p->first, block_size);
    p->current = &p->first;
    return p;
}

static void run_cleanups(tw_pool_t *p)
{
    /* A cleanup may register another one (or allocate): keep going until
     * the list stays empty. */
    while (p->cleanups) {
        cleanup_t *c = p->cleanups;
        p->cleanups = c->next;
        c->fn(c->arg);
    }
}

static void free_list(block_t *b, size_t size)
{
    while (b) {
        block_t *next = b->next;
        if (size)
            tw_block_free(b, size);
        else
            free(b);
        b = next;
    }
}

void tw_pool_reset(tw_pool_t *p)
{
    if (!p || (p->current == &p->first && p->first.pos == p->first.data && !p->cleanups &&
               !p->extra && !p->large))
        return; /* untouched since the last reset */
    run_cleanups(p);
    free_list(p->extra, sizeof(block_t) + p->block_size);
    free_list(p->large, 0);
    p->extra = NULL;
    p->large = NULL;
    block_init(&p->first, p->block_size);
    p->current = &p->first;
}

void tw_pool_free(tw_pool_t *p)
{
    if (!p)
        return;
    run_cleanups(p);
    free_list(p->extra, sizeof(block_t) + p->block_size);
    free_list(p->large, 0);
    tw_block_free(p, sizeof *p + p->block_size);
}

void *tw_pool_alloc(tw_pool_t *p, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - sizeof(block_t) - POOL_ALIGN) {
        errno = ENOMEM;
        return NULL;
    }
    n = ALIGN_UP(n);
    block_t *b = p->current;
    if ((size_t)(b->end - b->pos) >= n) {
        void *r = b->pos;
        b->pos += n;
        return r;
    }
    if (n > p->block_size / 4) {
        block_t *big = malloc(sizeof *big + n);
        if (!big)
            return NULL;
        block_init(big, n);
        big->pos = big->end;
        big->next = p->large;
        p->large = big;
        return big->data;
    }
    /* The rest of the current block is given up: with allocations at most
     * a quarter of a block, at most a quarter is wasted. */
    block_t *nb = tw_block_alloc(sizeof *nb + p->block_size);
    if (!nb)
        return NULL;
    block_init(nb, p->block_size);
    nb->next = p->extra;
    p->extra = nb;
    p->current = nb;
    void *r = nb->pos;
    nb->pos += n;
    return r;
}

void *tw_pool_calloc(tw_pool_t *p, size_t n)
{
    void *r = tw_pool_alloc(p, n);
    if (r)
        memset(r, 0, n);
    return r;
}

char *tw_pool_strndup(tw_pool_t *p, const char *s, size_t len)
{
    if (len == SIZE_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    char *r = tw_pool_alloc(p, len + 1);
    if (!r)
        return NULL;
    if (len)
        memcpy(r, s, len);
    r[len] = '\0';
    return r;
}

int tw_pool_add_cleanup(tw_pool_t *p, tw_cleanup_fn fn, void *arg)
{
    cleanup_t *c = tw_pool_alloc(p, sizeof *c);
    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->next = p->cleanups;
    p->cleanups = c;
    return 0;
}
