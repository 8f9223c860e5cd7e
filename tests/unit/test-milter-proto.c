/*
 * test-milter-proto — the milter wire codec (filters/milter-proto.c), table
 * by table: framing (lengths, partial input, the limit checked from the 4
 * length bytes alone), decoding of every reply the MTA side takes and of
 * malformed ones (strings that do not end in the frame, too few or too
 * many, data where none belongs, unknown commands, OPTNEG macro lists),
 * REPLYCODE texts (one and several lines, enhanced codes, everything that
 * is not a 4xx/5xx printable reply), and the encoders byte for byte.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "filters/milter-proto.h"

/* A frame from a literal: cmd then data (may hold NULs). */
#define FRAME(cmd, data)                                                                           \
    {                                                                                              \
        (cmd), (const uint8_t *)(data), sizeof(data) - 1                                           \
    }

static void test_frame_parse(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        long rc;
        char cmd;
        size_t data_len;
    } rows[] = {
        {.bytes = "", .len = 0, .rc = 0},
        {.bytes = "\0\0\0", .len = 3, .rc = 0},
        {.bytes = "\0\0\0\1c", .len = 5, .rc = 5, .cmd = 'c', .data_len = 0},
        {.bytes = "\0\0\0\1cX", .len = 6, .rc = 5, .cmd = 'c', .data_len = 0}, /* next frame */
        {.bytes = "\0\0\0\3yab", .len = 7, .rc = 7, .cmd = 'y', .data_len = 2},
        {.bytes = "\0\0\0\3ya", .len = 6, .rc = 0},  /* not all there yet */
        {.bytes = "\0\0\0\0", .len = 4, .rc = -1},   /* no command byte */
        {.bytes = "\0\x10\0\1", .len = 4, .rc = -1}, /* 1 MiB + 1 */
        {.bytes = "\xff\xff\xff\xff", .len = 4, .rc = -1},
        {.bytes = "\0\x10\0\0", .len = 4, .rc = 0}, /* 1 MiB: allowed, wait */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct milter_frame f;
        long rc = milter_frame_parse((const uint8_t *)rows[i].bytes, rows[i].len, &f);
        if (rc != rows[i].rc)
            fail_msg("row %zu: %ld, expected %ld", i, rc, rows[i].rc);
        if (rc > 0 && (f.cmd != rows[i].cmd || f.len != rows[i].data_len))
            fail_msg("row %zu: cmd %c len %zu", i, f.cmd, f.len);
    }
}

static const struct {
    struct milter_frame f;
    const char *error; /* substring; NULL = decodes */
    const char *name, *value, *addr, *args, *text;
    uint32_t index;
} replies[] = {
    {.f = FRAME('c', "")},
    {.f = FRAME('a', "")},
    {.f = FRAME('r', "")},
    {.f = FRAME('t', "")},
    {.f = FRAME('d', "")},
    {.f = FRAME('s', "")},
    {.f = FRAME('p', "")},
    {.f = FRAME('4', "")},
    {.f = FRAME('f', "")},
    {.f = FRAME('c', "x"), .error = "data after a reply"},
    {.f = FRAME('r', "\0"), .error = "data after a reply"},
    {.f = FRAME('h', "X-A\0v\0"), .name = "X-A", .value = "v"},
    {.f = FRAME('h', "X-A\0\0"), .name = "X-A", .value = ""},
    {.f = FRAME('h', "X-A\0v"), .error = "does not end"},
    {.f = FRAME('h', "X-A\0"), .error = "too few"},
    {.f = FRAME('h', "\0v\0"), .error = "empty name"},
    {.f = FRAME('h', "a\0b\0c\0"), .error = "too many"},
    {.f = FRAME('h', ""), .error = "too few"},
    {.f = FRAME('i', "\0\0\0\1X\0v\0"), .index = 1, .name = "X", .value = "v"},
    {.f = FRAME('i', "\0\0"), .error = "without its index"},
    {.f = FRAME('m', "\0\0\0\2Subject\0\0"), .index = 2, .name = "Subject", .value = ""},
    {.f = FRAME('m', "\0\0\0\2Subject\0"), .error = "too few"},
    {.f = FRAME('+', "<a@b>\0"), .addr = "<a@b>"},
    {.f = FRAME('+', "<a@b>\0x\0"), .error = "too many"},
    {.f = FRAME('+', "\0"), .error = "empty"},
    {.f = FRAME('+', "<a@b>"), .error = "does not end"},
    {.f = FRAME('-', "<a@b>\0"), .addr = "<a@b>"},
    {.f = FRAME('2', "<a@b>\0"), .addr = "<a@b>"},
    {.f = FRAME('2', "<a@b>\0NOTIFY=NEVER\0"), .addr = "<a@b>", .args = "NOTIFY=NEVER"},
    {.f = FRAME('e', "<s@b>\0"), .addr = "<s@b>"},
    {.f = FRAME('e', "<s@b>\0SIZE=1\0"), .addr = "<s@b>", .args = "SIZE=1"},
    {.f = FRAME('e', ""), .error = "too few"},
    {.f = FRAME('b', "line\r\n")},
    {.f = FRAME('b', "")},
    {.f = FRAME('q', "virus\0"), .text = "virus"},
    {.f = FRAME('q', "virus"), .error = "does not end"},
    {.f = FRAME('y', "550 5.7.1 no\0"), .text = "550 5.7.1 no"},
    {.f = FRAME('y', ""), .error = "too few"},
    {.f = FRAME('Z', ""), .error = "unknown reply"},
    {.f = FRAME('l', "\0\0\0\0i\0"), .error = "unknown reply"},
};

static void test_reply_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        struct milter_reply r;
        const char *why = NULL;
        int rc = milter_reply_decode(&replies[i].f, &r, &why);
        if (replies[i].error != NULL) {
            if (rc != -1 || why == NULL || strstr(why, replies[i].error) == NULL)
                fail_msg("row %zu: rc %d (%s), expected \"%s\"", i, rc, why ? why : "-",
                         replies[i].error);
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu: %s", i, why);
        assert_int_equal(r.cmd, replies[i].f.cmd);
#define SAME(field)                                                                                \
    if ((replies[i].field == NULL) != (r.field == NULL) ||                                         \
        (r.field != NULL && strcmp(r.field, replies[i].field) != 0))                               \
        fail_msg("row %zu: " #field " %s", i, r.field ? r.field : "(null)");
        SAME(name);
        SAME(value);
        SAME(addr);
        SAME(args);
        SAME(text);
#undef SAME
        assert_int_equal(r.index, replies[i].index);
        if (r.cmd == 'b')
            assert_int_equal(r.body_len, replies[i].f.len);
    }
}

static void test_optneg(void **state)
{
    static const struct {
        struct milter_frame f;
        const char *error;
        uint32_t version, actions, protocol;
        const char *mail, *rcpt;
    } rows[] = {
        {.f = FRAME('O', "\0\0\0\6\0\0\1\xff\0\0\0\x42"),
         .version = 6,
         .actions = 0x1ff,
         .protocol = 0x42},
        {.f = FRAME('O', "\0\0\0\2\0\0\0\1\0\0\0\0"), .version = 2, .actions = 1},
        {.f = FRAME('O', "\0\0\0\6\0\0\0\1\0\0\0"), .error = "shorter than 12"},
        /* macro lists: stage 2 (mail), then stage 3 (rcpt) */
        {.f = FRAME('O', "\0\0\0\6\0\0\1\0\0\0\0\0\0\0\0\2{mail_addr} i\0\0\0\0\3{rcpt_addr}\0"),
         .version = 6,
         .actions = 0x100,
         .mail = "{mail_addr} i",
         .rcpt = "{rcpt_addr}"},
        {.f = FRAME('O', "\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0\2i"), .error = "without its NUL"},
        {.f = FRAME('O', "\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0"), .error = "truncated"},
        {.f = FRAME('O', "\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0\7i\0"), .error = "unknown stage"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct milter_reply r;
        const char *why = NULL;
        int rc = milter_reply_decode(&rows[i].f, &r, &why);
        if (rows[i].error != NULL) {
            if (rc != -1 || strstr(why, rows[i].error) == NULL)
                fail_msg("row %zu: rc %d (%s)", i, rc, why ? why : "-");
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu: %s", i, why);
        assert_int_equal(r.version, rows[i].version);
        assert_int_equal(r.actions, rows[i].actions);
        assert_int_equal(r.protocol, rows[i].protocol);
        if (rows[i].mail != NULL)
            assert_string_equal(r.symlist[MILTER_M_MAIL], rows[i].mail);
        else
            assert_null(r.symlist[MILTER_M_MAIL]);
        if (rows[i].rcpt != NULL)
            assert_string_equal(r.symlist[MILTER_M_RCPT], rows[i].rcpt);
        assert_null(r.symlist[MILTER_M_CONNECT]);
    }
}

static void test_replycode(void **state)
{
    static const struct {
        const char *in;
        const char *error;
        unsigned code;
        const char *enhanced, *text;
    } rows[] = {
        {.in = "550 5.7.1 Go away", .code = 550, .enhanced = "5.7.1", .text = "Go away"},
        {.in = "451 4.7.1 later", .code = 451, .enhanced = "4.7.1", .text = "later"},
        {.in = "554 no enhanced code", .code = 554, .enhanced = "", .text = "no enhanced code"},
        {.in = "550", .code = 550, .enhanced = "", .text = ""},
        {.in = "550 5.7.1", .code = 550, .enhanced = "5.7.1", .text = ""},
        {.in = "421 4.7.0 closing", .code = 421, .enhanced = "4.7.0", .text = "closing"},
        {.in = "550 4.7.1 wrong class", .code = 550, .enhanced = "", .text = "4.7.1 wrong class"},
        {.in = "550 5.7.1000 too long", .code = 550, .enhanced = "", .text = "5.7.1000 too long"},
        {.in = "550-5.7.1 one\r\n550 5.7.1 two",
         .code = 550,
         .enhanced = "5.7.1",
         .text = "one\ntwo"},
        {.in = "550-5.7.1 one\n550-5.7.1 two\n550 5.7.1 three\r\n",
         .code = 550,
         .enhanced = "5.7.1",
         .text = "one\ntwo\nthree"},
        {.in = "", .error = "empty"},
        {.in = "250 ok", .error = "not 4xx or 5xx"},
        {.in = "354 go", .error = "not 4xx or 5xx"},
        {.in = "5x0 bad", .error = "does not start with a code"},
        {.in = "56", .error = "does not start with a code"},
        {.in = "560 bad", .error = "out of range"},
        {.in = "550-5.7.1 one\r\n450 4.7.1 two", .error = "different codes"},
        {.in = "550 5.7.1 one\r\n550 5.7.1 two", .error = "not \"CODE-text\""},
        {.in = "550-5.7.1 one", .error = "not \"CODE text\""},
        {.in = "550_bad", .error = "not \"CODE text\""},
        {.in = "550 tab\there", .error = "printable"},
        {.in = "550 \x80 eight bit", .error = "printable"},
        {.in = "550 bare\rcr", .error = "printable"},
        {.in = "550-one\r\n550", .code = 550, .enhanced = "", .text = "one\n"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct smtp_status st;
        const char *why = NULL;
        int rc = milter_replycode_parse(rows[i].in, &st, &why);
        if (rows[i].error != NULL) {
            if (rc != -1 || why == NULL || strstr(why, rows[i].error) == NULL)
                fail_msg("row %zu: rc %d (%s), expected \"%s\"", i, rc, why ? why : "-",
                         rows[i].error);
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu: %s", i, why);
        assert_int_equal(st.code, rows[i].code);
        assert_string_equal(st.enhanced, rows[i].enhanced);
        assert_string_equal(st.text, rows[i].text);
    }
    /* a long multi-line reply is cut to fit */
    {
        char in[4096] = "";
        struct smtp_status st;
        const char *why;
        for (int i = 0; i < 40; i++)
            strcat(in,
                   i < 39 ? "550-5.7.1 a line of about thirty characters\r\n" : "550 5.7.1 last");
        assert_int_equal(milter_replycode_parse(in, &st, &why), 0);
        assert_true(strlen(st.text) < SMTP_STATUS_TEXT_MAX);
    }
}

/* The bytes of out, as a string with its length. */
static void expect_bytes(struct evbuffer *out, const char *bytes, size_t len)
{
    size_t n = evbuffer_get_length(out);
    const unsigned char *p = evbuffer_pullup(out, -1);

    if (n != len || memcmp(p, bytes, len) != 0) {
        char hex[1024] = "";
        for (size_t i = 0; i < n && i < 300; i++)
            snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%02x", p[i]);
        fail_msg("got %zu bytes %s, expected %zu", n, hex, len);
    }
    evbuffer_drain(out, n);
}

#define EXPECT(out, lit) expect_bytes(out, lit, sizeof(lit) - 1)

static void test_encode(void **state)
{
    struct evbuffer *out = evbuffer_new();
    const char *helo[] = {"client.test"};
    const char *hdr[] = {"Subject", "hi\n\tthere"};
    const char *mn[] = {"j", "{daemon_name}"}, *mv[] = {"mx.test", "mx"};
    char big[MILTER_CHUNK_MAX + 1];

    (void)state;
    assert_int_equal(milter_put_optneg(out, 6, 0x1ff, 0x1fffff), 0);
    EXPECT(out, "\0\0\0\x0dO\0\0\0\6\0\0\1\xff\0\x1f\xff\xff");
    assert_int_equal(milter_put_connect(out, "c.test", '4', 25, "192.0.2.1"), 0);
    EXPECT(out, "\0\0\0\x15"
                "Cc.test\0"
                "4\0\x19"
                "192.0.2.1\0");
    assert_int_equal(milter_put_connect(out, "unknown", 'U', 0, NULL), 0);
    EXPECT(out, "\0\0\0\x0a"
                "Cunknown\0U");
    assert_int_equal(milter_put_strings(out, 'H', helo, 1), 0);
    EXPECT(out, "\0\0\0\x0dHclient.test\0");
    assert_int_equal(milter_put_strings(out, 'L', hdr, 2), 0);
    EXPECT(out, "\0\0\0\x13LSubject\0hi\n\tthere\0");
    assert_int_equal(milter_put_strings(out, 'T', NULL, 0), 0);
    EXPECT(out, "\0\0\0\1T");
    assert_int_equal(milter_put_macros(out, 'C', mn, mv, 2), 0);
    EXPECT(out, "\0\0\0\x1d"
                "DCj\0mx.test\0{daemon_name}\0mx\0");
    assert_int_equal(milter_put_body(out, "a\r\nb\r\n", 6), 0);
    EXPECT(out, "\0\0\0\7Ba\r\nb\r\n");
    assert_int_equal(milter_put_empty(out, 'E'), 0);
    EXPECT(out, "\0\0\0\1E");
    /* nothing over MILTER_CHUNK_MAX is written, not even a part */
    memset(big, 'x', sizeof(big));
    assert_int_equal(milter_put_body(out, big, sizeof(big)), -1);
    assert_int_equal(milter_put_body(out, big, MILTER_CHUNK_MAX), 0);
    assert_int_equal(evbuffer_get_length(out), MILTER_CHUNK_MAX + 5);
    evbuffer_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_parse), cmocka_unit_test(test_reply_decode),
        cmocka_unit_test(test_optneg),      cmocka_unit_test(test_replycode),
        cmocka_unit_test(test_encode),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
