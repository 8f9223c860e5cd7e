/*
 * test-smtp-params — table-driven tests of lib/smtp-params.c: MAIL and
 * RCPT parameters against different offers (one row per case, with the exact
 * reply code and enhanced code of every error), and xtext decoding/encoding.
 * Trusts nothing but cmocka.
 */
#include "config.h"
#include "lib/smtp-params.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#define X10 "+41+41+41+41+41+41+41+41+41+41" /* xtext of 10 'A' */
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define A10 "AAAAAAAAAA"
#define A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10
#define A500 A100 A100 A100 A100 A100
#define KEY32 "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
#define KEY40 KEY32 "XXXXXXXX"

/* clang-format off */
static const struct smtp_params_offer offer_all = {
    .size = true, .eightbitmime = true, .smtputf8 = true, .dsn = true, .auth = true,
    .chunking = true, .size_limit = 10000000};
static const struct smtp_params_offer offer_none = {.size_limit = 0};
static const struct smtp_params_offer offer_nolimit = {.size = true, .size_limit = 0};
static const struct smtp_params_offer offer_no_chunking = {.eightbitmime = true};
static const struct smtp_params_offer offer_dsn_ascii = {.dsn = true, .auth = true};

struct mail_case {
    const char *input;
    size_t len;                             /* 0: strlen(input) */
    const struct smtp_params_offer *offer; /* NULL: offer_all */
    unsigned code;                          /* 0: success */
    const char *enhanced, *text;            /* text: a substring, NULL = any */
    bool has_size;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    const char *envid, *auth; /* NULL: "" */
};
/* clang-format on */

/* clang-format off */
static const struct mail_case mail_cases[] = {
    {.input = ""},
    {.input = "   "},
    /* SIZE (RFC 1870) */
    {.input = "SIZE=1000", .has_size = true, .size = 1000},
    {.input = "size=1000", .has_size = true, .size = 1000},
    {.input = "SiZe=0", .has_size = true, .size = 0},
    {.input = "SIZE=0010", .has_size = true, .size = 10},
    {.input = "SIZE=10000000", .has_size = true, .size = 10000000},
    {.input = "SIZE=10000001", .code = 552, .enhanced = "5.3.4", .text = "size exceeds"},
    {.input = "SIZE=18446744073709551615", .offer = &offer_nolimit, .has_size = true,
     .size = UINT64_MAX},
    {.input = "SIZE=18446744073709551616", .offer = &offer_nolimit, .code = 552,
     .enhanced = "5.3.4"},
    {.input = "SIZE=99999999999999999999", .offer = &offer_nolimit, .code = 552,
     .enhanced = "5.3.4"},
    {.input = "SIZE=000000000000000000001", .offer = &offer_nolimit, .code = 501,
     .enhanced = "5.5.4"},
    {.input = "SIZE=", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE", .code = 501, .enhanced = "5.5.4", .text = "SIZE"},
    {.input = "SIZE=12a", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=-1", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=+1", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=1 SIZE=2", .code = 501, .enhanced = "5.5.4", .text = "Duplicate SIZE"},
    {.input = "SIZE=1 size=1", .code = 501, .enhanced = "5.5.4", .text = "Duplicate"},
    {.input = "SIZE=1", .offer = &offer_none, .code = 555, .enhanced = "5.5.4",
     .text = "Unsupported option SIZE"},
    /* BODY (RFC 6152, RFC 3030) */
    {.input = "BODY=7BIT", .body = SMTP_BODY_7BIT},
    {.input = "BODY=8BITMIME", .body = SMTP_BODY_8BITMIME},
    {.input = "body=8bitmime", .body = SMTP_BODY_8BITMIME},
    {.input = "BODY=BINARYMIME", .body = SMTP_BODY_BINARYMIME},
    {.input = "BODY=BINARYMIME", .offer = &offer_no_chunking, .code = 555, .enhanced = "5.5.4",
     .text = "CHUNKING"},
    {.input = "BODY=8BITMIME", .offer = &offer_no_chunking, .body = SMTP_BODY_8BITMIME},
    {.input = "BODY=9BIT", .code = 501, .enhanced = "5.5.4"},
    {.input = "BODY=8BITMIMEX", .code = 501, .enhanced = "5.5.4"},
    {.input = "BODY", .code = 501, .enhanced = "5.5.4"},
    {.input = "BODY=7BIT BODY=7BIT", .code = 501, .enhanced = "5.5.4"},
    {.input = "BODY=8BITMIME", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    /* SMTPUTF8 (RFC 6531) */
    {.input = "SMTPUTF8", .smtputf8 = true},
    {.input = "smtputf8", .smtputf8 = true},
    {.input = "SMTPUTF8=yes", .code = 501, .enhanced = "5.5.4"},
    {.input = "SMTPUTF8 SMTPUTF8", .code = 501, .enhanced = "5.5.4"},
    {.input = "SMTPUTF8", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    /* RET and ENVID (RFC 3461) */
    {.input = "RET=FULL", .ret = SMTP_RET_FULL},
    {.input = "ret=hdrs", .ret = SMTP_RET_HDRS},
    {.input = "RET=ALL", .code = 501, .enhanced = "5.5.4"},
    {.input = "RET", .code = 501, .enhanced = "5.5.4"},
    {.input = "RET=FULL", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    {.input = "ENVID=QQ314159", .envid = "QQ314159"},
    {.input = "envid=a+2Bb+3Dc", .envid = "a+b=c"},
    {.input = "ENVID=a+20b", .envid = "a b"},
    {.input = "ENVID=a+2bb", .code = 501, .enhanced = "5.5.4", .text = "ENVID"},
    {.input = "ENVID=a+2", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=a+ZZ", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=a+00b", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=a+0Db", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=a+C3+BC", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=" A100, .envid = A100},
    {.input = "ENVID=" A100 "A", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=" X100, .envid = A100},
    {.input = "ENVID=" X100 "+41", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=a ENVID=b", .code = 501, .enhanced = "5.5.4"},
    {.input = "ENVID=a", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    /* AUTH (RFC 4954) */
    {.input = "AUTH=<>", .auth = "<>"},
    {.input = "AUTH=user@example.com", .auth = "user@example.com"},
    {.input = "auth=user+2Btag@example.com", .auth = "user+tag@example.com"},
    {.input = "AUTH=+22a+20b+22@example.com", .auth = "\"a b\"@example.com"},
    {.input = "AUTH=user", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=user@example.com+00x", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=user@example.com+0D+0A", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=+00", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=<user@example.com>", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=user@example.com+20x", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=user+2bx@example.com", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=+C3+BC@example.com", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=+C3+BC@example.com SMTPUTF8", .smtputf8 = true,
     .auth = "\xc3\xbc@example.com"},
    {.input = "AUTH=<> AUTH=<>", .code = 501, .enhanced = "5.5.4"},
    {.input = "AUTH=<>", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    /* unknown keywords and keywords of RCPT */
    {.input = "FOO=bar", .code = 555, .enhanced = "5.5.4", .text = "Unsupported option FOO"},
    {.input = "X-FOO", .code = 555, .enhanced = "5.5.4"},
    {.input = "NOTIFY=NEVER", .code = 555, .enhanced = "5.5.4"},
    {.input = KEY40 "=1", .code = 555, .enhanced = "5.5.4", .text = "option " KEY32},
    {.input = "SIZE=1 FOO", .code = 555, .enhanced = "5.5.4"},
    /* syntax */
    {.input = "=x", .code = 501, .enhanced = "5.5.4", .text = "Syntax error"},
    {.input = "-X=1", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE==1", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=1=2", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=1\tBODY=7BIT", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=1\r\n", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=1\0", .len = 7, .code = 501, .enhanced = "5.5.4"},
    {.input = "SI_ZE=1", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE =1", .code = 501, .enhanced = "5.5.4"},
    {.input = "SIZE=12", .len = 6, .has_size = true, .size = 1},
    {.input = "  SIZE=1  BODY=7BIT  ", .has_size = true, .size = 1, .body = SMTP_BODY_7BIT},
    /* everything at once */
    {.input = "SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ AUTH=<>", .has_size = true,
     .size = 100, .body = SMTP_BODY_8BITMIME, .smtputf8 = true, .ret = SMTP_RET_HDRS,
     .envid = "QQ", .auth = "<>"},
};
/* clang-format on */

struct rcpt_case {
    const char *input;
    size_t len;
    const struct smtp_params_offer *offer;
    unsigned code;
    const char *enhanced, *text;
    unsigned notify;
    const char *orcpt_type, *orcpt; /* NULL: "" */
};

#define N_SUCCESS SMTP_NOTIFY_SUCCESS
#define N_FAILURE SMTP_NOTIFY_FAILURE
#define N_DELAY SMTP_NOTIFY_DELAY

/* clang-format off */
static const struct rcpt_case rcpt_cases[] = {
    {.input = ""},
    /* NOTIFY */
    {.input = "NOTIFY=NEVER", .notify = SMTP_NOTIFY_NEVER},
    {.input = "NOTIFY=SUCCESS,FAILURE,DELAY", .notify = N_SUCCESS | N_FAILURE | N_DELAY},
    {.input = "notify=delay,success", .notify = N_SUCCESS | N_DELAY},
    {.input = "NOTIFY=FAILURE", .notify = N_FAILURE},
    {.input = "NOTIFY=NEVER,SUCCESS", .code = 501, .enhanced = "5.5.4", .text = "NOTIFY"},
    {.input = "NOTIFY=DELAY,NEVER", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=NEVER,NEVER", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=SUCCESS,SUCCESS", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=SUCCESS,", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=,SUCCESS", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=SUCCESS,,DELAY", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=MAYBE", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY", .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=NEVER NOTIFY=NEVER", .code = 501, .enhanced = "5.5.4",
     .text = "Duplicate NOTIFY"},
    {.input = "NOTIFY=NEVER", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    /* ORCPT, type rfc822 */
    {.input = "ORCPT=rfc822;a@b.example", .orcpt_type = "rfc822", .orcpt = "a@b.example"},
    {.input = "ORCPT=RFC822;a+2Bb@b.example", .orcpt_type = "rfc822", .orcpt = "a+b@b.example"},
    {.input = "orcpt=rfc822;" A500, .orcpt_type = "rfc822", .orcpt = A500},
    {.input = "ORCPT=rfc822;" A500 "A", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822;a+2bb@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822;a+0Db@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822;a+C3+BC@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822;", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=;a@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=x400;a", .code = 501, .enhanced = "5.5.4", .text = "address type"},
    {.input = "ORCPT", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822;a@b ORCPT=rfc822;a@b", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=rfc822;a@b", .offer = &offer_none, .code = 555, .enhanced = "5.5.4"},
    /* ORCPT, type utf-8 (RFC 6533) */
    {.input = "ORCPT=utf-8;user@example.com", .orcpt_type = "utf-8", .orcpt = "user@example.com"},
    {.input = "ORCPT=UTF-8;a+b@example.com", .orcpt_type = "utf-8", .orcpt = "a+b@example.com"},
    {.input = "ORCPT=utf-8;a\\x{E9}@b.example", .orcpt_type = "utf-8",
     .orcpt = "a\xc3\xa9@b.example"},
    {.input = "ORCPT=utf-8;\\x{1F600}@\\x{e9}.example", .orcpt_type = "utf-8",
     .orcpt = "\xf0\x9f\x98\x80@\xc3\xa9.example"},
    {.input = "ORCPT=utf-8;\\x{4E2D}\\x{6587}@b.example", .orcpt_type = "utf-8",
     .orcpt = "\xe4\xb8\xad\xe6\x96\x87@b.example"},
    {.input = "ORCPT=utf-8;" A500 "A", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;\xc3\xa9@b.example", .orcpt_type = "utf-8",
     .orcpt = "\xc3\xa9@b.example"},
    {.input = "ORCPT=utf-8;\xc3\xa9@b.example", .offer = &offer_dsn_ascii, .code = 501,
     .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{E9}@b.example", .offer = &offer_dsn_ascii,
     .orcpt_type = "utf-8", .orcpt = "a\xc3\xa9@b.example"},
    {.input = "ORCPT=utf-8;\xc0\xaf@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{D800}@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{110000}@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{0}@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{}@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{0000041}@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{41@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\y@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;a\\x{20}b@b.example", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;not-an-address", .code = 501, .enhanced = "5.5.4"},
    {.input = "ORCPT=utf-8;<a@b.example>", .code = 501, .enhanced = "5.5.4"},
    /* keywords of MAIL, unknown keywords, syntax */
    {.input = "SIZE=10", .code = 555, .enhanced = "5.5.4"},
    {.input = "RET=FULL", .code = 555, .enhanced = "5.5.4"},
    {.input = "XFOO", .code = 555, .enhanced = "5.5.4"},
    {.input = "NOTIFY=NEVER\0", .len = 13, .code = 501, .enhanced = "5.5.4"},
    {.input = "NOTIFY=NEVER,\x01", .code = 501, .enhanced = "5.5.4"},
    /* both */
    {.input = "NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@b.example", .notify = N_FAILURE | N_DELAY,
     .orcpt_type = "rfc822", .orcpt = "a@b.example"},
};
/* clang-format on */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("row %zu \"%s\": %s", i, tc->input, #cond);                                   \
    } while (0)

static const char *or_empty(const char *s)
{
    return s == NULL ? "" : s;
}

static void test_mail(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
        const struct mail_case *tc = &mail_cases[i];
        size_t len = tc->len != 0 ? tc->len : strlen(tc->input);
        struct smtp_status st = {0};
        struct smtp_mail_params mp;
        int ret = smtp_params_parse_mail(tc->input, len, tc->offer != NULL ? tc->offer : &offer_all,
                                         &mp, &st);

        if (tc->code != 0) {
            CHECK(ret == -1 && st.code == tc->code && strcmp(st.enhanced, tc->enhanced) == 0);
            CHECK(tc->text == NULL || strstr(st.text, tc->text) != NULL);
            continue;
        }
        CHECK(ret == 0 && st.code == 0);
        CHECK(mp.has_size == tc->has_size && mp.size == tc->size);
        CHECK(mp.body == tc->body && mp.smtputf8 == tc->smtputf8 && mp.ret == tc->ret);
        CHECK(strcmp(mp.envid, or_empty(tc->envid)) == 0);
        CHECK(mp.has_auth == (tc->auth != NULL) && strcmp(mp.auth, or_empty(tc->auth)) == 0);
    }
}

static void test_rcpt(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
        const struct rcpt_case *tc = &rcpt_cases[i];
        size_t len = tc->len != 0 ? tc->len : strlen(tc->input);
        struct smtp_status st = {0};
        struct smtp_rcpt_params rp;
        int ret = smtp_params_parse_rcpt(tc->input, len, tc->offer != NULL ? tc->offer : &offer_all,
                                         &rp, &st);

        if (tc->code != 0) {
            CHECK(ret == -1 && st.code == tc->code && strcmp(st.enhanced, tc->enhanced) == 0);
            CHECK(tc->text == NULL || strstr(st.text, tc->text) != NULL);
            continue;
        }
        CHECK(ret == 0 && st.code == 0);
        CHECK(rp.notify == tc->notify);
        CHECK(strcmp(rp.orcpt_type, or_empty(tc->orcpt_type)) == 0);
        CHECK(strcmp(rp.orcpt, or_empty(tc->orcpt)) == 0);
    }
}

struct xtext_case {
    const char *input;
    size_t len, outsize; /* 0: strlen(input); 0: 64 */
    int result;          /* decoded length, or -1 */
    const char *decoded;
};

/* clang-format off */
static const struct xtext_case decode_cases[] = {
    {.input = "", .result = 0, .decoded = ""},
    {.input = "abc", .result = 3, .decoded = "abc"},
    {.input = "a+2Bb", .result = 3, .decoded = "a+b"},
    {.input = "+3D+20+7E", .result = 3, .decoded = "= ~"},
    {.input = "+FF+80", .result = 2, .decoded = "\xff\x80"},
    {.input = "a+00b", .result = 3, .decoded = "a\0b"},
    {.input = "<>!~", .result = 4, .decoded = "<>!~"},
    {.input = "+2b", .result = -1},
    {.input = "+fF", .result = -1},
    {.input = "+2", .result = -1},
    {.input = "+", .result = -1},
    {.input = "a+", .result = -1},
    {.input = "+G0", .result = -1},
    {.input = "+ 0", .result = -1},
    {.input = "+2B", .len = 2, .result = -1},
    {.input = "a=b", .result = -1},
    {.input = "a b", .result = -1},
    {.input = "a\tb", .result = -1},
    {.input = "\x80", .result = -1},
    {.input = "\x7f", .result = -1},
    {.input = "a\0b", .len = 3, .result = -1},
    {.input = "abcd", .outsize = 4, .result = -1},
    {.input = "abcd", .outsize = 5, .result = 4, .decoded = "abcd"},
    {.input = "a+41", .outsize = 2, .result = -1},
    {.input = "a", .outsize = 1, .result = -1},
};
/* clang-format on */

static void test_xtext_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
        const struct xtext_case *tc = &decode_cases[i];
        size_t len = tc->len != 0 ? tc->len : strlen(tc->input);
        char out[64];
        int n;

        memset(out, 'X', sizeof(out));
        n = smtp_xtext_decode(tc->input, len, out, tc->outsize != 0 ? tc->outsize : sizeof(out));
        CHECK(n == tc->result);
        if (n < 0) {
            CHECK(out[0] == '\0');
            continue;
        }
        CHECK(memcmp(out, tc->decoded, (size_t)n) == 0 && out[n] == '\0');
    }
    assert_int_equal(smtp_xtext_decode("a", 1, NULL, 0), -1);
}

/* clang-format off */
static const struct xtext_case encode_cases[] = {
    {.input = "", .decoded = ""},
    {.input = "abc", .decoded = "abc"},
    {.input = "a+b=c", .decoded = "a+2Bb+3Dc"},
    {.input = "a b\r\n", .decoded = "a+20b+0D+0A"},
    {.input = "\0\xff\x7f", .len = 3, .decoded = "+00+FF+7F"},
    {.input = "<>!~", .decoded = "<>!~"},
    {.input = "a b", .outsize = 3, .decoded = "a+"},
    {.input = "a b", .outsize = 1, .decoded = ""},
};
/* clang-format on */

static void test_xtext_encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(encode_cases) / sizeof(encode_cases[0]); i++) {
        const struct xtext_case *tc = &encode_cases[i];
        size_t len = tc->len != 0 ? tc->len : strlen(tc->input);
        char out[64];
        size_t needed = 0;

        for (size_t j = 0; j < len; j++) {
            unsigned char ch = (unsigned char)tc->input[j];
            needed += ch > 32 && ch < 127 && ch != '+' && ch != '=' ? 1 : 3;
        }
        memset(out, 'X', sizeof(out));
        CHECK(smtp_xtext_encode(tc->input, len, out,
                                tc->outsize != 0 ? tc->outsize : sizeof(out)) == needed);
        CHECK(strcmp(out, tc->decoded) == 0);
    }
    assert_int_equal(smtp_xtext_encode("a b", 3, NULL, 0), 5);
}

/* Every byte value survives encode then decode. */
static void test_xtext_round_trip(void **state)
{
    char raw[256], enc[3 * 256 + 1], dec[257];
    size_t n;

    (void)state;
    for (int i = 0; i < 256; i++)
        raw[i] = (char)i;
    n = smtp_xtext_encode(raw, sizeof(raw), enc, sizeof(enc));
    assert_int_equal(n, strlen(enc));
    assert_int_equal(n, 3 * 256 - 2 * (126 - 33 + 1 - 2));
    assert_int_equal(smtp_xtext_decode(enc, n, dec, sizeof(dec)), 256);
    assert_memory_equal(raw, dec, sizeof(raw));
}

/* The reply echoes a keyword only after checking it, cut to 32 characters. */
static void test_keyword_echo_bounded(void **state)
{
    struct smtp_status st = {0};
    struct smtp_mail_params mp;

    (void)state;
    assert_int_equal(smtp_params_parse_mail(KEY40, strlen(KEY40), &offer_all, &mp, &st), -1);
    assert_string_equal(st.text, "Unsupported option " KEY32);
    assert_int_equal(smtp_params_parse_mail("X<Y", 3, &offer_all, &mp, &st), -1);
    assert_string_equal(st.text, "Syntax error in parameters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mail),
        cmocka_unit_test(test_rcpt),
        cmocka_unit_test(test_xtext_decode),
        cmocka_unit_test(test_xtext_encode),
        cmocka_unit_test(test_xtext_round_trip),
        cmocka_unit_test(test_keyword_echo_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
