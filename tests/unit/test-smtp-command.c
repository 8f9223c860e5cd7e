/*
 * test-smtp-command — the command-line splitter: verbs in any case, the
 * argument after exactly one space, invalid bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/smtp-command.h"

static const struct {
    const char *line;
    size_t len; /* 0 = strlen */
    enum smtp_verb verb;
    const char *args;
} rows[] = {
    { .line = "EHLO client.test", .verb = SMTP_VERB_EHLO, .args = "client.test" },
    { .line = "ehlo client.test", .verb = SMTP_VERB_EHLO, .args = "client.test" },
    { .line = "HeLo x", .verb = SMTP_VERB_HELO, .args = "x" },
    { .line = "MAIL FROM:<a@b>", .verb = SMTP_VERB_MAIL, .args = "FROM:<a@b>" },
    { .line = "RCPT TO:<a@b> NOTIFY=NEVER", .verb = SMTP_VERB_RCPT, .args = "TO:<a@b> NOTIFY=NEVER" },
    { .line = "DATA", .verb = SMTP_VERB_DATA, .args = "" },
    { .line = "BDAT 10 LAST", .verb = SMTP_VERB_BDAT, .args = "10 LAST" },
    { .line = "RSET", .verb = SMTP_VERB_RSET, .args = "" },
    { .line = "NOOP anything", .verb = SMTP_VERB_NOOP, .args = "anything" },
    { .line = "QUIT", .verb = SMTP_VERB_QUIT, .args = "" },
    { .line = "HELP", .verb = SMTP_VERB_HELP, .args = "" },
    { .line = "VRFY x", .verb = SMTP_VERB_VRFY, .args = "x" },
    { .line = "EXPN x", .verb = SMTP_VERB_EXPN, .args = "x" },
    { .line = "STARTTLS", .verb = SMTP_VERB_STARTTLS, .args = "" },
    { .line = "AUTH PLAIN", .verb = SMTP_VERB_AUTH, .args = "PLAIN" },
    { .line = "XCLIENT ADDR=1.2.3.4", .verb = SMTP_VERB_XCLIENT, .args = "ADDR=1.2.3.4" },
    { .line = "MAILFROM:<a@b>", .verb = SMTP_VERB_UNKNOWN, .args = "" },
    { .line = "DATAX", .verb = SMTP_VERB_UNKNOWN, .args = "" },
    { .line = "", .verb = SMTP_VERB_UNKNOWN, .args = "" },
    { .line = "GET / HTTP/1.0", .verb = SMTP_VERB_UNKNOWN, .args = "/ HTTP/1.0" },
    { .line = "MAIL FROM:<a@b>\r", .verb = SMTP_VERB_INVALID, .args = "" },
    { .line = "NOOP a\0b", .len = 8, .verb = SMTP_VERB_INVALID, .args = "" },
    { .line = "NOOP \x1b[31m", .verb = SMTP_VERB_INVALID, .args = "" },
    { .line = "NOOP \x7f", .verb = SMTP_VERB_INVALID, .args = "" },
    { .line = "RCPT TO:<\xc3\xbc@b>", .verb = SMTP_VERB_RCPT, .args = "TO:<\xc3\xbc@b>" },
    { .line = "NOOP\targ", .verb = SMTP_VERB_UNKNOWN, .args = "" },
};

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct smtp_command c;
        size_t len = rows[i].len != 0 ? rows[i].len : strlen(rows[i].line);

        smtp_command_parse(rows[i].line, len, &c);
        if (c.verb != rows[i].verb)
            fail_msg("row %zu (%s): verb %d, want %d", i, rows[i].line, c.verb, rows[i].verb);
        if (c.args_len != strlen(rows[i].args) || memcmp(c.args, rows[i].args, c.args_len) != 0)
            fail_msg("row %zu (%s): args '%.*s', want '%s'", i, rows[i].line, (int)c.args_len,
                     c.args, rows[i].args);
    }
}

static void test_verb_names(void **state)
{
    (void)state;
    assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
    assert_string_equal(smtp_verb_name(SMTP_VERB_COUNT), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_verb_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
