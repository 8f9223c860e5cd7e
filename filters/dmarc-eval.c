/*
 * dmarc-eval — what a dmarc call concludes (dmarc-private.h): the record
 * and the identifiers handed to libopendmarc (on the loop: it only compares
 * strings and reads its suffix table), pct=, the symbols, the action, the
 * Authentication-Results field and the removal of forged ones; and the two
 * helpers dmarc.h exports (the record among TXT answers, the SPF result
 * among the symbols).
 */
#include "config.h"
#include "filters/dmarc-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendmarc/dmarc.h>

#include "filters/dkim-authres.h"
#include "lib/log.h"

/* What the evaluation found. */
struct verdict {
    const char *result; /* pass, fail, none, temperror, permerror */
    char policy[16];    /* reject, quarantine, none ("" without a record) */
    enum dmarc_disposition dis;
    int pct;
    bool sampled_out;
};

/* ---- records and SPF ---- */

int dmarc_pick_record(const char *const *txt, size_t n)
{
    int found = -1;

    for (size_t i = 0; i < n; i++) {
        const char *t = txt[i];
        while (*t == ' ' || *t == '\t')
            t++;
        if (strncasecmp(t, "v=DMARC1", 8) != 0 || strchr("; \t", t[8]) == NULL)
            continue;
        if (found >= 0)
            return -2;
        found = (int)i;
    }
    return found;
}

int dmarc_spf_result(const struct filter_symbol *symbols, size_t n, const char *fallback,
                     const char **result, char *domain, size_t size)
{
    static const char *const names[] = {"PASS", "FAIL",      "SOFTFAIL", "NEUTRAL",
                                        "NONE", "TEMPERROR", "PERMERROR"};
    static const char *const results[] = {"pass", "fail",      "softfail", "neutral",
                                          "none", "temperror", "permerror"};

    for (size_t i = 0; i < n; i++) {
        const char *name = symbols[i].name, *text = symbols[i].text;
        if (strncmp(name, "SPF_", 4) != 0)
            continue;
        for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
            if (strcmp(name + 4, names[j]) != 0)
                continue;
            if (strncmp(text, "domain=", 7) == 0)
                text += 7;
            snprintf(domain, size, "%.*s", (int)strcspn(text, " ;"), text);
            if (!dkim_domain_ok(domain))
                snprintf(domain, size, "%s", fallback != NULL ? fallback : "");
            if (!dkim_domain_ok(domain))
                domain[0] = '\0';
            *result = results[j];
            return 1;
        }
    }
    return 0;
}

/* The domain of an address "local@domain", or "". */
static const char *domain_of(const char *addr)
{
    const char *at = addr != NULL ? strrchr(addr, '@') : NULL;

    return at != NULL ? at + 1 : "";
}

/* ---- the evaluation ---- */

static int spf_outcome(const char *result)
{
    if (strcmp(result, "pass") == 0)
        return DMARC_POLICY_SPF_OUTCOME_PASS;
    if (strcmp(result, "fail") == 0 || strcmp(result, "softfail") == 0)
        return DMARC_POLICY_SPF_OUTCOME_FAIL;
    if (strcmp(result, "temperror") == 0)
        return DMARC_POLICY_SPF_OUTCOME_TMPFAIL;
    return DMARC_POLICY_SPF_OUTCOME_NONE;
}

static int dkim_outcome(enum dkim_outcome o)
{
    switch (o) {
    case DKIM_OUTCOME_PASS:
        return DMARC_POLICY_DKIM_OUTCOME_PASS;
    case DKIM_OUTCOME_TEMPERROR:
        return DMARC_POLICY_DKIM_OUTCOME_TMPFAIL;
    default:
        return DMARC_POLICY_DKIM_OUTCOME_FAIL;
    }
}

/* Hands the identifiers to libopendmarc. */
static void store_identifiers(struct dmarc_call *dc, DMARC_POLICY_T *p)
{
    const struct filter_txn *txn = filter_call_txn(dc->call);
    const char *result, *fallback = domain_of(txn->sender);
    bool helo = txn->sender == NULL || txn->sender[0] == '\0';
    char domain[DKIM_DOMAIN_MAX + 1];

    if (helo)
        fallback = txn->helo;
    if (dmarc_spf_result(txn->symbols, txn->symbol_count, fallback, &result, domain,
                         sizeof(domain)) &&
        domain[0] != '\0')
        (void)opendmarc_policy_store_spf(
            p, (u_char *)domain, spf_outcome(result),
            helo ? DMARC_POLICY_SPF_ORIGIN_HELO : DMARC_POLICY_SPF_ORIGIN_MAILFROM, NULL);
    for (size_t i = 0; i < dc->nsig; i++) {
        struct dkim_sig_result *r = &dc->sigs[i];
        if (r->domain[0] != '\0')
            (void)opendmarc_policy_store_dkim(p, (u_char *)r->domain, (u_char *)r->selector,
                                              dkim_outcome(r->outcome), (u_char *)r->why);
    }
}

static const char *disposition_name(enum dmarc_disposition d)
{
    return d == DMARC_DISP_REJECT ? "reject" : d == DMARC_DISP_QUARANTINE ? "quarantine" : "none";
}

/* The policy the record asks for this domain: sp= for a subdomain whose
 * record is the organizational domain's (when given), else p=. */
static const char *record_policy(const struct dmarc_call *dc, DMARC_POLICY_T *p)
{
    int pol = DMARC_RECORD_P_UNSPECIFIED, sp = DMARC_RECORD_P_UNSPECIFIED;

    (void)opendmarc_policy_fetch_p(p, &pol);
    if (dc->record_at_org && opendmarc_policy_fetch_sp(p, &sp) == DMARC_PARSE_OKAY &&
        sp != DMARC_RECORD_P_UNSPECIFIED)
        pol = sp;
    return pol == DMARC_RECORD_P_REJECT       ? "reject"
           : pol == DMARC_RECORD_P_QUARANTINE ? "quarantine"
                                              : "none";
}

/* pct= (§6.6.4): a message it leaves out gets the next weaker policy. */
static void apply_pct(const struct dmarc_filter *f, DMARC_POLICY_T *p, struct verdict *v)
{
    int pct = 100;

    if (opendmarc_policy_fetch_pct(p, &pct) != DMARC_PARSE_OKAY || pct < 0 || pct > 100)
        pct = 100;
    v->pct = pct;
    if (!f->cfg.honour_pct || pct >= 100 || v->dis == DMARC_DISP_NONE ||
        arc4random_uniform(100) < (unsigned)pct)
        return;
    v->sampled_out = true;
    v->dis = v->dis == DMARC_DISP_REJECT ? DMARC_DISP_QUARANTINE : DMARC_DISP_NONE;
}

static void evaluate(struct dmarc_call *dc, struct verdict *v)
{
    const struct filter_txn *txn = filter_call_txn(dc->call);
    const char *ip = txn->client_addr != NULL ? txn->client_addr : "0.0.0.0";
    DMARC_POLICY_T *p = opendmarc_policy_connect_init((u_char *)ip, strchr(ip, ':') != NULL);
    int pol;

    *v = (struct verdict){.result = "none", .dis = DMARC_DISP_NONE, .pct = 100};
    if (p == NULL) {
        v->result = "temperror";
        return;
    }
    if (opendmarc_policy_store_from_domain(p, (u_char *)dc->from) != DMARC_PARSE_OKAY ||
        opendmarc_policy_store_dmarc(p, (u_char *)dc->record_txt, (u_char *)dc->from,
                                     dc->record_at_org ? (u_char *)dc->org : NULL) !=
            DMARC_PARSE_OKAY) {
        dc->record_why = "bad record";
        opendmarc_policy_connect_shutdown(p);
        return;
    }
    store_identifiers(dc, p);
    pol = opendmarc_get_policy_to_enforce(p);
    if (pol == DMARC_POLICY_PASS || pol == DMARC_POLICY_REJECT || pol == DMARC_POLICY_QUARANTINE ||
        pol == DMARC_POLICY_NONE) {
        v->result = pol == DMARC_POLICY_PASS ? "pass" : "fail";
        v->dis = pol == DMARC_POLICY_REJECT       ? DMARC_DISP_REJECT
                 : pol == DMARC_POLICY_QUARANTINE ? DMARC_DISP_QUARANTINE
                                                  : DMARC_DISP_NONE;
        snprintf(v->policy, sizeof(v->policy), "%s", record_policy(dc, p));
        if (pol == DMARC_POLICY_PASS)
            v->dis = DMARC_DISP_NONE;
        else
            apply_pct(dc->f, p, v);
    }
    opendmarc_policy_connect_shutdown(p);
}

/* ---- findings ---- */

/* snprintf that may cut (symbol texts and replies are bounded on purpose). */
static void textf(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void textf(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

static void act(struct dmarc_call *dc, enum dmarc_disposition d, const char *why)
{
    if (d == DMARC_DISP_REJECT)
        filter_call_action(dc->call, FILTER_ACTION_REJECT, 550, "5.7.1", "%s", why);
    else if (d == DMARC_DISP_QUARANTINE)
        filter_call_action(dc->call, FILTER_ACTION_QUARANTINE, 0, NULL, "%s", why);
}

static void findings(struct dmarc_call *dc, const struct verdict *v)
{
    const struct dmarc_settings *c = &dc->f->cfg;
    char text[FILTER_SYMBOL_TEXT_MAX], why[200];
    enum dmarc_disposition d;

    if (strcmp(v->result, "pass") == 0) {
        filter_call_symbol(dc->call, "DMARC_PASS", c->score_pass, dc->from);
    } else if (strcmp(v->result, "fail") == 0) {
        if (v->sampled_out)
            textf(text, sizeof(text), "%s policy=%s pct=%d applied=%s", dc->from, v->policy, v->pct,
                  disposition_name(v->dis));
        else
            textf(text, sizeof(text), "%s policy=%s", dc->from, v->policy);
        filter_call_symbol(dc->call, "DMARC_FAIL", c->score_fail, text);
        d = v->dis == DMARC_DISP_REJECT       ? (enum dmarc_disposition)c->reject_action
            : v->dis == DMARC_DISP_QUARANTINE ? (enum dmarc_disposition)c->quarantine_action
                                              : DMARC_DISP_NONE;
        textf(why, sizeof(why), "Message rejected by the DMARC policy of %s", dc->from);
        act(dc, d, why);
    } else if (strcmp(v->result, "temperror") == 0) {
        textf(text, sizeof(text), "%s: %s", dc->from, dc->record_why);
        filter_call_symbol(dc->call, "DMARC_TEMPERROR", c->score_temperror, text);
        if (c->temperror_action == DMARC_TEMP_TEMPFAIL)
            filter_call_action(dc->call, FILTER_ACTION_TEMPFAIL, 451, "4.7.1",
                               "DMARC policy of %s temporarily unavailable", dc->from);
    } else {
        textf(text, sizeof(text), "%s%s%s", dc->from, dc->record_why != NULL ? ": " : "",
              dc->record_why != NULL ? dc->record_why : "");
        filter_call_symbol(dc->call, "DMARC_NONE", c->score_none, text);
    }
}

static void add_authres(struct dmarc_call *dc, const struct verdict *v)
{
    const struct filter_txn *txn = filter_call_txn(dc->call);
    bool helo = txn->sender == NULL || txn->sender[0] == '\0';
    char domain[DKIM_DOMAIN_MAX + 1], comment[64];
    const char *spf;
    struct authres a;

    authres_init(&a, dc->f->hostname);
    if (dmarc_spf_result(txn->symbols, txn->symbol_count, helo ? txn->helo : domain_of(txn->sender),
                         &spf, domain, sizeof(domain))) {
        struct authres_prop prop = {helo ? "smtp.helo" : "smtp.mailfrom", domain};
        authres_add(&a, "spf", spf, NULL, &prop, 1);
    }
    if (v != NULL && dc->nsig == 0)
        authres_add(&a, "dkim", "none", NULL, NULL, 0);
    for (size_t i = 0; v != NULL && i < dc->nsig; i++)
        authres_add_dkim(&a, &dc->sigs[i]);
    struct authres_prop from = {"header.from", dc->from};
    if (v == NULL) {
        authres_add(&a, "dmarc", "permerror", dc->bad_from, NULL, 0);
    } else {
        comment[0] = '\0';
        if (v->policy[0] != '\0')
            textf(comment, sizeof(comment), "p=%s dis=%s", v->policy, disposition_name(v->dis));
        authres_add(&a, "dmarc", v->result, comment, &from, 1);
    }
    if (filter_call_add_header(dc->call, "Authentication-Results", authres_value(&a)) < 0)
        log_warning("dmarc: cannot add Authentication-Results");
}

/* Removes the fields that claim our authserv-id, last first, so that the
 * indexes hold whether or not the edits renumber. */
static void remove_forged(struct dmarc_call *dc)
{
    size_t removed = 0;
    char text[FILTER_SYMBOL_TEXT_MAX];

    if (dc->forged_count == 0)
        return;
    for (size_t i = dc->forged_count; i-- > 0;)
        removed +=
            filter_call_change_header(dc->call, "Authentication-Results", dc->forged[i], NULL) == 0;
    if (removed < dc->forged_count) {
        const char *qid = filter_call_txn(dc->call)->queue_id;
        log_warning("%s: dmarc: %zu Authentication-Results field(s) claiming %s not removed",
                    qid != NULL ? qid : "-", dc->forged_count - removed, dc->f->hostname);
        textf(text, sizeof(text), "removed %zu of %zu", removed, dc->forged_count);
    } else {
        textf(text, sizeof(text), "removed %zu", removed);
    }
    filter_call_symbol(dc->call, "DMARC_FORGED_AUTHRES", 0, text);
}

void dmarc_conclude(struct dmarc_call *dc, bool evaluated)
{
    struct filter_call *call = dc->call;
    const struct dmarc_settings *c = &dc->f->cfg;
    struct verdict v;
    char why[200];

    remove_forged(dc);
    if (dc->bad_from != NULL) {
        filter_call_symbol(call, "DMARC_BAD_FROM", c->score_bad_from, dc->bad_from);
        textf(why, sizeof(why), "Message must have exactly one From: address (%s)", dc->bad_from);
        act(dc, (enum dmarc_disposition)c->bad_from_action, why);
        if (c->authres)
            add_authres(dc, NULL);
    } else if (evaluated) {
        if (dc->record == RECORD_FOUND) {
            evaluate(dc, &v);
        } else {
            v = (struct verdict){.result = dc->record == RECORD_TEMPERROR ? "temperror" : "none",
                                 .dis = DMARC_DISP_NONE,
                                 .pct = 100};
        }
        findings(dc, &v);
        if (c->authres)
            add_authres(dc, &v);
    }
}
