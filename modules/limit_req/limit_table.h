/* limit_table.h — what limit_req and limit_conn share: the request key
 * ($remote_addr, $http_NAME, $route) and a bounded table of keyed nodes
 * in a shared zone, with LRU eviction (compiled into both modules).
 *
 * The table is an array of nodes; a key's node lives within a window of
 * LT_WINDOW positions from its hash, so a lookup looks at LT_WINDOW nodes
 * at most, and a new key takes a free node of its window or evicts the
 * window's least recently used one: a new key is never an error, and the
 * zone's size bounds the number of keys. Every call needs the zone's lock.
 * A node is published by writing its key first and its `used` flag last,
 * so a worker killed under the lock leaves at worst one node with a stale
 * count, which the next update overwrites; nothing needs repair. */
#ifndef LIMIT_TABLE_H
#define LIMIT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <twister/twister.h>

#define LT_KEY_MAX 72
#define LT_WINDOW 32

typedef enum {
    KEY_REMOTE_ADDR, /* the common case, without a template's copy */
    KEY_TEMPLATE,    /* any of the server's variables: "$http_x_api_key" */
    KEY_ROUTE        /* "$route": the server and route labels */
} lt_key_kind_t;

typedef struct {
    lt_key_kind_t kind;
    tw_template_t *template; /* KEY_TEMPLATE */
    const char *text;        /* as configured, for logs */
} lt_key_t;

typedef struct {
    uint64_t hash;
    uint32_t used;
    uint32_t keylen;
    uint64_t stamp; /* LRU clock when last used */
    int64_t pid;    /* limit_conn: the worker that owns the count */
    int64_t a, b;   /* the module's own numbers */
    char key[LT_KEY_MAX];
} lt_node_t;

typedef struct {
    uint64_t capacity;
    uint64_t clock;
    lt_node_t nodes[];
} lt_table_t;

/* Parses "$remote_addr", "$http_x_api_key" or "$route" from node into
 * *key. Returns 0 or -1 after filling err. */
int lt_key_parse(tw_configure_t *cf, const tw_conf_node_t *node, lt_key_t *key,
                 tw_conf_error_t *err);
/* Writes the request's key into buf (at most LT_KEY_MAX bytes, longer ones
 * hashed whole and cut); returns its length, 0 when the request has none
 * (a missing header: not limited). *hash receives the whole key's hash. */
size_t lt_key_of(const lt_key_t *key, tw_request_t *r, char *buf, uint64_t *hash);
/* The zone init hook: lays out the table. */
int lt_table_init(tw_zone_t *zone, void *data, size_t size, void *arg);
/* The node for (key, pid), created (zeroed, evicting the window's least
 * recently used node that keep() does not protect) when create is true;
 * NULL if absent (or if every node of the window is protected). */
lt_node_t *lt_find(lt_table_t *t, const char *key, size_t len, uint64_t hash, int64_t pid,
                   bool create, bool (*keep)(const lt_node_t *));
/* Calls fn for each used node of key's window with this key, any pid. */
void lt_each_of_key(lt_table_t *t, const char *key, size_t len, uint64_t hash,
                    void (*fn)(lt_node_t *, void *), void *arg);
/* Milliseconds of CLOCK_MONOTONIC, the same clock in every worker. */
uint64_t lt_now_ms(void);
/* Parses a size like "10m" into bytes within [min, max], from node. */
int lt_get_size(const tw_conf_node_t *node, uint64_t min, uint64_t max, uint64_t *out,
                tw_conf_error_t *err);

#endif
