/*
 * spool-pool — spool files kept for reuse, in the spool's free/.
 *
 * When the queue manager is done with a message it moves the file into
 * free/ instead of unlinking it, and a process starting a message moves one
 * out of free/ into tmp/ and overwrites it instead of creating a file. On
 * ext4 (above all without a journal) creating and freeing an inode are the
 * two most expensive file system steps of a relayed message; a reused file
 * keeps its inode and, for a message of about the same size, its blocks
 * (bench/RESULTS.md §1).
 *
 * Nothing in free/ is a message: its content is stale and its name means
 * nothing. free/ holds at most SPOOL_POOL_MAX files of at most
 * SPOOL_POOL_FILE_MAX octets; spool_recover empties it at start-up.
 *
 * Used by one thread of one process per pool (the event loop's); several
 * processes share free/ through atomic renames. Trusts the names in free/
 * only to be renamed within the spool (a name too long is skipped).
 */
#ifndef POSTERN_SPOOL_POOL_H
#define POSTERN_SPOOL_POOL_H

#include <stdint.h>

#define SPOOL_POOL_MAX 256
#define SPOOL_POOL_FILE_MAX (128 * 1024)

struct spool_pool;

/* A pool over the open directory free_fd (kept by the caller, who closes it
 * after spool_pool_free). NULL with errno. */
struct spool_pool *spool_pool_new(int free_fd);
void spool_pool_free(struct spool_pool **pool);

/* Moves a file out of free/ to to_dir_fd/to_name and opens it read-write.
 * Returns the descriptor (its old content is still there: the caller
 * overwrites it from offset 0 and truncates it to what it wrote), or -1
 * when free/ has none to give (ENOENT) or on an error (errno). */
int spool_pool_take(struct spool_pool *pool, int to_dir_fd, const char *to_name);

/* Moves dir_fd/name into free/ when there is room and the file is small
 * (size: its length in octets), else unlinks it. Returns 0 when the name
 * is gone from dir_fd, -1 with errno (ENOENT: it was not there). */
int spool_pool_retire(struct spool_pool *pool, int dir_fd, const char *name, uint64_t size);

#endif
