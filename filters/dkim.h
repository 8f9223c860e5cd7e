/*
 * dkim — the DKIM filter (RFC 6376): at the end of the message it verifies
 * every signature of inbound mail; in the late step (filter.h) it signs
 * outbound mail.
 *
 * Inbound (verify = yes): one symbol per signature verified (the first
 * max_signatures), its text "d=<domain> s=<selector>" and, when it is not
 * valid, ": <reason>":
 *   DKIM_VALID      the signature and the body hash verify;
 *   DKIM_INVALID    they do not, or the key is missing, revoked, too small,
 *                   the signature is malformed or expired;
 *   DKIM_TEMPERROR  the key could not be looked up now;
 *   DKIM_NONE       (no text) the message has no signature.
 * Each symbol's score (score_valid, score_invalid, score_temperror,
 * score_none) counts once per message, however many signatures share it.
 * The dmarc filter does not read these symbols: the filters of one stage
 * run at once (chain.h), so it verifies the signatures itself with the same
 * code (dkim-verify.h) and its Authentication-Results carries the per-
 * signature results. With authres = yes (for a chain without dmarc) this
 * filter adds an Authentication-Results field with the dkim results.
 *
 * Outbound (a key table, keys): signs with the key of the author's or the
 * envelope sender's domain (sign_by; dkim-sign.h), adds the DKIM-Signature
 * field on top of the message and the symbol DKIM_SIGNED(0) "d=<domain>
 * s=<selector>". Mail with no matching key goes unsigned, without a
 * symbol. Signing is the filter's late step: it runs after the verdict and
 * after every other change to the message (other filters' message edits,
 * the header fields the filters and the policy add), on the message as it
 * will be relayed, so the signature covers all of them wherever dkim is in
 * the chain; a field another filter adds is signed when sign_headers
 * names it. Outbound mail is not verified, inbound mail not signed.
 *
 * A failure to read the message, or a signing error, is an error of the
 * filter (on_error, "skip" by default). All DNS goes through the worker's
 * resolver; libopendkim's own resolver is never used.
 *
 * Made per worker through its module (dkim-config.c). Trusts its config
 * (validated by the module's load, which also reads and checks the keys);
 * everything from the message and DNS is checked in dkim-verify.c.
 */
#ifndef POSTERN_DKIM_H
#define POSTERN_DKIM_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/dkim-sign.h"
#include "filters/dkim-verify.h"
#include "filters/filter.h"
#include "filters/module.h"

struct dkim_settings {
    struct filter_common common;
    bool verify;
    long long max_signatures;
    long long min_key_bits;
    long long max_header_size;
    long long threads;
    double score_valid, score_invalid, score_temperror, score_none;
    bool authres;
    int sign_by; /* enum dkim_sign_by */
    struct cfg_strlist sign_headers;
    struct cfg_strlist oversign_headers;
    struct dkim_sign_key *keys; /* keys = ( { domain; selector; key_file; } ), read by load */
    size_t key_count;
};

extern const struct filter_ops dkim_filter_ops;
extern const struct filter_module dkim_module;

/* The instance (not "struct dkim": libopendkim's handle has that name). */
struct dkim_filter;

/* Makes an instance on env's loop with env's resolver. Returns 0 and *f_r,
 * or -1 with error. */
int dkim_filter_new(const struct filter_env *env, const struct dkim_settings *cfg,
                    struct dkim_filter **f_r, char *error, size_t errsize);
void dkim_filter_free(struct dkim_filter **f);

/* "d=example.org s=sel" and, unless it passed, ": <why>". */
void dkim_symbol_text(const struct dkim_sig_result *r, char *out, size_t size);

#endif
