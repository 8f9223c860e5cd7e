/*
 * queue-file — a queued message as the queue manager sees it: the spool
 * file's envelope plus the state records the queue manager appends after
 * the end marker, one per line:
 *   D IDX TIME              recipient IDX delivered
 *   B IDX TIME              recipient IDX bounced (its DSN, if wanted, is queued)
 *   T NEXT ATTEMPTS         an attempt ended with recipients left; next try at NEXT
 *   R IDX CODE ENH TEXT     the last reply that deferred recipient IDX
 *   W TIME                  the delay warning was sent
 * Records are only ever appended, so a crash leaves a prefix of them; a
 * torn last line is ignored. They are written without fsync: a process
 * crash keeps them (the page cache survives it); a power failure may lose
 * the last ones, which replays a delivery or a bounce, never loses one. Replaying the records gives the state back:
 * a delivered recipient is not delivered again (at-least-once: a crash
 * between a downstream 250 and its D record does repeat it).
 *
 * Called by the queue manager and posternctl. Trusts nothing in the file.
 */
#ifndef POSTERN_QUEUE_FILE_H
#define POSTERN_QUEUE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/smtp-reply.h"
#include "lib/spool-format.h"

enum qrcpt_state { QRCPT_PENDING, QRCPT_DELIVERED, QRCPT_BOUNCED };

struct queue_file {
    struct spool_envelope *env;
    uint64_t content_off, content_len;
    enum qrcpt_state *state;    /* per recipient */
    struct smtp_status *reason; /* per recipient: last deferral (code 0 = none) */
    time_t next_attempt;        /* 0 = now */
    unsigned attempts;
    bool warned;
};

/* Returns 0 and *qf_r; 1 when the file is incomplete (never acknowledged);
 * -1 with error when it cannot be read or is corrupt. */
int queue_file_load(const char *path, struct queue_file **qf_r, char *error, size_t errsize);
void queue_file_free(struct queue_file **qf);

size_t queue_file_pending(const struct queue_file *qf);

/* Appends records to path (O_APPEND, one write, no fsync). Returns 0 or -1
 * (errno). */
int queue_file_append(const char *path, const char *records, size_t len);

/* Formats one R record for recipient idx into buf; returns its length. */
size_t queue_file_reason_record(char *buf, size_t size, size_t idx, const struct smtp_status *st);

#endif
