/*
 * chain — see chain.h. Runs the links that have a callback for a stage, all
 * at once; counts what is pending and arms a timer per pending call; when
 * nothing is outstanding, posts the run's delivery event, which merges the
 * calls in link order (so the result does not depend on the order in which
 * pending filters complete) into the session's result and calls back. The
 * callback never runs inside chain_run or inside a filter's
 * filter_call_done, so it may free the session or start the next stage.
 *
 * A call that fails (returns -1, ends with -1 or times out) loses its
 * findings and its message edits and gets its link's on_error outcome
 * instead; a timed-out call is
 * cancelled through the filter's cancel. Unknown on_error values fail closed
 * (tempfail).
 *
 * A late run (chain_run_late) is the same machinery with each link's late
 * callback instead of a stage's: made whether or not the session was
 * allow-listed, merged without the stage rules (no ACCEPT remembered, no
 * txn_action, no tarpit), its header fields into late_headers.
 *
 * Trusts the filters' contract (filter.h) and its caller to stay on the
 * loop thread, to run one stage of a session at a time and to free every
 * session before the chain.
 */
#include "config.h"
#include "filters/chain.h"
#include "filters/edit.h"
#include "filters/filter-private.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "lib/log.h"

#define CHAIN_DEFAULT_TIMEOUT_MS 30000u

struct chain {
    struct event_base *base;
    struct chain_link *links;
    struct chain_filter_stats *stats;
    size_t count;
    size_t sessions; /* alive: chain_free asserts there are none */
    struct filter_edit_limits edit_limits; /* tmp_dir owned */
};

struct chain_session {
    struct chain *chain;
    struct chain_result result;
    bool accepted;           /* an ACCEPT was decided: no filter is called again */
    size_t client_symbols;   /* symbols of CONNECT and HELO: kept by reset */
    size_t client_headers;   /* the same for header fields */
    double client_score;
    const char *accepted_by;
    struct chain_run *run;   /* the stage in progress, or NULL */
    const struct filter_txn *txn; /* of the last run: the filters' key for the session */
};

struct chain_run {
    struct chain_session *session;
    enum filter_stage stage; /* FILTER_EOM for a late run */
    bool late;               /* the late step (chain_run_late) */
    chain_done_cb *cb;
    void *ctx;
    struct event *deliver;
    bool delayed;            /* the delivery waited for filter_call_delay already */
    size_t outstanding;      /* calls running or pending */
    struct filter_call calls[]; /* one per link */
};

static uint64_t chain_now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct chain *chain_new(struct event_base *base, const struct chain_link *links, size_t count)
{
    struct chain *chain;

    for (size_t i = 0; i < count; i++)
        if (links[i].ops == NULL || links[i].ops->name == NULL)
            return NULL;
    chain = calloc(1, sizeof(*chain));
    if (chain == NULL)
        return NULL;
    chain->links = calloc(count + 1, sizeof(*chain->links));
    chain->stats = calloc(count + 1, sizeof(*chain->stats));
    if (chain->links == NULL || chain->stats == NULL) {
        free(chain->links);
        free(chain->stats);
        free(chain);
        return NULL;
    }
    chain->base = base;
    chain->count = count;
    for (size_t i = 0; i < count; i++) {
        chain->links[i] = links[i];
        if (chain->links[i].timeout_ms == 0)
            chain->links[i].timeout_ms = CHAIN_DEFAULT_TIMEOUT_MS;
        chain->stats[i].name = links[i].ops->name;
    }
    return chain;
}

void chain_free(struct chain **_chain)
{
    struct chain *chain = *_chain;

    if (chain == NULL)
        return;
    *_chain = NULL;
    assert(chain->sessions == 0);
    free((char *)chain->edit_limits.tmp_dir);
    free(chain->links);
    free(chain->stats);
    free(chain);
}

int chain_set_edit_limits(struct chain *chain, uint64_t body_max, const char *tmp_dir)
{
    char *dir = NULL;

    if (tmp_dir != NULL && (dir = strdup(tmp_dir)) == NULL)
        return -1;
    free((char *)chain->edit_limits.tmp_dir);
    chain->edit_limits.body_max = body_max;
    chain->edit_limits.tmp_dir = dir;
    return 0;
}

const struct filter_edit_limits *chain_call_edit_limits(const struct filter_call *call)
{
    return &call->run->session->chain->edit_limits;
}

size_t chain_stats(const struct chain *chain, struct chain_filter_stats *out, size_t max)
{
    size_t n = chain->count < max ? chain->count : max;

    for (size_t i = 0; i < n; i++)
        out[i] = chain->stats[i];
    return n;
}

bool chain_has_stage(const struct chain *chain, enum filter_stage stage)
{
    for (size_t i = 0; i < chain->count; i++) {
        if (chain->links[i].ops->stage[stage] != NULL)
            return true;
    }
    return false;
}

bool chain_has_late(const struct chain *chain)
{
    for (size_t i = 0; i < chain->count; i++) {
        if (chain->links[i].ops->late != NULL)
            return true;
    }
    return false;
}

/* ---- sessions ---- */

struct chain_session *chain_session_new(struct chain *chain)
{
    struct chain_session *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->chain = chain;
    chain->sessions++;
    return s;
}

static void free_headers(struct filter_header *h, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        free(h[i].name);
        free(h[i].value);
        h[i] = (struct filter_header){NULL, NULL};
    }
}

void chain_session_reset(struct chain_session *s)
{
    assert(s->run == NULL);
    free_headers(s->result.headers, s->client_headers, s->result.header_count);
    s->result.header_count = s->client_headers;
    free_headers(s->result.late_headers, 0, s->result.late_header_count);
    s->result.late_header_count = 0;
    filter_edits_free(&s->result.edits);
    s->result.symbol_count = s->client_symbols;
    s->result.score = s->client_score;
    s->result.action = FILTER_ACTION_NONE;
    s->result.txn_action = FILTER_ACTION_NONE;
    s->result.action_by = NULL;
    s->result.reply = (struct smtp_status){.code = 0};
}

void chain_session_free(struct chain_session **_s)
{
    struct chain_session *s = *_s;

    if (s == NULL)
        return;
    *_s = NULL;
    chain_run_cancel(s->run);
    for (size_t i = 0; i < s->chain->count && s->txn != NULL; i++) {
        const struct chain_link *l = &s->chain->links[i];

        if (l->ops->session_end != NULL)
            l->ops->session_end(l->instance, s->txn);
    }
    free_headers(s->result.headers, 0, s->result.header_count);
    free_headers(s->result.late_headers, 0, s->result.late_header_count);
    filter_edits_free(&s->result.edits);
    s->chain->sessions--;
    free(s);
}

const struct chain_result *chain_session_result(const struct chain_session *s)
{
    return &s->result;
}

struct filter_edits *chain_session_take_edits(struct chain_session *s)
{
    struct filter_edits *e = s->result.edits;

    s->result.edits = NULL;
    return e;
}

/* ---- a call's end ---- */

/* "clamd" -> "CLAMD_ERROR"; characters outside [A-Za-z0-9] become '_'. */
static void chain_error_symbol(char *out, size_t size, const char *name)
{
    size_t n = 0;

    for (; name[n] != '\0' && n + sizeof("_ERROR") < size; n++)
        out[n] = isalnum((unsigned char)name[n]) ? (char)toupper((unsigned char)name[n]) : '_';
    snprintf(out + n, size - n, "_ERROR");
}

/* Replaces a failed call's findings with its link's on_error outcome. */
static void chain_call_on_error(struct filter_call *call, const char *why)
{
    const char *name = call->link->ops->name;

    call->symbol_count = 0;
    call->delay_ms = 0;
    free_headers(call->headers, 0, call->header_count);
    call->header_count = 0;
    filter_edits_free(&call->edits);
    call->score = 0;
    call->action = FILTER_ACTION_NONE;
    call->reply = (struct smtp_status){.code = 0};
    switch (call->link->on_error) {
    case FILTER_ON_ERROR_SKIP:
        if (call->symbols == NULL)
            call->symbols = calloc(1, sizeof(*call->symbols));
        if (call->symbols == NULL)
            return; /* out of memory: the symbol is lost, skip still holds */
        call->symbol_alloc = call->symbol_alloc == 0 ? 1 : call->symbol_alloc;
        chain_error_symbol(call->symbols[0].name, sizeof(call->symbols[0].name), name);
        snprintf(call->symbols[0].text, sizeof(call->symbols[0].text), "%s", why);
        call->symbols[0].score = 0;
        call->symbol_count = 1;
        return;
    case FILTER_ON_ERROR_ACCEPT:
        call->action = FILTER_ACTION_ACCEPT;
        return;
    case FILTER_ON_ERROR_REJECT:
        call->action = FILTER_ACTION_REJECT;
        smtp_status_set(&call->reply, 554, "5.7.1", "%s unavailable", name);
        return;
    case FILTER_ON_ERROR_TEMPFAIL:
    default: /* unknown: fail closed */
        call->action = FILTER_ACTION_TEMPFAIL;
        smtp_status_set(&call->reply, 451, "4.7.1", "%s temporarily unavailable", name);
        return;
    }
}

/* Ends a call that was running or pending: result 1 = done, -1 = error,
 * 0 = timed out. Posts the delivery when it was the last one. */
static void chain_call_finish(struct filter_call *call, int result)
{
    struct chain_run *run = call->run;
    struct chain_filter_stats *st = &run->session->chain->stats[call->index];

    if (call->timer != NULL)
        event_del(call->timer);
    call->state = FILTER_CALL_FINISHED;
    st->usec += chain_now_usec() - call->start_usec;
    if (result == 1 && call->hit)
        st->hits++;
    else if (result == -1)
        st->errors++;
    else if (result == 0)
        st->timeouts++;
    if (result != 1)
        chain_call_on_error(call, result == 0 ? "timeout" : "error");
    assert(run->outstanding > 0);
    if (--run->outstanding == 0)
        event_active(run->deliver, EV_TIMEOUT, 1);
}

void chain_call_done(struct filter_call *call, int result)
{
    chain_call_finish(call, result);
}

static void chain_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct filter_call *call = arg;

    (void)fd;
    (void)what;
    assert(call->state == FILTER_CALL_PENDING);
    chain_call_finish(call, 0);
    call->link->ops->cancel(call->link->instance, call);
}

/* ---- merging ---- */

/* The reply for an action a filter asked for without one (code 0). */
static void chain_default_reply(struct smtp_status *reply, enum filter_action action)
{
    switch (action) {
    case FILTER_ACTION_REJECT:
        smtp_status_set(reply, 554, "5.7.1", "Rejected by policy");
        break;
    case FILTER_ACTION_TEMPFAIL:
        smtp_status_set(reply, 451, "4.7.1", "Try again later");
        break;
    case FILTER_ACTION_DISCONNECT:
        smtp_status_set(reply, 421, "4.7.0", "Closing connection");
        break;
    default:
        break;
    }
}

/* A call's edits go after those of the links before it, whole or not at
 * all: a filter's edits are applied together or not. */
static void chain_merge_edits(struct chain_result *res, struct filter_call *call)
{
    if (call->edits == NULL)
        return;
    if (res->edits == NULL) {
        res->edits = call->edits;
        call->edits = NULL;
        return;
    }
    if (filter_edits_merge(res->edits, call->edits) < 0)
        log_warning("%s: %s: message edits dropped: over the limits of a message",
                    call->txn->queue_id != NULL ? call->txn->queue_id : "-",
                    call->link->ops->name);
    filter_edits_free(&call->edits);
}

static void chain_merge_call(struct chain_result *res, struct filter_call *call)
{
    struct filter_header *to = call->late ? res->late_headers : res->headers;
    size_t *count = call->late ? &res->late_header_count : &res->header_count;

    for (size_t j = 0; j < call->symbol_count && res->symbol_count < CHAIN_SYMBOLS_MAX; j++)
        res->symbols[res->symbol_count++] = call->symbols[j];
    for (size_t j = 0; j < call->header_count; j++) {
        if (*count < CHAIN_HEADERS_MAX)
            to[(*count)++] = call->headers[j]; /* now the session's */
        else
            free_headers(call->headers, j, j + 1);
    }
    call->header_count = 0;
    chain_merge_edits(res, call);
    res->score += call->score;
    if (!filter_action_stronger(call->action, res->action))
        return;
    res->action = call->action;
    res->action_by = call->link->ops->name;
    res->reply = call->reply;
    if (res->reply.code == 0)
        chain_default_reply(&res->reply, res->action);
}

/* Folds the finished calls, in link order, into the session's result. */
static void chain_merge(struct chain_run *run)
{
    struct chain_session *s = run->session;
    struct chain_result *res = &s->result;

    res->action = FILTER_ACTION_NONE;
    res->action_by = NULL;
    res->reply = (struct smtp_status){.code = 0};
    if (s->accepted && !run->late) {
        res->action = FILTER_ACTION_ACCEPT;
        res->action_by = s->accepted_by;
        return;
    }
    for (size_t i = 0; i < s->chain->count; i++)
        if (run->calls[i].state == FILTER_CALL_FINISHED)
            chain_merge_call(res, &run->calls[i]);
    if (run->late)
        return; /* after the verdict: nothing of a stage's rules */
    if ((res->action == FILTER_ACTION_HOLD || res->action == FILTER_ACTION_QUARANTINE ||
         res->action == FILTER_ACTION_DISCARD) &&
        filter_action_stronger(res->action, res->txn_action))
        res->txn_action = res->action;
    if (run->stage == FILTER_CONNECT || run->stage == FILTER_HELO) {
        s->client_symbols = res->symbol_count;
        s->client_score = res->score;
        s->client_headers = res->header_count;
    }
    if (res->action == FILTER_ACTION_ACCEPT) {
        s->accepted = true;
        s->accepted_by = res->action_by;
    }
}

/* ---- runs ---- */

static void chain_run_free(struct chain_run *run)
{
    size_t count = run->session->chain->count;

    for (size_t i = 0; i < count; i++) {
        if (run->calls[i].timer != NULL)
            event_free(run->calls[i].timer);
        free(run->calls[i].symbols);
        free_headers(run->calls[i].headers, 0, run->calls[i].header_count);
        free(run->calls[i].headers);
        filter_edits_free(&run->calls[i].edits);
    }
    if (run->deliver != NULL)
        event_free(run->deliver);
    free(run);
}

static void chain_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct chain_run *run = arg;
    struct chain_session *s = run->session;
    chain_done_cb *cb = run->cb;
    void *ctx = run->ctx;

    (void)fd;
    (void)what;
    if (!run->delayed && !run->late) {
        unsigned ms = 0;
        for (size_t i = 0; i < s->chain->count; i++)
            if (run->calls[i].state == FILTER_CALL_FINISHED && run->calls[i].delay_ms > ms)
                ms = run->calls[i].delay_ms;
        run->delayed = true;
        if (ms > 0 && !s->accepted) {
            struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
            event_add(run->deliver, &tv); /* back here when it is time */
            return;
        }
    }
    chain_merge(run);
    s->run = NULL;
    chain_run_free(run);
    cb(ctx, &s->result);
}

typedef int chain_step_fn(void *instance, struct filter_call *call);

/* The callback of link for a run of stage (late: its late step), or NULL. */
static chain_step_fn *chain_link_fn(const struct chain_link *link, enum filter_stage stage,
                                    bool late)
{
    return late ? link->ops->late : link->ops->stage[stage];
}

/* Allocates the run, its delivery event and a timer for each call to make
 * (a call is made when it has a timer); NULL when out of memory. */
static struct chain_run *chain_run_new(struct chain_session *s, enum filter_stage stage,
                                       bool late, const struct filter_txn *txn)
{
    struct chain *chain = s->chain;
    struct chain_run *run = calloc(1, sizeof(*run) + chain->count * sizeof(run->calls[0]));
    bool ok;

    if (run == NULL)
        return NULL;
    run->session = s;
    run->stage = stage;
    run->late = late;
    run->deliver = event_new(chain->base, -1, 0, chain_deliver, run);
    ok = run->deliver != NULL;
    for (size_t i = 0; i < chain->count; i++) {
        struct filter_call *call = &run->calls[i];

        *call = (struct filter_call){.run = run,
                                     .index = i,
                                     .link = &chain->links[i],
                                     .txn = txn,
                                     .stage = stage,
                                     .late = late};
        if (!ok || (s->accepted && !late) || chain_link_fn(&chain->links[i], stage, late) == NULL)
            continue;
        call->timer = evtimer_new(chain->base, chain_call_timeout, call);
        ok = call->timer != NULL;
    }
    if (!ok) {
        chain_run_free(run);
        return NULL;
    }
    return run;
}

static void chain_call_start(struct chain_run *run, struct filter_call *call)
{
    const struct chain_link *link = call->link;
    struct timeval tv = {.tv_sec = link->timeout_ms / 1000,
                         .tv_usec = (link->timeout_ms % 1000) * 1000};
    int rc;

    call->state = FILTER_CALL_RUNNING;
    call->start_usec = chain_now_usec();
    run->session->chain->stats[call->index].calls++;
    run->outstanding++;
    rc = chain_link_fn(link, call->stage, call->late)(link->instance, call);
    if (rc != 0) {
        chain_call_finish(call, rc == 1 ? 1 : -1);
        return;
    }
    assert(link->ops->cancel != NULL); /* a filter that can wait must be cancellable */
    call->state = FILTER_CALL_PENDING;
    evtimer_add(call->timer, &tv);
}

static struct chain_run *chain_run_start(struct chain_session *s, enum filter_stage stage,
                                         bool late, const struct filter_txn *txn,
                                         chain_done_cb *cb, void *ctx)
{
    struct chain_run *run;

    assert(s->run == NULL); /* one stage at a time */
    assert(stage < FILTER_STAGES && cb != NULL);
    s->txn = txn;
    run = chain_run_new(s, stage, late, txn);
    if (run == NULL)
        return NULL;
    run->cb = cb;
    run->ctx = ctx;
    s->run = run;
    /* chain_run's own hold: no delivery is posted before every filter was called */
    run->outstanding = 1;
    for (size_t i = 0; i < s->chain->count; i++)
        if (run->calls[i].timer != NULL)
            chain_call_start(run, &run->calls[i]);
    if (--run->outstanding == 0)
        event_active(run->deliver, EV_TIMEOUT, 1);
    return run;
}

struct chain_run *chain_run(struct chain_session *s, enum filter_stage stage,
                            const struct filter_txn *txn, chain_done_cb *cb, void *ctx)
{
    return chain_run_start(s, stage, false, txn, cb, ctx);
}

struct chain_run *chain_run_late(struct chain_session *s, const struct filter_txn *txn,
                                 chain_done_cb *cb, void *ctx)
{
    return chain_run_start(s, FILTER_EOM, true, txn, cb, ctx);
}

void chain_run_cancel(struct chain_run *run)
{
    struct chain *chain;

    if (run == NULL)
        return;
    chain = run->session->chain;
    for (size_t i = 0; i < chain->count; i++) {
        struct filter_call *call = &run->calls[i];

        if (call->state != FILTER_CALL_PENDING)
            continue;
        event_del(call->timer);
        call->state = FILTER_CALL_CANCELLED;
        chain->stats[i].usec += chain_now_usec() - call->start_usec;
        call->link->ops->cancel(call->link->instance, call);
    }
    run->session->run = NULL;
    chain_run_free(run);
}
