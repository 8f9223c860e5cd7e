/*
 * dmarc-private — the inside of the dmarc filter, shared by dmarc.c (the
 * instances and a call's flow: the DKIM check, the record lookups) and
 * dmarc-eval.c (the evaluation with libopendmarc and what it finds: the
 * symbols, the action, Authentication-Results, the removals). Nothing
 * outside the dmarc filter includes this.
 */
#ifndef POSTERN_DMARC_PRIVATE_H
#define POSTERN_DMARC_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/dkim-message.h"
#include "filters/dkim-verify.h"
#include "filters/dmarc.h"

struct dns;
struct dns_query;
struct workpool;

struct dmarc_filter {
    struct dns *dns;
    struct workpool *pool;
    struct dkim_verifier *verifier;
    char *hostname;
    struct dmarc_settings cfg; /* scalars only: the strings stay the config's */
};

enum record_state { RECORD_PENDING, RECORD_FOUND, RECORD_NONE, RECORD_TEMPERROR };

struct dmarc_call {
    struct dmarc_filter *f;
    struct filter_call *call;
    struct dkim_check *check;
    bool dkim_done;
    struct dkim_sig_result *sigs;
    size_t nsig;
    size_t *forged; /* 1-based indexes of Authentication-Results fields to remove */
    size_t forged_count;
    const char *bad_from;
    char from[DKIM_DOMAIN_MAX + 1];
    char org[DKIM_DOMAIN_MAX + 1];
    struct dns_query *q;
    bool asking_org;
    enum record_state record;
    char *record_txt;
    bool record_at_org;
    const char *record_why;
};

/* Adds what the call found: the removals of forged fields, then for an
 * author that is not one (bad_from) or an evaluated message (evaluated: the
 * check and the lookups are done) the symbols, the action and the
 * Authentication-Results field. Does not end the call. */
void dmarc_conclude(struct dmarc_call *dc, bool evaluated);

#endif
