/*
 * fuzz-attachments — libFuzzer target for the attachments filter's own
 * parsing of network input: the bounded pre-scanner (att_prescan) under
 * small bounds, the file name normalization, extension and double
 * extension checks and the sanitizer on the input as a name, and the whole
 * inspection (att_inspect: pre-scan, GMime's tree walked within the bounds,
 * names, libmagic, libarchive, the strip rewrite) on the input as a
 * message. Invariants that fail abort(), so the fuzzer and the replay in
 * make check both report them: the scanner answers 0 or 1 with a reason;
 * a normalized name is never longer than its input nor over the match
 * limit; sanitized text is printable (ASCII when asked); an inspection
 * ends with 0 or -1, and a strip body has CR LF lines only. The input is
 * copied into a buffer of exactly its size so that ASan sees any read past
 * the end.
 */
#include "config.h"
#include "filters/attachments.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static char *exts[] = {"exe", "pdf.exe", "js"};
static char *globs[] = {"*.scr", "invoice*"};
static char *types[] = {"application/vnd.microsoft.portable-executable", "application/x-*"};

static struct att_rule_settings rules[] = {
    {.id = "exe", .extensions = {.items = exts, .count = 3}, .in_archives = true, .action = 0},
    {.id = "glob", .name = {.items = globs, .count = 2}, .in_archives = false, .action = 2},
    {.id = "double", .double_extension = true, .in_archives = true, .action = 1},
    {.id = "types",
     .detected_type = {.items = types, .count = 2},
     .declared_type = {.items = types + 1, .count = 1},
     .in_archives = true,
     .action = 2},
};

static const struct att_settings settings = {
    .threads = 1,
    .max_size = 1 << 20,
    .max_depth = 8,
    .max_parts = 64,
    .max_headers = 64,
    .max_header_size = 8192,
    .mime_limit_action = 0,
    .archive_max_depth = 2,
    .archive_max_entries = 32,
    .archive_max_size = 4 << 20,
    .archive_max_ratio = 50,
    .encrypted_action = 2,
    .archive_limit_action = 1,
    .rules = rules,
    .rule_count = 4,
};

static struct att_policy *policy(void)
{
    static struct att_policy *p;
    char error[256];

    if (p == NULL && att_policy_new(&settings, "fuzz.test", &p, error, sizeof(error)) < 0) {
        fprintf(stderr, "%s\n", error);
        abort();
    }
    return p;
}

static void check_names(const char *s, size_t len)
{
    char out[64], *norm = att_name_normalize(s);

    check(norm != NULL);
    check(strlen(norm) <= len && strlen(norm) <= 1024);
    (void)att_name_has_ext(norm, "exe");
    (void)att_name_has_double_ext(norm);
    free(norm);
    att_text_sanitize(s, out, sizeof(out), true);
    for (const char *c = out; *c != '\0'; c++)
        check(*c >= 0x20 && *c < 0x7f);
    att_text_sanitize(s, out, sizeof(out), false);
    for (const unsigned char *c = (const unsigned char *)out; *c != '\0'; c++)
        check(*c >= 0x20 && *c != 0x7f);
}

static void check_crlf(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        check(p[i] != '\n' || (i > 0 && p[i - 1] == '\r'));
        check(p[i] != '\r' || (i + 1 < len && p[i + 1] == '\n'));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct att_policy *p = policy();
    char *msg = malloc(size > 0 ? size : 1), *name, why[128];
    struct att_report r = {.count = 0};
    int ret;

    if (msg == NULL)
        return 0;
    memcpy(msg, data, size);
    ret = att_prescan(msg, size, att_policy_limits(p), why, sizeof(why));
    check(ret == 0 || (ret == 1 && why[0] != '\0'));
    name = malloc(size + 1);
    if (name != NULL) {
        memcpy(name, data, size);
        name[size] = '\0';
        check_names(name, strlen(name));
        free(name);
    }
    ret = att_inspect(p, msg, size, NULL, &r, why, sizeof(why));
    check(ret == 0 || ret == -1);
    check(r.count <= ATT_FINDINGS_MAX);
    if (ret == 0 && r.body != NULL)
        check_crlf(r.body, r.body_len);
    att_report_clear(&r);
    free(msg);
    return 0;
}
