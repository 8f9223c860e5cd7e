/*
 * test-smtp-data — table-driven tests of the DATA/BDAT content reader.
 *
 * Every row runs whole, byte by byte, and cut into three feeds at every pair
 * of positions, so no feed boundary can change the result (the reader keeps
 * what it writes up to the first error, so even error output is fixed).
 * The rows cover the SMTP smuggling variants (CVE-2023-51764 class).
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "gateway/smtp-data.h"

#define ALL SIZE_MAX /* expect_consumed: the whole input */

struct data_case {
    const char *name;
    const char *input;
    size_t input_len;   /* 0 = strlen(input) */
    enum smtp_data_mode mode;
    enum smtp_bare_policy bare;
    size_t max_line;
    uint64_t max_size;
    const char *expect_output;
    size_t output_len;  /* 0 = strlen(expect_output) */
    bool expect_end;
    size_t expect_consumed;
    enum smtp_data_error expect_error;
};

#define DOT SMTP_DATA_DOT
#define RAW SMTP_DATA_RAW
#define REJECT SMTP_BARE_REJECT
#define NORMALIZE SMTP_BARE_NORMALIZE
#define OK SMTP_DATA_OK
#define E_SIZE SMTP_DATA_ERR_SIZE
#define E_LINE SMTP_DATA_ERR_LINE
#define E_BARE SMTP_DATA_ERR_BARE

/* A smuggling attempt V between "x" and "smuggled\r\n.\r\n": the fake end
 * must not end the data; under REJECT only the octets before the first bare
 * one are kept. */
#define SMUGGLE(v, kept, normalized)                                          \
    { .name = "smuggle " #v " reject", .input = "x" v "smuggled\r\n.\r\n",    \
      .bare = REJECT, .expect_output = kept, .expect_end = true,              \
      .expect_consumed = ALL, .expect_error = E_BARE },                       \
    { .name = "smuggle " #v " normalize", .input = "x" v "smuggled\r\n.\r\n", \
      .bare = NORMALIZE, .expect_output = normalized, .expect_end = true,     \
      .expect_consumed = ALL, .expect_error = OK }

static const struct data_case cases[] = {
    /* The end of data and what follows it. */
    { .name = "simple", .input = "Subject: hi\r\n\r\nbody\r\n.\r\n",
      .expect_output = "Subject: hi\r\n\r\nbody\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "empty message", .input = ".\r\n", .expect_output = "",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "empty message, pipelined", .input = ".\r\nMAIL FROM:<a@b>\r\n",
      .expect_output = "", .expect_end = true, .expect_consumed = 3 },
    { .name = "empty line then end", .input = "\r\n.\r\n", .expect_output = "\r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "pipelined MAIL stays unread",
      .input = "a\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n",
      .expect_output = "a\r\n", .expect_end = true, .expect_consumed = 6 },
    { .name = "second end stays unread", .input = "a\r\n.\r\n.\r\n", .expect_output = "a\r\n",
      .expect_end = true, .expect_consumed = 6 },
    { .name = "no end yet", .input = "a\r\nb\r\n", .expect_output = "a\r\nb\r\n",
      .expect_consumed = ALL },
    { .name = "pending dot", .input = "a\r\n.", .expect_output = "a\r\n", .expect_consumed = ALL },
    { .name = "pending dot CR", .input = "a\r\n.\r", .expect_output = "a\r\n",
      .expect_consumed = ALL },
    { .name = "pending CR", .input = "a\r", .expect_output = "a", .expect_consumed = ALL },
    { .name = "empty input", .input = "", .expect_output = "", .expect_consumed = ALL },
    { .name = "NUL octets pass", .input = "a\0b\r\n.\r\n", .input_len = 8,
      .expect_output = "a\0b\r\n", .output_len = 5, .expect_end = true, .expect_consumed = ALL },

    /* Dot-unstuffing at real line starts only. */
    { .name = "stuffed dot", .input = "..hidden\r\n.\r\n", .expect_output = ".hidden\r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "line of only ..", .input = "a\r\n..\r\n.\r\n", .expect_output = "a\r\n.\r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "first line only ..", .input = "..\r\n.\r\n", .expect_output = ".\r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "three dots", .input = "...\r\n.\r\n", .expect_output = "..\r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "dot then text", .input = "a\r\n.x\r\n.\r\n", .expect_output = "a\r\nx\r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "dot space", .input = "a\r\n. \r\n.\r\n", .expect_output = "a\r\n \r\n",
      .expect_end = true, .expect_consumed = ALL },
    { .name = "dot inside a line", .input = "a.b\r\nc .\r\n.\r\n",
      .expect_output = "a.b\r\nc .\r\n",
      .expect_end = true, .expect_consumed = ALL },

    /* Smuggling: bare LF / bare CR never make a line end. */
    SMUGGLE("\n.\n", "x", "x\r\n.\r\nsmuggled\r\n"),
    SMUGGLE("\r.\r", "x", "x\r\n.\r\nsmuggled\r\n"),
    SMUGGLE("\r\n.\n", "x\r\n", "x\r\n\r\nsmuggled\r\n"),
    SMUGGLE("\n.\r\n", "x", "x\r\n.\r\nsmuggled\r\n"),
    SMUGGLE("\r\n.\r", "x\r\n", "x\r\n\r\nsmuggled\r\n"),
    SMUGGLE("\r.\n", "x", "x\r\n.\r\nsmuggled\r\n"),
    SMUGGLE("\n.\r", "x", "x\r\n.\r\nsmuggled\r\n"),
    SMUGGLE("\r\n.\r\r\n", "x\r\n", "x\r\n\r\n\r\nsmuggled\r\n"),
    SMUGGLE("\r\n.\n\r\n", "x\r\n", "x\r\n\r\n\r\nsmuggled\r\n"),
    SMUGGLE("\r\n\n.\r\n", "x\r\n", "x\r\n\r\n.\r\nsmuggled\r\n"),
    SMUGGLE("\r\n\r.\r\n", "x\r\n", "x\r\n\r\n.\r\nsmuggled\r\n"),
    { .name = ".\\n at start, reject", .input = ".\nsmuggled\r\n.\r\n",
      .expect_output = "", .expect_end = true, .expect_consumed = ALL, .expect_error = E_BARE },
    { .name = ".\\n at start, normalize", .input = ".\nsmuggled\r\n.\r\n", .bare = NORMALIZE,
      .expect_output = "\r\nsmuggled\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = ".\\r at start, normalize", .input = ".\rsmuggled\r\n.\r\n", .bare = NORMALIZE,
      .expect_output = "\r\nsmuggled\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "\\n.\\n at start, reject", .input = "\n.\nMAIL FROM:<e@v>\r\n.\r\n",
      .expect_output = "", .expect_end = true, .expect_consumed = ALL, .expect_error = E_BARE },
    /* A bare CR or LF before a real CR LF: that CR LF is real, so the end is. */
    { .name = "bare CR then real end, reject", .input = "x\r\r\n.\r\nMAIL FROM:<e@v>\r\n",
      .expect_output = "x", .expect_end = true, .expect_consumed = 7, .expect_error = E_BARE },
    { .name = "bare CR then real end, normalize", .input = "x\r\r\n.\r\nMAIL FROM:<e@v>\r\n",
      .bare = NORMALIZE, .expect_output = "x\r\n\r\n", .expect_end = true, .expect_consumed = 7 },
    { .name = "bare LF then real end, normalize", .input = "x\n\r\n.\r\nQUIT\r\n",
      .bare = NORMALIZE, .expect_output = "x\r\n\r\n", .expect_end = true, .expect_consumed = 7 },

    /* Normalize mode output. */
    { .name = "normalize mix", .input = "a\nb\rc\r\n.\r\n", .bare = NORMALIZE,
      .expect_output = "a\r\nb\r\nc\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "normalize CR run", .input = "a\r\r\r\n.\r\n", .bare = NORMALIZE,
      .expect_output = "a\r\n\r\n\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "normalize LF CR", .input = "a\n\rb\r\n.\r\n", .bare = NORMALIZE,
      .expect_output = "a\r\n\r\nb\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "normalize keeps dot after bare LF", .input = "a\n..\r\n.\r\n", .bare = NORMALIZE,
      .expect_output = "a\r\n..\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "reject LF CR", .input = "a\n\rb\r\n.\r\n",
      .expect_output = "a", .expect_end = true, .expect_consumed = ALL, .expect_error = E_BARE },

    /* Line limit: octets without CR LF, after unstuffing. */
    { .name = "line at limit", .input = "12345\r\n.\r\n", .max_line = 5,
      .expect_output = "12345\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "line one over", .input = "123456\r\n.\r\n", .max_line = 5,
      .expect_output = "12345", .expect_end = true, .expect_consumed = ALL,
      .expect_error = E_LINE },
    { .name = "second line one over", .input = "12345\r\n123456\r\n.\r\nQUIT\r\n", .max_line = 5,
      .expect_output = "12345\r\n12345", .expect_end = true, .expect_consumed = 18,
      .expect_error = E_LINE },
    { .name = "stuffed dot not counted", .input = "..2345\r\n.\r\n", .max_line = 5,
      .expect_output = ".2345\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "normalized LF ends a line", .input = "abc\ndef\r\n.\r\n", .max_line = 3,
      .bare = NORMALIZE, .expect_output = "abc\r\ndef\r\n", .expect_end = true,
      .expect_consumed = ALL },

    /* Size limit: output octets, CR LF included. */
    { .name = "size at limit", .input = "ab\r\ncd\r\n.\r\n", .max_size = 8,
      .expect_output = "ab\r\ncd\r\n", .expect_end = true, .expect_consumed = ALL },
    { .name = "size one over", .input = "ab\r\ncd\r\n.\r\n", .max_size = 7,
      .expect_output = "ab\r\ncd", .expect_end = true, .expect_consumed = ALL,
      .expect_error = E_SIZE },
    { .name = "size cuts a run", .input = "abcdef\r\n.\r\nQUIT\r\n", .max_size = 2,
      .expect_output = "ab", .expect_end = true, .expect_consumed = 11, .expect_error = E_SIZE },
    { .name = "size, normalized CR LF counts 2", .input = "a\nb\r\n.\r\n", .max_size = 4,
      .bare = NORMALIZE, .expect_output = "a\r\nb", .expect_end = true, .expect_consumed = ALL,
      .expect_error = E_SIZE },
    { .name = "first error sticks: size", .input = "abc\nd\r\n.\r\n", .max_size = 2,
      .expect_output = "ab", .expect_end = true, .expect_consumed = ALL, .expect_error = E_SIZE },
    { .name = "first error sticks: bare", .input = "a\nbcdef\r\n.\r\n",
      .max_size = 3, .max_line = 2,
      .expect_output = "a", .expect_end = true, .expect_consumed = ALL, .expect_error = E_BARE },
    { .name = "first error sticks: line", .input = "abc\r\nx\ny\r\n.\r\n", .max_line = 2,
      .expect_output = "ab", .expect_end = true, .expect_consumed = ALL, .expect_error = E_LINE },

    /* RAW (BDAT): no end, no unstuffing; limits and bare policy apply. */
    { .name = "raw plain", .input = "abc\r\ndef", .mode = RAW, .expect_output = "abc\r\ndef",
      .expect_consumed = ALL },
    { .name = "raw no end", .input = "a\r\n.\r\nb", .mode = RAW, .expect_output = "a\r\n.\r\nb",
      .expect_consumed = ALL },
    { .name = "raw dot at start", .input = ".\r\n", .mode = RAW, .expect_output = ".\r\n",
      .expect_consumed = ALL },
    { .name = "raw no unstuffing", .input = "..x\r\n..\r\n", .mode = RAW,
      .expect_output = "..x\r\n..\r\n", .expect_consumed = ALL },
    { .name = "raw trailing CR, reject", .input = "abc\r", .mode = RAW, .expect_output = "abc",
      .expect_consumed = ALL, .expect_error = E_BARE },
    { .name = "raw trailing CR, normalize", .input = "abc\r", .mode = RAW, .bare = NORMALIZE,
      .expect_output = "abc\r\n", .expect_consumed = ALL },
    { .name = "raw trailing CR over size", .input = "abc\r", .mode = RAW, .bare = NORMALIZE,
      .max_size = 4, .expect_output = "abc", .expect_consumed = ALL, .expect_error = E_SIZE },
    { .name = "raw bare LF, reject", .input = "a\nb", .mode = RAW, .expect_output = "a",
      .expect_consumed = ALL, .expect_error = E_BARE },
    { .name = "raw bare LF, normalize", .input = "a\nb\r\r\n", .mode = RAW, .bare = NORMALIZE,
      .expect_output = "a\r\nb\r\n\r\n", .expect_consumed = ALL },
    { .name = "raw line at limit", .input = "abc\r\nabc", .mode = RAW, .max_line = 3,
      .expect_output = "abc\r\nabc", .expect_consumed = ALL },
    { .name = "raw line one over", .input = "abc\r\nabcd", .mode = RAW, .max_line = 3,
      .expect_output = "abc\r\nabc", .expect_consumed = ALL, .expect_error = E_LINE },
    { .name = "raw size at limit", .input = "abc\r\n", .mode = RAW, .max_size = 5,
      .expect_output = "abc\r\n", .expect_consumed = ALL },
    { .name = "raw size one over", .input = "abc\r\nd", .mode = RAW, .max_size = 5,
      .expect_output = "abc\r\n", .expect_consumed = ALL, .expect_error = E_SIZE },
};

static size_t case_input_len(const struct data_case *c)
{
    return c->input_len != 0 ? c->input_len : strlen(c->input);
}

/* Feeds one piece; before the end every octet given must be consumed. */
static size_t feed_piece(const struct data_case *c, struct smtp_data_reader *r,
                         size_t from, size_t to, struct evbuffer *out, bool *end)
{
    size_t n;

    if (*end)
        return 0;
    n = smtp_data_feed(r, c->input + from, to - from, out, end);
    if (n > to - from)
        fail_msg("%s: consumed %zu of %zu", c->name, n, to - from);
    if (!*end && n != to - from)
        fail_msg("%s: stopped at %zu of %zu without an end", c->name, n, to - from);
    return n;
}

static void check_result(const struct data_case *c, const char *how, struct smtp_data_reader *r,
                         struct evbuffer *out, bool end, size_t consumed)
{
    size_t want_len = c->output_len != 0 ? c->output_len : strlen(c->expect_output);
    size_t want_consumed = c->expect_consumed == ALL ? case_input_len(c) : c->expect_consumed;
    enum smtp_data_error error = smtp_data_finish(r, out);
    size_t got_len = evbuffer_get_length(out);
    const unsigned char *got = evbuffer_pullup(out, -1);

    if (got_len != want_len || (want_len != 0 && memcmp(got, c->expect_output, want_len) != 0))
        fail_msg("%s (%s): output %zu octets \"%.*s\", want %zu", c->name, how, got_len,
                 (int)got_len, (const char *)got, want_len);
    if (end != c->expect_end)
        fail_msg("%s (%s): end %d, want %d", c->name, how, end, c->expect_end);
    if (consumed != want_consumed)
        fail_msg("%s (%s): consumed %zu, want %zu", c->name, how, consumed, want_consumed);
    if (error != c->expect_error)
        fail_msg("%s (%s): error %d, want %d", c->name, how, error, c->expect_error);
    if (smtp_data_size(r) != got_len)
        fail_msg("%s (%s): size %llu, output %zu", c->name, how,
                 (unsigned long long)smtp_data_size(r), got_len);
}

/* Runs a row as three feeds: [0,a), [a,b), [b,len). */
static void run_split(const struct data_case *c, size_t a, size_t b, const char *how)
{
    struct smtp_data_limits limits = {
        .max_line = c->max_line, .max_size = c->max_size, .bare = c->bare,
    };
    struct smtp_data_reader r;
    struct evbuffer *out = evbuffer_new();
    size_t len = case_input_len(c), consumed = 0;
    bool end = false;

    assert_non_null(out);
    smtp_data_init(&r, c->mode, &limits);
    consumed += feed_piece(c, &r, 0, a, out, &end);
    consumed += feed_piece(c, &r, a, b, out, &end);
    consumed += feed_piece(c, &r, b, len, out, &end);
    check_result(c, how, &r, out, end, consumed);
    evbuffer_free(out);
}

static void run_bytewise(const struct data_case *c)
{
    struct smtp_data_limits limits = {
        .max_line = c->max_line, .max_size = c->max_size, .bare = c->bare,
    };
    struct smtp_data_reader r;
    struct evbuffer *out = evbuffer_new();
    size_t len = case_input_len(c), consumed = 0;
    bool end = false;

    assert_non_null(out);
    smtp_data_init(&r, c->mode, &limits);
    for (size_t i = 0; i < len && !end; i++)
        consumed += feed_piece(c, &r, i, i + 1, out, &end);
    check_result(c, "byte by byte", &r, out, end, consumed);
    evbuffer_free(out);
}

static void test_whole(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_split(&cases[i], case_input_len(&cases[i]), case_input_len(&cases[i]), "whole");
}

static void test_bytewise(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_bytewise(&cases[i]);
}

static void test_every_split(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = case_input_len(&cases[i]);

        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++)
                run_split(&cases[i], a, b, "split");
    }
}

/* Once the end is seen, later feeds read nothing and still report the end. */
static void test_feed_after_end(void **state)
{
    struct smtp_data_limits limits = { .bare = SMTP_BARE_REJECT };
    struct smtp_data_reader r;
    struct evbuffer *out = evbuffer_new();
    bool end = false;

    assert_non_null(out);
    smtp_data_init(&r, SMTP_DATA_DOT, &limits);
    assert_int_equal(smtp_data_feed(&r, "a\r\n.\r\nQUIT\r\n", 12, out, &end), 6);
    assert_true(end);
    end = false;
    assert_int_equal(smtp_data_feed(&r, "QUIT\r\n", 6, out, &end), 0);
    assert_true(end);
    assert_int_equal(smtp_data_finish(&r, out), SMTP_DATA_OK);
    assert_int_equal(evbuffer_get_length(out), 3);
    evbuffer_free(out);
}

/* BDAT chunks: a CR at the end of one chunk pairs with an LF in the next. */
static void test_raw_chunks(void **state)
{
    static const char *const chunks[] = { "line one\r", "\nline two\r", "\n", "tail\r" };
    struct smtp_data_limits limits = { .bare = SMTP_BARE_REJECT };
    struct smtp_data_reader r;
    struct evbuffer *out = evbuffer_new();
    bool end = true;

    assert_non_null(out);
    smtp_data_init(&r, SMTP_DATA_RAW, &limits);
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(chunks[i]);
        assert_int_equal(smtp_data_feed(&r, chunks[i], n, out, &end), n);
        assert_false(end);
    }
    assert_int_equal(smtp_data_finish(&r, out), SMTP_DATA_OK);
    assert_int_equal(evbuffer_get_length(out), 20);
    assert_memory_equal(evbuffer_pullup(out, -1), "line one\r\nline two\r\n", 20);
    assert_int_equal(smtp_data_feed(&r, chunks[3], 5, out, &end), 5);
    assert_int_equal(smtp_data_finish(&r, out), SMTP_DATA_ERR_BARE);
    assert_int_equal(evbuffer_get_length(out), 24);
    evbuffer_free(out);
}

/* Feeds a big buffer in 4 KiB pieces; returns the output length. */
static size_t feed_big(const char *in, size_t len, enum smtp_data_mode mode,
                       enum smtp_bare_policy bare, bool *end)
{
    struct smtp_data_limits limits = { .bare = bare };
    struct smtp_data_reader r;
    struct evbuffer *out = evbuffer_new();
    size_t pos = 0, got;

    assert_non_null(out);
    smtp_data_init(&r, mode, &limits);
    *end = false;
    while (pos < len && !*end) {
        size_t n = len - pos < 4096 ? len - pos : 4096;
        pos += smtp_data_feed(&r, in + pos, n, out, end);
    }
    assert_int_equal(smtp_data_finish(&r, out), SMTP_DATA_OK);
    got = evbuffer_get_length(out);
    assert_int_equal(smtp_data_size(&r), got);
    evbuffer_free(out);
    return got;
}

/* 4 MiB of short lines (every tenth stuffed) and 4 MiB of bare CRs under
 * normalize: linear time, so this takes milliseconds, not hours. */
static void test_big(void **state)
{
    size_t len = 4u << 20, lines = len / 8;
    char *in = malloc(len + 3);
    bool end;

    assert_non_null(in);
    for (size_t i = 0; i < lines; i++)
        memcpy(in + i * 8, i % 10 == 0 ? "..3456\r\n" : "123456\r\n", 8);
    memcpy(in + len, ".\r\n", 3);
    assert_int_equal(feed_big(in, len + 3, SMTP_DATA_DOT, SMTP_BARE_REJECT, &end),
                     len - (lines + 9) / 10);
    assert_true(end);
    memset(in, '\r', len);
    assert_int_equal(feed_big(in, len, SMTP_DATA_RAW, SMTP_BARE_NORMALIZE, &end), 2 * len);
    assert_false(end);
    free(in);
}

/* Received: fields are counted in the header section only, in any case,
 * whatever the chunking. */
static const struct {
    const char *input;
    unsigned hops;
} hop_rows[] = {
    { .input = "Received: a\r\nReceived: b\r\nSubject: x\r\n\r\nbody\r\n", .hops = 2 },
    { .input = "received:a\r\nRECEIVED: b\r\n\r\n", .hops = 2 },
    { .input = "Received: a\r\n\tfolded Received: no\r\n\r\n", .hops = 1 },
    { .input = "Subject: x\r\n\r\nReceived: in the body\r\n", .hops = 0 },
    { .input = "X-Received: no\r\nReceivedX: no\r\nReceived : no\r\n\r\n", .hops = 0 },
    { .input = "Received:\r\n", .hops = 1 },
    { .input = "\r\nReceived: after the empty line\r\n", .hops = 0 },
    { .input = "Receiv", .hops = 0 },
};

static void test_hops(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hop_rows) / sizeof(hop_rows[0]); i++) {
        const char *in = hop_rows[i].input;
        size_t len = strlen(in);
        for (size_t step = 1; step <= len; step++) {
            struct smtp_hop_counter h = { 0 };
            for (size_t o = 0; o < len; o += step)
                smtp_hops_feed(&h, in + o, o + step <= len ? step : len - o);
            if (h.hops != hop_rows[i].hops)
                fail_msg("row %zu step %zu: %u hops, want %u", i, step, h.hops, hop_rows[i].hops);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_bytewise),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_feed_after_end),
        cmocka_unit_test(test_raw_chunks),
        cmocka_unit_test(test_big),
        cmocka_unit_test(test_hops),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
