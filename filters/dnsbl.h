/*
 * dnsbl — the DNS block and allow list filter (DNSBL, DNSWL).
 *
 * At CONNECT it looks the client's address up in each configured list
 * (reversed octets for IPv4, reversed nibbles for IPv6; A records; a list
 * with ipv6 = false is not asked about IPv6 clients). An answer counts when it
 * lies in 127.0.0.0/8 and matches the list's codes (exact) or mask (the last
 * octet shares a bit with it); with neither set any such answer counts.
 * Answers outside 127.0.0.0/8 never count (the list is broken: logged once
 * per zone). Each listing adds a symbol with the list's score and the answer
 * as text: DNSBL_<ZONE> for a block list, DNSWL_<ZONE> for an allow list; an
 * allow list with accept = true asks for ACCEPT (skip every further check of
 * the session).
 *
 * When the listings' scores (allow lists' too: they are usually negative)
 * reach reject_score (> 0) and a block list is among them, the filter
 * rejects: at CONNECT (554 and the session ends) with reject_stage
 * "connect", or each recipient at RCPT (default) except the
 * reject_exempt_recipients (postmaster@ stays reachable). The RCPT stage has
 * no state of its own: it adds up the scores of this instance's list symbols
 * that the chain kept from CONNECT (filter_txn.symbols).
 *
 * Not checked: clients in allow_networks (ACCEPT at CONNECT, symbol
 * DNSBL_ALLOWED); trusted clients (skip_trusted); authenticated clients at
 * RCPT (skip_authenticated). A DNS failure or timeout means "not listed"
 * (logged): DNSBL fails open.
 *
 * Made per worker through its module (module.h, dnsbl-config.c), with the
 * worker's resolver. Trusts its config (validated by the module's load);
 * answers are validated by lib/dns and again here (family, range).
 */
#ifndef POSTERN_DNSBL_H
#define POSTERN_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"
#include "filters/module.h"
#include "lib/dns.h"

struct dnsbl;

/* The order of the values of a list's type. */
enum dnsbl_list_type { DNSBL_LIST_BLOCK, DNSBL_LIST_ALLOW };
/* The order of the values of reject_stage. */
enum dnsbl_reject_stage { DNSBL_REJECT_CONNECT, DNSBL_REJECT_RCPT };

/* One DNS list. */
struct dnsbl_list_settings {
    char *zone;
    double score;
    int type;                 /* enum dnsbl_list_type */
    bool accept;              /* allow list: a listing asks for ACCEPT */
    bool ipv6;                /* ask the list about IPv6 clients */
    long long mask;           /* 0..255; 0 = not used */
    struct cfg_strlist codes; /* answers that count ("127.0.0.2"); empty = any (unless mask) */
};

struct dnsbl_settings {
    struct filter_common common;
    double reject_score; /* 0 = never */
    int reject_stage;    /* enum dnsbl_reject_stage */
    struct cfg_strlist reject_exempt_recipients; /* see dnsbl_rcpt_exempt */
    struct cfg_strlist allow_networks;           /* CIDR */
    bool skip_authenticated;
    bool skip_trusted;
    struct dnsbl_list_settings *lists;
    size_t list_count;
};

extern const struct filter_ops dnsbl_filter_ops;
extern const struct filter_module dnsbl_module;

/* Copies what it needs from cfg (which the module's load validated); queries
 * go through dns (not owned). Returns 0 and *dnsbl_r, or -1 with error. */
int dnsbl_new(struct dns *dns, const struct dnsbl_settings *cfg, struct dnsbl **dnsbl_r,
              char *error, size_t errsize);
void dnsbl_free(struct dnsbl **dnsbl);

/* The query name for addr in zone ("2.0.0.127.bl.test"); -1 if too long. */
int dnsbl_query_name(const struct netaddr *addr, const char *zone, char *out, size_t size);
/* ("DNSBL_", "bl.test") -> "DNSBL_BL_TEST"; cut to size. */
void dnsbl_symbol_name(const char *prefix, const char *zone, char *out, size_t size);

/* "127.0.0.2" -> *out in host byte order; -1 if not dotted IPv4. */
int dnsbl_parse_code(const char *text, uint32_t *out);
/* Whether an A answer (host byte order) is a listing: 1 yes, 0 no, -1 never
 * (outside 127.0.0.0/8). codes are exact answers (host byte order); mask
 * matches the last octet; with no codes and mask 0 every 127/8 answer is. */
int dnsbl_answer_counts(uint32_t answer, const uint32_t *codes, size_t code_count,
                        unsigned mask);

/* Whether rcpt ("local@domain" or "postmaster") is one of exempt:
 * "postmaster" and "postmaster@" are that local part at any domain,
 * "@example.org" any recipient at that domain, "abuse@example.org" that
 * address; all compared without regard to ASCII case. */
bool dnsbl_rcpt_exempt(const char *const *exempt, size_t count, const char *rcpt);

#endif
