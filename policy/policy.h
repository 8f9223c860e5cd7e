/*
 * policy — turns a transaction's findings into one action. This is the
 * small first version: score thresholds per direction (inbound, outbound);
 * rules per domain and recipient, and the quarantine, come later behind the
 * same call.
 *
 * policy_decide takes what the chain found for a stage (its total score and
 * the strongest action a filter asked for) and answers the action the
 * session applies. An action a filter asked for stands unless the score
 * asks for a stronger one. Score thresholds (0 = off), checked at every
 * stage since the score only grows: reject_score → REJECT (554 5.7.1),
 * tempfail_score → TEMPFAIL (451 4.7.1); at end of message also
 * hold_score → HOLD and tag_score → tag (headers added, message accepted).
 * At the other stages HOLD, QUARANTINE and DISCARD are not final: they are
 * carried to the end of the message (chain_result.txn_action).
 *
 * Knows nothing of sockets or sessions. Trusts its config (validated by the
 * loader) and the chain's result.
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "filters/chain.h"
#include "filters/filter.h"
#include "lib/cfg.h"

struct policy_thresholds {
    double tag_score;
    double hold_score;
    double tempfail_score;
    double reject_score;
};

struct policy_settings {
    struct policy_thresholds inbound, outbound;
    bool add_score_header; /* X-Postern-Score on every accepted message */
};

/* The keys of policy.inbound and policy.outbound, and of policy itself. */
extern const struct cfg_key policy_keys[];
extern const struct cfg_key policy_threshold_keys[];

/* Loads the policy group (NULL: defaults). Returns the number of errors. */
int policy_settings_load(struct policy_settings *p, const config_setting_t *group,
                         struct cfg_errors *errs);
void policy_settings_describe(FILE *out);

struct policy_decision {
    enum filter_action action;
    struct smtp_status reply; /* for REJECT, TEMPFAIL, DISCONNECT; code 0 = default */
    bool tag;                 /* over tag_score: mark the message as spam */
    const char *why;          /* "score" or the deciding filter's name, or NULL */
};

/* Decides for one stage; final is true at end of message. */
void policy_decide(const struct policy_settings *p, enum filter_direction dir, bool final,
                   const struct chain_result *res, struct policy_decision *out);

/* Gives the header fields for an accepted message to add(ctx, name,
 * value): X-Spam-Flag when tagged, X-Spam-Status with the score and the
 * symbols when score_header is on (its value folded so that no line passes
 * 78 characters). Returns the number of fields given, or -1 when add
 * failed (returned -1). */
typedef int policy_header_fn(void *ctx, const char *name, const char *value);
int policy_headers(const struct policy_settings *p, const struct policy_decision *d,
                   const struct chain_result *res, const char *hostname, policy_header_fn *add,
                   void *ctx);

#endif
