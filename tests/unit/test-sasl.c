/*
 * test-sasl — lib/smtp-sasl.c: strict base64 both ways, then the PLAIN
 * and LOGIN answers of SMTP AUTH, one table row per case.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/smtp-sasl.h"

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
#define RAW(s) .raw = s, .rawlen = sizeof(s) - 1

static const struct decode_row {
    const char *in;
    size_t outsize; /* 0 = a big buffer */
    int ret;
    const char *raw; /* expected bytes when ret >= 0 */
    size_t rawlen;
} decode_rows[] = {
    { .in = "", .ret = 0, RAW("") },
    { .in = "=", .ret = 0, RAW("") },
    { .in = "QQ==", .ret = 1, RAW("A") },
    { .in = "QUI=", .ret = 2, RAW("AB") },
    { .in = "QUJD", .ret = 3, RAW("ABC") },
    { .in = "QUJDRA==", .ret = 4, RAW("ABCD") },
    { .in = "AGFsaWNlAHNlY3JldA==", .ret = 13, RAW("\0alice\0secret") },
    { .in = "+/+/", .ret = 3, RAW("\xfb\xff\xbf") },
    { .in = "AAAA", .ret = 3, RAW("\0\0\0") },
    /* length not a multiple of 4 */
    { .in = "QQ", .ret = -1 },
    { .in = "QQ=", .ret = -1 },
    { .in = "QUJDR", .ret = -1 },
    { .in = "==", .ret = -1 },
    /* padding in the wrong place or too much of it */
    { .in = "====", .ret = -1 },
    { .in = "Q===", .ret = -1 },
    { .in = "=QQQ", .ret = -1 },
    { .in = "QQ=A", .ret = -1 },
    { .in = "Q=Q=", .ret = -1 },
    { .in = "QQ==QUJD", .ret = -1 },
    { .in = "QUJD====", .ret = -1 },
    { .in = "QUJD=", .ret = -1 },
    /* non-zero bits under the padding (not canonical) */
    { .in = "QR==", .ret = -1 },
    { .in = "QUJ=", .ret = -1 },
    /* characters outside the alphabet */
    { .in = "QU I=", .ret = -1 },
    { .in = " QUI=", .ret = -1 },
    { .in = "QUI=\r\n", .ret = -1 },
    { .in = "QUJD\n", .ret = -1 },
    { .in = "QU-_", .ret = -1 },
    { .in = "QU*D", .ret = -1 },
    { .in = "QU\xc3\x84", .ret = -1 },
    { .in = "*", .ret = -1 },
    /* the output buffer: exactly big enough (no room for the NUL), too small */
    { .in = "QUJD", .outsize = 3, .ret = 3, RAW("ABC") },
    { .in = "QUJD", .outsize = 2, .ret = -1 },
    { .in = "QUI=", .outsize = 2, .ret = 2, RAW("AB") },
    { .in = "QUI=", .outsize = 1, .ret = -1 },
    { .in = "QUJDRA==", .outsize = 4, .ret = 4, RAW("ABCD") },
    { .in = "QUJDRA==", .outsize = 3, .ret = -1 },
};

static void check_decode_row(size_t i, const struct decode_row *r)
{
    unsigned char buf[64];
    size_t outsize = r->outsize != 0 ? r->outsize : sizeof(buf) - 1;
    int ret;

    memset(buf, 0xa5, sizeof(buf));
    ret = sasl_base64_decode(r->in, strlen(r->in), buf, outsize);
    if (ret != r->ret)
        fail_msg("row %zu '%s': got %d, want %d", i, r->in, ret, r->ret);
    if (buf[outsize] != 0xa5)
        fail_msg("row %zu '%s': wrote past outsize", i, r->in);
    if (ret < 0)
        return;
    if (memcmp(buf, r->raw, r->rawlen) != 0)
        fail_msg("row %zu '%s': wrong bytes", i, r->in);
    if ((size_t)ret < outsize && buf[ret] != '\0')
        fail_msg("row %zu '%s': not NUL-terminated", i, r->in);
}

static void test_base64_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(decode_rows); i++)
        check_decode_row(i, &decode_rows[i]);
}

/* The len argument bounds the input, which need not be NUL-terminated. */
static void test_base64_decode_len(void **state)
{
    unsigned char buf[16];
    (void)state;

    assert_int_equal(sasl_base64_decode("QUJDxx", 4, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "ABC", 4);
    assert_int_equal(sasl_base64_decode("QUI=QUI=", 4, buf, sizeof(buf)), 2);
    assert_int_equal(sasl_base64_decode("QUJD", 3, buf, sizeof(buf)), -1);
    assert_int_equal(sasl_base64_decode("=A", 1, buf, sizeof(buf)), 0);
    assert_int_equal(sasl_base64_decode("=", 1, buf, 0), 0);
}

static const struct encode_row {
    const char *raw;
    size_t rawlen;
    size_t outsize; /* 0 = a big buffer */
    int ret;
    const char *out;
} encode_rows[] = {
    { RAW(""), .ret = 0, .out = "" },
    { RAW("A"), .ret = 4, .out = "QQ==" },
    { RAW("AB"), .ret = 4, .out = "QUI=" },
    { RAW("ABC"), .ret = 4, .out = "QUJD" },
    { RAW("ABCD"), .ret = 8, .out = "QUJDRA==" },
    { RAW("\0alice\0secret"), .ret = 20, .out = "AGFsaWNlAHNlY3JldA==" },
    { RAW("\xfb\xff\xbf"), .ret = 4, .out = "+/+/" },
    { RAW("ABC"), .outsize = 5, .ret = 4, .out = "QUJD" },
    { RAW("ABC"), .outsize = 4, .ret = -1 },
    { RAW(""), .outsize = 1, .ret = 0, .out = "" },
    { RAW(""), .outsize = 0, .ret = -1 },
};

static void test_base64_encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(encode_rows); i++) {
        const struct encode_row *r = &encode_rows[i];
        char buf[64];
        size_t outsize = r->outsize != 0 || r->ret < 0 ? r->outsize : sizeof(buf) - 1;
        int ret;

        memset(buf, 0x5a, sizeof(buf));
        ret = sasl_base64_encode((const unsigned char *)r->raw, r->rawlen, buf, outsize);
        if (ret != r->ret)
            fail_msg("row %zu: got %d, want %d", i, ret, r->ret);
        if (buf[outsize] != 0x5a)
            fail_msg("row %zu: wrote past outsize", i);
        if (ret >= 0 && strcmp(buf, r->out) != 0)
            fail_msg("row %zu: got '%s', want '%s'", i, buf, r->out);
    }
}

/* Every byte value and every length 0..70 survives encode then decode. */
static void test_base64_roundtrip(void **state)
{
    unsigned char raw[70], back[72];
    char b64[100];
    (void)state;

    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(raw); len++) {
        int n = sasl_base64_encode(raw, len, b64, sizeof(b64));
        assert_int_equal(n, (int)((len + 2) / 3 * 4));
        assert_int_equal(sasl_base64_decode(b64, (size_t)n, back, sizeof(back)), (int)len);
        assert_memory_equal(raw, back, len);
    }
    for (int c = 0; c < 256; c++) {
        unsigned char one = (unsigned char)c;
        assert_int_equal(sasl_base64_encode(&one, 1, b64, sizeof(b64)), 4);
        assert_int_equal(sasl_base64_decode(b64, 4, back, sizeof(back)), 1);
        assert_int_equal(back[0], c);
    }
}

static const struct plain_row {
    const char *raw; /* encoded by the test; NULL = use b64 as given */
    size_t rawlen;
    const char *b64;
    int ret;
    const char *authzid, *authcid, *password;
    const char *error;
} plain_rows[] = {
    { RAW("\0alice\0secret"), .ret = 0, .authzid = "", .authcid = "alice", .password = "secret" },
    { RAW("admin\0alice\0s3cret pw"),
      .ret = 0,
      .authzid = "admin",
      .authcid = "alice",
      .password = "s3cret pw" },
    { RAW("alice\0alice\0x"), .ret = 0, .authzid = "alice", .authcid = "alice", .password = "x" },
    { RAW("\0j\xc3\xb6rg@example.org\0p\xc3\xa4ss"),
      .ret = 0,
      .authzid = "",
      .authcid = "j\xc3\xb6rg@example.org",
      .password = "p\xc3\xa4ss" },
    { .b64 = "AGFsaWNlAHNlY3JldA==", .ret = 0, .authzid = "", .authcid = "alice",
      .password = "secret" },
    /* empty or missing fields and wrong NUL counts */
    { .b64 = "=", .ret = -1, .error = "Invalid PLAIN response" },
    { .b64 = "", .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("alicesecret"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("alice\0secret"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0alice\0sec\0ret"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0alice\0secret\0"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0\0alice\0secret"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0\0secret"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0alice\0"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0\0"), .ret = -1, .error = "Invalid PLAIN response" },
    { RAW("\0"), .ret = -1, .error = "Invalid PLAIN response" },
    /* bad base64 */
    { .b64 = "AGFsaWNl*HNlY3JldA==", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "AGFsaWNlAHNlY3JldA=", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "AGFsaWNlAHNlY3JldA", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "AGFsaWNlAHNlY3JldB==", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "AGFsaWNlAHNlY3JldA==\r\n", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "AGFsaWNl AHNlY3JldA==", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "AGFsaWNlAHNlY3JldA===", .ret = -1, .error = "Invalid base64 data" },
};

static void check_plain_row(size_t i, const struct plain_row *r)
{
    char b64[128];
    const char *in = r->b64, *error = NULL;
    struct sasl_credentials creds;
    int ret;

    if (r->raw != NULL) {
        assert_true(sasl_base64_encode((const unsigned char *)r->raw, r->rawlen, b64,
                                       sizeof(b64)) >= 0);
        in = b64;
    }
    memset(&creds, 'x', sizeof(creds));
    ret = sasl_plain_decode(in, strlen(in), &creds, &error);
    if (ret != r->ret)
        fail_msg("row %zu '%s': got %d (%s), want %d", i, in, ret, error ? error : "", r->ret);
    if (ret < 0) {
        assert_string_equal(error, r->error);
        /* nothing half-decoded is left behind */
        assert_string_equal(creds.authcid, "");
        assert_string_equal(creds.password, "");
        return;
    }
    assert_string_equal(creds.authzid, r->authzid);
    assert_string_equal(creds.authcid, r->authcid);
    assert_string_equal(creds.password, r->password);
}

static void test_plain(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(plain_rows); i++)
        check_plain_row(i, &plain_rows[i]);
}

/* Field sizes around SASL_FIELD_MAX (256). */
static const struct plain_size_row {
    size_t authzid, authcid, password;
    int ret;
} plain_size_rows[] = {
    { 0, 1, 1, 0 },         { 0, 256, 1, 0 },       { 0, 1, 256, 0 },   { 256, 1, 1, 0 },
    { 256, 256, 256, 0 },   { 0, 257, 1, -1 },      { 0, 1, 257, -1 },  { 257, 1, 1, -1 },
    { 257, 256, 256, -1 },  { 256, 256, 257, -1 },  { 0, 1, 2000, -1 }, { 0, 2000, 1, -1 },
};

static void check_plain_size_row(size_t i, const struct plain_size_row *r)
{
    unsigned char raw[4100];
    char b64[5500];
    size_t len = 0;
    struct sasl_credentials creds;
    const char *error = NULL;
    int n, ret;

    memset(raw + len, 'z', r->authzid);
    len += r->authzid;
    raw[len++] = '\0';
    memset(raw + len, 'c', r->authcid);
    len += r->authcid;
    raw[len++] = '\0';
    memset(raw + len, 'p', r->password);
    len += r->password;
    n = sasl_base64_encode(raw, len, b64, sizeof(b64));
    assert_true(n > 0);
    ret = sasl_plain_decode(b64, (size_t)n, &creds, &error);
    if (ret != r->ret)
        fail_msg("row %zu (%zu/%zu/%zu): got %d, want %d", i, r->authzid, r->authcid,
                 r->password, ret, r->ret);
    if (ret < 0) {
        assert_string_equal(error, "Invalid PLAIN response");
        return;
    }
    assert_int_equal(strlen(creds.authzid), r->authzid);
    assert_int_equal(strlen(creds.authcid), r->authcid);
    assert_int_equal(strlen(creds.password), r->password);
}

static void test_plain_sizes(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(plain_size_rows); i++)
        check_plain_size_row(i, &plain_size_rows[i]);
}

/* An over-long answer is refused before it is decoded, even as junk. */
static void test_plain_oversize_junk(void **state)
{
    char b64[2001];
    struct sasl_credentials creds;
    const char *error = NULL;
    (void)state;

    memset(b64, '*', sizeof(b64) - 1);
    b64[sizeof(b64) - 1] = '\0';
    assert_int_equal(sasl_plain_decode(b64, strlen(b64), &creds, &error), -1);
    assert_string_equal(error, "Invalid PLAIN response");
}

static const struct login_row {
    const char *raw; /* encoded by the test; NULL = use b64 as given */
    size_t rawlen;
    const char *b64;
    int ret;
    const char *out;
    const char *error;
} login_rows[] = {
    { RAW("alice"), .ret = 0, .out = "alice" },
    { RAW("alice@example.org"), .ret = 0, .out = "alice@example.org" },
    { RAW("pass word"), .ret = 0, .out = "pass word" },
    { .b64 = "YWxpY2U=", .ret = 0, .out = "alice" },
    { .b64 = "VXNlcm5hbWU6", .ret = 0, .out = "Username:" },
    { .b64 = "=", .ret = -1, .error = "Invalid LOGIN response" },
    { .b64 = "", .ret = -1, .error = "Invalid LOGIN response" },
    { RAW("a\0b"), .ret = -1, .error = "Invalid LOGIN response" },
    { RAW("alice\0"), .ret = -1, .error = "Invalid LOGIN response" },
    { RAW("\0"), .ret = -1, .error = "Invalid LOGIN response" },
    { .b64 = "YWxpY2U", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "YWxpY2U=\r\n", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "YWxpY2V=", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "YWx*Y2U=", .ret = -1, .error = "Invalid base64 data" },
    { .b64 = "*", .ret = -1, .error = "Invalid base64 data" },
};

static void check_login_row(size_t i, const struct login_row *r)
{
    char b64[64], out[SASL_FIELD_MAX + 1];
    const char *in = r->b64, *error = NULL;
    int ret;

    if (r->raw != NULL) {
        assert_true(sasl_base64_encode((const unsigned char *)r->raw, r->rawlen, b64,
                                       sizeof(b64)) >= 0);
        in = b64;
    }
    memset(out, 'x', sizeof(out));
    ret = sasl_login_decode(in, strlen(in), out, &error);
    if (ret != r->ret)
        fail_msg("row %zu '%s': got %d (%s), want %d", i, in, ret, error ? error : "", r->ret);
    if (ret < 0) {
        assert_string_equal(error, r->error);
        assert_string_equal(out, "");
        return;
    }
    assert_string_equal(out, r->out);
}

static void test_login(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(login_rows); i++)
        check_login_row(i, &login_rows[i]);
}

static void test_login_sizes(void **state)
{
    static const struct {
        size_t len;
        int ret;
    } rows[] = { { 1, 0 }, { 255, 0 }, { 256, 0 }, { 257, -1 }, { 258, -1 }, { 1000, -1 } };
    unsigned char raw[1000];
    char b64[1400], out[SASL_FIELD_MAX + 1];
    const char *error = NULL;
    (void)state;

    memset(raw, 'u', sizeof(raw));
    for (size_t i = 0; i < N_ELEMENTS(rows); i++) {
        int n = sasl_base64_encode(raw, rows[i].len, b64, sizeof(b64));
        int ret = sasl_login_decode(b64, (size_t)n, out, &error);
        if (ret != rows[i].ret)
            fail_msg("length %zu: got %d, want %d", rows[i].len, ret, rows[i].ret);
        if (ret == 0)
            assert_int_equal(strlen(out), rows[i].len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_decode),
        cmocka_unit_test(test_base64_decode_len),
        cmocka_unit_test(test_base64_encode),
        cmocka_unit_test(test_base64_roundtrip),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_plain_sizes),
        cmocka_unit_test(test_plain_oversize_junk),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_sizes),
    };

    return cmocka_run_group_tests_name("sasl", tests, NULL, NULL);
}
