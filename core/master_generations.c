/* master_generations.c — a generation's life in the master: start,
 * switch, drain.
 *
 *   STARTING  forked, waiting for every worker to report READY (bounded)
 *   SERVING   the one current generation
 *   DRAINING  told to finish in-flight requests and exit (SIGQUIT)
 *
 * A reload builds a new generation next to the serving one; only when all
 * its workers are READY does the old one drain. If any worker fails (an
 * init error, a crash, the start-up timeout) the new generation is killed
 * and the old one never noticed. This is the one place that moves a
 * generation between those states and answers the `-s reload` clients
 * with the outcome; generation.c prepares the generation itself. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control_client.h" /* TW_STARTUP_TIMEOUT_MS */
#include "master_internal.h"
#include "os.h"
#include "twister/log.h"

/* How long the workers of a generation that failed to start get to run
 * their exit_worker hooks after SIGTERM before they are killed. */
#define ABANDON_GRACE_MS 2000
/* How long a `-s reload` reply waits for the draining workers to say what
 * their hand-off did (it takes milliseconds; a worker stuck in a plugin
 * must not hold the reply). */
#define HANDOFF_REPLY_WAIT_MS 3000

void tw_master_collect_zones(master_t *m)
{
    unsigned oldest = m->generation_counter + 1;
    gen_t *live[2] = {m->serving, m->starting};
    for (size_t i = 0; i < 2; i++)
        if (live[i] && live[i]->g->number < oldest)
            oldest = live[i]->g->number;
    for (gen_t *d = m->draining; d; d = d->next)
        if (d->g->number < oldest)
            oldest = d->g->number;
    tw_zone_region_collect(m->zones, oldest);
}

void tw_master_free_gen(gen_t *ge)
{
    master_t *m = ge->master;
    tw_timer_stop(m->loop, &ge->timer);
    for (unsigned i = 0; i < ge->g->workers; i++)
        tw_timer_stop(m->loop, &ge->respawns[i].timer);
    if (ge->slots)
        munmap(ge->slots, sizeof(crash_slot_t) * ge->g->workers);
    free(ge->quick_deaths);
    free(ge->start_failures);
    free(ge->respawns);
    for (size_t i = 0; i < ge->crash_count; i++)
        free(ge->crashes[i].recent);
    free(ge->crashes);
    if (m->quarantine_from == ge)
        m->quarantine_from = NULL;
    if (m->handoff_gen == ge)
        m->handoff_gen = NULL; /* its reply goes out with what came */
    tw_generation_free(ge->g);
    free(ge);
}

static void drain_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    gen_t *ge = arg;
    (void)loop;
    (void)t;
    tw_log_warn("generation %u still has workers after the shutdown timeout; killing them",
                ge->g->number);
    tw_master_signal_generation(ge->master, ge, SIGKILL);
}

/* The end of an abandoned generation's grace (see gen_failed). */
static void abandon_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    gen_t *ge = arg;
    (void)loop;
    (void)t;
    tw_master_signal_generation(ge->master, ge, SIGKILL);
}

/* ---- the reload hand-off -------------------------------------------------------- */

/* Sends text and fd (SCM_RIGHTS) as one message on a worker's control
 * socket. Returns 0, or -1. */
static int send_with_fd(int control_fd, const char *text, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    ssize_t rc;
    do
        rc = sendmsg(control_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (rc < 0 && errno == EINTR);
    return rc == (ssize_t)iov.iov_len ? 0 : -1;
}

/* Gives old worker w a channel to each READY worker of to (a socketpair:
 * one end to each, over their control sockets; the master keeps neither,
 * so a channel dies with either of its workers). Old worker k starts at
 * new worker k, so that several old workers spread over the new ones.
 * Returns how many channels w got. */
static unsigned give_channels(master_t *m, worker_t *w, unsigned k, gen_t *to)
{
    worker_t *ready[256];
    unsigned n = 0, given = 0;
    for (worker_t *x = m->workers; x && n < 256; x = x->next)
        if (x->gen == to && x->state == W_READY && x->control_fd >= 0)
            ready[n++] = x;
    for (unsigned i = 0; i < n; i++) {
        worker_t *target = ready[(k + i) % n];
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
            tw_log_warn("reload hand-off: socketpair: %s", strerror(errno));
            break;
        }
        if (send_with_fd(w->control_fd, "HANDOFF", sv[0]) == 0 &&
            send_with_fd(target->control_fd, "ADOPT", sv[1]) == 0)
            given++;
        close(sv[0]);
        close(sv[1]);
    }
    return given;
}

void tw_master_handoff_reply(master_t *m)
{
    tw_timer_stop(m->loop, &m->handoff_timer);
    if (!m->handoff_waiters && !m->handoff_text[0])
        return;
    char text[900], missing[64] = "";
    size_t len = strcspn(m->handoff_text, "\n");
    if (m->handoff_left)
        snprintf(missing, sizeof missing, "; %u old worker%s did not answer", m->handoff_left,
                 m->handoff_left == 1 ? "" : "s");
    snprintf(text, sizeof text,
             "%.*s (connections: %lu handed off, %lu kept to finish, %lu closed%s)\n", (int)len,
             m->handoff_text, m->handoff_counts[0], m->handoff_counts[1], m->handoff_counts[2],
             missing);
    tw_log_info("reload to generation %u: %lu idle connection%s handed off, %lu kept to finish "
                "on the old generation, %lu closed%s",
                m->handoff_to, m->handoff_counts[0], m->handoff_counts[0] == 1 ? "" : "s",
                m->handoff_counts[1], m->handoff_counts[2],
                m->handoff_left ? " (not every old worker answered)" : "");
    tw_master_answer_waiters(&m->handoff_waiters, text);
    m->handoff_text[0] = '\0';
    m->handoff_gen = NULL;
    m->handoff_left = 0;
}

void tw_master_handoff_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    (void)loop;
    (void)t;
    tw_master_handoff_reply(arg);
}

void tw_master_handoff_reported(worker_t *w, unsigned long handed_off, unsigned long kept,
                                unsigned long closed)
{
    master_t *m = w->master;
    if (w->gen != m->handoff_gen || m->handoff_left == 0)
        return;
    m->handoff_counts[0] += handed_off;
    m->handoff_counts[1] += kept;
    m->handoff_counts[2] += closed;
    if (--m->handoff_left == 0)
        tw_master_handoff_reply(m);
}

/* Tells ge's workers to drain: with the hand-off on (to's config), each
 * first gets its channels to the workers of to, then DRAIN on the same
 * socket (a signal could overtake the channels); without, or when the
 * socket fails, SIGQUIT. Returns how many drain with a hand-off. */
static unsigned tell_drain(master_t *m, gen_t *ge, gen_t *to)
{
    bool handoff = to && tw_generation_handoff(to->g);
    unsigned k = 0, told = 0;
    for (worker_t *w = m->workers; w; w = w->next) {
        if (w->gen != ge)
            continue;
        bool done = false;
        if (w->control_fd >= 0) {
            unsigned given = handoff ? give_channels(m, w, k++, to) : 0;
            ssize_t rc = send(w->control_fd, "DRAIN", 5, MSG_DONTWAIT | MSG_NOSIGNAL);
            done = rc == 5;
            if (done && given)
                told++;
        }
        if (!done)
            kill(w->pid, SIGQUIT);
    }
    return told;
}

/* ---- draining ------------------------------------------------------------------ */

static void start_draining(master_t *m, gen_t *ge, gen_t *to)
{
    ge->state = GEN_DRAINING;
    for (unsigned i = 0; i < ge->g->workers; i++)
        tw_timer_stop(m->loop, &ge->respawns[i].timer);
    for (worker_t *w = m->workers; w; w = w->next)
        if (w->gen == ge)
            w->state = W_DRAINING;
    unsigned reporting = tell_drain(m, ge, to);
    if (reporting && m->handoff_text[0]) {
        /* The reply of this reload waits for these workers' first pass. */
        m->handoff_gen = ge;
        m->handoff_left = reporting;
        tw_timer_start(m->loop, &m->handoff_timer, HANDOFF_REPLY_WAIT_MS);
    }
    tw_timer_init(&ge->timer, drain_timeout, ge);
    tw_timer_start(m->loop, &ge->timer, tw_generation_drain_bound_ms(ge->g) + 5000);
    ge->next = m->draining;
    m->draining = ge;
    if (ge->alive == 0) {
        /* Nothing to wait for (all its workers were already gone). */
        tw_log_info("generation %u has drained", ge->g->number);
        m->draining = ge->next;
        tw_master_free_gen(ge);
        return;
    }
    /* Bound how many old generations drain at once: the oldest go first. */
    unsigned count = 0, max = tw_generation_max_draining(m->serving ? m->serving->g : ge->g);
    for (gen_t *d = m->draining; d; d = d->next) {
        if (++count > max) {
            tw_log_warn("more than %u generations draining: stopping generation %u now", max,
                        d->g->number);
            tw_master_signal_generation(m, d, SIGTERM);
        }
    }
}

/* The end of a generation's start, READY or not: answers the `-s reload`
 * clients waiting for it, remembers a reload's outcome for `-s status`,
 * and starts what waited for it. quarantine: the generation was the
 * master's own, to quarantine a module, not a reload. */
static void finish_reload(master_t *m, bool quarantine, const char *text)
{
    tw_master_answer_waiters(&m->waiters_now, text);
    m->waiters_now = m->waiters_next;
    m->waiters_next = NULL;
    tw_os_sd_notify("READY=1");
    if (!quarantine && m->first_generation_done) {
        snprintf(m->last_reload, sizeof m->last_reload, "%.*s", (int)strcspn(text, "\n"), text);
        m->last_reload_at = time(NULL);
    }
    m->first_generation_done = true;
    if (m->stopping)
        return;
    gen_t *from = m->quarantine_from;
    m->quarantine_from = NULL;
    if (from && from == m->serving) {
        /* The reload failed: the budget that ran out meanwhile still counts. */
        tw_master_start_quarantine(m, from, m->quarantine_module);
    } else if (from) {
        tw_log_info("module %s is not quarantined: the reload replaced generation %u",
                    m->quarantine_module, from->g->number);
    }
    if (m->reload_again && !m->starting) {
        m->reload_again = false;
        tw_master_start_generation(m);
    }
}

void tw_master_generation_ready(gen_t *ge)
{
    master_t *m = ge->master;
    tw_timer_stop(m->loop, &ge->timer);
    gen_t *old = m->serving;
    ge->state = GEN_SERVING;
    m->serving = ge;
    m->starting = NULL;
    char quarantined[512];
    __atomic_store_n(&tw_master_stats(m)->generation, ge->g->number, __ATOMIC_RELAXED);
    __atomic_store_n(&tw_master_stats(m)->config_hash, ge->g->config_hash, __ATOMIC_RELAXED);
    if (old)
        tw_counter_add(&tw_master_stats(m)->reloads_ok, 1);
    tw_log_info("generation %u is serving with %u worker%s", ge->g->number, ge->g->workers,
                ge->g->workers == 1 ? "" : "s");
    if (tw_master_list_quarantined(ge, quarantined, sizeof quarantined))
        tw_log_error("generation %u is serving with module%s %s QUARANTINED: %s routes answer "
                     "503, %s phase handlers and filters are skipped; a reload lifts it",
                     ge->g->number, strchr(quarantined, ',') ? "s" : "", quarantined,
                     strchr(quarantined, ',') ? "their" : "its",
                     strchr(quarantined, ',') ? "their" : "its");
    char text[700];
    int n = snprintf(text, sizeof text, "OK generation %u", ge->g->number);
    if (old && !ge->quarantine &&
        tw_master_list_quarantined(old, quarantined, sizeof quarantined)) {
        tw_log_info("generation %u lifts the quarantine of module%s %s", ge->g->number,
                    strchr(quarantined, ',') ? "s" : "", quarantined);
        snprintf(text + n, sizeof text - (size_t)n, " (lifted the quarantine of module%s %s)",
                 strchr(quarantined, ',') ? "s" : "", quarantined);
    }
    strcat(text, "\n");
    if (old) {
        tw_log_info("generation %u is draining", old->g->number);
        /* A reply still waiting for an earlier hand-off goes now. */
        tw_master_handoff_reply(m);
        snprintf(m->handoff_text, sizeof m->handoff_text, "%s", text);
        m->handoff_to = ge->g->number;
        memset(m->handoff_counts, 0, sizeof m->handoff_counts);
        start_draining(m, old, ge);
        if (m->handoff_gen == old) {
            /* This reload's clients get their answer with the counts. */
            m->handoff_waiters = m->waiters_now;
            m->waiters_now = NULL;
        } else {
            m->handoff_text[0] = '\0';
        }
    }
    tw_master_close_unused_listeners(m);
    finish_reload(m, ge->quarantine, text);
}

void tw_master_gen_failed(gen_t *ge, const char *why)
{
    master_t *m = ge->master;
    if (ge->state != GEN_STARTING)
        return;
    bool quarantine = ge->quarantine;
    snprintf(ge->error, sizeof ge->error, "%s", why);
    tw_log_error("generation %u failed to start: %s", ge->g->number, why);
    m->failed_number = ge->g->number;
    m->failed_at = time(NULL);
    snprintf(m->failed_why, sizeof m->failed_why, "%s", why);
    tw_counter_add(&tw_master_stats(m)->reloads_failed, 1);
    tw_timer_stop(m->loop, &ge->timer);
    /* Stop its workers: SIGTERM first, so that those whose init_worker ran
     * run exit_worker too (a worker still inside a hook has SIGTERM
     * blocked until its loop runs); SIGKILL after a short grace for the
     * rest. They are reaped by SIGCHLD and the generation is freed once
     * none is left. */
    ge->state = GEN_DRAINING;
    tw_master_signal_generation(m, ge, SIGTERM);
    tw_timer_init(&ge->timer, abandon_timeout, ge);
    tw_timer_start(m->loop, &ge->timer, ABANDON_GRACE_MS);
    m->starting = NULL;
    ge->next = m->draining;
    m->draining = ge;
    if (ge->alive == 0) {
        m->draining = ge->next;
        tw_master_free_gen(ge);
    }
    tw_master_close_unused_listeners(m);
    if (m->serving)
        tw_log_error("keeping generation %u", m->serving->g->number);
    char text[2200];
    snprintf(text, sizeof text, "ERROR %s\n", why);
    finish_reload(m, quarantine, text);
    if (!m->serving && !m->stopping) {
        m->exit_status = 1;
        m->stopping = true;
        tw_master_maybe_finish_stop(m);
    }
}

static void startup_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    gen_t *ge = arg;
    (void)loop;
    (void)t;
    char why[1024];
    snprintf(why, sizeof why, "workers did not report ready within %d s",
             TW_STARTUP_TIMEOUT_MS / 1000);
    /* Name the hook a stuck worker is in (the first one found). */
    for (worker_t *w = ge->master->workers; w; w = w->next) {
        char hook[512];
        if (w->gen == ge && w->state == W_STARTING &&
            tw_activity_describe_hook(&ge->slots[w->index].activity, hook, sizeof hook)) {
            snprintf(why, sizeof why, "%s did not return within %d s (worker %u, during start-up)",
                     hook, TW_STARTUP_TIMEOUT_MS / 1000, w->index);
            break;
        }
    }
    tw_master_gen_failed(ge, why);
}

/* Reads the config into a new generation and forks its workers. Errors
 * before the fork (config, snapshots) leave everything as it was. */
void tw_master_start_generation(master_t *m)
{
    tw_conf_error_t err = {{0}};
    if (m->starting) {
        m->reload_again = true;
        return;
    }
    tw_generation_t *g =
        tw_generation_prepare(m->config_path, m->module_dir, m->generation_counter + 1, &err);
    if (!g) {
        char text[2200];
        tw_counter_add(&tw_master_stats(m)->reloads_failed, 1);
        tw_log_error("reload failed: %s", err.message);
        if (m->serving)
            tw_log_error("keeping generation %u", m->serving->g->number);
        snprintf(text, sizeof text, "ERROR %s\n", err.message);
        finish_reload(m, false, text);
        return;
    }
    tw_master_launch_generation(m, g, NULL, NULL);
}

/* Opens g's listeners and forks its workers. For a quarantine
 * (quarantine_of set), g is quarantine_of's config with module disabled
 * as well, and the crash records of the quarantined modules go with it.
 * Errors before the fork (listeners, memory) leave everything as it was. */
void tw_master_launch_generation(master_t *m, tw_generation_t *g, const gen_t *quarantine_of,
                                 const char *module)
{
    bool quarantine = quarantine_of != NULL;
    char text[2200];
    char why[1024];
    if (tw_master_open_listeners(m, g, why, sizeof why) != 0) {
        if (!quarantine)
            tw_counter_add(&tw_master_stats(m)->reloads_failed, 1);
        tw_log_error("%s failed: %s", quarantine ? "quarantine" : "reload", why);
        snprintf(text, sizeof text, "ERROR %s\n", why);
        tw_generation_free(g);
        tw_master_close_unused_listeners(m);
        if (!quarantine)
            finish_reload(m, false, text);
        return;
    }
    if (m->serving)
        tw_generation_follow(g, m->serving->g);
    g->zones = m->zones;
    if (tw_zone_region_cost(tw_generation_shared_zones(g)) != tw_zone_region_size(m->zones))
        tw_log_warn("shared_zones: the region stays %zu bytes until a restart",
                    tw_zone_region_size(m->zones));
    gen_t *ge = calloc(1, sizeof *ge);
    unsigned n = g->workers;
    if (ge) {
        ge->slots = mmap(NULL, sizeof(crash_slot_t) * n, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ge->quick_deaths = calloc(n, sizeof *ge->quick_deaths);
        ge->start_failures = calloc(n, sizeof *ge->start_failures);
        ge->respawns = calloc(n, sizeof *ge->respawns);
        if (quarantine)
            ge->crashes = calloc(quarantine_of->crash_count + 1, sizeof *ge->crashes);
    }
    if (!ge || ge->slots == MAP_FAILED || !ge->quick_deaths || !ge->start_failures ||
        !ge->respawns || (quarantine && !ge->crashes)) {
        tw_log_error("%s failed: out of memory", quarantine ? "quarantine" : "reload");
        if (ge && ge->slots != MAP_FAILED && ge->slots)
            munmap(ge->slots, sizeof(crash_slot_t) * n);
        if (ge) {
            free(ge->quick_deaths);
            free(ge->start_failures);
            free(ge->respawns);
            free(ge->crashes);
        }
        free(ge);
        tw_generation_free(g);
        tw_master_close_unused_listeners(m);
        if (!quarantine)
            finish_reload(m, false, "ERROR out of memory\n");
        return;
    }
    m->generation_counter = g->number;
    ge->master = m;
    ge->g = g;
    ge->state = GEN_STARTING;
    ge->quarantine = quarantine;
    ge->started_ms = tw_loop_now(m->loop);
    if (quarantine)
        tw_master_inherit_quarantine(ge, quarantine_of, module);
    for (unsigned i = 0; i < n; i++) {
        ge->respawns[i].gen = ge;
        ge->respawns[i].index = i;
        tw_timer_init(&ge->respawns[i].timer, tw_master_respawn_fire, &ge->respawns[i]);
    }
    m->starting = ge;
    tw_timer_init(&ge->timer, startup_timeout, ge);
    tw_timer_start(m->loop, &ge->timer, TW_STARTUP_TIMEOUT_MS);
    if (quarantine)
        tw_log_info("starting generation %u with %u worker%s and module %s quarantined", g->number,
                    n, n == 1 ? "" : "s", module);
    else
        tw_log_info("starting generation %u with %u worker%s", g->number, n, n == 1 ? "" : "s");
    for (unsigned i = 0; i < n; i++) {
        if (tw_master_spawn_worker(m, ge, i) != 0) {
            tw_master_gen_failed(ge, "could not fork a worker");
            return;
        }
    }
}
