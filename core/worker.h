/* worker.h — a worker process: loads its generation's modules, reports
 * READY (or the error) to the master, accepts and serves connections, and
 * drains on SIGQUIT. */
#ifndef TWISTER_WORKER_H
#define TWISTER_WORKER_H

#include <stdbool.h>
#include <sys/types.h>

#include "generation.h"
#include "twister/loop.h"

typedef struct {
    tw_generation_t *gen;
    unsigned index;       /* within the generation, from 0 */
    int control_fd;       /* SOCK_SEQPACKET to the master: "READY" / "ERROR ..." */
    void *activity;       /* crash-safe slot in memory shared with the master */
    bool drop_privileges; /* switch to uid/gid after start-up */
    uid_t uid;
    gid_t gid;
    unsigned connection_cap; /* stop accepting at this many connections */
} tw_worker_params_t;

/* What a worker is to the plugin API (module.h's tw_worker_t). */
struct tw_worker {
    tw_loop_t *loop;
    unsigned index;
    unsigned generation;
    tw_runtime_t *runtime;
    void *activity;
};

/* Lets tw_worker_global_conf answer while init_worker hooks run. */
void tw_worker_attach_runtime(tw_worker_t *w, tw_runtime_t *rt);
/* Records in the crash-safe slot that module runs hook (NULL clears). */
void tw_worker_set_activity(tw_worker_t *w, const char *module, const char *hook);

/* Runs the worker to completion; returns its exit status. */
int tw_worker_main(const tw_worker_params_t *params);

#endif
