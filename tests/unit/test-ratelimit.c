/*
 * test-ratelimit — the ratelimit filter through the chain on a real
 * event_base, one suite run against both state back ends: LMDB in a temp
 * dir and a real redis-server this test starts on a free 127.0.0.1 port.
 * Each filter is loaded from config text through postern_config_load (so
 * the loader's checks run) and made with its module's create.
 *
 * Tables: each key kind (client_ip, client_net with IPv4 and IPv6,
 * sender, sender_domain, auth_user, recipient; absent keys not counted;
 * case folded) and each count kind (connections at CONNECT, recipients at
 * RCPT, messages at DATA, nothing counted at other stages). Scenarios:
 * burst then refill; two buckets on one key (the tighter wins, and a refusal
 * costs nothing in the longer bucket); direction; hold outbound carried to
 * the end of message through policy_decide, tempfail inbound; exempt
 * networks; a call cancelled while its take is in flight. Faults (Redis):
 * stopped (skip, RATELIMIT_ERROR, at once) and hung with SIGSTOP (done
 * within the state timeout, or the filter's own shorter timeout). Config:
 * derived names and defaults, and errors naming the line.
 *
 * Without redis-server the Redis half is skipped (exit 77 if the rest
 * passed). Nothing leaves 127.0.0.1.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/ratelimit.h"
#include "gateway/server-config.h"
#include "lib/kv.h"
#include "policy/policy.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/kv-test.h"
#include "tests/unit/loop-test.h"

#define KV_TIMEOUT_MS 300
#define WAIT_MAX_MS 5000

struct env {
    struct kv_test kt; /* first, for kv_test_group_setup */
    struct kv_test_store st;
    unsigned serial; /* of the ids */
    /* the filter under test */
    struct postern_config *cfg;
    struct filter_test ft;
    char id[32];
};

/* ---- the back ends ---- */

static int group_setup_lmdb(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_LMDB, "test-ratelimit");
}

static int group_setup_redis(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_REDIS, "test-ratelimit");
}

static int test_setup(void **state)
{
    struct env *e = *state;
    char err[256];

    if (kv_test_store_open(&e->kt, &e->st, "state", KV_TIMEOUT_MS, err, sizeof(err)) < 0) {
        fprintf(stderr, "kv_new: %s\n", err);
        return -1;
    }
    return 0;
}

static void filter_unload(struct env *e)
{
    filter_test_close(&e->ft);
    postern_config_free(&e->cfg);
}

static int test_teardown(void **state)
{
    struct env *e = *state;

    filter_unload(e);
    kv_test_store_close(&e->st);
    return 0;
}

/* ---- config ---- */

/* Loads `filters = ( { name = "ratelimit"; id = <fresh>; <body> } );` and
 * makes the instance and a one-link chain on the env's loop and store. */
static const struct ratelimit_settings *filter_load(struct env *e, const char *body)
{
    char text[4096];
    struct cfg_errors errs = {0};
    const struct ratelimit_settings *s;
    struct filter_env fenv = {.base = e->st.base, .kv = e->st.kv, .hostname = "mx.test"};

    filter_unload(e);
    snprintf(e->id, sizeof(e->id), "rl%u", ++e->serial);
    snprintf(text, sizeof(text), "filters = ( { name = \"ratelimit\"; id = \"%s\";\n%s\n} );",
             e->id, body);
    e->cfg = config_test_load(text, &errs);
    if (e->cfg == NULL)
        fail_msg("config: %s", errs.count > 0 ? errs.msgs[0] : "?");
    cfg_errors_clear(&errs);
    s = e->cfg->filtering.filters[0].settings;
    filter_test_open(&e->ft, &ratelimit_module, &fenv, s);
    return s;
}

/* ---- running stages ---- */

/* One client's transaction as the test writes it. */
struct tx {
    const char *client; /* default 127.0.0.2 */
    bool out;           /* outbound */
    const char *auth;   /* authenticated as */
    const char *sender; /* NULL = "" at MAIL and later */
    const char *rcpt;
};

static void fill_txn(const struct tx *t, enum filter_stage stage, struct filter_txn *x)
{
    const char *client = t->client != NULL ? t->client : "127.0.0.2";

    memset(x, 0, sizeof(*x));
    assert_int_equal(netaddr_parse(client, &x->client), 0);
    x->listener = "mx";
    x->client_addr = client;
    x->client_name = "unknown";
    x->direction = t->out ? FILTER_OUTBOUND : FILTER_INBOUND;
    x->authenticated = t->auth != NULL;
    x->auth_user = t->auth;
    x->content_fd = -1;
    if (stage >= FILTER_MAIL) {
        x->queue_id = "Q1";
        x->sender = t->sender != NULL ? t->sender : "";
    }
    if (stage == FILTER_RCPT)
        x->rcpt = t->rcpt != NULL ? t->rcpt : "rcpt@example.test";
}

/* Runs one stage of session s and the loop until its result (bounded). */
static struct chain_result run_stage(struct env *e, struct chain_session *s,
                                     enum filter_stage stage, const struct tx *t)
{
    static struct filter_test_result w;
    struct filter_txn x;

    fill_txn(t, stage, &x);
    filter_test_run(e->st.base, s, stage, &x, &w, WAIT_MAX_MS);
    return w.res;
}

/* One stage in a session of its own. */
static struct chain_result run_one(struct env *e, enum filter_stage stage, const struct tx *t)
{
    struct chain_session *s = chain_session_new(e->ft.chain);
    struct chain_result r;

    assert_non_null(s);
    r = run_stage(e, s, stage, t);
    chain_session_free(&s);
    return r;
}

/* ---- the tables: steps per row, in order, on one filter ---- */

enum expect { PASS, TEMPFAIL, HOLD };

struct step {
    enum filter_stage stage;
    struct tx tx;
    enum expect expect;
};

#define MAX_STEPS 12

struct row {
    const char *what;
    const char *config;
    const char *symbol; /* of a refusal */
    const char *reply;  /* of a refusal, when not NULL */
    struct step steps[MAX_STEPS];
};

static void check_step(const struct row *row, size_t i, const struct chain_result *r)
{
    const struct step *st = &row->steps[i];
    enum filter_action want = st->expect == TEMPFAIL ? FILTER_ACTION_TEMPFAIL
                              : st->expect == HOLD   ? FILTER_ACTION_HOLD
                                                     : FILTER_ACTION_NONE;

    if (r->action != want)
        fail_msg("%s, step %zu: action %s, want %s", row->what, i, filter_action_name(r->action),
                 filter_action_name(want));
    if (st->expect == PASS) {
        assert_int_equal(r->symbol_count, 0);
        return;
    }
    assert_int_equal(r->symbol_count, 1);
    assert_string_equal(r->symbols[0].name, row->symbol);
    assert_true(r->symbols[0].score == 0);
    if (st->expect == TEMPFAIL) {
        assert_int_equal(r->reply.code, 450);
        assert_string_equal(r->reply.enhanced, "4.7.1");
        if (row->reply != NULL)
            assert_string_equal(r->reply.text, row->reply);
    }
}

static void run_rows(struct env *e, const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        print_message("%s\n", rows[i].what);
        filter_load(e, rows[i].config);
        for (size_t j = 0; j < MAX_STEPS && rows[i].steps[j].stage != FILTER_STAGES; j++) {
            struct chain_result r = run_one(e, rows[i].steps[j].stage, &rows[i].steps[j].tx);
            check_step(&rows[i], j, &r);
        }
    }
}

#define END                                                                                        \
    {                                                                                              \
        .stage = FILTER_STAGES                                                                     \
    }
#define D FILTER_DATA
#define R FILTER_RCPT
#define C FILTER_CONNECT
#define LIM(k, c, n) "limits = ( { key = \"" k "\"; count = \"" c "\"; limit = " #n "; } );"

static const struct row key_rows[] = {
    {.what = "client_ip: per address",
     .config = LIM("client_ip", "messages", 2),
     .symbol = "RATELIMIT_CLIENT_IP_MESSAGES_1H",
     .reply = "Rate limit exceeded (2 per 1h for client_ip), try again later",
     .steps = {{D, {.client = "127.0.0.2"}, PASS},
               {D, {.client = "127.0.0.2"}, PASS},
               {D, {.client = "127.0.0.2"}, TEMPFAIL},
               {D, {.client = "127.0.0.3"}, PASS},
               {D, {.client = "2001:db8::1"}, PASS},
               {D, {.client = "2001:db8::2"}, PASS},
               {D, {.client = "2001:db8::1"}, PASS},
               {D, {.client = "2001:db8::1"}, TEMPFAIL},
               END}},
    {.what = "client_net: /24 and /64 by default",
     .config = LIM("client_net", "messages", 2),
     .symbol = "RATELIMIT_CLIENT_NET_MESSAGES_1H",
     .steps = {{D, {.client = "127.0.0.2"}, PASS},
               {D, {.client = "127.0.0.3"}, PASS},
               {D, {.client = "127.0.0.200"}, TEMPFAIL},
               {D, {.client = "127.0.1.2"}, PASS},
               {D, {.client = "2001:db8::1"}, PASS},
               {D, {.client = "2001:db8::ff:2"}, PASS},
               {D, {.client = "2001:db8::3"}, TEMPFAIL},
               {D, {.client = "2001:db8:0:1::1"}, PASS},
               END}},
    {.what = "client_net: configured prefixes",
     .config = "ipv4_prefix = 16; ipv6_prefix = 48;" LIM("client_net", "messages", 1),
     .symbol = "RATELIMIT_CLIENT_NET_MESSAGES_1H",
     .steps = {{D, {.client = "127.0.0.2"}, PASS},
               {D, {.client = "127.0.9.3"}, TEMPFAIL},
               {D, {.client = "127.1.0.2"}, PASS},
               {D, {.client = "2001:db8::1"}, PASS},
               {D, {.client = "2001:db8:0:7::1"}, TEMPFAIL},
               END}},
    {.what = "sender: case folded, null sender not counted",
     .config = LIM("sender", "messages", 2),
     .symbol = "RATELIMIT_SENDER_MESSAGES_1H",
     .reply = "Rate limit exceeded (2 per 1h for sender), try again later",
     .steps = {{D, {.sender = "A@Example.org"}, PASS},
               {D, {.sender = "a@example.org"}, PASS},
               {D, {.sender = "a@EXAMPLE.ORG", .client = "127.0.0.9"}, TEMPFAIL},
               {D, {.sender = "b@example.org"}, PASS},
               {D, {.sender = ""}, PASS},
               {D, {.sender = ""}, PASS},
               {D, {.sender = ""}, PASS},
               END}},
    {.what = "sender_domain",
     .config = LIM("sender_domain", "messages", 2),
     .symbol = "RATELIMIT_SENDER_DOMAIN_MESSAGES_1H",
     .steps = {{D, {.sender = "a@x.example"}, PASS},
               {D, {.sender = "b@X.Example"}, PASS},
               {D, {.sender = "c@x.example"}, TEMPFAIL},
               {D, {.sender = "a@y.example"}, PASS},
               {D, {.sender = ""}, PASS},
               END}},
    {.what = "auth_user: only authenticated clients",
     .config = LIM("auth_user", "messages", 2),
     .symbol = "RATELIMIT_AUTH_USER_MESSAGES_1H",
     .steps = {{D, {.sender = "a@x.example"}, PASS},
               {D, {.sender = "a@x.example"}, PASS},
               {D, {.sender = "a@x.example"}, PASS},
               {D, {.auth = "u1", .out = true}, PASS},
               {D, {.auth = "U1", .out = true}, PASS},
               {D, {.auth = "u1", .out = true}, TEMPFAIL},
               {D, {.auth = "u2", .out = true}, PASS},
               END}},
    {.what = "recipient: messages counted at RCPT, per recipient",
     .config = LIM("recipient", "messages", 2),
     .symbol = "RATELIMIT_RECIPIENT_MESSAGES_1H",
     .steps = {{R, {.rcpt = "r@x.example"}, PASS},
               {R, {.rcpt = "R@x.example"}, PASS},
               {D, {.rcpt = "r@x.example"}, PASS},
               {R, {.rcpt = "r@x.example"}, TEMPFAIL},
               {R, {.rcpt = "s@x.example"}, PASS},
               END}},
};

static const struct row count_rows[] = {
    {.what = "connections at CONNECT only",
     .config = LIM("client_ip", "connections", 2),
     .symbol = "RATELIMIT_CLIENT_IP_CONNECTIONS_1H",
     .steps = {{C, {0}, PASS},
               {D, {0}, PASS},
               {R, {0}, PASS},
               {D, {0}, PASS},
               {C, {0}, PASS},
               {C, {0}, TEMPFAIL},
               {C, {.client = "127.0.0.3"}, PASS},
               END}},
    {.what = "connections by client_net",
     .config = LIM("client_net", "connections", 1),
     .symbol = "RATELIMIT_CLIENT_NET_CONNECTIONS_1H",
     .steps = {{C, {.client = "127.0.0.2"}, PASS}, {C, {.client = "127.0.0.3"}, TEMPFAIL}, END}},
    {.what = "recipients at RCPT, one each",
     .config = LIM("sender", "recipients", 3),
     .symbol = "RATELIMIT_SENDER_RECIPIENTS_1H",
     .steps = {{R, {.sender = "s@x.example", .rcpt = "a@y"}, PASS},
               {D, {.sender = "s@x.example"}, PASS},
               {R, {.sender = "s@x.example", .rcpt = "b@y"}, PASS},
               {C, {.sender = "s@x.example"}, PASS},
               {R, {.sender = "s@x.example", .rcpt = "c@y"}, PASS},
               {R, {.sender = "s@x.example", .rcpt = "d@y"}, TEMPFAIL},
               {D, {.sender = "s@x.example"}, PASS},
               END}},
    {.what = "messages at DATA only",
     .config = LIM("client_ip", "messages", 1),
     .symbol = "RATELIMIT_CLIENT_IP_MESSAGES_1H",
     .steps = {{C, {0}, PASS},
               {R, {0}, PASS},
               {R, {0}, PASS},
               {C, {0}, PASS},
               {D, {0}, PASS},
               {R, {0}, PASS},
               {D, {0}, TEMPFAIL},
               END}},
    {.what = "the reply text from the config",
     .config = "reply = \"Slow down\";" LIM("client_ip", "messages", 1),
     .symbol = "RATELIMIT_CLIENT_IP_MESSAGES_1H",
     .reply = "Slow down",
     .steps = {{D, {0}, PASS}, {D, {0}, TEMPFAIL}, END}},
};

static void test_key_kinds(void **state)
{
    run_rows(*state, key_rows, sizeof(key_rows) / sizeof(key_rows[0]));
}

static void test_count_kinds(void **state)
{
    run_rows(*state, count_rows, sizeof(count_rows) / sizeof(count_rows[0]));
}

static const struct row scenario_rows[] = {
    {.what = "direction outbound: inbound not counted",
     .config = "limits = ( { key = \"client_ip\"; limit = 1; direction = \"outbound\"; } );",
     .symbol = "RATELIMIT_CLIENT_IP_MESSAGES_1H",
     .steps = {{D, {0}, PASS},
               {D, {0}, PASS},
               {D, {.out = true}, PASS},
               {D, {.out = true}, TEMPFAIL},
               {D, {0}, PASS},
               END}},
    {.what = "direction inbound: outbound not counted",
     .config = "limits = ( { key = \"client_ip\"; limit = 1; direction = \"inbound\"; } );",
     .symbol = "RATELIMIT_CLIENT_IP_MESSAGES_1H",
     .steps = {{D, {.out = true}, PASS},
               {D, {.out = true}, PASS},
               {D, {0}, PASS},
               {D, {0}, TEMPFAIL},
               {D, {.out = true}, PASS},
               END}},
    {.what = "exempt networks never counted",
     .config = "exempt_networks = [ \"127.0.0.0/29\", \"2001:db8::/64\" ];" LIM("client_net",
                                                                                "messages", 1),
     .symbol = "RATELIMIT_CLIENT_NET_MESSAGES_1H",
     .steps = {{D, {.client = "127.0.0.2"}, PASS},
               {D, {.client = "127.0.0.3"}, PASS},
               {D, {.client = "127.0.0.2"}, PASS},
               {D, {.client = "2001:db8::1"}, PASS},
               {D, {.client = "2001:db8::1"}, PASS},
               {D, {.client = "127.0.0.9"}, PASS},
               {D, {.client = "127.0.0.10"}, TEMPFAIL},
               {D, {.client = "127.0.0.1"}, PASS},
               END}},
    {.what = "hold: outbound held (at DATA), inbound of direction any tempfailed",
     .config = "limits = ( { key = \"sender_domain\"; limit = 1; action = \"hold\"; } );",
     .symbol = "RATELIMIT_SENDER_DOMAIN_MESSAGES_1H",
     .steps = {{D, {.sender = "a@x.example", .out = true}, PASS},
               {D, {.sender = "a@x.example", .out = true, .auth = "u"}, HOLD},
               {D, {.sender = "b@x.example", .out = true}, HOLD},
               {D, {.sender = "c@x.example"}, TEMPFAIL},
               END}},
    {.what = "named bucket",
     .config = "limits = ( { key = \"client_ip\"; limit = 1; name = \"per-ip burst\"; } );",
     .symbol = "RATELIMIT_PER_IP_BURST",
     .steps = {{D, {0}, PASS}, {D, {0}, TEMPFAIL}, END}},
};

static void test_scenario_rows(void **state)
{
    run_rows(*state, scenario_rows, sizeof(scenario_rows) / sizeof(scenario_rows[0]));
}

/* ---- scenarios ---- */

static void on_kv(void *ctx, const struct kv_result *res)
{
    struct kv_result *out = ctx;

    *out = *res;
    out->value = NULL;
}

static bool answered(const void *ctx)
{
    return ((const struct kv_result *)ctx)->status != KV_CANCELLED;
}

/* Tokens left in a bucket: a take of cost 0 with the bucket's parameters. */
static double bucket_tokens(struct env *e, const char *symbol, const char *value, double cap,
                            double rate)
{
    char key[RATELIMIT_KEY_MAX];
    struct kv_result got = {.status = KV_CANCELLED, .tokens = -1};

    ratelimit_bucket_key(e->id, symbol, value, key, sizeof(key));
    assert_non_null(kv_take(e->st.kv, key, cap, rate, 0, on_kv, &got));
    loop_run_until(e->st.base, answered, &got, WAIT_MAX_MS);
    assert_int_equal(got.status, KV_OK);
    return got.tokens;
}

static void test_burst_refill(void **state)
{
    struct env *e = *state;
    const struct tx t = {.client = "127.0.0.5"};

    filter_load(e, "limits = ( { key = \"client_ip\"; limit = 5; per = \"1s\"; burst = 3; } );");
    for (int i = 0; i < 3; i++)
        assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    struct chain_result r = run_one(e, D, &t);
    assert_int_equal(r.action, FILTER_ACTION_TEMPFAIL);
    assert_string_equal(r.symbols[0].name, "RATELIMIT_CLIENT_IP_MESSAGES_1S");
    assert_string_equal(r.symbols[0].text, "5 per 1s for client_ip 127.0.0.5");
    assert_string_equal(r.reply.text,
                        "Rate limit exceeded (5 per 1s for client_ip), try again later");
    loop_run_for(e->st.base, 450); /* 5 per second: at least 2.25 tokens back */
    for (int i = 0; i < 2; i++)
        assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    /* a full bucket holds burst, not more, after a long quiet time */
    loop_run_for(e->st.base, 1100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_TEMPFAIL);
}

static void test_several_buckets(void **state)
{
    struct env *e = *state;
    const struct tx t = {.sender = "bulk@x.example"};
    struct chain_result r;
    double left;

    /* the minute is tighter: refused there; the hour's budget is not spent */
    filter_load(e, "limits = ( { key = \"sender\"; limit = 5; per = \"1h\"; },\n"
                   "  { key = \"sender\"; limit = 2; per = \"1m\"; } );");
    for (int i = 0; i < 2; i++)
        assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    for (int i = 0; i < 3; i++) {
        r = run_one(e, D, &t);
        assert_int_equal(r.action, FILTER_ACTION_TEMPFAIL);
        assert_int_equal(r.symbol_count, 1);
        assert_string_equal(r.symbols[0].name, "RATELIMIT_SENDER_MESSAGES_1M");
        assert_string_equal(r.reply.text,
                            "Rate limit exceeded (2 per 1m for sender), try again later");
    }
    left = bucket_tokens(e, "RATELIMIT_SENDER_MESSAGES_1H", "bulk@x.example", 5, 5.0 / 3600);
    assert_true(left >= 3 && left < 3.1);

    /* the hour is tighter: refused there */
    filter_load(e, "limits = ( { key = \"sender\"; limit = 5; per = \"1m\"; },\n"
                   "  { key = \"sender\"; limit = 2; per = \"1h\"; } );");
    for (int i = 0; i < 2; i++)
        assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    r = run_one(e, D, &t);
    assert_int_equal(r.action, FILTER_ACTION_TEMPFAIL);
    assert_string_equal(r.symbols[0].name, "RATELIMIT_SENDER_MESSAGES_1H");
    /* the minute's token of that refused message stays taken (cheap, by the order) */
    left = bucket_tokens(e, "RATELIMIT_SENDER_MESSAGES_1M", "bulk@x.example", 5, 5.0 / 60);
    assert_true(left >= 2 && left < 2.5);

    /* different keys on one filter: each its own bucket */
    filter_load(e, "limits = ( { key = \"sender\"; limit = 3; },\n"
                   "  { key = \"client_ip\"; limit = 1; } );");
    assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    r = run_one(e, D, &t);
    assert_string_equal(r.symbols[0].name, "RATELIMIT_CLIENT_IP_MESSAGES_1H");
    struct tx other = {.sender = "bulk@x.example", .client = "127.0.0.3"};
    assert_int_equal(run_one(e, D, &other).action, FILTER_ACTION_NONE);
    r = run_one(e, D, &(struct tx){.sender = "bulk@x.example", .client = "127.0.0.4"});
    assert_string_equal(r.symbols[0].name, "RATELIMIT_SENDER_MESSAGES_1H");
}

/* HOLD asked at RCPT or DATA is carried to the end of the message: the
 * recipient and DATA go on, the message is held. */
static void test_hold_to_end(void **state)
{
    struct env *e = *state;
    const struct tx t = {.out = true, .auth = "user@example.test", .sender = "user@example.test"};
    struct policy_settings pol;
    struct policy_decision d;
    struct chain_session *s;
    struct chain_result r;

    memset(&pol, 0, sizeof(pol));
    filter_load(e, "limits = ( { key = \"auth_user\"; limit = 1; action = \"hold\";\n"
                   "  direction = \"outbound\"; },\n"
                   "  { key = \"auth_user\"; count = \"recipients\"; limit = 2; action = \"hold\";"
                   " direction = \"outbound\"; } );");
    for (int msg = 0; msg < 3; msg++) {
        s = chain_session_new(e->ft.chain);
        assert_non_null(s);
        chain_session_reset(s);
        r = run_stage(e, s, R, &t);
        policy_decide(&pol, FILTER_OUTBOUND, false, &r, &d);
        assert_int_equal(d.action, FILTER_ACTION_NONE); /* the recipient is accepted */
        r = run_stage(e, s, D, &t);
        policy_decide(&pol, FILTER_OUTBOUND, false, &r, &d);
        assert_int_equal(d.action, FILTER_ACTION_NONE); /* 354 */
        r = run_stage(e, s, FILTER_EOM, &t);
        policy_decide(&pol, FILTER_OUTBOUND, true, &r, &d);
        /* message 1: within both; 2: over the messages bucket; 3: over both */
        assert_int_equal(d.action, msg == 0 ? FILTER_ACTION_NONE : FILTER_ACTION_HOLD);
        assert_int_equal(r.symbol_count, (size_t)msg);
        if (msg == 1)
            assert_string_equal(r.symbols[0].name, "RATELIMIT_AUTH_USER_MESSAGES_1H");
        if (msg == 2) {
            assert_string_equal(r.symbols[0].name, "RATELIMIT_AUTH_USER_RECIPIENTS_1H");
            assert_string_equal(r.symbols[1].name, "RATELIMIT_AUTH_USER_MESSAGES_1H");
        }
        chain_session_free(&s);
    }
}

/* A hold bucket over its limit does not end the stage: a tempfail bucket
 * after it still counts and decides. */
static void test_hold_then_tempfail(void **state)
{
    struct env *e = *state;
    const struct tx t = {.out = true, .sender = "s@x.example"};
    struct chain_result r;

    filter_load(e, "limits = ( { key = \"sender\"; limit = 1; per = \"1m\"; action = \"hold\"; },\n"
                   "  { key = \"client_ip\"; limit = 2; per = \"1h\"; } );");
    assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    r = run_one(e, D, &t);
    assert_int_equal(r.action, FILTER_ACTION_HOLD);
    r = run_one(e, D, &t);
    assert_int_equal(r.action, FILTER_ACTION_TEMPFAIL);
    assert_int_equal(r.symbol_count, 2);
    assert_string_equal(r.symbols[0].name, "RATELIMIT_SENDER_MESSAGES_1M");
    assert_string_equal(r.symbols[1].name, "RATELIMIT_CLIENT_IP_MESSAGES_1H");
}

/* A run cancelled with its take in flight: no result, nothing late. */
static void test_cancel_in_flight(void **state)
{
    struct env *e = *state;
    static struct filter_test_result w;
    struct filter_txn x;
    struct chain_session *s;
    struct chain_run *run;
    const struct tx t = {.sender = "c@x.example"};

    filter_load(e, "limits = ( { key = \"sender\"; limit = 1; },\n"
                   " { key = \"client_ip\"; limit = 5; per = \"1m\"; } );");
    s = chain_session_new(e->ft.chain);
    fill_txn(&t, D, &x);
    memset(&w, 0, sizeof(w));
    run = chain_run(s, D, &x, filter_test_done, &w);
    assert_non_null(run);
    chain_run_cancel(run);
    loop_run_for(e->st.base, 100);
    assert_int_equal(w.calls, 0);
    /* and freeing the session with a run pending */
    assert_non_null(chain_run(s, D, &x, filter_test_done, &w));
    chain_session_free(&s);
    loop_run_for(e->st.base, 100);
    assert_int_equal(w.calls, 0);
    /* the cancelled takes may or may not have reached the store: either way
     * the filter still answers */
    enum filter_action a = run_one(e, D, &t).action;
    assert_true(a == FILTER_ACTION_NONE || a == FILTER_ACTION_TEMPFAIL);
}

/* ---- faults (Redis) ---- */

static const char *const fault_config =
    "on_error = \"skip\"; timeout = \"5s\";\n"
    "limits = ( { key = \"client_ip\"; limit = 1; }, { key = \"sender\"; limit = 1; } );";

static void check_skipped(const struct chain_result *r, const char *why)
{
    assert_int_equal(r->action, FILTER_ACTION_NONE);
    assert_int_equal(r->symbol_count, 1);
    assert_string_equal(r->symbols[0].name, "RATELIMIT_ERROR");
    assert_string_equal(r->symbols[0].text, why);
}

static void test_redis_down(void **state)
{
    struct env *e = *state;
    const struct tx t = {.sender = "d@x.example"};
    long start, deadline;
    struct chain_result r;

    filter_load(e, fault_config);
    assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE); /* connected, counted */
    kv_test_redis_stop(&e->kt);
    loop_run_for(e->st.base, 50);
    for (int i = 0; i < 3; i++) {
        start = now_ms();
        r = run_one(e, D, &t);
        check_skipped(&r, "error");
        assert_true(now_ms() - start < KV_TIMEOUT_MS + 200);
    }
    assert_int_equal(kv_test_redis_start(&e->kt), 0); /* a new, empty server */
    deadline = now_ms() + 3000;
    do {
        loop_run_for(e->st.base, 50);
        r = run_one(e, D, &t);
    } while (r.symbol_count > 0 && now_ms() < deadline);
    assert_int_equal(r.action, FILTER_ACTION_NONE);
    assert_int_equal(r.symbol_count, 0);
    assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_TEMPFAIL); /* limits again */
}

static void test_redis_hung(void **state)
{
    struct env *e = *state;
    const struct tx t = {.sender = "h@x.example"};
    long start, took;
    struct chain_result r;

    filter_load(e, fault_config);
    assert_int_equal(run_one(e, D, &t).action, FILTER_ACTION_NONE);
    kv_test_redis_pause(&e->kt);
    /* the store's timeout ends it, once (not once per bucket) */
    start = now_ms();
    r = run_one(e, D, &t);
    took = now_ms() - start;
    check_skipped(&r, "error");
    assert_in_range(took, KV_TIMEOUT_MS - 20, KV_TIMEOUT_MS + 250);
    /* the filter's own shorter timeout ends it: the take is cancelled */
    filter_load(e, "on_error = \"skip\"; timeout = \"100ms\";\n"
                   "limits = ( { key = \"client_ip\"; limit = 1; } );");
    start = now_ms();
    r = run_one(e, D, &t);
    took = now_ms() - start;
    check_skipped(&r, "timeout");
    assert_in_range(took, 90, 250);
    kv_test_redis_resume(&e->kt);
    loop_run_for(e->st.base, 400); /* late replies are dropped */
}

/* ---- config ---- */

#define RL(body) "filters = ( { name = \"ratelimit\";\n" body " } );"

static const struct {
    const char *text;
    const char *error; /* substring of the first error; NULL = loads */
} configs[] = {
    {.text = RL("limits = ( { key = \"auth_user\"; limit = 100; per = \"1h\"; action = \"hold\";"
                " direction = \"outbound\"; },\n"
                " { key = \"client_net\"; count = \"connections\"; limit = 10; per = \"1m\";"
                " burst = 20; },\n { key = \"recipient\"; count = \"recipients\"; limit = 5;"
                " per = \"1d\"; name = \"rcpt-day\"; } );")},
    {.text = RL("limits = ( { key = \"client_ipp\"; limit = 1; } );"),
     .error = ":3: key: unknown value \"client_ipp\""},
    {.text = RL("limits = ( { key = \"sender\";\n count = \"bytes\"; limit = 1; } );"),
     .error = ":4: count: unknown value \"bytes\""},
    {.text = RL("limits = ( { key = \"sender\"; limit = 1;\n\n direction = \"sideways\"; } );"),
     .error = ":5: direction: unknown value \"sideways\""},
    {.text = RL("limits = ( { key = \"sender\"; limit = 1; action = \"drop\"; } );"),
     .error = ":3: action: unknown value \"drop\""},
    {.text = RL("limits = ( { key = \"sender\";\n limit = 0; } );"),
     .error = ":4: limit: value out of range"},
    {.text = RL("limits = ( { key = \"sender\"; limit = -5; } );"),
     .error = ":3: limit: value out of range"},
    {.text = RL("limits = ( { key = \"sender\"; } );"),
     .error = ":3: ratelimit limit without a limit"},
    {.text = RL("limits = ( { limit = 3; } );"), .error = ":3: ratelimit limit without a key"},
    {.text = RL("limits = ( { key = \"sender\"; limit = 3;\n action = \"hold\";\n"
                " direction = \"inbound\"; } );"),
     .error = ":4: ratelimit: action hold is for outbound mail only"},
    {.text = RL("limits = ( { key = \"sender\";\n count = \"connections\"; limit = 3; } );"),
     .error = ":4: ratelimit: connections are counted at connect, where the key \"sender\""},
    {.text = RL("limits = ( { key = \"recipient\"; count = \"connections\"; limit = 3; } );"),
     .error = ":3: ratelimit: connections are counted at connect"},
    {.text = RL("limits = ( { key = \"client_ip\"; count = \"connections\"; limit = 3;\n"
                " action = \"hold\"; direction = \"outbound\"; } );"),
     .error = ":4: ratelimit: action hold needs messages or recipients"},
    {.text = RL("limits = ( { key = \"sender\"; limit = 3; per = \"1s\"; },\n"
                " { key = \"sender\"; limit = 3; per = \"1s\"; direction = \"inbound\"; } );"),
     .error = ":4: ratelimit: symbol RATELIMIT_SENDER_MESSAGES_1S used twice"},
    {.text = RL("limits = ( { key = \"sender\"; limit = 3; per = \"1h\"; burst = -1; } );"),
     .error = "burst: value out of range"},
    {.text = RL("limits = ( { key = \"sender\"; limit = 3; per = \"500ms\"; } );"),
     .error = "per: value out of range"},
    {.text = RL("limits = ( { key = \"sender\"; limit = 3; frequency = 2; } );"),
     .error = ":3: unknown key \"frequency\""},
    {.text = RL("limits = ( );"), .error = ":3: ratelimit: limits must be a list"},
    {.text = RL("on_error = \"tempfail\";"), .error = "ratelimit: limits must be a list"},
    {.text = RL("limits = ( \"sender\" );"), .error = ":3: each ratelimit limit must be a group"},
    {.text = RL("exempt_networks = [ \"10.0.0.0/33\" ];\n limits = ( { key = \"sender\"; "
                "limit = 1; } );"),
     .error = ":3: ratelimit: exempt_networks \"10.0.0.0/33\""},
    {.text = RL("ipv4_prefix = 40;\n limits = ( { key = \"sender\"; limit = 1; } );"),
     .error = ":3: ipv4_prefix: value out of range"},
    {.text = RL("reply = \"two\\nlines\";\n limits = ( { key = \"sender\"; limit = 1; } );"),
     .error = ":3: ratelimit: reply must be printable ASCII"},
};

static void test_config(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(configs[i].text, &errs);

        config_test_expect(i, cfg, &errs, configs[i].error);
        if (i == 0) {
            const struct ratelimit_settings *s = cfg->filtering.filters[0].settings;
            assert_ptr_equal(cfg->filtering.filters[0].module, &ratelimit_module);
            assert_true(cfg->filtering.uses_kv);
            assert_int_equal(s->common.on_error, FILTER_ON_ERROR_SKIP);
            assert_int_equal(s->common.timeout, 5000);
            assert_int_equal(s->ipv4_prefix, 24);
            assert_int_equal(s->ipv6_prefix, 64);
            assert_int_equal(s->exempt_networks.count, 0);
            assert_null(s->reply);
            assert_int_equal(s->limit_count, 3);
            assert_string_equal(s->limits[0].symbol, "RATELIMIT_AUTH_USER_MESSAGES_1H");
            assert_int_equal(s->limits[0].action, RATELIMIT_HOLD);
            assert_int_equal(s->limits[0].burst, 0);
            assert_string_equal(s->limits[1].symbol, "RATELIMIT_CLIENT_NET_CONNECTIONS_1M");
            assert_int_equal(s->limits[1].per, 60000);
            assert_int_equal(s->limits[1].burst, 20);
            assert_int_equal(s->limits[1].direction, RATELIMIT_ANY);
            assert_int_equal(s->limits[1].action, RATELIMIT_TEMPFAIL);
            assert_string_equal(s->limits[2].symbol, "RATELIMIT_RCPT_DAY");
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

static void test_names(void **state)
{
    static const struct {
        long long ms;
        const char *text;
    } periods[] = {
        {60000, "1m"},    {3600000, "1h"},  {86400000, "1d"},  {90000, "90s"},
        {5400000, "90m"}, {1500, "1500ms"}, {172800000, "2d"},
    };
    char out[RATELIMIT_KEY_MAX], longv[600];

    (void)state;
    for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
        ratelimit_period_text(periods[i].ms, out, 16);
        assert_string_equal(out, periods[i].text);
    }
    ratelimit_bucket_key("ratelimit", "RATELIMIT_SENDER_MESSAGES_1H", "a@x.example", out,
                         sizeof(out));
    assert_string_equal(out, "rl:ratelimit:SENDER_MESSAGES_1H:a@x.example");
    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    ratelimit_bucket_key("ratelimit", "RATELIMIT_X", longv, out, sizeof(out));
    assert_true(strlen(out) < RATELIMIT_KEY_MAX);
    assert_int_equal(strncmp(out, "rl:ratelimit:X:#", 16), 0);
    assert_int_equal(strlen(out), 16 + 16);
    char other[RATELIMIT_KEY_MAX];
    longv[0] = 'b';
    ratelimit_bucket_key("ratelimit", "RATELIMIT_X", longv, other, sizeof(other));
    assert_string_not_equal(out, other);
}

#define BACKEND_TESTS                                                                              \
    cmocka_unit_test_setup_teardown(test_key_kinds, test_setup, test_teardown),                    \
        cmocka_unit_test_setup_teardown(test_count_kinds, test_setup, test_teardown),              \
        cmocka_unit_test_setup_teardown(test_scenario_rows, test_setup, test_teardown),            \
        cmocka_unit_test_setup_teardown(test_burst_refill, test_setup, test_teardown),             \
        cmocka_unit_test_setup_teardown(test_several_buckets, test_setup, test_teardown),          \
        cmocka_unit_test_setup_teardown(test_hold_to_end, test_setup, test_teardown),              \
        cmocka_unit_test_setup_teardown(test_hold_then_tempfail, test_setup, test_teardown),       \
        cmocka_unit_test_setup_teardown(test_cancel_in_flight, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_names),
    };
    const struct CMUnitTest lmdb_tests[] = {BACKEND_TESTS};
    const struct CMUnitTest redis_tests[] = {
        BACKEND_TESTS,
        cmocka_unit_test_setup_teardown(test_redis_hung, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_redis_down, test_setup, test_teardown),
    };
    int failed;

    signal(SIGPIPE, SIG_IGN);
    failed = cmocka_run_group_tests_name("ratelimit", plain_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("ratelimit-lmdb", lmdb_tests, group_setup_lmdb,
                                          kv_test_group_teardown);
    if (!kv_test_have_redis("test-ratelimit"))
        return failed != 0 ? 1 : 77;
    failed += cmocka_run_group_tests_name("ratelimit-redis", redis_tests, group_setup_redis,
                                          kv_test_group_teardown);
    return failed != 0 ? 1 : 0;
}
