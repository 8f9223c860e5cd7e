/*
 * test-dmarc — the dmarc filter and its Authentication-Results: the field
 * builder (quoting, comments, the size bound, the no-result form) and the
 * authserv-id parser (CFWS, quoted strings, bad input), the choice of the
 * one DMARC record, the SPF result taken from the spf filter's symbols, the
 * filters.dmarc config (a row per key and per error); and, against a real
 * nsd with DKIM keys and DMARC records (dkim-test.h), a row per case: DKIM
 * or SPF alignment passes (relaxed, and not under adkim=s), an unaligned
 * signature does not, p=reject rejects with 550 5.7.1, p=quarantine
 * quarantines, p=none only adds the symbol, the organizational domain's
 * sp= applies to a subdomain without a record, pct=0 lowers the policy one
 * step, several or broken records are no policy, a missing From:, two
 * From: fields or two addresses are refused (or as bad_from_action says),
 * a silent DNS server is a temporary error (symbol, or 451), outbound mail
 * is not evaluated; and forged Authentication-Results fields claiming our
 * authserv-id are removed with the message edits, last first.
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

#include "filters/dkim-authres.h"
#include "filters/dmarc.h"
#include "filters/edit.h"
#include "tests/unit/config-test.h"
#include "tests/unit/dkim-test.h"

/* ---- Authentication-Results ---- */

/* What filter_call_add_header accepts: printable ASCII, CR LF only as a fold. */
static bool value_ok(const char *v)
{
    if (strlen(v) > FILTER_HEADER_VALUE_MAX)
        return false;
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
            p++;
            continue;
        }
        if ((*p < 32 && *p != '\t') || *p > 126)
            return false;
    }
    return true;
}

static void test_authres_builder(void **state)
{
    struct authres a;
    struct dkim_sig_result r = {.outcome = DKIM_OUTCOME_FAIL,
                                .domain = "example.com",
                                .selector = "sel",
                                .b = "ab/cd+ef",
                                .why = "body hash mismatch"};
    struct authres_prop spf = {"smtp.mailfrom", "example.org"};
    struct authres_prop odd[] = {{"header.from", "a\"b\\c\x01 d"}, {"header.x", ""},
                                 {"header.y", NULL}};

    (void)state;
    authres_init(&a, "mx.postern.test");
    assert_string_equal(authres_value(&a), "mx.postern.test; none");
    authres_init(&a, "mx.postern.test");
    authres_add(&a, "spf", "pass", NULL, &spf, 1);
    authres_add_dkim(&a, &r);
    authres_add(&a, "dmarc", "fail", "p=reject (sic) dis=\\none", odd, 3);
    assert_string_equal(authres_value(&a),
                        "mx.postern.test;\r\n\tspf=pass smtp.mailfrom=example.org"
                        ";\r\n\tdkim=fail (body hash mismatch) header.d=example.com "
                        "header.s=sel header.b=\"ab/cd+ef\""
                        ";\r\n\tdmarc=fail (p=reject sic dis=none) header.from=\"a\\\"b\\\\c d\"");
    assert_true(value_ok(authres_value(&a)));
    /* a pass without why, without selector and b= */
    struct dkim_sig_result p = {.outcome = DKIM_OUTCOME_PASS, .domain = "example.org"};
    authres_init(&a, "mx.postern.test");
    authres_add_dkim(&a, &p);
    assert_string_equal(authres_value(&a), "mx.postern.test;\r\n\tdkim=pass header.d=example.org");
    /* many results: whole resinfos only, within the bound */
    struct dkim_sig_result big = r;
    memset(big.why, 'w', sizeof(big.why) - 1);
    big.why[sizeof(big.why) - 1] = '\0';
    authres_init(&a, "mx.postern.test");
    for (int i = 0; i < 100; i++)
        authres_add_dkim(&a, &big);
    assert_true(a.results > 10 && a.results < 100);
    assert_true(value_ok(authres_value(&a)));
    assert_non_null(strstr(authres_value(&a) + a.len - 40, "header.b=\"ab/cd+ef\""));
}

static void test_authserv_id(void **state)
{
    static const struct {
        const char *value, *id; /* id NULL: none */
    } rows[] = {
        {"mx.postern.test; spf=pass", "mx.postern.test"},
        {"mx.postern.test;", "mx.postern.test"},
        {"MX.Postern.Test 1; none", "MX.Postern.Test"},
        {"  \t(a comment (nested \\) )) mx.postern.test; none", "mx.postern.test"},
        {"(c1)(c2) x.example;", "x.example"},
        {"\"quoted id\"; none", "quoted id"},
        {"\"esc\\\"aped\"; none", "esc\"aped"},
        {"\"unterminated", NULL},
        {"(unclosed comment mx.postern.test", NULL},
        {"(escaped close\\) mx.postern.test", NULL},
        {"", NULL},
        {"; spf=pass", NULL},
        {"\"\"; none", NULL},
        {"a123456789012345678901234567890123456789012345678901234567890123456789", NULL},
    };
    char id[64];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = authres_authserv_id(rows[i].value, id, sizeof(id));
        if (rows[i].id == NULL ? rc != -1 : rc != 0 || strcmp(id, rows[i].id) != 0)
            fail_msg("row %zu: %d \"%s\"", i, rc, rc == 0 ? id : "");
    }
    assert_int_equal(authres_authserv_id("abc", id, 3), -1);
    assert_int_equal(authres_authserv_id("abc", id, 4), 0);
}

/* ---- records and SPF ---- */

static void test_pick_record(void **state)
{
    static const char *const one[] = {"v=spf1 -all", "v=DMARC1; p=reject"};
    static const char *const spaced[] = {"  v=dmarc1 ;p=none"};
    static const char *const two[] = {"v=DMARC1; p=none", "v=DMARC1; p=reject"};
    static const char *const none[] = {"v=DMARC10; p=none", "v=spf1", "p=reject; v=DMARC1"};
    static const char *const bare[] = {"v=DMARC1"};

    (void)state;
    assert_int_equal(dmarc_pick_record(one, 2), 1);
    assert_int_equal(dmarc_pick_record(spaced, 1), 0);
    assert_int_equal(dmarc_pick_record(two, 2), -2);
    assert_int_equal(dmarc_pick_record(none, 3), -1);
    assert_int_equal(dmarc_pick_record(bare, 1), 0);
    assert_int_equal(dmarc_pick_record(NULL, 0), -1);
}

static void test_spf_result(void **state)
{
    static const struct {
        struct filter_symbol syms[3];
        const char *fallback;
        int found;
        const char *result, *domain;
    } rows[] = {
        {{{.name = "SPF_PASS", .text = "example.org"}}, "x.example", 1, "pass", "example.org"},
        {{{.name = "SPF_FAIL", .text = "domain=example.org"}}, NULL, 1, "fail", "example.org"},
        {{{.name = "SPF_SOFTFAIL", .text = ""}}, "sender.example", 1, "softfail",
         "sender.example"},
        {{{.name = "SPF_NEUTRAL", .text = "b@d"}}, NULL, 1, "neutral", ""},
        {{{.name = "DNSBL_X"}, {.name = "SPF_HELO_PASS", .text = "helo.example"},
          {.name = "SPF_TEMPERROR", .text = "example.org"}},
         NULL, 1, "temperror", "example.org"},
        {{{.name = "SPF_PERMERROR", .text = "example.org; x"}}, NULL, 1, "permerror",
         "example.org"},
        {{{.name = "SPF_NONE", .text = "example.org"}}, NULL, 1, "none", "example.org"},
        {{{.name = "SPF_ERROR", .text = "timeout"}}, NULL, 0, NULL, NULL},
        {{{.name = "SPF_HELO_FAIL", .text = "helo.example"}}, NULL, 0, NULL, NULL},
        {{{.name = "DKIM_VALID", .text = "d=example.org"}}, NULL, 0, NULL, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t n = 0;
        const char *result = NULL;
        char domain[DKIM_DOMAIN_MAX + 1];
        while (n < 3 && rows[i].syms[n].name[0] != '\0')
            n++;
        int found = dmarc_spf_result(rows[i].syms, n, rows[i].fallback, &result, domain,
                                     sizeof(domain));
        if (found != rows[i].found ||
            (found && (strcmp(result, rows[i].result) != 0 ||
                       strcmp(domain, rows[i].domain) != 0)))
            fail_msg("row %zu: %d %s %s", i, found, found ? result : "", found ? domain : "");
    }
}

/* ---- config ---- */

static void test_config(void **state)
{
    static const struct {
        const char *filters;
        const char *error;
    } rows[] = {
        {.filters = "filters = ( { name = \"dmarc\"; } );"},
        {.filters = "filters = ( { name = \"dmarc\"; reject_action = \"quarantine\"; quarantine_action ="
         " \"none\"; bad_from_action = \"none\"; temperror_action = \"tempfail\"; honour_pct ="
         " false; skip_outbound = false; authres = false; remove_forged_authres = false;"
         " score_pass = -1; score_fail = 5; score_none = 0.5; score_temperror = 0.25;"
         " score_bad_from = 4; max_signatures = 2; min_key_bits = 2048; max_header_size ="
         " \"1M\"; threads = 3; } );"},
        {.filters = "filters = ( { name = \"dmarc\";\n reject_action = \"drop\"; } );",
         .error = ":3: reject_action: unknown value \"drop\""},
        {.filters = "filters = ( { name = \"dmarc\"; quarantine_action = \"hold\"; } );",
         .error = "quarantine_action: unknown value"},
        {.filters = "filters = ( { name = \"dmarc\"; bad_from_action = 1; } );", .error = "bad_from_action"},
        {.filters = "filters = ( { name = \"dmarc\"; temperror_action = \"reject\"; } );",
         .error = "temperror_action: unknown value"},
        {.filters = "filters = ( { name = \"dmarc\";\n public_suffix_list = \"/nonexistent/psl.dat\"; } );",
         .error = ":3: dmarc: public_suffix_list \"/nonexistent/psl.dat\": No such file"},
        {.filters = "filters = ( { name = \"dmarc\"; honour_pct = \"maybe\"; } );", .error = "honour_pct"},
        {.filters = "filters = ( { name = \"dmarc\"; score_fail = \"lots\"; } );", .error = "score_fail"},
        {.filters = "filters = ( { name = \"dmarc\"; max_header_size = 100; } );", .error = "max_header_size"},
        {.filters = "filters = ( { name = \"dmarc\"; keys = (); } );", .error = "unknown key \"keys\""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(rows[i].filters, &errs);
        config_test_expect(i, cfg, &errs, rows[i].error);
        if (i == 0) {
            const struct dmarc_settings *d = cfg->filtering.filters[0].settings;
            assert_int_equal(d->common.on_error, FILTER_ON_ERROR_SKIP);
            assert_int_equal(d->common.timeout, 10000);
            assert_int_equal(d->reject_action, DMARC_DISP_REJECT);
            assert_int_equal(d->quarantine_action, DMARC_DISP_QUARANTINE);
            assert_int_equal(d->bad_from_action, DMARC_DISP_REJECT);
            assert_int_equal(d->temperror_action, DMARC_TEMP_NONE);
            assert_true(d->honour_pct && d->skip_outbound && d->authres);
            assert_true(d->remove_forged_authres);
            assert_true(d->score_pass == -0.5 && d->score_fail == 2 && d->score_none == 0);
            assert_true(d->score_temperror == 0 && d->score_bad_from == 3);
            assert_string_equal(d->public_suffix_list,
                                "/usr/share/publicsuffix/public_suffix_list.dat");
            assert_int_equal(d->max_signatures, 8);
            assert_int_equal(d->threads, 2);
        }
        if (i == 1) {
            const struct dmarc_settings *d = cfg->filtering.filters[0].settings;
            assert_int_equal(d->reject_action, DMARC_DISP_QUARANTINE);
            assert_int_equal(d->quarantine_action, DMARC_DISP_NONE);
            assert_int_equal(d->bad_from_action, DMARC_DISP_NONE);
            assert_int_equal(d->temperror_action, DMARC_TEMP_TEMPFAIL);
            assert_false(d->honour_pct || d->skip_outbound || d->authres);
            assert_false(d->remove_forged_authres);
            assert_true(d->score_bad_from == 4 && d->score_fail == 5);
            assert_int_equal(d->max_header_size, 1024 * 1024);
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

/* ---- the filter against nsd ---- */

static char *sign_with(struct dfx *fx, const char *domain, const char *content)
{
    char keys[512], sender[300];

    snprintf(keys, sizeof(keys),
             "sign_by = \"sender\"; keys = ( { domain = \"%s\"; selector = \"sel\";"
             " key_file = \"%s\"; } );",
             domain, fx->key);
    snprintf(sender, sizeof(sender), "bounce@%s", domain);
    return dfx_sign(fx, keys, content, sender);
}

static const struct row {
    const char *what;
    const char *keys;   /* more keys of the dmarc group */
    const char *from;   /* the From: value, NULL: none */
    const char *fields; /* more header fields */
    const char *sign;   /* NULL, or the domain that signs */
    const char *spf, *spf_text;
    const char *sender, *helo;
    bool silent, outbound;
    const char *symbol, *text; /* NULL: no DMARC_ symbol */
    enum filter_action action;
    unsigned code;
    const char *ar1, *ar2; /* in Authentication-Results; "-": no field */
} rows[] = {
    {.what = "aligned DKIM passes", .from = "Alice <alice@example.com>", .sign = "example.com",
     .symbol = "DMARC_PASS", .text = "example.com",
     .ar1 = "dkim=pass header.d=example.com header.s=sel header.b=",
     .ar2 = ";\r\n\tdmarc=pass (p=reject dis=none) header.from=example.com"},
    {.what = "p=reject, SPF fail, no DKIM: 550", .from = "alice@example.com",
     .spf = "SPF_FAIL", .spf_text = "example.com", .symbol = "DMARC_FAIL",
     .text = "example.com policy=reject", .action = FILTER_ACTION_REJECT, .code = 550,
     .ar1 = "mx.postern.test;\r\n\tspf=fail smtp.mailfrom=example.com;\r\n\tdkim=none;",
     .ar2 = "dmarc=fail (p=reject dis=reject) header.from=example.com"},
    {.what = "aligned SPF passes", .from = "alice@example.com", .spf = "SPF_PASS",
     .spf_text = "example.com", .symbol = "DMARC_PASS", .text = "example.com"},
    {.what = "SPF of a subdomain aligns (relaxed)", .from = "alice@example.com",
     .spf = "SPF_PASS", .spf_text = "domain=mail.example.com", .symbol = "DMARC_PASS"},
    {.what = "SPF of another domain does not align", .from = "alice@example.com",
     .spf = "SPF_PASS", .spf_text = "example.org", .symbol = "DMARC_FAIL",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "adkim=s: the parent's signature does not align", .from = "a@strict.example.com",
     .sign = "example.com", .symbol = "DMARC_FAIL", .text = "strict.example.com policy=reject",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "aspf=s: the parent's SPF pass does not align", .from = "a@strict.example.com",
     .spf = "SPF_PASS", .spf_text = "example.com", .symbol = "DMARC_FAIL",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "another domain's valid signature does not align", .from = "alice@example.com",
     .sign = "example.org", .symbol = "DMARC_FAIL", .text = "example.com policy=reject",
     .action = FILTER_ACTION_REJECT, .code = 550,
     .ar1 = "dkim=pass header.d=example.org header.s=sel"},
    {.what = "p=quarantine", .from = "bob@example.org", .symbol = "DMARC_FAIL",
     .text = "example.org policy=quarantine", .action = FILTER_ACTION_QUARANTINE,
     .ar1 = "dmarc=fail (p=quarantine dis=quarantine) header.from=example.org"},
    {.what = "p=none: the symbol only", .from = "x@monitor.example.net", .symbol = "DMARC_FAIL",
     .text = "monitor.example.net policy=none"},
    {.what = "no record", .from = "x@example.net", .symbol = "DMARC_NONE",
     .text = "example.net", .ar1 = "dmarc=none header.from=example.net"},
    {.what = "the organizational domain's sp=", .from = "x@sub.example.com",
     .symbol = "DMARC_FAIL", .text = "sub.example.com policy=quarantine",
     .action = FILTER_ACTION_QUARANTINE},
    {.what = "pct=0: one step weaker", .from = "x@pct.example.com", .symbol = "DMARC_FAIL",
     .text = "pct.example.com policy=reject pct=0 applied=quarantine",
     .action = FILTER_ACTION_QUARANTINE, .ar1 = "(p=reject dis=quarantine)"},
    {.what = "honour_pct = no", .keys = "honour_pct = false;", .from = "x@pct.example.com",
     .symbol = "DMARC_FAIL", .text = "policy=reject", .action = FILTER_ACTION_REJECT,
     .code = 550},
    {.what = "several records: no policy", .from = "x@multi.example.com",
     .symbol = "DMARC_NONE", .text = "multi.example.com: several DMARC records"},
    {.what = "a record that does not parse: no policy", .from = "x@bad.example.com",
     .symbol = "DMARC_NONE", .text = "bad.example.com: bad record"},
    {.what = "reject_action quarantine", .keys = "reject_action = \"quarantine\";",
     .from = "alice@example.com", .symbol = "DMARC_FAIL", .action = FILTER_ACTION_QUARANTINE},
    {.what = "reject_action none", .keys = "reject_action = \"none\";",
     .from = "alice@example.com", .symbol = "DMARC_FAIL"},
    {.what = "quarantine_action reject", .keys = "quarantine_action = \"reject\";",
     .from = "bob@example.org", .symbol = "DMARC_FAIL", .action = FILTER_ACTION_REJECT,
     .code = 550},
    {.what = "no From:", .symbol = "DMARC_BAD_FROM", .text = "no From: field",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "two From: fields", .from = "a@example.com", .fields = "From: b@example.com\r\n",
     .symbol = "DMARC_BAD_FROM", .text = "more than one From: field",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "two From: addresses", .from = "a@example.com, b@example.org",
     .symbol = "DMARC_BAD_FROM", .text = "more than one From: address",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "bad_from_action none", .keys = "bad_from_action = \"none\";",
     .symbol = "DMARC_BAD_FROM", .text = "no From: field",
     .ar1 = "dmarc=permerror (no From: field)"},
    {.what = "bad_from_action quarantine", .keys = "bad_from_action = \"quarantine\";",
     .from = "garbage", .symbol = "DMARC_BAD_FROM", .text = "without a usable domain",
     .action = FILTER_ACTION_QUARANTINE},
    {.what = "a silent DNS server: temperror", .from = "alice@example.com", .silent = true,
     .symbol = "DMARC_TEMPERROR", .text = "example.com: tempfail",
     .ar1 = "dmarc=temperror header.from=example.com"},
    {.what = "temperror_action tempfail", .keys = "temperror_action = \"tempfail\";",
     .from = "alice@example.com", .silent = true, .symbol = "DMARC_TEMPERROR",
     .action = FILTER_ACTION_TEMPFAIL, .code = 451},
    {.what = "outbound mail is not evaluated", .from = "alice@example.com", .outbound = true,
     .ar1 = "-"},
    {.what = "outbound, skip_outbound = no", .keys = "skip_outbound = false;",
     .from = "alice@example.com", .outbound = true, .symbol = "DMARC_FAIL",
     .action = FILTER_ACTION_REJECT, .code = 550},
    {.what = "authres = no", .keys = "authres = false;", .from = "alice@example.com",
     .sign = "example.com", .symbol = "DMARC_PASS", .ar1 = "-"},
    {.what = "a null sender's SPF is the HELO name's", .from = "alice@example.com",
     .sender = "", .helo = "mail.example.com", .spf = "SPF_PASS", .spf_text = "",
     .symbol = "DMARC_PASS", .ar1 = "spf=pass smtp.helo=mail.example.com"},
};

static void check_row(size_t i, const struct dfx_run *run)
{
    const struct row *w = &rows[i];
    const struct chain_result *res = &run->r.res;
    const struct filter_symbol *s = w->symbol != NULL ? dfx_symbol(res, w->symbol, 0) : NULL;
    const char *ar = dfx_header(res, "Authentication-Results");

    if (w->symbol != NULL && (s == NULL || (w->text != NULL && !strstr(s->text, w->text))))
        fail_msg("row %zu (%s): %s", i, w->what, dfx_symbols_text(res));
    if (w->symbol == NULL) {
        for (size_t j = 0; j < res->symbol_count; j++)
            if (strncmp(res->symbols[j].name, "DMARC_", 6) == 0)
                fail_msg("row %zu (%s): %s", i, w->what, dfx_symbols_text(res));
    }
    if (res->action != w->action ||
        (w->code != 0 && (res->reply.code != w->code ||
                          strcmp(res->reply.enhanced, w->code == 550 ? "5.7.1" : "4.7.1"))))
        fail_msg("row %zu (%s): %s %u %s %s", i, w->what, filter_action_name(res->action),
                 res->reply.code, res->reply.enhanced, res->reply.text);
    if (w->code == 550 && w->symbol != NULL && strcmp(w->symbol, "DMARC_FAIL") == 0 &&
        strstr(res->reply.text, "DMARC policy of") == NULL)
        fail_msg("row %zu (%s): reply %s", i, w->what, res->reply.text);
    if (w->ar1 != NULL && strcmp(w->ar1, "-") == 0) {
        if (ar != NULL)
            fail_msg("row %zu (%s): Authentication-Results %s", i, w->what, ar);
        return;
    }
    if (ar == NULL || strncmp(ar, DFX_HOSTNAME ";", sizeof(DFX_HOSTNAME)) != 0 ||
        (w->ar1 != NULL && strstr(ar, w->ar1) == NULL) ||
        (w->ar2 != NULL && strstr(ar, w->ar2) == NULL))
        fail_msg("row %zu (%s): Authentication-Results %s", i, w->what, ar != NULL ? ar : "-");
}

static void test_rows(void **state)
{
    struct dfx *fx = *state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *w = &rows[i];
        char filters[512], *msg = dfx_message(w->from, w->fields != NULL ? w->fields : "",
                                               "Hello\r\n");
        struct filter_symbol spf = {.score = 0};
        struct dfx_txn t = {.direction = w->outbound ? FILTER_OUTBOUND : FILTER_INBOUND,
                            .sender = w->sender, .helo = w->helo};
        struct dfx_run run;

        if (w->sign != NULL) {
            char *signed_msg = sign_with(fx, w->sign, msg);
            free(msg);
            msg = signed_msg;
        }
        if (w->spf != NULL) {
            snprintf(spf.name, sizeof(spf.name), "%s", w->spf);
            snprintf(spf.text, sizeof(spf.text), "%s", w->spf_text);
            t.symbols = &spf;
            t.symbol_count = 1;
        }
        snprintf(filters, sizeof(filters), "filters = ( { name = \"dmarc\"; %s } );",
                 w->keys != NULL ? w->keys : "");
        dfx_open(fx, &run, filters, w->silent);
        dfx_eom(fx, &run, msg, &t);
        check_row(i, &run);
        dfx_close(&run);
        free(msg);
    }
}

/* Forged Authentication-Results: the fields that claim our authserv-id
 * (any case, after comments, quoted) are removed, the others kept; the
 * edits ask for the last first. Outbound mail too. */
static void test_forged(void **state)
{
    struct dfx *fx = *state;
    char *msg = dfx_message("alice@example.com",
                            "Authentication-Results: mx.postern.test; dkim=pass\r\n"
                            "Authentication-Results: other.example; spf=pass\r\n"
                            "Authentication-Results: (forged)\r\n \"MX.Postern.Test\"; none\r\n"
                            "Authentication-Results: mx.postern.test.evil; none\r\n",
                            "Hello\r\n");
    char *signed_msg = sign_with(fx, "example.com", msg);
    struct dfx_txn t = {.direction = FILTER_INBOUND};
    struct dfx_run run;
    const struct filter_edits *e;
    const struct filter_edit *ed;

    for (int pass = 0; pass < 3; pass++) {
        t.direction = pass == 1 ? FILTER_OUTBOUND : FILTER_INBOUND;
        dfx_open(fx, &run,
                 pass < 2 ? "filters = ( { name = \"dmarc\"; } );"
                          : "filters = ( { name = \"dmarc\"; remove_forged_authres = false; } );",
                 false);
        dfx_eom(fx, &run, signed_msg, &t);
        e = run.r.res.edits;
        if (pass == 2) {
            assert_true(e == NULL || filter_edits_count(e) == 0);
            assert_null(dfx_symbol(&run.r.res, "DMARC_FORGED_AUTHRES", 0));
            dfx_close(&run);
            continue;
        }
        if (e == NULL || filter_edits_count(e) != 2)
            fail_msg("pass %d: %zu edits; %s", pass, e != NULL ? filter_edits_count(e) : 0,
                     dfx_symbols_text(&run.r.res));
        ed = filter_edits_at(e, 0);
        assert_int_equal(ed->kind, FILTER_EDIT_CHANGE_HEADER);
        assert_string_equal(ed->name, "Authentication-Results");
        assert_int_equal(ed->index, 3);
        assert_null(ed->value);
        ed = filter_edits_at(e, 1);
        assert_int_equal(ed->index, 1);
        assert_null(ed->value);
        assert_non_null(dfx_symbol(&run.r.res, "DMARC_FORGED_AUTHRES", 0));
        assert_string_equal(dfx_symbol(&run.r.res, "DMARC_FORGED_AUTHRES", 0)->text,
                            "removed 2");
        if (pass == 0)
            assert_non_null(dfx_symbol(&run.r.res, "DMARC_PASS", 0));
        dfx_close(&run);
    }
    free(signed_msg);
    free(msg);
}

int main(void)
{
    const char *missing = dfx_missing();
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_authres_builder), cmocka_unit_test(test_authserv_id),
        cmocka_unit_test(test_pick_record),     cmocka_unit_test(test_spf_result),
        cmocka_unit_test(test_config),
    };
    const struct CMUnitTest with_nsd[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_forged),
    };
    int rc = cmocka_run_group_tests_name("dmarc-plain", plain, NULL, NULL);

    if (missing != NULL) {
        printf("SKIP the tests with nsd: %s\n", missing);
        return rc != 0 ? rc : 77;
    }
    return rc | cmocka_run_group_tests_name("dmarc-nsd", with_nsd, dfx_group_setup, dfx_group_teardown);
}
