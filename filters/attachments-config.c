/*
 * attachments-config — the attachments filter's module (module.h): its
 * config table (filters.attachments and filters.attachments.rules), the
 * checks the table alone cannot make (each rule has a criterion, ids are
 * distinct, types are "type/subtype" globs, extensions are extensions),
 * each an error naming the setting's line; and the policy compiled from
 * the settings for an instance (attachments.c).
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const att_file_action_values[] = {"reject", "quarantine", "strip", NULL};
const char *const att_limit_action_values[] = {"reject", "quarantine", "tempfail", NULL};

enum att_action att_file_action(int value)
{
    static const enum att_action map[] = {ATT_ACTION_REJECT, ATT_ACTION_QUARANTINE,
                                          ATT_ACTION_STRIP};

    return value >= 0 && value < 3 ? map[value] : ATT_ACTION_REJECT;
}

enum att_action att_limit_action(int value)
{
    static const enum att_action map[] = {ATT_ACTION_REJECT, ATT_ACTION_QUARANTINE,
                                          ATT_ACTION_TEMPFAIL};

    return value >= 0 && value < 3 ? map[value] : ATT_ACTION_REJECT;
}

#define S(field) offsetof(struct att_settings, field)
static const struct cfg_key att_keys[] = {
    FILTER_COMMON_KEYS("tempfail", "60s"),
    {"threads", CFG_INT, S(threads), "2", 1, 64, NULL,
     "threads per SMTP worker that parse messages and open archives"},
    {"max_size", CFG_SIZE, S(max_size), "64M", 1024, 1LL << 31, NULL,
     "a longer message is over the MIME bounds (it is read into memory)"},
    {"max_depth", CFG_INT, S(max_depth), "20", 1, 100, NULL,
     "deepest nesting of multiparts and embedded messages (the message is 0)"},
    {"max_parts", CFG_INT, S(max_parts), "1000", 1, 100000, NULL,
     "most MIME entities in a message, the message included"},
    {"max_headers", CFG_INT, S(max_headers), "1000", 10, 100000, NULL,
     "most header fields in one header section"},
    {"max_header_size", CFG_SIZE, S(max_header_size), "256K", 1024, 16LL << 20, NULL,
     "most octets in one header section"},
    {"mime_limit_action", CFG_ENUM, S(mime_limit_action), "reject", 0, 0, att_limit_action_values,
     "over a MIME bound: reject (552 5.6.0), quarantine or tempfail"},
    {"archive_max_depth", CFG_INT, S(archive_max_depth), "3", 0, 10, NULL,
     "levels of archives inside archives that are opened (0 = archives are not opened)"},
    {"archive_max_entries", CFG_INT, S(archive_max_entries), "1000", 1, 1000000, NULL,
     "most entries in all the archives of a message"},
    {"archive_max_size", CFG_SIZE, S(archive_max_size), "64M", 1024, 1LL << 32, NULL,
     "most octets unpacked from all the archives of a message"},
    {"archive_max_ratio", CFG_INT, S(archive_max_ratio), "100", 2, 100000, NULL,
     "an archive unpacking to more than this many times its size is over the limit"},
    {"encrypted_action", CFG_ENUM, S(encrypted_action), "reject", 0, 0, att_file_action_values,
     "an encrypted archive: reject, quarantine or strip"},
    {"archive_limit_action", CFG_ENUM, S(archive_limit_action), "reject", 0, 0,
     att_file_action_values, "an archive over a limit or unreadable: reject, quarantine or strip"},
    {"rules", CFG_GROUP, 0, NULL, 0, 0, NULL,
     "the attachment rules, first match wins (see filters.attachments.rules.*)"},
    {.name = NULL},
};
#undef S

#define R(field) offsetof(struct att_rule_settings, field)
static const struct cfg_key att_rule_keys[] = {
    {"id", CFG_STRING, R(id), NULL, 0, 0, NULL,
     "the rule's name in symbols, replies and logs (default rule<N>)"},
    {"name", CFG_STRLIST, R(name), "", 0, 0, NULL,
     "globs on the file name, e.g. \"*.exe\", \"invoice*.zip\" (case ignored)"},
    {"extensions", CFG_STRLIST, R(extensions), "", 0, 0, NULL,
     "extensions, e.g. \"exe\", \"pdf.exe\" (case ignored)"},
    {"double_extension", CFG_BOOL, R(double_extension), "no", 0, 0, NULL,
     "only names with a double extension such as invoice.pdf.exe"},
    {"declared_type", CFG_STRLIST, R(declared_type), "", 0, 0, NULL,
     "globs on the declared Content-Type, e.g. \"application/x-msdownload\""},
    {"detected_type", CFG_STRLIST, R(detected_type), "", 0, 0, NULL,
     "globs on libmagic's type of the content, e.g. \"application/x-dosexec\""},
    {"in_archives", CFG_BOOL, R(in_archives), "yes", 0, 0, NULL,
     "the rule also judges files inside archives"},
    {"action", CFG_ENUM, R(action), "reject", 0, 0, att_file_action_values,
     "reject (554 5.7.1), quarantine or strip"},
    {.name = NULL},
};
#undef R

static const config_setting_t *key_or(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = config_setting_get_member(g, key);

    return s != NULL ? s : g;
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n >= sizeof(((struct att_rule *)0)->id))
        return false;
    for (; *id != '\0'; id++) {
        if (!isalnum((unsigned char)*id) && strchr("_.-", *id) == NULL)
            return false;
    }
    return true;
}

static void check_types(const struct cfg_strlist *l, const config_setting_t *e, const char *key,
                        struct cfg_errors *errs)
{
    for (size_t i = 0; i < l->count; i++) {
        if (strchr(l->items[i], '/') == NULL)
            cfg_error_add(errs, key_or(e, key), "attachments: %s \"%s\" is not a type/subtype glob",
                          key, l->items[i]);
    }
}

static void check_rule(const struct att_rule_settings *r, const config_setting_t *e,
                       struct cfg_errors *errs)
{
    if (r->name.count == 0 && r->extensions.count == 0 && !r->double_extension &&
        r->declared_type.count == 0 && r->detected_type.count == 0)
        cfg_error_add(errs, e,
                      "attachments: a rule needs name, extensions, double_extension, "
                      "declared_type or detected_type");
    if (r->id != NULL && !id_ok(r->id))
        cfg_error_add(errs, key_or(e, "id"),
                      "attachments: id \"%s\" must be 1 to 63 letters, digits, '_', '.', '-'",
                      r->id);
    for (size_t i = 0; i < r->name.count; i++) {
        if (r->name.items[i][0] == '\0')
            cfg_error_add(errs, key_or(e, "name"), "attachments: an empty name glob");
    }
    for (size_t i = 0; i < r->extensions.count; i++) {
        const char *x = r->extensions.items[i];
        x += x[0] == '.';
        if (x[0] == '\0' || strpbrk(x, "/\\*?[") != NULL || x[strlen(x) - 1] == '.')
            cfg_error_add(errs, key_or(e, "extensions"),
                          "attachments: extension \"%s\" is not an extension such as \"exe\"",
                          r->extensions.items[i]);
    }
    check_types(&r->declared_type, e, "declared_type", errs);
    check_types(&r->detected_type, e, "detected_type", errs);
}

static void check_ids(const struct att_settings *f, const config_setting_t *ls,
                      struct cfg_errors *errs)
{
    for (size_t i = 0; i < f->rule_count; i++) {
        for (size_t j = 0; j < i && f->rules[i].id != NULL; j++) {
            if (f->rules[j].id != NULL && strcmp(f->rules[i].id, f->rules[j].id) == 0)
                cfg_error_add(errs, config_setting_get_elem(ls, (unsigned)i),
                              "attachments: rule id \"%s\" used twice", f->rules[i].id);
        }
    }
}

static void att_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct att_settings *f = settings;
    const config_setting_t *ls = config_setting_get_member(g, "rules");
    int n = ls == NULL ? 0 : config_setting_length(ls);

    if (ls == NULL)
        return; /* no rules: the bounds and the archive checks only */
    if (config_setting_type(ls) != CONFIG_TYPE_LIST) {
        cfg_error_add(errs, ls, "attachments: rules must be a list ( { ... }, ... )");
        return;
    }
    if (n == 0 || (f->rules = calloc((size_t)n, sizeof(*f->rules))) == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(ls, (unsigned)i);
        struct att_rule_settings *r = &f->rules[f->rule_count++];
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            cfg_error_add(errs, e, "each attachments rule must be a group { ... }");
            continue;
        }
        cfg_section_load(e, att_rule_keys, r, errs);
        check_rule(r, e, errs);
    }
    check_ids(f, ls, errs);
}

static void att_free_settings(void *settings)
{
    struct att_settings *f = settings;

    for (size_t i = 0; i < f->rule_count; i++)
        cfg_section_free(att_rule_keys, &f->rules[i]);
    free(f->rules);
    f->rules = NULL;
    f->rule_count = 0;
}

static void att_describe(FILE *out)
{
    cfg_section_describe(out, "filters.attachments.rules", att_rule_keys);
}

/* ---- the policy ---- */

static void free_list(char **l)
{
    for (size_t i = 0; l != NULL && l[i] != NULL; i++)
        free(l[i]);
    free(l);
}

/* A NULL-terminated copy of l (lower case, without a leading '.' when
 * ext); NULL with *oom false when l is empty. */
static char **copy_list(const struct cfg_strlist *l, bool ext, bool *oom)
{
    char **out;

    if (l->count == 0)
        return NULL;
    if ((out = calloc(l->count + 1, sizeof(*out))) == NULL) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < l->count; i++) {
        const char *s = l->items[i] + (ext && l->items[i][0] == '.');
        if ((out[i] = strdup(s)) == NULL) {
            *oom = true;
            return out;
        }
        for (char *c = out[i]; *c != '\0'; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    return out;
}

static int copy_rule(struct att_rule *r, const struct att_rule_settings *s, size_t index)
{
    bool oom = false;

    if (s->id != NULL)
        snprintf(r->id, sizeof(r->id), "%s", s->id);
    else
        snprintf(r->id, sizeof(r->id), "rule%zu", index + 1);
    r->names = copy_list(&s->name, false, &oom);
    r->exts = copy_list(&s->extensions, true, &oom);
    r->declared = copy_list(&s->declared_type, false, &oom);
    r->detected = copy_list(&s->detected_type, false, &oom);
    r->double_ext = s->double_extension;
    r->in_archives = s->in_archives;
    r->action = att_file_action(s->action);
    return oom ? -1 : 0;
}

static void copy_limits(struct att_limits *l, const struct att_settings *s)
{
    *l = (struct att_limits){
        .max_depth = (unsigned)s->max_depth,
        .max_parts = (unsigned)s->max_parts,
        .max_headers = (unsigned)s->max_headers,
        .max_header_size = (size_t)s->max_header_size,
        .max_size = (uint64_t)s->max_size,
        .archive_max_depth = (unsigned)s->archive_max_depth,
        .archive_max_entries = (unsigned)s->archive_max_entries,
        .archive_max_size = (uint64_t)s->archive_max_size,
        .archive_max_ratio = (unsigned)s->archive_max_ratio,
    };
}

int att_policy_new(const struct att_settings *s, const char *hostname, struct att_policy **p_r,
                   char *error, size_t errsize)
{
    struct att_policy *p = calloc(1, sizeof(*p));

    *p_r = NULL;
    if (p == NULL || (p->rules = calloc(s->rule_count + 1, sizeof(*p->rules))) == NULL) {
        free(p);
        snprintf(error, errsize, "attachments: out of memory");
        return -1;
    }
    copy_limits(&p->limits, s);
    p->encrypted_action = att_file_action(s->encrypted_action);
    p->archive_limit_action = att_file_action(s->archive_limit_action);
    p->mime_limit_action = att_limit_action(s->mime_limit_action);
    snprintf(p->hostname, sizeof(p->hostname), "%s", hostname != NULL ? hostname : "localhost");
    for (size_t i = 0; i < s->rule_count; i++) {
        struct att_rule *r = &p->rules[p->rule_count++];
        if (copy_rule(r, &s->rules[i], i) < 0) {
            snprintf(error, errsize, "attachments: out of memory");
            att_policy_free(&p);
            return -1;
        }
        p->need_detect = p->need_detect || r->detected != NULL;
        p->need_detect_entries = p->need_detect_entries || (r->detected != NULL && r->in_archives);
    }
    att_mime_init();
    if ((p->magic = att_magic_new(error, errsize)) == NULL) {
        att_policy_free(&p);
        return -1;
    }
    *p_r = p;
    return 0;
}

void att_policy_free(struct att_policy **pp)
{
    struct att_policy *p = *pp;

    if (p == NULL)
        return;
    *pp = NULL;
    for (size_t i = 0; i < p->rule_count; i++) {
        free_list(p->rules[i].names);
        free_list(p->rules[i].exts);
        free_list(p->rules[i].declared);
        free_list(p->rules[i].detected);
    }
    free(p->rules);
    att_magic_free(&p->magic);
    free(p);
}

const struct att_limits *att_policy_limits(const struct att_policy *p)
{
    return &p->limits;
}

const struct filter_module attachments_module = {
    .name = "attachments",
    .ops = &attachments_filter_ops,
    .keys = att_keys,
    .settings_size = sizeof(struct att_settings),
    .load = att_load,
    .free_settings = att_free_settings,
    .describe = att_describe,
    .create = att_create,
    .destroy = att_destroy,
};
