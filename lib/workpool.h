/*
 * workpool — a small pool of threads for blocking work (crypt(3), fsync),
 * with completion posted back to the event loop that submitted it.
 *
 * Owned by one worker process and its event_base. work() runs on a pool
 * thread and must not touch the event loop or session state that the loop
 * owns; done() runs later on the loop thread, in submission order per thread
 * is not promised. A pool destroyed with jobs pending waits for running work
 * and then calls done() for nothing: callers cancel through their own ctx.
 */
#ifndef POSTERN_WORKPOOL_H
#define POSTERN_WORKPOOL_H

struct event_base;
struct workpool;

typedef void workpool_fn(void *ctx);

/* Creates threads threads (>= 1). Returns NULL on failure (errno set). */
struct workpool *workpool_create(struct event_base *base, unsigned threads);

/* Queues work; returns 0, or -1 when out of memory. */
int workpool_submit(struct workpool *pool, workpool_fn *work, workpool_fn *done, void *ctx);

void workpool_destroy(struct workpool **pool);

#endif
