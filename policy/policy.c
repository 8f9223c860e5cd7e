/*
 * policy — see policy.h. The config tables, the decision, and the header
 * lines of a tagged message.
 */
#include "config.h"
#include "policy/policy.h"

#include <string.h>

#define T(field) offsetof(struct policy_thresholds, field)
const struct cfg_key policy_threshold_keys[] = {
    { "tag_score", CFG_DOUBLE, T(tag_score), "0", -1000000, 1000000, NULL,
      "tag the message (X-Spam-Flag: YES) at this score (0 = never)" },
    { "hold_score", CFG_DOUBLE, T(hold_score), "0", -1000000, 1000000, NULL,
      "keep the message in the held queue at this score (0 = never)" },
    { "tempfail_score", CFG_DOUBLE, T(tempfail_score), "0", -1000000, 1000000, NULL,
      "451 4.7.1 at this score (0 = never)" },
    { "reject_score", CFG_DOUBLE, T(reject_score), "0", -1000000, 1000000, NULL,
      "554 5.7.1 at this score (0 = never)" },
    { .name = NULL },
};
#undef T

const struct cfg_key policy_keys[] = {
    { "inbound", CFG_GROUP, 0, NULL, 0, 0, NULL,
      "thresholds for mail from outside (see policy.inbound.*)" },
    { "outbound", CFG_GROUP, 0, NULL, 0, 0, NULL,
      "thresholds for authenticated and trusted clients (see policy.outbound.*)" },
    { "score_header", CFG_BOOL, offsetof(struct policy_settings, add_score_header), "yes", 0, 0,
      NULL, "add X-Spam-Status with the score and symbols to every accepted message" },
    { .name = NULL },
};

int policy_settings_load(struct policy_settings *p, const config_setting_t *group,
                         struct cfg_errors *errs)
{
    const config_setting_t *in = group == NULL ? NULL : config_setting_get_member(group, "inbound");
    const config_setting_t *out =
        group == NULL ? NULL : config_setting_get_member(group, "outbound");
    int n = cfg_section_load(group, policy_keys, p, errs);

    /* not a group: cfg_section_load said so; their keys keep their defaults */
    if (in != NULL && config_setting_type(in) != CONFIG_TYPE_GROUP)
        in = NULL;
    if (out != NULL && config_setting_type(out) != CONFIG_TYPE_GROUP)
        out = NULL;
    n += cfg_section_load(in, policy_threshold_keys, &p->inbound, errs);
    n += cfg_section_load(out, policy_threshold_keys, &p->outbound, errs);
    return n;
}

void policy_settings_describe(FILE *out)
{
    cfg_section_describe(out, "policy", policy_keys);
    cfg_section_describe(out, "policy.inbound", policy_threshold_keys);
    cfg_section_describe(out, "policy.outbound", policy_threshold_keys);
}

static bool reached(double threshold, double score)
{
    return threshold != 0 && score >= threshold;
}

void policy_decide(const struct policy_settings *p, enum filter_direction dir, bool final,
                   const struct chain_result *res, struct policy_decision *out)
{
    const struct policy_thresholds *t = dir == FILTER_OUTBOUND ? &p->outbound : &p->inbound;
    enum filter_action asked = res->action;

    memset(out, 0, sizeof(*out));
    /* hold, quarantine and discard asked at an earlier stage apply at the end */
    if (final && filter_action_stronger(res->txn_action, asked) &&
        asked != FILTER_ACTION_ACCEPT)
        asked = res->txn_action;
    else if (!final && (asked == FILTER_ACTION_HOLD || asked == FILTER_ACTION_QUARANTINE ||
                        asked == FILTER_ACTION_DISCARD))
        asked = FILTER_ACTION_NONE;
    out->action = asked;
    out->reply = res->reply;
    out->why = res->action_by;
    if (asked == FILTER_ACTION_ACCEPT)
        return; /* allow-listed: no score applies */

    enum filter_action by_score = FILTER_ACTION_NONE;
    if (reached(t->reject_score, res->score))
        by_score = FILTER_ACTION_REJECT;
    else if (reached(t->tempfail_score, res->score))
        by_score = FILTER_ACTION_TEMPFAIL;
    else if (final && reached(t->hold_score, res->score))
        by_score = FILTER_ACTION_HOLD;
    if (filter_action_stronger(by_score, out->action)) {
        out->action = by_score;
        out->why = "score";
        out->reply = (struct smtp_status){ .code = 0 };
        if (by_score == FILTER_ACTION_REJECT)
            smtp_status_set(&out->reply, 554, "5.7.1", "Message rejected as spam (score %.1f)",
                            res->score);
        else if (by_score == FILTER_ACTION_TEMPFAIL)
            smtp_status_set(&out->reply, 451, "4.7.1",
                            "Message deferred by policy (score %.1f), try again later",
                            res->score);
    }
    out->tag = final && reached(t->tag_score, res->score);
}

/* Appends text, folding before it when the line would pass 78 columns. */
static size_t append_folded(char *out, size_t size, size_t o, size_t *col, const char *text)
{
    size_t len = strlen(text);

    if (o >= size)
        return size;
    if (*col + len > 78 && *col > 1) {
        if (o + 3 >= size)
            return size;
        memcpy(out + o, "\r\n\t", 3);
        o += 3;
        *col = 1;
    }
    if (o + len >= size)
        return size;
    memcpy(out + o, text, len);
    *col += len;
    out[o + len] = '\0';
    return o + len;
}

int policy_headers(const struct policy_settings *p, const struct policy_decision *d,
                   const struct chain_result *res, const char *hostname, policy_header_fn *add,
                   void *ctx)
{
    char value[4096], word[FILTER_SYMBOL_NAME_MAX + 48];
    size_t o = 0, col = sizeof("X-Spam-Status: ") - 1;
    int n = 0;

    if (d->tag) {
        if (add(ctx, "X-Spam-Flag", "YES") < 0)
            return -1;
        n++;
    }
    if (!p->add_score_header)
        return n;
    snprintf(word, sizeof(word), "%s, score=%.1f", d->tag ? "Yes" : "No", res->score);
    o = append_folded(value, sizeof(value), o, &col, word);
    snprintf(word, sizeof(word), " by=%s", hostname);
    o = append_folded(value, sizeof(value), o, &col, word);
    for (size_t i = 0; i < res->symbol_count && o < sizeof(value); i++) {
        snprintf(word, sizeof(word), "%s%s(%g)%s", i == 0 ? " tests=" : "", res->symbols[i].name,
                 res->symbols[i].score, i + 1 < res->symbol_count ? "," : "");
        o = append_folded(value, sizeof(value), o, &col, word);
    }
    if (o >= sizeof(value))
        snprintf(value, sizeof(value), "%s, score=%.1f by=%s", d->tag ? "Yes" : "No",
                 res->score, hostname); /* too many symbols: the score alone */
    if (add(ctx, "X-Spam-Status", value) < 0)
        return -1;
    return n + 1;
}
