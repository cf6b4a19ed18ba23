/* access — allow or deny by client address, after nginx's allow/deny:
 *
 *   access:                      # ordered, first match wins
 *     - allow: 10.0.0.0/8
 *     - allow: "::1"
 *     - deny_file: blocked.txt   # one address or block a line, # comments
 *     - deny: all
 *
 * At the top level (every route without its own section) or in a route
 * (replacing the top level's). A matching allow passes the ACCESS vote, a
 * matching deny refuses it (403, or `status:` in the map form
 * {rules: [...], status: 404}), no match has no opinion. Files are read
 * by configure, so a reload re-reads them and a bad line is a config
 * error naming the file and line. The client is tw_request_peer, so the
 * address realip (or the PROXY protocol) found is the one judged. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <twister/twister.h>

#include "cidr.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    cidr_t block;
    bool allow;
} rule_t;

typedef struct {
    rule_t *rules;
    size_t count, cap;
    int status; /* the refusal */
} access_conf_t;

/* Entries per list file: past this, a list belongs in a shared zone. */
#define MAX_FILE_RULES 100000
#define MAX_LINE 256

static int add_rule(tw_configure_t *cf, access_conf_t *c, const cidr_t *block, bool allow)
{
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        rule_t *rules = tw_configure_alloc(cf, cap * sizeof *rules);
        if (!rules)
            return -1;
        if (c->count)
            memcpy(rules, c->rules, c->count * sizeof *rules);
        c->rules = rules;
        c->cap = cap;
    }
    c->rules[c->count++] = (rule_t){*block, allow};
    return 0;
}

static int add_text(tw_configure_t *cf, access_conf_t *c, const tw_conf_node_t *node, bool allow,
                    tw_conf_error_t *err)
{
    if (tw_conf_type(node) != TW_CONF_SCALAR)
        return tw_conf_error(err, node, "expected an address, a CIDR block or all");
    const char *text = tw_conf_scalar(node);
    cidr_t block;
    char why[200];
    if (cidr_parse(text, strlen(text), &block, why, sizeof why) != 0)
        return tw_conf_error(err, node, "%s", why);
    if (add_rule(cf, c, &block, allow) != 0)
        return tw_conf_error(err, node, "out of memory");
    return 0;
}

/* Reads a list file: one address or block a line; '#' starts a comment. */
static int add_file(tw_configure_t *cf, access_conf_t *c, const tw_conf_node_t *node, bool allow,
                    tw_conf_error_t *err)
{
    const char *name;
    if (tw_conf_get_string(node, &name, err) != 0)
        return -1;
    char path[4096];
    int n = name[0] == '/' ? snprintf(path, sizeof path, "%s", name)
                           : snprintf(path, sizeof path, "%s/%s", tw_configure_dir(cf), name);
    if (n < 0 || (size_t)n >= sizeof path)
        return tw_conf_error(err, node, "path too long");
    /* Non-blocking, and only a regular file: a FIFO put in its place
     * must not hang the process that reads the configuration. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        return tw_conf_error(err, node, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tw_conf_error(err, node, "%s is not a regular file", path);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return tw_conf_error(err, node, "cannot open %s: %s", path, strerror(errno));
    }
    char line[MAX_LINE + 2];
    unsigned lineno = 0;
    size_t added = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len > MAX_LINE && line[len - 1] != '\n') {
            rc = tw_conf_error(err, node, "%s:%u: line longer than %d bytes", path, lineno,
                               MAX_LINE);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
            end--;
        if (end == p)
            continue;
        cidr_t block;
        char why[200];
        if (cidr_parse(p, (size_t)(end - p), &block, why, sizeof why) != 0) {
            rc = tw_conf_error(err, node, "%s:%u: %s", path, lineno, why);
            break;
        }
        if (++added > MAX_FILE_RULES) {
            rc = tw_conf_error(err, node, "%s: more than %d entries", path, MAX_FILE_RULES);
            break;
        }
        if (add_rule(cf, c, &block, allow) != 0) {
            rc = tw_conf_error(err, node, "out of memory");
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = tw_conf_error(err, node, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    return rc;
}

static int parse_rules(tw_configure_t *cf, access_conf_t *c, const tw_conf_node_t *list,
                       tw_conf_error_t *err)
{
    static const char *const rule_keys[] = {"allow", "deny", "allow_file", "deny_file", NULL};
    if (tw_conf_type(list) != TW_CONF_LIST || tw_conf_count(list) == 0)
        return tw_conf_error(err, list,
                             "expected a list of rules, like [{allow: 10.0.0.0/8}, {deny: all}]");
    for (size_t i = 0; i < tw_conf_count(list); i++) {
        const tw_conf_node_t *item = tw_conf_list_item(list, i);
        if (tw_conf_check_keys(item, rule_keys, err) != 0)
            return -1;
        if (tw_conf_count(item) != 1)
            return tw_conf_error(err, item,
                                 "a rule has exactly one of allow, deny, allow_file, deny_file");
        const char *key = tw_conf_map_key(item, 0);
        const tw_conf_node_t *value = tw_conf_map_value(item, 0);
        bool allow = strncmp(key, "allow", 5) == 0;
        int rc = strstr(key, "_file") ? add_file(cf, c, value, allow, err)
                                      : add_text(cf, c, value, allow, err);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int access_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                            void **conf, tw_conf_error_t *err)
{
    (void)scope;
    *conf = NULL;
    if (node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0'))
        return 0;
    access_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    memset(c, 0, sizeof *c);
    c->status = 403;
    if (tw_conf_type(node) == TW_CONF_MAP) {
        static const char *const keys[] = {"rules", "status", NULL};
        if (tw_conf_check_keys(node, keys, err) != 0)
            return -1;
        const tw_conf_node_t *rules = tw_conf_map_get(node, "rules");
        const tw_conf_node_t *status = tw_conf_map_get(node, "status");
        long long st;
        if (status && tw_conf_get_int(status, 400, 599, &st, err) != 0)
            return -1;
        if (status)
            c->status = (int)st;
        if (!rules)
            return tw_conf_error(err, node, "missing 'rules' (the allow/deny list)");
        if (parse_rules(cf, c, rules, err) != 0)
            return -1;
    } else if (parse_rules(cf, c, node, err) != 0) {
        return -1;
    }
    *conf = c;
    return 0;
}

static int access_check(tw_request_t *r)
{
    const access_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (!c)
        c = tw_request_global_conf(r, &twister_module_v1);
    if (!c)
        return TW_DECLINED;
    const struct sockaddr *peer = tw_request_peer(r, NULL);
    for (size_t i = 0; i < c->count; i++)
        if (cidr_match(&c->rules[i].block, peer))
            return c->rules[i].allow ? TW_NEXT : c->status;
    return TW_DECLINED;
}

static int access_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    /* Early: an address decision is cheaper than a password hash. */
    return tw_phases_add(phases, TW_PHASE_ACCESS, access_check, 100);
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "access",
    .version = "1.0.0",
    .description = "allows or denies requests by client address",
    .configure = access_configure,
    .register_phases = access_register,
};
