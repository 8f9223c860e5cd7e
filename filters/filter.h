/*
 * filter — what a filter is, and the one call (struct filter_call) through
 * which it sees a transaction and reports what it found.
 *
 * A filter is a module with a name, a config table, and a callback for each
 * stage it cares about. The chain (chain.h) calls the stage callbacks of all
 * its filters for a stage at once and waits for them. Contract of a stage
 * callback:
 *   return 1   done now: findings (symbols, an action) were added to call;
 *   return 0   pending: the filter calls filter_call_done(call, 1 or -1)
 *              later, on the same event loop, never from inside the callback;
 *   return -1  error: the filter's on_error applies.
 * A pending call may be cancelled (timeout, client gone): the chain calls the
 * filter's cancel(instance, call), after which the filter must not touch the
 * call again. Filters know nothing of sockets: they see struct filter_txn.
 *
 * Besides the stages, a filter may have a late step (filter_ops.late, same
 * contract, same timeout and on_error): it runs once per accepted message,
 * after every other change to it, on the message as it will be relayed
 * (for signing it; see struct filter_ops).
 *
 * Trusts filters to keep this contract; everything in filter_txn that came
 * from the network is untrusted and already bounded by the SMTP layer.
 */
#ifndef POSTERN_FILTER_H
#define POSTERN_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/netaddr.h"
#include "lib/smtp-reply.h"

enum filter_stage {
    FILTER_CONNECT,
    FILTER_HELO,
    FILTER_MAIL,
    FILTER_RCPT,
    FILTER_DATA,
    FILTER_EOM,
    FILTER_STAGES
};

/* The closed set of actions a filter may ask for, weakest first. When several
 * filters of one stage ask, the strongest wins (filter_action_stronger). */
enum filter_action {
    FILTER_ACTION_NONE,       /* nothing asked: go on */
    FILTER_ACTION_DISCARD,    /* accept and drop */
    FILTER_ACTION_HOLD,       /* accept into the held state */
    FILTER_ACTION_QUARANTINE, /* accept into quarantine */
    FILTER_ACTION_TEMPFAIL,   /* 4xx */
    FILTER_ACTION_REJECT,     /* 5xx */
    FILTER_ACTION_DISCONNECT, /* 421 and close */
    FILTER_ACTION_ACCEPT,     /* allow-listed: skip every further check of this session */
};

/* What a filter does when it fails or times out. */
enum filter_on_error {
    FILTER_ON_ERROR_TEMPFAIL, /* 451 4.7.1: fail closed (safety scanners) */
    FILTER_ON_ERROR_ACCEPT,   /* stop checking, accept */
    FILTER_ON_ERROR_SKIP,     /* as if the filter was not there, with a symbol NAME_ERROR(0) */
    FILTER_ON_ERROR_REJECT,   /* 554 5.7.1 */
};

enum filter_direction { FILTER_INBOUND, FILTER_OUTBOUND };

#define FILTER_SYMBOL_NAME_MAX 64
#define FILTER_SYMBOL_TEXT_MAX 128

struct filter_symbol {
    char name[FILTER_SYMBOL_NAME_MAX];  /* "DNSBL_ZEN" */
    double score;
    char text[FILTER_SYMBOL_TEXT_MAX];  /* "127.0.0.2" or "" */
};

/* The transaction as filters see it. Strings are NUL-terminated and valid
 * for the duration of the stage. */
struct filter_txn {
    const char *queue_id;       /* NULL before MAIL */
    const char *listener;
    enum filter_direction direction;
    struct netaddr client;
    const char *client_addr;    /* text */
    const char *client_name;    /* reverse name or "unknown" */
    const char *helo;           /* NULL before HELO */
    bool authenticated;
    const char *auth_user;      /* NULL unless authenticated */
    bool trusted;               /* in relay.trusted_networks */
    const char *sender;         /* from MAIL; "" = null sender */
    const char *rcpt;           /* the recipient being checked (RCPT stage) */
    const char *const *rcpts;   /* accepted so far (DATA, EOM) */
    size_t rcpt_count;
    int content_fd;             /* EOM, late: the message, read with pread; -1 otherwise */
    uint64_t content_off, content_len;
    /* The late step only (NULL otherwise): the header fields delivery
     * writes above the content, in order, as text: whole fields "Name:
     * value", each ending in CR LF, folded with CR LF and a space or tab;
     * NULL or "" when there are none. The message relayed is this text
     * followed by the content. */
    const char *added_headers;
    /* what earlier stages found (the client's and this transaction's) */
    const struct filter_symbol *symbols;
    size_t symbol_count;
};

/* True when an earlier stage added a symbol whose name starts with prefix
 * ("DNSWL_", "SPF_PASS"). */
bool filter_txn_has_symbol(const struct filter_txn *txn, const char *prefix);

#define FILTER_HEADER_NAME_MAX 64
#define FILTER_HEADER_VALUE_MAX 4000

struct filter_header {
    char *name, *value;
};

struct filter_call;

struct filter_ops {
    const char *name;
    /* NULL for stages the filter does not look at */
    int (*stage[FILTER_STAGES])(void *instance, struct filter_call *call);
    void (*cancel)(void *instance, struct filter_call *call);
    /* The late step (NULL: none), for what must see the message exactly as
     * it leaves (a DKIM signature). The program that runs the chain calls
     * it once per message, after the end-of-message verdict accepted it
     * (continue, accept, hold, quarantine) and after every other change:
     * the message edits applied, the header fields of every stage and of
     * the policy added; and before the commit. It runs even when an
     * earlier stage allow-listed the session (ACCEPT), since it checks
     * nothing. The txn is the final one: content_fd holds the final
     * content, added_headers the fields written above it, sender and
     * rcpts the final envelope. The contract is a stage's (1, 0 + done,
     * -1; cancel; the link's timeout and on_error), and in it:
     *   filter_call_add_header puts the field on top of the message, above
     *       every other (the late fields of all links go in link order,
     *       the first topmost);
     *   filter_call_symbol is kept with the transaction's (for the log:
     *       the verdict was taken before);
     *   filter_call_action can only refuse the message: TEMPFAIL, REJECT
     *       and DISCONNECT (and the same from on_error) refuse it with the
     *       reply, anything else is ignored;
     *   message edits and filter_call_delay are refused / ignored.
     * The late steps of all links run at once on the same message: a late
     * field is not seen by the other links' late steps. */
    int (*late)(void *instance, struct filter_call *call);
    /* The session ends (NULL: nothing to do): called once, after any call
     * of it was cancelled, with the txn its stages were given (the same
     * pointer through a session), for what a filter keeps per session, such
     * as the milter client's connection. Never called for a session in
     * which no stage ran. */
    void (*session_end)(void *instance, const struct filter_txn *txn);
};

/* For the filter, inside a stage callback or before filter_call_done: */
const struct filter_txn *filter_call_txn(const struct filter_call *call);
/* The stage; FILTER_EOM in the late step, where filter_call_is_late is true. */
enum filter_stage filter_call_stage(const struct filter_call *call);
bool filter_call_is_late(const struct filter_call *call);
/* Adds a symbol; text may be NULL. Over the chain's symbol limit it is dropped. */
void filter_call_symbol(struct filter_call *call, const char *name, double score,
                        const char *text);
/* Asks for an action; code/enhanced/text give the reply for REJECT,
 * TEMPFAIL and DISCONNECT (code 0 = the chain's default reply). */
void filter_call_action(struct filter_call *call, enum filter_action action, unsigned code,
                        const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Tarpitting: the stage's answer goes to the client only ms after the
 * chain is done (the longest any filter of the stage asked for; at most
 * FILTER_DELAY_MAX_MS). The session reads nothing meanwhile. */
#define FILTER_DELAY_MAX_MS 300000u
void filter_call_delay(struct filter_call *call, unsigned ms);

/* Asks for a header field on the message when it is accepted (written
 * before the content at delivery: Received-SPF, Authentication-Results;
 * in the late step, on top of every other field).
 * name: 1..FILTER_HEADER_NAME_MAX printable characters without ':'; value:
 * printable ASCII, at most FILTER_HEADER_VALUE_MAX octets, may be folded
 * ("\r\n\t"). Returns 0, or -1 (bad field, out of memory, over the
 * chain's limit of fields) and nothing is added. */
int filter_call_add_header(struct filter_call *call, const char *name, const char *value);

/*
 * Message edits (FILTER_EOM only, not in the late step; the milter client
 * and the content filters use them). They are applied by the gateway, after the whole chain, in
 * link order and in the order each filter asked, only when the message is
 * accepted; the spooled content is rewritten (headers and body) and the
 * envelope changed before the commit. Header names and values follow the
 * rules of filter_call_add_header. Each returns 0, or -1 (bad argument, not
 * at FILTER_EOM, out of memory, over a limit) and nothing is recorded.
 *   insert_header: the field goes before the index-th field of the header
 *       (0 = first; past the end = appended, like add_header);
 *   change_header: the index-th (1-based) field called name gets value;
 *       value NULL deletes it; no such field: value is appended (milter
 *       semantics, RFC-less but what Sendmail and Postfix do);
 *   replace_body: the body (everything after the header's empty line)
 *       becomes the concatenation of every chunk given (CR LF lines);
 *   change_sender / add_rcpt / delete_rcpt: the envelope; params are ESMTP
 *       parameters ("SIZE=..." is ignored) or NULL.
 * In detail (filters/edit.h, gateway/message-edit.h): indexes count the
 * fields as content_fd shows them, whose first is Postern's own Received:;
 * that field stays first and unchanged (an insert at 0 goes right after
 * it; a change or delete aimed at it is ignored and logged). Edits apply
 * one after the other, each to the header as the earlier ones left it;
 * names compare case-insensitively; change_header index 0 means 1. A later
 * link's replace_body wins over an earlier one's. Addresses are "<a@b>" or
 * "a@b" ("<>": null sender); delete_rcpt removes every recipient equal to
 * it (domain compared case-insensitively), and when none is left the
 * message is discarded. Limits: FILTER_EDITS_MAX (1,000) edits per
 * message, a body up to the message size limit; a replace_body that fails
 * drops the whole replacement (and later chunks fail too).
 */
int filter_call_insert_header(struct filter_call *call, size_t index, const char *name,
                              const char *value);
int filter_call_change_header(struct filter_call *call, const char *name, size_t index,
                              const char *value);
int filter_call_replace_body(struct filter_call *call, const void *chunk, size_t len);
int filter_call_change_sender(struct filter_call *call, const char *sender, const char *params);
int filter_call_add_rcpt(struct filter_call *call, const char *rcpt, const char *params);
int filter_call_delete_rcpt(struct filter_call *call, const char *rcpt);

/* Per-call room for the filter's own state while pending. */
void filter_call_set_data(struct filter_call *call, void *data);
void *filter_call_data(const struct filter_call *call);
/* Ends a pending call: result 1 = done, -1 = error (on_error applies). */
void filter_call_done(struct filter_call *call, int result);

bool filter_action_stronger(enum filter_action a, enum filter_action b);
const char *filter_action_name(enum filter_action a);
const char *filter_stage_name(enum filter_stage s);

#endif
