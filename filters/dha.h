/*
 * dha — directory harvest attack throttling: unknown recipients counted per client.
 * (Skeleton: the module is registered; the checks are being written.)
 */
#ifndef POSTERN_DHA_H
#define POSTERN_DHA_H

#include "filters/filter.h"
#include "filters/module.h"

struct dha_settings {
    struct filter_common common;
};

extern const struct filter_module dha_module;

#endif
