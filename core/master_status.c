/* master_status.c — the `twister -s status` report.
 *
 * The report needs numbers only the workers have (connections, requests),
 * so it is a small query: ask every running worker on its control
 * channel, wait for all answers or TW_STATUS_TIMEOUT_MS, then write the
 * master's view (generations, workers, the failed start, quarantines and
 * crash records, the last reload) to every client that asked meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "control_client.h" /* TW_STATUS_TIMEOUT_MS */
#include "master_internal.h"

static const char *gen_state_name(const gen_t *ge)
{
    switch (ge->state) {
    case GEN_STARTING:
        return "starting";
    case GEN_SERVING:
        return "serving";
    default:
        return "draining";
    }
}

static void status_generation(master_t *m, FILE *out, const gen_t *ge)
{
    uint64_t now = tw_loop_now(m->loop);
    char quarantined[512];
    fprintf(out, "generation %u: %s, %u worker%s, up %llus%s%s\n", ge->g->number,
            gen_state_name(ge), ge->g->workers, ge->g->workers == 1 ? "" : "s",
            (unsigned long long)((now - ge->started_ms) / 1000),
            tw_master_list_quarantined(ge, quarantined, sizeof quarantined) ? ", quarantined: "
                                                                            : "",
            quarantined);
    for (unsigned i = 0; i < ge->g->workers; i++) {
        const worker_t *found = NULL;
        for (const worker_t *w = m->workers; w; w = w->next)
            if (w->gen == ge && w->index == i)
                found = w;
        if (!found) {
            fprintf(out, "  worker %u: not running (respawning)\n", i);
            continue;
        }
        fprintf(out, "  worker %u: pid %d, up %llus, ", i, (int)found->pid,
                (unsigned long long)((now - found->started_ms) / 1000));
        if (found->status_serial == m->status_serial)
            fprintf(out, "connections %lu, requests %llu\n", found->connections, found->requests);
        else
            fprintf(out, "connections ?, requests ? (%s)\n",
                    found->state == W_STARTING ? "starting" : "did not answer");
    }
}

static void status_modules(FILE *out, const gen_t *ge)
{
    for (size_t i = 0; i < ge->crash_count; i++) {
        const module_crashes_t *mc = &ge->crashes[i];
        if (mc->quarantined) {
            char since[32];
            tw_master_format_time(mc->quarantined_at, since, sizeof since);
            fprintf(out, "quarantined module %s: since generation %u at %s, %u crash%s\n",
                    mc->module, mc->quarantined_by, since, mc->total, mc->total == 1 ? "" : "es");
        } else {
            fprintf(out, "crashes of module %s in generation %u: %u (budget: %u within %llus)\n",
                    mc->module, ge->g->number, mc->total, tw_generation_crash_max(ge->g),
                    (unsigned long long)(tw_generation_crash_within_ms(ge->g) / 1000));
        }
        unsigned kept = mc->total < CRASH_RECORDS_KEPT ? mc->total : CRASH_RECORDS_KEPT;
        for (unsigned k = mc->total - kept; k < mc->total; k++) {
            char text[512];
            tw_master_describe_record(&mc->records[k % CRASH_RECORDS_KEPT], text, sizeof text);
            fprintf(out, "  crash %u: %s\n", k + 1, text);
        }
    }
}

/* Writes the status report (see README, Operations) to every client of
 * the query. */
static void status_reply(master_t *m)
{
    tw_timer_stop(m->loop, &m->status_timer);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out) {
        fprintf(out, "master: pid %d, up %llus, config %s\n", (int)getpid(),
                (unsigned long long)((tw_loop_now(m->loop) - m->started_ms) / 1000),
                m->config_realpath);
        const gen_t *gens[] = {m->starting, m->serving};
        for (size_t i = 0; i < 2; i++)
            if (gens[i])
                status_generation(m, out, gens[i]);
        for (const gen_t *d = m->draining; d; d = d->next)
            if (d->state == GEN_DRAINING && d->g->number != m->failed_number)
                status_generation(m, out, d);
        if (m->failed_number && (!m->serving || m->failed_number > m->serving->g->number)) {
            char when[32];
            tw_master_format_time(m->failed_at, when, sizeof when);
            fprintf(out, "generation %u: failed at %s: %s\n", m->failed_number, when,
                    m->failed_why);
        }
        bool any = false;
        if (m->serving) {
            for (size_t i = 0; i < m->serving->crash_count; i++)
                any |= m->serving->crashes[i].quarantined;
            status_modules(out, m->serving);
        }
        if (!any)
            fprintf(out, "quarantined: none\n");
        if (m->last_reload[0]) {
            char when[32];
            tw_master_format_time(m->last_reload_at, when, sizeof when);
            fprintf(out, "last reload: %s at %s\n", m->last_reload, when);
        } else {
            fprintf(out, "last reload: none\n");
        }
        fclose(out);
    }
    for (waiter_t *w = m->status_clients, *next; w; w = next) {
        next = w->next;
        /* Blocking for the write: the report is a few kilobytes and the
         * client reads it at once; a client that does not gets cut off by
         * the send timeout. */
        int flags = fcntl(w->fd, F_GETFL);
        fcntl(w->fd, F_SETFL, flags & ~O_NONBLOCK);
        struct timeval tv = {.tv_sec = 1};
        setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const char *p = text ? text : "ERROR out of memory\n";
        size_t left = text ? len : strlen(p);
        while (left > 0) {
            ssize_t n = send(w->fd, p, left, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            p += n;
            left -= (size_t)n;
        }
        close(w->fd);
        free(w);
    }
    m->status_clients = NULL;
    free(text);
}

void tw_master_status_answered(master_t *m)
{
    if (m->status_clients && m->status_pending > 0 && --m->status_pending == 0)
        status_reply(m);
}

void tw_master_status_timeout(tw_loop_t *loop, tw_timer_t *t, void *arg)
{
    (void)loop;
    (void)t;
    status_reply(arg);
}

/* Asks every worker for its numbers; the report goes out when all have
 * answered or TW_STATUS_TIMEOUT_MS has passed. A client that arrives while
 * a query is in flight gets its report. */
void tw_master_start_status(master_t *m, int fd)
{
    waiter_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    bool in_flight = m->status_clients != NULL;
    c->next = m->status_clients;
    m->status_clients = c;
    if (in_flight)
        return;
    m->status_serial++;
    m->status_pending = 0;
    for (worker_t *w = m->workers; w; w = w->next) {
        if (w->control_fd < 0 || w->state == W_STARTING)
            continue;
        if (send(w->control_fd, "STATUS", 6, MSG_NOSIGNAL | MSG_DONTWAIT) == 6)
            m->status_pending++;
    }
    if (m->status_pending == 0) {
        status_reply(m);
        return;
    }
    tw_timer_start(m->loop, &m->status_timer, TW_STATUS_TIMEOUT_MS);
}
