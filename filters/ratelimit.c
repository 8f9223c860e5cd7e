/*
 * ratelimit — see ratelimit.h.
 */
#include "config.h"
#include "filters/ratelimit.h"

#include <stdlib.h>

struct ratelimit {
    const struct filter_env *env;
};

static const struct cfg_key ratelimit_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    { .name = NULL },
};

static int ratelimit_create(const struct filter_env *env, const void *settings, void **instance,
                       char *error, size_t errsize)
{
    struct ratelimit *g = calloc(1, sizeof(*g));

    (void)settings;
    (void)error;
    (void)errsize;
    if (g == NULL)
        return -1;
    g->env = env;
    *instance = g;
    return 0;
}

static void ratelimit_destroy(void *instance)
{
    free(instance);
}

static void ratelimit_cancel(void *instance, struct filter_call *call)
{
    (void)instance;
    (void)call;
}

static const struct filter_ops ratelimit_ops = {
    .name = "ratelimit",
    .cancel = ratelimit_cancel,
};

const struct filter_module ratelimit_module = {
    .name = "ratelimit",
    .ops = &ratelimit_ops,
    .keys = ratelimit_keys,
    .settings_size = sizeof(struct ratelimit_settings),
    .uses_kv = true,
    .create = ratelimit_create,
    .destroy = ratelimit_destroy,
};
