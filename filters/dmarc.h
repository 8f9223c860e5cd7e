/*
 * dmarc — the DMARC filter (RFC 7489) at the end of the message, with
 * libopendmarc for the record, the alignment and the policy, and the one
 * Authentication-Results field (RFC 8601) of the message.
 *
 * The author: exactly one From: field with exactly one mailbox with a
 * usable domain (§6.6.1; dkim-message.h). Anything else is DMARC_BAD_FROM
 * "<why>" and bad_from_action (reject: 550 5.7.1, the default).
 *
 * The record: "_dmarc.<From: domain>" TXT through the worker's resolver;
 * when there is none, "_dmarc.<organizational domain>" (the public suffix
 * list, public_suffix_list, read by libopendmarc), whose sp= then applies.
 * One record starting "v=DMARC1" counts; none or several is "no policy".
 *
 * The identifiers: SPF from the spf filter's symbol of this transaction
 * (SPF_PASS, SPF_FAIL, ... added at MAIL; its text is the domain checked,
 * "example.org" or "domain=example.org"; without a text, the envelope
 * sender's domain, or the HELO name for a null sender); DKIM from verifying
 * every signature here (dkim-verify.h: the dkim filter runs at the same
 * stage, so its symbols are not visible yet). libopendmarc aligns them with
 * the From: domain (adkim/aspf, relaxed by default) and says the policy.
 *
 * Results: DMARC_PASS, DMARC_FAIL "<domain> policy=<p>[ pct=<n>
 * applied=<disposition>]", DMARC_NONE (no record, or one that does not
 * parse), DMARC_TEMPERROR (the record lookup failed for now), each with its
 * score. A failure's disposition is the record's policy, lowered one step
 * (reject → quarantine → none) for the messages that pct= leaves out
 * (honour_pct), then mapped by reject_action / quarantine_action: reject
 * (550 5.7.1), quarantine (the QUARANTINE action: held) or none (symbol
 * only). temperror_action "tempfail" answers a lookup failure with 451.
 *
 * Authentication-Results (authres): "<server.hostname>; spf=...
 * smtp.mailfrom=...; dkim=... header.d=... header.s=... header.b=... (one
 * per signature); dmarc=... (p=... dis=...) header.from=...". Fields of the
 * message that claim Postern's authserv-id are removed with
 * filter_call_change_header (remove_forged_authres; symbol
 * DMARC_FORGED_AUTHRES "removed <n>"), outbound mail too.
 *
 * Outbound mail (skip_outbound) is not evaluated. A message that cannot be
 * read is an error of the filter (on_error, "skip" by default).
 *
 * Made per worker through its module (dmarc-config.c). libopendmarc keeps
 * the public suffix list process-wide: every instance (re)loads it when it
 * is made. Trusts its config; everything from the message and DNS is
 * checked before it is used or written.
 */
#ifndef POSTERN_DMARC_H
#define POSTERN_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/filter.h"
#include "filters/module.h"

/* The order of the values of reject_action, quarantine_action and
 * bad_from_action. */
enum dmarc_disposition { DMARC_DISP_REJECT, DMARC_DISP_QUARANTINE, DMARC_DISP_NONE };
/* The order of the values of temperror_action. */
enum dmarc_temperror_action { DMARC_TEMP_NONE, DMARC_TEMP_TEMPFAIL };

struct dmarc_settings {
    struct filter_common common;
    int reject_action;     /* enum dmarc_disposition */
    int quarantine_action; /* enum dmarc_disposition */
    int bad_from_action;   /* enum dmarc_disposition */
    int temperror_action;  /* enum dmarc_temperror_action */
    bool honour_pct;
    bool skip_outbound;
    bool authres;
    bool remove_forged_authres;
    double score_pass, score_fail, score_none, score_temperror, score_bad_from;
    char *public_suffix_list;
    long long max_signatures;
    long long min_key_bits;
    long long max_header_size;
    long long threads;
};

extern const struct filter_ops dmarc_filter_ops;
extern const struct filter_module dmarc_module;

struct dmarc_filter;

/* Makes an instance on env's loop with env's resolver. Returns 0 and *f_r,
 * or -1 with error. */
int dmarc_filter_new(const struct filter_env *env, const struct dmarc_settings *cfg,
                     struct dmarc_filter **f_r, char *error, size_t errsize);
void dmarc_filter_free(struct dmarc_filter **f);

/* The one DMARC record among a name's TXT records (RFC 7489 §6.6.3): the
 * index of the only one starting "v=DMARC1", -1 for none, -2 for several. */
int dmarc_pick_record(const char *const *txt, size_t n);

/* The SPF result the spf filter left in symbols: 1 with its result
 * ("pass", ...) and domain (checked: a host name; from the text, else
 * fallback), 0 when there is none. */
int dmarc_spf_result(const struct filter_symbol *symbols, size_t n, const char *fallback,
                     const char **result, char *domain, size_t size);

#endif
