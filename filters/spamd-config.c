/*
 * spamd-config — the spamd filter's module (module.h): its config table
 * (filters.spamd) and the checks the table cannot make (the address's
 * form, a safe User: name), each an error naming the setting's line; and
 * the instances made per worker (spamd.c).
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/spamd.h"

#include <stdlib.h>
#include <string.h>

static const char *const command_values[] = {"symbols", "report", "headers", NULL};

#define S(field) offsetof(struct spamd_settings, field)
static const struct cfg_key spamd_keys[] = {
    FILTER_COMMON_KEYS("skip", "15s"),
    {"address", CFG_STRING, S(address), "127.0.0.1:783", 0, 0, NULL,
     "spamd: \"host:port\", \"[v6]:port\" or a unix socket path"},
    {"command", CFG_ENUM, S(command), "symbols", 0, 0, command_values,
     "the spamd command: symbols, report (rule points too) or headers"},
    {"user", CFG_STRING, S(user), "", 0, 0, NULL,
     "User: for spamd's per-user preferences: a name, \"recipient\" (first recipient's "
     "local part) or \"\" (none)"},
    {"max_size", CFG_SIZE, S(max_size), "500K", 1, 1LL << 30, NULL,
     "larger messages are not scanned (SPAMD_SKIPPED_SIZE)"},
    {"skip_trusted", CFG_BOOL, S(skip_trusted), "no", 0, 0, NULL,
     "no scan for clients in relay.trusted_networks"},
    {"skip_authenticated", CFG_BOOL, S(skip_authenticated), "no", 0, 0, NULL,
     "no scan for authenticated clients"},
    {.name = NULL},
};
#undef S

/* The setting of a key of group for error lines (the group when unset). */
static const config_setting_t *key_or_group(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = config_setting_get_member(g, key);

    return s != NULL ? s : g;
}

static void spamd_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    const struct spamd_settings *f = settings;
    struct sockaddr_storage sa;
    const char *why = "";
    int salen;

    if (f->address == NULL || spamd_parse_address(f->address, &sa, &salen, &why) < 0)
        cfg_error_add(errs, key_or_group(g, "address"), "spamd: address \"%s\": %s",
                      f->address != NULL ? f->address : "", f->address != NULL ? why : "unset");
    if (f->user != NULL && f->user[0] != '\0' && strcmp(f->user, SPAMD_USER_RECIPIENT) != 0 &&
        !spamd_user_ok(f->user))
        cfg_error_add(errs, key_or_group(g, "user"),
                      "spamd: user \"%s\" is not a safe name (1..%d of A-Z a-z 0-9 . _ + = @ -, "
                      "not starting with - or .)",
                      f->user, SPAMD_USER_MAX);
}

static int spamd_create(const struct filter_env *env, const void *settings, void **instance,
                        char *error, size_t errsize)
{
    return spamd_new(env->base, settings, (struct spamd **)instance, error, errsize);
}

static void spamd_destroy(void *instance)
{
    struct spamd *sd = instance;

    spamd_free(&sd);
}

const struct filter_module spamd_module = {
    .name = "spamd",
    .ops = &spamd_filter_ops,
    .keys = spamd_keys,
    .settings_size = sizeof(struct spamd_settings),
    .load = spamd_load,
    .create = spamd_create,
    .destroy = spamd_destroy,
};
