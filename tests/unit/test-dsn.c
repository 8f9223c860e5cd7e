/*
 * test-dsn — tests of relay/dsn.c: a table of DSNs (failed and delayed, one
 * and several recipients, RET=HDRS/FULL/unspecified, originals over the
 * return limit, with and without ENVID and ORCPT), hostile diagnostic text
 * and envelope values, odd originals (no body, no header section, a header
 * section over the bound, 8-bit, no final line end), unreadable content, and
 * the RFC 3461 NOTIFY table of dsn_wanted.
 *
 * Every DSN built is checked on the wire (CR LF only, no line over 998
 * octets) and then parsed by Python's email package, run as python3 -c:
 * multipart/report, the three parts' types, no parser defects, and each
 * recipient's Final-Recipient, Action, Status and Original-Recipient. The
 * Python check is skipped (not passed) when python3 cannot be run.
 *
 * Trusts nothing but cmocka, libevent and python3's email package.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <event2/buffer.h>

#include "lib/smtp-params.h"
#include "relay/dsn.h"

#define NOW_ISH ((time_t)1700000000)
#define MAX_RCPTS 4
#define BIG_LIMIT (1024 * 1024)

/* The parser check; argv: file, type of part 3, envid or "-", then one
 * "addr|action|status|orcpt" per recipient. Exits non-zero on a mismatch. */
static const char py_check[] =
    "import sys, email, email.utils\n"
    "def fail(m):\n"
    "    print('dsn check: ' + m, file=sys.stderr); sys.exit(1)\n"
    "def norm(v):\n"
    "    return '' if v is None else ' '.join(str(v).split())\n"
    "m = email.message_from_binary_file(open(sys.argv[1], 'rb'))\n"
    "if not m.is_multipart(): fail('not multipart')\n"
    "if m.get_content_type() != 'multipart/report': fail(m.get_content_type())\n"
    "if m.get_param('report-type') != 'delivery-status': fail('report-type')\n"
    "if m['Auto-Submitted'] != 'auto-replied': fail('Auto-Submitted')\n"
    "if m['Bcc'] is not None or m['X-Injected'] is not None: fail('injected header')\n"
    "if email.utils.parsedate_to_datetime(m['Date']).tzinfo is None: fail('Date')\n"
    "if not m['Message-ID'].startswith('<'): fail('Message-ID')\n"
    "p = m.get_payload()\n"
    "types = [x.get_content_type() for x in p]\n"
    "if types != ['text/plain', 'message/delivery-status', sys.argv[2]]: fail(repr(types))\n"
    "for x in [m] + p:\n"
    "    if x.defects: fail('defects ' + repr(x.defects))\n"
    "groups = p[1].get_payload()\n"
    "if norm(groups[0]['Reporting-MTA'])[:5] != 'dns; ': fail('Reporting-MTA')\n"
    "if norm(groups[0]['Original-Envelope-Id']) != sys.argv[3].strip('-'): fail('envid')\n"
    "rcpts = groups[1:]\n"
    "if len(rcpts) != len(sys.argv) - 4: fail('%d recipient groups' % len(rcpts))\n"
    "for g, spec in zip(rcpts, sys.argv[4:]):\n"
    "    addr, action, status, orcpt = spec.split('|')\n"
    "    for k in g.keys():\n"
    "        if len(g.get_all(k)) != 1: fail('repeated ' + k)\n"
    "    if norm(g['Final-Recipient']) != 'rfc822; ' + addr: fail(g['Final-Recipient'])\n"
    "    if g['Action'] != action: fail('Action %s' % g['Action'])\n"
    "    if g['Status'] != status: fail('Status %s' % g['Status'])\n"
    "    if norm(g['Original-Recipient']) != orcpt: fail('orcpt %s' % g['Original-Recipient'])\n"
    "    if g['Diagnostic-Code'] is None: fail('no Diagnostic-Code')\n"
    "    if (g['Will-Retry-Until'] is None) != (action == 'failed'): fail('Will-Retry-Until')\n"
    "if sys.argv[2] == 'message/rfc822' and p[2].get_payload(0)['Subject'] != 'Hello':\n"
    "    fail('returned message')\n";

/* clang-format off */
static const struct smtp_status st_no_user = {
    .code = 550, .enhanced = "5.1.1",
    .text = "<alice@example.org>: No such user here. Please check the address for typing "
            "mistakes, or ask the recipient for the right one; see "
            "https://mx1.example.org/help/5.1.1 for more about this error."};
static const struct smtp_status st_spam = {
    .code = 554, .enhanced = "5.7.1", .text = "Message rejected as spam (score 12.5)"};
static const struct smtp_status st_no_enh = {.code = 552, .text = "Mailbox full"};
static const struct smtp_status st_dropped = {
    .code = 421, .enhanced = "4.4.2", .text = "mx.example.net closing connection"};
static const struct smtp_status st_timeout = {.enhanced = "4.4.1", .text = "Connection timed out"};
static const struct smtp_status st_greylist = {
    .code = 450, .enhanced = "x.y", .text = "Greylisted,\nplease try again later"};

struct rcpt_spec {
    struct dsn_rcpt r;
    const char *status;   /* expected Status */
    const char *diag;     /* expected Diagnostic-Code line start */
};

static const struct rcpt_spec failed_rcpts[] = {
    {.r = {.addr = "alice@example.org", .orcpt = "rfc822;Alice@Example.ORG",
           .status = &st_no_user, .remote_mta = "mx1.example.org", .last_attempt = NOW_ISH},
     .status = "5.1.1", .diag = "Diagnostic-Code: smtp; 550 5.1.1 <alice@example.org>"},
    {.r = {.addr = "bob@example.net", .status = &st_spam, .last_attempt = NOW_ISH},
     .status = "5.7.1", .diag = "Diagnostic-Code: X-Postern; Message rejected"},
    {.r = {.addr = "carol@example.com", .orcpt = "rfc822;carol@old.example.com",
           .status = &st_no_enh, .remote_mta = "mx.example.com"},
     .status = "5.0.0", .diag = "Diagnostic-Code: smtp; 552 Mailbox full"},
};

static const struct rcpt_spec delayed_rcpts[] = {
    {.r = {.addr = "dave@example.net", .status = &st_dropped, .remote_mta = "mx.example.net",
           .last_attempt = NOW_ISH},
     .status = "4.4.2", .diag = "Diagnostic-Code: smtp; 421 4.4.2 mx.example.net closing"},
    {.r = {.addr = "erin@example.org", .orcpt = "rfc822;erin@example.org",
           .status = &st_timeout, .last_attempt = NOW_ISH},
     .status = "4.4.1", .diag = "Diagnostic-Code: X-Postern; Connection timed out"},
    {.r = {.addr = "frank@example.com", .status = &st_greylist, .remote_mta = "mx.example.com"},
     .status = "4.0.0", .diag = "Diagnostic-Code: smtp; 450 Greylisted, please"},
};
/* clang-format on */

#define ORIG_HEADERS                                                                               \
    "From: <sender@example.com>\r\nTo: <alice@example.org>\r\n"                                    \
    "Subject: Hello\r\nMessage-ID: <m1@example.com>\r\n"
#define ORIG_BODY "The body line one.\r\n--not-a-boundary\r\nThe end.\r\n"
#define ORIG ORIG_HEADERS "\r\n" ORIG_BODY

struct dsn_case {
    const char *name;
    enum dsn_action action;
    int ret;
    size_t nrcpt;
    bool small_limit; /* return_limit 10 octets instead of BIG_LIMIT */
    const char *envid;
    const char *part3;   /* expected type of the third part */
    const char *must[4]; /* in the DSN */
    const char *mustnot[4];
};

/* clang-format off */
static const struct dsn_case cases[] = {
    {.name = "failed, one, RET unspecified", .action = DSN_ACTION_FAILED,
     .ret = SMTP_RET_UNSPEC, .nrcpt = 1, .part3 = "message/rfc822",
     .must = {"Subject: Undelivered Mail Returned to Sender", ORIG_BODY, "returned in full",
              "Last-Attempt-Date: "},
     .mustnot = {"Original-Envelope-Id", "Will-Retry-Until", "GARBAGE"}},
    {.name = "failed, several, RET=FULL, ENVID", .action = DSN_ACTION_FAILED,
     .ret = SMTP_RET_FULL, .nrcpt = 3, .envid = "QQ314159", .part3 = "message/rfc822",
     .must = {"Original-Envelope-Id: QQ314159", ORIG_BODY, "Remote-MTA: dns; mx1.example.org",
              "<bob@example.net>: 5.7.1 Message rejected"},
     .mustnot = {"Will-Retry-Until", "GARBAGE"}},
    {.name = "failed, several, RET=HDRS", .action = DSN_ACTION_FAILED, .ret = SMTP_RET_HDRS,
     .nrcpt = 3, .part3 = "text/rfc822-headers",
     .must = {ORIG_HEADERS "\r\n--=_Postern_", "The header section of your message"},
     .mustnot = {"The body line", "octets long", "GARBAGE"}},
    {.name = "failed, over the return limit", .action = DSN_ACTION_FAILED,
     .ret = SMTP_RET_FULL, .nrcpt = 2, .small_limit = true, .part3 = "text/rfc822-headers",
     .must = {ORIG_HEADERS "\r\n--=_Postern_", "more than the 10 octets returned in full"},
     .mustnot = {"The body line"}},
    {.name = "failed, unspecified, over the limit", .action = DSN_ACTION_FAILED,
     .ret = SMTP_RET_UNSPEC, .nrcpt = 1, .small_limit = true, .part3 = "text/rfc822-headers",
     .must = {"only its header section is returned"}, .mustnot = {"The body line"}},
    {.name = "delayed, one, RET=FULL", .action = DSN_ACTION_DELAYED, .ret = SMTP_RET_FULL,
     .nrcpt = 1, .part3 = "text/rfc822-headers",
     .must = {"Subject: Delayed Mail (still being retried)", "Will-Retry-Until: ",
              "keep trying until", "Action: delayed"},
     .mustnot = {"The body line", "Action: failed", "octets long"}},
    {.name = "delayed, several, unspecified, ENVID", .action = DSN_ACTION_DELAYED,
     .ret = SMTP_RET_UNSPEC, .nrcpt = 3, .envid = "env-42", .part3 = "text/rfc822-headers",
     .must = {"Original-Envelope-Id: env-42", "Original-Recipient: rfc822;erin@example.org",
              "Arrival-Date: "},
     .mustnot = {"The body line"}},
    {.name = "delayed, RET=HDRS", .action = DSN_ACTION_DELAYED, .ret = SMTP_RET_HDRS,
     .nrcpt = 2, .part3 = "text/rfc822-headers", .must = {"X-Postern-Queue-ID: 4Qb7xk2ZzP"}},
};
/* clang-format on */

/* A file holding "GARBAGE" then content; the content starts at *offset. */
static int content_file(const char *content, size_t len, uint64_t *offset)
{
    static const char garbage[] = "GARBAGE BEFORE THE MESSAGE\r\n\r\n";
    char path[] = "/tmp/test-dsn-content-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, garbage, sizeof(garbage) - 1), (ssize_t)sizeof(garbage) - 1);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    *offset = sizeof(garbage) - 1;
    return fd;
}

static struct dsn_input base_input(enum dsn_action action, int fd, uint64_t off, size_t len)
{
    return (struct dsn_input){
        .action = action,
        .reporting_mta = "relay.postern.test",
        .queue_id = "4Qb7xk2ZzP",
        .ret = SMTP_RET_UNSPEC,
        .arrival = NOW_ISH - 3600,
        .retry_until = NOW_ISH + 5 * 86400,
        .sender = "sender@example.com",
        .content_fd = fd,
        .content_offset = off,
        .content_length = len,
        .return_limit = BIG_LIMIT,
    };
}

/* Builds the DSN and returns it NUL-terminated (caller frees). */
static char *build(const struct dsn_input *in, size_t *len)
{
    struct evbuffer *out = evbuffer_new();
    char error[256] = "", *s;

    assert_int_equal(dsn_build(in, out, error, sizeof(error)), 0);
    *len = evbuffer_get_length(out);
    s = malloc(*len + 1);
    assert_non_null(s);
    assert_int_equal(evbuffer_remove(out, s, *len), (int)*len);
    s[*len] = '\0';
    evbuffer_free(out);
    return s;
}

/* CR only before LF, LF only after CR, no line over 998 octets. */
static void assert_wire_clean(const char *s, size_t len)
{
    size_t i, line = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '\r') {
            assert_true(i + 1 < len && s[i + 1] == '\n');
        } else if (s[i] == '\n') {
            assert_true(i > 0 && s[i - 1] == '\r');
            line = 0;
            continue;
        }
        if (s[i] != '\r')
            line++;
        assert_true(line <= 998);
    }
    assert_true(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n');
}

/* Our own text (parts 1 and 2, short words only) is folded at 78 columns. */
static void assert_folded(const char *dsn)
{
    const char *p = strstr(dsn, "\r\n--=_Postern_"), *end;

    assert_non_null(p);
    end = strstr(strstr(p + 1, "\r\n--=_Postern_") + 1, "\r\n--=_Postern_");
    assert_non_null(end);
    while (p < end) {
        const char *nl = strstr(p + 2, "\r\n");

        if (nl - (p + 2) > 78)
            fail_msg("line over 78 columns: %.*s", (int)(nl - (p + 2)), p + 2);
        p = nl;
    }
}

/* Runs py_check on the DSN; returns its exit code (127: python3 did not
 * run). With keep, a DSN that fails is kept for a look and python's
 * complaint shown; without, both are dropped (failures are expected). */
static int python_check(const char *dsn, size_t len, const char *part3, const char *envid,
                        const char *const *specs, size_t nspecs, bool keep)
{
    char path[] = "/tmp/test-dsn-XXXXXX";
    const char *argv[8 + MAX_RCPTS] = {"python3", "-c",  py_check,
                                       path,      part3, envid != NULL ? envid : "-"};
    int fd = mkstemp(path), status;
    pid_t pid;

    assert_true(fd >= 0 && nspecs <= MAX_RCPTS);
    assert_int_equal(write(fd, dsn, len), (ssize_t)len);
    close(fd);
    for (size_t i = 0; i < nspecs; i++)
        argv[6 + i] = specs[i];
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        if (!keep && null >= 0)
            dup2(null, STDERR_FILENO);
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        return 128;
    if (!keep || WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 127)
        unlink(path);
    else
        print_message("the DSN is in %s\n", path);
    return WEXITSTATUS(status);
}

/* Fails unless python's email package accepts the DSN; skips without it. */
static void assert_python_ok(const char *dsn, size_t len, const char *part3, const char *envid,
                             const char *const *specs, size_t nspecs)
{
    int rc = python_check(dsn, len, part3, envid, specs, nspecs, true);

    if (rc == 127)
        skip();
    if (rc != 0)
        fail_msg("python's email check of the DSN failed (%d)", rc);
}

/* "addr|action|status|orcpt" for py_check (orcpt with "rfc822;" kept). */
static void rcpt_spec_string(char *buf, size_t size, const struct dsn_rcpt *r,
                             enum dsn_action action, const char *status)
{
    snprintf(buf, size, "%s|%s|%s|%s", r->addr, action == DSN_ACTION_FAILED ? "failed" : "delayed",
             status, r->orcpt != NULL ? r->orcpt : "");
}

static void check_case(const struct dsn_case *c, const char *dsn, size_t len,
                       const struct rcpt_spec *specs)
{
    char spec_buf[MAX_RCPTS][600];
    const char *spec_ptr[MAX_RCPTS];
    size_t i;

    assert_wire_clean(dsn, len);
    assert_folded(dsn);
    for (i = 0; i < 4 && c->must[i] != NULL; i++)
        if (strstr(dsn, c->must[i]) == NULL)
            fail_msg("%s: missing \"%s\"", c->name, c->must[i]);
    for (i = 0; i < 4 && c->mustnot[i] != NULL; i++)
        if (strstr(dsn, c->mustnot[i]) != NULL)
            fail_msg("%s: unexpected \"%s\"", c->name, c->mustnot[i]);
    for (i = 0; i < c->nrcpt; i++) {
        if (strstr(dsn, specs[i].diag) == NULL)
            fail_msg("%s: missing \"%s\"", c->name, specs[i].diag);
        rcpt_spec_string(spec_buf[i], sizeof(spec_buf[i]), &specs[i].r, c->action, specs[i].status);
        spec_ptr[i] = spec_buf[i];
    }
    assert_python_ok(dsn, len, c->part3, c->envid, spec_ptr, c->nrcpt);
}

static void test_cases(void **state)
{
    for (size_t n = 0; n < sizeof(cases) / sizeof(cases[0]); n++) {
        const struct dsn_case *c = &cases[n];
        const struct rcpt_spec *specs =
            c->action == DSN_ACTION_FAILED ? failed_rcpts : delayed_rcpts;
        struct dsn_rcpt rcpts[MAX_RCPTS];
        uint64_t off;
        int fd = content_file(ORIG, strlen(ORIG), &off);
        struct dsn_input in = base_input(c->action, fd, off, strlen(ORIG));
        size_t len;
        char *dsn;

        for (size_t i = 0; i < c->nrcpt; i++)
            rcpts[i] = specs[i].r;
        in.rcpts = rcpts;
        in.rcpt_count = c->nrcpt;
        in.ret = c->ret;
        in.envid = c->envid;
        in.return_limit = c->small_limit ? 10 : BIG_LIMIT;
        dsn = build(&in, &len);
        check_case(c, dsn, len, specs);
        free(dsn);
        close(fd);
    }
}

/* Hostile text everywhere the envelope or a server can put it. */
static void test_hostile(void **state)
{
    static const char evil[] = "evil\r\nBcc: victim@example.org\r\n\r\n--=_Postern_x\r\n"
                               "Status: 2.0.0\x01\x7f\xff\xc3\xa9\tend\0hidden";
    char long_addr[1600], long_text[SMTP_STATUS_TEXT_MAX], spec[256], spec2[sizeof(long_addr) + 32];
    const char *specs[2];
    struct smtp_status st = {.code = 550, .enhanced = "5.7.1"}, st2 = {.code = 451};
    struct dsn_rcpt rcpts[2] = {
        {.addr = "x@example.org",
         .orcpt = "rfc822;x@example.org\r\nX-Injected: 1",
         .status = &st,
         .remote_mta = "mx\r\nX-Injected: 1"},
        {.addr = long_addr, .status = &st2, .remote_mta = "mx.example.org"},
    };
    uint64_t off;
    int fd = content_file(ORIG, strlen(ORIG), &off);
    struct dsn_input in = base_input(DSN_ACTION_FAILED, fd, off, strlen(ORIG));
    size_t len;
    char *dsn;

    memcpy(st.text, evil, sizeof(evil));
    memset(long_text, 'A', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    memcpy(st2.text, long_text, sizeof(long_text));
    memset(long_addr, 'b', sizeof(long_addr) - 1);
    long_addr[sizeof(long_addr) - 1] = '\0';
    in.rcpts = rcpts;
    in.rcpt_count = 2;
    in.envid = "env\r\nX-Injected: 1";
    in.sender = "s@example.com>\r\nBcc: victim@example.org";
    in.queue_id = "Q\r\n\"<>@ id";
    in.reporting_mta = "relay.example\r\nX-Injected: 1";
    dsn = build(&in, &len);
    assert_wire_clean(dsn, len);
    assert_null(strstr(dsn, "hidden"));
    assert_null(strstr(dsn, "\r\nBcc:"));
    assert_null(strstr(dsn, "\r\nStatus: 2.0.0"));
    assert_null(strstr(dsn, "\r\nX-Injected"));
    snprintf(spec, sizeof(spec), "x@example.org|failed|5.7.1|rfc822;x@example.org X-Injected: 1");
    specs[0] = spec;
    /* "rfc822; " and the address are cut to 900 octets together */
    long_addr[900 - strlen("rfc822; ")] = '\0';
    snprintf(spec2, sizeof(spec2), "%s|failed|4.0.0|", long_addr);
    specs[1] = spec2;
    assert_python_ok(dsn, len, "message/rfc822", "env X-Injected: 1", specs, 2);
    free(dsn);
    close(fd);
}

/* The checker is not vacuous: a wrong Status, a wrong part type and a
 * missing recipient are each caught. */
static void test_python_catches(void **state)
{
    const char *good[] = {"alice@example.org|failed|5.1.1|rfc822;Alice@Example.ORG"};
    const char *bad_status[] = {"alice@example.org|failed|5.0.0|rfc822;Alice@Example.ORG"};
    const char *too_many[] = {good[0], good[0]};
    struct dsn_rcpt rcpt = failed_rcpts[0].r;
    uint64_t off;
    int fd = content_file(ORIG, strlen(ORIG), &off);
    struct dsn_input in = base_input(DSN_ACTION_FAILED, fd, off, strlen(ORIG));
    size_t len;
    char *dsn;
    int rc;

    in.rcpts = &rcpt;
    in.rcpt_count = 1;
    dsn = build(&in, &len);
    rc = python_check(dsn, len, "message/rfc822", NULL, good, 1, true);
    if (rc == 127)
        skip();
    assert_int_equal(rc, 0);
    assert_int_equal(python_check(dsn, len, "message/rfc822", NULL, bad_status, 1, false), 1);
    assert_int_equal(python_check(dsn, len, "text/rfc822-headers", NULL, good, 1, false), 1);
    assert_int_equal(python_check(dsn, len, "message/rfc822", NULL, too_many, 2, false), 1);
    assert_int_equal(python_check(dsn, len, "message/rfc822", "E1", good, 1, false), 1);
    free(dsn);
    close(fd);
}

/* The third part's content: after its header section, up to the CR LF of
 * the closing delimiter. */
static char *third_part(const char *dsn, size_t *len)
{
    const char *p = dsn, *end, *start;
    int i;

    for (i = 0; i < 3; i++) {
        p = strstr(p + 1, "\r\n--=_Postern_");
        assert_non_null(p);
    }
    start = strstr(p, "\r\n\r\n");
    assert_non_null(start);
    start += 4;
    end = strstr(start, "\r\n--=_Postern_");
    assert_non_null(end);
    assert_non_null(strstr(end + 2, "--\r\n"));
    *len = (size_t)(end - start);
    return (char *)start;
}

struct orig_case {
    const char *name;
    const char *content;
    size_t len; /* 0: strlen(content) */
    int ret;
    const char *part3;    /* expected type */
    const char *returned; /* the third part's content exactly */
    bool eightbit;        /* Content-Transfer-Encoding: 8bit expected */
    bool no_python;       /* bare LF: not a message python should judge */
};

/* clang-format off */
static const struct orig_case orig_cases[] = {
    {.name = "headers only, no body", .content = ORIG_HEADERS, .ret = SMTP_RET_HDRS,
     .part3 = "text/rfc822-headers", .returned = ORIG_HEADERS},
    {.name = "no header section", .content = "\r\nbody only\r\n", .ret = SMTP_RET_HDRS,
     .part3 = "text/rfc822-headers", .returned = ""},
    {.name = "bare LF header end", .content = "Subject: Hello\nX: y\n\nbody\n",
     .ret = SMTP_RET_HDRS, .part3 = "text/rfc822-headers", .returned = "Subject: Hello\nX: y\n",
     .no_python = true},
    {.name = "full, copied as is", .content = ORIG, .ret = SMTP_RET_FULL,
     .part3 = "message/rfc822", .returned = ORIG},
    {.name = "full, no final line end", .content = ORIG_HEADERS "\r\nlast line",
     .ret = SMTP_RET_FULL, .part3 = "message/rfc822",
     .returned = ORIG_HEADERS "\r\nlast line\r\n"},
    {.name = "full, 8-bit", .content = ORIG_HEADERS "\r\ncaf\xc3\xa9\r\n", .ret = SMTP_RET_FULL,
     .part3 = "message/rfc822", .returned = ORIG_HEADERS "\r\ncaf\xc3\xa9\r\n", .eightbit = true},
    {.name = "headers, 8-bit", .content = "Subject: \xc3\xa9t\xc3\xa9\r\n\r\nx\r\n",
     .ret = SMTP_RET_HDRS, .part3 = "text/rfc822-headers",
     .returned = "Subject: \xc3\xa9t\xc3\xa9\r\n", .eightbit = true},
    {.name = "RET unspecified, copied as is", .content = ORIG,
     .ret = SMTP_RET_UNSPEC, .part3 = "message/rfc822", .returned = ORIG},
};
/* clang-format on */

static void test_originals(void **state)
{
    for (size_t n = 0; n < sizeof(orig_cases) / sizeof(orig_cases[0]); n++) {
        const struct orig_case *c = &orig_cases[n];
        size_t clen = c->len != 0 ? c->len : strlen(c->content), len, plen;
        struct dsn_rcpt rcpt = failed_rcpts[1].r;
        uint64_t off;
        int fd = content_file(c->content, clen, &off);
        struct dsn_input in = base_input(DSN_ACTION_FAILED, fd, off, clen);
        char *dsn, *part;

        in.rcpts = &rcpt;
        in.rcpt_count = 1;
        in.ret = c->ret;
        dsn = build(&in, &len);
        part = third_part(dsn, &plen);
        if (plen != strlen(c->returned) || memcmp(part, c->returned, plen) != 0)
            fail_msg("%s: third part is \"%.*s\"", c->name, (int)plen, part);
        assert_int_equal(strstr(dsn, "Content-Transfer-Encoding: 8bit\r\n") != NULL, c->eightbit);
        if (!c->no_python) {
            const char *spec[] = {"bob@example.net|failed|5.7.1|"};

            assert_python_ok(dsn, len, c->part3, NULL, spec, 1);
        }
        free(dsn);
        close(fd);
    }
}

/* A header section over the 64 KiB bound is cut after a complete line. */
static void test_headers_bounded(void **state)
{
    size_t hlen = 100 * 1000, len, plen;
    char *content = malloc(hlen + 32), *dsn, *part;
    struct dsn_rcpt rcpt = failed_rcpts[0].r;
    uint64_t off;
    int fd;
    struct dsn_input in;

    assert_non_null(content);
    for (size_t i = 0; i < hlen; i += 100)
        snprintf(content + i, 101, "X-Filler: %088zu\r\n", i);
    strcpy(content + hlen, "\r\nbody\r\n");
    fd = content_file(content, strlen(content), &off);
    in = base_input(DSN_ACTION_DELAYED, fd, off, strlen(content));
    in.rcpts = &rcpt;
    in.rcpt_count = 1;
    dsn = build(&in, &len);
    assert_wire_clean(dsn, len);
    part = third_part(dsn, &plen);
    assert_true(plen <= 64 * 1024 && plen > 60 * 1024);
    assert_int_equal(plen % 100, 0);
    assert_memory_equal(part, content, plen);
    free(dsn);
    free(content);
    close(fd);
}

struct error_case {
    const char *name;
    int fd;             /* -2: a good content file */
    uint64_t extra;     /* added to content_length */
    const char *sender; /* NULL: the default */
    size_t nrcpt;
    const char *error; /* substring of the error */
};

/* clang-format off */
static const struct error_case error_cases[] = {
    {.name = "bad fd", .fd = -1, .nrcpt = 1, .error = "reading the original message"},
    {.name = "short content", .fd = -2, .extra = 10, .nrcpt = 1, .error = "ends at octet"},
    {.name = "null sender", .fd = -2, .sender = "", .nrcpt = 1, .error = "null sender"},
    {.name = "no recipients", .fd = -2, .nrcpt = 0, .error = "no recipients"},
};
/* clang-format on */

static void test_errors(void **state)
{
    for (size_t n = 0; n < sizeof(error_cases) / sizeof(error_cases[0]); n++) {
        const struct error_case *c = &error_cases[n];
        struct dsn_rcpt rcpt = failed_rcpts[0].r;
        uint64_t off;
        int fd = content_file(ORIG, strlen(ORIG), &off);
        struct dsn_input in =
            base_input(DSN_ACTION_FAILED, c->fd == -2 ? fd : c->fd, off, strlen(ORIG) + c->extra);
        struct evbuffer *out = evbuffer_new();
        char error[256] = "";

        in.rcpts = &rcpt;
        in.rcpt_count = c->nrcpt;
        if (c->sender != NULL)
            in.sender = c->sender;
        evbuffer_add(out, "kept", 4);
        assert_int_equal(dsn_build(&in, out, error, sizeof(error)), -1);
        if (strstr(error, c->error) == NULL)
            fail_msg("%s: error \"%s\"", c->name, error);
        assert_int_equal(evbuffer_get_length(out), 4);
        evbuffer_free(out);
        close(fd);
    }
}

/* Two DSNs for the same message differ in Message-ID and boundary. */
static void test_unique(void **state)
{
    char *dsn[2], *id[2], *b[2];
    struct dsn_rcpt rcpt = failed_rcpts[0].r;
    uint64_t off;
    int fd = content_file(ORIG, strlen(ORIG), &off);
    struct dsn_input in = base_input(DSN_ACTION_FAILED, fd, off, strlen(ORIG));
    size_t len;

    in.rcpts = &rcpt;
    in.rcpt_count = 1;
    for (int i = 0; i < 2; i++) {
        dsn[i] = build(&in, &len);
        id[i] = strstr(dsn[i], "Message-ID: <4Qb7xk2ZzP.dsn.");
        b[i] = strstr(dsn[i], "boundary=\"=_Postern_4Qb7xk2ZzP_");
        assert_non_null(id[i]);
        assert_non_null(b[i]);
        *strchr(id[i], '\r') = '\0';
        *strchr(b[i], '\r') = '\0';
        assert_true(strlen(b[i]) - strlen("boundary=\"\"") <= 70);
    }
    assert_string_not_equal(id[0], id[1]);
    assert_string_not_equal(b[0], b[1]);
    assert_non_null(strstr(id[0], "@relay.postern.test>"));
    free(dsn[0]);
    free(dsn[1]);
    close(fd);
}

struct tz_case {
    const char *tz;
    const char *arrival; /* the Arrival-Date line for NOW_ISH - 3600 */
};

/* RFC 5322 dates in local time with the zone's offset, whatever the zone. */
static void test_dates(void **state)
{
    /* clang-format off */
    static const struct tz_case tzs[] = {
        {.tz = "UTC0", .arrival = "Arrival-Date: Tue, 14 Nov 2023 21:13:20 +0000\r\n"},
        {.tz = "IST-5:30", .arrival = "Arrival-Date: Wed, 15 Nov 2023 02:43:20 +0530\r\n"},
        {.tz = "XST+3:30", .arrival = "Arrival-Date: Tue, 14 Nov 2023 17:43:20 -0330\r\n"},
    };
    /* clang-format on */
    char *old = getenv("TZ") != NULL ? strdup(getenv("TZ")) : NULL;
    struct dsn_rcpt rcpt = failed_rcpts[0].r;
    uint64_t off;
    int fd = content_file(ORIG, strlen(ORIG), &off);
    struct dsn_input in = base_input(DSN_ACTION_FAILED, fd, off, strlen(ORIG));

    in.rcpts = &rcpt;
    in.rcpt_count = 1;
    for (size_t n = 0; n < sizeof(tzs) / sizeof(tzs[0]); n++) {
        size_t len;
        char *dsn;

        setenv("TZ", tzs[n].tz, 1);
        tzset();
        dsn = build(&in, &len);
        if (strstr(dsn, tzs[n].arrival) == NULL)
            fail_msg("TZ=%s: no \"%s\"", tzs[n].tz, tzs[n].arrival);
        free(dsn);
    }
    if (old != NULL)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    tzset();
    free(old);
    close(fd);
}

struct wanted_case {
    unsigned notify;
    bool failed, delayed;
};

/* RFC 3461 §4.1 */
static void test_wanted(void **state)
{
    /* clang-format off */
    static const struct wanted_case cases_w[] = {
        {.notify = SMTP_NOTIFY_UNSPEC, .failed = true, .delayed = true},
        {.notify = SMTP_NOTIFY_NEVER, .failed = false, .delayed = false},
        {.notify = SMTP_NOTIFY_SUCCESS, .failed = false, .delayed = false},
        {.notify = SMTP_NOTIFY_FAILURE, .failed = true, .delayed = false},
        {.notify = SMTP_NOTIFY_DELAY, .failed = false, .delayed = true},
        {.notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, .failed = true, .delayed = true},
        {.notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, .failed = true, .delayed = false},
        {.notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY, .failed = false, .delayed = true},
        {.notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY,
         .failed = true, .delayed = true},
        /* NEVER with others is refused by the parser; NEVER still wins */
        {.notify = SMTP_NOTIFY_NEVER | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY,
         .failed = false, .delayed = false},
    };
    /* clang-format on */

    for (size_t n = 0; n < sizeof(cases_w) / sizeof(cases_w[0]); n++) {
        if (dsn_wanted(cases_w[n].notify, DSN_ACTION_FAILED) != cases_w[n].failed ||
            dsn_wanted(cases_w[n].notify, DSN_ACTION_DELAYED) != cases_w[n].delayed)
            fail_msg("NOTIFY bits 0x%x", cases_w[n].notify);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),           cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_python_catches),  cmocka_unit_test(test_originals),
        cmocka_unit_test(test_headers_bounded), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unique),          cmocka_unit_test(test_dates),
        cmocka_unit_test(test_wanted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
