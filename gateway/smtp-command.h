/*
 * smtp-command — splits an SMTP command line into its verb and arguments
 * (RFC 5321 §4.1.1: verb, then a space, then arguments; verbs are
 * case-insensitive).
 *
 * Called by the session for every command line, without the CRLF. Trusts
 * nothing: the line may hold any bytes; a NUL or a control character makes
 * it invalid.
 */
#ifndef POSTERN_SMTP_COMMAND_H
#define POSTERN_SMTP_COMMAND_H

#include <stddef.h>

enum smtp_verb {
    SMTP_VERB_INVALID, /* not a command line at all (NUL, control bytes) */
    SMTP_VERB_UNKNOWN,
    SMTP_VERB_EHLO,
    SMTP_VERB_HELO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_BDAT,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_HELP,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
    SMTP_VERB_XCLIENT,
    SMTP_VERB_COUNT
};

struct smtp_command {
    enum smtp_verb verb;
    const char *args; /* points into the line, after the verb and one space */
    size_t args_len;
};

/* Parses line[0..len). Always fills *out. */
void smtp_command_parse(const char *line, size_t len, struct smtp_command *out);

const char *smtp_verb_name(enum smtp_verb verb);

#endif
