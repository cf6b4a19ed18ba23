/* activity.c — see activity.h. */
#include "activity.h"

#include <stdio.h>
#include <string.h>

static void copy_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (!src)
        len = 0;
    if (len >= cap)
        len = cap - 1;
    /* Control bytes would make the crash log line ambiguous. */
    for (size_t i = 0; i < len; i++)
        dst[i] = (src[i] < 0x20 || src[i] == 0x7f) ? '?' : src[i];
    dst[len] = '\0';
}

/* The record is read by the master after the worker died at any
 * instruction: the module name goes first (cleared) and last (written), so
 * a crash never shows a module with a stale phase or request. The fences
 * keep the compiler from reordering the stores (one thread; the reader
 * only looks once the writer is dead). */
void tw_activity_enter(tw_activity_t *a, const char *module, const char *phase, const char *request,
                       size_t request_len)
{
    if (!a)
        return;
    a->module[0] = '\0';
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    copy_field(a->phase, sizeof a->phase, phase, phase ? strlen(phase) : 0);
    copy_field(a->request, sizeof a->request, request, request_len);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    copy_field(a->module, sizeof a->module, module, module ? strlen(module) : 0);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void tw_activity_set_phase(tw_activity_t *a, const char *module, const char *phase)
{
    if (!a)
        return;
    a->module[0] = '\0';
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    copy_field(a->phase, sizeof a->phase, phase, phase ? strlen(phase) : 0);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    copy_field(a->module, sizeof a->module, module, module ? strlen(module) : 0);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void tw_activity_restore(tw_activity_t *a, const tw_activity_t *saved)
{
    if (!a)
        return;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    a->module[0] = '\0';
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(a->phase, saved->phase, sizeof a->phase);
    memcpy(a->request, saved->request, sizeof a->request);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(a->module, saved->module, sizeof a->module);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void tw_activity_leave(tw_activity_t *a)
{
    if (!a)
        return;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    a->module[0] = '\0';
}

void tw_activity_describe(const tw_activity_t *a, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!a || !a->module[0])
        return;
    tw_activity_t copy;
    memcpy(&copy, a, sizeof copy);
    copy.module[sizeof copy.module - 1] = '\0';
    copy.phase[sizeof copy.phase - 1] = '\0';
    copy.request[sizeof copy.request - 1] = '\0';
    if (copy.request[0])
        snprintf(buf, len, "in module %s, phase %s, request '%s'", copy.module, copy.phase,
                 copy.request);
    else
        snprintf(buf, len, "in module %s, phase %s", copy.module, copy.phase);
}

bool tw_activity_describe_hook(const tw_activity_t *a, char *buf, size_t len)
{
    static const char *const hooks[] = {"configure", "register_phases", "init_worker",
                                        "exit_worker"};
    buf[0] = '\0';
    if (!a || !a->module[0])
        return false;
    tw_activity_t copy;
    memcpy(&copy, a, sizeof copy);
    copy.module[sizeof copy.module - 1] = '\0';
    copy.phase[sizeof copy.phase - 1] = '\0';
    copy.request[sizeof copy.request - 1] = '\0';
    bool is_hook = false;
    for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++)
        is_hook |= strcmp(copy.phase, hooks[i]) == 0;
    if (!is_hook)
        return false;
    if (copy.request[0])
        snprintf(buf, len, "module %s: %s (%s)", copy.module, copy.phase, copy.request);
    else
        snprintf(buf, len, "module %s: %s", copy.module, copy.phase);
    return true;
}
