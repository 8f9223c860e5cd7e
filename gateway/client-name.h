/*
 * client-name — the client's verified host name, as Postfix's smtpd finds
 * it: the PTR names of its address, each looked up forward (A or AAAA);
 * the first name whose addresses include the client's is the name,
 * otherwise "unknown" (no PTR, a PTR that does not point back, a DNS
 * failure or timeout). At most CLIENT_NAME_TRIES names are tried.
 *
 * Owned by one worker's event loop; queries go through the worker's
 * resolver (lib/dns.h: cached, with a deadline per query, so a lookup
 * always ends). Trusts nothing in the answers: lib/dns validates the names.
 */
#ifndef POSTERN_CLIENT_NAME_H
#define POSTERN_CLIENT_NAME_H

#include <stddef.h>

#include "lib/dns.h"
#include "lib/netaddr.h"

#define CLIENT_NAME_TRIES 2

struct client_name_lookup;

/* name is the verified name or "unknown"; valid during the call. Called on
 * the loop, never inside client_name_lookup. */
typedef void client_name_cb(void *ctx, const char *name);

/* Starts the lookup; NULL when it cannot start (cb is then not called). */
struct client_name_lookup *client_name_lookup(struct dns *dns, const struct netaddr *addr,
                                              client_name_cb *cb, void *ctx);
/* After this cb is never called. NULL-safe. */
void client_name_cancel(struct client_name_lookup *l);

#endif
