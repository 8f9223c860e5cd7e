/*
 * filter-config — the sections of posternd's config that shape the filter
 * chain: `filters` (a list; each element is read with its module's own
 * table, see filters/module.h), `state` (the key-value store the filters
 * share) and `policy` (policy/policy.h); and each listener's `filters` list,
 * resolved here into the chain it runs.
 *
 * Called by server-config.c. Trusts nothing in the file; errors name the
 * file and line.
 */
#ifndef POSTERN_FILTER_CONFIG_H
#define POSTERN_FILTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "filters/module.h"
#include "lib/cfg.h"
#include "policy/policy.h"

/* One element of the filters list. */
struct filter_instance_settings {
    const struct filter_module *module;
    void *settings; /* module->settings_size bytes, starting with struct filter_common */
};

struct state_settings {
    int backend; /* enum kv_backend */
    char *lmdb_dir; /* NULL = <spool_dir>/state */
    long long lmdb_map_size;
    bool lmdb_nosync;
    char *redis;    /* "127.0.0.1:6379", "[::1]:6379" or "/path/to/socket" */
    char *redis_password;
    long long redis_db;
    char *redis_prefix;
    long long timeout;
};

struct filter_config {
    struct filter_instance_settings *filters; /* in the order of the file */
    size_t count;
    struct state_settings state;
    struct policy_settings policy;
    bool uses_kv; /* some filter needs the state store */
};

/* The filter instance's common settings. */
const struct filter_common *filter_instance_common(const struct filter_instance_settings *f);
/* The instance's id: its id key, else its module name. */
const char *filter_instance_id(const struct filter_instance_settings *f);

/* Loads filters, state and policy from cf. Returns the number of errors. */
int filter_config_load(struct filter_config *fc, const config_t *cf, struct cfg_errors *errs);
void filter_config_free(struct filter_config *fc);
void filter_config_describe(FILE *out);

/* Resolves a listener's filters list (empty = every filter in file order;
 * ["none"] = no filter) into indexes into fc->filters. Returns the count
 * (>= 0) with *out malloc'd, or -1 after adding an error at where. */
int filter_config_chain(const struct filter_config *fc, const struct cfg_strlist *names,
                        const config_setting_t *where, size_t **out, struct cfg_errors *errs);

#endif
