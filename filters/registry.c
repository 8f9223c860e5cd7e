/*
 * registry — the table of filter modules (module.h). Adding a filter means
 * adding its module here and its file to filters/local.mk.
 */
#include "config.h"
#include "filters/module.h"

#include <string.h>

#include "filters/attachments.h"
#include "filters/clamd.h"
#include "filters/dha.h"
#include "filters/dkim.h"
#include "filters/dmarc.h"
#include "filters/dnsbl.h"
#include "filters/greylist.h"
#include "filters/milter.h"
#include "filters/ratelimit.h"
#include "filters/spamd.h"
#include "filters/spf.h"

/* The order of enum filter_on_error (filter.h). */
const char *const filter_on_error_values[] = { "tempfail", "accept", "skip", "reject", NULL };

const struct filter_module *const filter_modules[] = {
    &dnsbl_module,
    &greylist_module,
    &ratelimit_module,
    &dha_module,
    &spamd_module,
    &spf_module,
    &clamd_module,
    &dkim_module,
    &dmarc_module,
    &milter_module,
    &attachments_module,
    NULL,
};

const struct filter_module *filter_module_find(const char *name)
{
    for (size_t i = 0; filter_modules[i] != NULL; i++) {
        if (strcmp(filter_modules[i]->name, name) == 0)
            return filter_modules[i];
    }
    return NULL;
}
