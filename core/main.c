/* main.c — the twister command line. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "activity.h"
#include "control_client.h"
#include "explain.h"
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
    fprintf(out,
            "usage: twister [-c FILE] [-t | -T | -M | --explain METHOD URL | -s SIGNAL] [-V] [-h]\n"
            "  -c FILE    configuration file (default conf/twister.yaml)\n"
            "  -t         check the configuration completely (loads the modules and runs\n"
            "             their configure hooks, binds nothing) and exit\n"
            "  -T         check, then print the effective configuration and phase table\n"
            "  -M         list the configured modules with their version and ABI\n"
            "  --explain METHOD URL\n"
            "             how the configuration handles one request: the server and\n"
            "             route that match and why, every phase's handlers and both\n"
            "             filter chains in order, the module settings in effect\n"
            "             (URL: http://host[:port]/path?query or /path?query)\n"
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

/* The child half of -t, -T and -M: the same code a reload runs in a
 * worker, without binding anything. */
/* What --explain asks about. */
typedef struct {
    const char *method, *url;
} explain_args_t;

static int check_in_child(tw_generation_t *g, tw_activity_t *slot, const char *config, char mode,
                          const explain_args_t *explain)
{
    tw_conf_error_t err = {{0}};
    tw_runtime_t *rt = tw_runtime_check(g, slot, &err);
    if (!rt) {
        fprintf(stderr, "twister: %s\n", err.message);
        fprintf(stderr, "twister: configuration %s test failed\n", config);
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
    } else if (mode == 'E') {
        int rc = tw_explain(rt, g, explain->method, explain->url, stdout);
        tw_runtime_free(rt);
        return rc;
    } else {
        printf("configuration OK\n");
    }
    tw_runtime_free(rt);
    return 0;
}

/* Waits for the checker child at most limit_ms. Returns its wait status,
 * or -1 if it is still running then. */
static int wait_bounded(pid_t pid, uint64_t limit_ms)
{
    struct timespec start, now, step = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return status;
        if (got < 0 && errno != EINTR)
            return 0; /* cannot happen for our own child; count it as success */
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t spent_ns =
            (int64_t)(now.tv_sec - start.tv_sec) * 1000000000 + (now.tv_nsec - start.tv_nsec);
        if (spent_ns >= (int64_t)limit_ms * 1000000)
            return -1;
        while (nanosleep(&step, &step) != 0 && errno == EINTR)
            ;
        step = (struct timespec){0, 10 * 1000 * 1000};
    }
}

/* -t, -T and -M. The config is parsed here (no plugin code runs in that),
 * but the modules' hooks run in a child with a time limit: a hook that
 * crashes or hangs is then reported with its module and where, and the
 * checker still exits 1 with a message instead of dying of the signal. */
static int check_config(const char *config, const char *module_dir, char mode,
                        const explain_args_t *explain)
{
    tw_conf_error_t err = {{0}};
    tw_log_set_role("check", 0, -1);
    tw_generation_t *g = tw_generation_prepare(config, module_dir, 0, &err);
    if (!g) {
        fprintf(stderr, "twister: %s\n", err.message);
        fprintf(stderr, "twister: configuration %s test failed\n", config);
        return 1;
    }
    uint64_t limit_ms = g->settings->timeouts.configure_ms;
    tw_activity_t *slot =
        mmap(NULL, sizeof *slot, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slot == MAP_FAILED) {
        fprintf(stderr, "twister: mmap: %s\n", strerror(errno));
        tw_generation_free(g);
        return 1;
    }
    memset(slot, 0, sizeof *slot);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "twister: fork: %s\n", strerror(errno));
        munmap(slot, sizeof *slot);
        tw_generation_free(g);
        return 1;
    }
    if (pid == 0) {
        int rc = check_in_child(g, slot, config, mode, explain);
        tw_generation_free(g);
        exit(rc);
    }
    int status = wait_bounded(pid, limit_ms);
    char hook[512];
    bool in_hook = tw_activity_describe_hook(slot, hook, sizeof hook);
    int rc = 0;
    if (status == -1) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        in_hook = tw_activity_describe_hook(slot, hook, sizeof hook);
        fprintf(stderr, "twister: %s did not return within %llu s\n",
                in_hook ? hook : "the configuration check",
                (unsigned long long)((limit_ms + 999) / 1000));
        rc = 1;
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        fprintf(stderr, "twister: %s crashed with SIG%s\n",
                in_hook ? hook : "the configuration check",
                sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
        rc = 1;
    } else if (WEXITSTATUS(status) != 0) {
        /* A hook that called exit() (or a sanitizer that stopped it). */
        if (in_hook)
            fprintf(stderr, "twister: %s exited with status %d\n", hook, WEXITSTATUS(status));
        rc = 1;
    }
    if (rc && (in_hook || status == -1 || WIFSIGNALED(status)))
        fprintf(stderr, "twister: configuration %s test failed\n", config);
    munmap(slot, sizeof *slot);
    tw_generation_free(g);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = "conf/twister.yaml";
    const char *signal_name = NULL;
    char mode = 0;
    explain_args_t explain = {0};
    static const struct option long_options[] = {{"explain", required_argument, NULL, 'E'},
                                                 {"help", no_argument, NULL, 'h'},
                                                 {"version", no_argument, NULL, 'V'},
                                                 {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tTMs:Vh", long_options, NULL)) != -1) {
        switch (opt) {
        case 'E':
            mode = 'E';
            explain.method = optarg;
            break;
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
    if (mode == 'E') {
        if (optind >= argc) {
            fprintf(stderr, "twister: --explain needs a method and a URL, e.g. --explain GET "
                            "http://example.com/path\n");
            return 2;
        }
        explain.url = argv[optind++];
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
        return check_config(config, module_dir, mode, &explain);
    return tw_master_run(config, module_dir);
}
