/*
 * greylist — see greylist.h.
 */
#include "config.h"
#include "filters/greylist.h"

#include <stdlib.h>

struct greylist {
    const struct filter_env *env;
};

static const struct cfg_key greylist_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    { .name = NULL },
};

static int greylist_create(const struct filter_env *env, const void *settings, void **instance,
                       char *error, size_t errsize)
{
    struct greylist *g = calloc(1, sizeof(*g));

    (void)settings;
    (void)error;
    (void)errsize;
    if (g == NULL)
        return -1;
    g->env = env;
    *instance = g;
    return 0;
}

static void greylist_destroy(void *instance)
{
    free(instance);
}

static void greylist_cancel(void *instance, struct filter_call *call)
{
    (void)instance;
    (void)call;
}

static const struct filter_ops greylist_ops = {
    .name = "greylist",
    .cancel = greylist_cancel,
};

const struct filter_module greylist_module = {
    .name = "greylist",
    .ops = &greylist_ops,
    .keys = greylist_keys,
    .settings_size = sizeof(struct greylist_settings),
    .uses_kv = true,
    .create = greylist_create,
    .destroy = greylist_destroy,
};
