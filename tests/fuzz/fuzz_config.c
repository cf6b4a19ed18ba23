/* fuzz_config.c — libFuzzer target for the config loader and the schema:
 * any input must either load or fail with a message, within the limits
 * of config.h, and free everything (ASan/LSan check that). !include is
 * off so that the fuzzer never reads files. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "router.h"
#include "settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs every typed getter on every scalar: they must not crash on any
 * text, and must leave a message when they refuse it. */
static void walk(const tw_conf_node_t *n, tw_conf_error_t *err)
{
    if (tw_conf_type(n) == TW_CONF_SCALAR) {
        long long i;
        uint64_t u;
        bool b;
        const char *s;
        err->message[0] = '\0';
        if (tw_conf_get_int(n, -1000, 1000, &i, err) && !err->message[0])
            __builtin_trap();
        (void)tw_conf_get_bool(n, &b, err);
        (void)tw_conf_get_size(n, &u, err);
        (void)tw_conf_get_duration_ms(n, &u, err);
        (void)tw_conf_get_string(n, &s, err);
        return;
    }
    static const char *const keys[] = {"path", "prefix", "listen", NULL};
    if (tw_conf_type(n) == TW_CONF_MAP)
        (void)tw_conf_check_keys(n, keys, err);
    for (size_t i = 0; i < tw_conf_count(n); i++) {
        const tw_conf_node_t *c =
            tw_conf_type(n) == TW_CONF_MAP ? tw_conf_map_value(n, i) : tw_conf_list_item(n, i);
        if (tw_conf_type(n) == TW_CONF_MAP && tw_conf_map_get(n, tw_conf_map_key(n, i)) != c)
            __builtin_trap(); /* lookup must find every key */
        walk(c, err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    tw_conf_error_t err;
    err.message[0] = '\0';
    tw_conf_doc_t *doc =
        tw_conf_load_string_ex("fuzz.yaml", (const char *)data, size, TW_CONF_NO_INCLUDE, &err);
    if (!doc) {
        if (!err.message[0])
            __builtin_trap(); /* every failure explains itself */
        return 0;
    }
    walk(tw_conf_root(doc), &err);
    if (devnull)
        (void)tw_conf_dump(tw_conf_root(doc), devnull);

    tw_settings_t *s;
    err.message[0] = '\0';
    if (tw_settings_from_doc(doc, "/usr/lib/twister/modules", &s, &err)) {
        if (!err.message[0])
            __builtin_trap();
        return 0;
    }
    static const char *const paths[] = {"/", "/hello", "/static/a.css", "/u/42", ""};
    static const char *const hosts[] = {"localhost", "a.example.com", "EXAMPLE.COM.:80", "[::1]"};
    for (size_t l = 0; l <= s->nlisteners; l++)
        for (size_t h = 0; h < 4; h++)
            for (size_t p = 0; p < 5; p++)
                (void)tw_router_find(s, l, hosts[h], strlen(hosts[h]), paths[p], strlen(paths[p]),
                                     NULL);
    static const char *const names[] = {"hello", "static"};
    (void)tw_settings_check_modules(s, names, 2, &err);
    tw_settings_free(s);
    return 0;
}
