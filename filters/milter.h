/*
 * milter — an external milter (OpenDKIM, OpenDMARC, clamav-milter,
 * spamass-milter, rspamd ...) as a link of the filter chain: Postern speaks
 * the MTA side of the milter protocol, version 6 (milter-proto.h), over a
 * non-blocking socket (inet, inet6 or unix) on the worker's event loop.
 *
 * One instance per configured group (one milter); per SMTP session one
 * connection to the milter, opened at CONNECT: option negotiation (every
 * action and every protocol step flag Postern supports is offered; the
 * steps the milter leaves out are not sent, the replies it waives are not
 * waited for), then the session's commands with their macros: connect,
 * helo, mail, each rcpt, data; and at the end of message, from the spooled
 * content, each header, end of header, the body in chunks of at most
 * 64 KiB and end of body. Postern's chain decides per stage, so the
 * header and body callbacks all happen at end of data. A command and its
 * macros go out in one write; on TCP, TCP_NODELAY and TCP_QUICKACK keep
 * small writes on either side from waiting for a delayed ACK
 * (milter-conn.c).
 *
 * Replies: continue; accept (this milter is not called again for the
 * session when it accepts at connect or helo, for the message otherwise);
 * reject (550 5.7.1), tempfail (451 4.7.1), a reply code of the milter's
 * own (4xx = tempfail, 5xx = reject, 421 = disconnect; validated), discard,
 * quarantine (held until the quarantine store exists), shutdown and
 * connection failure (421, disconnect), skip (of the rest of the body) and
 * progress (restarts the reply timer; the chain's timeout still bounds the
 * stage). At a recipient a reject refuses that recipient only. The
 * modifications the milter sends before its end-of-body reply go to the
 * filter API's edits (filter.h), which the gateway applies only to a
 * message it accepts; an edit that the chain refuses is an error
 * (on_error), so that no message leaves without, say, its signature. Each
 * decision adds a symbol PREFIX_REJECT, _TEMPFAIL, _DISCONNECT, _DISCARD
 * or _QUARANTINE (score 0, the reply or reason as text), where PREFIX is
 * MILTER for the id "milter" and MILTER_<ID> otherwise, and a log line that
 * names the milter.
 *
 * The filter API tells a filter nothing when an SMTP session ends. A
 * session's milter state is found again by its struct filter_txn (the
 * gateway keeps one per session) and checked against the client; a
 * connection idle for idle_timeout is closed with QUIT, and when the
 * session comes back (or its state was lost) a new connection is opened
 * and the session replayed to it from the filter_txn: connect, helo, the
 * transaction's sender and recipients. The same replay puts the milter
 * back in step when the recipients it saw are not those the chain
 * accepted.
 *
 * SECURITY: talks to a milter the admin configured; its replies are
 * untrusted input, bounded (frames of at most MILTER_FRAME_MAX) and
 * validated (milter-proto.c) before use.
 */
#ifndef POSTERN_MILTER_H
#define POSTERN_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "filters/filter.h"
#include "filters/milter-proto.h"
#include "filters/module.h"

struct milter_settings {
    struct filter_common common;
    char *address;
    long long connect_timeout, command_timeout, content_timeout, idle_timeout;
    /* macro names per stage (enum milter_macro_stage), each item one or
     * several names separated by spaces */
    struct cfg_strlist macros[MILTER_M_COUNT];
};

extern const struct filter_ops milter_filter_ops;
extern const struct filter_module milter_module;

/* A milter's address: "inet:HOST:PORT", "inet:PORT@HOST" (Sendmail's
 * form), "inet6:[ADDR]:PORT", "unix:/path", "local:/path", or the plain
 * forms "HOST:PORT", "[ADDR]:PORT" and "/path". HOST is a numeric address
 * or "localhost" (no DNS lookups). */
struct milter_address {
    struct sockaddr_storage sa;
    socklen_t len;
    bool tcp;
};

/* Returns 0, or -1 with *error_r. */
int milter_address_parse(const char *text, struct milter_address *out, const char **error_r);

/* The known macros ("j", "{daemon_name}", ...) that Postern can fill. */
bool milter_macro_known(const char *name);
/* "daemon_name" -> "{daemon_name}", "j" -> "j", "{i}" -> "{i}" into out. */
void milter_macro_normalize(const char *name, size_t len, char *out, size_t size);

#endif
