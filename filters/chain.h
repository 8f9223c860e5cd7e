/*
 * chain — runs the configured filters for each stage of a transaction and
 * gathers their findings into one result.
 *
 * For a stage, every filter that has a callback for it is called at once;
 * the chain counts what is outstanding, arms each pending filter's timeout,
 * and when nothing is outstanding merges: symbols are collected (a score
 * total is kept), the strongest action wins (filter.h), a filter that
 * failed or timed out is handled by its on_error. An ACCEPT (allow-list)
 * stops every further check of the session: later stages return at once
 * with no filter called. Stats per filter (calls, hits = calls that added a
 * symbol or asked for an action, errors, timeouts, total time) are kept for
 * the metrics endpoint.
 *
 * The late step (filter.h, filter_ops.late) is a run of its own
 * (chain_run_late), made by the program once the message is final: the
 * links that have one are called at once, as for a stage, even after an
 * ACCEPT; their symbols join the transaction's, their header fields go to
 * late_headers (for the top of the message) and the run's action is what
 * the caller checks for a refusal.
 *
 * Owned by one worker and its event_base. Trusts the filters' contract
 * (filter.h); never calls back inside chain_run.
 */
#ifndef POSTERN_CHAIN_H
#define POSTERN_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"

struct event_base;
struct filter_edits;
struct chain;
struct chain_run;
struct chain_session;

struct chain_link {
    const struct filter_ops *ops;
    void *instance;                 /* the filter's own state (config, connections) */
    enum filter_on_error on_error;
    unsigned timeout_ms;
};

#define CHAIN_SYMBOLS_MAX 128
#define CHAIN_HEADERS_MAX 32 /* header fields per transaction */

/* The findings of a session's stages so far (symbols accumulate over the
 * stages of a transaction; the action is the stage's). */
struct chain_result {
    struct filter_symbol symbols[CHAIN_SYMBOLS_MAX];
    size_t symbol_count;
    double score;
    enum filter_action action;      /* of the last stage run */
    enum filter_action txn_action;  /* strongest HOLD/QUARANTINE/DISCARD of the transaction */
    struct smtp_status reply;       /* for REJECT/TEMPFAIL/DISCONNECT; code 0 = default */
    const char *action_by;          /* name of the filter that decided, or NULL */
    /* header fields the filters asked for (filter_call_add_header), in link
     * order per stage; kept like the symbols (the client's stay) */
    struct filter_header headers[CHAIN_HEADERS_MAX];
    size_t header_count;
    /* header fields of the late step (chain_run_late) for the top of the
     * message, in link order (the first goes topmost); freed by reset */
    struct filter_header late_headers[CHAIN_HEADERS_MAX];
    size_t late_header_count;
    /* message edits (filter.h, FILTER_EOM only) of the transaction, every
     * finished call's in link order, each call's in the order it asked
     * (filters/edit.h); NULL = none. A failed call's are dropped with its
     * symbols; a call whose edits would pass the list's limits loses them
     * all (logged). Freed by reset and free, or taken by the gateway. */
    struct filter_edits *edits;
};

struct chain_filter_stats {
    const char *name;
    uint64_t calls, hits, errors, timeouts;
    uint64_t usec;                  /* time spent, callback start to done */
};

struct chain *chain_new(struct event_base *base, const struct chain_link *links, size_t count);
void chain_free(struct chain **chain);
/* Bounds the replaced body a filter of this chain may record (body_max
 * octets, 0 = FILTER_EDIT_BODY_MAX_DEFAULT) and names the directory where a
 * body larger than edit.h's FILTER_EDIT_BODY_MEM is kept (NULL = memory).
 * Returns 0, or -1 when out of memory (the limits stay as they were). */
int chain_set_edit_limits(struct chain *chain, uint64_t body_max, const char *tmp_dir);

/* One per SMTP session: remembers an ACCEPT (allow-list) across stages and
 * holds the findings. chain_session_reset starts a new transaction: the
 * symbols and score of the session's CONNECT and HELO stages stay (they are
 * about the client), those of the transaction's stages go, and so does
 * txn_action; ACCEPT stays. */
struct chain_session *chain_session_new(struct chain *chain);
void chain_session_reset(struct chain_session *s);
/* Cancels the stage in progress, tells every filter that has one through
 * its session_end (filter.h), and frees. NULL-safe. */
void chain_session_free(struct chain_session **s);
const struct chain_result *chain_session_result(const struct chain_session *s);
/* Takes the transaction's message edits (chain_result.edits) for the
 * caller to apply and free (filter_edits_free); NULL when there are none. */
struct filter_edits *chain_session_take_edits(struct chain_session *s);

typedef void chain_done_cb(void *ctx, const struct chain_result *result);

/* Runs stage for txn. cb runs once, on the loop, never inside this call.
 * Returns a handle for chain_run_cancel (cb is then not called), or NULL
 * when out of memory (cb is not called). txn must stay valid until cb. */
struct chain_run *chain_run(struct chain_session *s, enum filter_stage stage,
                            const struct filter_txn *txn, chain_done_cb *cb, void *ctx);
/* Runs the late step (filter_ops.late) of every link that has one, as
 * chain_run runs a stage (same callback rules, timeouts, on_error, cancel
 * with chain_run_cancel), also when the session was allow-listed; txn is
 * the final message (filter.h). In the result: the late calls' symbols
 * appended (and their score added), their fields in late_headers, and
 * action / reply / action_by the strongest a late call asked for or its
 * on_error gave (the caller refuses the message on TEMPFAIL, REJECT or
 * DISCONNECT and ignores anything else); txn_action and an ACCEPT are not
 * touched. No tarpit delay applies. */
struct chain_run *chain_run_late(struct chain_session *s, const struct filter_txn *txn,
                                 chain_done_cb *cb, void *ctx);
void chain_run_cancel(struct chain_run *run);

size_t chain_stats(const struct chain *chain, struct chain_filter_stats *out, size_t max);

/* True when some filter of the chain looks at stage (so its input is worth
 * preparing, e.g. the content for FILTER_EOM). */
bool chain_has_stage(const struct chain *chain, enum filter_stage stage);
/* True when some filter of the chain has a late step. */
bool chain_has_late(const struct chain *chain);

#endif
