/* settings.c — the Twister schema: from the config tree to tw_settings_t.
 *
 * Every value is checked where it is read, and every error names the node
 * (file:line:col: path: what was expected). Keys are read in schema order,
 * not document order, so the first error reported is the first in schema
 * order. Module sections cannot be validated until the modules are loaded
 * (a module's name is in its descriptor), so they are recorded here and
 * checked by tw_settings_check_modules(); but a key that is not a module
 * we know of and looks like a typo of a core key ("worker:") is reported
 * right away, with its suggestion, so `twister -t` catches it without
 * loading anything. */
#include "settings.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

/* ---- schema ------------------------------------------------------------ */

static const char *const root_keys[] = {
    "workers",
    "user",
    "pid_file",
    "error_log",
    "log_level",
    "module_dir",
    "modules",
    "limits",
    "timeouts",
    "crash_policy",
    "worker_connections",
    "backlog",
    "max_draining_generations",
    "reload",
    "min_body_rate",
    "shared_zones",
    "server_tokens",
    "server_header",
    "servers",
    NULL,
};
static const char *const crash_policy_keys[] = {"max", "within", "action", NULL};
static const char *const limit_keys[] = {"request_line", "header_size", "headers", "body", NULL};
static const char *const timeout_keys[] = {"header",   "body",      "send", "keepalive",
                                           "shutdown", "configure", NULL};
static const char *const server_keys[] = {"listen", "server_names", "routes", "tls", NULL};
static const char *const route_keys[] = {"path",   "prefix",  "regex", "methods", "handler",
                                         "limits", "satisfy", "drain", NULL};
static const char *const route_limit_keys[] = {"body", NULL};
static const char *const route_drain_keys[] = {"keep", NULL};
static const char *const reload_keys[] = {"handoff", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

#define N_ROOT_KEYS (sizeof(root_keys) / sizeof(root_keys[0]) - 1)
#define N_ROUTE_KEYS (sizeof(route_keys) / sizeof(route_keys[0]) - 1)

/* Defaults (see settings.h). */
#define DEF_REQUEST_LINE (8u << 10)
#define DEF_HEADER_SIZE (32u << 10)
#define DEF_HEADERS 100
#define DEF_BODY (1u << 20)
#define MIN_HEAD 256u
#define MAX_HEAD (16u << 20)

/* ---- helpers ----------------------------------------------------------- */

typedef struct {
    tw_settings_t *s;
    tw_conf_error_t *err;
} ctx_t;

static int oom(ctx_t *c, const tw_conf_node_t *node)
{
    return tw_conf_error(c->err, node, "out of memory");
}

static void *zalloc(ctx_t *c, size_t n)
{
    return tw_conf_arena_alloc(c->s->arena, n);
}

static bool in_list(const char *word, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(word, *list) == 0)
            return true;
    return false;
}

/* A scalar or a list of scalars, as a list: *items and *n. */
static int scalar_list(ctx_t *c, const tw_conf_node_t *node, const char *what,
                       const tw_conf_node_t ***items, size_t *n)
{
    if (tw_conf_type(node) == TW_CONF_MAP)
        return tw_conf_error(c->err, node, "expected %s or a list of them, got a map", what);
    if (tw_conf_type(node) == TW_CONF_SCALAR) {
        *items = zalloc(c, sizeof(**items));
        if (!*items)
            return oom(c, node);
        (*items)[0] = node;
        *n = 1;
        return 0;
    }
    *n = tw_conf_count(node);
    *items = zalloc(c, (*n ? *n : 1) * sizeof(**items));
    if (!*items)
        return oom(c, node);
    for (size_t i = 0; i < *n; i++) {
        const tw_conf_node_t *it = tw_conf_list_item(node, i);
        if (tw_conf_type(it) != TW_CONF_SCALAR)
            return tw_conf_error(c->err, it, "expected %s, got a %s", what,
                                 tw_conf_type(it) == TW_CONF_MAP ? "map" : "list");
        (*items)[i] = it;
    }
    return 0;
}

/* A non-empty string. */
static int get_nonempty(ctx_t *c, const tw_conf_node_t *node, const char *what, const char **out)
{
    if (tw_conf_get_string(node, out, c->err))
        return -1;
    if (!**out)
        return tw_conf_error(c->err, node, "expected %s, got an empty value", what);
    return 0;
}

/* path made absolute against the config dir (a leading "./" dropped). */
static const char *resolve(ctx_t *c, const tw_conf_node_t *node, const char *path)
{
    const char *r;
    if (path[0] == '/') {
        r = path;
    } else {
        while (path[0] == '.' && path[1] == '/')
            path += 2;
        r = tw_conf_arena_printf(c->s->arena, "%s/%s", c->s->config_dir, path);
    }
    if (!r)
        oom(c, node);
    return r;
}

static int get_size(ctx_t *c, const tw_conf_node_t *map, const char *key, uint64_t min,
                    uint64_t max, uint64_t *out)
{
    const tw_conf_node_t *n = tw_conf_map_get(map, key);
    if (!n)
        return 0;
    uint64_t v;
    if (tw_conf_get_size(n, &v, c->err))
        return -1;
    if (v < min || v > max)
        return tw_conf_error(c->err, n, "expected a size from %llu to %llu bytes, got '%s'",
                             (unsigned long long)min, (unsigned long long)max, tw_conf_scalar(n));
    *out = v;
    return 0;
}

static int get_int(ctx_t *c, const tw_conf_node_t *map, const char *key, long long min,
                   long long max, long long *out)
{
    const tw_conf_node_t *n = tw_conf_map_get(map, key);
    return n ? tw_conf_get_int(n, min, max, out, c->err) : 0;
}

static int get_duration(ctx_t *c, const tw_conf_node_t *map, const char *key, bool allow_zero,
                        uint64_t *out)
{
    const tw_conf_node_t *n = tw_conf_map_get(map, key);
    if (!n)
        return 0;
    uint64_t v;
    if (tw_conf_get_duration_ms(n, &v, c->err))
        return -1;
    if (!allow_zero && v == 0)
        return tw_conf_error(c->err, n, "expected a duration greater than 0");
    *out = v;
    return 0;
}

/* A key that is not a core key: a module section, unless it is no module
 * listed under `modules:` and looks like a typo of a core key. */
static int section_key(ctx_t *c, const tw_conf_node_t *key, const char *const *core, size_t ncore)
{
    const char *k = tw_conf_scalar(key);
    for (size_t i = 0; i < c->s->nmodules; i++)
        if (strcmp(k, c->s->modules[i].base) == 0)
            return 0;
    const char *s = tw_conf_suggest(k, core, ncore);
    if (s)
        return tw_conf_error(c->err, key, "unknown key '%s'; did you mean '%s'?", k, s);
    return 0;
}

/* Collects the non-core keys of map as sections. */
static int sections(ctx_t *c, const tw_conf_node_t *map, const char *const *core, size_t ncore,
                    tw_conf_section_t **out, size_t *nout)
{
    size_t n = 0, count = tw_conf_count(map);
    for (size_t i = 0; i < count; i++)
        n += !in_list(tw_conf_map_key(map, i), core);
    *nout = 0;
    *out = NULL;
    if (!n)
        return 0;
    *out = zalloc(c, n * sizeof(**out));
    if (!*out)
        return oom(c, map);
    for (size_t i = 0; i < count; i++) {
        const char *k = tw_conf_map_key(map, i);
        if (in_list(k, core))
            continue;
        const tw_conf_node_t *key = tw_conf_map_key_node(map, i);
        if (section_key(c, key, core, ncore))
            return -1;
        (*out)[*nout].name = k;
        (*out)[*nout].key = key;
        (*out)[*nout].node = tw_conf_map_value(map, i);
        (*nout)++;
    }
    return 0;
}

/* ---- listen addresses -------------------------------------------------- */

static int parse_port(const char *s, in_port_t *port)
{
    if (!*s)
        return -1;
    unsigned long v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > 65535)
            return -1;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = htons((uint16_t)v);
    return 0;
}

/* ---- regex bounds -------------------------------------------------------- */

/* A recursive descent over ERE syntax that only measures: for each piece,
 * the elements it unrolls to and the product of the repetitions around
 * it. Anything it does not understand is taken as one literal element, so
 * it can over-estimate but never miss a repetition that regcomp unrolls. */
typedef struct {
    const char *s; /* the pattern */
    size_t i;      /* the next character to read */
    char *why;     /* the caller's message buffer */
    size_t whylen;
} regex_scan_t;

/* Above every limit, so saturating here keeps the arithmetic exact
 * enough and free of overflow. */
#define REGEX_COST_CAP ((uint64_t)1 << 40)

static uint64_t cost_mul(uint64_t a, uint64_t b)
{
    return a > REGEX_COST_CAP / (b ? b : 1) ? REGEX_COST_CAP : a * b;
}

static int regex_fail(regex_scan_t *sc, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int regex_fail(regex_scan_t *sc, size_t at, const char *fmt, ...)
{
    int n = snprintf(sc->why, sc->whylen, "at character %zu: ", at + 1);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sc->whylen)
        vsnprintf(sc->why + n, sc->whylen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Skips a bracket expression starting at '['; '{' and '\' are literal
 * inside, ']' first (after an optional '^') is too, and [:class:],
 * [=equiv=], [.coll.] end with their own ":]", "=]", ".]". */
static void skip_bracket(regex_scan_t *sc)
{
    const char *s = sc->s;
    size_t i = sc->i + 1;
    if (s[i] == '^')
        i++;
    if (s[i] == ']')
        i++;
    while (s[i] && s[i] != ']') {
        if (s[i] == '[' && (s[i + 1] == ':' || s[i + 1] == '=' || s[i + 1] == '.')) {
            char kind = s[i + 1];
            const char *end = s + i + 2;
            while (*end && !(end[0] == kind && end[1] == ']'))
                end++;
            if (!*end)
                break; /* unterminated: regcomp says so */
            i = (size_t)(end - s) + 2;
            continue;
        }
        i++;
    }
    sc->i = s[i] ? i + 1 : i;
}

/* A count of a bound: digits, saturating far above any limit. */
static uint64_t bound_number(const char *s, size_t *i, bool *any)
{
    uint64_t v = 0;
    *any = false;
    while (s[*i] >= '0' && s[*i] <= '9') {
        v = v > REGEX_COST_CAP ? v : v * 10 + (uint64_t)(s[*i] - '0');
        (*i)++;
        *any = true;
    }
    return v;
}

/* The repetition factor of the quantifier at sc->i (how many copies of
 * the piece regcomp makes), advancing past it; 0 if there is none there.
 * A '{' that does not start a well-formed bound is not a quantifier. */
static int quantifier(regex_scan_t *sc, uint64_t *factor)
{
    const char *s = sc->s;
    size_t at = sc->i;
    *factor = 0;
    switch (s[at]) {
    case '*':
    case '?':
        sc->i++;
        *factor = 1;
        return 0;
    case '+': /* the piece, then a starred copy of it */
        sc->i++;
        *factor = 2;
        return 0;
    case '{':
        break;
    default:
        return 0;
    }
    size_t i = at + 1;
    bool has_min, has_max = false, comma = false;
    uint64_t min = bound_number(s, &i, &has_min), max = 0;
    if (s[i] == ',') {
        comma = true;
        i++;
        max = bound_number(s, &i, &has_max);
    }
    if (s[i] != '}' || (!has_min && !has_max))
        return 0; /* not a bound: a literal '{' (or regcomp's error) */
    sc->i = i + 1;
    uint64_t big = min > max ? min : max;
    if (big > TW_REGEX_MAX_REPEAT)
        return regex_fail(sc, at, "repetition count %llu in '%.*s' is more than %d",
                          (unsigned long long)big, (int)(i + 1 - at), s + at, TW_REGEX_MAX_REPEAT);
    /* {n,} is n copies and a starred one; {n,m} m copies; {0} still
     * parses its piece once. */
    *factor = comma && !has_max ? min + 1 : big ? big : 1;
    return 0;
}

static int scan_alternation(regex_scan_t *sc, unsigned depth, uint64_t *cost, uint64_t *product);

/* One atom and its quantifiers. */
static int scan_piece(regex_scan_t *sc, unsigned depth, uint64_t *cost, uint64_t *product)
{
    const char *s = sc->s;
    size_t at = sc->i;
    *cost = 1;
    *product = 1;
    if (s[at] == '(') {
        if (depth >= TW_REGEX_MAX_DEPTH)
            return regex_fail(sc, at, "groups nested more than %d deep", TW_REGEX_MAX_DEPTH);
        sc->i++;
        uint64_t inner, inner_product;
        if (scan_alternation(sc, depth + 1, &inner, &inner_product))
            return -1;
        if (s[sc->i] == ')')
            sc->i++;
        *cost = 1 + inner;
        *product = inner_product;
    } else if (s[at] == '[') {
        skip_bracket(sc);
    } else if (s[at] == '\\' && s[at + 1]) {
        sc->i += 2;
    } else if (s[at] == '*' || s[at] == '+' || s[at] == '?' || s[at] == '{') {
        /* Nothing to repeat: regcomp refuses it or takes it literally;
         * either way the quantifiers below apply to one element at most. */
    } else {
        sc->i++;
    }
    for (;;) {
        size_t qat = sc->i;
        uint64_t factor;
        if (quantifier(sc, &factor))
            return -1;
        if (factor == 0) {
            if (sc->i == at) /* a lone '{' that is no bound: a literal */
                sc->i++;
            return 0;
        }
        *cost = cost_mul(*cost, factor);
        *product = cost_mul(*product, factor);
        if (*product > TW_REGEX_MAX_NESTED)
            return regex_fail(sc, qat, "nested repetitions multiply to %s%llu copies; at most %d",
                              *product >= REGEX_COST_CAP ? "over " : "",
                              (unsigned long long)*product, TW_REGEX_MAX_NESTED);
    }
}

/* Branches separated by '|', up to a ')' or the end; every branch is
 * compiled, so their costs add up. */
static int scan_alternation(regex_scan_t *sc, unsigned depth, uint64_t *cost, uint64_t *product)
{
    *cost = 0;
    *product = 1;
    while (sc->s[sc->i] && !(depth > 0 && sc->s[sc->i] == ')')) {
        if (sc->s[sc->i] == '|') {
            sc->i++;
            continue;
        }
        size_t at = sc->i;
        uint64_t c, p;
        if (scan_piece(sc, depth, &c, &p))
            return -1;
        *cost = *cost + c > REGEX_COST_CAP ? REGEX_COST_CAP : *cost + c;
        if (p > *product)
            *product = p;
        if (*cost > TW_REGEX_MAX_UNROLLED)
            return regex_fail(sc, at,
                              "the pattern unrolls to more than %d elements (a repetition "
                              "copies what it repeats)",
                              TW_REGEX_MAX_UNROLLED);
    }
    return 0;
}

int tw_settings_check_regex(const char *pattern, char *why, size_t whylen)
{
    regex_scan_t sc = {.s = pattern, .why = why, .whylen = whylen};
    uint64_t cost, product;
    if (whylen)
        why[0] = '\0';
    /* At depth 0 a ')' with no '(' is a literal (as it is to glibc), so
     * this reads the whole pattern. */
    return scan_alternation(&sc, 0, &cost, &product);
}

int tw_settings_parse_listen(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                             const char **why)
{
    memset(addr, 0, sizeof(*addr));
    struct sockaddr_in *sin = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
    char host[64];
    const char *port;
    *why = NULL;
    if (!*text) {
        *why = "empty address";
        return -1;
    }
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || (size_t)(end - text - 1) >= sizeof(host)) {
            *why = "expected [IPv6]:port";
            return -1;
        }
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        if (end[1] != ':') {
            *why = "missing :port after the IPv6 address";
            return -1;
        }
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *why = "bad IPv6 address";
            return -1;
        }
        if (parse_port(end + 2, &sin6->sin6_port)) {
            *why = "expected a port from 1 to 65535";
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        *len = sizeof(*sin6);
        return 0;
    }
    const char *colon = strrchr(text, ':');
    if (!colon) {
        port = text;
        strcpy(host, "*");
    } else {
        if (strchr(text, ':') != colon) {
            *why = "an IPv6 address needs brackets: [::1]:8080";
            return -1;
        }
        if ((size_t)(colon - text) >= sizeof(host)) {
            *why = "expected an IPv4 address";
            return -1;
        }
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    sin->sin_family = AF_INET;
    if (strcmp(host, "*") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        *why = isdigit((unsigned char)host[0]) || !host[0]
                   ? "bad IPv4 address"
                   : "expected an IP address (host names are not resolved)";
        return -1;
    }
    if (parse_port(port, &sin->sin_port)) {
        *why = colon ? "expected a port from 1 to 65535"
                     : "expected a port from 1 to 65535, "
                       "or address:port";
        return -1;
    }
    *len = sizeof(*sin);
    return 0;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* Same family and port, one of them the wildcard address: not both can
 * be bound. (0.0.0.0 and [::] can, with IPV6_V6ONLY.) */
static bool overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        bool xany = x->sin_addr.s_addr == htonl(INADDR_ANY);
        bool yany = y->sin_addr.s_addr == htonl(INADDR_ANY);
        return x->sin_port == y->sin_port && xany != yany;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) != IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr);
}

static const char *addr_text(ctx_t *c, const struct sockaddr_storage *a)
{
    char host[INET6_ADDRSTRLEN];
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a;
        inet_ntop(AF_INET, &x->sin_addr, host, sizeof(host));
        return tw_conf_arena_printf(c->s->arena, "%s:%u", host, ntohs(x->sin_port));
    }
    const struct sockaddr_in6 *x = (const void *)a;
    inet_ntop(AF_INET6, &x->sin6_addr, host, sizeof(host));
    return tw_conf_arena_printf(c->s->arena, "[%s]:%u", host, ntohs(x->sin6_port));
}

/* ---- crash_policy ---------------------------------------------------- */

/* crash_policy: { max: 5, within: 60s, action: quarantine } */
static int parse_crash_policy(ctx_t *c, const tw_conf_node_t *root)
{
    static const char *const actions[] = {"quarantine", "restart", "stop", NULL};
    tw_crash_policy_t *p = &c->s->crash_policy;
    *p = (tw_crash_policy_t){.max = 5, .within_ms = 60000, .action = TW_CRASH_QUARANTINE};
    const tw_conf_node_t *n = tw_conf_map_get(root, "crash_policy");
    if (!n)
        return 0;
    if (tw_conf_type(n) != TW_CONF_MAP)
        return tw_conf_error(c->err, n,
                             "expected a map: { max: 5, within: 60s, action: "
                             "quarantine | restart | stop }");
    long long v;
    if (tw_conf_check_keys(n, crash_policy_keys, c->err) || get_int(c, n, "max", 1, 10000, &v) ||
        get_duration(c, n, "within", false, &p->within_ms))
        return -1;
    if (tw_conf_map_get(n, "max"))
        p->max = (unsigned)v;
    const tw_conf_node_t *a = tw_conf_map_get(n, "action");
    if (!a)
        return 0;
    const char *str;
    if (tw_conf_get_string(a, &str, c->err))
        return -1;
    for (size_t i = 0; actions[i]; i++)
        if (strcmp(str, actions[i]) == 0) {
            p->action = (tw_crash_action_t)i;
            return 0;
        }
    const char *sug = tw_conf_suggest(str, actions, 3);
    return tw_conf_error(c->err, a, "expected quarantine, restart or stop, got '%s'%s%s%s", str,
                         sug ? "; did you mean '" : "", sug ? sug : "", sug ? "'?" : "");
}

/* ---- top-level settings ------------------------------------------------ */

static int parse_globals(ctx_t *c, const tw_conf_node_t *root)
{
    tw_settings_t *s = c->s;
    const tw_conf_node_t *n;
    const char *str;
    long long v;

    if ((n = tw_conf_map_get(root, "workers"))) {
        if (tw_conf_type(n) == TW_CONF_SCALAR && strcmp(tw_conf_scalar(n), "auto") == 0) {
            s->workers = 0;
        } else {
            if (tw_conf_get_int(n, 1, 256, &v, NULL)) {
                const char *t = tw_conf_scalar(n);
                return tw_conf_error(c->err, n,
                                     "expected auto or a number from 1 to 256, got %s%s%s",
                                     t ? "'" : "a ", t ? t : "collection", t ? "'" : "");
            }
            s->workers = (unsigned)v;
        }
    }
    if ((n = tw_conf_map_get(root, "user"))) {
        if (tw_conf_get_string(n, &str, c->err))
            return -1;
        s->user = *str ? str : NULL;
    }
    if ((n = tw_conf_map_get(root, "pid_file"))) {
        if (tw_conf_get_string(n, &str, c->err))
            return -1;
        s->pid_file = *str ? resolve(c, n, str) : NULL;
        if (*str && !s->pid_file)
            return -1;
    } else if (!(s->pid_file = resolve(c, root, "twister.pid"))) {
        return -1;
    }
    if ((n = tw_conf_map_get(root, "error_log"))) {
        if (get_nonempty(c, n, "stderr or a file path", &str))
            return -1;
        if (strcmp(str, "stderr") != 0 && !(s->error_log = resolve(c, n, str)))
            return -1;
    }
    if ((n = tw_conf_map_get(root, "log_level"))) {
        if (tw_conf_get_string(n, &str, c->err))
            return -1;
        size_t i;
        for (i = 0; log_levels[i] && strcmp(str, log_levels[i]) != 0; i++)
            ;
        if (!log_levels[i]) {
            const char *sug = tw_conf_suggest(str, log_levels, 4);
            return tw_conf_error(c->err, n, "expected error, warn, info or debug, got '%s'%s%s%s",
                                 str, sug ? "; did you mean '" : "", sug ? sug : "",
                                 sug ? "'?" : "");
        }
        s->log_level = (tw_log_level_t)i;
    }
    if ((n = tw_conf_map_get(root, "module_dir"))) {
        if (get_nonempty(c, n, "a directory", &str))
            return -1;
        if (!(s->module_dir = resolve(c, n, str)))
            return -1;
    }
    if (get_int(c, root, "worker_connections", 1, 1000000, &v))
        return -1;
    if (tw_conf_map_get(root, "worker_connections"))
        s->worker_connections = (unsigned)v;
    if (get_int(c, root, "backlog", 1, 65535, &v))
        return -1;
    if (tw_conf_map_get(root, "backlog"))
        s->backlog = (int)v;
    if (get_int(c, root, "max_draining_generations", 1, 64, &v))
        return -1;
    if (tw_conf_map_get(root, "max_draining_generations"))
        s->max_draining_generations = (unsigned)v;
    if ((n = tw_conf_map_get(root, "reload"))) {
        if (tw_conf_type(n) != TW_CONF_MAP)
            return tw_conf_error(c->err, n, "expected a map: { handoff: on | off }");
        const tw_conf_node_t *h = tw_conf_map_get(n, "handoff");
        if (tw_conf_check_keys(n, reload_keys, c->err) ||
            (h && tw_conf_get_bool(h, &s->reload_handoff, c->err)))
            return -1;
    }
    if (get_size(c, root, "min_body_rate", 0, UINT64_MAX, &s->min_body_rate))
        return -1;
    if (get_size(c, root, "shared_zones", 1 << 20, (uint64_t)1 << 40, &s->shared_zones))
        return -1;
    if ((n = tw_conf_map_get(root, "server_tokens")) &&
        tw_conf_get_bool(n, &s->server_tokens, c->err))
        return -1;
    if ((n = tw_conf_map_get(root, "server_header"))) {
        if (tw_conf_get_string(n, &str, c->err))
            return -1;
        for (const char *p = str; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                return tw_conf_error(c->err, n, "expected printable ASCII (it goes into a header)");
        s->server_header = *str ? str : NULL;
    }

    if ((n = tw_conf_map_get(root, "limits"))) {
        if (tw_conf_check_keys(n, limit_keys, c->err) ||
            get_size(c, n, "request_line", MIN_HEAD, MAX_HEAD, &s->limits.request_line) ||
            get_size(c, n, "header_size", MIN_HEAD, MAX_HEAD, &s->limits.header_size) ||
            get_int(c, n, "headers", 1, 100000, &v) ||
            get_size(c, n, "body", 0, UINT64_MAX, &s->limits.body))
            return -1;
        if (tw_conf_map_get(n, "headers"))
            s->limits.headers = (unsigned)v;
        if (s->limits.header_size < s->limits.request_line) {
            const tw_conf_node_t *h = tw_conf_map_get(n, "header_size");
            return tw_conf_error(c->err, h ? h : tw_conf_map_get(n, "request_line"),
                                 "header_size (%llu) must be at least request_line (%llu)",
                                 (unsigned long long)s->limits.header_size,
                                 (unsigned long long)s->limits.request_line);
        }
    }
    if ((n = tw_conf_map_get(root, "timeouts"))) {
        if (tw_conf_check_keys(n, timeout_keys, c->err) ||
            get_duration(c, n, "header", false, &s->timeouts.header_ms) ||
            get_duration(c, n, "body", false, &s->timeouts.body_ms) ||
            get_duration(c, n, "send", false, &s->timeouts.send_ms) ||
            get_duration(c, n, "keepalive", true, &s->timeouts.keepalive_ms) ||
            get_duration(c, n, "shutdown", true, &s->timeouts.shutdown_ms) ||
            get_duration(c, n, "configure", false, &s->timeouts.configure_ms))
            return -1;
    }
    return 0;
}

static int parse_modules(ctx_t *c, const tw_conf_node_t *root)
{
    tw_settings_t *s = c->s;
    const tw_conf_node_t *n = tw_conf_map_get(root, "modules"), **items;
    size_t count;
    if (!n)
        return 0;
    if (scalar_list(c, n, "a module name or path", &items, &count))
        return -1;
    s->modules = zalloc(c, (count ? count : 1) * sizeof(*s->modules));
    if (!s->modules)
        return oom(c, n);
    for (size_t i = 0; i < count; i++) {
        tw_module_entry_t *m = &s->modules[i];
        const char *name;
        if (get_nonempty(c, items[i], "a module name or path", &name))
            return -1;
        size_t len = strlen(name);
        bool is_path = strchr(name, '/') || (len > 3 && strcmp(name + len - 3, ".so") == 0);
        if (is_path) {
            m->path = resolve(c, items[i], name);
        } else {
            for (const char *p = name; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
                    return tw_conf_error(c->err, items[i],
                                         "expected a module name (letters, digits, _ and -) "
                                         "or a path to a .so, got '%s'",
                                         name);
            m->path = tw_conf_arena_printf(s->arena, "%s/%s.so", s->module_dir, name);
        }
        const char *slash = strrchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        size_t blen = strlen(base);
        if (blen > 3 && strcmp(base + blen - 3, ".so") == 0)
            blen -= 3;
        m->base = tw_conf_arena_strndup(s->arena, base, blen);
        if (!m->path || !m->base)
            return oom(c, items[i]);
        m->name = name;
        m->node = items[i];
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->modules[j].path, m->path) == 0)
                return tw_conf_error(c->err, items[i], "module %s is already listed at line %u",
                                     m->path, tw_conf_line(s->modules[j].node));
        s->nmodules = i + 1;
    }
    return 0;
}

/* ---- servers and routes ------------------------------------------------ */

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int parse_methods(ctx_t *c, tw_route_t *r, const tw_conf_node_t *node)
{
    const tw_conf_node_t **items;
    size_t n;
    if (scalar_list(c, node, "a method", &items, &n))
        return -1;
    if (n == 0)
        return tw_conf_error(c->err, node,
                             "expected at least one method (leave methods out to allow any)");
    bool get = false, head = false;
    for (size_t i = 0; i < n; i++) {
        const char *m = tw_conf_scalar(items[i]);
        bool lower = false;
        if (!*m)
            return tw_conf_error(c->err, items[i], "expected a method, got an empty value");
        for (const char *p = m; *p; p++) {
            if (!is_tchar((unsigned char)*p))
                return tw_conf_error(c->err, items[i],
                                     "'%s' is not a valid method (a token: letters, digits "
                                     "and !#$%%&'*+-.^_`|~)",
                                     m);
            lower |= islower((unsigned char)*p) != 0;
        }
        if (lower) {
            char up[64];
            size_t k;
            for (k = 0; m[k] && k < sizeof(up) - 1; k++)
                up[k] = (char)toupper((unsigned char)m[k]);
            up[k] = '\0';
            return tw_conf_error(c->err, items[i], "methods are case-sensitive; did you mean '%s'?",
                                 up);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(m, tw_conf_scalar(items[j])) == 0)
                return tw_conf_error(c->err, items[i], "method %s is listed twice", m);
        get |= strcmp(m, "GET") == 0;
        head |= strcmp(m, "HEAD") == 0;
    }
    /* Allowing GET allows HEAD (RFC 9110 9.3.2; what nginx users expect):
     * HEAD goes right after GET. */
    bool add_head = get && !head;
    const char **methods = zalloc(c, (n + 2) * sizeof(*methods));
    size_t allow_len = 1, k = 0;
    if (!methods)
        return oom(c, node);
    for (size_t i = 0; i < n; i++) {
        methods[k++] = tw_conf_scalar(items[i]);
        if (add_head && strcmp(tw_conf_scalar(items[i]), "GET") == 0)
            methods[k++] = "HEAD";
    }
    for (size_t i = 0; i < k; i++)
        allow_len += strlen(methods[i]) + 2;
    char *allow = zalloc(c, allow_len);
    if (!allow)
        return oom(c, node);
    for (size_t i = 0; i < k; i++) {
        if (i)
            strcat(allow, ", ");
        strcat(allow, methods[i]);
    }
    r->http.methods = methods;
    r->http.allow = allow;
    return 0;
}

static int parse_route(ctx_t *c, tw_server_conf_t *srv, tw_route_t *r, const tw_conf_node_t *node)
{
    static const char *const kinds[] = {"path", "prefix", "regex"};
    const tw_conf_node_t *pat = NULL, *n;
    const char *str;
    tw_match_kind_t kind = 0;
    if (tw_conf_type(node) != TW_CONF_MAP)
        return tw_conf_error(c->err, node, "expected a route (a map with path, prefix or regex)");
    for (int i = 0; i < 3; i++) {
        if (!(n = tw_conf_map_get(node, kinds[i])))
            continue;
        if (pat)
            return tw_conf_error(c->err, n,
                                 "a route has one of path, prefix or regex, not %s "
                                 "and %s",
                                 kinds[kind - 1], kinds[i]);
        pat = n;
        kind = (tw_match_kind_t)(i + 1);
    }
    if (!pat)
        return tw_conf_error(c->err, node, "a route needs one of path (exact), prefix or regex");
    if (get_nonempty(c, pat, kind == TW_MATCH_REGEX ? "a regular expression" : "a path", &str))
        return -1;
    if (kind != TW_MATCH_REGEX) {
        if (str[0] != '/')
            return tw_conf_error(c->err, pat, "expected a path starting with '/', got '%s'", str);
        if (strpbrk(str, "?#"))
            return tw_conf_error(c->err, pat,
                                 "a route path cannot contain '?' or '#' (routes match the "
                                 "path without the query)");
    } else {
        char why[256];
        if (tw_settings_check_regex(str, why, sizeof(why)))
            return tw_conf_error(c->err, pat, "regular expression too costly to compile: %s", why);
        int rc = regcomp(&r->regex, str, REG_EXTENDED);
        if (rc) {
            char msg[256];
            regerror(rc, &r->regex, msg, sizeof(msg));
            return tw_conf_error(c->err, pat, "bad regular expression (POSIX ERE): %s", msg);
        }
    }
    /* Set only now: tw_settings_free regfree()s the regex of every route
     * whose kind is TW_MATCH_REGEX. */
    r->kind = kind;
    r->pattern = str;
    r->pattern_len = strlen(str);
    r->node = node;
    r->server = srv;

    if ((n = tw_conf_map_get(node, "methods")) && parse_methods(c, r, n))
        return -1;
    if ((n = tw_conf_map_get(node, "handler"))) {
        if (get_nonempty(c, n, "a module name", &r->handler))
            return -1;
        r->handler_node = n;
    }
    if ((n = tw_conf_map_get(node, "satisfy"))) {
        const char *v = tw_conf_type(n) == TW_CONF_SCALAR ? tw_conf_scalar(n) : "";
        if (strcmp(v, "any") != 0 && strcmp(v, "all") != 0)
            return tw_conf_error(c->err, n,
                                 "expected all (every ACCESS check must pass) or any (one "
                                 "passing check is enough), got '%s'",
                                 v);
        r->http.satisfy_any = strcmp(v, "any") == 0;
    }
    r->http.body_limit = c->s->limits.body;
    if ((n = tw_conf_map_get(node, "limits"))) {
        if (tw_conf_check_keys(n, route_limit_keys, c->err) ||
            get_size(c, n, "body", 0, UINT64_MAX, &r->http.body_limit))
            return -1;
    }
    if ((n = tw_conf_map_get(node, "drain"))) {
        if (tw_conf_type(n) != TW_CONF_MAP)
            return tw_conf_error(c->err, n, "expected a map: { keep: 10m }");
        if (tw_conf_check_keys(n, route_drain_keys, c->err) ||
            get_duration(c, n, "keep", false, &r->http.drain_keep_ms))
            return -1;
    }
    if (sections(c, node, route_keys, N_ROUTE_KEYS, &r->sections, &r->nsections))
        return -1;
    const char *label = r->kind == TW_MATCH_EXACT    ? ""
                        : r->kind == TW_MATCH_PREFIX ? "prefix "
                                                     : "regex ";
    r->http.name = tw_conf_arena_printf(c->s->arena, "%s (%s%s)", tw_conf_path(node), label, str);
    r->http.label = str;
    r->http.server_label = srv->name;
    return r->http.name ? 0 : oom(c, node);
}

/* Lowercases name and drops a trailing dot; checks what a Host can hold. */
static int parse_server_name(ctx_t *c, const tw_conf_node_t *node, const char **out)
{
    const char *name = tw_conf_scalar(node);
    size_t len = strlen(name);
    if (len && name[len - 1] == '.')
        len--;
    if (!len)
        return tw_conf_error(c->err, node, "expected a server name, got an empty value");
    if (len > 253)
        return tw_conf_error(c->err, node, "a server name has at most 253 characters");
    char *lc = tw_conf_arena_strndup(c->s->arena, name, len);
    if (!lc)
        return oom(c, node);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)lc[i];
        lc[i] = (char)tolower(ch);
        if (ch == '*' && i == 0 && len > 2 && lc[1] == '.')
            continue;
        if (ch == '*')
            return tw_conf_error(c->err, node,
                                 "a wildcard goes only at the start: '*.example.com'");
        if (!isalnum(ch) && !strchr("-._[]:", ch))
            return tw_conf_error(c->err, node,
                                 "'%s' is not a host name (letters, digits, '-' and '.')", name);
    }
    if (lc[0] == '.' || strstr(lc, ".."))
        return tw_conf_error(c->err, node, "'%s' is not a host name (empty label)", name);
    *out = lc;
    return 0;
}

/* Index of addr in s->listeners, adding it if new. */
static int add_listener(ctx_t *c, const tw_conf_node_t *node, const struct sockaddr_storage *addr,
                        socklen_t len, size_t *cap, size_t *index)
{
    tw_settings_t *s = c->s;
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (same_addr(&s->listeners[i].addr, addr)) {
            *index = i;
            return 0;
        }
    }
    if (s->nlisteners == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        tw_listener_conf_t *l = zalloc(c, ncap * sizeof(*l));
        if (!l)
            return oom(c, node);
        if (s->nlisteners)
            memcpy(l, s->listeners, s->nlisteners * sizeof(*l));
        s->listeners = l;
        *cap = ncap;
    }
    tw_listener_conf_t *l = &s->listeners[s->nlisteners];
    l->addr = *addr;
    l->addrlen = len;
    l->node = node;
    if (!(l->text = addr_text(c, addr)))
        return oom(c, node);
    *index = s->nlisteners++;
    return 0;
}

/* A set of strings for duplicate checks: open addressing, linear probing,
 * in a table at least twice the size of what it will hold, so a config
 * with 100,000 server names checks in linear time (comparing each with
 * every other took seconds in -t and in every reload). */
typedef struct {
    const char **slots;
    size_t mask; /* slots - 1; the size is a power of two */
} str_set_t;

static int str_set_init(str_set_t *set, size_t n)
{
    size_t size = 16;
    while (size < 2 * n)
        size *= 2;
    set->slots = calloc(size, sizeof(*set->slots));
    set->mask = size - 1;
    return set->slots ? 0 : -1;
}

/* Adds s (which must outlive the set); false if it was there already. */
static bool str_set_add(str_set_t *set, const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (const char *p = s; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (size_t i = (size_t)h & set->mask;; i = (i + 1) & set->mask) {
        if (!set->slots[i]) {
            set->slots[i] = s;
            return true;
        }
        if (strcmp(set->slots[i], s) == 0)
            return false;
    }
}

static void str_set_free(str_set_t *set)
{
    free(set->slots);
    set->slots = NULL;
}

/* "ADDR:PORT [flag ...]": the address part (in the arena), flags set
 * ("tls", "proxy_protocol"). */
static const char *listen_flags(ctx_t *c, const tw_conf_node_t *node, bool *tls,
                                bool *proxy_protocol)
{
    const char *text = tw_conf_scalar(node);
    const char *sp = strpbrk(text, " \t");
    if (!sp)
        return text;
    const char *addr = tw_conf_arena_strndup(c->s->arena, text, (size_t)(sp - text));
    if (!addr) {
        oom(c, node);
        return NULL;
    }
    for (const char *p = sp; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t");
        if (n == 0)
            break;
        if (n == 3 && memcmp(p, "tls", 3) == 0) {
            *tls = true;
        } else if (n == 14 && memcmp(p, "proxy_protocol", 14) == 0) {
            *proxy_protocol = true;
        } else {
            tw_conf_error(c->err, node, "unknown listen flag '%.*s' (known: tls, proxy_protocol)",
                          (int)n, p);
            return NULL;
        }
        p += n;
    }
    return addr;
}

static int parse_server(ctx_t *c, tw_server_conf_t *srv, const tw_conf_node_t *node, size_t *lcap)
{
    const tw_conf_node_t *n, **items;
    size_t count;
    srv->node = node;
    if (tw_conf_type(node) != TW_CONF_MAP)
        return tw_conf_error(c->err, node, "expected a server (a map with listen and routes)");
    if (tw_conf_check_keys(node, server_keys, c->err))
        return -1;

    if (!(n = tw_conf_map_get(node, "listen")))
        return tw_conf_error(c->err, node,
                             "missing 'listen' (the addresses this server answers on)");
    if (scalar_list(c, n, "a listen address", &items, &count))
        return -1;
    if (!count)
        return tw_conf_error(c->err, n, "expected at least one listen address");
    srv->listeners = zalloc(c, count * sizeof(*srv->listeners));
    if (!srv->listeners)
        return oom(c, n);
    for (size_t i = 0; i < count; i++) {
        struct sockaddr_storage addr;
        socklen_t len;
        const char *why;
        bool tls = false, proxy_protocol = false;
        const char *text = listen_flags(c, items[i], &tls, &proxy_protocol);
        if (!text)
            return -1;
        if (tw_settings_parse_listen(text, &addr, &len, &why))
            return tw_conf_error(c->err, items[i],
                                 "expected a listen address (127.0.0.1:8080, [::1]:8080, *:8080 "
                                 "or 8080), got '%s': %s",
                                 text, why);
        size_t idx = 0;
        size_t before = c->s->nlisteners;
        if (add_listener(c, items[i], &addr, len, lcap, &idx))
            return -1;
        if (idx == before) {
            c->s->listeners[idx].tls = tls;
            c->s->listeners[idx].proxy_protocol = proxy_protocol;
        } else if (c->s->listeners[idx].tls != tls) {
            return tw_conf_error(c->err, items[i],
                                 "%s is listed with%s 'tls' here but with%s it at line %u",
                                 c->s->listeners[idx].text, tls ? "" : "out", tls ? "out" : "",
                                 tw_conf_line(c->s->listeners[idx].node));
        } else if (c->s->listeners[idx].proxy_protocol != proxy_protocol) {
            return tw_conf_error(c->err, items[i],
                                 "%s is listed elsewhere %s proxy_protocol: a listener either "
                                 "expects a PROXY header on every connection or on none",
                                 c->s->listeners[idx].text, proxy_protocol ? "without" : "with");
        }
        for (size_t j = 0; j < srv->nlisteners; j++)
            if (srv->listeners[j] == idx)
                return tw_conf_error(c->err, items[i], "%s is already listed in this server",
                                     c->s->listeners[idx].text);
        srv->listeners[srv->nlisteners++] = idx;
    }

    if ((n = tw_conf_map_get(node, "server_names"))) {
        if (scalar_list(c, n, "a server name", &items, &count))
            return -1;
        srv->server_names = zalloc(c, (count ? count : 1) * sizeof(*srv->server_names));
        if (!srv->server_names)
            return oom(c, n);
        srv->server_name_nodes = items;
        str_set_t seen;
        if (str_set_init(&seen, count))
            return oom(c, n);
        for (size_t i = 0; i < count; i++) {
            if (parse_server_name(c, items[i], &srv->server_names[i])) {
                str_set_free(&seen);
                return -1;
            }
            if (!str_set_add(&seen, srv->server_names[i])) {
                str_set_free(&seen);
                return tw_conf_error(c->err, items[i], "server name '%s' is listed twice",
                                     srv->server_names[i]);
            }
        }
        str_set_free(&seen);
        srv->nserver_names = count;
    }
    srv->name = srv->nserver_names ? tw_conf_arena_printf(c->s->arena, "%s (%s)",
                                                          tw_conf_path(node), srv->server_names[0])
                                   : tw_conf_path(node);
    if (!srv->name)
        return oom(c, node);

    if ((n = tw_conf_map_get(node, "tls"))) {
        tw_tls_conf_t *tls;
        if (tw_tls_settings_parse(c->s->arena, c->s->config_dir, n, &tls, c->err))
            return -1;
        srv->tls = tls;
        bool any = false;
        for (size_t i = 0; i < srv->nlisteners; i++)
            any |= c->s->listeners[srv->listeners[i]].tls;
        if (!any)
            return tw_conf_error(c->err, n,
                                 "tls: is set but none of this server's listen addresses has "
                                 "the 'tls' flag (\"ADDR:PORT tls\")");
    }

    if ((n = tw_conf_map_get(node, "routes"))) {
        if (tw_conf_type(n) != TW_CONF_LIST)
            return tw_conf_error(c->err, n, "expected a list of routes");
        count = tw_conf_count(n);
        srv->routes = zalloc(c, (count ? count : 1) * sizeof(*srv->routes));
        if (!srv->routes)
            return oom(c, n);
        for (size_t i = 0; i < count; i++) {
            srv->routes[i].index = i;
            srv->nroutes = i + 1; /* counted before parsing so a regex is freed */
            if (parse_route(c, srv, &srv->routes[i], tw_conf_list_item(n, i)))
                return -1;
        }
    }
    return 0;
}

static int parse_servers(ctx_t *c, const tw_conf_node_t *root)
{
    tw_settings_t *s = c->s;
    const tw_conf_node_t *n = tw_conf_map_get(root, "servers");
    if (!n)
        return tw_conf_error(c->err, root, "missing 'servers' (at least one server is needed)");
    if (tw_conf_type(n) != TW_CONF_LIST || tw_conf_count(n) == 0)
        return tw_conf_error(c->err, n, "expected a list of servers (at least one)");
    size_t count = tw_conf_count(n), lcap = 0;
    s->servers = zalloc(c, count * sizeof(*s->servers));
    if (!s->servers)
        return oom(c, n);
    for (size_t i = 0; i < count; i++) {
        s->servers[i].index = i;
        s->nservers = i + 1;
        if (parse_server(c, &s->servers[i], tw_conf_list_item(n, i), &lcap))
            return -1;
    }
    /* Linux refuses to listen on 127.0.0.1:P while 0.0.0.0:P listens (and
     * the other way round), even with SO_REUSEADDR: say so here, at the
     * line, rather than as a bind error later. */
    for (size_t i = 0; i < s->nlisteners; i++) {
        for (size_t j = 0; j < i; j++) {
            const tw_listener_conf_t *a = &s->listeners[j], *b = &s->listeners[i];
            if (overlap(&a->addr, &b->addr))
                return tw_conf_error(c->err, b->node,
                                     "cannot listen on both %s and %s (line %u): the wildcard "
                                     "address takes the port on every address; use one of them",
                                     b->text, a->text, tw_conf_line(a->node));
        }
    }
    /* A TLS listener needs its default server's certificate: servers
     * without one are still reached there, by SNI falling back to it. */
    for (size_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].tls) {
            const tw_server_conf_t *def = NULL;
            for (size_t k = 0; k < s->nservers && !def; k++)
                for (size_t j = 0; j < s->servers[k].nlisteners; j++)
                    if (s->servers[k].listeners[j] == i)
                        def = &s->servers[k];
            if (def && !def->tls)
                return tw_conf_error(c->err, s->listeners[i].node,
                                     "%s has the 'tls' flag but its first server (%s) has no "
                                     "tls: block (certificate and key)",
                                     s->listeners[i].text, def->name);
        }
    /* Each listener's servers, in config order. */
    for (size_t l = 0; l < s->nlisteners; l++) {
        tw_listener_conf_t *lc = &s->listeners[l];
        for (size_t i = 0; i < s->nservers; i++)
            for (size_t j = 0; j < s->servers[i].nlisteners; j++)
                lc->nservers += s->servers[i].listeners[j] == l;
        lc->servers = zalloc(c, lc->nservers * sizeof(*lc->servers));
        if (!lc->servers)
            return oom(c, n);
        size_t k = 0;
        for (size_t i = 0; i < s->nservers; i++)
            for (size_t j = 0; j < s->servers[i].nlisteners; j++)
                if (s->servers[i].listeners[j] == l)
                    lc->servers[k++] = &s->servers[i];
    }
    return 0;
}

/* ---- load / free ------------------------------------------------------- */

static int from_doc(ctx_t *c, const char *default_module_dir)
{
    tw_settings_t *s = c->s;
    const tw_conf_node_t *root = tw_conf_root(s->doc);
    const char *name = tw_conf_doc_name(s->doc);

    s->config_path = name;
    const char *slash = strrchr(name, '/');
    char *dir = slash ? strndup(name, slash == name ? 1 : (size_t)(slash - name)) : strdup(".");
    if (!dir)
        return oom(c, root);
    char *real = realpath(dir, NULL);
    s->config_dir = tw_conf_arena_strndup(s->arena, real ? real : dir, strlen(real ? real : dir));
    free(real);
    free(dir);
    if (!s->config_dir)
        return oom(c, root);

    s->workers = 0;
    s->log_level = TW_LOG_INFO;
    s->worker_connections = 10000;
    s->backlog = 511;
    s->max_draining_generations = 4;
    s->reload_handoff = true;
    s->min_body_rate = 1024;
    s->shared_zones = 64 << 20;
    s->server_tokens = true;
    s->server_header = "twister";
    s->limits = (tw_limits_t){DEF_REQUEST_LINE, DEF_HEADER_SIZE, DEF_HEADERS, DEF_BODY};
    s->timeouts = (tw_timeouts_t){10000, 30000, 30000, 75000, 30000, 10000};
    if (!(s->module_dir = resolve(
              c, root, default_module_dir ? default_module_dir : TW_SETTINGS_DEFAULT_MODULE_DIR)))
        return -1;

    if (tw_conf_type(root) != TW_CONF_MAP)
        return tw_conf_error(c->err, root,
                             "expected a map of settings (workers, modules, servers, ...)");
    if (parse_globals(c, root) || parse_crash_policy(c, root) || parse_modules(c, root) ||
        sections(c, root, root_keys, N_ROOT_KEYS, &s->sections, &s->nsections) ||
        parse_servers(c, root))
        return -1;
    return tw_router_build(s, c->err);
}

int tw_settings_from_doc(tw_conf_doc_t *doc, const char *default_module_dir, tw_settings_t **out,
                         tw_conf_error_t *err)
{
    *out = NULL;
    tw_settings_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->arena = tw_conf_arena_new())) {
        free(s);
        tw_conf_doc_free(doc);
        if (err)
            snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    s->doc = doc;
    ctx_t c = {.s = s, .err = err};
    if (from_doc(&c, default_module_dir)) {
        tw_settings_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int tw_settings_load(const char *path, const char *default_module_dir, tw_settings_t **out,
                     tw_conf_error_t *err)
{
    *out = NULL;
    tw_conf_doc_t *doc = tw_conf_load(path, err);
    return doc ? tw_settings_from_doc(doc, default_module_dir, out, err) : -1;
}

int tw_settings_load_string(const char *name, const char *text, size_t len,
                            const char *default_module_dir, tw_settings_t **out,
                            tw_conf_error_t *err)
{
    *out = NULL;
    tw_conf_doc_t *doc = tw_conf_load_string(name, text, len, err);
    return doc ? tw_settings_from_doc(doc, default_module_dir, out, err) : -1;
}

void tw_settings_free(tw_settings_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nservers; i++)
        for (size_t j = 0; j < s->servers[i].nroutes; j++)
            if (s->servers[i].routes[j].kind == TW_MATCH_REGEX)
                regfree(&s->servers[i].routes[j].regex);
    tw_conf_arena_free(s->arena);
    tw_conf_doc_free(s->doc);
    free(s);
}

/* ---- module names, once the modules are loaded ------------------------- */

static int check_section(const tw_conf_section_t *sec, const char *const *core, size_t ncore,
                         const char *const *names, size_t nnames, const char *where,
                         tw_conf_error_t *err)
{
    for (size_t i = 0; i < nnames; i++)
        if (strcmp(sec->name, names[i]) == 0)
            return 0;
    const char *s = tw_conf_suggest(sec->name, names, nnames);
    if (!s)
        s = tw_conf_suggest(sec->name, core, ncore);
    if (s)
        return tw_conf_error(err, sec->key, "unknown key '%s'; did you mean '%s'?", sec->name, s);
    return tw_conf_error(err, sec->key,
                         "unknown key '%s': not a %s setting, nor the name of a loaded module",
                         sec->name, where);
}

int tw_settings_check_modules(const tw_settings_t *s, const char *const *names, size_t nnames,
                              tw_conf_error_t *err)
{
    for (size_t i = 0; i < s->nsections; i++)
        if (check_section(&s->sections[i], root_keys, N_ROOT_KEYS, names, nnames, "global", err))
            return -1;
    for (size_t i = 0; i < s->nservers; i++) {
        const tw_server_conf_t *srv = &s->servers[i];
        for (size_t j = 0; j < srv->nroutes; j++) {
            const tw_route_t *r = &srv->routes[j];
            for (size_t k = 0; k < r->nsections; k++)
                if (check_section(&r->sections[k], route_keys, N_ROUTE_KEYS, names, nnames, "route",
                                  err))
                    return -1;
            if (!r->handler)
                continue;
            size_t k;
            for (k = 0; k < nnames && strcmp(r->handler, names[k]) != 0; k++)
                ;
            if (k < nnames)
                continue;
            const char *sug = tw_conf_suggest(r->handler, names, nnames);
            if (sug)
                return tw_conf_error(err, r->handler_node,
                                     "no loaded module is named '%s'; did you mean '%s'?",
                                     r->handler, sug);
            return tw_conf_error(err, r->handler_node,
                                 "no loaded module is named '%s' (list it under modules:)",
                                 r->handler);
        }
    }
    return 0;
}
