/*
 * pmilter-loop — the event loop thread of postern-milter (see
 * pmilter-private.h). Requests come through a pipe as {pconn, op} records
 * (16 octets, so each write is atomic); the libmilter thread that wrote one
 * waits on its pconn's condition variable until the loop has answered
 * (seq_done reaches its request's number). The filters are built by
 * gateway/smtp-filters.c exactly as for a posternd worker; only the chain
 * is this file's, made of the instances the command line names. The late
 * step (POP_LATE) is a run like a stage's, on the final message that
 * pm_eom prepared.
 */
#include "config.h"
#include "milter/pmilter-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/edit.h"
#include "filters/module.h"
#include "gateway/filter-config.h"
#include "gateway/server-config.h"
#include "gateway/smtp-filters.h"
#include "lib/dns.h"
#include "lib/log.h"

enum pop { POP_RUN, POP_LATE, POP_CANCEL, POP_FORGET, POP_STOP };

struct preq {
    struct pconn *c;
    unsigned long seq;
    int op;    /* enum pop */
    int stage; /* enum filter_stage, POP_RUN (FILTER_EOM for POP_LATE) */
};

struct ploop {
    const struct postern_config *cfg;
    struct event_base *base;
    struct dns *dns;
    struct smtp_filters *filters;
    struct chain *chain;
    unsigned max_timeout;
    int pipe_r, pipe_w;
    struct event *ev;
    pthread_t thread;
    bool started;
    pthread_mutex_t wmu; /* serialises the pipe's writers */
};

static void free_fields(struct filter_header **h, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free((*h)[i].name);
        free((*h)[i].value);
    }
    free(*h);
    *h = NULL;
    *n = 0;
}

void pconn_clear_answer(struct pconn *c)
{
    free_fields(&c->hdrs, &c->hdr_count);
    free_fields(&c->late_hdrs, &c->late_count);
    c->late_action = FILTER_ACTION_NONE;
    c->late_reply = (struct smtp_status){.code = 0};
    c->late_by = NULL;
    filter_edits_free(&c->edits);
}

static void answer(struct pconn *c, unsigned long seq)
{
    pthread_mutex_lock(&c->mu);
    if (seq > c->seq_done)
        c->seq_done = seq;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Appends a copy of name: value to the list *h of *n fields. */
static int keep_field(struct filter_header **h, size_t *n, const char *name, const char *value)
{
    struct filter_header *grown;

    if ((grown = realloc(*h, (*n + 1) * sizeof(*grown))) == NULL)
        return -1;
    *h = grown;
    grown[*n].name = strdup(name);
    grown[*n].value = strdup(value);
    if (grown[*n].name == NULL || grown[*n].value == NULL) {
        free(grown[*n].name);
        free(grown[*n].value);
        return -1;
    }
    (*n)++;
    return 0;
}

static int keep_header(void *ctx, const char *name, const char *value)
{
    struct pconn *c = ctx;

    return keep_field(&c->hdrs, &c->hdr_count, name, value);
}

struct prun {
    struct ploop *l;
    struct pconn *c;
    unsigned long seq;
    enum filter_stage stage;
    size_t symbols_before; /* the session's symbols when the run started */
};

/* The message's line: its verdict and what the chain found. */
static void log_summary(const struct pconn *c, const struct chain_result *res)
{
    static const char *const names[] = {"accept",   "discard", "hold",       "quarantine",
                                        "tempfail", "reject",  "disconnect", "accept"};
    char sym[1024];
    size_t o = 0;

    sym[0] = '\0';
    for (size_t i = 0; i < res->symbol_count && o < sizeof(sym); i++)
        o += (size_t)snprintf(sym + o, sizeof(sym) - o, "%s%s(%g)", i > 0 ? "," : "",
                              res->symbols[i].name, res->symbols[i].score);
    log_info("%s: %s from=<%s> rcpts=%zu size=%llu symbols=%s score=%g",
             c->txn.queue_id != NULL ? c->txn.queue_id : "NOQUEUE",
             (size_t)c->d.action < sizeof(names) / sizeof(*names) ? names[c->d.action] : "?",
             c->txn.sender != NULL ? c->txn.sender : "", c->txn.rcpt_count,
             (unsigned long long)c->txn.content_len, res->symbol_count > 0 ? sym : "-", res->score);
}

static void on_chain_done(void *ctx, const struct chain_result *res)
{
    struct prun *r = ctx;
    struct pconn *c = r->c;
    const struct postern_config *cfg = r->l->cfg;
    bool final = r->stage == FILTER_EOM;
    enum filter_action a;
    const char *id;

    c->run = NULL;
    c->run_ctx = NULL;
    policy_decide(&cfg->filtering.policy, c->txn.direction, final, res, &c->d);
    a = c->d.action;
    id = c->txn.queue_id != NULL ? c->txn.queue_id : "NOQUEUE";
    if (final)
        log_summary(c, res);
    if (final && (a == FILTER_ACTION_NONE || a == FILTER_ACTION_ACCEPT || a == FILTER_ACTION_HOLD ||
                  a == FILTER_ACTION_QUARANTINE)) {
        for (size_t i = 0; i < res->header_count; i++)
            if (keep_header(c, res->headers[i].name, res->headers[i].value) < 0)
                log_warning("%s: cannot keep %s", id, res->headers[i].name);
        if (policy_headers(&cfg->filtering.policy, &c->d, res, cfg->server.hostname, keep_header,
                           c) < 0)
            log_warning("%s: cannot keep the policy's header fields", id);
        c->edits = chain_session_take_edits(c->cs);
    }
    answer(c, r->seq);
    free(r);
}

/* The late step's answer: its fields for the top of the message, the
 * refusal it may give, and a line with what it found. */
static void on_late_done(void *ctx, const struct chain_result *res)
{
    struct prun *r = ctx;
    struct pconn *c = r->c;
    const char *id = c->txn.queue_id != NULL ? c->txn.queue_id : "NOQUEUE";
    char sym[512];
    size_t o = 0;

    c->run = NULL;
    c->run_ctx = NULL;
    c->late_action = res->action;
    c->late_reply = res->reply;
    c->late_by = res->action_by;
    for (size_t i = 0; i < res->late_header_count; i++)
        if (keep_field(&c->late_hdrs, &c->late_count, res->late_headers[i].name,
                       res->late_headers[i].value) < 0) {
            log_error("%s: cannot keep %s", id, res->late_headers[i].name);
            c->failed = true; /* a signature lost: the caller tempfails */
        }
    sym[0] = '\0';
    for (size_t i = r->symbols_before; i < res->symbol_count && o < sizeof(sym); i++)
        o += (size_t)snprintf(sym + o, sizeof(sym) - o, "%s%s(%g)", o > 0 ? "," : "",
                              res->symbols[i].name, res->symbols[i].score);
    if (o > 0 || res->action != FILTER_ACTION_NONE)
        log_info("%s: late step: action=%s symbols=%s", id, filter_action_name(res->action),
                 o > 0 ? sym : "-");
    answer(c, r->seq);
    free(r);
}

static void do_run(struct ploop *l, struct pconn *c, enum filter_stage stage, bool late,
                   unsigned long seq)
{
    struct prun *r;

    if (!late)
        pconn_clear_answer(c); /* the late step adds to the EOM answer */
    c->failed = false;
    if (c->cs == NULL && (c->cs = chain_session_new(l->chain)) == NULL)
        goto fail;
    if (stage == FILTER_MAIL && !late)
        chain_session_reset(c->cs); /* a new transaction */
    const struct chain_result *found = chain_session_result(c->cs);
    c->txn.symbols = found->symbols;
    c->txn.symbol_count = found->symbol_count;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        goto fail;
    *r = (struct prun){
        .l = l, .c = c, .seq = seq, .stage = stage, .symbols_before = found->symbol_count};
    c->run = late ? chain_run_late(c->cs, &c->txn, on_late_done, r)
                  : chain_run(c->cs, stage, &c->txn, on_chain_done, r);
    if (c->run == NULL) {
        free(r);
        goto fail;
    }
    c->run_ctx = r;
    return;
fail:
    c->failed = true;
    answer(c, seq);
}

static void on_request(evutil_socket_t fd, short what, void *ctx)
{
    struct ploop *l = ctx;
    struct preq q[64];
    ssize_t n;

    (void)what;
    if ((n = read(fd, q, sizeof(q))) <= 0)
        return;
    for (size_t i = 0; i < (size_t)n / sizeof(*q); i++) {
        struct pconn *c = q[i].c;
        switch (q[i].op) {
        case POP_RUN:
        case POP_LATE:
            do_run(l, c, (enum filter_stage)q[i].stage, q[i].op == POP_LATE, q[i].seq);
            break;
        case POP_CANCEL:
        case POP_FORGET:
            if (c->run != NULL) { /* cancelled: on_chain_done will not run */
                chain_run_cancel(c->run);
                c->run = NULL;
                free(c->run_ctx);
                c->run_ctx = NULL;
            }
            if (q[i].op == POP_FORGET)
                chain_session_free(&c->cs);
            answer(c, q[i].seq);
            break;
        case POP_STOP:
            event_base_loopbreak(l->base);
            break;
        }
    }
}

static int send_req(struct ploop *l, const struct preq *q)
{
    ssize_t n;

    pthread_mutex_lock(&l->wmu);
    do
        n = write(l->pipe_w, q, sizeof(*q));
    while (n < 0 && errno == EINTR);
    pthread_mutex_unlock(&l->wmu);
    return n == (ssize_t)sizeof(*q) ? 0 : -1;
}

/* Waits for c's answer to seq until deadline (NULL: no bound). */
static bool wait_answer(struct pconn *c, unsigned long seq, const struct timespec *deadline)
{
    bool ok = true;

    pthread_mutex_lock(&c->mu);
    while (c->seq_done < seq && ok)
        if (deadline == NULL)
            pthread_cond_wait(&c->cv, &c->mu);
        else
            ok = pthread_cond_timedwait(&c->cv, &c->mu, deadline) == 0 || c->seq_done >= seq;
    ok = c->seq_done >= seq;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static unsigned long next_seq(struct pconn *c)
{
    unsigned long s;

    pthread_mutex_lock(&c->mu);
    s = ++c->seq_req;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* Sends the run request q and waits for its answer as ploop_run says. */
static int request_run(struct ploop *l, struct pconn *c, struct preq q, unsigned timeout_ms)
{
    struct timespec dl;

    q.seq = next_seq(c);
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(timeout_ms / 1000);
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    if (send_req(l, &q) < 0)
        return -1;
    if (wait_answer(c, q.seq, &dl))
        return c->failed ? -1 : 0;
    log_warning("%s: the filters did not answer within %u ms",
                c->txn.queue_id != NULL ? c->txn.queue_id : "NOQUEUE", timeout_ms);
    q.op = POP_CANCEL;
    q.seq = next_seq(c);
    if (send_req(l, &q) == 0)
        (void)wait_answer(c, q.seq, NULL); /* the loop never blocks: at once */
    return -1;
}

int ploop_run(struct ploop *l, struct pconn *c, enum filter_stage stage, unsigned timeout_ms)
{
    return request_run(l, c, (struct preq){.c = c, .op = POP_RUN, .stage = (int)stage},
                       timeout_ms);
}

int ploop_run_late(struct ploop *l, struct pconn *c, unsigned timeout_ms)
{
    return request_run(l, c, (struct preq){.c = c, .op = POP_LATE, .stage = FILTER_EOM},
                       timeout_ms);
}

bool ploop_has_late(const struct ploop *l)
{
    return chain_has_late(l->chain);
}

void ploop_forget(struct ploop *l, struct pconn *c)
{
    struct preq q = {.c = c, .op = POP_FORGET};

    q.seq = next_seq(c);
    if (send_req(l, &q) == 0)
        (void)wait_answer(c, q.seq, NULL);
}

unsigned ploop_max_timeout(const struct ploop *l)
{
    return l->max_timeout;
}

static void *loop_main(void *arg)
{
    struct ploop *l = arg;

    event_base_dispatch(l->base);
    return NULL;
}

/* Builds the chain of the instances named in ids (all when NULL). */
static int make_chain(struct ploop *l, const char *ids, char *error, size_t errsize)
{
    const struct filter_config *fc = &l->cfg->filtering;
    struct chain_link *links = calloc(fc->count + 1, sizeof(*links));
    size_t n = 0;
    char tmp_dir[4096];
    int ret = -1;

    if (links == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < fc->count && ids == NULL; i++)
        links[n++] = (struct chain_link){.instance = smtp_filters_instance(l->filters, i)};
    if (ids == NULL)
        for (size_t i = 0; i < fc->count; i++) {
            const struct filter_common *cm = filter_instance_common(&fc->filters[i]);
            links[i].ops = fc->filters[i].module->ops;
            links[i].on_error = (enum filter_on_error)cm->on_error;
            links[i].timeout_ms = (unsigned)cm->timeout;
        }
    for (const char *p = ids; p != NULL && *p != '\0';) {
        size_t len = strcspn(p, ","), i;
        for (i = 0; i < fc->count; i++) {
            const struct filter_common *cm = filter_instance_common(&fc->filters[i]);
            if (strlen(cm->id) == len && strncmp(cm->id, p, len) == 0)
                break;
        }
        if (i == fc->count || n >= fc->count) {
            snprintf(error, errsize, "--filters: no filter '%.*s' in the config (or twice)",
                     (int)(len > 64 ? 64 : len), p);
            goto out;
        }
        const struct filter_common *cm = filter_instance_common(&fc->filters[i]);
        links[n++] = (struct chain_link){.ops = fc->filters[i].module->ops,
                                         .instance = smtp_filters_instance(l->filters, i),
                                         .on_error = (enum filter_on_error)cm->on_error,
                                         .timeout_ms = (unsigned)cm->timeout};
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        snprintf(error, errsize, "no filters to run (the config lists none)");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (links[i].timeout_ms > l->max_timeout)
            l->max_timeout = links[i].timeout_ms;
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", l->cfg->server.spool_dir);
    if ((l->chain = chain_new(l->base, links, n)) == NULL ||
        chain_set_edit_limits(l->chain, (uint64_t)l->cfg->smtp.message_size_limit,
                              access(tmp_dir, W_OK) == 0 ? tmp_dir : NULL) < 0) {
        snprintf(error, errsize, "cannot create the chain");
        goto out;
    }
    ret = 0;
out:
    free(links);
    return ret;
}

int ploop_start(const struct postern_config *cfg, const char *ids, struct ploop **l_r, char *error,
                size_t errsize)
{
    struct ploop *l = calloc(1, sizeof(*l));
    int fds[2];

    *l_r = NULL;
    if (l == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    l->cfg = cfg;
    l->pipe_r = l->pipe_w = -1;
    pthread_mutex_init(&l->wmu, NULL);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(error, errsize, "pipe: %s", strerror(errno));
        goto fail;
    }
    l->pipe_r = fds[0];
    l->pipe_w = fds[1];
    if ((l->base = event_base_new()) == NULL) {
        snprintf(error, errsize, "cannot create the event loop");
        goto fail;
    }
    struct dns_config dc = {
        .nameservers = (const char *const *)cfg->dns.nameservers.items,
        .nameserver_count = cfg->dns.nameservers.count,
        .timeout_ms = (unsigned)cfg->dns.timeout,
        .attempts = (unsigned)cfg->dns.attempts,
        .cache_size = (size_t)cfg->dns.cache_size,
        .cache_max_ttl_s = (unsigned)(cfg->dns.cache_max_ttl / 1000),
    };
    if (dns_new(l->base, &dc, &l->dns, error, errsize) < 0 ||
        smtp_filters_new(l->base, l->dns, cfg, &l->filters, error, errsize) < 0 ||
        make_chain(l, ids, error, errsize) < 0)
        goto fail;
    evutil_make_socket_nonblocking(l->pipe_r);
    if ((l->ev = event_new(l->base, l->pipe_r, EV_READ | EV_PERSIST, on_request, l)) == NULL ||
        event_add(l->ev, NULL) < 0) {
        snprintf(error, errsize, "cannot watch the request pipe");
        goto fail;
    }
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
        snprintf(error, errsize, "cannot start the loop thread");
        goto fail;
    }
    l->started = true;
    *l_r = l;
    return 0;
fail:
    ploop_stop(&l);
    return -1;
}

void ploop_stop(struct ploop **lp)
{
    struct ploop *l = *lp;
    struct preq q = {.op = POP_STOP};

    if (l == NULL)
        return;
    *lp = NULL;
    if (l->started && send_req(l, &q) == 0)
        pthread_join(l->thread, NULL);
    if (l->ev != NULL)
        event_free(l->ev);
    chain_free(&l->chain);
    smtp_filters_free(&l->filters);
    dns_free(&l->dns);
    if (l->base != NULL)
        event_base_free(l->base);
    if (l->pipe_r >= 0)
        close(l->pipe_r);
    if (l->pipe_w >= 0)
        close(l->pipe_w);
    pthread_mutex_destroy(&l->wmu);
    free(l);
}
