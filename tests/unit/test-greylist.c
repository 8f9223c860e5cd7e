/*
 * test-greylist — the greylist filter driven through the chain on a real
 * event loop, one suite run against both state back ends: LMDB in a temp
 * dir and a real redis-server the test starts on a free 127.0.0.1 port
 * (killed by its pid; it also dies with the test). Short durations (delay
 * 1 s, windows of a few seconds) and real waits.
 *
 * Covers: a new triplet (451 4.7.1, GREYLIST_NEW), an early retry, a retry
 * after the delay (GREYLIST_PASS), a known triplet, the end of the retry
 * window (starts over), the entry lifetime counted from the last use,
 * auto-allow after N passes, IPv4 /24 and IPv6 /64 grouping, the skips
 * (authenticated, trusted, DNSWL, SPF pass with an allowed domain,
 * allow_networks/senders/recipients), the DATA stage, the reply text; the
 * keys (table); config errors naming the line; and faults: Redis stopped
 * (on_error skip at once) and Redis hung with SIGSTOP (done within the
 * store's timeout, or within the filter's timeout when that is shorter).
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
#include "filters/greylist.h"
#include "gateway/server-config.h"
#include "lib/kv.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/kv-test.h"
#include "tests/unit/loop-test.h"

#define KV_TIMEOUT_MS 500
#define PROBE_DEADLINE_MS 10000

struct env {
    struct kv_test kt; /* first, for kv_test_group_setup */
    unsigned serial;
    /* per test (env_open / env_close) */
    struct event_base *base;
    struct kv *kv;
    struct postern_config *cfg;
    struct filter_env fenv;
    struct filter_test ft;
    char prefix[32];
    /* a second worker on the same Redis (env_open_peer) */
    struct kv *peer_kv;
    struct filter_env peer_fenv;
    struct filter_test peer;
};

static int group_setup_lmdb(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_LMDB, "test-greylist");
}

static int group_setup_redis(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_REDIS, "test-greylist");
}

/* ---- a filter instance in a chain, per test ---- */

/* Opens a fresh store (its own LMDB dir or Redis prefix) and the filter
 * with the group's keys in settings ("delay = \"1s\"; ..."). */
static void env_open_kv(struct env *e, const char *settings, unsigned kv_timeout_ms)
{
    char filters[2048], lmdb[32], err[256];
    struct cfg_errors errs = {0};

    e->serial++;
    snprintf(lmdb, sizeof(lmdb), "state%u", e->serial);
    snprintf(e->prefix, sizeof(e->prefix), "t%u:%ld:", e->serial, (long)getpid());
    e->base = event_base_new();
    assert_non_null(e->base);
    if (kv_test_open(&e->kt, e->base, lmdb, e->prefix, kv_timeout_ms, &e->kv, err, sizeof(err)) < 0)
        fail_msg("kv_new: %s", err);
    snprintf(filters, sizeof(filters), "filters = ( { name = \"greylist\"; %s } );", settings);
    e->cfg = config_test_load(filters, &errs);
    if (e->cfg == NULL)
        fail_msg("config: %s", errs.count > 0 ? errs.msgs[0] : "?");
    cfg_errors_clear(&errs);
    e->fenv = (struct filter_env){.base = e->base, .kv = e->kv, .hostname = "mx.test"};
    filter_test_open(&e->ft, &greylist_module, &e->fenv, e->cfg->filtering.filters[0].settings);
}

static void env_open(struct env *e, const char *settings)
{
    env_open_kv(e, settings, KV_TIMEOUT_MS);
}

/* A second filter instance with its own Redis connection and the same keys
 * and settings: another worker or gateway (the Redis group only). */
static void env_open_peer(struct env *e)
{
    char err[256];

    if (kv_test_open(&e->kt, e->base, "peer", e->prefix, KV_TIMEOUT_MS, &e->peer_kv, err,
                     sizeof(err)) < 0)
        fail_msg("kv_new: %s", err);
    e->peer_fenv = (struct filter_env){.base = e->base, .kv = e->peer_kv, .hostname = "mx2"};
    filter_test_open(&e->peer, &greylist_module, &e->peer_fenv,
                     e->cfg->filtering.filters[0].settings);
}

static void env_close(struct env *e)
{
    filter_test_close(&e->peer);
    kv_free(&e->peer_kv);
    filter_test_close(&e->ft);
    kv_free(&e->kv);
    postern_config_free(&e->cfg);
    if (e->base != NULL)
        event_base_free(e->base);
    e->base = NULL;
}

static int test_teardown(void **state)
{
    env_close(*state);
    return 0;
}

/* ---- probes: one stage of one transaction ---- */

struct probe {
    const char *client;   /* default 192.0.2.1 */
    const char *sender;   /* default "sender@example.org"; "" = null sender */
    const char *rcpt;     /* default "user@example.test" */
    const char *rcpts[4]; /* the DATA stage when rcpts[0] is set */
    bool auth, trusted;
    const char *symbol; /* found by an earlier stage */
};

struct seen {
    enum filter_action action;
    struct smtp_status reply;
    char names[256]; /* "GREYLIST_NEW,GREYLIST_SKIP" */
    char texts[512]; /* "1s left|allow_recipients" */
    long ms;
};

static void seen_from(struct seen *s, const struct chain_result *res, long ms)
{
    size_t o = 0, t = 0;

    *s = (struct seen){.action = res->action, .reply = res->reply, .ms = ms};
    for (size_t i = 0; i < res->symbol_count; i++) {
        o += (size_t)snprintf(s->names + o, sizeof(s->names) - o, "%s%s", i > 0 ? "," : "",
                              res->symbols[i].name);
        t += (size_t)snprintf(s->texts + t, sizeof(s->texts) - t, "%s%s", i > 0 ? "|" : "",
                              res->symbols[i].text);
    }
}

/* The transaction of a probe; earlier holds its earlier symbol. */
static enum filter_stage probe_txn(const struct probe *p, struct filter_txn *txn,
                                   struct filter_symbol *earlier)
{
    const char *client = p->client != NULL ? p->client : "192.0.2.1";

    *txn = (struct filter_txn){.queue_id = "TESTQ",
                               .listener = "mx",
                               .client_addr = client,
                               .client_name = "unknown",
                               .authenticated = p->auth,
                               .auth_user = p->auth ? "someone" : NULL,
                               .trusted = p->trusted,
                               .sender = p->sender != NULL ? p->sender : "sender@example.org",
                               .content_fd = -1};
    assert_int_equal(netaddr_parse(client, &txn->client), 0);
    if (p->symbol != NULL) {
        snprintf(earlier->name, sizeof(earlier->name), "%s", p->symbol);
        txn->symbols = earlier;
        txn->symbol_count = 1;
    }
    if (p->rcpts[0] == NULL) {
        txn->rcpt = p->rcpt != NULL ? p->rcpt : "user@example.test";
        return FILTER_RCPT;
    }
    txn->rcpts = p->rcpts;
    while (txn->rcpt_count < 4 && p->rcpts[txn->rcpt_count] != NULL)
        txn->rcpt_count++;
    return FILTER_DATA;
}

/* Runs the probe's stage on each chain at once (two workers when n = 2)
 * and the loop until every one answered (bounded). */
static void probe_on(struct env *e, struct chain **chains, size_t n, const struct probe *p,
                     struct seen *out)
{
    struct filter_symbol earlier = {.score = 0};
    struct filter_txn txn;
    enum filter_stage stage = probe_txn(p, &txn, &earlier);
    struct chain_session *cs[2] = {NULL, NULL};
    struct filter_test_result r[2];
    long start = now_ms(), ms;

    assert_true(n <= 2);
    for (size_t i = 0; i < n; i++) {
        r[i] = (struct filter_test_result){.calls = 0};
        cs[i] = chain_session_new(chains[i]);
        assert_non_null(cs[i]);
        assert_non_null(chain_run(cs[i], stage, &txn, filter_test_done, &r[i]));
    }
    filter_test_wait(e->base, r, n, PROBE_DEADLINE_MS);
    ms = now_ms() - start;
    for (size_t i = 0; i < n; i++) {
        chain_session_free(&cs[i]);
        assert_int_equal(r[i].calls, 1);
        seen_from(&out[i], &r[i].res, ms);
    }
}

static struct seen probe(struct env *e, const struct probe *p)
{
    struct seen s;

    probe_on(e, &e->ft.chain, 1, p, &s);
    return s;
}

/* Probes and checks the action and the symbols' names. */
#define EXPECT(e, action_, names_, ...)                                                            \
    ({                                                                                             \
        struct probe p_ = {__VA_ARGS__};                                                           \
        struct seen s_ = probe((e), &p_);                                                          \
        if (s_.action != (action_) || strcmp(s_.names, (names_)) != 0)                             \
            fail_msg("line %d: got %s [%s] (%s), want %s [%s]", __LINE__,                          \
                     filter_action_name(s_.action), s_.names, s_.texts,                            \
                     filter_action_name(action_), (names_));                                       \
        s_;                                                                                        \
    })

#define NEW(e, ...) EXPECT(e, FILTER_ACTION_TEMPFAIL, "GREYLIST_NEW", __VA_ARGS__)
#define EARLY(e, ...) EXPECT(e, FILTER_ACTION_TEMPFAIL, "GREYLIST_EARLY", __VA_ARGS__)
#define PASS(e, ...) EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_PASS", __VA_ARGS__)
#define KNOWN(e, ...) EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_KNOWN", __VA_ARGS__)

#define SHORT "delay = \"1s\"; retry_window = \"5s\"; purge_interval = \"500ms\"; "

/* ---- the suite (both back ends) ---- */

static void test_lifecycle(void **state)
{
    struct env *e = *state;
    struct seen s;

    env_open(e, SHORT "auto_allow_after = 0;");
    s = NEW(e, .rcpt = "user@example.test");
    assert_int_equal(s.reply.code, 451);
    assert_string_equal(s.reply.enhanced, "4.7.1");
    assert_string_equal(s.reply.text, "Greylisted, please try again later (1 seconds left)");
    assert_string_equal(s.texts, "1s left");
    EARLY(e, .rcpt = "user@example.test");
    EARLY(e, .sender = "SENDER@Example.ORG", .rcpt = "User@EXAMPLE.test"); /* case */
    NEW(e, .rcpt = "other@example.test");
    NEW(e, .sender = "");
    EARLY(e, .sender = "");
    loop_run_for(e->base, 1100);
    s = PASS(e, .rcpt = "user@example.test");
    assert_string_equal(s.texts, "after 1s");
    KNOWN(e, .rcpt = "user@example.test");
    KNOWN(e, .sender = "Sender@example.org", .rcpt = "USER@example.test");
    PASS(e, .sender = "");
    KNOWN(e, .sender = "");
    PASS(e, .rcpt = "other@example.test");
    NEW(e, .rcpt = "third@example.test"); /* no auto-allow with 0 */
}

static void test_window_expiry(void **state)
{
    struct env *e = *state;

    env_open(e, "delay = \"1s\"; retry_window = \"2s\";");
    NEW(e, .rcpt = "late@example.test");
    loop_run_for(e->base, 2300);
    NEW(e, .rcpt = "late@example.test"); /* the window is over: starts over */
    EARLY(e, .rcpt = "late@example.test");
    loop_run_for(e->base, 1100);
    PASS(e, .rcpt = "late@example.test"); /* from the new first attempt */
}

static void test_lifetime_from_last_use(void **state)
{
    struct env *e = *state;

    /* lifetime 2 s: a pass older than 0.5 s is written again when used */
    env_open(e, "delay = \"1s\"; retry_window = \"3s\"; entry_lifetime = \"2s\";");
    NEW(e);
    loop_run_for(e->base, 1100);
    PASS(e); /* t=1.1, kept until 3.1 */
    loop_run_for(e->base, 800);
    KNOWN(e); /* t=1.9: refreshed, kept until 3.9 */
    loop_run_for(e->base, 1600);
    KNOWN(e); /* t=3.5: past the first expiry; refreshed until 5.5 */
    loop_run_for(e->base, 2500);
    NEW(e); /* t=6.0: forgotten, and the attempt record expired at 3.0 */
}

static void test_auto_allow(void **state)
{
    struct env *e = *state;
    struct seen s;

    env_open(e, SHORT "auto_allow_after = 2;");
    NEW(e, .rcpt = "a@example.test");
    NEW(e, .rcpt = "b@example.test");
    NEW(e, .client = "192.0.2.9", .rcpt = "c@example.test");
    loop_run_for(e->base, 1100);
    PASS(e, .rcpt = "a@example.test");
    PASS(e, .rcpt = "b@example.test"); /* the second pass: the network is allowed */
    s = EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_AUTO", .client = "192.0.2.200",
               .rcpt = "new@example.test");
    assert_string_equal(s.texts, "192.0.2.0/24");
    /* the /24 is allowed, also for a triplet still waiting for its delay */
    EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_AUTO", .client = "192.0.2.9", .rcpt = "c@example.test");
    KNOWN(e, .rcpt = "a@example.test");                           /* a known triplet stays known */
    NEW(e, .client = "198.51.100.1", .rcpt = "new@example.test"); /* another network */
}

static void test_networks(void **state)
{
    struct env *e = *state;

    env_open(e, SHORT "auto_allow_after = 0;");
    NEW(e, .client = "192.0.2.1");
    EARLY(e, .client = "192.0.2.77"); /* the same /24 */
    NEW(e, .client = "192.0.3.1");    /* another /24 */
    NEW(e, .client = "2001:db8:1:2::1");
    EARLY(e, .client = "2001:db8:1:2:ffff:ffff:ffff:9"); /* the same /64 */
    NEW(e, .client = "2001:db8:1:3::1");                 /* another /64 */
    loop_run_for(e->base, 1100);
    PASS(e, .client = "192.0.2.200"); /* another host of the /24 */
    KNOWN(e, .client = "192.0.2.1");
    PASS(e, .client = "2001:db8:1:2::abcd");
    KNOWN(e, .client = "2001:db8:1:2::1");
    PASS(e, .client = "192.0.3.254");
    PASS(e, .client = "2001:db8:1:3::2");
}

static void test_skips(void **state)
{
    static const struct {
        struct probe p;
        const char *why; /* NULL: greylisted (NEW) */
    } rows[] = {
        {{.auth = true}, "authenticated"},
        {{.trusted = true}, "trusted"},
        {{.symbol = "DNSWL_LIST_WL"}, "dnswl"},
        {{.symbol = "DNSBL_LIST"}, NULL},
        {{.symbol = "SPF_PASS", .sender = "a@example.org"}, "spf_allow_domains"},
        {{.symbol = "SPF_PASS", .sender = "a@Mail.Example.org"}, "spf_allow_domains"},
        {{.symbol = "SPF_PASS", .sender = "a@badexample.org", .rcpt = "x1@example.test"}, NULL},
        {{.symbol = "SPF_PASS", .sender = "a@other.test", .rcpt = "x2@example.test"}, NULL},
        {{.symbol = "SPF_FAIL", .sender = "a@example.org", .rcpt = "x3@example.test"}, NULL},
        {{.sender = "a@example.org", .rcpt = "x4@example.test"}, NULL},
        {{.client = "198.51.100.9"}, "allow_networks"},
        {{.client = "2001:db8:ff:1::5"}, "allow_networks"},
        {{.client = "2001:db8:fe::5", .rcpt = "x5@example.test"}, NULL},
        {{.sender = "Boss@partner.test"}, "allow_senders"},
        {{.sender = "other@partner.test", .rcpt = "x6@example.test"}, NULL},
        {{.sender = "anyone@friends.test"}, "allow_senders"},
        {{.sender = ""}, "allow_senders"},
        {{.rcpt = "postmaster@example.test"}, "allow_recipients"},
        {{.rcpt = "Postmaster"}, "allow_recipients"},
        {{.rcpt = "x@open.test"}, "allow_recipients"},
        {{.rcpt = "x@sub.open.test"}, NULL},
    };
    struct env *e = *state;

    env_open(e, SHORT "spf_allow_domains = [\"example.org\"];\n"
                      "allow_networks = [\"198.51.100.0/24\", \"2001:db8:ff::/48\"];\n"
                      "allow_senders = [\"boss@partner.test\", \"@friends.test\", \"<>\"];\n"
                      "allow_recipients = [\"postmaster@\", \"@open.test\"];");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct seen s = probe(e, &rows[i].p);
        const char *want = rows[i].why != NULL ? "GREYLIST_SKIP" : "GREYLIST_NEW";
        if (strcmp(s.names, want) != 0 ||
            (rows[i].why != NULL && strcmp(s.texts, rows[i].why) != 0) ||
            s.action != (rows[i].why != NULL ? FILTER_ACTION_NONE : FILTER_ACTION_TEMPFAIL))
            fail_msg("row %zu: got %s [%s] (%s), want %s (%s)", i, filter_action_name(s.action),
                     s.names, s.texts, want, rows[i].why != NULL ? rows[i].why : "");
    }
}

static void test_skips_off(void **state)
{
    struct env *e = *state;

    env_open(e, SHORT "skip_authenticated = false; skip_trusted = false; skip_dnswl = false;");
    NEW(e, .auth = true, .rcpt = "a@example.test");
    NEW(e, .trusted = true, .rcpt = "b@example.test");
    NEW(e, .symbol = "DNSWL_X", .rcpt = "c@example.test");
    NEW(e, .symbol = "SPF_PASS", .rcpt = "d@example.test"); /* no spf_allow_domains */
}

static void test_data_stage(void **state)
{
    struct env *e = *state;
    struct seen s;

    env_open(e, SHORT "stage = \"data\"; allow_recipients = [\"postmaster@\"];");
    /* at RCPT the filter says nothing */
    EXPECT(e, FILTER_ACTION_NONE, "", .rcpt = "a@example.test");
    s = EXPECT(e, FILTER_ACTION_TEMPFAIL, "GREYLIST_SKIP,GREYLIST_NEW",
               .rcpts = {"a@example.test", "postmaster@example.test", "b@example.test"});
    assert_string_equal(s.texts, "allow_recipients|1s left, 2 recipients");
    assert_int_equal(s.reply.code, 451);
    EXPECT(e, FILTER_ACTION_TEMPFAIL, "GREYLIST_EARLY", .rcpts = {"a@example.test"});
    loop_run_for(e->base, 1100);
    /* one recipient still new holds the whole transaction */
    EXPECT(e, FILTER_ACTION_TEMPFAIL, "GREYLIST_NEW,GREYLIST_PASS",
           .rcpts = {"c@example.test", "a@example.test"});
    EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_PASS,GREYLIST_KNOWN",
           .rcpts = {"b@example.test", "a@example.test"});
    EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_SKIP", .rcpts = {"postmaster@example.test"});
}

static void test_reply_text(void **state)
{
    struct env *e = *state;
    struct seen s;

    env_open(e, "delay = \"30s\"; reply = \"Come back in %s s, 100%% sure\";");
    s = NEW(e);
    assert_string_equal(s.reply.text, "Come back in 30 s, 100% sure");
    assert_string_equal(s.texts, "30s left");
    s = EARLY(e);
    assert_string_equal(s.reply.text, "Come back in 30 s, 100% sure");
}

/* ---- faults (Redis) ---- */

static void test_redis_down(void **state)
{
    struct env *e = *state;
    struct seen s;

    env_open(e, SHORT);
    NEW(e);
    kv_test_redis_stop(&e->kt);
    s = EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_ERROR", .rcpt = "x@example.test");
    assert_true(s.ms < KV_TIMEOUT_MS + 300);
    assert_int_equal(kv_test_redis_start(&e->kt), 0);
}

static void test_redis_hung(void **state)
{
    struct env *e = *state;
    struct seen s;

    /* the store's timeout (300 ms) is the shorter: the filter fails */
    env_open_kv(e, SHORT "timeout = \"3s\";", 300);
    NEW(e);
    kv_test_redis_pause(&e->kt);
    s = EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_ERROR", .rcpt = "x@example.test");
    assert_string_equal(s.texts, "error");
    assert_true(s.ms >= 250 && s.ms < 1500);
    env_close(e);
    /* the filter's timeout (400 ms) is the shorter: the chain cancels it */
    env_open_kv(e, SHORT "timeout = \"400ms\";", 5000);
    s = EXPECT(e, FILTER_ACTION_NONE, "GREYLIST_ERROR", .rcpt = "y@example.test");
    assert_string_equal(s.texts, "timeout");
    assert_true(s.ms >= 350 && s.ms < 1500);
    env_close(e);
    kv_test_redis_resume(&e->kt);
    /* and on_error = "tempfail" fails closed */
    env_open_kv(e, SHORT "timeout = \"400ms\"; on_error = \"tempfail\";", 5000);
    kv_test_redis_pause(&e->kt);
    s = EXPECT(e, FILTER_ACTION_TEMPFAIL, "", .rcpt = "z@example.test");
    kv_test_redis_resume(&e->kt);
    assert_int_equal(s.reply.code, 451);
}

/* Two workers see the first attempt of a triplet at the same moment: one
 * of them made the record (NEW), the other finds it (EARLY); after the
 * delay both pass, from the one first-seen time. */
static void test_concurrent_first(void **state)
{
    struct env *e = *state;
    struct chain *both[2];
    struct seen s[2];
    char rcpt[20][32];
    struct probe p = {.rcpt = NULL};

    env_open(e, SHORT "auto_allow_after = 0;");
    env_open_peer(e);
    both[0] = e->ft.chain;
    both[1] = e->peer.chain;
    for (int i = 0; i < 20; i++) {
        snprintf(rcpt[i], sizeof(rcpt[i]), "r%d@example.test", i);
        p.rcpt = rcpt[i];
        probe_on(e, both, 2, &p, s);
        assert_int_equal(s[0].action, FILTER_ACTION_TEMPFAIL);
        assert_int_equal(s[1].action, FILTER_ACTION_TEMPFAIL);
        if (!((strcmp(s[0].names, "GREYLIST_NEW") == 0 &&
               strcmp(s[1].names, "GREYLIST_EARLY") == 0) ||
              (strcmp(s[1].names, "GREYLIST_NEW") == 0 &&
               strcmp(s[0].names, "GREYLIST_EARLY") == 0)))
            fail_msg("triplet %d: %s and %s", i, s[0].names, s[1].names);
    }
    loop_run_for(e->base, 1100);
    for (int i = 0; i < 20; i++) {
        p.rcpt = rcpt[i];
        probe_on(e, both, 2, &p, s);
        if (s[0].action != FILTER_ACTION_NONE || s[1].action != FILTER_ACTION_NONE ||
            strstr(s[0].names, "GREYLIST_") == NULL || strstr(s[1].names, "GREYLIST_") == NULL)
            fail_msg("triplet %d after the delay: %s and %s", i, s[0].names, s[1].names);
    }
}

/* ---- no store needed ---- */

static void test_ids(void **state)
{
    static const struct {
        const char *client, *sender, *rcpt;
        unsigned v4, v6;
        const char *id;
    } rows[] = {
        {"192.0.2.1", "Sender@Example.ORG", "User@Example.Test", 24, 64,
         "192.0.2.0/24/sender@example.org/user@example.test"},
        {"192.0.2.1", "", "u@x.test", 24, 64, "192.0.2.0/24/<>/u@x.test"},
        {"192.0.2.1", "bounce-12345@list.test", "u@x.test", 24, 64,
         "192.0.2.0/24/bounce-#@list.test/u@x.test"},
        {"192.0.2.1", "12345@list.test", "u@x.test", 24, 64, "192.0.2.0/24/#@list.test/u@x.test"},
        {"192.0.2.1", "user123@x.test", "u@x.test", 24, 64, "192.0.2.0/24/user123@x.test/u@x.test"},
        {"192.0.2.1", "a.1.b_2@x.test", "u@x.test", 24, 64, "192.0.2.0/24/a.#.b_2@x.test/u@x.test"},
        {"192.0.2.1", "user+tag-77@x.test", "u+box@x.test", 24, 64,
         "192.0.2.0/24/user@x.test/u+box@x.test"},
        {"192.0.2.1", "prvs=1234abcdef=John@x.test", "u@x.test", 24, 64,
         "192.0.2.0/24/john@x.test/u@x.test"},
        {"192.0.2.1", "a/b@x.test", "c%d@x.test", 24, 64, "192.0.2.0/24/a%2Fb@x.test/c%25d@x.test"},
        {"192.0.2.1", "\"john doe\"@x.test", "u@x.test", 24, 64,
         "192.0.2.0/24/%22john%20doe%22@x.test/u@x.test"},
        {"192.0.2.1", "a@b.test", "c@d.test", 32, 64, "192.0.2.1/32/a@b.test/c@d.test"},
        {"192.0.2.1", "a@b.test", "c@d.test", 16, 64, "192.0.0.0/16/a@b.test/c@d.test"},
        {"2001:db8:1:2:3:4:5:6", "a@b.test", "c@d.test", 24, 64,
         "2001:db8:1:2::/64/a@b.test/c@d.test"},
        {"2001:db8:1:2:3:4:5:6", "a@b.test", "c@d.test", 24, 48,
         "2001:db8:1::/48/a@b.test/c@d.test"},
        {"::ffff:192.0.2.7", "a@b.test", "c@d.test", 24, 64, "192.0.2.0/24/a@b.test/c@d.test"},
    };
    char id[GREYLIST_ID_MAX], long_rcpt[400], id2[GREYLIST_ID_MAX];
    struct netaddr a;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(netaddr_parse(rows[i].client, &a), 0);
        assert_int_equal(greylist_triplet_id(&a, rows[i].v4, rows[i].v6, rows[i].sender,
                                             rows[i].rcpt, id, sizeof(id)),
                         0);
        if (strcmp(id, rows[i].id) != 0)
            fail_msg("row %zu: %s, want %s", i, id, rows[i].id);
    }
    /* too long for a key: hashed, and still told apart */
    memset(long_rcpt, 'a', 300);
    strcpy(long_rcpt + 300, "@x.test");
    assert_int_equal(netaddr_parse("192.0.2.1", &a), 0);
    assert_int_equal(greylist_triplet_id(&a, 24, 64, "s@x.test", long_rcpt, id, sizeof(id)), 0);
    assert_int_equal(strncmp(id, "192.0.2.0/24/sha256:", 20), 0);
    assert_int_equal(strlen(id), 20 + 64);
    long_rcpt[0] = 'b';
    assert_int_equal(greylist_triplet_id(&a, 24, 64, "s@x.test", long_rcpt, id2, sizeof(id2)), 0);
    assert_string_not_equal(id, id2);
    long_rcpt[0] = 'A'; /* lower-cased before hashing */
    assert_int_equal(greylist_triplet_id(&a, 24, 64, "s@x.test", long_rcpt, id2, sizeof(id2)), 0);
    assert_string_equal(id, id2);
    assert_int_equal(greylist_triplet_id(&a, 24, 64, "s@x.test", "u@x.test", id, 10), -1);
}

static void test_config(void **state)
{
    static const struct {
        const char *filters;
        const char *error; /* substring of the first error; NULL = loads */
    } rows[] = {
        {.filters = "filters = ( { name = \"greylist\"; } );"},
        {.filters = "filters = ( { name = \"greylist\";\n ipv4_prefix = 33; } );",
         .error = ":3: ipv4_prefix: value out of range"},
        {.filters = "filters = ( { name = \"greylist\";\n\n ipv6_prefix = 8; } );",
         .error = ":4: ipv6_prefix: value out of range"},
        {.filters = "filters = ( { name = \"greylist\";\n stage = \"eom\"; } );",
         .error = ":3: stage: unknown value \"eom\""},
        {.filters =
             "filters = ( { name = \"greylist\"; delay = \"10m\";\n retry_window = \"5m\"; } );",
         .error = ":3: greylist: retry_window must be longer than delay"},
        {.filters = "filters = ( { name = \"greylist\";\n allow_networks = [\"10.0.0.0/8\",\n"
                    " \"10.0.0.1/33\"]; } );",
         .error = ":4: allow_networks: \"10.0.0.1/33\""},
        {.filters = "filters = ( { name = \"greylist\";\n allow_senders = [\"nobody\"]; } );",
         .error = ":3: allow_senders: \"nobody\" is not"},
        {.filters = "filters = ( { name = \"greylist\";\n allow_recipients = [\"<>\"]; } );",
         .error = ":3: allow_recipients: \"<>\" is not"},
        {.filters = "filters = ( { name = \"greylist\";\n spf_allow_domains = [\"a@b\"]; } );",
         .error = ":3: spf_allow_domains: \"a@b\" is not a domain"},
        {.filters = "filters = ( { name = \"greylist\";\n reply = \"50% off\"; } );",
         .error = ":3: reply:"},
        {.filters = "filters = ( { name = \"greylist\";\n delay = \"soon\"; } );",
         .error = ":3: delay: invalid"},
        {.filters = "filters = ( { name = \"greylist\";\n auto_allow = 3; } );",
         .error = ":3: unknown key \"auto_allow\""},
        {.filters = "filters = ( { name = \"greylist\"; stage = \"data\"; delay = 0;\n"
                    " retry_window = \"1h\"; entry_lifetime = \"90d\"; auto_allow_after = 0;\n"
                    " ipv4_prefix = 32; ipv6_prefix = 128; allow_senders = \"<>, @x.test\"; } );"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(rows[i].filters, &errs);
        config_test_expect(i, cfg, &errs, rows[i].error);
        if (i == 0) {
            const struct greylist_settings *g = cfg->filtering.filters[0].settings;
            struct filter_env fenv = {.base = NULL, .kv = NULL};
            char err[128] = "";
            void *inst = NULL;
            assert_ptr_equal(cfg->filtering.filters[0].module, &greylist_module);
            assert_true(cfg->filtering.uses_kv);
            assert_int_equal(g->delay, 5 * 60 * 1000);
            assert_int_equal(g->retry_window, 2LL * 86400 * 1000);
            assert_int_equal(g->entry_lifetime, 35LL * 86400 * 1000);
            assert_int_equal(g->auto_allow_after, 5);
            assert_int_equal(g->ipv4_prefix, 24);
            assert_int_equal(g->ipv6_prefix, 64);
            assert_int_equal(g->stage, GREYLIST_AT_RCPT);
            assert_true(g->skip_authenticated && g->skip_trusted && g->skip_dnswl);
            assert_int_equal(g->common.on_error, FILTER_ON_ERROR_SKIP);
            assert_int_equal(g->common.timeout, 5000);
            assert_int_equal(g->purge_interval, 3600 * 1000);
            /* an instance needs the state store */
            assert_int_equal(greylist_module.create(&fenv, g, &inst, err, sizeof(err)), -1);
            assert_non_null(strstr(err, "state store"));
        }
        if (i + 1 == sizeof(rows) / sizeof(rows[0])) {
            const struct greylist_settings *g = cfg->filtering.filters[0].settings;
            assert_int_equal(g->stage, GREYLIST_AT_DATA);
            assert_int_equal(g->delay, 0);
            assert_int_equal(g->allow_senders.count, 2);
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, NULL, test_teardown)
#define COMMON_TESTS                                                                               \
    T(test_lifecycle), T(test_window_expiry), T(test_lifetime_from_last_use), T(test_auto_allow),  \
        T(test_networks), T(test_skips), T(test_skips_off), T(test_data_stage), T(test_reply_text)

int main(void)
{
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_config),
    };
    const struct CMUnitTest lmdb_tests[] = {COMMON_TESTS};
    const struct CMUnitTest redis_tests[] = {
        COMMON_TESTS,
        T(test_concurrent_first),
        T(test_redis_hung),
        T(test_redis_down),
    };
    int failed;

    signal(SIGPIPE, SIG_IGN);
    failed = cmocka_run_group_tests_name("greylist", plain_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("greylist-lmdb", lmdb_tests, group_setup_lmdb,
                                          kv_test_group_teardown);
    if (!kv_test_have_redis("test-greylist"))
        return failed != 0 ? 1 : 77;
    failed += cmocka_run_group_tests_name("greylist-redis", redis_tests, group_setup_redis,
                                          kv_test_group_teardown);
    return failed != 0 ? 1 : 0;
}
