/*
 * smtp-cmd-data — DATA (RFC 5321 §4.1.1.4) and the end of every message:
 * the Received: trace header, content streamed through the DATA reader into
 * the spool, the end-of-message stage, the durable commit (into hold/ when
 * the verdict is HOLD, and then the queue manager is not told), and only
 * then the 250 (DESIGN.md "Durability"). One summary log line per message.
 * Header fields the hooks add go into the envelope (add_headers), since the
 * content is on disk already; the relay writes them before the content
 * (the late step's, a DKIM-Signature, on top of the others).
 *
 * SECURITY: the content is untrusted and unbounded on the wire; the reader
 * bounds it (size, line length, bare CR/LF) and the spool takes it in
 * chunks, so memory stays bounded whatever the client sends.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "filters/chain.h"
#include "gateway/smtp-filters.h"
#include "lib/spool.h"
#include "gateway/worker.h"
#include "lib/log.h"
#include "relay/qmgr.h"

#define SPOOL_FLUSH_AT (64 * 1024)

static const char *protocol_name(const struct smtp_session *s)
{
    static const char *const names[] = { "SMTP", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA",
                                         "UTF8SMTP", "UTF8SMTPS", "UTF8SMTPA", "UTF8SMTPSA" };
    if (!s->esmtp)
        return names[0];
    int i = 1 + (s->tls && s->authenticated ? 3 : s->authenticated ? 2 : s->tls ? 1 : 0);
    return names[i + (s->txn->mail.smtputf8 ? 4 : 0)];
}

static void add_received(struct smtp_session *s, struct evbuffer *out)
{
    char date[64], rcpt[ADDR_PATH_MAX * 4 + 8];
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    /* TCP-info is an address literal (RFC 5321 §4.4): "[IPv6:...]" for v6. */
    evbuffer_add_printf(out, "Received: from %s (%s [%s%s])\r\n\tby %s (Postern) with %s id %s",
                        s->helo, s->client_name, netaddr_is_v4(&s->client) ? "" : "IPv6:",
                        s->client_addr, s->cfg->server.hostname, protocol_name(s),
                        s->txn->queue_id);
    if (s->tls && s->tls_desc[0] != '\0')
        evbuffer_add_printf(out, "\r\n\t(using %s)", s->tls_desc);
    if (s->txn->rcpt_count == 1) {
        addr_format(&s->txn->rcpts[0].addr, rcpt, sizeof(rcpt));
        evbuffer_add_printf(out, "\r\n\tfor <%s>", rcpt);
    }
    evbuffer_add_printf(out, "; %s\r\n", date);
}

int smtp_data_begin(struct smtp_session *s, enum smtp_data_mode mode)
{
    struct smtp_txn *t = s->txn;
    struct smtp_data_limits lim = {
        .max_line = (size_t)s->cfg->smtp.data_line_limit,
        .max_size = (uint64_t)s->cfg->smtp.message_size_limit,
        .bare = (enum smtp_bare_policy)s->cfg->smtp.bare_newline,
    };

    t->content = evbuffer_new();
    t->msg = spool_msg_begin(s->worker->spool, t->queue_id);
    if (t->content == NULL || t->msg == NULL) {
        log_error("%s: cannot create queue file: %s", t->queue_id, strerror(errno));
        return -1;
    }
    smtp_data_init(&t->reader, mode, &lim);
    add_received(s, t->content);
    gettimeofday(&t->data_start, NULL);
    return 0;
}

/* Counts the Received: fields in what is about to be written. */
static void count_hops(struct smtp_txn *t)
{
    struct evbuffer_iovec v[8];
    struct evbuffer_ptr pos;
    int n;

    evbuffer_ptr_set(t->content, &pos, 0, EVBUFFER_PTR_SET);
    while (!t->hops.done && (n = evbuffer_peek(t->content, -1, &pos, v, 8)) > 0) {
        size_t got = 0;
        for (int i = 0; i < n && i < 8; i++) {
            smtp_hops_feed(&t->hops, v[i].iov_base, v[i].iov_len);
            got += v[i].iov_len;
        }
        if (n <= 8 || evbuffer_ptr_set(t->content, &pos, got, EVBUFFER_PTR_ADD) < 0)
            break;
    }
}

/* Moves what the reader produced into the spool file. */
void smtp_data_flush(struct smtp_txn *t, bool force)
{
    size_t len = evbuffer_get_length(t->content);

    if (len == 0 || (!force && len < SPOOL_FLUSH_AT))
        return;
    if (!t->hops.done)
        count_hops(t);
    if (t->data_failed) {
        evbuffer_drain(t->content, len);
        return;
    }
    if (spool_msg_write_evbuffer(t->msg, t->content) < 0) {
        t->data_failed = true;
        t->spool_errno = errno;
        evbuffer_drain(t->content, evbuffer_get_length(t->content));
    }
}

void smtp_session_data_input(struct smtp_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct smtp_txn *t = s->txn;
    bool end = false;

    while (!end && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = smtp_data_feed(&t->reader, v.iov_base, v.iov_len, t->content, &end);
        evbuffer_drain(in, used);
        smtp_data_flush(t, false);
    }
    if (end)
        smtp_data_finished(s);
}

static void data_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    if (smtp_session_verdict_reply(s, r, "Error: data rejected"))
        return;
    if (smtp_data_begin(s, SMTP_DATA_DOT) < 0) {
        spool_msg_abort(&s->txn->msg);
        smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
        return;
    }
    smtp_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    s->state = SMTP_S_DATA;
}

void smtp_cmd_data(struct smtp_session *s, const char *args, size_t len)
{
    struct smtp_txn *t = s->txn;

    (void)args;
    if (len > 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: DATA");
    } else if (t == NULL) {
        smtp_reply_error(s, 503, "5.5.1", "Error: need MAIL command");
    } else if (t->bdat_seen) {
        smtp_reply_error(s, 503, "5.5.1", "Error: DATA after BDAT");
    } else if (t->rcpt_count == 0 && t->rcpt_rejected > 0) {
        smtp_reply_error(s, 554, "5.5.1", "Error: no valid recipients");
    } else if (t->rcpt_count == 0) {
        smtp_reply_error(s, 503, "5.5.1", "Error: need RCPT command");
    } else if (!s->authenticated && evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
        /* RFC 2920 §3.1: DATA ends a pipelined group; content before 354 is
         * a client that does not wait, or a smuggling attempt. */
        log_info("%s: improper pipelining after DATA from %s", t->queue_id, s->client_addr);
        smtp_reply(s, 554, "5.5.0", "Error: SMTP protocol synchronization");
        smtp_session_reset_txn(s);
        smtp_session_close_after_reply(s);
    } else {
        smtp_session_run_stage(s, SMTP_STAGE_DATA, data_stage_done);
    }
}

/* "type;address" of an ORCPT as the spool keeps it (spool-format.h). */
#define ORCPT_TEXT_MAX (sizeof(((struct smtp_rcpt_params *)0)->orcpt_type) + SMTP_ORCPT_MAX + 2)

static void envelope_from_txn(struct smtp_session *s, struct spool_envelope *env,
                              struct spool_rcpt *rcpts, char (*addrs)[ADDR_PATH_MAX * 4 + 8],
                              char (*orcpts)[ORCPT_TEXT_MAX], char *sender, size_t sender_size)
{
    struct smtp_txn *t = s->txn;

    memset(env, 0, sizeof(*env));
    snprintf(env->queue_id, sizeof(env->queue_id), "%s", t->queue_id);
    addr_format(&t->sender, sender, sender_size);
    env->sender = sender;
    for (size_t i = 0; i < t->rcpt_count; i++) {
        addr_format(&t->rcpts[i].addr, addrs[i], sizeof(addrs[i]));
        rcpts[i].addr = addrs[i];
        rcpts[i].notify = t->rcpts[i].params.notify;
        rcpts[i].orcpt = NULL;
        if (t->rcpts[i].params.orcpt_type[0] != '\0') {
            snprintf(orcpts[i], sizeof(orcpts[i]), "%s;%s", t->rcpts[i].params.orcpt_type,
                     t->rcpts[i].params.orcpt);
            rcpts[i].orcpt = orcpts[i];
        }
    }
    env->rcpts = rcpts;
    env->rcpt_count = t->rcpt_count;
    env->listener = s->listener->name;
    env->client_addr = s->client_addr;
    env->client_name = s->client_name;
    env->helo = s->helo;
    env->auth_user = s->authenticated ? s->auth_user : NULL;
    env->tls = s->tls ? s->tls_desc : NULL;
    env->received = t->start.tv_sec;
    env->body = t->mail.body;
    env->smtputf8 = t->mail.smtputf8;
    env->ret = t->mail.ret;
    env->envid = t->mail.envid[0] != '\0' ? t->mail.envid : NULL;
    env->size = spool_msg_size(t->msg);
    env->add_headers = t->add_headers;
}

/* The field goes after the others, or (top) before them. */
static int txn_add_header(struct smtp_txn *t, const char *name, const char *value, bool top,
                          const char **error_r)
{
    size_t old = t->add_headers != NULL ? strlen(t->add_headers) : 0;
    size_t nlen = strlen(name), vlen = strlen(value), flen = nlen + vlen + 4;
    char *text, *field;

    if (nlen + vlen > SPOOL_ADD_HEADERS_MAX) {
        *error_r = "header lines over 16 KiB";
        return -1;
    }
    text = malloc(old + flen + 1);
    if (text == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    field = top ? text : text + old;
    memcpy(top ? text + flen : text, t->add_headers != NULL ? t->add_headers : "", old);
    memcpy(field, name, nlen);
    memcpy(field + nlen, ": ", 2);
    memcpy(field + nlen + 2, value, vlen);
    memcpy(field + nlen + 2 + vlen, "\r\n", 2);
    text[old + flen] = '\0';
    if (spool_add_headers_check(text, old + flen, error_r) < 0) {
        free(text);
        return -1;
    }
    free(t->add_headers);
    t->add_headers = text;
    return 0;
}

int smtp_txn_add_header(struct smtp_txn *t, const char *name, const char *value,
                        const char **error_r)
{
    return txn_add_header(t, name, value, false, error_r);
}

int smtp_txn_add_header_top(struct smtp_txn *t, const char *name, const char *value,
                            const char **error_r)
{
    return txn_add_header(t, name, value, true, error_r);
}

static void log_summary(struct smtp_session *s, const char *action)
{
    struct smtp_txn *t = s->txn;
    char from[ADDR_PATH_MAX * 4 + 8], to[1024], one[ADDR_PATH_MAX * 4 + 8];
    size_t o = 0;

    addr_format(&t->sender, from, sizeof(from));
    to[0] = '\0';
    for (size_t i = 0; i < t->rcpt_count && o + 4 < sizeof(to); i++) {
        addr_format(&t->rcpts[i].addr, one, sizeof(one));
        int n = snprintf(to + o, sizeof(to) - o, "%s<%s>", i > 0 ? "," : "", one);
        o = n < 0 || (size_t)n >= sizeof(to) - o ? sizeof(to) - 1 : o + (size_t)n;
    }
    struct timeval now, d;
    gettimeofday(&now, NULL);
    timersub(&now, &t->start, &d);
    char findings[CHAIN_SYMBOLS_MAX * 24] = "";
    if (smtp_filters_summary(s, findings + 1, sizeof(findings) - 1))
        findings[0] = ' ';
    log_info("%s: from=<%s> to=%s size=%llu client=%s[%s] helo=%s tls=%s auth=%s action=%s%s "
             "delay=%ld.%02ld",
             t->queue_id, from, to, (unsigned long long)smtp_data_size(&t->reader),
             s->client_name, s->client_addr, s->helo, s->tls ? "yes" : "no",
             s->authenticated ? s->auth_user : "-", action, findings, (long)d.tv_sec,
             (long)d.tv_usec / 10000);
}

/* Tells the queue manager at once; its scans find the message otherwise. */
static void notify_qmgr(struct smtp_session *s, const char *queue_id)
{
    char line[SPOOL_QUEUE_ID_MAX + 4];

    snprintf(line, sizeof(line), "Q %s\n", queue_id);
    qmgr_notify(s->cfg->server.spool_dir, &s->worker->qmgr_fd, line);
}

static void commit_done(void *ctx, int error)
{
    struct smtp_session *s = ctx;
    struct smtp_txn *t = s->txn;

    t->msg = NULL; /* the spool freed it */
    if (error != 0) {
        log_error("%s: queue file commit failed: %s", t->queue_id, strerror(error));
        smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
        log_summary(s, "tempfail");
    } else if (t->verdict == SMTP_VERDICT_HOLD) {
        /* in hold/: delivered only after "posternctl queue release" */
        smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", t->queue_id);
        log_summary(s, "hold");
        s->messages++;
    } else {
        smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", t->queue_id);
        notify_qmgr(s, t->queue_id);
        log_summary(s, "accept");
        s->messages++;
    }
    smtp_session_reset_txn(s);
    if (s->shutdown_requested) {
        smtp_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->server.hostname);
        smtp_session_close_after_reply(s);
    }
    smtp_session_resume(s, SMTP_S_COMMAND);
}

static void commit(struct smtp_session *s)
{
    struct smtp_txn *t = s->txn;
    struct spool_envelope env;
    struct spool_rcpt *rcpts = calloc(t->rcpt_count, sizeof(*rcpts));
    char (*addrs)[ADDR_PATH_MAX * 4 + 8] = calloc(t->rcpt_count, sizeof(*addrs));
    char (*orcpts)[ORCPT_TEXT_MAX] = calloc(t->rcpt_count, sizeof(*orcpts));
    char sender[ADDR_PATH_MAX * 4 + 8];
    int rc = -1;

    if (rcpts != NULL && addrs != NULL && orcpts != NULL) {
        envelope_from_txn(s, &env, rcpts, addrs, orcpts, sender, sizeof(sender));
        s->state = SMTP_S_WAIT;
        t->committing = true;
        if (t->verdict == SMTP_VERDICT_HOLD)
            rc = spool_msg_commit_hold(t->msg, &env, commit_done, s);
        else
            rc = spool_msg_commit(t->msg, &env, commit_done, s);
    }
    free(rcpts);
    free(addrs);
    free(orcpts);
    if (rc < 0) {
        t->msg = NULL; /* freed by the spool, or never handed over */
        s->state = SMTP_S_COMMAND;
        smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
        log_summary(s, "tempfail");
        smtp_session_reset_txn(s);
    }
}

static void eom_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    s->txn->verdict = r->verdict;
    if (r->verdict == SMTP_VERDICT_DISCARD) {
        smtp_reply(s, 250, "2.0.0", "Ok: discarded");
        log_summary(s, "discard");
        smtp_session_reset_txn(s);
        return;
    }
    if (smtp_session_verdict_reply(s, r, "Error: message content rejected")) {
        log_summary(s, r->verdict == SMTP_VERDICT_TEMPFAIL ? "tempfail" : "reject");
        smtp_session_reset_txn(s);
        return;
    }
    commit(s);
}

static void data_error_reply(struct smtp_session *s, enum smtp_data_error err)
{
    struct smtp_txn *t = s->txn;

    if (err == SMTP_DATA_ERR_SIZE)
        smtp_reply(s, 552, "5.3.4", "Error: message file too big");
    else if (err == SMTP_DATA_ERR_LINE)
        smtp_reply(s, 550, "5.6.0", "Error: message line longer than %lld octets",
                   s->cfg->smtp.data_line_limit);
    else if (err == SMTP_DATA_ERR_BARE)
        smtp_reply(s, 550, "5.5.2", "Error: bare CR or LF received in message data");
    else
        smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
    log_info("%s: message from %s refused: %s", t->queue_id, s->client_addr,
             err == SMTP_DATA_ERR_SIZE   ? "too big"
             : err == SMTP_DATA_ERR_LINE ? "line too long"
             : err == SMTP_DATA_ERR_BARE ? "bare CR or LF"
                                         : strerror(t->spool_errno));
    smtp_session_reset_txn(s);
}

void smtp_data_finished(struct smtp_session *s)
{
    struct smtp_txn *t = s->txn;
    enum smtp_data_error err = smtp_data_finish(&t->reader, t->content);

    smtp_data_flush(t, true);
    s->state = SMTP_S_COMMAND;
    if (err != SMTP_DATA_OK || t->data_failed) {
        data_error_reply(s, err);
        return;
    }
    if (t->hops.hops > (unsigned)s->cfg->smtp.hop_limit) {
        log_info("%s: message from %s refused: %u Received: headers (a mail loop?)",
                 t->queue_id, s->client_addr, t->hops.hops);
        smtp_reply(s, 554, "5.4.6", "Error: too many hops");
        smtp_session_reset_txn(s);
        return;
    }
    smtp_session_run_stage(s, SMTP_STAGE_EOM, eom_stage_done);
}
