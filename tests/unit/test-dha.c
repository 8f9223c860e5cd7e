/*
 * test-dha — the dha filter (filters/dha.c, filters/dha-directory.c).
 *
 * The directory through a table (known, unknown, catch-all, case, postmaster,
 * judged domains, verify domains) and its config: entries from the config
 * and from a file, errors naming the config line or the file's line, checks
 * across keys. Then the filter itself, made by its module from a real
 * config file and driven through the chain on an event loop, once with LMDB
 * in a temp dir and once with a real redis-server on a free 127.0.0.1 port:
 * unknown recipients rejected, counting per address and per network, the
 * delay (timed, with bounds), indistinguishable answers once throttled,
 * disconnect, a block at CONNECT for block_time and then not, outbound
 * skipped, and call-ahead through a stub verifier (cached answers, -1 not
 * cached). With Redis also: a server that is down or hung costs at most the
 * store's timeout and the filter is skipped (DHA_ERROR).
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
#include "filters/dha-directory.h"
#include "filters/dha.h"
#include "gateway/server-config.h"
#include "lib/kv.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/kv-test.h"
#include "tests/unit/loop-test.h"

#define KV_TIMEOUT_MS 500
#define RUN_MAX_MS 10000
#define DELAY_MS 300
#define SLACK_MS 250 /* what a loaded machine may add to a timed reply */

/* ---- the directory ---- */

static const char *const dir_entries[] = {
    "alice@example.test", "Bob@Example.Test", "\"odd user\"@example.test",
    "@catchall.test",     "carol@other.test", NULL,
};

static const struct {
    bool ignore_case;
    bool explicit_domains; /* domains = example.test, extra.test */
    const char *rcpt;
    enum dha_lookup want;
} dir_rows[] = {
    {.ignore_case = true, .rcpt = "alice@example.test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "ALICE@EXAMPLE.TEST", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "bob@example.test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "\"odd user\"@example.test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "mallory@example.test", .want = DHA_UNKNOWN},
    {.ignore_case = true, .rcpt = "anyone@catchall.test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "anyone@CatchAll.Test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "carol@other.test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "alice@other.test", .want = DHA_UNKNOWN},
    {.ignore_case = true, .rcpt = "someone@elsewhere.test", .want = DHA_NOT_JUDGED},
    {.ignore_case = true, .rcpt = "PostMaster@example.test", .want = DHA_KNOWN},
    {.ignore_case = true, .rcpt = "Postmaster", .want = DHA_NOT_JUDGED},
    {.ignore_case = true, .rcpt = "x@verify.test", .want = DHA_VERIFY},
    {.ignore_case = true, .rcpt = "not an address", .want = DHA_NOT_JUDGED},
    {.ignore_case = false, .rcpt = "alice@EXAMPLE.test", .want = DHA_KNOWN},
    {.ignore_case = false, .rcpt = "Alice@example.test", .want = DHA_UNKNOWN},
    {.ignore_case = false, .rcpt = "Bob@example.test", .want = DHA_KNOWN},
    {.ignore_case = false, .rcpt = "bob@example.test", .want = DHA_UNKNOWN},
    {.explicit_domains = true, .rcpt = "carol@other.test", .want = DHA_NOT_JUDGED},
    {.explicit_domains = true, .rcpt = "mallory@example.test", .want = DHA_UNKNOWN},
    {.explicit_domains = true, .rcpt = "anyone@extra.test", .want = DHA_UNKNOWN},
    {.explicit_domains = true, .rcpt = "x@verify.test", .want = DHA_VERIFY},
};

static struct dha_dir *dir_build(bool ignore_case, bool explicit_domains)
{
    struct dha_dir *d = dha_dir_new(ignore_case);
    const char *why;

    assert_non_null(d);
    for (size_t i = 0; dir_entries[i] != NULL; i++)
        assert_int_equal(dha_dir_add(d, dir_entries[i], &why), 0);
    if (explicit_domains) {
        assert_int_equal(dha_dir_add_domain(d, "Example.Test", &why), 0);
        assert_int_equal(dha_dir_add_domain(d, "extra.test", &why), 0);
    }
    assert_int_equal(dha_dir_add_verify_domain(d, "verify.test", &why), 0);
    assert_int_equal(dha_dir_seal(d), 0);
    return d;
}

static void test_directory(void **state)
{
    char key[DHA_DIR_KEY_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(dir_rows) / sizeof(dir_rows[0]); i++) {
        struct dha_dir *d = dir_build(dir_rows[i].ignore_case, dir_rows[i].explicit_domains);
        enum dha_lookup got = dha_dir_lookup(d, dir_rows[i].rcpt, key, sizeof(key));
        if (got != dir_rows[i].want)
            fail_msg("row %zu (%s): got %d, want %d", i, dir_rows[i].rcpt, got, dir_rows[i].want);
        dha_dir_unref(&d);
        assert_null(d);
    }
    /* the normalised key of a verified recipient (the cache key) */
    struct dha_dir *d = dir_build(true, false);
    assert_int_equal(dha_dir_lookup(d, "Some.One@Verify.TEST", key, sizeof(key)), DHA_VERIFY);
    assert_string_equal(key, "some.one@verify.test");
    assert_int_equal(dha_dir_entries(d), 5);
    /* references: the last unref frees */
    struct dha_dir *r = dha_dir_ref(d);
    dha_dir_unref(&d);
    assert_int_equal(dha_dir_lookup(r, "alice@example.test", key, sizeof(key)), DHA_KNOWN);
    dha_dir_unref(&r);
    dha_dir_unref(&r); /* NULL-safe */
}

static void test_directory_bad_entries(void **state)
{
    static const char *const bad[] = {
        "no-domain",         "@",
        "@bad..domain",      "user@",
        "a b@example.test",  "user@example.test junk",
        "\"\"@example.test", "<>",
    };
    struct dha_dir *d = dha_dir_new(true);
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (dha_dir_add(d, bad[i], &why) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_non_null(why);
    }
    assert_int_equal(dha_dir_add_domain(d, "bad domain", &why), -1);
    assert_int_equal(dha_dir_add_verify_domain(d, "", &why), -1);
    dha_dir_unref(&d);
}

/* ---- config ---- */

/* Loads "filters = ( { name = "dha"; <keys> } );" */
static struct postern_config *load_filter(const char *keys, struct cfg_errors *errs)
{
    char text[4096];

    snprintf(text, sizeof(text), "filters = ( { name = \"dha\";\n%s\n} );", keys);
    return config_test_load(text, errs);
}

static const struct {
    const char *keys;
    const char *error; /* substring of the first error; NULL = loads */
} config_rows[] = {
    {.keys = "recipients = [ \"a@example.test\", \"@catchall.test\" ];"},
    {.keys = "recipients = [ \"a@example.test\",\n \"not an address\" ];",
     .error = ":4: dha: recipients: \"not an address\""},
    {.keys = "timeout = \"2s\";", .error = "needs recipients, recipients_file or verify_domains"},
    {.keys = "recipients = \"a@example.test\";\ntimeout = \"2s\";\ndelay = \"2s\";",
     .error = ":5: dha: delay (2000ms) must be less than timeout (2000ms)"},
    {.keys = "recipients = \"a@example.test\";\nrecipients_file = \"/nonexistent/rcpts\";",
     .error = ":4: dha: /nonexistent/rcpts: No such file or directory"},
    {.keys = "recipients = \"a@example.test\"; ipv4_prefix = 33;", .error = "ipv4_prefix"},
    {.keys = "recipients = \"a@example.test\"; bogus = 1;", .error = "unknown key \"bogus\""},
    {.keys = "verify_domains = [ \"verify.test\" ];\ndomains = [ \"a..b\" ];",
     .error = ":4: dha: domains: \"a..b\""},
};

static void test_config(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(config_rows) / sizeof(config_rows[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = load_filter(config_rows[i].keys, &errs);
        config_test_expect(i, cfg, &errs, config_rows[i].error);
        if (i == 0) {
            const struct dha_settings *s = cfg->filtering.filters[0].settings;
            assert_true(cfg->filtering.uses_kv);
            assert_int_equal(s->common.on_error, FILTER_ON_ERROR_SKIP);
            assert_int_equal(s->p.delay, 5000);
            assert_int_equal(s->p.window, 600000);
            assert_int_equal(s->p.block_time, 3600000);
            assert_int_equal(s->p.verify_cache_ttl, 3600000);
            assert_int_equal(s->p.verify_negative_ttl, 600000);
            assert_int_equal(s->p.delay_after, 5);
            assert_int_equal(s->p.disconnect_after, 10);
            assert_int_equal(s->p.block_after, 20);
            assert_int_equal(s->p.net_delay_after, 20); /* 4 x */
            assert_int_equal(s->p.net_disconnect_after, 40);
            assert_int_equal(s->p.net_block_after, 80);
            assert_true(s->ignore_case && s->p.reject_unknown && s->p.skip_outbound);
            assert_int_equal(dha_dir_entries(s->dir), 2);
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

static void test_config_file(void **state)
{
    char *good = config_test_file("test-dha-rcpts", "# known recipients\n"
                                                    "\n"
                                                    "  alice@example.test   # a comment\n"
                                                    "@catchall.test\n"
                                                    "bob@example.test\r\n");
    char *bad = config_test_file("test-dha-rcpts", "alice@example.test\n"
                                                   "# fine so far\n"
                                                   "bob@@example.test\n");
    char keys[256], want[128];
    struct cfg_errors errs = {0};
    struct postern_config *cfg;
    char key[DHA_DIR_KEY_MAX];

    (void)state;
    snprintf(keys, sizeof(keys), "recipients_file = \"%s\";", good);
    cfg = load_filter(keys, &errs);
    if (cfg == NULL)
        fail_msg("%s", errs.count ? errs.msgs[0] : "?");
    const struct dha_settings *s = cfg->filtering.filters[0].settings;
    assert_int_equal(dha_dir_entries(s->dir), 3);
    assert_int_equal(dha_dir_lookup(s->dir, "bob@example.test", key, sizeof(key)), DHA_KNOWN);
    assert_int_equal(dha_dir_lookup(s->dir, "x@catchall.test", key, sizeof(key)), DHA_KNOWN);
    assert_int_equal(dha_dir_lookup(s->dir, "x@example.test", key, sizeof(key)), DHA_UNKNOWN);
    postern_config_free(&cfg);

    snprintf(keys, sizeof(keys), "recipients_file = \"%s\";", bad);
    cfg = load_filter(keys, &errs);
    assert_null(cfg);
    assert_true(errs.count > 0);
    snprintf(want, sizeof(want), "%s:3: ", bad);
    if (strstr(errs.msgs[0], want) == NULL || strstr(errs.msgs[0], "bob@@example.test") == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", errs.msgs[0], want);
    cfg_errors_clear(&errs);
    unlink(good);
    unlink(bad);
    free(good);
    free(bad);
}

/* ---- the filter on a loop ---- */

struct stub_call {
    struct stub *stub;
    struct event *ev;
    filter_verify_cb *cb;
    void *ctx;
    int status;
};

/* The call-ahead stub: "good*" 1, "bad*" 0, anything else -1, after delay_ms. */
struct stub {
    struct event_base *base;
    int calls, pending;
    long delay_ms;
};

struct env {
    struct kv_test kt; /* first, for kv_test_group_setup */
    struct kv_test_store st;
    struct stub stub;
    struct filter_verifier verifier;
    struct filter_env fenv;
    struct postern_config *cfg;
    struct filter_test ft;
};

static void stub_fire(evutil_socket_t fd, short what, void *arg)
{
    struct stub_call *sc = arg;

    (void)fd;
    (void)what;
    sc->stub->pending--;
    event_free(sc->ev);
    sc->cb(sc->ctx, sc->status, sc->status < 0 ? "451 4.4.1 no answer" : "250 ok");
    free(sc);
}

static void *stub_verify(void *vctx, const char *rcpt, filter_verify_cb *cb, void *ctx)
{
    struct stub *stub = vctx;
    struct stub_call *sc = calloc(1, sizeof(*sc));
    struct timeval tv = {.tv_sec = 0, .tv_usec = stub->delay_ms * 1000};

    assert_non_null(sc);
    stub->calls++;
    stub->pending++;
    *sc = (struct stub_call){.stub = stub,
                             .cb = cb,
                             .ctx = ctx,
                             .status = strncmp(rcpt, "good", 4) == 0  ? 1
                                       : strncmp(rcpt, "bad", 3) == 0 ? 0
                                                                      : -1};
    sc->ev = evtimer_new(stub->base, stub_fire, sc);
    evtimer_add(sc->ev, &tv);
    return sc;
}

static void stub_cancel(void *vctx, void *handle)
{
    struct stub_call *sc = handle;

    ((struct stub *)vctx)->pending--;
    event_free(sc->ev);
    free(sc);
}

/* -- Redis, LMDB -- */

static int group_setup_lmdb(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_LMDB, "test-dha");
}

static int group_setup_redis(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_REDIS, "test-dha");
}

/* Each test: a fresh loop and store (its own LMDB dir, its own Redis prefix). */
static int test_setup(void **state)
{
    struct env *e = *state;
    char err[256];

    if (kv_test_store_open(&e->kt, &e->st, NULL, KV_TIMEOUT_MS, err, sizeof(err)) < 0) {
        fprintf(stderr, "kv_new: %s\n", err);
        return -1;
    }
    e->stub = (struct stub){.base = e->st.base, .delay_ms = 10};
    e->verifier =
        (struct filter_verifier){.verify = stub_verify, .cancel = stub_cancel, .vctx = &e->stub};
    e->fenv = (struct filter_env){
        .base = e->st.base, .kv = e->st.kv, .hostname = "mx.test", .verifier = &e->verifier};
    return 0;
}

static int test_teardown(void **state)
{
    struct env *e = *state;

    filter_test_close(&e->ft);
    postern_config_free(&e->cfg);
    kv_test_store_close(&e->st);
    return 0;
}

#define DIRECTORY                                                                                  \
    "recipients = [ \"alice@example.test\", \"bob@example.test\", \"@catchall.test\" ];\n"         \
    "verify_domains = [ \"verify.test\" ];\n"

/* Makes the filter from keys (after the directory) and a chain with it. */
static void filter_open(struct env *e, const char *keys)
{
    char text[2048];
    struct cfg_errors errs = {0};

    snprintf(text, sizeof(text), DIRECTORY "timeout = \"3s\";\n%s", keys);
    e->cfg = load_filter(text, &errs);
    if (e->cfg == NULL)
        fail_msg("config: %s", errs.count ? errs.msgs[0] : "?");
    filter_test_open(&e->ft, &dha_module, &e->fenv, e->cfg->filtering.filters[0].settings);
}

struct outcome {
    enum filter_action action;
    struct smtp_status reply;
    char symbols[256]; /* "NAME(text) NAME(text)" */
    long ms;
};

/* Runs one stage for client and rcpt (NULL at CONNECT) on a new session. */
static struct outcome run(struct env *e, enum filter_stage stage, const char *client,
                          const char *rcpt, enum filter_direction dir)
{
    static struct filter_test_result r;
    struct outcome o = {.ms = 0};
    struct filter_txn txn = {.listener = "mx",
                             .direction = dir,
                             .client_addr = client,
                             .client_name = "unknown",
                             .sender = "s@sender.test",
                             .rcpt = rcpt,
                             .content_fd = -1};
    struct chain_session *s = chain_session_new(e->ft.chain);
    size_t n = 0;

    assert_int_equal(netaddr_parse(client, &txn.client), 0);
    assert_non_null(s);
    o.ms = filter_test_run(e->st.base, s, stage, &txn, &r, RUN_MAX_MS);
    chain_session_free(&s);
    o.action = r.res.action;
    o.reply = r.res.reply;
    for (size_t i = 0; i < r.res.symbol_count && n < sizeof(o.symbols); i++)
        n += (size_t)snprintf(o.symbols + n, sizeof(o.symbols) - n, "%s%s(%s)", i ? " " : "",
                              r.res.symbols[i].name, r.res.symbols[i].text);
    return o;
}

static struct outcome rcpt(struct env *e, const char *client, const char *to)
{
    return run(e, FILTER_RCPT, client, to, FILTER_INBOUND);
}

static struct outcome connect_(struct env *e, const char *client)
{
    return run(e, FILTER_CONNECT, client, NULL, FILTER_INBOUND);
}

static void expect(const struct outcome *o, enum filter_action action, unsigned code,
                   const char *enhanced)
{
    if (o->action != action || o->reply.code != code ||
        (enhanced != NULL && strcmp(o->reply.enhanced, enhanced) != 0))
        fail_msg("got %s %u %s %s [%s], want %s %u %s", filter_action_name(o->action),
                 o->reply.code, o->reply.enhanced, o->reply.text, o->symbols,
                 filter_action_name(action), code, enhanced != NULL ? enhanced : "");
}

static bool has_symbol(const struct outcome *o, const char *name)
{
    return strstr(o->symbols, name) != NULL;
}

/* ---- scenarios: one filter, a script of stages and the answers ---- */

/* One stage, or several: CONNECT when rcpt and each are NULL; RCPT to rcpt,
 * or (times of them) to each<from + i>@example.test, from client (client2
 * for the odd i when given). Unless any, the answer is action and code
 * (and the enhanced code when given); then, when given, the reply text,
 * the whole symbol list, a symbol in it (has) or not (lacks), the stub's
 * calls so far (when > 0). */
struct step {
    const char *client, *client2;
    const char *rcpt, *each;
    int from, times;
    bool outbound;
    bool mark;    /* the time just before this step is the mark */
    long wait_ms; /* first run the loop until this long after the mark */
    bool any;
    enum filter_action action;
    unsigned code;
    const char *enhanced, *text, *symbols, *has, *lacks;
    int calls;
};

struct scenario {
    const char *keys;
    struct step steps[12]; /* up to the first with client NULL */
};

static void check_step(size_t k, const char *to, const struct step *st, const struct outcome *o,
                       const struct env *e)
{
    if (!st->any && (o->action != st->action || o->reply.code != st->code ||
                     (st->enhanced != NULL && strcmp(o->reply.enhanced, st->enhanced) != 0)))
        fail_msg("step %zu (%s): got %s %u %s %s [%s], want %s %u %s", k, to,
                 filter_action_name(o->action), o->reply.code, o->reply.enhanced, o->reply.text,
                 o->symbols, filter_action_name(st->action), st->code,
                 st->enhanced != NULL ? st->enhanced : "");
    if (st->text != NULL && strcmp(o->reply.text, st->text) != 0)
        fail_msg("step %zu (%s): text \"%s\", want \"%s\"", k, to, o->reply.text, st->text);
    if (st->symbols != NULL && strcmp(o->symbols, st->symbols) != 0)
        fail_msg("step %zu (%s): symbols [%s], want [%s]", k, to, o->symbols, st->symbols);
    if ((st->has != NULL && !has_symbol(o, st->has)) ||
        (st->lacks != NULL && has_symbol(o, st->lacks)))
        fail_msg("step %zu (%s): symbols [%s], want %s %s", k, to, o->symbols,
                 st->has != NULL ? "with" : "without", st->has != NULL ? st->has : st->lacks);
    if (st->calls > 0 && e->stub.calls != st->calls)
        fail_msg("step %zu (%s): %d calls ahead, want %d", k, to, e->stub.calls, st->calls);
}

/* Opens the filter with sc's keys and plays its steps. */
static void play(struct env *e, const struct scenario *sc)
{
    long mark = 0;

    filter_open(e, sc->keys);
    for (size_t k = 0; k < 12 && sc->steps[k].client != NULL; k++) {
        const struct step *st = &sc->steps[k];

        if (st->mark)
            mark = now_ms();
        if (st->wait_ms > 0)
            loop_run_for(e->st.base, st->wait_ms - (now_ms() - mark));
        for (int i = st->from; i < st->from + (st->times > 0 ? st->times : 1); i++) {
            const char *client = st->client2 != NULL && i % 2 ? st->client2 : st->client;
            char to[64];
            struct outcome o;

            if (st->each != NULL)
                snprintf(to, sizeof(to), "%s%d@example.test", st->each, i);
            else
                snprintf(to, sizeof(to), "%s", st->rcpt != NULL ? st->rcpt : "(connect)");
            if (st->rcpt == NULL && st->each == NULL)
                o = connect_(e, client);
            else
                o = run(e, FILTER_RCPT, client, to,
                        st->outbound ? FILTER_OUTBOUND : FILTER_INBOUND);
            check_step(k, to, st, &o, e);
        }
    }
}

#define NONE .action = FILTER_ACTION_NONE
#define UNKNOWN .action = FILTER_ACTION_REJECT, .code = 550, .enhanced = "5.1.1"
#define THROTTLED .action = FILTER_ACTION_TEMPFAIL, .code = 450, .enhanced = "4.7.1"
#define CUT_OFF .action = FILTER_ACTION_DISCONNECT, .code = 421, .enhanced = "4.7.0"

static const struct scenario known_unknown = {
    "delay = \"0\";",
    {
        {"192.0.2.1", .rcpt = "alice@example.test", NONE, .symbols = ""},
        {"192.0.2.1", .rcpt = "Alice@Example.TEST", NONE},
        {"192.0.2.1", .rcpt = "whoever@catchall.test", NONE},
        {"192.0.2.1", .rcpt = "someone@not-judged.test", NONE},
        {"192.0.2.1", .rcpt = "postmaster@example.test", NONE},
        {"192.0.2.1", .rcpt = "mallory@example.test", UNKNOWN, .text = "User unknown",
         .symbols = "DHA_UNKNOWN_RCPT(1)"},
        {"192.0.2.1", .rcpt = "trudy@example.test", .any = true, .symbols = "DHA_UNKNOWN_RCPT(2)"},
        /* CONNECT of a client that is not blocked: nothing */
        {"192.0.2.1", NONE, .symbols = ""},
    }};

static const struct scenario reject_unknown_off_and_outbound = {
    "reject_unknown = false; delay_after = 1; delay = \"0\";",
    {
        {"192.0.2.2", .rcpt = "mallory@example.test", NONE, .symbols = "DHA_UNKNOWN_RCPT(1)"},
        /* outbound (authenticated, trusted) clients are not judged nor throttled */
        {"192.0.2.2", .rcpt = "mallory@example.test", .outbound = true, NONE, .symbols = ""},
        {"192.0.2.2", .rcpt = "alice@example.test", THROTTLED},
    }};

/* Per address and per network: 10.1.2.3 and 10.1.2.4 share a /24. */
static const struct scenario counting = {
    "delay = \"0\"; delay_after = 3; net_delay_after = 5; disconnect_after = 0; "
    "block_after = 0; net_disconnect_after = 0; net_block_after = 0;",
    {
        {"10.1.2.3", .each = "nobody", .times = 3, UNKNOWN},
        /* the address is over delay_after: throttled, valid or not */
        {"10.1.2.3", .rcpt = "alice@example.test", THROTTLED, .has = "DHA_THROTTLED"},
        {"10.1.2.3", .rcpt = "nobody9@example.test", THROTTLED},
        /* its neighbour: 4 unknown in the network so far, 1 of its own */
        {"10.1.2.4", .rcpt = "other@example.test", UNKNOWN, .symbols = "DHA_UNKNOWN_RCPT(1)"},
        {"10.1.2.4", .rcpt = "alice@example.test", THROTTLED}, /* the network reached 5 */
        /* another network is not touched */
        {"10.1.3.1", .rcpt = "alice@example.test", NONE},
        {"10.1.3.1", .rcpt = "nobody@example.test", UNKNOWN},
        /* IPv6: the /64 is the network */
        {"2001:db8:1:2::2", "2001:db8:1:2::1", .each = "v6-", .times = 5, .any = true},
        {"2001:db8:1:2::3", .rcpt = "alice@example.test", THROTTLED},
        {"2001:db8:1:3::3", .rcpt = "alice@example.test", NONE},
    }};

static const struct scenario disconnect = {
    "delay = \"0\"; delay_after = 2; disconnect_after = 4; block_after = 0;",
    {
        {"192.0.2.20", .each = "harvest", .times = 2, .action = FILTER_ACTION_REJECT, .code = 550},
        {"192.0.2.20", .each = "harvest", .from = 2, .times = 2,
         .action = FILTER_ACTION_TEMPFAIL, .code = 450},
        {"192.0.2.20", .rcpt = "alice@example.test", CUT_OFF,
         .text = "Too many unknown recipients", .has = "DHA_DISCONNECT"},
        /* not blocked: a new connection is let in */
        {"192.0.2.20", NONE},
    }};

static const struct scenario block = {
    "delay = \"0\"; delay_after = 1; disconnect_after = 2; block_after = 3; "
    "block_time = \"1s\"; window = \"1s\";",
    {
        {"192.0.2.30", .each = "harvest", .times = 3, .any = true, .lacks = "DHA_BLOCKED"},
        {"192.0.2.30", .rcpt = "harvest3@example.test", .mark = true, CUT_OFF,
         .has = "DHA_BLOCKED"},
        {"192.0.2.30", CUT_OFF, .text = "Too many unknown recipients",
         .symbols = "DHA_BLOCKED(address)"},
        /* the network is below its threshold (4 x 3): a neighbour gets in */
        {"192.0.2.31", NONE},
        /* after block_time the client is let in again */
        {"192.0.2.30", .wait_ms = 1100, NONE},
        {"192.0.2.30", .rcpt = "alice@example.test", NONE}, /* the window is over too */
    }};

static const struct scenario block_network = {
    "delay = \"0\"; delay_after = 0; disconnect_after = 0; block_after = 0; "
    "net_block_after = 4; block_time = \"1s\";",
    {
        {"198.51.100.8", "198.51.100.7", .each = "harvest", .times = 4, UNKNOWN},
        {"198.51.100.9", .rcpt = "alice@example.test", CUT_OFF},
        {"198.51.100.200", CUT_OFF, .symbols = "DHA_BLOCKED(network)"},
        {"198.51.101.1", NONE},
    }};

static const struct scenario verify = {
    "delay = \"0\";",
    {
        {"192.0.2.40", .rcpt = "good1@verify.test", NONE, .calls = 1},
        {"192.0.2.40", .rcpt = "Good1@Verify.Test", NONE, .calls = 1}, /* cached, same key */
        {"192.0.2.40", .rcpt = "bad1@verify.test", UNKNOWN, .symbols = "DHA_UNKNOWN_RCPT(1)",
         .calls = 2},
        /* cached refusal, counted again */
        {"192.0.2.40", .rcpt = "bad1@verify.test", UNKNOWN, .symbols = "DHA_UNKNOWN_RCPT(2)",
         .calls = 2},
        /* -1: neither valid nor unknown, not counted, not cached */
        {"192.0.2.40", .rcpt = "what@verify.test", NONE, .symbols = "", .calls = 3},
        {"192.0.2.40", .rcpt = "what@verify.test", NONE, .calls = 4},
    }};

static void test_known_unknown(void **state)
{
    play(*state, &known_unknown);
}

static void test_reject_unknown_off_and_outbound(void **state)
{
    play(*state, &reject_unknown_off_and_outbound);
}

static void test_counting(void **state)
{
    play(*state, &counting);
}

static void test_disconnect(void **state)
{
    play(*state, &disconnect);
}

static void test_block(void **state)
{
    play(*state, &block);
}

static void test_block_network(void **state)
{
    play(*state, &block_network);
}

static void test_verify(void **state)
{
    struct env *e = *state;

    play(e, &verify);
    /* a directory entry of the domain needs no call-ahead */
    assert_int_equal(e->stub.pending, 0);
}

/* The delay, and the same answer after the same time for valid and invalid. */
static void test_delay_indistinguishable(void **state)
{
    struct env *e = *state;
    struct outcome o, valid, invalid;
    char to[64];

    filter_open(e, "delay = \"300ms\"; delay_after = 2; disconnect_after = 0; block_after = 0;");
    for (int i = 0; i < 2; i++) {
        snprintf(to, sizeof(to), "harvest%d@example.test", i);
        o = rcpt(e, "192.0.2.10", to);
        expect(&o, FILTER_ACTION_REJECT, 550, "5.1.1");
        assert_true(o.ms < DELAY_MS / 2); /* not throttled yet: no delay */
    }
    valid = rcpt(e, "192.0.2.10", "alice@example.test");
    invalid = rcpt(e, "192.0.2.10", "harvest9@example.test");
    expect(&valid, FILTER_ACTION_TEMPFAIL, 450, "4.7.1");
    expect(&invalid, FILTER_ACTION_TEMPFAIL, 450, "4.7.1");
    assert_string_equal(valid.reply.text, invalid.reply.text);
    assert_string_equal(valid.reply.text, "Try again later");
    for (int i = 0; i < 2; i++) {
        long ms = i == 0 ? valid.ms : invalid.ms;
        if (ms < DELAY_MS - 10 || ms > DELAY_MS + SLACK_MS)
            fail_msg("reply %d after %ldms, want about %dms", i, ms, DELAY_MS);
    }
    /* also a verified recipient: the call-ahead does not show through */
    o = rcpt(e, "192.0.2.10", "good1@verify.test");
    expect(&o, FILTER_ACTION_TEMPFAIL, 450, "4.7.1");
    assert_true(o.ms >= DELAY_MS - 10 && o.ms <= DELAY_MS + SLACK_MS);
    /* another client is answered at once */
    o = rcpt(e, "192.0.2.11", "alice@example.test");
    expect(&o, FILTER_ACTION_NONE, 0, NULL);
    assert_true(o.ms < DELAY_MS / 2);
}

/* Without a verifier verify_domains cannot work: an error at create. A
 * call-ahead that outlives the filter's timeout is cancelled. */
static void test_verify_timeout(void **state)
{
    struct env *e = *state;
    struct outcome o;
    char err[256];
    void *inst = NULL;
    struct filter_env none = e->fenv;

    filter_open(e, "delay = \"0\";");
    none.verifier = NULL;
    assert_int_equal(
        dha_module.create(&none, e->cfg->filtering.filters[0].settings, &inst, err, sizeof(err)),
        -1);
    assert_null(inst);
    assert_non_null(strstr(err, "verify_domains needs a recipient verifier"));
    chain_free(&e->ft.chain);
    struct chain_link link = {.ops = dha_module.ops,
                              .instance = e->ft.instance,
                              .on_error = FILTER_ON_ERROR_SKIP,
                              .timeout_ms = 100};
    e->ft.chain = chain_new(e->st.base, &link, 1);
    assert_non_null(e->ft.chain);
    e->stub.delay_ms = 1000;
    o = rcpt(e, "192.0.2.41", "good2@verify.test");
    expect(&o, FILTER_ACTION_NONE, 0, NULL);
    assert_true(has_symbol(&o, "DHA_ERROR"));
    assert_int_equal(e->stub.calls, 1);
    assert_int_equal(e->stub.pending, 0); /* cancelled, not left behind */
}

/* Redis down: at once; hung: within the store's timeout; the filter is skipped. */
static void test_redis_faults(void **state)
{
    struct env *e = *state;
    struct outcome o;

    filter_open(e, "delay = \"0\";");
    o = rcpt(e, "192.0.2.50", "mallory@example.test");
    expect(&o, FILTER_ACTION_REJECT, 550, "5.1.1");
    kv_test_redis_pause(&e->kt);
    o = rcpt(e, "192.0.2.50", "mallory@example.test");
    kv_test_redis_resume(&e->kt);
    expect(&o, FILTER_ACTION_NONE, 0, NULL);
    assert_true(has_symbol(&o, "DHA_ERROR"));
    if (o.ms < KV_TIMEOUT_MS - 10 || o.ms > KV_TIMEOUT_MS + SLACK_MS)
        fail_msg("hung store: answered after %ldms", o.ms);
    kv_test_redis_stop(&e->kt);
    o = connect_(e, "192.0.2.50");
    expect(&o, FILTER_ACTION_NONE, 0, NULL);
    assert_true(has_symbol(&o, "DHA_ERROR"));
    o = rcpt(e, "192.0.2.50", "mallory@example.test");
    expect(&o, FILTER_ACTION_NONE, 0, NULL);
    assert_true(has_symbol(&o, "DHA_ERROR"));
    assert_true(o.ms <= KV_TIMEOUT_MS + SLACK_MS);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
#define COMMON_TESTS                                                                               \
    T(test_known_unknown), T(test_reject_unknown_off_and_outbound), T(test_counting),              \
        T(test_delay_indistinguishable), T(test_disconnect), T(test_block), T(test_block_network), \
        T(test_verify), T(test_verify_timeout)

int main(void)
{
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_directory_bad_entries),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_config_file),
    };
    const struct CMUnitTest lmdb_tests[] = {COMMON_TESTS};
    const struct CMUnitTest redis_tests[] = {COMMON_TESTS, T(test_redis_faults)};
    int failed;

    signal(SIGPIPE, SIG_IGN);
    failed = cmocka_run_group_tests_name("dha", plain_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("dha-lmdb", lmdb_tests, group_setup_lmdb,
                                          kv_test_group_teardown);
    if (!kv_test_have_redis("test-dha"))
        return failed != 0 ? 1 : 77;
    failed += cmocka_run_group_tests_name("dha-redis", redis_tests, group_setup_redis,
                                          kv_test_group_teardown);
    return failed != 0 ? 1 : 0;
}
