/*
 * dns-cache — lib/dns's answer cache, and the TTLs it needs from replies.
 *
 * Keeps at most a configured number of answers (positive, NXDOMAIN, NODATA)
 * under (query type, family, lower-cased name), each until min(its TTL, the
 * configured cap) has passed on the monotonic clock. When full, expired
 * entries are dropped; if it is still full, the new answer is not kept (the
 * cache never evicts a live answer, so a flood of unique names cannot push
 * out the useful ones, and costs nothing but the misses).
 *
 * dns_reply_ttl walks a raw reply just far enough to read TTLs: the header,
 * the question, the answer records and, for negative answers, the SOA of
 * the authority section (RFC 2308). It trusts nothing: every length is
 * checked against the buffer, names are skipped without following
 * compression pointers, and a reply it cannot walk is uncacheable.
 *
 * Called only by lib/dns, on its loop; records are flat blocks (no pointers
 * inside) that the cache copies in and out.
 */
#ifndef POSTERN_DNS_CACHE_H
#define POSTERN_DNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/dns.h"

struct dns_cache;

struct dns_cache_key {
    int type;         /* the query type: T_MX, T_TXT, T_PTR, or T_A for addresses */
    int family;       /* AF_INET, AF_INET6 or AF_UNSPEC for addresses, else 0 */
    const char *name; /* from dns_cache_name() */
};

struct dns_cache_answer {
    enum dns_status st; /* DNS_OK, DNS_NXDOMAIN or DNS_NODATA */
    void *records;      /* a flat block of size octets holding n records */
    size_t size;
    size_t n;
};

/* max_entries 0 = no cache (*cache_r is NULL); max_ttl_s 0 = 3600.
 * Returns 0, or -1 without memory. */
int dns_cache_new(size_t max_entries, unsigned max_ttl_s, struct dns_cache **cache_r);
void dns_cache_free(struct dns_cache **cache);

/* The name as the cache knows it: lower-cased, without a final dot. The
 * caller has checked it (at most DNS_NAME_MAX octets). */
void dns_cache_name(const char *name, char out[DNS_NAME_MAX + 1]);

/* A live answer: true and *ans with records copied for the caller to free.
 * False on a miss (an expired entry is dropped) or without memory. */
bool dns_cache_get(struct dns_cache *cache, const struct dns_cache_key *key,
                   struct dns_cache_answer *ans);

/* Keeps a copy of the answer for min(ttl_s, the cap), replacing an entry of
 * the same key; does nothing for ttl_s 0, a NULL cache, a status other than
 * OK, NXDOMAIN or NODATA, or when full of live entries. */
void dns_cache_put(struct dns_cache *cache, const struct dns_cache_key *key,
                   const struct dns_cache_answer *ans, uint32_t ttl_s);

/* Entries held now, expired or not (for tests and statistics). */
size_t dns_cache_count(const struct dns_cache *cache);

/* The TTL a raw reply may be cached for, in seconds: for a positive answer
 * the least TTL of its answer records; for a negative one (NXDOMAIN,
 * NODATA) the least of the SOA's TTL and MINIMUM in the authority section
 * and of any answer records (a CNAME chain). Returns 0 and *ttl_r, or -1
 * when the reply is malformed, has no answer records (positive) or no SOA
 * (negative). TTLs with the top bit set count as 0 (RFC 2181 §8). */
int dns_reply_ttl(const unsigned char *buf, size_t len, bool negative, uint32_t *ttl_r);

#endif
