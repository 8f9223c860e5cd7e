/*
 * dns-servers — lib/dns's reading of the configured nameservers ("ip",
 * "ip:port" for IPv4, "[ipv6]" or "[ipv6]:port"; a bare IPv6 address takes
 * no port) into c-ares's server list.
 *
 * Called only by dns_new. The text is the operator's configuration: each
 * entry must be an address literal of its form's family and a port of
 * 1..65535 in decimal digits, else the whole list is refused.
 */
#ifndef POSTERN_DNS_SERVERS_H
#define POSTERN_DNS_SERVERS_H

#include <stddef.h>

#include <ares.h>

#include "lib/dns.h"

/* Sets cfg's nameservers on the channel; none (count 0) keeps resolv.conf's.
 * Returns 0, or -1 with error. */
int dns_servers_set(ares_channel channel, const struct dns_config *cfg, char *error,
                    size_t errsize);

#endif
