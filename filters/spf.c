/*
 * spf — see spf.h. One job per stage call: the identity copied out of the
 * transaction, submitted to the instance's pool, evaluated there
 * (spf-eval.c, its DNS through the instance's dns-bridge), and turned
 * into symbols, the Received-SPF field and the reject back on the loop in
 * the pool's done(). A cancelled call forgets the job (job->call = NULL)
 * and raises its cancel flag, so its lookups end at once; done() frees it.
 * The module (config table, checks) is in spf-config.c, the texts in
 * spf-header.c.
 */
#include "config.h"
#include "filters/spf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filters/dns-bridge.h"
#include "filters/spf-eval.h"
#include "lib/log.h"
#include "lib/workpool.h"

#define FIELD_MAX 2048

struct spf {
    struct dns_bridge *bridge;
    struct workpool *pool;
    char *receiver;
    char *explanation;
    bool check_helo, reject_fail, add_header, skip_authenticated, skip_trusted;
    long long lookup_timeout;
    double score[SPF_OUTCOMES], helo_score[SPF_OUTCOMES];
};

struct spf_job {
    struct spf *spf;
    struct filter_call *call; /* NULL once cancelled */
    atomic_bool cancelled;    /* the thread's lookups end at once */
    struct timespec deadline; /* CLOCK_MONOTONIC: the check's DNS ends here */
    struct spf_resolver resolver;
    struct spf_eval_in in; /* points into the job and the instance */
    char helo[256];
    char sender[SPF_IDENTITY_MAX];
    char client_ip[64];
    struct spf_eval_out out;
};

/* ---- instances ---- */

int spf_new(struct event_base *base, struct dns *dns, const char *receiver,
            const struct spf_settings *cfg, struct spf **spf_r, char *error, size_t errsize)
{
    struct spf *s = calloc(1, sizeof(*s));

    *spf_r = NULL;
    if (s == NULL || (s->receiver = strdup(receiver != NULL ? receiver : "localhost")) == NULL ||
        (cfg->explanation != NULL && (s->explanation = strdup(cfg->explanation)) == NULL)) {
        snprintf(error, errsize, "spf: out of memory");
        spf_free(&s);
        return -1;
    }
    s->check_helo = cfg->check_helo;
    s->reject_fail = cfg->reject_fail;
    s->add_header = cfg->add_header;
    s->skip_authenticated = cfg->skip_authenticated;
    s->skip_trusted = cfg->skip_trusted;
    s->lookup_timeout = cfg->lookup_timeout;
    memcpy(s->score, cfg->score, sizeof(s->score));
    memcpy(s->helo_score, cfg->helo_score, sizeof(s->helo_score));
    if (dns_bridge_new(base, dns, &s->bridge, error, errsize) < 0) {
        spf_free(&s);
        return -1;
    }
    if ((s->pool = workpool_create(base, (unsigned)cfg->threads)) == NULL) {
        snprintf(error, errsize, "spf: cannot start %lld threads", cfg->threads);
        spf_free(&s);
        return -1;
    }
    *spf_r = s;
    return 0;
}

void spf_free(struct spf **sp)
{
    struct spf *s = *sp;

    if (s == NULL)
        return;
    *sp = NULL;
    if (s->bridge != NULL)
        dns_bridge_close(s->bridge); /* the checks running end their lookups */
    workpool_destroy(&s->pool);      /* waits for them; done() frees every job */
    dns_bridge_free(&s->bridge);
    free(s->receiver);
    free(s->explanation);
    free(s);
}

/* ---- on a pool thread ---- */

static int job_ask(void *ctx, const struct dns_bridge_question *q, struct dns_bridge_answer *out)
{
    struct spf_job *job = ctx;

    return dns_bridge_ask(job->spf->bridge, q, &job->deadline, &job->cancelled, out);
}

static void job_work(void *ctx)
{
    struct spf_job *job = ctx;

    if (!atomic_load(&job->cancelled))
        spf_eval(&job->in, &job->resolver, &job->out);
}

/* ---- back on the loop ---- */

static void job_log(const struct spf_job *job)
{
    const struct spf_eval_out *o = &job->out;
    char who[SPF_IDENTITY_MAX];
    bool error = o->outcome == SPF_OUT_TEMPERROR || o->outcome == SPF_OUT_PERMERROR;

    spf_clean_text(o->identity, who, sizeof(who));
    log_msg(error ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, "spf: %s %s from [%s]: %s%s%s (%u queries)",
            job->in.scope == SPF_SCOPE_HELO ? "helo" : "mailfrom", who[0] != '\0' ? who : "-",
            job->client_ip, spf_outcome_name(o->outcome), o->problem[0] != '\0' ? ": " : "",
            o->problem, o->queries);
}

static void add_field(const struct spf_job *job, struct filter_call *call)
{
    char value[FIELD_MAX];
    struct spf_report r = {.outcome = job->out.outcome,
                           .scope = job->in.scope,
                           .receiver = job->spf->receiver,
                           .client_ip = job->client_ip,
                           .identity = job->out.identity,
                           .helo = job->helo,
                           .problem = job->out.problem};

    if (spf_received_value(&r, value, sizeof(value)) < 0 ||
        filter_call_add_header(call, "Received-SPF", value) < 0)
        log_warning("spf: cannot add Received-SPF for [%s]", job->client_ip);
}

static void job_apply(const struct spf_job *job, struct filter_call *call)
{
    const struct spf *s = job->spf;
    enum spf_outcome o = job->out.outcome;
    enum spf_scope scope = job->in.scope;
    char domain[FILTER_SYMBOL_TEXT_MAX];

    job_log(job);
    spf_clean_text(job->out.domain, domain, sizeof(domain));
    filter_call_symbol(call, spf_symbol(scope, o),
                       scope == SPF_SCOPE_HELO ? s->helo_score[o] : s->score[o], domain);
    if (scope != SPF_SCOPE_MAILFROM)
        return;
    if (s->add_header)
        add_field(job, call);
    if (s->reject_fail && o == SPF_OUT_FAIL)
        filter_call_action(call, FILTER_ACTION_REJECT, 550, "5.7.23", "SPF fail for %s: %s", domain,
                           job->out.explanation[0] != '\0' ? job->out.explanation
                                                           : "not a permitted sender");
}

static void job_done(void *ctx, bool cancelled)
{
    struct spf_job *job = ctx;
    struct filter_call *call = job->call;

    if (call != NULL) {
        if (cancelled) {
            filter_call_done(call, -1);
        } else {
            job_apply(job, call);
            filter_call_done(call, 1);
        }
    }
    free(job);
}

/* ---- the stages ---- */

static struct spf_job *job_new(struct spf *s, struct filter_call *call, enum spf_scope scope)
{
    const struct filter_txn *txn = filter_call_txn(call);
    struct spf_job *job = calloc(1, sizeof(*job));
    struct timespec now;

    if (job == NULL)
        return NULL;
    job->spf = s;
    job->call = call;
    atomic_init(&job->cancelled, false);
    clock_gettime(CLOCK_MONOTONIC, &now);
    job->deadline.tv_sec = now.tv_sec + (time_t)(s->lookup_timeout / 1000);
    job->deadline.tv_nsec = now.tv_nsec + (long)(s->lookup_timeout % 1000) * 1000000L;
    if (job->deadline.tv_nsec >= 1000000000L) {
        job->deadline.tv_sec++;
        job->deadline.tv_nsec -= 1000000000L;
    }
    job->resolver = (struct spf_resolver){.ask = job_ask, .ctx = job};
    snprintf(job->helo, sizeof(job->helo), "%s", txn->helo != NULL ? txn->helo : "");
    snprintf(job->sender, sizeof(job->sender), "%s", txn->sender != NULL ? txn->sender : "");
    netaddr_to_text(&txn->client, job->client_ip, sizeof(job->client_ip));
    job->in = (struct spf_eval_in){.scope = scope,
                                   .client = txn->client,
                                   .helo = job->helo,
                                   .sender = job->sender,
                                   .receiver = s->receiver,
                                   .explanation = s->explanation};
    return job;
}

static int spf_check(struct spf *s, struct filter_call *call, enum spf_scope scope)
{
    const struct filter_txn *txn = filter_call_txn(call);
    struct spf_job *job;

    if ((s->skip_trusted && txn->trusted) || (s->skip_authenticated && txn->authenticated))
        return 1;
    if ((job = job_new(s, call, scope)) == NULL)
        return -1;
    if (workpool_submit(s->pool, job_work, job_done, job) < 0) {
        free(job);
        return -1;
    }
    filter_call_set_data(call, job);
    return 0;
}

static int spf_helo(void *instance, struct filter_call *call)
{
    struct spf *s = instance;

    return s->check_helo ? spf_check(s, call, SPF_SCOPE_HELO) : 1;
}

static int spf_mail(void *instance, struct filter_call *call)
{
    return spf_check(instance, call, SPF_SCOPE_MAILFROM);
}

static void spf_cancel(void *instance, struct filter_call *call)
{
    struct spf *s = instance;
    struct spf_job *job = filter_call_data(call);

    if (job == NULL)
        return;
    job->call = NULL;
    dns_bridge_cancel(s->bridge, &job->cancelled);
}

const struct filter_ops spf_filter_ops = {
    .name = "spf",
    .stage = {[FILTER_HELO] = spf_helo, [FILTER_MAIL] = spf_mail},
    .cancel = spf_cancel,
};
