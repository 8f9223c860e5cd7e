/*
 * test-attachments-bombs — the attachments filter's inspection
 * (filters/attachments.h) on hostile input built at test time
 * (attachments-test.c), each within a time and a memory bound: MIME bombs
 * (1,000 nested multiparts, 100,000 sibling parts, a 300 KB header, 2,000
 * header fields, and RFC 2231 boundaries only the walk over GMime's tree
 * sees), 10,000 RFC 2231 parameters in one field, and zip bombs (16 copies
 * a level nested past archive_max_depth, 128 MiB of zeros in one entry,
 * 100,000 entries), each ending in the configured action or the rule of
 * the file it holds, never clean.
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

/* ---- MIME bombs, through the whole inspection ---- */

/* ASan keeps freed memory in quarantine (256 MB), so the peak there counts
 * every allocation made, not what is held at once. */
#if defined(__SANITIZE_ADDRESS__)
#define PEAK_GROWTH_KB (512 * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEAK_GROWTH_KB (512 * 1024)
#endif
#endif
#ifndef PEAK_GROWTH_KB
#define PEAK_GROWTH_KB (48 * 1024)
#define ALLOWED_ENTRIES 100000
#else
/* each entry's 64 KiB read buffer through ASan's allocator costs 0.25 ms:
 * 100,000 of them take 25 s there, against 1.7 s without */
#define ALLOWED_ENTRIES 10000
#endif

static long max_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_bombs(void **state)
{
    static const struct {
        const char *what;
        unsigned nested, siblings, fields;
        size_t header;
        const char *param, *why;
    } bombs[] = {
        {.what = "1,000 nested multiparts",
         .nested = 1000,
         .param = "boundary",
         .why = "nesting depth over 20"},
        {.what = "100,000 sibling parts",
         .siblings = 100000,
         .param = "boundary",
         .why = "more than 1000 MIME parts"},
        {.what = "a 300 KB header",
         .header = 300 * 1024,
         .why = "a header section over 262144 octets"},
        {.what = "2,000 header fields",
         .fields = 2000,
         .why = "more than 1000 header fields in one section"},
        /* boundaries the scanner does not read (RFC 2231): GMime does, and
         * the walk over its tree finds the same bounds */
        {.what = "30 nested, RFC 2231 boundaries",
         .nested = 30,
         .param = "boundary*0",
         .why = "nesting depth over 20"},
        {.what = "2,000 siblings, an RFC 2231 boundary",
         .siblings = 2000,
         .param = "boundary*0",
         .why = "more than 1000 MIME parts"},
    };
    struct att_pol x;
    char error[160], why[128];

    (void)state;
    att_pol_new(&x, ATT_TEST_HOST, ATT_TEST_RULES);
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        struct att_report r = {.count = 0};
        size_t len;
        char *msg = bombs[i].nested     ? bomb_nested(bombs[i].nested, bombs[i].param, &len)
                    : bombs[i].siblings ? bomb_siblings(bombs[i].siblings, bombs[i].param, &len)
                    : bombs[i].fields   ? bomb_fields(bombs[i].fields, &len)
                                        : bomb_header(bombs[i].header, &len);
        long rss = max_rss_kb(), start = now_ms();
        assert_int_equal(att_inspect(x.p, msg, len, NULL, &r, error, sizeof(error)), 0);
        long ms = now_ms() - start, grown = max_rss_kb() - rss;
        if (r.count != 1 || r.decisive.kind != ATT_KIND_MIME_LIMIT ||
            r.action != ATT_ACTION_REJECT || strcmp(r.decisive.why, bombs[i].why) != 0)
            fail_msg("%s: %zu findings, why \"%s\"", bombs[i].what, r.count, r.decisive.why);
        /* generous for sanitizer builds; GMime alone builds the 100,000 parts
         * in 134 MB (and 1,000,000 in 1.3 GB and 3 s) */
        if (ms > 3000 || grown > PEAK_GROWTH_KB)
            fail_msg("%s: %ld ms, %ld KiB more memory", bombs[i].what, ms, grown);
        if (bombs[i].param != NULL && strcmp(bombs[i].param, "boundary*0") == 0)
            assert_int_equal(att_prescan(msg, len, att_policy_limits(x.p), why, sizeof(why)), 0);
        att_report_clear(&r);
        free(msg);
    }
    att_pol_free(&x);
}

/* 10,000 RFC 2231 parameters in one field: GMime reads them all in bounded
 * time and memory, and the file they name is still judged (by its end,
 * ".exe"; the finding shows the name's start). */
static void test_rfc2231_bombs(void **state)
{
    static const struct {
        const char *kind, *name;
    } bombs[] = {
        {.kind = "continuations", .name = "aaaa"},
        {.kind = "reversed", .name = "aaaa"},
        {.kind = "distinct", .name = "evil.exe"},
    };
    struct att_pol x;
    char error[160];

    (void)state;
    att_pol_new(&x, ATT_TEST_HOST, ATT_TEST_RULES);
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        struct att_report r = {.count = 0};
        size_t len;
        char *msg = bomb_rfc2231(10000, bombs[i].kind, &len);
        long rss = max_rss_kb(), start = now_ms();
        assert_int_equal(att_inspect(x.p, msg, len, NULL, &r, error, sizeof(error)), 0);
        long ms = now_ms() - start, grown = max_rss_kb() - rss;
        if (r.count != 1 || r.decisive.kind != ATT_KIND_RULE || r.action != ATT_ACTION_REJECT ||
            strcmp(r.decisive.rule, "exe") != 0 ||
            strncmp(r.decisive.name, bombs[i].name, strlen(bombs[i].name)) != 0)
            fail_msg("10,000 parameters, %s: %zu findings, name \"%s\" why \"%s\"", bombs[i].kind,
                     r.count, r.decisive.name, r.decisive.why);
        if (ms > 3000 || grown > PEAK_GROWTH_KB)
            fail_msg("10,000 parameters, %s: %ld ms, %ld KiB more memory", bombs[i].kind, ms,
                     grown);
        att_report_clear(&r);
        free(msg);
    }
    /* past the header bound, the same parameters are a MIME limit */
    struct att_report r = {.count = 0};
    size_t len;
    char *msg = bomb_rfc2231(20000, "distinct", &len);
    assert_int_equal(att_inspect(x.p, msg, len, NULL, &r, error, sizeof(error)), 0);
    assert_int_equal(r.decisive.kind, ATT_KIND_MIME_LIMIT);
    assert_int_equal(r.action, ATT_ACTION_REJECT);
    assert_string_equal(r.decisive.why, "a header section over 262144 octets");
    att_report_clear(&r);
    free(msg);
    att_pol_free(&x);
}

/* Zip bombs: nested (16 copies a level, each level past archive_max_depth
 * never opened), flat (one entry of 128 MiB of zeros), 100,000 entries.
 * Each ends in archive_limit_action, or in the rule its file matches, never
 * clean; within time and memory bounds (the unpacked data is bounded by
 * archive_max_size and the ratio, never read whole). */
static void test_zip_bombs(void **state)
{
    static const struct {
        const char *what, *keys;
        enum { NESTED, FLAT, MANY } build;
        unsigned levels, entries;
        const char *last; /* the last of the many entries */
        enum att_kind kind;
        enum att_action action;
        const char *why, *entry;
    } bombs[] = {
        {.what = "nested 6 levels of 16, default depth",
         .build = NESTED,
         .levels = 6,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_REJECT,
         .why = "archives nested deeper than 3",
         .entry = "0-l2.zip/0-l3.zip/0-l4.zip"},
        {.what = "nested 6 levels of 16, quarantine",
         .keys = "archive_limit_action = \"quarantine\"; " ATT_TEST_RULES,
         .build = NESTED,
         .levels = 6,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_QUARANTINE,
         .why = "archives nested deeper than 3"},
        {.what = "nested 12 levels, archive_max_depth 10",
         .keys = "archive_max_depth = 10; " ATT_TEST_RULES,
         .build = NESTED,
         .levels = 12,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_REJECT,
         .why = "archives nested deeper than 10"},
        {.what = "nested 4 levels, the depth allowed: 4 GiB of zeros unpacked",
         .keys = "archive_max_depth = 5; " ATT_TEST_RULES,
         .build = NESTED,
         .levels = 4,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_REJECT,
         .why = "unpacked size over 67108864 octets"},
        {.what = "flat, 128 MiB of zeros",
         .build = FLAT,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_REJECT,
         .why = "compression ratio over 100"},
        {.what = "flat, the ratio allowed: the unpacked size",
         .keys = "archive_max_ratio = 100000; archive_max_size = \"8M\"; "
                 "archive_limit_action = \"strip\"; " ATT_TEST_RULES,
         .build = FLAT,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_STRIP,
         .why = "unpacked size over 8388608 octets"},
        {.what = "100,000 entries",
         .build = MANY,
         .entries = 100000,
         .kind = ATT_KIND_ARCHIVE_LIMIT,
         .action = ATT_ACTION_REJECT,
         .why = "more than 1000 entries"},
        /* no detected_type rule: libmagic on 100,000 entries is the
         * admin's choice of cost, not the bound's */
        {.what = "100,000 entries, all allowed, an executable last",
         .keys = "archive_max_entries = 1000000; "
                 "rules = ( { id = \"exe\"; extensions = [\"exe\"]; } );",
         .build = MANY,
         .entries = ALLOWED_ENTRIES,
         .last = "deep/x.exe",
         .kind = ATT_KIND_RULE,
         .action = ATT_ACTION_REJECT,
         .entry = "deep/x.exe"},
    };
    char error[160];

    (void)state;
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        struct att_report r = {.count = 0};
        struct mbuf m = {.p = NULL};
        struct att_pol x;
        size_t len;
        void *zip = bombs[i].build == NESTED ? zip_nested_bomb(bombs[i].levels, 16, &len)
                    : bombs[i].build == FLAT ? zip_zeros("zeros.txt", 128u << 20, &len)
                                             : zip_many(bombs[i].entries, bombs[i].last, &len);
        att_pol_new(&x, ATT_TEST_HOST, bombs[i].keys != NULL ? bombs[i].keys : ATT_TEST_RULES);
        msg_one_file(&m, "application/zip", NULL, "bomb.zip", zip, len);
        free(zip);
        long rss = max_rss_kb(), start = now_ms();
        assert_int_equal(att_inspect(x.p, m.p, m.len, NULL, &r, error, sizeof(error)), 0);
        long ms = now_ms() - start, grown = max_rss_kb() - rss;
        const struct att_finding *f = &r.decisive;
        if (r.count != 1 || f->kind != bombs[i].kind || r.action != bombs[i].action ||
            strcmp(f->name, "bomb.zip") != 0 ||
            (bombs[i].why != NULL && strcmp(f->why, bombs[i].why) != 0) ||
            (bombs[i].entry != NULL && strcmp(f->entry, bombs[i].entry) != 0))
            fail_msg("%s: %zu findings, kind %d action %d entry \"%s\" why \"%s\"", bombs[i].what,
                     r.count, f->kind, r.action, f->entry, f->why);
        if (ms > 5000 || grown > PEAK_GROWTH_KB)
            fail_msg("%s: %ld ms, %ld KiB more memory", bombs[i].what, ms, grown);
        att_report_clear(&r);
        mbuf_free(&m);
        att_pol_free(&x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bombs),
        cmocka_unit_test(test_rfc2231_bombs),
        cmocka_unit_test(test_zip_bombs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
