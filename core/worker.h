/* worker.h — a worker process: the driver around one runtime. It starts
 * the runtime of its generation (runtime.h), reports READY (or the error)
 * to the master, accepts connections and hands them to the runtime's HTTP
 * server, and drains on SIGQUIT. Only the master includes this header:
 * the engine and the plugin API never call into the driver. */
#ifndef TWISTER_WORKER_H
#define TWISTER_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "activity.h"
#include "crash_report.h"
#include "generation.h"

typedef struct {
    tw_generation_t *gen;
    unsigned index;                  /* within the generation, from 0 */
    int control_fd;                  /* SOCK_SEQPACKET to the master: "READY" / "ERROR ..." */
    tw_activity_t *activity;         /* crash-safe slot in memory shared with the master */
    tw_crash_report_t *crash_report; /* where a fatal signal writes its backtrace (shared) */
    bool drop_privileges;            /* switch to uid/gid after start-up */
    uid_t uid;
    gid_t gid;
    unsigned connection_cap; /* stop accepting at this many connections */
    /* Signals that arrived between fork and tw_worker_main, when the
     * worker could not handle them yet. They are blocked on entry, and
     * stay so until the worker's loop reads them. */
    sigset_t handover_signals;
} tw_worker_params_t;

/* Runs the worker to completion; returns its exit status. Call it with
 * the signals the worker handles (SIGQUIT, SIGTERM, SIGINT, SIGUSR1,
 * SIGHUP) blocked: they reach the worker's loop, never their default
 * action. */
int tw_worker_main(const tw_worker_params_t *params);

#endif
