/*
 * dkim-verify — checks every DKIM-Signature of a spooled message with
 * libopendkim (RFC 6376) and reports one result per signature. Used by the
 * dkim filter (symbols) and by the dmarc filter (alignment, and the dkim
 * part of Authentication-Results).
 *
 * libopendkim verifies by blocking calls, so the work runs on a workpool
 * thread in two jobs, and its DNS never blocks: (1) read the header section
 * and feed it to a verifying handle made with DKIM_LIBFLAGS_DELAYSIGPROC,
 * which parses the signatures at end of header without looking a key up;
 * (2) on the loop, ask Postern's resolver (lib/dns.h) for every
 * "<s>._domainkey.<d>" TXT record at once; (3) feed the body and end the
 * message on a pool thread, where libopendkim takes each key from the
 * answers through its key-lookup callback (dkim_set_key_lookup) instead of
 * its own resolver. libopendkim's query hooks are set to refuse, so no
 * query ever leaves by another way.
 *
 * A check owns a dup of the content descriptor (the session may close its
 * own while a job runs) and everything it allocates; cancelling it stops
 * its queries, and a job still on a thread is freed when it comes back.
 *
 * Owned by one event loop; the pool is the caller's. Trusts libopendkim to
 * parse signatures and keys; names put into queries are checked here
 * (dkim_domain_ok) and the texts reported are sanitized.
 */
#ifndef POSTERN_DKIM_VERIFY_H
#define POSTERN_DKIM_VERIFY_H

#include <stddef.h>

#include "filters/dkim-message.h"
#include "filters/filter.h"

struct dns;
struct event_base;
struct workpool;

/* RFC 8601 §2.7.1 results, the closed set this verifier reports. */
enum dkim_outcome {
    DKIM_OUTCOME_PASS,      /* signature and body hash verify */
    DKIM_OUTCOME_FAIL,      /* signature or body hash mismatch */
    DKIM_OUTCOME_PERMERROR, /* no key, bad key, bad signature syntax, expired, ... */
    DKIM_OUTCOME_TEMPERROR, /* the key lookup failed for now */
};

#define DKIM_SELECTOR_MAX 63

struct dkim_sig_result {
    enum dkim_outcome outcome;
    char domain[DKIM_DOMAIN_MAX + 1];     /* d=, "" when missing or not a host name */
    char selector[DKIM_SELECTOR_MAX + 1]; /* s=, the same */
    char b[9];                            /* the first 8 characters of b= (RFC 6008) */
    char why[64];                         /* "" on pass; "body hash mismatch", ... */
};

struct dkim_verify_config {
    size_t max_signatures; /* the first this many are verified, the rest ignored */
    unsigned min_key_bits; /* smaller RSA keys make a permerror */
    size_t max_header;     /* bound of the header section (octets) */
};

struct dkim_verifier;

/* Returns 0 and *v_r, or -1 with error. dns and pool are not owned. */
int dkim_verifier_new(struct event_base *base, struct dns *dns, struct workpool *pool,
                      const struct dkim_verify_config *cfg, struct dkim_verifier **v_r, char *error,
                      size_t errsize);
/* Every check must have ended or been cancelled. NULL-safe, clears *v. */
void dkim_verifier_free(struct dkim_verifier **v);

struct dkim_check;

/* The header section, as soon as it is read (valid during the call). The
 * check may be cancelled from inside. */
typedef void dkim_header_cb(void *ctx, const struct dkim_message *header);
/* The end: status 0 with n results (0 = the message has no signature), or
 * -1 with why (the message could not be read). The check is gone after. */
typedef void dkim_check_cb(void *ctx, int status, const struct dkim_sig_result *sigs, size_t n,
                           const char *why);

/* Checks the content of txn (FILTER_EOM). hcb may be NULL. Callbacks run on
 * the loop, never inside this call. Returns NULL (no callback) when out of
 * resources. */
struct dkim_check *dkim_check_start(struct dkim_verifier *v, const struct filter_txn *txn,
                                    dkim_header_cb *hcb, dkim_check_cb *cb, void *ctx);
/* No callback runs after this. NULL-safe. */
void dkim_check_cancel(struct dkim_check *c);

/* "pass", "fail", "permerror", "temperror". */
const char *dkim_outcome_name(enum dkim_outcome o);

#endif
