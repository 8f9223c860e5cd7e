/*
 * greylist — greylisting of (client network, sender, recipient) triplets on the state store.
 * (Skeleton: the module is registered; the checks are being written.)
 */
#ifndef POSTERN_GREYLIST_H
#define POSTERN_GREYLIST_H

#include "filters/filter.h"
#include "filters/module.h"

struct greylist_settings {
    struct filter_common common;
};

extern const struct filter_module greylist_module;

#endif
