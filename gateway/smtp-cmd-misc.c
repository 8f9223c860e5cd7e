/*
 * smtp-cmd-misc — the small commands: RSET, NOOP, QUIT, HELP, VRFY, EXPN
 * (RFC 5321 §4.1.1.5-10). VRFY answers 252 (we neither confirm nor deny
 * addresses: directory harvesting gets nothing here); EXPN is not offered.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

void smtp_cmd_rset(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    if (len > 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: RSET");
        return;
    }
    smtp_session_reset_txn(s);
    smtp_reply(s, 250, "2.0.0", "OK");
}

void smtp_cmd_noop(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    (void)len; /* RFC 5321 §4.1.1.9: a parameter is allowed and ignored */
    smtp_reply(s, 250, "2.0.0", "OK");
}

void smtp_cmd_quit(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    if (len > 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: QUIT");
        return;
    }
    smtp_reply(s, 221, "2.0.0", "Bye");
    smtp_session_close_after_reply(s);
}

void smtp_cmd_help(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    (void)len;
    smtp_reply(s, 214, "2.0.0",
               "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH\n"
               "See RFC 5321");
}

void smtp_cmd_vrfy(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    if (len == 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    smtp_reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
}

void smtp_cmd_expn(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    (void)len;
    smtp_reply_error(s, 502, "5.5.1", "Error: EXPN not available");
}
