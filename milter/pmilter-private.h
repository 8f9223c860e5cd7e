/*
 * pmilter-private — what pmilter.c (libmilter's callbacks) and
 * pmilter-loop.c (the event loop thread that runs the chain) share: one
 * struct pconn per milter connection, and the loop's calls.
 *
 * A pconn is written by its libmilter thread only while no request of it
 * is in flight, read by the loop only while one is; the hand-over is the
 * pipe write and the mutex. The chain session (cs, run) is the loop's.
 */
#ifndef POSTERN_PMILTER_PRIVATE_H
#define POSTERN_PMILTER_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"
#include "policy/policy.h"

struct chain_session;
struct chain_run;
struct filter_edits;
struct postern_config;
struct ploop;

struct pconn {
    /* the transaction as the chain sees it (strings owned below) */
    struct filter_txn txn;
    char client_addr[64];
    char *client_name, *helo, *sender, *rcpt, *queue_id, *auth_user;
    char **rcpts;
    size_t rcpt_count;
    int fd; /* the message collected (header fields, body), or -1 */
    uint64_t size;
    int final_fd;     /* the late step: the content with the edits applied, or -1 */
    char *added_text; /* the late step: hdrs as text (txn.added_headers), or NULL */
    bool too_big;    /* past smtp.message_size_limit */
    bool header_end; /* the empty line is written */

    /* the loop's */
    struct chain_session *cs;
    struct chain_run *run;
    void *run_ctx; /* the run's record, freed when it is cancelled */

    /* the answer of the last stage, written by the loop before done */
    struct policy_decision d;
    bool failed;                /* the chain could not run */
    struct filter_header *hdrs; /* EOM: fields to add (chain's + policy's) */
    size_t hdr_count;
    struct filter_edits *edits; /* EOM: the chain's message edits, or NULL */
    /* the late step's answer: fields for the top, and its action (NONE, or
     * TEMPFAIL / REJECT / DISCONNECT when it refuses the message) */
    struct filter_header *late_hdrs;
    size_t late_count;
    enum filter_action late_action;
    struct smtp_status late_reply;
    const char *late_by;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned long seq_req, seq_done;
};

/* Builds the filters of cfg (gateway/smtp-filters.c) and the chain of the
 * filters named in ids ("id,id"; NULL = all) on a new loop thread. */
int ploop_start(const struct postern_config *cfg, const char *ids, struct ploop **l_r, char *error,
                size_t errsize);
/* Stops the thread and frees everything (no request may be in flight). */
void ploop_stop(struct ploop **l);
/* The longest timeout of the chain's filters, ms. */
unsigned ploop_max_timeout(const struct ploop *l);

/* Runs stage on c->txn and waits at most timeout_ms. Returns 0 with c->d
 * (and at EOM c->hdrs, c->edits) set, or -1 (timeout, no memory): the run
 * is then cancelled. */
int ploop_run(struct ploop *l, struct pconn *c, enum filter_stage stage, unsigned timeout_ms);
/* Runs the chain's late step (chain_run_late) on c->txn, which the caller
 * made the final message, and waits at most timeout_ms. Returns 0 with
 * c->late_* set, or -1 (timeout, no memory): the run is then cancelled. */
int ploop_run_late(struct ploop *l, struct pconn *c, unsigned timeout_ms);
/* Whether a filter of the chain has a late step (the chain is fixed at
 * start: any thread). */
bool ploop_has_late(const struct ploop *l);
/* Frees c's chain session on the loop; waits for it. */
void ploop_forget(struct ploop *l, struct pconn *c);

/* Frees c's answer (hdrs, edits, the late step's). */
void pconn_clear_answer(struct pconn *c);

#endif
