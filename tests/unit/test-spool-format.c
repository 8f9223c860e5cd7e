/*
 * test-spool-format — unit tests for lib/spool-format, the spool file's
 * formats, with no spool and no event loop: the fixed header line, envelopes
 * (round trips with hostile values, sparse ones, a table of corrupt
 * envelopes, the limits), a table of header lines to add checked both by
 * themselves and as an envelope record, and the gateway's
 * smtp_txn_add_header that fills them.
 *
 * Trusts nothing but cmocka; touches no files.
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

#include "gateway/smtp-session-private.h"
#include "lib/spool-format.h"

static void assert_str_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* ---- the header line ---- */

static void test_header(void **state)
{
    char buf[SPOOL_HEADER_LEN], bad[SPOOL_HEADER_LEN];
    uint64_t clen = 1, eoff = 1;

    spool_header_format(buf, 0, 0);
    assert_int_equal(buf[SPOOL_HEADER_LEN - 1], '\n');
    assert_int_equal(spool_header_parse(buf, &clen, &eoff), 1);
    spool_header_format(buf, 1234, SPOOL_HEADER_LEN + 1234);
    assert_int_equal(spool_header_parse(buf, &clen, &eoff), 0);
    assert_int_equal(clen, 1234);
    assert_int_equal(eoff, SPOOL_HEADER_LEN + 1234);
    assert_memory_equal(buf, "POSTERN-SPOOL-1 content=00000000000004d2 envelope=0000000000000522",
                        66);

    spool_header_format(bad, 1234, 99); /* offset does not follow the content */
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    spool_header_format(bad, 5, 0);
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    spool_header_format(bad, UINT64_MAX, 0x4f);
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    static const size_t flips[] = { 0, 14, 24, 30, 40, 49, 60, 70, SPOOL_HEADER_LEN - 1 };
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        memcpy(bad, buf, sizeof(bad));
        bad[flips[i]] = 'Z';
        assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    }
    memset(bad, 0, sizeof(bad));
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
}

/* ---- envelopes ---- */

static const char *const hostile[] = {
    "a b@example.com", "100%@example.com", "line\nbreak@example.com", "tab\there",
    "用户@例子.广告", "%41%", "\x01\x1f\x7f\x20", " leading", "trailing ", "",
};
#define HOSTILE_COUNT (sizeof(hostile) / sizeof(hostile[0]))

static void fill_envelope(struct spool_envelope *env, struct spool_rcpt *rcpts, size_t count)
{
    memset(env, 0, sizeof(*env));
    strcpy(env->queue_id, "0123456789ABCDEF0123");
    env->sender = "";
    for (size_t i = 0; i < count; i++) {
        rcpts[i].addr = (char *)hostile[i % HOSTILE_COUNT];
        rcpts[i].notify = (unsigned)(i % 16);
        rcpts[i].orcpt = i % 3 == 0 ? NULL : (char *)hostile[(i + 1) % HOSTILE_COUNT];
    }
    env->rcpts = rcpts;
    env->rcpt_count = count;
    env->listener = "inbound 25";
    env->client_addr = "2001:db8::1";
    env->client_name = "unknown";
    env->helo = "\r\n%% HELO \x7f";
    env->auth_user = NULL;
    env->tls = "TLSv1.3 TLS_AES_256_GCM_SHA384 256/256";
    env->received = 1700000000;
    env->body = 2;
    env->smtputf8 = true;
    env->ret = 1;
    env->envid = "";
    env->size = 12345;
    env->add_headers = "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (100%, a b)\r\n"
                       "\tfolded%41 line\r\n";
}

static void assert_envelope_equal(const struct spool_envelope *a, const struct spool_envelope *b)
{
    assert_string_equal(a->queue_id, b->queue_id);
    assert_str_or_null(a->sender, b->sender);
    assert_int_equal(a->rcpt_count, b->rcpt_count);
    for (size_t i = 0; i < a->rcpt_count; i++) {
        assert_string_equal(a->rcpts[i].addr, b->rcpts[i].addr);
        assert_int_equal(a->rcpts[i].notify, b->rcpts[i].notify);
        assert_str_or_null(a->rcpts[i].orcpt, b->rcpts[i].orcpt);
    }
    assert_str_or_null(a->listener, b->listener);
    assert_str_or_null(a->client_addr, b->client_addr);
    assert_str_or_null(a->client_name, b->client_name);
    assert_str_or_null(a->helo, b->helo);
    assert_str_or_null(a->auth_user, b->auth_user);
    assert_str_or_null(a->tls, b->tls);
    assert_str_or_null(a->envid, b->envid);
    assert_int_equal(a->received, b->received);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->smtputf8, b->smtputf8);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->size, b->size);
    assert_str_or_null(a->add_headers, b->add_headers);
}

static void test_envelope_roundtrip(void **state)
{
    static struct spool_rcpt rcpts[1000];
    struct spool_envelope env, *parsed = NULL;
    char error[256], *text, *longer;
    size_t len, end = 0;

    fill_envelope(&env, rcpts, 1000);
    text = spool_envelope_serialize(&env, &len);
    assert_non_null(text);
    assert_memory_equal(text + len - 4, "END\n", 4);
    for (size_t i = 0; i + 4 < len; i++) /* only records end lines; no raw controls */
        assert_true(text[i] == '\n' || (unsigned char)text[i] >= 0x20);
    assert_int_equal(spool_envelope_parse(text, len, &parsed, &end, error, sizeof(error)), 0);
    assert_int_equal(end, len);
    assert_envelope_equal(&env, parsed);
    spool_envelope_free(&parsed);
    assert_null(parsed);
    spool_envelope_free(&parsed);

    /* the queue manager's records after END are not the envelope's */
    longer = malloc(len + 32);
    memcpy(longer, text, len);
    memcpy(longer + len, "delivered 3 250\n", 16);
    assert_int_equal(spool_envelope_parse(longer, len + 16, &parsed, &end, error, sizeof(error)),
                     0);
    assert_int_equal(end, len);
    assert_envelope_equal(&env, parsed);
    spool_envelope_free(&parsed);
    free(longer);
    free(text);
}

static void test_envelope_sparse(void **state)
{
    struct spool_rcpt rcpt = { .addr = "postmaster" };
    struct spool_envelope env = { .queue_id = "A", .sender = "", .rcpts = &rcpt, .rcpt_count = 1 };
    struct spool_envelope *parsed = NULL;
    char error[256], *text;
    size_t len;

    text = spool_envelope_serialize(&env, &len);
    assert_non_null(text);
    assert_int_equal(spool_envelope_parse(text, len, &parsed, NULL, error, sizeof(error)), 0);
    assert_envelope_equal(&env, parsed);
    assert_null(parsed->listener);
    assert_null(parsed->rcpts[0].orcpt);
    assert_null(parsed->add_headers);
    spool_envelope_free(&parsed);
    free(text);

    /* no header lines to add: no record at all */
    env.add_headers = "";
    text = spool_envelope_serialize(&env, &len);
    assert_non_null(text);
    assert_null(memmem(text, len, "add_headers", 11));
    assert_int_equal(spool_envelope_parse(text, len, &parsed, NULL, error, sizeof(error)), 0);
    assert_null(parsed->add_headers);
    spool_envelope_free(&parsed);
    free(text);
}

#define BASE "queue_id ABC\nsender a@b\nreceived 1\nsize 0\nrcpt x@y 0\n"
#define ROW(n, e, t) { .name = (n), .error = (e), .text = (t), .len = sizeof(t) - 1 }

static const struct corrupt_case {
    const char *name;
    const char *text;
    size_t len;
    const char *error; /* expected in the error message */
} corrupt_cases[] = {
    ROW("empty", "no end marker", ""),
    ROW("no end marker", "no end marker", BASE),
    ROW("end without newline", "no end marker", BASE "END"),
    ROW("end with CR", "unknown record", BASE "END\r\n"),
    ROW("end with a space", "unknown record", BASE "END \n"),
    ROW("unknown record", "unknown record", BASE "colour red\nEND\n"),
    ROW("upper-case key", "unknown record", BASE "HELO x\nEND\n"),
    ROW("empty line", "unknown record", BASE "\nEND\n"),
    ROW("repeated sender", "repeated sender", BASE "sender c@d\nEND\n"),
    ROW("repeated queue id", "repeated queue_id", BASE "queue_id ABD\nEND\n"),
    ROW("missing queue id", "missing queue_id",
        "sender a@b\nreceived 1\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("missing sender", "missing sender", "queue_id A\nreceived 1\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("missing received", "missing received", "queue_id A\nsender a\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("missing size", "missing size", "queue_id A\nsender a\nreceived 1\nrcpt x@y 0\nEND\n"),
    ROW("no recipient", "missing rcpt", "queue_id A\nsender a\nreceived 1\nsize 0\nEND\n"),
    ROW("helo without value", "takes one value", BASE "helo\nEND\n"),
    ROW("two values", "takes one value", BASE "helo a b\nEND\n"),
    ROW("raw tab", "bad helo value", BASE "helo a\tb\nEND\n"),
    ROW("raw CR", "bad helo value", BASE "helo x\r\nEND\n"),
    ROW("raw DEL", "bad helo value", BASE "helo a\x7f\nEND\n"),
    ROW("raw NUL", "bad helo value", BASE "helo a\0b\nEND\n"),
    ROW("escaped NUL", "bad helo value", BASE "helo a%00b\nEND\n"),
    ROW("short escape", "bad helo value", BASE "helo a%4\nEND\n"),
    ROW("bad escape", "bad helo value", BASE "helo a%zz\nEND\n"),
    ROW("queue id path", "bad character in queue id",
        "queue_id ../x\nsender a\nreceived 1\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("queue id too long", "bad queue id length",
        "queue_id 0123456789012345678901234567890123\nsender a\nreceived 1\nsize 0\n"
        "rcpt x@y 0\nEND\n"),
    ROW("received not a number", "bad received",
        "queue_id A\nsender a\nreceived 12a\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("size negative", "bad size",
        "queue_id A\nsender a\nreceived 1\nsize -1\nrcpt x@y 0\nEND\n"),
    ROW("size overflow", "bad size",
        "queue_id A\nsender a\nreceived 1\nsize 99999999999999999999\nrcpt x@y 0\nEND\n"),
    ROW("body out of range", "bad body", BASE "body 4\nEND\n"),
    ROW("body negative", "bad body", BASE "body -1\nEND\n"),
    ROW("body plus sign", "bad body", BASE "body +1\nEND\n"),
    ROW("smtputf8 two", "bad smtputf8", BASE "smtputf8 2\nEND\n"),
    ROW("ret out of range", "bad ret", BASE "ret 3\nEND\n"),
    ROW("notify out of range", "bad recipient notify", BASE "rcpt a 16\nEND\n"),
    ROW("notify not a number", "bad recipient notify", BASE "rcpt a x\nEND\n"),
    ROW("rcpt without notify", "bad recipient record", BASE "rcpt a\nEND\n"),
    ROW("rcpt with four fields", "too many fields", BASE "rcpt a 0 b c\nEND\n"),
    ROW("bad orcpt", "bad recipient value", BASE "rcpt a 0 b%\nEND\n"),
    ROW("add_headers raw CR LF", "bad add_headers value", BASE "add_headers X-A:%20b\r\nEND\n"),
    ROW("add_headers bare LF", "add_headers: bare LF", BASE "add_headers X-A:%20b%0AEND\n"),
    ROW("add_headers escaped NUL", "bad add_headers value",
        BASE "add_headers X-A:%20b%00%0D%0A\nEND\n"),
    ROW("add_headers without value", "takes one value", BASE "add_headers\nEND\n"),
    ROW("repeated add_headers", "repeated add_headers",
        BASE "add_headers X-A:%20b%0D%0A\nadd_headers X-B:%20c%0D%0A\nEND\n"),
};

static void test_envelope_corrupt(void **state)
{
    for (size_t i = 0; i < sizeof(corrupt_cases) / sizeof(corrupt_cases[0]); i++) {
        const struct corrupt_case *c = &corrupt_cases[i];
        struct spool_envelope *env = NULL;
        char error[256] = "";

        if (spool_envelope_parse(c->text, c->len, &env, NULL, error, sizeof(error)) != -1)
            fail_msg("corrupt case \"%s\" parsed", c->name);
        assert_null(env);
        if (strstr(error, c->error) == NULL)
            fail_msg("corrupt case \"%s\": error \"%s\"", c->name, error);
    }
    /* and the base itself is fine */
    struct spool_envelope *env = NULL;
    char error[256];

    assert_int_equal(spool_envelope_parse(BASE "END\n", strlen(BASE "END\n"), &env, NULL, error,
                                          sizeof(error)),
                     0);
    spool_envelope_free(&env);
}

static void test_envelope_limits(void **state)
{
    const char line[] = "rcpt a 0\n";
    size_t n = 100000, len = strlen(BASE) + n * (sizeof(line) - 1) + 4;
    struct spool_envelope *env = NULL;
    char error[256], *text = malloc(len), *p = text;

    assert_non_null(text);
    p += sprintf(p, "%s", BASE);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", line);
    memcpy(p, "END\n", 4);
    assert_int_equal(spool_envelope_parse(text, len, &env, NULL, error, sizeof(error)), -1);
    assert_non_null(strstr(error, "recipients"));
    /* one less (100000 in all, with BASE's own) is fine */
    memmove(text + strlen(BASE), text + strlen(BASE) + sizeof(line) - 1,
            len - strlen(BASE) - (sizeof(line) - 1));
    len -= sizeof(line) - 1;
    assert_int_equal(spool_envelope_parse(text, len, &env, NULL, error, sizeof(error)), 0);
    assert_int_equal(env->rcpt_count, 100000);
    spool_envelope_free(&env);
    free(text);

    len = 16 * 1024 * 1024 + 1;
    text = malloc(len);
    memset(text, 'x', len);
    assert_int_equal(spool_envelope_parse(text, len, &env, NULL, error, sizeof(error)), -1);
    free(text);
}

/* ---- header lines to add ---- */

/* Escapes like the writer does (octets <= 0x20, '%' and 0x7f as %XX). */
static size_t test_escape(char *out, const char *in, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c > 0x20 && c != '%' && c != 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)sprintf(out + o, "%%%02X", c);
    }
    return o;
}

#define HROW(n, e, t) { .name = (n), .error = (e), .text = (t), .len = sizeof(t) - 1 }

/* error NULL: accepted. */
static const struct header_case {
    const char *name;
    const char *text;
    size_t len;
    const char *error;
} header_cases[] = {
    HROW("none", NULL, ""),
    HROW("one field", NULL, "X-Spam-Flag: YES\r\n"),
    HROW("two fields", NULL, "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5\r\n"),
    HROW("folded", NULL,
         "Authentication-Results: mx.example;\r\n\tspf=pass smtp.mailfrom=a@example.org\r\n"
         "  dkim=none\r\n"),
    HROW("empty value", NULL, "X-Empty:\r\n"),
    HROW("tab after colon", NULL, "X-Tab:\tvalue\r\n"),
    HROW("odd but legal name", NULL, "X.!#$%&'*+-/=?^_`{|}~: v\r\n"),
    HROW("no final CR LF", "do not end with CR LF", "X-A: b"),
    HROW("no line end at all", "do not end with CR LF", "X-A: b\r\nX-B: c"),
    HROW("bare LF at the end", "bare LF", "X-A: b\n"),
    HROW("bare LF inside", "bare LF", "X-A: b\nX-B: c\r\n"),
    HROW("LF CR", "bare LF", "X-A: b\n\r"),
    HROW("bare CR inside", "bare CR", "X-A: b\rX-B: c\r\n"),
    HROW("CR at the end", "bare CR", "X-A: b\r"),
    HROW("space in the name", "bad header field name", "X A: b\r\n"),
    HROW("space before the colon", "bad header field name", "X-A : b\r\n"),
    HROW("no colon", "bad header field name", "X-A b\r\n"),
    HROW("empty name", "bad header field name", ": b\r\n"),
    HROW("8-bit name", "bad header field name", "X-\xc3\xa4: b\r\n"),
    HROW("control in the name", "bad header field name", "X-\x01: b\r\n"),
    HROW("DEL in the name", "bad header field name", "X-\x7f: b\r\n"),
    HROW("empty line after", "empty line", "X-A: b\r\n\r\n"),
    HROW("empty line first", "empty line", "\r\nX-A: b\r\n"),
    HROW("body after an empty line", "empty line", "X-A: b\r\n\r\nbody\r\n"),
    HROW("continuation first", "continuation line without a header field", " folded\r\n"),
    HROW("blank continuation", "blank continuation", "X-A: b\r\n \t\r\n"),
    HROW("control in the value", "control or 8-bit", "X-A: b\x01c\r\n"),
    HROW("DEL in the value", "control or 8-bit", "X-A: \x7f\r\n"),
    HROW("NUL in the value", "control or 8-bit", "X-A: b\0c\r\n"),
    HROW("8-bit value", "control or 8-bit", "X-A: caf\xc3\xa9\r\n"),
    HROW("8-bit continuation", "control or 8-bit", "X-A: b\r\n \xff\r\n"),
};

/* Checks one text both ways: by itself, and as a spool record (a bad one
 * makes the envelope corrupt, a good one round-trips). */
static void check_header_text(const char *name, const char *text, size_t len, const char *error)
{
    char *record = malloc(strlen(BASE) + 3 * len + 32), *p = record;
    struct spool_envelope *env = NULL;
    const char *why = NULL;
    char perror[256] = "";
    int ret = spool_add_headers_check(text, len, &why);

    if (error == NULL && ret != 0)
        fail_msg("header case \"%s\" refused: %s", name, why);
    if (error != NULL && (ret != -1 || strstr(why, error) == NULL))
        fail_msg("header case \"%s\": %d \"%s\"", name, ret, why != NULL ? why : "");
    p += sprintf(p, "%sadd_headers ", BASE);
    p += test_escape(p, text, len);
    p += sprintf(p, "\nEND\n");
    ret = spool_envelope_parse(record, (size_t)(p - record), &env, NULL, perror, sizeof(perror));
    if (error == NULL) {
        if (ret != 0)
            fail_msg("header case \"%s\" as a record: %s", name, perror);
        assert_non_null(env->add_headers);
        assert_int_equal(strlen(env->add_headers), len);
        assert_memory_equal(env->add_headers, text, len);
    } else if (ret != -1 || strstr(perror, "add_headers") == NULL) {
        fail_msg("header case \"%s\" as a record: %d \"%s\"", name, ret, perror);
    }
    spool_envelope_free(&env);
    free(record);
}

static void test_add_headers(void **state)
{
    char *text;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++)
        check_header_text(header_cases[i].name, header_cases[i].text, header_cases[i].len,
                          header_cases[i].error);

    /* a line of 998 octets is fine, 999 is not */
    text = malloc(SPOOL_ADD_HEADERS_MAX + 1024);
    memcpy(text, "X-Long: ", 8);
    memset(text + 8, 'a', SPOOL_HEADER_LINE_MAX - 8);
    memcpy(text + SPOOL_HEADER_LINE_MAX, "\r\n", 2);
    check_header_text("998 octets", text, SPOOL_HEADER_LINE_MAX + 2, NULL);
    memset(text + 8, 'a', SPOOL_HEADER_LINE_MAX - 7);
    memcpy(text + SPOOL_HEADER_LINE_MAX + 1, "\r\n", 2);
    check_header_text("999 octets", text, SPOOL_HEADER_LINE_MAX + 3, "longer than 998");
    memmove(text + 8, text, SPOOL_HEADER_LINE_MAX + 3); /* as a continuation line */
    memcpy(text, "X-A: b\r\n ", 9);
    check_header_text("999 octets folded", text, SPOOL_HEADER_LINE_MAX + 11, "longer than 998");

    /* SPOOL_ADD_HEADERS_MAX in all is fine, one more is not */
    n = 0;
    while (n < SPOOL_ADD_HEADERS_MAX) {
        size_t line = SPOOL_ADD_HEADERS_MAX - n < 900 ? SPOOL_ADD_HEADERS_MAX - n : 900;

        assert_true(line >= 8);
        memcpy(text + n, "X-F: ", 5);
        memset(text + n + 5, 'v', line - 7);
        memcpy(text + n + line - 2, "\r\n", 2);
        n += line;
    }
    assert_int_equal(n, SPOOL_ADD_HEADERS_MAX);
    check_header_text("16 KiB", text, n, NULL);
    memcpy(text + n - 2, "w\r\n", 3);
    check_header_text("16 KiB + 1", text, n + 1, "over 16 KiB");
    free(text);

    /* a record too long to be worth decoding */
    n = 3 * SPOOL_ADD_HEADERS_MAX + 1;
    text = malloc(strlen(BASE) + n + 32);
    sprintf(text, "%sadd_headers ", BASE);
    memset(text + strlen(text), 'x', n);
    memcpy(text + strlen(BASE) + 12 + n, "\nEND\n", 5);
    {
        struct spool_envelope *env = NULL;
        char error[256] = "";

        assert_int_equal(spool_envelope_parse(text, strlen(BASE) + 12 + n + 5, &env, NULL, error,
                                              sizeof(error)),
                         -1);
        assert_non_null(strstr(error, "add_headers over"));
        assert_null(env);
    }
    free(text);
}

/* The gateway's way in for the hooks: fields are appended in order; a bad
 * one, or one past the bound, is refused and leaves what was there. */
static void test_txn_add_header(void **state)
{
    struct smtp_txn t = { .add_headers = NULL };
    const char *why = NULL;
    char *big;

    (void)state;
    assert_int_equal(smtp_txn_add_header(&t, "X-Spam-Flag", "YES", &why), 0);
    assert_int_equal(smtp_txn_add_header(&t, "X-Postern-Score", "7.5 (A=5,\r\n\tB=2.5)", &why),
                     0);
    assert_string_equal(t.add_headers,
                        "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (A=5,\r\n\tB=2.5)\r\n");
    assert_int_equal(smtp_txn_add_header(&t, "X Bad", "v", &why), -1);
    assert_non_null(strstr(why, "field name"));
    assert_int_equal(smtp_txn_add_header(&t, "X-LF", "a\nb", &why), -1);
    assert_non_null(strstr(why, "bare LF"));
    assert_int_equal(smtp_txn_add_header(&t, "X-Blank", "a\r\n\r\nbody", &why), -1);
    assert_non_null(strstr(why, "empty line"));
    big = malloc(SPOOL_ADD_HEADERS_MAX + 1);
    memset(big, 'v', SPOOL_ADD_HEADERS_MAX);
    big[SPOOL_ADD_HEADERS_MAX] = '\0';
    assert_int_equal(smtp_txn_add_header(&t, "X-Big", big, &why), -1);
    assert_non_null(strstr(why, "16 KiB"));
    /* a folded value that fits by itself, but not after the two fields */
    big[SPOOL_ADD_HEADERS_MAX - 40] = '\0';
    for (size_t i = 80; i + 80 < SPOOL_ADD_HEADERS_MAX - 40; i += 80)
        memcpy(big + i, "\r\n\t", 3);
    assert_int_equal(smtp_txn_add_header(&t, "X-Big", big, &why), -1);
    assert_non_null(strstr(why, "16 KiB"));
    free(big);
    assert_string_equal(t.add_headers,
                        "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (A=5,\r\n\tB=2.5)\r\n");
    free(t.add_headers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_envelope_roundtrip),
        cmocka_unit_test(test_envelope_sparse),
        cmocka_unit_test(test_envelope_corrupt),
        cmocka_unit_test(test_envelope_limits),
        cmocka_unit_test(test_add_headers),
        cmocka_unit_test(test_txn_add_header),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
