/*
 * smtp-reply — SMTP reply status (code, RFC 3463 enhanced code, text) and the
 * helpers that format replies onto the wire.
 *
 * Parsers in gateway/ report what went wrong as a struct smtp_status so the
 * session can answer without knowing the parser's internals. Text put into a
 * status is never taken raw from the network (callers sanitize it).
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stddef.h>

struct evbuffer;

#define SMTP_STATUS_TEXT_MAX 256

struct smtp_status {
    unsigned short code;  /* 250, 451, 550, ... ; 0 = unset */
    char enhanced[16];    /* "5.1.3"; empty when the code has none (220, 221 greet) */
    char text[SMTP_STATUS_TEXT_MAX];
};

void smtp_status_set(struct smtp_status *st, unsigned code, const char *enhanced, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

/* Appends the reply to out: "CODE ENH TEXT\r\n". Text containing '\n' becomes
 * a multi-line reply ("CODE-ENH line\r\n" ... "CODE ENH last\r\n"). When
 * enhanced is false (client did not get ENHANCEDSTATUSCODES, or the code is
 * 220/221 greeting) the enhanced code is left out. */
void smtp_reply_format(struct evbuffer *out, const struct smtp_status *st, int enhanced);

#endif
