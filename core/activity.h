/* activity.h — a worker's crash-safe "what am I doing" record.
 *
 * Each worker has one slot in memory shared with the master (MAP_SHARED,
 * mapped before fork). The HTTP engine writes the module, phase and request
 * line there before it calls into plugin code and clears it afterwards, so
 * when a worker dies of a signal the master can log what killed it
 * without trusting anything in the dead process. Fixed-size, NUL-terminated
 * fields; a torn read at worst garbles one line of log. */
#ifndef TWISTER_ACTIVITY_H
#define TWISTER_ACTIVITY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char module[64];   /* module name, "" when no plugin code is running */
    char phase[24];    /* "CONTENT", "init_worker", ... */
    char request[256]; /* the request line, possibly truncated */
} tw_activity_t;

/* Records that module is running phase for request (may be NULL/empty). */
void tw_activity_enter(tw_activity_t *a, const char *module, const char *phase, const char *request,
                       size_t request_len);
/* The same request goes on in another module or phase: only those two
 * fields change (the request line stays). */
void tw_activity_set_phase(tw_activity_t *a, const char *module, const char *phase);
/* Puts back a record saved by the caller (the end of a nested call). */
void tw_activity_restore(tw_activity_t *a, const tw_activity_t *saved);
/* Clears the record: no plugin code is running. */
void tw_activity_leave(tw_activity_t *a);
/* Formats the record as "in module X, phase Y, request 'Z'" into buf (empty
 * if the record is clear). */
void tw_activity_describe(const tw_activity_t *a, char *buf, size_t len);
/* For a record of a start-up hook (configure, register_phases,
 * init_worker; the request field then says where, e.g. "route
 * servers[0].routes[2]"): formats "module X: configure (route ...)" into
 * buf and returns true. Returns false with buf empty for any other
 * record. */
bool tw_activity_describe_hook(const tw_activity_t *a, char *buf, size_t len);

#endif
