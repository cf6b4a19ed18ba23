/* config.h — loading YAML config files into the node tree of
 * twister/conf.h (the core's side of that API).
 *
 * What the loader does beyond plain YAML:
 *   - ${VAR} and ${VAR:-default} in any scalar value are replaced by the
 *     environment variable (the default when unset or empty); an unset
 *     variable without a default is an error at that scalar. "$$" is a
 *     literal "$"; a "$" followed by anything else is kept as is, so
 *     regexes like '^/a$' need no escaping.
 *   - a scalar tagged `!include path.yaml` is replaced by the root node of
 *     that file (relative paths are relative to the including file);
 *     cycles are errors naming the chain; at most TW_CONF_MAX_INCLUDE deep.
 *   - anchors and aliases: an alias is a copy of the anchored node (so its
 *     path names where it is used; its line still points at the anchor);
 *     `<<: *anchor` (or a list of them) merges maps, explicit keys win.
 *   - a duplicate key in a map is an error at the second one.
 *   - limits against blow-ups: TW_CONF_MAX_NODES nodes in all (aliases
 *     counted expanded), TW_CONF_MAX_DEPTH levels, TW_CONF_MAX_FILE bytes
 *     per file, TW_CONF_MAX_VALUE bytes per scalar after substitution,
 *     TW_CONF_MAX_MEMORY bytes per document.
 *   - YAML null (~, null, empty) is the empty scalar ""; NUL bytes in
 *     scalars are rejected.
 * One arena per document holds every node and string. */
#ifndef TWISTER_CONFIG_H
#define TWISTER_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "twister/conf.h"

#define TW_CONF_MAX_NODES 200000
#define TW_CONF_MAX_DEPTH 64
#define TW_CONF_MAX_INCLUDE 16
#define TW_CONF_MAX_FILE (16u << 20)
#define TW_CONF_MAX_VALUE (16u << 20) /* a scalar after ${VAR} substitution */
#define TW_CONF_MAX_MEMORY (64u << 20)

/* Flags for tw_conf_load_string_ex. */
enum {
    TW_CONF_NO_INCLUDE = 1, /* !include is an error (fuzzing: no file access) */
};

typedef struct tw_conf_doc tw_conf_doc_t;
typedef struct tw_conf_arena tw_conf_arena_t;

/* Where the loader gets the files it reads (the config and its includes)
 * and the values of ${VAR}: by default the file system and the process
 * environment; tests and the fuzzer serve them from memory. */
typedef struct {
    /* Reads the whole file at path into a malloc'd *text of *len bytes
     * (the loader frees it). Returns 0, or -1 with a static reason in
     * *why ("No such file or directory", "a FIFO, not a regular file"). */
    int (*read)(void *ctx, const char *path, char **text, size_t *len, const char **why);
    /* The value of the variable name, or NULL if it is unset; it must stay
     * valid until the load returns. */
    const char *(*getenv)(void *ctx, const char *name);
    /* A malloc'd name equal for every path of the same file (include cycle
     * detection), or NULL to use the path itself; may be NULL. */
    char *(*identity)(void *ctx, const char *path);
    void *ctx; /* passed to each */
} tw_conf_source_t;

/* Loads the file at path; NULL with "file:line:col: message" in err. */
tw_conf_doc_t *tw_conf_load(const char *path, tw_conf_error_t *err);
/* tw_conf_load through src (NULL: the file system and the environment). */
tw_conf_doc_t *tw_conf_load_source(const char *path, const tw_conf_source_t *src,
                                   tw_conf_error_t *err);
/* Loads text[0..len) as if it were the file name (for tests and fuzzing). */
tw_conf_doc_t *tw_conf_load_string(const char *name, const char *text, size_t len,
                                   tw_conf_error_t *err);
/* tw_conf_load_string with TW_CONF_* flags. */
tw_conf_doc_t *tw_conf_load_string_ex(const char *name, const char *text, size_t len,
                                      unsigned flags, tw_conf_error_t *err);
/* tw_conf_load_string_ex with includes and variables from src (NULL: the
 * file system and the environment). */
tw_conf_doc_t *tw_conf_load_string_source(const char *name, const char *text, size_t len,
                                          unsigned flags, const tw_conf_source_t *src,
                                          tw_conf_error_t *err);
/* The document's root node (an empty scalar for an empty file). */
const tw_conf_node_t *tw_conf_root(const tw_conf_doc_t *doc);
/* The name the document was loaded from (path or name). */
const char *tw_conf_doc_name(const tw_conf_doc_t *doc);
/* Frees the document and every node in it (NULL is a no-op). */
void tw_conf_doc_free(tw_conf_doc_t *doc);
/* Prints node as YAML (includes, variables and aliases resolved) to out;
 * 0 or -1 on a write error. */
int tw_conf_dump(const tw_conf_node_t *node, FILE *out);

/* Edit distance (with transpositions) between a and b, for "did you mean". */
size_t tw_conf_edit_distance(const char *a, const char *b);
/* The candidate closest to word if it is close enough to be a likely typo,
 * else NULL. */
const char *tw_conf_suggest(const char *word, const char *const *candidates, size_t n);

/* A bump allocator freed in one call (the document's, and settings'). */
tw_conf_arena_t *tw_conf_arena_new(void);
/* n zeroed bytes aligned for any type; NULL on ENOMEM or past the limit. */
void *tw_conf_arena_alloc(tw_conf_arena_t *a, size_t n);
/* A NUL-terminated copy of s[0..len); NULL on ENOMEM. */
char *tw_conf_arena_strndup(tw_conf_arena_t *a, const char *s, size_t len);
/* A copy of the printf-formatted string; NULL on ENOMEM. */
char *tw_conf_arena_printf(tw_conf_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees every allocation of a and a itself (NULL is a no-op). */
void tw_conf_arena_free(tw_conf_arena_t *a);

#endif
