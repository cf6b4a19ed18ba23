/* tls_settings.c — see tls_settings.h. */
#include "tls/tls_settings.h"

#include <string.h>

static const char *const tls_keys[] = {
    "certificate",     "key",           "protocols",     "ciphers",
    "session_tickets", "ocsp_stapling", "ocsp_response", NULL};

static const char *resolve(tw_conf_arena_t *arena, const char *dir, const char *path)
{
    if (path[0] == '/')
        return path;
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    return tw_conf_arena_printf(arena, "%s/%s", dir, path);
}

/* A path or a list of paths (non-empty strings), resolved. */
static int path_list(tw_conf_arena_t *arena, const char *dir, const tw_conf_node_t *node,
                     const char *what, const char ***paths, const tw_conf_node_t ***nodes,
                     size_t *n, tw_conf_error_t *err)
{
    size_t count = tw_conf_type(node) == TW_CONF_LIST ? tw_conf_count(node) : 1;
    if (tw_conf_type(node) == TW_CONF_MAP)
        return tw_conf_error(err, node, "expected %s or a list of them, got a map", what);
    if (count == 0)
        return tw_conf_error(err, node, "expected at least one %s", what);
    *paths = tw_conf_arena_alloc(arena, count * sizeof(**paths));
    *nodes = tw_conf_arena_alloc(arena, count * sizeof(**nodes));
    if (!*paths || !*nodes)
        return tw_conf_error(err, node, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const tw_conf_node_t *it =
            tw_conf_type(node) == TW_CONF_LIST ? tw_conf_list_item(node, i) : node;
        const char *v;
        if (tw_conf_get_string(it, &v, err))
            return -1;
        if (!*v)
            return tw_conf_error(err, it, "expected %s, got an empty value", what);
        if (!((*paths)[i] = resolve(arena, dir, v)))
            return tw_conf_error(err, it, "out of memory");
        (*nodes)[i] = it;
    }
    *n = count;
    return 0;
}

static int parse_protocols(const tw_conf_node_t *node, unsigned *out, tw_conf_error_t *err)
{
    size_t count = tw_conf_type(node) == TW_CONF_LIST ? tw_conf_count(node) : 1;
    if (tw_conf_type(node) == TW_CONF_MAP)
        return tw_conf_error(err, node, "expected a list of protocols (TLSv1.2, TLSv1.3)");
    *out = 0;
    for (size_t i = 0; i < count; i++) {
        const tw_conf_node_t *it =
            tw_conf_type(node) == TW_CONF_LIST ? tw_conf_list_item(node, i) : node;
        const char *v;
        if (tw_conf_get_string(it, &v, err))
            return -1;
        if (strcmp(v, "TLSv1.2") == 0)
            *out |= TW_TLS_V1_2;
        else if (strcmp(v, "TLSv1.3") == 0)
            *out |= TW_TLS_V1_3;
        else if (strcmp(v, "TLSv1") == 0 || strcmp(v, "TLSv1.0") == 0 ||
                 strcmp(v, "TLSv1.1") == 0 || strncmp(v, "SSL", 3) == 0)
            return tw_conf_error(err, it,
                                 "protocol '%s' is insecure and not supported (use "
                                 "TLSv1.2 and TLSv1.3)",
                                 v);
        else
            return tw_conf_error(err, it, "unknown protocol '%s' (expected TLSv1.2 or TLSv1.3)", v);
    }
    if (!*out)
        return tw_conf_error(err, node, "expected at least one protocol (TLSv1.2, TLSv1.3)");
    return 0;
}

int tw_tls_settings_parse(tw_conf_arena_t *arena, const char *config_dir,
                          const tw_conf_node_t *node, tw_tls_conf_t **out, tw_conf_error_t *err)
{
    if (tw_conf_type(node) != TW_CONF_MAP)
        return tw_conf_error(err, node, "expected a map (certificate, key, protocols...)");
    if (tw_conf_check_keys(node, tls_keys, err))
        return -1;
    tw_tls_conf_t *t = tw_conf_arena_alloc(arena, sizeof *t);
    if (!t)
        return tw_conf_error(err, node, "out of memory");
    memset(t, 0, sizeof *t);
    t->node = node;
    t->protocols = TW_TLS_V1_2 | TW_TLS_V1_3;
    t->ciphers = TW_TLS_DEFAULT_CIPHERS;
    t->session_tickets = true;

    const tw_conf_node_t *n = tw_conf_map_get(node, "certificate");
    if (!n)
        return tw_conf_error(err, node, "missing 'certificate' (the PEM certificate chain)");
    if (path_list(arena, config_dir, n, "a certificate file", &t->certificates, &t->cert_nodes,
                  &t->ncertificates, err))
        return -1;
    const tw_conf_node_t *k = tw_conf_map_get(node, "key");
    if (!k)
        return tw_conf_error(err, node, "missing 'key' (the certificate's private key file)");
    size_t nkeys = 0;
    if (path_list(arena, config_dir, k, "a key file", &t->keys, &t->key_nodes, &nkeys, err))
        return -1;
    if (nkeys != t->ncertificates)
        return tw_conf_error(err, k, "expected one key per certificate (%zu), got %zu",
                             t->ncertificates, nkeys);

    if ((n = tw_conf_map_get(node, "protocols")) && parse_protocols(n, &t->protocols, err))
        return -1;
    if ((n = tw_conf_map_get(node, "ciphers"))) {
        if (tw_conf_get_string(n, &t->ciphers, err))
            return -1;
        if (!*t->ciphers)
            return tw_conf_error(err, n, "expected a cipher list, got an empty value");
        t->ciphers_node = n;
    }
    if ((n = tw_conf_map_get(node, "session_tickets")) &&
        tw_conf_get_bool(n, &t->session_tickets, err))
        return -1;
    if ((n = tw_conf_map_get(node, "ocsp_stapling"))) {
        if (tw_conf_get_bool(n, &t->ocsp_stapling, err))
            return -1;
        t->ocsp_node = n;
    }
    if ((n = tw_conf_map_get(node, "ocsp_response"))) {
        const char *v;
        if (tw_conf_get_string(n, &v, err))
            return -1;
        if (!*v)
            return tw_conf_error(err, n, "expected an OCSP response file, got an empty value");
        if (!(t->ocsp_response = resolve(arena, config_dir, v)))
            return tw_conf_error(err, n, "out of memory");
        t->ocsp_node = n;
    }
    if (t->ocsp_stapling && !t->ocsp_response)
        return tw_conf_error(err, t->ocsp_node,
                             "ocsp_stapling needs ocsp_response (the DER response file to staple)");
    if (!t->ocsp_stapling)
        t->ocsp_response = NULL;
    *out = t;
    return 0;
}
