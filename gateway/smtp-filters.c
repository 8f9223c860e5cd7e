/*
 * smtp-filters — see smtp-filters.h. The per-session state (struct
 * filter_sess, in session->hook_state) holds the chain session, the run in
 * flight and the filter_txn with the text it points to, which must stay
 * valid until the chain calls back.
 */
#include "config.h"
#include "gateway/smtp-filters.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/chain.h"
#include "filters/dnsbl.h"
#include "gateway/server-config.h"
#include "gateway/smtp-session-private.h"
#include "lib/address.h"
#include "lib/log.h"

struct smtp_filters {
    struct chain *chain;
    struct chain_link *links;
    struct dnsbl **dnsbls; /* one per link */
    size_t count;
    struct smtp_hooks hooks;
};

#define ADDR_TEXT_MAX (ADDR_PATH_MAX * 4 + 8)

struct filter_sess {
    struct smtp_filters *f;
    struct smtp_session *s;
    struct chain_session *cs;
    struct chain_run *run;
    smtp_hook_done_cb *done;
    struct filter_txn txn;
    char sender[ADDR_TEXT_MAX];
    char rcpt[ADDR_TEXT_MAX];
    char **rcpts; /* text of the accepted recipients, for DATA and EOM */
    size_t rcpt_count;
};

enum smtp_verdict smtp_filters_verdict(enum filter_action action)
{
    switch (action) {
    case FILTER_ACTION_NONE:
        return SMTP_VERDICT_CONTINUE;
    case FILTER_ACTION_ACCEPT:
        return SMTP_VERDICT_ACCEPT;
    case FILTER_ACTION_DISCARD:
        return SMTP_VERDICT_DISCARD;
    case FILTER_ACTION_HOLD:
    case FILTER_ACTION_QUARANTINE: /* no quarantine store yet: held for review */
        return SMTP_VERDICT_HOLD;
    case FILTER_ACTION_TEMPFAIL:
        return SMTP_VERDICT_TEMPFAIL;
    case FILTER_ACTION_REJECT:
        return SMTP_VERDICT_REJECT;
    case FILTER_ACTION_DISCONNECT:
        return SMTP_VERDICT_DISCONNECT;
    }
    return SMTP_VERDICT_TEMPFAIL; /* unknown: fail closed */
}

static void free_rcpts(struct filter_sess *fs)
{
    for (size_t i = 0; i < fs->rcpt_count; i++)
        free(fs->rcpts[i]);
    free(fs->rcpts);
    fs->rcpts = NULL;
    fs->rcpt_count = 0;
}

static int fill_rcpts(struct filter_sess *fs, const struct smtp_txn *t)
{
    char one[ADDR_TEXT_MAX];

    free_rcpts(fs);
    if (t->rcpt_count == 0)
        return 0;
    if ((fs->rcpts = calloc(t->rcpt_count, sizeof(*fs->rcpts))) == NULL)
        return -1;
    for (size_t i = 0; i < t->rcpt_count; i++) {
        addr_format(&t->rcpts[i].addr, one, sizeof(one));
        if ((fs->rcpts[i] = strdup(one)) == NULL)
            return -1;
        fs->rcpt_count++;
    }
    return 0;
}

static int fill_txn(struct filter_sess *fs, enum smtp_stage stage)
{
    const struct smtp_session *s = fs->s;
    const struct smtp_txn *t = s->txn;
    struct filter_txn *x = &fs->txn;

    memset(x, 0, sizeof(*x));
    x->listener = s->listener->name;
    x->direction = s->authenticated ? FILTER_OUTBOUND : FILTER_INBOUND;
    x->client = s->client;
    x->client_addr = s->client_addr;
    x->client_name = s->client_name;
    x->helo = s->helo_seen ? s->helo : NULL;
    x->authenticated = s->authenticated;
    x->auth_user = s->authenticated ? s->auth_user : NULL;
    x->trusted = s->trusted;
    x->content_fd = -1;
    if (t == NULL)
        return 0;
    x->queue_id = t->queue_id;
    addr_format(&t->sender, fs->sender, sizeof(fs->sender));
    x->sender = fs->sender;
    if (stage == SMTP_STAGE_RCPT) {
        addr_format(&t->pending_rcpt.addr, fs->rcpt, sizeof(fs->rcpt));
        x->rcpt = fs->rcpt;
    }
    if (stage >= SMTP_STAGE_DATA && fill_rcpts(fs, t) < 0)
        return -1;
    x->rcpts = (const char *const *)fs->rcpts;
    x->rcpt_count = fs->rcpt_count;
    return 0;
}

static void on_chain_done(void *ctx, const struct chain_result *res)
{
    struct filter_sess *fs = ctx;
    struct smtp_hook_result r = {.verdict = smtp_filters_verdict(res->action)};

    fs->run = NULL;
    r.reply = res->reply;
    fs->done(fs->s, &r);
}

static struct filter_sess *sess_get(struct smtp_filters *f, struct smtp_session *s)
{
    struct filter_sess *fs = s->hook_state;

    if (fs != NULL)
        return fs;
    if ((fs = calloc(1, sizeof(*fs))) == NULL)
        return NULL;
    fs->f = f;
    fs->s = s;
    if ((fs->cs = chain_session_new(f->chain)) == NULL) {
        free(fs);
        return NULL;
    }
    s->hook_state = fs;
    return fs;
}

static int filters_stage(void *ctx, struct smtp_session *s, enum smtp_stage stage,
                         struct smtp_hook_result *result, smtp_hook_done_cb *done)
{
    static const enum filter_stage map[SMTP_STAGE_COUNT] = {
        FILTER_CONNECT, FILTER_HELO, FILTER_MAIL, FILTER_RCPT, FILTER_DATA, FILTER_EOM,
    };
    struct filter_sess *fs = sess_get(ctx, s);

    (void)result;
    if (fs == NULL || stage >= SMTP_STAGE_COUNT || fill_txn(fs, stage) < 0)
        return -1;
    fs->done = done;
    fs->run = chain_run(fs->cs, map[stage], &fs->txn, on_chain_done, fs);
    return fs->run == NULL ? -1 : 0;
}

static void filters_cancel(void *ctx, struct smtp_session *s)
{
    struct filter_sess *fs = s->hook_state;

    (void)ctx;
    if (fs != NULL && fs->run != NULL) {
        chain_run_cancel(fs->run);
        fs->run = NULL;
    }
}

static void filters_end(void *ctx, struct smtp_session *s)
{
    struct filter_sess *fs = s->hook_state;

    if (fs == NULL)
        return;
    filters_cancel(ctx, s);
    chain_session_free(&fs->cs);
    free_rcpts(fs);
    free(fs);
    s->hook_state = NULL;
}

bool smtp_filters_summary(const struct smtp_session *s, char *out, size_t size)
{
    const struct filter_sess *fs = s->hook_state;
    const struct chain_result *r;
    size_t o;

    if (fs == NULL || size == 0)
        return false;
    r = chain_session_result(fs->cs);
    o = (size_t)snprintf(out, size, "symbols=%s", r->symbol_count == 0 ? "-" : "");
    for (size_t i = 0; i < r->symbol_count && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s(%g)", i > 0 ? "," : "", r->symbols[i].name,
                              r->symbols[i].score);
    if (o < size)
        snprintf(out + o, size - o, " score=%g", r->score);
    return true;
}

static int make_dnsbl(struct event_base *base, const struct postern_config *cfg,
                      const struct filter_settings *fc, struct dnsbl **d_r, char *error,
                      size_t errsize)
{
    struct dnsbl_list *lists = calloc(fc->list_count, sizeof(*lists));
    struct dnsbl_config dc = {
        .lists = lists,
        .list_count = fc->list_count,
        .reject_score = fc->reject_score,
        .dns = {.nameservers = (const char *const *)cfg->dns.nameservers.items,
                .nameserver_count = cfg->dns.nameservers.count,
                .timeout_ms = (unsigned)cfg->dns.timeout,
                .attempts = (unsigned)cfg->dns.attempts},
    };
    int rc;

    if (lists == NULL) {
        snprintf(error, errsize, "dnsbl: out of memory");
        return -1;
    }
    for (size_t i = 0; i < fc->list_count; i++) {
        lists[i].zone = fc->lists[i].zone;
        lists[i].score = fc->lists[i].score;
        lists[i].codes = (const char *const *)fc->lists[i].codes.items;
        lists[i].code_count = fc->lists[i].codes.count;
    }
    rc = dnsbl_new(base, &dc, d_r, error, errsize);
    free(lists);
    return rc;
}

static void init_hooks(struct smtp_filters *f)
{
    f->hooks.stage = filters_stage;
    f->hooks.cancel = filters_cancel;
    f->hooks.end = filters_end;
    f->hooks.ctx = f;
}

int smtp_filters_new(struct event_base *base, const struct postern_config *cfg,
                     struct smtp_filters **f_r, char *error, size_t errsize)
{
    struct smtp_filters *f = calloc(1, sizeof(*f));

    *f_r = NULL;
    if (f == NULL || (f->links = calloc(cfg->filter_count, sizeof(*f->links))) == NULL ||
        (f->dnsbls = calloc(cfg->filter_count, sizeof(*f->dnsbls))) == NULL) {
        snprintf(error, errsize, "filters: out of memory");
        smtp_filters_free(&f);
        return -1;
    }
    for (; f->count < cfg->filter_count; f->count++) {
        const struct filter_settings *fc = &cfg->filters[f->count];
        struct chain_link *l = &f->links[f->count];
        if (make_dnsbl(base, cfg, fc, &f->dnsbls[f->count], error, errsize) < 0) {
            smtp_filters_free(&f);
            return -1;
        }
        l->ops = &dnsbl_filter_ops;
        l->instance = f->dnsbls[f->count];
        l->on_error = (enum filter_on_error)fc->on_error;
        l->timeout_ms = (unsigned)fc->timeout;
    }
    if ((f->chain = chain_new(base, f->links, f->count)) == NULL) {
        snprintf(error, errsize, "filters: cannot create the chain");
        smtp_filters_free(&f);
        return -1;
    }
    init_hooks(f);
    *f_r = f;
    return 0;
}

void smtp_filters_free(struct smtp_filters **fp)
{
    struct smtp_filters *f = *fp;

    if (f == NULL)
        return;
    *fp = NULL;
    chain_free(&f->chain);
    for (size_t i = 0; f->dnsbls != NULL && i < f->count; i++)
        dnsbl_free(&f->dnsbls[i]);
    free(f->dnsbls);
    free(f->links);
    free(f);
}

const struct smtp_hooks *smtp_filters_hooks(const struct smtp_filters *f)
{
    return &f->hooks;
}
