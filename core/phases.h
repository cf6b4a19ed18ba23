/* phases.h — the phase registry and its compiled handler table.
 *
 * Modules register handlers (tw_phases_add*, module.h) from their
 * register_phases hook; the generation calls tw_phases_begin_module before
 * each hook so that every registration knows its module. Compiling sorts
 * each phase by (order, config_index, registration order) — ties follow
 * the order of `modules:` in the config, never registration order — and
 * lays all phases out in one flat array (nginx): a request keeps an index
 * into it, so suspending and resuming needs no other state. */
#ifndef TWISTER_PHASES_H
#define TWISTER_PHASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "twister/http.h"
#include "twister/module.h"

/* One compiled entry. Exactly one of the function pointers is set,
 * according to the table it is in. */
typedef struct {
    union {
        tw_handler_fn handler;
        tw_header_filter_fn header_filter;
        tw_body_filter_fn body_filter;
    } fn;
    const tw_module_t *module; /* who registered it (NULL: the core) */
    int order;                 /* as registered */
    bool on_error_pages;       /* a header filter that also sees the core's error pages */
} tw_phase_entry_t;

/* The compiled table: POST_READ, REWRITE, ACCESS and LOG handlers (the
 * FIND_ROUTE and CONTENT slots stay empty: the core runs those), then the
 * header filters, then the body filters, all in one array. */
typedef struct {
    tw_phase_entry_t *entries;
    size_t phase_start[TW_PHASE_COUNT + 1]; /* handlers of phase p: [start[p], start[p+1]) */
    size_t header_filter_start;             /* header filters: [hf_start, bf_start) */
    size_t body_filter_start;               /* body filters: [bf_start, count) */
    size_t count;
} tw_phase_table_t;

/* Creates an empty registry. NULL on ENOMEM. */
tw_phases_t *tw_phases_new(void);
/* Names the module whose register_phases hook runs next; config_index is
 * its position under `modules:` (ties in order are broken by it). */
void tw_phases_begin_module(tw_phases_t *phases, const tw_module_t *m, size_t config_index);
/* Builds the flat table. Returns 0, or -1 with a message in err (a bad
 * registration recorded earlier, or ENOMEM). Idempotent. */
int tw_phases_compile(tw_phases_t *phases, char *err, size_t errlen);
/* The compiled table (valid after a successful compile, until free). */
const tw_phase_table_t *tw_phases_table(const tw_phases_t *phases);
/* Prints the compiled table (for `twister -T`). */
void tw_phases_dump(const tw_phases_t *phases, FILE *out);
/* Frees the registry and its table. NULL is a no-op. */
void tw_phases_free(tw_phases_t *phases);
/* "POST_READ", "REWRITE", ... for logs and crash reports. */
const char *tw_phase_name(tw_phase_t phase);

#endif
