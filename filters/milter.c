/*
 * milter — see milter.h. The instance keeps its sessions in a list, each
 * found again by the gateway's per-session filter_txn, and closed (QUIT)
 * when the chain says that session ended, or after idle_timeout. A stage
 * call makes
 * a plan (milter-steps.c): the commands the milter must have seen for
 * this stage (after a lost connection or a transaction it saw
 * differently: the replay) and the stage's own; the plan runs one step at
 * a time, each step queuing a command with its macros and waiting for the
 * reply when the milter wants to give one (milter-conn.c does the
 * socket); the replies are handled here. A reply that decides
 * (reject, tempfail, reply code, discard, accept, shutdown) ends the plan;
 * at end of message the modifications are handed to the chain's edits as
 * they come (milter-edit.c), which the gateway applies only to a message
 * it accepts.
 *
 * Contract with the chain (filter.h): a stage returns 1 when the plan ran
 * through without waiting, 0 while it waits (filter_call_done later, from
 * a socket or timer callback), -1 on an error; after an error or a cancel
 * the connection is closed and every later stage of the session fails at
 * once (on_error), as Postfix disables a milter for the session.
 */
#include "config.h"
#include "filters/milter-private.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "lib/log.h"

void milter_warn(const struct milter *m, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_warning("milter %s (%s): %s", m->id, m->address, msg);
}

/* ---- sessions ---- */

static void sess_free(struct milter_sess *s, bool quit)
{
    struct milter *m = s->m;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        m->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    milter_conn_close(s, quit);
    if (s->timer != NULL)
        event_free(s->timer);
    milter_msg_free(&s->msg);
    milter_rcpts_clear(s);
    free(s->rcpts);
    free(s->quarantine);
    free(s->helo_sent);
    free(s->txn_qid);
    free(s->txn_sender);
    free(s->listener);
    free(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    milter_sess_timeout(arg);
}

static struct milter_sess *sess_new(struct milter *m, const struct filter_txn *txn)
{
    struct milter_sess *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->m = m;
    s->key = txn;
    s->client = txn->client;
    if ((txn->listener != NULL && (s->listener = strdup(txn->listener)) == NULL) ||
        (s->timer = evtimer_new(m->base, on_timer, s)) == NULL) {
        free(s->listener);
        free(s);
        return NULL;
    }
    s->next = m->sessions;
    if (s->next != NULL)
        s->next->prev = s;
    m->sessions = s;
    return s;
}

/* The session of txn: a new one at CONNECT (what the key had belonged to
 * an SMTP session that has ended), and whenever the key is unknown or
 * belongs to another client. */
static struct milter_sess *sess_get(struct milter *m, const struct filter_txn *txn,
                                    enum filter_stage stage)
{
    struct milter_sess *s;

    for (s = m->sessions; s != NULL; s = s->next)
        if (s->key == txn)
            break;
    if (s != NULL &&
        (stage == FILTER_CONNECT || memcmp(&s->client, &txn->client, sizeof(s->client)) != 0 ||
         (s->listener == NULL) != (txn->listener == NULL) ||
         (s->listener != NULL && strcmp(s->listener, txn->listener) != 0))) {
        sess_free(s, true);
        s = NULL;
    }
    return s != NULL ? s : sess_new(m, txn);
}

/* ---- the end of a stage ---- */

static void stage_end(struct milter_sess *s, int rc)
{
    s->call = NULL;
    s->txn = NULL;
    s->waiting = s->wait_write = false;
    milter_msg_free(&s->msg);
    s->mod_count = 0;
    s->body_cr = false;
    free(s->quarantine);
    s->quarantine = NULL;
    if (rc < 0) {
        s->failed = true;
        milter_conn_close(s, false);
    }
    milter_conn_timer(s, s->m->idle_ms);
}

/* Outside the stage callback: the chain learns the result. */
static void complete(struct milter_sess *s, int rc)
{
    struct filter_call *call = s->call;

    stage_end(s, rc);
    filter_call_done(call, rc);
}

static void resume(struct milter_sess *s)
{
    int rc = milter_advance(s);

    if (rc != 0)
        complete(s, rc);
}

static void fail(struct milter_sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct milter_sess *s, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    milter_warn(s->m, "%s: %s at %s", milter_qid(s), msg, filter_stage_name(s->stage));
    complete(s, -1);
}

/* ---- replies ---- */

static int negotiate(struct milter_sess *s, const struct milter_reply *r, const char **why)
{
    if (r->version < 2 || r->version > MILTER_VERSION) {
        *why = "unsupported protocol version";
        return -1;
    }
    /* flags that were not offered are dropped, as Postfix does: a milter
     * that asks for RCPT_REJ, say, still works without it; one that then
     * uses an action it was not granted fails at that point */
    if (((r->actions & ~(uint32_t)MILTER_ACT_ALL) || (r->protocol & ~(uint32_t)MILTER_P_OFFERED)) &&
        !s->m->warned_flags) {
        s->m->warned_flags = true;
        milter_warn(s->m,
                    "asks for actions 0x%x and protocol flags 0x%x that were not offered: "
                    "ignored (logged once)",
                    (unsigned)(r->actions & ~(uint32_t)MILTER_ACT_ALL),
                    (unsigned)(r->protocol & ~(uint32_t)MILTER_P_OFFERED));
    }
    s->actions = r->actions & MILTER_ACT_ALL;
    s->protocol = r->protocol & MILTER_P_OFFERED;
    for (size_t i = 0; i < MILTER_M_COUNT; i++) {
        if (r->symlist[i] == NULL)
            continue;
        if (milter_names_set(&s->asked[i], &r->symlist[i], 1, true) < 0) {
            *why = "out of memory";
            return -1;
        }
        s->asked_set[i] = true;
    }
    s->ready = true;
    return 0;
}

/* The symbol for a decision: PREFIX_WHAT. */
static void add_symbol(struct milter_sess *s, const char *what, const char *text)
{
    char name[FILTER_SYMBOL_NAME_MAX], clean[FILTER_SYMBOL_TEXT_MAX];

    snprintf(name, sizeof(name), "%s_%s", s->m->prefix, what);
    log_sanitize(clean, sizeof(clean), text, strlen(text));
    filter_call_symbol(s->call, name, 0, clean);
}

static const char *step_name(const struct milter_sess *s)
{
    static const char *const names[] = {
        [MILTER_STEP_OPEN] = "negotiation", [MILTER_STEP_CONNECT] = "connect",
        [MILTER_STEP_HELO] = "helo",        [MILTER_STEP_ABORT] = "abort",
        [MILTER_STEP_MAIL] = "mail",        [MILTER_STEP_RCPTS] = "rcpt",
        [MILTER_STEP_RCPT] = "rcpt",        [MILTER_STEP_DATA] = "data",
        [MILTER_STEP_HEADERS] = "header",   [MILTER_STEP_EOH] = "end of header",
        [MILTER_STEP_BODY] = "body",        [MILTER_STEP_EOB] = "end of message",
    };

    return names[s->plan[s->plan_pos].kind];
}

/* A reply that refuses or drops: the action, the symbol, the log line. */
static int decide(struct milter_sess *s, const struct milter_reply *r)
{
    struct smtp_status st = {.code = 0};
    enum filter_action action;
    const char *what, *why;
    char line[SMTP_STATUS_TEXT_MAX], code[32] = "";

    switch (r->cmd) {
    case MILTER_REP_REJECT: /* 554 refuses a connection, 550 a command (RFC 5321) */
        action = FILTER_ACTION_REJECT, what = "REJECT";
        smtp_status_set(&st, s->stage == FILTER_CONNECT ? 554 : 550, "5.7.1", "Command rejected");
        break;
    case MILTER_REP_TEMPFAIL:
        action = FILTER_ACTION_TEMPFAIL, what = "TEMPFAIL";
        smtp_status_set(&st, 451, "4.7.1", "Service unavailable - try again later");
        break;
    case MILTER_REP_SHUTDOWN:
    case MILTER_REP_CONN_FAIL:
        action = FILTER_ACTION_DISCONNECT, what = "DISCONNECT";
        smtp_status_set(&st, 421, "4.7.0", "Service unavailable - closing connection");
        break;
    case MILTER_REP_DISCARD:
        action = FILTER_ACTION_DISCARD, what = "DISCARD";
        break;
    case MILTER_REP_REPLYCODE:
        if (milter_replycode_parse(r->text, &st, &why) < 0) {
            snprintf(line, sizeof(line), "bad reply code: %s", why);
            fail(s, "%s", line);
            return -1;
        }
        action = st.code == 421   ? FILTER_ACTION_DISCONNECT
                 : st.code >= 500 ? FILTER_ACTION_REJECT
                                  : FILTER_ACTION_TEMPFAIL;
        what = st.code == 421 ? "DISCONNECT" : st.code >= 500 ? "REJECT" : "TEMPFAIL";
        break;
    default:
        return -1;
    }
    snprintf(line, sizeof(line), "%s", st.text);
    line[strcspn(line, "\n")] = '\0';
    add_symbol(s, what, st.code != 0 ? line : "");
    if (st.code != 0)
        filter_call_action(s->call, action, st.code, st.enhanced, "%s", st.text);
    else
        filter_call_action(s->call, action, 0, NULL, "%s", "");
    if (st.code != 0)
        snprintf(code, sizeof(code), ": %u %s ", st.code, st.enhanced);
    log_info("%s: milter %s: %s at %s%s%s%s%s", milter_qid(s), s->m->id, filter_action_name(action),
             step_name(s), s->stage == FILTER_RCPT ? " of " : "",
             s->stage == FILTER_RCPT && s->txn->rcpt != NULL ? s->txn->rcpt : "", code, line);
    s->result = 1;
    return 0;
}

/* The message is over for the milter (end of body). */
static void message_done(struct milter_sess *s)
{
    s->in_txn = s->data_sent = s->msg_accepted = false;
    milter_rcpts_clear(s);
}

/* The end-of-body reply accepts the message: its modifications stand,
 * and its quarantine. */
static void eob_accept(struct milter_sess *s)
{
    size_t n = s->mod_count;

    message_done(s);
    if (n > 0)
        log_info("%s: milter %s: %zu modification%s applied", milter_qid(s), s->m->id, n,
                 n == 1 ? "" : "s");
    if (s->quarantine != NULL) {
        add_symbol(s, "QUARANTINE", s->quarantine);
        filter_call_action(s->call, FILTER_ACTION_QUARANTINE, 0, NULL, "%s", "");
        log_info("%s: milter %s: quarantine: %s", milter_qid(s), s->m->id, s->quarantine);
    }
    s->result = 1;
}

/* A reply that ends the command it answers. 0, or -1 after fail(). */
static int final_reply(struct milter_sess *s, const struct milter_reply *r)
{
    const struct milter_step *st = &s->plan[s->plan_pos];

    s->waiting = false;
    milter_conn_timer(s, 0);
    switch (r->cmd) {
    case MILTER_REP_CONTINUE:
        if (st->kind == MILTER_STEP_EOB)
            eob_accept(s);
        return 0;
    case MILTER_REP_SKIP:
        if (st->kind != MILTER_STEP_BODY || !(s->protocol & MILTER_P_SKIP)) {
            fail(s, "skip outside the body");
            return -1;
        }
        s->body_done = true;
        return 0;
    case MILTER_REP_ACCEPT:
        if (st->kind == MILTER_STEP_EOB) {
            eob_accept(s);
            return 0;
        }
        if (st->kind == MILTER_STEP_CONNECT || st->kind == MILTER_STEP_HELO)
            s->accepted = true;
        else
            s->msg_accepted = true;
        s->result = 1;
        return 0;
    default:
        break;
    }
    if (st->kind == MILTER_STEP_RCPTS) {
        log_info("%s: milter %s: %s of a recipient it had taken, replayed: ignored", milter_qid(s),
                 s->m->id, milter_rep_name(r->cmd));
        return 0;
    }
    if (st->kind == MILTER_STEP_RCPT && s->rcpt_count > 0)
        free(s->rcpts[--s->rcpt_count]); /* the milter did not take it */
    if (st->kind == MILTER_STEP_EOB)
        message_done(s);
    return decide(s, r);
}

void milter_sess_frame(struct milter_sess *s, const struct milter_frame *f)
{
    struct milter_reply r;
    const char *why;
    uint32_t need;

    if (s->call == NULL) {
        milter_warn(s->m, "unexpected %s between commands: connection closed",
                    milter_rep_name(f->cmd));
        milter_conn_close(s, false);
        return;
    }
    if (milter_reply_decode(f, &r, &why) < 0) {
        fail(s, "bad reply '%c': %s", isprint((unsigned char)f->cmd) ? f->cmd : '?', why);
        return;
    }
    if (!s->waiting) {
        fail(s, "%s when no reply was due", milter_rep_name(r.cmd));
        return;
    }
    if (r.cmd == MILTER_REP_PROGRESS) {
        milter_conn_timer(s, s->waiting_cmd == MILTER_CMD_BODYEOB ? s->m->content_ms
                                                                  : s->m->command_ms);
        return;
    }
    if (r.cmd == MILTER_REP_OPTNEG || s->waiting_cmd == MILTER_CMD_OPTNEG) {
        if (r.cmd != MILTER_REP_OPTNEG || s->waiting_cmd != MILTER_CMD_OPTNEG) {
            fail(s, "%s instead of the option negotiation", milter_rep_name(r.cmd));
            return;
        }
        if (negotiate(s, &r, &why) < 0) {
            fail(s, "negotiation: %s", why);
            return;
        }
        s->waiting = false;
        milter_conn_timer(s, 0);
        resume(s);
        return;
    }
    if ((need = milter_mod_action(r.cmd)) != 0) {
        if (s->waiting_cmd != MILTER_CMD_BODYEOB) {
            fail(s, "%s before the end of message", milter_rep_name(r.cmd));
            return;
        }
        if (!(s->actions & need)) {
            fail(s, "%s without having negotiated it", milter_rep_name(r.cmd));
            return;
        }
        if (r.cmd == MILTER_REP_QUARANTINE) {
            if (milter_set_str(&s->quarantine, r.text) < 0)
                fail(s, "out of memory");
        } else if (milter_mod_apply(s, &r) < 0) {
            complete(s, -1);
        }
        return;
    }
    if (final_reply(s, &r) == 0)
        resume(s);
}

void milter_sess_conn_error(struct milter_sess *s, const char *why)
{
    if (s->call != NULL) {
        fail(s, "%s", why);
        return;
    }
    log_info("milter %s (%s): %s between commands", s->m->id, s->m->address, why);
    milter_conn_close(s, false);
}

void milter_sess_drained(struct milter_sess *s)
{
    if (s->call == NULL || !s->wait_write)
        return;
    s->wait_write = false;
    milter_conn_timer(s, 0);
    resume(s);
}

void milter_sess_timeout(struct milter_sess *s)
{
    if (s->call == NULL) { /* idle: the SMTP session has probably ended */
        sess_free(s, true);
        return;
    }
    if (s->wait_write)
        fail(s, "timeout writing to the milter");
    else
        fail(s, "timeout waiting for the reply to %s", step_name(s));
}

/* ---- the filter ---- */

static int milter_stage(void *instance, struct filter_call *call)
{
    struct milter *m = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    enum filter_stage stage = filter_call_stage(call);
    struct milter_sess *s = sess_get(m, txn, stage);
    const char *why;
    int rc;

    if (s == NULL)
        return -1;
    if (s->failed) {
        milter_conn_timer(s, m->idle_ms);
        return -1;
    }
    if (s->accepted || (stage > FILTER_MAIL && s->msg_accepted && milter_txn_same(s, txn)))
        return 1;
    s->call = call;
    s->txn = txn;
    s->stage = stage;
    milter_conn_timer(s, 0);
    if (stage == FILTER_EOM &&
        (txn->content_fd < 0 || (s->msg = milter_msg_open(txn->content_fd, txn->content_off,
                                                          txn->content_len, &why)) == NULL)) {
        milter_warn(m, "%s: cannot read the message: %s", milter_qid(s),
                    txn->content_fd < 0 ? "no content" : why);
        stage_end(s, -1);
        return -1;
    }
    milter_plan_build(s);
    filter_call_set_data(call, s);
    s->in_callback = true;
    rc = milter_advance(s);
    s->in_callback = false;
    if (rc != 0)
        stage_end(s, rc);
    return rc;
}

static void milter_cancel(void *instance, struct filter_call *call)
{
    struct milter_sess *s = filter_call_data(call);

    (void)instance;
    if (s == NULL || s->call != call)
        return;
    log_info("milter %s (%s): %s: %s stage given up (timeout, or the client left)", s->m->id,
             s->m->address, milter_qid(s), filter_stage_name(s->stage));
    stage_end(s, -1);
}

/* The SMTP session is over: its milter connection is closed now (QUIT), not
 * when idle_timeout finds it unused. */
static void milter_session_end(void *instance, const struct filter_txn *txn)
{
    struct milter *m = instance;

    for (struct milter_sess *s = m->sessions; s != NULL; s = s->next) {
        if (s->key == txn) {
            sess_free(s, true);
            return;
        }
    }
}

const struct filter_ops milter_filter_ops = {
    .name = "milter",
    .stage = {[FILTER_CONNECT] = milter_stage,
              [FILTER_HELO] = milter_stage,
              [FILTER_MAIL] = milter_stage,
              [FILTER_RCPT] = milter_stage,
              [FILTER_DATA] = milter_stage,
              [FILTER_EOM] = milter_stage},
    .cancel = milter_cancel,
    .session_end = milter_session_end,
};

/* ---- instances ---- */

int milter_new(struct event_base *base, const char *hostname, const struct milter_settings *cfg,
               struct milter **m_r, char *error, size_t errsize)
{
    struct milter *m = calloc(1, sizeof(*m));
    const char *id = cfg->common.id != NULL ? cfg->common.id : "milter";
    const char *why;
    size_t o;

    *m_r = NULL;
    if (m == NULL)
        goto oom;
    m->base = base;
    if ((m->id = strdup(id)) == NULL || (m->address = strdup(cfg->address)) == NULL ||
        (m->hostname = strdup(hostname != NULL ? hostname : "localhost")) == NULL)
        goto oom;
    if (milter_address_parse(cfg->address, &m->addr, &why) < 0) {
        snprintf(error, errsize, "milter %s: address \"%s\": %s", id, cfg->address, why);
        milter_free(&m);
        return -1;
    }
    o = (size_t)snprintf(m->prefix, sizeof(m->prefix), "MILTER%s", strcmp(id, "milter") ? "_" : "");
    for (const char *p = id; strcmp(id, "milter") != 0 && *p != '\0' && o + 1 < sizeof(m->prefix);
         p++)
        m->prefix[o++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    m->prefix[o] = '\0';
    m->connect_ms = (unsigned)cfg->connect_timeout;
    m->command_ms = (unsigned)cfg->command_timeout;
    m->content_ms = (unsigned)cfg->content_timeout;
    m->idle_ms = (unsigned)cfg->idle_timeout;
    for (size_t i = 0; i < MILTER_M_COUNT; i++)
        if (milter_names_set(&m->macros[i], (const char *const *)cfg->macros[i].items,
                             cfg->macros[i].count, true) < 0)
            goto oom;
    *m_r = m;
    return 0;
oom:
    snprintf(error, errsize, "milter: out of memory");
    milter_free(&m);
    return -1;
}

void milter_free(struct milter **mp)
{
    struct milter *m = *mp;

    if (m == NULL)
        return;
    *mp = NULL;
    while (m->sessions != NULL)
        sess_free(m->sessions, true);
    for (size_t i = 0; i < MILTER_M_COUNT; i++)
        milter_names_free(&m->macros[i]);
    free(m->id);
    free(m->address);
    free(m->hostname);
    free(m);
}
