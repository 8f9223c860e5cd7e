/*
 * filter-config — see filter-config.h.
 */
#include "config.h"
#include "gateway/filter-config.h"

#include <stdlib.h>
#include <string.h>

#include "lib/kv.h"

static const char *const backend_values[] = { "lmdb", "redis", NULL };

#define S(field) offsetof(struct state_settings, field)
static const struct cfg_key state_keys[] = {
    { "backend", CFG_ENUM, S(backend), "lmdb", 0, 0, backend_values,
      "lmdb (embedded, one node) or redis (shared by several gateways)" },
    { "lmdb_dir", CFG_STRING, S(lmdb_dir), NULL, 0, 0, NULL,
      "LMDB directory (default: <spool_dir>/state)" },
    { "lmdb_map_size", CFG_SIZE, S(lmdb_map_size), "256M", 1048576, 1LL << 40, NULL,
      "largest size of the LMDB file" },
    { "lmdb_nosync", CFG_BOOL, S(lmdb_nosync), "no", 0, 0, NULL,
      "no fsync per LMDB commit (faster; a power loss may lose recent state)" },
    { "redis", CFG_STRING, S(redis), "127.0.0.1:6379", 0, 0, NULL,
      "Redis server: \"host:port\", \"[::1]:port\" or a unix socket path" },
    { "redis_password", CFG_STRING, S(redis_password), NULL, 0, 0, NULL, "Redis AUTH password" },
    { "redis_db", CFG_INT, S(redis_db), "0", 0, 1000, NULL, "Redis database number" },
    { "redis_prefix", CFG_STRING, S(redis_prefix), "postern:", 0, 0, NULL,
      "prefix of every Redis key" },
    { "timeout", CFG_DURATION, S(timeout), "1s", 10, 60000, NULL,
      "longest wait for one state store request" },
    { .name = NULL },
};
#undef S

const struct filter_common *filter_instance_common(const struct filter_instance_settings *f)
{
    return f->settings;
}

const char *filter_instance_id(const struct filter_instance_settings *f)
{
    const struct filter_common *c = f->settings;

    return c->id != NULL ? c->id : f->module->name;
}

static int load_one(struct filter_config *fc, const config_setting_t *g, struct cfg_errors *errs)
{
    const char *name = NULL;
    const struct filter_module *m;
    struct filter_instance_settings *f;
    size_t before = errs->count;

    if (config_setting_lookup_string(g, "name", &name) != CONFIG_TRUE) {
        cfg_error_add(errs, g, "filter without a name");
        return 1;
    }
    if ((m = filter_module_find(name)) == NULL) {
        cfg_error_add(errs, config_setting_get_member(g, "name"), "unknown filter \"%s\"", name);
        return 1;
    }
    f = &fc->filters[fc->count];
    if ((f->settings = calloc(1, m->settings_size)) == NULL)
        return 1;
    f->module = m;
    fc->count++;
    cfg_section_load(g, m->keys, f->settings, errs);
    if (m->load != NULL)
        m->load(f->settings, g, errs);
    fc->uses_kv = fc->uses_kv || m->uses_kv;
    for (size_t i = 0; i + 1 < fc->count; i++) {
        if (strcmp(filter_instance_id(&fc->filters[i]), filter_instance_id(f)) == 0)
            cfg_error_add(errs, g, "filter id \"%s\" used twice (give one an id)",
                          filter_instance_id(f));
    }
    return (int)(errs->count - before);
}

static int load_filters(struct filter_config *fc, const config_t *cf, struct cfg_errors *errs)
{
    const config_setting_t *fs = config_lookup(cf, "filters");
    int n = fs == NULL ? 0 : config_setting_length(fs), bad = 0;

    if (fs == NULL)
        return 0;
    if (config_setting_type(fs) != CONFIG_TYPE_LIST) {
        cfg_error_add(errs, fs, "filters must be a list ( { ... }, { ... } )");
        return 1;
    }
    if (n == 0 || (fc->filters = calloc((size_t)n, sizeof(*fc->filters))) == NULL)
        return 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(fs, i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            cfg_error_add(errs, g, "each filter must be a group { ... }");
            bad++;
        } else {
            bad += load_one(fc, g, errs);
        }
    }
    return bad;
}

int filter_config_load(struct filter_config *fc, const config_t *cf, struct cfg_errors *errs)
{
    int bad = load_filters(fc, cf, errs);

    bad += cfg_section_load(config_lookup(cf, "state"), state_keys, &fc->state, errs);
    bad += policy_settings_load(&fc->policy, config_lookup(cf, "policy"), errs);
    return bad;
}

void filter_config_free(struct filter_config *fc)
{
    for (size_t i = 0; i < fc->count; i++) {
        struct filter_instance_settings *f = &fc->filters[i];
        if (f->module->free_settings != NULL)
            f->module->free_settings(f->settings);
        cfg_section_free(f->module->keys, f->settings);
        free(f->settings);
    }
    free(fc->filters);
    cfg_section_free(state_keys, &fc->state);
    cfg_section_free(policy_keys, &fc->policy);
    memset(fc, 0, sizeof(*fc));
}

void filter_config_describe(FILE *out)
{
    char section[64];

    for (size_t i = 0; filter_modules[i] != NULL; i++) {
        snprintf(section, sizeof(section), "filters.%s", filter_modules[i]->name);
        cfg_section_describe(out, section, filter_modules[i]->keys);
        if (filter_modules[i]->describe != NULL)
            filter_modules[i]->describe(out);
    }
    cfg_section_describe(out, "state", state_keys);
    policy_settings_describe(out);
}

static int find_id(const struct filter_config *fc, const char *id)
{
    for (size_t i = 0; i < fc->count; i++) {
        if (strcmp(filter_instance_id(&fc->filters[i]), id) == 0)
            return (int)i;
    }
    return -1;
}

int filter_config_chain(const struct filter_config *fc, const struct cfg_strlist *names,
                        const config_setting_t *where, size_t **out, struct cfg_errors *errs)
{
    size_t n = 0;

    *out = NULL;
    if (names->count == 1 && strcmp(names->items[0], "none") == 0)
        return 0;
    if ((*out = calloc(fc->count + names->count + 1, sizeof(**out))) == NULL)
        return -1;
    if (names->count == 0) {
        for (; n < fc->count; n++)
            (*out)[n] = n;
        return (int)n;
    }
    for (size_t i = 0; i < names->count; i++) {
        int idx = find_id(fc, names->items[i]);
        if (idx < 0) {
            cfg_error_add(errs, where, "no filter with id \"%s\" in filters", names->items[i]);
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[n++] = (size_t)idx;
    }
    return (int)n;
}
