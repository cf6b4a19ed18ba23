/* file_cache.h — static's open-file cache, with nginx's open_file_cache
 * semantics: per worker and route, a bounded number of entries, each an
 * open descriptor (or, for a small file, its bytes), its stat and the
 * header values computed from it (ETag, Last-Modified). An entry older
 * than `valid` is revalidated on its next use: the name is resolved again
 * (st_open, beneath the root as always) and fstat'ed, and any difference
 * in device, inode, size, mtime, ctime or mode replaces the entry. So a
 * file replaced, truncated, deleted or chmod'ed is noticed within `valid`;
 * inside it the cached answer is served, as nginx does. Entries unused for
 * `inactive` are closed by a timer (an open descriptor keeps a deleted
 * file's blocks allocated). Plain libc plus the loop's timer. */
#ifndef TWISTER_FILE_CACHE_H
#define TWISTER_FILE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include <twister/loop.h>

#include "static_util.h"

/* The settings (static: open_file_cache and sendfile_min). */
typedef struct {
    size_t max;           /* entries; 0: no cache (every request opens) */
    uint64_t valid_ms;    /* an entry used after this long is revalidated */
    uint64_t inactive_ms; /* an entry unused this long is closed */
    size_t memory;        /* bytes of file contents kept, all entries */
    size_t sendfile_min;  /* files smaller than this are kept in memory */
} fc_settings_t;

/* The file's modification date as HTTP sees it (RFC 9110 §8.8.2). */
typedef struct {
    bool known;                   /* false: no Last-Modified at all */
    bool strong;                  /* usable for If-Range (§8.8.2.2) */
    time_t time;                  /* when known */
    char text[ST_HTTP_DATE_SIZE]; /* the Last-Modified value, when known */
} fc_modified_t;

/* What a request sees of a file; valid until fc_done. */
typedef struct fc_file {
    struct stat st;
    int fd;              /* open (O_RDONLY), or -1 when content holds the file */
    const char *content; /* st.st_size bytes, or NULL (send fd) */
    char etag[ST_ETAG_MAX];
    fc_modified_t modified; /* as of the last validation */
    const char *type;       /* the caller's Content-Type for it, once worked
                               out (NULL until then; it must outlive the cache) */
} fc_file_t;

typedef struct fc_cache fc_cache_t;

/* A cache for files beneath root (which must outlive it), on loop (for the
 * inactive timer). Returns NULL on ENOMEM. */
fc_cache_t *fc_cache_new(const fc_settings_t *settings, const st_root_t *root, tw_loop_t *loop);
/* Closes every entry and frees the cache (NULL is a no-op). */
void fc_cache_free(fc_cache_t *cache);

/* Opens rel beneath the root, through the cache. Returns:
 *   0   *file is a regular file; hand it back with fc_done;
 *   1   rel is not a regular file: *fd is it, opened, *st its stat (the
 *       caller closes fd; nothing is cached);
 *   <0  -errno from st_open or fstat (nothing cached for rel any more).
 * now_ms is the loop's time. */
int fc_open(fc_cache_t *cache, const char *rel, uint64_t now_ms, fc_file_t **file, int *fd,
            struct stat *st);
/* A descriptor of file for the response to own (tw_response_sendfile):
 * the file's own when the cache did not keep it, else a dup of the cached
 * one. -1 with errno (EBADF: the file is in content, EMFILE). */
int fc_take_fd(fc_cache_t *cache, fc_file_t *file);
/* Ends a request's use of file (frees it when the cache did not keep it). */
void fc_done(fc_cache_t *cache, fc_file_t *file);

/* Entries and content bytes held now (for tests and logs). */
size_t fc_cache_entries(const fc_cache_t *cache);
size_t fc_cache_memory(const fc_cache_t *cache);

/* The modification date of st as HTTP sends it: an mtime in the future is
 * replaced by now (§8.8.2.1); one that has no IMF-fixdate leaves the file
 * without a modification date; strong only if at least a second before
 * now. */
fc_modified_t fc_modification_date(const struct stat *st, time_t now);

#endif
