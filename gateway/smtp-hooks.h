/*
 * smtp-hooks — where the filter chain meets the SMTP session.
 *
 * The session hands each stage (connect, helo, mail, rcpt, data, end of
 * message) to the hook. The hook answers at once or later:
 *   return 1  done: *result is filled;
 *   return 0  pending: the hook calls done(session, result) later, on the
 *             session's event loop; the session reads no input meanwhile;
 *   return -1 error: the session answers 451 4.3.0 (fail closed).
 * A pending hook must be cancellable: smtp_hooks.cancel is called when the
 * session ends before done() (client gone); after it done() must not run.
 * smtp_hooks.end (may be NULL) is called once when the session ends, after
 * any cancel: the hook frees what it keeps for the session (hook_state).
 *
 * The default hook (smtp_hooks_accept_all) accepts everything. The filter
 * chain installs itself through gateway/smtp-filters.c.
 */
#ifndef POSTERN_SMTP_HOOKS_H
#define POSTERN_SMTP_HOOKS_H

#include "lib/smtp-reply.h"

struct smtp_session;

enum smtp_stage {
    SMTP_STAGE_CONNECT,
    SMTP_STAGE_HELO,
    SMTP_STAGE_MAIL,
    SMTP_STAGE_RCPT,
    SMTP_STAGE_DATA,
    SMTP_STAGE_EOM,
    SMTP_STAGE_COUNT
};

/* The closed set of verdicts a stage can end in. */
enum smtp_verdict {
    SMTP_VERDICT_CONTINUE,   /* go on with the next check / the normal reply */
    SMTP_VERDICT_ACCEPT,     /* accept, skip further checks in this session */
    SMTP_VERDICT_REJECT,     /* 5xx from result->reply */
    SMTP_VERDICT_TEMPFAIL,   /* 4xx from result->reply */
    SMTP_VERDICT_DISCARD,    /* answer 250, then drop the message */
    SMTP_VERDICT_DISCONNECT, /* send result->reply (421), close */
    SMTP_VERDICT_HOLD,       /* accept into the held queue state */
};

struct smtp_hook_result {
    enum smtp_verdict verdict;
    struct smtp_status reply; /* for REJECT, TEMPFAIL, DISCONNECT; code 0 = default text */
};

typedef void smtp_hook_done_cb(struct smtp_session *session, const struct smtp_hook_result *result);

struct smtp_hooks {
    int (*stage)(void *ctx, struct smtp_session *session, enum smtp_stage stage,
                 struct smtp_hook_result *result, smtp_hook_done_cb *done);
    void (*cancel)(void *ctx, struct smtp_session *session);
    void (*end)(void *ctx, struct smtp_session *session);
    void *ctx;
};

extern const struct smtp_hooks smtp_hooks_accept_all;

const char *smtp_stage_name(enum smtp_stage stage);

#endif
