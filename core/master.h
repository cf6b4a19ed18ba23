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

/* The client side of `twister -s SIGNAL`: signals the master named by the
 * config's pid file. For "reload" it waits for the outcome on the control
 * socket and prints "reload OK: generation N" or the error. Returns the
 * exit status for the command. */
int tw_master_signal(const char *config_path, const char *module_dir, const char *command);

/* For -T: if a master runs for config_path (its pid file) and has
 * modules in quarantine, prints them with their crashes to out as
 * comments; prints nothing otherwise. */
void tw_master_print_quarantine(const char *config_path, FILE *out);

#endif
