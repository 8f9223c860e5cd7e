/*
 * test-clamd — the clamd filter. Tables: clamd's replies as the parser
 * judges them (clean, virus with its name, the limits, errors, and what is
 * no reply at all), where a reply ends, the forms of address, and the
 * filter's keys in posternd's config (defaults; bad values are errors that
 * name the line).
 *
 * Then the filter through the chain on an event loop, scanning messages
 * from a spool-like file (the message between other octets, so that the
 * offset and length are honoured): against a real clamd (clamd-test.h)
 * over TCP and its unix socket: EICAR rejected with 554 5.7.1 and the
 * signature's name, a clean message with CLAMAV_CLEAN, quarantine, a virus
 * at the end of a message sent in many chunks, over clamd's StreamMaxLength
 * and over its MaxFileSize (AlertExceedsMax) a tempfail and never clean,
 * over our max_size not sent (CLAMAV_SKIPPED_SIZE and size_action), and a
 * hung scan that does not hold up another on the same loop. Against
 * stand-ins: one that never answers (tempfail within the timeout while the
 * loop keeps running), garbage, a close in the middle, a reply without end,
 * "stream: OK" before the message was sent, an end without a word, clamd
 * down (connection refused, no unix socket) and a connect that never
 * completes (connect_timeout).
 *
 * Without clamd the real-clamd part is skipped with the reason (exit 77 if
 * the rest passed). Nothing leaves 127.0.0.1.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/clamd.h"
#include "gateway/server-config.h"
#include "tests/unit/clamd-test.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/loop-test.h"

#define WAIT_MAX_MS 20000
#define CLAMD(keys) "filters = ( { name = \"clamd\"; " keys " } );"

static struct clamd_test clamd; /* the real one, for its group */

/* ---- the reply ---- */

static void test_reply_parse(void **state)
{
    static char long_name[CLAMD_NAME_MAX + 32];
    static char longer_name[CLAMD_NAME_MAX + 32];
    static char too_long[CLAMD_REPLY_MAX + 2];
    struct {
        const char *reply;
        size_t len; /* 0: strlen */
        enum clamd_verdict verdict;
        const char *name;
    } rows[] = {
        {.reply = "stream: OK", .verdict = CLAMD_CLEAN},
        {.reply = "stream: OK\n", .verdict = CLAMD_CLEAN},
        {.reply = "stream: Eicar-Test-Signature FOUND",
         .verdict = CLAMD_VIRUS,
         .name = "Eicar-Test-Signature"},
        {.reply = "stream: Eicar-Test-Signature.UNOFFICIAL FOUND",
         .verdict = CLAMD_VIRUS,
         .name = "Eicar-Test-Signature.UNOFFICIAL"},
        {.reply = "stream: Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND",
         .verdict = CLAMD_VIRUS,
         .name = "Win.Test.EICAR_HDB-1"},
        {.reply = "stream: Heuristics.Encrypted.PDF FOUND",
         .verdict = CLAMD_VIRUS,
         .name = "Heuristics.Encrypted.PDF"},
        /* clamd's own limits (AlertExceedsMax), StreamMaxLength: never clean */
        {.reply = "stream: Heuristics.Limits.Exceeded FOUND",
         .verdict = CLAMD_LIMIT,
         .name = "Heuristics.Limits.Exceeded"},
        {.reply = "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND",
         .verdict = CLAMD_LIMIT,
         .name = "Heuristics.Limits.Exceeded.MaxFileSize"},
        {.reply = "stream: Heuristics.Limits.ExceededMax FOUND",
         .verdict = CLAMD_VIRUS,
         .name = "Heuristics.Limits.ExceededMax"},
        {.reply = "INSTREAM size limit exceeded. ERROR", .verdict = CLAMD_LIMIT},
        /* errors */
        {.reply = "stream: Can't allocate memory ERROR", .verdict = CLAMD_ERROR},
        {.reply = "stream: lstat() failed: No such file or directory. ERROR",
         .verdict = CLAMD_ERROR},
        {.reply = "UNKNOWN COMMAND", .verdict = CLAMD_ERROR},
        {.reply = "PONG", .verdict = CLAMD_ERROR},
        {.reply = "", .verdict = CLAMD_ERROR},
        {.reply = "stream: ", .verdict = CLAMD_ERROR},
        {.reply = "stream: FOUND", .verdict = CLAMD_ERROR},
        {.reply = "stream:  FOUND", .verdict = CLAMD_ERROR},
        {.reply = "stream: (abc:1) FOUND", .verdict = CLAMD_ERROR},
        {.reply = "stream: two words FOUND", .verdict = CLAMD_ERROR},
        {.reply = "stream: OKAY", .verdict = CLAMD_ERROR},
        {.reply = "stream: ok", .verdict = CLAMD_ERROR},
        {.reply = "Stream: OK", .verdict = CLAMD_ERROR},
        {.reply = "stream: OK trailing", .verdict = CLAMD_ERROR},
        {.reply = "stream: OK\r\n", .verdict = CLAMD_ERROR},
        {.reply = "1: stream: OK", .verdict = CLAMD_ERROR},
        {.reply = "stream: OK\0", .len = 11, .verdict = CLAMD_ERROR},
        {.reply = "stream: Bad\001Name FOUND", .verdict = CLAMD_ERROR},
        {.reply = "stream: Caf\xc3\xa9 FOUND", .verdict = CLAMD_ERROR},
        {.reply = "stream: Eicar FOUND\nstream: OK", .verdict = CLAMD_ERROR},
        {.reply = long_name, .verdict = CLAMD_VIRUS},
        {.reply = longer_name, .verdict = CLAMD_ERROR},
        {.reply = too_long, .verdict = CLAMD_ERROR},
    };
    struct clamd_reply r;

    (void)state;
    snprintf(long_name, sizeof(long_name), "stream: %0*d FOUND", CLAMD_NAME_MAX, 7);
    snprintf(longer_name, sizeof(longer_name), "stream: %0*d FOUND", CLAMD_NAME_MAX + 1, 7);
    memset(too_long, 'x', sizeof(too_long) - 1);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t len = rows[i].len != 0 ? rows[i].len : strlen(rows[i].reply);
        clamd_reply_parse(rows[i].reply, len, &r);
        if (r.verdict != rows[i].verdict)
            fail_msg("row %zu \"%s\": %s, expected %s", i, rows[i].reply,
                     clamd_verdict_name(r.verdict), clamd_verdict_name(rows[i].verdict));
        if (rows[i].name != NULL && strcmp(r.name, rows[i].name) != 0)
            fail_msg("row %zu: name \"%s\"", i, r.name);
        if (r.verdict == CLAMD_VIRUS)
            assert_true(r.name[0] != '\0' && strlen(r.name) <= CLAMD_NAME_MAX &&
                        strchr(r.name, ' ') == NULL);
        assert_true(strlen(r.text) < sizeof(r.text));
    }
}

static void test_reply_end(void **state)
{
    static char buf[2048];
    static const struct {
        size_t len;
        long nul; /* where a NUL is put; -1 none */
        long end;
    } rows[] = {
        {.len = 0, .nul = -1, .end = -1},
        {.len = 1, .nul = 0, .end = 0},
        {.len = 11, .nul = 10, .end = 10},
        {.len = 10, .nul = -1, .end = -1},
        {.len = 20, .nul = 10, .end = 10}, /* the first reply */
        {.len = CLAMD_REPLY_MAX, .nul = -1, .end = -1},
        {.len = CLAMD_REPLY_MAX + 1, .nul = -1, .end = -2},
        {.len = CLAMD_REPLY_MAX + 1, .nul = CLAMD_REPLY_MAX, .end = CLAMD_REPLY_MAX},
        {.len = 2000, .nul = 1500, .end = -2},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        memset(buf, 'a', sizeof(buf));
        if (rows[i].nul >= 0)
            buf[rows[i].nul] = '\0';
        if (rows[i].len == 20)
            buf[15] = '\0';
        long end = clamd_reply_end(buf, rows[i].len);
        if (end != rows[i].end)
            fail_msg("row %zu: %ld, expected %ld", i, end, rows[i].end);
    }
}

static void test_address(void **state)
{
    static char long_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    struct {
        const char *text;
        int family; /* 0: refused */
        int port;
    } rows[] = {
        {.text = "127.0.0.1:3310", .family = AF_INET, .port = 3310},
        {.text = "[::1]:3310", .family = AF_INET6, .port = 3310},
        {.text = "/run/clamav/clamd.ctl", .family = AF_UNIX},
        {.text = "127.0.0.1"},
        {.text = "127.0.0.1:0"},
        {.text = "127.0.0.1:65536"},
        {.text = "::1"},
        {.text = "[::1]"},
        {.text = "localhost:3310"},
        {.text = "clamd.example.org:3310"},
        {.text = ""},
        {.text = long_path},
    };
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;

    (void)state;
    long_path[0] = '/';
    memset(long_path + 1, 'p', sizeof(long_path) - 2);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = clamd_address_parse(rows[i].text, &ss, &len, &why);
        if (rows[i].family == 0) {
            if (rc != -1)
                fail_msg("row %zu \"%s\" accepted", i, rows[i].text);
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu \"%s\": %s", i, rows[i].text, why);
        assert_int_equal(ss.ss_family, rows[i].family);
        if (rows[i].family == AF_INET)
            assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), rows[i].port);
        if (rows[i].family == AF_INET6)
            assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), rows[i].port);
    }
}

/* ---- config ---- */

static const struct {
    const char *filters;
    const char *error; /* substring of the first error; NULL = loads */
} configs[] = {
    /* 0: the defaults, checked in test_config */
    {.filters = CLAMD("address = \"127.0.0.1:3310\";")},
    /* 1: every key, checked in test_config */
    {.filters = CLAMD("address = \"/run/clamav/clamd.ctl\"; on_error = \"skip\"; timeout = "
                      "\"20s\"; connect_timeout = \"2s\"; max_size = \"10M\"; size_action = "
                      "\"reject\"; chunk_size = \"16K\"; action = \"quarantine\"; virus_score = "
                      "50; clean_symbol = false;")},
    {.filters = CLAMD("address = \"[::1]:3310\"; action = \"none\"; size_action = \"tempfail\";")},
    {.filters = CLAMD(""), .error = "clamd: address is required"},
    {.filters = CLAMD("address = \"\";"), .error = "clamd: address is required"},
    {.filters = "filters = ( { name = \"clamd\";\n address = \"localhost:3310\"; } );",
     .error = ":3: clamd: address \"localhost:3310\": not \"ip:port\""},
    {.filters = CLAMD("address = \"127.0.0.1\";"), .error = "a port is needed"},
    {.filters = "filters = ( { name = \"clamd\"; address = \"127.0.0.1:3310\";\n"
                " action = \"drop\"; } );",
     .error = ":3: action: unknown value \"drop\""},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; size_action = \"maybe\";"),
     .error = "size_action: unknown value"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; chunk_size = 100;"), .error = "chunk_size:"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; chunk_size = \"32M\";"),
     .error = "chunk_size:"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; max_size = 0;"), .error = "max_size:"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; virus_score = \"high\";"),
     .error = "virus_score:"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; connect_timeout = \"1ms\";"),
     .error = "connect_timeout:"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; clean_symbol = 3;"), .error = "clean_symbol:"},
    {.filters = CLAMD("address = \"127.0.0.1:3310\"; on_error = \"maybe\";"),
     .error = "on_error: unknown value"},
    {.filters = "filters = ( { name = \"clamd\"; address = \"127.0.0.1:3310\";\n"
                " bogus = 1; } );",
     .error = ":3: unknown key \"bogus\""},
};

static void check_defaults(const struct clamd_settings *c)
{
    assert_int_equal(c->common.on_error, FILTER_ON_ERROR_TEMPFAIL);
    assert_int_equal(c->common.timeout, 60000);
    assert_string_equal(c->address, "127.0.0.1:3310");
    assert_int_equal(c->connect_timeout, 5000);
    assert_int_equal(c->max_size, 25 * 1024 * 1024);
    assert_int_equal(c->size_action, CLAMD_SIZE_ACCEPT);
    assert_int_equal(c->chunk_size, 64 * 1024);
    assert_int_equal(c->action, CLAMD_VIRUS_REJECT);
    assert_true(c->virus_score == 100);
    assert_true(c->clean_symbol);
}

static void check_row1(const struct clamd_settings *c)
{
    assert_int_equal(c->common.on_error, FILTER_ON_ERROR_SKIP);
    assert_int_equal(c->common.timeout, 20000);
    assert_string_equal(c->address, "/run/clamav/clamd.ctl");
    assert_int_equal(c->connect_timeout, 2000);
    assert_int_equal(c->max_size, 10 * 1024 * 1024);
    assert_int_equal(c->size_action, CLAMD_SIZE_REJECT);
    assert_int_equal(c->chunk_size, 16 * 1024);
    assert_int_equal(c->action, CLAMD_VIRUS_QUARANTINE);
    assert_true(c->virus_score == 50);
    assert_false(c->clean_symbol);
}

static void test_config(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(configs[i].filters, &errs);
        config_test_expect(i, cfg, &errs, configs[i].error);
        if (cfg != NULL)
            assert_ptr_equal(cfg->filtering.filters[0].module, &clamd_module);
        if (i == 0)
            check_defaults(cfg->filtering.filters[0].settings);
        if (i == 1)
            check_row1(cfg->filtering.filters[0].settings);
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

/* ---- scans through the chain ---- */

#define EICAR_MSG                                                                                  \
    "From: <a@example.test>\r\nTo: <b@example.test>\r\nSubject: eicar\r\n\r\n" CLAMD_TEST_EICAR    \
    "\r\n"
#define CLEAN_MSG "From: <a@example.test>\r\nSubject: clean\r\n\r\nhello\r\n"

struct fx {
    struct event_base *base;
    struct postern_config *cfg;
    struct filter_test ft;
    struct chain_session *s;
    int fd;
    struct filter_txn txn;
    struct filter_test_result r;
};

/* An instance from the keys of one clamd group (after name). */
static void fx_open(struct fx *fx, struct event_base *base, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fx_open(struct fx *fx, struct event_base *base, const char *fmt, ...)
{
    char keys[512], text[700];
    struct cfg_errors errs = {0};
    struct filter_env env = {.base = base, .hostname = "mx.postern.test"};
    va_list ap;

    memset(fx, 0, sizeof(*fx));
    fx->fd = -1;
    fx->base = base;
    va_start(ap, fmt);
    vsnprintf(keys, sizeof(keys), fmt, ap);
    va_end(ap);
    snprintf(text, sizeof(text), "filters = ( { name = \"clamd\"; %s } );", keys);
    fx->cfg = config_test_load(text, &errs);
    if (fx->cfg == NULL)
        fail_msg("%s: %s", text, errs.count ? errs.msgs[0] : "?");
    filter_test_open(&fx->ft, &clamd_module, &env, fx->cfg->filtering.filters[0].settings);
    fx->s = chain_session_new(fx->ft.chain);
    assert_non_null(fx->s);
}

static void fx_close(struct fx *fx)
{
    chain_session_free(&fx->s);
    filter_test_close(&fx->ft);
    postern_config_free(&fx->cfg);
    if (fx->fd >= 0)
        close(fx->fd);
}

static void write_all(int fd, const void *buf, size_t n)
{
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
}

/* The message as the spool holds it: between other octets (an EICAR
 * before and after, so that reading outside the window would be seen). */
static void fx_message(struct fx *fx, const void *msg, size_t len)
{
    static const char around[] = "ENVELOPE " CLAMD_TEST_EICAR "\n";
    char path[] = "/tmp/test-clamd-msg.XXXXXX";

    if (fx->fd >= 0)
        close(fx->fd);
    fx->fd = mkstemp(path);
    assert_true(fx->fd >= 0);
    unlink(path);
    write_all(fx->fd, around, sizeof(around) - 1);
    write_all(fx->fd, msg, len);
    write_all(fx->fd, around, sizeof(around) - 1);
    fx->txn = (struct filter_txn){.queue_id = "4Qtest01",
                                  .listener = "mx",
                                  .client_addr = "127.0.0.1",
                                  .client_name = "unknown",
                                  .sender = "a@example.test",
                                  .content_fd = fx->fd,
                                  .content_off = sizeof(around) - 1,
                                  .content_len = len};
}

/* A text message of about size octets, ending with tail. */
static char *big_message(size_t size, const char *tail, size_t *len_r)
{
    static const char head[] = "From: <a@example.test>\r\nSubject: big\r\n\r\n";
    size_t tlen = strlen(tail);
    char *m = malloc(size + sizeof(head) + tlen + 80);
    size_t o;

    assert_non_null(m);
    o = (size_t)snprintf(m, sizeof(head), "%s", head);
    for (unsigned line = 0; o < size; line++)
        o += (size_t)sprintf(m + o, "line %08u of a long clean message, nothing to see\r\n", line);
    memcpy(m + o, tail, tlen);
    *len_r = o + tlen;
    return m;
}

/* Scans msg; the result is in fx->r. Returns the ms it took. */
static long fx_scan(struct fx *fx, const void *msg, size_t len)
{
    fx_message(fx, msg, len);
    return filter_test_run(fx->base, fx->s, FILTER_EOM, &fx->txn, &fx->r, WAIT_MAX_MS);
}

static const struct filter_symbol *find_symbol(const struct chain_result *res, const char *name)
{
    for (size_t i = 0; i < res->symbol_count; i++)
        if (strcmp(res->symbols[i].name, name) == 0)
            return &res->symbols[i];
    return NULL;
}

static void assert_virus(const struct chain_result *res, enum filter_action action)
{
    const struct filter_symbol *v = find_symbol(res, "CLAMAV_VIRUS");

    assert_non_null(v);
    assert_true(v->score == 100);
    assert_string_equal(v->text, CLAMD_TEST_SIGNATURE ".UNOFFICIAL");
    assert_null(find_symbol(res, "CLAMAV_CLEAN"));
    assert_int_equal(res->action, action);
}

/* Not scanned: the default on_error, 451 4.7.1, and never clean. */
static void assert_tempfail(const struct chain_result *res)
{
    assert_int_equal(res->action, FILTER_ACTION_TEMPFAIL);
    assert_int_equal(res->reply.code, 451);
    assert_string_equal(res->reply.enhanced, "4.7.1");
    assert_null(find_symbol(res, "CLAMAV_CLEAN"));
    assert_null(find_symbol(res, "CLAMAV_VIRUS"));
}

struct group {
    struct event_base *base;
};

static int group_setup(void **state)
{
    struct group *g = calloc(1, sizeof(*g));

    if (g == NULL || (g->base = event_base_new()) == NULL)
        return -1;
    *state = g;
    return 0;
}

static int group_teardown(void **state)
{
    struct group *g = *state;

    event_base_free(g->base);
    free(g);
    return 0;
}

/* ---- against the real clamd ---- */

static void test_eicar_rejected(void **state)
{
    struct group *g = *state;
    struct fx fx;

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\";", clamd.port);
    fx_scan(&fx, EICAR_MSG, strlen(EICAR_MSG));
    assert_virus(&fx.r.res, FILTER_ACTION_REJECT);
    assert_int_equal(fx.r.res.reply.code, 554);
    assert_string_equal(fx.r.res.reply.enhanced, "5.7.1");
    assert_string_equal(fx.r.res.reply.text,
                        "Message rejected: virus " CLAMD_TEST_SIGNATURE ".UNOFFICIAL found");
    fx_close(&fx);
}

static void test_clean_accepted(void **state)
{
    struct group *g = *state;
    struct fx fx;

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\";", clamd.port);
    fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_int_equal(fx.r.res.action, FILTER_ACTION_NONE);
    assert_non_null(find_symbol(&fx.r.res, "CLAMAV_CLEAN"));
    assert_null(find_symbol(&fx.r.res, "CLAMAV_VIRUS"));
    /* an empty message is scanned too */
    fx_scan(&fx, "", 0);
    assert_int_equal(fx.r.res.action, FILTER_ACTION_NONE);
    fx_close(&fx);
    /* clean_symbol = false: nothing at all */
    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; clean_symbol = false;", clamd.port);
    fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_int_equal(fx.r.res.action, FILTER_ACTION_NONE);
    assert_int_equal(fx.r.res.symbol_count, 0);
    fx_close(&fx);
}

static void test_quarantine_and_none(void **state)
{
    struct group *g = *state;
    struct fx fx;

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; action = \"quarantine\";", clamd.port);
    fx_scan(&fx, EICAR_MSG, strlen(EICAR_MSG));
    assert_virus(&fx.r.res, FILTER_ACTION_QUARANTINE);
    assert_int_equal(fx.r.res.txn_action, FILTER_ACTION_QUARANTINE);
    fx_close(&fx);
    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; action = \"none\"; virus_score = 100;",
            clamd.port);
    fx_scan(&fx, EICAR_MSG, strlen(EICAR_MSG));
    assert_virus(&fx.r.res, FILTER_ACTION_NONE);
    assert_true(fx.r.res.score == 100);
    fx_close(&fx);
}

static void test_unix_socket(void **state)
{
    struct group *g = *state;
    struct fx fx;

    fx_open(&fx, g->base, "address = \"%s\";", clamd.socket);
    fx_scan(&fx, EICAR_MSG, strlen(EICAR_MSG));
    assert_virus(&fx.r.res, FILTER_ACTION_REJECT);
    fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_int_equal(fx.r.res.action, FILTER_ACTION_NONE);
    assert_non_null(find_symbol(&fx.r.res, "CLAMAV_CLEAN"));
    fx_close(&fx);
}

/* 400 KB in 4 KB chunks (below clamd's limits): the virus at the very end
 * is found, so every chunk arrived. */
static void test_many_chunks(void **state)
{
    struct group *g = *state;
    struct fx fx;
    size_t len;
    char *m = big_message(400 * 1024, CLAMD_TEST_EICAR "\r\n", &len);

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; chunk_size = \"4K\";", clamd.port);
    fx_scan(&fx, m, len);
    assert_virus(&fx.r.res, FILTER_ACTION_REJECT);
    m[len - strlen(CLAMD_TEST_EICAR "\r\n")] = '\0';
    fx_scan(&fx, m, strlen(m));
    assert_int_equal(fx.r.res.action, FILTER_ACTION_NONE);
    assert_non_null(find_symbol(&fx.r.res, "CLAMAV_CLEAN"));
    fx_close(&fx);
    free(m);
}

/* Over StreamMaxLength clamd answers "INSTREAM size limit exceeded. ERROR"
 * (maybe before the stream ends); over MaxFileSize, with AlertExceedsMax,
 * "Heuristics.Limits.Exceeded.MaxFileSize FOUND". Neither is clean. */
static void test_clamd_limits(void **state)
{
    struct group *g = *state;
    struct fx fx;
    size_t big_len, mid_len;
    char *big = big_message(CLAMD_TEST_STREAM_MAX * 2, "", &big_len);
    char *mid = big_message(CLAMD_TEST_FILE_MAX + 100 * 1024, "", &mid_len);

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\";", clamd.port);
    fx_scan(&fx, big, big_len);
    assert_tempfail(&fx.r.res);
    fx_scan(&fx, mid, mid_len);
    assert_tempfail(&fx.r.res);
    fx_close(&fx);
    /* on_error = "skip": CLAMD_ERROR, still not clean */
    fx_open(&fx, g->base, "address = \"%s\"; on_error = \"skip\";", clamd.socket);
    fx_scan(&fx, big, big_len);
    assert_int_equal(fx.r.res.action, FILTER_ACTION_NONE);
    assert_non_null(find_symbol(&fx.r.res, "CLAMD_ERROR"));
    assert_null(find_symbol(&fx.r.res, "CLAMAV_CLEAN"));
    fx_scan(&fx, mid, mid_len);
    assert_non_null(find_symbol(&fx.r.res, "CLAMD_ERROR"));
    assert_null(find_symbol(&fx.r.res, "CLAMAV_VIRUS"));
    fx_close(&fx);
    free(big);
    free(mid);
}

/* Over our max_size: not sent (so no clamd limit), the symbol and
 * size_action. */
static void test_max_size(void **state)
{
    static const struct {
        const char *size_action;
        enum filter_action action;
        unsigned code;
    } rows[] = {
        {.size_action = "accept", .action = FILTER_ACTION_NONE},
        {.size_action = "tempfail", .action = FILTER_ACTION_TEMPFAIL, .code = 452},
        {.size_action = "reject", .action = FILTER_ACTION_REJECT, .code = 552},
    };
    struct group *g = *state;
    struct fx fx;
    size_t len;
    char *m = big_message(CLAMD_TEST_STREAM_MAX * 2, CLAMD_TEST_EICAR, &len);

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        fx_open(&fx, g->base,
                "address = \"127.0.0.1:%d\"; max_size = \"1M\"; size_action = "
                "\"%s\";",
                clamd.port, rows[i].size_action);
        fx_scan(&fx, m, len);
        const struct filter_symbol *s = find_symbol(&fx.r.res, "CLAMAV_SKIPPED_SIZE");
        assert_non_null(s);
        assert_true(s->score == 0);
        assert_non_null(strstr(s->text, " > 1048576"));
        assert_null(find_symbol(&fx.r.res, "CLAMAV_CLEAN"));
        assert_null(find_symbol(&fx.r.res, "CLAMAV_VIRUS"));
        assert_int_equal(fx.r.res.action, rows[i].action);
        if (rows[i].code != 0)
            assert_int_equal(fx.r.res.reply.code, rows[i].code);
        /* at the limit it is scanned */
        fx_scan(&fx, EICAR_MSG, strlen(EICAR_MSG));
        assert_virus(&fx.r.res, FILTER_ACTION_REJECT);
        fx_close(&fx);
    }
    free(m);
}

/* One scan hangs (a stand-in that never answers); another on the same loop,
 * started after it, is answered by clamd and done long before. */
static void test_hang_holds_only_its_own(void **state)
{
    struct group *g = *state;
    struct standin hang;
    struct fx slow, fast;
    struct filter_test_result r[2];
    long start;

    standin_start(&hang, STANDIN_HANG);
    fx_open(&slow, g->base, "address = \"127.0.0.1:%d\"; timeout = \"2s\";", hang.port);
    fx_open(&fast, g->base, "address = \"127.0.0.1:%d\";", clamd.port);
    fx_message(&slow, CLEAN_MSG, strlen(CLEAN_MSG));
    fx_message(&fast, EICAR_MSG, strlen(EICAR_MSG));
    memset(r, 0, sizeof(r));
    start = now_ms();
    assert_non_null(chain_run(slow.s, FILTER_EOM, &slow.txn, filter_test_done, &r[0]));
    assert_non_null(chain_run(fast.s, FILTER_EOM, &fast.txn, filter_test_done, &r[1]));
    filter_test_wait(g->base, &r[1], 1, WAIT_MAX_MS);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[0].calls, 0);
    assert_true(now_ms() - start < 1500);
    assert_virus(&r[1].res, FILTER_ACTION_REJECT);
    filter_test_wait(g->base, &r[0], 1, WAIT_MAX_MS);
    assert_int_equal(r[0].calls, 1);
    assert_tempfail(&r[0].res);
    fx_close(&slow);
    fx_close(&fast);
    standin_stop(&hang);
}

/* ---- against stand-ins ---- */

struct ticker {
    struct event *ev;
    int ticks;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((struct ticker *)arg)->ticks++;
}

/* Never answers: the filter's timeout ends the scan, tempfail; meanwhile the
 * loop runs (a 50 ms timer keeps ticking). */
static void test_hang_times_out(void **state)
{
    struct group *g = *state;
    struct timeval tv = {.tv_usec = 50000};
    struct ticker t = {0};
    struct standin s;
    struct fx fx;
    long ms;

    standin_start(&s, STANDIN_HANG);
    t.ev = event_new(g->base, -1, EV_PERSIST, on_tick, &t);
    assert_non_null(t.ev);
    event_add(t.ev, &tv);
    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; timeout = \"1s\";", s.port);
    ms = fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_tempfail(&fx.r.res);
    assert_true(ms >= 900 && ms < 3000);
    assert_true(t.ticks >= 10);
    event_free(t.ev);
    fx_close(&fx);
    standin_stop(&s);
}

/* Each misbehaviour ends the scan at once (well within the timeout) as a
 * tempfail, never clean. */
static void test_faults(void **state)
{
    static const struct {
        enum standin_mode mode;
        size_t size; /* of the message; 0 = a small one */
    } rows[] = {
        {.mode = STANDIN_GARBAGE},
        {.mode = STANDIN_CLOSE},
        {.mode = STANDIN_CLOSE, .size = 4 * 1024 * 1024},
        {.mode = STANDIN_LONG},
        {.mode = STANDIN_SILENT_EOF},
        {.mode = STANDIN_EARLY_OK, .size = 16 * 1024 * 1024},
    };
    struct group *g = *state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct standin s;
        struct fx fx;
        size_t len = strlen(CLEAN_MSG);
        char *m = rows[i].size > 0 ? big_message(rows[i].size, "", &len) : NULL;
        long ms;

        standin_start(&s, rows[i].mode);
        fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; timeout = \"10s\"; max_size = \"64M\";",
                s.port);
        ms = fx_scan(&fx, m != NULL ? m : CLEAN_MSG, len);
        if (fx.r.res.action != FILTER_ACTION_TEMPFAIL || ms > 5000)
            fail_msg("row %zu: action %s after %ld ms", i, filter_action_name(fx.r.res.action), ms);
        assert_tempfail(&fx.r.res);
        fx_close(&fx);
        standin_stop(&s);
        free(m);
    }
}

/* clamd down: nothing listens on the port, no socket file; the connection
 * is refused at once. */
static void test_clamd_down(void **state)
{
    struct group *g = *state;
    struct fx fx;
    long ms;

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\";", clamd_test_free_port());
    ms = fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_tempfail(&fx.r.res);
    assert_true(ms < 1000);
    fx_close(&fx);
    fx_open(&fx, g->base, "address = \"/tmp/test-clamd-no-such-dir/clamd.sock\";");
    ms = fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_tempfail(&fx.r.res);
    assert_true(ms < 1000);
    fx_close(&fx);
    /* on_error = "skip": the admin's choice; the message is marked, never clean */
    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\"; on_error = \"skip\";",
            clamd_test_free_port());
    fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_non_null(find_symbol(&fx.r.res, "CLAMD_ERROR"));
    assert_null(find_symbol(&fx.r.res, "CLAMAV_CLEAN"));
    fx_close(&fx);
}

/* A listener whose accept queue is full and that never accepts: the SYN is
 * dropped, the connect never completes; connect_timeout ends it. */
static void test_connect_timeout(void **state)
{
    struct group *g = *state;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int fill[4];
    struct fx fx;
    long ms;

    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
    for (size_t i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fill[i] >= 0);
        (void)connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
    }
    usleep(100000);
    fx_open(&fx, g->base,
            "address = \"127.0.0.1:%d\"; connect_timeout = \"300ms\"; "
            "timeout = \"10s\";",
            ntohs(sin.sin_port));
    ms = fx_scan(&fx, CLEAN_MSG, strlen(CLEAN_MSG));
    assert_tempfail(&fx.r.res);
    assert_true(ms >= 250 && ms < 3000);
    fx_close(&fx);
    for (size_t i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

/* No content at the end of message (a gateway that could not give it):
 * not scanned, so not clean. */
static void test_no_content(void **state)
{
    struct group *g = *state;
    struct fx fx;

    fx_open(&fx, g->base, "address = \"127.0.0.1:%d\";", clamd_test_free_port());
    fx.txn = (struct filter_txn){.queue_id = "4Qtest02", .listener = "mx", .content_fd = -1};
    filter_test_run(g->base, fx.s, FILTER_EOM, &fx.txn, &fx.r, WAIT_MAX_MS);
    assert_tempfail(&fx.r.res);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_reply_parse),
        cmocka_unit_test(test_reply_end),
        cmocka_unit_test(test_address),
        cmocka_unit_test(test_config),
    };
    const struct CMUnitTest standin_tests[] = {
        cmocka_unit_test(test_hang_times_out), cmocka_unit_test(test_faults),
        cmocka_unit_test(test_clamd_down),     cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_no_content),
    };
    const struct CMUnitTest clamd_tests[] = {
        cmocka_unit_test(test_eicar_rejected),
        cmocka_unit_test(test_clean_accepted),
        cmocka_unit_test(test_quarantine_and_none),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_many_chunks),
        cmocka_unit_test(test_clamd_limits),
        cmocka_unit_test(test_max_size),
        cmocka_unit_test(test_hang_holds_only_its_own),
    };
    int failed;

    signal(SIGPIPE, SIG_IGN);
    failed = cmocka_run_group_tests_name("clamd", plain_tests, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("clamd-standins", standin_tests, group_setup, group_teardown);
    if (clamd_test_start(&clamd) < 0) {
        fprintf(stderr, "test-clamd: real clamd part skipped: %s\n", clamd.why);
        clamd_test_stop(&clamd);
        return failed != 0 ? 1 : 77;
    }
    failed += cmocka_run_group_tests_name("clamd-real", clamd_tests, group_setup, group_teardown);
    clamd_test_stop(&clamd);
    return failed != 0 ? 1 : 0;
}
