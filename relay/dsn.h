/*
 * dsn — delivery status notifications: RFC 3464 multipart/report messages
 * for failed and delayed recipients, honouring RFC 3461's NOTIFY, RET and
 * ENVID, sent from the null sender to the original envelope sender.
 *
 * Called by the queue manager, which decides who gets reported and
 * injects the result into the spool as a new message with sender "". Trusts
 * the envelope (from the spool) but not the original message's content,
 * which is copied, never parsed (RET=HDRS stops at the first empty line).
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/smtp-reply.h"

struct evbuffer;

enum dsn_action { DSN_ACTION_FAILED, DSN_ACTION_DELAYED };

struct dsn_rcpt {
    const char *addr;          /* final recipient */
    const char *orcpt;         /* "rfc822;addr" or NULL */
    const struct smtp_status *status; /* the reply or local decision; enhanced code required */
    const char *remote_mta;    /* host name that answered, or NULL */
    time_t last_attempt;
};

struct dsn_input {
    enum dsn_action action;
    const char *reporting_mta;   /* our host name */
    const char *queue_id;
    const char *envid;           /* NULL = none */
    int ret;                     /* enum smtp_ret: HDRS = headers only; FULL/unspec = full up to return_limit */
    time_t arrival;
    time_t retry_until;          /* for DELAYED */
    const char *sender;          /* the DSN goes to this address */
    const struct dsn_rcpt *rcpts;
    size_t rcpt_count;
    int content_fd;              /* original message in its spool file */
    uint64_t content_offset, content_length;
    const char *add_headers;     /* the envelope's added header fields (written
                                  * before the content at delivery), or NULL */
    uint64_t return_limit;       /* longest original returned in full; longer: headers only */
};

/* Appends the whole DSN message (RFC 5322 headers + MIME body, CR LF line
 * ends, no dot-stuffing) to out. Returns 0, or -1 with error (unreadable
 * content). */
int dsn_build(const struct dsn_input *in, struct evbuffer *out, char *error, size_t errsize);

/* RFC 3461 §4.1: does a recipient with these NOTIFY bits (0 = none given)
 * get a DSN for this action? Default (none given): failures and delays. */
bool dsn_wanted(unsigned notify, enum dsn_action action);

#endif
