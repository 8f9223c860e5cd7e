/*
 * smtp-cmd-starttls — STARTTLS (RFC 3207). After the 220 every bit of state
 * learnt in plaintext is forgotten (HELO, transaction, AUTH), and any
 * plaintext the client pipelined after STARTTLS is thrown away, so nothing
 * an attacker injects before the handshake reaches the TLS session.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include "lib/log.h"

void smtp_cmd_starttls(struct smtp_session *s, const char *args, size_t len)
{
    (void)args;
    if (len > 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: STARTTLS");
        return;
    }
    if (s->tls) {
        smtp_reply_error(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!smtp_session_offers_starttls(s)) {
        smtp_reply_error(s, 502, "5.5.1", "Error: command not implemented");
        return;
    }
    smtp_reply(s, 220, "2.0.0", "Ready to start TLS");
    smtp_session_reset_txn(s);
    s->helo_seen = false;
    s->esmtp = false;
    s->helo[0] = '\0';
    s->authenticated = false;
    s->auth_user[0] = '\0';
    smtp_session_start_tls(s, true);
}
