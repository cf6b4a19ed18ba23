/* master.h — the master process: owns the listeners, forks generations of
 * workers, reloads on SIGHUP, respawns crashed workers. It never runs
 * plugin code. */
#ifndef TWISTER_MASTER_H
#define TWISTER_MASTER_H

#include <stdio.h>

/* Runs the master until it is stopped. module_dir is the default for the
 * config's module_dir. Returns the process exit status (0 after a clean
 * stop, 1 if the first generation could not start). */
int tw_master_run(const char *config_path, const char *module_dir);

#endif
