/*
 * attachments-archive — what archives hold, with libarchive, for the
 * attachments filter (see attachments.h): the formats zip, rar, rar5, 7z
 * and tar, raw or inside gzip, bzip2, xz, lzip, zstd, compress or lz4
 * streams, and a single compressed file (the "raw" format behind one of
 * those filters; its entry is named after the archive without its
 * compression extension: "x.exe.gz" holds "x.exe"). Data that libarchive
 * does not recognize, or that only the raw format takes without a
 * compression filter, is not an archive. The uu and lzma filters are left
 * out on purpose: their bidders take text and data that are no archive,
 * which would then count as unreadable archives.
 *
 * Each entry is read to its end (that is how its unpacked size is known,
 * whatever its header claims) into one buffer, counted against the
 * message's archive_max_size and its archive's ratio as it grows, then
 * judged by the rules with in_archives (its path; its detected type when a
 * rule wants one) and, when it is an archive itself, opened in turn down
 * to archive_max_depth levels. An encrypted entry (data or names) ends the
 * archive with ARCHIVE_ENCRYPTED; every other way an archive cannot be
 * read to its end is ARCHIVE_LIMIT ("unreadable"): such an archive is
 * never clean. A reject ends the look at once (nothing is stronger).
 *
 * Runs on a worker thread; checks the stop flag at every entry and block.
 * SECURITY: archives are untrusted; memory is bounded by archive_max_size
 * (one buffer per level, each counted), time by archive_max_size of
 * decompression, archive_max_entries and archive_max_depth. Trusts
 * libarchive within the buffers it is given.
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARCH_BLOCK (64 * 1024)

struct arch_level {
    struct att_archive_scan *s;
    unsigned depth;   /* 1: the attachment itself */
    const char *path; /* of this archive inside its parents ("" at depth 1) */
    const char *name; /* its file name, for a raw entry's name */
    size_t packed;
    uint64_t unpacked; /* of this archive's entries */
};

/* ---- findings ---- */

static void entry_path(const struct arch_level *l, const char *entry, char *out, size_t size)
{
    char joined[ATT_NAME_MAX * 2];

    snprintf(joined, sizeof(joined), "%s%s%s", l->path, l->path[0] != '\0' ? "/" : "", entry);
    att_text_sanitize(joined, out, size, false);
}

/* The archive at l is over a limit (or unreadable). */
static void __attribute__((format(printf, 2, 3)))
limit(const struct arch_level *l, const char *fmt, ...)
{
    struct att_finding f = {.kind = ATT_KIND_ARCHIVE_LIMIT,
                            .action = l->s->p->archive_limit_action};
    va_list ap;

    att_text_sanitize(l->s->part_name, f.name, sizeof(f.name), false);
    att_text_sanitize(l->path, f.entry, sizeof(f.entry), false);
    va_start(ap, fmt);
    vsnprintf(f.why, sizeof(f.why), fmt, ap);
    va_end(ap);
    att_verdict_offer(l->s->v, &f);
}

static void encrypted(const struct arch_level *l)
{
    struct att_finding f = {.kind = ATT_KIND_ENCRYPTED, .action = l->s->p->encrypted_action};

    att_text_sanitize(l->s->part_name, f.name, sizeof(f.name), false);
    att_text_sanitize(l->path, f.entry, sizeof(f.entry), false);
    att_verdict_offer(l->s->v, &f);
}

static void unreadable(const struct arch_level *l, struct archive *a)
{
    char why[96];

    if (archive_read_has_encrypted_entries(a) > 0) {
        encrypted(l);
        return;
    }
    att_text_sanitize(archive_error_string(a) != NULL ? archive_error_string(a) : "?", why,
                      sizeof(why), true);
    limit(l, "unreadable: %s", why);
}

static bool decided(const struct att_archive_scan *s)
{
    return s->v->found && s->v->f.action == ATT_ACTION_REJECT;
}

/* ---- opening ---- */

static struct archive *arch_new(void)
{
    struct archive *a = archive_read_new();

    if (a == NULL)
        return NULL;
    archive_read_support_format_zip(a);
    archive_read_support_format_rar(a);
    archive_read_support_format_rar5(a);
    archive_read_support_format_7zip(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_raw(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_compress(a);
    archive_read_support_filter_lz4(a);
    return a;
}

/* Opens data and reads its first header into *e. Returns 1 when it is an
 * archive (*a_r open; *first = the first header's status), 0 when not,
 * -1 when out of memory. */
static int arch_open(const void *data, size_t len, struct archive **a_r, struct archive_entry **e,
                     int *first)
{
    struct archive *a;

    *a_r = NULL;
    if (len == 0)
        return 0;
    if ((a = arch_new()) == NULL)
        return -1;
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        archive_read_free(a);
        return 0; /* no format recognized it */
    }
    *first = archive_read_next_header(a, e);
    if (*first >= ARCHIVE_WARN && archive_format(a) == ARCHIVE_FORMAT_RAW &&
        archive_filter_count(a) <= 1) {
        archive_read_free(a);
        return 0; /* only the raw format took it, uncompressed: not an archive */
    }
    *a_r = a;
    return 1;
}

/* ---- entries ---- */

/* The name of a raw format's only entry: the archive's without its
 * compression extension. */
static void raw_name(const char *archive, char *out, size_t size)
{
    static const char *const exts[] = {".gz", ".gzip", ".bz2", ".xz", ".lz", ".zst", ".z", ".lz4"};
    size_t n = strlen(archive);

    if (n >= 4 && strcasecmp(archive + n - 4, ".tgz") == 0) {
        snprintf(out, size, "%.*s.tar", (int)(n - 4), archive);
        return;
    }
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        size_t k = strlen(exts[i]);
        if (n > k && strcasecmp(archive + n - k, exts[i]) == 0) {
            snprintf(out, size, "%.*s", (int)(n - k), archive);
            return;
        }
    }
    snprintf(out, size, "%s", archive[0] != '\0' ? archive : "data");
}

/* Counts r more octets of the archive at l; 1 when a limit is crossed
 * (the finding made), else 0. */
static int count_unpacked(struct arch_level *l, size_t r)
{
    const struct att_limits *lim = &l->s->p->limits;

    *l->s->unpacked += r;
    l->unpacked += r;
    if (*l->s->unpacked > lim->archive_max_size) {
        limit(l, "unpacked size over %llu octets", (unsigned long long)lim->archive_max_size);
        return 1;
    }
    if (l->unpacked > ATT_RATIO_FLOOR &&
        l->unpacked > (uint64_t)lim->archive_max_ratio * l->packed) {
        limit(l, "compression ratio over %u", lim->archive_max_ratio);
        return 1;
    }
    return 0;
}

/* Room for one more block in *b (*cap octets, n used); -1 when out of memory. */
static int grow(char **b, size_t *cap, size_t n)
{
    size_t ncap = *cap * 2 > n + ARCH_BLOCK ? *cap * 2 : n + ARCH_BLOCK;
    char *nb;

    if (*cap - n >= ARCH_BLOCK)
        return 0;
    if ((nb = realloc(*b, ncap)) == NULL)
        return -1;
    *b = nb;
    *cap = ncap;
    return 0;
}

/* Reads the current entry's data into *buf (*len octets), counting it.
 * Returns 0, 1 when a finding ended the archive, -1 with error. */
static int read_entry(struct arch_level *l, struct archive *a, char **buf, size_t *len, char *error,
                      size_t errsize)
{
    const atomic_bool *stop = l->s->stop;
    size_t cap = 0, n = 0;
    char *b = NULL;
    int ret = 0;

    for (;;) {
        la_ssize_t r;
        if (stop != NULL && atomic_load(stop)) {
            snprintf(error, errsize, "stopped");
            ret = -1;
        } else if (grow(&b, &cap, n) < 0) {
            snprintf(error, errsize, "out of memory");
            ret = -1;
        } else if ((r = archive_read_data(a, b + n, ARCH_BLOCK)) == 0) {
            break;
        } else if (r < 0) {
            unreadable(l, a);
            ret = 1;
        } else {
            n += (size_t)r;
            ret = count_unpacked(l, (size_t)r);
        }
        if (ret != 0) {
            free(b);
            return ret;
        }
    }
    *buf = b;
    *len = n;
    return 0;
}

static int check_level(struct arch_level *l, struct archive *a, struct archive_entry *e, int first,
                       char *error, size_t errsize);

/* Opens an entry (buf, len) that may be an archive itself, as the level
 * below l. Returns 0, or -1 with error. */
static int open_inner(struct arch_level *l, const char *path, const char *name, const char *buf,
                      size_t len, char *error, size_t errsize)
{
    const struct att_limits *lim = &l->s->p->limits;
    struct archive *inner;
    struct archive_entry *e;
    int r, first;

    if ((r = arch_open(buf, len, &inner, &e, &first)) <= 0) {
        if (r < 0)
            snprintf(error, errsize, "out of memory");
        return r;
    }
    struct arch_level sub = {
        .s = l->s, .depth = l->depth + 1, .path = path, .name = name, .packed = len};
    if (l->depth >= lim->archive_max_depth)
        limit(&sub, "archives nested deeper than %u", lim->archive_max_depth);
    else
        r = check_level(&sub, inner, e, first, error, errsize);
    archive_read_free(inner);
    return r < 0 ? -1 : 0;
}

/* Judges one entry (its data in buf) by the rules, and opens it when it is
 * an archive. Returns 0, or -1 with error. */
static int judge_entry(struct arch_level *l, const char *name, const char *buf, size_t len,
                       char *error, size_t errsize)
{
    struct att_archive_scan *s = l->s;
    struct att_object o = {.names = {name}, .name_count = 1, .in_archive = true};
    char detected[ATT_TYPE_MAX], path[ATT_NAME_MAX];
    const struct att_rule *rule;
    size_t which;

    if (s->p->need_detect_entries && buf != NULL) {
        if (att_magic_detect(s->p->magic, buf, len, detected, sizeof(detected)) < 0) {
            snprintf(error, errsize, "libmagic failed");
            return -1;
        }
        o.detected = detected;
    }
    if (att_rules_match(s->p, &o, &rule, &which) < 0) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    entry_path(l, name, path, sizeof(path));
    if (rule != NULL) {
        struct att_finding f = {.kind = ATT_KIND_RULE, .action = rule->action};
        att_text_sanitize(s->part_name, f.name, sizeof(f.name), false);
        snprintf(f.entry, sizeof(f.entry), "%s", path);
        snprintf(f.rule, sizeof(f.rule), "%s", rule->id);
        att_verdict_offer(s->v, &f);
    }
    if (decided(s) || buf == NULL || len == 0)
        return 0;
    return open_inner(l, path, name, buf, len, error, errsize);
}

/* One entry of the archive at l, its header in e. Returns 0 to go on, 1
 * when the archive is done with (a finding), -1 with error. */
static int one_entry(struct arch_level *l, struct archive *a, struct archive_entry *e, char *error,
                     size_t errsize)
{
    struct att_archive_scan *s = l->s;
    const char *name = archive_entry_pathname_utf8(e);
    char raw[ATT_NAME_MAX], *buf = NULL;
    size_t len = 0;
    int r;

    if (++*s->entries > s->p->limits.archive_max_entries) {
        limit(l, "more than %u entries", s->p->limits.archive_max_entries);
        return 1;
    }
    if (archive_entry_is_encrypted(e)) {
        encrypted(l);
        return 1;
    }
    if (name == NULL)
        name = archive_entry_pathname(e);
    if (archive_format(a) == ARCHIVE_FORMAT_RAW) {
        raw_name(l->name, raw, sizeof(raw));
        name = raw;
    }
    if (name == NULL)
        name = "";
    if (archive_entry_filetype(e) == AE_IFREG &&
        (r = read_entry(l, a, &buf, &len, error, errsize)) != 0)
        return r;
    r = judge_entry(l, name, buf, len, error, errsize);
    free(buf);
    return r < 0 ? -1 : decided(s) ? 1 : 0;
}

static int check_level(struct arch_level *l, struct archive *a, struct archive_entry *e, int first,
                       char *error, size_t errsize)
{
    struct att_archive_scan *s = l->s;
    int r = first;

    for (;;) {
        if (s->stop != NULL && atomic_load(s->stop)) {
            snprintf(error, errsize, "stopped");
            return -1;
        }
        if (r == ARCHIVE_EOF)
            return 0;
        if (r < ARCHIVE_WARN) {
            unreadable(l, a);
            return 0;
        }
        if ((r = one_entry(l, a, e, error, errsize)) != 0)
            return r < 0 ? -1 : 0;
        r = archive_read_next_header(a, &e);
    }
}

int att_archive_check(struct att_archive_scan *s, const void *data, size_t len, char *error,
                      size_t errsize)
{
    struct archive *a;
    struct archive_entry *e;
    int r, first;

    if ((r = arch_open(data, len, &a, &e, &first)) <= 0) {
        if (r < 0)
            snprintf(error, errsize, "out of memory");
        return r;
    }
    struct arch_level top = {.s = s, .depth = 1, .path = "", .name = s->part_name, .packed = len};
    r = check_level(&top, a, e, first, error, errsize);
    archive_read_free(a);
    return r < 0 ? -1 : 1;
}
