/*
 * spf-eval — one SPF check (RFC 7208 check_host()) with libspf2, run on a
 * pool thread; the filter (spf.c) gives it the identity and gets a result.
 *
 * libspf2 resolves through a DNS layer of ours (SPF_dns_server_t with
 * lookup, get_spf and get_exp): each question goes to a spf_resolver
 * (dns-bridge.h in the filter; a table in the fuzz target), answers are
 * turned into libspf2's SPF_dns_rr_t. get_spf fetches and picks the
 * "v=spf1" record itself (none, several: permerror; at most
 * SPF_MAX_RECORDS per check, so include loops end), get_exp looks up an
 * exp= explanation (exactly one TXT record, else the default). The type
 * SPF (99), retired by §3.1, is never asked. Every check has its own
 * libspf2 server and request, so checks on several threads share nothing.
 *
 * Called on pool threads (blocks while the resolver answers) and by the
 * config check. Trusts libspf2 to parse records; bounds and sanitizes what
 * comes out of it (explanation, problem) and what goes into it (the
 * identity's domain must be a domain name).
 */
#ifndef POSTERN_SPF_EVAL_H
#define POSTERN_SPF_EVAL_H

#include <stddef.h>
#include <sys/socket.h>

#include "filters/dns-bridge.h"
#include "filters/spf.h"
#include "lib/netaddr.h"

/* Asks q; returns 0 with *out filled (freed by the caller with
 * dns_bridge_answer_free), or -1 (no answer: a temporary failure). */
typedef int spf_ask_fn(void *ctx, const struct dns_bridge_question *q,
                       struct dns_bridge_answer *out);

struct spf_resolver {
    spf_ask_fn *ask;
    void *ctx;
};

struct spf_eval_in {
    enum spf_scope scope;
    struct netaddr client;
    const char *helo;        /* "" or NULL = none */
    const char *sender;      /* MAILFROM: "" = the null sender */
    const char *receiver;    /* %{r} and the comments */
    const char *explanation; /* the default explanation: an SPF macro string */
};

struct spf_eval_out {
    enum spf_outcome outcome;
    char domain[256];                /* the domain checked */
    char identity[SPF_IDENTITY_MAX]; /* the mailbox: the sender, or postmaster@<helo> */
    char explanation[SPF_TEXT_MAX];  /* fail: cleaned (spf_clean_text) */
    char problem[SPF_TEXT_MAX];      /* permerror, temperror, none: what */
    unsigned queries;                /* DNS questions asked */
};

void spf_eval(const struct spf_eval_in *in, const struct spf_resolver *res,
              struct spf_eval_out *out);

/* Whether text compiles as an SPF macro string (an explanation); -1 with
 * error when not. */
int spf_explanation_check(const char *text, char *error, size_t errsize);

/* The address of a reverse name as libspf2 writes it ("4.3.2.1.in-addr.arpa",
 * 32 nibbles then "ip6.arpa"), as a sockaddr_in or sockaddr_in6 (port 0);
 * -1 when name is not one. */
int spf_reverse_name_parse(const char *name, struct sockaddr_storage *out);

#endif
