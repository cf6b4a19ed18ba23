/* os.h — small Linux facts and knobs the master needs: how many CPUs this
 * process may really use, the open-files limit, and systemd notification. */
#ifndef TWISTER_OS_H
#define TWISTER_OS_H

#include <stddef.h>

/* CPUs this process may use: the affinity mask, further limited by a
 * cgroup v2 cpu.max quota (rounded up). Always at least 1. */
unsigned tw_os_available_cpus(void);
/* Parses a cgroup v2 cpu.max line ("max 100000" or "150000 100000") into a
 * CPU count rounded up; 0 means no quota. Exposed for tests. */
unsigned tw_os_parse_cpu_max(const char *line);
/* Raises the soft RLIMIT_NOFILE towards want (capped by the hard limit) and
 * returns the soft limit now in force. */
unsigned long tw_os_raise_nofile(unsigned long want);
/* Sends state (e.g. "READY=1") to $NOTIFY_SOCKET if it is set. Returns 0,
 * or -1 with errno; a missing NOTIFY_SOCKET is not an error. */
int tw_os_sd_notify(const char *state);

#endif
