/* crash_report.h — a worker's backtrace at the moment it dies of a fatal
 * signal.
 *
 * A worker installs a handler for SIGSEGV, SIGBUS, SIGILL, SIGFPE and
 * SIGABRT that writes the stack of the crashing code into a report slot
 * in memory shared with the master (like the activity slot), using only
 * async-signal-safe calls, and then lets the signal's default action
 * happen so that core dumps work as before. The master logs the report
 * next to the attribution line it builds from the activity slot.
 *
 * Each frame is written as the file of the object it belongs to and the
 * offset inside it, which is what `addr2line -f -e FILE OFFSET` takes:
 * frame #0 is the faulting instruction itself, the others are call sites
 * (the return address minus one, so that addr2line names the calling
 * line rather than the one after it). Module snapshots are loaded from
 * memfds, so the runtime tells the reporter the real file of each module
 * (tw_crash_report_scan). */
#ifndef TWISTER_CRASH_REPORT_H
#define TWISTER_CRASH_REPORT_H

#include <stddef.h>

#define TW_CRASH_REPORT_SIZE 6144

typedef struct {
    char text[TW_CRASH_REPORT_SIZE]; /* NUL-terminated lines; "" if no crash */
} tw_crash_report_t;

/* Installs the fatal-signal handlers of this process, writing into slot
 * (which must stay mapped for the process's life), and scans the objects
 * loaded so far. Unwinding is primed here (its first use may load
 * libgcc_s, which a signal handler must not do). Returns 0, or -1 with
 * errno set (no handler is then installed). */
int tw_crash_report_install(tw_crash_report_t *slot);
/* Rebuilds the table of loaded objects (call it after dlopen). For each
 * i, the object that contains anchors[i] is named names[i] in frames
 * (the strings are copied). Not async-signal-safe; a crash during the
 * scan still sees the previous table. */
void tw_crash_report_scan(const void *const *anchors, const char *const *names, size_t n);

#endif
