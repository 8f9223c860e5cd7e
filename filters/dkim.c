/*
 * dkim — see dkim.h. The EOM call (inbound) is pending while its check
 * runs, the late call (outbound) while its signing job runs; the call's
 * state holds either, and cancelling the call cancels it. The module
 * (config table, key files) is in dkim-config.c.
 */
#include "config.h"
#include "filters/dkim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dkim-authres.h"
#include "lib/log.h"
#include "lib/workpool.h"

struct dkim_filter {
    struct workpool *pool;
    struct dkim_verifier *verifier; /* NULL: verify = no */
    struct dkim_signer *signer;     /* NULL: no keys */
    double score_valid, score_invalid, score_temperror, score_none;
    bool authres;
    char *hostname;
};

struct dkim_call {
    struct dkim_filter *f;
    struct filter_call *call;
    struct dkim_check *check;
    struct dkim_sign_job *job;
};

/* ---- instances ---- */

static int make_signer(struct dkim_filter *f, const struct dkim_settings *cfg, char *error,
                       size_t errsize)
{
    struct dkim_sign_config sc = {
        .keys = cfg->keys,
        .key_count = cfg->key_count,
        .sign_headers = (const char *const *)cfg->sign_headers.items,
        .sign_count = cfg->sign_headers.count,
        .oversign_headers = (const char *const *)cfg->oversign_headers.items,
        .oversign_count = cfg->oversign_headers.count,
        .by = (enum dkim_sign_by)cfg->sign_by,
        .max_header = (size_t)cfg->max_header_size,
    };

    if (cfg->key_count == 0)
        return 0;
    return dkim_signer_new(f->pool, &sc, &f->signer, error, errsize);
}

int dkim_filter_new(const struct filter_env *env, const struct dkim_settings *cfg,
                    struct dkim_filter **f_r, char *error, size_t errsize)
{
    struct dkim_filter *f = calloc(1, sizeof(*f));
    struct dkim_verify_config vc = {.max_signatures = (size_t)cfg->max_signatures,
                                    .min_key_bits = (unsigned)cfg->min_key_bits,
                                    .max_header = (size_t)cfg->max_header_size};

    *f_r = NULL;
    if (f == NULL || (f->hostname = strdup(env->hostname != NULL ? env->hostname : "")) == NULL ||
        (f->pool = workpool_create(env->base, (unsigned)cfg->threads)) == NULL) {
        snprintf(error, errsize, "dkim: cannot start its threads");
        dkim_filter_free(&f);
        return -1;
    }
    f->score_valid = cfg->score_valid;
    f->score_invalid = cfg->score_invalid;
    f->score_temperror = cfg->score_temperror;
    f->score_none = cfg->score_none;
    f->authres = cfg->authres;
    if ((cfg->verify &&
         dkim_verifier_new(env->base, env->dns, f->pool, &vc, &f->verifier, error, errsize) < 0) ||
        make_signer(f, cfg, error, errsize) < 0) {
        dkim_filter_free(&f);
        return -1;
    }
    dkim_message_gmime_init();
    *f_r = f;
    return 0;
}

void dkim_filter_free(struct dkim_filter **fp)
{
    struct dkim_filter *f = *fp;

    if (f == NULL)
        return;
    *fp = NULL;
    /* the pool first: it settles the jobs still on its threads */
    workpool_destroy(&f->pool);
    dkim_verifier_free(&f->verifier);
    dkim_signer_free(&f->signer);
    free(f->hostname);
    free(f);
}

/* ---- verifying ---- */

void dkim_symbol_text(const struct dkim_sig_result *r, char *out, size_t size)
{
    snprintf(out, size, "d=%s s=%s%s%s", r->domain[0] != '\0' ? r->domain : "-",
             r->selector[0] != '\0' ? r->selector : "-",
             r->outcome == DKIM_OUTCOME_PASS ? "" : ": ", r->why);
}

static void add_results(struct dkim_call *dc, const struct dkim_sig_result *sigs, size_t n)
{
    struct dkim_filter *f = dc->f;
    bool seen[4] = {false, false, false, false};
    char text[FILTER_SYMBOL_TEXT_MAX];

    if (n == 0)
        filter_call_symbol(dc->call, "DKIM_NONE", f->score_none, NULL);
    for (size_t i = 0; i < n; i++) {
        const char *name = "DKIM_INVALID";
        double score = f->score_invalid;
        int kind = 1;
        if (sigs[i].outcome == DKIM_OUTCOME_PASS) {
            name = "DKIM_VALID";
            score = f->score_valid;
            kind = 0;
        } else if (sigs[i].outcome == DKIM_OUTCOME_TEMPERROR) {
            name = "DKIM_TEMPERROR";
            score = f->score_temperror;
            kind = 2;
        }
        dkim_symbol_text(&sigs[i], text, sizeof(text));
        filter_call_symbol(dc->call, name, seen[kind] ? 0 : score, text);
        seen[kind] = true;
    }
}

static void add_authres(struct dkim_call *dc, const struct dkim_sig_result *sigs, size_t n)
{
    struct authres a;

    authres_init(&a, dc->f->hostname);
    if (n == 0)
        authres_add(&a, "dkim", "none", NULL, NULL, 0);
    for (size_t i = 0; i < n; i++)
        authres_add_dkim(&a, &sigs[i]);
    if (filter_call_add_header(dc->call, "Authentication-Results", authres_value(&a)) < 0)
        log_warning("dkim: cannot add Authentication-Results");
}

static void on_checked(void *ctx, int status, const struct dkim_sig_result *sigs, size_t n,
                       const char *why)
{
    struct dkim_call *dc = ctx;
    struct filter_call *call = dc->call;
    const char *qid = filter_call_txn(call)->queue_id;

    dc->check = NULL;
    if (status < 0) {
        log_warning("%s: dkim: %s", qid != NULL ? qid : "-", why);
        free(dc);
        filter_call_done(call, -1);
        return;
    }
    add_results(dc, sigs, n);
    if (dc->f->authres)
        add_authres(dc, sigs, n);
    free(dc);
    filter_call_done(call, 1);
}

/* ---- signing ---- */

static void on_signed(void *ctx, int status, const struct dkim_sign_key *key, const char *value,
                      const char *why)
{
    struct dkim_call *dc = ctx;
    struct filter_call *call = dc->call;
    const char *qid = filter_call_txn(call)->queue_id;
    char text[FILTER_SYMBOL_TEXT_MAX];
    int result = 1;

    dc->job = NULL;
    qid = qid != NULL ? qid : "-";
    if (status < 0) {
        log_warning("%s: dkim: %s", qid, why);
        result = -1;
    } else if (status == 0) {
        log_debug("%s: dkim: not signed: %s", qid, why);
    } else if (filter_call_add_header(call, "DKIM-Signature", value) < 0) {
        log_warning("%s: dkim: the signature of d=%s does not fit in a header field", qid,
                    key->domain);
        result = -1;
    } else {
        snprintf(text, sizeof(text), "d=%s s=%s", key->domain, key->selector);
        filter_call_symbol(call, "DKIM_SIGNED", 0, text);
    }
    free(dc);
    filter_call_done(call, result);
}

/* ---- the stage and the late step ---- */

/* Starts the check (at the end of message) or the signature (in the late
 * step, on the final message) of txn. */
static int dkim_filter_start(struct dkim_filter *f, struct filter_call *call, bool sign)
{
    const struct filter_txn *txn = filter_call_txn(call);
    struct dkim_call *dc;

    if ((dc = calloc(1, sizeof(*dc))) == NULL)
        return -1;
    dc->f = f;
    dc->call = call;
    if (sign)
        dc->job = dkim_sign_start(f->signer, txn, on_signed, dc);
    else
        dc->check = dkim_check_start(f->verifier, txn, NULL, on_checked, dc);
    if (dc->job == NULL && dc->check == NULL) {
        free(dc);
        return -1;
    }
    filter_call_set_data(call, dc);
    return 0;
}

/* Inbound mail is verified as it came. */
static int dkim_filter_eom(void *instance, struct filter_call *call)
{
    struct dkim_filter *f = instance;
    const struct filter_txn *txn = filter_call_txn(call);

    if (txn->content_fd < 0 || txn->direction == FILTER_OUTBOUND || f->verifier == NULL)
        return 1;
    return dkim_filter_start(f, call, false);
}

/* Outbound mail is signed as it leaves: every other change is made. */
static int dkim_filter_late(void *instance, struct filter_call *call)
{
    struct dkim_filter *f = instance;
    const struct filter_txn *txn = filter_call_txn(call);

    if (txn->content_fd < 0 || txn->direction != FILTER_OUTBOUND || f->signer == NULL)
        return 1;
    return dkim_filter_start(f, call, true);
}

static void dkim_filter_cancel(void *instance, struct filter_call *call)
{
    struct dkim_call *dc = filter_call_data(call);

    (void)instance;
    if (dc == NULL)
        return;
    dkim_check_cancel(dc->check);
    dkim_sign_cancel(dc->job);
    free(dc);
}

const struct filter_ops dkim_filter_ops = {
    .name = "dkim",
    .stage = {[FILTER_EOM] = dkim_filter_eom},
    .cancel = dkim_filter_cancel,
    .late = dkim_filter_late,
};
