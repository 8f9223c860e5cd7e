/*
 * smtp-cmd-rcpt — RCPT TO (RFC 5321 §4.1.1.3): one recipient, after the
 * order check, the recipient limit, the path and parameters, and the relay
 * guard; then the RCPT stage of the hooks.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/smtp-relay.h"
#include "lib/log.h"

static bool has_8bit(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return true;
    }
    return false;
}

static bool add_rcpt(struct smtp_txn *t, const struct smtp_rcpt *r)
{
    if (t->rcpt_count == t->rcpt_cap) {
        size_t cap = t->rcpt_cap == 0 ? 4 : t->rcpt_cap * 2;
        struct smtp_rcpt *n = realloc(t->rcpts, cap * sizeof(*n));
        if (n == NULL)
            return false;
        t->rcpts = n;
        t->rcpt_cap = cap;
    }
    t->rcpts[t->rcpt_count++] = *r;
    return true;
}

static void rcpt_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    if (smtp_session_verdict_reply(s, r, "Error: recipient rejected")) {
        s->txn->rcpt_rejected++;
        return;
    }
    if (!add_rcpt(s->txn, &s->txn->pending_rcpt)) {
        smtp_reply(s, 452, "4.3.0", "Error: out of memory");
        return;
    }
    smtp_reply(s, 250, "2.1.5", "Ok");
}

static bool rcpt_parse(struct smtp_session *s, const char *p, size_t len, struct smtp_rcpt *r)
{
    struct smtp_params_offer offer = smtp_session_offer(s);
    unsigned flags = ADDR_ALLOW_NOBRACKET | ADDR_ALLOW_POSTMASTER;
    struct smtp_status err;
    const char *error;
    size_t used;

    if (s->txn->mail.smtputf8)
        flags |= ADDR_ALLOW_UTF8;
    if (addr_parse_path(p, len, flags, &r->addr, &used, &error) < 0) {
        if (!s->txn->mail.smtputf8 && has_8bit(p, len))
            smtp_reply_error(s, 553, "5.6.7", "Must declare SMTPUTF8 to send non-ASCII addresses");
        else
            smtp_reply_error(s, 501, "5.1.3", "Bad recipient address syntax");
        return false;
    }
    if (smtp_params_parse_rcpt(p + used, len - used, &offer, &r->params, &err) < 0) {
        smtp_reply_error_status(s, &err);
        return false;
    }
    return true;
}

void smtp_cmd_rcpt(struct smtp_session *s, const char *args, size_t len)
{
    struct smtp_rcpt *r;
    const char *p;
    char text[ADDR_PATH_MAX * 4 + 8];

    if (s->txn == NULL) {
        smtp_reply_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if ((p = smtp_skip_keyword(args, &len, "TO:")) == NULL) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
        return;
    }
    if (s->txn->rcpt_count >= (size_t)s->cfg->smtp.recipient_limit) {
        smtp_reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    r = &s->txn->pending_rcpt;
    memset(r, 0, sizeof(*r));
    if (!rcpt_parse(s, p, len, r))
        return;
    if (smtp_relay_check(s->cfg, s->trusted, s->authenticated, &r->addr) == RELAY_DENIED) {
        addr_format(&r->addr, text, sizeof(text));
        log_info("%s: reject RCPT from %s: relay access denied to <%s>", s->txn->queue_id,
                 s->client_addr, text);
        s->txn->rcpt_rejected++;
        smtp_reply_error(s, 554, "5.7.1", "<%s>: Relay access denied", text);
        return;
    }
    smtp_session_run_stage(s, SMTP_STAGE_RCPT, rcpt_stage_done);
}
