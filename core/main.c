/* main.c — the twister command line. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control_client.h"
#include "generation.h"
#include "log_setup.h"
#include "master.h"
#include "runtime.h"
#include "settings.h"
#include "twister/module.h"
#include "twister/twister.h"

#ifndef TW_INSTALL_MODULE_DIR
#define TW_INSTALL_MODULE_DIR "/usr/local/lib/twister/modules"
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: twister [-c FILE] [-t | -T | -M | -s SIGNAL] [-V] [-h]\n"
                 "  -c FILE    configuration file (default conf/twister.yaml)\n"
                 "  -t         check the configuration completely (loads the modules and runs\n"
                 "             their configure hooks, binds nothing) and exit\n"
                 "  -T         check, then print the effective configuration and phase table\n"
                 "  -M         list the configured modules with their version and ABI\n"
                 "  -s SIGNAL  tell the running master: reload, stop, quit or reopen\n"
                 "             (reload waits and prints whether it worked); -s status\n"
                 "             prints its generations, workers, quarantines, last reload\n"
                 "  -V         print the version\n"
                 "  -h         this help\n");
}

/* The default module directory: $TWISTER_MODULE_DIR, else the build tree's
 * modules/ next to a binary run from the build tree, else the installed one. */
static const char *default_module_dir(char *buf, size_t len)
{
    const char *env = getenv("TWISTER_MODULE_DIR");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/../modules", exe);
            struct stat st;
            char probe[PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s/../meson-info", exe);
            if (stat(probe, &st) == 0 && stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
                return buf;
        }
    }
    return TW_INSTALL_MODULE_DIR;
}

/* -t, -T and -M: the same code a reload runs in a worker, in this process,
 * without binding anything. */
static int check_config(const char *config, const char *module_dir, char mode)
{
    tw_conf_error_t err = {{0}};
    tw_log_set_role("check", 0, -1);
    tw_generation_t *g = tw_generation_prepare(config, module_dir, 0, &err);
    if (!g) {
        fprintf(stderr, "twister: %s\n", err.message);
        fprintf(stderr, "twister: configuration %s test failed\n", config);
        return 1;
    }
    tw_runtime_t *rt = tw_runtime_activate(g, NULL, &err);
    if (!rt) {
        fprintf(stderr, "twister: %s\n", err.message);
        fprintf(stderr, "twister: configuration %s test failed\n", config);
        tw_generation_free(g);
        return 1;
    }
    if (mode == 'T') {
        printf("# configuration file %s\n", config);
        tw_conf_dump(tw_conf_root(g->settings->doc), stdout);
        printf("\n# phase table\n");
        tw_runtime_print_phases(rt, stdout);
        tw_control_print_quarantine(config, stdout);
    } else if (mode == 'M') {
        tw_runtime_print_modules(rt, stdout);
    } else {
        printf("configuration OK\n");
    }
    tw_runtime_free(rt);
    tw_generation_free(g);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = "conf/twister.yaml";
    const char *signal_name = NULL;
    char mode = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:tTMs:Vh")) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 't':
        case 'T':
        case 'M':
            mode = (char)opt;
            break;
        case 's':
            signal_name = optarg;
            break;
        case 'V':
            printf("twister %s (plugin ABI %d.%d)\n", TW_VERSION, TW_ABI_MAJOR, TW_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "twister: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    char dirbuf[PATH_MAX + 16];
    const char *module_dir = default_module_dir(dirbuf, sizeof dirbuf);
    if (signal_name)
        return tw_control_signal(config, module_dir, signal_name);
    if (mode)
        return check_config(config, module_dir, mode);
    return tw_master_run(config, module_dir);
}
