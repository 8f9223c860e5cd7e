/*
 * test-attachments — the attachments filter's inspection without the
 * chain (filters/attachments.h), on messages and archives built here at
 * test time (attachments-test.c): the pre-scanner's bounds and how it
 * follows the MIME structure (a row per case), name normalization and
 * extensions, and att_inspect on whole messages, a row per case: RFC 2231
 * continuations with charsets, RFC 2047 names, name/filename conflicts
 * (both checked), double extensions, an .exe renamed .pdf caught by
 * libmagic, zip, 7z, tar.gz, gzip and RAR archives, nested archives to the
 * depth limit and past it, encrypted zip and RAR, a zip bomb's ratio, the
 * unpacked size and entry limits, unreadable archives (the bombs are in
 * test-attachments-bombs.c); broken MIME (no closing boundary, two
 * Content-Transfer-Encodings) still showing its file; and the bounds
 * that only the walk over GMime's tree can see (RFC 2231 boundaries the
 * scanner does not read). Strip is checked on the new body itself: the
 * text part in place of the file, everything else as it was, CR LF lines,
 * and the rewritten message inspected again is clean.
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
#include <sys/resource.h>

#include "filters/attachments.h"
#include "gateway/server-config.h"
#include "tests/unit/attachments-test.h"
#include "tests/unit/config-test.h"
#include "tests/unit/loop-test.h"

static const struct att_limits limits = {
    .max_depth = 20, .max_parts = 1000, .max_headers = 1000, .max_header_size = 256 * 1024};

/* ---- the pre-scanner ---- */

static char *text_msg(const char *body_headers, const char *body, size_t *len)
{
    struct mbuf m = {.p = NULL};

    mbuf_printf(&m, "Received: from x\r\nSubject: t\r\n%s\r\n%s", body_headers, body);
    *len = m.len;
    return m.p;
}

static const struct {
    const char *what, *headers, *body;
    unsigned parts; /* the entities the scanner counts */
    unsigned depth; /* the deepest it sees */
} scan_rows[] = {
    {.what = "plain text", .headers = "", .body = "hello\r\n", .parts = 1, .depth = 0},
    {.what = "two parts",
     .headers = "Content-Type: multipart/mixed; boundary=\"a\"\r\n",
     .body = "pre\r\n--a\r\n\r\none\r\n--a\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--a--\r\n",
     .parts = 3,
     .depth = 1},
    {.what = "a delimiter with white space after it counts, one with text does not",
     .headers = "Content-Type: multipart/mixed; boundary=a\r\n",
     .body = "--a \t\r\n\r\none\r\n--ab\r\n\r\n--a\r\n\r\ntwo\r\n--a--\r\n",
     .parts = 3,
     .depth = 1},
    {.what = "nested, closed by the outer delimiter",
     .headers = "Content-Type: multipart/mixed; boundary=\"o\"\r\n",
     .body = "--o\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n"
             "--i\r\n\r\nx\r\n--o\r\n\r\ny\r\n--o--\r\n",
     .parts = 4,
     .depth = 2},
    {.what = "a boundary in a part's header is not a delimiter until the empty line",
     .headers = "Content-Type: multipart/mixed; boundary=\"a\"\r\n",
     .body = "--a\r\nX-A: 1\r\n--a\r\n\r\nx\r\n--a--\r\n",
     .parts = 2,
     .depth = 1},
    {.what = "message/rfc822 nests",
     .headers = "Content-Type: message/rfc822\r\n",
     .body = "Subject: inner\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nbody\r\n",
     .parts = 3,
     .depth = 2},
    {.what = "base64 message/rfc822 does not",
     .headers = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n",
     .body = "U3ViamVjdDogeA0KDQpib2R5DQo=\r\n",
     .parts = 1,
     .depth = 0},
    {.what = "digest parts default to message/rfc822",
     .headers = "Content-Type: multipart/digest; boundary=\"d\"\r\n",
     .body = "--d\r\n\r\nContent-Type: multipart/mixed; boundary=\"e\"\r\n\r\n--e\r\n\r\nx\r\n"
             "--e--\r\n--d--\r\n",
     .parts = 4,
     .depth = 3},
    {.what = "the last Content-Type counts, comments and folding are read",
     .headers = "Content-Type: text/plain\r\nContent-Type: (c) multipart/mixed;\r\n"
                "\tcharset=x; boundary=\r\n \"q\\\"q\"\r\n",
     .body = "--q\"q\r\n\r\nx\r\n--q\"q--\r\n",
     .parts = 2,
     .depth = 1},
    {.what = "a multipart without boundary is a leaf",
     .headers = "Content-Type: multipart/mixed\r\n",
     .body = "--a\r\n\r\nx\r\n",
     .parts = 1,
     .depth = 0},
};

static void test_prescan_rows(void **state)
{
    char why[128];

    (void)state;
    for (size_t i = 0; i < sizeof(scan_rows) / sizeof(scan_rows[0]); i++) {
        size_t len;
        char *msg = text_msg(scan_rows[i].headers, scan_rows[i].body, &len);
        struct att_limits l = limits;
        l.max_parts = scan_rows[i].parts;
        l.max_depth = scan_rows[i].depth > 0 ? scan_rows[i].depth : 1;
        if (att_prescan(msg, len, &l, why, sizeof(why)) != 0)
            fail_msg("row %zu (%s): over at its own counts: %s", i, scan_rows[i].what, why);
        l.max_parts = scan_rows[i].parts - 1;
        if (scan_rows[i].parts > 1 && att_prescan(msg, len, &l, why, sizeof(why)) != 1)
            fail_msg("row %zu (%s): %u parts not seen", i, scan_rows[i].what, scan_rows[i].parts);
        l.max_parts = scan_rows[i].parts;
        l.max_depth = scan_rows[i].depth - 1;
        if (scan_rows[i].depth > 0 && att_prescan(msg, len, &l, why, sizeof(why)) != 1)
            fail_msg("row %zu (%s): depth %u not seen", i, scan_rows[i].what, scan_rows[i].depth);
        free(msg);
    }
}

static void test_prescan_bounds(void **state)
{
    char why[128];
    size_t len;
    char *msg;

    (void)state;
    msg = bomb_nested(20, "boundary", &len); /* 21 levels: the message and 20 multiparts, and
                                              * the text part below them */
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 1);
    assert_string_equal(why, "nesting depth over 20");
    free(msg);
    msg = bomb_nested(19, "boundary", &len);
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 0);
    free(msg);
    msg = bomb_siblings(999, "boundary", &len);
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 0);
    free(msg);
    msg = bomb_siblings(1000, "boundary", &len);
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 1);
    assert_string_equal(why, "more than 1000 MIME parts");
    free(msg);
    msg = bomb_header(300 * 1024, &len);
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 1);
    assert_string_equal(why, "a header section over 262144 octets");
    free(msg);
    msg = bomb_fields(995, &len); /* and the 5 of msg_header */
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 0);
    free(msg);
    msg = bomb_fields(996, &len);
    assert_int_equal(att_prescan(msg, len, &limits, why, sizeof(why)), 1);
    assert_string_equal(why, "more than 1000 header fields in one section");
    free(msg);
    /* a header without an empty line after it, or without any line end */
    assert_int_equal(att_prescan("Subject: x", 10, &limits, why, sizeof(why)), 0);
    assert_int_equal(att_prescan("", 0, &limits, why, sizeof(why)), 0);
}

/* ---- names ---- */

static void test_names(void **state)
{
    static const struct {
        const char *in, *norm;
        bool dbl;
    } rows[] = {
        {.in = "invoice.pdf.exe", .norm = "invoice.pdf.exe", .dbl = true},
        {.in = "setup.exe", .norm = "setup.exe", .dbl = false},
        {.in = "C:\\Users\\x\\evil.exe", .norm = "evil.exe", .dbl = false},
        {.in = "../../evil.exe", .norm = "evil.exe", .dbl = false},
        {.in = "invoice.pdf   .exe", .norm = "invoice.pdf.exe", .dbl = true},
        {.in = "invoice.exe. . ", .norm = "invoice.exe", .dbl = false},
        {.in = "  report . docx", .norm = "report.docx", .dbl = false},
        {.in = "John.Smith.exe", .norm = "John.Smith.exe", .dbl = false},
        {.in = ".pdf.exe", .norm = ".pdf.exe", .dbl = false},
        {.in = "a.PDF.Exe", .norm = "a.PDF.Exe", .dbl = true},
        /* U+202E (RIGHT-TO-LEFT OVERRIDE) shows "invoiceexe.pdf" */
        {.in = "invoice\xe2\x80\xae"
               "fdp.exe",
         .norm = "invoicefdp.exe",
         .dbl = false},
        {.in = "a\xe2\x80\x8b.pdf\xef\xbb\xbf.exe", .norm = "a.pdf.exe", .dbl = true},
        {.in = "x\x01y.exe", .norm = "xy.exe", .dbl = false},
        {.in = "", .norm = "", .dbl = false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *n = att_name_normalize(rows[i].in);
        assert_non_null(n);
        if (strcmp(n, rows[i].norm) != 0 || att_name_has_double_ext(n) != rows[i].dbl)
            fail_msg("row %zu: \"%s\" -> \"%s\" (double %d)", i, rows[i].in, n,
                     att_name_has_double_ext(n));
        free(n);
    }
    assert_true(att_name_has_ext("a.EXE", "exe"));
    assert_true(att_name_has_ext("a.pdf.exe", "pdf.exe"));
    assert_false(att_name_has_ext("exe", "exe"));
    assert_false(att_name_has_ext("a.xexe", "exe"));
    assert_false(att_name_has_ext("a.exe", ""));

    /* a long name keeps its end (the extension) and stays bounded */
    char *big = malloc(100001);
    assert_non_null(big);
    memset(big, 'a', 100000);
    memcpy(big + 99996, ".exe", 5);
    char *n = att_name_normalize(big);
    assert_true(strlen(n) <= 1024);
    assert_true(att_name_has_ext(n, "exe"));
    assert_int_equal(strncmp(n, "aaaa", 4), 0);
    free(n);
    free(big);

    char out[32];
    att_text_sanitize("\xc3\xa9t\xc3\xa9\x01.exe", out, sizeof(out), false);
    assert_string_equal(out, "\xc3\xa9t\xc3\xa9?.exe");
    att_text_sanitize("\xc3\xa9t\xc3\xa9\x01.exe", out, sizeof(out), true);
    assert_string_equal(out, "?t??.exe");
    att_text_sanitize("\xff\xfe"
                      "a\xe2\x80\xae",
                      out, sizeof(out), false);
    assert_string_equal(out, "??a?");
    att_text_sanitize("abcdef\xc3\xa9", out, 8, false); /* é does not fit whole */
    assert_string_equal(out, "abcdef");
}

/* ---- inspection ---- */

static unsigned char pe[2048];
static const char pdf[] = "%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n";
static const char text[] = "just some text, nothing to run\n";

static void one_archive(struct mbuf *m, const char *format, const char *name,
                        const struct test_entry *e, size_t n)
{
    size_t len;
    void *a = archive_build(format, e, n, &len);

    msg_one_file(m, "application/octet-stream", name, name, a, len);
    free(a);
}

static void m_clean_pdf(struct mbuf *m)
{
    msg_one_file(m, "application/pdf", "invoice.pdf", "invoice.pdf", pdf, sizeof(pdf) - 1);
}

static void m_exe(struct mbuf *m)
{
    msg_one_file(m, "application/octet-stream", NULL, "setup.exe", pe, sizeof(pe));
}

static void m_rfc2231(struct mbuf *m)
{
    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_part(m, ATT_TEST_BOUNDARY,
             "Content-Type: application/octet-stream;\r\n name*0*=iso-8859-1''%E9t%E9;\r\n"
             " name*1=\".pdf.exe\"\r\nContent-Disposition: attachment;\r\n"
             " filename*0*=iso-8859-1''%E9t%E9;\r\n filename*1=\".pdf.exe\"\r\n",
             text, sizeof(text) - 1);
    msg_end(m, ATT_TEST_BOUNDARY);
}

static void m_rfc2231_utf8(struct mbuf *m)
{
    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_part(m, ATT_TEST_BOUNDARY,
             "Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
             " filename*0*=UTF-8'ru'%D1%81%D1%87%D1%91%D1%82;\r\n filename*1*=%2E%65%78%65\r\n",
             text, sizeof(text) - 1);
    msg_end(m, ATT_TEST_BOUNDARY);
}

static void m_rfc2047(struct mbuf *m)
{
    msg_one_file(m, "application/octet-stream", NULL, "=?UTF-8?B?cmFwcG9ydC5leGU=?=", text,
             sizeof(text) - 1);
}

static void m_rfc2047_q(struct mbuf *m)
{
    msg_one_file(m, "application/octet-stream", "=?iso-8859-1?Q?r=E9sum=E9=2Escr?=", NULL, text,
             sizeof(text) - 1);
}

static void m_conflict_name(struct mbuf *m)
{
    msg_one_file(m, "application/octet-stream", "report.exe", "report.pdf", text, sizeof(text) - 1);
}

static void m_conflict_filename(struct mbuf *m)
{
    msg_one_file(m, "application/octet-stream", "report.pdf", "report.exe", text, sizeof(text) - 1);
}

static void m_double(struct mbuf *m)
{
    msg_one_file(m, "application/pdf", NULL, "invoice.pdf.exe", text, sizeof(text) - 1);
}

static void m_double_spaced(struct mbuf *m)
{
    msg_one_file(m, "application/pdf", NULL, "invoice.pdf      .exe.", text, sizeof(text) - 1);
}

static void m_renamed(struct mbuf *m)
{
    msg_one_file(m, "application/pdf", "invoice.pdf", "invoice.pdf", pe, sizeof(pe));
}

static void m_unnamed_pe(struct mbuf *m)
{
    msg_one_file(m, "application/octet-stream", NULL, NULL, pe, sizeof(pe));
}

static void m_declared(struct mbuf *m)
{
    msg_one_file(m, "application/x-msdownload", NULL, "data.bin", text, sizeof(text) - 1);
}

static void m_js(struct mbuf *m)
{
    msg_one_file(m, "text/javascript", NULL, "Payment.JS", text, sizeof(text) - 1);
}

static void m_bat(struct mbuf *m)
{
    msg_one_file(m, "application/x-bat", NULL, "run.bat", "@echo off\r\n", 11);
}

static void m_exe_and_bat(struct mbuf *m)
{
    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_file(m, ATT_TEST_BOUNDARY, "application/x-bat", NULL, "run.bat", "@echo off\r\n", 11);
    msg_file(m, ATT_TEST_BOUNDARY, "application/octet-stream", NULL, "setup.exe", pe, sizeof(pe));
    msg_end(m, ATT_TEST_BOUNDARY);
}

static void m_embedded(struct mbuf *m)
{
    struct mbuf inner = {.p = NULL};

    msg_one_file(&inner, "application/octet-stream", NULL, "setup.exe", pe, sizeof(pe));
    msg_begin(m, ATT_TEST_BOUNDARY);
    mbuf_printf(m, "--%s\r\nContent-Type: message/rfc822\r\n\r\n%s", ATT_TEST_BOUNDARY, inner.p);
    msg_end(m, ATT_TEST_BOUNDARY);
    mbuf_free(&inner);
}

static const struct test_entry exe_entry = {.name = "x.exe", .data = pe, .len = sizeof(pe)};
static const struct test_entry pdf_entry = {.name = "a.pdf", .data = pdf, .len = sizeof(pdf) - 1};

static void m_zip(struct mbuf *m)
{
    struct test_entry e[] = {pdf_entry, exe_entry};
    one_archive(m, "zip", "files.zip", e, 2);
}

static void m_zip_clean(struct mbuf *m)
{
    one_archive(m, "zip", "files.zip", &pdf_entry, 1);
}

static void m_7z(struct mbuf *m)
{
    struct test_entry e[] = {pdf_entry, {.name = "doc/x.exe", .data = pe, .len = sizeof(pe)}};
    one_archive(m, "7z", "files.7z", e, 2);
}

static void m_targz(struct mbuf *m)
{
    struct test_entry e[] = {pdf_entry, exe_entry};
    one_archive(m, "tar.gz", "files.tar.gz", e, 2);
}

static void m_gz(struct mbuf *m)
{
    one_archive(m, "gz", "x.exe.gz", &exe_entry, 1);
}

static void m_rar(struct mbuf *m)
{
    size_t len;
    void *a = rar4_build("x.exe", pe, sizeof(pe), false, &len);
    msg_one_file(m, "application/x-rar", NULL, "files.rar", a, len);
    free(a);
}

static void m_rar_encrypted(struct mbuf *m)
{
    size_t len;
    void *a = rar4_build("x.pdf", pdf, sizeof(pdf) - 1, true, &len);
    msg_one_file(m, "application/x-rar", NULL, "secret.rar", a, len);
    free(a);
}

static void m_zip_encrypted(struct mbuf *m)
{
    one_archive(m, "zip-encrypted", "secret.zip", &pdf_entry, 1);
}

/* level names l1.zip (the attachment) .. l<levels>.zip, x.exe in the last */
static void nested(struct mbuf *m, unsigned levels)
{
    char names[8][16];
    struct test_entry e = exe_entry;
    void *a = NULL;
    size_t len = 0;

    assert_true(levels < 8);
    for (unsigned i = levels; i > 0; i--) {
        void *next = archive_build("zip", &e, 1, &len);
        free(a);
        a = next;
        snprintf(names[i], sizeof(names[i]), "l%u.zip", i);
        e = (struct test_entry){.name = names[i], .data = a, .len = len};
    }
    msg_one_file(m, "application/zip", NULL, "l1.zip", a, len);
    free(a);
}

static void m_nested3(struct mbuf *m)
{
    nested(m, 3);
}

static void m_nested4(struct mbuf *m)
{
    nested(m, 4);
}

static void m_bomb_zip(struct mbuf *m)
{
    size_t n = 20u << 20;
    char *zeros = calloc(1, n);
    struct test_entry e = {.name = "zeros.txt", .data = zeros, .len = n};

    assert_non_null(zeros);
    one_archive(m, "zip", "bomb.zip", &e, 1);
    free(zeros);
}

static void m_two_mb(struct mbuf *m)
{
    size_t n = 2u << 20;
    char *zeros = calloc(1, n);
    struct test_entry e = {.name = "zeros.txt", .data = zeros, .len = n};

    assert_non_null(zeros);
    one_archive(m, "zip", "big.zip", &e, 1);
    free(zeros);
}

static void m_many(struct mbuf *m)
{
    struct test_entry e[10];
    char names[10][16];

    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof(names[i]), "f%d.txt", i);
        e[i] = (struct test_entry){.name = names[i], .data = text, .len = sizeof(text) - 1};
    }
    one_archive(m, "zip", "many.zip", e, 10);
}

/* two zips of 3 entries each: the message's archives count together */
static void m_two_zips(struct mbuf *m)
{
    struct test_entry e[] = {pdf_entry,
                             {.name = "b.txt", .data = text, .len = sizeof(text) - 1},
                             {.name = "c.txt", .data = text, .len = sizeof(text) - 1}};
    size_t len;
    void *a = archive_build("zip", e, 3, &len);

    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_file(m, ATT_TEST_BOUNDARY, "application/zip", NULL, "first.zip", a, len);
    msg_file(m, ATT_TEST_BOUNDARY, "application/zip", NULL, "second.zip", a, len);
    msg_end(m, ATT_TEST_BOUNDARY);
    free(a);
}

static void m_truncated_zip(struct mbuf *m)
{
    struct test_entry e[] = {pdf_entry, exe_entry};
    size_t len;
    unsigned char *a = archive_build("zip", e, 2, &len);

    /* the local header and part of the data: the central directory is gone */
    msg_one_file(m, "application/zip", NULL, "cut.zip", a, 60);
    free(a);
}

/* broken MIME: the file is still found */
static void m_unclosed(struct mbuf *m)
{
    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_file(m, ATT_TEST_BOUNDARY, "application/octet-stream", NULL, "setup.exe", pe, sizeof(pe));
}

static void m_two_encodings(struct mbuf *m)
{
    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_part(m, ATT_TEST_BOUNDARY,
             "Content-Type: text/plain; name=\"notes.txt\"\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n"
             "Content-Disposition: attachment; filename=\"notes.com\"\r\n",
             text, sizeof(text) - 1);
    msg_end(m, ATT_TEST_BOUNDARY);
}

static void m_docx_like(struct mbuf *m)
{
    struct test_entry e[] = {{.name = "[Content_Types].xml", .data = "<Types/>", .len = 8},
                             {.name = "word/document.xml", .data = "<w:document/>", .len = 13}};
    one_archive(m, "zip", "letter.docx", e, 2);
}

static const struct {
    const char *what;
    void (*build)(struct mbuf *m);
    const char *keys;   /* config beyond ATT_TEST_RULES */
    size_t count;       /* findings */
    enum att_kind kind; /* of the decisive one */
    enum att_action action;
    const char *name, *entry, *rule, *why;
} rows[] = {
    {.what = "a clean PDF", .build = m_clean_pdf, .count = 0},
    {.what = "an executable by its extension",
     .build = m_exe,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "setup.exe",
     .rule = "exe"},
    {.what = "RFC 2231 continuations in iso-8859-1",
     .build = m_rfc2231,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "\xc3\xa9t\xc3\xa9.pdf.exe",
     .rule = "exe"},
    {.what = "RFC 2231 continuations in UTF-8, the extension percent-encoded",
     .build = m_rfc2231_utf8,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "\xd1\x81\xd1\x87\xd1\x91\xd1\x82.exe",
     .rule = "exe"},
    {.what = "an RFC 2047 B-encoded filename",
     .build = m_rfc2047,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "rapport.exe",
     .rule = "exe"},
    {.what = "an RFC 2047 Q-encoded name, extension SCR in the rule",
     .build = m_rfc2047_q,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "r\xc3\xa9sum\xc3\xa9.scr",
     .rule = "exe"},
    {.what = "name says exe, filename says pdf: both are checked",
     .build = m_conflict_name,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "report.exe",
     .rule = "exe"},
    {.what = "filename says exe, name says pdf",
     .build = m_conflict_filename,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "report.exe",
     .rule = "exe"},
    {.what = "a double extension",
     .build = m_double,
     .keys = "rules = ( { id = \"double\"; double_extension = true; extensions = [\"exe\"]; } );",
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "invoice.pdf.exe",
     .rule = "double"},
    {.what = "a double extension padded with spaces and a trailing dot",
     .build = m_double_spaced,
     .keys = "rules = ( { id = \"double\"; double_extension = true; extensions = [\"exe\"]; } );",
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "invoice.pdf      .exe.",
     .rule = "double"},
    {.what = "a single extension is no double one",
     .build = m_exe,
     .keys = "rules = ( { id = \"double\"; double_extension = true; extensions = [\"exe\"]; } );",
     .count = 0},
    {.what = "an .exe renamed .pdf, caught by libmagic",
     .build = m_renamed,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "invoice.pdf",
     .rule = "pe"},
    {.what = "an executable without a name",
     .build = m_unnamed_pe,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "(unnamed application/octet-stream)",
     .rule = "pe"},
    {.what = "a declared type",
     .build = m_declared,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "data.bin",
     .rule = "msdownload"},
    {.what = "a quarantine rule, glob with case ignored",
     .build = m_js,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_QUARANTINE,
     .name = "Payment.JS",
     .rule = "js"},
    {.what = "a strip rule",
     .build = m_bat,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_STRIP,
     .name = "run.bat",
     .rule = "bat"},
    {.what = "reject and strip: reject wins",
     .build = m_exe_and_bat,
     .count = 2,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "setup.exe",
     .rule = "exe"},
    {.what = "an executable in an embedded message",
     .build = m_embedded,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "setup.exe",
     .rule = "exe"},
    {.what = "zip",
     .build = m_zip,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "files.zip",
     .entry = "x.exe",
     .rule = "exe"},
    {.what = "zip, the rules not in archives",
     .build = m_zip,
     .keys = "rules = ( { id = \"exe\"; extensions = [\"exe\"]; in_archives = false; } );",
     .count = 0},
    {.what = "a clean zip", .build = m_zip_clean, .count = 0},
    {.what = "archives not opened",
     .build = m_zip,
     .keys = "archive_max_depth = 0; " ATT_TEST_RULES,
     .count = 0},
    {.what = "a docx is a zip, and clean", .build = m_docx_like, .count = 0},
    {.what = "a multipart without its closing boundary",
     .build = m_unclosed,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "setup.exe",
     .rule = "exe"},
    {.what = "two Content-Transfer-Encodings, name txt, filename com",
     .build = m_two_encodings,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "notes.com",
     .rule = "exe"},
    {.what = "7z",
     .build = m_7z,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "files.7z",
     .entry = "doc/x.exe",
     .rule = "exe"},
    {.what = "tar.gz",
     .build = m_targz,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "files.tar.gz",
     .entry = "x.exe",
     .rule = "exe"},
    {.what = "a gzip'd executable, named after the .gz",
     .build = m_gz,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "x.exe.gz",
     .entry = "x.exe",
     .rule = "exe"},
    {.what = "rar",
     .build = m_rar,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "files.rar",
     .entry = "x.exe",
     .rule = "exe"},
    {.what = "an encrypted rar",
     .build = m_rar_encrypted,
     .count = 1,
     .kind = ATT_KIND_ENCRYPTED,
     .action = ATT_ACTION_REJECT,
     .name = "secret.rar",
     .entry = ""},
    {.what = "an encrypted zip",
     .build = m_zip_encrypted,
     .count = 1,
     .kind = ATT_KIND_ENCRYPTED,
     .action = ATT_ACTION_REJECT,
     .name = "secret.zip",
     .entry = ""},
    {.what = "an encrypted zip, encrypted_action quarantine",
     .build = m_zip_encrypted,
     .keys = "encrypted_action = \"quarantine\"; " ATT_TEST_RULES,
     .count = 1,
     .kind = ATT_KIND_ENCRYPTED,
     .action = ATT_ACTION_QUARANTINE,
     .name = "secret.zip"},
    {.what = "nested to the depth limit: looked into",
     .build = m_nested3,
     .count = 1,
     .kind = ATT_KIND_RULE,
     .action = ATT_ACTION_REJECT,
     .name = "l1.zip",
     .entry = "l2.zip/l3.zip/x.exe",
     .rule = "exe"},
    {.what = "nested past the depth limit",
     .build = m_nested4,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_REJECT,
     .name = "l1.zip",
     .entry = "l2.zip/l3.zip/l4.zip",
     .why = "archives nested deeper than 3"},
    {.what = "a zip bomb's ratio",
     .build = m_bomb_zip,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_REJECT,
     .name = "bomb.zip",
     .entry = "",
     .why = "compression ratio over 100"},
    {.what = "the unpacked size",
     .build = m_two_mb,
     .keys = "archive_max_size = \"1M\"; archive_max_ratio = 100000; " ATT_TEST_RULES,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_REJECT,
     .name = "big.zip",
     .why = "unpacked size over 1048576 octets"},
    {.what = "archive_limit_action strip",
     .build = m_bomb_zip,
     .keys = "archive_limit_action = \"strip\"; " ATT_TEST_RULES,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_STRIP,
     .name = "bomb.zip"},
    {.what = "the entries",
     .build = m_many,
     .keys = "archive_max_entries = 5; " ATT_TEST_RULES,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_REJECT,
     .name = "many.zip",
     .why = "more than 5 entries"},
    {.what = "the entries of all the message's archives count together",
     .build = m_two_zips,
     .keys = "archive_max_entries = 5; " ATT_TEST_RULES,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_REJECT,
     .name = "second.zip",
     .why = "more than 5 entries"},
    {.what = "an unreadable zip is never clean",
     .build = m_truncated_zip,
     .count = 1,
     .kind = ATT_KIND_ARCHIVE_LIMIT,
     .action = ATT_ACTION_REJECT,
     .name = "cut.zip",
     .why = "unreadable: "},
};

static void check_row(size_t i, const struct att_report *r)
{
    const struct att_finding *f = &r->decisive;

    if (r->count != rows[i].count)
        fail_msg("row %zu (%s): %zu findings (%s %s %s)", i, rows[i].what, r->count,
                 r->count ? r->findings[0].name : "", r->count ? r->findings[0].entry : "",
                 r->count ? r->findings[0].why : "");
    if (rows[i].count == 0)
        return;
    if (f->kind != rows[i].kind || r->action != rows[i].action || f->action != r->action)
        fail_msg("row %zu (%s): kind %d action %d", i, rows[i].what, f->kind, r->action);
    if (rows[i].name != NULL && strcmp(f->name, rows[i].name) != 0)
        fail_msg("row %zu (%s): name \"%s\"", i, rows[i].what, f->name);
    if (rows[i].entry != NULL && strcmp(f->entry, rows[i].entry) != 0)
        fail_msg("row %zu (%s): entry \"%s\"", i, rows[i].what, f->entry);
    if (rows[i].rule != NULL && strcmp(f->rule, rows[i].rule) != 0)
        fail_msg("row %zu (%s): rule \"%s\"", i, rows[i].what, f->rule);
    if (rows[i].why != NULL && strncmp(f->why, rows[i].why, strlen(rows[i].why)) != 0)
        fail_msg("row %zu (%s): why \"%s\"", i, rows[i].what, f->why);
}

static void test_inspect_rows(void **state)
{
    char error[160];

    (void)state;
    test_pe(pe, sizeof(pe));
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct att_report r = {.count = 0};
        struct mbuf m = {.p = NULL};
        struct att_pol x;
        att_pol_new(&x, ATT_TEST_HOST, rows[i].keys != NULL ? rows[i].keys : ATT_TEST_RULES);
        rows[i].build(&m);
        if (att_inspect(x.p, m.p, m.len, NULL, &r, error, sizeof(error)) < 0)
            fail_msg("row %zu (%s): %s", i, rows[i].what, error);
        check_row(i, &r);
        att_report_clear(&r);
        mbuf_free(&m);
        att_pol_free(&x);
    }
}

static void test_limits_and_stop(void **state)
{
    struct att_report r = {.count = 0};
    struct mbuf m = {.p = NULL};
    char error[160];
    atomic_bool stop;
    struct att_pol x;

    (void)state;
    test_pe(pe, sizeof(pe));
    /* over max_size: decided from the length, the message is not read */
    att_pol_new(&x, ATT_TEST_HOST, "max_size = \"2K\"; mime_limit_action = \"quarantine\"; " ATT_TEST_RULES);
    assert_int_equal(att_inspect(x.p, NULL, 4096, NULL, &r, error, sizeof(error)), 0);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.action, ATT_ACTION_QUARANTINE);
    assert_string_equal(r.decisive.why, "message over 2048 octets");
    att_report_clear(&r);
    att_pol_free(&x);
    /* a stop from another thread ends the inspection */
    att_pol_new(&x, ATT_TEST_HOST, ATT_TEST_RULES);
    m_zip(&m);
    atomic_init(&stop, true);
    assert_int_equal(att_inspect(x.p, m.p, m.len, &stop, &r, error, sizeof(error)), -1);
    assert_string_equal(error, "stopped");
    assert_int_equal(r.count, 0);
    assert_null(r.body);
    mbuf_free(&m);
    att_pol_free(&x);
}

/* ---- strip: the new body ---- */

static void assert_crlf(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) ||
            (p[i] == '\r' && (i + 1 == len || p[i + 1] != '\n')))
            fail_msg("bare line break at %zu of %zu", i, len);
    }
    assert_true(len >= 2 && p[len - 2] == '\r' && p[len - 1] == '\n');
}

/* The message with its body replaced. */
static char *rebuilt(const struct mbuf *m, const struct att_report *r, size_t *len)
{
    const char *end = strstr(m->p, "\r\n\r\n");
    struct mbuf out = {.p = NULL};

    assert_non_null(end);
    mbuf_add(&out, m->p, (size_t)(end - m->p) + 4);
    mbuf_add(&out, r->body, r->body_len);
    *len = out.len;
    return out.p;
}

static void test_strip_body(void **state)
{
    struct att_report r = {.count = 0}, again = {.count = 0};
    struct mbuf m = {.p = NULL}, pdf64 = {.p = NULL};
    char error[160];
    struct att_pol x;
    size_t len;

    (void)state;
    att_pol_new(&x, ATT_TEST_HOST, ATT_TEST_RULES);
    msg_begin(&m, ATT_TEST_BOUNDARY);
    msg_file(&m, ATT_TEST_BOUNDARY, "application/x-bat", NULL, "run.bat", "@echo off\r\ndel *\r\n", 18);
    msg_file(&m, ATT_TEST_BOUNDARY, "application/pdf", NULL, "invoice.pdf", pdf, sizeof(pdf) - 1);
    msg_end(&m, ATT_TEST_BOUNDARY);
    mbuf_str(&m, "epilogue\r\n");
    assert_int_equal(att_inspect(x.p, m.p, m.len, NULL, &r, error, sizeof(error)), 0);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.action, ATT_ACTION_STRIP);
    assert_non_null(r.body);
    assert_null(r.content_type);
    assert_crlf(r.body, r.body_len);
    assert_non_null(strstr(r.body, "The attachment \"run.bat\" was removed from this message by "
                                   "mx.postern.test.\r\nReason: it matched the attachment rule "
                                   "\"bat\".\r\n"));
    assert_null(strstr(r.body, "QGVjaG8gb2Zm"));  /* the base64 of "@echo off" */
    assert_null(strstr(r.body, "run.bat\"\r\n")); /* its Content-Disposition went with it */
    assert_non_null(strstr(r.body, "This is a multi-part message in MIME format.\r\n--b1\r\n"));
    assert_non_null(strstr(r.body, "Please find the file attached.\r\n"));
    msg_file(&pdf64, ATT_TEST_BOUNDARY, "application/pdf", NULL, "invoice.pdf", pdf, sizeof(pdf) - 1);
    assert_non_null(strstr(r.body, pdf64.p + pdf64.len - 40)); /* the pdf as it was */
    assert_non_null(strstr(r.body, "--b1--\r\nepilogue\r\n"));
    /* the message with the new body: the same structure, nothing left to strip */
    char *msg = rebuilt(&m, &r, &len);
    assert_int_equal(att_inspect(x.p, msg, len, NULL, &again, error, sizeof(error)), 0);
    assert_int_equal(again.count, 0);
    assert_int_equal(again.parts, 4);
    free(msg);
    att_report_clear(&again);
    att_report_clear(&r);
    mbuf_free(&pdf64);
    mbuf_free(&m);

    /* a file inside an archive: the archive goes */
    struct test_entry e[] = {pdf_entry, {.name = "tools/run.bat", .data = "x", .len = 1}};
    one_archive(&m, "zip", "tools.zip", e, 2);
    assert_int_equal(att_inspect(x.p, m.p, m.len, NULL, &r, error, sizeof(error)), 0);
    assert_int_equal(r.action, ATT_ACTION_STRIP);
    assert_non_null(strstr(r.body, "The attachment \"tools.zip\" was removed from this message "
                                   "by mx.postern.test.\r\nReason: the file \"tools/run.bat\" "
                                   "inside it matched the attachment rule \"bat\".\r\n"));
    att_report_clear(&r);
    mbuf_free(&m);

    /* the message itself is the attachment: new Content-Type and encoding */
    mbuf_printf(&m, "Received: from x\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: application/x-bat; name=\"run.bat\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\nQGVjaG8gb2Zm\r\n");
    assert_int_equal(att_inspect(x.p, m.p, m.len, NULL, &r, error, sizeof(error)), 0);
    assert_int_equal(r.action, ATT_ACTION_STRIP);
    assert_string_equal(r.content_type, "text/plain; charset=us-ascii");
    assert_string_equal(r.transfer_encoding, "7bit");
    assert_crlf(r.body, r.body_len);
    assert_string_equal(r.body, "The attachment \"run.bat\" was removed from this message by "
                                "mx.postern.test.\r\nReason: it matched the attachment rule "
                                "\"bat\".\r\n");
    att_report_clear(&r);
    mbuf_free(&m);

    /* a name outside ASCII: the text part says it in a charset that has it */
    msg_one_file(&m, "application/x-bat", NULL, "=?UTF-8?B?0YHRh9GR0YIuYmF0?=", "x", 1);
    assert_int_equal(att_inspect(x.p, m.p, m.len, NULL, &r, error, sizeof(error)), 0);
    assert_int_equal(r.action, ATT_ACTION_STRIP);
    assert_non_null(strstr(r.body, "charset=utf-8"));
    assert_crlf(r.body, r.body_len);
    att_report_clear(&r);
    mbuf_free(&m);
    att_pol_free(&x);
}

int main(void)
{
    /* the bombs first: their memory bound reads the process's peak */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prescan_rows),
        cmocka_unit_test(test_prescan_bounds), cmocka_unit_test(test_names),
        cmocka_unit_test(test_inspect_rows),   cmocka_unit_test(test_limits_and_stop),
        cmocka_unit_test(test_strip_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
