/* variables.c — the variable registry and templates (twister/variables.h).
 *
 * The core's variables are a table here: exact names, the one-digit regex
 * groups, and four families whose suffix names what to read ($http_NAME,
 * $sent_http_NAME, $arg_NAME, $cookie_NAME). Modules add theirs through
 * their descriptor's `variables` table; the core's names win and a module
 * may not reuse one (checked when a generation loads its modules), so a
 * name means one thing in every module's templates.
 *
 * A template is resolved completely at configure time: each piece holds
 * the getter to call, so expanding costs the getters and a copy, and an
 * unknown name is an error with the config position rather than an empty
 * string in production. A module's getter runs through tw_call_plugin, so
 * a crash in it is charged to the module that provides the variable, not
 * to the one whose template asked. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "module.h"
#include "request/request.h"
#include "runtime.h"
#include "twister/module.h"
#include "twister/variables.h"

/* A core getter; arg is the family suffix or the group digit. */
typedef tw_str_t (*core_get_fn)(tw_request_t *r, tw_str_t arg);

typedef struct {
    const char *name;
    core_get_fn get;
    unsigned flags;
} core_variable_t;

typedef enum {
    PIECE_LITERAL,
    PIECE_CORE,
    PIECE_MODULE,
    PIECE_NONE, /* a quarantined module's variable: never a value */
} piece_kind_t;

typedef struct {
    piece_kind_t kind;
    unsigned flags;           /* TW_VARIABLE_* */
    tw_str_t text;            /* PIECE_LITERAL: the bytes; PIECE_CORE: the argument */
    core_get_fn core_get;     /* PIECE_CORE */
    const tw_variable_t *var; /* PIECE_MODULE */
    const tw_module_t *owner; /* PIECE_MODULE: whose getter it is */
} piece_t;

struct tw_template {
    const char *text;
    bool literal;
    size_t count;
    piece_t pieces[];
};

static const tw_str_t none = {NULL, 0};

static tw_str_t str_of(const char *s)
{
    return s ? (tw_str_t){s, strlen(s)} : none;
}

/* A printf into the request's pool; none when memory runs out. */
__attribute__((format(printf, 2, 3))) static tw_str_t pool_printf(tw_request_t *r, const char *fmt,
                                                                  ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        return none;
    char *out = tw_request_alloc(r, (size_t)n + 1);
    if (!out)
        return none;
    memcpy(out, buf, (size_t)n + 1);
    return (tw_str_t){out, (size_t)n};
}

/* ---- the core's variables -------------------------------------------------- */

static tw_str_t get_host(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_host(r);
}

static tw_str_t get_uri(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_path(r);
}

static tw_str_t get_args(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_query(r);
}

static tw_str_t get_is_args(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_query(r).len ? (tw_str_t){"?", 1} : (tw_str_t){"", 0};
}

/* The target as received, but from the path on for an absolute-form
 * target ("GET http://host/a?x" gives "/a?x", as nginx does), so that
 * `http://$host$request_uri` is a URL whatever the form. */
static tw_str_t get_request_uri(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    tw_str_t t = tw_request_target(r);
    const char *sep = t.len > 0 && t.ptr[0] != '/' ? memmem(t.ptr, t.len, "://", 3) : NULL;
    if (sep == NULL)
        return t; /* origin-form (or "*") */
    const char *p = sep + 3, *end = t.ptr + t.len;
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p < end && *p == '/')
        return (tw_str_t){p, (size_t)(end - p)};
    /* "http://host" or "http://host?x": the path is "/" */
    size_t rest = (size_t)(end - p);
    char *out = tw_request_alloc(r, 1 + rest + 1);
    if (!out)
        return none;
    out[0] = '/';
    memcpy(out + 1, p, rest);
    out[1 + rest] = '\0';
    return (tw_str_t){out, 1 + rest};
}

static tw_str_t get_scheme(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_scheme(r));
}

static tw_str_t get_https(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_tls_protocol(r) ? (tw_str_t){"on", 2} : (tw_str_t){"", 0};
}

static tw_str_t get_remote_addr(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_peer_text(r));
}

static tw_str_t get_remote_port(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    socklen_t len = 0;
    const struct sockaddr *sa = tw_request_peer(r, &len);
    if (!sa)
        return none;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
        return pool_printf(r, "%u", ntohs(((const struct sockaddr_in *)sa)->sin_port));
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
        return pool_printf(r, "%u", ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    return none; /* a Unix socket has no port */
}

static tw_str_t get_remote_user(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_user(r));
}

static tw_str_t get_request_id(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    const char *id = tw_request_id(r);
    return *id ? str_of(id) : none;
}

static tw_str_t get_request_method(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_method(r);
}

static tw_str_t get_request(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return r->request_line.ptr ? r->request_line : none;
}

static tw_str_t get_server_protocol(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return tw_request_version(r) == 10 ? (tw_str_t){"HTTP/1.0", 8} : (tw_str_t){"HTTP/1.1", 8};
}

static tw_str_t get_status(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    int status = tw_response_status(r);
    return status > 0 ? pool_printf(r, "%03d", status) : none;
}

static tw_str_t get_body_bytes_sent(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return pool_printf(r, "%llu", (unsigned long long)tw_response_body_bytes(r));
}

static tw_str_t get_request_time(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    uint64_t us = tw_request_elapsed_us(r);
    return pool_printf(r, "%llu.%03llu", (unsigned long long)(us / 1000000),
                       (unsigned long long)(us % 1000000 / 1000));
}

static tw_str_t get_msec(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return pool_printf(r, "%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
}

static tw_str_t format_time(tw_request_t *r, const char *fmt)
{
    time_t now = time(NULL);
    struct tm tm;
    char buf[64];
    if (localtime_r(&now, &tm) == NULL)
        return none;
    size_t n = strftime(buf, sizeof buf, fmt, &tm);
    if (n == 0)
        return none;
    char *out = tw_request_alloc(r, n + 1);
    if (!out)
        return none;
    memcpy(out, buf, n + 1);
    return (tw_str_t){out, n};
}

static tw_str_t get_time_local(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return format_time(r, "%d/%b/%Y:%H:%M:%S %z");
}

static tw_str_t get_time_iso8601(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return format_time(r, "%Y-%m-%dT%H:%M:%S%z");
}

static tw_str_t get_ssl_protocol(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_tls_protocol(r));
}

static tw_str_t get_ssl_cipher(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_tls_cipher(r));
}

static tw_str_t get_route_label(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_route_label(r));
}

static tw_str_t get_server_label(tw_request_t *r, tw_str_t arg)
{
    (void)arg;
    return str_of(tw_request_server_label(r));
}

static tw_str_t get_capture(tw_request_t *r, tw_str_t arg)
{
    tw_str_t v;
    return tw_request_capture(r, (unsigned)(arg.ptr[0] - '0'), &v) ? v : none;
}

/* $http_NAME: the request header (arg is the field name, '_' made '-'),
 * several fields joined with ", " (Cookie's with "; ", RFC 6265). */
static tw_str_t join_fields(tw_request_t *r, const tw_header_t *first, const char *name)
{
    const tw_header_t *next = tw_request_header_next(r, name, first);
    if (!next)
        return first->value;
    const char *sep = strcasecmp(name, "Cookie") == 0 ? "; " : ", ";
    size_t total = 0;
    for (const tw_header_t *h = first; h; h = tw_request_header_next(r, name, h))
        total += h->value.len + 2;
    char *out = tw_request_alloc(r, total + 1), *p = out;
    if (!out)
        return none;
    for (const tw_header_t *h = first; h; h = tw_request_header_next(r, name, h)) {
        if (p > out) {
            memcpy(p, sep, 2);
            p += 2;
        }
        memcpy(p, h->value.ptr, h->value.len);
        p += h->value.len;
    }
    *p = '\0';
    return (tw_str_t){out, (size_t)(p - out)};
}

static tw_str_t get_http(tw_request_t *r, tw_str_t arg)
{
    const tw_header_t *h = tw_request_header(r, arg.ptr);
    return h ? join_fields(r, h, arg.ptr) : none;
}

static tw_str_t get_sent_http(tw_request_t *r, tw_str_t arg)
{
    return str_of(tw_response_header(r, arg.ptr));
}

static tw_str_t get_arg(tw_request_t *r, tw_str_t arg)
{
    tw_str_t v;
    return tw_request_arg(r, arg.ptr, &v) == 1 ? v : none;
}

static tw_str_t get_cookie(tw_request_t *r, tw_str_t arg)
{
    tw_str_t v;
    return tw_request_cookie(r, arg.ptr, &v) == 1 ? v : none;
}

static const core_variable_t core_variables[] = {
    {"host", get_host, 0},
    {"uri", get_uri, TW_VARIABLE_DECODED},
    {"args", get_args, 0},
    {"query_string", get_args, 0},
    {"is_args", get_is_args, 0},
    {"request_uri", get_request_uri, 0},
    {"scheme", get_scheme, 0},
    {"https", get_https, 0},
    {"remote_addr", get_remote_addr, 0},
    {"remote_port", get_remote_port, 0},
    {"remote_user", get_remote_user, 0},
    {"request_id", get_request_id, 0},
    {"request_method", get_request_method, 0},
    {"request", get_request, 0},
    {"server_protocol", get_server_protocol, 0},
    {"status", get_status, 0},
    {"body_bytes_sent", get_body_bytes_sent, 0},
    {"request_time", get_request_time, 0},
    {"msec", get_msec, 0},
    {"time_local", get_time_local, 0},
    {"time_iso8601", get_time_iso8601, 0},
    {"ssl_protocol", get_ssl_protocol, 0},
    {"ssl_cipher", get_ssl_cipher, 0},
    {"route_label", get_route_label, 0},
    {"server_label", get_server_label, 0},
};

/* The families: the suffix after the prefix is the argument. */
static const core_variable_t core_families[] = {
    {"http_", get_http, 0},
    {"sent_http_", get_sent_http, 0},
    {"arg_", get_arg, TW_VARIABLE_DECODED},
    {"cookie_", get_cookie, 0},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool name_is(const char *name, const char *s, size_t len)
{
    return strlen(name) == len && memcmp(name, s, len) == 0;
}

static bool is_capture_name(const char *s, size_t len)
{
    return len == 1 && s[0] >= '1' && s[0] <= '9';
}

/* The core variable (or family) s[0..len) names, or NULL; *family tells
 * which. */
static const core_variable_t *find_core(const char *s, size_t len, bool *family)
{
    *family = false;
    for (size_t i = 0; i < COUNT(core_variables); i++)
        if (name_is(core_variables[i].name, s, len))
            return &core_variables[i];
    for (size_t i = 0; i < COUNT(core_families); i++) {
        size_t plen = strlen(core_families[i].name);
        if (len > plen && memcmp(core_families[i].name, s, plen) == 0) {
            *family = true;
            return &core_families[i];
        }
    }
    return NULL;
}

static const tw_variable_t *find_in_module(const tw_module_t *m, const char *s, size_t len)
{
    const tw_variable_t *v = tw_module_variables(m);
    for (; v && v->name; v++)
        if (name_is(v->name, s, len))
            return v;
    return NULL;
}

static bool valid_name(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

int tw_variables_check_modules(const tw_module_t *const *mods, size_t count, char *why,
                               size_t whylen)
{
    for (size_t i = 0; i < count; i++) {
        const tw_variable_t *v = tw_module_variables(mods[i]);
        for (size_t k = 0; v && v[k].name; k++) {
            const char *name = v[k].name;
            size_t len = strlen(name);
            bool family;
            const core_variable_t *core = find_core(name, len, &family);
            if (!valid_name(name) || len > 64) {
                snprintf(why, whylen,
                         "module %s: variable name '%.64s' is not valid: use a letter or '_', "
                         "then letters, digits and '_' (at most 64)",
                         mods[i]->name, name);
                return (int)i;
            }
            if (!v[k].get) {
                snprintf(why, whylen, "module %s: variable $%s has no getter", mods[i]->name, name);
                return (int)i;
            }
            if (core) {
                snprintf(why, whylen,
                         "module %s: variable $%s is the core's%s%s; choose another name "
                         "(prefix it with the module's name)",
                         mods[i]->name, name, family ? " family $" : "", family ? core->name : "");
                return (int)i;
            }
            for (size_t j = 0; j <= i; j++) {
                const tw_variable_t *other = find_in_module(mods[j], name, len);
                if (other && other != &v[k]) {
                    snprintf(why, whylen, "module %s: variable $%s is already provided by %s",
                             mods[i]->name, name, mods[j]->name);
                    return (int)i;
                }
            }
        }
    }
    return -1;
}

/* Resolves s[0..len) into *pc (its argument copied into generation
 * memory). Returns 0, 1 if the name is unknown, -1 if memory runs out. */
static int resolve(tw_pool_t *pool, const tw_module_t *const *mods, const bool *disabled,
                   size_t count, const char *s, size_t len, piece_t *pc)
{
    bool family;
    const core_variable_t *core = is_capture_name(s, len) ? NULL : find_core(s, len, &family);
    if (is_capture_name(s, len)) {
        *pc = (piece_t){.kind = PIECE_CORE, .flags = TW_VARIABLE_DECODED, .core_get = get_capture};
        pc->text = (tw_str_t){s, 1};
        return 0;
    }
    if (core) {
        *pc = (piece_t){.kind = PIECE_CORE, .flags = core->flags, .core_get = core->get};
        if (family) {
            size_t plen = strlen(core->name);
            char *arg = tw_pool_strndup(pool, s + plen, len - plen);
            if (!arg)
                return -1;
            /* $http_user_agent reads User-Agent: fields are matched
             * without case, and a name cannot hold '-'. */
            if (core->get == get_http || core->get == get_sent_http)
                for (char *p = arg; *p; p++)
                    *p = *p == '_' ? '-' : *p;
            pc->text = (tw_str_t){arg, len - plen};
        }
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        const tw_variable_t *v = find_in_module(mods[i], s, len);
        if (!v)
            continue;
        *pc = (piece_t){.kind = disabled && disabled[i] ? PIECE_NONE : PIECE_MODULE,
                        .flags = v->flags,
                        .var = v,
                        .owner = mods[i]};
        return 0;
    }
    return 1;
}

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* The length of the variable name at s (after a '$'), 0 if none. */
static size_t name_length(const char *s)
{
    if (*s >= '1' && *s <= '9')
        return 1;
    if (!is_name_start(*s))
        return 0;
    size_t n = 1;
    while (is_name_char(s[n]))
        n++;
    return n;
}

/* The known names, for the error message. */
static void list_known(const tw_module_t *const *mods, size_t count, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < COUNT(core_variables) && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s$%s", i ? ", " : "",
                                 core_variables[i].name);
    for (size_t i = 0; i < COUNT(core_families) && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, ", $%sNAME", core_families[i].name);
    if (used < outlen)
        used += (size_t)snprintf(out + used, outlen - used, ", $1..$9");
    for (size_t i = 0; i < count; i++) {
        const tw_variable_t *v = tw_module_variables(mods[i]);
        for (; v && v->name && used < outlen; v++)
            used +=
                (size_t)snprintf(out + used, outlen - used, ", $%s (%s)", v->name, mods[i]->name);
    }
}

tw_template_t *tw_template_parse(tw_pool_t *pool, const char *text, const tw_module_t *const *mods,
                                 const bool *disabled, size_t count, tw_str_t *unknown)
{
    size_t max = 1;
    for (const char *p = text; *p; p++)
        max += *p == '$' ? 2 : 0;
    tw_template_t *t = tw_pool_calloc(pool, sizeof *t + max * sizeof t->pieces[0]);
    char *copy = tw_pool_strndup(pool, text, strlen(text));
    *unknown = none;
    if (!t || !copy)
        return NULL;
    t->text = copy;
    const char *lit = copy, *p = copy;
    while (*p) {
        size_t n = *p == '$' ? name_length(p + 1) : 0;
        if (n == 0) {
            p++;
            continue;
        }
        piece_t pc;
        int rc = resolve(pool, mods, disabled, count, p + 1, n, &pc);
        if (rc != 0) {
            if (rc > 0)
                *unknown = (tw_str_t){p + 1, n};
            return NULL;
        }
        if (p > lit)
            t->pieces[t->count++] =
                (piece_t){.kind = PIECE_LITERAL, .text = {lit, (size_t)(p - lit)}};
        t->pieces[t->count++] = pc;
        p = lit = p + 1 + n;
    }
    if (p > lit)
        t->pieces[t->count++] = (piece_t){.kind = PIECE_LITERAL, .text = {lit, (size_t)(p - lit)}};
    t->literal = true;
    for (size_t i = 0; i < t->count; i++)
        t->literal &= t->pieces[i].kind == PIECE_LITERAL;
    return t;
}

tw_template_t *tw_template_compile(tw_configure_t *cf, const char *text, const tw_conf_node_t *node,
                                   tw_conf_error_t *err)
{
    size_t count = 0;
    const tw_module_t *const *mods;
    const bool *disabled;
    tw_str_t unknown;
    tw_configure_modules(cf, &mods, &disabled, &count);
    tw_template_t *t =
        tw_template_parse(tw_configure_pool(cf), text, mods, disabled, count, &unknown);
    if (t)
        return t;
    if (!unknown.ptr) {
        tw_conf_error(err, node, "out of memory");
    } else {
        char known[700];
        list_known(mods, count, known, sizeof known);
        tw_conf_error(err, node, "unknown variable $%.*s (known: %s)", (int)unknown.len,
                      unknown.ptr, known);
    }
    return NULL;
}

const char *tw_template_text(const tw_template_t *t)
{
    return t->text;
}

bool tw_template_is_literal(const tw_template_t *t)
{
    return t->literal;
}

bool tw_template_starts_with_variable(const tw_template_t *t)
{
    return t->count > 0 && t->pieces[0].kind != PIECE_LITERAL;
}

/* ---- expanding ----------------------------------------------------------------- */

static tw_str_t piece_value(tw_request_t *r, const piece_t *pc)
{
    switch (pc->kind) {
    case PIECE_LITERAL:
        return pc->text;
    case PIECE_CORE:
        return pc->core_get(r, pc->text);
    case PIECE_MODULE: {
        tw_str_t v = none;
        tw_plugin_call_t call = {
            .kind = TW_CALL_VARIABLE, .fn.variable = pc->var->get, .value = &v};
        tw_call_plugin(r, pc->owner, "variable", &call, false);
        return v;
    }
    case PIECE_NONE:
        break;
    }
    return none;
}

static bool keep_in_url(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL);
}

static bool escape_in_log(unsigned char c)
{
    return c == '"' || c == '\\' || c < 0x20 || c >= 0x7f;
}

/* The bytes v takes in mode. */
static size_t expanded_size(const piece_t *pc, tw_str_t v, tw_template_mode_t mode)
{
    if (pc->kind == PIECE_LITERAL)
        return v.len;
    if (mode == TW_TEMPLATE_LOG && !v.ptr)
        return 1;
    if (mode == TW_TEMPLATE_URL && (pc->flags & TW_VARIABLE_DECODED))
        return 3 * v.len;
    if (mode == TW_TEMPLATE_LOG)
        return 4 * v.len;
    return v.len;
}

static char *put_value(char *o, const piece_t *pc, tw_str_t v, tw_template_mode_t mode)
{
    static const char hex[] = "0123456789ABCDEF";
    if (pc->kind == PIECE_LITERAL || mode == TW_TEMPLATE_TEXT ||
        (mode == TW_TEMPLATE_URL && !(pc->flags & TW_VARIABLE_DECODED))) {
        if (v.len)
            memcpy(o, v.ptr, v.len);
        return o + v.len;
    }
    if (mode == TW_TEMPLATE_LOG && !v.ptr) {
        *o++ = '-';
        return o;
    }
    for (size_t k = 0; k < v.len; k++) {
        unsigned char ch = (unsigned char)v.ptr[k];
        if (mode == TW_TEMPLATE_URL && !keep_in_url(ch)) {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        } else if (mode == TW_TEMPLATE_LOG && escape_in_log(ch)) {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        } else {
            *o++ = (char)ch;
        }
    }
    return o;
}

size_t tw_template_pieces(const tw_template_t *t)
{
    return t->count;
}

unsigned tw_template_piece_flags(const tw_template_t *t, size_t i, bool *is_variable)
{
    *is_variable = t->pieces[i].kind != PIECE_LITERAL;
    return t->pieces[i].flags;
}

char *tw_template_render(const tw_template_t *t, tw_template_mode_t mode, tw_str_t *values,
                         tw_pool_t *pool, size_t *len)
{
    size_t size = 1;
    for (size_t i = 0; i < t->count; i++) {
        if (t->pieces[i].kind == PIECE_LITERAL)
            values[i] = t->pieces[i].text;
        size += expanded_size(&t->pieces[i], values[i], mode);
    }
    char *out = tw_pool_alloc(pool, size), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < t->count; i++)
        o = put_value(o, &t->pieces[i], values[i], mode);
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}

const char *tw_template_expand(tw_request_t *r, const tw_template_t *t, tw_template_mode_t mode,
                               size_t *len)
{
    size_t n;
    if (t->literal) {
        if (len)
            *len = strlen(t->text);
        return t->text;
    }
    /* Each value is asked for once: a getter may allocate or, for a
     * module's, cost a call. */
    tw_str_t small[16], *values = small;
    if (t->count > COUNT(small) && !(values = tw_request_alloc(r, t->count * sizeof *values))) {
        errno = ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < t->count; i++)
        values[i] = piece_value(r, &t->pieces[i]);
    char *out = tw_template_render(t, mode, values, tw_request_pool(r), &n);
    if (!out) {
        errno = ENOMEM;
        return NULL;
    }
    if (len)
        *len = n;
    return out;
}

int tw_request_variable(tw_request_t *r, const char *name, tw_str_t *value)
{
    size_t len = strlen(name);
    *value = none;
    if (len == 0 || name_length(name) != len) {
        errno = ENOENT;
        return -1;
    }
    tw_http_server_t *srv = r->srv;
    piece_t pc;
    int rc = resolve(tw_request_pool(r), srv->modules, srv->module_disabled, srv->module_count,
                     name, len, &pc);
    if (rc != 0) {
        errno = rc > 0 ? ENOENT : ENOMEM;
        return -1;
    }
    *value = piece_value(r, &pc);
    return value->ptr ? 1 : 0;
}

/* ---- the request id -------------------------------------------------------------- */

static bool valid_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

const char *tw_request_id(tw_request_t *r)
{
    if (r->id)
        return r->id;
    /* One getrandom(2) per 32 ids, not one per request. */
    tw_http_server_t *srv = r->srv;
    enum {
        ID_BYTES = 16
    };
    if (srv->id_random_left < ID_BYTES) {
        ssize_t got;
        do
            got = getrandom(srv->id_random, sizeof srv->id_random, GRND_NONBLOCK);
        while (got < 0 && errno == EINTR);
        srv->id_random_left = got == (ssize_t)sizeof srv->id_random ? sizeof srv->id_random : 0;
    }
    char *id = tw_request_alloc(r, 2 * ID_BYTES + 1);
    if (srv->id_random_left < ID_BYTES || !id)
        return "";
    const unsigned char *bytes = srv->id_random + sizeof srv->id_random - srv->id_random_left;
    srv->id_random_left -= ID_BYTES;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < ID_BYTES; i++) {
        id[2 * i] = hex[bytes[i] >> 4];
        id[2 * i + 1] = hex[bytes[i] & 15];
    }
    id[2 * ID_BYTES] = '\0';
    r->id = id;
    return id;
}

int tw_request_set_id(tw_request_t *r, const char *id, size_t len)
{
    if (len == 0 || len > 64) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if (!valid_id_char(id[i])) {
            errno = EINVAL;
            return -1;
        }
    char *copy = tw_request_alloc(r, len + 1);
    if (!copy) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(copy, id, len);
    copy[len] = '\0';
    r->id = copy;
    return 0;
}
