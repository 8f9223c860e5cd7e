/*
 * smtp-cmd-mail — MAIL FROM (RFC 5321 §4.1.1.2): starts a transaction after
 * the order, submission and disk-space checks, the path and the ESMTP
 * parameters. The queue id is given here so every later log line has it.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "lib/spool.h"
#include "gateway/worker.h"
#include "lib/log.h"

void smtp_session_reset_txn(struct smtp_session *s)
{
    struct smtp_txn *t = s->txn;

    if (t == NULL)
        return;
    if (t->msg != NULL && t->committing)
        spool_msg_detach(t->msg); /* commit in flight: it completes without us */
    else
        spool_msg_abort(&t->msg);
    if (t->content != NULL)
        evbuffer_free(t->content);
    free(t->rcpts);
    free(t->add_headers);
    free(t);
    s->txn = NULL;
}

/* Skips "FROM:" / "TO:" and the spaces sloppy clients put after it. */
const char *smtp_skip_keyword(const char *args, size_t *len, const char *kw)
{
    size_t kl = strlen(kw);

    if (*len < kl || strncasecmp(args, kw, kl) != 0)
        return NULL;
    args += kl;
    *len -= kl;
    while (*len > 0 && *args == ' ') {
        args++;
        (*len)--;
    }
    return args;
}

static bool submission_ready(struct smtp_session *s)
{
    if (s->listener->role == ROLE_MX)
        return true;
    if (!s->tls) {
        smtp_reply_error(s, 530, "5.7.0", "Must issue a STARTTLS command first");
        return false;
    }
    if (!s->authenticated) {
        smtp_reply_error(s, 530, "5.7.0", "Authentication required");
        return false;
    }
    return true;
}

static void mail_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    char from[ADDR_PATH_MAX * 4 + 8];

    if (smtp_session_verdict_reply(s, r, "Error: sender rejected")) {
        smtp_session_reset_txn(s);
        return;
    }
    addr_format(&s->txn->sender, from, sizeof(from));
    log_debug("%s: from=<%s>", s->txn->queue_id, from);
    smtp_reply(s, 250, "2.1.0", "Ok");
}

static bool mail_checks(struct smtp_session *s)
{
    if (!s->helo_seen) {
        smtp_reply_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return false;
    }
    if (s->txn != NULL) {
        smtp_reply_error(s, 503, "5.5.1", "Error: nested MAIL command");
        return false;
    }
    if (!submission_ready(s))
        return false;
    if (s->worker->spool != NULL &&
        !spool_has_space(s->worker->spool, (uint64_t)s->cfg->server.spool_min_free)) {
        log_warning("spool is short of space: MAIL from %s deferred", s->client_addr);
        smtp_reply(s, 452, "4.3.1", "Insufficient system storage");
        return false;
    }
    return true;
}

void smtp_cmd_mail(struct smtp_session *s, const char *args, size_t len)
{
    struct smtp_txn *t;
    struct smtp_params_offer offer = smtp_session_offer(s);
    struct smtp_status err;
    size_t used;
    const char *error, *p;

    if (!mail_checks(s))
        return;
    if ((p = smtp_skip_keyword(args, &len, "FROM:")) == NULL) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
        return;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return;
    if (addr_parse_path(p, len, ADDR_ALLOW_NULL | ADDR_ALLOW_NOBRACKET | ADDR_ALLOW_UTF8,
                        &t->sender, &used, &error) < 0) {
        free(t);
        smtp_reply_error(s, 501, "5.1.7", "Bad sender address syntax");
        return;
    }
    if (smtp_params_parse_mail(p + used, len - used, &offer, &t->mail, &err) < 0) {
        free(t);
        smtp_reply_error_status(s, &err);
        return;
    }
    if (t->sender.utf8 && !t->mail.smtputf8) {
        free(t);
        smtp_reply_error(s, 553, "5.6.7", "Must declare SMTPUTF8 to send non-ASCII addresses");
        return;
    }
    /* RFC 1870 §6.1: a declared size the spool cannot take now is a 452 at
     * MAIL, not a 451 after the client has sent it all. SIZE is already
     * bounded by message_size_limit, so the sum cannot overflow. */
    if (t->mail.has_size && s->worker->spool != NULL &&
        !spool_has_space(s->worker->spool,
                         (uint64_t)s->cfg->server.spool_min_free + t->mail.size)) {
        log_warning("spool is short of space for SIZE=%llu: MAIL from %s deferred",
                    (unsigned long long)t->mail.size, s->client_addr);
        free(t);
        smtp_reply(s, 452, "4.3.1", "Insufficient system storage");
        return;
    }
    gettimeofday(&t->start, NULL);
    s->txn = t;
    if (s->worker->spool != NULL)
        spool_new_queue_id(s->worker->spool, t->queue_id, sizeof(t->queue_id));
    smtp_session_run_stage(s, SMTP_STAGE_MAIL, mail_stage_done);
}
