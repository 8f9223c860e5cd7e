/*
 * spamd — the SpamAssassin filter: at end of message it sends the message
 * to spamd and adds SpamAssassin's score and rule names to the findings,
 * so that the policy decides with one total score.
 *
 * At FILTER_EOM the spooled message (filter_txn content_fd, read with
 * pread in chunks as the socket drains) goes to spamd at address (TCP
 * "host:port", "[v6]:port", or a unix socket path) over a non-blocking
 * socket on the worker's loop: the command (SYMBOLS by default, REPORT or
 * HEADERS; spamd-reply.h) with SPAMC/1.5, Content-length and, when user is
 * set, a User: header (a fixed name, or "recipient": the first
 * recipient's local part, lowercased, left out when it is not a safe
 * name). The response is parsed by spamd-reply.c.
 *
 * Findings of a scan: SPAMASSASSIN with SpamAssassin's score as its score
 * (text "score/threshold", e.g. "20.0/5.0"), then one symbol per rule that
 * hit, SA_<RULE> with score 0 (text: the rule's points with REPORT, else
 * empty): the total counts SpamAssassin's score exactly once, and the
 * rules show in the log line and in the policy's X-Spam-Status. Nothing
 * else is asked for: thresholds are the policy's.
 *
 * Not scanned: a message over max_size (symbol SPAMD_SKIPPED_SIZE(0), the
 * header field "X-Postern-Spamd: skipped (message over max_size)",
 * logged), and trusted or authenticated clients when skip_trusted /
 * skip_authenticated say so (nothing added).
 *
 * Failure (spamd down, refusing, an error reply, a reply that does not
 * parse, no reply within the filter's own deadline) never gives a score:
 * SPAMASSASSIN is absent, not 0. With on_error "skip" (the default) the
 * filter ends the call itself, with the same SPAMD_ERROR(0) symbol the
 * chain adds for a skip (text: why) and the header field
 * "X-Postern-Spamd: skipped (spamd unavailable)" on the accepted message;
 * its own deadline is 9/10 of timeout, so that it comes before the chain's
 * (a chain timeout would drop the header field). Any other on_error ends
 * the call as failed and the chain applies it (tempfail: 451 4.7.1).
 *
 * Made per worker through its module (spamd-config.c) on the worker's
 * event_base. Trusts its config (validated by the module's load) and the
 * spool's content; spamd's response is untrusted (spamd-reply.h).
 */
#ifndef POSTERN_SPAMD_H
#define POSTERN_SPAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "filters/filter.h"
#include "filters/module.h"
#include "filters/spamd-reply.h"

struct event_base;
struct spamd;

#define SPAMD_HEADER "X-Postern-Spamd"
#define SPAMD_USER_RECIPIENT "recipient"

struct spamd_settings {
    struct filter_common common;
    char *address; /* "127.0.0.1:783", "[::1]:783", "/run/spamd.sock" */
    int command;   /* enum spamd_command */
    char *user;    /* NULL/"" = no User:, "recipient", or a fixed name */
    long long max_size;
    bool skip_trusted;
    bool skip_authenticated;
};

extern const struct filter_ops spamd_filter_ops;
extern const struct filter_module spamd_module;

/* Copies what it needs from cfg (which the module's load validated).
 * Returns 0 and *spamd_r, or -1 with error. */
int spamd_new(struct event_base *base, const struct spamd_settings *cfg, struct spamd **spamd_r,
              char *error, size_t errsize);
void spamd_free(struct spamd **spamd);

/* address -> *sa (AF_INET, AF_INET6 or AF_UNIX); -1 with *error_r. */
int spamd_parse_address(const char *address, struct sockaddr_storage *sa, int *salen,
                        const char **error_r);

/* The User: value for rcpt ("Joe.Bloggs@example.org" -> "joe.bloggs"):
 * the local part, lowercased; -1 when it is not a safe name
 * (spamd_user_ok: quoted local parts, odd characters, too long). */
int spamd_user_from_rcpt(const char *rcpt, char *out, size_t size);

/* "SA_" and rule, cut to fit size. */
void spamd_rule_symbol(const char *rule, char *out, size_t size);

#endif
