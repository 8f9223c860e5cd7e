/*
 * nsd-test — a real DNS server for a unit test: Debian's nsd serving the
 * test's zones on a free 127.0.0.1 port (SERVICES.md), its state in a temp
 * dir, stopped by its pid. Each zone gets an SOA and an NS record (and
 * "ns IN A 127.0.0.1" in the first zone); the test gives the rest as zone
 * file text relative to the zone's origin. Used by test-spf; any filter
 * test that needs answers a resolver can ask (TXT, A, AAAA, MX, PTR) can
 * use it. test-dns and test-dkim/test-dmarc write some zone files themselves
 * (nsd_test_prepare, then nsd_test_run with records NULL) and test-dns-cache
 * rewrites them and has nsd reload them (nsd_test_reload).
 */
#ifndef POSTERN_NSD_TEST_H
#define POSTERN_NSD_TEST_H

#include <stddef.h>
#include <sys/types.h>

#define NSD_TEST_PATH "/usr/sbin/nsd"

struct nsd_zone {
    const char *name;    /* "spf.test", "2.0.192.in-addr.arpa" */
    const char *records; /* zone file lines after the SOA and NS; NULL: the
                            test wrote dir/<name>.zone itself */
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

/* nsd_test_start in two steps: prepare makes the temp dir
 * ("/tmp/test-<tag>.XXXXXX") and picks the port, so the test can put its
 * own files (zone files as <name>.zone) there; run writes the other zones
 * and nsd.conf, starts nsd and waits as nsd_test_start does. Both return 0,
 * or -1 with the reason in why. */
int nsd_test_prepare(struct nsd_test *n, const char *tag, char *why, size_t whysize);
int nsd_test_run(struct nsd_test *n, const struct nsd_zone *zones, size_t count, char *why,
                 size_t whysize);

/* Has nsd reload its zone files (SIGHUP); 0 or -1. A changed file needs a
 * later mtime for nsd to read it again. */
int nsd_test_reload(const struct nsd_test *n);

/* Stops nsd and removes its directory; NULL-safe, may be called again. */
void nsd_test_stop(struct nsd_test *n);

/* A port free for both UDP and TCP right now (nsd binds both), or -1. */
int nsd_test_free_port(void);

/* A UDP socket on 127.0.0.1 that never answers (a DNS server that is
 * down without saying so); returns the fd and *port_r, or -1. */
int nsd_test_silent_socket(int *port_r);

#endif
