/*
 * dns-bridge — the worker's resolver (lib/dns.h) for libraries that only
 * resolve by blocking calls on a pool thread (libspf2's DNS layer; the same
 * shape fits OpenDKIM's query hooks).
 *
 * lib/dns belongs to the event loop, so a pool thread cannot call it. It
 * asks the bridge instead (dns_bridge_ask): the question goes on a queue
 * under the bridge's mutex, an eventfd wakes the loop, the loop starts the
 * query, and its callback copies the answer into the question and wakes the
 * thread on a condition variable. The thread waits until the answer, its
 * deadline, its cancel flag or the bridge's close, whichever comes first;
 * a question it stops waiting for is freed by whichever side is last to
 * touch it (the loop when the query still runs). Pool threads never call
 * into libevent: they only write(2) the eventfd, like lib/workpool.
 *
 * Owned by one event loop; dns_bridge_ask is the one call for other
 * threads. Trusts lib/dns to bound and validate answers; copies them, so
 * a thread never sees memory the loop owns.
 */
#ifndef POSTERN_DNS_BRIDGE_H
#define POSTERN_DNS_BRIDGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <sys/socket.h>

#include "lib/dns.h"

struct event_base;
struct dns_bridge;

/* What a thread may ask. */
enum dns_bridge_kind {
    DNS_BRIDGE_A,
    DNS_BRIDGE_AAAA,
    DNS_BRIDGE_MX,
    DNS_BRIDGE_TXT,
    DNS_BRIDGE_PTR, /* of addr */
};

struct dns_bridge_question {
    enum dns_bridge_kind kind;
    const char *name;             /* all but PTR */
    struct sockaddr_storage addr; /* PTR: sockaddr_in or sockaddr_in6 */
};

/* The answer, the thread's own (dns_bridge_answer_free). items: MX hosts
 * in preference order ("." entries of a null MX left out), TXT strings
 * (each record's strings joined), PTR names; addrs: A or AAAA. */
struct dns_bridge_answer {
    enum dns_status st; /* DNS_CANCELLED: closed or cancelled before the answer */
    bool timed_out;     /* st is DNS_TEMPFAIL because the deadline passed */
    size_t n;
    char **items;
    struct dns_addr *addrs;
};

/* Returns 0 and *bridge_r, or -1 with error. dns is the loop's, not owned. */
int dns_bridge_new(struct event_base *base, struct dns *dns, struct dns_bridge **bridge_r,
                   char *error, size_t errsize);

/* On the loop: every waiting and later question ends at once with
 * DNS_CANCELLED. Call before stopping the threads that may be asking. */
void dns_bridge_close(struct dns_bridge *b);

/* On the loop: sets *flag and wakes the threads waiting, so that the
 * questions asked with that flag end at once with DNS_CANCELLED. */
void dns_bridge_cancel(struct dns_bridge *b, atomic_bool *flag);

/* On the loop, once no thread can ask any more (dns_bridge_close, then the
 * threads stopped): cancels the queries still running. NULL-safe. */
void dns_bridge_free(struct dns_bridge **b);

/* On any thread but the loop's: asks q and waits for the answer until
 * deadline (CLOCK_MONOTONIC) at most. cancelled may be NULL. Returns 0
 * with *out filled (the caller frees it), or -1 when out of memory. */
int dns_bridge_ask(struct dns_bridge *b, const struct dns_bridge_question *q,
                   const struct timespec *deadline, const atomic_bool *cancelled,
                   struct dns_bridge_answer *out);

void dns_bridge_answer_free(struct dns_bridge_answer *a);

#endif
