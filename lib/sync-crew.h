/*
 * sync-crew — a few long-lived threads that flush a set of files and
 * directories at once, for the spool's group commit: many flushes in flight
 * together let the file system and the disk fold them into fewer cache
 * flushes, where one fdatasync after another would each wait for its own.
 *
 * One caller at a time (the spool's commit thread); the threads start with
 * the crew and sleep between batches, so a batch costs no thread creation.
 * Trusts its caller for the descriptors.
 */
#ifndef POSTERN_SYNC_CREW_H
#define POSTERN_SYNC_CREW_H

#include <stdbool.h>
#include <stddef.h>

struct sync_crew;

struct sync_item {
    int fd;
    bool full; /* fsync (a directory's entries), else fdatasync */
    int err;   /* out: 0 or the errno */
};

/* Starts helpers threads (0 is allowed: the caller then syncs alone).
 * Returns NULL on failure (errno set). */
struct sync_crew *sync_crew_new(unsigned helpers);

/* Flushes items[0..count) using the caller and the helpers (a NULL crew:
 * the caller alone), each item's err set. Returns when every one is done. */
void sync_crew_run(struct sync_crew *crew, struct sync_item *items, size_t count);

/* Stops and joins the threads; NULL-safe. */
void sync_crew_free(struct sync_crew *crew);

#endif
