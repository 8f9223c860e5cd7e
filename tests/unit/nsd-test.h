/*
 * nsd-test — a real DNS server for a unit test: Debian's nsd serving the
 * test's zones on a free 127.0.0.1 port (SERVICES.md), its state in a temp
 * dir, stopped by its pid. Each zone gets an SOA and an NS record (and
 * "ns IN A 127.0.0.1" in the first zone); the test gives the rest as zone
 * file text relative to the zone's origin. Used by test-spf; any filter
 * test that needs answers a resolver can ask (TXT, A, AAAA, MX, PTR) can
 * use it.
 */
#ifndef POSTERN_NSD_TEST_H
#define POSTERN_NSD_TEST_H

#include <stddef.h>
#include <sys/types.h>

#define NSD_TEST_PATH "/usr/sbin/nsd"

struct nsd_zone {
    const char *name;    /* "spf.test", "2.0.192.in-addr.arpa" */
    const char *records; /* zone file lines after the SOA and NS */
};

struct nsd_test {
    char dir[64];
    pid_t pid;
    int port;
};

/* Starts nsd and waits (10 s at most) until it answers the first zone's
 * SOA. Returns 0, or -1 with the reason in why (nsd and its logs are
 * cleaned up again). */
int nsd_test_start(struct nsd_test *n, const struct nsd_zone *zones, size_t count, char *why,
                   size_t whysize);

/* Stops nsd and removes its directory; NULL-safe, may be called again. */
void nsd_test_stop(struct nsd_test *n);

/* A UDP socket on 127.0.0.1 that never answers (a DNS server that is
 * down without saying so); returns the fd and *port_r, or -1. */
int nsd_test_silent_socket(int *port_r);

#endif
