/*
 * dha — see dha.h.
 */
#include "config.h"
#include "filters/dha.h"

#include <stdlib.h>

struct dha {
    const struct filter_env *env;
};

static const struct cfg_key dha_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    { .name = NULL },
};

static int dha_create(const struct filter_env *env, const void *settings, void **instance,
                       char *error, size_t errsize)
{
    struct dha *g = calloc(1, sizeof(*g));

    (void)settings;
    (void)error;
    (void)errsize;
    if (g == NULL)
        return -1;
    g->env = env;
    *instance = g;
    return 0;
}

static void dha_destroy(void *instance)
{
    free(instance);
}

static void dha_cancel(void *instance, struct filter_call *call)
{
    (void)instance;
    (void)call;
}

static const struct filter_ops dha_ops = {
    .name = "dha",
    .cancel = dha_cancel,
};

const struct filter_module dha_module = {
    .name = "dha",
    .ops = &dha_ops,
    .keys = dha_keys,
    .settings_size = sizeof(struct dha_settings),
    .uses_kv = true,
    .create = dha_create,
    .destroy = dha_destroy,
};
