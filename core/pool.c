/* pool.c — a block arena with a cleanup list.
 *
 * Small allocations are carved from blocks of block_size bytes; the first
 * block lives in the same malloc as the pool header, so a request that
 * stays within it costs one malloc and one free in all. An allocation
 * larger than a quarter of a block gets a block of its own (kept on a
 * separate list), so one big buffer never wastes the tail of a normal
 * block. Every pointer is 16-byte aligned. Cleanups are a list allocated
 * from the pool itself, pushed at the head: they run newest first. */
#include "twister/pool.h"

#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    tw_pool_t *p = malloc(sizeof *p + block_size);
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

static void free_list(block_t *b)
{
    while (b) {
        block_t *next = b->next;
        free(b);
        b = next;
    }
}

void tw_pool_reset(tw_pool_t *p)
{
    if (!p)
        return;
    run_cleanups(p);
    free_list(p->extra);
    free_list(p->large);
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
    free_list(p->extra);
    free_list(p->large);
    free(p);
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
    block_t *nb = malloc(sizeof *nb + p->block_size);
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
