/*
 * test-config — the declarative config tables (lib/cfg.c): defaults, each
 * type, ranges, unknown keys, and errors that name file and line.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/cfg.h"

struct sample {
    bool flag;
    long long count, size, timeout;
    char *name;
    int mode;
    struct cfg_strlist list;
};

static const char *const modes[] = { "reject", "normalize", NULL };

#define S(f) offsetof(struct sample, f)
static const struct cfg_key keys[] = {
    { "flag", CFG_BOOL, S(flag), "no", 0, 0, NULL, "a flag" },
    { "count", CFG_INT, S(count), "10", 1, 100, NULL, "a count" },
    { "size", CFG_SIZE, S(size), "1M", 0, 1LL << 30, NULL, "a size" },
    { "timeout", CFG_DURATION, S(timeout), "30s", 100, 3600000, NULL, "a duration" },
    { "name", CFG_STRING, S(name), "default", 0, 0, NULL, "a string" },
    { "mode", CFG_ENUM, S(mode), "reject", 0, 0, modes, "an enum" },
    { "list", CFG_STRLIST, S(list), "a, b", 0, 0, NULL, "a list" },
    { .name = NULL },
};

static const struct {
    const char *text;
    int errors;
    const char *error; /* substring of the first error */
    long long count, size, timeout;
    int mode;
    size_t list_count;
} rows[] = {
    { .text = "s = { };", .count = 10, .size = 1 << 20, .timeout = 30000, .list_count = 2 },
    { .text = "s = { count = 42; size = \"512K\"; timeout = \"5m\"; mode = \"normalize\"; };",
      .count = 42, .size = 512 << 10, .timeout = 300000, .mode = 1, .list_count = 2 },
    { .text = "s = { size = 2048; timeout = 2; list = [\"x\"]; };", .count = 10, .size = 2048,
      .timeout = 2000, .list_count = 1 },
    { .text = "s = { timeout = \"250ms\"; };", .count = 10, .size = 1 << 20, .timeout = 250,
      .list_count = 2 },
    { .text = "s = { bogus = 1; };", .errors = 1, .error = "t.conf:1: unknown key \"bogus\"" },
    { .text = "s = {\n count = 0; };", .errors = 1, .error = "t.conf:2: count: value out of range" },
    { .text = "s = { count = \"many\"; };", .errors = 1, .error = "count: invalid int" },
    { .text = "s = { size = \"12Q\"; };", .errors = 1, .error = "size: invalid size" },
    { .text = "s = { timeout = \"1ms\"; };", .errors = 1, .error = "timeout: value out of range" },
    { .text = "s = { mode = \"maybe\"; };", .errors = 1, .error = "mode: unknown value" },
    { .text = "s = { flag = \"perhaps\"; };", .errors = 1, .error = "flag: invalid bool" },
    { .text = "s = { name = 5; };", .errors = 1, .error = "name: expected a string" },
    { .text = "s = { list = [1, 2]; };", .errors = 1, .error = "every element must be a string" },
};

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        config_t cf;
        struct sample out = { 0 };
        struct cfg_errors errs = { 0 };

        config_init(&cf);
        assert_int_equal(config_read_string(&cf, rows[i].text), CONFIG_TRUE);
        /* libconfig keeps the file name of read_file only: fake it for the check */
        config_setting_t *s = config_lookup(&cf, "s");
        s->file = "t.conf";
        for (int j = 0; j < config_setting_length(s); j++)
            config_setting_get_elem(s, j)->file = "t.conf";
        int n = cfg_section_load(s, keys, &out, &errs);
        if (n != rows[i].errors)
            fail_msg("row %zu: %d errors, want %d (%s)", i, n, rows[i].errors,
                     errs.count ? errs.msgs[0] : "");
        if (rows[i].errors > 0 && strstr(errs.msgs[0], rows[i].error) == NULL)
            fail_msg("row %zu: error \"%s\" lacks \"%s\"", i, errs.msgs[0], rows[i].error);
        if (rows[i].errors == 0) {
            assert_int_equal(out.count, rows[i].count);
            assert_int_equal(out.size, rows[i].size);
            assert_int_equal(out.timeout, rows[i].timeout);
            assert_int_equal(out.mode, rows[i].mode);
            assert_int_equal(out.list.count, rows[i].list_count);
            assert_string_equal(out.name, "default");
        }
        cfg_section_free(keys, &out);
        cfg_errors_clear(&errs);
        config_destroy(&cf);
    }
}

static void test_parsers(void **state)
{
    long long v;

    (void)state;
    assert_int_equal(cfg_parse_size("10M", &v), 0);
    assert_int_equal(v, 10LL << 20);
    assert_int_equal(cfg_parse_size("1g", &v), 0);
    assert_int_equal(v, 1LL << 30);
    assert_int_equal(cfg_parse_size("-1", &v), -1);
    assert_int_equal(cfg_parse_size("99999999999999999999", &v), -1);
    assert_int_equal(cfg_parse_duration("2d", &v), 0);
    assert_int_equal(v, 2LL * 86400000);
    assert_int_equal(cfg_parse_duration("5 x", &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
