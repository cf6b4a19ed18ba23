/* config.c — YAML config files as an immutable tree of nodes.
 *
 * libyaml's event parser drives a small composer: a stack of open maps and
 * lists, each node stamped with its file, 1-based line/column and its path
 * from the root. The composer is where the Twister-specific rules live
 * (see config.h): ${VAR} substitution, !include, aliases copied (never
 * shared, so every node has exactly one path), `<<` merges, duplicate
 * keys, and hard limits so that no input — the fuzzer's included — can
 * blow up time or memory. Everything a document allocates lives in one
 * arena. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- arena ------------------------------------------------------------- */

typedef struct tw_conf_chunk {
    struct tw_conf_chunk *next;
    max_align_t data[];
} tw_conf_chunk_t;

struct tw_conf_arena {
    tw_conf_chunk_t *chunks; /* every block, newest first */
    char *ptr;               /* free space in the current block */
    size_t left;             /* bytes left at ptr */
    size_t total;            /* bytes malloc'd so far */
    size_t limit;            /* 0: none */
};

#define ARENA_BLOCK 16384u
#define ARENA_ALIGN alignof(max_align_t)

tw_conf_arena_t *tw_conf_arena_new(void)
{
    return calloc(1, sizeof(tw_conf_arena_t));
}

void *tw_conf_arena_alloc(tw_conf_arena_t *a, size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN;
    if (need > a->left) {
        /* Big requests get a block of their own so that the current
         * block's free space is not wasted. */
        bool own = need > ARENA_BLOCK / 4;
        size_t size = own ? need : ARENA_BLOCK;
        if (a->limit && a->total + size > a->limit)
            return NULL;
        tw_conf_chunk_t *c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        a->total += size;
        if (own && a->chunks) {
            c->next = a->chunks->next;
            a->chunks->next = c;
            memset(c->data, 0, need);
            return c->data;
        }
        c->next = a->chunks;
        a->chunks = c;
        a->ptr = (char *)c->data;
        a->left = size;
    }
    void *p = a->ptr;
    a->ptr += need;
    a->left -= need;
    memset(p, 0, need);
    return p;
}

char *tw_conf_arena_strndup(tw_conf_arena_t *a, const char *s, size_t len)
{
    char *p = tw_conf_arena_alloc(a, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static char *arena_vprintf(tw_conf_arena_t *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *p = tw_conf_arena_alloc(a, (size_t)n + 1);
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *tw_conf_arena_printf(tw_conf_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void tw_conf_arena_free(tw_conf_arena_t *a)
{
    if (!a)
        return;
    tw_conf_chunk_t *c = a->chunks;
    while (c) {
        tw_conf_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

/* ---- nodes ------------------------------------------------------------- */

typedef struct {
    tw_conf_node_t *key;   /* a scalar node: the key text and where it is */
    tw_conf_node_t *value; /* the value */
} tw_conf_entry_t;

struct tw_conf_node {
    tw_conf_type_t type;
    unsigned line;    /* 1-based */
    unsigned column;  /* 1-based */
    unsigned height;  /* 0 for a scalar, 1 + the children's for a collection */
    const char *file; /* arena string shared by the nodes of one file */
    const char *path; /* "servers[0].routes[2]"; "" for the root */
    size_t nnodes;    /* nodes in this subtree, keys included */
    union {
        struct {
            const char *text; /* NUL-terminated, no NUL inside */
            size_t len;
        } s;
        struct {
            tw_conf_node_t **items;
            size_t n;
        } l;
        struct {
            tw_conf_entry_t *ents; /* document order */
            uint32_t *sorted;      /* entry indices sorted by key */
            size_t n;
        } m;
    } u;
};

struct tw_conf_doc {
    tw_conf_arena_t *arena;
    tw_conf_node_t *root;
    const char *name;
};

/* Every accessor accepts NULL (what a configure hook gets when its module
 * has no section, and what tw_conf_map_get returns for a missing key), so
 * that lookups can be chained without a crash. */

tw_conf_type_t tw_conf_type(const tw_conf_node_t *node)
{
    return node ? node->type : (tw_conf_type_t)0;
}

const char *tw_conf_file(const tw_conf_node_t *node)
{
    return node ? node->file : "";
}

unsigned tw_conf_line(const tw_conf_node_t *node)
{
    return node ? node->line : 0;
}

unsigned tw_conf_column(const tw_conf_node_t *node)
{
    return node ? node->column : 0;
}

const char *tw_conf_path(const tw_conf_node_t *node)
{
    return node ? node->path : "";
}

const char *tw_conf_scalar(const tw_conf_node_t *node)
{
    return node && node->type == TW_CONF_SCALAR ? node->u.s.text : NULL;
}

size_t tw_conf_count(const tw_conf_node_t *node)
{
    if (!node)
        return 0;
    if (node->type == TW_CONF_LIST)
        return node->u.l.n;
    if (node->type == TW_CONF_MAP)
        return node->u.m.n;
    return 0;
}

const tw_conf_node_t *tw_conf_list_item(const tw_conf_node_t *node, size_t i)
{
    if (!node || node->type != TW_CONF_LIST || i >= node->u.l.n)
        return NULL;
    return node->u.l.items[i];
}

/* Index of key among the map's entries, or -1. */
static ptrdiff_t map_find(const tw_conf_node_t *map, const char *key)
{
    size_t lo = 0, hi = map->u.m.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t idx = map->u.m.sorted[mid];
        int c = strcmp(key, map->u.m.ents[idx].key->u.s.text);
        if (c == 0)
            return idx;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

const tw_conf_node_t *tw_conf_map_get(const tw_conf_node_t *node, const char *key)
{
    if (!node || !key || node->type != TW_CONF_MAP)
        return NULL;
    ptrdiff_t i = map_find(node, key);
    return i < 0 ? NULL : node->u.m.ents[i].value;
}

const char *tw_conf_map_key(const tw_conf_node_t *node, size_t i)
{
    if (!node || node->type != TW_CONF_MAP || i >= node->u.m.n)
        return NULL;
    return node->u.m.ents[i].key->u.s.text;
}

const tw_conf_node_t *tw_conf_map_key_node(const tw_conf_node_t *node, size_t i)
{
    if (!node || node->type != TW_CONF_MAP || i >= node->u.m.n)
        return NULL;
    return node->u.m.ents[i].key;
}

const tw_conf_node_t *tw_conf_map_value(const tw_conf_node_t *node, size_t i)
{
    if (!node || node->type != TW_CONF_MAP || i >= node->u.m.n)
        return NULL;
    return node->u.m.ents[i].value;
}

/* ---- errors ------------------------------------------------------------ */

static void verror(tw_conf_error_t *err, const char *file, unsigned line, unsigned col,
                   const char *path, const char *fmt, va_list ap)
{
    if (!err)
        return;
    size_t cap = sizeof(err->message), n = 0;
    int w;
    if (file && line)
        w = snprintf(err->message, cap, "%s:%u:%u: ", file, line, col);
    else if (file)
        w = snprintf(err->message, cap, "%s: ", file);
    else
        w = snprintf(err->message, cap, "%s", "");
    n = w < 0 ? 0 : (size_t)w < cap ? (size_t)w : cap - 1;
    if (path && *path) {
        w = snprintf(err->message + n, cap - n, "%s: ", path);
        n += w < 0 ? 0 : (size_t)w < cap - n ? (size_t)w : cap - n - 1;
    }
    vsnprintf(err->message + n, cap - n, fmt, ap);
}

int tw_conf_error(tw_conf_error_t *err, const tw_conf_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (node)
        verror(err, node->file, node->line, node->column, node->path, fmt, ap);
    else
        verror(err, NULL, 0, 0, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

/* "a list", "a map", "an empty value" or "'text'" (shortened), for
 * "expected X, got Y" messages. */
static const char *describe(const tw_conf_node_t *node, char *buf, size_t len)
{
    if (!node)
        return "nothing";
    if (node->type == TW_CONF_LIST)
        return "a list";
    if (node->type == TW_CONF_MAP)
        return "a map";
    if (node->u.s.len == 0)
        return "an empty value";
    if (node->u.s.len > 40)
        snprintf(buf, len, "'%.37s...'", node->u.s.text);
    else
        snprintf(buf, len, "'%s'", node->u.s.text);
    return buf;
}

/* ---- did you mean ------------------------------------------------------ */

size_t tw_conf_edit_distance(const char *a, const char *b)
{
    /* Optimal string alignment distance (Levenshtein plus adjacent
     * transpositions: "hanlder" is one edit from "handler"), ASCII
     * case-insensitive. Three rolling rows; words longer than 63 bytes
     * are never typos of a key worth suggesting. */
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return la > lb ? la : lb;
    size_t r0[64], r1[64], r2[64];
    size_t *pp = r0, *p = r1, *c = r2;
    for (size_t j = 0; j <= lb; j++)
        p[j] = j;
    for (size_t i = 1; i <= la; i++) {
        c[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
            size_t cost = ai != bj;
            size_t v = p[j] + 1;
            if (c[j - 1] + 1 < v)
                v = c[j - 1] + 1;
            if (p[j - 1] + cost < v)
                v = p[j - 1] + cost;
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == bj && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
        }
        size_t *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    return p[lb];
}

const char *tw_conf_suggest(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t lw = strlen(word);
    for (size_t i = 0; i < n; i++) {
        size_t d = tw_conf_edit_distance(word, candidates[i]);
        size_t lc = strlen(candidates[i]);
        size_t longest = lw > lc ? lw : lc;
        /* Close enough to be a typo: at most two edits, and not most of
         * the word ("x" is not a typo of "y"). */
        if (d <= 2 && d * 3 <= longest + 1 && d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

int tw_conf_check_keys(const tw_conf_node_t *node, const char *const *allowed, tw_conf_error_t *err)
{
    char buf[64];
    if (!node || node->type != TW_CONF_MAP)
        return tw_conf_error(err, node, "expected a map, got %s", describe(node, buf, sizeof(buf)));
    size_t nallowed = 0;
    while (allowed[nallowed])
        nallowed++;
    for (size_t i = 0; i < node->u.m.n; i++) {
        const tw_conf_node_t *key = node->u.m.ents[i].key;
        const char *k = key->u.s.text;
        bool known = false;
        for (size_t j = 0; j < nallowed && !known; j++)
            known = strcmp(k, allowed[j]) == 0;
        if (known)
            continue;
        const char *s = tw_conf_suggest(k, allowed, nallowed);
        if (s)
            return tw_conf_error(err, key, "unknown key '%s'; did you mean '%s'?", k, s);
        char list[512];
        size_t n = 0;
        list[0] = '\0';
        for (size_t j = 0; j < nallowed && n < sizeof(list) - 8; j++) {
            int w = snprintf(list + n, sizeof(list) - n, "%s%s", j ? ", " : "", allowed[j]);
            if (w < 0 || (size_t)w >= sizeof(list) - n) {
                snprintf(list + n, sizeof(list) - n, ", ...");
                break;
            }
            n += (size_t)w;
        }
        return tw_conf_error(err, key, "unknown key '%s' (expected one of: %s)", k, list);
    }
    return 0;
}

/* ---- typed getters ----------------------------------------------------- */

int tw_conf_get_string(const tw_conf_node_t *node, const char **out, tw_conf_error_t *err)
{
    char buf[64];
    if (!node || node->type != TW_CONF_SCALAR)
        return tw_conf_error(err, node, "expected a string, got %s",
                             describe(node, buf, sizeof(buf)));
    *out = node->u.s.text;
    return 0;
}

/* Decimal digits at *p into *v; false on no digit or overflow. */
static bool parse_u64(const char **p, uint64_t *v, bool *overflow)
{
    const char *s = *p;
    uint64_t x = 0;
    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            x = x * 10 + d;
    }
    *p = s;
    *v = x;
    return true;
}

int tw_conf_get_int(const tw_conf_node_t *node, long long min, long long max, long long *out,
                    tw_conf_error_t *err)
{
    char buf[64];
    if (!node || node->type != TW_CONF_SCALAR)
        return tw_conf_error(err, node, "expected an integer, got %s",
                             describe(node, buf, sizeof(buf)));
    const char *s = node->u.s.text;
    bool neg = *s == '-', overflow = false;
    uint64_t v;
    if (neg)
        s++;
    if (!parse_u64(&s, &v, &overflow) || *s)
        return tw_conf_error(err, node, "expected an integer, got %s",
                             describe(node, buf, sizeof(buf)));
    long long x;
    if (overflow || (!neg && v > (uint64_t)LLONG_MAX) || (neg && v > (uint64_t)LLONG_MAX + 1))
        overflow = true;
    else if (neg)
        x = v == (uint64_t)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    else
        x = (long long)v;
    if (overflow || x < min || x > max)
        return tw_conf_error(err, node, "expected an integer from %lld to %lld, got %s", min, max,
                             describe(node, buf, sizeof(buf)));
    *out = x;
    return 0;
}

int tw_conf_get_bool(const tw_conf_node_t *node, bool *out, tw_conf_error_t *err)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    char buf[64];
    if (node && node->type == TW_CONF_SCALAR) {
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(node->u.s.text, yes[i]) == 0) {
                *out = true;
                return 0;
            }
            if (strcasecmp(node->u.s.text, no[i]) == 0) {
                *out = false;
                return 0;
            }
        }
    }
    return tw_conf_error(err, node, "expected true or false (or yes/no, on/off), got %s",
                         describe(node, buf, sizeof(buf)));
}

int tw_conf_get_size(const tw_conf_node_t *node, uint64_t *out, tw_conf_error_t *err)
{
    char buf[64];
    const char *s = node && node->type == TW_CONF_SCALAR ? node->u.s.text : "";
    uint64_t v, mul = 1;
    bool overflow = false;
    if (!parse_u64(&s, &v, &overflow))
        goto bad;
    switch (*s) {
    case 'k':
    case 'K':
        mul = 1ull << 10;
        s++;
        break;
    case 'm':
    case 'M':
        mul = 1ull << 20;
        s++;
        break;
    case 'g':
    case 'G':
        mul = 1ull << 30;
        s++;
        break;
    default:
        break;
    }
    if (*s)
        goto bad;
    if (overflow || v > UINT64_MAX / mul)
        return tw_conf_error(err, node, "size %s is too large", describe(node, buf, sizeof(buf)));
    *out = v * mul;
    return 0;
bad:
    return tw_conf_error(err, node,
                         "expected a size (bytes, or a number with k, m or g: 64k, 1m), got %s",
                         describe(node, buf, sizeof(buf)));
}

int tw_conf_get_duration_ms(const tw_conf_node_t *node, uint64_t *out, tw_conf_error_t *err)
{
    char buf[64];
    const char *s = node && node->type == TW_CONF_SCALAR ? node->u.s.text : "";
    uint64_t total = 0;
    bool overflow = false, first = true;
    do {
        uint64_t v, unit;
        if (!parse_u64(&s, &v, &overflow))
            goto bad;
        if (s[0] == 'm' && s[1] == 's') {
            unit = 1;
            s += 2;
        } else if (*s == 's') {
            unit = 1000;
            s++;
        } else if (*s == 'm') {
            unit = 60 * 1000;
            s++;
        } else if (*s == 'h') {
            unit = 3600 * 1000;
            s++;
        } else if (*s == 'd') {
            unit = 86400 * 1000;
            s++;
        } else if (!*s && first) {
            unit = 1000; /* a bare number is seconds */
        } else {
            goto bad;
        }
        if (v > UINT64_MAX / unit || total > UINT64_MAX - v * unit)
            overflow = true;
        else
            total += v * unit;
        first = false;
    } while (*s);
    if (overflow)
        return tw_conf_error(err, node, "duration %s is too long",
                             describe(node, buf, sizeof(buf)));
    *out = total;
    return 0;
bad:
    return tw_conf_error(err, node,
                         "expected a duration (500ms, 30s, 5m, 1h30m, 2d; a bare number is "
                         "seconds), got %s",
                         describe(node, buf, sizeof(buf)));
}

/* ---- the composer ------------------------------------------------------ */

typedef struct {
    tw_conf_doc_t *doc;
    tw_conf_error_t *err;
    const tw_conf_source_t *src; /* files and variables come from here */
    unsigned flags;
    bool failed;
    size_t nnodes;
    /* The include chain, outermost first: display names and real paths. */
    const char *chain_name[TW_CONF_MAX_INCLUDE + 1];
    char *chain_real[TW_CONF_MAX_INCLUDE + 1];
    size_t nchain;
} loader_t;

typedef struct {
    char *name;
    tw_conf_node_t *node;
} anchor_t;

/* An open map or list. */
typedef struct {
    tw_conf_node_t *node;   /* type, position and path are set */
    tw_conf_entry_t *ents;  /* map entries so far (malloc) */
    tw_conf_node_t **items; /* list items so far (malloc) */
    size_t n, cap;          /* of ents or items */
    tw_conf_node_t *key;    /* map: the key waiting for its value */
    bool merge_pending;     /* map: the key waiting is "<<" */
    bool has_merge;         /* map: a "<<" was seen */
    size_t merge_pos;       /* map: entries before the "<<" */
    tw_conf_node_t **msrc;  /* map: maps to merge, in priority order */
    size_t nmsrc, capmsrc;
    char *anchor; /* registered when the node is complete */
} frame_t;

typedef struct {
    loader_t *ld;
    const char *file; /* display name, in the arena */
    const char *text; /* the file's bytes, for reader error positions */
    size_t len;
    const char *base_path; /* path of the root node */
    unsigned base_depth;   /* depth of the root node */
    unsigned line, col;    /* position of the current event */
    anchor_t *anchors;
    size_t nanchors, capanchors;
    frame_t *frames;
    size_t nframes, capframes;
    tw_conf_node_t *root;
} file_t;

static int fail(file_t *f, unsigned line, unsigned col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(file_t *f, unsigned line, unsigned col, const char *path, const char *fmt, ...)
{
    if (!f->ld->failed) {
        va_list ap;
        va_start(ap, fmt);
        verror(f->ld->err, f->file, line, col, path, fmt, ap);
        va_end(ap);
        f->ld->failed = true;
    }
    return -1;
}

static int fail_oom(file_t *f)
{
    return fail(f, f->line, f->col, NULL, "out of memory (a configuration may use at most %u MiB)",
                TW_CONF_MAX_MEMORY >> 20);
}

static void *alloc(file_t *f, size_t n)
{
    void *p = tw_conf_arena_alloc(f->ld->doc->arena, n);
    if (!p)
        fail_oom(f);
    return p;
}

/* Grows a malloc'd vector to hold one more element. */
static int grow(file_t *f, void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = reallocarray(*v, ncap, size);
    if (!p)
        return fail_oom(f);
    *v = p;
    *cap = ncap;
    return 0;
}

/* Path segments: keys longer than this are shortened with "...". */
#define PATH_KEY_MAX 64

static const char *path_key(file_t *f, const char *parent, const char *key)
{
    size_t kl = strlen(key);
    int kw = kl > PATH_KEY_MAX ? PATH_KEY_MAX - 3 : (int)kl;
    const char *dots = kl > PATH_KEY_MAX ? "..." : "";
    char *p = *parent ? tw_conf_arena_printf(f->ld->doc->arena, "%s.%.*s%s", parent, kw, key, dots)
                      : tw_conf_arena_printf(f->ld->doc->arena, "%.*s%s", kw, key, dots);
    if (!p)
        fail_oom(f);
    return p;
}

static const char *path_index(file_t *f, const char *parent, size_t i)
{
    char *p = tw_conf_arena_printf(f->ld->doc->arena, "%s[%zu]", parent, i);
    if (!p)
        fail_oom(f);
    return p;
}

static tw_conf_node_t *new_node(file_t *f, tw_conf_type_t type, unsigned line, unsigned col,
                                const char *file, const char *path)
{
    if (!path)
        return NULL;
    if (++f->ld->nnodes > TW_CONF_MAX_NODES) {
        fail(f, f->line, f->col, NULL,
             "the configuration has more than %u nodes (aliases count expanded)",
             (unsigned)TW_CONF_MAX_NODES);
        return NULL;
    }
    tw_conf_node_t *n = alloc(f, sizeof(*n));
    if (!n)
        return NULL;
    n->type = type;
    n->line = line;
    n->column = col;
    n->file = file;
    n->path = path;
    n->nnodes = 1;
    return n;
}

static tw_conf_node_t *new_scalar(file_t *f, const char *text, size_t len, unsigned line,
                                  unsigned col, const char *file, const char *path)
{
    tw_conf_node_t *n = new_node(f, TW_CONF_SCALAR, line, col, file, path);
    if (!n)
        return NULL;
    char *t = tw_conf_arena_strndup(f->ld->doc->arena, text, len);
    if (!t) {
        fail_oom(f);
        return NULL;
    }
    n->u.s.text = t;
    n->u.s.len = len;
    return n;
}

static frame_t *top(file_t *f)
{
    return f->nframes ? &f->frames[f->nframes - 1] : NULL;
}

/* Depth of the node the next event creates (the root's is base_depth). */
static unsigned cur_depth(const file_t *f)
{
    return f->base_depth + (unsigned)f->nframes;
}

/* The path of the value the next event creates. */
static const char *value_path(file_t *f)
{
    frame_t *t = top(f);
    if (!t)
        return f->base_path;
    if (t->node->type == TW_CONF_LIST)
        return path_index(f, t->node->path, t->n);
    if (t->merge_pending)
        return path_key(f, t->node->path, "<<");
    return t->key->path;
}

/* True if the next event is a map key. */
static bool at_key(file_t *f)
{
    frame_t *t = top(f);
    return t && t->node->type == TW_CONF_MAP && !t->key && !t->merge_pending;
}

static int cmp_keys(const void *a, const void *b, void *arg)
{
    const tw_conf_entry_t *ents = arg;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    int c = strcmp(ents[i].key->u.s.text, ents[j].key->u.s.text);
    return c ? c : (i > j) - (i < j);
}

static uint32_t *sort_entries(file_t *f, tw_conf_entry_t *ents, size_t n)
{
    uint32_t *idx = alloc(f, n * sizeof(*idx));
    if (!idx)
        return NULL;
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    qsort_r(idx, n, sizeof(*idx), cmp_keys, ents);
    return idx;
}

/* A deep copy of src whose root gets path (an alias or a merged value). */
static tw_conf_node_t *copy_tree(file_t *f, const tw_conf_node_t *src, const char *path)
{
    tw_conf_node_t *n = new_node(f, src->type, src->line, src->column, src->file, path);
    if (!n)
        return NULL;
    n->height = src->height;
    n->nnodes = src->nnodes;
    if (src->type == TW_CONF_SCALAR) {
        n->u.s = src->u.s; /* text is immutable: share it */
    } else if (src->type == TW_CONF_LIST) {
        n->u.l.n = src->u.l.n;
        n->u.l.items = alloc(f, src->u.l.n * sizeof(*n->u.l.items));
        if (!n->u.l.items)
            return NULL;
        for (size_t i = 0; i < src->u.l.n; i++) {
            n->u.l.items[i] = copy_tree(f, src->u.l.items[i], path_index(f, path, i));
            if (!n->u.l.items[i])
                return NULL;
        }
    } else {
        n->u.m.n = src->u.m.n;
        n->u.m.sorted = src->u.m.sorted; /* same keys, same order */
        n->u.m.ents = alloc(f, src->u.m.n * sizeof(*n->u.m.ents));
        if (!n->u.m.ents)
            return NULL;
        for (size_t i = 0; i < src->u.m.n; i++) {
            const tw_conf_entry_t *e = &src->u.m.ents[i];
            const char *kp = path_key(f, path, e->key->u.s.text);
            tw_conf_node_t *k =
                new_node(f, TW_CONF_SCALAR, e->key->line, e->key->column, e->key->file, kp);
            if (!k)
                return NULL;
            k->u.s = e->key->u.s;
            n->u.m.ents[i].key = k;
            n->u.m.ents[i].value = copy_tree(f, e->value, kp);
            if (!n->u.m.ents[i].value)
                return NULL;
        }
    }
    return n;
}

static int add_merge_source(file_t *f, frame_t *t, tw_conf_node_t *src)
{
    if (grow(f, (void **)&t->msrc, &t->capmsrc, t->nmsrc, sizeof(*t->msrc)))
        return -1;
    t->msrc[t->nmsrc++] = src;
    return 0;
}

/* Puts a complete node where the parser is: the root, a list item, a map
 * key's value or a merge source. */
static int attach(file_t *f, tw_conf_node_t *node)
{
    frame_t *t = top(f);
    if (!t) {
        f->root = node;
        return 0;
    }
    if (t->node->type == TW_CONF_LIST) {
        if (grow(f, (void **)&t->items, &t->cap, t->n, sizeof(*t->items)))
            return -1;
        t->items[t->n++] = node;
        return 0;
    }
    if (t->merge_pending) {
        t->merge_pending = false;
        if (node->type == TW_CONF_MAP)
            return add_merge_source(f, t, node);
        if (node->type == TW_CONF_LIST) {
            for (size_t i = 0; i < node->u.l.n; i++) {
                if (node->u.l.items[i]->type != TW_CONF_MAP)
                    goto bad_merge;
                if (add_merge_source(f, t, node->u.l.items[i]))
                    return -1;
            }
            return 0;
        }
    bad_merge:
        return fail(f, node->line, node->column, node->path,
                    "'<<' merges maps: expected a map or a list of maps (e.g. <<: *defaults)");
    }
    if (grow(f, (void **)&t->ents, &t->cap, t->n, sizeof(*t->ents)))
        return -1;
    t->ents[t->n].key = t->key;
    t->ents[t->n].value = node;
    t->n++;
    t->key = NULL;
    return 0;
}

static int add_anchor(file_t *f, const char *name, tw_conf_node_t *node)
{
    if (grow(f, (void **)&f->anchors, &f->capanchors, f->nanchors, sizeof(*f->anchors)))
        return -1;
    char *copy = strdup(name);
    if (!copy)
        return fail_oom(f);
    f->anchors[f->nanchors].name = copy;
    f->anchors[f->nanchors].node = node;
    f->nanchors++;
    return 0;
}

static tw_conf_node_t *find_anchor(file_t *f, const char *name)
{
    /* A redefined anchor means its latest definition (YAML 1.2). */
    for (size_t i = f->nanchors; i-- > 0;)
        if (strcmp(f->anchors[i].name, name) == 0)
            return f->anchors[i].node;
    return NULL;
}

/* True for tags that change nothing for us (!!str, !!map...). */
static bool core_tag(const char *tag)
{
    return strncmp(tag, "tag:yaml.org,2002:", 18) == 0;
}

static bool is_null(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* Replaces ${VAR}, ${VAR:-default} and $$ in text (see config.h) into a
 * malloc'd buffer *out. */
static int substitute(file_t *f, const char *text, size_t len, const char *path, char **out,
                      size_t *outlen)
{
    size_t cap = len + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return fail_oom(f);
    for (size_t i = 0; i < len;) {
        const char *piece = text + i;
        size_t plen = 1;
        if (text[i] == '$' && i + 1 < len && text[i + 1] == '$') {
            i += 2;
        } else if (text[i] == '$' && i + 1 < len && text[i + 1] == '{') {
            const char *start = text + i + 2, *end = memchr(start, '}', len - i - 2);
            if (!end) {
                free(buf);
                return fail(f, f->line, f->col, path,
                            "unterminated '${' (write $$ for a literal '$')");
            }
            const char *name_end = start;
            while (name_end < end && (isalnum((unsigned char)*name_end) || *name_end == '_'))
                name_end++;
            size_t nlen = (size_t)(name_end - start);
            bool has_default = end - name_end >= 2 && name_end[0] == ':' && name_end[1] == '-';
            if (nlen == 0 || nlen > 255 || isdigit((unsigned char)*start) ||
                (name_end != end && !has_default)) {
                free(buf);
                return fail(f, f->line, f->col, path,
                            "bad variable reference '${%.*s}': expected ${NAME} or "
                            "${NAME:-default} (write $$ for a literal '$')",
                            (int)(end - start > 64 ? 64 : end - start), start);
            }
            char name[256];
            memcpy(name, start, nlen);
            name[nlen] = '\0';
            const char *v = f->ld->src->getenv(f->ld->src->ctx, name);
            if (has_default && (!v || !*v)) {
                piece = name_end + 2;
                plen = (size_t)(end - piece);
            } else if (v) {
                piece = v;
                plen = strlen(v);
            } else {
                free(buf);
                return fail(f, f->line, f->col, path,
                            "environment variable %s is not set (write ${%s:-default} to give "
                            "a default)",
                            name, name);
            }
            i = (size_t)(end - text) + 1;
        } else {
            i++;
        }
        /* Checked for every piece, not only when the buffer grows: it
         * doubles, so it may already hold up to twice the limit. */
        if (plen > TW_CONF_MAX_VALUE - n) {
            free(buf);
            return fail(f, f->line, f->col, path,
                        "value longer than %u MiB after ${VAR} substitution",
                        TW_CONF_MAX_VALUE >> 20);
        }
        if (n + plen + 1 > cap) {
            while (n + plen + 1 > cap)
                cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return fail_oom(f);
            }
            buf = nb;
        }
        memcpy(buf + n, piece, plen);
        n += plen;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

/* Reads a whole regular file into a malloc'd buffer. O_NONBLOCK: opening
 * a FIFO (or some devices) blocks until a writer comes — `twister -t`, a
 * reload in the master and `-s reload` would all hang; with it the open
 * returns at once and fstat refuses anything but a regular file, for
 * which the flag changes nothing. */
static int fs_read(void *ctx, const char *path, char **text, size_t *len, const char **why)
{
    (void)ctx;
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        *why = S_ISDIR(st.st_mode)    ? "a directory, not a regular file"
               : S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file"
               : S_ISSOCK(st.st_mode) ? "a socket, not a regular file"
                                      : "a device, not a regular file";
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > TW_CONF_MAX_FILE) {
        *why = "file too large (a config file may have at most 16 MiB)";
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        *why = strerror(ENOMEM);
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *why = strerror(errno);
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) { /* the file grew while we read it */
            *why = "file changed while being read";
            free(buf);
            close(fd);
            return -1;
        }
    }
    close(fd);
    *text = buf;
    *len = n;
    return 0;
}

static const char *fs_getenv(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

static char *fs_identity(void *ctx, const char *path)
{
    (void)ctx;
    return realpath(path, NULL);
}

static const tw_conf_source_t fs_source = {
    .read = fs_read,
    .getenv = fs_getenv,
    .identity = fs_identity,
};

/* The name under which a file takes part in cycle detection: the
 * source's identity, else the path itself. NULL on ENOMEM. */
static char *identity_of(const tw_conf_source_t *src, const char *path)
{
    char *id = src->identity ? src->identity(src->ctx, path) : NULL;
    return id ? id : strdup(path);
}

/* "dir/of/file.yaml" → "dir/of"; NULL when file has no directory part. */
static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash)
        return NULL;
    if (slash == file)
        return strdup("/");
    return strndup(file, (size_t)(slash - file));
}

static int parse_file(loader_t *ld, const char *name, const char *text, size_t len,
                      const char *base_path, unsigned base_depth, tw_conf_node_t **root);

/* The node for `!include name`: the root of that file. */
static tw_conf_node_t *include(file_t *f, const char *name, unsigned line, unsigned col,
                               const char *path)
{
    loader_t *ld = f->ld;
    if (ld->flags & TW_CONF_NO_INCLUDE) {
        fail(f, line, col, path, "!include is not allowed here");
        return NULL;
    }
    if (!*name) {
        fail(f, line, col, path, "!include needs a file name");
        return NULL;
    }
    if (ld->nchain > TW_CONF_MAX_INCLUDE) {
        fail(f, line, col, path, "!include nested more than %d files deep", TW_CONF_MAX_INCLUDE);
        return NULL;
    }
    char *dir = name[0] == '/' ? NULL : dir_of(f->file);
    char *display = dir ? tw_conf_arena_printf(ld->doc->arena, "%s/%s", dir, name)
                        : tw_conf_arena_strndup(ld->doc->arena, name, strlen(name));
    free(dir);
    if (!display) {
        fail_oom(f);
        return NULL;
    }
    char *text;
    size_t len;
    const char *why;
    if (ld->src->read(ld->src->ctx, display, &text, &len, &why) < 0) {
        fail(f, line, col, path, "cannot include %s: %s", display, why);
        return NULL;
    }
    if (len > TW_CONF_MAX_FILE) { /* the file system's reader checks it first */
        free(text);
        fail(f, line, col, path,
             "cannot include %s: file too large (a config file may have at "
             "most 16 MiB)",
             display);
        return NULL;
    }
    char *real = identity_of(ld->src, display);
    if (!real) {
        free(text);
        fail_oom(f);
        return NULL;
    }
    for (size_t i = 0; i < ld->nchain; i++) {
        if (strcmp(ld->chain_real[i], real) != 0)
            continue;
        char chain[768];
        size_t n = 0;
        for (size_t j = i; j < ld->nchain && n < sizeof(chain); j++) {
            int w = snprintf(chain + n, sizeof(chain) - n, "%s -> ", ld->chain_name[j]);
            n += w < 0 ? 0 : (size_t)w;
        }
        if (n < sizeof(chain))
            snprintf(chain + n, sizeof(chain) - n, "%s", display);
        free(real);
        free(text);
        fail(f, line, col, path, "!include cycle: %s", chain);
        return NULL;
    }
    ld->chain_name[ld->nchain] = display;
    ld->chain_real[ld->nchain] = real;
    ld->nchain++;
    tw_conf_node_t *root = NULL;
    parse_file(ld, display, text, len, path, cur_depth(f), &root);
    ld->nchain--;
    free(real);
    free(text);
    return root;
}

static int on_scalar(file_t *f, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    const char *anchor = (const char *)ev->data.scalar.anchor;

    if (at_key(f)) {
        frame_t *t = top(f);
        if (tag && !core_tag(tag))
            return fail(f, f->line, f->col, t->node->path, "a map key cannot have a tag (%s)", tag);
        if (plain && len == 2 && memcmp(text, "<<", 2) == 0 && !anchor) {
            if (t->has_merge)
                return fail(f, f->line, f->col, t->node->path,
                            "duplicate key '<<' (merge several maps with <<: [*a, *b])");
            t->merge_pending = t->has_merge = true;
            t->merge_pos = t->n;
            return 0;
        }
        if ((plain && is_null(text, len)) || len == 0)
            return fail(f, f->line, f->col, t->node->path, "empty map key");
        if (memchr(text, '\0', len))
            return fail(f, f->line, f->col, t->node->path, "a map key contains a NUL byte");
        const char *kp = path_key(f, t->node->path, text);
        tw_conf_node_t *key = new_scalar(f, text, len, f->line, f->col, f->file, kp);
        if (!key)
            return -1;
        t->key = key;
        return anchor ? add_anchor(f, anchor, key) : 0;
    }

    const char *path = value_path(f);
    if (!path)
        return -1;
    if (memchr(text, '\0', len))
        return fail(f, f->line, f->col, path, "a value contains a NUL byte");
    tw_conf_node_t *node;
    if (tag && strcmp(tag, "!include") == 0) {
        char *name;
        size_t nlen;
        if (substitute(f, text, len, path, &name, &nlen))
            return -1;
        node = include(f, name, f->line, f->col, path);
        free(name);
    } else if (tag && !core_tag(tag)) {
        return fail(f, f->line, f->col, path, "unknown tag %s (Twister knows only !include)", tag);
    } else if (plain && !tag && is_null(text, len)) {
        node = new_scalar(f, "", 0, f->line, f->col, f->file, path);
    } else {
        char *value;
        size_t vlen;
        if (substitute(f, text, len, path, &value, &vlen))
            return -1;
        node = new_scalar(f, value, vlen, f->line, f->col, f->file, path);
        free(value);
    }
    if (!node)
        return -1;
    if (anchor && add_anchor(f, anchor, node))
        return -1;
    return attach(f, node);
}

static int on_alias(file_t *f, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    tw_conf_node_t *src = find_anchor(f, name);
    frame_t *t = top(f);
    if (at_key(f))
        return fail(f, f->line, f->col, t->node->path, "an alias cannot be a map key");
    const char *where = value_path(f);
    if (!where)
        return -1;
    if (!src)
        return fail(f, f->line, f->col, where,
                    "unknown alias *%s (an anchor must be complete before it is used)", name);
    if (t && t->merge_pending) {
        /* Merged entries are copied when the map is complete: no need to
         * copy the sources here too. */
        t->merge_pending = false;
        if (src->type == TW_CONF_MAP)
            return add_merge_source(f, t, src);
        for (size_t i = 0; src->type == TW_CONF_LIST && i < src->u.l.n; i++)
            if (src->u.l.items[i]->type != TW_CONF_MAP)
                goto bad_merge;
        for (size_t i = 0; src->type == TW_CONF_LIST && i < src->u.l.n; i++)
            if (add_merge_source(f, t, src->u.l.items[i]))
                return -1;
        if (src->type == TW_CONF_LIST)
            return 0;
    bad_merge:
        return fail(f, f->line, f->col, where,
                    "'<<' merges maps: *%s is not a map or a list of maps", name);
    }
    if (f->ld->nnodes + src->nnodes > TW_CONF_MAX_NODES)
        return fail(f, f->line, f->col, where,
                    "alias *%s would grow the configuration past %u nodes", name,
                    (unsigned)TW_CONF_MAX_NODES);
    if (cur_depth(f) + src->height > TW_CONF_MAX_DEPTH)
        return fail(f, f->line, f->col, where, "alias *%s nests deeper than %d levels", name,
                    TW_CONF_MAX_DEPTH);
    tw_conf_node_t *copy = copy_tree(f, src, where);
    return copy ? attach(f, copy) : -1;
}

static int on_start(file_t *f, const yaml_event_t *ev, tw_conf_type_t type)
{
    const char *tag, *anchor;
    if (type == TW_CONF_MAP) {
        tag = (const char *)ev->data.mapping_start.tag;
        anchor = (const char *)ev->data.mapping_start.anchor;
    } else {
        tag = (const char *)ev->data.sequence_start.tag;
        anchor = (const char *)ev->data.sequence_start.anchor;
    }
    frame_t *t = top(f);
    const char *where = t ? t->node->path : f->base_path;
    if (at_key(f))
        return fail(f, f->line, f->col, where, "a map key must be a scalar");
    if (cur_depth(f) + 1 > TW_CONF_MAX_DEPTH)
        return fail(f, f->line, f->col, where, "nested deeper than %d levels", TW_CONF_MAX_DEPTH);
    if (tag && strcmp(tag, "!include") == 0)
        return fail(f, f->line, f->col, where, "!include takes a file name, not a %s",
                    type == TW_CONF_MAP ? "map" : "list");
    if (tag && !core_tag(tag))
        return fail(f, f->line, f->col, where, "unknown tag %s (Twister knows only !include)", tag);
    tw_conf_node_t *node = new_node(f, type, f->line, f->col, f->file, value_path(f));
    if (!node)
        return -1;
    char *a = NULL;
    if (anchor && !(a = strdup(anchor)))
        return fail_oom(f);
    if (grow(f, (void **)&f->frames, &f->capframes, f->nframes, sizeof(*f->frames))) {
        free(a);
        return -1;
    }
    frame_t *nf = &f->frames[f->nframes++];
    memset(nf, 0, sizeof(*nf));
    nf->node = node;
    nf->anchor = a;
    return 0;
}

static void frame_free(frame_t *fr)
{
    free(fr->ents);
    free(fr->items);
    free(fr->msrc);
    free(fr->anchor);
}

/* Completes a map: duplicate keys, then `<<` merges, then the index. */
static int finish_map(file_t *f, frame_t *fr)
{
    tw_conf_node_t *m = fr->node;
    uint32_t *idx = sort_entries(f, fr->ents, fr->n);
    if (!idx)
        return -1;
    /* Duplicates are adjacent in key order (ties in document order);
     * report the one that comes first in the document. */
    size_t dup = SIZE_MAX, first = 0;
    for (size_t i = 1; i < fr->n; i++) {
        size_t a = idx[i - 1], b = idx[i];
        if (strcmp(fr->ents[a].key->u.s.text, fr->ents[b].key->u.s.text) != 0)
            continue;
        if (dup == SIZE_MAX || b < dup) {
            dup = b;
            size_t g = i - 1; /* the group's first, i.e. the first definition */
            while (g > 0 &&
                   strcmp(fr->ents[idx[g - 1]].key->u.s.text, fr->ents[b].key->u.s.text) == 0)
                g--;
            first = idx[g];
        }
    }
    if (dup != SIZE_MAX) {
        const tw_conf_node_t *k = fr->ents[dup].key, *k0 = fr->ents[first].key;
        return fail(f, k->line, k->column, k->path, "duplicate key '%s' (first at line %u)",
                    k->u.s.text, k0->line);
    }

    tw_conf_entry_t *ents = fr->ents;
    size_t n = fr->n;
    tw_conf_entry_t *merged = NULL; /* malloc'd, freed below */
    if (fr->nmsrc) {
        /* Explicit keys win over merged ones; among merged maps, earlier
         * ones win (YAML merge key semantics). Merged entries take the
         * place of the "<<" in document order. */
        size_t nm = 0, capm = 0, nindexed = 0;
        uint32_t *midx = NULL;
        tw_conf_node_t mine = {.type = TW_CONF_MAP}, prev = {.type = TW_CONF_MAP};
        mine.u.m.ents = fr->ents;
        mine.u.m.sorted = idx;
        mine.u.m.n = fr->n;
        for (size_t s = 0; s < fr->nmsrc; s++) {
            const tw_conf_node_t *src = fr->msrc[s];
            /* A source has no duplicate keys of its own, so its entries
             * only need checking against the map's own keys and what
             * earlier sources added. */
            prev.u.m.sorted = midx;
            prev.u.m.n = nindexed;
            for (size_t i = 0; i < src->u.m.n; i++) {
                const tw_conf_entry_t *e = &src->u.m.ents[i];
                prev.u.m.ents = merged; /* grow() may have moved it */
                if (map_find(&mine, e->key->u.s.text) >= 0 ||
                    (nindexed && map_find(&prev, e->key->u.s.text) >= 0))
                    continue;
                if (f->ld->nnodes + 1 + e->value->nnodes > TW_CONF_MAX_NODES) {
                    free(merged);
                    return fail(f, m->line, m->column, m->path,
                                "'<<' would grow the configuration past %u nodes",
                                (unsigned)TW_CONF_MAX_NODES);
                }
                if (grow(f, (void **)&merged, &capm, nm, sizeof(*merged))) {
                    free(merged);
                    return -1;
                }
                const char *kp = path_key(f, m->path, e->key->u.s.text);
                tw_conf_node_t *k =
                    new_node(f, TW_CONF_SCALAR, e->key->line, e->key->column, e->key->file, kp);
                tw_conf_node_t *v = k ? copy_tree(f, e->value, kp) : NULL;
                if (!v) {
                    free(merged);
                    return -1;
                }
                k->u.s = e->key->u.s;
                merged[nm].key = k;
                merged[nm].value = v;
                nm++;
            }
            midx = sort_entries(f, merged, nm);
            if (!midx) {
                free(merged);
                return -1;
            }
            nindexed = nm;
        }
        ents = alloc(f, (fr->n + nm) * sizeof(*ents));
        if (!ents) {
            free(merged);
            return -1;
        }
        /* fr->ents and merged are NULL when empty: no memcpy from NULL. */
        if (fr->merge_pos)
            memcpy(ents, fr->ents, fr->merge_pos * sizeof(*ents));
        if (nm)
            memcpy(ents + fr->merge_pos, merged, nm * sizeof(*ents));
        if (fr->n > fr->merge_pos)
            memcpy(ents + fr->merge_pos + nm, fr->ents + fr->merge_pos,
                   (fr->n - fr->merge_pos) * sizeof(*ents));
        n = fr->n + nm;
        free(merged);
        idx = sort_entries(f, ents, n);
        if (!idx)
            return -1;
    } else {
        tw_conf_entry_t *copy = alloc(f, n * sizeof(*copy));
        if (!copy)
            return -1;
        if (n)
            memcpy(copy, ents, n * sizeof(*copy));
        ents = copy;
    }
    m->u.m.ents = ents;
    m->u.m.sorted = idx;
    m->u.m.n = n;
    m->height = 1;
    for (size_t i = 0; i < n; i++) {
        m->nnodes += 1 + ents[i].value->nnodes;
        if (ents[i].value->height + 1 > m->height)
            m->height = ents[i].value->height + 1;
    }
    return 0;
}

static int on_end(file_t *f)
{
    frame_t fr = f->frames[--f->nframes];
    tw_conf_node_t *node = fr.node;
    int rc = 0;
    if (node->type == TW_CONF_MAP) {
        rc = finish_map(f, &fr);
    } else {
        node->u.l.items = alloc(f, fr.n * sizeof(*node->u.l.items));
        if (!node->u.l.items) {
            rc = -1;
        } else {
            if (fr.n)
                memcpy(node->u.l.items, fr.items, fr.n * sizeof(*fr.items));
            node->u.l.n = fr.n;
            node->height = 1;
            for (size_t i = 0; i < fr.n; i++) {
                node->nnodes += fr.items[i]->nnodes;
                if (fr.items[i]->height + 1 > node->height)
                    node->height = fr.items[i]->height + 1;
            }
        }
    }
    if (!rc && fr.anchor)
        rc = add_anchor(f, fr.anchor, node);
    frame_free(&fr);
    return rc ? -1 : attach(f, node);
}

/* Turns a libyaml error into "file:line:col: problem (context)". */
static int syntax_error(file_t *f, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return fail_oom(f);
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        unsigned line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < f->len; i++) {
            if (f->text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value != -1)
            return fail(f, line, col, NULL, "%s (byte 0x%02X)", p->problem, p->problem_value);
        return fail(f, line, col, NULL, "%s", p->problem ? p->problem : "invalid input");
    }
    unsigned line = (unsigned)p->problem_mark.line + 1, col = (unsigned)p->problem_mark.column + 1;
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->problem_mark.index < f->len && f->text[p->problem_mark.index] == '\t')
        return fail(f, line, col, NULL, "%s: a tab (YAML indents with spaces only)", problem);
    if (p->context)
        return fail(f, line, col, NULL, "%s (%s at line %u column %u)", problem, p->context,
                    (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    return fail(f, line, col, NULL, "%s", problem);
}

static int parse_file(loader_t *ld, const char *name, const char *text, size_t len,
                      const char *base_path, unsigned base_depth, tw_conf_node_t **root)
{
    file_t f = {
        .ld = ld,
        .text = text,
        .len = len,
        .base_path = base_path,
        .base_depth = base_depth,
    };
    f.file = tw_conf_arena_strndup(ld->doc->arena, name, strlen(name));
    if (!f.file) {
        f.file = name;
        return fail_oom(&f);
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return fail_oom(&f);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0, ndocs = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(&f, &p);
            break;
        }
        f.line = (unsigned)ev.start_mark.line + 1;
        f.col = (unsigned)ev.start_mark.column + 1;
        yaml_event_type_t type = ev.type;
        switch (type) {
        case YAML_DOCUMENT_START_EVENT:
            if (ndocs++)
                rc = fail(&f, f.line, f.col, NULL,
                          "a config file holds one YAML document; this is a second one");
            break;
        case YAML_SCALAR_EVENT:
            rc = on_scalar(&f, &ev);
            break;
        case YAML_ALIAS_EVENT:
            rc = on_alias(&f, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = on_start(&f, &ev, TW_CONF_LIST);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = on_start(&f, &ev, TW_CONF_MAP);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            rc = on_end(&f);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    for (size_t i = 0; i < f.nframes; i++)
        frame_free(&f.frames[i]);
    free(f.frames);
    for (size_t i = 0; i < f.nanchors; i++)
        free(f.anchors[i].name);
    free(f.anchors);
    if (rc || ld->failed)
        return -1;
    if (!f.root) /* an empty file: the empty scalar */
        f.root = new_scalar(&f, "", 0, 1, 1, f.file, base_path);
    *root = f.root;
    return f.root ? 0 : -1;
}

static tw_conf_doc_t *load(const char *name, const char *text, size_t len, unsigned flags,
                           const tw_conf_source_t *src, tw_conf_error_t *err)
{
    tw_conf_doc_t *doc = calloc(1, sizeof(*doc));
    tw_conf_arena_t *arena = tw_conf_arena_new();
    if (!doc || !arena) {
        free(doc);
        tw_conf_arena_free(arena);
        if (err)
            snprintf(err->message, sizeof(err->message), "%s: out of memory", name);
        return NULL;
    }
    arena->limit = TW_CONF_MAX_MEMORY;
    doc->arena = arena;
    loader_t ld = {.doc = doc, .err = err, .src = src, .flags = flags};
    ld.chain_name[0] = name;
    ld.chain_real[0] = identity_of(src, name);
    ld.nchain = 1;
    tw_conf_node_t *root = NULL;
    int rc = ld.chain_real[0] ? parse_file(&ld, name, text, len, "", 0, &root) : -1;
    free(ld.chain_real[0]);
    doc->name = tw_conf_arena_strndup(arena, name, strlen(name));
    if (rc || !doc->name) {
        if (!ld.failed && err)
            snprintf(err->message, sizeof(err->message), "%s: out of memory", name);
        tw_conf_doc_free(doc);
        return NULL;
    }
    doc->root = root;
    return doc;
}

tw_conf_doc_t *tw_conf_load_source(const char *path, const tw_conf_source_t *src,
                                   tw_conf_error_t *err)
{
    if (!src)
        src = &fs_source;
    char *text;
    size_t len;
    const char *why;
    if (src->read(src->ctx, path, &text, &len, &why) < 0) {
        if (err)
            snprintf(err->message, sizeof(err->message), "%s: cannot read: %s", path, why);
        return NULL;
    }
    tw_conf_doc_t *doc = tw_conf_load_string_source(path, text, len, 0, src, err);
    free(text);
    return doc;
}

tw_conf_doc_t *tw_conf_load(const char *path, tw_conf_error_t *err)
{
    return tw_conf_load_source(path, NULL, err);
}

tw_conf_doc_t *tw_conf_load_string_source(const char *name, const char *text, size_t len,
                                          unsigned flags, const tw_conf_source_t *src,
                                          tw_conf_error_t *err)
{
    if (len > TW_CONF_MAX_FILE) {
        if (err)
            snprintf(err->message, sizeof(err->message),
                     "%s: too large (a config file may have at most 16 MiB)", name);
        return NULL;
    }
    return load(name, text, len, flags, src ? src : &fs_source, err);
}

tw_conf_doc_t *tw_conf_load_string_ex(const char *name, const char *text, size_t len,
                                      unsigned flags, tw_conf_error_t *err)
{
    return tw_conf_load_string_source(name, text, len, flags, NULL, err);
}

tw_conf_doc_t *tw_conf_load_string(const char *name, const char *text, size_t len,
                                   tw_conf_error_t *err)
{
    return tw_conf_load_string_ex(name, text, len, 0, err);
}

const tw_conf_node_t *tw_conf_root(const tw_conf_doc_t *doc)
{
    return doc->root;
}

const char *tw_conf_doc_name(const tw_conf_doc_t *doc)
{
    return doc->name;
}

void tw_conf_doc_free(tw_conf_doc_t *doc)
{
    if (!doc)
        return;
    tw_conf_arena_free(doc->arena);
    free(doc);
}

/* ---- dump -------------------------------------------------------------- */

/* Emits text so that loading it back gives text again: a '$' that the
 * loader would read as the start of "$$" or "${" is doubled. */
static int emit_scalar(yaml_emitter_t *e, const char *text, size_t len, bool key)
{
    size_t extra = 0;
    if (!key)
        for (size_t i = 0; i + 1 < len; i++)
            extra += text[i] == '$' && (text[i + 1] == '$' || text[i + 1] == '{');
    char *buf = NULL;
    const char *out = text;
    if (extra) {
        buf = malloc(len + extra + 1);
        if (!buf)
            return -1;
        size_t n = 0;
        for (size_t i = 0; i < len; i++) {
            buf[n++] = text[i];
            if (text[i] == '$' && i + 1 < len && (text[i + 1] == '$' || text[i + 1] == '{'))
                buf[n++] = '$';
        }
        out = buf;
        len = n;
    }
    /* A key spelled "<<" must not turn into a merge when read back. */
    yaml_scalar_style_t style = key && len == 2 && memcmp(out, "<<", 2) == 0
                                    ? YAML_SINGLE_QUOTED_SCALAR_STYLE
                                    : YAML_ANY_SCALAR_STYLE;
    yaml_event_t ev;
    int ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)(uintptr_t)out, (int)len,
                                          1, 1, style) &&
             yaml_emitter_emit(e, &ev);
    free(buf);
    return ok ? 0 : -1;
}

static int emit_node(yaml_emitter_t *e, const tw_conf_node_t *node)
{
    yaml_event_t ev;
    if (node->type == TW_CONF_SCALAR)
        return emit_scalar(e, node->u.s.text, node->u.s.len, false);
    if (node->type == TW_CONF_LIST) {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_ANY_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        for (size_t i = 0; i < node->u.l.n; i++)
            if (emit_node(e, node->u.l.items[i]))
                return -1;
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) ? 0 : -1;
    }
    if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_ANY_MAPPING_STYLE) ||
        !yaml_emitter_emit(e, &ev))
        return -1;
    for (size_t i = 0; i < node->u.m.n; i++) {
        const tw_conf_node_t *k = node->u.m.ents[i].key;
        if (emit_scalar(e, k->u.s.text, k->u.s.len, true) || emit_node(e, node->u.m.ents[i].value))
            return -1;
    }
    return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) ? 0 : -1;
}

int tw_conf_dump(const tw_conf_node_t *node, FILE *out)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&e))
        return -1;
    yaml_emitter_set_output_file(&e, out);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);
    int rc = -1;
    if (yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev) &&
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
        yaml_emitter_emit(&e, &ev) && emit_node(&e, node) == 0 &&
        yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
        yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev) &&
        yaml_emitter_flush(&e))
        rc = 0;
    yaml_emitter_delete(&e);
    return rc == 0 && !ferror(out) ? 0 : -1;
}
