/*
 * attachments-test — see attachments-test.h.
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

#include <archive.h>
#include <archive_entry.h>

#include "tests/unit/attachments-test.h"

#include "filters/attachments.h"
#include "gateway/server-config.h"
#include "tests/unit/config-test.h"

void mbuf_add(struct mbuf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap;
        while (cap < b->len + len + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void mbuf_str(struct mbuf *b, const char *s)
{
    mbuf_add(b, s, strlen(s));
}

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    mbuf_add(b, s, (size_t)n);
    free(s);
}

void mbuf_free(struct mbuf *b)
{
    free(b->p);
    *b = (struct mbuf){.p = NULL};
}

static void base64(struct mbuf *b, const unsigned char *d, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char line[80];
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < len ? d[i + 2] : 0);
        line[o++] = tab[v >> 18];
        line[o++] = tab[(v >> 12) & 63];
        line[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        line[o++] = i + 2 < len ? tab[v & 63] : '=';
        if (o == 76) {
            mbuf_add(b, line, o);
            mbuf_add(b, "\r\n", 2);
            o = 0;
        }
    }
    if (o > 0) {
        mbuf_add(b, line, o);
        mbuf_add(b, "\r\n", 2);
    }
}

static void msg_header(struct mbuf *m)
{
    mbuf_printf(m, "Received: from client.test (client.test [192.0.2.1])\r\n"
                   "\tby mx.postern.test with ESMTP id 4AbCdEf; Fri, 1 Mar 2024 10:00:00 +0000\r\n"
                   "From: <a@example.test>\r\nTo: <b@example.test>\r\nSubject: test\r\n"
                   "MIME-Version: 1.0\r\n");
}

void msg_begin(struct mbuf *m, const char *boundary)
{
    msg_header(m);
    mbuf_printf(m,
                "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
                "This is a multi-part message in MIME format.\r\n"
                "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                "Please find the file attached.\r\n",
                boundary, boundary);
}

void msg_part(struct mbuf *m, const char *boundary, const char *headers, const void *data,
              size_t len)
{
    mbuf_printf(m, "--%s\r\n%sContent-Transfer-Encoding: base64\r\n\r\n", boundary, headers);
    base64(m, data, len);
}

void msg_file(struct mbuf *m, const char *boundary, const char *type, const char *name,
              const char *filename, const void *data, size_t len)
{
    struct mbuf h = {.p = NULL};

    mbuf_printf(&h, "Content-Type: %s%s%s%s\r\n", type, name != NULL ? "; name=\"" : "",
                name != NULL ? name : "", name != NULL ? "\"" : "");
    if (filename != NULL)
        mbuf_printf(&h, "Content-Disposition: attachment; filename=\"%s\"\r\n", filename);
    msg_part(m, boundary, h.p, data, len);
    mbuf_free(&h);
}

void msg_end(struct mbuf *m, const char *boundary)
{
    mbuf_printf(m, "--%s--\r\n", boundary);
}

/* ---- bombs ---- */

char *bomb_nested(unsigned depth, const char *param, size_t *len)
{
    struct mbuf m = {.p = NULL};

    msg_header(&m);
    mbuf_printf(&m, "Content-Type: multipart/mixed; %s=\"b0\"\r\n\r\n", param);
    for (unsigned i = 1; i <= depth; i++)
        mbuf_printf(&m, "--b%u\r\nContent-Type: multipart/mixed; %s=\"b%u\"\r\n\r\n", i - 1, param,
                    i);
    mbuf_printf(&m, "--b%u\r\nContent-Type: text/plain\r\n\r\ndeep\r\n", depth);
    for (unsigned i = depth + 1; i-- > 0;)
        mbuf_printf(&m, "--b%u--\r\n", i);
    *len = m.len;
    return m.p;
}

char *bomb_siblings(unsigned parts, const char *param, size_t *len)
{
    struct mbuf m = {.p = NULL};

    msg_header(&m);
    mbuf_printf(&m, "Content-Type: multipart/mixed; %s=\"s\"\r\n\r\n", param);
    for (unsigned i = 0; i < parts; i++)
        mbuf_str(&m, "--s\r\n\r\nx\r\n");
    mbuf_str(&m, "--s--\r\n");
    *len = m.len;
    return m.p;
}

char *bomb_header(size_t octets, size_t *len)
{
    struct mbuf m = {.p = NULL};

    msg_header(&m);
    mbuf_str(&m, "X-Big: ");
    for (size_t n = 0; n < octets; n += 72)
        mbuf_str(&m, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\t");
    mbuf_str(&m, "end\r\n\r\nbody\r\n");
    *len = m.len;
    return m.p;
}

char *bomb_fields(unsigned fields, size_t *len)
{
    struct mbuf m = {.p = NULL};

    msg_header(&m);
    for (unsigned i = 0; i < fields; i++)
        mbuf_printf(&m, "X-F%u: v\r\n", i);
    mbuf_str(&m, "\r\nbody\r\n");
    *len = m.len;
    return m.p;
}

char *bomb_rfc2231(unsigned params, const char *kind, size_t *len)
{
    struct mbuf m = {.p = NULL}, h = {.p = NULL};
    bool distinct = strcmp(kind, "distinct") == 0, reversed = strcmp(kind, "reversed") == 0;

    assert_true(params >= 2);
    mbuf_str(&h, "Content-Type: application/octet-stream\r\nContent-Disposition: attachment");
    for (unsigned i = 0; i < params; i++) {
        unsigned n = reversed ? params - 1 - i : i;
        if (distinct)
            mbuf_printf(&h, ";\r\n p%u=\"v\"", n);
        else
            mbuf_printf(&h, ";\r\n filename*%u=\"%s\"", n, n + 1 == params ? ".exe" : "a");
    }
    if (distinct)
        mbuf_str(&h, ";\r\n filename=\"evil.exe\"");
    mbuf_str(&h, "\r\n");
    msg_begin(&m, "r");
    msg_part(&m, "r", h.p, "MZ", 2);
    msg_end(&m, "r");
    mbuf_free(&h);
    *len = m.len;
    return m.p;
}

/* ---- a PE file ---- */

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

void test_pe(unsigned char *out, size_t size)
{
    assert_true(size >= 512);
    memset(out, 0, size);
    out[0] = 'M';
    out[1] = 'Z';
    put32(out + 0x3c, 0x40); /* e_lfanew */
    memcpy(out + 0x40, "PE\0\0", 4);
    put16(out + 0x44, 0x14c); /* i386 */
    put16(out + 0x46, 1);     /* sections */
    put16(out + 0x54, 0xe0);  /* optional header size */
    put16(out + 0x56, 0x102); /* executable, 32-bit */
    put16(out + 0x58, 0x10b); /* PE32 */
}

/* ---- archives ---- */

void *archive_build(const char *format, const struct test_entry *e, size_t n, size_t *len)
{
    struct archive *a = archive_write_new();
    size_t cap = 1 << 20, used = 0;
    char *buf;

    for (size_t i = 0; i < n; i++)
        cap += e[i].len + 1024;
    buf = malloc(cap);
    assert_non_null(a);
    assert_non_null(buf);
    if (strcmp(format, "zip") == 0 || strcmp(format, "zip-encrypted") == 0)
        assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    else if (strcmp(format, "7z") == 0)
        assert_int_equal(archive_write_set_format_7zip(a), ARCHIVE_OK);
    else if (strcmp(format, "tar.gz") == 0)
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    else
        assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
    if (strcmp(format, "tar.gz") == 0 || strcmp(format, "gz") == 0)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    if (strcmp(format, "zip-encrypted") == 0) {
        assert_int_equal(archive_write_set_options(a, "zip:encryption=zipcrypt"), ARCHIVE_OK);
        assert_int_equal(archive_write_set_passphrase(a, "secret"), ARCHIVE_OK);
    }
    archive_write_set_bytes_in_last_block(a, 1);
    assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *en = archive_entry_new();
        archive_entry_set_pathname(en, e[i].name);
        archive_entry_set_size(en, (la_int64_t)e[i].len);
        archive_entry_set_filetype(en, AE_IFREG);
        archive_entry_set_perm(en, 0644);
        if (archive_write_header(a, en) != ARCHIVE_OK)
            fail_msg("%s: %s", format, archive_error_string(a));
        assert_int_equal(archive_write_data(a, e[i].data, e[i].len), (la_ssize_t)e[i].len);
        archive_entry_free(en);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    *len = used;
    return buf;
}

static la_ssize_t to_mbuf(struct archive *a, void *data, const void *buf, size_t n)
{
    (void)a;
    mbuf_add(data, buf, n);
    return (la_ssize_t)n;
}

/* A zip writer into b. */
static struct archive *zip_open(struct mbuf *b)
{
    struct archive *a = archive_write_new();

    assert_non_null(a);
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    archive_write_set_bytes_in_last_block(a, 1);
    assert_int_equal(archive_write_open(a, b, NULL, to_mbuf, NULL), ARCHIVE_OK);
    return a;
}

static void zip_add(struct archive *a, const char *name, size_t size, const void *data,
                    size_t chunk)
{
    struct archive_entry *en = archive_entry_new();

    archive_entry_set_pathname(en, name);
    archive_entry_set_size(en, (la_int64_t)size);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, 0644);
    if (archive_write_header(a, en) != ARCHIVE_OK)
        fail_msg("%s: %s", name, archive_error_string(a));
    for (size_t done = 0; done < size; done += chunk) {
        size_t n = size - done < chunk ? size - done : chunk;
        assert_int_equal(archive_write_data(a, data, n), (la_ssize_t)n);
    }
    archive_entry_free(en);
}

static void *zip_close(struct archive *a, struct mbuf *b, size_t *len)
{
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    *len = b->len;
    return b->p;
}

void *zip_zeros(const char *name, size_t size, size_t *len)
{
    static const char zeros[1 << 20];
    struct mbuf b = {.p = NULL};
    struct archive *a = zip_open(&b);

    zip_add(a, name, size, zeros, sizeof(zeros));
    return zip_close(a, &b, len);
}

void *zip_nested_bomb(unsigned levels, unsigned copies, size_t *len)
{
    void *inner = zip_zeros("zeros.bin", 1u << 20, len);

    for (unsigned lv = levels; lv > 1; lv--) {
        struct mbuf b = {.p = NULL};
        struct archive *a = zip_open(&b);
        for (unsigned c = 0; c < copies; c++) {
            char name[32];
            snprintf(name, sizeof(name), "%u-l%u.zip", c, lv);
            zip_add(a, name, *len, inner, *len);
        }
        free(inner);
        inner = zip_close(a, &b, len);
    }
    return inner;
}

void *zip_many(unsigned entries, const char *last, size_t *len)
{
    struct mbuf b = {.p = NULL};
    struct archive *a = zip_open(&b);

    for (unsigned i = 0; i < entries; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%u.txt", i);
        zip_add(a, i + 1 == entries && last != NULL ? last : name, 1, "x", 1);
    }
    return zip_close(a, &b, len);
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

/* A RAR 4 block: its CRC16 (the low half of the CRC32 of the rest) first. */
static void rar_block(struct mbuf *b, const unsigned char *rest, size_t n)
{
    unsigned char crc[2];

    put16(crc, crc32_of(rest, n) & 0xffff);
    mbuf_add(b, crc, 2);
    mbuf_add(b, rest, n);
}

void *rar4_build(const char *name, const void *data, size_t len, bool encrypted, size_t *out_len)
{
    static const unsigned char marker[] = {0x52, 0x61, 0x72, 0x21, 0x1a, 0x07, 0x00};
    static const unsigned char main_head[] = {0x73, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char end_head[] = {0x7b, 0x00, 0x40, 7, 0};
    size_t nlen = strlen(name);
    unsigned char fh[32 + 256];
    struct mbuf b = {.p = NULL};

    assert_true(nlen < 256);
    memset(fh, 0, sizeof(fh));
    fh[0] = 0x74;                                   /* file header */
    put16(fh + 1, 0x8000 | (encrypted ? 0x04 : 0)); /* long block, password */
    put16(fh + 3, (unsigned)(32 + nlen));
    put32(fh + 5, (uint32_t)len); /* packed */
    put32(fh + 9, (uint32_t)len); /* unpacked */
    fh[13] = 0;                   /* MS-DOS */
    put32(fh + 14, crc32_of(data, len));
    put32(fh + 18, 0x58210000); /* a DOS time */
    fh[22] = 20;                /* version to unpack */
    fh[23] = 0x30;              /* stored */
    put16(fh + 24, (unsigned)nlen);
    put32(fh + 26, 0x20); /* archive attribute */
    memcpy(fh + 30, name, nlen);
    mbuf_add(&b, marker, sizeof(marker));
    rar_block(&b, main_head, sizeof(main_head));
    rar_block(&b, fh, 30 + nlen);
    mbuf_add(&b, data, len);
    rar_block(&b, end_head, sizeof(end_head));
    *out_len = b.len;
    return b.p;
}

void msg_one_file(struct mbuf *m, const char *type, const char *name, const char *filename,
                  const void *data, size_t len)
{
    msg_begin(m, ATT_TEST_BOUNDARY);
    msg_file(m, ATT_TEST_BOUNDARY, type, name, filename, data, len);
    msg_end(m, ATT_TEST_BOUNDARY);
}

void att_pol_new(struct att_pol *x, const char *hostname, const char *keys)
{
    struct mbuf text = {.p = NULL};
    struct cfg_errors errs = {0};
    char error[256];

    mbuf_printf(&text, "filters = ( { name = \"attachments\"; %s } );", keys);
    x->cfg = config_test_load(text.p, &errs);
    if (x->cfg == NULL)
        fail_msg("%s: %s", text.p, errs.count > 0 ? errs.msgs[0] : "?");
    mbuf_free(&text);
    if (att_policy_new(x->cfg->filtering.filters[0].settings, hostname, &x->p, error,
                       sizeof(error)) < 0)
        fail_msg("policy: %s", error);
}

void att_pol_free(struct att_pol *x)
{
    att_policy_free(&x->p);
    assert_null(x->p);
    postern_config_free(&x->cfg);
}
