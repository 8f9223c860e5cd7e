/*
 * qmgr-finish — settles an attempt once its last job is done: delivered
 * recipients get D records, deferred ones R records and the message a T
 * record with its next try (exponential backoff between min_backoff and
 * max_backoff); recipients that bounced, or whose message outlived
 * queue.lifetime, get a DSN (RFC 3464, to the envelope sender, honouring
 * NOTIFY) that is committed to the spool BEFORE their B records are
 * written, so a crash can repeat a DSN but never lose one. A delayed-mail
 * DSN goes out once after queue.delay_warning. When nothing is pending the
 * file is removed.
 */
#include "config.h"
#include "relay/qmgr-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/smtp-params.h"
#include "lib/spool.h"
#include "lib/log.h"
#include "relay/dsn.h"

struct finish {
    struct qmsg *m;
    struct evbuffer *after;  /* B and W records whose DSNs are being committed */
    unsigned injections;
    bool failed;             /* a bounce DSN could not be queued: retry later */
};

struct dsn_ctx {
    struct finish *f;
    enum dsn_action action;
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct evbuffer *lines;
    size_t *idx;
    size_t n;
};

static void settle(struct finish *f);

static time_t backoff(const struct queue_settings *qs, unsigned attempts)
{
    long long ms = qs->min_backoff;

    for (unsigned i = 1; i < attempts && ms < qs->max_backoff; i++)
        ms *= 2;
    if (ms > qs->max_backoff)
        ms = qs->max_backoff;
    return (time_t)((ms + 999) / 1000);
}

static void dsn_committed(void *arg, int error)
{
    struct dsn_ctx *c = arg;
    struct finish *f = c->f;
    struct qmsg *m = f->m;

    if (error != 0) {
        log_error("%s: cannot queue the %s notification: %s", m->id,
                  c->action == DSN_ACTION_FAILED ? "non-delivery" : "delay", strerror(error));
        for (size_t k = 0; c->action == DSN_ACTION_FAILED && k < c->n; k++)
            m->qf->state[c->idx[k]] = QRCPT_PENDING;
        f->failed = f->failed || c->action == DSN_ACTION_FAILED;
    } else {
        log_info("%s: sender %s notification: %s", m->id,
                 c->action == DSN_ACTION_FAILED ? "non-delivery" : "delay", c->id);
        evbuffer_add_buffer(f->after, c->lines);
        qmgr_message_add(m->q, c->id);
    }
    evbuffer_free(c->lines);
    free(c->idx);
    free(c);
    if (--f->injections == 0)
        settle(f);
}

static int build_dsn(struct finish *f, enum dsn_action action, const size_t *idx, size_t n,
                     struct evbuffer *out)
{
    struct qmsg *m = f->m;
    const struct spool_envelope *env = m->qf->env;
    const struct queue_settings *qs = &m->q->p->relay->queue;
    struct dsn_rcpt *r = calloc(n, sizeof(*r));
    char path[4200], error[256];
    int fd, rc = -1;

    qmgr_message_path(m->q, m->id, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    for (size_t k = 0; r != NULL && k < n; k++)
        r[k] = (struct dsn_rcpt){ .addr = env->rcpts[idx[k]].addr,
                                  .orcpt = env->rcpts[idx[k]].orcpt,
                                  .status = &m->status[idx[k]],
                                  .remote_mta = m->relay[idx[k]],
                                  .last_attempt = m->attempt_start.tv_sec };
    struct dsn_input in = {
        .action = action, .reporting_mta = m->q->p->hostname, .queue_id = m->id,
        .envid = env->envid, .ret = env->ret, .arrival = env->received,
        .retry_until = env->received + (time_t)(qs->lifetime / 1000), .sender = env->sender,
        .rcpts = r, .rcpt_count = n, .content_fd = fd, .content_offset = m->qf->content_off,
        .content_length = m->qf->content_len, .return_limit = (uint64_t)qs->bounce_return_limit,
        .add_headers = env->add_headers,
    };
    if (r != NULL && fd >= 0 && (rc = dsn_build(&in, out, error, sizeof(error))) < 0)
        log_error("%s: cannot build a notification: %s", m->id, error);
    if (fd >= 0)
        close(fd);
    free(r);
    return rc;
}

static int commit_dsn(struct finish *f, struct dsn_ctx *c, struct evbuffer *body)
{
    struct qmgr *q = f->m->q;
    struct spool_rcpt rcpt = { .addr = f->m->qf->env->sender, .notify = SMTP_NOTIFY_NEVER };
    struct spool_envelope env = { .sender = "", .rcpts = &rcpt, .rcpt_count = 1,
                                  .listener = "bounce", .received = time(NULL),
                                  .body = SMTP_BODY_8BITMIME };
    struct spool_msg *msg;

    spool_new_queue_id(q->spool, c->id, sizeof(c->id));
    snprintf(env.queue_id, sizeof(env.queue_id), "%s", c->id);
    msg = spool_msg_begin(q->spool, c->id);
    if (msg == NULL)
        return -1;
    if (spool_msg_write_evbuffer(msg, body) < 0) {
        spool_msg_abort(&msg);
        return -1;
    }
    return spool_msg_commit(msg, &env, dsn_committed, c);
}

/* Queues one DSN; its records (B or W lines) are written once it is durable. */
static void inject(struct finish *f, enum dsn_action action, size_t *idx, size_t n,
                   struct evbuffer *lines)
{
    struct dsn_ctx *c = calloc(1, sizeof(*c));
    struct evbuffer *body = evbuffer_new();

    if (c != NULL && body != NULL && build_dsn(f, action, idx, n, body) == 0) {
        *c = (struct dsn_ctx){ .f = f, .action = action, .lines = lines, .idx = idx, .n = n };
        f->injections++;
        if (commit_dsn(f, c, body) == 0) {
            evbuffer_free(body);
            return;
        }
        f->injections--;
        log_error("%s: cannot queue a notification: %s", f->m->id, strerror(errno));
    }
    for (size_t k = 0; action == DSN_ACTION_FAILED && k < n; k++)
        f->m->qf->state[idx[k]] = QRCPT_PENDING;
    f->failed = f->failed || action == DSN_ACTION_FAILED;
    if (body != NULL)
        evbuffer_free(body);
    evbuffer_free(lines);
    free(idx);
    free(c);
}

static void expire(struct qmsg *m, size_t i, long long lifetime_ms)
{
    struct smtp_status last = m->status[i];

    m->outcome[i] = SMTP_RCPT_BOUNCED;
    smtp_status_set(&m->status[i], last.code >= 400 && last.code < 600 ? last.code : 451, "4.4.7",
                    "Message expired after %lld days in the queue%s%s",
                    lifetime_ms / 86400000, last.code != 0 ? ": " : "",
                    last.code != 0 ? last.text : "");
}

/* D and R records for this attempt; expired recipients become bounces. */
static void record_outcomes(struct qmsg *m, struct evbuffer *rec, time_t now)
{
    const struct queue_settings *qs = &m->q->p->relay->queue;
    struct queue_file *qf = m->qf;
    bool expired = (long long)(now - qf->env->received) * 1000 >= qs->lifetime;
    char line[SMTP_STATUS_TEXT_MAX + 64];

    for (size_t i = 0; i < qf->env->rcpt_count; i++) {
        if (qf->state[i] != QRCPT_PENDING)
            continue;
        if (m->outcome[i] == SMTP_RCPT_DELIVERED) {
            qf->state[i] = QRCPT_DELIVERED;
            evbuffer_add_printf(rec, "D %zu %lld\n", i, (long long)now);
        } else if (m->outcome[i] == SMTP_RCPT_DEFERRED && expired) {
            expire(m, i, qs->lifetime);
        } else if (m->outcome[i] == SMTP_RCPT_DEFERRED && m->status[i].code != 0) {
            qf->reason[i] = m->status[i];
            evbuffer_add(rec, line, queue_file_reason_record(line, sizeof(line), i, &m->status[i]));
        }
    }
}

/* Bounced recipients: a DSN for those that want one, B records for all. */
static void handle_bounces(struct finish *f, struct evbuffer *rec, time_t now)
{
    struct qmsg *m = f->m;
    struct queue_file *qf = m->qf;
    size_t n = qf->env->rcpt_count, count = 0;
    size_t *idx = calloc(n, sizeof(*idx));
    struct evbuffer *lines = evbuffer_new();
    bool null_sender = qf->env->sender[0] == '\0';

    for (size_t i = 0; idx != NULL && lines != NULL && i < n; i++) {
        if (qf->state[i] != QRCPT_PENDING || m->outcome[i] != SMTP_RCPT_BOUNCED)
            continue;
        qf->state[i] = QRCPT_BOUNCED;
        if (!null_sender && dsn_wanted(qf->env->rcpts[i].notify, DSN_ACTION_FAILED)) {
            idx[count++] = i;
            evbuffer_add_printf(lines, "B %zu %lld\n", i, (long long)now);
        } else {
            evbuffer_add_printf(rec, "B %zu %lld\n", i, (long long)now);
        }
    }
    if (count > 0) {
        inject(f, DSN_ACTION_FAILED, idx, count, lines);
        return;
    }
    free(idx);
    if (lines != NULL)
        evbuffer_free(lines);
}

static void handle_delay_warning(struct finish *f, time_t now)
{
    struct qmsg *m = f->m;
    struct queue_file *qf = m->qf;
    long long warn = m->q->p->relay->queue.delay_warning;
    size_t n = qf->env->rcpt_count, count = 0, *idx;
    struct evbuffer *lines;

    if (qf->warned || warn <= 0 || qf->env->sender[0] == '\0' ||
        (long long)(now - qf->env->received) * 1000 < warn || queue_file_pending(qf) == 0)
        return;
    if ((idx = calloc(n, sizeof(*idx))) == NULL || (lines = evbuffer_new()) == NULL) {
        free(idx);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (qf->state[i] == QRCPT_PENDING && dsn_wanted(qf->env->rcpts[i].notify, DSN_ACTION_DELAYED))
            idx[count++] = i;
    }
    qf->warned = true; /* once, even when nobody wants it */
    evbuffer_add_printf(lines, "W %lld\n", (long long)now);
    inject(f, DSN_ACTION_DELAYED, idx, count, lines);
}

static void append(struct qmsg *m, struct evbuffer *rec)
{
    char path[4200];
    size_t len = evbuffer_get_length(rec);

    if (len == 0)
        return;
    qmgr_message_path(m->q, m->id, path, sizeof(path));
    if (queue_file_append(path, (const char *)evbuffer_pullup(rec, -1), len) < 0)
        log_error("%s: cannot record delivery state: %s", m->id, strerror(errno));
    evbuffer_drain(rec, len);
}

static void settle(struct finish *f)
{
    struct qmsg *m = f->m;
    struct qmgr *q = m->q; /* m may be freed below */

    m->jobs_running = 0;
    if (queue_file_pending(m->qf) == 0) {
        /* every recipient is settled: its records would go with the file,
         * so they are written only when the file cannot go */
        if (spool_retire(q->spool, m->id, m->qf->env->size) < 0 && errno != ENOENT) {
            log_error("%s: cannot remove: %s", m->id, strerror(errno));
            append(m, f->after);
        } else {
            log_info("%s: removed", m->id);
        }
        evbuffer_free(f->after);
        qmgr_message_free(m);
    } else {
        append(m, f->after);
        evbuffer_free(f->after);
        if (!m->q->stopping) {
            time_t now = time(NULL);
            struct timeval tv = { m->qf->next_attempt > now ? m->qf->next_attempt - now : 0, 0 };
            if (f->failed) /* a bounce could not be queued: try again soon */
                tv.tv_sec = (time_t)(m->q->p->relay->queue.min_backoff / 1000);
            evtimer_add(m->timer, &tv);
        }
    }
    free(f);
    qmgr_maybe_exit(q);
}

void qmgr_attempt_done(struct qmsg *m)
{
    struct finish *f = calloc(1, sizeof(*f));
    struct evbuffer *rec = evbuffer_new();
    time_t now = time(NULL);

    if (m->dropped || f == NULL || rec == NULL || (f->after = evbuffer_new()) == NULL) {
        if (!m->dropped)
            log_error("%s: out of memory settling an attempt", m->id);
        free(f);
        if (rec != NULL)
            evbuffer_free(rec);
        qmgr_message_free(m);
        return;
    }
    f->m = m;
    m->jobs_running = 1; /* busy until settled: no flush starts another attempt */
    record_outcomes(m, rec, now);
    if (!m->q->stopping) {
        handle_bounces(f, rec, now);
        handle_delay_warning(f, now);
    }
    if (queue_file_pending(m->qf) > 0) {
        m->qf->attempts++;
        m->qf->next_attempt = now + backoff(&m->q->p->relay->queue, m->qf->attempts);
        evbuffer_add_printf(rec, "T %lld %u\n", (long long)m->qf->next_attempt, m->qf->attempts);
    }
    append(m, rec);
    evbuffer_free(rec);
    if (f->injections == 0)
        settle(f);
}
