/*
 * spf-config — the spf filter's module (module.h): its config table, the
 * checks the table alone cannot make (lookup_timeout shorter than the
 * filter's timeout, the explanation an SPF macro string that libspf2
 * compiles), each an error naming the setting's line; and the instances
 * made per worker (spf.c), with the worker's resolver and host name.
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/spf.h"

#include "filters/spf-eval.h"

#define S(field) offsetof(struct spf_settings, field)
#define SCORE(key, out, def, doc) \
    { key, CFG_DOUBLE, S(out), def, -1000000, 1000000, NULL, doc }
static const struct cfg_key spf_keys[] = {
    FILTER_COMMON_KEYS("skip", "20s"),
    { "check_helo", CFG_BOOL, S(check_helo), "yes", 0, 0, NULL,
      "check the HELO/EHLO name too (symbols SPF_HELO_*)" },
    { "reject_fail", CFG_BOOL, S(reject_fail), "no", 0, 0, NULL,
      "refuse MAIL with 550 5.7.23 and the domain's explanation when its check fails" },
    { "add_header", CFG_BOOL, S(add_header), "yes", 0, 0, NULL,
      "add a Received-SPF header field with the MAIL FROM result" },
    { "skip_authenticated", CFG_BOOL, S(skip_authenticated), "yes", 0, 0, NULL,
      "no check for authenticated clients" },
    { "skip_trusted", CFG_BOOL, S(skip_trusted), "yes", 0, 0, NULL,
      "no check for clients in relay.trusted_networks" },
    { "lookup_timeout", CFG_DURATION, S(lookup_timeout), "15s", 100, 600000, NULL,
      "longest one check may wait for DNS in all; then temperror (below timeout)" },
    { "threads", CFG_INT, S(threads), "4", 1, 256, NULL,
      "threads per worker that run the checks (libspf2 blocks)" },
    { "explanation", CFG_STRING, S(explanation), "%{c} is not allowed to send mail from %{o}",
      0, 0, NULL, "the explanation of a fail when the domain gives none (SPF macros)" },
    SCORE("score_pass", score[SPF_OUT_PASS], "-0.5", "score of SPF_PASS"),
    SCORE("score_fail", score[SPF_OUT_FAIL], "5", "score of SPF_FAIL"),
    SCORE("score_softfail", score[SPF_OUT_SOFTFAIL], "2", "score of SPF_SOFTFAIL"),
    SCORE("score_neutral", score[SPF_OUT_NEUTRAL], "0", "score of SPF_NEUTRAL"),
    SCORE("score_none", score[SPF_OUT_NONE], "0", "score of SPF_NONE"),
    SCORE("score_temperror", score[SPF_OUT_TEMPERROR], "0", "score of SPF_TEMPERROR"),
    SCORE("score_permerror", score[SPF_OUT_PERMERROR], "0", "score of SPF_PERMERROR"),
    SCORE("helo_score_pass", helo_score[SPF_OUT_PASS], "0", "score of SPF_HELO_PASS"),
    SCORE("helo_score_fail", helo_score[SPF_OUT_FAIL], "2", "score of SPF_HELO_FAIL"),
    SCORE("helo_score_softfail", helo_score[SPF_OUT_SOFTFAIL], "1", "score of SPF_HELO_SOFTFAIL"),
    SCORE("helo_score_neutral", helo_score[SPF_OUT_NEUTRAL], "0", "score of SPF_HELO_NEUTRAL"),
    SCORE("helo_score_none", helo_score[SPF_OUT_NONE], "0", "score of SPF_HELO_NONE"),
    SCORE("helo_score_temperror", helo_score[SPF_OUT_TEMPERROR], "0",
          "score of SPF_HELO_TEMPERROR"),
    SCORE("helo_score_permerror", helo_score[SPF_OUT_PERMERROR], "0",
          "score of SPF_HELO_PERMERROR"),
    { .name = NULL },
};
#undef SCORE
#undef S

/* The setting of a key of group for error lines (the group when unset). */
static const config_setting_t *key_or_group(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = config_setting_get_member(g, key);

    return s != NULL ? s : g;
}

static void spf_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct spf_settings *f = settings;
    char why[256];

    if (f->lookup_timeout >= f->common.timeout)
        cfg_error_add(errs, key_or_group(g, "lookup_timeout"),
                      "spf: lookup_timeout (%lld ms) must be shorter than timeout (%lld ms)",
                      f->lookup_timeout, f->common.timeout);
    if (f->explanation != NULL && spf_explanation_check(f->explanation, why, sizeof(why)) < 0)
        cfg_error_add(errs, key_or_group(g, "explanation"), "spf: explanation: %s", why);
}

static int spf_create(const struct filter_env *env, const void *settings, void **instance,
                      char *error, size_t errsize)
{
    return spf_new(env->base, env->dns, env->hostname, settings, (struct spf **)instance, error,
                   errsize);
}

static void spf_destroy(void *instance)
{
    struct spf *s = instance;

    spf_free(&s);
}

const struct filter_module spf_module = {
    .name = "spf",
    .ops = &spf_filter_ops,
    .keys = spf_keys,
    .settings_size = sizeof(struct spf_settings),
    .load = spf_load,
    .create = spf_create,
    .destroy = spf_destroy,
};
