/*
 * sync-crew — see sync-crew.h. A batch is published under the lock with a
 * new generation number; every thread, the caller included, claims indexes
 * with an atomic counter until none is left. The caller then withdraws the
 * batch (so a helper waking late finds nothing to join) and waits until the
 * helpers that joined have finished the indexes they claimed. Only as many
 * helpers are woken as the batch has flushes beyond one.
 */
#include "config.h"
#include "lib/sync-crew.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct sync_batch {
    struct sync_item *items;
    size_t count;
    atomic_size_t next;
};

struct sync_crew {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a batch was published, or stop */
    pthread_cond_t idle; /* busy dropped to 0 */
    struct sync_batch *batch;
    unsigned long generation;
    unsigned busy; /* helpers inside the current batch */
    bool stop;
    unsigned nthreads;
    pthread_t *threads;
};

static void batch_run(struct sync_batch *b)
{
    size_t i;

    while ((i = atomic_fetch_add(&b->next, 1)) < b->count) {
        struct sync_item *it = &b->items[i];

        it->err = (it->full ? fsync(it->fd) : fdatasync(it->fd)) == 0 ? 0 : errno;
    }
}

static void *helper_main(void *arg)
{
    struct sync_crew *crew = arg;
    unsigned long seen = 0;

    pthread_mutex_lock(&crew->lock);
    for (;;) {
        while (!crew->stop && crew->generation == seen)
            pthread_cond_wait(&crew->wake, &crew->lock);
        if (crew->stop)
            break;
        seen = crew->generation;
        struct sync_batch *b = crew->batch;
        if (b == NULL)
            continue; /* woke after the caller had finished it */
        crew->busy++;
        pthread_mutex_unlock(&crew->lock);
        batch_run(b);
        pthread_mutex_lock(&crew->lock);
        if (--crew->busy == 0)
            pthread_cond_signal(&crew->idle);
    }
    pthread_mutex_unlock(&crew->lock);
    return NULL;
}

struct sync_crew *sync_crew_new(unsigned helpers)
{
    struct sync_crew *crew = calloc(1, sizeof(*crew));

    if (crew == NULL || (helpers > 0 && (crew->threads = calloc(helpers, sizeof(pthread_t))) == NULL)) {
        free(crew);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&crew->lock, NULL);
    pthread_cond_init(&crew->wake, NULL);
    pthread_cond_init(&crew->idle, NULL);
    for (; crew->nthreads < helpers; crew->nthreads++) {
        int err = pthread_create(&crew->threads[crew->nthreads], NULL, helper_main, crew);
        if (err != 0) {
            sync_crew_free(crew);
            errno = err;
            return NULL;
        }
    }
    return crew;
}

void sync_crew_run(struct sync_crew *crew, struct sync_item *items, size_t count)
{
    struct sync_batch b = { .items = items, .count = count };

    atomic_init(&b.next, 0);
    if (count > 1 && crew != NULL && crew->nthreads > 0) {
        pthread_mutex_lock(&crew->lock);
        crew->batch = &b;
        crew->generation++;
        /* as many helpers as there are flushes beyond the caller's own:
         * waking all of them for two flushes costs more than the flushes */
        for (size_t i = 1; i < count && i <= crew->nthreads; i++)
            pthread_cond_signal(&crew->wake);
        pthread_mutex_unlock(&crew->lock);
    }
    batch_run(&b);
    if (count > 1 && crew != NULL && crew->nthreads > 0) {
        pthread_mutex_lock(&crew->lock);
        crew->batch = NULL;
        while (crew->busy > 0)
            pthread_cond_wait(&crew->idle, &crew->lock);
        pthread_mutex_unlock(&crew->lock);
    }
}

void sync_crew_free(struct sync_crew *crew)
{
    if (crew == NULL)
        return;
    pthread_mutex_lock(&crew->lock);
    crew->stop = true;
    pthread_cond_broadcast(&crew->wake);
    pthread_mutex_unlock(&crew->lock);
    for (unsigned i = 0; i < crew->nthreads; i++)
        pthread_join(crew->threads[i], NULL);
    pthread_cond_destroy(&crew->idle);
    pthread_cond_destroy(&crew->wake);
    pthread_mutex_destroy(&crew->lock);
    free(crew->threads);
    free(crew);
}
