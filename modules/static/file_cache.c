/* file_cache.c — see file_cache.h.
 *
 * A hash table of entries keyed by the name beneath the root, with an LRU
 * list (most recently used first) for the bound on entries and on content
 * bytes and for the inactive sweep. An entry that must change is never
 * patched in place: it is dropped and a new one made from the fresh open,
 * so what a request holds always describes one version of one file.
 *
 * Lifetimes. A request uses its fc_file_t only while static's content
 * handler runs: the bytes of a small file are copied into the response
 * (tw_response_write), a large one goes out through a dup of the cached
 * descriptor (fc_take_fd), which the response owns. So dropping an entry
 * never pulls anything from under a response still being sent. */
#include "file_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fc_entry fc_entry_t;

struct fc_entry {
    fc_file_t file;          /* first: a file is its entry */
    fc_entry_t *hnext;       /* hash chain */
    fc_entry_t *prev, *next; /* LRU list */
    uint64_t validated_ms;   /* loop time of the open or last revalidation */
    uint64_t used_ms;        /* loop time of the last use */
    size_t content_bytes;    /* counted against settings.memory */
    uint32_t hash;
    bool cached; /* in the table; else freed by fc_done */
    size_t keylen;
    char key[];
};

struct fc_cache {
    fc_settings_t set;
    const st_root_t *root;
    tw_loop_t *loop;
    tw_timer_t timer; /* the inactive sweep */
    fc_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    fc_entry_t *head, *tail;
    size_t count, memory;
};

static const char empty_content[1] = "";

fc_modified_t fc_modification_date(const struct stat *st, time_t now)
{
    fc_modified_t m = {.time = st->st_mtime};
    if (m.time > now)
        m.time = now;
    m.known = st_http_date(m.time, m.text);
    m.strong = m.known && m.time < now;
    return m;
}

/* ---- the table and the LRU list ------------------------------------------------- */

static uint32_t hash_key(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static void lru_unlink(fc_cache_t *c, fc_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(fc_cache_t *c, fc_entry_t *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
}

static void entry_free(fc_entry_t *e)
{
    if (e->file.fd >= 0)
        close(e->file.fd);
    if (e->file.content && e->file.content != empty_content)
        free((void *)e->file.content);
    free(e);
}

/* Takes e out of the table and frees it. */
static void entry_drop(fc_cache_t *c, fc_entry_t *e)
{
    fc_entry_t **p = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    lru_unlink(c, e);
    c->count--;
    c->memory -= e->content_bytes;
    entry_free(e);
}

static fc_entry_t *lookup(const fc_cache_t *c, const char *key, size_t len, uint32_t h)
{
    if (c->nbuckets == 0)
        return NULL;
    for (fc_entry_t *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->keylen == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* Puts e in the table, making room: at most max entries and memory bytes
 * of content (the least recently used go first). */
static void insert(fc_cache_t *c, fc_entry_t *e)
{
    while (c->tail && (c->count >= c->set.max || c->memory + e->content_bytes > c->set.memory))
        entry_drop(c, c->tail);
    fc_entry_t **b = &c->buckets[e->hash & (c->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    lru_push_front(c, e);
    c->count++;
    c->memory += e->content_bytes;
    e->cached = true;
}

/* ---- filling an entry ------------------------------------------------------------- */

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mode == b->st_mode && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
           a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the whole small file fd (of stat st) into memory. NULL if it
 * cannot, or (verify: the bytes are to be kept) if the file changed while
 * it was read: then they might be a mix of two versions, and the
 * descriptor is sent instead, whose changes the response notices by
 * running short. A one-off read is no worse than a sendfile of it. */
static char *read_whole(int fd, const struct stat *st, bool verify)
{
    size_t size = (size_t)st->st_size;
    char *buf = malloc(size);
    if (buf == NULL)
        return NULL;
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    struct stat after;
    if (got != size || (verify && (fstat(fd, &after) != 0 || !same_file(st, &after)))) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* A new entry for the regular file fd (taken over) with stat st. NULL on
 * ENOMEM (fd closed). */
static fc_entry_t *entry_new(const fc_cache_t *c, const char *key, size_t len, uint32_t h, int fd,
                             const struct stat *st, uint64_t now_ms)
{
    fc_entry_t *e = malloc(sizeof *e + len + 1);
    if (e == NULL) {
        close(fd);
        return NULL;
    }
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, len + 1);
    e->keylen = len;
    e->hash = h;
    e->validated_ms = e->used_ms = now_ms;
    e->file.st = *st;
    e->file.fd = fd;
    if (st->st_size == 0) {
        e->file.content = empty_content;
    } else if ((uint64_t)st->st_size < c->set.sendfile_min &&
               (c->set.max == 0 || (uint64_t)st->st_size <= c->set.memory)) {
        /* Kept only if it fits the memory bound at all (insert makes room
         * by dropping others); else the descriptor is kept instead. */
        e->file.content = read_whole(fd, st, c->set.max > 0);
        if (e->file.content)
            e->content_bytes = (size_t)st->st_size;
    }
    if (e->file.content) {
        close(fd);
        e->file.fd = -1;
    }
    st_etag(st, e->file.etag);
    e->file.modified = fc_modification_date(st, time(NULL));
    return e;
}

/* ---- the inactive sweep ------------------------------------------------------------- */

static void sweep(tw_loop_t *loop, tw_timer_t *timer, void *arg)
{
    fc_cache_t *c = arg;
    uint64_t now = tw_loop_now(loop);
    while (c->tail && now - c->tail->used_ms >= c->set.inactive_ms)
        entry_drop(c, c->tail);
    tw_timer_start(loop, timer, c->set.inactive_ms);
}

/* ---- the API ------------------------------------------------------------------------- */

fc_cache_t *fc_cache_new(const fc_settings_t *settings, const st_root_t *root, tw_loop_t *loop)
{
    fc_cache_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->set = *settings;
    c->root = root;
    c->loop = loop;
    tw_timer_init(&c->timer, sweep, c);
    if (c->set.max > 0) {
        size_t n = 16;
        while (n < c->set.max && n < ((size_t)1 << 24))
            n *= 2;
        c->buckets = calloc(n, sizeof *c->buckets);
        if (c->buckets == NULL) {
            free(c);
            return NULL;
        }
        c->nbuckets = n;
        if (c->set.inactive_ms > 0 && loop)
            tw_timer_start(loop, &c->timer, c->set.inactive_ms);
    }
    return c;
}

void fc_cache_free(fc_cache_t *c)
{
    if (c == NULL)
        return;
    if (c->loop)
        tw_timer_stop(c->loop, &c->timer);
    while (c->head)
        entry_drop(c, c->head);
    free(c->buckets);
    free(c);
}

int fc_open(fc_cache_t *c, const char *rel, uint64_t now_ms, fc_file_t **file, int *fd_out,
            struct stat *st_out)
{
    size_t len = strlen(rel);
    uint32_t h = hash_key(rel, len);
    fc_entry_t *e = lookup(c, rel, len, h);
    if (e && now_ms - e->validated_ms < c->set.valid_ms) {
        e->used_ms = now_ms;
        if (c->head != e) {
            lru_unlink(c, e);
            lru_push_front(c, e);
        }
        *file = &e->file;
        return 0;
    }

    /* A miss, or an entry due for revalidation: resolve the name again. */
    int fd = st_open(c->root, rel);
    if (fd < 0) {
        if (e)
            entry_drop(c, e);
        return fd;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        close(fd);
        if (e)
            entry_drop(c, e);
        return err;
    }
    if (e && same_file(&e->file.st, &st)) {
        close(fd);
        e->validated_ms = e->used_ms = now_ms;
        if (c->head != e) {
            lru_unlink(c, e);
            lru_push_front(c, e);
        }
        *file = &e->file;
        return 0;
    }
    if (e)
        entry_drop(c, e); /* replaced, rewritten, chmod'ed: start afresh */
    if (!S_ISREG(st.st_mode)) {
        *fd_out = fd;
        *st_out = st;
        return 1;
    }
    e = entry_new(c, rel, len, h, fd, &st, now_ms);
    if (e == NULL)
        return -ENOMEM;
    if (c->set.max > 0)
        insert(c, e);
    *file = &e->file;
    return 0;
}

int fc_take_fd(fc_cache_t *c, fc_file_t *file)
{
    fc_entry_t *e = (fc_entry_t *)file;
    (void)c;
    if (file->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (!e->cached) {
        int fd = file->fd;
        file->fd = -1;
        return fd;
    }
    return fcntl(file->fd, F_DUPFD_CLOEXEC, 0);
}

void fc_done(fc_cache_t *c, fc_file_t *file)
{
    fc_entry_t *e = (fc_entry_t *)file;
    (void)c;
    if (e && !e->cached)
        entry_free(e);
}

size_t fc_cache_entries(const fc_cache_t *c)
{
    return c->count;
}

size_t fc_cache_memory(const fc_cache_t *c)
{
    return c->memory;
}
