/*
 * test-milter — the milter filter without a milter: its addresses (every
 * form, and what is refused), its config (a row per key and per error:
 * bad values are errors that name file and line; the defaults), macro
 * names, the spooled message as header fields and body chunks (folds,
 * leading white space, a header without an empty line, a line that is not
 * a field, cut fields, chunks), and the filter through the chain against
 * milters that are not there (refused: on_error applies at once, and again
 * at once for the rest of the session).
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <cmocka.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/milter-private.h"
#include "filters/milter.h"
#include "gateway/server-config.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"

static void test_addresses(void **state)
{
    static const struct {
        const char *text;
        int family;
        const char *addr; /* host or path */
        unsigned port;
        const char *error;
    } rows[] = {
        {.text = "inet:127.0.0.1:8891", .family = AF_INET, .addr = "127.0.0.1", .port = 8891},
        {.text = "inet:8891@127.0.0.1", .family = AF_INET, .addr = "127.0.0.1", .port = 8891},
        {.text = "inet:localhost:25", .family = AF_INET, .addr = "127.0.0.1", .port = 25},
        {.text = "inet6:[::1]:8891", .family = AF_INET6, .addr = "::1", .port = 8891},
        {.text = "inet6:8891@[::1]", .family = AF_INET6, .addr = "::1", .port = 8891},
        {.text = "inet6:8891@::1", .family = AF_INET6, .addr = "::1", .port = 8891},
        {.text = "tcp:192.0.2.1:1", .family = AF_INET, .addr = "192.0.2.1", .port = 1},
        {.text = "127.0.0.1:65535", .family = AF_INET, .addr = "127.0.0.1", .port = 65535},
        {.text = "[2001:db8::1]:9", .family = AF_INET6, .addr = "2001:db8::1", .port = 9},
        {.text = "unix:/run/milter.sock", .family = AF_UNIX, .addr = "/run/milter.sock"},
        {.text = "local:/run/milter.sock", .family = AF_UNIX, .addr = "/run/milter.sock"},
        {.text = "/run/milter.sock", .family = AF_UNIX, .addr = "/run/milter.sock"},
        {.text = "", .error = "empty"},
        {.text = "inet:127.0.0.1", .error = "HOST:PORT"},
        {.text = "inet:127.0.0.1:0", .error = "HOST:PORT"},
        {.text = "inet:127.0.0.1:65536", .error = "HOST:PORT"},
        {.text = "inet:127.0.0.1:88x", .error = "HOST:PORT"},
        {.text = "inet:milter.example.org:8891", .error = "numeric"},
        {.text = "inet:x@127.0.0.1", .error = "bad port"},
        {.text = "inet:25@milter.example.org", .error = "numeric"},
        {.text = "unix:relative/path", .error = "absolute path"},
        {.text = "unix:/a/very/long/path/that/does/not/fit/into/sun_path/because/it/goes/on/"
                 "and/on/and/on/and/on/and/on/and/on/and/on.sock",
         .error = "too long"},
        {.text = "milter", .error = "HOST:PORT"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct milter_address a;
        const char *why = NULL;
        char text[INET6_ADDRSTRLEN];
        int rc = milter_address_parse(rows[i].text, &a, &why);
        if (rows[i].error != NULL) {
            if (rc != -1 || why == NULL || strstr(why, rows[i].error) == NULL)
                fail_msg("row %zu (%s): %d %s", i, rows[i].text, rc, why ? why : "-");
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu (%s): %s", i, rows[i].text, why);
        assert_int_equal(a.sa.ss_family, rows[i].family);
        if (rows[i].family == AF_UNIX) {
            assert_false(a.tcp);
            assert_string_equal(((struct sockaddr_un *)&a.sa)->sun_path, rows[i].addr);
        } else if (rows[i].family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&a.sa;
            assert_true(a.tcp);
            assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)),
                                rows[i].addr);
            assert_int_equal(ntohs(sin->sin_port), rows[i].port);
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.sa;
            assert_string_equal(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)),
                                rows[i].addr);
            assert_int_equal(ntohs(sin6->sin6_port), rows[i].port);
        }
    }
}

/* ---- config ---- */

#define MILTER(keys) "filters = ( { name = \"milter\"; " keys " } );"
#define ADDR "address = \"inet:127.0.0.1:8891\"; "

static void check_row0(const struct postern_config *cfg);
static void check_defaults(const struct postern_config *cfg);

static const struct config_test_row configs[] = {
    /* 0: every key, checked in check_row0 */
    {.filters = MILTER("id = \"dkim\"; on_error = \"skip\"; timeout = \"2m\"; address = "
                       "\"unix:/run/opendkim.sock\"; connect_timeout = \"2s\"; command_timeout "
                       "= \"3s\"; content_timeout = \"1m\"; idle_timeout = \"20s\"; "
                       "connect_macros = [\"j\", \"{daemon_name} _\"]; helo_macros = "
                       "\"client_addr\"; mail_macros = []; rcpt_macros = \"i {rcpt_addr}\"; "
                       "data_macros = \"i\"; eoh_macros = \"i\"; eom_macros = [\"i\", "
                       "\"{auth_authen}\"];"),
     .check = check_row0},
    /* 1: the defaults, checked in check_defaults */
    {.filters = MILTER(ADDR), .check = check_defaults},
    {.filters = MILTER(""), .error = "milter: address is required"},
    {.filters = "filters = ( { name = \"milter\";\n address = \"inet:nowhere:1\"; } );",
     .error = ":3: milter: address \"inet:nowhere:1\": host must be a numeric address"},
    {.filters = MILTER("address = 8891;"), .error = "address:"},
    {.filters = MILTER(ADDR "on_error = \"later\";"), .error = "on_error: unknown value"},
    {.filters = MILTER(ADDR "command_timeout = \"50ms\";"), .error = "command_timeout:"},
    {.filters = MILTER(ADDR "idle_timeout = \"2h\";"), .error = "idle_timeout:"},
    {.filters = "filters = ( { name = \"milter\"; " ADDR "\n content_timeout = \"20m\"; } );",
     .error = ":3: milter: content_timeout (1200000 ms) is longer than timeout (600000 ms)"},
    {.filters = MILTER(ADDR "timeout = \"6m\"; content_timeout = \"6m\";")},
    {.filters =
         "filters = ( { name = \"milter\"; " ADDR "\n rcpt_macros = \"i {tls_version}\"; } );",
     .error = ":3: milter: rcpt_macros: unknown macro \"{tls_version}\""},
    {.filters = MILTER(ADDR "connect_macros = [1];"), .error = "every element must be a string"},
    {.filters = MILTER(ADDR "frobnicate = 1;"), .error = "unknown key \"frobnicate\""},
    /* two milters need two ids */
    {.filters = "filters = ( { name = \"milter\"; " ADDR "},\n { name = \"milter\"; " ADDR "} );",
     .error = ":3: filter id \"milter\" used twice"},
    {.filters = "filters = ( { name = \"milter\"; id = \"a\"; " ADDR "},\n { name = \"milter\"; "
                "id = \"b\"; address = \"unix:/x\"; } );"},
};

static void check_row0(const struct postern_config *cfg)
{
    const struct milter_settings *m = cfg->filtering.filters[0].settings;
    struct milter *inst;
    char err[256];

    assert_ptr_equal(cfg->filtering.filters[0].module, &milter_module);
    assert_string_equal(m->common.id, "dkim");
    assert_int_equal(m->common.on_error, FILTER_ON_ERROR_SKIP);
    assert_int_equal(m->common.timeout, 120000);
    assert_string_equal(m->address, "unix:/run/opendkim.sock");
    assert_int_equal(m->connect_timeout, 2000);
    assert_int_equal(m->command_timeout, 3000);
    assert_int_equal(m->content_timeout, 60000);
    assert_int_equal(m->idle_timeout, 20000);
    assert_int_equal(m->macros[MILTER_M_CONNECT].count, 2);
    assert_int_equal(m->macros[MILTER_M_MAIL].count, 0);
    /* the instance: names normalized, the symbol prefix from the id */
    assert_int_equal(milter_new(NULL, "mx.test", m, &inst, err, sizeof(err)), 0);
    assert_string_equal(inst->prefix, "MILTER_DKIM");
    assert_int_equal(inst->macros[MILTER_M_CONNECT].count, 3);
    assert_string_equal(inst->macros[MILTER_M_CONNECT].names[1], "{daemon_name}");
    assert_string_equal(inst->macros[MILTER_M_CONNECT].names[2], "_");
    assert_string_equal(inst->macros[MILTER_M_HELO].names[0], "{client_addr}");
    assert_int_equal(inst->macros[MILTER_M_EOM].count, 2);
    assert_false(inst->addr.tcp);
    milter_free(&inst);
    assert_null(inst);
}

static void check_defaults(const struct postern_config *cfg)
{
    const struct milter_settings *m = cfg->filtering.filters[0].settings;
    struct milter *inst;
    char err[256];

    assert_int_equal(m->common.on_error, FILTER_ON_ERROR_TEMPFAIL);
    assert_int_equal(m->common.timeout, 600000);
    assert_int_equal(m->connect_timeout, 30000);
    assert_int_equal(m->command_timeout, 30000);
    assert_int_equal(m->content_timeout, 300000);
    assert_int_equal(m->idle_timeout, 10000);
    assert_int_equal(milter_new(NULL, "mx.test", m, &inst, err, sizeof(err)), 0);
    assert_string_equal(inst->prefix, "MILTER");
    assert_string_equal(inst->id, "milter");
    assert_true(inst->addr.tcp);
    {
        static const char *const want[MILTER_M_COUNT][6] = {
            [MILTER_M_CONNECT] = {"j", "{daemon_name}", "v", "_", "{client_addr}", "{client_name}"},
            [MILTER_M_MAIL] = {"i", "{auth_authen}", "{mail_addr}"},
            [MILTER_M_RCPT] = {"i", "{rcpt_addr}"},
            [MILTER_M_DATA] = {"i"},
            [MILTER_M_EOH] = {"i"},
            [MILTER_M_EOM] = {"i"},
        };
        for (size_t st = 0; st < MILTER_M_COUNT; st++) {
            size_t n = 0;
            while (n < 6 && want[st][n] != NULL)
                n++;
            assert_int_equal(inst->macros[st].count, n);
            for (size_t i = 0; i < n; i++)
                assert_string_equal(inst->macros[st].names[i], want[st][i]);
        }
    }
    milter_free(&inst);
}

static void test_config(void **state)
{
    (void)state;
    config_test_rows(configs, sizeof(configs) / sizeof(configs[0]));
}

static void test_macro_names(void **state)
{
    static const struct {
        const char *in, *out;
        bool known;
    } rows[] = {
        {"j", "j", true},
        {"i", "i", true},
        {"_", "_", true},
        {"daemon_name", "{daemon_name}", true},
        {"{daemon_name}", "{daemon_name}", true},
        {"{client_addr}", "{client_addr}", true},
        {"rcpt_addr", "{rcpt_addr}", true},
        {"{tls_version}", "{tls_version}", false},
        {"x", "x", false},
        {"{daemon_addr}", "{daemon_addr}", false},
    };
    char out[MILTER_MACRO_NAME_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        milter_macro_normalize(rows[i].in, strlen(rows[i].in), out, sizeof(out));
        assert_string_equal(out, rows[i].out);
        assert_int_equal(milter_macro_known(out), rows[i].known);
    }
}

/* ---- the spooled message ---- */

static int content_fd(const char *text)
{
    char path[] = "/tmp/postern-milter-msg-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, "SPOOLHEADER", 11), 11); /* content starts at 11 */
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    return fd;
}

static void test_message_reader(void **state)
{
    static const struct {
        const char *msg;
        bool leadspc;
        const char *fields; /* "name=value|..." */
        const char *body;
    } rows[] = {
        {.msg = "Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n",
         .fields = "Subject=hi|To=a@b|",
         .body = "body\r\n"},
        {.msg = "Subject:  two spaces\r\n\r\n", .fields = "Subject=two spaces|", .body = ""},
        {.msg = "Subject:  two spaces\r\n\r\nx",
         .leadspc = true,
         .fields = "Subject=  two spaces|",
         .body = "x"},
        {.msg = "X-F: one\r\n\ttwo\r\n  three\r\nY: z\r\n\r\nb",
         .fields = "X-F=one\n\ttwo\n  three|Y=z|",
         .body = "b"},
        {.msg = "Subject: no body\r\n", .fields = "Subject=no body|", .body = ""},
        {.msg = "\r\nonly body\r\n", .fields = "", .body = "only body\r\n"},
        {.msg = "A: 1\r\nnot a field\r\nrest\r\n",
         .fields = "A=1|",
         .body = "not a field\r\nrest\r\n"},
        {.msg = " leading\r\nA: 1\r\n\r\n", .fields = "", .body = " leading\r\nA: 1\r\n\r\n"},
        {.msg = "Name :value\r\n\r\n", .fields = "Name=value|", .body = ""},
        {.msg = "A: lf only\nB: x\n\nbody\n", .fields = "A=lf only|B=x|", .body = "body\n"},
        {.msg = "Empty:\r\n\r\n", .fields = "Empty=|", .body = ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int fd = content_fd(rows[i].msg);
        const char *why = NULL, *name, *value;
        struct milter_msg *msg = milter_msg_open(fd, 11, strlen(rows[i].msg), &why);
        char fields[512] = "", body[512] = "";
        const uint8_t *data;
        size_t len;

        if (msg == NULL)
            fail_msg("row %zu: %s", i, why);
        while (milter_msg_header(msg, rows[i].leadspc, &name, &value) == 1)
            snprintf(fields + strlen(fields), sizeof(fields) - strlen(fields), "%s=%s|", name,
                     value);
        while (milter_msg_body(msg, &data, &len, &why) == 1)
            snprintf(body + strlen(body), sizeof(body) - strlen(body), "%.*s", (int)len, data);
        if (strcmp(fields, rows[i].fields) != 0 || strcmp(body, rows[i].body) != 0)
            fail_msg("row %zu: fields \"%s\" body \"%s\"", i, fields, body);
        milter_msg_free(&msg);
        assert_null(msg);
        close(fd);
    }
}

static void test_message_chunks_and_limits(void **state)
{
    size_t body_len = 3 * MILTER_CHUNK_MAX + 100, total = 0, chunks = 0;
    size_t long_value = 70000;
    char *text = malloc(long_value + body_len + 64);
    const char *why, *name, *value;
    const uint8_t *data;
    size_t len, o;
    struct milter_msg *msg;
    int fd;

    (void)state;
    o = (size_t)sprintf(text, "X-Long: ");
    memset(text + o, 'v', long_value);
    o += long_value;
    o += (size_t)sprintf(text + o, "\r\n\r\n");
    memset(text + o, 'b', body_len);
    text[o + body_len] = '\0';
    fd = content_fd(text);
    msg = milter_msg_open(fd, 11, strlen(text), &why);
    assert_non_null(msg);
    assert_int_equal(milter_msg_header(msg, false, &name, &value), 1);
    /* cut so that name and value fit one frame */
    assert_int_equal(strlen(name) + 1 + strlen(value) + 1, MILTER_CHUNK_MAX);
    assert_int_equal(milter_msg_header(msg, false, &name, &value), 0);
    while (milter_msg_body(msg, &data, &len, &why) == 1) {
        assert_true(len <= MILTER_CHUNK_MAX);
        total += len;
        chunks++;
    }
    assert_int_equal(total, body_len);
    assert_int_equal(chunks, 4);
    milter_msg_free(&msg);
    /* content shorter than the spool says: an error, not a hang */
    msg = milter_msg_open(fd, 11, strlen(text) + 10, &why);
    assert_non_null(msg);
    while (milter_msg_header(msg, false, &name, &value) == 1)
        ;
    while (milter_msg_body(msg, &data, &len, &why) == 1)
        ;
    assert_string_equal(why, "the message is shorter than the spool says");
    milter_msg_free(&msg);
    close(fd);
    free(text);
}

/* ---- through the chain, no milter there ---- */

static void test_milter_refused(void **state)
{
    struct event_base *base = event_base_new();
    struct cfg_errors errs = {0};
    struct postern_config *cfg;
    struct filter_test ft;
    struct filter_env env = {.base = base, .hostname = "mx.test"};
    struct filter_test_result r;
    struct chain_session *s;
    struct netaddr a;
    struct filter_txn txn = {
        .listener = "mx", .client_addr = "127.0.0.1", .client_name = "unknown", .content_fd = -1};
    char path[64];

    (void)state;
    assert_non_null(base);
    snprintf(path, sizeof(path), "/tmp/postern-no-milter-%d.sock", (int)getpid());
    {
        char text[256];
        snprintf(text, sizeof(text), MILTER("address = \"unix:%s\"; on_error = \"skip\";"), path);
        cfg = config_test_load(text, &errs);
    }
    assert_non_null(cfg);
    assert_int_equal(netaddr_parse("127.0.0.1", &a), 0);
    txn.client = a;
    filter_test_open(&ft, &milter_module, &env, cfg->filtering.filters[0].settings);
    s = chain_session_new(ft.chain);
    assert_non_null(s);
    /* nothing listens: the error at once, on_error skip adds MILTER_ERROR */
    assert_true(filter_test_run(base, s, FILTER_CONNECT, &txn, &r, 2000) < 1000);
    assert_int_equal(r.res.action, FILTER_ACTION_NONE);
    assert_int_equal(r.res.symbol_count, 1);
    assert_string_equal(r.res.symbols[0].name, "MILTER_ERROR");
    /* and for the rest of the session without trying again */
    txn.helo = "client.test";
    assert_true(filter_test_run(base, s, FILTER_HELO, &txn, &r, 2000) < 1000);
    assert_int_equal(r.res.symbol_count, 2);
    chain_session_free(&s);
    filter_test_close(&ft);
    postern_config_free(&cfg);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_macro_names),
        cmocka_unit_test(test_message_reader),
        cmocka_unit_test(test_message_chunks_and_limits),
        cmocka_unit_test(test_milter_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
