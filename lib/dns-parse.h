/*
 * dns-parse — lib/dns's reading of answers: turns the raw reply of one
 * c-ares query into Postern's records (struct dns_mx sorted by preference,
 * struct dns_addr with the least TTL, TXT strings, PTR host names), in one
 * flat block that the cache can copy as it is. The TTLs of the other record
 * types are read by dns_reply_ttl (dns-cache.h).
 *
 * Called only by lib/dns, on its loop (and by tests/fuzz/fuzz-dns-reply).
 *
 * SECURITY: the reply comes from whatever answered on the network; nothing
 * in its bytes is trusted. c-ares's parsers bound the message, and any
 * failure of theirs is DNS_BADANSWER. Then, here: MX hosts must be
 * printable ASCII without space or backslash, at most DNS_NAME_MAX octets;
 * PTR names must be host names (see dns.h); a TXT record must be at most
 * DNS_TXT_MAX octets without NUL (else DNS_BADANSWER, so that SPF/DKIM/DMARC
 * never see a silently cut record). MX, PTR and address answers are cut to
 * DNS_MAX_RECORDS (MX after sorting); a TXT answer of more records is
 * DNS_BADANSWER.
 */
#ifndef POSTERN_DNS_PARSE_H
#define POSTERN_DNS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/dns.h"

#define DNS_TXT_MAX 4096 /* octets of one TXT record, its strings joined */

/* A result: of one c-ares query, or of a whole dns_query. */
struct dns_result {
    enum dns_status st;
    /* One flat block (no pointers inside, so the cache copies it as it is):
     * struct dns_mx[], struct dns_addr[], or n NUL-terminated strings. */
    void *records;
    size_t size;
    size_t n;
    uint32_t ttl; /* seconds it may be cached for, when cacheable */
    bool cacheable;
};

/*
 * The answer parsers. Each reads the alen octets at abuf, and takes r with
 * records NULL. It returns:
 *   DNS_OK        r->records (malloc'd, the caller frees it) holds r->n
 *                 records, 1..DNS_MAX_RECORDS, in r->size octets;
 *   DNS_NODATA    the reply has no record of the type;
 *   DNS_BADANSWER the reply is malformed, or a record breaks the rules above;
 *   DNS_TEMPFAIL  no memory.
 * Unless DNS_OK, r is left as it was.
 */

/* struct dns_mx[], by preference, then answer order; "." for a null MX. */
enum dns_status dns_parse_mx(struct dns_result *r, const unsigned char *abuf, int alen);
/* The strings of each record joined, each NUL-terminated. */
enum dns_status dns_parse_txt(struct dns_result *r, const unsigned char *abuf, int alen);
/* The host names of the answer, each NUL-terminated, in answer order.
 * addr (addrlen octets, of family AF_INET or AF_INET6) is the address asked
 * about, which c-ares puts in the hostent it parses into. */
enum dns_status dns_parse_ptr(struct dns_result *r, const unsigned char *abuf, int alen,
                              const void *addr, int addrlen, int family);
/* struct dns_addr[] of type T_A or T_AAAA (<ares_nameser.h>; any other
 * reads as T_AAAA); records of the other family are ignored. On DNS_OK also
 * r->ttl, the least TTL of the addresses (and of CNAMEs before them), and
 * r->cacheable. */
enum dns_status dns_parse_addr(struct dns_result *r, int type, const unsigned char *abuf, int alen);

/* Fills *out (zeroed by the caller) with addr (4 or 16 octets, by family
 * AF_INET or AF_INET6) and port 0; returns ttl, or 0 for a negative one. */
uint32_t dns_addr_put(struct dns_addr *out, int family, const void *addr, int ttl);

#endif
