/*
 * dnsbl — the DNS block list filter. At CONNECT it looks the client's
 * address up in each configured list (reversed octets for IPv4, reversed
 * nibbles for IPv6, A records) and adds a symbol DNSBL_<ZONE> per listing
 * with the list's score and the answer as text; when the listings' scores
 * reach reject_score (> 0) it asks for REJECT. A DNS failure or timeout
 * means "not listed" (logged): DNSBL fails open.
 *
 * Created by the program that builds the chain, on its event_base; owns
 * its resolver. Trusts its config; answers are validated by lib/dns.
 */
#ifndef POSTERN_DNSBL_H
#define POSTERN_DNSBL_H

#include <stddef.h>

#include "filters/filter.h"
#include "lib/dns.h"

struct event_base;
struct dnsbl;

struct dnsbl_list {
    const char *zone;
    double score;
    const char *const *codes; /* answers that count ("127.0.0.2"); none = any */
    size_t code_count;
};

struct dnsbl_config {
    const struct dnsbl_list *lists;
    size_t list_count;
    double reject_score; /* 0 = never */
    struct dns_config dns;
};

extern const struct filter_ops dnsbl_filter_ops;

/* Copies what it needs from cfg. Returns 0 and *dnsbl_r, or -1 with error. */
int dnsbl_new(struct event_base *base, const struct dnsbl_config *cfg, struct dnsbl **dnsbl_r,
              char *error, size_t errsize);
void dnsbl_free(struct dnsbl **dnsbl);

/* The query name for addr in zone ("2.0.0.127.bl.test"); -1 if too long. */
int dnsbl_query_name(const struct netaddr *addr, const char *zone, char *out, size_t size);
/* "bl.test" -> "DNSBL_BL_TEST". */
void dnsbl_symbol_name(const char *zone, char *out, size_t size);

#endif
