/*
 * dmarc — see dmarc.h. The EOM call starts a DKIM check; its header
 * callback finds the author and the forged Authentication-Results fields
 * and starts the record lookup (the From: domain's, then the
 * organizational domain's); the call ends when both the check and the
 * lookups have, with what dmarc-eval.c concludes. The module is in
 * dmarc-config.c.
 */
#include "config.h"
#include "filters/dmarc-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendmarc/dmarc.h>

#include "filters/dkim-authres.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/workpool.h"

/* Exported by libopendmarc 1.4 but missing from its header: the
 * organizational domain of domain from the public suffix list. */
extern int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

/* ---- instances ---- */

int dmarc_filter_new(const struct filter_env *env, const struct dmarc_settings *cfg,
                     struct dmarc_filter **f_r, char *error, size_t errsize)
{
    struct dmarc_filter *f = calloc(1, sizeof(*f));
    OPENDMARC_LIB_T lib = {.tld_type = OPENDMARC_TLD_TYPE_MOZILLA};
    struct dkim_verify_config vc = {.max_signatures = (size_t)cfg->max_signatures,
                                    .min_key_bits = (unsigned)cfg->min_key_bits,
                                    .max_header = (size_t)cfg->max_header_size};

    *f_r = NULL;
    if (f == NULL || (f->hostname = strdup(env->hostname != NULL ? env->hostname : "")) == NULL ||
        (f->pool = workpool_create(env->base, (unsigned)cfg->threads)) == NULL) {
        snprintf(error, errsize, "dmarc: cannot start its threads");
        dmarc_filter_free(&f);
        return -1;
    }
    f->dns = env->dns;
    f->cfg = *cfg;
    f->cfg.public_suffix_list = NULL;
    snprintf((char *)lib.tld_source_file, sizeof(lib.tld_source_file), "%s",
             cfg->public_suffix_list);
    if (opendmarc_policy_library_init(&lib) != DMARC_PARSE_OKAY) {
        snprintf(error, errsize, "dmarc: cannot read the public suffix list %s",
                 cfg->public_suffix_list);
        dmarc_filter_free(&f);
        return -1;
    }
    if (dkim_verifier_new(env->base, env->dns, f->pool, &vc, &f->verifier, error, errsize) < 0) {
        dmarc_filter_free(&f);
        return -1;
    }
    dkim_message_gmime_init();
    *f_r = f;
    return 0;
}

void dmarc_filter_free(struct dmarc_filter **fp)
{
    struct dmarc_filter *f = *fp;

    if (f == NULL)
        return;
    *fp = NULL;
    workpool_destroy(&f->pool); /* settles the jobs still on its threads */
    dkim_verifier_free(&f->verifier);
    free(f->hostname);
    free(f);
}

/* ---- a call ---- */

static void call_free(struct dmarc_call *dc)
{
    dkim_check_cancel(dc->check);
    if (dc->q != NULL)
        dns_query_cancel(dc->q);
    free(dc->sigs);
    free(dc->forged);
    free(dc->record_txt);
    free(dc);
}

/* Ends the call with what it found (evaluated: the author was found and
 * the check and the lookups are done). */
static void finish(struct dmarc_call *dc, bool evaluated)
{
    struct filter_call *call = dc->call;

    dmarc_conclude(dc, evaluated);
    call_free(dc);
    filter_call_done(call, 1);
}

static void maybe_finish(struct dmarc_call *dc)
{
    if (dc->dkim_done && dc->record != RECORD_PENDING)
        finish(dc, true);
}

static void ask(struct dmarc_call *dc, const char *domain);

static void on_record(void *ctx, enum dns_status st, const char *const *txt, size_t n)
{
    struct dmarc_call *dc = ctx;
    int i = st == DNS_OK ? dmarc_pick_record(txt, n) : -1;

    dc->q = NULL;
    if (i >= 0) {
        if ((dc->record_txt = strdup(txt[i])) == NULL) {
            dc->record = RECORD_TEMPERROR;
            dc->record_why = "out of memory";
        } else {
            dc->record = RECORD_FOUND;
            dc->record_at_org = dc->asking_org;
        }
    } else if (st != DNS_OK && st != DNS_NXDOMAIN && st != DNS_NODATA) {
        dc->record = RECORD_TEMPERROR;
        dc->record_why = dns_status_name(st);
    } else if (i == -1 && !dc->asking_org && dc->org[0] != '\0' &&
               strcasecmp(dc->org, dc->from) != 0) {
        /* §6.6.3: only an empty set sends the lookup on to the organizational
         * domain; several records end policy discovery */
        ask(dc, dc->org);
        if (dc->q != NULL)
            return;
    } else {
        dc->record = RECORD_NONE;
        dc->record_why = i == -2 ? "several DMARC records" : NULL;
    }
    maybe_finish(dc);
}

static void ask(struct dmarc_call *dc, const char *domain)
{
    char name[DNS_NAME_MAX + 1];

    dc->asking_org = domain == dc->org;
    snprintf(name, sizeof(name), "_dmarc.%s", domain);
    if ((dc->q = dns_query_txt(dc->f->dns, name, on_record, dc)) == NULL) {
        dc->record = RECORD_TEMPERROR;
        dc->record_why = "cannot query";
    }
}

/* The fields claiming our authserv-id (1-based indexes among theirs). */
static void find_forged(struct dmarc_call *dc, const struct dkim_message *m)
{
    size_t n = dkim_message_count(m, "Authentication-Results");
    char id[DKIM_DOMAIN_MAX + 2];

    if (n == 0 || (dc->forged = calloc(n, sizeof(*dc->forged))) == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const struct dkim_field *f = dkim_message_find(m, "Authentication-Results", i);
        char *value = malloc(f->len + 1);
        if (value == NULL)
            continue;
        dkim_field_value(f, value, f->len + 1);
        if (authres_authserv_id(value, id, sizeof(id)) == 0 && strcasecmp(id, dc->f->hostname) == 0)
            dc->forged[dc->forged_count++] = i + 1;
        free(value);
    }
}

static void on_header(void *ctx, const struct dkim_message *m)
{
    struct dmarc_call *dc = ctx;
    const struct dmarc_filter *f = dc->f;
    const struct filter_txn *txn = filter_call_txn(dc->call);

    if (f->cfg.remove_forged_authres)
        find_forged(dc, m);
    if (f->cfg.skip_outbound && txn->direction == FILTER_OUTBOUND) {
        finish(dc, false);
        return;
    }
    if (dkim_message_from_domain(m, dc->from, &dc->bad_from) < 0) {
        finish(dc, false);
        return;
    }
    dc->bad_from = NULL;
    if (opendmarc_get_tld((u_char *)dc->from, (u_char *)dc->org, sizeof(dc->org)) != 0 ||
        !dkim_domain_ok(dc->org))
        dc->org[0] = '\0';
    ask(dc, dc->from);
}

static void on_checked(void *ctx, int status, const struct dkim_sig_result *sigs, size_t n,
                       const char *why)
{
    struct dmarc_call *dc = ctx;
    struct filter_call *call = dc->call;
    const char *qid = filter_call_txn(call)->queue_id;

    dc->check = NULL;
    if (status < 0) {
        log_warning("%s: dmarc: %s", qid != NULL ? qid : "-", why);
        call_free(dc);
        filter_call_done(call, -1);
        return;
    }
    if (n > 0 && (dc->sigs = malloc(n * sizeof(*sigs))) == NULL) {
        call_free(dc);
        filter_call_done(call, -1);
        return;
    }
    if (n > 0)
        memcpy(dc->sigs, sigs, n * sizeof(*sigs));
    dc->nsig = n;
    dc->dkim_done = true;
    maybe_finish(dc);
}

static int dmarc_filter_eom(void *instance, struct filter_call *call)
{
    struct dmarc_filter *f = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    struct dmarc_call *dc;

    if (txn->content_fd < 0)
        return 1;
    if ((dc = calloc(1, sizeof(*dc))) == NULL)
        return -1;
    dc->f = f;
    dc->call = call;
    dc->record = RECORD_PENDING;
    if ((dc->check = dkim_check_start(f->verifier, txn, on_header, on_checked, dc)) == NULL) {
        free(dc);
        return -1;
    }
    filter_call_set_data(call, dc);
    return 0;
}

static void dmarc_filter_cancel(void *instance, struct filter_call *call)
{
    struct dmarc_call *dc = filter_call_data(call);

    (void)instance;
    if (dc != NULL)
        call_free(dc);
}

const struct filter_ops dmarc_filter_ops = {
    .name = "dmarc",
    .stage = {[FILTER_EOM] = dmarc_filter_eom},
    .cancel = dmarc_filter_cancel,
};
