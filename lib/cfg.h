/*
 * cfg — declarative config sections on top of libconfig.
 *
 * Every section of the config is described once by a table of struct
 * cfg_key (name, type, default, range, doc). cfg_section_load() fills a
 * struct from a libconfig group: defaults first, then the values given,
 * each checked against its type and range; an unknown key or a bad value
 * is an error naming file and line. The same tables drive
 * `posternd --list-keys`, which the tests compare with the annotated sample
 * so the docs cannot drift.
 *
 * Called by the programs' config loaders. Trusts the tables; the file is the
 * admin's and is validated completely.
 */
#ifndef POSTERN_CFG_H
#define POSTERN_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <libconfig.h>

enum cfg_type {
    CFG_BOOL,     /* bool */
    CFG_INT,      /* long long */
    CFG_SIZE,     /* long long bytes: 1048576, "512K", "10M", "1G" */
    CFG_DURATION, /* long long milliseconds: 30 (seconds), "500ms", "30s", "5m", "1h", "5d" */
    CFG_STRING,   /* char * (malloc'd; NULL when unset without default) */
    CFG_ENUM,     /* int: index into values[] */
    CFG_STRLIST,  /* struct cfg_strlist: a list of strings (or one string) */
    CFG_GROUP,    /* a sub-group read by the caller; the table only allows it */
    CFG_DOUBLE,   /* double: 3.5, -1, "0.25"; min/max (when set) bound it as integers */
};

struct cfg_strlist {
    char **items;
    size_t count;
};

struct cfg_key {
    const char *name;
    enum cfg_type type;
    size_t offset;             /* offsetof() in the target struct */
    const char *def;           /* default written as in the file; NULL = none */
    long long min, max;        /* INT, SIZE, DURATION (ms); both 0 = no range */
    const char *const *values; /* ENUM: NULL-terminated */
    const char *doc;           /* one line for --list-keys */
};

#define CFG_ERRORS_MAX 64

struct cfg_errors {
    char *msgs[CFG_ERRORS_MAX];
    size_t count;
    size_t dropped;
};

void cfg_error_add(struct cfg_errors *errs, const config_setting_t *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_errors_print(const struct cfg_errors *errs, FILE *out);
void cfg_errors_clear(struct cfg_errors *errs);

/* Fills out from group (which may be NULL: defaults only). Returns the number
 * of errors added to errs (0 = fine). */
int cfg_section_load(const config_setting_t *group, const struct cfg_key *table, void *out,
                     struct cfg_errors *errs);

/* Frees the strings and lists that cfg_section_load allocated in out. */
void cfg_section_free(const struct cfg_key *table, void *out);

/* Prints "section.key type default  doc" for every key (for --list-keys). */
void cfg_section_describe(FILE *out, const char *section, const struct cfg_key *table);

/* Parses a size ("10M") or duration ("5m", ms result) as written in a file. */
int cfg_parse_size(const char *text, long long *out);
int cfg_parse_duration(const char *text, long long *out_ms);

void cfg_strlist_free(struct cfg_strlist *l);

#endif
