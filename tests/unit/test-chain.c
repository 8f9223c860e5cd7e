/*
 * test-chain — filters/chain and filters/filter: the chain driven by a real
 * event_base with test filters written here (sync, pending on an evtimer,
 * erroring at once or later, hanging until cancelled, asking for an action,
 * adding N symbols).
 *
 * The table runs the CONNECT stage for one set of filters per row and checks
 * the merged result: action, action_by, reply, score, symbols, and how many
 * times each filter was cancelled. Scenarios cover what a row cannot: order
 * of completion, ACCEPT across stages and chain_session_reset, cancel,
 * stats, that no result is ever delivered inside chain_run, and the late
 * step (chain_run_late): run after an ACCEPT too, its fields apart, its
 * failures by on_error, no edits and no tarpit in it.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/filter.h"
#include "tests/unit/loop-test.h"

#define MAX_FILTERS 4
#define RUN_MAX_MS 5000 /* a result not in by then never comes */
#define ALL_STAGES ((1u << FILTER_STAGES) - 1)
#define LATE_ONLY (1u << FILTER_STAGES) /* stages: none (with .late) */

enum tf_kind {
    TF_SYNC,          /* findings, return 1 */
    TF_ERROR,         /* findings, return -1 (they must be dropped) */
    TF_PENDING,       /* return 0; findings and done(1) after delay_ms */
    TF_PENDING_ERROR, /* return 0; done(-1) after delay_ms */
    TF_HANG,          /* return 0; never done: only the timeout ends it */
};

struct tf_spec {
    const char *name;
    enum tf_kind kind;
    enum filter_action action; /* asked for when not NONE */
    unsigned code;             /* reply code with the action, 0 = default */
    unsigned nsym;             /* symbols added, "name_i" */
    double score;              /* per symbol */
    unsigned delay_ms;
    enum filter_on_error on_error;
    unsigned timeout_ms;
    unsigned stages;           /* bit per stage hooked; 0 = all */
    bool header;               /* adds "X-<name>: <stage>" (and tries bad fields) */
    unsigned tarpit_ms;        /* filter_call_delay */
    bool late;                 /* has a late step (the same callback) */
};

struct env;

struct tf {
    struct filter_ops ops;
    struct tf_spec spec;
    struct env *env;
    struct event *ev;
    struct filter_call *call; /* while pending */
    int calls, cancels, completions;
    const struct filter_txn *seen_txn;
    enum filter_stage seen_stage;
    bool seen_late;
    int late_calls;
    int edit_rc; /* of a message edit tried in the late step */
    int ends;    /* session_end calls */
    const struct filter_txn *end_txn;
    bool pending_at_end; /* a call was still pending when the session ended */
};

struct env {
    struct event_base *base;
    struct tf tf[MAX_FILTERS];
    struct chain_link links[MAX_FILTERS];
    size_t n;
    struct chain *chain;
    struct chain_session *s;
    char order[MAX_FILTERS * 4]; /* names' first letters, in completion order */
    size_t order_n;
};

struct waiter {
    int calls;
    bool in_run;       /* set around chain_run */
    bool called_in_run;
    struct chain_result res;
};

/* ---- test filters ---- */

static void tf_findings(struct tf *tf, struct filter_call *call)
{
    char name[32];

    for (unsigned i = 0; i < tf->spec.nsym; i++) {
        snprintf(name, sizeof(name), "%s_%u", tf->spec.name, i);
        filter_call_symbol(call, name, tf->spec.score, i == 0 ? "first" : NULL);
    }
    if (tf->spec.tarpit_ms > 0)
        filter_call_delay(call, tf->spec.tarpit_ms);
    if (tf->spec.header) {
        snprintf(name, sizeof(name), "X-%s", tf->spec.name);
        assert_int_equal(filter_call_add_header(call, name,
                                                filter_stage_name(filter_call_stage(call))), 0);
        /* fields that could break the message are refused */
        assert_int_equal(filter_call_add_header(call, "Bad:Name", "v"), -1);
        assert_int_equal(filter_call_add_header(call, "", "v"), -1);
        assert_int_equal(filter_call_add_header(call, "X-Ok", "line\r\nInjected: yes"), -1);
        assert_int_equal(filter_call_add_header(call, "X-Ok", "bare\nLF"), -1);
        assert_int_equal(filter_call_add_header(call, "X-Ok", "8bit \xe9"), -1);
    }
    if (tf->spec.action != FILTER_ACTION_NONE)
        filter_call_action(call, tf->spec.action, tf->spec.code,
                           tf->spec.code >= 500 ? "5.7.1" : "4.7.1", "%s says no",
                           tf->spec.name);
}

static void tf_complete(evutil_socket_t fd, short what, void *arg)
{
    struct tf *tf = arg;
    struct filter_call *call = tf->call;

    (void)fd;
    (void)what;
    assert_non_null(call);
    assert_ptr_equal(filter_call_data(call), tf);
    tf->call = NULL;
    tf->completions++;
    tf->env->order[tf->env->order_n++] = tf->spec.name[0];
    if (tf->spec.kind == TF_PENDING_ERROR) {
        filter_call_done(call, -1);
        return;
    }
    tf_findings(tf, call);
    filter_call_done(call, 1);
}

static int tf_stage(void *instance, struct filter_call *call)
{
    struct tf *tf = instance;
    struct timeval tv = {.tv_sec = tf->spec.delay_ms / 1000,
                         .tv_usec = (tf->spec.delay_ms % 1000) * 1000};

    tf->calls++;
    tf->seen_txn = filter_call_txn(call);
    tf->seen_stage = filter_call_stage(call);
    tf->seen_late = filter_call_is_late(call);
    if (tf->seen_late) {
        tf->late_calls++;
        tf->edit_rc = filter_call_insert_header(call, 0, "X-Edit", "late");
    }
    switch (tf->spec.kind) {
    case TF_SYNC:
    case TF_ERROR:
        tf_findings(tf, call);
        tf->env->order[tf->env->order_n++] = tf->spec.name[0];
        return tf->spec.kind == TF_SYNC ? 1 : -1;
    case TF_PENDING:
    case TF_PENDING_ERROR:
        evtimer_add(tf->ev, &tv);
        break;
    case TF_HANG:
        break;
    }
    tf->call = call;
    filter_call_set_data(call, tf);
    return 0;
}

static void tf_cancel(void *instance, struct filter_call *call)
{
    struct tf *tf = instance;

    assert_ptr_equal(call, tf->call);
    tf->cancels++;
    tf->call = NULL;
    event_del(tf->ev);
}

static void tf_session_end(void *instance, const struct filter_txn *txn)
{
    struct tf *tf = instance;

    tf->ends++;
    tf->end_txn = txn;
    tf->pending_at_end = tf->call != NULL;
}

/* ---- fixture ---- */

static void env_build(struct env *env, const struct tf_spec *specs)
{
    memset(env, 0, sizeof(*env));
    env->base = event_base_new();
    assert_non_null(env->base);
    for (; env->n < MAX_FILTERS && specs[env->n].name != NULL; env->n++) {
        struct tf *tf = &env->tf[env->n];
        unsigned stages = specs[env->n].stages != 0 ? specs[env->n].stages : ALL_STAGES;

        tf->spec = specs[env->n];
        tf->env = env;
        tf->ops.name = tf->spec.name;
        tf->ops.cancel = tf_cancel;
        tf->ops.session_end = tf_session_end;
        for (int st = 0; st < FILTER_STAGES; st++)
            if (stages & (1u << st))
                tf->ops.stage[st] = tf_stage;
        if (tf->spec.late)
            tf->ops.late = tf_stage;
        tf->ev = evtimer_new(env->base, tf_complete, tf);
        env->links[env->n] = (struct chain_link){.ops = &tf->ops, .instance = tf,
                                                 .on_error = tf->spec.on_error,
                                                 .timeout_ms = tf->spec.timeout_ms};
    }
    env->chain = chain_new(env->base, env->links, env->n);
    assert_non_null(env->chain);
    env->s = chain_session_new(env->chain);
    assert_non_null(env->s);
}

static void env_free(struct env *env)
{
    chain_session_free(&env->s);
    assert_null(env->s);
    chain_free(&env->chain);
    assert_null(env->chain);
    for (size_t i = 0; i < env->n; i++)
        event_free(env->tf[i].ev);
    event_base_free(env->base);
}

static void waiter_done(void *ctx, const struct chain_result *res)
{
    struct waiter *w = ctx;

    w->calls++;
    w->called_in_run = w->called_in_run || w->in_run;
    w->res = *res;
}

static bool waiter_called(const void *ctx)
{
    return ((const struct waiter *)ctx)->calls != 0;
}

static const struct filter_txn test_txn = {.listener = "test", .client_addr = "192.0.2.1",
                                           .client_name = "unknown", .content_fd = -1};

/* Runs one stage and the loop until the result arrives; checks it did not
 * arrive inside chain_run. */
static void env_run(struct env *env, enum filter_stage stage, struct waiter *w)
{
    struct chain_run *run;

    memset(w, 0, sizeof(*w));
    w->in_run = true;
    run = chain_run(env->s, stage, &test_txn, waiter_done, w);
    w->in_run = false;
    assert_non_null(run);
    assert_int_equal(w->calls, 0);
    loop_run_until(env->base, waiter_called, w, RUN_MAX_MS);
    assert_int_equal(w->calls, 1);
    assert_false(w->called_in_run);
    assert_int_equal(w->res.symbol_count, chain_session_result(env->s)->symbol_count);
    assert_int_equal(w->res.action, chain_session_result(env->s)->action);
}

/* ---- the table: one CONNECT stage per row ---- */

struct row {
    const char *what;
    struct tf_spec f[MAX_FILTERS + 1];
    enum filter_action action;
    const char *action_by;
    unsigned code;       /* of the reply */
    const char *text;    /* of the reply, when not NULL */
    double score;
    size_t symbols;
    const char *sym0;    /* first symbol's name and text, when not NULL */
    const char *sym0_text;
    int cancels[MAX_FILTERS];
};

#define T 30 /* ms: a hanging filter's timeout */

static const struct row rows[] = {
    {.what = "one sync symbol",
     .f = {{.name = "a", .nsym = 1, .score = 2.0}},
     .score = 2.0, .symbols = 1, .sym0 = "a_0", .sym0_text = "first"},
    {.what = "sync and pending: symbols appended, score summed",
     .f = {{.name = "a", .nsym = 1, .score = 1.5},
           {.name = "b", .kind = TF_PENDING, .delay_ms = 10, .nsym = 2, .score = 1.0}},
     .score = 3.5, .symbols = 3, .sym0 = "a_0"},
    {.what = "strongest action wins, default reply",
     .f = {{.name = "a", .action = FILTER_ACTION_QUARANTINE},
           {.name = "b", .kind = TF_PENDING, .delay_ms = 5, .action = FILTER_ACTION_REJECT},
           {.name = "c", .action = FILTER_ACTION_TEMPFAIL, .code = 450}},
     .action = FILTER_ACTION_REJECT, .action_by = "b", .code = 554, .text = "Rejected by policy"},
    {.what = "the deciding filter's reply",
     .f = {{.name = "a", .action = FILTER_ACTION_HOLD},
           {.name = "b", .action = FILTER_ACTION_TEMPFAIL, .code = 450}},
     .action = FILTER_ACTION_TEMPFAIL, .action_by = "b", .code = 450, .text = "b says no"},
    {.what = "a reply code that does not fit the action gets the default",
     .f = {{.name = "a", .action = FILTER_ACTION_REJECT, .code = 450}},
     .action = FILTER_ACTION_REJECT, .action_by = "a", .code = 554},
    {.what = "disconnect default reply",
     .f = {{.name = "a", .action = FILTER_ACTION_DISCONNECT}},
     .action = FILTER_ACTION_DISCONNECT, .action_by = "a", .code = 421},
    {.what = "a tie goes to the first link",
     .f = {{.name = "a", .kind = TF_PENDING, .delay_ms = 20, .action = FILTER_ACTION_REJECT,
            .code = 550},
           {.name = "b", .action = FILTER_ACTION_REJECT}},
     .action = FILTER_ACTION_REJECT, .action_by = "a", .code = 550, .text = "a says no"},
    {.what = "accept beats reject",
     .f = {{.name = "a", .action = FILTER_ACTION_REJECT},
           {.name = "b", .kind = TF_PENDING, .delay_ms = 5, .action = FILTER_ACTION_ACCEPT}},
     .action = FILTER_ACTION_ACCEPT, .action_by = "b"},
    /* errors at once, each on_error; the failing filter's findings are dropped */
    {.what = "error, tempfail",
     .f = {{.name = "clamd", .kind = TF_ERROR, .nsym = 2, .score = 5,
            .on_error = FILTER_ON_ERROR_TEMPFAIL},
           {.name = "b", .nsym = 1, .score = 1}},
     .action = FILTER_ACTION_TEMPFAIL, .action_by = "clamd", .code = 451,
     .text = "clamd temporarily unavailable", .score = 1, .symbols = 1, .sym0 = "b_0"},
    {.what = "error, reject",
     .f = {{.name = "clamd", .kind = TF_ERROR, .on_error = FILTER_ON_ERROR_REJECT}},
     .action = FILTER_ACTION_REJECT, .action_by = "clamd", .code = 554},
    {.what = "error, accept",
     .f = {{.name = "clamd", .kind = TF_ERROR, .on_error = FILTER_ON_ERROR_ACCEPT},
           {.name = "b", .action = FILTER_ACTION_REJECT}},
     .action = FILTER_ACTION_ACCEPT, .action_by = "clamd"},
    {.what = "error, skip",
     .f = {{.name = "spamd", .kind = TF_ERROR, .nsym = 3, .score = 9,
            .action = FILTER_ACTION_REJECT, .on_error = FILTER_ON_ERROR_SKIP}},
     .symbols = 1, .sym0 = "SPAMD_ERROR", .sym0_text = "error"},
    {.what = "pending error, skip",
     .f = {{.name = "dnsbl-zen", .kind = TF_PENDING_ERROR, .delay_ms = 5,
            .on_error = FILTER_ON_ERROR_SKIP}},
     .symbols = 1, .sym0 = "DNSBL_ZEN_ERROR", .sym0_text = "error"},
    {.what = "unknown on_error fails closed",
     .f = {{.name = "x", .kind = TF_ERROR, .on_error = (enum filter_on_error)99}},
     .action = FILTER_ACTION_TEMPFAIL, .action_by = "x", .code = 451},
    /* timeouts, each on_error: cancelled once */
    {.what = "timeout, tempfail",
     .f = {{.name = "clamd", .kind = TF_HANG, .timeout_ms = T},
           {.name = "b", .kind = TF_PENDING, .delay_ms = 5, .nsym = 1, .score = 1}},
     .action = FILTER_ACTION_TEMPFAIL, .action_by = "clamd", .code = 451,
     .text = "clamd temporarily unavailable", .score = 1, .symbols = 1, .cancels = {1, 0}},
    {.what = "timeout, reject",
     .f = {{.name = "clamd", .kind = TF_HANG, .timeout_ms = T,
            .on_error = FILTER_ON_ERROR_REJECT}},
     .action = FILTER_ACTION_REJECT, .action_by = "clamd", .code = 554, .cancels = {1}},
    {.what = "timeout, accept",
     .f = {{.name = "clamd", .kind = TF_HANG, .timeout_ms = T,
            .on_error = FILTER_ON_ERROR_ACCEPT}},
     .action = FILTER_ACTION_ACCEPT, .action_by = "clamd", .cancels = {1}},
    {.what = "timeout, skip",
     .f = {{.name = "spamd", .kind = TF_HANG, .timeout_ms = T, .on_error = FILTER_ON_ERROR_SKIP},
           {.name = "b", .kind = TF_HANG, .timeout_ms = T + 10,
            .on_error = FILTER_ON_ERROR_SKIP}},
     .symbols = 2, .sym0 = "SPAMD_ERROR", .sym0_text = "timeout", .cancels = {1, 1}},
    {.what = "a slow filter past its timeout is cancelled",
     .f = {{.name = "slow", .kind = TF_PENDING, .delay_ms = 200, .nsym = 1, .score = 7,
            .timeout_ms = T, .on_error = FILTER_ON_ERROR_SKIP}},
     .symbols = 1, .sym0 = "SLOW_ERROR", .sym0_text = "timeout", .cancels = {1}},
    /* the symbol limit: symbols dropped, their score kept */
    {.what = "symbol limit",
     .f = {{.name = "a", .nsym = 100, .score = 0.5},
           {.name = "b", .kind = TF_PENDING, .delay_ms = 1, .nsym = 100, .score = 0.5},
           {.name = "c", .nsym = CHAIN_SYMBOLS_MAX + 5, .score = 0}},
     .score = 100, .symbols = CHAIN_SYMBOLS_MAX, .sym0 = "a_0"},
    {.what = "no filter hooks the stage",
     .f = {{.name = "a", .nsym = 1, .stages = 1u << FILTER_EOM}}},
};

static void check_row(const struct row *r, const struct env *env, const struct chain_result *res)
{
    if (r->action_by == NULL)
        assert_null(res->action_by);
    else
        assert_string_equal(res->action_by, r->action_by);
    assert_int_equal(res->action, r->action);
    assert_int_equal(res->reply.code, r->code);
    if (r->text != NULL)
        assert_string_equal(res->reply.text, r->text);
    assert_true(res->score > r->score - 1e-9 && res->score < r->score + 1e-9);
    assert_int_equal(res->symbol_count, r->symbols);
    if (r->sym0 != NULL)
        assert_string_equal(res->symbols[0].name, r->sym0);
    if (r->sym0_text != NULL)
        assert_string_equal(res->symbols[0].text, r->sym0_text);
    for (size_t i = 0; i < env->n; i++) {
        assert_int_equal(env->tf[i].cancels, r->cancels[i]);
        assert_null(env->tf[i].call);
    }
}

static void test_table(void **state)
{
    static struct waiter w;
    static struct env env;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        print_message("row %zu: %s\n", i, rows[i].what);
        env_build(&env, rows[i].f);
        env_run(&env, FILTER_CONNECT, &w);
        check_row(&rows[i], &env, &w.res);
        loop_run_for(env.base, 5); /* nothing late: no second callback, no late cancel */
        assert_int_equal(w.calls, 1);
        check_row(&rows[i], &env, &w.res);
        env_free(&env);
    }
}

/* ---- scenarios ---- */

/* Pending filters finish in either order; the result is the same, merged in
 * link order. */
static void test_completion_order(void **state)
{
    static const unsigned delays[][2] = {{5, 40}, {40, 5}};
    static struct waiter w;
    static struct env env;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        const struct tf_spec specs[] = {
            {.name = "a", .kind = TF_PENDING, .delay_ms = delays[i][0], .nsym = 1, .score = 1,
             .action = FILTER_ACTION_TEMPFAIL},
            {.name = "b", .kind = TF_PENDING, .delay_ms = delays[i][1], .nsym = 1, .score = 2,
             .action = FILTER_ACTION_TEMPFAIL},
            {.name = NULL}};

        env_build(&env, specs);
        env_run(&env, FILTER_MAIL, &w);
        assert_int_equal(env.order_n, 2);
        assert_int_equal(env.order[0], i == 0 ? 'a' : 'b');
        assert_int_equal(w.res.symbol_count, 2);
        assert_string_equal(w.res.symbols[0].name, "a_0");
        assert_string_equal(w.res.symbols[1].name, "b_0");
        assert_string_equal(w.res.action_by, "a");
        assert_true(w.res.score == 3);
        assert_ptr_equal(env.tf[0].seen_txn, &test_txn);
        assert_int_equal(env.tf[0].seen_stage, FILTER_MAIL);
        env_free(&env);
    }
}

/* Symbols accumulate over the stages of a transaction; the action is the
 * last stage's. */
static void test_stages_accumulate(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "a", .nsym = 1, .score = 1, .action = FILTER_ACTION_TEMPFAIL,
         .stages = 1u << FILTER_RCPT},
        {.name = "b", .kind = TF_PENDING, .delay_ms = 1, .nsym = 1, .score = 2},
        {.name = NULL}};
    static struct waiter w;
    static struct env env;

    (void)state;
    env_build(&env, specs);
    env_run(&env, FILTER_RCPT, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_TEMPFAIL);
    env_run(&env, FILTER_DATA, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_NONE);
    assert_null(w.res.action_by);
    assert_int_equal(w.res.reply.code, 0);
    assert_int_equal(w.res.symbol_count, 3);
    assert_true(w.res.score == 5);
    chain_session_reset(env.s);
    assert_int_equal(chain_session_result(env.s)->symbol_count, 0);
    env_run(&env, FILTER_DATA, &w);
    assert_int_equal(w.res.symbol_count, 1);
    assert_int_equal(env.tf[0].calls, 1);
    assert_int_equal(env.tf[1].calls, 3);
    env_free(&env);
}

/* An ACCEPT stops every later stage (through the event, no filter called),
 * and chain_session_reset keeps it. */
static void test_accept_sticks(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "allow", .kind = TF_PENDING, .delay_ms = 1, .nsym = 1,
         .action = FILTER_ACTION_ACCEPT, .stages = 1u << FILTER_CONNECT},
        {.name = "b", .nsym = 1, .score = 3, .action = FILTER_ACTION_REJECT},
        {.name = NULL}};
    static struct waiter w;
    static struct env env;

    (void)state;
    env_build(&env, specs);
    env_run(&env, FILTER_CONNECT, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_ACCEPT);
    assert_string_equal(w.res.action_by, "allow");
    for (int st = FILTER_HELO; st < FILTER_STAGES; st++) {
        env_run(&env, (enum filter_stage)st, &w);
        assert_int_equal(w.res.action, FILTER_ACTION_ACCEPT);
        assert_string_equal(w.res.action_by, "allow");
    }
    assert_int_equal(w.res.symbol_count, 2);
    /* a new transaction keeps what CONNECT found about the client */
    chain_session_reset(env.s);
    assert_int_equal(chain_session_result(env.s)->action, FILTER_ACTION_NONE);
    assert_int_equal(chain_session_result(env.s)->symbol_count, 2);
    assert_string_equal(chain_session_result(env.s)->symbols[0].name, "allow_0");
    env_run(&env, FILTER_MAIL, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_ACCEPT);
    assert_int_equal(w.res.symbol_count, 2);
    assert_int_equal(env.tf[0].calls, 1);
    assert_int_equal(env.tf[1].calls, 1);
    env_free(&env);
}

/* Header fields: kept in link order, the client's (CONNECT) across a
 * reset, a failed call's dropped, folded values allowed. */
static void test_headers(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "a", .header = true, .stages = (1u << FILTER_CONNECT) | (1u << FILTER_MAIL)},
        {.name = "b", .kind = TF_ERROR, .header = true, .on_error = FILTER_ON_ERROR_SKIP},
        {.name = "c", .kind = TF_PENDING, .delay_ms = 1, .header = true,
         .stages = 1u << FILTER_MAIL},
        {.name = NULL}};
    static struct waiter w;
    static struct env env;
    const struct chain_result *r;

    (void)state;
    env_build(&env, specs);
    env_run(&env, FILTER_CONNECT, &w);
    r = chain_session_result(env.s);
    assert_int_equal(r->header_count, 1);
    assert_string_equal(r->headers[0].name, "X-a");
    assert_string_equal(r->headers[0].value, filter_stage_name(FILTER_CONNECT));
    env_run(&env, FILTER_MAIL, &w);
    r = chain_session_result(env.s);
    assert_int_equal(r->header_count, 3);
    assert_string_equal(r->headers[1].name, "X-a");
    assert_string_equal(r->headers[2].name, "X-c");
    chain_session_reset(env.s);
    assert_int_equal(chain_session_result(env.s)->header_count, 1);
    env_free(&env);
}

/* Tarpitting: the answer waits for the longest delay asked; a failed
 * call's delay does not count; a run cancelled while it waits never calls
 * back. */
static void test_delay(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "slow", .tarpit_ms = 300},
        {.name = "slower_but_failed", .kind = TF_ERROR, .tarpit_ms = 3000,
         .on_error = FILTER_ON_ERROR_SKIP},
        {.name = "quick", .tarpit_ms = 50},
        {.name = NULL}};
    static struct waiter w;
    static struct env env;
    long start;

    (void)state;
    env_build(&env, specs);
    start = now_ms();
    env_run(&env, FILTER_MAIL, &w);
    assert_true(now_ms() - start >= 290);
    assert_true(now_ms() - start < 2500);
    /* cancelled while it waits: no callback, nothing left behind */
    memset(&w, 0, sizeof(w));
    struct chain_run *run = chain_run(env.s, FILTER_RCPT, &test_txn, waiter_done, &w);
    assert_non_null(run);
    loop_run_for(env.base, 100);
    chain_run_cancel(run);
    loop_run_for(env.base, 400);
    assert_int_equal(w.calls, 0);
    env_free(&env);
}

static const struct tf_spec cancel_specs[] = {
    {.name = "sync", .nsym = 1},
    {.name = "pending", .kind = TF_PENDING, .delay_ms = 10, .nsym = 1, .timeout_ms = 20},
    {.name = "hang", .kind = TF_HANG, .timeout_ms = 20},
    {.name = NULL}};

/* chain_run_cancel: no callback, every pending filter cancelled once, no
 * timer left behind. */
static void test_run_cancel(void **state)
{
    static struct waiter w;
    static struct env env;
    struct chain_run *run;

    (void)state;
    env_build(&env, cancel_specs);
    run = chain_run(env.s, FILTER_HELO, &test_txn, waiter_done, &w);
    assert_non_null(run);
    chain_run_cancel(run);
    loop_run_for(env.base, 50);
    assert_int_equal(w.calls, 0);
    assert_int_equal(env.tf[0].cancels, 0);
    assert_int_equal(env.tf[1].cancels, 1);
    assert_int_equal(env.tf[2].cancels, 1);
    assert_int_equal(env.tf[1].completions, 0);
    chain_run_cancel(NULL);
    /* the session is usable again */
    env_run(&env, FILTER_HELO, &w);
    assert_int_equal(w.res.symbol_count, 2);
    assert_string_equal(w.res.action_by, "hang");
    env_free(&env);
}

/* A run whose filters are all done but whose delivery is still queued is
 * cancelled as well; chain_session_free cancels a pending run, then calls
 * every filter's session_end. */
static void test_cancel_queued_and_free(void **state)
{
    static const struct tf_spec sync_only[] = {{.name = "sync", .nsym = 1}, {.name = NULL}};
    static struct waiter w;
    static struct env env;

    (void)state;
    env_build(&env, sync_only);
    chain_run_cancel(chain_run(env.s, FILTER_HELO, &test_txn, waiter_done, &w));
    loop_run_for(env.base, 5);
    assert_int_equal(w.calls, 0);
    assert_int_equal(chain_session_result(env.s)->symbol_count, 0);
    env_free(&env);

    env_build(&env, cancel_specs);
    assert_non_null(chain_run(env.s, FILTER_HELO, &test_txn, waiter_done, &w));
    chain_session_free(&env.s);
    assert_int_equal(env.tf[1].cancels, 1);
    assert_int_equal(env.tf[2].cancels, 1);
    /* every filter is told the session ended, once, with its txn, after
     * the cancels */
    for (size_t i = 0; i < env.n; i++) {
        assert_int_equal(env.tf[i].ends, 1);
        assert_ptr_equal(env.tf[i].end_txn, &test_txn);
        assert_false(env.tf[i].pending_at_end);
    }
    loop_run_for(env.base, 50);
    assert_int_equal(w.calls, 0);
    env_free(&env);

    /* a session in which no stage ran: nothing to tell */
    env_build(&env, sync_only);
    env_free(&env);
    assert_int_equal(env.tf[0].ends, 0);
}

static void test_stats(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "quiet"},
        {.name = "finds", .kind = TF_PENDING, .delay_ms = 10, .nsym = 1},
        {.name = "fails", .kind = TF_ERROR, .on_error = FILTER_ON_ERROR_SKIP},
        {.name = "hangs", .kind = TF_HANG, .timeout_ms = 20, .on_error = FILTER_ON_ERROR_SKIP,
         .stages = 1u << FILTER_EOM}};
    static struct waiter w;
    static struct env env;
    struct chain_filter_stats st[MAX_FILTERS];

    (void)state;
    env_build(&env, specs);
    env_run(&env, FILTER_RCPT, &w);
    env_run(&env, FILTER_RCPT, &w);
    env_run(&env, FILTER_EOM, &w);
    assert_int_equal(chain_stats(env.chain, st, 2), 2);
    assert_int_equal(chain_stats(env.chain, st, MAX_FILTERS), 4);
    assert_string_equal(st[0].name, "quiet");
    assert_int_equal(st[0].calls, 3);
    assert_int_equal(st[0].hits, 0);
    assert_int_equal(st[1].calls, 3);
    assert_int_equal(st[1].hits, 3);
    assert_true(st[1].usec >= 3 * 5000); /* libevent arms timers from its cached time */
    assert_int_equal(st[2].errors, 3);
    assert_int_equal(st[2].hits + st[2].timeouts, 0);
    assert_int_equal(st[3].calls, 1);
    assert_int_equal(st[3].timeouts, 1);
    assert_int_equal(st[3].errors, 0);
    assert_true(st[3].usec >= 10000);
    env_free(&env);
}

static void test_chain_edges(void **state)
{
    struct event_base *base = event_base_new();
    struct filter_ops nameless = {.name = NULL};
    struct chain_link bad = {.ops = &nameless};
    struct chain *chain = chain_new(base, &bad, 1);
    struct chain_session *s;
    struct waiter w = {.calls = 0};

    (void)state;
    assert_null(chain);
    chain_free(&chain);
    chain = chain_new(base, NULL, 0);
    assert_non_null(chain);
    s = chain_session_new(chain);
    assert_non_null(chain_run(s, FILTER_CONNECT, &test_txn, waiter_done, &w));
    assert_int_equal(w.calls, 0);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.res.action, FILTER_ACTION_NONE);
    chain_session_free(&s);
    chain_session_free(&s);
    chain_free(&chain);
    event_base_free(base);
}

/* Runs the late step and the loop until the result arrives. */
static void env_run_late(struct env *env, struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    w->in_run = true;
    assert_non_null(chain_run_late(env->s, &test_txn, waiter_done, w));
    w->in_run = false;
    assert_int_equal(w->calls, 0);
    loop_run_until(env->base, waiter_called, w, RUN_MAX_MS);
    assert_int_equal(w->calls, 1);
    assert_false(w->called_in_run);
}

/* The late step: only the links that have one, also after an ACCEPT (which
 * it leaves as it was); its symbols join the transaction's, its fields go
 * to late_headers in link order (freed by reset), message edits are
 * refused and a tarpit is ignored. */
static void test_late(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "allow", .action = FILTER_ACTION_ACCEPT, .stages = 1u << FILTER_CONNECT},
        {.name = "signer", .kind = TF_PENDING, .delay_ms = 5, .nsym = 1, .header = true,
         .tarpit_ms = 3000, .late = true, .stages = LATE_ONLY},
        {.name = "second", .nsym = 1, .score = 1, .header = true, .late = true,
         .stages = 1u << FILTER_EOM},
        {.name = NULL}};
    static struct waiter w;
    static struct env env;
    long start;

    (void)state;
    env_build(&env, specs);
    assert_true(chain_has_late(env.chain));
    env_run(&env, FILTER_CONNECT, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_ACCEPT);
    env_run(&env, FILTER_EOM, &w); /* allow-listed: nobody called */
    assert_int_equal(env.tf[2].calls, 0);
    start = now_ms();
    env_run_late(&env, &w);
    assert_true(now_ms() - start < 2000); /* no tarpit */
    assert_int_equal(env.tf[0].late_calls, 0);
    assert_int_equal(env.tf[1].late_calls, 1);
    assert_int_equal(env.tf[2].late_calls, 1);
    assert_true(env.tf[1].seen_late);
    assert_int_equal(env.tf[1].seen_stage, FILTER_EOM);
    assert_int_equal(env.tf[1].edit_rc, -1);
    assert_int_equal(w.res.action, FILTER_ACTION_NONE);
    assert_int_equal(w.res.symbol_count, 2);
    assert_string_equal(w.res.symbols[0].name, "signer_0");
    assert_string_equal(w.res.symbols[1].name, "second_0");
    assert_true(w.res.score == 1);
    assert_null(w.res.edits);
    assert_int_equal(w.res.header_count, 0);
    assert_int_equal(w.res.late_header_count, 2);
    assert_string_equal(w.res.late_headers[0].name, "X-signer");
    assert_string_equal(w.res.late_headers[1].name, "X-second");
    /* the ACCEPT still holds for the session's stages */
    env_run(&env, FILTER_DATA, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_ACCEPT);
    chain_session_reset(env.s);
    assert_int_equal(chain_session_result(env.s)->late_header_count, 0);
    env_free(&env);
}

/* A late step that fails or times out: its link's on_error, findings
 * dropped, a hanging one cancelled; a chain without one has none. */
static void test_late_errors(void **state)
{
    const struct tf_spec specs[] = {
        {.name = "ok", .nsym = 1, .header = true, .late = true, .stages = LATE_ONLY},
        {.name = "broken", .kind = TF_ERROR, .nsym = 1, .header = true, .late = true,
         .stages = LATE_ONLY, .on_error = FILTER_ON_ERROR_TEMPFAIL},
        {.name = NULL}};
    const struct tf_spec hang[] = {
        {.name = "hang", .kind = TF_HANG, .timeout_ms = T, .late = true, .stages = LATE_ONLY,
         .on_error = FILTER_ON_ERROR_REJECT},
        {.name = NULL}};
    const struct tf_spec skip[] = {
        {.name = "dkim", .kind = TF_PENDING_ERROR, .delay_ms = 1, .late = true,
         .stages = LATE_ONLY, .on_error = FILTER_ON_ERROR_SKIP},
        {.name = NULL}};
    const struct tf_spec none[] = {{.name = "a", .nsym = 1}, {.name = NULL}};
    static struct waiter w;
    static struct env env;

    (void)state;
    env_build(&env, specs);
    env_run_late(&env, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_TEMPFAIL);
    assert_string_equal(w.res.action_by, "broken");
    assert_int_equal(w.res.reply.code, 451);
    assert_int_equal(w.res.late_header_count, 1);
    assert_string_equal(w.res.late_headers[0].name, "X-ok");
    env_free(&env);

    env_build(&env, hang);
    env_run_late(&env, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_REJECT);
    assert_int_equal(w.res.reply.code, 554);
    assert_int_equal(env.tf[0].cancels, 1);
    env_free(&env);

    env_build(&env, skip);
    env_run_late(&env, &w);
    assert_int_equal(w.res.action, FILTER_ACTION_NONE);
    assert_int_equal(w.res.symbol_count, 1);
    assert_string_equal(w.res.symbols[0].name, "DKIM_ERROR");
    env_free(&env);

    env_build(&env, none);
    assert_false(chain_has_late(env.chain));
    env_run_late(&env, &w); /* nothing to call: the result all the same */
    assert_int_equal(env.tf[0].calls, 0);
    assert_int_equal(w.res.action, FILTER_ACTION_NONE);
    /* cancelled: no callback */
    memset(&w, 0, sizeof(w));
    chain_run_cancel(chain_run_late(env.s, &test_txn, waiter_done, &w));
    loop_run_for(env.base, 5);
    assert_int_equal(w.calls, 0);
    env_free(&env);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(filter_action_name(FILTER_ACTION_NONE), "none");
    assert_string_equal(filter_action_name(FILTER_ACTION_QUARANTINE), "quarantine");
    assert_string_equal(filter_action_name(FILTER_ACTION_ACCEPT), "accept");
    assert_string_equal(filter_action_name((enum filter_action)42), "unknown");
    assert_string_equal(filter_stage_name(FILTER_CONNECT), "connect");
    assert_string_equal(filter_stage_name(FILTER_EOM), "eom");
    assert_string_equal(filter_stage_name(FILTER_STAGES), "unknown");
    for (int a = FILTER_ACTION_NONE; a < FILTER_ACTION_ACCEPT; a++) {
        assert_true(filter_action_stronger(a + 1, a));
        assert_false(filter_action_stronger(a, a + 1));
        assert_false(filter_action_stronger(a, a));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_completion_order),
        cmocka_unit_test(test_stages_accumulate),
        cmocka_unit_test(test_accept_sticks),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_run_cancel),
        cmocka_unit_test(test_cancel_queued_and_free),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_chain_edges),
        cmocka_unit_test(test_late),
        cmocka_unit_test(test_late_errors),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
