/* crash_budget.c — crashes attributed to modules, and what crash_policy
 * does about them.
 *
 * A worker that dies on a signal leaves in its crash slot the module and
 * phase it was in. This is the master's bookkeeping of those crashes per
 * module and generation: the budget (crash_policy: max crashes within a
 * time), the last few records for the log and `-s status`, and the action
 * when a budget is spent — respawn as usual, stop the server, or
 * quarantine: start a generation of the same config with the module
 * disabled, which carries the quarantined modules' records along. It is
 * apart from the reaping so that a crash's verdict reads in one place. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "master_internal.h"
#include "settings.h" /* tw_crash_action_t only: settings are read through generation.h */
#include "twister/log.h"

static module_crashes_t *module_crashes(gen_t *ge, const char *module)
{
    for (size_t i = 0; i < ge->crash_count; i++)
        if (strcmp(ge->crashes[i].module, module) == 0)
            return &ge->crashes[i];
    module_crashes_t *grown = realloc(ge->crashes, (ge->crash_count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    ge->crashes = grown;
    module_crashes_t *mc = &ge->crashes[ge->crash_count++];
    memset(mc, 0, sizeof *mc);
    snprintf(mc->module, sizeof mc->module, "%s", module);
    return mc;
}

void tw_master_format_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "worker 0 (pid 4242) of generation 1, SIGSEGV, phase CONTENT, request
 * 'GET /crash HTTP/1.1', at 2026-12-02T07:10:00Z" */
void tw_master_describe_record(const crash_record_t *r, char *buf, size_t len)
{
    char when[32];
    tw_master_format_time(r->when, when, sizeof when);
    const char *sig = sigabbrev_np(r->signo);
    snprintf(buf, len, "worker %u (pid %d) of generation %u, SIG%s, phase %s%s%s%s, at %s",
             r->worker, (int)r->pid, r->generation, sig ? sig : "?", r->phase,
             r->request[0] ? ", request '" : "", r->request, r->request[0] ? "'" : "", when);
}

static void log_records(const module_crashes_t *mc)
{
    unsigned kept = mc->total < CRASH_RECORDS_KEPT ? mc->total : CRASH_RECORDS_KEPT;
    for (unsigned k = mc->total - kept; k < mc->total; k++) {
        char text[512];
        tw_master_describe_record(&mc->records[k % CRASH_RECORDS_KEPT], text, sizeof text);
        tw_log_error("  crash %u of module %s: %s", k + 1, mc->module, text);
    }
}

/* Starts a generation from ge's config read in which module is disabled
 * too. ge keeps serving until it is READY. */
void tw_master_start_quarantine(master_t *m, gen_t *ge, const char *module)
{
    if (m->starting && m->starting->quarantine && tw_generation_disabled(m->starting->g, module))
        return; /* on its way already */
    if (m->starting) {
        tw_log_error("a reload is starting: quarantining module %s waits for its outcome", module);
        m->quarantine_from = ge;
        snprintf(m->quarantine_module, sizeof m->quarantine_module, "%s", module);
        return;
    }
    const char *names[ge->g->disabled_count + 1];
    for (size_t i = 0; i < ge->g->disabled_count; i++)
        names[i] = ge->g->disabled[i];
    names[ge->g->disabled_count] = module;
    tw_generation_t *g = tw_generation_quarantine(ge->g, m->generation_counter + 1, names,
                                                  ge->g->disabled_count + 1);
    if (!g) {
        tw_log_error("cannot quarantine module %s: %s; generation %u keeps serving", module,
                     strerror(errno), ge->g->number);
        return;
    }
    tw_master_launch_generation(m, g, ge, module);
}

/* Counts a crash that the slot attributes to a module against the
 * module's budget and applies crash_policy when the budget is spent.
 * Returns true if the server is stopping because of it. */
bool tw_master_count_crash(master_t *m, gen_t *ge, unsigned index, pid_t pid, int signo)
{
    tw_activity_t a;
    memcpy(&a, &ge->slots[index].activity, sizeof a);
    a.module[sizeof a.module - 1] = a.phase[sizeof a.phase - 1] = '\0';
    a.request[sizeof a.request - 1] = '\0';
    if (!a.module[0])
        return false; /* not in plugin code: nobody's budget */
    module_crashes_t *mc = module_crashes(ge, a.module);
    unsigned max = tw_generation_crash_max(ge->g);
    if (!mc || (!mc->recent && !(mc->recent = calloc(max, sizeof *mc->recent))))
        return false;
    crash_record_t *r = &mc->records[mc->total++ % CRASH_RECORDS_KEPT];
    *r = (crash_record_t){.when = time(NULL),
                          .pid = pid,
                          .generation = ge->g->number,
                          .worker = index,
                          .signo = signo};
    memcpy(r->phase, a.phase, sizeof r->phase);
    memcpy(r->request, a.request, sizeof r->request);

    uint64_t now = tw_loop_now(m->loop), within = tw_generation_crash_within_ms(ge->g);
    mc->recent[mc->recent_next] = now;
    mc->recent_next = (mc->recent_next + 1) % max;
    if (mc->recent_len < max)
        mc->recent_len++;
    if (mc->recent_len < max || now - mc->recent[mc->recent_next % max] > within)
        return false;
    /* Spent: the next budget starts empty. */
    mc->recent_len = 0;
    mc->recent_next = 0;
    static const char *const actions[] = {"quarantine", "restart", "stop"};
    int action = tw_generation_crash_action(ge->g);
    tw_log_error("module %s crashed workers %u times within %llu s (crash_policy: max %u, "
                 "within %llu s, action %s)",
                 mc->module, max, (unsigned long long)(within / 1000), max,
                 (unsigned long long)(within / 1000), actions[action]);
    log_records(mc);
    switch (action) {
    case TW_CRASH_RESTART:
        tw_log_error("module %s: respawning its workers as for any crash (crash_policy action "
                     "restart)",
                     mc->module);
        return false;
    case TW_CRASH_STOP:
        tw_log_error("module %s: stopping the server (crash_policy action stop)", mc->module);
        tw_master_begin_stop(m, SIGQUIT);
        m->exit_status = 1;
        return true;
    default:
        tw_log_error("QUARANTINE of module %s: starting a generation without it; its routes "
                     "will answer 503 and its phase handlers and filters are skipped until the "
                     "next successful reload",
                     mc->module);
        tw_master_start_quarantine(m, ge, mc->module);
        return false;
    }
}

/* Carries the quarantine over into the generation that adds module to it. */
void tw_master_inherit_quarantine(gen_t *ge, const gen_t *quarantine_of, const char *module)
{
    /* What was quarantined stays so, with its records, and module
     * joins it: the records are what an operator needs to see. */
    for (size_t i = 0; i < quarantine_of->crash_count; i++) {
        const module_crashes_t *from = &quarantine_of->crashes[i];
        if (!from->quarantined && strcmp(from->module, module) != 0)
            continue;
        module_crashes_t *mc = &ge->crashes[ge->crash_count++];
        *mc = *from;
        mc->recent = NULL;
        mc->recent_len = mc->recent_next = 0;
        if (!from->quarantined) {
            mc->quarantined = true;
            mc->quarantined_by = ge->g->number;
            mc->quarantined_at = time(NULL);
        }
    }
}

/* Appends ", module X" for each quarantined module of ge to out. */
size_t tw_master_list_quarantined(const gen_t *ge, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ge->crash_count && n < len; i++)
        if (ge->crashes[i].quarantined)
            n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "", ge->crashes[i].module);
    return n;
}
