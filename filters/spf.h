/*
 * spf — Sender Policy Framework (RFC 7208) with libspf2: the HELO identity
 * at HELO/EHLO and the MAIL FROM identity at MAIL, every DNS query through
 * the worker's resolver (lib/dns.h), so tests and admins point it anywhere.
 *
 * Results become symbols with configured scores: SPF_PASS, SPF_FAIL,
 * SPF_SOFTFAIL, SPF_NEUTRAL, SPF_NONE, SPF_TEMPERROR, SPF_PERMERROR for the
 * MAIL FROM check (greylist's spf_allow_domains looks for "SPF_PASS") and
 * SPF_HELO_* for the HELO check; the text of each is the domain checked.
 * The MAIL FROM check also asks for a Received-SPF header field (§9.1:
 * result, comment, client-ip, envelope-from, helo, receiver, identity,
 * problem) and, with reject_fail, refuses a fail with 550 5.7.23 (RFC 7372)
 * and the domain's explanation (exp=, or the configured default). A null
 * sender's MAIL FROM identity is postmaster@<HELO name> (§2.4). A name
 * that is no multi-label domain (an address literal, "localhost") is
 * "none" without a lookup (§4.3). Authenticated and trusted clients are not
 * checked (skip_authenticated, skip_trusted). Loopback clients are checked
 * like any other: libspf2's own entry points pass localhost without a look,
 * so the check calls its record fetch and interpreter itself.
 *
 * Why threads: libspf2 has no non-blocking interface; its DNS layer
 * (SPF_dns_server_t.lookup, spf-eval.c) must return the answer. So each
 * check runs on the instance's small pool of threads (lib/workpool.h), its
 * DNS layer asks the loop's resolver through dns-bridge.h and waits (at
 * most lookup_timeout for the whole check; then temperror), and the result
 * comes back to the loop in the pool's done(). A cancelled call (timeout,
 * client gone) makes the check's further lookups end at once.
 *
 * Limits on top of libspf2's ten DNS mechanisms per record: at most ten
 * include/redirect records per check (a loop is a permerror), and at most
 * SPF_MAX_QUERIES DNS queries per check (more is a permerror). libspf2 does
 * not implement the void-lookup limit of §4.6.4.
 *
 * Made per worker through its module (spf-config.c). Trusts its config
 * (validated by the module's load); everything from DNS and the client
 * (names, records, explanations) is bounded and sanitized before it goes
 * into a reply, a header or the log.
 */
#ifndef POSTERN_SPF_H
#define POSTERN_SPF_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/filter.h"
#include "filters/module.h"

/* RFC 7208's results, in the order of the score keys. */
enum spf_outcome {
    SPF_OUT_PASS,
    SPF_OUT_FAIL,
    SPF_OUT_SOFTFAIL,
    SPF_OUT_NEUTRAL,
    SPF_OUT_NONE,
    SPF_OUT_TEMPERROR,
    SPF_OUT_PERMERROR,
    SPF_OUTCOMES
};

/* Which identity a check is about. */
enum spf_scope { SPF_SCOPE_HELO, SPF_SCOPE_MAILFROM };

#define SPF_MAX_QUERIES 120  /* DNS queries per check */
#define SPF_MAX_RECORDS 11   /* records fetched per check: the first + 10 include/redirect */
#define SPF_TEXT_MAX 256     /* explanation, problem */
#define SPF_IDENTITY_MAX 600 /* "local@domain" as the SMTP layer formats it */

struct spf_settings {
    struct filter_common common;
    bool check_helo;
    bool reject_fail;
    bool add_header;
    bool skip_authenticated, skip_trusted;
    long long lookup_timeout; /* ms for one whole check */
    long long threads;
    char *explanation;               /* the default explanation, an SPF macro string */
    double score[SPF_OUTCOMES];      /* MAIL FROM: SPF_* */
    double helo_score[SPF_OUTCOMES]; /* HELO: SPF_HELO_* */
};

extern const struct filter_ops spf_filter_ops;
extern const struct filter_module spf_module;

struct spf;
struct dns;
struct event_base;

/* Copies what it needs from cfg; starts cfg->threads threads. Returns 0 and
 * *spf_r, or -1 with error. */
int spf_new(struct event_base *base, struct dns *dns, const char *receiver,
            const struct spf_settings *cfg, struct spf **spf_r, char *error, size_t errsize);
/* Ends the checks in flight (their lookups at once), waits for the threads. */
void spf_free(struct spf **spf);

/* "pass", "fail", ... (RFC 7208 §2.6). */
const char *spf_outcome_name(enum spf_outcome o);
/* "SPF_FAIL" or "SPF_HELO_FAIL". */
const char *spf_symbol(enum spf_scope scope, enum spf_outcome o);

/* Whether name is a multi-label domain name that can be checked: ASCII
 * letters, digits, '-' and '_', labels of 1..63 octets, at most 253 octets,
 * an optional final dot (§4.3). */
bool spf_domain_ok(const char *name);

/* text as printable ASCII for a reply or a header: other octets become
 * '?', runs of white space one space, cut to size. */
void spf_clean_text(const char *text, char *out, size_t size);

/* What the Received-SPF field reports. */
struct spf_report {
    enum spf_outcome outcome;
    enum spf_scope scope; /* identity= */
    const char *receiver; /* our host name */
    const char *client_ip;
    const char *identity; /* the mailbox checked: the sender, or postmaster@<helo> */
    const char *helo;     /* NULL when none */
    const char *problem;  /* permerror, temperror: what; NULL or "" = none */
};

/* The Received-SPF field's value (RFC 7208 §9.1): the result, a comment,
 * then client-ip, envelope-from, helo, problem, receiver and identity, each
 * a dot-atom or a quoted-string; folded ("\r\n\t") so that with the
 * field's name no line passes 78 columns unless one word is longer.
 * Returns 0, or -1 when it does not fit in size. */
int spf_received_value(const struct spf_report *r, char *out, size_t size);

#endif
