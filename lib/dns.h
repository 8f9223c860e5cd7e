/*
 * dns — Postern's asynchronous resolver: c-ares driven by the worker's
 * libevent loop (c-ares's socket callback adds and removes events; one timer
 * runs ares_process_fd for timeouts). Every DNS consumer (MX lookups for the
 * relay; DNSBL, SPF, DKIM, DMARC in the filters) goes through it, so tests
 * point Postern at their own DNS server on a loopback port.
 *
 * Why c-ares and not evdns: evdns resolves only A, AAAA and PTR; Postern
 * needs MX and TXT too. c-ares is Debian's well-kept async resolver with
 * parsers for those records.
 *
 * With cache_size set, answers are kept under (type, lower-cased name, and
 * the family for addresses): positive ones for the least TTL of their
 * records, NXDOMAIN and NODATA for the SOA's TTL or MINIMUM, whichever is
 * less (RFC 2308; without an SOA they are not kept), either at most
 * cache_max_ttl_s. TEMPFAIL, BADANSWER and CANCELLED are never kept. When
 * full of live answers, new ones are not kept. A cached answer is delivered
 * like any other: from the loop, never inside dns_query_*, and cancellable.
 *
 * Owned by one event loop. Trusts nothing in answers: names and records are
 * bounded and validated by c-ares's parsers and again here.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct dns_query;

struct dns_config {
    const char *const *nameservers; /* "127.0.0.1", "127.0.0.1:15353", "[::1]:53"; NULL/0 = resolv.conf */
    size_t nameserver_count;
    unsigned timeout_ms;            /* per try; 0 = default 2000 */
    unsigned attempts;              /* 0 = default 2 */
    size_t cache_size;              /* answers kept; 0 = no cache */
    unsigned cache_max_ttl_s;       /* a cached answer lives min(TTL, this); 0 = default 3600 */
};

/* Result status, closed set. */
enum dns_status {
    DNS_OK,
    DNS_NXDOMAIN,   /* the name does not exist */
    DNS_NODATA,     /* the name exists, no record of that type */
    DNS_TEMPFAIL,   /* SERVFAIL, timeout, refused, network error: try later */
    DNS_BADANSWER,  /* malformed answer */
    DNS_CANCELLED,  /* dns_free or dns_query_cancel */
};

#define DNS_NAME_MAX 255
#define DNS_MAX_RECORDS 64

struct dns_mx {
    unsigned preference;
    char host[DNS_NAME_MAX + 1]; /* "." for a null MX (RFC 7505) */
};

struct dns_addr {
    struct sockaddr_storage sa; /* port 0 */
    socklen_t len;
};

/* Callbacks run on the loop; records are valid only during the call. */
typedef void dns_mx_cb(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n);
typedef void dns_addr_cb(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n);
typedef void dns_txt_cb(void *ctx, enum dns_status st, const char *const *txt, size_t n);
typedef void dns_ptr_cb(void *ctx, enum dns_status st, const char *const *names, size_t n);

/* Returns 0 and *dns_r, or -1 with error. */
int dns_new(struct event_base *base, const struct dns_config *cfg, struct dns **dns_r,
            char *error, size_t errsize);
/* Cancels every pending query: their callbacks run with DNS_CANCELLED. */
void dns_free(struct dns **dns);

/* Each returns a handle usable with dns_query_cancel until the callback
 * has run, or NULL when the query could not start (the callback is then
 * not called). Callbacks never run inside these calls. A query that gets
 * no answer ends with DNS_TEMPFAIL after timeout_ms x attempts x the number
 * of nameservers at most. */
struct dns_query *dns_query_mx(struct dns *dns, const char *name, dns_mx_cb *cb, void *ctx);
/* A and AAAA; family AF_INET, AF_INET6 or AF_UNSPEC (both: IPv4 addresses
 * first; DNS_OK when either has addresses). An address literal of the family
 * asked for is answered without DNS (one of the other family: DNS_NODATA). */
struct dns_query *dns_query_addr(struct dns *dns, const char *name, int family, dns_addr_cb *cb,
                                 void *ctx);
/* TXT strings of each record concatenated (RFC 7208 §3.3 style). */
struct dns_query *dns_query_txt(struct dns *dns, const char *name, dns_txt_cb *cb, void *ctx);
/* PTR of an address (sockaddr_in, sockaddr_in6; a v4-mapped IPv6 address
 * asks in-addr.arpa): host names (letters, digits, '-', '_'; labels of 1..63
 * octets; at most DNS_NAME_MAX, no final dot) in answer order, cut to
 * DNS_MAX_RECORDS; any other name makes the answer DNS_BADANSWER. NULL for
 * other address families. */
struct dns_query *dns_query_ptr(struct dns *dns, const struct sockaddr *sa, dns_ptr_cb *cb,
                                void *ctx);
/* After this the query's callback is never called. */
void dns_query_cancel(struct dns_query *q);

const char *dns_status_name(enum dns_status st);

#endif
