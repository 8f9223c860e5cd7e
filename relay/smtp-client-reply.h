/*
 * smtp-client-reply — incremental parser for server replies (RFC 5321
 * §4.2): "CODE-text" continuation lines, then "CODE text". Bounded: at most
 * SMTP_REPLY_LINES lines of SMTP_REPLY_LINE_MAX octets; every line must
 * carry the same three-digit code; an enhanced code (RFC 3463) is split out
 * when present.
 *
 * Called by the smtp client with raw bytes from an untrusted server.
 */
#ifndef POSTERN_SMTP_CLIENT_REPLY_H
#define POSTERN_SMTP_CLIENT_REPLY_H

#include <stddef.h>

#include "lib/smtp-reply.h"

#define SMTP_REPLY_LINES 100
#define SMTP_REPLY_LINE_MAX 2048

struct smtp_reply_parser {
    unsigned lines;
    unsigned code;
    /* the reply so far: status.text gets the lines joined with '\n' (cut at
     * SMTP_STATUS_TEXT_MAX); ext collects EHLO keywords */
    struct smtp_status status;
    char ext[1024];      /* EHLO lines after the first, upper-cased, joined with '\n' */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);

/* Feeds one line (without CRLF). Returns 1 when the reply is complete
 * (p->status filled), 0 when more lines follow, -1 on a malformed reply
 * (bad code, mixed codes, too many or too long lines). */
int smtp_reply_parser_line(struct smtp_reply_parser *p, const char *line, size_t len);

#endif
