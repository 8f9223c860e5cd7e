/*
 * test-spf — the spf filter. Without DNS: its texts (result and symbol
 * names, the domain-name check, cleaned text, libspf2's reverse names, the
 * Received-SPF field: a row per result and per quoting and folding case)
 * and its config (a row per key and per error, errors naming file and
 * line). With a real nsd serving SPF records (nsd-test.h), the filter
 * through the chain as a worker runs it: pass, fail (-all), softfail
 * (~all), neutral, none (no name, no SPF record, no domain), include:, a:
 * (IPv4 and IPv6), mx, ptr, exists: with a macro, redirect=, exp= and the
 * default explanation in the 550 5.7.23 of reject_fail, an include loop,
 * too many DNS mechanisms, two records and a syntax error (permerror), a
 * refused zone and a zone nsd answers with SERVFAIL (temperror), clients
 * on ::1 and 127.0.0.2 (checked: no free pass for loopback), the HELO
 * check and the null sender (RFC 7208 §2.4), skipped clients, the
 * Received-SPF text as it comes out. Then, with a UDP socket that never
 * answers as the server: temperror when lookup_timeout ends the check, and
 * a chain timeout that cancels a check waiting for DNS (the instance goes
 * away at once); and checks in parallel on fewer threads than sessions.
 *
 * Needs /usr/sbin/nsd for the DNS part (exit 77 without it, after the
 * rest). Nothing leaves 127.0.0.1.
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
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/spf-eval.h"
#include "filters/spf.h"
#include "gateway/server-config.h"
#include "lib/dns.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/loop-test.h"
#include "tests/unit/nsd-test.h"

#define RUN_MAX_MS 5000
#define RECEIVER "mx.postern.test"

/* ---- texts ---- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(spf_outcome_name(SPF_OUT_SOFTFAIL), "softfail");
    assert_string_equal(spf_outcome_name(SPF_OUT_PERMERROR), "permerror");
    assert_string_equal(spf_symbol(SPF_SCOPE_MAILFROM, SPF_OUT_PASS), "SPF_PASS");
    assert_string_equal(spf_symbol(SPF_SCOPE_MAILFROM, SPF_OUT_TEMPERROR), "SPF_TEMPERROR");
    assert_string_equal(spf_symbol(SPF_SCOPE_HELO, SPF_OUT_FAIL), "SPF_HELO_FAIL");
    assert_string_equal(spf_symbol(SPF_SCOPE_HELO, SPF_OUT_NONE), "SPF_HELO_NONE");
}

static void test_domain_ok(void **state)
{
    static const struct {
        const char *name;
        bool ok;
    } rows[] = {
        {"example.org", true},
        {"Mail-1.Example.ORG.", true},
        {"_spf.example.org", true},
        {"a.b", true},
        {"localhost", false},
        {"", false},
        {".", false},
        {"example..org", false},
        {".example.org", false},
        {"[192.0.2.1]", false},
        {"192.0.2.1", true}, /* digits are labels; its lookups find nothing */
        {"exa mple.org", false},
        {"ex\xc3\xa4mple.org", false},
        {"a%{i}.example.org", false},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org", true},  /* 63 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org", false}, /* 64 */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (spf_domain_ok(rows[i].name) != rows[i].ok)
            fail_msg("row %zu: \"%s\"", i, rows[i].name);
    }
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    for (size_t i = 60; i < sizeof(longname); i += 61)
        longname[i] = '.';
    longname[253] = '\0';
    assert_true(spf_domain_ok(longname));
    longname[253] = 'a';
    longname[254] = '\0';
    assert_false(spf_domain_ok(longname));
}

static void test_clean_text(void **state)
{
    static const struct {
        const char *in;
        size_t size;
        const char *out;
    } rows[] = {
        {"plain text", 64, "plain text"},
        {"  spaced \t\r\n out  ", 64, "spaced out"},
        {"ctl\x01\x7f\xff end", 64, "ctl??? end"},
        {"cut here", 4, "cut"},
        {"a     b", 3, "a"},
        {"", 8, ""},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        spf_clean_text(rows[i].in, out, rows[i].size);
        if (strcmp(out, rows[i].out) != 0)
            fail_msg("row %zu: \"%s\"", i, out);
    }
}

static void test_reverse_names(void **state)
{
    static const struct {
        const char *name;
        const char *addr; /* NULL = refused */
    } rows[] = {
        {"4.3.2.1.in-addr.arpa", "1.2.3.4"},
        {"10.2.0.192.in-addr.arpa", "192.0.2.10"},
        {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", "::1"},
        {"f.e.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
         "2001:db8::ef"},
        {"256.2.0.192.in-addr.arpa", NULL},
        {"2.0.192.in-addr.arpa", NULL},
        {"4.3.2.1.in-addr.arpa.example", NULL},
        {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", NULL},
        {"G.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", NULL},
        {"example.org", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage ss;
        char text[INET6_ADDRSTRLEN] = "";
        int rc = spf_reverse_name_parse(rows[i].name, &ss);

        if (rows[i].addr == NULL) {
            if (rc != -1)
                fail_msg("row %zu: accepted", i);
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu: refused", i);
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof(text));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof(text));
        if (strcmp(text, rows[i].addr) != 0)
            fail_msg("row %zu: %s", i, text);
    }
}

static void test_received_value(void **state)
{
    static const struct {
        struct spf_report r;
        const char *value;
    } rows[] = {
        {.r = {.outcome = SPF_OUT_SOFTFAIL, .scope = SPF_SCOPE_MAILFROM, .receiver = RECEIVER,
               .client_ip = "192.0.2.1", .identity = "a@soft.spf.test",
               .helo = "client.spf.test"},
         .value = "softfail (mx.postern.test: domain of transitioning\r\n"
                  "\ta@soft.spf.test does not designate 192.0.2.1 as permitted sender)\r\n"
                  "\tclient-ip=192.0.2.1; envelope-from=\"a@soft.spf.test\"; "
                  "helo=client.spf.test;\r\n"
                  "\treceiver=mx.postern.test; identity=mailfrom;"},
        {.r = {.outcome = SPF_OUT_PASS, .scope = SPF_SCOPE_MAILFROM, .receiver = "mx",
               .client_ip = "::1", .identity = "x@p.test", .helo = "h.test"},
         .value = "pass (mx: domain of x@p.test designates ::1 as permitted sender)\r\n"
                  "\tclient-ip=\"::1\"; envelope-from=\"x@p.test\"; helo=h.test; receiver=mx;\r\n"
                  "\tidentity=mailfrom;"},
        /* quoting and escaping of what the client chose */
        {.r = {.outcome = SPF_OUT_NEUTRAL, .scope = SPF_SCOPE_MAILFROM, .receiver = "mx",
               .client_ip = "192.0.2.1", .identity = "\"a(b)\\\"\"@n.test", .helo = "[192.0.2.1]"},
         .value = "neutral (mx: 192.0.2.1 is neither permitted nor denied by domain\r\n"
                  "\tof \"a\\(b\\)\\\\\"\"@n.test) client-ip=192.0.2.1;\r\n"
                  "\tenvelope-from=\"\\\"a(b)\\\\\\\"\\\"@n.test\"; "
                  "helo=\"[192.0.2.1]\"; receiver=mx;\r\n"
                  "\tidentity=mailfrom;"},
        /* problem= only for errors; no helo= without a HELO name */
        {.r = {.outcome = SPF_OUT_PERMERROR, .scope = SPF_SCOPE_MAILFROM, .receiver = "mx",
               .client_ip = "192.0.2.1", .identity = "a@b.test",
               .problem = "more than one SPF record for b.test"},
         .value = "permerror (mx: permanent error in processing domain of a@b.test)\r\n"
                  "\tclient-ip=192.0.2.1; envelope-from=\"a@b.test\";\r\n"
                  "\tproblem=\"more than one SPF record for b.test\"; receiver=mx;\r\n"
                  "\tidentity=mailfrom;"},
        {.r = {.outcome = SPF_OUT_NONE, .scope = SPF_SCOPE_HELO, .receiver = "mx",
               .client_ip = "192.0.2.1", .identity = "postmaster@h.test", .helo = "h.test",
               .problem = "ignored"},
         .value = "none (mx: domain of postmaster@h.test does not designate\r\n"
                  "\tpermitted sender hosts) client-ip=192.0.2.1;\r\n"
                  "\tenvelope-from=\"postmaster@h.test\"; helo=h.test; receiver=mx; "
                  "identity=helo;"},
        {.r = {.outcome = SPF_OUT_TEMPERROR, .scope = SPF_SCOPE_MAILFROM, .receiver = "mx",
               .client_ip = "192.0.2.1", .identity = "a@\x01.test", .problem = "DNS timeout"},
         .value = "temperror (mx: temporary error in processing during lookup of\r\n"
                  "\ta@?.test) client-ip=192.0.2.1; envelope-from=\"a@?.test\";\r\n"
                  "\tproblem=\"DNS timeout\"; receiver=mx; identity=mailfrom;"},
    };
    char out[2048];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(spf_received_value(&rows[i].r, out, sizeof(out)), 0);
        if (strcmp(out, rows[i].value) != 0)
            fail_msg("row %zu:\n%s\nexpected\n%s", i, out, rows[i].value);
        for (const char *line = out; line != NULL;) { /* with "Received-SPF: " */
            const char *end = strstr(line, "\r\n");
            size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
            assert_true(len + (line == out ? 14 : 0) <= 78);
            line = end != NULL ? end + 2 : NULL;
        }
    }
    assert_int_equal(spf_received_value(&rows[0].r, out, 60), -1);
}

/* ---- config ---- */

#define SPF(keys) "filters = ( { name = \"spf\"; " keys " } );"

static const struct {
    const char *filters;
    const char *error; /* substring of the first error; NULL = loads */
} configs[] = {
    /* 0: the defaults, checked in test_config */
    {.filters = SPF("")},
    /* 1: every key, checked in test_config */
    {.filters = SPF("check_helo = false; reject_fail = true; add_header = false; "
                    "skip_authenticated = false; skip_trusted = false; timeout = \"30s\"; "
                    "lookup_timeout = \"20s\"; threads = 2; explanation = \"see %{d}\"; "
                    "score_pass = -1; score_fail = 7.5; score_softfail = 3; score_neutral = 0.5; "
                    "score_none = 0.25; score_temperror = 1; score_permerror = 2; "
                    "helo_score_pass = -0.25; helo_score_fail = 4; helo_score_softfail = 1.5; "
                    "helo_score_neutral = 0.1; helo_score_none = 0.2; helo_score_temperror = 0.3; "
                    "helo_score_permerror = 0.4;")},
    {.filters = "filters = ( { name = \"spf\";\n frobnicate = 1; } );",
     .error = ":3: unknown key \"frobnicate\""},
    {.filters = "filters = ( { name = \"spf\"; timeout = \"5s\";\n lookup_timeout = \"5s\"; } );",
     .error = ":3: spf: lookup_timeout (5000 ms) must be shorter than timeout (5000 ms)"},
    {.filters = SPF("timeout = \"5s\";"), .error = "spf: lookup_timeout (15000 ms)"},
    {.filters = "filters = ( { name = \"spf\";\n explanation = \"bad %{i999} macro\"; } );",
     .error = ":3: spf: explanation: Subdomain truncation depth too large"},
    {.filters = SPF("threads = 0;"), .error = "threads:"},
    {.filters = SPF("threads = 1000;"), .error = "threads:"},
    {.filters = SPF("score_fail = \"high\";"), .error = "score_fail: invalid number"},
    {.filters = SPF("reject_fail = \"sometimes\";"), .error = "reject_fail:"},
    {.filters = SPF("lookup_timeout = \"50ms\";"), .error = "lookup_timeout:"},
    {.filters = SPF("on_error = \"maybe\";"), .error = "on_error: unknown value"},
};

static void check_defaults(const struct spf_settings *s)
{
    static const double scores[SPF_OUTCOMES] = {-0.5, 5, 2, 0, 0, 0, 0};
    static const double helo[SPF_OUTCOMES] = {0, 2, 1, 0, 0, 0, 0};

    assert_int_equal(s->common.on_error, FILTER_ON_ERROR_SKIP);
    assert_int_equal(s->common.timeout, 20000);
    assert_true(s->check_helo && !s->reject_fail && s->add_header);
    assert_true(s->skip_authenticated && s->skip_trusted);
    assert_int_equal(s->lookup_timeout, 15000);
    assert_int_equal(s->threads, 4);
    assert_string_equal(s->explanation, "%{c} is not allowed to send mail from %{o}");
    for (int i = 0; i < SPF_OUTCOMES; i++) {
        assert_true(s->score[i] == scores[i]);
        assert_true(s->helo_score[i] == helo[i]);
    }
}

static void check_keys(const struct spf_settings *s)
{
    static const double scores[SPF_OUTCOMES] = {-1, 7.5, 3, 0.5, 0.25, 1, 2};
    static const double helo[SPF_OUTCOMES] = {-0.25, 4, 1.5, 0.1, 0.2, 0.3, 0.4};

    assert_true(!s->check_helo && s->reject_fail && !s->add_header);
    assert_true(!s->skip_authenticated && !s->skip_trusted);
    assert_int_equal(s->common.timeout, 30000);
    assert_int_equal(s->lookup_timeout, 20000);
    assert_int_equal(s->threads, 2);
    assert_string_equal(s->explanation, "see %{d}");
    for (int i = 0; i < SPF_OUTCOMES; i++) {
        assert_true(s->score[i] == scores[i]);
        assert_true(s->helo_score[i] == helo[i]);
    }
}

static void test_config(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(configs[i].filters, &errs);
        config_test_expect(i, cfg, &errs, configs[i].error);
        if (i == 0)
            check_defaults(cfg->filtering.filters[0].settings);
        if (i == 1)
            check_keys(cfg->filtering.filters[0].settings);
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

/* ---- the filter against nsd ---- */

static const char zone_spf[] =
    "pass IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
    "fail IN TXT \"v=spf1 ip4:198.51.100.1 -all\"\n"
    "soft IN TXT \"v=spf1 ip4:198.51.100.1 ~all\"\n"
    "neutral IN TXT \"v=spf1 ?all\"\n"
    "other IN TXT \"site-verification=abc\"\n"
    "inc IN TXT \"v=spf1 include:pass.spf.test -all\"\n"
    "incnone IN TXT \"v=spf1 include:nothing.spf.test -all\"\n"
    "a IN TXT \"v=spf1 a:host.spf.test -all\"\n"
    "host IN A 192.0.2.77\n"
    "host IN AAAA 2001:db8::77\n"
    "mx IN TXT \"v=spf1 mx -all\"\n"
    "mx IN MX 10 mx1.spf.test.\n"
    "mx1 IN A 192.0.2.25\n"
    "ptr IN TXT \"v=spf1 ptr -all\"\n"
    "host.ptr IN A 192.0.2.10\n"
    "exists IN TXT \"v=spf1 exists:%{i}.ex.spf.test -all\"\n"
    "192.0.2.5.ex IN A 127.0.0.2\n"
    "redir IN TXT \"v=spf1 redirect=pass.spf.test\"\n"
    "exp IN TXT \"v=spf1 ip4:198.51.100.1 -all exp=why.spf.test\"\n"
    "why IN TXT \"%{i} may not send for %{d}, see https://spf.test/why\"\n"
    "loop1 IN TXT \"v=spf1 include:loop2.spf.test -all\"\n"
    "loop2 IN TXT \"v=spf1 include:loop1.spf.test -all\"\n"
    "many IN TXT \"v=spf1 a:n1.spf.test a:n2.spf.test a:n3.spf.test a:n4.spf.test "
    "a:n5.spf.test a:n6.spf.test a:n7.spf.test a:n8.spf.test a:n9.spf.test a:n10.spf.test "
    "a:n11.spf.test -all\"\n"
    "two IN TXT \"v=spf1 -all\"\n"
    "two IN TXT \"v=spf1 +all\"\n"
    "bad IN TXT \"v=spf1 frob:x.spf.test -all\"\n"
    "refused IN TXT \"v=spf1 include:spf.example -all\"\n"
    "servfail IN TXT \"v=spf1 include:x.broken.test -all\"\n"
    "v6 IN TXT \"v=spf1 ip6:2001:db8::/32 ip6:::1 -all\"\n"
    "lo IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n"
    "heloname IN TXT \"v=spf1 a -all\"\n"
    "heloname IN A 192.0.2.33\n";

static const struct nsd_zone zones[] = {
    {.name = "spf.test", .records = zone_spf},
    /* a zone nsd cannot load: it answers SERVFAIL for its names */
    {.name = "broken.test", .records = "this is no record\n"},
    {.name = "2.0.192.in-addr.arpa",
     .records = "10 IN PTR host.ptr.spf.test.\n11 IN PTR other.spf.test.\n"},
};

static struct nsd_test nsd;
static bool have_nsd;
static char nsd_why[512];

struct fx {
    struct event_base *base;
    struct dns *dns;
    struct postern_config *cfg;
    struct filter_test ft;
    struct chain_session *s;
    struct netaddr client;
    struct filter_txn txn;
};

/* An instance from keys, its resolver at port (nsd's, or a silent one). */
static void fx_open_at(struct fx *fx, const char *keys, int port, unsigned dns_timeout_ms,
                       void (*edit)(struct spf_settings *))
{
    char server[32], error[256], text[2048];
    const char *ns[] = {server};
    struct dns_config dc = {.nameservers = ns, .nameserver_count = 1,
                            .timeout_ms = dns_timeout_ms, .attempts = 1};
    struct cfg_errors errs = {0};

    memset(fx, 0, sizeof(*fx));
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    assert_int_equal(dns_new(fx->base, &dc, &fx->dns, error, sizeof(error)), 0);
    snprintf(text, sizeof(text), "filters = ( { name = \"spf\"; %s } );", keys);
    fx->cfg = config_test_load(text, &errs);
    if (fx->cfg == NULL)
        fail_msg("%s", errs.count ? errs.msgs[0] : "?");
    if (edit != NULL)
        edit(fx->cfg->filtering.filters[0].settings);
    struct filter_env env = {.base = fx->base, .dns = fx->dns, .hostname = RECEIVER};
    filter_test_open(&fx->ft, &spf_module, &env, fx->cfg->filtering.filters[0].settings);
    fx->s = chain_session_new(fx->ft.chain);
    assert_non_null(fx->s);
}

static void fx_open(struct fx *fx, const char *keys)
{
    fx_open_at(fx, keys, nsd.port, 2000, NULL);
}

static void fx_close(struct fx *fx)
{
    chain_session_free(&fx->s);
    filter_test_close(&fx->ft);
    dns_free(&fx->dns);
    postern_config_free(&fx->cfg);
    event_base_free(fx->base);
}

static void fx_txn(struct fx *fx, const char *client, const char *helo, const char *sender)
{
    assert_int_equal(netaddr_parse(client, &fx->client), 0);
    fx->txn = (struct filter_txn){.listener = "mx", .client = fx->client, .client_addr = client,
                                  .client_name = "unknown", .helo = helo, .sender = sender,
                                  .content_fd = -1};
}

/* "a\r\n\tb" -> "a b" */
static void unfold(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (; *in != '\0' && o + 1 < size; in++) {
        if (in[0] == '\r' && in[1] == '\n' && in[2] == '\t') {
            out[o++] = ' ';
            in += 2;
            continue;
        }
        out[o++] = *in;
    }
    out[o] = '\0';
}

struct check_row {
    const char *what;
    const char *keys;  /* more filter keys */
    enum filter_stage stage;
    const char *client, *helo, *sender;
    bool trusted, authenticated;
    const char *symbol; /* the one symbol; NULL = none (and no field) */
    double score;       /* with custom_score; else the default of the symbol */
    bool custom_score;
    bool no_field;      /* no Received-SPF although there is a symbol */
    const char *text;   /* the symbol's text, when given */
    const char *field;  /* in the unfolded Received-SPF value; NULL = no field */
    const char *reply;  /* in a 550 5.7.23 reject; NULL = no action */
};

#define MAIL FILTER_MAIL
#define HELO FILTER_HELO
#define FIELD_PASS(sender, ip)                                                                     \
    "pass (" RECEIVER ": domain of " sender " designates " ip " as permitted sender)"
#define FIELD_FAIL(sender, ip)                                                                     \
    "fail (" RECEIVER ": domain of " sender " does not designate " ip " as permitted sender)"

static const struct check_row check_rows[] = {
    {.what = "pass", .stage = MAIL, .client = "192.0.2.1", .sender = "a@pass.spf.test",
     .symbol = "SPF_PASS", .score = -0.5, .text = "pass.spf.test",
     .field = FIELD_PASS("a@pass.spf.test", "192.0.2.1")
     " client-ip=192.0.2.1; envelope-from=\"a@pass.spf.test\"; helo=client.spf.test; "
     "receiver=" RECEIVER "; identity=mailfrom;"},
    {.what = "fail (-all)", .stage = MAIL, .client = "192.0.2.1", .sender = "a@fail.spf.test",
     .symbol = "SPF_FAIL", .score = 5, .text = "fail.spf.test",
     .field = FIELD_FAIL("a@fail.spf.test", "192.0.2.1")},
    {.what = "softfail (~all)", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@soft.spf.test", .symbol = "SPF_SOFTFAIL", .score = 2,
     .field = "softfail (" RECEIVER ": domain of transitioning a@soft.spf.test does not "
              "designate 192.0.2.1 as permitted sender)"},
    {.what = "neutral (?all)", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@neutral.spf.test", .symbol = "SPF_NEUTRAL", .score = 0,
     .field = "neutral (" RECEIVER ": 192.0.2.1 is neither permitted nor denied by domain of "
              "a@neutral.spf.test)"},
    {.what = "none: the name does not exist", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@nothing.spf.test", .symbol = "SPF_NONE", .text = "nothing.spf.test",
     .field = "none (" RECEIVER ": domain of a@nothing.spf.test does not designate permitted "
              "sender hosts)"},
    {.what = "none: TXT but no SPF record", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@other.spf.test", .symbol = "SPF_NONE", .field = "none ("},
    {.what = "none: an address literal, no lookup", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@[192.0.2.1]", .symbol = "SPF_NONE", .text = "[192.0.2.1]",
     .field = "none ("},
    {.what = "include: of a pass", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@inc.spf.test", .symbol = "SPF_PASS", .score = -0.5},
    {.what = "include: of a domain without a record: permerror", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@incnone.spf.test", .symbol = "SPF_PERMERROR",
     .field = "permerror (" RECEIVER ": permanent error in processing domain of "
              "a@incnone.spf.test) client-ip=192.0.2.1; envelope-from=\"a@incnone.spf.test\"; "
              "helo=client.spf.test; problem=\"no SPF record for nothing.spf.test\";"},
    {.what = "a: matches", .stage = MAIL, .client = "192.0.2.77", .sender = "a@a.spf.test",
     .symbol = "SPF_PASS", .score = -0.5},
    {.what = "a: other address", .stage = MAIL, .client = "192.0.2.78", .sender = "a@a.spf.test",
     .symbol = "SPF_FAIL", .score = 5},
    {.what = "a: an IPv6 client matches the AAAA", .stage = MAIL, .client = "2001:db8::77",
     .sender = "a@a.spf.test", .symbol = "SPF_PASS",
     .field = FIELD_PASS("a@a.spf.test", "2001:db8::77") " client-ip=\"2001:db8::77\";"},
    {.what = "mx: the MX's address", .stage = MAIL, .client = "192.0.2.25",
     .sender = "a@mx.spf.test", .symbol = "SPF_PASS"},
    {.what = "mx: another address", .stage = MAIL, .client = "192.0.2.26",
     .sender = "a@mx.spf.test", .symbol = "SPF_FAIL"},
    {.what = "ptr: validated name in the domain", .stage = MAIL, .client = "192.0.2.10",
     .sender = "a@ptr.spf.test", .symbol = "SPF_PASS"},
    {.what = "ptr: a name outside the domain", .stage = MAIL, .client = "192.0.2.11",
     .sender = "a@ptr.spf.test", .symbol = "SPF_FAIL"},
    {.what = "ptr: no PTR", .stage = MAIL, .client = "192.0.2.12", .sender = "a@ptr.spf.test",
     .symbol = "SPF_FAIL"},
    {.what = "exists: with %{i}", .stage = MAIL, .client = "192.0.2.5",
     .sender = "a@exists.spf.test", .symbol = "SPF_PASS"},
    {.what = "exists: nothing there", .stage = MAIL, .client = "192.0.2.6",
     .sender = "a@exists.spf.test", .symbol = "SPF_FAIL"},
    {.what = "redirect= to a pass", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@redir.spf.test", .symbol = "SPF_PASS"},
    {.what = "redirect= to a fail", .stage = MAIL, .client = "198.51.100.9",
     .sender = "a@redir.spf.test", .symbol = "SPF_FAIL"},
    {.what = "exp= explanation in the reject", .keys = "reject_fail = true;", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@exp.spf.test", .symbol = "SPF_FAIL",
     .field = FIELD_FAIL("a@exp.spf.test", "192.0.2.1"),
     .reply = "SPF fail for exp.spf.test: 192.0.2.1 may not send for exp.spf.test, see "
              "https://spf.test/why"},
    {.what = "the default explanation in the reject", .keys = "reject_fail = true;",
     .stage = MAIL, .client = "192.0.2.1", .sender = "a@fail.spf.test", .symbol = "SPF_FAIL",
     .reply = "SPF fail for fail.spf.test: 192.0.2.1 is not allowed to send mail from "
              "fail.spf.test"},
    {.what = "a configured explanation", .keys = "reject_fail = true; explanation = \"ask "
                                                 "postmaster@%{r} about %{s}\";",
     .stage = MAIL, .client = "192.0.2.1", .sender = "a@fail.spf.test", .symbol = "SPF_FAIL",
     .reply = "ask postmaster@" RECEIVER " about a@fail.spf.test"},
    {.what = "reject_fail: a softfail is not refused", .keys = "reject_fail = true;",
     .stage = MAIL, .client = "192.0.2.1", .sender = "a@soft.spf.test",
     .symbol = "SPF_SOFTFAIL"},
    {.what = "an include loop: permerror", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@loop1.spf.test", .symbol = "SPF_PERMERROR",
     .field = "problem=\"more than 10 include and redirect records"},
    {.what = "11 DNS mechanisms: permerror", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@many.spf.test", .symbol = "SPF_PERMERROR", .field = "permerror ("},
    {.what = "two SPF records: permerror", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@two.spf.test", .symbol = "SPF_PERMERROR",
     .field = "problem=\"more than one SPF record for two.spf.test\";"},
    {.what = "a syntax error: permerror", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@bad.spf.test", .symbol = "SPF_PERMERROR", .field = "problem="},
    {.what = "an include the server refuses: temperror", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@refused.spf.test", .symbol = "SPF_TEMPERROR", .field = "temperror ("},
    {.what = "an include whose server answers SERVFAIL: temperror", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@servfail.spf.test", .symbol = "SPF_TEMPERROR",
     .field = "problem=\"DNS failure for x.broken.test\";"},
    {.what = "SERVFAIL for the sender's own domain: temperror", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@broken.test", .symbol = "SPF_TEMPERROR"},
    {.what = "IPv6 loopback client", .stage = MAIL, .client = "::1", .sender = "a@v6.spf.test",
     .symbol = "SPF_PASS", .field = FIELD_PASS("a@v6.spf.test", "::1")},
    {.what = "IPv4 client of an ip6-only record", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@v6.spf.test", .symbol = "SPF_FAIL"},
    {.what = "loopback is checked like any client", .stage = MAIL, .client = "127.0.0.2",
     .sender = "a@lo.spf.test", .symbol = "SPF_FAIL",
     .field = FIELD_FAIL("a@lo.spf.test", "127.0.0.2")},
    {.what = "HELO: pass (a with no domain: the HELO name's own)", .stage = HELO,
     .client = "192.0.2.33", .helo = "heloname.spf.test", .symbol = "SPF_HELO_PASS",
     .score = 0, .text = "heloname.spf.test"},
    {.what = "HELO: fail, no header for the HELO check", .stage = HELO, .client = "192.0.2.34",
     .helo = "heloname.spf.test", .symbol = "SPF_HELO_FAIL", .score = 2},
    {.what = "HELO: an address literal is none", .stage = HELO, .client = "192.0.2.34",
     .helo = "[192.0.2.34]", .symbol = "SPF_HELO_NONE"},
    {.what = "HELO: check_helo = false", .keys = "check_helo = false;", .stage = HELO,
     .client = "192.0.2.34", .helo = "heloname.spf.test"},
    {.what = "HELO: its score key", .keys = "helo_score_fail = 3.5;", .stage = HELO,
     .client = "192.0.2.34", .helo = "fail.spf.test", .symbol = "SPF_HELO_FAIL", .score = 3.5,
     .custom_score = true},
    {.what = "null sender: the HELO identity (§2.4)", .keys = "reject_fail = true;",
     .stage = MAIL, .client = "192.0.2.1", .helo = "fail.spf.test", .sender = "",
     .symbol = "SPF_FAIL", .text = "fail.spf.test",
     .field = FIELD_FAIL("postmaster@fail.spf.test", "192.0.2.1")
     " client-ip=192.0.2.1; envelope-from=\"postmaster@fail.spf.test\"; helo=fail.spf.test;",
     .reply = "SPF fail for fail.spf.test"},
    {.what = "null sender, HELO literal: none", .stage = MAIL, .client = "192.0.2.1",
     .helo = "[192.0.2.1]", .sender = "", .symbol = "SPF_NONE"},
    {.what = "add_header = false", .keys = "add_header = false;", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@pass.spf.test", .symbol = "SPF_PASS", .no_field = true},
    {.what = "score keys", .keys = "score_fail = 7; score_pass = -2;", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@fail.spf.test", .symbol = "SPF_FAIL", .score = 7,
     .custom_score = true},
    {.what = "trusted: not checked", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@fail.spf.test", .trusted = true},
    {.what = "authenticated: not checked", .stage = MAIL, .client = "192.0.2.1",
     .sender = "a@fail.spf.test", .authenticated = true},
    {.what = "trusted, skip_trusted = false", .keys = "skip_trusted = false;", .stage = MAIL,
     .client = "192.0.2.1", .sender = "a@fail.spf.test", .trusted = true,
     .symbol = "SPF_FAIL"},
    {.what = "authenticated, skip_authenticated = false", .keys = "skip_authenticated = false;",
     .stage = MAIL, .client = "192.0.2.1", .sender = "a@fail.spf.test", .authenticated = true,
     .symbol = "SPF_FAIL"},
};

/* The default scores (spf-config.c). */
static double default_score(const char *symbol)
{
    static const struct {
        const char *symbol;
        double score;
    } scores[] = {{"SPF_PASS", -0.5}, {"SPF_FAIL", 5}, {"SPF_SOFTFAIL", 2},
                  {"SPF_HELO_FAIL", 2}, {"SPF_HELO_SOFTFAIL", 1}};

    for (size_t i = 0; i < sizeof(scores) / sizeof(scores[0]); i++)
        if (strcmp(scores[i].symbol, symbol) == 0)
            return scores[i].score;
    return 0;
}

static void check_result(size_t i, const struct check_row *row, const struct chain_result *res)
{
    char value[4096];
    bool field_wanted = row->stage == MAIL && row->symbol != NULL && !row->no_field;

    if (row->symbol == NULL) {
        if (res->symbol_count != 0)
            fail_msg("row %zu (%s): symbol %s", i, row->what, res->symbols[0].name);
    } else if (res->symbol_count != 1 || strcmp(res->symbols[0].name, row->symbol) != 0) {
        fail_msg("row %zu (%s): %zu symbols, first %s", i, row->what, res->symbol_count,
                 res->symbol_count > 0 ? res->symbols[0].name : "-");
    } else if (res->symbols[0].score !=
               (row->custom_score ? row->score : default_score(row->symbol))) {
        fail_msg("row %zu (%s): score %g", i, row->what, res->symbols[0].score);
    }
    if (row->text != NULL && strcmp(res->symbols[0].text, row->text) != 0)
        fail_msg("row %zu (%s): text %s", i, row->what, res->symbols[0].text);
    if (res->header_count != (field_wanted ? 1u : 0u))
        fail_msg("row %zu (%s): %zu header fields", i, row->what, res->header_count);
    if (row->field != NULL) {
        if (res->header_count != 1 || strcmp(res->headers[0].name, "Received-SPF") != 0)
            fail_msg("row %zu (%s): %zu header fields", i, row->what, res->header_count);
        unfold(res->headers[0].value, value, sizeof(value));
        if (strstr(value, row->field) == NULL)
            fail_msg("row %zu (%s): Received-SPF: %s", i, row->what, value);
    }
    if (row->reply == NULL && res->action != FILTER_ACTION_NONE)
        fail_msg("row %zu (%s): %s %s", i, row->what, filter_action_name(res->action),
                 res->reply.text);
    if (row->reply != NULL &&
        (res->action != FILTER_ACTION_REJECT || res->reply.code != 550 ||
         strcmp(res->reply.enhanced, "5.7.23") != 0 || strstr(res->reply.text, row->reply) == NULL))
        fail_msg("row %zu (%s): %s %u %s %s", i, row->what, filter_action_name(res->action),
                 res->reply.code, res->reply.enhanced, res->reply.text);
}

static void test_checks(void **state)
{
    (void)state;
    if (!have_nsd)
        skip();
    for (size_t i = 0; i < sizeof(check_rows) / sizeof(check_rows[0]); i++) {
        const struct check_row *row = &check_rows[i];
        struct filter_test_result r;
        struct fx fx;

        fx_open(&fx, row->keys != NULL ? row->keys : "");
        fx_txn(&fx, row->client, row->helo != NULL ? row->helo : "client.spf.test", row->sender);
        if (row->stage == HELO)
            fx.txn.sender = NULL;
        fx.txn.trusted = row->trusted;
        fx.txn.authenticated = row->authenticated;
        filter_test_run(fx.base, fx.s, row->stage, &fx.txn, &r, RUN_MAX_MS);
        check_result(i, row, &r.res);
        fx_close(&fx);
    }
}

/* The field as it comes out of the chain, folded. */
static void test_field_text(void **state)
{
    struct filter_test_result r;
    struct fx fx;

    (void)state;
    if (!have_nsd)
        skip();
    fx_open(&fx, "");
    fx_txn(&fx, "192.0.2.1", "client.spf.test", "a@soft.spf.test");
    filter_test_run(fx.base, fx.s, MAIL, &fx.txn, &r, RUN_MAX_MS);
    assert_int_equal(r.res.header_count, 1);
    assert_string_equal(r.res.headers[0].name, "Received-SPF");
    assert_string_equal(
        r.res.headers[0].value,
        "softfail (mx.postern.test: domain of transitioning\r\n"
        "\ta@soft.spf.test does not designate 192.0.2.1 as permitted sender)\r\n"
        "\tclient-ip=192.0.2.1; envelope-from=\"a@soft.spf.test\"; helo=client.spf.test;\r\n"
        "\treceiver=mx.postern.test; identity=mailfrom;");
    fx_close(&fx);
}

/* A DNS server that never answers: temperror when lookup_timeout ends the
 * check, long before the resolver's own timeout or the chain's. */
static void test_silent_server(void **state)
{
    struct filter_test_result r;
    int port, fd = nsd_test_silent_socket(&port);
    struct fx fx;
    long ms;

    (void)state;
    assert_true(fd >= 0);
    fx_open_at(&fx, "lookup_timeout = \"300ms\"; timeout = \"3s\";", port, 10000, NULL);
    fx_txn(&fx, "192.0.2.1", "client.spf.test", "a@pass.spf.test");
    ms = filter_test_run(fx.base, fx.s, MAIL, &fx.txn, &r, RUN_MAX_MS);
    assert_int_equal(r.res.symbol_count, 1);
    assert_string_equal(r.res.symbols[0].name, "SPF_TEMPERROR");
    assert_true(ms >= 250 && ms < 2000);
    assert_int_equal(r.res.header_count, 1);
    assert_non_null(strstr(r.res.headers[0].value, "problem=\"DNS timeout for pass.spf.test\";"));
    assert_int_equal(r.res.action, FILTER_ACTION_NONE);
    fx_close(&fx);
    close(fd);
}

static void long_lookups(struct spf_settings *s)
{
    s->lookup_timeout = 30000; /* longer than the chain's timeout: load would refuse it */
    s->threads = 1;
}

/* The chain's timeout cancels a check that waits for DNS: SPF_ERROR (on_error
 * "skip"), and the instance goes away at once, its thread not left waiting. */
static void test_cancelled_check(void **state)
{
    struct filter_test_result r;
    int port, fd = nsd_test_silent_socket(&port);
    struct fx fx;
    long ms, start;

    (void)state;
    assert_true(fd >= 0);
    fx_open_at(&fx, "timeout = \"300ms\"; lookup_timeout = \"200ms\";", port, 10000,
               long_lookups);
    fx_txn(&fx, "192.0.2.1", "client.spf.test", "a@pass.spf.test");
    ms = filter_test_run(fx.base, fx.s, MAIL, &fx.txn, &r, RUN_MAX_MS);
    assert_true(ms >= 250 && ms < 2000);
    assert_int_equal(r.res.symbol_count, 1);
    assert_string_equal(r.res.symbols[0].name, "SPF_ERROR");
    assert_int_equal(r.res.header_count, 0);
    /* the one thread is free again: a second check runs (and is cancelled) */
    ms = filter_test_run(fx.base, fx.s, MAIL, &fx.txn, &r, RUN_MAX_MS);
    assert_true(ms < 2000);
    assert_string_equal(r.res.symbols[r.res.symbol_count - 1].name, "SPF_ERROR");
    start = now_ms();
    fx_close(&fx);
    assert_true(now_ms() - start < 1000);
    close(fd);
}

/* More sessions than threads, all at once: each gets its own answer. */
static void test_parallel(void **state)
{
    enum { N = 8 };
    static const char *const senders[] = {"a@pass.spf.test", "a@fail.spf.test",
                                          "a@soft.spf.test", "a@inc.spf.test"};
    static const char *const want[] = {"SPF_PASS", "SPF_FAIL", "SPF_SOFTFAIL", "SPF_PASS"};
    struct chain_session *s[N];
    struct filter_test_result r[N];
    struct filter_txn txn[N];
    struct fx fx;

    (void)state;
    if (!have_nsd)
        skip();
    fx_open(&fx, "threads = 2;");
    fx_txn(&fx, "192.0.2.1", "client.spf.test", "");
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        txn[i] = fx.txn;
        txn[i].sender = senders[i % 4];
        assert_non_null(s[i] = chain_session_new(fx.ft.chain));
        assert_non_null(chain_run(s[i], MAIL, &txn[i], filter_test_done, &r[i]));
    }
    filter_test_wait(fx.base, r, N, RUN_MAX_MS);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].res.symbol_count, 1);
        assert_string_equal(r[i].res.symbols[0].name, want[i % 4]);
        chain_session_free(&s[i]);
    }
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_names),          cmocka_unit_test(test_domain_ok),
        cmocka_unit_test(test_clean_text),     cmocka_unit_test(test_reverse_names),
        cmocka_unit_test(test_received_value), cmocka_unit_test(test_config),
        cmocka_unit_test(test_silent_server),  cmocka_unit_test(test_cancelled_check),
    };
    const struct CMUnitTest nsd_tests[] = {
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_field_text),
        cmocka_unit_test(test_parallel),
    };
    int failed = cmocka_run_group_tests_name("spf", plain_tests, NULL, NULL);

    have_nsd = nsd_test_start(&nsd, zones, sizeof(zones) / sizeof(zones[0]), nsd_why,
                              sizeof(nsd_why)) == 0;
    if (!have_nsd) {
        fprintf(stderr, "test-spf: %s; the checks against DNS are skipped\n", nsd_why);
        return failed != 0 ? 1 : 77;
    }
    failed += cmocka_run_group_tests_name("spf-nsd", nsd_tests, NULL, NULL);
    nsd_test_stop(&nsd);
    return failed != 0 ? 1 : 0;
}
