/*
 * rcpt-verify — recipient verification by the downstream MTA ("call-ahead")
 * for the filters (filters/module.h, struct filter_verifier): the next hop
 * of the recipient's domain comes from the transport table, the probe is
 * MAIL FROM:<> and RCPT TO:<rcpt> and RSET over the relay's own SMTP/LMTP
 * client (relay/smtp-client.h, its probe mode), with the queue section's
 * TLS and timeouts. One connection per verification; caching is the
 * caller's (the dha filter keeps results in the state store).
 *
 * Owned by one worker's event loop. Trusts the config; the downstream's
 * replies are parsed by the client.
 */
#ifndef POSTERN_RCPT_VERIFY_H
#define POSTERN_RCPT_VERIFY_H

#include "filters/module.h"

struct event_base;
struct dns;
struct postern_config;
struct rcpt_verifier;

/* Returns NULL when out of memory. dns is the worker's (not owned). */
struct rcpt_verifier *rcpt_verifier_new(struct event_base *base, struct dns *dns,
                                        const struct postern_config *cfg);
/* Cancels every verification in flight (their callbacks are not called). */
void rcpt_verifier_free(struct rcpt_verifier **v);
/* The filter-facing interface, valid as long as v. */
const struct filter_verifier *rcpt_verifier_iface(struct rcpt_verifier *v);

#endif
