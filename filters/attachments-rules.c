/*
 * attachments-rules — file names as rules see them, and the rules
 * themselves: normalization of names from the network (see attachments.h),
 * extensions and double extensions, the first rule that matches a file,
 * and the text that may be shown of a name (symbols, replies, logs, the
 * part that replaces a stripped one).
 *
 * SECURITY: names come from the network (decoded by GMime or libarchive,
 * so any octets but NUL). Normalized names keep their end (where the
 * extension is): a name longer than ATT_NAME_MATCH_MAX keeps its first and
 * last octets, so that fnmatch's cost stays bounded whatever the name.
 * Fuzzed (tests/fuzz/fuzz-attachments.c).
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Normalized names longer than this keep their head and tail only. */
#define ATT_NAME_MATCH_MAX 1024
#define ATT_NAME_KEEP ((ATT_NAME_MATCH_MAX - 3) / 2)

/* The length of a valid UTF-8 sequence at p, or 0. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* the NUL at the end is not a continuation */
            return 0;
    }
    return n;
}

/* The length of an invisible mark at p (direction marks and overrides,
 * zero-width characters, the BOM), or 0. */
static size_t invisible_len(const unsigned char *p)
{
    if (p[0] == 0xe2 && p[1] == 0x80 &&
        ((p[2] >= 0x8b && p[2] <= 0x8f) || (p[2] >= 0xaa && p[2] <= 0xae)))
        return 3;
    if (p[0] == 0xe2 && p[1] == 0x81 && ((p[2] >= 0xa6 && p[2] <= 0xa9) || p[2] == 0xa0))
        return 3;
    if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        return 3;
    if (p[0] == 0xd8 && p[1] == 0x9c)
        return 2;
    return 0;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Cuts n back so that s[0..n) does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t n)
{
    size_t i = n;

    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
        i--;
    if (i > 0 && (unsigned char)s[i - 1] >= 0xc0 &&
        utf8_len((const unsigned char *)s + i - 1) != n - i + 1)
        return i - 1;
    return n;
}

char *att_name_normalize(const char *name)
{
    const unsigned char *p = (const unsigned char *)name, *base = p;
    size_t o = 0, inv;
    bool after_dot = false;
    char *out;

    for (; *p != '\0'; p++) {
        if (*p == '/' || *p == '\\')
            base = p + 1;
    }
    if ((out = malloc(strlen((const char *)base) + 1)) == NULL)
        return NULL;
    for (p = base; *p != '\0'; p++) {
        if ((inv = invisible_len(p)) > 0) {
            p += inv - 1;
        } else if (*p == '.') {
            while (o > 0 && is_space((unsigned char)out[o - 1]))
                o--;
            out[o++] = '.';
            after_dot = true;
        } else if (is_space(*p)) {
            if (o > 0 && !after_dot)
                out[o++] = ' ';
        } else if (*p >= 0x20 && *p != 0x7f) {
            out[o++] = (char)*p;
            after_dot = false;
        }
    }
    while (o > 0 && (out[o - 1] == '.' || out[o - 1] == ' '))
        o--;
    out[o] = '\0';
    if (o > ATT_NAME_MATCH_MAX) {
        size_t head = utf8_cut(out, ATT_NAME_KEEP), tail = o - ATT_NAME_KEEP;
        while (tail < o && ((unsigned char)out[tail] & 0xc0) == 0x80)
            tail++;
        memcpy(out + head, "~~~", 3);
        memmove(out + head + 3, out + tail, o - tail + 1);
    }
    return out;
}

bool att_name_has_ext(const char *norm, const char *ext)
{
    size_t n = strlen(norm), k = strlen(ext);

    return k > 0 && n > k && norm[n - k - 1] == '.' && strcasecmp(norm + n - k, ext) == 0;
}

bool att_name_has_double_ext(const char *norm)
{
    const char *last = strrchr(norm, '.'), *prev;
    size_t k;

    if (last == NULL || last == norm || last[1] == '\0')
        return false;
    for (prev = last - 1; prev > norm && *prev != '.'; prev--)
        ;
    if (*prev != '.' || prev == norm)
        return false;
    k = (size_t)(last - prev - 1);
    if (k < 2 || k > 4)
        return false;
    for (const char *c = prev + 1; c < last; c++) {
        if (!isalnum((unsigned char)*c))
            return false;
    }
    return true;
}

void att_text_sanitize(const char *in, char *out, size_t size, bool ascii)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0, n;

    if (size == 0)
        return;
    while (*p != '\0' && o + 1 < size) {
        if ((n = invisible_len(p)) > 0 || (n = utf8_len(p)) == 0 || *p < 0x20 || *p == 0x7f ||
            (ascii && n > 1)) {
            out[o++] = '?';
            p += n > 0 ? n : 1;
            continue;
        }
        if (o + n >= size)
            break;
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

/* ---- rules ---- */

static bool any_glob(char *const *globs, const char *s)
{
    for (; *globs != NULL; globs++) {
        if (fnmatch(*globs, s, FNM_CASEFOLD) == 0)
            return true;
    }
    return false;
}

static bool name_matches(const struct att_rule *r, const char *norm)
{
    if (r->double_ext && !att_name_has_double_ext(norm))
        return false;
    if (r->names == NULL && r->exts == NULL)
        return true;
    if (r->names != NULL && any_glob(r->names, norm))
        return true;
    for (char *const *e = r->exts; e != NULL && *e != NULL; e++) {
        if (att_name_has_ext(norm, *e))
            return true;
    }
    return false;
}

/* Whether r matches o with the normalized names norm; *name_r = which. */
static bool rule_matches(const struct att_rule *r, const struct att_object *o, char *const *norm,
                         size_t *name_r)
{
    *name_r = 0;
    if (o->in_archive && !r->in_archives)
        return false;
    if (r->names != NULL || r->exts != NULL || r->double_ext) {
        size_t i;
        for (i = 0; i < o->name_count && !name_matches(r, norm[i]); i++)
            ;
        if (i == o->name_count)
            return false;
        *name_r = i;
    }
    if (r->declared != NULL && (o->declared == NULL || !any_glob(r->declared, o->declared)))
        return false;
    if (r->detected != NULL && (o->detected == NULL || !any_glob(r->detected, o->detected)))
        return false;
    return true;
}

int att_rules_match(const struct att_policy *p, const struct att_object *o,
                    const struct att_rule **rule_r, size_t *name_r)
{
    char *norm[2] = {NULL, NULL};
    int ret = 0;

    *rule_r = NULL;
    *name_r = 0;
    for (size_t i = 0; i < o->name_count && i < 2; i++) {
        if ((norm[i] = att_name_normalize(o->names[i])) == NULL)
            ret = -1;
    }
    for (size_t i = 0; ret == 0 && i < p->rule_count; i++) {
        if (rule_matches(&p->rules[i], o, norm, name_r)) {
            *rule_r = &p->rules[i];
            break;
        }
    }
    free(norm[0]);
    free(norm[1]);
    return ret;
}

void att_verdict_offer(struct att_verdict *v, const struct att_finding *f)
{
    if (!v->found || f->action > v->f.action) {
        v->f = *f;
        v->found = true;
    }
}
