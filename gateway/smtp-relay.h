/*
 * smtp-relay — the open-relay guard: may this client send to this
 * recipient? Local domains are open to anyone; every other destination only
 * to authenticated clients and trusted networks.
 *
 * Called at RCPT with the parsed recipient. Trusts the address parser for
 * syntax; suspects every routing trick (RFC 5321 §3.6, §F): '%', '!' and
 * quoted '@' in the local part, address literals, source routes (dropped by
 * the parser, the final mailbox decides).
 */
#ifndef POSTERN_SMTP_RELAY_H
#define POSTERN_SMTP_RELAY_H

#include <stdbool.h>

struct postern_config;
struct addr_path;

enum relay_decision { RELAY_LOCAL, RELAY_ALLOWED, RELAY_DENIED };

enum relay_decision smtp_relay_check(const struct postern_config *cfg, bool trusted,
                                     bool authenticated, const struct addr_path *rcpt);

#endif
