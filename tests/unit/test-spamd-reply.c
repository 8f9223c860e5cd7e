/*
 * test-spamd-reply — filters/spamd-reply: the parser of spamd's responses
 * (one row per response: complete, incomplete, cut short at the close, and
 * every way of being bad), the numbers in them, the request's header, and
 * the names that may go into User:. The responses of the first rows are
 * what spamd 4.0.1 answered for SYMBOLS, REPORT and HEADERS.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/spamd-reply.h"

/* an input with a NUL in it */
#define LIT(s) .input = s, .len = sizeof(s) - 1

#define OK_HEAD(len, spam) "SPAMD/1.1 0 EX_OK\r\nContent-length: " #len "\r\nSpam: " spam "\r\n\r\n"

static const char report_body[] =
    "Spam detection software, running on the system \"vm\",\n"
    "has identified this incoming email as possible spam.\n\n"
    "Content preview:  hello postern-test-spam-marker here \n\n"
    "Content analysis details:   (20.0 points, 5.0 required)\n\n"
    " pts rule name              description\n"
    "---- ---------------------- --------------------------------------------------\n"
    "-0.0 NO_RECEIVED            Informational: message has no Received headers\n"
    " 0.0 MSGID_SHORT            Message-ID is unusually short\n"
    "  20 POSTERN_TEST_SPAM      BODY: Postern test marker\n"
    "                            [a continuation of the description]\n"
    " 1.5 LAST_RULE\n"
    "\n"
    " 9.9 AFTER_THE_TABLE        not a rule\n";

static const char headers_body[] =
    "X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm\r\n"
    "X-Spam-Flag: YES\r\n"
    "X-Spam-Status: Yes, score=20.0 required=5.0 tests=MSGID_SHORT,NO_RECEIVED,\r\n"
    "\tNO_RELAYS,POSTERN_TEST_SPAM autolearn=disabled\r\n"
    "\tversion=4.0.1\r\n"
    "Subject: hi\r\n"
    "\r\n";

struct parse_row {
    const char *what;
    enum spamd_command cmd;
    const char *input; /* NULL: built by the test (long inputs) */
    size_t len;        /* 0: strlen(input) */
    bool eof;
    int rc;
    unsigned code;
    bool spam;
    double score, threshold;
    const char *rules; /* "A,B" as kept, with ":points" for REPORT */
    size_t dropped;
};

#define SA_RULES "MSGID_SHORT,NO_RECEIVED,NO_RELAYS,POSTERN_TEST_SPAM,TVD_SPACE_RATIO"

static const struct parse_row parse_rows[] = {
    /* complete replies */
    {.what = "SYMBOLS as spamd answers it",
     .input = OK_HEAD(67, "True ; 20.0 / 5.0") SA_RULES,
     .rc = 1,
     .spam = true,
     .score = 20,
     .threshold = 5,
     .rules = SA_RULES},
    {.what = "the same, complete before the close too",
     .eof = true,
     .input = OK_HEAD(4, "True ; 20.0 / 5.0") "A_B1",
     .rc = 1,
     .spam = true,
     .score = 20,
     .threshold = 5,
     .rules = "A_B1"},
    {.what = "ham, negative score, no rules",
     .input = OK_HEAD(0, "False ; -0.5 / 5.0"),
     .rc = 1,
     .score = -0.5,
     .threshold = 5,
     .rules = ""},
    {.what = "a line end after the rules",
     .input = OK_HEAD(4, "False ; 0 / 5") "R1\r\n",
     .rc = 1,
     .threshold = 5,
     .rules = "R1"},
    {.what = "Yes/No, spaces, header names in any case",
     .input =
         "SPAMD/1.5 0 EX_OK\r\nspam:yes;1000.25/ 5\r\ncontent-LENGTH:  2 \r\nX-Other: y\r\n\r\nAB",
     .rc = 1,
     .spam = true,
     .score = 1000.25,
     .threshold = 5,
     .rules = "AB"},
    {.what = "LF line ends",
     .input = "SPAMD/1.1 0 EX_OK\nContent-length: 1\nSpam: No ; 1 / 2\n\nX",
     .rc = 1,
     .score = 1,
     .threshold = 2,
     .rules = "X"},
    {.what = "no Content-length: the body ends at the close",
     .eof = true,
     .input = "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\nR1,R2",
     .rc = 1,
     .threshold = 5,
     .rules = "R1,R2"},
    {.what = "REPORT: the table's rules with their points",
     .cmd = SPAMD_CMD_REPORT,
     .input = NULL,
     .rc = 1,
     .spam = true,
     .score = 20,
     .threshold = 5,
     .rules = "NO_RECEIVED:-0,MSGID_SHORT:0,POSTERN_TEST_SPAM:20,LAST_RULE:1.5"},
    {.what = "REPORT without a table: no rules",
     .cmd = SPAMD_CMD_REPORT,
     .input = OK_HEAD(11, "True ; 7.0 / 5.0") "custom text",
     .rc = 1,
     .spam = true,
     .score = 7,
     .threshold = 5,
     .rules = ""},
    {.what = "HEADERS: the folded tests= list",
     .cmd = SPAMD_CMD_HEADERS,
     .input = NULL,
     .rc = 1,
     .spam = true,
     .score = 20,
     .threshold = 5,
     .rules = "MSGID_SHORT,NO_RECEIVED,NO_RELAYS,POSTERN_TEST_SPAM"},
    {.what = "HEADERS: tests=none",
     .cmd = SPAMD_CMD_HEADERS,
     .input =
         OK_HEAD(47, "False ; 0.0 / 5.0") "X-Spam-Status: No, score=0.0 tests=none x=1\r\n\r\n",
     .rc = 1,
     .threshold = 5,
     .rules = ""},
    {.what = "HEADERS: no X-Spam-Status",
     .cmd = SPAMD_CMD_HEADERS,
     .input = OK_HEAD(14, "False ; 0.0 / 5.0") "Subject: x\r\n\r\n",
     .rc = 1,
     .threshold = 5,
     .rules = ""},
    {.what = "more rules than kept: counted",
     .input = NULL,
     .rc = 1,
     .score = 1,
     .threshold = 5,
     .dropped = 6},
    /* not yet complete */
    {.what = "nothing yet", .input = "", .rc = 0},
    {.what = "half a status line", .input = "SPAMD/1.1 0 EX", .rc = 0},
    {.what = "the head, no body yet", .input = OK_HEAD(3, "True ; 1 / 5"), .rc = 0},
    {.what = "part of the body", .input = OK_HEAD(5, "True ; 1 / 5") "AB", .rc = 0},
    {.what = "no Content-length, not closed yet",
     .input = "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n\r\nA",
     .rc = 0},
    /* cut short at the close */
    {.what = "closed without a word", .input = "", .eof = true, .rc = -1},
    {.what = "closed in the status line", .input = "SPAMD/1.1 0 EX", .eof = true, .rc = -1},
    {.what = "closed in the head",
     .input = "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n",
     .eof = true,
     .rc = -1},
    {.what = "closed in the body", .input = OK_HEAD(5, "True ; 1 / 5") "AB", .eof = true, .rc = -1},
    /* spamd's errors */
    {.what = "an error status line alone",
     .input = "SPAMD/1.0 76 Bad header line: (EOF)\r\n",
     .rc = -1,
     .code = 76},
    {.what = "an error with a head",
     .input = "SPAMD/1.0 74 EX_IOERR\r\nSpam: True ; 1 / 5\r\n\r\n",
     .rc = -1,
     .code = 74},
    /* bad responses */
    {.what = "not spamd", .input = "HTTP/1.0 200 OK\r\n\r\n", .rc = -1},
    {.what = "garbage", .input = "\x01\x02garbage\r\n", .rc = -1},
    {.what = "no version digits", .input = "SPAMD/1. 0 EX_OK\r\n", .rc = -1},
    {.what = "no code", .input = "SPAMD/1.1 EX_OK\r\n", .rc = -1},
    {.what = "a code too long", .input = "SPAMD/1.1 0000 EX_OK\r\n", .rc = -1},
    {.what = "no Spam header", .input = "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", .rc = -1},
    {.what = "Spam twice",
     .input = "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\nSpam: False ; 0 / 5\r\n\r\n",
     .eof = true,
     .rc = -1},
    {.what = "Spam: Maybe", .input = OK_HEAD(0, "Maybe ; 1 / 5"), .rc = -1},
    {.what = "Spam: no ;", .input = OK_HEAD(0, "True 1 / 5"), .rc = -1},
    {.what = "Spam: nan", .input = OK_HEAD(0, "True ; nan / 5"), .rc = -1},
    {.what = "Spam: inf", .input = OK_HEAD(0, "True ; inf / 5"), .rc = -1},
    {.what = "Spam: an exponent", .input = OK_HEAD(0, "True ; 1e9 / 5"), .rc = -1},
    {.what = "Spam: too large", .input = OK_HEAD(0, "True ; 1000001 / 5"), .rc = -1},
    {.what = "Spam: too many digits", .input = OK_HEAD(0, "True ; 0000000001 / 5"), .rc = -1},
    {.what = "Spam: no threshold", .input = OK_HEAD(0, "True ; 1 / "), .rc = -1},
    {.what = "Spam: trailing words", .input = OK_HEAD(0, "True ; 1 / 5 x"), .rc = -1},
    {.what = "Spam: a bare dot", .input = OK_HEAD(0, "True ; 1. / 5"), .rc = -1},
    {.what = "Content-length twice",
     .input = "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nContent-length: 0\r\n\r\n",
     .rc = -1},
    {.what = "Content-length not a number",
     .input = "SPAMD/1.1 0 EX_OK\r\nContent-length: -1\r\n\r\n",
     .rc = -1},
    {.what = "Content-length too large",
     .input = "SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999999999999999999\r\n\r\n",
     .rc = -1},
    {.what = "a header line without a colon",
     .input = "SPAMD/1.1 0 EX_OK\r\nSpam True\r\n\r\n",
     .rc = -1},
    {.what = "a compressed body", .input = "SPAMD/1.1 0 EX_OK\r\nCompress: zlib\r\n\r\n", .rc = -1},
    {.what = "more than Content-length", .input = OK_HEAD(1, "True ; 1 / 5") "AB", .rc = -1},
    {.what = "rules: empty name", .input = OK_HEAD(4, "True ; 1 / 5") "A,,B", .rc = -1},
    {.what = "rules: a space", .input = OK_HEAD(3, "True ; 1 / 5") "A B", .rc = -1},
    {.what = "rules: a trailing comma", .input = OK_HEAD(2, "True ; 1 / 5") "A,", .rc = -1},
    {.what = "rules: odd characters", .input = OK_HEAD(3, "True ; 1 / 5") "A;B", .rc = -1},
    {.what = "rules: a NUL", LIT(OK_HEAD(3, "True ; 1 / 5") "A\0B"), .rc = -1},
    {.what = "HEADERS: a bad tests= list",
     .cmd = SPAMD_CMD_HEADERS,
     .input = OK_HEAD(32, "True ; 1 / 5") "X-Spam-Status: Yes, tests=A,$B\r\n",
     .rc = -1},
};

/* REPORT and HEADERS bodies, and 70 rules */
static char *build_input(size_t i)
{
    const char *body = parse_rows[i].cmd == SPAMD_CMD_REPORT    ? report_body
                       : parse_rows[i].cmd == SPAMD_CMD_HEADERS ? headers_body
                                                                : NULL;
    char *out = malloc(8192);
    size_t o;

    assert_non_null(out);
    if (body != NULL) {
        snprintf(out, 8192,
                 "SPAMD/1.1 0 EX_OK\r\nContent-length: %zu\r\nSpam: True ; 20.0 / 5.0"
                 "\r\n\r\n%s",
                 strlen(body), body);
        return out;
    }
    char rules[4096];
    o = 0;
    for (int r = 0; r < SPAMD_RULES_MAX + 6; r++)
        o += (size_t)snprintf(rules + o, sizeof(rules) - o, "%sRULE_%d", r > 0 ? "," : "", r);
    snprintf(out, 8192, "SPAMD/1.1 0 EX_OK\r\nContent-length: %zu\r\nSpam: False ; 1 / 5\r\n\r\n%s",
             o, rules);
    return out;
}

/* "A,B" or "A:1,B:-0" */
static void kept_rules(const struct spamd_reply *r, bool points, char *out, size_t size)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < r->rule_count && o < size; i++) {
        o += (size_t)snprintf(out + o, size - o, "%s%s", i > 0 ? "," : "", r->rules[i].name);
        if (points && o < size)
            o += (size_t)snprintf(out + o, size - o, ":%g", r->rules[i].points);
    }
}

static void test_parse(void **state)
{
    char got[4096];

    (void)state;
    for (size_t i = 0; i < sizeof(parse_rows) / sizeof(parse_rows[0]); i++) {
        const struct parse_row *w = &parse_rows[i];
        char *built = w->input == NULL ? build_input(i) : NULL;
        const char *input = built != NULL ? built : w->input;
        struct spamd_reply *r = malloc(sizeof(*r));
        const char *error = NULL;
        int rc;

        assert_non_null(r);
        rc = spamd_reply_parse(input, w->len > 0 ? w->len : strlen(input), w->eof, w->cmd, r,
                               &error);
        if (rc != w->rc)
            fail_msg("row %zu (%s): rc %d (%s), expected %d", i, w->what, rc,
                     error != NULL ? error : "-", w->rc);
        if (rc < 0 && error == NULL)
            fail_msg("row %zu (%s): no error text", i, w->what);
        if (rc < 0 && r->code != w->code)
            fail_msg("row %zu (%s): code %u", i, w->what, r->code);
        if (rc == 1) {
            if (r->is_spam != w->spam || r->score != w->score || r->threshold != w->threshold)
                fail_msg("row %zu (%s): %d %g/%g", i, w->what, r->is_spam, r->score, r->threshold);
            kept_rules(r, w->cmd == SPAMD_CMD_REPORT, got, sizeof(got));
            if (w->rules != NULL && strcmp(got, w->rules) != 0)
                fail_msg("row %zu (%s): rules \"%s\"", i, w->what, got);
            if (r->rules_dropped != w->dropped)
                fail_msg("row %zu (%s): %zu dropped", i, w->what, r->rules_dropped);
            if (w->dropped > 0 && (r->rule_count != SPAMD_RULES_MAX ||
                                   strcmp(r->rules[SPAMD_RULES_MAX - 1].name, "RULE_63") != 0))
                fail_msg("row %zu (%s): %zu kept", i, w->what, r->rule_count);
        }
        free(r);
        free(built);
    }
}

/* Every prefix of a good reply is "more, please" (or, at the close, an
 * error); the whole is complete. */
static void test_prefixes(void **state)
{
    static const char good[] = OK_HEAD(7, "True ; 20.0 / 5.0") "R1,R_22";
    struct spamd_reply *r = malloc(sizeof(*r));
    const char *error;

    (void)state;
    assert_non_null(r);
    for (size_t n = 0; n < sizeof(good) - 1; n++) {
        assert_int_equal(spamd_reply_parse(good, n, false, SPAMD_CMD_SYMBOLS, r, &error), 0);
        assert_int_equal(spamd_reply_parse(good, n, true, SPAMD_CMD_SYMBOLS, r, &error), -1);
    }
    assert_int_equal(spamd_reply_parse(good, sizeof(good) - 1, false, SPAMD_CMD_SYMBOLS, r, &error),
                     1);
    assert_int_equal(r->rule_count, 2);
    free(r);
}

/* The bounds: a head that never ends, a status line that never ends, too
 * many header lines, a whole response over the limit. */
static void test_limits(void **state)
{
    struct spamd_reply *r = malloc(sizeof(*r));
    char *big = malloc(SPAMD_REPLY_MAX + 2);
    const char *error;
    size_t o;

    (void)state;
    assert_non_null(r);
    assert_non_null(big);
    memset(big, 'A', SPAMD_REPLY_MAX + 1);
    assert_int_equal(spamd_reply_parse(big, 600, false, SPAMD_CMD_SYMBOLS, r, &error), -1);
    o = (size_t)sprintf(big, "SPAMD/1.1 0 EX_OK\r\n");
    for (int i = 0; i < SPAMD_REPLY_LINES_MAX + 1; i++)
        o += (size_t)sprintf(big + o, "X-H%d: v\r\n", i);
    assert_int_equal(spamd_reply_parse(big, o, false, SPAMD_CMD_SYMBOLS, r, &error), -1);
    o = (size_t)sprintf(big, "SPAMD/1.1 0 EX_OK\r\nX-Long: ");
    memset(big + o, 'v', SPAMD_REPLY_HEAD_MAX);
    assert_int_equal(
        spamd_reply_parse(big, o + SPAMD_REPLY_HEAD_MAX, false, SPAMD_CMD_SYMBOLS, r, &error), -1);
    o = (size_t)sprintf(big, "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n\r\n");
    memset(big + o, 'A', SPAMD_REPLY_MAX + 1 - o);
    assert_int_equal(
        spamd_reply_parse(big, SPAMD_REPLY_MAX + 1, true, SPAMD_CMD_SYMBOLS, r, &error), -1);
    assert_string_equal(error, "response too long");
    free(big);
    free(r);
}

static void test_numbers(void **state)
{
    static const struct {
        const char *text;
        size_t used;
        double value;
    } rows[] = {
        {"0", 1, 0},
        {"-0.0", 4, 0},
        {"20", 2, 20},
        {"1000.0 /", 6, 1000},
        {"+1.5", 4, 1.5},
        {"-12.125x", 7, -12.125},
        {"999999.999999", 13, 999999.999999},
        {"1000000", 7, 1000000},
        {"1000000.1", 0, 0},
        {"", 0, 0},
        {"-", 0, 0},
        {".5", 0, 0},
        {"1.", 0, 0},
        {"1.1234567", 0, 0},
        {"nan", 0, 0},
        {"inf", 0, 0},
        {"0000000000", 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        double v = -99;
        size_t used = spamd_parse_number(rows[i].text, strlen(rows[i].text), &v);
        if (used != rows[i].used || (used > 0 && fabs(v - rows[i].value) > 1e-9))
            fail_msg("row %zu (\"%s\"): %zu %g", i, rows[i].text, used, v);
    }
}

static void test_request(void **state)
{
    static const struct {
        enum spamd_command cmd;
        unsigned long long len;
        const char *user;
        const char *out; /* NULL = refused */
    } rows[] = {
        {SPAMD_CMD_SYMBOLS, 120, NULL, "SYMBOLS SPAMC/1.5\r\nContent-length: 120\r\n\r\n"},
        {SPAMD_CMD_REPORT, 0, "", "REPORT SPAMC/1.5\r\nContent-length: 0\r\n\r\n"},
        {SPAMD_CMD_HEADERS, 5, "joe.bloggs",
         "HEADERS SPAMC/1.5\r\nContent-length: 5\r\nUser: joe.bloggs\r\n\r\n"},
        {SPAMD_CMD_SYMBOLS, 5, "a@b.example",
         "SYMBOLS SPAMC/1.5\r\nContent-length: 5\r\nUser: a@b.example\r\n\r\n"},
        {SPAMD_CMD_SYMBOLS, 5, "bad\r\nUser: x", NULL},
        {SPAMD_CMD_SYMBOLS, 5, "-x", NULL},
        {(enum spamd_command)7, 5, NULL, NULL},
    };
    char out[256];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int n = spamd_request_header(rows[i].cmd, rows[i].len, rows[i].user, out, sizeof(out));
        if (rows[i].out == NULL ? n != -1
                                : n != (int)strlen(rows[i].out) || strcmp(out, rows[i].out) != 0)
            fail_msg("row %zu: %d \"%s\"", i, n, n > 0 ? out : "");
    }
    assert_int_equal(spamd_request_header(SPAMD_CMD_SYMBOLS, 5, NULL, out, 20), -1);
}

static void test_user_ok(void **state)
{
    static const struct {
        const char *name;
        bool ok;
    } rows[] = {
        {"nobody", true},
        {"joe.bloggs", true},
        {"a+tag=x@example.org", true},
        {"under_score-1", true},
        {"", false},
        {"-opt", false},
        {".hidden", false},
        {"a b", false},
        {"a\r\nb", false},
        {"a/b", false},
        {"quo\"te", false},
        {"\xc3\xa9", false},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (spamd_user_ok(rows[i].name) != rows[i].ok)
            fail_msg("row %zu (\"%s\")", i, rows[i].name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),   cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_limits),  cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_request), cmocka_unit_test(test_user_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
