/*
 * test-smtp-client-reply — relay/smtp-client-reply.c, one table row per
 * reply: the lines as the server sends them (CR LF ends), what the parser
 * says after the last line, and the code, enhanced code, text and EHLO
 * keywords it keeps. Trusts nothing but cmocka.
 */
#include "config.h"
#include "relay/smtp-client-reply.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

struct reply_row {
    const char *input; /* one or more lines, each ending in CR LF */
    int ret;           /* what the parser returns for the last line fed */
    unsigned fed;      /* for ret -1: the line that fails (1-based); 0 = not checked */
    unsigned code;
    const char *enhanced; /* NULL: "" */
    const char *text;     /* NULL: not checked */
    const char *ext;      /* NULL: not checked */
};

/* clang-format off */
static const struct reply_row rows[] = {
    /* single line */
    { .input = "220 mx.example.test ESMTP\r\n", .ret = 1, .code = 220,
      .text = "mx.example.test ESMTP" },
    { .input = "250 Ok\r\n", .ret = 1, .code = 250, .text = "Ok" },
    { .input = "354 End data with <CR><LF>.<CR><LF>\r\n", .ret = 1, .code = 354,
      .text = "End data with <CR><LF>.<CR><LF>" },
    { .input = "559 highest\r\n", .ret = 1, .code = 559, .text = "highest" },
    /* code-only lines: "250" is a whole reply (RFC 5321 §4.2 textstring is optional) */
    { .input = "250\r\n", .ret = 1, .code = 250, .text = "" },
    { .input = "250 \r\n", .ret = 1, .code = 250, .text = "" },
    { .input = "250\r\r\n", .ret = 1, .code = 250, .text = "" },
    /* multi-line */
    { .input = "250-first\r\n250-second\r\n250 third\r\n", .ret = 1, .code = 250,
      .text = "first\nsecond\nthird" },
    { .input = "220-hello\r\n220\r\n", .ret = 1, .code = 220, .text = "hello\n" },
    { .input = "250-first\r\n", .ret = 0, .code = 0 },
    /* enhanced codes (RFC 3463) */
    { .input = "250 2.1.0 Ok\r\n", .ret = 1, .code = 250, .enhanced = "2.1.0", .text = "Ok" },
    { .input = "550 5.1.1 <x@example.test>: Recipient address rejected\r\n", .ret = 1,
      .code = 550, .enhanced = "5.1.1", .text = "<x@example.test>: Recipient address rejected" },
    { .input = "452 4.5.3 Too many recipients\r\n", .ret = 1, .code = 452, .enhanced = "4.5.3" },
    { .input = "550 5.123.999 long parts\r\n", .ret = 1, .code = 550, .enhanced = "5.123.999",
      .text = "long parts" },
    { .input = "250 2.0.0\r\n", .ret = 1, .code = 250, .enhanced = "2.0.0", .text = "" },
    { .input = "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n", .ret = 1,
      .code = 550, .enhanced = "5.7.1", .text = "first\nsecond\nthird" },
    /* not an enhanced code: wrong class, too many digits, no space after, 3xx */
    { .input = "550 4.1.1 mismatch\r\n", .ret = 1, .code = 550, .text = "4.1.1 mismatch" },
    { .input = "550 5.1234.1 x\r\n", .ret = 1, .code = 550, .text = "5.1234.1 x" },
    { .input = "550 5.1.1x y\r\n", .ret = 1, .code = 550, .text = "5.1.1x y" },
    { .input = "550 5.1. y\r\n", .ret = 1, .code = 550, .text = "5.1. y" },
    { .input = "354 3.0.0 go\r\n", .ret = 1, .code = 354, .text = "3.0.0 go" },
    { .input = "250-first\r\n250 2.0.0 second\r\n", .ret = 1, .code = 250,
      .text = "first\n2.0.0 second" },
    /* mixed codes */
    { .input = "250-first\r\n251 second\r\n", .ret = -1, .fed = 2 },
    { .input = "250-first\r\n550 second\r\n", .ret = -1, .fed = 2 },
    /* bad codes */
    { .input = "2x0 bad\r\n", .ret = -1 },
    { .input = "25 short\r\n", .ret = -1 },
    { .input = "25\r\n", .ret = -1 },
    { .input = "\r\n", .ret = -1 },
    { .input = "150 too low\r\n", .ret = -1 },
    { .input = "650 too high\r\n", .ret = -1 },
    { .input = "599 second digit\r\n", .ret = -1 },
    { .input = "260 second digit\r\n", .ret = -1 },
    { .input = " 250 leading space\r\n", .ret = -1 },
    { .input = "-250 x\r\n", .ret = -1 },
    /* no space or dash after the code */
    { .input = "250Ok\r\n", .ret = -1 },
    { .input = "2500 Ok\r\n", .ret = -1 },
    { .input = "250\tOk\r\n", .ret = -1 },
    { .input = "250-first\r\n250second\r\n", .ret = -1, .fed = 2 },
    /* unsafe text is made safe */
    { .input = "550 bad\x01\x7f\xc3\xa4 text\r\n", .ret = 1, .code = 550,
      .text = "bad???? text" },
    { .input = "550 tab\there\r\n", .ret = 1, .code = 550, .text = "tab here" },
    /* EHLO keywords: lines after the first, upper-cased */
    { .input = "250-mx.example.test Hello\r\n250-PIPELINING\r\n250-size 10240000\r\n"
               "250-8BITMIME\r\n250-Auth PLAIN LOGIN\r\n250-AUTH=PLAIN\r\n250 STARTTLS\r\n",
      .ret = 1, .code = 250, .text = NULL,
      .ext = "PIPELINING\nSIZE 10240000\n8BITMIME\nAUTH PLAIN LOGIN\nAUTH=PLAIN\nSTARTTLS" },
    { .input = "250 mx.example.test\r\n", .ret = 1, .code = 250, .ext = "" },
    { .input = "250-mx\r\n250-\r\n250 DSN\r\n", .ret = 1, .code = 250, .ext = "DSN" },
    { .input = "250-mx\r\n250-SMTP\xc3\xbc" "TF8\r\n250 DSN\r\n", .ret = 1, .code = 250,
      .ext = "SMTP??TF8\nDSN" },
};
/* clang-format on */

/* Feeds the lines of input (split after each LF, CR LF stripped); returns
 * the last result and how many lines were fed. */
static int feed(struct smtp_reply_parser *p, const char *input, unsigned *fed)
{
    const char *s = input;
    int rc = 0;

    *fed = 0;
    while (*s != '\0') {
        const char *lf = strchr(s, '\n');
        size_t len = lf != NULL ? (size_t)(lf - s) : strlen(s);

        if (len > 0 && s[len - 1] == '\r')
            len--;
        rc = smtp_reply_parser_line(p, s, len);
        (*fed)++;
        if (rc != 0)
            break;
        s = lf != NULL ? lf + 1 : s + len;
    }
    return rc;
}

static void check_row(size_t i, const struct reply_row *r)
{
    struct smtp_reply_parser p;
    unsigned fed;
    int rc;

    smtp_reply_parser_init(&p);
    rc = feed(&p, r->input, &fed);
    if (rc != r->ret)
        fail_msg("row %zu (%s): returned %d, expected %d", i, r->input, rc, r->ret);
    if (r->ret < 0) {
        if (r->fed != 0 && fed != r->fed)
            fail_msg("row %zu: stopped after %u lines, expected %u", i, fed, r->fed);
        return;
    }
    if (r->ret == 0)
        return;
    if (p.status.code != r->code)
        fail_msg("row %zu: code %u, expected %u", i, p.status.code, r->code);
    if (strcmp(p.status.enhanced, r->enhanced != NULL ? r->enhanced : "") != 0)
        fail_msg("row %zu: enhanced \"%s\"", i, p.status.enhanced);
    if (r->text != NULL && strcmp(p.status.text, r->text) != 0)
        fail_msg("row %zu: text \"%s\", expected \"%s\"", i, p.status.text, r->text);
    if (r->ext != NULL && strcmp(p.ext, r->ext) != 0)
        fail_msg("row %zu: ext \"%s\", expected \"%s\"", i, p.ext, r->ext);
}

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(rows); i++)
        check_row(i, &rows[i]);
}

/* SMTP_REPLY_LINE_MAX octets pass, one more fails. */
static void test_line_length(void **state)
{
    char *line = malloc(SMTP_REPLY_LINE_MAX + 2);
    struct smtp_reply_parser p;

    (void)state;
    assert_non_null(line);
    memset(line, 'x', SMTP_REPLY_LINE_MAX + 1);
    memcpy(line, "250 ", 4);
    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_parser_line(&p, line, SMTP_REPLY_LINE_MAX), 1);
    assert_int_equal(strlen(p.status.text), SMTP_STATUS_TEXT_MAX - 1); /* cut to fit */
    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_parser_line(&p, line, SMTP_REPLY_LINE_MAX + 1), -1);
    line[3] = '-';
    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_parser_line(&p, line, SMTP_REPLY_LINE_MAX + 1), -1);
    free(line);
}

/* SMTP_REPLY_LINES lines pass; a continuation on the last allowed line
 * makes the next one too many. */
static void test_line_count(void **state)
{
    struct smtp_reply_parser p;

    (void)state;
    smtp_reply_parser_init(&p);
    for (unsigned i = 0; i + 1 < SMTP_REPLY_LINES; i++)
        assert_int_equal(smtp_reply_parser_line(&p, "250-x", 5), 0);
    assert_int_equal(smtp_reply_parser_line(&p, "250 last", 8), 1);
    assert_int_equal(p.lines, SMTP_REPLY_LINES);

    smtp_reply_parser_init(&p);
    for (unsigned i = 0; i < SMTP_REPLY_LINES; i++)
        assert_int_equal(smtp_reply_parser_line(&p, "250-x", 5), 0);
    assert_int_equal(smtp_reply_parser_line(&p, "250 last", 8), -1);
}

/* Long text is cut at SMTP_STATUS_TEXT_MAX; keyword lines that do not fit
 * in ext whole are left out, never cut. */
static void test_bounds(void **state)
{
    struct smtp_reply_parser p;
    char line[200];

    (void)state;
    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_parser_line(&p, "250-mx", 6), 0);
    for (unsigned i = 0; i < 20; i++) {
        int n = snprintf(line, sizeof(line), "250-KEYWORD%02u %0*u", i, 80, i);
        assert_int_equal(smtp_reply_parser_line(&p, line, (size_t)n), 0);
    }
    assert_int_equal(smtp_reply_parser_line(&p, "250 STARTTLS", 12), 1);
    assert_true(strlen(p.status.text) < SMTP_STATUS_TEXT_MAX);
    assert_true(strlen(p.ext) < sizeof(p.ext));
    for (const char *s = p.ext; *s != '\0';) {
        const char *nl = strchr(s, '\n');
        size_t len = nl != NULL ? (size_t)(nl - s) : strlen(s);
        assert_true(len == 8 || len == 90); /* "STARTTLS" or a whole keyword line */
        s += len + (nl != NULL);
    }
    assert_non_null(strstr(p.ext, "STARTTLS"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_line_length),
        cmocka_unit_test(test_line_count),
        cmocka_unit_test(test_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
