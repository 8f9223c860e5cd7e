/*
 * test-dnsbl — the dnsbl filter's names (query names for IPv4 and IPv6,
 * symbol names from zones) and the filters list of posternd's config:
 * a valid list loads with its scores, bad keys and values are errors that
 * name file and line.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/dnsbl.h"
#include "gateway/server-config.h"

static const struct {
    const char *addr, *zone, *name;
} names[] = {
    {.addr = "127.0.0.2", .zone = "bl.test", .name = "2.0.0.127.bl.test"},
    {.addr = "192.0.2.10", .zone = "zen.example.org", .name = "10.2.0.192.zen.example.org"},
    {.addr = "2001:db8::1",
     .zone = "bl.test",
     .name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"},
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
        const char *zone, *symbol;
    } rows[] = {
        {.zone = "bl.test", .symbol = "DNSBL_BL_TEST"},
        {.zone = "zen.spamhaus.org", .symbol = "DNSBL_ZEN_SPAMHAUS_ORG"},
        {.zone = "b-l.x9", .symbol = "DNSBL_B_L_X9"},
    };
    char out[FILTER_SYMBOL_NAME_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        dnsbl_symbol_name(rows[i].zone, out, sizeof(out));
        assert_string_equal(out, rows[i].symbol);
    }
    dnsbl_symbol_name("a.very.long.zone.name.that.does.not.fit.in.a.symbol.name.example.org", out,
                      sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
}

#define LISTENER "listeners = ( { name = \"mx\"; address = [\"127.0.0.1:2525\"]; } );\n"

static const struct {
    const char *filters;
    const char *error; /* substring of the first error; NULL = loads */
} configs[] = {
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"bl.test\"; score = 3.5; "
                "codes = [\"127.0.0.2\"]; } ); reject_score = 3; } );"},
    {.filters =
         "filters = ( { name = \"dnsbl\";\n lists = ( { zone = \"bl.test\"; bogus = 1; } ); } );",
     .error = ":3: unknown key \"bogus\""},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"bl.test\"; } );\n"
                " frobnicate = 1; } );",
     .error = ":3: unknown key \"frobnicate\""},
    {.filters = "filters = ( { name = \"spamd\"; } );", .error = "unknown filter \"spamd\""},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { score = 1.0; } ); } );",
     .error = "dnsbl list without a zone"},
    {.filters =
         "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"x\"; score = \"lots\"; } ); } );",
     .error = "score: invalid number"},
    {.filters = "filters = ( { name = \"dnsbl\"; on_error = \"maybe\"; lists = ( { zone = \"x\"; } "
                "); } );",
     .error = "on_error: unknown value"},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"x\"; } ); },\n"
                "  { name = \"dnsbl\"; lists = ( { zone = \"y\"; } ); } );",
     .error = ":3: filter id \"dnsbl\" used twice"},
    {.filters = "filters = ( { name = \"dnsbl\"; lists = ( { zone = \"x\"; } ); },\n"
                "  { name = \"dnsbl\"; id = \"dnswl\"; lists = ( { zone = \"y\"; } ); } );"},
};

static struct postern_config *load(const char *filters, struct cfg_errors *errs)
{
    char path[] = "/tmp/test-dnsbl-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "w");

    assert_non_null(f);
    fprintf(f, LISTENER "%s\n", filters);
    fclose(f);
    struct postern_config *cfg = postern_config_load(path, errs);
    unlink(path);
    return cfg;
}

static void test_config(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = load(configs[i].filters, &errs);
        if (configs[i].error == NULL && cfg == NULL)
            fail_msg("row %zu: %s", i, errs.count ? errs.msgs[0] : "?");
        if (configs[i].error != NULL &&
            (cfg != NULL || errs.count == 0 || strstr(errs.msgs[0], configs[i].error) == NULL))
            fail_msg("row %zu: error \"%s\" lacks \"%s\"", i, errs.count ? errs.msgs[0] : "",
                     configs[i].error);
        if (i == 0) {
            const struct dnsbl_settings *d;
            assert_int_equal(cfg->filtering.count, 1);
            assert_ptr_equal(cfg->filtering.filters[0].module, &dnsbl_module);
            d = cfg->filtering.filters[0].settings;
            assert_int_equal(d->list_count, 1);
            assert_true(d->lists[0].score == 3.5);
            assert_true(d->reject_score == 3.0);
            assert_int_equal(d->common.timeout, 5000);
            assert_int_equal(d->common.on_error, FILTER_ON_ERROR_SKIP);
            assert_string_equal(d->lists[0].codes.items[0], "127.0.0.2");
            /* the listener runs every filter by default */
            assert_int_equal(cfg->listeners[0].chain_len, 1);
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_names),
        cmocka_unit_test(test_symbol_names),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
