/* work.c — tw_loop_queue_work: a small thread pool per loop for blocking
 * calls (getaddrinfo, a database client), so that they never run on the
 * loop. Threads start on first use; finished items go onto a done list and
 * an eventfd wakes the loop, which runs their done callbacks. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "twister/upstream.h"

#define WORK_THREADS 4

typedef struct item {
    struct item *next;
    tw_work_fn work;
    tw_work_done_fn done;
    void *arg;
} item_t;

struct tw_work_queue {
    tw_loop_t *loop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    item_t *todo, *todo_tail;
    item_t *finished;
    bool stopping;
    int efd;
    size_t outstanding; /* items whose done has not run (loop thread only) */
    size_t nthreads;
    pthread_t threads[WORK_THREADS];
};

static void *work_thread(void *arg)
{
    tw_work_queue_t *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->todo && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        if (q->stopping)
            break;
        item_t *it = q->todo;
        q->todo = it->next;
        if (!q->todo)
            q->todo_tail = NULL;
        pthread_mutex_unlock(&q->lock);
        it->work(it->arg);
        pthread_mutex_lock(&q->lock);
        it->next = q->finished;
        q->finished = it;
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(q->efd, &one, sizeof one);
        while (n < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void work_on_event(tw_loop_t *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    tw_work_queue_t *q = arg;
    uint64_t v;
    ssize_t n;
    do
        n = read(fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
    pthread_mutex_lock(&q->lock);
    item_t *list = q->finished;
    q->finished = NULL;
    pthread_mutex_unlock(&q->lock);
    /* The list is newest first: run them in completion order. */
    item_t *ordered = NULL;
    while (list) {
        item_t *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered) {
        item_t *it = ordered;
        ordered = it->next;
        q->outstanding--;
        if (it->done)
            it->done(loop, it->arg);
        free(it);
    }
}

static tw_work_queue_t *queue_start(tw_loop_t *loop)
{
    tw_work_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->loop = loop;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    if (tw_loop_watch(loop, q->efd, TW_EV_READ, work_on_event, q) < 0) {
        close(q->efd);
        free(q);
        return NULL;
    }
    /* Threads must not take the process's signals (the loop's signalfd
     * relies on them being blocked everywhere). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (size_t i = 0; i < WORK_THREADS; i++) {
        if (pthread_create(&q->threads[i], NULL, work_thread, q) != 0)
            break;
        q->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (q->nthreads == 0) {
        tw_work_queue_free(q);
        errno = EAGAIN;
        return NULL;
    }
    return q;
}

int tw_loop_queue_work(tw_loop_t *loop, tw_work_fn work, tw_work_done_fn done, void *arg)
{
    if (!work) {
        errno = EINVAL;
        return -1;
    }
    tw_work_queue_t **slot = tw_loop_work_slot(loop);
    if (!*slot && !(*slot = queue_start(loop)))
        return -1;
    tw_work_queue_t *q = *slot;
    item_t *it = calloc(1, sizeof *it);
    if (!it)
        return -1;
    it->work = work;
    it->done = done;
    it->arg = arg;
    q->outstanding++;
    pthread_mutex_lock(&q->lock);
    *(q->todo_tail ? &q->todo_tail->next : &q->todo) = it;
    q->todo_tail = it;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

size_t tw_loop_work_outstanding(tw_loop_t *loop)
{
    tw_work_queue_t *q = *tw_loop_work_slot(loop);
    return q ? q->outstanding : 0;
}

void tw_work_queue_free(tw_work_queue_t *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->lock);
    for (size_t i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    tw_loop_unwatch(q->loop, q->efd);
    close(q->efd);
    for (item_t *lists[2] = {q->todo, q->finished}, **l = lists; l < lists + 2; l++)
        while (*l) {
            item_t *next = (*l)->next;
            free(*l);
            *l = next;
        }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->wake);
    free(q);
}
