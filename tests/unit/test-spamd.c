/*
 * test-spamd — the spamd filter without SpamAssassin: its names (addresses,
 * User: from a recipient, SA_ symbols), the filters list of posternd's
 * config (a row per key and per error), and the filter driven through the
 * chain on an event loop against a stand-in spamd on the same loop (TCP on
 * 127.0.0.1 or a unix socket) that answers what a row says, hangs,
 * answers garbage or closes early: the request it gets (command, length,
 * User:, the message octets from the spool file's offset, a message
 * larger than one send chunk), the findings of a reply (SPAMASSASSIN with
 * the score, SA_<RULE> at 0), a message over max_size that is never sent,
 * and every failure giving SPAMD_ERROR and the skipped header without a
 * SPAMASSASSIN score (or the chain's tempfail with on_error "tempfail").
 * The real spamd is driven in tests/integration/test_spamd.py.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "filters/chain.h"
#include "filters/spamd.h"
#include "gateway/server-config.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/loop-test.h"

#define RUN_MAX_MS 5000
#define SPAMD(keys) "filters = ( { name = \"spamd\"; " keys " } );"
#define SYMBOLS_REPLY                                                                              \
    "SPAMD/1.1 0 EX_OK\r\nContent-length: 36\r\nSpam: True ; 21.5 / 5.0\r\n\r\n"                   \
    "NO_RELAYS,POSTERN_TEST_SPAM,MISSING_"
#define REPLY_RULES "NO_RELAYS,POSTERN_TEST_SPAM,MISSING_"

/* ---- names ---- */

static void test_addresses(void **state)
{
    static const struct {
        const char *text;
        int family; /* 0 = refused */
    } rows[] = {
        {"127.0.0.1:783", AF_INET},
        {"[::1]:783", AF_INET6},
        {"/run/spamd.sock", AF_UNIX},
        {"127.0.0.1", 0},
        {"127.0.0.1:0", 0},
        {"localhost:783", 0},
        {"::1:783", 0},
        {"relative/path", 0},
        {"", 0},
    };
    struct sockaddr_storage sa;
    const char *why;
    int salen;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = spamd_parse_address(rows[i].text, &sa, &salen, &why);
        if (rows[i].family == 0 ? rc != -1 : rc != 0 || sa.ss_family != rows[i].family)
            fail_msg("row %zu (\"%s\"): %d", i, rows[i].text, rc);
    }
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(spamd_parse_address(longpath, &sa, &salen, &why), -1);
}

static void test_user_from_rcpt(void **state)
{
    static const struct {
        const char *rcpt, *user; /* NULL = none */
    } rows[] = {
        {"user@example.test", "user"},
        {"Joe.Bloggs@Example.ORG", "joe.bloggs"},
        {"a+tag@example.test", "a+tag"},
        {"postmaster", "postmaster"},
        {"\"odd local\"@example.test", NULL},
        {"@example.test", NULL},
        {"-x@example.test", NULL},
        {"a\r\nUser: root@example.test", NULL},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test", NULL},
    };
    char out[SPAMD_USER_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = spamd_user_from_rcpt(rows[i].rcpt, out, sizeof(out));
        if (rows[i].user == NULL ? rc != -1 : rc != 0 || strcmp(out, rows[i].user) != 0)
            fail_msg("row %zu (\"%s\"): %d", i, rows[i].rcpt, rc);
    }
}

static void test_rule_symbols(void **state)
{
    char out[FILTER_SYMBOL_NAME_MAX];
    char rule[SPAMD_RULE_MAX + 1];

    (void)state;
    spamd_rule_symbol("POSTERN_TEST_SPAM", out, sizeof(out));
    assert_string_equal(out, "SA_POSTERN_TEST_SPAM");
    memset(rule, 'R', SPAMD_RULE_MAX);
    rule[SPAMD_RULE_MAX] = '\0';
    spamd_rule_symbol(rule, out, sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
    assert_memory_equal(out, "SA_RRR", 6);
}

/* ---- config ---- */

static void check_row0(const struct postern_config *cfg);
static void check_defaults(const struct postern_config *cfg);

static const struct config_test_row configs[] = {
    /* error NULL = loads; 0 and 1 checked in check_row0 and check_defaults */
    {.filters = SPAMD("address = \"[::1]:7830\"; command = \"report\"; user = \"recipient\"; "
                      "max_size = \"1M\"; on_error = \"tempfail\"; timeout = \"30s\"; "
                      "skip_trusted = true; skip_authenticated = true;"),
     .check = check_row0},
    {.filters = SPAMD(""), .check = check_defaults},
    {.filters = SPAMD("address = \"/run/spamd/spamd.sock\"; user = \"nobody\";"
                      " command = \"headers\";")},
    {.filters = SPAMD("address = \"127.0.0.1\";"), .error = ":2: spamd: address \"127.0.0.1\""},
    {.filters = SPAMD("address = \"spamd.example:783\";"), .error = ":2: spamd: address"},
    {.filters = SPAMD("command = \"check\";"), .error = ":2:"},
    {.filters = SPAMD("user = \"bad user\";"),
     .error = ":2: spamd: user \"bad user\" is not a safe name"},
    {.filters = SPAMD("user = \"-x\";"), .error = "not a safe name"},
    {.filters = SPAMD("max_size = 0;"), .error = ":2:"},
    {.filters = SPAMD("max_size = \"2G\";"), .error = ":2:"},
    {.filters = SPAMD("on_error = \"maybe\";"), .error = ":2:"},
    {.filters = SPAMD("hosts = 1;"), .error = ":2:"},
};

static void check_row0(const struct postern_config *cfg)
{
    const struct spamd_settings *s = cfg->filtering.filters[0].settings;

    assert_string_equal(s->address, "[::1]:7830");
    assert_int_equal(s->command, SPAMD_CMD_REPORT);
    assert_string_equal(s->user, "recipient");
    assert_int_equal(s->max_size, 1048576);
    assert_int_equal(s->common.on_error, FILTER_ON_ERROR_TEMPFAIL);
    assert_int_equal(s->common.timeout, 30000);
    assert_true(s->skip_trusted);
    assert_true(s->skip_authenticated);
}

static void check_defaults(const struct postern_config *cfg)
{
    const struct spamd_settings *s = cfg->filtering.filters[0].settings;

    assert_string_equal(s->address, "127.0.0.1:783");
    assert_int_equal(s->command, SPAMD_CMD_SYMBOLS);
    assert_true(s->user == NULL || s->user[0] == '\0');
    assert_int_equal(s->max_size, 500 * 1024);
    assert_int_equal(s->common.on_error, FILTER_ON_ERROR_SKIP);
    assert_int_equal(s->common.timeout, 15000);
    assert_false(s->skip_trusted);
    assert_false(s->skip_authenticated);
}

static void test_config(void **state)
{
    (void)state;
    config_test_rows(configs, sizeof(configs) / sizeof(configs[0]));
}

/* ---- the stand-in spamd ---- */

enum standin_mode {
    SI_ANSWER,     /* answer after the whole request is in */
    SI_ANSWER_NOW, /* answer at the first octet (an error reply) */
    SI_HANG,       /* read everything, never answer */
    SI_CLOSE,      /* close once the request is in, without a word */
};

struct standin {
    struct event_base *base;
    struct evconnlistener *listener;
    char address[128];
    char path[108];
    enum standin_mode mode;
    const char *answer;
    int connections;
    bool complete, closed; /* of the last connection */
    struct bufferevent *conn;
    struct evbuffer *request;
};

/* The request is complete when the head and Content-length octets are in. */
static bool request_complete(struct evbuffer *req)
{
    size_t len = evbuffer_get_length(req);
    const char *data = (const char *)evbuffer_pullup(req, -1);
    const char *end, *cl;

    if (len == 0 || (end = memmem(data, len, "\r\n\r\n", 4)) == NULL)
        return false;
    if ((cl = memmem(data, (size_t)(end - data), "Content-length: ", 16)) == NULL)
        return true;
    return len - (size_t)(end + 4 - data) >= strtoull(cl + 16, NULL, 10);
}

static void si_drop(struct standin *si)
{
    if (si->conn != NULL)
        bufferevent_free(si->conn);
    si->conn = NULL;
}

static void si_flushed(struct bufferevent *bev, void *ctx)
{
    struct standin *si = ctx;

    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        si_drop(si); /* spamd closes after its answer */
}

static void si_read(struct bufferevent *bev, void *ctx)
{
    struct standin *si = ctx;
    bool first = evbuffer_get_length(si->request) == 0;

    evbuffer_add_buffer(si->request, bufferevent_get_input(bev));
    if (si->complete)
        return;
    si->complete = request_complete(si->request);
    if ((si->mode == SI_ANSWER && si->complete) || (si->mode == SI_ANSWER_NOW && first)) {
        si->complete = true;
        bufferevent_write(bev, si->answer, strlen(si->answer));
        bufferevent_setcb(bev, si_read, si_flushed, NULL, si);
    } else if (si->mode == SI_CLOSE && si->complete) {
        si_drop(si);
    }
}

static void si_event(struct bufferevent *bev, short what, void *ctx)
{
    struct standin *si = ctx;

    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        si->closed = true;
        si_drop(si);
    }
}

static void si_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *ctx)
{
    struct standin *si = ctx;

    (void)l;
    (void)sa;
    (void)len;
    si_drop(si);
    si->connections++;
    si->complete = si->closed = false;
    evbuffer_drain(si->request, evbuffer_get_length(si->request));
    si->conn = bufferevent_socket_new(si->base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(si->conn);
    bufferevent_setcb(si->conn, si_read, NULL, si_event, si);
    bufferevent_enable(si->conn, EV_READ | EV_WRITE);
}

/* On 127.0.0.1, or on a unix socket when unix is true. */
static void si_open(struct standin *si, struct event_base *base, bool unix_socket)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;

    memset(si, 0, sizeof(*si));
    si->base = base;
    si->request = evbuffer_new();
    assert_non_null(si->request);
    if (unix_socket) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(si->path, sizeof(si->path), "/tmp/test-spamd-%d.sock", (int)getpid());
        unlink(si->path);
        memcpy(sun.sun_path, si->path, strlen(si->path) + 1);
        si->listener = evconnlistener_new_bind(base, si_accept, si, flags, 8,
                                               (struct sockaddr *)&sun, sizeof(sun));
        snprintf(si->address, sizeof(si->address), "%s", si->path);
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET};
        socklen_t len = sizeof(sin);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        si->listener = evconnlistener_new_bind(base, si_accept, si, flags, 8,
                                               (struct sockaddr *)&sin, sizeof(sin));
        assert_non_null(si->listener);
        getsockname(evconnlistener_get_fd(si->listener), (struct sockaddr *)&sin, &len);
        snprintf(si->address, sizeof(si->address), "127.0.0.1:%u", ntohs(sin.sin_port));
    }
    assert_non_null(si->listener);
}

static void si_close(struct standin *si)
{
    si_drop(si);
    if (si->listener != NULL)
        evconnlistener_free(si->listener);
    if (si->path[0] != '\0')
        unlink(si->path);
    evbuffer_free(si->request);
    memset(si, 0, sizeof(*si));
}

/* ---- the filter through the chain ---- */

#define PREFIX "spool header line\n" /* before the message in the spool file */

struct fx {
    struct event_base *base;
    struct postern_config *cfg;
    struct filter_test ft;
    struct chain_session *s;
    struct standin si;
    int fd;
    size_t msg_len;
    struct filter_test_result r;
};

static const char small_msg[] = "Subject: test\r\n\r\nhello postern-test-spam-marker\r\n";

/* A spool file: PREFIX, then msg_len octets of message (small_msg, or a
 * generated one when msg_len is larger). */
static int spool_file(size_t msg_len)
{
    char path[] = "/tmp/test-spamd-msg-XXXXXX";
    int fd = mkstemp(path);
    char *m = malloc(msg_len + 1);

    assert_true(fd >= 0);
    assert_non_null(m);
    unlink(path);
    if (msg_len == sizeof(small_msg) - 1) {
        memcpy(m, small_msg, msg_len);
    } else {
        for (size_t i = 0; i < msg_len; i++)
            m[i] = i % 64 == 63 ? '\n' : (char)('a' + i % 26);
    }
    assert_int_equal(write(fd, PREFIX, sizeof(PREFIX) - 1), (ssize_t)sizeof(PREFIX) - 1);
    assert_int_equal(write(fd, m, msg_len), (ssize_t)msg_len);
    free(m);
    return fd;
}

/* An instance from the keys (with "ADDR" for the stand-in's address), a
 * stand-in in mode, a spool file of msg_len octets. */
static void fx_new(struct fx *fx, const char *keys, bool unix_socket, enum standin_mode mode,
                   const char *answer, size_t msg_len)
{
    struct cfg_errors errs = {0};
    char filters[1024], body[768];

    memset(fx, 0, sizeof(*fx));
    fx->base = event_base_new();
    assert_non_null(fx->base);
    si_open(&fx->si, fx->base, unix_socket);
    fx->si.mode = mode;
    fx->si.answer = answer;
    const char *at = strstr(keys, "ADDR");
    if (at != NULL)
        snprintf(body, sizeof(body), "%.*s%s%s", (int)(at - keys), keys, fx->si.address, at + 4);
    else
        snprintf(body, sizeof(body), "%s", keys);
    snprintf(filters, sizeof(filters), "filters = ( { name = \"spamd\"; %s } );", body);
    fx->cfg = config_test_load(filters, &errs);
    if (fx->cfg == NULL)
        fail_msg("%s", errs.count ? errs.msgs[0] : "?");
    struct filter_env env = {.base = fx->base, .hostname = "mx.test"};
    filter_test_open(&fx->ft, &spamd_module, &env, fx->cfg->filtering.filters[0].settings);
    fx->s = chain_session_new(fx->ft.chain);
    assert_non_null(fx->s);
    fx->msg_len = msg_len;
    fx->fd = spool_file(msg_len);
}

static void fx_free(struct fx *fx)
{
    chain_session_free(&fx->s);
    filter_test_close(&fx->ft);
    si_close(&fx->si);
    postern_config_free(&fx->cfg);
    close(fx->fd);
    event_base_free(fx->base);
}

static const char *const rcpts[] = {"Joe.Bloggs@example.test", "other@example.test"};

static struct filter_txn fx_txn(const struct fx *fx)
{
    struct filter_txn t = {.queue_id = "QTEST1",
                           .listener = "mx",
                           .client_addr = "192.0.2.1",
                           .client_name = "unknown",
                           .sender = "s@example.org",
                           .rcpts = rcpts,
                           .rcpt_count = 2,
                           .content_fd = fx->fd,
                           .content_off = sizeof(PREFIX) - 1,
                           .content_len = fx->msg_len};
    return t;
}

/* Runs EOM; returns the ms it took. */
static long fx_run(struct fx *fx, const struct filter_txn *txn)
{
    return filter_test_run(fx->base, fx->s, FILTER_EOM, txn, &fx->r, RUN_MAX_MS);
}

static const struct filter_symbol *find_symbol(const struct chain_result *res, const char *name)
{
    for (size_t i = 0; i < res->symbol_count; i++)
        if (strcmp(res->symbols[i].name, name) == 0)
            return &res->symbols[i];
    return NULL;
}

static const char *find_header(const struct chain_result *res, const char *name)
{
    for (size_t i = 0; i < res->header_count; i++)
        if (strcmp(res->headers[i].name, name) == 0)
            return res->headers[i].value;
    return NULL;
}

/* The findings of a failure with on_error skip: SPAMD_ERROR, the header,
 * no score. */
static void assert_skipped(const struct fx *fx, const char *why)
{
    const struct chain_result *res = &fx->r.res;
    const struct filter_symbol *e = find_symbol(res, "SPAMD_ERROR");

    if (e == NULL)
        fail_msg("no SPAMD_ERROR (%zu symbols)", res->symbol_count);
    if (why != NULL && strstr(e->text, why) == NULL)
        fail_msg("SPAMD_ERROR text \"%s\" lacks \"%s\"", e->text, why);
    assert_null(find_symbol(res, "SPAMASSASSIN"));
    assert_int_equal(res->symbol_count, 1);
    assert_true(res->score == 0);
    assert_int_equal(res->action, FILTER_ACTION_NONE);
    assert_non_null(find_header(res, SPAMD_HEADER));
    assert_string_equal(find_header(res, SPAMD_HEADER), "skipped (spamd unavailable)");
}

/* A scan: the request as sent, the findings as merged. */
static void test_scan(void **state)
{
    struct fx fx;
    const struct filter_symbol *sa;
    struct filter_txn txn;
    char expect[256];

    (void)state;
    fx_new(&fx, "address = \"ADDR\";", false, SI_ANSWER, SYMBOLS_REPLY, sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    /* the request: header, then the message from content_off */
    snprintf(expect, sizeof(expect), "SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\n\r\n%s",
             sizeof(small_msg) - 1, small_msg);
    assert_int_equal(evbuffer_get_length(fx.si.request), strlen(expect));
    assert_memory_equal(evbuffer_pullup(fx.si.request, -1), expect, strlen(expect));
    /* the findings */
    const struct chain_result *res = &fx.r.res;
    assert_int_equal(res->action, FILTER_ACTION_NONE);
    assert_int_equal(res->symbol_count, 4);
    sa = &res->symbols[0];
    assert_string_equal(sa->name, "SPAMASSASSIN");
    assert_true(sa->score == 21.5);
    assert_string_equal(sa->text, "21.5/5.0");
    assert_string_equal(res->symbols[1].name, "SA_NO_RELAYS");
    assert_string_equal(res->symbols[2].name, "SA_POSTERN_TEST_SPAM");
    assert_string_equal(res->symbols[3].name, "SA_MISSING_");
    for (size_t i = 1; i < 4; i++)
        assert_true(res->symbols[i].score == 0);
    assert_true(res->score == 21.5); /* SpamAssassin's score, once */
    assert_int_equal(res->header_count, 0);
    assert_int_equal(fx.si.connections, 1);
    fx_free(&fx);
}

/* REPORT over a unix socket, User: from the first recipient: the points
 * go into the rules' texts. */
static void test_report_unix_user(void **state)
{
    static const char body[] = "Content analysis details:   (6.5 points, 5.0 required)\n\n"
                               " pts rule name              description\n"
                               "---- ---------------------- ------------\n"
                               " 6.0 BIG_RULE               a rule\n"
                               " 0.5 SMALL_RULE             another\n\n";
    char answer[512], expect[128];
    struct fx fx;
    struct filter_txn txn;

    (void)state;
    snprintf(answer, sizeof(answer),
             "SPAMD/1.1 0 EX_OK\r\nContent-length: %zu\r\nSpam: True ; 6.5 / 5.0\r\n\r\n%s",
             sizeof(body) - 1, body);
    fx_new(&fx, "address = \"ADDR\"; command = \"report\"; user = \"recipient\";", true, SI_ANSWER,
           answer, sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    snprintf(expect, sizeof(expect),
             "REPORT SPAMC/1.5\r\nContent-length: %zu\r\nUser: joe.bloggs\r\n\r\n",
             sizeof(small_msg) - 1);
    assert_memory_equal(evbuffer_pullup(fx.si.request, -1), expect, strlen(expect));
    const struct chain_result *res = &fx.r.res;
    assert_int_equal(res->symbol_count, 3);
    assert_true(res->score == 6.5);
    assert_string_equal(res->symbols[1].name, "SA_BIG_RULE");
    assert_string_equal(res->symbols[1].text, "6");
    assert_string_equal(res->symbols[2].text, "0.5");
    fx_free(&fx);
}

/* A message of several send chunks arrives whole, in order; a fixed user. */
static void test_large_message(void **state)
{
    const size_t len = 300 * 1024 + 17;
    struct fx fx;
    struct filter_txn txn;
    char head[128];
    int n;

    (void)state;
    fx_new(&fx, "address = \"ADDR\"; user = \"nobody\";", false, SI_ANSWER, SYMBOLS_REPLY, len);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    assert_non_null(find_symbol(&fx.r.res, "SPAMASSASSIN"));
    n = snprintf(head, sizeof(head),
                 "SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\nUser: nobody\r\n\r\n", len);
    assert_int_equal(evbuffer_get_length(fx.si.request), (size_t)n + len);
    const char *got = (const char *)evbuffer_pullup(fx.si.request, -1);
    assert_memory_equal(got, head, (size_t)n);
    for (size_t i = 0; i < len; i++) {
        char want = i % 64 == 63 ? '\n' : (char)('a' + i % 26);
        if (got[n + i] != want)
            fail_msg("octet %zu differs", i);
    }
    fx_free(&fx);
}

/* Over max_size: not sent, SPAMD_SKIPPED_SIZE, the header, no score. */
static void test_over_max_size(void **state)
{
    struct fx fx;
    struct filter_txn txn;

    (void)state;
    fx_new(&fx, "address = \"ADDR\"; max_size = 1000;", false, SI_ANSWER, SYMBOLS_REPLY, 1001);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    loop_run_for(fx.base, 50);
    assert_int_equal(fx.si.connections, 0);
    const struct filter_symbol *s = find_symbol(&fx.r.res, "SPAMD_SKIPPED_SIZE");
    assert_non_null(s);
    assert_string_equal(s->text, "1001 octets");
    assert_null(find_symbol(&fx.r.res, "SPAMASSASSIN"));
    assert_string_equal(find_header(&fx.r.res, SPAMD_HEADER), "skipped (message over max_size)");
    fx_free(&fx);
    /* at max_size exactly: scanned */
    fx_new(&fx, "address = \"ADDR\"; max_size = 1000;", false, SI_ANSWER, SYMBOLS_REPLY, 1000);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    assert_int_equal(fx.si.connections, 1);
    assert_non_null(find_symbol(&fx.r.res, "SPAMASSASSIN"));
    fx_free(&fx);
}

/* Trusted and authenticated clients, when told to skip them: nothing. */
static void test_skip_clients(void **state)
{
    struct fx fx;
    struct filter_txn txn;

    (void)state;
    fx_new(&fx, "address = \"ADDR\"; skip_trusted = true; skip_authenticated = true;", false,
           SI_ANSWER, SYMBOLS_REPLY, sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    txn.trusted = true;
    fx_run(&fx, &txn);
    assert_int_equal(fx.r.res.symbol_count, 0);
    txn.trusted = false;
    txn.authenticated = true;
    fx_run(&fx, &txn);
    assert_int_equal(fx.r.res.symbol_count, 0);
    assert_int_equal(fx.si.connections, 0);
    fx_free(&fx);
}

/* Failures: each gives SPAMD_ERROR and the header, never a score. */
static const struct {
    const char *what;
    enum standin_mode mode;
    const char *answer;
    const char *why; /* in SPAMD_ERROR's text */
} failures[] = {
    {"garbage", SI_ANSWER, "HELLO THERE\r\n\r\n", "not a spamd response"},
    {"binary garbage", SI_ANSWER, "\x16\x03\x01\x02\xff\x01\xfc\x03\x03\n", "not a spamd"},
    {"a spamd error", SI_ANSWER_NOW, "SPAMD/1.0 76 Bad header line: (EOF)\r\n",
     "spamd answered an error: 76 Bad header line"},
    {"a score that is not a number", SI_ANSWER,
     "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; inf / 5.0\r\n\r\n", "bad Spam header"},
    {"no Spam header", SI_ANSWER, "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n",
     "no Spam header"},
    {"cut short", SI_ANSWER,
     "SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\nSpam: True ; 1 / 5\r\n\r\nAB", "cut short"},
    {"closed without a word", SI_CLOSE, NULL, "closed without a response"},
};

static void test_failures(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        struct fx fx;
        struct filter_txn txn;

        print_message("failure row %zu: %s\n", i, failures[i].what);
        fx_new(&fx, "address = \"ADDR\";", false, failures[i].mode, failures[i].answer,
               sizeof(small_msg) - 1);
        txn = fx_txn(&fx);
        fx_run(&fx, &txn);
        assert_skipped(&fx, failures[i].why);
        fx_free(&fx);
    }
}

/* spamd refuses a large message while it is still being sent (the stand-in
 * answers at the first octet and closes): an error whichever comes first,
 * the answer or the failed send; and a spool file shorter than the
 * message's length. */
static void test_early_answer_and_short_spool(void **state)
{
    struct fx fx;
    struct filter_txn txn;

    (void)state;
    fx_new(&fx, "address = \"ADDR\"; max_size = \"4M\";", false, SI_ANSWER_NOW,
           "SPAMD/1.0 76 Bad header line: (EOF)\r\n", 2 * 1024 * 1024);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    assert_skipped(&fx, NULL);
    fx_free(&fx);

    fx_new(&fx, "address = \"ADDR\";", false, SI_ANSWER, SYMBOLS_REPLY, sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    txn.content_len += 10;
    fx_run(&fx, &txn);
    assert_skipped(&fx, "cannot read the spooled message");
    assert_int_equal(fx.si.connections, 0);
    fx_free(&fx);
}

/* Nobody listening (TCP and a unix socket path): skipped at once; with
 * on_error tempfail the chain's 451 and no header. */
static void test_spamd_down(void **state)
{
    struct fx fx;
    struct filter_txn txn;
    long ms;

    (void)state;
    fx_new(&fx, "address = \"127.0.0.1:9\";", false, SI_HANG, NULL, sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    ms = fx_run(&fx, &txn);
    assert_skipped(&fx, "cannot connect");
    assert_true(ms < 1000);
    fx_free(&fx);

    fx_new(&fx, "address = \"/nonexistent/spamd.sock\";", false, SI_HANG, NULL,
           sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    assert_skipped(&fx, "cannot connect");
    fx_free(&fx);

    fx_new(&fx, "address = \"127.0.0.1:9\"; on_error = \"tempfail\";", false, SI_HANG, NULL,
           sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    fx_run(&fx, &txn);
    assert_int_equal(fx.r.res.action, FILTER_ACTION_TEMPFAIL);
    assert_int_equal(fx.r.res.reply.code, 451);
    assert_null(find_symbol(&fx.r.res, "SPAMASSASSIN"));
    assert_int_equal(fx.r.res.header_count, 0);
    fx_free(&fx);
}

/* A spamd that takes the request and never answers: skipped at 9/10 of
 * the timeout (before the chain's own timer), the connection closed. */
static void test_hang(void **state)
{
    struct fx fx;
    struct filter_txn txn;
    long ms;

    (void)state;
    fx_new(&fx, "address = \"ADDR\"; timeout = \"1s\";", false, SI_HANG, NULL,
           sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    ms = fx_run(&fx, &txn);
    assert_skipped(&fx, "no answer within 900 ms");
    assert_true(ms >= 850 && ms < 1000);
    assert_true(fx.si.complete);
    loop_run_for(fx.base, 50);
    assert_true(fx.si.closed);
    fx_free(&fx);
}

/* A run cancelled while spamd works (client gone): the connection is
 * closed and nothing is delivered. */
static void test_cancel(void **state)
{
    struct fx fx;
    struct filter_txn txn;
    struct filter_test_result r = {0};
    struct chain_run *run;

    (void)state;
    fx_new(&fx, "address = \"ADDR\";", false, SI_HANG, NULL, sizeof(small_msg) - 1);
    txn = fx_txn(&fx);
    run = chain_run(fx.s, FILTER_EOM, &txn, filter_test_done, &r);
    assert_non_null(run);
    loop_run_for(fx.base, 100);
    assert_true(fx.si.complete);
    chain_run_cancel(run);
    loop_run_for(fx.base, 100);
    assert_true(fx.si.closed);
    assert_int_equal(r.calls, 0);
    fx_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_user_from_rcpt),
        cmocka_unit_test(test_rule_symbols),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_report_unix_user),
        cmocka_unit_test(test_large_message),
        cmocka_unit_test(test_over_max_size),
        cmocka_unit_test(test_skip_clients),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_early_answer_and_short_spool),
        cmocka_unit_test(test_spamd_down),
        cmocka_unit_test(test_hang),
        cmocka_unit_test(test_cancel),
    };

    signal(SIGPIPE, SIG_IGN); /* a peer that closes early is a test case */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
