/*
 * test-attachments-filter — the attachments filter as posternd runs it:
 * its config table (a row per key and per error: bad values are errors
 * that name file and line; the defaults), and the filter driven through
 * the chain at FILTER_EOM on a test's event loop, the message in a spool-
 * like file read from content_fd at content_off: the action, reply and
 * symbols of a reject, a quarantine, a MIME bomb and a clean message; a
 * strip recorded as message edits (the new body; for a message that is
 * itself the attachment, its header edits too); a file it cannot read
 * (on_error); calls cancelled while their job runs, and an instance
 * destroyed with jobs in flight (safe under ASan); a job past the timeout,
 * stopped by its flag; several sessions at once on the instance's threads.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "filters/attachments.h"
#include "filters/chain.h"
#include "filters/edit.h"
#include "gateway/server-config.h"
#include "tests/unit/attachments-test.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/loop-test.h"

#define RUN_MAX_MS 10000
#define B "b1"
#define ATT(keys) "filters = ( { name = \"attachments\"; " keys " } );"
#define RULES                                                                                      \
    "rules = ( { id = \"exe\"; extensions = [\"exe\"]; },"                                         \
    " { id = \"js\"; extensions = [\"js\"]; action = \"quarantine\"; },"                           \
    " { id = \"bat\"; extensions = [\"bat\"]; action = \"strip\"; } );"

/* ---- config ---- */

static void check_row0(const struct postern_config *cfg);
static void check_defaults(const struct postern_config *cfg);

static const struct config_test_row configs[] = {
    /* 0: every key, checked in check_row0 */
    {.filters = ATT("id = \"att\"; on_error = \"skip\"; timeout = \"20s\"; threads = 4; "
                    "max_size = \"10M\"; max_depth = 10; max_parts = 500; max_headers = 200; "
                    "max_header_size = \"64K\"; mime_limit_action = \"tempfail\"; "
                    "archive_max_depth = 2; archive_max_entries = 50; "
                    "archive_max_size = \"16M\"; archive_max_ratio = 50; "
                    "encrypted_action = \"quarantine\"; archive_limit_action = \"strip\"; "
                    "rules = ( { id = \"exe\"; name = [\"*.exe\"]; extensions = [\".EXE\", "
                    "\"scr\"]; double_extension = true; declared_type = [\"application/*\"]; "
                    "detected_type = [\"application/x-dosexec\"]; in_archives = false; "
                    "action = \"strip\"; }, { extensions = \"js\"; } );"),
     .check = check_row0},
    /* 1: the defaults, checked in check_defaults */
    {.filters = ATT(""), .check = check_defaults},
    {.filters = ATT("rules = ( { id = \"x\"; action = \"reject\"; } );"),
     .error = "attachments: a rule needs name, extensions, double_extension, declared_type or "
              "detected_type"},
    {.filters = "filters = ( { name = \"attachments\";\n rules = ( { extensions = [\"exe\"];\n"
                " frobnicate = 1; } ); } );",
     .error = ":4: unknown key \"frobnicate\""},
    {.filters = ATT("rules = ( { extensions = [\"exe\"]; action = \"delete\"; } );"),
     .error = "action: unknown value \"delete\""},
    {.filters = "filters = ( { name = \"attachments\";\n mime_limit_action = \"strip\"; } );",
     .error = ":3: mime_limit_action: unknown value \"strip\""},
    {.filters = ATT("encrypted_action = \"tempfail\";"),
     .error = "encrypted_action: unknown value \"tempfail\""},
    {.filters = ATT("rules = ( { declared_type = [\"exe\"]; } );"),
     .error = "attachments: declared_type \"exe\" is not a type/subtype glob"},
    {.filters = ATT("rules = ( { detected_type = [\"application/pdf\", \"pdf\"]; } );"),
     .error = "attachments: detected_type \"pdf\" is not a type/subtype glob"},
    {.filters = ATT("rules = ( { extensions = [\"*.exe\"]; } );"),
     .error = "attachments: extension \"*.exe\" is not an extension"},
    {.filters = ATT("rules = ( { extensions = [\".\"]; } );"),
     .error = "attachments: extension \".\" is not an extension"},
    {.filters = ATT("rules = ( { name = [\"\"]; } );"), .error = "attachments: an empty name glob"},
    {.filters = "filters = ( { name = \"attachments\"; rules = ( { id = \"a\"; name = \"*.x\"; },"
                "\n { id = \"a\"; name = \"*.y\"; } ); } );",
     .error = ":3: attachments: rule id \"a\" used twice"},
    {.filters = ATT("rules = ( { id = \"a b\"; name = \"*.x\"; } );"),
     .error = "attachments: id \"a b\" must be"},
    {.filters = ATT("rules = { name = \"*.x\"; };"), .error = "attachments: rules must be a list"},
    {.filters = ATT("rules = ( \"*.exe\" );"), .error = "each attachments rule must be a group"},
    {.filters = ATT("rules = ();")},
    {.filters = ATT("max_depth = 0;"), .error = "max_depth:"},
    {.filters = ATT("max_depth = 101;"), .error = "max_depth:"},
    {.filters = ATT("archive_max_depth = 11;"), .error = "archive_max_depth:"},
    {.filters = ATT("archive_max_depth = 0;")},
    {.filters = ATT("archive_max_ratio = 1;"), .error = "archive_max_ratio:"},
    {.filters = ATT("threads = 0;"), .error = "threads:"},
    {.filters = ATT("max_header_size = \"100\";"), .error = "max_header_size:"},
    {.filters = ATT("on_error = \"maybe\";"), .error = "on_error: unknown value"},
};

static void check_row0(const struct postern_config *cfg)
{
    const struct att_settings *a = cfg->filtering.filters[0].settings;
    const struct att_rule_settings *r = &a->rules[0];

    assert_ptr_equal(cfg->filtering.filters[0].module, &attachments_module);
    assert_int_equal(a->common.on_error, FILTER_ON_ERROR_SKIP);
    assert_int_equal(a->common.timeout, 20000);
    assert_int_equal(a->threads, 4);
    assert_int_equal(a->max_size, 10 << 20);
    assert_int_equal(a->max_depth, 10);
    assert_int_equal(a->max_parts, 500);
    assert_int_equal(a->max_headers, 200);
    assert_int_equal(a->max_header_size, 64 << 10);
    assert_int_equal(att_limit_action(a->mime_limit_action), ATT_ACTION_TEMPFAIL);
    assert_int_equal(a->archive_max_depth, 2);
    assert_int_equal(a->archive_max_entries, 50);
    assert_int_equal(a->archive_max_size, 16 << 20);
    assert_int_equal(a->archive_max_ratio, 50);
    assert_int_equal(att_file_action(a->encrypted_action), ATT_ACTION_QUARANTINE);
    assert_int_equal(att_file_action(a->archive_limit_action), ATT_ACTION_STRIP);
    assert_int_equal(a->rule_count, 2);
    assert_string_equal(r->id, "exe");
    assert_string_equal(r->name.items[0], "*.exe");
    assert_int_equal(r->extensions.count, 2);
    assert_true(r->double_extension);
    assert_string_equal(r->declared_type.items[0], "application/*");
    assert_string_equal(r->detected_type.items[0], "application/x-dosexec");
    assert_false(r->in_archives);
    assert_int_equal(att_file_action(r->action), ATT_ACTION_STRIP);
    assert_null(a->rules[1].id);
    assert_true(a->rules[1].in_archives);
    assert_int_equal(att_file_action(a->rules[1].action), ATT_ACTION_REJECT);
}

static void check_defaults(const struct postern_config *cfg)
{
    const struct att_settings *a = cfg->filtering.filters[0].settings;

    assert_int_equal(a->common.on_error, FILTER_ON_ERROR_TEMPFAIL);
    assert_int_equal(a->common.timeout, 60000);
    assert_int_equal(a->threads, 2);
    assert_int_equal(a->max_size, 64 << 20);
    assert_int_equal(a->max_depth, 20);
    assert_int_equal(a->max_parts, 1000);
    assert_int_equal(a->max_headers, 1000);
    assert_int_equal(a->max_header_size, 256 << 10);
    assert_int_equal(att_limit_action(a->mime_limit_action), ATT_ACTION_REJECT);
    assert_int_equal(a->archive_max_depth, 3);
    assert_int_equal(a->archive_max_entries, 1000);
    assert_int_equal(a->archive_max_size, 64 << 20);
    assert_int_equal(a->archive_max_ratio, 100);
    assert_int_equal(att_file_action(a->encrypted_action), ATT_ACTION_REJECT);
    assert_int_equal(att_file_action(a->archive_limit_action), ATT_ACTION_REJECT);
    assert_int_equal(a->rule_count, 0);
}

static void test_config(void **state)
{
    (void)state;
    config_test_rows(configs, sizeof(configs) / sizeof(configs[0]));
}

/* ---- through the chain ---- */

struct fx {
    struct event_base *base;
    struct postern_config *cfg;
    struct filter_test ft;
};

static void fx_new(struct fx *fx, const char *filters)
{
    struct cfg_errors errs = {0};

    memset(fx, 0, sizeof(*fx));
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->cfg = config_test_load(filters, &errs);
    if (fx->cfg == NULL)
        fail_msg("%s", errs.count ? errs.msgs[0] : "?");
    struct filter_env env = {.base = fx->base, .hostname = "mx.postern.test"};
    filter_test_open(&fx->ft, &attachments_module, &env, fx->cfg->filtering.filters[0].settings);
}

static void fx_free(struct fx *fx)
{
    filter_test_close(&fx->ft);
    postern_config_free(&fx->cfg);
    event_base_free(fx->base);
}

/* A spool-like file: junk, then the message at offset 100. */
static int spool_file(const struct mbuf *m, uint64_t *off)
{
    char path[] = "/tmp/test-attachments-XXXXXX";
    char junk[100];
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    memset(junk, '#', sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_int_equal(write(fd, m->p, m->len), (ssize_t)m->len);
    *off = sizeof(junk);
    return fd;
}

static struct filter_txn eom_txn(int fd, uint64_t off, uint64_t len)
{
    return (struct filter_txn){.queue_id = "4AbCdEf",
                               .listener = "mx",
                               .client_addr = "192.0.2.1",
                               .client_name = "unknown",
                               .sender = "a@example.test",
                               .content_fd = fd,
                               .content_off = off,
                               .content_len = len};
}

static unsigned char pe[1024];

static void m_exe(struct mbuf *m)
{
    msg_begin(m, B);
    msg_file(m, B, "application/octet-stream", NULL, "invoice.pdf.exe", pe, sizeof(pe));
    msg_end(m, B);
}

static void m_js(struct mbuf *m)
{
    msg_begin(m, B);
    msg_file(m, B, "text/javascript", NULL, "pay.js", "alert(1)", 8);
    msg_end(m, B);
}

static void m_clean(struct mbuf *m)
{
    msg_begin(m, B);
    msg_file(m, B, "application/pdf", NULL, "invoice.pdf", "%PDF-1.4\n%%EOF\n", 15);
    msg_end(m, B);
}

static void m_bomb(struct mbuf *m)
{
    size_t len;
    char *msg = bomb_nested(1000, "boundary", &len);

    mbuf_add(m, msg, len);
    free(msg);
}

static void m_encrypted(struct mbuf *m)
{
    struct test_entry e = {.name = "a.txt", .data = "secret", .len = 6};
    size_t len;
    void *a = archive_build("zip-encrypted", &e, 1, &len);

    msg_begin(m, B);
    msg_file(m, B, "application/zip", NULL, "secret.zip", a, len);
    msg_end(m, B);
    free(a);
}

static const struct {
    const char *what;
    void (*build)(struct mbuf *m);
    const char *keys;
    enum filter_action action;
    unsigned code;
    const char *enhanced, *text; /* substring of the reply text */
    const char *symbol, *symbol_text;
} eom_rows[] = {
    {.what = "a double-extension executable: 554 with the file and the rule",
     .build = m_exe,
     .action = FILTER_ACTION_REJECT,
     .code = 554,
     .enhanced = "5.7.1",
     .text = "Attachment \"invoice.pdf.exe\" refused by rule exe",
     .symbol = "ATTACH_REJECTED",
     .symbol_text = "invoice.pdf.exe: exe"},
    {.what = "quarantine: held",
     .build = m_js,
     .action = FILTER_ACTION_QUARANTINE,
     .symbol = "ATTACH_QUARANTINE",
     .symbol_text = "pay.js: js"},
    {.what = "a clean message", .build = m_clean, .action = FILTER_ACTION_NONE},
    {.what = "1,000 nested multiparts: 552 5.6.0",
     .build = m_bomb,
     .action = FILTER_ACTION_REJECT,
     .code = 552,
     .enhanced = "5.6.0",
     .text = "Message refused: MIME structure over a limit (nesting depth over 20)",
     .symbol = "MIME_LIMIT",
     .symbol_text = "nesting depth over 20"},
    {.what = "the MIME limit held instead",
     .build = m_bomb,
     .keys = "mime_limit_action = \"quarantine\";",
     .action = FILTER_ACTION_QUARANTINE,
     .symbol = "MIME_LIMIT"},
    {.what = "the MIME limit deferred",
     .build = m_bomb,
     .keys = "mime_limit_action = \"tempfail\";",
     .action = FILTER_ACTION_TEMPFAIL,
     .code = 451,
     .enhanced = "4.6.0",
     .symbol = "MIME_LIMIT"},
    {.what = "an encrypted zip",
     .build = m_encrypted,
     .action = FILTER_ACTION_REJECT,
     .code = 554,
     .text = "Attachment \"secret.zip\" refused: encrypted archive",
     .symbol = "ARCHIVE_ENCRYPTED",
     .symbol_text = "secret.zip"},
};

/* Runs FILTER_EOM for m in a new session; the session is freed, or kept
 * in *keep (its result's edits belong to it). */
static void run_eom(struct fx *fx, const struct mbuf *m, struct filter_test_result *r,
                    struct chain_session **keep)
{
    struct chain_session *s = chain_session_new(fx->ft.chain);
    uint64_t off;
    int fd = spool_file(m, &off);
    struct filter_txn txn = eom_txn(fd, off, m->len);

    assert_non_null(s);
    filter_test_run(fx->base, s, FILTER_EOM, &txn, r, RUN_MAX_MS);
    if (keep != NULL)
        *keep = s;
    else
        chain_session_free(&s);
    close(fd);
}

static void test_eom(void **state)
{
    (void)state;
    test_pe(pe, sizeof(pe));
    for (size_t i = 0; i < sizeof(eom_rows) / sizeof(eom_rows[0]); i++) {
        struct filter_test_result r;
        struct mbuf m = {.p = NULL}, keys = {.p = NULL};
        struct fx fx;
        mbuf_printf(&keys, ATT("%s " RULES), eom_rows[i].keys != NULL ? eom_rows[i].keys : "");
        fx_new(&fx, keys.p);
        eom_rows[i].build(&m);
        run_eom(&fx, &m, &r, NULL);
        const struct chain_result *res = &r.res;
        if (res->action != eom_rows[i].action)
            fail_msg("row %zu (%s): action %s", i, eom_rows[i].what,
                     filter_action_name(res->action));
        if (eom_rows[i].code != 0 && res->reply.code != eom_rows[i].code)
            fail_msg("row %zu (%s): code %u", i, eom_rows[i].what, res->reply.code);
        if (eom_rows[i].enhanced != NULL && strcmp(res->reply.enhanced, eom_rows[i].enhanced))
            fail_msg("row %zu (%s): %s", i, eom_rows[i].what, res->reply.enhanced);
        if (eom_rows[i].text != NULL && strstr(res->reply.text, eom_rows[i].text) == NULL)
            fail_msg("row %zu (%s): reply \"%s\"", i, eom_rows[i].what, res->reply.text);
        if (eom_rows[i].symbol == NULL && res->symbol_count != 0)
            fail_msg("row %zu (%s): symbol %s", i, eom_rows[i].what, res->symbols[0].name);
        if (eom_rows[i].symbol != NULL &&
            (res->symbol_count != 1 || strcmp(res->symbols[0].name, eom_rows[i].symbol) != 0 ||
             (eom_rows[i].symbol_text != NULL &&
              strcmp(res->symbols[0].text, eom_rows[i].symbol_text) != 0)))
            fail_msg("row %zu (%s): %zu symbols, %s(%s)", i, eom_rows[i].what, res->symbol_count,
                     res->symbol_count ? res->symbols[0].name : "",
                     res->symbol_count ? res->symbols[0].text : "");
        assert_null(res->edits);
        mbuf_free(&m);
        mbuf_free(&keys);
        fx_free(&fx);
    }
}

/* The body an edit list replaces, read back whole. */
static char *edits_body(const struct filter_edits *e, size_t *len)
{
    uint64_t n = filter_edits_body_len(e);
    char *out = malloc(n + 1);

    assert_non_null(out);
    assert_int_equal(filter_edits_body_read(e, 0, out, n), (ssize_t)n);
    out[n] = '\0';
    *len = n;
    return out;
}

static void test_strip(void **state)
{
    struct filter_test_result r;
    struct mbuf m = {.p = NULL};
    struct chain_session *s;
    struct fx fx;
    size_t len;
    char *body;

    (void)state;
    fx_new(&fx, ATT(RULES));
    msg_begin(&m, B);
    msg_file(&m, B, "application/x-bat", NULL, "run.bat", "@echo off\r\n", 11);
    msg_end(&m, B);
    run_eom(&fx, &m, &r, &s);
    assert_int_equal(r.res.action, FILTER_ACTION_NONE);
    assert_int_equal(r.res.symbol_count, 1);
    assert_string_equal(r.res.symbols[0].name, "ATTACH_STRIPPED");
    assert_string_equal(r.res.symbols[0].text, "run.bat: bat");
    assert_non_null(r.res.edits);
    assert_true(filter_edits_body_replaced(r.res.edits));
    assert_int_equal(filter_edits_count(r.res.edits), 0); /* the header stays */
    body = edits_body(r.res.edits, &len);
    assert_non_null(strstr(body, "--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n"));
    assert_non_null(strstr(body, "The attachment \"run.bat\" was removed from this message by "
                                 "mx.postern.test.\r\n"));
    assert_null(strstr(body, "QGVjaG8gb2Zm"));
    assert_non_null(strstr(body, "--b1--\r\n"));
    free(body);
    chain_session_free(&s);
    mbuf_free(&m);

    /* the message is the attachment: its header fields change too */
    mbuf_printf(&m, "Received: from x\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: application/x-bat; name=\"run.bat\"\r\n"
                    "Content-Disposition: attachment; filename=\"run.bat\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\nQGVjaG8gb2Zm\r\n");
    run_eom(&fx, &m, &r, &s);
    assert_int_equal(r.res.action, FILTER_ACTION_NONE);
    assert_string_equal(r.res.symbols[0].name, "ATTACH_STRIPPED");
    assert_int_equal(filter_edits_count(r.res.edits), 3);
    const struct filter_edit *e0 = filter_edits_at(r.res.edits, 0),
                             *e1 = filter_edits_at(r.res.edits, 1),
                             *e2 = filter_edits_at(r.res.edits, 2);
    assert_int_equal(e0->kind, FILTER_EDIT_CHANGE_HEADER);
    assert_string_equal(e0->name, "Content-Type");
    assert_string_equal(e0->value, "text/plain; charset=us-ascii");
    assert_string_equal(e1->name, "Content-Transfer-Encoding");
    assert_string_equal(e1->value, "7bit");
    assert_string_equal(e2->name, "Content-Disposition");
    assert_null(e2->value);
    body = edits_body(r.res.edits, &len);
    assert_string_equal(body, "The attachment \"run.bat\" was removed from this message by "
                              "mx.postern.test.\r\nReason: it matched the attachment rule "
                              "\"bat\".\r\n");
    free(body);
    chain_session_free(&s);
    mbuf_free(&m);
    fx_free(&fx);
}

static void test_errors(void **state)
{
    struct filter_test_result r;
    struct mbuf m = {.p = NULL};
    struct chain_session *s;
    struct fx fx;
    uint64_t off;
    int fd;

    (void)state;
    fx_new(&fx, ATT(RULES));
    m_clean(&m);
    fd = spool_file(&m, &off);
    s = chain_session_new(fx.ft.chain);
    /* the file is shorter than content_len says: fails closed (on_error tempfail) */
    struct filter_txn txn = eom_txn(fd, off, m.len + 10);
    filter_test_run(fx.base, s, FILTER_EOM, &txn, &r, RUN_MAX_MS);
    assert_int_equal(r.res.action, FILTER_ACTION_TEMPFAIL);
    /* no content (not at end of message): nothing to do */
    txn = eom_txn(-1, 0, 0);
    filter_test_run(fx.base, s, FILTER_EOM, &txn, &r, RUN_MAX_MS);
    assert_int_equal(r.res.action, FILTER_ACTION_NONE);
    chain_session_free(&s);
    close(fd);
    mbuf_free(&m);
    fx_free(&fx);
}

/* Calls cancelled while their jobs run or wait; an instance destroyed with
 * jobs in flight. Nothing calls back, nothing leaks (ASan). */
static void test_cancel(void **state)
{
    struct filter_test_result r[6];
    struct chain_session *s[6];
    struct mbuf m = {.p = NULL};
    struct fx fx;
    uint64_t off;
    int fd;

    (void)state;
    test_pe(pe, sizeof(pe));
    fx_new(&fx, ATT("threads = 1; " RULES));
    m_exe(&m);
    fd = spool_file(&m, &off);
    struct filter_txn txn = eom_txn(fd, off, m.len);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 6; i++) {
        s[i] = chain_session_new(fx.ft.chain);
        assert_non_null(chain_run(s[i], FILTER_EOM, &txn, filter_test_done, &r[i]));
    }
    /* the first three cancelled at once (one running, two queued) */
    for (int i = 0; i < 3; i++)
        chain_session_free(&s[i]);
    filter_test_wait(fx.base, &r[3], 3, RUN_MAX_MS);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].calls, 0);
    for (int i = 3; i < 6; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].res.action, FILTER_ACTION_REJECT);
        chain_session_free(&s[i]);
    }
    /* destroyed with jobs in flight: the sessions go first, as in a worker */
    for (int i = 0; i < 4; i++) {
        s[i] = chain_session_new(fx.ft.chain);
        assert_non_null(chain_run(s[i], FILTER_EOM, &txn, filter_test_done, &r[i]));
    }
    for (int i = 0; i < 4; i++)
        chain_session_free(&s[i]);
    close(fd); /* the jobs read their own dup */
    fx_free(&fx);
    mbuf_free(&m);
}

/* A job slower than the filter's timeout: the chain's timeout applies
 * on_error (tempfail) at once, the call is cut loose, and the job's stop
 * flag ends its work within a block, so destroying the instance (which
 * joins its threads) does not wait for the rest of the work. */
static void test_timeout(void **state)
{
    size_t n = 192u << 20, len;
    char *zeros = calloc(1, n);
    struct test_entry e = {.name = "zeros.bin", .data = zeros, .len = n};
    struct filter_test_result r;
    struct chain_session *s;
    struct mbuf m = {.p = NULL};
    struct fx fx;
    uint64_t off;
    void *a;
    int fd;

    (void)state;
    assert_non_null(zeros);
    a = archive_build("zip", &e, 1, &len);
    free(zeros);
    msg_begin(&m, B);
    msg_file(&m, B, "application/zip", NULL, "big.zip", a, len);
    msg_end(&m, B);
    free(a);
    fx_new(&fx, ATT("timeout = \"100ms\"; archive_max_size = \"1G\"; "
                    "archive_max_ratio = 100000; " RULES));
    fd = spool_file(&m, &off);
    struct filter_txn txn = eom_txn(fd, off, m.len);
    s = chain_session_new(fx.ft.chain);
    long ms = filter_test_run(fx.base, s, FILTER_EOM, &txn, &r, RUN_MAX_MS);
    assert_int_equal(r.res.action, FILTER_ACTION_TEMPFAIL);
    assert_true(ms < 2000);
    chain_session_free(&s);
    long start = now_ms();
    fx_free(&fx);
    if (now_ms() - start > 2000)
        fail_msg("destroy waited %ld ms for a stopped job", now_ms() - start);
    close(fd);
    mbuf_free(&m);
}

/* Several sessions at once on the instance's threads, each its own result. */
static void test_concurrent(void **state)
{
    enum { N = 12 };
    struct filter_test_result r[N];
    struct chain_session *s[N];
    struct mbuf m[3] = {{.p = NULL}};
    struct filter_txn txn[3];
    int fd[3];
    struct fx fx;

    (void)state;
    test_pe(pe, sizeof(pe));
    fx_new(&fx, ATT("threads = 3; " RULES));
    m_exe(&m[0]);
    m_js(&m[1]);
    m_clean(&m[2]);
    for (int k = 0; k < 3; k++) {
        uint64_t off;
        fd[k] = spool_file(&m[k], &off);
        txn[k] = eom_txn(fd[k], off, m[k].len);
    }
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        s[i] = chain_session_new(fx.ft.chain);
        assert_non_null(chain_run(s[i], FILTER_EOM, &txn[i % 3], filter_test_done, &r[i]));
    }
    filter_test_wait(fx.base, r, N, RUN_MAX_MS);
    for (int i = 0; i < N; i++) {
        static const enum filter_action want[3] = {FILTER_ACTION_REJECT, FILTER_ACTION_QUARANTINE,
                                                   FILTER_ACTION_NONE};
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].res.action, want[i % 3]);
        chain_session_free(&s[i]);
    }
    for (int k = 0; k < 3; k++) {
        close(fd[k]);
        mbuf_free(&m[k]);
    }
    fx_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),     cmocka_unit_test(test_eom),
        cmocka_unit_test(test_strip),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cancel),     cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
