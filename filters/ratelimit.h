/*
 * ratelimit — token-bucket rate limits on the state store, inbound and outbound.
 * (Skeleton: the module is registered; the checks are being written.)
 */
#ifndef POSTERN_RATELIMIT_H
#define POSTERN_RATELIMIT_H

#include "filters/filter.h"
#include "filters/module.h"

struct ratelimit_settings {
    struct filter_common common;
};

extern const struct filter_module ratelimit_module;

#endif
