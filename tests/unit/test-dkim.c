/*
 * test-dkim — the dkim filter and what it is made of: the header section
 * split into fields (from memory and from a file, past the read chunk and
 * over the bound), field values, host names, the one From: mailbox, the
 * signing key a message gets, the filters.dkim config (a row per key and
 * per error); and against a real nsd serving a key made by OpenDKIM's
 * opendkim-genkey: our signature verifies (round trip), a signature made by
 * another implementation (dkimpy's dkimsign, when installed) verifies, a
 * changed body or signed field does not, a missing or revoked key is
 * invalid, a silent DNS server is a temporary error, several signatures
 * each get a symbol with the score counted once, Authentication-Results
 * with authres = yes, outbound mail is signed in the late step (not at
 * the end of message) and without a key stays unsigned, the fields added
 * above the content are signed when named (and an oversigned one cannot
 * be added after), a too-long header is the filter's error, and a check
 * cancelled by the chain's timeout leaves nothing behind.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "filters/dkim-message.h"
#include "filters/dkim-sign.h"
#include "filters/dkim.h"
#include "tests/unit/config-test.h"
#include "tests/unit/dkim-test.h"
#include "tests/unit/loop-test.h"

#define DKIMSIGN "/usr/bin/dkimsign"

/* ---- the header section ---- */

static const struct {
    const char *in;
    size_t max;
    const char *why;         /* error substring; NULL = parses */
    size_t count;            /* fields */
    const char *names[4];    /* "" = no valid name */
    const char *first;       /* the first field's text, NULL = not checked */
    long body;               /* body_off, -1 = the input's length */
} splits[] = {
    {.in = "A: 1\r\nB: 2\r\n\r\nbody\r\n", .max = 1000, .count = 2, .names = {"A", "B"},
     .first = "A: 1", .body = 14},
    {.in = "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n", .max = 1000, .count = 2,
     .names = {"Subject", "To"}, .first = "Subject: a\r\n b\r\n\tc", .body = 29},
    {.in = "\r\nbody only\r\n", .max = 1000, .count = 0, .body = 2},
    {.in = "A: 1\r\nB: 2", .max = 1000, .count = 2, .names = {"A", "B"}, .body = -1},
    {.in = "A: 1\r\nB: 2\r\n", .max = 1000, .count = 2, .names = {"A", "B"}, .body = -1},
    {.in = "no colon\r\nX: y\r\n\r\n", .max = 1000, .count = 2, .names = {"", "X"}, .body = 18},
    {.in = " cont\r\nA: b\r\n\r\n", .max = 1000, .count = 2, .names = {"", "A"},
     .first = " cont", .body = 15},
    {.in = "Sub ject: x\r\nSubject : y\r\n\r\n", .max = 1000, .count = 2,
     .names = {"", "Subject"}, .body = 28},
    {.in = "\x01: x\r\n:empty\r\n\r\n", .max = 1000, .count = 2, .names = {"", ""}, .body = 16},
    {.in = "A: bare\nlf\r\n\r\n", .max = 1000, .count = 1, .names = {"A"},
     .first = "A: bare\nlf", .body = 14},
    {.in = "", .max = 1000, .count = 0, .body = 0},
    {.in = "A: 0123456789\r\n\r\n", .max = 15, .count = 1, .names = {"A"}, .body = 17},
    {.in = "A: 0123456789\r\n\r\n", .max = 14, .why = "over max_header_size"},
    {.in = "A: 0123456789", .max = 12, .why = "over max_header_size"},
};

static void check_split(size_t row, const struct dkim_message *m)
{
    long body = splits[row].body < 0 ? (long)strlen(splits[row].in) : splits[row].body;

    if (m->count != splits[row].count)
        fail_msg("row %zu: %zu fields", row, m->count);
    for (size_t i = 0; i < m->count && i < 4; i++) {
        size_t n = strlen(splits[row].names[i]);
        if (m->fields[i].name_len != n || strncmp(m->fields[i].text, splits[row].names[i], n))
            fail_msg("row %zu: field %zu name length %zu", row, i, m->fields[i].name_len);
    }
    if (splits[row].first != NULL &&
        (m->fields[0].len != strlen(splits[row].first) ||
         memcmp(m->fields[0].text, splits[row].first, m->fields[0].len) != 0))
        fail_msg("row %zu: first field %.*s", row, (int)m->fields[0].len, m->fields[0].text);
    if ((long)m->body_off != body)
        fail_msg("row %zu: body at %llu", row, (unsigned long long)m->body_off);
}

/* The content in a file behind a prefix, as the spool has it. */
static int content_file(const char *content, size_t len, const char *prefix)
{
    char path[] = "/tmp/test-dkim-msg.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, prefix, strlen(prefix)), (ssize_t)strlen(prefix));
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    return fd;
}

static void test_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        struct dkim_message m;
        const char *why = NULL;
        int fd = content_file(splits[i].in, strlen(splits[i].in), "prefix");

        for (int from_file = 0; from_file < 2; from_file++) {
            int rc = from_file ? dkim_message_read(fd, 6, strlen(splits[i].in), splits[i].max,
                                                   &m, &why)
                               : dkim_message_parse(splits[i].in, strlen(splits[i].in),
                                                    splits[i].max, &m, &why);
            if (splits[i].why != NULL) {
                if (rc != -1 || strstr(why, splits[i].why) == NULL)
                    fail_msg("row %zu (%s): rc %d", i, from_file ? "file" : "memory", rc);
                continue;
            }
            if (rc != 0)
                fail_msg("row %zu (%s): %s", i, from_file ? "file" : "memory", why);
            check_split(i, &m);
            dkim_message_free(&m);
        }
        close(fd);
    }
}

/* A header section past the read chunk (64 KiB), its empty line across the
 * chunk's end; the content shorter than it says is a read error. */
static void test_split_large(void **state)
{
    size_t size = 200 * 1024, o = 0;
    char *big = malloc(size);
    struct dkim_message m;
    const char *why;
    int fd, n = 0;

    (void)state;
    assert_non_null(big);
    while (o < 65536 - 40)
        o += (size_t)snprintf(big + o, size - o, "X-Field-%05d: some value\r\n", n++);
    while (o < 65536 - 2)
        big[o++] = 'a';
    memcpy(big + o, "\r\n\r\nbody\r\n", 11);
    o += 10;
    fd = content_file(big, o, "");
    assert_int_equal(dkim_message_read(fd, 0, o, 256 * 1024, &m, &why), 0);
    assert_int_equal(m.count, (size_t)n + 1); /* the filler line is a field of its own */
    assert_int_equal(m.body_off, 65536 + 2);
    dkim_message_free(&m);
    assert_int_equal(dkim_message_read(fd, 0, o, 32 * 1024, &m, &why), -1);
    assert_non_null(strstr(why, "max_header_size"));
    assert_int_equal(dkim_message_read(fd, 0, o + 100, 256 * 1024, &m, &why), 0);
    dkim_message_free(&m);
    /* no empty line and the file ends early: a read error */
    close(fd);
    fd = content_file(big, 65000, "");
    assert_int_equal(dkim_message_read(fd, 0, 70000, 256 * 1024, &m, &why), -1);
    assert_non_null(strstr(why, "cannot read"));
    close(fd);
    free(big);
}

static void test_values_and_names(void **state)
{
    static const struct {
        const char *field, *value;
    } values[] = {
        {"Subject:  hello\r\n world  ", "hello world"},
        {"X:", ""},
        {"X: \t a \t", "a"},
        {"From: A\r\n\t<a@b.example>", "A\t<a@b.example>"},
        {"no colon", ""},
    };
    static const struct {
        const char *name;
        bool ok;
    } names[] = {
        {"example.com", true},   {"a", true},         {"xn--bcher-kva.example", true},
        {"_dmarc.ex-ample.org", true}, {"", false},   {".example.com", false},
        {"example.com.", false}, {"ex..ample", false}, {"ex ample.com", false},
        {"[192.0.2.1]", false},  {"a\xc3\xa4.example", false},
        {"a1234567890123456789012345678901234567890123456789012345678901234.example", false},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct dkim_field f = {.text = values[i].field, .len = strlen(values[i].field)};
        dkim_field_value(&f, out, sizeof(out));
        if (strcmp(out, values[i].value) != 0)
            fail_msg("value %zu: \"%s\"", i, out);
    }
    struct dkim_field f = {.text = values[0].field, .len = strlen(values[0].field)};
    assert_int_equal(dkim_field_value(&f, out, 4), 3);
    assert_string_equal(out, "hel");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (dkim_domain_ok(names[i].name) != names[i].ok)
            fail_msg("name %zu: %s", i, names[i].name);
    }
    char longname[300];
    memset(longname, 0, sizeof(longname));
    for (size_t i = 0; i < 254; i++)
        longname[i] = i % 2 == 0 ? 'a' : '.';
    longname[253] = 'a';
    assert_false(dkim_domain_ok(longname)); /* 254 octets */
    longname[252] = '\0';
    longname[251] = 'a';
    assert_true(dkim_domain_ok(longname));
}

static const struct {
    const char *header;
    const char *domain; /* NULL: refused */
    const char *why;
} froms[] = {
    {.header = "From: Alice <Alice@Example.COM>\r\n", .domain = "example.com"},
    {.header = "FROM: x@example.org\r\n", .domain = "example.org"},
    {.header = "From: Alice\r\n <a@example.org>\r\n", .domain = "example.org"},
    {.header = "From: =?utf-8?q?J=C3=B6rg?= <j@example.net>\r\n", .domain = "example.net"},
    {.header = "From: \"Doe, John\" <j@example.net> (comment)\r\n", .domain = "example.net"},
    {.header = "To: x@example.org\r\n", .domain = NULL, .why = "no From: field"},
    {.header = "From: a@example.com\r\nFrom: b@example.com\r\n", .domain = NULL, .why = "more than one From: field"},
    {.header = "From: a@example.com, b@example.org\r\n", .domain = NULL, .why = "more than one From: address"},
    {.header = "From: Alice <a@example.com> Bob <b@example.com>\r\n", .domain = NULL, .why = "more than one From: address"},
    {.header = "From: undisclosed:;\r\n", .domain = NULL, .why = "From: address group"},
    {.header = "From: list: a@example.com;\r\n", .domain = NULL, .why = "From: address group"},
    {.header = "From: garbage\r\n", .domain = NULL, .why = "without a usable domain"},
    {.header = "From: a@[192.0.2.1]\r\n", .domain = NULL, .why = "without a usable domain"},
    {.header = "From: a@exa mple.com\r\n", .domain = NULL, .why = NULL},
    {.header = "From: \r\n", .domain = NULL, .why = "no From: address"},
};

static void test_from_domain(void **state)
{
    (void)state;
    dkim_message_gmime_init();
    for (size_t i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
        char text[256], domain[DKIM_DOMAIN_MAX + 1];
        struct dkim_message m;
        const char *why = NULL;
        int rc;

        snprintf(text, sizeof(text), "%sSubject: x\r\n\r\nbody\r\n", froms[i].header);
        assert_int_equal(dkim_message_parse(text, strlen(text), 10000, &m, &why), 0);
        rc = dkim_message_from_domain(&m, domain, &why);
        if (froms[i].domain != NULL && (rc != 0 || strcmp(domain, froms[i].domain) != 0))
            fail_msg("row %zu: %d %s", i, rc, rc == 0 ? domain : why);
        if (froms[i].domain == NULL &&
            (rc != -1 || (froms[i].why != NULL && strstr(why, froms[i].why) == NULL)))
            fail_msg("row %zu: %d %s", i, rc, rc == 0 ? domain : why);
        dkim_message_free(&m);
    }
}

/* ---- the signing key ---- */

static void test_pick(void **state)
{
    struct dfx *fx = *state;
    static const struct {
        enum dkim_sign_by by;
        const char *from, *sender, *key; /* key NULL: none */
    } rows[] = {
        {DKIM_SIGN_BY_FROM_OR_SENDER, "example.com", "example.org", "example.com"},
        {DKIM_SIGN_BY_FROM_OR_SENDER, "EXAMPLE.com", NULL, "example.com"},
        {DKIM_SIGN_BY_FROM_OR_SENDER, "a.mail.example.com", NULL, "mail.example.com"},
        {DKIM_SIGN_BY_FROM_OR_SENDER, "other.example.com", NULL, "example.com"},
        {DKIM_SIGN_BY_FROM_OR_SENDER, "notexample.com", NULL, NULL},
        {DKIM_SIGN_BY_FROM_OR_SENDER, "example.test", "x.example.org", "example.org"},
        {DKIM_SIGN_BY_FROM_OR_SENDER, NULL, "example.org", "example.org"},
        {DKIM_SIGN_BY_FROM_OR_SENDER, "", "", NULL},
        {DKIM_SIGN_BY_FROM, "example.test", "example.org", NULL},
        {DKIM_SIGN_BY_FROM, "example.org", "example.com", "example.org"},
        {DKIM_SIGN_BY_SENDER, "example.com", "example.org", "example.org"},
        {DKIM_SIGN_BY_SENDER, "example.com", NULL, NULL},
    };
    struct dkim_sign_key keys[] = {
        {.domain = "example.com", .selector = "sel", .key_file = fx->key, .pem = "x"},
        {.domain = "mail.example.com", .selector = "sel", .key_file = fx->key, .pem = "x"},
        {.domain = "example.org", .selector = "sel", .key_file = fx->key, .pem = "x"},
    };
    const char *const headers[] = {"from"};

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct dkim_sign_config sc = {.keys = keys, .key_count = 3, .sign_headers = headers,
                                      .sign_count = 1, .by = rows[i].by, .max_header = 1000};
        struct dkim_signer *s;
        char error[256];
        const struct dkim_sign_key *k;

        assert_int_equal(dkim_signer_new(NULL, &sc, &s, error, sizeof(error)), 0);
        k = dkim_signer_pick(s, rows[i].from, rows[i].sender);
        if ((rows[i].key == NULL) != (k == NULL) ||
            (k != NULL && strcmp(k->domain, rows[i].key) != 0))
            fail_msg("row %zu: %s", i, k != NULL ? k->domain : "none");
        dkim_signer_free(&s);
        assert_null(s);
    }
}

/* ---- config ---- */

/* text = fmt with every "%s" replaced by key. */
static void subst(char *text, size_t size, const char *fmt, const char *key)
{
    size_t o = 0;

    for (const char *p = fmt; *p != '\0' && o + 1 < size; p++) {
        if (p[0] == '%' && p[1] == 's') {
            o += (size_t)snprintf(text + o, size - o, "%s", key);
            p++;
        } else {
            text[o++] = *p;
        }
    }
    text[o < size ? o : size - 1] = '\0';
}

static void test_config(void **state)
{
    struct dfx *fx = *state;
    char not_pem[128], text[1024];
    const struct {
        const char *filters; /* %s: the key file */
        const char *error;
    } rows[] = {
        {.filters = "filters = ( { name = \"dkim\"; } );"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( { domain = \"Example.COM\"; selector = \"sel\";"
         " key_file = \"%s\"; }, { domain = \"example.org\"; selector = \"s2\"; key_file ="
         " \"%s\"; } ); sign_by = \"sender\"; sign_headers = [\"From\", \"To\"];"
         " oversign_headers = []; verify = false; max_signatures = 3; min_key_bits = 2048;"
         " max_header_size = \"64K\"; threads = 1; score_valid = -1.5; score_invalid = 2;"
         " score_temperror = 0.5; score_none = 0.25; authres = true; } );"},
        {.filters = "filters = ( { name = \"dkim\";\n keys = ( { domain = \"example.com\";"
         " selector = \"sel\"; } ); } );",
         .error = ":3: dkim: key without a key_file"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( {\n key_file = \"/nonexistent/key\";"
         " domain = \"example.com\"; selector = \"sel\"; } ); } );",
         .error = ":3: dkim: key_file \"/nonexistent/key\": No such file"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( { key_file = \"%s\";"
         " domain = \"example.com\"; selector = \"sel\"; } ); } );",
         .error = "not a PEM private key"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( {\n domain = \"exa mple.com\";"
         " selector = \"sel\"; key_file = \"%s\"; } ); } );",
         .error = ":3: dkim: key without a valid domain"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( { domain = \"example.com\";\n"
         " selector = \"a/b\"; key_file = \"%s\"; } ); } );",
         .error = ":3: dkim: key without a valid selector"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( { domain = \"example.com\"; selector = \"a\";"
         " key_file = \"%s\"; },\n { domain = \"EXAMPLE.com\"; selector = \"b\"; key_file ="
         " \"%s\"; } ); } );",
         .error = ":3: dkim: two keys for domain example.com"},
        {.filters = "filters = ( { name = \"dkim\"; keys = { domain = \"example.com\"; }; } );",
         .error = "dkim: keys must be a list"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( \"example.com\" ); } );",
         .error = "each dkim key must be a group"},
        {.filters = "filters = ( { name = \"dkim\"; keys = ( { domain = \"example.com\"; bogus = 1; } ); "
         "} );",
         .error = "unknown key \"bogus\""},
        {.filters = "filters = ( { name = \"dkim\";\n sign_headers = [\"to\", \"subject\"]; } );",
         .error = ":3: dkim: sign_headers must include \"from\""},
        {.filters = "filters = ( { name = \"dkim\";\n sign_headers = [\"from\", \"DKIM-Signature\"]; } );",
         .error = ":3: dkim: sign_headers: DKIM-Signature is never signed"},
        {.filters = "filters = ( { name = \"dkim\"; oversign_headers = [\"bad:name\"]; } );",
         .error = "oversign_headers: \"bad:name\" is not a field name"},
        {.filters = "filters = ( { name = \"dkim\"; sign_by = \"to\"; } );", .error = "sign_by: unknown value"},
        {.filters = "filters = ( { name = \"dkim\"; max_signatures = 0; } );", .error = "max_signatures"},
        {.filters = "filters = ( { name = \"dkim\"; min_key_bits = 100; } );", .error = "min_key_bits"},
        {.filters = "filters = ( { name = \"dkim\"; threads = 65; } );", .error = "threads"},
        {.filters = "filters = ( { name = \"dkim\"; score_valid = \"high\"; } );", .error = "score_valid"},
        {.filters = "filters = ( { name = \"dkim\"; frobnicate = 1; } );", .error = "unknown key \"frobnicate\""},
    };

    snprintf(not_pem, sizeof(not_pem), "%s/not.pem", fx->nsd.dir);
    FILE *f = fopen(not_pem, "w");
    assert_non_null(f);
    fputs("hello\n", f);
    fclose(f);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg;
        const char *key = i == 4 ? not_pem : fx->key;

        subst(text, sizeof(text), rows[i].filters, key);
        cfg = config_test_load(text, &errs);
        config_test_expect(i, cfg, &errs, rows[i].error);
        if (i == 0) {
            const struct dkim_settings *d = cfg->filtering.filters[0].settings;
            assert_int_equal(d->common.on_error, FILTER_ON_ERROR_SKIP);
            assert_int_equal(d->common.timeout, 10000);
            assert_true(d->verify);
            assert_int_equal(d->max_signatures, 8);
            assert_int_equal(d->min_key_bits, 1024);
            assert_int_equal(d->max_header_size, 256 * 1024);
            assert_int_equal(d->threads, 2);
            assert_true(d->score_valid == -0.2 && d->score_invalid == 1);
            assert_true(d->score_temperror == 0 && d->score_none == 0);
            assert_false(d->authres);
            assert_int_equal(d->sign_by, DKIM_SIGN_BY_FROM_OR_SENDER);
            assert_int_equal(d->sign_headers.count, 14);
            assert_string_equal(d->sign_headers.items[0], "from");
            assert_int_equal(d->oversign_headers.count, 1);
            assert_int_equal(d->key_count, 0);
        }
        if (i == 1) {
            const struct dkim_settings *d = cfg->filtering.filters[0].settings;
            assert_int_equal(d->key_count, 2);
            assert_string_equal(d->keys[0].domain, "example.com");
            assert_string_equal(d->keys[1].selector, "s2");
            assert_non_null(strstr(d->keys[0].pem, "PRIVATE KEY"));
            assert_string_equal(d->sign_headers.items[1], "to");
            assert_int_equal(d->oversign_headers.count, 0);
            assert_int_equal(d->sign_by, DKIM_SIGN_BY_SENDER);
            assert_false(d->verify);
            assert_true(d->authres);
            assert_int_equal(d->max_header_size, 64 * 1024);
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

/* ---- the filter against nsd ---- */

#define KEYS_FMT "keys = ( { domain = \"%s\"; selector = \"%s\"; key_file = \"%s\"; } );"

static char *sign_with(struct dfx *fx, const char *domain, const char *selector,
                       const char *content)
{
    char keys[512], sender[300];

    snprintf(keys, sizeof(keys), "sign_by = \"sender\"; " KEYS_FMT, domain, selector, fx->key);
    snprintf(sender, sizeof(sender), "bounce@%s", domain);
    return dfx_sign(fx, keys, content, sender);
}

static void expect_symbol(const struct dfx_run *run, const char *name, size_t nth,
                          const char *text, double score)
{
    const struct filter_symbol *s = dfx_symbol(&run->r.res, name, nth);

    if (s == NULL || strstr(s->text, text) == NULL || s->score != score)
        fail_msg("want %s \"%s\" (%g); got %s", name, text, score,
                 dfx_symbols_text(&run->r.res));
}

static void verify(struct dfx *fx, struct dfx_run *run, const char *filters, const char *content,
                   bool silent)
{
    struct dfx_txn t = {.direction = FILTER_INBOUND};

    dfx_open(fx, run, filters, silent);
    dfx_eom(fx, run, content, &t);
}

#define DKIM "filters = ( { name = \"dkim\"; } );"

static void test_round_trip(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("Alice <alice@example.com>", "", "Hello\r\n\r\nWorld\r\n\r\n\r\n");
    char *signed_msg = sign_with(fx, "example.com", "sel", msg);
    struct dfx_run run;

    assert_non_null(strstr(signed_msg, "d=example.com; s=sel;"));
    assert_non_null(strstr(signed_msg, "c=relaxed/relaxed"));
    assert_non_null(strstr(signed_msg, "a=rsa-sha256"));
    assert_non_null(strstr(signed_msg, "h=From:"));
    verify(fx, &run, DKIM, signed_msg, false);
    expect_symbol(&run, "DKIM_VALID", 0, "d=example.com s=sel", -0.2);
    assert_int_equal(run.r.res.symbol_count, 1);
    assert_int_equal(run.r.res.action, FILTER_ACTION_NONE);
    assert_int_equal(run.r.res.header_count, 0); /* authres = no */
    dfx_close(&run);
    free(signed_msg);
    free(msg);
}

/* Outbound mail gets the field (for the top of the message) and
 * DKIM_SIGNED in the late step, folded as filter.h wants; not at the end
 * of message, where the message is not final yet; no key for the domain:
 * unsigned, nothing added. */
static void test_sign_outbound(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("Alice <alice@sub.example.com>", "", "Hello\r\n");
    char filters[1024];
    struct dfx_run run;
    struct dfx_txn t = {.direction = FILTER_OUTBOUND, .sender = "bounce@example.org"};
    const char *sig;

    snprintf(filters, sizeof(filters), "filters = ( { name = \"dkim\"; " KEYS_FMT " } );",
             "example.com", "sel", fx->key);
    dfx_open(fx, &run, filters, false);
    dfx_eom(fx, &run, msg, &t);
    assert_int_equal(run.r.res.symbol_count, 0);
    assert_int_equal(run.r.res.header_count + run.r.res.late_header_count, 0);
    dfx_late(fx, &run, msg, NULL, &t);
    expect_symbol(&run, "DKIM_SIGNED", 0, "d=example.com s=sel", 0);
    assert_int_equal(run.r.res.header_count, 0);
    assert_int_equal(run.r.res.late_header_count, 1);
    sig = dfx_late_header(&run.r.res, "DKIM-Signature");
    assert_non_null(sig);
    assert_non_null(strstr(sig, "\r\n\t"));
    assert_null(strstr(sig, "\n\n"));
    assert_int_equal(run.r.res.action, FILTER_ACTION_NONE);
    /* the From: domain has no key, nor has the sender's: unsigned */
    free(msg);
    msg = dfx_message("bob@example.test", "", "Hello\r\n");
    dfx_late(fx, &run, msg, NULL, &t);
    assert_int_equal(run.r.res.symbol_count, 0);
    assert_int_equal(run.r.res.late_header_count, 0);
    /* ... but the sender's domain may pick it (sign_by from_or_sender) */
    t.sender = "bounce@example.com";
    dfx_late(fx, &run, msg, NULL, &t);
    expect_symbol(&run, "DKIM_SIGNED", 0, "d=example.com s=sel", 0);
    /* inbound mail is not signed, and a signing-only filter does verify it */
    t.direction = FILTER_INBOUND;
    dfx_late(fx, &run, msg, NULL, &t);
    assert_int_equal(run.r.res.symbol_count, 0);
    assert_int_equal(run.r.res.late_header_count, 0);
    dfx_eom(fx, &run, msg, &t);
    assert_null(dfx_symbol(&run.r.res, "DKIM_SIGNED", 0));
    expect_symbol(&run, "DKIM_NONE", 0, "", 0);
    dfx_close(&run);
    free(msg);
}

/* The late step signs the header section as relayed: the fields other
 * filters and the policy add (above the content) are covered when the
 * sign list names them, and an oversigned one cannot be added after. */
static void test_sign_added_fields(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Hello\r\n");
    const char *added = "X-Spam-Status: No, score=-0.2 by=mx.postern.test\r\n"
                        "\ttests=DKIM_NONE(0)\r\n"
                        "Authentication-Results: mx.postern.test; spf=pass\r\n";
    char keys[1024], *signed_msg, *p, *q;
    struct dfx_run run;

    snprintf(keys, sizeof(keys),
             "sign_by = \"sender\"; sign_headers = [ \"from\", \"subject\", "
             "\"x-spam-status\", \"authentication-results\" ]; "
             "oversign_headers = [ \"from\", \"x-spam-status\" ]; " KEYS_FMT,
             "example.com", "sel", fx->key);
    signed_msg = dfx_sign_added(fx, keys, msg, added, "bounce@example.com");
    p = strstr(signed_msg, " h=");
    p = p != NULL ? p : strstr(signed_msg, "\th=");
    assert_non_null(p);
    q = strstr(p, "b=");
    assert_non_null(q);
    if (memmem(p, (size_t)(q - p), "X-Spam-Status", 13) == NULL ||
        memmem(p, (size_t)(q - p), "Authentication-Results", 22) == NULL)
        fail_msg("added fields not signed: %s", signed_msg);
    /* the message as relayed verifies */
    verify(fx, &run, DKIM, signed_msg, false);
    expect_symbol(&run, "DKIM_VALID", 0, "d=example.com s=sel", -0.2);
    dfx_close(&run);
    /* without the added fields it does not: they were signed */
    p = strstr(signed_msg, "X-Spam-Status:");
    q = strstr(signed_msg, "From:");
    assert_true(p != NULL && q != NULL && p < q);
    memmove(p, q, strlen(q) + 1);
    verify(fx, &run, DKIM, signed_msg, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=sel: signature mismatch", 1);
    dfx_close(&run);
    free(signed_msg);
    /* one more X-Spam-Status (oversigned) added on top breaks it */
    signed_msg = dfx_sign_added(fx, keys, msg, added, "bounce@example.com");
    size_t size = strlen(signed_msg) + 64;
    char *more = malloc(size);
    assert_non_null(more);
    snprintf(more, size, "X-Spam-Status: No, forged\r\n%s", signed_msg);
    verify(fx, &run, DKIM, more, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=sel: signature mismatch", 1);
    dfx_close(&run);
    free(more);
    free(signed_msg);
    free(msg);
}

/* Changing the body or a signed field after signing breaks the signature. */
static void test_tampered(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Pay 10 EUR\r\n");
    char *signed_msg = sign_with(fx, "example.com", "sel", msg);
    struct dfx_run run;
    char *p;

    p = strstr(signed_msg, "Pay 10");
    p[4] = '9';
    verify(fx, &run, DKIM, signed_msg, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=sel: body hash mismatch", 1);
    dfx_close(&run);
    p[4] = '1';
    p = strstr(signed_msg, "Subject: a test");
    p[9] = 'A';
    verify(fx, &run, DKIM, signed_msg, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=sel: signature mismatch", 1);
    dfx_close(&run);
    free(signed_msg);
    free(msg);
}

/* A signature made by another implementation: dkimpy's dkimsign
 * (rsa-sha256, relaxed/simple). */
static void test_foreign_signature(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Hello from dkimpy\r\n");
    char in[128], out[128], cmd[512], *signed_msg;
    struct dfx_run run;
    FILE *f;
    long n;

    if (access(DKIMSIGN, X_OK) != 0) {
        print_message("dkimsign (python3-dkim) is not installed: row skipped\n");
        free(msg);
        skip();
    }
    snprintf(in, sizeof(in), "%s/foreign.in", fx->nsd.dir);
    snprintf(out, sizeof(out), "%s/foreign.out", fx->nsd.dir);
    f = fopen(in, "w");
    assert_non_null(f);
    fputs(msg, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s sel example.com %s < %s > %s", DKIMSIGN, fx->key, in, out);
    assert_int_equal(system(cmd), 0);
    f = fopen(out, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    signed_msg = calloc(1, (size_t)n + 1);
    assert_non_null(signed_msg);
    assert_int_equal(fread(signed_msg, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    assert_non_null(strstr(signed_msg, "DKIM-Signature:"));
    verify(fx, &run, DKIM, signed_msg, false);
    expect_symbol(&run, "DKIM_VALID", 0, "d=example.com s=sel", -0.2);
    dfx_close(&run);
    free(signed_msg);
    free(msg);
}

static void test_bad_keys(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Hello\r\n");
    char *nokey = sign_with(fx, "example.com", "nosuch", msg);
    char *revoked = sign_with(fx, "example.com", "rev", msg);
    struct dfx_run run;

    verify(fx, &run, DKIM, nokey, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=nosuch: key not found", 1);
    dfx_close(&run);
    verify(fx, &run, DKIM, revoked, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=rev: key revoked", 1);
    dfx_close(&run);
    /* min_key_bits above the key's 2048 */
    verify(fx, &run, "filters = ( { name = \"dkim\"; min_key_bits = 4096; } );", nokey, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "s=nosuch", 1);
    dfx_close(&run);
    char *good = sign_with(fx, "example.com", "sel", msg);
    verify(fx, &run, "filters = ( { name = \"dkim\"; min_key_bits = 4096; } );", good, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.com s=sel: ", 1);
    dfx_close(&run);
    free(good);
    free(nokey);
    free(revoked);
    free(msg);
}

static void test_unsigned_and_malformed(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Hello\r\n");
    char *broken = dfx_message("alice@example.com", "DKIM-Signature: v=1; d=example.com\r\n",
                               "Hello\r\n");
    struct dfx_run run;

    verify(fx, &run, DKIM, msg, false);
    expect_symbol(&run, "DKIM_NONE", 0, "", 0);
    assert_int_equal(run.r.res.symbol_count, 1);
    dfx_close(&run);
    verify(fx, &run, DKIM, broken, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "", 1);
    assert_null(dfx_symbol(&run.r.res, "DKIM_VALID", 0));
    dfx_close(&run);
    free(broken);
    free(msg);
}

/* A DNS server that never answers: a temporary error, not a failure. */
static void test_temperror(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Hello\r\n");
    char *signed_msg = sign_with(fx, "example.com", "sel", msg);
    struct dfx_run run;

    verify(fx, &run, DKIM, signed_msg, true);
    expect_symbol(&run, "DKIM_TEMPERROR", 0, "d=example.com s=sel: key lookup: ", 0);
    assert_int_equal(run.r.res.action, FILTER_ACTION_NONE);
    dfx_close(&run);
    free(signed_msg);
    free(msg);
}

/* Two valid signatures and a broken one: a symbol each, each score once;
 * max_signatures cuts; authres = yes writes every result. */
static void test_several(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "", "Hello\r\n");
    char *one = sign_with(fx, "example.com", "sel", msg);
    char *two = sign_with(fx, "example.org", "sel", one);
    char *three = sign_with(fx, "example.net", "nosuch", two);
    struct dfx_run run;
    const char *ar;

    verify(fx, &run, "filters = ( { name = \"dkim\"; authres = true; } );", three, false);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.net s=nosuch", 1);
    expect_symbol(&run, "DKIM_VALID", 0, "d=example.org s=sel", -0.2);
    expect_symbol(&run, "DKIM_VALID", 1, "d=example.com s=sel", 0);
    assert_int_equal(run.r.res.symbol_count, 3);
    assert_true(run.r.res.score == 0.8);
    ar = dfx_header(&run.r.res, "Authentication-Results");
    assert_non_null(ar);
    assert_true(strncmp(ar, DFX_HOSTNAME ";\r\n\tdkim=permerror (",
                        sizeof(DFX_HOSTNAME ";\r\n\tdkim=permerror (") - 1) == 0);
    assert_non_null(strstr(ar, "dkim=permerror (key not found in DNS) header.d=example.net "
                               "header.s=nosuch header.b="));
    assert_non_null(strstr(ar, ";\r\n\tdkim=pass header.d=example.org header.s=sel header.b="));
    assert_non_null(strstr(ar, ";\r\n\tdkim=pass header.d=example.com header.s=sel header.b="));
    dfx_close(&run);
    verify(fx, &run, "filters = ( { name = \"dkim\"; max_signatures = 1; } );", three, false);
    assert_int_equal(run.r.res.symbol_count, 1);
    expect_symbol(&run, "DKIM_INVALID", 0, "d=example.net", 1);
    dfx_close(&run);
    free(three);
    free(two);
    free(one);
    free(msg);
}

/* A header section over max_header_size is the filter's error (on_error
 * skip: DKIM_ERROR); a check the chain's timeout cancels leaves nothing
 * behind (ASan) and no callback after. */
static void test_errors(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com", "X-Long: 0123456789012345678901234567890\r\n",
                            "Hello\r\n");
    char *signed_msg = sign_with(fx, "example.com", "sel", msg);
    struct dfx_run run;

    verify(fx, &run, "filters = ( { name = \"dkim\"; max_header_size = 1024; } );",
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
           "\r\nbody\r\n",
           false);
    expect_symbol(&run, "DKIM_ERROR", 0, "error", 0);
    dfx_close(&run);
    verify(fx, &run, "filters = ( { name = \"dkim\"; timeout = \"100ms\"; } );", signed_msg,
           true);
    expect_symbol(&run, "DKIM_ERROR", 0, "timeout", 0);
    loop_run_for(fx->base, 500); /* the DNS timeout passes: nothing may fire */
    dfx_close(&run);
    /* a run cancelled at once: the job on its thread comes back to nothing */
    verify(fx, &run, DKIM, signed_msg, false);
    char path[128];
    snprintf(path, sizeof(path), "%s/cancel", fx->nsd.dir);
    FILE *f = fopen(path, "w");
    fputs(signed_msg, f);
    fclose(f);
    int fd = open(path, O_RDONLY);
    struct filter_txn txn = {.queue_id = "Q", .direction = FILTER_INBOUND, .content_fd = fd,
                             .content_len = strlen(signed_msg), .sender = "a@example.com"};
    struct filter_test_result r = {0};
    chain_session_reset(run.s);
    struct chain_run *cr = chain_run(run.s, FILTER_EOM, &txn, filter_test_done, &r);
    assert_non_null(cr);
    close(fd); /* the check has its own descriptor */
    chain_run_cancel(cr);
    loop_run_for(fx->base, 300);
    assert_int_equal(r.calls, 0);
    dfx_close(&run); /* the pool settles a job still on a thread */
    free(signed_msg);
    free(msg);
}

int main(void)
{
    const char *missing = dfx_missing();
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_large),
        cmocka_unit_test(test_values_and_names),
        cmocka_unit_test(test_from_domain),
    };
    const struct CMUnitTest with_nsd[] = {
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_sign_outbound),
        cmocka_unit_test(test_sign_added_fields),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_foreign_signature),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_unsigned_and_malformed),
        cmocka_unit_test(test_temperror),
        cmocka_unit_test(test_several),
        cmocka_unit_test(test_errors),
    };
    int rc = cmocka_run_group_tests_name("dkim-plain", plain, NULL, NULL);

    if (missing != NULL) {
        printf("SKIP the tests with nsd: %s\n", missing);
        return rc != 0 ? rc : 77;
    }
    return rc | cmocka_run_group_tests_name("dkim-nsd", with_nsd, dfx_group_setup, dfx_group_teardown);
}
