/*
 * cfg — see cfg.h. Applies a section table to a libconfig group:
 * defaults, then given values with type and range checks, then a pass that
 * reports keys the table does not know. Errors carry "file:line: ".
 */
#include "config.h"
#include "lib/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[] = { "bool", "int", "size", "duration",
                                          "string", "enum", "list", "group",
                                          "number" };

void cfg_error_add(struct cfg_errors *errs, const config_setting_t *where, const char *fmt, ...)
{
    char text[512];
    char *msg;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (errs->count >= CFG_ERRORS_MAX) {
        errs->dropped++;
        return;
    }
    const char *file = where == NULL ? NULL : config_setting_source_file(where);
    unsigned line = where == NULL ? 0 : config_setting_source_line(where);
    if (file != NULL && asprintf(&msg, "%s:%u: %s", file, line, text) < 0)
        msg = NULL;
    else if (file == NULL)
        msg = strdup(text);
    if (msg != NULL)
        errs->msgs[errs->count++] = msg;
}

void cfg_errors_print(const struct cfg_errors *errs, FILE *out)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(out, "%s\n", errs->msgs[i]);
    if (errs->dropped > 0)
        fprintf(out, "(%zu more errors)\n", errs->dropped);
}

void cfg_errors_clear(struct cfg_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        free(errs->msgs[i]);
    errs->count = 0;
    errs->dropped = 0;
}

/* Parses "<number><suffix>" where suffix is looked up in units. */
static int parse_scaled(const char *text, const char *const *units, const long long *mult,
                        long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);

    if (end == text || errno != 0 || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    for (size_t i = 0; units[i] != NULL; i++) {
        if (strcasecmp(end, units[i]) != 0)
            continue;
        if (mult[i] != 0 && v > INT64_MAX / mult[i])
            return -1;
        *out = v * mult[i];
        return 0;
    }
    return -1;
}

int cfg_parse_size(const char *text, long long *out)
{
    static const char *const units[] = { "", "b", "k", "kb", "m", "mb", "g", "gb", NULL };
    static const long long mult[] = { 1, 1, 1LL << 10, 1LL << 10, 1LL << 20, 1LL << 20,
                                      1LL << 30, 1LL << 30 };
    return parse_scaled(text, units, mult, out);
}

int cfg_parse_duration(const char *text, long long *out_ms)
{
    static const char *const units[] = { "", "ms", "s", "m", "h", "d", "w", NULL };
    static const long long mult[] = { 1000, 1, 1000, 60000, 3600000, 86400000, 604800000 };
    return parse_scaled(text, units, mult, out_ms);
}

static int parse_bool_text(const char *text, bool *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(text, no[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

static int enum_index(const struct cfg_key *k, const char *text)
{
    for (int i = 0; k->values[i] != NULL; i++) {
        if (strcasecmp(text, k->values[i]) == 0)
            return i;
    }
    return -1;
}

void cfg_strlist_free(struct cfg_strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int strlist_add(struct cfg_strlist *l, const char *s, size_t len)
{
    char **items = realloc(l->items, (l->count + 1) * sizeof(*items));
    if (items == NULL)
        return -1;
    l->items = items;
    if ((items[l->count] = strndup(s, len)) == NULL)
        return -1;
    l->count++;
    return 0;
}

/* A list default is written "a, b, c". */
static int strlist_from_text(struct cfg_strlist *l, const char *text)
{
    while (*text != '\0') {
        size_t skip = strspn(text, ", \t");
        text += skip;
        size_t len = strcspn(text, ", \t");
        if (len > 0 && strlist_add(l, text, len) < 0)
            return -1;
        text += len;
    }
    return 0;
}

static int check_range(const struct cfg_key *k, long long v)
{
    if (k->min == 0 && k->max == 0)
        return 0;
    return v < k->min || v > k->max ? -1 : 0;
}

static int store_double(const struct cfg_key *k, double *field, const char *text)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || d != d)
        return -1;
    if ((k->min != 0 || k->max != 0) && (d < (double)k->min || d > (double)k->max))
        return -2;
    *field = d;
    return 0;
}

/* Stores a value given as text (defaults, and string-typed file values). */
static int store_text(const struct cfg_key *k, void *out, const char *text)
{
    char *field = (char *)out + k->offset;
    long long v;

    switch (k->type) {
    case CFG_BOOL:
        return parse_bool_text(text, (bool *)field);
    case CFG_INT:
        if (parse_scaled(text, (const char *const[]){ "", NULL }, (const long long[]){ 1 }, &v) < 0 &&
            sscanf(text, "%lld", &v) != 1)
            return -1;
        break;
    case CFG_SIZE:
        if (cfg_parse_size(text, &v) < 0)
            return -1;
        break;
    case CFG_DURATION:
        if (cfg_parse_duration(text, &v) < 0)
            return -1;
        break;
    case CFG_STRING:
        free(*(char **)field);
        return (*(char **)field = strdup(text)) == NULL ? -1 : 0;
    case CFG_ENUM:
        return (*(int *)field = enum_index(k, text)) < 0 ? -1 : 0;
    case CFG_STRLIST:
        cfg_strlist_free((struct cfg_strlist *)field);
        return strlist_from_text((struct cfg_strlist *)field, text);
    case CFG_GROUP:
        return 0;
    case CFG_DOUBLE:
        return store_double(k, (double *)field, text);
    }
    if (check_range(k, v) < 0)
        return -2;
    *(long long *)field = v;
    return 0;
}

static int store_list(const struct cfg_key *k, void *out, const config_setting_t *s,
                      struct cfg_errors *errs)
{
    struct cfg_strlist *l = (struct cfg_strlist *)((char *)out + k->offset);
    int n = config_setting_length(s);

    cfg_strlist_free(l);
    for (int i = 0; i < n; i++) {
        const char *v = config_setting_get_string_elem(s, i);
        if (v == NULL) {
            cfg_error_add(errs, s, "%s: every element must be a string", k->name);
            return -1;
        }
        if (strlist_add(l, v, strlen(v)) < 0)
            return -1;
    }
    return 0;
}

static void range_error(const struct cfg_key *k, const config_setting_t *s, struct cfg_errors *errs)
{
    if (k->type == CFG_DURATION)
        cfg_error_add(errs, s, "%s: value out of range (%lldms..%lldms)", k->name, k->min, k->max);
    else
        cfg_error_add(errs, s, "%s: value out of range (%lld..%lld)", k->name, k->min, k->max);
}

/* Stores one setting from the file; adds an error and returns -1 when bad. */
static int store_setting(const struct cfg_key *k, void *out, const config_setting_t *s,
                         struct cfg_errors *errs)
{
    int t = config_setting_type(s);
    char num[32];
    const char *text = NULL;
    int rc;

    if (k->type == CFG_GROUP) {
        if (t == CONFIG_TYPE_GROUP || t == CONFIG_TYPE_LIST)
            return 0;
    } else if (k->type == CFG_STRLIST && (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)) {
        return store_list(k, out, s, errs);
    } else if (t == CONFIG_TYPE_STRING) {
        text = config_setting_get_string(s);
    } else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
        if (k->type != CFG_STRING && k->type != CFG_ENUM && k->type != CFG_BOOL) {
            snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
            text = num;
        }
    } else if (t == CONFIG_TYPE_FLOAT && k->type == CFG_DOUBLE) {
        snprintf(num, sizeof(num), "%.17g", config_setting_get_float(s));
        text = num;
    } else if (t == CONFIG_TYPE_BOOL && k->type == CFG_BOOL) {
        text = config_setting_get_bool(s) ? "yes" : "no";
    }
    if (text == NULL) {
        cfg_error_add(errs, s, "%s: expected a %s", k->name, type_names[k->type]);
        return -1;
    }
    if ((k->type == CFG_STRING || k->type == CFG_STRLIST) && (t != CONFIG_TYPE_STRING)) {
        cfg_error_add(errs, s, "%s: expected a %s", k->name, type_names[k->type]);
        return -1;
    }
    rc = store_text(k, out, text);
    if (rc == -2)
        range_error(k, s, errs);
    else if (rc < 0 && k->type == CFG_ENUM)
        cfg_error_add(errs, s, "%s: unknown value \"%s\"", k->name, text);
    else if (rc < 0)
        cfg_error_add(errs, s, "%s: invalid %s \"%s\"", k->name, type_names[k->type], text);
    return rc < 0 ? -1 : 0;
}

static const struct cfg_key *find_key(const struct cfg_key *table, const char *name)
{
    for (const struct cfg_key *k = table; k->name != NULL; k++) {
        if (strcmp(k->name, name) == 0)
            return k;
    }
    return NULL;
}

int cfg_section_load(const config_setting_t *group, const struct cfg_key *table, void *out,
                     struct cfg_errors *errs)
{
    size_t before = errs->count + errs->dropped;

    for (const struct cfg_key *k = table; k->name != NULL; k++) {
        if (k->def != NULL && store_text(k, out, k->def) != 0)
            cfg_error_add(errs, NULL, "internal: bad default for %s", k->name);
    }
    for (int i = 0; group != NULL && i < config_setting_length(group); i++) {
        const config_setting_t *s = config_setting_get_elem(group, i);
        const char *name = config_setting_name(s);
        const struct cfg_key *k = name == NULL ? NULL : find_key(table, name);

        if (k == NULL)
            cfg_error_add(errs, s, "unknown key \"%s\" in %s", name == NULL ? "?" : name,
                          config_setting_name(group) == NULL ? "top level"
                                                             : config_setting_name(group));
        else
            store_setting(k, out, s, errs);
    }
    return (int)(errs->count + errs->dropped - before);
}

void cfg_section_free(const struct cfg_key *table, void *out)
{
    for (const struct cfg_key *k = table; k->name != NULL; k++) {
        char *field = (char *)out + k->offset;
        if (k->type == CFG_STRING) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (k->type == CFG_STRLIST) {
            cfg_strlist_free((struct cfg_strlist *)field);
        }
    }
}

void cfg_section_describe(FILE *out, const char *section, const struct cfg_key *table)
{
    for (const struct cfg_key *k = table; k->name != NULL; k++) {
        if (k->type == CFG_GROUP)
            continue;
        fprintf(out, "%s%s%s\t%s\t%s\t%s\n", section, section[0] != '\0' ? "." : "", k->name,
                type_names[k->type], k->def == NULL ? "(none)" : k->def,
                k->doc == NULL ? "" : k->doc);
    }
}
