/*
 * spool — the durable queue writer: a 250 after DATA is a promise.
 *
 * Directory layout under the configured spool_dir:
 *   tmp/     messages being received (temp names); never acknowledged
 *   queue/   committed messages, one file per queue id, for the queue manager
 *   hold/    committed messages kept for review (a HOLD verdict, or
 *            "posternctl queue hold"); the queue manager never looks here,
 *            "posternctl queue release" moves them to queue/
 *   corrupt/ files moved aside by the recovery scan or the queue manager
 *   free/    no messages: files kept for reuse (lib/spool-pool.h)
 * A message is written to tmp/, its header patched, renamed into queue/ (or
 * hold/), and then the file fdatasync'd and that directory fsync'd; only
 * then does the commit callback tell the session to answer 250. Commits run
 * on a dedicated thread that takes every pending commit at once (group
 * commit: rename each, then flush each file and queue/ and hold/ once, all
 * at the same time), so the event loop never blocks on disk.
 *
 * Owned by one worker process (one struct spool per event_base). Trusts its
 * caller for queue ids (from spool_new_queue_id) and envelope contents.
 */
#ifndef POSTERN_SPOOL_H
#define POSTERN_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/spool-format.h"

struct event_base;
struct evbuffer;
struct spool;
struct spool_msg;

/* Creates the subdirectories if needed. Returns 0 and *spool_r, or -1 with a
 * message in error. */
int spool_open(const char *dir, struct event_base *base, struct spool **spool_r, char *error,
               size_t errsize);
/* Waits for commits in flight (their callbacks still run), then frees. */
void spool_close(struct spool **spool);

/* A new unique queue id (hex time + pid + counter, at most 20 characters)
 * into buf (size >= SPOOL_QUEUE_ID_MAX + 1). Unique across processes. */
void spool_new_queue_id(struct spool *spool, char *buf, size_t size);

/* True when the spool's file system has at least min_free bytes for
 * unprivileged use (statvfs). Used at MAIL to answer 452 4.3.1 early. */
int spool_has_space(struct spool *spool, uint64_t min_free);

/* The queue manager is done with queue/<queue_id> (size: its length): the
 * file goes to the pool of files to reuse, or is unlinked. Returns 0, or -1
 * with errno (ENOENT: no such file). */
int spool_retire(struct spool *spool, const char *queue_id, uint64_t size);

/* Creates tmp/<queue_id> (O_EXCL), or takes a file from the pool and
 * renames it so, and reserves the header. NULL with errno
 * set on failure (ENOSPC, EIO, ...). */
struct spool_msg *spool_msg_begin(struct spool *spool, const char *queue_id);

/* Appends content. Returns 0, or -1 with errno; a failure is sticky (later
 * writes and the commit fail with the same errno). */
int spool_msg_write(struct spool_msg *msg, const void *data, size_t len);
/* Appends and drains the whole evbuffer. */
int spool_msg_write_evbuffer(struct spool_msg *msg, struct evbuffer *buf);

uint64_t spool_msg_size(const struct spool_msg *msg);

/* For checks that read the message before it is committed (the filters'
 * end-of-message stage): writes out what is buffered and gives the file
 * and where the content lies in it, to read with pread. The descriptor
 * stays the spool's. Returns 0, or -1 with errno (the sticky error). */
int spool_msg_content(struct spool_msg *msg, int *fd_r, uint64_t *offset_r, uint64_t *length_r);

/* Rewriting a message before its commit (the filters' message edits): a
 * new content is written to a new file, tmp/<queue_id>.new, with
 * spool_msg_write on the message that spool_msg_rewrite_begin returns, and
 * spool_msg_rewrite_finish puts it in place of msg's content. msg's own
 * buffer is written out first, so its content can be read meanwhile
 * (spool_msg_content, with pread on a dup of the descriptor). The new
 * message may be filled on another thread than the loop's (one at a time);
 * finish or abort it (spool_msg_abort removes its file) on the loop; msg is
 * not written, committed or aborted meanwhile. Returns NULL with errno. */
struct spool_msg *spool_msg_rewrite_begin(struct spool_msg *msg);
/* msg takes *dst's content: dst's file is renamed over msg's in tmp/ (no
 * fsync needed there: the commit fsyncs the file and renames it into queue/
 * as for any message, so the 250 still follows the durable final file).
 * *dst is freed and cleared. On failure (dst's sticky write error, the
 * rename) returns -1 with errno: msg keeps its old content and dst's file
 * is removed. */
int spool_msg_rewrite_finish(struct spool_msg *msg, struct spool_msg **dst);

/* error is 0 when the message is durable in queue/ (hold/ for
 * spool_msg_commit_hold), else an errno value (and no file is left behind). */
typedef void spool_commit_cb(void *ctx, int error);

/* Writes the envelope and end marker, patches the header, and hands the
 * message to the commit thread. cb(ctx, error) runs later on the event loop.
 * The spool owns msg from here on and frees it after cb. Returns 0, or -1 with
 * errno when the message could not even be queued (then nothing is on disk and
 * cb is not called; msg is freed). */
int spool_msg_commit(struct spool_msg *msg, const struct spool_envelope *env, spool_commit_cb *cb,
                     void *ctx);
/* The same, but into hold/: as durable, in the same group commits, and
 * never delivered until released (the caller does not notify the queue
 * manager). */
int spool_msg_commit_hold(struct spool_msg *msg, const struct spool_envelope *env,
                          spool_commit_cb *cb, void *ctx);

/* The caller of a pending commit goes away (client disconnected): the commit
 * still completes (the message is kept: at-least-once), cb is not called. */
void spool_msg_detach(struct spool_msg *msg);

/* Forgets a message that was never committed: closes and removes the temp
 * file (into the pool, when it is not a rewrite's); *msg is set to NULL.
 * NULL-safe. */
void spool_msg_abort(struct spool_msg **msg);

/* Start-up scan, before any worker runs: empties free/; removes every file
 * in tmp/ and every file in queue/ or hold/ without its end marker or whose
 * envelope names another queue id, logging each with its name; moves
 * unreadable or corrupt ones to corrupt/; keeps every other complete file in
 * queue/ and hold/ where it is. Returns the number removed or moved (free/
 * not counted), -1 with error when the directories cannot be read. */
int spool_recover(const char *dir, char *error, size_t errsize);

#endif
