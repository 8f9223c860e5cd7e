/*
 * message-edit — applies the filters' message edits (filters/edit.h) to an
 * accepted transaction before its commit: header edits and a replaced body
 * rewrite the spooled content into a new spool file that takes the old
 * one's place (lib/spool.h spool_msg_rewrite_*); envelope edits change the
 * transaction's sender and recipients.
 *
 * Called by smtp-filters.c at the end of message when the verdict accepts
 * the message (continue, accept, hold). The rewrite reads the whole content
 * and writes it again, so it runs on a worker thread (message_edit_start);
 * message_edit_content does the same synchronously (tests). postern-milter
 * rewrites its collected copy of a message into a file of its own
 * (message_edit_rewrite_fd, on a libmilter thread) to have the message the
 * MTA will relay before it signs it.
 *
 * The header section is parsed with folding: a field is its first line
 * (a name of printable characters without ':', optional blanks, ':') and
 * the continuation lines that start with a space or tab; it ends at the
 * empty line, at the first line that is neither (which then starts the
 * body, as nothing separated them), or at the end of the content. Field
 * names compare case-insensitively. Indexes are as filter.h says: the
 * first field is Postern's own Received:, and it stays first and as it
 * was. Every line written ends in CR LF: a replaced body's bare CR and LF
 * become CR LF and its last line gets one.
 *
 * SECURITY: the content is the client's (untrusted); the header section is
 * read into memory only up to MESSAGE_EDIT_HEADER_MAX octets, beyond which
 * the edits are refused (E2BIG). Edits come from the filters, checked when
 * they were recorded (edit.c) and again here (addresses against the
 * transaction's SMTPUTF8).
 */
#ifndef POSTERN_MESSAGE_EDIT_H
#define POSTERN_MESSAGE_EDIT_H

#include <stdbool.h>
#include <stdint.h>

#define MESSAGE_EDIT_HEADER_MAX (1024 * 1024) /* octets of header section read */

struct filter_edits;
struct smtp_txn;
struct spool_msg;
struct workpool;

struct message_edit_report {
    unsigned inserted;           /* fields inserted (insert_header) */
    unsigned changed;            /* fields given a new value */
    unsigned deleted;            /* fields deleted */
    unsigned appended;           /* change_header of a missing field: appended */
    unsigned ignored;            /* change_header aimed at Postern's Received: */
    const char *ignored_by;      /* the filter of the first ignored one */
    bool body;                   /* the body was replaced */
    uint64_t old_size, new_size; /* content octets before and after */
};

/* Writes the content read from in_fd at [off, off + len) with e's header
 * edits and body into dst (spool_msg_write). Touches nothing but its
 * arguments (any thread). Returns 0, or -1 with errno: E2BIG when the
 * header section passes MESSAGE_EDIT_HEADER_MAX, EIO when the content is
 * shorter than len, ENOMEM, or dst's write error. */
int message_edit_rewrite(const struct filter_edits *e, int in_fd, uint64_t off, uint64_t len,
                         struct spool_msg *dst, struct message_edit_report *rep);

/* The same into the descriptor out_fd (written from its offset), for a
 * content that has no Postern Received: first: a first Received: field is
 * like any other (changed, deleted, inserted before), as an MTA that hides
 * its own from milters treats the fields it shows. Returns 0, or -1 with
 * errno (E2BIG, EIO, ENOMEM, the write's error). */
int message_edit_rewrite_fd(const struct filter_edits *e, int in_fd, uint64_t off, uint64_t len,
                            int out_fd, struct message_edit_report *rep);

/* The same on msg itself, on the caller's thread: msg's content is replaced
 * (spool_msg_rewrite_begin/finish). Returns 0, or -1 with errno and msg
 * unchanged (nothing left behind in tmp/). */
int message_edit_content(struct spool_msg *msg, const struct filter_edits *e,
                         struct message_edit_report *rep);

/* Applies e's envelope edits to t in order, each logged with t's queue
 * id: change_sender (parameters merged into t's MAIL parameters, SIZE
 * ignored), add_rcpt (a recipient already there is not added twice),
 * delete_rcpt (every equal recipient). An edit whose address does not
 * parse for this transaction (UTF-8 without SMTPUTF8) is skipped with a
 * warning. Returns 0, or -1 when out of memory (t may be partly changed:
 * the caller refuses the message). t->rcpt_count may end at 0. */
int message_edit_envelope(struct smtp_txn *t, const struct filter_edits *e);

/* error: 0 when msg has its new content, else an errno value (msg then
 * keeps its old content). rep is valid during the call. */
typedef void message_edit_done_cb(void *ctx, int error, const struct message_edit_report *rep);

struct message_edit_job;

/* Rewrites msg's content with *e's edits on pool's thread; cb runs later on
 * the loop (never inside this call). Takes *e (sets it to NULL) on
 * success. msg must not be touched until cb or message_edit_cancel.
 * Returns the job, or NULL with errno (then *e is still the caller's and
 * cb is never called). */
struct message_edit_job *message_edit_start(struct workpool *pool, struct spool_msg *msg,
                                            struct filter_edits **e, message_edit_done_cb *cb,
                                            void *ctx);
/* cb will not be called; the rewrite's file is removed when the thread is
 * done with it. msg is free to be aborted at once. NULL-safe; clears *job. */
void message_edit_cancel(struct message_edit_job **job);

#endif
