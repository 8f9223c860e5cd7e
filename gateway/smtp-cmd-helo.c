/*
 * smtp-cmd-helo — EHLO and HELO (RFC 5321 §4.1.1.1): record the client's
 * name, reset the transaction, list the extensions this session is offered.
 * The name is untrusted text: kept sanitized and bounded, only for logs and
 * the Received: header.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "lib/log.h"

bool smtp_session_offers_starttls(const struct smtp_session *s)
{
    return s->cfg->tls_ctx != NULL && s->listener->starttls && !s->tls &&
           s->listener->role != ROLE_SUBMISSIONS;
}

bool smtp_session_may_auth(const struct smtp_session *s)
{
    if (s->cfg->passwd == NULL || s->authenticated)
        return false;
    if (s->listener->role == ROLE_MX && !s->listener->auth)
        return false;
    return s->tls || s->listener->auth_without_tls;
}

struct smtp_params_offer smtp_session_offer(const struct smtp_session *s)
{
    struct smtp_params_offer o = {
        .size = true,
        .eightbitmime = true,
        .smtputf8 = s->cfg->smtp.smtputf8,
        .dsn = s->cfg->smtp.dsn,
        .auth = s->authenticated || smtp_session_may_auth(s),
        .chunking = s->cfg->smtp.chunking,
        .size_limit = (uint64_t)s->cfg->smtp.message_size_limit,
    };
    return o;
}

static void ehlo_reply(struct smtp_session *s)
{
    struct evbuffer *out = smtp_session_output(s);
    struct smtp_params_offer o = smtp_session_offer(s);

    if (!s->esmtp) {
        evbuffer_add_printf(out, "250 %s\r\n", s->cfg->server.hostname);
        return;
    }
    evbuffer_add_printf(out, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n", s->cfg->server.hostname,
                        (unsigned long long)o.size_limit);
    if (smtp_session_offers_starttls(s))
        evbuffer_add_printf(out, "250-STARTTLS\r\n");
    if (smtp_session_may_auth(s))
        evbuffer_add_printf(out, "250-AUTH PLAIN LOGIN\r\n");
    if (s->xclient_ok)
        evbuffer_add_printf(out, "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n");
    if (o.dsn)
        evbuffer_add_printf(out, "250-DSN\r\n");
    if (o.smtputf8)
        evbuffer_add_printf(out, "250-SMTPUTF8\r\n");
    if (o.chunking)
        evbuffer_add_printf(out, "250-CHUNKING\r\n");
    evbuffer_add_printf(out, "250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
}

static void helo_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    if (smtp_session_verdict_reply(s, r, "Error: HELO rejected")) {
        s->helo_seen = false;
        return;
    }
    ehlo_reply(s);
}

static void helo_common(struct smtp_session *s, const char *args, size_t len, bool esmtp)
{
    while (len > 0 && (args[len - 1] == ' ' || args[len - 1] == '\t'))
        len--;
    while (len > 0 && (*args == ' ' || *args == '\t')) {
        args++;
        len--;
    }
    if (len == 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    smtp_session_reset_txn(s);
    log_sanitize(s->helo, sizeof(s->helo), args, len);
    s->helo_seen = true;
    s->esmtp = esmtp;
    smtp_session_run_stage(s, SMTP_STAGE_HELO, helo_stage_done);
}

void smtp_cmd_ehlo(struct smtp_session *s, const char *args, size_t len)
{
    helo_common(s, args, len, true);
}

void smtp_cmd_helo(struct smtp_session *s, const char *args, size_t len)
{
    helo_common(s, args, len, false);
}
