/* master_internal.h — the master's records and what its files share.
 *
 * The master is split by component, one file each: master.c (start-up,
 * signals, the stop, the pid file), master_generations.c (starting a
 * generation, switching to it once READY, draining and abandoning),
 * master_workers.c (forking a worker, its hand-over, its control channel,
 * reaping and respawning), master_listeners.c (the listening sockets,
 * matched by address across generations), crash_budget.c (crashes
 * attributed to modules, crash_policy, quarantine), control_server.c (the
 * control socket `twister -s` talks to) and master_status.c (the `-s
 * status` report). They share the one master_t of tw_master_run, passed
 * down; nothing here is global. Core-internal: master.h is the only entry
 * point for the rest of the core. */
#ifndef TWISTER_MASTER_INTERNAL_H
#define TWISTER_MASTER_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "activity.h"
#include "crash_report.h"
#include "generation.h"
#include "twister/loop.h"
#include "zone.h"

enum {
    GEN_STARTING,
    GEN_SERVING,
    GEN_DRAINING
};
enum {
    W_STARTING,
    W_READY,
    W_DRAINING
};

typedef struct master master_t;
typedef struct gen gen_t;

typedef struct worker {
    struct worker *next;
    master_t *master;
    gen_t *gen;
    pid_t pid;
    unsigned index;
    int control_fd;
    int state;
    uint64_t started_ms;
    /* Its answer to the latest status query (`-s status`). */
    unsigned long status_serial; /* the query it answered */
    unsigned long connections;
    unsigned long long requests;
} worker_t;

/* A respawn waiting for its back-off delay. */
typedef struct respawn {
    tw_timer_t timer;
    gen_t *gen;
    unsigned index;
} respawn_t;

/* What a worker leaves behind for the master when it dies: what it was
 * doing (activity.h) and its stack (crash_report.h). One shared mapping
 * per generation holds every worker's. */
typedef struct {
    tw_activity_t activity;
    tw_crash_report_t report;
} crash_slot_t;

/* How many of a module's crashes the master keeps to show (the log and
 * `-s status`); the budget itself counts them all. */
#define CRASH_RECORDS_KEPT 8

/* One crash the master attributed to a module, from the crash slot. */
typedef struct {
    time_t when;
    pid_t pid;
    unsigned generation;
    unsigned worker;
    int signo;
    char phase[24];
    char request[256];
} crash_record_t;

/* The crashes attributed to one module in one generation, and whether the
 * module is quarantined there. */
typedef struct {
    char module[64];
    unsigned total;       /* crashes attributed to it */
    uint64_t *recent;     /* loop times of the last crash_policy.max crashes, a ring */
    unsigned recent_len;  /* entries in use */
    unsigned recent_next; /* where the next one goes (the oldest once full) */
    crash_record_t records[CRASH_RECORDS_KEPT]; /* the latest, a ring by total */
    bool quarantined;                           /* disabled in this generation */
    unsigned quarantined_by;                    /* the generation that started without it */
    time_t quarantined_at;
} module_crashes_t;

struct gen {
    gen_t *next;
    master_t *master;
    tw_generation_t *g;
    int state;
    unsigned ready;
    unsigned alive;
    crash_slot_t *slots;      /* one per worker index, MAP_SHARED */
    unsigned *quick_deaths;   /* per worker index, for back-off */
    unsigned *start_failures; /* per worker index: respawns in a row that never got READY */
    respawn_t *respawns;      /* per worker index */
    tw_timer_t timer;         /* start-up timeout, then drain backstop */
    bool quarantine;          /* started by the master to quarantine a module, not a reload */
    uint64_t started_ms;
    module_crashes_t *crashes; /* per module that crashed or is quarantined here */
    size_t crash_count;
    char error[2048];
};

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
    int fd;
} listener_t;

/* A `twister -s reload` client waiting for the outcome. */
typedef struct waiter {
    struct waiter *next;
    int fd;
} waiter_t;

/* The longest command line a control client may send. */
#define CONTROL_COMMAND_MAX 64

/* A control client that has connected and not sent its whole command. */
typedef struct control_client {
    struct control_client *next;
    master_t *master;
    int fd;
    tw_timer_t timer; /* CONTROL_COMMAND_TIMEOUT_MS from the connect */
    size_t len;
    char command[CONTROL_COMMAND_MAX];
} control_client_t;

struct master {
    tw_loop_t *loop;
    const char *config_path;
    char config_realpath[PATH_MAX]; /* told to `-s reload`, which may name another file */
    const char *module_dir;
    unsigned generation_counter;
    gen_t *serving;
    gen_t *starting;
    gen_t *draining;   /* list */
    worker_t *workers; /* list */
    listener_t *listeners;
    size_t listener_count;
    bool reload_again;
    /* A module's budget ran out while a reload was starting: quarantine
     * it once the reload is over, unless the reload replaced its
     * generation. */
    gen_t *quarantine_from;
    char quarantine_module[64];
    waiter_t *waiters_now;      /* answered by the reload in progress */
    waiter_t *waiters_next;     /* arrived during it: answered by the next */
    bool first_generation_done; /* what ends later is a reload */
    char last_reload[2300];     /* "OK generation 3" / "ERROR ...", for -s status */
    time_t last_reload_at;
    int control_fd;
    char control_path[PATH_MAX];
    control_client_t *control_clients; /* list */
    char pid_path[PATH_MAX];
    bool stopping;
    uint64_t started_ms;
    /* The newest generation that failed to start, for `-s status`. */
    unsigned failed_number;
    time_t failed_at;
    char failed_why[1024];
    /* The status query in flight: its clients, how many workers have yet
     * to answer, and the bound on waiting for them. */
    waiter_t *status_clients;
    unsigned long status_serial;
    unsigned status_pending;
    tw_timer_t status_timer;
    int exit_status;
    unsigned long fd_limit; /* RLIMIT_NOFILE in force, for connection caps */
    tw_timer_t stop_timer;
    tw_zone_region_t *zones; /* shared zones, mapped before the first fork */
    /* The reload whose reply waits for the hand-off's first pass: its
     * `-s reload` clients, its text, the draining generation whose
     * workers report, how many have yet to, what they reported so far,
     * and the bound on waiting (master_generations.c). */
    waiter_t *handoff_waiters;
    char handoff_text[700];
    gen_t *handoff_gen;
    unsigned handoff_to; /* the generation they hand off to */
    unsigned handoff_left;
    unsigned long handoff_counts[3]; /* handed off, kept to finish, closed */
    tw_timer_t handoff_timer;
};

/* The server's counters in the shared-zone region (the master writes only
 * these core-owned words there, and never runs plugin code on them). */
static inline tw_server_stats_t *tw_master_stats(master_t *m)
{
    return tw_zone_region_stats(m->zones);
}

/* ---- master.c -------------------------------------------------------------- */

/* Stops the server: gracefully for SIGQUIT (workers drain), fast for the
 * others; every listener stops accepting at once. */
void tw_master_begin_stop(master_t *m, int sig);
/* Ends the master's loop once it is stopping and no worker is left. */
void tw_master_maybe_finish_stop(master_t *m);

/* ---- master_generations.c ---------------------------------------------------- */

/* Reads the config into a new generation and forks its workers (or, while
 * one is starting, reloads again after it). Errors before the fork leave
 * everything as it was and answer the `-s reload` clients. */
void tw_master_start_generation(master_t *m);
/* Opens g's listeners and forks its workers; g is taken over. For a
 * quarantine, quarantine_of is the generation g was derived from and
 * module the module it quarantines; both NULL for a reload. */
void tw_master_launch_generation(master_t *m, tw_generation_t *g, const gen_t *quarantine_of,
                                 const char *module);
/* Every worker of a starting generation is READY: it serves, and the one
 * it replaces drains. */
void tw_master_generation_ready(gen_t *ge);
/* A starting generation failed (why says how): its workers are stopped and
 * the serving one keeps serving. No effect once it is not starting. */
void tw_master_gen_failed(gen_t *ge, const char *why);
/* A draining worker reported its hand-off's first pass ("HANDOFF a b c"). */
void tw_master_handoff_reported(worker_t *w, unsigned long handed_off, unsigned long kept,
                                unsigned long closed);
/* Answers the reload waiting for the hand-off with what came in so far. */
void tw_master_handoff_reply(master_t *m);
/* The timer callback of m->handoff_timer: the bound on that wait. */
void tw_master_handoff_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg);
/* Frees a generation with no worker left, and its crash slots. */
void tw_master_free_gen(gen_t *ge);
/* Frees the shared zones that no live generation attaches any more. */
void tw_master_collect_zones(master_t *m);

/* ---- master_workers.c -------------------------------------------------------- */

/* Forks worker index of ge. Returns 0, or -1 (logged) if it could not. */
int tw_master_spawn_worker(master_t *m, gen_t *ge, unsigned index);
/* The timer callback of a respawn_t: spawns its worker again. */
void tw_master_respawn_fire(tw_loop_t *loop, tw_timer_t *t, void *arg);
/* The SIGCHLD handler: reaps the workers and acts on how they ended. */
void tw_master_on_sigchld(tw_loop_t *loop, int signo, void *arg);
/* The live worker with this pid, or NULL. */
worker_t *tw_master_find_worker(master_t *m, pid_t pid);
/* Forgets a reaped worker: closes its control channel and frees it. */
void tw_master_unlink_worker(master_t *m, worker_t *dead);
/* Sends sig to every worker of ge. */
void tw_master_signal_generation(master_t *m, gen_t *ge, int sig);
/* worker_connections, lowered to what the open-files limit allows. */
unsigned tw_master_connection_cap(const master_t *m, const tw_generation_t *g);

/* ---- master_listeners.c ------------------------------------------------------ */

/* Opens the listeners g needs that are not open yet and fills g's fds.
 * Returns 0, or -1 with err filled. */
int tw_master_open_listeners(master_t *m, tw_generation_t *g, char *err, size_t errlen);
/* Whether fd is one of ge's listeners (false for a NULL ge). */
bool tw_master_generation_uses_fd(const gen_t *ge, int fd);
/* Closes the listeners that no live generation uses any more. */
void tw_master_close_unused_listeners(master_t *m);

/* ---- crash_budget.c ---------------------------------------------------------- */

/* Counts the crash of worker index of ge (killed by signo) against the
 * module its crash slot names and applies crash_policy when the budget is
 * spent. Returns true if the server is stopping because of it. */
bool tw_master_count_crash(master_t *m, gen_t *ge, unsigned index, pid_t pid, int signo);
/* Starts a generation from ge's config with module disabled too. */
void tw_master_start_quarantine(master_t *m, gen_t *ge, const char *module);
/* Gives ge, the quarantine generation derived from quarantine_of, the
 * records of what quarantine_of had quarantined and of module, which it
 * quarantines now. ge->crashes has room for all of quarantine_of's. */
void tw_master_inherit_quarantine(gen_t *ge, const gen_t *quarantine_of, const char *module);
/* Writes "a, b" for the quarantined modules of ge to out; returns its
 * length (0: none). */
size_t tw_master_list_quarantined(const gen_t *ge, char *out, size_t len);
/* One crash record as one line of text. */
void tw_master_describe_record(const crash_record_t *r, char *buf, size_t len);
/* t as 2026-12-02T07:10:00Z. */
void tw_master_format_time(time_t t, char *buf, size_t len);

/* ---- control_server.c -------------------------------------------------------- */

/* Opens the control socket next to the pid file (none without one). */
void tw_master_open_control_socket(master_t *m);
/* Sends text to every client of list, closes them and empties it. */
void tw_master_answer_waiters(waiter_t **list, const char *text);
/* Forgets a control client that has not sent its command; its fd stays
 * open unless close_fd. */
void tw_master_control_client_free(control_client_t *c, bool close_fd);

/* ---- master_status.c --------------------------------------------------------- */

/* Takes fd, a `-s status` client, and queries the workers for it. */
void tw_master_start_status(master_t *m, int fd);
/* A worker answered the status query in flight. */
void tw_master_status_answered(master_t *m);
/* The timer callback of m->status_timer: replies with what has come in. */
void tw_master_status_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg);

#endif
