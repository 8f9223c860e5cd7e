/*
 * test-dnsbl — the dnsbl filter without a DNS server: its names (query
 * names for IPv4 and IPv6, DNSBL_/DNSWL_ symbol names from zones), which
 * answers count (codes, mask, outside 127/8), which recipients are exempt,
 * the filters list of posternd's config (a row per key and per error: bad
 * values are errors that name file and line), and the filter driven through
 * the chain on an event loop: the CONNECT paths that need no answer
 * (allow_networks, trusted, authenticated, ipv6 = no, a DNS server that
 * refuses) and the RCPT-stage reject from the symbols CONNECT left.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/dnsbl.h"
#include "gateway/server-config.h"
#include "tests/unit/config-test.h"
#include "tests/unit/filter-test.h"

#define RUN_MAX_MS 5000

static const struct {
    const char *addr, *zone, *name;
} names[] = {
    {.addr = "127.0.0.2", .zone = "bl.test", .name = "2.0.0.127.bl.test"},
    {.addr = "192.0.2.10", .zone = "zen.example.org", .name = "10.2.0.192.zen.example.org"},
    {.addr = "::ffff:192.0.2.10", .zone = "bl.test", .name = "10.2.0.192.bl.test"},
    {.addr = "2001:db8::1",
     .zone = "bl.test",
     .name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"},
    {.addr = "::1",
     .zone = "bl.test",
     .name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test"},
};

static void test_query_names(void **state)
{
    char out[DNS_NAME_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct netaddr a;
        assert_int_equal(netaddr_parse(names[i].addr, &a), 0);
        assert_int_equal(dnsbl_query_name(&a, names[i].zone, out, sizeof(out)), 0);
        assert_string_equal(out, names[i].name);
    }
    struct netaddr a;
    assert_int_equal(netaddr_parse("127.0.0.2", &a), 0);
    assert_int_equal(dnsbl_query_name(&a, "bl.test", out, 10), -1);
}

static void test_symbol_names(void **state)
{
    static const struct {
        const char *prefix, *zone, *symbol;
    } rows[] = {
        {.prefix = "DNSBL_", .zone = "bl.test", .symbol = "DNSBL_BL_TEST"},
        {.prefix = "DNSBL_", .zone = "zen.spamhaus.org", .symbol = "DNSBL_ZEN_SPAMHAUS_ORG"},
        {.prefix = "DNSBL_", .zone = "b-l.x9", .symbol = "DNSBL_B_L_X9"},
        {.prefix = "DNSWL_", .zone = "list.dnswl.org", .symbol = "DNSWL_LIST_DNSWL_ORG"},
    };
    char out[FILTER_SYMBOL_NAME_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        dnsbl_symbol_name(rows[i].prefix, rows[i].zone, out, sizeof(out));
        assert_string_equal(out, rows[i].symbol);
    }
    dnsbl_symbol_name("DNSBL_",
                      "a.very.long.zone.name.that.does.not.fit.in.a.symbol.name.example.org", out,
                      sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
}

#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((c) << 8) | (d))

static void test_answer_counts(void **state)
{
    static const uint32_t two[] = {IP(127, 0, 0, 2)};
    static const uint32_t two_three[] = {IP(127, 0, 0, 2), IP(127, 0, 0, 3)};
    static const struct {
        uint32_t answer;
        const uint32_t *codes;
        size_t n;
        unsigned mask;
        int counts;
    } rows[] = {
        /* neither codes nor mask: any answer in 127/8 */
        {.answer = IP(127, 0, 0, 2), .counts = 1},
        {.answer = IP(127, 255, 255, 254), .counts = 1},
        /* outside 127/8: never, whatever the filter */
        {.answer = IP(192, 0, 2, 1), .counts = -1},
        {.answer = IP(128, 0, 0, 2), .codes = two, .n = 1, .counts = -1},
        {.answer = IP(10, 0, 0, 4), .mask = 4, .counts = -1},
        /* exact codes */
        {.answer = IP(127, 0, 0, 2), .codes = two, .n = 1, .counts = 1},
        {.answer = IP(127, 0, 0, 4), .codes = two, .n = 1, .counts = 0},
        {.answer = IP(127, 0, 0, 3), .codes = two_three, .n = 2, .counts = 1},
        {.answer = IP(127, 1, 0, 2), .codes = two, .n = 1, .counts = 0},
        /* mask on the last octet */
        {.answer = IP(127, 0, 0, 4), .mask = 4, .counts = 1},
        {.answer = IP(127, 0, 0, 12), .mask = 4, .counts = 1},
        {.answer = IP(127, 0, 0, 2), .mask = 4, .counts = 0},
        {.answer = IP(127, 0, 0, 8), .mask = 0x0c, .counts = 1},
        {.answer = IP(127, 4, 0, 0), .mask = 4, .counts = 0},
        /* both: either one */
        {.answer = IP(127, 0, 0, 2), .codes = two, .n = 1, .mask = 4, .counts = 1},
        {.answer = IP(127, 0, 0, 4), .codes = two, .n = 1, .mask = 4, .counts = 1},
        {.answer = IP(127, 0, 0, 8), .codes = two, .n = 1, .mask = 4, .counts = 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int got = dnsbl_answer_counts(rows[i].answer, rows[i].codes, rows[i].n, rows[i].mask);
        if (got != rows[i].counts)
            fail_msg("row %zu: %d, expected %d", i, got, rows[i].counts);
    }
}

static void test_rcpt_exempt(void **state)
{
    static const char *const pm[] = {"postmaster"};
    static const char *const several[] = {"postmaster", "abuse@example.org"};
    static const char *const forms[] = {"hostmaster@", "@Partner.Example"};
    static const struct {
        const char *const *exempt;
        size_t n;
        const char *rcpt;
        bool exempt_r;
    } rows[] = {
        {.exempt = pm, .n = 1, .rcpt = "postmaster@example.test", .exempt_r = true},
        {.exempt = pm, .n = 1, .rcpt = "PostMaster@Example.TEST", .exempt_r = true},
        {.exempt = pm, .n = 1, .rcpt = "Postmaster", .exempt_r = true},
        {.exempt = pm, .n = 1, .rcpt = "postmasters@example.test", .exempt_r = false},
        {.exempt = pm, .n = 1, .rcpt = "postmaste@example.test", .exempt_r = false},
        {.exempt = pm, .n = 1, .rcpt = "user@postmaster", .exempt_r = false},
        {.exempt = pm, .n = 1, .rcpt = "\"postmaster@x\"@example.test", .exempt_r = false},
        {.exempt = pm, .n = 0, .rcpt = "postmaster@example.test", .exempt_r = false},
        {.exempt = several, .n = 2, .rcpt = "ABUSE@example.org", .exempt_r = true},
        {.exempt = several, .n = 2, .rcpt = "abuse@example.test", .exempt_r = false},
        {.exempt = several, .n = 2, .rcpt = "user@example.org", .exempt_r = false},
        /* "local@" = a local part at any domain, "@domain" = that whole domain */
        {.exempt = forms, .n = 2, .rcpt = "HostMaster@example.test", .exempt_r = true},
        {.exempt = forms, .n = 2, .rcpt = "hostmaster", .exempt_r = true},
        {.exempt = forms, .n = 2, .rcpt = "hostmasters@example.test", .exempt_r = false},
        {.exempt = forms, .n = 2, .rcpt = "anyone@partner.example", .exempt_r = true},
        {.exempt = forms, .n = 2, .rcpt = "anyone@sub.partner.example", .exempt_r = false},
        {.exempt = forms, .n = 2, .rcpt = "partner.example", .exempt_r = false},
        {.exempt = forms, .n = 2, .rcpt = "postmaster@example.test", .exempt_r = false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (dnsbl_rcpt_exempt(rows[i].exempt, rows[i].n, rows[i].rcpt) != rows[i].exempt_r)
            fail_msg("row %zu: %s", i, rows[i].rcpt);
    }
}

/* ---- config ---- */

#define DNSBL(keys) "filters = ( { name = \"dnsbl\"; " keys " } );"
#define LIST(keys) "lists = ( { zone = \"bl.test\"; " keys " } );"

static void check_row0(const struct postern_config *cfg);
static void check_defaults(const struct postern_config *cfg);

static const struct config_test_row configs[] = {
    /* 0: checked key by key in check_row0 */
    {.filters = DNSBL("lists = ( { zone = \"bl.test\"; score = 3.5; codes = [\"127.0.0.2\"]; },"
                      " { zone = \"wl.test\"; type = \"allow\"; score = -5; accept = true; "
                      "ipv6 = false; mask = 0x0c; } ); reject_score = 3; reject_stage = "
                      "\"connect\"; reject_exempt_recipients = [\"postmaster\", "
                      "\"abuse@example.org\"]; allow_networks = [\"192.0.2.0/24\", "
                      "\"2001:db8::/32\"]; skip_authenticated = false; skip_trusted = false;"),
     .check = check_row0},
    /* 1: the defaults, checked in check_defaults */
    {.filters = DNSBL(LIST("")), .check = check_defaults},
    {.filters = DNSBL("lists = ( { zone = \"bl.test\"; bogus = 1; } );"),
     .error = ":2: unknown key \"bogus\""},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"bl.test\"; } );\n"
                " frobnicate = 1; } );",
     .error = ":3: unknown key \"frobnicate\""},
    {.filters = "filters = ( { name = \"nosuchfilter\"; } );", .error = "unknown filter \"nosuchfilter\""},
    {.filters = DNSBL("lists = ( { score = 1.0; } );"), .error = "dnsbl list without a zone"},
    {.filters = DNSBL(LIST("score = \"lots\";")), .error = "score: invalid number"},
    {.filters = DNSBL("on_error = \"maybe\"; " LIST("")), .error = "on_error: unknown value"},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"x\"; } ); },\n"
                "  { name = \"dnsbl\"; lists = ( { zone = \"y\"; } ); } );",
     .error = ":3: filter id \"dnsbl\" used twice"},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"x\"; } ); },\n"
                "  { name = \"dnsbl\"; id = \"dnswl\"; lists = ( { zone = \"y\"; } ); } );"},
    {.filters = DNSBL("lists = ();"), .error = "dnsbl: lists must be a list"},
    {.filters = DNSBL(""), .error = "dnsbl: lists must be a list"},
    /* reject_stage */
    {.filters = DNSBL(LIST("") " reject_stage = \"rcpt\";")},
    {.filters = "filters = ( { name = \"dnsbl\"; " LIST("") "\n reject_stage = \"data\"; } );",
     .error = ":3: reject_stage: unknown value \"data\""},
    /* reject_exempt_recipients */
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = [];")},
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = \"postmaster\";")},
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = [\"abuse@\", \"@example.org\","
                               " \"Abuse@Example.Org\"];")},
    {.filters = "filters = ( { name = \"dnsbl\"; " LIST("") "\n"
                " reject_exempt_recipients = [\"postmaster\", \"@\"]; } );",
     .error = ":3: dnsbl: reject_exempt_recipients: \"@\" is not \"local\", \"local@\""},
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = [\"\"];"), .error = "\"\" is not"},
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = [\"<postmaster>\"];"),
     .error = "\"<postmaster>\" is not"},
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = [\"post master\"];"),
     .error = "\"post master\" is not"},
    {.filters = DNSBL(LIST("") " reject_exempt_recipients = [1];"),
     .error = "reject_exempt_recipients: every element must be a string"},
    /* allow_networks */
    {.filters = DNSBL("allow_networks = [\"10.0.0.0/8\"];")}, /* networks only, no lists */
    {.filters = "filters = ( { name = \"dnsbl\"; " LIST("") "\n"
                " allow_networks = [\"10.0.0.0/8\", \"10.1.2.3/33\"]; } );",
     .error = ":3: dnsbl: allow_networks: \"10.1.2.3/33\": bad prefix length"},
    {.filters = DNSBL(LIST("") " allow_networks = [\"10.0.0.1/8\"];"),
     .error = "allow_networks: \"10.0.0.1/8\""},
    {.filters = DNSBL(LIST("") " allow_networks = [\"example.org\"];"),
     .error = "allow_networks: \"example.org\": bad network address"},
    /* skip_authenticated, skip_trusted */
    {.filters = DNSBL(LIST("") " skip_authenticated = \"perhaps\";"),
     .error = "skip_authenticated:"},
    {.filters = DNSBL(LIST("") " skip_trusted = 2;"), .error = "skip_trusted:"},
    /* type, accept */
    {.filters = DNSBL(LIST("type = \"allow\"; accept = false;"))},
    {.filters = "filters = ( { name = \"dnsbl\";\n"
                " lists = ( { zone = \"bl.test\"; type = \"white\"; } ); } );",
     .error = ":3: type: unknown value \"white\""},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = (\n"
                " { zone = \"bl.test\";\n accept = true; } ); } );",
     .error = ":4: dnsbl: accept = true needs type = \"allow\""},
    /* ipv6 */
    {.filters = DNSBL(LIST("ipv6 = \"sometimes\";")), .error = "ipv6:"},
    /* mask */
    {.filters = DNSBL(LIST("mask = 255;"))},
    {.filters = "filters = ( { name = \"dnsbl\";\n lists = ( { zone = \"bl.test\";\n"
                " mask = 256; } ); } );",
     .error = ":4: mask:"},
    {.filters = DNSBL(LIST("mask = -1;")), .error = "mask:"},
    {.filters = DNSBL(LIST("mask = \"four\";")), .error = "mask: invalid"},
    /* codes */
    {.filters = DNSBL(LIST("codes = \"127.0.0.2\";"))},
    {.filters = "filters = ( { name = \"dnsbl\";\n lists = ( { zone = \"bl.test\";\n"
                " codes = [\"127.0.0.2\", \"192.0.2.1\"]; } ); } );",
     .error = ":4: dnsbl: code \"192.0.2.1\" is not an address in 127.0.0.0/8"},
    {.filters = DNSBL(LIST("codes = [\"127.0.0.4/30\"];")), .error = "code \"127.0.0.4/30\""},
    /* two lists of one instance with one symbol name */
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"bl.test\"; },\n"
                " { zone = \"bl-test\"; } ); } );",
     .error = ":3: dnsbl: lists \"bl.test\" and \"bl-test\" both make symbol DNSBL_BL_TEST"},
    /* a block and an allow list of one zone have different symbols */
    {.filters = DNSBL("lists = ( { zone = \"x.test\"; }, { zone = \"x.test\"; type = \"allow\"; "
                      "} );")},
};

static void check_row0(const struct postern_config *cfg)
{
    const struct dnsbl_settings *d;

    assert_int_equal(cfg->filtering.count, 1);
    assert_ptr_equal(cfg->filtering.filters[0].module, &dnsbl_module);
    d = cfg->filtering.filters[0].settings;
    assert_int_equal(d->list_count, 2);
    assert_true(d->lists[0].score == 3.5);
    assert_int_equal(d->lists[0].type, DNSBL_LIST_BLOCK);
    assert_string_equal(d->lists[0].codes.items[0], "127.0.0.2");
    assert_int_equal(d->lists[1].type, DNSBL_LIST_ALLOW);
    assert_true(d->lists[1].score == -5);
    assert_true(d->lists[1].accept);
    assert_false(d->lists[1].ipv6);
    assert_int_equal(d->lists[1].mask, 12);
    assert_true(d->reject_score == 3.0);
    assert_int_equal(d->reject_stage, DNSBL_REJECT_CONNECT);
    assert_int_equal(d->reject_exempt_recipients.count, 2);
    assert_string_equal(d->reject_exempt_recipients.items[1], "abuse@example.org");
    assert_int_equal(d->allow_networks.count, 2);
    assert_string_equal(d->allow_networks.items[1], "2001:db8::/32");
    assert_false(d->skip_authenticated);
    assert_false(d->skip_trusted);
    /* the listener runs every filter by default */
    assert_int_equal(cfg->listeners[0].chain_len, 1);
}

static void check_defaults(const struct postern_config *cfg)
{
    const struct dnsbl_settings *d = cfg->filtering.filters[0].settings;

    assert_int_equal(d->common.timeout, 5000);
    assert_int_equal(d->common.on_error, FILTER_ON_ERROR_SKIP);
    assert_true(d->reject_score == 0);
    assert_int_equal(d->reject_stage, DNSBL_REJECT_RCPT);
    assert_int_equal(d->reject_exempt_recipients.count, 1);
    assert_string_equal(d->reject_exempt_recipients.items[0], "postmaster");
    assert_int_equal(d->allow_networks.count, 0);
    assert_true(d->skip_authenticated);
    assert_true(d->skip_trusted);
    assert_int_equal(d->list_count, 1);
    assert_true(d->lists[0].score == 1);
    assert_int_equal(d->lists[0].type, DNSBL_LIST_BLOCK);
    assert_false(d->lists[0].accept);
    assert_true(d->lists[0].ipv6);
    assert_int_equal(d->lists[0].mask, 0);
    assert_int_equal(d->lists[0].codes.count, 0);
}

static void test_config(void **state)
{
    (void)state;
    config_test_rows(configs, sizeof(configs) / sizeof(configs[0]));
}

/* ---- the filter through the chain ---- */

struct fx {
    struct event_base *base;
    struct dns *dns;
    struct postern_config *cfg;
    struct dnsbl *d;
    struct chain *chain;
    struct chain_session *s;
    struct chain_result res; /* of the last fx_run */
};

/* An instance from filters text, its resolver a closed port (answers
 * "refused" at once). */
static void fx_new(struct fx *fx, const char *filters)
{
    static const char *const ns[] = {"127.0.0.1:9"};
    struct dns_config dc = {.nameservers = ns, .nameserver_count = 1, .timeout_ms = 300,
                            .attempts = 1};
    struct cfg_errors errs = {0};
    char error[256];

    memset(fx, 0, sizeof(*fx));
    fx->base = event_base_new();
    assert_non_null(fx->base);
    assert_int_equal(dns_new(fx->base, &dc, &fx->dns, error, sizeof(error)), 0);
    fx->cfg = config_test_load(filters, &errs);
    if (fx->cfg == NULL)
        fail_msg("%s", errs.count ? errs.msgs[0] : "?");
    assert_int_equal(dnsbl_new(fx->dns, fx->cfg->filtering.filters[0].settings, &fx->d, error,
                               sizeof(error)),
                     0);
    struct chain_link link = {.ops = &dnsbl_filter_ops, .instance = fx->d,
                              .on_error = FILTER_ON_ERROR_SKIP, .timeout_ms = 3000};
    fx->chain = chain_new(fx->base, &link, 1);
    assert_non_null(fx->chain);
    fx->s = chain_session_new(fx->chain);
    assert_non_null(fx->s);
}

static void fx_free(struct fx *fx)
{
    chain_session_free(&fx->s);
    chain_free(&fx->chain);
    dnsbl_free(&fx->d);
    assert_null(fx->d);
    dns_free(&fx->dns);
    postern_config_free(&fx->cfg);
    event_base_free(fx->base);
}

/* Runs one stage to its result (at most RUN_MAX_MS). */
static void fx_run(struct fx *fx, enum filter_stage stage, const struct filter_txn *txn)
{
    static struct filter_test_result r;

    filter_test_run(fx->base, fx->s, stage, txn, &r, RUN_MAX_MS);
    fx->res = r.res;
}

static struct filter_txn txn_for(const char *addr, struct netaddr *a)
{
    assert_int_equal(netaddr_parse(addr, a), 0);
    return (struct filter_txn){.listener = "mx", .client = *a, .client_addr = addr,
                               .client_name = "unknown", .content_fd = -1};
}

static const struct {
    const char *what;
    const char *filters;
    const char *client;
    bool trusted, authenticated;
    enum filter_action action;
    const char *sym0; /* NULL = no symbol */
} connect_rows[] = {
    {.what = "allow_networks: ACCEPT and DNSBL_ALLOWED",
     .filters = DNSBL(LIST("") " allow_networks = [\"192.0.2.0/24\"];"),
     .client = "192.0.2.7", .action = FILTER_ACTION_ACCEPT, .sym0 = "DNSBL_ALLOWED"},
    {.what = "allow_networks, IPv6",
     .filters = DNSBL(LIST("") " allow_networks = [\"2001:db8::/32\"];"),
     .client = "2001:db8::5", .action = FILTER_ACTION_ACCEPT, .sym0 = "DNSBL_ALLOWED"},
    {.what = "allow_networks before trusted",
     .filters = DNSBL(LIST("") " allow_networks = [\"192.0.2.0/24\"];"),
     .client = "192.0.2.7", .trusted = true, .action = FILTER_ACTION_ACCEPT,
     .sym0 = "DNSBL_ALLOWED"},
    {.what = "outside allow_networks: looked up (refused: not listed)",
     .filters = DNSBL(LIST("") " allow_networks = [\"192.0.2.0/24\"];"),
     .client = "198.51.100.7"},
    {.what = "trusted, skip_trusted: nothing",
     .filters = DNSBL(LIST("")), .client = "127.0.0.2", .trusted = true},
    {.what = "authenticated, skip_authenticated: nothing",
     .filters = DNSBL(LIST("")), .client = "127.0.0.2", .authenticated = true},
    {.what = "IPv6 client, every list ipv6 = no",
     .filters = DNSBL(LIST("ipv6 = false;")), .client = "2001:db8::1"},
};

static void test_connect(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(connect_rows) / sizeof(connect_rows[0]); i++) {
        struct fx fx;
        struct netaddr a;
        struct filter_txn txn = txn_for(connect_rows[i].client, &a);

        txn.trusted = connect_rows[i].trusted;
        txn.authenticated = connect_rows[i].authenticated;
        fx_new(&fx, connect_rows[i].filters);
        fx_run(&fx, FILTER_CONNECT, &txn);
        if (fx.res.action != connect_rows[i].action)
            fail_msg("row %zu (%s): action %s", i, connect_rows[i].what,
                     filter_action_name(fx.res.action));
        if (connect_rows[i].sym0 == NULL && fx.res.symbol_count != 0)
            fail_msg("row %zu (%s): symbol %s", i, connect_rows[i].what, fx.res.symbols[0].name);
        if (connect_rows[i].sym0 != NULL &&
            (fx.res.symbol_count != 1 || strcmp(fx.res.symbols[0].name, connect_rows[i].sym0)))
            fail_msg("row %zu (%s): %zu symbols", i, connect_rows[i].what, fx.res.symbol_count);
        assert_true(fx.res.score == 0);
        fx_free(&fx);
    }
}

/* The RCPT stage reads the symbols CONNECT left; here the test gives them. */
#define RCPT_CFG(keys)                                                                            \
    DNSBL("lists = ( { zone = \"bl.test\"; score = 3; }, { zone = \"bl2.test\"; score = 2; },"   \
          " { zone = \"wl.test\"; type = \"allow\"; score = -4; } ); reject_score = 5; " keys)

static const struct {
    const char *what;
    const char *filters;
    struct filter_symbol syms[4];
    const char *rcpt;
    bool trusted, authenticated;
    const char *reject; /* substring of the reply text; NULL = no action */
} rcpt_rows[] = {
    {.what = "two block listings reach the score",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "user@example.test",
     .reject = "Service unavailable; client [127.0.0.2] blocked using bl.test"},
    {.what = "the zone named is the first list listed, in the lists' order",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL2_TEST", .score = 2}, {.name = "DNSBL_BL_TEST", .score = 3}},
     .rcpt = "user@example.test", .reject = "blocked using bl.test"},
    {.what = "below the score", .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}}, .rcpt = "user@example.test"},
    {.what = "an allow listing lowers the sum",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2},
              {.name = "DNSWL_WL_TEST", .score = -4}},
     .rcpt = "user@example.test"},
    {.what = "other filters' symbols do not count",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_OTHER_TEST", .score = 9},
              {.name = "SPF_FAIL", .score = 9}},
     .rcpt = "user@example.test"},
    {.what = "allow listings alone never reject",
     .filters = DNSBL("lists = ( { zone = \"wl.test\"; type = \"allow\"; score = 6; } ); "
                      "reject_score = 5;"),
     .syms = {{.name = "DNSWL_WL_TEST", .score = 6}}, .rcpt = "user@example.test"},
    {.what = "postmaster is exempt by default",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "PostMaster@example.test"},
    {.what = "an empty exempt list exempts nobody",
     .filters = RCPT_CFG("reject_exempt_recipients = [];"),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "postmaster@example.test", .reject = "blocked using bl.test"},
    {.what = "a full address exempt",
     .filters = RCPT_CFG("reject_exempt_recipients = [\"abuse@example.test\"];"),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "abuse@example.test"},
    {.what = "authenticated, skip_authenticated",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "user@example.test", .authenticated = true},
    {.what = "authenticated, skip_authenticated = no",
     .filters = RCPT_CFG("skip_authenticated = false;"),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "user@example.test", .authenticated = true, .reject = "blocked using bl.test"},
    {.what = "trusted, skip_trusted",
     .filters = RCPT_CFG(""),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "user@example.test", .trusted = true},
    {.what = "reject_stage connect: nothing at RCPT",
     .filters = RCPT_CFG("reject_stage = \"connect\";"),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 3}, {.name = "DNSBL_BL2_TEST", .score = 2}},
     .rcpt = "user@example.test"},
    {.what = "reject_score 0: never",
     .filters = DNSBL(LIST("score = 9;")),
     .syms = {{.name = "DNSBL_BL_TEST", .score = 9}}, .rcpt = "user@example.test"},
};

static void test_rcpt(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rcpt_rows) / sizeof(rcpt_rows[0]); i++) {
        struct fx fx;
        struct netaddr a;
        struct filter_txn txn = txn_for("127.0.0.2", &a);
        size_t n = 0;

        while (n < 4 && rcpt_rows[i].syms[n].name[0] != '\0')
            n++;
        txn.symbols = rcpt_rows[i].syms;
        txn.symbol_count = n;
        txn.rcpt = rcpt_rows[i].rcpt;
        txn.sender = "sender@example.org";
        txn.trusted = rcpt_rows[i].trusted;
        txn.authenticated = rcpt_rows[i].authenticated;
        fx_new(&fx, rcpt_rows[i].filters);
        fx_run(&fx, FILTER_RCPT, &txn);
        if (rcpt_rows[i].reject == NULL && fx.res.action != FILTER_ACTION_NONE)
            fail_msg("row %zu (%s): %s %s", i, rcpt_rows[i].what,
                     filter_action_name(fx.res.action), fx.res.reply.text);
        if (rcpt_rows[i].reject != NULL &&
            (fx.res.action != FILTER_ACTION_REJECT || fx.res.reply.code != 554 ||
             strcmp(fx.res.reply.enhanced, "5.7.1") != 0 ||
             strstr(fx.res.reply.text, rcpt_rows[i].reject) == NULL))
            fail_msg("row %zu (%s): %s %u %s", i, rcpt_rows[i].what,
                     filter_action_name(fx.res.action), fx.res.reply.code, fx.res.reply.text);
        assert_int_equal(fx.res.symbol_count, 0); /* RCPT adds none */
        fx_free(&fx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_names),   cmocka_unit_test(test_symbol_names),
        cmocka_unit_test(test_answer_counts), cmocka_unit_test(test_rcpt_exempt),
        cmocka_unit_test(test_config),        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_rcpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
