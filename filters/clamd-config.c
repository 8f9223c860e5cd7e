/*
 * clamd-config — the clamd filter's module (module.h): its config table
 * (a filters group with name = "clamd"), the check the table alone cannot
 * make (address required and well-formed, an error naming its line), and
 * the instances made per worker (clamd.c).
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/clamd.h"

#include <stdlib.h>

static const char *const action_values[] = {"reject", "quarantine", "none", NULL};
static const char *const size_action_values[] = {"accept", "tempfail", "reject", NULL};

#define S(field) offsetof(struct clamd_settings, field)
static const struct cfg_key clamd_keys[] = {
    FILTER_COMMON_KEYS("tempfail", "60s"),
    { "address", CFG_STRING, S(address), NULL, 0, 0, NULL,
      "clamd: \"127.0.0.1:3310\", \"[::1]:3310\" or \"/run/clamav/clamd.ctl\" (required)" },
    { "connect_timeout", CFG_DURATION, S(connect_timeout), "5s", 100, 600000, NULL,
      "longest wait for the connection to clamd" },
    { "max_size", CFG_SIZE, S(max_size), "25M", 1, 4294967295LL, NULL,
      "longer messages are not sent to clamd (symbol CLAMAV_SKIPPED_SIZE, size_action)" },
    { "size_action", CFG_ENUM, S(size_action), "accept", 0, 0, size_action_values,
      "for a message over max_size: accept (unscanned), tempfail or reject" },
    { "chunk_size", CFG_SIZE, S(chunk_size), "64K", 1024, 16777216, NULL,
      "octets per INSTREAM chunk" },
    { "action", CFG_ENUM, S(action), "reject", 0, 0, action_values,
      "for a virus: reject (554 5.7.1), quarantine or none (the symbol only)" },
    { "virus_score", CFG_DOUBLE, S(virus_score), "100", -1000000, 1000000, NULL,
      "score of the symbol CLAMAV_VIRUS" },
    { "clean_symbol", CFG_BOOL, S(clean_symbol), "yes", 0, 0, NULL,
      "add CLAMAV_CLEAN(0) to messages clamd found clean" },
    { .name = NULL },
};
#undef S

static void clamd_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct clamd_settings *f = settings;
    const config_setting_t *a = config_setting_get_member(g, "address");
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;

    if (f->address == NULL || f->address[0] == '\0') {
        cfg_error_add(errs, a != NULL ? a : g, "clamd: address is required");
        return;
    }
    if (clamd_address_parse(f->address, &ss, &len, &why) < 0)
        cfg_error_add(errs, a != NULL ? a : g, "clamd: address \"%s\": %s", f->address, why);
}

static int clamd_create(const struct filter_env *env, const void *settings, void **instance,
                        char *error, size_t errsize)
{
    return clamd_new(env->base, settings, (struct clamd **)instance, error, errsize);
}

static void clamd_destroy(void *instance)
{
    struct clamd *c = instance;

    clamd_free(&c);
}

const struct filter_module clamd_module = {
    .name = "clamd",
    .ops = &clamd_filter_ops,
    .keys = clamd_keys,
    .settings_size = sizeof(struct clamd_settings),
    .load = clamd_load,
    .create = clamd_create,
    .destroy = clamd_destroy,
};
