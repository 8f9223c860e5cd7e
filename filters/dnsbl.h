/*
 * dnsbl — the DNS block list filter. At CONNECT it looks the client's
 * address up in each configured list (reversed octets for IPv4, reversed
 * nibbles for IPv6, A records) and adds a symbol DNSBL_<ZONE> per listing
 * with the list's score and the answer as text; when the listings' scores
 * reach reject_score (> 0) it asks for REJECT. A DNS failure or timeout
 * means "not listed" (logged): DNSBL fails open.
 *
 * Made per worker through its module (module.h), with the worker's
 * resolver. Trusts its config; answers are validated by lib/dns.
 */
#ifndef POSTERN_DNSBL_H
#define POSTERN_DNSBL_H

#include <stddef.h>

#include "filters/filter.h"
#include "filters/module.h"
#include "lib/dns.h"

struct dnsbl;

/* One DNS list. */
struct dnsbl_list_settings {
    char *zone;
    double score;
    struct cfg_strlist codes; /* answers that count ("127.0.0.2"); empty = any */
};

struct dnsbl_settings {
    struct filter_common common;
    double reject_score; /* 0 = never */
    struct dnsbl_list_settings *lists;
    size_t list_count;
};

extern const struct filter_ops dnsbl_filter_ops;
extern const struct filter_module dnsbl_module;

/* Copies what it needs from cfg; queries go through dns (not owned).
 * Returns 0 and *dnsbl_r, or -1 with error. */
int dnsbl_new(struct dns *dns, const struct dnsbl_settings *cfg, struct dnsbl **dnsbl_r,
              char *error, size_t errsize);
void dnsbl_free(struct dnsbl **dnsbl);

/* The query name for addr in zone ("2.0.0.127.bl.test"); -1 if too long. */
int dnsbl_query_name(const struct netaddr *addr, const char *zone, char *out, size_t size);
/* "bl.test" -> "DNSBL_BL_TEST". */
void dnsbl_symbol_name(const char *zone, char *out, size_t size);

#endif
