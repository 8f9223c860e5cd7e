/*
 * workpool — see workpool.h. A fixed set of pthreads take jobs from one
 * mutex/condvar queue; finished jobs go to a second list and an eventfd wakes
 * an event on the owner's event_base, whose callback runs done() on the loop
 * thread. The worker threads never call into libevent (they only write(2) the
 * eventfd), so evthread_use_pthreads() is not needed.
 *
 * Trusts its caller: work() must not touch the loop, done() is the caller's,
 * and workpool_destroy() is never called from inside a done() of the same
 * pool (asserted). Destroy settles every job (workpool.h): finished ones get
 * done(ctx, false), queued ones done(ctx, true), so no ctx is ever dropped.
 * Pool threads block all signals so that the process's handlers run on the
 * loop thread.
 */
#include "config.h"
#include "lib/workpool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <event2/event.h>

struct workpool_job {
    struct workpool_job *next;
    workpool_fn *work;
    workpool_done_fn *done;
    void *ctx;
};

struct job_list {
    struct workpool_job *head;
    struct workpool_job *tail;
};

struct workpool {
    struct event_base *base;
    struct event *ev;
    int efd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job_list todo;
    struct job_list finished;
    bool stopping;
    bool dispatching;
    unsigned nthreads;
    pthread_t threads[];
};

static void job_list_push(struct job_list *list, struct workpool_job *job)
{
    job->next = NULL;
    if (list->tail != NULL)
        list->tail->next = job;
    else
        list->head = job;
    list->tail = job;
}

static struct workpool_job *job_list_take(struct job_list *list)
{
    struct workpool_job *head = list->head;

    list->head = NULL;
    list->tail = NULL;
    return head;
}

/* Runs done() for each job of a list taken off the pool, and frees them. */
static void job_list_settle(struct workpool *pool, struct workpool_job *job, bool cancelled)
{
    pool->dispatching = true;
    while (job != NULL) {
        struct workpool_job *next = job->next;

        if (job->done != NULL)
            job->done(job->ctx, cancelled);
        free(job);
        job = next;
    }
    pool->dispatching = false;
}

/* Wakes the loop; an eventfd write only fails if the counter would overflow,
 * and then a wake-up is pending anyway. */
static void workpool_wake(struct workpool *pool)
{
    uint64_t one = 1;
    ssize_t ret;

    do {
        ret = write(pool->efd, &one, sizeof(one));
    } while (ret < 0 && errno == EINTR);
}

static void *workpool_thread(void *arg)
{
    struct workpool *pool = arg;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct workpool_job *job;
        bool was_empty;

        while (pool->todo.head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->cond, &pool->lock);
        if (pool->stopping)
            break;
        job = pool->todo.head;
        pool->todo.head = job->next;
        if (pool->todo.head == NULL)
            pool->todo.tail = NULL;
        pthread_mutex_unlock(&pool->lock);

        job->work(job->ctx);

        pthread_mutex_lock(&pool->lock);
        was_empty = pool->finished.head == NULL;
        job_list_push(&pool->finished, job);
        if (was_empty)
            workpool_wake(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Loop side: clears the eventfd, then runs done() for every finished job. */
static void workpool_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct workpool *pool = arg;
    struct workpool_job *job;
    uint64_t count;

    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
        return;
    pthread_mutex_lock(&pool->lock);
    job = job_list_take(&pool->finished);
    pthread_mutex_unlock(&pool->lock);
    job_list_settle(pool, job, false);
}

/* Starts the threads with every signal blocked; returns 0 or an errno. */
static int workpool_start_threads(struct workpool *pool, unsigned threads)
{
    sigset_t all, old;
    int ret = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (pool->nthreads = 0; pool->nthreads < threads; pool->nthreads++) {
        ret = pthread_create(&pool->threads[pool->nthreads], NULL, workpool_thread, pool);
        if (ret != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

struct workpool *workpool_create(struct event_base *base, unsigned threads)
{
    struct workpool *pool;
    int ret;

    if (threads == 0 || threads > 1024) {
        errno = EINVAL;
        return NULL;
    }
    pool = calloc(1, sizeof(*pool) + threads * sizeof(pthread_t));
    if (pool == NULL)
        return NULL;
    pool->base = base;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pool->efd >= 0)
        pool->ev = event_new(base, pool->efd, EV_READ | EV_PERSIST, workpool_on_event, pool);
    if (pool->ev == NULL || event_add(pool->ev, NULL) < 0) {
        ret = pool->efd < 0 ? errno : ENOMEM;
        workpool_destroy(&pool);
        errno = ret;
        return NULL;
    }
    ret = workpool_start_threads(pool, threads);
    if (ret != 0) {
        workpool_destroy(&pool);
        errno = ret;
        return NULL;
    }
    return pool;
}

int workpool_submit(struct workpool *pool, workpool_fn *work, workpool_done_fn *done, void *ctx)
{
    struct workpool_job *job = malloc(sizeof(*job));

    if (job == NULL)
        return -1;
    job->work = work;
    job->done = done;
    job->ctx = ctx;
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) { /* a done() run by workpool_destroy() */
        pthread_mutex_unlock(&pool->lock);
        free(job);
        errno = ESHUTDOWN;
        return -1;
    }
    job_list_push(&pool->todo, job);
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

void workpool_destroy(struct workpool **_pool)
{
    struct workpool *pool = *_pool;

    if (pool == NULL)
        return;
    *_pool = NULL;
    assert(!pool->dispatching);
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    if (pool->ev != NULL)
        event_free(pool->ev);
    if (pool->efd >= 0)
        close(pool->efd);
    /* The threads are gone and nothing else touches the lists: the jobs
     * whose work ran, then those that never will. */
    job_list_settle(pool, job_list_take(&pool->finished), false);
    job_list_settle(pool, job_list_take(&pool->todo), true);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}
