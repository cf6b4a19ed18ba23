/* log_setup.h — the server's side of the error log (plugins only see
 * twister/log.h). The log is per process: the master sets it up before
 * forking, each worker sets its role after the fork, before any plugin runs.
 * Until tw_log_open is called the log goes to stderr at level info. */
#ifndef TWISTER_LOG_SETUP_H
#define TWISTER_LOG_SETUP_H

#include "twister/log.h"

/* Logs to path (opened O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC|O_NONBLOCK, mode
 * 0644), or to stderr if path is NULL, "" or "stderr". Returns 0, or -1 with
 * errno set (the previous destination is then kept): EINVAL if path is
 * neither a regular file nor a character device (a FIFO, a directory). */
int tw_log_open(const char *path_or_stderr);
/* Writes messages at level and more severe; drops the others. */
void tw_log_set_level(tw_log_level_t level);
/* Maps "error", "warn" (or "warning"), "info", "debug" (any case) to a
 * level. Returns 0, or -1 with EINVAL for any other name. */
int tw_log_parse_level(const char *name, tw_log_level_t *out);
/* Sets the process tag of each line: "role", then "/generation" unless it is
 * 0, then "#index" if worker_index >= 0 — e.g. "master", "worker/3#0". */
void tw_log_set_role(const char *role, unsigned generation, int worker_index /* -1 none */);
/* Reopens the log file at the same path (SIGUSR1, after log rotation) and
 * keeps its fd number. A no-op on stderr. Returns 0, or -1 with errno set as
 * tw_log_open does; the old file is then kept and the failure logged to it. */
int tw_log_reopen(void);
/* Closes the log file; later lines go to stderr. */
void tw_log_close(void);

#endif
