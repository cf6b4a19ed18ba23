/* fuzz_config_source.c — libFuzzer target for the whole way from YAML to
 * settings with !include and ${VAR}, served from memory through the
 * loader's source (config.h): the fuzzer writes the files and the
 * variables, nothing touches the disk or the environment.
 *
 * The input is split at NUL bytes (which YAML never holds): part 0 is
 * main.yaml, parts 1-4 the files a.yaml, b.yaml, sub/c.yaml and
 * /etc/tw/d.yaml, parts 5-7 the values of the variables A, B and C.
 * fifo.yaml always exists and always fails to read, as a FIFO does. Any
 * input must load or fail with a message, every node must come from one
 * of those files, and everything must be freed (ASan/LSan check that). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "router.h"
#include "settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    NFILES = 5,
    NVARS = 3
};

static const char *const file_names[NFILES] = {"main.yaml", "a.yaml", "b.yaml", "sub/c.yaml",
                                               "/etc/tw/d.yaml"};
static const char *const var_names[NVARS] = {"A", "B", "C"};

typedef struct {
    const char *file[NFILES];
    size_t file_len[NFILES];
    char *var[NVARS]; /* NUL-terminated copies; NULL when unset */
} mem_fs_t;

static int mem_read(void *ctx, const char *path, char **text, size_t *len, const char **why)
{
    const mem_fs_t *fs = ctx;
    if (strcmp(path, "fifo.yaml") == 0) {
        *why = "a FIFO, not a regular file";
        return -1;
    }
    for (int i = 0; i < NFILES; i++)
        if (fs->file[i] && strcmp(path, file_names[i]) == 0) {
            *text = malloc(fs->file_len[i] + 1);
            if (!*text) {
                *why = "out of memory";
                return -1;
            }
            memcpy(*text, fs->file[i], fs->file_len[i]);
            (*text)[fs->file_len[i]] = '\0';
            *len = fs->file_len[i];
            return 0;
        }
    *why = "No such file or directory";
    return -1;
}

static const char *mem_getenv(void *ctx, const char *name)
{
    const mem_fs_t *fs = ctx;
    for (int i = 0; i < NVARS; i++)
        if (strcmp(name, var_names[i]) == 0)
            return fs->var[i];
    return NULL;
}

/* Every node was read from one of the files of the input. */
static void check_files(const tw_conf_node_t *n)
{
    const char *file = tw_conf_file(n);
    bool known = false;
    for (int i = 0; i < NFILES && !known; i++)
        known = strcmp(file, file_names[i]) == 0;
    if (!known)
        __builtin_trap();
    if (tw_conf_type(n) == TW_CONF_SCALAR)
        return;
    for (size_t i = 0; i < tw_conf_count(n); i++)
        check_files(tw_conf_type(n) == TW_CONF_MAP ? tw_conf_map_value(n, i)
                                                   : tw_conf_list_item(n, i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");

    mem_fs_t fs = {0};
    const char *p = (const char *)data, *end = p + size;
    for (int part = 0; part < NFILES + NVARS && p <= end; part++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);
        if (part < NFILES) {
            fs.file[part] = p;
            fs.file_len[part] = len;
        } else {
            fs.var[part - NFILES] = strndup(p, len);
        }
        if (!nul)
            break;
        p = nul + 1;
    }
    tw_conf_source_t src = {.read = mem_read, .getenv = mem_getenv, .ctx = &fs};

    tw_conf_error_t err;
    err.message[0] = '\0';
    tw_conf_doc_t *doc = tw_conf_load_source("main.yaml", &src, &err);
    if (!doc) {
        if (!err.message[0])
            __builtin_trap(); /* every failure explains itself */
        goto out;
    }
    check_files(tw_conf_root(doc));
    if (devnull)
        (void)tw_conf_dump(tw_conf_root(doc), devnull);

    tw_settings_t *s;
    err.message[0] = '\0';
    if (tw_settings_from_doc(doc, "/usr/lib/twister/modules", &s, &err)) {
        if (!err.message[0])
            __builtin_trap();
        goto out;
    }
    static const char *const paths[] = {"/", "/hello", "/static/a.css", "/u/42"};
    for (size_t l = 0; l <= s->nlisteners; l++)
        for (size_t i = 0; i < 4; i++)
            (void)tw_router_find(s, l, "localhost", 9, paths[i], strlen(paths[i]), NULL);
    static const char *const names[] = {"hello", "static"};
    (void)tw_settings_check_modules(s, names, 2, &err);
    tw_settings_free(s);
out:
    for (int i = 0; i < NVARS; i++)
        free(fs.var[i]);
    return 0;
}
