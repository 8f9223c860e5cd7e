/*
 * netaddr — IP addresses and networks: CIDR lists (trusted networks), address
 * to text, the client "network" key used by limits (IPv4 /24, IPv6 /64).
 *
 * Called by the gateway and (later) filters. Trusts its callers to pass valid
 * sockaddrs; CIDR text comes from the config and is fully validated.
 */
#ifndef POSTERN_NETADDR_H
#define POSTERN_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

/* An IPv4 address is stored as an IPv4-mapped IPv6 address (::ffff:a.b.c.d),
 * so one representation serves both families. */
struct netaddr {
    uint8_t a[16];
};

struct netaddr_cidr {
    struct netaddr net;
    unsigned prefix; /* 0..128 in the mapped space (IPv4 /24 is stored as /120) */
};

struct netaddr_list {
    struct netaddr_cidr *items;
    size_t count;
};

/* From a sockaddr (AF_INET or AF_INET6; v4-mapped v6 is the same as v4).
 * Returns -1 for other families. */
int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* "192.0.2.1", "2001:db8::1" -> 0, -1 on bad text. */
int netaddr_parse(const char *text, struct netaddr *out);
/* Text form: IPv4 dotted for mapped addresses, RFC 5952 for IPv6. */
const char *netaddr_to_text(const struct netaddr *a, char *buf, size_t size);
bool netaddr_is_v4(const struct netaddr *a);

/* "10.0.0.0/8", "::1", "2001:db8::/32", "127.0.0.1" (host) -> 0; -1 with
 * *error_r on bad syntax or host bits set past the prefix. */
int netaddr_cidr_parse(const char *text, struct netaddr_cidr *out, const char **error_r);
bool netaddr_cidr_match(const struct netaddr_cidr *c, const struct netaddr *a);

/* Adds one CIDR (text) to a list; -1 with *error_r on bad syntax. */
int netaddr_list_add(struct netaddr_list *l, const char *text, const char **error_r);
bool netaddr_list_match(const struct netaddr_list *l, const struct netaddr *a);
void netaddr_list_free(struct netaddr_list *l);

/* The address masked to its network: v4 to v4_prefix (e.g. 24), v6 to
 * v6_prefix (e.g. 64). Used as a key for per-network counters. */
struct netaddr netaddr_network(const struct netaddr *a, unsigned v4_prefix, unsigned v6_prefix);
/* A 32-bit hash of the address (for fixed-size counter tables). */
uint32_t netaddr_hash(const struct netaddr *a, uint32_t seed);

#endif
