/* os.c — see os.h. */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

unsigned tw_os_parse_cpu_max(const char *line)
{
    unsigned long long quota, period;
    if (strncmp(line, "max", 3) == 0)
        return 0;
    if (sscanf(line, "%llu %llu", &quota, &period) != 2 || period == 0 || quota == 0)
        return 0;
    return (unsigned)((quota + period - 1) / period);
}

/* The cgroup v2 path of this process is the "0::/path" line of
 * /proc/self/cgroup; quotas can sit on any ancestor, so walk up and keep the
 * tightest one. */
static unsigned cgroup_cpu_quota(void)
{
    char line[4096], path[4200];
    unsigned best = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return 0;
    char *rel = NULL;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) == 0) {
            rel = line + 3;
            rel[strcspn(rel, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
    if (!rel)
        return 0;
    for (;;) {
        snprintf(path, sizeof path, "/sys/fs/cgroup%s%scpu.max", rel,
                 rel[0] && rel[strlen(rel) - 1] == '/' ? "" : "/");
        FILE *q = fopen(path, "re");
        if (q) {
            char buf[128];
            if (fgets(buf, sizeof buf, q)) {
                unsigned n = tw_os_parse_cpu_max(buf);
                if (n && (!best || n < best))
                    best = n;
            }
            fclose(q);
        }
        char *slash = strrchr(rel, '/');
        if (!slash || slash == rel)
            break;
        *slash = '\0';
    }
    return best;
}

unsigned tw_os_available_cpus(void)
{
    unsigned n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = (unsigned)CPU_COUNT(&set);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    unsigned quota = cgroup_cpu_quota();
    if (quota && quota < n)
        n = quota;
    return n ? n : 1;
}

unsigned long tw_os_raise_nofile(unsigned long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t target = want;
        if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max)
            target = rl.rlim_max;
        struct rlimit nrl = {target, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nrl) == 0)
            rl.rlim_cur = target;
    }
    return rl.rlim_cur == RLIM_INFINITY ? want : (unsigned long)rl.rlim_cur;
}

int tw_os_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(addr.sun_path, path, len);
    /* An abstract socket is spelled with a leading '@'. */
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}
