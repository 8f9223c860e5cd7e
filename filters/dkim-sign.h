/*
 * dkim-sign — DKIM signing of outbound mail with libopendkim (RFC 6376):
 * picks a key of the key table by the author's or the envelope sender's
 * domain, signs the message as it will be relayed (relaxed/relaxed,
 * rsa-sha256 or ed25519-sha256 as the key is) on a workpool thread and
 * hands back the DKIM-Signature field value, folded with CR LF TAB as
 * filter.h wants it.
 *
 * A key matches an address's domain when its domain is that domain or a
 * parent of it ("example.org" signs for "mail.example.org": d= stays the
 * key's domain, which DMARC's relaxed alignment accepts); the longest
 * matching key domain wins, and on a tie the first in the table. The
 * author's domain comes from the one From: mailbox (dkim-message.h); a
 * message without exactly one has none.
 *
 * What is signed is the final message of the late step (filter.h): the
 * header section as it will be relayed, that is the fields of
 * txn->added_headers (the filters' and the policy's, written above the
 * content at delivery) followed by the content's own, then the content's
 * body. The key is picked by the content's From: (the author's fields are
 * never among the added ones) and the final envelope sender. The
 * DKIM-Signature field itself goes above all of them.
 *
 * Owned by one event loop; the pool is the caller's. Keys were read and
 * checked when the config was loaded (dkim-config.c).
 */
#ifndef POSTERN_DKIM_SIGN_H
#define POSTERN_DKIM_SIGN_H

#include <stddef.h>

#include "filters/filter.h"

struct workpool;

/* The order of the values of sign_by. */
enum dkim_sign_by { DKIM_SIGN_BY_FROM_OR_SENDER, DKIM_SIGN_BY_FROM, DKIM_SIGN_BY_SENDER };

struct dkim_sign_key {
    char *domain; /* lower case, a host name */
    char *selector;
    char *key_file;
    char *pem; /* the private key, PEM */
    int alg;   /* DKIM_SIGN_RSASHA256 or DKIM_SIGN_ED25519SHA256 */
};

struct dkim_sign_config {
    const struct dkim_sign_key *keys;
    size_t key_count;
    const char *const *sign_headers; /* lower-case field names */
    size_t sign_count;
    const char *const *oversign_headers;
    size_t oversign_count;
    enum dkim_sign_by by;
    size_t max_header;
};

struct dkim_signer;

/* Copies cfg. Returns 0 and *s_r, or -1 with error. pool is not owned. */
int dkim_signer_new(struct workpool *pool, const struct dkim_sign_config *cfg,
                    struct dkim_signer **s_r, char *error, size_t errsize);
/* Every job must have ended or been cancelled. NULL-safe, clears *s. */
void dkim_signer_free(struct dkim_signer **s);

/* The key for a message (from_domain and sender_domain may be NULL), as
 * sign_by says; NULL when none matches. */
const struct dkim_sign_key *dkim_signer_pick(const struct dkim_signer *s, const char *from_domain,
                                             const char *sender_domain);

struct dkim_sign_job;

/* status 1: signed with key, value is the DKIM-Signature field's value;
 * 0: no key for this message; -1: error (why). The job is gone after. */
typedef void dkim_sign_cb(void *ctx, int status, const struct dkim_sign_key *key, const char *value,
                          const char *why);

/* Signs the message of txn (the late step's: txn->added_headers, then the
 * content). The callback runs on the loop, never inside this call. NULL
 * when out of resources. */
struct dkim_sign_job *dkim_sign_start(struct dkim_signer *s, const struct filter_txn *txn,
                                      dkim_sign_cb *cb, void *ctx);
/* No callback runs after this. NULL-safe. */
void dkim_sign_cancel(struct dkim_sign_job *j);

#endif
