/* limit_table.c — see limit_table.h. */
#include "limit_table.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int lt_key_parse(tw_configure_t *cf, const tw_conf_node_t *node, lt_key_t *key,
                 tw_conf_error_t *err)
{
    const char *s;
    if (tw_conf_get_string(node, &s, err))
        return -1;
    key->text = tw_configure_strdup(cf, s);
    if (!key->text)
        return tw_conf_error(err, node, "out of memory");
    if (strcmp(s, "$remote_addr") == 0) {
        key->kind = KEY_REMOTE_ADDR;
        return 0;
    }
    if (strcmp(s, "$route") == 0) {
        key->kind = KEY_ROUTE;
        return 0;
    }
    key->kind = KEY_TEMPLATE;
    if (!strchr(s, '$'))
        return tw_conf_error(err, node,
                             "expected variables ($remote_addr, $http_x_api_key, $route...), "
                             "got '%s': a constant key would limit every request together",
                             s);
    return (key->template = tw_template_compile(cf, s, node, err)) ? 0 : -1;
}

size_t lt_key_of(const lt_key_t *key, tw_request_t *r, char *buf, uint64_t *hash)
{
    const char *p = NULL;
    size_t n = 0;
    char both[512];
    if (key->kind == KEY_REMOTE_ADDR) {
        p = tw_request_peer_text(r);
        n = p ? strlen(p) : 0;
    } else if (key->kind == KEY_TEMPLATE) {
        p = tw_template_expand(r, key->template, TW_TEMPLATE_TEXT, &n);
        if (!p)
            n = 0;
    } else {
        const char *route = tw_request_route_label(r), *server = tw_request_server_label(r);
        if (route) {
            int k = snprintf(both, sizeof both, "%s %s", server ? server : "", route);
            p = both;
            n = k < 0 ? 0 : (size_t)k < sizeof both ? (size_t)k : sizeof both - 1;
        }
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    *hash = h;
    size_t keep = n < LT_KEY_MAX ? n : LT_KEY_MAX;
    if (keep)
        memcpy(buf, p, keep);
    return keep;
}

int lt_table_init(tw_zone_t *zone, void *data, size_t size, void *arg)
{
    lt_table_t *t = data;
    (void)zone;
    (void)arg;
    t->capacity = (size - sizeof *t) / sizeof(lt_node_t);
    return t->capacity >= LT_WINDOW ? 0 : -1;
}

static bool same(const lt_node_t *node, const char *key, size_t len, uint64_t hash)
{
    return node->used && node->hash == hash && node->keylen == len &&
           memcmp(node->key, key, len) == 0;
}

lt_node_t *lt_find(lt_table_t *t, const char *key, size_t len, uint64_t hash, int64_t pid,
                   bool create, bool (*keep)(const lt_node_t *))
{
    uint64_t cap = t->capacity;
    lt_node_t *empty = NULL, *oldest = NULL;
    uint64_t stamp = ++t->clock;
    for (uint64_t i = 0; i < LT_WINDOW && i < cap; i++) {
        lt_node_t *node = &t->nodes[(hash + i) % cap];
        if (same(node, key, len, hash) && node->pid == pid) {
            node->stamp = stamp;
            return node;
        }
        if (!node->used) {
            if (!empty)
                empty = node;
        } else if ((!keep || !keep(node)) && (!oldest || node->stamp < oldest->stamp)) {
            oldest = node;
        }
    }
    if (!create)
        return NULL;
    lt_node_t *node = empty ? empty : oldest;
    if (!node)
        return NULL;
    node->used = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    node->a = node->b = 0;
    node->pid = pid;
    node->keylen = (uint32_t)len;
    memcpy(node->key, key, len);
    node->hash = hash;
    node->stamp = stamp;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    node->used = 1;
    return node;
}

void lt_each_of_key(lt_table_t *t, const char *key, size_t len, uint64_t hash,
                    void (*fn)(lt_node_t *, void *), void *arg)
{
    uint64_t cap = t->capacity;
    for (uint64_t i = 0; i < LT_WINDOW && i < cap; i++) {
        lt_node_t *node = &t->nodes[(hash + i) % cap];
        if (same(node, key, len, hash))
            fn(node, arg);
    }
}

uint64_t lt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int lt_get_size(const tw_conf_node_t *node, uint64_t min, uint64_t max, uint64_t *out,
                tw_conf_error_t *err)
{
    if (tw_conf_get_size(node, out, err))
        return -1;
    if (*out < min || *out > max)
        return tw_conf_error(err, node, "expected a size from %llu to %llu bytes",
                             (unsigned long long)min, (unsigned long long)max);
    return 0;
}
