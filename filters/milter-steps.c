/*
 * milter-steps — see milter-private.h: what a stage needs the milter to
 * have seen, as a plan of steps (milter_plan_build), and the running of
 * it (milter_advance): each step queues a command with its macros and
 * waits for its reply when the milter gives one; commands that need no
 * reply are queued back to back up to MILTER_OUTBUF_MAX. The replies are
 * milter.c's. Also the session's record of the milter's transaction
 * (sender, recipients it took) that the plan compares with the filter_txn.
 */
#include "config.h"
#include "filters/milter-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *milter_qid(const struct milter_sess *s)
{
    return s->txn != NULL && s->txn->queue_id != NULL ? s->txn->queue_id : "NOQUEUE";
}

static bool streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int milter_set_str(char **dst, const char *src)
{
    char *copy = src != NULL ? strdup(src) : NULL;

    if (src != NULL && copy == NULL)
        return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

/* ---- the milter's transaction ---- */

void milter_rcpts_clear(struct milter_sess *s)
{
    for (size_t i = 0; i < s->rcpt_count; i++)
        free(s->rcpts[i]);
    s->rcpt_count = 0;
}

static int rcpts_add(struct milter_sess *s, const char *rcpt)
{
    if (s->rcpt_count == s->rcpt_alloc) {
        size_t n = s->rcpt_alloc == 0 ? 8 : s->rcpt_alloc * 2;
        char **grown = realloc(s->rcpts, n * sizeof(*grown));
        if (grown == NULL)
            return -1;
        s->rcpts = grown;
        s->rcpt_alloc = n;
    }
    if ((s->rcpts[s->rcpt_count] = strdup(rcpt)) == NULL)
        return -1;
    s->rcpt_count++;
    return 0;
}

static bool rcpts_equal(const struct milter_sess *s, const struct filter_txn *txn)
{
    if (s->rcpt_count != txn->rcpt_count)
        return false;
    for (size_t i = 0; i < s->rcpt_count; i++)
        if (!streq(s->rcpts[i], txn->rcpts[i]))
            return false;
    return true;
}

/* The milter's transaction is this one (same queue id and sender). */
bool milter_txn_same(const struct milter_sess *s, const struct filter_txn *txn)
{
    return s->bev != NULL && s->in_txn && streq(s->txn_qid, txn->queue_id) &&
           streq(s->txn_sender, txn->sender);
}

/* ---- the plan ---- */

static void plan_push(struct milter_sess *s, enum milter_step_kind kind, bool replay)
{
    if (s->plan_len < MILTER_PLAN_MAX)
        s->plan[s->plan_len++] = (struct milter_step){.kind = kind, .replay = replay};
}

/* The commands the milter must have seen for this stage, then its own. */
void milter_plan_build(struct milter_sess *s)
{
    const struct filter_txn *txn = s->txn;
    enum filter_stage stage = s->stage;
    bool fresh = s->bev == NULL, same;

    s->plan_len = s->plan_pos = 0;
    s->step_sent = s->body_done = false;
    s->iter = 0;
    s->result = 0;
    if (fresh)
        plan_push(s, MILTER_STEP_OPEN, true);
    if (fresh || !s->connect_sent)
        plan_push(s, MILTER_STEP_CONNECT, stage != FILTER_CONNECT);
    if (stage == FILTER_HELO)
        plan_push(s, MILTER_STEP_HELO, false);
    else if (stage > FILTER_HELO && txn->helo != NULL && (fresh || !streq(s->helo_sent, txn->helo)))
        plan_push(s, MILTER_STEP_HELO, true);
    if (stage <= FILTER_HELO)
        return;
    if (stage == FILTER_MAIL) {
        if (!fresh && s->in_txn)
            plan_push(s, MILTER_STEP_ABORT, false);
        plan_push(s, MILTER_STEP_MAIL, false);
        return;
    }
    same = !fresh && milter_txn_same(s, txn);
    if (stage >= FILTER_DATA && same && !rcpts_equal(s, txn))
        same = false;
    if (stage == FILTER_EOM && same && !s->data_sent)
        same = false;
    if (!same) {
        if (!fresh && s->in_txn)
            plan_push(s, MILTER_STEP_ABORT, true);
        plan_push(s, MILTER_STEP_MAIL, true);
        if (stage >= FILTER_DATA)
            plan_push(s, MILTER_STEP_RCPTS, true);
    }
    if (stage == FILTER_RCPT)
        plan_push(s, MILTER_STEP_RCPT, false);
    if (stage == FILTER_DATA || (stage == FILTER_EOM && !same))
        plan_push(s, MILTER_STEP_DATA, stage != FILTER_DATA);
    if (stage == FILTER_EOM) {
        plan_push(s, MILTER_STEP_HEADERS, false);
        plan_push(s, MILTER_STEP_EOH, false);
        plan_push(s, MILTER_STEP_BODY, false);
        plan_push(s, MILTER_STEP_EOB, false);
    }
}

/* ---- sending ---- */

static void wait_reply(struct milter_sess *s, char cmd, unsigned ms)
{
    s->waiting = true;
    s->waiting_cmd = cmd;
    milter_conn_timer(s, ms);
}

static int oom(struct milter_sess *s)
{
    milter_warn(s->m, "%s: out of memory", milter_qid(s));
    return -1;
}

/* Queues the macros of mstage (the milter's list if it gave one) and a
 * command of n strings. */
static int put_cmd(struct milter_sess *s, int mstage, char cmd, const char *rcpt,
                   const char *const *strs, size_t n)
{
    const struct milter_names *names =
        s->asked_set[mstage] ? &s->asked[mstage] : &s->m->macros[mstage];
    struct evbuffer *out = milter_conn_out(s);

    if (milter_macros_put(out, cmd, names, s->m, s->txn, rcpt) < 0 ||
        milter_put_strings(out, cmd, strs, n) < 0)
        return oom(s);
    return 0;
}

static int put_connect(struct milter_sess *s)
{
    const struct filter_txn *txn = s->txn;
    const struct milter_names *names = s->asked_set[MILTER_M_CONNECT]
                                           ? &s->asked[MILTER_M_CONNECT]
                                           : &s->m->macros[MILTER_M_CONNECT];
    struct evbuffer *out = milter_conn_out(s);
    char family = txn->client_addr == NULL ? 'U' : netaddr_is_v4(&txn->client) ? '4' : '6';

    if (milter_macros_put(out, MILTER_CMD_CONNECT, names, s->m, txn, NULL) < 0 ||
        milter_put_connect(out, txn->client_name != NULL ? txn->client_name : "unknown", family, 0,
                           txn->client_addr) < 0)
        return oom(s);
    return 0;
}

/* "<addr>" into buf. */
static const char *bracketed(const char *addr, char *buf, size_t size)
{
    snprintf(buf, size, "<%s>", addr != NULL ? addr : "");
    return buf;
}

/* A step of one command: 1 when done (sent without a reply due, or left
 * out because the milter skips it, or its reply came), 0 waiting. */
static int one_cmd(struct milter_sess *s, const struct milter_step *st)
{
    const struct filter_txn *txn = s->txn;
    char buf[1200];
    const char *arg;
    uint32_t skip = 0, nr = 0;
    char cmd = 0;
    int rc = 0;

    if (s->step_sent)
        return 1;
    s->step_sent = true;
    switch (st->kind) {
    case MILTER_STEP_CONNECT:
        s->connect_sent = true;
        skip = MILTER_P_NOCONNECT, nr = MILTER_P_NR_CONN, cmd = MILTER_CMD_CONNECT;
        if (!(s->protocol & skip))
            rc = put_connect(s);
        break;
    case MILTER_STEP_HELO:
        if (milter_set_str(&s->helo_sent, txn->helo) < 0)
            return oom(s);
        skip = MILTER_P_NOHELO, nr = MILTER_P_NR_HELO, cmd = MILTER_CMD_HELO;
        arg = txn->helo != NULL ? txn->helo : "";
        if (!(s->protocol & skip))
            rc = put_cmd(s, MILTER_M_HELO, cmd, NULL, &arg, 1);
        break;
    case MILTER_STEP_ABORT:
        s->in_txn = s->data_sent = s->msg_accepted = false;
        milter_rcpts_clear(s);
        return milter_put_empty(milter_conn_out(s), MILTER_CMD_ABORT) < 0 ? oom(s) : 1;
    case MILTER_STEP_MAIL:
        s->in_txn = true;
        s->data_sent = s->msg_accepted = false;
        milter_rcpts_clear(s);
        if (milter_set_str(&s->txn_qid, txn->queue_id) < 0 ||
            milter_set_str(&s->txn_sender, txn->sender) < 0)
            return oom(s);
        skip = MILTER_P_NOMAIL, nr = MILTER_P_NR_MAIL, cmd = MILTER_CMD_MAIL;
        arg = bracketed(txn->sender, buf, sizeof(buf));
        if (!(s->protocol & skip))
            rc = put_cmd(s, MILTER_M_MAIL, cmd, NULL, &arg, 1);
        break;
    case MILTER_STEP_RCPT:
        if (txn->rcpt == NULL || rcpts_add(s, txn->rcpt) < 0)
            return txn->rcpt == NULL ? 1 : oom(s);
        skip = MILTER_P_NORCPT, nr = MILTER_P_NR_RCPT, cmd = MILTER_CMD_RCPT;
        arg = bracketed(txn->rcpt, buf, sizeof(buf));
        if (!(s->protocol & skip))
            rc = put_cmd(s, MILTER_M_RCPT, cmd, txn->rcpt, &arg, 1);
        break;
    case MILTER_STEP_DATA:
        s->data_sent = true;
        skip = MILTER_P_NODATA, nr = MILTER_P_NR_DATA, cmd = MILTER_CMD_DATA;
        if (!(s->protocol & skip))
            rc = put_cmd(s, MILTER_M_DATA, cmd, NULL, NULL, 0);
        break;
    case MILTER_STEP_EOH:
        skip = MILTER_P_NOEOH, nr = MILTER_P_NR_EOH, cmd = MILTER_CMD_EOH;
        if (!(s->protocol & skip))
            rc = put_cmd(s, MILTER_M_EOH, cmd, NULL, NULL, 0);
        break;
    case MILTER_STEP_EOB:
        rc = put_cmd(s, MILTER_M_EOM, MILTER_CMD_BODYEOB, NULL, NULL, 0);
        if (rc == 0)
            wait_reply(s, MILTER_CMD_BODYEOB, s->m->content_ms);
        return rc < 0 ? -1 : 0;
    default:
        return -1;
    }
    if (rc < 0)
        return -1;
    if (s->protocol & (skip | nr))
        return 1;
    wait_reply(s, cmd, s->m->command_ms);
    return 0;
}

/* After a command that needs no reply: 1 to go on, 0 when the output is
 * full (wait for it to drain). */
static int output_room(struct milter_sess *s)
{
    if (milter_conn_pending(s) <= MILTER_OUTBUF_MAX)
        return 1;
    s->wait_write = true;
    milter_conn_timer(s, s->m->command_ms);
    return 0;
}

/* Replay of the transaction's recipients (the milter's answers to them
 * are not the stage's: it accepted them before). */
static int step_rcpts(struct milter_sess *s)
{
    const struct filter_txn *txn = s->txn;
    char buf[1200];

    while (s->iter < txn->rcpt_count) {
        const char *rcpt = txn->rcpts[s->iter++], *arg;
        if (rcpts_add(s, rcpt) < 0)
            return oom(s);
        if (s->protocol & MILTER_P_NORCPT)
            continue;
        arg = bracketed(rcpt, buf, sizeof(buf));
        if (put_cmd(s, MILTER_M_RCPT, MILTER_CMD_RCPT, rcpt, &arg, 1) < 0)
            return -1;
        if (!(s->protocol & MILTER_P_NR_RCPT)) {
            wait_reply(s, MILTER_CMD_RCPT, s->m->command_ms);
            return 0;
        }
        if (output_room(s) == 0)
            return 0;
    }
    return 1;
}

static int step_headers(struct milter_sess *s)
{
    const char *nv[2];

    if (s->protocol & MILTER_P_NOHDRS)
        return 1;
    while (milter_msg_header(s->msg, (s->protocol & MILTER_P_HDR_LEADSPC) != 0, &nv[0], &nv[1]) ==
           1) {
        if (milter_put_strings(milter_conn_out(s), MILTER_CMD_HEADER, nv, 2) < 0)
            return oom(s);
        if (!(s->protocol & MILTER_P_NR_HDR)) {
            wait_reply(s, MILTER_CMD_HEADER, s->m->command_ms);
            return 0;
        }
        if (output_room(s) == 0)
            return 0;
    }
    return 1;
}

static int step_body(struct milter_sess *s)
{
    const uint8_t *data;
    const char *why;
    size_t len;
    int rc;

    if (s->protocol & MILTER_P_NOBODY)
        return 1;
    while (!s->body_done && (rc = milter_msg_body(s->msg, &data, &len, &why)) != 0) {
        if (rc < 0) {
            milter_warn(s->m, "%s: cannot read the message: %s", milter_qid(s), why);
            return -1;
        }
        if (milter_put_body(milter_conn_out(s), data, len) < 0)
            return oom(s);
        if (!(s->protocol & MILTER_P_NR_BODY)) {
            wait_reply(s, MILTER_CMD_BODY, s->m->command_ms);
            return 0;
        }
        if (output_room(s) == 0)
            return 0;
    }
    return 1;
}

static int step_run(struct milter_sess *s, const struct milter_step *st)
{
    const char *why;

    switch (st->kind) {
    case MILTER_STEP_OPEN:
        if (s->step_sent)
            return 1;
        s->step_sent = true;
        if (milter_conn_open(s, &why) < 0) {
            milter_warn(s->m, "%s: cannot connect: %s", milter_qid(s), why);
            return -1;
        }
        wait_reply(s, MILTER_CMD_OPTNEG, s->m->connect_ms);
        return 0;
    case MILTER_STEP_RCPTS:
        return step_rcpts(s);
    case MILTER_STEP_HEADERS:
        return step_headers(s);
    case MILTER_STEP_BODY:
        return step_body(s);
    default:
        return one_cmd(s, st);
    }
}

/* Runs the plan until it waits (0) or the stage is decided (1, -1). */
int milter_advance(struct milter_sess *s)
{
    for (;;) {
        int rc;

        if (s->result != 0)
            return s->result;
        if (s->waiting || s->wait_write)
            return 0;
        if (s->plan_pos == s->plan_len)
            return 1;
        rc = step_run(s, &s->plan[s->plan_pos]);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            if (!s->waiting && !s->wait_write)
                return -1; /* a step that neither finished nor waits: a bug */
            continue;
        }
        s->plan_pos++;
        s->step_sent = false;
        s->iter = 0;
    }
}
