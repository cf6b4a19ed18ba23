/* phases.c — the phase registry (tw_phases_add*) and its compilation into
 * one flat, sorted handler table. See phases.h. */
#include "phases.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Kinds beyond the phases: the two filter chains. */
enum {
    KIND_HEADER_FILTER = TW_PHASE_COUNT,
    KIND_BODY_FILTER,
    KIND_COUNT
};

typedef struct {
    unsigned kind;
    tw_phase_entry_t entry;
    size_t config_index;
    size_t seq; /* registration order, the last tie-breaker */
} registration_t;

struct tw_phases {
    registration_t *regs;
    size_t count, cap;
    const tw_module_t *module; /* set by tw_phases_begin_module */
    size_t config_index;
    int error; /* first failed registration (errno), reported by compile */
    tw_phase_table_t table;
    bool compiled;
};

static const char *const phase_names[TW_PHASE_COUNT] = {
    [TW_PHASE_POST_READ] = "POST_READ",   [TW_PHASE_REWRITE] = "REWRITE",
    [TW_PHASE_FIND_ROUTE] = "FIND_ROUTE", [TW_PHASE_ACCESS] = "ACCESS",
    [TW_PHASE_CONTENT] = "CONTENT",       [TW_PHASE_LOG] = "LOG",
};

const char *tw_phase_name(tw_phase_t phase)
{
    return (unsigned)phase < TW_PHASE_COUNT ? phase_names[phase] : "?";
}

tw_phases_t *tw_phases_new(void)
{
    return calloc(1, sizeof(tw_phases_t));
}

void tw_phases_free(tw_phases_t *phases)
{
    if (!phases)
        return;
    free(phases->regs);
    free(phases->table.entries);
    free(phases);
}

void tw_phases_begin_module(tw_phases_t *phases, const tw_module_t *m, size_t config_index)
{
    phases->module = m;
    phases->config_index = config_index;
}

static int add(tw_phases_t *phases, unsigned kind, void (*fn)(void), int order)
{
    if (!phases || !fn || order < TW_ORDER_FIRST || order > TW_ORDER_LAST) {
        errno = EINVAL;
        return -1;
    }
    if (phases->count == phases->cap) {
        size_t cap = phases->cap ? phases->cap * 2 : 16;
        registration_t *regs = realloc(phases->regs, cap * sizeof(*regs));
        if (!regs) {
            phases->error = ENOMEM;
            errno = ENOMEM;
            return -1;
        }
        phases->regs = regs;
        phases->cap = cap;
    }
    registration_t *reg = &phases->regs[phases->count];
    memset(reg, 0, sizeof(*reg));
    reg->kind = kind;
    reg->entry.module = phases->module;
    reg->entry.order = order;
    reg->config_index = phases->config_index;
    reg->seq = phases->count;
    /* The union members are all function pointers; storing through the
     * member of the right type keeps the call sites free of casts. */
    switch (kind) {
    case KIND_HEADER_FILTER:
        reg->entry.fn.header_filter = (tw_header_filter_fn)fn;
        break;
    case KIND_BODY_FILTER:
        reg->entry.fn.body_filter = (tw_body_filter_fn)fn;
        break;
    default:
        reg->entry.fn.handler = (tw_handler_fn)fn;
        break;
    }
    phases->count++;
    phases->compiled = false;
    return 0;
}

int tw_phases_add(tw_phases_t *phases, tw_phase_t phase, tw_handler_fn handler, int order)
{
    /* CONTENT handlers come from the descriptor, FIND_ROUTE is the core's. */
    if (phase != TW_PHASE_POST_READ && phase != TW_PHASE_REWRITE && phase != TW_PHASE_ACCESS &&
        phase != TW_PHASE_LOG) {
        errno = EINVAL;
        return -1;
    }
    return add(phases, (unsigned)phase, (void (*)(void))handler, order);
}

int tw_phases_add_header_filter(tw_phases_t *phases, tw_header_filter_fn filter, int order)
{
    return add(phases, KIND_HEADER_FILTER, (void (*)(void))filter, order);
}

int tw_phases_add_header_filter_always(tw_phases_t *phases, tw_header_filter_fn filter, int order)
{
    if (add(phases, KIND_HEADER_FILTER, (void (*)(void))filter, order) != 0)
        return -1;
    phases->regs[phases->count - 1].entry.on_error_pages = true;
    return 0;
}

int tw_phases_add_body_filter(tw_phases_t *phases, tw_body_filter_fn filter, int order)
{
    return add(phases, KIND_BODY_FILTER, (void (*)(void))filter, order);
}

static int compare_regs(const void *a, const void *b)
{
    const registration_t *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->entry.order != y->entry.order)
        return x->entry.order < y->entry.order ? -1 : 1;
    if (x->config_index != y->config_index)
        return x->config_index < y->config_index ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return 0;
}

int tw_phases_compile(tw_phases_t *phases, char *err, size_t errlen)
{
    if (phases->error) {
        if (err && errlen)
            snprintf(err, errlen, "registering phase handlers: %s", strerror(phases->error));
        return -1;
    }
    if (phases->compiled)
        return 0;
    tw_phase_entry_t *entries = NULL;
    if (phases->count) {
        entries = malloc(phases->count * sizeof(*entries));
        if (!entries) {
            if (err && errlen)
                snprintf(err, errlen, "compiling the phase table: out of memory");
            return -1;
        }
        /* The sort works on the registrations (stable thanks to seq); the
         * table keeps only what the request engine touches. */
        qsort(phases->regs, phases->count, sizeof(*phases->regs), compare_regs);
    }
    size_t starts[KIND_COUNT + 1] = {0};
    for (size_t i = 0; i < phases->count; i++) {
        entries[i] = phases->regs[i].entry;
        starts[phases->regs[i].kind + 1]++;
    }
    for (unsigned k = 1; k <= KIND_COUNT; k++)
        starts[k] += starts[k - 1];

    free(phases->table.entries);
    phases->table.entries = entries;
    for (unsigned p = 0; p <= TW_PHASE_COUNT; p++)
        phases->table.phase_start[p] = starts[p];
    phases->table.header_filter_start = starts[KIND_HEADER_FILTER];
    phases->table.body_filter_start = starts[KIND_BODY_FILTER];
    phases->table.count = phases->count;
    phases->compiled = true;
    return 0;
}

const tw_phase_table_t *tw_phases_table(const tw_phases_t *phases)
{
    return phases && phases->compiled ? &phases->table : NULL;
}

static void dump_range(const tw_phase_table_t *t, size_t from, size_t to, const char *title,
                       FILE *out)
{
    fprintf(out, "%s:", title);
    if (from == to) {
        fprintf(out, " (none)\n");
        return;
    }
    fputc('\n', out);
    for (size_t i = from; i < to; i++) {
        const tw_phase_entry_t *e = &t->entries[i];
        const char *name = e->module && e->module->name ? e->module->name : "core";
        fprintf(out, "  %4d  %s\n", e->order, name);
    }
}

void tw_phases_dump(const tw_phases_t *phases, FILE *out)
{
    const tw_phase_table_t *t = tw_phases_table(phases);
    if (!t) {
        fprintf(out, "phase table not compiled\n");
        return;
    }
    for (unsigned p = 0; p < TW_PHASE_COUNT; p++) {
        if (p == TW_PHASE_FIND_ROUTE) {
            fprintf(out, "FIND_ROUTE:\n  core  (route lookup; 404/405/413)\n");
            continue;
        }
        if (p == TW_PHASE_CONTENT) {
            fprintf(out, "CONTENT:\n  route  (the route's handler module)\n");
            /* Filters run on the way out, between CONTENT and LOG. */
            dump_range(t, t->header_filter_start, t->body_filter_start, "header filters", out);
            dump_range(t, t->body_filter_start, t->count, "body filters", out);
            continue;
        }
        dump_range(t, t->phase_start[p], t->phase_start[p + 1], phase_names[p], out);
    }
}
