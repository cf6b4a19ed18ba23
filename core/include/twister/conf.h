/* twister/conf.h — read-only access to the YAML config tree.
 *
 * Plugins never see libyaml: they get nodes. Every node remembers the file,
 * line and column it came from and its path in the document
 * (servers[0].routes[2].static.root), so every error a module reports
 * points at the exact place to fix. Nodes live as long as the config
 * generation that parsed them; never free them. */
#ifndef TWISTER_CONF_H
#define TWISTER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_conf_node tw_conf_node_t;

typedef enum {
    TW_CONF_SCALAR = 1, /* a string (YAML null reads as the empty scalar "") */
    TW_CONF_MAP = 2,
    TW_CONF_LIST = 3,
} tw_conf_type_t;

/* Where errors go: one formatted message,
 *   conf/site.yaml:12:5: servers[0].routes[3].static.root: expected a string */
typedef struct {
    char message[1024];
} tw_conf_error_t;

/* Every function below accepts a NULL node (a missing key, or the node a
 * configure hook gets when its module has no section): accessors answer
 * 0/""/NULL and getters fail with "expected ..., got nothing". */

/* The node's type (0 for NULL). */
tw_conf_type_t tw_conf_type(const tw_conf_node_t *node);
/* The file the node was read from (after !include, the included file). */
const char *tw_conf_file(const tw_conf_node_t *node);
/* 1-based line of the node's first character. */
unsigned tw_conf_line(const tw_conf_node_t *node);
/* 1-based column of the node's first character. */
unsigned tw_conf_column(const tw_conf_node_t *node);
/* The node's path from the document root, e.g. "limits.body". */
const char *tw_conf_path(const tw_conf_node_t *node);

/* The text of a scalar (after ${VAR} substitution), NUL-terminated; NULL if
 * the node is not a scalar. In the file, ${VAR} is the environment variable
 * VAR (an error if unset), ${VAR:-text} is VAR or text when VAR is unset or
 * empty, and $$ is a literal $; any other $ is kept as is. */
const char *tw_conf_scalar(const tw_conf_node_t *node);
/* Number of entries of a map or items of a list; 0 for a scalar. */
size_t tw_conf_count(const tw_conf_node_t *node);
/* The i-th item of a list, or NULL if out of range or not a list. */
const tw_conf_node_t *tw_conf_list_item(const tw_conf_node_t *node, size_t i);
/* The value under key in a map, or NULL if absent or not a map. */
const tw_conf_node_t *tw_conf_map_get(const tw_conf_node_t *node, const char *key);
/* The i-th key of a map (in document order), or NULL if out of range. */
const char *tw_conf_map_key(const tw_conf_node_t *node, size_t i);
/* The i-th key of a map as a node (a scalar), for errors about that key;
 * NULL if out of range. */
const tw_conf_node_t *tw_conf_map_key_node(const tw_conf_node_t *node, size_t i);
/* The i-th value of a map (in document order), or NULL if out of range. */
const tw_conf_node_t *tw_conf_map_value(const tw_conf_node_t *node, size_t i);

/* Typed getters. Each returns 0 and stores the value, or returns -1 and
 * writes a file:line:column error into err (which may be NULL). */

/* A scalar as a string (pointer owned by the tree). */
int tw_conf_get_string(const tw_conf_node_t *node, const char **out, tw_conf_error_t *err);
/* A decimal integer within [min, max] (an optional '-', digits; no '+',
 * no hex, no spaces). */
int tw_conf_get_int(const tw_conf_node_t *node, long long min, long long max, long long *out,
                    tw_conf_error_t *err);
/* true/false, yes/no, on/off (YAML 1.1 spellings, case-insensitive). */
int tw_conf_get_bool(const tw_conf_node_t *node, bool *out, tw_conf_error_t *err);
/* A byte size: a number with an optional k, m or g suffix (powers of 1024,
 * either case): "512", "64k", "1m", "2g". Overflow is an error. */
int tw_conf_get_size(const tw_conf_node_t *node, uint64_t *out, tw_conf_error_t *err);
/* A duration in milliseconds: numbers with ms, s, m, h or d ("500ms",
 * "30s", "1h30m"); a bare number means seconds. Overflow is an error. */
int tw_conf_get_duration_ms(const tw_conf_node_t *node, uint64_t *out, tw_conf_error_t *err);

/* Writes "file:line:col: path: <formatted message>" into err and returns -1,
 * so that a configure hook can `return tw_conf_error(err, node, ...)`.
 * With a NULL node, just the message; with a NULL err, nothing. */
int tw_conf_error(tw_conf_error_t *err, const tw_conf_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Checks that node is a map whose keys are all in allowed (NULL-terminated).
 * An unknown key is an error at that key, with "did you mean" when a known
 * key is close (else the list of allowed keys). Returns 0 or -1. */
int tw_conf_check_keys(const tw_conf_node_t *node, const char *const *allowed,
                       tw_conf_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
