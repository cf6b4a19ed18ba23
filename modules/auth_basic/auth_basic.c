/* auth_basic — HTTP Basic authentication against an htpasswd file, after
 * nginx's auth_basic / auth_basic_user_file:
 *
 *   auth_basic: { realm: "Staff only", user_file: staff.htpasswd }
 *   auth_basic: { off: true }     # in a route: no password here
 *
 * The file is read by configure (so a reload re-reads it, and a bad line or
 * a plain-text password is a config error at file:line). A request without
 * valid credentials is refused with 401 and the challenge; a valid one
 * passes the ACCESS vote and records the user for the logs. See README.md
 * and htpasswd.h for the hash schemes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <twister/twister.h>

#include "htpasswd.h"

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    char *user;
    size_t user_len;
    char *hash;
    htpasswd_scheme_t scheme;
} user_t;

typedef struct {
    bool off;
    const char *challenge; /* the WWW-Authenticate value */
    user_t *users;
    size_t count;
} auth_conf_t;

#define MAX_LINE 1024
#define MAX_USERS 100000
/* user:password, decoded: longer credentials are refused unread. */
#define MAX_CREDENTIALS 1024

static int read_users(tw_configure_t *cf, auth_conf_t *c, const tw_conf_node_t *node,
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
    size_t cap = 0;
    char line[MAX_LINE + 2];
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (len > MAX_LINE) {
            rc = tw_conf_error(err, node, "%s:%u: line longer than %d bytes", path, lineno,
                               MAX_LINE);
            break;
        }
        htpasswd_entry_t e;
        char why[256];
        htpasswd_line_t kind = htpasswd_parse_line(line, len, &e, why, sizeof why);
        if (kind == HTPASSWD_BLANK)
            continue;
        if (kind == HTPASSWD_BAD) {
            rc = tw_conf_error(err, node, "%s:%u: %s", path, lineno, why);
            break;
        }
        for (size_t i = 0; i < c->count; i++) {
            if (c->users[i].user_len == e.user_len &&
                memcmp(c->users[i].user, e.user, e.user_len) == 0) {
                rc = tw_conf_error(err, node, "%s:%u: user '%.*s' is listed twice", path, lineno,
                                   (int)e.user_len, e.user);
                break;
            }
        }
        if (rc)
            break;
        if (c->count == MAX_USERS) {
            rc = tw_conf_error(err, node, "%s: more than %d users", path, MAX_USERS);
            break;
        }
        if (c->count == cap) {
            cap = cap ? cap * 2 : 16;
            user_t *users = tw_configure_alloc(cf, cap * sizeof *users);
            if (!users) {
                rc = tw_conf_error(err, node, "out of memory");
                break;
            }
            if (c->count)
                memcpy(users, c->users, c->count * sizeof *users);
            c->users = users;
        }
        user_t *u = &c->users[c->count];
        u->user = tw_configure_alloc(cf, e.user_len + 1);
        u->hash = tw_configure_alloc(cf, e.hash_len + 1);
        if (!u->user || !u->hash) {
            rc = tw_conf_error(err, node, "out of memory");
            break;
        }
        memcpy(u->user, e.user, e.user_len);
        u->user[e.user_len] = '\0';
        memcpy(u->hash, e.hash, e.hash_len);
        u->hash[e.hash_len] = '\0';
        u->user_len = e.user_len;
        u->scheme = e.scheme;
        c->count++;
    }
    if (rc == 0 && ferror(f))
        rc = tw_conf_error(err, node, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    explicit_bzero(line, sizeof line);
    if (rc == 0 && c->count == 0)
        rc = tw_conf_error(err, node, "%s has no users: nobody could log in", path);
    return rc;
}

static int auth_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                          void **conf, tw_conf_error_t *err)
{
    (void)scope;
    *conf = NULL;
    if (node == NULL || (tw_conf_type(node) == TW_CONF_SCALAR && *tw_conf_scalar(node) == '\0'))
        return 0;
    static const char *const keys[] = {"realm", "user_file", "off", NULL};
    if (tw_conf_check_keys(node, keys, err) != 0)
        return -1;
    auth_conf_t *c = tw_configure_alloc(cf, sizeof *c);
    if (!c)
        return tw_conf_error(err, node, "out of memory");
    memset(c, 0, sizeof *c);
    const tw_conf_node_t *off = tw_conf_map_get(node, "off");
    if (off && tw_conf_get_bool(off, &c->off, err) != 0)
        return -1;
    const tw_conf_node_t *realm_node = tw_conf_map_get(node, "realm");
    const tw_conf_node_t *file = tw_conf_map_get(node, "user_file");
    if (c->off) {
        if (realm_node || file)
            return tw_conf_error(err, node, "off: true takes no other settings");
        *conf = c;
        return 0;
    }
    const char *realm = "Restricted";
    if (realm_node && tw_conf_get_string(realm_node, &realm, err) != 0)
        return -1;
    for (const char *p = realm; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
            return tw_conf_error(err, realm_node,
                                 "a realm cannot hold '\"', '\\' or control characters");
    if (!file)
        return tw_conf_error(err, node, "missing 'user_file' (an htpasswd file)");
    if (read_users(cf, c, file, err) != 0)
        return -1;
    size_t len = strlen(realm) + 40;
    char *challenge = tw_configure_alloc(cf, len);
    if (!challenge)
        return tw_conf_error(err, node, "out of memory");
    snprintf(challenge, len, "Basic realm=\"%s\", charset=\"UTF-8\"", realm);
    c->challenge = challenge;
    *conf = c;
    return 0;
}

/* Strict base64 (RFC 4648, padding required); returns the length or -1. */
static long decode_base64(const char *in, size_t len, char *out, size_t cap)
{
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char ch = in[i + k];
            int d;
            if (ch >= 'A' && ch <= 'Z')
                d = ch - 'A';
            else if (ch >= 'a' && ch <= 'z')
                d = ch - 'a' + 26;
            else if (ch >= '0' && ch <= '9')
                d = ch - '0' + 52;
            else if (ch == '+')
                d = 62;
            else if (ch == '/')
                d = 63;
            else if (ch == '=' && i + 4 == len && k >= 2 && (k == 3 || in[i + 3] == '='))
                d = 0, pad++;
            else
                return -1;
            if (pad && ch != '=')
                return -1;
            v = v << 6 | (unsigned)d;
        }
        size_t bytes = 3 - (size_t)pad;
        if (n + bytes > cap)
            return -1;
        out[n++] = (char)(v >> 16);
        if (bytes > 1)
            out[n++] = (char)(v >> 8);
        if (bytes > 2)
            out[n++] = (char)v;
    }
    return (long)n;
}

static const user_t *find_user(const auth_conf_t *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->count; i++)
        if (c->users[i].user_len == len && memcmp(c->users[i].user, name, len) == 0)
            return &c->users[i];
    return NULL;
}

/* True if the Authorization header holds a user and password of c. */
static bool credentials_ok(tw_request_t *r, const auth_conf_t *c)
{
    const tw_header_t *h = tw_request_header(r, "Authorization");
    if (!h || h->value.len < 6 || strncasecmp(h->value.ptr, "Basic ", 6) != 0)
        return false;
    const char *b64 = h->value.ptr + 6;
    size_t blen = h->value.len - 6;
    while (blen && *b64 == ' ')
        b64++, blen--;
    char decoded[MAX_CREDENTIALS];
    long n =
        blen <= MAX_CREDENTIALS / 3 * 4 ? decode_base64(b64, blen, decoded, sizeof decoded) : -1;
    if (n < 0)
        return false;
    const char *colon = memchr(decoded, ':', (size_t)n);
    if (!colon) {
        explicit_bzero(decoded, sizeof decoded);
        return false;
    }
    size_t ulen = (size_t)(colon - decoded);
    const user_t *u = find_user(c, decoded, ulen);
    const char *pw = colon + 1;
    size_t pwlen = (size_t)n - ulen - 1;
    /* An unknown user costs a hash too, so that the time taken does not
     * tell which user names exist. */
    bool ok = htpasswd_verify(u ? u->scheme : c->users[0].scheme, u ? u->hash : c->users[0].hash,
                              pw, pwlen) &&
              u != NULL;
    if (ok) {
        char name[MAX_CREDENTIALS];
        memcpy(name, decoded, ulen);
        name[ulen] = '\0';
        /* A user name the log cannot hold (a control character) fails. */
        ok = tw_request_set_user(r, name) == 0;
    }
    explicit_bzero(decoded, sizeof decoded);
    return ok;
}

static int auth_access(tw_request_t *r)
{
    const auth_conf_t *c = tw_request_route_conf(r, &twister_module_v1);
    if (!c)
        c = tw_request_global_conf(r, &twister_module_v1);
    if (!c || c->off)
        return TW_DECLINED;
    if (credentials_ok(r, c))
        return TW_NEXT;
    /* The challenge stays on the core's 401 page (ACCESS refusals keep their
     * headers), and is dropped if another check passes under satisfy: any. */
    if (tw_response_set_header(r, "WWW-Authenticate", c->challenge) != 0)
        return TW_ERROR;
    return 401;
}

static int auth_register(tw_phases_t *phases, tw_conf_error_t *err)
{
    (void)err;
    /* After the cheap checks (access, rate limits): a hash costs CPU. */
    return tw_phases_add(phases, TW_PHASE_ACCESS, auth_access, 600);
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "auth_basic",
    .version = "1.0.0",
    .description = "HTTP Basic authentication against an htpasswd file",
    .configure = auth_configure,
    .register_phases = auth_register,
};
