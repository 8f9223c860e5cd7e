/*
 * dha-directory — see dha-directory.h. Three sorted string sets: the
 * entries ("local@domain", catch-alls as "@domain"; an empty local part is
 * refused, so the two forms never meet), the judged domains and the verify
 * domains, all normalised (lower-case domain, lower-case local part when
 * ignore_case). Every text is parsed with lib/address as an SMTP path.
 */
#include "config.h"
#include "filters/dha-directory.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "lib/log.h"

#define PATH_FLAGS (ADDR_ALLOW_NOBRACKET | ADDR_ALLOW_UTF8 | ADDR_ALLOW_POSTMASTER)

struct strset {
    char **items;
    size_t count, cap;
};

struct dha_dir {
    int refs;
    bool ignore_case;
    bool sealed;
    bool explicit_domains; /* dha_dir_add_domain was called */
    struct strset entries, domains, verify;
};

/* ---- sorted string sets ---- */

static int strset_add(struct strset *s, const char *text)
{
    char *copy;

    if (s->count == s->cap) {
        size_t cap = s->cap == 0 ? 16 : s->cap * 2;
        char **grown = realloc(s->items, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        s->items = grown;
        s->cap = cap;
    }
    if ((copy = strdup(text)) == NULL)
        return -1;
    s->items[s->count++] = copy;
    return 0;
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strset_seal(struct strset *s)
{
    size_t o = 0;

    if (s->count == 0)
        return;
    qsort(s->items, s->count, sizeof(*s->items), strp_cmp);
    for (size_t i = 1; i < s->count; i++) {
        if (strcmp(s->items[o], s->items[i]) == 0)
            free(s->items[i]);
        else
            s->items[++o] = s->items[i];
    }
    s->count = o + 1;
}

static bool strset_has(const struct strset *s, const char *text)
{
    return s->count > 0 && bsearch(&text, s->items, s->count, sizeof(*s->items), strp_cmp) != NULL;
}

static void strset_free(struct strset *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof(*s));
}

/* ---- parsing and normalising ---- */

static void lower_ascii(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    }
}

static void normalise(struct addr_path *a, bool ignore_case)
{
    lower_ascii(a->domain);
    if (ignore_case)
        lower_ascii(a->local);
}

/* A domain (len octets of text) into out (ADDR_DOMAIN_MAX + 1), lower-case. */
static int parse_domain(const char *text, size_t len, char *out, const char **error_r)
{
    char buf[sizeof("postmaster@") + ADDR_DOMAIN_MAX + 1];
    struct addr_path a;
    size_t used;

    if (len == 0 || len > ADDR_DOMAIN_MAX) {
        *error_r = len == 0 ? "empty domain" : "domain too long";
        return -1;
    }
    snprintf(buf, sizeof(buf), "postmaster@%.*s", (int)len, text);
    if (addr_parse_path(buf, strlen(buf), PATH_FLAGS, &a, &used, error_r) < 0)
        return -1;
    if (used != strlen(buf)) {
        *error_r = "bad domain syntax";
        return -1;
    }
    lower_ascii(a.domain);
    memcpy(out, a.domain, strlen(a.domain) + 1);
    return 0;
}

static int add_domain_to(struct dha_dir *d, struct strset *set, const char *domain,
                         const char **error_r)
{
    char norm[ADDR_DOMAIN_MAX + 1];

    if (parse_domain(domain, strlen(domain), norm, error_r) < 0)
        return -1;
    if (d->entries.count + d->domains.count + d->verify.count >= DHA_DIR_MAX_ENTRIES) {
        *error_r = "too many entries";
        return -1;
    }
    if (strset_add(set, norm) < 0) {
        *error_r = "out of memory";
        return -1;
    }
    return 0;
}

/* Parses the entry at the start of text (len octets): "@domain" or a path.
 * Sets *used to the octets it took; key gets the normalised entry. */
static int parse_entry(const struct dha_dir *d, const char *text, size_t len, size_t *used,
                       char *key, const char **error_r)
{
    struct addr_path a;

    if (len > 0 && text[0] == '@') {
        size_t n = strcspn(text, " \t#");
        n = n < len ? n : len;
        key[0] = '@';
        *used = n;
        return parse_domain(text + 1, n - 1, key + 1, error_r);
    }
    if (addr_parse_path(text, len, PATH_FLAGS, &a, used, error_r) < 0)
        return -1;
    if (a.null || a.domain[0] == '\0' || a.local[0] == '\0') {
        *error_r = a.local[0] == '\0' ? "empty local part" : "an entry needs a domain";
        return -1;
    }
    normalise(&a, d->ignore_case);
    snprintf(key, DHA_DIR_KEY_MAX, "%s@%s", a.local, a.domain);
    return 0;
}

static int add_key(struct dha_dir *d, const char *key, const char **error_r)
{
    if (d->entries.count + d->domains.count + d->verify.count >= DHA_DIR_MAX_ENTRIES) {
        *error_r = "too many entries";
        return -1;
    }
    if (strset_add(&d->entries, key) < 0) {
        *error_r = "out of memory";
        return -1;
    }
    return 0;
}

/* ---- building ---- */

struct dha_dir *dha_dir_new(bool ignore_case)
{
    struct dha_dir *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->refs = 1;
    d->ignore_case = ignore_case;
    return d;
}

int dha_dir_add(struct dha_dir *d, const char *entry, const char **error_r)
{
    char key[DHA_DIR_KEY_MAX];
    size_t len = strlen(entry), used = 0;

    if (parse_entry(d, entry, len, &used, key, error_r) < 0)
        return -1;
    if (used != len) {
        *error_r = "trailing text after the address";
        return -1;
    }
    return add_key(d, key, error_r);
}

int dha_dir_add_domain(struct dha_dir *d, const char *domain, const char **error_r)
{
    d->explicit_domains = true;
    return add_domain_to(d, &d->domains, domain, error_r);
}

int dha_dir_add_verify_domain(struct dha_dir *d, const char *domain, const char **error_r)
{
    return add_domain_to(d, &d->verify, domain, error_r);
}

/* One line of a file (no line end): blank, a comment, or an entry with an
 * optional comment after white space. */
static int add_line(struct dha_dir *d, const char *line, const char **error_r)
{
    char key[DHA_DIR_KEY_MAX];
    size_t used, len;

    line += strspn(line, " \t");
    if (*line == '\0' || *line == '#')
        return 0;
    len = strlen(line);
    if (parse_entry(d, line, len, &used, key, error_r) < 0)
        return -1;
    line += used;
    if (*line != '\0' && *line != ' ' && *line != '\t') {
        *error_r = "trailing text after the address";
        return -1;
    }
    line += strspn(line, " \t");
    if (*line != '\0' && *line != '#') {
        *error_r = "one entry per line (comments start with #)";
        return -1;
    }
    return add_key(d, key, error_r);
}

static int load_lines(struct dha_dir *d, FILE *f, const char *path, char *error, size_t errsize)
{
    char *line = NULL, shown[64];
    size_t cap = 0;
    unsigned lineno = 0;
    const char *why = NULL;
    ssize_t n;

    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if ((size_t)n > DHA_DIR_MAX_LINE)
            why = "line too long";
        else if (strlen(line) != (size_t)n)
            why = "NUL byte in line";
        else if (add_line(d, line, &why) == 0)
            continue;
        log_sanitize(shown, sizeof(shown), line, (size_t)n);
        snprintf(error, errsize, "%s:%u: %s: \"%s\"", path, lineno, why, shown);
        free(line);
        return -1;
    }
    free(line);
    if (ferror(f)) {
        snprintf(error, errsize, "%s:%u: %s", path, lineno, strerror(errno));
        return -1;
    }
    return 0;
}

int dha_dir_load_file(struct dha_dir *d, const char *path, char *error, size_t errsize)
{
    FILE *f = fopen(path, "re");
    struct stat st;
    int rc;

    if (f == NULL) {
        snprintf(error, errsize, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > DHA_DIR_MAX_FILE) {
        snprintf(error, errsize, "%s: not a regular file of at most %ld octets", path,
                 DHA_DIR_MAX_FILE);
        fclose(f);
        return -1;
    }
    rc = load_lines(d, f, path, error, errsize);
    fclose(f);
    return rc;
}

/* The domain of every entry ("x@dom" and "@dom"): the last '@' splits. */
static int add_entry_domains(struct dha_dir *d)
{
    for (size_t i = 0; i < d->entries.count; i++) {
        const char *at = strrchr(d->entries.items[i], '@');
        if (at != NULL && strset_add(&d->domains, at + 1) < 0)
            return -1;
    }
    return 0;
}

int dha_dir_seal(struct dha_dir *d)
{
    if (d->sealed)
        return 0;
    if (!d->explicit_domains && add_entry_domains(d) < 0)
        return -1;
    for (size_t i = 0; i < d->verify.count; i++) {
        if (strset_add(&d->domains, d->verify.items[i]) < 0)
            return -1;
    }
    strset_seal(&d->entries);
    strset_seal(&d->domains);
    strset_seal(&d->verify);
    d->sealed = true;
    return 0;
}

/* ---- using ---- */

enum dha_lookup dha_dir_lookup(const struct dha_dir *d, const char *rcpt, char *key, size_t keysize)
{
    char catch_all[ADDR_DOMAIN_MAX + 2];
    struct addr_path a;
    const char *error;
    size_t used;

    key[0] = '\0';
    if (addr_parse_path(rcpt, strlen(rcpt), PATH_FLAGS, &a, &used, &error) < 0 || a.null ||
        a.domain[0] == '\0')
        return DHA_NOT_JUDGED;
    normalise(&a, d->ignore_case);
    if (!strset_has(&d->domains, a.domain))
        return DHA_NOT_JUDGED;
    snprintf(key, keysize, "%s@%s", a.local, a.domain);
    if (strcasecmp(a.local, "postmaster") == 0)
        return DHA_KNOWN;
    if (a.local[0] != '\0' && strset_has(&d->entries, key))
        return DHA_KNOWN;
    snprintf(catch_all, sizeof(catch_all), "@%s", a.domain);
    if (strset_has(&d->entries, catch_all))
        return DHA_KNOWN;
    return strset_has(&d->verify, a.domain) ? DHA_VERIFY : DHA_UNKNOWN;
}

size_t dha_dir_entries(const struct dha_dir *d)
{
    return d->entries.count;
}

bool dha_dir_has_verify_domains(const struct dha_dir *d)
{
    return d->verify.count > 0;
}

struct dha_dir *dha_dir_ref(struct dha_dir *d)
{
    d->refs++;
    return d;
}

void dha_dir_unref(struct dha_dir **dp)
{
    struct dha_dir *d = *dp;

    if (d == NULL)
        return;
    *dp = NULL;
    if (--d->refs > 0)
        return;
    strset_free(&d->entries);
    strset_free(&d->domains);
    strset_free(&d->verify);
    free(d);
}
