/*
 * smtp-client-send — one message on a ready connection: after the local
 * decisions (smtp-client-data.c: 8BITMIME, SMTPUTF8, binary), MAIL, RCPT
 * and DATA (in one write with PIPELINING), their replies, and an outcome
 * per recipient: SMTP's final reply counts for every accepted recipient,
 * LMTP gives one per accepted recipient in order (RFC 2033 §4.2). A
 * transaction that failed after MAIL was accepted ends with RSET, so the
 * connection can take the next message.
 *
 * Called by smtp-client.c with each reply while a transaction runs. Trusts
 * the envelope from the spool (parsed by the gateway) but refuses to put a
 * control character on a command line. Statuses that reach the caller
 * always carry an enhanced code.
 */
#include "config.h"
#include "relay/smtp-client-private.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lib/smtp-params.h"
#include "lib/log.h"

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n > 0 ? n : 1, size);

    if (p == NULL) {
        log_error("smtp client: out of memory");
        abort();
    }
    return p;
}

void smtp_client_txn_free(struct client_txn *t)
{
    free(t->outcome);
    free(t->status);
    free(t->remote);
    free(t->rstate);
    free(t->order);
    memset(t, 0, sizeof(*t));
}

/* A recipient's final outcome, from a reply or a local decision. */
void smtp_client_decide(struct client_txn *t, size_t i, const struct smtp_status *st)
{
    unsigned cls = st->code / 100;

    t->status[i] = *st;
    t->remote[i] = t->server_reply != NULL && st == t->server_reply;
    smtp_client_status_fill(&t->status[i]);
    t->outcome[i] = cls == 2   ? SMTP_RCPT_DELIVERED
                    : cls == 5 ? SMTP_RCPT_BOUNCED
                               : SMTP_RCPT_DEFERRED;
    t->rstate[i] = RCPT_DONE;
}

/* Every recipient still open gets st. */
void smtp_client_decide_open(struct client_txn *t, const struct smtp_status *st, bool accepted_only)
{
    for (size_t i = 0; i < t->msg->rcpt_count; i++) {
        if (t->rstate[i] == RCPT_ACCEPTED || (!accepted_only && t->rstate[i] == RCPT_WAIT))
            smtp_client_decide(t, i, st);
    }
}

void smtp_client_txn_finish(struct smtp_client *c, bool usable)
{
    struct client_txn t = c->txn;
    struct smtp_client_result res = {
        .rcpt_count = t.msg->rcpt_count,
        .outcome = t.outcome,
        .status = t.status,
        .remote = t.remote,
        .connection_usable = usable,
    };

    memset(&c->txn, 0, sizeof(c->txn));
    snprintf(res.peer, sizeof(res.peer), "%s", c->peer);
    evtimer_del(c->timer);
    if (!usable) {
        smtp_client_drop_connection(c);
        c->state = CLIENT_BROKEN;
    } else {
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        c->state = CLIENT_READY;
        c->phase = "idle";
    }
    if (t.cb != NULL)
        t.cb(t.ctx, c, &res);
    smtp_client_txn_free(&t);
}

void smtp_client_txn_break(struct smtp_client *c, const struct smtp_status *st)
{
    log_info("%s%s%s: %s", c->txn.msg->queue_id != NULL ? c->txn.msg->queue_id : "",
             c->txn.msg->queue_id != NULL ? ": " : "", c->peer, st->text);
    smtp_client_decide_open(&c->txn, st, false);
    smtp_client_txn_finish(c, false);
}

static void rset(struct smtp_client *c)
{
    smtp_client_printf(c, "RSET\r\n");
    c->state = CLIENT_RSET;
    smtp_client_wait_reply(c, "sending RSET");
}

static void write_notify(struct evbuffer *out, unsigned notify)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
        {SMTP_NOTIFY_FAILURE, "FAILURE"},
        {SMTP_NOTIFY_DELAY, "DELAY"},
    };
    const char *sep = " NOTIFY=";

    if (notify & SMTP_NOTIFY_NEVER) {
        evbuffer_add_printf(out, " NOTIFY=NEVER");
        return;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (notify & names[i].bit) {
            evbuffer_add_printf(out, "%s%s", sep, names[i].name);
            sep = ",";
        }
    }
}

/* ORCPT=type;addr (RFC 3461 §4.2): xtext for rfc822 and other ASCII
 * types; for utf-8 (RFC 6533) "\x{HH}" for '+', '=', '\' and controls,
 * raw UTF-8 only under SMTPUTF8. Left out when it cannot be said. */
static void write_orcpt(struct evbuffer *out, const char *orcpt, bool smtputf8)
{
    const char *semi = strchr(orcpt, ';');
    const char *addr = semi != NULL ? semi + 1 : NULL;
    bool utf8 = semi != NULL && (size_t)(semi - orcpt) == 5 && strncasecmp(orcpt, "utf-8", 5) == 0;
    struct evbuffer *tmp;

    if (semi == NULL || semi == orcpt || *addr == '\0')
        return;
    for (const char *p = orcpt; p < semi; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '=' || *p == '+')
            return;
    }
    for (const char *p = addr; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80 && (!utf8 || !smtputf8))
            return;
    }
    tmp = evbuffer_new();
    if (tmp == NULL)
        return;
    for (const unsigned char *p = (const unsigned char *)addr; *p != '\0'; p++) {
        bool plain = *p > ' ' && *p < 0x7f && *p != '+' && *p != '=';

        if (*p >= 0x80 || (plain && !(utf8 && *p == '\\')))
            evbuffer_add(tmp, p, 1);
        else if (utf8)
            evbuffer_add_printf(tmp, "\\x{%02X}", *p);
        else
            evbuffer_add_printf(tmp, "+%02X", *p);
    }
    evbuffer_add_printf(out, " ORCPT=%.*s;", (int)(semi - orcpt), orcpt);
    evbuffer_add_buffer(out, tmp);
    evbuffer_free(tmp);
}

static void write_mail(struct smtp_client *c)
{
    const struct client_txn *t = &c->txn;
    const struct smtp_client_msg *m = t->msg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char envid[3 * SMTP_ENVID_MAX + 1];
    size_t added = m->add_headers != NULL ? strlen(m->add_headers) : 0; /* go first */

    evbuffer_add_printf(out, "MAIL FROM:<%s>", m->sender != NULL ? m->sender : "");
    if (c->ext & EXT_SIZE)
        evbuffer_add_printf(out, " SIZE=%llu", (unsigned long long)(m->length + added));
    if (t->body_8bit)
        evbuffer_add_printf(out, " BODY=8BITMIME");
    if (t->smtputf8)
        evbuffer_add_printf(out, " SMTPUTF8");
    if ((c->ext & EXT_DSN) && m->ret != SMTP_RET_UNSPEC)
        evbuffer_add_printf(out, " RET=%s", m->ret == SMTP_RET_HDRS ? "HDRS" : "FULL");
    if ((c->ext & EXT_DSN) && m->envid != NULL && m->envid[0] != '\0' &&
        smtp_xtext_encode(m->envid, strlen(m->envid), envid, sizeof(envid)) < sizeof(envid))
        evbuffer_add_printf(out, " ENVID=%s", envid);
    evbuffer_add_printf(out, "\r\n");
}

static void write_rcpt(struct smtp_client *c, size_t i)
{
    const struct smtp_client_msg *m = c->txn.msg;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add_printf(out, "RCPT TO:<%s>", m->rcpts[i]);
    if ((c->ext & EXT_DSN) && m->notify != NULL)
        write_notify(out, m->notify[i]);
    if ((c->ext & EXT_DSN) && m->orcpt != NULL && m->orcpt[i] != NULL)
        write_orcpt(out, m->orcpt[i], c->txn.smtputf8);
    evbuffer_add_printf(out, "\r\n");
}

/* Commands are numbered 0 = MAIL, 1..nsend = RCPT, nsend + 1 = DATA. */
static void write_command(struct smtp_client *c)
{
    struct client_txn *t = &c->txn;
    size_t k = t->next_cmd++;

    if (k == 0)
        write_mail(c);
    else if (k <= t->nsend)
        write_rcpt(c, t->order[k - 1]);
    else
        smtp_client_printf(c, t->msg->probe ? "RSET\r\n" : "DATA\r\n");
}

static const char *phase_of(const struct client_txn *t, size_t k)
{
    return k == 0              ? "sending MAIL FROM"
           : k <= t->nsend     ? "sending RCPT TO"
           : t->msg->probe     ? "sending RSET"
                               : "sending DATA";
}

static void mail_reply(struct client_txn *t, const struct smtp_status *r)
{
    if (r->code / 100 == 2)
        t->mail_ok = true;
    else
        smtp_client_decide_open(t, r, false);
}

static void rcpt_reply(struct client_txn *t, size_t i, const struct smtp_status *r)
{
    if (!t->mail_ok || t->rstate[i] != RCPT_WAIT)
        return; /* decided by the MAIL reply */
    if (r->code / 100 == 2 && t->msg->probe) {
        smtp_client_decide(t, i, r); /* verified: its RCPT reply is the answer */
        t->accepted++;
    } else if (r->code / 100 == 2) {
        t->rstate[i] = RCPT_ACCEPTED;
        t->accepted++;
    } else {
        smtp_client_decide(t, i, r);
    }
}

static void data_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct client_txn *t = &c->txn;
    struct smtp_status st;

    if (t->msg->probe) { /* the reply to RSET: the recipients are decided */
        smtp_client_txn_finish(c, r->code / 100 == 2);
        return;
    }
    if (r->code == 354 && t->accepted > 0) {
        smtp_client_content_start(c);
    } else if (r->code == 354) {
        /* 354 with nobody to deliver to (pipelined, every RCPT refused):
         * end the empty message, then RSET whatever its reply */
        t->no_rcpt_data = true;
        smtp_client_printf(c, ".\r\n");
        c->state = CLIENT_DOT;
        smtp_client_wait_reply(c, "sending an empty end of data");
    } else if (r->code / 100 == 4 || r->code / 100 == 5) {
        smtp_client_decide_open(t, r, true);
        if (t->mail_ok)
            rset(c);
        else
            smtp_client_txn_finish(c, true);
    } else {
        smtp_status_set(&st, 451, "4.5.0", "unexpected reply %u from %s to DATA", r->code, c->peer);
        smtp_client_txn_break(c, &st);
    }
}

/* Without PIPELINING: what to write after reply k. */
static void next_command(struct smtp_client *c, size_t k)
{
    struct client_txn *t = &c->txn;

    if (k == 0 && !t->mail_ok) {
        smtp_client_txn_finish(c, true); /* nothing was opened */
        return;
    }
    if (k == t->nsend && t->accepted == 0) {
        rset(c);
        return;
    }
    write_command(c);
    smtp_client_wait_reply(c, phase_of(t, t->next_cmd - 1));
}

static void envelope_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct client_txn *t = &c->txn;
    size_t k = t->next_reply++;

    if (k > t->nsend) {
        data_reply(c, r);
        return;
    }
    if (k == 0)
        mail_reply(t, r);
    else
        rcpt_reply(t, t->order[k - 1], r);
    if (!t->pipelining)
        next_command(c, k);
    else
        smtp_client_wait_reply(c, phase_of(t, t->next_reply));
}

/* The final reply to the content: SMTP one for all, LMTP one each. */
static void dot_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct client_txn *t = &c->txn;

    if (t->no_rcpt_data) {
        rset(c);
        return;
    }
    if (!c->lmtp) {
        smtp_client_decide_open(t, r, true);
        smtp_client_txn_finish(c, true);
        return;
    }
    while (t->lmtp_next < t->nsend && t->rstate[t->order[t->lmtp_next]] != RCPT_ACCEPTED)
        t->lmtp_next++;
    if (t->lmtp_next < t->nsend)
        smtp_client_decide(t, t->order[t->lmtp_next++], r);
    while (t->lmtp_next < t->nsend && t->rstate[t->order[t->lmtp_next]] != RCPT_ACCEPTED)
        t->lmtp_next++;
    if (t->lmtp_next >= t->nsend)
        smtp_client_txn_finish(c, true);
}

/* A reply while the content is still going out: the server gave up on the
 * message. Its 4xx/5xx stands; the connection is out of step. */
static void early_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct smtp_status st;

    if (r->code / 100 == 4 || r->code / 100 == 5) {
        log_info("%s: %s answered %u before the end of data", c->txn.msg->queue_id, c->peer,
                 r->code);
        smtp_client_decide_open(&c->txn, r, true);
        smtp_client_txn_finish(c, false);
        return;
    }
    smtp_status_set(&st, 451, "4.5.0", "unexpected reply %u from %s while %s", r->code, c->peer,
                    c->phase);
    smtp_client_txn_break(c, &st);
}

void smtp_client_txn_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct smtp_status st;
    unsigned cls = r->code / 100;

    c->txn.server_reply = r; /* decisions from r are the server's (remote) */
    if (r->code == 421) {
        smtp_client_txn_break(c, r); /* the server is closing */
        return;
    }
    if (c->state == CLIENT_CONTENT) {
        early_reply(c, r);
    } else if (c->state == CLIENT_RSET) {
        smtp_client_txn_finish(c, cls == 2);
    } else if (cls == 3 && !(c->state == CLIENT_ENVELOPE && c->txn.next_reply > c->txn.nsend)) {
        smtp_status_set(&st, 451, "4.5.0", "unexpected reply %u from %s while %s", r->code, c->peer,
                        c->phase);
        smtp_client_txn_break(c, &st);
    } else if (c->state == CLIENT_ENVELOPE) {
        envelope_reply(c, r);
    } else if (c->state == CLIENT_DOT) {
        dot_reply(c, r);
    }
}

static void txn_init(struct smtp_client *c, const struct smtp_client_msg *msg,
                     smtp_client_sent_cb *cb, void *ctx)
{
    struct client_txn *t = &c->txn;
    size_t n = msg->rcpt_count;

    memset(t, 0, sizeof(*t));
    t->active = true;
    t->msg = msg;
    t->cb = cb;
    t->ctx = ctx;
    t->outcome = xcalloc(n, sizeof(*t->outcome));
    t->status = xcalloc(n, sizeof(*t->status));
    t->remote = xcalloc(n, sizeof(*t->remote));
    t->rstate = xcalloc(n, sizeof(*t->rstate));
    t->order = xcalloc(n, sizeof(*t->order));
    for (size_t i = 0; i < n; i++)
        t->outcome[i] = SMTP_RCPT_DEFERRED;
}

void smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg,
                      smtp_client_sent_cb *cb, void *ctx)
{
    struct client_txn *t = &c->txn;
    struct smtp_status st;

    assert(!t->active); /* one message at a time */
    txn_init(c, msg, cb, ctx);
    if (c->state != CLIENT_READY || c->bev == NULL) {
        smtp_status_set(&st, 451, "4.4.2", "connection to %s is no longer usable", c->peer);
        smtp_client_decide_open(t, &st, false);
        event_active(c->notify, EV_TIMEOUT, 1);
        return;
    }
    if (!smtp_client_local_decisions(c)) {
        event_active(c->notify, EV_TIMEOUT, 1); /* on_notify: smtp_client_txn_finish */
        return;
    }
    t->pipelining = (c->ext & EXT_PIPELINING) != 0;
    c->state = CLIENT_ENVELOPE;
    write_command(c);
    while (t->pipelining && t->next_cmd <= t->nsend + 1)
        write_command(c);
    smtp_client_wait_reply(c, phase_of(t, 0));
}
