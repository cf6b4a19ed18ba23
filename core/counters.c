/* counters.c — see counters.h. */
#include "counters.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twister/log.h"

enum {
    SLOT_EMPTY = 0,
    SLOT_CLAIMED = 1,
    SLOT_READY = 2
};

typedef struct {
    uint32_t state;
    uint32_t reserved;
    uint64_t value;
    char name[TW_METRICS_NAME_MAX + 1];
    char labels[TW_METRICS_LABELS_MAX + 1];
    char help[TW_METRICS_HELP_MAX + 1];
} slot_t;

struct tw_metrics_counter {
    tw_metrics_counter_t *next;
    const char *name, *help, *labels;
    uint64_t *value; /* in the zone once attached */
};

size_t tw_counters_zone_size(void)
{
    return TW_METRICS_COUNTERS_MAX * sizeof(slot_t);
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static bool valid_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TW_METRICS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i], i == 0))
            return false;
    /* Prometheus' convention for counters, which promtool enforces. */
    return n > 6 && strcmp(s + n - 6, "_total") == 0;
}

/* `key="value",...`: label names without ':', values with only \\ \" \n
 * escapes and no raw newline. */
static bool valid_labels(const char *s)
{
    if (strlen(s) > TW_METRICS_LABELS_MAX)
        return false;
    while (*s) {
        const char *start = s;
        while (name_char(*s, s == start) && *s != ':')
            s++;
        if (s == start || *s++ != '=' || *s++ != '"')
            return false;
        while (*s != '"') {
            if (!*s || *s == '\n')
                return false;
            if (*s == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return false;
            }
            s++;
        }
        s++;
        if (*s == ',' && s[1])
            s++;
        else if (*s)
            return false;
    }
    return true;
}

static bool valid_help(const char *s)
{
    return strlen(s) <= TW_METRICS_HELP_MAX && !strchr(s, '\n') && !strchr(s, '\\');
}

int tw_counter_list_add(tw_counter_list_t *list, tw_pool_t *pool, const char *name,
                        const char *help, const char *labels, tw_metrics_counter_t **out)
{
    if (!labels)
        labels = "";
    if (!help)
        help = "";
    if (!name || !out || !valid_metric_name(name) || !valid_labels(labels) || !valid_help(help)) {
        errno = EINVAL;
        return -1;
    }
    for (tw_metrics_counter_t *c = list->head; c; c = c->next) {
        if (strcmp(c->name, name) == 0 && strcmp(c->labels, labels) == 0) {
            *out = c;
            return 0;
        }
    }
    tw_metrics_counter_t *c = tw_pool_calloc(pool, sizeof *c);
    if (!c || !(c->name = tw_pool_strndup(pool, name, strlen(name))) ||
        !(c->help = tw_pool_strndup(pool, help, strlen(help))) ||
        !(c->labels = tw_pool_strndup(pool, labels, strlen(labels)))) {
        errno = ENOMEM;
        return -1;
    }
    c->next = list->head;
    list->head = c;
    *out = c;
    return 0;
}

static bool slot_is(const slot_t *s, const tw_metrics_counter_t *c)
{
    return strncmp(s->name, c->name, sizeof s->name) == 0 &&
           strncmp(s->labels, c->labels, sizeof s->labels) == 0;
}

static uint32_t wait_published(slot_t *s)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        uint32_t state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (state != SLOT_CLAIMED)
            return state;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) >=
            1000000000L)
            return state;
        sched_yield();
    }
}

static uint64_t *publish(slot_t *slots, size_t i, const tw_metrics_counter_t *c)
{
    slot_t *s = &slots[i];
    /* Only a claimer skipped after dying leaves the same counter in a
     * later slot: look once more before taking this one. */
    for (size_t k = i + 1; k < TW_METRICS_COUNTERS_MAX; k++) {
        if (__atomic_load_n(&slots[k].state, __ATOMIC_ACQUIRE) == SLOT_READY &&
            slot_is(&slots[k], c)) {
            __atomic_store_n(&s->state, SLOT_EMPTY, __ATOMIC_RELEASE);
            return &slots[k].value;
        }
    }
    snprintf(s->name, sizeof s->name, "%s", c->name);
    snprintf(s->labels, sizeof s->labels, "%s", c->labels);
    snprintf(s->help, sizeof s->help, "%s", c->help);
    s->value = 0;
    __atomic_store_n(&s->state, SLOT_READY, __ATOMIC_RELEASE);
    return &s->value;
}

/* Every process walks the slots in the same order and waits on a slot
 * another one is filling, so one counter lands in one slot: the first that
 * is empty or already holds it. */
static uint64_t *bind_slot(slot_t *slots, const tw_metrics_counter_t *c)
{
    for (size_t i = 0; i < TW_METRICS_COUNTERS_MAX; i++) {
        slot_t *s = &slots[i];
        uint32_t state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (state == SLOT_EMPTY &&
            __atomic_compare_exchange_n(&s->state, &state, SLOT_CLAIMED, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return publish(slots, i, c);
        if (state == SLOT_CLAIMED)
            state = wait_published(s);
        if (state == SLOT_READY && slot_is(s, c))
            return &s->value;
    }
    return NULL;
}

void tw_counter_list_attach(tw_counter_list_t *list, void *zone)
{
    for (tw_metrics_counter_t *c = list->head; c; c = c->next) {
        c->value = bind_slot(zone, c);
        if (!c->value)
            tw_log_warn("metrics: no room for counter %s{%s} (%d counters): not counted", c->name,
                        c->labels, TW_METRICS_COUNTERS_MAX);
    }
}

void tw_metrics_counter_add(tw_metrics_counter_t *counter, uint64_t delta)
{
    if (counter && counter->value)
        __atomic_add_fetch(counter->value, delta, __ATOMIC_RELAXED);
}

uint64_t tw_metrics_counter_get(const tw_metrics_counter_t *counter)
{
    return counter && counter->value ? __atomic_load_n(counter->value, __ATOMIC_RELAXED) : 0;
}

static int by_name_then_labels(const void *a, const void *b)
{
    const slot_t *x = *(const slot_t *const *)a, *y = *(const slot_t *const *)b;
    int c = strncmp(x->name, y->name, sizeof x->name);
    return c ? c : strncmp(x->labels, y->labels, sizeof x->labels);
}

int tw_counters_each(void *zone, tw_metrics_counter_fn fn, void *arg)
{
    slot_t *slots = zone;
    const slot_t **ready = malloc(TW_METRICS_COUNTERS_MAX * sizeof *ready);
    if (!ready) {
        errno = ENOMEM;
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < TW_METRICS_COUNTERS_MAX; i++) {
        slot_t *s = &slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_READY)
            continue;
        /* The strings were written before READY; terminate them anyway,
         * since another process's bug could have overwritten them. */
        s->name[sizeof s->name - 1] = s->labels[sizeof s->labels - 1] =
            s->help[sizeof s->help - 1] = '\0';
        ready[n++] = s;
    }
    qsort(ready, n, sizeof *ready, by_name_then_labels);
    for (size_t i = 0; i < n; i++)
        fn(ready[i]->name, ready[i]->help, ready[i]->labels,
           __atomic_load_n(&ready[i]->value, __ATOMIC_RELAXED), arg);
    free(ready);
    return 0;
}
