/* control_client.h — `twister -s SIGNAL` and the -T quarantine note: the
 * operator's side of the master's control socket (control_client.c). */
#ifndef TWISTER_CONTROL_CLIENT_H
#define TWISTER_CONTROL_CLIENT_H

#include <stddef.h>
#include <stdio.h>

/* The master's bounds, which its clients wait out: how long a new
 * generation may take to report READY, and how long a status answer waits
 * for the workers' numbers (a worker stuck in a plugin must not stall it). */
#define TW_STARTUP_TIMEOUT_MS 15000
#define TW_STATUS_TIMEOUT_MS 1000

/* The control socket's path for a pid file ("<pid_file>.sock") into out;
 * the master binds it, the client connects to it. */
void tw_control_path(const char *pid_file, char *out, size_t len);

/* The client side of `twister -s SIGNAL`: signals the master named by the
 * config's pid file. For "reload" it waits for the outcome on the control
 * socket and prints "reload OK: generation N" or the error. Returns the
 * exit status for the command. */
int tw_control_signal(const char *config_path, const char *module_dir, const char *command);

/* For -T: if a master runs for config_path (its pid file) and has
 * modules in quarantine, prints them with their crashes to out as
 * comments; prints nothing otherwise. */
void tw_control_print_quarantine(const char *config_path, FILE *out);

#endif
