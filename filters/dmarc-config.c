/*
 * dmarc-config — the dmarc filter's module (module.h): its config table
 * (filters.dmarc), the check the table alone cannot make (the public
 * suffix list is readable), and the instances made per worker (dmarc.c).
 *
 * Trusts libconfig and lib/cfg for types and ranges.
 */
#include "config.h"
#include "filters/dmarc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const disposition_values[] = {"reject", "quarantine", "none", NULL};
static const char *const temperror_values[] = {"none", "tempfail", NULL};

#define S(field) offsetof(struct dmarc_settings, field)
static const struct cfg_key dmarc_keys[] = {
    FILTER_COMMON_KEYS("skip", "10s"),
    { "reject_action", CFG_ENUM, S(reject_action), "reject", 0, 0, disposition_values,
      "what a failure under p=reject does: reject (550 5.7.1), quarantine, none" },
    { "quarantine_action", CFG_ENUM, S(quarantine_action), "quarantine", 0, 0,
      disposition_values, "what a failure under p=quarantine does: reject, quarantine, none" },
    { "bad_from_action", CFG_ENUM, S(bad_from_action), "reject", 0, 0, disposition_values,
      "what a message without exactly one From: address gets: reject, quarantine, none" },
    { "temperror_action", CFG_ENUM, S(temperror_action), "none", 0, 0, temperror_values,
      "what a failed DMARC record lookup does: none (symbol only) or tempfail (451)" },
    { "honour_pct", CFG_BOOL, S(honour_pct), "yes", 0, 0, NULL,
      "apply pct=: the messages it leaves out get the next weaker policy" },
    { "skip_outbound", CFG_BOOL, S(skip_outbound), "yes", 0, 0, NULL,
      "no DMARC evaluation of outbound mail (authenticated, trusted, submission)" },
    { "authres", CFG_BOOL, S(authres), "yes", 0, 0, NULL,
      "add Authentication-Results (spf, dkim, dmarc) with server.hostname as authserv-id" },
    { "remove_forged_authres", CFG_BOOL, S(remove_forged_authres), "yes", 0, 0, NULL,
      "remove Authentication-Results fields of the message that claim server.hostname" },
    { "score_pass", CFG_DOUBLE, S(score_pass), "-0.5", -1000, 1000, NULL,
      "score of DMARC_PASS" },
    { "score_fail", CFG_DOUBLE, S(score_fail), "2", -1000, 1000, NULL, "score of DMARC_FAIL" },
    { "score_none", CFG_DOUBLE, S(score_none), "0", -1000, 1000, NULL,
      "score of DMARC_NONE (no usable record)" },
    { "score_temperror", CFG_DOUBLE, S(score_temperror), "0", -1000, 1000, NULL,
      "score of DMARC_TEMPERROR" },
    { "score_bad_from", CFG_DOUBLE, S(score_bad_from), "3", -1000, 1000, NULL,
      "score of DMARC_BAD_FROM" },
    { "public_suffix_list", CFG_STRING, S(public_suffix_list),
      "/usr/share/publicsuffix/public_suffix_list.dat", 0, 0, NULL,
      "the public suffix list, for organizational domains (Debian package publicsuffix)" },
    { "max_signatures", CFG_INT, S(max_signatures), "8", 1, 64, NULL,
      "DKIM signatures verified per message for alignment" },
    { "min_key_bits", CFG_INT, S(min_key_bits), "1024", 512, 16384, NULL,
      "smaller DKIM RSA keys do not count" },
    { "max_header_size", CFG_SIZE, S(max_header_size), "256K", 1024, 16 << 20, NULL,
      "longest header section read (longer: an error of the filter)" },
    { "threads", CFG_INT, S(threads), "2", 1, 64, NULL,
      "threads per worker process that verify DKIM signatures" },
    { .name = NULL },
};
#undef S

static void dmarc_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct dmarc_settings *f = settings;
    const config_setting_t *s = config_setting_get_member(g, "public_suffix_list");

    if (f->public_suffix_list != NULL && access(f->public_suffix_list, R_OK) < 0)
        cfg_error_add(errs, s != NULL ? s : g,
                      "dmarc: public_suffix_list \"%s\": %s (apt-get install publicsuffix)",
                      f->public_suffix_list, strerror(errno));
}

static int dmarc_create(const struct filter_env *env, const void *settings, void **instance,
                        char *error, size_t errsize)
{
    return dmarc_filter_new(env, settings, (struct dmarc_filter **)instance, error, errsize);
}

static void dmarc_destroy(void *instance)
{
    struct dmarc_filter *f = instance;

    dmarc_filter_free(&f);
}

const struct filter_module dmarc_module = {
    .name = "dmarc",
    .ops = &dmarc_filter_ops,
    .keys = dmarc_keys,
    .settings_size = sizeof(struct dmarc_settings),
    .load = dmarc_load,
    .create = dmarc_create,
    .destroy = dmarc_destroy,
};
