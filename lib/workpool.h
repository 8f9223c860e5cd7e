/*
 * workpool — a small pool of threads for blocking work (crypt(3), fsync),
 * with completion posted back to the event loop that submitted it.
 *
 * Owned by one worker process and its event_base. work() runs on a pool
 * thread and must not touch the event loop or session state that the loop
 * owns; done() runs later on the loop thread (submission order is not
 * promised).
 *
 * Contract: done() runs exactly once for every submitted job, so done() is
 * where a job's ctx is freed. Normally that is after work(), with cancelled
 * false. workpool_destroy() waits for the work that is running, then calls
 * done() itself, on the caller's thread, for every job that still has it
 * due: with cancelled false for jobs whose work() ran, with cancelled true
 * for jobs still queued (their work() never runs).
 */
#ifndef POSTERN_WORKPOOL_H
#define POSTERN_WORKPOOL_H

#include <stdbool.h>

struct event_base;
struct workpool;

typedef void workpool_fn(void *ctx);
typedef void workpool_done_fn(void *ctx, bool cancelled);

/* Creates threads threads (>= 1). Returns NULL on failure (errno set). */
struct workpool *workpool_create(struct event_base *base, unsigned threads);

/* Queues work; done may be NULL when the job owns nothing. Returns 0, or -1
 * when out of memory or the pool is being destroyed (then neither work()
 * nor done() is ever called for it). */
int workpool_submit(struct workpool *pool, workpool_fn *work, workpool_done_fn *done, void *ctx);

/* Stops the threads and settles every job (see above); NULL-safe, clears
 * *pool. Not from inside a done() of the same pool. */
void workpool_destroy(struct workpool **pool);

#endif
